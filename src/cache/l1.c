/*
 * l1.c - the in-process LRU cache (include/keel/l1cache.h).
 *
 * DESIGN: each shard is a chained hash table plus a doubly linked LRU
 * list under one mutex; a key picks its shard and bucket with SipHash
 * (crypto_shorthash) under a random key, so clients cannot aim collisions
 * at one chain. An entry is one allocation: header, key bytes, value
 * bytes. The table doubles when a shard holds more entries than buckets.
 * The critical section is a lookup and a memcpy of the value: short
 * enough that 16 shards keep two to a few dozen loops from contending.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "keel/l1cache.h"

#define DEFAULT_SHARDS  16
#define INITIAL_BUCKETS 64
#define ENTRY_OVERHEAD  (sizeof(struct entry) + 16) /* header plus malloc's own */

struct entry {
    struct entry *hnext;       /* hash chain */
    struct entry *prev, *next; /* LRU: head = most recent */
    uint64_t hash;
    uint64_t expires_ms;
    uint32_t klen, vlen;
    unsigned char data[]; /* key, then value */
};

struct shard {
    pthread_mutex_t mu;
    struct entry **buckets;
    size_t nbuckets, n, bytes;
    struct entry *head, *tail;
    uint64_t hits, misses, evictions, expirations;
};

struct keel_l1 {
    struct shard *shards;
    unsigned nshards;
    size_t shard_budget;
    unsigned char key[crypto_shorthash_KEYBYTES];
    uint64_t (*now_ms)(void *arg);
    void *now_arg;
};

static uint64_t mono_ms(void *arg)
{
    (void)arg;
    return keel_now_ns() / 1000000u;
}

struct keel_l1 *
keel_l1_new(size_t max_bytes, unsigned nshards, uint64_t (*now_ms)(void *arg), void *now_arg)
{
    struct keel_l1 *c = keel_xcalloc(1, sizeof(*c));
    unsigned i;

    c->nshards = nshards ? nshards : DEFAULT_SHARDS;
    c->shard_budget = max_bytes / c->nshards;
    c->shards = keel_xcalloc(c->nshards, sizeof(*c->shards));
    c->now_ms = now_ms ? now_ms : mono_ms;
    c->now_arg = now_arg;
    if (sodium_init() < 0)
        abort();
    crypto_shorthash_keygen(c->key);
    for (i = 0; i < c->nshards; i++) {
        keel_mutex_init_fast(&c->shards[i].mu);
        c->shards[i].nbuckets = INITIAL_BUCKETS;
        c->shards[i].buckets = keel_xcalloc(INITIAL_BUCKETS, sizeof(struct entry *));
    }
    return c;
}

static size_t entry_size(const struct entry *e)
{
    return ENTRY_OVERHEAD + e->klen + e->vlen;
}

static void lru_unlink(struct shard *s, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(struct shard *s, struct entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (!s->tail)
        s->tail = e;
}

/* Unlinks e from its chain and the LRU, and frees it. */
static void drop(struct shard *s, struct entry *e)
{
    struct entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(s, e);
    s->n--;
    s->bytes -= entry_size(e);
    free(e);
}

static void grow(struct shard *s)
{
    size_t nb = s->nbuckets * 2, i;
    struct entry **b = keel_xcalloc(nb, sizeof(*b)), *e, *next;

    for (i = 0; i < s->nbuckets; i++)
        for (e = s->buckets[i]; e; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
}

static uint64_t hash_of(const struct keel_l1 *c, const void *key, size_t klen)
{
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t v;

    crypto_shorthash(h, key, klen, c->key);
    memcpy(&v, h, sizeof(v));
    return v;
}

static struct shard *shard_of(struct keel_l1 *c, uint64_t h)
{
    return &c->shards[(h >> 32) % c->nshards];
}

static struct entry *find(struct shard *s, uint64_t h, const void *key, size_t klen)
{
    struct entry *e;

    for (e = s->buckets[h & (s->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0)
            return e;
    return NULL;
}

keel_status keel_l1_get(struct keel_l1 *c, const void *key, size_t klen, struct keel_buf *out)
{
    uint64_t h = hash_of(c, key, klen), now = c->now_ms(c->now_arg);
    struct shard *s = shard_of(c, h);
    keel_status rc = KEEL_E_NOT_FOUND;
    struct entry *e;

    pthread_mutex_lock(&s->mu);
    e = find(s, h, key, klen);
    if (e && e->expires_ms <= now) {
        drop(s, e);
        s->expirations++;
        e = NULL;
    }
    if (e) {
        rc = keel_buf_append(out, e->data + e->klen, e->vlen) < 0 ? KEEL_E_TOO_LARGE : KEEL_OK;
        lru_unlink(s, e);
        lru_push(s, e);
    }
    if (rc == KEEL_OK)
        s->hits++;
    else
        s->misses++;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

keel_status keel_l1_set(
    struct keel_l1 *c, const void *key, size_t klen, const void *val, size_t vlen, uint32_t ttl_ms)
{
    uint64_t h = hash_of(c, key, klen);
    struct shard *s = shard_of(c, h);
    size_t need = ENTRY_OVERHEAD + klen + vlen;
    struct entry *e, *old;

    if (need > c->shard_budget || klen > UINT32_MAX || vlen > UINT32_MAX || ttl_ms == 0) {
        keel_l1_del(c, key, klen);
        return KEEL_E_TOO_LARGE;
    }
    e = keel_xmalloc(sizeof(*e) + klen + vlen);
    e->hash = h;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    e->expires_ms = c->now_ms(c->now_arg) + ttl_ms;
    memcpy(e->data, key, klen);
    if (vlen)
        memcpy(e->data + klen, val, vlen);
    pthread_mutex_lock(&s->mu);
    old = find(s, h, key, klen);
    if (old)
        drop(s, old);
    while (s->bytes + need > c->shard_budget && s->tail) {
        drop(s, s->tail);
        s->evictions++;
    }
    if (s->n >= s->nbuckets)
        grow(s);
    e->hnext = s->buckets[h & (s->nbuckets - 1)];
    s->buckets[h & (s->nbuckets - 1)] = e;
    lru_push(s, e);
    s->n++;
    s->bytes += need;
    pthread_mutex_unlock(&s->mu);
    return KEEL_OK;
}

void keel_l1_del(struct keel_l1 *c, const void *key, size_t klen)
{
    uint64_t h = hash_of(c, key, klen);
    struct shard *s = shard_of(c, h);
    struct entry *e;

    pthread_mutex_lock(&s->mu);
    e = find(s, h, key, klen);
    if (e)
        drop(s, e);
    pthread_mutex_unlock(&s->mu);
}

void keel_l1_clear(struct keel_l1 *c)
{
    unsigned i;

    for (i = 0; i < c->nshards; i++) {
        pthread_mutex_lock(&c->shards[i].mu);
        while (c->shards[i].tail)
            drop(&c->shards[i], c->shards[i].tail);
        pthread_mutex_unlock(&c->shards[i].mu);
    }
}

void keel_l1_stats(struct keel_l1 *c, struct keel_l1_stats *out)
{
    unsigned i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < c->nshards; i++) {
        struct shard *s = &c->shards[i];

        pthread_mutex_lock(&s->mu);
        out->hits += s->hits;
        out->misses += s->misses;
        out->evictions += s->evictions;
        out->expirations += s->expirations;
        out->bytes += s->bytes;
        out->entries += s->n;
        pthread_mutex_unlock(&s->mu);
    }
}

void keel_l1_free(struct keel_l1 *c)
{
    unsigned i;

    if (!c)
        return;
    keel_l1_clear(c);
    for (i = 0; i < c->nshards; i++) {
        pthread_mutex_destroy(&c->shards[i].mu);
        free(c->shards[i].buckets);
    }
    free(c->shards);
    free(c);
}
