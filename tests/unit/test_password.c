/*
 * test_password.c - unit tests for src/modules/auth/password.c.
 *
 * Argon2id: hash and verify, wrong and truncated passwords, hashes that are
 * not Argon2id, needs_rehash when the parameters change, the dummy verify
 * (always KEEL_E_AUTH, and as slow as a real verify), the length policy in
 * code points. Most tests use libsodium's minimum cost for speed; one uses
 * the real defaults (19 MiB, t = 2).
 *
 * Refresh tokens: format, uniqueness, a SHA-256 known-answer vector, and
 * every non-canonical or malformed spelling refused before hashing.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "keel/password.h"

#include "test.h"

/* The cheapest parameters libsodium allows, so most tests run in ms. */
static const struct keel_password_params fast = {1, 8192};
static const struct keel_password_params fast2 = {2, 8192};
static const struct keel_password_params fast_mem = {1, 16384};

#define PW "correct horse battery staple"

/* ------------------------------------------------------------ hashing */

static void test_hash_verify(void **state)
{
    char h[KEEL_PASSWORD_HASH_LEN], h2[KEEL_PASSWORD_HASH_LEN];

    (void)state;
    assert_int_equal(keel_password_hash(PW, strlen(PW), &fast, h), KEEL_OK);
    assert_true(strncmp(h, "$argon2id$v=19$m=8,t=1,p=1$", 27) == 0);
    assert_int_equal(keel_password_verify(h, PW, strlen(PW)), KEEL_OK);
    /* Salted: the same password never gives the same string twice. */
    assert_int_equal(keel_password_hash(PW, strlen(PW), &fast, h2), KEEL_OK);
    assert_string_not_equal(h, h2);
    assert_int_equal(keel_password_verify(h2, PW, strlen(PW)), KEEL_OK);
    /* Length-delimited: NUL bytes count and nothing is truncated. */
    assert_int_equal(keel_password_hash("a\0b", 3, &fast, h), KEEL_OK);
    assert_int_equal(keel_password_verify(h, "a\0b", 3), KEEL_OK);
    assert_int_equal(keel_password_verify(h, "a\0c", 3), KEEL_E_AUTH);
    assert_int_equal(keel_password_verify(h, "a", 1), KEEL_E_AUTH);
}

static void test_wrong_password(void **state)
{
    char h[KEEL_PASSWORD_HASH_LEN];

    (void)state;
    assert_int_equal(keel_password_hash(PW, strlen(PW), &fast, h), KEEL_OK);
    assert_int_equal(keel_password_verify(h, "correct horse battery stapl", 27), KEEL_E_AUTH);
    assert_int_equal(keel_password_verify(h, "Correct horse battery staple", 28), KEEL_E_AUTH);
    assert_int_equal(keel_password_verify(h, PW "e", strlen(PW) + 1), KEEL_E_AUTH);
    assert_int_equal(keel_password_verify(h, "", 0), KEEL_E_AUTH);
    assert_int_equal(keel_password_verify(h, NULL, 0), KEEL_E_AUTH);
}

static void test_bad_hashes(void **state)
{
    char h[KEEL_PASSWORD_HASH_LEN], unterminated[KEEL_PASSWORD_HASH_LEN];
    char argon2i[crypto_pwhash_STRBYTES];

    (void)state;
    assert_int_equal(keel_password_verify("", PW, strlen(PW)), KEEL_E_AUTH);
    assert_int_equal(keel_password_verify(NULL, PW, strlen(PW)), KEEL_E_AUTH);
    assert_int_equal(keel_password_verify("$2b$10$abcdefghijklmnopqrstuv", PW, strlen(PW)),
                     KEEL_E_AUTH);
    /* A hash with no NUL inside the buffer is refused, not over-read (a
     * valid hash padded with '=' over its NUL; ASan sees any over-read). */
    assert_int_equal(keel_password_hash(PW, strlen(PW), &fast, unterminated), KEEL_OK);
    memset(unterminated + strlen(unterminated), '=', sizeof(unterminated) - strlen(unterminated));
    assert_int_equal(keel_password_verify(unterminated, PW, strlen(PW)), KEEL_E_AUTH);
    assert_true(keel_password_needs_rehash(unterminated, &fast));
    /* Argon2i is not Argon2id: it neither verifies nor stays. */
    assert_int_equal(
        crypto_pwhash_str_alg(argon2i, PW, strlen(PW), 3, 8192, crypto_pwhash_ALG_ARGON2I13), 0);
    assert_int_equal(keel_password_verify(argon2i, PW, strlen(PW)), KEEL_E_AUTH);
    /* A tampered hash (one salt character changed) fails. */
    assert_int_equal(keel_password_hash(PW, strlen(PW), &fast, h), KEEL_OK);
    h[30] = h[30] == 'A' ? 'B' : 'A';
    assert_int_equal(keel_password_verify(h, PW, strlen(PW)), KEEL_E_AUTH);
}

static void test_hash_limits(void **state)
{
    static char big[KEEL_PASSWORD_MAX_BYTES + 1];
    char h[KEEL_PASSWORD_HASH_LEN];
    struct keel_password_params p;

    (void)state;
    memset(big, 'x', sizeof(big));
    assert_int_equal(keel_password_hash(big, KEEL_PASSWORD_MAX_BYTES, &fast, h), KEEL_OK);
    assert_int_equal(keel_password_verify(h, big, KEEL_PASSWORD_MAX_BYTES), KEEL_OK);
    assert_int_equal(keel_password_hash(big, sizeof(big), &fast, h), KEEL_E_INVALID);
    assert_string_equal(h, "");
    assert_int_equal(keel_password_verify(h, big, sizeof(big)), KEEL_E_AUTH);
    p = (struct keel_password_params){0, 8192};
    assert_int_equal(keel_password_hash(PW, strlen(PW), &p, h), KEEL_E_INVALID);
    p = (struct keel_password_params){1, 1024};
    assert_int_equal(keel_password_hash(PW, strlen(PW), &p, h), KEEL_E_INVALID);
}

static void test_needs_rehash(void **state)
{
    char h[KEEL_PASSWORD_HASH_LEN];

    (void)state;
    assert_int_equal(keel_password_hash(PW, strlen(PW), &fast, h), KEEL_OK);
    assert_false(keel_password_needs_rehash(h, &fast));
    assert_true(keel_password_needs_rehash(h, &fast2));    /* t changed */
    assert_true(keel_password_needs_rehash(h, &fast_mem)); /* m changed */
    assert_true(keel_password_needs_rehash(h, NULL));      /* the defaults */
    assert_true(keel_password_needs_rehash("", &fast));
    assert_true(keel_password_needs_rehash(NULL, &fast));
    assert_true(keel_password_needs_rehash("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", &fast));
    /* After rehashing with the new parameters, it is current again. */
    assert_int_equal(keel_password_hash(PW, strlen(PW), &fast2, h), KEEL_OK);
    assert_false(keel_password_needs_rehash(h, &fast2));
    assert_int_equal(keel_password_verify(h, PW, strlen(PW)), KEEL_OK);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_dummy_verify(void **state)
{
    (void)state;
    assert_int_equal(keel_password_init(&fast), KEEL_OK);
    assert_int_equal(keel_password_dummy_verify(PW, strlen(PW), &fast), KEEL_E_AUTH);
    assert_int_equal(keel_password_dummy_verify("", 0, &fast), KEEL_E_AUTH);
    assert_int_equal(keel_password_dummy_verify(NULL, 0, &fast), KEEL_E_AUTH);
    /* Other parameters: a new dummy hash is made on first use. */
    assert_int_equal(keel_password_dummy_verify(PW, strlen(PW), &fast2), KEEL_E_AUTH);
    assert_int_equal(keel_password_dummy_verify(PW, strlen(PW), &fast2), KEEL_E_AUTH);
}

/* The production parameters: the hash says m=19456 KiB, t=2, p=1, and an
 * unknown email (dummy verify) costs about what a wrong password costs. */
static void test_defaults(void **state)
{
    const struct keel_password_params def = KEEL_PASSWORD_PARAMS_DEFAULT;
    char h[KEEL_PASSWORD_HASH_LEN];
    double t0, wrong, dummy;

    (void)state;
    assert_int_equal(def.opslimit, 2);
    assert_int_equal(def.memlimit, 19 * 1024 * 1024);
    assert_true(keel_password_params_secure(&def));
    assert_false(keel_password_params_secure(&fast));
    assert_false(keel_password_params_secure(&(struct keel_password_params){2, 16u << 20}));
    assert_false(keel_password_params_secure(&(struct keel_password_params){1, 64u << 20}));

    assert_int_equal(keel_password_hash(PW, strlen(PW), NULL, h), KEEL_OK);
    assert_true(strncmp(h, "$argon2id$v=19$m=19456,t=2,p=1$", 31) == 0);
    assert_false(keel_password_needs_rehash(h, NULL));
    assert_false(keel_password_needs_rehash(h, &def));
    assert_int_equal(keel_password_init(NULL), KEEL_OK);

    t0 = now_s();
    assert_int_equal(keel_password_verify(h, "wrong password!", 15), KEEL_E_AUTH);
    wrong = now_s() - t0;
    t0 = now_s();
    assert_int_equal(keel_password_dummy_verify("wrong password!", 15, NULL), KEEL_E_AUTH);
    dummy = now_s() - t0;
    assert_int_equal(keel_password_verify(h, PW, strlen(PW)), KEEL_OK);
    /* Loose bounds (sanitizers and loaded CI machines): same order of
     * magnitude, which a missing or cheaper dummy hash would not give. */
    print_message("verify %.1f ms, dummy verify %.1f ms\n", wrong * 1e3, dummy * 1e3);
    assert_true(dummy > wrong / 3 && dummy < wrong * 3);
}

/* ------------------------------------------------------------- policy */

static void expect_policy(const char *pw, size_t len, keel_status want, const char *why_want)
{
    const char *why = "unset";

    assert_int_equal(keel_password_check_policy(pw, len, &why), want);
    if (why_want)
        assert_string_equal(why, why_want);
    else
        assert_null(why);
}

static void test_policy(void **state)
{
    static char buf[KEEL_PASSWORD_MAX_BYTES + 8];
    const char *too_short = "must be at least 10 characters";
    const char *too_long = "must be at most 128 characters";
    const char *bad_text = "must be valid UTF-8 text";
    const char *e9 = "\xc3\xa9"; /* U+00E9, 2 bytes */
    size_t i;

    (void)state;
    expect_policy("", 0, KEEL_E_INVALID, too_short);
    expect_policy("123456789", 9, KEEL_E_INVALID, too_short);
    expect_policy("1234567890", 10, KEEL_OK, NULL);
    memset(buf, 'a', sizeof(buf));
    expect_policy(buf, 128, KEEL_OK, NULL);
    expect_policy(buf, 129, KEEL_E_INVALID, too_long);
    expect_policy(buf, sizeof(buf), KEEL_E_INVALID, too_long);

    /* Characters, not bytes: 9 two-byte characters are too short, 128
     * four-byte characters (512 bytes) are fine, 129 two-byte ones not. */
    for (i = 0; i < 9; i++)
        memcpy(buf + 2 * i, e9, 2);
    expect_policy(buf, 18, KEEL_E_INVALID, too_short);
    for (i = 0; i < 128; i++)
        memcpy(buf + 4 * i, "\xf0\x9f\x94\x91", 4); /* U+1F511 */
    expect_policy(buf, 512, KEEL_OK, NULL);
    for (i = 0; i < 129; i++)
        memcpy(buf + 2 * i, e9, 2);
    expect_policy(buf, 258, KEEL_E_INVALID, too_long);

    expect_policy("abcdefghij\xff", 11, KEEL_E_INVALID, bad_text);
    expect_policy("abcdefghij\xc0\xaf", 12, KEEL_E_INVALID, bad_text);     /* overlong '/' */
    expect_policy("abcdefghij\xed\xa0\x80", 13, KEEL_E_INVALID, bad_text); /* surrogate */
    expect_policy("abcdefghij\xc3", 11, KEEL_E_INVALID, bad_text);         /* truncated */
    expect_policy("abcde\0fghij", 11, KEEL_E_INVALID, bad_text);
    expect_policy(NULL, 0, KEEL_E_INVALID, too_short);
    assert_int_equal(keel_password_check_policy("1234567890", 10, NULL), KEEL_OK);
    assert_int_equal(keel_password_check_policy("123", 3, NULL), KEEL_E_INVALID);
}

/* ------------------------------------------------------ refresh tokens */

static bool b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static void test_refresh_format(void **state)
{
    char t[KEEL_REFRESH_TOKEN_LEN + 1], hex[65];
    unsigned char raw[33];
    size_t n;

    (void)state;
    for (int k = 0; k < 100; k++) {
        memset(t, '#', sizeof(t));
        keel_refresh_token_new(t);
        assert_int_equal(strlen(t), 43);
        for (size_t i = 0; i < 43; i++)
            assert_true(b64url_char(t[i]));
        assert_int_equal(sodium_base642bin(raw, sizeof(raw), t, 43, NULL, &n, NULL,
                                           sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                         0);
        assert_int_equal(n, 32);
        assert_int_equal(keel_refresh_token_hash(t, 43, hex), KEEL_OK);
        assert_int_equal(strlen(hex), 64);
    }
}

static void test_refresh_unique(void **state)
{
    enum { N = 1000 };
    static char seen[N][KEEL_REFRESH_TOKEN_LEN + 1];

    (void)state;
    for (int i = 0; i < N; i++) {
        keel_refresh_token_new(seen[i]);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(seen[i], seen[j]);
    }
}

/* Known answers computed independently (Python hashlib.sha256 and
 * coreutils sha256sum over the 43 ASCII bytes): the stored hash is plain
 * SHA-256 of the token text. The first token is base64url of the 32 bytes
 * "this is a fixed test token !!!!!". */
static void test_refresh_hash_vector(void **state)
{
    const char *t = "dGhpcyBpcyBhIGZpeGVkIHRlc3QgdG9rZW4gISEhISE";
    char hex[65];

    (void)state;
    assert_int_equal(keel_refresh_token_hash(t, strlen(t), hex), KEEL_OK);
    assert_string_equal(hex, "f320c7817e101d4491a486e757a158adeda362939a5b8514cd50b5a7b8df92f4");
    /* Also the zero token: 32 zero bytes encode to 43 'A'. */
    assert_int_equal(
        keel_refresh_token_hash("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 43, hex), KEEL_OK);
    assert_string_equal(hex, "0f007385b6f9d4b7eeb2748605afe1a984a0a3bfa3f014d09e2a784ce9e5cd1a");
}

static void test_refresh_malformed(void **state)
{
    char t[KEEL_REFRESH_TOKEN_LEN + 8], bad[KEEL_REFRESH_TOKEN_LEN + 8];
    char hex[65];
    static const char subst[] = {'+', '/', ' ', '\n', '.', '=', '\0', '\x80'};
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t last;

    (void)state;
    keel_refresh_token_new(t);
    memset(hex, 'x', sizeof(hex));
    assert_int_equal(keel_refresh_token_hash(t, 42, hex), KEEL_E_AUTH); /* too short */
    assert_string_equal(hex, "");
    assert_int_equal(keel_refresh_token_hash(t, 44, hex), KEEL_E_AUTH); /* the NUL */
    assert_int_equal(keel_refresh_token_hash("", 0, hex), KEEL_E_AUTH);
    assert_int_equal(keel_refresh_token_hash(NULL, 43, hex), KEEL_E_AUTH);
    /* Padded (the standard encoder's 44 characters). */
    memcpy(bad, t, 43);
    memcpy(bad + 43, "=", 2);
    assert_int_equal(keel_refresh_token_hash(bad, 44, hex), KEEL_E_AUTH);
    /* Standard alphabet, whitespace, other bytes. */
    for (size_t i = 0; i < sizeof(subst); i++) {
        memcpy(bad, t, sizeof(t));
        bad[20] = subst[i];
        assert_int_equal(keel_refresh_token_hash(bad, 43, hex), KEEL_E_AUTH);
    }
    /* The last character carries 4 bits and 2 that must be zero. */
    memcpy(bad, t, sizeof(t));
    last = (size_t)(strchr(alpha, bad[42]) - alpha);
    assert_int_equal(last & 3, 0);
    bad[42] = alpha[last | 1];
    assert_int_equal(keel_refresh_token_hash(bad, 43, hex), KEEL_E_AUTH);
    /* The original still hashes. */
    assert_int_equal(keel_refresh_token_hash(t, 43, hex), KEEL_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_verify),
        cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_bad_hashes),
        cmocka_unit_test(test_hash_limits),
        cmocka_unit_test(test_needs_rehash),
        cmocka_unit_test(test_dummy_verify),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_refresh_format),
        cmocka_unit_test(test_refresh_unique),
        cmocka_unit_test(test_refresh_hash_vector),
        cmocka_unit_test(test_refresh_malformed),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
