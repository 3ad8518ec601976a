/*
 * stock.c - the catalog's interface for other modules (include/keel/catalog.h;
 * docs/internals/catalog.md "For other modules"): reservations and releases
 * of stock inside the caller's transaction, prices, and the invalidation of
 * cached products after the caller's commit.
 *
 * DESIGN: a reservation is one conditional UPDATE per line,
 *
 *     UPDATE products SET stock = stock - q, version = version + 1
 *      WHERE id = $1 AND stock >= q RETURNING name, price_cents, currency
 *
 * so the check and the decrement happen under the row lock: PostgreSQL
 * re-evaluates the condition on the row version a concurrent writer
 * committed, SQLite serializes writers, and two reservations can never
 * both take the last unit. Only when it changes nothing does a second
 * statement tell a missing product from a short one. Lines are always
 * taken in product-id order (lock_order), as are releases, so two
 * transactions that share products lock them in one order and cannot
 * deadlock, whatever order their callers named the products in.
 */
#include <stdio.h>
#include <string.h>

#include "keel/cache.h"
#include "keel/catalog.h"
#include "keel/db.h"
#include "keel/http.h"

#include "catalog_int.h"

/* Line indexes in product-id order: the order rows are locked in. */
static void lock_order(const struct keel_catalog_line *lines, unsigned n, unsigned *idx)
{
    unsigned i, k;

    for (i = 0; i < n; i++) {
        for (k = i; k > 0 && strcmp(lines[idx[k - 1]].product_id, lines[i].product_id) > 0; k--)
            idx[k] = idx[k - 1];
        idx[k] = i;
    }
}

/* The price in columns col (cents) and col + 1 (currency) of the row. */
static void price_from_row(const struct keel_db_rows *r, unsigned col, struct keel_catalog_price *p)
{
    const char *cur = keel_db_text(r, col + 1, NULL);

    p->cents = keel_db_int64(r, col);
    snprintf(p->currency, sizeof(p->currency), "%s", cur ? cur : "");
}

static keel_status price_row(const struct keel_db_rows *r, void *arg)
{
    price_from_row(r, 0, arg);
    return KEEL_OK;
}

keel_status
keel_catalog_price(struct keel_db_conn *c, const char *product_id, struct keel_catalog_price *out)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(product_id)};

    memset(out, 0, sizeof(*out));
    return keel_db_query_one(c, "SELECT price_cents, currency FROM products WHERE id = $1", p, 1,
                             price_row, out);
}

/* ------------------------------------------------------------- reserve */

/* One line being taken: the caller's callback and whether it ran. */
struct taking {
    unsigned line;
    keel_catalog_item_fn fn;
    void *arg;
    bool taken; /* the UPDATE returned the row */
};

/* The row a reservation's UPDATE returned (keel_db_row_fn). */
static keel_status taken_row(const struct keel_db_rows *r, void *arg)
{
    struct taking *t = arg;
    struct keel_catalog_item item = {.name_len = 0};

    t->taken = true;
    item.name = keel_db_text(r, 0, &item.name_len);
    if (!item.name) {
        item.name = "";
        item.name_len = 0;
    }
    price_from_row(r, 1, &item.price);
    return t->fn(t->line, &item, t->arg);
}

/* Takes one line from stock; *outcome says why it could not. */
static keel_status take(struct keel_db_conn *c,
                        const struct keel_catalog_line *l,
                        struct taking *t,
                        enum keel_catalog_outcome *outcome)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(l->product_id), KEEL_DB_INT(l->quantity)};
    struct keel_catalog_price price;
    keel_status rc;

    rc = keel_db_query_one(c,
                           "UPDATE products SET stock = stock - $2, version = version + 1"
                           " WHERE id = $1 AND stock >= $2 RETURNING name, price_cents, currency",
                           p, 2, taken_row, t);
    if (rc != KEEL_E_NOT_FOUND || t->taken)
        return rc;
    /* Nothing updated: the product is missing or short of stock. */
    rc = keel_catalog_price(c, l->product_id, &price);
    if (rc == KEEL_E_NOT_FOUND) {
        *outcome = KEEL_CATALOG_UNKNOWN_PRODUCT;
        return KEEL_OK;
    }
    if (rc == KEEL_OK)
        *outcome = KEEL_CATALOG_OUT_OF_STOCK;
    return rc;
}

keel_status keel_catalog_reserve(struct keel_db_conn *c,
                                 const struct keel_catalog_line *lines,
                                 unsigned n,
                                 keel_catalog_item_fn fn,
                                 void *arg,
                                 struct keel_catalog_reservation *out)
{
    unsigned idx[KEEL_CATALOG_LINES_MAX], i;
    keel_status rc = KEEL_OK;

    out->outcome = KEEL_CATALOG_RESERVED;
    out->line = 0;
    if (n > KEEL_CATALOG_LINES_MAX)
        return KEEL_E_INVALID;
    lock_order(lines, n, idx);
    for (i = 0; rc == KEEL_OK && out->outcome == KEEL_CATALOG_RESERVED && i < n; i++) {
        struct taking t = {.line = idx[i], .fn = fn, .arg = arg};

        rc = take(c, &lines[idx[i]], &t, &out->outcome);
        if (out->outcome != KEEL_CATALOG_RESERVED)
            out->line = idx[i];
    }
    return rc;
}

/* ------------------------------------------------------------- release */

keel_status
keel_catalog_release(struct keel_db_conn *c, const struct keel_catalog_line *lines, unsigned n)
{
    unsigned idx[KEEL_CATALOG_LINES_MAX], i;
    keel_status rc = KEEL_OK;

    if (n > KEEL_CATALOG_LINES_MAX)
        return KEEL_E_INVALID;
    lock_order(lines, n, idx);
    for (i = 0; rc == KEEL_OK && i < n; i++) {
        const struct keel_catalog_line *l = &lines[idx[i]];
        struct keel_db_param p[] = {KEEL_DB_UUID(l->product_id), KEEL_DB_INT(l->quantity)};

        rc = keel_db_exec(c,
                          "UPDATE products SET stock = stock + $2, version = version + 1"
                          " WHERE id = $1",
                          p, 2, NULL);
    }
    return rc;
}

/* ---------------------------------------------------------- invalidate */

keel_status keel_catalog_invalidate(struct keel_request *req,
                                    const char *const *product_ids,
                                    unsigned n,
                                    keel_status then)
{
    const char **keys = keel_arena_alloc(req->arena, (n + 1) * sizeof(*keys));
    unsigned i;

    if (!keys)
        return KEEL_E_NOMEM;
    for (i = 0; i < n; i++) {
        keys[i] = keel_arena_sprintf(req->arena, CATALOG_ITEM_KEY, product_ids[i]);
        if (!keys[i])
            return KEEL_E_NOMEM;
    }
    keys[n] = CATALOG_LISTS_KEY;
    return keel_cache_invalidate(req, keys, n + 1, then);
}
