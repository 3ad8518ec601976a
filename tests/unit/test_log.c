/*
 * test_log.c - unit tests for src/obs/log.c: every line must parse as one
 * strict JSON object (json-c with UTF-8 validation), whatever the field bytes,
 * and lines from concurrent threads must never interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/core.h"
#include "keel/log.h"

#include "test.h"

static int g_pipe[2];

/* Logs go into a pipe whose read end is non-blocking, so "nothing was
 * written" is observable as EAGAIN. 1 MiB of pipe space holds any test. */
static int setup(void **state)
{
    (void)state;
    if (pipe(g_pipe) != 0)
        return -1;
    fcntl(g_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(g_pipe[1], F_SETPIPE_SZ, 1 << 20);
    keel_log_init(KEEL_LOG_DEBUG, g_pipe[1]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keel_log_init(KEEL_LOG_INFO, 1);
    close(g_pipe[0]);
    close(g_pipe[1]);
    return 0;
}

/* Reads everything written so far; NUL-terminated, caller frees. */
static char *drain(size_t *len_out)
{
    size_t cap = 1 << 16, len = 0;
    char *p = malloc(cap + 1);

    for (;;) {
        ssize_t n;

        if (len == cap) {
            cap *= 2;
            p = realloc(p, cap + 1);
        }
        n = read(g_pipe[0], p + len, cap - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    p[len] = '\0';
    if (len_out)
        *len_out = len;
    return p;
}

/* Parses one line strictly; the line must be exactly one object plus '\n'. */
static struct json_object *parse_line(const char *line, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o;

    assert_true(len > 0 && line[len - 1] == '\n');
    assert_null(memchr(line, '\n', len - 1));
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, line, (int)len - 1);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    assert_int_equal(json_tokener_get_parse_end(tok), len - 1);
    json_tokener_free(tok);
    assert_true(json_object_is_type(o, json_type_object));
    return o;
}

/* Drains exactly one line and parses it. */
static struct json_object *read_one(void)
{
    size_t len;
    char *p = drain(&len);
    struct json_object *o = parse_line(p, len);

    free(p);
    return o;
}

static struct json_object *get(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;

    assert_true(json_object_object_get_ex(o, key, &v));
    return v;
}

static const char *get_str(struct json_object *o, const char *key)
{
    struct json_object *v = get(o, key);

    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

static void test_basic_fields(void **state)
{
    struct json_object *o;
    struct json_object_iterator it, end;
    const char *order[] = {"ts",  "level",   "msg", "host", "port", "ratio", "tls",
                           "raw", "nothing", "big", "neg",  "half", "nan"};
    size_t i = 0;

    (void)state;
    keel_log(KEEL_LOG_INFO, "listening", KEEL_LF_STR("host", "127.0.0.1"),
             KEEL_LF_INT("port", 8080), KEEL_LF_DBL("ratio", 0.1), KEEL_LF_BOOL("tls", false),
             KEEL_LF_JSON("raw", "{\"a\":[1,2]}"), KEEL_LF_STR("nothing", NULL),
             KEEL_LF_INT("big", INT64_MAX), KEEL_LF_INT("neg", INT64_MIN),
             KEEL_LF_DBL("half", 12.5), KEEL_LF_DBL("nan", NAN));
    o = read_one();
    assert_string_equal(get_str(o, "level"), "info");
    assert_string_equal(get_str(o, "msg"), "listening");
    assert_string_equal(get_str(o, "host"), "127.0.0.1");
    assert_int_equal(json_object_get_int64(get(o, "port")), 8080);
    assert_true(json_object_get_double(get(o, "ratio")) == 0.1);
    assert_true(json_object_is_type(get(o, "tls"), json_type_boolean));
    assert_false(json_object_get_boolean(get(o, "tls")));
    assert_int_equal(json_object_array_length(json_object_object_get(get(o, "raw"), "a")), 2);
    assert_null(get(o, "nothing"));
    assert_true(json_object_get_int64(get(o, "big")) == INT64_MAX);
    assert_true(json_object_get_int64(get(o, "neg")) == INT64_MIN);
    assert_true(json_object_get_double(get(o, "half")) == 12.5);
    assert_null(get(o, "nan"));
    /* ts, level and msg come first, then the fields in call order. */
    it = json_object_iter_begin(o);
    end = json_object_iter_end(o);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it))
        assert_string_equal(json_object_iter_peek_name(&it), order[i++]);
    assert_int_equal(i, KEEL_ARRAY_LEN(order));
    json_object_put(o);
}

static void test_timestamp(void **state)
{
    struct json_object *o;
    const char *ts;
    struct tm tm = {0};
    int ms = -1;
    char z = 0;
    int64_t before = keel_wall_ms(), after, at;

    (void)state;
    keel_log(KEEL_LOG_ERROR, "x");
    after = keel_wall_ms();
    o = read_one();
    ts = get_str(o, "ts");
    /* 2026-11-22T03:04:05.123Z */
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &z),
                     8);
    assert_int_equal(z, 'Z');
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    at = (int64_t)timegm(&tm) * 1000 + ms;
    assert_true(at >= before && at <= after);
    assert_string_equal(get_str(o, "level"), "error");
    json_object_put(o);
}

static void test_zero_fields(void **state)
{
    struct json_object *o;

    (void)state;
    keel_log(KEEL_LOG_WARN, "shutting down");
    o = read_one();
    assert_int_equal(json_object_object_length(o), 3);
    assert_string_equal(get_str(o, "level"), "warn");
    assert_string_equal(get_str(o, "msg"), "shutting down");
    json_object_put(o);

    keel_log_emit(KEEL_LOG_DEBUG, NULL, NULL, 0);
    o = read_one();
    assert_null(get(o, "msg"));
    assert_string_equal(get_str(o, "level"), "debug");
    json_object_put(o);
}

static void test_escaping(void **state)
{
    static const char nasty[] = "q\"b\\s/n\nr\rt\tc\x01\x1f del\x7f bad\xff\xfe ok\xc3\xa9 "
                                "trunc\xe2\x82 end";
    struct json_object *o;
    const char *s;

    (void)state;
    keel_log(KEEL_LOG_INFO, nasty, KEEL_LF_STR(nasty, nasty), KEEL_LF_STRN("nul", "a\0b", 3),
             KEEL_LF_STR("", "empty key"));
    o = read_one();
    s = get_str(o, "msg");
    /* Everything valid survives the round trip; invalid bytes become U+FFFD. */
    assert_non_null(strstr(s, "q\"b\\s/n\nr\rt\tc\x01\x1f del"));
    assert_non_null(strstr(s, " ok\xc3\xa9 "));
    assert_null(strstr(s, "\xff"));
    assert_non_null(strstr(s, "\xef\xbf\xbd"));
    assert_string_equal(get_str(o, s), s);
    assert_int_equal(json_object_get_string_len(get(o, "nul")), 3);
    assert_memory_equal(json_object_get_string(get(o, "nul")), "a\0b", 3);
    assert_string_equal(get_str(o, ""), "empty key");
    json_object_put(o);
}

static int g_evaluated;

static int64_t side_effect(void)
{
    return ++g_evaluated;
}

static void test_level_filter(void **state)
{
    size_t len;
    char *p;
    struct json_object *o;

    (void)state;
    keel_log_set_level(KEEL_LOG_WARN);
    assert_false(keel_log_enabled(KEEL_LOG_INFO));
    assert_true(keel_log_enabled(KEEL_LOG_WARN));
    keel_log(KEEL_LOG_INFO, "hidden", KEEL_LF_INT("n", side_effect()));
    keel_log(KEEL_LOG_DEBUG, "hidden");
    keel_log_emit(KEEL_LOG_DEBUG, "hidden", NULL, 0);
    assert_int_equal(g_evaluated, 0);
    p = drain(&len);
    assert_int_equal(len, 0);
    free(p);

    keel_log(KEEL_LOG_ERROR, "shown", KEEL_LF_INT("n", side_effect()));
    assert_int_equal(g_evaluated, 1);
    o = read_one();
    assert_string_equal(get_str(o, "msg"), "shown");
    json_object_put(o);
    keel_log_set_level(KEEL_LOG_DEBUG);
}

static void test_level_parse(void **state)
{
    enum keel_log_level l = KEEL_LOG_ERROR;

    (void)state;
    assert_int_equal(keel_log_level_parse("debug", &l), KEEL_OK);
    assert_int_equal(l, KEEL_LOG_DEBUG);
    assert_int_equal(keel_log_level_parse("WARN", &l), KEEL_OK);
    assert_int_equal(l, KEEL_LOG_WARN);
    assert_int_equal(keel_log_level_parse("warning", &l), KEEL_OK);
    assert_int_equal(keel_log_level_parse("Info", &l), KEEL_OK);
    assert_int_equal(l, KEEL_LOG_INFO);
    assert_int_equal(keel_log_level_parse("error", &l), KEEL_OK);
    assert_int_equal(l, KEEL_LOG_ERROR);
    assert_int_equal(keel_log_level_parse("trace", &l), KEEL_E_INVALID);
    assert_int_equal(keel_log_level_parse("", &l), KEEL_E_INVALID);
    assert_int_equal(keel_log_level_parse(NULL, &l), KEEL_E_INVALID);
    assert_int_equal(l, KEEL_LOG_ERROR);
    assert_string_equal(keel_log_level_name(KEEL_LOG_WARN), "warn");
    assert_string_equal(keel_log_level_name((enum keel_log_level)42), "unknown");
}

static void test_truncation(void **state)
{
    size_t big = 100000, len;
    char *ascii = malloc(big + 1), *utf8 = malloc(big + 1), *ctl = malloc(big + 1), *raw, *p;
    struct json_object *o;
    const char *s;

    (void)state;
    memset(ascii, 'a', big);
    ascii[big] = '\0';
    for (size_t i = 0; i < big; i += 2)
        memcpy(utf8 + i, "\xc3\xa9", 2); /* é */
    utf8[big] = '\0';
    memset(ctl, '\x01', big);
    ctl[big] = '\0';
    raw = malloc(big + 3);
    raw[0] = '"';
    memset(raw + 1, 'r', big);
    strcpy(raw + big + 1, "\"");

    /* One string larger than the line: it is shortened, later fields fit. */
    keel_log(KEEL_LOG_INFO, "big", KEEL_LF_STR("a", ascii), KEEL_LF_INT("after", 7));
    p = drain(&len);
    assert_true(len <= KEEL_LOG_LINE_MAX);
    assert_true(len > KEEL_LOG_LINE_MAX - 200); /* ASCII fills the line, not 1/6 of it */
    o = parse_line(p, len);
    assert_true(json_object_get_boolean(get(o, "truncated")));
    s = get_str(o, "a");
    assert_true(strlen(s) > 1000 && strspn(s, "a") == strlen(s));
    json_object_put(o);
    free(p);

    /* Escaped control characters cost 6 bytes each (1000 of them fit);
     * multi-byte characters are never cut in half; raw JSON that does not fit
     * is dropped rather than cut. */
    ctl[1000] = '\0';
    keel_log(KEEL_LOG_INFO, ctl, KEEL_LF_STR("u", utf8), KEEL_LF_JSON("raw", raw),
             KEEL_LF_BOOL("b", true));
    p = drain(&len);
    assert_true(len <= KEEL_LOG_LINE_MAX);
    o = parse_line(p, len);
    assert_true(json_object_get_boolean(get(o, "truncated")));
    assert_string_equal(get_str(o, "msg"), ctl);
    s = get_str(o, "u");
    assert_true(strlen(s) > 1000 && strlen(s) % 2 == 0);
    assert_null(strstr(s, "\xef\xbf\xbd"));
    assert_false(json_object_object_get_ex(o, "raw", NULL));
    json_object_put(o);
    free(p);

    /* A message larger than the line is shortened like any string. */
    memset(ctl, '\x01', big);
    keel_log(KEEL_LOG_INFO, ctl, KEEL_LF_BOOL("b", true));
    p = drain(&len);
    assert_true(len <= KEEL_LOG_LINE_MAX);
    o = parse_line(p, len);
    assert_true(json_object_get_boolean(get(o, "truncated")));
    s = get_str(o, "msg");
    assert_true(strlen(s) > 1000 && strspn(s, "\x01") == strlen(s));
    json_object_put(o);
    free(p);

    free(ascii);
    free(utf8);
    free(ctl);
    free(raw);
}

static void test_many_fields(void **state)
{
    struct keel_log_field f[2000];
    char keys[2000][16];
    size_t len;
    char *p;
    struct json_object *o;

    (void)state;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(f); i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%zu", i);
        f[i] = KEEL_LF_INT(keys[i], (int64_t)i);
    }
    keel_log_emit(KEEL_LOG_INFO, "many", f, KEEL_ARRAY_LEN(f));
    p = drain(&len);
    assert_true(len <= KEEL_LOG_LINE_MAX);
    o = parse_line(p, len);
    assert_true(json_object_get_boolean(get(o, "truncated")));
    assert_int_equal(json_object_get_int(get(o, "k0")), 0);
    assert_true(json_object_object_length(o) > 100);
    json_object_put(o);
    free(p);
}

static void test_errno_preserved(void **state)
{
    struct json_object *o;

    (void)state;
    errno = ENOENT;
    keel_log(KEEL_LOG_INFO, "x");
    assert_int_equal(errno, ENOENT);
    o = read_one();
    json_object_put(o);
}

static void test_hash_user_id(void **state)
{
    char a[17], b[17], c[17], n[17], e[17];

    (void)state;
    keel_log_hash_user_id("user-42", a);
    keel_log_hash_user_id("user-42", b);
    keel_log_hash_user_id("user-43", c);
    keel_log_hash_user_id(NULL, n);
    keel_log_hash_user_id("", e);
    assert_int_equal(strlen(a), 16);
    assert_int_equal(strspn(a, "0123456789abcdef"), 16);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_equal(n, e);
}

/* ------------------------------------------------- concurrent writers -- */

#define NTHREADS 8
#define NLINES   3000

static void *writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    char pad[200];

    memset(pad, 'a' + id, sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < NLINES; i++)
        keel_log(KEEL_LOG_INFO, "req", KEEL_LF_INT("t", id), KEEL_LF_INT("i", i),
                 KEEL_LF_STR("pad", pad));
    return NULL;
}

struct reader {
    char *data;
    size_t len, cap;
    size_t want_lines;
};

static void *reader(void *arg)
{
    struct reader *r = arg;
    size_t lines = 0;

    while (lines < r->want_lines) {
        ssize_t n;

        if (r->cap - r->len < 65536) {
            r->cap *= 2;
            r->data = realloc(r->data, r->cap);
        }
        n = read(g_pipe[0], r->data + r->len, r->cap - r->len);
        if (n < 0 && errno == EAGAIN) {
            usleep(100);
            continue;
        }
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            lines += r->data[r->len + (size_t)i] == '\n';
        r->len += (size_t)n;
    }
    return NULL;
}

static void test_threads_no_interleaving(void **state)
{
    pthread_t w[NTHREADS], rd;
    struct reader r = {.data = malloc(1 << 20), .cap = 1 << 20, .want_lines = NTHREADS * NLINES};
    int next[NTHREADS] = {0};
    size_t lines = 0;
    char *line;

    (void)state;
    pthread_create(&rd, NULL, reader, &r);
    for (intptr_t i = 0; i < NTHREADS; i++)
        pthread_create(&w[i], NULL, writer, (void *)i);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(w[i], NULL);
    pthread_join(rd, NULL);
    for (line = r.data; line < r.data + r.len;) {
        char *nl = memchr(line, '\n', (size_t)(r.data + r.len - line));
        struct json_object *o;
        int t, i;

        assert_non_null(nl);
        o = parse_line(line, (size_t)(nl - line) + 1);
        t = json_object_get_int(get(o, "t"));
        i = json_object_get_int(get(o, "i"));
        assert_true(t >= 0 && t < NTHREADS);
        /* Per thread, lines arrive complete and in order. */
        assert_int_equal(i, next[t]);
        next[t]++;
        assert_int_equal(get_str(o, "pad")[0], 'a' + t);
        json_object_put(o);
        lines++;
        line = nl + 1;
    }
    assert_int_equal(lines, NTHREADS * NLINES);
    assert_int_equal(keel_log_dropped(), 0);
    free(r.data);
}

/* The thread's context is added after the caller's fields, unless the
 * caller gave one of the same name; empty members are left out; other
 * threads never see it. */
static void test_context(void **state)
{
    struct keel_log_ctx ctx = {.request_id = "req-1", .trace_id = ""};
    const struct keel_log_ctx *prev;
    struct json_object *o, *v;

    (void)state;
    prev = keel_log_ctx_set(&ctx);
    assert_null(prev);
    assert_ptr_equal(keel_log_ctx_get(), &ctx);
    keel_log(KEEL_LOG_INFO, "inside", KEEL_LF_INT("n", 1));
    o = read_one();
    assert_string_equal(get_str(o, "request_id"), "req-1");
    assert_false(json_object_object_get_ex(o, "trace_id", &v)); /* empty: left out */
    json_object_put(o);

    keel_log(KEEL_LOG_INFO, "own", KEEL_LF_STR("request_id", "mine"));
    o = read_one();
    assert_string_equal(get_str(o, "request_id"), "mine");
    json_object_put(o);

    ctx.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    keel_log(KEEL_LOG_INFO, "traced");
    o = read_one();
    assert_string_equal(get_str(o, "trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
    json_object_put(o);

    assert_ptr_equal(keel_log_ctx_set(prev), &ctx);
    keel_log(KEEL_LOG_INFO, "outside");
    o = read_one();
    assert_false(json_object_object_get_ex(o, "request_id", &v));
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_fields),
        cmocka_unit_test(test_timestamp),
        cmocka_unit_test(test_zero_fields),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_many_fields),
        cmocka_unit_test(test_errno_preserved),
        cmocka_unit_test(test_hash_user_id),
        cmocka_unit_test(test_context),
        cmocka_unit_test(test_threads_no_interleaving),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
