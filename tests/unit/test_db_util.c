/*
 * test_db_util.c - unit tests for src/db/db_util.c: keel_db_query_one on
 * the SQLite driver (a file database in a fresh mkdtemp() directory): a
 * row is read, no row is KEEL_E_NOT_FOUND without calling the reader, the
 * reader's error and a storage error come back as they are, and the
 * connection is free for the next statement afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/db.h"

#include "test.h"

static char dir[64];
static char path[128];
static struct keel_db *db;
static struct keel_db_conn *conn;

static int setup(void **state)
{
    struct keel_config cfg = {0};
    char url[160];

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/keel-test-db-util-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/util.db", dir);
    snprintf(url, sizeof(url), "sqlite:%s", path);
    cfg.database_url = url;
    cfg.database_pool_size = 1;
    if (keel_db_open(&cfg, &db) != KEEL_OK)
        return -1;
    if (keel_db_acquire(db, KEEL_DB_WRITE, NULL, &conn) != KEEL_OK)
        return -1;
    return keel_db_exec(conn, "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL) STRICT;",
                        NULL, 0, NULL) == KEEL_OK &&
                   keel_db_exec(conn, "INSERT INTO t VALUES (1, 'one'), (2, 'two')", NULL, 0,
                                NULL) == KEEL_OK
               ? 0
               : -1;
}

static int teardown(void **state)
{
    char wal[160];

    (void)state;
    keel_db_release(conn);
    keel_db_close(db);
    unlink(path);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof(wal), "%s-shm", path);
    unlink(wal);
    return rmdir(dir);
}

struct seen {
    unsigned calls;
    char v[16];
    keel_status answer;
};

static keel_status read_v(const struct keel_db_rows *r, void *arg)
{
    struct seen *s = arg;
    const char *v = keel_db_text(r, 0, NULL);

    s->calls++;
    snprintf(s->v, sizeof(s->v), "%s", v ? v : "");
    return s->answer;
}

static keel_status one(const char *sql, int64_t k, struct seen *s)
{
    struct keel_db_param p[] = {KEEL_DB_INT(k)};

    return keel_db_query_one(conn, sql, p, 1, read_v, s);
}

static void test_row(void **state)
{
    struct seen s = {0};

    (void)state;
    assert_int_equal(one("SELECT v FROM t WHERE k = $1", 2, &s), KEEL_OK);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.v, "two");
    /* An UPDATE ... RETURNING, then the connection takes the next statement. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(one("UPDATE t SET v = 'uno' WHERE k = $1 RETURNING v", 1, &s), KEEL_OK);
    assert_string_equal(s.v, "uno");
    memset(&s, 0, sizeof(s));
    assert_int_equal(one("SELECT v FROM t WHERE k = $1", 1, &s), KEEL_OK);
    assert_string_equal(s.v, "uno");
}

static void test_no_row(void **state)
{
    struct seen s = {0};

    (void)state;
    assert_int_equal(one("SELECT v FROM t WHERE k = $1", 3, &s), KEEL_E_NOT_FOUND);
    assert_int_equal(s.calls, 0);
    assert_int_equal(keel_db_query_one(conn, "SELECT 1 FROM t WHERE k = 1", NULL, 0, NULL, NULL),
                     KEEL_OK);
    assert_int_equal(keel_db_query_one(conn, "SELECT 1 FROM t WHERE k = 9", NULL, 0, NULL, NULL),
                     KEEL_E_NOT_FOUND);
}

static void test_first_row_only(void **state)
{
    struct seen s = {0};

    (void)state;
    assert_int_equal(one("SELECT v FROM t WHERE k >= $1 ORDER BY k", 1, &s), KEEL_OK);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.v, "one");
}

static void test_errors(void **state)
{
    struct seen s = {.answer = KEEL_E_TOO_LARGE};

    (void)state;
    assert_int_equal(one("SELECT v FROM t WHERE k = $1", 1, &s), KEEL_E_TOO_LARGE);
    assert_int_equal(s.calls, 1);
    s.calls = 0;
    assert_int_equal(one("SELECT v FROM no_such_table WHERE k = $1", 1, &s), KEEL_E_DB);
    assert_int_equal(s.calls, 0);
    /* A statement that fails as it runs: the UPDATE breaks NOT NULL (a
     * constraint other than a uniqueness one is KEEL_E_INVALID). */
    assert_int_equal(one("UPDATE t SET v = NULL WHERE k = $1 RETURNING v", 1, &s), KEEL_E_INVALID);
    assert_int_equal(s.calls, 0);
    s.answer = KEEL_OK;
    assert_int_equal(one("SELECT v FROM t WHERE k = $1", 2, &s), KEEL_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_row_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
