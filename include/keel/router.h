/*
 * router.h - method + path pattern matching with typed parameters.
 *
 * The router is built once at start (keel_router_add from the modules'
 * static route tables) and is read-only afterwards, so every loop thread
 * matches against it without locks.
 */
#ifndef KEEL_ROUTER_H
#define KEEL_ROUTER_H

#include "keel/http.h"

#define KEEL_ROUTER_MAX_SEGMENTS 32

struct keel_router;

struct keel_match {
    const struct keel_route *route; /* NULL when nothing matched */
    const char *label;              /* pattern without types ("/orders/{id}"), for logs */
    int miss;                       /* 0 on a match, else 404 or 405 */
    bool auto_options;              /* OPTIONS on a path without an OPTIONS route */
    unsigned allow;                 /* bit per enum keel_method, when miss == 405 or auto_options */
    unsigned nparams;
    struct keel_str names[KEEL_MAX_PARAMS];
    struct keel_str values[KEEL_MAX_PARAMS];
};

struct keel_router *keel_router_new(void);
void keel_router_free(struct keel_router *r);

/* Adds a route; the route struct must outlive the router (static tables).
 * Returns KEEL_E_INVALID for a malformed pattern (not absolute, empty
 * segment, unknown parameter type, too many segments or parameters, or an
 * authenticated route without a permission: deny by default) and
 * KEEL_E_CONFLICT when the same method and pattern shape exist already. */
keel_status keel_router_add(struct keel_router *r, const struct keel_route *route);

/* Matches method and path (no query string). HEAD falls back to the GET
 * route; OPTIONS without an explicit route sets auto_options. Among
 * several matching patterns, the one with literals earliest wins
 * ("/products/search" over "/products/{id}"). */
void keel_router_match(const struct keel_router *r,
                       enum keel_method m,
                       const char *path,
                       size_t len,
                       struct keel_match *out);

/* Writes the Allow header value for a method mask ("GET, HEAD, OPTIONS"). */
void keel_router_allow_string(unsigned allow, char *out, size_t size);

/* Visits every route (for /openapi.json and tests). */
void keel_router_each(const struct keel_router *r,
                      void (*fn)(const struct keel_route *, void *),
                      void *arg);

#endif
