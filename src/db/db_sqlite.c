/*
 * db_sqlite.c - the SQLite driver behind the storage API: the embedded
 * default (KEEL_DATABASE_URL=sqlite:./var/keel.db). It implements the
 * vtable of db_int.h; nothing outside src/db/ sees a sqlite3 type.
 *
 * DESIGN: one driver connection is one sqlite3 handle opened with
 * SQLITE_OPEN_NOMUTEX, because the pool hands a connection to one thread
 * at a time and SQLite's own per-connection mutex would only cost. Every
 * connection runs in WAL mode (readers never block the writer, nor it
 * them), with foreign keys on, synchronous=NORMAL (durable at checkpoint,
 * never corrupt: the usual WAL pairing) and a 5 s busy timeout, so a
 * BEGIN IMMEDIATE queued behind another process's writer waits instead of
 * failing at once. Inside one process db.c serializes writers itself.
 *
 * Statements: each connection keeps up to CACHE_MAX prepared statements
 * keyed by their SQL text (hash + strcmp, least recently used evicted),
 * prepared with SQLITE_PREPARE_PERSISTENT. The $1..$n placeholders of the
 * storage API are SQLite named parameters; when a statement is prepared the
 * driver maps each "$N" to SQLite's parameter index once (a "$1" used twice
 * is one parameter). Any other placeholder form is refused, as is a string
 * holding more than one statement: stacked statements are never needed by
 * code that binds its values, and refusing them limits what a mistake can do.
 *
 * Results are stepped lazily, but run() takes the first step itself so that
 * errors (a constraint hit by INSERT ... RETURNING, a timeout) come back from
 * keel_db_query as they do from the PostgreSQL driver. Parameters of a query
 * are bound SQLITE_TRANSIENT (copied) because later steps may read them after
 * the caller's borrowed buffers are gone; statements that run to completion
 * inside run() bind SQLITE_STATIC (no copy).
 *
 * Timeout: a progress handler, called every PROGRESS_OPS virtual-machine
 * instructions, interrupts a statement whose steps have used up the
 * connection's timeout (time spent by the caller between steps does not
 * count). Waiting on another writer's lock is bounded by the busy timeout
 * instead.
 */
#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keel/core.h"

#include "db/db_int.h"

#define CACHE_MAX          64
#define ERRLEN             256
#define PROGRESS_OPS       1000
#define DEFAULT_TIMEOUT_MS 5000
#define BUSY_TIMEOUT_MS    5000
#define MAX_PARAM_NUMBER   32766 /* SQLite's default SQLITE_MAX_VARIABLE_NUMBER */

/* A cached prepared statement. */
struct stmt {
    sqlite3_stmt *st;
    char *sql;
    uint64_t hash;
    uint64_t used; /* LRU tick */
    int *idx;      /* idx[k]: SQLite's index of parameter $k+1 (0: not used) */
    unsigned nidx; /* the highest $N the statement uses */
};

/* The state of the result being iterated (one per connection). */
enum cursor_state {
    CUR_NONE,  /* no result open */
    CUR_FIRST, /* run() stepped to the first row, next() has not returned it */
    CUR_ROW,   /* a row is current */
    CUR_END,   /* done or failed: the statement is reset */
};

struct conn {
    sqlite3 *db;
    struct stmt cache[CACHE_MAX];
    unsigned ncache;
    uint64_t tick;
    struct stmt *cur; /* the statement of the open result */
    enum cursor_state state;
    int first_rc;         /* what the first step returned (CUR_FIRST) */
    keel_status end_rc;   /* what next() returns in CUR_END */
    unsigned timeout_ms;  /* 0: none */
    uint64_t budget_ns;   /* time the current statement may still run */
    uint64_t deadline_ns; /* of the running step; 0: none */
    bool timed_out;
    bool broken;
    int last_rc; /* extended result code of the last failure */
    char err[ERRLEN];
};

static const char empty_bytes[1];

/* ------------------------------------------------------------- errors */

static bool is_conflict(int ext)
{
    return ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY ||
           ext == SQLITE_CONSTRAINT_FOREIGNKEY || ext == SQLITE_CONSTRAINT_ROWID;
}

/* Records a failure of SQLite call result `src` and maps it to a status
 * (db.h "Errors"). The message is SQLite's, which names tables and
 * constraints but not the database file. */
static keel_status fail(struct conn *c, int src)
{
    c->last_rc = src;
    if ((src & 0xff) == SQLITE_INTERRUPT && c->timed_out) {
        snprintf(c->err, sizeof(c->err), "statement timeout (%u ms)", c->timeout_ms);
        return KEEL_E_TIMEOUT;
    }
    snprintf(c->err, sizeof(c->err), "%s", sqlite3_errmsg(c->db));
    switch (src & 0xff) {
    case SQLITE_CONSTRAINT:
        return is_conflict(src) ? KEEL_E_CONFLICT : KEEL_E_INVALID;
    case SQLITE_INTERRUPT:
        return KEEL_E_TIMEOUT;
    case SQLITE_NOMEM:
        return KEEL_E_NOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_IOERR:
        /* The file is unusable through this handle: let the pool reopen. */
        c->broken = true;
        return KEEL_E_DB;
    default:
        /* SQLITE_BUSY and SQLITE_LOCKED land here too: retryable() tells. */
        return KEEL_E_DB;
    }
}

/* A failure found by the driver itself (misuse of the API by the caller). */
static keel_status fail_msg(struct conn *c, keel_status rc, const char *msg)
{
    c->last_rc = SQLITE_MISUSE;
    snprintf(c->err, sizeof(c->err), "%s", msg);
    return rc;
}

/* ---------------------------------------------------------- time limit */

static int progress(void *arg)
{
    struct conn *c = arg;

    if (c->deadline_ns && keel_now_ns() > c->deadline_ns) {
        c->timed_out = true;
        return 1; /* interrupts the statement: SQLITE_INTERRUPT */
    }
    return 0;
}

/* One sqlite3_step under the statement's remaining time budget. */
static int step(struct conn *c, sqlite3_stmt *st)
{
    uint64_t t0 = 0, spent;
    int src;

    c->timed_out = false;
    if (c->timeout_ms) {
        t0 = keel_now_ns();
        c->deadline_ns = t0 + (c->budget_ns ? c->budget_ns : 1);
    }
    src = sqlite3_step(st);
    if (c->timeout_ms) {
        spent = keel_now_ns() - t0;
        c->budget_ns = spent < c->budget_ns ? c->budget_ns - spent : 0;
        c->deadline_ns = 0;
    }
    return src;
}

/* -------------------------------------------------------- statement cache */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ULL;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void stmt_clear(struct stmt *s)
{
    sqlite3_finalize(s->st);
    free(s->sql);
    free(s->idx);
    memset(s, 0, sizeof(*s));
}

/* Parses a parameter name "$N" (N in 1..MAX_PARAM_NUMBER, no leading
 * zero); 0 for any other form. */
static unsigned param_number(const char *name)
{
    unsigned long n;
    char *end;

    if (!name || name[0] != '$' || name[1] < '1' || name[1] > '9')
        return 0;
    errno = 0;
    n = strtoul(name + 1, &end, 10);
    if (errno || *end || n > MAX_PARAM_NUMBER)
        return 0;
    return (unsigned)n;
}

/* Builds s->idx from the statement's parameter names. */
static keel_status map_params(struct conn *c, struct stmt *s)
{
    int count = sqlite3_bind_parameter_count(s->st);
    unsigned n, max = 0;
    int i;

    for (i = 1; i <= count; i++) {
        n = param_number(sqlite3_bind_parameter_name(s->st, i));
        if (!n)
            return fail_msg(c, KEEL_E_INVALID, "placeholders must be $1..$n");
        if (n > max)
            max = n;
    }
    s->nidx = max;
    s->idx = keel_xcalloc(max ? max : 1, sizeof(*s->idx));
    for (i = 1; i <= count; i++)
        s->idx[param_number(sqlite3_bind_parameter_name(s->st, i)) - 1] = i;
    return KEEL_OK;
}

/* True when `tail` (what prepare left after the first statement) holds
 * nothing but blanks, semicolons and comments. */
static bool tail_empty(struct conn *c, const char *tail)
{
    sqlite3_stmt *st = NULL;
    const char *rest = tail;

    while (rest && *rest) {
        const char *before = rest;

        if (sqlite3_prepare_v2(c->db, rest, -1, &st, &rest) != SQLITE_OK)
            return false;
        if (st) {
            sqlite3_finalize(st);
            return false;
        }
        if (rest == before)
            return false;
    }
    return true;
}

static struct stmt *cache_slot(struct conn *c)
{
    struct stmt *lru;
    unsigned i;

    if (c->ncache < CACHE_MAX)
        return &c->cache[c->ncache++];
    lru = &c->cache[0];
    for (i = 1; i < CACHE_MAX; i++)
        if (c->cache[i].used < lru->used)
            lru = &c->cache[i];
    stmt_clear(lru);
    return lru;
}

/* Finds the prepared statement for `sql`, preparing and caching it on first
 * use. No result may be open on the connection (run() closes it first). */
static keel_status stmt_get(struct conn *c, const char *sql, struct stmt **out)
{
    uint64_t h = fnv1a(sql);
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    struct stmt *s;
    keel_status rc;
    unsigned i;
    int src;

    for (i = 0; i < c->ncache; i++) {
        s = &c->cache[i];
        if (s->hash == h && strcmp(s->sql, sql) == 0) {
            s->used = ++c->tick;
            *out = s;
            return KEEL_OK;
        }
    }
    src = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail);
    if (src != SQLITE_OK)
        return fail(c, src);
    if (!st)
        return fail_msg(c, KEEL_E_INVALID, "empty statement");
    if (!tail_empty(c, tail)) {
        sqlite3_finalize(st);
        return fail_msg(c, KEEL_E_INVALID, "one statement per call");
    }
    s = cache_slot(c);
    s->st = st;
    s->sql = keel_xstrdup(sql);
    s->hash = h;
    s->used = ++c->tick;
    rc = map_params(c, s);
    if (rc < 0) {
        stmt_clear(s);
        /* The slot is now empty; keep the array dense for the lookups. */
        *s = c->cache[--c->ncache];
        memset(&c->cache[c->ncache], 0, sizeof(c->cache[0]));
        return rc;
    }
    *out = s;
    return KEEL_OK;
}

/* --------------------------------------------------------------- binding */

static int bind_one(sqlite3_stmt *st, int i, const struct keel_db_param *p, bool copy)
{
    void (*life)(void *) = copy ? SQLITE_TRANSIENT : SQLITE_STATIC;
    size_t len;

    switch (p->type) {
    case KEEL_DB_T_NULL:
        return sqlite3_bind_null(st, i);
    case KEEL_DB_T_TEXT:
    case KEEL_DB_T_UUID:
        if (!p->v.s)
            return sqlite3_bind_null(st, i);
        len = p->len == SIZE_MAX ? strlen(p->v.s) : p->len;
        return sqlite3_bind_text64(st, i, p->v.s, len, life, SQLITE_UTF8);
    case KEEL_DB_T_INT64:
    case KEEL_DB_T_TIME: /* INTEGER microseconds since the epoch */
        return sqlite3_bind_int64(st, i, p->v.i);
    case KEEL_DB_T_BOOL:
        return sqlite3_bind_int(st, i, p->v.t ? 1 : 0);
    case KEEL_DB_T_DOUBLE:
        return sqlite3_bind_double(st, i, p->v.d);
    case KEEL_DB_T_BYTES:
        /* A NULL pointer would bind SQL NULL: an empty blob is not NULL. */
        if (p->len == 0)
            return sqlite3_bind_zeroblob(st, i, 0);
        return sqlite3_bind_blob64(st, i, p->v.b, p->len, life);
    }
    return SQLITE_MISMATCH;
}

static keel_status
bind_all(struct conn *c, struct stmt *s, const struct keel_db_param *p, unsigned n, bool copy)
{
    unsigned k;
    int src;

    if (n != s->nidx) {
        snprintf(c->err, sizeof(c->err), "statement takes %u parameters, %u given", s->nidx, n);
        c->last_rc = SQLITE_MISUSE;
        return KEEL_E_INVALID;
    }
    for (k = 0; k < n; k++) {
        if (!s->idx[k]) {
            snprintf(c->err, sizeof(c->err), "parameter $%u is not used by the statement", k + 1);
            c->last_rc = SQLITE_MISUSE;
            return KEEL_E_INVALID;
        }
        src = bind_one(s->st, s->idx[k], &p[k], copy);
        if (src == SQLITE_MISMATCH)
            return fail_msg(c, KEEL_E_INVALID, "unknown parameter type");
        if (src != SQLITE_OK)
            return fail(c, src);
    }
    return KEEL_OK;
}

/* ------------------------------------------------------------ statements */

static void stmt_done(struct stmt *s)
{
    sqlite3_reset(s->st);
    sqlite3_clear_bindings(s->st);
}

/* Closes the open result, if any (the caller should have freed it). */
static void cursor_close(struct conn *c)
{
    if (c->cur)
        stmt_done(c->cur);
    c->cur = NULL;
    c->state = CUR_NONE;
}

/* Steps a statement that returns no rows for the caller to completion. */
static keel_status run_to_end(struct conn *c, struct stmt *s, int64_t *affected)
{
    sqlite3_int64 before = sqlite3_total_changes64(c->db);
    int src;

    do {
        src = step(c, s->st);
    } while (src == SQLITE_ROW);
    if (src != SQLITE_DONE)
        return fail(c, src);
    /* sqlite3_changes64 keeps the count of the last INSERT/UPDATE/DELETE,
     * which is stale after DDL or a SELECT: trust it only if this
     * statement changed something. */
    if (affected)
        *affected = sqlite3_total_changes64(c->db) == before ? 0 : sqlite3_changes64(c->db);
    return KEEL_OK;
}

static keel_status sq_run(void *h,
                          const char *sql,
                          const struct keel_db_param *p,
                          unsigned n,
                          struct keel_db_rows *rows,
                          int64_t *affected)
{
    struct conn *c = h;
    struct stmt *s = NULL;
    keel_status rc;
    int src;

    cursor_close(c);
    c->err[0] = '\0';
    c->last_rc = SQLITE_OK;
    c->budget_ns = (uint64_t)c->timeout_ms * 1000000u;
    if (affected)
        *affected = 0;
    rc = stmt_get(c, sql, &s);
    if (rc < 0)
        return rc;
    rc = bind_all(c, s, p, n, rows != NULL);
    if (rc < 0)
        goto out;
    if (!rows) {
        rc = run_to_end(c, s, affected);
        goto out;
    }
    src = step(c, s->st);
    if (src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = fail(c, src);
        goto out;
    }
    c->cur = s;
    c->state = CUR_FIRST;
    c->first_rc = src;
    rows->d = c;
    rows->ncols = (unsigned)sqlite3_column_count(s->st);
    return KEEL_OK;
out:
    stmt_done(s);
    return rc;
}

/* Runs a constant statement without parameters or rows. */
static keel_status run_simple(struct conn *c, const char *sql)
{
    return sq_run(c, sql, NULL, 0, NULL, NULL);
}

/* ---------------------------------------------------------------- results */

static keel_status sq_next(struct keel_db_rows *r)
{
    struct conn *c = r->d;
    int src;

    if (!c || !c->cur)
        return KEEL_E_INVALID;
    switch (c->state) {
    case CUR_FIRST:
        src = c->first_rc;
        break;
    case CUR_ROW:
        src = step(c, c->cur->st);
        break;
    default:
        return c->end_rc;
    }
    if (src == SQLITE_ROW) {
        c->state = CUR_ROW;
        return KEEL_OK;
    }
    c->end_rc = src == SQLITE_DONE ? KEEL_DONE : fail(c, src);
    c->state = CUR_END;
    /* Reset at once: an idle, unreset SELECT would pin its WAL snapshot. */
    sqlite3_reset(c->cur->st);
    return c->end_rc;
}

static void sq_rows_free(struct keel_db_rows *r)
{
    struct conn *c = r->d;

    if (c)
        cursor_close(c);
    r->d = NULL;
}

/* The statement whose current row may be read, or NULL: SQLite leaves
 * column reads undefined when no row is current. */
static sqlite3_stmt *row_stmt(const struct keel_db_rows *r, unsigned col)
{
    const struct conn *c = r->d;

    if (!c || !c->cur || c->state != CUR_ROW || col >= r->ncols)
        return NULL;
    return c->cur->st;
}

static bool sq_is_null(const struct keel_db_rows *r, unsigned col)
{
    sqlite3_stmt *st = row_stmt(r, col);

    return !st || sqlite3_column_type(st, (int)col) == SQLITE_NULL;
}

static const char *sq_text(const struct keel_db_rows *r, unsigned col, size_t *len)
{
    sqlite3_stmt *st = row_stmt(r, col);
    const unsigned char *t = st ? sqlite3_column_text(st, (int)col) : NULL;

    /* sqlite3_column_bytes after sqlite3_column_text: the converted length. */
    if (len)
        *len = t ? (size_t)sqlite3_column_bytes(st, (int)col) : 0;
    return (const char *)t;
}

static int64_t sq_int64(const struct keel_db_rows *r, unsigned col)
{
    sqlite3_stmt *st = row_stmt(r, col);

    return st ? sqlite3_column_int64(st, (int)col) : 0;
}

static double sq_dbl(const struct keel_db_rows *r, unsigned col)
{
    sqlite3_stmt *st = row_stmt(r, col);

    return st ? sqlite3_column_double(st, (int)col) : 0;
}

static bool sq_bool(const struct keel_db_rows *r, unsigned col)
{
    return sq_int64(r, col) != 0;
}

static const void *sq_bytes(const struct keel_db_rows *r, unsigned col, size_t *len)
{
    sqlite3_stmt *st = row_stmt(r, col);
    const void *b;

    *len = 0;
    if (!st || sqlite3_column_type(st, (int)col) == SQLITE_NULL)
        return NULL;
    b = sqlite3_column_blob(st, (int)col);
    *len = (size_t)sqlite3_column_bytes(st, (int)col);
    /* SQLite returns NULL for an empty blob; the API keeps NULL for NULL. */
    return b ? b : empty_bytes;
}

static int64_t sq_time(const struct keel_db_rows *r, unsigned col)
{
    return sq_int64(r, col); /* stored as INTEGER microseconds */
}

/* ----------------------------------------------------------- transactions */

static keel_status sq_begin(void *h, bool write)
{
    /* IMMEDIATE takes the write lock now (waiting up to the busy timeout)
     * instead of failing with SQLITE_BUSY at the first write, when the
     * transaction's reads may already be stale and retrying is the only
     * cure. */
    return run_simple(h, write ? "BEGIN IMMEDIATE" : "BEGIN");
}

static keel_status sq_commit(void *h)
{
    return run_simple(h, "COMMIT");
}

static keel_status sq_rollback(void *h)
{
    struct conn *c = h;
    int last = c->last_rc;
    char err[ERRLEN];
    keel_status rc;

    cursor_close(c);
    /* SQLite may have rolled back already (an interrupted or failed
     * statement, a failed COMMIT): nothing left to do. */
    if (sqlite3_get_autocommit(c->db))
        return KEEL_OK;
    /* Keep the error that caused the rollback: db.c asks retryable() and
     * errmsg() after rolling back. */
    memcpy(err, c->err, sizeof(err));
    rc = run_simple(c, "ROLLBACK");
    if (rc == KEEL_OK) {
        c->last_rc = last;
        memcpy(c->err, err, sizeof(err));
    }
    return rc;
}

/* --------------------------------------------------------- state, options */

static bool sq_retryable(void *h)
{
    const struct conn *c = h;
    int prim = c->last_rc & 0xff;

    return prim == SQLITE_BUSY || prim == SQLITE_LOCKED;
}

static bool sq_broken(void *h)
{
    const struct conn *c = h;

    return c->broken;
}

static const char *sq_errmsg(void *h)
{
    const struct conn *c = h;

    return c->err[0] ? c->err : "no error";
}

static void sq_set_timeout(void *h, unsigned ms)
{
    struct conn *c = h;

    c->timeout_ms = ms;
    /* No handler at all without a timeout: it costs a call per
     * PROGRESS_OPS instructions. */
    if (ms)
        sqlite3_progress_handler(c->db, PROGRESS_OPS, progress, c);
    else
        sqlite3_progress_handler(c->db, 0, NULL, NULL);
}

static keel_status sq_ping(void *h)
{
    return run_simple(h, "SELECT 1");
}

/* ----------------------------------------------------------- open, close */

/* Creates the missing directories above the database file (mode 0700:
 * the directory holds the database and, in development, secrets). */
static int make_parent_dirs(const char *path)
{
    char buf[PATH_MAX];
    char *slash;
    size_t len = strlen(path);
    char *p;

    if (len >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0; /* in the working directory, or directly under / */
    *slash = '\0';
    for (p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0700) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Sets journal_mode=WAL. *ok tells whether it took: an in-memory database
 * stays "memory", which is fine; a file that cannot do WAL is refused. */
static int enable_wal(sqlite3 *db, bool *ok)
{
    sqlite3_stmt *st = NULL;
    const char *mode;
    int src;

    *ok = false;
    src = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        mode = (const char *)sqlite3_column_text(st, 0);
        *ok = mode && (strcmp(mode, "wal") == 0 || strcmp(mode, "memory") == 0);
        src = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return src;
}

static keel_status set_pragmas(struct conn *c, bool read_only, char *errbuf, size_t errlen)
{
    uint64_t deadline = keel_now_ns() + (uint64_t)BUSY_TIMEOUT_MS * 1000000u;
    bool wal = true;
    int src;

    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    for (;;) {
        src = sqlite3_exec(c->db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL", NULL, NULL,
                           NULL);
        if (src == SQLITE_OK && !read_only)
            src = enable_wal(c->db, &wal);
        /* Switching a new file to WAL takes an exclusive lock for which
         * SQLite does not call the busy handler (two instances opening the
         * same new file at once): retry within the busy timeout. */
        if (((src & 0xff) != SQLITE_BUSY && (src & 0xff) != SQLITE_LOCKED) ||
            keel_now_ns() > deadline)
            break;
        sqlite3_sleep(10);
    }
    if (src != SQLITE_OK) {
        snprintf(errbuf, errlen, "sqlite: %s", sqlite3_errmsg(c->db));
        return (src & 0xff) == SQLITE_NOMEM ? KEEL_E_NOMEM : KEEL_E_UNAVAILABLE;
    }
    if (!wal) {
        snprintf(errbuf, errlen, "sqlite: cannot enable WAL journal mode");
        return KEEL_E_UNAVAILABLE;
    }
    return KEEL_OK;
}

static void sq_close(void *h)
{
    struct conn *c = h;
    unsigned i;

    if (!c)
        return;
    cursor_close(c);
    for (i = 0; i < c->ncache; i++)
        stmt_clear(&c->cache[i]);
    sqlite3_close(c->db);
    free(c);
}

/* URL forms: sqlite:PATH (relative or absolute), sqlite::memory:, and
 * sqlite:file:...?mode=... (an SQLite URI filename, taken as is). */
static keel_status
sq_connect(const char *url, bool read_only, void **h, char *errbuf, size_t errlen)
{
    int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    const char *path;
    struct conn *c;
    keel_status rc;
    int src;

    *h = NULL;
    if (!sqlite3_threadsafe()) {
        /* Pool threads share the library: a single-thread build is unsafe. */
        snprintf(errbuf, errlen, "sqlite: library built without thread support");
        return KEEL_E_INVALID;
    }
    if (strncmp(url, "sqlite:", 7) != 0 || url[7] == '\0') {
        snprintf(errbuf, errlen, "sqlite: expected sqlite:PATH");
        return KEEL_E_INVALID;
    }
    path = url + 7;
    flags |= read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (strncmp(path, "file:", 5) == 0) {
        flags |= SQLITE_OPEN_URI;
    } else if (strcmp(path, ":memory:") != 0 && !read_only && make_parent_dirs(path) < 0) {
        snprintf(errbuf, errlen, "sqlite: cannot create the database directory: %s",
                 strerror(errno));
        return KEEL_E_UNAVAILABLE;
    }
    c = keel_xcalloc(1, sizeof(*c));
    src = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (src != SQLITE_OK) {
        snprintf(errbuf, errlen, "sqlite: %s", c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(src));
        rc = (src & 0xff) == SQLITE_NOMEM ? KEEL_E_NOMEM : KEEL_E_UNAVAILABLE;
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    rc = set_pragmas(c, read_only, errbuf, errlen);
    if (rc < 0)
        goto fail;
    sq_set_timeout(c, DEFAULT_TIMEOUT_MS);
    *h = c;
    return KEEL_OK;
fail:
    sqlite3_close(c->db);
    free(c);
    return rc;
}

const struct keel_db_driver keel__db_sqlite = {
    .name = "sqlite",
    .connect = sq_connect,
    .close = sq_close,
    .run = sq_run,
    .next = sq_next,
    .rows_free = sq_rows_free,
    .is_null = sq_is_null,
    .text = sq_text,
    .int64 = sq_int64,
    .dbl = sq_dbl,
    .boolean = sq_bool,
    .bytes = sq_bytes,
    .time = sq_time,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .retryable = sq_retryable,
    .broken = sq_broken,
    .errmsg = sq_errmsg,
    .set_timeout = sq_set_timeout,
    .ping = sq_ping,
    .wal_lsn = NULL,
    .replay_lsn = NULL,
};
