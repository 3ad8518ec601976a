/*
 * ratelimit.h - rate-limit decisions (issue 4, "Rate limits and brute
 * force"): GCRA, the generic cell rate algorithm, with an in-process store
 * and a Redis script that makes the same decision for several instances.
 *
 * A limit `count` per `period_seconds` (struct keel_config_rate) lets a
 * client spend the whole period's budget at once (burst = count) and then
 * paces it at one request every emission interval T = period / count. Each
 * key keeps one timestamp, its "theoretical arrival time" (TAT). For a
 * request at `now`: tat = max(TAT, now), new_tat = tat + T; the request is
 * allowed iff new_tat - now <= T * count, and only an allowed request
 * stores new_tat. docs/internals/ratelimit.md explains the design.
 *
 * Time is counted in microseconds and T is rounded up to a whole
 * microsecond, so T * count is the period itself whenever count divides
 * it (100/min: T = 600 ms) and at most count microseconds more otherwise:
 * the burst is always exactly `count`.
 *
 * This module only decides. Finding the key (client IP, user id), choosing
 * the store, setting the headers and answering 429 are the middleware's.
 *
 * Thread-safety: a store may be used from every thread at once; the other
 * functions are pure.
 */
#ifndef KEEL_RATELIMIT_H
#define KEEL_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/core.h"

struct keel_config_rate;
struct keel_ratelimit;

/* Entries of the in-process store when keel_ratelimit_new() gets 0. */
#define KEEL_RATELIMIT_MAX_ENTRIES (1u << 20)
/* Longest scope name, in bytes. */
#define KEEL_RATELIMIT_SCOPE_MAX 64

/*
 * One decision. Times are rounded up: to the millisecond in `*_ms`, to the
 * second in `*_s` (the header values).
 *
 * allowed         whether the request may proceed
 * limit           the rate's count (the burst)
 * remaining       further requests allowed right now, without waiting; 0
 *                 when denied
 * reset_ms/_s     time until the key's budget is whole again (the client
 *                 that stops now may then burst `limit` requests)
 * retry_after_ms/_s  when denied, time until one request is allowed again
 *                 (>= 1 s for Retry-After); 0 when allowed
 */
struct keel_ratelimit_result {
    bool allowed;
    uint32_t limit;
    uint32_t remaining;
    uint64_t reset_ms;
    uint64_t retry_after_ms;
    uint32_t reset_s;
    uint32_t retry_after_s;
};

/*
 * The emission interval T of `rate` in microseconds (period / count,
 * rounded up), as the Redis script takes it. Returns 0 when rate->count or
 * rate->period_seconds is 0 (not a usable rate).
 */
uint64_t keel_ratelimit_interval_us(const struct keel_config_rate *rate);

/* ------------------------------------------------------ in-process store */

/*
 * Creates an in-process store holding at most `max_entries` keys (0: the
 * default KEEL_RATELIMIT_MAX_ENTRIES; rounded up to a multiple of the 64
 * shards). Memory is at most 43 bytes per entry (32 MiB for the default),
 * reserved up front but touched only as keys arrive. `now_ms` is the clock in milliseconds from
 * any fixed origin, monotonic, called with now_arg from every thread that
 * uses the store; NULL means the process's monotonic clock (tests inject a
 * fake one). Keys are hashed with a key drawn at random here, so clients
 * cannot choose colliding keys. Never fails (control allocation aborts on
 * exhaustion). Free it with keel_ratelimit_free().
 *
 * When a shard is full, a new key evicts an entry whose budget is whole
 * again (TAT in the past: the same as no entry), else the one among a few
 * examined with the smallest TAT. Eviction forgets what a key has spent, so
 * it can only let that key through more often: every denial is still
 * justified by requests this store actually allowed within the period, and
 * a key the store does not hold always gets its full burst.
 */
struct keel_ratelimit *
keel_ratelimit_new(size_t max_entries, uint64_t (*now_ms)(void *now_arg), void *now_arg);

/* Frees rl (NULL is a no-op). No other thread may use it meanwhile. */
void keel_ratelimit_free(struct keel_ratelimit *rl);

/*
 * Decides one request of `key` (keylen bytes, binary-safe; NULL allowed
 * when keylen is 0) in `scope` (a short static name such as "ip", "user",
 * "login"; keys of different scopes never share a budget) under `rate`,
 * and records it when allowed. *out receives the decision. Any thread.
 *
 * Returns KEEL_OK (allowed or not: see out->allowed), or KEEL_E_INVALID
 * when rate has a zero count or period, or scope is longer than
 * KEEL_RATELIMIT_SCOPE_MAX (*out is then untouched).
 */
keel_status keel_ratelimit_check(struct keel_ratelimit *rl,
                                 const char *scope,
                                 const char *key,
                                 size_t keylen,
                                 const struct keel_config_rate *rate,
                                 struct keel_ratelimit_result *out);

/* Entries currently stored (tests and metrics); takes every shard's lock. */
size_t keel_ratelimit_size(struct keel_ratelimit *rl);

/* ------------------------------------------------------------ Redis */

/*
 * The same decision in Redis, atomic per key, one script call per request:
 *
 *     EVALSHA <keel_ratelimit_lua_sha1> 1 <key> <T_us> <count>
 *
 * with T_us = keel_ratelimit_interval_us(rate), count = rate->count and a
 * key naming scope and client, such as "keel:rl:ip:203.0.113.7". When the
 * reply is a NOSCRIPT error (a restarted or new server;
 * keel_ratelimit_reply_is_noscript()), send the same with EVAL and the
 * script text instead, which also caches it. The script reads the clock
 * with Redis TIME, so every instance shares the server's one clock, and
 * stores the TAT with an expiry at the moment the budget is whole again
 * (an expired key and a missing one mean the same). Needs Redis >= 5
 * (scripts replicated by effects, so TIME may precede a write).
 *
 * The reply is an array of four integers {allowed (0/1), remaining,
 * reset_ms, retry_after_ms}; turn it into a result with
 * keel_ratelimit_parse_reply() (keel/ratelimit_redis.h).
 */
extern const char keel_ratelimit_lua[];
/* SHA-1 of keel_ratelimit_lua, 40 lowercase hex digits (checked by the
 * unit test). */
extern const char keel_ratelimit_lua_sha1[];

/*
 * Fills *out from the script's four integers v (its reply; turning a
 * Redis reply into them is keel_ratelimit_parse_reply's, in
 * keel/ratelimit_redis.h) for `rate` (limit = rate->count; the seconds
 * are the milliseconds rounded up). Returns KEEL_OK, KEEL_E_INVALID for an
 * unusable rate, or KEEL_E_INTERNAL when v is not the script's shape
 * (allowed 0 or 1, none negative, remaining below count and 0 when
 * denied, retry_after_ms positive exactly when denied); *out is then
 * untouched.
 */
keel_status keel_ratelimit_from_script(const long long v[4],
                                       const struct keel_config_rate *rate,
                                       struct keel_ratelimit_result *out);

/* ---------------------------------------------------------- headers */

/*
 * Formats the values (not the names) of the two fields of
 * draft-ietf-httpapi-ratelimit-headers-08 (October 2024) into caller
 * buffers, NUL-terminated:
 *
 *     RateLimit-Policy: "<policy_name>";q=<count>;w=<period_seconds>
 *     RateLimit:        "<policy_name>";r=<remaining>;t=<reset_s>
 *
 * The policy name is a Structured Field String (RFC 8941): printable
 * ASCII, written with `"` and `\` escaped. On a denial the caller also
 * sends `Retry-After: <r->retry_after_s>` (RFC 9110 section 10.2.3,
 * delay-seconds).
 *
 * Returns KEEL_OK; KEEL_E_INVALID when policy_name holds a byte outside
 * 0x20..0x7e or rate is unusable; KEEL_E_TOO_LARGE when a buffer is too
 * small (128 bytes always suffice for a name of up to 32 bytes). On error
 * the buffers' contents are unspecified.
 */
keel_status keel_ratelimit_headers(const struct keel_ratelimit_result *r,
                                   const struct keel_config_rate *rate,
                                   const char *policy_name,
                                   char *policy_out,
                                   size_t policy_n,
                                   char *state_out,
                                   size_t state_n);

#endif
