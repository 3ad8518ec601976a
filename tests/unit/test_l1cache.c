/*
 * test_l1cache.c - the in-process LRU cache (src/cache/l1.c): hits and
 * misses, TTL on a fake clock, byte budget and LRU eviction, replacement,
 * deletion, oversize entries, and many keys through table growth.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "keel/l1cache.h"

static uint64_t fake_now;

static uint64_t clock_fn(void *arg)
{
    (void)arg;
    return fake_now;
}

static bool get(struct keel_l1 *c, const char *k, char *out, size_t cap)
{
    struct keel_buf b;
    bool hit;

    keel_buf_init(&b, cap);
    hit = keel_l1_get(c, k, strlen(k), &b) == KEEL_OK;
    if (hit) {
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
    }
    keel_buf_free(&b);
    return hit;
}

static void test_hit_miss_ttl(void **state)
{
    struct keel_l1 *c = keel_l1_new(1 << 20, 4, clock_fn, NULL);
    struct keel_l1_stats st;
    char v[64];

    (void)state;
    fake_now = 1000;
    assert_false(get(c, "a", v, sizeof(v)));
    assert_int_equal(keel_l1_set(c, "a", 1, "alpha", 5, 100), KEEL_OK);
    assert_true(get(c, "a", v, sizeof(v)));
    assert_string_equal(v, "alpha");
    fake_now = 1099;
    assert_true(get(c, "a", v, sizeof(v)));
    fake_now = 1100; /* expires at set time + ttl */
    assert_false(get(c, "a", v, sizeof(v)));
    keel_l1_stats(c, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    keel_l1_free(c);
}

static void test_replace_and_delete(void **state)
{
    struct keel_l1 *c = keel_l1_new(1 << 20, 0, clock_fn, NULL);
    struct keel_l1_stats st;
    char v[64];

    (void)state;
    fake_now = 0;
    keel_l1_set(c, "k", 1, "one", 3, 1000);
    keel_l1_set(c, "k", 1, "two!", 4, 1000);
    assert_true(get(c, "k", v, sizeof(v)));
    assert_string_equal(v, "two!");
    keel_l1_stats(c, &st);
    assert_int_equal(st.entries, 1);
    keel_l1_del(c, "k", 1);
    keel_l1_del(c, "absent", 6);
    assert_false(get(c, "k", v, sizeof(v)));
    /* Binary keys: "k\0x" and "k" differ. */
    keel_l1_set(c, "k\0x", 3, "bin", 3, 1000);
    assert_false(get(c, "k", v, sizeof(v)));
    keel_l1_free(c);
}

static void test_budget_evicts_lru(void **state)
{
    /* One shard of 4 KiB: a few 1 KiB values fit. */
    struct keel_l1 *c = keel_l1_new(4096, 1, clock_fn, NULL);
    struct keel_l1_stats st;
    char big[1000], v[1100];

    (void)state;
    fake_now = 0;
    memset(big, 'x', sizeof(big));
    keel_l1_set(c, "a", 1, big, sizeof(big), 10000);
    keel_l1_set(c, "b", 1, big, sizeof(big), 10000);
    keel_l1_set(c, "c", 1, big, sizeof(big), 10000);
    assert_true(get(c, "a", v, sizeof(v))); /* a is now the most recent */
    keel_l1_set(c, "d", 1, big, sizeof(big), 10000);
    keel_l1_stats(c, &st);
    assert_true(st.bytes <= 4096);
    assert_true(st.evictions >= 1);
    assert_false(get(c, "b", v, sizeof(v))); /* b was least recently used */
    assert_true(get(c, "a", v, sizeof(v)));
    assert_true(get(c, "d", v, sizeof(v)));
    keel_l1_free(c);
}

static void test_oversize_refused_and_drops_old(void **state)
{
    struct keel_l1 *c = keel_l1_new(4096, 1, clock_fn, NULL);
    char big[5000], v[64];

    (void)state;
    memset(big, 'y', sizeof(big));
    keel_l1_set(c, "k", 1, "small", 5, 1000);
    assert_int_equal(keel_l1_set(c, "k", 1, big, sizeof(big), 1000), KEEL_E_TOO_LARGE);
    assert_false(get(c, "k", v, sizeof(v))); /* no stale copy left */
    /* A value larger than the caller's buffer reads as a miss. */
    keel_l1_set(c, "m", 1, big, 1000, 1000);
    assert_false(get(c, "m", v, 10));
    keel_l1_free(c);
}

static void test_many_keys(void **state)
{
    struct keel_l1 *c = keel_l1_new(64u << 20, 16, clock_fn, NULL);
    struct keel_l1_stats st;
    char k[32], v[64], want[64];
    int i;

    (void)state;
    fake_now = 0;
    for (i = 0; i < 20000; i++) {
        snprintf(k, sizeof(k), "key-%d", i);
        snprintf(want, sizeof(want), "value-%d", i);
        assert_int_equal(keel_l1_set(c, k, strlen(k), want, strlen(want), 60000), KEEL_OK);
    }
    for (i = 0; i < 20000; i += 997) {
        snprintf(k, sizeof(k), "key-%d", i);
        snprintf(want, sizeof(want), "value-%d", i);
        assert_true(get(c, k, v, sizeof(v)));
        assert_string_equal(v, want);
    }
    keel_l1_stats(c, &st);
    assert_int_equal(st.entries, 20000);
    keel_l1_clear(c);
    keel_l1_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    keel_l1_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_miss_ttl),
        cmocka_unit_test(test_replace_and_delete),
        cmocka_unit_test(test_budget_evicts_lru),
        cmocka_unit_test(test_oversize_refused_and_drops_old),
        cmocka_unit_test(test_many_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
