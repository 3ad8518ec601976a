/*
 * schema.h - request body schemas as data (SPEC section 2, step 10): types,
 * lengths, ranges, enumerations; unknown fields and read-only fields are
 * rejected (mass assignment, OWASP API3). A route points at its schema
 * (struct keel_route.schema) and the VALIDATE phase (src/mw/validate.c)
 * checks the parsed JSON body against it before the handler runs.
 *
 * Every problem found is reported, each as one per-field error of a 400
 * validation-error (keel_fail_field), with the field's path ("email",
 * "items[2].quantity").
 */
#ifndef KEEL_SCHEMA_H
#define KEEL_SCHEMA_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/core.h"

struct json_object;
struct keel_request;

enum keel_schema_type {
    KEEL_SCHEMA_STRING, /* min..max: length in code points (max 0 = no limit) */
    KEEL_SCHEMA_INT,    /* min..max: value (both 0 = any int64) */
    KEEL_SCHEMA_BOOL,
    KEEL_SCHEMA_OBJECT, /* `object` describes it */
    KEEL_SCHEMA_ARRAY,  /* min..max: element count; `items` describes each element */
};

/* String formats checked after the length. */
enum keel_schema_format {
    KEEL_FMT_NONE,
    KEEL_FMT_EMAIL,    /* one @, non-empty local part and domain with a dot, no spaces
                          or control characters, at most 254 bytes */
    KEEL_FMT_UUID,     /* canonical lowercase or uppercase 8-4-4-4-12 hex */
    KEEL_FMT_CURRENCY, /* three uppercase ASCII letters (ISO 4217 shape) */
};

#define KEEL_SF_REQUIRED  0x1u /* absent -> "is required" */
#define KEEL_SF_READ_ONLY 0x2u /* present -> "is read-only" (known, not writable) */
#define KEEL_SF_NULLABLE  0x4u /* JSON null accepted (the handler sees NULL) */

struct keel_schema;

struct keel_schema_field {
    const char *name;
    enum keel_schema_type type;
    uint32_t flags; /* KEEL_SF_* */
    int64_t min, max;
    enum keel_schema_format format;            /* strings */
    const char *const *enum_values;            /* strings: NULL-terminated allowed values */
    const struct keel_schema *object;          /* KEEL_SCHEMA_OBJECT */
    const struct keel_schema_field *items;     /* KEEL_SCHEMA_ARRAY: the element (name unused) */
};

struct keel_schema {
    const struct keel_schema_field *fields;
    unsigned nfields;
    /* At least one field must be present (PATCH bodies): "{}" is refused. */
    bool require_one;
};

/* Checks `body` against `s`. The body must be a JSON object. Adds one
 * keel_fail_field per problem to req and returns KEEL_OK when there were
 * none, else the 400 validation-error status (for the caller to return).
 * Problems: wrong type (ints must be JSON integers, not 1.0 or "1"),
 * length or range, format, value not in the enumeration, unknown field,
 * read-only field, missing required field, null where not nullable, and
 * the same inside nested objects and arrays (depth is bounded by the body
 * parser). Messages are fixed English text that never echoes the value. */
keel_status keel_schema_validate(struct keel_request *req,
                                 const struct keel_schema *s,
                                 const struct json_object *body);

#endif
