/*
 * test_db_pg.c - unit tests for src/db/db_pg.c, the PostgreSQL driver,
 * through its vtable (keel__db_pg) against a real server.
 *
 * Needs KEEL_TEST_PG_URL (a libpq URI of a PostgreSQL 15 database whose user
 * may create tables and terminate its own backends); without it the test
 * exits 77, which meson reports as skipped. Covered: every bound and read
 * type, NULLs, a reused $1, the prepared-statement cache (reuse, eviction,
 * statements the server dropped or can no longer plan), SQLSTATE mapping,
 * statement timeouts, serialization failures, killed connections and
 * commits, pipelining (deferred BEGIN and writes, failures that stop the
 * COMMIT, un-cached Parses, batches longer than a pipeline), WAL positions, passwords kept out of
 * connect errors, and a multi-host URI whose first host is down.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/core.h"
#include "keel/db.h"

#include "test.h"

/* The driver itself (both of its files), so the test does not depend on
 * the archive's weak reference to it (db_int.h) and can reach its statics. */
#include "db/db_pg.c"
#include "db/db_pg_types.c"

#define DRV  (&keel__db_pg)
#define NOPS ((const struct keel_db_param *)NULL)

static const char *url;

static void *xconnect_ro(bool read_only)
{
    char err[256];
    void *h = NULL;
    keel_status rc = DRV->connect(url, read_only, &h, err, sizeof(err));

    if (rc != KEEL_OK)
        fail_msg("connect: %s: %s", keel_status_name(rc), err);
    return h;
}

static void *xconnect(void)
{
    return xconnect_ro(false);
}

/* Runs a statement that must succeed. */
static void xexec(void *h, const char *sql)
{
    keel_status rc = DRV->run(h, sql, NOPS, 0, NULL, NULL);

    if (rc != KEEL_OK)
        fail_msg("%s: %s: %s", sql, keel_status_name(rc), DRV->errmsg(h));
}

/* Runs a query that must succeed and positions on its first row. */
static void
xquery(void *h, const char *sql, const struct keel_db_param *p, unsigned n, struct keel_db_rows *r)
{
    keel_status rc;

    memset(r, 0, sizeof(*r));
    rc = DRV->run(h, sql, p, n, r, NULL);
    if (rc != KEEL_OK)
        fail_msg("%s: %s: %s", sql, keel_status_name(rc), DRV->errmsg(h));
    assert_int_equal(DRV->next(r), KEEL_OK);
}

/* The int8 value of a one-row, one-column query. */
static int64_t scalar(void *h, const char *sql, const struct keel_db_param *p, unsigned n)
{
    struct keel_db_rows r;
    int64_t v;

    xquery(h, sql, p, n, &r);
    v = DRV->int64(&r, 0);
    assert_int_equal(DRV->next(&r), KEEL_DONE);
    DRV->rows_free(&r);
    return v;
}

static keel_status try_exec(void *h, const char *sql, const struct keel_db_param *p, unsigned n)
{
    return DRV->run(h, sql, p, n, NULL, NULL);
}

static void assert_text(const struct keel_db_rows *r, unsigned col, const char *want)
{
    size_t len = 0;
    const char *t = DRV->text(r, col, &len);

    if (!t || len != strlen(want) || memcmp(t, want, len) != 0)
        fail_msg("column %u: got \"%.*s\", want \"%s\"", col, t ? (int)len : 6, t ? t : "(null)",
                 want);
}

/* ------------------------------------------------------------- types */

static void test_types_round_trip(void **state)
{
    void *h = xconnect();
    static const unsigned char blob[] = {0, 1, 2, 0xff, 0, 'x'};
    const int64_t ts = INT64_C(1700000000123456); /* 2023-11-14T22:13:20.123456Z */
    struct keel_db_param p[] = {
        KEEL_DB_INT(-32768),
        KEEL_DB_INT(2147483647),
        KEEL_DB_INT(INT64_MIN),
        KEEL_DB_BOOL(true),
        KEEL_DB_DOUBLE(1.5),
        KEEL_DB_DOUBLE(0.1),
        KEEL_DB_TEXT("-12345678901234567890.000120"),
        KEEL_DB_TEXT("h\xc3\xa9llo"),
        KEEL_DB_TEXTN("varcharXXX", 7),
        KEEL_DB_BYTES(blob, sizeof(blob)),
        KEEL_DB_UUID("0190A3C4-5B6E-7F80-9A1B-2C3D4E5F6A7B"),
        KEEL_DB_TIME(ts),
        KEEL_DB_TIME(ts),
        KEEL_DB_TEXT("2024-02-29"),
        KEEL_DB_TEXT("{\"a\": [1, 2]}"),
    };
    struct keel_db_rows r;
    const void *b;
    size_t len;

    (void)state;
    xexec(h, "CREATE TEMP TABLE ty (i2 int2, i4 int4, i8 int8, b bool, f4 float4, f8 float8, "
             "n numeric, t text, vc varchar(20), by bytea, u uuid, ts timestamptz, "
             "tsn timestamp, d date, j jsonb)");
    assert_int_equal(try_exec(h,
                              "INSERT INTO ty VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                              "$11, $12, $13, $14, $15)",
                              p, KEEL_ARRAY_LEN(p)),
                     KEEL_OK);
    xquery(h, "SELECT * FROM ty", NOPS, 0, &r);
    assert_int_equal(r.ncols, 15);
    assert_int_equal(DRV->int64(&r, 0), -32768);
    assert_text(&r, 0, "-32768");
    assert_int_equal(DRV->int64(&r, 1), 2147483647);
    assert_true(DRV->int64(&r, 2) == INT64_MIN);
    assert_text(&r, 2, "-9223372036854775808");
    assert_true(DRV->boolean(&r, 3));
    assert_text(&r, 3, "true");
    assert_true(DRV->dbl(&r, 4) == 1.5);
    assert_text(&r, 4, "1.5");
    assert_true(DRV->dbl(&r, 5) == 0.1);
    assert_text(&r, 5, "0.1");
    assert_text(&r, 6, "-12345678901234567890.000120");
    assert_true(DRV->dbl(&r, 6) == -12345678901234567890.000120);
    assert_text(&r, 7, "h\xc3\xa9llo");
    assert_text(&r, 8, "varchar");
    b = DRV->bytes(&r, 9, &len);
    assert_int_equal(len, sizeof(blob));
    assert_memory_equal(b, blob, sizeof(blob));
    assert_text(&r, 10, "0190a3c4-5b6e-7f80-9a1b-2c3d4e5f6a7b");
    assert_true(DRV->time(&r, 11) == ts);
    assert_text(&r, 11, "2023-11-14T22:13:20.123456Z");
    assert_true(DRV->time(&r, 12) == ts); /* TimeZone is UTC */
    assert_text(&r, 12, "2023-11-14T22:13:20.123456");
    assert_true(DRV->time(&r, 13) == INT64_C(1709164800000000));
    assert_text(&r, 13, "2024-02-29");
    assert_text(&r, 14, "{\"a\": [1, 2]}");
    assert_false(DRV->is_null(&r, 14));
    assert_int_equal(DRV->next(&r), KEEL_DONE);
    DRV->rows_free(&r);
    DRV->close(h);
}

static void test_values_from_the_server(void **state)
{
    void *h = xconnect();
    struct keel_db_param inf = KEEL_DB_TIME(INT64_MIN);
    struct keel_db_rows r;

    (void)state;
    xquery(h,
           "SELECT 0::numeric, 0.000123::numeric, '1e30'::numeric, 'NaN'::numeric, 10000::numeric, "
           "'infinity'::timestamptz, '1969-12-31 23:59:59.999999+00'::timestamptz, "
           "'1970-01-01'::date, 'a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8'::uuid, 'x'::char(3), "
           "3::int2 = 3, 9223372036854775807::int8, 1.1::float4, -1.25::float4, 'F'::text, "
           "$1, $1 = '-infinity'::timestamptz",
           &inf, 1, &r);
    assert_text(&r, 0, "0");
    assert_text(&r, 1, "0.000123");
    assert_text(&r, 2, "1000000000000000000000000000000");
    assert_text(&r, 3, "NaN");
    assert_text(&r, 4, "10000");
    assert_int_equal(DRV->int64(&r, 4), 10000);
    assert_true(DRV->time(&r, 5) == INT64_MAX);
    assert_text(&r, 5, "infinity");
    assert_true(DRV->time(&r, 6) == -1);
    assert_text(&r, 6, "1969-12-31T23:59:59.999999Z");
    assert_true(DRV->time(&r, 7) == 0);
    assert_true(DRV->time(&r, 15) == INT64_MIN);
    assert_text(&r, 15, "-infinity");
    assert_true(DRV->boolean(&r, 16));
    assert_text(&r, 8, "a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8");
    assert_text(&r, 9, "x  ");
    assert_true(DRV->boolean(&r, 10));
    assert_true(DRV->int64(&r, 11) == INT64_MAX);
    assert_text(&r, 12, "1.1");
    assert_true(DRV->dbl(&r, 12) == (double)1.1f);
    assert_true(DRV->dbl(&r, 13) == -1.25);
    assert_text(&r, 13, "-1.25");
    assert_false(DRV->boolean(&r, 14));
    DRV->rows_free(&r);
    DRV->close(h);
}

static void test_nulls(void **state)
{
    void *h = xconnect();
    struct keel_db_param pn[] = {KEEL_DB_NULL(), KEEL_DB_TEXT(NULL), KEEL_DB_UUID(NULL)};
    struct keel_db_param pi = KEEL_DB_INT(7);
    struct keel_db_param pe = KEEL_DB_BYTES(NULL, 0);
    struct keel_db_rows r;
    size_t len = 99;

    (void)state;
    xexec(h, "CREATE TEMP TABLE nu (a int4, b text, c uuid)");
    assert_int_equal(try_exec(h, "INSERT INTO nu VALUES ($1, $2, $3)", pn, 3), KEEL_OK);
    xquery(h, "SELECT a, b, c, NULL::timestamptz FROM nu", NOPS, 0, &r);
    assert_true(DRV->is_null(&r, 0) && DRV->is_null(&r, 1) && DRV->is_null(&r, 2));
    assert_true(DRV->is_null(&r, 3));
    assert_int_equal(DRV->int64(&r, 0), 0);
    assert_null(DRV->text(&r, 1, &len));
    assert_int_equal(len, 0);
    DRV->rows_free(&r);
    /* The same SQL bound with a NULL first (prepared with an unknown type
     * the server resolves to int4), then with an int8. */
    assert_int_equal(scalar(h, "SELECT count(*) FROM nu WHERE a IS NOT DISTINCT FROM $1", pn, 1),
                     1);
    assert_int_equal(scalar(h, "SELECT count(*) FROM nu WHERE a IS NOT DISTINCT FROM $1", &pi, 1),
                     0);
    assert_int_equal(scalar(h, "SELECT count(*) FROM nu WHERE a IS NOT DISTINCT FROM $1", pn, 1),
                     1);
    /* Empty bytes with a NULL pointer are empty, not NULL. */
    xquery(h, "SELECT $1::bytea IS NULL, length($1)", &pe, 1, &r);
    assert_false(DRV->boolean(&r, 0));
    assert_int_equal(DRV->int64(&r, 1), 0);
    DRV->rows_free(&r);
    DRV->close(h);
}

static void test_param_reused(void **state)
{
    void *h = xconnect();
    struct keel_db_param p[] = {KEEL_DB_INT(21), KEEL_DB_TEXT("ab")};
    struct keel_db_rows r;

    (void)state;
    xquery(h, "SELECT $1 + $1, $2 || $2 || $1::text", p, 2, &r);
    assert_int_equal(DRV->int64(&r, 0), 42);
    assert_text(&r, 1, "abab21");
    DRV->rows_free(&r);
    DRV->close(h);
}

/* int8 parameters against int4 columns, and text the server types from its
 * context (docs/internals/storage-postgres.md). */
static void test_param_inference(void **state)
{
    void *h = xconnect();
    struct keel_db_param p[] = {KEEL_DB_INT(5), KEEL_DB_TEXT("6"),
                                KEEL_DB_TEXT("a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8")};
    struct keel_db_param big = KEEL_DB_INT(INT64_C(1) << 40);
    struct keel_db_param five = KEEL_DB_INT(5);

    (void)state;
    xexec(h, "CREATE TEMP TABLE inf (a int4, b int4, u uuid)");
    assert_int_equal(try_exec(h, "INSERT INTO inf VALUES ($1, $2, $3)", p, 3), KEEL_OK);
    assert_int_equal(scalar(h, "SELECT b FROM inf WHERE a = $1", &five, 1), 6);
    assert_int_equal(try_exec(h, "INSERT INTO inf (a) VALUES ($1)", &big, 1), KEEL_E_INVALID);
    assert_int_equal(scalar(h, "SELECT count(*) FROM inf WHERE u = $1", &p[2], 1), 1);
    DRV->close(h);
}

static void test_text_params(void **state)
{
    void *h = xconnect();
    const char buf[] = {'a', 'b', 'c', 'd'}; /* not NUL-terminated */
    const char nul[] = {'a', '\0', 'b'};
    struct keel_db_param p = KEEL_DB_TEXTN(buf, 3);
    struct keel_db_param q = KEEL_DB_TEXTN(nul, 3);
    struct keel_db_param u = KEEL_DB_UUID("{a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8}");
    struct keel_db_rows r;
    char *short_id;

    (void)state;
    xquery(h, "SELECT $1::text", &p, 1, &r);
    assert_text(&r, 0, "abc");
    DRV->rows_free(&r);
    assert_int_equal(try_exec(h, "SELECT $1::text", &q, 1), KEEL_E_INVALID);
    /* A UUID spelled another way goes as text; the server accepts it. */
    u.len = strlen(u.v.s);
    xquery(h, "SELECT $1", &u, 1, &r);
    assert_text(&r, 0, "a1a2a3a4-b1b2-c1c2-d1d2-d3d4d5d6d7d8");
    DRV->rows_free(&r);
    u = KEEL_DB_UUID("not-a-uuid-not-a-uuid-not-a-uuid-123");
    assert_int_equal(try_exec(h, "SELECT $1", &u, 1), KEEL_E_INVALID);
    /* Shorter than the 36 bytes KEEL_DB_UUID claims: read up to its NUL
     * only (on the heap, so ASan would see an overread). */
    short_id = strdup("abc");
    assert_non_null(short_id);
    u = KEEL_DB_UUID(short_id);
    assert_int_equal(try_exec(h, "SELECT $1", &u, 1), KEEL_E_INVALID);
    free(short_id);
    assert_false(DRV->broken(h));
    DRV->close(h);
}

/* ------------------------------------------------ the statement cache */

static int64_t prepared_count(void *h, const char *sql)
{
    struct keel_db_param p = KEEL_DB_TEXT(sql);

    return scalar(h, "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", &p, 1);
}

static void test_prepared_cache(void **state)
{
    void *h = xconnect();
    char sql[64];
    int i;

    (void)state;
    assert_int_equal(scalar(h, "SELECT 42", NOPS, 0), 42);
    assert_int_equal(scalar(h, "SELECT 42", NOPS, 0), 42);
    assert_int_equal(prepared_count(h, "SELECT 42"), 1);
    /* 300 distinct statements: the oldest are deallocated on the server. */
    for (i = 0; i < 300; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        assert_int_equal(scalar(h, sql, NOPS, 0), i);
    }
    assert_in_range(scalar(h, "SELECT count(*) FROM pg_prepared_statements", NOPS, 0),
                    STMT_MAX - STMT_MAX / 4, STMT_MAX + 1);
    assert_int_equal(prepared_count(h, "SELECT 42"), 0);
    assert_int_equal(scalar(h, "SELECT 42", NOPS, 0), 42);
    /* The server dropped every statement: prepared again, transparently. */
    xexec(h, "DEALLOCATE ALL");
    assert_int_equal(scalar(h, "SELECT 42", NOPS, 0), 42);
    DRV->close(h);
}

static void test_plan_changed(void **state)
{
    void *h = xconnect();
    struct keel_db_rows r;

    (void)state;
    xexec(h, "CREATE TEMP TABLE pc (a int4)");
    xexec(h, "INSERT INTO pc VALUES (1)");
    xquery(h, "SELECT * FROM pc", NOPS, 0, &r);
    assert_int_equal(r.ncols, 1);
    DRV->rows_free(&r);
    xexec(h, "ALTER TABLE pc ADD COLUMN b int4 DEFAULT 2");
    /* "cached plan must not change result type" (0A000): prepared again. */
    xquery(h, "SELECT * FROM pc", NOPS, 0, &r);
    assert_int_equal(r.ncols, 2);
    assert_int_equal(DRV->int64(&r, 1), 2);
    DRV->rows_free(&r);
    DRV->close(h);
}

/* ---------------------------------------------------------- errors */

static void test_error_mapping(void **state)
{
    void *h = xconnect();
    struct keel_db_param one = KEEL_DB_INT(1);
    struct keel_db_param two = KEEL_DB_INT(2);
    struct keel_db_param secret = KEEL_DB_TEXT("dup-value-secret");
    int64_t n = -1;

    (void)state;
    xexec(h, "CREATE TEMP TABLE par (id int8 PRIMARY KEY)");
    xexec(h, "CREATE TEMP TABLE chi (id int8 REFERENCES par, c int4 CHECK (c > 0) NOT NULL "
             "DEFAULT 1, s text UNIQUE)");
    assert_int_equal(DRV->run(h, "INSERT INTO par VALUES ($1)", &one, 1, NULL, &n), KEEL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(try_exec(h, "INSERT INTO par VALUES ($1)", &one, 1), KEEL_E_CONFLICT);
    assert_non_null(strstr(DRV->errmsg(h), "23505"));
    assert_int_equal(try_exec(h, "INSERT INTO chi (id) VALUES ($1)", &two, 1), KEEL_E_CONFLICT);
    assert_int_equal(try_exec(h, "INSERT INTO chi (id, c) VALUES (1, 0)", NOPS, 0), KEEL_E_INVALID);
    assert_int_equal(try_exec(h, "INSERT INTO chi (id, c) VALUES (1, NULL)", NOPS, 0),
                     KEEL_E_INVALID);
    assert_int_equal(try_exec(h, "SELECT 1 / 0", NOPS, 0), KEEL_E_INVALID);
    assert_int_equal(try_exec(h, "SELECT 'x'::int4", NOPS, 0), KEEL_E_INVALID);
    /* No row values in the message (they may be personal data). */
    assert_int_equal(try_exec(h, "INSERT INTO chi (s) VALUES ($1)", &secret, 1), KEEL_OK);
    assert_int_equal(try_exec(h, "INSERT INTO chi (s) VALUES ($1)", &secret, 1), KEEL_E_CONFLICT);
    assert_null(strstr(DRV->errmsg(h), "dup-value-secret"));
    assert_int_equal(try_exec(h, "SELEC 1", NOPS, 0), KEEL_E_DB);
    assert_false(DRV->retryable(h));
    assert_int_equal(try_exec(h, "", NOPS, 0), KEEL_E_INVALID);
    assert_false(DRV->broken(h));
    assert_int_equal(DRV->run(h, "UPDATE par SET id = id + 10", NOPS, 0, NULL, &n), KEEL_OK);
    assert_int_equal(n, 1);
    DRV->close(h);
}

static void test_statement_timeout(void **state)
{
    void *h = xconnect();

    (void)state;
    DRV->set_timeout(h, 100);
    assert_int_equal(try_exec(h, "SELECT pg_sleep(2)", NOPS, 0), KEEL_E_TIMEOUT);
    assert_false(DRV->broken(h));
    DRV->set_timeout(h, 5000);
    assert_int_equal(try_exec(h, "SELECT pg_sleep(0.2)", NOPS, 0), KEEL_OK);
    /* A SET inside a transaction that rolls back is undone by the server;
     * the driver must not believe it still holds. */
    assert_int_equal(DRV->begin(h, true), KEEL_OK);
    DRV->set_timeout(h, 100);
    assert_int_equal(DRV->rollback(h), KEEL_OK);
    DRV->set_timeout(h, 100);
    assert_int_equal(try_exec(h, "SELECT pg_sleep(2)", NOPS, 0), KEEL_E_TIMEOUT);
    DRV->close(h);
}

static void test_serialization_failure(void **state)
{
    void *a = xconnect(), *b = xconnect();

    (void)state;
    xexec(a, "DROP TABLE IF EXISTS test_db_pg_ser");
    xexec(a, "CREATE TABLE test_db_pg_ser (id int4 PRIMARY KEY, v int4)");
    xexec(a, "INSERT INTO test_db_pg_ser VALUES (1, 0)");
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    xexec(a, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
    assert_int_equal(scalar(a, "SELECT v FROM test_db_pg_ser WHERE id = 1", NOPS, 0), 0);
    xexec(b, "UPDATE test_db_pg_ser SET v = v + 1 WHERE id = 1");
    assert_int_equal(try_exec(a, "UPDATE test_db_pg_ser SET v = v + 1 WHERE id = 1", NOPS, 0),
                     KEEL_E_DB);
    assert_true(DRV->retryable(a));
    assert_false(DRV->broken(a));
    assert_non_null(strstr(DRV->errmsg(a), "40001"));
    /* COMMIT of the failed transaction rolls back. */
    assert_int_equal(DRV->commit(a), KEEL_E_DB);
    assert_int_equal(DRV->rollback(a), KEEL_OK);
    xexec(a, "DROP TABLE test_db_pg_ser");
    DRV->close(a);
    DRV->close(b);
}

static int64_t backend_pid(void *h)
{
    return scalar(h, "SELECT pg_backend_pid()", NOPS, 0);
}

static void kill_backend(void *killer, int64_t pid)
{
    struct keel_db_param p = KEEL_DB_INT(pid);

    assert_true(scalar(killer, "SELECT pg_terminate_backend($1::int4, 5000)::int4", &p, 1) == 1);
}

static void test_connection_killed(void **state)
{
    void *a = xconnect(), *b = xconnect();

    (void)state;
    assert_int_equal(DRV->ping(a), KEEL_OK);
    kill_backend(b, backend_pid(a));
    assert_int_equal(try_exec(a, "SELECT 1", NOPS, 0), KEEL_E_UNAVAILABLE);
    assert_true(DRV->broken(a));
    assert_int_equal(DRV->ping(a), KEEL_E_UNAVAILABLE);
    assert_int_equal(DRV->rollback(a), KEEL_OK);
    DRV->close(a);

    /* Lost during COMMIT: the outcome is unknown. */
    a = xconnect();
    xexec(a, "CREATE TEMP TABLE k (a int4)");
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    xexec(a, "INSERT INTO k VALUES (1)");
    kill_backend(b, backend_pid(a));
    assert_int_equal(DRV->commit(a), KEEL_E_UNAVAILABLE);
    assert_true(DRV->broken(a));
    assert_int_equal(DRV->rollback(a), KEEL_OK);
    DRV->close(a);
    DRV->close(b);
}

/* ------------------------------------------------------- pipelining */

static void xdefer(void *h, const char *sql, const struct keel_db_param *p, unsigned n)
{
    keel_status rc = DRV->defer(h, sql, p, n);

    if (rc != KEEL_OK)
        fail_msg("defer %s: %s: %s", sql, keel_status_name(rc), DRV->errmsg(h));
}

static void test_pipeline(void **state)
{
    void *a = xconnect(), *b = xconnect();
    struct keel_db_param p;
    char sql[96];
    int64_t pid;
    int i;

    (void)state;
    xexec(a, "DROP TABLE IF EXISTS test_db_pg_pipe");
    xexec(a, "CREATE TABLE test_db_pg_pipe (id int8 PRIMARY KEY)");

    /* An empty transaction sends nothing, and leaves none open. */
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    assert_int_equal(DRV->commit(a), KEEL_OK);
    assert_int_equal(PQtransactionStatus(((struct pg_conn *)a)->pg), PQTRANS_IDLE);

    /* Deferred writes are in the transaction: unseen by others until the
     * COMMIT, seen by the transaction's next statement. */
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    for (i = 1; i <= 3; i++) {
        p = KEEL_DB_INT(i);
        xdefer(a, "INSERT INTO test_db_pg_pipe VALUES ($1)", &p, 1);
    }
    assert_true(((struct pg_conn *)a)->piped);
    assert_int_equal(scalar(a, "SELECT count(*) FROM test_db_pg_pipe", NOPS, 0), 3);
    assert_false(((struct pg_conn *)a)->piped);
    p = KEEL_DB_INT(4);
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES ($1)", &p, 1);
    assert_int_equal(scalar(b, "SELECT count(*) FROM test_db_pg_pipe", NOPS, 0), 0);
    assert_int_equal(DRV->commit(a), KEEL_OK);
    assert_int_equal(scalar(b, "SELECT count(*) FROM test_db_pg_pipe", NOPS, 0), 4);

    /* A failed deferred write fails the transaction: every later call
     * returns its error, and the COMMIT queued behind it never runs. */
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    p = KEEL_DB_INT(5);
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES ($1)", &p, 1);
    p = KEEL_DB_INT(1); /* a duplicate */
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES ($1)", &p, 1);
    p = KEEL_DB_INT(6);
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES ($1)", &p, 1);
    assert_int_equal(try_exec(a, "SELECT 1", NOPS, 0), KEEL_E_CONFLICT);
    assert_non_null(strstr(DRV->errmsg(a), "23505"));
    assert_int_equal(try_exec(a, "SELECT 1", NOPS, 0), KEEL_E_CONFLICT);
    assert_int_equal(DRV->defer(a, "SELECT 1", NOPS, 0), KEEL_E_CONFLICT);
    assert_int_equal(DRV->commit(a), KEEL_E_CONFLICT);
    assert_int_equal(DRV->rollback(a), KEEL_OK);
    assert_int_equal(scalar(b, "SELECT count(*) FROM test_db_pg_pipe", NOPS, 0), 4);
    assert_int_equal(scalar(a, "SELECT count(*) FROM test_db_pg_pipe", NOPS, 0), 4);

    /* The same with the COMMIT in the failed batch. */
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    p = KEEL_DB_INT(7);
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES ($1)", &p, 1);
    p = KEEL_DB_INT(2);
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES ($1)", &p, 1);
    assert_int_equal(DRV->commit(a), KEEL_E_CONFLICT);
    assert_false(DRV->retryable(a));
    assert_int_equal(DRV->rollback(a), KEEL_OK);
    assert_int_equal(scalar(b, "SELECT count(*) FROM test_db_pg_pipe", NOPS, 0), 4);

    /* A statement whose Parse fails, and a new one parsed after it in the
     * same batch (so never parsed): neither stays cached. */
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES (no such thing)", NOPS, 0);
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES (8)", NOPS, 0);
    assert_int_equal(DRV->commit(a), KEEL_E_DB);
    assert_int_equal(DRV->rollback(a), KEEL_OK);
    assert_int_equal(prepared_count(a, "INSERT INTO test_db_pg_pipe VALUES (8)"), 0);
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES (8)", NOPS, 0);
    assert_int_equal(DRV->commit(a), KEEL_OK);
    assert_int_equal(scalar(b, "SELECT count(*) FROM test_db_pg_pipe", NOPS, 0), 5);

    /* More than one pipeline holds: read in batches on the way. */
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    for (i = 100; i < 100 + 3 * PIPE_MAX; i++) {
        p = KEEL_DB_INT(i);
        snprintf(sql, sizeof(sql), "INSERT INTO test_db_pg_pipe VALUES ($1) -- %d", i % 7);
        xdefer(a, sql, &p, 1);
        assert_true(((struct pg_conn *)a)->nq <= PIPE_MAX);
    }
    assert_int_equal(DRV->commit(a), KEEL_OK);
    assert_int_equal(scalar(b, "SELECT count(*) FROM test_db_pg_pipe", NOPS, 0), 5 + 3 * PIPE_MAX);

    /* A failed statement of the caller's is reported like one run alone:
     * a savepoint still recovers the transaction. */
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    xexec(a, "SAVEPOINT s");
    p = KEEL_DB_INT(3);
    assert_int_equal(try_exec(a, "INSERT INTO test_db_pg_pipe VALUES ($1)", &p, 1),
                     KEEL_E_CONFLICT);
    assert_int_equal(try_exec(a, "SELECT 1", NOPS, 0), KEEL_E_DB); /* 25P02: aborted */
    xexec(a, "ROLLBACK TO SAVEPOINT s");
    p = KEEL_DB_INT(10);
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES ($1)", &p, 1);
    assert_int_equal(DRV->commit(a), KEEL_OK);
    assert_int_equal(scalar(b, "SELECT count(*) FROM test_db_pg_pipe", NOPS, 0), 6 + 3 * PIPE_MAX);

    /* A SET inside the transaction goes after its BEGIN, and a rollback
     * undoes it. */
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    DRV->set_timeout(a, 1234);
    assert_int_equal(
        scalar(a, "SELECT current_setting('statement_timeout')::interval = '1234ms'", NOPS, 0), 1);
    assert_int_equal(DRV->rollback(a), KEEL_OK);
    assert_int_equal(
        scalar(a, "SELECT current_setting('statement_timeout')::interval = '5s'", NOPS, 0), 1);

    /* Lost with a deferred write and its COMMIT in flight: unknown, broken. */
    pid = backend_pid(a);
    assert_int_equal(DRV->begin(a, true), KEEL_OK);
    p = KEEL_DB_INT(9);
    xdefer(a, "INSERT INTO test_db_pg_pipe VALUES ($1)", &p, 1);
    kill_backend(b, pid);
    assert_int_equal(DRV->commit(a), KEEL_E_UNAVAILABLE);
    assert_true(DRV->broken(a));
    assert_int_equal(DRV->rollback(a), KEEL_OK);
    DRV->close(a);

    xexec(b, "DROP TABLE test_db_pg_pipe");
    DRV->close(b);
}

static void test_standby_after_failover(void **state)
{
    void *a = xconnect(), *ro = xconnect_ro(true);

    (void)state;
    /* A primary connection that finds itself read-only has been failed
     * over to a standby: broken, so the pool reconnects. */
    xexec(a, "SET default_transaction_read_only = on");
    assert_int_equal(try_exec(a, "CREATE TABLE test_db_pg_ro (a int4)", NOPS, 0),
                     KEEL_E_UNAVAILABLE);
    assert_true(DRV->broken(a));
    /* On a replica connection it is the caller's mistake. */
    xexec(ro, "SET default_transaction_read_only = on");
    assert_int_equal(try_exec(ro, "CREATE TABLE test_db_pg_ro (a int4)", NOPS, 0), KEEL_E_DB);
    assert_false(DRV->broken(ro));
    DRV->close(a);
    DRV->close(ro);
}

static void test_wal_lsn(void **state)
{
    void *h = xconnect();
    uint64_t l1 = 0, l2 = 0, l3 = 0;

    (void)state;
    assert_int_equal(DRV->wal_lsn(h, &l1), KEEL_OK);
    assert_true(l1 > 0);
    xexec(h, "DROP TABLE IF EXISTS test_db_pg_wal");
    xexec(h, "CREATE TABLE test_db_pg_wal (a int4)");
    xexec(h, "INSERT INTO test_db_pg_wal VALUES (1)");
    assert_int_equal(DRV->wal_lsn(h, &l2), KEEL_OK);
    assert_true(l2 > l1);
    xexec(h, "DROP TABLE test_db_pg_wal");
    assert_int_equal(DRV->wal_lsn(h, &l3), KEEL_OK);
    assert_true(l3 > l2);
    /* A primary has no replay position. */
    assert_int_equal(DRV->replay_lsn(h, &l1), KEEL_E_INVALID);
    assert_false(DRV->broken(h));
    DRV->close(h);
}

/* ----------------------------------------------------------- connect */

static void check_no_secret(const char *bad_url, keel_status want, const char *const secrets[])
{
    char err[256];
    void *h = (void *)1;
    keel_status rc = DRV->connect(bad_url, false, &h, err, sizeof(err));
    size_t i;

    if (rc != want)
        fail_msg("%s: got %s (%s)", bad_url, keel_status_name(rc), err);
    assert_null(h);
    assert_true(strlen(err) > 10);
    for (i = 0; secrets[i]; i++)
        if (strstr(err, secrets[i]))
            fail_msg("secret \"%s\" in error: %s", secrets[i], err);
}

static void test_password_not_in_errors(void **state)
{
    static const char *const s1[] = {"s3cretPW99", NULL};
    static const char *const s2[] = {"s3cr", "etPW99", NULL};

    (void)state;
    check_no_secret("postgres://keel:s3cretPW99@127.0.0.1:1/keel", KEEL_E_UNAVAILABLE, s1);
    check_no_secret("postgres://keel:s3cretPW99@[::1/keel", KEEL_E_INVALID, s1);
    check_no_secret("postgres://keel:s3cretPW99@127.0.0.1:1/keel?bogus=1", KEEL_E_INVALID, s1);
    check_no_secret("postgres://keel@127.0.0.1:1/keel?password=s3cretPW99", KEEL_E_UNAVAILABLE, s1);
    check_no_secret("postgres://keel:s3cr%2FetPW99@127.0.0.1:1/keel", KEEL_E_UNAVAILABLE, s2);
    /* An unencoded '/' makes libpq read part of the password as a port. */
    check_no_secret("postgres://keel:s3cr/etPW99@127.0.0.1:1/keel", KEEL_E_UNAVAILABLE, s2);
}

/* KEEL_TEST_PG_URL with an unreachable host in front of its own. */
static void test_multi_host(void **state)
{
    PQconninfoOption *opts = PQconninfoParse(url, NULL), *o;
    const char *host = NULL, *port = "5432", *user = NULL, *dbname = NULL;
    char multi[512];
    void *h = NULL;
    char err[256];

    (void)state;
    assert_non_null(opts);
    for (o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "user") == 0)
            user = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            dbname = o->val;
    }
    if (!host || host[0] == '/' || strchr(host, ',')) {
        PQconninfoFree(opts);
        skip();
    }
    snprintf(multi, sizeof(multi), "postgres://%s%s127.0.0.1:1,%s:%s/%s", user ? user : "",
             user ? "@" : "", host, port, dbname ? dbname : "");
    PQconninfoFree(opts);
    if (DRV->connect(multi, false, &h, err, sizeof(err)) != KEEL_OK)
        fail_msg("%s: %s", multi, err);
    assert_int_equal(scalar(h, "SELECT 1", NOPS, 0), 1);
    DRV->close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_round_trip),
        cmocka_unit_test(test_values_from_the_server),
        cmocka_unit_test(test_nulls),
        cmocka_unit_test(test_param_reused),
        cmocka_unit_test(test_param_inference),
        cmocka_unit_test(test_text_params),
        cmocka_unit_test(test_prepared_cache),
        cmocka_unit_test(test_plan_changed),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_statement_timeout),
        cmocka_unit_test(test_serialization_failure),
        cmocka_unit_test(test_connection_killed),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_standby_after_failover),
        cmocka_unit_test(test_wal_lsn),
        cmocka_unit_test(test_password_not_in_errors),
        cmocka_unit_test(test_multi_host),
    };

    url = getenv("KEEL_TEST_PG_URL");
    if (!url || !url[0]) {
        fprintf(stderr, "KEEL_TEST_PG_URL is not set: skipped\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
