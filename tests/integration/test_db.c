/*
 * test_db.c - the repository test suite of the storage API (include/keel/db.h),
 * one suite for both dialects: it runs against whatever database
 * KEEL_TEST_DATABASE_URL names (sqlite:PATH or postgres://...) and exits 77
 * (skip) without it. tests/integration/run.py runs it twice, against a
 * SQLite file and a PostgreSQL server it started (tests/lib/servers.py).
 *
 * Only the public API is used: what passes here is what repositories get.
 * Dialect-specific SQL is limited to DDL and to what the test needs to
 * provoke (a serialization failure, a slow statement).
 */
#include <float.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/db.h"
#include "keel/log.h"

#include "test.h"

static struct keel_config cfg;
static struct keel_db *db;
static bool pg; /* dialect is "postgres" */

/* ------------------------------------------------------------- helpers */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define CHECK_RC(expr, want)                                                                       \
    do {                                                                                           \
        keel_status rc_ = (expr);                                                                  \
        if (rc_ != (want))                                                                         \
            fail_msg("%s:%d: %s returned %s (%d), expected %s", __FILE__, __LINE__, #expr,         \
                     keel_status_name(rc_), rc_, keel_status_name(want));                          \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, KEEL_OK)

/* Same, and prints the connection's driver message on failure. */
#define CHECK_RC_C(c, expr, want)                                                                  \
    do {                                                                                           \
        keel_status rc_ = (expr);                                                                  \
        if (rc_ != (want))                                                                         \
            fail_msg("%s:%d: %s returned %s (%d), expected %s; driver: %s", __FILE__, __LINE__,    \
                     #expr, keel_status_name(rc_), rc_, keel_status_name(want),                    \
                     keel_db_errmsg(c));                                                           \
    } while (0)

#define CHECK_OK_C(c, expr) CHECK_RC_C(c, expr, KEEL_OK)

static struct keel_db_conn *acquire(enum keel_db_intent intent)
{
    struct keel_db_conn *c = NULL;

    CHECK_OK(keel_db_acquire(db, intent, NULL, &c));
    assert_non_null(c);
    return c;
}

static void exec_ok(struct keel_db_conn *c, const char *sql)
{
    CHECK_OK_C(c, keel_db_exec(c, sql, NULL, 0, NULL));
}

/* Runs a one-row, one-column integer query; returns its value. */
static int64_t
query_int(struct keel_db_conn *c, const char *sql, const struct keel_db_param *p, unsigned n)
{
    struct keel_db_rows *r = NULL;
    int64_t v;

    CHECK_OK_C(c, keel_db_query(c, sql, p, n, &r));
    CHECK_OK_C(c, keel_db_next(r));
    assert_false(keel_db_is_null(r, 0));
    v = keel_db_int64(r, 0);
    CHECK_RC_C(c, keel_db_next(r), KEEL_DONE);
    keel_db_rows_free(r);
    return v;
}

static int64_t count_where_id(struct keel_db_conn *c, const char *table, int64_t id)
{
    char sql[128];
    const struct keel_db_param p[] = {KEEL_DB_INT(id)};

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE id = $1", table);
    return query_int(c, sql, p, 1);
}

/* A rendezvous of n threads with a timeout, so a thread that fails early
 * cannot hang the others. Returns true when all n arrived. */
struct rendezvous {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n, arrived;
};

static bool rendezvous_wait(struct rendezvous *rv, double timeout_s)
{
    struct timespec ts;
    bool ok = true;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)timeout_s;
    pthread_mutex_lock(&rv->mu);
    rv->arrived++;
    pthread_cond_broadcast(&rv->cv);
    while (rv->arrived < rv->n) {
        if (pthread_cond_timedwait(&rv->cv, &rv->mu, &ts) != 0) {
            ok = false;
            break;
        }
    }
    pthread_mutex_unlock(&rv->mu);
    return ok;
}

/* --------------------------------------------------------------- setup */

static const char *const ddl_sqlite[] = {
    "DROP TABLE IF EXISTS itest_child",
    "DROP TABLE IF EXISTS itest_parent",
    "DROP TABLE IF EXISTS itest_types",
    "DROP TABLE IF EXISTS itest_pairs",
    "DROP TABLE IF EXISTS itest_rows",
    "DROP TABLE IF EXISTS itest_unique",
    "DROP TABLE IF EXISTS itest_counter",
    "DROP TABLE IF EXISTS itest_ser",
    "CREATE TABLE itest_types (id INTEGER PRIMARY KEY, c_text TEXT, c_int INTEGER, "
    "c_bool INTEGER, c_double REAL, c_bytes BLOB, c_time INTEGER, c_uuid TEXT) STRICT",
    "CREATE TABLE itest_pairs (id INTEGER PRIMARY KEY, a TEXT, b TEXT) STRICT",
    "CREATE TABLE itest_rows (id INTEGER PRIMARY KEY, v TEXT NOT NULL) STRICT",
    "CREATE TABLE itest_unique (k TEXT PRIMARY KEY, v INTEGER NOT NULL) STRICT",
    "CREATE TABLE itest_parent (id INTEGER PRIMARY KEY) STRICT",
    "CREATE TABLE itest_child (id INTEGER PRIMARY KEY, "
    "parent INTEGER NOT NULL REFERENCES itest_parent(id)) STRICT",
    "CREATE TABLE itest_counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL) STRICT",
    "CREATE TABLE itest_ser (id INTEGER PRIMARY KEY, who INTEGER NOT NULL, v INTEGER NOT NULL) "
    "STRICT",
};

static const char *const ddl_pg[] = {
    "DROP TABLE IF EXISTS itest_child, itest_parent, itest_types, itest_pairs, itest_rows, "
    "itest_unique, itest_counter, itest_ser",
    "CREATE TABLE itest_types (id bigint PRIMARY KEY, c_text text, c_int bigint, "
    "c_bool boolean, c_double double precision, c_bytes bytea, c_time timestamptz, c_uuid uuid)",
    "CREATE TABLE itest_pairs (id bigint PRIMARY KEY, a text, b text)",
    "CREATE TABLE itest_rows (id bigint PRIMARY KEY, v text NOT NULL)",
    "CREATE TABLE itest_unique (k text PRIMARY KEY, v bigint NOT NULL)",
    "CREATE TABLE itest_parent (id bigint PRIMARY KEY)",
    "CREATE TABLE itest_child (id bigint PRIMARY KEY, "
    "parent bigint NOT NULL REFERENCES itest_parent(id))",
    "CREATE TABLE itest_counter (id bigint PRIMARY KEY, n bigint NOT NULL)",
    "CREATE TABLE itest_ser (id bigserial PRIMARY KEY, who bigint NOT NULL, v bigint NOT NULL)",
};

static int group_setup(void **state)
{
    const char *url = getenv("KEEL_TEST_DATABASE_URL");
    struct keel_db_conn *c;
    const char *const *ddl;
    size_t n, i;
    keel_status rc;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.env = KEEL_ENV_DEVELOPMENT;
    cfg.database_url = strdup(url);
    cfg.database_pool_size = 4;
    cfg.threads = 2;
    cfg.data_dir = strdup("/tmp");
    cfg.otel_service_name = strdup("keel");
    cfg.log_level = KEEL_CONFIG_LOG_WARN;
    rc = keel_db_open(&cfg, &db);
    if (rc != KEEL_OK) {
        fprintf(stderr, "keel_db_open(%s) failed: %s\n",
                strncmp(url, "sqlite:", 7) == 0 ? url : "postgres://...", keel_status_name(rc));
        return -1;
    }
    pg = strcmp(keel_db_dialect(db), "postgres") == 0;
    ddl = pg ? ddl_pg : ddl_sqlite;
    n = pg ? KEEL_ARRAY_LEN(ddl_pg) : KEEL_ARRAY_LEN(ddl_sqlite);
    if (keel_db_acquire(db, KEEL_DB_WRITE, NULL, &c) != KEEL_OK)
        return -1;
    for (i = 0; i < n; i++) {
        rc = keel_db_exec(c, ddl[i], NULL, 0, NULL);
        if (rc != KEEL_OK) {
            fprintf(stderr, "DDL failed (%s): %s\n  %s\n", keel_status_name(rc), keel_db_errmsg(c),
                    ddl[i]);
            keel_db_release(c);
            return -1;
        }
    }
    keel_db_release(c);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    keel_db_close(db);
    db = NULL;
    free(cfg.database_url);
    free(cfg.data_dir);
    free(cfg.otel_service_name);
    return 0;
}

/* --------------------------------------------------------------- tests */

static void test_dialect_and_role(void **state)
{
    const char *url = getenv("KEEL_TEST_DATABASE_URL");
    struct keel_db_conn *c;

    (void)state;
    assert_string_equal(keel_db_dialect(db),
                        strncmp(url, "sqlite:", 7) == 0 ? "sqlite" : "postgres");
    /* No replicas configured: every intent lands on the primary. */
    c = acquire(KEEL_DB_READ);
    assert_string_equal(keel_db_conn_role(c), "primary");
    keel_db_release(c);
    c = acquire(KEEL_DB_READ_PRIMARY);
    assert_string_equal(keel_db_conn_role(c), "primary");
    keel_db_release(c);
    c = acquire(KEEL_DB_WRITE);
    assert_string_equal(keel_db_conn_role(c), "primary");
    keel_db_release(c);
}

static const char INSERT_TYPES[] =
    "INSERT INTO itest_types (id, c_text, c_int, c_bool, c_double, c_bytes, c_time, c_uuid) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
static const char SELECT_TYPES[] = "SELECT c_text, c_int, c_bool, c_double, c_bytes, c_time, "
                                   "c_uuid FROM itest_types WHERE id = $1";

struct typed_row {
    const char *text;
    size_t text_len;
    int64_t i;
    bool b;
    double d;
    const unsigned char *bytes;
    size_t bytes_len;
    int64_t time_us;
    const char *uuid;
};

static void insert_typed(struct keel_db_conn *c, int64_t id, const struct typed_row *w)
{
    const struct keel_db_param p[] = {
        KEEL_DB_INT(id),          KEEL_DB_TEXTN(w->text, w->text_len),
        KEEL_DB_INT(w->i),        KEEL_DB_BOOL(w->b),
        KEEL_DB_DOUBLE(w->d),     KEEL_DB_BYTES(w->bytes, w->bytes_len),
        KEEL_DB_TIME(w->time_us), KEEL_DB_UUID(w->uuid),
    };
    int64_t affected = -1;

    CHECK_OK_C(c, keel_db_exec(c, INSERT_TYPES, p, KEEL_ARRAY_LEN(p), &affected));
    assert_int_equal(affected, 1);
}

static void check_typed(struct keel_db_conn *c, int64_t id, const struct typed_row *w)
{
    const struct keel_db_param p[] = {KEEL_DB_INT(id)};
    struct keel_db_rows *r = NULL;
    const char *s;
    const void *b;
    size_t len = 12345;
    char uuid[37];

    CHECK_OK_C(c, keel_db_query(c, SELECT_TYPES, p, 1, &r));
    assert_int_equal(keel_db_ncols(r), 7);
    CHECK_OK_C(c, keel_db_next(r));
    for (unsigned col = 0; col < 7; col++)
        if (keel_db_is_null(r, col))
            fail_msg("row %" PRId64 ": column %u read as NULL", id, col);

    s = keel_db_text(r, 0, &len);
    assert_non_null(s);
    if (len != w->text_len || memcmp(s, w->text, len) != 0)
        fail_msg("row %" PRId64 ": text came back as %zu bytes \"%.*s\", wrote %zu bytes \"%.*s\"",
                 id, len, (int)len, s, w->text_len, (int)w->text_len, w->text);
    assert_int_equal(s[len], '\0'); /* text is NUL-terminated for C callers */

    if (keel_db_int64(r, 1) != w->i)
        fail_msg("row %" PRId64 ": int64 came back as %" PRId64 ", wrote %" PRId64, id,
                 keel_db_int64(r, 1), w->i);
    assert_int_equal(keel_db_bool(r, 2), w->b);
    if (!(keel_db_double(r, 3) == w->d))
        fail_msg("row %" PRId64 ": double came back as %.17g, wrote %.17g", id,
                 keel_db_double(r, 3), w->d);

    len = 12345;
    b = keel_db_bytes(r, 4, &len);
    if (len != w->bytes_len || (len && (!b || memcmp(b, w->bytes, len) != 0)))
        fail_msg("row %" PRId64 ": bytes came back as %zu bytes, wrote %zu (or content differs)",
                 id, len, w->bytes_len);

    if (keel_db_time(r, 5) != w->time_us)
        fail_msg("row %" PRId64 ": time came back as %" PRId64 " us, wrote %" PRId64 " us", id,
                 keel_db_time(r, 5), w->time_us);

    memset(uuid, 'x', sizeof(uuid));
    assert_true(keel_db_uuid(r, 6, uuid));
    assert_int_equal(uuid[36], '\0');
    assert_string_equal(uuid, w->uuid);

    CHECK_RC_C(c, keel_db_next(r), KEEL_DONE);
    keel_db_rows_free(r);
}

static void test_types_round_trip(void **state)
{
    static unsigned char all_bytes[256];
    static const unsigned char nuls[] = {0, 1, 0, 0xff, 0, 'a', 0};
    static const char utf8[] = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac "
                               "\xf0\x9f\x8e\x89 'quoted' \"dq\" \\ ; -- $1";
    static const char prefix[] = "abcdefXYZ"; /* bound with an explicit length of 6 */
    const struct typed_row rows[] = {
        {utf8, sizeof(utf8) - 1, INT64_MAX, true, 3.141592653589793, nuls, sizeof(nuls),
         1700000000123456LL, "0190a5b4-7c3e-7def-8abc-0123456789ab"},
        {"", 0, INT64_MIN, false, -1.5e-300, all_bytes, sizeof(all_bytes), 0,
         "00000000-0000-0000-0000-000000000000"},
        {prefix, 6, 0, true, 1.7976931348623157e308, (const unsigned char *)"", 0,
         -86400000000LL + 1, "ffffffff-ffff-4fff-bfff-ffffffffffff"},
        {"x", 1, -1, false, DBL_MIN, nuls, 1,
         253402300799999999LL, /* 9999-12-31T23:59:59.999999Z */
         "6ba7b810-9dad-11d1-80b4-00c04fd430c8"},
        {"0.1", 3, 1, true, 0.1, nuls + 1, 1, 1, "123e4567-e89b-12d3-a456-426614174000"},
    };
    struct keel_db_conn *c;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(all_bytes); i++)
        all_bytes[i] = (unsigned char)i;
    c = acquire(KEEL_DB_WRITE);
    for (i = 0; i < KEEL_ARRAY_LEN(rows); i++)
        insert_typed(c, 100 + (int64_t)i, &rows[i]);
    for (i = 0; i < KEEL_ARRAY_LEN(rows); i++)
        check_typed(c, 100 + (int64_t)i, &rows[i]);
    keel_db_release(c);

    /* And through a different connection (a fresh statement cache). */
    c = acquire(KEEL_DB_READ_PRIMARY);
    for (i = 0; i < KEEL_ARRAY_LEN(rows); i++)
        check_typed(c, 100 + (int64_t)i, &rows[i]);
    keel_db_release(c);
}

static void test_nulls(void **state)
{
    const struct keel_db_param p[] = {KEEL_DB_INT(200), KEEL_DB_NULL(), KEEL_DB_NULL(),
                                      KEEL_DB_NULL(),   KEEL_DB_NULL(), KEEL_DB_NULL(),
                                      KEEL_DB_NULL(),   KEEL_DB_NULL()};
    const struct keel_db_param id[] = {KEEL_DB_INT(200)};
    struct keel_db_conn *c;
    struct keel_db_rows *r = NULL;
    char uuid[37];
    size_t len;

    (void)state;
    c = acquire(KEEL_DB_WRITE);
    CHECK_OK_C(c, keel_db_exec(c, INSERT_TYPES, p, KEEL_ARRAY_LEN(p), NULL));
    CHECK_OK_C(c, keel_db_query(c, SELECT_TYPES, id, 1, &r));
    CHECK_OK_C(c, keel_db_next(r));
    for (unsigned col = 0; col < 7; col++)
        if (!keel_db_is_null(r, col))
            fail_msg("column %u of an all-NULL row is not NULL", col);
    len = 99;
    assert_null(keel_db_text(r, 0, &len));
    assert_int_equal(keel_db_int64(r, 1), 0);
    assert_false(keel_db_bool(r, 2));
    assert_false(keel_db_uuid(r, 6, uuid));
    keel_db_rows_free(r);

    /* A NULL parameter compares as NULL (unknown), not as an empty value. */
    {
        const struct keel_db_param q[] = {KEEL_DB_NULL()};

        assert_int_equal(query_int(c, "SELECT count(*) FROM itest_types WHERE c_text = $1", q, 1),
                         0);
        assert_int_equal(
            query_int(c, "SELECT count(*) FROM itest_types WHERE id = 200 AND c_text IS NULL", NULL,
                      0),
            1);
    }
    /* The empty string is not NULL. */
    {
        const struct keel_db_param q[] = {KEEL_DB_TEXT("")};

        assert_int_equal(query_int(c, "SELECT count(*) FROM itest_types WHERE c_text = $1", q, 1),
                         1);
    }
    keel_db_release(c);
}

static void test_param_reuse_and_order(void **state)
{
    struct keel_db_conn *c;

    (void)state;
    c = acquire(KEEL_DB_WRITE);
    {
        /* $2 used twice, and before $1 in the text. */
        const struct keel_db_param p[] = {KEEL_DB_INT(1), KEEL_DB_TEXT("same")};

        CHECK_OK_C(c, keel_db_exec(c, "INSERT INTO itest_pairs (a, b, id) VALUES ($2, $2, $1)", p,
                                   2, NULL));
    }
    {
        const struct keel_db_param p[] = {KEEL_DB_TEXT("left"), KEEL_DB_INT(2),
                                          KEEL_DB_TEXT("right")};

        CHECK_OK_C(c, keel_db_exec(c, "INSERT INTO itest_pairs (id, b, a) VALUES ($2, $3, $1)", p,
                                   3, NULL));
    }
    {
        const struct keel_db_param p[] = {KEEL_DB_TEXT("same")};

        assert_int_equal(
            query_int(c, "SELECT count(*) FROM itest_pairs WHERE a = $1 AND b = $1 AND id = 1", p,
                      1),
            1);
    }
    {
        const struct keel_db_param p[] = {KEEL_DB_INT(2), KEEL_DB_TEXT("left"),
                                          KEEL_DB_TEXT("right")};

        assert_int_equal(
            query_int(c, "SELECT count(*) FROM itest_pairs WHERE id = $1 AND a = $2 AND b = $3", p,
                      3),
            1);
    }
    keel_db_release(c);
}

struct rows_arg {
    int n;
};

static keel_status insert_rows_tx(struct keel_db_conn *c, void *arg)
{
    struct rows_arg *a = arg;
    char v[32];
    keel_status rc;

    for (int i = 0; i < a->n; i++) {
        const struct keel_db_param p[] = {KEEL_DB_INT(i), KEEL_DB_TEXT(v)};

        snprintf(v, sizeof(v), "row-%d", i);
        rc = keel_db_exec(c, "INSERT INTO itest_rows (id, v) VALUES ($1, $2)", p, 2, NULL);
        if (rc != KEEL_OK)
            return rc;
    }
    return KEEL_OK;
}

static void test_many_rows(void **state)
{
    struct rows_arg a = {5000};
    struct keel_db_conn *c;
    struct keel_db_rows *r = NULL;
    char want[32];
    const char *s;
    size_t len;
    int i = 0;
    keel_status rc;

    (void)state;
    CHECK_OK(keel_db_transaction(db, NULL, insert_rows_tx, &a));
    c = acquire(KEEL_DB_READ);
    CHECK_OK_C(c, keel_db_query(c, "SELECT id, v FROM itest_rows ORDER BY id", NULL, 0, &r));
    assert_int_equal(keel_db_ncols(r), 2);
    while ((rc = keel_db_next(r)) == KEEL_OK) {
        snprintf(want, sizeof(want), "row-%d", i);
        if (keel_db_int64(r, 0) != i)
            fail_msg("row %d: id %" PRId64, i, keel_db_int64(r, 0));
        s = keel_db_text(r, 1, &len);
        if (!s || len != strlen(want) || memcmp(s, want, len) != 0)
            fail_msg("row %d: value \"%.*s\", expected \"%s\"", i, s ? (int)len : 6,
                     s ? s : "(null)", want);
        i++;
    }
    CHECK_RC_C(c, rc, KEEL_DONE);
    assert_int_equal(i, a.n);
    keel_db_rows_free(r);

    /* An empty result: DONE at once. */
    CHECK_OK_C(c, keel_db_query(c, "SELECT id, v FROM itest_rows WHERE id < 0", NULL, 0, &r));
    CHECK_RC_C(c, keel_db_next(r), KEEL_DONE);
    keel_db_rows_free(r);

    /* Freeing a result before reading all of it leaves the connection usable. */
    CHECK_OK_C(c, keel_db_query(c, "SELECT id, v FROM itest_rows ORDER BY id", NULL, 0, &r));
    CHECK_OK_C(c, keel_db_next(r));
    keel_db_rows_free(r);
    assert_int_equal(query_int(c, "SELECT count(*) FROM itest_rows", NULL, 0), a.n);
    keel_db_release(c);
}

static void test_affected_counts(void **state)
{
    struct keel_db_conn *c;
    int64_t affected;

    (void)state;
    c = acquire(KEEL_DB_WRITE);
    affected = -1;
    CHECK_OK_C(c, keel_db_exec(c, "UPDATE itest_rows SET v = 'low' WHERE id < $1",
                               (const struct keel_db_param[]){KEEL_DB_INT(10)}, 1, &affected));
    assert_int_equal(affected, 10);
    affected = -1;
    CHECK_OK_C(
        c, keel_db_exec(c, "UPDATE itest_rows SET v = 'none' WHERE id < 0", NULL, 0, &affected));
    assert_int_equal(affected, 0);
    affected = -1;
    CHECK_OK_C(c, keel_db_exec(c, "DELETE FROM itest_rows WHERE id >= $1",
                               (const struct keel_db_param[]){KEEL_DB_INT(4990)}, 1, &affected));
    assert_int_equal(affected, 10);
    /* affected may be NULL */
    CHECK_OK_C(c, keel_db_exec(c, "DELETE FROM itest_rows WHERE id = 4989", NULL, 0, NULL));
    assert_int_equal(count_where_id(c, "itest_rows", 4989), 0);
    keel_db_release(c);
}

static void test_conflicts(void **state)
{
    const struct keel_db_param p[] = {KEEL_DB_TEXT("k1"), KEEL_DB_INT(1)};
    struct keel_db_conn *c;

    (void)state;
    c = acquire(KEEL_DB_WRITE);
    CHECK_OK_C(c, keel_db_exec(c, "INSERT INTO itest_unique (k, v) VALUES ($1, $2)", p, 2, NULL));
    CHECK_RC_C(c, keel_db_exec(c, "INSERT INTO itest_unique (k, v) VALUES ($1, $2)", p, 2, NULL),
               KEEL_E_CONFLICT);
    assert_true(keel_db_errmsg(c) && keel_db_errmsg(c)[0]);
    /* Still usable after the error. */
    assert_int_equal(query_int(c, "SELECT count(*) FROM itest_unique", NULL, 0), 1);

    /* Foreign keys are enforced (SQLite: PRAGMA foreign_keys=ON) and map
     * to KEEL_E_CONFLICT too. */
    CHECK_RC_C(c,
               keel_db_exec(c, "INSERT INTO itest_child (id, parent) VALUES (1, $1)",
                            (const struct keel_db_param[]){KEEL_DB_INT(42)}, 1, NULL),
               KEEL_E_CONFLICT);
    exec_ok(c, "INSERT INTO itest_parent (id) VALUES (42)");
    CHECK_OK_C(c, keel_db_exec(c, "INSERT INTO itest_child (id, parent) VALUES (1, $1)",
                               (const struct keel_db_param[]){KEEL_DB_INT(42)}, 1, NULL));

    /* Other errors are KEEL_E_DB, and the connection survives them. */
    CHECK_RC_C(c, keel_db_exec(c, "INSERT INTO itest_no_such_table VALUES (1)", NULL, 0, NULL),
               KEEL_E_DB);
    CHECK_RC_C(c, keel_db_exec(c, "THIS IS NOT SQL", NULL, 0, NULL), KEEL_E_DB);
    assert_int_equal(query_int(c, "SELECT count(*) FROM itest_unique", NULL, 0), 1);
    keel_db_release(c);
}

/* ------------------------------------------------------- transactions */

struct tx_arg {
    const char *key;
    int64_t v;
    keel_status ret; /* what fn returns after its insert */
    int calls;
};

static keel_status insert_unique_tx(struct keel_db_conn *c, void *arg)
{
    struct tx_arg *a = arg;
    const struct keel_db_param p[] = {KEEL_DB_TEXT(a->key), KEEL_DB_INT(a->v)};
    keel_status rc;

    a->calls++;
    rc = keel_db_exec(c, "INSERT INTO itest_unique (k, v) VALUES ($1, $2)", p, 2, NULL);
    return rc != KEEL_OK ? rc : a->ret;
}

static int64_t count_key(const char *key)
{
    const struct keel_db_param p[] = {KEEL_DB_TEXT(key)};
    struct keel_db_conn *c = acquire(KEEL_DB_READ_PRIMARY);
    int64_t n = query_int(c, "SELECT count(*) FROM itest_unique WHERE k = $1", p, 1);

    keel_db_release(c);
    return n;
}

static void test_transactions(void **state)
{
    struct tx_arg a;
    struct keel_db_conn *c;

    (void)state;
    /* fn succeeds: committed. */
    a = (struct tx_arg){"tx-commit", 1, KEEL_OK, 0};
    CHECK_OK(keel_db_transaction(db, NULL, insert_unique_tx, &a));
    assert_int_equal(a.calls, 1);
    assert_int_equal(count_key("tx-commit"), 1);

    /* fn fails after writing: rolled back, its error returned, no retry. */
    a = (struct tx_arg){"tx-rollback", 1, KEEL_E_INVALID, 0};
    CHECK_RC(keel_db_transaction(db, NULL, insert_unique_tx, &a), KEEL_E_INVALID);
    assert_int_equal(a.calls, 1);
    assert_int_equal(count_key("tx-rollback"), 0);

    /* A constraint violation inside: KEEL_E_CONFLICT, not retried. */
    a = (struct tx_arg){"tx-commit", 2, KEEL_OK, 0};
    CHECK_RC(keel_db_transaction(db, NULL, insert_unique_tx, &a), KEEL_E_CONFLICT);
    assert_int_equal(a.calls, 1);

    /* Explicit begin / commit / rollback. */
    c = acquire(KEEL_DB_WRITE);
    CHECK_OK_C(c, keel_db_begin(c));
    CHECK_OK_C(c, keel_db_exec(c, "INSERT INTO itest_unique (k, v) VALUES ('manual-rb', 1)", NULL,
                               0, NULL));
    CHECK_OK_C(c, keel_db_rollback(c));
    CHECK_OK_C(c, keel_db_begin(c));
    CHECK_OK_C(c, keel_db_exec(c, "INSERT INTO itest_unique (k, v) VALUES ('manual-c', 1)", NULL, 0,
                               NULL));
    CHECK_OK_C(c, keel_db_commit(c));
    /* Released inside a transaction: rolled back. */
    CHECK_OK_C(c, keel_db_begin(c));
    CHECK_OK_C(c, keel_db_exec(c, "INSERT INTO itest_unique (k, v) VALUES ('released', 1)", NULL, 0,
                               NULL));
    keel_db_release(c);
    assert_int_equal(count_key("manual-rb"), 0);
    assert_int_equal(count_key("manual-c"), 1);
    assert_int_equal(count_key("released"), 0);

    /* The pool still works after all that (no slot leaked, no lock held):
     * more transactions than the pool has connections. */
    for (int i = 0; i < 20; i++) {
        char key[32];

        snprintf(key, sizeof(key), "after-%d", i);
        a = (struct tx_arg){key, i, KEEL_OK, 0};
        CHECK_OK(keel_db_transaction(db, NULL, insert_unique_tx, &a));
    }
}

/* The retry helper, deterministically (PostgreSQL): fn raises a
 * serialization failure (SQLSTATE 40001) on its first attempt(s). */
struct retry_arg {
    int fail_times;
    int calls;
};

static keel_status raise_40001_tx(struct keel_db_conn *c, void *arg)
{
    struct retry_arg *a = arg;

    a->calls++;
    if (a->calls <= a->fail_times)
        return keel_db_exec(c,
                            "DO $$ BEGIN RAISE EXCEPTION 'itest: forced serialization failure' "
                            "USING ERRCODE = '40001'; END $$",
                            NULL, 0, NULL);
    return keel_db_exec(c, "INSERT INTO itest_unique (k, v) VALUES ('retried', 1)", NULL, 0, NULL);
}

static void test_retry_helper_forced(void **state)
{
    struct retry_arg a = {1, 0};

    (void)state;
    if (!pg)
        skip();
    CHECK_OK(keel_db_transaction(db, NULL, raise_40001_tx, &a));
    assert_int_equal(a.calls, 2);
    assert_int_equal(count_key("retried"), 1);

    /* Always failing: gives up after a bounded number of attempts with an
     * error (not OK, and nothing committed). */
    a = (struct retry_arg){1000, 0};
    {
        keel_status rc = keel_db_transaction(db, NULL, raise_40001_tx, &a);

        if (rc == KEEL_OK)
            fail_msg("a transaction that always fails with 40001 returned KEEL_OK");
    }
    if (a.calls < 2 || a.calls > 6)
        fail_msg("always-failing transaction attempted %d times; expected up to 5 attempts (2..6)",
                 a.calls);
}

/* The retry helper under a real serialization conflict: two threads run
 * the same SERIALIZABLE read-then-insert (write skew) and meet after their
 * reads on the first attempt, so one of them must fail and be retried. On
 * SQLite the same code runs (write transactions are serialized, so there is
 * nothing to retry) and both must succeed too. */
struct ser_shared {
    struct rendezvous rv;
};

struct ser_arg {
    struct ser_shared *sh;
    int who;
    int calls;
    keel_status rc;
    bool rendezvous_timeout;
};

static keel_status write_skew_tx(struct keel_db_conn *c, void *arg)
{
    struct ser_arg *a = arg;
    struct keel_db_rows *r = NULL;
    int64_t sum;
    keel_status rc;

    a->calls++;
    if (pg) {
        rc = keel_db_exec(c, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", NULL, 0, NULL);
        if (rc != KEEL_OK)
            return rc;
    }
    rc = keel_db_query(c, "SELECT CAST(coalesce(sum(v), 0) AS BIGINT) FROM itest_ser", NULL, 0, &r);
    if (rc != KEEL_OK)
        return rc;
    rc = keel_db_next(r);
    sum = rc == KEEL_OK ? keel_db_int64(r, 0) : 0;
    keel_db_rows_free(r);
    if (rc != KEEL_OK)
        return rc;
    /* First attempt on PostgreSQL: wait until the other thread has read
     * too. (SQLite serializes write transactions: the other thread cannot
     * be inside one now, so waiting would only time out.) */
    if (pg && a->calls == 1 && !rendezvous_wait(&a->sh->rv, 5))
        a->rendezvous_timeout = true;
    {
        const struct keel_db_param q[] = {KEEL_DB_INT(a->who), KEEL_DB_INT(sum + 1)};

        return keel_db_exec(c, "INSERT INTO itest_ser (who, v) VALUES ($1, $2)", q, 2, NULL);
    }
}

static void *write_skew_thread(void *arg)
{
    struct ser_arg *a = arg;

    a->rc = keel_db_transaction(db, NULL, write_skew_tx, a);
    return NULL;
}

static void test_retry_helper_serialization_conflict(void **state)
{
    struct ser_shared sh = {.rv = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 2, 0}};
    struct ser_arg a[2] = {{&sh, 1, 0, KEEL_E_INTERNAL, false},
                           {&sh, 2, 0, KEEL_E_INTERNAL, false}};
    pthread_t t[2];
    struct keel_db_conn *c;

    (void)state;
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, write_skew_thread, &a[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        if (a[i].rc != KEEL_OK)
            fail_msg("thread %d: keel_db_transaction returned %s after %d attempt(s)", i + 1,
                     keel_status_name(a[i].rc), a[i].calls);
    if (pg) {
        assert_false(a[0].rendezvous_timeout || a[1].rendezvous_timeout);
        /* Both read an empty table and both inserted: SERIALIZABLE must
         * have failed one, which the helper retried. */
        if (a[0].calls + a[1].calls < 3)
            fail_msg("no retry happened (attempts %d + %d): the write skew was not detected or not "
                     "retried",
                     a[0].calls, a[1].calls);
    }
    c = acquire(KEEL_DB_READ_PRIMARY);
    assert_int_equal(query_int(c, "SELECT count(*) FROM itest_ser", NULL, 0), 2);
    /* Serial outcome: one row saw sum 0 (v = 1), the other saw 1 (v = 2). */
    assert_int_equal(query_int(c, "SELECT max(v) FROM itest_ser", NULL, 0), 2);
    keel_db_release(c);
}

/* SQLite: concurrent writers from 2 threads all succeed (no SQLITE_BUSY
 * leaks out); PostgreSQL: same, trivially. */
struct writer_arg {
    int who;
    int n;
    int failures;
    keel_status first_error;
};

static keel_status insert_one_tx(struct keel_db_conn *c, void *arg)
{
    const int64_t *id = arg;
    const struct keel_db_param p[] = {KEEL_DB_INT(*id), KEEL_DB_TEXT("w")};

    return keel_db_exec(c, "INSERT INTO itest_rows (id, v) VALUES ($1, $2)", p, 2, NULL);
}

static void *writer_thread(void *arg)
{
    struct writer_arg *a = arg;

    for (int i = 0; i < a->n; i++) {
        int64_t id = 100000 + a->who * 10000 + i;
        keel_status rc;

        if (i % 2 == 0) {
            rc = keel_db_transaction(db, NULL, insert_one_tx, &id);
        } else {
            /* Autocommit writes on a WRITE connection. */
            struct keel_db_conn *c = NULL;

            rc = keel_db_acquire(db, KEEL_DB_WRITE, NULL, &c);
            if (rc == KEEL_OK) {
                rc = insert_one_tx(c, &id);
                keel_db_release(c);
            }
        }
        if (rc != KEEL_OK && a->failures++ == 0)
            a->first_error = rc;
    }
    return NULL;
}

static void *reader_thread(void *arg)
{
    int *failures = arg;

    for (int i = 0; i < 200; i++) {
        struct keel_db_conn *c = NULL;
        struct keel_db_rows *r = NULL;
        keel_status rc = keel_db_acquire(db, KEEL_DB_READ, NULL, &c);

        if (rc == KEEL_OK) {
            rc = keel_db_query(c, "SELECT count(*) FROM itest_rows", NULL, 0, &r);
            if (rc == KEEL_OK) {
                rc = keel_db_next(r);
                keel_db_rows_free(r);
            }
            keel_db_release(c);
        }
        if (rc != KEEL_OK)
            (*failures)++;
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    struct writer_arg a[2] = {{1, 150, 0, KEEL_OK}, {2, 150, 0, KEEL_OK}};
    int read_failures = 0;
    pthread_t t[3];
    struct keel_db_conn *c;

    (void)state;
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer_thread, &a[i]), 0);
    assert_int_equal(pthread_create(&t[2], NULL, reader_thread, &read_failures), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        if (a[i].failures)
            fail_msg("writer %d: %d of %d writes failed, first with %s", i + 1, a[i].failures,
                     a[i].n, keel_status_name(a[i].first_error));
    assert_int_equal(read_failures, 0);
    c = acquire(KEEL_DB_READ_PRIMARY);
    assert_int_equal(query_int(c, "SELECT count(*) FROM itest_rows WHERE id >= 100000", NULL, 0),
                     300);
    keel_db_release(c);
}

/* 8 threads x 200 read-modify-write increments of one row, each inside
 * keel_db_transaction: exactly 1600 at the end. The read takes the row lock
 * on PostgreSQL (FOR UPDATE); SQLite write transactions are serialized. */
#define INC_THREADS 8
#define INC_EACH    200

struct inc_arg {
    int failures;
    keel_status first_error;
};

static keel_status increment_tx(struct keel_db_conn *c, void *arg)
{
    struct keel_db_rows *r = NULL;
    int64_t n;
    keel_status rc;

    (void)arg;
    rc = keel_db_query(c,
                       pg ? "SELECT n FROM itest_counter WHERE id = 1 FOR UPDATE"
                          : "SELECT n FROM itest_counter WHERE id = 1",
                       NULL, 0, &r);
    if (rc != KEEL_OK)
        return rc;
    rc = keel_db_next(r);
    n = rc == KEEL_OK ? keel_db_int64(r, 0) : -1;
    keel_db_rows_free(r);
    if (rc != KEEL_OK)
        return rc == KEEL_DONE ? KEEL_E_NOT_FOUND : rc;
    {
        const struct keel_db_param p[] = {KEEL_DB_INT(n + 1)};

        return keel_db_exec(c, "UPDATE itest_counter SET n = $1 WHERE id = 1", p, 1, NULL);
    }
}

static void *increment_thread(void *arg)
{
    struct inc_arg *a = arg;

    for (int i = 0; i < INC_EACH; i++) {
        keel_status rc = keel_db_transaction(db, NULL, increment_tx, NULL);

        if (rc != KEEL_OK && a->failures++ == 0)
            a->first_error = rc;
    }
    return NULL;
}

static void test_concurrent_increments(void **state)
{
    struct inc_arg a[INC_THREADS];
    pthread_t t[INC_THREADS];
    struct keel_db_conn *c;
    int failures = 0;
    double t0;

    (void)state;
    memset(a, 0, sizeof(a));
    c = acquire(KEEL_DB_WRITE);
    exec_ok(c, "INSERT INTO itest_counter (id, n) VALUES (1, 0)");
    keel_db_release(c);
    t0 = now_s();
    for (int i = 0; i < INC_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, increment_thread, &a[i]), 0);
    for (int i = 0; i < INC_THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < INC_THREADS; i++) {
        if (a[i].failures)
            fprintf(stderr, "thread %d: %d failed transactions, first %s\n", i, a[i].failures,
                    keel_status_name(a[i].first_error));
        failures += a[i].failures;
    }
    c = acquire(KEEL_DB_READ_PRIMARY);
    {
        int64_t n = query_int(c, "SELECT n FROM itest_counter WHERE id = 1", NULL, 0);

        fprintf(stderr, "# %d x %d increments: n = %" PRId64 " in %.2fs (%d failed)\n", INC_THREADS,
                INC_EACH, n, now_s() - t0, failures);
        assert_int_equal(failures, 0);
        assert_int_equal(n, INC_THREADS * INC_EACH);
    }
    keel_db_release(c);
}

/* ----------------------------------------------------- statement timeout */

static void test_statement_timeout(void **state)
{
    /* Bounded (about 10^8 rows), so a missing timeout fails the test
     * instead of hanging it for ever. */
    static const char slow_sqlite[] =
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100000000) "
        "SELECT count(*) FROM r";
    struct keel_db_conn *c;
    struct keel_db_rows *r = NULL;
    keel_status rc;
    double t0, dt;

    (void)state;
    c = acquire(KEEL_DB_READ);
    keel_db_set_timeout(c, 100);
    t0 = now_s();
    rc = keel_db_query(c, pg ? "SELECT pg_sleep(1)" : slow_sqlite, NULL, 0, &r);
    if (rc == KEEL_OK) {
        rc = keel_db_next(r);
        keel_db_rows_free(r);
    }
    dt = now_s() - t0;
    fprintf(stderr, "# slow statement with a 100 ms timeout: %s after %.3fs\n",
            keel_status_name(rc), dt);
    CHECK_RC_C(c, rc, KEEL_E_TIMEOUT);
    if (dt > 0.9)
        fail_msg("the statement was stopped only after %.3fs (timeout 100 ms)", dt);

    /* The connection is still usable, with the timeout still set... */
    assert_int_equal(query_int(c, "SELECT CAST(7 AS BIGINT)", NULL, 0), 7);
    /* ...and with it lifted. */
    keel_db_set_timeout(c, 0);
    assert_int_equal(
        query_int(c, "SELECT count(*) FROM itest_unique WHERE k = 'tx-commit'", NULL, 0), 1);
    keel_db_set_timeout(c, 5000);
    keel_db_release(c);

    /* And the pool hands out working connections afterwards. */
    for (int i = 0; i < 8; i++) {
        c = acquire(KEEL_DB_READ);
        assert_int_equal(query_int(c, "SELECT CAST(1 AS BIGINT)", NULL, 0), 1);
        keel_db_release(c);
    }

    /* The timeout inside a transaction: the error is returned, the
     * transaction rolled back, the next one works. */
    {
        struct tx_arg a = {"after-timeout", 1, KEEL_OK, 0};

        CHECK_OK(keel_db_transaction(db, NULL, insert_unique_tx, &a));
        assert_int_equal(count_key("after-timeout"), 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dialect_and_role),
        cmocka_unit_test(test_types_round_trip),
        cmocka_unit_test(test_nulls),
        cmocka_unit_test(test_param_reuse_and_order),
        cmocka_unit_test(test_many_rows),
        cmocka_unit_test(test_affected_counts),
        cmocka_unit_test(test_conflicts),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_retry_helper_forced),
        cmocka_unit_test(test_retry_helper_serialization_conflict),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_concurrent_increments),
        cmocka_unit_test(test_statement_timeout),
    };

    if (!getenv("KEEL_TEST_DATABASE_URL") || !getenv("KEEL_TEST_DATABASE_URL")[0]) {
        fprintf(stderr, "itest_db: KEEL_TEST_DATABASE_URL is not set; skipping "
                        "(tests/integration/run.py sets it)\n");
        return 77;
    }
    if (sodium_init() < 0)
        return 1;
    keel_log_init(KEEL_LOG_WARN, STDERR_FILENO);
    return cmocka_run_group_tests_name(strncmp(getenv("KEEL_TEST_DATABASE_URL"), "sqlite:", 7) == 0
                                           ? "itest_db (sqlite)"
                                           : "itest_db (postgres)",
                                       tests, group_setup, group_teardown);
}
