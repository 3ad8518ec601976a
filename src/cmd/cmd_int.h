/*
 * cmd_int.h - what the built-in subcommands share (src/cmd/): the process
 * start-up and shut-down of `keel serve` and `keel worker` (app.c).
 */
#ifndef KEEL_CMD_INT_H
#define KEEL_CMD_INT_H

#include <stdbool.h>

#include "keel/config.h"
#include "keel/core.h"

struct keel_db;
struct keel_job_kind;
struct keel_router;
struct keel_subscription;

struct keel_app {
    struct keel_config cfg; /* loaded by keel_cmd_start */
    struct keel_db *db;
    struct keel_router *router;
    const struct keel_job_kind *kinds[64];
    const struct keel_subscription *subs[64];
};

/* Logs the start, opens storage (migrating as `keel serve` does), Redis
 * and the cache, starts the modules (their routes into app->router when
 * `routes`), the job engine and the pipeline. Main thread. */
keel_status keel__app_start(struct keel_app *app, bool migrate, bool routes);

/* Stops what keel__app_start started (also after a failed start), logs the
 * exit, frees the configuration, and returns the exit code for rc. */
int keel__app_stop(struct keel_app *app, keel_status rc);

#endif
