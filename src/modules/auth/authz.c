/*
 * authz.c - roles and permissions (SPEC section 3, "Roles"): the table the
 * migration seeds, loaded once at start, and the checks handlers use.
 *
 * DESIGN: the table is tiny (4 roles, a dozen permissions) and read-only
 * after start, so a lookup is a few string compares with no lock. Deny by
 * default: an unknown role or permission holds nothing.
 */
#include <string.h>

#include "keel/db.h"
#include "keel/log.h"

#include "auth_int.h"

#define MAX_ROLES 8
#define MAX_PERMS 64
#define PERM_MAX  48

struct role {
    char name[AUTH_ROLE_MAX + 1];
    char perms[MAX_PERMS][PERM_MAX + 1];
    unsigned nperms;
};

static struct role roles[MAX_ROLES];
static unsigned nroles;

static struct role *role_find(const char *name)
{
    unsigned i;

    for (i = 0; name && i < nroles; i++)
        if (strcmp(roles[i].name, name) == 0)
            return &roles[i];
    return NULL;
}

static keel_status load(struct keel_db_conn *c, void *arg)
{
    struct keel_db_rows *r;
    const char *role, *perm;
    struct role *ro;
    size_t rl, pl;
    keel_status rc;

    (void)arg;
    nroles = 0;
    rc = keel_db_query(c,
                       "SELECT r.name, rp.permission FROM roles r"
                       " LEFT JOIN role_permissions rp ON rp.role = r.name"
                       " ORDER BY r.name, rp.permission",
                       NULL, 0, &r);
    if (rc < 0)
        return rc;
    while ((rc = keel_db_next(r)) == KEEL_OK) {
        role = keel_db_text(r, 0, &rl);
        if (!role || rl == 0 || rl > AUTH_ROLE_MAX) {
            rc = KEEL_E_INVALID;
            break;
        }
        ro = role_find(role);
        if (!ro) {
            if (nroles == MAX_ROLES) {
                rc = KEEL_E_TOO_LARGE;
                break;
            }
            ro = &roles[nroles++];
            memcpy(ro->name, role, rl + 1);
        }
        if (keel_db_is_null(r, 1))
            continue;
        perm = keel_db_text(r, 1, &pl);
        if (!perm || pl == 0 || pl > PERM_MAX || ro->nperms == MAX_PERMS) {
            rc = KEEL_E_INVALID;
            break;
        }
        memcpy(ro->perms[ro->nperms++], perm, pl + 1);
    }
    keel_db_rows_free(r);
    return rc == KEEL_DONE ? KEEL_OK : rc;
}

keel_status auth_authz_load(struct keel_db *db)
{
    struct keel_db_conn *c;
    keel_status rc;

    rc = keel_db_acquire(db, KEEL_DB_READ_PRIMARY, NULL, &c);
    if (rc < 0)
        return rc;
    rc = load(c, NULL);
    keel_db_release(c);
    if (rc < 0)
        keel_log(KEEL_LOG_ERROR, "cannot load roles and permissions",
                 KEEL_LF_STR("error", keel_strerror(rc)));
    return rc;
}

void auth_authz_fini(void)
{
    nroles = 0;
}

bool auth_authz_role_known(const char *role)
{
    return role_find(role) != NULL;
}

bool keel_auth_role_can(const char *role, const char *permission)
{
    const struct role *ro = role_find(role);
    unsigned i;

    if (!ro || !permission)
        return false;
    for (i = 0; i < ro->nperms; i++)
        if (strcmp(ro->perms[i], permission) == 0)
            return true;
    return false;
}

const struct keel_identity *keel_auth_identity(const struct keel_request *req)
{
    return req->mw_data[KEEL_MW_SLOT_AUTH];
}

bool keel_auth_can(const struct keel_request *req, const char *permission)
{
    const struct keel_identity *id = keel_auth_identity(req);

    return id && keel_auth_role_can(id->role, permission);
}

keel_status keel_auth_require_owner(struct keel_request *req,
                                    const char *owner_id,
                                    const char *override_permission)
{
    const struct keel_identity *id = keel_auth_identity(req);

    if (id && owner_id && strcmp(id->user_id, owner_id) == 0)
        return KEEL_OK;
    if (id && override_permission && keel_auth_role_can(id->role, override_permission))
        return KEEL_OK;
    return keel_fail(req, 404, NULL, "No resource at this path.");
}
