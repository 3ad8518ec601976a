/*
 * test_arena.c - unit tests for src/core/arena.c: 16-byte alignment, many
 * small allocations across chunk boundaries, large blocks, the byte budget
 * (and size overflow), deferred cleanups (LIFO, run once, on reset and on
 * destroy), reuse after reset and the string helpers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/arena.h"

#include "test.h"

#define ALIGNED(p) ((((uintptr_t)(p)) & 15u) == 0)

/* Cleanups append their tag to this log so order and count are visible. */
static int g_log[64];
static int g_nlog;

static void log_cleanup(void *p)
{
    int tag = *(int *)p;

    if (g_nlog < (int)KEEL_ARRAY_LEN(g_log))
        g_log[g_nlog++] = tag;
}

static int reset_log(void **state)
{
    (void)state;
    g_nlog = 0;
    memset(g_log, 0, sizeof(g_log));
    return 0;
}

static size_t rounded(size_t n)
{
    n = n ? n : 1;
    return (n + 15) & ~(size_t)15;
}

static void test_alignment_of_odd_sizes(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    static const size_t sizes[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 255, 4095, 4096};
    size_t i, want = 0;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(sizes); i++) {
        char *p = keel_arena_alloc(a, sizes[i]);

        assert_non_null(p);
        assert_true(ALIGNED(p));
        memset(p, 0x5a, sizes[i]); /* writable over its whole size */
        want += rounded(sizes[i]);
        assert_int_equal(keel_arena_used(a), want);
    }
    keel_arena_destroy(a);
}

/* Thousands of small blocks span many 16 KiB chunks; every block keeps its
 * own bytes (no overlap, nothing lost when a new chunk starts). */
static void test_many_small_across_chunks(void **state)
{
    enum { N = 5000 };
    struct keel_arena *a = keel_arena_new(0);
    unsigned char **ptrs = calloc(N, sizeof(*ptrs));
    size_t i, used = 0;

    (void)state;
    assert_non_null(ptrs);
    for (i = 0; i < N; i++) {
        size_t n = 1 + (i * 37) % 200; /* 1..200 bytes, irregular */

        ptrs[i] = keel_arena_alloc(a, n);
        assert_non_null(ptrs[i]);
        assert_true(ALIGNED(ptrs[i]));
        memset(ptrs[i], (int)(i & 0xff), n);
        used += rounded(n);
    }
    assert_true(used > 10 * KEEL_ARENA_CHUNK); /* really crossed chunks */
    assert_int_equal(keel_arena_used(a), used);
    for (i = 0; i < N; i++) {
        size_t n = 1 + (i * 37) % 200, k;

        for (k = 0; k < n; k++)
            assert_int_equal(ptrs[i][k], i & 0xff);
    }
    free(ptrs);
    keel_arena_destroy(a);
}

/* A block that almost fills a chunk, then one that cannot fit in the rest. */
static void test_chunk_tail_boundary(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    char *p, *q, *r;

    (void)state;
    p = keel_arena_alloc(a, 4096);
    q = keel_arena_alloc(a, 4096);
    r = keel_arena_alloc(a, 4096);
    assert_non_null(p);
    assert_non_null(q);
    assert_non_null(r);
    memset(p, 1, 4096);
    memset(q, 2, 4096);
    memset(r, 3, 4096);
    /* A 16 KiB chunk (minus its header) cannot hold a fourth 4 KiB block. */
    char *s = keel_arena_alloc(a, 4096);
    assert_non_null(s);
    assert_true(ALIGNED(s));
    memset(s, 4, 4096);
    assert_int_equal(p[0], 1);
    assert_int_equal(p[4095], 1);
    assert_int_equal(q[4095], 2);
    assert_int_equal(r[4095], 3);
    assert_int_equal(s[0], 4);
    assert_int_equal(keel_arena_used(a), 4 * 4096);
    keel_arena_destroy(a);
}

static void test_large_allocations(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    static const size_t sizes[] = {KEEL_ARENA_LARGE + 1, 5000, 3 * KEEL_ARENA_CHUNK,
                                   KEEL_ARENA_CHUNK, 100000};
    unsigned char *ptrs[KEEL_ARRAY_LEN(sizes)];
    size_t i, k, want = 0;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(sizes); i++) {
        ptrs[i] = keel_arena_alloc(a, sizes[i]);
        assert_non_null(ptrs[i]);
        assert_true(ALIGNED(ptrs[i]));
        memset(ptrs[i], (int)(0x10 + i), sizes[i]);
        want += rounded(sizes[i]);
        /* Small allocations keep working between large ones. */
        assert_non_null(keel_arena_alloc(a, 8));
        want += 16;
    }
    assert_int_equal(keel_arena_used(a), want);
    for (i = 0; i < KEEL_ARRAY_LEN(sizes); i++)
        for (k = 0; k < sizes[i]; k += 97)
            assert_int_equal(ptrs[i][k], 0x10 + i);
    keel_arena_destroy(a);
}

static void test_budget_default(void **state)
{
    struct keel_arena *a = keel_arena_new(0);

    (void)state;
    assert_non_null(keel_arena_alloc(a, KEEL_ARENA_BUDGET - 16));
    assert_non_null(keel_arena_alloc(a, 16));
    assert_int_equal(keel_arena_used(a), KEEL_ARENA_BUDGET);
    assert_null(keel_arena_alloc(a, 1));
    assert_null(keel_arena_alloc(a, 0));
    assert_int_equal(keel_arena_used(a), KEEL_ARENA_BUDGET);
    keel_arena_destroy(a);
}

static void test_budget_exhaustion(void **state)
{
    struct keel_arena *a = keel_arena_new(1000);

    (void)state;
    /* 1000 rounds up to 1008, which is over the budget. */
    assert_null(keel_arena_alloc(a, 1000));
    assert_int_equal(keel_arena_used(a), 0);
    assert_non_null(keel_arena_alloc(a, 992));
    assert_int_equal(keel_arena_used(a), 992);
    assert_null(keel_arena_alloc(a, 1));
    assert_null(keel_arena_calloc(a, 1, 1));
    assert_null(keel_arena_strdup(a, ""));
    assert_null(keel_arena_strndup(a, "abc", 3));
    assert_null(keel_arena_memdup(a, "abc", 3));
    assert_null(keel_arena_sprintf(a, "%d", 42));
    /* A failed call changes nothing. */
    assert_int_equal(keel_arena_used(a), 992);
    keel_arena_destroy(a);

    /* Large blocks count against the budget too. */
    a = keel_arena_new(8192);
    assert_null(keel_arena_alloc(a, 8193));
    assert_non_null(keel_arena_alloc(a, 8192));
    assert_null(keel_arena_alloc(a, 1));
    keel_arena_destroy(a);
}

static void test_set_budget(void **state)
{
    struct keel_arena *a = keel_arena_new(0);

    (void)state;
    assert_non_null(keel_arena_alloc(a, 64));
    keel_arena_set_budget(a, 64);
    assert_null(keel_arena_alloc(a, 1));
    keel_arena_set_budget(a, 32); /* below what is used already */
    assert_null(keel_arena_alloc(a, 1));
    keel_arena_set_budget(a, 128);
    assert_non_null(keel_arena_alloc(a, 64));
    assert_null(keel_arena_alloc(a, 1));
    assert_int_equal(keel_arena_used(a), 128);
    keel_arena_destroy(a);
}

static void test_calloc_zeroes_and_overflow(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    unsigned char *p;
    size_t i;

    (void)state;
    /* Dirty the first chunk, reset, and calloc over the same memory. */
    p = keel_arena_alloc(a, 3000);
    assert_non_null(p);
    memset(p, 0xff, 3000);
    keel_arena_reset(a);
    p = keel_arena_calloc(a, 100, 30);
    assert_non_null(p);
    for (i = 0; i < 3000; i++)
        assert_int_equal(p[i], 0);
    p = keel_arena_calloc(a, 10, 1000); /* large block */
    assert_non_null(p);
    for (i = 0; i < 10000; i++)
        assert_int_equal(p[i], 0);
    assert_non_null(keel_arena_calloc(a, 0, 16));
    assert_non_null(keel_arena_calloc(a, 16, 0));

    i = keel_arena_used(a);
    assert_null(keel_arena_calloc(a, SIZE_MAX / 2 + 1, 2));
    assert_null(keel_arena_calloc(a, 2, SIZE_MAX / 2 + 1));
    assert_null(keel_arena_calloc(a, SIZE_MAX, SIZE_MAX));
    assert_null(keel_arena_calloc(a, (SIZE_MAX >> 32) + 2, (size_t)1 << 32));
    assert_int_equal(keel_arena_used(a), i);
    keel_arena_destroy(a);
}

/* Sizes near SIZE_MAX must fail like any other size over the budget; the
 * rounding to 16 bytes must not wrap them around to a tiny block. */
static void test_huge_sizes_fail(void **state)
{
    struct keel_arena *a = keel_arena_new(0);

    (void)state;
    assert_null(keel_arena_alloc(a, SIZE_MAX / 2));
    assert_null(keel_arena_alloc(a, SIZE_MAX - 16));
    assert_null(keel_arena_alloc(a, SIZE_MAX - 15));
    assert_null(keel_arena_alloc(a, SIZE_MAX - 1));
    assert_null(keel_arena_alloc(a, SIZE_MAX));
    assert_null(keel_arena_strndup(a, "x", SIZE_MAX));
    assert_int_equal(keel_arena_used(a), 0);
    keel_arena_destroy(a);
}

static void test_reset_runs_cleanups_lifo(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    static int tags[] = {1, 2, 3, 4, 5};
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(tags); i++)
        assert_int_equal(keel_arena_defer(a, log_cleanup, &tags[i]), KEEL_OK);
    assert_int_equal(g_nlog, 0); /* nothing runs before the reset */
    keel_arena_reset(a);
    assert_int_equal(g_nlog, 5);
    for (i = 0; i < 5; i++)
        assert_int_equal(g_log[i], 5 - (int)i);

    /* Cleanups run exactly once. */
    keel_arena_reset(a);
    assert_int_equal(g_nlog, 5);
    keel_arena_destroy(a);
    assert_int_equal(g_nlog, 5);
}

static void test_reset_makes_arena_reusable(void **state)
{
    struct keel_arena *a = keel_arena_new(4096 * 4);
    char *p;
    int round;

    (void)state;
    for (round = 0; round < 5; round++) {
        size_t i;

        /* Fill the whole budget with a mix of small and large blocks. */
        p = keel_arena_alloc(a, 5000);
        assert_non_null(p);
        memset(p, round, 5000);
        for (i = 0; i < (4096 * 4 - 5008) / 64; i++)
            assert_non_null(keel_arena_alloc(a, 64));
        assert_null(keel_arena_alloc(a, 64));
        keel_arena_reset(a);
        assert_int_equal(keel_arena_used(a), 0);
    }
    keel_arena_destroy(a);
}

#ifndef KEEL_ARENA_DEBUG
/* Without the debug allocator the first chunk survives a reset and is
 * handed out again from its start. */
static void test_reset_reuses_first_chunk(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    char *first, *again;
    int i;

    (void)state;
    first = keel_arena_alloc(a, 100);
    for (i = 0; i < 100; i++)
        assert_non_null(keel_arena_alloc(a, 1000)); /* several more chunks */
    assert_non_null(keel_arena_alloc(a, 10000));    /* and a large block */
    keel_arena_reset(a);
    again = keel_arena_alloc(a, 100);
    assert_ptr_equal(first, again);
    keel_arena_destroy(a);
}
#endif

static void test_destroy_runs_cleanups(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    static int t1 = 10, t2 = 20, t3 = 30;

    (void)state;
    assert_int_equal(keel_arena_defer(a, log_cleanup, &t1), KEEL_OK);
    keel_arena_reset(a);
    assert_int_equal(g_nlog, 1);
    /* Registered after the reset: these run at destroy, newest first. */
    assert_int_equal(keel_arena_defer(a, log_cleanup, &t2), KEEL_OK);
    assert_int_equal(keel_arena_defer(a, log_cleanup, &t3), KEEL_OK);
    keel_arena_destroy(a);
    assert_int_equal(g_nlog, 3);
    assert_int_equal(g_log[0], 10);
    assert_int_equal(g_log[1], 30);
    assert_int_equal(g_log[2], 20);

    keel_arena_destroy(NULL); /* allowed */
}

/* A cleanup that frees heap memory owned by the arena's user: under ASan a
 * cleanup that did not run shows up as a leak. */
static void test_cleanup_frees_heap(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    int i;

    (void)state;
    for (i = 0; i < 50; i++) {
        void *p = malloc(100);

        assert_non_null(p);
        assert_int_equal(keel_arena_defer(a, free, p), KEEL_OK);
    }
    keel_arena_destroy(a);
}

static void test_defer_past_budget(void **state)
{
    struct keel_arena *a = keel_arena_new(64);
    static int t1 = 1, t2 = 2;
    int n_ok = 0;

    (void)state;
    assert_non_null(keel_arena_alloc(a, 64));
    assert_int_equal(keel_arena_defer(a, log_cleanup, &t1), KEEL_E_NOMEM);
    keel_arena_reset(a);
    assert_int_equal(g_nlog, 0); /* the refused cleanup never runs */

    /* Register until the budget runs out: the accepted ones all run. */
    while (keel_arena_defer(a, log_cleanup, &t2) == KEEL_OK) {
        n_ok++;
        assert_true(n_ok <= 64);
    }
    assert_true(n_ok >= 1);
    assert_int_equal(keel_arena_defer(a, log_cleanup, &t1), KEEL_E_NOMEM);
    keel_arena_destroy(a);
    assert_int_equal(g_nlog, n_ok);
    for (int i = 0; i < g_nlog; i++)
        assert_int_equal(g_log[i], 2);
}

static void test_strdup_strndup(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    const char src[] = "hello, world";
    const char slice[] = {'a', 'b', 'c', 'd', 'e'}; /* not NUL-terminated */
    char *p, big[6000];

    (void)state;
    p = keel_arena_strdup(a, src);
    assert_non_null(p);
    assert_ptr_not_equal(p, src);
    assert_string_equal(p, src);
    assert_true(ALIGNED(p));

    p = keel_arena_strdup(a, "");
    assert_non_null(p);
    assert_string_equal(p, "");

    p = keel_arena_strndup(a, src, 5);
    assert_string_equal(p, "hello");
    p = keel_arena_strndup(a, src, 0);
    assert_non_null(p);
    assert_string_equal(p, "");
    p = keel_arena_strndup(a, slice + 1, 3);
    assert_string_equal(p, "bcd");

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    p = keel_arena_strdup(a, big); /* goes to the large list */
    assert_non_null(p);
    assert_int_equal(strlen(p), sizeof(big) - 1);
    assert_string_equal(p, big);
    keel_arena_destroy(a);
}

static void test_memdup(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    unsigned char src[9000];
    unsigned char *p;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(src); i++)
        src[i] = (unsigned char)(i * 7);
    p = keel_arena_memdup(a, src, 33);
    assert_non_null(p);
    assert_memory_equal(p, src, 33);
    p = keel_arena_memdup(a, src, sizeof(src));
    assert_non_null(p);
    assert_true(ALIGNED(p));
    assert_memory_equal(p, src, sizeof(src));
    /* Zero bytes is not an error: only the budget makes these fail. */
    assert_non_null(keel_arena_memdup(a, src, 0));
    keel_arena_destroy(a);
}

static void test_sprintf(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    char *p;

    (void)state;
    p = keel_arena_sprintf(a, "%s-%d-%05.1f-%c", "id", -42, 3.14159, 'z');
    assert_non_null(p);
    assert_string_equal(p, "id--42-003.1-z");
    p = keel_arena_sprintf(a, "%s", "");
    assert_non_null(p);
    assert_string_equal(p, "");

    /* Longer than a large block. */
    p = keel_arena_sprintf(a, "<%*s>", 5000, "r");
    assert_non_null(p);
    assert_int_equal(strlen(p), 5002);
    assert_int_equal(p[0], '<');
    assert_int_equal(p[1], ' ');
    assert_int_equal(p[5000], 'r');
    assert_int_equal(p[5001], '>');
    keel_arena_destroy(a);

    /* Exactly at the budget: 15 chars + NUL = 16 bytes. */
    a = keel_arena_new(16);
    p = keel_arena_sprintf(a, "%015d", 7);
    assert_non_null(p);
    assert_string_equal(p, "000000000000007");
    assert_null(keel_arena_sprintf(a, "x"));
    keel_arena_reset(a);
    assert_null(keel_arena_sprintf(a, "%016d", 7)); /* 17 bytes */
    keel_arena_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_of_odd_sizes),
        cmocka_unit_test(test_many_small_across_chunks),
        cmocka_unit_test(test_chunk_tail_boundary),
        cmocka_unit_test(test_large_allocations),
        cmocka_unit_test(test_budget_default),
        cmocka_unit_test(test_budget_exhaustion),
        cmocka_unit_test(test_set_budget),
        cmocka_unit_test(test_calloc_zeroes_and_overflow),
        cmocka_unit_test(test_huge_sizes_fail),
        cmocka_unit_test_setup(test_reset_runs_cleanups_lifo, reset_log),
        cmocka_unit_test(test_reset_makes_arena_reusable),
#ifndef KEEL_ARENA_DEBUG
        cmocka_unit_test(test_reset_reuses_first_chunk),
#endif
        cmocka_unit_test_setup(test_destroy_runs_cleanups, reset_log),
        cmocka_unit_test(test_cleanup_frees_heap),
        cmocka_unit_test_setup(test_defer_past_budget, reset_log),
        cmocka_unit_test(test_strdup_strndup),
        cmocka_unit_test(test_memdup),
        cmocka_unit_test(test_sprintf),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
