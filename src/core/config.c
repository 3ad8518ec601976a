/*
 * config.c - loads struct keel_config from defaults, an INI file, the
 * environment and the command line (SPEC section 5).
 *
 * DESIGN
 * Every option is one row of options[]: its environment name, a type, the
 * offset of its field in struct keel_config, its default spelled as the
 * environment would spell it, flags (secret, non-empty, ...) and a range or
 * word list. The flag and INI names are derived from the environment name,
 * so they cannot drift apart. The row's type picks one parser that checks
 * the text and writes the typed field; the defaults go through the same
 * parser, so what --help shows is exactly what is used.
 *
 * Layers are applied from the lowest precedence to the highest and every
 * value is parsed as it arrives: the last good value wins, and a bad value
 * is reported even when a higher layer overrides it, so a typo in the file
 * surfaces now rather than on the day the environment variable hiding it is
 * removed. Problems are appended to the caller's buffer and loading goes on,
 * so one run lists all of them. Checks that involve several options (the
 * production rules) run last, on the final values.
 */
#include "keel/config.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keel/clientip.h"
#include "keel/json.h"
#include "keel/log.h"

#include "config_int.h"

#define SECRET_FILE_MAX (64 * 1024) /* a key or a URL, never a document */
#define INI_LINE_MAX    (64 * 1024)
#define NAME_LEN        64 /* longest derived name ("otel-exporter-otlp-endpoint-file") */
#define GOT_MAX         80 /* bytes of a bad value quoted in a message */
#define JWT_SECRET_MIN  32 /* HS256 wants a key as long as its output (RFC 7518 3.2) */

/* ------------------------------------------------------------------ table */

static const char *const env_words[] = {"development", "staging", "production", NULL};
static const char *const level_words[] = {"error", "warn", "info", "debug", NULL};
static const char *const jwt_alg_words[] = {"HS256", "EdDSA", NULL};
static const char *const db_schemes[] = {"sqlite:", "postgres://", "postgresql://", NULL};
static const char *const pg_schemes[] = {"postgres://", "postgresql://", NULL};
static const char *const redis_schemes[] = {"redis://", "rediss://", "unix://", NULL};
static const char *const smtp_schemes[] = {"smtp://", "smtps://", NULL};
static const char *const http_schemes[] = {"http://", "https://", NULL};

#define OFF(field) offsetof(struct keel_config, field)
#define SEC(s)     ((uint64_t)(s)*1000)

static const struct opt options[] = {
    {"KEEL_CONFIG", T_STR, F_NOFILE, OFF(config_path), NULL, 0, 0, NULL, "FILE",
     "INI file to read; the environment and flags override it"},
    {"KEEL_ENV", T_ENUM, 0, OFF(env), "development", 0, 0, env_words, "NAME",
     "development, staging or production"},
    {"KEEL_LISTEN", T_ADDR, 0, OFF(listen), "127.0.0.1:8080", 0, 0, NULL, "HOST:PORT",
     "address to listen on ([::1]:8080 for IPv6, port 0 = any free port)"},
    {"KEEL_THREADS", T_U32, F_AUTO_CPUS, OFF(threads), "auto", 1, 256, NULL, "N",
     "event-loop threads, 1..256 (auto = usable CPUs)"},
    {"KEEL_DATABASE_URL", T_URL, F_SECRET | F_NONEMPTY, OFF(database_url), "sqlite:./var/keel.db",
     0, 0, db_schemes, "URL", "sqlite:PATH or postgres:// (libpq URI)"},
    {"KEEL_DATABASE_REPLICAS", T_URLS, F_SECRET, OFF(database_replicas), NULL, 0, 0, pg_schemes,
     "URLS", "comma-separated postgres:// URIs of read replicas"},
    {"KEEL_DATABASE_POOL_SIZE", T_U32, 0, OFF(database_pool_size), "16", 1, 1024, NULL, "N",
     "database connections per process (and per replica), 1..1024"},
    {"KEEL_DATABASE_THREADS", T_U32, 0, OFF(database_threads), "0", 0, 1024, NULL, "N",
     "threads that run storage work, 0..1024 (0 = two per usable CPU)"},
    {"KEEL_REDIS_URL", T_URL, F_SECRET, OFF(redis_url), NULL, 0, 0, redis_schemes, "URL",
     "redis://host:port/db; empty = in-process cache and limits"},
    {"KEEL_JWT_SECRET", T_STR, F_SECRET, OFF(jwt_secret), NULL, 0, 0, NULL, "KEY",
     "HS256 key, at least 32 bytes (generated in development)"},
    {"KEEL_JWT_PREVIOUS_SECRET", T_STR, F_SECRET, OFF(jwt_previous_secret), NULL, 0, 0, NULL, "KEY",
     "a retired JWT secret whose tokens are still accepted (key rotation)"},
    {"KEEL_JWT_ALGORITHM", T_ENUM, 0, OFF(jwt_algorithm), "HS256", 0, 0, jwt_alg_words, "ALG",
     "access-token signatures: HS256, or EdDSA (Ed25519 keyed by the secret)"},
    {"KEEL_JWT_ISSUER", T_STR, F_NONEMPTY, OFF(jwt_issuer), "keel", 0, 0, NULL, "NAME",
     "JWT iss claim"},
    {"KEEL_JWT_AUDIENCE", T_STR, F_NONEMPTY, OFF(jwt_audience), "keel-api", 0, 0, NULL, "NAME",
     "JWT aud claim"},
    {"KEEL_ACCESS_TOKEN_TTL", T_U32, 0, OFF(access_token_ttl_s), "900", 1, 86400, NULL, "SECONDS",
     "access token lifetime, 1..86400"},
    {"KEEL_REFRESH_TOKEN_TTL", T_U32, 0, OFF(refresh_token_ttl_s), "604800", 1, 31536000, NULL,
     "SECONDS", "refresh token lifetime, 1..31536000"},
    {"KEEL_RATE_LIMIT_IP", T_RATE, 0, OFF(rate_limit_ip), "1000/min", 1, 1000000000, NULL,
     "N/PERIOD", "requests per client IP (PERIOD: s, min, hour, day)"},
    {"KEEL_RATE_LIMIT_USER", T_RATE, 0, OFF(rate_limit_user), "100/min", 1, 1000000000, NULL,
     "N/PERIOD", "requests per authenticated user"},
    {"KEEL_RATE_LIMIT_AUTH", T_RATE, 0, OFF(rate_limit_auth), "30/min", 1, 1000000000, NULL,
     "N/PERIOD", "requests per client IP to /auth/* (stricter than KEEL_RATE_LIMIT_IP)"},
    {"KEEL_TRUSTED_PROXIES", T_STR, 0, OFF(trusted_proxies), NULL, 0, 0, NULL, "CIDRS",
     "proxies whose X-Forwarded-For is believed (addresses or CIDR ranges); empty = none"},
    {"KEEL_PASSWORD_MEMORY", T_U32, 0, OFF(password_memory_kib), "19456", 8, 4194304, NULL, "KIB",
     "Argon2id memory per hash in KiB (production: at least 19456)"},
    {"KEEL_PASSWORD_ITERATIONS", T_U32, 0, OFF(password_iterations), "2", 1, 64, NULL, "N",
     "Argon2id passes (production: at least 2)"},
    {"KEEL_PASSWORD_CONCURRENCY", T_U32, F_AUTO_CPUS, OFF(password_concurrency), "auto", 1, 256,
     NULL, "N", "password hashes running at once per process (auto = usable CPUs)"},
    {"KEEL_CACHE", T_BOOL, 0, OFF(cache_enabled), "true", 0, 0, NULL, "BOOL",
     "the read cache (L1 in process, L2 in Redis); off = every read goes to the database"},
    {"KEEL_CACHE_L1_BYTES", T_U64, 0, OFF(cache_l1_bytes), "67108864", 65536, 68719476736ULL, NULL,
     "N", "in-process cache size in bytes"},
    {"KEEL_CACHE_L1_TTL", T_MS, 0, OFF(cache_l1_ttl_ms), "30", SEC(1) / 10, SEC(86400), NULL,
     "SECONDS", "longest life of an in-process cache entry (invalidation usually ends it first)"},
    {"KEEL_CORS_ORIGINS", T_ORIGINS, 0, OFF(cors_origins), NULL, 0, 0, NULL, "ORIGINS",
     "comma-separated scheme://host[:port] or *; empty = CORS off"},
    {"KEEL_MAX_BODY_BYTES", T_U64, 0, OFF(max_body_bytes), "1048576", 1, 1073741824, NULL, "N",
     "request body limit in bytes, 1..1073741824"},
    {"KEEL_SHUTDOWN_TIMEOUT", T_MS, 0, OFF(shutdown_timeout_ms), "30", 0, SEC(3600), NULL,
     "SECONDS", "time to drain on SIGTERM/SIGINT"},
    {"KEEL_LOG_LEVEL", T_ENUM, 0, OFF(log_level), "info", 0, 0, level_words, "LEVEL",
     "error, warn, info or debug"},
    {"KEEL_SMTP_URL", T_URL, F_SECRET, OFF(smtp_url), NULL, 0, 0, smtp_schemes, "URL",
     "smtp://host:port; empty = write .eml files under the data dir"},
    {"KEEL_PAYMENT_PROVIDER_URL", T_URL, 0, OFF(payment_provider_url), NULL, 0, 0, http_schemes,
     "URL", "payment provider base URL; empty = built-in fake provider"},
    {"KEEL_DATA_DIR", T_STR, F_NONEMPTY, OFF(data_dir), "./var", 0, 0, NULL, "DIR",
     "SQLite file, mail, uploads, generated development secrets"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT", T_URL, 0, OFF(otel_exporter_otlp_endpoint), NULL, 0, 0,
     http_schemes, "URL", "OTLP/HTTP trace endpoint; empty = no export"},
    {"OTEL_SERVICE_NAME", T_STR, F_NONEMPTY, OFF(otel_service_name), "keel", 0, 0, NULL, "NAME",
     "service.name of exported traces"},
    {"KEEL_MAX_CONNECTIONS", T_U32, 0, OFF(max_connections), "16384", 1, 1000000, NULL, "N",
     "open client connections per process, 1..1000000"},
    {"KEEL_HEADER_TIMEOUT", T_MS, 0, OFF(header_timeout_ms), "10", 1, SEC(3600), NULL, "SECONDS",
     "time to receive a request's headers"},
    {"KEEL_BODY_TIMEOUT", T_MS, 0, OFF(body_timeout_ms), "30", 1, SEC(3600), NULL, "SECONDS",
     "time to receive a request's body"},
    {"KEEL_KEEPALIVE_TIMEOUT", T_MS, 0, OFF(keepalive_timeout_ms), "75", 0, SEC(3600), NULL,
     "SECONDS", "idle time between requests (0 = no keep-alive)"},
    {"KEEL_SEND_TIMEOUT", T_MS, 0, OFF(send_timeout_ms), "30", 1, SEC(3600), NULL, "SECONDS",
     "time for the client to accept a response"},
    {"KEEL_MAX_HEADER_BYTES", T_U32, 0, OFF(max_header_bytes), "16384", 1024, 1048576, NULL, "N",
     "request line and headers in bytes, 1024..1048576"},
    {"KEEL_MAX_HEADERS", T_U32, 0, OFF(max_headers), "100", 1, 1000, NULL, "N",
     "header fields per request, 1..1000"},
    {"KEEL_MAX_URI_BYTES", T_U32, 0, OFF(max_uri_bytes), "8192", 64, 1048576, NULL, "N",
     "request target in bytes, 64..1048576"},
    {"KEEL_BREAKER_FAILURE_PERCENT", T_U32, 0, OFF(breaker_failure_percent), "50", 1, 100, NULL,
     "PERCENT", "circuit breakers open at this share of failed calls, 1..100"},
    {"KEEL_BREAKER_MIN_CALLS", T_U32, 0, OFF(breaker_min_calls), "20", 1, 1000000, NULL, "N",
     "calls in the window before a breaker may open"},
    {"KEEL_BREAKER_WINDOW", T_MS, 0, OFF(breaker_window_ms), "10", SEC(1) / 10, SEC(3600), NULL,
     "SECONDS", "rolling window in which breaker failures are counted"},
    {"KEEL_BREAKER_OPEN", T_MS, 0, OFF(breaker_open_ms), "60", SEC(1) / 10, SEC(3600), NULL,
     "SECONDS", "time an open breaker fails fast before trial calls"},
    {"KEEL_BREAKER_HALF_OPEN_CALLS", T_U32, 0, OFF(breaker_half_open_calls), "3", 1, 1000, NULL,
     "N", "trial calls a half-open breaker lets through"},
    {"KEEL_DEBUG_ROUTES", T_BOOL, 0, OFF(debug_routes), "false", 0, 0, NULL, "BOOL",
     "test-only routes under /debug (refused in production)"},
    {"KEEL_INPROCESS_WORKERS", T_BOOL, 0, OFF(inprocess_workers), "true", 0, 0, NULL, "BOOL",
     "keel serve runs the job workers too (off when keel worker processes run them)"},
    {"KEEL_JOB_QUEUES", T_STR, 0, OFF(job_queues), NULL, 0, 0, NULL, "LIST",
     "queue overrides and additions: name:concurrency:attempts[:jobs_per_second],..."},
    {"KEEL_JOB_BACKOFF_BASE_MS", T_U64, 0, OFF(job_backoff_base_ms), "1000", 1, 86400000, NULL,
     "MS", "retry delay before the second attempt: up to base x 2^(attempt-1), full jitter"},
    {"KEEL_JOB_BACKOFF_MAX_MS", T_U64, 0, OFF(job_backoff_max_ms), "3600000", 1, 604800000, NULL,
     "MS", "longest retry delay"},
    {"KEEL_JOB_LEASE", T_MS, 0, OFF(job_lease_ms), "30", SEC(1), SEC(3600), NULL, "SECONDS",
     "a running job's lease: another worker takes it when not renewed for this long"},
    {"KEEL_JOB_POLL_MS", T_U32, 0, OFF(job_poll_ms), "1000", 10, 60000, NULL, "MS",
     "workers look for due jobs at least this often (they are woken at commit anyway)"},
    {"KEEL_JOB_RETENTION", T_MS, 0, OFF(job_retention_ms), "86400", SEC(60), SEC(31536000), NULL,
     "SECONDS", "completed and cancelled jobs are purged after this long"},
    {"KEEL_WORKER_LISTEN", T_ADDR, 0, OFF(worker_listen), NULL, 0, 0, NULL, "HOST:PORT",
     "keel worker: address of its /health and /metrics listener; empty = none"},
};

#define NOPTS KEEL_ARRAY_LEN(options)

/* T_ENUM fields are written through an int pointer. */
_Static_assert(sizeof(enum keel_env) == sizeof(int), "enum keel_env is not an int");
_Static_assert(sizeof(enum keel_config_jwt_alg) == sizeof(int), "jwt algorithm is not an int");
_Static_assert(sizeof(enum keel_config_log_level) == sizeof(int), "log level is not an int");
/* The log module takes the level as its own enum: keep the values equal. */
_Static_assert((int)KEEL_CONFIG_LOG_ERROR == (int)KEEL_LOG_ERROR &&
                   (int)KEEL_CONFIG_LOG_WARN == (int)KEEL_LOG_WARN &&
                   (int)KEEL_CONFIG_LOG_INFO == (int)KEEL_LOG_INFO &&
                   (int)KEEL_CONFIG_LOG_DEBUG == (int)KEEL_LOG_DEBUG,
               "enum keel_config_log_level and enum keel_log_level differ");

/* ----------------------------------------------------------------- loader */

struct loader {
    struct keel_config *cfg;
    keel_config_getenv_fn getenv_fn;
    struct keel_buf *errs;
    unsigned nerrors;
    bool usage;
    bool bad[NOPTS];             /* some value given for the option was refused */
    struct origin origin[NOPTS]; /* where the current value came from */
    /* INI file state */
    const char *path;
    int line_set[NOPTS][2]; /* line that set name [0] and name_file [1] */
    FILE *f;
    char *line;
    size_t cap, len, off;
    int lineno;
    int read_errno;
    unsigned syntax_errors;
};

static const char *env_lookup(struct loader *ld, const char *name)
{
    const char *v = ld->getenv_fn ? ld->getenv_fn(name) : getenv(name);

    /* An empty variable counts as unset: container tooling often exports
     * `NAME=` for "no value" and that must not trip the validators. */
    return v && *v ? v : NULL;
}

/* "KEEL_MAX_BODY_BYTES" -> "max-body-bytes" (sep '-') or "max_body_bytes"
 * (sep '_'), plus `suffix`. OTEL_* names keep their prefix. */
static void derive(const char *env, char sep, const char *suffix, char *out, size_t n)
{
    const char *p = strncmp(env, "KEEL_", 5) == 0 ? env + 5 : env;
    size_t i = 0;

    for (; *p && i + 1 < n; p++)
        out[i++] = *p == '_' ? sep : (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    out[i] = '\0';
    if (suffix)
        snprintf(out + i, n - i, "%s", suffix);
}

/* Finds the option named name[0..len) in the flag (sep '-', "-file") or
 * INI (sep '_', "_file", any case) spelling; *file_var_out tells whether it
 * is the NAME_FILE variant of a secret. */
static bool find_name(const char *name, size_t len, char sep, size_t *idx_out, bool *file_var_out)
{
    const char *suffix = sep == '-' ? "-file" : "_file";
    char key[NAME_LEN];
    size_t i;
    int var;

    for (i = 0; i < NOPTS; i++) {
        for (var = 0; var < ((options[i].flags & F_SECRET) ? 2 : 1); var++) {
            derive(options[i].env, sep, var ? suffix : NULL, key, sizeof(key));
            if (strlen(key) == len && strncasecmp(key, name, len) == 0 &&
                (sep == '_' || memcmp(key, name, len) == 0)) {
                *idx_out = i;
                *file_var_out = var;
                return true;
            }
        }
    }
    return false;
}

static size_t opt_index(const char *env)
{
    size_t i;

    for (i = 0; i < NOPTS; i++) {
        if (strcmp(options[i].env, env) == 0)
            return i;
    }
    KEEL_ASSERT(!"unknown option name");
    return 0;
}

/* Appends "config: <msg>\n". A full `errs` drops the line: the load fails
 * anyway and the lines already there are the first problems found. */
__attribute__((format(printf, 2, 3))) static void problem(struct loader *ld, const char *fmt, ...)
{
    va_list ap;

    ld->nerrors++;
    if (!ld->errs)
        return;
    (void)keel_buf_appends(ld->errs, "config: ");
    va_start(ap, fmt);
    (void)keel_buf_vappendf(ld->errs, fmt, ap);
    va_end(ap);
    (void)keel_buf_appendc(ld->errs, '\n');
}

/* Writes where a value came from: "KEEL_X (environment)", "--x (command
 * line)" or "file:line: x". */
static void where(const struct loader *ld, size_t i, struct origin org, char *out, size_t n)
{
    const struct opt *o = &options[i];
    char name[NAME_LEN];

    switch (org.src) {
    case SRC_FILE:
        derive(o->env, '_', org.file_var ? "_file" : NULL, name, sizeof(name));
        snprintf(out, n, "%s:%d: %s", ld->path, org.line, name);
        break;
    case SRC_ENV:
        snprintf(out, n, "%s%s (environment)", o->env, org.file_var ? "_FILE" : "");
        break;
    case SRC_FLAG:
        derive(o->env, '-', org.file_var ? "-file" : NULL, name, sizeof(name));
        snprintf(out, n, "--%s (command line)", name);
        break;
    default:
        snprintf(out, n, "%s (default)", o->env);
        break;
    }
}

/* Quotes at most GOT_MAX bytes of `s` for a message, escaping what a
 * terminal or log parser would choke on. `out` holds GOT_MAX * 4 + 8. */
static void quote(const char *s, char *out)
{
    size_t i;
    char *p = out;

    *p++ = '"';
    for (i = 0; s[i] && i < GOT_MAX; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            p += sprintf(p, "\\x%02x", c);
        } else {
            *p++ = (char)c;
        }
    }
    if (s[i])
        p += sprintf(p, "...");
    *p++ = '"';
    *p = '\0';
}

/* Reports that v's value (or the part `got`) is refused because of `fmt`.
 * A secret's text is never shown. Always returns false. */
__attribute__((format(printf, 3, 4))) bool
keel__config_reject(struct val *v, const char *got, const char *fmt, ...)
{
    char at[512], why[256], shown[GOT_MAX * 4 + 8];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    where(v->ld, v->idx, v->org, at, sizeof(at));
    v->ld->bad[v->idx] = true;
    if (v->o->flags & F_SECRET) {
        problem(v->ld, "%s: %s", at, why);
    } else {
        quote(got ? got : v->text, shown);
        problem(v->ld, "%s: %s (got %s)", at, why, shown);
    }
    return false;
}

/* ------------------------------------------------------------- type table */

static void *field_of(struct keel_config *cfg, const struct opt *o)
{
    return (char *)cfg + o->off;
}

static void release(struct keel_config *cfg, const struct opt *o)
{
    void *field = field_of(cfg, o);

    switch (o->type) {
    case T_STR:
    case T_URL:
        keel__config_wipe_free(*(char **)field, o->flags & F_SECRET);
        *(char **)field = NULL;
        break;
    case T_URLS:
    case T_ORIGINS:
        keel__config_list_release(o, field);
        break;
    case T_ADDR:
        free(((struct keel_config_addr *)field)->host);
        ((struct keel_config_addr *)field)->host = NULL;
        break;
    default:
        break;
    }
}

/* Parses `text` into option i; on success records where it came from. */
static bool apply(struct loader *ld, size_t i, const char *text, struct origin org)
{
    struct val v = {ld, i, &options[i], org, text, ld->cfg};

    if (!keel__config_parsers[options[i].type](&v, field_of(ld->cfg, &options[i])))
        return false;
    ld->origin[i] = org;
    return true;
}

/* Reads a whole file into buf (SECRET_FILE_MAX + 2 bytes), minus trailing
 * line breaks. Returns NULL or why the file cannot serve as a value. */
static const char *read_value_file(const char *path, char *buf, int *err_out)
{
    FILE *f = fopen(path, "rb");
    size_t n;

    *err_out = errno;
    if (!f)
        return "cannot read";
    n = fread(buf, 1, SECRET_FILE_MAX + 1, f);
    *err_out = ferror(f) ? errno : 0;
    fclose(f);
    if (*err_out)
        return "cannot read";
    if (n > SECRET_FILE_MAX)
        return "is larger than 64 KiB";
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    if (n == 0)
        return "is empty";
    if (strlen(buf) != n)
        return "contains a NUL byte";
    return NULL;
}

/* Applies the NAME_FILE variant of secret i: `path` names the file that
 * holds the value. */
static void apply_file_var(struct loader *ld, size_t i, const char *path, struct origin org)
{
    char at[512], *buf = keel_xmalloc(SECRET_FILE_MAX + 2);
    const char *why;
    int err;

    org.file_var = true;
    why = read_value_file(path, buf, &err);
    if (why) {
        where(ld, i, org, at, sizeof(at));
        if (err)
            problem(ld, "%s: %s \"%s\": %s", at, why, path, strerror(err));
        else
            problem(ld, "%s: the file \"%s\" %s", at, path, why);
        ld->bad[i] = true;
    } else {
        apply(ld, i, buf, org);
    }
    explicit_bzero(buf, SECRET_FILE_MAX + 2);
    free(buf);
}

/* -------------------------------------------------------------- INI file */

/* libinih's line handling is fixed at its build in upstream releases;
 * Debian's package turns those options into the variables set here. Long
 * lines (replica lists) need the heap buffer, and both multi-line values
 * and inline ';' comments would silently change a URL or a secret. */
static void ini_setup(void)
{
    ini_allow_multiline = false;
    ini_allow_inline_comments = false;
    ini_allow_no_value = false;
    ini_stop_on_first_error = false;
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = INI_LINE_MAX;
}

static void file_problem(struct loader *ld, const char *why)
{
    problem(ld, "%s:%d: %s", ld->path, ld->lineno, why);
    ld->syntax_errors++;
}

/* Checks a "[section]" line (p at '[', end at the line's end). Unknown
 * sections are reported here because libinih never tells the handler
 * about a section header; the handler then skips the section's keys. */
static bool check_section(struct loader *ld, const char *p, const char *end)
{
    const char *rb = memchr(p, ']', (size_t)(end - p));

    if (!rb) {
        file_problem(ld, "section header has no ']'");
        return false;
    }
    if (rb - p - 1 != 4 || strncasecmp(p + 1, "keel", 4) != 0)
        problem(ld, "%s:%d: unknown section [%.*s] (options go before any section or in [keel])",
                ld->path, ld->lineno, (int)(rb - p - 1), p + 1);
    return true;
}

/*
 * Checks one physical line before libinih sees it. libinih reports only the
 * first syntax error, so every line it would refuse is reported here with
 * its number and replaced by a blank line.
 */
static void check_line(struct loader *ld)
{
    const char *p = ld->line, *end = ld->line + ld->len;
    bool ok = true;

    if (ld->lineno == 1 && ld->len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    if (memchr(ld->line, '\0', ld->len)) {
        file_problem(ld, "contains a NUL byte");
        ok = false;
    } else if (ld->len > INI_LINE_MAX - 3) {
        file_problem(ld, "line is longer than 64 KiB");
        ok = false;
    } else if (p == end || *p == '\n' || *p == ';' || *p == '#') {
        ok = true;
    } else if (*p == '[') {
        ok = check_section(ld, p, end);
    } else if (!memchr(p, '=', (size_t)(end - p)) && !memchr(p, ':', (size_t)(end - p))) {
        file_problem(ld, "expected 'name = value', '[keel]' or a comment");
        ok = false;
    }
    if (!ok) {
        ld->line[0] = '\n';
        ld->len = 1;
    }
}

/* libinih's reader callback: hands out the file one physical line at a
 * time (in pieces when libinih's buffer is still short) and counts lines,
 * since this libinih build does not pass line numbers to the handler. */
static char *ini_read(char *s, int n, void *user)
{
    struct loader *ld = user;
    size_t take;

    if (n < 2)
        return NULL;
    if (ld->off >= ld->len) {
        ssize_t got = getline(&ld->line, &ld->cap, ld->f);

        if (got < 0) {
            ld->read_errno = ferror(ld->f) ? errno : 0;
            return NULL;
        }
        ld->len = (size_t)got;
        ld->off = 0;
        ld->lineno++;
        check_line(ld);
    }
    take = ld->len - ld->off < (size_t)n - 1 ? ld->len - ld->off : (size_t)n - 1;
    memcpy(s, ld->line + ld->off, take);
    s[take] = '\0';
    ld->off += take;
    return s;
}

static int ini_entry(void *user, const char *section, const char *name, const char *value)
{
    struct loader *ld = user;
    struct origin org = {SRC_FILE, ld->lineno, false};
    size_t i;
    bool var;

    if (*section && strcasecmp(section, "keel") != 0)
        return 1; /* check_line() reported the section header */
    if (!find_name(name, strlen(name), '_', &i, &var)) {
        problem(ld, "%s:%d: %s: unknown option", ld->path, ld->lineno, name);
        return 1;
    }
    if (options[i].flags & F_NOFILE) {
        problem(ld, "%s:%d: %s: cannot be set in a config file", ld->path, ld->lineno, name);
        return 1;
    }
    if (ld->line_set[i][var] || ld->line_set[i][!var]) {
        problem(ld, "%s:%d: %s: already set on line %d", ld->path, ld->lineno, name,
                ld->line_set[i][var] ? ld->line_set[i][var] : ld->line_set[i][!var]);
        ld->bad[i] = true;
        return 1;
    }
    ld->line_set[i][var] = ld->lineno;
    if (var)
        apply_file_var(ld, i, value, org);
    else
        apply(ld, i, value, org);
    return 1;
}

static void load_file(struct loader *ld, const char *path)
{
    int rc;

    ld->path = path;
    ld->f = fopen(path, "r");
    if (!ld->f) {
        problem(ld, "%s: cannot open config file: %s", path, strerror(errno));
        return;
    }
    ini_setup();
    rc = ini_parse_stream(ini_read, ld, ini_entry, ld);
    if (ld->read_errno)
        problem(ld, "%s: cannot read config file: %s", path, strerror(ld->read_errno));
    else if (rc > 0 && ld->syntax_errors == 0)
        problem(ld, "%s:%d: syntax error", path, rc);
    else if (rc < 0 && rc != -1)
        problem(ld, "%s: cannot parse config file (out of memory)", path);
    fclose(ld->f);
    ld->f = NULL;
    free(ld->line);
    ld->line = NULL;
}

/* ------------------------------------------------------ environment, argv */

static void load_env(struct loader *ld)
{
    char name[NAME_LEN + 8];
    size_t i;

    for (i = 0; i < NOPTS; i++) {
        struct origin org = {SRC_ENV, 0, false};
        const char *v = env_lookup(ld, options[i].env), *fv = NULL;

        if (options[i].flags & F_SECRET) {
            snprintf(name, sizeof(name), "%s_FILE", options[i].env);
            fv = env_lookup(ld, name);
        }
        if (v && fv) {
            problem(ld, "%s and %s are both set in the environment; set only one", options[i].env,
                    name);
            ld->bad[i] = true;
        } else if (fv) {
            apply_file_var(ld, i, fv, org);
        } else if (v) {
            apply(ld, i, v, org);
        }
    }
}

struct flag_value {
    size_t idx;
    bool file_var;
    const char *value;
};

static struct keel_config_extra *
find_extra(struct keel_config_extra *extra, size_t nextra, const char *arg, size_t len)
{
    size_t i;

    for (i = 0; i < nextra; i++) {
        if (strlen(extra[i].flag) == len && memcmp(extra[i].flag, arg, len) == 0)
            return &extra[i];
    }
    return NULL;
}

/* Reports a usage problem with the argument spelled arg[0..len). */
static void usage(struct loader *ld, const char *arg, size_t len, const char *why)
{
    ld->usage = true;
    problem(ld, "%.*s: %s", (int)len, arg, why);
}

/*
 * Takes the value of the flag argv[*i] (spelled arg[0..len)): after '=',
 * else the next argument. A boolean flag alone means true, and it takes the
 * next argument only when that is a boolean word. Returns NULL (after a
 * usage problem) when the value is missing.
 */
static const char *
flag_arg(struct loader *ld, int argc, char **argv, int *i, size_t len, bool is_bool)
{
    const char *arg = argv[*i];

    if (arg[len] == '=')
        return arg + len + 1;
    if (is_bool) {
        if (*i + 1 < argc && keel__config_bool_value(argv[*i + 1]) >= 0)
            return argv[++*i];
        return "true";
    }
    if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0)
        return argv[++*i];
    usage(ld, arg, len, "missing value");
    return NULL;
}

/* Checks argv and collects the configuration flags into out[] (at most
 * argc entries); the extras are filled in directly. Returns the count. */
static size_t parse_argv(struct loader *ld,
                         int argc,
                         char **argv,
                         struct keel_config_extra *extra,
                         size_t nextra,
                         struct flag_value *out)
{
    size_t n = 0;
    int i;

    for (i = 0; i < argc; i++) {
        const char *arg = argv[i], *value;
        size_t len = strcspn(arg, "="), idx;
        struct keel_config_extra *x = find_extra(extra, nextra, arg, len);
        bool file_var;

        if (x && !x->has_value && arg[len] == '=') {
            usage(ld, arg, len, "takes no value");
        } else if (x) {
            value = x->has_value ? flag_arg(ld, argc, argv, &i, len, false) : NULL;
            x->set = true;
            x->value = value;
        } else if (strncmp(arg, "--", 2) != 0 || len == 2) {
            usage(ld, arg, strlen(arg), "unexpected argument");
        } else if (!find_name(arg + 2, len - 2, '-', &idx, &file_var)) {
            /* Print only the name: the value of a mistyped --jwt-secret
             * must not land in a log. A following value goes with it. */
            usage(ld, arg, len, "unknown flag (see --help)");
            if (arg[len] != '=' && i + 1 < argc && argv[i + 1][0] != '-')
                i++;
        } else {
            value = flag_arg(ld, argc, argv, &i, len, options[idx].type == T_BOOL && !file_var);
            if (value)
                out[n++] = (struct flag_value){idx, file_var, value};
        }
    }
    return n;
}

static void apply_flags(struct loader *ld, const struct flag_value *fv, size_t n)
{
    bool seen[NOPTS][2], told[NOPTS];
    size_t k;

    memset(seen, 0, sizeof(seen));
    memset(told, 0, sizeof(told));
    for (k = 0; k < n; k++)
        seen[fv[k].idx][fv[k].file_var] = true;
    for (k = 0; k < n; k++) {
        struct origin org = {SRC_FLAG, 0, fv[k].file_var};
        char name[NAME_LEN];

        if (seen[fv[k].idx][0] && seen[fv[k].idx][1]) {
            if (told[fv[k].idx])
                continue;
            told[fv[k].idx] = true;
            derive(options[fv[k].idx].env, '-', NULL, name, sizeof(name));
            problem(ld, "--%s and --%s-file are both given; give only one", name, name);
            ld->bad[fv[k].idx] = true;
        } else if (fv[k].file_var) {
            apply_file_var(ld, fv[k].idx, fv[k].value, org);
        } else {
            apply(ld, fv[k].idx, fv[k].value, org);
        }
    }
}

/* ----------------------------------------------------------------- checks */

/* Rules between options, on the final values. An option whose own value
 * was refused is skipped: its problem is already reported. */
/* KEEL_DATABASE_URL left at its default follows KEEL_DATA_DIR, so one
 * setting moves every file Keel keeps (SPEC section 5: the data dir holds
 * the SQLite file). */
static void derive_defaults(struct loader *ld)
{
    size_t db = opt_index("KEEL_DATABASE_URL");
    size_t n;
    char *url;

    if (ld->origin[db].src != SRC_DEFAULT || !ld->cfg->data_dir ||
        strcmp(ld->cfg->data_dir, "./var") == 0)
        return;
    n = strlen(ld->cfg->data_dir) + sizeof("sqlite:/keel.db");
    url = keel_xmalloc(n);
    snprintf(url, n, "sqlite:%s/keel.db", ld->cfg->data_dir);
    free(ld->cfg->database_url);
    ld->cfg->database_url = url;
}

static void check_rules(struct loader *ld)
{
    const struct keel_config *cfg = ld->cfg;
    size_t jwt = opt_index("KEEL_JWT_SECRET"), cors = opt_index("KEEL_CORS_ORIGINS");
    size_t dbg = opt_index("KEEL_DEBUG_ROUTES"), ttl = opt_index("KEEL_REFRESH_TOKEN_TTL");
    size_t pwm = opt_index("KEEL_PASSWORD_MEMORY"), pwi = opt_index("KEEL_PASSWORD_ITERATIONS");
    size_t tp = opt_index("KEEL_TRUSTED_PROXIES"), prev = opt_index("KEEL_JWT_PREVIOUS_SECRET");
    char at[512], why[256];
    struct keel_proxies proxies;

    if (!ld->bad[tp] && keel_proxies_parse(cfg->trusted_proxies, &proxies, why, sizeof(why)) < 0) {
        where(ld, tp, ld->origin[tp], at, sizeof(at));
        problem(ld, "%s: %s", at, why);
    }
    if (!ld->bad[ttl] && !ld->bad[opt_index("KEEL_ACCESS_TOKEN_TTL")] &&
        cfg->refresh_token_ttl_s < cfg->access_token_ttl_s) {
        where(ld, ttl, ld->origin[ttl], at, sizeof(at));
        problem(ld, "%s: must not be shorter than KEEL_ACCESS_TOKEN_TTL (%" PRIu32 ")", at,
                cfg->access_token_ttl_s);
    }
    if (cfg->env != KEEL_ENV_PRODUCTION)
        return;
    if (!ld->bad[jwt] && !cfg->jwt_secret) {
        problem(ld,
                "KEEL_JWT_SECRET: required when KEEL_ENV=production "
                "(set KEEL_JWT_SECRET or KEEL_JWT_SECRET_FILE, at least %d bytes)",
                JWT_SECRET_MIN);
    } else if (!ld->bad[jwt] && strlen(cfg->jwt_secret) < JWT_SECRET_MIN) {
        where(ld, jwt, ld->origin[jwt], at, sizeof(at));
        problem(ld, "%s: must be at least %d bytes when KEEL_ENV=production", at, JWT_SECRET_MIN);
    }
    if (!ld->bad[prev] && cfg->jwt_previous_secret &&
        strlen(cfg->jwt_previous_secret) < JWT_SECRET_MIN) {
        where(ld, prev, ld->origin[prev], at, sizeof(at));
        problem(ld, "%s: must be at least %d bytes when KEEL_ENV=production", at, JWT_SECRET_MIN);
    }
    if (!ld->bad[cors] && cfg->cors_allow_any) {
        where(ld, cors, ld->origin[cors], at, sizeof(at));
        problem(ld, "%s: * is not allowed when KEEL_ENV=production; list the origins", at);
    }
    if (!ld->bad[pwm] && cfg->password_memory_kib < 19456) {
        where(ld, pwm, ld->origin[pwm], at, sizeof(at));
        problem(ld, "%s: must be at least 19456 (19 MiB) when KEEL_ENV=production", at);
    }
    if (!ld->bad[pwi] && cfg->password_iterations < 2) {
        where(ld, pwi, ld->origin[pwi], at, sizeof(at));
        problem(ld, "%s: must be at least 2 when KEEL_ENV=production", at);
    }
    if (!ld->bad[dbg] && cfg->debug_routes) {
        where(ld, dbg, ld->origin[dbg], at, sizeof(at));
        problem(ld, "%s: must be off when KEEL_ENV=production", at);
    }
}

/* ------------------------------------------------------------- public API */

static void load_defaults(struct loader *ld)
{
    struct origin org = {SRC_DEFAULT, 0, false};
    size_t i;

    for (i = 0; i < NOPTS; i++) {
        bool ok = !options[i].def || apply(ld, i, options[i].def, org);

        KEEL_ASSERT(ok); /* a default that does not parse is a bug in options[] */
    }
}

keel_status keel_config_load_ex(struct keel_config *cfg,
                                int argc,
                                char **argv,
                                struct keel_config_extra *extra,
                                size_t nextra,
                                keel_config_getenv_fn getenv_fn,
                                struct keel_buf *errs,
                                bool *usage_error_out)
{
    struct loader *ld = keel_xcalloc(1, sizeof(*ld));
    struct flag_value *flags = keel_xcalloc((size_t)(argc > 0 ? argc : 1), sizeof(*flags));
    const char *path = NULL;
    keel_status rc = KEEL_E_INVALID;
    size_t i, nflags;

    memset(cfg, 0, sizeof(*cfg));
    for (i = 0; i < nextra; i++) {
        extra[i].set = false;
        extra[i].value = NULL;
    }
    ld->cfg = cfg;
    ld->getenv_fn = getenv_fn;
    ld->errs = errs;
    load_defaults(ld);
    nflags = parse_argv(ld, argc, argv, extra, nextra, flags);
    if (ld->usage)
        goto out; /* a broken command line: its values mean nothing yet */
    /* The file comes first, so its path is settled by the layers above it. */
    for (i = 0; i < nflags; i++) {
        if (options[flags[i].idx].off == OFF(config_path))
            path = flags[i].value;
    }
    if (!path)
        path = env_lookup(ld, "KEEL_CONFIG");
    if (path && *path)
        load_file(ld, path);
    load_env(ld);
    apply_flags(ld, flags, nflags);
    derive_defaults(ld);
    check_rules(ld);
    if (ld->nerrors == 0)
        rc = KEEL_OK;
out:
    if (usage_error_out)
        *usage_error_out = ld->usage;
    if (rc < 0)
        keel_config_free(cfg);
    free(flags);
    free(ld);
    return rc;
}

keel_status keel_config_load(struct keel_config *cfg,
                             int argc,
                             char **argv,
                             keel_config_getenv_fn getenv_fn,
                             struct keel_buf *errs,
                             bool *usage_error_out)
{
    return keel_config_load_ex(cfg, argc, argv, NULL, 0, getenv_fn, errs, usage_error_out);
}

void keel_config_free(struct keel_config *cfg)
{
    size_t i;

    for (i = 0; i < NOPTS; i++)
        release(cfg, &options[i]);
    memset(cfg, 0, sizeof(*cfg));
}

keel_status keel_config_to_json(const struct keel_config *cfg, struct keel_buf *out)
{
    struct keel_json j;
    size_t i;

    keel_json_begin(&j, out);
    keel_json_obj_open(&j);
    for (i = 0; i < NOPTS; i++) {
        keel_json_key(&j, options[i].env);
        keel__config_json_value(&j, &options[i], (const char *)cfg + options[i].off);
    }
    keel_json_obj_close(&j);
    return keel_json_end(&j);
}

void keel_config_print_help(FILE *f)
{
    char name[NAME_LEN], flag[NAME_LEN + 32], env[NAME_LEN + 8];
    size_t i;

    for (i = 0; i < NOPTS; i++) {
        const struct opt *o = &options[i];

        derive(o->env, '-', NULL, name, sizeof(name));
        snprintf(flag, sizeof(flag), "--%s %s", name, o->metavar);
        fprintf(f, "  %-34s %-28s %s (default: %s)\n", flag, o->env, o->help,
                o->def ? o->def : "none");
        if (o->flags & F_SECRET) {
            snprintf(flag, sizeof(flag), "--%s-file PATH", name);
            snprintf(env, sizeof(env), "%s_FILE", o->env);
            fprintf(f, "  %-34s %-28s read %s from a file\n", flag, env, o->env);
        }
    }
}

const char *keel_config_env_name(enum keel_env env)
{
    return (unsigned)env < KEEL_ARRAY_LEN(env_words) - 1 ? env_words[env] : "unknown";
}
