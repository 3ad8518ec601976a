/*
 * pipeline.h - the middleware registry and the phase runner (SPEC section 2,
 * STYLE.md section 2).
 */
#ifndef KEEL_PIPELINE_H
#define KEEL_PIPELINE_H

#include "keel/http.h"

/* The core middleware list (src/mw/registry.c); modules contribute the
 * rest (keel_modules_middleware). */
extern const struct keel_middleware *const keel_middlewares[];
extern const unsigned keel_nmiddlewares;

/* The most middleware a pipeline holds, core and modules' together. */
#define KEEL_PIPELINE_MAX_MIDDLEWARE 32

/* Builds the pipeline from the core middleware and the nextra middleware
 * in extra (the started modules', keel_modules_middleware), merged by
 * their order (KEEL_MW_ORDER_*; of equal orders the core's come first,
 * then extra's as given): calls each init in that order, then adds its
 * phase handler, response filter and log handler. Once, on the main
 * thread, after the modules started and before the loops start. Returns
 * KEEL_OK, KEEL_E_TOO_LARGE (logged) when there are more than
 * KEEL_PIPELINE_MAX_MIDDLEWARE in all, or the status of the first init
 * that failed (logged). extra is not kept. */
keel_status keel_pipeline_init(const struct keel_middleware *const *extra, unsigned nextra);

#endif
