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

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "keel/json.h"
#include "keel/log.h"

#define SECRET_FILE_MAX (64 * 1024) /* a key or a URL, never a document */
#define INI_LINE_MAX    (64 * 1024)
#define NAME_LEN        64 /* longest derived name ("otel-exporter-otlp-endpoint-file") */
#define GOT_MAX         80 /* bytes of a bad value quoted in a message */
#define JWT_SECRET_MIN  32 /* HS256 wants a key as long as its output (RFC 7518 3.2) */

/* ------------------------------------------------------------------ table */

enum opt_type {
    T_STR,     /* char *: free text */
    T_URL,     /* char *: text that starts with one of `words` */
    T_URLS,    /* struct keel_config_list of T_URL entries */
    T_ENUM,    /* int: index into `words` */
    T_BOOL,    /* bool */
    T_U32,     /* uint32_t in min..max */
    T_U64,     /* uint64_t in min..max */
    T_MS,      /* uint64_t milliseconds, written as seconds; min..max in ms */
    T_ADDR,    /* struct keel_config_addr */
    T_RATE,    /* struct keel_config_rate; min..max bound the count */
    T_ORIGINS, /* struct keel_config_list of CORS origins (+ cors_allow_any) */
};

enum {
    F_SECRET = 1 << 0,    /* never printed; also read from NAME_FILE */
    F_NONEMPTY = 1 << 1,  /* the empty string is refused */
    F_AUTO_CPUS = 1 << 2, /* "auto" means the number of usable CPUs */
    F_NOFILE = 1 << 3,    /* cannot be set in the INI file (KEEL_CONFIG) */
};

struct opt {
    const char *env;
    enum opt_type type;
    unsigned flags;
    size_t off;
    const char *def; /* NULL: unset */
    uint64_t min, max;
    const char *const *words;
    const char *metavar;
    const char *help;
};

static const char *const env_words[] = {"development", "staging", "production", NULL};
static const char *const level_words[] = {"error", "warn", "info", "debug", NULL};
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
    {"KEEL_REDIS_URL", T_URL, F_SECRET, OFF(redis_url), NULL, 0, 0, redis_schemes, "URL",
     "redis://host:port/db; empty = in-process cache and limits"},
    {"KEEL_JWT_SECRET", T_STR, F_SECRET, OFF(jwt_secret), NULL, 0, 0, NULL, "KEY",
     "HS256 key, at least 32 bytes (generated in development)"},
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
};

#define NOPTS KEEL_ARRAY_LEN(options)

/* T_ENUM fields are written through an int pointer. */
_Static_assert(sizeof(enum keel_env) == sizeof(int), "enum keel_env is not an int");
_Static_assert(sizeof(enum keel_config_log_level) == sizeof(int), "log level is not an int");
/* The log module takes the level as its own enum: keep the values equal. */
_Static_assert((int)KEEL_CONFIG_LOG_ERROR == (int)KEEL_LOG_ERROR &&
                   (int)KEEL_CONFIG_LOG_WARN == (int)KEEL_LOG_WARN &&
                   (int)KEEL_CONFIG_LOG_INFO == (int)KEEL_LOG_INFO &&
                   (int)KEEL_CONFIG_LOG_DEBUG == (int)KEEL_LOG_DEBUG,
               "enum keel_config_log_level and enum keel_log_level differ");

/* ----------------------------------------------------------------- loader */

enum src { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };

struct origin {
    enum src src;
    int line;      /* SRC_FILE */
    bool file_var; /* read from the file that NAME_FILE (name_file, --name-file) names */
};

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

/* One value on its way into a field. */
struct val {
    struct loader *ld;
    size_t idx;
    const struct opt *o;
    struct origin org;
    const char *text;
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
__attribute__((format(printf, 3, 4))) static bool
reject(struct val *v, const char *got, const char *fmt, ...)
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

/* ---------------------------------------------------------------- parsers */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Strict unsigned decimal: digits only, no sign, no spaces, no overflow. */
static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t n = 0;
    size_t i;

    if (len == 0)
        return false;
    for (i = 0; i < len; i++) {
        if (!is_digit(s[i]) || n > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return false;
        n = n * 10 + (uint64_t)(s[i] - '0');
    }
    *out = n;
    return true;
}

/* "12", "0.5", "1.25" seconds -> milliseconds; at most 3 decimals. */
static bool parse_seconds(const char *s, uint64_t *ms_out)
{
    uint64_t whole = 0, frac = 0;
    size_t nwhole = 0, nfrac = 0;

    for (; is_digit(*s); s++, nwhole++) {
        if (nwhole == 15) /* keeps whole * 1000 far from overflow */
            return false;
        whole = whole * 10 + (uint64_t)(*s - '0');
    }
    if (*s == '.') {
        for (s++; is_digit(*s); s++, nfrac++) {
            if (nfrac == 3)
                return false;
            frac = frac * 10 + (uint64_t)(*s - '0');
        }
        if (nfrac == 0)
            return false;
    }
    if (*s || nwhole == 0)
        return false;
    for (; nfrac < 3; nfrac++)
        frac *= 10;
    *ms_out = whole * 1000 + frac;
    return true;
}

/* Milliseconds as seconds, without trailing zeros: 500 -> "0.5". */
static void format_seconds(uint64_t ms, char *out, size_t n)
{
    int len = snprintf(out, n, "%" PRIu64 ".%03u", ms / 1000, (unsigned)(ms % 1000));

    while (len > 0 && out[len - 1] == '0')
        out[--len] = '\0';
    if (len > 0 && out[len - 1] == '.')
        out[--len] = '\0';
}

static bool has_control(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    }
    return false;
}

static void wipe_free(char *s, bool secret)
{
    if (s && secret)
        explicit_bzero(s, strlen(s));
    free(s);
}

/* Replaces *dst with a copy of s (NULL when s is empty). */
static void set_str(char **dst, const char *s, bool secret)
{
    wipe_free(*dst, secret);
    *dst = *s ? keel_xstrdup(s) : NULL;
}

/* "a, b or c" from a NULL-terminated word list. */
static void join_words(const char *const *w, char *out, size_t n)
{
    size_t len = 0;

    out[0] = '\0';
    for (; *w && len < n; w++) {
        const char *sep = len == 0 ? "" : w[1] ? ", " : " or ";

        len += (size_t)snprintf(out + len, n - len, "%s%s", sep, *w);
    }
}

/* Whether s (after blanks) starts with one of o->words and has more. */
static bool starts_with_scheme(const struct opt *o, const char *s)
{
    const char *const *w;

    while (*s == ' ' || *s == '\t')
        s++;
    for (w = o->words; *w; w++) {
        if (strncasecmp(s, *w, strlen(*w)) == 0 && s[strlen(*w)])
            return true;
    }
    return false;
}

/* Checks one URL (a NUL-terminated string) of a T_URL or T_URLS option. */
static bool check_url(struct val *v, const char *url)
{
    char list[128];
    const char *p;

    for (p = url; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return reject(v, NULL, "must not contain spaces or control characters");
    }
    if (starts_with_scheme(v->o, url))
        return true;
    join_words(v->o->words, list, sizeof(list));
    return reject(v, NULL, "must start with %s", list);
}

/* T_STR and T_URL. */
static bool parse_str(struct val *v, void *field)
{
    if (!*v->text && (v->o->flags & F_NONEMPTY))
        return reject(v, NULL, "must not be empty");
    if (v->o->type == T_URL && *v->text && !check_url(v, v->text))
        return false;
    /* A secret may be any bytes (a key read from a file); other text ends
     * up in logs and headers, where control characters do harm. */
    if (!(v->o->flags & F_SECRET) && has_control(v->text))
        return reject(v, NULL, "must not contain control characters");
    set_str(field, v->text, v->o->flags & F_SECRET);
    return true;
}

static void list_release(const struct opt *o, void *field)
{
    struct keel_config_list *l = field;
    size_t i;

    for (i = 0; i < l->count; i++)
        wipe_free(l->items[i], o->flags & F_SECRET);
    free(l->items);
    wipe_free(l->raw, o->flags & F_SECRET);
    memset(l, 0, sizeof(*l));
}

/* Stores `n` heap strings as the list and joins them into `raw`. */
static void list_store(const struct opt *o, void *field, char **items, size_t n)
{
    struct keel_config_list *l = field;
    size_t i, len = 0;

    list_release(o, field);
    if (n == 0) {
        free(items);
        return;
    }
    for (i = 0; i < n; i++)
        len += strlen(items[i]) + 1;
    l->raw = keel_xmalloc(len);
    l->raw[0] = '\0';
    for (i = 0; i < n; i++) {
        if (i)
            strcat(l->raw, ",");
        strcat(l->raw, items[i]);
    }
    l->items = items;
    l->count = n;
}

static void items_free(const struct opt *o, char **items, size_t n)
{
    while (n > 0)
        wipe_free(items[--n], o->flags & F_SECRET);
    free(items);
}

static char *dup_trimmed(const char *s, size_t len)
{
    char *out;

    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    out = keel_xmalloc(len + 1);
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

/*
 * KEEL_DATABASE_REPLICAS. A libpq URI may itself hold commas (multi-host:
 * postgres://h1,h2/db), so the list is split only at a comma that starts a
 * new URI.
 */
static bool parse_urls(struct val *v, void *field)
{
    const char *start = v->text, *p;
    char **items;
    size_t n = 0;
    bool ok = true;

    if (!*v->text) {
        list_store(v->o, field, NULL, 0);
        return true;
    }
    /* Each entry after the first starts after a comma with a scheme, so
     * there are far fewer entries than len / 2 + 1. */
    items = keel_xcalloc(strlen(v->text) / 2 + 2, sizeof(*items));
    for (p = v->text;; p++) {
        if (*p && !(*p == ',' && starts_with_scheme(v->o, p + 1)))
            continue;
        items[n] = dup_trimmed(start, (size_t)(p - start));
        if (!*items[n] || items[n][strlen(items[n]) - 1] == ',')
            ok = reject(v, NULL, "has an empty entry");
        else if (!check_url(v, items[n]))
            ok = false;
        n++;
        if (!*p)
            break;
        start = p + 1;
    }
    if (!ok) {
        items_free(v->o, items, n);
        return false;
    }
    list_store(v->o, field, items, n);
    return true;
}

/* A DNS name or an IPv4 literal (IPv6 literals are bracketed and checked
 * with inet_pton by the callers). */
static bool valid_host(const char *h, size_t len)
{
    char buf[16];
    struct in_addr a4;
    size_t i;
    bool numeric = true;

    if (len == 0 || len > 253 || h[0] == '-' || h[0] == '.')
        return false;
    for (i = 0; i < len; i++) {
        char c = h[i];

        if (!is_digit(c) && c != '.')
            numeric = false;
        if (!is_digit(c) && !is_alpha(c) && c != '-' && c != '.' && c != '_')
            return false;
    }
    if (!numeric)
        return true;
    /* All digits and dots: it must be a real dotted quad, not 999.1.1.1. */
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, h, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, &a4) == 1;
}

static bool valid_ipv6(const char *h, size_t len)
{
    char buf[64];
    struct in6_addr a6;

    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, h, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, &a6) == 1;
}

/* Splits "host:port" or "[v6]:port". On success *host and *hlen point into s
 * (without brackets), *port_s and *plen at the port text, which may be
 * absent (plen 0) when `port_required` is false. */
static const char *split_hostport(const char *s,
                                  size_t len,
                                  bool port_required,
                                  const char **host,
                                  size_t *hlen,
                                  const char **port_s,
                                  size_t *plen)
{
    const char *end = s + len, *colon;

    if (len > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', len);

        if (!rb || !valid_ipv6(s + 1, (size_t)(rb - s - 1)))
            return "has an invalid IPv6 address";
        *host = s + 1;
        *hlen = (size_t)(rb - s - 1);
        colon = rb + 1 < end ? rb + 1 : NULL;
        if (colon && *colon != ':')
            return "must have ':' after the bracketed IPv6 address";
    } else {
        colon = memrchr(s, ':', len);
        *host = s;
        *hlen = colon ? (size_t)(colon - s) : len;
        if (colon && memchr(s, ':', *hlen))
            return "needs brackets around an IPv6 address, e.g. [::1]:8080";
        if (*hlen == 0)
            return "has no host";
        if (!valid_host(*host, *hlen))
            return "has an invalid host name or address";
    }
    *port_s = colon ? colon + 1 : end;
    *plen = (size_t)(end - *port_s);
    if (!colon && port_required)
        return "must be HOST:PORT";
    if (colon && *plen == 0)
        return "has an empty port";
    return NULL;
}

static bool parse_addr(struct val *v, void *field)
{
    struct keel_config_addr *a = field;
    const char *host, *port_s, *why;
    size_t hlen, plen;
    uint64_t port;

    why = split_hostport(v->text, strlen(v->text), true, &host, &hlen, &port_s, &plen);
    if (why)
        return reject(v, NULL, "%s", why);
    if (!parse_u64(port_s, plen, &port) || port > 65535)
        return reject(v, NULL, "port must be an integer between 0 and 65535");
    free(a->host);
    a->host = keel_xmalloc(hlen + 1);
    memcpy(a->host, host, hlen);
    a->host[hlen] = '\0';
    a->port = (int)port;
    return true;
}

static const struct {
    const char *name;
    uint32_t seconds;
} periods[] = {
    /* The first spelling of each period is the one keel_config_to_json() writes. */
    {"s", 1},       {"sec", 1},     {"second", 1}, {"min", 60},
    {"minute", 60}, {"hour", 3600}, {"h", 3600},   {"day", 86400},
};

static bool parse_rate(struct val *v, void *field)
{
    struct keel_config_rate *r = field;
    const char *slash = strchr(v->text, '/');
    uint64_t count;
    size_t i;

    if (!slash || !parse_u64(v->text, (size_t)(slash - v->text), &count) || count < v->o->min ||
        count > v->o->max)
        return reject(v, NULL, "must be COUNT/PERIOD with COUNT between %" PRIu64 " and %" PRIu64,
                      v->o->min, v->o->max);
    for (i = 0; i < KEEL_ARRAY_LEN(periods); i++) {
        if (strcasecmp(slash + 1, periods[i].name) == 0) {
            r->count = (uint32_t)count;
            r->period_seconds = periods[i].seconds;
            return true;
        }
    }
    return reject(v, NULL, "PERIOD must be s, sec, min, hour or day");
}

static const char *period_name(uint32_t seconds)
{
    size_t i;

    for (i = 0; i < KEEL_ARRAY_LEN(periods); i++) {
        if (periods[i].seconds == seconds)
            return periods[i].name;
    }
    return "s";
}

/* One CORS origin, exactly as a browser serializes it in the Origin header
 * (RFC 6454 section 6.2): lowercase, no path, no default port. Returns the
 * normalized heap string, or NULL with *why set. */
static char *parse_origin(const char *s, const char **why)
{
    size_t len = strlen(s), slen, hlen, plen, i;
    const char *p = s, *host, *port_s;
    uint64_t port = 0;
    char *out;

    *why = "must be * or scheme://host[:port]";
    if (strcmp(s, "*") == 0)
        return keel_xstrdup("*");
    if (!is_alpha(*p))
        return NULL;
    while (is_alpha(*p) || is_digit(*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    slen = (size_t)(p - s);
    if (strncmp(p, "://", 3) != 0)
        return NULL;
    p += 3;
    if (strcspn(p, "/?#") != strlen(p)) {
        *why = strcmp(p + strcspn(p, "/?#"), "/") == 0 ? "must not end with '/'"
                                                       : "must not have a path, query or fragment";
        return NULL;
    }
    if (strchr(p, '@')) {
        *why = "must not contain a user name";
        return NULL;
    }
    *why = split_hostport(p, len - (size_t)(p - s), false, &host, &hlen, &port_s, &plen);
    if (*why)
        return NULL;
    if (plen > 0 && (!parse_u64(port_s, plen, &port) || port == 0 || port > 65535)) {
        *why = "port must be an integer between 1 and 65535";
        return NULL;
    }
    if ((slen == 4 && strncasecmp(s, "http", 4) == 0 && port == 80) ||
        (slen == 5 && strncasecmp(s, "https", 5) == 0 && port == 443))
        port = 0; /* browsers leave the default port out */
    out = keel_xmalloc(len + 16);
    if (host != p) /* bracketed IPv6 */
        snprintf(out, len + 16, "%.*s://[%.*s]", (int)slen, s, (int)hlen, host);
    else
        snprintf(out, len + 16, "%.*s://%.*s", (int)slen, s, (int)hlen, host);
    if (port)
        snprintf(out + strlen(out), 8, ":%u", (unsigned)port);
    for (i = 0; out[i]; i++)
        out[i] = (char)(out[i] >= 'A' && out[i] <= 'Z' ? out[i] + 32 : out[i]);
    return out;
}

static bool parse_origins(struct val *v, void *field)
{
    const char *s = v->text, *comma, *why = "";
    char **items, *item;
    size_t n = 0;
    bool ok = true, any = false;

    v->ld->cfg->cors_allow_any = false;
    if (!*s) {
        list_store(v->o, field, NULL, 0);
        return true;
    }
    items = keel_xcalloc(strlen(s) / 2 + 2, sizeof(*items)); /* entries are >= 1 byte */
    for (;;) {
        comma = s + strcspn(s, ",");
        item = dup_trimmed(s, (size_t)(comma - s));
        items[n] = *item ? parse_origin(item, &why) : NULL;
        if (!*item)
            ok = reject(v, NULL, "has an empty entry");
        else if (!items[n])
            ok = reject(v, item, "origin %s", why);
        else if (strcmp(items[n++], "*") == 0)
            any = true;
        free(item);
        if (!*comma)
            break;
        s = comma + 1;
    }
    if (ok && any && n > 1)
        ok = reject(v, NULL, "cannot mix * with other origins");
    if (!ok) {
        items_free(v->o, items, n);
        return false;
    }
    list_store(v->o, field, items, n);
    v->ld->cfg->cors_allow_any = any;
    return true;
}

static bool parse_enum(struct val *v, void *field)
{
    char list[128];
    int i;

    for (i = 0; v->o->words[i]; i++) {
        if (strcasecmp(v->text, v->o->words[i]) == 0) {
            *(int *)field = i;
            return true;
        }
    }
    join_words(v->o->words, list, sizeof(list));
    return reject(v, NULL, "must be %s", list);
}

static const char *const true_words[] = {"1", "true", "yes", "on", NULL};
static const char *const false_words[] = {"0", "false", "no", "off", NULL};

static int bool_value(const char *s)
{
    size_t i;

    for (i = 0; true_words[i]; i++) {
        if (strcasecmp(s, true_words[i]) == 0)
            return 1;
        if (strcasecmp(s, false_words[i]) == 0)
            return 0;
    }
    return -1;
}

static bool parse_bool(struct val *v, void *field)
{
    int b = bool_value(v->text);

    if (b < 0)
        return reject(v, NULL, "must be true or false (also 1/0, yes/no, on/off)");
    *(bool *)field = b;
    return true;
}

/* The CPUs this process may run on: the affinity mask honours taskset and
 * container cpusets, which the online count does not. */
static uint64_t usable_cpus(void)
{
    cpu_set_t set;
    long n = -1;

    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (uint64_t)n;
}

static bool parse_uint(struct val *v, void *field)
{
    const struct opt *o = v->o;
    uint64_t n;

    if ((o->flags & F_AUTO_CPUS) && strcasecmp(v->text, "auto") == 0) {
        n = usable_cpus();
        n = n < o->min ? o->min : n > o->max ? o->max : n;
    } else if (!parse_u64(v->text, strlen(v->text), &n) || n < o->min || n > o->max) {
        return reject(v, NULL, "must be an integer between %" PRIu64 " and %" PRIu64 "%s", o->min,
                      o->max, (o->flags & F_AUTO_CPUS) ? " or auto" : "");
    }
    if (o->type == T_U32)
        *(uint32_t *)field = (uint32_t)n;
    else
        *(uint64_t *)field = n;
    return true;
}

static bool parse_ms(struct val *v, void *field)
{
    char lo[32], hi[32];
    uint64_t ms;

    if (!parse_seconds(v->text, &ms) || ms < v->o->min || ms > v->o->max) {
        format_seconds(v->o->min, lo, sizeof(lo));
        format_seconds(v->o->max, hi, sizeof(hi));
        return reject(v, NULL, "must be a number of seconds between %s and %s (at most 3 decimals)",
                      lo, hi);
    }
    *(uint64_t *)field = ms;
    return true;
}

/* ------------------------------------------------------------ JSON output */

static void json_secret_or(struct keel_json *j, const struct opt *o, const char *s)
{
    if (!s)
        keel_json_null(j);
    else if (o->flags & F_SECRET)
        keel_json_str(j, "[redacted]");
    else
        keel_json_str(j, s);
}

static void json_value(struct keel_json *j, const struct opt *o, const void *field)
{
    char buf[320];

    switch (o->type) {
    case T_STR:
    case T_URL:
        json_secret_or(j, o, *(char *const *)field);
        break;
    case T_URLS:
    case T_ORIGINS:
        json_secret_or(j, o, ((const struct keel_config_list *)field)->raw);
        break;
    case T_ENUM:
        keel_json_str(j, o->words[*(const int *)field]);
        break;
    case T_BOOL:
        keel_json_bool(j, *(const bool *)field);
        break;
    case T_U32:
        keel_json_uint(j, *(const uint32_t *)field);
        break;
    case T_U64:
        keel_json_uint(j, *(const uint64_t *)field);
        break;
    case T_MS:
        format_seconds(*(const uint64_t *)field, buf, sizeof(buf));
        keel_json_raw(j, buf, strlen(buf));
        break;
    case T_ADDR: {
        const struct keel_config_addr *a = field;
        bool v6 = a->host && strchr(a->host, ':');

        snprintf(buf, sizeof(buf), "%s%s%s:%d", v6 ? "[" : "", a->host ? a->host : "",
                 v6 ? "]" : "", a->port);
        keel_json_str(j, buf);
        break;
    }
    case T_RATE: {
        const struct keel_config_rate *r = field;

        snprintf(buf, sizeof(buf), "%" PRIu32 "/%s", r->count, period_name(r->period_seconds));
        keel_json_str(j, buf);
        break;
    }
    }
}

/* ------------------------------------------------------------- type table */

static bool (*const parsers[])(struct val *, void *) = {
    [T_STR] = parse_str,   [T_URL] = parse_str,         [T_URLS] = parse_urls,
    [T_ENUM] = parse_enum, [T_BOOL] = parse_bool,       [T_U32] = parse_uint,
    [T_U64] = parse_uint,  [T_MS] = parse_ms,           [T_ADDR] = parse_addr,
    [T_RATE] = parse_rate, [T_ORIGINS] = parse_origins,
};

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
        wipe_free(*(char **)field, o->flags & F_SECRET);
        *(char **)field = NULL;
        break;
    case T_URLS:
    case T_ORIGINS:
        list_release(o, field);
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
    struct val v = {ld, i, &options[i], org, text};

    if (!parsers[options[i].type](&v, field_of(ld->cfg, &options[i])))
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
        if (*i + 1 < argc && bool_value(argv[*i + 1]) >= 0)
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
    char at[512];

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
    if (!ld->bad[cors] && cfg->cors_allow_any) {
        where(ld, cors, ld->origin[cors], at, sizeof(at));
        problem(ld, "%s: * is not allowed when KEEL_ENV=production; list the origins", at);
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
        json_value(&j, &options[i], (const char *)cfg + options[i].off);
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
