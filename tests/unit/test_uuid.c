/*
 * test_uuid.c - unit tests for src/core/uuid.c: the UUIDv7 text format
 * (version 7, variant 10xx, lowercase, 36 characters), the timestamp, strict
 * ordering of ids made in a tight loop, uniqueness (one thread and several),
 * formatting of fixed bytes and validation of UUID text.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/core.h"
#include "keel/uuid.h"

#include "test.h"

#define N_IDS 100000

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Checks the v7 layout of one id. */
static void check_v7(const char *id)
{
    size_t i;

    assert_int_equal(strlen(id), KEEL_UUID_STRLEN);
    for (i = 0; i < KEEL_UUID_STRLEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(id[i], '-');
        else if (!is_lower_hex(id[i]))
            fail_msg("not lowercase hex at %zu: %s", i, id);
    }
    assert_int_equal(id[14], '7'); /* version nibble */
    /* variant 10xx: the first nibble of the 4th group is 8, 9, a or b */
    if (!strchr("89ab", id[19]))
        fail_msg("bad variant: %s", id);
    assert_true(keel_uuid_valid(id, KEEL_UUID_STRLEN));
}

/* The 48-bit millisecond timestamp of a v7 id. */
static int64_t v7_ms(const char *id)
{
    char hex[13];

    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    hex[12] = '\0';
    return (int64_t)strtoll(hex, NULL, 16);
}

static void test_v7_format(void **state)
{
    char id[KEEL_UUID_STRLEN + 1];
    int i;

    (void)state;
    for (i = 0; i < 1000; i++) {
        memset(id, 'X', sizeof(id));
        keel_uuid_v7(id);
        assert_int_equal(id[KEEL_UUID_STRLEN], '\0');
        check_v7(id);
    }
}

static void test_v7_timestamp(void **state)
{
    char id[KEEL_UUID_STRLEN + 1];
    int64_t before, after, ms;

    (void)state;
    before = keel_wall_ms();
    keel_uuid_v7(id);
    after = keel_wall_ms();
    ms = v7_ms(id);
    /* The sequence may borrow from the next milliseconds, but not many. */
    assert_true(ms >= before);
    assert_true(ms <= after + 2);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Ids from one thread sort in creation order, as text, even when far more
 * than one id is made per millisecond; the time stays close to the clock. */
static void test_v7_monotonic(void **state)
{
    char(*ids)[KEEL_UUID_STRLEN + 1] = malloc(N_IDS * sizeof(*ids));
    int64_t before, after;
    size_t i;

    (void)state;
    assert_non_null(ids);
    before = keel_wall_ms();
    for (i = 0; i < N_IDS; i++)
        keel_uuid_v7(ids[i]);
    after = keel_wall_ms();
    for (i = 1; i < N_IDS; i++) {
        if (strcmp(ids[i - 1], ids[i]) >= 0)
            fail_msg("not increasing at %zu: %s then %s", i, ids[i - 1], ids[i]);
    }
    check_v7(ids[0]);
    check_v7(ids[N_IDS - 1]);
    assert_true(v7_ms(ids[0]) >= before);
    /* Each millisecond holds at least 4096 - 512 ids before it borrows. */
    assert_true(v7_ms(ids[N_IDS - 1]) <= after + N_IDS / 3584 + 1);
    free(ids);
}

/* Uniqueness does not rely on the ordering: sort and look for neighbours. */
static void test_v7_unique(void **state)
{
    char(*ids)[KEEL_UUID_STRLEN + 1] = malloc(N_IDS * sizeof(*ids));
    size_t i;

    (void)state;
    assert_non_null(ids);
    for (i = 0; i < N_IDS; i++)
        keel_uuid_v7(ids[i]);
    qsort(ids, N_IDS, sizeof(*ids), cmp_str);
    for (i = 1; i < N_IDS; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("duplicate id %s", ids[i]);
    free(ids);
}

#define N_THREADS 4
#define N_PER     25000

static char (*g_all)[KEEL_UUID_STRLEN + 1];

static void *worker(void *arg)
{
    size_t base = (size_t)(uintptr_t)arg * N_PER, i;

    for (i = 0; i < N_PER; i++)
        keel_uuid_v7(g_all[base + i]);
    return NULL;
}

/* Thread-safe: ids from concurrent threads never collide, and each thread's
 * own ids stay ordered. */
static void test_v7_threads(void **state)
{
    pthread_t th[N_THREADS];
    size_t t, i;

    (void)state;
    g_all = malloc((size_t)N_THREADS * N_PER * sizeof(*g_all));
    assert_non_null(g_all);
    for (t = 0; t < N_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, worker, (void *)(uintptr_t)t), 0);
    for (t = 0; t < N_THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    for (t = 0; t < N_THREADS; t++)
        for (i = 1; i < N_PER; i++)
            assert_true(strcmp(g_all[t * N_PER + i - 1], g_all[t * N_PER + i]) < 0);
    qsort(g_all, (size_t)N_THREADS * N_PER, sizeof(*g_all), cmp_str);
    for (i = 1; i < (size_t)N_THREADS * N_PER; i++)
        if (strcmp(g_all[i - 1], g_all[i]) == 0)
            fail_msg("duplicate id across threads %s", g_all[i]);
    for (i = 0; i < (size_t)N_THREADS * N_PER; i += 997)
        check_v7(g_all[i]);
    free(g_all);
    g_all = NULL;
}

/* The random part really varies: over many ids each of the 62 random bits
 * and the low 9 sequence bits take both values. */
static void test_v7_random_bits_vary(void **state)
{
    char id[KEEL_UUID_STRLEN + 1];
    char first[KEEL_UUID_STRLEN + 1];
    bool differs[KEEL_UUID_STRLEN] = {false};
    int i;
    size_t k;

    (void)state;
    keel_uuid_v7(first);
    for (i = 0; i < 2000; i++) {
        keel_uuid_v7(id);
        for (k = 0; k < KEEL_UUID_STRLEN; k++)
            differs[k] |= id[k] != first[k];
    }
    /* Fixed: the dashes and the version. Everything after the variant
     * nibble is random and must change in 2000 draws. */
    assert_false(differs[8]);
    assert_false(differs[13]);
    assert_false(differs[14]);
    for (k = 20; k < KEEL_UUID_STRLEN; k++)
        if (k != 23 && !differs[k])
            fail_msg("random position %zu never changed", k);
}

static void test_format(void **state)
{
    static const uint8_t zero[16] = {0};
    static const uint8_t ff[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t seq[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                    0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
    char out[KEEL_UUID_STRLEN + 1];

    (void)state;
    memset(out, 'X', sizeof(out));
    keel_uuid_format(zero, out);
    assert_string_equal(out, "00000000-0000-0000-0000-000000000000");
    keel_uuid_format(ff, out);
    assert_string_equal(out, "ffffffff-ffff-ffff-ffff-ffffffffffff");
    keel_uuid_format(seq, out);
    assert_string_equal(out, "01234567-89ab-cdef-fedc-ba9876543210");
    assert_true(keel_uuid_valid(out, strlen(out)));
}

static void test_valid_accepts(void **state)
{
    static const char *const good[] = {
        "0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f6",
        "0190A8A0-1C2B-7D3E-8F40-A1B2C3D4E5F6",
        "0190a8A0-1C2b-7d3E-8F40-a1B2c3D4e5F6",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "123e4567-e89b-12d3-a456-426614174000", /* any version: format only */
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(good); i++)
        assert_true(keel_uuid_valid(good[i], strlen(good[i])));
    /* len decides, not the NUL: a valid prefix of a longer string. */
    assert_true(keel_uuid_valid("0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f6/more", 36));
}

static void test_valid_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f",   /* 35 */
        "0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f60", /* 37 */
        "0190a8a01c2b7d3e8f40a1b2c3d4e5f6",      /* no dashes */
        "0190a8a01-c2b-7d3e-8f40-a1b2c3d4e5f6",  /* dash moved */
        "0190a8a0-1c2b7-d3e-8f40-a1b2c3d4e5f6",  /* dash moved */
        "0190a8a0-1c2b-7d3e-8f40a-1b2c3d4e5f6",  /* dash moved */
        "0190a8a0_1c2b_7d3e_8f40_a1b2c3d4e5f6",  /* wrong separator */
        "0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5fg",  /* non-hex */
        "0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f ",  /* space */
        "g190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f6",  /* non-hex first */
        "0190a8a0-1c2b-7d3e-8f40--1b2c3d4e5f6",  /* dash for hex */
        "------------------------------------",
        "{190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f}",
        "0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f\xc3",
        "0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5\xc3\xa9",
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        if (keel_uuid_valid(bad[i], strlen(bad[i])))
            fail_msg("accepted: %s", bad[i]);
    }
    /* An embedded NUL at a hex position. */
    assert_false(keel_uuid_valid("0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5\0"
                                 "6",
                                 36));
    /* The right text with the wrong length. */
    assert_false(keel_uuid_valid("0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f6", 35));
    assert_false(keel_uuid_valid("0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f6", 0));
    assert_false(keel_uuid_valid("0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f6x", 37));
    /* "urn:uuid:" prefix is not canonical text. */
    assert_false(keel_uuid_valid("urn:uuid:0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f6", 45));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v7_format),     cmocka_unit_test(test_v7_timestamp),
        cmocka_unit_test(test_v7_monotonic),  cmocka_unit_test(test_v7_unique),
        cmocka_unit_test(test_v7_threads),    cmocka_unit_test(test_v7_random_bits_vary),
        cmocka_unit_test(test_format),        cmocka_unit_test(test_valid_accepts),
        cmocka_unit_test(test_valid_rejects),
    };

    if (sodium_init() < 0) {
        fprintf(stderr, "sodium_init failed\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
