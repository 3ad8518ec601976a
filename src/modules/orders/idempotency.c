/*
 * idempotency.c - Idempotency-Key on POST /api/v1/orders (SPEC section 3;
 * IETF draft "The Idempotency-Key HTTP Header Field"; Stripe's practice;
 * docs/internals/orders.md "Idempotency keys").
 *
 * A key is scoped to the user and remembered with the SHA-256 of the
 * request body. Its record goes through two states:
 *
 *   (absent) --claim--> running --the order commits--> done (201 kept)
 *                          |---the order is refused--> done (4xx kept)
 *                          `---5xx / storage failure--> (absent again)
 *
 * DESIGN: the claim is its own short transaction (INSERT ... ON CONFLICT
 * DO NOTHING), so a second request with the key sees 'running' at once
 * instead of waiting behind the order. The success answer is written in
 * the order's own transaction, so an order exists exactly when its key
 * says done: a crash can never leave an order whose key would let the
 * client create a second one. Each claim carries a random lock_id and
 * every later write is conditional on it: a claim older than
 * ORDERS_IDEM_STALE_MS (its request crashed or was cut before answering)
 * is taken over by the next request with the key, and the old owner,
 * should it still be alive, then fails to finish (its transaction rolls
 * back) instead of creating a second order. Expired records (24 h after
 * they finished) count as absent; they are deleted when their key comes
 * back, and about one claim in 64 also sweeps every expired record.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "keel/auth.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/problem.h"
#include "keel/uuid.h"

#include "orders_int.h"

#define RESPONSE_MAX ORDERS_JSON_MAX
#define CLAIM_TRIES  3

static void idem_free(void *arg)
{
    struct orders_idem *idem = arg;

    keel_buf_free(&idem->response);
}

/* ------------------------------------------------------------- parse */

/* A key is 1..255 printable ASCII characters other than '"' and '\\'. The
 * draft makes the field a Structured Field string ("..."): the quoted form
 * names the same key as the bare one, and refusing the two characters a
 * string would have to escape keeps that mapping one to one. */
static bool key_valid(const char *p, size_t len)
{
    size_t i;

    if (len == 0 || len > ORDERS_IDEM_KEY_MAX)
        return false;
    for (i = 0; i < len; i++)
        if (p[i] < 0x20 || p[i] > 0x7e || p[i] == '"' || p[i] == '\\')
            return false;
    return true;
}

keel_status orders_idem_parse(struct keel_request *req, struct orders_idem **out)
{
    const struct keel_header *h = keel_request_header(req, "Idempotency-Key");
    struct orders_idem *idem;
    unsigned char digest[crypto_hash_sha256_BYTES];
    const char *p;
    size_t len;
    bool quoted;

    *out = NULL;
    if (!h)
        return KEEL_OK;
    p = h->value.p;
    len = h->value.len;
    quoted = len >= 2 && p[0] == '"' && p[len - 1] == '"';
    if (quoted) {
        p++;
        len -= 2;
    }
    if (keel_request_header_count(req, "Idempotency-Key") != 1 || !key_valid(p, len))
        return keel_fail(req, 400, NULL,
                         "Idempotency-Key must be one header of 1 to %d printable ASCII "
                         "characters.",
                         ORDERS_IDEM_KEY_MAX);
    idem = keel_arena_calloc(req->arena, 1, sizeof(*idem));
    if (!idem)
        return KEEL_E_NOMEM;
    idem->key = keel_arena_strndup(req->arena, p, len);
    if (!idem->key)
        return KEEL_E_NOMEM;
    keel_buf_init(&idem->response, RESPONSE_MAX);
    if (keel_arena_defer(req->arena, idem_free, idem) < 0)
        return KEEL_E_NOMEM;
    snprintf(idem->user_id, sizeof(idem->user_id), "%s", keel_auth_identity(req)->user_id);
    crypto_hash_sha256(digest, (const unsigned char *)(req->body ? req->body : ""), req->body_len);
    sodium_bin2hex(idem->hash, sizeof(idem->hash), digest, sizeof(digest));
    keel_uuid_v7(idem->lock_id);
    *out = idem;
    return KEEL_OK;
}

/* ------------------------------------------------------------- claim */

static keel_status sweep(struct keel_db_conn *c, int64_t now)
{
    struct keel_db_param p[] = {KEEL_DB_INT(now)};

    return keel_db_exec(c, "DELETE FROM idempotency_keys WHERE expires_ms <= $1", p, 1, NULL);
}

/* Deletes an expired record of the key, then tries to insert ours:
 * *won says whether the key is now ours. */
static keel_status
try_insert(struct keel_db_conn *c, struct orders_idem *idem, int64_t now, bool *won)
{
    struct keel_db_param p[] = {
        KEEL_DB_UUID(idem->user_id), KEEL_DB_TEXT(idem->key), KEEL_DB_TEXT(idem->hash),
        KEEL_DB_TEXT(idem->lock_id), KEEL_DB_INT(now),        KEEL_DB_INT(now + ORDERS_IDEM_TTL_MS),
    };
    int64_t n = 0;
    keel_status rc;

    rc = keel_db_exec(c,
                      "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2"
                      " AND expires_ms <= $3",
                      (struct keel_db_param[]){p[0], p[1], p[4]}, 3, NULL);
    if (rc == KEEL_OK)
        rc = keel_db_exec(c,
                          "INSERT INTO idempotency_keys (user_id, key, request_hash, state,"
                          " lock_id, locked_ms, created_ms, expires_ms)"
                          " VALUES ($1, $2, $3, 'running', $4, $5, $5, $6)"
                          " ON CONFLICT (user_id, key) DO NOTHING",
                          p, KEEL_ARRAY_LEN(p), &n);
    *won = n == 1;
    return rc;
}

/* Takes over a stale claim; *won when nobody changed it meanwhile. */
static keel_status
take_over(struct keel_db_conn *c, struct orders_idem *idem, const char *old, int64_t now, bool *won)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(idem->user_id), KEEL_DB_TEXT(idem->key),
                                KEEL_DB_TEXT(idem->lock_id), KEEL_DB_INT(now), KEEL_DB_TEXT(old)};
    int64_t n = 0;
    keel_status rc;

    rc = keel_db_exec(c,
                      "UPDATE idempotency_keys SET lock_id = $3, locked_ms = $4"
                      " WHERE user_id = $1 AND key = $2 AND state = 'running' AND lock_id = $5",
                      p, KEEL_ARRAY_LEN(p), &n);
    *won = n == 1;
    return rc;
}

/* A claim's look at the record in its way. */
struct judging {
    struct orders_idem *idem;
    int64_t now;
    char stale[64]; /* the lock_id of a stale claim, else "" */
};

/* Decides from the existing record (the current row; keel_db_row_fn). A
 * stale claim is left for the caller to take over once the row is freed:
 * x->stale gets its lock_id. */
static keel_status judge(const struct keel_db_rows *r, void *arg)
{
    struct judging *x = arg;
    struct orders_idem *idem = x->idem;
    const char *hash = keel_db_text(r, 0, NULL), *state = keel_db_text(r, 1, NULL);
    const char *body, *loc;
    size_t len = 0;

    if (!hash || strcmp(hash, idem->hash) != 0) {
        idem->outcome = ORDERS_IDEM_MISMATCH;
        return KEEL_OK;
    }
    if (state && strcmp(state, "done") == 0) {
        idem->outcome = ORDERS_IDEM_REPLAY;
        idem->status = (int)keel_db_int64(r, 4);
        loc = keel_db_is_null(r, 5) ? NULL : keel_db_text(r, 5, NULL);
        if (loc)
            snprintf(idem->replay_location, sizeof(idem->replay_location), "%s", loc);
        body = keel_db_text(r, 6, &len);
        return keel_buf_append(&idem->response, body ? body : "", len);
    }
    idem->outcome = ORDERS_IDEM_IN_USE;
    if (keel_db_int64(r, 3) + ORDERS_IDEM_STALE_MS <= x->now && !keel_db_is_null(r, 2))
        snprintf(x->stale, sizeof(x->stale), "%s", keel_db_text(r, 2, NULL));
    return KEEL_OK;
}

/* One attempt: insert, or judge the record in the way. *again when the
 * record vanished between the two (released): try once more. */
static keel_status
claim_once(struct keel_db_conn *c, struct orders_idem *idem, int64_t now, bool *again)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(idem->user_id), KEEL_DB_TEXT(idem->key)};
    struct judging x = {.idem = idem, .now = now};
    bool won = false;
    keel_status rc;

    *again = false;
    rc = try_insert(c, idem, now, &won);
    if (rc < 0 || won) {
        idem->outcome = ORDERS_IDEM_PROCEED;
        return rc;
    }
    rc = keel_db_query_one(c,
                           "SELECT request_hash, state, lock_id, locked_ms, status, location,"
                           " response FROM idempotency_keys WHERE user_id = $1 AND key = $2",
                           p, 2, judge, &x);
    if (rc == KEEL_E_NOT_FOUND) {
        *again = true;
        return KEEL_OK;
    }
    if (rc < 0 || !x.stale[0])
        return rc;
    rc = take_over(c, idem, x.stale, now, &won);
    if (rc == KEEL_OK && won) {
        idem->outcome = ORDERS_IDEM_PROCEED;
        idem->took_over = true;
    }
    return rc;
}

static keel_status claim_tx(struct keel_db_conn *c, void *arg)
{
    struct orders_idem *idem = arg;
    int64_t now = keel_wall_ms();
    keel_status rc = KEEL_OK;
    unsigned tries;
    bool again = true;

    keel_buf_reset(&idem->response);
    idem->replay_location[0] = '\0';
    idem->took_over = false;
    idem->outcome = ORDERS_IDEM_IN_USE;
    if (randombytes_uniform(64) == 0)
        rc = sweep(c, now);
    for (tries = 0; rc == KEEL_OK && again && tries < CLAIM_TRIES; tries++)
        rc = claim_once(c, idem, now, &again);
    if (rc == KEEL_OK && again)
        idem->outcome = ORDERS_IDEM_IN_USE;
    return rc;
}

keel_status
orders_idem_begin(struct keel_request *req, struct orders_idem *idem, keel_db_done_fn done)
{
    return keel_db_run(req, KEEL_DB_WRITE, claim_tx, done, idem);
}

/* ------------------------------------------------------------ finish */

keel_status orders_idem_finish(struct keel_db_conn *c,
                               struct orders_idem *idem,
                               int status,
                               const char *body,
                               size_t len,
                               const char *location)
{
    struct keel_db_param p[] = {
        KEEL_DB_UUID(idem->user_id),
        KEEL_DB_TEXT(idem->key),
        KEEL_DB_TEXT(idem->lock_id),
        KEEL_DB_INT(status),
        location ? KEEL_DB_TEXT(location) : KEEL_DB_NULL(),
        KEEL_DB_TEXTN(body, len),
        KEEL_DB_INT(keel_wall_ms() + ORDERS_IDEM_TTL_MS),
    };
    int64_t n = 0;
    keel_status rc;

    rc = keel_db_exec(c,
                      "UPDATE idempotency_keys SET state = 'done', lock_id = NULL, status = $4,"
                      " location = $5, response = $6, expires_ms = $7"
                      " WHERE user_id = $1 AND key = $2 AND state = 'running' AND lock_id = $3",
                      p, KEEL_ARRAY_LEN(p), &n);
    if (rc < 0)
        return rc;
    return n == 1 ? KEEL_OK : KEEL_E_CONFLICT;
}

static keel_status store_tx(struct keel_db_conn *c, void *arg)
{
    struct orders_idem *idem = arg;

    return orders_idem_finish(c, idem, idem->status, idem->response.data, idem->response.len, NULL);
}

static keel_status release_tx(struct keel_db_conn *c, void *arg)
{
    struct orders_idem *idem = arg;
    struct keel_db_param p[] = {KEEL_DB_UUID(idem->user_id), KEEL_DB_TEXT(idem->key),
                                KEEL_DB_TEXT(idem->lock_id)};

    return keel_db_exec(c,
                        "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2"
                        " AND lock_id = $3",
                        p, KEEL_ARRAY_LEN(p), NULL);
}

/* The answer stands whatever became of the record: a record left
 * 'running' is taken over after ORDERS_IDEM_STALE_MS. */
static keel_status settled(struct keel_request *req, keel_status rc, void *arg)
{
    struct orders_idem *idem = arg;

    if (rc < 0 && rc != KEEL_E_CONFLICT)
        keel_log(KEEL_LOG_WARN, "idempotency record not settled",
                 KEEL_LF_STR("request_id", req->request_id),
                 KEEL_LF_STR("error", keel_strerror(rc)));
    return idem->then;
}

keel_status orders_idem_settle(struct keel_request *req, struct orders_idem *idem, keel_status then)
{
    int status = req->problem_status ? req->problem_status : keel_status_http(req->rc);

    idem->then = then;
    if (status >= 500)
        return keel_db_run(req, KEEL_DB_WRITE, release_tx, settled, idem);
    /* Render the problem now, exactly as the error filter will, to keep it. */
    if (keel_problem_render(req) < 0)
        return then;
    idem->status = req->resp.status;
    keel_buf_reset(&idem->response);
    if (keel_buf_append(&idem->response, req->resp.body.data, req->resp.body.len) < 0)
        return keel_db_run(req, KEEL_DB_WRITE, release_tx, settled, idem);
    return keel_db_run(req, KEEL_DB_WRITE, store_tx, settled, idem);
}

/* ------------------------------------------------------------ replay */

keel_status orders_idem_replay(struct keel_request *req, struct orders_idem *idem)
{
    char *loc = NULL;

    keel_resp_start(req, idem->status,
                    idem->status >= 400 ? "application/problem+json" : "application/json");
    if (keel_buf_append(&req->resp.body, idem->response.data, idem->response.len) < 0)
        return KEEL_E_NOMEM;
    if (idem->replay_location[0]) {
        loc = keel_arena_strdup(req->arena, idem->replay_location);
        if (!loc || keel_resp_header(req, "Location", loc) < 0)
            return KEEL_E_NOMEM;
    }
    if (keel_resp_header(req, "Idempotent-Replayed", "true") < 0)
        return KEEL_E_NOMEM;
    return KEEL_DONE;
}
