/*
 * body.c - request bodies of JSON routes (SPEC section 2, step 6):
 * Content-Type application/json is required (415), the document is parsed
 * strictly (400: invalid JSON, duplicate keys, nesting deeper than 32).
 * Size limits were enforced while reading (413, src/http/parser.c).
 */
#include <string.h>
#include <strings.h>

#include "keel/http.h"
#include "keel/json.h"

/* application/json, optionally with parameters (charset=utf-8). */
static bool is_json(const struct keel_header *h)
{
    static const char mt[] = "application/json";
    size_t n = sizeof(mt) - 1;
    size_t i;

    if (!h || h->value.len < n || strncasecmp(h->value.p, mt, n) != 0)
        return false;
    for (i = n; i < h->value.len && (h->value.p[i] == ' ' || h->value.p[i] == '\t'); i++)
        ;
    return i == h->value.len || h->value.p[i] == ';';
}

static keel_status parse_body(struct keel_request *req)
{
    const char *why;
    keel_status rc;

    if (!req->route || req->route->body == KEEL_BODY_NONE)
        return KEEL_DECLINED;
    if (req->route->body == KEEL_BODY_JSON_OPTIONAL && req->body_len == 0 &&
        !keel_request_header(req, "Content-Type"))
        return KEEL_DECLINED;
    if (!is_json(keel_request_header(req, "Content-Type")))
        return keel_fail(req, 415, NULL, "Send the body as application/json.");
    if (req->body_len == 0)
        return keel_fail(req, 400, NULL, "A JSON body is required.");
    rc = keel_json_parse(req->body, req->body_len, KEEL_JSON_MAX_DEPTH, &req->json, &why);
    if (rc == KEEL_E_NOMEM)
        return rc;
    if (rc < 0)
        return keel_fail(req, rc == KEEL_E_TOO_LARGE ? 413 : 400, NULL, "Malformed JSON: %s.", why);
    return KEEL_DECLINED;
}

const struct keel_middleware keel_mw_body = {
    .name = "body",
    .order = KEEL_MW_ORDER_BODY,
    .phase = KEEL_PHASE_PREACCESS,
    .handler = parse_body,
};
