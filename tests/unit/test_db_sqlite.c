/*
 * test_db_sqlite.c - unit tests for the SQLite driver (src/db/db_sqlite.c)
 * and the migrations (src/db/migrate.c): type round trips, NULLs, $N
 * reuse, the statement cache, error mapping, transactions, concurrent
 * writers, the statement timeout, and migrations fresh, repeated, tampered
 * and raced by two instances.
 *
 * Both .c files are included to reach their statics (STYLE.md section 8):
 * their definitions then satisfy the references of db.c, so the linker
 * takes no second copy from libkeelcore. Every test works in a fresh
 * mkdtemp() directory that teardown removes; the driver is driven through
 * its vtable, the rest through the public API of keel/db.h.
 */
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/migrate.h"

#include "db/db_sqlite.c"
#include "db/migrate.c"
#include "test.h"

static const struct keel_db_driver *drv = &keel__db_sqlite;
static char dir[64];

/* ------------------------------------------------------------- fixtures */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/keel-test-db-sqlite-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* "sqlite:<dir>/<name>" in buf. */
static const char *file_url(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "sqlite:%s/%s", dir, name);
    return buf;
}

static void *connect_ok(const char *url)
{
    char err[256];
    void *h = NULL;

    if (drv->connect(url, false, &h, err, sizeof(err)) != KEEL_OK)
        fail_msg("connect %s: %s", url, err);
    return h;
}

static void exec_ok(void *h, const char *sql)
{
    keel_status rc = drv->run(h, sql, NULL, 0, NULL, NULL);

    if (rc != KEEL_OK)
        fail_msg("%s: %s (%s)", sql, keel_status_name(rc), drv->errmsg(h));
}

/* The single int64 a query returns. */
static int64_t query_int(void *h, const char *sql, const struct keel_db_param *p, unsigned n)
{
    struct keel_db_rows r = {0};
    int64_t v;

    assert_int_equal(drv->run(h, sql, p, n, &r, NULL), KEEL_OK);
    assert_int_equal(drv->next(&r), KEEL_OK);
    v = drv->int64(&r, 0);
    assert_int_equal(drv->next(&r), KEEL_DONE);
    drv->rows_free(&r);
    return v;
}

static struct keel_db *open_db(const char *url, unsigned pool)
{
    struct keel_config cfg = {0};
    struct keel_db *db = NULL;

    cfg.database_url = (char *)(uintptr_t)url;
    cfg.database_pool_size = pool;
    assert_int_equal(keel_db_open(&cfg, &db), KEEL_OK);
    return db;
}

/* ------------------------------------------------------------ the driver */

static void test_connect_and_url_forms(void **state)
{
    char url[256], err[256], path[128];
    struct stat sb;
    void *h = NULL;

    (void)state;
    /* A missing parent directory is created, mode 0700. */
    h = connect_ok(file_url(url, sizeof(url), "a/b/keel.db"));
    snprintf(path, sizeof(path), "%s/a/b", dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(query_int(h, "SELECT 1", NULL, 0), 1);
    drv->close(h);
    /* WAL and foreign keys are on. */
    h = connect_ok(url);
    {
        struct keel_db_rows r = {0};
        size_t len;

        assert_int_equal(drv->run(h, "PRAGMA journal_mode", NULL, 0, &r, NULL), KEEL_OK);
        assert_int_equal(drv->next(&r), KEEL_OK);
        assert_string_equal(drv->text(&r, 0, &len), "wal");
        drv->rows_free(&r);
    }
    assert_int_equal(query_int(h, "PRAGMA foreign_keys", NULL, 0), 1);
    assert_int_equal(query_int(h, "PRAGMA busy_timeout", NULL, 0), 5000);
    drv->close(h);

    h = connect_ok("sqlite::memory:");
    drv->close(h);
    snprintf(url, sizeof(url), "sqlite:file:%s/uri.db?mode=rwc", dir);
    h = connect_ok(url);
    drv->close(h);

    assert_int_equal(drv->connect("postgres://x", false, &h, err, sizeof(err)), KEEL_E_INVALID);
    assert_int_equal(drv->connect("sqlite:", false, &h, err, sizeof(err)), KEEL_E_INVALID);
    assert_null(h);
    /* Read-only on a file that does not exist: unavailable, no path leaked. */
    snprintf(url, sizeof(url), "sqlite:%s/none.db", dir);
    assert_int_equal(drv->connect(url, true, &h, err, sizeof(err)), KEEL_E_UNAVAILABLE);
    assert_null(strstr(err, dir));
    /* A file that is not a database. */
    snprintf(path, sizeof(path), "%s/junk.db", dir);
    {
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fputs("this is not an SQLite database, but it is long enough to look like one........"
              "................................................................................",
              f);
        fclose(f);
    }
    snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_true(drv->connect(url, false, &h, err, sizeof(err)) < 0);
    assert_null(h);
}

static void test_types_roundtrip(void **state)
{
    static const unsigned char blob[] = {0, 1, 2, 0xff, 0};
    const char *uuid = "0190f2a4-7b1c-7d3e-8f00-123456789abc";
    struct keel_db_rows r = {0};
    int64_t affected = -1;
    const void *b;
    char u[37];
    size_t len;
    void *h;

    (void)state;
    h = connect_ok("sqlite::memory:");
    exec_ok(h, "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, i INTEGER, f INTEGER, d REAL, "
               "y BLOB, tm INTEGER, u TEXT, e BLOB) STRICT");
    {
        struct keel_db_param p[] = {
            KEEL_DB_TEXT("héllo"),     KEEL_DB_INT(INT64_MIN), KEEL_DB_BOOL(true),
            KEEL_DB_DOUBLE(-2.5e-300), KEEL_DB_BYTES(blob, 5), KEEL_DB_TIME(1735689600123456),
            KEEL_DB_UUID(uuid),        KEEL_DB_BYTES(NULL, 0),
        };

        assert_int_equal(drv->run(h,
                                  "INSERT INTO t (s, i, f, d, y, tm, u, e) "
                                  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                                  p, 8, NULL, &affected),
                         KEEL_OK);
        assert_int_equal(affected, 1);
    }
    {
        struct keel_db_param p[] = {KEEL_DB_TEXTN("abcdef", 3), KEEL_DB_INT(INT64_MAX),
                                    KEEL_DB_BOOL(false)};

        exec_ok(h, "INSERT INTO t (s) VALUES ('x')");
        assert_int_equal(
            drv->run(h, "UPDATE t SET s = $1, i = $2, f = $3 WHERE id = 2", p, 3, NULL, NULL),
            KEEL_OK);
    }
    assert_int_equal(
        drv->run(h, "SELECT s, i, f, d, y, tm, u, e FROM t ORDER BY id", NULL, 0, &r, NULL),
        KEEL_OK);
    assert_int_equal(r.ncols, 8);
    assert_int_equal(drv->next(&r), KEEL_OK);
    assert_string_equal(drv->text(&r, 0, &len), "héllo");
    assert_int_equal(len, strlen("héllo"));
    assert_true(drv->int64(&r, 1) == INT64_MIN);
    assert_true(drv->boolean(&r, 2));
    assert_true(drv->dbl(&r, 3) == -2.5e-300);
    b = drv->bytes(&r, 4, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(b, blob, 5);
    assert_true(drv->time(&r, 5) == 1735689600123456);
    assert_string_equal(drv->text(&r, 6, &len), uuid);
    b = drv->bytes(&r, 7, &len); /* an empty blob is not NULL */
    assert_non_null(b);
    assert_int_equal(len, 0);
    assert_false(drv->is_null(&r, 7));
    assert_int_equal(drv->next(&r), KEEL_OK);
    assert_string_equal(drv->text(&r, 0, &len), "abc");
    assert_int_equal(len, 3);
    assert_true(drv->int64(&r, 1) == INT64_MAX);
    assert_false(drv->boolean(&r, 2));
    assert_int_equal(drv->next(&r), KEEL_DONE);
    assert_int_equal(drv->next(&r), KEEL_DONE); /* stays done, never re-runs */
    drv->rows_free(&r);
    drv->close(h);

    /* The public accessors, including keel_db_uuid, through db.c. */
    {
        struct keel_db *db = open_db("sqlite::memory:", 1);
        struct keel_db_param p[] = {KEEL_DB_UUID(uuid)};
        struct keel_db_conn *c;
        struct keel_db_rows *rows;

        assert_int_equal(keel_db_acquire(db, KEEL_DB_READ, NULL, &c), KEEL_OK);
        assert_int_equal(keel_db_query(c, "SELECT upper($1), 42", p, 1, &rows), KEEL_OK);
        assert_int_equal(keel_db_next(rows), KEEL_OK);
        assert_true(keel_db_uuid(rows, 0, u));
        assert_string_equal(u, uuid);
        assert_true(keel_db_int64(rows, 1) == 42);
        assert_int_equal(keel_db_next(rows), KEEL_DONE);
        keel_db_rows_free(rows);
        keel_db_release(c);
        keel_db_close(db);
    }
}

static void test_nulls(void **state)
{
    struct keel_db_param p[] = {KEEL_DB_NULL(), KEEL_DB_TEXT(NULL), KEEL_DB_NULL()};
    struct keel_db_rows r = {0};
    size_t len = 99;
    void *h;

    (void)state;
    h = connect_ok("sqlite::memory:");
    exec_ok(h, "CREATE TABLE t (a INTEGER, b TEXT, c BLOB) STRICT");
    assert_int_equal(drv->run(h, "INSERT INTO t VALUES ($1, $2, $3)", p, 3, NULL, NULL), KEEL_OK);
    assert_int_equal(drv->run(h, "SELECT a, b, c FROM t", NULL, 0, &r, NULL), KEEL_OK);
    assert_int_equal(drv->next(&r), KEEL_OK);
    assert_true(drv->is_null(&r, 0));
    assert_true(drv->is_null(&r, 1));
    assert_true(drv->is_null(&r, 2));
    assert_null(drv->text(&r, 1, &len));
    assert_int_equal(len, 0);
    assert_null(drv->bytes(&r, 2, &len));
    assert_int_equal(len, 0);
    assert_true(drv->int64(&r, 0) == 0);
    /* Out of range columns read as NULL, never as undefined memory. */
    assert_true(drv->is_null(&r, 7));
    assert_null(drv->text(&r, 7, &len));
    drv->rows_free(&r);
    drv->close(h);
}

static void test_params(void **state)
{
    struct keel_db_param p[] = {KEEL_DB_INT(20), KEEL_DB_TEXT("x")};
    struct keel_db_rows r = {0};
    size_t len;
    void *h;

    (void)state;
    h = connect_ok("sqlite::memory:");
    /* $1 used twice is one parameter; order in the text does not matter. */
    assert_int_equal(drv->run(h, "SELECT $2 || ($1 + $1), $1", p, 2, &r, NULL), KEEL_OK);
    assert_int_equal(drv->next(&r), KEEL_OK);
    assert_string_equal(drv->text(&r, 0, &len), "x40");
    assert_true(drv->int64(&r, 1) == 20);
    drv->rows_free(&r);
    /* Count mismatch, other placeholder forms, stacked statements. */
    assert_int_equal(drv->run(h, "SELECT $1", p, 2, NULL, NULL), KEEL_E_INVALID);
    assert_int_equal(drv->run(h, "SELECT $1, $2", p, 1, NULL, NULL), KEEL_E_INVALID);
    assert_int_equal(drv->run(h, "SELECT $2", p, 2, NULL, NULL), KEEL_E_INVALID); /* gap */
    assert_int_equal(drv->run(h, "SELECT ?", p, 1, NULL, NULL), KEEL_E_INVALID);
    assert_int_equal(drv->run(h, "SELECT :a", p, 1, NULL, NULL), KEEL_E_INVALID);
    assert_int_equal(drv->run(h, "SELECT $01", p, 1, NULL, NULL), KEEL_E_INVALID);
    assert_int_equal(drv->run(h, "SELECT 1; SELECT 2", NULL, 0, NULL, NULL), KEEL_E_INVALID);
    assert_int_equal(drv->run(h, "   ", NULL, 0, NULL, NULL), KEEL_E_INVALID);
    assert_int_equal(drv->run(h, "SELEC 1", NULL, 0, NULL, NULL), KEEL_E_DB);
    assert_non_null(strstr(drv->errmsg(h), "syntax error"));
    /* A trailing semicolon and comment are one statement. */
    assert_int_equal(drv->run(h, "SELECT 1; -- done", NULL, 0, NULL, NULL), KEEL_OK);
    /* Query parameters are copied: the borrowed buffer may go away. */
    {
        char buf[8] = "abc";
        struct keel_db_param q[] = {KEEL_DB_TEXT(buf)};

        exec_ok(h, "CREATE TABLE t (s TEXT) STRICT");
        exec_ok(h, "INSERT INTO t VALUES ('abc'), ('abc'), ('zzz')");
        assert_int_equal(drv->run(h, "SELECT count(*) FROM t WHERE s = $1", q, 1, &r, NULL),
                         KEEL_OK);
        memcpy(buf, "zzz", 3);
        assert_int_equal(drv->next(&r), KEEL_OK);
        assert_true(drv->int64(&r, 0) == 2);
        drv->rows_free(&r);
    }
    drv->close(h);
}

static int stmt_count(void *h)
{
    struct conn *c = h;
    sqlite3_stmt *st;
    int n = 0;

    for (st = sqlite3_next_stmt(c->db, NULL); st; st = sqlite3_next_stmt(c->db, st))
        n++;
    return n;
}

static void test_stmt_cache(void **state)
{
    struct keel_db_param p[1];
    struct conn *c;
    char sql[64];
    int base, i;
    void *h;

    (void)state;
    h = connect_ok("sqlite::memory:");
    c = h;
    base = stmt_count(h);
    for (i = 0; i < 5; i++) {
        p[0] = KEEL_DB_INT(i);
        assert_true(query_int(h, "SELECT $1 * 2", p, 1) == i * 2);
    }
    assert_int_equal(stmt_count(h), base + 1); /* prepared once, reused */
    /* Many distinct statements: the cache stays bounded, and a statement in
     * constant use survives the evictions (LRU). */
    for (i = 0; i < 3 * CACHE_MAX; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        assert_true(query_int(h, sql, NULL, 0) == i);
        p[0] = KEEL_DB_INT(i);
        assert_true(query_int(h, "SELECT $1 * 2", p, 1) == i * 2);
    }
    assert_int_equal(c->ncache, CACHE_MAX);
    assert_true(stmt_count(h) <= CACHE_MAX + base);
    {
        bool found = false;
        unsigned k;

        for (k = 0; k < c->ncache; k++)
            found |= strcmp(c->cache[k].sql, "SELECT $1 * 2") == 0;
        assert_true(found);
    }
    /* A failed prepare leaves the cache consistent. */
    assert_int_equal(drv->run(h, "SELECT ?", NULL, 0, NULL, NULL), KEEL_E_INVALID);
    assert_int_equal(query_int(h, "SELECT 7", NULL, 0), 7);
    drv->close(h);
}

static void test_errors(void **state)
{
    struct keel_db_rows r = {0};
    void *h;

    (void)state;
    h = connect_ok("sqlite::memory:");
    exec_ok(h, "CREATE TABLE p (id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INTEGER NOT NULL "
               "CHECK (n >= 0)) STRICT");
    exec_ok(h, "CREATE TABLE ch (pid INTEGER REFERENCES p(id)) STRICT");
    exec_ok(h, "INSERT INTO p VALUES (1, 'a@x', 0)");
    assert_int_equal(drv->run(h, "INSERT INTO p VALUES (2, 'a@x', 0)", NULL, 0, NULL, NULL),
                     KEEL_E_CONFLICT);
    assert_false(drv->retryable(h));
    assert_false(drv->broken(h));
    assert_non_null(strstr(drv->errmsg(h), "UNIQUE"));
    assert_int_equal(drv->run(h, "INSERT INTO p VALUES (1, 'b@x', 0)", NULL, 0, NULL, NULL),
                     KEEL_E_CONFLICT);
    assert_int_equal(drv->run(h, "INSERT INTO ch VALUES (9)", NULL, 0, NULL, NULL),
                     KEEL_E_CONFLICT);
    assert_int_equal(drv->run(h, "INSERT INTO p VALUES (3, 'c@x', NULL)", NULL, 0, NULL, NULL),
                     KEEL_E_INVALID);
    assert_int_equal(drv->run(h, "INSERT INTO p VALUES (3, 'c@x', -1)", NULL, 0, NULL, NULL),
                     KEEL_E_INVALID);
    assert_int_equal(drv->run(h, "INSERT INTO p VALUES (3, 'c@x', 'many')", NULL, 0, NULL, NULL),
                     KEEL_E_INVALID); /* STRICT */
    /* The error of INSERT ... RETURNING comes back from the query itself. */
    assert_int_equal(
        drv->run(h, "INSERT INTO p VALUES (4, 'a@x', 0) RETURNING id", NULL, 0, &r, NULL),
        KEEL_E_CONFLICT);
    assert_int_equal(
        drv->run(h, "INSERT INTO p VALUES (4, 'd@x', 0) RETURNING id", NULL, 0, &r, NULL), KEEL_OK);
    assert_int_equal(drv->next(&r), KEEL_OK);
    assert_true(drv->int64(&r, 0) == 4);
    drv->rows_free(&r);
    {
        int64_t n = -1;

        assert_int_equal(drv->run(h, "UPDATE p SET n = n + 1", NULL, 0, NULL, &n), KEEL_OK);
        assert_true(n == 2);
        assert_int_equal(drv->run(h, "CREATE TABLE z (a INTEGER) STRICT", NULL, 0, NULL, &n),
                         KEEL_OK);
        assert_true(n == 0); /* not the stale count of the UPDATE */
    }
    drv->close(h);
}

/* -------------------------------------------------------- transactions */

static void test_transactions(void **state)
{
    struct keel_db_conn *c;
    struct keel_db *db;
    char url[128];

    (void)state;
    db = open_db(file_url(url, sizeof(url), "tx.db"), 4);
    assert_string_equal(keel_db_dialect(db), "sqlite");
    assert_int_equal(keel_db_acquire(db, KEEL_DB_WRITE, NULL, &c), KEEL_OK);
    assert_int_equal(keel_db_exec(c, "CREATE TABLE t (a INTEGER) STRICT", NULL, 0, NULL), KEEL_OK);
    assert_int_equal(keel_db_begin(c), KEEL_OK);
    assert_int_equal(keel_db_exec(c, "INSERT INTO t VALUES (1)", NULL, 0, NULL), KEEL_OK);
    assert_int_equal(keel_db_commit(c), KEEL_OK);
    assert_int_equal(keel_db_begin(c), KEEL_OK);
    assert_int_equal(keel_db_exec(c, "INSERT INTO t VALUES (2)", NULL, 0, NULL), KEEL_OK);
    assert_int_equal(keel_db_rollback(c), KEEL_OK);
    keel_db_release(c);

    /* A second connection sees exactly the committed row. */
    assert_int_equal(keel_db_acquire(db, KEEL_DB_READ, NULL, &c), KEEL_OK);
    {
        struct keel_db_rows *r;

        assert_int_equal(keel_db_query(c, "SELECT group_concat(a) FROM t", NULL, 0, &r), KEEL_OK);
        assert_int_equal(keel_db_next(r), KEEL_OK);
        assert_string_equal(keel_db_text(r, 0, NULL), "1");
        keel_db_rows_free(r);
    }
    keel_db_release(c);
    keel_db_close(db);

    /* Driver level: rollback after SQLite already ended the transaction. */
    {
        void *h = connect_ok("sqlite::memory:");

        assert_int_equal(drv->rollback(h), KEEL_OK);
        assert_int_equal(drv->begin(h, true), KEEL_OK);
        assert_int_equal(drv->begin(h, true), KEEL_E_DB); /* nested */
        assert_int_equal(drv->rollback(h), KEEL_OK);
        assert_int_equal(drv->begin(h, false), KEEL_OK);
        assert_int_equal(drv->commit(h), KEEL_OK);
        assert_int_equal(drv->commit(h), KEEL_E_DB); /* none open */
        drv->close(h);
    }
}

struct writer {
    const char *url;
    int rounds;
    int ok;
    keel_status last;
};

/* Increments the counter `rounds` times, read-modify-write, each in a
 * BEGIN IMMEDIATE transaction on its own connection. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    char err[256];
    void *h = NULL;
    int i;

    w->last = drv->connect(w->url, false, &h, err, sizeof(err));
    for (i = 0; i < w->rounds && w->last == KEEL_OK; i++) {
        struct keel_db_rows r = {0};
        struct keel_db_param p[1];

        w->last = drv->begin(h, true);
        if (w->last < 0)
            break;
        w->last = drv->run(h, "SELECT n FROM counter", NULL, 0, &r, NULL);
        if (w->last == KEEL_OK && drv->next(&r) == KEEL_OK)
            p[0] = KEEL_DB_INT(drv->int64(&r, 0) + 1);
        drv->rows_free(&r);
        if (w->last == KEEL_OK)
            w->last = drv->run(h, "UPDATE counter SET n = $1", p, 1, NULL, NULL);
        if (w->last == KEEL_OK)
            w->last = drv->commit(h);
        else
            drv->rollback(h);
        if (w->last == KEEL_OK)
            w->ok++;
    }
    drv->close(h);
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    struct writer w[2];
    pthread_t t[2];
    char url[128];
    void *h;
    int i;

    (void)state;
    h = connect_ok(file_url(url, sizeof(url), "busy.db"));
    exec_ok(h, "CREATE TABLE counter (n INTEGER NOT NULL) STRICT");
    exec_ok(h, "INSERT INTO counter VALUES (0)");
    for (i = 0; i < 2; i++) {
        w[i] = (struct writer){.url = url, .rounds = 200};
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].last, KEEL_OK);
        assert_int_equal(w[i].ok, 200);
    }
    assert_true(query_int(h, "SELECT n FROM counter", NULL, 0) == 400);
    drv->close(h);
}

static void test_busy_is_retryable(void **state)
{
    char url[128];
    void *a, *b;

    (void)state;
    a = connect_ok(file_url(url, sizeof(url), "lock.db"));
    b = connect_ok(url);
    exec_ok(a, "CREATE TABLE t (a INTEGER) STRICT");
    sqlite3_busy_timeout(((struct conn *)b)->db, 20); /* not 5 s in a unit test */
    assert_int_equal(drv->begin(a, true), KEEL_OK);
    assert_int_equal(drv->begin(b, true), KEEL_E_DB);
    assert_true(drv->retryable(b));
    assert_int_equal(drv->rollback(b), KEEL_OK);
    assert_true(drv->retryable(b)); /* db.c asks after rolling back */
    /* WAL: readers are not blocked by the writer. */
    assert_int_equal(query_int(b, "SELECT count(*) FROM t", NULL, 0), 0);
    assert_false(drv->retryable(b));
    assert_int_equal(drv->commit(a), KEEL_OK);
    assert_int_equal(drv->begin(b, true), KEEL_OK);
    assert_int_equal(drv->commit(b), KEEL_OK);
    drv->close(a);
    drv->close(b);
}

#define LONG_QUERY                                                                                 \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"

static void test_statement_timeout(void **state)
{
    struct keel_db_rows r = {0};
    uint64_t t0, ms;
    void *h;

    (void)state;
    h = connect_ok("sqlite::memory:");
    exec_ok(h, "CREATE TABLE t (a INTEGER) STRICT");
    drv->set_timeout(h, 100);
    t0 = keel_now_ns();
    assert_int_equal(drv->run(h, LONG_QUERY, NULL, 0, NULL, NULL), KEEL_E_TIMEOUT);
    ms = (keel_now_ns() - t0) / 1000000u;
    assert_true(ms >= 100 && ms < 2000);
    assert_non_null(strstr(drv->errmsg(h), "timeout"));
    assert_false(drv->retryable(h));
    assert_false(drv->broken(h));
    /* The query path, inside a transaction: the connection stays usable. */
    assert_int_equal(drv->begin(h, true), KEEL_OK);
    exec_ok(h, "INSERT INTO t VALUES (1)");
    assert_int_equal(drv->run(h, LONG_QUERY, NULL, 0, &r, NULL), KEEL_E_TIMEOUT);
    assert_int_equal(drv->rollback(h), KEEL_OK);
    assert_int_equal(query_int(h, "SELECT count(*) FROM t", NULL, 0), 0);
    /* The budget is per statement: a new statement gets the full time. */
    assert_int_equal(query_int(h, "SELECT 5", NULL, 0), 5);
    /* 0 disables the limit. */
    drv->set_timeout(h, 0);
    assert_int_equal(query_int(h,
                               "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                               "WHERE x < 200000) SELECT count(*) FROM c",
                               NULL, 0),
                     200000);
    assert_int_equal(drv->ping(h), KEEL_OK);
    drv->close(h);
}

/* ------------------------------------------------------------ migrations */

static const struct keel_migration fake[] = {
    {1, "one", "CREATE TABLE m1 (a INTEGER) STRICT;"},
    {2, "two", "CREATE TABLE m2 (a TEXT) STRICT; INSERT INTO m2 VALUES ('a;b');"},
    {3, "three",
     "CREATE TABLE m3 (a INTEGER) STRICT;\n"
     "CREATE TRIGGER m3_t AFTER INSERT ON m3 BEGIN\n"
     "  INSERT INTO m2 VALUES (CASE WHEN new.a > 0 THEN 'pos;' ELSE 'neg' END);\n"
     "  INSERT INTO m2 VALUES ('end');\n"
     "END;\n"
     "INSERT INTO m3 VALUES (1);"},
    {4, "four", "/* ; */ CREATE INDEX m2_a ON m2 (a); -- ;\n"},
    {5, "five", "CREATE TABLE m5 (\"x;y\" INTEGER) STRICT;"},
};

static size_t count_statements(const char *sql, bool pg)
{
    struct splitter s = {.p = sql, .pg = pg};
    const char *a, *b;
    size_t n = 0;

    while (split_next(&s, &a, &b))
        n++;
    return n;
}

static void test_split(void **state)
{
    (void)state;
    assert_int_equal(count_statements("", false), 0);
    assert_int_equal(count_statements(" -- only a comment\n/* ; */ ;; \n", false), 0);
    assert_int_equal(count_statements("SELECT 1", false), 1);
    assert_int_equal(count_statements("SELECT 1;SELECT ';'; SELECT \";\"", false), 3);
    assert_int_equal(count_statements(fake[2].sql, false), 3);
    assert_int_equal(count_statements("SELECT [a;b] FROM t; SELECT 2", false), 2);
    assert_int_equal(count_statements("CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END "
                                      "$$ LANGUAGE plpgsql; SELECT $tag$;$tag$;",
                                      true),
                     2);
    assert_int_equal(count_statements("SELECT CASE WHEN true THEN 1 END; SELECT 2", true), 2);
    /* BEGIN outside CREATE is not a body. */
    assert_int_equal(count_statements("SELECT 1 AS begin; SELECT 2", false), 2);
}

static struct keel_db *migrate_db(const char *name)
{
    char url[128];

    return open_db(file_url(url, sizeof(url), name), 4);
}

static int64_t db_int(struct keel_db *db, const char *sql)
{
    struct keel_db_conn *c;
    struct keel_db_rows *r;
    int64_t v;

    assert_int_equal(keel_db_acquire(db, KEEL_DB_READ_PRIMARY, NULL, &c), KEEL_OK);
    assert_int_equal(keel_db_query(c, sql, NULL, 0, &r), KEEL_OK);
    assert_int_equal(keel_db_next(r), KEEL_OK);
    v = keel_db_int64(r, 0);
    keel_db_rows_free(r);
    keel_db_release(c);
    return v;
}

static void db_exec(struct keel_db *db, const char *sql)
{
    struct keel_db_conn *c;

    assert_int_equal(keel_db_acquire(db, KEEL_DB_WRITE, NULL, &c), KEEL_OK);
    assert_int_equal(keel_db_exec(c, sql, NULL, 0, NULL), KEEL_OK);
    keel_db_release(c);
}

static void test_migrate_fresh_and_repeated(void **state)
{
    struct keel_migration_state *st;
    struct keel_db *db;
    unsigned n = 99;
    char *text = NULL;
    size_t len = 0, ns;
    FILE *f;

    (void)state;
    assert_true(keel_nmigrations_sqlite >= 1);
    assert_true(keel_nmigrations_postgres == keel_nmigrations_sqlite);
    db = migrate_db("m.db");
    assert_int_equal(keel_migrate_pending(db, &n), KEEL_OK);
    assert_int_equal(n, keel_nmigrations_sqlite);
    assert_int_equal(keel_migrate_up(db, &n), KEEL_OK);
    assert_int_equal(n, keel_nmigrations_sqlite);
    assert_int_equal(keel_migrate_pending(db, &n), KEEL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(db_int(db, "SELECT count(*) FROM keel_meta"), 0);
    assert_int_equal(db_int(db, "SELECT count(*) FROM schema_migrations"),
                     (int64_t)keel_nmigrations_sqlite);
    /* Idempotent. */
    assert_int_equal(keel_migrate_up(db, &n), KEEL_OK);
    assert_int_equal(n, 0);
    /* States and the status table. */
    assert_int_equal(keel_migrate_states(db, &st, &ns), KEEL_OK);
    assert_int_equal(ns, keel_nmigrations_sqlite);
    assert_int_equal(st[0].version, 1);
    assert_string_equal(st[0].name, "foundation");
    assert_true(st[0].applied && st[0].checksum_ok && st[0].known);
    assert_true(st[0].applied_at_us > 1700000000000000LL);
    keel_migrate_states_free(st, ns);
    f = open_memstream(&text, &len);
    assert_int_equal(keel_migrate_status(db, f), KEEL_OK);
    fclose(f);
    assert_non_null(strstr(text, "foundation"));
    assert_non_null(strstr(text, "applied"));
    assert_null(strstr(text, "MISMATCH"));
    free(text);
    keel_db_close(db);
}

static void test_migrate_tampered(void **state)
{
    struct keel_db *db;
    unsigned n = 99;
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    (void)state;
    db = migrate_db("t.db");
    assert_int_equal(keel_migrate_up(db, &n), KEEL_OK);
    db_exec(db, "UPDATE schema_migrations SET checksum = 'deadbeef' WHERE version = 1");
    assert_int_equal(keel_migrate_up(db, &n), KEEL_E_CONFLICT);
    assert_int_equal(n, 0);
    assert_int_equal(keel_migrate_pending(db, &n), KEEL_E_CONFLICT);
    f = open_memstream(&text, &len);
    assert_int_equal(keel_migrate_status(db, f), KEEL_E_CONFLICT);
    fclose(f);
    assert_non_null(strstr(text, "MISMATCH"));
    free(text);
    text = NULL;

    /* A version newer than the binary knows is refused too. */
    db_exec(db, "DELETE FROM schema_migrations");
    assert_int_equal(keel_migrate_pending(db, &n), KEEL_OK);
    assert_int_equal(n, keel_nmigrations_sqlite);
    db_exec(db, "INSERT INTO schema_migrations VALUES (9999, 'future', 'x', 0)");
    assert_int_equal(keel_migrate_up(db, &n), KEEL_E_CONFLICT);
    assert_int_equal(n, 0);
    f = open_memstream(&text, &len);
    assert_int_equal(keel_migrate_status(db, f), KEEL_E_CONFLICT);
    fclose(f);
    assert_non_null(strstr(text, "future"));
    assert_non_null(strstr(text, "unknown"));
    free(text);
    keel_db_close(db);
}

static void test_migrate_failure_rolls_back(void **state)
{
    static const struct keel_migration bad[] = {
        {1, "one", "CREATE TABLE ok1 (a INTEGER) STRICT;"},
        {2, "bad", "CREATE TABLE half (a INTEGER) STRICT; INSERT INTO nowhere VALUES (1);"},
    };
    struct plan p = {.d = &sqlite_dialect, .m = bad, .n = 2};
    struct keel_db_conn *c;
    struct keel_db *db;
    unsigned count = 0;

    (void)state;
    db = migrate_db("f.db");
    assert_int_equal(keel_db_acquire(db, KEEL_DB_WRITE, NULL, &c), KEEL_OK);
    assert_int_equal(migrate_locked(c, &p, &count), KEEL_E_DB);
    keel_db_release(c);
    assert_int_equal(count, 1);
    assert_int_equal(db_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'half'"), 0);
    assert_int_equal(db_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'ok1'"), 1);
    assert_int_equal(db_int(db, "SELECT max(version) FROM schema_migrations"), 1);
    keel_db_close(db);
}

/* The check under the write lock: a version another instance applied
 * after this one read the history is skipped, or refused when that
 * instance applied different SQL. */
static void test_migrate_recheck(void **state)
{
    struct plan p = {.d = &sqlite_dialect, .m = fake, .n = KEEL_ARRAY_LEN(fake)};
    struct keel_db_conn *c;
    struct keel_db *db;
    char sum[SUM_HEX];
    bool done = true;

    (void)state;
    db = migrate_db("r.db");
    assert_int_equal(keel_db_acquire(db, KEEL_DB_WRITE, NULL, &c), KEEL_OK);
    assert_int_equal(ensure_table(c, &p), KEEL_OK);
    checksum(fake[0].sql, sum);
    {
        struct keel_db_param q[] = {KEEL_DB_INT(1), KEEL_DB_TEXT("one"), KEEL_DB_TEXT(sum),
                                    KEEL_DB_TIME(1)};

        assert_int_equal(keel_db_exec(c, SQL_RECORD, q, 4, NULL), KEEL_OK);
    }
    assert_int_equal(apply_one(c, &p, &fake[0], &done), KEEL_OK);
    assert_false(done);
    assert_int_equal(keel_db_exec(c, "UPDATE schema_migrations SET checksum = 'x'", NULL, 0, NULL),
                     KEEL_OK);
    assert_int_equal(apply_one(c, &p, &fake[0], &done), KEEL_E_CONFLICT);
    assert_false(done);
    /* Neither attempt ran the SQL. */
    assert_int_equal(keel_db_exec(c, "SELECT * FROM m1", NULL, 0, NULL), KEEL_E_DB);
    keel_db_release(c);
    keel_db_close(db);
}

struct racer {
    char url[128];
    const struct plan *plan; /* NULL: keel_migrate_up with the embedded list */
    pthread_barrier_t *start;
    keel_status rc;
    unsigned applied;
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    struct keel_config cfg = {0};
    struct keel_db_conn *c;
    struct keel_db *db = NULL;

    /* Each racer is its own "instance": its own keel_db, so db.c's
     * in-process writer mutex does not serialize them; SQLite does. */
    cfg.database_url = r->url;
    cfg.database_pool_size = 2;
    r->rc = keel_db_open(&cfg, &db);
    pthread_barrier_wait(r->start);
    if (r->rc < 0)
        return NULL;
    if (!r->plan) {
        r->rc = keel_migrate_up(db, &r->applied);
    } else {
        r->rc = keel_db_acquire(db, KEEL_DB_WRITE, NULL, &c);
        if (r->rc == KEEL_OK) {
            r->rc = migrate_locked(c, r->plan, &r->applied);
            keel_db_release(c);
        }
    }
    keel_db_close(db);
    return NULL;
}

static void race(const char *name, const struct plan *plan, size_t n)
{
    struct racer r[2];
    pthread_barrier_t start;
    pthread_t t[2];
    struct keel_db *db;
    int i;

    if (plan) {
        /* With schema_migrations already there, both racers read an empty
         * history at once and collide on version 1: the loser must find
         * the version applied when it gets the write lock. */
        struct keel_db_conn *c;

        db = migrate_db(name);
        assert_int_equal(keel_db_acquire(db, KEEL_DB_WRITE, NULL, &c), KEEL_OK);
        assert_int_equal(ensure_table(c, plan), KEEL_OK);
        keel_db_release(c);
        keel_db_close(db);
    }
    pthread_barrier_init(&start, NULL, 2);
    for (i = 0; i < 2; i++) {
        r[i] = (struct racer){.plan = plan, .start = &start};
        file_url(r[i].url, sizeof(r[i].url), name);
        assert_int_equal(pthread_create(&t[i], NULL, racer_main, &r[i]), 0);
    }
    for (i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    assert_int_equal(r[0].rc, KEEL_OK);
    assert_int_equal(r[1].rc, KEEL_OK);
    assert_int_equal(r[0].applied + r[1].applied, n); /* each version once */
    db = migrate_db(name);
    assert_int_equal(db_int(db, "SELECT count(*) FROM schema_migrations"), (int64_t)n);
    assert_int_equal(db_int(db, "SELECT count(DISTINCT version) FROM schema_migrations"),
                     (int64_t)n);
    if (plan) {
        /* The trigger of version 3 fired exactly once. */
        assert_int_equal(db_int(db, "SELECT count(*) FROM m2 WHERE a = 'pos;'"), 1);
        assert_int_equal(db_int(db, "SELECT count(*) FROM m2"), 3);
    }
    keel_db_close(db);
}

static void test_migrate_race(void **state)
{
    struct plan p = {.d = &sqlite_dialect, .m = fake, .n = KEEL_ARRAY_LEN(fake)};
    char name[32];
    int i;

    (void)state;
    for (i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "race-embedded-%d.db", i);
        race(name, NULL, keel_nmigrations_sqlite);
        snprintf(name, sizeof(name), "race-fake-%d.db", i);
        race(name, &p, KEEL_ARRAY_LEN(fake));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_and_url_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_types_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nulls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stmt_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_is_retryable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statement_timeout, setup, teardown),
        cmocka_unit_test(test_split),
        cmocka_unit_test_setup_teardown(test_migrate_fresh_and_repeated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_tampered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_failure_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_recheck, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_race, setup, teardown),
    };

    /* Errors that the tests provoke on purpose are logged; keep stdout for
     * cmocka. */
    keel_log_init(KEEL_LOG_ERROR, STDERR_FILENO);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
