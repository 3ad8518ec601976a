/*
 * request.c - the life of a keel_request: creation from a recycled arena,
 * the request as a task (waits, resumption, the storage and cache calls
 * with request callbacks), header and query access, and the end of the
 * request.
 *
 * DESIGN: each loop keeps a small free list of arenas, so a request costs
 * no malloc for its arena in the steady state. A request is a task
 * (keel/task.h) whose resume function is the pipeline: every wait holds
 * its connection, so the request outlives a client that goes away, and a
 * result for a cut connection only releases the hold. Completions come
 * back on the request's own loop, the only thread that touches the
 * request, so no request field needs a lock.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keel/clientip.h"
#include "keel/log.h"

#include "http/http_int.h"

#define RESPONSE_MAX ((size_t)256 * 1024 * 1024)

struct keel_arena *keel__loop_arena(struct keel_http_loop *loop)
{
    if (loop->nfree > 0)
        return loop->free_arenas[--loop->nfree];
    return keel_arena_new(KEEL_ARENA_BUDGET);
}

void keel__loop_arena_put(struct keel_http_loop *loop, struct keel_arena *a)
{
    keel_arena_reset(a);
    keel_arena_set_budget(a, KEEL_ARENA_BUDGET);
    if (loop->nfree < KEEL_ARENA_FREE)
        loop->free_arenas[loop->nfree++] = a;
    else
        keel_arena_destroy(a);
}

/* ------------------------------------------------------ the request task */

struct keel_request *keel_task_request(struct keel_task *t)
{
    return KEEL_CONTAINER_OF(t, struct keel_request, task);
}

static void task_hold(struct keel_task *t)
{
    keel__conn_hold(keel_task_request(t)->conn);
}

static bool task_gone(const struct keel_task *t)
{
    /* The task is the request's own member: the offset is a constant. */
    const struct keel_request *req =
        (const struct keel_request *)(const void *)((const char *)t -
                                                    offsetof(struct keel_request, task));

    return req->conn->state == CONN_CLOSING;
}

/* The end of a wait: frees the connection (and the request) when it was
 * cut meanwhile and this was the last hold; else the pipeline goes on. */
static void task_resume(struct keel_task *t, keel_status rc)
{
    struct keel_request *req = keel_task_request(t);
    struct keel_conn *c = req->conn;
    bool closing = c->state == CONN_CLOSING;

    keel__conn_release(c);
    if (closing)
        return;
    keel__pipeline_run(req, rc);
}

static const struct keel_task_ops request_task = {
    .resume = task_resume,
    .gone = task_gone,
    .hold = task_hold,
};

struct keel_request *keel__request_new(struct keel_conn *c)
{
    struct keel_arena *a = keel__loop_arena(c->loop);
    struct keel_request *req = keel_arena_calloc(a, 1, sizeof(*req));

    if (!req) {
        keel__loop_arena_put(c->loop, a);
        return NULL;
    }
    keel_task_init(&req->task, &request_task, c->loop->id, a);
    req->task.log.request_id = req->request_id;
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
    struct keel_http_loop *loop = req->loop;

    if (req->json)
        json_object_put(req->json);
    keel_buf_free(&req->resp.body);
    keel_buf_free(&req->body_buf);
    atomic_fetch_sub_explicit(&loop->server->inflight, 1, memory_order_relaxed);
    keel__loop_arena_put(loop, req->arena);
}

keel_status keel_request_park(struct keel_request *req)
{
    return keel_task_wait(&req->task);
}

void keel_request_resume(struct keel_request *req, keel_status rc)
{
    keel_task_resume(&req->task, rc);
}

unsigned keel_request_thread(const struct keel_request *req)
{
    return req->loop->id;
}

uv_loop_t *keel_request_uv_loop(const struct keel_request *req)
{
    return req->loop->uv;
}

bool keel_request_cut(const struct keel_request *req)
{
    return keel_task_gone(&req->task);
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

/* ------------------------------------------- waits with request callbacks
 *
 * The task APIs pass one argument to both the work and the completion,
 * and call back with the task; these adapters, kept in the request's
 * arena, hand the caller's argument to its work and call its callbacks
 * with the request. */

struct req_cb {
    union {
        keel_resume_fn resume;
        keel_db_done_fn db;
        keel_cache_done_fn cache;
    } fn;
    union { /* what runs on the other thread, with the caller's arg */
        keel_work_fn work;
        keel_db_fn db;
        keel_db_work_fn db_work;
        keel_cache_load_fn load;
    } run;
    void *arg;
};

static void run_work(void *arg)
{
    struct req_cb *cb = arg;

    cb->run.work(cb->arg);
}

static keel_status run_db(struct keel_db_conn *c, void *arg)
{
    struct req_cb *cb = arg;

    return cb->run.db(c, cb->arg);
}

static void run_db_work(void *arg)
{
    struct req_cb *cb = arg;

    cb->run.db_work(cb->arg);
}

static keel_status run_load(struct keel_db_conn *c, void *arg, struct keel_buf *out)
{
    struct req_cb *cb = arg;

    return cb->run.load(c, cb->arg, out);
}

static struct req_cb *req_cb(struct keel_request *req, void *arg)
{
    struct req_cb *cb = keel_arena_alloc(req->arena, sizeof(*cb));

    if (cb)
        cb->arg = arg;
    return cb;
}

static keel_status offload_done(struct keel_task *t, void *arg)
{
    struct req_cb *cb = arg;

    return cb->fn.resume(keel_task_request(t), cb->arg);
}

keel_status
keel_request_offload(struct keel_request *req, keel_work_fn work, keel_resume_fn done, void *arg)
{
    struct req_cb *cb = req_cb(req, arg);
    keel_status rc;

    if (!cb)
        return KEEL_E_NOMEM;
    cb->fn.resume = done;
    cb->run.work = work;
    rc = keel_task_offload(&req->task, run_work, offload_done, cb);
    return rc == KEEL_E_INTERNAL ? keel_errorf(req, rc, "uv_queue_work failed") : rc;
}

static keel_status db_done(struct keel_task *t, keel_status rc, void *arg)
{
    struct req_cb *cb = arg;

    return cb->fn.db(keel_task_request(t), rc, cb->arg);
}

/* A task call that could not start: say why in the log. */
static keel_status start_failed(struct keel_request *req, keel_status rc)
{
    if (rc == KEEL_E_UNAVAILABLE)
        return keel_errorf(req, rc, "no database configured");
    return rc;
}

keel_status keel_db_run(struct keel_request *req,
                        enum keel_db_intent intent,
                        keel_db_fn fn,
                        keel_db_done_fn done,
                        void *arg)
{
    struct req_cb *cb = req_cb(req, arg);

    if (!cb)
        return KEEL_E_NOMEM;
    cb->fn.db = done;
    cb->run.db = fn;
    return start_failed(req, keel_db_run_task(&req->task, intent, run_db, db_done, cb));
}

keel_status
keel_db_offload(struct keel_request *req, keel_db_work_fn work, keel_db_done_fn done, void *arg)
{
    struct req_cb *cb = req_cb(req, arg);

    if (!cb)
        return KEEL_E_NOMEM;
    cb->fn.db = done;
    cb->run.db_work = work;
    return start_failed(req, keel_db_offload_task(&req->task, run_db_work, db_done, cb));
}

static keel_status cache_done(struct keel_task *t,
                              keel_status rc,
                              const char *value,
                              size_t len,
                              const char *source,
                              void *arg)
{
    struct req_cb *cb = arg;

    return cb->fn.cache(keel_task_request(t), rc, value, len, source, cb->arg);
}

keel_status keel_cache_get(struct keel_request *req,
                           const char *key,
                           uint32_t ttl_ms,
                           enum keel_db_intent intent,
                           keel_cache_load_fn load,
                           keel_cache_done_fn done,
                           void *arg)
{
    struct req_cb *cb = req_cb(req, arg);

    if (!cb)
        return KEEL_E_NOMEM;
    cb->fn.cache = done;
    cb->run.load = load;
    /* An L1 hit returns done's own value: nothing to add to it. */
    return keel_cache_get_task(&req->task, key, ttl_ms, intent, run_load, cache_done, cb);
}

keel_status keel_cache_invalidate(struct keel_request *req,
                                  const char *const *keys,
                                  unsigned nkeys,
                                  keel_status then)
{
    return keel_cache_invalidate_task(&req->task, keys, nkeys, then);
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
