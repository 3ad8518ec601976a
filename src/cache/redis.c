/*
 * redis.c - the Redis client of include/keel/redis.h: one asynchronous
 * hiredis connection per event loop, command and connect timeouts on loop
 * timers, reconnection with jittered backoff, a shared circuit breaker, the
 * blocking readiness probe, and the keel_redis_commands_total metric.
 * KEEL_REDIS_URL is parsed in redis_url.c, the probe's blocking
 * connection lives in redis_probe.c and the libuv event adapter in
 * redis_uv.c; redis_int.h holds what they share.
 *
 * DESIGN: each loop owns its connection outright (a slot indexed by loop
 * id), so a command never takes a lock or crosses threads; Redis serves
 * every connection in order, and N loops give N connections, which is what
 * a multi-threaded client wants anyway. Commands are written into
 * hiredis's output buffer and flushed when the loop polls, so commands
 * issued back to back leave in one write: pipelining comes free.
 *
 * Timeouts are not hiredis's (0.14 has none for asynchronous contexts):
 * every pending command carries a deadline, and one timer per connection,
 * armed for the earliest deadline, walks the pending list. A timed-out
 * command's callback runs at once with KEEL_E_TIMEOUT; its entry stays in
 * the list, marked done, because hiredis still holds it as the privdata of
 * the reply it waits for, and the late reply is dropped. Should that reply
 * still be missing KEEL_REDIS_STALL_MS later, the peer is considered dead
 * (no RST ever came) and the connection is dropped and remade.
 *
 * The hiredis event adapter for libuv is our own, in redis_uv.c (the
 * comment there says why).
 *
 * hiredis reentrancy rules this file relies on: a reply callback may issue
 * commands and may call redisAsyncFree (deferred until it returns); the
 * connect callback must not free its context; a context hiredis frees by
 * itself (an I/O error, a failed connect) first calls every pending reply
 * callback with a NULL reply, then the disconnect callback (only if it
 * had connected). Whichever we see first detaches the context from its
 * connection (c->ac = NULL) and schedules the reconnect; nothing touches
 * the context after that.
 */
#include "keel/redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "keel/breaker.h"
#include "keel/config.h"
#include "keel/health.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/metrics.h"

#include "redis_int.h"

#define FREE_PENDING_MAX 64 /* recycled pending entries kept per connection */
#define REPLY_STACK      16 /* reply views built without allocating */
#define PROBE_TIMEOUT_MS 1000

/* ============================================================== state == */

enum cstate {
    C_IDLE,       /* never connected: the first command connects */
    C_RESOLVING,  /* uv_getaddrinfo in flight; commands queue in our list */
    C_CONNECTING, /* hiredis context made, TCP connect in flight; hiredis buffers */
    C_READY,      /* connected (AUTH/SELECT may still be on the wire, ahead) */
    C_BACKOFF,    /* down; the reconnect timer runs; commands fail fast */
    C_CLOSED,     /* keel_redis_loop_close: handles closing */
};

struct rconn;

struct pending {
    struct pending *prev, *next;
    struct rconn *c;
    keel_redis_cb cb;
    void *arg;
    uint64_t deadline; /* uv_now() value */
    char *cmd;         /* C_RESOLVING: formatted command not yet given to hiredis */
    int len;
    bool done;      /* outcome delivered (a timeout before the reply) */
    bool counted;   /* allowed by the breaker: must be recorded once */
    bool handshake; /* AUTH or SELECT of the connection, no callback */
    bool last_handshake;
};

struct rconn {
    uv_loop_t *loop;
    unsigned id;
    enum cstate state;
    redisAsyncContext *ac; /* NULL unless C_CONNECTING or C_READY */
    uv_timer_t conn_timer; /* connect timeout, then reconnect backoff */
    uv_timer_t cmd_timer;  /* command deadlines and stall checks */
    uv_getaddrinfo_t gai;
    bool gai_busy;
    unsigned gai_gen;
    unsigned gen; /* bumped whenever a connection attempt or connection ends */
    unsigned addr_index;
    struct pending *head, *tail;
    unsigned npending;
    struct pending *free;
    unsigned nfree;
    uint64_t backoff_ms;
    uint64_t rng;
    bool down_logged;
    bool was_ready;
    unsigned open_handles; /* C_CLOSED: handles whose close callback is due */
};

static struct {
    bool enabled;
    struct target t;
    struct keel_redis_opts o;
    unsigned nloops;
    struct rconn **conns; /* slot per loop id, touched by that loop only */
    bool *closed;         /* slot per loop id: keel_redis_loop_close ran */
    struct keel_breaker *breaker;
    struct keel_metric *commands;
} R;

static bool health_registered;

enum outcome { OUT_OK, OUT_ERROR, OUT_TIMEOUT, OUT_REJECTED };
static const char *const outcome_names[] = {"ok", "error", "timeout", "rejected"};

static void count(enum outcome o)
{
    keel_metric_add(R.commands, (const char *const[]){outcome_names[o]}, 1);
}

/* ============================================================ replies == */

static size_t count_views(const redisReply *r)
{
    size_t n = 1, i;

    if (r->type == REDIS_REPLY_ARRAY)
        for (i = 0; i < r->elements; i++)
            n += count_views(r->element[i]);
    return n;
}

/* Fills *v from r; array children take consecutive views from *next. */
static void
fill_view(struct keel_redis_reply *v, const redisReply *r, struct keel_redis_reply **next)
{
    size_t i;

    memset(v, 0, sizeof(*v));
    switch (r->type) {
    case REDIS_REPLY_STRING:
        v->type = KEEL_REDIS_STRING;
        break;
    case REDIS_REPLY_STATUS:
        v->type = KEEL_REDIS_STATUS;
        break;
    case REDIS_REPLY_ERROR:
        v->type = KEEL_REDIS_ERROR;
        break;
    case REDIS_REPLY_INTEGER:
        v->type = KEEL_REDIS_INTEGER;
        v->integer = r->integer;
        return;
    case REDIS_REPLY_ARRAY: {
        struct keel_redis_reply *kids = *next;

        v->type = KEEL_REDIS_ARRAY;
        v->elements = r->elements;
        v->element = kids;
        *next += r->elements;
        for (i = 0; i < r->elements; i++)
            fill_view(&kids[i], r->element[i], next);
        return;
    }
    default:
        v->type = KEEL_REDIS_NIL;
        return;
    }
    v->str = r->str;
    v->len = r->len;
}

/* Error replies that mean the server cannot serve now, which the breaker
 * counts as failures; any other error reply is the caller's problem. */
static bool server_unavailable(const redisReply *r)
{
    static const char *const prefixes[] = {"LOADING", "BUSY", "MASTERDOWN", "NOAUTH", "READONLY"};
    size_t i, n;

    if (r->type != REDIS_REPLY_ERROR || !r->str)
        return false;
    for (i = 0; i < KEEL_ARRAY_LEN(prefixes); i++) {
        n = strlen(prefixes[i]);
        if (r->len >= n && strncmp(r->str, prefixes[i], n) == 0)
            return true;
    }
    return false;
}

/* ============================================================ pending == */

static struct pending *pending_new(struct rconn *c)
{
    struct pending *p = c->free;

    if (p) {
        c->free = p->next;
        c->nfree--;
    } else {
        p = keel_xmalloc(sizeof(*p));
    }
    memset(p, 0, sizeof(*p));
    p->c = c;
    return p;
}

static void pending_link(struct rconn *c, struct pending *p)
{
    p->prev = c->tail;
    p->next = NULL;
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->npending++;
}

static void pending_unlink(struct rconn *c, struct pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        c->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        c->tail = p->prev;
    c->npending--;
}

static void pending_free(struct rconn *c, struct pending *p)
{
    if (p->cmd)
        redisFreeCommand(p->cmd);
    if (c->nfree < FREE_PENDING_MAX) {
        p->next = c->free;
        c->free = p;
        c->nfree++;
    } else {
        free(p);
    }
}

/* Delivers a command's outcome once: breaker, metric, callback. */
static void
finish(struct pending *p, keel_status rc, const struct keel_redis_reply *reply, bool dependency_ok)
{
    if (p->done)
        return;
    p->done = true;
    if (p->handshake)
        return;
    if (p->counted)
        keel_breaker_record(R.breaker, dependency_ok);
    count(rc == KEEL_OK ? OUT_OK : rc == KEEL_E_TIMEOUT ? OUT_TIMEOUT : OUT_ERROR);
    p->cb(rc, reply, p->arg);
}

/* ========================================================= connection == */

static void start_connect(struct rconn *c);
static void on_cmd_timer(uv_timer_t *t);

static uint64_t next_random(struct rconn *c)
{
    /* xorshift64: jitter only needs to differ between loops and attempts. */
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

static void on_retry(uv_timer_t *t)
{
    struct rconn *c = t->data;

    if (c->state != C_BACKOFF)
        return;
    if (c->gai_busy) {
        /* A timed-out lookup has not come back yet; its request is ours. */
        uv_timer_start(&c->conn_timer, on_retry, KEEL_REDIS_BACKOFF_MIN_MS, 0);
        return;
    }
    start_connect(c);
}

/* Fails the commands still waiting in our own queue (C_RESOLVING). */
static void fail_queued(struct rconn *c)
{
    struct pending *p = c->head, *next;
    unsigned gen = c->gen;

    while (p) {
        next = p->next;
        if (p->cmd) {
            pending_unlink(c, p);
            finish(p, KEEL_E_UNAVAILABLE, NULL, false);
            pending_free(c, p);
            if (c->gen != gen)
                return; /* a callback closed the loop's connection */
        }
        p = next;
    }
}

/*
 * The connection attempt or connection has ended; its context, if any, is
 * already detached (c->ac is NULL) and freed or being freed by hiredis.
 * Logs, and schedules the next attempt after a jittered backoff: 100 ms
 * doubling to 5 s, each delay drawn from [d/2, d].
 */
static void lost(struct rconn *c, const char *why)
{
    uint64_t d;

    c->gen++;
    if (c->state == C_CLOSED)
        return;
    if (!c->down_logged) {
        keel_log(KEEL_LOG_WARN, c->was_ready ? "redis connection lost" : "redis connect failed",
                 KEEL_LF_INT("loop", c->id), KEEL_LF_STR("error", why));
        c->down_logged = true;
    } else {
        keel_log(KEEL_LOG_DEBUG, "redis connect failed", KEEL_LF_INT("loop", c->id),
                 KEEL_LF_STR("error", why));
    }
    c->was_ready = false;
    c->addr_index++; /* with several addresses, try the next one */
    c->state = C_BACKOFF;
    d = c->backoff_ms ? c->backoff_ms * 2 : KEEL_REDIS_BACKOFF_MIN_MS;
    if (d > KEEL_REDIS_BACKOFF_MAX_MS)
        d = KEEL_REDIS_BACKOFF_MAX_MS;
    c->backoff_ms = d;
    uv_timer_start(&c->conn_timer, on_retry, d / 2 + next_random(c) % (d / 2 + 1), 0);
    fail_queued(c);
}

/* Our side ends the connection: detach, schedule, then free the context,
 * which calls every pending callback with a NULL reply (deferred by
 * hiredis when we are inside one of its callbacks). */
static void drop(struct rconn *c, const char *why)
{
    redisAsyncContext *ac = c->ac;

    if (!ac)
        return;
    c->ac = NULL;
    lost(c, why);
    redisAsyncFree(ac);
}

static void handshake_done(struct rconn *c)
{
    c->backoff_ms = 0;
    if (c->down_logged)
        keel_log(KEEL_LOG_INFO, "redis connected", KEEL_LF_INT("loop", c->id));
    else
        keel_log(KEEL_LOG_DEBUG, "redis connected", KEEL_LF_INT("loop", c->id));
    c->down_logged = false;
    c->was_ready = true;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pending *p = privdata;
    struct rconn *c = p->c;
    redisReply *r = reply;
    struct keel_redis_reply stack[REPLY_STACK], *views = stack, *next;
    size_t n;

    pending_unlink(c, p);
    if (!r) {
        /* The context is going away: detach it before any callback can
         * issue another command on it. */
        if (c->ac == ac) {
            c->ac = NULL;
            lost(c, ac->c.errstr[0] ? ac->c.errstr : "connection closed");
        }
        finish(p, KEEL_E_UNAVAILABLE, NULL, false);
        pending_free(c, p);
        return;
    }
    if (p->handshake) {
        if (r->type == REDIS_REPLY_ERROR) {
            keel_log(KEEL_LOG_ERROR, "redis handshake refused", KEEL_LF_INT("loop", c->id),
                     KEEL_LF_STRN("error", r->str, r->len));
            if (c->ac == ac)
                drop(c, "handshake refused");
        } else if (p->last_handshake && c->ac == ac) {
            handshake_done(c);
        }
        pending_free(c, p);
        return;
    }
    if (p->done) {
        pending_free(c, p); /* the late reply of a timed-out command */
        return;
    }
    n = count_views(r);
    if (n > REPLY_STACK)
        views = keel_xmalloc(n * sizeof(*views));
    next = views + 1;
    fill_view(views, r, &next);
    finish(p, r->type == REDIS_REPLY_ERROR ? KEEL_E_INTERNAL : KEEL_OK, views,
           !server_unavailable(r));
    if (views != stack)
        free(views);
    pending_free(c, p);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rconn *c = ac->data;

    if (c->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context when this returns. */
        c->ac = NULL;
        lost(c, ac->c.errstr[0] ? ac->c.errstr : "connect failed");
        return;
    }
    uv_timer_stop(&c->conn_timer);
    c->state = C_READY;
    if (!R.t.password && R.t.db == 0)
        handshake_done(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rconn *c = ac->data;

    if (c->ac != ac)
        return; /* we dropped it ourselves */
    c->ac = NULL;
    lost(c, status == REDIS_OK ? "closed by peer" : ac->c.errstr);
}

/* Queues a handshake command (AUTH, SELECT) ahead of everything else. */
static void handshake(struct rconn *c, bool last, int argc, const char **argv)
{
    struct pending *p = pending_new(c);

    p->handshake = true;
    p->last_handshake = last;
    p->deadline = uv_now(c->loop) + R.o.command_timeout_ms;
    if (redisAsyncCommandArgv(c->ac, on_reply, p, argc, argv, NULL) != REDIS_OK) {
        pending_free(c, p);
        return;
    }
    pending_link(c, p);
}

/* Makes sure the timer fires by the deadline of a command issued now; it
 * may be armed later than that for a stall check. */
static void arm_cmd_timer(struct rconn *c)
{
    if (!uv_is_active((uv_handle_t *)&c->cmd_timer) ||
        uv_timer_get_due_in(&c->cmd_timer) > R.o.command_timeout_ms)
        uv_timer_start(&c->cmd_timer, on_cmd_timer, R.o.command_timeout_ms, 0);
}

/* Hands the commands queued while resolving to the new context, after the
 * handshake. Timed-out ones are dropped: their callers already gave up. */
static void flush_queued(struct rconn *c)
{
    struct pending *p = c->head, *next;
    unsigned gen = c->gen;

    while (p) {
        next = p->next;
        if (p->cmd) {
            char *cmd = p->cmd;

            p->cmd = NULL;
            if (p->done ||
                redisAsyncFormattedCommand(c->ac, on_reply, p, cmd, (size_t)p->len) != REDIS_OK) {
                pending_unlink(c, p);
                finish(p, KEEL_E_UNAVAILABLE, NULL, false);
                pending_free(c, p);
            }
            redisFreeCommand(cmd);
            if (c->gen != gen)
                return; /* a callback closed the loop's connection */
        }
        p = next;
    }
}

static void connect_now(struct rconn *c, const char *host)
{
    redisAsyncContext *ac;
    char db[24];

    ac = R.t.is_unix ? redisAsyncConnectUnix(R.t.host) : redisAsyncConnect(host, R.t.port);
    if (!ac || ac->err || keel__redis_ev_attach(ac, c->loop) != REDIS_OK) {
        char why[128];

        snprintf(why, sizeof(why), "%s", ac && ac->err ? ac->errstr : "cannot create context");
        if (ac)
            redisAsyncFree(ac);
        lost(c, why);
        return;
    }
    ac->data = c;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->state = C_CONNECTING;
    if (R.t.password) {
        const char *argv[3] = {"AUTH", R.t.user ? R.t.user : R.t.password, R.t.password};

        handshake(c, R.t.db == 0, R.t.user ? 3 : 2, argv);
    }
    if (R.t.db) {
        const char *argv[2] = {"SELECT", db};

        snprintf(db, sizeof(db), "%ld", R.t.db);
        handshake(c, true, 2, argv);
    }
    flush_queued(c);
    if (c->head)
        arm_cmd_timer(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rconn *c = req->data;
    struct addrinfo *a;
    char ip[64] = "";
    unsigned n = 0, i;

    c->gai_busy = false;
    if (c->state != C_RESOLVING || c->gen != c->gai_gen) {
        uv_freeaddrinfo(res); /* timed out, or the loop is closing */
        if (c->state == C_CLOSED && c->open_handles == 0)
            free(c);
        return;
    }
    if (status < 0) {
        lost(c, uv_strerror(status));
        return;
    }
    for (a = res; a; a = a->ai_next)
        n++;
    if (n == 0) {
        lost(c, "no address");
        return;
    }
    for (a = res, i = 0; a && i < c->addr_index % n; a = a->ai_next)
        i++;
    if (a->ai_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)a->ai_addr, ip, sizeof(ip));
    else
        uv_ip4_name((const struct sockaddr_in *)a->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    connect_now(c, ip);
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct rconn *c = t->data;

    if (c->state == C_RESOLVING) {
        uv_cancel((uv_req_t *)&c->gai); /* fails harmlessly when already running */
        lost(c, "connect timeout");
    } else if (c->state == C_CONNECTING) {
        drop(c, "connect timeout");
    }
}

static bool is_address(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return uv_inet_pton(AF_INET, host, buf) == 0 || uv_inet_pton(AF_INET6, host, buf) == 0;
}

static void start_connect(struct rconn *c)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    int rc;

    uv_timer_start(&c->conn_timer, on_connect_timeout, R.o.connect_timeout_ms, 0);
    if (R.t.is_unix || is_address(R.t.host)) {
        connect_now(c, R.t.host);
        return;
    }
    /* getaddrinfo blocks: a name is resolved on the thread pool. */
    snprintf(port, sizeof(port), "%d", R.t.port);
    c->gai.data = c;
    c->gai_gen = c->gen;
    c->state = C_RESOLVING;
    rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, R.t.host, port, &hints);
    if (rc < 0) {
        lost(c, uv_strerror(rc));
        return;
    }
    c->gai_busy = true;
}

/* ============================================================ timeouts == */

/* Times out overdue commands, drops a stalled connection, and re-arms for
 * the next deadline. A callback may issue commands (appended at the tail,
 * visited or not: they are not due) or close the connection (the
 * generation changes and the walk stops). */
static void on_cmd_timer(uv_timer_t *t)
{
    struct rconn *c = t->data;
    uint64_t now = uv_now(c->loop), wake = UINT64_MAX, due;
    unsigned gen = c->gen;
    struct pending *p = c->head, *next;

    while (p) {
        if (!p->done && p->deadline <= now) {
            finish(p, KEEL_E_TIMEOUT, NULL, false);
            if (c->gen != gen)
                return;
        }
        next = p->next;
        if (p->done && p->cmd) {
            /* Never sent: nothing will come back for it. */
            pending_unlink(c, p);
            pending_free(c, p);
        } else if (p->done && now >= p->deadline + R.o.stall_ms) {
            drop(c, "no reply: connection stalled");
            return;
        } else {
            due = p->done ? p->deadline + R.o.stall_ms : p->deadline;
            if (due < wake)
                wake = due;
        }
        p = next;
    }
    if (wake != UINT64_MAX)
        uv_timer_start(&c->cmd_timer, on_cmd_timer, wake - now, 0);
}

/* ============================================================ commands == */

static struct rconn *conn_new(uv_loop_t *loop, unsigned id)
{
    struct rconn *c = keel_xcalloc(1, sizeof(*c));

    c->loop = loop;
    c->id = id;
    c->state = C_IDLE;
    c->rng = (keel_now_ns() ^ ((uint64_t)id + 1) * 0x9e3779b97f4a7c15ull) | 1;
    uv_timer_init(loop, &c->conn_timer);
    uv_timer_init(loop, &c->cmd_timer);
    c->conn_timer.data = c;
    c->cmd_timer.data = c;
    return c;
}

/* The loop's connection, made (and its connect started) on first use;
 * NULL when Redis is disabled or the loop was closed. */
static struct rconn *conn_get(uv_loop_t *loop, unsigned id)
{
    struct rconn *c;

    if (!R.enabled)
        return NULL;
    KEEL_ASSERT(id < R.nloops);
    if (R.closed[id])
        return NULL;
    c = R.conns[id];
    if (!c) {
        c = conn_new(loop, id);
        R.conns[id] = c;
    }
    KEEL_ASSERT(c->loop == loop);
    if (c->state == C_IDLE)
        start_connect(c);
    return c;
}

/* The command name of a formatted RESP command ("*2\r\n$3\r\nGET\r\n..."). */
static bool is_pubsub(const char *cmd, int len)
{
    static const char *const names[] = {"SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
                                        "MONITOR"};
    const char *end = cmd + len, *p = memchr(cmd, '\n', (size_t)len), *name;
    long n = 0;
    size_t i;

    if (!p || p + 1 >= end || p[1] != '$')
        return false;
    for (p += 2; p < end && *p >= '0' && *p <= '9'; p++)
        n = n * 10 + (*p - '0');
    name = p + 2;
    if (n > 12 || name + n > end)
        return false;
    for (i = 0; i < KEEL_ARRAY_LEN(names); i++)
        if ((size_t)n == strlen(names[i]) && strncasecmp(name, names[i], (size_t)n) == 0)
            return true;
    return false;
}

/* Sends an already formatted command; takes ownership of cmd. */
static keel_status
issue(uv_loop_t *loop, unsigned id, keel_redis_cb cb, void *arg, char *cmd, int len)
{
    struct rconn *c;
    struct pending *p;

    if (len < 0)
        return KEEL_E_INVALID; /* the format did not parse */
    if (is_pubsub(cmd, len)) {
        redisFreeCommand(cmd);
        return KEEL_E_INVALID;
    }
    c = conn_get(loop, id);
    if (!c || !keel_breaker_allow(R.breaker)) {
        redisFreeCommand(cmd);
        if (R.enabled)
            count(OUT_REJECTED);
        return KEEL_E_UNAVAILABLE;
    }
    p = NULL;
    if (c->state != C_BACKOFF && c->npending < R.o.max_pending) {
        p = pending_new(c);
        p->cb = cb;
        p->arg = arg;
        p->counted = true;
        p->deadline = uv_now(loop) + R.o.command_timeout_ms;
        if (c->state == C_RESOLVING) {
            p->cmd = cmd; /* sent by flush_queued once connected */
            p->len = len;
            cmd = NULL;
        } else if (redisAsyncFormattedCommand(c->ac, on_reply, p, cmd, (size_t)len) != REDIS_OK) {
            pending_free(c, p);
            p = NULL;
        }
    }
    if (cmd)
        redisFreeCommand(cmd);
    if (!p) {
        /* Allowed by the breaker but not sent: the dependency failed us. */
        keel_breaker_record(R.breaker, false);
        count(OUT_REJECTED);
        return KEEL_E_UNAVAILABLE;
    }
    pending_link(c, p);
    arm_cmd_timer(c);
    return KEEL_OK;
}

keel_status keel_redis_vcommand(
    uv_loop_t *loop, unsigned loop_id, keel_redis_cb cb, void *arg, const char *fmt, va_list ap)
{
    char *cmd = NULL;
    int len;

    if (!R.enabled)
        return KEEL_E_UNAVAILABLE;
    len = redisvFormatCommand(&cmd, fmt, ap);
    return issue(loop, loop_id, cb, arg, cmd, len);
}

keel_status keel_redis_command(
    uv_loop_t *loop, unsigned loop_id, keel_redis_cb cb, void *arg, const char *fmt, ...)
{
    va_list ap;
    keel_status rc;

    va_start(ap, fmt);
    rc = keel_redis_vcommand(loop, loop_id, cb, arg, fmt, ap);
    va_end(ap);
    return rc;
}

keel_status keel_redis_command_argv(uv_loop_t *loop,
                                    unsigned loop_id,
                                    keel_redis_cb cb,
                                    void *arg,
                                    int argc,
                                    const char *const *argv,
                                    const size_t *argvlen)
{
    char *cmd = NULL;
    int len;

    if (!R.enabled)
        return KEEL_E_UNAVAILABLE;
    if (argc < 1)
        return KEEL_E_INVALID;
    /* hiredis's prototype lacks the inner const; it does not write. */
    len = redisFormatCommandArgv(&cmd, argc, (const char **)(uintptr_t)argv, argvlen);
    return issue(loop, loop_id, cb, arg, cmd, len);
}

/* ========================================================== lifecycle == */

static void on_handle_closed(uv_handle_t *h)
{
    struct rconn *c = h->data;

    if (--c->open_handles == 0 && !c->gai_busy) {
        KEEL_ASSERT(!c->head);
        free(c);
    }
}

void keel_redis_loop_close(uv_loop_t *loop, unsigned loop_id)
{
    struct rconn *c;
    struct pending *p;
    redisAsyncContext *ac;

    if (!R.enabled || loop_id >= R.nloops)
        return;
    R.closed[loop_id] = true;
    c = R.conns[loop_id];
    if (!c)
        return;
    KEEL_ASSERT(c->loop == loop);
    R.conns[loop_id] = NULL;
    c->state = C_CLOSED;
    c->gen++; /* stops walks of the pending list in progress */
    fail_queued(c);
    ac = c->ac;
    c->ac = NULL;
    if (ac)
        redisAsyncFree(ac); /* NULL replies: KEEL_E_UNAVAILABLE for each */
    if (c->gai_busy)
        uv_cancel((uv_req_t *)&c->gai);
    /* Recycled entries go now; live ones return to the list as hiredis
     * lets go of them (at once, or after the current callback). */
    while ((p = c->free)) {
        c->free = p->next;
        free(p);
    }
    c->nfree = FREE_PENDING_MAX; /* later returns are freed, not kept */
    c->open_handles = 2;
    uv_close((uv_handle_t *)&c->conn_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->cmd_timer, on_handle_closed);
}

static keel_status check_redis(void *arg, struct keel_json *j)
{
    (void)arg;
    if (!R.enabled)
        return KEEL_OK;
    keel_json_key(j, "breaker");
    keel_json_str(j, keel_breaker_state_name(keel_breaker_state(R.breaker)));
    return keel_redis_ping_sync(NULL, PROBE_TIMEOUT_MS, NULL);
}

keel_status
keel_redis_init_opts(const char *url, unsigned nloops, const struct keel_redis_opts *opts)
{
    static const char *const labels[] = {"outcome"};
    const char *why;
    unsigned i;

    KEEL_ASSERT(!R.enabled && !R.conns);
    memset(&R, 0, sizeof(R));
    if (!url || !*url)
        return KEEL_OK;
    why = keel__redis_parse_url(&R.t, url);
    if (why) {
        keel_log(KEEL_LOG_ERROR, "invalid KEEL_REDIS_URL", KEEL_LF_STR("error", why));
        return KEEL_E_INVALID;
    }
    if (opts)
        R.o = *opts;
    if (!R.o.connect_timeout_ms)
        R.o.connect_timeout_ms = KEEL_REDIS_CONNECT_TIMEOUT_MS;
    if (!R.o.command_timeout_ms)
        R.o.command_timeout_ms = KEEL_REDIS_COMMAND_TIMEOUT_MS;
    if (!R.o.max_pending)
        R.o.max_pending = KEEL_REDIS_MAX_PENDING;
    if (!R.o.stall_ms)
        R.o.stall_ms = KEEL_REDIS_STALL_MS;
    R.nloops = nloops ? nloops : 1;
    R.conns = keel_xcalloc(R.nloops, sizeof(*R.conns));
    R.closed = keel_xcalloc(R.nloops, sizeof(*R.closed));
    R.breaker = keel_breaker_new("redis", R.o.breaker);
    R.o.breaker = NULL; /* the caller's struct is not kept */
    R.commands =
        keel_metric_counter("keel_redis_commands_total",
                            "Redis commands by outcome (ok, error, timeout, rejected).", 1, labels);
    for (i = 0; i < KEEL_ARRAY_LEN(outcome_names); i++)
        keel_metric_add(R.commands, (const char *const[]){outcome_names[i]}, 0);
    R.enabled = true;
    return KEEL_OK;
}

keel_status keel_redis_init(const struct keel_config *cfg)
{
    struct keel_breaker_opts bo;
    struct keel_redis_opts o = {.breaker = &bo};
    keel_status rc;

    keel_breaker_opts_from_config(&bo, cfg);
    rc = keel_redis_init_opts(cfg->redis_url, cfg->threads, &o);
    if (rc < 0 || !R.enabled)
        return rc;
    if (!health_registered) {
        rc = keel_health_register("redis", check_redis, NULL, false);
        if (rc < 0)
            return rc;
        health_registered = true;
    }
    return KEEL_OK;
}

bool keel_redis_enabled(void)
{
    return R.enabled;
}

struct keel_breaker *keel_redis_breaker(void)
{
    return R.breaker;
}

void keel_redis_shutdown(void)
{
    unsigned i;

    for (i = 0; i < R.nloops; i++)
        if (R.conns && R.conns[i])
            keel_log(KEEL_LOG_WARN, "redis connection not closed at shutdown",
                     KEEL_LF_INT("loop", i));
    free(R.conns);
    free(R.closed);
    keel_breaker_free(R.breaker);
    keel__redis_target_free(&R.t);
    memset(&R, 0, sizeof(R));
}

/* ======================================================= health probe == */

keel_status keel_redis_ping_sync(const char *url, unsigned timeout_ms, double *latency_ms)
{
    struct target t;
    keel_status rc;

    if (!url)
        return R.enabled ? keel__redis_ping_target(&R.t, timeout_ms, latency_ms) : KEEL_E_INVALID;
    if (keel__redis_parse_url(&t, url))
        return KEEL_E_INVALID;
    rc = keel__redis_ping_target(&t, timeout_ms, latency_ms);
    keel__redis_target_free(&t);
    return rc;
}
