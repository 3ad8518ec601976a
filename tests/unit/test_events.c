/*
 * test_events.c - unit tests for the parts of src/events that need no
 * database: the traceparent parser (src/events/trace.c) and the JSON forms
 * of an event and of its metadata (src/events/eventstore.c). The store
 * and the outbox are covered end to end by tests/e2e/test_orders*.py.
 */
#include <stdio.h>
#include <string.h>

#include "keel/arena.h"
#include "keel/buf.h"
#include "keel/events.h"
#include "keel/json.h"

#include "test.h"

#define TRACE  "4bf92f3577b34da6a3ce929d0e0e4736"
#define PARENT "00f067aa0ba902b7"

static bool parse(const char *s, struct keel_trace_context *tc)
{
    return keel_trace_parse(s, strlen(s), tc);
}

/* ------------------------------------------------------------ traceparent */

static void test_trace_valid(void **state)
{
    struct keel_trace_context tc;

    (void)state;
    assert_true(parse("00-" TRACE "-" PARENT "-01", &tc));
    assert_string_equal(tc.trace_id, TRACE);
    assert_string_equal(tc.parent_id, PARENT);
    assert_int_equal(tc.flags, 1);
    assert_true(parse("00-" TRACE "-" PARENT "-ff", &tc));
    assert_int_equal(tc.flags, 0xff);
    /* Versions 01..fe; a later version may carry more fields. */
    assert_true(parse("fe-" TRACE "-" PARENT "-00", &tc));
    assert_true(parse("01-" TRACE "-" PARENT "-00-what-comes-next", &tc));
    assert_string_equal(tc.trace_id, TRACE);
    /* The length is the caller's: trailing bytes past len are not read. */
    assert_true(keel_trace_parse("00-" TRACE "-" PARENT "-01garbage", 55, &tc));
}

static void test_trace_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "00-" TRACE "-" PARENT "-0",                         /* short */
        "ff-" TRACE "-" PARENT "-01",                        /* version ff */
        "0g-" TRACE "-" PARENT "-01",                        /* not hex */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" PARENT "-01", /* uppercase */
        "00-00000000000000000000000000000000-" PARENT "-01", /* zero trace-id */
        "00-" TRACE "-0000000000000000-01",                  /* zero parent-id */
        "00-" TRACE "-" PARENT "-0x",                        /* bad flags */
        "00_" TRACE "-" PARENT "-01",                        /* separator */
        "00-" TRACE "_" PARENT "-01",                        /* separator */
        "00-" TRACE "-" PARENT "_01",                        /* separator */
        "00-" TRACE "-" PARENT "-01-extra",                  /* 00 has no more */
        "01-" TRACE "-" PARENT "-01x",                       /* no "-" after */
    };
    struct keel_trace_context tc;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&tc, 'x', sizeof(tc));
        if (parse(bad[i], &tc))
            fail_msg("accepted: %s", bad[i]);
        assert_string_equal(tc.trace_id, "");
        assert_string_equal(tc.parent_id, "");
        assert_int_equal(tc.flags, 0);
    }
    assert_false(keel_trace_parse(NULL, 0, &tc));
}

/* --------------------------------------------------------------- metadata */

static void test_metadata(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    struct keel_event_meta m = {.request_id = "req-1", .user_id = "u\"1", .trace_id = TRACE};
    const char *s;

    (void)state;
    s = keel_events_metadata(a, &m);
    assert_non_null(s);
    assert_string_equal(s, "{\"request_id\":\"req-1\",\"user_id\":\"u\\\"1\",\"trace_id\":\"" TRACE
                           "\"}");
    m.user_id = NULL;
    m.trace_id = NULL;
    s = keel_events_metadata(a, &m);
    assert_string_equal(s, "{\"request_id\":\"req-1\",\"user_id\":null,\"trace_id\":null}");
    keel_arena_destroy(a);
}

static void test_metadata_too_large(void **state)
{
    struct keel_arena *a = keel_arena_new(0);
    char id[1100];
    struct keel_event_meta m = {.request_id = id};

    (void)state;
    memset(id, 'r', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    assert_null(keel_events_metadata(a, &m));
    keel_arena_destroy(a);
}

/* ----------------------------------------------------------- event JSON */

static void test_event_json(void **state)
{
    struct keel_event ev = {
        .stream_id = "0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f6",
        .version = 2,
        .type = "OrderShipped",
        .data = "{}",
        .metadata = "{\"request_id\":\"r\",\"user_id\":null,\"trace_id\":null}",
        .created_us = 1700000000123456,
    };
    struct keel_json j;
    struct keel_buf b;

    (void)state;
    keel_buf_init(&b, 4096);
    keel_json_begin(&j, &b);
    keel_events_json(&j, &ev);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_true(keel_buf_appendc(&b, '\0') == KEEL_OK);
    assert_string_equal(b.data, "{\"stream_id\":\"0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f6\","
                                "\"version\":2,\"type\":\"OrderShipped\",\"data\":{},"
                                "\"metadata\":{\"request_id\":\"r\",\"user_id\":null,"
                                "\"trace_id\":null},\"created_at\":\"2023-11-14T22:13:20.123Z\"}");
    keel_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_valid), cmocka_unit_test(test_trace_invalid),
        cmocka_unit_test(test_metadata),    cmocka_unit_test(test_metadata_too_large),
        cmocka_unit_test(test_event_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
