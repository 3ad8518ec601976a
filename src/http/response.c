/*
 * response.c - response headers, the serialized response head, the cached
 * Date header, and the method and reason-phrase tables.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http/http_int.h"

static const char *const method_names[KEEL_HTTP_METHOD_COUNT] = {
    [KEEL_HTTP_GET] = "GET",         [KEEL_HTTP_HEAD] = "HEAD",   [KEEL_HTTP_POST] = "POST",
    [KEEL_HTTP_PUT] = "PUT",         [KEEL_HTTP_PATCH] = "PATCH", [KEEL_HTTP_DELETE] = "DELETE",
    [KEEL_HTTP_OPTIONS] = "OPTIONS",
};

const char *keel_http_method_name(enum keel_method m)
{
    return (unsigned)m < KEEL_HTTP_METHOD_COUNT ? method_names[m] : "-";
}

const char *keel_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* IMF-fixdate, formatted at most once a second per loop. */
const char *keel__loop_date(struct keel_http_loop *loop)
{
    time_t now = time(NULL);
    struct tm tm;

    if (now != loop->date_sec) {
        gmtime_r(&now, &tm);
        strftime(loop->date, sizeof(loop->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        loop->date_sec = now;
    }
    return loop->date;
}

static keel_status grow(struct keel_request *req)
{
    unsigned cap = req->resp.cap ? req->resp.cap * 2 : 16;
    struct keel_header *h = keel_arena_alloc(req->arena, cap * sizeof(*h));

    if (!h)
        return KEEL_E_NOMEM;
    if (req->resp.nheaders)
        memcpy(h, req->resp.headers, req->resp.nheaders * sizeof(*h));
    req->resp.headers = h;
    req->resp.cap = cap;
    return KEEL_OK;
}

keel_status keel_resp_header(struct keel_request *req, const char *name, const char *value)
{
    if (req->resp.nheaders == req->resp.cap && grow(req) < 0)
        return KEEL_E_NOMEM;
    req->resp.headers[req->resp.nheaders++] = (struct keel_header){
        {name, strlen(name)},
        {value, strlen(value)},
    };
    return KEEL_OK;
}

static struct keel_header *find(const struct keel_request *req, const char *name)
{
    unsigned i;

    for (i = 0; i < req->resp.nheaders; i++)
        if (keel_str_caseeq(req->resp.headers[i].name, name))
            return &req->resp.headers[i];
    return NULL;
}

keel_status keel_resp_set_header(struct keel_request *req, const char *name, const char *value)
{
    struct keel_header *h = find(req, name);

    if (!h)
        return keel_resp_header(req, name, value);
    h->value = (struct keel_str){value, strlen(value)};
    return KEEL_OK;
}

const char *keel_resp_get_header(const struct keel_request *req, const char *name)
{
    struct keel_header *h = find(req, name);

    return h ? h->value.p : NULL;
}

void keel_resp_remove_header(struct keel_request *req, const char *name)
{
    unsigned i, j = 0;

    for (i = 0; i < req->resp.nheaders; i++)
        if (!keel_str_caseeq(req->resp.headers[i].name, name))
            req->resp.headers[j++] = req->resp.headers[i];
    req->resp.nheaders = j;
}

void keel_resp_start(struct keel_request *req, int status, const char *content_type)
{
    req->resp.status = status;
    req->resp.content_type = content_type;
    keel_buf_reset(&req->resp.body);
}

keel_status keel_resp_json_str(struct keel_request *req, int status, const char *json)
{
    keel_resp_start(req, status, "application/json");
    return keel_buf_appends(&req->resp.body, json) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static bool has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* Serializes the status line and headers. head_only: HEAD keeps the
 * headers (Content-Length included) and drops the body. */
keel_status keel__resp_head(struct keel_request *req, struct keel_buf *out, bool head_only)
{
    struct keel_response *r = &req->resp;
    uint64_t len = r->stream_fn ? r->stream_len : r->body.len;
    unsigned i;
    keel_status rc;

    (void)head_only;
    rc = keel_buf_appendf(out, "HTTP/1.1 %d %s\r\nServer: keel\r\nDate: %s\r\n", r->status,
                          keel_http_reason(r->status), keel__loop_date(req->loop));
    if (rc == KEEL_OK && has_body(r->status)) {
        if (r->content_type && (len || r->stream_fn))
            rc = keel_buf_appendf(out, "Content-Type: %s\r\n", r->content_type);
        if (rc == KEEL_OK)
            rc = keel_buf_appendf(out, "Content-Length: %llu\r\n", (unsigned long long)len);
    }
    for (i = 0; rc == KEEL_OK && i < r->nheaders; i++) {
        const struct keel_header *h = &r->headers[i];

        rc = keel_buf_append(out, h->name.p, h->name.len);
        if (rc == KEEL_OK)
            rc = keel_buf_append(out, ": ", 2);
        if (rc == KEEL_OK)
            rc = keel_buf_append(out, h->value.p, h->value.len);
        if (rc == KEEL_OK)
            rc = keel_buf_append(out, "\r\n", 2);
    }
    if (rc == KEEL_OK && !r->keep_alive)
        rc = keel_buf_appends(out, "Connection: close\r\n");
    else if (rc == KEEL_OK && req->http_minor == 0)
        rc = keel_buf_appends(out, "Connection: keep-alive\r\n");
    if (rc == KEEL_OK)
        rc = keel_buf_append(out, "\r\n", 2);
    if (!has_body(r->status))
        keel_buf_reset(&r->body);
    return rc;
}
