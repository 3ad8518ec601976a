/*
 * test_json.c - unit tests for src/core/json.c.
 *
 * Writer: nesting and commas, keys, every value type, non-finite doubles,
 * string escaping (quote, backslash, control characters), UTF-8 kept when
 * valid and replaced byte by byte with U+FFFD when not (overlong forms and
 * surrogates included), the sticky errors (depth, bound, unbalanced).
 *
 * Parser (keel_json_parse): RFC 8259 strictness (trailing data, comments,
 * single quotes, trailing commas, number grammar, raw control characters,
 * UTF-8), duplicate keys wherever they hide, the depth bound, NUL bytes,
 * exact 64-bit integers and round trips through json-c.
 *
 * Depth, as src/core/json.c counts it (the scanner's depth counter goes up
 * at every '[' or '{'): the number of nested containers.
 * A scalar has depth 0, "[]" and "[1]" depth 1, "[[]]" depth 2. With the
 * default bound 32 nested containers parse and 33 are rejected, whether the
 * innermost one is empty or holds a value, which is exactly what the writer
 * can produce (it refuses to open a 33rd container).
 */
#include <float.h>
#include <json-c/json.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/buf.h"
#include "keel/json.h"

#include "test.h"

#define FFFD "\xef\xbf\xbd"

/* ------------------------------------------------------------ helpers */

/* Parses s with json-c alone (strict, UTF-8 checked, whole input used), to
 * validate writer output independently of keel_json_parse. */
static struct json_object *jc_parse(const char *s, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, s, (int)len);
    if (json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != len) {
        if (o)
            json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static const char *plain(struct json_object *o)
{
    return json_object_to_json_string_ext(o,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* Strict UTF-8 check (RFC 3629): no overlongs, no surrogates, <= U+10FFFF. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        size_t need, k;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            need = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (i + need >= n) /* the continuation bytes are s[i+1..i+need] */
            return false;
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

/* Runs keel_json_escape on (s, len) into a fresh buffer and compares the
 * result with `want` (which includes the quotes). */
static void check_escape(const char *s, size_t len, const char *want)
{
    struct keel_buf b;

    keel_buf_init(&b, 1 << 16);
    assert_int_equal(keel_json_escape(&b, s, len), KEEL_OK);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    keel_buf_free(&b);
}

#define ESC(lit, want) check_escape((lit), sizeof(lit) - 1, (want))

static keel_status
parse(const char *s, size_t len, int depth, struct json_object **out, const char **why)
{
    *out = (struct json_object *)(uintptr_t)1; /* must be overwritten */
    *why = NULL;
    return keel_json_parse(s, len, depth, out, why);
}

/* Expects rejection (KEEL_E_INVALID, *out NULL, a reason). */
static void check_rejected(const char *s, size_t len)
{
    struct json_object *o;
    const char *why;
    keel_status rc = parse(s, len, KEEL_JSON_MAX_DEPTH, &o, &why);
    bool had_tree = o != NULL;

    if (rc != KEEL_E_INVALID)
        print_error("accepted: %.*s\n", (int)len, s);
    if (o)
        json_object_put(o); /* before asserting, so a failure does not leak */
    assert_int_equal(rc, KEEL_E_INVALID);
    assert_false(had_tree);
    assert_non_null(why);
    assert_true(why[0] != '\0');
}

#define REJECT(lit) check_rejected((lit), sizeof(lit) - 1)

/* Expects acceptance and a json-c rendering equal to `want`. */
static void check_accepted(const char *s, size_t len, int depth, const char *want)
{
    struct json_object *o;
    const char *why;
    keel_status rc = parse(s, len, depth, &o, &why);
    char got[4096] = "";

    if (rc != KEEL_OK)
        print_error("rejected (%s): %.*s\n", why ? why : "?", (int)len, s);
    if (o) {
        snprintf(got, sizeof(got), "%s", plain(o));
        json_object_put(o); /* before asserting, so a failure does not leak */
    }
    assert_int_equal(rc, KEEL_OK);
    if (want)
        assert_string_equal(got, want);
}

#define ACCEPT(lit, want) check_accepted((lit), sizeof(lit) - 1, KEEL_JSON_MAX_DEPTH, (want))

/* n nested arrays around `inner` (which may be empty). */
static char *nested(int n, const char *inner, size_t *len)
{
    size_t il = strlen(inner), k = 0;
    char *s = malloc((size_t)n * 2 + il + 1);
    int i;

    assert_non_null(s);
    for (i = 0; i < n; i++)
        s[k++] = '[';
    memcpy(s + k, inner, il);
    k += il;
    for (i = 0; i < n; i++)
        s[k++] = ']';
    s[k] = '\0';
    *len = k;
    return s;
}

static keel_status parse_nested(int n, const char *inner, int max_depth, const char **why)
{
    size_t len;
    char *s = nested(n, inner, &len);
    struct json_object *o;
    keel_status rc = parse(s, len, max_depth, &o, why);

    if (o)
        json_object_put(o);
    free(s);
    return rc;
}

/* ------------------------------------------------------------- writer */

static void test_writer_nesting_and_commas(void **state)
{
    struct keel_buf b;
    struct keel_json j;

    (void)state;
    keel_buf_init(&b, 4096);
    keel_json_begin(&j, &b);
    keel_json_obj_open(&j);
    keel_json_key(&j, "a");
    keel_json_int(&j, 1);
    keel_json_key(&j, "b");
    keel_json_arr_open(&j);
    keel_json_bool(&j, true);
    keel_json_bool(&j, false);
    keel_json_null(&j);
    keel_json_str(&j, "s");
    keel_json_obj_open(&j);
    keel_json_key(&j, "c");
    keel_json_arr_open(&j);
    keel_json_arr_close(&j);
    keel_json_obj_close(&j);
    keel_json_arr_open(&j);
    keel_json_arr_close(&j);
    keel_json_arr_close(&j);
    keel_json_key(&j, "d");
    keel_json_obj_open(&j);
    keel_json_obj_close(&j);
    keel_json_key(&j, "e");
    keel_json_int(&j, -3);
    keel_json_obj_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_string_equal(b.data,
                        "{\"a\":1,\"b\":[true,false,null,\"s\",{\"c\":[]},[]],\"d\":{},\"e\":-3}");
    keel_buf_free(&b);
}

static void test_writer_empty_and_scalar_top(void **state)
{
    struct keel_buf b;
    struct keel_json j;

    (void)state;
    keel_buf_init(&b, 64);
    keel_json_begin(&j, &b);
    keel_json_obj_open(&j);
    keel_json_obj_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_string_equal(b.data, "{}");

    keel_buf_reset(&b);
    keel_json_begin(&j, &b);
    keel_json_str(&j, "only");
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_string_equal(b.data, "\"only\"");

    /* A writer reused after begin starts without a pending comma. */
    keel_buf_reset(&b);
    keel_json_begin(&j, &b);
    keel_json_arr_open(&j);
    keel_json_int(&j, 1);
    keel_json_arr_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_string_equal(b.data, "[1]");
    keel_buf_free(&b);
}

static void test_writer_integers(void **state)
{
    struct keel_buf b;
    struct keel_json j;
    struct json_object *o;

    (void)state;
    keel_buf_init(&b, 4096);
    keel_json_begin(&j, &b);
    keel_json_arr_open(&j);
    keel_json_int(&j, 0);
    keel_json_int(&j, -1);
    keel_json_int(&j, INT64_MAX);
    keel_json_int(&j, INT64_MIN);
    keel_json_uint(&j, 0);
    keel_json_uint(&j, UINT64_MAX);
    keel_json_uint(&j, (uint64_t)INT64_MAX + 1);
    keel_json_arr_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_string_equal(b.data, "[0,-1,9223372036854775807,-9223372036854775808,0,"
                                "18446744073709551615,9223372036854775808]");
    o = jc_parse(b.data, b.len);
    assert_non_null(o);
    assert_int_equal(json_object_get_int64(json_object_array_get_idx(o, 2)), INT64_MAX);
    assert_true(json_object_get_int64(json_object_array_get_idx(o, 3)) == INT64_MIN);
    assert_true(json_object_get_uint64(json_object_array_get_idx(o, 5)) == UINT64_MAX);
    json_object_put(o);
    keel_buf_free(&b);
}

static void test_writer_doubles(void **state)
{
    static const double vals[] = {0.5,    -2.25,   1.0,  0.1,        1e300, -1e-300,
                                  5e-324, DBL_MAX, -0.0, 123456.789, 1e21,  3.0e-5};
    struct keel_buf b;
    struct keel_json j;
    size_t i;

    (void)state;
    keel_buf_init(&b, 4096);
    for (i = 0; i < KEEL_ARRAY_LEN(vals); i++) {
        struct json_object *o;
        char *end;
        double back;

        keel_buf_reset(&b);
        keel_json_begin(&j, &b);
        keel_json_arr_open(&j);
        keel_json_double(&j, vals[i]);
        keel_json_arr_close(&j);
        assert_int_equal(keel_json_end(&j), KEEL_OK);
        /* Valid JSON, and the digits give back exactly the same double. */
        o = jc_parse(b.data, b.len);
        if (!o)
            print_error("not JSON: %s\n", b.data);
        assert_non_null(o);
        json_object_put(o);
        back = strtod(b.data + 1, &end);
        assert_int_equal(*end, ']');
        assert_memory_equal(&back, &vals[i], sizeof(back));
    }
    keel_buf_reset(&b);
    keel_json_begin(&j, &b);
    keel_json_arr_open(&j);
    keel_json_double(&j, 0.5);
    keel_json_double(&j, -2.25);
    keel_json_double(&j, 1.0);
    keel_json_arr_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_string_equal(b.data, "[0.5,-2.25,1]");
    keel_buf_free(&b);
}

static void test_writer_nonfinite_is_null(void **state)
{
    struct keel_buf b;
    struct keel_json j;

    (void)state;
    keel_buf_init(&b, 256);
    keel_json_begin(&j, &b);
    keel_json_obj_open(&j);
    keel_json_key(&j, "nan");
    keel_json_double(&j, NAN);
    keel_json_key(&j, "inf");
    keel_json_double(&j, INFINITY);
    keel_json_key(&j, "ninf");
    keel_json_double(&j, -INFINITY);
    keel_json_key(&j, "arr");
    keel_json_arr_open(&j);
    keel_json_double(&j, -NAN);
    keel_json_double(&j, 2.0);
    keel_json_double(&j, INFINITY);
    keel_json_arr_close(&j);
    keel_json_obj_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_string_equal(b.data, "{\"nan\":null,\"inf\":null,\"ninf\":null,\"arr\":[null,2,null]}");
    keel_buf_free(&b);
}

static void test_writer_str_null_raw(void **state)
{
    struct keel_buf b;
    struct keel_json j;

    (void)state;
    keel_buf_init(&b, 256);
    keel_json_begin(&j, &b);
    keel_json_arr_open(&j);
    keel_json_str(&j, NULL);
    keel_json_strn(&j, "a\0b", 3);
    keel_json_strn(&j, "xyz", 2);
    keel_json_strn(&j, "", 0);
    keel_json_raw(&j, "{\"pre\":[1,2]}", 13);
    keel_json_str(&j, "after");
    keel_json_arr_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_string_equal(b.data, "[null,\"a\\u0000b\",\"xy\",\"\",{\"pre\":[1,2]},\"after\"]");
    keel_buf_free(&b);
}

static void test_writer_keys_escaped(void **state)
{
    struct keel_buf b;
    struct keel_json j;
    struct json_object *o, *v;

    (void)state;
    keel_buf_init(&b, 256);
    keel_json_begin(&j, &b);
    keel_json_obj_open(&j);
    keel_json_key(&j, "q\"b\\n\n");
    keel_json_int(&j, 1);
    keel_json_key(&j, "");
    keel_json_int(&j, 2);
    keel_json_key(&j, "\xc3\xa9\x01");
    keel_json_int(&j, 3);
    keel_json_obj_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_string_equal(b.data, "{\"q\\\"b\\\\n\\n\":1,\"\":2,\"\xc3\xa9\\u0001\":3}");
    o = jc_parse(b.data, b.len);
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "q\"b\\n\n", &v));
    assert_int_equal(json_object_get_int(v), 1);
    assert_true(json_object_object_get_ex(o, "", &v));
    assert_true(json_object_object_get_ex(o, "\xc3\xa9\x01", &v));
    json_object_put(o);
    keel_buf_free(&b);
}

static void test_escape_specials(void **state)
{
    (void)state;
    ESC("", "\"\"");
    ESC("plain text/with:colons", "\"plain text/with:colons\"");
    ESC("\"", "\"\\\"\"");
    ESC("\\", "\"\\\\\"");
    ESC("a\"b\\c", "\"a\\\"b\\\\c\"");
    ESC("\n\r\t", "\"\\n\\r\\t\"");
    ESC("\b\f", "\"\\u0008\\u000c\"");
    ESC("\x01\x1f", "\"\\u0001\\u001f\"");
    ESC("\x00", "\"\\u0000\"");
    ESC("x\x1b[0m", "\"x\\u001b[0m\"");
    ESC("\x20~\x7f", "\" ~\x7f\""); /* DEL needs no escape in JSON */
    ESC("</script>", "\"</script>\"");
}

static void test_escape_all_control_chars(void **state)
{
    struct keel_buf b;
    struct json_object *o;
    char in[32];
    int c;

    (void)state;
    for (c = 0; c < 32; c++)
        in[c] = (char)c;
    keel_buf_init(&b, 1024);
    assert_int_equal(keel_json_escape(&b, in, sizeof(in)), KEEL_OK);
    for (c = 0; c < (int)b.len; c++)
        assert_true((unsigned char)b.data[c] >= 0x20); /* nothing raw left */
    o = jc_parse(b.data, b.len);
    assert_non_null(o);
    assert_int_equal(json_object_get_string_len(o), 32);
    assert_memory_equal(json_object_get_string(o), in, 32);
    json_object_put(o);
    keel_buf_free(&b);
}

static void test_escape_valid_utf8_kept(void **state)
{
    (void)state;
    ESC("\xc2\x80", "\"\xc2\x80\"");                 /* U+0080, smallest 2-byte */
    ESC("\xc3\xa9", "\"\xc3\xa9\"");                 /* U+00E9 */
    ESC("\xdf\xbf", "\"\xdf\xbf\"");                 /* U+07FF */
    ESC("\xe0\xa0\x80", "\"\xe0\xa0\x80\"");         /* U+0800, smallest 3-byte */
    ESC("\xe2\x82\xac", "\"\xe2\x82\xac\"");         /* U+20AC euro */
    ESC("\xed\x9f\xbf", "\"\xed\x9f\xbf\"");         /* U+D7FF, below surrogates */
    ESC("\xee\x80\x80", "\"\xee\x80\x80\"");         /* U+E000, above surrogates */
    ESC("\xef\xbf\xbf", "\"\xef\xbf\xbf\"");         /* U+FFFF */
    ESC("\xf0\x90\x80\x80", "\"\xf0\x90\x80\x80\""); /* U+10000, smallest 4-byte */
    ESC("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\""); /* U+1F600 */
    ESC("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\""); /* U+10FFFF, the last */
    ESC("a\xc3\xa9\"\xe2\x82\xac\n", "\"a\xc3\xa9\\\"\xe2\x82\xac\\n\"");
}

/* Every byte that does not start a valid sequence becomes one U+FFFD; the
 * bytes after it are looked at again. */
static void test_escape_invalid_utf8_replaced(void **state)
{
    (void)state;
    ESC("\xff", "\"" FFFD "\"");
    ESC("\xfe", "\"" FFFD "\"");
    ESC("\x80", "\"" FFFD "\""); /* lone continuation */
    ESC("a\xbf"
        "b",
        "\"a" FFFD "b\"");
    ESC("\xc3", "\"" FFFD "\"");                   /* truncated at the end */
    ESC("\xe2\x82", "\"" FFFD FFFD "\"");          /* truncated 3-byte */
    ESC("\xf0\x9f\x98", "\"" FFFD FFFD FFFD "\""); /* truncated 4-byte */
    ESC("\xc3"
        "A",
        "\"" FFFD "A\""); /* bad continuation */
    ESC("\xe2\x82"
        "A",
        "\"" FFFD FFFD "A\"");
    ESC("\xc3\xc3\xa9", "\"" FFFD "\xc3\xa9\"");            /* restart at next lead */
    ESC("\xf5\x80\x80\x80", "\"" FFFD FFFD FFFD FFFD "\""); /* lead > F4 */
    ESC("\xf8\x88\x80\x80\x80", "\"" FFFD FFFD FFFD FFFD FFFD "\"");
}

static void test_escape_overlong_and_surrogates_replaced(void **state)
{
    (void)state;
    ESC("\xc0\xaf", "\"" FFFD FFFD "\"");                   /* overlong '/' */
    ESC("\xc0\x80", "\"" FFFD FFFD "\"");                   /* overlong NUL */
    ESC("\xc1\xbf", "\"" FFFD FFFD "\"");                   /* overlong U+007F */
    ESC("\xe0\x80\xaf", "\"" FFFD FFFD FFFD "\"");          /* overlong '/' in 3 */
    ESC("\xe0\x9f\xbf", "\"" FFFD FFFD FFFD "\"");          /* overlong U+07FF */
    ESC("\xf0\x80\x80\xaf", "\"" FFFD FFFD FFFD FFFD "\""); /* overlong in 4 */
    ESC("\xf0\x8f\xbf\xbf", "\"" FFFD FFFD FFFD FFFD "\""); /* overlong U+FFFF */
    ESC("\xed\xa0\x80", "\"" FFFD FFFD FFFD "\"");          /* U+D800 */
    ESC("\xed\xbf\xbf", "\"" FFFD FFFD FFFD "\"");          /* U+DFFF */
    ESC("\xed\xa0\xbd\xed\xb8\x80", "\"" FFFD FFFD FFFD FFFD FFFD FFFD "\""); /* CESU pair */
    ESC("\xf4\x90\x80\x80", "\"" FFFD FFFD FFFD FFFD "\"");                   /* U+110000 */
    ESC("\xf7\xbf\xbf\xbf", "\"" FFFD FFFD FFFD FFFD "\"");
}

/* Whatever the bytes, the output is one JSON string of valid UTF-8 with no
 * raw control character, and valid NUL-free input comes back unchanged. */
static void test_escape_random_bytes(void **state)
{
    static const unsigned char pool[] = {0x00, 0x01, 0x1f, '"',  '\\', 'a',  '/',  0x7f,
                                         0x80, 0xbf, 0xc0, 0xc2, 0xc3, 0xdf, 0xe0, 0xed,
                                         0xef, 0xf0, 0xf4, 0xf5, 0xff, 0xa0, 0x9f, 0x8f};
    struct keel_buf b;
    uint64_t x = 0x9e3779b97f4a7c15u;
    int iter;

    (void)state;
    keel_buf_init(&b, 1 << 16);
    for (iter = 0; iter < 20000; iter++) {
        unsigned char in[24];
        size_t n, i;
        struct json_object *o;
        bool has_nul = false;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        n = (size_t)(x % sizeof(in));
        for (i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            in[i] = (x & 1) ? pool[(x >> 8) % sizeof(pool)] : (unsigned char)(x >> 16);
            has_nul |= in[i] == 0;
        }
        keel_buf_reset(&b);
        assert_int_equal(keel_json_escape(&b, (const char *)in, n), KEEL_OK);
        assert_true(utf8_ok((const unsigned char *)b.data, b.len));
        for (i = 0; i < b.len; i++)
            assert_true((unsigned char)b.data[i] >= 0x20);
        o = jc_parse(b.data, b.len);
        assert_non_null(o);
        assert_int_equal(json_object_get_type(o), json_type_string);
        if (!has_nul && utf8_ok(in, n)) {
            assert_int_equal(json_object_get_string_len(o), n);
            assert_memory_equal(json_object_get_string(o), in, n);
        }
        json_object_put(o);
    }
    keel_buf_free(&b);
}

static void test_writer_depth_overflow_sticky(void **state)
{
    struct keel_buf b;
    struct keel_json j;
    size_t len;
    int i;

    (void)state;
    keel_buf_init(&b, 4096);
    keel_json_begin(&j, &b);
    for (i = 0; i < KEEL_JSON_MAX_DEPTH; i++)
        keel_json_arr_open(&j);
    assert_int_equal(j.rc, KEEL_OK);
    keel_json_obj_open(&j); /* the 33rd container */
    assert_int_equal(j.rc, KEEL_E_TOO_LARGE);
    len = b.len;
    /* Sticky: nothing more is written, even calls that would be valid. */
    keel_json_int(&j, 1);
    keel_json_str(&j, "x");
    keel_json_key(&j, "k");
    keel_json_null(&j);
    keel_json_raw(&j, "1", 1);
    for (i = 0; i < KEEL_JSON_MAX_DEPTH + 1; i++)
        keel_json_arr_close(&j);
    keel_json_arr_open(&j);
    assert_int_equal(b.len, len);
    assert_int_equal(keel_json_end(&j), KEEL_E_TOO_LARGE);
    assert_int_equal(keel_json_end(&j), KEEL_E_TOO_LARGE);
    keel_buf_free(&b);
}

/* 32 containers are allowed, and that output parses with the default bound. */
static void test_writer_max_depth_parses(void **state)
{
    struct keel_buf b;
    struct keel_json j;
    struct json_object *o;
    const char *why;
    int i;

    (void)state;
    keel_buf_init(&b, 4096);
    keel_json_begin(&j, &b);
    for (i = 0; i < KEEL_JSON_MAX_DEPTH; i++) {
        if (i % 2) {
            keel_json_obj_open(&j);
            keel_json_key(&j, "k");
        } else {
            keel_json_arr_open(&j);
        }
    }
    keel_json_int(&j, 7);
    for (i = KEEL_JSON_MAX_DEPTH - 1; i >= 0; i--) {
        if (i % 2)
            keel_json_obj_close(&j);
        else
            keel_json_arr_close(&j);
    }
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_int_equal(b.len, 32 + 16 * 4 + 1 + 32); /* brackets, "k": x16, 7 */
    assert_int_equal(keel_json_parse(b.data, b.len, 0, &o, &why), KEEL_OK);
    assert_non_null(o);
    json_object_put(o);
    keel_buf_free(&b);
}

static void test_writer_unbalanced(void **state)
{
    struct keel_buf b;
    struct keel_json j;

    (void)state;
    keel_buf_init(&b, 256);
    keel_json_begin(&j, &b);
    keel_json_arr_close(&j); /* nothing is open */
    assert_int_equal(keel_json_end(&j), KEEL_E_INTERNAL);
    keel_json_arr_open(&j);
    assert_int_equal(b.len, 0);

    keel_json_begin(&j, &b);
    keel_json_obj_open(&j);
    keel_json_key(&j, "a");
    keel_json_int(&j, 1);
    assert_int_equal(keel_json_end(&j), KEEL_E_INTERNAL); /* left open */

    keel_buf_reset(&b);
    keel_json_begin(&j, &b);
    keel_json_arr_open(&j);
    keel_json_arr_close(&j);
    keel_json_obj_close(&j); /* one close too many */
    assert_int_equal(keel_json_end(&j), KEEL_E_INTERNAL);
    assert_string_equal(b.data, "[]");
    keel_buf_free(&b);
}

static void test_writer_buffer_bound(void **state)
{
    struct keel_buf b;
    struct keel_json j;
    size_t len;

    (void)state;
    keel_buf_init(&b, 8);
    keel_json_begin(&j, &b);
    keel_json_arr_open(&j);
    keel_json_int(&j, 12);
    assert_int_equal(j.rc, KEEL_OK);
    keel_json_str(&j, "longer than eight");
    assert_int_equal(j.rc, KEEL_E_TOO_LARGE);
    len = b.len;
    assert_true(len <= 8);
    keel_json_int(&j, 3);
    keel_json_arr_close(&j);
    assert_int_equal(b.len, len);
    assert_int_equal(keel_json_end(&j), KEEL_E_TOO_LARGE);

    /* The document fits exactly in a buffer of its own size (9 bytes)... */
    keel_buf_free(&b);
    keel_buf_init(&b, 9);
    keel_json_begin(&j, &b);
    keel_json_arr_open(&j);
    keel_json_int(&j, 12);
    keel_json_str(&j, "ab");
    keel_json_arr_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_OK);
    assert_string_equal(b.data, "[12,\"ab\"]");
    assert_int_equal(b.len, 9);
    keel_buf_free(&b);

    /* ...and one byte less fails on the closing bracket. */
    keel_buf_init(&b, 8);
    keel_json_begin(&j, &b);
    keel_json_arr_open(&j);
    keel_json_int(&j, 12);
    keel_json_str(&j, "ab");
    assert_int_equal(j.rc, KEEL_OK);
    keel_json_arr_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_E_TOO_LARGE);
    assert_string_equal(b.data, "[12,\"ab\"");
    keel_buf_free(&b);
}

/* --------------------------------------------------------------- parse */

static void test_parse_valid_documents(void **state)
{
    (void)state;
    ACCEPT("{}", "{}");
    ACCEPT("[]", "[]");
    ACCEPT("{\"a\":1}", "{\"a\":1}");
    ACCEPT("  {\"a\" : [ 1 , 2 ] }  ", "{\"a\":[1,2]}");
    ACCEPT("\t\r\n[true,false,null]\t\r\n", "[true,false,null]");
    ACCEPT("\"str\"", "\"str\"");
    ACCEPT("[\"\\u00e9\\n\\/\\\"\"]", "[\"\xc3\xa9\\n/\\\"\"]");
    ACCEPT("[\"\\ud83d\\ude00\"]", "[\"\xf0\x9f\x98\x80\"]");
    ACCEPT("[0,-0.5,1e10,1E+2,-3.25e-3]", "[0,-0.5,1e10,1E+2,-3.25e-3]");
    ACCEPT("{\"a\":{\"b\":{\"c\":[{}]}}}", "{\"a\":{\"b\":{\"c\":[{}]}}}");
    ACCEPT("[\"a\x7f\"]", "[\"a\x7f\"]");
    /* Values may contain every structural character. */
    ACCEPT("{\"k\":\"{:}\",\"l\":\"[,]\"}", "{\"k\":\"{:}\",\"l\":\"[,]\"}");
}

/* RFC 8259 allows any value at the top level. */
static void test_parse_top_level_scalars(void **state)
{
    struct json_object *o;
    const char *why;

    (void)state;
    /* With trailing whitespace these already work. */
    ACCEPT("123 ", "123");
    ACCEPT("true\n", "true");
    ACCEPT("\"x\"", "\"x\"");
    /* A document may end right after its last digit or letter. */
    ACCEPT("123", "123");
    ACCEPT("0", "0");
    ACCEPT("-7", "-7");
    ACCEPT("1.5", "1.5");
    ACCEPT("true", "true");
    ACCEPT("false", "false");
    ACCEPT(" 42", "42");
    assert_int_equal(parse("9223372036854775807", 19, 32, &o, &why), KEEL_OK);
    assert_non_null(o);
    assert_true(json_object_get_int64(o) == INT64_MAX);
    json_object_put(o);
}

static void test_parse_literal_null(void **state)
{
    struct json_object *o;
    const char *why;

    (void)state;
    assert_int_equal(parse("null ", 5, 32, &o, &why), KEEL_OK);
    assert_null(o);
    assert_int_equal(parse(" \n null\t", 8, 32, &o, &why), KEEL_OK);
    assert_null(o);
    assert_int_equal(parse("[null]", 6, 32, &o, &why), KEEL_OK);
    assert_non_null(o);
    json_object_put(o);
    /* The exact document "null". */
    assert_int_equal(parse("null", 4, 32, &o, &why), KEEL_OK);
    assert_null(o);
    REJECT("nul");
    REJECT("nulll");
    REJECT("NULL");
}

static void test_parse_trailing_garbage(void **state)
{
    (void)state;
    REJECT("{}x");
    REJECT("{} x");
    REJECT("{} {}");
    REJECT("{},");
    REJECT("[1]]");
    REJECT("[1] ]");
    REJECT("\"a\"\"b\"");
    REJECT("1 2");
    REJECT("[1]\x80");
    REJECT("[1]\f");           /* form feed is not JSON whitespace */
    REJECT("\xef\xbb\xbf[1]"); /* nor is a byte order mark */
}

static void test_parse_comments(void **state)
{
    (void)state;
    REJECT("/*c*/{}");
    REJECT("{}//c");
    REJECT("{}/**/");
    REJECT("{} /* x */");
    REJECT("[1 /*c*/]");
    REJECT("{\"a\":1 /* c */}");
    REJECT("# c\n{}");
    REJECT("{\"a\"://c\n1}");
}

static void test_parse_single_quoted_values(void **state)
{
    (void)state;
    REJECT("['a']");
    REJECT("{\"a\":'x'}");
    REJECT("'a'");
}

static void test_parse_single_quoted_keys(void **state)
{
    (void)state;
    REJECT("{'a':1}");
    REJECT("{\"a\":{'b':2}}");
}

static void test_parse_trailing_commas(void **state)
{
    (void)state;
    REJECT("[1,]");
    REJECT("{\"a\":1,}");
    REJECT("[,1]");
    REJECT("[1,,2]");
    REJECT("{,}");
    REJECT("[[1],]");
    REJECT("{\"a\":[1,],\"b\":2}");
}

static void test_parse_syntax_errors(void **state)
{
    (void)state;
    REJECT("[1,2");
    REJECT("{\"a\":");
    REJECT("\"abc");
    REJECT("{");
    REJECT("[");
    REJECT("]");
    REJECT(":");
    REJECT("{a:1}");
    REJECT("{\"a\" 1}");
    REJECT("{\"a\":1 \"b\":2}");
    REJECT("[1 2]");
    REJECT("[\"\\x41\"]");
    REJECT("[\"\\q\"]");
    REJECT("[\"\\u00\"]");
    REJECT("[\"\\uZZZZ\"]");
    REJECT("TRUE");
    REJECT("[True]");
    REJECT("   ");
}

static void test_parse_number_grammar(void **state)
{
    (void)state;
    REJECT("[01]");
    REJECT("[-01]");
    REJECT("[.5]");
    REJECT("[+1]");
    REJECT("[0x10]");
    REJECT("[1e]");
    REJECT("[-]");
    REJECT("[nan]");
    REJECT("[--1]");
}

/* NaN, Infinity and "1." are not JSON numbers (RFC 8259 section 6). */
static void test_parse_nonfinite_and_bare_dot(void **state)
{
    (void)state;
    REJECT("[NaN]");
    REJECT("[Infinity]");
    REJECT("[-Infinity]");
    REJECT("{\"x\":NaN}");
    REJECT("[1.]");
}

/* Unescaped characters below U+0020 are not allowed in strings (RFC 8259
 * section 7). */
static void test_parse_raw_control_chars(void **state)
{
    (void)state;
    REJECT("[\"a\tb\"]");
    REJECT("[\"a\nb\"]");
    REJECT("[\"\x01\"]");
    REJECT("[\"\x1f\"]");
    REJECT("{\"k\x02\":1}");
}

static void check_dup(const char *s)
{
    struct json_object *o;
    const char *why;

    if (parse(s, strlen(s), KEEL_JSON_MAX_DEPTH, &o, &why) != KEEL_E_INVALID)
        print_error("duplicate not found: %s\n", s);
    assert_null(o);
    assert_non_null(why);
    assert_string_equal(why, "duplicate object key");
}

static void test_parse_duplicate_keys(void **state)
{
    (void)state;
    /* top level */
    check_dup("{\"a\":1,\"a\":2}");
    check_dup("{\"a\":1,\"a\":1}");
    check_dup("{\"a\":1,\"b\":2,\"c\":3,\"b\":4}");
    check_dup("{\"a\":{\"x\":1},\"a\":{\"y\":1,\"z\":2}}");
    check_dup("{\"a\":[],\"b\":{},\"a\":[]}");
    /* nested */
    check_dup("{\"a\":{\"b\":1,\"b\":2}}");
    check_dup("{\"a\":{\"b\":{\"c\":1,\"c\":2}},\"d\":[{\"e\":[]}]}");
    /* inside arrays */
    check_dup("[{\"a\":1,\"a\":1}]");
    check_dup("{\"a\":[{\"x\":1,\"x\":2}]}");
    check_dup("[[[{\"k\":null,\"k\":null}]]]");
    /* in a later sibling object */
    check_dup("[{},{\"a\":1,\"a\":2}]");
    check_dup("[{\"a\":1},{\"a\":1,\"a\":2}]");
    check_dup("[[],{\"x\":{}},{\"y\":1,\"z\":{\"y\":1,\"y\":2}}]");
    check_dup("{\"a\":1,\"b\":{\"c\":[1,{\"d\":1,\"e\":2}]},\"f\":{\"d\":3,\"d\":4}}");
    /* the same key spelled differently */
    check_dup("{\"a\":1,\"\\u0061\":2}");
    check_dup("{\"\\u00e9\":1,\"\xc3\xa9\":2}");
    check_dup("{\"a\\/b\":1,\"a/b\":2}");
}

static void test_parse_same_key_in_different_objects(void **state)
{
    (void)state;
    ACCEPT("{\"a\":{\"a\":1},\"b\":{\"a\":2}}", "{\"a\":{\"a\":1},\"b\":{\"a\":2}}");
    ACCEPT("[{\"a\":1},{\"a\":2}]", "[{\"a\":1},{\"a\":2}]");
    ACCEPT("{\"a\":[{\"a\":{\"a\":null}}]}", "{\"a\":[{\"a\":{\"a\":null}}]}");
    ACCEPT("{\"a\":1,\"A\":2}", "{\"a\":1,\"A\":2}");
    ACCEPT("{\"x\":{},\"y\":{},\"z\":[{},{}]}", "{\"x\":{},\"y\":{},\"z\":[{},{}]}");
    /* Colons and braces inside keys and values are not structure. */
    ACCEPT("{\"a:b\":\"c:d\",\"a\":\"{\\\"a\\\":1}\"}",
           "{\"a:b\":\"c:d\",\"a\":\"{\\\"a\\\":1}\"}");
}

static void test_parse_keys_with_escapes(void **state)
{
    struct json_object *o, *v;
    const char *why;
    static const char doc[] = "{\"a\\\"b\":1,\"a\\\\\":2,\"\\u00e9\":3,\"\\n\":4,\"x:y\":5,"
                              "\"\\\\\\\"\":6,\"{\":7}";

    (void)state;
    assert_int_equal(parse(doc, sizeof(doc) - 1, 32, &o, &why), KEEL_OK);
    assert_non_null(o);
    assert_int_equal(json_object_object_length(o), 7);
    assert_true(json_object_object_get_ex(o, "a\"b", &v));
    assert_int_equal(json_object_get_int(v), 1);
    assert_true(json_object_object_get_ex(o, "a\\", &v));
    assert_int_equal(json_object_get_int(v), 2);
    assert_true(json_object_object_get_ex(o, "\xc3\xa9", &v));
    assert_int_equal(json_object_get_int(v), 3);
    assert_true(json_object_object_get_ex(o, "\n", &v));
    assert_int_equal(json_object_get_int(v), 4);
    assert_true(json_object_object_get_ex(o, "x:y", &v));
    assert_true(json_object_object_get_ex(o, "\\\"", &v));
    assert_int_equal(json_object_get_int(v), 6);
    assert_true(json_object_object_get_ex(o, "{", &v));
    json_object_put(o);
}

static void test_parse_depth_bound(void **state)
{
    const char *why;

    (void)state;
    /* 32 containers are the limit, whatever the innermost one holds. */
    assert_int_equal(parse_nested(31, "1", 32, &why), KEEL_OK);
    assert_int_equal(parse_nested(32, "1", 32, &why), KEEL_OK);
    assert_int_equal(parse_nested(32, "", 32, &why), KEEL_OK);
    assert_int_equal(parse_nested(33, "1", 32, &why), KEEL_E_INVALID);
    assert_string_equal(why, "nesting too deep");
    assert_int_equal(parse_nested(33, "", 32, &why), KEEL_E_INVALID);
    assert_string_equal(why, "nesting too deep");
    assert_int_equal(parse_nested(100, "1", 32, &why), KEEL_E_INVALID);
    assert_string_equal(why, "nesting too deep");
    /* Objects count like arrays. */
    assert_int_equal(parse_nested(31, "{\"a\":1}", 32, &why), KEEL_OK);
    assert_int_equal(parse_nested(31, "{}", 32, &why), KEEL_OK);
    assert_int_equal(parse_nested(32, "{\"a\":1}", 32, &why), KEEL_E_INVALID);
    assert_int_equal(parse_nested(31, "{\"a\":{}}", 32, &why), KEEL_E_INVALID);
    assert_string_equal(why, "nesting too deep");
    /* Depth is nesting, not the number of containers: siblings are free. */
    assert_int_equal(parse_nested(31, "[],{},[1,2],{\"a\":1,\"b\":2}", 32, &why), KEEL_OK);
}

static void test_parse_depth_argument(void **state)
{
    const char *why;
    struct json_object *o;

    (void)state;
    assert_int_equal(parse_nested(1, "1", 1, &why), KEEL_OK);
    assert_int_equal(parse_nested(1, "", 1, &why), KEEL_OK);
    assert_int_equal(parse_nested(2, "1", 1, &why), KEEL_E_INVALID);
    assert_int_equal(parse_nested(2, "", 1, &why), KEEL_E_INVALID);
    assert_int_equal(parse("{\"a\":1,\"b\":\"x\"}", 15, 1, &o, &why), KEEL_OK);
    json_object_put(o);
    assert_int_equal(parse("{\"a\":{}}", 8, 1, &o, &why), KEEL_E_INVALID);
    assert_null(o);
    assert_int_equal(parse_nested(5, "1", 5, &why), KEEL_OK);
    assert_int_equal(parse_nested(6, "1", 5, &why), KEEL_E_INVALID);
    /* Out-of-range bounds mean the default (32), never unlimited. */
    assert_int_equal(parse_nested(32, "1", 0, &why), KEEL_OK);
    assert_int_equal(parse_nested(33, "1", 0, &why), KEEL_E_INVALID);
    assert_int_equal(parse_nested(33, "1", -5, &why), KEEL_E_INVALID);
    assert_int_equal(parse_nested(32, "1", 1000, &why), KEEL_OK);
    assert_int_equal(parse_nested(33, "1", 1000, &why), KEEL_E_INVALID);
}

static void test_parse_nul_byte(void **state)
{
    struct json_object *o;
    const char *why;

    (void)state;
    assert_int_equal(parse("{\"a\":\"x\0y\"}", 11, 32, &o, &why), KEEL_E_INVALID);
    assert_null(o);
    assert_non_null(why);
    assert_int_equal(parse("[1]\0", 4, 32, &o, &why), KEEL_E_INVALID);
    assert_null(o);
    assert_string_equal(why, "NUL byte in document");
    assert_int_equal(parse("\0", 1, 32, &o, &why), KEEL_E_INVALID);
    assert_null(o);
    assert_non_null(why);
    assert_int_equal(parse("{\"a\\u0000\":1}\0", 14, 32, &o, &why), KEEL_E_INVALID);
    assert_null(o);
    /* len is honoured: a NUL after the document is not part of it. */
    assert_int_equal(parse("[1]\0garbage", 3, 32, &o, &why), KEEL_OK);
    assert_non_null(o);
    json_object_put(o);
    /* ...and a shorter len cuts the document. */
    assert_int_equal(parse("[1]", 2, 32, &o, &why), KEEL_E_INVALID);
    assert_null(o);
}

static void test_parse_empty(void **state)
{
    struct json_object *o;
    const char *why;

    (void)state;
    assert_int_equal(parse("", 0, 32, &o, &why), KEEL_E_INVALID);
    assert_null(o);
    assert_non_null(why);
    assert_int_equal(parse("{}", 0, 32, &o, &why), KEEL_E_INVALID);
    assert_null(o);
    REJECT(" ");
    REJECT("\n\t\r ");
}

static void test_parse_invalid_utf8(void **state)
{
    (void)state;
    REJECT("[\"\xff\"]");
    REJECT("[\"\x80\"]");
    REJECT("[\"\xc3\"]");
    REJECT("[\"\xe2\x82\"]");
    REJECT("[\"\xc3x\"]");
    REJECT("{\"\xff\":1}");
    REJECT("\"\xfe\"");
    ACCEPT("[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]",
           "[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]");
}

/* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not
 * UTF-8 (RFC 3629); the writer already replaces them, the parser must not
 * let them in. */
static void test_parse_overlong_and_surrogate_utf8(void **state)
{
    (void)state;
    REJECT("[\"\xc0\xaf\"]");
    REJECT("[\"\xc1\xbf\"]");
    REJECT("[\"\xe0\x80\xaf\"]");
    REJECT("[\"\xed\xa0\x80\"]");
    REJECT("[\"\xed\xbf\xbf\"]");
    REJECT("[\"\xf4\x90\x80\x80\"]");
    REJECT("{\"\xc0\xaf\":1}");
}

static void test_parse_large_ints_exact(void **state)
{
    static const char doc[] = "[9223372036854775807,-9223372036854775808,9007199254740993,"
                              "-9007199254740993,1234567890123456789]";
    struct json_object *o, *v;
    const char *why;

    (void)state;
    assert_int_equal(parse(doc, sizeof(doc) - 1, 32, &o, &why), KEEL_OK);
    assert_non_null(o);
    v = json_object_array_get_idx(o, 0);
    assert_int_equal(json_object_get_type(v), json_type_int);
    assert_true(json_object_get_int64(v) == INT64_MAX);
    v = json_object_array_get_idx(o, 1);
    assert_int_equal(json_object_get_type(v), json_type_int);
    assert_true(json_object_get_int64(v) == INT64_MIN);
    v = json_object_array_get_idx(o, 2);
    assert_int_equal(json_object_get_type(v), json_type_int);
    assert_true(json_object_get_int64(v) == 9007199254740993LL); /* 2^53 + 1 */
    v = json_object_array_get_idx(o, 3);
    assert_true(json_object_get_int64(v) == -9007199254740993LL);
    v = json_object_array_get_idx(o, 4);
    assert_true(json_object_get_int64(v) == 1234567890123456789LL);
    assert_string_equal(plain(o), doc);
    json_object_put(o);
}

static void test_parse_failure_clears_out(void **state)
{
    struct json_object *o;
    const char *why;

    (void)state;
    /* Each failure class: *out is NULL and *why is a reason. */
    assert_int_equal(parse("{\"a\":1,\"a\":2}", 13, 32, &o, &why), KEEL_E_INVALID);
    assert_null(o);
    assert_int_equal(parse("[1,", 3, 32, &o, &why), KEEL_E_INVALID);
    assert_null(o);
    assert_non_null(why);
    assert_int_equal(parse("[}", 2, 32, &o, &why), KEEL_E_INVALID);
    assert_null(o);
    assert_non_null(why);
}

static void test_parse_roundtrip(void **state)
{
    static const char *const docs[] = {
        "{}",
        "[]",
        "{\"s\":\"a\\\"b\\\\c\\nd/\",\"n\":-12,\"f\":2.5,\"t\":true,\"f2\":false,\"z\":null,"
        "\"arr\":[1,[2,[]],{}],\"o\":{\"k\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}}",
        "[9223372036854775807,-9223372036854775808,0.1,1e10,\"\\u0001\\u001f\"]",
        "[{\"a\":[{\"b\":{}}]},{\"a\":[{\"b\":{}}]}]",
        "{\"z\":1,\"y\":2,\"x\":3,\"w\":{\"v\":[true]}}",
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(docs); i++) {
        struct json_object *o;
        const char *why;

        assert_int_equal(parse(docs[i], strlen(docs[i]), 32, &o, &why), KEEL_OK);
        assert_non_null(o);
        /* json-c keeps member order, so the compact form comes back. */
        assert_string_equal(plain(o), docs[i]);
        json_object_put(o);
    }
}

/* Writer output -> keel_json_parse -> json-c serialization is the identity. */
static void test_writer_parse_roundtrip(void **state)
{
    struct keel_buf b;
    struct keel_json j;
    struct json_object *o;
    const char *why;

    (void)state;
    keel_buf_init(&b, 4096);
    keel_json_begin(&j, &b);
    keel_json_obj_open(&j);
    keel_json_key(&j, "id");
    keel_json_str(&j, "0190a8a0-0000-7000-8000-000000000000");
    keel_json_key(&j, "text");
    keel_json_str(&j, "q\"b\\s/\n\t\x01 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    keel_json_key(&j, "n");
    keel_json_int(&j, INT64_MIN);
    keel_json_key(&j, "u");
    keel_json_uint(&j, (uint64_t)INT64_MAX);
    keel_json_key(&j, "d");
    keel_json_double(&j, 2.5);
    keel_json_key(&j, "list");
    keel_json_arr_open(&j);
    keel_json_bool(&j, true);
    keel_json_null(&j);
    keel_json_obj_open(&j);
    keel_json_key(&j, "id");
    keel_json_int(&j, 2);
    keel_json_obj_close(&j);
    keel_json_arr_close(&j);
    keel_json_obj_close(&j);
    assert_int_equal(keel_json_end(&j), KEEL_OK);

    assert_int_equal(keel_json_parse(b.data, b.len, 32, &o, &why), KEEL_OK);
    assert_non_null(o);
    assert_string_equal(plain(o), b.data);
    json_object_put(o);
    keel_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_nesting_and_commas),
        cmocka_unit_test(test_writer_empty_and_scalar_top),
        cmocka_unit_test(test_writer_integers),
        cmocka_unit_test(test_writer_doubles),
        cmocka_unit_test(test_writer_nonfinite_is_null),
        cmocka_unit_test(test_writer_str_null_raw),
        cmocka_unit_test(test_writer_keys_escaped),
        cmocka_unit_test(test_escape_specials),
        cmocka_unit_test(test_escape_all_control_chars),
        cmocka_unit_test(test_escape_valid_utf8_kept),
        cmocka_unit_test(test_escape_invalid_utf8_replaced),
        cmocka_unit_test(test_escape_overlong_and_surrogates_replaced),
        cmocka_unit_test(test_escape_random_bytes),
        cmocka_unit_test(test_writer_depth_overflow_sticky),
        cmocka_unit_test(test_writer_max_depth_parses),
        cmocka_unit_test(test_writer_unbalanced),
        cmocka_unit_test(test_writer_buffer_bound),
        cmocka_unit_test(test_parse_valid_documents),
        cmocka_unit_test(test_parse_top_level_scalars),
        cmocka_unit_test(test_parse_literal_null),
        cmocka_unit_test(test_parse_trailing_garbage),
        cmocka_unit_test(test_parse_comments),
        cmocka_unit_test(test_parse_single_quoted_values),
        cmocka_unit_test(test_parse_single_quoted_keys),
        cmocka_unit_test(test_parse_trailing_commas),
        cmocka_unit_test(test_parse_syntax_errors),
        cmocka_unit_test(test_parse_number_grammar),
        cmocka_unit_test(test_parse_nonfinite_and_bare_dot),
        cmocka_unit_test(test_parse_raw_control_chars),
        cmocka_unit_test(test_parse_duplicate_keys),
        cmocka_unit_test(test_parse_same_key_in_different_objects),
        cmocka_unit_test(test_parse_keys_with_escapes),
        cmocka_unit_test(test_parse_depth_bound),
        cmocka_unit_test(test_parse_depth_argument),
        cmocka_unit_test(test_parse_nul_byte),
        cmocka_unit_test(test_parse_empty),
        cmocka_unit_test(test_parse_invalid_utf8),
        cmocka_unit_test(test_parse_overlong_and_surrogate_utf8),
        cmocka_unit_test(test_parse_large_ints_exact),
        cmocka_unit_test(test_parse_failure_clears_out),
        cmocka_unit_test(test_parse_roundtrip),
        cmocka_unit_test(test_writer_parse_roundtrip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
