/*
 * test_cache.c - the cache's pure helpers (src/cache/cache_msg.c): keys
 * split into namespace and rest, L1 keys with a generation, and the
 * invalidation message format (round trips, escaping, chunking at the
 * size limit, and rejection of every malformed shape). The read and
 * invalidation paths need a server: tests/e2e/test_cache.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_int.h"
#include "test.h"

#define ID "0123456789abcdef"

static void test_split(void **state)
{
    struct keel__cache_key k;
    char big[KEEL_CACHE_KEY_MAX + 2];

    (void)state;
    assert_true(keel__cache_key_split("product:42", 10, &k));
    assert_non_null(k.ns);
    assert_int_equal(k.nslen, 7);
    assert_memory_equal(k.ns, "product", 7);
    assert_int_equal(k.restlen, 2);
    assert_memory_equal(k.rest, "42", 2);
    assert_false(k.flush);

    /* The namespace ends at the first ':'. */
    assert_true(keel__cache_key_split("products:?q=a:b", 15, &k));
    assert_int_equal(k.nslen, 8);
    assert_int_equal(k.restlen, 6);
    assert_false(k.flush);

    assert_true(keel__cache_key_split("products:*", 10, &k));
    assert_true(k.flush);
    assert_int_equal(k.nslen, 8);

    /* "a:b:*" is not a flush (only first-level namespaces are). */
    assert_true(keel__cache_key_split("a:b:*", 5, &k));
    assert_false(k.flush);

    assert_true(keel__cache_key_split("plain", 5, &k));
    assert_null(k.ns);
    assert_int_equal(k.restlen, 5);
    assert_false(k.flush);

    /* An empty namespace is a plain key. */
    assert_true(keel__cache_key_split(":*", 2, &k));
    assert_null(k.ns);
    assert_false(k.flush);

    assert_false(keel__cache_key_split("", 0, &k));
    assert_false(keel__cache_key_split("a\0b", 3, &k));
    memset(big, 'x', sizeof(big));
    assert_true(keel__cache_key_split(big, KEEL_CACHE_KEY_MAX, &k));
    assert_false(keel__cache_key_split(big, KEEL_CACHE_KEY_MAX + 1, &k));
}

static void test_l1_key(void **state)
{
    struct keel__cache_key k;
    char out[KEEL__CACHE_L1KEY_MAX], big[KEEL_CACHE_KEY_MAX];
    size_t n;

    (void)state;
    assert_true(keel__cache_key_split("products:?limit=10", 18, &k));
    n = keel__cache_l1_key(&k, 7, out);
    assert_int_equal(n, strlen("products:g7:?limit=10"));
    assert_memory_equal(out, "products:g7:?limit=10", n);
    n = keel__cache_l1_key(&k, 8, out);
    assert_memory_equal(out, "products:g8:?limit=10", n);

    assert_true(keel__cache_key_split("plain", 5, &k));
    n = keel__cache_l1_key(&k, 99, out);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "plain", 5);

    /* The longest key with the largest generation fits. */
    memset(big, 'x', sizeof(big));
    big[1] = ':';
    assert_true(keel__cache_key_split(big, sizeof(big), &k));
    n = keel__cache_l1_key(&k, UINT64_MAX, out);
    assert_int_equal(n, sizeof(big) + strlen("g18446744073709551615:"));
    assert_true(n <= KEEL__CACHE_L1KEY_MAX);
}

struct seen {
    char keys[64][KEEL_CACHE_KEY_MAX + 1];
    size_t lens[64];
    unsigned n;
};

static void collect(const char *key, size_t len, void *arg)
{
    struct seen *s = arg;

    assert_true(s->n < 64);
    assert_int_equal(strlen(key), len); /* NUL-terminated, no NUL inside */
    memcpy(s->keys[s->n], key, len + 1);
    s->lens[s->n++] = len;
}

static void test_round_trip(void **state)
{
    static const char *const keys[] = {
        "product:0190b8c4-7e1a-7c3e-9d2f-5a6b7c8d9e0f",
        "products:*",
        "products:?q=100% cotton&sort=-price",
        "weird:\x01\x7f\xff, \n%41",
        "x",
    };
    struct keel_buf b;
    struct seen s = {0};
    char id[KEEL__CACHE_ID_LEN + 1];
    uint64_t seq = 0;
    bool retire = true;
    unsigned n, i;

    (void)state;
    keel_buf_init(&b, KEEL__CACHE_MSG_MAX + 64);
    n = keel__cache_msg_encode(&b, ID, 42, false, keys, 5);
    assert_int_equal(n, 5);
    /* Plain ASCII text, as PostgreSQL NOTIFY needs. */
    for (i = 0; i < b.len; i++)
        assert_true((b.data[i] >= 0x20 && b.data[i] < 0x7f) || b.data[i] == '\n');
    assert_int_equal(keel__cache_msg_decode(b.data, b.len, id, &seq, &retire, collect, &s),
                     KEEL_OK);
    assert_string_equal(id, ID);
    assert_int_equal(seq, 42);
    assert_false(retire);
    assert_int_equal(s.n, 5);
    for (i = 0; i < 5; i++)
        assert_string_equal(s.keys[i], keys[i]);
    /* The retire flag survives the trip. */
    assert_int_equal(keel__cache_msg_encode(&b, ID, 43, true, keys, 1), 1);
    assert_int_equal(keel__cache_msg_decode(b.data, b.len, id, &seq, &retire, NULL, NULL), KEEL_OK);
    assert_true(retire);
    assert_int_equal(seq, 43);
    keel_buf_free(&b);
}

static void test_exact_format(void **state)
{
    static const char *const keys[] = {"a b", "%"};
    static const char want[] = "kc1 " ID " 7 r 0002\n5:a%20b,3:%25,";
    struct keel_buf b;

    (void)state;
    keel_buf_init(&b, KEEL__CACHE_MSG_MAX + 64);
    assert_int_equal(keel__cache_msg_encode(&b, ID, 7, true, keys, 2), 2);
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.data, want, b.len);
    keel_buf_free(&b);
}

/* Many long keys: split over messages below the limit, none lost. */
static void test_chunking(void **state)
{
    char store[100][KEEL_CACHE_KEY_MAX + 1];
    const char *keys[100];
    struct keel_buf b;
    unsigned first = 0, n, total = 0, msgs = 0, i;

    (void)state;
    for (i = 0; i < 100; i++) {
        memset(store[i], '\x80', KEEL_CACHE_KEY_MAX); /* 3 bytes each once escaped */
        snprintf(store[i], 8, "k%03u:", i);
        store[i][5] = '\x80';
        store[i][KEEL_CACHE_KEY_MAX] = '\0';
        keys[i] = store[i];
    }
    keel_buf_init(&b, KEEL__CACHE_MSG_MAX + 64);
    while (first < 100) {
        struct seen *s = calloc(1, sizeof(*s));
        char id[KEEL__CACHE_ID_LEN + 1];
        uint64_t seq;
        bool retire;

        n = keel__cache_msg_encode(&b, ID, msgs, false, keys + first, 100 - first);
        assert_true(n > 0);
        assert_true(b.len <= KEEL__CACHE_MSG_MAX);
        assert_int_equal(keel__cache_msg_decode(b.data, b.len, id, &seq, &retire, collect, s),
                         KEEL_OK);
        assert_int_equal(s->n, n);
        for (i = 0; i < n; i++)
            assert_string_equal(s->keys[i], keys[first + i]);
        free(s);
        first += n;
        total += n;
        msgs++;
    }
    assert_int_equal(total, 100);
    assert_true(msgs >= 9); /* 100 keys of ~600 escaped bytes, < 7000 per message */
    keel_buf_free(&b);
}

static int calls;

static void count_calls(const char *key, size_t len, void *arg)
{
    (void)key;
    (void)len;
    (void)arg;
    calls++;
}

static void test_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "kc1 ",
        "kc2 " ID " 1 k 0001\n1:a,",
        "kc1 0123456789abcdeg 1 k 0001\n1:a,", /* id not hex */
        "kc1 " ID "  1 k 0001\n1:a,",
        "kc1 " ID " x k 0001\n1:a,",
        "kc1 " ID " 1 0001\n1:a,",   /* no kind */
        "kc1 " ID " 1 x 0001\n1:a,", /* unknown kind */
        "kc1 " ID " 1 kk 0001\n1:a,",
        "kc1 " ID " 1 k 0000\n",            /* no keys */
        "kc1 " ID " 1 k 0002\n1:a,",        /* fewer items than counted */
        "kc1 " ID " 1 k 0001\n1:a,1:b,",    /* trailing bytes */
        "kc1 " ID " 1 k 0001\n2:a,",        /* length past the end */
        "kc1 " ID " 1 k 0001\n1:ab,",       /* no comma where the length ends */
        "kc1 " ID " 1 k 0001\n0:,",         /* empty key */
        "kc1 " ID " 1 k 0001\n3:%00,",      /* NUL */
        "kc1 " ID " 1 k 0001\n3:%4,",       /* short escape */
        "kc1 " ID " 1 k 0001\n3:%zz,",      /* bad escape */
        "kc1 " ID " 1 k 0001\n3:a b,",      /* unescaped space */
        "kc1 " ID " 1 k 0001\n:a,",         /* no length */
        "kc1 " ID " 1 k 0001\n99999999:a,", /* absurd length */
        "kc1 " ID " 1 k 0001 1:a,",
    };
    char id[KEEL__CACHE_ID_LEN + 1], big[KEEL__CACHE_MSG_MAX + 2], longkey[1024];
    uint64_t seq;
    bool retire;
    unsigned i;
    int n;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        calls = 0;
        assert_int_equal(
            keel__cache_msg_decode(bad[i], strlen(bad[i]), id, &seq, &retire, count_calls, NULL),
            KEEL_E_INVALID);
        assert_int_equal(calls, 0); /* nothing applied from a bad message */
    }
    /* A key longer than KEEL_CACHE_KEY_MAX is refused. */
    n = snprintf(longkey, sizeof(longkey), "kc1 " ID " 1 k 0001\n%d:", KEEL_CACHE_KEY_MAX + 1);
    memset(longkey + n, 'a', KEEL_CACHE_KEY_MAX + 1);
    longkey[n + KEEL_CACHE_KEY_MAX + 1] = ',';
    assert_int_equal(keel__cache_msg_decode(longkey, (size_t)n + KEEL_CACHE_KEY_MAX + 2, id, &seq,
                                            &retire, NULL, NULL),
                     KEEL_E_INVALID);
    /* ...and one of exactly KEEL_CACHE_KEY_MAX accepted. */
    longkey[n - 2] = '0'; /* "201:" -> "200:" */
    longkey[n + KEEL_CACHE_KEY_MAX] = ',';
    assert_int_equal(keel__cache_msg_decode(longkey, (size_t)n + KEEL_CACHE_KEY_MAX + 1, id, &seq,
                                            &retire, NULL, NULL),
                     KEEL_OK);
    /* Oversized messages are refused before parsing. */
    memset(big, 'a', sizeof(big));
    assert_int_equal(keel__cache_msg_decode(big, sizeof(big), id, &seq, &retire, NULL, NULL),
                     KEEL_E_INVALID);
    assert_int_equal(keel__cache_msg_decode(NULL, 0, id, &seq, &retire, NULL, NULL),
                     KEEL_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),      cmocka_unit_test(test_l1_key),
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_exact_format),
        cmocka_unit_test(test_chunking),   cmocka_unit_test(test_malformed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
