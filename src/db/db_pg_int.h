/*
 * db_pg_int.h - the PostgreSQL driver's private types, shared by db_pg.c
 * (connections, statements, transactions) and db_pg_types.c (binary
 * parameters and results). Only those two files include it.
 */
#ifndef KEEL_DB_PG_INT_H
#define KEEL_DB_PG_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/core.h"
#include "keel/db.h"

#define ERRLEN       256
#define STMT_MAX     128 /* prepared statements kept per connection */
#define STMT_BUCKETS 256 /* power of two, > STMT_MAX */
#define PIPE_MAX     64  /* answers a pipeline may owe before it is read */

/* Type OIDs (catalog/pg_type_d.h; fixed for built-in types). */
enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_TEXT = 25,
    OID_OID = 26,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_BPCHAR = 1042,
    OID_VARCHAR = 1043,
    OID_DATE = 1082,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_NUMERIC = 1700,
    OID_UUID = 2950,
    OID_PG_LSN = 3220,
    OID_JSONB = 3802,
};

struct pg_stmt;

/* What one queued pipeline message answers (db_pg.c "Pipelining"). */
enum pg_want {
    PIPE_CMD,     /* BEGIN: COMMAND_OK */
    PIPE_PREPARE, /* the Parse of a statement first seen in this pipeline */
    PIPE_DEFER,   /* a deferred statement: success is all that is checked */
    PIPE_LAST,    /* the caller's statement (or COMMIT): its result is kept */
};

struct pg_pending {
    enum pg_want want;
    struct pg_stmt *st; /* PIPE_PREPARE, PIPE_DEFER, PIPE_LAST (NULL for COMMIT) */
};

/* Per-column scratch for text() of non-text columns. */
struct pg_slot {
    char *p;
    size_t cap;
};

/* The result being iterated; one per connection (the storage core frees a
 * result before the next statement on the same connection). */
struct pg_rows {
    PGresult *res;
    int row; /* current row; -1 before the first next() */
    int nrows;
    struct pg_slot *slots;
    unsigned nslots;
};

struct pg_conn {
    PGconn *pg;
    bool read_only;
    bool broken;
    bool hung; /* gave up waiting for an answer (server or network hung) */
    bool retryable;
    unsigned timeout_ms; /* the session's statement_timeout, or TIMEOUT_UNKNOWN */
    bool timeout_in_tx;  /* SET inside a transaction: a rollback undoes it */

    struct pg_stmt *buckets[STMT_BUCKETS];
    struct pg_stmt *lru_new;
    struct pg_stmt *lru_old;
    unsigned nstmts;
    uint64_t next_id;

    /* Bind buffers, grown to the largest parameter count seen. */
    unsigned pcap;
    const char **values;
    int *lengths;
    int *formats;
    Oid *oids;
    unsigned char (*bin)[16];
    char *tbuf; /* NUL-terminated copies of length-delimited text */
    size_t tcap;

    /* Pipelining: a BEGIN waits for the transaction's first statement,
     * deferred statements for the next statement or the COMMIT, and each
     * batch costs one round trip. */
    bool begin_pending;  /* BEGIN not sent yet */
    bool piped;          /* in pipeline mode, q[0..nq) answers owed */
    keel_status pipe_rc; /* a deferred statement's failure, until the transaction ends */
    unsigned nq;
    struct pg_pending q[PIPE_MAX];

    struct pg_rows rs;
    char err[ERRLEN];
};

/* Records msg as the connection's error, on one line (db_pg.c). */
void keel__db_pg_set_err(struct pg_conn *c, const char *msg);

/* Fills the connection's bind arrays from p[0..n). KEEL_OK, or
 * KEEL_E_INVALID (bad count, type or value), KEEL_E_TOO_LARGE or
 * KEEL_E_NOMEM with the reason in c->err (db_pg_types.c). */
keel_status keel__db_pg_bind_params(struct pg_conn *c, const struct keel_db_param *p, unsigned n);

/* The column readers of the driver vtable (db_pg_types.c). */
bool keel__db_pg_col_is_null(const struct keel_db_rows *r, unsigned col);
const char *keel__db_pg_col_text(const struct keel_db_rows *r, unsigned col, size_t *len);
int64_t keel__db_pg_col_int64(const struct keel_db_rows *r, unsigned col);
double keel__db_pg_col_dbl(const struct keel_db_rows *r, unsigned col);
bool keel__db_pg_col_bool(const struct keel_db_rows *r, unsigned col);
const void *keel__db_pg_col_bytes(const struct keel_db_rows *r, unsigned col, size_t *len);
int64_t keel__db_pg_col_time(const struct keel_db_rows *r, unsigned col);

/* The big-endian integer in p[0..n), as the binary protocol sends it. */
static inline uint64_t get_be(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;

    while (n--)
        v = (v << 8) | *p++;
    return v;
}

#endif
