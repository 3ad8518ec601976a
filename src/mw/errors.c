/*
 * errors.c - the error sanitizer: the first response filter turns every
 * recorded failure into problem+json (SPEC section 3) and logs what the
 * client must not see.
 *
 * A response is an error when its handler or a middleware recorded one
 * (req->rc < 0 or a problem status), or when nothing produced a status at
 * all, which is a bug in Keel and answered 500. Internal details
 * (keel_errorf) go to the log with the request id, never to the client.
 */
#include "keel/http.h"
#include "keel/log.h"
#include "keel/problem.h"

static void sanitize(struct keel_request *req)
{
    int status;

    if (req->rc == KEEL_OK && !req->problem_status && req->resp.status >= 100)
        return;
    if (req->rc == KEEL_OK && !req->problem_status)
        keel_errorf(req, KEEL_E_INTERNAL, "handler returned no response");
    req->resp.stream_fn = NULL;
    if (keel_problem_render(req) < 0) {
        keel_resp_start(req, 500, NULL);
        return;
    }
    status = req->resp.status;
    if (status == 503 && !keel_resp_get_header(req, "Retry-After"))
        keel_resp_header(req, "Retry-After", "5");
    if (status == 401 && !keel_resp_get_header(req, "WWW-Authenticate"))
        keel_resp_header(req, "WWW-Authenticate", "Bearer");
    if (status >= 500)
        keel_log(KEEL_LOG_ERROR, "request failed", /* request_id: the request's log context */
                 KEEL_LF_STR("route", req->route_pattern), KEEL_LF_INT("status", status),
                 KEEL_LF_STR("error", keel_status_name(req->rc)),
                 KEEL_LF_STR("detail", req->internal_detail));
}

const struct keel_middleware keel_mw_errors = {
    .name = "errors",
    .order = KEEL_MW_ORDER_ERRORS,
    .filter = sanitize,
};
