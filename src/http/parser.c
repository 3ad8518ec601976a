/*
 * parser.c - the llhttp callbacks: they turn parser events into a
 * keel_request and enforce the message limits (SPEC section 2, phase 1).
 *
 * DESIGN: llhttp runs in strict mode (no lenient flags are ever set), so it
 * rejects the request-smuggling shapes itself: Content-Length together with
 * Transfer-Encoding, duplicate or malformed Content-Length, bad chunk
 * sizes, obs-fold, bare CR or LF, NUL. The callbacks add what llhttp leaves
 * to the server: size and count limits (414, 431, 413), the Host rule of
 * RFC 9112 section 3.2, the method set (501), the version (505), and
 * Expect: 100-continue.
 *
 * Request-line and header bytes may arrive split anywhere, so they are
 * appended to the connection's scratch buffer with offsets, and turned into
 * the request's header array (one arena copy) when the block completes.
 */
#include <string.h>
#include <strings.h>

#include "keel/router.h"

#include "net/net_int.h"

static struct keel_conn *conn_of(llhttp_t *p)
{
    return p->data;
}

static int reject(struct keel_conn *c, int status)
{
    c->early_status = status;
    return HPE_USER;
}

void keel__parser_reset_headers(struct keel_conn *c)
{
    keel_buf_free(&c->hbytes);
    keel_buf_free(&c->hoffs);
    c->url_len = 0;
    c->in_value = false;
    c->nheaders = 0;
    c->header_bytes = 0;
    c->early_status = 0;
    c->expect_continue = false;
}

static int on_message_begin(llhttp_t *p)
{
    struct keel_conn *c = conn_of(p);
    const struct keel_config *cfg = c->loop->server->cfg;

    keel__parser_reset_headers(c);
    keel_buf_init(&c->hbytes, cfg->max_uri_bytes + cfg->max_header_bytes + 64);
    keel_buf_init(&c->hoffs, (size_t)cfg->max_headers * 4 * sizeof(uint32_t));
    c->req = keel__request_new(c);
    c->state = CONN_HEAD;
    c->head_only = false;
    if (!c->timer_header_armed) {
        /* Armed once for the whole header block: slowloris defence. */
        c->timer_header_armed = true;
        keel__conn_arm(c, cfg->header_timeout_ms);
    }
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct keel_conn *c = conn_of(p);

    if (c->url_len + len > c->loop->server->cfg->max_uri_bytes)
        return reject(c, 414);
    if (keel_buf_append(&c->hbytes, at, len) < 0)
        return reject(c, 414);
    c->url_len += (uint32_t)len;
    return 0;
}

/* Known as soon as the method is: a HEAD request's error response must not
 * carry a body either. */
static int on_method_complete(llhttp_t *p)
{
    conn_of(p)->head_only = llhttp_get_method(p) == HTTP_HEAD;
    return 0;
}

static int push_offset(struct keel_conn *c)
{
    uint32_t o[4] = {(uint32_t)c->hbytes.len, 0, 0, 0};

    return keel_buf_append(&c->hoffs, o, sizeof(o)) < 0 ? -1 : 0;
}

static uint32_t *last_offset(struct keel_conn *c)
{
    return (uint32_t *)(void *)(c->hoffs.data + c->hoffs.len - 4 * sizeof(uint32_t));
}

static int add_header_bytes(struct keel_conn *c, const char *at, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes > c->loop->server->cfg->max_header_bytes ||
        keel_buf_append(&c->hbytes, at, len) < 0)
        return reject(c, 431);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct keel_conn *c = conn_of(p);

    if (c->nheaders == 0 || c->in_value) {
        if (++c->nheaders > c->loop->server->cfg->max_headers || push_offset(c) < 0)
            return reject(c, 431);
        c->in_value = false;
        c->header_bytes += 4; /* ": " and CRLF count against the block */
    }
    if (add_header_bytes(c, at, len) != 0)
        return HPE_USER;
    last_offset(c)[1] += (uint32_t)len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct keel_conn *c = conn_of(p);
    uint32_t *o = last_offset(c);

    uint64_t pos = c->feed_offset + (uint64_t)(at - c->feed_base);

    if (c->in_value && pos != c->value_end) {
        /* A gap inside one value: llhttp 8 accepts obs-fold (RFC 9112
         * section 5.2) and reports the folded line as more value, skipping
         * the CRLF and blanks. Folding is a request-smuggling vector, so
         * Keel rejects it with 400. Positions are counted in the stream,
         * not the buffer, so a fold split across reads is caught too. */
        return reject(c, 400);
    }
    c->value_end = pos + len;
    if (!c->in_value) {
        c->in_value = true;
        o[2] = (uint32_t)c->hbytes.len;
    }
    /* in_value now also means "a span of this value was seen". */
    if (add_header_bytes(c, at, len) != 0)
        return HPE_USER;
    last_offset(c)[3] += (uint32_t)len;
    return 0;
}

/* Marks the end of a value even when it was empty (no on_header_value). */
static int on_header_value_complete(llhttp_t *p)
{
    conn_of(p)->in_value = true;
    return 0;
}

static bool method_of(llhttp_t *p, enum keel_method *m)
{
    switch (llhttp_get_method(p)) {
    case HTTP_GET:
        *m = KEEL_HTTP_GET;
        return true;
    case HTTP_HEAD:
        *m = KEEL_HTTP_HEAD;
        return true;
    case HTTP_POST:
        *m = KEEL_HTTP_POST;
        return true;
    case HTTP_PUT:
        *m = KEEL_HTTP_PUT;
        return true;
    case HTTP_PATCH:
        *m = KEEL_HTTP_PATCH;
        return true;
    case HTTP_DELETE:
        *m = KEEL_HTTP_DELETE;
        return true;
    case HTTP_OPTIONS:
        *m = KEEL_HTTP_OPTIONS;
        return true;
    default:
        return false;
    }
}

/* Copies the request line and headers into the request's arena. */
static int build_request(struct keel_conn *c, struct keel_request *req)
{
    char *bytes =
        keel_arena_memdup(req->arena, c->hbytes.data ? c->hbytes.data : "", c->hbytes.len + 1);
    const uint32_t *o = (const uint32_t *)(const void *)c->hoffs.data;
    const char *q, *path;
    size_t plen;
    unsigned i;

    req->headers =
        keel_arena_calloc(req->arena, c->nheaders ? c->nheaders : 1, sizeof(*req->headers));
    if (!bytes || !req->headers)
        return reject(c, 503);
    req->nheaders = 0;
    for (i = 0; i < c->nheaders; i++, o += 4) {
        const char *v = bytes + o[2];
        size_t vlen = o[3];

        /* llhttp 8 accepts obs-fold and hands the fold (CRLF + blank) over
         * inside the value; RFC 9112 section 5.2 lets a server reject it,
         * and it is a request-smuggling vector, so Keel does. */
        if (memchr(v, '\r', vlen) || memchr(v, '\n', vlen))
            return reject(c, 400);
        /* llhttp hands over values without leading blanks; trim the end. */
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        req->headers[i].name = (struct keel_str){bytes + o[0], o[1]};
        req->headers[i].value = (struct keel_str){o[3] ? v : "", vlen};
    }
    req->nheaders = c->nheaders;
    req->target = (struct keel_str){bytes, c->url_len};
    path = bytes;
    plen = c->url_len;
    if (plen > 7 &&
        (strncasecmp(path, "http://", 7) == 0 || strncasecmp(path, "https://", 8) == 0)) {
        /* absolute-form (RFC 9112 3.2.2): route by the path; the authority
         * stays informational, Host was checked already. */
        const char *slash = memchr(path + 8, '/', plen - 8);

        if (!slash)
            slash = path + plen; /* "http://host" means "/" */
        plen -= (size_t)(slash - path);
        path = slash;
        if (plen == 0) {
            path = "/";
            plen = 1;
        }
    }
    q = memchr(path, '?', plen);
    req->path = (struct keel_str){path, q ? (size_t)(q - path) : plen};
    if (q)
        req->query = (struct keel_str){q + 1, plen - req->path.len - 1};
    return 0;
}

static void route(struct keel_conn *c, struct keel_request *req)
{
    struct keel_match m;
    unsigned i;

    keel_router_match(c->loop->server->router, req->method, req->path.p, req->path.len, &m);
    req->route = m.route;
    req->route_miss = m.miss;
    req->route_allow = m.allow;
    req->route_auto_options = m.auto_options;
    req->route_pattern = m.label;
    req->nparams = m.nparams;
    for (i = 0; i < m.nparams; i++) {
        req->param_names[i] = m.names[i];
        req->params[i] = m.values[i];
    }
}

static int check_expect(struct keel_conn *c, struct keel_request *req, bool has_body)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    const struct keel_header *h = keel_request_header(req, "Expect");
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)cont, sizeof(cont) - 1);

    if (!h)
        return 0;
    if (!keel_str_caseeq(h->value, "100-continue"))
        return reject(c, 417);
    if (!has_body || req->http_minor == 0)
        return 0;
    /* Tiny and first on the wire: if the socket cannot take 25 bytes now,
     * the client is not reading, and it will send the body anyway after
     * its own timeout (RFC 9110 section 10.1.1). */
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct keel_conn *c = conn_of(p);
    struct keel_request *req = c->req;
    const struct keel_config *cfg = c->loop->server->cfg;
    bool has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    size_t limit;
    unsigned hosts;

    if (build_request(c, req) != 0)
        return HPE_USER;
    if (p->http_major != 1)
        return reject(c, 505);
    req->http_minor = p->http_minor;
    if (!method_of(p, &req->method))
        return reject(c, 501);
    req->method_name = keel_http_method_name(req->method);
    c->head_only = req->method == KEEL_HTTP_HEAD;
    hosts = keel_request_header_count(req, "Host");
    if (hosts > 1 || (hosts == 0 && req->http_minor == 1))
        return reject(c, 400);
    /* llhttp does not flag an empty Transfer-Encoding; any Transfer-
     * Encoding beside a Content-Length is a smuggling shape (RFC 9112 6.1). */
    if (keel_request_header(req, "Transfer-Encoding") && keel_request_header(req, "Content-Length"))
        return reject(c, 400);
    route(c, req);
    limit = req->route && req->route->max_body ? req->route->max_body : cfg->max_body_bytes;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > limit)
        return reject(c, 413);
    keel_buf_init(&req->body_buf, limit);
    if (check_expect(c, req, has_body) != 0)
        return HPE_USER;
    if (has_body) {
        c->state = CONN_BODY;
        keel__conn_arm(c, cfg->body_timeout_ms);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct keel_conn *c = conn_of(p);

    if (keel_buf_append(&c->req->body_buf, at, len) < 0)
        return reject(c, 413);
    keel__conn_arm(c, c->loop->server->cfg->body_timeout_ms);
    return 0;
}

/* True when a Connection header lists `close`. llhttp misses the token when
 * a tab follows it ("close\t"), so Keel reads the header itself. */
static bool wants_close(const struct keel_request *req)
{
    unsigned i;

    for (i = 0; i < req->nheaders; i++) {
        const struct keel_header *h = &req->headers[i];
        const char *p = h->value.p, *end = p + h->value.len, *tok, *te;

        if (!keel_str_caseeq(h->name, "Connection"))
            continue;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            tok = p;
            while (p < end && *p != ',')
                p++;
            for (te = p; te > tok && (te[-1] == ' ' || te[-1] == '\t'); te--)
                ;
            if (keel_str_caseeq((struct keel_str){tok, (size_t)(te - tok)}, "close"))
                return true;
        }
    }
    return false;
}

static int on_message_complete(llhttp_t *p)
{
    struct keel_conn *c = conn_of(p);
    struct keel_request *req = c->req;

    req->body = req->body_buf.data;
    req->body_len = req->body_buf.len;
    c->keep_alive = llhttp_should_keep_alive(p) && !wants_close(req);
    c->message_done = true;
    keel_buf_free(&c->hbytes);
    keel_buf_free(&c->hoffs);
    /* Pause: the connection runs this request before parsing the next. */
    return HPE_PAUSED;
}

const llhttp_settings_t keel__parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_method_complete = on_method_complete,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
