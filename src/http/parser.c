/*
 * parser.c - the message parser of a connection: llhttp and its callbacks,
 * which turn parser events into a keel_request and enforce the message
 * limits (SPEC section 2, phase 1).
 *
 * DESIGN: llhttp runs in strict mode (no lenient flags are ever set), so it
 * rejects the request-smuggling shapes itself: Content-Length together with
 * Transfer-Encoding, duplicate or malformed Content-Length, bad chunk
 * sizes, obs-fold, bare CR or LF, NUL. The callbacks add what llhttp leaves
 * to the server: size and count limits (414, 431, 413), the Host rule of
 * RFC 9112 section 3.2, the method set (501), the version (505), and the
 * Expect rule (417).
 *
 * Request-line and header bytes may arrive split anywhere, so they are
 * appended to scratch buffers with offsets, and turned into the request's
 * header array (one arena copy) when the head completes. The request is
 * routed then, so the route's body limit and body mode apply while its
 * body is read.
 *
 * Pauses: the parser stops where the connection must decide. A message
 * with a body pauses at the end of its head (KEEL_PARSE_HEADERS), so the
 * access phases run before a byte of the body is read; every message
 * pauses at its end (KEEL_PARSE_MESSAGE); a streamed body pauses when its
 * sink is busy (KEEL_PARSE_BUSY). This file never touches the socket or
 * the timers: it reports, conn.c acts.
 */
#include <string.h>
#include <strings.h>

#include "keel/router.h"

#include "http/http_int.h"

static struct keel_parser *parser_of(llhttp_t *ll)
{
    return ll->data;
}

static const struct keel_config *cfg_of(const struct keel_parser *p)
{
    return p->srv->cfg;
}

static int reject(struct keel_parser *p, int status)
{
    p->status = status;
    return HPE_USER;
}

void keel__parser_reset(struct keel_parser *p)
{
    keel_buf_free(&p->hbytes);
    keel_buf_free(&p->hoffs);
    p->url_len = 0;
    p->in_value = false;
    p->nheaders = 0;
    p->header_bytes = 0;
    p->status = 0;
    p->sink_rc = KEEL_OK;
    p->expect_continue = false;
}

static int on_message_begin(llhttp_t *ll)
{
    struct keel_parser *p = parser_of(ll);
    const struct keel_config *cfg = cfg_of(p);

    keel__parser_reset(p);
    keel_buf_init(&p->hbytes, cfg->max_uri_bytes + cfg->max_header_bytes + 64);
    keel_buf_init(&p->hoffs, (size_t)cfg->max_headers * 4 * sizeof(uint32_t));
    p->req = keel__request_new(p->conn);
    p->head_only = false;
    p->begun = p->req;
    return p->req ? 0 : reject(p, 503);
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    struct keel_parser *p = parser_of(ll);

    if (p->url_len + len > cfg_of(p)->max_uri_bytes)
        return reject(p, 414);
    if (keel_buf_append(&p->hbytes, at, len) < 0)
        return reject(p, 414);
    p->url_len += (uint32_t)len;
    return 0;
}

/* Known as soon as the method is: a HEAD request's error response must not
 * carry a body either. */
static int on_method_complete(llhttp_t *ll)
{
    parser_of(ll)->head_only = llhttp_get_method(ll) == HTTP_HEAD;
    return 0;
}

static int push_offset(struct keel_parser *p)
{
    uint32_t o[4] = {(uint32_t)p->hbytes.len, 0, 0, 0};

    return keel_buf_append(&p->hoffs, o, sizeof(o)) < 0 ? -1 : 0;
}

static uint32_t *last_offset(struct keel_parser *p)
{
    return (uint32_t *)(void *)(p->hoffs.data + p->hoffs.len - 4 * sizeof(uint32_t));
}

static int add_header_bytes(struct keel_parser *p, const char *at, size_t len)
{
    p->header_bytes += len;
    if (p->header_bytes > cfg_of(p)->max_header_bytes || keel_buf_append(&p->hbytes, at, len) < 0)
        return reject(p, 431);
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct keel_parser *p = parser_of(ll);

    if (p->nheaders == 0 || p->in_value) {
        if (++p->nheaders > cfg_of(p)->max_headers || push_offset(p) < 0)
            return reject(p, 431);
        p->in_value = false;
        p->header_bytes += 4; /* ": " and CRLF count against the block */
    }
    if (add_header_bytes(p, at, len) != 0)
        return HPE_USER;
    last_offset(p)[1] += (uint32_t)len;
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct keel_parser *p = parser_of(ll);
    uint32_t *o = last_offset(p);
    uint64_t pos = p->feed_offset + (uint64_t)(at - p->feed_base);

    if (p->in_value && pos != p->value_end) {
        /* A gap inside one value: llhttp 8 accepts obs-fold (RFC 9112
         * section 5.2) and reports the folded line as more value, skipping
         * the CRLF and blanks. Folding is a request-smuggling vector, so
         * Keel rejects it with 400. Positions are counted in the stream,
         * not the buffer, so a fold split across reads is caught too. */
        return reject(p, 400);
    }
    p->value_end = pos + len;
    if (!p->in_value) {
        p->in_value = true;
        o[2] = (uint32_t)p->hbytes.len;
    }
    /* in_value now also means "a span of this value was seen". */
    if (add_header_bytes(p, at, len) != 0)
        return HPE_USER;
    last_offset(p)[3] += (uint32_t)len;
    return 0;
}

/* Marks the end of a value even when it was empty (no on_header_value). */
static int on_header_value_complete(llhttp_t *ll)
{
    parser_of(ll)->in_value = true;
    return 0;
}

static bool method_of(llhttp_t *ll, enum keel_method *m)
{
    static const struct {
        int ll;
        enum keel_method m;
    } map[] = {
        {HTTP_GET, KEEL_HTTP_GET},         {HTTP_HEAD, KEEL_HTTP_HEAD},
        {HTTP_POST, KEEL_HTTP_POST},       {HTTP_PUT, KEEL_HTTP_PUT},
        {HTTP_PATCH, KEEL_HTTP_PATCH},     {HTTP_DELETE, KEEL_HTTP_DELETE},
        {HTTP_OPTIONS, KEEL_HTTP_OPTIONS},
    };
    int method = llhttp_get_method(ll);
    size_t i;

    for (i = 0; i < KEEL_ARRAY_LEN(map); i++) {
        if (map[i].ll == method) {
            *m = map[i].m;
            return true;
        }
    }
    return false;
}

/* absolute-form (RFC 9112 3.2.2): route by the path; the authority stays
 * informational, Host was checked already. */
static void strip_authority(const char **path, size_t *plen)
{
    const char *slash;

    if (*plen <= 7 ||
        (strncasecmp(*path, "http://", 7) != 0 && strncasecmp(*path, "https://", 8) != 0))
        return;
    slash = memchr(*path + 8, '/', *plen - 8);
    if (!slash)
        slash = *path + *plen; /* "http://host" means "/" */
    *plen -= (size_t)(slash - *path);
    *path = slash;
    if (*plen == 0) {
        *path = "/";
        *plen = 1;
    }
}

/* Copies the request line and headers into the request's arena. */
static int build_request(struct keel_parser *p, struct keel_request *req)
{
    char *bytes =
        keel_arena_memdup(req->arena, p->hbytes.data ? p->hbytes.data : "", p->hbytes.len + 1);
    const uint32_t *o = (const uint32_t *)(const void *)p->hoffs.data;
    const char *q, *path;
    size_t plen;
    unsigned i;

    req->headers =
        keel_arena_calloc(req->arena, p->nheaders ? p->nheaders : 1, sizeof(*req->headers));
    if (!bytes || !req->headers)
        return reject(p, 503);
    req->nheaders = 0;
    for (i = 0; i < p->nheaders; i++, o += 4) {
        const char *v = bytes + o[2];
        size_t vlen = o[3];

        /* llhttp 8 accepts obs-fold and hands the fold (CRLF + blank) over
         * inside the value; RFC 9112 section 5.2 lets a server reject it,
         * and it is a request-smuggling vector, so Keel does. */
        if (memchr(v, '\r', vlen) || memchr(v, '\n', vlen))
            return reject(p, 400);
        /* llhttp hands over values without leading blanks; trim the end. */
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        req->headers[i].name = (struct keel_str){bytes + o[0], o[1]};
        req->headers[i].value = (struct keel_str){o[3] ? v : "", vlen};
    }
    req->nheaders = p->nheaders;
    req->target = (struct keel_str){bytes, p->url_len};
    path = bytes;
    plen = p->url_len;
    strip_authority(&path, &plen);
    q = memchr(path, '?', plen);
    req->path = (struct keel_str){path, q ? (size_t)(q - path) : plen};
    if (q)
        req->query = (struct keel_str){q + 1, plen - req->path.len - 1};
    return 0;
}

static void route(struct keel_parser *p, struct keel_request *req)
{
    struct keel_match m;
    unsigned i;

    keel_router_match(p->srv->router, req->method, req->path.p, req->path.len, &m);
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

/* Expect (RFC 9110 section 10.1.1): only 100-continue is known (else
 * 417). The interim answer itself is the connection's to send, once the
 * access phases let the body in. */
static int check_expect(struct keel_parser *p, struct keel_request *req, bool has_body)
{
    const struct keel_header *h = keel_request_header(req, "Expect");

    if (!h)
        return 0;
    if (!keel_str_caseeq(h->value, "100-continue"))
        return reject(p, 417);
    p->expect_continue = has_body && req->http_minor == 1;
    return 0;
}

/* The head's rules: version, method, Host, framing. */
static int check_head(struct keel_parser *p, llhttp_t *ll, struct keel_request *req)
{
    unsigned hosts;

    if (build_request(p, req) != 0)
        return HPE_USER;
    if (ll->http_major != 1)
        return reject(p, 505);
    req->http_minor = ll->http_minor;
    if (!method_of(ll, &req->method))
        return reject(p, 501);
    req->method_name = keel_http_method_name(req->method);
    p->head_only = req->method == KEEL_HTTP_HEAD;
    hosts = keel_request_header_count(req, "Host");
    if (hosts > 1 || (hosts == 0 && req->http_minor == 1))
        return reject(p, 400);
    /* llhttp does not flag an empty Transfer-Encoding; any Transfer-
     * Encoding beside a Content-Length is a smuggling shape (RFC 9112 6.1). */
    if (keel_request_header(req, "Transfer-Encoding") && keel_request_header(req, "Content-Length"))
        return reject(p, 400);
    return 0;
}

static bool wants_close(const struct keel_request *req);

static int on_headers_complete(llhttp_t *ll)
{
    struct keel_parser *p = parser_of(ll);
    struct keel_request *req = p->req;
    bool has_body =
        (ll->flags & F_CHUNKED) || ((ll->flags & F_CONTENT_LENGTH) && ll->content_length);
    size_t limit;

    if (check_head(p, ll, req) != 0)
        return HPE_USER;
    route(p, req);
    limit = req->route && req->route->max_body ? req->route->max_body : cfg_of(p)->max_body_bytes;
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > limit)
        return reject(p, 413);
    req->body_limit = limit;
    if (!req->route || req->route->body != KEEL_BODY_STREAM)
        keel_buf_init(&req->body_buf, limit);
    if (check_expect(p, req, has_body) != 0)
        return HPE_USER;
    p->conn_close = wants_close(req);
    /* A body waits until the access phases have run. */
    return has_body ? HPE_PAUSED : 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct keel_parser *p = parser_of(ll);
    struct keel_request *req = p->req;
    keel_status rc;

    p->body_progress = true;
    if (p->discard)
        return 0;
    req->body_received += len;
    if (req->body_received > req->body_limit)
        return reject(p, 413);
    if (!req->route || req->route->body != KEEL_BODY_STREAM)
        return keel_buf_append(&req->body_buf, at, len) < 0 ? reject(p, 413) : 0;
    rc = req->route->sink->write(req, at, len);
    if (rc == KEEL_AGAIN)
        return HPE_PAUSED; /* the bytes were taken; no more until the sink resumes */
    if (rc < 0) {
        p->sink_rc = rc;
        return HPE_USER;
    }
    return 0;
}

/* True when a Connection header lists `close`. llhttp misses the token when
 * a tab follows it ("close\t"), so Keel reads the header itself. */
static bool wants_close(const struct keel_request *req)
{
    unsigned i;

    for (i = 0; i < req->nheaders; i++) {
        const struct keel_header *h = &req->headers[i];
        const char *s = h->value.p, *end = s + h->value.len, *tok, *te;

        if (!keel_str_caseeq(h->name, "Connection"))
            continue;
        while (s < end) {
            while (s < end && (*s == ' ' || *s == '\t' || *s == ','))
                s++;
            tok = s;
            while (s < end && *s != ',')
                s++;
            for (te = s; te > tok && (te[-1] == ' ' || te[-1] == '\t'); te--)
                ;
            if (keel_str_caseeq((struct keel_str){tok, (size_t)(te - tok)}, "close"))
                return true;
        }
    }
    return false;
}

static int on_message_complete(llhttp_t *ll)
{
    struct keel_parser *p = parser_of(ll);
    struct keel_request *req = p->req;

    if (req) {
        req->body = req->body_buf.data;
        req->body_len = req->body_buf.len;
    }
    p->discard = false;
    p->keep_alive = llhttp_should_keep_alive(ll) && !p->conn_close;
    keel_buf_free(&p->hbytes);
    keel_buf_free(&p->hoffs);
    p->req = NULL; /* the connection has it */
    /* Pause: the connection runs this request before parsing the next. */
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
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

void keel__parser_init(struct keel_parser *p, struct keel_conn *c, const struct keel_server *srv)
{
    llhttp_init(&p->ll, HTTP_REQUEST, &settings);
    p->ll.data = p;
    p->conn = c;
    p->srv = srv;
}

/* Which pause it was: the end of a message (p->req was handed over), a
 * busy sink (body bytes came in this feed: a sink only pauses in on_body),
 * or the head of a message with a body. */
static enum keel_parse_event pause_event(const struct keel_parser *p)
{
    if (!p->req)
        return KEEL_PARSE_MESSAGE;
    return p->body_progress ? KEEL_PARSE_BUSY : KEEL_PARSE_HEADERS;
}

enum keel_parse_event
keel__parser_feed(struct keel_parser *p, const char *data, size_t len, size_t *used)
{
    llhttp_errno_t err;

    p->begun = NULL;
    p->body_progress = false;
    p->feed_base = data;
    err = llhttp_execute(&p->ll, data, len);
    *used = err == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&p->ll) - data);
    p->feed_offset += *used;
    if (err == HPE_OK)
        return KEEL_PARSE_MORE;
    if (err == HPE_PAUSED) {
        enum keel_parse_event ev = pause_event(p);

        if (ev == KEEL_PARSE_MESSAGE)
            llhttp_resume(&p->ll); /* the next message is parsed only when fed */
        return ev;
    }
    if (!p->status && !p->sink_rc)
        /* llhttp reports a bad character after a well-formed "HTTP/1.1" as
         * a version error too; only a version other than 1.x is a 505. */
        p->status = err == HPE_INVALID_VERSION && p->ll.http_major >= 2 ? 505 : 400;
    return KEEL_PARSE_ERROR;
}

void keel__parser_resume(struct keel_parser *p)
{
    llhttp_resume(&p->ll);
}

bool keel__parser_discardable(const struct keel_parser *p)
{
    return !(p->ll.flags & F_CHUNKED) && p->ll.content_length <= KEEL_DISCARD_MAX &&
           !p->expect_continue;
}

void keel__parser_discard(struct keel_parser *p)
{
    p->discard = true;
    p->req = NULL;
    llhttp_resume(&p->ll);
}

int keel__parser_error_status(const struct keel_parser *p)
{
    return p->status;
}
