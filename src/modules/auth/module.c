/*
 * module.c - the identity module: start and stop, and the helpers its
 * route files share (docs/internals/identity.md).
 */
#include "keel/module.h"

#include <string.h>

#include "keel/clientip.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/problem.h"
#include "keel/schema.h"

#include "auth_int.h"

static void fini(void)
{
    auth_blocklist_fini();
    auth_users_cache_fini();
    auth_authz_fini();
    auth_hashq_fini();
    auth_keys_fini();
}

static keel_status init(const struct keel_config *cfg)
{
    struct keel_db *db = keel_db_default();
    keel_status rc;

    if (!db)
        return KEEL_E_INVALID;
    auth_users_cache_init();
    rc = auth_keys_init(cfg);
    if (rc == KEEL_OK)
        rc = keel_password_init(auth_password_params());
    if (rc == KEEL_OK)
        rc = auth_hashq_init(cfg);
    if (rc == KEEL_OK)
        rc = auth_authz_load(db);
    if (rc == KEEL_OK)
        rc = auth_blocklist_init(cfg, db);
    if (rc < 0)
        fini(); /* the registry calls fini only after a successful init */
    return rc;
}

static const char *const role_names[] = {"admin", "manager", "user", "viewer", NULL};

static const struct keel_schema_field register_fields[] = {
    {.name = "email",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_REQUIRED,
     .min = 3,
     .max = AUTH_EMAIL_MAX},
    {.name = "password",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_REQUIRED,
     .min = KEEL_PASSWORD_MIN_CHARS,
     .max = KEEL_PASSWORD_MAX_CHARS},
    {.name = "name",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_REQUIRED,
     .min = 1,
     .max = AUTH_NAME_MAX},
};
static const struct keel_schema register_schema = {register_fields, 3, false};

/* Login checks no password policy: a policy change must not lock anyone out. */
static const struct keel_schema_field login_fields[] = {
    {.name = "email",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_REQUIRED,
     .min = 1,
     .max = AUTH_EMAIL_MAX},
    {.name = "password",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_REQUIRED,
     .min = 1,
     .max = KEEL_PASSWORD_MAX_CHARS},
};
static const struct keel_schema login_schema = {login_fields, 2, false};

static const struct keel_schema_field refresh_fields[] = {
    {.name = "refresh_token", .type = KEEL_SCHEMA_STRING, .min = 1, .max = 64},
};
static const struct keel_schema refresh_schema = {refresh_fields, 1, false};

#define READ_ONLY(n)                                                                               \
    {                                                                                              \
        .name = n, .type = KEEL_SCHEMA_STRING, .flags = KEEL_SF_READ_ONLY                          \
    }

static const struct keel_schema_field me_fields[] = {
    {.name = "name",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_REQUIRED,
     .min = 1,
     .max = AUTH_NAME_MAX},
    READ_ONLY("id"),
    READ_ONLY("email"),
    READ_ONLY("role"),
    READ_ONLY("created_at"),
    READ_ONLY("updated_at"),
    READ_ONLY("password"),
};
static const struct keel_schema me_schema = {me_fields, KEEL_ARRAY_LEN(me_fields), true};

static const struct keel_schema_field role_fields[] = {
    {.name = "role",
     .type = KEEL_SCHEMA_STRING,
     .flags = KEEL_SF_REQUIRED,
     .enum_values = role_names},
    READ_ONLY("id"),
    READ_ONLY("email"),
    READ_ONLY("name"),
    READ_ONLY("created_at"),
    READ_ONLY("updated_at"),
    READ_ONLY("password"),
};
static const struct keel_schema role_schema = {role_fields, KEEL_ARRAY_LEN(role_fields), true};

#define AUTH_FLAGS KEEL_ROUTE_AUTH_LIMIT

static const struct keel_route routes[] = {
    {.method = KEEL_HTTP_POST,
     .pattern = "/auth/register",
     .handler = auth_register,
     .schema = &register_schema,
     .body = KEEL_BODY_JSON,
     .flags = AUTH_FLAGS},
    {.method = KEEL_HTTP_POST,
     .pattern = "/auth/login",
     .handler = auth_login,
     .schema = &login_schema,
     .body = KEEL_BODY_JSON,
     .flags = AUTH_FLAGS},
    {.method = KEEL_HTTP_POST,
     .pattern = "/auth/refresh",
     .handler = auth_refresh,
     .schema = &refresh_schema,
     .body = KEEL_BODY_JSON_OPTIONAL,
     .flags = AUTH_FLAGS},
    {.method = KEEL_HTTP_POST,
     .pattern = "/auth/logout",
     .handler = auth_logout,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "sessions:manage",
     .schema = &refresh_schema,
     .body = KEEL_BODY_JSON_OPTIONAL,
     .flags = AUTH_FLAGS},
    {.method = KEEL_HTTP_GET,
     .pattern = "/api/v1/users/me",
     .handler = auth_users_me_get,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "profile:read"},
    {.method = KEEL_HTTP_PATCH,
     .pattern = "/api/v1/users/me",
     .handler = auth_users_me_patch,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "profile:write",
     .schema = &me_schema,
     .body = KEEL_BODY_JSON},
    {.method = KEEL_HTTP_GET,
     .pattern = "/api/v1/users/me/sessions",
     .handler = auth_users_sessions_list,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "sessions:manage"},
    {.method = KEEL_HTTP_DELETE,
     .pattern = "/api/v1/users/me/sessions/{id:uuid}",
     .handler = auth_users_session_delete,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "sessions:manage"},
    {.method = KEEL_HTTP_GET,
     .pattern = "/api/v1/users",
     .handler = auth_users_list,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "users:read"},
    {.method = KEEL_HTTP_PATCH,
     .pattern = "/api/v1/users/{id:uuid}",
     .handler = auth_users_patch,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "users:write",
     .schema = &role_schema,
     .body = KEEL_BODY_JSON},
    {.method = KEEL_HTTP_DELETE,
     .pattern = "/api/v1/users/{id:uuid}",
     .handler = auth_users_delete,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "users:write"},
};

static const struct keel_middleware *const middleware[] = {&auth_mw_authn, &auth_mw_authz};

struct keel_metric *auth_metric_login;
struct keel_metric *auth_metric_lockouts;
struct keel_metric *auth_metric_refresh;
struct keel_metric *auth_metric_rejected;

static const char *const result_label[] = {"result"};
static const char *const reason_label[] = {"reason"};

static const struct keel_metric_def metrics[] = {
    {.kind = KEEL_METRIC_COUNTER,
     .name = "keel_auth_login_total",
     .help = "Login attempts by result (success, failure, throttled).",
     .nlabels = 1,
     .labels = result_label,
     .out = &auth_metric_login},
    {.kind = KEEL_METRIC_COUNTER,
     .name = "keel_auth_lockouts_total",
     .help = "Login failures that started or lengthened a throttle delay.",
     .out = &auth_metric_lockouts},
    {.kind = KEEL_METRIC_COUNTER,
     .name = "keel_auth_refresh_total",
     .help = "Refresh attempts by result (success, invalid, reuse).",
     .nlabels = 1,
     .labels = result_label,
     .out = &auth_metric_refresh},
    {.kind = KEEL_METRIC_COUNTER,
     .name = "keel_auth_rejected_total",
     .help = "Requests refused by authentication, by reason.",
     .nlabels = 1,
     .labels = reason_label,
     .out = &auth_metric_rejected},
};

const struct keel_module keel_module_auth = {
    .name = "auth",
    .init = init,
    .fini = fini,
    .routes = routes,
    .nroutes = KEEL_ARRAY_LEN(routes),
    .middleware = middleware,
    .nmiddleware = KEEL_ARRAY_LEN(middleware),
    .metrics = metrics,
    .nmetrics = KEEL_ARRAY_LEN(metrics),
    .commands = &auth_cmd_users,
    .ncommands = 1,
};

void auth_user_json(struct keel_json *j, const struct user_row *u)
{
    char t[KEEL_TIME_STRLEN];

    keel_json_obj_open(j);
    keel_json_key(j, "id");
    keel_json_str(j, u->id);
    keel_json_key(j, "email");
    keel_json_str(j, u->email);
    keel_json_key(j, "name");
    keel_json_str(j, u->name);
    keel_json_key(j, "role");
    keel_json_str(j, u->role);
    keel_json_key(j, "created_at");
    keel_time_format(u->created_us, t);
    keel_json_str(j, t);
    keel_json_key(j, "updated_at");
    keel_time_format(u->updated_us, t);
    keel_json_str(j, t);
    keel_json_obj_close(j);
}

keel_status auth_db_failure(struct keel_request *req, keel_status rc)
{
    if (rc == KEEL_E_CONFLICT)
        return keel_fail(req, 409, NULL, "The request conflicts with the current state.");
    return keel_fail_storage(req, rc, "database", "No resource at this path.");
}

bool auth_normalize_email(const char *in, char out[AUTH_EMAIL_MAX + 1])
{
    size_t n, i, at = 0, nat = 0;

    out[0] = '\0';
    while (*in == ' ' || *in == '\t')
        in++;
    n = strlen(in);
    while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\t'))
        n--;
    if (n == 0 || n > AUTH_EMAIL_MAX)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];

        /* No controls, spaces, quotes or the characters that make an
         * address ambiguous in a header or a log line. */
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == ',' ||
            c == ';')
            return false;
        if (c == '@') {
            at = i;
            nat++;
        }
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    out[n] = '\0';
    if (nat != 1 || at == 0 || at == n - 1 || !strchr(out + at + 1, '.') || out[n - 1] == '.' ||
        out[at + 1] == '.' || strstr(out + at, "..")) {
        out[0] = '\0';
        return false;
    }
    return true;
}

const char *auth_client_ip(struct keel_request *req)
{
    const struct keel_clientip *ip = keel_request_client(req);

    return ip ? ip->text : "";
}

/* User ids are hashed as in every log line (keel/log.h). */
void auth_security_event(struct keel_request *req, const char *event, const char *user_id)
{
    char uid[17];

    if (user_id)
        keel_log_hash_user_id(user_id, uid);
    keel_log(KEEL_LOG_WARN, "security event", KEEL_LF_STR("security_event", event),
             KEEL_LF_STR("request_id", req->request_id),
             user_id ? KEEL_LF_STR("user_id", uid) : KEEL_LF_NULL("user_id"),
             KEEL_LF_STR("client_ip", auth_client_ip(req)),
             KEEL_LF_STR("route", req->route_pattern ? req->route_pattern : ""));
}

keel_status auth_revoke_user(struct keel_db_conn *c, const char *user_id, int64_t now_ms)
{
    keel_status rc = auth_repo_families_revoke_user(c, user_id);

    if (rc == KEEL_OK)
        rc = auth_blocklist_store(c, 'u', user_id, now_ms,
                                  now_ms + (int64_t)KEEL_JWT_MAX_LIFETIME_S * 1000);
    return rc;
}
