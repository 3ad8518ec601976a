/*
 * trace.c - the W3C Trace Context traceparent parser
 * (include/keel/events.h; https://www.w3.org/TR/trace-context/ level 1).
 * Events carry the trace-id of the request that caused them in their
 * metadata, so a trace can be followed from a request to the events it
 * wrote and on to the outbox messages.
 *
 * DESIGN: the parser takes the header's bytes, not a request, so that
 * src/events stays below the HTTP layer; whoever owns the request decides
 * what a missing or repeated header means (orders: no trace).
 */
#include <string.h>

#include "keel/events.h"

#define TRACEPARENT_LEN 55 /* "vv-" 32 "-" 16 "-ff" */

/* True when s[0..n) is lowercase hex; *all_zero tells whether every digit
 * is '0' (an invalid id). */
static bool lower_hex(const char *s, size_t n, bool *all_zero)
{
    size_t i;

    *all_zero = true;
    for (i = 0; i < n; i++) {
        char ch = s[i];

        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return false;
        if (ch != '0')
            *all_zero = false;
    }
    return true;
}

static unsigned hex_digit(char ch)
{
    return ch <= '9' ? (unsigned)(ch - '0') : (unsigned)(ch - 'a' + 10);
}

/* version "-" trace-id "-" parent-id "-" flags, 2-32-16-2 hex. Version ff
 * is invalid; a future version may append fields after the flags
 * ("-..."), which version 00 may not. */
static bool valid(const char *v, size_t len)
{
    bool zero;

    if (!v || len < TRACEPARENT_LEN)
        return false;
    if (v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    if (!lower_hex(v, 2, &zero) || (v[0] == 'f' && v[1] == 'f'))
        return false;
    if (len > TRACEPARENT_LEN && (memcmp(v, "00", 2) == 0 || v[TRACEPARENT_LEN] != '-'))
        return false;
    if (!lower_hex(v + 53, 2, &zero))
        return false;
    if (!lower_hex(v + 36, 16, &zero) || zero)
        return false;
    return lower_hex(v + 3, 32, &zero) && !zero;
}

bool keel_trace_parse(const char *traceparent, size_t len, struct keel_trace_context *out)
{
    const char *v = traceparent;

    memset(out, 0, sizeof(*out));
    if (!valid(v, len))
        return false;
    memcpy(out->trace_id, v + 3, 32);
    memcpy(out->parent_id, v + 36, 16);
    out->flags = (uint8_t)(hex_digit(v[53]) << 4 | hex_digit(v[54]));
    return true;
}
