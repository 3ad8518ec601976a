/*
 * store.c - the job engine's SQL (storage-lane threads): enqueue, claim,
 * results, heartbeats, reaping, the outbox relay, periodic schedules and
 * the queue-depth counts. docs/internals/jobs.md has the state machine.
 *
 * DESIGN: every statement that changes a running job names this worker
 * and the state 'running' in its WHERE clause, so a worker that lost a
 * lease (it froze; the job was reaped and taken by another) can no longer
 * change the job: its late result is dropped, never applied twice. The two
 * dialects differ only where they must: PostgreSQL claims with FOR UPDATE
 * SKIP LOCKED (several workers claim at once, each skipping the others'
 * rows), SQLite with a plain UPDATE under its one writer; id lists are a
 * PostgreSQL array or a SQLite JSON array; error histories are jsonb or
 * JSON text. Ordered jobs (order_key): a job is claimable only when no
 * earlier job of its key is still pending or running, so a key's jobs run
 * one at a time, in enqueue order, whichever worker takes them.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/uuid.h"

#include "jobs_int.h"

#define PENDING "('available', 'running', 'retryable')"
#define PG      keel__jobs.pg

/* ------------------------------------------------------------- id lists */

/* Writes ids as a PostgreSQL array literal or a JSON array of strings. */
static keel_status id_list(struct keel_buf *b, const char (*ids)[37], unsigned n)
{
    unsigned i;

    keel_buf_appends(b, PG ? "{" : "[");
    for (i = 0; i < n; i++) {
        if (i)
            keel_buf_appends(b, ",");
        keel_buf_appends(b, PG ? "" : "\"");
        keel_buf_appends(b, ids[i]);
        keel_buf_appends(b, PG ? "" : "\"");
    }
    return keel_buf_appends(b, PG ? "}" : "]");
}

#define IN_IDS_PG(param)     " id = ANY(" param "::uuid[])"
#define IN_IDS_SQLITE(param) " id IN (SELECT value FROM json_each(" param "))"

/* ------------------------------------------------------------- enqueue */

static void wake_hook(void *arg)
{
    keel__jobs_wake(arg);
}

/* A unique job already pending: its id. */
static keel_status pending_id(struct keel_db_conn *c, const char *key, char id_out[37])
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(key)};
    struct keel_db_rows *r;
    keel_status rc = keel_db_query(
        c, "SELECT id FROM jobs WHERE unique_key = $1 AND state IN " PENDING, p, 1, &r);

    if (rc < 0)
        return rc;
    rc = keel_db_next(r);
    if (rc == KEEL_OK && !keel_db_uuid(r, 0, id_out))
        rc = KEEL_E_DB;
    keel_db_rows_free(r);
    return rc == KEEL_DONE ? KEEL_E_CONFLICT : rc; /* finished meanwhile: a race, retried */
}

static const char INSERT_SQL[] =
    "INSERT INTO jobs (id, queue, kind, payload, state, priority, max_attempts, run_at_ms,"
    " unique_key, order_key, traceparent, created_ms)"
    " VALUES ($1, $2, $3, $4, 'available', $5, $6, $7, $8, $9, $10, $11)";
static const char INSERT_UNIQUE_SQL[] =
    "INSERT INTO jobs (id, queue, kind, payload, state, priority, max_attempts, run_at_ms,"
    " unique_key, order_key, traceparent, created_ms)"
    " VALUES ($1, $2, $3, $4, 'available', $5, $6, $7, $8, $9, $10, $11)"
    " ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN " PENDING " DO NOTHING";

static struct keel_db_param opt_text(const char *s)
{
    return s ? KEEL_DB_TEXT(s) : KEEL_DB_NULL();
}

/* The queue's workers hear of it at commit: in this process directly, in
 * the others by NOTIFY (PostgreSQL delivers it at commit, once per
 * transaction and payload). */
static keel_status notify(struct keel_db_conn *c, struct jobs_queue *q)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(q->name)};
    keel_status rc = keel_db_after_commit(c, wake_hook, q);

    if (rc < 0 || rc == KEEL_DONE || !PG)
        return rc < 0 ? rc : KEEL_OK;
    return keel_db_exec_deferred(c, "SELECT pg_notify('keel_jobs', $1)", p, 1);
}

static bool valid_json(const char *payload)
{
    struct json_object *o = NULL;
    const char *why;
    bool ok = keel_json_parse(payload, strlen(payload), KEEL_JSON_MAX_DEPTH, &o, &why) == KEEL_OK;

    json_object_put(o);
    return ok;
}

keel_status keel_jobs_enqueue(struct keel_db_conn *c,
                              const char *queue,
                              const char *kind,
                              const char *payload,
                              const struct keel_job_opts *opts,
                              char id_out[37],
                              bool *dup_out)
{
    static const struct keel_job_opts none = {0};
    const struct keel_job_kind *k = kind ? keel__jobs_kind(kind) : NULL;
    struct jobs_queue *q = keel__jobs_queue(queue ? queue : k ? k->queue : "");
    int64_t now = keel_wall_ms();
    char id[37];
    int64_t affected = 1;
    keel_status rc;

    if (!opts)
        opts = &none;
    if (dup_out)
        *dup_out = false;
    if (!k || !q || (payload && !valid_json(payload)))
        return KEEL_E_INVALID;
    keel_uuid_v7(id);
    {
        struct keel_db_param p[] = {
            KEEL_DB_UUID(id),
            KEEL_DB_TEXT(q->name),
            KEEL_DB_TEXT(k->name),
            KEEL_DB_TEXT(payload ? payload : "{}"),
            KEEL_DB_INT(opts->priority),
            KEEL_DB_INT(opts->max_attempts > 0 ? opts->max_attempts : q->max_attempts),
            KEEL_DB_INT(opts->run_at_ms > 0 ? opts->run_at_ms : now),
            opt_text(opts->unique_key),
            opt_text(opts->order_key),
            opt_text(opts->traceparent),
            KEEL_DB_INT(now),
        };

        if (opts->unique_key)
            rc = keel_db_exec(c, INSERT_UNIQUE_SQL, p, KEEL_ARRAY_LEN(p), &affected);
        else
            rc = keel_db_exec_deferred(c, INSERT_SQL, p, KEEL_ARRAY_LEN(p));
    }
    if (rc < 0)
        return rc;
    if (affected == 0) { /* a unique job already waits: it is the answer */
        if (dup_out)
            *dup_out = true;
        return id_out ? pending_id(c, opts->unique_key, id_out) : KEEL_OK;
    }
    if (id_out)
        memcpy(id_out, id, 37);
    return notify(c, q);
}

/* --------------------------------------------------------------- claim */

static const char CLAIM_PG[] =
    "WITH c AS (SELECT j.seq FROM jobs j"
    " WHERE j.queue = $1 AND j.state IN ('available', 'retryable') AND j.run_at_ms <= $2"
    " AND (j.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs e"
    " WHERE e.order_key = j.order_key AND e.state IN " PENDING " AND e.seq < j.seq))"
    " ORDER BY j.priority, j.run_at_ms, j.seq LIMIT $3 FOR UPDATE SKIP LOCKED)"
    " UPDATE jobs SET state = 'running', attempt = jobs.attempt + 1, worker = $4,"
    " lease_until_ms = $2 + $5, attempted_ms = $2 FROM c WHERE jobs.seq = c.seq"
    " RETURNING jobs.id, jobs.kind, jobs.payload, jobs.traceparent, jobs.attempt,"
    " jobs.max_attempts, jobs.created_ms, jobs.run_at_ms";
static const char CLAIM_SQLITE[] =
    "UPDATE jobs SET state = 'running', attempt = attempt + 1, worker = $4,"
    " lease_until_ms = $2 + $5, attempted_ms = $2 WHERE seq IN (SELECT j.seq FROM jobs j"
    " WHERE j.queue = $1 AND j.state IN ('available', 'retryable') AND j.run_at_ms <= $2"
    " AND (j.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs e"
    " WHERE e.order_key = j.order_key AND e.state IN " PENDING " AND e.seq < j.seq))"
    " ORDER BY j.priority, j.run_at_ms, j.seq LIMIT $3)"
    " RETURNING id, kind, payload, traceparent, attempt, max_attempts, created_ms, run_at_ms";

static char *dup_text(const struct keel_db_rows *r, unsigned col)
{
    size_t len;
    const char *s = keel_db_is_null(r, col) ? NULL : keel_db_text(r, col, &len);
    char *out;

    if (!s)
        return NULL;
    out = keel_xmalloc(len + 1);
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

static void claimed_row(const struct keel_db_rows *r, struct jobs_claimed *j)
{
    memset(j, 0, sizeof(*j));
    if (!keel_db_uuid(r, 0, j->id))
        j->id[0] = '\0';
    j->kind = dup_text(r, 1);
    j->payload = dup_text(r, 2);
    j->traceparent = dup_text(r, 3);
    j->attempt = (int)keel_db_int64(r, 4);
    j->max_attempts = (int)keel_db_int64(r, 5);
    j->created_ms = keel_db_int64(r, 6);
    j->run_at_ms = keel_db_int64(r, 7);
}

keel_status keel__jobs_claim(struct keel_db_conn *c,
                             const struct jobs_queue *q,
                             unsigned n,
                             struct jobs_claimed **out,
                             unsigned *nout)
{
    int64_t now = keel_wall_ms();
    struct keel_db_param p[] = {KEEL_DB_TEXT(q->name), KEEL_DB_INT(now), KEEL_DB_INT(n),
                                KEEL_DB_TEXT(keel__jobs.worker),
                                KEEL_DB_INT((int64_t)keel__jobs.lease_ms)};
    struct jobs_claimed *v = keel_xcalloc(n ? n : 1, sizeof(*v));
    struct keel_db_rows *r;
    unsigned got = 0;
    keel_status rc;

    *out = NULL;
    *nout = 0;
    rc = keel_db_query(c, PG ? CLAIM_PG : CLAIM_SQLITE, p, KEEL_ARRAY_LEN(p), &r);
    if (rc < 0) {
        free(v);
        return rc;
    }
    while ((rc = keel_db_next(r)) == KEEL_OK && got < n)
        claimed_row(r, &v[got++]);
    keel_db_rows_free(r);
    if (rc < 0) {
        keel__jobs_claimed_free(v, got);
        return rc;
    }
    *out = v;
    *nout = got;
    return KEEL_OK;
}

void keel__jobs_claimed_free(struct jobs_claimed *v, unsigned n)
{
    unsigned i;

    for (i = 0; v && i < n; i++) {
        free(v[i].kind);
        free(v[i].payload);
        free(v[i].traceparent);
    }
    free(v);
}

/* ------------------------------------------------------------- results */

/* Appends {"attempt", "at": param at, "error": param err} to a job's
 * error history. */
#define APPEND_ERROR_PG(at, err)                                                                   \
    "errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt,"                  \
    " 'at', " at "::bigint, 'error', " err "::text))"
#define APPEND_ERROR_SQLITE(at, err)                                                               \
    "errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', " at ","           \
    " 'error', " err "))"

#define FAIL_SQL(append)                                                                           \
    "UPDATE jobs SET state = $2, run_at_ms = $3, worker = NULL, lease_until_ms = NULL,"            \
    " finished_ms = CASE WHEN $2 = 'dead' THEN $4 ELSE NULL END, " append                          \
    " WHERE id = $1 AND worker = $6 AND state = 'running'"

static keel_status record_failure(struct keel_db_conn *c, const struct jobs_result *r, int64_t now)
{
    struct keel_db_param p[] = {
        KEEL_DB_UUID(r->id),
        KEEL_DB_TEXT(r->outcome == JOBS_DEAD ? "dead" : "retryable"),
        KEEL_DB_INT(r->run_at_ms),
        KEEL_DB_INT(now),
        KEEL_DB_TEXT(r->error ? r->error : "failed"),
        KEEL_DB_TEXT(keel__jobs.worker),
    };

    return keel_db_exec(
        c, PG ? FAIL_SQL(APPEND_ERROR_PG("$4", "$5")) : FAIL_SQL(APPEND_ERROR_SQLITE("$4", "$5")),
        p, KEEL_ARRAY_LEN(p), NULL);
}

/* Snoozed and released jobs are available again without losing the
 * attempt; a cancelled one is done. */
static keel_status record_other(struct keel_db_conn *c, const struct jobs_result *r, int64_t now)
{
    struct keel_db_param back[] = {KEEL_DB_UUID(r->id), KEEL_DB_INT(r->run_at_ms),
                                   KEEL_DB_TEXT(keel__jobs.worker)};
    struct keel_db_param done[] = {KEEL_DB_UUID(r->id), KEEL_DB_INT(now),
                                   KEEL_DB_TEXT(keel__jobs.worker)};

    if (r->outcome == JOBS_CANCELLED)
        return keel_db_exec(c,
                            "UPDATE jobs SET state = 'cancelled', finished_ms = $2, worker = NULL,"
                            " lease_until_ms = NULL WHERE id = $1 AND worker = $3"
                            " AND state = 'running'",
                            done, 3, NULL);
    return keel_db_exec(c,
                        "UPDATE jobs SET state = 'available', attempt = attempt - 1,"
                        " run_at_ms = $2, worker = NULL, lease_until_ms = NULL"
                        " WHERE id = $1 AND worker = $3 AND state = 'running'",
                        back, 3, NULL);
}

static keel_status
record_completed(struct keel_db_conn *c, const struct jobs_result *r, unsigned n, int64_t now)
{
    char(*ids)[37] = keel_xcalloc(n, sizeof(*ids));
    struct keel_buf b;
    unsigned i, k = 0;
    keel_status rc;

    for (i = 0; i < n; i++)
        if (r[i].outcome == JOBS_COMPLETED)
            memcpy(ids[k++], r[i].id, 37);
    keel_buf_init(&b, SIZE_MAX / 2);
    rc = k ? id_list(&b, (const char(*)[37])ids, k) : KEEL_OK;
    if (k && rc == KEEL_OK) {
        struct keel_db_param p[] = {KEEL_DB_INT(now), KEEL_DB_TEXTN(b.data, b.len),
                                    KEEL_DB_TEXT(keel__jobs.worker)};

        rc = keel_db_exec(c,
                          PG ? "UPDATE jobs SET state = 'completed', finished_ms = $1,"
                               " lease_until_ms = NULL WHERE" IN_IDS_PG(
                                   "$2") " AND worker = $3 AND state = 'running'"
                             : "UPDATE jobs SET state = 'completed', finished_ms = $1,"
                               " lease_until_ms = NULL WHERE" IN_IDS_SQLITE(
                                   "$2") " AND worker = $3 AND state = 'running'",
                          p, 3, NULL);
    }
    keel_buf_free(&b);
    free(ids);
    return rc;
}

keel_status
keel__jobs_record(struct keel_db_conn *c, const struct jobs_result *r, unsigned n, int64_t now)
{
    keel_status rc = record_completed(c, r, n, now);
    unsigned i;

    for (i = 0; rc >= 0 && i < n; i++) {
        if (r[i].outcome == JOBS_RETRY || r[i].outcome == JOBS_DEAD)
            rc = record_failure(c, &r[i], now);
        else if (r[i].outcome != JOBS_COMPLETED)
            rc = record_other(c, &r[i], now);
    }
    return rc;
}

/* ------------------------------------------------------------ heartbeat */

keel_status keel__jobs_heartbeat(struct keel_db_conn *c,
                                 const char (*ids)[37],
                                 unsigned n,
                                 int64_t now,
                                 unsigned char *state_out)
{
    struct keel_buf b;
    struct keel_db_rows *r;
    char id[37];
    unsigned i;
    keel_status rc;

    memset(state_out, 2, n); /* lost, unless renewed */
    keel_buf_init(&b, SIZE_MAX / 2);
    id_list(&b, ids, n);
    {
        struct keel_db_param p[] = {KEEL_DB_INT(now + (int64_t)keel__jobs.lease_ms),
                                    KEEL_DB_TEXTN(b.data, b.len), KEEL_DB_TEXT(keel__jobs.worker)};

        rc = keel_db_query(c,
                           PG ? "UPDATE jobs SET lease_until_ms = $1 WHERE" IN_IDS_PG(
                                    "$2") " AND worker = $3 AND state = 'running'"
                                          " RETURNING id, cancel_requested"
                              : "UPDATE jobs SET lease_until_ms = $1 WHERE" IN_IDS_SQLITE(
                                    "$2") " AND worker = $3 AND state = 'running'"
                                          " RETURNING id, cancel_requested",
                           p, 3, &r);
    }
    keel_buf_free(&b);
    while (rc == KEEL_OK && (rc = keel_db_next(r)) == KEEL_OK) {
        if (!keel_db_uuid(r, 0, id))
            continue;
        for (i = 0; i < n; i++)
            if (memcmp(ids[i], id, 36) == 0)
                state_out[i] = keel_db_bool(r, 1) ? 1 : 0;
    }
    if (rc == KEEL_DONE) {
        keel_db_rows_free(r);
        rc = KEEL_OK;
    }
    return rc;
}

/* ----------------------------------------------------------------- reap */

#define REAP_SQL(append)                                                                           \
    "UPDATE jobs SET state = CASE WHEN cancel_requested THEN 'cancelled'"                          \
    " WHEN attempt >= max_attempts THEN 'dead' ELSE 'retryable' END,"                              \
    " run_at_ms = $1, worker = NULL, lease_until_ms = NULL,"                                       \
    " finished_ms = CASE WHEN cancel_requested OR attempt >= max_attempts THEN $1 END, " append    \
    " WHERE state = 'running' AND lease_until_ms < $1"

keel_status keel__jobs_reap(struct keel_db_conn *c, int64_t now, int64_t *n_out)
{
    struct keel_db_param p[] = {KEEL_DB_INT(now),
                                KEEL_DB_TEXT("lease expired: the worker stopped renewing it")};

    return keel_db_exec(
        c, PG ? REAP_SQL(APPEND_ERROR_PG("$1", "$2")) : REAP_SQL(APPEND_ERROR_SQLITE("$1", "$2")),
        p, 2, n_out);
}

/* ---------------------------------------------------------------- relay */

struct outbox_row {
    int64_t seq;
    char *topic, *key, *payload;
};

static void outbox_rows_free(struct outbox_row *v, unsigned n)
{
    unsigned i;

    for (i = 0; v && i < n; i++) {
        free(v[i].topic);
        free(v[i].key);
        free(v[i].payload);
    }
    free(v);
}

/* The oldest unpublished rows, copied (the result must be closed before
 * the enqueues). */
static keel_status outbox_take(struct keel_db_conn *c, struct outbox_row **out, unsigned *nout)
{
    struct keel_db_param p[] = {KEEL_DB_INT(JOBS_RELAY_BATCH)};
    struct outbox_row *v = keel_xcalloc(JOBS_RELAY_BATCH, sizeof(*v));
    struct keel_db_rows *r;
    unsigned n = 0;
    keel_status rc = keel_db_query(c,
                                   "SELECT seq, topic, key, payload FROM outbox"
                                   " WHERE published_us IS NULL ORDER BY seq LIMIT $1",
                                   p, 1, &r);

    if (rc == KEEL_OK) {
        while ((rc = keel_db_next(r)) == KEEL_OK && n < JOBS_RELAY_BATCH) {
            v[n].seq = keel_db_int64(r, 0);
            v[n].topic = dup_text(r, 1);
            v[n].key = dup_text(r, 2);
            v[n].payload = dup_text(r, 3);
            n++;
        }
        keel_db_rows_free(r);
    }
    *out = v;
    *nout = n;
    return rc < 0 ? rc : KEEL_OK;
}

/* One job per (row, subscribed kind): unique per pair, ordered per key. */
static keel_status relay_row(struct keel_db_conn *c, const struct outbox_row *row)
{
    char unique[96], order[256];
    unsigned i;
    keel_status rc = KEEL_OK;

    for (i = 0; rc >= 0 && i < keel__jobs.nsubs; i++) {
        const struct keel_subscription *s = keel__jobs.subs[i];
        struct keel_job_opts o = {.unique_key = unique, .order_key = order};

        if (!row->topic || strcmp(s->topic, row->topic) != 0)
            continue;
        snprintf(unique, sizeof(unique), "outbox:%lld:%s", (long long)row->seq, s->kind);
        snprintf(order, sizeof(order), "%s:%s", s->kind, row->key ? row->key : "");
        rc = keel_jobs_enqueue(c, NULL, s->kind, row->payload, &o, NULL, NULL);
    }
    return rc;
}

static keel_status outbox_mark(struct keel_db_conn *c, const struct outbox_row *v, unsigned n)
{
    struct keel_buf b;
    char num[24];
    unsigned i;
    keel_status rc;

    keel_buf_init(&b, SIZE_MAX / 2);
    keel_buf_appends(&b, PG ? "{" : "[");
    for (i = 0; i < n; i++) {
        snprintf(num, sizeof(num), "%s%lld", i ? "," : "", (long long)v[i].seq);
        keel_buf_appends(&b, num);
    }
    keel_buf_appends(&b, PG ? "}" : "]");
    {
        struct keel_db_param p[] = {KEEL_DB_INT(keel_wall_ms() * 1000),
                                    KEEL_DB_TEXTN(b.data, b.len)};

        rc = keel_db_exec(c,
                          PG ? "UPDATE outbox SET published_us = $1 WHERE seq = ANY($2::bigint[])"
                             : "UPDATE outbox SET published_us = $1"
                               " WHERE seq IN (SELECT value FROM json_each($2))",
                          p, 2, NULL);
    }
    keel_buf_free(&b);
    return rc;
}

/* One relay at a time across processes (PostgreSQL: a transaction-level
 * advisory lock; SQLite: its one writer), so a key's messages become jobs
 * in the order they were taken. */
static keel_status relay_lock(struct keel_db_conn *c, bool *got)
{
    struct keel_db_rows *r;
    keel_status rc;

    *got = true;
    if (!PG)
        return KEEL_OK;
    rc = keel_db_query(c, "SELECT pg_try_advisory_xact_lock(74657001)", NULL, 0, &r);
    if (rc < 0)
        return rc;
    rc = keel_db_next(r);
    *got = rc == KEEL_OK && keel_db_bool(r, 0);
    keel_db_rows_free(r);
    return rc < 0 ? rc : KEEL_OK;
}

keel_status keel__jobs_relay(struct keel_db_conn *c, int64_t *n_out)
{
    struct outbox_row *v = NULL;
    unsigned n = 0, i;
    bool got;
    keel_status rc = relay_lock(c, &got);

    *n_out = 0;
    if (rc < 0 || !got)
        return rc;
    rc = outbox_take(c, &v, &n);
    for (i = 0; rc >= 0 && i < n; i++)
        rc = relay_row(c, &v[i]);
    if (rc >= 0 && n > 0)
        rc = outbox_mark(c, v, n);
    outbox_rows_free(v, n);
    if (rc >= 0)
        *n_out = n;
    return rc;
}

/* ------------------------------------------------------------- periodic */

static keel_status periodic_one(struct keel_db_conn *c, const struct keel_job_kind *k, int64_t now)
{
    struct keel_db_param ins[] = {KEEL_DB_TEXT(k->name), KEEL_DB_INT(now + k->period_ms)};
    struct keel_db_param up[] = {KEEL_DB_TEXT(k->name), KEEL_DB_INT(now + k->period_ms),
                                 KEEL_DB_INT(now)};
    char unique[96];
    struct keel_job_opts o = {.unique_key = unique};
    int64_t moved = 0;
    keel_status rc;

    rc = keel_db_exec(c,
                      "INSERT INTO job_periodic (name, next_ms) VALUES ($1, $2)"
                      " ON CONFLICT (name) DO NOTHING",
                      ins, 2, NULL);
    if (rc == KEEL_OK)
        rc = keel_db_exec(c,
                          "UPDATE job_periodic SET next_ms = $2 WHERE name = $1 AND next_ms <= $3",
                          up, 3, &moved);
    if (rc < 0 || moved == 0)
        return rc; /* not due, or another process took this period */
    snprintf(unique, sizeof(unique), "periodic:%s", k->name);
    return keel_jobs_enqueue(c, NULL, k->name, "{}", &o, NULL, NULL);
}

keel_status keel__jobs_periodic(struct keel_db_conn *c, int64_t now)
{
    unsigned i;
    keel_status rc = KEEL_OK;

    for (i = 0; rc >= 0 && i < keel__jobs.nkinds; i++)
        if (keel__jobs.kinds[i]->period_ms > 0)
            rc = periodic_one(c, keel__jobs.kinds[i], now);
    return rc;
}

/* --------------------------------------------------------------- gauges */

static const char *const gauge_states[] = {"available", "scheduled", "running", "retryable",
                                           "dead"};

static void gauge_row(const struct keel_db_rows *r, double *counts, double *oldest, int64_t now)
{
    size_t qlen, slen;
    const char *qn = keel_db_text(r, 0, &qlen), *st = keel_db_text(r, 1, &slen);
    unsigned i, s;

    for (i = 0; qn && st && i < keel__jobs.nqueues; i++) {
        if (strlen(keel__jobs.queues[i].name) != qlen ||
            memcmp(keel__jobs.queues[i].name, qn, qlen) != 0)
            continue;
        for (s = 0; s < KEEL_ARRAY_LEN(gauge_states); s++)
            if (strlen(gauge_states[s]) == slen && memcmp(gauge_states[s], st, slen) == 0)
                counts[i * KEEL_ARRAY_LEN(gauge_states) + s] = (double)keel_db_int64(r, 2);
        if (slen == 9 && memcmp(st, "available", 9) == 0 && !keel_db_is_null(r, 3))
            oldest[i] = (double)(now - keel_db_int64(r, 3)) / 1000.0;
    }
}

keel_status keel__jobs_gauges(struct keel_db_conn *c, int64_t now)
{
    struct keel_db_param p[] = {KEEL_DB_INT(now)};
    unsigned ns = KEEL_ARRAY_LEN(gauge_states), i, s;
    double *counts = keel_xcalloc(keel__jobs.nqueues * ns, sizeof(double));
    double *oldest = keel_xcalloc(keel__jobs.nqueues, sizeof(double));
    struct keel_db_rows *r;
    keel_status rc = keel_db_query(
        c,
        "SELECT queue, CASE WHEN state = 'available' AND run_at_ms > $1 THEN 'scheduled'"
        " ELSE state END AS st, COUNT(*), MIN(run_at_ms) FROM jobs"
        " WHERE state IN ('available', 'running', 'retryable', 'dead') GROUP BY 1, 2",
        p, 1, &r);

    if (rc == KEEL_OK) {
        while ((rc = keel_db_next(r)) == KEEL_OK)
            gauge_row(r, counts, oldest, now);
        keel_db_rows_free(r);
    }
    for (i = 0; rc >= 0 && i < keel__jobs.nqueues; i++) {
        for (s = 0; s < ns; s++)
            keel_metric_set(keel__jobs.m_depth,
                            (const char *const[]){keel__jobs.queues[i].name, gauge_states[s]},
                            counts[i * ns + s]);
        keel_metric_set(keel__jobs.m_oldest, (const char *const[]){keel__jobs.queues[i].name},
                        oldest[i]);
    }
    free(counts);
    free(oldest);
    return rc < 0 ? rc : KEEL_OK;
}
