/*
 * test_metrics.c - unit tests for src/obs/metrics.c and src/obs/process.c:
 * sharded updates from many threads add up exactly, label values are escaped
 * and capped, and the exposition passes `promtool check metrics`.
 */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/buf.h"
#include "keel/core.h"
#include "keel/log.h"
#include "keel/metrics.h"

#include "test.h"

static int reset(void **state)
{
    (void)state;
    keel_metrics_reset_for_tests();
    return 0;
}

/* The whole exposition as a heap string; caller frees. */
static char *render(void)
{
    struct keel_buf b;
    char *s;

    keel_buf_init(&b, 64u << 20);
    assert_int_equal(keel_metrics_render(&b), KEEL_OK);
    s = keel_xstrdup(b.data ? b.data : "");
    keel_buf_free(&b);
    return s;
}

/* The value of the sample line `<series> <value>`, or NAN when absent. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);

    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

static size_t count_prefix(const char *text, const char *prefix)
{
    size_t n = 0, len = strlen(prefix);

    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, prefix, len) == 0;
    return n;
}

static void test_counter_basic(void **state)
{
    struct keel_metric *c = keel_metric_counter("t_events_total", "Events.", 0, NULL);
    char *s;

    (void)state;
    assert_non_null(c);
    s = render();
    assert_non_null(strstr(s, "# HELP t_events_total Events.\n# TYPE t_events_total counter\n"));
    assert_true(value_of(s, "t_events_total") == 0);
    free(s);
    keel_metric_add(c, NULL, 1);
    keel_metric_add(c, NULL, 2.5);
    keel_metric_add(c, NULL, -4); /* counters never go down */
    keel_metric_add(c, NULL, NAN);
    keel_metric_set(c, NULL, 100);     /* wrong type: ignored */
    keel_metric_observe(c, NULL, 100); /* wrong type: ignored */
    s = render();
    assert_true(value_of(s, "t_events_total") == 3.5);
    free(s);
}

static void test_registration(void **state)
{
    static const char *const lbl[] = {"method", "route"};
    static const char *const lbl2[] = {"method", "path"};
    static const char *const le[] = {"le"};
    static const char *const dup[] = {"a", "a"};
    static const char *const dunder[] = {"__x"};
    static const double good[] = {0.1, 1};
    static const double bad[] = {1, 0.1};
    static const double inf[] = {0.1, INFINITY};
    struct keel_metric *m;
    int devnull = open("/dev/null", O_WRONLY);

    (void)state;
    /* Rejections log an error line; keep them out of the test output. */
    keel_log_init(KEEL_LOG_ERROR, devnull);
    m = keel_metric_counter("t_req_total", "Requests.", 2, lbl);
    assert_non_null(m);
    assert_ptr_equal(keel_metric_counter("t_req_total", "Requests.", 2, lbl), m);
    assert_null(keel_metric_counter("t_req_total", "Requests.", 2, lbl2));
    assert_null(keel_metric_gauge("t_req_total", "Requests.", 2, lbl));
    assert_null(keel_metric_counter("0bad", "x", 0, NULL));
    assert_null(keel_metric_counter("bad-name", "x", 0, NULL));
    assert_null(keel_metric_counter("", "x", 0, NULL));
    assert_null(keel_metric_counter(NULL, "x", 0, NULL));
    assert_null(keel_metric_counter("t_nohelp_total", NULL, 0, NULL));
    assert_null(keel_metric_counter("process_cpu_seconds_total", "x", 0, NULL));
    assert_null(keel_metric_counter("t_dup_total", "x", 2, dup));
    assert_null(keel_metric_counter("t_dunder_total", "x", 1, dunder));
    assert_null(keel_metric_counter("t_many_total", "x", KEEL_METRIC_MAX_LABELS + 1, lbl));
    assert_null(keel_metric_histogram("t_h", "x", 1, le, good, 2));
    assert_null(keel_metric_histogram("t_h", "x", 0, NULL, bad, 2));
    assert_null(keel_metric_histogram("t_h", "x", 0, NULL, inf, 2));
    assert_null(keel_metric_histogram("t_h", "x", 0, NULL, good, 0));
    assert_null(keel_metric_histogram("t_h", "x", 0, NULL, NULL, 2));
    assert_null(keel_metric_gauge_fn("t_fn", "x", NULL, NULL));
    assert_non_null(keel_metric_histogram("t_h", "x", 1, lbl, good, 2));
    assert_non_null(keel_metric_counter("ns:colon_total", "x", 0, NULL));
    /* NULL families are no-ops. */
    keel_metric_add(NULL, NULL, 1);
    keel_metric_set(NULL, NULL, 1);
    keel_metric_observe(NULL, NULL, 1);
    keel_log_init(KEEL_LOG_INFO, 1);
    close(devnull);
}

static void test_gauges(void **state)
{
    static const char *const q[] = {"queue"};
    struct keel_metric *g = keel_metric_gauge("t_depth", "Depth.", 1, q);
    char *s;

    (void)state;
    keel_metric_set(g, (const char *const[]){"mail"}, 5);
    keel_metric_set(g, (const char *const[]){"mail"}, 7);
    keel_metric_add(g, (const char *const[]){"sms"}, 3);
    keel_metric_add(g, (const char *const[]){"sms"}, -5);
    s = render();
    assert_true(value_of(s, "t_depth{queue=\"mail\"}") == 7);
    assert_true(value_of(s, "t_depth{queue=\"sms\"}") == -2);
    assert_non_null(strstr(s, "# TYPE t_depth gauge\n"));
    free(s);
}

static double read_double(void *arg)
{
    return *(double *)arg;
}

static void test_gauge_fn_build_info_process(void **state)
{
    double x = 42.5;
    char *s;

    (void)state;
    assert_non_null(keel_metric_gauge_fn("t_fn_value", "From a callback.", read_double, &x));
    keel_metrics_set_build_info("1.2.3", "abc\"def");
    s = render();
    assert_true(value_of(s, "t_fn_value") == 42.5);
    assert_true(value_of(s, "keel_build_info{version=\"1.2.3\",commit=\"abc\\\"def\"}") == 1);
    assert_true(value_of(s, "process_cpu_seconds_total") >= 0);
    assert_true(value_of(s, "process_resident_memory_bytes") > 1e5);
    assert_true(value_of(s, "process_virtual_memory_bytes") > 1e5);
    assert_true(value_of(s, "process_open_fds") >= 3);
    assert_true(value_of(s, "process_max_fds") >= value_of(s, "process_open_fds"));
    assert_true(fabs(value_of(s, "process_start_time_seconds") - (double)keel_wall_ms() / 1000) <
                600);
    free(s);
    x = -1;
    s = render();
    assert_true(value_of(s, "t_fn_value") == -1);
    free(s);
}

static void test_histogram(void **state)
{
    static const double b[] = {0.1, 0.5, 1};
    struct keel_metric *h = keel_metric_histogram("t_lat_seconds", "Latency.", 0, NULL, b, 3);
    char *s;

    (void)state;
    keel_metric_observe(h, NULL, 0.1);  /* le is inclusive */
    keel_metric_observe(h, NULL, 0.25); /* 0.5 */
    keel_metric_observe(h, NULL, 0.5);
    keel_metric_observe(h, NULL, 7); /* +Inf only */
    keel_metric_observe(h, NULL, NAN);
    keel_metric_observe(h, NULL, -3); /* first bucket */
    s = render();
    assert_true(value_of(s, "t_lat_seconds_bucket{le=\"0.1\"}") == 2);
    assert_true(value_of(s, "t_lat_seconds_bucket{le=\"0.5\"}") == 4);
    assert_true(value_of(s, "t_lat_seconds_bucket{le=\"1\"}") == 4);
    assert_true(value_of(s, "t_lat_seconds_bucket{le=\"+Inf\"}") == 5);
    assert_true(value_of(s, "t_lat_seconds_count") == 5);
    assert_true(value_of(s, "t_lat_seconds_sum") == 0.1 + 0.25 + 0.5 + 7 - 3);
    assert_non_null(strstr(s, "# TYPE t_lat_seconds histogram\n"));
    free(s);
}

static void test_label_escaping(void **state)
{
    static const char *const l[] = {"v", "w"};
    struct keel_metric *c = keel_metric_counter("t_esc_total", "Help with \\ and\nnewline.", 2, l);
    char *s;

    (void)state;
    keel_metric_add(c, (const char *const[]){"a\"b\\c\nd\xff", NULL}, 1);
    s = render();
    assert_non_null(strstr(s, "# HELP t_esc_total Help with \\\\ and\\nnewline.\n"));
    assert_true(value_of(s, "t_esc_total{v=\"a\\\"b\\\\c\\nd\xef\xbf\xbd\",w=\"\"}") == 1);
    free(s);
}

static void test_label_values_copied_and_capped(void **state)
{
    static const char *const l[] = {"id"};
    struct keel_metric *c = keel_metric_counter("t_card_total", "Cardinality.", 1, l);
    char id[300];
    char *s, *want;
    size_t n = KEEL_METRIC_MAX_SERIES + 500;

    (void)state;
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "id%zu", i);
        keel_metric_add(c, (const char *const[]){id}, 1);
    }
    strcpy(id, "id5"); /* an existing series still counts as itself */
    keel_metric_add(c, (const char *const[]){id}, 1);
    s = render();
    assert_int_equal(count_prefix(s, "t_card_total{"), KEEL_METRIC_MAX_SERIES + 1);
    assert_true(value_of(s, "t_card_total{id=\"id5\"}") == 2);
    assert_true(value_of(s, "t_card_total{id=\"other\"}") == 500);
    assert_true(isnan(value_of(s, "t_card_total{id=\"id2100\"}")));
    free(s);

    /* Long values are cut at KEEL_METRIC_LABEL_MAX bytes. */
    keel_metrics_reset_for_tests();
    c = keel_metric_counter("t_long_total", "Long.", 1, l);
    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    keel_metric_add(c, (const char *const[]){id}, 1);
    id[200] = 'y';
    keel_metric_add(c, (const char *const[]){id}, 1);
    want = keel_xmalloc(KEEL_METRIC_LABEL_MAX + 32);
    snprintf(want, KEEL_METRIC_LABEL_MAX + 32, "t_long_total{id=\"%.*s\"}", KEEL_METRIC_LABEL_MAX,
             id);
    s = render();
    assert_int_equal(count_prefix(s, "t_long_total{"), 1);
    assert_true(value_of(s, want) == 2);
    free(s);
    free(want);
}

/* ---------------------------------------------------- many threads -- */

#define NTHREADS 10 /* 8 with private shards, 2 on the shared shard */
#define NITER    40000

static const char *const routes[] = {"/a", "/b/{id}", "/c"};
static const double vals[] = {0.0625, 0.125, 0.25, 0.75, 2}; /* exact in binary */
static const double bounds[] = {0.125, 0.5, 1};

struct mt {
    struct keel_metric *req, *inflight, *lat;
    atomic_bool done;
};

static void *worker(void *arg)
{
    struct mt *mt = ((void **)arg)[0];
    unsigned id = (unsigned)(uintptr_t)((void **)arg)[1];
    char route[32]; /* dynamic label value: the registry must copy it */

    if (id < 8)
        keel_metrics_thread_init(id);
    for (unsigned i = 0; i < NITER; i++) {
        snprintf(route, sizeof(route), "%s", routes[i % 3]);
        keel_metric_add(mt->inflight, NULL, 1);
        keel_metric_add(mt->req, (const char *const[]){route, "200"}, 1);
        keel_metric_observe(mt->lat, (const char *const[]){route}, vals[i % 5]);
        keel_metric_add(mt->inflight, NULL, -1);
        memset(route, 'Z', sizeof(route) - 1);
    }
    keel_metric_add(mt->inflight, NULL, 1);
    return NULL;
}

static void *scraper(void *arg)
{
    struct mt *mt = arg;
    double last = 0;

    while (!atomic_load(&mt->done)) {
        char *s = render();
        double v = value_of(s, "t_mt_requests_total{route=\"/a\",status=\"200\"}");

        /* Counters never go backwards while being updated. */
        if (!isnan(v)) {
            assert_true(v >= last);
            last = v;
        }
        free(s);
    }
    return NULL;
}

static void test_threads_sum(void **state)
{
    static const char *const l2[] = {"route", "status"};
    static const char *const l1[] = {"route"};
    struct mt mt = {0};
    pthread_t t[NTHREADS], scr;
    void *args[NTHREADS][2];
    char *s, series[128];

    (void)state;
    mt.req = keel_metric_counter("t_mt_requests_total", "Requests.", 2, l2);
    mt.inflight = keel_metric_gauge("t_mt_in_flight", "In flight.", 0, NULL);
    mt.lat = keel_metric_histogram("t_mt_duration_seconds", "Latency.", 1, l1, bounds, 3);
    pthread_create(&scr, NULL, scraper, &mt);
    for (unsigned i = 0; i < NTHREADS; i++) {
        args[i][0] = &mt;
        args[i][1] = (void *)(uintptr_t)i;
        pthread_create(&t[i], NULL, worker, args[i]);
    }
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&mt.done, true);
    pthread_join(scr, NULL);

    s = render();
    assert_true(value_of(s, "t_mt_in_flight") == NTHREADS);
    for (unsigned r = 0; r < 3; r++) {
        uint64_t per[4] = {0}, cum = 0;
        double sum = 0, n = 0;

        for (unsigned i = 0; i < NITER; i++) {
            unsigned k = 0;

            if (i % 3 != r)
                continue;
            while (k < 3 && vals[i % 5] > bounds[k])
                k++;
            per[k]++;
            sum += vals[i % 5];
            n++;
        }
        snprintf(series, sizeof(series), "t_mt_requests_total{route=\"%s\",status=\"200\"}",
                 routes[r]);
        assert_true(value_of(s, series) == n * NTHREADS);
        for (unsigned k = 0; k < 4; k++) {
            cum += per[k];
            if (k < 3)
                snprintf(series, sizeof(series),
                         "t_mt_duration_seconds_bucket{route=\"%s\",le=\"%g\"}", routes[r],
                         bounds[k]);
            else
                snprintf(series, sizeof(series),
                         "t_mt_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"}", routes[r]);
            assert_true(value_of(s, series) == (double)cum * NTHREADS);
        }
        snprintf(series, sizeof(series), "t_mt_duration_seconds_count{route=\"%s\"}", routes[r]);
        assert_true(value_of(s, series) == n * NTHREADS);
        snprintf(series, sizeof(series), "t_mt_duration_seconds_sum{route=\"%s\"}", routes[r]);
        assert_true(value_of(s, series) == sum * NTHREADS);
    }
    /* Shards were merged: each label set appears once. */
    assert_int_equal(count_prefix(s, "t_mt_requests_total{"), 3);
    assert_int_equal(count_prefix(s, "t_mt_duration_seconds_count{"), 3);
    free(s);
}

/* ------------------------------------------------------------ promtool -- */

static double seven(void *arg)
{
    (void)arg;
    return 7;
}

static void test_promtool(void **state)
{
    static const char *const l[] = {"method", "route", "status"};
    static const char *const q[] = {"queue", "state"};
    char path[] = "/tmp/keel_metrics_XXXXXX";
    char cmd[128], out[4096] = "";
    struct keel_metric *c, *g, *h, *h0;
    FILE *f, *p;
    size_t n;
    int fd, rc;
    char *s;

    (void)state;
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        skip();
    c = keel_metric_counter("keel_http_requests_total", "HTTP requests served.", 3, l);
    g = keel_metric_gauge("keel_jobs_queue_depth", "Jobs waiting, by queue and state.", 2, q);
    h = keel_metric_histogram("keel_http_request_duration_seconds", "Request latency.", 2, l,
                              keel_metric_latency_buckets, KEEL_METRIC_LATENCY_NBUCKETS);
    h0 = keel_metric_histogram("keel_db_query_duration_seconds", "Query latency.", 0, NULL,
                               keel_metric_latency_buckets, KEEL_METRIC_LATENCY_NBUCKETS);
    keel_metric_counter("keel_rate_limited_total", "Requests refused by the rate limiter.", 1,
                        (const char *const[]){"scope"}); /* no samples yet */
    keel_metric_gauge_fn("keel_http_connections", "Open connections.", seven, NULL);
    keel_metrics_set_build_info("0.1.0", "deadbeef");
    keel_metric_add(c, (const char *const[]){"GET", "/v1/users/{id}", "200"}, 3);
    keel_metric_add(c, (const char *const[]){"POST", "we\"ird\\\n\xff\t\r", "500"}, 1);
    keel_metric_set(g, (const char *const[]){"mail", "ready"}, 12);
    keel_metric_set(g, (const char *const[]){"mail", "failed"}, NAN);
    keel_metric_observe(h, (const char *const[]){"GET", "/v1/users/{id}"}, 0.012);
    keel_metric_observe(h0, NULL, 1e-9);
    keel_metric_observe(h0, NULL, 1e9);

    s = render();
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs(s, f);
    fclose(f);
    free(s);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    rc = pclose(p);
    unlink(path);
    if (rc != 0 || n != 0)
        fail_msg("promtool check metrics failed (%d): %s", rc, out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_counter_basic, reset),
        cmocka_unit_test_setup(test_registration, reset),
        cmocka_unit_test_setup(test_gauges, reset),
        cmocka_unit_test_setup(test_gauge_fn_build_info_process, reset),
        cmocka_unit_test_setup(test_histogram, reset),
        cmocka_unit_test_setup(test_label_escaping, reset),
        cmocka_unit_test_setup(test_label_values_copied_and_capped, reset),
        cmocka_unit_test_setup(test_threads_sum, reset),
        cmocka_unit_test_setup(test_promtool, reset),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    keel_metrics_reset_for_tests();
    return rc;
}
