/*
 * problem.c - errors as RFC 9457 problem+json (SPEC section 3).
 *
 * DESIGN: handlers record an error with keel_fail (public detail) or
 * keel_errorf (internal detail, logged only) and return the negative
 * status; the response is built later, once, by the error sanitizer
 * (src/mw/errors.c), so every failure path - parser, middleware, handler,
 * timeout - produces the same document shape and none leaks internals.
 * keel_fail_storage is the one mapping from a storage failure to its
 * answer (503 with Retry-After for an outage), shared by the modules.
 */
#include "keel/problem.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "keel/json.h"
#include "keel/uuid.h"

struct problem_kind {
    int status;
    const char *slug;
    const char *title;
};

static const struct problem_kind kinds[] = {
    {400, "malformed-request", "Malformed request"},
    {401, "unauthorized", "Unauthorized"},
    {403, "forbidden", "Forbidden"},
    {404, "not-found", "Not found"},
    {405, "method-not-allowed", "Method not allowed"},
    {408, "request-timeout", "Request timeout"},
    {409, "conflict", "Conflict"},
    {412, "precondition-failed", "Precondition failed"},
    {413, "payload-too-large", "Payload too large"},
    {414, "uri-too-long", "URI too long"},
    {415, "unsupported-media-type", "Unsupported media type"},
    {417, "expectation-failed", "Expectation failed"},
    {422, "unprocessable-content", "Unprocessable content"},
    {429, "rate-limited", "Too many requests"},
    {431, "header-fields-too-large", "Request header fields too large"},
    {500, "internal-error", "Internal error"},
    {501, "not-implemented", "Not implemented"},
    {503, "service-unavailable", "Service unavailable"},
    {505, "http-version-not-supported", "HTTP version not supported"},
};

/* Slugs that share a status with the default one have their own title. */
static const struct problem_kind titled[] = {
    {400, "validation-error", "Validation failed"},
    {409, "out-of-stock", "Out of stock"},
    {409, "idempotency-key-in-use", "Idempotency key in use"},
    {422, "idempotency-key-mismatch", "Idempotency key reused with another request"},
};

static const char *title_of(const char *slug, int status)
{
    size_t i;

    for (i = 0; i < KEEL_ARRAY_LEN(titled); i++)
        if (strcmp(titled[i].slug, slug) == 0)
            return titled[i].title;
    return keel_problem_title(status);
}

static const struct problem_kind *kind(int status)
{
    size_t i;

    for (i = 0; i < KEEL_ARRAY_LEN(kinds); i++)
        if (kinds[i].status == status)
            return &kinds[i];
    return status >= 500 ? kind(500) : kind(400);
}

const char *keel_problem_slug(int status)
{
    return kind(status)->slug;
}

const char *keel_problem_title(int status)
{
    return kind(status)->title;
}

keel_status keel_fail(struct keel_request *req, int status, const char *slug, const char *fmt, ...)
{
    va_list ap;

    if (status < 400 || status > 599)
        status = 500;
    req->problem_status = status;
    req->problem_slug = slug;
    va_start(ap, fmt);
    req->problem_detail = keel_arena_vsprintf(req->arena, fmt, ap);
    va_end(ap);
    switch (status) {
    case 401:
        req->rc = KEEL_E_AUTH;
        break;
    case 403:
        req->rc = KEEL_E_FORBIDDEN;
        break;
    case 404:
        req->rc = KEEL_E_NOT_FOUND;
        break;
    case 409:
        req->rc = KEEL_E_CONFLICT;
        break;
    case 413:
        req->rc = KEEL_E_TOO_LARGE;
        break;
    case 503:
        req->rc = KEEL_E_UNAVAILABLE;
        break;
    default:
        req->rc = status >= 500 ? KEEL_E_INTERNAL : KEEL_E_INVALID;
        break;
    }
    return req->rc;
}

keel_status keel_fail_field(struct keel_request *req, const char *field, const char *message)
{
    struct keel_problem_field *f;
    unsigned n = req->nproblem_fields;

    f = keel_arena_alloc(req->arena, (n + 1) * sizeof(*f));
    if (!f)
        return KEEL_E_NOMEM;
    if (n)
        memcpy(f, req->problem_fields, n * sizeof(*f));
    f[n].field = keel_arena_strdup(req->arena, field);
    f[n].message = keel_arena_strdup(req->arena, message);
    if (!f[n].field || !f[n].message)
        return KEEL_E_NOMEM;
    req->problem_fields = f;
    req->nproblem_fields = n + 1;
    req->problem_status = 400;
    req->problem_slug = "validation-error";
    if (!req->problem_detail)
        req->problem_detail = "The request body failed validation.";
    req->rc = KEEL_E_INVALID;
    return KEEL_E_INVALID;
}

keel_status keel_errorf(struct keel_request *req, keel_status rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    req->internal_detail = keel_arena_vsprintf(req->arena, fmt, ap);
    va_end(ap);
    req->rc = rc < 0 ? rc : KEEL_E_INTERNAL;
    return req->rc;
}

keel_status
keel_fail_storage(struct keel_request *req, keel_status rc, const char *what, const char *not_found)
{
    if (rc == KEEL_E_UNAVAILABLE || rc == KEEL_E_TIMEOUT) {
        keel_resp_set_header(req, "Retry-After", "1");
        return keel_errorf(req, KEEL_E_UNAVAILABLE, "%s: %s", what, keel_strerror(rc));
    }
    if (rc == KEEL_E_NOT_FOUND && not_found)
        return keel_fail(req, 404, NULL, "%s", not_found);
    return keel_errorf(req, rc < 0 ? rc : KEEL_E_INTERNAL, "%s: %s", what, keel_strerror(rc));
}

keel_status keel_problem_render(struct keel_request *req)
{
    int status = req->problem_status ? req->problem_status : keel_status_http(req->rc);
    const char *slug, *title;
    /* Only keel_fail text is public; a 5xx never carries a handler's text
     * unless it was given through keel_fail on purpose. */
    const char *detail = req->problem_detail ? req->problem_detail : keel_strerror(req->rc);
    struct keel_json j;
    unsigned i;
    char type[96];

    if (status < 400 || status > 599)
        status = 500;
    slug = req->problem_slug ? req->problem_slug : keel_problem_slug(status);
    title = title_of(slug, status);
    if (!req->request_id[0]) /* failed before the request-id phase ran */
        keel_uuid_v7(req->request_id);
    snprintf(type, sizeof(type), "/problems/%s", slug);
    keel_resp_start(req, status, "application/problem+json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "type");
    keel_json_str(&j, type);
    keel_json_key(&j, "title");
    keel_json_str(&j, title);
    keel_json_key(&j, "status");
    keel_json_int(&j, status);
    keel_json_key(&j, "detail");
    keel_json_str(&j, detail);
    keel_json_key(&j, "instance");
    keel_json_strn(&j, req->path.p ? req->path.p : "", req->path.len);
    keel_json_key(&j, "request_id");
    keel_json_str(&j, req->request_id);
    if (req->nproblem_fields) {
        keel_json_key(&j, "errors");
        keel_json_arr_open(&j);
        for (i = 0; i < req->nproblem_fields; i++) {
            keel_json_obj_open(&j);
            keel_json_key(&j, "field");
            keel_json_str(&j, req->problem_fields[i].field);
            keel_json_key(&j, "message");
            keel_json_str(&j, req->problem_fields[i].message);
            keel_json_obj_close(&j);
        }
        keel_json_arr_close(&j);
    }
    keel_json_obj_close(&j);
    return keel_json_end(&j);
}
