/*
 * test_throttle.c - login throttling decisions (src/modules/auth/throttle.c):
 * thresholds, doubling delays, caps, and the sliding window that forgets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/modules/auth/auth_int.h"

#define T0 1000000000000LL

static void fail_n(enum throttle_kind k, struct throttle_state *s, int n, int64_t now)
{
    while (n-- > 0)
        auth_throttle_fail(k, s, now);
}

static void test_below_threshold_never_waits(void **state)
{
    struct throttle_state s = {0};
    int i;

    (void)state;
    for (i = 0; i < 4; i++) {
        assert_false(auth_throttle_fail(THROTTLE_ACCOUNT_IP, &s, T0));
        assert_int_equal(auth_throttle_wait(&s, T0), 0);
    }
}

static void test_delays_double_from_the_threshold(void **state)
{
    struct throttle_state s = {0};

    (void)state;
    fail_n(THROTTLE_ACCOUNT_IP, &s, 4, T0);
    assert_true(auth_throttle_fail(THROTTLE_ACCOUNT_IP, &s, T0)); /* 5th */
    assert_int_equal(auth_throttle_wait(&s, T0), 1000);
    assert_true(auth_throttle_fail(THROTTLE_ACCOUNT_IP, &s, T0 + 1000));
    assert_int_equal(auth_throttle_wait(&s, T0 + 1000), 2000);
    assert_true(auth_throttle_fail(THROTTLE_ACCOUNT_IP, &s, T0 + 3000));
    assert_int_equal(auth_throttle_wait(&s, T0 + 3000), 4000);
    /* Waiting it out is enough: the block ends. */
    assert_int_equal(auth_throttle_wait(&s, T0 + 7000), 0);
}

static void test_caps(void **state)
{
    struct throttle_state a = {0}, ai = {0}, ip = {0};

    (void)state;
    fail_n(THROTTLE_ACCOUNT, &a, 100, T0);
    assert_int_equal(auth_throttle_wait(&a, T0), 60 * 1000); /* the owner waits <= 60 s */
    fail_n(THROTTLE_ACCOUNT_IP, &ai, 100, T0);
    assert_int_equal(auth_throttle_wait(&ai, T0), 15 * 60 * 1000);
    fail_n(THROTTLE_IP, &ip, 49, T0);
    assert_int_equal(auth_throttle_wait(&ip, T0), 0);
    fail_n(THROTTLE_IP, &ip, 1000, T0); /* no overflow however many */
    assert_int_equal(auth_throttle_wait(&ip, T0), 15 * 60 * 1000);
}

static void test_window_forgets(void **state)
{
    struct throttle_state s = {0};
    int64_t later = T0 + THROTTLE_WINDOW_MS + 1;

    (void)state;
    fail_n(THROTTLE_ACCOUNT_IP, &s, 4, T0);
    /* Quiet for a whole window: the count starts again. */
    assert_false(auth_throttle_fail(THROTTLE_ACCOUNT_IP, &s, later));
    assert_int_equal(s.failures, 1);
    /* But failures that keep coming keep the count (the window slides). */
    fail_n(THROTTLE_ACCOUNT_IP, &s, 3, later + THROTTLE_WINDOW_MS - 1);
    assert_true(auth_throttle_fail(THROTTLE_ACCOUNT_IP, &s, later + 2 * THROTTLE_WINDOW_MS - 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_below_threshold_never_waits),
        cmocka_unit_test(test_delays_double_from_the_threshold),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_window_forgets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
