/*
 * http.h - what handlers and middleware see of an HTTP request: the request,
 * its response, routes as data, middleware phases, errors as problem+json,
 * and the way to run blocking work off the event loop.
 *
 * A request is a task (keel/task.h): the storage, cache and offload
 * calls below are the task APIs with the request's own callbacks.
 *
 * Ownership: everything reachable from a keel_request lives in its arena
 * (req->arena) or is released by a cleanup registered on it, and is gone
 * once the response is written and logged. Strings passed to the response
 * setters must live at least that long (literals or arena copies).
 */
#ifndef KEEL_HTTP_H
#define KEEL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/arena.h"
#include "keel/buf.h"
#include "keel/cache.h"
#include "keel/core.h"
#include "keel/db.h"
#include "keel/task.h"

struct json_object;
struct keel_conn;
struct keel_http_loop;
struct keel_request;

/* Methods Keel routes. Any other method token is answered 501. */
enum keel_method {
    KEEL_HTTP_GET,
    KEEL_HTTP_HEAD,
    KEEL_HTTP_POST,
    KEEL_HTTP_PUT,
    KEEL_HTTP_PATCH,
    KEEL_HTTP_DELETE,
    KEEL_HTTP_OPTIONS,
    KEEL_HTTP_METHOD_COUNT,
};

const char *keel_http_method_name(enum keel_method m);
const char *keel_http_reason(int status);

struct keel_header {
    struct keel_str name;
    struct keel_str value;
};

/* ------------------------------------------------------------- routes */

typedef keel_status (*keel_handler_fn)(struct keel_request *req);

enum keel_auth {
    KEEL_AUTH_NONE,     /* public */
    KEEL_AUTH_OPTIONAL, /* identity used when present */
    KEEL_AUTH_REQUIRED, /* 401 without a valid token */
};

enum keel_body {
    KEEL_BODY_NONE,          /* a body, if sent, is read and ignored */
    KEEL_BODY_JSON,          /* application/json required (415), parsed strictly (400) */
    KEEL_BODY_JSON_OPTIONAL, /* as KEEL_BODY_JSON when a body is sent; none: req->json NULL */
    KEEL_BODY_STREAM,        /* handed to the route's sink as it arrives, never buffered */
};

/* Where a streamed body goes (KEEL_BODY_STREAM): the bytes are handed
 * over as they are read, so memory does not grow with the body. Reading
 * starts after the access phases (authentication, rate limits): a refused
 * request's body is never read. */
struct keel_body_sink {
    /* Once, before the first byte (it may keep its state in
     * req->body_ctx and register cleanups on the arena: a request cut
     * half-way ends with the arena). An error answers the request with it
     * and the body is not read. May be NULL. */
    keel_status (*open)(struct keel_request *req);
    /* The next bytes of the body, valid during the call only. KEEL_OK:
     * more may come at once. KEEL_AGAIN: the bytes were taken, but the
     * sink is busy: reading pauses (backpressure) until the sink calls
     * keel_request_body_resume. An error (< 0, usually from keel_fail)
     * ends the request with that answer; the connection then closes. When
     * the body is complete the pipeline goes on (VALIDATE, the handler). */
    keel_status (*write)(struct keel_request *req, const char *p, size_t n);
};

struct keel_schema; /* keel/schema.h */

/* A route is data (STYLE.md section 1): modules declare static const tables.
 * Patterns are absolute paths whose segments are literals or parameters:
 * `{name}` (any non-empty segment), `{name:uuid}`, `{name:int}`. */
struct keel_route {
    enum keel_method method;
    const char *pattern;
    keel_handler_fn handler;
    enum keel_auth auth;
    const char *permission; /* "resource:action", NULL = none */
    const struct keel_schema *schema;
    enum keel_body body;
    size_t max_body;                   /* 0 = KEEL_MAX_BODY_BYTES */
    uint32_t flags;                    /* KEEL_ROUTE_* */
    const struct keel_body_sink *sink; /* KEEL_BODY_STREAM only */
};

#define KEEL_ROUTE_NO_LOG       0x1u /* no access log line (probes) */
#define KEEL_ROUTE_NO_COMPRESS  0x2u
#define KEEL_ROUTE_NO_RATELIMIT 0x4u /* probes and metrics: never rate limited */
#define KEEL_ROUTE_AUTH_LIMIT   0x8u /* credential endpoints: KEEL_RATE_LIMIT_AUTH as well */

#define KEEL_MAX_PARAMS 8

/* ----------------------------------------------------------- middleware */

/* The phases of SPEC section 2 / STYLE.md section 2, in order. The phases
 * up to ACCESS run as soon as the head of the request is in, before its
 * body is read; the BODY phase reads it (sending 100 Continue if the
 * client asked), so an unauthenticated or rate-limited request is answered
 * without its body. Handlers of
 * a phase run in registration order; each returns KEEL_OK (next phase),
 * KEEL_DECLINED (next handler in this phase), KEEL_DONE (response ready:
 * skip to the response), KEEL_AGAIN (parked: call keel_request_resume), or
 * an error (< 0), which the error sanitizer turns into problem+json. */
enum keel_phase {
    KEEL_PHASE_POST_READ, /* request id, trace context */
    KEEL_PHASE_PREACCESS, /* CORS preflight, body media type */
    KEEL_PHASE_ACCESS,    /* rate limit, authenticate, authorize */
    KEEL_PHASE_BODY,      /* the body is read first (or streamed), then parsed */
    KEEL_PHASE_VALIDATE,  /* body schema */
    KEEL_PHASE_CONTENT,   /* the route's handler */
    KEEL_PHASE_COUNT,
};

/* Response filters run on every response, errors included, before the head
 * is serialized (security headers, CORS headers, compression). Log
 * handlers run after the response is written (access log, metrics). */
typedef keel_status (*keel_phase_fn)(struct keel_request *req);
typedef void (*keel_filter_fn)(struct keel_request *req);
typedef void (*keel_log_fn)(struct keel_request *req);

/* Where a middleware sits in SPEC section 2's order: phase handlers run
 * by ascending order within their phase, and response filters and log
 * handlers by ascending order too (the error sanitizer first, so every
 * later filter sees the final response; compression last among filters,
 * so it compresses the final body). Core middleware is listed in
 * src/mw/registry.c; a module contributes its own (keel/module.h). */
enum keel_mw_order {
    KEEL_MW_ORDER_ERRORS = 100,
    KEEL_MW_ORDER_REQUEST_ID = 200,
    KEEL_MW_ORDER_SECURITY_HEADERS = 300,
    KEEL_MW_ORDER_CORS = 400,
    KEEL_MW_ORDER_BODY = 500,
    KEEL_MW_ORDER_RATELIMIT_IP = 600,
    KEEL_MW_ORDER_AUTHN = 700,
    KEEL_MW_ORDER_RATELIMIT_USER = 800,
    KEEL_MW_ORDER_AUTHZ = 900,
    KEEL_MW_ORDER_VALIDATE = 1000,
    KEEL_MW_ORDER_COMPRESS = 1100,
    KEEL_MW_ORDER_METRICS = 1200,
    KEEL_MW_ORDER_ACCESS_LOG = 1300,
};

struct keel_middleware {
    const char *name;
    keel_status (*init)(void); /* once at start, on the main thread; may be NULL */
    enum keel_phase phase;
    int order;             /* KEEL_MW_ORDER_* */
    keel_phase_fn handler; /* NULL: no phase handler */
    keel_filter_fn filter; /* NULL: no response filter */
    keel_log_fn log;       /* NULL: no log handler */
};

/* ------------------------------------------------------------- request */

struct keel_problem_field {
    const char *field;
    const char *message;
};

struct keel_response {
    int status;
    struct keel_header *headers;
    unsigned nheaders;
    unsigned cap;
    const char *content_type;
    struct keel_buf body; /* heap, freed with the request */
    bool keep_alive;      /* cleared to send Connection: close */
    /* Streaming bodies of a known length, produced as the socket drains. */
    uint64_t stream_len;
    keel_status (*stream_fn)(struct keel_request *req, struct keel_buf *out, size_t max);
    void *stream_ctx;
};

/* Slots for middleware state in a request (keel_request.mw_data). */
enum {
    KEEL_MW_SLOT_CORS,
    KEEL_MW_SLOT_AUTH,
    KEEL_MW_SLOT_RATELIMIT, /* src/mw/ratelimit.c: the decision behind the RateLimit headers */
    KEEL_MW_SLOT_CLIENTIP,  /* keel_request_client: the resolved client address */
    KEEL_MW_SLOT_COUNT,
};

struct keel_request {
    struct keel_task task; /* a request is a task; task.user_id is set by authentication */
    struct keel_conn *conn;
    struct keel_http_loop *loop;
    struct keel_arena *arena; /* == task.arena */
    const struct keel_config *cfg;

    enum keel_method method;
    const char *method_name;
    struct keel_str target; /* raw request-target */
    struct keel_str path;   /* target up to '?' */
    struct keel_str query;  /* after '?', without it */
    int http_minor;         /* HTTP/1.x */
    struct keel_header *headers;
    unsigned nheaders;
    char *body; /* NUL-terminated; NULL when there was no body */
    size_t body_len;
    struct keel_buf body_buf;
    size_t body_limit;        /* the route's (or KEEL_MAX_BODY_BYTES) */
    uint64_t body_received;   /* bytes of body so far (streamed ones too) */
    void *body_ctx;           /* a streamed body's sink state */
    struct json_object *json; /* parsed body for KEEL_BODY_JSON routes */

    const struct keel_route *route; /* NULL: no route matched */
    int route_miss;                 /* 404 or 405 when route is NULL */
    unsigned route_allow;           /* methods the path allows (405, OPTIONS) */
    bool route_auto_options;        /* OPTIONS answered by the server */
    const char *route_pattern;      /* label for logs/metrics */
    unsigned nparams;
    struct keel_str param_names[KEEL_MAX_PARAMS];
    struct keel_str params[KEEL_MAX_PARAMS];

    char request_id[129];
    uint64_t start_ns;

    struct keel_response resp;

    /* Error state, set by keel_fail / keel_errorf. */
    keel_status rc;
    int problem_status;
    const char *problem_slug;
    const char *problem_detail;  /* public */
    const char *internal_detail; /* logged, never sent */
    struct keel_problem_field *problem_fields;
    unsigned nproblem_fields;

    /* Pipeline position, for KEEL_AGAIN resumption. */
    enum keel_phase phase;
    unsigned mw_index;
    void *mw_data[KEEL_MW_SLOT_COUNT]; /* slots for middleware state, indexed by KEEL_MW_SLOT_* */
};

/* Returns the first header with this name (case-insensitive), or NULL. */
const struct keel_header *keel_request_header(const struct keel_request *req, const char *name);
/* Counts headers with this name. */
unsigned keel_request_header_count(const struct keel_request *req, const char *name);
/* Returns the route parameter `name`, or a {NULL, 0} string. */
struct keel_str keel_request_param(const struct keel_request *req, const char *name);
/* Finds query parameter `name` and percent-decodes its value into the
 * arena. Returns KEEL_OK, KEEL_E_NOT_FOUND, or KEEL_E_INVALID (bad escape,
 * NUL) / KEEL_E_NOMEM. */
keel_status keel_request_query(struct keel_request *req, const char *name, const char **out);

/* ------------------------------------------------------------ response */

/* Adds a response header; name and value must outlive the request.
 * Returns KEEL_E_NOMEM past the arena budget. */
keel_status keel_resp_header(struct keel_request *req, const char *name, const char *value);
/* Replaces (or adds) a header. */
keel_status keel_resp_set_header(struct keel_request *req, const char *name, const char *value);
const char *keel_resp_get_header(const struct keel_request *req, const char *name);
void keel_resp_remove_header(struct keel_request *req, const char *name);
/* Sets status and content type; the body is appended to req->resp.body. */
void keel_resp_start(struct keel_request *req, int status, const char *content_type);
/* Convenience: a complete JSON response from a NUL-terminated string. */
keel_status keel_resp_json_str(struct keel_request *req, int status, const char *json);

/* ------------------------------------------------------------- errors */

/* Records a problem+json answer (SPEC section 3) and returns the matching
 * negative status for the handler to return. `slug` may be NULL to use the
 * default slug of `status`; detail is public text (formatted into the
 * arena). */
keel_status keel_fail(struct keel_request *req, int status, const char *slug, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Adds a per-field validation error (slug validation-error, 400). */
keel_status keel_fail_field(struct keel_request *req, const char *field, const char *message);
/* Records an internal failure: the message goes to the log, the client gets
 * a generic problem for rc's HTTP status. Returns rc. */
keel_status keel_errorf(struct keel_request *req, keel_status rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------- waiting: work, storage, cache */

/* The request's side of the task APIs (keel/task.h, keel/db.h,
 * keel/cache.h): each runs as the task call with req->task and calls back
 * with the request. A done callback's return value continues the pipeline
 * as if the parked handler had returned it; the connection and request
 * stay alive until it has run, even if the client goes away (then the
 * callback is skipped and the request dropped). Each returns KEEL_AGAIN
 * (the caller returns it at once) or an error (nothing was started). */

typedef keel_status (*keel_resume_fn)(struct keel_request *req, void *arg);

/* Runs work(arg) on libuv's thread pool (blocking work that is not
 * storage), then done(req, arg). `work` must not touch req. */
keel_status
keel_request_offload(struct keel_request *req, keel_work_fn work, keel_resume_fn done, void *arg);

/* Storage (keel_db_run_task, keel_db_offload_task): the request's user is
 * the read-your-writes session. KEEL_E_UNAVAILABLE when no database is
 * configured (logged). */
typedef keel_status (*keel_db_done_fn)(struct keel_request *req, keel_status rc, void *arg);
keel_status keel_db_run(struct keel_request *req,
                        enum keel_db_intent intent,
                        keel_db_fn fn,
                        keel_db_done_fn done,
                        void *arg);
keel_status
keel_db_offload(struct keel_request *req, keel_db_work_fn work, keel_db_done_fn done, void *arg);

/* The read cache (keel_cache_get_task, keel_cache_invalidate_task): the
 * same contract with the request. keel_cache_get returns done's value
 * directly on an L1 hit; keel_cache_invalidate returns `then` when there
 * is nothing to wait for. */
typedef keel_status (*keel_cache_done_fn)(struct keel_request *req,
                                          keel_status rc,
                                          const char *value,
                                          size_t len,
                                          const char *source,
                                          void *arg);
keel_status keel_cache_get(struct keel_request *req,
                           const char *key,
                           uint32_t ttl_ms,
                           enum keel_db_intent intent,
                           keel_cache_load_fn load,
                           keel_cache_done_fn done,
                           void *arg);
keel_status keel_cache_invalidate(struct keel_request *req,
                                  const char *const *keys,
                                  unsigned nkeys,
                                  keel_status then);

/* Parks the request for an asynchronous callback that will come on its
 * loop (a Redis reply): keel_task_wait on req->task. Returns KEEL_AGAIN
 * for the handler to return. */
keel_status keel_request_park(struct keel_request *req);

/* Resumes a parked request, continuing the pipeline with rc as if the
 * parked handler had returned it. If the connection was cut meanwhile the
 * request is dropped (and must not be touched after this call). Loop
 * thread only.
 *
 * Holds are counted: every park and every offload holds the connection
 * once, and every resume (including the one at the end of an offload)
 * releases one. So a callback may start its next wait (park, offload,
 * keel_db_run) before the resume that ends the current one: compute rc
 * first, then resume with it (rc is then KEEL_AGAIN). */
void keel_request_resume(struct keel_request *req, keel_status rc);

/* The request of a task that is one (a request's own task, as the task
 * callbacks see it). */
struct keel_request *keel_task_request(struct keel_task *t);

/* A streamed body's sink is ready for more (it returned KEEL_AGAIN from
 * write): reading resumes. Loop thread; a no-op when reading is not
 * paused. */
void keel_request_body_resume(struct keel_request *req);

/* The socket peer's address (AF_INET or AF_INET6). Returns KEEL_OK, or
 * KEEL_E_INVALID when it is unknown (the socket is gone). */
struct sockaddr_storage;
keel_status keel_request_peer(const struct keel_request *req, struct sockaddr_storage *out);

/* The client's address (struct keel_clientip, keel/clientip.h): the socket
 * peer, or X-Forwarded-For as far as KEEL_TRUSTED_PROXIES vouches for it.
 * Resolved once per request and kept in its arena. Returns NULL when the
 * peer is unknown (the socket is gone) or memory ran out. Loop thread. */
struct keel_clientip;
const struct keel_clientip *keel_request_client(struct keel_request *req);

/* True when the request's connection was cut while it was parked: resume
 * it (which drops it) without answering. */
bool keel_request_cut(const struct keel_request *req);

/* Loop-thread index (0..threads-1) of the request, for per-thread data. */
unsigned keel_request_thread(const struct keel_request *req);
/* The request's libuv loop, for clients that run on it (Redis). */
struct uv_loop_s *keel_request_uv_loop(const struct keel_request *req);

#endif
