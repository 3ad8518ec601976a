/*
 * jobs_int.h - what the files of the job engine share
 * (docs/internals/jobs.md): jobs.c (configuration, kinds, enqueue,
 * outcomes, life), store.c (the SQL, on storage-lane threads), worker.c
 * (the runtime service: fetchers, attempts, flushes, heartbeats, drain),
 * relay.c (outbox -> jobs), periodic.c (periodic jobs, purges, gauges),
 * lane.c (the engine's own storage-lane operations).
 */
#ifndef KEEL_JOBS_INT_H
#define KEEL_JOBS_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/jobs.h"
#include "keel/lane.h"
#include "keel/runtime.h"

struct keel_db;
struct keel_db_conn;
struct keel_metric;
struct jobs_fetcher;

#define JOBS_CLAIM_MAX     100   /* jobs one claim may take */
#define JOBS_TIMEOUT_MS    60000 /* an attempt's default timeout */
#define JOBS_ERROR_MAX     1000  /* bytes of an error kept in the history */
#define JOBS_WORKER_ID_MAX 96
#define JOBS_GAUGE_MS      5000 /* queue-depth gauges refresh */
#define JOBS_PERIODIC_MS   1000 /* periodic schedules are checked this often */
#define JOBS_RELAY_BATCH   500  /* outbox rows one relay transaction takes */

/* A queue of SPEC section 4 or KEEL_JOB_QUEUES. */
struct jobs_queue {
    char name[32];
    unsigned idx;
    unsigned concurrency; /* attempts at once in this process */
    int max_attempts;
    double rate; /* jobs per second this process starts; 0: no limit */
    bool served; /* this process runs its workers */
    unsigned loop;
    struct jobs_fetcher *fetcher; /* its loop's state, when served */
    /* Wake-ups from any thread: one post pending at most, and none once
     * its loop closed. */
    atomic_bool open;
    atomic_bool wake_pending;
    struct keel_post wake_post;
};

/* The outcome of an attempt, as the flush writes it. */
enum jobs_outcome {
    JOBS_COMPLETED,
    JOBS_RETRY,     /* failed; attempts remain: retryable at run_at_ms */
    JOBS_DEAD,      /* failed for the last time, or discarded */
    JOBS_SNOOZED,   /* available again at run_at_ms, the attempt given back */
    JOBS_CANCELLED, /* cancelled from the admin API while running */
    JOBS_RELEASED,  /* given back unfinished (shutdown): available now */
};

struct jobs_result {
    char id[37];
    enum jobs_outcome outcome;
    int attempt;
    int64_t run_at_ms;
    char *error; /* heap; RETRY and DEAD */
};

/* The engine: set by keel_jobs_init, read-only once the loops run (but for
 * the atomics and the per-queue loop state). */
struct jobs_engine {
    struct keel_db *db;
    bool pg;
    char worker[JOBS_WORKER_ID_MAX];
    struct jobs_queue *queues;
    unsigned nqueues;
    const struct keel_job_kind *const *kinds;
    unsigned nkinds;
    const struct keel_subscription *const *subs;
    unsigned nsubs;
    uint64_t backoff_base_ms, backoff_max_ms;
    uint64_t lease_ms;
    uint32_t poll_ms;
    uint64_t retention_ms;
    const char *url; /* the configuration's KEEL_DATABASE_URL, for LISTEN */
    struct keel_db_listener *listener, *outbox_listener;
    bool serving;    /* keel_jobs_add_service was called */
    unsigned nloops; /* of the runtime run */
    _Atomic bool relay_wake;
    struct keel_metric *m_total, *m_duration, *m_wait, *m_depth, *m_oldest;
};

extern struct jobs_engine keel__jobs;

/* ------------------------------------------------------------ jobs.c */

struct jobs_queue *keel__jobs_queue(const char *name);
const struct keel_job_kind *keel__jobs_kind(const char *name);
/* Starts the LISTEN threads (PostgreSQL; once). Main thread. */
keel_status keel__jobs_listen(void);
/* Wakes the workers of queue q (any thread). */
void keel__jobs_wake(struct jobs_queue *q);
/* Wakes the outbox relay (any thread; worker.c). */
void keel__jobs_wake_relay(void);
/* Claims for q now if it has free slots (q's loop; worker.c). */
void keel__jobs_fetch(struct jobs_queue *q);
/* What a handler asked for with keel_job_discard / keel_job_snooze. */
bool keel__jobs_discarded(const struct keel_job *job);
bool keel__jobs_snoozed(const struct keel_job *job);
/* The retry delay after failed attempt `attempt` (1-based): uniform in
 * [0, min(max, base * 2^(attempt-1))] (full jitter). */
uint64_t keel__jobs_backoff_ms(int attempt);
/* keel_jobs_total{queue,outcome} += 1, and the attempt's log line. */
void keel__jobs_count(const char *queue, const char *outcome);

/* ----------------------------------------------------------- store.c
 * Storage-lane threads; c is a connection of the primary. */

/* A claimed job, as the claim returns it (strings on the heap). */
struct jobs_claimed {
    char id[37];
    char *kind, *payload, *traceparent;
    int attempt, max_attempts;
    int64_t created_ms, run_at_ms;
};

/* Leases up to n due jobs of queue q to this worker. *out (heap array,
 * free with keel__jobs_claimed_free) and *nout receive them. */
keel_status keel__jobs_claim(struct keel_db_conn *c,
                             const struct jobs_queue *q,
                             unsigned n,
                             struct jobs_claimed **out,
                             unsigned *nout);
void keel__jobs_claimed_free(struct jobs_claimed *v, unsigned n);
/* Writes the results (one transaction, the caller's). */
keel_status
keel__jobs_record(struct keel_db_conn *c, const struct jobs_result *r, unsigned n, int64_t now);
/* Renews the leases of ids (this worker's, running); *cancel receives,
 * per id, whether it was cancelled (1), lost its lease (2) or is fine (0). */
keel_status keel__jobs_heartbeat(struct keel_db_conn *c,
                                 const char (*ids)[37],
                                 unsigned n,
                                 int64_t now,
                                 unsigned char *state_out);
/* Gives the jobs whose leases expired to the other workers (retryable, or
 * dead after their last attempt). *n_out: how many. */
keel_status keel__jobs_reap(struct keel_db_conn *c, int64_t now, int64_t *n_out);
/* Relays up to JOBS_RELAY_BATCH outbox rows; *n_out: rows taken (0 when
 * another process relays now). */
keel_status keel__jobs_relay(struct keel_db_conn *c, int64_t *n_out);
/* Enqueues the periodic kinds whose period is due (once across
 * processes). */
keel_status keel__jobs_periodic(struct keel_db_conn *c, int64_t now);
/* Counts per queue and state into the gauges. */
keel_status keel__jobs_gauges(struct keel_db_conn *c, int64_t now);

/* ------------------------------------------------------------ lane.c */

/* An engine operation: run(arg) on a storage-lane thread, then done(arg)
 * on loop `loop`, which is held meanwhile. The op is freed by lane.c
 * after done. An op that expired unrun (a hung database) still gets its
 * done, without run: arg must say "nothing happened" (rc
 * KEEL_E_UNAVAILABLE) before the submit. */
typedef void (*jobs_op_fn)(void *arg);
void keel__jobs_op(unsigned loop, jobs_op_fn run, jobs_op_fn done, void *arg);

/* ----------------------------------------------------------- purge.c */

/* "jobs.purge": completed and cancelled jobs past retention. */
extern const struct keel_job_kind keel__jobs_purge;

/* ---------------------------------------------------------- worker.c */

/* The runtime service (keel_jobs_add_service). */
extern const struct keel_runtime_service keel__jobs_service;

#endif
