/*
 * schema.h - request body schemas as data (SPEC section 2, step 10): types,
 * lengths, ranges, enumerations; unknown fields and read-only fields are
 * rejected (mass assignment, OWASP API3). A route points at its schema
 * (struct keel_route.schema) and the VALIDATE phase (src/mw/validate.c)
 * checks the parsed JSON body against it before the handler runs.
 *
 * Every problem found is reported, each as one per-field error of a 400
 * validation-error (keel_fail_field), with the field's path ("email",
 * "items[2].quantity"; "" is the body itself). A field gets at most one
 * error, the first of: presence, read-only, null, type, length or range,
 * format, enumeration. Errors come in schema field order, depth first;
 * unknown members of an object follow its known fields, in document order.
 *
 * Messages, fixed English text that never echoes the submitted value
 * (bounds and enumerations come from the schema, not from the client):
 *   missing required field   "is required"
 *   read-only field present  "is read-only"
 *   unknown field            "is not allowed"
 *   null, not nullable       "must not be null"
 *   wrong type               "must be a string" | "must be an integer" |
 *                            "must be a boolean" | "must be an object" |
 *                            "must be an array"
 *   string length            "must be at least N character(s)" |
 *                            "must be at most N character(s)"
 *   U+0000 inside a string   "must not contain NUL characters"
 *   integer range            "must be at least N" | "must be at most N" |
 *                            "is out of range" (beyond int64, no range set)
 *   format                   "must be a valid email address" |
 *                            "must be a valid UUID" |
 *                            "must be a three-letter currency code"
 *   enumeration              "must be one of: a, b, c" (or "must be one of
 *                            the allowed values" when the list is long)
 *   array size               "must have at least N item(s)" |
 *                            "must have at most N item(s)"
 *   require_one, no member   "must contain at least one field"
 */
#ifndef KEEL_SCHEMA_H
#define KEEL_SCHEMA_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/core.h"

struct json_object;
struct keel_request;

/* A schema whose bounds contradict each other (min > max with max set, a
 * negative max), an OBJECT without `object`, an ARRAY without `items` or an
 * empty enumeration is a programming error: validation stops with
 * KEEL_E_INTERNAL (logged through keel_errorf), never with a client error. */
enum keel_schema_type {
    KEEL_SCHEMA_STRING, /* min..max: length in code points (max 0 = no limit) */
    KEEL_SCHEMA_INT,    /* min..max: value (both 0 = any int64; for "at least 1"
                           write max = INT64_MAX) */
    KEEL_SCHEMA_BOOL,
    KEEL_SCHEMA_OBJECT, /* `object` describes it */
    KEEL_SCHEMA_ARRAY,  /* min..max: element count (max 0 = no limit); `items`
                           describes each element */
};

/* String formats checked after the length. */
enum keel_schema_format {
    KEEL_FMT_NONE,
    KEEL_FMT_EMAIL,    /* one @, non-empty local part and domain with a dot, no spaces
                          or control characters, at most 254 bytes; the domain
                          neither starts nor ends with a dot nor holds ".." */
    KEEL_FMT_UUID,     /* canonical 8-4-4-4-12 hex, either case (keel_uuid_valid,
                          as the router's {id:uuid}) */
    KEEL_FMT_CURRENCY, /* three uppercase ASCII letters (ISO 4217 shape) */
};

/* Field flags. On an array's `items`, KEEL_SF_NULLABLE accepts null
 * elements; the other flags mean nothing there. */
#define KEEL_SF_REQUIRED  0x1u /* absent -> "is required" */
#define KEEL_SF_READ_ONLY 0x2u /* present -> "is read-only" (known, not writable) */
#define KEEL_SF_NULLABLE  0x4u /* JSON null accepted (the handler sees NULL) */

/* At most this many errors are reported per validation; the walk stops at
 * the next one and the problem's detail says the list is incomplete. This
 * bounds the work and the response for hostile bodies (a huge array). */
#define KEEL_SCHEMA_MAX_ERRORS 32

/* Longer field paths (deep nesting, long unknown keys) are cut at a UTF-8
 * boundary and end in "..."; the field string never exceeds this. */
#define KEEL_SCHEMA_MAX_PATH 256

struct keel_schema;

struct keel_schema_field {
    const char *name;
    enum keel_schema_type type;
    uint32_t flags; /* KEEL_SF_* */
    int64_t min, max;
    enum keel_schema_format format;        /* strings */
    const char *const *enum_values;        /* strings: NULL-terminated allowed values */
    const struct keel_schema *object;      /* KEEL_SCHEMA_OBJECT */
    const struct keel_schema_field *items; /* KEEL_SCHEMA_ARRAY: the element (name unused) */
};

struct keel_schema {
    const struct keel_schema_field *fields;
    unsigned nfields;
    /* At least one field must be present (PATCH bodies): "{}" is refused. */
    bool require_one;
};

/* Checks `body` against `s`. The body must be a JSON object: anything else,
 * NULL (the document `null`) included, is one error on field "" ("must be
 * an object"). Adds one keel_fail_field per problem to req (paths and
 * messages are copied into req->arena) and returns:
 *   KEEL_OK          no problem; req is untouched
 *   KEEL_E_INVALID   the 400 validation-error (for the caller to return)
 *   KEEL_E_NOMEM     the arena budget ran out while recording errors
 *   KEEL_E_INTERNAL  the schema itself is malformed (see above)
 * Problems: wrong type (ints must be JSON integers, not 1.0 or "1"),
 * length or range, format, value not in the enumeration, unknown field,
 * read-only field, missing required field, null where not nullable, and
 * the same inside nested objects and arrays (depth is bounded by the body
 * parser). Messages are fixed English text that never echoes the value.
 *
 * json-c clamps integers outside int64 while parsing: a value above
 * INT64_MAX is detected (through its uint64 reading) and refused, but one
 * below INT64_MIN reads as INT64_MIN, so a field that must not accept it
 * needs a range with min > INT64_MIN. */
keel_status keel_schema_validate(struct keel_request *req,
                                 const struct keel_schema *s,
                                 const struct json_object *body);

#endif
