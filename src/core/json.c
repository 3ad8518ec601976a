/*
 * json.c - JSON output writer and strict JSON input (see include/keel/json.h).
 *
 * DESIGN: output appends straight into a bounded keel_buf; strings are
 * copied in runs between the bytes that need escaping, and invalid UTF-8 is
 * replaced so the output is always valid JSON whatever the input bytes.
 *
 * Input is parsed by json-c in strict mode with UTF-8 validation and a depth
 * bound. json-c silently keeps the last of duplicate keys, which is how
 * parameter-pollution attacks slip past validation, so a second O(n) pass
 * counts the keys of every object in document order and compares the counts
 * with the parsed tree walked in the same (pre-)order: json-c keeps object
 * members in insertion order, so the counts differ exactly when some object
 * had a duplicate key.
 */
#include "keel/json.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- output */

static const char hex[] = "0123456789abcdef";

static bool plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

keel_status keel_json_escape(struct keel_buf *b, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run, seq;
    keel_status rc = keel_buf_appendc(b, '"');

    while (rc == KEEL_OK && i < len) {
        for (run = i; run < len && plain(s[run]); run++)
            ;
        if (run > i) {
            rc = keel_buf_append(b, s + i, run - i);
            i = run;
            continue;
        }
        if (s[i] >= 0x80) {
            seq = keel_utf8_seq(s + i, len - i);
            if (seq) {
                rc = keel_buf_append(b, s + i, seq);
                i += seq;
            } else {
                rc = keel_buf_append(b, "\xef\xbf\xbd", 3); /* U+FFFD */
                i++;
            }
            continue;
        }
        switch (s[i]) {
        case '"':
            rc = keel_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            rc = keel_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            rc = keel_buf_append(b, "\\n", 2);
            break;
        case '\r':
            rc = keel_buf_append(b, "\\r", 2);
            break;
        case '\t':
            rc = keel_buf_append(b, "\\t", 2);
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[s[i] >> 4], hex[s[i] & 15]};
            rc = keel_buf_append(b, u, sizeof(u));
        }
        }
        i++;
    }
    if (rc == KEEL_OK)
        rc = keel_buf_appendc(b, '"');
    return rc;
}

void keel_json_begin(struct keel_json *j, struct keel_buf *b)
{
    j->b = b;
    j->rc = KEEL_OK;
    j->depth = 0;
    j->need_comma[0] = false;
}

keel_status keel_json_end(struct keel_json *j)
{
    if (j->rc == KEEL_OK && j->depth != 0)
        j->rc = KEEL_E_INTERNAL;
    return j->rc;
}

/* Emits the comma before a value (unless it follows a key). */
static bool pre_value(struct keel_json *j)
{
    if (j->rc < 0)
        return false;
    if (j->need_comma[j->depth])
        j->rc = keel_buf_appendc(j->b, ',');
    j->need_comma[j->depth] = true;
    return j->rc == KEEL_OK;
}

static void put(struct keel_json *j, const char *s, size_t n)
{
    if (j->rc == KEEL_OK)
        j->rc = keel_buf_append(j->b, s, n);
}

static void open_nested(struct keel_json *j, char c)
{
    if (!pre_value(j))
        return;
    if (j->depth >= KEEL_JSON_MAX_DEPTH) {
        j->rc = KEEL_E_TOO_LARGE;
        return;
    }
    put(j, &c, 1);
    j->need_comma[++j->depth] = false;
}

static void close_nested(struct keel_json *j, char c)
{
    if (j->rc < 0)
        return;
    if (j->depth == 0) {
        j->rc = KEEL_E_INTERNAL;
        return;
    }
    j->depth--;
    put(j, &c, 1);
}

void keel_json_obj_open(struct keel_json *j)
{
    open_nested(j, '{');
}

void keel_json_obj_close(struct keel_json *j)
{
    close_nested(j, '}');
}

void keel_json_arr_open(struct keel_json *j)
{
    open_nested(j, '[');
}

void keel_json_arr_close(struct keel_json *j)
{
    close_nested(j, ']');
}

void keel_json_key(struct keel_json *j, const char *key)
{
    if (!pre_value(j))
        return;
    j->rc = keel_json_escape(j->b, key, strlen(key));
    put(j, ":", 1);
    /* The value that follows must not emit a comma. */
    j->need_comma[j->depth] = false;
}

/* After a value inside an object, the next key needs a comma. */
static void post_value(struct keel_json *j)
{
    j->need_comma[j->depth] = true;
}

void keel_json_strn(struct keel_json *j, const char *s, size_t len)
{
    if (!pre_value(j))
        return;
    j->rc = keel_json_escape(j->b, s, len);
    post_value(j);
}

void keel_json_str(struct keel_json *j, const char *s)
{
    if (!s) {
        keel_json_null(j);
        return;
    }
    keel_json_strn(j, s, strlen(s));
}

void keel_json_int(struct keel_json *j, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);

    if (pre_value(j))
        put(j, tmp, (size_t)n);
    post_value(j);
}

void keel_json_uint(struct keel_json *j, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);

    if (pre_value(j))
        put(j, tmp, (size_t)n);
    post_value(j);
}

void keel_json_double(struct keel_json *j, double v)
{
    char tmp[32];
    int n;

    if (!isfinite(v)) {
        keel_json_null(j);
        return;
    }
    n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    if (pre_value(j))
        put(j, tmp, (size_t)n);
    post_value(j);
}

void keel_json_bool(struct keel_json *j, bool v)
{
    if (pre_value(j))
        put(j, v ? "true" : "false", v ? 4 : 5);
    post_value(j);
}

void keel_json_null(struct keel_json *j)
{
    if (pre_value(j))
        put(j, "null", 4);
    post_value(j);
}

void keel_json_raw(struct keel_json *j, const char *raw, size_t len)
{
    if (pre_value(j))
        put(j, raw, len);
    post_value(j);
}

/* ----------------------------------------------------------------- input */

struct key_counts {
    uint32_t *v;
    size_t n;
    size_t cap;
};

/* A validating scanner for RFC 8259, run before json-c: json-c's strict
 * mode still accepts single-quoted strings, NaN and Infinity, and raw
 * control characters in strings, so on its own it is not the strict parser
 * SPEC section 2 asks for. The scan also counts the members of every
 * object, in the order the objects open, for the duplicate-key check.
 * Recursion is bounded by the depth limit. */
struct scan {
    const char *p;
    const char *end;
    int depth;
    int max_depth;
    struct key_counts *kc;
    const char *why;
};

static void ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static bool fail(struct scan *s, const char *why)
{
    s->why = why;
    return false;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool scan_string(struct scan *s)
{
    int i;

    s->p++; /* the opening quote */
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p++;

        if (c == '"')
            return true;
        if (c < 0x20)
            return fail(s, "control character in string");
        if (c >= 0x80) {
            /* json-c checks only the byte structure of UTF-8; overlong
             * forms, surrogates and code points past U+10FFFF are refused
             * here with the same check the writer uses. */
            size_t seq =
                keel_utf8_seq((const unsigned char *)s->p - 1, (size_t)(s->end - s->p) + 1);

            if (!seq)
                return fail(s, "invalid UTF-8");
            s->p += seq - 1;
            continue;
        }
        if (c != '\\')
            continue;
        if (s->p >= s->end)
            break;
        c = (unsigned char)*s->p++;
        if (c == 'u') {
            for (i = 0; i < 4; i++, s->p++)
                if (s->p >= s->end || !is_hex(*s->p))
                    return fail(s, "bad \\u escape");
        } else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
            return fail(s, "bad escape in string");
        }
    }
    return fail(s, "unterminated string");
}

static bool digits(struct scan *s)
{
    const char *start = s->p;

    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start;
}

static bool scan_number(struct scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (!digits(s))
        return fail(s, "invalid number");
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!digits(s))
            return fail(s, "invalid number");
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!digits(s))
            return fail(s, "invalid number");
    }
    return true;
}

static bool scan_literal(struct scan *s, const char *lit)
{
    size_t n = strlen(lit);

    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return fail(s, "invalid JSON");
    s->p += n;
    return true;
}

static bool scan_value(struct scan *s);

static bool scan_container(struct scan *s, char close)
{
    size_t obj = SIZE_MAX;
    bool first = true;

    if (++s->depth > s->max_depth)
        return fail(s, "nesting too deep");
    s->p++;
    if (close == '}') {
        struct key_counts *kc = s->kc;

        if (kc->n == kc->cap) {
            kc->cap = kc->cap ? kc->cap * 2 : 16;
            kc->v = keel_xrealloc(kc->v, kc->cap * sizeof(*kc->v));
        }
        kc->v[kc->n] = 0;
        obj = kc->n++;
    }
    for (;;) {
        ws(s);
        if (s->p >= s->end)
            return fail(s, "truncated JSON");
        if (*s->p == close && first)
            break;
        if (!first) {
            if (*s->p == close)
                break;
            if (*s->p != ',')
                return fail(s, "expected ',' or end of container");
            s->p++;
            ws(s);
        }
        first = false;
        if (obj != SIZE_MAX) {
            if (s->p >= s->end || *s->p != '"')
                return fail(s, "object keys must be strings");
            if (!scan_string(s))
                return false;
            ws(s);
            if (s->p >= s->end || *s->p != ':')
                return fail(s, "expected ':' after key");
            s->p++;
            s->kc->v[obj]++;
        }
        if (!scan_value(s))
            return false;
    }
    s->p++;
    s->depth--;
    return true;
}

static bool scan_value(struct scan *s)
{
    ws(s);
    if (s->p >= s->end)
        return fail(s, "truncated JSON");
    switch (*s->p) {
    case '{':
        return scan_container(s, '}');
    case '[':
        return scan_container(s, ']');
    case '"':
        return scan_string(s);
    case 't':
        return scan_literal(s, "true");
    case 'f':
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return scan_number(s);
        return fail(s, "invalid JSON");
    }
}

/* Walks the tree in pre-order comparing object sizes with the counts. */
static bool same_counts(struct json_object *o, const struct key_counts *kc, size_t *k)
{
    size_t i, n;

    switch (json_object_get_type(o)) {
    case json_type_object: {
        if (*k >= kc->n || kc->v[*k] != (uint32_t)json_object_object_length(o))
            return false;
        (*k)++;
        json_object_object_foreach(o, key, val)
        {
            (void)key;
            if (!same_counts(val, kc, k))
                return false;
        }
        return true;
    }
    case json_type_array:
        n = json_object_array_length(o);
        for (i = 0; i < n; i++)
            if (!same_counts(json_object_array_get_idx(o, i), kc, k))
                return false;
        return true;
    default:
        return true;
    }
}

keel_status keel_json_parse(
    const char *p, size_t len, int max_depth, struct json_object **out, const char **why)
{
    struct json_tokener *tok;
    struct json_object *o = NULL;
    struct key_counts kc = {0};
    struct scan s;
    size_t k = 0;
    keel_status rc = KEEL_E_INVALID;

    *out = NULL;
    *why = "invalid JSON";
    if (len > INT32_MAX) {
        *why = "document too large";
        return KEEL_E_TOO_LARGE;
    }
    if (max_depth < 1 || max_depth > KEEL_JSON_MAX_DEPTH)
        max_depth = KEEL_JSON_MAX_DEPTH;
    s = (struct scan){p, p + len, 0, max_depth, &kc, NULL};
    if (!scan_value(&s)) {
        *why = s.why;
        goto out;
    }
    ws(&s);
    if (s.p != s.end) {
        *why = memchr(p, '\0', len) ? "NUL byte in document" : "trailing data after JSON value";
        goto out;
    }
    /* The text is valid JSON; json-c builds the tree and checks UTF-8. The
     * depth it is given only has to let every valid document through. */
    tok = json_tokener_new_ex(max_depth + 1);
    if (!tok)
        return KEEL_E_NOMEM;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, p, (int)len);
    if (json_tokener_get_error(tok) == json_tokener_continue)
        /* A number or literal that ends the input is complete only once
         * json-c sees a terminator (the scanner proved the text is whole). */
        o = json_tokener_parse_ex(tok, "", 1);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        *why = json_tokener_get_error(tok) == json_tokener_error_parse_utf8_string ? "invalid UTF-8"
                                                                                   : "invalid JSON";
        json_tokener_free(tok);
        goto out;
    }
    json_tokener_free(tok);
    if (o && (!same_counts(o, &kc, &k) || k != kc.n)) {
        *why = "duplicate object key";
        goto out;
    }
    *out = o;
    o = NULL;
    rc = KEEL_OK;
out:
    free(kc.v);
    if (o)
        json_object_put(o);
    return rc;
}
