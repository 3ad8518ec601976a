/*
 * test_problem.c - unit tests for src/http/problem.c: keel_fail,
 * keel_fail_field and keel_errorf record an error on a hand-built request;
 * keel_problem_render turns it into an RFC 9457 problem+json document
 * (SPEC section 3) that is parsed back with json-c and checked member by
 * member. Internal text from keel_errorf must never reach the body.
 * A missing request id is minted with keel_uuid_v7 (libsodium).
 */
#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "keel/arena.h"
#include "keel/buf.h"
#include "keel/http.h"
#include "keel/problem.h"
#include "keel/uuid.h"

#include "test.h"

static struct keel_request g_req;

static int setup(void **state)
{
    (void)state;
    memset(&g_req, 0, sizeof(g_req));
    g_req.arena = keel_arena_new(0);
    g_req.path = KEEL_STR("/api/v1/widgets/42");
    snprintf(g_req.request_id, sizeof(g_req.request_id), "%s", "req-0190a8a0-test");
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

/* Renders g_req, checks the response envelope and returns the parsed body
 * (caller puts it). */
static struct json_object *render(void)
{
    struct json_tokener *tok;
    struct json_object *o;

    assert_int_equal(keel_problem_render(&g_req), KEEL_OK);
    assert_non_null(g_req.resp.content_type);
    assert_string_equal(g_req.resp.content_type, "application/problem+json");
    assert_non_null(g_req.resp.body.data);
    tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, g_req.resp.body.data, (int)g_req.resp.body.len);
    if (json_tokener_get_error(tok) != json_tokener_success)
        print_error("not JSON: %s\n", g_req.resp.body.data);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    assert_int_equal(json_tokener_get_parse_end(tok), g_req.resp.body.len);
    json_tokener_free(tok);
    assert_non_null(o);
    assert_int_equal(json_object_get_type(o), json_type_object);
    return o;
}

static const char *get_str(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("member %s missing", key);
    assert_int_equal(json_object_get_type(v), json_type_string);
    return json_object_get_string(v);
}

static int get_int(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("member %s missing", key);
    assert_int_equal(json_object_get_type(v), json_type_int);
    return json_object_get_int(v);
}

/* The members every problem has, with their values. */
static void check_problem(
    struct json_object *o, int status, const char *slug, const char *title, const char *detail)
{
    char type[128];

    snprintf(type, sizeof(type), "/problems/%s", slug);
    assert_string_equal(get_str(o, "type"), type);
    assert_string_equal(get_str(o, "title"), title);
    assert_int_equal(get_int(o, "status"), status);
    assert_string_equal(get_str(o, "detail"), detail);
    assert_string_equal(get_str(o, "instance"), "/api/v1/widgets/42");
    assert_string_equal(get_str(o, "request_id"), "req-0190a8a0-test");
    assert_int_equal(g_req.resp.status, status);
}

static void test_fail_not_found(void **state)
{
    struct json_object *o;

    (void)state;
    assert_int_equal(keel_fail(&g_req, 404, NULL, "No widget %d.", 42), KEEL_E_NOT_FOUND);
    assert_int_equal(g_req.rc, KEEL_E_NOT_FOUND);
    assert_int_equal(g_req.problem_status, 404);
    o = render();
    check_problem(o, 404, "not-found", "Not found", "No widget 42.");
    assert_false(json_object_object_get_ex(o, "errors", NULL));
    assert_int_equal(json_object_object_length(o), 6);
    json_object_put(o);
}

static void test_fail_custom_slug(void **state)
{
    struct json_object *o;

    (void)state;
    assert_int_equal(keel_fail(&g_req, 409, "out-of-stock", "Only %u left.", 3u), KEEL_E_CONFLICT);
    o = render();
    check_problem(o, 409, "out-of-stock", "Out of stock", "Only 3 left.");
    json_object_put(o);
}

/* keel_fail maps each status to the negative status the handler returns. */
static void test_fail_return_codes(void **state)
{
    static const struct {
        int status;
        keel_status rc;
    } cases[] = {
        {400, KEEL_E_INVALID},     {401, KEEL_E_AUTH},     {403, KEEL_E_FORBIDDEN},
        {404, KEEL_E_NOT_FOUND},   {405, KEEL_E_INVALID},  {409, KEEL_E_CONFLICT},
        {413, KEEL_E_TOO_LARGE},   {415, KEEL_E_INVALID},  {422, KEEL_E_INVALID},
        {429, KEEL_E_INVALID},     {500, KEEL_E_INTERNAL}, {501, KEEL_E_INTERNAL},
        {503, KEEL_E_UNAVAILABLE}, {504, KEEL_E_INTERNAL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(cases); i++) {
        assert_int_equal(keel_fail(&g_req, cases[i].status, NULL, "x"), cases[i].rc);
        assert_int_equal(g_req.rc, cases[i].rc);
        assert_int_equal(g_req.problem_status, cases[i].status);
    }
}

/* Statuses outside 400..599 become 500 (with the 500 slug and title). */
static void test_fail_status_clamped(void **state)
{
    static const int bad[] = {0, 200, 302, 399, 600, 1000, -404};
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        struct json_object *o;

        assert_int_equal(keel_fail(&g_req, bad[i], NULL, "odd status"), KEEL_E_INTERNAL);
        assert_int_equal(g_req.problem_status, 500);
        o = render();
        check_problem(o, 500, "internal-error", "Internal error", "odd status");
        json_object_put(o);
    }
    /* The edges of the range are kept. */
    assert_int_equal(keel_fail(&g_req, 400, NULL, "x"), KEEL_E_INVALID);
    assert_int_equal(g_req.problem_status, 400);
    assert_int_equal(keel_fail(&g_req, 599, NULL, "x"), KEEL_E_INTERNAL);
    assert_int_equal(g_req.problem_status, 599);
}

/* Rendering with no error recorded (rc still KEEL_OK or a flow code) must
 * still produce a consistent 500 document, not a 500 typed as a 400. */
static void test_render_without_error_is_500(void **state)
{
    struct json_object *o;
    char type[96], title[96];
    int status;

    (void)state;
    g_req.rc = KEEL_OK;
    o = render();
    status = get_int(o, "status");
    snprintf(type, sizeof(type), "%s", get_str(o, "type"));
    snprintf(title, sizeof(title), "%s", get_str(o, "title"));
    json_object_put(o); /* before asserting, so a failure does not leak */
    assert_int_equal(status, 500);
    assert_int_equal(g_req.resp.status, 500);
    assert_string_equal(type, "/problems/internal-error");
    assert_string_equal(title, "Internal error");
}

static void test_unknown_statuses(void **state)
{
    struct json_object *o;

    (void)state;
    keel_fail(&g_req, 418, NULL, "teapot");
    o = render();
    check_problem(o, 418, "malformed-request", "Malformed request", "teapot");
    json_object_put(o);

    keel_fail(&g_req, 502, NULL, "upstream");
    o = render();
    check_problem(o, 502, "internal-error", "Internal error", "upstream");
    json_object_put(o);
}

static void test_fail_field_validation(void **state)
{
    struct json_object *o, *errs, *e, *v;
    char field[16] = "email";

    (void)state;
    assert_int_equal(keel_fail_field(&g_req, field, "must be an email address"), KEEL_E_INVALID);
    assert_int_equal(keel_fail_field(&g_req, "name", "too long (max 100)"), KEEL_E_INVALID);
    assert_int_equal(keel_fail_field(&g_req, "tags[2]", "must be \"quoted\"\n"), KEEL_E_INVALID);
    assert_int_equal(g_req.rc, KEEL_E_INVALID);
    assert_int_equal(g_req.nproblem_fields, 3);
    strcpy(field, "CHANGED"); /* the field name was copied */

    o = render();
    check_problem(o, 400, "validation-error", "Validation failed",
                  "The request body failed validation.");
    assert_int_equal(json_object_object_length(o), 7);
    assert_true(json_object_object_get_ex(o, "errors", &errs));
    assert_int_equal(json_object_get_type(errs), json_type_array);
    assert_int_equal(json_object_array_length(errs), 3);
    e = json_object_array_get_idx(errs, 0);
    assert_int_equal(json_object_object_length(e), 2);
    assert_string_equal(get_str(e, "field"), "email");
    assert_string_equal(get_str(e, "message"), "must be an email address");
    e = json_object_array_get_idx(errs, 1);
    assert_string_equal(get_str(e, "field"), "name");
    assert_string_equal(get_str(e, "message"), "too long (max 100)");
    e = json_object_array_get_idx(errs, 2);
    assert_true(json_object_object_get_ex(e, "field", &v));
    assert_string_equal(json_object_get_string(v), "tags[2]");
    assert_string_equal(get_str(e, "message"), "must be \"quoted\"\n");
    json_object_put(o);
}

static void test_fail_field_past_budget(void **state)
{
    (void)state;
    assert_non_null(keel_arena_alloc(g_req.arena, 64));
    keel_arena_set_budget(g_req.arena, keel_arena_used(g_req.arena));
    assert_int_equal(keel_fail_field(&g_req, "email", "bad"), KEEL_E_NOMEM);
    assert_int_equal(g_req.nproblem_fields, 0);
}

/* The internal message stays in internal_detail; the client gets the
 * generic text of the status. */
static void test_errorf_hides_internal_detail(void **state)
{
    struct json_object *o;

    (void)state;
    assert_int_equal(
        keel_errorf(&g_req, KEEL_E_DB, "pg: password=%s host=%s", "hunter2", "10.0.0.5:5432"),
        KEEL_E_DB);
    assert_int_equal(g_req.rc, KEEL_E_DB);
    assert_non_null(g_req.internal_detail);
    assert_string_equal(g_req.internal_detail, "pg: password=hunter2 host=10.0.0.5:5432");
    o = render();
    check_problem(o, 500, "internal-error", "Internal error", keel_strerror(KEEL_E_DB));
    json_object_put(o);
    assert_null(strstr(g_req.resp.body.data, "hunter2"));
    assert_null(strstr(g_req.resp.body.data, "10.0.0.5"));
    assert_null(strstr(g_req.resp.body.data, "pg:"));
}

/* 5xx bodies carry only the generic message of the status. */
static void test_errorf_generic_details(void **state)
{
    static const struct {
        keel_status rc;
        int status;
        const char *slug;
        const char *title;
    } cases[] = {
        {KEEL_E_INTERNAL, 500, "internal-error", "Internal error"},
        {KEEL_E_DB, 500, "internal-error", "Internal error"},
        {KEEL_E_NOMEM, 503, "service-unavailable", "Service unavailable"},
        {KEEL_E_UNAVAILABLE, 503, "service-unavailable", "Service unavailable"},
        {KEEL_E_TIMEOUT, 503, "service-unavailable", "Service unavailable"},
        {KEEL_E_AUTH, 401, "unauthorized", "Unauthorized"},
        {KEEL_E_NOT_FOUND, 404, "not-found", "Not found"},
        {(keel_status)-99, 500, "internal-error", "Internal error"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(cases); i++) {
        struct json_object *o;

        /* Each case on a fresh request. */
        teardown(NULL);
        setup(NULL);
        assert_int_equal(keel_errorf(&g_req, cases[i].rc, "SECRET-%zu", i), cases[i].rc);
        o = render();
        check_problem(o, cases[i].status, cases[i].slug, cases[i].title,
                      keel_strerror(cases[i].rc));
        assert_null(strstr(g_req.resp.body.data, "SECRET"));
        json_object_put(o);
    }
}

/* A non-error status given to keel_errorf still records a failure. */
static void test_errorf_nonnegative_rc(void **state)
{
    struct json_object *o;

    (void)state;
    assert_int_equal(keel_errorf(&g_req, KEEL_OK, "oops"), KEEL_E_INTERNAL);
    assert_int_equal(g_req.rc, KEEL_E_INTERNAL);
    assert_int_equal(keel_errorf(&g_req, KEEL_DONE, "oops"), KEEL_E_INTERNAL);
    o = render();
    check_problem(o, 500, "internal-error", "Internal error", keel_strerror(KEEL_E_INTERNAL));
    assert_null(strstr(g_req.resp.body.data, "oops"));
    json_object_put(o);
}

/* keel_fail text is public on purpose, even on a 5xx. */
static void test_fail_5xx_public_detail(void **state)
{
    struct json_object *o;

    (void)state;
    keel_errorf(&g_req, KEEL_E_UNAVAILABLE, "redis down at 10.1.1.1");
    keel_fail(&g_req, 503, NULL, "Try again in a few seconds.");
    o = render();
    check_problem(o, 503, "service-unavailable", "Service unavailable",
                  "Try again in a few seconds.");
    assert_null(strstr(g_req.resp.body.data, "redis"));
    json_object_put(o);
}

static void test_render_escapes_and_replaces_body(void **state)
{
    struct json_object *o;
    static const char path[] = "/a\"b\\c/\xc3\xa9/\x01";

    (void)state;
    g_req.path = (struct keel_str){path, sizeof(path) - 1};
    snprintf(g_req.request_id, sizeof(g_req.request_id), "%s", "id\"with\\quotes");
    g_req.resp.status = 200;
    keel_buf_appends(&g_req.resp.body, "{\"partial\":"); /* a half-written body */
    keel_fail(&g_req, 400, "malformed-request", "Bad \"%s\"\tat line %d", "x\\y", 3);
    o = render();
    assert_string_equal(get_str(o, "detail"), "Bad \"x\\y\"\tat line 3");
    assert_string_equal(get_str(o, "instance"), path);
    assert_string_equal(get_str(o, "request_id"), "id\"with\\quotes");
    assert_int_equal(get_int(o, "status"), 400);
    assert_int_equal(g_req.resp.status, 400);
    assert_null(strstr(g_req.resp.body.data, "partial"));
    assert_int_equal(g_req.resp.body.data[0], '{');
    json_object_put(o);
}

static void test_render_empty_path_and_id(void **state)
{
    struct json_object *o;
    char first[sizeof(g_req.request_id)];

    (void)state;
    g_req.path = (struct keel_str){NULL, 0};
    g_req.request_id[0] = '\0';
    keel_fail(&g_req, 404, NULL, "gone");
    o = render();
    assert_string_equal(get_str(o, "instance"), "");
    /* A request that failed before the request-id phase gets an id minted
     * (a UUIDv7), kept on the request so the log line carries the same. */
    assert_true(keel_uuid_valid(get_str(o, "request_id"), strlen(get_str(o, "request_id"))));
    assert_int_equal(get_str(o, "request_id")[14], '7');
    assert_string_equal(get_str(o, "request_id"), g_req.request_id);
    snprintf(first, sizeof(first), "%s", g_req.request_id);
    json_object_put(o);

    /* Rendering again keeps that id instead of minting another. */
    o = render();
    assert_string_equal(get_str(o, "request_id"), first);
    json_object_put(o);
}

static void test_render_body_too_small(void **state)
{
    (void)state;
    keel_buf_free(&g_req.resp.body);
    keel_buf_init(&g_req.resp.body, 32);
    keel_fail(&g_req, 404, NULL, "No such widget.");
    assert_true(keel_problem_render(&g_req) < 0);
}

static void test_slug_title_table(void **state)
{
    static const struct {
        int status;
        const char *slug;
        const char *title;
    } table[] = {
        {400, "malformed-request", "Malformed request"},
        {401, "unauthorized", "Unauthorized"},
        {403, "forbidden", "Forbidden"},
        {404, "not-found", "Not found"},
        {405, "method-not-allowed", "Method not allowed"},
        {408, "request-timeout", "Request timeout"},
        {409, "conflict", "Conflict"},
        {412, "precondition-failed", "Precondition failed"},
        {413, "payload-too-large", "Payload too large"},
        {414, "uri-too-long", "URI too long"},
        {415, "unsupported-media-type", "Unsupported media type"},
        {417, "expectation-failed", "Expectation failed"},
        {422, "unprocessable-content", "Unprocessable content"},
        {429, "rate-limited", "Too many requests"},
        {431, "header-fields-too-large", "Request header fields too large"},
        {500, "internal-error", "Internal error"},
        {501, "not-implemented", "Not implemented"},
        {503, "service-unavailable", "Service unavailable"},
        {505, "http-version-not-supported", "HTTP version not supported"},
        /* unknown 4xx -> malformed-request, unknown 5xx -> internal-error */
        {402, "malformed-request", "Malformed request"},
        {418, "malformed-request", "Malformed request"},
        {499, "malformed-request", "Malformed request"},
        {502, "internal-error", "Internal error"},
        {504, "internal-error", "Internal error"},
        {599, "internal-error", "Internal error"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(table); i++) {
        assert_string_equal(keel_problem_slug(table[i].status), table[i].slug);
        assert_string_equal(keel_problem_title(table[i].status), table[i].title);
    }
}

/* Each default slug reaches the rendered type. */
static void test_render_default_slugs(void **state)
{
    static const int statuses[] = {401, 403, 405, 413, 415, 429, 431, 501, 505};
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(statuses); i++) {
        struct json_object *o;
        char type[96];

        keel_fail(&g_req, statuses[i], NULL, "d");
        o = render();
        snprintf(type, sizeof(type), "/problems/%s", keel_problem_slug(statuses[i]));
        assert_string_equal(get_str(o, "type"), type);
        assert_string_equal(get_str(o, "title"), keel_problem_title(statuses[i]));
        assert_int_equal(get_int(o, "status"), statuses[i]);
        json_object_put(o);
    }
}

/* ------------------------------------------------------ keel_fail_storage */

/* An outage: 503 with Retry-After: 1, the store named in the log only. */
static void test_storage_unavailable(void **state)
{
    static const keel_status outages[] = {KEEL_E_UNAVAILABLE, KEEL_E_TIMEOUT};
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(outages); i++) {
        struct json_object *o;
        char logged[64];

        g_req.resp.nheaders = 0;
        assert_int_equal(keel_fail_storage(&g_req, outages[i], "shelf db", "No shelf."),
                         KEEL_E_UNAVAILABLE);
        assert_string_equal(keel_resp_get_header(&g_req, "Retry-After"), "1");
        snprintf(logged, sizeof(logged), "shelf db: %s", keel_strerror(outages[i]));
        assert_string_equal(g_req.internal_detail, logged);
        o = render();
        check_problem(o, 503, "service-unavailable", "Service unavailable",
                      keel_strerror(KEEL_E_UNAVAILABLE));
        assert_null(strstr(g_req.resp.body.data, "shelf db"));
        json_object_put(o);
    }
}

/* Not found: the caller's public detail, or the generic one. */
static void test_storage_not_found(void **state)
{
    struct json_object *o;

    (void)state;
    assert_int_equal(keel_fail_storage(&g_req, KEEL_E_NOT_FOUND, "shelf db", "No shelf here."),
                     KEEL_E_NOT_FOUND);
    assert_null(keel_resp_get_header(&g_req, "Retry-After"));
    o = render();
    check_problem(o, 404, "not-found", "Not found", "No shelf here.");
    json_object_put(o);

    g_req.problem_status = 0;
    g_req.problem_detail = NULL;
    assert_int_equal(keel_fail_storage(&g_req, KEEL_E_NOT_FOUND, "shelf db", NULL),
                     KEEL_E_NOT_FOUND);
    assert_string_equal(g_req.internal_detail, "shelf db: not found");
    o = render();
    check_problem(o, 404, "not-found", "Not found", "not found");
    json_object_put(o);
}

/* Everything else answers as its own status, with no public detail. */
static void test_storage_other_errors(void **state)
{
    static const struct {
        keel_status rc;
        int status;
        const char *slug, *title;
    } cases[] = {
        {KEEL_E_CONFLICT, 409, "conflict", "Conflict"},
        {KEEL_E_DB, 500, "internal-error", "Internal error"},
        {KEEL_E_NOMEM, 503, "service-unavailable", "Service unavailable"},
        {KEEL_E_TOO_LARGE, 413, "payload-too-large", "Payload too large"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(cases); i++) {
        struct json_object *o;

        g_req.problem_status = 0;
        g_req.problem_detail = NULL;
        assert_int_equal(keel_fail_storage(&g_req, cases[i].rc, "shelf db", "No shelf."),
                         cases[i].rc);
        assert_null(keel_resp_get_header(&g_req, "Retry-After"));
        o = render();
        check_problem(o, cases[i].status, cases[i].slug, cases[i].title,
                      keel_strerror(cases[i].rc));
        json_object_put(o);
    }
    /* A status that is no error is Keel's bug: 500. */
    assert_int_equal(keel_fail_storage(&g_req, KEEL_DONE, "shelf db", NULL), KEEL_E_INTERNAL);
    assert_string_equal(g_req.internal_detail, "shelf db: done");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_fail_not_found),
        T(test_fail_custom_slug),
        T(test_fail_return_codes),
        T(test_fail_status_clamped),
        T(test_render_without_error_is_500),
        T(test_unknown_statuses),
        T(test_fail_field_validation),
        T(test_fail_field_past_budget),
        T(test_errorf_hides_internal_detail),
        T(test_errorf_generic_details),
        T(test_errorf_nonnegative_rc),
        T(test_storage_unavailable),
        T(test_storage_not_found),
        T(test_storage_other_errors),
        T(test_fail_5xx_public_detail),
        T(test_render_escapes_and_replaces_body),
        T(test_render_empty_path_and_id),
        T(test_render_body_too_small),
        T(test_slug_title_table),
        T(test_render_default_slugs),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
