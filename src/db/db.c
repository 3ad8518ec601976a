/*
 * db.c - the storage core: connection pools, routing of reads and writes,
 * read-your-writes, transactions with retry, the bridge from event loops,
 * replica monitoring, and the storage metrics and readiness checks.
 *
 * DESIGN: queries run on libuv's thread pool with the drivers' blocking
 * calls (docs/internals/storage.md explains the choice over libpq's
 * asynchronous API: one model for both drivers, transactions that read as
 * straight-line code, and a bounded number of queries in flight).
 *
 * Pools: the primary and each replica have a pool of `size` connection
 * slots, connected lazily and replaced when a driver reports them broken.
 * A checkout waits at most 5 s for a free slot. A pool whose connect fails
 * backs off (100 ms doubling to 5 s) so a dead server is not hammered and
 * callers fail fast with KEEL_E_UNAVAILABLE. With several hosts in a
 * PostgreSQL URL and target_session_attrs=read-write, a reconnect lands on
 * the new primary by itself (libpq).
 *
 * Read-your-writes (seed 000 "read path"): after a session's write commits
 * on the primary, its WAL position is remembered for that session; a read
 * may use a replica only when the replica's replay position (polled every
 * 100 ms by the monitor thread) is at or past it. Whenever the answer is
 * unknown - no position, a replica not yet polled, a failing replica - the
 * read goes to the primary. Sessions that never wrote read from replicas.
 * The map is per process: with several instances, a user whose next request
 * lands on another instance is protected by that instance falling back to
 * the primary only if it knows the position; docs/internals/storage.md
 * describes the limit.
 *
 * SQLite: one writer at a time is the database's own rule; a process-wide
 * mutex serializes write transactions so they queue in order instead of
 * spinning on SQLITE_BUSY, while readers (WAL mode) never take it.
 */
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/arena.h"
#include "keel/config.h"
#include "keel/health.h"
#include "keel/json.h"
#include "keel/lane.h"
#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/task.h"

#include "db/db_int.h"

#define WAIT_MS        5000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MONITOR_MS     100
#define MAX_LAG_S      10.0
#define TX_ATTEMPTS    5
#define SESSION_MAX    65536
#define SESSION_TTL_MS (60 * 1000)
#define ERRLEN         256
#define LAG_SAMPLES    256

struct keel_db_pool;

struct keel_db_conn {
    struct keel_db *db;
    struct keel_db_pool *pool;
    void *h; /* NULL: not connected */
    struct keel_db_conn *next_free;
    struct keel_db_rows rows;
    bool rows_open;
    bool in_tx;
    bool write_locked; /* holds db->write_mu (SQLite write transaction) */
    unsigned timeout_ms;
    char err[ERRLEN];
    /* keel_db_after_commit: run after this transaction commits. */
    struct {
        void (*fn)(void *arg);
        void *arg;
    } after[KEEL_DB_AFTER_COMMIT_MAX];
    unsigned nafter;
};

struct keel_db_pool {
    struct keel_db *db;
    char name[32];
    char *url;
    bool read_only;
    unsigned size;
    struct keel_db_conn *slots;
    struct keel_db_conn *free_list;
    unsigned in_use;
    unsigned waiting;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t retry_at_ms; /* connect backoff */
    uint64_t backoff_ms;
    /* Replicas: written by the monitor, read by every checkout. */
    _Atomic bool healthy;
    _Atomic uint64_t replay_lsn;
    _Atomic bool polled;
    double lag_s;
    void *monitor_h;
};

struct session {
    uint64_t hash;
    uint64_t lsn;
    uint64_t expires_ms;
};

struct keel_db {
    const struct keel_db_driver *drv;
    struct keel_lane *lane; /* runs keel_db_run / keel_db_offload work */
    struct keel_db_pool primary;
    struct keel_db_pool *replicas;
    unsigned nreplicas;
    _Atomic unsigned rr;
    pthread_mutex_t write_mu;
    pthread_mutex_t sess_mu;
    struct session *sessions; /* open addressing, SESSION_MAX slots */
    unsigned char sess_key[crypto_shorthash_KEYBYTES];
    /* The primary's WAL position over time, for replica lag in seconds. */
    struct {
        uint64_t ms;
        uint64_t lsn;
    } wal[LAG_SAMPLES];
    unsigned nwal;
    pthread_t monitor;
    bool monitor_running;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stop;
};

static struct keel_db *default_db;
static struct keel_metric *m_size, *m_in_use, *m_waiting, *m_query, *m_errors, *m_lag;

/* ---------------------------------------------------------------- time */

static uint64_t now_ms(void)
{
    return keel_now_ns() / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------- metrics */

static void metrics_init(void)
{
    static const char *const pool_l[] = {"pool"};
    static const char *const kind_l[] = {"kind"};
    static const char *const role_l[] = {"role"};
    static const char *const replica_l[] = {"replica"};
    static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,    0.1,    0.25,  1,      5};

    if (m_size)
        return;
    m_size = keel_metric_gauge("keel_db_pool_size", "Connection slots per pool.", 1, pool_l);
    m_in_use = keel_metric_gauge("keel_db_pool_in_use", "Connections checked out.", 1, pool_l);
    m_waiting =
        keel_metric_gauge("keel_db_pool_waiting", "Callers waiting for a connection.", 1, pool_l);
    m_query = keel_metric_histogram("keel_db_query_duration_seconds",
                                    "Time of one statement, by server role.", 1, role_l, buckets,
                                    KEEL_ARRAY_LEN(buckets));
    m_errors = keel_metric_counter("keel_db_errors_total", "Storage errors by kind.", 1, kind_l);
    m_lag =
        keel_metric_gauge("keel_db_replica_lag_seconds",
                          "Replay lag of each replica (seconds behind the primary).", 1, replica_l);
}

/* Thread-pool threads are libuv's, created without a hook: each takes a
 * private metrics shard on its first storage call, so the per-query
 * updates below never take the registry's shared lock. Shards 0..63 belong
 * to event loops. */
static void metrics_thread(void)
{
    static _Atomic unsigned next_shard = 64;
    static _Thread_local bool bound;
    unsigned shard;

    if (bound)
        return;
    bound = true;
    shard = atomic_fetch_add(&next_shard, 1);
    if (shard < KEEL_METRICS_MAX_THREADS)
        keel_metrics_thread_init(shard);
}

/* Gauges move by deltas (summed over shards at scrape time). */
static void gauge_add(struct keel_metric *m, struct keel_db_pool *p, double d)
{
    const char *l[] = {p->name};

    keel_metric_add(m, l, d);
}

static const char *error_kind(keel_status rc)
{
    switch (rc) {
    case KEEL_E_CONFLICT:
        return "conflict";
    case KEEL_E_TIMEOUT:
        return "timeout";
    case KEEL_E_UNAVAILABLE:
        return "unavailable";
    case KEEL_E_INVALID:
        return "invalid";
    case KEEL_E_NOMEM:
        return "nomem";
    default:
        return "db";
    }
}

static void count_error(keel_status rc)
{
    const char *l[] = {error_kind(rc)};

    keel_metric_add(m_errors, l, 1);
}

/* --------------------------------------------------------------- pools */

static keel_status pool_init(struct keel_db *db,
                             struct keel_db_pool *p,
                             const char *name,
                             const char *url,
                             bool read_only,
                             unsigned size)
{
    unsigned i;
    const char *l[] = {name};

    p->db = db;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->url = keel_xstrdup(url);
    p->read_only = read_only;
    p->size = size;
    p->slots = keel_xcalloc(size, sizeof(*p->slots));
    for (i = 0; i < size; i++) {
        p->slots[i].db = db;
        p->slots[i].pool = p;
        p->slots[i].timeout_ms = 5000;
        p->slots[i].next_free = i + 1 < size ? &p->slots[i + 1] : NULL;
    }
    p->free_list = &p->slots[0];
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_store(&p->healthy, true);
    keel_metric_set(m_size, l, size);
    return KEEL_OK;
}

static void pool_fini(struct keel_db_pool *p)
{
    unsigned i;

    if (!p->slots)
        return;
    for (i = 0; i < p->size; i++)
        if (p->slots[i].h)
            p->db->drv->close(p->slots[i].h);
    if (p->monitor_h)
        p->db->drv->close(p->monitor_h);
    free(p->slots);
    if (p->url) {
        memset(p->url, 0, strlen(p->url)); /* it may hold a password */
        free(p->url);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

/* Connects a slot, honouring the pool's backoff. Called without the lock. */
static keel_status slot_connect(struct keel_db_conn *c)
{
    struct keel_db_pool *p = c->pool;
    uint64_t t = now_ms();
    keel_status rc;

    pthread_mutex_lock(&p->mu);
    if (t < p->retry_at_ms) {
        pthread_mutex_unlock(&p->mu);
        snprintf(c->err, sizeof(c->err), "%s unreachable (backing off)", p->name);
        return KEEL_E_UNAVAILABLE;
    }
    pthread_mutex_unlock(&p->mu);
    rc = p->db->drv->connect(p->url, p->read_only, &c->h, c->err, sizeof(c->err));
    pthread_mutex_lock(&p->mu);
    if (rc < 0) {
        c->h = NULL;
        p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (p->backoff_ms > BACKOFF_MAX_MS)
            p->backoff_ms = BACKOFF_MAX_MS;
        p->retry_at_ms =
            now_ms() + p->backoff_ms / 2 + (uint64_t)(rand() % (int)(p->backoff_ms / 2 + 1));
    } else {
        p->backoff_ms = 0;
        p->retry_at_ms = 0;
        p->db->drv->set_timeout(c->h, c->timeout_ms);
    }
    pthread_mutex_unlock(&p->mu);
    if (rc < 0)
        keel_log(KEEL_LOG_WARN, "database connect failed", KEEL_LF_STR("pool", p->name),
                 KEEL_LF_STR("error", c->err));
    return rc < 0 ? KEEL_E_UNAVAILABLE : KEEL_OK;
}

/* The connection this thread used last, when it is free: a thread that
 * keeps its connection keeps its socket's and libpq's state warm in its
 * CPU's cache; handing connections round makes threads and the kernel move
 * work between CPUs (measured: +20 % point selects, bench/storage.sh). */
static _Thread_local struct keel_db_conn *last_conn;

static struct keel_db_conn *take_free(struct keel_db_pool *p)
{
    struct keel_db_conn **pp = &p->free_list, *c;

    /* Compared as addresses, never dereferenced: the hint may outlive the
     * database it came from. */
    if ((uintptr_t)last_conn >= (uintptr_t)p->slots &&
        (uintptr_t)last_conn < (uintptr_t)(p->slots + p->size)) {
        while (*pp && *pp != last_conn)
            pp = &(*pp)->next_free;
        if (!*pp)
            pp = &p->free_list;
    }
    c = *pp;
    if (c) {
        *pp = c->next_free;
        last_conn = c;
    }
    return c;
}

static keel_status pool_checkout(struct keel_db_pool *p, struct keel_db_conn **out)
{
    struct timespec deadline;
    struct keel_db_conn *c;
    keel_status rc;
    int w = 0;

    metrics_thread();
    pthread_mutex_lock(&p->mu);
    if (!p->free_list) {
        deadline = keel_deadline_in(CLOCK_REALTIME, WAIT_MS);
        gauge_add(m_waiting, p, 1);
        while (!p->free_list && w == 0) {
            p->waiting++;
            w = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
            p->waiting--;
        }
        gauge_add(m_waiting, p, -1);
    }
    c = take_free(p);
    if (!c) {
        pthread_mutex_unlock(&p->mu);
        return KEEL_E_TIMEOUT;
    }
    p->in_use++;
    pthread_mutex_unlock(&p->mu);
    gauge_add(m_in_use, p, 1);
    c->err[0] = '\0';
    if (!c->h) {
        rc = slot_connect(c);
        if (rc < 0) {
            keel_db_release(c);
            return rc;
        }
    }
    *out = c;
    return KEEL_OK;
}

/* ------------------------------------------------------ read-your-writes */

/* SipHash keyed per process: session keys are user ids, which a client
 * chooses, and a keyed hash keeps the table from being steered. */
static uint64_t session_hash(const struct keel_db *db, const char *key)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;

    crypto_shorthash(out, (const unsigned char *)key, strlen(key), db->sess_key);
    memcpy(&h, out, sizeof(h));
    return h ? h : 1;
}

static uint64_t session_lsn(struct keel_db *db, const char *key)
{
    uint64_t h = session_hash(db, key), lsn = 0, t = now_ms();
    unsigned i, slot;

    pthread_mutex_lock(&db->sess_mu);
    for (i = 0; i < 8; i++) {
        slot = (unsigned)((h + i) % SESSION_MAX);
        if (db->sessions[slot].hash == h && db->sessions[slot].expires_ms > t) {
            lsn = db->sessions[slot].lsn;
            break;
        }
    }
    pthread_mutex_unlock(&db->sess_mu);
    return lsn;
}

/* Remembers the session's last write. When the probe window is full the
 * oldest entry is replaced; a forgotten session only means its next reads
 * may go to a replica that lags, within SESSION_TTL_MS after the write
 * replicas have long caught up. */
static void session_record(struct keel_db *db, const char *key, uint64_t lsn)
{
    uint64_t h = session_hash(db, key), t = now_ms();
    unsigned i, slot, victim = (unsigned)(h % SESSION_MAX);

    pthread_mutex_lock(&db->sess_mu);
    for (i = 0; i < 8; i++) {
        slot = (unsigned)((h + i) % SESSION_MAX);
        if (db->sessions[slot].hash == h || db->sessions[slot].expires_ms <= t) {
            victim = slot;
            break;
        }
        if (db->sessions[slot].expires_ms < db->sessions[victim].expires_ms)
            victim = slot;
    }
    db->sessions[victim].hash = h;
    if (db->sessions[victim].lsn < lsn || db->sessions[victim].expires_ms <= t)
        db->sessions[victim].lsn = lsn;
    db->sessions[victim].expires_ms = t + SESSION_TTL_MS;
    pthread_mutex_unlock(&db->sess_mu);
}

static void note_commit(struct keel_db_conn *c, const struct keel_db_session *sess)
{
    struct keel_db *db = c->db;
    uint64_t lsn;

    if (!db->nreplicas || !sess || !sess->key || !sess->key[0] || !db->drv->wal_lsn)
        return;
    if (db->drv->wal_lsn(c->h, &lsn) == KEEL_OK)
        session_record(db, sess->key, lsn);
    else
        session_record(db, sess->key, UINT64_MAX); /* unknown: primary until TTL */
}

/* A replica for this read, or NULL for the primary. */
static struct keel_db_pool *pick_replica(struct keel_db *db, const struct keel_db_session *sess)
{
    uint64_t need = 0;
    unsigned i, start;

    if (!db->nreplicas)
        return NULL;
    if (sess && sess->key && sess->key[0])
        need = session_lsn(db, sess->key);
    start = atomic_fetch_add_explicit(&db->rr, 1, memory_order_relaxed);
    for (i = 0; i < db->nreplicas; i++) {
        struct keel_db_pool *p = &db->replicas[(start + i) % db->nreplicas];

        if (!atomic_load(&p->healthy) || !atomic_load(&p->polled))
            continue;
        if (need && atomic_load(&p->replay_lsn) < need)
            continue;
        return p;
    }
    return NULL;
}

/* --------------------------------------------------------- connections */

keel_status keel_db_acquire(struct keel_db *db,
                            enum keel_db_intent intent,
                            const struct keel_db_session *sess,
                            struct keel_db_conn **out)
{
    struct keel_db_pool *p = NULL;
    keel_status rc;

    *out = NULL;
    if (intent == KEEL_DB_READ)
        p = pick_replica(db, sess);
    if (p) {
        rc = pool_checkout(p, out);
        if (rc == KEEL_OK)
            return KEEL_OK;
        /* A replica that cannot serve is the monitor's to take out; this
         * read goes to the primary. */
    }
    rc = pool_checkout(&db->primary, out);
    if (rc < 0)
        count_error(rc);
    return rc;
}

void keel_db_release(struct keel_db_conn *c)
{
    struct keel_db_pool *p;

    if (!c)
        return;
    p = c->pool;
    if (c->rows_open)
        keel_db_rows_free(&c->rows);
    if (c->h && c->in_tx)
        c->db->drv->rollback(c->h);
    c->in_tx = false;
    if (c->write_locked) {
        c->write_locked = false;
        pthread_mutex_unlock(&c->db->write_mu);
    }
    if (c->h && c->db->drv->broken(c->h)) {
        c->db->drv->close(c->h);
        c->h = NULL;
    }
    pthread_mutex_lock(&p->mu);
    c->next_free = p->free_list;
    p->free_list = c;
    p->in_use--;
    if (p->waiting)
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    gauge_add(m_in_use, p, -1);
}

const char *keel_db_conn_role(const struct keel_db_conn *c)
{
    return c->pool == &c->db->primary ? "primary" : "replica";
}

const char *keel_db_errmsg(const struct keel_db_conn *c)
{
    if (c->err[0])
        return c->err;
    return c->h ? c->db->drv->errmsg(c->h) : "not connected";
}

void keel_db_set_timeout(struct keel_db_conn *c, unsigned ms)
{
    c->timeout_ms = ms;
    if (c->h)
        c->db->drv->set_timeout(c->h, ms);
}

/* ----------------------------------------------------------- statements */

static keel_status run(struct keel_db_conn *c,
                       const char *sql,
                       const struct keel_db_param *params,
                       unsigned n,
                       struct keel_db_rows *rows,
                       int64_t *affected)
{
    uint64_t t0 = keel_now_ns();
    const char *role[] = {keel_db_conn_role(c)};
    keel_status rc;

    if (!c->h)
        return KEEL_E_UNAVAILABLE;
    rc = c->db->drv->run(c->h, sql, params, n, rows, affected);
    keel_metric_observe(m_query, role, (double)(keel_now_ns() - t0) / 1e9);
    if (rc < 0) {
        count_error(rc);
        snprintf(c->err, sizeof(c->err), "%s", c->db->drv->errmsg(c->h));
    }
    return rc;
}

keel_status keel_db_exec(struct keel_db_conn *c,
                         const char *sql,
                         const struct keel_db_param *params,
                         unsigned nparams,
                         int64_t *affected)
{
    if (c->rows_open)
        keel_db_rows_free(&c->rows);
    return run(c, sql, params, nparams, NULL, affected);
}

keel_status keel_db_exec_deferred(struct keel_db_conn *c,
                                  const char *sql,
                                  const struct keel_db_param *params,
                                  unsigned nparams)
{
    keel_status rc;

    if (!c->in_tx)
        return KEEL_E_INVALID;
    if (!c->h)
        return KEEL_E_UNAVAILABLE;
    if (c->rows_open)
        keel_db_rows_free(&c->rows);
    if (!c->db->drv->defer)
        return run(c, sql, params, nparams, NULL, NULL);
    rc = c->db->drv->defer(c->h, sql, params, nparams);
    if (rc < 0) {
        count_error(rc);
        snprintf(c->err, sizeof(c->err), "%s", c->db->drv->errmsg(c->h));
    }
    return rc;
}

keel_status keel_db_query(struct keel_db_conn *c,
                          const char *sql,
                          const struct keel_db_param *params,
                          unsigned nparams,
                          struct keel_db_rows **out)
{
    keel_status rc;

    *out = NULL;
    if (c->rows_open)
        keel_db_rows_free(&c->rows);
    memset(&c->rows, 0, sizeof(c->rows));
    c->rows.conn = c;
    rc = run(c, sql, params, nparams, &c->rows, NULL);
    if (rc < 0)
        return rc;
    c->rows_open = true;
    *out = &c->rows;
    return KEEL_OK;
}

keel_status keel_db_next(struct keel_db_rows *r)
{
    keel_status rc = r->conn->db->drv->next(r);

    if (rc < 0)
        count_error(rc);
    return rc;
}

void keel_db_rows_free(struct keel_db_rows *r)
{
    if (!r || !r->conn->rows_open)
        return;
    r->conn->db->drv->rows_free(r);
    r->conn->rows_open = false;
}

#define DRV(r) ((r)->conn->db->drv)

unsigned keel_db_ncols(const struct keel_db_rows *r)
{
    return r->ncols;
}

bool keel_db_is_null(const struct keel_db_rows *r, unsigned col)
{
    return col >= r->ncols || DRV(r)->is_null(r, col);
}

const char *keel_db_text(const struct keel_db_rows *r, unsigned col, size_t *len)
{
    if (keel_db_is_null(r, col)) {
        if (len)
            *len = 0;
        return NULL;
    }
    return DRV(r)->text(r, col, len);
}

int64_t keel_db_int64(const struct keel_db_rows *r, unsigned col)
{
    return keel_db_is_null(r, col) ? 0 : DRV(r)->int64(r, col);
}

bool keel_db_bool(const struct keel_db_rows *r, unsigned col)
{
    return keel_db_is_null(r, col) ? false : DRV(r)->boolean(r, col);
}

double keel_db_double(const struct keel_db_rows *r, unsigned col)
{
    return keel_db_is_null(r, col) ? 0 : DRV(r)->dbl(r, col);
}

const void *keel_db_bytes(const struct keel_db_rows *r, unsigned col, size_t *len)
{
    if (keel_db_is_null(r, col)) {
        *len = 0;
        return NULL;
    }
    return DRV(r)->bytes(r, col, len);
}

int64_t keel_db_time(const struct keel_db_rows *r, unsigned col)
{
    return keel_db_is_null(r, col) ? 0 : DRV(r)->time(r, col);
}

bool keel_db_uuid(const struct keel_db_rows *r, unsigned col, char out[37])
{
    size_t len;
    const char *t = keel_db_text(r, col, &len);
    size_t i;

    if (!t || len != 36)
        return false;
    for (i = 0; i < 36; i++) {
        char ch = t[i];

        if ((i == 8 || i == 13 || i == 18 || i == 23)
                ? ch != '-'
                : !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                    (ch >= 'A' && ch <= 'F')))
            return false;
        out[i] = (char)((ch >= 'A' && ch <= 'F') ? ch + 32 : ch);
    }
    out[36] = '\0';
    return true;
}

/* --------------------------------------------------------- transactions */

static bool sqlite(const struct keel_db *db)
{
    return db->drv == &keel__db_sqlite;
}

keel_status keel_db_begin(struct keel_db_conn *c)
{
    keel_status rc;
    bool write = c->pool == &c->db->primary;

    if (!c->h)
        return KEEL_E_UNAVAILABLE;
    if (write && sqlite(c->db) && !c->write_locked) {
        pthread_mutex_lock(&c->db->write_mu);
        c->write_locked = true;
    }
    rc = c->db->drv->begin(c->h, write);
    if (rc < 0) {
        count_error(rc);
        if (c->write_locked) {
            c->write_locked = false;
            pthread_mutex_unlock(&c->db->write_mu);
        }
        return rc;
    }
    c->in_tx = true;
    c->nafter = 0;
    return KEEL_OK;
}

keel_status keel_db_after_commit(struct keel_db_conn *c, void (*fn)(void *arg), void *arg)
{
    unsigned i;

    if (!c->in_tx)
        return KEEL_E_INVALID;
    for (i = 0; i < c->nafter; i++)
        if (c->after[i].fn == fn && c->after[i].arg == arg)
            return KEEL_DONE;
    if (c->nafter == KEEL_DB_AFTER_COMMIT_MAX)
        return KEEL_E_TOO_LARGE;
    c->after[c->nafter].fn = fn;
    c->after[c->nafter].arg = arg;
    c->nafter++;
    return KEEL_OK;
}

/* The hooks of a transaction that committed (rc KEEL_OK) run; either way
 * they are forgotten. */
static void run_after(struct keel_db_conn *c, keel_status rc)
{
    unsigned i, n = c->nafter;

    c->nafter = 0;
    for (i = 0; rc == KEEL_OK && i < n; i++)
        c->after[i].fn(c->after[i].arg);
}

static void unlock_write(struct keel_db_conn *c)
{
    if (c->write_locked) {
        c->write_locked = false;
        pthread_mutex_unlock(&c->db->write_mu);
    }
}

keel_status keel_db_commit(struct keel_db_conn *c)
{
    keel_status rc;

    if (!c->in_tx)
        return KEEL_E_INVALID;
    if (c->rows_open)
        keel_db_rows_free(&c->rows);
    rc = c->db->drv->commit(c->h);
    if (rc < 0) {
        count_error(rc);
        snprintf(c->err, sizeof(c->err), "%s", c->db->drv->errmsg(c->h));
        /* A failed COMMIT leaves no transaction open in either engine,
         * except SQLite busy, which the caller retries after rollback. */
        c->db->drv->rollback(c->h);
    }
    c->in_tx = false;
    unlock_write(c);
    run_after(c, rc);
    return rc;
}

keel_status keel_db_rollback(struct keel_db_conn *c)
{
    keel_status rc = KEEL_OK;

    if (c->rows_open)
        keel_db_rows_free(&c->rows);
    if (c->in_tx && c->h)
        rc = c->db->drv->rollback(c->h);
    c->in_tx = false;
    c->nafter = 0;
    unlock_write(c);
    return rc;
}

static bool retryable(struct keel_db_conn *c, keel_status rc)
{
    return rc == KEEL_E_DB && c->h && c->db->drv->retryable(c->h);
}

keel_status keel_db_transaction(struct keel_db *db,
                                const struct keel_db_session *sess,
                                keel_db_tx_fn fn,
                                void *arg)
{
    struct keel_db_conn *c = NULL;
    keel_status rc = KEEL_E_DB;
    unsigned attempt;

    for (attempt = 0; attempt < TX_ATTEMPTS; attempt++) {
        if (attempt)
            sleep_ms((unsigned)(rand() % (int)(10u << attempt)) + 1); /* full jitter */
        rc = keel_db_acquire(db, KEEL_DB_WRITE, sess, &c);
        if (rc < 0)
            return rc;
        rc = keel_db_begin(c);
        if (rc == KEEL_OK) {
            rc = fn(c, arg);
            if (rc >= 0) {
                rc = keel_db_commit(c);
                if (rc == KEEL_OK)
                    note_commit(c, sess);
            }
        }
        if (rc < 0 && c->in_tx)
            keel_db_rollback(c);
        if (rc >= 0 || !retryable(c, rc)) {
            if (rc < 0 && rc != KEEL_E_CONFLICT && rc != KEEL_E_INVALID)
                keel_log(KEEL_LOG_WARN, "transaction failed",
                         KEEL_LF_STR("error", keel_db_errmsg(c)));
            keel_db_release(c);
            return rc;
        }
        keel_db_release(c);
    }
    return rc;
}

keel_status keel_db_with(struct keel_db *db,
                         enum keel_db_intent intent,
                         const struct keel_db_session *sess,
                         keel_db_tx_fn fn,
                         void *arg)
{
    struct keel_db_conn *c;
    keel_status rc;

    if (intent == KEEL_DB_WRITE)
        return keel_db_transaction(db, sess, fn, arg);
    rc = keel_db_acquire(db, intent, sess, &c);
    if (rc < 0)
        return rc;
    rc = fn(c, arg);
    keel_db_release(c);
    return rc;
}

/* ------------------------------------------------------- from the loop */

/* A storage job of a task: run on the storage lane (keel/lane.h),
 * finished on the task's loop (keel_task_post). */
struct db_job {
    struct keel_lane_job lane;
    struct keel_post post;
    struct keel_task *task;
    struct keel_db *db;
    /* keel_db_run_task: fn on a connection for `intent`; keel_db_offload_task: work. */
    enum keel_db_intent intent;
    struct keel_db_session sess;
    keel_db_fn fn;
    keel_db_work_fn work;
    keel_db_task_done_fn done;
    void *arg;
    keel_status rc;
};

static void job_run(struct keel_lane_job *lj)
{
    struct db_job *j = KEEL_CONTAINER_OF(lj, struct db_job, lane);
    const struct keel_log_ctx *prev = keel_log_ctx_set(&j->task->log);

    if (j->work) {
        j->work(j->arg);
        j->rc = KEEL_OK;
    } else {
        j->rc = keel_db_with(j->db, j->intent, &j->sess, j->fn, j->arg);
    }
    keel_log_ctx_set(prev);
}

static keel_status job_done(struct keel_task *t, void *arg)
{
    struct db_job *j = arg;

    return j->done(t, j->rc, j->arg);
}

/* On the task's loop. */
static void job_finish(struct keel_post *p)
{
    struct db_job *j = KEEL_CONTAINER_OF(p, struct db_job, post);

    keel_task_complete(j->task, job_done, j);
}

static void job_complete(struct keel_lane_job *lj)
{
    struct db_job *j = KEEL_CONTAINER_OF(lj, struct db_job, lane);

    if (lj->expired) {
        /* Every lane thread was busy for the pool's whole wait (a hung
         * database): refused like a checkout that timed out. */
        j->rc = KEEL_E_UNAVAILABLE;
        count_error(KEEL_E_TIMEOUT);
    }
    keel_task_post(j->task, &j->post);
}

static keel_status job_submit(struct keel_task *t, struct db_job *j)
{
    j->db = default_db;
    if (!j->db)
        return KEEL_E_UNAVAILABLE;
    j->task = t;
    j->sess.key = t->user_id;
    j->lane.run = job_run;
    j->lane.complete = job_complete;
    j->post.fn = job_finish;
    keel_task_wait(t);
    keel_lane_submit(j->db->lane, &j->lane);
    return KEEL_AGAIN;
}

struct keel_lane *keel_db_lane(struct keel_db *db)
{
    return db->lane;
}

keel_status keel_db_offload_task(struct keel_task *t,
                                 keel_db_work_fn work,
                                 keel_db_task_done_fn done,
                                 void *arg)
{
    struct db_job *j = keel_arena_calloc(t->arena, 1, sizeof(*j));

    if (!j)
        return KEEL_E_NOMEM;
    j->work = work;
    j->done = done;
    j->arg = arg;
    return job_submit(t, j);
}

keel_status keel_db_run_task(struct keel_task *t,
                             enum keel_db_intent intent,
                             keel_db_fn fn,
                             keel_db_task_done_fn done,
                             void *arg)
{
    struct db_job *j = keel_arena_calloc(t->arena, 1, sizeof(*j));

    if (!j)
        return KEEL_E_NOMEM;
    j->intent = intent;
    j->fn = fn;
    j->done = done;
    j->arg = arg;
    return job_submit(t, j);
}

/* -------------------------------------------------------------- monitor */

static void wal_sample(struct keel_db *db, uint64_t lsn)
{
    db->wal[db->nwal % LAG_SAMPLES].ms = now_ms();
    db->wal[db->nwal % LAG_SAMPLES].lsn = lsn;
    db->nwal++;
}

/* Seconds since the primary first wrote past `replay`: 0 when the replica
 * has replayed everything the primary had at the last sample. */
static double lag_seconds(const struct keel_db *db, uint64_t replay)
{
    unsigned n = db->nwal < LAG_SAMPLES ? db->nwal : LAG_SAMPLES, i;
    uint64_t first = 0;

    if (n == 0 || replay >= db->wal[(db->nwal - 1) % LAG_SAMPLES].lsn)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned k = (db->nwal - n + i) % LAG_SAMPLES;

        if (db->wal[k].lsn > replay) {
            first = db->wal[k].ms;
            break;
        }
    }
    if (i == 0) /* behind every sample we kept: at least that old */
        first = db->wal[(db->nwal - n) % LAG_SAMPLES].ms;
    return (double)(now_ms() - first) / 1000.0;
}

static void probe_replica(struct keel_db *db, struct keel_db_pool *p)
{
    char err[ERRLEN];
    uint64_t lsn = 0;
    const char *l[] = {p->name};
    bool ok = false;

    if (!p->monitor_h && db->drv->connect(p->url, true, &p->monitor_h, err, sizeof(err)) < 0)
        p->monitor_h = NULL;
    if (p->monitor_h) {
        db->drv->set_timeout(p->monitor_h, 1000);
        ok = db->drv->replay_lsn(p->monitor_h, &lsn) == KEEL_OK;
        if (!ok && db->drv->broken(p->monitor_h)) {
            db->drv->close(p->monitor_h);
            p->monitor_h = NULL;
        }
    }
    if (ok) {
        atomic_store(&p->replay_lsn, lsn);
        p->lag_s = lag_seconds(db, lsn);
        keel_metric_set(m_lag, l, p->lag_s);
    }
    /* A replica that fails or lags past the bound is taken out; the probe
     * keeps running, so it comes back by itself. */
    ok = ok && p->lag_s <= MAX_LAG_S;
    if (ok != atomic_load(&p->healthy))
        keel_log(ok ? KEEL_LOG_INFO : KEEL_LOG_WARN, ok ? "replica back" : "replica out",
                 KEEL_LF_STR("replica", p->name), KEEL_LF_DBL("lag_s", p->lag_s));
    atomic_store(&p->healthy, ok);
    atomic_store(&p->polled, true);
}

static void *monitor_main(void *arg)
{
    struct keel_db *db = arg;
    void *ph = NULL;
    char err[ERRLEN];
    uint64_t primary_lsn;
    unsigned i;

    pthread_mutex_lock(&db->stop_mu);
    while (!db->stop) {
        pthread_mutex_unlock(&db->stop_mu);
        primary_lsn = 0;
        if (!ph && db->drv->connect(db->primary.url, false, &ph, err, sizeof(err)) < 0)
            ph = NULL;
        if (ph && db->drv->wal_lsn(ph, &primary_lsn) == KEEL_OK) {
            wal_sample(db, primary_lsn);
        } else if (ph && db->drv->broken(ph)) {
            db->drv->close(ph);
            ph = NULL;
        }
        for (i = 0; i < db->nreplicas; i++)
            probe_replica(db, &db->replicas[i]);
        pthread_mutex_lock(&db->stop_mu);
        if (!db->stop) {
            struct timespec ts = keel_deadline_in(CLOCK_REALTIME, MONITOR_MS);

            pthread_cond_timedwait(&db->stop_cv, &db->stop_mu, &ts);
        }
    }
    pthread_mutex_unlock(&db->stop_mu);
    if (ph)
        db->drv->close(ph);
    return NULL;
}

/* ------------------------------------------------------- health checks */

static keel_status check_primary(void *arg, struct keel_json *j)
{
    struct keel_db *db = arg;
    struct keel_db_conn *c;
    keel_status rc;

    (void)j;
    rc = pool_checkout(&db->primary, &c);
    if (rc < 0)
        return rc;
    rc = db->drv->ping(c->h);
    keel_db_release(c);
    return rc;
}

static keel_status check_replica(void *arg, struct keel_json *j)
{
    struct keel_db_pool *p = arg;

    keel_json_key(j, "lag");
    keel_json_double(j, p->lag_s);
    return atomic_load(&p->healthy) && atomic_load(&p->polled) ? KEEL_OK : KEEL_E_UNAVAILABLE;
}

/* ----------------------------------------------------------------- life */

static const struct keel_db_driver *driver_for(const char *url)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return &keel__db_sqlite;
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return &keel__db_pg;
    return NULL;
}

static keel_status open_replicas(struct keel_db *db, const struct keel_config *cfg)
{
    size_t i;
    char name[32];

    if (cfg->database_replicas.count == 0)
        return KEEL_OK;
    if (sqlite(db)) {
        keel_log(KEEL_LOG_ERROR, "KEEL_DATABASE_REPLICAS needs a PostgreSQL primary");
        return KEEL_E_INVALID;
    }
    db->replicas = keel_xcalloc(cfg->database_replicas.count, sizeof(*db->replicas));
    for (i = 0; i < cfg->database_replicas.count; i++) {
        if (driver_for(cfg->database_replicas.items[i]) != &keel__db_pg) {
            keel_log(KEEL_LOG_ERROR, "replica URL must be postgres://",
                     KEEL_LF_INT("replica", (int64_t)i + 1));
            return KEEL_E_INVALID;
        }
        snprintf(name, sizeof(name), "replica-%zu", i + 1);
        pool_init(db, &db->replicas[i], name, cfg->database_replicas.items[i], true,
                  cfg->database_pool_size);
        atomic_store(&db->replicas[i].polled, false);
        db->nreplicas++;
        keel_health_register(db->replicas[i].name, check_replica, &db->replicas[i], false);
    }
    return KEEL_OK;
}

/* KEEL_DATABASE_THREADS, or two per usable CPU; never more than there are
 * connections for them (docs/internals/storage.md "The storage lane"). */
static unsigned lane_threads(const struct keel_config *cfg, unsigned conns)
{
    unsigned n = cfg->database_threads ? cfg->database_threads : 2 * keel_cpu_count();

    return n > conns ? conns : n;
}

keel_status keel_db_open(const struct keel_config *cfg, struct keel_db **out)
{
    struct keel_db *db;
    struct keel_db_conn *c;
    unsigned size = cfg->database_pool_size ? cfg->database_pool_size : 16;
    keel_status rc;

    *out = NULL;
    metrics_init();
    db = keel_xcalloc(1, sizeof(*db));
    db->drv = driver_for(cfg->database_url);
    if (!db->drv) {
        keel_log(KEEL_LOG_ERROR, "unsupported KEEL_DATABASE_URL scheme (sqlite: or postgres://)");
        free(db);
        return KEEL_E_INVALID;
    }
    if (sqlite(db) && strstr(cfg->database_url, ":memory:"))
        size = 1; /* every connection to :memory: is its own database */
    pthread_mutex_init(&db->write_mu, NULL);
    pthread_mutex_init(&db->sess_mu, NULL);
    pthread_mutex_init(&db->stop_mu, NULL);
    pthread_cond_init(&db->stop_cv, NULL);
    db->sessions = keel_xcalloc(SESSION_MAX, sizeof(*db->sessions));
    randombytes_buf(db->sess_key, sizeof(db->sess_key));
    pool_init(db, &db->primary, "primary", cfg->database_url, false, size);
    rc = open_replicas(db, cfg);
    if (rc == KEEL_OK) {
        /* Connect one primary connection now: a wrong URL fails at start. */
        rc = pool_checkout(&db->primary, &c);
        if (rc == KEEL_OK)
            keel_db_release(c);
        else
            keel_log(KEEL_LOG_ERROR, "database unreachable", KEEL_LF_STR("dialect", db->drv->name),
                     KEEL_LF_STR("error", db->primary.slots[0].err));
    }
    if (rc < 0) {
        keel_db_close(db);
        return rc;
    }
    if (db->nreplicas && pthread_create(&db->monitor, NULL, monitor_main, db) == 0)
        db->monitor_running = true;
    rc = keel_lane_start("keel-db", lane_threads(cfg, size * (1 + db->nreplicas)), WAIT_MS,
                         &db->lane);
    if (rc < 0) {
        keel_log(KEEL_LOG_ERROR, "cannot start the storage threads");
        keel_db_close(db);
        return rc;
    }
    *out = db;
    return KEEL_OK;
}

void keel_db_close(struct keel_db *db)
{
    unsigned i;

    if (!db)
        return;
    keel_lane_stop(db->lane); /* idle by now: no request is in flight */
    if (db->monitor_running) {
        pthread_mutex_lock(&db->stop_mu);
        db->stop = true;
        pthread_cond_signal(&db->stop_cv);
        pthread_mutex_unlock(&db->stop_mu);
        pthread_join(db->monitor, NULL);
    }
    pool_fini(&db->primary);
    for (i = 0; i < db->nreplicas; i++)
        pool_fini(&db->replicas[i]);
    free(db->replicas);
    free(db->sessions);
    pthread_mutex_destroy(&db->write_mu);
    pthread_mutex_destroy(&db->sess_mu);
    pthread_mutex_destroy(&db->stop_mu);
    pthread_cond_destroy(&db->stop_cv);
    if (default_db == db)
        default_db = NULL;
    free(db);
}

const char *keel_db_dialect(const struct keel_db *db)
{
    return db->drv->name;
}

const char *keel_db_conn_dialect(const struct keel_db_conn *c)
{
    return keel_db_dialect(c->db);
}

struct keel_db *keel_db_default(void)
{
    return default_db;
}

void keel_db_set_default(struct keel_db *db)
{
    default_db = db;
    if (db)
        keel_health_register("database", check_primary, db, true);
}
