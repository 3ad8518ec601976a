/*
 * repo.c - the identity module's SQL (storage-lane threads only; include/keel/db.h).
 *
 * Every statement is a constant string with bound parameters, one per
 * operation, in the dialect-neutral subset both drivers accept.
 */
#include <string.h>

#include "keel/db.h"

#include "auth_int.h"

#define USER_COLS "id, email, name, role, password_hash, created_us, updated_us"

static void copy_text(const struct keel_db_rows *r, unsigned col, char *out, size_t cap)
{
    size_t len = 0;
    const char *s = keel_db_text(r, col, &len);

    if (!s || len >= cap)
        len = 0;
    else
        memcpy(out, s, len);
    out[len] = '\0';
}

static keel_status read_user(const struct keel_db_rows *r, void *arg)
{
    struct user_row *u = arg;

    memset(u, 0, sizeof(*u));
    copy_text(r, 1, u->email, sizeof(u->email));
    copy_text(r, 2, u->name, sizeof(u->name));
    copy_text(r, 3, u->role, sizeof(u->role));
    copy_text(r, 4, u->password_hash, sizeof(u->password_hash));
    u->created_us = keel_db_int64(r, 5);
    u->updated_us = keel_db_int64(r, 6);
    return keel_db_uuid(r, 0, u->id) ? KEEL_OK : KEEL_E_DB;
}

static keel_status
user_one(struct keel_db_conn *c, const char *sql, const struct keel_db_param *p, struct user_row *u)
{
    return keel_db_query_one(c, sql, p, 1, read_user, u);
}

keel_status auth_repo_user_by_email(struct keel_db_conn *c, const char *email, struct user_row *u)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(email)};

    return user_one(c, "SELECT " USER_COLS " FROM users WHERE email = $1", p, u);
}

keel_status auth_repo_user_by_id(struct keel_db_conn *c, const char *id, struct user_row *u)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(id)};

    return user_one(c, "SELECT " USER_COLS " FROM users WHERE id = $1", p, u);
}

keel_status auth_repo_user_insert(struct keel_db_conn *c, const struct user_row *u)
{
    struct keel_db_param p[] = {
        KEEL_DB_UUID(u->id),        KEEL_DB_TEXT(u->email),         KEEL_DB_TEXT(u->name),
        KEEL_DB_TEXT(u->role),      KEEL_DB_TEXT(u->password_hash), KEEL_DB_INT(u->created_us),
        KEEL_DB_INT(u->updated_us),
    };

    return keel_db_exec(c,
                        "INSERT INTO users (id, email, name, role, password_hash, created_us,"
                        " updated_us) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        p, KEEL_ARRAY_LEN(p), NULL);
}

static keel_status user_set(struct keel_db_conn *c, const char *sql, const char *id, const char *v)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(id), KEEL_DB_TEXT(v),
                                KEEL_DB_INT(keel_wall_ms() * 1000)};
    int64_t n = 0;
    keel_status rc = keel_db_exec(c, sql, p, KEEL_ARRAY_LEN(p), &n);

    return rc < 0 ? rc : n == 0 ? KEEL_E_NOT_FOUND : KEEL_OK;
}

keel_status auth_repo_user_set_hash(struct keel_db_conn *c, const char *id, const char *hash)
{
    return user_set(c, "UPDATE users SET password_hash = $2, updated_us = $3 WHERE id = $1", id,
                    hash);
}

keel_status auth_repo_user_set_name(struct keel_db_conn *c, const char *id, const char *name)
{
    return user_set(c, "UPDATE users SET name = $2, updated_us = $3 WHERE id = $1", id, name);
}

keel_status auth_repo_user_set_role(struct keel_db_conn *c, const char *id, const char *role)
{
    return user_set(c, "UPDATE users SET role = $2, updated_us = $3 WHERE id = $1", id, role);
}

keel_status auth_repo_user_delete(struct keel_db_conn *c, const char *id)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(id)};
    int64_t n = 0;
    keel_status rc = keel_db_exec(c, "DELETE FROM users WHERE id = $1", p, 1, &n);

    return rc < 0 ? rc : n == 0 ? KEEL_E_NOT_FOUND : KEEL_OK;
}

/* ------------------------------------------------------ refresh tokens */

keel_status auth_repo_family_new(struct keel_db_conn *c,
                                 const char *family_id,
                                 const char *user_id,
                                 const char *token_hash,
                                 int64_t expires_ms)
{
    int64_t now_us = keel_wall_ms() * 1000;
    struct keel_db_param f[] = {KEEL_DB_UUID(family_id), KEEL_DB_UUID(user_id), KEEL_DB_INT(now_us),
                                KEEL_DB_INT(expires_ms)};
    struct keel_db_param t[] = {KEEL_DB_TEXT(token_hash), KEEL_DB_UUID(family_id),
                                KEEL_DB_INT(expires_ms)};
    keel_status rc;

    rc = keel_db_exec(c,
                      "INSERT INTO refresh_families (id, user_id, created_us, last_used_us,"
                      " expires_ms) VALUES ($1, $2, $3, $3, $4)",
                      f, KEEL_ARRAY_LEN(f), NULL);
    if (rc < 0)
        return rc;
    return keel_db_exec(c,
                        "INSERT INTO refresh_tokens (token_hash, family_id, expires_ms)"
                        " VALUES ($1, $2, $3)",
                        t, KEEL_ARRAY_LEN(t), NULL);
}

static keel_status read_refresh(const struct keel_db_rows *r, void *arg)
{
    struct refresh_row *out = arg;

    memset(out, 0, sizeof(*out));
    out->expires_ms = keel_db_int64(r, 2);
    out->rotated = !keel_db_is_null(r, 3);
    out->family_revoked = !keel_db_is_null(r, 4);
    if (!keel_db_uuid(r, 0, out->family_id) || !keel_db_uuid(r, 1, out->user_id))
        return KEEL_E_DB;
    return KEEL_OK;
}

keel_status auth_repo_refresh_get(struct keel_db_conn *c, const char *hash, struct refresh_row *out)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(hash)};

    return keel_db_query_one(c,
                             "SELECT t.family_id, f.user_id, t.expires_ms, t.rotated_ms,"
                             " f.revoked_ms FROM refresh_tokens t"
                             " JOIN refresh_families f ON f.id = t.family_id"
                             " WHERE t.token_hash = $1",
                             p, 1, read_refresh, out);
}

keel_status auth_repo_refresh_rotate(struct keel_db_conn *c,
                                     const char *old_hash,
                                     const char *family_id,
                                     const char *new_hash,
                                     int64_t expires_ms)
{
    int64_t now_ms = keel_wall_ms();
    struct keel_db_param o[] = {KEEL_DB_TEXT(old_hash), KEEL_DB_INT(now_ms)};
    struct keel_db_param t[] = {KEEL_DB_TEXT(new_hash), KEEL_DB_UUID(family_id),
                                KEEL_DB_INT(expires_ms)};
    struct keel_db_param f[] = {KEEL_DB_UUID(family_id), KEEL_DB_INT(now_ms * 1000),
                                KEEL_DB_INT(expires_ms)};
    int64_t n = 0;
    keel_status rc;

    /* The conditional update is the lock: of two concurrent refreshes with
     * one token, exactly one changes a row. */
    rc = keel_db_exec(c,
                      "UPDATE refresh_tokens SET rotated_ms = $2"
                      " WHERE token_hash = $1 AND rotated_ms IS NULL",
                      o, KEEL_ARRAY_LEN(o), &n);
    if (rc < 0)
        return rc;
    if (n != 1)
        return KEEL_E_CONFLICT;
    rc = keel_db_exec(c,
                      "INSERT INTO refresh_tokens (token_hash, family_id, expires_ms)"
                      " VALUES ($1, $2, $3)",
                      t, KEEL_ARRAY_LEN(t), NULL);
    if (rc < 0)
        return rc;
    return keel_db_exec(c,
                        "UPDATE refresh_families SET last_used_us = $2, expires_ms = $3"
                        " WHERE id = $1",
                        f, KEEL_ARRAY_LEN(f), NULL);
}

keel_status auth_repo_family_revoke(struct keel_db_conn *c, const char *family_id)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(family_id), KEEL_DB_INT(keel_wall_ms())};

    return keel_db_exec(c,
                        "UPDATE refresh_families SET revoked_ms = $2"
                        " WHERE id = $1 AND revoked_ms IS NULL",
                        p, KEEL_ARRAY_LEN(p), NULL);
}

keel_status auth_repo_families_revoke_user(struct keel_db_conn *c, const char *user_id)
{
    struct keel_db_param p[] = {KEEL_DB_UUID(user_id), KEEL_DB_INT(keel_wall_ms())};

    return keel_db_exec(c,
                        "UPDATE refresh_families SET revoked_ms = $2"
                        " WHERE user_id = $1 AND revoked_ms IS NULL",
                        p, KEEL_ARRAY_LEN(p), NULL);
}

/* ------------------------------------------------------------ throttle */

static keel_status read_throttle(const struct keel_db_rows *r, void *arg)
{
    struct throttle_state *s = arg;

    s->failures = keel_db_int64(r, 0);
    s->window_ms = keel_db_int64(r, 1);
    s->blocked_ms = keel_db_int64(r, 2);
    return KEEL_OK;
}

/* No row is a clean state, not an error. */
keel_status
auth_repo_throttle_get(struct keel_db_conn *c, const char *key, struct throttle_state *s)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(key)};
    keel_status rc;

    memset(s, 0, sizeof(*s));
    rc = keel_db_query_one(c,
                           "SELECT failures, window_ms, blocked_ms FROM login_throttle"
                           " WHERE key = $1",
                           p, 1, read_throttle, s);
    return rc == KEEL_E_NOT_FOUND ? KEEL_OK : rc;
}

keel_status
auth_repo_throttle_put(struct keel_db_conn *c, const char *key, const struct throttle_state *s)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(key), KEEL_DB_INT(s->failures),
                                KEEL_DB_INT(s->window_ms), KEEL_DB_INT(s->blocked_ms)};

    return keel_db_exec(c,
                        "INSERT INTO login_throttle (key, failures, window_ms, blocked_ms)"
                        " VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET"
                        " failures = excluded.failures, window_ms = excluded.window_ms,"
                        " blocked_ms = excluded.blocked_ms",
                        p, KEEL_ARRAY_LEN(p), NULL);
}

keel_status auth_repo_throttle_lock(struct keel_db_conn *c, const char *key)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(key)};

    /* An upsert that changes nothing but takes the row lock (PostgreSQL
     * waits here for a concurrent failure of the same key to commit); the
     * next statement's snapshot then sees that failure. SQLite serializes
     * write transactions anyway. */
    return keel_db_exec(c,
                        "INSERT INTO login_throttle (key, failures, window_ms, blocked_ms)"
                        " VALUES ($1, 0, 0, 0) ON CONFLICT (key) DO UPDATE SET"
                        " failures = login_throttle.failures",
                        p, 1, NULL);
}

keel_status auth_repo_throttle_clear(struct keel_db_conn *c, const char *key)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(key)};

    return keel_db_exec(c, "DELETE FROM login_throttle WHERE key = $1", p, 1, NULL);
}
