/*
 * test_catalog_stock.c - unit tests for src/modules/catalog/stock.c, the
 * catalog's interface for other modules (include/keel/catalog.h), on a
 * migrated SQLite database in a fresh mkdtemp() directory: reservations
 * in product-id order with each line's price and name, the refusals and
 * the line they name, the caller's callback errors, releases (a deleted
 * product skipped) and price lookups. keel_catalog_invalidate needs a
 * request and the cache: tests/e2e/test_orders*.py cover it.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keel/catalog.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/migrate.h"

#include "test.h"

/* Product ids in lock order: A < B < C. */
#define A "0190a8a0-0000-7000-8000-00000000000a"
#define B "0190a8a0-0000-7000-8000-00000000000b"
#define C "0190a8a0-0000-7000-8000-00000000000c"
#define Z "0190a8a0-0000-7000-8000-0000000000ff" /* no such product */

static char dir[64];
static struct keel_db *db;
static struct keel_db_conn *conn;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static keel_status add_product(const char *id, const char *name, int64_t price, int64_t stock)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(id), KEEL_DB_TEXT(id), KEEL_DB_TEXT(name),
                                KEEL_DB_INT(price), KEEL_DB_INT(stock)};

    return keel_db_exec(conn,
                        "INSERT INTO products (id, sku, name, price_cents, currency, stock,"
                        " created_us, updated_us) VALUES ($1, $2, $3, $4, 'EUR', $5, 1, 1)",
                        p, KEEL_ARRAY_LEN(p), NULL);
}

static int setup(void **state)
{
    struct keel_config cfg = {0};
    char url[128];

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/keel-test-catalog-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(url, sizeof(url), "sqlite:%s/catalog.db", dir);
    cfg.database_url = url;
    cfg.database_pool_size = 1;
    if (keel_db_open(&cfg, &db) != KEEL_OK || keel_migrate_up(db, NULL) != KEEL_OK ||
        keel_db_acquire(db, KEEL_DB_WRITE, NULL, &conn) != KEEL_OK)
        return -1;
    if (add_product(A, "Alpha", 150, 5) != KEEL_OK || add_product(B, "Beta", 20, 1) != KEEL_OK ||
        add_product(C, "Gamma", 7, 0) != KEEL_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keel_db_release(conn);
    keel_db_close(db);
    return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int64_t stock_of(const char *id)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(id)};
    struct keel_db_rows *r;
    int64_t n;

    assert_int_equal(keel_db_query(conn, "SELECT stock FROM products WHERE id = $1", p, 1, &r),
                     KEEL_OK);
    assert_int_equal(keel_db_next(r), KEEL_OK);
    n = keel_db_int64(r, 0);
    keel_db_rows_free(r);
    return n;
}

/* What the callback saw, in call order. */
struct seen {
    unsigned n;
    unsigned line[4];
    char name[4][16];
    struct keel_catalog_price price[4];
    keel_status answer;
};

static keel_status saw(unsigned line, const struct keel_catalog_item *item, void *arg)
{
    struct seen *s = arg;

    s->line[s->n] = line;
    snprintf(s->name[s->n], sizeof(s->name[0]), "%.*s", (int)item->name_len, item->name);
    s->price[s->n] = item->price;
    s->n++;
    return s->answer;
}

static void test_reserve(void **state)
{
    /* Given out of lock order: taken A (line 1), then B (line 0). */
    const struct keel_catalog_line lines[] = {{B, 1}, {A, 3}};
    struct keel_catalog_reservation res;
    struct seen s = {0};

    (void)state;
    assert_int_equal(keel_catalog_reserve(conn, lines, 2, saw, &s, &res), KEEL_OK);
    assert_int_equal(res.outcome, KEEL_CATALOG_RESERVED);
    assert_int_equal(res.line, 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.line[0], 1);
    assert_string_equal(s.name[0], "Alpha");
    assert_int_equal(s.price[0].cents, 150);
    assert_string_equal(s.price[0].currency, "EUR");
    assert_int_equal(s.line[1], 0);
    assert_string_equal(s.name[1], "Beta");
    assert_int_equal(stock_of(A), 2);
    assert_int_equal(stock_of(B), 0);
}

static void test_refusals(void **state)
{
    const struct keel_catalog_line short_of[] = {{C, 1}, {A, 1}};
    const struct keel_catalog_line unknown[] = {{A, 1}, {Z, 1}, {B, 1}};
    struct keel_catalog_reservation res;
    struct seen s = {0};

    (void)state;
    /* A is taken first (lock order), then C has no stock: line 0. */
    assert_int_equal(keel_db_begin(conn), KEEL_OK);
    assert_int_equal(keel_catalog_reserve(conn, short_of, 2, saw, &s, &res), KEEL_OK);
    assert_int_equal(res.outcome, KEEL_CATALOG_OUT_OF_STOCK);
    assert_int_equal(res.line, 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(stock_of(A), 4); /* taken until the caller rolls back */
    assert_int_equal(keel_db_rollback(conn), KEEL_OK);
    assert_int_equal(stock_of(A), 5);
    /* A, B, then Z (the largest id) names nothing: line 1. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(keel_db_begin(conn), KEEL_OK);
    assert_int_equal(keel_catalog_reserve(conn, unknown, 3, saw, &s, &res), KEEL_OK);
    assert_int_equal(res.outcome, KEEL_CATALOG_UNKNOWN_PRODUCT);
    assert_int_equal(res.line, 1);
    assert_int_equal(s.n, 2);
    assert_int_equal(keel_db_rollback(conn), KEEL_OK);
}

static void test_callback_errors(void **state)
{
    const struct keel_catalog_line lines[] = {{A, 1}, {B, 1}};
    struct keel_catalog_line many[KEEL_CATALOG_LINES_MAX + 1];
    struct keel_catalog_reservation res;
    struct seen s = {.answer = KEEL_E_TOO_LARGE};
    unsigned i;

    (void)state;
    assert_int_equal(keel_db_begin(conn), KEEL_OK);
    assert_int_equal(keel_catalog_reserve(conn, lines, 2, saw, &s, &res), KEEL_E_TOO_LARGE);
    assert_int_equal(s.n, 1);
    assert_int_equal(keel_db_rollback(conn), KEEL_OK);
    /* The callback's own KEEL_E_NOT_FOUND is not taken for a missing row. */
    s = (struct seen){.answer = KEEL_E_NOT_FOUND};
    assert_int_equal(keel_db_begin(conn), KEEL_OK);
    assert_int_equal(keel_catalog_reserve(conn, lines, 2, saw, &s, &res), KEEL_E_NOT_FOUND);
    assert_int_equal(res.outcome, KEEL_CATALOG_RESERVED);
    assert_int_equal(keel_db_rollback(conn), KEEL_OK);
    for (i = 0; i < KEEL_ARRAY_LEN(many); i++)
        many[i] = (struct keel_catalog_line){A, 1};
    assert_int_equal(keel_catalog_reserve(conn, many, KEEL_ARRAY_LEN(many), saw, &s, &res),
                     KEEL_E_INVALID);
    assert_int_equal(keel_catalog_release(conn, many, KEEL_ARRAY_LEN(many)), KEEL_E_INVALID);
    assert_int_equal(stock_of(A), 5);
}

static void test_release(void **state)
{
    const struct keel_catalog_line lines[] = {{C, 4}, {Z, 2}, {A, 1}};

    (void)state;
    assert_int_equal(keel_catalog_release(conn, lines, 3), KEEL_OK);
    assert_int_equal(stock_of(A), 6);
    assert_int_equal(stock_of(C), 4);
}

static void test_price(void **state)
{
    struct keel_catalog_price p;

    (void)state;
    assert_int_equal(keel_catalog_price(conn, B, &p), KEEL_OK);
    assert_int_equal(p.cents, 20);
    assert_string_equal(p.currency, "EUR");
    assert_int_equal(keel_catalog_price(conn, Z, &p), KEEL_E_NOT_FOUND);
    assert_int_equal(p.cents, 0);
    assert_string_equal(p.currency, "");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_reserve), T(test_refusals), T(test_callback_errors), T(test_release), T(test_price),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
