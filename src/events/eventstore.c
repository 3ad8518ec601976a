/*
 * eventstore.c - the event store: appends with an expected version, stream
 * loads and scans, and the JSON forms of an event and of its metadata
 * (include/keel/events.h; docs/internals/events.md). The outbox is in
 * outbox.c, the traceparent parser in trace.c.
 *
 * DESIGN: an append is one INSERT ... SELECT guarded by the stream's
 * current version:
 *
 *     INSERT INTO events (...) SELECT ... WHERE
 *         (SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = $1) = expected
 *
 * The guard refuses an append whose expected version is stale or ahead
 * (no gap can be written); the UNIQUE (stream_id, version) constraint
 * settles the race the guard cannot see, two transactions that both read
 * `expected` before either committed: PostgreSQL makes the second insert
 * wait for the first and then fail with a unique violation, which the
 * driver reports as KEEL_E_CONFLICT. SQLite write transactions are
 * serialized (BEGIN IMMEDIATE and the storage core's writer mutex), so the
 * guard alone decides there. Either way the loser learns it with
 * KEEL_E_CONFLICT and runs its command again.
 *
 * Events are never updated or deleted; nothing in Keel has SQL that
 * would.
 */
#include <string.h>
#include <time.h>

#include "keel/arena.h"
#include "keel/db.h"
#include "keel/events.h"
#include "keel/json.h"
#include "keel/uuid.h"

#include "events_int.h"

#define EVENT_COLS "seq, stream_id, stream_type, version, type, data, metadata, created_us"

int64_t keel__events_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------ append */

keel_status
keel_events_append(struct keel_db_conn *c, struct keel_event *ev, int64_t expected_version)
{
    int64_t n = 0;
    keel_status rc;

    if (!ev->stream_id || !keel_uuid_valid(ev->stream_id, strlen(ev->stream_id)) ||
        !ev->stream_type || !ev->type || !ev->data || !ev->metadata || expected_version < 0)
        return KEEL_E_INVALID;
    ev->version = expected_version + 1;
    if (!ev->created_us)
        ev->created_us = keel__events_now_us();
    if (expected_version == 0) {
        /* Version 1 needs no guard: UNIQUE (stream_id, version) refuses
         * it when the stream exists, and no gap can come before it. */
        struct keel_db_param p[] = {
            KEEL_DB_UUID(ev->stream_id),
            KEEL_DB_TEXT(ev->stream_type),
            KEEL_DB_TEXT(ev->type),
            KEEL_DB_TEXTN(ev->data, ev->data_len ? ev->data_len : strlen(ev->data)),
            KEEL_DB_TEXTN(ev->metadata, ev->metadata_len ? ev->metadata_len : strlen(ev->metadata)),
            KEEL_DB_INT(ev->created_us),
        };

        return keel_db_exec_deferred(c,
                                     "INSERT INTO events (stream_id, stream_type, version, type,"
                                     " data, metadata, created_us)"
                                     " VALUES ($1, $2, 1, $3, $4, $5, $6)",
                                     p, KEEL_ARRAY_LEN(p));
    }
    {
        struct keel_db_param p[] = {
            KEEL_DB_UUID(ev->stream_id),
            KEEL_DB_TEXT(ev->stream_type),
            KEEL_DB_INT(ev->version),
            KEEL_DB_TEXT(ev->type),
            KEEL_DB_TEXTN(ev->data, ev->data_len ? ev->data_len : strlen(ev->data)),
            KEEL_DB_TEXTN(ev->metadata, ev->metadata_len ? ev->metadata_len : strlen(ev->metadata)),
            KEEL_DB_INT(ev->created_us),
            KEEL_DB_INT(expected_version),
        };

        rc = keel_db_exec(c,
                          "INSERT INTO events (stream_id, stream_type, version, type, data,"
                          " metadata, created_us) SELECT $1, $2, $3, $4, $5, $6, $7"
                          " WHERE (SELECT COALESCE(MAX(version), 0) FROM events"
                          " WHERE stream_id = $1) = $8",
                          p, KEEL_ARRAY_LEN(p), &n);
    }
    if (rc < 0)
        return rc;
    return n == 1 ? KEEL_OK : KEEL_E_CONFLICT;
}

/* -------------------------------------------------------------- read */

/* Fills ev from the current row (EVENT_COLS order) and calls fn. */
static keel_status visit(struct keel_db_rows *r, keel_event_fn fn, void *arg)
{
    char stream_id[KEEL_UUID_STRLEN + 1];
    struct keel_event ev = {0};

    if (!keel_db_uuid(r, 1, stream_id))
        return KEEL_E_DB;
    ev.seq = keel_db_int64(r, 0);
    ev.stream_id = stream_id;
    ev.stream_type = keel_db_text(r, 2, NULL);
    ev.version = keel_db_int64(r, 3);
    ev.type = keel_db_text(r, 4, NULL);
    ev.data = keel_db_text(r, 5, &ev.data_len);
    ev.metadata = keel_db_text(r, 6, &ev.metadata_len);
    ev.created_us = keel_db_int64(r, 7);
    if (!ev.stream_type || !ev.type || !ev.data || !ev.metadata)
        return KEEL_E_DB;
    return fn(&ev, arg);
}

static keel_status each_row(struct keel_db_rows *r, keel_event_fn fn, void *arg, int64_t *n_out)
{
    int64_t n = 0;
    keel_status rc;

    while ((rc = keel_db_next(r)) == KEEL_OK) {
        n++;
        rc = visit(r, fn, arg);
        if (rc < 0)
            break;
    }
    keel_db_rows_free(r);
    if (n_out)
        *n_out = n;
    if (rc == KEEL_DONE)
        return KEEL_OK;
    return rc < 0 ? rc : KEEL_E_DB;
}

keel_status keel_events_load(
    struct keel_db_conn *c, const char *stream_id, keel_event_fn fn, void *arg, int64_t *n_out)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(stream_id)};
    struct keel_db_rows *r;
    keel_status rc;

    if (n_out)
        *n_out = 0;
    rc = keel_db_query(c, "SELECT " EVENT_COLS " FROM events WHERE stream_id = $1 ORDER BY version",
                       p, 1, &r);
    return rc < 0 ? rc : each_row(r, fn, arg, n_out);
}

keel_status keel_events_scan(struct keel_db_conn *c,
                             const char *stream_type,
                             int64_t after_seq,
                             int64_t limit,
                             keel_event_fn fn,
                             void *arg,
                             int64_t *n_out)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(stream_type), KEEL_DB_INT(after_seq),
                                KEEL_DB_INT(limit)};
    struct keel_db_rows *r;
    keel_status rc;

    if (n_out)
        *n_out = 0;
    rc = keel_db_query(c,
                       "SELECT " EVENT_COLS " FROM events WHERE stream_type = $1 AND seq > $2"
                       " ORDER BY seq LIMIT $3",
                       p, KEEL_ARRAY_LEN(p), &r);
    return rc < 0 ? rc : each_row(r, fn, arg, n_out);
}

void keel_events_json(struct keel_json *j, const struct keel_event *ev)
{
    char t[KEEL_TIME_STRLEN];

    keel_json_obj_open(j);
    keel_json_key(j, "stream_id");
    keel_json_str(j, ev->stream_id);
    keel_json_key(j, "version");
    keel_json_int(j, ev->version);
    keel_json_key(j, "type");
    keel_json_str(j, ev->type);
    /* Both were written by Keel's JSON writer when the event was appended. */
    keel_json_key(j, "data");
    keel_json_raw(j, ev->data, ev->data_len ? ev->data_len : strlen(ev->data));
    keel_json_key(j, "metadata");
    keel_json_raw(j, ev->metadata, ev->metadata_len ? ev->metadata_len : strlen(ev->metadata));
    keel_json_key(j, "created_at");
    keel_time_format(ev->created_us, t);
    keel_json_str(j, t);
    keel_json_obj_close(j);
}

/* ---------------------------------------------------------- metadata */

static void str_or_null(struct keel_json *j, const char *key, const char *s)
{
    keel_json_key(j, key);
    if (s)
        keel_json_str(j, s);
    else
        keel_json_null(j);
}

const char *keel_events_metadata(struct keel_arena *a, const struct keel_event_meta *m)
{
    struct keel_buf b;
    struct keel_json j;
    const char *out = NULL;

    keel_buf_init(&b, 1024);
    keel_json_begin(&j, &b);
    keel_json_obj_open(&j);
    str_or_null(&j, "request_id", m->request_id);
    str_or_null(&j, "user_id", m->user_id);
    str_or_null(&j, "trace_id", m->trace_id);
    keel_json_obj_close(&j);
    if (keel_json_end(&j) == KEEL_OK)
        out = keel_arena_strndup(a, b.data, b.len);
    keel_buf_free(&b);
    return out;
}
