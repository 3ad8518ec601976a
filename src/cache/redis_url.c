/*
 * redis_url.c - parses KEEL_REDIS_URL into a struct target: where Redis is
 * and how to log in, for the client (redis.c) and the readiness probe
 * (redis_probe.c). Accepted forms:
 *
 *   redis://[[user]:password@]host[:port][/db]   host may be [IPv6]
 *   unix://[[user]:password@]/path/to/socket[?db=N]
 *
 * The user and password may be percent-encoded (a password holding '@' or
 * ':'); a decoded NUL is refused. The reasons a URL is refused never quote
 * the URL, which may hold a password, and the password is wiped when the
 * target is freed. rediss:// is refused: hiredis 0.14 has no TLS.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "keel/core.h"

#include "redis_int.h"

void keel__redis_target_free(struct target *t)
{
    if (t->password)
        explicit_bzero(t->password, strlen(t->password));
    free(t->host);
    free(t->user);
    free(t->password);
    memset(t, 0, sizeof(*t));
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)(ch | 0x20);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* A heap copy of p[0..n) with %XX decoded; NULL on a bad escape or NUL. */
static char *pct_decode(const char *p, size_t n)
{
    char *out = keel_xmalloc(n + 1);
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        int hi, lo;

        if (p[i] != '%') {
            out[o++] = p[i];
            continue;
        }
        hi = i + 2 < n ? hexval(p[i + 1]) : -1;
        lo = hi >= 0 ? hexval(p[i + 2]) : -1;
        if (lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/* Parses a decimal number of at most 10 digits in [lo, hi] from p[0..n). */
static bool parse_num(const char *p, size_t n, long lo, long hi, long *out)
{
    long v = 0;
    size_t i;

    if (n == 0 || n > 10)
        return false;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* "user:password" or ":password" (the IANA redis URI form). */
static const char *parse_userinfo(struct target *t, const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);

    if (!colon)
        return "credentials must be user:password or :password";
    if (colon > p) {
        t->user = pct_decode(p, (size_t)(colon - p));
        if (!t->user)
            return "bad percent-encoding in the user";
    }
    t->password = pct_decode(colon + 1, n - (size_t)(colon - p) - 1);
    if (!t->password)
        return "bad percent-encoding in the password";
    return NULL;
}

static const char *parse_hostport(struct target *t, const char *p, size_t n)
{
    const char *end = p + n, *colon;
    long port = 6379;

    if (n && *p == '[') {
        const char *rb = memchr(p, ']', n);

        if (!rb || rb == p + 1)
            return "bad IPv6 address";
        t->host = strndup(p + 1, (size_t)(rb - p - 1));
        colon = rb + 1 < end ? rb + 1 : NULL;
        if (colon && *colon != ':')
            return "bad IPv6 address";
    } else {
        colon = memchr(p, ':', n);
        t->host = strndup(p, colon ? (size_t)(colon - p) : n);
    }
    if (!t->host)
        return "out of memory";
    if (!*t->host)
        return "no host";
    if (colon && !parse_num(colon + 1, (size_t)(end - colon - 1), 1, 65535, &port))
        return "bad port";
    t->port = (int)port;
    return NULL;
}

static const char *parse_redis_url(struct target *t, const char *rest)
{
    const char *slash = strchr(rest, '/');
    size_t alen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *at = memchr(rest, '@', alen), *why;

    if (memchr(rest, '?', alen) || memchr(rest, '#', alen))
        return "query strings are not supported in redis:// URLs";
    if (at) {
        why = parse_userinfo(t, rest, (size_t)(at - rest));
        if (why)
            return why;
        alen -= (size_t)(at + 1 - rest);
        rest = at + 1;
    }
    why = parse_hostport(t, rest, alen);
    if (why)
        return why;
    if (slash && slash[1] && !parse_num(slash + 1, strlen(slash + 1), 0, INT_MAX, &t->db))
        return "bad database number";
    return NULL;
}

static const char *parse_unix_url(struct target *t, const char *rest)
{
    const char *q, *why;

    if (*rest != '/') {
        const char *at = strchr(rest, '@');

        if (!at || at[1] != '/')
            return "unix:// URLs need an absolute socket path";
        why = parse_userinfo(t, rest, (size_t)(at - rest));
        if (why)
            return why;
        rest = at + 1;
    }
    q = strchr(rest, '?');
    if (q && (strncmp(q, "?db=", 4) != 0 || !parse_num(q + 4, strlen(q + 4), 0, INT_MAX, &t->db)))
        return "the only query parameter is db=N";
    if ((q ? (size_t)(q - rest) : strlen(rest)) < 2)
        return "no socket path";
    t->host = q ? strndup(rest, (size_t)(q - rest)) : strdup(rest);
    if (!t->host)
        return "out of memory";
    t->is_unix = true;
    return NULL;
}

/* Parses url into *t (zeroed first). Returns NULL or why it is invalid;
 * the reason never contains the URL, which may hold a password. */
const char *keel__redis_parse_url(struct target *t, const char *url)
{
    const char *why;

    memset(t, 0, sizeof(*t));
    if (strncmp(url, "redis://", 8) == 0)
        why = parse_redis_url(t, url + 8);
    else if (strncmp(url, "unix://", 7) == 0)
        why = parse_unix_url(t, url + 7);
    else if (strncmp(url, "rediss://", 9) == 0)
        why = "rediss:// (TLS) is not supported: hiredis 0.14 has no TLS";
    else
        why = "the scheme must be redis:// or unix://";
    if (why)
        keel__redis_target_free(t);
    return why;
}
