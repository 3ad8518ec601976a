/*
 * access_log.c - one JSON line per request (SPEC section 6): method, route
 * pattern (not the raw path, which may carry ids or tokens), status,
 * duration, bytes, request id and the hashed user id. Never headers,
 * cookies, query strings or bodies.
 */
#include "keel/http.h"
#include "keel/log.h"

static void log_request(struct keel_request *req)
{
    double ms = (double)(keel_now_ns() - req->start_ns) / 1e6;
    char uid[17];
    int status = req->resp.status;
    enum keel_log_level lvl = status >= 500 ? KEEL_LOG_ERROR : KEEL_LOG_INFO;

    if (!keel_log_enabled(lvl))
        return;
    if (req->task.user_id)
        keel_log_hash_user_id(req->task.user_id, uid);
    keel_log(lvl, "request", KEEL_LF_STR("request_id", req->request_id),
             KEEL_LF_STR("method", req->method_name),
             KEEL_LF_STR("route", req->route_pattern ? req->route_pattern : "unmatched"),
             KEEL_LF_INT("status", status), KEEL_LF_DBL("duration_ms", ms),
             KEEL_LF_INT("bytes", (int64_t)(req->resp.stream_fn ? req->resp.stream_len
                                                                : req->resp.body.len)),
             req->task.user_id ? KEEL_LF_STR("user_id", uid) : KEEL_LF_NULL("user_id"));
}

const struct keel_middleware keel_mw_access_log = {
    .name = "access_log",
    .order = KEEL_MW_ORDER_ACCESS_LOG,
    .log = log_request,
};
