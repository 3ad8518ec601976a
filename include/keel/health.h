/*
 * health.h - the registry of named readiness checks behind
 * GET /health/ready (seed 002 section 13; src/obs/health.c). Subsystems
 * (database, Redis, queues) register their checks at start, modules
 * through their .checks table (keel/module.h); the health module
 * (src/modules/health/) runs them.
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

/* The number of registered checks. */
unsigned keel_health_count(void);

/* Runs every check in registration order on the calling thread (a pool
 * thread: checks may block) and writes one JSON object to j, with a
 * member per check: the fields the check added, "status" ("ok"; "error"
 * for a failing critical check, "degraded" for a failing non-critical
 * one) and "latency" in milliseconds. Sets *failed when a critical check
 * failed and *degraded when a non-critical one did, and leaves them as
 * they were otherwise. */
void keel_health_run(struct keel_json *j, bool *failed, bool *degraded);

#endif
