/*
 * metrics.c - the metrics module: GET /metrics, keel/metrics.h's registry
 * in the Prometheus text format 0.0.4.
 */
#include "keel/metrics.h"

#include "keel/http.h"
#include "keel/module.h"

static keel_status scrape(struct keel_request *req)
{
    keel_resp_start(req, 200, "text/plain; version=0.0.4; charset=utf-8");
    if (keel_metrics_render(&req->resp.body) < 0)
        return keel_errorf(req, KEEL_E_NOMEM, "metrics exposition too large");
    keel_resp_header(req, "Cache-Control", "no-store");
    return KEEL_DONE;
}

static const struct keel_route routes[] = {
    {.method = KEEL_HTTP_GET,
     .pattern = "/metrics",
     .handler = scrape,
     .flags = KEEL_ROUTE_NO_RATELIMIT},
};

const struct keel_module keel_module_metrics = {
    .name = "metrics",
    .routes = routes,
    .nroutes = KEEL_ARRAY_LEN(routes),
};
