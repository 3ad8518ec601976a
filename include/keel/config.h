/*
 * config.h - Keel's runtime configuration (SPEC section 5).
 *
 * Every option lives in one table in src/core/config.c and is read, in
 * rising precedence, from its default, the INI file named by --config or
 * KEEL_CONFIG, the environment (KEEL_*, OTEL_*) and the command line. The
 * result is a plain struct that the rest of the process reads and never
 * writes. docs/internals/config.md explains the rules and how to add an
 * option.
 */
#ifndef KEEL_CONFIG_H
#define KEEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "keel/buf.h"
#include "keel/core.h"

/* KEEL_ENV. */
enum keel_env {
    KEEL_ENV_DEVELOPMENT = 0,
    KEEL_ENV_STAGING = 1,
    KEEL_ENV_PRODUCTION = 2,
};

/* KEEL_LOG_LEVEL, ordered by verbosity. The values equal those of enum
 * keel_log_level in keel/log.h (config.c checks it at compile time), so the
 * field converts with a cast; config.h stays free of the log module. */
enum keel_config_log_level {
    KEEL_CONFIG_LOG_ERROR = 0,
    KEEL_CONFIG_LOG_WARN = 1,
    KEEL_CONFIG_LOG_INFO = 2,
    KEEL_CONFIG_LOG_DEBUG = 3,
};

/* KEEL_JWT_ALGORITHM. */
enum keel_config_jwt_alg {
    KEEL_CONFIG_JWT_HS256 = 0,
    KEEL_CONFIG_JWT_EDDSA = 1,
};

/* KEEL_LISTEN: host without IPv6 brackets ("127.0.0.1", "::1",
 * "localhost") and a port in 0..65535 (0 asks the kernel for one). */
struct keel_config_addr {
    char *host;
    int port;
};

/* KEEL_RATE_LIMIT_*: at most `count` requests per `period_seconds`. */
struct keel_config_rate {
    uint32_t count;
    uint32_t period_seconds;
};

/* A comma-separated option: `raw` is the normalized list as one string and
 * `items` its `count` entries. Both are NULL (count 0) when the option is
 * empty. */
struct keel_config_list {
    char *raw;
    char **items;
    size_t count;
};

/*
 * The effective configuration. Strings are heap copies owned by the struct
 * and NULL when the option is unset or empty; keel_config_free() releases
 * them. Durations are milliseconds (`*_ms`), TTLs whole seconds (`*_s`).
 */
struct keel_config {
    char *config_path;              /* KEEL_CONFIG / --config: the INI file read, or NULL */
    enum keel_env env;              /* KEEL_ENV */
    struct keel_config_addr listen; /* KEEL_LISTEN */
    uint32_t threads;               /* KEEL_THREADS, resolved ("auto" = usable CPUs) */
    char *database_url;             /* KEEL_DATABASE_URL (secret; never NULL) */
    struct keel_config_list database_replicas; /* KEEL_DATABASE_REPLICAS (secret) */
    uint32_t database_pool_size;               /* KEEL_DATABASE_POOL_SIZE */
    uint32_t database_threads;                 /* KEEL_DATABASE_THREADS, 0 = auto */
    char *redis_url;                           /* KEEL_REDIS_URL (secret) */
    char *jwt_secret;                          /* KEEL_JWT_SECRET (secret) */
    char *jwt_previous_secret;                 /* KEEL_JWT_PREVIOUS_SECRET (secret) */
    enum keel_config_jwt_alg jwt_algorithm;    /* KEEL_JWT_ALGORITHM */
    char *jwt_issuer;                          /* KEEL_JWT_ISSUER */
    char *jwt_audience;                        /* KEEL_JWT_AUDIENCE */
    uint32_t access_token_ttl_s;               /* KEEL_ACCESS_TOKEN_TTL */
    uint32_t refresh_token_ttl_s;              /* KEEL_REFRESH_TOKEN_TTL */
    struct keel_config_rate rate_limit_ip;     /* KEEL_RATE_LIMIT_IP */
    struct keel_config_rate rate_limit_user;   /* KEEL_RATE_LIMIT_USER */
    struct keel_config_rate rate_limit_auth;   /* KEEL_RATE_LIMIT_AUTH */
    char *trusted_proxies;                     /* KEEL_TRUSTED_PROXIES (validated list) */
    uint32_t password_memory_kib;              /* KEEL_PASSWORD_MEMORY */
    uint32_t password_iterations;              /* KEEL_PASSWORD_ITERATIONS */
    uint32_t password_concurrency;             /* KEEL_PASSWORD_CONCURRENCY (resolved) */
    bool cache_enabled;                        /* KEEL_CACHE */
    uint64_t cache_l1_bytes;                   /* KEEL_CACHE_L1_BYTES */
    uint64_t cache_l1_ttl_ms;                  /* KEEL_CACHE_L1_TTL */
    struct keel_config_list cors_origins;      /* KEEL_CORS_ORIGINS (lowercased) */
    bool cors_allow_any;                       /* KEEL_CORS_ORIGINS is "*" */
    uint64_t max_body_bytes;                   /* KEEL_MAX_BODY_BYTES */
    uint64_t shutdown_timeout_ms;              /* KEEL_SHUTDOWN_TIMEOUT */
    enum keel_config_log_level log_level;      /* KEEL_LOG_LEVEL */
    char *smtp_url;                            /* KEEL_SMTP_URL (secret) */
    char *payment_provider_url;                /* KEEL_PAYMENT_PROVIDER_URL */
    char *data_dir;                            /* KEEL_DATA_DIR (never NULL) */
    char *otel_exporter_otlp_endpoint;         /* OTEL_EXPORTER_OTLP_ENDPOINT */
    char *otel_service_name;                   /* OTEL_SERVICE_NAME (never NULL) */
    uint32_t max_connections;                  /* KEEL_MAX_CONNECTIONS */
    uint64_t header_timeout_ms;                /* KEEL_HEADER_TIMEOUT */
    uint64_t body_timeout_ms;                  /* KEEL_BODY_TIMEOUT */
    uint64_t keepalive_timeout_ms;             /* KEEL_KEEPALIVE_TIMEOUT (0 = no keep-alive) */
    uint64_t send_timeout_ms;                  /* KEEL_SEND_TIMEOUT */
    uint32_t max_header_bytes;                 /* KEEL_MAX_HEADER_BYTES */
    uint32_t max_headers;                      /* KEEL_MAX_HEADERS */
    uint32_t max_uri_bytes;                    /* KEEL_MAX_URI_BYTES */
    uint32_t breaker_failure_percent;          /* KEEL_BREAKER_FAILURE_PERCENT */
    uint32_t breaker_min_calls;                /* KEEL_BREAKER_MIN_CALLS */
    uint64_t breaker_window_ms;                /* KEEL_BREAKER_WINDOW */
    uint64_t breaker_open_ms;                  /* KEEL_BREAKER_OPEN */
    uint32_t breaker_half_open_calls;          /* KEEL_BREAKER_HALF_OPEN_CALLS */
    bool debug_routes;                         /* KEEL_DEBUG_ROUTES */
    /* Jobs (include/keel/jobs.h). */
    bool inprocess_workers;       /* KEEL_INPROCESS_WORKERS */
    char *job_queues;             /* KEEL_JOB_QUEUES: name:concurrency:attempts[:rate],... */
    uint64_t job_backoff_base_ms; /* KEEL_JOB_BACKOFF_BASE_MS */
    uint64_t job_backoff_max_ms;  /* KEEL_JOB_BACKOFF_MAX_MS */
    uint64_t job_lease_ms;        /* KEEL_JOB_LEASE (seconds) */
    uint32_t job_poll_ms;         /* KEEL_JOB_POLL_MS */
    uint64_t job_retention_ms;    /* KEEL_JOB_RETENTION (seconds) */
    struct keel_config_addr worker_listen; /* KEEL_WORKER_LISTEN (host NULL: none) */
};

/*
 * A command-line flag that belongs to the subcommand rather than to the
 * configuration, e.g. `keel serve --migrate` or `keel seed --products N`.
 * The caller fills `flag` (the exact spelling, "--migrate" or "-h"),
 * `has_value` and `help` (a line for the caller's own --help; this module
 * does not print it); keel_config_load_ex() sets `set` when the flag was
 * given and, for flags with a value, points `value` at the argv string of
 * its last occurrence (borrowed, not copied).
 */
struct keel_config_extra {
    const char *flag;
    bool has_value;
    const char *help;
    bool set;
    const char *value;
};

/* Looks up an environment variable; returns NULL when it is unset. */
typedef const char *(*keel_config_getenv_fn)(const char *name);

/*
 * Loads the configuration into *cfg: defaults, then the INI file (path from
 * --config in argv, else KEEL_CONFIG in the environment), then the
 * environment, then the flags in argv.
 *
 * argv holds the arguments after the subcommand (for `keel serve --threads
 * 2`, {"--threads", "2"}). Flags are `--name VALUE` or `--name=VALUE`; a
 * boolean flag given alone means true. getenv_fn reads the environment
 * (NULL means getenv(3)), so tests can inject one. An environment variable
 * set to the empty string counts as unset.
 *
 * Returns KEEL_OK with *cfg filled. Otherwise returns KEEL_E_INVALID, leaves
 * *cfg zeroed and appends one line per problem to `errs` (may be NULL),
 * each ending in '\n' and never containing a secret's value. *usage_error_out (may be
 * NULL) is set to true when the problem is the command line itself (an
 * unknown flag, a missing flag value, a stray argument): the caller then
 * exits with KEEL_EXIT_USAGE, otherwise with KEEL_EXIT_CONFIG. Usage errors
 * are reported alone; bad values are all reported together.
 *
 * Not thread-safe (it sets libinih's global options); call it at startup.
 */
keel_status keel_config_load(struct keel_config *cfg,
                             int argc,
                             char **argv,
                             keel_config_getenv_fn getenv_fn,
                             struct keel_buf *errs,
                             bool *usage_error_out);

/* keel_config_load() that also accepts the subcommand's own flags: `extra`
 * points to `nextra` entries (see struct keel_config_extra), whose `set` and
 * `value` fields are reset and then filled from argv. */
keel_status keel_config_load_ex(struct keel_config *cfg,
                                int argc,
                                char **argv,
                                struct keel_config_extra *extra,
                                size_t nextra,
                                keel_config_getenv_fn getenv_fn,
                                struct keel_buf *errs,
                                bool *usage_error_out);

/* Frees every string of *cfg (wiping secrets first) and zeroes it. Safe on
 * a zeroed struct and idempotent. */
void keel_config_free(struct keel_config *cfg);

/*
 * Appends the effective configuration to `out` as one JSON object whose
 * keys are the environment names (KEEL_LISTEN, ...) and whose values are
 * written as that variable would accept them (durations in seconds).
 * Secrets are "[redacted]" when set and null when unset; other unset
 * strings are null. Returns KEEL_OK or KEEL_E_TOO_LARGE when `out` is full.
 */
keel_status keel_config_to_json(const struct keel_config *cfg, struct keel_buf *out);

/* Writes one line per option to `f` for --help: flag, environment name,
 * default and meaning. */
void keel_config_print_help(FILE *f);

/* Returns "development", "staging" or "production" (a static string). */
const char *keel_config_env_name(enum keel_env env);

#endif
