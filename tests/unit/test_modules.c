/*
 * test_modules.c - the module registry (src/modules/registry.c, included
 * to reach start_one and the running state): a module's metric families
 * exist before its init and its checks and routes are added after it;
 * failures stop the start at the right step; the started modules'
 * middleware; subcommands by name and in registry order.
 */
#include <string.h>

#include "keel/buf.h"
#include "keel/config.h"
#include "keel/json.h"

#include "../../src/modules/registry.c"
#include "test.h"

static struct keel_metric *m_counter, *m_gauge, *m_latency, *m_sizes;
static bool families_seen_by_init;
static unsigned inits;

static const char *const kind_label[] = {"kind"};
static const double size_bounds[] = {0.5, 2};

static const struct keel_metric_def fake_metrics[] = {
    {.kind = KEEL_METRIC_COUNTER,
     .name = "test_modules_things_total",
     .help = "Things.",
     .nlabels = 1,
     .labels = kind_label,
     .out = &m_counter},
    {.kind = KEEL_METRIC_GAUGE, .name = "test_modules_level", .help = "Level.", .out = &m_gauge},
    {.kind = KEEL_METRIC_HISTOGRAM,
     .name = "test_modules_latency_seconds",
     .help = "Latency.",
     .out = &m_latency},
    {.kind = KEEL_METRIC_HISTOGRAM,
     .name = "test_modules_size_bytes",
     .help = "Sizes.",
     .bounds = size_bounds,
     .nbounds = KEEL_ARRAY_LEN(size_bounds),
     .out = &m_sizes},
};

static keel_status fake_init(const struct keel_config *cfg)
{
    (void)cfg;
    inits++;
    families_seen_by_init = m_counter && m_gauge && m_latency && m_sizes;
    return KEEL_OK;
}

static keel_status fake_check(void *arg, struct keel_json *j)
{
    keel_json_key(j, "arg_is_null");
    keel_json_bool(j, arg == NULL);
    return KEEL_OK;
}

static const struct keel_module_check fake_checks[] = {
    {.name = "test_modules_check", .fn = fake_check, .critical = true},
};

static keel_status h_dummy(struct keel_request *req)
{
    (void)req;
    return KEEL_OK;
}

static const struct keel_route fake_routes[] = {
    {.method = KEEL_HTTP_GET, .pattern = "/test-modules", .handler = h_dummy},
};

static const struct keel_module fake = {
    .name = "fake",
    .init = fake_init,
    .routes = fake_routes,
    .nroutes = KEEL_ARRAY_LEN(fake_routes),
    .checks = fake_checks,
    .nchecks = KEEL_ARRAY_LEN(fake_checks),
    .metrics = fake_metrics,
    .nmetrics = KEEL_ARRAY_LEN(fake_metrics),
};

static struct keel_router *router;
static struct keel_config cfg;

static int setup(void **state)
{
    (void)state;
    inits = 0;
    families_seen_by_init = false;
    m_counter = m_gauge = m_latency = m_sizes = NULL;
    router = keel_router_new();
    return router ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    keel_router_free(router);
    keel_metrics_reset_for_tests();
    return 0;
}

static bool rendered(const char *text)
{
    struct keel_buf b;
    bool found;

    keel_buf_init(&b, 1 << 20);
    assert_int_equal(keel_metrics_render(&b), KEEL_OK);
    found = strstr(b.data, text) != NULL;
    keel_buf_free(&b);
    return found;
}

static void test_start_creates_metrics_then_init_then_checks_and_routes(void **state)
{
    unsigned checks_before = keel_health_count();
    struct keel_match match;
    struct keel_json j;
    struct keel_buf b;
    bool run = false, failed = false, degraded = false;

    (void)state;
    assert_int_equal(start_one(&fake, &cfg, router, &run), KEEL_OK);
    assert_true(run);
    assert_int_equal(inits, 1);
    assert_true(families_seen_by_init);
    assert_true(rendered("# TYPE test_modules_things_total counter"));
    assert_true(rendered("# TYPE test_modules_level gauge"));
    /* Default bounds: keel_metric_latency_buckets, 5 ms to 10 s. */
    assert_true(rendered("test_modules_latency_seconds_bucket{le=\"0.005\"}"));
    assert_true(rendered("test_modules_latency_seconds_bucket{le=\"10\"}"));
    assert_true(rendered("test_modules_size_bytes_bucket{le=\"0.5\"}"));
    assert_false(rendered("test_modules_size_bytes_bucket{le=\"0.005\"}"));

    assert_int_equal(keel_health_count(), checks_before + 1);
    keel_buf_init(&b, 4096);
    keel_json_begin(&j, &b);
    keel_health_run(&j, &failed, &degraded);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_non_null(
        strstr(b.data, "\"test_modules_check\":{\"arg_is_null\":true,\"status\":\"ok\""));
    assert_false(failed);
    assert_false(degraded);
    keel_buf_free(&b);

    keel_router_match(router, KEEL_HTTP_GET, "/test-modules", 13, &match);
    assert_non_null(match.route);
    assert_ptr_equal(match.route->handler, h_dummy);
}

static void test_bad_metric_stops_before_init(void **state)
{
    static const struct keel_metric_def bad[] = {
        {.kind = KEEL_METRIC_COUNTER, .name = "not a name", .help = "x", .out = &m_counter},
    };
    struct keel_module m = fake;
    bool run = false;

    (void)state;
    m.metrics = bad;
    m.nmetrics = 1;
    assert_int_equal(start_one(&m, &cfg, router, &run), KEEL_E_INVALID);
    assert_false(run);
    assert_int_equal(inits, 0);
}

static keel_status failing_init(const struct keel_config *c)
{
    (void)c;
    return KEEL_E_UNAVAILABLE;
}

static void test_failing_init_adds_nothing(void **state)
{
    unsigned checks_before = keel_health_count();
    struct keel_module m = fake;
    struct keel_match match;
    bool run = false;

    (void)state;
    m.init = failing_init;
    assert_int_equal(start_one(&m, &cfg, router, &run), KEEL_E_UNAVAILABLE);
    assert_false(run);
    assert_int_equal(keel_health_count(), checks_before);
    keel_router_match(router, KEEL_HTTP_GET, "/test-modules", 13, &match);
    assert_null(match.route);
}

/* A bad route fails the start after init: the module is running, so
 * keel_modules_stop calls its fini. */
static void test_bad_route_after_init_leaves_it_running(void **state)
{
    static const struct keel_route bad[] = {
        {.method = KEEL_HTTP_GET, .pattern = "no-slash", .handler = h_dummy},
    };
    struct keel_module m = fake;
    bool run = false;

    (void)state;
    m.checks = NULL;
    m.nchecks = 0;
    m.routes = bad;
    assert_true(start_one(&m, &cfg, router, &run) < 0);
    assert_true(run);
}

/* Only running modules contribute; the count says when out was short. */
static void test_middleware_of_running_modules(void **state)
{
    const struct keel_middleware *out[4] = {NULL};
    unsigned auth = 0;

    (void)state;
    while (keel_modules[auth] != &keel_module_auth)
        auth++;
    started = keel_nmodules;
    running[auth] = true;
    assert_int_equal(keel_modules_middleware(out, 4), keel_module_auth.nmiddleware);
    assert_ptr_equal(out[0], keel_module_auth.middleware[0]);
    assert_ptr_equal(out[1], keel_module_auth.middleware[1]);
    memset(out, 0, sizeof(out));
    assert_int_equal(keel_modules_middleware(out, 1), keel_module_auth.nmiddleware);
    assert_ptr_equal(out[0], keel_module_auth.middleware[0]);
    assert_null(out[1]);
    running[auth] = false;
    assert_int_equal(keel_modules_middleware(out, 4), 0);
    started = 0;
    assert_int_equal(keel_modules_middleware(out, 4), 0);
}

static void collect(const struct keel_command *c, void *arg)
{
    struct keel_buf *b = arg;

    assert_int_equal(keel_buf_append(b, c->name, strlen(c->name)), KEEL_OK);
    assert_int_equal(keel_buf_append(b, " ", 1), KEEL_OK);
}

static void test_commands(void **state)
{
    const struct keel_command *c;
    struct keel_buf b;

    (void)state;
    c = keel_modules_command("users");
    assert_non_null(c);
    assert_string_equal(c->name, "users");
    assert_non_null(c->run);
    assert_non_null(keel_modules_command("seed"));
    assert_non_null(keel_modules_command("projections"));
    assert_null(keel_modules_command("serve")); /* built in: main.c's */
    assert_null(keel_modules_command("user"));

    keel_buf_init(&b, 4096);
    keel_modules_each_command(collect, &b);
    assert_int_equal(keel_buf_append(&b, "", 1), KEEL_OK);
    assert_string_equal(b.data, "users seed projections ");
    keel_buf_free(&b);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_start_creates_metrics_then_init_then_checks_and_routes),
        T(test_bad_metric_stops_before_init),
        T(test_failing_init_adds_nothing),
        T(test_bad_route_after_init_leaves_it_running),
        T(test_middleware_of_running_modules),
        T(test_commands),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
