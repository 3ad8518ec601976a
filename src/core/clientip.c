/*
 * clientip.c - the trusted-proxy list and client address resolution
 * (include/keel/clientip.h, docs/internals/clientip.md).
 *
 * DESIGN: X-Forwarded-For is a list each proxy appends its peer to, so only
 * the right end of it was written by hops we know; everything further left
 * is whatever the client sent. We therefore walk it from the right, the way
 * nginx's realip module with real_ip_recursive does, and believe one more
 * element only after stepping over a proxy we trust. The walk goes backwards
 * through the raw header bytes instead of splitting the list first: that
 * needs no allocation, never reads bytes left of where it stops (a
 * malformed element ends the walk, so nothing beyond it can matter), and
 * bounds the work by KEEL_XFF_MAX_ELEMENTS * KEEL_XFF_MAX_ELEMENT_LEN bytes
 * however long the header is. Addresses are parsed only by inet_pton; this
 * file handles the syntax around them (CIDR suffixes, ports, brackets).
 * IPv4-mapped IPv6 addresses are folded to IPv4 at every entry point (list,
 * peer, header), so a dual-stack socket and an IPv4 entry agree. The RFC
 * 7239 Forwarded header is deliberately not read: see the internals doc.
 */
#include "keel/clientip.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* An address after IPv4-mapped folding. */
struct ipaddr {
    int family;
    unsigned char a[16];
};

/* Longest text inet_pton can accept, plus NUL. */
#define ADDR_TEXT_MAX INET6_ADDRSTRLEN

/* How much of an offending list entry an error message quotes. */
#define ERR_ENTRY_MAX 64

#define STR_(x) #x
#define STR(x)  STR_(x)

/* ------------------------------------------------------------------------ */
/* Addresses                                                                */
/* ------------------------------------------------------------------------ */

static const unsigned char v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_v4mapped(const unsigned char a[16])
{
    return memcmp(a, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0;
}

/* Folds ::ffff:a.b.c.d into AF_INET a.b.c.d; anything else is unchanged. */
static void fold_v4mapped(struct ipaddr *ip)
{
    unsigned char v4[4];

    if (ip->family != AF_INET6 || !is_v4mapped(ip->a))
        return;
    memcpy(v4, ip->a + 12, 4);
    memset(ip->a, 0, sizeof(ip->a));
    memcpy(ip->a, v4, 4);
    ip->family = AF_INET;
}

/* inet_pton on a counted string. family is AF_INET or AF_INET6. */
static bool pton(int family, const char *s, size_t len, struct ipaddr *ip)
{
    char buf[ADDR_TEXT_MAX];

    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(ip, 0, sizeof(*ip));
    if (inet_pton(family, buf, ip->a) != 1)
        return false;
    ip->family = family;
    fold_v4mapped(ip);
    return true;
}

static bool from_sockaddr(const struct sockaddr *sa, struct ipaddr *ip)
{
    memset(ip, 0, sizeof(*ip));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

        memcpy(ip->a, &sin->sin_addr, 4);
        ip->family = AF_INET;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

        memcpy(ip->a, &sin6->sin6_addr, 16);
        ip->family = AF_INET6;
        fold_v4mapped(ip);
        return true;
    }
    return false;
}

static unsigned family_bits(int family)
{
    return family == AF_INET ? 32 : 128;
}

/* True when the bits of a beyond prefix are all zero. */
static bool host_bits_zero(const unsigned char *a, unsigned prefix, unsigned bits)
{
    unsigned i;

    for (i = prefix; i < bits; i++)
        if (a[i / 8] & (0x80u >> (i % 8)))
            return false;
    return true;
}

static bool in_range(const struct keel_cidr *c, const struct ipaddr *ip)
{
    unsigned whole = c->prefix / 8, rest = c->prefix % 8;
    unsigned char mask;

    if (c->family != ip->family)
        return false;
    if (memcmp(c->addr, ip->a, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    mask = (unsigned char)(0xffu << (8 - rest));
    return (c->addr[whole] & mask) == (ip->a[whole] & mask);
}

static bool trusted(const struct keel_proxies *p, const struct ipaddr *ip)
{
    unsigned i;

    if (!p)
        return false;
    for (i = 0; i < p->n && i < KEEL_PROXIES_MAX; i++)
        if (in_range(&p->e[i], ip))
            return true;
    return false;
}

bool keel_proxies_trusted(const struct keel_proxies *p, const struct sockaddr *sa)
{
    struct ipaddr ip;

    if (!p || !sa || !from_sockaddr(sa, &ip))
        return false;
    return trusted(p, &ip);
}

/* ------------------------------------------------------------------------ */
/* The trusted-proxy list                                                   */
/* ------------------------------------------------------------------------ */

static bool is_list_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "0".."128" without sign or leading zeros, at most max. */
static bool parse_prefix(const char *s, size_t len, unsigned max, unsigned *out)
{
    unsigned v = 0;
    size_t i;

    if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
        return false;
    for (i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* Parses one trimmed, non-empty entry. Returns NULL or why it is invalid. */
static const char *parse_entry(const char *s, size_t len, struct keel_cidr *out)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    int family = memchr(s, ':', alen) ? AF_INET6 : AF_INET;
    unsigned prefix;
    struct ipaddr ip;
    bool folded;

    if (!pton(family, s, alen, &ip))
        return "not an IP address";
    /* pton folded ::ffff:a.b.c.d to IPv4; its prefix was written for IPv6. */
    folded = family == AF_INET6 && ip.family == AF_INET;
    prefix = family_bits(family);
    if (slash && !parse_prefix(slash + 1, len - alen - 1, family_bits(family), &prefix))
        return "bad prefix length";
    if (folded) {
        if (prefix < 96)
            return "IPv4-mapped range must be /96 or longer";
        prefix -= 96;
    }
    if (!host_bits_zero(ip.a, prefix, family_bits(ip.family)))
        return "host bits set beyond the prefix";
    memset(out, 0, sizeof(*out));
    out->family = ip.family;
    out->prefix = prefix;
    memcpy(out->addr, ip.a, sizeof(out->addr));
    return NULL;
}

/* Writes a message quoting the entry, with control bytes made harmless. */
static void set_err(char *err, size_t errlen, const char *entry, size_t len, const char *why)
{
    size_t i;
    int n;

    if (!err || errlen == 0)
        return;
    n = snprintf(err, errlen, "trusted proxies: invalid entry \"%.*s%s\": %s",
                 (int)(len > ERR_ENTRY_MAX ? ERR_ENTRY_MAX : len), entry,
                 len > ERR_ENTRY_MAX ? "..." : "", why);
    if (n < 0)
        err[0] = '\0';
    for (i = 0; err[i]; i++)
        if ((unsigned char)err[i] < 0x20 || (unsigned char)err[i] >= 0x7f)
            err[i] = '?';
}

keel_status keel_proxies_parse(const char *list, struct keel_proxies *out, char *err, size_t errlen)
{
    const char *s = list ? list : "";
    const char *comma, *end;
    const char *why;

    KEEL_ASSERT(out);
    out->n = 0;
    if (err && errlen > 0)
        err[0] = '\0';
    while (*s && is_list_space(*s))
        s++;
    if (!*s)
        return KEEL_OK;
    for (;;) {
        comma = strchr(s, ',');
        end = comma ? comma : s + strlen(s);
        while (s < end && is_list_space(*s))
            s++;
        while (end > s && is_list_space(end[-1]))
            end--;
        if (end == s)
            why = "empty entry";
        else if (out->n == KEEL_PROXIES_MAX)
            why = "too many entries (the limit is " STR(KEEL_PROXIES_MAX) ")";
        else
            why = parse_entry(s, (size_t)(end - s), &out->e[out->n]);
        if (why) {
            set_err(err, errlen, s, (size_t)(end - s), why);
            memset(out, 0, sizeof(*out));
            return KEEL_E_INVALID;
        }
        out->n++;
        if (!comma)
            return KEEL_OK;
        s = comma + 1;
    }
}

/* ------------------------------------------------------------------------ */
/* X-Forwarded-For                                                          */
/* ------------------------------------------------------------------------ */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* ":port" with 1-5 digits, or nothing. The port is dropped, not checked
 * against 65535: it says nothing about who the client is. */
static bool port_suffix_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0)
        return true;
    if (s[0] != ':' || len < 2 || len > 6)
        return false;
    for (i = 1; i < len; i++)
        if (!is_digit(s[i]))
            return false;
    return true;
}

/* Parses one trimmed, non-empty X-Forwarded-For element. */
static bool parse_element(const char *s, size_t len, struct ipaddr *ip)
{
    const char *close, *colon;
    size_t i, ncolons = 0;

    if (s[0] == '[') {
        close = memchr(s, ']', len);
        if (!close || !port_suffix_ok(close + 1, len - (size_t)(close + 1 - s)))
            return false;
        return pton(AF_INET6, s + 1, (size_t)(close - s - 1), ip);
    }
    colon = memchr(s, ':', len);
    if (!colon)
        return pton(AF_INET, s, len, ip);
    for (i = 0; i < len; i++)
        ncolons += s[i] == ':';
    if (ncolons == 1) {
        /* Exactly one colon: only "a.b.c.d:port" fits; "::" needs two. */
        if (!port_suffix_ok(colon, len - (size_t)(colon - s)))
            return false;
        return pton(AF_INET, s, (size_t)(colon - s), ip);
    }
    return pton(AF_INET6, s, len, ip);
}

/* The state of one right-to-left walk across all header lines. */
struct xff_walk {
    const struct keel_proxies *p;
    unsigned examined; /* elements looked at, empty ones included */
    bool have_last;    /* last holds an address the walk accepted */
    struct ipaddr last;
};

enum step { STEP_NEXT, STEP_FOUND, STEP_STOP };

/* Examines one element (untrimmed bytes between commas). */
static enum step examine(struct xff_walk *w, const char *s, size_t len)
{
    struct ipaddr ip;

    if (w->examined == KEEL_XFF_MAX_ELEMENTS)
        return STEP_STOP;
    w->examined++;
    while (len > 0 && is_ows(s[0])) {
        s++;
        len--;
    }
    while (len > 0 && is_ows(s[len - 1]))
        len--;
    if (len == 0)
        return STEP_NEXT; /* RFC 9110 5.6.1: empty list elements are ignored. */
    if (!parse_element(s, len, &ip))
        return STEP_STOP;
    w->last = ip;
    w->have_last = true;
    return trusted(w->p, &ip) ? STEP_NEXT : STEP_FOUND;
}

/* Walks one header line from its right end. Scanning back for a comma is
 * capped at KEEL_XFF_MAX_ELEMENT_LEN bytes, so a megabyte of spaces costs
 * no more than one long element does: it is malformed and ends the walk. */
static enum step walk_value(struct xff_walk *w, struct keel_str v)
{
    size_t end = v.len, start, scanned;
    enum step st;

    for (;;) {
        start = end;
        scanned = 0;
        while (start > 0 && v.p[start - 1] != ',') {
            if (++scanned > KEEL_XFF_MAX_ELEMENT_LEN)
                return STEP_STOP;
            start--;
        }
        st = examine(w, v.p + start, end - start);
        if (st != STEP_NEXT || start == 0)
            return st;
        end = start - 1;
    }
}

static void fill(struct keel_clientip *out, const struct ipaddr *ip, bool forwarded)
{
    out->family = ip->family;
    memcpy(out->addr, ip->a, sizeof(out->addr));
    out->forwarded = forwarded;
    if (!inet_ntop(ip->family, ip->a, out->text, sizeof(out->text)))
        out->text[0] = '\0'; /* Cannot happen: the buffer fits any address. */
}

keel_status keel_clientip_resolve(const struct keel_proxies *p,
                                  const struct sockaddr_storage *peer,
                                  const struct keel_str *xff,
                                  unsigned nxff,
                                  struct keel_clientip *out)
{
    struct xff_walk w = {.p = p};
    struct ipaddr peer_ip;
    enum step st = STEP_NEXT;
    unsigned i;

    KEEL_ASSERT(peer && out);
    memset(out, 0, sizeof(*out));
    if (!from_sockaddr((const struct sockaddr *)(const void *)peer, &peer_ip))
        return KEEL_E_INVALID;
    if (!trusted(p, &peer_ip) || !xff) {
        fill(out, &peer_ip, false);
        return KEEL_OK;
    }
    for (i = nxff; i > 0 && st == STEP_NEXT; i--)
        st = walk_value(&w, xff[i - 1]);
    if (w.have_last)
        fill(out, &w.last, true);
    else
        fill(out, &peer_ip, false);
    return KEEL_OK;
}

size_t keel_clientip_key(const struct keel_clientip *ip,
                         unsigned v6_prefix,
                         unsigned char key[KEEL_CLIENTIP_KEY_LEN])
{
    unsigned i;

    KEEL_ASSERT(ip && key);
    memset(key, 0, KEEL_CLIENTIP_KEY_LEN);
    key[0] = ip->family == AF_INET6 ? 6 : 4;
    memcpy(key + 1, ip->addr, ip->family == AF_INET6 ? 16 : 4);
    if (ip->family == AF_INET6)
        for (i = v6_prefix; i < 128; i++)
            key[1 + i / 8] &= (unsigned char)~(0x80u >> (i % 8));
    return KEEL_CLIENTIP_KEY_LEN;
}
