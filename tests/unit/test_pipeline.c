/*
 * test_pipeline.c - how keel_pipeline_init builds the pipeline
 * (src/http/pipeline.c, included to reach its arrays): the core list and
 * the modules' middleware merged by order, stable for equal orders, in
 * exactly the order of SPEC section 2; a failing init and too many
 * middleware stop it.
 */
#include <sodium.h>
#include <string.h>

#include "keel/module.h"

#include "../../src/http/pipeline.c"
#include "test.h"

extern const struct keel_module keel_module_auth;

/* SPEC section 2's order, as the single list of src/mw/registry.c had it
 * before authentication and authorization moved into the auth module (the
 * body check split in two: its media type at the head, its parse in the
 * BODY phase, whose first handler is the pipeline's own body reader). */
static const char *const spec_order[] = {
    "errors",       "request_id", "security_headers", "cors",  "body-type", "body",
    "ratelimit_ip", "authn",      "ratelimit_user",   "authz", "validate",  "compress",
    "metrics",      "access_log",
};

static void reset(void)
{
    memset(nphase, 0, sizeof(nphase));
    nfilters = 0;
    nloggers = 0;
}

static int setup(void **state)
{
    (void)state;
    reset();
    return sodium_init() < 0 ? -1 : 0;
}

static const struct keel_middleware *by_name(const char *name)
{
    size_t i;

    for (i = 0; i < keel_nmiddlewares; i++)
        if (strcmp(keel_middlewares[i]->name, name) == 0)
            return keel_middlewares[i];
    for (i = 0; i < keel_module_auth.nmiddleware; i++)
        if (strcmp(keel_module_auth.middleware[i]->name, name) == 0)
            return keel_module_auth.middleware[i];
    fail_msg("no middleware %s", name);
    return NULL;
}

static void test_spec_order_with_the_auth_module(void **state)
{
    unsigned expect_phase[KEEL_PHASE_COUNT] = {[KEEL_PHASE_BODY] = 1};
    unsigned expect_filters = 0, expect_loggers = 0;
    size_t i;

    (void)state;
    assert_int_equal(keel_nmiddlewares + keel_module_auth.nmiddleware, KEEL_ARRAY_LEN(spec_order));
    assert_int_equal(
        keel_pipeline_init(keel_module_auth.middleware, (unsigned)keel_module_auth.nmiddleware),
        KEEL_OK);
    assert_ptr_equal(phases[KEEL_PHASE_BODY][0], read_body);
    for (i = 0; i < KEEL_ARRAY_LEN(spec_order); i++) {
        const struct keel_middleware *m = by_name(spec_order[i]);

        if (m->handler)
            assert_ptr_equal(phases[m->phase][expect_phase[m->phase]++], m->handler);
        if (m->filter)
            assert_ptr_equal(filters[expect_filters++], m->filter);
        if (m->log)
            assert_ptr_equal(loggers[expect_loggers++], m->log);
    }
    for (i = 0; i < KEEL_PHASE_CONTENT; i++)
        assert_int_equal(nphase[i], expect_phase[i]);
    assert_int_equal(nphase[KEEL_PHASE_CONTENT], 1);
    assert_ptr_equal(phases[KEEL_PHASE_CONTENT][0], content);
    assert_int_equal(nfilters, expect_filters);
    assert_int_equal(nloggers, expect_loggers);
}

static keel_status h_a(struct keel_request *req)
{
    (void)req;
    return KEEL_DECLINED;
}

static void test_merge_is_stable(void **state)
{
    static const struct keel_middleware a = {.name = "a", .order = 500, .handler = h_a};
    static const struct keel_middleware b = {.name = "b", .order = 300, .handler = h_a};
    static const struct keel_middleware c = {.name = "c", .order = 500, .handler = h_a};
    static const struct keel_middleware d = {.name = "d", .order = 100, .handler = h_a};
    static const struct keel_middleware e = {.name = "e", .order = 300, .handler = h_a};
    const struct keel_middleware *in[] = {&a, &b, &c, &d, &e};
    const struct keel_middleware *want[] = {&d, &b, &e, &a, &c};
    const struct keel_middleware *list[KEEL_ARRAY_LEN(in)];
    unsigned i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(in); i++)
        insert_ordered(list, i, in[i]);
    for (i = 0; i < KEEL_ARRAY_LEN(in); i++)
        assert_ptr_equal(list[i], want[i]);
}

static unsigned inits_run;

static keel_status init_fails(void)
{
    inits_run++;
    return KEEL_E_UNAVAILABLE;
}

static keel_status init_counts(void)
{
    inits_run++;
    return KEEL_OK;
}

/* A module middleware ordered before the core's first fails: nothing after
 * it is initialized or added. */
static void test_failing_init_stops(void **state)
{
    static const struct keel_middleware bad = {.name = "bad", .order = 1, .init = init_fails};
    static const struct keel_middleware late = {.name = "late", .order = 1, .init = init_counts};
    const struct keel_middleware *extra[] = {&bad, &late};

    (void)state;
    inits_run = 0;
    assert_int_equal(keel_pipeline_init(extra, 2), KEEL_E_UNAVAILABLE);
    assert_int_equal(inits_run, 1);
    assert_int_equal(nphase[KEEL_PHASE_CONTENT], 0);
    assert_int_equal(nfilters, 0);
    assert_int_equal(nloggers, 0);
}

static void test_too_many_middleware(void **state)
{
    static const struct keel_middleware m = {.name = "m", .order = 1, .init = init_counts};
    const struct keel_middleware *extra[KEEL_PIPELINE_MAX_MIDDLEWARE];
    unsigned i, n = KEEL_PIPELINE_MAX_MIDDLEWARE - keel_nmiddlewares + 1;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(extra); i++)
        extra[i] = &m;
    inits_run = 0;
    assert_int_equal(keel_pipeline_init(extra, n), KEEL_E_TOO_LARGE);
    assert_int_equal(inits_run, 0);
}

#define T(f) cmocka_unit_test_setup(f, setup)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_spec_order_with_the_auth_module),
        T(test_merge_is_stable),
        T(test_failing_init_stops),
        T(test_too_many_middleware),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
