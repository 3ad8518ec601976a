/*
 * breaker.h - a generic circuit breaker (seed 001 "circuit breaker") for
 * every outbound dependency: Redis now, the payment provider and SMTP later.
 *
 * A breaker is closed while its dependency works and every call goes
 * through. When at least `min_calls` calls were recorded in the rolling
 * window and `failure_ratio` of them failed, it opens: for `open_ms` every
 * call fails fast without touching the dependency. Then it turns half-open
 * and lets `half_open_calls` trial calls through: when all of them succeed
 * it closes again, when one fails it opens for another `open_ms`.
 *
 * Usage, around each call to the dependency:
 *
 *     if (!keel_breaker_allow(b))
 *         return KEEL_E_UNAVAILABLE;     fail fast, the dependency is not called
 *     ok = call_the_dependency();
 *     keel_breaker_record(b, ok);        exactly once for every allowed call
 *
 * Every state change is logged (warn when opening, info otherwise, with the
 * breaker's name, "from" and "to") and exported as the gauge
 * keel_circuit_breaker_state{name} (0 closed, 1 half-open, 2 open).
 *
 * Thread-safety: every function may be called from any thread (event loops
 * and pool threads share one breaker). keel_breaker_allow() on a closed
 * breaker, and on an open one before its time is up, is one atomic load and
 * takes no lock; keel_breaker_record() takes a short mutex.
 */
#ifndef KEEL_BREAKER_H
#define KEEL_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/core.h"

struct keel_config;
struct keel_breaker;

/* The values double as the gauge values of keel_circuit_breaker_state. */
enum keel_breaker_state {
    KEEL_BREAKER_CLOSED = 0,
    KEEL_BREAKER_HALF_OPEN = 1,
    KEEL_BREAKER_OPEN = 2,
};

/* Defaults (SPEC section 5, KEEL_BREAKER_*). */
#define KEEL_BREAKER_FAILURE_RATIO   0.5
#define KEEL_BREAKER_MIN_CALLS       20
#define KEEL_BREAKER_WINDOW_MS       10000
#define KEEL_BREAKER_OPEN_MS         60000
#define KEEL_BREAKER_HALF_OPEN_CALLS 3
/* The window is counted in this many buckets, so old calls leave it one
 * bucket (window_ms / 10) at a time. */
#define KEEL_BREAKER_BUCKETS 10

/*
 * Options. A zero field (or a failure_ratio outside (0, 1]) takes its
 * default, so `{0}` and `{.open_ms = 5000}` are valid.
 *
 * now_ms: the clock, in milliseconds from any fixed origin, monotonic; NULL
 * means the process's monotonic clock. Tests inject a fake clock here; it is
 * called with now_arg from any thread that uses the breaker.
 */
struct keel_breaker_opts {
    double failure_ratio;     /* open at failures >= ratio * calls */
    unsigned min_calls;       /* ... once the window holds at least this many calls */
    uint64_t window_ms;       /* rolling window of recorded calls */
    uint64_t open_ms;         /* fail-fast time before trial calls */
    unsigned half_open_calls; /* trial calls; all must succeed to close */
    uint64_t (*now_ms)(void *now_arg);
    void *now_arg;
};

/* Fills *opts from the KEEL_BREAKER_* options of cfg (zero fields of cfg,
 * as in a zeroed test config, keep the defaults); the clock is left NULL. */
void keel_breaker_opts_from_config(struct keel_breaker_opts *opts, const struct keel_config *cfg);

/*
 * Creates a closed breaker. `name` (copied) labels logs and the gauge; use
 * a short static word ("redis", "payments"). opts NULL means the defaults;
 * it is copied. Registers keel_circuit_breaker_state on first use and sets
 * this breaker's series to 0. Never fails (control allocation aborts on
 * exhaustion). Free it with keel_breaker_free().
 */
struct keel_breaker *keel_breaker_new(const char *name, const struct keel_breaker_opts *opts);

/* Frees b (NULL is a no-op). No other thread may use it meanwhile. The
 * gauge series keeps its last value. */
void keel_breaker_free(struct keel_breaker *b);

/*
 * Asks whether a call may go to the dependency now. True when closed; when
 * open, false until open_ms have passed, after which the breaker turns
 * half-open; when half-open, true for the first half_open_calls callers and
 * false for the others until those trial calls are recorded. Every true
 * answer must be followed by exactly one keel_breaker_record() once the
 * call's outcome is known; a false answer must not.
 *
 * Should a trial call never be recorded (a caller bug), a half-open breaker
 * hands out a new set of trial calls after another open_ms rather than stay
 * stuck.
 */
bool keel_breaker_allow(struct keel_breaker *b);

/*
 * Records the outcome of a call keel_breaker_allow() let through: ok false
 * for a dependency failure (timeout, connection lost, server unavailable),
 * true otherwise (an answer, even an application-level error answer).
 * Closed: counted in the window, and the breaker opens when the window
 * holds >= min_calls calls of which >= failure_ratio failed. Half-open: a
 * failure opens it again; the half_open_calls-th success closes it with an
 * empty window. Open: ignored (late outcomes of calls allowed before it
 * opened).
 */
void keel_breaker_record(struct keel_breaker *b, bool ok);

/* The current state. An open breaker whose open_ms have passed is reported
 * open until the next keel_breaker_allow() turns it half-open. */
enum keel_breaker_state keel_breaker_state(struct keel_breaker *b);

/* "closed", "half-open" or "open" (static strings); "unknown" otherwise. */
const char *keel_breaker_state_name(enum keel_breaker_state st);

/* The name given to keel_breaker_new(). */
const char *keel_breaker_name(const struct keel_breaker *b);

#endif
