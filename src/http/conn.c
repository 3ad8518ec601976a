/*
 * conn.c - one HTTP/1.1 connection on a loop: reading, handing bytes to
 * its parser, running requests, pipelining, timeouts, writing with
 * backpressure, and closing.
 *
 * DESIGN: a connection handles one request at a time, like nginx. Bytes
 * are read into the loop's shared buffer and parsed in place; the parser
 * copies what it keeps, so an idle connection holds no buffer at all
 * (memory per idle connection is the struct itself). The parser pauses
 * where a decision is due (parser.c): at the end of a head that announces
 * a body, at the end of a message, and when a streamed body's sink is
 * busy. On a pause the unparsed rest is saved in `pending`, reading stops,
 * and the request runs: from the head for a message with a body, so the
 * access phases answer before its body is read (a refused request's body
 * is not read: the connection closes after the answer, unless the body is
 * small enough to drop and keep the connection, KEEL_DISCARD_MAX); the BODY phase
 * then asks for the body (keel__conn_read_body), which this file reads
 * while the request waits. Once a response is written the next pending
 * message is parsed, so responses go out in request order and a client
 * that pipelines faster than it reads is held back by TCP itself: we never
 * read more than one buffer ahead.
 *
 * Writes try uv_try_write first (most responses fit the socket buffer at
 * once); the rest goes through uv_write and the next request waits for it.
 * Streaming bodies are produced one chunk at a time as each write
 * completes, so output buffered for a slow reader is bounded by one chunk.
 *
 * One timer per connection serves every timeout; what it means depends on
 * the state: header (armed once at the first byte, so a slowloris client
 * cannot extend it), body idle (re-armed on each body byte), keep-alive
 * idle, send (re-armed on each completed write), and linger.
 */
#include <stdlib.h>
#include <string.h>

#include "keel/log.h"
#include "keel/runtime.h"

#include "http/http_int.h"

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void conn_advance(struct keel_conn *c);

static const struct keel_config *cfg_of(const struct keel_conn *c)
{
    return c->loop->server->cfg;
}

/* --------------------------------------------------------------- timers */

static void on_timeout(uv_timer_t *t);

static void arm(struct keel_conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timeout, ms, 0);
}

/* ---------------------------------------------------------------- holds */

void keel__conn_hold(struct keel_conn *c)
{
    c->refs++;
}

static void conn_free(struct keel_conn *c)
{
    struct keel_http_loop *loop = c->loop;

    if (c->req)
        keel__request_finish(c->req);
    keel__parser_reset(&c->parser);
    keel_buf_free(&c->out);
    keel_buf_free(&c->chunk);
    free(c->pending);
    if (c->prev)
        c->prev->next = c->next;
    else
        loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    loop->nconns--;
    atomic_fetch_sub(&loop->server->nconns, 1);
    keel_loop_release(loop->id);
    free(c);
}

void keel__conn_release(struct keel_conn *c)
{
    KEEL_ASSERT(c->refs > 0);
    if (--c->refs == 0 && c->freed_on_close)
        conn_free(c);
}

/* -------------------------------------------------------------- closing */

static void on_timer_closed(uv_handle_t *h)
{
    struct keel_conn *c = h->data;

    if (c->refs > 0) {
        c->freed_on_close = true; /* a waiting request still points at it */
        return;
    }
    conn_free(c);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct keel_conn *c = h->data;

    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void keel__conn_close(struct keel_conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    uv_timer_stop(&c->timer);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    if (c->body_wait) {
        /* Its body will never come: end the wait, which drops it. */
        c->body_wait = false;
        keel_request_resume(c->req, KEEL_DONE);
    }
}

/* ------------------------------------------------------------ lingering */

static void on_linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct keel_conn *c = s->data;

    (void)buf;
    if (nread > 0)
        c->lingered += (size_t)nread;
    if (nread < 0 || c->lingered > KEEL_LINGER_MAX_BYTES)
        keel__conn_close(c);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    struct keel_conn *c = sr->data;

    if (c->state == CONN_CLOSING)
        return;
    if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_linger_read) < 0) {
        keel__conn_close(c);
        return;
    }
    arm(c, KEEL_LINGER_MS);
}

/* Closes after the response: shut the write side so the client sees the
 * whole response, then read and discard what it still sends for a moment
 * (at most KEEL_LINGER_MAX_BYTES: a refused body is not read to its end),
 * because closing a socket with unread input makes the kernel send RST,
 * which can destroy the response before the client reads it. */
static void conn_linger(struct keel_conn *c)
{
    c->state = CONN_LINGER;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        keel__conn_close(c);
    else
        arm(c, KEEL_LINGER_MS);
}

/* -------------------------------------------------------------- writing */

static void write_done(struct keel_conn *c);

static void on_write(uv_write_t *w, int status)
{
    struct keel_conn *c = w->data;

    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        keel__conn_close(c);
        return;
    }
    write_done(c);
}

/* Writes bufs; calls write_done at once when everything went out, else
 * when uv_write completes. */
static void send_bufs(struct keel_conn *c, uv_buf_t *bufs, unsigned n)
{
    size_t total = 0, left;
    unsigned i;
    int w;

    for (i = 0; i < n; i++)
        total += bufs[i].len;
    w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (w == UV_EAGAIN || w == UV_ENOSYS)
        w = 0;
    if (w < 0) {
        keel__conn_close(c);
        return;
    }
    if ((size_t)w == total) {
        write_done(c);
        return;
    }
    left = (size_t)w;
    for (i = 0; i < n && left >= bufs[i].len; i++)
        left -= bufs[i].len;
    bufs[i].base += left;
    bufs[i].len -= left;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs + i, n - i, on_write) < 0) {
        keel__conn_close(c);
        return;
    }
    arm(c, cfg_of(c)->send_timeout_ms);
}

static void stream_next(struct keel_conn *c)
{
    struct keel_request *req = c->req;
    uint64_t left = req->resp.stream_len - c->stream_sent;
    size_t max = left < KEEL_STREAM_CHUNK ? (size_t)left : KEEL_STREAM_CHUNK;
    keel_status rc;
    uv_buf_t b;

    if (!c->chunk.data)
        keel_buf_init(&c->chunk, KEEL_STREAM_CHUNK);
    keel_buf_reset(&c->chunk);
    rc = req->resp.stream_fn(req, &c->chunk, max);
    if (rc < 0 || c->chunk.len == 0 || c->chunk.len > left) {
        /* The length was promised in the head: cutting the connection is
         * the only honest way to signal a failed stream. */
        keel_log(KEEL_LOG_ERROR, "stream failed", KEEL_LF_STR("request_id", req->request_id));
        keel__conn_close(c);
        return;
    }
    c->stream_sent += c->chunk.len;
    b = uv_buf_init(c->chunk.data, (unsigned)c->chunk.len);
    send_bufs(c, &b, 1);
}

static void write_done(struct keel_conn *c)
{
    struct keel_request *req = c->req;

    if (req && req->resp.stream_fn && !c->parser.head_only &&
        c->stream_sent < req->resp.stream_len) {
        stream_next(c);
        return;
    }
    uv_timer_stop(&c->timer);
    if (req) {
        keel__pipeline_log(req);
        keel__request_finish(req);
        c->req = NULL;
    }
    keel_buf_free(&c->chunk);
    if (!c->keep_alive) {
        conn_linger(c);
        return;
    }
    if (!c->message_read) { /* a small refused body: drop it, keep the connection */
        c->discarding = true;
        keel__parser_discard(&c->parser);
        c->state = CONN_BODY;
        arm(c, cfg_of(c)->body_timeout_ms);
        conn_advance(c);
        return;
    }
    c->state = CONN_IDLE;
    conn_advance(c);
}

/* Sends the response of c->req, whose head and body are complete. A
 * request answered before its whole message was read (refused at its
 * head, or failed half-way through its body) leaves unread input behind
 * that is no request: the connection closes after it. */
void keel__conn_send(struct keel_conn *c)
{
    struct keel_request *req = c->req;
    bool head_only = c->parser.head_only;
    uv_buf_t bufs[2];
    unsigned n = 1;

    if (c->state == CONN_CLOSING)
        return;
    if (c->loop->draining || cfg_of(c)->keepalive_timeout_ms == 0 ||
        (!c->message_read && !keel__parser_discardable(&c->parser)))
        req->resp.keep_alive = false;
    c->keep_alive = c->keep_alive && req->resp.keep_alive;
    req->resp.keep_alive = c->keep_alive;
    keel_buf_reset(&c->out);
    c->out.max = SIZE_MAX / 2;
    if (keel__resp_head(req, &c->out, head_only) < 0) {
        keel__conn_close(c);
        return;
    }
    c->state = CONN_WRITING;
    c->stream_sent = 0;
    bufs[0] = uv_buf_init(c->out.data, (unsigned)c->out.len);
    if (!head_only && !req->resp.stream_fn && req->resp.body.len)
        bufs[n++] = uv_buf_init(req->resp.body.data, (unsigned)req->resp.body.len);
    send_bufs(c, bufs, n);
}

/* Answers a request the parser (or a timer) refused and closes. A request
 * waiting for its body gets the error as its result; otherwise the answer
 * is made here. */
static void send_early_error(struct keel_conn *c, int status, keel_status rc, const char *detail)
{
    struct keel_request *req = c->req;

    c->keep_alive = false;
    if (c->body_wait) {
        c->body_wait = false;
        c->state = CONN_BUSY;
        uv_timer_stop(&c->timer);
        if (status)
            rc = keel_fail(req, status, NULL, "%s", detail);
        keel_request_resume(req, rc);
        return;
    }
    if (!req) {
        req = keel__request_new(c);
        if (!req) {
            keel__conn_close(c);
            return;
        }
        c->req = req;
    }
    c->state = CONN_BUSY;
    req->resp.keep_alive = false;
    keel_fail(req, status ? status : keel_status_http(rc), NULL, "%s", detail);
    keel__pipeline_respond(req);
}

/* -------------------------------------------------------------- reading */

/* The request the parser began (it owns the head until then). */
static void adopt(struct keel_conn *c)
{
    const struct keel_parser *p = &c->parser;

    if (p->begun) {
        c->req = p->begun;
        c->message_read = false;
        c->state = CONN_HEAD;
        if (!c->timer_header_armed) {
            /* Armed once for the whole head: slowloris defence. */
            c->timer_header_armed = true;
            arm(c, cfg_of(c)->header_timeout_ms);
        }
    }
    if (p->body_progress)
        arm(c, cfg_of(c)->body_timeout_ms);
}

/* Feeds data to the parser. Returns the bytes consumed; sets c->event
 * when the parser paused, or answers the error and closes. */
static size_t feed(struct keel_conn *c, const char *data, size_t len, bool *failed)
{
    struct keel_parser *p = &c->parser;
    enum keel_parse_event ev;
    size_t used;

    *failed = false;
    ev = keel__parser_feed(p, data, len, &used);
    adopt(c);
    c->event = ev == KEEL_PARSE_ERROR ? KEEL_PARSE_MORE : ev;
    if (ev != KEEL_PARSE_ERROR)
        return used;
    *failed = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (p->sink_rc < 0)
        send_early_error(c, 0, p->sink_rc, "");
    else
        send_early_error(c, p->status, KEEL_E_INVALID,
                         p->status == 400 ? "malformed request" : keel_http_reason(p->status));
    return used;
}

static void save_pending(struct keel_conn *c, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (c->pending_len + n > c->pending_cap) {
        c->pending_cap = c->pending_len + n;
        c->pending = keel_xrealloc(c->pending, c->pending_cap);
    }
    memcpy(c->pending + c->pending_len, p, n);
    c->pending_len += n;
}

static void pause_input(struct keel_conn *c, enum conn_state state)
{
    c->state = state;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
}

/* Acts on the pause the last feed ended with. */
static void on_event(struct keel_conn *c)
{
    enum keel_parse_event ev = c->event;

    c->event = KEEL_PARSE_MORE;
    switch (ev) {
    case KEEL_PARSE_HEADERS: /* the access phases run before the body */
        pause_input(c, CONN_BUSY);
        keel__pipeline_start(c->req);
        break;
    case KEEL_PARSE_MESSAGE:
        c->message_read = true;
        c->keep_alive = c->keep_alive && c->parser.keep_alive;
        if (c->discarding) { /* the answered request's body is gone: next */
            c->discarding = false;
            c->state = CONN_IDLE;
            if (c->keep_alive)
                conn_advance(c);
            else
                conn_linger(c);
            break;
        }
        pause_input(c, CONN_BUSY);
        if (c->body_wait) { /* the body the pipeline asked for is in */
            c->body_wait = false;
            keel_request_resume(c->req, KEEL_DECLINED);
        } else {
            keel__pipeline_start(c->req);
        }
        break;
    case KEEL_PARSE_BUSY: /* until keel_request_body_resume */
        pause_input(c, CONN_BODY_BUSY);
        break;
    case KEEL_PARSE_MORE:
    case KEEL_PARSE_ERROR:
        break;
    }
}

/* Every read lands in the loop's one buffer: callbacks on a loop never
 * nest, and whatever must outlive the callback is copied out of it. */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct keel_conn *c = h->data;

    (void)hint;
    buf->base = c->loop->rbuf;
    buf->len = KEEL_READ_BUF;
}

static void start_reading(struct keel_conn *c)
{
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        keel__conn_close(c);
}

/* Waits for the next request: the keep-alive timer when idle, reading in
 * every state that expects input. */
static void wait_input(struct keel_conn *c)
{
    if (c->pending_len == 0 && c->pending_cap > 0) {
        free(c->pending);
        c->pending = NULL;
        c->pending_cap = 0;
    }
    if (c->state == CONN_IDLE) {
        if (c->loop->draining) {
            keel__conn_close(c);
            return;
        }
        keel__parser_reset(&c->parser);
        c->timer_header_armed = false;
        arm(c, cfg_of(c)->keepalive_timeout_ms);
    }
    start_reading(c);
}

static bool reading(const struct keel_conn *c)
{
    return c->state == CONN_IDLE || c->state == CONN_HEAD || c->state == CONN_BODY;
}

/* Parses pending (pipelined) input while the connection reads. A request
 * that completes synchronously re-enters through write_done, and a
 * pipeline that asks for its body through keel__conn_read_body; a
 * re-entry only flags another round, so a long pipeline is served by this
 * loop instead of by recursion. */
static void conn_advance(struct keel_conn *c)
{
    bool failed;
    size_t used;

    if (c->advancing) {
        c->advance_again = true;
        return;
    }
    c->advancing = true;
    for (;;) {
        c->advance_again = false;
        if (!reading(c))
            break;
        if (c->pending_len == 0) {
            wait_input(c);
            break;
        }
        used = feed(c, c->pending, c->pending_len, &failed);
        if (failed)
            break;
        memmove(c->pending, c->pending + used, c->pending_len - used);
        c->pending_len -= used;
        if (c->event != KEEL_PARSE_MORE) {
            on_event(c);
            if (!c->advance_again)
                break;
        }
    }
    c->advancing = false;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct keel_conn *c = s->data;
    size_t used = 0;
    bool failed = false;

    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF or error. A half-read request cannot be answered. */
        keel__conn_close(c);
        return;
    }
    if (reading(c)) {
        used = feed(c, buf->base, (size_t)nread, &failed);
        if (failed)
            return;
    }
    save_pending(c, buf->base + used, (size_t)nread - used);
    if (c->event != KEEL_PARSE_MORE)
        on_event(c);
}

/* ------------------------------------------------------------ the body */

static void send_continue(struct keel_conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)cont, sizeof(cont) - 1);

    /* Tiny and first on the wire: if the socket cannot take 25 bytes now,
     * the client is not reading, and it will send the body anyway after
     * its own timeout (RFC 9110 section 10.1.1). */
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
}

static void body_continue(struct keel_conn *c)
{
    bool failed;

    keel__parser_resume(&c->parser);
    c->state = CONN_BODY;
    arm(c, cfg_of(c)->body_timeout_ms);
    if (c->pending_len == 0) {
        /* A sink may pause on the body's last bytes: the end of the
         * message is still to be reported, and that needs no input. */
        (void)feed(c, c->loop->rbuf, 0, &failed);
        if (failed)
            return;
        if (c->event != KEEL_PARSE_MORE) {
            on_event(c);
            return;
        }
    }
    conn_advance(c);
}

keel_status keel__conn_read_body(struct keel_conn *c)
{
    struct keel_request *req = c->req;
    const struct keel_route *r = req->route;
    keel_status rc;

    if (c->message_read)
        return KEEL_DECLINED;
    if (r && r->body == KEEL_BODY_STREAM && r->sink->open) {
        rc = r->sink->open(req);
        if (rc < 0)
            return rc;
    }
    rc = keel_request_park(req);
    c->body_wait = true;
    if (c->parser.expect_continue)
        send_continue(c);
    body_continue(c);
    return rc;
}

void keel_request_body_resume(struct keel_request *req)
{
    struct keel_conn *c = req->conn;

    if (c->state == CONN_BODY_BUSY)
        body_continue(c);
}

/* ------------------------------------------------------------- timeouts */

static void on_timeout(uv_timer_t *t)
{
    struct keel_conn *c = t->data;

    switch (c->state) {
    case CONN_HEAD:
    case CONN_BODY:
        uv_read_stop((uv_stream_t *)&c->tcp);
        if (c->discarding) { /* nothing is owed to a body we drop */
            keel__conn_close(c);
            break;
        }
        send_early_error(c, 408, KEEL_E_TIMEOUT, "the request was not received in time");
        break;
    case CONN_IDLE:
    case CONN_WRITING:
    case CONN_LINGER:
        keel__conn_close(c);
        break;
    case CONN_BODY_BUSY:
    case CONN_BUSY:
    case CONN_CLOSING:
        break;
    }
}

/* ------------------------------------------------------------ accepting */

static struct keel_conn *conn_new(struct keel_http_loop *loop)
{
    struct keel_conn *c = keel_xcalloc(1, sizeof(*c));

    c->loop = loop;
    uv_tcp_init(loop->uv, &c->tcp);
    uv_timer_init(loop->uv, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->next = loop->conns;
    if (loop->conns)
        loop->conns->prev = c;
    loop->conns = c;
    loop->nconns++;
    atomic_fetch_add(&loop->server->nconns, 1);
    keel_loop_hold(loop->id);
    return c;
}

static void conn_start(struct keel_conn *c)
{
    keel__parser_init(&c->parser, c, c->loop->server);
    c->state = CONN_IDLE;
    c->keep_alive = true;
    /* A new connection gets the header timeout, not the keep-alive one: it
     * should send a request now, not park. */
    c->timer_header_armed = true;
    start_reading(c);
    arm(c, cfg_of(c)->header_timeout_ms);
}

void keel__conn_accept(struct keel_http_loop *loop)
{
    struct keel_server *srv = loop->server;
    unsigned n = atomic_load(&srv->nconns);
    struct keel_conn *c = conn_new(loop);

    if (uv_accept((uv_stream_t *)&loop->listener, (uv_stream_t *)&c->tcp) < 0) {
        keel__conn_close(c);
        return;
    }
    if (n >= srv->cfg->max_connections || loop->draining) {
        /* Over the limit: refuse this one cleanly, keep serving the rest. */
        keel__conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_start(c);
}

keel_status keel__conn_open(struct keel_http_loop *loop, int fd)
{
    struct keel_conn *c = conn_new(loop);

    if (uv_tcp_open(&c->tcp, fd) < 0) {
        keel__conn_close(c);
        return KEEL_E_INVALID;
    }
    conn_start(c);
    return KEEL_OK;
}

/* Starts (or forces) the drain of a loop's connections: idle ones close
 * now, busy ones close after their response (keel__conn_send clears
 * keep-alive while draining). */
void keel__conn_drain(struct keel_http_loop *loop, bool force)
{
    struct keel_conn *c, *next;

    for (c = loop->conns; c; c = next) {
        next = c->next;
        if (force || (c->state == CONN_IDLE && c->pending_len == 0))
            keel__conn_close(c);
    }
}
