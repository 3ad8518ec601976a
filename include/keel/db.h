/*
 * db.h - the storage API every repository uses (SPEC sections 1, 5, 7, 8).
 *
 * One API over two drivers: SQLite (the embedded default) and PostgreSQL
 * (primary + read replicas). No libpq or sqlite3 type appears here
 * (STYLE.md section 1 "Drivers"): the drivers live in src/db/ behind the
 * vtable of src/db/db_int.h.
 *
 * Threading: every function below that takes a keel_db_conn runs on a
 * storage-lane thread (or another thread that may block). From an event
 * loop, use keel_db_run_task (a request: keel_db_run), which acquires a
 * connection on the storage lane, calls your function there, and resumes
 * the task on its loop (docs/internals/storage.md says why threads rather
 * than libpq's asynchronous API).
 *
 * SQL: statements use $1..$n placeholders in both dialects (SQLite accepts
 * "$1" as a parameter name). Values are always bound, never spliced: no SQL
 * is ever built from user data. Statements are prepared once per connection
 * and cached by their text, so pass the same string for the same query.
 *
 * Errors: KEEL_E_CONFLICT (unique or foreign-key violation),
 * KEEL_E_TIMEOUT (statement timeout, pool wait timeout),
 * KEEL_E_UNAVAILABLE (no healthy server, connection lost; for a COMMIT this
 * means the outcome is unknown and the caller must answer 503, never 2xx),
 * KEEL_E_DB (anything else), KEEL_E_NOMEM. The driver's message is
 * available with keel_db_errmsg for logs; it never goes to a client.
 */
#ifndef KEEL_DB_H
#define KEEL_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/core.h"

struct keel_config;
struct keel_db;
struct keel_task;
struct keel_db_conn;
struct keel_db_rows;

enum keel_db_type {
    KEEL_DB_T_NULL,
    KEEL_DB_T_TEXT,
    KEEL_DB_T_INT64,
    KEEL_DB_T_BOOL,
    KEEL_DB_T_DOUBLE,
    KEEL_DB_T_BYTES,
    KEEL_DB_T_TIME, /* microseconds since the Unix epoch, UTC */
    KEEL_DB_T_UUID, /* 36-character text; a uuid column in PostgreSQL */
};

/* A bound parameter. Text and bytes are borrowed for the call. */
struct keel_db_param {
    enum keel_db_type type;
    union {
        const char *s;
        const void *b;
        int64_t i;
        double d;
        bool t;
    } v;
    size_t len; /* text: bytes (SIZE_MAX = strlen), bytes: length */
};

#define KEEL_DB_NULL() ((struct keel_db_param){.type = KEEL_DB_T_NULL})
#define KEEL_DB_TEXT(str)                                                                          \
    ((struct keel_db_param){.type = KEEL_DB_T_TEXT, .v.s = (str), .len = SIZE_MAX})
#define KEEL_DB_TEXTN(str, n)                                                                      \
    ((struct keel_db_param){.type = KEEL_DB_T_TEXT, .v.s = (str), .len = (n)})
#define KEEL_DB_INT(x)    ((struct keel_db_param){.type = KEEL_DB_T_INT64, .v.i = (x)})
#define KEEL_DB_BOOL(x)   ((struct keel_db_param){.type = KEEL_DB_T_BOOL, .v.t = (x)})
#define KEEL_DB_DOUBLE(x) ((struct keel_db_param){.type = KEEL_DB_T_DOUBLE, .v.d = (x)})
#define KEEL_DB_BYTES(p, n)                                                                        \
    ((struct keel_db_param){.type = KEEL_DB_T_BYTES, .v.b = (p), .len = (n)})
#define KEEL_DB_TIME(us)  ((struct keel_db_param){.type = KEEL_DB_T_TIME, .v.i = (us)})
#define KEEL_DB_UUID(str) ((struct keel_db_param){.type = KEEL_DB_T_UUID, .v.s = (str), .len = 36})

/* Where a connection may come from. */
enum keel_db_intent {
    KEEL_DB_READ,         /* a read that may be slightly stale: a healthy replica that has
                             replayed the session's last write, else the primary */
    KEEL_DB_READ_PRIMARY, /* a read that must be current */
    KEEL_DB_WRITE,        /* writes and transactions: the primary */
};

/* Read-your-writes (seed 000 "read path"): the identity whose own writes a
 * read must see. NULL or an empty key means "no session": replicas are
 * fine for reads. */
struct keel_db_session {
    const char *key; /* a user id; anonymous requests pass NULL */
};

/* ---------------------------------------------------------------- life */

/* Opens the database of cfg (KEEL_DATABASE_URL, _REPLICAS, _POOL_SIZE),
 * connecting the primary pool eagerly (so a bad URL fails at start) and the
 * replicas lazily. Returns KEEL_E_UNAVAILABLE when the primary cannot be
 * reached, KEEL_E_INVALID for a bad URL. The message for the operator (no
 * password in it) goes to the log. */
keel_status keel_db_open(const struct keel_config *cfg, struct keel_db **out);
/* Closes every connection. No connection may be checked out. */
void keel_db_close(struct keel_db *db);

/* "sqlite" or "postgres". */
const char *keel_db_dialect(const struct keel_db *db);

/* The process's database, set by keel serve after keel_db_open (NULL
 * before). Modules use it in their handlers. */
struct keel_db *keel_db_default(void);
void keel_db_set_default(struct keel_db *db);

/* ---------------------------------------------------------- connections */

/* Checks out a connection for `intent` (blocking up to the pool wait
 * timeout, 5 s). Pool thread only. */
keel_status keel_db_acquire(struct keel_db *db,
                            enum keel_db_intent intent,
                            const struct keel_db_session *sess,
                            struct keel_db_conn **out);
/* Returns the connection to its pool. A connection inside a transaction
 * is rolled back first; a broken one is closed and replaced later. */
void keel_db_release(struct keel_db_conn *c);

/* "primary" or "replica": where this connection goes (for logs and tests). */
const char *keel_db_conn_role(const struct keel_db_conn *c);

/* keel_db_dialect of the connection's database. */
const char *keel_db_conn_dialect(const struct keel_db_conn *c);

/* The last error's driver message, for logs only (never for clients). */
const char *keel_db_errmsg(const struct keel_db_conn *c);

/* Per-statement timeout for this connection, in milliseconds (default
 * 5000; 0 = none). */
void keel_db_set_timeout(struct keel_db_conn *c, unsigned ms);

/* ----------------------------------------------------------- statements */

/* Runs a statement that returns no rows; *affected (may be NULL) gets the
 * number of rows changed. */
keel_status keel_db_exec(struct keel_db_conn *c,
                         const char *sql,
                         const struct keel_db_param *params,
                         unsigned nparams,
                         int64_t *affected);

/* Runs a write inside a transaction without waiting for its answer: for
 * a statement whose success is all the caller needs to know (an INSERT
 * ... VALUES, which inserts every row or fails). PostgreSQL sends it in
 * the same round trip as the next statement or the COMMIT (libpq pipeline
 * mode), so a run of deferred writes and their COMMIT cost one round trip;
 * its failure is returned by that next call (a failed transaction: roll
 * back), with the usual mapping (a unique violation is KEEL_E_CONFLICT).
 * SQLite runs it at once. KEEL_E_INVALID outside a transaction. */
keel_status keel_db_exec_deferred(struct keel_db_conn *c,
                                  const char *sql,
                                  const struct keel_db_param *params,
                                  unsigned nparams);

/* Runs a query. On KEEL_OK, *out is a result the caller iterates with
 * keel_db_next and frees with keel_db_rows_free (before running another
 * statement on the same connection). */
keel_status keel_db_query(struct keel_db_conn *c,
                          const char *sql,
                          const struct keel_db_param *params,
                          unsigned nparams,
                          struct keel_db_rows **out);

/* Advances to the next row: KEEL_OK (a row is current), KEEL_DONE (no
 * more rows), or an error. */
keel_status keel_db_next(struct keel_db_rows *r);
void keel_db_rows_free(struct keel_db_rows *r);

/* Column accessors for the current row; col is 0-based. The pointers stay
 * valid until the next keel_db_next / keel_db_rows_free. Type mismatches
 * (a text column read as int64) are the caller's bug and read as 0/NULL. */
unsigned keel_db_ncols(const struct keel_db_rows *r);
bool keel_db_is_null(const struct keel_db_rows *r, unsigned col);
const char *keel_db_text(const struct keel_db_rows *r, unsigned col, size_t *len);
int64_t keel_db_int64(const struct keel_db_rows *r, unsigned col);
bool keel_db_bool(const struct keel_db_rows *r, unsigned col);
double keel_db_double(const struct keel_db_rows *r, unsigned col);
const void *keel_db_bytes(const struct keel_db_rows *r, unsigned col, size_t *len);
int64_t keel_db_time(const struct keel_db_rows *r, unsigned col); /* microseconds */
/* Writes the UUID of a uuid (PostgreSQL) or text (SQLite) column as 36
 * characters plus NUL; false when NULL or malformed. */
bool keel_db_uuid(const struct keel_db_rows *r, unsigned col, char out[37]);

/* --------------------------------------------------------- transactions */

keel_status keel_db_begin(struct keel_db_conn *c);
/* KEEL_E_UNAVAILABLE from commit means the outcome is unknown. */
keel_status keel_db_commit(struct keel_db_conn *c);
keel_status keel_db_rollback(struct keel_db_conn *c);

/* Registers fn(arg) to run once the current transaction of c has
 * committed, on the thread that committed it, after the connection's
 * write lock is released (it may not use c). A rollback or a failed
 * commit forgets it. The same (fn, arg) registered twice runs once. For
 * waking what the transaction's writes concern (the job workers of a
 * queue, the outbox relay): cheap, non-blocking work only. Returns
 * KEEL_OK (registered), KEEL_DONE (it was already: the caller may skip
 * what it does once per transaction), KEEL_E_INVALID outside a
 * transaction, or KEEL_E_TOO_LARGE past KEEL_DB_AFTER_COMMIT_MAX hooks per
 * transaction. */
#define KEEL_DB_AFTER_COMMIT_MAX 8
keel_status keel_db_after_commit(struct keel_db_conn *c, void (*fn)(void *arg), void *arg);

typedef keel_status (*keel_db_tx_fn)(struct keel_db_conn *c, void *arg);

/* Runs fn inside a transaction on the primary and commits, retrying the
 * whole transaction (up to 5 times, with jittered backoff) on a
 * serialization failure, deadlock or SQLite busy. fn returning an error
 * rolls back and returns it. The session (may be NULL) records the commit
 * for read-your-writes. Pool thread only. */
keel_status keel_db_transaction(struct keel_db *db,
                                const struct keel_db_session *sess,
                                keel_db_tx_fn fn,
                                void *arg);

/* Runs fn(conn, arg) on a connection for `intent` (the session records or
 * routes read-your-writes; may be NULL), inside a retried transaction for
 * KEEL_DB_WRITE, and releases the connection: what keel_db_run does on its
 * thread. Returns fn's result or the storage error. Pool thread only. */
keel_status keel_db_with(struct keel_db *db,
                         enum keel_db_intent intent,
                         const struct keel_db_session *sess,
                         keel_db_tx_fn fn,
                         void *arg);

/* ------------------------------------------------------- from the loop */

/* From a task on its loop (keel/task.h: a request, a job, a timer's
 * work). A request's handlers use the wrappers of keel/http.h
 * (keel_db_run, keel_db_offload), which take the request. */

typedef keel_status (*keel_db_fn)(struct keel_db_conn *c, void *arg);
typedef keel_status (*keel_db_task_done_fn)(struct keel_task *t, keel_status rc, void *arg);

/* On the storage lane (a few threads, sized by KEEL_DATABASE_THREADS;
 * docs/internals/storage.md), acquires a connection for `intent` (the
 * read-your-writes session is t->user_id), runs fn(conn, arg) (inside a
 * retried transaction for KEEL_DB_WRITE), releases the connection, then
 * calls done(t, rc, arg) on t's loop, where rc is fn's result or the
 * storage error (KEEL_E_UNAVAILABLE when no lane thread was free for 5 s);
 * done's return value resumes t (keel_task_resume). When t is gone by then
 * done is skipped and t resumes with KEEL_DONE. Returns KEEL_AGAIN (t
 * waits), KEEL_E_NOMEM, or KEEL_E_UNAVAILABLE (no database is open). */
keel_status keel_db_run_task(struct keel_task *t,
                             enum keel_db_intent intent,
                             keel_db_fn fn,
                             keel_db_task_done_fn done,
                             void *arg);

/* The storage lane (keel/lane.h), for a module that runs its own storage
 * jobs because they must complete even for a task that went away (the
 * cache's loads, which other tasks wait for). */
struct keel_lane;
struct keel_lane *keel_db_lane(struct keel_db *db);

/* Runs work(arg) on the storage lane (as keel_db_run_task does; for work
 * that manages its own transactions), then done(t, rc, arg) on t's loop:
 * rc is KEEL_OK after work ran, or KEEL_E_UNAVAILABLE when every lane
 * thread stayed busy for the pool's whole wait (5 s) and work did not
 * run. Returns as keel_db_run_task. `work` must not touch t. */
typedef void (*keel_db_work_fn)(void *arg);
keel_status keel_db_offload_task(struct keel_task *t,
                                 keel_db_work_fn work,
                                 keel_db_task_done_fn done,
                                 void *arg);

/* ------------------------------------------------ LISTEN (PostgreSQL) */

enum keel_db_listen_event {
    KEEL_DB_LISTEN_UP,     /* LISTEN is in effect: at start and after every reconnect
                              (notifications sent while it was down are lost) */
    KEEL_DB_LISTEN_DOWN,   /* the connection was lost; reconnecting */
    KEEL_DB_LISTEN_NOTIFY, /* a notification on the channel: payload, len */
};

/* Called on the listener's own thread. `payload` (NOTIFY only; NULL
 * otherwise) is NUL-terminated text, valid during the call only. */
typedef void (*keel_db_listen_fn)(enum keel_db_listen_event ev,
                                  const char *payload,
                                  size_t len,
                                  void *arg);

/* Starts a thread that LISTENs on `channel` (an identifier; quoted here)
 * with a connection of its own to the primary of `url` (the database URL
 * db was opened with: a listener must not hold a pool slot forever) and
 * calls cb for each event. It connects in the background and reconnects
 * with backoff (100 ms doubling to 5 s), so a database that is down now
 * does not fail the call. *out receives the listener, for
 * keel_db_listen_stop. Returns KEEL_OK, KEEL_E_INVALID (SQLite has no
 * LISTEN; bad arguments) or KEEL_E_INTERNAL (no thread). Main thread. */
struct keel_db_listener;
keel_status keel_db_listen_start(struct keel_db *db,
                                 const char *url,
                                 const char *channel,
                                 keel_db_listen_fn cb,
                                 void *arg,
                                 struct keel_db_listener **out);
/* Stops the listener (at once, even while it connects), joins its thread
 * and frees it; cb is not called afterwards. NULL is a no-op. Before
 * keel_db_close. */
void keel_db_listen_stop(struct keel_db_listener *l);

/* ------------------------------------------------------------ one row */

/* Reads the current row for keel_db_query_one. The accessors' pointers
 * stay valid during the call only: copy what must outlive it. Returns
 * KEEL_OK, or an error that keel_db_query_one returns as is. */
typedef keel_status (*keel_db_row_fn)(const struct keel_db_rows *r, void *arg);

/* Runs a query that returns at most one row (a lookup by key, an UPDATE
 * ... RETURNING of one keyed row) and calls fn(row, arg) on it; a further
 * row would not be read. fn may be NULL when only the row's existence
 * matters. The result is freed before the call returns, so the next
 * statement may follow at once. Returns KEEL_OK, KEEL_E_NOT_FOUND when the
 * query returned no row (fn is not called), fn's error, or the storage
 * error of the query or of reading its row. Pool thread only
 * (src/db/db_util.c). */
keel_status keel_db_query_one(struct keel_db_conn *c,
                              const char *sql,
                              const struct keel_db_param *params,
                              unsigned nparams,
                              keel_db_row_fn fn,
                              void *arg);

#endif
