/*
 * worker.c - `keel worker [--queues a,b]`: the job workers alone, for
 * scaled deployments (SPEC section 1): the process start-up of app.c
 * without the API's routes, the job engine's service on the loop runtime,
 * and, when KEEL_WORKER_LISTEN is set, a listener that serves only
 * /health/... and /metrics. SIGTERM drains it like the server
 * (docs/internals/jobs.md "Shutdown").
 */
#include <stdio.h>
#include <string.h>

#include "keel/cmd.h"
#include "keel/commands.h"
#include "keel/jobs.h"
#include "keel/log.h"
#include "keel/module.h"
#include "keel/runtime.h"
#include "keel/server.h"

#include "cmd_int.h"

static void worker_help(FILE *f)
{
    fprintf(f, "Usage: keel worker [--queues a,b] [OPTIONS]\n\n"
               "Runs job workers only (every queue, or those listed), with an optional\n"
               "/health and /metrics listener (KEEL_WORKER_LISTEN). Every option is also read\n"
               "from its environment variable and from the INI file given with --config.\n\n");
    keel_config_print_help(f);
}

/* The worker's own listener: health and metrics, nothing of the API. The
 * server keeps a pointer to its configuration, hence the copy in *http. */
static keel_status add_listener(struct keel_app *app, struct keel_config *http)
{
    keel_status rc;

    if (!app->cfg.worker_listen.host)
        return KEEL_OK;
    *http = app->cfg;
    http->listen = app->cfg.worker_listen;
    rc = keel_modules_mount(app->router, "health");
    if (rc == KEEL_OK)
        rc = keel_modules_mount(app->router, "metrics");
    return rc == KEEL_OK ? keel_server_add(http, app->router) : rc;
}

int keel_cmd_worker(int argc, char **argv)
{
    struct keel_config_extra extra[] = {
        {.flag = "--help", .help = "show this help"},
        {.flag = "-h", .help = "show this help"},
        {.flag = "--queues",
         .has_value = true,
         .help = "comma-separated queues to work (default: all)"},
    };
    struct keel_app app = {0};
    struct keel_config http;
    bool proceed;
    int code;
    keel_status rc;

    code =
        keel_cmd_start(&app.cfg, argc, argv, extra, KEEL_ARRAY_LEN(extra), worker_help, &proceed);
    if (!proceed)
        return code;
    rc = keel__app_start(&app, false, false);
    if (rc == KEEL_OK) {
        rc = keel_jobs_add_service(extra[2].set ? extra[2].value : NULL);
        if (rc == KEEL_E_INVALID)
            keel_log(KEEL_LOG_ERROR, "worker: unknown queue in --queues",
                     KEEL_LF_STR("queues", extra[2].value));
    }
    if (rc == KEEL_OK)
        rc = add_listener(&app, &http);
    if (rc == KEEL_OK) {
        keel_log(KEEL_LOG_INFO, "working",
                 KEEL_LF_STR("queues", extra[2].set ? extra[2].value : "all"),
                 KEEL_LF_INT("threads", app.cfg.threads));
        rc = keel_runtime_run(&app.cfg);
    }
    return keel__app_stop(&app, rc);
}
