/*
 * orders_int.h - the orders module's internal interfaces
 * (docs/internals/orders.md). Nothing outside src/modules/orders includes
 * this (tests excepted).
 *
 *   orders.c       the module: routes, schemas, handlers, HTTP answers
 *   commands.c     the command path: load the stream, fold, decide, append
 *                  with the expected version, project, outbox (storage-lane threads)
 *   projection.c   the fold (events -> state), the read model projection,
 *                  read-model queries, the rebuild
 *   idempotency.c  Idempotency-Key records
 * The event store and the outbox are shared infrastructure
 * (include/keel/events.h, src/events).
 */
#ifndef KEEL_ORDERS_INT_H
#define KEEL_ORDERS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/db.h"
#include "keel/events.h"
#include "keel/http.h"
#include "keel/module.h"

struct keel_db;
struct keel_db_conn;

#define ORDERS_MAX_ITEMS    50
#define ORDERS_MAX_QUANTITY 1000
#define ORDERS_STREAM_TYPE  "order"
#define ORDERS_TOPIC        "orders"
#define ORDERS_STATUS_MAX   16
/* Bound of one order's JSON (50 lines with long product names). */
#define ORDERS_JSON_MAX (256 * 1024)

/* ---------------------------------------------------------- the domain */

enum orders_cmd_kind {
    ORDERS_CREATE,
    ORDERS_PAY_OK,     /* PaymentSucceeded (the payments issue; a debug route today) */
    ORDERS_PAY_FAILED, /* PaymentFailed */
    ORDERS_SHIP,
    ORDERS_CANCEL,
};

/* Why a command was refused (set on the storage-lane thread, answered on the
 * loop). The transaction has rolled back whenever this is not NONE. */
enum orders_fail {
    ORDERS_FAIL_NONE,
    ORDERS_FAIL_NOT_FOUND,       /* 404: no such order, or not the caller's */
    ORDERS_FAIL_FORBIDDEN,       /* 403: visible, but not the caller's to change */
    ORDERS_FAIL_STATE,           /* 409 conflict: the transition is illegal */
    ORDERS_FAIL_OUT_OF_STOCK,    /* 409 out-of-stock (fail_index: the line) */
    ORDERS_FAIL_UNKNOWN_PRODUCT, /* 400 validation-error (fail_index: the line) */
    ORDERS_FAIL_CURRENCY,        /* 400 validation-error: lines in several currencies */
    ORDERS_FAIL_TOTAL,           /* 400 validation-error: total beyond int64 */
    ORDERS_FAIL_BUSY,            /* 409 conflict: concurrent appends outlasted the retries */
    ORDERS_FAIL_IDEM_LOST,       /* 409 idempotency-key-in-use: the key was taken over */
};

struct orders_line {
    char product_id[37];
    int64_t quantity;
};

/* An order as its events fold it. */
struct orders_state {
    int64_t version; /* 0: the stream has no event (no such order) */
    char user_id[37];
    char status[ORDERS_STATUS_MAX];
    int64_t total_cents;
    char currency[4];
    unsigned nitems;
    struct orders_line items[ORDERS_MAX_ITEMS];
};

struct orders_idem;

/* One command, from the handler through the transaction and back. Lives
 * in the request's arena; `out` is heap (freed by orders_cmd_free). */
struct orders_cmd {
    enum orders_cmd_kind kind;
    char order_id[37];
    char actor_id[37];    /* "" when anonymous (the debug route) */
    bool can_read_all;    /* orders:read_all: sees every order */
    bool can_cancel_any;  /* orders:cancel_any */
    const char *metadata; /* event metadata (keel_events_metadata) */

    /* ORDERS_CREATE: the requested lines, duplicates merged, in the order
     * the client first named each product. */
    unsigned nlines;
    struct orders_line lines[ORDERS_MAX_ITEMS];
    unsigned first_index[ORDERS_MAX_ITEMS]; /* each line's first place in the body */
    struct orders_idem *idem;               /* NULL without an Idempotency-Key */

    /* Results. */
    keel_status rc;
    bool append_conflict; /* the append lost a race: run the command again */
    unsigned attempts;
    enum orders_fail fail;
    unsigned fail_index;
    char from_status[ORDERS_STATUS_MAX]; /* ORDERS_FAIL_STATE */
    struct orders_state state;           /* after the command (transitions) */
    struct keel_buf out;                 /* the order's JSON after the command */
};

/* The status an event of `type` moves an order to; NULL for unknown
 * types (which change nothing but the version). */
const char *orders_status_after(const char *type);

/* Folds one event into st (the command side's view of an order). Returns
 * KEEL_E_NOT_FOUND for an event of another stream type (the id names no
 * order), KEEL_E_INTERNAL for an event whose data is not what Keel
 * writes. */
keel_status orders_fold(struct orders_state *st, const struct keel_event *ev);

/* True for the statuses an order can have (query parameter check). */
bool orders_status_known(const char *status);

/* ---------------------------------------------------------- commands.c */

/* Runs cmd's transaction on the storage lane (retrying the whole command
 * when its append loses a race, up to ORDERS_ATTEMPTS times), then
 * done(req, cmd) on the loop with cmd->rc and cmd->fail set. Returns
 * KEEL_AGAIN or KEEL_E_NOMEM. */
#define ORDERS_ATTEMPTS 5
keel_status orders_submit(struct keel_request *req, struct orders_cmd *cmd, keel_resume_fn done);
void orders_cmd_free(void *cmd);
/* The module's metric families, for its .metrics (created at start). */
#define ORDERS_NMETRICS 2
extern const struct keel_metric_def orders_metrics[ORDERS_NMETRICS];

/* -------------------------------------------------------- projection.c */

/* Applies one event to the read model (orders, order_items): the same
 * code for live commands and for rebuilds. Returns KEEL_E_INTERNAL when
 * the read model is not at the event's previous version (out of step:
 * rebuild it). Pool thread, inside the caller's transaction. The rows of
 * OrderCreated are deferred writes (keel_db_exec_deferred): a failure
 * there comes back from the next statement or the COMMIT. */
keel_status orders_project(struct keel_db_conn *c, const struct keel_event *ev);

/* Writes order `id` from the read model as the API's JSON into out and
 * its owner into owner_out. KEEL_E_NOT_FOUND when there is none. */
keel_status
orders_render(struct keel_db_conn *c, const char *id, struct keel_buf *out, char owner_out[37]);

/* Writes the order an OrderCreated event creates, as orders_render would
 * read it back from the read model right after the projection, into
 * out: the create command answers without reading its own write. */
keel_status orders_render_created(const struct keel_event *ev, struct keel_buf *out);

/* A page of the read model for GET /api/v1/orders. */
struct orders_page {
    int64_t limit;
    char after[37];     /* "" on the first page */
    char user_id[37];   /* "" = every user */
    const char *status; /* NULL = any */
    int64_t n;
    char last[37];
    struct keel_buf out;
};
keel_status orders_list(struct keel_db_conn *c, struct orders_page *pg);

struct orders_rebuild_stats {
    int64_t events, orders, items;
};
/* Rebuilds the read model from the events in one transaction: deletes
 * orders and order_items, then projects every order event in seq order.
 * On PostgreSQL the events table is locked against appends (EXCLUSIVE) for
 * the duration, so no command commits between the scan and the commit.
 * Main thread of `keel projections`. */
keel_status orders_rebuild(struct keel_db *db, struct orders_rebuild_stats *out);

/* ------------------------------------------------------- idempotency.c */

#define ORDERS_IDEM_KEY_MAX  255
#define ORDERS_IDEM_TTL_MS   (24 * 60 * 60 * 1000LL)
#define ORDERS_IDEM_STALE_MS (60 * 1000LL)

enum orders_idem_outcome {
    ORDERS_IDEM_PROCEED,  /* the key is ours: run the command */
    ORDERS_IDEM_REPLAY,   /* done before with the same body: replay */
    ORDERS_IDEM_MISMATCH, /* 422: the key was used with another body */
    ORDERS_IDEM_IN_USE,   /* 409: another request holds the key */
};

struct orders_idem {
    char user_id[37];
    const char *key;
    char hash[65];    /* hex SHA-256 of the request body */
    char lock_id[37]; /* this request's claim on the key */
    enum orders_idem_outcome outcome;
    bool took_over;
    void *ctx;        /* the caller's, for its done callback */
    keel_status then; /* orders_idem_settle: what the request continues with */
    /* REPLAY: the stored answer; settle: the answer to store */
    int status;
    char replay_location[64];
    struct keel_buf response;
};

/* Reads the Idempotency-Key header into *out (NULL when absent). Returns
 * KEEL_OK, or a 400 problem for an invalid or repeated header. */
keel_status orders_idem_parse(struct keel_request *req, struct orders_idem **out);

/* Claims the key (a short transaction of its own) and calls done(req, rc,
 * idem) with idem->outcome set (idem->ctx is the caller's). */
keel_status
orders_idem_begin(struct keel_request *req, struct orders_idem *idem, keel_db_done_fn done);

/* Inside the order's transaction: records the answer (status, body,
 * location) as the key's response and marks it done. Returns
 * KEEL_E_CONFLICT when this request no longer holds the key. */
keel_status orders_idem_finish(struct keel_db_conn *c,
                               struct orders_idem *idem,
                               int status,
                               const char *body,
                               size_t len,
                               const char *location);

/* After a refused command: keeps the answer now in req->resp (4xx, to be
 * replayed) or releases the key (5xx, so the client may retry), then
 * continues the request with `then`. Returns KEEL_AGAIN or `then`. */
keel_status
orders_idem_settle(struct keel_request *req, struct orders_idem *idem, keel_status then);

/* Answers req with the stored response and Idempotent-Replayed: true. */
keel_status orders_idem_replay(struct keel_request *req, struct orders_idem *idem);

#endif
