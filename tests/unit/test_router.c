/*
 * test_router.c - unit tests for src/http/router.c: literal and typed
 * routes, 404 versus 405 and the Allow mask, HEAD falling back to GET,
 * automatic OPTIONS, specificity, malformed paths and patterns, conflicts,
 * raw parameter values, route labels and the segment and parameter limits.
 */
#include <stdio.h>
#include <string.h>

#include "keel/http.h"
#include "keel/router.h"

#include "test.h"

#define BIT(m) (1u << (m))
/* A static route table entry with the dummy handler. */
#define R(m, p)                                                                                    \
    {                                                                                              \
        .method = (m), .pattern = (p), .handler = h_dummy                                          \
    }
#define UUID_LO "0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f6"
#define UUID_UP "0190A8A0-1C2B-7D3E-8F40-A1B2C3D4E5F6"

static keel_status h_dummy(struct keel_request *req)
{
    (void)req;
    return KEEL_OK;
}

static struct keel_router *g_r;

static int setup(void **state)
{
    (void)state;
    g_r = keel_router_new();
    return g_r ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    keel_router_free(g_r);
    g_r = NULL;
    return 0;
}

static struct keel_route route(enum keel_method m, const char *pattern)
{
    return (struct keel_route){.method = m, .pattern = pattern, .handler = h_dummy};
}

static keel_status add(const struct keel_route *rt)
{
    return keel_router_add(g_r, rt);
}

/* Matches with the output pre-filled with garbage, so every field the
 * router leaves alone would show. */
static void match(enum keel_method m, const char *path, struct keel_match *out)
{
    memset(out, 0xa5, sizeof(*out));
    keel_router_match(g_r, m, path, strlen(path), out);
}

static void expect_hit(enum keel_method m, const char *path, const struct keel_route *want)
{
    struct keel_match mt;

    match(m, path, &mt);
    if (mt.route != want)
        print_error("%s %s: wrong route\n", keel_http_method_name(m), path);
    assert_ptr_equal(mt.route, want);
    assert_int_equal(mt.miss, 0);
    assert_false(mt.auto_options);
}

static void expect_404(enum keel_method m, const char *path)
{
    struct keel_match mt;

    match(m, path, &mt);
    if (mt.miss != 404)
        print_error("%s %s: expected 404, got %d\n", keel_http_method_name(m), path, mt.miss);
    assert_null(mt.route);
    assert_null(mt.label);
    assert_int_equal(mt.miss, 404);
    assert_false(mt.auto_options);
    assert_int_equal(mt.allow, 0);
    assert_int_equal(mt.nparams, 0);
}

static unsigned count_routes(void);

/* ------------------------------------------------------------- matching */

static void test_literal_routes(void **state)
{
    static const struct keel_route root = R(KEEL_HTTP_GET, "/");
    static const struct keel_route health = R(KEEL_HTTP_GET, "/health");
    static const struct keel_route users = R(KEEL_HTTP_GET, "/api/v1/users");
    static const struct keel_route me = R(KEEL_HTTP_GET, "/api/v1/users/me");
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&root), KEEL_OK);
    assert_int_equal(add(&health), KEEL_OK);
    assert_int_equal(add(&users), KEEL_OK);
    assert_int_equal(add(&me), KEEL_OK);
    expect_hit(KEEL_HTTP_GET, "/", &root);
    expect_hit(KEEL_HTTP_GET, "/health", &health);
    expect_hit(KEEL_HTTP_GET, "/api/v1/users", &users);
    expect_hit(KEEL_HTTP_GET, "/api/v1/users/me", &me);
    match(KEEL_HTTP_GET, "/health", &mt);
    assert_int_equal(mt.nparams, 0);
    expect_404(KEEL_HTTP_GET, "/healt");
    expect_404(KEEL_HTTP_GET, "/healthz");
    expect_404(KEEL_HTTP_GET, "/Health");
    expect_404(KEEL_HTTP_GET, "/health/x");
    expect_404(KEEL_HTTP_GET, "/api/v1");
    expect_404(KEEL_HTTP_GET, "/api/v1/users/me/x");
    expect_404(KEEL_HTTP_GET, "/api/v2/users");
}

/* Only len bytes of the path are looked at. */
static void test_match_uses_len(void **state)
{
    static const struct keel_route users = R(KEEL_HTTP_GET, "/users");
    static const char target[] = "/users?limit=5";
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&users), KEEL_OK);
    memset(&mt, 0xa5, sizeof(mt));
    keel_router_match(g_r, KEEL_HTTP_GET, target, 6, &mt);
    assert_ptr_equal(mt.route, &users);
    keel_router_match(g_r, KEEL_HTTP_GET, target, 5, &mt);
    assert_null(mt.route);
    assert_int_equal(mt.miss, 404);
    keel_router_match(g_r, KEEL_HTTP_GET, target, 0, &mt);
    assert_int_equal(mt.miss, 404);
}

static void test_param_uuid(void **state)
{
    static const struct keel_route get = R(KEEL_HTTP_GET, "/users/{id:uuid}");
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&get), KEEL_OK);
    match(KEEL_HTTP_GET, "/users/" UUID_LO, &mt);
    assert_ptr_equal(mt.route, &get);
    assert_int_equal(mt.nparams, 1);
    assert_true(keel_str_eq(mt.names[0], "id"));
    assert_true(keel_str_eq(mt.values[0], UUID_LO));
    match(KEEL_HTTP_GET, "/users/" UUID_UP, &mt);
    assert_ptr_equal(mt.route, &get);
    assert_true(keel_str_eq(mt.values[0], UUID_UP)); /* raw, not lowercased */
    expect_404(KEEL_HTTP_GET, "/users/not-a-uuid");
    expect_404(KEEL_HTTP_GET, "/users/0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f");   /* 35 */
    expect_404(KEEL_HTTP_GET, "/users/0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5f60"); /* 37 */
    expect_404(KEEL_HTTP_GET, "/users/0190a8a0x1c2b-7d3e-8f40-a1b2c3d4e5f6");
    expect_404(KEEL_HTTP_GET, "/users/0190a8a0-1c2b-7d3e-8f40-a1b2c3d4e5fg");
    expect_404(KEEL_HTTP_GET, "/users/0190a8a01c2b7d3e8f40a1b2c3d4e5f6");
    expect_404(KEEL_HTTP_GET, "/users/42");
    /* A method that does not exist for a non-matching id is still a 404. */
    expect_404(KEEL_HTTP_DELETE, "/users/42");
}

static void test_param_int(void **state)
{
    static const struct keel_route get = R(KEEL_HTTP_GET, "/items/{n:int}");
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&get), KEEL_OK);
    match(KEEL_HTTP_GET, "/items/42", &mt);
    assert_ptr_equal(mt.route, &get);
    assert_int_equal(mt.nparams, 1);
    assert_true(keel_str_eq(mt.names[0], "n"));
    assert_true(keel_str_eq(mt.values[0], "42"));
    match(KEEL_HTTP_GET, "/items/007", &mt);
    assert_true(keel_str_eq(mt.values[0], "007"));
    expect_hit(KEEL_HTTP_GET, "/items/0", &get);
    expect_hit(KEEL_HTTP_GET, "/items/123456789012345678", &get); /* 18 digits */
    expect_404(KEEL_HTTP_GET, "/items/1234567890123456789");      /* 19 digits */
    expect_404(KEEL_HTTP_GET, "/items/-1");
    expect_404(KEEL_HTTP_GET, "/items/+1");
    expect_404(KEEL_HTTP_GET, "/items/4a");
    expect_404(KEEL_HTTP_GET, "/items/1.5");
    expect_404(KEEL_HTTP_GET, "/items/%31");
    expect_404(KEEL_HTTP_GET, "/items/ 1");
}

/* {name} takes any non-empty segment, still percent-encoded. */
static void test_param_any_raw(void **state)
{
    static const struct keel_route get = R(KEEL_HTTP_GET, "/files/{name}");
    static const char path[] = "/files/a%2Fb%20c%00.txt";
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&get), KEEL_OK);
    memset(&mt, 0, sizeof(mt));
    keel_router_match(g_r, KEEL_HTTP_GET, path, sizeof(path) - 1, &mt);
    assert_ptr_equal(mt.route, &get);
    assert_int_equal(mt.nparams, 1);
    assert_true(keel_str_eq(mt.names[0], "name"));
    assert_true(keel_str_eq(mt.values[0], "a%2Fb%20c%00.txt"));
    /* The value is a view into the path, not a copy. */
    assert_ptr_equal(mt.values[0].p, path + 7);
    expect_hit(KEEL_HTTP_GET, "/files/x", &get);
    expect_hit(KEEL_HTTP_GET, "/files/..", &get);
    expect_404(KEEL_HTTP_GET, "/files/");
    expect_404(KEEL_HTTP_GET, "/files");
    expect_404(KEEL_HTTP_GET, "/files/a/b");
}

static void test_multiple_params_in_order(void **state)
{
    static const struct keel_route get =
        R(KEEL_HTTP_GET, "/orgs/{org}/repos/{repo:int}/issues/{id:uuid}");
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&get), KEEL_OK);
    match(KEEL_HTTP_GET, "/orgs/keel/repos/17/issues/" UUID_LO, &mt);
    assert_ptr_equal(mt.route, &get);
    assert_int_equal(mt.nparams, 3);
    assert_true(keel_str_eq(mt.names[0], "org"));
    assert_true(keel_str_eq(mt.values[0], "keel"));
    assert_true(keel_str_eq(mt.names[1], "repo"));
    assert_true(keel_str_eq(mt.values[1], "17"));
    assert_true(keel_str_eq(mt.names[2], "id"));
    assert_true(keel_str_eq(mt.values[2], UUID_LO));
    expect_404(KEEL_HTTP_GET, "/orgs/keel/repos/x/issues/" UUID_LO);
    expect_404(KEEL_HTTP_GET, "/orgs/keel/repos/17/issues/x");
}

static void test_404_vs_405(void **state)
{
    static const struct keel_route get = R(KEEL_HTTP_GET, "/things");
    static const struct keel_route post = R(KEEL_HTTP_POST, "/things");
    static const struct keel_route put = R(KEEL_HTTP_PUT, "/things/{id:int}");
    static const struct keel_route form = R(KEEL_HTTP_POST, "/form");
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&get), KEEL_OK);
    assert_int_equal(add(&post), KEEL_OK);
    assert_int_equal(add(&put), KEEL_OK);
    assert_int_equal(add(&form), KEEL_OK);

    match(KEEL_HTTP_DELETE, "/things", &mt);
    assert_null(mt.route);
    assert_int_equal(mt.miss, 405);
    assert_false(mt.auto_options);
    assert_int_equal(mt.allow, BIT(KEEL_HTTP_GET) | BIT(KEEL_HTTP_HEAD) | BIT(KEEL_HTTP_POST) |
                                   BIT(KEEL_HTTP_OPTIONS));
    assert_int_equal(mt.nparams, 0);

    match(KEEL_HTTP_GET, "/things/5", &mt);
    assert_int_equal(mt.miss, 405);
    assert_int_equal(mt.allow, BIT(KEEL_HTTP_PUT) | BIT(KEEL_HTTP_OPTIONS));

    /* No GET route: HEAD is not allowed either. */
    match(KEEL_HTTP_HEAD, "/form", &mt);
    assert_null(mt.route);
    assert_int_equal(mt.miss, 405);
    assert_int_equal(mt.allow, BIT(KEEL_HTTP_POST) | BIT(KEEL_HTTP_OPTIONS));
    match(KEEL_HTTP_GET, "/form", &mt);
    assert_int_equal(mt.miss, 405);

    /* A typed parameter that does not validate is a 404, not a 405. */
    expect_404(KEEL_HTTP_GET, "/things/abc");
    expect_404(KEEL_HTTP_PUT, "/things/abc");
    expect_404(KEEL_HTTP_DELETE, "/nothing");

    /* And on a hit the allow mask lists every method of the path. */
    match(KEEL_HTTP_GET, "/things", &mt);
    assert_ptr_equal(mt.route, &get);
    assert_int_equal(mt.miss, 0);
    assert_int_equal(mt.allow, BIT(KEEL_HTTP_GET) | BIT(KEEL_HTTP_HEAD) | BIT(KEEL_HTTP_POST) |
                                   BIT(KEEL_HTTP_OPTIONS));
}

static void test_allow_string(void **state)
{
    char out[128];
    const char *full = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
    size_t size;

    (void)state;
    keel_router_allow_string(0, out, sizeof(out));
    assert_string_equal(out, "");
    keel_router_allow_string(BIT(KEEL_HTTP_DELETE), out, sizeof(out));
    assert_string_equal(out, "DELETE");
    keel_router_allow_string(BIT(KEEL_HTTP_GET) | BIT(KEEL_HTTP_HEAD) | BIT(KEEL_HTTP_OPTIONS), out,
                             sizeof(out));
    assert_string_equal(out, "GET, HEAD, OPTIONS");
    /* Always in method order, whatever order the bits were set in. */
    keel_router_allow_string(BIT(KEEL_HTTP_OPTIONS) | BIT(KEEL_HTTP_PATCH) | BIT(KEEL_HTTP_POST),
                             out, sizeof(out));
    assert_string_equal(out, "POST, PATCH, OPTIONS");
    keel_router_allow_string((1u << KEEL_HTTP_METHOD_COUNT) - 1, out, sizeof(out));
    assert_string_equal(out, full);
    /* Bits past the known methods are ignored. */
    keel_router_allow_string(BIT(KEEL_HTTP_PUT) | (1u << 20) | (1u << 31), out, sizeof(out));
    assert_string_equal(out, "PUT");

    /* Exactly enough room, then every shorter size: always terminated,
     * never longer than size - 1, always a prefix of the full text. */
    keel_router_allow_string((1u << KEEL_HTTP_METHOD_COUNT) - 1, out, strlen(full) + 1);
    assert_string_equal(out, full);
    for (size = strlen(full); size >= 1; size--) {
        memset(out, 'Z', sizeof(out));
        keel_router_allow_string((1u << KEEL_HTTP_METHOD_COUNT) - 1, out, size);
        assert_true(strlen(out) < size);
        assert_memory_equal(out, full, strlen(out));
        assert_int_equal(out[size], 'Z'); /* nothing written past size */
    }
}

/* The allow mask from a real match renders as the Allow header. */
static void test_allow_string_from_match(void **state)
{
    static const struct keel_route get = R(KEEL_HTTP_GET, "/a");
    static const struct keel_route del = R(KEEL_HTTP_DELETE, "/a");
    struct keel_match mt;
    char out[64];

    (void)state;
    assert_int_equal(add(&get), KEEL_OK);
    assert_int_equal(add(&del), KEEL_OK);
    match(KEEL_HTTP_PATCH, "/a", &mt);
    assert_int_equal(mt.miss, 405);
    keel_router_allow_string(mt.allow, out, sizeof(out));
    assert_string_equal(out, "GET, HEAD, DELETE, OPTIONS");
}

static void test_head_falls_back_to_get(void **state)
{
    static const struct keel_route get = R(KEEL_HTTP_GET, "/things/{id:int}");
    static const struct keel_route search = R(KEEL_HTTP_GET, "/things/search");
    static const struct keel_route any = R(KEEL_HTTP_GET, "/things/{slug}");
    static const struct keel_route head = R(KEEL_HTTP_HEAD, "/docs");
    static const struct keel_route docs = R(KEEL_HTTP_GET, "/docs");
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&any), KEEL_OK);
    assert_int_equal(add(&get), KEEL_OK);
    assert_int_equal(add(&search), KEEL_OK);
    assert_int_equal(add(&docs), KEEL_OK);
    assert_int_equal(add(&head), KEEL_OK);

    match(KEEL_HTTP_HEAD, "/things/5", &mt);
    assert_ptr_equal(mt.route, &get);
    assert_int_equal(mt.miss, 0);
    assert_int_equal(mt.nparams, 1);
    assert_true(keel_str_eq(mt.values[0], "5"));
    /* The most specific GET route is the one used. */
    expect_hit(KEEL_HTTP_HEAD, "/things/search", &search);
    expect_hit(KEEL_HTTP_HEAD, "/things/other", &any);
    /* An explicit HEAD route wins over the GET one. */
    expect_hit(KEEL_HTTP_HEAD, "/docs", &head);
    expect_hit(KEEL_HTTP_GET, "/docs", &docs);
    expect_404(KEEL_HTTP_HEAD, "/nothing");
}

static void test_auto_options(void **state)
{
    static const struct keel_route get = R(KEEL_HTTP_GET, "/things");
    static const struct keel_route post = R(KEEL_HTTP_POST, "/things");
    static const struct keel_route opt = R(KEEL_HTTP_OPTIONS, "/cors");
    static const struct keel_route cors_get = R(KEEL_HTTP_GET, "/cors");
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&get), KEEL_OK);
    assert_int_equal(add(&post), KEEL_OK);
    assert_int_equal(add(&opt), KEEL_OK);
    assert_int_equal(add(&cors_get), KEEL_OK);

    match(KEEL_HTTP_OPTIONS, "/things", &mt);
    assert_null(mt.route);
    assert_int_equal(mt.miss, 0);
    assert_true(mt.auto_options);
    assert_int_equal(mt.allow, BIT(KEEL_HTTP_GET) | BIT(KEEL_HTTP_HEAD) | BIT(KEEL_HTTP_POST) |
                                   BIT(KEEL_HTTP_OPTIONS));
    assert_int_equal(mt.nparams, 0);

    /* An explicit OPTIONS route is an ordinary match. */
    match(KEEL_HTTP_OPTIONS, "/cors", &mt);
    assert_ptr_equal(mt.route, &opt);
    assert_false(mt.auto_options);

    /* No route at all: OPTIONS is a plain 404. */
    expect_404(KEEL_HTTP_OPTIONS, "/nothing");
    expect_404(KEEL_HTTP_OPTIONS, "/things/");
}

static void test_specificity_literal_beats_param(void **state)
{
    static const struct keel_route byid = R(KEEL_HTTP_GET, "/products/{id}");
    static const struct keel_route search = R(KEEL_HTTP_GET, "/products/search");
    static const struct keel_route a1 = R(KEEL_HTTP_GET, "/a/{x}/c");
    static const struct keel_route a2 = R(KEEL_HTTP_GET, "/a/b/{y}");
    int order;

    (void)state;
    /* The outcome must not depend on the registration order. */
    for (order = 0; order < 2; order++) {
        teardown(NULL);
        setup(NULL);
        if (order == 0) {
            assert_int_equal(add(&byid), KEEL_OK);
            assert_int_equal(add(&search), KEEL_OK);
            assert_int_equal(add(&a1), KEEL_OK);
            assert_int_equal(add(&a2), KEEL_OK);
        } else {
            assert_int_equal(add(&a2), KEEL_OK);
            assert_int_equal(add(&a1), KEEL_OK);
            assert_int_equal(add(&search), KEEL_OK);
            assert_int_equal(add(&byid), KEEL_OK);
        }
        expect_hit(KEEL_HTTP_GET, "/products/search", &search);
        expect_hit(KEEL_HTTP_GET, "/products/123", &byid);
        expect_hit(KEEL_HTTP_GET, "/products/searches", &byid);
        /* The earliest literal decides. */
        expect_hit(KEEL_HTTP_GET, "/a/b/c", &a2);
        expect_hit(KEEL_HTTP_GET, "/a/z/c", &a1);
        expect_hit(KEEL_HTTP_GET, "/a/b/z", &a2);
        expect_404(KEEL_HTTP_GET, "/a/z/z");
    }
}

static void test_specificity_typed_beats_any(void **state)
{
    static const struct keel_route any = R(KEEL_HTTP_GET, "/p/{name}");
    static const struct keel_route num = R(KEEL_HTTP_GET, "/p/{id:int}");
    static const struct keel_route uid = R(KEEL_HTTP_GET, "/p/{id:uuid}");
    static const struct keel_route lit = R(KEEL_HTTP_GET, "/p/42");
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&any), KEEL_OK);
    assert_int_equal(add(&num), KEEL_OK);
    assert_int_equal(add(&uid), KEEL_OK);
    assert_int_equal(add(&lit), KEEL_OK);
    expect_hit(KEEL_HTTP_GET, "/p/7", &num);
    expect_hit(KEEL_HTTP_GET, "/p/" UUID_LO, &uid);
    expect_hit(KEEL_HTTP_GET, "/p/abc", &any);
    expect_hit(KEEL_HTTP_GET, "/p/42", &lit);
    match(KEEL_HTTP_GET, "/p/abc", &mt);
    assert_true(keel_str_eq(mt.names[0], "name"));
}

static void test_trailing_slash_and_empty_segments(void **state)
{
    static const struct keel_route root = R(KEEL_HTTP_GET, "/");
    static const struct keel_route things = R(KEEL_HTTP_GET, "/things");
    static const struct keel_route sub = R(KEEL_HTTP_GET, "/things/{id}/x");

    (void)state;
    assert_int_equal(add(&root), KEEL_OK);
    assert_int_equal(add(&things), KEEL_OK);
    assert_int_equal(add(&sub), KEEL_OK);
    expect_hit(KEEL_HTTP_GET, "/things", &things);
    expect_404(KEEL_HTTP_GET, "/things/");
    expect_404(KEEL_HTTP_GET, "//things");
    expect_404(KEEL_HTTP_GET, "/things//x"); /* {id} never matches an empty segment */
    expect_404(KEEL_HTTP_GET, "/things/1/x/");
    expect_404(KEEL_HTTP_GET, "//");
    expect_404(KEEL_HTTP_GET, "");
    expect_404(KEEL_HTTP_GET, "things");
    expect_404(KEEL_HTTP_GET, "*");
    expect_hit(KEEL_HTTP_GET, "/", &root);
    expect_hit(KEEL_HTTP_GET, "/things/1/x", &sub);
}

/* The label is the pattern without parameter types, for logs and metrics. */
static void test_route_labels(void **state)
{
    static const struct keel_route order = R(KEEL_HTTP_GET, "/orders/{id:uuid}");
    static const struct keel_route mixed = R(KEEL_HTTP_POST, "/a/{n:int}/b/{x}/c");
    static const struct keel_route health = R(KEEL_HTTP_GET, "/health");
    static const struct keel_route root = R(KEEL_HTTP_GET, "/");
    struct keel_match mt;

    (void)state;
    assert_int_equal(add(&order), KEEL_OK);
    assert_int_equal(add(&mixed), KEEL_OK);
    assert_int_equal(add(&health), KEEL_OK);
    assert_int_equal(add(&root), KEEL_OK);
    match(KEEL_HTTP_GET, "/orders/" UUID_LO, &mt);
    assert_non_null(mt.label);
    assert_string_equal(mt.label, "/orders/{id}");
    match(KEEL_HTTP_HEAD, "/orders/" UUID_LO, &mt); /* via the GET route */
    assert_string_equal(mt.label, "/orders/{id}");
    match(KEEL_HTTP_POST, "/a/1/b/zz/c", &mt);
    assert_string_equal(mt.label, "/a/{n}/b/{x}/c");
    match(KEEL_HTTP_GET, "/health", &mt);
    assert_string_equal(mt.label, "/health");
    match(KEEL_HTTP_GET, "/", &mt);
    assert_string_equal(mt.label, "/");
    /* No route, no label: 405 and automatic OPTIONS included. */
    match(KEEL_HTTP_DELETE, "/health", &mt);
    assert_int_equal(mt.miss, 405);
    assert_null(mt.label);
    match(KEEL_HTTP_OPTIONS, "/health", &mt);
    assert_true(mt.auto_options);
    assert_null(mt.label);
    expect_404(KEEL_HTTP_GET, "/orders/x");
}

/* ------------------------------------------------------------- patterns */

static void test_invalid_patterns(void **state)
{
    static const char *const bad[] = {
        "",            /* empty */
        "things",      /* relative */
        "things/x",    /* relative */
        "//",          /* empty segment */
        "/a//b",       /* empty segment */
        "/a/",         /* trailing slash = empty last segment */
        "//a",         /* empty first segment */
        "/{id:float}", /* unknown type */
        "/{id:UUID}",  /* types are lowercase */
        "/{id:}",      /* empty type */
        "/{id:int:x}", /* junk after the type */
        "/{:int}",     /* no name */
        "/{}",         /* no name */
        "/{id",        /* unbalanced */
        "/id}",        /* unbalanced */
        "/a/{id",      /* unbalanced, last segment */
        "/{a/b}",      /* braces across segments */
        "/x{id}",      /* a parameter must be the whole segment */
        "/{id}x",      /* a parameter must be the whole segment */
        "/a{b",        /* stray brace in a literal */
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        struct keel_route rt = route(KEEL_HTTP_GET, bad[i]);
        keel_status rc = add(&rt);

        if (rc != KEEL_E_INVALID)
            print_error("pattern accepted: \"%s\"\n", bad[i]);
        assert_int_equal(rc, KEEL_E_INVALID);
    }
    assert_int_equal(count_routes(), 0);
}

/* Deny by default: an authenticated route must name its permission. */
static void test_authenticated_route_needs_permission(void **state)
{
    struct keel_route rt = route(KEEL_HTTP_GET, "/secret");

    (void)state;
    rt.auth = KEEL_AUTH_REQUIRED;
    assert_int_equal(add(&rt), KEEL_E_INVALID);
    rt.permission = "";
    assert_int_equal(add(&rt), KEEL_E_INVALID);
    rt.permission = "secrets:read";
    assert_int_equal(add(&rt), KEEL_OK);
    assert_int_equal(count_routes(), 1);
}

/* Brace pairs must balance inside a parameter: these are typos for
 * "/{id}", not parameters named "{id", "id}" or "a{b". */
static void test_unbalanced_braces_in_param(void **state)
{
    static const char *const bad[] = {"/{{id}}", "/{{id}", "/{id}}", "/{a{b}", "/{a}b}"};
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        struct keel_route rt = route(KEEL_HTTP_GET, bad[i]);
        keel_status rc = add(&rt);

        if (rc != KEEL_E_INVALID)
            print_error("pattern accepted: \"%s\"\n", bad[i]);
        assert_int_equal(rc, KEEL_E_INVALID);
    }
}

static void test_invalid_route_fields(void **state)
{
    struct keel_route rt;

    (void)state;
    rt = route(KEEL_HTTP_GET, NULL);
    assert_int_equal(add(&rt), KEEL_E_INVALID);
    rt = route(KEEL_HTTP_GET, "/ok");
    rt.handler = NULL;
    assert_int_equal(add(&rt), KEEL_E_INVALID);
    rt = route(KEEL_HTTP_METHOD_COUNT, "/ok");
    assert_int_equal(add(&rt), KEEL_E_INVALID);
    rt = route((enum keel_method) - 1, "/ok");
    assert_int_equal(add(&rt), KEEL_E_INVALID);
    assert_int_equal(count_routes(), 0);
}

static void test_param_limit(void **state)
{
    static const struct keel_route eight = R(KEEL_HTTP_GET, "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}");
    static const struct keel_route nine =
        R(KEEL_HTTP_GET, "/x/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}");
    static const struct keel_route nine_lit =
        R(KEEL_HTTP_GET, "/{a}/l/{b}/l/{c}/l/{d}/l/{e}/l/{f}/l/{g}/l/{h}/l/{i:int}");
    struct keel_match mt;
    unsigned i;

    (void)state;
    assert_int_equal(add(&eight), KEEL_OK);
    assert_int_equal(add(&nine), KEEL_E_INVALID);
    assert_int_equal(add(&nine_lit), KEEL_E_INVALID);
    match(KEEL_HTTP_GET, "/1/2/3/4/5/6/7/8", &mt);
    assert_ptr_equal(mt.route, &eight);
    assert_int_equal(mt.nparams, KEEL_MAX_PARAMS);
    for (i = 0; i < KEEL_MAX_PARAMS; i++) {
        char name[2] = {(char)('a' + i), 0}, value[2] = {(char)('1' + i), 0};

        assert_true(keel_str_eq(mt.names[i], name));
        assert_true(keel_str_eq(mt.values[i], value));
    }
    assert_int_equal(count_routes(), 1);
}

static void test_conflicts(void **state)
{
    static const struct keel_route a = R(KEEL_HTTP_GET, "/u/{id}");
    static const struct keel_route a_same = R(KEEL_HTTP_GET, "/u/{id}");
    static const struct keel_route a_renamed = R(KEEL_HTTP_GET, "/u/{uid}");
    static const struct keel_route a_int = R(KEEL_HTTP_GET, "/u/{id:int}");
    static const struct keel_route a_int2 = R(KEEL_HTTP_GET, "/u/{n:int}");
    static const struct keel_route a_uuid = R(KEEL_HTTP_GET, "/u/{id:uuid}");
    static const struct keel_route a_post = R(KEEL_HTTP_POST, "/u/{x}");
    static const struct keel_route lit = R(KEEL_HTTP_GET, "/u/me");
    static const struct keel_route lit2 = R(KEEL_HTTP_GET, "/u/me");
    static const struct keel_route root = R(KEEL_HTTP_GET, "/");
    static const struct keel_route root2 = R(KEEL_HTTP_GET, "/");
    static const struct keel_route deeper = R(KEEL_HTTP_GET, "/u/{id}/x");

    (void)state;
    assert_int_equal(add(&a), KEEL_OK);
    assert_int_equal(add(&a_same), KEEL_E_CONFLICT);
    assert_int_equal(add(&a), KEEL_E_CONFLICT);
    assert_int_equal(add(&a_renamed), KEEL_E_CONFLICT); /* names do not matter */
    assert_int_equal(add(&a_int), KEEL_OK);             /* another type: another shape */
    assert_int_equal(add(&a_int2), KEEL_E_CONFLICT);
    assert_int_equal(add(&a_uuid), KEEL_OK);
    assert_int_equal(add(&a_post), KEEL_OK); /* another method */
    assert_int_equal(add(&lit), KEEL_OK);
    assert_int_equal(add(&lit2), KEEL_E_CONFLICT);
    assert_int_equal(add(&root), KEEL_OK);
    assert_int_equal(add(&root2), KEEL_E_CONFLICT);
    assert_int_equal(add(&deeper), KEEL_OK);
    assert_int_equal(count_routes(), 7);
    /* The refused routes changed nothing. */
    expect_hit(KEEL_HTTP_GET, "/u/abc", &a);
    expect_hit(KEEL_HTTP_GET, "/u/12", &a_int);
    expect_hit(KEEL_HTTP_GET, "/u/me", &lit);
    expect_hit(KEEL_HTTP_POST, "/u/abc", &a_post);
    expect_hit(KEEL_HTTP_GET, "/", &root);
}

/* ------------------------------------------------------------- limits */

/* "/s0/s1/.../s<n-1>" in a static buffer (routes must outlive the router). */
static const char *seg_path(char *buf, size_t size, int n, const char *seg)
{
    size_t k = 0;
    int i;

    for (i = 0; i < n; i++)
        k += (size_t)snprintf(buf + k, size - k, "/%s%d", seg, i);
    return buf;
}

static void test_segment_limit(void **state)
{
    static char p31[512], p32[512], p33[512];
    static struct keel_route r32, r33;

    (void)state;
    seg_path(p32, sizeof(p32), KEEL_ROUTER_MAX_SEGMENTS, "s");
    seg_path(p33, sizeof(p33), KEEL_ROUTER_MAX_SEGMENTS + 1, "s");
    seg_path(p31, sizeof(p31), KEEL_ROUTER_MAX_SEGMENTS - 1, "s");
    r32 = route(KEEL_HTTP_GET, p32);
    r33 = route(KEEL_HTTP_GET, p33);
    assert_int_equal(add(&r32), KEEL_OK);
    assert_int_equal(add(&r33), KEEL_E_INVALID);
    assert_int_equal(count_routes(), 1);
    /* A path with too many segments is never routed. */
    expect_404(KEEL_HTTP_GET, p33);
    expect_404(KEEL_HTTP_GET, p31);
}

/* A route with the maximum number of segments must be reachable. */
static void test_max_segments_match(void **state)
{
    static char lit[512], par[512];
    static struct keel_route rlit, rpar;
    char path[512];
    int i;
    size_t k = 0;

    (void)state;
    seg_path(lit, sizeof(lit), KEEL_ROUTER_MAX_SEGMENTS, "s");
    /* Same depth, a parameter first: "/{p}/t1/.../t31". */
    k = (size_t)snprintf(par, sizeof(par), "/{p}");
    for (i = 1; i < KEEL_ROUTER_MAX_SEGMENTS; i++)
        k += (size_t)snprintf(par + k, sizeof(par) - k, "/t%d", i);
    rlit = route(KEEL_HTTP_GET, lit);
    rpar = route(KEEL_HTTP_GET, par);
    assert_int_equal(add(&rlit), KEEL_OK);
    assert_int_equal(add(&rpar), KEEL_OK);

    k = (size_t)snprintf(path, sizeof(path), "/x");
    for (i = 1; i < KEEL_ROUTER_MAX_SEGMENTS; i++)
        k += (size_t)snprintf(path + k, sizeof(path) - k, "/t%d", i);
    expect_hit(KEEL_HTTP_GET, path, &rpar);
    expect_hit(KEEL_HTTP_GET, lit, &rlit);
}

static void test_many_routes(void **state)
{
    static char patterns[100][16];
    static struct keel_route routes[100];
    char path[32];
    int i;

    (void)state;
    for (i = 0; i < 100; i++) {
        snprintf(patterns[i], sizeof(patterns[i]), "/r/%d", i);
        routes[i] = route(i % 2 ? KEEL_HTTP_POST : KEEL_HTTP_GET, patterns[i]);
        assert_int_equal(add(&routes[i]), KEEL_OK);
    }
    assert_int_equal(count_routes(), 100);
    for (i = 0; i < 100; i++) {
        snprintf(path, sizeof(path), "/r/%d", i);
        expect_hit(i % 2 ? KEEL_HTTP_POST : KEEL_HTTP_GET, path, &routes[i]);
    }
    expect_404(KEEL_HTTP_GET, "/r/100");
}

/* ------------------------------------------------------------- each */

static const struct keel_route *g_seen[16];
static unsigned g_nseen;

static void collect(const struct keel_route *rt, void *arg)
{
    (*(unsigned *)arg)++;
    if (g_nseen < KEEL_ARRAY_LEN(g_seen))
        g_seen[g_nseen++] = rt;
}

static unsigned count_routes(void)
{
    unsigned n = 0;

    g_nseen = 0;
    keel_router_each(g_r, collect, &n);
    return n;
}

static void test_each_in_order(void **state)
{
    static const struct keel_route r1 = R(KEEL_HTTP_GET, "/one");
    static const struct keel_route r2 = R(KEEL_HTTP_POST, "/two");
    static const struct keel_route r3 = R(KEEL_HTTP_GET, "/three/{x}");

    (void)state;
    assert_int_equal(count_routes(), 0);
    assert_int_equal(add(&r1), KEEL_OK);
    assert_int_equal(add(&r2), KEEL_OK);
    assert_int_equal(add(&r3), KEEL_OK);
    assert_int_equal(count_routes(), 3);
    assert_ptr_equal(g_seen[0], &r1);
    assert_ptr_equal(g_seen[1], &r2);
    assert_ptr_equal(g_seen[2], &r3);
    keel_router_free(NULL); /* allowed */
}

static void test_empty_router(void **state)
{
    (void)state;
    expect_404(KEEL_HTTP_GET, "/");
    expect_404(KEEL_HTTP_OPTIONS, "/");
    expect_404(KEEL_HTTP_HEAD, "/x");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_literal_routes),
        T(test_match_uses_len),
        T(test_param_uuid),
        T(test_param_int),
        T(test_param_any_raw),
        T(test_multiple_params_in_order),
        T(test_404_vs_405),
        T(test_allow_string),
        T(test_allow_string_from_match),
        T(test_head_falls_back_to_get),
        T(test_auto_options),
        T(test_specificity_literal_beats_param),
        T(test_specificity_typed_beats_any),
        T(test_trailing_slash_and_empty_segments),
        T(test_route_labels),
        T(test_invalid_patterns),
        T(test_authenticated_route_needs_permission),
        T(test_unbalanced_braces_in_param),
        T(test_invalid_route_fields),
        T(test_param_limit),
        T(test_conflicts),
        T(test_segment_limit),
        T(test_max_segments_match),
        T(test_many_routes),
        T(test_each_in_order),
        T(test_empty_router),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
