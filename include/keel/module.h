/*
 * module.h - a Keel module (STYLE.md section 1; nginx ngx_module_t): a name
 * and, as data, everything it adds to the process: routes, middleware,
 * readiness checks, metric families, subcommands, job kinds and event
 * subscriptions. Modules are listed in one static registry,
 * src/modules/registry.c; docs/architecture.md "How to add a module" is
 * the recipe.
 *
 * Boundaries: a module's files live in src/modules/<name>/; its private
 * header (<name>_int.h) is included by those files only. What other
 * modules and commands may call is its public header,
 * include/keel/<name>.h (catalog.h, auth.h, ...). tools/check_includes.py
 * (run by make test) keeps it so.
 */
#ifndef KEEL_MODULE_H
#define KEEL_MODULE_H

#include "keel/health.h"
#include "keel/http.h"

struct keel_config;
struct keel_metric;
struct keel_router;

/* A subcommand of the keel binary (`keel seed ...`): main.c lists the
 * built-in ones and those of every module. run gets the arguments after
 * the name and returns the exit code (KEEL_EXIT_*). */
struct keel_command {
    const char *name;
    const char *summary; /* one line for `keel --help` */
    int (*run)(int argc, char **argv);
};

/* A readiness check the module owns (GET /health/ready; keel/health.h):
 * registered when the module starts. */
struct keel_module_check {
    const char *name;
    keel_health_fn fn; /* called with arg NULL */
    bool critical;
};

enum keel_metric_kind {
    KEEL_METRIC_COUNTER,
    KEEL_METRIC_GAUGE,
    KEEL_METRIC_HISTOGRAM,
};

/* A metric family the module owns (keel/metrics.h), created when the
 * module starts, before its init runs: *out receives it. Histograms
 * without bounds use keel_metric_latency_buckets. */
struct keel_metric_def {
    enum keel_metric_kind kind;
    const char *name;
    const char *help;
    unsigned nlabels;
    const char *const *labels;
    const double *bounds;
    unsigned nbounds;
    struct keel_metric **out;
};

/* The job engine's (include/keel/jobs.h): a job kind the module handles,
 * and an outbox topic it subscribes a job kind to. */
struct keel_job_kind;
struct keel_subscription;

struct keel_module {
    const char *name;
    /* Whether the module runs with this configuration (NULL: always). */
    bool (*enabled)(const struct keel_config *cfg);
    /* Once at start on the main thread, before the loops run, after the
     * module's metric families exist (NULL: none). */
    keel_status (*init)(const struct keel_config *cfg);
    void (*fini)(void);

    const struct keel_route *routes;
    size_t nroutes;
    /* Middleware it contributes; each says its phase and its place in
     * the order (struct keel_middleware, KEEL_MW_ORDER_*). */
    const struct keel_middleware *const *middleware;
    size_t nmiddleware;
    const struct keel_module_check *checks;
    size_t nchecks;
    const struct keel_metric_def *metrics;
    size_t nmetrics;
    /* Subcommands: available whether or not the module is enabled for
     * serving (they load their own configuration). */
    const struct keel_command *commands;
    size_t ncommands;
    const struct keel_job_kind *const *jobs;
    size_t njobs;
    const struct keel_subscription *const *subscriptions;
    size_t nsubscriptions;
};

extern const struct keel_module *const keel_modules[];
extern const unsigned keel_nmodules;

/* Starts the enabled modules in registry order: creates their metric
 * families, calls init, registers their checks and adds their routes to
 * the router (router NULL: no routes; keel_modules_mount adds some).
 * Logs and returns the first failure. */
keel_status keel_modules_start(const struct keel_config *cfg, struct keel_router *router);
/* Calls fini of the started modules, in reverse order. */
void keel_modules_stop(void);

/* The middleware of the started modules, in registry order, for
 * keel_pipeline_init: writes up to max pointers into out and returns how
 * many there are, so a result above max says that some did not fit. */
unsigned keel_modules_middleware(const struct keel_middleware **out, unsigned max);

/* The job kinds and outbox subscriptions of the started modules, for
 * keel_jobs_init: as keel_modules_middleware. */
unsigned keel_modules_jobs(const struct keel_job_kind **out, unsigned max);
unsigned keel_modules_subscriptions(const struct keel_subscription **out, unsigned max);

/* Adds the routes of the started module `name` to router (a worker's
 * health and metrics listener). KEEL_E_NOT_FOUND when none is started. */
keel_status keel_modules_mount(struct keel_router *router, const char *name);

/* The subcommand `name` of any module (enabled or not), or NULL. */
const struct keel_command *keel_modules_command(const char *name);
/* Calls fn for every module subcommand, in registry order (for help). */
void keel_modules_each_command(void (*fn)(const struct keel_command *c, void *arg), void *arg);

#endif
