/*
 * fuzz_request.c - libFuzzer harness over the whole request path: bytes
 * go into a real connection (a socketpair served by a real loop), through
 * llhttp, the router, every middleware and a handler, and the response
 * comes back out. Invariants checked besides the sanitizers': the server
 * never answers anything but HTTP/1.1 responses, and the connection always
 * ends (a hang is a bug the fuzzer reports as a timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/migrate.h"
#include "keel/module.h"
#include "keel/pipeline.h"
#include "keel/router.h"

#include "http/http_int.h"

static struct keel_http_loop *loop;
static struct keel_config cfg;

static const char *no_env(const char *name)
{
    (void)name;
    return NULL;
}

static keel_status echo(struct keel_request *req)
{
    return keel_resp_json_str(req, 200, req->json ? json_object_to_json_string(req->json) : "null");
}

static keel_status item(struct keel_request *req)
{
    const char *q;

    if (keel_request_query(req, "q", &q) == KEEL_E_INVALID)
        return keel_fail(req, 400, NULL, "bad query");
    return keel_resp_json_str(req, 200, "{\"ok\":true}");
}

static const struct keel_route routes[] = {
    {.method = KEEL_HTTP_POST, .pattern = "/fuzz/echo", .handler = echo, .body = KEEL_BODY_JSON},
    {.method = KEEL_HTTP_PUT,
     .pattern = "/fuzz/items/{id:uuid}",
     .handler = item,
     .body = KEEL_BODY_JSON,
     .max_body = 512},
    {.method = KEEL_HTTP_GET, .pattern = "/fuzz/items/{id:uuid}", .handler = item},
    {.method = KEEL_HTTP_GET, .pattern = "/fuzz/n/{n:int}/{name}", .handler = item},
};

/* The identity routes need a database: a SQLite file in a fresh temporary
 * directory (also the data dir, for the development JWT key), migrated.
 * Argon2 runs at its smallest cost so a fuzzed login stays fast. */
static char dir[] = "/tmp/keel-fuzz-XXXXXX";

static void remove_storage(void)
{
    static const char *const files[] = {"keel.db", "keel.db-wal", "keel.db-shm", "jwt.key"};
    char path[sizeof(dir) + 16];
    size_t i;

    for (i = 0; i < KEEL_ARRAY_LEN(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void setup_storage(void)
{
    struct keel_db *db;
    char *url;

    if (!mkdtemp(dir))
        abort();
    atexit(remove_storage);
    url = malloc(sizeof(dir) + 32);
    snprintf(url, sizeof(dir) + 32, "sqlite:%s/keel.db", dir);
    free(cfg.database_url);
    cfg.database_url = url;
    free(cfg.data_dir);
    cfg.data_dir = strdup(dir);
    cfg.password_memory_kib = 8;
    cfg.password_iterations = 1;
    if (keel_db_open(&cfg, &db) < 0 || keel_migrate_up(db, NULL) < 0)
        abort();
    keel_db_set_default(db);
}

static void setup(void)
{
    const struct keel_middleware *mw[KEEL_PIPELINE_MAX_MIDDLEWARE];
    struct keel_router *router = keel_router_new();
    struct keel_buf errs;
    char *argv[] = {NULL};
    unsigned nmw;
    size_t i;

    keel_buf_init(&errs, 4096);
    if (keel_config_load(&cfg, 0, argv, no_env, &errs, NULL) < 0)
        abort();
    keel_buf_free(&errs);
    cfg.max_body_bytes = 8192;
    cfg.max_header_bytes = 2048;
    cfg.max_headers = 20;
    cfg.max_uri_bytes = 512;
    keel_log_init(KEEL_LOG_ERROR, open("/dev/null", O_WRONLY | O_CLOEXEC));
    setup_storage();
    if (keel_modules_start(&cfg, router) < 0)
        abort();
    nmw = keel_modules_middleware(mw, KEEL_ARRAY_LEN(mw));
    if (nmw > KEEL_ARRAY_LEN(mw) || keel_pipeline_init(mw, nmw) < 0)
        abort();
    for (i = 0; i < KEEL_ARRAY_LEN(routes); i++)
        if (keel_router_add(router, &routes[i]) < 0)
            abort();
    loop = keel__server_test_loop(&cfg, router);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char out[1 << 16];
    size_t got = 0;
    bool first = true;
    int sv[2];
    ssize_t n;

    if (!loop)
        setup();
    if (size > 32768 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return 0;
    if (write(sv[1], data, size) != (ssize_t)size)
        abort();
    shutdown(sv[1], SHUT_WR);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    if (keel__conn_open(loop, sv[0]) < 0)
        abort();
    while (loop->nconns > 0 || uv_loop_alive(loop->uv)) {
        uv_run(loop->uv, UV_RUN_ONCE);
        while ((n = read(sv[1], out + got, sizeof(out) - got)) > 0) {
            got += (size_t)n;
            if (first && got >= 9) {
                if (memcmp(out, "HTTP/1.1 ", 9) != 0)
                    abort();
                first = false;
            }
            if (got == sizeof(out))
                got = 0; /* only the start is checked; keep draining */
        }
        if (loop->nconns == 0)
            break;
    }
    while (read(sv[1], out, sizeof(out)) > 0)
        ;
    close(sv[1]);
    return 0;
}
