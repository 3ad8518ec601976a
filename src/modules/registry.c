/*
 * registry.c - the static list of modules, and their start and stop.
 */
#include "keel/log.h"
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

static unsigned started;
static bool running[KEEL_ARRAY_LEN(keel_modules)];

keel_status keel_modules_start(const struct keel_config *cfg, struct keel_router *router)
{
    keel_status rc;
    size_t r;

    for (started = 0; started < keel_nmodules; started++) {
        const struct keel_module *m = keel_modules[started];

        if (m->enabled && !m->enabled(cfg))
            continue;
        if (m->init) {
            rc = m->init(cfg);
            if (rc < 0) {
                keel_log(KEEL_LOG_ERROR, "module init failed", KEEL_LF_STR("module", m->name),
                         KEEL_LF_STR("error", keel_strerror(rc)));
                return rc;
            }
        }
        running[started] = true;
        for (r = 0; r < m->nroutes; r++) {
            rc = keel_router_add(router, &m->routes[r]);
            if (rc < 0) {
                keel_log(KEEL_LOG_ERROR, "bad route", KEEL_LF_STR("module", m->name),
                         KEEL_LF_STR("pattern", m->routes[r].pattern),
                         KEEL_LF_STR("error", keel_strerror(rc)));
                return rc;
            }
        }
    }
    return KEEL_OK;
}

void keel_modules_stop(void)
{
    while (started-- > 0)
        if (running[started] && keel_modules[started]->fini)
            keel_modules[started]->fini();
}
