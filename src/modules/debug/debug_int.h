/*
 * debug_int.h - what the files of the debug module (test-only routes,
 * KEEL_DEBUG_ROUTES=1) share.
 */
#ifndef KEEL_DEBUG_INT_H
#define KEEL_DEBUG_INT_H

#include "keel/http.h"

/* PUT /debug/sink and /debug/sink/private: a streamed body
 * (KEEL_BODY_STREAM) counted and hashed as it arrives, with the sink busy
 * for a moment after every MiB (backpressure); answers {bytes, sha256}. */
extern const struct keel_body_sink debug_sink;
keel_status debug_sink_done(struct keel_request *req);

/* jobs.c: test job kinds, their table, the enqueue and runs routes. */
struct keel_db_conn;
struct keel_job_kind;
struct keel_subscription;
#define DEBUG_NJOB_KINDS     7
#define DEBUG_NSUBSCRIPTIONS 1
extern const struct keel_job_kind *const debug_job_kinds[DEBUG_NJOB_KINDS];
extern const struct keel_subscription *const debug_subscriptions[DEBUG_NSUBSCRIPTIONS];
keel_status debug_jobs_schema(struct keel_db_conn *c);
keel_status debug_jobs_enqueue(struct keel_request *req);
keel_status debug_jobs_runs(struct keel_request *req);

#endif
