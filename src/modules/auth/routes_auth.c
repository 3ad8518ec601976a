/*
 * routes_auth.c - POST /auth/register, /auth/login, /auth/refresh and
 * /auth/logout (SPEC section 3, "Auth"; seed 000 "auth flow").
 *
 * Each handler is a short chain of steps that alternate between the loop
 * (parsing, signing, answering) and the thread pool (the database through
 * keel_db_run, Argon2id through the hash queue), carrying their state in
 * one arena struct.
 */
#include <json-c/json.h>
#include <string.h>

#include "keel/config.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/uuid.h"

#include "auth_int.h"

static void count(struct keel_metric *m, const char *label)
{
    keel_metric_add(m, (const char *const[]){label}, 1);
}

/* ------------------------------------------------------------ helpers */

/* A string member of the (schema-checked) body, or NULL. */
static const char *body_str(struct keel_request *req, const char *key, size_t *len)
{
    struct json_object *v;

    if (!req->json || !json_object_object_get_ex(req->json, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

/* The normalized email of the body, in the arena; NULL (after recording
 * a validation error) when it is not an email. */
static char *normalize_email(struct keel_request *req, const char *in)
{
    char *e = keel_arena_alloc(req->arena, AUTH_EMAIL_MAX + 1);

    if (!e)
        return NULL;
    if (!auth_normalize_email(in, e)) {
        keel_fail_field(req, "email", "must be a valid email address");
        return NULL;
    }
    return e;
}

static keel_status set_refresh_cookie(struct keel_request *req, const char *token, uint32_t ttl_s)
{
    char *v;

    if (token)
        v = keel_arena_sprintf(req->arena,
                               "refresh=%s; Max-Age=%u; Path=/auth/refresh; HttpOnly; Secure; "
                               "SameSite=Strict",
                               token, ttl_s);
    else
        v = keel_arena_sprintf(req->arena, "refresh=; Max-Age=0; Path=/auth/refresh; HttpOnly; "
                                           "Secure; SameSite=Strict");
    return v ? keel_resp_header(req, "Set-Cookie", v) : KEEL_E_NOMEM;
}

/* The refresh token of a request: body {refresh_token} first, else the
 * `refresh` cookie. Returns NULL when there is none. */
static const char *find_refresh(struct keel_request *req, size_t *len)
{
    const char *t = body_str(req, "refresh_token", len), *p, *end;
    unsigned i;

    if (t)
        return t;
    for (i = 0; i < req->nheaders; i++) {
        if (!keel_str_caseeq(req->headers[i].name, "Cookie"))
            continue;
        p = req->headers[i].value.p;
        end = p + req->headers[i].value.len;
        while (p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;

            while (p < stop && *p == ' ')
                p++;
            if ((size_t)(stop - p) > 8 && memcmp(p, "refresh=", 8) == 0) {
                *len = (size_t)(stop - p - 8);
                return p + 8;
            }
            p = semi ? semi + 1 : end;
        }
    }
    return NULL;
}

/* Answers a new token pair: 200 JSON plus the refresh cookie. */
static keel_status
answer_pair(struct keel_request *req, const char *user_id, const char *role, const char *refresh)
{
    const struct keel_config *cfg = req->cfg;
    struct keel_jwt_claims claims;
    struct keel_buf tok;
    struct keel_json j;
    keel_status rc;

    rc = keel_jwt_claims_init(&claims, user_id, role, keel_wall_ms() / 1000,
                              cfg->access_token_ttl_s);
    if (rc < 0)
        return keel_errorf(req, KEEL_E_INTERNAL, "jwt claims: %s", keel_strerror(rc));
    keel_buf_init(&tok, KEEL_JWT_MAX_LEN + 1);
    rc = keel_jwt_sign(auth_keyset(), cfg->jwt_issuer, cfg->jwt_audience, &claims, &tok);
    if (rc < 0) {
        keel_buf_free(&tok);
        return keel_errorf(req, KEEL_E_INTERNAL, "jwt sign: %s", keel_strerror(rc));
    }
    keel_resp_start(req, 200, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "access_token");
    keel_json_strn(&j, tok.data, tok.len);
    keel_json_key(&j, "token_type");
    keel_json_str(&j, "Bearer");
    keel_json_key(&j, "expires_in");
    keel_json_uint(&j, cfg->access_token_ttl_s);
    keel_json_key(&j, "refresh_token");
    keel_json_str(&j, refresh);
    keel_json_key(&j, "refresh_expires_in");
    keel_json_uint(&j, cfg->refresh_token_ttl_s);
    keel_json_obj_close(&j);
    keel_buf_free(&tok);
    if (keel_json_end(&j) < 0 || set_refresh_cookie(req, refresh, cfg->refresh_token_ttl_s) < 0 ||
        keel_resp_set_header(req, "Cache-Control", "no-store") < 0)
        return KEEL_E_NOMEM;
    return KEEL_DONE;
}

/* ----------------------------------------------------------- register */

struct reg {
    struct user_row u;
    const char *password;
    size_t password_len;
    keel_status hash_rc;
};

static keel_status reg_insert(struct keel_db_conn *c, void *arg)
{
    return auth_repo_user_insert(c, &((struct reg *)arg)->u);
}

static keel_status reg_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct reg *r = arg;
    struct keel_json j;
    char *loc;

    if (rc == KEEL_E_CONFLICT)
        return keel_fail(req, 409, NULL, "An account with this email already exists.");
    if (rc < 0)
        return auth_db_failure(req, rc);
    loc = keel_arena_sprintf(req->arena, "/api/v1/users/%s", r->u.id);
    if (!loc || keel_resp_header(req, "Location", loc) < 0)
        return KEEL_E_NOMEM;
    keel_resp_start(req, 201, "application/json");
    keel_json_begin(&j, &req->resp.body);
    auth_user_json(&j, &r->u);
    return keel_json_end(&j) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static void reg_hash(void *arg)
{
    struct reg *r = arg;

    r->hash_rc = keel_password_hash(r->password, r->password_len, auth_password_params(),
                                    r->u.password_hash);
}

static keel_status reg_hashed(struct keel_request *req, void *arg)
{
    struct reg *r = arg;

    if (r->hash_rc < 0)
        return keel_errorf(req, r->hash_rc, "password hash: %s", keel_strerror(r->hash_rc));
    return keel_db_run(req, KEEL_DB_WRITE, reg_insert, reg_done, r);
}

keel_status auth_register(struct keel_request *req)
{
    struct reg *r = keel_arena_calloc(req->arena, 1, sizeof(*r));
    const char *email = body_str(req, "email", NULL), *name, *why;
    char *norm;
    size_t nlen = 0;

    if (!r)
        return KEEL_E_NOMEM;
    norm = normalize_email(req, email ? email : "");
    r->password = body_str(req, "password", &r->password_len);
    if (!r->password)
        keel_fail_field(req, "password", "is required");
    else if (keel_password_check_policy(r->password, r->password_len, &why) < 0)
        keel_fail_field(req, "password", why);
    name = body_str(req, "name", &nlen);
    if (!norm || !name || req->nproblem_fields)
        return keel_fail(req, 400, "validation-error", "The request body is invalid.");
    strcpy(r->u.email, norm);
    if (nlen >= sizeof(r->u.name))
        return keel_fail_field(req, "name", "is too long");
    memcpy(r->u.name, name, nlen + 1);
    strcpy(r->u.role, "user");
    keel_uuid_v7(r->u.id);
    r->u.created_us = r->u.updated_us = keel_wall_ms() * 1000;
    return auth_hashq_submit(req, reg_hash, reg_hashed, r);
}

/* -------------------------------------------------------------- login */

struct login {
    struct user_row u;
    bool found;
    const char *password;
    size_t password_len;
    char *keys[THROTTLE_KINDS];
    struct throttle_state st[THROTTLE_KINDS];
    int64_t wait_ms;
    keel_status verify_rc;
    bool rehashed;
    bool lockout;
    char new_hash[KEEL_PASSWORD_HASH_LEN];
    char family[37];
    char refresh[KEEL_REFRESH_TOKEN_LEN + 1];
    char refresh_hash[65];
    int64_t refresh_exp_ms;
};

/* Step 1 (pool): throttle state and the user. */
static keel_status login_load(struct keel_db_conn *c, void *arg)
{
    struct login *l = arg;
    int64_t now = keel_wall_ms(), w;
    keel_status rc;
    unsigned k;

    for (k = 0; k < THROTTLE_KINDS; k++) {
        rc = auth_repo_throttle_get(c, l->keys[k], &l->st[k]);
        if (rc < 0)
            return rc;
        w = auth_throttle_wait(&l->st[k], now);
        if (w > l->wait_ms)
            l->wait_ms = w;
    }
    if (l->wait_ms > 0)
        return KEEL_OK;
    rc = auth_repo_user_by_email(c, l->u.email, &l->u);
    if (rc == KEEL_E_NOT_FOUND)
        return KEEL_OK;
    l->found = rc == KEEL_OK;
    return rc;
}

/* Step 2 (hash queue): verify, or spend the same on a dummy. */
static void login_verify(void *arg)
{
    struct login *l = arg;
    const struct keel_password_params *p = auth_password_params();

    if (!l->found) {
        l->verify_rc = keel_password_dummy_verify(l->password, l->password_len, p);
        return;
    }
    l->verify_rc = keel_password_verify(l->u.password_hash, l->password, l->password_len);
    if (l->verify_rc == KEEL_OK && keel_password_needs_rehash(l->u.password_hash, p))
        l->rehashed = keel_password_hash(l->password, l->password_len, p, l->new_hash) == KEEL_OK;
}

/* Step 3 (pool, transaction): record the outcome. */
static keel_status login_record(struct keel_db_conn *c, void *arg)
{
    struct login *l = arg;
    int64_t now = keel_wall_ms();
    keel_status rc = KEEL_OK;
    unsigned k;

    if (l->verify_rc == KEEL_OK) {
        for (k = 0; k < THROTTLE_IP && rc == KEEL_OK; k++)
            if (l->st[k].failures)
                rc = auth_repo_throttle_clear(c, l->keys[k]);
        if (rc == KEEL_OK && l->rehashed)
            rc = auth_repo_user_set_hash(c, l->u.id, l->new_hash);
        if (rc == KEEL_OK)
            rc = auth_repo_family_new(c, l->family, l->u.id, l->refresh_hash, l->refresh_exp_ms);
        return rc;
    }
    l->lockout = false;
    for (k = 0; k < THROTTLE_KINDS && rc == KEEL_OK; k++) {
        /* Lock, then re-read: concurrent failures of one key must add up
         * (a plain read-modify-write loses them under READ COMMITTED). */
        rc = auth_repo_throttle_lock(c, l->keys[k]);
        if (rc == KEEL_OK)
            rc = auth_repo_throttle_get(c, l->keys[k], &l->st[k]);
        if (rc == KEEL_OK) {
            l->lockout |= auth_throttle_fail((enum throttle_kind)k, &l->st[k], now);
            rc = auth_repo_throttle_put(c, l->keys[k], &l->st[k]);
        }
    }
    return rc;
}

static keel_status login_recorded(struct keel_request *req, keel_status rc, void *arg)
{
    struct login *l = arg;

    if (rc < 0)
        return auth_db_failure(req, rc);
    if (l->verify_rc != KEEL_OK) {
        count(auth_metric_login, "failure");
        if (l->lockout)
            keel_metric_add(auth_metric_lockouts, NULL, 1);
        auth_security_event(req, l->lockout ? "login_lockout" : "login_failed",
                            l->found ? l->u.id : NULL);
        keel_resp_set_header(req, "WWW-Authenticate", "Bearer");
        return keel_fail(req, 401, NULL, "The email or password is incorrect.");
    }
    count(auth_metric_login, "success");
    return answer_pair(req, l->u.id, l->u.role, l->refresh);
}

static keel_status login_verified(struct keel_request *req, void *arg)
{
    struct login *l = arg;

    if (l->verify_rc == KEEL_E_NOMEM)
        return keel_errorf(req, KEEL_E_UNAVAILABLE, "password verify: out of memory");
    if (l->verify_rc == KEEL_OK) {
        keel_uuid_v7(l->family);
        keel_refresh_token_new(l->refresh);
        (void)keel_refresh_token_hash(l->refresh, KEEL_REFRESH_TOKEN_LEN, l->refresh_hash);
        l->refresh_exp_ms = keel_wall_ms() + (int64_t)req->cfg->refresh_token_ttl_s * 1000;
    }
    return keel_db_run(req, KEEL_DB_WRITE, login_record, login_recorded, l);
}

static keel_status throttled(struct keel_request *req, int64_t wait_ms)
{
    char *ra = keel_arena_sprintf(req->arena, "%lld", (long long)((wait_ms + 999) / 1000));

    if (!ra || keel_resp_set_header(req, "Retry-After", ra) < 0)
        return KEEL_E_NOMEM;
    return keel_fail(req, 429, "rate-limited", "Too many failed sign-ins; try again later.");
}

static keel_status login_loaded(struct keel_request *req, keel_status rc, void *arg)
{
    struct login *l = arg;

    if (rc < 0)
        return auth_db_failure(req, rc);
    if (l->wait_ms > 0) {
        count(auth_metric_login, "throttled");
        auth_security_event(req, "login_throttled", NULL);
        return throttled(req, l->wait_ms);
    }
    return auth_hashq_submit(req, login_verify, login_verified, l);
}

keel_status auth_login(struct keel_request *req)
{
    struct login *l = keel_arena_calloc(req->arena, 1, sizeof(*l));
    const char *email = body_str(req, "email", NULL), *ip;
    char *norm;

    if (!l)
        return KEEL_E_NOMEM;
    l->password = body_str(req, "password", &l->password_len);
    norm = normalize_email(req, email ? email : "");
    if (!norm || !l->password)
        return keel_fail(req, 400, "validation-error", "The request body is invalid.");
    strcpy(l->u.email, norm);
    ip = auth_client_ip(req);
    l->keys[THROTTLE_ACCOUNT_IP] = keel_arena_sprintf(req->arena, "ai:%s|%s", norm, ip);
    l->keys[THROTTLE_ACCOUNT] = keel_arena_sprintf(req->arena, "a:%s", norm);
    l->keys[THROTTLE_IP] = keel_arena_sprintf(req->arena, "i:%s", ip);
    if (!l->keys[0] || !l->keys[1] || !l->keys[2])
        return KEEL_E_NOMEM;
    return keel_db_run(req, KEEL_DB_READ_PRIMARY, login_load, login_loaded, l);
}

/* ------------------------------------------------------------ refresh */

enum refresh_outcome { R_OK, R_INVALID, R_REUSE };

struct refresh {
    char hash[65];
    enum refresh_outcome outcome;
    struct refresh_row row;
    struct user_row u;
    char next[KEEL_REFRESH_TOKEN_LEN + 1];
    char next_hash[65];
    int64_t exp_ms;
};

static keel_status refresh_tx(struct keel_db_conn *c, void *arg)
{
    struct refresh *r = arg;
    keel_status rc;

    r->outcome = R_INVALID;
    rc = auth_repo_refresh_get(c, r->hash, &r->row);
    if (rc == KEEL_E_NOT_FOUND)
        return KEEL_OK;
    if (rc < 0)
        return rc;
    if (r->row.family_revoked || r->row.expires_ms <= keel_wall_ms())
        return KEEL_OK;
    if (!r->row.rotated) {
        rc = auth_repo_user_by_id(c, r->row.user_id, &r->u);
        if (rc == KEEL_E_NOT_FOUND)
            return KEEL_OK;
        if (rc < 0)
            return rc;
        rc = auth_repo_refresh_rotate(c, r->hash, r->row.family_id, r->next_hash, r->exp_ms);
        if (rc == KEEL_OK) {
            r->outcome = R_OK;
            return KEEL_OK;
        }
        if (rc != KEEL_E_CONFLICT)
            return rc;
        /* A concurrent refresh rotated it first: this is a second use. */
    }
    /* Reuse of a rotated token (RFC 9700 4.14.2): the family is burnt. */
    r->outcome = R_REUSE;
    return auth_repo_family_revoke(c, r->row.family_id);
}

static keel_status refresh_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct refresh *r = arg;

    if (rc < 0)
        return auth_db_failure(req, rc);
    if (r->outcome == R_REUSE) {
        count(auth_metric_refresh, "reuse");
        auth_security_event(req, "refresh_token_reuse", r->row.user_id);
    }
    if (r->outcome != R_OK) {
        if (r->outcome == R_INVALID)
            count(auth_metric_refresh, "invalid");
        set_refresh_cookie(req, NULL, 0);
        return keel_fail(req, 401, NULL, "The refresh token is invalid or expired.");
    }
    count(auth_metric_refresh, "success");
    return answer_pair(req, r->u.id, r->u.role, r->next);
}

keel_status auth_refresh(struct keel_request *req)
{
    struct refresh *r = keel_arena_calloc(req->arena, 1, sizeof(*r));
    const char *tok;
    size_t len = 0;

    if (!r)
        return KEEL_E_NOMEM;
    tok = find_refresh(req, &len);
    if (!tok || keel_refresh_token_hash(tok, len, r->hash) < 0) {
        count(auth_metric_refresh, "invalid");
        return keel_fail(req, 401, NULL, "The refresh token is invalid or expired.");
    }
    keel_refresh_token_new(r->next);
    (void)keel_refresh_token_hash(r->next, KEEL_REFRESH_TOKEN_LEN, r->next_hash);
    r->exp_ms = keel_wall_ms() + (int64_t)req->cfg->refresh_token_ttl_s * 1000;
    return keel_db_run(req, KEEL_DB_WRITE, refresh_tx, refresh_done, r);
}

/* ------------------------------------------------------------- logout */

struct logout {
    struct keel_identity id;
    bool has_refresh;
    char hash[65];
};

static keel_status logout_tx(struct keel_db_conn *c, void *arg)
{
    struct logout *l = arg;
    struct refresh_row row;
    keel_status rc;

    rc = auth_blocklist_store(c, 'j', l->id.jti, l->id.exp * 1000, l->id.exp * 1000);
    if (rc < 0 || !l->has_refresh)
        return rc;
    rc = auth_repo_refresh_get(c, l->hash, &row);
    if (rc == KEEL_E_NOT_FOUND)
        return KEEL_OK;
    if (rc < 0)
        return rc;
    /* Only the caller's own session: a token of another user is ignored. */
    if (strcmp(row.user_id, l->id.user_id) != 0)
        return KEEL_OK;
    return auth_repo_family_revoke(c, row.family_id);
}

static keel_status logout_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct logout *l = arg;

    if (rc < 0)
        return auth_db_failure(req, rc);
    if (set_refresh_cookie(req, NULL, 0) < 0)
        return KEEL_E_NOMEM;
    keel_resp_start(req, 204, NULL);
    return auth_blocklist_publish(req, 'j', l->id.jti, l->id.exp * 1000, l->id.exp * 1000,
                                  KEEL_DONE);
}

keel_status auth_logout(struct keel_request *req)
{
    const struct keel_identity *id = keel_auth_identity(req);
    struct logout *l = keel_arena_calloc(req->arena, 1, sizeof(*l));
    const char *tok;
    size_t len = 0;

    if (!l)
        return KEEL_E_NOMEM;
    l->id = *id;
    tok = find_refresh(req, &len);
    l->has_refresh = tok && keel_refresh_token_hash(tok, len, l->hash) == KEEL_OK;
    return keel_db_run(req, KEEL_DB_WRITE, logout_tx, logout_done, l);
}
