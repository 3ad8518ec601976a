/*
 * health.c - the health module: GET /health/live, /health/ready and
 * /health/startup (seed 002 section 13, SPEC section 3). The checks it
 * runs are keel/health.h's registry (src/obs/health.c).
 *
 * DESIGN: liveness only says the process answers, so it never touches a
 * dependency. Readiness runs the registered checks on the thread pool
 * (they may block on a database ping) and answers 503 while the server is
 * starting or draining, or when a critical check fails; a failing
 * non-critical check (Redis, covered by a circuit breaker) shows as
 * "degraded" with 200. Startup reports what was checked once at start.
 */
#include "keel/health.h"

#include "keel/buf.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/module.h"
#include "keel/runtime.h"

#include "keel_version.h"

static keel_status live(struct keel_request *req)
{
    return keel_resp_json_str(req, 200, "{\"status\":\"ok\"}");
}

struct ready_run {
    struct keel_buf out; /* the "checks" object, built on the pool thread */
    bool failed;
    bool degraded;
};

static void run_checks(void *arg)
{
    struct ready_run *run = arg;
    struct keel_json j;

    keel_json_begin(&j, &run->out);
    keel_health_run(&j, &run->failed, &run->degraded);
    if (keel_json_end(&j) < 0)
        run->failed = true;
}

static keel_status ready_done(struct keel_request *req, void *arg)
{
    struct ready_run *run = arg;
    enum keel_runtime_state st = keel_runtime_state();
    const char *status = "ok";
    int http = 200;
    struct keel_json j;

    if (st != KEEL_RUNTIME_READY || run->failed) {
        status = st == KEEL_RUNTIME_DRAINING   ? "draining"
                 : st == KEEL_RUNTIME_STARTING ? "starting"
                                               : "unavailable";
        http = 503;
    } else if (run->degraded) {
        status = "degraded";
    }
    keel_resp_start(req, http, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "status");
    keel_json_str(&j, status);
    keel_json_key(&j, "checks");
    keel_json_raw(&j, run->out.data ? run->out.data : "{}", run->out.data ? run->out.len : 2);
    keel_json_key(&j, "version");
    keel_json_str(&j, KEEL_VERSION);
    keel_json_key(&j, "uptime");
    keel_json_int(&j, keel_runtime_uptime());
    keel_json_obj_close(&j);
    keel_buf_free(&run->out);
    if (http == 503)
        keel_resp_header(req, "Retry-After", "5");
    keel_resp_header(req, "Cache-Control", "no-store");
    return keel_json_end(&j) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static void free_run(void *arg)
{
    keel_buf_free(&((struct ready_run *)arg)->out);
}

static keel_status ready(struct keel_request *req)
{
    struct ready_run *run = keel_arena_calloc(req->arena, 1, sizeof(*run));

    if (!run || keel_arena_defer(req->arena, free_run, run) < 0)
        return KEEL_E_NOMEM;
    keel_buf_init(&run->out, 64 * 1024);
    if (keel_health_count() == 0 || keel_runtime_state() != KEEL_RUNTIME_READY)
        return ready_done(req, run);
    return keel_request_offload(req, run_checks, ready_done, run);
}

static keel_status startup(struct keel_request *req)
{
    bool up = keel_runtime_state() != KEEL_RUNTIME_STARTING;
    struct keel_json j;

    keel_resp_start(req, up ? 200 : 503, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "status");
    keel_json_str(&j, up ? "ok" : "starting");
    keel_json_key(&j, "checks");
    keel_json_obj_open(&j);
    keel_json_key(&j, "config");
    keel_json_obj_open(&j);
    keel_json_key(&j, "status");
    keel_json_str(&j, "ok");
    keel_json_obj_close(&j);
    keel_json_obj_close(&j);
    keel_json_key(&j, "version");
    keel_json_str(&j, KEEL_VERSION);
    keel_json_key(&j, "uptime");
    keel_json_int(&j, keel_runtime_uptime());
    keel_json_obj_close(&j);
    return keel_json_end(&j) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static const struct keel_route routes[] = {
    {.method = KEEL_HTTP_GET,
     .pattern = "/health/live",
     .handler = live,
     .flags = KEEL_ROUTE_NO_RATELIMIT},
    {.method = KEEL_HTTP_GET,
     .pattern = "/health/ready",
     .handler = ready,
     .flags = KEEL_ROUTE_NO_RATELIMIT},
    {.method = KEEL_HTTP_GET,
     .pattern = "/health/startup",
     .handler = startup,
     .flags = KEEL_ROUTE_NO_RATELIMIT},
};

const struct keel_module keel_module_health = {
    .name = "health",
    .routes = routes,
    .nroutes = KEEL_ARRAY_LEN(routes),
};
