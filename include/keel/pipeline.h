/*
 * pipeline.h - the middleware registry and the phase runner (SPEC section 2,
 * STYLE.md section 2).
 */
#ifndef KEEL_PIPELINE_H
#define KEEL_PIPELINE_H

#include "keel/http.h"

/* The middleware list, in the order of SPEC section 2 (src/mw/registry.c). */
extern const struct keel_middleware *const keel_middlewares[];
extern const unsigned keel_nmiddlewares;

/* Calls each middleware's init and builds the per-phase handler arrays.
 * Once, on the main thread, before the loops start. */
keel_status keel_pipeline_init(void);

#endif
