/*
 * db_int.h - the driver interface behind include/keel/db.h, and the
 * private types the storage core (db.c) shares with the drivers
 * (db_sqlite.c, db_pg.c). Only src/db/ includes this file.
 *
 * A driver is a struct of function pointers (STYLE.md section 1 "Drivers";
 * redis ConnectionType, curl's vtls). One driver connection (`void *h`) is
 * used by one thread at a time: the pool hands it out.
 */
#ifndef KEEL_DB_INT_H
#define KEEL_DB_INT_H

#include <pthread.h>

#include "keel/db.h"

struct keel_db_rows {
    struct keel_db_conn *conn;
    void *d; /* driver state of the result */
    unsigned ncols;
};

struct keel_db_driver {
    const char *name; /* "sqlite" or "postgres" */

    /* Opens one connection. `url` is the whole configured URL (secret: it
     * may hold a password); errbuf receives a message WITHOUT the URL or
     * password. KEEL_E_INVALID for a URL the driver cannot use,
     * KEEL_E_UNAVAILABLE when the server cannot be reached. */
    keel_status (*connect)(const char *url, bool read_only, void **h, char *errbuf, size_t errlen);
    void (*close)(void *h);

    /* Runs one statement with bound parameters, preparing it on first use
     * (cache by SQL text, per connection). With rows == NULL the result is
     * discarded and *affected (may be NULL) gets the changed-row count;
     * otherwise rows->d/ncols are set for iteration. Maps errors to
     * KEEL_E_CONFLICT / KEEL_E_TIMEOUT / KEEL_E_UNAVAILABLE / KEEL_E_DB. */
    keel_status (*run)(void *h,
                       const char *sql,
                       const struct keel_db_param *p,
                       unsigned n,
                       struct keel_db_rows *rows,
                       int64_t *affected);
    /* Optional: queues a statement inside a transaction whose answer may
     * wait for the next statement or the COMMIT (keel_db_exec_deferred);
     * its failure is returned by the call that reads the answer, and by
     * every call after it until the transaction ends. Without it the core
     * runs the statement at once. */
    keel_status (*defer)(void *h, const char *sql, const struct keel_db_param *p, unsigned n);
    keel_status (*next)(struct keel_db_rows *r); /* KEEL_OK, KEEL_DONE, or error */
    void (*rows_free)(struct keel_db_rows *r);
    bool (*is_null)(const struct keel_db_rows *r, unsigned col);
    const char *(*text)(const struct keel_db_rows *r, unsigned col, size_t *len);
    int64_t (*int64)(const struct keel_db_rows *r, unsigned col);
    double (*dbl)(const struct keel_db_rows *r, unsigned col);
    bool (*boolean)(const struct keel_db_rows *r, unsigned col);
    const void *(*bytes)(const struct keel_db_rows *r, unsigned col, size_t *len);
    int64_t (*time)(const struct keel_db_rows *r, unsigned col);

    /* BEGIN (write: take the write lock at once - SQLite BEGIN IMMEDIATE),
     * COMMIT, ROLLBACK. */
    keel_status (*begin)(void *h, bool write);
    keel_status (*commit)(void *h);
    keel_status (*rollback)(void *h);

    /* True after an error that a retry of the whole transaction may cure
     * (serialization failure 40001, deadlock 40P01, SQLITE_BUSY). */
    bool (*retryable)(void *h);
    /* True when the connection is unusable (lost); the pool replaces it. */
    bool (*broken)(void *h);
    const char *(*errmsg)(void *h);
    void (*set_timeout)(void *h, unsigned ms);
    keel_status (*ping)(void *h);

    /* PostgreSQL only (NULL in SQLite): the primary's current WAL insert
     * position (after a commit), and a replica's replay position. */
    keel_status (*wal_lsn)(void *h, uint64_t *lsn);
    keel_status (*replay_lsn)(void *h, uint64_t *lsn);
};

extern const struct keel_db_driver keel__db_sqlite;
extern const struct keel_db_driver keel__db_pg;

#endif
