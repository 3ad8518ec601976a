/*
 * request_id.c - X-Request-ID (SPEC section 2, step 2): accept a
 * well-formed incoming id (1..128 of [A-Za-z0-9._-]) or mint a UUIDv7, and
 * echo it on every response, including errors the parser raised before the
 * phases ran.
 */
#include <string.h>

#include "keel/http.h"
#include "keel/uuid.h"

static bool well_formed(struct keel_str v)
{
    size_t i;

    if (v.len == 0 || v.len > 128)
        return false;
    for (i = 0; i < v.len; i++) {
        char c = v.p[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static keel_status accept_id(struct keel_request *req)
{
    const struct keel_header *h = keel_request_header(req, "X-Request-ID");

    if (h && well_formed(h->value)) {
        memcpy(req->request_id, h->value.p, h->value.len);
        req->request_id[h->value.len] = '\0';
    } else {
        keel_uuid_v7(req->request_id);
    }
    return KEEL_OK;
}

static void echo_id(struct keel_request *req)
{
    if (!req->request_id[0])
        keel_uuid_v7(req->request_id);
    keel_resp_header(req, "X-Request-ID", req->request_id);
}

const struct keel_middleware keel_mw_request_id = {
    .name = "request_id",
    .order = KEEL_MW_ORDER_REQUEST_ID,
    .phase = KEEL_PHASE_POST_READ,
    .handler = accept_id,
    .filter = echo_id,
};
