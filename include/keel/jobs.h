/*
 * jobs.h - background jobs (issue 11; SPEC section 4; docs/internals/jobs.md):
 * a durable queue in the database, workers on the loop runtime, retries
 * with exponential backoff and full jitter, a dead-letter queue, ordered
 * and unique jobs, periodic jobs, and the outbox relay.
 *
 * Jobs are rows of the `jobs` table, so a job commits or rolls back with
 * the transaction that enqueues it: keel_jobs_enqueue takes a connection
 * inside the caller's transaction. Workers claim jobs with a lease
 * (PostgreSQL: FOR UPDATE SKIP LOCKED in batches; SQLite: UPDATE ...
 * RETURNING under its one writer), woken at commit (LISTEN/NOTIFY across
 * processes, a direct wake in-process) with a poll as the fallback, and
 * heartbeat the lease while a job runs; a job whose lease expired (its
 * worker crashed or froze) is taken again by any worker. Delivery is at
 * least once: handlers are idempotent, helped by the job's id and attempt.
 *
 * A handler runs as a task (keel/task.h) on a loop: it may wait on
 * storage, the cache, Redis or the thread pool like a request does, and
 * ends with its outcome: success, a failure (retried after a backoff while
 * attempts remain, then dead), a discard (dead at once), or a snooze (run
 * again later without using an attempt).
 *
 * Threading: keel_jobs_enqueue runs on a storage-lane thread inside a
 * transaction. The engine's life (keel_jobs_init, _add_service, _shutdown)
 * is the main thread's. Handlers run on their loop; the keel_job_* calls
 * are theirs.
 */
#ifndef KEEL_JOBS_H
#define KEEL_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/core.h"
#include "keel/task.h"

struct json_object;
struct keel_config;
struct keel_db;
struct keel_db_conn;
struct keel_job;

/* ------------------------------------------------------------- handlers */

/* A job kind's handler. It returns KEEL_OK (success), KEEL_AGAIN (it
 * waits: the job's task is resumed later, and the value it resumes with is
 * the outcome), or an error (a failure, described by keel_job_fail). Use
 * keel_job_discard and keel_job_snooze for the other outcomes. */
typedef keel_status (*keel_job_fn)(struct keel_job *job);

/* A kind of job a module handles (keel/module.h `.jobs`). */
struct keel_job_kind {
    const char *name;  /* "orders.confirmation"; unique in the process */
    const char *queue; /* the queue its jobs go to by default */
    keel_job_fn handler;
    unsigned timeout_ms; /* an attempt running longer fails ("timeout"); 0: 60 s */
    /* > 0: a periodic job, enqueued once per period across every process
     * (the first run one period after the first start), payload "{}". */
    unsigned period_ms;
};

/* An outbox topic a module's job kind subscribes to (keel/module.h
 * `.subscriptions`): every outbox message of the topic becomes one job of
 * the kind, whose payload is the message's payload, in order per message
 * key. */
struct keel_subscription {
    const char *topic; /* "orders" */
    const char *kind;  /* the job kind that handles it */
};

/* What a handler sees. The strings live as long as the job (its arena,
 * task.arena). */
struct keel_job {
    struct keel_task task; /* the attempt: its loop, arena, log context (trace id) */
    char id[37];
    const char *queue;
    const char *kind;
    const char *payload; /* JSON text, NUL-terminated */
    size_t payload_len;
    struct json_object *args; /* payload parsed (NULL when it is not JSON) */
    int attempt;              /* 1 for the first run */
    int max_attempts;
    const char *traceparent; /* of the request that caused it, or NULL */
    int64_t created_ms;

    /* Set by keel_job_fail / _discard / _snooze; the engine's. */
    const char *_error;
    int _outcome;
    unsigned _snooze_ms;
};

/* Describes a failure (formatted into the job's arena, kept in the job's
 * error history) and returns KEEL_E_INTERNAL for the handler to return.
 * The job is retried after its backoff while attempts remain. */
keel_status keel_job_fail(struct keel_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A permanent failure: the job goes to the dead-letter queue at once. */
keel_status keel_job_discard(struct keel_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Not now (a circuit breaker is open): the job runs again after `ms`
 * without using an attempt. Returns KEEL_OK for the handler to return. */
keel_status keel_job_snooze(struct keel_job *job, unsigned ms);
/* True when the job was cancelled or its attempt timed out while it
 * waited: whatever it does next is not recorded. */
bool keel_job_cancelled(const struct keel_job *job);

/* -------------------------------------------------------------- enqueue */

struct keel_job_opts {
    int64_t run_at_ms;       /* 0: now; later: a scheduled job */
    int priority;            /* lower runs first; default 0 */
    int max_attempts;        /* 0: the queue's */
    const char *unique_key;  /* a second enqueue while one is pending returns the first */
    const char *order_key;   /* jobs with the same key run one at a time, in enqueue order */
    const char *traceparent; /* W3C traceparent of the cause; NULL: none */
};

/* Enqueues a job of `kind` on `queue` (NULL: the kind's own) with payload
 * `payload` (JSON text, NUL-terminated; NULL: "{}") inside the caller's
 * transaction on c; opts may be NULL. id_out (may be NULL) receives the
 * job's id; with a unique_key already pending, the pending job's id and
 * *dup_out (may be NULL) true. The workers of the queue are woken when the
 * transaction commits. Returns KEEL_OK, KEEL_E_INVALID (unknown queue or
 * kind, not in a transaction, payload not JSON), or a storage error. */
keel_status keel_jobs_enqueue(struct keel_db_conn *c,
                              const char *queue,
                              const char *kind,
                              const char *payload,
                              const struct keel_job_opts *opts,
                              char id_out[37],
                              bool *dup_out);

/* ------------------------------------------------------------------ life */

/* Sets the engine up for cfg (queues from SPEC section 4 and KEEL_JOB_QUEUES,
 * backoff, lease, poll) on db, with the process's job kinds and outbox
 * subscriptions (the modules', collected by the caller; borrowed for the
 * engine's life). Registers the metrics and the readiness check "jobs",
 * and on PostgreSQL starts the LISTEN thread. Main thread, after
 * keel_db_open; once. */
keel_status keel_jobs_init(const struct keel_config *cfg,
                           struct keel_db *db,
                           const struct keel_job_kind *const *kinds,
                           unsigned nkinds,
                           const struct keel_subscription *const *subs,
                           unsigned nsubs);

/* Adds the workers to the runtime for its next run: every queue when
 * `queues` is NULL, else those named in it (comma-separated). They also
 * run the outbox relay and the periodic jobs. Returns KEEL_E_INVALID for
 * an unknown queue name. */
keel_status keel_jobs_add_service(const char *queues);

/* Stops the LISTEN thread and frees the engine. After the runtime ended. */
void keel_jobs_shutdown(void);

#endif
