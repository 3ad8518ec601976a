/*
 * config_parse.c - the value types of the configuration options: one parser
 * per type of options[] (config.c), and each type's JSON form.
 *
 * A parser checks one value's text (listen address, URL or URL list, rate,
 * CORS origins, seconds, integers, booleans, words) and, when it is good,
 * writes the typed field of struct keel_config. A bad value is reported
 * through keel__config_reject(), which says where the value came from and
 * quotes it unless it is secret; the parser then leaves the field as it
 * was, so the last good value stands. The parsers never see the loader's
 * state: what they need of a value travels in struct val (config_int.h).
 *
 * keel__config_json_value() is the inverse for keel_config_to_json(): it
 * spells each type as the environment would, secrets redacted.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/json.h"

#include "config_int.h"

/* ---------------------------------------------------------------- parsers */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Strict unsigned decimal: digits only, no sign, no spaces, no overflow. */
static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t n = 0;
    size_t i;

    if (len == 0)
        return false;
    for (i = 0; i < len; i++) {
        if (!is_digit(s[i]) || n > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return false;
        n = n * 10 + (uint64_t)(s[i] - '0');
    }
    *out = n;
    return true;
}

/* "12", "0.5", "1.25" seconds -> milliseconds; at most 3 decimals. */
static bool parse_seconds(const char *s, uint64_t *ms_out)
{
    uint64_t whole = 0, frac = 0;
    size_t nwhole = 0, nfrac = 0;

    for (; is_digit(*s); s++, nwhole++) {
        if (nwhole == 15) /* keeps whole * 1000 far from overflow */
            return false;
        whole = whole * 10 + (uint64_t)(*s - '0');
    }
    if (*s == '.') {
        for (s++; is_digit(*s); s++, nfrac++) {
            if (nfrac == 3)
                return false;
            frac = frac * 10 + (uint64_t)(*s - '0');
        }
        if (nfrac == 0)
            return false;
    }
    if (*s || nwhole == 0)
        return false;
    for (; nfrac < 3; nfrac++)
        frac *= 10;
    *ms_out = whole * 1000 + frac;
    return true;
}

/* Milliseconds as seconds, without trailing zeros: 500 -> "0.5". */
static void format_seconds(uint64_t ms, char *out, size_t n)
{
    int len = snprintf(out, n, "%" PRIu64 ".%03u", ms / 1000, (unsigned)(ms % 1000));

    while (len > 0 && out[len - 1] == '0')
        out[--len] = '\0';
    if (len > 0 && out[len - 1] == '.')
        out[--len] = '\0';
}

static bool has_control(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    }
    return false;
}

void keel__config_wipe_free(char *s, bool secret)
{
    if (s && secret)
        explicit_bzero(s, strlen(s));
    free(s);
}

/* Replaces *dst with a copy of s (NULL when s is empty). */
static void set_str(char **dst, const char *s, bool secret)
{
    keel__config_wipe_free(*dst, secret);
    *dst = *s ? keel_xstrdup(s) : NULL;
}

/* "a, b or c" from a NULL-terminated word list. */
static void join_words(const char *const *w, char *out, size_t n)
{
    size_t len = 0;

    out[0] = '\0';
    for (; *w && len < n; w++) {
        const char *sep = len == 0 ? "" : w[1] ? ", " : " or ";

        len += (size_t)snprintf(out + len, n - len, "%s%s", sep, *w);
    }
}

/* Whether s (after blanks) starts with one of o->words and has more. */
static bool starts_with_scheme(const struct opt *o, const char *s)
{
    const char *const *w;

    while (*s == ' ' || *s == '\t')
        s++;
    for (w = o->words; *w; w++) {
        if (strncasecmp(s, *w, strlen(*w)) == 0 && s[strlen(*w)])
            return true;
    }
    return false;
}

/* Checks one URL (a NUL-terminated string) of a T_URL or T_URLS option. */
static bool check_url(struct val *v, const char *url)
{
    char list[128];
    const char *p;

    for (p = url; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return keel__config_reject(v, NULL, "must not contain spaces or control characters");
    }
    if (starts_with_scheme(v->o, url))
        return true;
    join_words(v->o->words, list, sizeof(list));
    return keel__config_reject(v, NULL, "must start with %s", list);
}

/* T_STR and T_URL. */
static bool parse_str(struct val *v, void *field)
{
    if (!*v->text && (v->o->flags & F_NONEMPTY))
        return keel__config_reject(v, NULL, "must not be empty");
    if (v->o->type == T_URL && *v->text && !check_url(v, v->text))
        return false;
    /* A secret may be any bytes (a key read from a file); other text ends
     * up in logs and headers, where control characters do harm. */
    if (!(v->o->flags & F_SECRET) && has_control(v->text))
        return keel__config_reject(v, NULL, "must not contain control characters");
    set_str(field, v->text, v->o->flags & F_SECRET);
    return true;
}

void keel__config_list_release(const struct opt *o, void *field)
{
    struct keel_config_list *l = field;
    size_t i;

    for (i = 0; i < l->count; i++)
        keel__config_wipe_free(l->items[i], o->flags & F_SECRET);
    free(l->items);
    keel__config_wipe_free(l->raw, o->flags & F_SECRET);
    memset(l, 0, sizeof(*l));
}

/* Stores `n` heap strings as the list and joins them into `raw`. */
static void list_store(const struct opt *o, void *field, char **items, size_t n)
{
    struct keel_config_list *l = field;
    size_t i, len = 0;

    keel__config_list_release(o, field);
    if (n == 0) {
        free(items);
        return;
    }
    for (i = 0; i < n; i++)
        len += strlen(items[i]) + 1;
    l->raw = keel_xmalloc(len);
    l->raw[0] = '\0';
    for (i = 0; i < n; i++) {
        if (i)
            strcat(l->raw, ",");
        strcat(l->raw, items[i]);
    }
    l->items = items;
    l->count = n;
}

static void items_free(const struct opt *o, char **items, size_t n)
{
    while (n > 0)
        keel__config_wipe_free(items[--n], o->flags & F_SECRET);
    free(items);
}

static char *dup_trimmed(const char *s, size_t len)
{
    char *out;

    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    out = keel_xmalloc(len + 1);
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

/*
 * KEEL_DATABASE_REPLICAS. A libpq URI may itself hold commas (multi-host:
 * postgres://h1,h2/db), so the list is split only at a comma that starts a
 * new URI.
 */
static bool parse_urls(struct val *v, void *field)
{
    const char *start = v->text, *p;
    char **items;
    size_t n = 0;
    bool ok = true;

    if (!*v->text) {
        list_store(v->o, field, NULL, 0);
        return true;
    }
    /* Each entry after the first starts after a comma with a scheme, so
     * there are far fewer entries than len / 2 + 1. */
    items = keel_xcalloc(strlen(v->text) / 2 + 2, sizeof(*items));
    for (p = v->text;; p++) {
        if (*p && !(*p == ',' && starts_with_scheme(v->o, p + 1)))
            continue;
        items[n] = dup_trimmed(start, (size_t)(p - start));
        if (!*items[n] || items[n][strlen(items[n]) - 1] == ',')
            ok = keel__config_reject(v, NULL, "has an empty entry");
        else if (!check_url(v, items[n]))
            ok = false;
        n++;
        if (!*p)
            break;
        start = p + 1;
    }
    if (!ok) {
        items_free(v->o, items, n);
        return false;
    }
    list_store(v->o, field, items, n);
    return true;
}

/* A DNS name or an IPv4 literal (IPv6 literals are bracketed and checked
 * with inet_pton by the callers). */
static bool valid_host(const char *h, size_t len)
{
    char buf[16];
    struct in_addr a4;
    size_t i;
    bool numeric = true;

    if (len == 0 || len > 253 || h[0] == '-' || h[0] == '.')
        return false;
    for (i = 0; i < len; i++) {
        char c = h[i];

        if (!is_digit(c) && c != '.')
            numeric = false;
        if (!is_digit(c) && !is_alpha(c) && c != '-' && c != '.' && c != '_')
            return false;
    }
    if (!numeric)
        return true;
    /* All digits and dots: it must be a real dotted quad, not 999.1.1.1. */
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, h, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, &a4) == 1;
}

static bool valid_ipv6(const char *h, size_t len)
{
    char buf[64];
    struct in6_addr a6;

    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, h, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, &a6) == 1;
}

/* Splits "host:port" or "[v6]:port". On success *host and *hlen point into s
 * (without brackets), *port_s and *plen at the port text, which may be
 * absent (plen 0) when `port_required` is false. */
static const char *split_hostport(const char *s,
                                  size_t len,
                                  bool port_required,
                                  const char **host,
                                  size_t *hlen,
                                  const char **port_s,
                                  size_t *plen)
{
    const char *end = s + len, *colon;

    if (len > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', len);

        if (!rb || !valid_ipv6(s + 1, (size_t)(rb - s - 1)))
            return "has an invalid IPv6 address";
        *host = s + 1;
        *hlen = (size_t)(rb - s - 1);
        colon = rb + 1 < end ? rb + 1 : NULL;
        if (colon && *colon != ':')
            return "must have ':' after the bracketed IPv6 address";
    } else {
        colon = memrchr(s, ':', len);
        *host = s;
        *hlen = colon ? (size_t)(colon - s) : len;
        if (colon && memchr(s, ':', *hlen))
            return "needs brackets around an IPv6 address, e.g. [::1]:8080";
        if (*hlen == 0)
            return "has no host";
        if (!valid_host(*host, *hlen))
            return "has an invalid host name or address";
    }
    *port_s = colon ? colon + 1 : end;
    *plen = (size_t)(end - *port_s);
    if (!colon && port_required)
        return "must be HOST:PORT";
    if (colon && *plen == 0)
        return "has an empty port";
    return NULL;
}

static bool parse_addr(struct val *v, void *field)
{
    struct keel_config_addr *a = field;
    const char *host, *port_s, *why;
    size_t hlen, plen;
    uint64_t port;

    if (!*v->text && !v->o->def) { /* an optional address (KEEL_WORKER_LISTEN): none */
        free(a->host);
        a->host = NULL;
        a->port = 0;
        return true;
    }
    why = split_hostport(v->text, strlen(v->text), true, &host, &hlen, &port_s, &plen);
    if (why)
        return keel__config_reject(v, NULL, "%s", why);
    if (!parse_u64(port_s, plen, &port) || port > 65535)
        return keel__config_reject(v, NULL, "port must be an integer between 0 and 65535");
    free(a->host);
    a->host = keel_xmalloc(hlen + 1);
    memcpy(a->host, host, hlen);
    a->host[hlen] = '\0';
    a->port = (int)port;
    return true;
}

static const struct {
    const char *name;
    uint32_t seconds;
} periods[] = {
    /* The first spelling of each period is the one keel_config_to_json() writes. */
    {"s", 1},       {"sec", 1},     {"second", 1}, {"min", 60},
    {"minute", 60}, {"hour", 3600}, {"h", 3600},   {"day", 86400},
};

static bool parse_rate(struct val *v, void *field)
{
    struct keel_config_rate *r = field;
    const char *slash = strchr(v->text, '/');
    uint64_t count;
    size_t i;

    if (!slash || !parse_u64(v->text, (size_t)(slash - v->text), &count) || count < v->o->min ||
        count > v->o->max)
        return keel__config_reject(
            v, NULL, "must be COUNT/PERIOD with COUNT between %" PRIu64 " and %" PRIu64, v->o->min,
            v->o->max);
    for (i = 0; i < KEEL_ARRAY_LEN(periods); i++) {
        if (strcasecmp(slash + 1, periods[i].name) == 0) {
            r->count = (uint32_t)count;
            r->period_seconds = periods[i].seconds;
            return true;
        }
    }
    return keel__config_reject(v, NULL, "PERIOD must be s, sec, min, hour or day");
}

static const char *period_name(uint32_t seconds)
{
    size_t i;

    for (i = 0; i < KEEL_ARRAY_LEN(periods); i++) {
        if (periods[i].seconds == seconds)
            return periods[i].name;
    }
    return "s";
}

/* One CORS origin, exactly as a browser serializes it in the Origin header
 * (RFC 6454 section 6.2): lowercase, no path, no default port. Returns the
 * normalized heap string, or NULL with *why set. */
static char *parse_origin(const char *s, const char **why)
{
    size_t len = strlen(s), slen, hlen, plen, i;
    const char *p = s, *host, *port_s;
    uint64_t port = 0;
    char *out;

    *why = "must be * or scheme://host[:port]";
    if (strcmp(s, "*") == 0)
        return keel_xstrdup("*");
    if (!is_alpha(*p))
        return NULL;
    while (is_alpha(*p) || is_digit(*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    slen = (size_t)(p - s);
    if (strncmp(p, "://", 3) != 0)
        return NULL;
    p += 3;
    if (strcspn(p, "/?#") != strlen(p)) {
        *why = strcmp(p + strcspn(p, "/?#"), "/") == 0 ? "must not end with '/'"
                                                       : "must not have a path, query or fragment";
        return NULL;
    }
    if (strchr(p, '@')) {
        *why = "must not contain a user name";
        return NULL;
    }
    *why = split_hostport(p, len - (size_t)(p - s), false, &host, &hlen, &port_s, &plen);
    if (*why)
        return NULL;
    if (plen > 0 && (!parse_u64(port_s, plen, &port) || port == 0 || port > 65535)) {
        *why = "port must be an integer between 1 and 65535";
        return NULL;
    }
    if ((slen == 4 && strncasecmp(s, "http", 4) == 0 && port == 80) ||
        (slen == 5 && strncasecmp(s, "https", 5) == 0 && port == 443))
        port = 0; /* browsers leave the default port out */
    out = keel_xmalloc(len + 16);
    if (host != p) /* bracketed IPv6 */
        snprintf(out, len + 16, "%.*s://[%.*s]", (int)slen, s, (int)hlen, host);
    else
        snprintf(out, len + 16, "%.*s://%.*s", (int)slen, s, (int)hlen, host);
    if (port)
        snprintf(out + strlen(out), 8, ":%u", (unsigned)port);
    for (i = 0; out[i]; i++)
        out[i] = (char)(out[i] >= 'A' && out[i] <= 'Z' ? out[i] + 32 : out[i]);
    return out;
}

static bool parse_origins(struct val *v, void *field)
{
    const char *s = v->text, *comma, *why = "";
    char **items, *item;
    size_t n = 0;
    bool ok = true, any = false;

    v->cfg->cors_allow_any = false;
    if (!*s) {
        list_store(v->o, field, NULL, 0);
        return true;
    }
    items = keel_xcalloc(strlen(s) / 2 + 2, sizeof(*items)); /* entries are >= 1 byte */
    for (;;) {
        comma = s + strcspn(s, ",");
        item = dup_trimmed(s, (size_t)(comma - s));
        items[n] = *item ? parse_origin(item, &why) : NULL;
        if (!*item)
            ok = keel__config_reject(v, NULL, "has an empty entry");
        else if (!items[n])
            ok = keel__config_reject(v, item, "origin %s", why);
        else if (strcmp(items[n++], "*") == 0)
            any = true;
        free(item);
        if (!*comma)
            break;
        s = comma + 1;
    }
    if (ok && any && n > 1)
        ok = keel__config_reject(v, NULL, "cannot mix * with other origins");
    if (!ok) {
        items_free(v->o, items, n);
        return false;
    }
    list_store(v->o, field, items, n);
    v->cfg->cors_allow_any = any;
    return true;
}

static bool parse_enum(struct val *v, void *field)
{
    char list[128];
    int i;

    for (i = 0; v->o->words[i]; i++) {
        if (strcasecmp(v->text, v->o->words[i]) == 0) {
            *(int *)field = i;
            return true;
        }
    }
    join_words(v->o->words, list, sizeof(list));
    return keel__config_reject(v, NULL, "must be %s", list);
}

static const char *const true_words[] = {"1", "true", "yes", "on", NULL};
static const char *const false_words[] = {"0", "false", "no", "off", NULL};

int keel__config_bool_value(const char *s)
{
    size_t i;

    for (i = 0; true_words[i]; i++) {
        if (strcasecmp(s, true_words[i]) == 0)
            return 1;
        if (strcasecmp(s, false_words[i]) == 0)
            return 0;
    }
    return -1;
}

static bool parse_bool(struct val *v, void *field)
{
    int b = keel__config_bool_value(v->text);

    if (b < 0)
        return keel__config_reject(v, NULL, "must be true or false (also 1/0, yes/no, on/off)");
    *(bool *)field = b;
    return true;
}

static bool parse_uint(struct val *v, void *field)
{
    const struct opt *o = v->o;
    uint64_t n;

    if ((o->flags & F_AUTO_CPUS) && strcasecmp(v->text, "auto") == 0) {
        n = keel_cpu_count();
        n = n < o->min ? o->min : n > o->max ? o->max : n;
    } else if (!parse_u64(v->text, strlen(v->text), &n) || n < o->min || n > o->max) {
        return keel__config_reject(v, NULL,
                                   "must be an integer between %" PRIu64 " and %" PRIu64 "%s",
                                   o->min, o->max, (o->flags & F_AUTO_CPUS) ? " or auto" : "");
    }
    if (o->type == T_U32)
        *(uint32_t *)field = (uint32_t)n;
    else
        *(uint64_t *)field = n;
    return true;
}

static bool parse_ms(struct val *v, void *field)
{
    char lo[32], hi[32];
    uint64_t ms;

    if (!parse_seconds(v->text, &ms) || ms < v->o->min || ms > v->o->max) {
        format_seconds(v->o->min, lo, sizeof(lo));
        format_seconds(v->o->max, hi, sizeof(hi));
        return keel__config_reject(
            v, NULL, "must be a number of seconds between %s and %s (at most 3 decimals)", lo, hi);
    }
    *(uint64_t *)field = ms;
    return true;
}

/* ------------------------------------------------------------ JSON output */

static void json_secret_or(struct keel_json *j, const struct opt *o, const char *s)
{
    if (!s)
        keel_json_null(j);
    else if (o->flags & F_SECRET)
        keel_json_str(j, "[redacted]");
    else
        keel_json_str(j, s);
}

void keel__config_json_value(struct keel_json *j, const struct opt *o, const void *field)
{
    char buf[320];

    switch (o->type) {
    case T_STR:
    case T_URL:
        json_secret_or(j, o, *(char *const *)field);
        break;
    case T_URLS:
    case T_ORIGINS:
        json_secret_or(j, o, ((const struct keel_config_list *)field)->raw);
        break;
    case T_ENUM:
        keel_json_str(j, o->words[*(const int *)field]);
        break;
    case T_BOOL:
        keel_json_bool(j, *(const bool *)field);
        break;
    case T_U32:
        keel_json_uint(j, *(const uint32_t *)field);
        break;
    case T_U64:
        keel_json_uint(j, *(const uint64_t *)field);
        break;
    case T_MS:
        format_seconds(*(const uint64_t *)field, buf, sizeof(buf));
        keel_json_raw(j, buf, strlen(buf));
        break;
    case T_ADDR: {
        const struct keel_config_addr *a = field;
        bool v6 = a->host && strchr(a->host, ':');

        snprintf(buf, sizeof(buf), "%s%s%s:%d", v6 ? "[" : "", a->host ? a->host : "",
                 v6 ? "]" : "", a->port);
        keel_json_str(j, buf);
        break;
    }
    case T_RATE: {
        const struct keel_config_rate *r = field;

        snprintf(buf, sizeof(buf), "%" PRIu32 "/%s", r->count, period_name(r->period_seconds));
        keel_json_str(j, buf);
        break;
    }
    }
}

/* ------------------------------------------------------------- type table */

bool (*const keel__config_parsers[])(struct val *, void *) = {
    [T_STR] = parse_str,   [T_URL] = parse_str,         [T_URLS] = parse_urls,
    [T_ENUM] = parse_enum, [T_BOOL] = parse_bool,       [T_U32] = parse_uint,
    [T_U64] = parse_uint,  [T_MS] = parse_ms,           [T_ADDR] = parse_addr,
    [T_RATE] = parse_rate, [T_ORIGINS] = parse_origins,
};
