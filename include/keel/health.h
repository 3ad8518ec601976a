/*
 * health.h - the registry of named readiness checks behind
 * GET /health/ready (seed 002 section 13). Later subsystems (database,
 * Redis, queues) register their checks at start.
 */
#ifndef KEEL_HEALTH_H
#define KEEL_HEALTH_H

#include <stdbool.h>

#include "keel/core.h"

struct keel_json;

/* A check runs on a thread-pool thread (it may block, with its own
 * timeout). It returns KEEL_OK when healthy; it may add fields to the
 * check's JSON object through j (e.g. "pendingJobs"). */
typedef keel_status (*keel_health_fn)(void *arg, struct keel_json *j);

/* Registers a check at start, before the loops run. A failing critical
 * check makes readiness 503; a failing non-critical one shows as
 * "degraded" with 200. At most 16 checks. */
keel_status keel_health_register(const char *name, keel_health_fn fn, void *arg, bool critical);

#endif
