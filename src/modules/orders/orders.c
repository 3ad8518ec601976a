/*
 * orders.c - the orders module (issue 5; SPEC section 3 "Orders"): routes
 * and schemas as data, the handlers, and their HTTP answers. The write
 * side is commands.c, the read model projection.c, Idempotency-Key
 * idempotency.c; docs/internals/orders.md has the design.
 *
 * Decisions the SPEC leaves open (documented in orders.md):
 *   - a product named twice in one order is merged into one line (the
 *     quantities add up, at most 1000 in all);
 *   - an unknown product is a 400 validation-error on its field; lines
 *     priced in several currencies a 400 validation-error on "items";
 *   - a user without orders:read_all who lists ?user_id= of someone else
 *     gets 403 (the filter, not an object, is refused; no id leaks);
 *   - cancel needs orders:create on the route (customers), then the
 *     owner or orders:cancel_any; a manager (who sees every order but may
 *     not cancel others') gets 403, anyone else 404;
 *   - the test-only route POST /debug/orders/{id}/pay is always in the
 *     table (the module registry is not ours to change) and answers 404
 *     unless KEEL_DEBUG_ROUTES is on.
 */
#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/auth.h"
#include "keel/catalog.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/module.h"
#include "keel/problem.h"
#include "keel/schema.h"
#include "keel/uuid.h"

#include "orders_int.h"

#define LIST_DEFAULT 20
#define LIST_MAX     100

/* ------------------------------------------------------------ helpers */

static void lower_uuid(char *dst, const char *src, size_t len)
{
    size_t i;

    for (i = 0; i < len && i < 36; i++)
        dst[i] = (char)(src[i] >= 'A' && src[i] <= 'F' ? src[i] - 'A' + 'a' : src[i]);
    dst[i] = '\0';
}

/* The request's trace context: its traceparent header when there is
 * exactly one and it is valid; a repeated header counts as none. */
static bool trace_context(const struct keel_request *req, struct keel_trace_context *tc)
{
    const struct keel_header *h = keel_request_header(req, "traceparent");

    if (!h || keel_request_header_count(req, "traceparent") != 1)
        return false;
    return keel_trace_parse(h->value.p, h->value.len, tc);
}

/* The metadata of the events the request causes (NULL: arena exhausted). */
static const char *event_metadata(struct keel_request *req)
{
    const struct keel_identity *id = keel_auth_identity(req);
    struct keel_trace_context tc;
    struct keel_event_meta m = {
        .request_id = req->request_id,
        .user_id = id ? id->user_id : NULL,
        .trace_id = trace_context(req, &tc) ? tc.trace_id : NULL,
    };

    return keel_events_metadata(req->arena, &m);
}

static keel_status
new_cmd(struct keel_request *req, enum orders_cmd_kind kind, struct orders_cmd **out)
{
    const struct keel_identity *id = keel_auth_identity(req);
    struct orders_cmd *cmd = keel_arena_calloc(req->arena, 1, sizeof(*cmd));

    *out = cmd;
    if (!cmd)
        return KEEL_E_NOMEM;
    keel_buf_init(&cmd->out, ORDERS_JSON_MAX);
    if (keel_arena_defer(req->arena, orders_cmd_free, cmd) < 0)
        return KEEL_E_NOMEM;
    cmd->kind = kind;
    if (id)
        snprintf(cmd->actor_id, sizeof(cmd->actor_id), "%s", id->user_id);
    cmd->can_read_all = keel_auth_can(req, "orders:read_all");
    cmd->can_cancel_any = keel_auth_can(req, "orders:cancel_any");
    cmd->metadata = event_metadata(req);
    if (!cmd->metadata)
        return KEEL_E_NOMEM;
    if (kind != ORDERS_CREATE) {
        struct keel_str s = keel_request_param(req, "id");

        lower_uuid(cmd->order_id, s.p, s.len);
    }
    return KEEL_OK;
}

/* A storage outage is answered as everywhere (keel_fail_storage: 503 and
 * Retry-After). Any other error is 500, unlike the shared mapping: every
 * not-found and conflict the client can cause was decided before (its
 * 404 or 409), so a constraint or data error here is Keel's bug. */
static keel_status db_failure(struct keel_request *req, keel_status rc)
{
    if (rc == KEEL_E_UNAVAILABLE || rc == KEEL_E_TIMEOUT)
        return keel_fail_storage(req, rc, "database", NULL);
    if (rc == KEEL_E_NOMEM)
        return keel_errorf(req, KEEL_E_NOMEM, "out of memory");
    return keel_errorf(req, KEEL_E_INTERNAL, "orders: %s", keel_strerror(rc));
}

static const char *verb(enum orders_cmd_kind kind)
{
    switch (kind) {
    case ORDERS_PAY_OK:
    case ORDERS_PAY_FAILED:
        return "paid";
    case ORDERS_SHIP:
        return "shipped";
    case ORDERS_CANCEL:
        return "cancelled";
    default:
        return "changed";
    }
}

/* Records the problem for a refused or failed command. */
static keel_status refused(struct keel_request *req, const struct orders_cmd *cmd)
{
    const struct orders_line *l = &cmd->lines[cmd->fail_index];
    char field[48];

    switch (cmd->fail) {
    case ORDERS_FAIL_NOT_FOUND:
        return keel_fail(req, 404, NULL, "No resource at this path.");
    case ORDERS_FAIL_FORBIDDEN:
        return keel_fail(req, 403, NULL, "Only the order's owner or an admin may cancel it.");
    case ORDERS_FAIL_STATE:
        return keel_fail(req, 409, "conflict", "The order is %s: it cannot be %s.",
                         cmd->from_status, verb(cmd->kind));
    case ORDERS_FAIL_OUT_OF_STOCK:
        return keel_fail(req, 409, "out-of-stock", "Not enough stock for product %s.",
                         l->product_id);
    case ORDERS_FAIL_UNKNOWN_PRODUCT:
        snprintf(field, sizeof(field), "items[%u].product_id", cmd->first_index[cmd->fail_index]);
        return keel_fail_field(req, field, "does not name a product");
    case ORDERS_FAIL_CURRENCY:
        return keel_fail_field(req, "items", "must all be priced in one currency");
    case ORDERS_FAIL_TOTAL:
        return keel_fail_field(req, "items", "add up to a total out of range");
    case ORDERS_FAIL_BUSY:
        keel_resp_set_header(req, "Retry-After", "1");
        return keel_fail(req, 409, "conflict", "The order changed concurrently; try again.");
    case ORDERS_FAIL_IDEM_LOST:
        keel_resp_set_header(req, "Retry-After", "1");
        return keel_fail(req, 409, "idempotency-key-in-use",
                         "Another request with this Idempotency-Key is in progress.");
    case ORDERS_FAIL_NONE:
        break;
    }
    return db_failure(req, cmd->rc < 0 ? cmd->rc : KEEL_E_INTERNAL);
}

/* After a commit: the catalog drops what it cached of each line's
 * product, and its lists (keel_catalog_invalidate). The response is
 * ready whatever happens here: without memory for the keys the caches
 * expire by TTL. */
static keel_status invalidate(struct keel_request *req, const struct orders_line *lines, unsigned n)
{
    const char *ids[ORDERS_MAX_ITEMS];
    unsigned i;
    keel_status rc;

    for (i = 0; i < n; i++)
        ids[i] = lines[i].product_id;
    rc = keel_catalog_invalidate(req, ids, n, KEEL_DONE);
    return rc == KEEL_E_NOMEM ? KEEL_DONE : rc;
}

static keel_status answer(struct keel_request *req, int status, const struct keel_buf *body)
{
    keel_resp_start(req, status, "application/json");
    return keel_buf_append(&req->resp.body, body->data, body->len) < 0 ? KEEL_E_NOMEM : KEEL_OK;
}

/* ------------------------------------------------------------- create */

/* The body's lines, a product named twice merged into its first line. */
static keel_status read_lines(struct keel_request *req, struct orders_cmd *cmd)
{
    struct json_object *items, *it, *v;
    char pid[37], field[48];
    size_t i, n;
    unsigned k;
    int64_t q;

    if (!json_object_object_get_ex(req->json, "items", &items))
        return keel_fail_field(req, "items", "is required");
    n = json_object_array_length(items);
    for (i = 0; i < n && i < ORDERS_MAX_ITEMS; i++) {
        it = json_object_array_get_idx(items, i);
        json_object_object_get_ex(it, "product_id", &v);
        lower_uuid(pid, json_object_get_string(v), 36);
        json_object_object_get_ex(it, "quantity", &v);
        q = json_object_get_int64(v);
        for (k = 0; k < cmd->nlines && strcmp(cmd->lines[k].product_id, pid) != 0; k++)
            ;
        if (k == cmd->nlines) {
            memcpy(cmd->lines[k].product_id, pid, sizeof(pid));
            cmd->first_index[k] = (unsigned)i;
            cmd->nlines++;
        }
        cmd->lines[k].quantity += q;
        if (cmd->lines[k].quantity > ORDERS_MAX_QUANTITY) {
            snprintf(field, sizeof(field), "items[%zu].quantity", i);
            keel_fail_field(req, field, "adds up to more than 1000 of one product");
        }
    }
    return req->nproblem_fields ? KEEL_E_INVALID : KEEL_OK;
}

static keel_status created(struct keel_request *req, void *arg)
{
    struct orders_cmd *cmd = arg;
    char *loc;
    keel_status rc;

    if (cmd->rc == KEEL_OK) {
        loc = keel_arena_sprintf(req->arena, "/api/v1/orders/%s", cmd->order_id);
        if (!loc || answer(req, 201, &cmd->out) < 0 || keel_resp_header(req, "Location", loc) < 0)
            return KEEL_E_NOMEM;
        return invalidate(req, cmd->lines, cmd->nlines);
    }
    rc = refused(req, cmd);
    if (cmd->idem && cmd->fail != ORDERS_FAIL_IDEM_LOST)
        return orders_idem_settle(req, cmd->idem, rc);
    return rc;
}

static keel_status claimed(struct keel_request *req, keel_status rc, void *arg)
{
    struct orders_idem *idem = arg;

    if (rc < 0)
        return db_failure(req, rc);
    switch (idem->outcome) {
    case ORDERS_IDEM_REPLAY:
        return orders_idem_replay(req, idem);
    case ORDERS_IDEM_MISMATCH:
        return keel_fail(req, 422, "idempotency-key-mismatch",
                         "This Idempotency-Key was used with a different request body.");
    case ORDERS_IDEM_IN_USE:
        keel_resp_set_header(req, "Retry-After", "1");
        return keel_fail(req, 409, "idempotency-key-in-use",
                         "A request with this Idempotency-Key is still in progress.");
    case ORDERS_IDEM_PROCEED:
        break;
    }
    return orders_submit(req, idem->ctx, created);
}

static keel_status create(struct keel_request *req)
{
    struct orders_cmd *cmd;
    keel_status rc = new_cmd(req, ORDERS_CREATE, &cmd);

    if (rc == KEEL_OK)
        rc = read_lines(req, cmd);
    if (rc == KEEL_OK)
        rc = orders_idem_parse(req, &cmd->idem);
    if (rc < 0)
        return rc;
    keel_uuid_v7(cmd->order_id);
    if (!cmd->idem)
        return orders_submit(req, cmd, created);
    cmd->idem->ctx = cmd;
    return orders_idem_begin(req, cmd->idem, claimed);
}

/* -------------------------------------------------------- transitions */

static keel_status transitioned(struct keel_request *req, void *arg)
{
    struct orders_cmd *cmd = arg;

    if (cmd->rc < 0)
        return refused(req, cmd);
    if (answer(req, 200, &cmd->out) < 0)
        return KEEL_E_NOMEM;
    if (cmd->kind == ORDERS_CANCEL)
        return invalidate(req, cmd->state.items, cmd->state.nitems);
    return KEEL_DONE;
}

static keel_status transition(struct keel_request *req, enum orders_cmd_kind kind)
{
    struct orders_cmd *cmd;
    keel_status rc = new_cmd(req, kind, &cmd);

    return rc < 0 ? rc : orders_submit(req, cmd, transitioned);
}

static keel_status cancel(struct keel_request *req)
{
    return transition(req, ORDERS_CANCEL);
}

static keel_status ship(struct keel_request *req)
{
    return transition(req, ORDERS_SHIP);
}

static void json_put(void *p)
{
    json_object_put(p);
}

/* Test-only until the payments issue appends payment outcomes itself. The
 * route takes no body (KEEL_BODY_NONE) and parses it here, after the
 * switch, so that without debug routes every request to it is a 404. */
static keel_status debug_pay(struct keel_request *req)
{
    struct json_object *body = NULL, *v;
    const char *why;

    if (!req->cfg->debug_routes)
        return keel_fail(req, 404, NULL, "No resource at this path.");
    if (req->body_len && keel_json_parse(req->body, req->body_len, 4, &body, &why) == KEEL_OK &&
        body && keel_arena_defer(req->arena, json_put, body) < 0) {
        json_object_put(body);
        return KEEL_E_NOMEM;
    }
    if (!body || !json_object_is_type(body, json_type_object) ||
        !json_object_object_get_ex(body, "succeeded", &v))
        return keel_fail_field(req, "succeeded", "is required");
    if (!json_object_is_type(v, json_type_boolean))
        return keel_fail_field(req, "succeeded", "must be a boolean");
    return transition(req, json_object_get_boolean(v) ? ORDERS_PAY_OK : ORDERS_PAY_FAILED);
}

/* -------------------------------------------------------------- reads */

struct one {
    char id[37];
    char owner[37];
    struct orders_state state; /* events: folded as they are written */
    struct keel_json j;
    struct keel_buf out;
};

static void one_free(void *arg)
{
    keel_buf_free(&((struct one *)arg)->out);
}

static struct one *new_one(struct keel_request *req)
{
    struct one *o = keel_arena_calloc(req->arena, 1, sizeof(*o));
    struct keel_str s = keel_request_param(req, "id");

    if (!o)
        return NULL;
    keel_buf_init(&o->out, 4u << 20);
    if (keel_arena_defer(req->arena, one_free, o) < 0)
        return NULL;
    lower_uuid(o->id, s.p, s.len);
    return o;
}

/* Answers a read once the owner is known: another user's order is 404. */
static keel_status one_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct one *o = arg;

    if (rc == KEEL_E_NOT_FOUND)
        return keel_fail(req, 404, NULL, "No resource at this path.");
    if (rc < 0)
        return db_failure(req, rc);
    rc = keel_auth_require_owner(req, o->owner, "orders:read_all");
    if (rc < 0)
        return rc;
    return answer(req, 200, &o->out) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static keel_status get_q(struct keel_db_conn *c, void *arg)
{
    struct one *o = arg;

    return orders_render(c, o->id, &o->out, o->owner);
}

static keel_status get_one(struct keel_request *req)
{
    struct one *o = new_one(req);

    return o ? keel_db_run(req, KEEL_DB_READ, get_q, one_done, o) : KEEL_E_NOMEM;
}

static keel_status event_row(const struct keel_event *ev, void *arg)
{
    struct one *o = arg;
    keel_status rc = orders_fold(&o->state, ev);

    keel_events_json(&o->j, ev);
    return rc;
}

static keel_status events_q(struct keel_db_conn *c, void *arg)
{
    struct one *o = arg;
    int64_t n = 0;
    keel_status rc;

    keel_buf_reset(&o->out);
    memset(&o->state, 0, sizeof(o->state));
    keel_json_begin(&o->j, &o->out);
    keel_json_obj_open(&o->j);
    keel_json_key(&o->j, "items");
    keel_json_arr_open(&o->j);
    rc = keel_events_load(c, o->id, event_row, o, &n);
    if (rc < 0)
        return rc;
    if (n == 0)
        return KEEL_E_NOT_FOUND;
    memcpy(o->owner, o->state.user_id, sizeof(o->owner));
    keel_json_arr_close(&o->j);
    keel_json_obj_close(&o->j);
    return keel_json_end(&o->j) < 0 ? KEEL_E_TOO_LARGE : KEEL_OK;
}

static keel_status get_events(struct keel_request *req)
{
    struct one *o = new_one(req);

    return o ? keel_db_run(req, KEEL_DB_READ, events_q, one_done, o) : KEEL_E_NOMEM;
}

/* --------------------------------------------------------------- list */

static void page_free(void *arg)
{
    keel_buf_free(&((struct orders_page *)arg)->out);
}

static void limit_param(struct keel_request *req, struct orders_page *pg)
{
    const char *v;
    char *end;
    long long lim;

    pg->limit = LIST_DEFAULT;
    if (keel_request_query(req, "limit", &v) != KEEL_OK)
        return;
    lim = strtoll(v, &end, 10);
    if (*v == '\0' || *end || lim < 1 || lim > LIST_MAX)
        keel_fail_field(req, "limit", "must be an integer between 1 and 100");
    else
        pg->limit = lim;
}

/* The cursor is the last id of the previous page, base64url. */
static void cursor_param(struct keel_request *req, struct orders_page *pg)
{
    unsigned char raw[64];
    const char *v;
    size_t n;

    if (keel_request_query(req, "cursor", &v) != KEEL_OK)
        return;
    if (sodium_base642bin(raw, sizeof(raw), v, strlen(v), NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n != 36 || !keel_uuid_valid((const char *)raw, 36))
        keel_fail_field(req, "cursor", "is not a cursor this API issued");
    else
        lower_uuid(pg->after, (const char *)raw, 36);
}

/* ?status=, and ?user_id= (others' orders need orders:read_all). */
static keel_status filter_params(struct keel_request *req, struct orders_page *pg)
{
    const char *me = keel_auth_identity(req)->user_id, *v;

    if (keel_request_query(req, "status", &v) == KEEL_OK) {
        if (orders_status_known(v))
            pg->status = v;
        else
            keel_fail_field(req, "status",
                            "must be one of: pending, paid, payment_failed, shipped, cancelled");
    }
    if (keel_request_query(req, "user_id", &v) == KEEL_OK) {
        if (!keel_uuid_valid(v, strlen(v)))
            keel_fail_field(req, "user_id", "must be a valid UUID");
        else
            lower_uuid(pg->user_id, v, 36);
    }
    if (req->nproblem_fields)
        return keel_fail(req, 400, "validation-error", "Invalid query.");
    if (keel_auth_can(req, "orders:read_all"))
        return KEEL_OK;
    if (pg->user_id[0] && strcmp(pg->user_id, me) != 0)
        return keel_fail(req, 403, NULL, "Your role may list only your own orders.");
    snprintf(pg->user_id, sizeof(pg->user_id), "%s", me);
    return KEEL_OK;
}

static keel_status list_q(struct keel_db_conn *c, void *arg)
{
    return orders_list(c, arg);
}

static keel_status listed(struct keel_request *req, keel_status rc, void *arg)
{
    struct orders_page *pg = arg;

    if (rc < 0)
        return db_failure(req, rc);
    return answer(req, 200, &pg->out) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static keel_status list(struct keel_request *req)
{
    struct orders_page *pg = keel_arena_calloc(req->arena, 1, sizeof(*pg));
    keel_status rc;

    if (!pg)
        return KEEL_E_NOMEM;
    keel_buf_init(&pg->out, 8u << 20);
    if (keel_arena_defer(req->arena, page_free, pg) < 0)
        return KEEL_E_NOMEM;
    limit_param(req, pg);
    cursor_param(req, pg);
    rc = filter_params(req, pg);
    if (rc < 0)
        return rc;
    return keel_db_run(req, KEEL_DB_READ, list_q, listed, pg);
}

/* ------------------------------------------------------------- module */

/* clang-format off */
static const struct keel_schema_field item_fields[] = {
    {.name = "product_id", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SF_REQUIRED,
     .format = KEEL_FMT_UUID},
    {.name = "quantity", .type = KEEL_SCHEMA_INT, .flags = KEEL_SF_REQUIRED, .min = 1,
     .max = ORDERS_MAX_QUANTITY},
    /* The catalog prices every line: a client never sets a price. */
    {.name = "name", .type = KEEL_SCHEMA_STRING, .flags = KEEL_SF_READ_ONLY},
    {.name = "price_cents", .type = KEEL_SCHEMA_INT, .flags = KEEL_SF_READ_ONLY},
    {.name = "unit_price_cents", .type = KEEL_SCHEMA_INT, .flags = KEEL_SF_READ_ONLY},
    {.name = "line_total_cents", .type = KEEL_SCHEMA_INT, .flags = KEEL_SF_READ_ONLY},
};
static const struct keel_schema item_schema = {item_fields, KEEL_ARRAY_LEN(item_fields), false};

static const struct keel_schema_field item_element = {.type = KEEL_SCHEMA_OBJECT,
                                                      .object = &item_schema};

#define READ_ONLY(n, t) {.name = n, .type = t, .flags = KEEL_SF_READ_ONLY}

static const struct keel_schema_field order_fields[] = {
    {.name = "items", .type = KEEL_SCHEMA_ARRAY, .flags = KEEL_SF_REQUIRED, .min = 1,
     .max = ORDERS_MAX_ITEMS, .items = &item_element},
    READ_ONLY("id", KEEL_SCHEMA_STRING),
    READ_ONLY("user_id", KEEL_SCHEMA_STRING),
    READ_ONLY("status", KEEL_SCHEMA_STRING),
    READ_ONLY("total_cents", KEEL_SCHEMA_INT),
    READ_ONLY("currency", KEEL_SCHEMA_STRING),
    READ_ONLY("created_at", KEEL_SCHEMA_STRING),
    READ_ONLY("updated_at", KEEL_SCHEMA_STRING),
};
static const struct keel_schema order_schema = {order_fields, KEEL_ARRAY_LEN(order_fields), false};

static const struct keel_route routes[] = {
    {.method = KEEL_HTTP_POST, .pattern = "/api/v1/orders", .handler = create,
     .auth = KEEL_AUTH_REQUIRED, .permission = "orders:create", .schema = &order_schema,
     .body = KEEL_BODY_JSON, .max_body = 16 * 1024},
    {.method = KEEL_HTTP_GET, .pattern = "/api/v1/orders", .handler = list,
     .auth = KEEL_AUTH_REQUIRED, .permission = "orders:read"},
    {.method = KEEL_HTTP_GET, .pattern = "/api/v1/orders/{id:uuid}", .handler = get_one,
     .auth = KEEL_AUTH_REQUIRED, .permission = "orders:read"},
    {.method = KEEL_HTTP_GET, .pattern = "/api/v1/orders/{id:uuid}/events",
     .handler = get_events, .auth = KEEL_AUTH_REQUIRED, .permission = "orders:read"},
    {.method = KEEL_HTTP_POST, .pattern = "/api/v1/orders/{id:uuid}/cancel", .handler = cancel,
     .auth = KEEL_AUTH_REQUIRED, .permission = "orders:create"},
    {.method = KEEL_HTTP_POST, .pattern = "/api/v1/orders/{id:uuid}/ship", .handler = ship,
     .auth = KEEL_AUTH_REQUIRED, .permission = "orders:manage"},
    /* KEEL_DEBUG_ROUTES only (debug_pay answers 404 otherwise). */
    {.method = KEEL_HTTP_POST, .pattern = "/debug/orders/{id:uuid}/pay", .handler = debug_pay,
     .max_body = 1024},
};
/* clang-format on */

extern const struct keel_command orders_cmd_projections; /* cmd_projections.c */

const struct keel_module keel_module_orders = {
    .name = "orders",
    .routes = routes,
    .nroutes = KEEL_ARRAY_LEN(routes),
    .metrics = orders_metrics,
    .nmetrics = ORDERS_NMETRICS,
    .commands = &orders_cmd_projections,
    .ncommands = 1,
};
