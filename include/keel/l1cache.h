/*
 * l1cache.h - the in-process cache (seed 000 "multi-layer cache", L1): a
 * bounded-in-bytes LRU with per-entry TTL, sharded so event loops do not
 * contend on one lock.
 *
 * Keys and values are opaque bytes, copied in on set and copied out on
 * get, so no reference outlives a call and no entry needs a refcount (the
 * values cached are small JSON documents). Each shard holds at most
 * max_bytes / nshards bytes of keys, values and per-entry overhead; a set
 * that does not fit evicts from the shard's least recently used end. An
 * expired entry counts as a miss and is dropped when met.
 *
 * Thread-safe: any thread may call any function except keel_l1_free.
 */
#ifndef KEEL_L1CACHE_H
#define KEEL_L1CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/core.h"

struct keel_l1;

struct keel_l1_stats {
    uint64_t hits, misses, evictions, expirations;
    size_t bytes, entries;
};

/* Creates a cache of at most max_bytes (at least 64 KiB is sensible) over
 * nshards shards (0: 16). now_ms reads a monotonic clock in milliseconds
 * (NULL: the process's; tests inject a fake one). Never fails. */
struct keel_l1 *
keel_l1_new(size_t max_bytes, unsigned nshards, uint64_t (*now_ms)(void *arg), void *now_arg);
void keel_l1_free(struct keel_l1 *c);

/* Appends the value of `key` to `out` and returns KEEL_OK; KEEL_E_NOT_FOUND
 * on a miss or an expired entry; KEEL_E_TOO_LARGE when `out` cannot hold
 * it (a miss for the caller). The entry becomes the most recently used. */
keel_status keel_l1_get(struct keel_l1 *c, const void *key, size_t klen, struct keel_buf *out);

/* Stores a copy of the value for ttl_ms milliseconds (> 0), replacing any
 * previous one. Returns KEEL_OK, or KEEL_E_TOO_LARGE when the entry is
 * larger than a shard's budget (nothing is stored, and an older value of
 * the key is dropped so no stale copy remains). */
keel_status keel_l1_set(
    struct keel_l1 *c, const void *key, size_t klen, const void *val, size_t vlen, uint32_t ttl_ms);

/* Drops the key (a no-op when absent). */
void keel_l1_del(struct keel_l1 *c, const void *key, size_t klen);

/* Drops everything. */
void keel_l1_clear(struct keel_l1 *c);

void keel_l1_stats(struct keel_l1 *c, struct keel_l1_stats *out);

#endif
