/*
 * debug.c - test-only routes, mounted only with KEEL_DEBUG_ROUTES=1 (which
 * the configuration refuses in production). The end-to-end tests use them
 * to exercise what no product route shows yet: blocking work off the loop,
 * JSON body parsing with a per-route limit, large and streamed responses,
 * an internal failure, and typed route parameters.
 */
#include <json-c/json.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/breaker.h"
#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/http.h"
#include "keel/json.h"
#include "keel/module.h"
#include "keel/problem.h"
#include "keel/redis.h"

#include "debug_int.h"

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
        req->task.user_id = keel_arena_strndup(req->arena, h->value.p, h->value.len);
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

/* The shared mapping (keel_fail_storage), but an outage keeps the debug
 * routes' own public detail and the error filter's default Retry-After,
 * which the storage tests have always seen. */
static keel_status db_failure(struct keel_request *req, keel_status rc)
{
    if (rc == KEEL_E_UNAVAILABLE || rc == KEEL_E_TIMEOUT)
        return keel_fail(req, 503, NULL, "The database is unavailable; retry later.");
    return keel_fail_storage(req, rc, "debug kv", NULL);
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

/* The value of the kv row (keel_db_row_fn). */
static keel_status kv_row(const struct keel_db_rows *r, void *arg)
{
    struct kv *kv = arg;
    size_t len = 0;
    const char *v = keel_db_text(r, 0, &len);

    memcpy(kv->value, v ? v : "", len < KV_MAX ? len : KV_MAX);
    kv->found = true;
    return KEEL_OK;
}

static keel_status kv_get_q(struct keel_db_conn *c, void *arg)
{
    struct kv *kv = arg;
    const struct keel_db_param p[] = {KEEL_DB_TEXT(kv->key)};
    keel_status rc;

    snprintf(kv->source, sizeof(kv->source), "%s", keel_db_conn_role(c));
    rc = keel_db_query_one(c, "SELECT value FROM debug_kv WHERE key = $1", p, 1, kv_row, kv);
    return rc == KEEL_E_NOT_FOUND ? KEEL_OK : rc; /* kv->found says */
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
    keel_status rc;

    (void)arg;
    rc = debug_jobs_schema(c);
    if (rc < 0)
        return rc;
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
    keel_status rc = keel_db_query_one(c, "SELECT 1", NULL, 0, NULL, NULL);

    (void)arg;
    return rc == KEEL_E_NOT_FOUND ? KEEL_OK : rc;
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

/* ---------------------------------------------------------------- cache */

/* /debug/cache/kv/{key}: the kv table read through the cache (key
 * "kvc:<key>", answered with the layer it came from) and written with an
 * invalidation after the commit; /debug/cache/flush/{ns}: "<ns>:*".
 * ?delay_ms=N makes the load sleep first, so tests can pile requests onto
 * one load (stampede protection); ?then_redis=1 makes the answer wait for
 * a Redis PING (a park inside the cache's callback). */
#define KVC_TTL_MS    60000
#define KVC_DELAY_MAX 5000

struct kvc {
    struct kv kv;
    long delay_ms;
    bool then_redis;
};

static keel_status kvc_load(struct keel_db_conn *c, void *arg, struct keel_buf *out)
{
    struct kvc *k = arg;
    struct timespec ts = {k->delay_ms / 1000, (k->delay_ms % 1000) * 1000000L};
    keel_status rc;

    if (k->delay_ms > 0)
        nanosleep(&ts, NULL); /* deliberately blocking: a slow query */
    rc = kv_get_q(c, &k->kv);
    if (rc < 0)
        return rc;
    if (!k->kv.found)
        return KEEL_E_NOT_FOUND;
    return keel_buf_appends(out, k->kv.value);
}

static void kvc_pinged(keel_status rc, const struct keel_redis_reply *reply, void *arg)
{
    (void)rc;
    (void)reply;
    keel_request_resume(arg, KEEL_DONE);
}

static keel_status kvc_done(struct keel_request *req,
                            keel_status rc,
                            const char *value,
                            size_t len,
                            const char *source,
                            void *arg)
{
    struct kvc *k = arg;
    struct keel_json j;

    if (rc == KEEL_E_NOT_FOUND)
        return keel_fail(req, 404, NULL, "No such key.");
    if (rc < 0)
        return db_failure(req, rc);
    keel_resp_start(req, 200, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "key");
    keel_json_str(&j, k->kv.key);
    keel_json_key(&j, "value");
    keel_json_strn(&j, value, len);
    keel_json_key(&j, "source");
    keel_json_str(&j, source);
    keel_json_obj_close(&j);
    if (keel_json_end(&j) < 0)
        return KEEL_E_NOMEM;
    /* ?then_redis=1: park on a Redis round trip from inside the cache's
     * callback, the way a handler parks (tests of the request holds). */
    if (k->then_redis && keel_redis_command(keel_request_uv_loop(req), keel_request_thread(req),
                                            kvc_pinged, req, "PING") == KEEL_OK)
        return keel_request_park(req);
    return KEEL_DONE;
}

static const char *kvc_key(struct keel_request *req, const struct kv *kv)
{
    return keel_arena_sprintf(req->arena, "kvc:%s", kv->key);
}

static keel_status kvc_get(struct keel_request *req)
{
    struct kvc *k = keel_arena_calloc(req->arena, 1, sizeof(*k));
    struct kv *kv = kv_new(req);
    const char *key;

    if (!kv)
        return keel_fail(req, 404, NULL, "No such key.");
    if (!k)
        return KEEL_E_NOMEM;
    k->kv = *kv;
    k->delay_ms = query_long(req, "delay_ms", 0, KVC_DELAY_MAX);
    k->then_redis = query_long(req, "then_redis", 0, 1) == 1;
    if (k->delay_ms < 0)
        return keel_fail(req, 400, NULL, "delay_ms must be an integer from 0 to %d.",
                         KVC_DELAY_MAX);
    key = kvc_key(req, kv);
    if (!key)
        return KEEL_E_NOMEM;
    debug_user(req);
    return keel_cache_get(req, key, KVC_TTL_MS, KEEL_DB_READ, kvc_load, kvc_done, k);
}

static keel_status kvc_put_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct kv *kv = arg;
    const char *key;

    if (rc < 0)
        return db_failure(req, rc);
    rc = kv_reply(req, kv, false);
    key = kvc_key(req, kv);
    if (rc < 0 || !key)
        return KEEL_E_NOMEM;
    return keel_cache_invalidate(req, &key, 1, KEEL_DONE);
}

static keel_status kvc_put(struct keel_request *req)
{
    struct kv *kv = kv_new(req);
    struct json_object *v;

    if (!kv)
        return keel_fail(req, 404, NULL, "No such key.");
    if (!json_object_is_type(req->json, json_type_object) ||
        !json_object_object_get_ex(req->json, "value", &v) ||
        !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) > KV_MAX)
        return keel_fail_field(req, "value", "must be a string of at most 1000 bytes");
    memcpy(kv->value, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    debug_user(req);
    return keel_db_run(req, KEEL_DB_WRITE, kv_put_tx, kvc_put_done, kv);
}

static keel_status kvc_flush(struct keel_request *req)
{
    struct keel_str ns = keel_request_param(req, "ns");
    const char *key = keel_arena_sprintf(req->arena, "%.*s:*", (int)ns.len, ns.p);
    struct keel_json j;

    if (!key)
        return KEEL_E_NOMEM;
    keel_resp_start(req, 200, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "flushed");
    keel_json_str(&j, key);
    keel_json_obj_close(&j);
    if (keel_json_end(&j) < 0)
        return KEEL_E_NOMEM;
    return keel_cache_invalidate(req, &key, 1, KEEL_DONE);
}

/* GET /debug/cache/pair/{a}/{b}: kvc:a through the cache, then, from
 * inside its done callback, kvc:b: a cache read nested in a cache answer
 * (tests of the request holds; ?delay_ms applies to both loads). */
struct kvc_pair {
    struct kvc a, b;
    char *va;
    const char *sa;
};

static keel_status pair_done_b(struct keel_request *req,
                               keel_status rc,
                               const char *value,
                               size_t len,
                               const char *source,
                               void *arg)
{
    /* arg is &p->b, the load's argument too. */
    struct kvc_pair *p = (struct kvc_pair *)(void *)((char *)arg - offsetof(struct kvc_pair, b));
    struct keel_json j;

    if (rc == KEEL_E_NOT_FOUND)
        return keel_fail(req, 404, NULL, "No such key.");
    if (rc < 0)
        return db_failure(req, rc);
    keel_resp_start(req, 200, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "a");
    keel_json_str(&j, p->va);
    keel_json_key(&j, "b");
    keel_json_strn(&j, value, len);
    keel_json_key(&j, "sources");
    keel_json_arr_open(&j);
    keel_json_str(&j, p->sa);
    keel_json_str(&j, source);
    keel_json_arr_close(&j);
    keel_json_obj_close(&j);
    return keel_json_end(&j) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static keel_status pair_done_a(struct keel_request *req,
                               keel_status rc,
                               const char *value,
                               size_t len,
                               const char *source,
                               void *arg)
{
    struct kvc_pair *p = arg;
    const char *key;

    if (rc == KEEL_E_NOT_FOUND)
        return keel_fail(req, 404, NULL, "No such key.");
    if (rc < 0)
        return db_failure(req, rc);
    p->va = keel_arena_strndup(req->arena, value, len);
    p->sa = source;
    key = kvc_key(req, &p->b.kv);
    if (!p->va || !key)
        return KEEL_E_NOMEM;
    return keel_cache_get(req, key, KVC_TTL_MS, KEEL_DB_READ, kvc_load, pair_done_b, &p->b);
}

static keel_status kvc_pair(struct keel_request *req)
{
    struct kvc_pair *p = keel_arena_calloc(req->arena, 1, sizeof(*p));
    struct keel_str a = keel_request_param(req, "a"), b = keel_request_param(req, "b");
    const char *key;

    if (!p)
        return KEEL_E_NOMEM;
    if (a.len == 0 || a.len > KV_MAX || b.len == 0 || b.len > KV_MAX)
        return keel_fail(req, 404, NULL, "No such key.");
    memcpy(p->a.kv.key, a.p, a.len);
    memcpy(p->b.kv.key, b.p, b.len);
    p->a.delay_ms = p->b.delay_ms = query_long(req, "delay_ms", 0, KVC_DELAY_MAX);
    if (p->a.delay_ms < 0)
        return keel_fail(req, 400, NULL, "delay_ms must be an integer from 0 to %d.",
                         KVC_DELAY_MAX);
    key = kvc_key(req, &p->a.kv);
    if (!key)
        return KEEL_E_NOMEM;
    /* One arg for both callbacks: p, whose first member is the kvc that
     * kvc_load reads. */
    return keel_cache_get(req, key, KVC_TTL_MS, KEEL_DB_READ, kvc_load, pair_done_a, p);
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
    {.method = KEEL_HTTP_GET, .pattern = "/debug/cache/kv/{key}", .handler = kvc_get},
    {.method = KEEL_HTTP_PUT,
     .pattern = "/debug/cache/kv/{key}",
     .handler = kvc_put,
     .body = KEEL_BODY_JSON},
    {.method = KEEL_HTTP_POST, .pattern = "/debug/cache/flush/{ns}", .handler = kvc_flush},
    {.method = KEEL_HTTP_GET, .pattern = "/debug/cache/pair/{a}/{b}", .handler = kvc_pair},
    {.method = KEEL_HTTP_POST,
     .pattern = "/debug/jobs",
     .handler = debug_jobs_enqueue,
     .body = KEEL_BODY_JSON},
    {.method = KEEL_HTTP_GET, .pattern = "/debug/jobs/runs", .handler = debug_jobs_runs},
    {.method = KEEL_HTTP_PUT,
     .pattern = "/debug/sink",
     .handler = debug_sink_done,
     .body = KEEL_BODY_STREAM,
     .sink = &debug_sink,
     .max_body = 64u << 20},
    {.method = KEEL_HTTP_PUT,
     .pattern = "/debug/sink/private",
     .handler = debug_sink_done,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "orders:create",
     .body = KEEL_BODY_STREAM,
     .sink = &debug_sink,
     .max_body = 64u << 20},
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
    .jobs = debug_job_kinds,
    .njobs = DEBUG_NJOB_KINDS,
    .subscriptions = debug_subscriptions,
    .nsubscriptions = DEBUG_NSUBSCRIPTIONS,
};
