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

#endif
