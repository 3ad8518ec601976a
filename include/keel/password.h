/*
 * password.h - the credential secrets Keel stores: passwords (Argon2id
 * through libsodium) and refresh tokens (256 random bits, stored as their
 * SHA-256).
 *
 * THREADING: keel_password_hash, keel_password_verify and
 * keel_password_dummy_verify are deliberately slow (tens of ms and
 * `memlimit` bytes of memory each with the defaults) and block the calling
 * thread. Never call them on an event loop thread: run them on the libuv
 * thread pool behind a cap on how many run at once, so a login flood can
 * neither starve other requests nor exhaust memory. Everything else here is
 * fast. All functions are thread-safe; call sodium_init() first.
 */
#ifndef KEEL_PASSWORD_H
#define KEEL_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#include "keel/core.h"

/* Password length in characters (Unicode code points), SPEC section 3. */
#define KEEL_PASSWORD_MIN_CHARS 10
#define KEEL_PASSWORD_MAX_CHARS 128
/* The most bytes a password may take (128 four-byte characters). Longer
 * input is refused before any hashing, so it costs nothing. */
#define KEEL_PASSWORD_MAX_BYTES (4 * KEEL_PASSWORD_MAX_CHARS)
/* Size of an encoded hash with its NUL ("$argon2id$v=19$m=...,t=...,p=1$...");
 * equal to libsodium's crypto_pwhash_STRBYTES, which password.c checks. */
#define KEEL_PASSWORD_HASH_LEN 128

/* Argon2id cost. libsodium's Argon2id always uses one lane (p = 1). */
struct keel_password_params {
    unsigned long long opslimit; /* t: passes over memory */
    size_t memlimit;             /* m: bytes */
};

/* OWASP's minimum for Argon2id (m = 19 MiB, t = 2, p = 1): the default, and
 * the floor keel_password_params_secure enforces for production. */
#define KEEL_PASSWORD_OPSLIMIT_DEFAULT 2ULL
#define KEEL_PASSWORD_MEMLIMIT_DEFAULT ((size_t)19 * 1024 * 1024)
#define KEEL_PASSWORD_PARAMS_DEFAULT                                                               \
    ((struct keel_password_params){KEEL_PASSWORD_OPSLIMIT_DEFAULT, KEEL_PASSWORD_MEMLIMIT_DEFAULT})

/* True when p is at least the OWASP minimum above. Configuration loading
 * refuses weaker parameters; tests use weaker ones for speed. */
bool keel_password_params_secure(const struct keel_password_params *p);

/* Checks the password policy: valid UTF-8 without NUL, and
 * KEEL_PASSWORD_MIN_CHARS..KEEL_PASSWORD_MAX_CHARS code points. Returns
 * KEEL_OK, or KEEL_E_INVALID with *why a static message fit for the
 * client's validation error (`why` may be NULL). Registration and password changes call it;
 * login does not (a policy change must not lock out existing users). */
keel_status keel_password_check_policy(const char *pw, size_t len, const char **why);

/* Hashes len bytes of pw with Argon2id and a random salt into `out` (a
 * NUL-terminated string of at most KEEL_PASSWORD_HASH_LEN bytes with the
 * salt and parameters in it). params NULL means the defaults. BLOCKING.
 * Returns KEEL_OK; KEEL_E_INVALID if len > KEEL_PASSWORD_MAX_BYTES or the
 * parameters are outside libsodium's limits; KEEL_E_NOMEM if the memory
 * for Argon2 could not be allocated. */
keel_status keel_password_hash(const char *pw,
                               size_t len,
                               const struct keel_password_params *params,
                               char out[KEEL_PASSWORD_HASH_LEN]);

/* Checks len bytes of pw against an encoded hash from keel_password_hash
 * (the comparison is constant time). BLOCKING. Returns KEEL_OK on a match;
 * KEEL_E_AUTH on a mismatch, a malformed or non-Argon2 hash, or
 * len > KEEL_PASSWORD_MAX_BYTES. */
keel_status keel_password_verify(const char *hash, const char *pw, size_t len);

/* True when `hash` was not made by Argon2id with exactly these parameters
 * (including when it is malformed): after a successful login, hash the
 * password again and store the new hash. params NULL means the defaults. */
bool keel_password_needs_rehash(const char *hash, const struct keel_password_params *params);

/* Spends the time and memory of one keel_password_verify with `params` and
 * always returns KEEL_E_AUTH. Login calls it for an unknown email so that
 * it costs what a wrong password costs (no account enumeration by timing).
 * The hash it checks against is made from a random password the first time
 * it is used with given parameters (call keel_password_init at startup so
 * that first request is not slower). BLOCKING. */
keel_status
keel_password_dummy_verify(const char *pw, size_t len, const struct keel_password_params *params);

/* Prepares keel_password_dummy_verify for `params` (NULL: the defaults).
 * BLOCKING (one hash). Returns KEEL_OK, or the keel_password_hash error. */
keel_status keel_password_init(const struct keel_password_params *params);

/* ------------------------------------------------------- refresh tokens */

/* A refresh token is 32 random bytes as unpadded base64url: 43 characters. */
#define KEEL_REFRESH_TOKEN_LEN 43

/* Writes a new refresh token (43 characters and a NUL) into out. */
void keel_refresh_token_new(char out[KEEL_REFRESH_TOKEN_LEN + 1]);

/* Writes the lowercase hex SHA-256 of a refresh token (64 characters and a
 * NUL) into out_hex: the only form the database stores. Returns KEEL_OK, or
 * KEEL_E_AUTH (out_hex set to "") unless token[0..len) is exactly 43
 * characters of canonical unpadded base64url, so garbage never reaches a
 * lookup. */
keel_status keel_refresh_token_hash(const char *token, size_t len, char out_hex[65]);

#endif
