/*
 * db_pg.c - the PostgreSQL driver of the storage API (libpq, PostgreSQL 15).
 *
 * Implements `keel__db_pg` (src/db/db_int.h): connections from libpq URIs
 * (multi-host allowed), statements prepared once per connection and run with
 * typed binary parameters and binary results, result decoding by column type,
 * SQLSTATE-to-status mapping, transactions, and the WAL positions the storage
 * core uses for read-your-writes.
 *
 * DESIGN: every call blocks (the storage core runs us on the thread pool,
 * docs/internals/storage.md). The hot path of a cached statement is one hash
 * of the SQL text, one PQexecPrepared round trip and no allocation of ours:
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
 * Failures are classified once, in set_failure(): the connection remembers whether
 * the last error was retryable (serialization failure, deadlock) and whether
 * the connection is broken (lost, shut down, or a standby after failover),
 * which the pool reads to replace it.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/core.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/uuid.h"

#include "db_int.h"

#define ERRLEN             256
#define STMT_MAX           128   /* prepared statements kept per connection */
#define STMT_BUCKETS       256   /* power of two, > STMT_MAX */
#define MAX_PARAMS         65535 /* the protocol's limit (int16 count) */
#define DEFAULT_TIMEOUT_MS 5000u
#define TIMEOUT_UNKNOWN    UINT_MAX
#define PING_MS            2000
#define SLOT_KEEP          4096 /* scratch larger than this is freed with the rows */

/* 2000-01-01T00:00:00Z, PostgreSQL's timestamp epoch, in Unix microseconds. */
#define PG_EPOCH_US INT64_C(946684800000000)
#define DAY_US      INT64_C(86400000000)

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

    struct pg_rows rs;
    char err[ERRLEN];
};

/* ================================================================ errors */

static void set_err(struct pg_conn *c, const char *msg)
{
    size_t i, o = 0;

    /* libpq messages end in a newline and span lines (one per host tried):
     * one line, single spaces. */
    for (i = 0; msg[i] && o + 1 < sizeof(c->err); i++) {
        bool space = msg[i] == '\n' || msg[i] == '\t' || msg[i] == ' ';

        if (space && (o == 0 || c->err[o - 1] == ' '))
            continue;
        c->err[o++] = space ? ' ' : msg[i];
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

    if (!msg)
        msg = PQerrorMessage(c->pg);
    if (!msg || !msg[0])
        msg = res ? PQresStatus(PQresultStatus(res)) : "no result (connection lost?)";
    snprintf(buf, sizeof(buf), "%s%s%s", state ? state : "", state ? " " : "", msg);
    set_err(c, buf);
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

static keel_status session_setup(struct pg_conn *c)
{
    const char *ids = PQparameterStatus(c->pg, "integer_datetimes");
    PGresult *res;

    if (!ids || strcmp(ids, "on") != 0) {
        set_err(c, "server without integer_datetimes (PostgreSQL < 10?) is not supported");
        return KEEL_E_INVALID;
    }
    /* One round trip; TimeZone UTC keeps timestamp <-> timestamptz casts and
     * date arithmetic in the server identical to the API's UTC values. */
    res = PQexec(c->pg, "SET statement_timeout = 5000; SET TimeZone = 'UTC'");
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
        set_err(c, PQerrorMessage(pg));
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
        PQclear(PQexec(c->pg, sql));
    }
    free(st);
}

/* Beyond STMT_MAX statements, deallocates the least recently used quarter
 * in one round trip (a multi-statement simple query), so a workload of
 * one-off statements pays one extra round trip per STMT_MAX / 4 of them,
 * not one per statement. Only outside a transaction block: DEALLOCATE is
 * not transactional, but a failing one would abort the caller's
 * transaction; a long transaction may hold a few more until it ends. */
static void stmt_evict(struct pg_conn *c)
{
    char sql[1024];
    size_t len;

    if (c->nstmts <= STMT_MAX || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return;
    while (c->nstmts > STMT_MAX - STMT_MAX / 4) {
        for (len = 0; len + 48 < sizeof(sql) && c->nstmts > STMT_MAX - STMT_MAX / 4;) {
            len +=
                (size_t)snprintf(sql + len, sizeof(sql) - len, "DEALLOCATE %s;", c->lru_old->name);
            stmt_drop(c, c->lru_old, false);
        }
        PQclear(PQexec(c->pg, sql));
    }
}

static keel_status
stmt_prepare(struct pg_conn *c, const char *sql, uint64_t h, unsigned n, struct pg_stmt **out)
{
    size_t len = strlen(sql);
    struct pg_stmt *st;
    keel_status rc;

    *out = NULL;
    st = malloc(sizeof(*st) + n * sizeof(Oid) + len + 1);
    if (!st) {
        set_err(c, "out of memory preparing a statement");
        return KEEL_E_NOMEM;
    }
    memset(st, 0, sizeof(*st));
    st->hash = h;
    st->nparams = n;
    if (n)
        memcpy(st->oids, c->oids, n * sizeof(Oid));
    st->sql = memcpy((char *)(st->oids + n), sql, len + 1);
    snprintf(st->name, sizeof(st->name), "k%" PRIu64, ++c->next_id);
    rc = expect(c, PQprepare(c->pg, st->name, sql, (int)n, st->oids), PGRES_COMMAND_OK);
    if (rc < 0) {
        free(st);
        return rc;
    }
    st->hnext = c->buckets[h & (STMT_BUCKETS - 1)];
    c->buckets[h & (STMT_BUCKETS - 1)] = st;
    lru_push(c, st);
    c->nstmts++;
    stmt_evict(c);
    *out = st;
    return KEEL_OK;
}

/* ============================================================= binding */

static void put_be(unsigned char *p, uint64_t v, unsigned n)
{
    while (n--) {
        p[n] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;

    while (n--)
        v = (v << 8) | *p++;
    return v;
}

static keel_status grow_binds(struct pg_conn *c, unsigned n)
{
    unsigned cap = c->pcap ? c->pcap : 8;
    void *p;

    while (cap < n)
        cap *= 2;
#define GROW(field)                                                                                \
    do {                                                                                           \
        p = realloc((void *)c->field, cap * sizeof(*c->field));                                    \
        if (!p)                                                                                    \
            return KEEL_E_NOMEM;                                                                   \
        c->field = p;                                                                              \
    } while (0)
    GROW(values);
    GROW(lengths);
    GROW(formats);
    GROW(oids);
    GROW(bin);
#undef GROW
    c->pcap = cap;
    return KEEL_OK;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return ch - 'A' + 10; /* the text was validated */
}

/* A UUID parameter's text ends at its NUL or after len (KEEL_DB_UUID says
 * 36 whatever the string). */
static size_t uuid_len(const struct keel_db_param *p)
{
    return strnlen(p->v.s, p->len);
}

/* Text values in the text format must be NUL-terminated, and PostgreSQL
 * text cannot hold NUL: length-delimited text (KEEL_DB_TEXTN, and a UUID
 * that is neither canonical nor NUL-terminated within its length) is copied
 * into c->tbuf. */
static bool needs_copy(const struct keel_db_param *p)
{
    if (!p->v.s || p->len == SIZE_MAX)
        return false;
    if (p->type == KEEL_DB_T_UUID)
        return uuid_len(p) == p->len && !keel_uuid_valid(p->v.s, p->len);
    return p->type == KEEL_DB_T_TEXT;
}

static keel_status copy_texts(struct pg_conn *c, const struct keel_db_param *p, unsigned n)
{
    size_t need = 0, off = 0;
    unsigned i;

    for (i = 0; i < n; i++) {
        if (!needs_copy(&p[i]))
            continue;
        if (memchr(p[i].v.s, '\0', p[i].len)) {
            set_err(c, "text parameter contains a NUL byte");
            return KEEL_E_INVALID;
        }
        if (p[i].len > INT_MAX || need > SIZE_MAX / 2) {
            set_err(c, "text parameter too large");
            return KEEL_E_TOO_LARGE;
        }
        need += p[i].len + 1;
    }
    if (need > c->tcap) {
        char *t = realloc(c->tbuf, need);

        if (!t) {
            set_err(c, "out of memory binding parameters");
            return KEEL_E_NOMEM;
        }
        c->tbuf = t;
        c->tcap = need;
    }
    for (i = 0; i < n; i++) {
        if (!needs_copy(&p[i]))
            continue;
        memcpy(c->tbuf + off, p[i].v.s, p[i].len);
        c->tbuf[off + p[i].len] = '\0';
        c->values[i] = c->tbuf + off;
        off += p[i].len + 1;
    }
    return KEEL_OK;
}

/* Binary value of a fixed-size parameter, into c->bin[i]. */
static void bind_bin(struct pg_conn *c, unsigned i, Oid oid, uint64_t v, unsigned len)
{
    put_be(c->bin[i], v, len);
    c->values[i] = (const char *)c->bin[i];
    c->lengths[i] = (int)len;
    c->formats[i] = 1;
    c->oids[i] = oid;
}

static keel_status bind_uuid(struct pg_conn *c, unsigned i, const struct keel_db_param *p)
{
    unsigned k, o = 0;

    c->oids[i] = OID_UUID;
    if (!keel_uuid_valid(p->v.s, uuid_len(p))) {
        /* Sent as text: the server accepts the other spellings ({...}, no
         * hyphens) and rejects the rest (22P02, KEEL_E_INVALID). */
        if (!needs_copy(p))
            c->values[i] = p->v.s; /* NUL-terminated; else copy_texts */
        return KEEL_OK;
    }
    for (k = 0; k < 36; k++) {
        if (p->v.s[k] == '-')
            continue;
        if (o % 2 == 0)
            c->bin[i][o / 2] = (unsigned char)(hexval(p->v.s[k]) << 4);
        else
            c->bin[i][o / 2] |= (unsigned char)hexval(p->v.s[k]);
        o++;
    }
    c->values[i] = (const char *)c->bin[i];
    c->lengths[i] = 16;
    c->formats[i] = 1;
    return KEEL_OK;
}

static keel_status bind_one(struct pg_conn *c, unsigned i, const struct keel_db_param *p)
{
    uint64_t bits;

    c->values[i] = NULL;
    c->lengths[i] = 0;
    c->formats[i] = 0;
    c->oids[i] = 0;
    switch (p->type) {
    case KEEL_DB_T_NULL:
        return KEEL_OK;
    case KEEL_DB_T_TEXT:
        /* "unknown": the server gives it the type the context needs
         * (a varchar, uuid, enum or jsonb column), as a literal would. */
        if (p->v.s && p->len == SIZE_MAX)
            c->values[i] = p->v.s;
        return KEEL_OK;
    case KEEL_DB_T_INT64:
        bind_bin(c, i, OID_INT8, (uint64_t)p->v.i, 8);
        return KEEL_OK;
    case KEEL_DB_T_BOOL:
        bind_bin(c, i, OID_BOOL, p->v.t ? 1 : 0, 1);
        return KEEL_OK;
    case KEEL_DB_T_DOUBLE:
        memcpy(&bits, &p->v.d, sizeof(bits));
        bind_bin(c, i, OID_FLOAT8, bits, 8);
        return KEEL_OK;
    case KEEL_DB_T_TIME:
        if (p->v.i < INT64_MIN + PG_EPOCH_US) {
            set_err(c, "timestamp parameter out of range");
            return KEEL_E_INVALID;
        }
        bind_bin(c, i, OID_TIMESTAMPTZ, (uint64_t)(p->v.i - PG_EPOCH_US), 8);
        return KEEL_OK;
    case KEEL_DB_T_BYTES:
        if (p->len > INT_MAX) {
            set_err(c, "bytes parameter too large");
            return KEEL_E_TOO_LARGE;
        }
        /* A NULL pointer would mean SQL NULL to libpq: empty stays empty. */
        c->values[i] = p->v.b ? p->v.b : "";
        c->lengths[i] = (int)p->len;
        c->formats[i] = 1;
        c->oids[i] = OID_BYTEA;
        return KEEL_OK;
    case KEEL_DB_T_UUID:
        return p->v.s ? bind_uuid(c, i, p) : KEEL_OK;
    }
    set_err(c, "unknown parameter type");
    return KEEL_E_INVALID;
}

static keel_status bind_params(struct pg_conn *c, const struct keel_db_param *p, unsigned n)
{
    keel_status rc;
    unsigned i;

    if (n > MAX_PARAMS || (n && !p)) {
        set_err(c, "bad parameter count");
        return KEEL_E_INVALID;
    }
    if (n > c->pcap) {
        rc = grow_binds(c, n);
        if (rc < 0) {
            set_err(c, "out of memory binding parameters");
            return rc;
        }
    }
    for (i = 0; i < n; i++) {
        rc = bind_one(c, i, &p[i]);
        if (rc < 0)
            return rc;
    }
    return copy_texts(c, p, n);
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
        set_err(c, "empty statement");
        rc = KEEL_E_INVALID;
    } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        /* libpq now waits for COPY data; the connection cannot go back. */
        set_err(c, "COPY is not supported through the storage API");
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
    return PQexecPrepared(c->pg, st->name, (int)n, c->values, c->lengths, c->formats, 1);
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

    c->retryable = false;
    if (affected)
        *affected = 0;
    if (KEEL_NEVER(c->rs.res != NULL)) /* the core frees a result first */
        rows_release(&c->rs);
    if (c->broken)
        return KEEL_E_UNAVAILABLE; /* c->err still tells how it broke */
    rc = bind_params(c, p, n);
    if (rc < 0)
        return rc;
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

/* The current row's value of col (binary), or NULL when there is no
 * current row or the value is NULL. */
static const unsigned char *cell(const struct keel_db_rows *r, unsigned col, int *len, Oid *oid)
{
    const struct pg_rows *rs = r->d;

    *len = 0;
    *oid = 0;
    if (!rs || !rs->res || rs->row < 0 || rs->row >= rs->nrows || col >= r->ncols ||
        PQgetisnull(rs->res, rs->row, (int)col))
        return NULL;
    *len = PQgetlength(rs->res, rs->row, (int)col);
    *oid = PQftype(rs->res, (int)col);
    return (const unsigned char *)PQgetvalue(rs->res, rs->row, (int)col);
}

static bool col_is_null(const struct keel_db_rows *r, unsigned col)
{
    int len;
    Oid oid;

    return cell(r, col, &len, &oid) == NULL;
}

/* Scratch space for col's text form, valid until the next row. */
static char *scratch(struct pg_rows *rs, unsigned col, size_t need)
{
    struct pg_slot *s;

    if (col >= rs->nslots) {
        unsigned n = (unsigned)PQnfields(rs->res);

        s = realloc(rs->slots, n * sizeof(*s));
        if (!s)
            return NULL;
        memset(s + rs->nslots, 0, (n - rs->nslots) * sizeof(*s));
        rs->slots = s;
        rs->nslots = n;
    }
    s = &rs->slots[col];
    if (s->cap < need) {
        size_t cap = need < 64 ? 64 : need;
        char *p = realloc(s->p, cap);

        if (!p)
            return NULL;
        s->p = p;
        s->cap = cap;
    }
    return s->p;
}

static int64_t pg_time_to_unix(int64_t v)
{
    if (v == INT64_MAX || v == INT64_MIN) /* 'infinity', '-infinity' */
        return v;
    return v > INT64_MAX - PG_EPOCH_US ? INT64_MAX : v + PG_EPOCH_US;
}

static int64_t pg_date_to_unix(int32_t days)
{
    if (days == INT32_MAX)
        return INT64_MAX;
    if (days == INT32_MIN)
        return INT64_MIN;
    if (days > INT64_MAX / DAY_US - PG_EPOCH_US / DAY_US)
        return INT64_MAX;
    if (days < INT64_MIN / DAY_US + PG_EPOCH_US / DAY_US)
        return INT64_MIN;
    return (int64_t)days * DAY_US + PG_EPOCH_US;
}

/* ISO 8601 in UTC: 2024-05-01T12:30:00.250000Z (no fraction when zero; no
 * time for a date; no Z for a timestamp without time zone). */
static size_t format_time(char *buf, size_t cap, int64_t us, Oid oid)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    time_t t;
    struct tm tm;
    int n;

    if (us == INT64_MAX || us == INT64_MIN)
        return (size_t)snprintf(buf, cap, "%s", us == INT64_MAX ? "infinity" : "-infinity");
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    t = (time_t)secs;
    if (!gmtime_r(&t, &tm))
        return (size_t)snprintf(buf, cap, "?");
    if (oid == OID_DATE)
        return (size_t)snprintf(buf, cap, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                                tm.tm_mday);
    n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (frac)
        n += snprintf(buf + n, cap - (size_t)n, ".%06d", (int)frac);
    if (oid == OID_TIMESTAMPTZ)
        n += snprintf(buf + n, cap - (size_t)n, "Z");
    return (size_t)n;
}

/* The shortest %g form that reads back as the same float4 or float8, as
 * PostgreSQL prints them (6..9 and 15..17 significant digits). */
static size_t format_float(char *buf, size_t cap, double d, Oid oid)
{
    bool single = oid == OID_FLOAT4;
    int prec, n = 0;

    for (prec = single ? 6 : 15; prec <= (single ? 9 : 17); prec++) {
        n = snprintf(buf, cap, "%.*g", prec, d);
        if (isnan(d) || (single ? strtof(buf, NULL) == (float)d : strtod(buf, NULL) == d))
            break;
    }
    return (size_t)n;
}

/* numeric's binary form: ndigits, weight, sign, dscale (int16 each), then
 * ndigits base-10000 digits, the first one worth 10000^weight. Formatted as
 * PostgreSQL's numeric_out does. */
static const char *
numeric_text(struct pg_rows *rs, unsigned col, const unsigned char *v, int len, size_t *out_len)
{
    int ndigits, weight, sign, dscale, d;
    char *buf, *p;
    size_t need;

    if (len < 8)
        return NULL;
    ndigits = (int)get_be(v, 2);
    weight = (int16_t)get_be(v + 2, 2);
    sign = (int)get_be(v + 4, 2);
    dscale = (int)get_be(v + 6, 2);
    if (len < 8 + 2 * ndigits || dscale > 0x3fff)
        return NULL;
    if (sign == 0xC000 || sign == 0xD000 || sign == 0xF000) {
        *out_len = sign == 0xC000 ? 3 : sign == 0xD000 ? 8 : 9;
        return sign == 0xC000 ? "NaN" : sign == 0xD000 ? "Infinity" : "-Infinity";
    }
    need = 2 + (size_t)(weight >= 0 ? weight + 1 : 1) * 4 + 1 + (size_t)dscale + 4 + 1;
    buf = scratch(rs, col, need);
    if (!buf)
        return NULL;
    p = buf;
    if (sign == 0x4000)
        *p++ = '-';
    if (weight < 0) {
        *p++ = '0';
    } else {
        for (d = 0; d <= weight; d++) {
            int dig = d < ndigits ? (int)get_be(v + 8 + 2 * d, 2) : 0;

            p += sprintf(p, d == 0 ? "%d" : "%04d", dig);
        }
    }
    if (dscale > 0) {
        char *end;

        *p++ = '.';
        end = p + dscale;
        for (d = weight + 1; p < end; d++) {
            int dig = d >= 0 && d < ndigits ? (int)get_be(v + 8 + 2 * d, 2) : 0;

            p += sprintf(p, "%04d", dig);
        }
        p = end; /* the last group may carry digits beyond the scale */
    }
    *p = '\0';
    *out_len = (size_t)(p - buf);
    return buf;
}

static bool is_int_oid(Oid oid)
{
    return oid == OID_INT2 || oid == OID_INT4 || oid == OID_INT8 || oid == OID_OID;
}

static int64_t int_value(const unsigned char *v, int len, Oid oid)
{
    if (oid == OID_INT2 && len == 2)
        return (int16_t)get_be(v, 2);
    if (oid == OID_INT4 && len == 4)
        return (int32_t)get_be(v, 4);
    if (oid == OID_OID && len == 4)
        return (int64_t)get_be(v, 4);
    if (oid == OID_INT8 && len == 8)
        return (int64_t)get_be(v, 8);
    return 0;
}

static double float_value(const unsigned char *v, int len, Oid oid)
{
    uint64_t bits;
    uint32_t b32;
    double d;
    float f;

    if (oid == OID_FLOAT8 && len == 8) {
        bits = get_be(v, 8);
        memcpy(&d, &bits, sizeof(d));
        return d;
    }
    if (oid == OID_FLOAT4 && len == 4) {
        b32 = (uint32_t)get_be(v, 4);
        memcpy(&f, &b32, sizeof(f));
        return f;
    }
    return 0;
}

/* Microseconds since the Unix epoch of a timestamp, date or integer. */
static int64_t time_value(const unsigned char *v, int len, Oid oid)
{
    if ((oid == OID_TIMESTAMPTZ || oid == OID_TIMESTAMP) && len == 8)
        return pg_time_to_unix((int64_t)get_be(v, 8));
    if (oid == OID_DATE && len == 4)
        return pg_date_to_unix((int32_t)get_be(v, 4));
    return int_value(v, len, oid);
}

/* The text form of a fixed-layout binary value, in col's scratch space. */
static const char *
format_value(struct pg_rows *rs, unsigned col, const unsigned char *v, int vlen, Oid oid, size_t *n)
{
    char *buf = scratch(rs, col, 64);
    uint64_t lsn;

    if (!buf)
        return NULL;
    switch (oid) {
    case OID_FLOAT4:
    case OID_FLOAT8:
        *n = format_float(buf, 64, float_value(v, vlen, oid), oid);
        break;
    case OID_UUID:
        if (vlen != 16)
            return NULL;
        keel_uuid_format(v, buf);
        *n = KEEL_UUID_STRLEN;
        break;
    case OID_PG_LSN:
        lsn = vlen == 8 ? get_be(v, 8) : 0;
        *n = (size_t)snprintf(buf, 64, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
        break;
    case OID_DATE:
    case OID_TIMESTAMP:
    case OID_TIMESTAMPTZ:
        *n = format_time(buf, 64, time_value(v, vlen, oid), oid);
        break;
    default:
        *n = (size_t)snprintf(buf, 64, "%" PRId64, int_value(v, vlen, oid));
        break;
    }
    return buf;
}

static bool fixed_oid(Oid oid)
{
    return is_int_oid(oid) || oid == OID_FLOAT4 || oid == OID_FLOAT8 || oid == OID_UUID ||
           oid == OID_PG_LSN || oid == OID_DATE || oid == OID_TIMESTAMP || oid == OID_TIMESTAMPTZ;
}

static const char *col_text(const struct keel_db_rows *r, unsigned col, size_t *len)
{
    const unsigned char *v;
    const char *t;
    size_t n = 0;
    Oid oid;
    int vlen;

    if (len)
        *len = 0;
    v = cell(r, col, &vlen, &oid);
    if (!v)
        return NULL;
    if (oid == OID_NUMERIC) {
        t = numeric_text(r->d, col, v, vlen, &n);
    } else if (oid == OID_BOOL) {
        t = vlen == 1 && v[0] ? "true" : "false";
        n = strlen(t);
    } else if (oid == OID_JSONB && vlen >= 1 && v[0] == 1) {
        t = (const char *)v + 1; /* version byte 1, then the JSON text */
        n = (size_t)vlen - 1;
    } else if (fixed_oid(oid)) {
        t = format_value(r->d, col, v, vlen, oid, &n);
    } else {
        /* text, varchar, char, name, json, xml, enums, citext: binary is
         * the text itself (libpq adds a NUL). */
        t = (const char *)v;
        n = (size_t)vlen;
    }
    if (t && len)
        *len = n;
    return t;
}

/* Text-like columns (text, varchar, numeric) read as numbers by parsing. */
static bool texty(Oid oid)
{
    return oid == OID_TEXT || oid == OID_VARCHAR || oid == OID_BPCHAR || oid == OID_NUMERIC;
}

static int64_t col_int64(const struct keel_db_rows *r, unsigned col)
{
    const unsigned char *v;
    const char *t;
    double d;
    Oid oid;
    int len;

    v = cell(r, col, &len, &oid);
    if (!v)
        return 0;
    if (is_int_oid(oid))
        return int_value(v, len, oid);
    if (oid == OID_BOOL)
        return len == 1 && v[0];
    if (oid == OID_TIMESTAMPTZ || oid == OID_TIMESTAMP || oid == OID_DATE)
        return time_value(v, len, oid);
    if (oid == OID_PG_LSN && len == 8)
        return (int64_t)get_be(v, 8);
    if (oid == OID_FLOAT4 || oid == OID_FLOAT8) {
        d = float_value(v, len, oid);
        /* Out of range (and NaN) would be undefined behaviour to convert. */
        return d >= -9223372036854775808.0 && d < 9223372036854775808.0 ? (int64_t)d : 0;
    }
    if (texty(oid)) {
        t = col_text(r, col, NULL);
        return t ? strtoll(t, NULL, 10) : 0;
    }
    return 0;
}

static double col_dbl(const struct keel_db_rows *r, unsigned col)
{
    const unsigned char *v;
    const char *t;
    Oid oid;
    int len;

    v = cell(r, col, &len, &oid);
    if (!v)
        return 0;
    if (oid == OID_FLOAT4 || oid == OID_FLOAT8)
        return float_value(v, len, oid);
    if (is_int_oid(oid))
        return (double)int_value(v, len, oid);
    if (texty(oid)) {
        t = col_text(r, col, NULL);
        return t ? strtod(t, NULL) : 0;
    }
    return 0;
}

static bool col_bool(const struct keel_db_rows *r, unsigned col)
{
    const unsigned char *v;
    Oid oid;
    int len;

    v = cell(r, col, &len, &oid);
    if (!v)
        return false;
    if (oid == OID_BOOL)
        return len == 1 && v[0];
    if (is_int_oid(oid))
        return int_value(v, len, oid) != 0;
    if (texty(oid))
        return len > 0 && strchr("tTyY1", v[0]) != NULL;
    return false;
}

/* The value's bytes as the server sent them: bytea and text as they are,
 * a uuid as its 16 bytes, other types in PostgreSQL's binary format. */
static const void *col_bytes(const struct keel_db_rows *r, unsigned col, size_t *len)
{
    const unsigned char *v;
    Oid oid;
    int n;

    v = cell(r, col, &n, &oid);
    *len = (size_t)n;
    return v;
}

static int64_t col_time(const struct keel_db_rows *r, unsigned col)
{
    const unsigned char *v;
    Oid oid;
    int len;

    v = cell(r, col, &len, &oid);
    return v ? time_value(v, len, oid) : 0;
}

/* ========================================================= transactions */

/* BEGIN, COMMIT, ROLLBACK and SET go through PQexec (the simple protocol):
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
    return expect(c, PQexec(c->pg, "BEGIN"), PGRES_COMMAND_OK);
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

    if (c->broken) {
        tx_ended(c, false);
        return KEEL_E_UNAVAILABLE;
    }
    res = PQexec(c->pg, "COMMIT");
    if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
        /* COMMIT of a transaction that already failed answers ROLLBACK.
         * retryable stays as the failed statement left it. */
        if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
            set_err(c, "COMMIT rolled back: the transaction had failed before");
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
    /* Nothing to undo: no transaction (a failed COMMIT ends it), or a
     * connection whose transaction died with it. */
    if (c->broken || PQtransactionStatus(c->pg) == PQTRANS_IDLE || PQstatus(c->pg) != CONNECTION_OK)
        return KEEL_OK;
    rc = expect(c, PQexec(c->pg, "ROLLBACK"), PGRES_COMMAND_OK);
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
    snprintf(sql, sizeof(sql), "SET statement_timeout = %u", ms);
    if (expect(c, PQexec(c->pg, sql), PGRES_COMMAND_OK) < 0) {
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
            set_err(c, "no answer from the server in time");
            c->broken = true; /* a query is still in flight on it */
            return KEEL_E_UNAVAILABLE;
        }
        n = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
        if (n < 0 && errno != EINTR) {
            set_err(c, "poll failed");
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
    rc = exec_stmt(c, sql, 0, &res);
    if (rc < 0)
        return rc;
    if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0) ||
        PQftype(res, 0) != OID_PG_LSN || PQgetlength(res, 0, 0) != 8) {
        set_err(c, "no WAL position (a primary has no replay position, a standby no insert one)");
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
    .next = pg_next,
    .rows_free = pg_rows_free,
    .is_null = col_is_null,
    .text = col_text,
    .int64 = col_int64,
    .dbl = col_dbl,
    .boolean = col_bool,
    .bytes = col_bytes,
    .time = col_time,
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
