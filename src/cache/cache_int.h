/*
 * cache_int.h - what the files of the cache share (STYLE.md section 1,
 * "<mod>_int.h"): cache.c (state, keys and generations, applying
 * invalidations, life cycle), cache_get.c (the read path), cache_inval.c
 * (sending invalidations), cache_msg.c (pure helpers: keys, messages) and
 * cache_listen.c (the Redis subscriber). Only src/cache/ and the cache's
 * unit test include it. docs/internals/cache.md describes the design.
 */
#ifndef KEEL_CACHE_INT_H
#define KEEL_CACHE_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/cache.h"
#include "keel/core.h"

struct keel_l1;
struct keel_metric;
struct uv_loop_s;

#define KEEL__CACHE_REDIS_CHANNEL "keel:invalidate"
#define KEEL__CACHE_PG_CHANNEL    "keel_invalidate"

/* Redis keys: values are "keel:c:<epoch>:<key>" (with "<ns>:g<gen>:" for
 * namespaced keys), namespace generations "keel:cg:<ns>", the epoch
 * "keel:ce". */
#define KEEL__CACHE_EPOCH_KEY  "keel:ce"
#define KEEL__CACHE_GEN_PREFIX "keel:cg:"

/* An instance id: 16 lowercase hex digits, random per process. */
#define KEEL__CACHE_ID_LEN 16

/* The largest message: PostgreSQL refuses NOTIFY payloads of 8000 bytes
 * or more; Redis takes anything, but one format serves both. */
#define KEEL__CACHE_MSG_MAX 7000

/* An L1 key: "<ns>:g<generation>:<rest>" or the key itself. */
#define KEEL__CACHE_L1KEY_MAX (KEEL_CACHE_KEY_MAX + 24)

/* Tags in front of every value held in L1 and L2, so a negative entry can
 * never be mistaken for a value (an empty value is "V"). */
#define KEEL__CACHE_TAG_VALUE    'V'
#define KEEL__CACHE_TAG_NEGATIVE 'N'

/* ---------------------------------------------------------------- keys */

/* A key split at its first ':'. A key without ':' has no namespace. */
struct keel__cache_key {
    const char *key; /* the whole key */
    size_t len;
    const char *ns; /* NULL: no namespace */
    size_t nslen;
    const char *rest; /* after the first ':' (the whole key without a namespace) */
    size_t restlen;
    bool flush; /* "ns:*": every key of the namespace */
};

/* Splits key[0..len). Returns false when the key cannot be cached: empty,
 * longer than KEEL_CACHE_KEY_MAX, or holding a NUL byte. "ns:*" with an
 * empty ns is a plain key. */
bool keel__cache_key_split(const char *key, size_t len, struct keel__cache_key *out);

/* Writes the L1 key of k (not a flush) for namespace generation gen into
 * out (at least KEEL__CACHE_L1KEY_MAX bytes); returns its length. */
size_t keel__cache_l1_key(const struct keel__cache_key *k, uint64_t gen, char *out);

/* ------------------------------------------------------------ messages */

/*
 * An invalidation message (Redis PUBLISH payload and PostgreSQL NOTIFY
 * payload alike):
 *
 *     "kc1 <instance id> <seq> <kind> <count>\n" then <count> items "<n>:<bytes>,"
 *
 * <kind> is 'k' (drop these keys) or 'r' (drop them, and retire L2: the
 * sender could not delete them there, so every receiver stops reading L2
 * until the L2 epoch has been bumped).
 * where <bytes> is the key with '%', bytes below 0x21 and bytes above 0x7e
 * written as %XX, and <n> the length of that escaped form. Length-prefixed,
 * so no key can end an item early; escaped, so the payload is always
 * ASCII text that PostgreSQL accepts in any database encoding.
 */

/* Appends to out (reset first) a message for as many of keys[0..nkeys)
 * as fit in KEEL__CACHE_MSG_MAX bytes, at least one; returns how many.
 * Every key must satisfy keel__cache_key_split. Returns 0 only when out
 * cannot grow (its max). */
unsigned keel__cache_msg_encode(struct keel_buf *out,
                                const char *id,
                                uint64_t seq,
                                bool retire,
                                const char *const *keys,
                                unsigned nkeys);

typedef void (*keel__cache_key_fn)(const char *key, size_t len, void *arg);

/* Checks the whole message first, then (when fn is not NULL) calls fn for
 * each decoded key in order (key NUL-terminated, valid during the call).
 * id_out receives the sender's id (NUL-terminated), *seq_out its sequence
 * number, *retire_out its kind. Returns KEEL_OK or KEEL_E_INVALID (nothing
 * is called then). */
keel_status keel__cache_msg_decode(const char *msg,
                                   size_t len,
                                   char id_out[KEEL__CACHE_ID_LEN + 1],
                                   uint64_t *seq_out,
                                   bool *retire_out,
                                   keel__cache_key_fn fn,
                                   void *arg);

/* ------------------------------------------------------- shared state */

/* Owned by cache.c: set by keel_cache_init before any loop or listener
 * thread runs, cleared by keel_cache_shutdown after they all ended. */
struct keel__cache_state {
    bool on;
    struct keel_l1 *l1;
    uint32_t l1_ttl_ms;
    struct keel_db *db;
    bool pg; /* PostgreSQL: NOTIFY and LISTEN */
    char id[KEEL__CACHE_ID_LEN + 1];
    _Atomic uint64_t seq; /* of the messages this instance sent */
    /* L2 invalidations that may have failed, and how many of those the
     * last epoch bump covers: L2 is usable while they are equal. */
    _Atomic uint64_t l2_failed, l2_cleared;
    struct keel_metric *m_requests, *m_loads, *m_inval;
};

extern struct keel__cache_state keel__cache;

/* ---------------------------------------------------------------- cache.c */

/* SipHash of domain + p[0..n) (n <= KEEL__CACHE_L1KEY_MAX) under the
 * process's random key. */
uint64_t keel__cache_hash(char domain, const char *p, size_t n);

/* The L1 key of k (not a flush) with its namespace's current generation. */
size_t keel__cache_l1_key_now(const struct keel__cache_key *k, char *out);

/* True when k or its namespace was invalidated in the last 10 s (the
 * replica guard: such loads read the primary). */
bool keel__cache_recent(const struct keel__cache_key *k);

/* Applies one invalidated key here (L1, loads in flight) or bumps one
 * namespace ("ns:*"). Invalid keys are ignored. Any thread. */
void keel__cache_apply(const char *key, size_t len);

/* keel_cache_requests_total{layer,result} += 1. */
void keel__cache_count(const char *layer, const char *result);

/* ------------------------------------------------------------ cache_get.c */

/* The read path's tables, and their release. */
void keel__cache_get_init(void);
void keel__cache_get_fini(void);

/* Drops an L1 key and marks a load of it in flight as stale (its result
 * serves its requests, fills nothing). forget_all does it for everything:
 * L1 is cleared. Any thread. */
void keel__cache_forget(const char *l1key, size_t len);
void keel__cache_forget_all(void);

/* ------------------------------------------------ cache.c, for listeners */

enum keel__cache_channel {
    KEEL__CACHE_CH_REDIS,
    KEEL__CACHE_CH_PG,
};

/* A message received on either channel: applied to this instance unless
 * it is its own. Any thread. */
void keel__cache_receive(const char *msg, size_t len);

/* A listener subscribed (up) or lost its connection (down). Up clears L1
 * and marks every load in flight as stale: messages may have been missed
 * while it was down. Any thread. */
void keel__cache_listener_state(enum keel__cache_channel ch, bool up);

/* When L2 must be retired (an invalidation may have missed it): true, and
 * *target is what to report to keel__cache_epoch_bumped after INCR
 * keel:ce succeeded. Any thread. */
bool keel__cache_epoch_due(uint64_t *target);
void keel__cache_epoch_bumped(uint64_t target);

/* ------------------------------------- cache_listen.c: Redis subscriber */

/* Starts the subscriber thread for `url` (validated by keel_redis_init):
 * its own blocking connection, AUTH/SELECT as the URL says, SUBSCRIBE
 * keel:invalidate, reconnecting with backoff. It also bumps the L2 epoch
 * when one is due (keel__cache_epoch_due), so an idle instance does not
 * leave L2 values it failed to delete readable once Redis is back. KEEL_OK, KEEL_E_INVALID for
 * a URL that does not parse, KEEL_E_INTERNAL when no thread can be made. */
keel_status keel__cache_sub_start(const char *url);
/* Stops and joins it (a no-op when not running). */
void keel__cache_sub_stop(void);

#endif
