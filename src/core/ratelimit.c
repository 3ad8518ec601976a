/*
 * ratelimit.c - GCRA rate-limit decisions of include/keel/ratelimit.h: the
 * arithmetic, the in-process store, the Redis script and its reply, and the
 * RateLimit header values.
 *
 * DESIGN: GCRA keeps one number per key (the TAT), which makes both stores
 * cheap: the in-process one is a hash table of (keyhash, tat) pairs, 16
 * bytes an entry, and the Redis one a single string key with an expiry.
 * The in-process store is split into 64 shards, each a mutex and an open-
 * addressing table with linear probing, chosen by the top bits of the key's
 * hash; event loops deciding for different clients then rarely meet on a
 * lock, and a critical section is one probe sequence plus a few additions.
 * The hash is SipHash-2-4 (libsodium crypto_shorthash) under a random key,
 * so an attacker cannot aim many keys at one shard or probe chain; the
 * table stores only the 64-bit hash, so two keys share a budget only on a
 * full hash collision (about n^2 / 2^65 for n keys).
 *
 * Memory is bounded by a fixed capacity per shard. A full shard must drop
 * an entry to admit a new key: it examines up to EVICT_SAMPLE entries from
 * the new key's home slot and takes the first whose TAT is in the past
 * (that key's budget is whole, so dropping it changes no decision), else
 * the one with the smallest TAT (the key closest to a whole budget). Like
 * Redis's sampled LRU this bounds the work under the lock when a flood of
 * new keys (a botnet, spoofed X-Forwarded-For behind a bad proxy list)
 * fills the table, where a full scan would cost 16K entries per request.
 * Dropping an entry can only make the limiter forget spending (its TAT
 * falls back to "none"), and GCRA's update is monotonic in the TAT, so the
 * TAT kept for a key never exceeds the one its allowed requests imply: the
 * one way eviction errs is by allowing too much, never by denying. Entries
 * are removed by backward shifting, so the table needs no tombstones.
 *
 * The Redis script repeats the same arithmetic in Lua with the server's
 * clock (TIME), so instances sharing a Redis share one clock. Lua 5.1
 * numbers are doubles: microsecond timestamps (about 2^51 today) stay
 * exact, and the TAT is written with "%.0f" because tostring() would keep
 * only 14 significant digits.
 */
#include "keel/ratelimit.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/config.h"

#define NSHARDS_LOG2 6
#define NSHARDS      (1u << NSHARDS_LOG2)
/* Entries examined to choose a victim in a full shard. */
#define EVICT_SAMPLE 32

/* ------------------------------------------------------------ arithmetic */

uint64_t keel_ratelimit_interval_us(const struct keel_config_rate *rate)
{
    uint64_t period_us;

    if (!rate || rate->count == 0 || rate->period_seconds == 0)
        return 0;
    period_us = (uint64_t)rate->period_seconds * 1000000u;
    return (period_us + rate->count - 1) / rate->count;
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

static uint32_t ms_to_s(uint64_t ms)
{
    uint64_t s = ceil_div(ms, 1000);

    return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

/* Fills the derived fields of *out from its millisecond fields. */
static void finish(struct keel_ratelimit_result *out)
{
    out->reset_s = ms_to_s(out->reset_ms);
    out->retry_after_s = ms_to_s(out->retry_after_ms);
}

/*
 * The GCRA decision for a key whose stored TAT is `tat` (0 or any past
 * value when it has none) at `now`, both in microseconds, with emission
 * interval t and burst count. Returns the TAT to store when allowed.
 */
static uint64_t
gcra(uint64_t tat, uint64_t now, uint64_t t, uint32_t count, struct keel_ratelimit_result *out)
{
    uint64_t window = t * count;
    uint64_t new_tat;

    if (tat < now)
        tat = now;
    new_tat = tat + t;
    memset(out, 0, sizeof(*out));
    out->limit = count;
    if (new_tat - now <= window) {
        out->allowed = true;
        out->remaining = (uint32_t)((window - (new_tat - now)) / t);
        out->reset_ms = ceil_div(new_tat - now, 1000);
    } else {
        out->reset_ms = ceil_div(tat - now, 1000);
        out->retry_after_ms = ceil_div(new_tat - window - now, 1000);
    }
    finish(out);
    return new_tat;
}

/* ---------------------------------------------------- in-process store */

struct slot {
    uint64_t hash; /* 0: empty */
    uint64_t tat;  /* microseconds on the store's clock */
};

struct shard {
    pthread_mutex_t mu;
    struct slot *slots;
    uint32_t mask; /* slot count - 1 (a power of two) */
    uint32_t used;
    uint32_t cap; /* used <= cap < slot count, so a probe always ends */
    /* Keeps shards that different loops lock on separate cache lines. */
    char pad[64];
};

struct keel_ratelimit {
    uint64_t (*now_ms)(void *);
    void *now_arg;
    unsigned char hash_key[crypto_shorthash_KEYBYTES];
    struct shard shards[NSHARDS];
};

static uint64_t mono_ms(void *arg)
{
    (void)arg;
    return keel_now_ns() / 1000000u;
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 2;

    while (p < n)
        p <<= 1;
    return p;
}

struct keel_ratelimit *
keel_ratelimit_new(size_t max_entries, uint64_t (*now_ms)(void *now_arg), void *now_arg)
{
    struct keel_ratelimit *rl = keel_xcalloc(1, sizeof(*rl));
    uint64_t cap;
    uint32_t i, nslots;

    KEEL_ASSERT(sodium_init() >= 0);
    randombytes_buf(rl->hash_key, sizeof(rl->hash_key));
    rl->now_ms = now_ms ? now_ms : mono_ms;
    rl->now_arg = now_ms ? now_arg : NULL;
    if (max_entries == 0)
        max_entries = KEEL_RATELIMIT_MAX_ENTRIES;
    cap = ceil_div(max_entries, NSHARDS);
    if (cap > UINT32_MAX / 4)
        cap = UINT32_MAX / 4;
    /* A load factor of at most 3/4 keeps probe chains short. */
    nslots = pow2_at_least(cap + cap / 3 + 1);
    for (i = 0; i < NSHARDS; i++) {
        struct shard *s = &rl->shards[i];

        keel_mutex_init_fast(&s->mu);
        s->slots = keel_xcalloc(nslots, sizeof(*s->slots));
        s->mask = nslots - 1;
        s->cap = (uint32_t)cap;
    }
    return rl;
}

void keel_ratelimit_free(struct keel_ratelimit *rl)
{
    uint32_t i;

    if (!rl)
        return;
    for (i = 0; i < NSHARDS; i++) {
        pthread_mutex_destroy(&rl->shards[i].mu);
        free(rl->shards[i].slots);
    }
    sodium_memzero(rl->hash_key, sizeof(rl->hash_key));
    free(rl);
}

size_t keel_ratelimit_size(struct keel_ratelimit *rl)
{
    size_t n = 0;
    uint32_t i;

    for (i = 0; i < NSHARDS; i++) {
        pthread_mutex_lock(&rl->shards[i].mu);
        n += rl->shards[i].used;
        pthread_mutex_unlock(&rl->shards[i].mu);
    }
    return n;
}

/*
 * The keyed hash of (scope, key), never 0 (0 marks an empty slot). The
 * input is [scope length][scope][key], so no two (scope, key) pairs give
 * the same bytes. A key too long for the stack buffer is replaced by its
 * BLAKE2b digest behind a distinct marker length, which keeps that true
 * without an allocation on this path.
 */
static uint64_t key_hash(const struct keel_ratelimit *rl,
                         const char *scope,
                         size_t scopelen,
                         const char *key,
                         size_t keylen)
{
    unsigned char buf[2 + KEEL_RATELIMIT_SCOPE_MAX + 256];
    unsigned char out[crypto_shorthash_BYTES];
    size_t n = 0;
    uint64_t h;

    buf[n++] = (unsigned char)scopelen;
    memcpy(buf + n, scope, scopelen);
    n += scopelen;
    if (keylen <= 256) {
        buf[n++] = 0;
        if (keylen)
            memcpy(buf + n, key, keylen);
        n += keylen;
    } else {
        buf[n++] = 1;
        crypto_generichash(buf + n, 32, (const unsigned char *)key, keylen, NULL, 0);
        n += 32;
    }
    crypto_shorthash(out, buf, n, rl->hash_key);
    memcpy(&h, out, sizeof(h));
    return h ? h : 1;
}

/* The slot holding h, or the empty slot where h would go. */
static struct slot *probe(struct shard *s, uint64_t h)
{
    uint32_t i = (uint32_t)h & s->mask;

    while (s->slots[i].hash != 0 && s->slots[i].hash != h)
        i = (i + 1) & s->mask;
    return &s->slots[i];
}

/* Empties slot i, shifting later members of its probe chain back so every
 * entry stays reachable from its home slot without tombstones. */
static void erase(struct shard *s, uint32_t i)
{
    uint32_t j = i;

    for (;;) {
        uint32_t home;

        j = (j + 1) & s->mask;
        if (s->slots[j].hash == 0)
            break;
        home = (uint32_t)s->slots[j].hash & s->mask;
        /* The entry at j may fill the hole at i when i lies on its chain,
         * between its home and j. */
        if (((j - home) & s->mask) >= ((j - i) & s->mask)) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i].hash = 0;
    s->slots[i].tat = 0;
    s->used--;
}

/* Drops one entry of a full shard, chosen as the DESIGN comment says. */
static void evict(struct shard *s, uint64_t h, uint64_t now)
{
    uint32_t i = (uint32_t)h & s->mask;
    uint32_t victim = UINT32_MAX, seen = 0;
    uint64_t oldest = UINT64_MAX;

    while (seen < EVICT_SAMPLE && seen < s->used) {
        const struct slot *e = &s->slots[i];

        if (e->hash != 0) {
            seen++;
            if (e->tat <= now) {
                victim = i;
                break;
            }
            if (e->tat < oldest) {
                oldest = e->tat;
                victim = i;
            }
        }
        i = (i + 1) & s->mask;
    }
    KEEL_ASSERT(victim != UINT32_MAX);
    erase(s, victim);
}

/* The entry for h, created empty (TAT 0, "no spending") when missing. */
static struct slot *lookup_or_add(struct shard *s, uint64_t h, uint64_t now)
{
    struct slot *e = probe(s, h);

    if (e->hash == h)
        return e;
    if (s->used >= s->cap) {
        evict(s, h, now);
        e = probe(s, h); /* the shift may have moved the empty slot */
    }
    e->hash = h;
    e->tat = 0;
    s->used++;
    return e;
}

keel_status keel_ratelimit_check(struct keel_ratelimit *rl,
                                 const char *scope,
                                 const char *key,
                                 size_t keylen,
                                 const struct keel_config_rate *rate,
                                 struct keel_ratelimit_result *out)
{
    uint64_t t = keel_ratelimit_interval_us(rate);
    size_t scopelen = strlen(scope);
    struct keel_ratelimit_result res;
    struct shard *s;
    struct slot *e;
    uint64_t h, now, new_tat;

    if (t == 0 || scopelen > KEEL_RATELIMIT_SCOPE_MAX)
        return KEEL_E_INVALID;
    h = key_hash(rl, scope, scopelen, key, keylen);
    s = &rl->shards[h >> (64 - NSHARDS_LOG2)];
    pthread_mutex_lock(&s->mu);
    /* Read the clock under the lock, so TATs of one key are computed in
     * clock order even when threads race. */
    now = rl->now_ms(rl->now_arg) * 1000u;
    e = lookup_or_add(s, h, now);
    new_tat = gcra(e->tat, now, t, rate->count, &res);
    if (res.allowed)
        e->tat = new_tat;
    pthread_mutex_unlock(&s->mu);
    *out = res;
    return KEEL_OK;
}

/* ---------------------------------------------------------------- Redis */

/* KEYS[1] the key; ARGV[1] T in microseconds, ARGV[2] the count. Keep the
 * arithmetic in step with gcra() above, and update keel_ratelimit_lua_sha1
 * with any change (the unit test says the new value). */
const char keel_ratelimit_lua[] =
    "-- keel GCRA rate limit (src/core/ratelimit.c)\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local interval = tonumber(ARGV[1])\n"
    "local window = interval * tonumber(ARGV[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or 0\n"
    "if tat < now then tat = now end\n"
    "local new_tat = tat + interval\n"
    "if new_tat - now <= window then\n"
    "  redis.call('SET', KEYS[1], string.format('%.0f', new_tat),\n"
    "             'PX', math.ceil((new_tat - now) / 1000))\n"
    "  return {1, math.floor((window - (new_tat - now)) / interval),\n"
    "          math.ceil((new_tat - now) / 1000), 0}\n"
    "end\n"
    "return {0, 0, math.ceil((tat - now) / 1000),\n"
    "        math.ceil((new_tat - window - now) / 1000)}\n";

const char keel_ratelimit_lua_sha1[] = "48a30c4b2e83a857f7089ee146dec87b9b3189f2";

keel_status keel_ratelimit_from_script(const long long v[4],
                                       const struct keel_config_rate *rate,
                                       struct keel_ratelimit_result *out)
{
    struct keel_ratelimit_result res = {0};
    size_t i;

    if (keel_ratelimit_interval_us(rate) == 0)
        return KEEL_E_INVALID;
    for (i = 0; i < 4; i++)
        if (v[i] < 0)
            return KEEL_E_INTERNAL;
    if (v[0] > 1 || v[1] >= (long long)rate->count)
        return KEEL_E_INTERNAL;
    if (v[0] == 1 ? v[3] != 0 : (v[1] != 0 || v[3] == 0))
        return KEEL_E_INTERNAL;
    res.allowed = v[0] == 1;
    res.limit = rate->count;
    res.remaining = (uint32_t)v[1];
    res.reset_ms = (uint64_t)v[2];
    res.retry_after_ms = (uint64_t)v[3];
    finish(&res);
    *out = res;
    return KEEL_OK;
}

/* -------------------------------------------------------------- headers */

/* Writes name as a Structured Field String at p[0..n); returns the bytes
 * written (without a NUL), or -1 for a byte outside 0x20..0x7e or when n is
 * too small. */
static long sf_string(char *p, size_t n, const char *name)
{
    size_t len = 0;

    if (n < 1)
        return -1;
    p[len++] = '"';
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
        if (*c < 0x20 || *c > 0x7e)
            return -1;
        if (*c == '"' || *c == '\\') {
            if (len + 1 >= n)
                return -1;
            p[len++] = '\\';
        }
        if (len + 1 >= n)
            return -1;
        p[len++] = (char)*c;
    }
    if (len + 1 > n)
        return -1;
    p[len++] = '"';
    return (long)len;
}

/* Writes "name";<a>=<x>;<b>=<y> into out[0..n). */
static keel_status
field(char *out, size_t n, const char *name, char a, uint32_t x, char b, uint32_t y)
{
    long len;
    int m;

    for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
        if (*c < 0x20 || *c > 0x7e)
            return KEEL_E_INVALID;
    }
    len = sf_string(out, n, name);
    if (len < 0)
        return KEEL_E_TOO_LARGE;
    m = snprintf(out + len, n - (size_t)len, ";%c=%u;%c=%u", a, x, b, y);
    if (m < 0 || (size_t)m >= n - (size_t)len)
        return KEEL_E_TOO_LARGE;
    return KEEL_OK;
}

keel_status keel_ratelimit_headers(const struct keel_ratelimit_result *r,
                                   const struct keel_config_rate *rate,
                                   const char *policy_name,
                                   char *policy_out,
                                   size_t policy_n,
                                   char *state_out,
                                   size_t state_n)
{
    keel_status rc;

    if (keel_ratelimit_interval_us(rate) == 0)
        return KEEL_E_INVALID;
    rc = field(policy_out, policy_n, policy_name, 'q', rate->count, 'w', rate->period_seconds);
    if (rc < 0)
        goto out;
    rc = field(state_out, state_n, policy_name, 'r', r->remaining, 't', r->reset_s);
out:
    return rc;
}
