/*
 * router.c - routes as data, matched segment by segment.
 *
 * DESIGN: patterns are compiled once into arrays of segments. A match
 * splits the path into segments (without copying) and scans the compiled
 * routes linearly: Keel has tens of routes, and a linear scan over short
 * pre-split arrays is a few hundred nanoseconds with no allocation, which a
 * trie would not beat by enough to pay for its code. Parameter values are
 * the raw (still percent-encoded) segments; typed parameters are checked
 * here so a handler never sees a malformed id.
 */
#include "keel/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/uuid.h"

enum seg_kind { SEG_LIT, SEG_ANY, SEG_UUID, SEG_INT };

struct segment {
    enum seg_kind kind;
    struct keel_str text; /* literal text or parameter name */
};

struct compiled {
    const struct keel_route *route;
    char *label; /* the pattern without parameter types: "/orders/{id}" */
    unsigned nseg;
    struct segment seg[KEEL_ROUTER_MAX_SEGMENTS];
};

struct keel_router {
    struct compiled *routes;
    size_t n;
    size_t cap;
};

struct keel_router *keel_router_new(void)
{
    return keel_xcalloc(1, sizeof(struct keel_router));
}

void keel_router_free(struct keel_router *r)
{
    size_t i;

    if (!r)
        return;
    for (i = 0; i < r->n; i++)
        free(r->routes[i].label);
    free(r->routes);
    free(r);
}

static keel_status parse_param(const char *p, size_t len, struct segment *s)
{
    const char *colon;
    size_t nlen;

    if (len < 3 || p[len - 1] != '}')
        return KEEL_E_INVALID;
    p++;
    len -= 2;
    colon = memchr(p, ':', len);
    nlen = colon ? (size_t)(colon - p) : len;
    if (nlen == 0)
        return KEEL_E_INVALID;
    for (size_t i = 0; i < nlen; i++)
        if (!(p[i] == '_' || (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
              (p[i] >= '0' && p[i] <= '9')))
            return KEEL_E_INVALID;
    s->text = (struct keel_str){p, nlen};
    s->kind = SEG_ANY;
    if (colon) {
        struct keel_str type = {colon + 1, len - nlen - 1};

        if (keel_str_eq(type, "uuid"))
            s->kind = SEG_UUID;
        else if (keel_str_eq(type, "int"))
            s->kind = SEG_INT;
        else
            return KEEL_E_INVALID;
    }
    return KEEL_OK;
}

static keel_status compile(const char *pattern, struct compiled *c)
{
    const char *p = pattern, *end;
    unsigned nparams = 0;
    keel_status rc;

    if (*p != '/')
        return KEEL_E_INVALID;
    c->nseg = 0;
    if (p[1] == '\0')
        return KEEL_OK; /* "/" has no segments */
    while (*p == '/') {
        p++;
        end = strchr(p, '/');
        if (!end)
            end = p + strlen(p);
        if (end == p || c->nseg == KEEL_ROUTER_MAX_SEGMENTS)
            return KEEL_E_INVALID;
        struct segment *s = &c->seg[c->nseg++];
        if (*p == '{') {
            rc = parse_param(p, (size_t)(end - p), s);
            if (rc < 0 || ++nparams > KEEL_MAX_PARAMS)
                return KEEL_E_INVALID;
            for (unsigned k = 0; k + 1 < c->nseg; k++)
                if (c->seg[k].kind != SEG_LIT && c->seg[k].text.len == s->text.len &&
                    memcmp(c->seg[k].text.p, s->text.p, s->text.len) == 0)
                    return KEEL_E_INVALID; /* two parameters with one name */
        } else {
            if (memchr(p, '{', (size_t)(end - p)) || memchr(p, '}', (size_t)(end - p)))
                return KEEL_E_INVALID;
            s->kind = SEG_LIT;
            s->text = (struct keel_str){p, (size_t)(end - p)};
        }
        p = end;
    }
    return KEEL_OK;
}

/* Two patterns have the same shape when every segment is the same literal
 * or a parameter of the same type (names do not matter). */
static bool same_shape(const struct compiled *a, const struct compiled *b)
{
    unsigned i;

    if (a->nseg != b->nseg)
        return false;
    for (i = 0; i < a->nseg; i++) {
        if (a->seg[i].kind != b->seg[i].kind)
            return false;
        if (a->seg[i].kind == SEG_LIT &&
            (a->seg[i].text.len != b->seg[i].text.len ||
             memcmp(a->seg[i].text.p, b->seg[i].text.p, a->seg[i].text.len) != 0))
            return false;
    }
    return true;
}

/* Drops ":type" from parameters, for logs, metrics and OpenAPI paths. */
static char *make_label(const char *pattern)
{
    char *out = keel_xstrdup(pattern), *o = out;
    const char *p;
    bool in_param = false, skip = false;

    for (p = pattern; *p; p++) {
        if (*p == '{')
            in_param = true;
        else if (*p == ':' && in_param)
            skip = true;
        else if (*p == '}')
            in_param = skip = false;
        if (!skip)
            *o++ = *p;
    }
    *o = '\0';
    return out;
}

keel_status keel_router_add(struct keel_router *r, const struct keel_route *route)
{
    struct compiled c;
    size_t i;

    if (!route->pattern || !route->handler || (unsigned)route->method >= KEEL_HTTP_METHOD_COUNT)
        return KEEL_E_INVALID;
    /* Deny by default: an authenticated route must name its permission. */
    if (route->auth == KEEL_AUTH_REQUIRED && (!route->permission || !*route->permission))
        return KEEL_E_INVALID;
    c.route = route;
    if (compile(route->pattern, &c) < 0)
        return KEEL_E_INVALID;
    for (i = 0; i < r->n; i++)
        if (r->routes[i].route->method == route->method && same_shape(&r->routes[i], &c))
            return KEEL_E_CONFLICT;
    c.label = make_label(route->pattern);
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 32;
        r->routes = keel_xrealloc(r->routes, r->cap * sizeof(*r->routes));
    }
    r->routes[r->n++] = c;
    return KEEL_OK;
}

static bool all_digits(struct keel_str s)
{
    size_t i;

    if (s.len == 0 || s.len > 18)
        return false;
    for (i = 0; i < s.len; i++)
        if (s.p[i] < '0' || s.p[i] > '9')
            return false;
    return true;
}

/* Whether c matches the path segments. */
static bool matches(const struct compiled *c, const struct keel_str *segs, unsigned nseg)
{
    unsigned i;

    if (c->nseg != nseg)
        return false;
    for (i = 0; i < nseg; i++) {
        const struct segment *s = &c->seg[i];

        switch (s->kind) {
        case SEG_LIT:
            if (s->text.len != segs[i].len || memcmp(s->text.p, segs[i].p, s->text.len) != 0)
                return false;
            break;
        case SEG_UUID:
            if (!keel_uuid_valid(segs[i].p, segs[i].len))
                return false;
            break;
        case SEG_INT:
            if (!all_digits(segs[i]))
                return false;
            break;
        case SEG_ANY:
            break;
        }
    }
    return true;
}

static int rank(enum seg_kind k)
{
    return k == SEG_LIT ? 3 : k == SEG_ANY ? 1 : 2;
}

/* True when a is more specific than b: at the first segment where they
 * differ in kind, a literal beats a typed parameter beats {any}. */
static bool more_specific(const struct compiled *a, const struct compiled *b)
{
    unsigned i;

    if (!b)
        return true;
    for (i = 0; i < a->nseg; i++)
        if (rank(a->seg[i].kind) != rank(b->seg[i].kind))
            return rank(a->seg[i].kind) > rank(b->seg[i].kind);
    return false;
}

/* Splits "/a/b/c" into segments; false for a path Keel never routes
 * (relative, empty segment, too deep). */
static bool split(const char *path, size_t len, struct keel_str *segs, unsigned *nseg)
{
    size_t i = 1, start;

    *nseg = 0;
    if (len == 0 || path[0] != '/')
        return false;
    if (len == 1)
        return true;
    while (i <= len) {
        start = i;
        while (i < len && path[i] != '/')
            i++;
        if (i == start || *nseg == KEEL_ROUTER_MAX_SEGMENTS)
            return false;
        segs[(*nseg)++] = (struct keel_str){path + start, i - start};
        i++;
    }
    return true;
}

static void
fill_params(const struct compiled *c, const struct keel_str *segs, struct keel_match *out)
{
    unsigned i;

    out->nparams = 0;
    for (i = 0; i < c->nseg; i++) {
        if (c->seg[i].kind == SEG_LIT)
            continue;
        out->names[out->nparams] = c->seg[i].text;
        out->values[out->nparams] = segs[i];
        out->nparams++;
    }
}

void keel_router_match(const struct keel_router *r,
                       enum keel_method m,
                       const char *path,
                       size_t len,
                       struct keel_match *out)
{
    struct keel_str segs[KEEL_ROUTER_MAX_SEGMENTS];
    const struct compiled *best = NULL, *best_get = NULL;
    unsigned nseg, allow = 0;
    size_t i;

    memset(out, 0, offsetof(struct keel_match, names));
    out->miss = 404;
    if (!split(path, len, segs, &nseg))
        return;
    for (i = 0; i < r->n; i++) {
        const struct compiled *c = &r->routes[i];

        if (!matches(c, segs, nseg))
            continue;
        allow |= 1u << c->route->method;
        if (c->route->method == m && more_specific(c, best))
            best = c;
        else if (c->route->method == KEEL_HTTP_GET && more_specific(c, best_get))
            best_get = c;
    }
    if (allow & (1u << KEEL_HTTP_GET))
        allow |= 1u << KEEL_HTTP_HEAD;
    if (allow)
        allow |= 1u << KEEL_HTTP_OPTIONS;
    out->allow = allow;
    if (!best && m == KEEL_HTTP_HEAD && best_get)
        best = best_get;
    if (best) {
        out->route = best->route;
        out->label = best->label;
        out->miss = 0;
        fill_params(best, segs, out);
        return;
    }
    if (!allow)
        return;
    if (m == KEEL_HTTP_OPTIONS) {
        out->auto_options = true;
        out->miss = 0;
        return;
    }
    out->miss = 405;
}

void keel_router_allow_string(unsigned allow, char *out, size_t size)
{
    size_t n = 0;
    int m;

    out[0] = '\0';
    for (m = 0; m < KEEL_HTTP_METHOD_COUNT; m++) {
        if (!(allow & (1u << m)))
            continue;
        n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s", n ? ", " : "",
                              keel_http_method_name((enum keel_method)m));
        if (n >= size) {
            out[size - 1] = '\0';
            return;
        }
    }
}

void keel_router_each(const struct keel_router *r,
                      void (*fn)(const struct keel_route *, void *),
                      void *arg)
{
    size_t i;

    for (i = 0; i < r->n; i++)
        fn(r->routes[i].route, arg);
}
