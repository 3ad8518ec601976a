/*
 * app.c - what `keel serve` and `keel worker` start and stop alike: the
 * configuration's log lines, the thread pool, storage (with migrations),
 * Redis, the cache, the modules, the job engine with the modules' job
 * kinds, and the middleware pipeline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "keel/cache.h"
#include "keel/db.h"
#include "keel/jobs.h"
#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/migrate.h"
#include "keel/module.h"
#include "keel/pipeline.h"
#include "keel/redis.h"
#include "keel/router.h"
#include "keel/runtime.h"

#include "cmd_int.h"
#include "keel_commit.h"
#include "keel_version.h"

#define MAX_KINDS 64
#define MAX_SUBS  64

/* Sizes libuv's thread pool for blocking work unless the operator did; it
 * must happen before the pool's first use. Request storage work runs on the
 * storage lane (keel/lane.h), but readiness checks and the cache's
 * invalidation NOTIFY run here and each may hold a connection, so the pool gets a thread per
 * connection of every database pool, plus room for the rest (password hashing), so that a hung
 * database cannot take the threads the readiness probe needs to say so. Idle threads cost nothing:
 * libuv wakes one per job. */
static void size_thread_pool(const struct keel_config *cfg)
{
    unsigned n = cfg->database_pool_size * (1 + (unsigned)cfg->database_replicas.count) + 4;
    char text[16];

    if (getenv("UV_THREADPOOL_SIZE"))
        return;
    if (n < cfg->threads * 4)
        n = cfg->threads * 4;
    if (n > 1024) /* libuv's own maximum */
        n = 1024;
    snprintf(text, sizeof(text), "%u", n < 8 ? 8 : n);
    setenv("UV_THREADPOOL_SIZE", text, 1);
}

static void log_config(const struct keel_config *cfg)
{
    struct keel_buf b;

    keel_buf_init(&b, 64 * 1024);
    if (keel_config_to_json(cfg, &b) == KEEL_OK)
        keel_log(KEEL_LOG_INFO, "config", KEEL_LF_JSON("config", b.data));
    keel_buf_free(&b);
}

/* Opens the database and brings its schema up to date: applied at start in
 * development; elsewhere pending migrations stop the start unless
 * --migrate says to apply them (SPEC section 1). */
static keel_status open_storage(const struct keel_config *cfg, bool migrate, struct keel_db **db)
{
    unsigned pending = 0, applied = 0;
    keel_status rc = keel_db_open(cfg, db);

    if (rc < 0)
        return rc;
    rc = keel_migrate_pending(*db, &pending);
    if (rc == KEEL_OK && pending > 0) {
        if (cfg->env == KEEL_ENV_DEVELOPMENT || migrate) {
            rc = keel_migrate_up(*db, &applied);
        } else {
            keel_log(KEEL_LOG_ERROR,
                     "migrations pending: run 'keel migrate up' or start with --migrate",
                     KEEL_LF_INT("pending", pending));
            rc = KEEL_E_UNAVAILABLE;
        }
    }
    if (rc < 0) {
        if (rc == KEEL_E_CONFLICT)
            keel_log(KEEL_LOG_ERROR,
                     "schema refused: an applied migration differs from this binary's "
                     "(see 'keel migrate status')");
        return rc;
    }
    keel_db_set_default(*db);
    return KEEL_OK;
}

/* The middleware pipeline: the core list and the started modules'. */
static keel_status start_pipeline(void)
{
    const struct keel_middleware *mw[KEEL_PIPELINE_MAX_MIDDLEWARE];
    unsigned n = keel_modules_middleware(mw, KEEL_ARRAY_LEN(mw));

    if (n > KEEL_ARRAY_LEN(mw)) {
        keel_log(KEEL_LOG_ERROR, "too many middleware", KEEL_LF_INT("count", n),
                 KEEL_LF_INT("max", KEEL_ARRAY_LEN(mw)));
        return KEEL_E_TOO_LARGE;
    }
    return keel_pipeline_init(mw, n);
}

/* The job kinds and subscriptions of the started modules. */
static keel_status start_jobs(struct keel_app *app)
{
    unsigned nk = keel_modules_jobs(app->kinds, MAX_KINDS);
    unsigned ns = keel_modules_subscriptions(app->subs, MAX_SUBS);

    if (nk > MAX_KINDS || ns > MAX_SUBS) {
        keel_log(KEEL_LOG_ERROR, "too many job kinds or subscriptions", KEEL_LF_INT("kinds", nk),
                 KEEL_LF_INT("subscriptions", ns));
        return KEEL_E_TOO_LARGE;
    }
    return keel_jobs_init(&app->cfg, app->db, app->kinds, nk, app->subs, ns);
}

keel_status keel__app_start(struct keel_app *app, bool migrate, bool routes)
{
    keel_status rc;

    keel_log(KEEL_LOG_INFO, "start", KEEL_LF_STR("version", KEEL_VERSION),
             KEEL_LF_STR("commit", KEEL_COMMIT), KEEL_LF_INT("pid", getpid()),
             KEEL_LF_STR("env", keel_config_env_name(app->cfg.env)));
    log_config(&app->cfg);
    size_thread_pool(&app->cfg);
    keel_metrics_set_build_info(KEEL_VERSION, KEEL_COMMIT);
    app->router = keel_router_new();
    rc = open_storage(&app->cfg, migrate, &app->db);
    if (rc == KEEL_OK)
        rc = keel_redis_init(&app->cfg);
    if (rc == KEEL_OK)
        rc = keel_runtime_on_loop_close(keel_redis_loop_close);
    if (rc == KEEL_OK)
        rc = keel_cache_init(&app->cfg, app->db);
    if (rc == KEEL_OK)
        rc = keel_modules_start(&app->cfg, routes ? app->router : NULL);
    if (rc == KEEL_OK)
        rc = start_jobs(app);
    if (rc == KEEL_OK)
        rc = start_pipeline();
    return rc;
}

int keel__app_stop(struct keel_app *app, keel_status rc)
{
    keel_modules_stop();
    keel_jobs_shutdown();
    keel_cache_shutdown();
    keel_router_free(app->router);
    keel_redis_shutdown();
    keel_db_set_default(NULL);
    keel_db_close(app->db);
    keel_log(KEEL_LOG_INFO, "exit", KEEL_LF_INT("code", rc == KEEL_OK ? 0 : 1));
    keel_config_free(&app->cfg);
    keel_metrics_reset_for_tests();
    return rc == KEEL_OK ? KEEL_EXIT_OK : KEEL_EXIT_FAILURE;
}
