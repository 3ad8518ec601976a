/*
 * module.h - a Keel module: a name, its routes as data, and start/stop
 * hooks (STYLE.md section 1; nginx ngx_module_t). Modules are listed in one
 * static registry, src/modules/registry.c.
 */
#ifndef KEEL_MODULE_H
#define KEEL_MODULE_H

#include "keel/http.h"

struct keel_config;

struct keel_module {
    const char *name;
    /* Whether the module runs with this configuration (NULL: always). */
    bool (*enabled)(const struct keel_config *cfg);
    /* Once at start on the main thread, before the loops run (NULL: none). */
    keel_status (*init)(const struct keel_config *cfg);
    void (*fini)(void);
    const struct keel_route *routes;
    size_t nroutes;
};

extern const struct keel_module *const keel_modules[];
extern const unsigned keel_nmodules;

struct keel_router;

/* Initializes the enabled modules and adds their routes to the router.
 * Logs and returns the first failure. */
keel_status keel_modules_start(const struct keel_config *cfg, struct keel_router *router);
/* Calls fini of the started modules, in reverse order. */
void keel_modules_stop(void);

#endif
