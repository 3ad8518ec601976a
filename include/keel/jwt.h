/*
 * jwt.h - access tokens: compact JWS JSON Web Tokens (RFC 7519, RFC 7515)
 * signed with HS256 (HMAC-SHA-256) or EdDSA (Ed25519, RFC 8037), built on
 * libsodium.
 *
 * Keys live in a keyset: each key has a `kid` and exactly one algorithm.
 * Tokens are signed with the keyset's current key; any key still in the set
 * verifies, which is how keys rotate. The verifier takes the algorithm from
 * the key named by the token's `kid`, never from the token, and rejects
 * everything it does not expect (docs/internals/tokens.md lists every rule
 * and the RFC 8725 section behind it).
 *
 * Every function here is pure CPU work (microseconds) and thread-safe as long
 * as the keyset is not modified while it is used: build the keyset at startup
 * or swap in a new one atomically on rotation.
 */
#ifndef KEEL_JWT_H
#define KEEL_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "keel/buf.h"
#include "keel/core.h"

/* Longest token keel_jwt_verify accepts and keel_jwt_sign produces. */
#define KEEL_JWT_MAX_LEN 4096
/* A kid is 1..32 characters of [A-Za-z0-9._-]. */
#define KEEL_JWT_KID_MAX  32
#define KEEL_JWT_MAX_KEYS 8
/* HS256 secrets are 32..64 bytes: at least the hash output size (RFC 7518
 * section 3.2), at most one SHA-256 block so HMAC never pre-hashes them. */
#define KEEL_JWT_HS256_MIN_SECRET 32
#define KEEL_JWT_HS256_MAX_SECRET 64
#define KEEL_JWT_SUB_MAX          64
#define KEEL_JWT_ROLE_MAX         16
/* iss and aud are configuration, not user input; the bound keeps tokens
 * under KEEL_JWT_MAX_LEN. */
#define KEEL_JWT_ISS_MAX 256
/* Largest exp - iat a verifier accepts (access tokens live 15 minutes). */
#define KEEL_JWT_MAX_LIFETIME_S 86400
#define KEEL_JWT_MAX_LEEWAY_S   30

enum keel_jwt_alg {
    KEEL_JWT_HS256 = 1,
    KEEL_JWT_EDDSA = 2,
};

struct keel_jwt_key {
    char kid[KEEL_JWT_KID_MAX + 1];
    enum keel_jwt_alg alg;
    unsigned char secret[KEEL_JWT_HS256_MAX_SECRET]; /* HS256 */
    size_t secret_len;
    unsigned char pk[32], sk[64]; /* EdDSA */
};

/* Zero-initialize (or keel_jwt_keyset_init) before use. Holds secrets: call
 * keel_jwt_keyset_wipe when it is discarded. */
struct keel_jwt_keyset {
    struct keel_jwt_key keys[KEEL_JWT_MAX_KEYS];
    unsigned nkeys;
    unsigned current; /* index of the signing key; meaningful when nkeys > 0 */
};

/* The claims Keel issues and checks. Strings are NUL-terminated. */
struct keel_jwt_claims {
    char sub[KEEL_JWT_SUB_MAX + 1];   /* user id, 1..64 bytes */
    char role[KEEL_JWT_ROLE_MAX + 1]; /* 1..16 bytes */
    char jti[37];                     /* UUID (keel_uuid_v7) */
    int64_t iat, nbf, exp;            /* seconds since the epoch */
};

struct keel_jwt_verify_opts {
    const char *iss;  /* required: the exact issuer */
    const char *aud;  /* required: the audience the token must name */
    int64_t now;      /* seconds since the epoch */
    int64_t leeway_s; /* clock skew allowance; clamped to 0..KEEL_JWT_MAX_LEEWAY_S */
};

/* "HS256" or "EdDSA" (the JOSE names); "?" for anything else. */
const char *keel_jwt_alg_name(enum keel_jwt_alg alg);

/* Empties ks. */
void keel_jwt_keyset_init(struct keel_jwt_keyset *ks);

/* Overwrites every secret in ks with zeros (sodium_memzero) and empties it. */
void keel_jwt_keyset_wipe(struct keel_jwt_keyset *ks);

/* Adds an HS256 key. `secret` is copied; it must be 32..64 bytes of random
 * data (not a password). The first key added becomes the signing key.
 * Returns KEEL_OK; KEEL_E_INVALID for a bad kid or secret length;
 * KEEL_E_CONFLICT if the kid is already in the set; KEEL_E_TOO_LARGE when the
 * set holds KEEL_JWT_MAX_KEYS keys. */
keel_status keel_jwt_keyset_add_hs256(struct keel_jwt_keyset *ks,
                                      const char *kid,
                                      const void *secret,
                                      size_t len);

/* Adds an Ed25519 key pair derived from a 32-byte secret seed (copied).
 * Same rules and return codes as keel_jwt_keyset_add_hs256. */
keel_status keel_jwt_keyset_add_ed25519(struct keel_jwt_keyset *ks,
                                        const char *kid,
                                        const unsigned char seed[32]);

/* Makes the key `kid` the signing key. Returns KEEL_OK or KEEL_E_NOT_FOUND. */
keel_status keel_jwt_keyset_use(struct keel_jwt_keyset *ks, const char *kid);

/* Removes the key `kid` (its secret is wiped), so tokens signed with it stop
 * verifying. Returns KEEL_OK; KEEL_E_NOT_FOUND; KEEL_E_CONFLICT if it is the
 * signing key (select another one with keel_jwt_keyset_use first). */
keel_status keel_jwt_keyset_remove(struct keel_jwt_keyset *ks, const char *kid);

/* Fills c for a new token: sub and role copied, iat = nbf = now,
 * exp = now + ttl_s, and a fresh UUIDv7 jti. Returns KEEL_OK, or
 * KEEL_E_INVALID if sub or role is empty or too long, or ttl_s is not in
 * 1..KEEL_JWT_MAX_LIFETIME_S. */
keel_status keel_jwt_claims_init(
    struct keel_jwt_claims *c, const char *sub, const char *role, int64_t now, int64_t ttl_s);

/* Signs the claims with the current key and appends the compact token to
 * `out` (NUL-terminated; the caller owns `out`). The claims must pass every
 * check keel_jwt_verify makes apart from the clock, so a token Keel issues is
 * always one it accepts. Returns KEEL_OK; KEEL_E_INVALID for an empty keyset
 * or invalid claims, iss or aud; KEEL_E_TOO_LARGE if `out` cannot hold the
 * token. On error `out` is left as it was. */
keel_status keel_jwt_sign(const struct keel_jwt_keyset *ks,
                          const char *iss,
                          const char *aud,
                          const struct keel_jwt_claims *c,
                          struct keel_buf *out);

/* Verifies `len` bytes of `token` (need not be NUL-terminated). The
 * signature is checked in constant time with the key named by `kid`, using
 * that key's algorithm, before any claim is looked at; then iss, aud, the
 * claim types and the times are checked against `o`.
 *
 * Returns KEEL_OK with the claims in *out and *why set to NULL; otherwise
 * KEEL_E_AUTH with *out zeroed and *why a short static reason for the log
 * (never send it to the client, it helps an attacker). `why` may be NULL. */
keel_status keel_jwt_verify(const struct keel_jwt_keyset *ks,
                            const char *token,
                            size_t len,
                            const struct keel_jwt_verify_opts *o,
                            struct keel_jwt_claims *out,
                            const char **why);

#endif
