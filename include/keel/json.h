/*
 * json.h - JSON output (a small writer into a keel_buf) and strict JSON input
 * (json-c with Keel's extra rules: no duplicate keys, bounded depth).
 *
 * Output never goes through json-c: building a json_object tree only to
 * serialize it costs an allocation per value on the hot path. The writer
 * appends straight into a bounded buffer and tracks commas itself.
 */
#ifndef KEEL_JSON_H
#define KEEL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/core.h"

struct json_object;

/* Appends `s` (len bytes; UTF-8) as a JSON string literal with quotes.
 * Control characters, quote and backslash are escaped; invalid UTF-8 bytes
 * are replaced by U+FFFD, so the output is always valid JSON. */
keel_status keel_json_escape(struct keel_buf *b, const char *s, size_t len);

#define KEEL_JSON_MAX_DEPTH 32

/* A streaming writer. Errors are sticky: after the first failure every call
 * is a no-op and keel_json_end() returns the error. */
struct keel_json {
    struct keel_buf *b;
    keel_status rc;
    int depth;
    bool need_comma[KEEL_JSON_MAX_DEPTH + 1];
};

void keel_json_begin(struct keel_json *j, struct keel_buf *b);
keel_status keel_json_end(struct keel_json *j);

void keel_json_obj_open(struct keel_json *j);
void keel_json_obj_close(struct keel_json *j);
void keel_json_arr_open(struct keel_json *j);
void keel_json_arr_close(struct keel_json *j);
/* Writes an object key; the next value call writes its value. */
void keel_json_key(struct keel_json *j, const char *key);
void keel_json_str(struct keel_json *j, const char *s);
void keel_json_strn(struct keel_json *j, const char *s, size_t len);
void keel_json_int(struct keel_json *j, int64_t v);
void keel_json_uint(struct keel_json *j, uint64_t v);
/* Non-finite doubles are written as null (JSON has no NaN/Infinity). */
void keel_json_double(struct keel_json *j, double v);
void keel_json_bool(struct keel_json *j, bool v);
void keel_json_null(struct keel_json *j);
/* Appends `raw` verbatim as one value; the caller guarantees it is JSON. */
void keel_json_raw(struct keel_json *j, const char *raw, size_t len);

/* Parses `len` bytes as one strict JSON document (RFC 8259: no trailing
 * garbage, no comments, no duplicate object keys, depth <= max_depth).
 * On success *out owns a json-c tree the caller releases with
 * json_object_put() (NULL when the document is the literal null); returns KEEL_E_INVALID with a
 * short static reason in *why otherwise. */
keel_status keel_json_parse(
    const char *p, size_t len, int max_depth, struct json_object **out, const char **why);

#endif
