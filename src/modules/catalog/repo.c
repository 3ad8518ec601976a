/*
 * repo.c - the catalog's SQL (storage-lane threads only; include/keel/db.h) and the
 * product's JSON form, which the storage-lane thread renders so that what the
 * cache stores is the response body itself.
 *
 * DESIGN: every statement but the list is one constant string. The list
 * query has one shape per combination of sort, filters and cursor; it is
 * assembled from the constant fragments below (never from request data,
 * which is always bound), so each shape is one prepared statement in the
 * driver's cache. Optional filters written as "($n IS NULL OR col = $n)"
 * would give one statement, but one that neither planner can match to an
 * index, because both plan before they see the parameters.
 *
 * Writes that depend on the row's state (If-Match, stock) are single
 * conditional UPDATEs: the condition is evaluated under the row lock, so
 * there is no window between the check and the change. Only when the
 * UPDATE changes nothing does a second statement find out why (absent,
 * other version, not enough stock), inside the same transaction.
 */
#include <stdio.h>
#include <string.h>

#include "keel/db.h"
#include "keel/json.h"

#include "catalog_int.h"

bool catalog_pg;

/* ----------------------------------------------------------- products */

static struct keel_str col_text(const struct keel_db_rows *r, unsigned col)
{
    size_t len = 0;
    const char *s = keel_db_text(r, col, &len);

    return (struct keel_str){s ? s : "", s ? len : 0};
}

bool catalog_product_from_row(const struct keel_db_rows *r, struct product *p)
{
    if (!keel_db_uuid(r, 0, p->id))
        return false;
    p->sku = col_text(r, 1);
    p->name = col_text(r, 2);
    p->description = col_text(r, 3);
    p->price_cents = keel_db_int64(r, 4);
    p->currency = col_text(r, 5);
    p->category = col_text(r, 6);
    p->stock = keel_db_int64(r, 7);
    p->version = keel_db_int64(r, 8);
    p->created_us = keel_db_int64(r, 9);
    p->updated_us = keel_db_int64(r, 10);
    return true;
}

static void json_time(struct keel_json *j, const char *key, int64_t us)
{
    char t[KEEL_TIME_STRLEN];

    keel_json_key(j, key);
    keel_time_format(us, t);
    keel_json_str(j, t);
}

static void json_text(struct keel_json *j, const char *key, struct keel_str s)
{
    keel_json_key(j, key);
    keel_json_strn(j, s.p, s.len);
}

static void json_int(struct keel_json *j, const char *key, int64_t v)
{
    keel_json_key(j, key);
    keel_json_int(j, v);
}

void catalog_product_json(struct keel_json *j, const struct product *p)
{
    keel_json_obj_open(j);
    keel_json_key(j, "id");
    keel_json_str(j, p->id);
    json_text(j, "sku", p->sku);
    json_text(j, "name", p->name);
    json_text(j, "description", p->description);
    json_int(j, "price_cents", p->price_cents);
    json_text(j, "currency", p->currency);
    json_text(j, "category", p->category);
    json_int(j, "stock", p->stock);
    json_int(j, "version", p->version);
    json_time(j, "created_at", p->created_us);
    json_time(j, "updated_at", p->updated_us);
    keel_json_obj_close(j);
}

void catalog_etag(int64_t version, char *out, size_t cap)
{
    snprintf(out, cap, "\"v%lld\"", (long long)version);
}

keel_status catalog_product_entry(struct keel_buf *out, const struct product *p)
{
    char etag[32];
    struct keel_json j;

    catalog_etag(p->version, etag, sizeof(etag));
    if (keel_buf_appendf(out, "%s\n", etag) < 0)
        return KEEL_E_TOO_LARGE;
    keel_json_begin(&j, out);
    catalog_product_json(&j, p);
    return keel_json_end(&j);
}

/* Where entry_row puts the product it reads. */
struct entry_out {
    struct keel_buf *out;
    int64_t *version; /* may be NULL */
};

/* Reads a product row (CATALOG_COLS) as a cache entry (keel_db_row_fn). */
static keel_status entry_row(const struct keel_db_rows *r, void *arg)
{
    const struct entry_out *e = arg;
    struct product p;

    if (!catalog_product_from_row(r, &p))
        return KEEL_E_DB;
    if (e->version)
        *e->version = p.version;
    keel_buf_reset(e->out);
    return catalog_product_entry(e->out, &p);
}

/* Reads column 0 as an integer (keel_db_row_fn). */
static keel_status int_row(const struct keel_db_rows *r, void *arg)
{
    *(int64_t *)arg = keel_db_int64(r, 0);
    return KEEL_OK;
}

keel_status catalog_repo_get(struct keel_db_conn *c, const char *id, struct keel_buf *out)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(id)};
    struct entry_out e = {out, NULL};

    return keel_db_query_one(c, "SELECT " CATALOG_COLS " FROM products WHERE id = $1", p, 1,
                             entry_row, &e);
}

keel_status catalog_repo_insert(struct keel_db_conn *c, const struct product *p)
{
    struct keel_db_param v[] = {
        KEEL_DB_UUID(p->id),
        KEEL_DB_TEXTN(p->sku.p, p->sku.len),
        KEEL_DB_TEXTN(p->name.p, p->name.len),
        KEEL_DB_TEXTN(p->description.p, p->description.len),
        KEEL_DB_INT(p->price_cents),
        KEEL_DB_TEXTN(p->currency.p, p->currency.len),
        KEEL_DB_TEXTN(p->category.p, p->category.len),
        KEEL_DB_INT(p->stock),
        KEEL_DB_INT(p->created_us),
    };

    return keel_db_exec(c,
                        "INSERT INTO products (id, sku, name, description, price_cents, currency,"
                        " category, stock, version, created_us, updated_us)"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)",
                        v, KEEL_ARRAY_LEN(v), NULL);
}

static struct keel_db_param opt_text(const char *s)
{
    return s ? KEEL_DB_TEXT(s) : KEEL_DB_NULL();
}

/* The current version of a product; KEEL_E_NOT_FOUND when absent. */
static keel_status current_version(struct keel_db_conn *c, const char *id, int64_t *out)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(id)};

    return keel_db_query_one(c, "SELECT version FROM products WHERE id = $1", p, 1, int_row, out);
}

/* Chooses the version the UPDATE must find: none (no If-Match or "*"), or
 * the current one when the If-Match list names it. */
static keel_status
patch_condition(struct keel_db_conn *c, struct product_patch *pt, bool *cond, int64_t *want)
{
    keel_status rc;
    unsigned i;

    *cond = false;
    if (!pt->if_match || pt->if_match_any)
        return KEEL_OK;
    rc = current_version(c, pt->id, want);
    if (rc == KEEL_E_NOT_FOUND) {
        pt->outcome = CATALOG_ABSENT;
        return KEEL_OK;
    }
    if (rc < 0)
        return rc;
    for (i = 0; i < pt->nversions; i++)
        if (pt->versions[i] == *want)
            break;
    if (i == pt->nversions)
        pt->outcome = CATALOG_PRECONDITION;
    *cond = true;
    return KEEL_OK;
}

/* The UPDATE of a patch. Absent fields bind NULL and keep their value; the
 * version test is part of the statement, so it holds under the row lock. */
static keel_status
patch_apply(struct keel_db_conn *c, struct product_patch *pt, bool cond, int64_t want)
{
    struct keel_db_param p[] = {
        KEEL_DB_UUID(pt->id),
        opt_text(pt->sku),
        opt_text(pt->name),
        opt_text(pt->description),
        pt->has_price ? KEEL_DB_INT(pt->price_cents) : KEEL_DB_NULL(),
        opt_text(pt->currency),
        opt_text(pt->category),
        KEEL_DB_INT(pt->now_us),
        cond ? KEEL_DB_INT(want) : KEEL_DB_NULL(),
    };
    struct entry_out e = {&pt->entry, &pt->version};
    keel_status rc;

    rc = keel_db_query_one(c,
                           "UPDATE products SET sku = COALESCE($2, sku), name = COALESCE($3, name),"
                           " description = COALESCE($4, description),"
                           " price_cents = COALESCE($5, price_cents),"
                           " currency = COALESCE($6, currency), category = COALESCE($7, category),"
                           " version = version + 1, updated_us = $8"
                           " WHERE id = $1 AND version = COALESCE($9, version)"
                           " RETURNING " CATALOG_COLS,
                           p, KEEL_ARRAY_LEN(p), entry_row, &e);
    if (rc == KEEL_E_NOT_FOUND) {
        /* With a condition the row existed a moment ago in this transaction:
         * another writer changed its version (PostgreSQL, read committed). */
        pt->outcome = cond ? CATALOG_PRECONDITION : CATALOG_ABSENT;
        return KEEL_OK;
    }
    return rc;
}

keel_status catalog_repo_update(struct keel_db_conn *c, struct product_patch *pt)
{
    int64_t want = 0;
    bool cond;
    keel_status rc;

    /* The transaction may run again after a serialization failure. */
    pt->outcome = CATALOG_APPLIED;
    keel_buf_reset(&pt->entry);
    rc = patch_condition(c, pt, &cond, &want);
    if (rc < 0 || pt->outcome != CATALOG_APPLIED)
        return rc;
    return patch_apply(c, pt, cond, want);
}

keel_status
catalog_repo_delete(struct keel_db_conn *c, const char *id, enum catalog_outcome *outcome)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(id)};
    int64_t n = 0;
    keel_status rc = keel_db_exec(c, "DELETE FROM products WHERE id = $1", p, 1, &n);

    *outcome = n > 0 ? CATALOG_APPLIED : CATALOG_ABSENT;
    return rc;
}

/* After an adjustment changed nothing: absent, or the bound it would pass. */
static keel_status stock_why(struct keel_db_conn *c, struct stock_change *s)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(s->id)};
    int64_t stock = 0;
    keel_status rc;

    rc = keel_db_query_one(c, "SELECT stock FROM products WHERE id = $1", p, 1, int_row, &stock);
    if (rc == KEEL_E_NOT_FOUND) {
        s->outcome = CATALOG_ABSENT;
        return KEEL_OK;
    }
    if (rc == KEEL_OK)
        s->outcome = stock + s->delta < 0 ? CATALOG_OUT_OF_STOCK : CATALOG_STOCK_OVERFLOW;
    return rc;
}

/* The stock and version an adjustment returned (keel_db_row_fn). */
static keel_status stock_row(const struct keel_db_rows *r, void *arg)
{
    struct stock_change *s = arg;

    s->stock = keel_db_int64(r, 0);
    s->version = keel_db_int64(r, 1);
    return KEEL_OK;
}

keel_status catalog_repo_stock(struct keel_db_conn *c, struct stock_change *s)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(s->id), KEEL_DB_INT(s->delta), KEEL_DB_INT(s->now_us),
                                KEEL_DB_INT(CATALOG_STOCK_MAX)};
    keel_status rc;

    s->outcome = CATALOG_APPLIED;
    /* One statement: the bound is checked against the row as locked, so N
     * concurrent decrements of stock k succeed exactly min(N, k) times. */
    rc = keel_db_query_one(c,
                           "UPDATE products SET stock = stock + $2, version = version + 1,"
                           " updated_us = $3 WHERE id = $1 AND stock + $2 >= 0 AND stock + $2 <= $4"
                           " RETURNING stock, version",
                           p, KEEL_ARRAY_LEN(p), stock_row, s);
    return rc == KEEL_E_NOT_FOUND ? stock_why(c, s) : rc;
}

/* -------------------------------------------------------------- lists */

/* A statement assembled from constant fragments, with its parameters. */
struct sqlb {
    char sql[1024];
    size_t len;
    struct keel_db_param p[8];
    unsigned n;
    bool overflow;
};

static void sql_add(struct sqlb *b, const char *s)
{
    size_t n = strlen(s);

    if (b->len + n >= sizeof(b->sql)) {
        b->overflow = true;
        return;
    }
    memcpy(b->sql + b->len, s, n + 1);
    b->len += n;
}

/* Appends a fragment whose "%u"s all name the next parameter, v. */
static void sql_param(struct sqlb *b, const char *frag, struct keel_db_param v)
{
    char tmp[256];
    unsigned k = b->n + 1;

    if (b->n == KEEL_ARRAY_LEN(b->p)) {
        b->overflow = true;
        return;
    }
    b->p[b->n++] = v;
    /* Fragments hold the number at most twice. */
    snprintf(tmp, sizeof(tmp), frag, k, k);
    sql_add(b, tmp);
}

struct sort_spec {
    const char *order; /* ORDER BY clause */
    const char *after; /* rows after the cursor; %u and %u+1 are the key and the id */
};

static const struct sort_spec sorts[CATALOG_SORT_COUNT] = {
    [CATALOG_SORT_CREATED_DESC] = {" ORDER BY created_us DESC, id DESC",
                                   " AND (created_us, id) < ($%u, $%u)"},
    [CATALOG_SORT_CREATED] = {" ORDER BY created_us, id", " AND (created_us, id) > ($%u, $%u)"},
    [CATALOG_SORT_PRICE] = {" ORDER BY price_cents, id", " AND (price_cents, id) > ($%u, $%u)"},
    [CATALOG_SORT_PRICE_DESC] = {" ORDER BY price_cents DESC, id DESC",
                                 " AND (price_cents, id) < ($%u, $%u)"},
    [CATALOG_SORT_NAME] = {" ORDER BY name, id", " AND (name, id) > ($%u, $%u)"},
};

bool catalog_sort_is_int(enum catalog_sort s)
{
    return s != CATALOG_SORT_NAME;
}

static void list_sql(const struct catalog_list *l, struct sqlb *b)
{
    char frag[96];

    sql_add(b, "SELECT " CATALOG_COLS " FROM products WHERE 1 = 1");
    if (l->match_nothing)
        sql_add(b, " AND 1 = 0");
    if (l->category)
        sql_param(b, " AND category = $%u", KEEL_DB_TEXT(l->category));
    if (l->min_price >= 0)
        sql_param(b, " AND price_cents >= $%u", KEEL_DB_INT(l->min_price));
    if (l->max_price >= 0)
        sql_param(b, " AND price_cents <= $%u", KEEL_DB_INT(l->max_price));
    if (l->search)
        sql_param(b,
                  catalog_pg ? " AND search @@ plainto_tsquery('simple', $%u)"
                             : " AND rid IN (SELECT rowid FROM products_fts"
                               " WHERE products_fts MATCH $%u)",
                  KEEL_DB_TEXT(l->search));
    if (l->after) {
        /* Two parameters: the key, then the id. */
        snprintf(frag, sizeof(frag), sorts[l->sort].after, b->n + 1, b->n + 2);
        b->p[b->n++] =
            catalog_sort_is_int(l->sort) ? KEEL_DB_INT(l->after_int) : KEEL_DB_TEXT(l->after_text);
        b->p[b->n++] = KEEL_DB_UUID(l->after_id);
        sql_add(b, frag);
    }
    sql_add(b, sorts[l->sort].order);
    sql_param(b, " LIMIT $%u", KEEL_DB_INT(l->limit + 1));
}

/* The sort key of the last row shown, for the next cursor. */
struct last_row {
    char id[37];
    int64_t key_int;
    size_t key_len;
    char key_text[CATALOG_KEY_TEXT_MAX + 1];
};

static void remember(const struct catalog_list *l, const struct product *p, struct last_row *last)
{
    memcpy(last->id, p->id, sizeof(last->id));
    switch (l->sort) {
    case CATALOG_SORT_CREATED:
    case CATALOG_SORT_CREATED_DESC:
        last->key_int = p->created_us;
        break;
    case CATALOG_SORT_PRICE:
    case CATALOG_SORT_PRICE_DESC:
        last->key_int = p->price_cents;
        break;
    default:
        /* Names are at most CATALOG_NAME_MAX code points, so they fit. */
        last->key_len = p->name.len < sizeof(last->key_text) ? p->name.len : 0;
        memcpy(last->key_text, p->name.p, last->key_len);
        last->key_text[last->key_len] = '\0';
        break;
    }
}

static keel_status
render_rows(const struct catalog_list *l, struct keel_db_rows *r, struct keel_buf *out)
{
    struct last_row last;
    struct product p;
    struct keel_json j;
    char cursor[CATALOG_CURSOR_MAX];
    int64_t n = 0;
    keel_status rc;

    keel_json_begin(&j, out);
    keel_json_obj_open(&j);
    keel_json_key(&j, "items");
    keel_json_arr_open(&j);
    while ((rc = keel_db_next(r)) == KEEL_OK) {
        if (++n > l->limit) /* the extra row: only says a next page exists */
            break;
        if (!catalog_product_from_row(r, &p))
            return KEEL_E_DB;
        catalog_product_json(&j, &p);
        remember(l, &p, &last);
    }
    if (rc < 0)
        return rc;
    keel_json_arr_close(&j);
    keel_json_key(&j, "next_cursor");
    if (n > l->limit) {
        rc = catalog_cursor_encode(l, last.id, last.key_int, last.key_text, last.key_len, cursor,
                                   sizeof(cursor));
        if (rc < 0)
            return rc;
        keel_json_str(&j, cursor);
    } else {
        keel_json_null(&j);
    }
    keel_json_obj_close(&j);
    return keel_json_end(&j);
}

keel_status
catalog_repo_list(struct keel_db_conn *c, const struct catalog_list *l, struct keel_buf *out)
{
    struct sqlb b = {.len = 0};
    struct keel_db_rows *r;
    keel_status rc;

    list_sql(l, &b);
    if (KEEL_NEVER(b.overflow))
        return KEEL_E_INTERNAL;
    rc = keel_db_query(c, b.sql, b.p, b.n, &r);
    if (rc < 0)
        return rc;
    rc = render_rows(l, r, out);
    keel_db_rows_free(r);
    return rc;
}
