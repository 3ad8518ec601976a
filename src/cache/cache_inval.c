/*
 * cache_inval.c - sending invalidations (keel_cache_invalidate,
 * include/keel/cache.h): after the caller's commit, the keys are dropped
 * here at once, then deleted from L2 and published to every instance, and
 * the request continues when that has been answered.
 *
 * DESIGN (cache.c has the whole picture). With Redis, one Lua script per
 * message deletes the keys (or bumps the namespaces) and PUBLISHes the
 * message in one step, so a receiver that gets the message finds L2
 * already clean. With PostgreSQL, the same messages go out by NOTIFY on
 * the primary, in parallel, from a pool thread: when Redis is down, slow
 * or unreachable from here, invalidations still reach every instance. The
 * keys are applied here twice, before and after the script ran, since a
 * read in between may have copied the old L2 value into L1. A script that
 * failed may have left old values in L2: L2 is then retired (the epoch is
 * bumped before anyone reads it again), and the message is sent again
 * through PostgreSQL flagged "retire", so other instances do the same.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "keel/cache.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/redis.h"
#include "keel/task.h"

#include "cache/cache_int.h"

/* ------------------------------------------------------------- script */

/* KEYS[1] epoch; ARGV: channel, message, then (kind, namespace, rest)
 * triples: kind 'n' bumps the namespace, 'k' deletes the key. */
static const char INVAL_LUA[] =
    "local e = redis.call('GET', KEYS[1]) or '0' "
    "for i = 3, #ARGV, 3 do "
    "local ns, rest = ARGV[i + 1], ARGV[i + 2] "
    "if ARGV[i] == 'n' then redis.call('INCR', 'keel:cg:' .. ns) "
    "elseif ns == '' then redis.call('DEL', 'keel:c:' .. e .. ':' .. rest) "
    "else redis.call('DEL', 'keel:c:' .. e .. ':' .. ns .. ':g' .. "
    "(redis.call('GET', 'keel:cg:' .. ns) or '0') .. ':' .. rest) end "
    "end "
    "redis.call('PUBLISH', ARGV[1], ARGV[2]) "
    "return 1";

/* -------------------------------------------------------------- state */

/* One message: keys[first .. first + count) of its invalidation. */
struct chunk {
    struct inval *inv;
    unsigned first, count;
    uint64_t seq;
    struct keel_buf msg;
};

/* One keel_cache_invalidate_task call, on the heap until both channels answered. */
struct inval {
    struct keel_task *task;
    keel_status then;
    unsigned pending;
    char **keys;
    unsigned nkeys;
    struct chunk *chunks;
    unsigned nchunks;
    keel_status pg_rc;
    uv_work_t work;
};

static void inval_free(struct inval *inv)
{
    unsigned i;

    for (i = 0; i < inv->nkeys; i++)
        free(inv->keys[i]);
    for (i = 0; i < inv->nchunks; i++)
        keel_buf_free(&inv->chunks[i].msg);
    free(inv->keys);
    free(inv->chunks);
    free(inv);
}

/* Applies the valid keys here and keeps copies; NULL when none is valid. */
static struct inval *inval_new(const char *const *keys, unsigned nkeys)
{
    struct inval *inv = keel_xcalloc(1, sizeof(*inv));
    struct keel__cache_key k;
    unsigned i;
    size_t len;

    inv->keys = keel_xcalloc(nkeys, sizeof(*inv->keys));
    for (i = 0; i < nkeys; i++) {
        len = keys[i] ? strnlen(keys[i], KEEL_CACHE_KEY_MAX + 1) : 0;
        if (!keel__cache_key_split(keys[i], len, &k))
            continue; /* never cached, so nothing to drop */
        keel__cache_apply(keys[i], len);
        inv->keys[inv->nkeys++] = keel_xstrdup(keys[i]);
    }
    if (inv->nkeys == 0) {
        inval_free(inv);
        return NULL;
    }
    keel_metric_add(keel__cache.m_inval, (const char *const[]){"sent"}, inv->nkeys);
    return inv;
}

static unsigned chunk_encode(struct chunk *ch, bool retire)
{
    return keel__cache_msg_encode(&ch->msg, keel__cache.id, ch->seq, retire,
                                  (const char *const *)ch->inv->keys + ch->first,
                                  ch->count ? ch->count : ch->inv->nkeys - ch->first);
}

static void inval_chunks(struct inval *inv)
{
    unsigned first = 0, n;

    inv->chunks = keel_xcalloc(inv->nkeys, sizeof(*inv->chunks));
    while (first < inv->nkeys) {
        struct chunk *ch = &inv->chunks[inv->nchunks++];

        keel_buf_init(&ch->msg, KEEL__CACHE_MSG_MAX + 64);
        ch->inv = inv;
        ch->first = first;
        ch->seq = atomic_fetch_add(&keel__cache.seq, 1) + 1;
        n = chunk_encode(ch, false);
        if (KEEL_NEVER(n == 0))
            break;
        ch->count = n;
        first += n;
    }
}

static void inval_done(struct inval *inv)
{
    struct keel_task *t = inv->task;
    keel_status then = inv->then;

    if (--inv->pending > 0)
        return;
    inval_free(inv);
    keel_task_resume(t, then);
}

/* ------------------------------------------------------------ PostgreSQL */

/* Pool thread: NOTIFY each message on the primary. */
static keel_status pg_notify(struct keel_buf *const *msgs, unsigned n)
{
    struct keel_db *db = keel_db_default();
    struct keel_db_conn *c;
    struct keel_db_rows *rows;
    keel_status rc;
    unsigned i;

    rc = db ? keel_db_acquire(db, KEEL_DB_READ_PRIMARY, NULL, &c) : KEEL_E_UNAVAILABLE;
    if (rc < 0)
        return rc;
    for (i = 0; rc == KEEL_OK && i < n; i++) {
        const struct keel_db_param p[] = {KEEL_DB_TEXT(KEEL__CACHE_PG_CHANNEL),
                                          KEEL_DB_TEXTN(msgs[i]->data, msgs[i]->len)};

        rc = keel_db_query(c, "SELECT pg_notify($1, $2)", p, 2, &rows);
        if (rc == KEEL_OK) {
            rc = keel_db_next(rows);
            keel_db_rows_free(rows);
            rc = rc < 0 ? rc : KEEL_OK;
        }
    }
    keel_db_release(c);
    return rc;
}

static void log_notify_failure(keel_status rc)
{
    keel_log(KEEL_LOG_WARN,
             "cache: PostgreSQL NOTIFY failed; without Redis, other instances "
             "drop the keys when their L1 entries expire",
             KEEL_LF_STR("error", keel_strerror(rc)));
}

static void notify_work(uv_work_t *w)
{
    struct inval *inv = w->data;
    struct keel_buf **msgs = keel_xcalloc(inv->nchunks, sizeof(*msgs));
    unsigned i;

    for (i = 0; i < inv->nchunks; i++)
        msgs[i] = &inv->chunks[i].msg;
    inv->pg_rc = pg_notify(msgs, inv->nchunks);
    free(msgs);
}

static void notify_after(uv_work_t *w, int status)
{
    struct inval *inv = w->data;

    (void)status;
    if (inv->pg_rc < 0)
        log_notify_failure(inv->pg_rc);
    inval_done(inv);
}

/* A chunk whose L2 script failed after it was sent (a timeout, a lost
 * connection) goes out again through PostgreSQL with the retire flag:
 * other instances must not read what the DEL may have missed. The request
 * waits for it like for the first NOTIFY. */
struct retire {
    uv_work_t work;
    struct inval *inv;
    struct keel_buf msg;
    keel_status rc;
};

static void retire_work(uv_work_t *w)
{
    struct retire *r = w->data;
    struct keel_buf *m = &r->msg;

    r->rc = pg_notify(&m, 1);
}

static void retire_after(uv_work_t *w, int status)
{
    struct retire *r = w->data;
    struct inval *inv = r->inv;

    (void)status;
    if (r->rc < 0)
        log_notify_failure(r->rc);
    keel_buf_free(&r->msg);
    free(r);
    inval_done(inv);
}

static void retire_send(struct chunk *ch)
{
    struct retire *r;

    if (!keel__cache.pg)
        return;
    r = keel_xcalloc(1, sizeof(*r));
    r->work.data = r;
    r->inv = ch->inv;
    keel_buf_init(&r->msg, KEEL__CACHE_MSG_MAX + 64);
    if (keel__cache_msg_encode(&r->msg, keel__cache.id, ch->seq, true,
                               (const char *const *)ch->inv->keys + ch->first, ch->count) == 0 ||
        uv_queue_work(keel_task_uv_loop(ch->inv->task), &r->work, retire_work, retire_after) < 0) {
        keel_buf_free(&r->msg);
        free(r);
        return;
    }
    ch->inv->pending++;
}

/* ----------------------------------------------------------------- Redis */

static void on_inval(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    struct chunk *ch = arg;
    unsigned i;

    (void)r;
    if (rc < 0) { /* the DEL may not have run: retire L2, here and elsewhere */
        atomic_fetch_add(&keel__cache.l2_failed, 1);
        retire_send(ch);
    }
    /* Anything read from L2 before the DEL ran may have reached L1. */
    for (i = ch->first; i < ch->first + ch->count; i++)
        keel__cache_apply(ch->inv->keys[i], strlen(ch->inv->keys[i]));
    inval_done(ch->inv);
}

static keel_status inval_redis(struct keel_task *t, struct chunk *ch)
{
    unsigned argc = 6 + 3 * ch->count, i, n = 0;
    const char **v = keel_xcalloc(argc, sizeof(*v));
    size_t *len = keel_xcalloc(argc, sizeof(*len));
    struct keel__cache_key k;
    keel_status rc;

#define ARG(p, l) (v[n] = (p), len[n++] = (l))
    ARG("EVAL", 4);
    ARG(INVAL_LUA, sizeof(INVAL_LUA) - 1);
    ARG("1", 1);
    ARG(KEEL__CACHE_EPOCH_KEY, sizeof(KEEL__CACHE_EPOCH_KEY) - 1);
    ARG(KEEL__CACHE_REDIS_CHANNEL, sizeof(KEEL__CACHE_REDIS_CHANNEL) - 1);
    ARG(ch->msg.data, ch->msg.len);
    for (i = ch->first; i < ch->first + ch->count; i++) {
        (void)keel__cache_key_split(ch->inv->keys[i], strlen(ch->inv->keys[i]), &k);
        ARG(k.flush ? "n" : "k", 1);
        ARG(k.ns ? k.ns : "", k.nslen);
        ARG(k.rest, k.restlen);
    }
#undef ARG
    rc = keel_redis_command_argv(keel_task_uv_loop(t), t->loop, on_inval, ch, (int)argc, v, len);
    free(v);
    free(len);
    return rc;
}

/* ----------------------------------------------------------------------- */

keel_status keel_cache_invalidate_task(struct keel_task *t,
                                       const char *const *keys,
                                       unsigned nkeys,
                                       keel_status then)
{
    struct inval *inv;
    unsigned i;

    if (!keel__cache.on || !keys || nkeys == 0)
        return then;
    inv = inval_new(keys, nkeys);
    if (!inv)
        return then;
    if (!keel_redis_enabled() && !keel__cache.pg) { /* one instance, no L2: done */
        inval_free(inv);
        return then;
    }
    inval_chunks(inv);
    inv->task = t;
    inv->then = then;
    for (i = 0; keel_redis_enabled() && i < inv->nchunks; i++) {
        if (inval_redis(t, &inv->chunks[i]) == KEEL_OK) {
            inv->pending++;
        } else { /* Redis down or breaker open: L2 keeps what the DEL missed */
            atomic_fetch_add(&keel__cache.l2_failed, 1);
            (void)chunk_encode(&inv->chunks[i], true);
        }
    }
    inv->work.data = inv;
    if (keel__cache.pg &&
        uv_queue_work(keel_task_uv_loop(t), &inv->work, notify_work, notify_after) == 0)
        inv->pending++;
    if (inv->pending == 0) {
        inval_free(inv);
        return then;
    }
    return keel_task_wait(t);
}
