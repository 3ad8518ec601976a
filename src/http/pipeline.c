/*
 * pipeline.c - runs a request through the phases, then the response
 * filters, then the log handlers.
 *
 * DESIGN: the phase arrays are built once from the middleware registry
 * and the modules' middleware, merged by each one's order (nginx's phase
 * engine: one checker interprets every handler's return code). A handler
 * that parks (KEEL_AGAIN) leaves its position in the request;
 * keel_request_resume continues from there with the status the
 * asynchronous work produced. The BODY phase starts with the body itself:
 * the phases before it ran as soon as the head was in, and only now is the
 * body read (or streamed to the route's sink), the request waiting for it
 * like for any other result. The CONTENT phase is the router's decision:
 * the route's handler, an automatic OPTIONS answer, or 404/405.
 *
 * While the pipeline runs, the request's log context is the thread's, so
 * every line logged meanwhile names the request.
 */
#include "keel/pipeline.h"

#include <stdio.h>

#include "keel/log.h"
#include "keel/router.h"

#include "http/http_int.h"

#define MAX_PER_PHASE 16
#define MAX_FILTERS   16

static keel_phase_fn phases[KEEL_PHASE_COUNT][MAX_PER_PHASE];
static unsigned nphase[KEEL_PHASE_COUNT];
static keel_filter_fn filters[MAX_FILTERS];
static unsigned nfilters;
static keel_log_fn loggers[MAX_FILTERS];
static unsigned nloggers;

static keel_status content(struct keel_request *req)
{
    char *allow;
    keel_status rc;

    if (req->route) {
        rc = req->route->handler(req);
        if (rc == KEEL_OK)
            rc = KEEL_DONE;
        return rc;
    }
    if (req->route_miss == 404)
        return keel_fail(req, 404, NULL, "No resource at this path.");
    allow = keel_arena_alloc(req->arena, 64);
    if (!allow)
        return KEEL_E_NOMEM;
    keel_router_allow_string(req->route_allow, allow, 64);
    if (keel_resp_header(req, "Allow", allow) < 0)
        return KEEL_E_NOMEM;
    if (req->route_auto_options) {
        keel_resp_start(req, 204, NULL);
        return KEEL_DONE;
    }
    return keel_fail(req, 405, NULL, "%s is not allowed here.", req->method_name);
}

/* The first handler of the BODY phase: the body, before whatever reads it. */
static keel_status read_body(struct keel_request *req)
{
    return keel__conn_read_body(req->conn);
}

/* Puts m into list[0..n], after every middleware of a lower or equal
 * order: an insertion sort, stable, so equal orders keep their arrival. */
static void
insert_ordered(const struct keel_middleware **list, unsigned n, const struct keel_middleware *m)
{
    unsigned i = n;

    while (i > 0 && list[i - 1]->order > m->order) {
        list[i] = list[i - 1];
        i--;
    }
    list[i] = m;
}

/* Calls m's init, then adds its handler, filter and log handler. */
static keel_status add(const struct keel_middleware *m)
{
    keel_status rc;

    if (m->init) {
        rc = m->init();
        if (rc < 0) {
            keel_log(KEEL_LOG_ERROR, "middleware init failed", KEEL_LF_STR("middleware", m->name),
                     KEEL_LF_STR("error", keel_strerror(rc)));
            return rc;
        }
    }
    if (m->handler) {
        KEEL_ASSERT(m->phase < KEEL_PHASE_CONTENT && nphase[m->phase] < MAX_PER_PHASE);
        phases[m->phase][nphase[m->phase]++] = m->handler;
    }
    if (m->filter) {
        KEEL_ASSERT(nfilters < MAX_FILTERS);
        filters[nfilters++] = m->filter;
    }
    if (m->log) {
        KEEL_ASSERT(nloggers < MAX_FILTERS);
        loggers[nloggers++] = m->log;
    }
    return KEEL_OK;
}

keel_status keel_pipeline_init(const struct keel_middleware *const *extra, unsigned nextra)
{
    const struct keel_middleware *all[KEEL_PIPELINE_MAX_MIDDLEWARE];
    unsigned i, n = 0;
    keel_status rc;

    if (nextra > KEEL_PIPELINE_MAX_MIDDLEWARE - keel_nmiddlewares) {
        keel_log(KEEL_LOG_ERROR, "too many middleware",
                 KEEL_LF_INT("count", keel_nmiddlewares + nextra),
                 KEEL_LF_INT("max", KEEL_PIPELINE_MAX_MIDDLEWARE));
        return KEEL_E_TOO_LARGE;
    }
    phases[KEEL_PHASE_BODY][0] = read_body;
    nphase[KEEL_PHASE_BODY] = 1;
    for (i = 0; i < keel_nmiddlewares; i++, n++)
        insert_ordered(all, n, keel_middlewares[i]);
    for (i = 0; i < nextra; i++, n++)
        insert_ordered(all, n, extra[i]);
    for (i = 0; i < n; i++) {
        rc = add(all[i]);
        if (rc < 0)
            return rc;
    }
    phases[KEEL_PHASE_CONTENT][0] = content;
    nphase[KEEL_PHASE_CONTENT] = 1;
    return KEEL_OK;
}

static void run(struct keel_request *req, keel_status rc)
{
    for (;;) {
        if (rc == KEEL_AGAIN)
            return;
        if (rc == KEEL_DONE || rc < 0) {
            if (rc < 0 && req->rc == KEEL_OK)
                req->rc = rc;
            break;
        }
        if (rc == KEEL_OK) {
            req->phase++;
            req->mw_index = 0;
        } else if (rc == KEEL_DECLINED) {
            req->mw_index++;
        }
        while (req->phase < KEEL_PHASE_COUNT && req->mw_index >= nphase[req->phase]) {
            req->phase++;
            req->mw_index = 0;
        }
        if (req->phase >= KEEL_PHASE_COUNT)
            break;
        rc = phases[req->phase][req->mw_index](req);
    }
    keel__pipeline_respond(req);
}

void keel__pipeline_run(struct keel_request *req, keel_status rc)
{
    const struct keel_log_ctx *prev = keel_log_ctx_set(&req->task.log);

    run(req, rc);
    keel_log_ctx_set(prev);
}

void keel__pipeline_start(struct keel_request *req)
{
    const struct keel_log_ctx *prev = keel_log_ctx_set(&req->task.log);

    req->phase = 0;
    req->mw_index = 0;
    run(req, nphase[0] == 0 ? KEEL_DECLINED : phases[0][0](req));
    keel_log_ctx_set(prev);
}

void keel__pipeline_respond(struct keel_request *req)
{
    const struct keel_log_ctx *prev = keel_log_ctx_set(&req->task.log);
    unsigned i;

    for (i = 0; i < nfilters; i++)
        filters[i](req);
    keel_log_ctx_set(prev);
    keel__conn_send(req->conn);
}

void keel__pipeline_log(struct keel_request *req)
{
    const struct keel_log_ctx *prev = keel_log_ctx_set(&req->task.log);
    unsigned i;

    for (i = 0; i < nloggers; i++)
        loggers[i](req);
    keel_log_ctx_set(prev);
}
