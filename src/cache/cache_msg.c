/*
 * cache_msg.c - the cache's pure helpers (src/cache/cache_int.h): splitting
 * a key into namespace and rest, building L1 keys with a namespace
 * generation, and encoding and decoding invalidation messages.
 *
 * DESIGN: messages travel through Redis pub/sub and PostgreSQL NOTIFY, so
 * one format must suit both: ASCII text (NOTIFY payloads are text in the
 * database's encoding), under 8000 bytes, and safe for any key bytes. Keys
 * are length-prefixed (no separator can be forged by a key) and escaped
 * (no control or non-ASCII byte reaches PostgreSQL). Nothing here has
 * state or locks, so tests/unit/test_cache.c covers it directly.
 */
#include <stdio.h>
#include <string.h>

#include "cache/cache_int.h"

#define MAGIC "kc1 "

bool keel__cache_key_split(const char *key, size_t len, struct keel__cache_key *out)
{
    const char *colon;

    memset(out, 0, sizeof(*out));
    if (len == 0 || len > KEEL_CACHE_KEY_MAX || memchr(key, '\0', len))
        return false;
    out->key = key;
    out->len = len;
    out->rest = key;
    out->restlen = len;
    colon = memchr(key, ':', len);
    if (!colon || colon == key)
        return true; /* no namespace (":x" has an empty one: a plain key) */
    out->ns = key;
    out->nslen = (size_t)(colon - key);
    out->rest = colon + 1;
    out->restlen = len - out->nslen - 1;
    out->flush = out->restlen == 1 && out->rest[0] == '*';
    return true;
}

size_t keel__cache_l1_key(const struct keel__cache_key *k, uint64_t gen, char *out)
{
    int n;

    if (!k->ns) {
        memcpy(out, k->key, k->len);
        return k->len;
    }
    /* The generation is digits between ':g' and ':', and a namespace has
     * no ':', so "<ns>:g<gen>:" can only be read one way. */
    n = snprintf(out, KEEL__CACHE_L1KEY_MAX, "%.*s:g%llu:", (int)k->nslen, k->ns,
                 (unsigned long long)gen);
    memcpy(out + n, k->rest, k->restlen);
    return (size_t)n + k->restlen;
}

/* ------------------------------------------------------------ messages */

static bool plain(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '%';
}

static size_t escaped_len(const char *s, size_t len)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++)
        n += plain((unsigned char)s[i]) ? 1 : 3;
    return n;
}

static keel_status append_item(struct keel_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    char e[3] = {'%', 0, 0};
    keel_status rc = keel_buf_appendf(out, "%zu:", escaped_len(s, len));

    for (i = 0; i < len && rc == KEEL_OK; i++) {
        unsigned char c = (unsigned char)s[i];

        if (plain(c)) {
            rc = keel_buf_appendc(out, (char)c);
            continue;
        }
        e[1] = hex[c >> 4];
        e[2] = hex[c & 15];
        rc = keel_buf_append(out, e, 3);
    }
    return rc == KEEL_OK ? keel_buf_appendc(out, ',') : rc;
}

/* The header's count is written last, so it is reserved as a fixed-width
 * field ("%04u") and overwritten once the keys are in. */
unsigned keel__cache_msg_encode(struct keel_buf *out,
                                const char *id,
                                uint64_t seq,
                                bool retire,
                                const char *const *keys,
                                unsigned nkeys)
{
    size_t count_at, item;
    unsigned n;
    char count[8];

    keel_buf_reset(out);
    if (keel_buf_appendf(out, MAGIC "%s %llu %c ", id, (unsigned long long)seq,
                         retire ? 'r' : 'k') < 0)
        return 0;
    count_at = out->len;
    if (keel_buf_append(out, "0000\n", 5) < 0)
        return 0;
    for (n = 0; n < nkeys && n < 9999; n++) {
        size_t len = strlen(keys[n]);

        /* "<digits>:" + escaped + "," */
        item = 4 + escaped_len(keys[n], len) + 1;
        if (n > 0 && out->len + item > KEEL__CACHE_MSG_MAX)
            break;
        if (append_item(out, keys[n], len) < 0)
            return 0;
    }
    snprintf(count, sizeof(count), "%04u", n);
    memcpy(out->data + count_at, count, 4);
    return n;
}

/* Reads a decimal number of at most `maxdigits` digits ending at `end`
 * (which must follow). Returns the position after `end`, or NULL. */
static const char *
read_num(const char *p, const char *lim, unsigned maxdigits, char end, unsigned long long *v)
{
    unsigned d = 0;

    *v = 0;
    while (p < lim && *p >= '0' && *p <= '9' && d < maxdigits) {
        *v = *v * 10 + (unsigned)(*p - '0');
        p++;
        d++;
    }
    if (d == 0 || p >= lim || *p != end)
        return NULL;
    return p + 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes the escaped item p[0..n) into out; returns its length, or
 * (size_t)-1 when it is malformed or too long for a key. */
static size_t unescape(const char *p, size_t n, char out[KEEL_CACHE_KEY_MAX + 1])
{
    size_t i, o = 0;
    int hi, lo;

    for (i = 0; i < n; i++) {
        if (o == KEEL_CACHE_KEY_MAX)
            return (size_t)-1;
        if (p[i] != '%') {
            if (!plain((unsigned char)p[i]))
                return (size_t)-1;
            out[o++] = p[i];
            continue;
        }
        hi = i + 2 < n ? hexval(p[i + 1]) : -1;
        lo = hi >= 0 ? hexval(p[i + 2]) : -1;
        if (lo < 0 || (hi == 0 && lo == 0))
            return (size_t)-1;
        out[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    out[o] = '\0';
    return o;
}

static const char *read_header(const char *p,
                               const char *lim,
                               char id_out[KEEL__CACHE_ID_LEN + 1],
                               uint64_t *seq_out,
                               bool *retire_out,
                               unsigned long long *count)
{
    unsigned long long seq;
    size_t i;

    if ((size_t)(lim - p) < sizeof(MAGIC) - 1 + KEEL__CACHE_ID_LEN + 1 ||
        memcmp(p, MAGIC, sizeof(MAGIC) - 1) != 0)
        return NULL;
    p += sizeof(MAGIC) - 1;
    for (i = 0; i < KEEL__CACHE_ID_LEN; i++)
        if (hexval(p[i]) < 0)
            return NULL;
    memcpy(id_out, p, KEEL__CACHE_ID_LEN);
    id_out[KEEL__CACHE_ID_LEN] = '\0';
    p += KEEL__CACHE_ID_LEN;
    if (*p++ != ' ')
        return NULL;
    p = read_num(p, lim, 20, ' ', &seq);
    if (!p || lim - p < 2 || (p[0] != 'k' && p[0] != 'r') || p[1] != ' ')
        return NULL;
    *seq_out = seq;
    *retire_out = p[0] == 'r';
    return read_num(p + 2, lim, 4, '\n', count);
}

/* One pass over the items: checks them all (fn NULL) or decodes them. */
static keel_status
walk(const char *p, const char *lim, unsigned long long count, keel__cache_key_fn fn, void *arg)
{
    char key[KEEL_CACHE_KEY_MAX + 1];
    unsigned long long n, i;
    size_t klen;

    for (i = 0; i < count; i++) {
        p = read_num(p, lim, 5, ':', &n);
        if (!p || n >= (unsigned long long)(lim - p) || p[n] != ',')
            return KEEL_E_INVALID;
        klen = unescape(p, (size_t)n, key);
        if (klen == (size_t)-1 || klen == 0)
            return KEEL_E_INVALID;
        if (fn)
            fn(key, klen, arg);
        p += n + 1;
    }
    return p == lim ? KEEL_OK : KEEL_E_INVALID;
}

keel_status keel__cache_msg_decode(const char *msg,
                                   size_t len,
                                   char id_out[KEEL__CACHE_ID_LEN + 1],
                                   uint64_t *seq_out,
                                   bool *retire_out,
                                   keel__cache_key_fn fn,
                                   void *arg)
{
    const char *lim = msg + len, *p;
    unsigned long long count;

    if (!msg || len > KEEL__CACHE_MSG_MAX)
        return KEEL_E_INVALID;
    p = read_header(msg, lim, id_out, seq_out, retire_out, &count);
    if (!p || count == 0 || walk(p, lim, count, NULL, NULL) < 0)
        return KEEL_E_INVALID;
    return fn ? walk(p, lim, count, fn, arg) : KEEL_OK;
}
