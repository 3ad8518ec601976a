/*
 * test_config.c - unit tests for src/core/config.c: defaults, the four
 * precedence layers, _FILE secrets, every validator, the production rules,
 * usage errors, the INI reader and the JSON dump.
 *
 * The environment is injected through keel_config_load()'s getenv callback
 * (fake_env below), so the tests never depend on or change the real one.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/config.h"

#include "test.h"

/* ------------------------------------------------------------- fixtures */

#define MAX_ENV 64

static const char *fake_env[MAX_ENV]; /* "NAME=value" */
static size_t fake_env_len;
static char tmp_paths[8][64];
static size_t tmp_count;

static const char *fake_getenv(const char *name)
{
    size_t i, n = strlen(name);

    for (i = 0; i < fake_env_len; i++) {
        if (strncmp(fake_env[i], name, n) == 0 && fake_env[i][n] == '=')
            return fake_env[i] + n + 1;
    }
    return NULL;
}

static void env_set(const char *kv)
{
    assert_true(fake_env_len < MAX_ENV);
    fake_env[fake_env_len++] = kv;
}

/* Writes `len` bytes of `content` to a new temporary file and returns its
 * path; teardown() removes it. */
static const char *tmp_file_n(const char *content, size_t len)
{
    char *path;
    int fd;

    assert_true(tmp_count < KEEL_ARRAY_LEN(tmp_paths));
    path = tmp_paths[tmp_count++];
    snprintf(path, sizeof(tmp_paths[0]), "/tmp/keel-test-config-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path;
}

static const char *tmp_file(const char *content)
{
    return tmp_file_n(content, strlen(content));
}

static int setup(void **state)
{
    (void)state;
    fake_env_len = 0;
    tmp_count = 0;
    return 0;
}

static int teardown(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < tmp_count; i++)
        unlink(tmp_paths[i]);
    return 0;
}

struct result {
    struct keel_config cfg;
    struct keel_buf errs;
    bool usage;
    keel_status rc;
};

static void load_argv(struct result *r, int argc, char **argv)
{
    keel_buf_init(&r->errs, 1 << 16);
    r->usage = false;
    r->rc = keel_config_load(&r->cfg, argc, argv, fake_getenv, &r->errs, &r->usage);
    if (r->rc == KEEL_OK)
        assert_int_equal(r->errs.len, 0);
    else
        assert_true(r->errs.len > 0);
}

static void load(struct result *r)
{
    load_argv(r, 0, NULL);
}

static void done(struct result *r)
{
    keel_config_free(&r->cfg);
    keel_buf_free(&r->errs);
}

static const char *errs(const struct result *r)
{
    return r->errs.data ? r->errs.data : "";
}

static size_t count_lines(const struct result *r)
{
    size_t n = 0, i;

    for (i = 0; i < r->errs.len; i++)
        n += r->errs.data[i] == '\n';
    return n;
}

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("\"%s\" not found in:\n%s", (needle), (hay));                                 \
    } while (0)

#define assert_not_contains(hay, needle)                                                           \
    do {                                                                                           \
        if (strstr((hay), (needle)))                                                               \
            fail_msg("\"%s\" unexpectedly found in:\n%s", (needle), (hay));                        \
    } while (0)

/* Loads with one environment variable set and expects it to be refused
 * with exactly one line that names it and contains `why`. */
static void expect_env_error(const char *kv, const char *why)
{
    struct result r;
    char name[64];

    fake_env_len = 0;
    env_set(kv);
    load(&r);
    snprintf(name, sizeof(name), "%.*s (environment)", (int)strcspn(kv, "="), kv);
    if (r.rc != KEEL_E_INVALID)
        fail_msg("%s was accepted", kv);
    assert_false(r.usage);
    assert_int_equal(count_lines(&r), 1);
    assert_contains(errs(&r), name);
    assert_contains(errs(&r), why);
    assert_true(strncmp(errs(&r), "config: ", 8) == 0);
    done(&r);
}

static void expect_env_ok(const char *kv)
{
    struct result r;

    fake_env_len = 0;
    env_set(kv);
    load(&r);
    if (r.rc != KEEL_OK)
        fail_msg("%s refused: %s", kv, errs(&r));
    done(&r);
}

/* -------------------------------------------------------------- defaults */

static void test_defaults(void **state)
{
    struct result r;
    const struct keel_config *c = &r.cfg;

    (void)state;
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_null(c->config_path);
    assert_int_equal(c->env, KEEL_ENV_DEVELOPMENT);
    assert_string_equal(c->listen.host, "127.0.0.1");
    assert_int_equal(c->listen.port, 8080);
    assert_true(c->threads >= 1 && c->threads <= 256);
    assert_string_equal(c->database_url, "sqlite:./var/keel.db");
    assert_int_equal(c->database_replicas.count, 0);
    assert_null(c->database_replicas.raw);
    assert_int_equal(c->database_pool_size, 16);
    assert_null(c->redis_url);
    assert_null(c->jwt_secret);
    assert_string_equal(c->jwt_issuer, "keel");
    assert_string_equal(c->jwt_audience, "keel-api");
    assert_int_equal(c->access_token_ttl_s, 900);
    assert_int_equal(c->refresh_token_ttl_s, 604800);
    assert_int_equal(c->rate_limit_ip.count, 1000);
    assert_int_equal(c->rate_limit_ip.period_seconds, 60);
    assert_int_equal(c->rate_limit_user.count, 100);
    assert_int_equal(c->rate_limit_user.period_seconds, 60);
    assert_int_equal(c->cors_origins.count, 0);
    assert_false(c->cors_allow_any);
    assert_int_equal(c->max_body_bytes, 1048576);
    assert_int_equal(c->shutdown_timeout_ms, 30000);
    assert_int_equal(c->log_level, KEEL_CONFIG_LOG_INFO);
    assert_null(c->smtp_url);
    assert_null(c->payment_provider_url);
    assert_string_equal(c->data_dir, "./var");
    assert_null(c->otel_exporter_otlp_endpoint);
    assert_string_equal(c->otel_service_name, "keel");
    assert_int_equal(c->max_connections, 16384);
    assert_int_equal(c->header_timeout_ms, 10000);
    assert_int_equal(c->body_timeout_ms, 30000);
    assert_int_equal(c->keepalive_timeout_ms, 75000);
    assert_int_equal(c->send_timeout_ms, 30000);
    assert_int_equal(c->max_header_bytes, 16384);
    assert_int_equal(c->max_headers, 100);
    assert_int_equal(c->max_uri_bytes, 8192);
    assert_false(c->debug_routes);
    done(&r);
}

static void test_threads_auto(void **state)
{
    struct result r;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    (void)state;
    env_set("KEEL_THREADS=auto");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    /* The affinity mask may be smaller than the online count, never larger. */
    assert_true(r.cfg.threads >= 1 && (long)r.cfg.threads <= (cpus > 256 ? 256 : cpus));
    done(&r);
}

/* ------------------------------------------------------------ precedence */

static void test_precedence_layers(void **state)
{
    const char *path = tmp_file("threads = 2\n"
                                "log_level = debug\n"
                                "listen = 0.0.0.0:9000\n"
                                "jwt_issuer = from-file\n");
    char cfgenv[128];
    char *argv[] = {"--threads", "4", "--jwt-issuer=from-flag"};
    struct result r;

    (void)state;
    snprintf(cfgenv, sizeof(cfgenv), "KEEL_CONFIG=%s", path);

    /* File over defaults. */
    env_set(cfgenv);
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_string_equal(r.cfg.config_path, path);
    assert_int_equal(r.cfg.threads, 2);
    assert_int_equal(r.cfg.log_level, KEEL_CONFIG_LOG_DEBUG);
    assert_string_equal(r.cfg.listen.host, "0.0.0.0");
    assert_int_equal(r.cfg.listen.port, 9000);
    assert_int_equal(r.cfg.max_headers, 100); /* untouched default */
    done(&r);

    /* Environment over file. */
    env_set("KEEL_THREADS=3");
    env_set("KEEL_JWT_ISSUER=from-env");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_int_equal(r.cfg.threads, 3);
    assert_string_equal(r.cfg.jwt_issuer, "from-env");
    assert_int_equal(r.cfg.log_level, KEEL_CONFIG_LOG_DEBUG); /* still from the file */
    done(&r);

    /* Flags over environment. */
    load_argv(&r, 3, argv);
    assert_int_equal(r.rc, KEEL_OK);
    assert_int_equal(r.cfg.threads, 4);
    assert_string_equal(r.cfg.jwt_issuer, "from-flag");
    assert_string_equal(r.cfg.listen.host, "0.0.0.0"); /* still from the file */
    done(&r);
}

static void test_config_flag_beats_env(void **state)
{
    const char *env_file = tmp_file("threads = 7\n");
    const char *flag_file = tmp_file("threads = 9\n");
    char cfgenv[128];
    char *argv[] = {"--config", (char *)(uintptr_t)flag_file};
    struct result r;

    (void)state;
    snprintf(cfgenv, sizeof(cfgenv), "KEEL_CONFIG=%s", env_file);
    env_set(cfgenv);
    load_argv(&r, 2, argv);
    assert_int_equal(r.rc, KEEL_OK);
    assert_int_equal(r.cfg.threads, 9);
    assert_string_equal(r.cfg.config_path, flag_file);
    done(&r);
}

static void test_flag_forms(void **state)
{
    char *a1[] = {"--threads=5", "--max-body-bytes", "2048", "--debug-routes"};
    char *a2[] = {"--debug-routes", "false", "--otel-exporter-otlp-endpoint", "http://c:4318"};
    char *a3[] = {"--debug-routes=on", "--threads", "2", "--threads", "3"};
    struct result r;

    (void)state;
    load_argv(&r, 4, a1);
    assert_int_equal(r.rc, KEEL_OK);
    assert_int_equal(r.cfg.threads, 5);
    assert_int_equal(r.cfg.max_body_bytes, 2048);
    assert_true(r.cfg.debug_routes);
    done(&r);

    load_argv(&r, 4, a2);
    assert_int_equal(r.rc, KEEL_OK);
    assert_false(r.cfg.debug_routes);
    assert_string_equal(r.cfg.otel_exporter_otlp_endpoint, "http://c:4318");
    done(&r);

    load_argv(&r, 5, a3);
    assert_int_equal(r.rc, KEEL_OK);
    assert_true(r.cfg.debug_routes);
    assert_int_equal(r.cfg.threads, 3); /* the last one wins */
    done(&r);
}

static void test_empty_env_is_unset(void **state)
{
    struct result r;

    (void)state;
    env_set("KEEL_THREADS=");
    env_set("KEEL_JWT_ISSUER=");
    env_set("KEEL_JWT_SECRET=");
    env_set("KEEL_JWT_SECRET_FILE=/nonexistent");
    load(&r);
    assert_int_equal(r.rc, KEEL_E_INVALID); /* only the _FILE one counts */
    assert_int_equal(count_lines(&r), 1);
    assert_contains(errs(&r), "KEEL_JWT_SECRET_FILE (environment): cannot read \"/nonexistent\"");
    done(&r);

    fake_env_len = 0;
    env_set("KEEL_THREADS=");
    env_set("KEEL_JWT_ISSUER=");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_string_equal(r.cfg.jwt_issuer, "keel");
    done(&r);
}

/* --------------------------------------------------------------- secrets */

static void test_secret_file(void **state)
{
    const char *env_secret = tmp_file("0123456789abcdef0123456789abcdef-env\n");
    const char *ini_secret = tmp_file("0123456789abcdef0123456789abcdef-ini\r\n");
    const char *flag_secret = tmp_file("sqlite:/tmp/from-flag.db");
    char kv[128], ini[256];
    char *argv[] = {"--database-url-file", (char *)(uintptr_t)flag_secret};
    struct result r;

    (void)state;
    snprintf(kv, sizeof(kv), "KEEL_JWT_SECRET_FILE=%s", env_secret);
    env_set(kv);
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_string_equal(r.cfg.jwt_secret, "0123456789abcdef0123456789abcdef-env");
    done(&r);

    fake_env_len = 0;
    snprintf(ini, sizeof(ini), "[keel]\njwt_secret_file = %s\n", ini_secret);
    snprintf(kv, sizeof(kv), "KEEL_CONFIG=%s", tmp_file(ini));
    env_set(kv);
    load_argv(&r, 2, argv);
    assert_int_equal(r.rc, KEEL_OK);
    assert_string_equal(r.cfg.jwt_secret, "0123456789abcdef0123456789abcdef-ini");
    assert_string_equal(r.cfg.database_url, "sqlite:/tmp/from-flag.db");
    done(&r);
}

static void test_secret_file_problems(void **state)
{
    const char *empty = tmp_file("\n");
    char kv1[128], kv2[128];
    struct result r;

    (void)state;
    snprintf(kv1, sizeof(kv1), "KEEL_REDIS_URL_FILE=%s", empty);
    env_set(kv1);
    snprintf(kv2, sizeof(kv2), "KEEL_SMTP_URL_FILE=/nonexistent/keel-secret");
    env_set(kv2);
    load(&r);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_int_equal(count_lines(&r), 2);
    assert_contains(errs(&r), "KEEL_REDIS_URL_FILE (environment): the file");
    assert_contains(errs(&r), "is empty");
    assert_contains(errs(&r), "KEEL_SMTP_URL_FILE (environment): cannot read");
    done(&r);
}

static void test_secret_file_limits(void **state)
{
    static char big[70000];
    char kv1[128], kv2[128], kv3[128];
    struct result r;

    (void)state;
    /* A line break just past the limit must not make a cut file look whole. */
    memset(big, 'k', sizeof(big));
    big[65536] = '\n';
    snprintf(kv1, sizeof(kv1), "KEEL_JWT_SECRET_FILE=%s", tmp_file_n(big, sizeof(big)));
    snprintf(kv2, sizeof(kv2), "KEEL_REDIS_URL_FILE=%s", tmp_file_n("redis://a\0b", 11));
    snprintf(kv3, sizeof(kv3), "KEEL_SMTP_URL_FILE=%s", tmp_file_n(big, 65536));
    env_set(kv1);
    env_set(kv2);
    env_set(kv3);
    load(&r);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_int_equal(count_lines(&r), 3);
    assert_contains(errs(&r), "KEEL_JWT_SECRET_FILE (environment): the file");
    assert_contains(errs(&r), "is larger than 64 KiB");
    assert_contains(errs(&r), "contains a NUL byte");
    /* 64 KiB exactly is read, then refused as a URL without showing it. */
    assert_contains(errs(&r), "KEEL_SMTP_URL_FILE (environment): must start with smtp://");
    assert_not_contains(errs(&r), "kkkk");
    done(&r);
}

static void test_secret_and_file_both_set(void **state)
{
    const char *f = tmp_file("0123456789abcdef0123456789abcdef\n");
    char kv[128], ini[256];
    char *argv[] = {"--jwt-secret", "x", "--jwt-secret-file", (char *)(uintptr_t)f};
    struct result r;

    (void)state;
    snprintf(kv, sizeof(kv), "KEEL_JWT_SECRET_FILE=%s", f);
    env_set(kv);
    env_set("KEEL_JWT_SECRET=0123456789abcdef0123456789abcdef");
    load(&r);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_false(r.usage);
    assert_int_equal(count_lines(&r), 1);
    assert_contains(errs(&r), "KEEL_JWT_SECRET and KEEL_JWT_SECRET_FILE are both set");
    assert_not_contains(errs(&r), "0123456789abcdef");
    done(&r);

    fake_env_len = 0;
    load_argv(&r, 4, argv);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_false(r.usage);
    assert_int_equal(count_lines(&r), 1);
    assert_contains(errs(&r), "--jwt-secret and --jwt-secret-file are both given");
    done(&r);

    snprintf(ini, sizeof(ini), "jwt_secret = abc\njwt_secret_file = %s\n", f);
    snprintf(kv, sizeof(kv), "KEEL_CONFIG=%s", tmp_file(ini));
    env_set(kv);
    load(&r);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_int_equal(count_lines(&r), 1);
    assert_contains(errs(&r), ":2: jwt_secret_file: already set on line 1");
    done(&r);
}

static void test_errors_never_show_secrets(void **state)
{
    char ini[256], kv[300];
    struct result r;

    (void)state;
    env_set("KEEL_DATABASE_URL=mysql://root:hunter2@db/keel");
    env_set("KEEL_REDIS_URL=redis://:hunter3@cache /0");
    snprintf(ini, sizeof(ini), "smtp_url = http://user:hunter4@mail\n");
    snprintf(kv, sizeof(kv), "KEEL_CONFIG=%s", tmp_file(ini));
    env_set(kv);
    env_set("KEEL_DATABASE_REPLICAS=postgres://u:hunter5@r1/db,,postgres://u:hunter6@r2/db");
    load(&r);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_int_equal(count_lines(&r), 4);
    assert_contains(errs(&r), "KEEL_DATABASE_URL (environment): must start with");
    assert_contains(errs(&r), "KEEL_REDIS_URL (environment): must not contain spaces");
    assert_contains(errs(&r), ":1: smtp_url: must start with smtp:// or smtps://");
    assert_contains(errs(&r), "KEEL_DATABASE_REPLICAS (environment): has an empty entry");
    assert_not_contains(errs(&r), "hunter");
    done(&r);
}

/* ------------------------------------------------------------ validators */

static void test_validators_one_line_each(void **state)
{
    static const struct {
        const char *kv, *why;
    } bad[] = {
        {"KEEL_ENV=prod", "must be development, staging or production (got \"prod\")"},
        {"KEEL_THREADS=abc", "must be an integer between 1 and 256 or auto (got \"abc\")"},
        {"KEEL_THREADS=0", "between 1 and 256"},
        {"KEEL_THREADS=257", "between 1 and 256"},
        {"KEEL_THREADS=-1", "between 1 and 256"},
        {"KEEL_THREADS= 4", "between 1 and 256"},
        {"KEEL_THREADS=99999999999999999999999", "between 1 and 256"},
        {"KEEL_DATABASE_URL=mysql://x", "must start with sqlite:, postgres:// or postgresql://"},
        {"KEEL_DATABASE_REPLICAS=sqlite:x", "must start with postgres:// or postgresql://"},
        {"KEEL_DATABASE_POOL_SIZE=1025", "between 1 and 1024"},
        {"KEEL_REDIS_URL=memcached://x", "must start with redis://, rediss:// or unix://"},
        {"KEEL_JWT_ISSUER=a\tb", "must not contain control characters"},
        {"KEEL_ACCESS_TOKEN_TTL=0", "between 1 and 86400"},
        {"KEEL_REFRESH_TOKEN_TTL=1.5", "between 1 and 31536000"},
        {"KEEL_RATE_LIMIT_IP=fast", "must be COUNT/PERIOD"},
        {"KEEL_RATE_LIMIT_USER=10/week", "PERIOD must be"},
        {"KEEL_CORS_ORIGINS=example.com", "origin must be * or scheme://host[:port]"},
        {"KEEL_MAX_BODY_BYTES=0", "between 1 and 1073741824"},
        {"KEEL_MAX_BODY_BYTES=1073741825", "between 1 and 1073741824"},
        {"KEEL_SHUTDOWN_TIMEOUT=forever", "must be a number of seconds between 0 and 3600"},
        {"KEEL_LOG_LEVEL=verbose", "must be error, warn, info or debug"},
        {"KEEL_SMTP_URL=mail.example.com", "must start with smtp://"},
        {"KEEL_PAYMENT_PROVIDER_URL=ftp://pay", "must start with http:// or https://"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT=collector:4318", "must start with http:// or https://"},
        {"KEEL_MAX_CONNECTIONS=1000001", "between 1 and 1000000"},
        {"KEEL_HEADER_TIMEOUT=0", "between 0.001 and 3600"},
        {"KEEL_BODY_TIMEOUT=3600.001", "between 0.001 and 3600"},
        {"KEEL_KEEPALIVE_TIMEOUT=-1", "between 0 and 3600"},
        {"KEEL_SEND_TIMEOUT=0.0005", "at most 3 decimals"},
        {"KEEL_SEND_TIMEOUT=1e3", "seconds"},
        {"KEEL_SEND_TIMEOUT=.5", "seconds"},
        {"KEEL_SEND_TIMEOUT=5.", "seconds"},
        {"KEEL_MAX_HEADER_BYTES=1023", "between 1024 and 1048576"},
        {"KEEL_MAX_HEADERS=1001", "between 1 and 1000"},
        {"KEEL_MAX_URI_BYTES=63", "between 64 and 1048576"},
        {"KEEL_DEBUG_ROUTES=maybe", "must be true or false"},
        {"KEEL_LISTEN=localhost", "must be HOST:PORT"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++)
        expect_env_error(bad[i].kv, bad[i].why);
}

static void test_all_problems_reported(void **state)
{
    static const char *const bad[] = {
        "KEEL_THREADS=abc",          "KEEL_LISTEN=nope",
        "KEEL_LOG_LEVEL=loud",       "KEEL_MAX_HEADERS=0",
        "KEEL_RATE_LIMIT_IP=1/year", "KEEL_HEADER_TIMEOUT=x",
        "KEEL_DEBUG_ROUTES=2",       "KEEL_ENV=qa",
        "KEEL_CORS_ORIGINS=a,b",     "KEEL_DATA_DIR=a\nb",
        "OTEL_SERVICE_NAME=\x7f",    "KEEL_MAX_URI_BYTES=1k",
    };
    struct result r;
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++)
        env_set(bad[i]);
    load(&r);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_false(r.usage);
    /* One line per problem: the two bad CORS origins are two problems. */
    assert_int_equal(count_lines(&r), KEEL_ARRAY_LEN(bad) + 1);
    /* A control character is escaped, never echoed raw. */
    assert_contains(errs(&r), "KEEL_DATA_DIR (environment): must not contain control "
                              "characters (got \"a\\x0ab\")");
    done(&r);
}

static void test_good_values(void **state)
{
    static const char *const good[] = {
        "KEEL_ENV=STAGING",
        "KEEL_LOG_LEVEL=Debug",
        "KEEL_THREADS=256",
        "KEEL_DATABASE_URL=postgresql://u:p@h1:5432,h2:5432/keel?target_session_attrs=read-write",
        "KEEL_REDIS_URL=rediss://cache:6380/2",
        "KEEL_SMTP_URL=smtps://mail:465",
        "KEEL_DEBUG_ROUTES=yes",
        "KEEL_DEBUG_ROUTES=0",
        "KEEL_KEEPALIVE_TIMEOUT=0",
        "KEEL_SHUTDOWN_TIMEOUT=0.25",
        "KEEL_MAX_BODY_BYTES=1073741824",
        "KEEL_JWT_SECRET=short is fine outside production",
    };
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(good); i++)
        expect_env_ok(good[i]);
}

static void test_durations(void **state)
{
    struct result r;

    (void)state;
    env_set("KEEL_HEADER_TIMEOUT=0.5");
    env_set("KEEL_BODY_TIMEOUT=1.25");
    env_set("KEEL_SEND_TIMEOUT=0.001");
    env_set("KEEL_KEEPALIVE_TIMEOUT=3600");
    env_set("KEEL_SHUTDOWN_TIMEOUT=007");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_int_equal(r.cfg.header_timeout_ms, 500);
    assert_int_equal(r.cfg.body_timeout_ms, 1250);
    assert_int_equal(r.cfg.send_timeout_ms, 1);
    assert_int_equal(r.cfg.keepalive_timeout_ms, 3600000);
    assert_int_equal(r.cfg.shutdown_timeout_ms, 7000);
    done(&r);
}

static void test_rate_limit_parsing(void **state)
{
    static const struct {
        const char *text;
        uint32_t count, period;
    } good[] = {
        {"10/s", 10, 1},     {"10/sec", 10, 1},
        {"5/min", 5, 60},    {"7/hour", 7, 3600},
        {"1/day", 1, 86400}, {"3/MIN", 3, 60},
        {"2/minute", 2, 60}, {"1000000000/s", 1000000000, 1},
    };
    static const char *const bad[] = {
        "0/min",    "10",           "10/",   "/min",  "10/fortnight", "-1/min",
        "10/min/x", "1000000001/s", "1e3/s", " 10/s", "10 /s",        "10/ s",
    };
    char kv[64];
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(good); i++) {
        struct result r;

        fake_env_len = 0;
        snprintf(kv, sizeof(kv), "KEEL_RATE_LIMIT_USER=%s", good[i].text);
        env_set(kv);
        load(&r);
        if (r.rc != KEEL_OK)
            fail_msg("%s refused: %s", good[i].text, errs(&r));
        assert_int_equal(r.cfg.rate_limit_user.count, good[i].count);
        assert_int_equal(r.cfg.rate_limit_user.period_seconds, good[i].period);
        assert_int_equal(r.cfg.rate_limit_ip.count, 1000); /* the other one is untouched */
        done(&r);
    }
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        snprintf(kv, sizeof(kv), "KEEL_RATE_LIMIT_IP=%s", bad[i]);
        expect_env_error(kv, "KEEL_RATE_LIMIT_IP (environment): ");
    }
}

static void test_listen_parsing(void **state)
{
    static const struct {
        const char *text, *host;
        int port;
    } good[] = {
        {"0.0.0.0:0", "0.0.0.0", 0},
        {"[::1]:8080", "::1", 8080},
        {"[::]:443", "::", 443},
        {"localhost:65535", "localhost", 65535},
        {"api.example.com:80", "api.example.com", 80},
        {"[2001:db8::1]:9000", "2001:db8::1", 9000},
    };
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"127.0.0.1", "must be HOST:PORT"},
        {"127.0.0.1:65536", "port must be an integer between 0 and 65535"},
        {"127.0.0.1:-1", "port must be"},
        {"127.0.0.1:", "has an empty port"},
        {"127.0.0.1:http", "port must be"},
        {":8080", "has no host"},
        {"::1:8080", "needs brackets around an IPv6 address"},
        {"[::1]8080", "must have ':' after"},
        {"[::1]", "must be HOST:PORT"},
        {"[zz::1]:80", "invalid IPv6 address"},
        {"[::1:80", "invalid IPv6 address"},
        {"999.1.1.1:80", "invalid host"},
        {"bad host:80", "invalid host"},
    };
    char kv[64];
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(good); i++) {
        struct result r;

        fake_env_len = 0;
        snprintf(kv, sizeof(kv), "KEEL_LISTEN=%s", good[i].text);
        env_set(kv);
        load(&r);
        if (r.rc != KEEL_OK)
            fail_msg("%s refused: %s", good[i].text, errs(&r));
        assert_string_equal(r.cfg.listen.host, good[i].host);
        assert_int_equal(r.cfg.listen.port, good[i].port);
        done(&r);
    }
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        snprintf(kv, sizeof(kv), "KEEL_LISTEN=%s", bad[i].text);
        expect_env_error(kv, bad[i].why);
    }
}

static void test_cors_origins(void **state)
{
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"https://x.com/", "must not end with '/'"},
        {"https://x.com/app", "must not have a path"},
        {"https://x.com?q", "must not have a path"},
        {"ftp//x.com", "must be * or scheme://host[:port]"},
        {"https://", "has no host"},
        {"https://u@x.com", "must not contain a user name"},
        {"https://x.com:0", "port must be an integer between 1 and 65535"},
        {"https://x.com:", "has an empty port"},
        {"https://x.com:99999", "port must be an integer between 1 and 65535"},
        {"https://x.com,", "has an empty entry"},
        {"*,https://a.com", "cannot mix * with other origins"},
    };
    struct result r;
    char kv[96];
    size_t i;

    (void)state;
    env_set("KEEL_CORS_ORIGINS=https://App.Example.com, http://localhost:3000,"
            "https://a.b:443,http://[::1]:80,capacitor://localhost");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_int_equal(r.cfg.cors_origins.count, 5);
    assert_string_equal(r.cfg.cors_origins.items[0], "https://app.example.com");
    assert_string_equal(r.cfg.cors_origins.items[1], "http://localhost:3000");
    assert_string_equal(r.cfg.cors_origins.items[2], "https://a.b");
    assert_string_equal(r.cfg.cors_origins.items[3], "http://[::1]");
    assert_string_equal(r.cfg.cors_origins.items[4], "capacitor://localhost");
    assert_string_equal(r.cfg.cors_origins.raw, "https://app.example.com,http://localhost:3000,"
                                                "https://a.b,http://[::1],capacitor://localhost");
    assert_false(r.cfg.cors_allow_any);
    done(&r);

    fake_env_len = 0;
    env_set("KEEL_CORS_ORIGINS=*");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_true(r.cfg.cors_allow_any);
    assert_int_equal(r.cfg.cors_origins.count, 1);
    done(&r);

    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        snprintf(kv, sizeof(kv), "KEEL_CORS_ORIGINS=%s", bad[i].text);
        expect_env_error(kv, bad[i].why);
    }
}

static void test_database_replicas(void **state)
{
    struct result r;

    (void)state;
    env_set("KEEL_DATABASE_REPLICAS=postgres://u:p@r1/db, postgresql://h1,h2/db?x=1");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_int_equal(r.cfg.database_replicas.count, 2);
    assert_string_equal(r.cfg.database_replicas.items[0], "postgres://u:p@r1/db");
    assert_string_equal(r.cfg.database_replicas.items[1], "postgresql://h1,h2/db?x=1");
    done(&r);
}

static void test_refresh_shorter_than_access(void **state)
{
    struct result r;

    (void)state;
    env_set("KEEL_ACCESS_TOKEN_TTL=3600");
    env_set("KEEL_REFRESH_TOKEN_TTL=60");
    load(&r);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_int_equal(count_lines(&r), 1);
    assert_contains(errs(&r), "KEEL_REFRESH_TOKEN_TTL (environment): must not be shorter than "
                              "KEEL_ACCESS_TOKEN_TTL (3600)");
    done(&r);
}

/* ------------------------------------------------------ production rules */

static void test_production_rules(void **state)
{
    char *argv[] = {"--debug-routes"};
    struct result r;

    (void)state;
    env_set("KEEL_ENV=production");
    load(&r);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_int_equal(count_lines(&r), 1);
    assert_contains(errs(&r), "KEEL_JWT_SECRET: required when KEEL_ENV=production");
    done(&r);

    env_set("KEEL_JWT_SECRET=too-short-secret-31-bytes-long!");
    env_set("KEEL_CORS_ORIGINS=*");
    load_argv(&r, 1, argv);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_false(r.usage);
    assert_int_equal(count_lines(&r), 3);
    assert_contains(errs(&r), "KEEL_JWT_SECRET (environment): must be at least 32 bytes");
    assert_contains(errs(&r), "KEEL_CORS_ORIGINS (environment): * is not allowed");
    assert_contains(errs(&r), "--debug-routes (command line): must be off");
    assert_not_contains(errs(&r), "too-short-secret");
    done(&r);

    fake_env_len = 0;
    env_set("KEEL_ENV=production");
    env_set("KEEL_JWT_SECRET=exactly-32-bytes-long-secret-key");
    env_set("KEEL_CORS_ORIGINS=https://shop.example.com");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_int_equal(r.cfg.env, KEEL_ENV_PRODUCTION);
    done(&r);

    /* The same settings are fine in development. */
    fake_env_len = 0;
    env_set("KEEL_CORS_ORIGINS=*");
    env_set("KEEL_DEBUG_ROUTES=true");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_null(r.cfg.jwt_secret);
    assert_true(r.cfg.debug_routes);
    done(&r);
}

/* ------------------------------------------------------------------ argv */

static void test_usage_errors(void **state)
{
    char *a1[] = {"--thread", "4"};
    char *a2[] = {"--threads"};
    char *a3[] = {"--listen", "--threads", "2"};
    char *a4[] = {"serve"};
    char *a5[] = {"--jwt-secrte=hunter2", "--threads=abc"};
    char *a6[] = {"--threads=abc"};
    struct result r;

    (void)state;
    load_argv(&r, 2, a1);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_true(r.usage);
    assert_int_equal(count_lines(&r), 1); /* "4" goes with the unknown flag */
    assert_contains(errs(&r), "config: --thread: unknown flag");
    done(&r);

    load_argv(&r, 1, a2);
    assert_true(r.usage);
    assert_contains(errs(&r), "--threads: missing value");
    done(&r);

    load_argv(&r, 3, a3);
    assert_true(r.usage);
    assert_contains(errs(&r), "--listen: missing value");
    done(&r);

    load_argv(&r, 1, a4);
    assert_true(r.usage);
    assert_contains(errs(&r), "serve: unexpected argument");
    done(&r);

    /* Usage problems come alone, and a mistyped flag's value is not shown. */
    load_argv(&r, 2, a5);
    assert_true(r.usage);
    assert_int_equal(count_lines(&r), 1);
    assert_contains(errs(&r), "--jwt-secrte: unknown flag");
    assert_not_contains(errs(&r), "hunter2");
    done(&r);

    /* A bad value is a configuration problem, not a usage one. */
    load_argv(&r, 1, a6);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_false(r.usage);
    assert_contains(errs(&r), "config: --threads (command line): must be an integer between 1 "
                              "and 256 or auto (got \"abc\")");
    done(&r);
}

static void test_extra_flags(void **state)
{
    struct keel_config_extra extra[] = {
        {"--migrate", false, "apply migrations first", false, NULL},
        {"--queues", true, "queues to work on", false, NULL},
        {"-h", false, "help", false, NULL},
    };
    char *a1[] = {"--migrate", "--threads", "2", "--queues=mail,pay"};
    char *a2[] = {"-h", "--queues", "a"};
    char *a3[] = {"--migrate=yes"};
    struct keel_config cfg;
    struct keel_buf e;
    bool usage = false;

    (void)state;
    keel_buf_init(&e, 4096);
    assert_int_equal(keel_config_load_ex(&cfg, 4, a1, extra, 3, fake_getenv, &e, &usage), KEEL_OK);
    assert_true(extra[0].set);
    assert_true(extra[1].set);
    assert_string_equal(extra[1].value, "mail,pay");
    assert_false(extra[2].set);
    assert_int_equal(cfg.threads, 2);
    keel_config_free(&cfg);

    assert_int_equal(keel_config_load_ex(&cfg, 3, a2, extra, 3, fake_getenv, &e, &usage), KEEL_OK);
    assert_false(extra[0].set); /* reset by every load */
    assert_true(extra[2].set);
    assert_string_equal(extra[1].value, "a");
    keel_config_free(&cfg);

    assert_int_equal(keel_config_load_ex(&cfg, 1, a3, extra, 3, fake_getenv, &e, &usage),
                     KEEL_E_INVALID);
    assert_true(usage);
    assert_contains(e.data, "--migrate: takes no value");

    /* Without the extras the same flag is unknown. */
    keel_buf_reset(&e);
    assert_int_equal(keel_config_load(&cfg, 1, a1, fake_getenv, &e, &usage), KEEL_E_INVALID);
    assert_true(usage);
    assert_contains(e.data, "--migrate: unknown flag");
    keel_buf_free(&e);
}

/* ------------------------------------------------------------------- INI */

static void load_ini(struct result *r, const char *text)
{
    char kv[128];

    fake_env_len = 0;
    snprintf(kv, sizeof(kv), "KEEL_CONFIG=%s", tmp_file(text));
    env_set(kv);
    load(r);
}

static void test_ini_syntax(void **state)
{
    struct result r;
    char long_line[2048];

    (void)state;
    load_ini(&r, "\xEF\xBB\xBF# comment\n"
                 "; another\n"
                 "\n"
                 "LISTEN = [::1]:9090\n"
                 "[keel]\n"
                 "threads=3\n"
                 "  max_headers : 50\n"
                 "jwt_issuer = a ; not a comment\n");
    assert_int_equal(r.rc, KEEL_OK);
    assert_string_equal(r.cfg.listen.host, "::1");
    assert_int_equal(r.cfg.listen.port, 9090);
    assert_int_equal(r.cfg.threads, 3);
    assert_int_equal(r.cfg.max_headers, 50);
    assert_string_equal(r.cfg.jwt_issuer, "a ; not a comment");
    done(&r);

    /* Lines longer than libinih's built-in 200 bytes are read whole. */
    snprintf(long_line, sizeof(long_line),
             "payment_provider_url = https://pay.example.com/%0900d\n", 7);
    load_ini(&r, long_line);
    assert_int_equal(r.rc, KEEL_OK);
    assert_int_equal(strlen(r.cfg.payment_provider_url), strlen(long_line) - 24);
    done(&r);
}

static void test_ini_errors(void **state)
{
    struct result r;

    (void)state;
    load_ini(&r, "threads = 2\n"              /* 1 */
                 "threadz = 2\n"              /* 2: unknown option */
                 "[server]\n"                 /* 3: unknown section */
                 "port = 80\n"                /* 4: skipped with its section */
                 "[keel]\n"                   /* 5 */
                 "just some words\n"          /* 6: syntax */
                 "threads = 4\n"              /* 7: duplicate */
                 "max_headers = lots\n"       /* 8: bad value */
                 "config = /etc/other.conf\n" /* 9: not in a file */
                 "[keel\n"                    /* 10: syntax */
                 "  continued line\n");       /* 11: syntax */
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_false(r.usage);
    assert_int_equal(count_lines(&r), 8);
    assert_contains(errs(&r), ":2: threadz: unknown option\n");
    assert_contains(errs(&r), ":3: unknown section [server]");
    assert_contains(errs(&r), ":6: expected 'name = value'");
    assert_contains(errs(&r), ":7: threads: already set on line 1\n");
    assert_contains(errs(&r), ":8: max_headers: must be an integer between 1 and 1000 (got "
                              "\"lots\")\n");
    assert_contains(errs(&r), ":9: config: cannot be set in a config file\n");
    assert_contains(errs(&r), ":10: section header has no ']'\n");
    assert_contains(errs(&r), ":11: expected 'name = value'");
    assert_not_contains(errs(&r), "port");
    done(&r);
}

static void test_ini_missing_file(void **state)
{
    char *argv[] = {"--config", "/nonexistent/keel.conf"};
    struct result r;

    (void)state;
    load_argv(&r, 2, argv);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_false(r.usage);
    assert_contains(errs(&r), "/nonexistent/keel.conf: cannot open config file");
    done(&r);

    /* A directory opens but cannot be read. */
    argv[1] = "/tmp";
    load_argv(&r, 2, argv);
    assert_int_equal(r.rc, KEEL_E_INVALID);
    assert_contains(errs(&r), "/tmp: cannot read config file");
    done(&r);
}

/* ---------------------------------------------------------------- output */

static void test_to_json_redacts(void **state)
{
    struct result r;
    struct keel_buf out;
    struct json_object *root, *v;

    (void)state;
    env_set("KEEL_JWT_SECRET=s3cr3t-jwt-0123456789abcdef0123456789");
    env_set("KEEL_DATABASE_URL=postgres://keel:s3cr3t-db@localhost/keel");
    env_set("KEEL_REDIS_URL=redis://:s3cr3t-redis@localhost:6379/0");
    env_set("KEEL_DATABASE_REPLICAS=postgres://keel:s3cr3t-replica@r1/keel");
    env_set("KEEL_HEADER_TIMEOUT=0.5");
    env_set("KEEL_LISTEN=[::1]:0");
    env_set("KEEL_RATE_LIMIT_IP=20/hour");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    keel_buf_init(&out, 1 << 16);
    assert_int_equal(keel_config_to_json(&r.cfg, &out), KEEL_OK);
    assert_not_contains(out.data, "s3cr3t");
    root = json_tokener_parse(out.data);
    assert_non_null(root);
    assert_true(json_object_object_get_ex(root, "KEEL_JWT_SECRET", &v));
    assert_string_equal(json_object_get_string(v), "[redacted]");
    assert_true(json_object_object_get_ex(root, "KEEL_DATABASE_REPLICAS", &v));
    assert_string_equal(json_object_get_string(v), "[redacted]");
    assert_true(json_object_object_get_ex(root, "KEEL_SMTP_URL", &v));
    assert_null(v); /* unset secret: null */
    assert_true(json_object_object_get_ex(root, "KEEL_THREADS", &v));
    assert_int_equal(json_object_get_int64(v), r.cfg.threads);
    assert_true(json_object_object_get_ex(root, "KEEL_HEADER_TIMEOUT", &v));
    assert_true(json_object_get_double(v) == 0.5);
    assert_true(json_object_object_get_ex(root, "KEEL_SHUTDOWN_TIMEOUT", &v));
    assert_int_equal(json_object_get_int64(v), 30);
    assert_true(json_object_object_get_ex(root, "KEEL_LISTEN", &v));
    assert_string_equal(json_object_get_string(v), "[::1]:0");
    assert_true(json_object_object_get_ex(root, "KEEL_RATE_LIMIT_IP", &v));
    assert_string_equal(json_object_get_string(v), "20/hour");
    assert_true(json_object_object_get_ex(root, "KEEL_ENV", &v));
    assert_string_equal(json_object_get_string(v), "development");
    assert_true(json_object_object_get_ex(root, "KEEL_DEBUG_ROUTES", &v));
    assert_true(json_object_is_type(v, json_type_boolean));
    assert_true(json_object_object_get_ex(root, "OTEL_SERVICE_NAME", &v));
    assert_string_equal(json_object_get_string(v), "keel");
    assert_int_equal(json_object_object_length(root), 57);
    json_object_put(root);
    keel_buf_free(&out);
    done(&r);
}

static void test_print_help(void **state)
{
    char *text = NULL;
    size_t len = 0, lines = 0, i;
    FILE *f = open_memstream(&text, &len);

    (void)state;
    assert_non_null(f);
    keel_config_print_help(f);
    fclose(f);
    for (i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 57 + 6); /* every option, plus one _FILE line per secret */
    assert_contains(text, "--max-body-bytes N");
    assert_contains(text, "KEEL_MAX_BODY_BYTES");
    assert_contains(text, "(default: 1048576)");
    assert_contains(text, "--otel-exporter-otlp-endpoint URL");
    assert_contains(text, "--jwt-secret-file PATH");
    assert_contains(text, "KEEL_JWT_SECRET_FILE");
    free(text);
}

/* conf/keel.conf.example, found from this file's path as the compiler saw
 * it (relative to the build directory, where `meson test` runs) or from the
 * test binary's own location (build/tests/test_config). */
static FILE *open_example(void)
{
    const char *tail = "tests/unit/test_config.c";
    char path[8192], exe[4096];
    size_t root = strlen(__FILE__) - strlen(tail);
    ssize_t n;
    FILE *f;

    assert_true(strcmp(__FILE__ + root, tail) == 0);
    snprintf(path, sizeof(path), "%.*sconf/keel.conf.example", (int)root, __FILE__);
    f = fopen(path, "r");
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (f || n <= 0)
        return f;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0'; /* build/tests */
    *strrchr(exe, '/') = '\0'; /* build */
    snprintf(path, sizeof(path), "%s/%.*sconf/keel.conf.example", exe, (int)root, __FILE__);
    return fopen(path, "r");
}

static void test_example_file_shows_defaults(void **state)
{
    FILE *f = open_example();
    char line[1024], kv[128], *text = NULL;
    size_t len = 0, shown = 0;
    FILE *out = open_memstream(&text, &len);
    struct keel_buf plain, from_file;
    struct result r;

    (void)state;
    if (!f)
        fail_msg("conf/keel.conf.example not found next to %s", __FILE__);
    /* Uncomment every `#name = default` line. */
    while (fgets(line, sizeof(line), f)) {
        bool opt = line[0] == '#' && line[1] >= 'a' && line[1] <= 'z' && strstr(line, " =");

        fputs(opt ? line + 1 : line, out);
        shown += opt;
    }
    fclose(f);
    fclose(out);
    assert_int_equal(shown, 56); /* every option but KEEL_CONFIG itself */

    keel_buf_init(&plain, 1 << 16);
    keel_buf_init(&from_file, 1 << 16);
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    assert_int_equal(keel_config_to_json(&r.cfg, &plain), KEEL_OK);
    done(&r);
    snprintf(kv, sizeof(kv), "KEEL_CONFIG=%s", tmp_file(text));
    env_set(kv);
    load(&r);
    if (r.rc != KEEL_OK)
        fail_msg("the example does not load:\n%s", errs(&r));
    free(r.cfg.config_path); /* the only expected difference */
    r.cfg.config_path = NULL;
    assert_int_equal(keel_config_to_json(&r.cfg, &from_file), KEEL_OK);
    assert_string_equal(from_file.data, plain.data);
    done(&r);
    keel_buf_free(&plain);
    keel_buf_free(&from_file);
    free(text);
}

static void test_free_is_idempotent(void **state)
{
    struct result r;

    (void)state;
    env_set("KEEL_CORS_ORIGINS=https://a.com");
    load(&r);
    assert_int_equal(r.rc, KEEL_OK);
    keel_config_free(&r.cfg);
    assert_null(r.cfg.cors_origins.items);
    assert_null(r.cfg.listen.host);
    keel_config_free(&r.cfg);
    keel_buf_free(&r.errs);
    assert_string_equal(keel_config_env_name(KEEL_ENV_STAGING), "staging");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_threads_auto),
        T(test_precedence_layers),
        T(test_config_flag_beats_env),
        T(test_flag_forms),
        T(test_empty_env_is_unset),
        T(test_secret_file),
        T(test_secret_file_problems),
        T(test_secret_file_limits),
        T(test_secret_and_file_both_set),
        T(test_errors_never_show_secrets),
        T(test_validators_one_line_each),
        T(test_all_problems_reported),
        T(test_good_values),
        T(test_durations),
        T(test_rate_limit_parsing),
        T(test_listen_parsing),
        T(test_cors_origins),
        T(test_database_replicas),
        T(test_refresh_shorter_than_access),
        T(test_production_rules),
        T(test_usage_errors),
        T(test_extra_flags),
        T(test_ini_syntax),
        T(test_ini_errors),
        T(test_ini_missing_file),
        T(test_to_json_redacts),
        T(test_print_help),
        T(test_example_file_shows_defaults),
        T(test_free_is_idempotent),
    };

    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
