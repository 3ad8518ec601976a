/*
 * db_pg.c - the PostgreSQL driver of the storage API (libpq, PostgreSQL 15).
 *
 * Implements `keel__db_pg` (src/db/db_int.h): connections from libpq URIs
 * (multi-host allowed), statements prepared once per connection and run with
 * typed binary parameters and binary results, result decoding by column type,
 * SQLSTATE-to-status mapping, transactions, and the WAL positions the storage
 * core uses for read-your-writes. The binary encoding of parameters and the
 * decoding of result columns are in db_pg_types.c; the types both files
 * share are in db_pg_int.h.
 *
 * DESIGN: every call blocks (the storage core runs us on the thread pool,
 * docs/internals/storage.md). The hot path of a cached statement is one hash
 * of the SQL text, one prepared-statement round trip and no allocation of ours:
 * bind buffers, the result cursor and the text scratch space live in the
 * connection and are reused. Statements are cached by SQL text and parameter
 * types, named k1, k2, ..., and the least recently used one is deallocated
 * beyond STMT_MAX so a connection cannot accumulate server memory. Parameters
 * go in binary where the type has a fixed layout (int8, bool, float8, bytea,
 * uuid, timestamptz), text as "unknown" so the server infers the column's
 * type; results come back in binary (resultFormat 1), so an integer costs a
 * byte swap instead of a strtoll and a timestamp needs no parser.
 * docs/internals/storage-postgres.md has the reasoning and the type table.
 *
 * Inside a transaction, BEGIN and deferred writes ride with the next
 * statement or the COMMIT in libpq's pipeline mode ("Pipelining" below),
 * so a transaction costs fewer round trips than statements.
 *
 * Failures are classified once, in set_failure(): the connection remembers
 * whether the last error was retryable (serialization failure, deadlock) and
 * whether the connection is broken (lost, shut down, or a standby after a
 * failover), which the pool reads to replace it.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/core.h"
#include "keel/db.h"
#include "keel/log.h"

#include "db_int.h"
#include "db_pg_int.h"

#define DEFAULT_TIMEOUT_MS 5000u
#define TIMEOUT_UNKNOWN    UINT_MAX
#define PING_MS            2000
#define SLACK_MS           2000          /* beyond statement_timeout */
#define UNBOUNDED_MS       (3600 * 1000) /* statement_timeout 0 (migrations) */
#define SLOT_KEEP          4096          /* scratch larger than this is freed with the rows */

/* A prepared statement: the SQL text and parameter types it was prepared
 * with follow the struct (oids[nparams], then the NUL-terminated text). */
struct pg_stmt {
    struct pg_stmt *hnext; /* hash bucket chain */
    struct pg_stmt *newer; /* LRU list, towards c->lru_new */
    struct pg_stmt *older; /* LRU list, towards c->lru_old */
    uint64_t hash;
    const char *sql;
    unsigned nparams;
    char name[24];
    Oid oids[];
};

/* ================================================================ errors */

void keel__db_pg_set_err(struct pg_conn *c, const char *msg)
{
    size_t i, o = 0;

    /* libpq messages end in a newline and span lines (one per host tried):
     * one line, single spaces. */
    for (i = 0; msg[i] && o + 1 < sizeof(c->err); i++) {
        bool space = msg[i] == '\n' || msg[i] == '\t' || msg[i] == ' ';

        if (space && (o == 0 || c->err[o - 1] == ' '))
            continue;
        c->err[o++] = space ? ' ' : (char)msg[i];
    }
    while (o > 0 && c->err[o - 1] == ' ')
        o--;
    c->err[o] = '\0';
}

static bool state_is(const char *state, const char *code)
{
    return state && strcmp(state, code) == 0;
}

static bool class_is(const char *state, const char *cls)
{
    return state && strncmp(state, cls, 2) == 0;
}

/* Maps an error SQLSTATE to a status and records retryable/broken. */
static keel_status classify(struct pg_conn *c, const char *state)
{
    if (c->hung)
        return KEEL_E_UNAVAILABLE; /* given up on: no answer in time */
    if (PQstatus(c->pg) == CONNECTION_BAD || class_is(state, "08") || state_is(state, "57P01") ||
        state_is(state, "57P02") || state_is(state, "57P03") ||
        (state_is(state, "25006") && !c->read_only)) {
        /* Lost, shut down, or a primary connection that now talks to a
         * standby (failover): the pool replaces it, and libpq's multi-host
         * search with target_session_attrs=read-write finds the primary. */
        c->broken = true;
        return KEEL_E_UNAVAILABLE;
    }
    if (state_is(state, "23505") || state_is(state, "23503") || state_is(state, "23P01") ||
        state_is(state, "23001"))
        return KEEL_E_CONFLICT;
    if (state_is(state, "23514") || state_is(state, "23502") || class_is(state, "22"))
        return KEEL_E_INVALID;
    if (state_is(state, "57014") || state_is(state, "55P03"))
        return KEEL_E_TIMEOUT; /* statement_timeout / lock_timeout */
    if (state_is(state, "40001") || state_is(state, "40P01")) {
        c->retryable = true;
        return KEEL_E_DB;
    }
    if (class_is(state, "53"))
        return KEEL_E_UNAVAILABLE; /* out of disk, memory or connections */
    return KEEL_E_DB;
}

/* Records the error of res (NULL: the connection's) and classifies it. The
 * message is the SQLSTATE and the primary text only: the DETAIL line of a
 * constraint violation quotes row values, which must not reach the logs. */
static keel_status set_failure(struct pg_conn *c, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char buf[ERRLEN];

    if (c->hung)
        return classify(c, NULL); /* keep the message wait_answer wrote */
    if (!msg)
        msg = PQerrorMessage(c->pg);
    if (!msg || !msg[0])
        msg = res ? PQresStatus(PQresultStatus(res)) : "no result (connection lost?)";
    snprintf(buf, sizeof(buf), "%s%s%s", state ? state : "", state ? " " : "", msg);
    keel__db_pg_set_err(c, buf);
    return classify(c, state);
}

/* Checks that res has status `want`; on failure records the error. Always
 * clears res. */
static keel_status expect(struct pg_conn *c, PGresult *res, ExecStatusType want)
{
    keel_status rc = KEEL_OK;

    if (!res || PQresultStatus(res) != want)
        rc = set_failure(c, res);
    PQclear(res);
    return rc;
}

/* ===================================================== secrets in errors */

/* Replaces every occurrence of secret[0..slen) in buf with "***". */
static void scrub(char *buf, size_t cap, const char *secret, size_t slen)
{
    char out[ERRLEN * 2];
    size_t i = 0, o = 0;

    if (slen == 0 || !buf[0])
        return;
    while (buf[i] && o + 4 < sizeof(out)) {
        if (strncmp(buf + i, secret, slen) == 0) {
            memcpy(out + o, "***", 3);
            o += 3;
            i += slen;
        } else {
            out[o++] = buf[i++];
        }
    }
    out[o] = '\0';
    snprintf(buf, cap, "%s", out);
}

/* Scrubs the parts of a URL that may hold a password: the whole URL, the
 * decoded password, every piece of the raw user-info after the user name
 * (a malformed URL can make libpq quote a piece of the password as a host
 * or port), and raw "password=" query values. Over-scrubbing a message is
 * harmless; leaking is not. */
static void scrub_url(char *buf, size_t cap, const char *url, const char *password)
{
    const char *p = strstr(url, "://");
    const char *at = strrchr(url, '@');
    const char *q;

    scrub(buf, cap, url, strlen(url));
    if (password)
        scrub(buf, cap, password, strlen(password));
    if (p && at && at > p)
        p = memchr(p + 3, ':', (size_t)(at - p - 3));
    if (p && at && at > p) {
        for (p++; p < at;) {
            size_t n = strcspn(p, ":/?,@&=");

            if (p + n > at)
                n = (size_t)(at - p);
            if (n >= 2)
                scrub(buf, cap, p, n);
            p += n + 1;
        }
    }
    for (q = strstr(url, "password="); q; q = strstr(q + 1, "password=")) {
        size_t n = strcspn(q + 9, "&");

        scrub(buf, cap, q + 9, n);
    }
}

/* ============================================================ connecting */

/* Server notices (NOTICE, WARNING: "there is no transaction in progress")
 * would go to stderr by default; they go to the log at debug level, as
 * SQLSTATE and primary text (no DETAIL, which may quote row values). */
static void on_notice(void *arg, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    (void)arg;
    keel_log(KEEL_LOG_DEBUG, "postgres notice", KEEL_LF_STR("sqlstate", state ? state : ""),
             KEEL_LF_STR("message", msg ? msg : ""));
}

static PGresult *finish_within(struct pg_conn *c, int sent, int ms);
static PGresult *bounded_exec(struct pg_conn *c, const char *sql);

static keel_status session_setup(struct pg_conn *c)
{
    const char *ids = PQparameterStatus(c->pg, "integer_datetimes");
    PGresult *res;

    if (!ids || strcmp(ids, "on") != 0) {
        keel__db_pg_set_err(c,
                            "server without integer_datetimes (PostgreSQL < 10?) is not supported");
        return KEEL_E_INVALID;
    }
    /* One round trip; TimeZone UTC keeps timestamp <-> timestamptz casts and
     * date arithmetic in the server identical to the API's UTC values. */
    res = finish_within(c, PQsendQuery(c->pg, "SET statement_timeout = 5000; SET TimeZone = 'UTC'"),
                        PING_MS);
    c->timeout_ms = DEFAULT_TIMEOUT_MS;
    return expect(c, res, PGRES_COMMAND_OK);
}

/* Defaults come before dbname: with expand_dbname the URI's own settings
 * override them. keepalives and tcp_user_timeout bound how long a call waits
 * on a host that vanished without closing the socket (statement_timeout
 * cannot: the server that would enforce it is gone). */
static const char *const conn_defaults[][2] = {
    {"connect_timeout", "5"},      {"application_name", "keel"}, {"keepalives", "1"},
    {"keepalives_idle", "10"},     {"keepalives_interval", "5"}, {"keepalives_count", "3"},
    {"tcp_user_timeout", "15000"},
};

static PGconn *connect_url(const char *url, bool read_only)
{
    const char *kw[KEEL_ARRAY_LEN(conn_defaults) + 3], *val[KEEL_ARRAY_LEN(conn_defaults) + 3];
    size_t i, n = 0;

    for (i = 0; i < KEEL_ARRAY_LEN(conn_defaults); i++, n++) {
        kw[n] = conn_defaults[i][0];
        val[n] = conn_defaults[i][1];
    }
    /* The primary: with several hosts, the one that accepts writes.
     * Replicas: any server that answers (they are standbys). */
    if (!read_only) {
        kw[n] = "target_session_attrs";
        val[n++] = "read-write";
    }
    kw[n] = "dbname";
    val[n++] = url;
    kw[n] = val[n] = NULL;
    return PQconnectdbParams(kw, val, 1);
}

static keel_status pg_connect(const char *url, bool read_only, void **h, char *err, size_t errlen)
{
    PQconninfoOption *opts, *o;
    const char *password = NULL;
    char *perr = NULL;
    struct pg_conn *c = NULL;
    PGconn *pg;
    keel_status rc;

    *h = NULL;
    err[0] = '\0';
    opts = PQconninfoParse(url, &perr);
    if (!opts) {
        /* Never echo libpq's text here: a syntax error quotes the URL. */
        snprintf(err, errlen, "invalid database URL (libpq cannot parse it%s)",
                 perr ? "" : ": out of memory");
        PQfreemem(perr);
        return perr ? KEEL_E_INVALID : KEEL_E_NOMEM;
    }
    for (o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0)
            password = o->val;
    pg = connect_url(url, read_only);
    if (!pg) {
        snprintf(err, errlen, "out of memory");
        rc = KEEL_E_NOMEM;
        goto out;
    }
    c = keel_xcalloc(1, sizeof(*c));
    c->pg = pg;
    c->read_only = read_only;
    c->rs.row = -1;
    if (PQstatus(pg) != CONNECTION_OK) {
        keel__db_pg_set_err(c, PQerrorMessage(pg));
        rc = KEEL_E_UNAVAILABLE;
        goto out;
    }
    PQsetNoticeReceiver(pg, on_notice, NULL);
    rc = session_setup(c);
    if (rc < 0) {
        if (rc != KEEL_E_INVALID && rc != KEEL_E_NOMEM)
            rc = KEEL_E_UNAVAILABLE; /* the contract's two outcomes */
        goto out;
    }
    *h = c;
out:
    if (rc < 0 && c) {
        snprintf(err, errlen, "%s", c->err);
        scrub_url(err, errlen, url, password);
        PQfinish(c->pg);
        free(c);
    }
    for (o = opts; o->keyword; o++) /* libpq frees without wiping */
        if (o->val && strcmp(o->keyword, "password") == 0)
            memset(o->val, 0, strlen(o->val));
    PQconninfoFree(opts);
    return rc;
}

static void rows_release(struct pg_rows *rs)
{
    unsigned i;

    PQclear(rs->res);
    rs->res = NULL;
    rs->row = -1;
    rs->nrows = 0;
    /* Keep small scratch for the next result; give back what one huge
     * numeric or timestamp list made grow. */
    for (i = 0; i < rs->nslots; i++) {
        if (rs->slots[i].cap > SLOT_KEEP) {
            free(rs->slots[i].p);
            rs->slots[i].p = NULL;
            rs->slots[i].cap = 0;
        }
    }
}

static void pg_close(void *h)
{
    struct pg_conn *c = h;
    struct pg_stmt *st, *older;
    unsigned i;

    if (!c)
        return;
    rows_release(&c->rs);
    for (i = 0; i < c->rs.nslots; i++)
        free(c->rs.slots[i].p);
    free(c->rs.slots);
    /* The server drops a session's prepared statements with the session. */
    for (st = c->lru_new; st; st = older) {
        older = st->older;
        free(st);
    }
    free(c->values);
    free(c->lengths);
    free(c->formats);
    free(c->oids);
    free(c->bin);
    free(c->tbuf);
    PQfinish(c->pg);
    free(c);
}

/* ======================================================= statement cache */

static uint64_t sql_hash(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    return h;
}

/* A cached statement fits a binding when its SQL is the same and every
 * parameter has the type it was prepared with. A NULL fits any type: it is
 * sent without data, so its format does not matter. */
static struct pg_stmt *stmt_find(struct pg_conn *c, const char *sql, uint64_t h, unsigned n)
{
    struct pg_stmt *st;
    unsigned i;

    for (st = c->buckets[h & (STMT_BUCKETS - 1)]; st; st = st->hnext) {
        if (st->hash != h || st->nparams != n || strcmp(st->sql, sql) != 0)
            continue;
        for (i = 0; i < n; i++)
            if (st->oids[i] != c->oids[i] && c->values[i])
                break;
        if (i == n)
            return st;
    }
    return NULL;
}

static void lru_unlink(struct pg_conn *c, struct pg_stmt *st)
{
    if (st->newer)
        st->newer->older = st->older;
    else
        c->lru_new = st->older;
    if (st->older)
        st->older->newer = st->newer;
    else
        c->lru_old = st->newer;
    st->newer = st->older = NULL;
}

static void lru_push(struct pg_conn *c, struct pg_stmt *st)
{
    st->older = c->lru_new;
    st->newer = NULL;
    if (c->lru_new)
        c->lru_new->newer = st;
    c->lru_new = st;
    if (!c->lru_old)
        c->lru_old = st;
}

static void stmt_touch(struct pg_conn *c, struct pg_stmt *st)
{
    if (c->lru_new != st) {
        lru_unlink(c, st);
        lru_push(c, st);
    }
}

/* Forgets st; with `dealloc`, also frees it on the server. A failed
 * DEALLOCATE is not reported, here and in stmt_evict: it only leaves an
 * unused statement on the server (names are never reused), and a lost
 * connection shows on the next call. */
static void stmt_drop(struct pg_conn *c, struct pg_stmt *st, bool dealloc)
{
    struct pg_stmt **pp = &c->buckets[st->hash & (STMT_BUCKETS - 1)];
    char sql[48];

    while (*pp != st)
        pp = &(*pp)->hnext;
    *pp = st->hnext;
    lru_unlink(c, st);
    c->nstmts--;
    if (dealloc) {
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", st->name);
        PQclear(bounded_exec(c, sql));
    }
    free(st);
}

/* Beyond STMT_MAX statements, deallocates the least recently used quarter
 * in one round trip (a multi-statement simple query), so a workload of
 * one-off statements pays one extra round trip per STMT_MAX / 4 of them,
 * not one per statement. Only outside a transaction block: DEALLOCATE is
 * not transactional, but a failing one would abort the caller's
 * transaction; a long transaction may hold a few more until it ends. */
static bool evicting(const struct pg_conn *c, const struct pg_stmt *keep)
{
    return c->nstmts > STMT_MAX - STMT_MAX / 4 && c->lru_old != keep;
}

static void stmt_evict(struct pg_conn *c, const struct pg_stmt *keep)
{
    char sql[1024];
    size_t len;

    if (c->nstmts <= STMT_MAX || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return;
    while (evicting(c, keep)) {
        for (len = 0; len + 48 < sizeof(sql) && evicting(c, keep);) {
            const char *name = c->lru_old->name;

            len += (size_t)snprintf(sql + len, sizeof(sql) - len, "DEALLOCATE %s;", name);
            stmt_drop(c, c->lru_old, false);
        }
        PQclear(bounded_exec(c, sql));
    }
}

/* ====================================================== bounded waits */

static keel_status wait_answer(struct pg_conn *c, int ms);

/* How long to wait for any answer: the statement timeout the server
 * enforces, plus slack for the network. The server's own timeout cannot help
 * when the server or the network hangs (a frozen primary still has its
 * socket open and the kernel acknowledges on loopback), and a thread
 * blocked forever in libpq would take a thread-pool slot for good: once a
 * few are stuck, even the readiness probe cannot run. */
static int deadline_ms(const struct pg_conn *c)
{
    if (c->timeout_ms == 0 || c->timeout_ms == TIMEOUT_UNKNOWN)
        return UNBOUNDED_MS;
    return (int)c->timeout_ms + SLACK_MS;
}

/* Collects the answer to a query sent with PQsend*, within the deadline,
 * like PQexec: the last result, or NULL with the connection marked broken
 * (and `hung` when the deadline passed). */
static PGresult *finish_within(struct pg_conn *c, int sent, int ms)
{
    PGresult *res, *last = NULL;

    if (!sent)
        return NULL;
    for (;;) {
        if (wait_answer(c, ms) < 0) {
            PQclear(last);
            return NULL;
        }
        res = PQgetResult(c->pg);
        if (!res)
            return last;
        PQclear(last);
        last = res;
        if (PQresultStatus(res) == PGRES_COPY_IN || PQresultStatus(res) == PGRES_COPY_OUT ||
            PQresultStatus(res) == PGRES_COPY_BOTH)
            return last; /* bad_result refuses it and marks the connection */
    }
}

static PGresult *finish(struct pg_conn *c, int sent)
{
    return finish_within(c, sent, deadline_ms(c));
}

static PGresult *bounded_exec(struct pg_conn *c, const char *sql)
{
    return finish(c, PQsendQuery(c->pg, sql));
}

/* A statement to be prepared as sql with the bound parameter types, not
 * yet in the cache; NULL when out of memory. */
static struct pg_stmt *stmt_new(struct pg_conn *c, const char *sql, uint64_t h, unsigned n)
{
    size_t len = strlen(sql);
    struct pg_stmt *st = malloc(sizeof(*st) + n * sizeof(Oid) + len + 1);

    if (!st) {
        keel__db_pg_set_err(c, "out of memory preparing a statement");
        return NULL;
    }
    memset(st, 0, sizeof(*st));
    st->hash = h;
    st->nparams = n;
    if (n)
        memcpy(st->oids, c->oids, n * sizeof(Oid));
    st->sql = memcpy((char *)(st->oids + n), sql, len + 1);
    snprintf(st->name, sizeof(st->name), "k%" PRIu64, ++c->next_id);
    return st;
}

static void stmt_register(struct pg_conn *c, struct pg_stmt *st)
{
    st->hnext = c->buckets[st->hash & (STMT_BUCKETS - 1)];
    c->buckets[st->hash & (STMT_BUCKETS - 1)] = st;
    lru_push(c, st);
    c->nstmts++;
}

static keel_status
stmt_prepare(struct pg_conn *c, const char *sql, uint64_t h, unsigned n, struct pg_stmt **out)
{
    struct pg_stmt *st = stmt_new(c, sql, h, n);
    keel_status rc;

    *out = NULL;
    if (!st)
        return KEEL_E_NOMEM;
    rc = expect(c, finish(c, PQsendPrepare(c->pg, st->name, sql, (int)n, st->oids)),
                PGRES_COMMAND_OK);
    if (rc < 0) {
        free(st);
        return rc;
    }
    stmt_register(c, st);
    stmt_evict(c, st);
    *out = st;
    return KEEL_OK;
}

/* ============================================================= running */

/* 26000: the server no longer has the statement (DISCARD ALL, DEALLOCATE
 * ALL). 0A000: "cached plan must not change result type", after a migration
 * changed a table that a SELECT * reads. Both are cured by preparing again. */
static bool stale_stmt(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return state_is(state, "26000") || state_is(state, "0A000");
}

static keel_status bad_result(struct pg_conn *c, PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    keel_status rc;

    if (st == PGRES_EMPTY_QUERY) {
        keel__db_pg_set_err(c, "empty statement");
        rc = KEEL_E_INVALID;
    } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        /* libpq now waits for COPY data; the connection cannot go back. */
        keel__db_pg_set_err(c, "COPY is not supported through the storage API");
        c->broken = true;
        rc = KEEL_E_INVALID;
    } else {
        rc = set_failure(c, res);
    }
    PQclear(res);
    return rc;
}

static PGresult *exec_prepared(struct pg_conn *c, const struct pg_stmt *st, unsigned n)
{
    return finish(
        c, PQsendQueryPrepared(c->pg, st->name, (int)n, c->values, c->lengths, c->formats, 1));
}

static bool result_ok(const PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

/* Runs sql with the bound parameters, preparing it on a cache miss, and
 * once more after a stale-statement error outside a transaction block
 * (inside one the error stands: the statement is forgotten and the
 * transaction's retry prepares it afresh). *out: a COMMAND_OK or TUPLES_OK
 * result. */
static keel_status exec_stmt(struct pg_conn *c, const char *sql, unsigned n, PGresult **out)
{
    uint64_t h = sql_hash(sql);
    struct pg_stmt *st = stmt_find(c, sql, h, n);
    PGresult *res;
    keel_status rc;
    bool idle;

    *out = NULL;
    if (st) {
        stmt_touch(c, st);
    } else {
        rc = stmt_prepare(c, sql, h, n, &st);
        if (rc < 0)
            return rc;
    }
    res = exec_prepared(c, st, n);
    if (!result_ok(res) && res && PQresultStatus(res) == PGRES_FATAL_ERROR && stale_stmt(res)) {
        idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
        stmt_drop(c, st, idle);
        if (idle) {
            PQclear(res);
            rc = stmt_prepare(c, sql, h, n, &st);
            if (rc < 0)
                return rc;
            res = exec_prepared(c, st, n);
        }
    }
    if (!result_ok(res))
        return bad_result(c, res);
    *out = res;
    return KEEL_OK;
}

/* ============================================================ pipelining */

/* libpq pipeline mode (PostgreSQL 14+ libpq): messages are queued without
 * waiting, a Sync ends the batch, and the answers come back in order, one
 * round trip for the batch. The driver uses it for three things:
 *
 *   - BEGIN is not sent by pg_begin: it waits for the transaction's first
 *     statement and goes with it (begin_pending);
 *   - a deferred statement (keel_db_exec_deferred) is queued at once and
 *     its answer is read with the next statement's, or with the COMMIT's;
 *   - a statement first seen inside a pipeline is prepared in it (its
 *     Parse is queued before its Bind).
 *
 * After an error the server skips every message up to the Sync: the later
 * statements answer PIPELINE_ABORTED and a queued COMMIT never runs, so a
 * failed deferred write can never be committed. The first failure stays
 * in pipe_rc and is returned by every call until the transaction ends
 * (rollback), with the error text and retryable as that failure set them.
 * A statement whose Parse did not succeed is dropped from the cache. */

static keel_status pipe_lost(struct pg_conn *c)
{
    keel_status rc = set_failure(c, NULL);

    c->broken = true; /* answers are owed on it: it cannot be reused */
    return rc < 0 ? rc : KEEL_E_UNAVAILABLE;
}

/* Enters pipeline mode (sending a pending BEGIN first). */
static keel_status pipe_open(struct pg_conn *c)
{
    if (!c->piped) {
        if (!PQenterPipelineMode(c->pg))
            return pipe_lost(c);
        c->piped = true;
        c->nq = 0;
    }
    if (c->begin_pending) {
        c->begin_pending = false;
        if (!PQsendQueryParams(c->pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
            return pipe_lost(c);
        c->q[c->nq++] = (struct pg_pending){.want = PIPE_CMD};
    }
    return KEEL_OK;
}

/* Queues sql with the bound parameters (and its Parse on a cache miss).
 * The caller leaves room for two entries. */
static keel_status pipe_send(struct pg_conn *c, const char *sql, unsigned n, enum pg_want want)
{
    uint64_t h = sql_hash(sql);
    struct pg_stmt *st = stmt_find(c, sql, h, n);

    if (st) {
        stmt_touch(c, st);
    } else {
        st = stmt_new(c, sql, h, n);
        if (!st)
            return KEEL_E_NOMEM;
        stmt_register(c, st); /* stmt_evict waits: it cannot run in a pipeline */
        c->q[c->nq++] = (struct pg_pending){.want = PIPE_PREPARE, .st = st};
        if (!PQsendPrepare(c->pg, st->name, sql, (int)n, st->oids))
            return pipe_lost(c);
    }
    c->q[c->nq++] = (struct pg_pending){.want = want, .st = st};
    if (!PQsendQueryPrepared(c->pg, st->name, (int)n, c->values, c->lengths, c->formats, 1))
        return pipe_lost(c);
    return KEEL_OK;
}

/* The next answer: its result, with the NULL that ends it consumed. NULL
 * when the connection was lost or gave no answer in time. */
static PGresult *pipe_next(struct pg_conn *c)
{
    PGresult *res, *end;

    if (wait_answer(c, deadline_ms(c)) < 0)
        return NULL;
    res = PQgetResult(c->pg);
    if (!res || PQresultStatus(res) == PGRES_PIPELINE_SYNC)
        return res;
    if (wait_answer(c, deadline_ms(c)) < 0) {
        PQclear(res);
        return NULL;
    }
    end = PQgetResult(c->pg);
    if (end) { /* one statement, one result: anything else is out of step */
        PQclear(end);
        PQclear(res);
        keel__db_pg_set_err(c, "pipeline out of step");
        c->broken = true;
        return NULL;
    }
    return res;
}

/* Checks one answer; on the first failure records it in c->pipe_rc. A
 * Parse that did not succeed un-caches its statement. Returns res when the
 * caller keeps it (PIPE_LAST and no failure), else clears it. */
static PGresult *pipe_check(struct pg_conn *c, const struct pg_pending *q, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_COMMAND_OK || (st == PGRES_TUPLES_OK && q->want != PIPE_PREPARE);

    if (ok && q->want == PIPE_LAST && c->pipe_rc == KEEL_OK)
        return res;
    if (!ok) {
        if (q->want == PIPE_PREPARE)
            stmt_drop(c, q->st, false);
        else if (q->st && st == PGRES_FATAL_ERROR && stale_stmt(res))
            stmt_drop(c, q->st, false); /* prepared afresh by the transaction's retry */
        if (c->pipe_rc == KEEL_OK && st != PGRES_PIPELINE_ABORTED) {
            c->pipe_rc = bad_result(c, res); /* which clears res */
            return NULL;
        }
        if (c->pipe_rc == KEEL_OK) { /* aborted with no failure before it */
            keel__db_pg_set_err(c, "pipeline aborted");
            c->pipe_rc = KEEL_E_DB;
        }
    }
    PQclear(res);
    return NULL;
}

/* The pipeline cannot be read to its end: the connection is given up,
 * and the failure is the transaction's unless an earlier one is. */
static void lost(struct pg_conn *c)
{
    keel_status rc = pipe_lost(c);

    if (c->pipe_rc == KEEL_OK)
        c->pipe_rc = rc;
}

/* Ends the batch with a Sync, reads every answer owed and leaves pipeline
 * mode. *last (may be NULL) receives the PIPE_LAST result on success. */
static keel_status pipe_drain(struct pg_conn *c, PGresult **last)
{
    PGresult *res, *kept = NULL;
    bool own = false; /* the first failure is the caller's statement's */
    bool first;
    keel_status rc;
    unsigned i;

    if (last)
        *last = NULL;
    if (!c->piped)
        return c->pipe_rc;
    if (!PQpipelineSync(c->pg)) {
        lost(c);
        i = 0;
        goto unparsed;
    }
    for (i = 0; i < c->nq; i++) {
        res = pipe_next(c);
        if (!res || PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            lost(c);
            goto unparsed;
        }
        first = c->pipe_rc == KEEL_OK;
        res = pipe_check(c, &c->q[i], res);
        if (first && c->pipe_rc < 0)
            own = c->q[i].want == PIPE_LAST;
        if (res)
            kept = res;
    }
    res = pipe_next(c);
    if (!res || PQresultStatus(res) != PGRES_PIPELINE_SYNC || !PQexitPipelineMode(c->pg))
        lost(c);
    PQclear(res);
    i = c->nq;
unparsed:
    /* Answers never read (a lost connection): their Parses are unknown. */
    for (; i < c->nq; i++)
        if (c->q[i].want == PIPE_PREPARE)
            stmt_drop(c, c->q[i].st, false);
    c->nq = 0;
    c->piped = false;
    rc = c->pipe_rc;
    if (rc < 0) {
        /* Only a deferred write's failure outlives its call: a failed
         * statement is reported like one run alone (the server aborts
         * the transaction either way). */
        if (own && !c->broken)
            c->pipe_rc = KEEL_OK;
        PQclear(kept);
        return rc;
    }
    if (last)
        *last = kept;
    else
        PQclear(kept);
    return KEEL_OK;
}

/* Runs the caller's statement in the pipeline (after a pending BEGIN and
 * the deferred statements) and reads every answer. */
static keel_status run_piped(struct pg_conn *c, const char *sql, unsigned n, PGresult **out)
{
    keel_status rc;

    *out = NULL;
    if (c->piped && c->nq + 2 > PIPE_MAX) {
        rc = pipe_drain(c, NULL);
        if (rc < 0)
            return rc;
    }
    rc = pipe_open(c);
    if (rc == KEEL_OK)
        rc = pipe_send(c, sql, n, PIPE_LAST);
    if (rc < 0 && c->pipe_rc == KEEL_OK)
        c->pipe_rc = rc;
    return pipe_drain(c, out);
}

static keel_status pg_defer(void *h, const char *sql, const struct keel_db_param *p, unsigned n)
{
    struct pg_conn *c = h;
    keel_status rc;

    if (c->pipe_rc < 0)
        return c->pipe_rc;
    c->retryable = false;
    if (c->broken)
        return KEEL_E_UNAVAILABLE;
    if (KEEL_NEVER(c->rs.res != NULL))
        rows_release(&c->rs);
    /* Room for this statement, its Parse and the COMMIT. */
    if (c->piped && c->nq + 3 > PIPE_MAX) {
        rc = pipe_drain(c, NULL);
        if (rc < 0)
            return rc;
    }
    rc = keel__db_pg_bind_params(c, p, n);
    if (rc == KEEL_OK)
        rc = pipe_open(c);
    if (rc == KEEL_OK)
        rc = pipe_send(c, sql, n, PIPE_DEFER);
    if (rc < 0)
        c->pipe_rc = rc; /* the transaction must not commit without it */
    return rc;
}

/* Back to one answer at a time, for the calls that talk to the server
 * outside the pipeline (SET, WAL positions, ping): sends a pending BEGIN
 * or reads the answers owed. */
static keel_status settle(struct pg_conn *c)
{
    if (c->begin_pending) {
        c->begin_pending = false;
        return expect(c, bounded_exec(c, "BEGIN"), PGRES_COMMAND_OK);
    }
    return c->piped ? pipe_drain(c, NULL) : c->pipe_rc;
}

static keel_status pg_run(void *h,
                          const char *sql,
                          const struct keel_db_param *p,
                          unsigned n,
                          struct keel_db_rows *rows,
                          int64_t *affected)
{
    struct pg_conn *c = h;
    PGresult *res;
    keel_status rc;

    if (affected)
        *affected = 0;
    if (c->pipe_rc < 0)
        return c->pipe_rc; /* the transaction failed already */
    c->retryable = false;
    if (KEEL_NEVER(c->rs.res != NULL)) /* the core frees a result first */
        rows_release(&c->rs);
    if (c->broken)
        return KEEL_E_UNAVAILABLE; /* c->err still tells how it broke */
    rc = keel__db_pg_bind_params(c, p, n);
    if (rc < 0)
        return rc;
    if (c->begin_pending || c->piped)
        rc = run_piped(c, sql, n, &res);
    else
        rc = exec_stmt(c, sql, n, &res);
    if (rc < 0)
        return rc;
    if (affected)
        *affected = strtoll(PQcmdTuples(res), NULL, 10);
    if (!rows) {
        PQclear(res);
        return KEEL_OK;
    }
    c->rs.res = res;
    c->rs.row = -1;
    c->rs.nrows = PQntuples(res);
    rows->d = &c->rs;
    rows->ncols = (unsigned)PQnfields(res);
    return KEEL_OK;
}

/* ============================================================== results */

static keel_status pg_next(struct keel_db_rows *r)
{
    struct pg_rows *rs = r->d;

    if (!rs || !rs->res || rs->row + 1 >= rs->nrows) {
        if (rs)
            rs->row = rs->nrows;
        return KEEL_DONE;
    }
    rs->row++;
    return KEEL_OK;
}

static void pg_rows_free(struct keel_db_rows *r)
{
    if (r->d)
        rows_release(r->d);
    r->d = NULL;
    r->ncols = 0;
}

/* ========================================================= transactions */

/* BEGIN, COMMIT, ROLLBACK and SET go through the simple protocol:
 * one round trip each, as a prepared statement would be, and nothing to
 * parse worth caching.
 *
 * READ COMMITTED, the server's default, unless the caller's first
 * statement is SET TRANSACTION ISOLATION LEVEL ...; `write` needs nothing
 * here (PostgreSQL takes row locks as it goes). */
static keel_status pg_begin(void *h, bool write)
{
    struct pg_conn *c = h;

    (void)write;
    c->retryable = false;
    if (c->broken)
        return KEEL_E_UNAVAILABLE;
    c->pipe_rc = KEEL_OK;
    c->begin_pending = true; /* sent with the first statement ("Pipelining") */
    return KEEL_OK;
}

/* A SET inside the transaction is undone when it does not commit. */
static void tx_ended(struct pg_conn *c, bool committed)
{
    if (c->timeout_in_tx && !committed)
        c->timeout_ms = TIMEOUT_UNKNOWN;
    c->timeout_in_tx = false;
}

static keel_status pg_commit(void *h)
{
    struct pg_conn *c = h;
    PGresult *res;
    keel_status rc = KEEL_OK;

    if (c->pipe_rc < 0) {
        /* A deferred statement failed: the core rolls back; retryable
         * stays as that failure set it. */
        tx_ended(c, false);
        return c->pipe_rc;
    }
    if (c->begin_pending) { /* no statement: nothing was sent */
        c->begin_pending = false;
        tx_ended(c, true);
        return KEEL_OK;
    }
    if (c->broken) {
        tx_ended(c, false);
        return KEEL_E_UNAVAILABLE;
    }
    if (c->piped) {
        /* The deferred statements and the COMMIT: one round trip. */
        if (PQsendQueryParams(c->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
            c->q[c->nq++] = (struct pg_pending){.want = PIPE_LAST};
        else
            lost(c);
        rc = pipe_drain(c, &res);
        if (rc < 0) {
            tx_ended(c, false);
            return rc;
        }
    } else {
        res = bounded_exec(c, "COMMIT");
    }
    if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
        /* COMMIT of a transaction that already failed answers ROLLBACK.
         * retryable stays as the failed statement left it. */
        if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
            keel__db_pg_set_err(c, "COMMIT rolled back: the transaction had failed before");
            rc = KEEL_E_DB;
        }
        PQclear(res);
    } else {
        /* A lost connection (classified KEEL_E_UNAVAILABLE) leaves the
         * outcome unknown: the server may have committed before it went. */
        c->retryable = false;
        rc = bad_result(c, res);
    }
    tx_ended(c, rc == KEEL_OK);
    return rc;
}

static keel_status pg_rollback(void *h)
{
    struct pg_conn *c = h;
    keel_status rc;

    tx_ended(c, false);
    if (c->begin_pending) { /* nothing was sent */
        c->begin_pending = false;
        c->pipe_rc = KEEL_OK;
        return KEEL_OK;
    }
    if (c->piped)
        (void)pipe_drain(c, NULL); /* answers owed; the transaction is over anyway */
    c->pipe_rc = KEEL_OK;
    /* Nothing to undo: no transaction (a failed COMMIT ends it), or a
     * connection whose transaction died with it. */
    if (c->broken || PQtransactionStatus(c->pg) == PQTRANS_IDLE || PQstatus(c->pg) != CONNECTION_OK)
        return KEEL_OK;
    rc = expect(c, bounded_exec(c, "ROLLBACK"), PGRES_COMMAND_OK);
    return c->broken ? KEEL_OK : rc;
}

/* ============================================== state, timeouts, health */

static bool pg_retryable(void *h)
{
    return ((struct pg_conn *)h)->retryable;
}

static bool pg_broken(void *h)
{
    struct pg_conn *c = h;

    return c->broken || PQstatus(c->pg) == CONNECTION_BAD;
}

static const char *pg_errmsg(void *h)
{
    struct pg_conn *c = h;

    return c->err[0] ? c->err : "no error";
}

static void pg_set_timeout(void *h, unsigned ms)
{
    struct pg_conn *c = h;
    char sql[48];

    if (c->broken || ms == c->timeout_ms)
        return;
    if (settle(c) < 0) {
        c->timeout_ms = TIMEOUT_UNKNOWN; /* the transaction failed: its SET is moot */
        return;
    }
    snprintf(sql, sizeof(sql), "SET statement_timeout = %u", ms);
    if (expect(c, bounded_exec(c, sql), PGRES_COMMAND_OK) < 0) {
        c->timeout_ms = TIMEOUT_UNKNOWN; /* try again next time */
        return;
    }
    c->timeout_ms = ms;
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        c->timeout_in_tx = true;
}

/* Waits up to `ms` for the answer to a query sent with PQsend*. */
static keel_status wait_answer(struct pg_conn *c, int ms)
{
    struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};
    uint64_t deadline = keel_now_ns() + (uint64_t)ms * 1000000u;
    uint64_t now;
    int n;

    while (PQisBusy(c->pg)) {
        now = keel_now_ns();
        if (now >= deadline) {
            keel__db_pg_set_err(c, "no answer from the server in time");
            c->broken = true; /* a query is still in flight on it */
            c->hung = true;
            return KEEL_E_UNAVAILABLE;
        }
        n = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
        if (n < 0 && errno != EINTR) {
            keel__db_pg_set_err(c, "poll failed");
            c->broken = true;
            return KEEL_E_UNAVAILABLE;
        }
        if (n > 0 && !PQconsumeInput(c->pg))
            return set_failure(c, NULL);
    }
    return KEEL_OK;
}

/* SELECT 1, bounded by PING_MS even when the server or the network hangs
 * (statement_timeout cannot help there). Unprepared: a probe every few
 * seconds does not need the fast path, and preparing would be a second
 * round trip that the deadline does not cover. */
static keel_status pg_ping(void *h)
{
    struct pg_conn *c = h;
    PGresult *res, *first = NULL;
    keel_status rc;

    if (c->broken)
        return KEEL_E_UNAVAILABLE;
    rc = settle(c);
    if (rc < 0)
        return rc;
    if (!PQsendQueryParams(c->pg, "SELECT 1", 0, NULL, NULL, NULL, NULL, 1))
        return set_failure(c, NULL);
    rc = wait_answer(c, PING_MS);
    if (rc < 0)
        return rc;
    while ((res = PQgetResult(c->pg)) != NULL) {
        if (!first)
            first = res;
        else
            PQclear(res);
    }
    if (!first || PQresultStatus(first) != PGRES_TUPLES_OK)
        return bad_result(c, first);
    PQclear(first);
    return KEEL_OK;
}

/* ========================================================= WAL positions */

/* A pg_lsn query's single value: binary pg_lsn is the 64-bit position
 * ("X/Y" in text is its two 32-bit halves). */
static keel_status lsn_query(struct pg_conn *c, const char *sql, uint64_t *lsn)
{
    PGresult *res;
    keel_status rc;

    *lsn = 0;
    c->retryable = false;
    if (c->broken)
        return KEEL_E_UNAVAILABLE;
    rc = settle(c);
    if (rc < 0)
        return rc;
    rc = exec_stmt(c, sql, 0, &res);
    if (rc < 0)
        return rc;
    if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0) ||
        PQftype(res, 0) != OID_PG_LSN || PQgetlength(res, 0, 0) != 8) {
        keel__db_pg_set_err(
            c, "no WAL position (a primary has no replay position, a standby no insert one)");
        rc = KEEL_E_INVALID;
    } else {
        *lsn = get_be((const unsigned char *)PQgetvalue(res, 0, 0), 8);
    }
    PQclear(res);
    return rc;
}

static keel_status pg_wal_lsn(void *h, uint64_t *lsn)
{
    return lsn_query(h, "SELECT pg_current_wal_insert_lsn()", lsn);
}

static keel_status pg_replay_lsn(void *h, uint64_t *lsn)
{
    return lsn_query(h, "SELECT pg_last_wal_replay_lsn()", lsn);
}

/* ================================================================ driver */

const struct keel_db_driver keel__db_pg = {
    .name = "postgres",
    .connect = pg_connect,
    .close = pg_close,
    .run = pg_run,
    .defer = pg_defer,
    .next = pg_next,
    .rows_free = pg_rows_free,
    .is_null = keel__db_pg_col_is_null,
    .text = keel__db_pg_col_text,
    .int64 = keel__db_pg_col_int64,
    .dbl = keel__db_pg_col_dbl,
    .boolean = keel__db_pg_col_bool,
    .bytes = keel__db_pg_col_bytes,
    .time = keel__db_pg_col_time,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .retryable = pg_retryable,
    .broken = pg_broken,
    .errmsg = pg_errmsg,
    .set_timeout = pg_set_timeout,
    .ping = pg_ping,
    .wal_lsn = pg_wal_lsn,
    .replay_lsn = pg_replay_lsn,
};
