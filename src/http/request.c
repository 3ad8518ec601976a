/*
 * request.c - the life of a keel_request: creation from a recycled arena,
 * header and query access, running blocking work off the loop, and the
 * end of the request.
 *
 * DESIGN: each loop keeps a small free list of arenas, so a request costs
 * no malloc for its arena in the steady state. Blocking work goes to
 * libuv's thread pool (uv_queue_work); the completion runs on the
 * request's own loop, which is the only thread that ever touches the
 * request, so no request field needs a lock.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keel/clientip.h"
#include "keel/log.h"

#include "net/net_int.h"

#define RESPONSE_MAX ((size_t)256 * 1024 * 1024)

struct keel_arena *keel__loop_arena(struct keel_loop *loop)
{
    if (loop->nfree > 0)
        return loop->free_arenas[--loop->nfree];
    return keel_arena_new(KEEL_ARENA_BUDGET);
}

void keel__loop_arena_put(struct keel_loop *loop, struct keel_arena *a)
{
    keel_arena_reset(a);
    keel_arena_set_budget(a, KEEL_ARENA_BUDGET);
    if (loop->nfree < KEEL_ARENA_FREE)
        loop->free_arenas[loop->nfree++] = a;
    else
        keel_arena_destroy(a);
}

struct keel_request *keel__request_new(struct keel_conn *c)
{
    struct keel_arena *a = keel__loop_arena(c->loop);
    struct keel_request *req = keel_arena_calloc(a, 1, sizeof(*req));

    if (!req) {
        keel__loop_arena_put(c->loop, a);
        return NULL;
    }
    req->conn = c;
    req->loop = c->loop;
    req->arena = a;
    req->cfg = c->loop->server->cfg;
    req->method_name = "-";
    req->start_ns = keel_now_ns();
    req->resp.keep_alive = true;
    keel_buf_init(&req->resp.body, RESPONSE_MAX);
    keel_buf_init(&req->body_buf, 0);
    atomic_fetch_add_explicit(&c->loop->server->inflight, 1, memory_order_relaxed);
    return req;
}

void keel__request_finish(struct keel_request *req)
{
    struct keel_loop *loop = req->loop;

    if (req->json)
        json_object_put(req->json);
    keel_buf_free(&req->resp.body);
    keel_buf_free(&req->body_buf);
    atomic_fetch_sub_explicit(&loop->server->inflight, 1, memory_order_relaxed);
    keel__loop_arena_put(loop, req->arena);
}

void keel__request_dispatch(struct keel_request *req)
{
    keel__pipeline_start(req);
}

unsigned keel_request_thread(const struct keel_request *req)
{
    return req->loop->id;
}

uv_loop_t *keel_request_uv_loop(const struct keel_request *req)
{
    return &req->loop->uv;
}

bool keel_request_cut(const struct keel_request *req)
{
    return req->conn->state == CONN_CLOSING;
}

keel_status keel_request_peer(const struct keel_request *req, struct sockaddr_storage *out)
{
    int len = (int)sizeof(*out);

    memset(out, 0, sizeof(*out));
    if (!req->conn || uv_tcp_getpeername(&req->conn->tcp, (struct sockaddr *)out, &len) != 0)
        return KEEL_E_INVALID;
    if (out->ss_family != AF_INET && out->ss_family != AF_INET6)
        return KEEL_E_INVALID;
    return KEEL_OK;
}

const struct keel_header *keel_request_header(const struct keel_request *req, const char *name)
{
    unsigned i;

    for (i = 0; i < req->nheaders; i++)
        if (keel_str_caseeq(req->headers[i].name, name))
            return &req->headers[i];
    return NULL;
}

unsigned keel_request_header_count(const struct keel_request *req, const char *name)
{
    unsigned i, n = 0;

    for (i = 0; i < req->nheaders; i++)
        if (keel_str_caseeq(req->headers[i].name, name))
            n++;
    return n;
}

struct keel_str keel_request_param(const struct keel_request *req, const char *name)
{
    unsigned i;

    for (i = 0; i < req->nparams; i++)
        if (keel_str_eq(req->param_names[i], name))
            return req->params[i];
    return (struct keel_str){NULL, 0};
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s into a new arena string ('+' is a space in queries). */
static keel_status decode(struct keel_arena *a, const char *s, size_t len, const char **out)
{
    char *d = keel_arena_alloc(a, len + 1);
    size_t i, n = 0;
    int hi, lo;

    if (!d)
        return KEEL_E_NOMEM;
    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (i + 2 >= len)
                return KEEL_E_INVALID;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return KEEL_E_INVALID;
            d[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            d[n++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    d[n] = '\0';
    *out = d;
    return KEEL_OK;
}

keel_status keel_request_query(struct keel_request *req, const char *name, const char **out)
{
    const char *p = req->query.p, *end, *amp, *eq;
    size_t nlen = strlen(name);

    if (!p)
        return KEEL_E_NOT_FOUND;
    end = p + req->query.len;
    while (p < end) {
        amp = memchr(p, '&', (size_t)(end - p));
        if (!amp)
            amp = end;
        eq = memchr(p, '=', (size_t)(amp - p));
        if (!eq)
            eq = amp;
        if ((size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0)
            return decode(req->arena, eq < amp ? eq + 1 : eq, eq < amp ? (size_t)(amp - eq - 1) : 0,
                          out);
        p = amp + 1;
    }
    return KEEL_E_NOT_FOUND;
}

/* ------------------------------------------------------- blocking work */

struct offload {
    uv_work_t work;
    struct keel_request *req;
    keel_work_fn fn;
    keel_resume_fn done;
    void *arg;
};

static void offload_run(uv_work_t *w)
{
    struct offload *o = w->data;

    o->fn(o->arg);
}

static void offload_after(uv_work_t *w, int status)
{
    struct offload *o = w->data;
    struct keel_request *req = o->req;
    struct keel_conn *c = req->conn;
    keel_status rc;

    (void)status; /* UV_ECANCELED cannot happen: Keel never cancels work */
    if (c->state == CONN_CLOSING) {
        /* The connection was cut (forced drain): nothing to answer. */
        keel_request_resume(req, KEEL_DONE); /* releases the hold, drops req */
        return;
    }
    rc = o->done(req, o->arg);
    keel_request_resume(req, rc);
}

keel_status
keel_request_offload(struct keel_request *req, keel_work_fn work, keel_resume_fn done, void *arg)
{
    struct offload *o = keel_arena_alloc(req->arena, sizeof(*o));

    if (!o)
        return KEEL_E_NOMEM;
    o->work.data = o;
    o->req = req;
    o->fn = work;
    o->done = done;
    o->arg = arg;
    if (uv_queue_work(&req->loop->uv, &o->work, offload_run, offload_after) < 0)
        return keel_errorf(req, KEEL_E_INTERNAL, "uv_queue_work failed");
    return keel_request_park(req);
}

keel_status keel_request_park(struct keel_request *req)
{
    keel__conn_hold(req->conn);
    req->holds++;
    return KEEL_AGAIN;
}

void keel_request_resume(struct keel_request *req, keel_status rc)
{
    struct keel_conn *c = req->conn;
    bool closing = c->state == CONN_CLOSING;

    KEEL_ASSERT(req->holds > 0);
    req->holds--;
    /* Frees the connection (and req) only when it was cut meanwhile and
     * this was the last hold. */
    keel__conn_release(c);
    if (closing)
        return;
    req->parked = false;
    keel__pipeline_run(req, rc);
}

/* ------------------------------------------------------ per request */

/* The trusted-proxy list, parsed once per loop thread on its first use:
 * no lock, no allocation; the configuration (validated at load) never
 * changes while the process runs. */
static _Thread_local struct keel_proxies t_proxies;
static _Thread_local const char *t_proxies_src;
static _Thread_local bool t_proxies_parsed;

static const struct keel_proxies *thread_proxies(const char *list)
{
    if (!t_proxies_parsed || t_proxies_src != list) {
        /* A failure leaves the list empty, which trusts nobody. */
        (void)keel_proxies_parse(list, &t_proxies, NULL, 0);
        t_proxies_src = list;
        t_proxies_parsed = true;
    }
    return &t_proxies;
}

/* Only the last KEEL_XFF_MAX_ELEMENTS X-Forwarded-For lines can matter:
 * every line holds at least one element and the walk examines at most
 * that many. */
const struct keel_clientip *keel_request_client(struct keel_request *req)
{
    const struct keel_proxies *p;
    struct keel_str xff[KEEL_XFF_MAX_ELEMENTS];
    struct sockaddr_storage peer;
    struct keel_clientip *ip = req->mw_data[KEEL_MW_SLOT_CLIENTIP];
    unsigned i, n = 0, skip = 0, total;

    if (ip)
        return ip;
    if (keel_request_peer(req, &peer) < 0)
        return NULL;
    p = thread_proxies(req->cfg->trusted_proxies);
    if (p->n > 0) {
        total = keel_request_header_count(req, "X-Forwarded-For");
        skip = total > KEEL_XFF_MAX_ELEMENTS ? total - KEEL_XFF_MAX_ELEMENTS : 0;
        for (i = 0; i < req->nheaders && n < KEEL_XFF_MAX_ELEMENTS; i++) {
            if (!keel_str_caseeq(req->headers[i].name, "X-Forwarded-For"))
                continue;
            if (skip > 0)
                skip--;
            else
                xff[n++] = req->headers[i].value;
        }
    }
    ip = keel_arena_alloc(req->arena, sizeof(*ip));
    if (!ip || keel_clientip_resolve(p, &peer, xff, n, ip) < 0)
        return NULL;
    req->mw_data[KEEL_MW_SLOT_CLIENTIP] = ip;
    return ip;
}
