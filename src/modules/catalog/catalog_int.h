/*
 * catalog_int.h - the catalog module's internal interfaces
 * (docs/internals/catalog.md). Nothing outside src/modules/catalog
 * includes this (tests excepted); other modules use include/keel/catalog.h
 * (stock.c).
 *
 * Threads: functions taking a keel_db_conn run on storage-lane threads (they are
 * called from keel_db_run, keel_cache_get loaders or the seed command);
 * functions taking a keel_request run on the request's loop; the rest are
 * pure and run anywhere.
 */
#ifndef KEEL_CATALOG_INT_H
#define KEEL_CATALOG_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/core.h"
#include "keel/db.h"
#include "keel/http.h"

struct keel_json;

/* Field bounds (SPEC section 3, issue 5). Lengths are code points. */
#define CATALOG_SKU_MAX         64
#define CATALOG_NAME_MAX        200
#define CATALOG_DESCRIPTION_MAX 5000
#define CATALOG_CATEGORY_MAX    64
#define CATALOG_PRICE_MAX       INT64_C(1000000000000) /* 10^12 minor units */
#define CATALOG_STOCK_MAX       INT64_C(1000000000)    /* 10^9 */
#define CATALOG_DELTA_MAX       INT64_C(1000000000)
#define CATALOG_Q_MAX           200 /* code points of ?q */

/* Cache lifetimes (docs/internals/catalog.md, "Caching"). */
#define CATALOG_ITEM_TTL_MS 60000
#define CATALOG_LIST_TTL_MS 30000

/* Cache keys: one product's ("product:<id>", a format), and the namespace
 * of every list (list.c builds the list keys in it). Only the catalog
 * knows them: other modules invalidate with keel_catalog_invalidate. */
#define CATALOG_ITEM_KEY  "product:%s"
#define CATALOG_LISTS_KEY "products:*"

/* Cache fills read the primary, not a replica: a fill that raced an
 * invalidation on a replica that had not replayed the write yet would put
 * the old product back for a whole TTL, and the writer's next GET (and its
 * ETag for If-Match) would be stale although the database is not. The
 * cache takes the read load the replicas would have taken. */
#define CATALOG_FILL_INTENT KEEL_DB_READ_PRIMARY

/* A product as the API shows it. The strings point into a database row or
 * a request body and are not NUL-terminated. */
struct product {
    char id[37];
    struct keel_str sku, name, description, currency, category;
    int64_t price_cents, stock, version, created_us, updated_us;
};

/* ------------------------------------------------------------ repo.c */

/* The columns product_from_row reads, in its order, for SELECT and
 * RETURNING lists. */
#define CATALOG_COLS                                                                               \
    "id, sku, name, description, price_cents, currency, category, stock, version, created_us,"     \
    " updated_us"

/* Reads the CATALOG_COLS of the current row into p (the strings stay
 * valid until the row changes). False when the id is malformed. */
bool catalog_product_from_row(const struct keel_db_rows *r, struct product *p);

/* Writes p as the API's JSON object. */
void catalog_product_json(struct keel_json *j, const struct product *p);

/* The cached form of one product (docs/internals/catalog.md, "ETag"): its
 * ETag, a newline, then its JSON body. Appends to out. */
keel_status catalog_product_entry(struct keel_buf *out, const struct product *p);
/* Writes the strong ETag of a version ("\"v3\"") into out (>= 24 bytes). */
void catalog_etag(int64_t version, char *out, size_t cap);

/* The product `id` as a cache entry (catalog_product_entry) appended to
 * out; KEEL_E_NOT_FOUND when there is none. */
keel_status catalog_repo_get(struct keel_db_conn *c, const char *id, struct keel_buf *out);

/* Inserts p (every field set; version 1). KEEL_E_CONFLICT on a duplicate
 * sku. */
keel_status catalog_repo_insert(struct keel_db_conn *c, const struct product *p);

/* What a conditional write found, when it did not write. */
enum catalog_outcome {
    CATALOG_APPLIED,
    CATALOG_ABSENT,         /* no such product: 404 */
    CATALOG_PRECONDITION,   /* If-Match named another version: 412 */
    CATALOG_OUT_OF_STOCK,   /* stock would go below zero: 409 out-of-stock */
    CATALOG_STOCK_OVERFLOW, /* stock would pass CATALOG_STOCK_MAX: 409 conflict */
};

#define CATALOG_IF_MATCH_MAX 8

/* A PATCH: the fields present (NULL strings and !has_price are left as
 * they are) and the If-Match condition. */
struct product_patch {
    char id[37];
    const char *sku, *name, *description, *currency, *category;
    bool has_price;
    int64_t price_cents;
    bool if_match;     /* an If-Match header was given */
    bool if_match_any; /* ... and it was "*" */
    unsigned nversions;
    int64_t versions[CATALOG_IF_MATCH_MAX]; /* versions it names */
    int64_t now_us;
    /* Out: */
    enum catalog_outcome outcome;
    int64_t version;       /* the new version */
    struct keel_buf entry; /* the updated product as a cache entry */
};

/* Applies the patch inside the caller's transaction: the version check and
 * the update are one conditional UPDATE, so a concurrent writer either
 * comes first (412) or after. Sets pt->outcome; returns an error only for
 * storage failures (KEEL_E_CONFLICT: the new sku is taken). */
keel_status catalog_repo_update(struct keel_db_conn *c, struct product_patch *pt);

/* Deletes the product; *outcome is CATALOG_APPLIED or CATALOG_ABSENT. */
keel_status
catalog_repo_delete(struct keel_db_conn *c, const char *id, enum catalog_outcome *outcome);

/* A stock adjustment: one UPDATE ... WHERE stock + delta BETWEEN 0 AND
 * max ... RETURNING, so concurrent adjustments never take stock below zero. */
struct stock_change {
    char id[37];
    int64_t delta;
    int64_t now_us;
    /* Out: */
    enum catalog_outcome outcome;
    int64_t stock, version;
};
keel_status catalog_repo_stock(struct keel_db_conn *c, struct stock_change *s);

/* ------------------------------------------------------------ lists */

enum catalog_sort {
    CATALOG_SORT_CREATED_DESC, /* the default: newest first */
    CATALOG_SORT_CREATED,
    CATALOG_SORT_PRICE,
    CATALOG_SORT_PRICE_DESC,
    CATALOG_SORT_NAME,
    CATALOG_SORT_COUNT,
};

#define CATALOG_LIST_DEFAULT 20
#define CATALOG_LIST_MAX     100
#define CATALOG_TAG_LEN      16                     /* hex characters of the filter tag */
#define CATALOG_KEY_TEXT_MAX (4 * CATALOG_NAME_MAX) /* bytes of a name sort key */

/* A parsed, validated GET /api/v1/products. */
struct catalog_list {
    enum catalog_sort sort;
    int64_t limit;
    const char *category;          /* NULL: any */
    int64_t min_price, max_price;  /* -1: no bound */
    const char *search;            /* the dialect's search argument; NULL: none */
    bool match_nothing;            /* ?q had no word to search for */
    char tag[CATALOG_TAG_LEN + 1]; /* hash of the filters, carried in cursors */
    /* The cursor: rows strictly after (key, id) in the sort order. */
    bool after;
    char after_id[37];
    int64_t after_int;
    const char *after_text; /* the name, for CATALOG_SORT_NAME */
};

/* True when the sort is on an integer column (created_us, price_cents). */
bool catalog_sort_is_int(enum catalog_sort s);

/* Encodes a cursor for the row (key, id) of a list into out (NUL-terminated).
 * Returns KEEL_E_TOO_LARGE when it does not fit. */
keel_status catalog_cursor_encode(const struct catalog_list *l,
                                  const char *id,
                                  int64_t key_int,
                                  const char *key_text,
                                  size_t key_len,
                                  char *out,
                                  size_t cap);
#define CATALOG_CURSOR_MAX 1280 /* characters, NUL included */

/* Runs the list query and appends the page ({"items": [...],
 * "next_cursor": ...}) to out. KEEL_E_TOO_LARGE when out's maximum is hit. */
keel_status
catalog_repo_list(struct keel_db_conn *c, const struct catalog_list *l, struct keel_buf *out);

/* True when the default database speaks PostgreSQL (set at module init). */
extern bool catalog_pg;

/* ------------------------------------------------------------ seed.c */

/* Result of a seeding run. */
struct catalog_seed_result {
    int64_t requested; /* N */
    int64_t inserted;  /* rows added (SKUs already present are skipped) */
    bool skipped;      /* --if-empty and the catalog had products */
};

#define CATALOG_SEED_MAX 1000000

/* Loads the demo catalog: products 1..n, each generated from its index
 * alone (a seeded PRNG), so runs are deterministic and a larger run adds
 * to a smaller one; SKUs are DEMO-<CATEGORY>-<index>. Batches of rows run
 * in transactions. With if_empty, does nothing when any product exists.
 * Blocking: for the `keel seed` command (main thread, no loop). */
keel_status
catalog_seed(struct keel_db *db, int64_t n, bool if_empty, struct catalog_seed_result *out);

/* ------------------------------------------------------------ routes */

keel_status catalog_products_list(struct keel_request *req);
keel_status catalog_product_get(struct keel_request *req);
keel_status catalog_product_create(struct keel_request *req);
keel_status catalog_product_patch(struct keel_request *req);
keel_status catalog_product_delete(struct keel_request *req);
keel_status catalog_product_stock(struct keel_request *req);

/* Maps a storage failure to the client's answer: keel_fail_storage
 * (keel/problem.h) with the catalog's words, "No product with this id."
 * for KEEL_E_NOT_FOUND. */
keel_status catalog_db_failure(struct keel_request *req, keel_status rc);

#endif
