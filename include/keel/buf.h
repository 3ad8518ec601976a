/*
 * buf.h - a growable byte buffer with a hard maximum (curl's dynbuf idea).
 *
 * The buffer owns its heap memory. Every append that would grow it past
 * `max` fails with KEEL_E_TOO_LARGE and leaves the contents unchanged, so
 * input-sized data can never grow memory without bound.
 */
#ifndef KEEL_BUF_H
#define KEEL_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "keel/core.h"

struct keel_buf {
    char *data; /* NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
    size_t max;
};

/* Initializes an empty buffer that may hold at most `max` bytes. */
void keel_buf_init(struct keel_buf *b, size_t max);
/* Frees the memory and leaves the buffer empty and reusable. */
void keel_buf_free(struct keel_buf *b);
/* Empties the buffer but keeps its memory. */
void keel_buf_reset(struct keel_buf *b);

/* Each returns KEEL_OK, or KEEL_E_TOO_LARGE past `max` (nothing appended). */
keel_status keel_buf_append(struct keel_buf *b, const void *p, size_t n);
keel_status keel_buf_appends(struct keel_buf *b, const char *s);
keel_status keel_buf_appendc(struct keel_buf *b, char c);
keel_status keel_buf_appendf(struct keel_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
keel_status keel_buf_vappendf(struct keel_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
keel_status keel_buf_reserve(struct keel_buf *b, size_t extra);

#endif
