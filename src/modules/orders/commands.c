/*
 * commands.c - the write side of orders: every state change is one
 * transaction that loads the order's stream, folds it to state, decides,
 * appends the event with the expected version, applies its side effects
 * (stock), projects it into the read model and writes it to the outbox
 * (docs/internals/orders.md "The command path").
 *
 * DESIGN: a command that loses the race for its stream's next version
 * (KEEL_E_CONFLICT from the append: another transaction appended first)
 * has decided on a stale state, so the whole transaction is rolled back
 * and the command runs again from the load, up to ORDERS_ATTEMPTS times
 * with jittered backoff, then answers 409. keel_db_transaction already
 * retries serialization failures and deadlocks; this loop adds the
 * retry that only the domain can judge safe.
 *
 * Stock belongs to the catalog (include/keel/catalog.h): a create
 * reserves its lines and a cancellation releases them inside the
 * command's transaction, so a refusal or a lost race rolls the stock back
 * with everything else. The catalog takes its locks in one global order,
 * so concurrent orders and cancellations cannot deadlock.
 *
 * Domain refusals (out of stock, illegal transition...) return
 * KEEL_E_INVALID from the transaction function, which rolls everything
 * back without a storage warning in the log, and say why in cmd->fail.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keel/catalog.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/metrics.h"

#include "orders_int.h"

#define NAMES_MAX (1u << 20)

_Static_assert(ORDERS_MAX_ITEMS <= KEEL_CATALOG_LINES_MAX, "an order's lines fit a reservation");

/* keel_orders_commands_total{command,result}: result ok, refused (a 4xx
 * decision: out of stock, illegal transition...) or error (storage);
 * keel_orders_append_conflicts_total: appends that lost the race for their
 * stream's next version (each one reran its command). */
static struct keel_metric *m_commands, *m_conflicts;

static const char *const cmd_names[] = {
    [ORDERS_CREATE] = "create", [ORDERS_PAY_OK] = "pay",    [ORDERS_PAY_FAILED] = "pay_failed",
    [ORDERS_SHIP] = "ship",     [ORDERS_CANCEL] = "cancel",
};

static const char *const metric_labels[] = {"command", "result"};

const struct keel_metric_def orders_metrics[ORDERS_NMETRICS] = {
    {.kind = KEEL_METRIC_COUNTER,
     .name = "keel_orders_commands_total",
     .help = "Order commands run, by command and result.",
     .nlabels = 2,
     .labels = metric_labels,
     .out = &m_commands},
    {.kind = KEEL_METRIC_COUNTER,
     .name = "keel_orders_append_conflicts_total",
     .help = "Event appends that lost a race and reran their command.",
     .out = &m_conflicts},
};

static void count_command(const struct orders_cmd *cmd)
{
    const char *result = cmd->rc == KEEL_OK              ? "ok"
                         : cmd->fail != ORDERS_FAIL_NONE ? "refused"
                                                         : "error";

    keel_metric_add(m_commands, (const char *const[]){cmd_names[cmd->kind], result}, 1);
}

/* Refuses the command: the transaction rolls back. */
static keel_status refuse(struct orders_cmd *cmd, enum orders_fail why, unsigned index)
{
    cmd->fail = why;
    cmd->fail_index = index;
    return KEEL_E_INVALID;
}

/* Appends ev, projects it and puts it in the outbox. */
static keel_status commit_event(struct keel_db_conn *c,
                                struct orders_cmd *cmd,
                                struct keel_event *ev,
                                int64_t expected)
{
    struct keel_buf payload;
    struct keel_json j;
    keel_status rc;

    rc = keel_events_append(c, ev, expected);
    if (rc == KEEL_E_CONFLICT && expected > 0)
        cmd->append_conflict = true;
    if (rc < 0)
        return rc;
    rc = orders_project(c, ev);
    if (rc < 0)
        return rc;
    keel_buf_init(&payload, ORDERS_JSON_MAX);
    keel_json_begin(&j, &payload);
    keel_events_json(&j, ev);
    rc = keel_json_end(&j);
    if (rc == KEEL_OK)
        rc = keel_outbox_put(c, ORDERS_TOPIC, ev->stream_id, payload.data, payload.len);
    keel_buf_free(&payload);
    return rc;
}

static struct keel_event
new_event(const struct orders_cmd *cmd, const char *type, const struct keel_buf *data)
{
    struct keel_event ev = {
        .stream_id = cmd->order_id,
        .stream_type = ORDERS_STREAM_TYPE,
        .type = type,
        .data = data->data,
        .data_len = data->len,
        .metadata = cmd->metadata,
    };

    return ev;
}

/* ============================================================= create */

/* What the catalog said about one line. */
struct priced {
    size_t name; /* offset into names */
    int64_t unit_price_cents;
    char currency[4];
};

struct create_ctx {
    struct orders_cmd *cmd;
    struct priced priced[ORDERS_MAX_ITEMS];
    struct keel_buf names;
    int64_t total_cents;
};

/* The lines as the catalog takes them (ids borrowed from `from`). */
static void catalog_lines(const struct orders_line *from, unsigned n, struct keel_catalog_line *to)
{
    unsigned i;

    for (i = 0; i < n; i++)
        to[i] = (struct keel_catalog_line){from[i].product_id, from[i].quantity};
}

/* What the catalog said about reserved line i (keel_catalog_item_fn). */
static keel_status priced(unsigned i, const struct keel_catalog_item *item, void *arg)
{
    struct create_ctx *x = arg;

    x->priced[i].name = x->names.len;
    x->priced[i].unit_price_cents = item->price.cents;
    memcpy(x->priced[i].currency, item->price.currency, sizeof(x->priced[i].currency));
    if (keel_buf_append(&x->names, item->name, item->name_len) < 0 ||
        keel_buf_appendc(&x->names, '\0') < 0)
        return KEEL_E_TOO_LARGE;
    return KEEL_OK;
}

/* Takes every line from stock and reads its price; a line the catalog
 * refuses (unknown product, short of stock) refuses the order. */
static keel_status reserve(struct keel_db_conn *c, struct create_ctx *x)
{
    struct orders_cmd *cmd = x->cmd;
    struct keel_catalog_line lines[ORDERS_MAX_ITEMS];
    struct keel_catalog_reservation res;
    keel_status rc;

    catalog_lines(cmd->lines, cmd->nlines, lines);
    rc = keel_catalog_reserve(c, lines, cmd->nlines, priced, x, &res);
    if (rc < 0 || res.outcome == KEEL_CATALOG_RESERVED)
        return rc;
    return refuse(cmd,
                  res.outcome == KEEL_CATALOG_OUT_OF_STOCK ? ORDERS_FAIL_OUT_OF_STOCK
                                                           : ORDERS_FAIL_UNKNOWN_PRODUCT,
                  res.line);
}

/* One currency for the whole order; the total within int64. */
static keel_status price(struct create_ctx *x)
{
    struct orders_cmd *cmd = x->cmd;
    int64_t line;
    unsigned i;

    x->total_cents = 0;
    for (i = 0; i < cmd->nlines; i++) {
        if (strcmp(x->priced[i].currency, x->priced[0].currency) != 0)
            return refuse(cmd, ORDERS_FAIL_CURRENCY, i);
        if (__builtin_mul_overflow(x->priced[i].unit_price_cents, cmd->lines[i].quantity, &line) ||
            __builtin_add_overflow(x->total_cents, line, &x->total_cents))
            return refuse(cmd, ORDERS_FAIL_TOTAL, i);
    }
    return KEEL_OK;
}

/* OrderCreated's data: everything the projection and the fold need, so
 * the read model never has to ask the catalog again (prices change; an
 * order keeps the prices it was placed at). */
static keel_status created_data(const struct create_ctx *x, struct keel_buf *out)
{
    const struct orders_cmd *cmd = x->cmd;
    struct keel_json j;
    unsigned i;

    keel_json_begin(&j, out);
    keel_json_obj_open(&j);
    keel_json_key(&j, "user_id");
    keel_json_str(&j, cmd->actor_id);
    keel_json_key(&j, "currency");
    keel_json_str(&j, x->priced[0].currency);
    keel_json_key(&j, "total_cents");
    keel_json_int(&j, x->total_cents);
    keel_json_key(&j, "items");
    keel_json_arr_open(&j);
    for (i = 0; i < cmd->nlines; i++) {
        keel_json_obj_open(&j);
        keel_json_key(&j, "product_id");
        keel_json_str(&j, cmd->lines[i].product_id);
        keel_json_key(&j, "name");
        keel_json_str(&j, x->names.data + x->priced[i].name);
        keel_json_key(&j, "unit_price_cents");
        keel_json_int(&j, x->priced[i].unit_price_cents);
        keel_json_key(&j, "quantity");
        keel_json_int(&j, cmd->lines[i].quantity);
        keel_json_key(&j, "line_total_cents");
        keel_json_int(&j, x->priced[i].unit_price_cents * cmd->lines[i].quantity);
        keel_json_obj_close(&j);
    }
    keel_json_arr_close(&j);
    keel_json_obj_close(&j);
    return keel_json_end(&j);
}

static keel_status create_steps(struct keel_db_conn *c, struct create_ctx *x, struct keel_buf *data)
{
    struct orders_cmd *cmd = x->cmd;
    struct keel_event ev;
    char location[64];
    keel_status rc;

    rc = reserve(c, x);
    if (rc == KEEL_OK)
        rc = price(x);
    if (rc == KEEL_OK)
        rc = created_data(x, data);
    if (rc < 0)
        return rc;
    ev = new_event(cmd, "OrderCreated", data);
    rc = commit_event(c, cmd, &ev, 0);
    if (rc == KEEL_OK)
        rc = orders_render_created(&ev, &cmd->out);
    if (rc == KEEL_OK && cmd->idem) {
        snprintf(location, sizeof(location), "/api/v1/orders/%s", cmd->order_id);
        rc = orders_idem_finish(c, cmd->idem, 201, cmd->out.data, cmd->out.len, location);
        if (rc == KEEL_E_CONFLICT)
            return refuse(cmd, ORDERS_FAIL_IDEM_LOST, 0);
    }
    return rc;
}

static keel_status create_tx(struct keel_db_conn *c, void *arg)
{
    struct create_ctx x = {.cmd = arg};
    struct keel_buf data;
    keel_status rc;

    keel_buf_init(&x.names, NAMES_MAX);
    keel_buf_init(&data, ORDERS_JSON_MAX);
    rc = create_steps(c, &x, &data);
    keel_buf_free(&data);
    keel_buf_free(&x.names);
    return rc;
}

/* ======================================================== transitions */

/* Which command appends which event, from which statuses (SPEC section 3:
 * pending -> paid | payment_failed; paid -> shipped; pending | paid ->
 * cancelled). */
static const struct rule {
    enum orders_cmd_kind kind;
    const char *event;
    const char *from[2];
} rules[] = {
    {ORDERS_PAY_OK, "PaymentSucceeded", {"pending", NULL}},
    {ORDERS_PAY_FAILED, "PaymentFailed", {"pending", NULL}},
    {ORDERS_SHIP, "OrderShipped", {"paid", NULL}},
    {ORDERS_CANCEL, "OrderCancelled", {"pending", "paid"}},
};

static const struct rule *rule_of(enum orders_cmd_kind kind)
{
    size_t i;

    for (i = 0; i < KEEL_ARRAY_LEN(rules); i++)
        if (rules[i].kind == kind)
            return &rules[i];
    return NULL;
}

static bool allowed_from(const struct rule *r, const char *status)
{
    size_t i;

    for (i = 0; i < KEEL_ARRAY_LEN(r->from); i++)
        if (r->from[i] && strcmp(r->from[i], status) == 0)
            return true;
    return false;
}

/* Who may change this order. Ship and pay are gated by their routes
 * (orders:manage; the debug switch). Cancel: the owner or
 * orders:cancel_any; someone who can see every order but not cancel it
 * (a manager) gets 403, anyone else 404 (the order's existence stays
 * hidden). */
static enum orders_fail access(const struct orders_cmd *cmd, const struct orders_state *st)
{
    bool own = cmd->actor_id[0] && strcmp(cmd->actor_id, st->user_id) == 0;

    if (cmd->kind != ORDERS_CANCEL || own || cmd->can_cancel_any)
        return ORDERS_FAIL_NONE;
    return cmd->can_read_all ? ORDERS_FAIL_FORBIDDEN : ORDERS_FAIL_NOT_FOUND;
}

static keel_status fold_one(const struct keel_event *ev, void *arg)
{
    return orders_fold(arg, ev);
}

static keel_status transition_data(const struct orders_cmd *cmd, struct keel_buf *out)
{
    const struct orders_state *st = &cmd->state;
    struct keel_json j;
    unsigned i;

    keel_json_begin(&j, out);
    keel_json_obj_open(&j);
    switch (cmd->kind) {
    case ORDERS_PAY_OK:
        keel_json_key(&j, "amount_cents");
        keel_json_int(&j, st->total_cents);
        keel_json_key(&j, "currency");
        keel_json_str(&j, st->currency);
        break;
    case ORDERS_PAY_FAILED:
        keel_json_key(&j, "reason");
        keel_json_str(&j, "declined");
        break;
    case ORDERS_CANCEL:
        keel_json_key(&j, "previous_status");
        keel_json_str(&j, st->status);
        keel_json_key(&j, "restocked");
        keel_json_arr_open(&j);
        for (i = 0; i < st->nitems; i++) {
            keel_json_obj_open(&j);
            keel_json_key(&j, "product_id");
            keel_json_str(&j, st->items[i].product_id);
            keel_json_key(&j, "quantity");
            keel_json_int(&j, st->items[i].quantity);
            keel_json_obj_close(&j);
        }
        keel_json_arr_close(&j);
        /* A paid order is refunded in full; the payments issue acts on it. */
        keel_json_key(&j, "refund");
        if (strcmp(st->status, "paid") == 0) {
            keel_json_obj_open(&j);
            keel_json_key(&j, "amount_cents");
            keel_json_int(&j, st->total_cents);
            keel_json_key(&j, "currency");
            keel_json_str(&j, st->currency);
            keel_json_obj_close(&j);
        } else {
            keel_json_null(&j);
        }
        break;
    default:
        break;
    }
    keel_json_obj_close(&j);
    return keel_json_end(&j);
}

/* Puts every line's quantity back into the catalog's stock. */
static keel_status restock(struct keel_db_conn *c, const struct orders_state *st)
{
    struct keel_catalog_line lines[ORDERS_MAX_ITEMS];

    catalog_lines(st->items, st->nitems, lines);
    return keel_catalog_release(c, lines, st->nitems);
}

static keel_status
transition_steps(struct keel_db_conn *c, struct orders_cmd *cmd, struct keel_buf *data)
{
    const struct rule *r = rule_of(cmd->kind);
    struct orders_state *st = &cmd->state;
    enum orders_fail why;
    struct keel_event ev;
    char owner[37];
    keel_status rc;

    memset(st, 0, sizeof(*st));
    rc = keel_events_load(c, cmd->order_id, fold_one, st, NULL);
    if (rc < 0 && rc != KEEL_E_NOT_FOUND)
        return rc;
    if (rc == KEEL_E_NOT_FOUND || st->version == 0)
        return refuse(cmd, ORDERS_FAIL_NOT_FOUND, 0);
    why = access(cmd, st);
    if (why != ORDERS_FAIL_NONE)
        return refuse(cmd, why, 0);
    if (!r || !allowed_from(r, st->status)) {
        snprintf(cmd->from_status, sizeof(cmd->from_status), "%s", st->status);
        return refuse(cmd, ORDERS_FAIL_STATE, 0);
    }
    rc = transition_data(cmd, data);
    if (rc < 0)
        return rc;
    ev = new_event(cmd, r->event, data);
    /* The append first: a lost race is found before any side effect. */
    rc = commit_event(c, cmd, &ev, st->version);
    if (rc == KEEL_OK && cmd->kind == ORDERS_CANCEL)
        rc = restock(c, st);
    if (rc == KEEL_OK)
        rc = orders_fold(st, &ev);
    if (rc == KEEL_OK)
        rc = orders_render(c, cmd->order_id, &cmd->out, owner);
    return rc;
}

static keel_status transition_tx(struct keel_db_conn *c, void *arg)
{
    struct keel_buf data;
    keel_status rc;

    keel_buf_init(&data, ORDERS_JSON_MAX);
    rc = transition_steps(c, arg, &data);
    keel_buf_free(&data);
    return rc;
}

/* ============================================================ running */

struct job {
    struct keel_db *db;
    struct keel_db_session sess;
    struct orders_cmd *cmd;
    keel_resume_fn done;
};

static void backoff(unsigned attempt)
{
    uint32_t ms = 1 + randombytes_uniform(5u << attempt); /* full jitter */
    struct timespec ts = {0, (long)ms * 1000000L};

    nanosleep(&ts, NULL);
}

static void work(void *arg)
{
    struct job *j = arg;
    struct orders_cmd *cmd = j->cmd;
    keel_db_tx_fn fn = cmd->kind == ORDERS_CREATE ? create_tx : transition_tx;
    keel_status rc;

    for (cmd->attempts = 1;; cmd->attempts++) {
        cmd->append_conflict = false;
        cmd->fail = ORDERS_FAIL_NONE;
        cmd->fail_index = 0;
        keel_buf_reset(&cmd->out);
        rc = keel_db_transaction(j->db, &j->sess, fn, cmd);
        if (rc != KEEL_E_CONFLICT || !cmd->append_conflict)
            break;
        keel_metric_add(m_conflicts, NULL, 1);
        if (cmd->attempts >= ORDERS_ATTEMPTS) {
            cmd->fail = ORDERS_FAIL_BUSY;
            break;
        }
        backoff(cmd->attempts);
    }
    cmd->rc = rc;
    count_command(cmd);
}

static keel_status work_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct job *j = arg;

    if (rc < 0) /* not run: no lane thread came free in time */
        j->cmd->rc = rc;
    return j->done(req, j->cmd);
}

void orders_cmd_free(void *arg)
{
    struct orders_cmd *cmd = arg;

    keel_buf_free(&cmd->out);
}

keel_status orders_submit(struct keel_request *req, struct orders_cmd *cmd, keel_resume_fn done)
{
    struct job *j = keel_arena_calloc(req->arena, 1, sizeof(*j));

    if (!j)
        return KEEL_E_NOMEM;
    j->db = keel_db_default();
    if (!j->db)
        return keel_errorf(req, KEEL_E_UNAVAILABLE, "no database configured");
    j->sess.key = req->task.user_id;
    j->cmd = cmd;
    j->done = done;
    return keel_db_offload(req, work, work_done, j);
}
