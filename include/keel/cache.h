/*
 * cache.h - the two-layer read cache (seed 000 "multi-layer cache", seed 001
 * "caching strategy", seed 002 section 8; SPEC section 3 "Catalog"):
 * cache-aside over L1 (in process, include/keel/l1cache.h) and L2 (Redis
 * when configured), with invalidation after commit broadcast to every
 * instance.
 *
 * Reads:  L1 -> L2 -> load from the database (on the thread pool, with the
 *         caller's intent: a replica when allowed) -> fill L2 and L1.
 *         One load per key per process at a time (stampede protection:
 *         later readers of the key wait for the first one's result). A
 *         load that finds nothing is cached as a negative entry for a
 *         short time (KEEL_CACHE_NEGATIVE_TTL_MS).
 * Writes: after the commit, keel_cache_invalidate drops the keys from L1
 *         here, deletes them from L2, and publishes them so every other
 *         instance drops them from its L1: on the Redis channel
 *         "keel:invalidate" when Redis is configured, else with PostgreSQL
 *         NOTIFY on channel "keel_invalidate" when the database is
 *         PostgreSQL, else (SQLite: one instance) locally only. Stale reads
 *         end within 100 ms on every instance.
 * Namespaces: a key "ns:*" names every key that starts with "ns:" (lists,
 *         whose keys are their query strings): invalidating it bumps the
 *         namespace's generation, which is part of every L1 and L2 key of
 *         the namespace, so all its entries stop being found at once.
 *
 * Redis down: the breaker fails L2 calls fast; reads go L1 -> database,
 * and invalidations still reach the other instances by PostgreSQL NOTIFY
 * when it is available (else they expire with the L1 TTL).
 *
 * Metrics: keel_cache_requests_total{layer="l1|l2",result="hit|miss|negative"}
 * (SPEC section 6), keel_cache_loads_total, keel_cache_invalidations_total.
 *
 * Threading: keel_cache_get and keel_cache_invalidate run on a request's
 * loop; init and shutdown on the main thread.
 */
#ifndef KEEL_CACHE_H
#define KEEL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/core.h"
#include "keel/db.h"

struct keel_config;
struct keel_request;

#define KEEL_CACHE_KEY_MAX         200 /* bytes */
#define KEEL_CACHE_VALUE_MAX       (256 * 1024)
#define KEEL_CACHE_NEGATIVE_TTL_MS 5000

/* Starts the cache for cfg: the L1 (KEEL_CACHE_L1_BYTES, default 64 MiB),
 * L2 when Redis is configured, and the invalidation listener (a thread
 * with its own Redis SUBSCRIBE connection, or its own PostgreSQL LISTEN
 * connection). With KEEL_CACHE=off every get loads from the database and
 * nothing is cached (benchmarks). Main thread, after keel_db_open and
 * keel_redis_init. */
keel_status keel_cache_init(const struct keel_config *cfg, struct keel_db *db);
void keel_cache_shutdown(void);

/* Loads the value of a key on a pool thread: appends it to `out` and
 * returns KEEL_OK, or returns KEEL_E_NOT_FOUND (cached as negative) or
 * another error (not cached). */
typedef keel_status (*keel_cache_load_fn)(struct keel_db_conn *c, void *arg, struct keel_buf *out);

/* Called on the loop with the outcome: rc KEEL_OK and the value (valid
 * during the call only), KEEL_E_NOT_FOUND, or the load's error. `source`
 * says where it came from: "l1", "l2", "db" (for logs and tests). Its
 * return value continues the pipeline. */
typedef keel_status (*keel_cache_done_fn)(struct keel_request *req,
                                          keel_status rc,
                                          const char *value,
                                          size_t len,
                                          const char *source,
                                          void *arg);

/* Reads `key` (NUL-terminated, <= KEEL_CACHE_KEY_MAX bytes) through the
 * layers; on a miss, load(conn, arg, out) runs on the thread pool with a
 * connection for `intent`. Values live ttl_ms in L2 and min(ttl_ms,
 * L1 TTL) in L1. Returns what done returned when the answer was in L1
 * (synchronously), else KEEL_AGAIN (done will run later on the loop) or
 * KEEL_E_NOMEM. */
keel_status keel_cache_get(struct keel_request *req,
                           const char *key,
                           uint32_t ttl_ms,
                           enum keel_db_intent intent,
                           keel_cache_load_fn load,
                           keel_cache_done_fn done,
                           void *arg);

/* After a commit: invalidates `nkeys` keys (or "ns:*" namespaces) here and
 * on every instance, then continues the request with `then` once L2 and the
 * broadcast have been sent (or failed: the L1 TTL bounds staleness).
 * Returns KEEL_AGAIN, or `then` at once when there is nothing to wait for. */
keel_status keel_cache_invalidate(struct keel_request *req,
                                  const char *const *keys,
                                  unsigned nkeys,
                                  keel_status then);

#endif
