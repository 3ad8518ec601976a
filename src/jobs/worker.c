/*
 * worker.c - the job workers: a runtime service (keel/runtime.h) that
 * claims jobs, runs their attempts as tasks, writes their outcomes,
 * renews their leases, and on loop 0 runs the outbox relay, the periodic
 * schedules, the reaper of expired leases and the queue-depth gauges.
 *
 * DESIGN: each served queue has one fetcher, on loop (queue index mod
 * loops), which is the only thread that touches it. A fetcher claims as
 * many due jobs as it has free slots (the queue's concurrency; at most
 * JOBS_CLAIM_MAX, and no more than its rate allows) in one statement,
 * starts each as an attempt (a task: the handler may wait on storage, the
 * cache or the pool like a request), and collects the outcomes, which one
 * flush writes in one transaction while the next claim is already out. A
 * fetcher claims again at once when its claim was full or it was woken
 * meanwhile, else when woken (a commit, a NOTIFY), when a retry it
 * scheduled is due, or on the poll timer. Heartbeats renew the leases of
 * running attempts every third of the lease and learn of cancellations;
 * an attempt that lost its lease (the job was reaped and given to another
 * worker) is dropped unrecorded.
 *
 * Shutdown: draining stops the claims; running attempts finish and their
 * outcomes are written (each holds the loop). At the deadline the
 * attempts still running are released (available again, the attempt
 * given back) so another worker takes them at once, not after the lease.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "keel/arena.h"
#include "keel/db.h"
#include "keel/events.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/metrics.h"

#include "jobs_int.h"

#define ARENA_FREE     16
#define ATTEMPT_BUDGET (1u << 20)

struct jobs_attempt;

struct jobs_fetcher {
    struct jobs_queue *q;
    unsigned loop;
    uv_timer_t poll, beat, soon;
    bool claiming, again, flushing, beating, draining;
    unsigned running;
    struct jobs_attempt *attempts; /* running */
    struct jobs_result *results;   /* to flush */
    unsigned nresults, cap;
    double tokens; /* rate limit: jobs that may start now */
    uint64_t tokens_ms;
    struct keel_arena *free_arenas[ARENA_FREE];
    unsigned nfree;
};

struct jobs_attempt {
    struct keel_job job; /* job.task: the attempt's task */
    struct jobs_fetcher *f;
    const struct keel_job_kind *kind;
    struct jobs_attempt *prev, *next;
    uv_timer_t timer;
    uint64_t start_ns;
    char trace_id[33];
    bool finished; /* its outcome is decided */
    bool gone;     /* timed out, cancelled, lost or released: what it does is ignored */
    bool freeing;
};

static struct jobs_fetcher *fetchers; /* one per queue; only served ones are used */

/* Loop 0's background work. */
static struct {
    uv_timer_t relay, periodic, gauges, reap;
    bool relaying, periodic_busy, gauges_busy, reaping, draining, started;
    atomic_bool relay_pending;
    struct keel_post relay_post;
} bg;

static int64_t now_ms(void)
{
    return keel_wall_ms();
}

/* ============================================================ outcomes */

static void result_push(struct jobs_fetcher *f, const struct jobs_result *r)
{
    if (f->nresults == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->results = keel_xrealloc(f->results, f->cap * sizeof(*f->results));
    }
    f->results[f->nresults++] = *r;
}

static void flush(struct jobs_fetcher *f);
static void fetch(struct jobs_fetcher *f);

static const char *outcome_name(enum jobs_outcome o)
{
    static const char *const names[] = {"completed", "retry",     "dead",
                                        "snoozed",   "cancelled", "released"};

    return names[o];
}

static void attempt_log(const struct jobs_attempt *a, enum jobs_outcome o, const char *error)
{
    double ms = (double)(keel_now_ns() - a->start_ns) / 1e6;

    keel__jobs_count(a->f->q->name, outcome_name(o));
    keel_metric_observe(keel__jobs.m_duration, (const char *const[]){a->f->q->name}, ms / 1000);
    keel_log(o == JOBS_DEAD ? KEEL_LOG_WARN : KEEL_LOG_INFO, "job",
             KEEL_LF_STR("job_id", a->job.id), KEEL_LF_STR("queue", a->f->q->name),
             KEEL_LF_STR("kind", a->job.kind), KEEL_LF_INT("attempt", a->job.attempt),
             KEEL_LF_STR("outcome", outcome_name(o)), KEEL_LF_DBL("duration_ms", ms),
             a->trace_id[0] ? KEEL_LF_STR("trace_id", a->trace_id) : KEEL_LF_NULL("trace_id"),
             error ? KEEL_LF_STR("error", error) : KEEL_LF_NULL("error"));
}

/* Wakes the fetcher when a retry it scheduled is due. */
static void on_soon(uv_timer_t *t)
{
    fetch(t->data);
}

static void wake_at(struct jobs_fetcher *f, int64_t at_ms)
{
    uint64_t in = at_ms > now_ms() ? (uint64_t)(at_ms - now_ms()) : 0;

    if (in >= keel__jobs.poll_ms)
        return; /* the poll comes first */
    if (uv_is_active((uv_handle_t *)&f->soon) && uv_timer_get_due_in(&f->soon) <= in)
        return;
    uv_timer_start(&f->soon, on_soon, in, 0);
}

/* The outcome of an attempt that ended (not one that was dropped). */
static void decide(struct jobs_attempt *a, keel_status rc, struct jobs_result *r)
{
    const struct keel_job *job = &a->job;
    int64_t now = now_ms();

    memset(r, 0, sizeof(*r));
    memcpy(r->id, job->id, 37);
    r->attempt = job->attempt;
    if (keel__jobs_snoozed(job)) {
        r->outcome = JOBS_SNOOZED;
        r->run_at_ms = now + job->_snooze_ms;
        return;
    }
    if (rc >= 0) {
        r->outcome = JOBS_COMPLETED;
        return;
    }
    r->error = keel_xstrdup(job->_error ? job->_error : keel_strerror(rc));
    if (keel__jobs_discarded(job) || job->attempt >= job->max_attempts) {
        r->outcome = JOBS_DEAD;
        r->run_at_ms = now;
        return;
    }
    r->outcome = JOBS_RETRY;
    r->run_at_ms = now + (int64_t)keel__jobs_backoff_ms(job->attempt);
}

static void attempt_unlink(struct jobs_attempt *a)
{
    struct jobs_fetcher *f = a->f;

    if (a->prev)
        a->prev->next = a->next;
    else
        f->attempts = a->next;
    if (a->next)
        a->next->prev = a->prev;
    a->prev = a->next = NULL;
    f->running--;
}

static void on_attempt_closed(uv_handle_t *h)
{
    struct jobs_attempt *a = h->data;
    struct jobs_fetcher *f = a->f;
    unsigned loop = f->loop;

    if (f->nfree < ARENA_FREE) {
        keel_arena_reset(a->job.task.arena);
        keel_arena_set_budget(a->job.task.arena, ATTEMPT_BUDGET);
        f->free_arenas[f->nfree++] = a->job.task.arena;
    } else {
        keel_arena_destroy(a->job.task.arena);
    }
    free(a);
    keel_loop_release(loop);
}

/* Frees a finished attempt once nothing it started still waits. */
static void attempt_maybe_free(struct jobs_attempt *a)
{
    if (!a->finished || a->job.task.holds > 0 || a->freeing)
        return;
    a->freeing = true;
    if (a->job.args)
        json_object_put(a->job.args);
    a->job.args = NULL;
    uv_close((uv_handle_t *)&a->timer, on_attempt_closed);
}

/* Ends an attempt with its result (r NULL: dropped unrecorded). */
static void attempt_close(struct jobs_attempt *a, const struct jobs_result *r, const char *why)
{
    struct jobs_fetcher *f = a->f;

    a->finished = true;
    uv_timer_stop(&a->timer);
    attempt_unlink(a);
    if (r) {
        result_push(f, r);
        attempt_log(a, r->outcome, r->error);
        if (r->outcome == JOBS_RETRY || r->outcome == JOBS_SNOOZED)
            wake_at(f, r->run_at_ms);
    } else {
        keel__jobs_count(f->q->name, "lost");
        keel_log(KEEL_LOG_WARN, "job lease lost", KEEL_LF_STR("job_id", a->job.id),
                 KEEL_LF_STR("queue", f->q->name), KEEL_LF_STR("reason", why));
    }
    attempt_maybe_free(a);
    flush(f);
    fetch(f);
}

static void attempt_end(struct jobs_attempt *a, keel_status rc)
{
    struct jobs_result r;

    if (a->finished)
        return;
    decide(a, rc, &r);
    attempt_close(a, &r, NULL);
}

/* The attempt is over without its handler (timeout, cancel, release):
 * the handler's pending waits are skipped (gone) when they complete. */
static void attempt_abort(struct jobs_attempt *a, enum jobs_outcome o, const char *error)
{
    struct jobs_result r = {.outcome = o, .attempt = a->job.attempt, .run_at_ms = now_ms()};

    if (a->finished)
        return;
    a->gone = true;
    memcpy(r.id, a->job.id, 37);
    if (o == JOBS_RETRY && a->job.attempt >= a->job.max_attempts)
        r.outcome = JOBS_DEAD;
    if (o == JOBS_RETRY)
        r.run_at_ms += (int64_t)keel__jobs_backoff_ms(a->job.attempt);
    if (error)
        r.error = keel_xstrdup(error);
    attempt_close(a, &r, NULL);
}

/* ============================================================ attempts */

static void attempt_resume(struct keel_task *t, keel_status rc)
{
    struct jobs_attempt *a = KEEL_CONTAINER_OF(t, struct jobs_attempt, job.task);

    if (rc != KEEL_AGAIN && !a->finished)
        attempt_end(a, rc);
    attempt_maybe_free(a);
}

static bool attempt_gone(const struct keel_task *t)
{
    const struct jobs_attempt *a = (const struct jobs_attempt *)(const void *)t; /* first member */

    return a->gone;
}

static const struct keel_task_ops attempt_ops = {.resume = attempt_resume, .gone = attempt_gone};

static void on_timeout(uv_timer_t *t)
{
    struct jobs_attempt *a = t->data;
    char why[64];

    snprintf(why, sizeof(why), "timeout after %u ms",
             a->kind->timeout_ms ? a->kind->timeout_ms : JOBS_TIMEOUT_MS);
    attempt_abort(a, JOBS_RETRY, why);
}

static struct keel_arena *arena_get(struct jobs_fetcher *f)
{
    if (f->nfree > 0)
        return f->free_arenas[--f->nfree];
    return keel_arena_new(ATTEMPT_BUDGET);
}

static void attempt_fill(struct jobs_attempt *a, struct jobs_claimed *c)
{
    struct keel_job *job = &a->job;
    struct keel_trace_context tc;
    const char *why;

    memcpy(job->id, c->id, 37);
    job->queue = a->f->q->name;
    job->kind = a->kind->name;
    job->payload = keel_arena_strdup(job->task.arena, c->payload ? c->payload : "{}");
    job->payload_len = job->payload ? strlen(job->payload) : 0;
    if (job->payload &&
        keel_json_parse(job->payload, job->payload_len, KEEL_JSON_MAX_DEPTH, &job->args, &why) < 0)
        job->args = NULL;
    job->attempt = c->attempt;
    job->max_attempts = c->max_attempts;
    job->created_ms = c->created_ms;
    if (c->traceparent) {
        job->traceparent = keel_arena_strdup(job->task.arena, c->traceparent);
        if (keel_trace_parse(c->traceparent, strlen(c->traceparent), &tc))
            memcpy(a->trace_id, tc.trace_id, 33);
    }
    job->task.log.trace_id = a->trace_id;
}

static void attempt_start(struct jobs_fetcher *f, struct jobs_claimed *c)
{
    struct jobs_attempt *a = keel_xcalloc(1, sizeof(*a));
    const struct keel_log_ctx *prev;
    keel_status rc;

    a->f = f;
    a->kind = keel__jobs_kind(c->kind);
    keel_task_init(&a->job.task, &attempt_ops, f->loop, arena_get(f));
    uv_timer_init(keel_loop_uv(f->loop), &a->timer);
    a->timer.data = a;
    a->start_ns = keel_now_ns();
    keel_loop_hold(f->loop);
    a->next = f->attempts;
    if (f->attempts)
        f->attempts->prev = a;
    f->attempts = a;
    f->running++;
    keel_metric_observe(keel__jobs.m_wait, (const char *const[]){f->q->name},
                        (double)(now_ms() - c->run_at_ms) / 1000.0);
    if (!a->kind) { /* a kind this binary does not know: nothing can run it */
        static const struct keel_job_kind unknown = {.name = "unknown"};

        memcpy(a->job.id, c->id, 37);
        a->kind = &unknown;
        a->job.kind = unknown.name;
        a->job.max_attempts = c->max_attempts;
        a->job.attempt = c->max_attempts;
        attempt_abort(a, JOBS_DEAD, "unknown job kind");
        return;
    }
    attempt_fill(a, c);
    uv_timer_start(&a->timer, on_timeout,
                   a->kind->timeout_ms ? a->kind->timeout_ms : JOBS_TIMEOUT_MS, 0);
    prev = keel_log_ctx_set(&a->job.task.log);
    rc = a->kind->handler(&a->job);
    keel_log_ctx_set(prev);
    if (rc != KEEL_AGAIN)
        attempt_end(a, rc);
}

/* ============================================================== claims */

struct claim_op {
    struct jobs_fetcher *f;
    unsigned n;
    struct jobs_claimed *rows;
    unsigned nrows;
    keel_status rc;
};

static keel_status claim_tx(struct keel_db_conn *c, void *arg)
{
    struct claim_op *op = arg;

    keel__jobs_claimed_free(op->rows, op->nrows); /* a retried transaction starts over */
    op->rows = NULL;
    op->nrows = 0;
    return keel__jobs_claim(c, op->f->q, op->n, &op->rows, &op->nrows);
}

static void claim_run(void *arg)
{
    struct claim_op *op = arg;

    op->rc = keel_db_with(keel__jobs.db, KEEL_DB_WRITE, NULL, claim_tx, op);
}

static void claim_done(void *arg)
{
    struct claim_op *op = arg;
    struct jobs_fetcher *f = op->f;
    unsigned i;

    f->claiming = false;
    if (op->rc < 0) {
        keel_log(KEEL_LOG_WARN, "job claim failed", KEEL_LF_STR("queue", f->q->name),
                 KEEL_LF_STR("error", keel_strerror(op->rc)));
        f->again = false; /* the poll tries again */
    } else {
        f->tokens -= op->nrows;
        for (i = 0; i < op->nrows; i++)
            attempt_start(f, &op->rows[i]);
        if (op->nrows == op->n)
            f->again = true; /* a full claim: more may be due */
    }
    keel__jobs_claimed_free(op->rows, op->nrows);
    free(op);
    if (f->again)
        fetch(f);
}

/* Refills the rate-limit bucket; returns how many jobs may start now. */
static unsigned rate_allows(struct jobs_fetcher *f)
{
    uint64_t now = (uint64_t)now_ms();
    double rate = f->q->rate;

    if (rate <= 0)
        return JOBS_CLAIM_MAX;
    f->tokens += (double)(now - f->tokens_ms) * rate / 1000.0;
    f->tokens_ms = now;
    if (f->tokens > (rate < 1 ? 1 : rate))
        f->tokens = rate < 1 ? 1 : rate;
    if (f->tokens < 1) {
        uv_timer_start(&f->soon, on_soon, (uint64_t)((1 - f->tokens) * 1000.0 / rate) + 1, 0);
        return 0;
    }
    return (unsigned)f->tokens;
}

static void fetch(struct jobs_fetcher *f)
{
    unsigned n, allowed;
    struct claim_op *op;

    if (f->draining)
        return;
    if (f->claiming) {
        f->again = true;
        return;
    }
    f->again = false;
    if (f->running >= f->q->concurrency)
        return; /* an ending attempt fetches again */
    n = f->q->concurrency - f->running;
    allowed = rate_allows(f);
    if (n > allowed)
        n = allowed;
    if (n > JOBS_CLAIM_MAX)
        n = JOBS_CLAIM_MAX;
    if (n == 0)
        return;
    op = keel_xcalloc(1, sizeof(*op));
    op->f = f;
    op->n = n;
    op->rc = KEEL_E_UNAVAILABLE;
    f->claiming = true;
    keel__jobs_op(f->loop, claim_run, claim_done, op);
}

void keel__jobs_fetch(struct jobs_queue *q)
{
    if (q->fetcher)
        fetch(q->fetcher);
}

static void on_poll(uv_timer_t *t)
{
    fetch(t->data);
}

/* ============================================================= flushes */

struct flush_op {
    struct jobs_fetcher *f;
    struct jobs_result *r;
    unsigned n;
    keel_status rc;
};

static keel_status flush_tx(struct keel_db_conn *c, void *arg)
{
    struct flush_op *op = arg;

    return keel__jobs_record(c, op->r, op->n, now_ms());
}

static void flush_run(void *arg)
{
    struct flush_op *op = arg;

    op->rc = keel_db_with(keel__jobs.db, KEEL_DB_WRITE, NULL, flush_tx, op);
}

static void results_free(struct jobs_result *r, unsigned n)
{
    unsigned i;

    for (i = 0; i < n; i++)
        free(r[i].error);
    free(r);
}

static void flush_done(void *arg)
{
    struct flush_op *op = arg;
    struct jobs_fetcher *f = op->f;
    unsigned i;

    f->flushing = false;
    if (op->rc < 0) {
        /* Kept for the next flush: until then the leases run out, and a
         * lease that does hands the job to another run (at least once). */
        keel_log(KEEL_LOG_WARN, "job results not written yet", KEEL_LF_STR("queue", f->q->name),
                 KEEL_LF_INT("results", op->n), KEEL_LF_STR("error", keel_strerror(op->rc)));
        for (i = 0; i < op->n; i++)
            result_push(f, &op->r[i]);
        free(op->r);
        free(op);
        uv_timer_start(&f->soon, on_soon, keel__jobs.poll_ms, 0);
        return;
    }
    results_free(op->r, op->n);
    free(op);
    flush(f);
    fetch(f); /* ordered successors of what just completed are claimable now */
}

static void flush(struct jobs_fetcher *f)
{
    struct flush_op *op;

    if (f->flushing || f->nresults == 0)
        return;
    op = keel_xcalloc(1, sizeof(*op));
    op->f = f;
    op->r = f->results;
    op->n = f->nresults;
    op->rc = KEEL_E_UNAVAILABLE;
    f->results = NULL;
    f->nresults = f->cap = 0;
    f->flushing = true;
    keel__jobs_op(f->loop, flush_run, flush_done, op);
}

/* ========================================================== heartbeats */

struct beat_op {
    struct jobs_fetcher *f;
    char (*ids)[37];
    unsigned char *state;
    unsigned n;
    keel_status rc;
};

static keel_status beat_tx(struct keel_db_conn *c, void *arg)
{
    struct beat_op *op = arg;

    return keel__jobs_heartbeat(c, (const char(*)[37])op->ids, op->n, now_ms(), op->state);
}

static void beat_run(void *arg)
{
    struct beat_op *op = arg;

    op->rc = keel_db_with(keel__jobs.db, KEEL_DB_WRITE, NULL, beat_tx, op);
}

static struct jobs_attempt *attempt_by_id(struct jobs_fetcher *f, const char *id)
{
    struct jobs_attempt *a;

    for (a = f->attempts; a; a = a->next)
        if (memcmp(a->job.id, id, 36) == 0)
            return a;
    return NULL;
}

static void beat_done(void *arg)
{
    struct beat_op *op = arg;
    struct jobs_attempt *a;
    unsigned i;

    op->f->beating = false;
    for (i = 0; op->rc == KEEL_OK && i < op->n; i++) {
        a = attempt_by_id(op->f, op->ids[i]);
        if (!a || a->finished || op->state[i] == 0)
            continue;
        if (op->state[i] == 1) {
            attempt_abort(a, JOBS_CANCELLED, NULL);
        } else {
            a->gone = true;
            attempt_close(a, NULL, "the lease was taken over");
        }
    }
    free(op->ids);
    free(op->state);
    free(op);
}

static void on_beat(uv_timer_t *t)
{
    struct jobs_fetcher *f = t->data;
    struct jobs_attempt *a;
    struct beat_op *op;
    unsigned n = 0;

    if (f->beating || f->running == 0)
        return;
    op = keel_xcalloc(1, sizeof(*op));
    op->ids = keel_xcalloc(f->running, sizeof(*op->ids));
    op->state = keel_xcalloc(f->running, 1);
    for (a = f->attempts; a && n < f->running; a = a->next)
        memcpy(op->ids[n++], a->job.id, 37);
    op->f = f;
    op->n = n;
    op->rc = KEEL_E_UNAVAILABLE;
    f->beating = true;
    keel__jobs_op(f->loop, beat_run, beat_done, op);
}

/* ======================================================== loop 0's work */

struct bg_op {
    int what;
    int64_t n;
    keel_status rc;
};

enum { BG_RELAY, BG_PERIODIC, BG_GAUGES, BG_REAP };

static keel_status bg_tx(struct keel_db_conn *c, void *arg)
{
    struct bg_op *op = arg;

    switch (op->what) {
    case BG_RELAY:
        return keel__jobs_relay(c, &op->n);
    case BG_PERIODIC:
        return keel__jobs_periodic(c, now_ms());
    case BG_GAUGES:
        return keel__jobs_gauges(c, now_ms());
    default:
        return keel__jobs_reap(c, now_ms(), &op->n);
    }
}

static void bg_run(void *arg)
{
    struct bg_op *op = arg;

    op->rc =
        keel_db_with(keel__jobs.db, op->what == BG_GAUGES ? KEEL_DB_READ_PRIMARY : KEEL_DB_WRITE,
                     NULL, bg_tx, op);
}

static bool *bg_busy(int what)
{
    switch (what) {
    case BG_RELAY:
        return &bg.relaying;
    case BG_PERIODIC:
        return &bg.periodic_busy;
    case BG_GAUGES:
        return &bg.gauges_busy;
    default:
        return &bg.reaping;
    }
}

static void relay(void);

static void bg_done(void *arg)
{
    struct bg_op *op = arg;
    int what = op->what;
    bool more = what == BG_RELAY && op->rc >= 0 && op->n >= JOBS_RELAY_BATCH;

    *bg_busy(what) = false;
    if (op->rc < 0)
        keel_log(KEEL_LOG_WARN, "job engine: background work failed",
                 KEEL_LF_STR("work", op->what == BG_RELAY      ? "relay"
                                     : op->what == BG_PERIODIC ? "periodic"
                                     : op->what == BG_GAUGES   ? "gauges"
                                                               : "reap"),
                 KEEL_LF_STR("error", keel_strerror(op->rc)));
    if (what == BG_REAP && op->n > 0)
        for (unsigned i = 0; i < keel__jobs.nqueues; i++)
            keel__jobs_wake(&keel__jobs.queues[i]); /* reaped jobs are due now */
    free(op);
    if (what == BG_RELAY && (more || atomic_exchange(&keel__jobs.relay_wake, false)))
        relay();
}

static void bg_start(int what)
{
    struct bg_op *op;

    if (bg.draining || *bg_busy(what))
        return;
    op = keel_xcalloc(1, sizeof(*op));
    op->what = what;
    op->rc = KEEL_E_UNAVAILABLE;
    *bg_busy(what) = true;
    keel__jobs_op(0, bg_run, bg_done, op);
}

static void relay(void)
{
    if (bg.relaying) {
        atomic_store(&keel__jobs.relay_wake, true); /* go again when this one ends */
        return;
    }
    atomic_store(&keel__jobs.relay_wake, false);
    if (keel__jobs.nsubs > 0)
        bg_start(BG_RELAY);
}

static void on_relay_post(struct keel_post *p)
{
    (void)p;
    atomic_store(&bg.relay_pending, false);
    relay();
}

void keel__jobs_wake_relay(void)
{
    if (!bg.started || atomic_exchange(&bg.relay_pending, true))
        return;
    bg.relay_post.fn = on_relay_post;
    keel_loop_post(0, &bg.relay_post);
}

static void on_bg_timer(uv_timer_t *t)
{
    if (t == &bg.relay)
        relay();
    else if (t == &bg.periodic)
        bg_start(BG_PERIODIC);
    else if (t == &bg.gauges)
        bg_start(BG_GAUGES);
    else
        bg_start(BG_REAP);
}

static void bg_timers_start(uv_loop_t *uv)
{
    uint64_t reap = keel__jobs.lease_ms / 2 < 1000 ? 1000 : keel__jobs.lease_ms / 2;

    uv_timer_init(uv, &bg.relay);
    uv_timer_init(uv, &bg.periodic);
    uv_timer_init(uv, &bg.gauges);
    uv_timer_init(uv, &bg.reap);
    uv_timer_start(&bg.relay, on_bg_timer, 0, keel__jobs.poll_ms);
    uv_timer_start(&bg.periodic, on_bg_timer, 0, JOBS_PERIODIC_MS);
    uv_timer_start(&bg.gauges, on_bg_timer, 0, JOBS_GAUGE_MS);
    uv_timer_start(&bg.reap, on_bg_timer, 0, reap);
    bg.started = true;
}

/* ============================================================ service */

static keel_status svc_prepare(void *arg, unsigned nloops)
{
    unsigned i;

    (void)arg;
    keel__jobs.nloops = nloops;
    fetchers = keel_xcalloc(keel__jobs.nqueues ? keel__jobs.nqueues : 1, sizeof(*fetchers));
    for (i = 0; i < keel__jobs.nqueues; i++) {
        struct jobs_queue *q = &keel__jobs.queues[i];

        q->loop = i % nloops;
        if (!q->served)
            continue;
        fetchers[i].q = q;
        fetchers[i].loop = q->loop;
        fetchers[i].tokens = q->rate > 0 ? (q->rate < 1 ? 1 : q->rate) : 0;
        fetchers[i].tokens_ms = (uint64_t)now_ms();
        q->fetcher = &fetchers[i];
    }
    memset(&bg, 0, sizeof(bg));
    return KEEL_OK;
}

static keel_status svc_start(void *arg, unsigned loop, uv_loop_t *uv)
{
    uint64_t beat = keel__jobs.lease_ms / 3;
    unsigned i;

    (void)arg;
    for (i = 0; i < keel__jobs.nqueues; i++) {
        struct jobs_fetcher *f = &fetchers[i];

        if (!f->q || f->loop != loop)
            continue;
        uv_timer_init(uv, &f->poll);
        uv_timer_init(uv, &f->beat);
        uv_timer_init(uv, &f->soon);
        f->poll.data = f->beat.data = f->soon.data = f;
        uv_timer_start(&f->poll, on_poll, 0, keel__jobs.poll_ms);
        uv_timer_start(&f->beat, on_beat, beat, beat);
        atomic_store(&f->q->open, true);
    }
    if (loop == 0)
        bg_timers_start(uv);
    return KEEL_OK;
}

/* At the deadline: what still runs goes back to the queue now. */
static void release_running(struct jobs_fetcher *f)
{
    while (f->attempts)
        attempt_abort(f->attempts, JOBS_RELEASED, NULL);
}

static void svc_drain(void *arg, unsigned loop, bool force)
{
    unsigned i;

    (void)arg;
    for (i = 0; i < keel__jobs.nqueues; i++) {
        struct jobs_fetcher *f = &fetchers[i];

        if (!f->q || f->loop != loop)
            continue;
        f->draining = true;
        uv_timer_stop(&f->poll);
        uv_timer_stop(&f->soon);
        if (force)
            release_running(f);
    }
    if (loop == 0) {
        bg.draining = true;
        uv_timer_stop(&bg.relay);
        uv_timer_stop(&bg.periodic);
        uv_timer_stop(&bg.gauges);
        uv_timer_stop(&bg.reap);
    }
}

static void svc_close(void *arg, unsigned loop, uv_loop_t *uv)
{
    unsigned i;

    (void)arg;
    (void)uv;
    for (i = 0; i < keel__jobs.nqueues; i++) {
        struct jobs_fetcher *f = &fetchers[i];

        if (!f->q || f->loop != loop)
            continue;
        atomic_store(&f->q->open, false);
        uv_close((uv_handle_t *)&f->poll, NULL);
        uv_close((uv_handle_t *)&f->beat, NULL);
        uv_close((uv_handle_t *)&f->soon, NULL);
    }
    if (loop == 0 && bg.started) {
        bg.started = false;
        uv_close((uv_handle_t *)&bg.relay, NULL);
        uv_close((uv_handle_t *)&bg.periodic, NULL);
        uv_close((uv_handle_t *)&bg.gauges, NULL);
        uv_close((uv_handle_t *)&bg.reap, NULL);
    }
}

static void svc_stop(void *arg)
{
    unsigned i, j;

    (void)arg;
    for (i = 0; fetchers && i < keel__jobs.nqueues; i++) {
        for (j = 0; j < fetchers[i].nfree; j++)
            keel_arena_destroy(fetchers[i].free_arenas[j]);
        results_free(fetchers[i].results, fetchers[i].nresults);
        keel__jobs.queues[i].fetcher = NULL;
    }
    free(fetchers);
    fetchers = NULL;
}

const struct keel_runtime_service keel__jobs_service = {
    .name = "jobs",
    .prepare = svc_prepare,
    .start = svc_start,
    .drain = svc_drain,
    .close = svc_close,
    .stop = svc_stop,
};

keel_status keel_jobs_add_service(const char *queues)
{
    const char *p = queues, *comma;
    char name[32];
    size_t len;
    unsigned i;
    struct jobs_queue *q;

    for (i = 0; i < keel__jobs.nqueues; i++)
        keel__jobs.queues[i].served = queues == NULL;
    while (p && *p) {
        comma = strchr(p, ',');
        len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof(name))
            return KEEL_E_INVALID;
        memcpy(name, p, len);
        name[len] = '\0';
        q = keel__jobs_queue(name);
        if (!q)
            return KEEL_E_INVALID;
        q->served = true;
        p = comma ? comma + 1 : NULL;
    }
    keel__jobs.serving = true;
    if (keel__jobs_listen() < 0)
        return KEEL_E_INTERNAL;
    return keel_runtime_add(&keel__jobs_service);
}
