/*
 * jwt.c - HS256 / EdDSA JSON Web Tokens on libsodium (see include/keel/jwt.h).
 *
 * DESIGN: the verifier is written for an attacker who has read this file.
 * The token is untrusted until its signature checks, so everything before
 * that point handles only bounded, public data: the size cap, the split into
 * exactly three parts, a strict and canonical base64url decoding of each part
 * (so one token has exactly one spelling, RFC 4648 section 3.5), and a strict
 * parse of the header whose only job is to pick a key by `kid`. The key, not
 * the header, decides the algorithm (RFC 8725 section 2.1 and 3.1): `alg` must
 * name exactly the algorithm of that key, so "none", alg confusion (an HS256
 * token made with an Ed25519 public key as the HMAC secret) and RS256 all
 * fail the same comparison. Header members that would let the token choose
 * its own key or extend the rules (jku, jwk, x5u, x5c, crit, ...) are refused
 * outright: Keel only ever writes alg, typ and kid. The MAC is compared in
 * constant time; the payload is parsed only after the signature verified.
 * libjwt is not used: Debian's 1.10 takes the algorithm from the token and
 * accepts expired tokens. Every failure is the same KEEL_E_AUTH, with a
 * static reason for the log only.
 */
#include "keel/jwt.h"

#include <json-c/json.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "keel/json.h"
#include "keel/uuid.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
/* 9999-12-31T23:59:59Z: times outside 0..this are rejected, which also keeps
 * every sum and difference below far from int64 overflow. */
#define TIME_MAX INT64_C(253402300799)

/* ---------------------------------------------------------------- keyset */

const char *keel_jwt_alg_name(enum keel_jwt_alg alg)
{
    switch (alg) {
    case KEEL_JWT_HS256:
        return "HS256";
    case KEEL_JWT_EDDSA:
        return "EdDSA";
    }
    return "?";
}

void keel_jwt_keyset_init(struct keel_jwt_keyset *ks)
{
    memset(ks, 0, sizeof(*ks));
}

void keel_jwt_keyset_wipe(struct keel_jwt_keyset *ks)
{
    sodium_memzero(ks, sizeof(*ks));
}

/* A kid is 1..KEEL_JWT_KID_MAX bytes of [A-Za-z0-9._-]: it is echoed into
 * logs and compared byte for byte, so it has no room for escapes. */
static bool kid_valid(const char *kid, size_t len)
{
    size_t i;

    if (len == 0 || len > KEEL_JWT_KID_MAX)
        return false;
    for (i = 0; i < len; i++) {
        char c = kid[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int find_key(const struct keel_jwt_keyset *ks, const char *kid, size_t len)
{
    unsigned i;

    for (i = 0; i < ks->nkeys && i < KEEL_JWT_MAX_KEYS; i++)
        if (strlen(ks->keys[i].kid) == len && memcmp(ks->keys[i].kid, kid, len) == 0)
            return (int)i;
    return -1;
}

/* Checks kid and room, then returns the slot to fill (not yet counted). */
static keel_status new_slot(struct keel_jwt_keyset *ks, const char *kid, struct keel_jwt_key **k)
{
    size_t len;

    if (!kid)
        return KEEL_E_INVALID;
    len = strnlen(kid, KEEL_JWT_KID_MAX + 1);
    if (!kid_valid(kid, len))
        return KEEL_E_INVALID;
    if (find_key(ks, kid, len) >= 0)
        return KEEL_E_CONFLICT;
    if (ks->nkeys >= KEEL_JWT_MAX_KEYS)
        return KEEL_E_TOO_LARGE;
    *k = &ks->keys[ks->nkeys];
    memset(*k, 0, sizeof(**k));
    memcpy((*k)->kid, kid, len + 1);
    return KEEL_OK;
}

static void commit_slot(struct keel_jwt_keyset *ks)
{
    if (ks->nkeys == 0)
        ks->current = 0;
    ks->nkeys++;
}

keel_status keel_jwt_keyset_add_hs256(struct keel_jwt_keyset *ks,
                                      const char *kid,
                                      const void *secret,
                                      size_t len)
{
    struct keel_jwt_key *k;
    keel_status rc;

    if (!secret || len < KEEL_JWT_HS256_MIN_SECRET || len > KEEL_JWT_HS256_MAX_SECRET)
        return KEEL_E_INVALID;
    rc = new_slot(ks, kid, &k);
    if (rc < 0)
        return rc;
    k->alg = KEEL_JWT_HS256;
    memcpy(k->secret, secret, len);
    k->secret_len = len;
    commit_slot(ks);
    return KEEL_OK;
}

keel_status keel_jwt_keyset_add_ed25519(struct keel_jwt_keyset *ks,
                                        const char *kid,
                                        const unsigned char seed[32])
{
    struct keel_jwt_key *k;
    keel_status rc;

    if (!seed)
        return KEEL_E_INVALID;
    rc = new_slot(ks, kid, &k);
    if (rc < 0)
        return rc;
    k->alg = KEEL_JWT_EDDSA;
    if (crypto_sign_seed_keypair(k->pk, k->sk, seed) != 0) {
        sodium_memzero(k, sizeof(*k));
        return KEEL_E_INTERNAL;
    }
    commit_slot(ks);
    return KEEL_OK;
}

keel_status keel_jwt_keyset_use(struct keel_jwt_keyset *ks, const char *kid)
{
    int i = kid ? find_key(ks, kid, strlen(kid)) : -1;

    if (i < 0)
        return KEEL_E_NOT_FOUND;
    ks->current = (unsigned)i;
    return KEEL_OK;
}

keel_status keel_jwt_keyset_remove(struct keel_jwt_keyset *ks, const char *kid)
{
    int i = kid ? find_key(ks, kid, strlen(kid)) : -1;
    unsigned n;

    if (i < 0)
        return KEEL_E_NOT_FOUND;
    if ((unsigned)i == ks->current)
        return KEEL_E_CONFLICT;
    n = ks->nkeys - (unsigned)i - 1;
    memmove(&ks->keys[i], &ks->keys[i + 1], n * sizeof(ks->keys[0]));
    /* The last slot still holds a copy of the last key (or the removed one). */
    sodium_memzero(&ks->keys[ks->nkeys - 1], sizeof(ks->keys[0]));
    ks->nkeys--;
    if (ks->current > (unsigned)i)
        ks->current--;
    return KEEL_OK;
}

/* ---------------------------------------------------------------- claims */

static bool time_ok(int64_t t)
{
    return t >= 0 && t <= TIME_MAX;
}

/* The checks on claim values that do not depend on the clock. */
static bool claims_valid(const struct keel_jwt_claims *c)
{
    size_t sub = strnlen(c->sub, sizeof(c->sub));
    size_t role = strnlen(c->role, sizeof(c->role));

    if (sub == 0 || sub > KEEL_JWT_SUB_MAX || role == 0 || role > KEEL_JWT_ROLE_MAX)
        return false;
    if (strnlen(c->jti, sizeof(c->jti)) != KEEL_UUID_STRLEN ||
        !keel_uuid_valid(c->jti, KEEL_UUID_STRLEN))
        return false;
    if (!time_ok(c->iat) || !time_ok(c->nbf) || !time_ok(c->exp))
        return false;
    /* A token that is never valid, or valid for more than a day, is a bug
     * or a forgery with a stolen key hoping for a long life. */
    return c->exp > c->iat && c->exp - c->iat <= KEEL_JWT_MAX_LIFETIME_S && c->nbf < c->exp;
}

keel_status keel_jwt_claims_init(
    struct keel_jwt_claims *c, const char *sub, const char *role, int64_t now, int64_t ttl_s)
{
    size_t sl = sub ? strnlen(sub, KEEL_JWT_SUB_MAX + 1) : 0;
    size_t rl = role ? strnlen(role, KEEL_JWT_ROLE_MAX + 1) : 0;

    memset(c, 0, sizeof(*c));
    if (sl == 0 || sl > KEEL_JWT_SUB_MAX || rl == 0 || rl > KEEL_JWT_ROLE_MAX)
        return KEEL_E_INVALID;
    if (ttl_s < 1 || ttl_s > KEEL_JWT_MAX_LIFETIME_S || !time_ok(now) || !time_ok(now + ttl_s))
        return KEEL_E_INVALID;
    memcpy(c->sub, sub, sl);
    memcpy(c->role, role, rl);
    c->iat = c->nbf = now;
    c->exp = now + ttl_s;
    keel_uuid_v7(c->jti);
    return KEEL_OK;
}

/* ---------------------------------------------------------------- signing */

static void hs256(const struct keel_jwt_key *k, const void *m, size_t n, unsigned char mac[32])
{
    crypto_auth_hmacsha256_state st;

    /* The streaming API takes any key length (the one-shot one wants 32). */
    crypto_auth_hmacsha256_init(&st, k->secret, k->secret_len);
    crypto_auth_hmacsha256_update(&st, m, n);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
}

static keel_status append_b64(struct keel_buf *out, const void *p, size_t n)
{
    char tmp[sodium_base64_ENCODED_LEN(KEEL_JWT_MAX_LEN, B64)];

    if (n > KEEL_JWT_MAX_LEN)
        return KEEL_E_TOO_LARGE;
    sodium_bin2base64(tmp, sizeof(tmp), p, n, B64);
    return keel_buf_appends(out, tmp);
}

static bool config_str_ok(const char *s)
{
    size_t n = s ? strnlen(s, KEEL_JWT_ISS_MAX + 1) : 0;

    return n > 0 && n <= KEEL_JWT_ISS_MAX;
}

static keel_status write_header(struct keel_buf *b, const struct keel_jwt_key *k)
{
    struct keel_json j;

    keel_json_begin(&j, b);
    keel_json_obj_open(&j);
    keel_json_key(&j, "alg");
    keel_json_str(&j, keel_jwt_alg_name(k->alg));
    keel_json_key(&j, "typ");
    keel_json_str(&j, "JWT");
    keel_json_key(&j, "kid");
    keel_json_str(&j, k->kid);
    keel_json_obj_close(&j);
    return keel_json_end(&j);
}

static keel_status
write_payload(struct keel_buf *b, const char *iss, const char *aud, const struct keel_jwt_claims *c)
{
    struct keel_json j;

    keel_json_begin(&j, b);
    keel_json_obj_open(&j);
    keel_json_key(&j, "iss");
    keel_json_str(&j, iss);
    keel_json_key(&j, "aud");
    keel_json_str(&j, aud);
    keel_json_key(&j, "sub");
    keel_json_str(&j, c->sub);
    keel_json_key(&j, "role");
    keel_json_str(&j, c->role);
    keel_json_key(&j, "iat");
    keel_json_int(&j, c->iat);
    keel_json_key(&j, "nbf");
    keel_json_int(&j, c->nbf);
    keel_json_key(&j, "exp");
    keel_json_int(&j, c->exp);
    keel_json_key(&j, "jti");
    keel_json_str(&j, c->jti);
    keel_json_obj_close(&j);
    return keel_json_end(&j);
}

/* Signs out[start..len) (the signing input, "header.payload") and appends
 * "." and the signature. */
static keel_status
append_signature(struct keel_buf *out, const struct keel_jwt_key *k, size_t start)
{
    unsigned char sig[crypto_sign_BYTES];
    keel_status rc;
    size_t n = 0;

    if (k->alg == KEEL_JWT_HS256) {
        hs256(k, out->data + start, out->len - start, sig);
        n = crypto_auth_hmacsha256_BYTES;
    } else if (k->alg == KEEL_JWT_EDDSA) {
        crypto_sign_detached(sig, NULL, (const unsigned char *)out->data + start, out->len - start,
                             k->sk);
        n = crypto_sign_BYTES;
    } else {
        return KEEL_E_INTERNAL;
    }
    rc = keel_buf_appendc(out, '.');
    if (rc < 0)
        return rc;
    return append_b64(out, sig, n);
}

keel_status keel_jwt_sign(const struct keel_jwt_keyset *ks,
                          const char *iss,
                          const char *aud,
                          const struct keel_jwt_claims *c,
                          struct keel_buf *out)
{
    const struct keel_jwt_key *k;
    struct keel_buf js;
    size_t start = out->len;
    keel_status rc;

    if (!ks || ks->nkeys == 0 || ks->current >= ks->nkeys || !c || !claims_valid(c) ||
        !config_str_ok(iss) || !config_str_ok(aud))
        return KEEL_E_INVALID;
    k = &ks->keys[ks->current];
    keel_buf_init(&js, KEEL_JWT_MAX_LEN);
    rc = write_header(&js, k);
    if (rc < 0)
        goto out;
    rc = append_b64(out, js.data, js.len);
    if (rc < 0)
        goto out;
    rc = keel_buf_appendc(out, '.');
    if (rc < 0)
        goto out;
    keel_buf_reset(&js);
    rc = write_payload(&js, iss, aud, c);
    if (rc < 0)
        goto out;
    rc = append_b64(out, js.data, js.len);
    if (rc < 0)
        goto out;
    rc = append_signature(out, k, start);
    if (rc < 0)
        goto out;
    if (out->len - start > KEEL_JWT_MAX_LEN)
        rc = KEEL_E_TOO_LARGE; /* the verifier would refuse it */
out:
    keel_buf_free(&js);
    if (rc < 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

/* ---------------------------------------------------------- verification */

/* The parts of a token after decoding. The signature part is at most 64
 * bytes; header and payload are bounded by the token cap. */
struct parts {
    unsigned char hdr[KEEL_JWT_MAX_LEN];
    unsigned char body[KEEL_JWT_MAX_LEN];
    unsigned char sig[crypto_sign_BYTES];
    size_t hdr_len, body_len, sig_len;
    size_t signed_len; /* length of "header.payload", the signing input */
};

/* Decodes the base64url text s[0..n) into out (cap bytes) and accepts it
 * only if re-encoding gives back exactly s: no padding, no '+' or '/', no
 * whitespace, no non-zero trailing bits. One token, one spelling. The
 * comparison is not redundant: libsodium 1.0.18 decodes any byte 0x80..0xff
 * as '_' (test_b64_high_byte). */
static bool b64_decode(const char *s, size_t n, unsigned char *out, size_t cap, size_t *len_out)
{
    char re[sodium_base64_ENCODED_LEN(KEEL_JWT_MAX_LEN, B64)];
    size_t len;

    if (n == 0 || n > KEEL_JWT_MAX_LEN)
        return false;
    if (sodium_base642bin(out, cap, s, n, NULL, &len, NULL, B64) != 0)
        return false;
    if (sodium_base64_ENCODED_LEN(len, B64) != n + 1)
        return false;
    sodium_bin2base64(re, sizeof(re), out, len, B64);
    if (memcmp(re, s, n) != 0)
        return false;
    *len_out = len;
    return true;
}

static const char *split(const char *tok, size_t len, struct parts *p)
{
    const char *d1, *d2;

    if (!tok || len == 0)
        return "empty token";
    if (len > KEEL_JWT_MAX_LEN)
        return "token too long";
    d1 = memchr(tok, '.', len);
    d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return "token is not three parts";
    if (d1 == tok || d2 == d1 + 1 || d2 + 1 == tok + len)
        return "empty token part";
    if (!b64_decode(tok, (size_t)(d1 - tok), p->hdr, sizeof(p->hdr), &p->hdr_len) ||
        !b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), p->body, sizeof(p->body), &p->body_len) ||
        !b64_decode(d2 + 1, len - (size_t)(d2 + 1 - tok), p->sig, sizeof(p->sig), &p->sig_len))
        return "bad base64url";
    p->signed_len = (size_t)(d2 - tok);
    return NULL;
}

/* The string value of a member, with its length; NULL if the value is not
 * a string or holds a NUL byte (a C string would silently cut it short). */
static const char *str_value(struct json_object *v, size_t *len)
{
    const char *s;
    int n;

    if (!json_object_is_type(v, json_type_string))
        return NULL;
    s = json_object_get_string(v);
    n = json_object_get_string_len(v);
    if (!s || n < 0 || memchr(s, '\0', (size_t)n))
        return NULL;
    *len = (size_t)n;
    return s;
}

/* Picks the key for a header that must be exactly {alg, typ, kid}. */
static const char *check_header(const struct keel_jwt_keyset *ks,
                                struct json_object *h,
                                const struct keel_jwt_key **key)
{
    const char *alg = NULL, *typ = NULL, *kid = NULL, *alg_want;
    size_t alg_len = 0, typ_len = 0, kid_len = 0;
    int i;

    if (!json_object_is_type(h, json_type_object))
        return "header is not an object";
    json_object_object_foreach(h, name, v)
    {
        if (strcmp(name, "alg") == 0)
            alg = str_value(v, &alg_len);
        else if (strcmp(name, "typ") == 0)
            typ = str_value(v, &typ_len);
        else if (strcmp(name, "kid") == 0)
            kid = str_value(v, &kid_len);
        else
            return "unexpected header member"; /* jku, jwk, x5u, x5c, crit, cty, ... */
    }
    if (!alg)
        return "missing or non-string alg";
    if (alg_len == 4 && strncasecmp(alg, "none", 4) == 0)
        return "alg none";
    if (!typ || typ_len != 3 || strncasecmp(typ, "JWT", 3) != 0)
        return "typ is not JWT";
    if (!kid || !kid_valid(kid, kid_len))
        return "missing or malformed kid";
    i = find_key(ks, kid, kid_len);
    if (i < 0)
        return "unknown kid";
    /* The key pins the algorithm (RFC 8725 section 3.1); alg names are
     * case-sensitive (RFC 7515 section 4.1.1). */
    alg_want = keel_jwt_alg_name(ks->keys[i].alg);
    if (alg_len != strlen(alg_want) || memcmp(alg, alg_want, alg_len) != 0)
        return "alg does not match the key";
    *key = &ks->keys[i];
    return NULL;
}

static const char *
check_signature(const struct keel_jwt_key *k, const char *tok, const struct parts *p)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    int bad;

    if (k->alg == KEEL_JWT_HS256) {
        if (p->sig_len != sizeof(mac))
            return "bad signature length";
        hs256(k, tok, p->signed_len, mac);
        bad = crypto_verify_32(mac, p->sig);
        sodium_memzero(mac, sizeof(mac));
    } else if (k->alg == KEEL_JWT_EDDSA) {
        if (p->sig_len != crypto_sign_BYTES)
            return "bad signature length";
        bad = crypto_sign_verify_detached(p->sig, (const unsigned char *)tok, p->signed_len, k->pk);
    } else {
        return "bad key";
    }
    return bad ? "bad signature" : NULL;
}

/* The exact audience, or an array of strings that contains it
 * (RFC 7519 section 4.1.3). */
static bool aud_matches(struct json_object *v, const char *aud)
{
    size_t i, n, len, want = strlen(aud);
    const char *s;
    bool found = false;

    if (json_object_is_type(v, json_type_string)) {
        s = str_value(v, &len);
        return s && len == want && memcmp(s, aud, len) == 0;
    }
    if (!json_object_is_type(v, json_type_array))
        return false;
    n = json_object_array_length(v);
    for (i = 0; i < n; i++) {
        s = str_value(json_object_array_get_idx(v, i), &len);
        if (!s)
            return false; /* a malformed array is refused, not searched */
        if (len == want && memcmp(s, aud, len) == 0)
            found = true;
    }
    return found;
}

/* Copies a string claim of 1..max bytes into dst (max + 1 bytes). */
static bool get_str(struct json_object *c, const char *name, char *dst, size_t max)
{
    struct json_object *v;
    const char *s;
    size_t len;

    if (!json_object_object_get_ex(c, name, &v))
        return false;
    s = str_value(v, &len);
    if (!s || len == 0 || len > max)
        return false;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

/* A NumericDate claim: a JSON integer (not 1.0, 1e3 or "1") in range.
 * json-c saturates huge integers to INT64_MAX, which the range refuses. */
static bool get_time(struct json_object *c, const char *name, int64_t *t)
{
    struct json_object *v;

    if (!json_object_object_get_ex(c, name, &v) || !json_object_is_type(v, json_type_int))
        return false;
    *t = json_object_get_int64(v);
    return time_ok(*t);
}

static const char *check_claims(struct json_object *c,
                                const struct keel_jwt_verify_opts *o,
                                struct keel_jwt_claims *out)
{
    struct json_object *v;
    const char *s;
    int64_t lw = o->leeway_s, now = o->now;
    size_t len;

    if (!json_object_is_type(c, json_type_object))
        return "payload is not an object";
    s = json_object_object_get_ex(c, "iss", &v) ? str_value(v, &len) : NULL;
    if (!s || len != strlen(o->iss) || memcmp(s, o->iss, len) != 0)
        return "wrong iss";
    if (!json_object_object_get_ex(c, "aud", &v) || !aud_matches(v, o->aud))
        return "wrong aud";
    if (!get_str(c, "sub", out->sub, KEEL_JWT_SUB_MAX))
        return "missing or malformed sub";
    if (!get_str(c, "role", out->role, KEEL_JWT_ROLE_MAX))
        return "missing or malformed role";
    if (!get_str(c, "jti", out->jti, KEEL_UUID_STRLEN) ||
        !keel_uuid_valid(out->jti, strlen(out->jti)))
        return "missing or malformed jti";
    if (!get_time(c, "iat", &out->iat) || !get_time(c, "nbf", &out->nbf) ||
        !get_time(c, "exp", &out->exp))
        return "missing or malformed iat, nbf or exp";
    if (!claims_valid(out))
        return "bad token lifetime";
    if (lw < 0)
        lw = 0;
    if (lw > KEEL_JWT_MAX_LEEWAY_S)
        lw = KEEL_JWT_MAX_LEEWAY_S;
    if (out->exp <= now - lw)
        return "token expired";
    if (out->nbf > now + lw)
        return "token not yet valid";
    if (out->iat > now + lw)
        return "token issued in the future";
    return NULL;
}

/* Keel writes headers without escapes or control bytes. Refusing them
 * leaves json-c no way to read a member named "alg\u0000x" as "alg" (it
 * keeps keys as C strings) and no second spelling of any member. */
static bool has_escape(const unsigned char *h, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (h[i] == '\\' || h[i] < 0x20)
            return true;
    return false;
}

static const char *verify(const struct keel_jwt_keyset *ks,
                          const char *tok,
                          size_t len,
                          const struct keel_jwt_verify_opts *o,
                          struct parts *p,
                          struct keel_jwt_claims *out)
{
    const struct keel_jwt_key *k = NULL;
    struct json_object *j = NULL;
    const char *why, *jwhy;

    if (!ks || !o || !config_str_ok(o->iss) || !config_str_ok(o->aud) || !time_ok(o->now))
        return "verifier misconfigured";
    why = split(tok, len, p);
    if (why)
        return why;
    if (has_escape(p->hdr, p->hdr_len))
        return "escape in header";
    /* Depth 2 so that an object-valued member (jwk) is refused by name. */
    if (keel_json_parse((const char *)p->hdr, p->hdr_len, 2, &j, &jwhy) < 0)
        return "header is not strict JSON";
    why = check_header(ks, j, &k);
    json_object_put(j);
    j = NULL;
    if (why)
        return why;
    why = check_signature(k, tok, p);
    if (why)
        return why;
    /* Authentic from here on: the payload was written by a key we hold. */
    if (keel_json_parse((const char *)p->body, p->body_len, 2, &j, &jwhy) < 0)
        return "payload is not strict JSON";
    why = check_claims(j, o, out);
    json_object_put(j);
    return why;
}

keel_status keel_jwt_verify(const struct keel_jwt_keyset *ks,
                            const char *token,
                            size_t len,
                            const struct keel_jwt_verify_opts *o,
                            struct keel_jwt_claims *out,
                            const char **why)
{
    struct parts p;
    const char *w;

    memset(out, 0, sizeof(*out));
    w = verify(ks, token, len, o, &p, out);
    if (why)
        *why = w;
    if (w) {
        memset(out, 0, sizeof(*out));
        return KEEL_E_AUTH;
    }
    return KEEL_OK;
}
