/*
 * cache.c - the two-layer read cache (include/keel/cache.h): L1 in process
 * (src/cache/l1.c), L2 in Redis, loads on the storage lane, one load per key
 * per process, and invalidation after commit on every instance. This file
 * holds the shared state, keys and generations, the application of
 * invalidations (local and received), the listeners and the life cycle;
 * cache_get.c the read path, cache_inval.c the sending of invalidations,
 * cache_msg.c the message format, cache_listen.c the Redis subscriber.
 *
 * DESIGN (docs/internals/cache.md has the long form):
 *
 * Keys. A key "ns:rest" belongs to namespace "ns". Its L1 key carries the
 * namespace's process-local generation ("ns:g7:rest"), so invalidating
 * "ns:*" bumps one counter and hides every entry at once. L2 keys carry a
 * generation kept in Redis instead ("keel:cg:<ns>", INCR on a flush), and
 * an L2-wide epoch ("keel:ce"): a counter local to one process would let a
 * freshly started instance read L2 entries written before the last flush.
 * Values are stored tagged: "V<value>" or "N" (negative entry).
 *
 * L2 fills cannot go stale. Cache-aside has a classic race: a reader loads
 * the old row, a writer commits and deletes the key, the reader then
 * stores the old row for its whole TTL. So an L2 miss leaves a lease in
 * the key (one Lua script: GET, else SET lease PX 15 s), the load's result
 * replaces the lease only if it is still there (compare and set, another
 * script), and an invalidation's DEL removes leases with values. The same
 * race in L1 is closed by the in-flight table: an invalidation marks a
 * load of the key in flight as stale, which then serves its requests but
 * fills nothing. A writer applies its invalidation to L1 twice, before and
 * after the L2 DEL has been answered, so nothing read from L2 in between
 * survives.
 *
 * Stampede protection. The in-flight table (a mutex-protected hash keyed
 * by L1 key) holds one flight per key being read past L1. The first
 * request leads: L2, then the load. Later requests of the key, on any
 * loop, park as waiters of the flight. The result completes the flight on
 * whichever thread has it (the storage-lane thread that ran the load, or the
 * leader's loop for an L2 hit): L1 is filled and the flight removed under
 * the table's mutex, and each waiter is posted to its own loop
 * (keel_loop_post) with a reference to the
 * shared, refcounted result. A waiter whose connection was cut is resumed
 * (which drops it) without an answer; nothing else depends on it. Loads run
 * as our own storage-lane jobs, not keel_db_run, whose completion is
 * skipped for a cut connection: the waiters of a cut leader would never be
 * answered.
 *
 * Invalidation. keel_cache_invalidate drops the keys from L1 here, then in
 * parallel runs one Lua script per message on Redis (DEL or INCR the
 * namespace, then PUBLISH keel:invalidate, atomically) and PostgreSQL
 * NOTIFY keel_invalidate, and parks the request until both answered.
 * Receivers (cache_listen.c, src/db/db_listen.c) apply every copy they get:
 * applying twice is harmless, and the copy that arrives after the L2 DEL is
 * the one that matters. A failed L2 invalidation makes L2 unusable here
 * until the epoch has been bumped, so values it could not delete are never
 * read again; the message then goes out once more through PostgreSQL
 * flagged "retire L2", and every receiver does the same.
 */
#include "keel/cache.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "keel/config.h"
#include "keel/db.h"
#include "keel/l1cache.h"
#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/redis.h"
#include "keel/runtime.h"

#include "cache/cache_int.h"

#define NGENS    1024  /* namespace generation counters (hashed; a shared one costs misses) */
#define NRECENT  4096  /* recent-invalidation stamps, for the replica guard */
#define GUARD_MS 10000 /* replicas lagging more than this are out of rotation (storage.md) */
#define SEEN_MAX 1024  /* (instance, seq) pairs remembered to count each message once */

struct keel__cache_state keel__cache;

static struct {
    unsigned char hkey[crypto_shorthash_KEYBYTES];
    _Atomic uint64_t gens[NGENS];
    _Atomic int64_t recent[NRECENT];
    bool redis_listening, pg_listening;
    struct keel_db_listener *pg_listener;
    atomic_bool up_redis, up_pg;
    pthread_mutex_t seen_mu;
    struct {
        char id[KEEL__CACHE_ID_LEN + 1];
        uint64_t seq;
    } seen[SEEN_MAX];
    unsigned seen_next;
} S;

static struct keel_metric *m_up;

/* ------------------------------------------------------------- metrics */

void keel__cache_count(const char *layer, const char *result)
{
    keel_metric_add(keel__cache.m_requests, (const char *const[]){layer, result}, 1);
}

static double gauge_up(void *arg)
{
    (void)arg;
    if (!S.redis_listening && !S.pg_listening)
        return 1; /* one instance: nothing to hear */
    return atomic_load(&S.up_redis) || atomic_load(&S.up_pg) ? 1 : 0;
}

static void metrics_init(void)
{
    static const char *const lr[] = {"layer", "result"}, *const lo[] = {"result"},
                             *const ld[] = {"direction"};
    static const char *const layers[] = {"l1", "l2"},
                             *const results[] = {"hit", "miss", "negative"},
                             *const loads[] = {"ok", "not_found", "error"};
    struct keel__cache_state *c = &keel__cache;
    unsigned i, j;

    c->m_requests = keel_metric_counter("keel_cache_requests_total",
                                        "Cache lookups by layer and result.", 2, lr);
    c->m_loads = keel_metric_counter(
        "keel_cache_loads_total", "Loads from the database after a cache miss, by result.", 1, lo);
    c->m_inval = keel_metric_counter("keel_cache_invalidations_total",
                                     "Keys invalidated here (sent) and applied from other "
                                     "instances (received).",
                                     1, ld);
    m_up = keel_metric_gauge_fn("keel_cache_listener_up",
                                "1 when invalidations from other instances arrive (a listener is "
                                "subscribed, or there is nothing to listen to).",
                                gauge_up, NULL);
    for (i = 0; i < KEEL_ARRAY_LEN(layers); i++)
        for (j = 0; j < KEEL_ARRAY_LEN(results); j++)
            keel_metric_add(c->m_requests, (const char *const[]){layers[i], results[j]}, 0);
    for (i = 0; i < KEEL_ARRAY_LEN(loads); i++)
        keel_metric_add(c->m_loads, (const char *const[]){loads[i]}, 0);
    keel_metric_add(c->m_inval, (const char *const[]){"sent"}, 0);
    keel_metric_add(c->m_inval, (const char *const[]){"received"}, 0);
}

/* ------------------------------------------------ hashes, generations */

static int64_t now_ms(void)
{
    return (int64_t)(keel_now_ns() / 1000000u);
}

/* SipHash under a random key: clients choose key bytes, not collisions. */
uint64_t keel__cache_hash(char domain, const char *p, size_t n)
{
    unsigned char in[KEEL__CACHE_L1KEY_MAX + 1], h[crypto_shorthash_BYTES];
    uint64_t v;

    in[0] = (unsigned char)domain;
    memcpy(in + 1, p, n);
    crypto_shorthash(h, in, n + 1, S.hkey);
    memcpy(&v, h, sizeof(v));
    return v;
}

static _Atomic uint64_t *gen_of(const struct keel__cache_key *k)
{
    return &S.gens[keel__cache_hash('g', k->ns, k->nslen) % NGENS];
}

size_t keel__cache_l1_key_now(const struct keel__cache_key *k, char *out)
{
    return keel__cache_l1_key(k, k->ns ? atomic_load(gen_of(k)) : 0, out);
}

/* The replica guard: for GUARD_MS after a key (or its namespace) was
 * invalidated, its loads read the primary, so a lagging replica cannot
 * refill the cache with the row the write replaced. */
static void note_recent(char domain, const char *p, size_t n)
{
    atomic_store(&S.recent[keel__cache_hash(domain, p, n) % NRECENT], now_ms());
}

bool keel__cache_recent(const struct keel__cache_key *k)
{
    int64_t now = now_ms();

    if (now - atomic_load(&S.recent[keel__cache_hash('k', k->key, k->len) % NRECENT]) < GUARD_MS)
        return true;
    return k->ns && now - atomic_load(&S.recent[keel__cache_hash('n', k->ns, k->nslen) % NRECENT]) <
                        GUARD_MS;
}

/* ------------------------------------------------ applying invalidations */

void keel__cache_apply(const char *key, size_t len)
{
    struct keel__cache_key k;
    char l1k[KEEL__CACHE_L1KEY_MAX];

    if (!keel__cache_key_split(key, len, &k))
        return;
    if (k.flush) {
        note_recent('n', k.ns, k.nslen);
        atomic_fetch_add(gen_of(&k), 1);
        return;
    }
    note_recent('k', k.key, k.len);
    keel__cache_forget(l1k, keel__cache_l1_key_now(&k, l1k));
}

void keel__cache_listener_state(enum keel__cache_channel ch, bool up)
{
    atomic_store(ch == KEEL__CACHE_CH_REDIS ? &S.up_redis : &S.up_pg, up);
    /* Whatever was published while it was away is lost: nothing cached or
     * being loaded can be trusted. */
    if (up && keel__cache.on)
        keel__cache_forget_all();
}

/* True the first time (id, seq) is seen: each message arrives once per
 * channel, and is counted once. */
static bool first_seen(const char *id, uint64_t seq)
{
    unsigned i;

    pthread_mutex_lock(&S.seen_mu);
    for (i = 0; i < SEEN_MAX; i++) {
        if (S.seen[i].seq == seq && strcmp(S.seen[i].id, id) == 0) {
            pthread_mutex_unlock(&S.seen_mu);
            return false;
        }
    }
    i = S.seen_next++ % SEEN_MAX;
    memcpy(S.seen[i].id, id, sizeof(S.seen[i].id));
    S.seen[i].seq = seq;
    pthread_mutex_unlock(&S.seen_mu);
    return true;
}

static void receive_key(const char *key, size_t len, void *arg)
{
    (*(unsigned *)arg)++;
    keel__cache_apply(key, len);
}

/* Every copy is applied, not only the first: the PostgreSQL copy may come
 * before the L2 DEL has run, the Redis copy comes after it. */
void keel__cache_receive(const char *msg, size_t len)
{
    char id[KEEL__CACHE_ID_LEN + 1];
    uint64_t seq;
    unsigned n = 0;
    bool retire;

    if (!keel__cache.on)
        return;
    if (keel__cache_msg_decode(msg, len, id, &seq, &retire, NULL, NULL) < 0) {
        keel_log(KEEL_LOG_WARN, "cache: malformed invalidation message ignored",
                 KEEL_LF_INT("bytes", (int64_t)len));
        return;
    }
    if (strcmp(id, keel__cache.id) == 0)
        return; /* ours: applied when sent */
    if (retire) /* before the keys: no read may refill L1 from the old L2 */
        atomic_fetch_add(&keel__cache.l2_failed, 1);
    (void)keel__cache_msg_decode(msg, len, id, &seq, &retire, receive_key, &n);
    if (first_seen(id, seq))
        keel_metric_add(keel__cache.m_inval, (const char *const[]){"received"}, n);
}

bool keel__cache_epoch_due(uint64_t *target)
{
    *target = atomic_load(&keel__cache.l2_failed);
    return keel__cache.on && *target != atomic_load(&keel__cache.l2_cleared);
}

void keel__cache_epoch_bumped(uint64_t target)
{
    uint64_t cur = atomic_load(&keel__cache.l2_cleared);

    while (cur < target && !atomic_compare_exchange_weak(&keel__cache.l2_cleared, &cur, target))
        ;
    keel_log(KEEL_LOG_INFO, "cache: L2 epoch bumped after failed invalidations; L2 in use again");
}

/* ========================================================= life cycle */

static void on_pg(enum keel_db_listen_event ev, const char *payload, size_t len, void *arg)
{
    (void)arg;
    if (ev == KEEL_DB_LISTEN_NOTIFY)
        keel__cache_receive(payload, len);
    else
        keel__cache_listener_state(KEEL__CACHE_CH_PG, ev == KEEL_DB_LISTEN_UP);
}

static bool state_ready;

static void state_init(const struct keel_config *cfg, struct keel_db *db)
{
    struct keel__cache_state *c = &keel__cache;
    unsigned char rnd[KEEL__CACHE_ID_LEN / 2];
    int64_t long_ago = now_ms() - 2 * GUARD_MS;
    unsigned i;

    memset(&S, 0, sizeof(S));
    c->on = false;
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(c->id, sizeof(c->id), rnd, sizeof(rnd));
    atomic_store(&c->seq, 0);
    atomic_store(&c->l2_failed, 0);
    atomic_store(&c->l2_cleared, 0);
    crypto_shorthash_keygen(S.hkey);
    for (i = 0; i < NRECENT; i++)
        atomic_init(&S.recent[i], long_ago);
    pthread_mutex_init(&S.seen_mu, NULL);
    c->l1 = keel_l1_new((size_t)cfg->cache_l1_bytes, 0, NULL, NULL);
    c->l1_ttl_ms = cfg->cache_l1_ttl_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)cfg->cache_l1_ttl_ms;
    c->db = db;
    c->pg = db && strcmp(keel_db_dialect(db), "postgres") == 0;
    keel__cache_get_init();
    state_ready = true;
}

keel_status keel_cache_init(const struct keel_config *cfg, struct keel_db *db)
{
    keel_status rc = KEEL_OK;

    metrics_init();
    if (!cfg->cache_enabled) {
        keel_log(KEEL_LOG_INFO, "cache off: every read loads from the database");
        return KEEL_OK;
    }
    state_init(cfg, db);
    keel__cache.on = true; /* before the listeners, which apply messages */
    if (rc == KEEL_OK && keel_redis_enabled()) {
        rc = keel__cache_sub_start(cfg->redis_url);
        S.redis_listening = rc == KEEL_OK;
    }
    if (rc == KEEL_OK && keel__cache.pg) {
        rc = keel_db_listen_start(db, cfg->database_url, KEEL__CACHE_PG_CHANNEL, on_pg, NULL,
                                  &S.pg_listener);
        S.pg_listening = rc == KEEL_OK;
    }
    if (rc < 0) {
        keel_log(KEEL_LOG_ERROR, "cache: start failed", KEEL_LF_STR("error", keel_strerror(rc)));
        keel_cache_shutdown();
        return rc;
    }
    keel_log(KEEL_LOG_INFO, "cache ready", KEEL_LF_INT("l1_bytes", (int64_t)cfg->cache_l1_bytes),
             KEEL_LF_INT("l1_ttl_ms", keel__cache.l1_ttl_ms),
             KEEL_LF_BOOL("l2", keel_redis_enabled()),
             KEEL_LF_STR("invalidation", S.redis_listening && S.pg_listening ? "redis+postgres"
                                         : S.redis_listening                 ? "redis"
                                         : S.pg_listening                    ? "postgres"
                                                                             : "local"),
             KEEL_LF_STR("instance", keel__cache.id));
    return KEEL_OK;
}

void keel_cache_shutdown(void)
{
    keel__cache_sub_stop();
    keel_db_listen_stop(S.pg_listener);
    S.pg_listener = NULL;
    S.redis_listening = S.pg_listening = false;
    keel__cache.on = false;
    if (state_ready) {
        keel__cache_get_fini();
        pthread_mutex_destroy(&S.seen_mu);
        state_ready = false;
    }
    keel_l1_free(keel__cache.l1);
    keel__cache.l1 = NULL;
    keel__cache.m_requests = keel__cache.m_loads = keel__cache.m_inval = NULL;
    m_up = NULL;
}
