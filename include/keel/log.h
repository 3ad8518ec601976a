/*
 * log.h - structured JSON logging: one JSON object per line (SPEC section 6).
 *
 * Every line is `{"ts":"2026-11-22T03:04:05.123Z","level":"info","msg":"...",<fields>}`
 * followed by '\n', built in a thread-local buffer and handed to the kernel
 * with a single write(2), so lines from concurrent threads never interleave
 * (see docs/internals/observability.md for the pipe caveat on long lines).
 *
 * Callers own what they log. Never pass passwords, tokens, cookies, API keys,
 * session ids or full request/response bodies as fields; hash user ids with
 * keel_log_hash_user_id() before logging them.
 *
 * Usage:
 *     keel_log(KEEL_LOG_INFO, "listening", KEEL_LF_STR("host", h), KEEL_LF_INT("port", p));
 *     keel_log(KEEL_LOG_WARN, "shutting down");
 */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/core.h"

enum keel_log_level {
    KEEL_LOG_ERROR = 0,
    KEEL_LOG_WARN = 1,
    KEEL_LOG_INFO = 2,
    KEEL_LOG_DEBUG = 3,
};

/* Upper bound of one log line in bytes, newline included. Field values that
 * would push a line past it are shortened (strings) or dropped (other types),
 * and the line then ends with `"truncated":true`; it stays valid JSON. */
#define KEEL_LOG_LINE_MAX 16384

enum keel_log_field_type {
    KEEL_LF_T_END = 0, /* sentinel used by the keel_log() macro; never emitted */
    KEEL_LF_T_STR,
    KEEL_LF_T_INT,
    KEEL_LF_T_DBL,
    KEEL_LF_T_BOOL,
    KEEL_LF_T_JSON,
    KEEL_LF_T_NULL,
};

/* One `"key":value` pair. Build them with the KEEL_LF_* macros below. Keys
 * and string values are borrowed for the duration of the call only. */
struct keel_log_field {
    const char *key;
    int type; /* enum keel_log_field_type */
    union {
        const char *s;
        int64_t i;
        double d;
        bool b;
    } v;
    size_t len; /* string byte length for STR/JSON; SIZE_MAX means NUL-terminated */
};

/* NUL-terminated string; a NULL `s` is written as JSON null. The value is
 * escaped (quotes, control characters; invalid UTF-8 becomes U+FFFD). */
#define KEEL_LF_STR(k, str)                                                                        \
    ((struct keel_log_field){.key = (k), .type = KEEL_LF_T_STR, .v.s = (str), .len = SIZE_MAX})
/* `n` bytes of `str` (may contain NUL, which is escaped). */
#define KEEL_LF_STRN(k, str, n)                                                                    \
    ((struct keel_log_field){.key = (k), .type = KEEL_LF_T_STR, .v.s = (str), .len = (n)})
#define KEEL_LF_INT(k, n) ((struct keel_log_field){.key = (k), .type = KEEL_LF_T_INT, .v.i = (n)})
/* Non-finite doubles are written as null. */
#define KEEL_LF_DBL(k, x)  ((struct keel_log_field){.key = (k), .type = KEEL_LF_T_DBL, .v.d = (x)})
#define KEEL_LF_BOOL(k, x) ((struct keel_log_field){.key = (k), .type = KEEL_LF_T_BOOL, .v.b = (x)})
#define KEEL_LF_NULL(k)    ((struct keel_log_field){.key = (k), .type = KEEL_LF_T_NULL})
/* `raw` (NUL-terminated) is inserted verbatim: the caller guarantees it is one
 * valid JSON value. A NULL `raw` is written as null. */
#define KEEL_LF_JSON(k, raw)                                                                       \
    ((struct keel_log_field){.key = (k), .type = KEEL_LF_T_JSON, .v.s = (raw), .len = SIZE_MAX})

/* Sets the minimum level that is written (lines above it are discarded) and
 * the file descriptor lines go to (1 when never called: info level, stdout).
 * Also creates the per-process key of keel_log_hash_user_id(). Call it on the
 * main thread before other threads log; later calls only change level and fd.
 * The fd is borrowed: the logger never closes it. */
void keel_log_init(enum keel_log_level min_level, int fd);

/* Changes the minimum level at run time; safe from any thread. */
void keel_log_set_level(enum keel_log_level min_level);

/* True when a line of level `lvl` would be written. Cheap (one relaxed atomic
 * load): guard expensive field preparation with it. */
bool keel_log_enabled(enum keel_log_level lvl);

/* The context of the work a thread is doing now (a request, a job): its
 * fields are added to every line the thread writes meanwhile, after the
 * caller's fields, unless the caller gave a field of the same name
 * (SPEC section 6: "request_id ... in every log line of the request").
 * NULL or empty members are left out. The struct is borrowed while set. */
struct keel_log_ctx {
    const char *request_id;
    const char *trace_id;
};

/* Sets this thread's context (NULL: none) and returns the previous one,
 * for the caller to restore when the work ends or pauses. */
const struct keel_log_ctx *keel_log_ctx_set(const struct keel_log_ctx *ctx);
/* This thread's context, or NULL. */
const struct keel_log_ctx *keel_log_ctx_get(void);

/* Writes one line with `n` fields (fields may be NULL when n is 0). `msg` may
 * be NULL (written as null). Thread-safe and allocation-free: the line is built
 * in a fixed thread-local buffer. A line the kernel does not accept (EAGAIN for
 * more than about a second, EPIPE, ...) is dropped and counted in
 * keel_log_dropped(); EINTR and partial writes are retried. */
void keel_log_emit(enum keel_log_level lvl,
                   const char *msg,
                   const struct keel_log_field *fields,
                   size_t n);

/* keel_log(level, msg, fields...): zero or more KEEL_LF_* fields. The fields
 * are not evaluated when the level is filtered out. Standard C11: the trailing
 * sentinel makes the variadic list non-empty even with zero fields. */
#define keel_log(lvl, ...) KEEL__LOG((lvl), __VA_ARGS__, KEEL__LF_END)
#define KEEL__LF_END       ((struct keel_log_field){.key = NULL, .type = KEEL_LF_T_END})
#define KEEL__LOG(lvl, msg, ...)                                                                   \
    do {                                                                                           \
        if (keel_log_enabled(lvl))                                                                 \
            keel_log_emit((lvl), (msg), (const struct keel_log_field[]){__VA_ARGS__},              \
                          sizeof((const struct keel_log_field[]){__VA_ARGS__}) /                   \
                                  sizeof(struct keel_log_field) -                                  \
                              1);                                                                  \
    } while (0)

/* Parses "error", "warn" (or "warning"), "info" or "debug", case-insensitive,
 * into *out. Returns KEEL_OK, or KEEL_E_INVALID (NULL or unknown; *out unchanged). */
keel_status keel_log_level_parse(const char *s, enum keel_log_level *out);

/* The lower-case name of a level ("error", ...); "unknown" when out of range. */
const char *keel_log_level_name(enum keel_log_level lvl);

/* Writes into `out` the 16 lower-case hex digits (plus NUL) of an 8-byte
 * BLAKE2b hash of `id`, keyed with a random key made once per process. The
 * same id hashes identically within one process run, so log lines of one user
 * correlate, while ids cannot be recovered or matched across restarts. A NULL
 * id hashes like "". Thread-safe; calls sodium_init() itself if needed. */
void keel_log_hash_user_id(const char *id, char out[17]);

/* Number of lines dropped because the fd would not take them. */
uint64_t keel_log_dropped(void);

#endif
