/*
 * auth.h - identity and access for handlers and other modules (issue 4;
 * docs/internals/identity.md).
 *
 * The authentication middleware (src/modules/auth/mw_authn.c) verifies the request's
 * Bearer token and attaches an identity; the authorization middleware
 * (src/modules/auth/mw_authz.c) checks the route's permission against the identity's
 * role. Handlers use the functions below for what only the service layer
 * can decide: who owns an object.
 */
#ifndef KEEL_AUTH_H
#define KEEL_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/core.h"

struct keel_request;

/* Who is calling: the verified claims of the access token. */
struct keel_identity {
    char user_id[37];  /* the token's sub (a UUID) */
    char role[17];     /* admin, manager, user or viewer */
    char jti[37];      /* the token's id (a UUIDv7) */
    int64_t exp;       /* seconds since the epoch */
    int64_t issued_ms; /* the jti's UUIDv7 timestamp, milliseconds */
};

/* The request's identity, or NULL when it is anonymous. */
const struct keel_identity *keel_auth_identity(const struct keel_request *req);

/* True when `role` holds `permission` ("resource:action"). Unknown roles
 * and permissions hold nothing (deny by default). Any thread. */
bool keel_auth_role_can(const char *role, const char *permission);

/* True when the request's identity holds `permission`. */
bool keel_auth_can(const struct keel_request *req, const char *permission);

/* The ownership check of the service layer (SPEC section 2, step 9): KEEL_OK
 * when the caller is `owner_id` or holds `override_permission` (may be
 * NULL: nobody overrides). Otherwise records a 404 not-found (never 403, so
 * ids of other users' objects do not leak) and returns its status, for the
 * handler to return. */
keel_status keel_auth_require_owner(struct keel_request *req,
                                    const char *owner_id,
                                    const char *override_permission);

#endif
