/*
 * arena.h - per-request region allocator with deferred cleanups
 * (STYLE.md section 7; nginx ngx_pool_t, lwan coro_defer).
 *
 * Allocations bump a pointer through 16 KiB chunks; requests over 4 KiB get
 * their own block on a "large" list. Nothing is freed individually: reset
 * runs the deferred cleanups (last registered first), frees everything but
 * the first chunk and makes the arena reusable. Each arena has a byte
 * budget; an allocation past it returns NULL, which callers turn into
 * KEEL_E_NOMEM (503) or KEEL_E_TOO_LARGE - the process stays up.
 *
 * An arena is used by one thread at a time. Data that must outlive it is
 * copied out (keel_xmalloc) by its owner.
 */
#ifndef KEEL_ARENA_H
#define KEEL_ARENA_H

#include <stdarg.h>
#include <stddef.h>

#include "keel/core.h"

#define KEEL_ARENA_CHUNK  (16 * 1024)
#define KEEL_ARENA_LARGE  (4 * 1024)
#define KEEL_ARENA_BUDGET (1024 * 1024)

struct keel_arena;

typedef void (*keel_cleanup_fn)(void *p);

/* Creates an arena that may hand out at most `budget` bytes (0 = default
 * KEEL_ARENA_BUDGET). Aborts on out-of-memory like keel_xmalloc. */
struct keel_arena *keel_arena_new(size_t budget);
/* Runs the cleanups and frees all memory, the arena included. NULL is ok. */
void keel_arena_destroy(struct keel_arena *a);
/* Runs the cleanups, frees all but the first chunk; the arena is empty and
 * reusable. With KEEL_ARENA_DEBUG the released memory is poisoned (0xaa). */
void keel_arena_reset(struct keel_arena *a);
/* Changes the budget (for routes with their own limit); takes effect for the
 * following allocations. */
void keel_arena_set_budget(struct keel_arena *a, size_t budget);
size_t keel_arena_used(const struct keel_arena *a);

/* Each returns NULL only when the budget would be exceeded. Memory is
 * 16-byte aligned and lives until the next reset/destroy. */
void *keel_arena_alloc(struct keel_arena *a, size_t n);
void *keel_arena_calloc(struct keel_arena *a, size_t count, size_t n);
char *keel_arena_strdup(struct keel_arena *a, const char *s);
char *keel_arena_strndup(struct keel_arena *a, const char *s, size_t n);
void *keel_arena_memdup(struct keel_arena *a, const void *p, size_t n);
char *keel_arena_sprintf(struct keel_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
char *keel_arena_vsprintf(struct keel_arena *a, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Registers fn(p) to run at the next reset/destroy, in reverse order of
 * registration. Returns KEEL_E_NOMEM (and does NOT run fn) past the budget;
 * the caller then still owns p. */
keel_status keel_arena_defer(struct keel_arena *a, keel_cleanup_fn fn, void *p);

#endif
