/*
 * purge.c - the engine's own periodic job: completed and cancelled jobs
 * are deleted once older than KEEL_JOB_RETENTION (dead ones stay until an
 * operator retries or deletes them through the admin API).
 */
#include "keel/db.h"

#include "jobs_int.h"

#define PURGE_PERIOD_MS (10u * 60 * 1000)
#define PURGE_BATCH     10000 /* rows per statement: a big backlog goes in steps */

static keel_status purge_tx(struct keel_db_conn *c, void *arg)
{
    struct keel_db_param p[] = {
        KEEL_DB_INT(keel_wall_ms() - (int64_t)keel__jobs.retention_ms),
        KEEL_DB_INT(PURGE_BATCH),
    };

    (void)arg;
    return keel_db_exec(c,
                        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs"
                        " WHERE state IN ('completed', 'cancelled') AND finished_ms < $1 LIMIT $2)",
                        p, 2, NULL);
}

static keel_status purge_done(struct keel_task *t, keel_status rc, void *arg)
{
    (void)t;
    return rc < 0 ? keel_job_fail(arg, "purge: %s", keel_strerror(rc)) : KEEL_OK;
}

static keel_status purge(struct keel_job *job)
{
    return keel_db_run_task(&job->task, KEEL_DB_WRITE, purge_tx, purge_done, job);
}

const struct keel_job_kind keel__jobs_purge = {
    .name = "jobs.purge",
    .queue = "sync",
    .handler = purge,
    .period_ms = PURGE_PERIOD_MS,
};
