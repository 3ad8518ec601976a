/*
 * serve.c - `keel serve`: the process start-up of app.c, the HTTP server
 * and, unless KEEL_INPROCESS_WORKERS=false, the job workers, on the loop
 * runtime until it is told to stop.
 */
#include <stdio.h>

#include "keel/cmd.h"
#include "keel/commands.h"
#include "keel/jobs.h"
#include "keel/runtime.h"
#include "keel/server.h"

#include "cmd_int.h"

static void serve_help(FILE *f)
{
    fprintf(
        f,
        "Usage: keel serve [OPTIONS]\n\n"
        "Runs the API server. Every option is also read from its environment variable\n"
        "and from the INI file given with --config (flags > environment > file > defaults).\n\n");
    keel_config_print_help(f);
}

int keel_cmd_serve(int argc, char **argv)
{
    struct keel_config_extra extra[] = {
        {.flag = "--help", .help = "show this help"},
        {.flag = "-h", .help = "show this help"},
        {.flag = "--migrate",
         .help = "apply pending migrations at start (needed outside development)"},
    };
    struct keel_app app = {0};
    bool proceed;
    int code;
    keel_status rc;

    code = keel_cmd_start(&app.cfg, argc, argv, extra, KEEL_ARRAY_LEN(extra), serve_help, &proceed);
    if (!proceed)
        return code;
    rc = keel__app_start(&app, extra[2].set, true);
    if (rc == KEEL_OK && app.cfg.inprocess_workers)
        rc = keel_jobs_add_service(NULL);
    if (rc == KEEL_OK)
        rc = keel_server_add(&app.cfg, app.router);
    if (rc == KEEL_OK)
        rc = keel_runtime_run(&app.cfg);
    return keel__app_stop(&app, rc);
}
