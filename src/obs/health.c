/*
 * health.c - the registry of readiness checks (keel/health.h) and their
 * run, for GET /health/ready (src/modules/health/health.c).
 *
 * DESIGN: the registry sits in the observability layer, below everything
 * that registers a check (the database and Redis at start, modules through
 * their .checks table), so that infrastructure never depends on the module
 * that serves the endpoints. Checks are registered on the main thread
 * before the loops run and never removed, so the run reads the table
 * without a lock.
 */
#include "keel/health.h"

#include <stdio.h>

#include "keel/json.h"

#define MAX_CHECKS 16

struct check {
    const char *name;
    keel_health_fn fn;
    void *arg;
    bool critical;
};

static struct check checks[MAX_CHECKS];
static unsigned nchecks;

keel_status keel_health_register(const char *name, keel_health_fn fn, void *arg, bool critical)
{
    if (nchecks == MAX_CHECKS)
        return KEEL_E_TOO_LARGE;
    checks[nchecks++] = (struct check){name, fn, arg, critical};
    return KEEL_OK;
}

unsigned keel_health_count(void)
{
    return nchecks;
}

/* Runs check c into its own object of j; returns its status. */
static keel_status run_one(const struct check *c, struct keel_json *j)
{
    uint64_t t0 = keel_now_ns();
    keel_status rc;
    char ms[32];
    int n;

    keel_json_key(j, c->name);
    keel_json_obj_open(j);
    rc = c->fn(c->arg, j);
    keel_json_key(j, "status");
    keel_json_str(j, rc == KEEL_OK ? "ok" : c->critical ? "error" : "degraded");
    n = snprintf(ms, sizeof(ms), "%.2f", (double)(keel_now_ns() - t0) / 1e6);
    keel_json_key(j, "latency"); /* milliseconds, as seed 002 shows */
    keel_json_raw(j, ms, (size_t)n);
    keel_json_obj_close(j);
    return rc;
}

void keel_health_run(struct keel_json *j, bool *failed, bool *degraded)
{
    unsigned i;

    keel_json_obj_open(j);
    for (i = 0; i < nchecks; i++) {
        if (run_one(&checks[i], j) == KEEL_OK)
            continue;
        if (checks[i].critical)
            *failed = true;
        else
            *degraded = true;
    }
    keel_json_obj_close(j);
}
