/*
 * log.c - structured JSON log lines (see include/keel/log.h).
 *
 * DESIGN
 * The access log sends every request through keel_log_emit(), about 50k lines
 * per second per core, so the hot path neither allocates nor locks. Each thread
 * formats into its own fixed buffer of KEEL_LOG_LINE_MAX bytes (thread-local,
 * so it lives as long as the thread and is never freed) and hands the whole
 * line to write(2) once. One write per line is what keeps lines from different
 * threads apart: POSIX makes a write to a regular file in O_APPEND mode or to a
 * pipe (up to PIPE_BUF) atomic, and a terminal or socket sees whole lines in
 * practice; we never hold a lock across the syscall.
 *
 * The buffer is a struct keel_buf whose storage is the thread-local array:
 * its capacity exceeds its maximum, so keel_buf never reallocates it and
 * keel_json_escape() can append into it directly. Truncation works by lowering
 * the buffer's maximum while fields are written, which keeps room for the tail
 * (`,"truncated":true}` and the newline) so an oversized line still ends as
 * valid JSON. A string value that does not fit is shortened to what fits
 * (cut at a UTF-8 boundary); any other value that does not fit is dropped with
 * its key.
 *
 * The timestamp is the part that costs most to format, so each thread keeps
 * `{"ts":"YYYY-MM-DDTHH:MM:SS.` of the current second and only appends the
 * milliseconds when the second has not changed.
 */
#include "keel/log.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "keel/buf.h"
#include "keel/json.h"

/* Room kept free while fields are written, for `,"truncated":true}\n`. */
#define TAIL_RESERVE 32
/* A byte escapes to at most "\u00XX"; used to size a shortened string. */
#define ESCAPE_WORST 6
/* EAGAIN retries of 10 ms each before a line is dropped. */
#define WRITE_RETRIES 100

static _Atomic int g_level = KEEL_LOG_INFO;
static _Atomic int g_fd = 1;
static _Atomic uint64_t g_dropped;

static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static unsigned char g_hash_key[crypto_generichash_KEYBYTES];

static _Thread_local char t_line[KEEL_LOG_LINE_MAX + 1];
static _Thread_local int64_t t_sec = INT64_MIN;
static _Thread_local char t_prefix[48]; /* {"ts":"YYYY-MM-DDTHH:MM:SS. */
static _Thread_local size_t t_prefix_len;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* ---------------------------------------------------------------- setup -- */

static void make_hash_key(void)
{
    KEEL_ASSERT(sodium_init() >= 0);
    randombytes_buf(g_hash_key, sizeof(g_hash_key));
}

void keel_log_init(enum keel_log_level min_level, int fd)
{
    pthread_once(&g_key_once, make_hash_key);
    keel_log_set_level(min_level);
    atomic_store(&g_fd, fd);
}

void keel_log_set_level(enum keel_log_level min_level)
{
    int lvl = (int)min_level;

    if (lvl < KEEL_LOG_ERROR)
        lvl = KEEL_LOG_ERROR;
    if (lvl > KEEL_LOG_DEBUG)
        lvl = KEEL_LOG_DEBUG;
    atomic_store_explicit(&g_level, lvl, memory_order_relaxed);
}

bool keel_log_enabled(enum keel_log_level lvl)
{
    return (int)lvl <= atomic_load_explicit(&g_level, memory_order_relaxed);
}

keel_status keel_log_level_parse(const char *s, enum keel_log_level *out)
{
    if (!s)
        return KEEL_E_INVALID;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(level_names); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum keel_log_level)i;
            return KEEL_OK;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = KEEL_LOG_WARN;
        return KEEL_OK;
    }
    return KEEL_E_INVALID;
}

const char *keel_log_level_name(enum keel_log_level lvl)
{
    if ((unsigned)lvl >= KEEL_ARRAY_LEN(level_names))
        return "unknown";
    return level_names[lvl];
}

uint64_t keel_log_dropped(void)
{
    return atomic_load_explicit(&g_dropped, memory_order_relaxed);
}

void keel_log_hash_user_id(const char *id, char out[17])
{
    /* libsodium's generichash has a 16-byte minimum output; the first 8 bytes
     * of it are as uniform as a native 8-byte BLAKE2b and 64 bits are plenty
     * to correlate one user's lines in a single run. */
    unsigned char h[crypto_generichash_BYTES_MIN];

    pthread_once(&g_key_once, make_hash_key);
    if (!id)
        id = "";
    crypto_generichash(h, sizeof(h), (const unsigned char *)id, strlen(id), g_hash_key,
                       sizeof(g_hash_key));
    sodium_bin2hex(out, 17, h, 8);
}

/* ----------------------------------------------------------- formatting -- */

static void rollback(struct keel_buf *b, size_t mark)
{
    b->len = mark;
    b->data[mark] = '\0';
}

/* Appends the decimal form of v. */
static keel_status put_int(struct keel_buf *b, int64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return keel_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Appends the shortest of %.15g/%.17g that reads back as v; null if not finite. */
static keel_status put_double(struct keel_buf *b, double v)
{
    char tmp[32];
    int n;

    if (!isfinite(v))
        return keel_buf_append(b, "null", 4);
    n = snprintf(tmp, sizeof(tmp), "%.15g", v);
    if (strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    return keel_buf_append(b, tmp, (size_t)n);
}

/* The longest prefix of s[0..len) whose escaped form surely fits in `room`
 * bytes (quotes included), cut so that no UTF-8 sequence is split. */
static size_t fitting_prefix(const char *s, size_t len, size_t room)
{
    size_t used = 2, i = 0;

    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t cost = (c >= 0x20 && c < 0x7f) ? ((c == '"' || c == '\\') ? 2 : 1) : ESCAPE_WORST;

        if (used + cost > room)
            break;
        used += cost;
        i++;
    }
    if (i < len)
        while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80)
            i--;
    return i;
}

/* Appends s as a JSON string (null when NULL). When the whole value does not
 * fit, appends the longest prefix that does and sets *truncated. */
static keel_status put_str(struct keel_buf *b, const char *s, size_t len, bool *truncated)
{
    size_t mark = b->len;

    if (!s)
        return keel_buf_append(b, "null", 4);
    if (len == SIZE_MAX)
        len = strlen(s);
    if (keel_json_escape(b, s, len) == KEEL_OK)
        return KEEL_OK;
    rollback(b, mark);
    *truncated = true;
    len = fitting_prefix(s, len, b->max - b->len);
    if (keel_json_escape(b, s, len) == KEEL_OK)
        return KEEL_OK;
    rollback(b, mark);
    return KEEL_E_TOO_LARGE;
}

static keel_status put_value(struct keel_buf *b, const struct keel_log_field *f, bool *truncated)
{
    switch (f->type) {
    case KEEL_LF_T_STR:
        return put_str(b, f->v.s, f->len, truncated);
    case KEEL_LF_T_INT:
        return put_int(b, f->v.i);
    case KEEL_LF_T_DBL:
        return put_double(b, f->v.d);
    case KEEL_LF_T_BOOL:
        return f->v.b ? keel_buf_append(b, "true", 4) : keel_buf_append(b, "false", 5);
    case KEEL_LF_T_JSON:
        if (!f->v.s)
            return keel_buf_append(b, "null", 4);
        return keel_buf_append(b, f->v.s, f->len == SIZE_MAX ? strlen(f->v.s) : f->len);
    default:
        return keel_buf_append(b, "null", 4);
    }
}

/* Appends `,"key":value`; on overflow leaves the buffer as it was (or with a
 * shortened string value) and sets *truncated. */
static void put_field(struct keel_buf *b, const struct keel_log_field *f, bool *truncated)
{
    size_t mark = b->len;
    const char *key = f->key ? f->key : "";

    if (f->type == KEEL_LF_T_END)
        return;
    if (keel_buf_appendc(b, ',') < 0 || keel_json_escape(b, key, strlen(key)) < 0 ||
        keel_buf_appendc(b, ':') < 0 || put_value(b, f, truncated) < 0) {
        rollback(b, mark);
        *truncated = true;
    }
}

/* Appends `{"ts":"...Z","level":"<lvl>"`, reformatting the cached prefix only
 * when the second changed. */
static void put_head(struct keel_buf *b, enum keel_log_level lvl)
{
    int64_t ms = keel_wall_ms();
    int64_t sec = ms / 1000, frac = ms % 1000;
    char tail[8];

    if (frac < 0) {
        frac += 1000;
        sec--;
    }
    if (sec != t_sec) {
        time_t tt = (time_t)sec;
        struct tm tm;

        gmtime_r(&tt, &tm);
        t_prefix_len = strftime(t_prefix, sizeof(t_prefix), "{\"ts\":\"%Y-%m-%dT%H:%M:%S.", &tm);
        t_sec = sec;
    }
    tail[0] = (char)('0' + frac / 100);
    tail[1] = (char)('0' + frac / 10 % 10);
    tail[2] = (char)('0' + frac % 10);
    memcpy(tail + 3, "Z\",", 3);
    keel_buf_append(b, t_prefix, t_prefix_len);
    keel_buf_append(b, tail, 6);
    keel_buf_appends(b, "\"level\":\"");
    keel_buf_appends(b, keel_log_level_name(lvl));
    keel_buf_appends(b, "\",\"msg\":");
}

/* ---------------------------------------------------------------- output -- */

static void write_all(const char *p, size_t n)
{
    int fd = atomic_load_explicit(&g_fd, memory_order_relaxed);
    int retries = 0;

    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && retries++ < WRITE_RETRIES) {
            /* The fd was made non-blocking by someone else (libuv does that
             * to ttys and pipes it wraps); wait for room rather than lose
             * the line. */
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};

            poll(&pfd, 1, 10);
            continue;
        }
        atomic_fetch_add_explicit(&g_dropped, 1, memory_order_relaxed);
        return;
    }
}

static _Thread_local const struct keel_log_ctx *t_ctx;

const struct keel_log_ctx *keel_log_ctx_set(const struct keel_log_ctx *ctx)
{
    const struct keel_log_ctx *prev = t_ctx;

    t_ctx = ctx;
    return prev;
}

const struct keel_log_ctx *keel_log_ctx_get(void)
{
    return t_ctx;
}

static bool has_field(const struct keel_log_field *fields, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (fields[i].key && strcmp(fields[i].key, key) == 0)
            return true;
    return false;
}

/* The thread's context fields the caller did not give itself. */
static void
put_ctx(struct keel_buf *b, const struct keel_log_field *fields, size_t n, bool *truncated)
{
    const struct keel_log_ctx *c = t_ctx;

    if (!c)
        return;
    if (c->request_id && c->request_id[0] && !has_field(fields, n, "request_id"))
        put_field(b, &KEEL_LF_STR("request_id", c->request_id), truncated);
    if (c->trace_id && c->trace_id[0] && !has_field(fields, n, "trace_id"))
        put_field(b, &KEEL_LF_STR("trace_id", c->trace_id), truncated);
}

void keel_log_emit(enum keel_log_level lvl,
                   const char *msg,
                   const struct keel_log_field *fields,
                   size_t n)
{
    /* The storage is the thread-local array; cap > max means keel_buf never
     * reallocates (or frees) it. */
    struct keel_buf b = {
        .data = t_line, .len = 0, .cap = sizeof(t_line), .max = KEEL_LOG_LINE_MAX - TAIL_RESERVE};
    bool truncated = false;
    int saved_errno = errno;

    if (!keel_log_enabled(lvl))
        return;
    put_head(&b, lvl);
    if (put_str(&b, msg, SIZE_MAX, &truncated) < 0)
        keel_buf_append(&b, "null", 4);
    for (size_t i = 0; i < n; i++)
        put_field(&b, &fields[i], &truncated);
    put_ctx(&b, fields, n, &truncated);
    b.max = KEEL_LOG_LINE_MAX;
    if (truncated)
        keel_buf_appends(&b, ",\"truncated\":true");
    keel_buf_append(&b, "}\n", 2);
    KEEL_ASSERT(b.data == t_line);
    write_all(b.data, b.len);
    errno = saved_errno;
}
