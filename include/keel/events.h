/*
 * events.h - the event store, the transactional outbox and the event
 * metadata with its W3C trace context (issue 5; SPEC section 3 "Orders";
 * seed 000 "CQRS"; docs/internals/events.md).
 *
 * A stream is the history of one aggregate (an order): a UUID, a stream
 * type ("order") and its events, versioned 1, 2, 3... with no gap and no
 * duplicate. The table is append-only. UNIQUE (stream_id, version) is the
 * optimistic-concurrency check: an append names the version it expects the
 * stream to be at (the version its command loaded and decided on); two
 * writers that loaded the same version race on the constraint and the loser
 * gets KEEL_E_CONFLICT. It must then roll back and run its whole command
 * again from a fresh load (load, fold, decide, append), never just retry
 * the insert.
 *
 * The outbox holds messages for other processes (the jobs issue publishes
 * them). Writing the outbox row in the same transaction as the event means
 * a message exists exactly when its event committed.
 *
 * Threading: the keel_events_* and keel_outbox_* functions that take a
 * connection run on a storage-lane thread, inside the caller's transaction
 * (keel_db_transaction, or keel_db_run with KEEL_DB_WRITE), so the event,
 * the read model and the outbox row commit together or not at all.
 *
 * Layering: src/events sits above storage (keel/db.h) and below HTTP. It
 * knows nothing of requests: the caller reads the request id, the user
 * and the traceparent header and passes them in (struct keel_event_meta,
 * keel_trace_parse). docs/internals/events.md.
 */
#ifndef KEEL_EVENTS_H
#define KEEL_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/core.h"

struct keel_arena;
struct keel_db_conn;
struct keel_json;

/* One event. Strings are borrowed: for an append, from the caller for the
 * duration of the call; for a load or scan, from the result row for the
 * duration of the callback only. */
struct keel_event {
    int64_t seq;             /* global append order (loads only) */
    const char *stream_id;   /* a UUID, 36 characters */
    const char *stream_type; /* "order" */
    int64_t version;         /* 1, 2, ... within the stream */
    const char *type;        /* "OrderCreated" */
    const char *data;        /* a JSON object (the event's payload) */
    size_t data_len;
    const char *metadata; /* a JSON object: request_id, user_id, trace_id */
    size_t metadata_len;
    int64_t created_us; /* microseconds since the epoch */
};

/* Appends ev as version expected_version + 1 of its stream (expected 0: a
 * new stream). Sets ev->version; ev->created_us when it is 0. data and
 * metadata must be JSON objects (the caller wrote them; they are stored
 * as given). Returns KEEL_OK; KEEL_E_CONFLICT when the stream is not at
 * expected_version any more (another writer appended first: roll back
 * and run the command again); KEEL_E_INVALID for a malformed event; or a
 * storage error. In PostgreSQL a conflict aborts the transaction: nothing
 * but a rollback may follow it.
 * A new stream's first event is a deferred write (keel_db_exec_deferred):
 * its id is fresh (a UUIDv7 nobody else knows), and the one conflict it
 * can meet, the same id appended by another writer, comes back from the
 * next statement or the COMMIT as KEEL_E_CONFLICT. */
keel_status
keel_events_append(struct keel_db_conn *c, struct keel_event *ev, int64_t expected_version);

/* Called once per event; a negative return stops the iteration and is
 * returned. The callback must not run statements on the connection (the
 * result is still open). */
typedef keel_status (*keel_event_fn)(const struct keel_event *ev, void *arg);

/* Calls fn for every event of the stream, in version order. Returns
 * KEEL_OK (also for a stream with no events: *n_out = 0), fn's error, or a
 * storage error. n_out may be NULL. */
keel_status keel_events_load(
    struct keel_db_conn *c, const char *stream_id, keel_event_fn fn, void *arg, int64_t *n_out);

/* Calls fn for at most `limit` events of streams of `stream_type` with
 * seq > after_seq, in seq order (the order of the appends within each
 * stream; projection rebuilds page through the table with it). *n_out gets
 * the number of events visited. */
keel_status keel_events_scan(struct keel_db_conn *c,
                             const char *stream_type,
                             int64_t after_seq,
                             int64_t limit,
                             keel_event_fn fn,
                             void *arg,
                             int64_t *n_out);

/* Writes ev as the JSON object of the API and of outbox payloads:
 * {"stream_id", "version", "type", "data", "metadata", "created_at"}. */
void keel_events_json(struct keel_json *j, const struct keel_event *ev);

/* ----------------------------------------------------------- metadata */

/* Who and what caused an event. NULL members are written as null. */
struct keel_event_meta {
    const char *request_id; /* the request's id (X-Request-ID or generated) */
    const char *user_id;    /* the caller; NULL when anonymous */
    const char *trace_id;   /* the W3C trace-id (keel_trace_parse); NULL when none */
};

/* Writes m as an event's metadata, the JSON object {"request_id",
 * "user_id", "trace_id"}, NUL-terminated in arena a (freed with it).
 * Returns NULL when a is exhausted or the object would pass 1 KiB. Any
 * thread (the arena's). */
const char *keel_events_metadata(struct keel_arena *a, const struct keel_event_meta *m);

/* A W3C Trace Context traceparent (level 1):
 * version "-" trace-id "-" parent-id "-" trace-flags, 2-32-16-2 hex. */
struct keel_trace_context {
    char trace_id[33];  /* 32 lowercase hex digits, not all zero */
    char parent_id[17]; /* 16 lowercase hex digits, not all zero */
    uint8_t flags;      /* trace-flags (bit 0: sampled) */
};

/* Parses the value of one traceparent header (len bytes, no NUL needed)
 * into *out. Valid: version 00..fe in lowercase hex; lowercase hex ids,
 * neither all zeros; a version after 00 may append "-..." after the
 * flags, version 00 may not. Returns false (and *out all zeros, empty
 * strings) for anything else. The caller decides what a missing or
 * repeated header means. Pure; any thread. */
bool keel_trace_parse(const char *traceparent, size_t len, struct keel_trace_context *out);

/* ------------------------------------------------------------- outbox */

/* Registers fn to run (on the committing thread; cheap, non-blocking)
 * after every commit that wrote outbox rows: the job engine's relay wakes
 * from it. NULL clears it. */
void keel_outbox_on_commit(void (*fn)(void));

/* Adds a message to the outbox: `topic` ("orders"), `key` (the stream id:
 * consumers keep per-key order), `payload` (JSON text, len bytes). A
 * deferred write (keel_db_exec_deferred): inside a transaction only; its
 * failure comes back from the next statement or the COMMIT. The commit
 * wakes the relay (keel_outbox_on_commit here, NOTIFY keel_outbox on
 * PostgreSQL). */
keel_status keel_outbox_put(
    struct keel_db_conn *c, const char *topic, const char *key, const char *payload, size_t len);

#endif
