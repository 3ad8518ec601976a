/*
 * jobs.c - test-only job kinds and routes of the debug module
 * (KEEL_DEBUG_ROUTES=1): the end-to-end tests and the job benchmark drive
 * the job engine through them.
 *
 * Kinds (payloads are JSON objects):
 *   debug.noop     succeeds at once (throughput)
 *   debug.record   writes one row to debug_job_runs (job id, attempt, pid)
 *                  and succeeds: the tests count executions from it; it is
 *                  also subscribed to the "orders" outbox topic
 *   debug.fail     always fails ("poison")
 *   debug.flaky    fails until attempt {"succeed_at": N}, then records
 *   debug.sleep    sleeps {"ms": N} on the thread pool, then records
 *   debug.snooze   snoozes {"ms": N} {"times": K} times (each snooze is
 *                  counted in debug_job_runs), then records
 *   debug.discard  discards itself
 *
 * Routes:
 *   POST /debug/jobs {kind, queue?, payload?, count?, run_at_ms?, priority?,
 *        max_attempts?, unique_key?, order_key?, rollback?} enqueues `count`
 *        jobs (default 1) in transactions of up to 1000; rollback: true
 *        enqueues them and rolls back. Answers {"ids": [...], "dup": bool}
 *        (ids of the first 100).
 *   GET /debug/jobs/runs: {"runs", "jobs", "twice": [job ids run more
 *        than once]}.
 */
#include "keel/jobs.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/db.h"
#include "keel/json.h"
#include "keel/problem.h"

#include "debug_int.h"

/* ---------------------------------------------------------------- kinds */

static int64_t arg_int(const struct keel_job *job, const char *name, int64_t dflt)
{
    struct json_object *v;

    if (!job->args || !json_object_object_get_ex(job->args, name, &v))
        return dflt;
    return json_object_get_int64(v);
}

static keel_status record_tx(struct keel_db_conn *c, void *arg)
{
    const struct keel_job *job = arg;
    struct keel_db_param p[] = {KEEL_DB_TEXT(job->id), KEEL_DB_TEXT(job->kind),
                                KEEL_DB_INT(job->attempt), KEEL_DB_INT(getpid()),
                                KEEL_DB_INT(keel_wall_ms())};

    return keel_db_exec(c,
                        "INSERT INTO debug_job_runs (job_id, kind, attempt, pid, at_ms)"
                        " VALUES ($1, $2, $3, $4, $5)",
                        p, KEEL_ARRAY_LEN(p), NULL);
}

static keel_status record_done(struct keel_task *t, keel_status rc, void *arg)
{
    (void)t;
    return rc < 0 ? keel_job_fail(arg, "record: %s", keel_strerror(rc)) : KEEL_OK;
}

static keel_status do_record(struct keel_job *job)
{
    return keel_db_run_task(&job->task, KEEL_DB_WRITE, record_tx, record_done, job);
}

static keel_status do_noop(struct keel_job *job)
{
    (void)job;
    return KEEL_OK;
}

static keel_status do_fail(struct keel_job *job)
{
    return keel_job_fail(job, "debug.fail always fails (attempt %d)", job->attempt);
}

static keel_status do_flaky(struct keel_job *job)
{
    if (job->attempt < arg_int(job, "succeed_at", 2))
        return keel_job_fail(job, "flaky: attempt %d", job->attempt);
    return do_record(job);
}

static void sleep_work(void *arg)
{
    int64_t ms = arg_int(arg, "ms", 100);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static keel_status slept(struct keel_task *t, void *arg)
{
    (void)t;
    return do_record(arg);
}

static keel_status do_sleep(struct keel_job *job)
{
    return keel_task_offload(&job->task, sleep_work, slept, job);
}

/* Snoozes until debug_job_runs holds `times` snoozes of this job. */
struct snooze {
    struct keel_job *job;
    int64_t seen;
};

static keel_status count_tx(struct keel_db_conn *c, void *arg)
{
    struct snooze *s = arg;
    struct keel_db_param p[] = {KEEL_DB_TEXT(s->job->id)};
    struct keel_db_rows *r;
    keel_status rc = keel_db_query(
        c, "SELECT COUNT(*) FROM debug_job_runs WHERE job_id = $1 AND kind = 'snoozed'", p, 1, &r);

    if (rc < 0)
        return rc;
    if (keel_db_next(r) == KEEL_OK)
        s->seen = keel_db_int64(r, 0);
    keel_db_rows_free(r);
    if (s->seen >= arg_int(s->job, "times", 1))
        return KEEL_OK;
    {
        struct keel_db_param q[] = {KEEL_DB_TEXT(s->job->id), KEEL_DB_INT(s->job->attempt),
                                    KEEL_DB_INT(getpid()), KEEL_DB_INT(keel_wall_ms())};

        return keel_db_exec(c,
                            "INSERT INTO debug_job_runs (job_id, kind, attempt, pid, at_ms)"
                            " VALUES ($1, 'snoozed', $2, $3, $4)",
                            q, 4, NULL);
    }
}

static keel_status counted(struct keel_task *t, keel_status rc, void *arg)
{
    struct snooze *s = arg;

    (void)t;
    if (rc < 0)
        return keel_job_fail(s->job, "snooze count: %s", keel_strerror(rc));
    if (s->seen < arg_int(s->job, "times", 1))
        return keel_job_snooze(s->job, (unsigned)arg_int(s->job, "ms", 50));
    return do_record(s->job);
}

static keel_status do_snooze(struct keel_job *job)
{
    struct snooze *s = keel_arena_calloc(job->task.arena, 1, sizeof(*s));

    if (!s)
        return KEEL_E_NOMEM;
    s->job = job;
    return keel_db_run_task(&job->task, KEEL_DB_WRITE, count_tx, counted, s);
}

static keel_status do_discard(struct keel_job *job)
{
    return keel_job_discard(job, "debug.discard gives up at once");
}

#define KIND(n, h, t)                                                                              \
    {                                                                                              \
        .name = "debug." n, .queue = "sync", .handler = (h), .timeout_ms = (t)                     \
    }

static const struct keel_job_kind kinds[] = {
    KIND("noop", do_noop, 0),       KIND("record", do_record, 0),   KIND("fail", do_fail, 0),
    KIND("flaky", do_flaky, 0),     KIND("sleep", do_sleep, 30000), KIND("snooze", do_snooze, 0),
    KIND("discard", do_discard, 0),
};

const struct keel_job_kind *const debug_job_kinds[DEBUG_NJOB_KINDS] = {
    &kinds[0], &kinds[1], &kinds[2], &kinds[3], &kinds[4], &kinds[5], &kinds[6],
};

static const struct keel_subscription record_orders = {.topic = "orders", .kind = "debug.record"};

const struct keel_subscription *const debug_subscriptions[DEBUG_NSUBSCRIPTIONS] = {&record_orders};

keel_status debug_jobs_schema(struct keel_db_conn *c)
{
    return keel_db_exec(c,
                        "CREATE TABLE IF NOT EXISTS debug_job_runs (job_id TEXT NOT NULL,"
                        " kind TEXT NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL,"
                        " at_ms BIGINT NOT NULL)",
                        NULL, 0, NULL);
}

/* --------------------------------------------------------------- routes */

#define ENQUEUE_BATCH 1000
#define IDS_SHOWN     100

struct enqueue {
    const char *kind, *queue, *payload;
    struct keel_job_opts opts;
    int64_t count, done;
    bool rollback, dup;
    char (*ids)[37];
    unsigned nids;
};

static const char *member_str(struct json_object *o, const char *name)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static int64_t member_int(struct json_object *o, const char *name, int64_t dflt)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_int))
        return dflt;
    return json_object_get_int64(v);
}

static keel_status enqueue_tx(struct keel_db_conn *c, void *arg)
{
    struct enqueue *e = arg;
    int64_t i, n = e->count - e->done;
    char id[37];
    bool dup;
    keel_status rc = KEEL_OK;

    if (n > ENQUEUE_BATCH)
        n = ENQUEUE_BATCH;
    for (i = 0; rc == KEEL_OK && i < n; i++) {
        rc = keel_jobs_enqueue(c, e->queue, e->kind, e->payload, &e->opts, id, &dup);
        if (rc == KEEL_OK && e->nids < IDS_SHOWN)
            memcpy(e->ids[e->nids++], id, 37);
        e->dup = e->dup || dup;
    }
    if (rc == KEEL_OK && e->rollback)
        return KEEL_E_CONFLICT; /* enqueued, then rolled back */
    return rc;
}

static void enqueue_work(void *arg)
{
    struct enqueue *e = arg;
    keel_status rc = KEEL_OK;
    unsigned shown;

    while (rc == KEEL_OK && e->done < e->count) {
        shown = e->nids;
        rc = keel_db_transaction(keel_db_default(), NULL, enqueue_tx, e);
        if (rc < 0)
            e->nids = shown;
        else
            e->done += e->count - e->done > ENQUEUE_BATCH ? ENQUEUE_BATCH : e->count - e->done;
    }
    e->count = rc; /* the outcome, for the answer */
}

static keel_status enqueue_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct enqueue *e = arg;
    struct keel_json j;
    unsigned i;

    if (rc == KEEL_OK)
        rc = (keel_status)e->count;
    if (rc == KEEL_E_CONFLICT && e->rollback)
        return keel_fail(req, 409, NULL, "Enqueued and rolled back.");
    if (rc == KEEL_E_INVALID)
        return keel_fail(req, 400, NULL, "Unknown kind or queue, or a payload that is not JSON.");
    if (rc < 0)
        return keel_fail_storage(req, rc, "debug jobs", NULL);
    keel_resp_start(req, 201, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "ids");
    keel_json_arr_open(&j);
    for (i = 0; i < e->nids; i++)
        keel_json_str(&j, e->ids[i]);
    keel_json_arr_close(&j);
    keel_json_key(&j, "dup");
    keel_json_bool(&j, e->dup);
    keel_json_obj_close(&j);
    return keel_json_end(&j) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

keel_status debug_jobs_enqueue(struct keel_request *req)
{
    struct enqueue *e = keel_arena_calloc(req->arena, 1, sizeof(*e));
    struct json_object *o = req->json, *pl;

    if (!e || !(e->ids = keel_arena_calloc(req->arena, IDS_SHOWN, sizeof(*e->ids))))
        return KEEL_E_NOMEM;
    if (!o || !json_object_is_type(o, json_type_object) || !(e->kind = member_str(o, "kind")))
        return keel_fail(req, 400, NULL, "A kind is required.");
    e->queue = member_str(o, "queue");
    if (json_object_object_get_ex(o, "payload", &pl))
        e->payload = json_object_to_json_string_ext(pl, JSON_C_TO_STRING_PLAIN);
    e->count = member_int(o, "count", 1);
    if (e->count < 1 || e->count > 1000000)
        return keel_fail(req, 400, NULL, "count must be 1..1000000.");
    e->opts.run_at_ms = member_int(o, "run_at_ms", 0);
    e->opts.priority = (int)member_int(o, "priority", 0);
    e->opts.max_attempts = (int)member_int(o, "max_attempts", 0);
    e->opts.unique_key = member_str(o, "unique_key");
    e->opts.order_key = member_str(o, "order_key");
    e->opts.traceparent = member_str(o, "traceparent");
    e->rollback = json_object_object_get_ex(o, "rollback", &pl) && json_object_get_boolean(pl);
    return keel_db_offload(req, enqueue_work, enqueue_done, e);
}

struct runs {
    struct keel_buf out;
};

static keel_status runs_load(struct keel_db_conn *c, void *arg)
{
    struct runs *r = arg;
    struct keel_json j;
    struct keel_db_rows *rows;
    int64_t total = 0, jobs = 0;
    keel_status rc;

    keel_json_begin(&j, &r->out);
    keel_json_obj_open(&j);
    keel_json_key(&j, "twice");
    keel_json_arr_open(&j);
    rc = keel_db_query(c,
                       "SELECT job_id, COUNT(*) FROM debug_job_runs WHERE kind <> 'snoozed'"
                       " GROUP BY job_id",
                       NULL, 0, &rows);
    while (rc == KEEL_OK && (rc = keel_db_next(rows)) == KEEL_OK) {
        int64_t n = keel_db_int64(rows, 1);
        size_t len;
        const char *id = keel_db_text(rows, 0, &len);

        jobs++;
        total += n;
        if (n > 1)
            keel_json_strn(&j, id, len);
    }
    if (rc == KEEL_DONE) {
        keel_db_rows_free(rows);
        rc = KEEL_OK;
    }
    keel_json_arr_close(&j);
    keel_json_key(&j, "runs");
    keel_json_int(&j, total);
    keel_json_key(&j, "jobs");
    keel_json_int(&j, jobs);
    keel_json_obj_close(&j);
    return rc < 0 ? rc : keel_json_end(&j);
}

static keel_status runs_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct runs *r = arg;

    if (rc < 0)
        return keel_fail_storage(req, rc, "debug runs", NULL);
    return keel_resp_json_str(req, 200, r->out.data);
}

static void runs_free(void *p)
{
    keel_buf_free(&((struct runs *)p)->out);
}

keel_status debug_jobs_runs(struct keel_request *req)
{
    struct runs *r = keel_arena_calloc(req->arena, 1, sizeof(*r));

    if (!r)
        return KEEL_E_NOMEM;
    keel_buf_init(&r->out, 64u << 20);
    if (keel_arena_defer(req->arena, runs_free, r) < 0)
        return KEEL_E_NOMEM;
    return keel_db_run(req, KEEL_DB_READ_PRIMARY, runs_load, runs_done, r);
}
