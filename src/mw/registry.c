/*
 * registry.c - the core middleware list (SPEC section 2).
 *
 * Order matters three ways: phase handlers run in order within their
 * phase, response filters run in order (the error sanitizer first, so
 * every later filter sees the final response; compression last, so it
 * compresses the final body), and log handlers run in order. Each
 * middleware carries its place as data (.order, KEEL_MW_ORDER_*), because
 * modules contribute middleware of their own (keel/module.h):
 * keel_pipeline_init merges this list with theirs by that order. The list
 * is kept in that order too, so it reads as the pipeline runs; the auth
 * module's authentication (401) and authorization (403) run after each of
 * the two rate limits (src/modules/auth/mw_authn.c, mw_authz.c).
 */
#include "keel/pipeline.h"

extern const struct keel_middleware keel_mw_errors;
extern const struct keel_middleware keel_mw_request_id;
extern const struct keel_middleware keel_mw_security_headers;
extern const struct keel_middleware keel_mw_cors;
extern const struct keel_middleware keel_mw_body_type;
extern const struct keel_middleware keel_mw_body;
extern const struct keel_middleware keel_mw_ratelimit_ip;
extern const struct keel_middleware keel_mw_ratelimit_user;
extern const struct keel_middleware keel_mw_validate;
extern const struct keel_middleware keel_mw_compress;
extern const struct keel_middleware keel_mw_metrics;
extern const struct keel_middleware keel_mw_access_log;

const struct keel_middleware *const keel_middlewares[] = {
    &keel_mw_errors,           /* filter: failures become problem+json */
    &keel_mw_request_id,       /* POST_READ: accept or mint X-Request-ID; filter: echo it */
    &keel_mw_security_headers, /* filter: helmet-equivalent headers */
    &keel_mw_cors,             /* PREACCESS: preflight; filter: allow-origin */
    &keel_mw_body_type,        /* PREACCESS: 415 for JSON routes, before the body is read */
    &keel_mw_body,             /* BODY: 400 / depth for JSON routes, once the body is in */
    &keel_mw_ratelimit_ip,     /* ACCESS: per-IP limit, stricter on credential routes */
    &keel_mw_ratelimit_user,   /* ACCESS: per-user limit */
    &keel_mw_validate,         /* VALIDATE: the route's body schema; 400 per field */
    &keel_mw_compress,         /* filter: gzip >= 1 KiB */
    &keel_mw_metrics,          /* log: request counters and latency */
    &keel_mw_access_log,       /* log: one JSON line per request */
};

const unsigned keel_nmiddlewares = KEEL_ARRAY_LEN(keel_middlewares);
