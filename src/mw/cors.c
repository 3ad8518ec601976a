/*
 * cors.c - CORS (SPEC section 2, step 4): off unless KEEL_CORS_ORIGINS
 * lists origins. A preflight from an allowed origin for a path that exists
 * is answered 204 here, before authentication (browsers send no
 * credentials on preflight); actual responses to an allowed origin carry
 * Access-Control-Allow-Origin. A disallowed origin simply gets no CORS
 * headers, and the browser blocks the response.
 */
#include <string.h>
#include <strings.h>

#include "keel/config.h"
#include "keel/http.h"
#include "keel/router.h"

static const char allow_headers[] = "Authorization, Content-Type, Idempotency-Key, If-Match, "
                                    "If-None-Match, X-Request-ID, traceparent";
static const char expose_headers[] = "X-Request-ID, ETag, Location, Retry-After, RateLimit, "
                                     "RateLimit-Policy, Idempotent-Replayed";

/* Returns the allowed origin as an arena string, or NULL. */
static const char *allowed_origin(struct keel_request *req)
{
    const struct keel_config *cfg = req->cfg;
    const struct keel_header *h;
    size_t i;

    if (cfg->cors_origins.count == 0 && !cfg->cors_allow_any)
        return NULL;
    h = keel_request_header(req, "Origin");
    if (!h || h->value.len == 0)
        return NULL;
    if (cfg->cors_allow_any)
        return "*";
    for (i = 0; i < cfg->cors_origins.count; i++)
        if (keel_str_caseeq(h->value, cfg->cors_origins.items[i]))
            return keel_arena_strndup(req->arena, h->value.p, h->value.len);
    return NULL;
}

static keel_status preflight(struct keel_request *req)
{
    const char *origin;
    char *methods;

    if (req->method != KEEL_HTTP_OPTIONS ||
        !keel_request_header(req, "Access-Control-Request-Method"))
        return KEEL_DECLINED;
    origin = allowed_origin(req);
    if (!origin || !req->route_allow)
        return KEEL_DECLINED;
    methods = keel_arena_alloc(req->arena, 64);
    if (!methods)
        return KEEL_E_NOMEM;
    keel_router_allow_string(req->route_allow, methods, 64);
    keel_resp_start(req, 204, NULL);
    req->mw_data[KEEL_MW_SLOT_CORS] = (void *)(uintptr_t)origin;
    keel_resp_header(req, "Access-Control-Allow-Methods", methods);
    keel_resp_header(req, "Access-Control-Allow-Headers", allow_headers);
    keel_resp_header(req, "Access-Control-Max-Age", "600");
    return KEEL_DONE;
}

static void add_headers(struct keel_request *req)
{
    const char *origin = req->mw_data[KEEL_MW_SLOT_CORS];

    if (!origin)
        origin = allowed_origin(req);
    if (!origin)
        return;
    keel_resp_header(req, "Access-Control-Allow-Origin", origin);
    if (strcmp(origin, "*") != 0)
        keel_resp_header(req, "Vary", "Origin");
    if (req->resp.status != 204)
        keel_resp_header(req, "Access-Control-Expose-Headers", expose_headers);
}

const struct keel_middleware keel_mw_cors = {
    .name = "cors",
    .order = KEEL_MW_ORDER_CORS,
    .phase = KEEL_PHASE_PREACCESS,
    .handler = preflight,
    .filter = add_headers,
};
