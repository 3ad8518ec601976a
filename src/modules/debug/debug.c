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

#include "keel/breaker.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/module.h"
#include "keel/redis.h"

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
    const char *s =
        req->json ? json_object_to_json_string_ext(req->json, JSON_C_TO_STRING_PLAIN) : "null";

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

/* ------------------------------------------------------------- storage */

#define KV_MAX 1000

struct kv {
    char key[KV_MAX + 1];
    char value[KV_MAX + 1];
    char source[16];
    bool found;
};

/* X-Debug-User stands in for the authenticated user (identity issue) so
 * tests can drive read-your-writes sessions. */
static void debug_user(struct keel_request *req)
{
    const struct keel_header *h = keel_request_header(req, "X-Debug-User");

    if (h && h->value.len > 0 && h->value.len <= 64)
        req->user_id = keel_arena_strndup(req->arena, h->value.p, h->value.len);
}

static struct kv *kv_new(struct keel_request *req)
{
    struct keel_str key = keel_request_param(req, "key");
    struct kv *kv;

    if (key.len == 0 || key.len > KV_MAX)
        return NULL;
    kv = keel_arena_calloc(req->arena, 1, sizeof(*kv));
    if (kv)
        memcpy(kv->key, key.p, key.len);
    return kv;
}

static keel_status db_failure(struct keel_request *req, keel_status rc)
{
    if (rc == KEEL_E_UNAVAILABLE || rc == KEEL_E_TIMEOUT)
        return keel_fail(req, 503, NULL, "The database is unavailable; retry later.");
    return keel_errorf(req, rc, "debug kv: storage error");
}

static keel_status kv_put_tx(struct keel_db_conn *c, void *arg)
{
    struct kv *kv = arg;
    const struct keel_db_param p[] = {KEEL_DB_TEXT(kv->key), KEEL_DB_TEXT(kv->value)};

    return keel_db_exec(c,
                        "INSERT INTO debug_kv (key, value) VALUES ($1, $2) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        p, 2, NULL);
}

static keel_status kv_reply(struct keel_request *req, struct kv *kv, bool with_source)
{
    struct keel_json j;

    keel_resp_start(req, 200, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "key");
    keel_json_str(&j, kv->key);
    keel_json_key(&j, "value");
    keel_json_str(&j, kv->value);
    if (with_source) {
        keel_json_key(&j, "source");
        keel_json_str(&j, kv->source);
    }
    keel_json_obj_close(&j);
    return keel_json_end(&j) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static keel_status kv_put_done(struct keel_request *req, keel_status rc, void *arg)
{
    return rc < 0 ? db_failure(req, rc) : kv_reply(req, arg, false);
}

static keel_status kv_put(struct keel_request *req)
{
    struct kv *kv = kv_new(req);
    struct json_object *v;
    const char *s;

    if (!kv)
        return keel_fail(req, 404, NULL, "No such key.");
    if (!json_object_is_type(req->json, json_type_object) ||
        !json_object_object_get_ex(req->json, "value", &v) ||
        !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) > KV_MAX)
        return keel_fail_field(req, "value", "must be a string of at most 1000 bytes");
    s = json_object_get_string(v);
    memcpy(kv->value, s, (size_t)json_object_get_string_len(v));
    debug_user(req);
    return keel_db_run(req, KEEL_DB_WRITE, kv_put_tx, kv_put_done, kv);
}

static keel_status kv_get_q(struct keel_db_conn *c, void *arg)
{
    struct kv *kv = arg;
    const struct keel_db_param p[] = {KEEL_DB_TEXT(kv->key)};
    struct keel_db_rows *r;
    const char *v;
    size_t len;
    keel_status rc;

    snprintf(kv->source, sizeof(kv->source), "%s", keel_db_conn_role(c));
    rc = keel_db_query(c, "SELECT value FROM debug_kv WHERE key = $1", p, 1, &r);
    if (rc < 0)
        return rc;
    rc = keel_db_next(r);
    if (rc == KEEL_OK) {
        v = keel_db_text(r, 0, &len);
        memcpy(kv->value, v ? v : "", len < KV_MAX ? len : KV_MAX);
        kv->found = true;
    }
    keel_db_rows_free(r);
    return rc < 0 ? rc : KEEL_OK;
}

static keel_status kv_get_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct kv *kv = arg;

    if (rc < 0)
        return db_failure(req, rc);
    if (!kv->found)
        return keel_fail(req, 404, NULL, "No such key.");
    return kv_reply(req, kv, true);
}

static keel_status kv_get(struct keel_request *req)
{
    struct kv *kv = kv_new(req);

    if (!kv)
        return keel_fail(req, 404, NULL, "No such key.");
    debug_user(req);
    return keel_db_run(req, KEEL_DB_READ, kv_get_q, kv_get_done, kv);
}

static keel_status kv_schema(struct keel_db_conn *c, void *arg)
{
    (void)arg;
    return keel_db_exec(c,
                        strcmp(keel_db_dialect(keel_db_default()), "sqlite") == 0
                            ? "CREATE TABLE IF NOT EXISTS debug_kv (key TEXT PRIMARY KEY, "
                              "value TEXT NOT NULL) STRICT"
                            : "CREATE TABLE IF NOT EXISTS debug_kv (key TEXT PRIMARY KEY, "
                              "value TEXT NOT NULL)",
                        NULL, 0, NULL);
}

/* GET /debug/redis: one Redis round trip behind the breaker, then one
 * database read, answered 200 whatever Redis does - the proof that a Redis
 * outage degrades nothing the database alone can serve. */
struct redis_probe {
    struct keel_request *req;
    const char *redis;
};

static keel_status probe_db(struct keel_db_conn *c, void *arg)
{
    struct keel_db_rows *r;
    keel_status rc;

    (void)arg;
    rc = keel_db_query(c, "SELECT 1", NULL, 0, &r);
    if (rc == KEEL_OK) {
        rc = keel_db_next(r);
        keel_db_rows_free(r);
    }
    return rc < 0 ? rc : KEEL_OK;
}

static keel_status probe_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct redis_probe *p = arg;
    struct keel_breaker *b = keel_redis_breaker();
    struct keel_json j;

    if (rc < 0)
        return db_failure(req, rc);
    keel_resp_start(req, 200, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "redis");
    keel_json_str(&j, p->redis);
    keel_json_key(&j, "breaker");
    keel_json_str(&j, b ? keel_breaker_state_name(keel_breaker_state(b)) : "none");
    keel_json_key(&j, "database");
    keel_json_str(&j, "ok");
    keel_json_obj_close(&j);
    return keel_json_end(&j) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static void redis_reply(keel_status rc, const struct keel_redis_reply *reply, void *arg)
{
    struct redis_probe *p = arg;
    struct keel_request *req = p->req;

    (void)reply;
    p->redis = rc == KEEL_OK ? "ok" : rc == KEEL_E_TIMEOUT ? "timeout" : "unavailable";
    keel_request_resume(req, keel_db_run(req, KEEL_DB_READ, probe_db, probe_done, p));
}

static keel_status redis_probe(struct keel_request *req)
{
    struct redis_probe *p = keel_arena_calloc(req->arena, 1, sizeof(*p));
    keel_status rc;

    if (!p)
        return KEEL_E_NOMEM;
    p->req = req;
    p->redis = "unavailable";
    rc = keel_redis_command(keel_request_uv_loop(req), keel_request_thread(req), redis_reply, p,
                            "INCR keel:debug:probe");
    if (rc < 0) /* disabled, disconnected or breaker open: fail fast */
        return keel_db_run(req, KEEL_DB_READ, probe_db, probe_done, p);
    return keel_request_park(req);
}

/* The kv table is test scaffolding, not product schema: it is created here,
 * not by a migration, and only when the debug routes are on. */
static keel_status init(const struct keel_config *cfg)
{
    (void)cfg;
    if (!keel_db_default())
        return KEEL_OK;
    return keel_db_transaction(keel_db_default(), NULL, kv_schema, NULL);
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
    {.method = KEEL_HTTP_PUT,
     .pattern = "/debug/kv/{key}",
     .handler = kv_put,
     .body = KEEL_BODY_JSON},
    {.method = KEEL_HTTP_GET, .pattern = "/debug/kv/{key}", .handler = kv_get},
    {.method = KEEL_HTTP_GET, .pattern = "/debug/redis", .handler = redis_probe},
};

static bool enabled(const struct keel_config *cfg)
{
    return cfg->debug_routes;
}

const struct keel_module keel_module_debug = {
    .name = "debug",
    .enabled = enabled,
    .init = init,
    .routes = routes,
    .nroutes = KEEL_ARRAY_LEN(routes),
};
