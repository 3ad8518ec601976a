/*
 * projection.c - from events to state: the fold the command side decides
 * on, the read model (orders, order_items) the query side reads, the
 * read-model queries, and the rebuild (docs/internals/orders.md
 * "Projection").
 *
 * DESIGN: one table says which status each event type leads to; the fold
 * and the projection both read it, so the command side and the read model
 * cannot disagree about what an event means. The projection is the only
 * code that writes orders and order_items: live commands call it inside
 * their transaction, right after the append, and `keel projections rebuild
 * orders` calls it for every event in seq order. Everything it writes
 * comes from the event (times included), never from the clock, so a
 * rebuild reproduces the live rows exactly.
 */
#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/arena.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/uuid.h"

#include "orders_int.h"

/* ---------------------------------------------------------- the table */

static const struct {
    const char *type;
    const char *status;
} moves[] = {
    {"OrderCreated", "pending"},         {"PaymentSucceeded", "paid"},
    {"PaymentFailed", "payment_failed"}, {"OrderShipped", "shipped"},
    {"OrderCancelled", "cancelled"},
};

const char *orders_status_after(const char *type)
{
    size_t i;

    for (i = 0; i < KEEL_ARRAY_LEN(moves); i++)
        if (strcmp(moves[i].type, type) == 0)
            return moves[i].status;
    return NULL;
}

bool orders_status_known(const char *status)
{
    size_t i;

    for (i = 0; i < KEEL_ARRAY_LEN(moves); i++)
        if (strcmp(moves[i].status, status) == 0)
            return true;
    return false;
}

/* ------------------------------------------------- OrderCreated's data */

struct created_item {
    const char *product_id;
    const char *name;
    int64_t unit_price_cents;
    int64_t quantity;
};

/* OrderCreated's data, parsed; the strings point into root. */
struct created {
    struct json_object *root;
    const char *user_id;
    const char *currency;
    int64_t total_cents;
    size_t nitems;
    struct created_item items[ORDERS_MAX_ITEMS];
};

static const char *member_str(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static bool member_int(struct json_object *o, const char *key, int64_t *out)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return false;
    *out = json_object_get_int64(v);
    return true;
}

static bool created_item(struct json_object *o, struct created_item *it)
{
    it->product_id = member_str(o, "product_id");
    it->name = member_str(o, "name");
    return it->product_id && keel_uuid_valid(it->product_id, strlen(it->product_id)) && it->name &&
           member_int(o, "unit_price_cents", &it->unit_price_cents) &&
           member_int(o, "quantity", &it->quantity) && it->quantity > 0;
}

/* Parses OrderCreated's data into cd; the caller puts cd->root. */
static keel_status created_parse(const struct keel_event *ev, struct created *cd)
{
    struct json_object *items;
    const char *why;
    size_t i;

    memset(cd, 0, sizeof(*cd));
    if (keel_json_parse(ev->data, ev->data_len ? ev->data_len : strlen(ev->data), 8, &cd->root,
                        &why) < 0)
        return KEEL_E_INTERNAL;
    cd->user_id = member_str(cd->root, "user_id");
    cd->currency = member_str(cd->root, "currency");
    if (!cd->user_id || !keel_uuid_valid(cd->user_id, strlen(cd->user_id)) || !cd->currency ||
        strlen(cd->currency) != 3 || !member_int(cd->root, "total_cents", &cd->total_cents) ||
        !json_object_object_get_ex(cd->root, "items", &items) ||
        !json_object_is_type(items, json_type_array))
        return KEEL_E_INTERNAL;
    cd->nitems = json_object_array_length(items);
    if (cd->nitems == 0 || cd->nitems > ORDERS_MAX_ITEMS)
        return KEEL_E_INTERNAL;
    for (i = 0; i < cd->nitems; i++)
        if (!created_item(json_object_array_get_idx(items, i), &cd->items[i]))
            return KEEL_E_INTERNAL;
    return KEEL_OK;
}

/* ---------------------------------------------------------------- fold */

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src);
}

keel_status orders_fold(struct orders_state *st, const struct keel_event *ev)
{
    const char *status = orders_status_after(ev->type);
    struct created cd;
    keel_status rc;
    size_t i;

    /* Another aggregate's stream (the store is shared): no such order. */
    if (strcmp(ev->stream_type, ORDERS_STREAM_TYPE) != 0)
        return KEEL_E_NOT_FOUND;
    if (ev->version != st->version + 1)
        return KEEL_E_INTERNAL; /* the store guarantees gapless streams */
    if (strcmp(ev->type, "OrderCreated") == 0) {
        rc = created_parse(ev, &cd);
        if (rc == KEEL_OK) {
            copy_str(st->user_id, sizeof(st->user_id), cd.user_id);
            copy_str(st->currency, sizeof(st->currency), cd.currency);
            st->total_cents = cd.total_cents;
            st->nitems = (unsigned)cd.nitems;
            for (i = 0; i < cd.nitems; i++) {
                copy_str(st->items[i].product_id, sizeof(st->items[i].product_id),
                         cd.items[i].product_id);
                st->items[i].quantity = cd.items[i].quantity;
            }
        }
        json_object_put(cd.root);
        if (rc < 0)
            return rc;
    } else if (st->version == 0) {
        return KEEL_E_INTERNAL; /* a stream starts with OrderCreated */
    }
    if (status)
        copy_str(st->status, sizeof(st->status), status);
    st->version = ev->version;
    return KEEL_OK;
}

/* ---------------------------------------------------------- projection */

/* Every line of the order in one multi-row INSERT: one round trip
 * whatever the line count. The order id is $1 once; each line adds five
 * parameters. The text differs by line count only, so each count is one
 * cached statement. */
#define ITEM_PARAMS 5
static keel_status
insert_items(struct keel_db_conn *c, const char *order_id, const struct created *cd)
{
    static const char head[] = "INSERT INTO order_items (order_id, line, product_id, name,"
                               " unit_price_cents, quantity) VALUES ";
    struct keel_db_param p[1 + ITEM_PARAMS * ORDERS_MAX_ITEMS];
    char sql[sizeof(head) + ORDERS_MAX_ITEMS * 48];
    size_t i, len = sizeof(head) - 1;
    unsigned n = 1, k;

    memcpy(sql, head, len);
    p[0] = KEEL_DB_UUID(order_id);
    for (i = 0; i < cd->nitems; i++) {
        k = n + 1; /* the line's first parameter number */
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s($1, $%u, $%u, $%u, $%u, $%u)",
                                i ? ", " : "", k, k + 1, k + 2, k + 3, k + 4);
        p[n++] = KEEL_DB_INT((int64_t)i + 1);
        p[n++] = KEEL_DB_UUID(cd->items[i].product_id);
        p[n++] = KEEL_DB_TEXT(cd->items[i].name);
        p[n++] = KEEL_DB_INT(cd->items[i].unit_price_cents);
        p[n++] = KEEL_DB_INT(cd->items[i].quantity);
    }
    return keel_db_exec_deferred(c, sql, p, n);
}

static keel_status project_created(struct keel_db_conn *c, const struct keel_event *ev)
{
    struct created cd;
    keel_status rc;

    if (ev->version != 1)
        return KEEL_E_INTERNAL;
    rc = created_parse(ev, &cd);
    if (rc == KEEL_OK) {
        struct keel_db_param p[] = {
            KEEL_DB_UUID(ev->stream_id), KEEL_DB_UUID(cd.user_id),  KEEL_DB_TEXT("pending"),
            KEEL_DB_INT(cd.total_cents), KEEL_DB_TEXT(cd.currency), KEEL_DB_INT(ev->version),
            KEEL_DB_INT(ev->created_us),
        };

        rc = keel_db_exec_deferred(c,
                                   "INSERT INTO orders (id, user_id, status, total_cents, currency,"
                                   " version, created_us, updated_us)"
                                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                                   p, KEEL_ARRAY_LEN(p));
    }
    if (rc == KEEL_OK)
        rc = insert_items(c, ev->stream_id, &cd);
    json_object_put(cd.root);
    return rc;
}

keel_status orders_project(struct keel_db_conn *c, const struct keel_event *ev)
{
    const char *status;
    int64_t n = 0;
    keel_status rc;

    if (strcmp(ev->type, "OrderCreated") == 0)
        return project_created(c, ev);
    status = orders_status_after(ev->type);
    {
        struct keel_db_param p[] = {KEEL_DB_UUID(ev->stream_id), KEEL_DB_INT(ev->version),
                                    KEEL_DB_INT(ev->created_us), KEEL_DB_INT(ev->version - 1),
                                    KEEL_DB_TEXT(status)};

        /* An unknown type (a newer Keel's event) moves only the version. */
        if (status)
            rc = keel_db_exec(c,
                              "UPDATE orders SET status = $5, version = $2, updated_us = $3"
                              " WHERE id = $1 AND version = $4",
                              p, 5, &n);
        else
            rc = keel_db_exec(c,
                              "UPDATE orders SET version = $2, updated_us = $3"
                              " WHERE id = $1 AND version = $4",
                              p, 4, &n);
    }
    if (rc < 0)
        return rc;
    if (n != 1) {
        keel_log(KEEL_LOG_ERROR,
                 "orders read model out of step: run 'keel projections rebuild"
                 " orders'",
                 KEEL_LF_STR("order_id", ev->stream_id), KEEL_LF_INT("version", ev->version));
        return KEEL_E_INTERNAL;
    }
    return KEEL_OK;
}

/* ------------------------------------------------------------ queries */

/* Every query below selects these columns, an order's row joined to its
 * lines (one row per line, lines in order). */
#define ORDER_COLS                                                                                 \
    "o.id, o.user_id, o.status, o.total_cents, o.currency, o.created_us, o.updated_us,"            \
    " i.product_id, i.name, i.unit_price_cents, i.quantity"

static void time_json(struct keel_json *j, const char *key, int64_t us)
{
    char t[KEEL_TIME_STRLEN];

    keel_time_format(us, t);
    keel_json_key(j, key);
    keel_json_str(j, t);
}

/* An order's head, from a row or from an event. */
struct order_head {
    const char *id, *user_id, *status, *currency;
    int64_t total_cents, created_us, updated_us;
};

/* Opens an order object and writes its head; the lines follow. */
static void head_json(struct keel_json *j, const struct order_head *h)
{
    keel_json_obj_open(j);
    keel_json_key(j, "id");
    keel_json_str(j, h->id);
    keel_json_key(j, "user_id");
    keel_json_str(j, h->user_id);
    keel_json_key(j, "status");
    keel_json_str(j, h->status);
    keel_json_key(j, "total_cents");
    keel_json_int(j, h->total_cents);
    keel_json_key(j, "currency");
    keel_json_str(j, h->currency);
    time_json(j, "created_at", h->created_us);
    time_json(j, "updated_at", h->updated_us);
    keel_json_key(j, "items");
    keel_json_arr_open(j);
}

static void
line_json(struct keel_json *j, const char *product_id, const char *name, int64_t price, int64_t qty)
{
    keel_json_obj_open(j);
    keel_json_key(j, "product_id");
    keel_json_str(j, product_id);
    keel_json_key(j, "name");
    keel_json_str(j, name);
    keel_json_key(j, "unit_price_cents");
    keel_json_int(j, price);
    keel_json_key(j, "quantity");
    keel_json_int(j, qty);
    keel_json_key(j, "line_total_cents");
    keel_json_int(j, price * qty); /* checked against overflow when the order was priced */
    keel_json_obj_close(j);
}

/* Opens an order object from the current row and writes its head. */
static void order_open(struct keel_json *j, struct keel_db_rows *r, const char *id)
{
    char uid[37];
    struct order_head h = {
        .id = id,
        .user_id = keel_db_uuid(r, 1, uid) ? uid : "",
        .status = keel_db_text(r, 2, NULL),
        .total_cents = keel_db_int64(r, 3),
        .currency = keel_db_text(r, 4, NULL),
        .created_us = keel_db_int64(r, 5),
        .updated_us = keel_db_int64(r, 6),
    };

    head_json(j, &h);
}

static void order_line(struct keel_json *j, struct keel_db_rows *r)
{
    char pid[37];

    if (keel_db_is_null(r, 7) || !keel_db_uuid(r, 7, pid))
        return; /* an order without lines (LEFT JOIN) */
    line_json(j, pid, keel_db_text(r, 8, NULL), keel_db_int64(r, 9), keel_db_int64(r, 10));
}

static void order_close(struct keel_json *j)
{
    keel_json_arr_close(j);
    keel_json_obj_close(j);
}

keel_status orders_render_created(const struct keel_event *ev, struct keel_buf *out)
{
    struct created cd;
    struct keel_json j;
    keel_status rc;
    size_t i;

    keel_buf_reset(out);
    rc = created_parse(ev, &cd);
    if (rc == KEEL_OK) {
        struct order_head h = {
            .id = ev->stream_id,
            .user_id = cd.user_id,
            .status = orders_status_after(ev->type),
            .total_cents = cd.total_cents,
            .currency = cd.currency,
            .created_us = ev->created_us,
            .updated_us = ev->created_us,
        };

        keel_json_begin(&j, out);
        head_json(&j, &h);
        for (i = 0; i < cd.nitems; i++)
            line_json(&j, cd.items[i].product_id, cd.items[i].name, cd.items[i].unit_price_cents,
                      cd.items[i].quantity);
        order_close(&j);
        rc = keel_json_end(&j) < 0 ? KEEL_E_TOO_LARGE : KEEL_OK;
    }
    json_object_put(cd.root);
    return rc;
}

keel_status
orders_render(struct keel_db_conn *c, const char *id, struct keel_buf *out, char owner_out[37])
{
    struct keel_db_param p[] = {KEEL_DB_UUID(id)};
    struct keel_db_rows *r;
    struct keel_json j;
    bool open = false;
    keel_status rc;

    keel_buf_reset(out);
    rc = keel_db_query(c,
                       "SELECT " ORDER_COLS " FROM orders o"
                       " LEFT JOIN order_items i ON i.order_id = o.id"
                       " WHERE o.id = $1 ORDER BY i.line",
                       p, 1, &r);
    if (rc < 0)
        return rc;
    keel_json_begin(&j, out);
    while ((rc = keel_db_next(r)) == KEEL_OK) {
        if (!open) {
            if (!keel_db_uuid(r, 1, owner_out))
                owner_out[0] = '\0';
            order_open(&j, r, id);
            open = true;
        }
        order_line(&j, r);
    }
    keel_db_rows_free(r);
    if (rc != KEEL_DONE)
        return rc < 0 ? rc : KEEL_E_DB;
    if (!open)
        return KEEL_E_NOT_FOUND;
    order_close(&j);
    return keel_json_end(&j) < 0 ? KEEL_E_TOO_LARGE : KEEL_OK;
}

/* The list's statement for each combination of filters (bit 0: user,
 * 1: status, 2: cursor); parameters are numbered in that order, then the
 * limit. Constant strings, so each is prepared once per connection. */
#define LIST_SQL(W, L)                                                                             \
    "SELECT " ORDER_COLS " FROM (SELECT * FROM orders WHERE 1 = 1" W " ORDER BY id LIMIT " L       \
    ") o LEFT JOIN order_items i ON i.order_id = o.id ORDER BY o.id, i.line"

static const char *const list_sql[8] = {
    LIST_SQL("", "$1"),
    LIST_SQL(" AND user_id = $1", "$2"),
    LIST_SQL(" AND status = $1", "$2"),
    LIST_SQL(" AND user_id = $1 AND status = $2", "$3"),
    LIST_SQL(" AND id > $1", "$2"),
    LIST_SQL(" AND user_id = $1 AND id > $2", "$3"),
    LIST_SQL(" AND status = $1 AND id > $2", "$3"),
    LIST_SQL(" AND user_id = $1 AND status = $2 AND id > $3", "$4"),
};

static keel_status list_rows(struct keel_db_rows *r, struct orders_page *pg, struct keel_json *j)
{
    char id[37] = "", cur[37];
    bool open = false;
    keel_status rc;

    while ((rc = keel_db_next(r)) == KEEL_OK) {
        if (!keel_db_uuid(r, 0, cur))
            return KEEL_E_DB;
        if (strcmp(cur, id) != 0) {
            if (open)
                order_close(j);
            open = false;
            memcpy(id, cur, sizeof(id));
            if (++pg->n > pg->limit)
                return KEEL_DONE; /* the extra row: a next page exists */
            memcpy(pg->last, id, sizeof(pg->last));
            order_open(j, r, id);
            open = true;
        }
        order_line(j, r);
    }
    if (open)
        order_close(j);
    return rc;
}

keel_status orders_list(struct keel_db_conn *c, struct orders_page *pg)
{
    struct keel_db_param p[4];
    struct keel_db_rows *r;
    struct keel_json j;
    unsigned n = 0, which = 0;
    char cur[64];
    keel_status rc;

    if (pg->user_id[0]) {
        p[n++] = KEEL_DB_UUID(pg->user_id);
        which |= 1;
    }
    if (pg->status) {
        p[n++] = KEEL_DB_TEXT(pg->status);
        which |= 2;
    }
    if (pg->after[0]) {
        p[n++] = KEEL_DB_UUID(pg->after);
        which |= 4;
    }
    p[n++] = KEEL_DB_INT(pg->limit + 1);
    rc = keel_db_query(c, list_sql[which], p, n, &r);
    if (rc < 0)
        return rc;
    keel_json_begin(&j, &pg->out);
    keel_json_obj_open(&j);
    keel_json_key(&j, "items");
    keel_json_arr_open(&j);
    rc = list_rows(r, pg, &j);
    keel_db_rows_free(r);
    if (rc != KEEL_DONE)
        return rc < 0 ? rc : KEEL_E_DB;
    keel_json_arr_close(&j);
    keel_json_key(&j, "next_cursor");
    if (pg->n > pg->limit) {
        sodium_bin2base64(cur, sizeof(cur), (const unsigned char *)pg->last, 36,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        keel_json_str(&j, cur);
    } else {
        keel_json_null(&j);
    }
    keel_json_obj_close(&j);
    return keel_json_end(&j) < 0 ? KEEL_E_TOO_LARGE : KEEL_OK;
}

/* ------------------------------------------------------------- rebuild */

#define REBUILD_BATCH 256

struct rebuild {
    bool postgres;
    struct keel_arena *arena; /* one batch of events at a time */
    struct keel_event batch[REBUILD_BATCH];
    unsigned n;
    struct orders_rebuild_stats stats;
};

/* Copies a scanned event into the batch (the row dies after the call). */
static keel_status keep(const struct keel_event *ev, void *arg)
{
    struct rebuild *rb = arg;
    struct keel_event *e = &rb->batch[rb->n];

    *e = *ev;
    e->stream_id = keel_arena_strdup(rb->arena, ev->stream_id);
    e->stream_type = keel_arena_strdup(rb->arena, ev->stream_type);
    e->type = keel_arena_strdup(rb->arena, ev->type);
    e->data = keel_arena_strndup(rb->arena, ev->data, ev->data_len);
    e->metadata = keel_arena_strndup(rb->arena, ev->metadata, ev->metadata_len);
    if (!e->stream_id || !e->stream_type || !e->type || !e->data || !e->metadata)
        return KEEL_E_NOMEM;
    rb->n++;
    return KEEL_OK;
}

/* Reads column 0 as an integer (keel_db_row_fn). */
static keel_status int_row(const struct keel_db_rows *r, void *arg)
{
    *(int64_t *)arg = keel_db_int64(r, 0);
    return KEEL_OK;
}

static keel_status count(struct keel_db_conn *c, const char *sql, int64_t *out)
{
    keel_status rc = keel_db_query_one(c, sql, NULL, 0, int_row, out);

    return rc == KEEL_E_NOT_FOUND ? KEEL_E_DB : rc; /* COUNT(*) always has its row */
}

static keel_status rebuild_tx(struct keel_db_conn *c, void *arg)
{
    struct rebuild *rb = arg;
    int64_t after = 0, seen;
    keel_status rc = KEEL_OK;
    unsigned i;

    memset(&rb->stats, 0, sizeof(rb->stats)); /* a retried transaction starts over */
    /* SQLite: BEGIN IMMEDIATE holds the only write lock. PostgreSQL: no
     * append may commit between our scan and our commit; readers go on. */
    if (rb->postgres)
        rc = keel_db_exec(c, "LOCK TABLE events IN EXCLUSIVE MODE", NULL, 0, NULL);
    if (rc == KEEL_OK)
        rc = keel_db_exec(c, "DELETE FROM order_items", NULL, 0, NULL);
    if (rc == KEEL_OK)
        rc = keel_db_exec(c, "DELETE FROM orders", NULL, 0, NULL);
    while (rc == KEEL_OK) {
        keel_arena_reset(rb->arena);
        rb->n = 0;
        rc = keel_events_scan(c, ORDERS_STREAM_TYPE, after, REBUILD_BATCH, keep, rb, &seen);
        for (i = 0; rc == KEEL_OK && i < rb->n; i++) {
            rc = orders_project(c, &rb->batch[i]);
            after = rb->batch[i].seq;
        }
        rb->stats.events += rb->n;
        if (rc == KEEL_OK && seen < REBUILD_BATCH)
            break;
    }
    if (rc == KEEL_OK)
        rc = count(c, "SELECT COUNT(*) FROM orders", &rb->stats.orders);
    if (rc == KEEL_OK)
        rc = count(c, "SELECT COUNT(*) FROM order_items", &rb->stats.items);
    return rc;
}

keel_status orders_rebuild(struct keel_db *db, struct orders_rebuild_stats *out)
{
    struct rebuild *rb = keel_xcalloc(1, sizeof(*rb));
    keel_status rc;

    rb->postgres = strcmp(keel_db_dialect(db), "postgres") == 0;
    rb->arena = keel_arena_new(256u << 20);
    rc = keel_db_transaction(db, NULL, rebuild_tx, rb);
    if (rc == KEEL_OK)
        *out = rb->stats;
    keel_arena_destroy(rb->arena);
    free(rb);
    return rc;
}
