/*
 * breaker.c - the circuit breaker of include/keel/breaker.h.
 *
 * DESIGN: the state lives in an atomic so the question asked before every
 * call - "may I?" - costs one load while the breaker is closed (the normal
 * case) and one load plus a clock read while it is open and failing fast.
 * Everything else (recording outcomes, transitions, half-open trial
 * accounting) happens under one small mutex: a record is a handful of
 * additions, and an uncontended mutex is cheaper to reason about than a
 * lock-free rolling window whose buckets must be reset as time moves on.
 * The transition and its gauge update happen under the mutex, so the gauge
 * never shows an older state than the breaker; the log line is written
 * after unlocking, because a write(2) should not extend the critical
 * section.
 *
 * The rolling window is KEEL_BREAKER_BUCKETS buckets of window_ms / 10,
 * each stamped with the bucket number (now / bucket_ms) it counts; a bucket
 * whose stamp is older than the window is ignored and reused. So the window
 * covers between window_ms - bucket_ms and window_ms of history, without a
 * timer.
 */
#include "keel/breaker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "keel/config.h"
#include "keel/log.h"
#include "keel/metrics.h"

struct bucket {
    uint64_t epoch; /* now / bucket_ms of the calls counted here */
    uint32_t calls;
    uint32_t fails;
};

struct keel_breaker {
    char *name;
    struct keel_breaker_opts o;
    uint64_t bucket_ms;
    _Atomic int state;           /* enum keel_breaker_state */
    _Atomic uint64_t open_until; /* clock value at which an open breaker may turn half-open */
    pthread_mutex_t mu;          /* guards everything below and every transition */
    struct bucket buckets[KEEL_BREAKER_BUCKETS];
    unsigned trials;     /* half-open: trial calls let through */
    unsigned trial_ok;   /* half-open: trial calls recorded as successes */
    uint64_t half_since; /* half-open: when the current trial set started */
    struct keel_metric *gauge;
};

/* A transition decided under the mutex, logged after it. */
struct change {
    bool happened;
    enum keel_breaker_state from, to;
    uint32_t calls, fails;
};

static uint64_t mono_ms(void *arg)
{
    (void)arg;
    return keel_now_ns() / 1000000u;
}

static uint64_t now_of(const struct keel_breaker *b)
{
    return b->o.now_ms(b->o.now_arg);
}

const char *keel_breaker_state_name(enum keel_breaker_state st)
{
    switch (st) {
    case KEEL_BREAKER_CLOSED:
        return "closed";
    case KEEL_BREAKER_HALF_OPEN:
        return "half-open";
    case KEEL_BREAKER_OPEN:
        return "open";
    }
    return "unknown";
}

void keel_breaker_opts_from_config(struct keel_breaker_opts *opts, const struct keel_config *cfg)
{
    memset(opts, 0, sizeof(*opts));
    if (cfg->breaker_failure_percent)
        opts->failure_ratio = cfg->breaker_failure_percent / 100.0;
    opts->min_calls = cfg->breaker_min_calls;
    opts->window_ms = cfg->breaker_window_ms;
    opts->open_ms = cfg->breaker_open_ms;
    opts->half_open_calls = cfg->breaker_half_open_calls;
}

static void fill_defaults(struct keel_breaker_opts *o)
{
    if (!(o->failure_ratio > 0.0 && o->failure_ratio <= 1.0))
        o->failure_ratio = KEEL_BREAKER_FAILURE_RATIO;
    if (o->min_calls == 0)
        o->min_calls = KEEL_BREAKER_MIN_CALLS;
    if (o->window_ms == 0)
        o->window_ms = KEEL_BREAKER_WINDOW_MS;
    if (o->open_ms == 0)
        o->open_ms = KEEL_BREAKER_OPEN_MS;
    if (o->half_open_calls == 0)
        o->half_open_calls = KEEL_BREAKER_HALF_OPEN_CALLS;
    if (!o->now_ms) {
        o->now_ms = mono_ms;
        o->now_arg = NULL;
    }
}

struct keel_breaker *keel_breaker_new(const char *name, const struct keel_breaker_opts *opts)
{
    static const char *const labels[] = {"name"};
    struct keel_breaker *b = keel_xcalloc(1, sizeof(*b));

    b->name = keel_xstrdup(name);
    if (opts)
        b->o = *opts;
    fill_defaults(&b->o);
    b->bucket_ms = b->o.window_ms / KEEL_BREAKER_BUCKETS;
    if (b->bucket_ms == 0)
        b->bucket_ms = 1;
    atomic_init(&b->state, KEEL_BREAKER_CLOSED);
    atomic_init(&b->open_until, 0);
    pthread_mutex_init(&b->mu, NULL);
    /* Registering again returns the existing family, so every breaker
     * simply asks; this also survives keel_metrics_reset_for_tests(). */
    b->gauge =
        keel_metric_gauge("keel_circuit_breaker_state",
                          "Circuit breaker state (0 closed, 1 half-open, 2 open).", 1, labels);
    keel_metric_set(b->gauge, (const char *const[]){b->name}, KEEL_BREAKER_CLOSED);
    return b;
}

void keel_breaker_free(struct keel_breaker *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b->name);
    free(b);
}

const char *keel_breaker_name(const struct keel_breaker *b)
{
    return b->name;
}

enum keel_breaker_state keel_breaker_state(struct keel_breaker *b)
{
    return (enum keel_breaker_state)atomic_load_explicit(&b->state, memory_order_acquire);
}

/* ---------------------------------------------------------- transitions */

/* Sums the buckets still inside the window. Caller holds b->mu. */
static void window_sum(const struct keel_breaker *b, uint64_t now, uint32_t *calls, uint32_t *fails)
{
    uint64_t epoch = now / b->bucket_ms;
    unsigned i;

    *calls = *fails = 0;
    for (i = 0; i < KEEL_BREAKER_BUCKETS; i++) {
        const struct bucket *k = &b->buckets[i];

        if (k->epoch <= epoch && epoch - k->epoch < KEEL_BREAKER_BUCKETS) {
            *calls += k->calls;
            *fails += k->fails;
        }
    }
}

/* Moves to `to`, caller holding b->mu: resets the window and the trial
 * accounting, and updates the gauge while the order of changes is fixed. */
static void
transition(struct keel_breaker *b, enum keel_breaker_state to, uint64_t now, struct change *ch)
{
    ch->happened = true;
    ch->from = keel_breaker_state(b);
    ch->to = to;
    memset(b->buckets, 0, sizeof(b->buckets));
    b->trials = 0;
    b->trial_ok = 0;
    b->half_since = now;
    if (to == KEEL_BREAKER_OPEN)
        atomic_store_explicit(&b->open_until, now + b->o.open_ms, memory_order_relaxed);
    atomic_store_explicit(&b->state, to, memory_order_release);
    keel_metric_set(b->gauge, (const char *const[]){b->name}, to);
}

static void log_change(const struct keel_breaker *b, const struct change *ch)
{
    if (!ch->happened)
        return;
    if (ch->to == KEEL_BREAKER_OPEN)
        keel_log(KEEL_LOG_WARN, "circuit breaker opened", KEEL_LF_STR("breaker", b->name),
                 KEEL_LF_STR("from", keel_breaker_state_name(ch->from)),
                 KEEL_LF_STR("to", keel_breaker_state_name(ch->to)),
                 KEEL_LF_INT("calls", ch->calls), KEEL_LF_INT("failures", ch->fails),
                 KEEL_LF_INT("open_ms", (int64_t)b->o.open_ms));
    else
        keel_log(
            KEEL_LOG_INFO,
            ch->to == KEEL_BREAKER_CLOSED ? "circuit breaker closed" : "circuit breaker half-open",
            KEEL_LF_STR("breaker", b->name), KEEL_LF_STR("from", keel_breaker_state_name(ch->from)),
            KEEL_LF_STR("to", keel_breaker_state_name(ch->to)));
}

/* -------------------------------------------------------------- calls */

/* The slow path of keel_breaker_allow(): open with its time up, or
 * half-open. Caller holds b->mu. */
static bool allow_locked(struct keel_breaker *b, uint64_t now, struct change *ch)
{
    switch (keel_breaker_state(b)) {
    case KEEL_BREAKER_CLOSED:
        return true;
    case KEEL_BREAKER_OPEN:
        if (now < atomic_load_explicit(&b->open_until, memory_order_relaxed))
            return false;
        transition(b, KEEL_BREAKER_HALF_OPEN, now, ch);
        break;
    case KEEL_BREAKER_HALF_OPEN:
        /* Trial calls that were never recorded must not wedge the breaker. */
        if (b->trials >= b->o.half_open_calls && now - b->half_since >= b->o.open_ms) {
            b->trials = 0;
            b->trial_ok = 0;
            b->half_since = now;
        }
        break;
    }
    if (b->trials >= b->o.half_open_calls)
        return false;
    b->trials++;
    return true;
}

bool keel_breaker_allow(struct keel_breaker *b)
{
    int st = atomic_load_explicit(&b->state, memory_order_acquire);
    struct change ch = {0};
    uint64_t now;
    bool ok;

    if (st == KEEL_BREAKER_CLOSED)
        return true;
    now = now_of(b);
    if (st == KEEL_BREAKER_OPEN && now < atomic_load_explicit(&b->open_until, memory_order_relaxed))
        return false;
    pthread_mutex_lock(&b->mu);
    ok = allow_locked(b, now, &ch);
    pthread_mutex_unlock(&b->mu);
    log_change(b, &ch);
    return ok;
}

/* Counts one call in the closed window and opens when the rule says so.
 * Caller holds b->mu. */
static void record_closed(struct keel_breaker *b, bool ok, uint64_t now, struct change *ch)
{
    uint64_t epoch = now / b->bucket_ms;
    struct bucket *k = &b->buckets[epoch % KEEL_BREAKER_BUCKETS];
    uint32_t calls, fails;

    if (k->epoch != epoch)
        *k = (struct bucket){.epoch = epoch};
    k->calls++;
    k->fails += !ok;
    window_sum(b, now, &calls, &fails);
    /* A small tolerance keeps ratios like 0.3 * 10 from rounding up. */
    if (calls >= b->o.min_calls && (double)fails >= b->o.failure_ratio * calls - 1e-9) {
        transition(b, KEEL_BREAKER_OPEN, now, ch);
        ch->calls = calls;
        ch->fails = fails;
    }
}

void keel_breaker_record(struct keel_breaker *b, bool ok)
{
    struct change ch = {0};
    uint64_t now = now_of(b);

    pthread_mutex_lock(&b->mu);
    switch (keel_breaker_state(b)) {
    case KEEL_BREAKER_CLOSED:
        record_closed(b, ok, now, &ch);
        break;
    case KEEL_BREAKER_HALF_OPEN:
        if (!ok) {
            uint32_t calls = b->trial_ok + 1;

            transition(b, KEEL_BREAKER_OPEN, now, &ch);
            ch.calls = calls;
            ch.fails = 1;
        } else if (++b->trial_ok >= b->o.half_open_calls) {
            transition(b, KEEL_BREAKER_CLOSED, now, &ch);
        }
        break;
    case KEEL_BREAKER_OPEN:
        break;
    }
    pthread_mutex_unlock(&b->mu);
    log_change(b, &ch);
}
