/*
 * catalog.h - what the catalog module offers other modules (issue 10;
 * docs/internals/catalog.md "For other modules"): stock reserved and
 * released inside the caller's transaction, a product's price, and the
 * invalidation of cached products after a commit. The products table and
 * the catalog's cache keys stay private to src/modules/catalog.
 *
 * Locking: every function that changes stock updates the products of its
 * lines in product-id order, whatever order the caller gives them in. Two
 * transactions sharing products (two orders, an order and a cancellation)
 * therefore lock them in the same order and cannot deadlock.
 *
 * Threading: the functions taking a keel_db_conn run on a storage-lane thread
 * inside the caller's transaction (keel_db_transaction, or keel_db_run
 * with KEEL_DB_WRITE), so a reservation commits or rolls back with the
 * caller's own writes; keel_catalog_invalidate runs on the request's loop.
 */
#ifndef KEEL_CATALOG_H
#define KEEL_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "keel/core.h"

struct keel_db_conn;
struct keel_request;

/* The most lines one reservation or release may name. */
#define KEEL_CATALOG_LINES_MAX 100

/* A price: integer minor units of an ISO 4217 currency. */
struct keel_catalog_price {
    int64_t cents;
    char currency[4];
};

/* Writes product_id's current price into *out (zeroed first). Returns
 * KEEL_OK, KEEL_E_NOT_FOUND when no product has this id, or a storage
 * error. A plain read: it takes no lock. */
keel_status
keel_catalog_price(struct keel_db_conn *c, const char *product_id, struct keel_catalog_price *out);

/* One line of a reservation or a release. */
struct keel_catalog_line {
    const char *product_id; /* a lowercase UUID */
    int64_t quantity;       /* at least 1 */
};

/* A reserved line's product as it was when the stock was taken. `name`
 * (name_len bytes, no NUL needed) is valid during the callback only. */
struct keel_catalog_item {
    const char *name;
    size_t name_len;
    struct keel_catalog_price price;
};

/* Called once per reserved line, `line` being its index in the caller's
 * array. A negative return stops the reservation and is returned. */
typedef keel_status (*keel_catalog_item_fn)(unsigned line,
                                            const struct keel_catalog_item *item,
                                            void *arg);

enum keel_catalog_outcome {
    KEEL_CATALOG_RESERVED,        /* every line was taken from stock */
    KEEL_CATALOG_UNKNOWN_PRODUCT, /* `line` names no product */
    KEEL_CATALOG_OUT_OF_STOCK,    /* `line` asks for more than its product's stock */
};

struct keel_catalog_reservation {
    enum keel_catalog_outcome outcome;
    unsigned line; /* the refused line's index (0 when all were reserved) */
};

/* Takes each line's quantity from its product's stock, never below zero
 * (one conditional UPDATE per line: of concurrent reservations of the last
 * units, only as many succeed as there are units), and calls fn with the
 * product's name and price. Lines go in product-id order; the first line
 * that cannot be reserved stops the reservation and is reported in *out.
 * The lines reserved before it stay taken: the caller must then roll its
 * transaction back. Returns KEEL_OK (see out->outcome), fn's error, a
 * storage error, or KEEL_E_INVALID for more than KEEL_CATALOG_LINES_MAX
 * lines. */
keel_status keel_catalog_reserve(struct keel_db_conn *c,
                                 const struct keel_catalog_line *lines,
                                 unsigned n,
                                 keel_catalog_item_fn fn,
                                 void *arg,
                                 struct keel_catalog_reservation *out);

/* Puts each line's quantity back into its product's stock, in product-id
 * order. A product deleted since is skipped: there is no stock left to
 * return it to. Returns KEEL_OK, a storage error (the caller rolls back),
 * or KEEL_E_INVALID for more than KEEL_CATALOG_LINES_MAX lines. */
keel_status
keel_catalog_release(struct keel_db_conn *c, const struct keel_catalog_line *lines, unsigned n);

/* After the commit of a transaction that changed the stock of n products:
 * drops their cached entries and every cached product list, here and on
 * every instance (keel_cache_invalidate), then continues the request with
 * `then`. Returns what keel_cache_invalidate returns (KEEL_AGAIN, or
 * `then`), or KEEL_E_NOMEM when req's arena cannot hold the keys (nothing
 * invalidated; the entries expire by their TTL). Loop thread. */
keel_status keel_catalog_invalidate(struct keel_request *req,
                                    const char *const *product_ids,
                                    unsigned n,
                                    keel_status then);

#endif
