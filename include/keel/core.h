/*
 * core.h - the status type, assertions, checked allocation and string views
 * shared by every Keel subsystem.
 *
 * Negative statuses are errors, positive ones are pipeline flow codes
 * (STYLE.md section 6). One table in src/core/err.c maps each status to a
 * name, a message, an HTTP status and a problem+json slug.
 */
#ifndef KEEL_CORE_H
#define KEEL_CORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef enum keel_status {
    KEEL_OK = 0,
    KEEL_DECLINED = 1,
    KEEL_DONE = 2,
    KEEL_AGAIN = 3,
    KEEL_E_NOMEM = -1,
    KEEL_E_INVALID = -2,
    KEEL_E_NOT_FOUND = -3,
    KEEL_E_CONFLICT = -4,
    KEEL_E_AUTH = -5,
    KEEL_E_FORBIDDEN = -6,
    KEEL_E_TOO_LARGE = -7,
    KEEL_E_DB = -8,
    KEEL_E_UNAVAILABLE = -9,
    KEEL_E_TIMEOUT = -10,
    KEEL_E_INTERNAL = -11,
} keel_status;

#define KEEL_E_MIN KEEL_E_INTERNAL

/* keel_status_name returns the enum member's name ("KEEL_E_INVALID");
 * keel_strerror a short English message. Both return static strings and
 * accept any value (unknown values give "KEEL_E_UNKNOWN"). */
const char *keel_status_name(keel_status rc);
const char *keel_strerror(keel_status rc);

/* The HTTP status an error status maps to (200 for non-errors). */
int keel_status_http(keel_status rc);

/* Process exit codes (SPEC section 1, sysexits.h values). */
enum {
    KEEL_EXIT_OK = 0,
    KEEL_EXIT_FAILURE = 1,
    KEEL_EXIT_USAGE = 64,
    KEEL_EXIT_CONFIG = 78,
};

/* Assertions stay on in release builds: a broken invariant is logged with
 * its location and the process aborts. Never assert on user input. */
#define KEEL_ASSERT(cond) ((cond) ? (void)0 : keel__assert_fail(#cond, __FILE__, __LINE__))
#ifdef KEEL_DEBUG
#define KEEL_DEBUG_ASSERT(cond) KEEL_ASSERT(cond)
#else
#define KEEL_DEBUG_ASSERT(cond) ((void)0)
#endif
/* For "cannot happen" branches that are handled anyway (sqlite ALWAYS/NEVER). */
#define KEEL_ALWAYS(cond) (cond)
#define KEEL_NEVER(cond)  (cond)

_Noreturn void keel__assert_fail(const char *expr, const char *file, int line);

/* Fixed-size control allocations: these abort on exhaustion (STYLE.md 6).
 * Anything sized by input goes through an arena or a bounded buffer. */
void *keel_xmalloc(size_t n);
void *keel_xcalloc(size_t count, size_t n);
void *keel_xrealloc(void *p, size_t n);
char *keel_xstrdup(const char *s);

/* A borrowed byte range; never owns its memory. */
struct keel_str {
    const char *p;
    size_t len;
};

#define KEEL_STR(lit)     ((struct keel_str){(lit), sizeof(lit) - 1})
#define KEEL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* The struct of type `type` whose member `member` is at ptr. */
#define KEEL_CONTAINER_OF(ptr, type, member)                                                       \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Length (1..4) of the valid UTF-8 sequence at s[0..n), or 0 when it is
 * invalid: truncated, overlong, a surrogate, or past U+10FFFF (RFC 3629). */
size_t keel_utf8_seq(const unsigned char *s, size_t n);

bool keel_str_eq(struct keel_str a, const char *lit);
bool keel_str_caseeq(struct keel_str a, const char *lit);

/* Monotonic clock in nanoseconds, and wall clock in milliseconds since the
 * epoch. */
uint64_t keel_now_ns(void);
/* The CPUs this process may run on: the affinity mask honours taskset and
 * container cpusets, which the online count does not. At least 1. */
unsigned keel_cpu_count(void);
/* The time `ms` milliseconds from now on `clock`, as a deadline for
 * pthread_cond_timedwait (CLOCK_REALTIME unless the condition says). */
struct timespec keel_deadline_in(clockid_t clock, unsigned ms);
int64_t keel_wall_ms(void);

/* Initializes a mutex that spins briefly before sleeping (glibc's adaptive
 * type): for locks held a few hundred nanoseconds by event-loop threads
 * (rate-limit store, L1 cache), where a futex sleep and wake-up costs far
 * more than the wait. Aborts on failure. */
void keel_mutex_init_fast(pthread_mutex_t *mu);

/* Formats microseconds since the epoch as RFC 3339 UTC with milliseconds
 * ("2026-11-22T10:00:00.123Z"). Returns false (out = "") when the time
 * cannot be represented. */
#define KEEL_TIME_STRLEN 32
bool keel_time_format(int64_t us, char out[KEEL_TIME_STRLEN]);

#endif
