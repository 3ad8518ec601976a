/*
 * arena.c - per-request region allocator (see include/keel/arena.h).
 *
 * DESIGN: the first chunk is allocated together with the arena header and
 * survives resets, so a recycled arena serves a typical request without a
 * single malloc. Further chunks and large blocks are freed on reset. With
 * KEEL_ARENA_DEBUG every allocation is its own malloc on the large list, so
 * AddressSanitizer and Valgrind see each overrun (nginx NGX_DEBUG_PALLOC).
 */
#include "keel/arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 16

struct chunk {
    struct chunk *next;
    char *end;
    char data[];
};

struct large {
    struct large *next;
    size_t size;
    _Alignas(ALIGN) char data[];
};

struct cleanup {
    struct cleanup *next;
    keel_cleanup_fn fn;
    void *p;
};

struct keel_arena {
    struct chunk *first;
    struct chunk *cur;
    char *pos;
    struct large *large;
    struct cleanup *cleanups;
    size_t used;
    size_t budget;
};

static size_t align_up(size_t n)
{
    return (n + (ALIGN - 1)) & ~(size_t)(ALIGN - 1);
}

static char *chunk_start(struct chunk *c)
{
    return (char *)align_up((uintptr_t)c->data);
}

struct keel_arena *keel_arena_new(size_t budget)
{
    struct keel_arena *a = keel_xmalloc(sizeof(*a));
    struct chunk *c = keel_xmalloc(KEEL_ARENA_CHUNK);

    c->next = NULL;
    c->end = (char *)c + KEEL_ARENA_CHUNK;
    a->first = a->cur = c;
    a->pos = chunk_start(c);
    a->large = NULL;
    a->cleanups = NULL;
    a->used = 0;
    a->budget = budget ? budget : KEEL_ARENA_BUDGET;
    return a;
}

static void run_cleanups(struct keel_arena *a)
{
    struct cleanup *c = a->cleanups;

    /* The list is LIFO already: the newest entry is at its head. */
    a->cleanups = NULL;
    for (; c; c = c->next)
        c->fn(c->p);
}

static void free_blocks(struct keel_arena *a)
{
    struct large *l, *ln;
    struct chunk *c, *cn;

    for (l = a->large; l; l = ln) {
        ln = l->next;
#ifdef KEEL_ARENA_DEBUG
        memset(l->data, 0xaa, l->size);
#endif
        free(l);
    }
    a->large = NULL;
    for (c = a->first->next; c; c = cn) {
        cn = c->next;
        free(c);
    }
    a->first->next = NULL;
}

void keel_arena_reset(struct keel_arena *a)
{
    run_cleanups(a);
    free_blocks(a);
#ifdef KEEL_ARENA_DEBUG
    memset(chunk_start(a->first), 0xaa, (size_t)(a->first->end - chunk_start(a->first)));
#endif
    a->cur = a->first;
    a->pos = chunk_start(a->first);
    a->used = 0;
}

void keel_arena_destroy(struct keel_arena *a)
{
    if (!a)
        return;
    run_cleanups(a);
    free_blocks(a);
    free(a->first);
    free(a);
}

void keel_arena_set_budget(struct keel_arena *a, size_t budget)
{
    a->budget = budget;
}

size_t keel_arena_used(const struct keel_arena *a)
{
    return a->used;
}

static void *alloc_large(struct keel_arena *a, size_t n)
{
    struct large *l = malloc(sizeof(*l) + n);

    if (!l)
        return NULL;
    l->next = a->large;
    l->size = n;
    a->large = l;
    return l->data;
}

#ifndef KEEL_ARENA_DEBUG
static void *alloc_chunk(struct keel_arena *a, size_t n)
{
    struct chunk *c = malloc(KEEL_ARENA_CHUNK);

    if (!c)
        return NULL;
    c->end = (char *)c + KEEL_ARENA_CHUNK;
    /* Insert after the current chunk; the old chunk's tail is given up,
     * which wastes at most KEEL_ARENA_LARGE bytes per chunk. */
    c->next = a->cur->next;
    a->cur->next = c;
    a->cur = c;
    a->pos = chunk_start(c) + n;
    return chunk_start(c);
}
#endif

void *keel_arena_alloc(struct keel_arena *a, size_t n)
{
    void *p;

    if (n > a->budget) /* before rounding up, which could wrap */
        return NULL;
    n = align_up(n ? n : 1);
    if (n > a->budget || a->used > a->budget - n)
        return NULL;
#ifdef KEEL_ARENA_DEBUG
    p = alloc_large(a, n);
#else
    if (n > KEEL_ARENA_LARGE) {
        p = alloc_large(a, n);
    } else if ((size_t)(a->cur->end - a->pos) >= n) {
        p = a->pos;
        a->pos += n;
    } else {
        p = alloc_chunk(a, n);
    }
#endif
    if (p)
        a->used += n;
    return p;
}

void *keel_arena_calloc(struct keel_arena *a, size_t count, size_t n)
{
    void *p;

    if (n && count > SIZE_MAX / n)
        return NULL;
    p = keel_arena_alloc(a, count * n);
    if (p)
        memset(p, 0, count * n);
    return p;
}

void *keel_arena_memdup(struct keel_arena *a, const void *src, size_t n)
{
    void *p = keel_arena_alloc(a, n);

    if (p && n)
        memcpy(p, src, n);
    return p;
}

char *keel_arena_strndup(struct keel_arena *a, const char *s, size_t n)
{
    char *p;

    if (n == SIZE_MAX)
        return NULL;
    p = keel_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *keel_arena_strdup(struct keel_arena *a, const char *s)
{
    return keel_arena_strndup(a, s, strlen(s));
}

char *keel_arena_vsprintf(struct keel_arena *a, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    char *p;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    p = keel_arena_alloc(a, (size_t)n + 1);
    if (p)
        vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *keel_arena_sprintf(struct keel_arena *a, const char *fmt, ...)
{
    va_list ap;
    char *p;

    va_start(ap, fmt);
    p = keel_arena_vsprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

keel_status keel_arena_defer(struct keel_arena *a, keel_cleanup_fn fn, void *p)
{
    struct cleanup *c = keel_arena_alloc(a, sizeof(*c));

    if (!c)
        return KEEL_E_NOMEM;
    c->fn = fn;
    c->p = p;
    c->next = a->cleanups;
    a->cleanups = c;
    return KEEL_OK;
}
