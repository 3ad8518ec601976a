/*
 * mw_authz.c - the auth module's authorization middleware (SPEC section 2,
 * step 9): the route's permission against the role of the request's
 * identity (authz.c's table); 403 forbidden when the role lacks it. Deny
 * by default: the router refuses an authenticated route without a
 * permission, and an unknown role holds nothing. Object ownership is the
 * service layer's (keel_auth_require_owner).
 */
#include "keel/auth.h"
#include "keel/http.h"

#include "auth_int.h"

static keel_status authorize(struct keel_request *req)
{
    const struct keel_identity *id;

    if (!req->route || !req->route->permission)
        return KEEL_DECLINED;
    id = keel_auth_identity(req);
    if (!id) /* optional auth, anonymous: the handler decides */
        return KEEL_DECLINED;
    if (!keel_auth_role_can(id->role, req->route->permission))
        return keel_fail(req, 403, NULL, "Your role does not allow this.");
    return KEEL_DECLINED;
}

const struct keel_middleware auth_mw_authz = {
    .name = "authz",
    .order = KEEL_MW_ORDER_AUTHZ,
    .phase = KEEL_PHASE_ACCESS,
    .handler = authorize,
};
