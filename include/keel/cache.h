/*
 * cache.h - the two-layer read cache (seed 000 "multi-layer cache", seed 001
 * "caching strategy", seed 002 section 8; SPEC section 3 "Catalog"):
 * cache-aside over L1 (in process, include/keel/l1cache.h) and L2 (Redis
 * when configured), with invalidation after commit broadcast to every
 * instance.
 *
 * Reads:  L1 -> L2 -> load from the database (on the storage lane, with the
 *         caller's intent: a replica when allowed) -> fill L2 and L1.
 *         One load per key per process at a time (stampede protection:
 *         later readers of the key wait for the first one's result). A
 *         load that finds nothing is cached as a negative entry for a
 *         short time (KEEL_CACHE_NEGATIVE_TTL_MS).
 * Writes: after the commit, keel_cache_invalidate drops the keys from L1
 *         here, deletes them from L2, and publishes them so every other
 *         instance drops them from its L1: on the Redis channel
 *         "keel:invalidate" when Redis is configured, and with PostgreSQL
 *         NOTIFY on channel "keel_invalidate" when the database is
 *         PostgreSQL (both when both exist, so either alone still
 *         delivers; receivers apply every copy), else (SQLite without
 *         Redis: one instance) locally only. Stale reads end within 100 ms
 *         on every instance.
 * Namespaces: a key has namespace "ns" when it reads "ns:<rest>" (the
 *         part before the first ':'). "ns:*" names every key of the
 *         namespace (lists, whose keys are their query strings):
 *         invalidating it bumps the namespace's generation, which is part
 *         of every L1 and L2 key of the namespace, so all its entries stop
 *         being found at once. Other keys are invalidated one by one.
 *         Values and negative entries are stored tagged, so they cannot be
 *         confused; an L2 miss leaves a short lease so a fill that raced
 *         with an invalidation is refused.
 *
 * Redis down: the breaker fails L2 calls fast; reads go L1 -> database,
 * and invalidations still reach the other instances by PostgreSQL NOTIFY
 * when it is available (else they expire with the L1 TTL). An
 * invalidation that may have missed L2 retires it: no instance reads L2
 * again before the L2 epoch (part of every L2 key) has been bumped.
 *
 * Metrics: keel_cache_requests_total{layer="l1|l2",result="hit|miss|negative"}
 * (SPEC section 6), keel_cache_loads_total{result="ok|not_found|error"},
 * keel_cache_invalidations_total{direction="sent|received"} (keys), and
 * the gauge keel_cache_listener_up (1 while invalidations from other
 * instances can arrive: a listener is subscribed, or none is needed).
 *
 * KEEL_CACHE=off: every get loads through keel_db_run_task (source "db") and
 * invalidate does nothing but return `then`.
 *
 * Threading: keel_cache_get_task and keel_cache_invalidate_task run on
 * the task's loop; init and shutdown on the main thread. Both may be
 * called from a handler or from any callback that continues the task with
 * their return value (a keel_db_run_task done, a waiting task's callback).
 *
 * docs/internals/cache.md describes the design.
 */
#ifndef KEEL_CACHE_H
#define KEEL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/core.h"
#include "keel/db.h"

struct keel_config;
struct keel_task;

#define KEEL_CACHE_KEY_MAX         200                /* bytes; longer keys are read uncached */
#define KEEL_CACHE_VALUE_MAX       (256 * 1024)       /* larger values are served, not cached */
#define KEEL_CACHE_LOAD_MAX        (16 * 1024 * 1024) /* what a load may append at most */
#define KEEL_CACHE_NEGATIVE_TTL_MS 5000

/* Starts the cache for cfg: the L1 (KEEL_CACHE_L1_BYTES, default 64 MiB),
 * L2 when Redis is configured, and the invalidation listener (a thread
 * with its own Redis SUBSCRIBE connection, or its own PostgreSQL LISTEN
 * connection). With KEEL_CACHE=off every get loads from the database and
 * nothing is cached (benchmarks). Main thread, after keel_db_open and
 * keel_redis_init. */
keel_status keel_cache_init(const struct keel_config *cfg, struct keel_db *db);
void keel_cache_shutdown(void);

/* Loads the value of a key on a storage-lane thread: appends it to `out` (at most
 * KEEL_CACHE_LOAD_MAX bytes) and returns KEEL_OK, or returns
 * KEEL_E_NOT_FOUND (cached as negative) or another error (not cached). */
typedef keel_status (*keel_cache_load_fn)(struct keel_db_conn *c, void *arg, struct keel_buf *out);

/* Called on the task's loop with the outcome: rc KEEL_OK and the value
 * (valid during the call only), KEEL_E_NOT_FOUND, or the load's error.
 * `source` says where it came from: "l1", "l2", "db" (for logs and
 * tests). Its return value resumes the task (keel/task.h). Requests use
 * keel_cache_done_fn (keel/http.h). */
typedef keel_status (*keel_cache_task_done_fn)(struct keel_task *t,
                                               keel_status rc,
                                               const char *value,
                                               size_t len,
                                               const char *source,
                                               void *arg);

/* Reads `key` (NUL-terminated, <= KEEL_CACHE_KEY_MAX bytes) through the
 * layers for task t (a request: keel_cache_get, keel/http.h); on a miss,
 * load(conn, arg, out) runs on the storage lane with a connection for
 * `intent` (t->user_id is the read-your-writes session, as with
 * keel_db_run_task; a KEEL_DB_READ of a key invalidated in the last 10 s
 * goes to the primary, so a lagging replica cannot refill the cache with
 * the old row). Values live ttl_ms in L2 and min(ttl_ms, L1 TTL) in L1;
 * ttl_ms 0, a longer key or a key "ns:*" are read without the cache. The
 * key is copied: it need not outlive the call. Returns what done returned
 * when the answer was in L1 (synchronously), else KEEL_AGAIN (t waits;
 * done runs later on its loop, unless t is gone by then) or an error
 * (KEEL_E_NOMEM, KEEL_E_UNAVAILABLE when no database is open; done is
 * then not called). */
keel_status keel_cache_get_task(struct keel_task *t,
                                const char *key,
                                uint32_t ttl_ms,
                                enum keel_db_intent intent,
                                keel_cache_load_fn load,
                                keel_cache_task_done_fn done,
                                void *arg);

/* After a commit: invalidates `nkeys` keys (or "ns:*" namespaces) here and
 * on every instance, then resumes t with `then` once L2 and the broadcast
 * have been sent (or failed: the L1 TTL bounds staleness). A request sets
 * its response before calling it (then = KEEL_DONE; keel_cache_invalidate,
 * keel/http.h). Keys are copied; keys that cannot be cached (too long,
 * NULL) are skipped. With Redis the keys go in one atomic script per
 * message (DEL or namespace bump, then PUBLISH); with PostgreSQL also by
 * NOTIFY, in parallel (receivers apply every copy). Returns KEEL_AGAIN (t
 * waits), or `then` at once when there is nothing to wait for (no Redis
 * and no PostgreSQL, KEEL_CACHE=off, no valid key). */
keel_status keel_cache_invalidate_task(struct keel_task *t,
                                       const char *const *keys,
                                       unsigned nkeys,
                                       keel_status then);

#endif
