/*
 * registry.c - the static list of modules, their start and stop, and
 * what they declare for the rest of the process: middleware for the
 * pipeline and subcommands for main.c (keel/module.h).
 *
 * DESIGN: a module states what it adds as data, and this file is the only
 * place that turns that data into effects, in one fixed order per module:
 * metric families (so init may use them), init, readiness checks, routes.
 * A module is "running" once its init succeeded; only running modules are
 * stopped and contribute middleware. Subcommands are looked up in every
 * module, enabled or not, because a command loads its own configuration.
 */
#include <string.h>

#include "keel/health.h"
#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/module.h"
#include "keel/router.h"

extern const struct keel_module keel_module_health;
extern const struct keel_module keel_module_metrics;
extern const struct keel_module keel_module_auth;
extern const struct keel_module keel_module_catalog;
extern const struct keel_module keel_module_orders;
extern const struct keel_module keel_module_debug;

const struct keel_module *const keel_modules[] = {
    &keel_module_health,  &keel_module_metrics, &keel_module_auth,
    &keel_module_catalog, &keel_module_orders,  &keel_module_debug,
};

const unsigned keel_nmodules = KEEL_ARRAY_LEN(keel_modules);

/* Modules 0..started-1 were looked at; running[i]: module i's init
 * succeeded and its fini is due. */
static unsigned started;
static bool running[KEEL_ARRAY_LEN(keel_modules)];

/* ------------------------------------------------------------- start */

static struct keel_metric *create_metric(const struct keel_metric_def *d)
{
    switch (d->kind) {
    case KEEL_METRIC_COUNTER:
        return keel_metric_counter(d->name, d->help, d->nlabels, d->labels);
    case KEEL_METRIC_GAUGE:
        return keel_metric_gauge(d->name, d->help, d->nlabels, d->labels);
    case KEEL_METRIC_HISTOGRAM:
        if (!d->bounds)
            return keel_metric_histogram(d->name, d->help, d->nlabels, d->labels,
                                         keel_metric_latency_buckets, KEEL_METRIC_LATENCY_NBUCKETS);
        return keel_metric_histogram(d->name, d->help, d->nlabels, d->labels, d->bounds,
                                     d->nbounds);
    }
    return NULL;
}

/* Creates m's metric families. The registry logs why it refused one;
 * here the module is named. */
static keel_status create_metrics(const struct keel_module *m)
{
    size_t i;

    for (i = 0; i < m->nmetrics; i++) {
        *m->metrics[i].out = create_metric(&m->metrics[i]);
        if (!*m->metrics[i].out) {
            keel_log(KEEL_LOG_ERROR, "bad metric", KEEL_LF_STR("module", m->name),
                     KEEL_LF_STR("metric", m->metrics[i].name));
            return KEEL_E_INVALID;
        }
    }
    return KEEL_OK;
}

static keel_status call_init(const struct keel_module *m, const struct keel_config *cfg)
{
    keel_status rc;

    if (!m->init)
        return KEEL_OK;
    rc = m->init(cfg);
    if (rc < 0)
        keel_log(KEEL_LOG_ERROR, "module init failed", KEEL_LF_STR("module", m->name),
                 KEEL_LF_STR("error", keel_strerror(rc)));
    return rc;
}

static keel_status register_checks(const struct keel_module *m)
{
    keel_status rc;
    size_t i;

    for (i = 0; i < m->nchecks; i++) {
        const struct keel_module_check *c = &m->checks[i];

        rc = keel_health_register(c->name, c->fn, NULL, c->critical);
        if (rc < 0) {
            keel_log(KEEL_LOG_ERROR, "readiness check refused", KEEL_LF_STR("module", m->name),
                     KEEL_LF_STR("check", c->name), KEEL_LF_STR("error", keel_strerror(rc)));
            return rc;
        }
    }
    return KEEL_OK;
}

static keel_status add_routes(const struct keel_module *m, struct keel_router *router)
{
    keel_status rc;
    size_t i;

    for (i = 0; i < m->nroutes; i++) {
        rc = keel_router_add(router, &m->routes[i]);
        if (rc < 0) {
            keel_log(KEEL_LOG_ERROR, "bad route", KEEL_LF_STR("module", m->name),
                     KEEL_LF_STR("pattern", m->routes[i].pattern),
                     KEEL_LF_STR("error", keel_strerror(rc)));
            return rc;
        }
    }
    return KEEL_OK;
}

/* Starts m; *run becomes true once its init succeeded. */
static keel_status start_one(const struct keel_module *m,
                             const struct keel_config *cfg,
                             struct keel_router *router,
                             bool *run)
{
    keel_status rc = create_metrics(m);

    if (rc == KEEL_OK)
        rc = call_init(m, cfg);
    if (rc < 0)
        return rc;
    *run = true;
    rc = register_checks(m);
    if (rc == KEEL_OK && router)
        rc = add_routes(m, router);
    return rc;
}

keel_status keel_modules_start(const struct keel_config *cfg, struct keel_router *router)
{
    const struct keel_module *m;
    keel_status rc;

    for (started = 0; started < keel_nmodules; started++) {
        m = keel_modules[started];
        if (m->enabled && !m->enabled(cfg))
            continue;
        rc = start_one(m, cfg, router, &running[started]);
        if (rc < 0) {
            started++; /* a module that failed after its init is stopped too */
            return rc;
        }
    }
    return KEEL_OK;
}

void keel_modules_stop(void)
{
    while (started-- > 0) {
        if (running[started] && keel_modules[started]->fini)
            keel_modules[started]->fini();
        running[started] = false;
    }
    started = 0;
}

/* ---------------------------------------------------- what they declare */

unsigned keel_modules_middleware(const struct keel_middleware **out, unsigned max)
{
    unsigned i, n = 0;
    size_t k;

    for (i = 0; i < started; i++) {
        if (!running[i])
            continue;
        for (k = 0; k < keel_modules[i]->nmiddleware; k++, n++)
            if (n < max)
                out[n] = keel_modules[i]->middleware[k];
    }
    return n;
}

unsigned keel_modules_jobs(const struct keel_job_kind **out, unsigned max)
{
    unsigned i, n = 0;
    size_t k;

    for (i = 0; i < started; i++) {
        if (!running[i])
            continue;
        for (k = 0; k < keel_modules[i]->njobs; k++, n++)
            if (n < max)
                out[n] = keel_modules[i]->jobs[k];
    }
    return n;
}

unsigned keel_modules_subscriptions(const struct keel_subscription **out, unsigned max)
{
    unsigned i, n = 0;
    size_t k;

    for (i = 0; i < started; i++) {
        if (!running[i])
            continue;
        for (k = 0; k < keel_modules[i]->nsubscriptions; k++, n++)
            if (n < max)
                out[n] = keel_modules[i]->subscriptions[k];
    }
    return n;
}

keel_status keel_modules_mount(struct keel_router *router, const char *name)
{
    unsigned i;

    for (i = 0; i < started; i++)
        if (running[i] && strcmp(keel_modules[i]->name, name) == 0)
            return add_routes(keel_modules[i], router);
    return KEEL_E_NOT_FOUND;
}

const struct keel_command *keel_modules_command(const char *name)
{
    unsigned i;
    size_t k;

    for (i = 0; i < keel_nmodules; i++)
        for (k = 0; k < keel_modules[i]->ncommands; k++)
            if (strcmp(keel_modules[i]->commands[k].name, name) == 0)
                return &keel_modules[i]->commands[k];
    return NULL;
}

void keel_modules_each_command(void (*fn)(const struct keel_command *c, void *arg), void *arg)
{
    unsigned i;
    size_t k;

    for (i = 0; i < keel_nmodules; i++)
        for (k = 0; k < keel_modules[i]->ncommands; k++)
            fn(&keel_modules[i]->commands[k], arg);
}
