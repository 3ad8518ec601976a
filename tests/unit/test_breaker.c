/*
 * test_breaker.c - unit tests for src/core/breaker.c with a fake clock:
 * every transition, the min-calls rule, the rolling window, half-open
 * success and failure, the log lines and gauge of each change, and several
 * threads allowing and recording at once.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/breaker.h"
#include "keel/buf.h"
#include "keel/config.h"
#include "keel/core.h"
#include "keel/log.h"
#include "keel/metrics.h"

#include "test.h"

static _Atomic uint64_t fake_now;
static FILE *logf_;

static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return atomic_load(&fake_now);
}

static void advance(uint64_t ms)
{
    atomic_fetch_add(&fake_now, ms);
}

/* Every test starts with a fresh registry, the clock at 1000 s and the log
 * going to a temporary file it can read back. */
static int setup(void **state)
{
    (void)state;
    keel_metrics_reset_for_tests();
    atomic_store(&fake_now, 1000000);
    logf_ = tmpfile();
    assert_non_null(logf_);
    keel_log_init(KEEL_LOG_DEBUG, fileno(logf_));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keel_log_init(KEEL_LOG_INFO, 1);
    fclose(logf_);
    keel_metrics_reset_for_tests();
    return 0;
}

/* The log written so far, as a heap string; caller frees. */
static char *log_text(void)
{
    long n;
    char *s;

    fflush(logf_);
    n = lseek(fileno(logf_), 0, SEEK_END);
    assert_true(n >= 0);
    s = keel_xmalloc((size_t)n + 1);
    assert_int_equal(pread(fileno(logf_), s, (size_t)n, 0), n);
    s[n] = '\0';
    return s;
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The rendered value of keel_circuit_breaker_state{name="<name>"}, or -1. */
static double gauge_of(const char *name)
{
    struct keel_buf b;
    char series[128];
    const char *p;
    double v = -1;

    keel_buf_init(&b, 1 << 20);
    assert_int_equal(keel_metrics_render(&b), KEEL_OK);
    snprintf(series, sizeof(series), "keel_circuit_breaker_state{name=\"%s\"} ", name);
    p = b.data ? strstr(b.data, series) : NULL;
    if (p)
        v = strtod(p + strlen(series), NULL);
    keel_buf_free(&b);
    return v;
}

static struct keel_breaker *fake_breaker(const char *name)
{
    struct keel_breaker_opts o = {.now_ms = fake_clock};

    return keel_breaker_new(name, &o);
}

/* Runs n allowed calls with the given outcome; all must be allowed. */
static void calls(struct keel_breaker *b, unsigned n, bool ok)
{
    while (n--) {
        assert_true(keel_breaker_allow(b));
        keel_breaker_record(b, ok);
    }
}

/* Drives a fresh fake breaker to open: 20 failures. */
static void open_it(struct keel_breaker *b)
{
    calls(b, 20, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
}

static void test_defaults_and_names(void **state)
{
    struct keel_breaker *b = keel_breaker_new("dflt", NULL);
    struct keel_config cfg = {0};
    struct keel_breaker_opts o;

    (void)state;
    assert_string_equal(keel_breaker_name(b), "dflt");
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    assert_true(keel_breaker_allow(b));
    keel_breaker_record(b, true);
    assert_true(gauge_of("dflt") == 0);
    keel_breaker_free(b);
    keel_breaker_free(NULL);

    assert_string_equal(keel_breaker_state_name(KEEL_BREAKER_CLOSED), "closed");
    assert_string_equal(keel_breaker_state_name(KEEL_BREAKER_HALF_OPEN), "half-open");
    assert_string_equal(keel_breaker_state_name(KEEL_BREAKER_OPEN), "open");
    assert_string_equal(keel_breaker_state_name((enum keel_breaker_state)7), "unknown");

    /* A zeroed config keeps the defaults; set fields are converted. */
    keel_breaker_opts_from_config(&o, &cfg);
    assert_true(o.failure_ratio == 0 && o.min_calls == 0 && o.now_ms == NULL);
    cfg.breaker_failure_percent = 25;
    cfg.breaker_min_calls = 4;
    cfg.breaker_window_ms = 2000;
    cfg.breaker_open_ms = 3000;
    cfg.breaker_half_open_calls = 2;
    keel_breaker_opts_from_config(&o, &cfg);
    assert_true(o.failure_ratio == 0.25);
    assert_int_equal(o.min_calls, 4);
    assert_int_equal(o.window_ms, 2000);
    assert_int_equal(o.open_ms, 3000);
    assert_int_equal(o.half_open_calls, 2);
}

static void test_min_calls(void **state)
{
    struct keel_breaker *b = fake_breaker("min");

    (void)state;
    /* 19 failures: 100% failed, but fewer than 20 calls. */
    calls(b, 19, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    /* The 20th opens it. */
    calls(b, 1, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
    keel_breaker_free(b);
}

static void test_ratio(void **state)
{
    struct keel_breaker *b = fake_breaker("ratio");

    (void)state;
    /* 11 ok + 9 failed = 45% of 20: stays closed. */
    calls(b, 11, true);
    calls(b, 9, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    /* 10 failed of 21 = 47.6%: closed; 11 of 22 = 50%: open. */
    calls(b, 1, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    calls(b, 1, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
    keel_breaker_free(b);

    /* Exactly 50% reached by a success as the 20th call also opens. */
    b = fake_breaker("ratio2");
    calls(b, 10, false);
    calls(b, 9, true);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    calls(b, 1, true);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
    keel_breaker_free(b);
}

static void test_custom_opts(void **state)
{
    struct keel_breaker_opts o = {.failure_ratio = 0.3,
                                  .min_calls = 10,
                                  .open_ms = 500,
                                  .half_open_calls = 1,
                                  .now_ms = fake_clock};
    struct keel_breaker *b = keel_breaker_new("custom", &o);

    (void)state;
    /* 3 of 10 = 30% opens (no rounding surprise with 0.3 * 10). */
    calls(b, 7, true);
    calls(b, 3, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
    advance(499);
    assert_false(keel_breaker_allow(b));
    advance(1);
    assert_true(keel_breaker_allow(b));
    assert_false(keel_breaker_allow(b)); /* one trial only */
    keel_breaker_record(b, true);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    keel_breaker_free(b);

    /* Out-of-range ratios fall back to the default 0.5. */
    o = (struct keel_breaker_opts){.failure_ratio = 1.5, .now_ms = fake_clock};
    b = keel_breaker_new("badratio", &o);
    calls(b, 11, true);
    calls(b, 9, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    keel_breaker_free(b);
}

static void test_window_rolls(void **state)
{
    struct keel_breaker *b = fake_breaker("window");

    (void)state;
    /* 15 failures now; 10 s later they have left the window. */
    calls(b, 15, false);
    advance(10000);
    calls(b, 15, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    /* 5 more inside the same window as the last 15: 20 of 20. */
    advance(8999);
    calls(b, 4, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    calls(b, 1, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
    keel_breaker_free(b);

    /* Calls spread over 8.1 s all count: one failure and one success every
     * 0.9 s; the 20th call (a success at 8.1 s) makes 10 of 20 and opens. */
    b = fake_breaker("window2");
    for (int i = 0; i < 10; i++) {
        calls(b, 1, false);
        calls(b, 1, true);
        advance(900);
    }
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
    keel_breaker_free(b);

    b = fake_breaker("window3");
    calls(b, 10, false); /* bucket 0 */
    advance(5000);
    calls(b, 9, true); /* bucket 5: 19 calls */
    advance(5000);     /* bucket 10: bucket 0 has left */
    calls(b, 1, false);
    /* 10 calls in the window (9 ok, 1 failed): below min_calls. */
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    keel_breaker_free(b);
}

static void test_open_half_open_closed(void **state)
{
    struct keel_breaker *b = fake_breaker("cycle");
    char *log;

    (void)state;
    open_it(b);
    assert_true(gauge_of("cycle") == 2);
    /* Open: fail fast for 60 s; late outcomes are ignored. */
    assert_false(keel_breaker_allow(b));
    keel_breaker_record(b, false);
    keel_breaker_record(b, true);
    advance(59999);
    assert_false(keel_breaker_allow(b));
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
    /* 60 s: half-open, three trial calls and no more. */
    advance(1);
    assert_true(keel_breaker_allow(b));
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_HALF_OPEN);
    assert_true(gauge_of("cycle") == 1);
    assert_true(keel_breaker_allow(b));
    assert_true(keel_breaker_allow(b));
    assert_false(keel_breaker_allow(b));
    keel_breaker_record(b, true);
    keel_breaker_record(b, true);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_HALF_OPEN);
    assert_false(keel_breaker_allow(b));
    keel_breaker_record(b, true);
    /* All three succeeded: closed with an empty window. */
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    assert_true(gauge_of("cycle") == 0);
    calls(b, 19, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    keel_breaker_free(b);

    log = log_text();
    assert_int_equal(count_str(log, "\"msg\":\"circuit breaker opened\""), 1);
    assert_int_equal(count_str(log, "\"msg\":\"circuit breaker half-open\""), 1);
    assert_int_equal(count_str(log, "\"msg\":\"circuit breaker closed\""), 1);
    assert_non_null(strstr(log, "\"level\":\"warn\",\"msg\":\"circuit breaker opened\","
                                "\"breaker\":\"cycle\",\"from\":\"closed\",\"to\":\"open\","
                                "\"calls\":20,\"failures\":20"));
    assert_non_null(strstr(log, "\"breaker\":\"cycle\",\"from\":\"open\",\"to\":\"half-open\""));
    assert_non_null(strstr(log, "\"breaker\":\"cycle\",\"from\":\"half-open\",\"to\":\"closed\""));
    free(log);
}

static void test_half_open_failure(void **state)
{
    struct keel_breaker *b = fake_breaker("relapse");
    char *log;

    (void)state;
    open_it(b);
    advance(60000);
    assert_true(keel_breaker_allow(b));
    assert_true(keel_breaker_allow(b));
    keel_breaker_record(b, true);
    keel_breaker_record(b, false); /* one trial fails: open again */
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
    assert_true(gauge_of("relapse") == 2);
    /* The third trial's late success changes nothing. */
    keel_breaker_record(b, true);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
    /* A full new open period from the failure. */
    advance(59999);
    assert_false(keel_breaker_allow(b));
    advance(1);
    assert_true(keel_breaker_allow(b));
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_HALF_OPEN);
    keel_breaker_free(b);

    log = log_text();
    assert_non_null(strstr(log, "\"breaker\":\"relapse\",\"from\":\"half-open\",\"to\":\"open\""));
    assert_int_equal(count_str(log, "\"msg\":\"circuit breaker opened\""), 2);
    free(log);
}

static void test_half_open_unrecorded_trials(void **state)
{
    struct keel_breaker *b = fake_breaker("wedge");

    (void)state;
    open_it(b);
    advance(60000);
    for (int i = 0; i < 3; i++)
        assert_true(keel_breaker_allow(b)); /* never recorded */
    assert_false(keel_breaker_allow(b));
    advance(59999);
    assert_false(keel_breaker_allow(b));
    advance(1);
    /* A new set of trials rather than a breaker stuck half-open. */
    assert_true(keel_breaker_allow(b));
    keel_breaker_record(b, true);
    assert_true(keel_breaker_allow(b));
    keel_breaker_record(b, true);
    assert_true(keel_breaker_allow(b));
    keel_breaker_record(b, true);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    keel_breaker_free(b);
}

static void test_real_clock(void **state)
{
    struct keel_breaker_opts o = {.min_calls = 1, .open_ms = 20};
    struct keel_breaker *b = keel_breaker_new("realclock", &o);

    (void)state;
    calls(b, 1, false);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);
    assert_false(keel_breaker_allow(b));
    usleep(30 * 1000);
    assert_true(keel_breaker_allow(b));
    keel_breaker_free(b);
}

/* --------------------------------------------------------- concurrency */

#define NTHREADS   8
#define PER_THREAD 20000

struct worker {
    pthread_t t;
    struct keel_breaker *b;
    int mode;
    unsigned allowed;
    _Atomic int *go;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    while (!atomic_load(w->go))
        ;
    for (unsigned i = 0; i < PER_THREAD; i++) {
        bool ok;

        if (!keel_breaker_allow(w->b))
            continue;
        w->allowed++;
        switch (w->mode) {
        case 0: /* every third call fails: never 50%, whatever the interleaving */
            ok = i % 3 != 2;
            break;
        case 1: /* failures only */
            ok = false;
            break;
        default: /* half-open race: trials are not recorded */
            continue;
        }
        keel_breaker_record(w->b, ok);
    }
    return NULL;
}

static unsigned run_workers(struct keel_breaker *b, int mode)
{
    struct worker w[NTHREADS];
    _Atomic int go = 0;
    unsigned total = 0;

    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){.b = b, .mode = mode, .go = &go};
        assert_int_equal(pthread_create(&w[i].t, NULL, worker_main, &w[i]), 0);
    }
    atomic_store(&go, 1);
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(w[i].t, NULL);
        total += w[i].allowed;
    }
    return total;
}

static void test_threads(void **state)
{
    struct keel_breaker *b = fake_breaker("threads");
    char *log;

    (void)state;
    /* Mixed outcomes below the ratio: every call allowed, never opens. */
    assert_int_equal(run_workers(b, 0), NTHREADS * PER_THREAD);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_CLOSED);
    advance(20000); /* empty the window */

    /* Failures from every thread: it opens exactly once, after which
     * calls fail fast. */
    assert_true(run_workers(b, 1) < NTHREADS * PER_THREAD);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_OPEN);

    /* Half-open: exactly three trial calls among all threads. */
    advance(60000);
    assert_int_equal(run_workers(b, 2), 3);
    assert_int_equal(keel_breaker_state(b), KEEL_BREAKER_HALF_OPEN);
    keel_breaker_free(b);

    log = log_text();
    assert_int_equal(count_str(log, "\"msg\":\"circuit breaker opened\""), 1);
    assert_int_equal(count_str(log, "\"msg\":\"circuit breaker half-open\""), 1);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_opts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_rolls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_half_open_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_open_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_open_unrecorded_trials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
