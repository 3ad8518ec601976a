/*
 * security_headers.c - the helmet-equivalent headers of SPEC section 2,
 * step 3, on every response. The API answers JSON only, so its
 * Content-Security-Policy forbids everything; pages that need more (API
 * docs, the admin console) set their own policy before this filter runs.
 */
#include "keel/config.h"
#include "keel/http.h"

static void add_headers(struct keel_request *req)
{
    keel_resp_header(req, "X-Content-Type-Options", "nosniff");
    keel_resp_header(req, "X-Frame-Options", "DENY");
    keel_resp_header(req, "Referrer-Policy", "same-origin");
    if (!keel_resp_get_header(req, "Content-Security-Policy"))
        keel_resp_header(req, "Content-Security-Policy",
                         "default-src 'none'; frame-ancestors 'none'");
    if (req->cfg->env == KEEL_ENV_PRODUCTION)
        keel_resp_header(req, "Strict-Transport-Security", "max-age=31536000; includeSubDomains");
    if (req->task.user_id && !keel_resp_get_header(req, "Cache-Control"))
        keel_resp_header(req, "Cache-Control", "no-store");
}

const struct keel_middleware keel_mw_security_headers = {
    .name = "security_headers",
    .order = KEEL_MW_ORDER_SECURITY_HEADERS,
    .filter = add_headers,
};
