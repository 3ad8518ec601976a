/*
 * cache_get.c - the cache's read path (keel_cache_get, include/keel/cache.h):
 * L1, then one flight per key per process (stampede protection) whose
 * leader reads L2 and loads from the database, the cross-loop hand-off
 * that answers the other requests of the key, and the L2 fill.
 *
 * DESIGN (cache.c has the whole picture, docs/internals/cache.md the long
 * form). The in-flight table is a mutex-protected hash keyed by L1 key. A
 * flight lives in its leader's arena; the leader task stays held
 * until the flight has completed, so the memory outlives every use. The
 * result is one refcounted heap block shared by the leader and the
 * waiters. Completing a flight fills L1 and unlinks the flight under the
 * table's mutex, and a miss looks at the table and L1 again under it:
 * "not cached and nobody loading" is one decision, so two loads of a key
 * never overlap. Waiters are answered on their own loop, handed over with
 * keel_loop_post (a loop closes only when no connection is left, so
 * never with a waiter in it).
 * Loads run as our own jobs on the storage lane (keel_db_lane) rather than
 * through keel_db_run_task, which skips its completion for a task that is gone and
 * skips the function when no connection could be acquired: either would
 * strand the waiters. A load that waited too long for a lane thread still
 * completes its flight (503), for the same reason.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "keel/arena.h"
#include "keel/cache.h"
#include "keel/db.h"
#include "keel/l1cache.h"
#include "keel/lane.h"
#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/redis.h"
#include "keel/task.h"

#include "cache/cache_int.h"

#define FLIGHT_BUCKETS 1024
#define LEASE_MS       15000 /* longer than any load: pool wait 5 s + statement 5 s + 2 s */

/* ------------------------------------------------------------- scripts */

/* KEYS[1] epoch, KEYS[2] namespace generation (when ARGV[1] ~= '');
 * ARGV: namespace, rest, lease, lease ms. Returns {key, value or nil}. */
static const char READ_LUA[] = "local e = redis.call('GET', KEYS[1]) or '0' "
                               "local k "
                               "if ARGV[1] == '' then k = 'keel:c:' .. e .. ':' .. ARGV[2] "
                               "else k = 'keel:c:' .. e .. ':' .. ARGV[1] .. ':g' .. "
                               "(redis.call('GET', KEYS[2]) or '0') .. ':' .. ARGV[2] end "
                               "local v = redis.call('GET', k) "
                               "if not v then redis.call('SET', k, ARGV[3], 'PX', ARGV[4]) end "
                               "return {k, v}";

/* KEYS[1] the key the read returned; ARGV: lease, value ('' releases the
 * lease), ttl ms. 1 when the lease was still ours. */
static const char FILL_LUA[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
                               "if ARGV[2] == '' then redis.call('DEL', KEYS[1]) "
                               "else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end "
                               "return 1";

/* --------------------------------------------------------------- state */

/* A read's outcome, shared by the leader and every waiter. */
struct result {
    atomic_uint refs;
    keel_status rc;
    bool cached; /* went to L1 (and may go to L2); set under the table mutex */
    const char *source;
    size_t len; /* of data: tag + value; 0 for an error */
    char data[];
};

struct waiter {
    struct waiter *next;
    struct keel_post post; /* the answer's hand-off to the waiter's loop */
    struct keel_task *task;
    keel_cache_task_done_fn done;
    void *arg;
    struct result *res;
    unsigned loop;
};

/* A read past L1 in progress; lives in the leader's arena, which outlives
 * it (the leader task is held until the flight has completed). */
struct flight {
    struct flight *hnext;
    uint64_t hash;
    char *l1key;
    size_t l1len;
    struct waiter *waiters; /* table mutex */
    bool in_table;          /* table mutex */
    bool dirty;             /* table mutex: invalidated while loading */
    struct keel_task *task;
    struct keel__cache_key key; /* points into keycopy */
    char *keycopy;
    uint32_t ttl_ms;
    enum keel_db_intent intent;
    keel_cache_load_fn load;
    keel_cache_task_done_fn done;
    void *arg;
    struct keel_db_session sess;
    char lease[48];
    char *l2key; /* set when we hold the lease */
    size_t l2len;
    struct keel_buf out;
    struct result *res;
    keel_status load_rc;
    unsigned loop;            /* the leader's */
    struct keel_lane_job job; /* the load, on the storage lane */
    struct keel_post post;    /* then back to the leader's loop */
};

static struct {
    pthread_mutex_t fmu;
    struct flight *flights[FLIGHT_BUCKETS];
    _Atomic uint64_t lease_seq, epoch_target;
    atomic_bool epoch_busy;
} G;

static void count_load(keel_status rc)
{
    const char *r = rc == KEEL_OK ? "ok" : rc == KEEL_E_NOT_FOUND ? "not_found" : "error";

    keel_metric_add(keel__cache.m_loads, (const char *const[]){r}, 1);
}

/* ------------------------------------------------------------- results */

static struct result *
result_make(keel_status rc, char tag, const char *v, size_t len, const char *src)
{
    size_t total = tag ? len + 1 : 0;
    struct result *r = malloc(sizeof(*r) + total);

    if (!r) { /* a value near KEEL_CACHE_LOAD_MAX and no memory for it */
        r = keel_xmalloc(sizeof(*r));
        rc = KEEL_E_NOMEM;
        total = 0;
    }
    atomic_init(&r->refs, 1);
    r->rc = rc;
    r->cached = false;
    r->source = src;
    r->len = total;
    if (total) {
        r->data[0] = tag;
        memcpy(r->data + 1, v, len);
    }
    return r;
}

/* From a load: the value, a negative entry, or an error. */
static struct result *result_of_load(keel_status rc, const struct keel_buf *out)
{
    if (rc == KEEL_OK)
        return result_make(rc, KEEL__CACHE_TAG_VALUE, out->data ? out->data : "", out->len, "db");
    if (rc == KEEL_E_NOT_FOUND)
        return result_make(rc, KEEL__CACHE_TAG_NEGATIVE, "", 0, "db");
    return result_make(rc, 0, NULL, 0, "db");
}

static void result_unref(struct result *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1)
        free(r);
}

/* A tagged value from L1 or L2: "V..." or exactly "N". */
static bool tagged_ok(const char *p, size_t len)
{
    return len > 0 &&
           (p[0] == KEEL__CACHE_TAG_VALUE || (p[0] == KEEL__CACHE_TAG_NEGATIVE && len == 1));
}

/* ---------------------------------------------------- answering a task */

/* A waiting task is held (keel_task_wait) until we answer it, and holds
 * are counted (include/keel/task.h), so the caller's done may start its
 * own wait before we resume. Answers through done, or drops the task when
 * its owner went away. */
static void
answer(struct keel_task *t, const struct result *r, keel_cache_task_done_fn done, void *arg)
{
    const struct keel_log_ctx *prev;
    keel_status rc;

    if (keel_task_gone(t)) {
        keel_task_resume(t, KEEL_DONE);
        return;
    }
    prev = keel_log_ctx_set(&t->log);
    if (r->rc == KEEL_OK)
        rc = done(t, KEEL_OK, r->data + 1, r->len - 1, r->source, arg);
    else
        rc = done(t, r->rc, NULL, 0, r->source, arg);
    keel_log_ctx_set(prev);
    keel_task_resume(t, rc);
}

/* ------------------------------------------------- cross-loop hand-off */

/* On the waiter's loop (keel_loop_post): its task still waits there,
 * which holds the loop open. */
static void on_answer(struct keel_post *p)
{
    struct waiter *w = KEEL_CONTAINER_OF(p, struct waiter, post);
    struct result *r = w->res;

    answer(w->task, r, w->done, w->arg); /* w lives in its task's arena */
    result_unref(r);
}

/* ----------------------------------------------------- in-flight table */

static struct flight *flight_find(uint64_t h, const char *key, size_t len)
{
    struct flight *f;

    for (f = G.flights[h % FLIGHT_BUCKETS]; f; f = f->hnext)
        if (f->hash == h && f->l1len == len && memcmp(f->l1key, key, len) == 0)
            return f;
    return NULL;
}

static void flight_unlink(struct flight *f)
{
    struct flight **pp = &G.flights[f->hash % FLIGHT_BUCKETS];

    while (*pp && *pp != f)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = f->hnext;
    f->in_table = false;
}

/* Completes a flight with its result (which it adopts): fills L1 unless
 * the flight went stale, and hands the result to every waiter. Any
 * thread; the leader answers itself afterwards from f->res. */
static void complete(struct flight *f, struct result *res)
{
    struct waiter *w, *next;
    bool cacheable =
        res->rc == KEEL_OK ? res->len - 1 <= KEEL_CACHE_VALUE_MAX : res->rc == KEEL_E_NOT_FOUND;
    uint32_t ttl = res->rc == KEEL_OK ? f->ttl_ms : KEEL_CACHE_NEGATIVE_TTL_MS;

    if (ttl > keel__cache.l1_ttl_ms)
        ttl = keel__cache.l1_ttl_ms;
    pthread_mutex_lock(&G.fmu);
    if (f->in_table)
        flight_unlink(f);
    res->cached = cacheable && !f->dirty;
    if (res->cached)
        (void)keel_l1_set(keel__cache.l1, f->l1key, f->l1len, res->data, res->len, ttl);
    w = f->waiters;
    f->waiters = NULL;
    pthread_mutex_unlock(&G.fmu);
    f->res = res;
    for (; w; w = next) {
        next = w->next;
        atomic_fetch_add(&res->refs, 1);
        w->res = res;
        w->post.fn = on_answer;
        keel_loop_post(w->loop, &w->post);
    }
}

static void flight_cleanup(void *p)
{
    struct flight *f = p;

    result_unref(f->res);
    keel_buf_free(&f->out);
}

void keel__cache_forget(const char *l1key, size_t len)
{
    uint64_t h = keel__cache_hash('f', l1key, len);
    struct flight *f;

    pthread_mutex_lock(&G.fmu);
    f = flight_find(h, l1key, len);
    if (f) { /* its requests get what it loads; L1 does not */
        flight_unlink(f);
        f->dirty = true;
    }
    keel_l1_del(keel__cache.l1, l1key, len);
    pthread_mutex_unlock(&G.fmu);
}

void keel__cache_forget_all(void)
{
    struct flight *f;
    unsigned i;

    pthread_mutex_lock(&G.fmu);
    for (i = 0; i < FLIGHT_BUCKETS; i++) {
        for (f = G.flights[i]; f; f = f->hnext) {
            f->in_table = false;
            f->dirty = true;
        }
        G.flights[i] = NULL;
    }
    keel_l1_clear(keel__cache.l1);
    pthread_mutex_unlock(&G.fmu);
}

/* ------------------------------------------------- pass-through and L1 */

struct pass {
    keel_cache_load_fn load;
    keel_cache_task_done_fn done;
    void *arg;
    struct keel_buf out;
};

static keel_status pass_load(struct keel_db_conn *c, void *arg)
{
    struct pass *p = arg;

    return p->load(c, p->arg, &p->out);
}

static keel_status pass_done(struct keel_task *t, keel_status rc, void *arg)
{
    struct pass *p = arg;

    if (rc > 0)
        rc = KEEL_OK;
    count_load(rc);
    return p->done(t, rc, rc == KEEL_OK ? (p->out.data ? p->out.data : "") : NULL,
                   rc == KEEL_OK ? p->out.len : 0, "db", p->arg);
}

static void pass_free(void *p)
{
    keel_buf_free(&((struct pass *)p)->out);
}

/* No caching (KEEL_CACHE=off, keys that cannot be cached, ttl 0). */
static keel_status pass_through(struct keel_task *t,
                                enum keel_db_intent intent,
                                keel_cache_load_fn load,
                                keel_cache_task_done_fn done,
                                void *arg)
{
    struct pass *p = keel_arena_calloc(t->arena, 1, sizeof(*p));

    if (!p)
        return KEEL_E_NOMEM;
    p->load = load;
    p->done = done;
    p->arg = arg;
    keel_buf_init(&p->out, KEEL_CACHE_LOAD_MAX);
    if (keel_arena_defer(t->arena, pass_free, p) < 0)
        return KEEL_E_NOMEM;
    return keel_db_run_task(t, intent, pass_load, pass_done, p);
}

static bool l1_fetch(const char *key, size_t len, struct keel_buf *b)
{
    keel_buf_reset(b);
    return keel_l1_get(keel__cache.l1, key, len, b) == KEEL_OK && tagged_ok(b->data, b->len);
}

static keel_status
l1_reply(struct keel_task *t, const struct keel_buf *b, keel_cache_task_done_fn done, void *arg)
{
    if (b->data[0] == KEEL__CACHE_TAG_NEGATIVE) {
        keel__cache_count("l1", "negative");
        return done(t, KEEL_E_NOT_FOUND, NULL, 0, "l1", arg);
    }
    keel__cache_count("l1", "hit");
    return done(t, KEEL_OK, b->data + 1, b->len - 1, "l1", arg);
}

/* A Redis command's arguments (binary-safe), built on the stack. */
struct args {
    const char *v[9];
    size_t len[9];
    int n;
};

static void arg(struct args *a, const char *p, size_t len)
{
    KEEL_ASSERT(a->n < (int)KEEL_ARRAY_LEN(a->v));
    a->v[a->n] = p;
    a->len[a->n++] = len;
}

/* ---------------------------------------------------------------- load */

static keel_status load_tx(struct keel_db_conn *c, void *arg)
{
    struct flight *f = arg;

    return f->load(c, f->arg, &f->out);
}

/* Lane thread: what keel_db_run does (intent, session, a transaction for
 * writes); the flight's completion follows in load_complete, which must
 * happen whatever becomes of the leader's connection. */
static void load_run(struct keel_lane_job *j)
{
    struct flight *f = KEEL_CONTAINER_OF(j, struct flight, job);
    keel_status rc = keel_db_with(keel_db_default(), f->intent, &f->sess, load_tx, f);

    f->load_rc = rc > 0 ? KEEL_OK : rc;
}

static void load_after(struct keel_post *p);

/* After load_run, or instead of it when no lane thread came free in time
 * (a hung database): the flight completes either way, so no waiter is
 * stranded. */
static void load_complete(struct keel_lane_job *j)
{
    struct flight *f = KEEL_CONTAINER_OF(j, struct flight, job);
    keel_status rc = j->expired ? KEEL_E_UNAVAILABLE : f->load_rc;

    count_load(rc);
    complete(f, result_of_load(rc, &f->out));
    keel_buf_free(&f->out);
    f->post.fn = load_after;
    keel_loop_post(f->loop, &f->post);
}

static bool l2_usable(struct keel_task *t);

static void on_fill(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    struct flight *f = arg;

    /* The lease is gone: an invalidation deleted the key between our read
     * and this fill. Its message drops our L1 copy too; this does so even
     * if the message is lost. */
    if (rc == KEEL_OK && r->type == KEEL_REDIS_INTEGER && r->integer == 0)
        keel_l1_del(keel__cache.l1, f->l1key, f->l1len);
    answer(f->task, f->res, f->done, f->arg);
}

/* Replaces our lease in L2 with the result, or releases it; true when
 * on_fill will answer the leader. The leader answers after the fill, so
 * a read that follows its response anywhere finds the value in L2. */
static bool l2_fill(struct flight *f)
{
    struct keel_task *t = f->task;
    const struct result *r = f->res;
    struct args a = {0};
    char px[24];

    if (!f->l2key || !l2_usable(t))
        return false; /* the lease expires by itself */
    snprintf(px, sizeof(px), "%u", r->rc == KEEL_OK ? f->ttl_ms : KEEL_CACHE_NEGATIVE_TTL_MS);
    arg(&a, "EVAL", 4);
    arg(&a, FILL_LUA, sizeof(FILL_LUA) - 1);
    arg(&a, "1", 1);
    arg(&a, f->l2key, f->l2len);
    arg(&a, f->lease, strlen(f->lease));
    arg(&a, r->cached ? r->data : "", r->cached ? r->len : 0);
    arg(&a, px, strlen(px));
    return keel_redis_command_argv(keel_task_uv_loop(t), t->loop, on_fill, f, a.n, a.v, a.len) ==
           KEEL_OK;
}

/* The leader's loop, after load_complete: fill L2, answer the leader. */
static void load_after(struct keel_post *p)
{
    struct flight *f = KEEL_CONTAINER_OF(p, struct flight, post);

    if (!l2_fill(f))
        answer(f->task, f->res, f->done, f->arg);
}

static keel_status load_start(struct keel_task *t, struct flight *f)
{
    if (f->intent == KEEL_DB_READ && keel__cache_recent(&f->key))
        f->intent = KEEL_DB_READ_PRIMARY;
    if (!keel_db_default())
        return KEEL_E_UNAVAILABLE;
    f->sess.key = t->user_id;
    f->loop = t->loop;
    f->job.run = load_run;
    f->job.complete = load_complete;
    keel_buf_init(&f->out, KEEL_CACHE_LOAD_MAX);
    keel_lane_submit(keel_db_lane(keel_db_default()), &f->job);
    return KEEL_OK;
}

/* ------------------------------------------------------------------ L2 */

static void on_epoch(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    (void)r;
    (void)arg;
    if (rc == KEEL_OK)
        keel__cache_epoch_bumped(atomic_load(&G.epoch_target));
    atomic_store(&G.epoch_busy, false);
}

/* L2 is usable when Redis is configured and no invalidation of ours may
 * have missed it; otherwise the epoch is bumped first (every L2 key
 * carries it), which retires whatever the failed DEL should have
 * removed. */
static bool l2_usable(struct keel_task *t)
{
    uint64_t failed;

    if (!keel_redis_enabled())
        return false;
    if (!keel__cache_epoch_due(&failed))
        return true;
    if (!atomic_exchange(&G.epoch_busy, true)) {
        atomic_store(&G.epoch_target, failed);
        if (keel_redis_command(keel_task_uv_loop(t), t->loop, on_epoch, NULL,
                               "INCR " KEEL__CACHE_EPOCH_KEY) != KEEL_OK)
            atomic_store(&G.epoch_busy, false);
    }
    return false;
}

static void on_l2_read(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    struct flight *f = arg;
    struct keel_task *t = f->task;
    const struct keel_redis_reply *v;

    if (rc == KEEL_OK && r->type == KEEL_REDIS_ARRAY && r->elements == 2 &&
        r->element[0].type == KEEL_REDIS_STRING) {
        v = &r->element[1];
        if (v->type == KEEL_REDIS_STRING && tagged_ok(v->str, v->len)) {
            bool neg = v->str[0] == KEEL__CACHE_TAG_NEGATIVE;

            keel__cache_count("l2", neg ? "negative" : "hit");
            complete(f, result_make(neg ? KEEL_E_NOT_FOUND : KEEL_OK, v->str[0], v->str + 1,
                                    v->len - 1, "l2"));
            answer(t, f->res, f->done, f->arg);
            return;
        }
        if (v->type == KEEL_REDIS_NIL) { /* our lease is in place */
            f->l2key = keel_arena_memdup(t->arena, r->element[0].str, r->element[0].len);
            f->l2len = r->element[0].len;
        }
        /* Anything else is another instance's lease: load, leave L2 to it. */
    }
    keel__cache_count("l2", "miss");
    rc = load_start(t, f);
    if (rc < 0) {
        complete(f, result_make(rc, 0, NULL, 0, "db"));
        answer(t, f->res, f->done, f->arg);
    }
}

static keel_status l2_read(struct keel_task *t, struct flight *f)
{
    char px[16], genkey[sizeof(KEEL__CACHE_GEN_PREFIX) + KEEL_CACHE_KEY_MAX];
    struct args a = {0};

    snprintf(f->lease, sizeof(f->lease), "L%s:%llu", keel__cache.id,
             (unsigned long long)atomic_fetch_add(&G.lease_seq, 1));
    snprintf(px, sizeof(px), "%d", LEASE_MS);
    arg(&a, "EVAL", 4);
    arg(&a, READ_LUA, sizeof(READ_LUA) - 1);
    arg(&a, f->key.ns ? "2" : "1", 1);
    arg(&a, KEEL__CACHE_EPOCH_KEY, sizeof(KEEL__CACHE_EPOCH_KEY) - 1);
    if (f->key.ns) {
        memcpy(genkey, KEEL__CACHE_GEN_PREFIX, sizeof(KEEL__CACHE_GEN_PREFIX) - 1);
        memcpy(genkey + sizeof(KEEL__CACHE_GEN_PREFIX) - 1, f->key.ns, f->key.nslen);
        arg(&a, genkey, sizeof(KEEL__CACHE_GEN_PREFIX) - 1 + f->key.nslen);
    }
    arg(&a, f->key.ns ? f->key.ns : "", f->key.nslen);
    arg(&a, f->key.rest, f->key.restlen);
    arg(&a, f->lease, strlen(f->lease));
    arg(&a, px, strlen(px));
    return keel_redis_command_argv(keel_task_uv_loop(t), t->loop, on_l2_read, f, a.n, a.v, a.len);
}

/* ------------------------------------------------------------ the miss */

struct call {
    struct keel__cache_key k;
    const char *l1key;
    size_t l1len;
    uint32_t ttl_ms;
    enum keel_db_intent intent;
    keel_cache_load_fn load;
    keel_cache_task_done_fn done;
    void *arg;
};

static struct flight *flight_new(struct keel_task *t, const struct call *c, uint64_t h)
{
    struct flight *f = keel_arena_calloc(t->arena, 1, sizeof(*f));

    if (!f)
        return NULL;
    f->hash = h;
    f->l1key = keel_arena_memdup(t->arena, c->l1key, c->l1len);
    f->l1len = c->l1len;
    f->keycopy = keel_arena_memdup(t->arena, c->k.key, c->k.len);
    if (!f->l1key || !f->keycopy || !keel__cache_key_split(f->keycopy, c->k.len, &f->key) ||
        keel_arena_defer(t->arena, flight_cleanup, f) < 0)
        return NULL;
    f->task = t;
    f->ttl_ms = c->ttl_ms;
    f->intent = c->intent;
    f->load = c->load;
    f->done = c->done;
    f->arg = c->arg;
    return f;
}

/* The leader: L2 when it can be used, else (or after an L2 miss) a load. */
static keel_status lead(struct keel_task *t, struct flight *f)
{
    keel_status rc;

    if (l2_usable(t) && l2_read(t, f) == KEEL_OK)
        return keel_task_wait(t);
    rc = load_start(t, f);
    if (rc < 0) {
        complete(f, result_make(rc, 0, NULL, 0, "db"));
        return rc; /* waiters get rc too */
    }
    return keel_task_wait(t);
}

/* L1 missed: join the key's flight, or start one. The table's mutex makes
 * "no flight and not in L1" one decision: a completion fills L1 and leaves
 * the table in one step, so a second load of the same key cannot start
 * while the first one's result is being stored. */
static keel_status miss(struct keel_task *t, const struct call *c)
{
    uint64_t h = keel__cache_hash('f', c->l1key, c->l1len);
    struct waiter *w = keel_arena_calloc(t->arena, 1, sizeof(*w));
    struct flight *f = flight_new(t, c, h), *lead_f;
    struct keel_buf b;
    keel_status rc;

    if (!w || !f)
        return KEEL_E_NOMEM;
    keel_buf_init(&b, KEEL_CACHE_VALUE_MAX + 1);
    pthread_mutex_lock(&G.fmu);
    lead_f = flight_find(h, c->l1key, c->l1len);
    if (lead_f) {
        w->task = t;
        w->done = c->done;
        w->arg = c->arg;
        w->loop = t->loop;
        w->next = lead_f->waiters;
        lead_f->waiters = w;
        pthread_mutex_unlock(&G.fmu);
        keel_buf_free(&b);
        keel__cache_count("l1", "miss");
        return keel_task_wait(t);
    }
    if (l1_fetch(c->l1key, c->l1len, &b)) { /* filled since our first look */
        pthread_mutex_unlock(&G.fmu);
        rc = l1_reply(t, &b, c->done, c->arg);
        keel_buf_free(&b);
        return rc;
    }
    f->in_table = true;
    f->hnext = G.flights[h % FLIGHT_BUCKETS];
    G.flights[h % FLIGHT_BUCKETS] = f;
    pthread_mutex_unlock(&G.fmu);
    keel_buf_free(&b);
    keel__cache_count("l1", "miss");
    return lead(t, f);
}

keel_status keel_cache_get_task(struct keel_task *t,
                                const char *key,
                                uint32_t ttl_ms,
                                enum keel_db_intent intent,
                                keel_cache_load_fn load,
                                keel_cache_task_done_fn done,
                                void *arg)
{
    char l1k[KEEL__CACHE_L1KEY_MAX];
    struct call c = {.ttl_ms = ttl_ms, .intent = intent, .load = load, .done = done, .arg = arg};
    struct keel_buf b;
    keel_status rc;

    if (!keel__cache.on || ttl_ms == 0 || !key ||
        !keel__cache_key_split(key, strnlen(key, KEEL_CACHE_KEY_MAX + 1), &c.k) || c.k.flush)
        return pass_through(t, intent, load, done, arg);
    c.l1key = l1k;
    c.l1len = keel__cache_l1_key_now(&c.k, l1k);
    keel_buf_init(&b, KEEL_CACHE_VALUE_MAX + 1);
    if (l1_fetch(l1k, c.l1len, &b)) {
        rc = l1_reply(t, &b, done, arg);
        keel_buf_free(&b);
        return rc;
    }
    keel_buf_free(&b);
    return miss(t, &c);
}

/* ---------------------------------------------------------- life cycle */

void keel__cache_get_init(void)
{
    memset(&G, 0, sizeof(G));
    pthread_mutex_init(&G.fmu, NULL);
}

void keel__cache_get_fini(void)
{
    pthread_mutex_destroy(&G.fmu);
}
