/*
 * jobs.c - the job engine's configuration and life (include/keel/jobs.h):
 * queues (SPEC section 4, overridden by KEEL_JOB_QUEUES), the kinds and
 * subscriptions of the modules, wake-ups, the backoff curve, the outcome
 * calls of handlers, metrics and the readiness check.
 *
 * DESIGN: everything here is set on the main thread before the loops run
 * and read-only afterwards, but for the wake flags (atomics). Wake-ups
 * come from three places and all end in keel__jobs_wake: a commit in this
 * process (keel_db_after_commit, registered by the enqueue), a NOTIFY from
 * another process (the LISTEN thread), and the LISTEN connection coming
 * back (notifications may have been missed: every queue is woken).
 */
#include <json-c/json.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/arena.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/events.h"
#include "keel/health.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/metrics.h"

#include "jobs_int.h"

struct jobs_engine keel__jobs;

#define UNLIMITED_ATTEMPTS 1000000000

/* SPEC section 4. */
static const struct {
    const char *name;
    unsigned concurrency;
    int attempts;
} default_queues[] = {
    {"emails", 10, 4}, {"payments", 5, 6}, {"uploads", 5, 3},
    {"sync", 3, 6},    {"reports", 2, 2},  {"projections", 1, UNLIMITED_ATTEMPTS},
};

#define MAX_QUEUES 32

/* ------------------------------------------------------------- lookups */

struct jobs_queue *keel__jobs_queue(const char *name)
{
    unsigned i;

    for (i = 0; name && i < keel__jobs.nqueues; i++)
        if (strcmp(keel__jobs.queues[i].name, name) == 0)
            return &keel__jobs.queues[i];
    return NULL;
}

const struct keel_job_kind *keel__jobs_kind(const char *name)
{
    unsigned i;

    for (i = 0; name && i < keel__jobs.nkinds; i++)
        if (strcmp(keel__jobs.kinds[i]->name, name) == 0)
            return keel__jobs.kinds[i];
    return NULL;
}

/* --------------------------------------------------------------- queues */

static struct jobs_queue *queue_add(const char *name)
{
    struct jobs_queue *q = keel__jobs_queue(name);

    if (q || keel__jobs.nqueues == MAX_QUEUES || strlen(name) >= sizeof(q->name))
        return q;
    q = &keel__jobs.queues[keel__jobs.nqueues];
    memset(q, 0, sizeof(*q));
    snprintf(q->name, sizeof(q->name), "%s", name);
    q->idx = keel__jobs.nqueues++;
    return q;
}

static bool valid_name(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n >= 32)
        return false;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-'))
            return false;
    return true;
}

/* One "name:concurrency:attempts[:rate]" of KEEL_JOB_QUEUES. */
static keel_status queue_spec(const char *spec, size_t len)
{
    char buf[128], name[32];
    unsigned conc;
    int attempts, n = 0;
    double rate = 0;
    struct jobs_queue *q;

    if (len >= sizeof(buf))
        return KEEL_E_INVALID;
    memcpy(buf, spec, len);
    buf[len] = '\0';
    if (sscanf(buf, "%31[^:]:%u:%d%n", name, &conc, &attempts, &n) != 3 ||
        (buf[n] != '\0' && sscanf(buf + n, ":%lf", &rate) != 1) ||
        !valid_name(name, strlen(name)) || conc < 1 || conc > 1000 || attempts < 1 || rate < 0)
        return KEEL_E_INVALID;
    q = queue_add(name);
    if (!q)
        return KEEL_E_INVALID;
    q->concurrency = conc;
    q->max_attempts = attempts;
    q->rate = rate;
    return KEEL_OK;
}

static keel_status queues_init(const char *overrides)
{
    const char *p = overrides, *comma;
    struct jobs_queue *q;
    size_t i;

    keel__jobs.queues = keel_xcalloc(MAX_QUEUES, sizeof(*keel__jobs.queues));
    for (i = 0; i < KEEL_ARRAY_LEN(default_queues); i++) {
        q = queue_add(default_queues[i].name);
        q->concurrency = default_queues[i].concurrency;
        q->max_attempts = default_queues[i].attempts;
    }
    while (p && *p) {
        comma = strchr(p, ',');
        if (queue_spec(p, comma ? (size_t)(comma - p) : strlen(p)) < 0) {
            keel_log(KEEL_LOG_ERROR, "KEEL_JOB_QUEUES: expected name:concurrency:attempts[:rate]",
                     KEEL_LF_STRN("entry", p, comma ? (size_t)(comma - p) : strlen(p)));
            return KEEL_E_INVALID;
        }
        p = comma ? comma + 1 : NULL;
    }
    return KEEL_OK;
}

/* ----------------------------------------------------------------- wake */

static void on_wake(struct keel_post *p)
{
    struct jobs_queue *q = KEEL_CONTAINER_OF(p, struct jobs_queue, wake_post);

    atomic_store(&q->wake_pending, false);
    keel__jobs_fetch(q);
}

void keel__jobs_wake(struct jobs_queue *q)
{
    if (!q || !q->served || !atomic_load(&q->open))
        return;
    if (atomic_exchange(&q->wake_pending, true))
        return; /* one wake-up pending is enough: the fetch takes all that is due */
    q->wake_post.fn = on_wake;
    keel_loop_post(q->loop, &q->wake_post);
}

static void wake_all(void)
{
    unsigned i;

    for (i = 0; i < keel__jobs.nqueues; i++)
        keel__jobs_wake(&keel__jobs.queues[i]);
    keel__jobs_wake_relay();
}

/* The LISTEN thread: NOTIFY keel_jobs carries a queue name. */
static void on_notify(enum keel_db_listen_event ev, const char *payload, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    if (ev == KEEL_DB_LISTEN_NOTIFY)
        keel__jobs_wake(keel__jobs_queue(payload));
    else if (ev == KEEL_DB_LISTEN_UP)
        wake_all();
}

static void
on_outbox_notify(enum keel_db_listen_event ev, const char *payload, size_t len, void *arg)
{
    (void)payload;
    (void)len;
    (void)arg;
    if (ev != KEEL_DB_LISTEN_DOWN)
        keel__jobs_wake_relay();
}

static void outbox_committed(void)
{
    keel__jobs_wake_relay();
}

/* -------------------------------------------------------------- backoff */

uint64_t keel__jobs_backoff_ms(int attempt)
{
    uint64_t cap = keel__jobs.backoff_base_ms;
    int i;

    for (i = 1; i < attempt && cap < keel__jobs.backoff_max_ms; i++)
        cap *= 2;
    if (cap > keel__jobs.backoff_max_ms)
        cap = keel__jobs.backoff_max_ms;
    /* Full jitter (AWS architecture blog, "Exponential Backoff And
     * Jitter"): uniform over [0, cap], so retries of many jobs that failed
     * together spread out instead of coming back in a wave. */
    return (uint64_t)(((double)randombytes_random() / 4294967295.0) * (double)cap);
}

/* ------------------------------------------------------------- outcomes */

enum { OUTCOME_NONE, OUTCOME_DISCARD, OUTCOME_SNOOZE };

static const char *vformat(struct keel_job *job, const char *fmt, va_list ap)
{
    char *s = keel_arena_vsprintf(job->task.arena, fmt, ap);

    if (s && strlen(s) > JOBS_ERROR_MAX)
        s[JOBS_ERROR_MAX] = '\0';
    return s ? s : "failed";
}

keel_status keel_job_fail(struct keel_job *job, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    job->_error = vformat(job, fmt, ap);
    va_end(ap);
    return KEEL_E_INTERNAL;
}

keel_status keel_job_discard(struct keel_job *job, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    job->_error = vformat(job, fmt, ap);
    va_end(ap);
    job->_outcome = OUTCOME_DISCARD;
    return KEEL_E_INVALID;
}

keel_status keel_job_snooze(struct keel_job *job, unsigned ms)
{
    job->_outcome = OUTCOME_SNOOZE;
    job->_snooze_ms = ms;
    return KEEL_OK;
}

bool keel_job_cancelled(const struct keel_job *job)
{
    return keel_task_gone(&job->task);
}

bool keel__jobs_discarded(const struct keel_job *job)
{
    return job->_outcome == OUTCOME_DISCARD;
}

bool keel__jobs_snoozed(const struct keel_job *job)
{
    return job->_outcome == OUTCOME_SNOOZE;
}

/* -------------------------------------------------------------- metrics */

void keel__jobs_count(const char *queue, const char *outcome)
{
    keel_metric_add(keel__jobs.m_total, (const char *const[]){queue, outcome}, 1);
}

static const double wait_buckets[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600};

static void metrics_init(void)
{
    static const char *const qo[] = {"queue", "outcome"};
    static const char *const qs[] = {"queue", "state"};
    static const char *const q[] = {"queue"};

    keel__jobs.m_total = keel_metric_counter("keel_jobs_total", "Job attempts by outcome.", 2, qo);
    keel__jobs.m_depth = keel_metric_gauge(
        "keel_jobs_queue_depth", "Jobs per queue and state (refreshed every 5 s).", 2, qs);
    keel__jobs.m_oldest =
        keel_metric_gauge("keel_jobs_oldest_waiting_seconds",
                          "Age of the oldest job waiting past its run time, per queue.", 1, q);
    keel__jobs.m_duration =
        keel_metric_histogram("keel_job_duration_seconds", "Job attempt duration.", 1, q,
                              keel_metric_latency_buckets, KEEL_METRIC_LATENCY_NBUCKETS);
    keel__jobs.m_wait =
        keel_metric_histogram("keel_job_wait_seconds", "Time from a job's run time to its start.",
                              1, q, wait_buckets, KEEL_ARRAY_LEN(wait_buckets));
}

/* Readiness: the queue table answers (a thread-pool thread). */
static keel_status ready_check(void *arg, struct keel_json *j)
{
    struct keel_db_conn *c;
    struct keel_db_rows *r;
    keel_status rc;

    (void)arg;
    (void)j;
    rc = keel_db_acquire(keel__jobs.db, KEEL_DB_READ_PRIMARY, NULL, &c);
    if (rc < 0)
        return rc;
    rc = keel_db_query(c, "SELECT 1 FROM jobs LIMIT 1", NULL, 0, &r);
    if (rc == KEEL_OK)
        keel_db_rows_free(r);
    keel_db_release(c);
    return rc;
}

/* ----------------------------------------------------------------- life */

/* The engine's own kinds, then the modules'. */
static const struct keel_job_kind *const *
all_kinds(const struct keel_job_kind *const *kinds, unsigned n, unsigned *nout)
{
    const struct keel_job_kind **v = keel_xcalloc(n + 1, sizeof(*v));
    unsigned i;

    v[0] = &keel__jobs_purge;
    for (i = 0; i < n; i++)
        v[i + 1] = kinds[i];
    *nout = n + 1;
    return v;
}

static void worker_id(void)
{
    char host[64] = "localhost";

    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(keel__jobs.worker, sizeof(keel__jobs.worker), "%.60s:%d:%08x", host, (int)getpid(),
             randombytes_random());
}

/* Workers hear of other processes' commits by NOTIFY (PostgreSQL). */
keel_status keel__jobs_listen(void)
{
    keel_status rc;

    if (!keel__jobs.pg || keel__jobs.listener)
        return KEEL_OK;
    rc = keel_db_listen_start(keel__jobs.db, keel__jobs.url, "keel_jobs", on_notify, NULL,
                              &keel__jobs.listener);
    if (rc == KEEL_OK)
        rc = keel_db_listen_start(keel__jobs.db, keel__jobs.url, "keel_outbox", on_outbox_notify,
                                  NULL, &keel__jobs.outbox_listener);
    return rc;
}

keel_status keel_jobs_init(const struct keel_config *cfg,
                           struct keel_db *db,
                           const struct keel_job_kind *const *kinds,
                           unsigned nkinds,
                           const struct keel_subscription *const *subs,
                           unsigned nsubs)
{
    keel_status rc;

    memset(&keel__jobs, 0, sizeof(keel__jobs));
    keel__jobs.db = db;
    keel__jobs.pg = strcmp(keel_db_dialect(db), "postgres") == 0;
    keel__jobs.kinds = all_kinds(kinds, nkinds, &keel__jobs.nkinds);
    keel__jobs.subs = subs;
    keel__jobs.nsubs = nsubs;
    keel__jobs.backoff_base_ms = cfg->job_backoff_base_ms;
    keel__jobs.backoff_max_ms = cfg->job_backoff_max_ms;
    keel__jobs.lease_ms = cfg->job_lease_ms;
    keel__jobs.poll_ms = cfg->job_poll_ms;
    keel__jobs.retention_ms = cfg->job_retention_ms;
    worker_id();
    rc = queues_init(cfg->job_queues);
    if (rc < 0)
        return rc;
    metrics_init();
    keel_outbox_on_commit(outbox_committed);
    keel__jobs.url = cfg->database_url;
    return keel_health_register("jobs", ready_check, NULL, true);
}

void keel_jobs_shutdown(void)
{
    keel_outbox_on_commit(NULL);
    keel_db_listen_stop(keel__jobs.listener);
    keel_db_listen_stop(keel__jobs.outbox_listener);
    free(keel__jobs.queues);
    free((void *)(uintptr_t)keel__jobs.kinds);
    memset(&keel__jobs, 0, sizeof(keel__jobs));
}
