/*
 * test_schema.c - unit tests for src/http/schema.c (keel_schema_validate)
 * and src/mw/validate.c (the VALIDATE-phase middleware).
 *
 * Bodies are parsed with keel_json_parse, as the body middleware does, and
 * checked against static schemas on a hand-built request with its own
 * arena. Each case asserts the exact list of (field, message) pairs, in
 * order, so the messages documented in include/keel/schema.h are pinned:
 * every type, string length in code points, integer-only ints and int64
 * edges, the three formats, enumerations, unknown / read-only / required
 * fields, null handling, require_one, nested paths, array counts, several
 * errors at once, the error cap, truncated paths, malformed schemas, arena
 * exhaustion, and that no submitted value is ever echoed.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/arena.h"
#include "keel/buf.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/problem.h"
#include "keel/schema.h"

#include "test.h"

extern const struct keel_middleware keel_mw_validate;

static struct keel_request g_req;

static int setup(void **state)
{
    (void)state;
    memset(&g_req, 0, sizeof(g_req));
    g_req.arena = keel_arena_new(0);
    g_req.path = KEEL_STR("/api/v1/things");
    snprintf(g_req.request_id, sizeof(g_req.request_id), "%s", "req-schema-test");
    keel_buf_init(&g_req.resp.body, 1 << 20);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keel_buf_free(&g_req.resp.body);
    keel_arena_destroy(g_req.arena);
    return 0;
}

/* Forgets the previous case's errors (several cases run in one test). */
static void reset_req(void)
{
    keel_arena_reset(g_req.arena);
    g_req.rc = KEEL_OK;
    g_req.problem_status = 0;
    g_req.problem_slug = NULL;
    g_req.problem_detail = NULL;
    g_req.internal_detail = NULL;
    g_req.problem_fields = NULL;
    g_req.nproblem_fields = 0;
}

static struct json_object *parse(const char *text)
{
    struct json_object *o;
    const char *why;

    if (keel_json_parse(text, strlen(text), KEEL_JSON_MAX_DEPTH, &o, &why) != KEEL_OK)
        fail_msg("test body does not parse (%s): %s", why, text);
    return o;
}

/* Validates `text` against s on a fresh request; returns the status. */
static keel_status run(const struct keel_schema *s, const char *text)
{
    struct json_object *o;
    keel_status rc;

    reset_req();
    o = parse(text);
    rc = keel_schema_validate(&g_req, s, o);
    json_object_put(o);
    return rc;
}

/* Prints what was reported, to make a failing case readable. */
static void dump(const char *text)
{
    unsigned i;

    print_error("body: %s\n", text);
    for (i = 0; i < g_req.nproblem_fields; i++)
        print_error("  [%u] \"%s\": %s\n", i, g_req.problem_fields[i].field,
                    g_req.problem_fields[i].message);
}

static void expect_ok(const struct keel_schema *s, const char *text)
{
    keel_status rc = run(s, text);

    if (rc != KEEL_OK)
        dump(text);
    assert_int_equal(rc, KEEL_OK);
    assert_int_equal(g_req.nproblem_fields, 0);
    assert_int_equal(g_req.rc, KEEL_OK);
    assert_int_equal(g_req.problem_status, 0);
}

/* Expects exactly the NULL-terminated (field, message) pairs, in order. */
static void expect_errors(const struct keel_schema *s, const char *text, const char *const *pairs)
{
    keel_status rc = run(s, text);
    unsigned i, n = 0;

    while (pairs[2 * n])
        n++;
    if (rc != KEEL_E_INVALID || g_req.nproblem_fields != n)
        dump(text);
    assert_int_equal(rc, KEEL_E_INVALID);
    assert_int_equal(g_req.nproblem_fields, n);
    for (i = 0; i < n; i++) {
        if (strcmp(g_req.problem_fields[i].field, pairs[2 * i]) != 0 ||
            strcmp(g_req.problem_fields[i].message, pairs[2 * i + 1]) != 0)
            dump(text);
        assert_string_equal(g_req.problem_fields[i].field, pairs[2 * i]);
        assert_string_equal(g_req.problem_fields[i].message, pairs[2 * i + 1]);
    }
    assert_int_equal(g_req.rc, KEEL_E_INVALID);
    assert_int_equal(g_req.problem_status, 400);
    assert_string_equal(g_req.problem_slug, "validation-error");
}

static void
expect_one(const struct keel_schema *s, const char *text, const char *field, const char *message)
{
    const char *const pairs[] = {field, message, NULL};

    expect_errors(s, text, pairs);
}

/* A schema with a single field named "v". */
#define ONE_FIELD(name_, ...)                                                                      \
    static const struct keel_schema_field name_##_fields[] = {{.name = "v", __VA_ARGS__}};         \
    static const struct keel_schema name_ = {name_##_fields, 1, false}

/* ------------------------------------------------------------- strings */

static void test_string_type(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_STRING);
    static const char *const bad[] = {
        "{\"v\":1}",  "{\"v\":1.5}", "{\"v\":true}",    "{\"v\":false}",
        "{\"v\":{}}", "{\"v\":[]}",  "{\"v\":[\"a\"]}",
    };
    size_t i;

    (void)state;
    expect_ok(&s, "{\"v\":\"\"}");
    expect_ok(&s, "{\"v\":\"text\"}");
    expect_ok(&s, "{}");
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++)
        expect_one(&s, bad[i], "v", "must be a string");
    expect_one(&s, "{\"v\":null}", "v", "must not be null");
}

/* Lengths count code points: 2-, 3- and 4-byte UTF-8 each count as one. */
static void test_string_length_code_points(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_STRING, .min = 2, .max = 4);
    ONE_FIELD(one, .type = KEEL_SCHEMA_STRING, .min = 1, .max = 1);

    (void)state;
    expect_ok(&s, "{\"v\":\"ab\"}");
    expect_ok(&s, "{\"v\":\"abcd\"}");
    expect_ok(&s, "{\"v\":\"\xc3\xa9\xc3\xa9\"}");                     /* éé: 4 bytes */
    expect_ok(&s, "{\"v\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}");     /* 8 bytes */
    expect_ok(&s, "{\"v\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}"); /* €€€ */
    expect_ok(&s, "{\"v\":\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"}");     /* two emoji */
    expect_ok(&s, "{\"v\":\"\\u00e9\\u00e9\\u00e9\"}");                /* escapes */
    expect_ok(&s, "{\"v\":\"\\ud83d\\ude00\\ud83d\\ude00\"}");         /* surrogate pairs */
    expect_one(&s, "{\"v\":\"a\"}", "v", "must be at least 2 characters");
    expect_one(&s, "{\"v\":\"\"}", "v", "must be at least 2 characters");
    expect_one(&s, "{\"v\":\"\xf0\x9f\x98\x80\"}", "v", "must be at least 2 characters");
    expect_one(&s, "{\"v\":\"abcde\"}", "v", "must be at most 4 characters");
    expect_one(&s, "{\"v\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}", "v",
               "must be at most 4 characters");
    /* Singular unit. */
    expect_one(&one, "{\"v\":\"\"}", "v", "must be at least 1 character");
    expect_one(&one, "{\"v\":\"ab\"}", "v", "must be at most 1 character");
    expect_ok(&one, "{\"v\":\"\xf0\x9f\x98\x80\"}");
}

/* max 0 means no upper limit; a minimum alone still applies. */
static void test_string_no_max(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_STRING, .min = 3);
    char *big;
    size_t n = 100000;

    (void)state;
    big = malloc(n + 16);
    assert_non_null(big);
    memcpy(big, "{\"v\":\"", 6);
    memset(big + 6, 'x', n);
    memcpy(big + 6 + n, "\"}", 3);
    expect_ok(&s, big);
    free(big);
    expect_one(&s, "{\"v\":\"ab\"}", "v", "must be at least 3 characters");
}

/* U+0000 would cut the value short for every C string API downstream. */
static void test_string_nul(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_STRING, .max = 10);

    (void)state;
    expect_one(&s, "{\"v\":\"a\\u0000b\"}", "v", "must not contain NUL characters");
    expect_one(&s, "{\"v\":\"\\u0000\"}", "v", "must not contain NUL characters");
    expect_ok(&s, "{\"v\":\"a\\u0001b\"}");
}

/* ------------------------------------------------------------ integers */

static void test_int_type(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_INT);
    static const char *const bad[] = {
        "{\"v\":1.0}",  "{\"v\":1.5}",   "{\"v\":1e2}", "{\"v\":-0.0}", "{\"v\":\"1\"}",
        "{\"v\":true}", "{\"v\":false}", "{\"v\":[1]}", "{\"v\":{}}",   "{\"v\":1E0}",
    };
    size_t i;

    (void)state;
    expect_ok(&s, "{\"v\":0}");
    expect_ok(&s, "{\"v\":-0}");
    expect_ok(&s, "{\"v\":42}");
    expect_ok(&s, "{\"v\":-42}");
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++)
        expect_one(&s, bad[i], "v", "must be an integer");
    expect_one(&s, "{\"v\":null}", "v", "must not be null");
}

static void test_int_range(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_INT, .min = 1, .max = 100);
    ONE_FIELD(neg, .type = KEEL_SCHEMA_INT, .min = -10, .max = -1);
    ONE_FIELD(pos, .type = KEEL_SCHEMA_INT, .min = 1, .max = INT64_MAX);

    (void)state;
    expect_ok(&s, "{\"v\":1}");
    expect_ok(&s, "{\"v\":50}");
    expect_ok(&s, "{\"v\":100}");
    expect_one(&s, "{\"v\":0}", "v", "must be at least 1");
    expect_one(&s, "{\"v\":-5}", "v", "must be at least 1");
    expect_one(&s, "{\"v\":101}", "v", "must be at most 100");
    expect_one(&s, "{\"v\":9223372036854775807}", "v", "must be at most 100");
    expect_one(&s, "{\"v\":-9223372036854775808}", "v", "must be at least 1");
    expect_ok(&neg, "{\"v\":-10}");
    expect_ok(&neg, "{\"v\":-1}");
    expect_one(&neg, "{\"v\":0}", "v", "must be at most -1");
    expect_one(&neg, "{\"v\":-11}", "v", "must be at least -10");
    expect_ok(&pos, "{\"v\":9223372036854775807}");
    expect_one(&pos, "{\"v\":0}", "v", "must be at least 1");
}

/* Both bounds 0: any int64. Values past INT64_MAX are refused although
 * json-c clamps them (see the header on INT64_MIN). */
static void test_int64_limits(void **state)
{
    ONE_FIELD(any, .type = KEEL_SCHEMA_INT);
    ONE_FIELD(full, .type = KEEL_SCHEMA_INT, .min = INT64_MIN, .max = INT64_MAX);

    (void)state;
    expect_ok(&any, "{\"v\":9223372036854775807}");
    expect_ok(&any, "{\"v\":-9223372036854775808}");
    expect_ok(&any, "{\"v\":9007199254740993}");
    expect_one(&any, "{\"v\":9223372036854775808}", "v", "is out of range");
    expect_one(&any, "{\"v\":18446744073709551615}", "v", "is out of range");
    expect_one(&any, "{\"v\":99999999999999999999999999}", "v", "is out of range");
    expect_ok(&full, "{\"v\":9223372036854775807}");
    expect_ok(&full, "{\"v\":-9223372036854775808}");
    expect_ok(&full, "{\"v\":0}");
    expect_one(&full, "{\"v\":9223372036854775808}", "v", "must be at most 9223372036854775807");
}

/* -------------------------------------------------------------- booleans */

static void test_bool(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_BOOL);
    static const char *const bad[] = {
        "{\"v\":0}",         "{\"v\":1}",  "{\"v\":\"true\"}",
        "{\"v\":\"false\"}", "{\"v\":[]}", "{\"v\":{}}",
    };
    size_t i;

    (void)state;
    expect_ok(&s, "{\"v\":true}");
    expect_ok(&s, "{\"v\":false}");
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++)
        expect_one(&s, bad[i], "v", "must be a boolean");
    expect_one(&s, "{\"v\":null}", "v", "must not be null");
}

/* --------------------------------------------------------------- formats */

/* Wraps a string value into {"v": "<value>"}; value is JSON-escaped text. */
static void expect_str(const struct keel_schema *s, const char *value, const char *message)
{
    char body[512];

    snprintf(body, sizeof(body), "{\"v\":\"%s\"}", value);
    if (message)
        expect_one(s, body, "v", message);
    else
        expect_ok(s, body);
}

static void test_format_email(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_STRING, .max = 320, .format = KEEL_FMT_EMAIL);
    static const char *const good[] = {
        "a@b.co",
        "alice@example.com",
        "Alice.Smith+tag@mail.example.org",
        "x_y-z@sub.domain.example",
        "\\u00e9l\\u00e8ve@\\u00e9cole.fr", /* JSON escapes: UTF-8 is allowed */
        "o'brien@example.ie",
    };
    static const char *const bad[] = {
        "",
        "plain",
        "@example.com",
        "alice@",
        "alice@example",
        "alice@@example.com",
        "a@b@example.com",
        "alice @example.com",
        "alice@exa mple.com",
        " alice@example.com",
        "alice@example.com ",
        "alice@.example.com",
        "alice@example.com.",
        "alice@example..com",
        "alice\\t@example.com",
        "alice\\n@example.com",
        "alice\\u007f@example.com",
        "alice@.",
    };
    char long_ok[300], long_bad[320];
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(good); i++)
        expect_str(&s, good[i], NULL);
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++)
        expect_str(&s, bad[i], "must be a valid email address");
    /* 254 bytes is the limit: 64 + '@' + 189-byte domain ending in ".com". */
    memset(long_ok, 'a', 64);
    long_ok[64] = '@';
    memset(long_ok + 65, 'b', 185);
    memcpy(long_ok + 250, ".com", 5);
    assert_int_equal(strlen(long_ok), 254);
    expect_str(&s, long_ok, NULL);
    snprintf(long_bad, sizeof(long_bad), "a%s", long_ok);
    assert_int_equal(strlen(long_bad), 255);
    expect_str(&s, long_bad, "must be a valid email address");
}

static void test_format_uuid(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_STRING, .format = KEEL_FMT_UUID);
    static const char *const good[] = {
        "0190a8a0-1c2b-7def-8abc-0123456789ab",
        "0190A8A0-1C2B-7DEF-8ABC-0123456789AB",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
    };
    static const char *const bad[] = {
        "",
        "0190a8a0-1c2b-7def-8abc-0123456789a",
        "0190a8a0-1c2b-7def-8abc-0123456789abc",
        "0190a8a01c2b7def8abc0123456789ab",
        "0190a8a0-1c2b-7def-8abc_0123456789ab",
        "0190a8a0-1c2b-7def-8abc-0123456789ag",
        "{0190a8a0-1c2b-7def-8abc-0123456789ab}",
        "0190a8a-01c2b-7def-8abc-0123456789ab",
        " 0190a8a0-1c2b-7def-8abc-0123456789a",
        "not-a-uuid",
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(good); i++)
        expect_str(&s, good[i], NULL);
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++)
        expect_str(&s, bad[i], "must be a valid UUID");
}

static void test_format_currency(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_STRING, .format = KEEL_FMT_CURRENCY);
    static const char *const good[] = {"EUR", "USD", "JPY", "XXX"};
    static const char *const bad[] = {"", "eur", "Eur", "EU", "EURO", "E1R", "EU ", "\xc3\x89UR"};
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(good); i++)
        expect_str(&s, good[i], NULL);
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++)
        expect_str(&s, bad[i], "must be a three-letter currency code");
}

/* The length is checked before the format, and only one error is given. */
static void test_length_before_format(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_STRING, .min = 5, .max = 10, .format = KEEL_FMT_EMAIL);

    (void)state;
    expect_str(&s, "abc", "must be at least 5 characters");
    expect_str(&s, "alice@example.com", "must be at most 10 characters");
    expect_str(&s, "abcdefg", "must be a valid email address");
    expect_str(&s, "a@b.cd", NULL);
}

/* ---------------------------------------------------------- enumerations */

static const char *const statuses[] = {"pending", "paid", "shipped", NULL};

static void test_enum(void **state)
{
    ONE_FIELD(s, .type = KEEL_SCHEMA_STRING, .enum_values = statuses);
    static const char *const bad[] = {"", "PAID", "Paid", "pend", "paidx", "paid ", "pai\\u0064x"};
    size_t i;

    (void)state;
    expect_str(&s, "pending", NULL);
    expect_str(&s, "paid", NULL);
    expect_str(&s, "shipped", NULL);
    expect_str(&s, "pai\\u0064", NULL); /* the same string, escaped */
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++)
        expect_str(&s, bad[i], "must be one of: pending, paid, shipped");
    expect_one(&s, "{\"v\":1}", "v", "must be a string");
}

/* A list too long for a short message is summarized. */
static void test_enum_long_list(void **state)
{
    static const char *const many[] = {
        "alpha-alpha-alpha-alpha",
        "bravo-bravo-bravo-bravo",
        "charlie-charlie-charlie",
        "delta-delta-delta-delta",
        "echo-echo-echo-echo-echo",
        "foxtrot-foxtrot-foxtrot",
        "golf-golf-golf-golf-golf",
        "hotel-hotel-hotel-hotel",
        "india-india-india-india",
        "juliett-juliett-juliett",
        "kilo-kilo-kilo-kilo-kilo-kilo",
        "lima-lima-lima-lima-lima",
        NULL,
    };
    ONE_FIELD(s, .type = KEEL_SCHEMA_STRING, .enum_values = many);

    (void)state;
    expect_str(&s, "lima-lima-lima-lima-lima", NULL);
    expect_str(&s, "zulu", "must be one of the allowed values");
}

/* ---------------------------------------- unknown, read-only, required */

static const struct keel_schema_field user_fields[] = {
    {.name = "id", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SF_READ_ONLY},
    {.name = "email",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_REQUIRED,
     .max = 254,
     .format = KEEL_FMT_EMAIL},
    {.name = "name", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SF_REQUIRED, .min = 1, .max = 100},
    {.name = "role", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SF_READ_ONLY},
    {.name = "age", .type = KEEL_SCHEMA_INT, .min = 0, .max = 150},
};
static const struct keel_schema user = {user_fields, KEEL_ARRAY_LEN(user_fields), false};

static void test_unknown_field(void **state)
{
    static const char *const two[] = {"isAdmin", "is not allowed", "x", "is not allowed", NULL};

    (void)state;
    expect_ok(&user, "{\"email\":\"a@b.co\",\"name\":\"A\"}");
    expect_one(&user, "{\"email\":\"a@b.co\",\"name\":\"A\",\"isAdmin\":true}", "isAdmin",
               "is not allowed");
    /* Unknown members are refused whatever their value, null included. */
    expect_one(&user, "{\"email\":\"a@b.co\",\"name\":\"A\",\"extra\":null}", "extra",
               "is not allowed");
    /* Document order; names are case-sensitive. */
    expect_errors(&user, "{\"isAdmin\":1,\"email\":\"a@b.co\",\"name\":\"A\",\"x\":{}}", two);
    expect_one(&user, "{\"Email\":\"a@b.co\",\"email\":\"a@b.co\",\"name\":\"A\"}", "Email",
               "is not allowed");
}

static void test_read_only(void **state)
{
    static const char *const both[] = {"id", "is read-only", "role", "is read-only", NULL};

    (void)state;
    expect_one(&user, "{\"email\":\"a@b.co\",\"name\":\"A\",\"role\":\"admin\"}", "role",
               "is read-only");
    /* Refused even when null or of the wrong type. */
    expect_one(&user, "{\"email\":\"a@b.co\",\"name\":\"A\",\"role\":null}", "role",
               "is read-only");
    expect_one(&user, "{\"email\":\"a@b.co\",\"name\":\"A\",\"id\":5}", "id", "is read-only");
    expect_errors(&user, "{\"role\":\"admin\",\"email\":\"a@b.co\",\"name\":\"A\",\"id\":\"x\"}",
                  both);
}

static void test_required(void **state)
{
    static const char *const both[] = {"email", "is required", "name", "is required", NULL};

    (void)state;
    expect_errors(&user, "{}", both);
    expect_errors(&user, "{\"age\":30}", both);
    expect_one(&user, "{\"email\":\"a@b.co\"}", "name", "is required");
    expect_one(&user, "{\"name\":\"A\"}", "email", "is required");
    /* Present but null is not "missing": it is a null error. */
    expect_one(&user, "{\"email\":null,\"name\":\"A\"}", "email", "must not be null");
    /* Optional fields may be absent. */
    expect_ok(&user, "{\"email\":\"a@b.co\",\"name\":\"A\",\"age\":0}");
}

/* ----------------------------------------------------------------- null */

static const char *const colors[] = {"red", "green", NULL};
static const struct keel_schema_field point_fields[] = {
    {.name = "x", .type = KEEL_SCHEMA_INT, .flags = KEEL_SF_REQUIRED},
};
static const struct keel_schema point = {point_fields, 1, false};
static const struct keel_schema_field nullable_item = {
    .type = KEEL_SCHEMA_INT, .flags = KEEL_SF_NULLABLE, .min = 1, .max = 9};
static const struct keel_schema_field plain_item = {.type = KEEL_SCHEMA_INT, .min = 1, .max = 9};

static const struct keel_schema_field nullable_fields[] = {
    {.name = "s",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_NULLABLE,
     .min = 1,
     .format = KEEL_FMT_EMAIL},
    {.name = "i", .type = KEEL_SCHEMA_INT, .flags = KEEL_SF_NULLABLE, .min = 1, .max = 2},
    {.name = "b", .type = KEEL_SCHEMA_BOOL, .flags = KEEL_SF_NULLABLE},
    {.name = "o", .type = KEEL_SCHEMA_OBJECT, .flags = KEEL_SF_NULLABLE, .object = &point},
    {.name = "a",
     .type = KEEL_SCHEMA_ARRAY,
     .flags = KEEL_SF_NULLABLE,
     .min = 1,
     .items = &plain_item},
    {.name = "e",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_NULLABLE | KEEL_SF_REQUIRED,
     .enum_values = colors},
    {.name = "n", .type = KEEL_SCHEMA_ARRAY, .items = &nullable_item},
    {.name = "p", .type = KEEL_SCHEMA_ARRAY, .items = &plain_item},
};
static const struct keel_schema nullables = {nullable_fields, KEEL_ARRAY_LEN(nullable_fields),
                                             false};

static void test_null_handling(void **state)
{
    static const char *const nulls[] = {"n", "must not be null", "p", "must not be null", NULL};
    static const char *const elems[] = {"n[1]", "must be at least 1", "p[1]", "must not be null",
                                        NULL};

    (void)state;
    /* Every nullable type takes null, and null skips its other checks. */
    expect_ok(&nullables, "{\"s\":null,\"i\":null,\"b\":null,\"o\":null,\"a\":null,\"e\":null}");
    /* A required nullable field must still be present. */
    expect_one(&nullables, "{\"s\":null}", "e", "is required");
    expect_ok(&nullables, "{\"e\":\"red\",\"o\":{\"x\":1},\"a\":[1]}");
    expect_one(&nullables, "{\"e\":\"blue\"}", "e", "must be one of: red, green");
    /* Not nullable: the array fields themselves. */
    expect_errors(&nullables, "{\"e\":null,\"n\":null,\"p\":null}", nulls);
    /* Nullable items take null elements; other elements are checked. */
    expect_ok(&nullables, "{\"e\":null,\"n\":[null,1,null],\"p\":[1,2]}");
    expect_errors(&nullables, "{\"e\":null,\"n\":[null,0],\"p\":[1,null]}", elems);
    /* Inside a nested object, null for a non-nullable field. */
    expect_one(&nullables, "{\"e\":null,\"o\":{\"x\":null}}", "o.x", "must not be null");
}

/* ---------------------------------------------------------- require_one */

static const struct keel_schema_field patch_fields[] = {
    {.name = "name", .type = KEEL_SCHEMA_STRING, .min = 1, .max = 10},
    {.name = "note", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SF_NULLABLE},
    {.name = "id", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SF_READ_ONLY},
};
static const struct keel_schema patch = {patch_fields, KEEL_ARRAY_LEN(patch_fields), true};
static const struct keel_schema_field wrap_fields[] = {
    {.name = "changes", .type = KEEL_SCHEMA_OBJECT, .flags = KEEL_SF_REQUIRED, .object = &patch},
};
static const struct keel_schema wrap = {wrap_fields, 1, false};

static void test_require_one(void **state)
{
    (void)state;
    expect_one(&patch, "{}", "", "must contain at least one field");
    expect_ok(&patch, "{\"name\":\"x\"}");
    expect_ok(&patch, "{\"note\":null}");
    /* A body with only read-only or unknown members is refused for them. */
    expect_one(&patch, "{\"id\":\"x\"}", "id", "is read-only");
    expect_one(&patch, "{\"zzz\":1}", "zzz", "is not allowed");
    /* Nested: the object's own path. */
    expect_one(&wrap, "{\"changes\":{}}", "changes", "must contain at least one field");
    expect_ok(&wrap, "{\"changes\":{\"name\":\"y\"}}");
}

/* ------------------------------------------------- nested objects, arrays */

static const struct keel_schema_field line_fields[] = {
    {.name = "product_id",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_REQUIRED,
     .format = KEEL_FMT_UUID},
    {.name = "quantity", .type = KEEL_SCHEMA_INT, .flags = KEEL_SF_REQUIRED, .min = 1, .max = 1000},
};
static const struct keel_schema line = {line_fields, KEEL_ARRAY_LEN(line_fields), false};
static const struct keel_schema_field line_item = {.type = KEEL_SCHEMA_OBJECT, .object = &line};
static const struct keel_schema_field tag_item = {.type = KEEL_SCHEMA_STRING, .min = 1, .max = 8};
static const struct keel_schema_field row_item = {
    .type = KEEL_SCHEMA_ARRAY, .max = 3, .items = &plain_item};
static const struct keel_schema_field address_fields[] = {
    {.name = "city", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SF_REQUIRED, .min = 1},
    {.name = "country", .type = KEEL_SCHEMA_STRING, .format = KEEL_FMT_CURRENCY},
};
static const struct keel_schema address = {address_fields, KEEL_ARRAY_LEN(address_fields), false};
static const struct keel_schema_field order_fields[] = {
    {.name = "items",
     .type = KEEL_SCHEMA_ARRAY,
     .flags = KEEL_SF_REQUIRED,
     .min = 1,
     .max = 5,
     .items = &line_item},
    {.name = "tags", .type = KEEL_SCHEMA_ARRAY, .items = &tag_item},
    {.name = "address", .type = KEEL_SCHEMA_OBJECT, .object = &address},
    {.name = "matrix", .type = KEEL_SCHEMA_ARRAY, .items = &row_item},
};
static const struct keel_schema order = {order_fields, KEEL_ARRAY_LEN(order_fields), false};

#define PID  "0190a8a0-1c2b-7def-8abc-0123456789ab"
#define LINE "{\"product_id\":\"" PID "\",\"quantity\":1}"

static void test_nested_paths(void **state)
{
    static const char *const lines[] = {
        "items[0].product_id",
        "must be a valid UUID",
        "items[1].quantity",
        "must be an integer",
        "items[2].quantity",
        "must be at least 1",
        "items[3].product_id",
        "is required",
        "items[3].extra",
        "is not allowed",
        "items[4]",
        "must be an object",
        NULL,
    };

    (void)state;
    expect_ok(&order, "{\"items\":[" LINE "," LINE "]}");
    expect_one(&order,
               "{\"items\":[" LINE "," LINE ",{\"product_id\":\"" PID "\",\"quantity\":0}]}",
               "items[2].quantity", "must be at least 1");
    expect_errors(&order,
                  "{\"items\":[{\"product_id\":\"x\",\"quantity\":1},"
                  "{\"product_id\":\"" PID "\",\"quantity\":\"2\"},"
                  "{\"product_id\":\"" PID "\",\"quantity\":0},"
                  "{\"quantity\":3,\"extra\":true},"
                  "7]}",
                  lines);
    expect_one(&order, "{\"items\":[" LINE "],\"address\":{\"country\":\"EUR\"}}", "address.city",
               "is required");
    expect_one(&order, "{\"items\":[" LINE "],\"address\":{\"city\":\"P\",\"zip\":1}}",
               "address.zip", "is not allowed");
    expect_one(&order, "{\"items\":[" LINE "],\"address\":[]}", "address", "must be an object");
    expect_one(&order, "{\"items\":[" LINE "],\"tags\":[\"a\",\"\",\"b\"]}", "tags[1]",
               "must be at least 1 character");
    expect_one(&order, "{\"items\":[" LINE "],\"tags\":[\"a\",3]}", "tags[1]", "must be a string");
    /* Arrays of arrays. */
    expect_ok(&order, "{\"items\":[" LINE "],\"matrix\":[[1,2],[],[9]]}");
    expect_one(&order, "{\"items\":[" LINE "],\"matrix\":[[1,2],[3,0]]}", "matrix[1][1]",
               "must be at least 1");
    expect_one(&order, "{\"items\":[" LINE "],\"matrix\":[[1],[1,2,3,4]]}", "matrix[1]",
               "must have at most 3 items");
    expect_one(&order, "{\"items\":[" LINE "],\"matrix\":[1]}", "matrix[0]", "must be an array");
}

static void test_array_counts(void **state)
{
    (void)state;
    expect_one(&order, "{\"items\":[]}", "items", "must have at least 1 item");
    expect_ok(&order, "{\"items\":[" LINE "," LINE "," LINE "," LINE "," LINE "]}");
    expect_one(&order, "{\"items\":[" LINE "," LINE "," LINE "," LINE "," LINE "," LINE "]}",
               "items", "must have at most 5 items");
    /* A count error stops there: the elements are not checked as well. */
    expect_one(&order, "{\"items\":[1,2,3,4,5,6]}", "items", "must have at most 5 items");
    expect_one(&order, "{\"items\":{}}", "items", "must be an array");
    expect_one(&order, "{\"items\":\"[]\"}", "items", "must be an array");
    /* max 0: no upper limit. */
    expect_ok(&order, "{\"items\":[" LINE "],\"tags\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\","
                      "\"g\",\"h\",\"i\",\"j\"]}");
    expect_ok(&order, "{\"items\":[" LINE "],\"tags\":[]}");
}

/* --------------------------------------------------- several at once */

/* Errors come in schema field order whatever the document order; unknown
 * members follow the known fields of their object. */
static void test_multiple_errors_field_order(void **state)
{
    static const char *const all[] = {
        "id",    "is read-only",
        "email", "must be a valid email address",
        "name",  "must be at most 100 characters",
        "age",   "must be at most 150",
        "zz",    "is not allowed",
        "aa",    "is not allowed",
        NULL,
    };
    char body[512], name[128];

    (void)state;
    memset(name, 'n', 101);
    name[101] = '\0';
    snprintf(body, sizeof(body),
             "{\"zz\":1,\"age\":151,\"name\":\"%s\",\"email\":\"nope\",\"aa\":2,\"id\":\"i\"}",
             name);
    expect_errors(&user, body, all);
}

/* A hostile body yields at most KEEL_SCHEMA_MAX_ERRORS errors, and the
 * detail says the list is incomplete. */
static void test_error_cap(void **state)
{
    static const struct keel_schema_field num_item = {.type = KEEL_SCHEMA_INT};
    static const struct keel_schema_field fields[] = {
        {.name = "n", .type = KEEL_SCHEMA_ARRAY, .items = &num_item},
    };
    static const struct keel_schema s = {fields, 1, false};
    size_t n = 100000, i, len = 0;
    char *body = malloc(n * 4 + 16);
    keel_status rc;

    (void)state;
    assert_non_null(body);
    len += (size_t)sprintf(body + len, "{\"n\":[");
    for (i = 0; i < n; i++)
        len += (size_t)sprintf(body + len, "%s\"x\"", i ? "," : "");
    sprintf(body + len, "]}");
    rc = run(&s, body);
    free(body);
    assert_int_equal(rc, KEEL_E_INVALID);
    assert_int_equal(g_req.nproblem_fields, KEEL_SCHEMA_MAX_ERRORS);
    assert_string_equal(g_req.problem_fields[0].field, "n[0]");
    assert_string_equal(g_req.problem_fields[31].field, "n[31]");
    assert_string_equal(g_req.problem_fields[31].message, "must be an integer");
    assert_non_null(strstr(g_req.problem_detail, "only the first 32 problems"));

    /* Exactly at the cap: every error is listed, the detail is the default. */
    body = malloc(512);
    assert_non_null(body);
    len = (size_t)sprintf(body, "{\"n\":[");
    for (i = 0; i < KEEL_SCHEMA_MAX_ERRORS; i++)
        len += (size_t)sprintf(body + len, "%s\"x\"", i ? "," : "");
    sprintf(body + len, "]}");
    rc = run(&s, body);
    free(body);
    assert_int_equal(rc, KEEL_E_INVALID);
    assert_int_equal(g_req.nproblem_fields, KEEL_SCHEMA_MAX_ERRORS);
    assert_null(strstr(g_req.problem_detail, "only the first"));
}

/* Thousands of unknown keys: capped the same way. */
static void test_error_cap_unknown_keys(void **state)
{
    size_t n = 5000, i, len = 0;
    char *body = malloc(n * 16 + 64);
    keel_status rc;

    (void)state;
    assert_non_null(body);
    len += (size_t)sprintf(body + len, "{\"email\":\"a@b.co\",\"name\":\"A\"");
    for (i = 0; i < n; i++)
        len += (size_t)sprintf(body + len, ",\"k%zu\":%zu", i, i);
    sprintf(body + len, "}");
    rc = run(&user, body);
    free(body);
    assert_int_equal(rc, KEEL_E_INVALID);
    assert_int_equal(g_req.nproblem_fields, KEEL_SCHEMA_MAX_ERRORS);
    assert_string_equal(g_req.problem_fields[0].field, "k0");
    assert_string_equal(g_req.problem_fields[0].message, "is not allowed");
}

/* No message ever contains what the client sent, whatever went wrong. */
static void test_no_echo(void **state)
{
    static const char *const bodies[] = {
        "{\"email\":\"SECRETVALUE\",\"name\":\"A\"}",
        ("{\"email\":\"a@b.co\",\"name\":\"SECRETVALUESECRETVALUESECRETVALUESECRETVALUESECRETVALUE"
         "SECRETVALUESECRETVALUESECRETVALUESECRETVALUESECRETVALUESECRETVALUE\"}"),
        "{\"email\":\"a@b.co\",\"name\":\"A\",\"role\":\"SECRETVALUE\"}",
        "{\"email\":\"a@b.co\",\"name\":\"A\",\"age\":\"SECRETVALUE\"}",
        "{\"email\":\"a@b.co\",\"name\":\"A\",\"unknown\":\"SECRETVALUE\"}",
        "{\"email\":[\"SECRETVALUE\"],\"name\":{\"SECRETVALUE\":1}}",
    };
    size_t i;
    unsigned k;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(bodies); i++) {
        assert_int_equal(run(&user, bodies[i]), KEEL_E_INVALID);
        assert_true(g_req.nproblem_fields >= 1);
        for (k = 0; k < g_req.nproblem_fields; k++) {
            assert_null(strstr(g_req.problem_fields[k].message, "SECRET"));
            assert_null(strstr(g_req.problem_fields[k].field, "SECRET"));
        }
        assert_null(strstr(g_req.problem_detail, "SECRET"));
    }
    /* Enumeration and format messages do not echo either. */
    expect_one(&nullables, "{\"e\":\"SECRETVALUE\"}", "e", "must be one of: red, green");
}

/* ----------------------------------------------------------------- body */

/* The body must be an object; NULL is the document `null`. */
static void test_body_not_object(void **state)
{
    static const char *const bad[] = {"[]", "[{}]", "\"{}\"", "1", "true", "1.5"};
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++)
        expect_one(&user, bad[i], "", "must be an object");
    reset_req();
    assert_int_equal(keel_schema_validate(&g_req, &patch, NULL), KEEL_E_INVALID);
    assert_int_equal(g_req.nproblem_fields, 1);
    assert_string_equal(g_req.problem_fields[0].field, "");
    assert_string_equal(g_req.problem_fields[0].message, "must be an object");
}

/* A schema with no fields accepts only {}. */
static void test_empty_schema(void **state)
{
    static const struct keel_schema none = {NULL, 0, false};

    (void)state;
    expect_ok(&none, "{}");
    expect_one(&none, "{\"a\":1}", "a", "is not allowed");
}

/* Long paths are cut at a UTF-8 boundary, marked with "...", bounded. */
static void test_long_path_truncated(void **state)
{
    char body[2048], key[1200];
    const char *f;
    size_t n, i;

    (void)state;
    memset(key, 'k', 1000);
    key[1000] = '\0';
    snprintf(body, sizeof(body), "{\"email\":\"a@b.co\",\"name\":\"A\",\"%s\":1}", key);
    assert_int_equal(run(&user, body), KEEL_E_INVALID);
    assert_int_equal(g_req.nproblem_fields, 1);
    f = g_req.problem_fields[0].field;
    n = strlen(f);
    assert_true(n <= KEEL_SCHEMA_MAX_PATH);
    assert_true(n > 200);
    assert_string_equal(f + n - 3, "...");
    assert_string_equal(g_req.problem_fields[0].message, "is not allowed");

    /* Two-byte characters: the cut never splits one, whether it falls
     * between two (after "x") or inside one (without it). */
    for (i = 0; i + 2 < 1100; i += 2)
        memcpy(key + i, "\xc3\xa9", 2);
    key[i] = '\0';
    snprintf(body, sizeof(body), "{\"email\":\"a@b.co\",\"name\":\"A\",\"x%s\":1}", key);
    assert_int_equal(run(&user, body), KEEL_E_INVALID);
    f = g_req.problem_fields[0].field;
    n = strlen(f);
    assert_true(n <= KEEL_SCHEMA_MAX_PATH);
    assert_string_equal(f + n - 3, "...");
    for (i = 1; i + 3 < n; i += 2)
        assert_memory_equal(f + i, "\xc3\xa9", 2);
    snprintf(body, sizeof(body), "{\"email\":\"a@b.co\",\"name\":\"A\",\"%s\":1}", key);
    assert_int_equal(run(&user, body), KEEL_E_INVALID);
    f = g_req.problem_fields[0].field;
    n = strlen(f);
    assert_true(n <= KEEL_SCHEMA_MAX_PATH);
    assert_int_equal((n - 3) % 2, 0);
    assert_string_equal(f + n - 3, "...");
    for (i = 0; i + 3 < n; i += 2)
        assert_memory_equal(f + i, "\xc3\xa9", 2);
}

/* Paths stay exact below the bound: a known field inside a long array. */
static void test_path_index_exact(void **state)
{
    char *body = malloc(20000);
    size_t len, i;

    (void)state;
    assert_non_null(body);
    len = (size_t)sprintf(body, "{\"items\":[" LINE "],\"tags\":[");
    for (i = 0; i < 1234; i++)
        len += (size_t)sprintf(body + len, "\"t\",");
    sprintf(body + len, "\"too-long-tag\"]}");
    expect_one(&order, body, "tags[1234]", "must be at most 8 characters");
    free(body);
}

/* A recursive schema (a tree): nesting is bounded by the body parser. */
static const struct keel_schema tree;
static const struct keel_schema_field child = {.type = KEEL_SCHEMA_OBJECT, .object = &tree};
static const struct keel_schema_field tree_fields[] = {
    {.name = "v", .type = KEEL_SCHEMA_INT, .flags = KEEL_SF_REQUIRED},
    {.name = "kids", .type = KEEL_SCHEMA_ARRAY, .items = &child},
};
static const struct keel_schema tree = {tree_fields, 2, false};

static void test_recursive_schema(void **state)
{
    (void)state;
    expect_ok(&tree, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4}]}]}");
    expect_one(&tree, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"w\":4,\"v\":1}]}]}",
               "kids[1].kids[0].w", "is not allowed");
    expect_one(&tree, "{\"v\":1,\"kids\":[{\"v\":2},{\"kids\":[]}]}", "kids[1].v", "is required");
}

/* A path cut deep down stays cut below that point (nothing is appended
 * past the bound), and siblings higher up get their exact paths back. */
#define LONG_NAME "a_rather_long_field_name_to_fill_the_path_buffer_quickly_0123456789"
static const struct keel_schema deep;
static const struct keel_schema_field deep_fields[] = {
    {.name = LONG_NAME, .type = KEEL_SCHEMA_OBJECT, .object = &deep},
    {.name = "list", .type = KEEL_SCHEMA_ARRAY, .items = &plain_item},
    {.name = "n", .type = KEEL_SCHEMA_INT, .min = 1, .max = 9},
};
static const struct keel_schema deep = {deep_fields, KEEL_ARRAY_LEN(deep_fields), false};

static void test_deep_path_cut(void **state)
{
    char body[4096], expect[512];
    size_t len = 0, i, n;
    const char *f;

    (void)state;
    /* Five levels of 67-byte names: the path passes 256 bytes at level 4. */
    for (i = 0; i < 5; i++)
        len += (size_t)snprintf(body + len, sizeof(body) - len, "{\"" LONG_NAME "\":");
    len += (size_t)snprintf(body + len, sizeof(body) - len, "{\"list\":[1,0],\"n\":0,\"x\":1}");
    for (i = 0; i < 5; i++)
        len += (size_t)snprintf(body + len, sizeof(body) - len, "%s", i == 1 ? ",\"n\":0}" : "}");
    assert_int_equal(run(&deep, body), KEEL_E_INVALID);
    assert_int_equal(g_req.nproblem_fields, 4);
    for (i = 0; i < 3; i++) {
        f = g_req.problem_fields[i].field;
        n = strlen(f);
        assert_int_equal(n, KEEL_SCHEMA_MAX_PATH);
        assert_string_equal(f + n - 3, "...");
        assert_int_equal(strncmp(f, LONG_NAME "." LONG_NAME ".", 2 * sizeof(LONG_NAME)), 0);
    }
    assert_string_equal(g_req.problem_fields[0].message, "must be at least 1");
    assert_string_equal(g_req.problem_fields[1].message, "must be at least 1");
    assert_string_equal(g_req.problem_fields[2].message, "is not allowed");
    /* The n of level 3 (depth index 3: three names before it) fits. */
    snprintf(expect, sizeof(expect), "%s.%s.%s.n", LONG_NAME, LONG_NAME, LONG_NAME);
    assert_string_equal(g_req.problem_fields[3].field, expect);
    assert_string_equal(g_req.problem_fields[3].message, "must be at least 1");
}

/* ------------------------------------------------- programming errors */

static void expect_schema_bug(const struct keel_schema *s, const char *text)
{
    assert_int_equal(run(s, text), KEEL_E_INTERNAL);
    assert_int_equal(g_req.rc, KEEL_E_INTERNAL);
    assert_non_null(g_req.internal_detail);
    assert_non_null(strstr(g_req.internal_detail, "schema:"));
}

static void test_schema_bugs(void **state)
{
    static const char *const empty[] = {NULL};
    ONE_FIELD(int_inverted, .type = KEEL_SCHEMA_INT, .min = 5, .max = 1);
    ONE_FIELD(str_inverted, .type = KEEL_SCHEMA_STRING, .min = 5, .max = 1);
    ONE_FIELD(str_negative, .type = KEEL_SCHEMA_STRING, .max = -1);
    ONE_FIELD(arr_inverted, .type = KEEL_SCHEMA_ARRAY, .min = 3, .max = 2, .items = &plain_item);
    ONE_FIELD(no_items, .type = KEEL_SCHEMA_ARRAY);
    ONE_FIELD(no_object, .type = KEEL_SCHEMA_OBJECT);
    ONE_FIELD(no_values, .type = KEEL_SCHEMA_STRING, .enum_values = empty);
    ONE_FIELD(bad_type, .type = (enum keel_schema_type)99);
    ONE_FIELD(bad_format, .type = KEEL_SCHEMA_STRING, .format = (enum keel_schema_format)99);

    (void)state;
    expect_schema_bug(&int_inverted, "{\"v\":3}");
    expect_schema_bug(&str_inverted, "{\"v\":\"abc\"}");
    expect_schema_bug(&str_negative, "{\"v\":\"abc\"}");
    expect_schema_bug(&arr_inverted, "{\"v\":[]}");
    expect_schema_bug(&no_items, "{\"v\":[]}");
    expect_schema_bug(&no_object, "{\"v\":{}}");
    expect_schema_bug(&no_values, "{\"v\":\"a\"}");
    expect_schema_bug(&bad_type, "{\"v\":1}");
    expect_schema_bug(&bad_format, "{\"v\":\"a\"}");
    /* Client errors found before the bug are dropped: the answer is the
     * 500, not a 400 validation-error. */
    {
        static const struct keel_schema_field f[] = {
            {.name = "a", .type = KEEL_SCHEMA_INT},
            {.name = "b", .type = KEEL_SCHEMA_ARRAY},
        };
        static const struct keel_schema s = {f, 2, false};

        expect_schema_bug(&s, "{\"a\":\"x\",\"b\":[]}");
        assert_int_equal(g_req.nproblem_fields, 0);
        assert_int_equal(g_req.problem_status, 0);
        assert_null(g_req.problem_slug);
        assert_int_equal(keel_problem_render(&g_req), KEEL_OK);
        assert_int_equal(g_req.resp.status, 500);
    }
}

/* Arena exhaustion while recording errors is KEEL_E_NOMEM, not a crash. */
static void test_nomem(void **state)
{
    struct json_object *o;

    (void)state;
    reset_req();
    o = parse("{\"isAdmin\":true}");
    keel_arena_set_budget(g_req.arena, keel_arena_used(g_req.arena));
    assert_int_equal(keel_schema_validate(&g_req, &user, o), KEEL_E_NOMEM);
    assert_int_equal(g_req.rc, KEEL_E_NOMEM);
    assert_int_equal(g_req.problem_status, 0);
    assert_int_equal(g_req.nproblem_fields, 0);
    /* A valid body needs no memory at all. */
    json_object_put(o);
    o = parse("{\"email\":\"a@b.co\",\"name\":\"A\"}");
    reset_req();
    keel_arena_set_budget(g_req.arena, keel_arena_used(g_req.arena));
    assert_int_equal(keel_schema_validate(&g_req, &user, o), KEEL_OK);
    json_object_put(o);
    /* Running out after some errors were recorded drops them all. */
    o = parse("{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8}");
    reset_req();
    keel_arena_set_budget(g_req.arena, keel_arena_used(g_req.arena) + 400);
    assert_int_equal(keel_schema_validate(&g_req, &user, o), KEEL_E_NOMEM);
    assert_int_equal(g_req.nproblem_fields, 0);
    assert_int_equal(g_req.problem_status, 0);
    json_object_put(o);
    keel_arena_set_budget(g_req.arena, KEEL_ARENA_BUDGET);
}

/* ----------------------------------------------------------- middleware */

/* Runs the VALIDATE handler with `text` as the parsed body (NULL: none). */
static keel_status run_mw(const struct keel_route *route, const char *text)
{
    keel_status rc;

    reset_req();
    g_req.route = route;
    g_req.body = (char *)(uintptr_t)text;
    g_req.body_len = text ? strlen(text) : 0;
    g_req.json = text ? parse(text) : NULL;
    rc = keel_mw_validate.handler(&g_req);
    if (g_req.json)
        json_object_put(g_req.json);
    g_req.json = NULL;
    g_req.body = NULL;
    g_req.body_len = 0;
    return rc;
}

static void test_middleware(void **state)
{
    const struct keel_route json_route = {
        .method = KEEL_HTTP_POST, .pattern = "/u", .schema = &user, .body = KEEL_BODY_JSON};
    const struct keel_route opt_route = {.method = KEEL_HTTP_PATCH,
                                         .pattern = "/u",
                                         .schema = &patch,
                                         .body = KEEL_BODY_JSON_OPTIONAL};
    const struct keel_route no_schema = {.method = KEEL_HTTP_POST, .body = KEEL_BODY_JSON};
    const struct keel_route no_body = {
        .method = KEEL_HTTP_POST, .schema = &user, .body = KEEL_BODY_NONE};

    (void)state;
    assert_int_equal(keel_mw_validate.phase, KEEL_PHASE_VALIDATE);
    assert_non_null(keel_mw_validate.handler);
    assert_string_equal(keel_mw_validate.name, "validate");

    assert_int_equal(run_mw(NULL, "{\"x\":1}"), KEEL_DECLINED);
    assert_int_equal(run_mw(&no_schema, "{\"x\":1}"), KEEL_DECLINED);
    assert_int_equal(run_mw(&no_body, "{\"x\":1}"), KEEL_DECLINED);
    assert_int_equal(g_req.nproblem_fields, 0);

    assert_int_equal(run_mw(&json_route, "{\"email\":\"a@b.co\",\"name\":\"A\"}"), KEEL_DECLINED);
    assert_int_equal(g_req.nproblem_fields, 0);
    assert_int_equal(run_mw(&json_route, "{\"email\":\"a@b.co\"}"), KEEL_E_INVALID);
    assert_int_equal(g_req.nproblem_fields, 1);
    assert_string_equal(g_req.problem_fields[0].field, "name");
    assert_int_equal(g_req.problem_status, 400);
    assert_string_equal(g_req.problem_slug, "validation-error");

    /* Not an object: one error on the body itself. */
    assert_int_equal(run_mw(&json_route, "[1,2]"), KEEL_E_INVALID);
    assert_int_equal(g_req.nproblem_fields, 1);
    assert_string_equal(g_req.problem_fields[0].field, "");
    assert_string_equal(g_req.problem_fields[0].message, "must be an object");
    /* The document null parses to NULL: refused on both body kinds. */
    assert_int_equal(run_mw(&json_route, "null"), KEEL_E_INVALID);
    assert_string_equal(g_req.problem_fields[0].message, "must be an object");
    assert_int_equal(run_mw(&opt_route, "null"), KEEL_E_INVALID);
    assert_string_equal(g_req.problem_fields[0].message, "must be an object");

    /* Optional body absent: nothing to validate. */
    assert_int_equal(run_mw(&opt_route, NULL), KEEL_DECLINED);
    assert_int_equal(g_req.nproblem_fields, 0);
    assert_int_equal(run_mw(&opt_route, "{\"name\":\"n\"}"), KEEL_DECLINED);
    assert_int_equal(run_mw(&opt_route, "{}"), KEEL_E_INVALID);
    assert_string_equal(g_req.problem_fields[0].message, "must contain at least one field");
}

/* End to end through the problem renderer: errors[] in order. */
static void test_rendered_problem(void **state)
{
    struct json_object *o, *errs, *e, *v;
    const char *detail;

    (void)state;
    assert_int_equal(run(&user, "{\"email\":\"x\",\"role\":\"admin\"}"), KEEL_E_INVALID);
    assert_int_equal(keel_problem_render(&g_req), KEEL_OK);
    assert_int_equal(g_req.resp.status, 400);
    o = parse(g_req.resp.body.data);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "type", &v));
    assert_string_equal(json_object_get_string(v), "/problems/validation-error");
    assert_true(json_object_object_get_ex(o, "detail", &v));
    detail = json_object_get_string(v);
    assert_string_equal(detail, "The request body failed validation.");
    assert_true(json_object_object_get_ex(o, "errors", &errs));
    assert_int_equal(json_object_array_length(errs), 3);
    e = json_object_array_get_idx(errs, 0);
    assert_true(json_object_object_get_ex(e, "field", &v));
    assert_string_equal(json_object_get_string(v), "email");
    assert_true(json_object_object_get_ex(e, "message", &v));
    assert_string_equal(json_object_get_string(v), "must be a valid email address");
    e = json_object_array_get_idx(errs, 1);
    assert_true(json_object_object_get_ex(e, "field", &v));
    assert_string_equal(json_object_get_string(v), "name");
    e = json_object_array_get_idx(errs, 2);
    assert_true(json_object_object_get_ex(e, "field", &v));
    assert_string_equal(json_object_get_string(v), "role");
    assert_true(json_object_object_get_ex(e, "message", &v));
    assert_string_equal(json_object_get_string(v), "is read-only");
    json_object_put(o);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_string_type),
        T(test_string_length_code_points),
        T(test_string_no_max),
        T(test_string_nul),
        T(test_int_type),
        T(test_int_range),
        T(test_int64_limits),
        T(test_bool),
        T(test_format_email),
        T(test_format_uuid),
        T(test_format_currency),
        T(test_length_before_format),
        T(test_enum),
        T(test_enum_long_list),
        T(test_unknown_field),
        T(test_read_only),
        T(test_required),
        T(test_null_handling),
        T(test_require_one),
        T(test_nested_paths),
        T(test_array_counts),
        T(test_multiple_errors_field_order),
        T(test_error_cap),
        T(test_error_cap_unknown_keys),
        T(test_no_echo),
        T(test_body_not_object),
        T(test_empty_schema),
        T(test_long_path_truncated),
        T(test_path_index_exact),
        T(test_recursive_schema),
        T(test_deep_path_cut),
        T(test_schema_bugs),
        T(test_nomem),
        T(test_middleware),
        T(test_rendered_problem),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
