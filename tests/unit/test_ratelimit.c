/*
 * test_ratelimit.c - unit tests for src/core/ratelimit.c with a fake
 * clock: the burst and the 101st request of 100/min, pacing after the
 * burst, independent keys and scopes, 8 threads on one key, eviction under
 * a tiny capacity checked against an unbounded reference model, the header
 * values, the Redis reply parser on hand-built replies, and the script's
 * SHA-1 constant.
 *
 * When KEEL_TEST_REDIS_URL names a server (redis://host:port), one more
 * case runs the Lua script there through the project's async client
 * (EVALSHA, NOSCRIPT fallback to EVAL, burst, denial, pacing, key expiry);
 * without it that case is skipped.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "keel/config.h"
#include "keel/core.h"
#include "keel/log.h"
#include "keel/ratelimit.h"
#include "keel/ratelimit_redis.h"
#include "keel/redis.h"

#include "test.h"

static _Atomic uint64_t fake_now;

static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return atomic_load(&fake_now);
}

static void advance(uint64_t ms)
{
    atomic_fetch_add(&fake_now, ms);
}

static int setup(void **state)
{
    (void)state;
    atomic_store(&fake_now, 5000000);
    return 0;
}

static const struct keel_config_rate per_min_100 = {100, 60};

static struct keel_ratelimit_result check(struct keel_ratelimit *rl,
                                          const char *scope,
                                          const char *key,
                                          const struct keel_config_rate *rate)
{
    struct keel_ratelimit_result r;

    assert_int_equal(keel_ratelimit_check(rl, scope, key, strlen(key), rate, &r), KEEL_OK);
    return r;
}

/* ------------------------------------------------------------- decisions */

static void test_burst_then_deny(void **state)
{
    struct keel_ratelimit *rl = keel_ratelimit_new(0, fake_clock, NULL);
    struct keel_ratelimit_result r;
    uint32_t i;

    (void)state;
    assert_int_equal(keel_ratelimit_interval_us(&per_min_100), 600000);
    for (i = 0; i < 100; i++) {
        r = check(rl, "ip", "203.0.113.7", &per_min_100);
        assert_true(r.allowed);
        assert_int_equal(r.limit, 100);
        assert_int_equal(r.remaining, 99 - i);
        assert_int_equal(r.reset_ms, 600 * (i + 1));
        assert_int_equal(r.reset_s, (600 * (i + 1) + 999) / 1000);
        assert_int_equal(r.retry_after_ms, 0);
        assert_int_equal(r.retry_after_s, 0);
    }
    /* The 101st in the same instant: denied, one unit comes back in 600 ms. */
    r = check(rl, "ip", "203.0.113.7", &per_min_100);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.retry_after_ms, 600);
    assert_int_equal(r.retry_after_s, 1);
    assert_int_equal(r.reset_ms, 60000);
    assert_int_equal(r.reset_s, 60);
    /* A denial spends nothing: 250 ms later the wait is 350 ms. */
    advance(250);
    r = check(rl, "ip", "203.0.113.7", &per_min_100);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_ms, 350);
    assert_int_equal(r.reset_ms, 59750);
    keel_ratelimit_free(rl);
}

static void test_pacing(void **state)
{
    struct keel_ratelimit *rl = keel_ratelimit_new(0, fake_clock, NULL);
    struct keel_ratelimit_result r;
    int i;

    (void)state;
    for (i = 0; i < 100; i++)
        assert_true(check(rl, "user", "u1", &per_min_100).allowed);
    for (i = 0; i < 20; i++) {
        advance(599);
        r = check(rl, "user", "u1", &per_min_100);
        assert_false(r.allowed);
        assert_int_equal(r.retry_after_ms, 1);
        assert_int_equal(r.retry_after_s, 1);
        advance(1);
        r = check(rl, "user", "u1", &per_min_100);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 0);
        assert_int_equal(r.reset_ms, 60000);
        assert_false(check(rl, "user", "u1", &per_min_100).allowed);
    }
    /* Idle for a whole period: the full burst is back, and no more. */
    advance(60000);
    for (i = 0; i < 100; i++)
        assert_true(check(rl, "user", "u1", &per_min_100).allowed);
    assert_false(check(rl, "user", "u1", &per_min_100).allowed);
    /* Half a period idle gives back half the budget. */
    advance(30000);
    for (i = 0; i < 50; i++)
        assert_true(check(rl, "user", "u1", &per_min_100).allowed);
    assert_false(check(rl, "user", "u1", &per_min_100).allowed);
    keel_ratelimit_free(rl);
}

static void test_keys_and_scopes(void **state)
{
    const struct keel_config_rate two = {2, 1};
    struct keel_ratelimit *rl = keel_ratelimit_new(0, fake_clock, NULL);
    struct keel_ratelimit_result r;
    char longkey[1000];

    (void)state;
    assert_true(check(rl, "ip", "a", &two).allowed);
    assert_true(check(rl, "ip", "a", &two).allowed);
    assert_false(check(rl, "ip", "a", &two).allowed);
    /* Another key, the same key in another scope, and a scope/key split
     * differently ("ip"+"a" vs "i"+"pa") each have their own budget. */
    assert_int_equal(check(rl, "ip", "b", &two).remaining, 1);
    assert_int_equal(check(rl, "user", "a", &two).remaining, 1);
    assert_int_equal(check(rl, "i", "pa", &two).remaining, 1);
    assert_int_equal(check(rl, "", "ipa", &two).remaining, 1);
    /* Keys are binary-safe. */
    assert_int_equal(keel_ratelimit_check(rl, "ip", "x\0y", 3, &two, &r), KEEL_OK);
    assert_int_equal(r.remaining, 1);
    assert_int_equal(keel_ratelimit_check(rl, "ip", "x\0z", 3, &two, &r), KEEL_OK);
    assert_int_equal(r.remaining, 1);
    assert_int_equal(keel_ratelimit_check(rl, "ip", "x\0y", 3, &two, &r), KEEL_OK);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(keel_ratelimit_check(rl, "ip", NULL, 0, &two, &r), KEEL_OK);
    assert_true(r.allowed);
    /* Long keys (hashed through a digest) stay distinct. */
    memset(longkey, 'k', sizeof(longkey));
    assert_int_equal(keel_ratelimit_check(rl, "ip", longkey, 1000, &two, &r), KEEL_OK);
    assert_int_equal(r.remaining, 1);
    assert_int_equal(keel_ratelimit_check(rl, "ip", longkey, 999, &two, &r), KEEL_OK);
    assert_int_equal(r.remaining, 1);
    assert_int_equal(keel_ratelimit_check(rl, "ip", longkey, 1000, &two, &r), KEEL_OK);
    assert_int_equal(r.remaining, 0);
    /* Each key's TAT moves on its own: a second later all are whole. */
    advance(1000);
    assert_int_equal(check(rl, "ip", "a", &two).remaining, 1);
    assert_int_equal(keel_ratelimit_size(rl), 10);
    keel_ratelimit_free(rl);
}

static void test_invalid(void **state)
{
    const struct keel_config_rate zero_count = {0, 60}, zero_period = {10, 0};
    struct keel_ratelimit *rl = keel_ratelimit_new(0, fake_clock, NULL);
    struct keel_ratelimit_result r = {.limit = 7};
    char scope[KEEL_RATELIMIT_SCOPE_MAX + 2];

    (void)state;
    assert_int_equal(keel_ratelimit_interval_us(&zero_count), 0);
    assert_int_equal(keel_ratelimit_interval_us(NULL), 0);
    assert_int_equal(keel_ratelimit_check(rl, "ip", "a", 1, &zero_count, &r), KEEL_E_INVALID);
    assert_int_equal(keel_ratelimit_check(rl, "ip", "a", 1, &zero_period, &r), KEEL_E_INVALID);
    memset(scope, 's', sizeof(scope) - 1);
    scope[sizeof(scope) - 1] = '\0';
    assert_int_equal(keel_ratelimit_check(rl, scope, "a", 1, &per_min_100, &r), KEEL_E_INVALID);
    scope[KEEL_RATELIMIT_SCOPE_MAX] = '\0';
    assert_int_equal(r.limit, 7); /* untouched */
    assert_int_equal(keel_ratelimit_check(rl, scope, "a", 1, &per_min_100, &r), KEEL_OK);
    assert_true(r.allowed);
    keel_ratelimit_free(rl);
    keel_ratelimit_free(NULL);
}

/* Rates whose count does not divide the period: T rounds up to a whole
 * microsecond and the burst is still exactly count. */
static void test_odd_rates(void **state)
{
    static const struct keel_config_rate rates[] = {
        {7, 60}, {999, 1}, {3, 1}, {1, 86400}, {1000000000, 86400}, {1, 1},
    };
    struct keel_ratelimit *rl = keel_ratelimit_new(0, fake_clock, NULL);
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(rates); i++) {
        char key[16];
        uint32_t n = rates[i].count > 2000 ? 2000 : rates[i].count, j;

        snprintf(key, sizeof(key), "k%zu", i);
        for (j = 0; j < n; j++)
            assert_true(check(rl, "odd", key, &rates[i]).allowed);
        if (n == rates[i].count) {
            struct keel_ratelimit_result r = check(rl, "odd", key, &rates[i]);

            assert_false(r.allowed);
            assert_true(r.retry_after_s >= 1);
            /* T * count exceeds the period by under count microseconds. */
            assert_true(r.reset_ms >= rates[i].period_seconds * 1000ull);
            assert_true(r.reset_ms <= rates[i].period_seconds * 1000ull + 1 + n / 1000);
        }
    }
    keel_ratelimit_free(rl);
}

/* ------------------------------------------------------------ threads */

struct hammer {
    struct keel_ratelimit *rl;
    const struct keel_config_rate *rate;
    _Atomic unsigned allowed;
    _Atomic unsigned denied;
};

static void *hammer_run(void *arg)
{
    struct hammer *hm = arg;
    struct keel_ratelimit_result r;
    char other[32];
    int i;

    for (i = 0; i < 2000; i++) {
        if (keel_ratelimit_check(hm->rl, "ip", "shared", 6, hm->rate, &r) != KEEL_OK)
            abort();
        if (r.allowed)
            atomic_fetch_add(&hm->allowed, 1);
        else
            atomic_fetch_add(&hm->denied, 1);
        /* Other keys at the same time, on every shard. */
        snprintf(other, sizeof(other), "o%d", i);
        if (keel_ratelimit_check(hm->rl, "ip", other, strlen(other), hm->rate, &r) != KEEL_OK)
            abort();
    }
    return NULL;
}

static void test_threads_one_key(void **state)
{
    struct hammer hm = {.rate = &per_min_100};
    pthread_t th[8];
    int i;

    (void)state;
    hm.rl = keel_ratelimit_new(0, fake_clock, NULL);
    for (i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer_run, &hm), 0);
    for (i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&hm.allowed), 100);
    assert_int_equal(atomic_load(&hm.denied), 8 * 2000 - 100);
    keel_ratelimit_free(hm.rl);
}

/* ------------------------------------------------------------- eviction */

/* The reference: an unbounded GCRA over 512 keys, in microseconds, fed
 * with the requests the store allowed. */
struct model {
    uint64_t tat[512];
};

/* Whether the reference allows a request of key k now (nothing recorded). */
static bool
model_allows(const struct model *m, int k, uint64_t now_ms, const struct keel_config_rate *r)
{
    uint64_t t = keel_ratelimit_interval_us(r), now = now_ms * 1000, tat = m->tat[k];

    if (tat < now)
        tat = now;
    return tat + t - now <= t * r->count;
}

static void model_record(struct model *m, int k, uint64_t now_ms, const struct keel_config_rate *r)
{
    uint64_t now = now_ms * 1000;

    m->tat[k] = (m->tat[k] < now ? now : m->tat[k]) + keel_ratelimit_interval_us(r);
}

/*
 * Random traffic over 512 keys, checked against the reference. With room
 * for every key the store must agree exactly. Squeezed into 64 entries (one
 * a shard) it forgets, and so may allow what the reference would deny; but
 * every denial must be justified by the requests the store itself allowed:
 * the reference, fed those same requests, denies too. (The store may still
 * deny where a reference fed only its own decisions would allow: the store
 * counts the requests it let through after forgetting.) A key it has never
 * seen is always allowed with a full budget.
 */
static void run_model(size_t max_entries, bool exact)
{
    const struct keel_config_rate rate = {5, 1};
    struct keel_ratelimit *rl = keel_ratelimit_new(max_entries, fake_clock, NULL);
    struct model *m = keel_xcalloc(1, sizeof(*m));
    unsigned seed = 12345, extra = 0;
    int i;

    for (i = 0; i < 200000; i++) {
        struct keel_ratelimit_result r;
        /* Half the traffic on 16 hot keys, so budgets run out. */
        int k = (int)(rand_r(&seed) % (rand_r(&seed) % 2 ? 16 : 512));
        char key[16];
        bool want;

        if (rand_r(&seed) % 8 == 0)
            advance(rand_r(&seed) % 50);
        snprintf(key, sizeof(key), "key-%d", k);
        want = model_allows(m, k, atomic_load(&fake_now), &rate);
        r = check(rl, "ip", key, &rate);
        if (exact || want)
            assert_int_equal(r.allowed, want);
        if (r.allowed)
            model_record(m, k, atomic_load(&fake_now), &rate);
        extra += r.allowed && !want;
        /* The capacity rounds up to a multiple of the 64 shards. */
        assert_true(keel_ratelimit_size(rl) <= (max_entries ? (max_entries + 63) / 64 * 64 : 512));
    }
    /* Fresh keys are never denied, however full the store. */
    for (i = 0; i < 5000; i++) {
        char key[24];

        snprintf(key, sizeof(key), "fresh-%d", i);
        struct keel_ratelimit_result r = check(rl, "ip", key, &rate);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, rate.count - 1);
    }
    if (!exact)
        assert_true(extra > 0); /* the squeeze did evict live entries */
    free(m);
    keel_ratelimit_free(rl);
}

static void test_eviction_exact_when_room(void **state)
{
    (void)state;
    run_model(0, true);
}

static void test_eviction_never_denies_wrongly(void **state)
{
    (void)state;
    run_model(64, false);
    run_model(1, false); /* rounds up to one entry a shard */
}

/* A full shard drops an entry whose budget is whole before a live one. */
static void test_eviction_prefers_expired(void **state)
{
    const struct keel_config_rate rate = {2, 10};
    struct keel_ratelimit *rl = keel_ratelimit_new(64 * 64, fake_clock, NULL);
    char key[24];
    int i;

    (void)state;
    /* Fill every shard (64 entries each) with spent keys, then let time
     * pass so their budgets are whole again. */
    for (i = 0; i < 8000; i++) {
        snprintf(key, sizeof(key), "old-%d", i);
        check(rl, "ip", key, &rate);
        check(rl, "ip", key, &rate);
    }
    assert_int_equal(keel_ratelimit_size(rl), 64 * 64);
    advance(10000);
    /* 320 live keys, spent, and 320 new ones: about 10 of each a shard, far
     * below the 32 entries examined, so an expired entry is always in reach
     * and no live key is forgotten. */
    for (i = 0; i < 320; i++) {
        snprintf(key, sizeof(key), "live-%d", i);
        assert_true(check(rl, "ip", key, &rate).allowed);
        assert_true(check(rl, "ip", key, &rate).allowed);
    }
    for (i = 0; i < 320; i++) {
        snprintf(key, sizeof(key), "new-%d", i);
        assert_true(check(rl, "ip", key, &rate).allowed);
    }
    for (i = 0; i < 320; i++) {
        snprintf(key, sizeof(key), "live-%d", i);
        assert_false(check(rl, "ip", key, &rate).allowed);
    }
    assert_int_equal(keel_ratelimit_size(rl), 64 * 64);
    keel_ratelimit_free(rl);
}

/* -------------------------------------------------------------- headers */

static void test_headers(void **state)
{
    struct keel_ratelimit *rl = keel_ratelimit_new(0, fake_clock, NULL);
    struct keel_ratelimit_result r;
    char pol[128], st[128], tiny[16];
    int i;

    (void)state;
    for (i = 0; i < 58; i++)
        r = check(rl, "ip", "h", &per_min_100);
    assert_int_equal(
        keel_ratelimit_headers(&r, &per_min_100, "default", pol, sizeof(pol), st, sizeof(st)),
        KEEL_OK);
    assert_string_equal(pol, "\"default\";q=100;w=60");
    assert_string_equal(st, "\"default\";r=42;t=35");
    /* Escaping of the String's two special characters. */
    assert_int_equal(
        keel_ratelimit_headers(&r, &per_min_100, "a\"b\\c", pol, sizeof(pol), st, sizeof(st)),
        KEEL_OK);
    assert_string_equal(pol, "\"a\\\"b\\\\c\";q=100;w=60");
    /* Control bytes and non-ASCII are not allowed in a String. */
    assert_int_equal(
        keel_ratelimit_headers(&r, &per_min_100, "a\nb", pol, sizeof(pol), st, sizeof(st)),
        KEEL_E_INVALID);
    assert_int_equal(
        keel_ratelimit_headers(&r, &per_min_100, "caf\xc3\xa9", pol, sizeof(pol), st, sizeof(st)),
        KEEL_E_INVALID);
    /* Too small: the exact size fits, one byte less does not. */
    assert_int_equal(keel_ratelimit_headers(&r, &per_min_100, "d", tiny, 14, st, sizeof(st)),
                     KEEL_E_TOO_LARGE);
    assert_int_equal(keel_ratelimit_headers(&r, &per_min_100, "d", tiny, 15, st, sizeof(st)),
                     KEEL_OK);
    assert_string_equal(tiny, "\"d\";q=100;w=60");
    assert_int_equal(keel_ratelimit_headers(&r, &per_min_100, "d", pol, sizeof(pol), tiny, 14),
                     KEEL_OK);
    assert_string_equal(tiny, "\"d\";r=42;t=35");
    assert_int_equal(keel_ratelimit_headers(&r, &per_min_100, "d", pol, sizeof(pol), tiny, 13),
                     KEEL_E_TOO_LARGE);
    assert_int_equal(keel_ratelimit_headers(&r, &per_min_100, "dd", pol, sizeof(pol), tiny, 2),
                     KEEL_E_TOO_LARGE);
    assert_int_equal(keel_ratelimit_headers(&r, &per_min_100, "d", pol, 0, st, sizeof(st)),
                     KEEL_E_TOO_LARGE);
    /* The denial's values. */
    for (i = 0; i < 43; i++)
        r = check(rl, "ip", "h", &per_min_100);
    assert_false(r.allowed);
    assert_int_equal(
        keel_ratelimit_headers(&r, &per_min_100, "default", pol, sizeof(pol), st, sizeof(st)),
        KEEL_OK);
    assert_string_equal(st, "\"default\";r=0;t=60");
    assert_int_equal(r.retry_after_s, 1);
    keel_ratelimit_free(rl);
}

/* ------------------------------------------------------- Redis replies */

static struct keel_redis_reply int_reply(long long v)
{
    return (struct keel_redis_reply){.type = KEEL_REDIS_INTEGER, .integer = v};
}

static keel_status
parse4(long long a, long long b, long long c, long long d, struct keel_ratelimit_result *out)
{
    struct keel_redis_reply el[4] = {int_reply(a), int_reply(b), int_reply(c), int_reply(d)};
    struct keel_redis_reply arr = {.type = KEEL_REDIS_ARRAY, .elements = 4, .element = el};

    return keel_ratelimit_parse_reply(&arr, &per_min_100, out);
}

static void test_parse_reply(void **state)
{
    struct keel_ratelimit_result r;
    struct keel_redis_reply el[4] = {int_reply(1), int_reply(2), int_reply(3), int_reply(0)};
    struct keel_redis_reply arr = {.type = KEEL_REDIS_ARRAY, .elements = 4, .element = el};
    struct keel_redis_reply err = {.type = KEEL_REDIS_ERROR,
                                   .str = "NOSCRIPT No matching script. Please use EVAL.",
                                   .len = 45};
    struct keel_redis_reply other = {.type = KEEL_REDIS_ERROR, .str = "ERR oops", .len = 8};

    (void)state;
    assert_int_equal(parse4(1, 42, 34801, 0, &r), KEEL_OK);
    assert_true(r.allowed);
    assert_int_equal(r.limit, 100);
    assert_int_equal(r.remaining, 42);
    assert_int_equal(r.reset_ms, 34801);
    assert_int_equal(r.reset_s, 35);
    assert_int_equal(r.retry_after_ms, 0);
    assert_int_equal(r.retry_after_s, 0);
    assert_int_equal(parse4(0, 0, 60000, 1, &r), KEEL_OK);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.reset_s, 60);
    assert_int_equal(r.retry_after_ms, 1);
    assert_int_equal(r.retry_after_s, 1);
    /* Shapes the script never returns. */
    r.limit = 9;
    assert_int_equal(parse4(2, 0, 1, 0, &r), KEEL_E_INTERNAL);   /* allowed not 0/1 */
    assert_int_equal(parse4(1, 100, 1, 0, &r), KEEL_E_INTERNAL); /* remaining >= count */
    assert_int_equal(parse4(1, -1, 1, 0, &r), KEEL_E_INTERNAL);  /* negative */
    assert_int_equal(parse4(1, 5, 1, 7, &r), KEEL_E_INTERNAL);   /* retry when allowed */
    assert_int_equal(parse4(0, 0, 1, 0, &r), KEEL_E_INTERNAL);   /* denied, no retry */
    assert_int_equal(parse4(0, 3, 1, 600, &r), KEEL_E_INTERNAL); /* denied, remaining */
    assert_int_equal(r.limit, 9);                                /* untouched */
    el[2] = (struct keel_redis_reply){.type = KEEL_REDIS_STRING, .str = "3", .len = 1};
    assert_int_equal(keel_ratelimit_parse_reply(&arr, &per_min_100, &r), KEEL_E_INTERNAL);
    el[2] = int_reply(3);
    assert_int_equal(keel_ratelimit_parse_reply(&arr, &per_min_100, &r), KEEL_OK);
    arr.elements = 3;
    assert_int_equal(keel_ratelimit_parse_reply(&arr, &per_min_100, &r), KEEL_E_INTERNAL);
    arr.elements = 4;
    assert_int_equal(keel_ratelimit_parse_reply(&err, &per_min_100, &r), KEEL_E_INTERNAL);
    assert_int_equal(keel_ratelimit_parse_reply(NULL, &per_min_100, &r), KEEL_E_INTERNAL);
    assert_int_equal(keel_ratelimit_parse_reply(&arr, &(struct keel_config_rate){0, 60}, &r),
                     KEEL_E_INVALID);
    assert_true(keel_ratelimit_reply_is_noscript(&err));
    assert_false(keel_ratelimit_reply_is_noscript(&other));
    assert_false(keel_ratelimit_reply_is_noscript(&arr));
    assert_false(keel_ratelimit_reply_is_noscript(NULL));
}

/* ---------------------------------------------------- the script's SHA-1 */

/* A plain SHA-1 (FIPS 180-4), here only to check the constant that
 * EVALSHA sends; nothing in Keel hashes with SHA-1. */
static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    int i;

    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (i = 0; i < 80; i++) {
        uint32_t f, k, tmp;

        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        tmp = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = tmp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1_hex(const char *s, char hex[41])
{
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    size_t len = strlen(s), i, off = 0;
    unsigned char blk[64];
    uint64_t bits = (uint64_t)len * 8;

    for (; off + 64 <= len; off += 64)
        sha1_block(h, (const unsigned char *)s + off);
    memset(blk, 0, sizeof(blk));
    memcpy(blk, s + off, len - off);
    blk[len - off] = 0x80;
    if (len - off >= 56) {
        sha1_block(h, blk);
        memset(blk, 0, sizeof(blk));
    }
    for (i = 0; i < 8; i++)
        blk[63 - i] = (unsigned char)(bits >> (8 * i));
    sha1_block(h, blk);
    for (i = 0; i < 5; i++)
        snprintf(hex + 8 * i, 9, "%08x", h[i]);
}

static void test_lua_sha1(void **state)
{
    char hex[41];

    (void)state;
    sha1_hex("abc", hex);
    assert_string_equal(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    sha1_hex("", hex);
    assert_string_equal(hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    sha1_hex(keel_ratelimit_lua, hex);
    if (strcmp(hex, keel_ratelimit_lua_sha1) != 0)
        fail_msg("keel_ratelimit_lua_sha1 must be \"%s\" for the current script", hex);
}

/* ----------------------------------------------- the script, for real */

static uv_loop_t loop;

struct call {
    int done;
    keel_status rc;
    bool noscript;
    enum keel_redis_type type;
    long long integer;
    char str[64];
    keel_status parse_rc;
    struct keel_ratelimit_result res;
    const struct keel_config_rate *rate;
};

static void on_reply(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    struct call *c = arg;

    c->done = 1;
    c->rc = rc;
    if (!r)
        return;
    c->type = r->type;
    c->integer = r->integer;
    c->noscript = keel_ratelimit_reply_is_noscript(r);
    if (r->str)
        snprintf(c->str, sizeof(c->str), "%.*s", (int)r->len, r->str);
    if (c->rate)
        c->parse_rc = keel_ratelimit_parse_reply(r, c->rate, &c->res);
}

static void wait_for(struct call *c)
{
    uint64_t end;

    uv_update_time(&loop);
    end = uv_now(&loop) + 3000;
    while (!c->done && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(c->done);
}

static struct call run_argv(int argc, const char *const *argv, const struct keel_config_rate *rate)
{
    struct call c = {.rate = rate};

    assert_int_equal(keel_redis_command_argv(&loop, 0, on_reply, &c, argc, argv, NULL), KEEL_OK);
    wait_for(&c);
    return c;
}

/* One decision as the middleware will make it: EVALSHA, then EVAL on
 * NOSCRIPT. */
static struct keel_ratelimit_result
redis_decide(const char *key, const struct keel_config_rate *rate, bool *had_noscript)
{
    char t_us[24], count[16];
    const char *argv[6] = {"EVALSHA", keel_ratelimit_lua_sha1, "1", key, t_us, count};
    struct call c;

    snprintf(t_us, sizeof(t_us), "%llu", (unsigned long long)keel_ratelimit_interval_us(rate));
    snprintf(count, sizeof(count), "%u", rate->count);
    c = run_argv(6, argv, rate);
    if (c.rc == KEEL_E_INTERNAL && c.noscript) {
        *had_noscript = true;
        argv[0] = "EVAL";
        argv[1] = keel_ratelimit_lua;
        c = run_argv(6, argv, rate);
    }
    if (c.rc != KEEL_OK || c.parse_rc != KEEL_OK)
        fail_msg("script call: %s / %s: %s", keel_status_name(c.rc), keel_status_name(c.parse_rc),
                 c.str);
    return c.res;
}

static void test_redis_script(void **state)
{
    const char *url = getenv("KEEL_TEST_REDIS_URL");
    const struct keel_config_rate five = {5, 60}, fast = {10, 1};
    struct keel_ratelimit_result r;
    char key[64], key2[64];
    bool noscript = false;
    struct call c;
    int i;

    (void)state;
    if (!url || !*url) {
        skip();
        return;
    }
    keel_log_init(KEEL_LOG_ERROR, 2);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(keel_redis_init_opts(url, 1, NULL), KEEL_OK);
    snprintf(key, sizeof(key), "keel:test:rl:%d:a", (int)getpid());
    snprintf(key2, sizeof(key2), "keel:test:rl:%d:b", (int)getpid());
    c = run_argv(2, (const char *const[]){"SCRIPT", "FLUSH"}, NULL);
    assert_int_equal(c.rc, KEEL_OK);
    c = run_argv(3, (const char *const[]){"DEL", key, key2}, NULL);
    assert_int_equal(c.rc, KEEL_OK);

    /* Burst of 5, then the 6th is denied for about 12 s. */
    for (i = 0; i < 5; i++) {
        r = redis_decide(key, &five, &noscript);
        assert_true(r.allowed);
        assert_int_equal(r.limit, 5);
        assert_int_equal(r.remaining, 4 - i);
    }
    assert_true(noscript); /* the first call found no cached script */
    r = redis_decide(key, &five, &noscript);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_true(r.retry_after_ms > 11000 && r.retry_after_ms <= 12000);
    assert_int_equal(r.retry_after_s, 12);
    assert_true(r.reset_ms > 59000 && r.reset_ms <= 60000);
    /* The key expires when the budget is whole again. */
    c = run_argv(2, (const char *const[]){"PTTL", key}, NULL);
    assert_int_equal(c.type, KEEL_REDIS_INTEGER);
    assert_true(c.integer > 59000 && c.integer <= 60000);
    /* SCRIPT LOAD agrees with the SHA-1 constant. */
    c = run_argv(3, (const char *const[]){"SCRIPT", "LOAD", keel_ratelimit_lua}, NULL);
    assert_string_equal(c.str, keel_ratelimit_lua_sha1);

    /* Pacing on the server's clock: 10/s, burst, then one every 100 ms. */
    for (i = 0; i < 10; i++)
        assert_true(redis_decide(key2, &fast, &noscript).allowed);
    r = redis_decide(key2, &fast, &noscript);
    assert_false(r.allowed);
    assert_true(r.retry_after_ms >= 1 && r.retry_after_ms <= 100);
    usleep((useconds_t)(r.retry_after_ms + 5) * 1000);
    r = redis_decide(key2, &fast, &noscript);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_false(redis_decide(key2, &fast, &noscript).allowed);
    usleep(1100 * 1000); /* whole again: the key is gone */
    c = run_argv(2, (const char *const[]){"EXISTS", key2}, NULL);
    assert_int_equal(c.integer, 0);
    assert_int_equal(redis_decide(key2, &fast, &noscript).remaining, 9);

    run_argv(3, (const char *const[]){"DEL", key, key2}, NULL);
    keel_redis_loop_close(&loop, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    keel_redis_shutdown();
    assert_int_equal(uv_loop_close(&loop), 0);
    keel_log_init(KEEL_LOG_INFO, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_burst_then_deny, setup),
        cmocka_unit_test_setup(test_pacing, setup),
        cmocka_unit_test_setup(test_keys_and_scopes, setup),
        cmocka_unit_test_setup(test_invalid, setup),
        cmocka_unit_test_setup(test_odd_rates, setup),
        cmocka_unit_test_setup(test_threads_one_key, setup),
        cmocka_unit_test_setup(test_eviction_exact_when_room, setup),
        cmocka_unit_test_setup(test_eviction_never_denies_wrongly, setup),
        cmocka_unit_test_setup(test_eviction_prefers_expired, setup),
        cmocka_unit_test_setup(test_headers, setup),
        cmocka_unit_test(test_parse_reply),
        cmocka_unit_test(test_lua_sha1),
        cmocka_unit_test(test_redis_script),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
