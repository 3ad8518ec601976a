/*
 * buf.c - bounded growable byte buffer (see include/keel/buf.h).
 */
#include "keel/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void keel_buf_init(struct keel_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void keel_buf_free(struct keel_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void keel_buf_reset(struct keel_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

keel_status keel_buf_reserve(struct keel_buf *b, size_t extra)
{
    size_t need, cap;

    if (extra > b->max || b->len > b->max - extra)
        return KEEL_E_TOO_LARGE;
    need = b->len + extra + 1; /* room for the terminating NUL */
    if (need <= b->cap)
        return KEEL_OK;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (b->max < SIZE_MAX && cap > b->max + 1)
        cap = b->max + 1;
    b->data = keel_xrealloc(b->data, cap);
    b->cap = cap;
    return KEEL_OK;
}

keel_status keel_buf_append(struct keel_buf *b, const void *p, size_t n)
{
    keel_status rc = keel_buf_reserve(b, n);

    if (rc < 0)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KEEL_OK;
}

keel_status keel_buf_appends(struct keel_buf *b, const char *s)
{
    return keel_buf_append(b, s, strlen(s));
}

keel_status keel_buf_appendc(struct keel_buf *b, char c)
{
    return keel_buf_append(b, &c, 1);
}

keel_status keel_buf_vappendf(struct keel_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    keel_status rc;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return KEEL_E_INVALID;
    rc = keel_buf_reserve(b, (size_t)n);
    if (rc < 0)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return KEEL_OK;
}

keel_status keel_buf_appendf(struct keel_buf *b, const char *fmt, ...)
{
    va_list ap;
    keel_status rc;

    va_start(ap, fmt);
    rc = keel_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}
