/*
 * auth_int.h - the identity module's internal interfaces
 * (docs/internals/identity.md). Nothing outside src/modules/auth includes
 * this (but its unit tests).
 */
#ifndef KEEL_AUTH_INT_H
#define KEEL_AUTH_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/auth.h"
#include "keel/http.h"
#include "keel/jwt.h"
#include "keel/password.h"

struct keel_command;
struct keel_config;
struct keel_db;
struct keel_db_conn;
struct keel_metric;

#define AUTH_ROLE_MAX  16
#define AUTH_EMAIL_MAX 254
#define AUTH_NAME_MAX  100 /* code points */

/* ------------------------------------------------------------ keys.c */

/* Builds the signing keyset from KEEL_JWT_SECRET, or in development from a
 * random key kept in KEEL_DATA_DIR/jwt.key (created 0600 on first use).
 * Main thread, at start. */
keel_status auth_keys_init(const struct keel_config *cfg);
void auth_keys_fini(void);
const struct keel_jwt_keyset *auth_keyset(void);

/* The password cost from the configuration. */
const struct keel_password_params *auth_password_params(void);
void auth_password_params_set(const struct keel_config *cfg);

/* ----------------------------------------------------------- hashq.c */

/* Sizes the per-loop hash queues: ceil(concurrency / threads) slots per
 * loop, and a FIFO of HASHQ_MAX_WAITING beyond them. */
keel_status auth_hashq_init(const struct keel_config *cfg);
void auth_hashq_fini(void);
/* keel_request_offload for password hashing, behind the cap. Returns
 * KEEL_AGAIN (return it), or a 503 problem when the loop's queue is
 * full. */
keel_status
auth_hashq_submit(struct keel_request *req, keel_work_fn work, keel_resume_fn done, void *arg);

/* ----------------------------------------------------------- authz.c */

/* Loads the role -> permission table from the database (main thread, at
 * start). */
keel_status auth_authz_load(struct keel_db *db);
void auth_authz_fini(void);
/* True for admin, manager, user and viewer (the roles in the table). */
bool auth_authz_role_known(const char *role);

/* ------------------------------------------------------- blocklist.c */

/* Starts the blocklist: the in-process table, and a poller thread that
 * copies new database rows into it every second. */
keel_status auth_blocklist_init(const struct keel_config *cfg, struct keel_db *db);
void auth_blocklist_fini(void);
/* Records a revocation in the in-process table (any thread). kind 'j':
 * subject is a jti, value_ms its exp; kind 'u': subject is a user id,
 * value_ms the cut-off. */
void auth_blocklist_note(char kind, const char *subject, int64_t value_ms);
/* True when the in-process table revokes this identity. Any thread. */
bool auth_blocklist_local(const struct keel_identity *id);
/* Writes a revocation to the database (storage-lane thread, inside the caller's
 * transaction) and notes it locally. */
keel_status auth_blocklist_store(
    struct keel_db_conn *c, char kind, const char *subject, int64_t value_ms, int64_t expires_ms);
/* Publishes a revocation to Redis from the loop, then continues the
 * request with `then` once Redis has answered, so the client's next request
 * to any instance sees it. Returns KEEL_AGAIN (parked), or `then` at once
 * when Redis is not configured or not usable (the database poll carries
 * the revocation to the other instances within a second). */
keel_status auth_blocklist_publish(struct keel_request *req,
                                   char kind,
                                   const char *subject,
                                   int64_t value_ms,
                                   int64_t expires_ms,
                                   keel_status then);
/* Asks Redis whether the identity is revoked; calls done(req, revoked)
 * on the loop. Returns false (and never calls done) when Redis is not
 * usable now: the caller then relies on auth_blocklist_local. */
typedef void (*auth_blocklist_cb)(struct keel_request *req, bool revoked);
bool auth_blocklist_ask_redis(struct keel_request *req,
                              const struct keel_identity *id,
                              auth_blocklist_cb done);

/* -------------------------------------------------------- throttle.c */

/* Login throttling state of one key, as stored. */
struct throttle_state {
    int64_t failures;
    int64_t window_ms;  /* start of the counting window */
    int64_t blocked_ms; /* no attempt before this time */
};

enum throttle_kind {
    THROTTLE_ACCOUNT_IP, /* "ai:<email>|<ip>" */
    THROTTLE_ACCOUNT,    /* "a:<email>" */
    THROTTLE_IP,         /* "i:<ip>" */
    THROTTLE_KINDS,
};

#define THROTTLE_WINDOW_MS (15 * 60 * 1000)

/* Milliseconds the caller must still wait (0: may try now). */
int64_t auth_throttle_wait(const struct throttle_state *s, int64_t now_ms);
/* Records one failure into s (a zeroed s is a fresh key). Returns true
 * when this failure started or lengthened a block (a "lockout" for the
 * metric). */
bool auth_throttle_fail(enum throttle_kind k, struct throttle_state *s, int64_t now_ms);

/* ------------------------------------------------------------ repo.c */

struct user_row {
    char id[37];
    char email[AUTH_EMAIL_MAX + 1];
    char name[4 * AUTH_NAME_MAX + 1];
    char role[AUTH_ROLE_MAX + 1];
    char password_hash[KEEL_PASSWORD_HASH_LEN];
    int64_t created_us, updated_us;
};

keel_status auth_repo_user_insert(struct keel_db_conn *c, const struct user_row *u);
/* KEEL_E_NOT_FOUND when there is no such user. */
keel_status auth_repo_user_by_email(struct keel_db_conn *c, const char *email, struct user_row *u);
keel_status auth_repo_user_by_id(struct keel_db_conn *c, const char *id, struct user_row *u);
keel_status auth_repo_user_set_hash(struct keel_db_conn *c, const char *id, const char *hash);
keel_status auth_repo_user_set_name(struct keel_db_conn *c, const char *id, const char *name);
keel_status auth_repo_user_set_role(struct keel_db_conn *c, const char *id, const char *role);
keel_status auth_repo_user_delete(struct keel_db_conn *c, const char *id);

/* Starts a family and its first token. */
keel_status auth_repo_family_new(struct keel_db_conn *c,
                                 const char *family_id,
                                 const char *user_id,
                                 const char *token_hash,
                                 int64_t expires_ms);
/* The refresh token's state, for rotation. */
struct refresh_row {
    char family_id[37];
    char user_id[37];
    int64_t expires_ms;
    bool rotated;        /* the token was used already */
    bool family_revoked; /* the family is revoked (logout, reuse, user change) */
};
keel_status auth_repo_refresh_get(struct keel_db_conn *c, const char *hash, struct refresh_row *r);
/* Marks `old_hash` rotated (only if it was not: KEEL_E_CONFLICT when a
 * concurrent refresh won) and adds `new_hash` to the family. */
keel_status auth_repo_refresh_rotate(struct keel_db_conn *c,
                                     const char *old_hash,
                                     const char *family_id,
                                     const char *new_hash,
                                     int64_t expires_ms);
keel_status auth_repo_family_revoke(struct keel_db_conn *c, const char *family_id);
keel_status auth_repo_families_revoke_user(struct keel_db_conn *c, const char *user_id);

keel_status
auth_repo_throttle_get(struct keel_db_conn *c, const char *key, struct throttle_state *s);
keel_status
auth_repo_throttle_put(struct keel_db_conn *c, const char *key, const struct throttle_state *s);
/* Locks the key's row (creating it empty) until the transaction ends, so
 * concurrent failures of one key add up. Call in the order of enum
 * throttle_kind (no deadlock). */
keel_status auth_repo_throttle_lock(struct keel_db_conn *c, const char *key);
keel_status auth_repo_throttle_clear(struct keel_db_conn *c, const char *key);

/* Revokes every session of a user and cuts off their access tokens
 * (role change, deletion). Pool thread, inside a transaction. */
keel_status auth_revoke_user(struct keel_db_conn *c, const char *user_id, int64_t now_ms);

/* ------------------------------------------------------ shared helpers */

/* Writes a user as the API shows it (no password hash). */
struct keel_json;
void auth_user_json(struct keel_json *j, const struct user_row *u);
/* Maps a storage failure to the client's answer (409, 503, 500). */
keel_status auth_db_failure(struct keel_request *req, keel_status rc);
/* Security event log line: event name, the user (may be NULL) and the
 * client IP of req (may be NULL), never a secret. */
void auth_security_event(struct keel_request *req, const char *event, const char *user_id);
/* SPEC section 3: an email is trimmed (spaces, tabs) and lowercased
 * (ASCII). Writes the result to out and returns true when it is an
 * address: one @, a local part, a domain with a dot not at either end, no
 * controls, spaces, quotes, <>,;\ and at most AUTH_EMAIL_MAX bytes. */
bool auth_normalize_email(const char *in, char out[AUTH_EMAIL_MAX + 1]);
/* The client IP of the request as text ("" when unknown). */
const char *auth_client_ip(struct keel_request *req);

/* ---------------------------------------------- mw_authn.c, mw_authz.c */

/* The module's middleware (ACCESS phase): the Bearer token becomes the
 * identity (401 otherwise); the route's permission against its role
 * (403). */
extern const struct keel_middleware auth_mw_authn;
extern const struct keel_middleware auth_mw_authz;

/* ------------------------------------------------------- cmd_users.c */

/* `keel users create-admin`, the module's subcommand (keel/module.h). */
extern const struct keel_command auth_cmd_users;

/* ------------------------------------------------------------ metrics */

/* The module's metric families (module.c's .metrics table): logins and
 * refreshes by result, lockouts, and requests authentication refused. */
extern struct keel_metric *auth_metric_login;
extern struct keel_metric *auth_metric_lockouts;
extern struct keel_metric *auth_metric_refresh;
extern struct keel_metric *auth_metric_rejected;

/* ------------------------------------------------------------ routes */

void auth_users_cache_init(void);
void auth_users_cache_fini(void);
keel_status auth_register(struct keel_request *req);
keel_status auth_login(struct keel_request *req);
keel_status auth_refresh(struct keel_request *req);
keel_status auth_logout(struct keel_request *req);
keel_status auth_users_me_get(struct keel_request *req);
keel_status auth_users_me_patch(struct keel_request *req);
keel_status auth_users_sessions_list(struct keel_request *req);
keel_status auth_users_session_delete(struct keel_request *req);
keel_status auth_users_list(struct keel_request *req);
keel_status auth_users_patch(struct keel_request *req);
keel_status auth_users_delete(struct keel_request *req);

#endif
