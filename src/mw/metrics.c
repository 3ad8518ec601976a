/*
 * metrics.c - request metrics (SPEC section 6): a counter by method, route
 * pattern and status, and a latency histogram by method and route. The
 * route label is the pattern, never the raw path, so cardinality stays
 * bounded by the route table; unmatched paths count under "unmatched".
 */
#include "keel/metrics.h"

#include <stdio.h>

#include "keel/http.h"

static struct keel_metric *requests, *duration;
static char status_text[600][4];

static keel_status init(void)
{
    static const char *const l3[] = {"method", "route", "status"};
    static const char *const l2[] = {"method", "route"};
    int i;

    for (i = 100; i < 600; i++)
        snprintf(status_text[i], sizeof(status_text[i]), "%d", i);
    requests = keel_metric_counter("keel_http_requests_total", "HTTP requests answered.", 3, l3);
    duration =
        keel_metric_histogram("keel_http_request_duration_seconds",
                              "Time from the first byte of a request to its last response byte.", 2,
                              l2, keel_metric_latency_buckets, KEEL_METRIC_LATENCY_NBUCKETS);
    return requests && duration ? KEEL_OK : KEEL_E_INTERNAL;
}

static void observe(struct keel_request *req)
{
    int status = req->resp.status;
    const char *route = req->route_pattern ? req->route_pattern : "unmatched";
    const char *v[3] = {req->method_name, route,
                        status >= 100 && status < 600 ? status_text[status] : "0"};
    double secs = (double)(keel_now_ns() - req->start_ns) / 1e9;

    keel_metric_add(requests, v, 1);
    keel_metric_observe(duration, v, secs);
}

const struct keel_middleware keel_mw_metrics = {
    .name = "metrics",
    .order = KEEL_MW_ORDER_METRICS,
    .init = init,
    .log = observe,
};
