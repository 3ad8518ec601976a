/*
 * debug.c - test-only routes, mounted only with KEEL_DEBUG_ROUTES=1 (which
 * the configuration refuses in production). The end-to-end tests use them
 * to exercise what no product route shows yet: blocking work off the loop,
 * JSON body parsing with a per-route limit, large and streamed responses,
 * an internal failure, and typed route parameters.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/config.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/module.h"

#define MAX_SLEEP_MS 10000

static long query_long(struct keel_request *req, const char *name, long dflt, long max)
{
    const char *v;
    char *end;
    long n;

    if (keel_request_query(req, name, &v) < 0)
        return dflt;
    n = strtol(v, &end, 10);
    if (*end || n < 0 || n > max)
        return -1;
    return n;
}

static void sleep_work(void *arg)
{
    long ms = *(long *)arg;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    /* Deliberately blocking: this is what a slow query or a password hash
     * looks like to the thread pool. */
    nanosleep(&ts, NULL);
}

static keel_status sleep_done(struct keel_request *req, void *arg)
{
    char body[64];

    snprintf(body, sizeof(body), "{\"slept_ms\":%ld}", *(long *)arg);
    return keel_resp_json_str(req, 200, body);
}

static keel_status do_sleep(struct keel_request *req)
{
    long *ms = keel_arena_alloc(req->arena, sizeof(*ms));

    if (!ms)
        return KEEL_E_NOMEM;
    *ms = query_long(req, "ms", 100, MAX_SLEEP_MS);
    if (*ms < 0)
        return keel_fail(req, 400, NULL, "ms must be an integer from 0 to %d.", MAX_SLEEP_MS);
    return keel_request_offload(req, sleep_work, sleep_done, ms);
}

static keel_status echo(struct keel_request *req)
{
    const char *s = req->json ? json_object_to_json_string_ext(req->json, JSON_C_TO_STRING_PLAIN)
                              : "null";

    return keel_resp_json_str(req, 200, s);
}

struct bytes_stream {
    uint64_t sent;
};

static keel_status bytes_chunk(struct keel_request *req, struct keel_buf *out, size_t max)
{
    static const char pattern[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    size_t i;

    (void)req;
    if (keel_buf_reserve(out, max) < 0)
        return KEEL_E_NOMEM;
    for (i = 0; i < max; i++)
        out->data[out->len + i] = pattern[i % (sizeof(pattern) - 1)];
    out->len += max;
    return KEEL_OK;
}

/* n bytes of body: in memory up to 1 MiB (so gzip applies), streamed above
 * (so a slow reader shows the bounded output buffer). */
static keel_status bytes(struct keel_request *req)
{
    long n = query_long(req, "n", 1024, 1L << 30);

    if (n < 0)
        return keel_fail(req, 400, NULL, "n must be an integer from 0 to 2^30.");
    keel_resp_start(req, 200, "application/json");
    if (n > 1024 * 1024) {
        req->resp.stream_len = (uint64_t)n;
        req->resp.stream_fn = bytes_chunk;
        return KEEL_DONE;
    }
    if (bytes_chunk(req, &req->resp.body, (size_t)n) < 0)
        return KEEL_E_NOMEM;
    return KEEL_DONE;
}

static keel_status fail(struct keel_request *req)
{
    return keel_errorf(req, KEEL_E_INTERNAL, "secret-internal-detail /tmp/x.c:42");
}

static keel_status item(struct keel_request *req)
{
    struct keel_str id = keel_request_param(req, "id");
    struct keel_json j;

    keel_resp_start(req, 200, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "id");
    keel_json_strn(&j, id.p, id.len);
    keel_json_obj_close(&j);
    return keel_json_end(&j) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static const struct keel_route routes[] = {
    {.method = KEEL_HTTP_GET, .pattern = "/debug/sleep", .handler = do_sleep},
    {.method = KEEL_HTTP_POST, .pattern = "/debug/echo", .handler = echo, .body = KEEL_BODY_JSON},
    {.method = KEEL_HTTP_POST,
     .pattern = "/debug/echo-small",
     .handler = echo,
     .body = KEEL_BODY_JSON,
     .max_body = 1024},
    {.method = KEEL_HTTP_GET, .pattern = "/debug/bytes", .handler = bytes},
    {.method = KEEL_HTTP_GET, .pattern = "/debug/error", .handler = fail},
    {.method = KEEL_HTTP_GET, .pattern = "/debug/items/{id:uuid}", .handler = item},
};

static bool enabled(const struct keel_config *cfg)
{
    return cfg->debug_routes;
}

const struct keel_module keel_module_debug = {
    .name = "debug",
    .enabled = enabled,
    .routes = routes,
    .nroutes = KEEL_ARRAY_LEN(routes),
};
