/*
 * password.c - Argon2id password hashing and refresh-token secrets (see
 * include/keel/password.h).
 *
 * DESIGN: all cryptography is libsodium's. Password hashes are libsodium's
 * encoded Argon2id strings, which carry their own salt and parameters, so
 * raising the cost later needs no migration: keel_password_needs_rehash
 * tells login to store a new hash. Only Argon2id hashes verify; anything
 * else in the column is treated as a wrong password.
 *
 * Login must not reveal whether an email exists (SPEC section 3). An unknown
 * email therefore pays for one Argon2id verification too, against a hash of
 * a random password made with the current parameters and kept in memory
 * (keel_password_dummy_verify). Overlong input is refused before hashing on
 * both paths alike, so the early exit says nothing about the account.
 *
 * Refresh tokens are 256 random bits: guessing is hopeless, so a fast
 * unsalted SHA-256 is the right storage form (a leaked table gives nothing
 * usable), and a slow hash would only slow every refresh down.
 */
#include "keel/password.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

_Static_assert(KEEL_PASSWORD_HASH_LEN == crypto_pwhash_STRBYTES, "hash buffer size");
_Static_assert(KEEL_REFRESH_TOKEN_LEN + 1 == sodium_base64_ENCODED_LEN(32, B64),
               "refresh token length");

/* ------------------------------------------------------------- policy */

keel_status keel_password_check_policy(const char *pw, size_t len, const char **why)
{
    const unsigned char *s = (const unsigned char *)pw;
    size_t i = 0, chars = 0, n;
    const char *ignored;

    if (!why)
        why = &ignored;
    *why = "must be at most 128 characters";
    if (len > KEEL_PASSWORD_MAX_BYTES)
        return KEEL_E_INVALID;
    if (!pw)
        len = 0; /* counts as empty: too short */
    while (i < len) {
        n = keel_utf8_seq(s + i, len - i);
        if (n == 0 || s[i] == '\0') {
            *why = "must be valid UTF-8 text";
            return KEEL_E_INVALID;
        }
        i += n;
        chars++;
    }
    if (chars > KEEL_PASSWORD_MAX_CHARS)
        return KEEL_E_INVALID;
    if (chars < KEEL_PASSWORD_MIN_CHARS) {
        *why = "must be at least 10 characters";
        return KEEL_E_INVALID;
    }
    *why = NULL;
    return KEEL_OK;
}

/* ------------------------------------------------------------- hashing */

bool keel_password_params_secure(const struct keel_password_params *p)
{
    return p->opslimit >= KEEL_PASSWORD_OPSLIMIT_DEFAULT &&
           p->memlimit >= KEEL_PASSWORD_MEMLIMIT_DEFAULT;
}

static const struct keel_password_params *or_default(const struct keel_password_params *p)
{
    static const struct keel_password_params def = KEEL_PASSWORD_PARAMS_DEFAULT;

    return p ? p : &def;
}

/* Within libsodium's Argon2id limits (OPSLIMIT_MIN is 1, MEMLIMIT_MIN 8 KiB). */
static bool params_valid(const struct keel_password_params *p)
{
    return p->opslimit >= crypto_pwhash_argon2id_OPSLIMIT_MIN &&
           p->opslimit <= crypto_pwhash_argon2id_OPSLIMIT_MAX &&
           p->memlimit >= crypto_pwhash_argon2id_MEMLIMIT_MIN &&
           p->memlimit <= crypto_pwhash_argon2id_MEMLIMIT_MAX;
}

/* A hash string from the database: NUL-terminated within the buffer size. */
static bool hash_terminated(const char *hash)
{
    return hash && strnlen(hash, KEEL_PASSWORD_HASH_LEN) < KEEL_PASSWORD_HASH_LEN;
}

keel_status keel_password_hash(const char *pw,
                               size_t len,
                               const struct keel_password_params *params,
                               char out[KEEL_PASSWORD_HASH_LEN])
{
    const struct keel_password_params *p = or_default(params);

    out[0] = '\0';
    if (!pw || len > KEEL_PASSWORD_MAX_BYTES || !params_valid(p))
        return KEEL_E_INVALID;
    /* The only remaining failure is the allocation of memlimit bytes. */
    if (crypto_pwhash_str_alg(out, pw, len, p->opslimit, p->memlimit,
                              crypto_pwhash_ALG_ARGON2ID13) != 0) {
        out[0] = '\0';
        return KEEL_E_NOMEM;
    }
    return KEEL_OK;
}

keel_status keel_password_verify(const char *hash, const char *pw, size_t len)
{
    if (!pw || len > KEEL_PASSWORD_MAX_BYTES || !hash_terminated(hash))
        return KEEL_E_AUTH;
    /* The Argon2id-only entry point: an Argon2i (or any other) string fails. */
    if (crypto_pwhash_argon2id_str_verify(hash, pw, len) != 0)
        return KEEL_E_AUTH;
    return KEEL_OK;
}

bool keel_password_needs_rehash(const char *hash, const struct keel_password_params *params)
{
    const struct keel_password_params *p = or_default(params);

    if (!hash_terminated(hash))
        return true;
    /* 0: Argon2id with exactly these parameters; 1: other parameters;
     * -1: not an Argon2id string. Only 0 keeps the hash. */
    return crypto_pwhash_argon2id_str_needs_rehash(hash, p->opslimit, p->memlimit) != 0;
}

/* --------------------------------------------------------- dummy hash */

/* One dummy hash per process, for the parameters it was made with. The lock
 * is never held while hashing: two threads that both find it missing both
 * hash, and the last one stores its result, which is harmless. */
static pthread_mutex_t dummy_mu = PTHREAD_MUTEX_INITIALIZER;
static bool dummy_ready;
static struct keel_password_params dummy_params;
static char dummy_hash[KEEL_PASSWORD_HASH_LEN];

static bool same_params(const struct keel_password_params *a, const struct keel_password_params *b)
{
    return a->opslimit == b->opslimit && a->memlimit == b->memlimit;
}

static keel_status get_dummy(const struct keel_password_params *p, char out[KEEL_PASSWORD_HASH_LEN])
{
    unsigned char pw[32];
    bool hit;
    keel_status rc;

    pthread_mutex_lock(&dummy_mu);
    hit = dummy_ready && same_params(&dummy_params, p);
    if (hit)
        memcpy(out, dummy_hash, KEEL_PASSWORD_HASH_LEN);
    pthread_mutex_unlock(&dummy_mu);
    if (hit)
        return KEEL_OK;

    /* Nobody knows this password, so no input ever matches the hash. */
    randombytes_buf(pw, sizeof(pw));
    rc = keel_password_hash((const char *)pw, sizeof(pw), p, out);
    sodium_memzero(pw, sizeof(pw));
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&dummy_mu);
    memcpy(dummy_hash, out, KEEL_PASSWORD_HASH_LEN);
    dummy_params = *p;
    dummy_ready = true;
    pthread_mutex_unlock(&dummy_mu);
    return KEEL_OK;
}

keel_status keel_password_init(const struct keel_password_params *params)
{
    char hash[KEEL_PASSWORD_HASH_LEN];

    return get_dummy(or_default(params), hash);
}

keel_status
keel_password_dummy_verify(const char *pw, size_t len, const struct keel_password_params *params)
{
    char hash[KEEL_PASSWORD_HASH_LEN];

    /* The same early exits as keel_password_verify, for the same timing. */
    if (!pw || len > KEEL_PASSWORD_MAX_BYTES)
        return KEEL_E_AUTH;
    if (get_dummy(or_default(params), hash) < 0)
        return KEEL_E_AUTH;
    (void)keel_password_verify(hash, pw, len);
    return KEEL_E_AUTH;
}

/* ------------------------------------------------------ refresh tokens */

void keel_refresh_token_new(char out[KEEL_REFRESH_TOKEN_LEN + 1])
{
    unsigned char b[32];

    randombytes_buf(b, sizeof(b));
    sodium_bin2base64(out, KEEL_REFRESH_TOKEN_LEN + 1, b, sizeof(b), B64);
    sodium_memzero(b, sizeof(b));
}

/* Exactly the 43 characters keel_refresh_token_new writes for some 32
 * bytes: decoding and re-encoding must give the same text back (no padding,
 * no '+' or '/', no whitespace, zero trailing bits). */
static bool refresh_canonical(const char *token, size_t len)
{
    unsigned char b[32];
    char re[KEEL_REFRESH_TOKEN_LEN + 1];
    size_t n;
    bool ok;

    if (!token || len != KEEL_REFRESH_TOKEN_LEN)
        return false;
    if (sodium_base642bin(b, sizeof(b), token, len, NULL, &n, NULL, B64) != 0 || n != sizeof(b))
        return false;
    sodium_bin2base64(re, sizeof(re), b, sizeof(b), B64);
    ok = memcmp(re, token, len) == 0;
    sodium_memzero(b, sizeof(b));
    sodium_memzero(re, sizeof(re));
    return ok;
}

keel_status keel_refresh_token_hash(const char *token, size_t len, char out_hex[65])
{
    unsigned char d[crypto_hash_sha256_BYTES];

    out_hex[0] = '\0';
    if (!refresh_canonical(token, len))
        return KEEL_E_AUTH;
    crypto_hash_sha256(d, (const unsigned char *)token, len);
    sodium_bin2hex(out_hex, 65, d, sizeof(d));
    return KEEL_OK;
}
