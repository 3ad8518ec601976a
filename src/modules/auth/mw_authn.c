/*
 * mw_authn.c - the auth module's authentication middleware (SPEC section
 * 2, step 8): the Bearer access token becomes the request's identity.
 *
 * For a route with KEEL_AUTH_REQUIRED, a missing, malformed, unverifiable,
 * expired or revoked token answers 401 with `WWW-Authenticate: Bearer`
 * (RFC 6750 section 3); the reason goes to the log only. With
 * KEEL_AUTH_OPTIONAL no token means anonymous, but a bad token is still
 * 401: a client that sends one expects it to count. Public routes never
 * look at the header.
 *
 * Revocation (docs/internals/identity.md, "Blocklist"): the in-process
 * table first; then, with Redis, one MGET on the request's loop. A Redis
 * failure leaves the in-process answer standing.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keel/auth.h"
#include "keel/config.h"
#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/uuid.h"

#include "auth_int.h"

static unsigned char cache_key[crypto_shorthash_KEYBYTES];

static keel_status init(void)
{
    crypto_shorthash_keygen(cache_key);
    return KEEL_OK;
}

static keel_status reject(struct keel_request *req, const char *reason, const char *why)
{
    keel_metric_add(auth_metric_rejected, (const char *const[]){reason}, 1);
    if (why)
        req->internal_detail = why;
    if (keel_resp_set_header(req, "WWW-Authenticate",
                             strcmp(reason, "missing") == 0 ? "Bearer"
                                                            : "Bearer error=\"invalid_token\"") < 0)
        return KEEL_E_NOMEM;
    return keel_fail(req, 401, NULL, "A valid access token is required.");
}

/* The UUIDv7 timestamp of a jti (48 bits of milliseconds). */
static int64_t uuid7_ms(const char *jti)
{
    char hex[13];
    size_t i, o = 0;

    for (i = 0; jti[i] && o < 12; i++)
        if (jti[i] != '-')
            hex[o++] = jti[i];
    hex[o] = '\0';
    return o == 12 ? (int64_t)strtoll(hex, NULL, 16) : 0;
}

/* ------------------------------------------------- verified-token cache
 *
 * Verifying a token (base64url decoding, HMAC-SHA-256, two JSON parses)
 * is most of what authentication costs, and a client sends the same token
 * for its whole 15-minute life. Each loop keeps the tokens it verified in a
 * direct-mapped table: the slot is chosen by a keyed SipHash of the whole
 * token, a hit is a constant-time comparison of the whole token, and the
 * claims' times are checked again on every hit. Revocation is not cached:
 * the blocklist is asked on every request. The keyset never changes while
 * the process runs, so entries never go stale for it. Loop-thread only:
 * slot t belongs to loop t. */
#define TOKEN_CACHE_SLOTS 512
#define TOKEN_CACHE_MAX   1024 /* longer tokens are verified every time */

struct cached_token {
    uint16_t len;
    char token[TOKEN_CACHE_MAX];
    struct keel_jwt_claims claims;
};

struct token_cache {
    struct cached_token slot[TOKEN_CACHE_SLOTS];
};

static struct token_cache *caches[256]; /* by loop id; KEEL_THREADS <= 256 */

static struct cached_token *cache_slot(struct keel_request *req, const char *tok, size_t len)
{
    unsigned t = keel_request_thread(req);
    unsigned char h[crypto_shorthash_BYTES];
    uint32_t i;

    if (len > TOKEN_CACHE_MAX || t >= KEEL_ARRAY_LEN(caches))
        return NULL;
    if (!caches[t])
        caches[t] = keel_xcalloc(1, sizeof(struct token_cache));
    crypto_shorthash(h, (const unsigned char *)tok, len, cache_key);
    memcpy(&i, h, sizeof(i));
    return &caches[t]->slot[i % TOKEN_CACHE_SLOTS];
}

/* Verifies tok: from the cache when this loop verified it before. */
static keel_status verify(struct keel_request *req,
                          const char *tok,
                          size_t len,
                          struct keel_jwt_claims *c,
                          const char **why)
{
    const struct keel_config *cfg = req->cfg;
    struct cached_token *e = cache_slot(req, tok, len);
    struct keel_jwt_verify_opts o;
    int64_t now = keel_wall_ms() / 1000;
    keel_status rc;

    if (e && e->len == len && sodium_memcmp(e->token, tok, len) == 0) {
        /* The verifier's own rule (docs/internals/tokens.md): expired
         * once exp <= now - leeway. */
        if (e->claims.exp <= now - KEEL_JWT_MAX_LEEWAY_S) {
            *why = "expired";
            return KEEL_E_AUTH;
        }
        *c = e->claims;
        return KEEL_OK;
    }
    o.iss = cfg->jwt_issuer;
    o.aud = cfg->jwt_audience;
    o.now = now;
    o.leeway_s = KEEL_JWT_MAX_LEEWAY_S;
    rc = keel_jwt_verify(auth_keyset(), tok, len, &o, c, why);
    if (rc == KEEL_OK && e) {
        /* Only a token already valid now is cached, so nbf and iat passed
         * and only exp can end it later. */
        memcpy(e->token, tok, len);
        e->len = (uint16_t)len;
        e->claims = *c;
    }
    return rc;
}

static void redis_answer(struct keel_request *req, bool revoked)
{
    keel_request_resume(req,
                        revoked ? reject(req, "revoked", "token revoked (redis)") : KEEL_DECLINED);
}

static keel_status authenticate(struct keel_request *req)
{
    const struct keel_header *h;
    struct keel_jwt_claims c;
    struct keel_identity *id;
    const char *why;
    size_t skip;

    if (!req->route || req->route->auth == KEEL_AUTH_NONE)
        return KEEL_DECLINED;
    h = keel_request_header(req, "Authorization");
    if (!h)
        return req->route->auth == KEEL_AUTH_REQUIRED ? reject(req, "missing", NULL)
                                                      : KEEL_DECLINED;
    if (keel_request_header_count(req, "Authorization") != 1)
        return reject(req, "malformed", "several Authorization fields");
    /* RFC 6750 2.1: "Bearer" (any case), one or more spaces, the token. */
    if (h->value.len < 8 || strncasecmp(h->value.p, "Bearer ", 7) != 0)
        return reject(req, "malformed", "not a Bearer credential");
    for (skip = 7; skip < h->value.len && h->value.p[skip] == ' '; skip++)
        ;
    if (verify(req, h->value.p + skip, h->value.len - skip, &c, &why) < 0)
        return reject(req, "invalid", why);
    if (!auth_authz_role_known(c.role) || !keel_uuid_valid(c.sub, strlen(c.sub)))
        return reject(req, "invalid", "unknown role or malformed subject");
    id = keel_arena_calloc(req->arena, 1, sizeof(*id));
    if (!id)
        return KEEL_E_NOMEM;
    memcpy(id->user_id, c.sub, sizeof(id->user_id)); /* 36 characters and NUL: checked above */
    snprintf(id->role, sizeof(id->role), "%s", c.role);
    snprintf(id->jti, sizeof(id->jti), "%s", c.jti);
    id->exp = c.exp;
    id->issued_ms = uuid7_ms(c.jti);
    if (auth_blocklist_local(id))
        return reject(req, "revoked", "token revoked");
    req->mw_data[KEEL_MW_SLOT_AUTH] = id;
    req->task.user_id = id->user_id;
    if (auth_blocklist_ask_redis(req, id, redis_answer))
        return keel_request_park(req);
    return KEEL_DECLINED;
}

const struct keel_middleware auth_mw_authn = {
    .name = "authn",
    .order = KEEL_MW_ORDER_AUTHN,
    .init = init,
    .phase = KEEL_PHASE_ACCESS,
    .handler = authenticate,
};
