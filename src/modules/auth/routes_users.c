/*
 * routes_users.c - the user's own profile and sessions, and the admin user
 * endpoints (SPEC section 3, "Auth").
 */
#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/db.h"
#include "keel/json.h"
#include "keel/l1cache.h"
#include "keel/log.h"
#include "keel/uuid.h"

#include "auth_int.h"

#define LIST_DEFAULT 20
#define LIST_MAX     100

struct one_user {
    char id[37];
    struct user_row u;
    const char *name; /* PATCH me */
    const char *role; /* PATCH {id} */
    int64_t cut_ms;
    bool last_admin;
    bool revoked; /* the transaction revoked the user's sessions */
};

static keel_status answer_user(struct keel_request *req, const struct user_row *u)
{
    struct keel_json j;

    keel_resp_start(req, 200, "application/json");
    keel_json_begin(&j, &req->resp.body);
    auth_user_json(&j, u);
    return keel_json_end(&j) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static keel_status user_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct one_user *o = arg;

    if (rc < 0)
        return auth_db_failure(req, rc);
    if (o->last_admin)
        return keel_fail(req, 409, NULL, "The last admin cannot be demoted or deleted.");
    return answer_user(req, &o->u);
}

static struct one_user *one_user(struct keel_request *req, const char *id)
{
    struct one_user *o = keel_arena_calloc(req->arena, 1, sizeof(*o));

    if (o)
        snprintf(o->id, sizeof(o->id), "%s", id);
    return o;
}

static const char *param_id(struct keel_request *req)
{
    struct keel_str s = keel_request_param(req, "id");
    char *id = keel_arena_alloc(req->arena, 37);

    if (!id || s.len != 36)
        return NULL;
    memcpy(id, s.p, 36);
    id[36] = '\0';
    /* Ids are stored lowercase: an uppercase spelling names the same user. */
    for (char *p = id; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    return id;
}

/* -------------------------------------------------------------- me */

/* Profiles are cached in process for PROFILE_TTL_MS (docs/internals/identity.md,
 * "Profile cache"): a change made through this process drops its entry at
 * once; another instance's copy lives at most the TTL. */
#define PROFILE_TTL_MS 2000

static struct keel_l1 *profiles;

void auth_users_cache_init(void)
{
    profiles = keel_l1_new(8u << 20, 0, NULL, NULL);
}

void auth_users_cache_fini(void)
{
    keel_l1_free(profiles);
    profiles = NULL;
}

static void profile_drop(const char *id)
{
    if (profiles)
        keel_l1_del(profiles, id, strlen(id));
}

static keel_status me_cached(struct keel_request *req, keel_status rc, void *arg)
{
    struct one_user *o = arg;

    rc = user_done(req, rc, arg);
    if (rc == KEEL_DONE && profiles)
        keel_l1_set(profiles, o->id, strlen(o->id), req->resp.body.data, req->resp.body.len,
                    PROFILE_TTL_MS);
    return rc;
}

static keel_status me_get_q(struct keel_db_conn *c, void *arg)
{
    struct one_user *o = arg;

    return auth_repo_user_by_id(c, o->id, &o->u);
}

keel_status auth_users_me_get(struct keel_request *req)
{
    struct one_user *o = one_user(req, keel_auth_identity(req)->user_id);

    if (!o)
        return KEEL_E_NOMEM;
    keel_resp_start(req, 200, "application/json");
    if (profiles && keel_l1_get(profiles, o->id, strlen(o->id), &req->resp.body) == KEEL_OK)
        return KEEL_DONE;
    keel_buf_reset(&req->resp.body);
    return keel_db_run(req, KEEL_DB_READ, me_get_q, me_cached, o);
}

static keel_status me_patch_tx(struct keel_db_conn *c, void *arg)
{
    struct one_user *o = arg;
    keel_status rc = auth_repo_user_set_name(c, o->id, o->name);

    return rc < 0 ? rc : auth_repo_user_by_id(c, o->id, &o->u);
}

/* After the commit, so no read between can cache the old name again. */
static keel_status me_patched(struct keel_request *req, keel_status rc, void *arg)
{
    profile_drop(((struct one_user *)arg)->id);
    return user_done(req, rc, arg);
}

keel_status auth_users_me_patch(struct keel_request *req)
{
    struct one_user *o = one_user(req, keel_auth_identity(req)->user_id);
    struct json_object *v;

    if (!o)
        return KEEL_E_NOMEM;
    if (!json_object_object_get_ex(req->json, "name", &v) ||
        !json_object_is_type(v, json_type_string))
        return keel_fail_field(req, "name", "is required");
    o->name = json_object_get_string(v);
    return keel_db_run(req, KEEL_DB_WRITE, me_patch_tx, me_patched, o);
}

/* ------------------------------------------------------------ pages
 *
 * Lists use keyset pagination on UUIDv7 ids (SPEC section 3: ?limit=1..100,
 * default 20, ?cursor=<opaque>, answered {"items": [...], "next_cursor"}).
 * The cursor is the last id of the page, base64url-encoded. The query asks
 * for limit + 1 rows: the extra one only says that a next page exists. */

struct page {
    int64_t limit;
    char after[37];      /* "" on the first page */
    int64_t n;           /* rows seen */
    char last[37];       /* the last id shown */
    struct keel_buf out; /* the rendered answer, built on the storage-lane thread */
};

/* Parses ?limit and ?cursor into p. */
static keel_status page_params(struct keel_request *req, struct page *p)
{
    const char *v;
    unsigned char raw[64];
    size_t n;
    char *end;
    long long lim;

    p->limit = LIST_DEFAULT;
    if (keel_request_query(req, "limit", &v) == KEEL_OK) {
        lim = strtoll(v, &end, 10);
        if (*v == '\0' || *end || lim < 1 || lim > LIST_MAX)
            keel_fail_field(req, "limit", "must be an integer between 1 and 100");
        else
            p->limit = lim;
    }
    if (keel_request_query(req, "cursor", &v) == KEEL_OK) {
        if (sodium_base642bin(raw, sizeof(raw), v, strlen(v), NULL, &n, NULL,
                              sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
            n != 36 || !keel_uuid_valid((const char *)raw, 36))
            keel_fail_field(req, "cursor", "is not a cursor this API issued");
        else
            memcpy(p->after, raw, 36);
    }
    if (req->nproblem_fields)
        return keel_fail(req, 400, "validation-error", "Invalid query.");
    keel_buf_init(&p->out, 4 << 20);
    return KEEL_OK;
}

/* Opens the answer; call before the rows. */
static void page_open(struct page *p, struct keel_json *j)
{
    keel_json_begin(j, &p->out);
    keel_json_obj_open(j);
    keel_json_key(j, "items");
    keel_json_arr_open(j);
}

/* Counts a row; false for the extra row past the page (do not show it). */
static bool page_row(struct page *p, const char *id)
{
    if (++p->n > p->limit)
        return false;
    memcpy(p->last, id, sizeof(p->last));
    return true;
}

/* Closes the answer with its next_cursor. */
static keel_status page_close(struct page *p, struct keel_json *j)
{
    char cur[64];

    keel_json_arr_close(j);
    keel_json_key(j, "next_cursor");
    if (p->n > p->limit) {
        sodium_bin2base64(cur, sizeof(cur), (const unsigned char *)p->last, 36,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        keel_json_str(j, cur);
    } else {
        keel_json_null(j);
    }
    keel_json_obj_close(j);
    return keel_json_end(j) < 0 ? KEEL_E_NOMEM : KEEL_OK;
}

/* The done callback of a list: answers the rendered page. The page must
 * be the first member of the callback's argument. */
static keel_status page_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct page *p = arg;

    if (rc == KEEL_OK) {
        keel_resp_start(req, 200, "application/json");
        if (keel_buf_append(&req->resp.body, p->out.data, p->out.len) < 0)
            rc = KEEL_E_NOMEM;
    }
    keel_buf_free(&p->out);
    return rc < 0 ? auth_db_failure(req, rc) : KEEL_DONE;
}

/* --------------------------------------------------------- sessions */

struct sessions {
    struct page page; /* first: page_done reads it */
    char user_id[37];
    char family[37];
};

static keel_status sessions_q(struct keel_db_conn *c, void *arg)
{
    struct sessions *s = arg;
    struct keel_db_param p[] = {KEEL_DB_UUID(s->user_id), KEEL_DB_INT(keel_wall_ms()),
                                KEEL_DB_INT(s->page.limit + 1), KEEL_DB_UUID(s->page.after)};
    struct keel_db_rows *r;
    struct keel_json j;
    char id[37], t[KEEL_TIME_STRLEN];
    keel_status rc;

    if (s->page.after[0])
        rc = keel_db_query(c,
                           "SELECT id, created_us, last_used_us, expires_ms FROM refresh_families"
                           " WHERE user_id = $1 AND revoked_ms IS NULL AND expires_ms > $2"
                           " AND id > $4 ORDER BY id LIMIT $3",
                           p, 4, &r);
    else
        rc = keel_db_query(c,
                           "SELECT id, created_us, last_used_us, expires_ms FROM refresh_families"
                           " WHERE user_id = $1 AND revoked_ms IS NULL AND expires_ms > $2"
                           " ORDER BY id LIMIT $3",
                           p, 3, &r);
    if (rc < 0)
        return rc;
    page_open(&s->page, &j);
    while ((rc = keel_db_next(r)) == KEEL_OK) {
        if (!keel_db_uuid(r, 0, id) || !page_row(&s->page, id))
            continue;
        keel_json_obj_open(&j);
        keel_json_key(&j, "id");
        keel_json_str(&j, id);
        keel_json_key(&j, "created_at");
        keel_time_format(keel_db_int64(r, 1), t);
        keel_json_str(&j, t);
        keel_json_key(&j, "last_used_at");
        keel_time_format(keel_db_int64(r, 2), t);
        keel_json_str(&j, t);
        keel_json_key(&j, "expires_at");
        keel_time_format(keel_db_int64(r, 3) * 1000, t);
        keel_json_str(&j, t);
        keel_json_obj_close(&j);
    }
    keel_db_rows_free(r);
    if (rc != KEEL_DONE)
        return rc < 0 ? rc : KEEL_E_DB;
    return page_close(&s->page, &j);
}

keel_status auth_users_sessions_list(struct keel_request *req)
{
    struct sessions *s = keel_arena_calloc(req->arena, 1, sizeof(*s));
    keel_status rc;

    if (!s)
        return KEEL_E_NOMEM;
    rc = page_params(req, &s->page);
    if (rc < 0)
        return rc;
    strcpy(s->user_id, keel_auth_identity(req)->user_id);
    return keel_db_run(req, KEEL_DB_READ_PRIMARY, sessions_q, page_done, s);
}

static keel_status session_revoke_tx(struct keel_db_conn *c, void *arg)
{
    struct sessions *s = arg;
    struct keel_db_param p[] = {KEEL_DB_UUID(s->family), KEEL_DB_UUID(s->user_id)};
    keel_status rc;

    /* Ownership in the query: another user's session is "not found". */
    rc = keel_db_query_one(c,
                           "SELECT id FROM refresh_families"
                           " WHERE id = $1 AND user_id = $2 AND revoked_ms IS NULL",
                           p, KEEL_ARRAY_LEN(p), NULL, NULL);
    if (rc < 0)
        return rc;
    return auth_repo_family_revoke(c, s->family);
}

static keel_status session_revoke_done(struct keel_request *req, keel_status rc, void *arg)
{
    (void)arg;
    if (rc < 0)
        return auth_db_failure(req, rc);
    keel_resp_start(req, 204, NULL);
    return KEEL_DONE;
}

keel_status auth_users_session_delete(struct keel_request *req)
{
    struct sessions *s = keel_arena_calloc(req->arena, 1, sizeof(*s));
    const char *id = param_id(req);

    if (!s || !id)
        return KEEL_E_NOMEM;
    strcpy(s->user_id, keel_auth_identity(req)->user_id);
    strcpy(s->family, id);
    return keel_db_run(req, KEEL_DB_WRITE, session_revoke_tx, session_revoke_done, s);
}

/* ------------------------------------------------------------ admin */

static keel_status list_q(struct keel_db_conn *c, void *arg)
{
    struct page *pg = arg;
    struct keel_db_param p[] = {KEEL_DB_INT(pg->limit + 1), KEEL_DB_UUID(pg->after)};
    struct keel_db_rows *r;
    struct keel_json j;
    struct user_row u;
    keel_status rc;

    if (pg->after[0])
        rc = keel_db_query(c,
                           "SELECT id, email, name, role, created_us, updated_us FROM users"
                           " WHERE id > $2 ORDER BY id LIMIT $1",
                           p, 2, &r);
    else
        rc = keel_db_query(c,
                           "SELECT id, email, name, role, created_us, updated_us FROM users"
                           " ORDER BY id LIMIT $1",
                           p, 1, &r);
    if (rc < 0)
        return rc;
    page_open(pg, &j);
    while ((rc = keel_db_next(r)) == KEEL_OK) {
        memset(&u, 0, sizeof(u));
        if (!keel_db_uuid(r, 0, u.id) || !page_row(pg, u.id))
            continue;
        snprintf(u.email, sizeof(u.email), "%s", keel_db_text(r, 1, NULL));
        snprintf(u.name, sizeof(u.name), "%s", keel_db_text(r, 2, NULL));
        snprintf(u.role, sizeof(u.role), "%s", keel_db_text(r, 3, NULL));
        u.created_us = keel_db_int64(r, 4);
        u.updated_us = keel_db_int64(r, 5);
        auth_user_json(&j, &u);
    }
    keel_db_rows_free(r);
    if (rc != KEEL_DONE)
        return rc < 0 ? rc : KEEL_E_DB;
    return page_close(pg, &j);
}

keel_status auth_users_list(struct keel_request *req)
{
    struct page *p = keel_arena_calloc(req->arena, 1, sizeof(*p));
    keel_status rc;

    if (!p)
        return KEEL_E_NOMEM;
    rc = page_params(req, p);
    if (rc < 0)
        return rc;
    return keel_db_run(req, KEEL_DB_READ, list_q, page_done, p);
}

static keel_status read_no_other(const struct keel_db_rows *r, void *arg)
{
    *(bool *)arg = keel_db_int64(r, 0) == 0;
    return KEEL_OK;
}

/* True when `id` is the only admin left (storage-lane thread). */
static keel_status is_last_admin(struct keel_db_conn *c, const char *id, bool *out)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(id)};

    *out = false;
    return keel_db_query_one(c, "SELECT COUNT(*) FROM users WHERE role = 'admin' AND id <> $1", p,
                             1, read_no_other, out);
}

static keel_status role_tx(struct keel_db_conn *c, void *arg)
{
    struct one_user *o = arg;
    keel_status rc = auth_repo_user_by_id(c, o->id, &o->u);

    if (rc < 0)
        return rc;
    if (strcmp(o->u.role, o->role) == 0)
        return KEEL_OK; /* nothing changes, nothing is revoked */
    if (strcmp(o->u.role, "admin") == 0) {
        rc = is_last_admin(c, o->id, &o->last_admin);
        if (rc < 0 || o->last_admin)
            return rc;
    }
    rc = auth_repo_user_set_role(c, o->id, o->role);
    if (rc == KEEL_OK)
        rc = auth_revoke_user(c, o->id, o->cut_ms);
    o->revoked = rc == KEEL_OK;
    if (rc == KEEL_OK)
        rc = auth_repo_user_by_id(c, o->id, &o->u);
    return rc;
}

static keel_status revoked_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct one_user *o = arg;

    profile_drop(o->id);
    if (rc == KEEL_OK && !o->last_admin && req->method == KEEL_HTTP_DELETE) {
        keel_resp_start(req, 204, NULL);
        rc = KEEL_DONE;
    } else {
        rc = user_done(req, rc, arg);
    }
    if (rc == KEEL_DONE && !o->last_admin && o->revoked)
        rc = auth_blocklist_publish(req, 'u', o->id, o->cut_ms,
                                    o->cut_ms + (int64_t)KEEL_JWT_MAX_LIFETIME_S * 1000, KEEL_DONE);
    return rc;
}

keel_status auth_users_patch(struct keel_request *req)
{
    const char *id = param_id(req);
    struct one_user *o = id ? one_user(req, id) : NULL;
    struct json_object *v;

    if (!o)
        return KEEL_E_NOMEM;
    if (!json_object_object_get_ex(req->json, "role", &v) ||
        !json_object_is_type(v, json_type_string) ||
        !auth_authz_role_known(json_object_get_string(v)))
        return keel_fail_field(req, "role", "must be one of admin, manager, user, viewer");
    o->role = json_object_get_string(v);
    o->cut_ms = keel_wall_ms();
    return keel_db_run(req, KEEL_DB_WRITE, role_tx, revoked_done, o);
}

static keel_status delete_tx(struct keel_db_conn *c, void *arg)
{
    struct one_user *o = arg;
    keel_status rc = auth_repo_user_by_id(c, o->id, &o->u);

    if (rc < 0)
        return rc;
    if (strcmp(o->u.role, "admin") == 0) {
        rc = is_last_admin(c, o->id, &o->last_admin);
        if (rc < 0 || o->last_admin)
            return rc;
    }
    rc = auth_revoke_user(c, o->id, o->cut_ms);
    if (rc == KEEL_OK)
        rc = auth_repo_user_delete(c, o->id);
    o->revoked = rc == KEEL_OK;
    return rc;
}

keel_status auth_users_delete(struct keel_request *req)
{
    const char *id = param_id(req);
    struct one_user *o = id ? one_user(req, id) : NULL;

    if (!o)
        return KEEL_E_NOMEM;
    o->cut_ms = keel_wall_ms();
    return keel_db_run(req, KEEL_DB_WRITE, delete_tx, revoked_done, o);
}
