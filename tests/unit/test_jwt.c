/*
 * test_jwt.c - unit tests for src/modules/auth/jwt.c.
 *
 * Round trips (HS256, EdDSA) and key rotation, then one negative test per
 * attack the verifier must stop. Hostile tokens are built by hand here
 * (forge()) and carry a VALID signature wherever that is possible, so each
 * test proves that the named rule rejects the token, not that some earlier
 * accident did; test_forge_control shows that forge() makes tokens the
 * verifier accepts when nothing is wrong with them. Every rejection is
 * checked for KEEL_E_AUTH, zeroed claims and the exact reason string.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/buf.h"
#include "keel/jwt.h"

#include "test.h"

#define NOW    INT64_C(1700000000)
#define ISS    "https://keel.example"
#define AUD    "keel-api"
#define JTI    "018bcfe5-6800-7000-8000-000000000001"
#define TOKMAX 16384

static struct keel_jwt_keyset ks;
static unsigned char hs_secret[32];
static unsigned char ed_seed[32];
static unsigned char ed_pk[32], ed_sk[64];

/* ------------------------------------------------------------ helpers */

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(hs_secret); i++) {
        hs_secret[i] = (unsigned char)(0xa0 + i);
        ed_seed[i] = (unsigned char)(0x11 * (i + 1));
    }
    crypto_sign_seed_keypair(ed_pk, ed_sk, ed_seed);
    keel_jwt_keyset_init(&ks);
    if (keel_jwt_keyset_add_hs256(&ks, "hs1", hs_secret, sizeof(hs_secret)) != KEEL_OK)
        return -1;
    if (keel_jwt_keyset_add_ed25519(&ks, "ed1", ed_seed) != KEEL_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keel_jwt_keyset_wipe(&ks);
    return 0;
}

static void b64(char *out, size_t cap, const void *p, size_t n)
{
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

enum signer { SIGN_HS, SIGN_ED, SIGN_EMPTY };

/* Writes b64(hdr) "." b64(body) "." signature, the signature made over the
 * first two parts with `key` (HS: an HMAC key of keylen bytes; ED: a 64-byte
 * Ed25519 secret key). */
static void forge(char *out,
                  const char *hdr,
                  const char *body,
                  enum signer how,
                  const unsigned char *key,
                  size_t keylen)
{
    static char part[TOKMAX];
    unsigned char sig[64];
    crypto_auth_hmacsha256_state st;
    size_t n;

    b64(out, TOKMAX, hdr, strlen(hdr));
    strcat(out, ".");
    b64(part, sizeof(part), body, strlen(body));
    strcat(out, part);
    n = strlen(out);
    if (how == SIGN_HS) {
        crypto_auth_hmacsha256_init(&st, key, keylen);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)out, n);
        crypto_auth_hmacsha256_final(&st, sig);
        b64(part, sizeof(part), sig, 32);
    } else if (how == SIGN_ED) {
        crypto_sign_detached(sig, NULL, (const unsigned char *)out, n, key);
        b64(part, sizeof(part), sig, 64);
    } else {
        part[0] = '\0';
    }
    strcat(out, ".");
    strcat(out, part);
}

/* A payload with the defaults a valid token has; each field is the
 * raw JSON value, or NULL to leave the member out. */
struct body {
    const char *iss, *aud, *sub, *role, *iat, *nbf, *exp, *jti, *extra;
};

static struct body good_body(void)
{
    return (struct body){
        .iss = "\"" ISS "\"",
        .aud = "\"" AUD "\"",
        .sub = "\"u-42\"",
        .role = "\"user\"",
        .iat = "1700000000",
        .nbf = "1700000000",
        .exp = "1700000900",
        .jti = "\"" JTI "\"",
    };
}

static const char *build_body(struct body b)
{
    static char out[TOKMAX];
    const char *names[] = {"iss", "aud", "sub", "role", "iat", "nbf", "exp", "jti"};
    const char *vals[] = {b.iss, b.aud, b.sub, b.role, b.iat, b.nbf, b.exp, b.jti};
    size_t n;

    strcpy(out, "{");
    for (size_t i = 0; i < 8; i++) {
        if (!vals[i])
            continue;
        n = strlen(out);
        snprintf(out + n, sizeof(out) - n, "\"%s\":%s,", names[i], vals[i]);
    }
    if (b.extra) {
        strcat(out, b.extra);
        strcat(out, ",");
    }
    out[strlen(out) - 1] = '}';
    return out;
}

#define HDR_HS "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"hs1\"}"
#define HDR_ED "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"ed1\"}"

static char tok[TOKMAX];

/* An HS256 token signed with the real key, with the given header and body. */
static const char *hs(const char *hdr, const char *body)
{
    forge(tok, hdr, body, SIGN_HS, hs_secret, sizeof(hs_secret));
    return tok;
}

static struct keel_jwt_verify_opts opts(void)
{
    return (struct keel_jwt_verify_opts){ISS, AUD, NOW, 30};
}

static keel_status
verify_o(const char *t, size_t len, struct keel_jwt_verify_opts o, const char **why)
{
    struct keel_jwt_claims c;
    keel_status rc;

    memset(&c, 0x5a, sizeof(c));
    rc = keel_jwt_verify(&ks, t, len, &o, &c, why);
    if (rc != KEEL_OK) {
        /* No half-filled claims leak out of a failed verification. */
        static const struct keel_jwt_claims zero;

        assert_memory_equal(&c, &zero, sizeof(c));
    }
    return rc;
}

#define assert_accepted(t)                                                                         \
    do {                                                                                           \
        const char *why_ = "unset";                                                                \
        assert_int_equal(verify_o((t), strlen(t), opts(), &why_), KEEL_OK);                        \
        assert_null(why_);                                                                         \
    } while (0)

#define assert_rejected_o(t, len, o, reason)                                                       \
    do {                                                                                           \
        const char *why_ = NULL;                                                                   \
        assert_int_equal(verify_o((t), (len), (o), &why_), KEEL_E_AUTH);                           \
        assert_non_null(why_);                                                                     \
        assert_string_equal(why_, (reason));                                                       \
    } while (0)

#define assert_rejected(t, reason) assert_rejected_o((t), strlen(t), opts(), (reason))

static size_t b64_index(char c)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    return (size_t)(strchr(alpha, c) - alpha);
}

/* ------------------------------------------------------ round trips */

static void roundtrip(const char *kid, const char *alg)
{
    struct keel_jwt_verify_opts o = opts();
    struct keel_jwt_claims in, out;
    struct keel_buf b;
    const char *why = "unset";
    char hdr[256];
    size_t n;

    assert_int_equal(keel_jwt_keyset_use(&ks, kid), KEEL_OK);
    keel_buf_init(&b, KEEL_JWT_MAX_LEN);
    assert_int_equal(keel_jwt_claims_init(&in, "u-42", "admin", NOW, 900), KEEL_OK);
    assert_int_equal(keel_jwt_sign(&ks, ISS, AUD, &in, &b), KEEL_OK);
    assert_int_equal(strlen(b.data), b.len);

    /* The header is exactly what the docs promise. */
    n = (size_t)(strchr(b.data, '.') - b.data);
    assert_int_equal(sodium_base642bin((unsigned char *)hdr, sizeof(hdr) - 1, b.data, n, NULL, &n,
                                       NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    hdr[n] = '\0';
    {
        char want[128];

        snprintf(want, sizeof(want), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg, kid);
        assert_string_equal(hdr, want);
    }

    assert_int_equal(keel_jwt_verify(&ks, b.data, b.len, &o, &out, &why), KEEL_OK);
    assert_null(why);
    assert_string_equal(out.sub, "u-42");
    assert_string_equal(out.role, "admin");
    assert_string_equal(out.jti, in.jti);
    assert_int_equal(out.iat, NOW);
    assert_int_equal(out.nbf, NOW);
    assert_int_equal(out.exp, NOW + 900);
    keel_buf_free(&b);
    assert_int_equal(keel_jwt_keyset_use(&ks, "hs1"), KEEL_OK);
}

static void test_roundtrip_hs256(void **state)
{
    (void)state;
    roundtrip("hs1", "HS256");
}

static void test_roundtrip_eddsa(void **state)
{
    (void)state;
    roundtrip("ed1", "EdDSA");
}

static void test_claims_unique_jti(void **state)
{
    struct keel_jwt_claims a, b;

    (void)state;
    assert_int_equal(keel_jwt_claims_init(&a, "u", "user", NOW, 900), KEEL_OK);
    assert_int_equal(keel_jwt_claims_init(&b, "u", "user", NOW, 900), KEEL_OK);
    assert_string_not_equal(a.jti, b.jti);
    assert_int_equal(keel_jwt_claims_init(&a, "", "user", NOW, 900), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_claims_init(&a, "u", "", NOW, 900), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_claims_init(&a, "u", "role-name-too-long", NOW, 900), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_claims_init(&a, "u", "user", NOW, 0), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_claims_init(&a, "u", "user", NOW, 86401), KEEL_E_INVALID);
}

/* forge() makes tokens the verifier accepts, so the negative tests below
 * fail for the reason they name. */
static void test_forge_control(void **state)
{
    struct body b = good_body();

    (void)state;
    assert_accepted(hs(HDR_HS, build_body(b)));
    forge(tok, HDR_ED, build_body(b), SIGN_ED, ed_sk, 0);
    assert_accepted(tok);
    /* typ is compared case-insensitively (RFC 7515 section 4.1.9). */
    assert_accepted(hs("{\"alg\":\"HS256\",\"typ\":\"jwt\",\"kid\":\"hs1\"}", build_body(b)));
    /* Member order does not matter. */
    assert_accepted(hs("{\"kid\":\"hs1\",\"typ\":\"JWT\",\"alg\":\"HS256\"}", build_body(b)));
    /* aud may be an array that contains the audience. */
    b.aud = "[\"other\",\"" AUD "\"]";
    assert_accepted(hs(HDR_HS, build_body(b)));
    /* Unknown claims are ignored (RFC 7519 section 4). */
    b = good_body();
    b.extra = "\"scope\":\"x\"";
    assert_accepted(hs(HDR_HS, build_body(b)));
}

static void test_rotation(void **state)
{
    struct keel_jwt_keyset rs;
    struct keel_jwt_verify_opts o = opts();
    struct keel_jwt_claims c, out;
    struct keel_buf old, cur;
    unsigned char s2[32];
    const char *why;

    (void)state;
    memset(s2, 0x77, sizeof(s2));
    keel_jwt_keyset_init(&rs);
    keel_buf_init(&old, KEEL_JWT_MAX_LEN);
    keel_buf_init(&cur, KEEL_JWT_MAX_LEN);
    assert_int_equal(keel_jwt_keyset_add_hs256(&rs, "2024-01", hs_secret, 32), KEEL_OK);
    assert_int_equal(keel_jwt_claims_init(&c, "u-1", "user", NOW, 900), KEEL_OK);
    assert_int_equal(keel_jwt_sign(&rs, ISS, AUD, &c, &old), KEEL_OK);

    /* Rotate: a new signing key, the old one kept for verification. */
    assert_int_equal(keel_jwt_keyset_add_hs256(&rs, "2024-02", s2, 32), KEEL_OK);
    assert_int_equal(keel_jwt_keyset_use(&rs, "2024-02"), KEEL_OK);
    assert_int_equal(keel_jwt_sign(&rs, ISS, AUD, &c, &cur), KEEL_OK);
    assert_string_not_equal(old.data, cur.data);
    assert_int_equal(keel_jwt_verify(&rs, old.data, old.len, &o, &out, &why), KEEL_OK);
    assert_int_equal(keel_jwt_verify(&rs, cur.data, cur.len, &o, &out, &why), KEEL_OK);

    /* The signing key cannot be removed; the old one can, and then its
     * tokens stop verifying while the new key's still do. */
    assert_int_equal(keel_jwt_keyset_remove(&rs, "2024-02"), KEEL_E_CONFLICT);
    assert_int_equal(keel_jwt_keyset_remove(&rs, "2024-01"), KEEL_OK);
    assert_int_equal(keel_jwt_keyset_remove(&rs, "2024-01"), KEEL_E_NOT_FOUND);
    assert_int_equal(rs.nkeys, 1);
    assert_int_equal(keel_jwt_verify(&rs, old.data, old.len, &o, &out, &why), KEEL_E_AUTH);
    assert_string_equal(why, "unknown kid");
    assert_int_equal(keel_jwt_verify(&rs, cur.data, cur.len, &o, &out, &why), KEEL_OK);
    /* The removed slot was wiped. */
    {
        static const struct keel_jwt_key zero;

        assert_memory_equal(&rs.keys[1], &zero, sizeof(zero));
    }

    /* A key re-added under the old kid with another secret does not make
     * the old token valid again. */
    assert_int_equal(keel_jwt_keyset_add_hs256(&rs, "2024-01", s2, 32), KEEL_OK);
    assert_int_equal(keel_jwt_verify(&rs, old.data, old.len, &o, &out, &why), KEEL_E_AUTH);
    assert_string_equal(why, "bad signature");

    keel_jwt_keyset_wipe(&rs);
    {
        static const struct keel_jwt_keyset zero;

        assert_memory_equal(&rs, &zero, sizeof(zero));
    }
    keel_buf_free(&old);
    keel_buf_free(&cur);
}

static void test_keyset_rules(void **state)
{
    struct keel_jwt_keyset k;
    struct keel_jwt_claims c;
    struct keel_buf b;
    unsigned char big[65] = {0};
    char kid[8];

    (void)state;
    keel_jwt_keyset_init(&k);
    keel_buf_init(&b, KEEL_JWT_MAX_LEN);
    assert_int_equal(keel_jwt_claims_init(&c, "u", "user", NOW, 900), KEEL_OK);
    assert_int_equal(keel_jwt_sign(&k, ISS, AUD, &c, &b), KEEL_E_INVALID); /* no key */
    assert_int_equal(keel_jwt_keyset_add_hs256(&k, "a", hs_secret, 31), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_keyset_add_hs256(&k, "a", big, 65), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_keyset_add_hs256(&k, "", hs_secret, 32), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_keyset_add_hs256(&k, "a b", hs_secret, 32), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_keyset_add_hs256(&k, "a\"", hs_secret, 32), KEEL_E_INVALID);
    assert_int_equal(
        keel_jwt_keyset_add_hs256(&k, "123456789012345678901234567890123", hs_secret, 32),
        KEEL_E_INVALID);
    assert_int_equal(keel_jwt_keyset_add_hs256(&k, "a", big, 64), KEEL_OK);
    assert_int_equal(keel_jwt_keyset_add_ed25519(&k, "a", ed_seed), KEEL_E_CONFLICT);
    for (int i = 1; i < KEEL_JWT_MAX_KEYS; i++) {
        snprintf(kid, sizeof(kid), "k%d", i);
        assert_int_equal(keel_jwt_keyset_add_hs256(&k, kid, hs_secret, 32), KEEL_OK);
    }
    assert_int_equal(keel_jwt_keyset_add_hs256(&k, "full", hs_secret, 32), KEEL_E_TOO_LARGE);
    assert_int_equal(keel_jwt_keyset_use(&k, "nope"), KEEL_E_NOT_FOUND);
    assert_int_equal(k.current, 0);
    keel_jwt_keyset_wipe(&k);
    keel_buf_free(&b);
}

static void test_sign_rules(void **state)
{
    struct keel_jwt_claims c;
    struct keel_buf b;
    char long_iss[300];

    (void)state;
    assert_int_equal(keel_jwt_claims_init(&c, "u", "user", NOW, 900), KEEL_OK);
    /* A token that would fail verification is never issued. */
    keel_buf_init(&b, KEEL_JWT_MAX_LEN);
    c.exp = c.iat;
    assert_int_equal(keel_jwt_sign(&ks, ISS, AUD, &c, &b), KEEL_E_INVALID);
    c.exp = c.iat + 86401;
    assert_int_equal(keel_jwt_sign(&ks, ISS, AUD, &c, &b), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_claims_init(&c, "u", "user", NOW, 900), KEEL_OK);
    strcpy(c.jti, "not-a-uuid");
    assert_int_equal(keel_jwt_sign(&ks, ISS, AUD, &c, &b), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_claims_init(&c, "u", "user", NOW, 900), KEEL_OK);
    assert_int_equal(keel_jwt_sign(&ks, "", AUD, &c, &b), KEEL_E_INVALID);
    assert_int_equal(keel_jwt_sign(&ks, ISS, NULL, &c, &b), KEEL_E_INVALID);
    memset(long_iss, 'i', sizeof(long_iss) - 1);
    long_iss[sizeof(long_iss) - 1] = '\0';
    assert_int_equal(keel_jwt_sign(&ks, long_iss, AUD, &c, &b), KEEL_E_INVALID);
    assert_int_equal(b.len, 0);
    /* iss and aud of 256 control characters each are escaped to 6 bytes
     * apiece: the token would pass KEEL_JWT_MAX_LEN, so it is not issued. */
    memset(long_iss, 0x01, KEEL_JWT_ISS_MAX);
    long_iss[KEEL_JWT_ISS_MAX] = '\0';
    keel_buf_free(&b);
    keel_buf_init(&b, 4 * KEEL_JWT_MAX_LEN); /* the buffer itself has room */
    assert_int_equal(keel_jwt_sign(&ks, long_iss, long_iss, &c, &b), KEEL_E_TOO_LARGE);
    assert_int_equal(b.len, 0);
    keel_buf_free(&b);

    /* A buffer too small for the token is left as it was. */
    keel_buf_init(&b, 100);
    assert_int_equal(keel_buf_appends(&b, "x"), KEEL_OK);
    assert_int_equal(keel_jwt_sign(&ks, ISS, AUD, &c, &b), KEEL_E_TOO_LARGE);
    assert_int_equal(b.len, 1);
    assert_string_equal(b.data, "x");
    keel_buf_free(&b);
}

/* ------------------------------------------------- header: algorithm */

static void test_alg_none(void **state)
{
    const char *spellings[] = {"none", "NONE", "nOnE", "None"};
    const char *body = build_body(good_body());
    char hdr[128];

    (void)state;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(spellings); i++) {
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"hs1\"}",
                 spellings[i]);
        /* The classic form: no signature at all. */
        forge(tok, hdr, body, SIGN_EMPTY, NULL, 0);
        assert_rejected(tok, "empty token part");
        /* Even with a valid HMAC over it, "none" is never an algorithm. */
        assert_rejected(hs(hdr, body), "alg none");
    }
}

/* An HS256 token for the Ed25519 kid, the HMAC keyed with the PUBLIC key:
 * the attack on verifiers that let the token pick the algorithm. */
static void test_alg_confusion_hs_on_ed(void **state)
{
    (void)state;
    forge(tok, "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"ed1\"}", build_body(good_body()),
          SIGN_HS, ed_pk, sizeof(ed_pk));
    assert_rejected(tok, "alg does not match the key");
}

static void test_alg_confusion_ed_on_hs(void **state)
{
    (void)state;
    forge(tok, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"hs1\"}", build_body(good_body()),
          SIGN_ED, ed_sk, 0);
    assert_rejected(tok, "alg does not match the key");
}

static void test_alg_rs256(void **state)
{
    const char *body = build_body(good_body());

    (void)state;
    assert_rejected(hs("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"hs1\"}", body),
                    "alg does not match the key");
    /* alg is case-sensitive (RFC 7515 section 4.1.1). */
    assert_rejected(hs("{\"alg\":\"hs256\",\"typ\":\"JWT\",\"kid\":\"hs1\"}", body),
                    "alg does not match the key");
    assert_rejected(hs("{\"alg\":\"HS512\",\"typ\":\"JWT\",\"kid\":\"hs1\"}", body),
                    "alg does not match the key");
    assert_rejected(hs("{\"alg\":1,\"typ\":\"JWT\",\"kid\":\"hs1\"}", body),
                    "missing or non-string alg");
    assert_rejected(hs("{\"typ\":\"JWT\",\"kid\":\"hs1\"}", body), "missing or non-string alg");
}

/* ------------------------------------------------------ header: kid */

static void test_kid_missing(void **state)
{
    (void)state;
    assert_rejected(hs("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", build_body(good_body())),
                    "missing or malformed kid");
    assert_rejected(hs("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"\"}", build_body(good_body())),
                    "missing or malformed kid");
    assert_rejected(hs("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":7}", build_body(good_body())),
                    "missing or malformed kid");
}

static void test_kid_unknown(void **state)
{
    (void)state;
    assert_rejected(
        hs("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"hs2\"}", build_body(good_body())),
        "unknown kid");
    /* A path or URL in kid is not looked up anywhere. */
    assert_rejected(hs("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"../../dev/null\"}",
                       build_body(good_body())),
                    "missing or malformed kid");
}

/* ------------------------------------------ header: unexpected members */

static void expect_member_rejected(const char *member)
{
    char hdr[512];

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"hs1\",%s}", member);
    assert_rejected(hs(hdr, build_body(good_body())), "unexpected header member");
}

static void test_hdr_jku(void **state)
{
    (void)state;
    expect_member_rejected("\"jku\":\"https://evil.example/jwks.json\"");
}

static void test_hdr_jwk(void **state)
{
    (void)state;
    expect_member_rejected("\"jwk\":{\"kty\":\"oct\",\"k\":\"AAAA\"}");
}

static void test_hdr_x5u(void **state)
{
    (void)state;
    expect_member_rejected("\"x5u\":\"https://evil.example/cert.pem\"");
    expect_member_rejected("\"x5c\":[\"MIIB\"]");
}

static void test_hdr_crit(void **state)
{
    (void)state;
    expect_member_rejected("\"crit\":[\"exp\"]");
    expect_member_rejected("\"crit\":[]");
}

static void test_hdr_unknown_member(void **state)
{
    (void)state;
    expect_member_rejected("\"cty\":\"JWT\"");
    expect_member_rejected("\"foo\":\"bar\"");
    expect_member_rejected("\"zip\":\"DEF\"");
}

static void test_hdr_typ(void **state)
{
    const char *body = build_body(good_body());

    (void)state;
    assert_rejected(hs("{\"alg\":\"HS256\",\"kid\":\"hs1\"}", body), "typ is not JWT");
    assert_rejected(hs("{\"alg\":\"HS256\",\"typ\":\"JWS\",\"kid\":\"hs1\"}", body),
                    "typ is not JWT");
    assert_rejected(hs("{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"hs1\"}", body),
                    "typ is not JWT");
    assert_rejected(hs("{\"alg\":\"HS256\",\"typ\":\"JWTX\",\"kid\":\"hs1\"}", body),
                    "typ is not JWT");
    assert_rejected(hs("{\"alg\":\"HS256\",\"typ\":null,\"kid\":\"hs1\"}", body), "typ is not JWT");
}

static void test_hdr_duplicate_alg(void **state)
{
    (void)state;
    assert_rejected(hs("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"hs1\",\"alg\":\"none\"}",
                       build_body(good_body())),
                    "header is not strict JSON");
    assert_rejected(hs("{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"hs1\",\"alg\":\"HS256\"}",
                       build_body(good_body())),
                    "header is not strict JSON");
}

/* json-c keeps keys as C strings, so "alg\u0000x" would read as "alg";
 * escapes in the header are refused outright. */
static void test_hdr_escapes(void **state)
{
    const char *body = build_body(good_body());

    (void)state;
    assert_rejected(hs("{\"\\u0061lg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"hs1\"}", body),
                    "escape in header");
    assert_rejected(hs("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"hs1\",\"x\\u0000\":1}", body),
                    "escape in header");
    assert_rejected(hs("{\"alg\":\"HS256\",\n\"typ\":\"JWT\",\"kid\":\"hs1\"}", body),
                    "escape in header");
    assert_rejected(hs("[\"alg\",\"HS256\"]", body), "header is not an object");
    assert_rejected(hs("{\"alg\":\"HS256\"", body), "header is not strict JSON");
}

/* ------------------------------------------------------------- base64 */

/* A valid token whose signature part contains c (tries different subjects
 * until one does). Returns the offset of the first c in the signature. */
static size_t token_with_sig_char(char c)
{
    struct body b = good_body();
    char sub[32];

    for (int i = 0; i < 1000; i++) {
        const char *sig;

        snprintf(sub, sizeof(sub), "\"u-%d\"", i);
        b.sub = sub;
        hs(HDR_HS, build_body(b));
        sig = strrchr(tok, '.') + 1;
        if (strchr(sig, c))
            return (size_t)(strchr(sig, c) - tok);
    }
    fail_msg("no signature with '%c' in 1000 tries", c);
    return 0;
}

static void test_b64_padding(void **state)
{
    (void)state;
    hs(HDR_HS, build_body(good_body()));
    assert_accepted(tok);
    strcat(tok, "="); /* the padding a standard encoder writes for 32 bytes */
    assert_rejected(tok, "bad base64url");
}

/* '+' and '/' are the standard alphabet's 62 and 63; a lenient decoder maps
 * them to the same bits as '-' and '_', so the signature would still match. */
static void test_b64_plus(void **state)
{
    size_t at;

    (void)state;
    at = token_with_sig_char('-');
    assert_accepted(tok);
    tok[at] = '+';
    assert_rejected(tok, "bad base64url");
}

static void test_b64_slash(void **state)
{
    size_t at;

    (void)state;
    at = token_with_sig_char('_');
    assert_accepted(tok);
    tok[at] = '/';
    assert_rejected(tok, "bad base64url");
}

/* libsodium 1.0.18 decodes every byte 0x80..0xff as '_' (63): without the
 * re-encode comparison this token's signature would verify. */
static void test_b64_high_byte(void **state)
{
    size_t at;

    (void)state;
    at = token_with_sig_char('_');
    assert_accepted(tok);
    tok[at] = '\xff';
    assert_rejected(tok, "bad base64url");
    tok[at] = '\x80';
    assert_rejected(tok, "bad base64url");
}

/* The last of 43 characters carries 4 bits of the 32-byte MAC and 2 unused
 * bits that must be zero. Setting one gives the same bytes to a lax decoder. */
static void test_b64_trailing_bits(void **state)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t last;

    (void)state;
    hs(HDR_HS, build_body(good_body()));
    last = strlen(tok) - 1;
    assert_int_equal(strlen(strrchr(tok, '.') + 1), 43);
    assert_int_equal(b64_index(tok[last]) & 3, 0);
    tok[last] = alpha[b64_index(tok[last]) | 1];
    assert_rejected(tok, "bad base64url");
}

static void test_b64_whitespace(void **state)
{
    char t2[TOKMAX + 16];
    char *dot;

    (void)state;
    hs(HDR_HS, build_body(good_body()));
    dot = strchr(tok, '.');
    /* A newline inside the payload part. */
    memcpy(t2, tok, (size_t)(dot - tok) + 5);
    t2[dot - tok + 5] = '\n';
    strcpy(t2 + (dot - tok) + 6, dot + 5);
    assert_rejected(t2, "bad base64url");
    /* A space at the very end. */
    strcpy(t2, tok);
    strcat(t2, " ");
    assert_rejected(t2, "bad base64url");
}

/* ------------------------------------------------------------- structure */

static void test_parts(void **state)
{
    char t2[TOKMAX + 16];
    char *d1, *d2;

    (void)state;
    hs(HDR_HS, build_body(good_body()));
    d1 = strchr(tok, '.');
    d2 = strchr(d1 + 1, '.');

    /* Two parts: header.payload */
    memcpy(t2, tok, (size_t)(d2 - tok));
    t2[d2 - tok] = '\0';
    assert_rejected(t2, "token is not three parts");
    /* Four parts. */
    snprintf(t2, sizeof(t2), "%s.%s", tok, "AAAA");
    assert_rejected(t2, "token is not three parts");
    snprintf(t2, sizeof(t2), "%s.", tok);
    assert_rejected(t2, "token is not three parts");
    /* Empty parts. */
    snprintf(t2, sizeof(t2), "%s", d1); /* ".payload.sig" */
    assert_rejected(t2, "empty token part");
    snprintf(t2, sizeof(t2), "%.*s.%s", (int)(d1 - tok), tok, d2); /* "hdr..sig" */
    assert_rejected(t2, "empty token part");
    snprintf(t2, sizeof(t2), "%.*s", (int)(d2 - tok + 1), tok); /* "hdr.payload." */
    assert_rejected(t2, "empty token part");
    assert_rejected("..", "empty token part");
    assert_rejected("", "empty token");
    assert_rejected_o(NULL, 0, opts(), "empty token");
}

static void test_bad_signature(void **state)
{
    unsigned char sig[64];
    size_t n;
    char *s;

    (void)state;
    hs(HDR_HS, build_body(good_body()));
    s = strrchr(tok, '.') + 1;
    assert_int_equal(sodium_base642bin(sig, sizeof(sig), s, strlen(s), NULL, &n, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    sig[17] ^= 0x08;
    b64(s, 64, sig, n);
    assert_rejected(tok, "bad signature");

    /* The same for EdDSA. */
    forge(tok, HDR_ED, build_body(good_body()), SIGN_ED, ed_sk, 0);
    s = strrchr(tok, '.') + 1;
    assert_int_equal(sodium_base642bin(sig, sizeof(sig), s, strlen(s), NULL, &n, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    sig[0] ^= 0x01;
    b64(s, 100, sig, n);
    assert_rejected(tok, "bad signature");

    /* A wrong HMAC key, and a payload changed under a valid signature. */
    forge(tok, HDR_HS, build_body(good_body()), SIGN_HS, ed_pk, 32);
    assert_rejected(tok, "bad signature");
    {
        char other[TOKMAX];
        struct body b = good_body();
        char *d1, *d2, *o1, *o2;

        b.role = "\"admin\"";
        strcpy(other, hs(HDR_HS, build_body(b)));
        hs(HDR_HS, build_body(good_body()));
        /* Splice the admin payload between the user token's header and MAC. */
        d1 = strchr(tok, '.');
        d2 = strrchr(tok, '.');
        o1 = strchr(other, '.');
        o2 = strrchr(other, '.');
        {
            char t3[TOKMAX];

            snprintf(t3, sizeof(t3), "%.*s%.*s%s", (int)(d1 - tok), tok, (int)(o2 - o1), o1, d2);
            assert_rejected(t3, "bad signature");
        }
    }
}

static void test_sig_length(void **state)
{
    (void)state;
    /* 44 characters decode canonically to 33 bytes: not an HS256 MAC. */
    hs(HDR_HS, build_body(good_body()));
    strcat(tok, "A");
    assert_rejected(tok, "bad signature length");
    forge(tok, HDR_ED, build_body(good_body()), SIGN_HS, hs_secret, 32);
    assert_rejected(tok, "bad signature length");
}

/* ------------------------------------------------------------- claims */

static void test_iss_wrong(void **state)
{
    struct body b = good_body();

    (void)state;
    b.iss = "\"https://evil.example\"";
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong iss");
    b.iss = "\"" ISS "/\"";
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong iss");
    b.iss = "[\"" ISS "\"]";
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong iss");
    b.iss = NULL;
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong iss");
}

static void test_aud_wrong_string(void **state)
{
    struct body b = good_body();

    (void)state;
    b.aud = "\"keel-admin\"";
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong aud");
    b.aud = "\"keel-api \"";
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong aud");
    b.aud = "\"keel-api\\u0000\"";
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong aud");
    b.aud = NULL;
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong aud");
}

static void test_aud_wrong_array(void **state)
{
    struct body b = good_body();

    (void)state;
    b.aud = "[\"keel-admin\",\"other\"]";
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong aud");
    b.aud = "[]";
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong aud");
    b.aud = "[\"" AUD "\",1]"; /* malformed array: refused even though it has AUD */
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong aud");
    b.aud = "[[\"" AUD "\"]]";
    assert_rejected(hs(HDR_HS, build_body(b)), "payload is not strict JSON"); /* depth */
    b.aud = "{\"" AUD "\":1}";
    assert_rejected(hs(HDR_HS, build_body(b)), "wrong aud");
}

static void test_exp_past(void **state)
{
    struct body b = good_body();

    (void)state;
    /* Expired 31 s ago: beyond the 30 s leeway. */
    b.iat = b.nbf = "1699999069";
    b.exp = "1699999969";
    assert_rejected(hs(HDR_HS, build_body(b)), "token expired");
    /* A caller cannot widen the leeway past 30 s. */
    {
        struct keel_jwt_verify_opts o = opts();

        o.leeway_s = 3600;
        assert_rejected_o(tok, strlen(tok), o, "token expired");
    }
    /* exp == now without leeway is expired (exp is exclusive). */
    b = good_body();
    b.iat = b.nbf = "1699999100";
    b.exp = "1700000000";
    hs(HDR_HS, build_body(b));
    {
        struct keel_jwt_verify_opts o = opts();

        o.leeway_s = 0;
        assert_rejected_o(tok, strlen(tok), o, "token expired");
        o.leeway_s = -5;
        assert_rejected_o(tok, strlen(tok), o, "token expired");
    }
}

static void test_exp_within_leeway(void **state)
{
    struct body b = good_body();

    (void)state;
    b.iat = b.nbf = "1699999090";
    b.exp = "1699999990"; /* 10 s ago */
    assert_accepted(hs(HDR_HS, build_body(b)));
    b.exp = "1699999971"; /* 29 s ago */
    assert_accepted(hs(HDR_HS, build_body(b)));
    b.exp = "1699999970"; /* exactly 30 s ago: exp <= now - leeway */
    assert_rejected(hs(HDR_HS, build_body(b)), "token expired");
}

static void test_nbf_future(void **state)
{
    struct body b = good_body();

    (void)state;
    b.nbf = "1700000031";
    assert_rejected(hs(HDR_HS, build_body(b)), "token not yet valid");
    b.nbf = "1700000030"; /* within leeway */
    assert_accepted(hs(HDR_HS, build_body(b)));
    b.nbf = "1700000900"; /* nbf >= exp: never valid */
    assert_rejected(hs(HDR_HS, build_body(b)), "bad token lifetime");
}

static void test_iat_future(void **state)
{
    struct body b = good_body();

    (void)state;
    b.iat = "1700000060";
    assert_rejected(hs(HDR_HS, build_body(b)), "token issued in the future");
    b.iat = "1700000020";
    assert_accepted(hs(HDR_HS, build_body(b)));
}

static void test_lifetime(void **state)
{
    struct body b = good_body();

    (void)state;
    b.exp = "1700086401"; /* 24 h + 1 s after iat */
    assert_rejected(hs(HDR_HS, build_body(b)), "bad token lifetime");
    b.exp = "1700086400";
    assert_accepted(hs(HDR_HS, build_body(b)));
    b.exp = "1700000000"; /* exp == iat */
    assert_rejected(hs(HDR_HS, build_body(b)), "bad token lifetime");
}

static void test_exp_types(void **state)
{
    const char *bad[] = {
        "1700000900.0", "1.7000009e9", "\"1700000900\"",       "true",
        "null",         "-1",          "99999999999999999999", "9223372036854775807",
        "253402300800", "[1700000900]"};
    const char *reason = "missing or malformed iat, nbf or exp";
    struct body b;

    (void)state;
    for (size_t i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        b = good_body();
        b.exp = bad[i];
        assert_rejected(hs(HDR_HS, build_body(b)), reason);
        b = good_body();
        b.iat = bad[i];
        assert_rejected(hs(HDR_HS, build_body(b)), reason);
        b = good_body();
        b.nbf = bad[i];
        assert_rejected(hs(HDR_HS, build_body(b)), reason);
    }
    b = good_body();
    b.exp = NULL;
    assert_rejected(hs(HDR_HS, build_body(b)), reason);
    b = good_body();
    b.iat = NULL;
    assert_rejected(hs(HDR_HS, build_body(b)), reason);
    b = good_body();
    b.nbf = NULL;
    assert_rejected(hs(HDR_HS, build_body(b)), reason);
}

static void test_string_claims(void **state)
{
    struct body b = good_body();

    (void)state;
    b.sub = "\"\"";
    assert_rejected(hs(HDR_HS, build_body(b)), "missing or malformed sub");
    b.sub = "\"01234567890123456789012345678901234567890123456789012345678901234\"";
    assert_rejected(hs(HDR_HS, build_body(b)), "missing or malformed sub");
    b.sub = "\"0123456789012345678901234567890123456789012345678901234567890123\"";
    assert_accepted(hs(HDR_HS, build_body(b)));
    b.sub = "42";
    assert_rejected(hs(HDR_HS, build_body(b)), "missing or malformed sub");
    b.sub = "\"u\\u0000admin\"";
    assert_rejected(hs(HDR_HS, build_body(b)), "missing or malformed sub");
    b = good_body();
    b.role = "\"administrator-xyz\"";
    assert_rejected(hs(HDR_HS, build_body(b)), "missing or malformed role");
    b.role = NULL;
    assert_rejected(hs(HDR_HS, build_body(b)), "missing or malformed role");
    b = good_body();
    b.jti = "\"abc\"";
    assert_rejected(hs(HDR_HS, build_body(b)), "missing or malformed jti");
    b.jti = NULL;
    assert_rejected(hs(HDR_HS, build_body(b)), "missing or malformed jti");
}

static void test_payload_duplicate_sub(void **state)
{
    struct body b = good_body();

    (void)state;
    b.extra = "\"sub\":\"u-1-admin\"";
    assert_rejected(hs(HDR_HS, build_body(b)), "payload is not strict JSON");
    b.extra = "\"exp\":9999999999";
    assert_rejected(hs(HDR_HS, build_body(b)), "payload is not strict JSON");
}

static void test_oversize(void **state)
{
    struct body b = good_body();
    static char extra[5000];

    (void)state;
    /* Properly signed, but past the cap: refused before any decoding. */
    memset(extra, 'a', sizeof(extra) - 1);
    memcpy(extra, "\"pad\":\"", 7);
    strcpy(extra + sizeof(extra) - 2, "\"");
    b.extra = extra;
    hs(HDR_HS, build_body(b));
    assert_true(strlen(tok) > KEEL_JWT_MAX_LEN);
    assert_rejected(tok, "token too long");
    /* The length check uses len, not strlen. */
    hs(HDR_HS, build_body(good_body()));
    assert_rejected_o(tok, KEEL_JWT_MAX_LEN + 1, opts(), "token too long");
}

static void test_trailing_garbage(void **state)
{
    struct body b = good_body();
    char t2[TOKMAX + 16];

    (void)state;
    hs(HDR_HS, build_body(good_body()));
    /* A NUL counted in len. */
    assert_rejected_o(tok, strlen(tok) + 1, opts(), "bad base64url");
    snprintf(t2, sizeof(t2), "%s!!", tok);
    assert_rejected(t2, "bad base64url");
    snprintf(t2, sizeof(t2), "%s AAAA", tok);
    assert_rejected(t2, "bad base64url");
    /* Garbage after the payload JSON, under a valid signature. */
    forge(tok, HDR_HS, "{\"sub\":\"x\"} {\"sub\":\"y\"}", SIGN_HS, hs_secret, 32);
    assert_rejected(tok, "payload is not strict JSON");
    /* Garbage after the header JSON. */
    (void)b;
    assert_rejected(hs(HDR_HS "x", build_body(good_body())), "header is not strict JSON");
}

static void test_verify_opts(void **state)
{
    struct keel_jwt_verify_opts o = opts();

    (void)state;
    hs(HDR_HS, build_body(good_body()));
    o.iss = NULL;
    assert_rejected_o(tok, strlen(tok), o, "verifier misconfigured");
    o = opts();
    o.aud = "";
    assert_rejected_o(tok, strlen(tok), o, "verifier misconfigured");
    o = opts();
    o.now = -1;
    assert_rejected_o(tok, strlen(tok), o, "verifier misconfigured");
    /* why may be NULL. */
    {
        struct keel_jwt_claims c;

        o = opts();
        o.aud = "x";
        assert_int_equal(keel_jwt_verify(&ks, tok, strlen(tok), &o, &c, NULL), KEEL_E_AUTH);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_hs256),
        cmocka_unit_test(test_roundtrip_eddsa),
        cmocka_unit_test(test_claims_unique_jti),
        cmocka_unit_test(test_forge_control),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_keyset_rules),
        cmocka_unit_test(test_sign_rules),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_alg_confusion_hs_on_ed),
        cmocka_unit_test(test_alg_confusion_ed_on_hs),
        cmocka_unit_test(test_alg_rs256),
        cmocka_unit_test(test_kid_missing),
        cmocka_unit_test(test_kid_unknown),
        cmocka_unit_test(test_hdr_jku),
        cmocka_unit_test(test_hdr_jwk),
        cmocka_unit_test(test_hdr_x5u),
        cmocka_unit_test(test_hdr_crit),
        cmocka_unit_test(test_hdr_unknown_member),
        cmocka_unit_test(test_hdr_typ),
        cmocka_unit_test(test_hdr_duplicate_alg),
        cmocka_unit_test(test_hdr_escapes),
        cmocka_unit_test(test_b64_padding),
        cmocka_unit_test(test_b64_plus),
        cmocka_unit_test(test_b64_slash),
        cmocka_unit_test(test_b64_high_byte),
        cmocka_unit_test(test_b64_trailing_bits),
        cmocka_unit_test(test_b64_whitespace),
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_sig_length),
        cmocka_unit_test(test_iss_wrong),
        cmocka_unit_test(test_aud_wrong_string),
        cmocka_unit_test(test_aud_wrong_array),
        cmocka_unit_test(test_exp_past),
        cmocka_unit_test(test_exp_within_leeway),
        cmocka_unit_test(test_nbf_future),
        cmocka_unit_test(test_iat_future),
        cmocka_unit_test(test_lifetime),
        cmocka_unit_test(test_exp_types),
        cmocka_unit_test(test_string_claims),
        cmocka_unit_test(test_payload_duplicate_sub),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_verify_opts),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, setup, teardown);
}
