/*
 * ratelimit.c - the rate-limit middleware (issue 4; SPEC section 2, step
 * 7): a per-IP limit before authentication, stricter on credential routes,
 * and a per-user limit after it. Denied requests answer 429 rate-limited
 * with Retry-After, RateLimit-Policy and RateLimit; allowed ones carry the
 * two RateLimit fields of their most constrained policy on the final
 * response, errors included.
 *
 * DESIGN: the decisions themselves are keel/ratelimit.h's (GCRA); this file
 * finds the keys, picks the store, keeps the request's decisions and writes
 * the answer.
 *
 *  - Keys. "ip" and "auth" key on the client address of keel/clientip.h
 *    (the socket peer, or X-Forwarded-For as far as KEEL_TRUSTED_PROXIES
 *    vouches for it), IPv6 masked to its /64; "user" keys on the
 *    authenticated user id. Routes flagged KEEL_ROUTE_NO_RATELIMIT (probes,
 *    /metrics) are never limited; unmatched paths are, so 404 scanning
 *    spends budget too.
 *
 *  - Credential routes (KEEL_ROUTE_AUTH_LIMIT) are decided in "ip" first,
 *    then in "auth", and both must allow. A request the "ip" policy denies
 *    is never recorded in "auth" (its budget is untouched); a request "ip"
 *    allows has spent that "ip" budget even if "auth" then denies it: it was
 *    a real request from that client, and the cheaper order keeps the
 *    per-IP bound exact.
 *
 *  - Store. With KEEL_REDIS_URL every decision is one EVALSHA of the shared
 *    script on the request's loop connection (the request parks meanwhile),
 *    key "keel:rl:<scope>:<client>" with <client> the address text ("/64"
 *    appended for IPv6) or the user id; a NOSCRIPT answer is retried once
 *    with EVAL. Any failure - the client failing fast (disabled, breaker
 *    open, connection down), a timeout, an error reply, a reply of the
 *    wrong shape - falls back to the in-process store for that decision and
 *    for the rest of the request (so one request waits for at most one
 *    Redis timeout), and counts keel_ratelimit_fallback_total. A Redis
 *    outage therefore degrades to per-instance limits, never to no limit
 *    and never to a global 429. Without Redis the in-process store is the
 *    only one: one per process, created at init and kept for the process's
 *    life (a global, so LeakSanitizer sees it as reachable).
 *
 *  - Headers. Each decision is stored in the request (slot
 *    KEEL_MW_SLOT_RATELIMIT): the denying one, or else the allowed one with
 *    the fewest requests remaining (ties: the one further from whole
 *    again). The response filter formats its RateLimit-Policy and RateLimit
 *    on whatever the final response is; the error sanitizer runs before it
 *    and keeps headers, so a 429 keeps the Retry-After added here and a 404
 *    of a scanned path still shows its budget.
 *
 *  - Metrics. keel_ratelimit_decisions_total{scope,result} counts every
 *    decision, keel_rate_limited_total{scope} (SPEC section 6) every 429,
 *    and keel_ratelimit_fallback_total every decision that Redis should
 *    have made and the in-process store made instead.
 *
 *  - The client address is keel_request_client's (src/core/clientip.c),
 *    resolved once per request and shared with the auth module's
 *    throttling and security log.
 */
#include "keel/ratelimit.h"
#include "keel/ratelimit_redis.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "keel/clientip.h"
#include "keel/config.h"
#include "keel/http.h"
#include "keel/metrics.h"
#include "keel/redis.h"

/* Decisions one handler makes: "ip" then "auth" on credential routes. */
#define MAX_DECISIONS 2
/* Enough for a 4-byte policy name (keel_ratelimit_headers: 128 suffice). */
#define HEADER_LEN 128

static struct keel_ratelimit *store;
static struct keel_metric *m_decisions, *m_limited, *m_fallback;

/* The request's most constrained decision, for the response headers. */
struct rl_state {
    const char *scope; /* also the policy name */
    const struct keel_config_rate *rate;
    struct keel_ratelimit_result res;
};

/* The decisions of one handler call, in the request arena. */
struct rl_call {
    struct keel_request *req;
    unsigned n, i; /* decisions to make, and the one in progress */
    const char *scope[MAX_DECISIONS];
    const struct keel_config_rate *rate[MAX_DECISIONS];
    const char *key; /* in-process store key (binary) */
    size_t keylen;
    const char *client; /* printable client part of the Redis key */
    bool local;         /* Redis failed once: in-process for the rest */
    bool eval;          /* NOSCRIPT seen for decision i: sent with EVAL */
    unsigned char ipkey[KEEL_CLIENTIP_KEY_LEN];
    char iptext[INET6_ADDRSTRLEN + 4];
};

/* ---------------------------------------------------------------- init */

static keel_status init(void)
{
    static const char *const l2[] = {"scope", "result"};
    static const char *const l1[] = {"scope"};

    /* Once per process even if the pipeline is set up again (tests). */
    if (!store)
        store = keel_ratelimit_new(0, NULL, NULL);
    m_decisions = keel_metric_counter("keel_ratelimit_decisions_total",
                                      "Rate-limit decisions by policy and result.", 2, l2);
    m_limited = keel_metric_counter("keel_rate_limited_total",
                                    "Requests answered 429 by the rate limiter, by policy.", 1, l1);
    m_fallback =
        keel_metric_counter("keel_ratelimit_fallback_total",
                            "Rate-limit decisions made in-process because Redis failed.", 0, NULL);
    return m_decisions && m_limited && m_fallback ? KEEL_OK : KEEL_E_INTERNAL;
}

/* ------------------------------------------------------------- the key */

/* Resolves the client address of req into c's key. Returns KEEL_E_INVALID
 * when the peer is unknown (the socket is gone). */
static keel_status client_key(struct keel_request *req, struct rl_call *c)
{
    const struct keel_clientip *ip = keel_request_client(req);

    if (!ip)
        return KEEL_E_INVALID;
    c->keylen = keel_clientip_key(ip, 64, c->ipkey);
    c->key = (const char *)c->ipkey;
    if (ip->family == AF_INET6 && inet_ntop(AF_INET6, c->ipkey + 1, c->iptext, INET6_ADDRSTRLEN))
        strcat(c->iptext, "/64");
    else
        snprintf(c->iptext, sizeof(c->iptext), "%s", ip->text);
    c->client = c->iptext;
    return KEEL_OK;
}

/* --------------------------------------------------------- decisions */

static struct rl_call *call_new(struct keel_request *req)
{
    struct rl_call *c = keel_arena_calloc(req->arena, 1, sizeof(*c));

    if (c)
        c->req = req;
    return c;
}

/* Queues a decision; a rate the store cannot use (impossible from the
 * configuration, which requires a count and a period) is skipped. */
static void call_add(struct rl_call *c, const char *scope, const struct keel_config_rate *rate)
{
    if (c->n < MAX_DECISIONS && keel_ratelimit_interval_us(rate) > 0) {
        c->scope[c->n] = scope;
        c->rate[c->n] = rate;
        c->n++;
    }
}

/* Whether decision a constrains the client more than b. */
static bool tighter(const struct keel_ratelimit_result *a, const struct keel_ratelimit_result *b)
{
    if (a->remaining != b->remaining)
        return a->remaining < b->remaining;
    return a->reset_ms > b->reset_ms;
}

/* Counts decision c->i, keeps it for the headers, and answers 429 when it
 * denies. Returns KEEL_DECLINED (allowed: next decision or handler) or the
 * 429's status. */
static keel_status record(struct rl_call *c, const struct keel_ratelimit_result *res)
{
    struct keel_request *req = c->req;
    struct rl_state *s = req->mw_data[KEEL_MW_SLOT_RATELIMIT];
    const char *scope = c->scope[c->i];
    const char *retry;

    keel_metric_add(m_decisions, (const char *const[]){scope, res->allowed ? "allowed" : "denied"},
                    1);
    if (!s || !res->allowed || tighter(res, &s->res)) {
        if (!s) {
            s = keel_arena_alloc(req->arena, sizeof(*s));
            if (!s)
                return KEEL_E_NOMEM;
            req->mw_data[KEEL_MW_SLOT_RATELIMIT] = s;
        }
        s->scope = scope;
        s->rate = c->rate[c->i];
        s->res = *res;
    }
    if (res->allowed)
        return KEEL_DECLINED;
    keel_metric_add(m_limited, (const char *const[]){scope}, 1);
    retry = keel_arena_sprintf(req->arena, "%u", res->retry_after_s);
    if (!retry || keel_resp_set_header(req, "Retry-After", retry) < 0)
        return KEEL_E_NOMEM;
    return keel_fail(req, 429, "rate-limited",
                     "Too many requests under the %s rate limit; retry in %u s.", scope,
                     res->retry_after_s);
}

static void on_reply(keel_status rc, const struct keel_redis_reply *reply, void *arg);

/* Sends decision c->i to Redis: EVALSHA, or EVAL after a NOSCRIPT. The
 * arguments are copied by the client before it returns. */
static keel_status send_script(struct rl_call *c)
{
    struct keel_request *req = c->req;
    const struct keel_config_rate *rate = c->rate[c->i];
    char t_us[24], count[16];
    const char *key, *argv[6];

    key = keel_arena_sprintf(req->arena, "keel:rl:%s:%s", c->scope[c->i], c->client);
    if (!key)
        return KEEL_E_NOMEM;
    snprintf(t_us, sizeof(t_us), "%llu", (unsigned long long)keel_ratelimit_interval_us(rate));
    snprintf(count, sizeof(count), "%u", (unsigned)rate->count);
    argv[0] = c->eval ? "EVAL" : "EVALSHA";
    argv[1] = c->eval ? keel_ratelimit_lua : keel_ratelimit_lua_sha1;
    argv[2] = "1";
    argv[3] = key;
    argv[4] = t_us;
    argv[5] = count;
    return keel_redis_command_argv(keel_request_uv_loop(req), keel_request_thread(req), on_reply, c,
                                   6, argv, NULL);
}

/* Decides c->i in the in-process store after Redis failed. */
static keel_status fallback(struct rl_call *c, struct keel_ratelimit_result *res)
{
    c->local = true;
    keel_metric_add(m_fallback, NULL, 1);
    return keel_ratelimit_check(store, c->scope[c->i], c->key, c->keylen, c->rate[c->i], res);
}

/* Makes the remaining decisions, from c->i on. Returns KEEL_AGAIN while a
 * Redis command is in flight (on_reply continues), else the handler's
 * result: KEEL_DECLINED when every decision allowed, or the 429. */
static keel_status run(struct rl_call *c)
{
    struct keel_ratelimit_result res;
    keel_status rc;

    for (; c->i < c->n; c->i++) {
        c->eval = false;
        if (!c->local && keel_redis_enabled()) {
            rc = send_script(c);
            if (rc == KEEL_OK)
                return KEEL_AGAIN;
            if (rc == KEEL_E_NOMEM)
                return rc;
            rc = fallback(c, &res);
        } else {
            rc =
                keel_ratelimit_check(store, c->scope[c->i], c->key, c->keylen, c->rate[c->i], &res);
        }
        if (rc < 0) /* not a usable rate: call_add let none through */
            continue;
        rc = record(c, &res);
        if (rc != KEEL_DECLINED)
            return rc;
    }
    return KEEL_DECLINED;
}

/* The Redis answer for decision c->i, on the request's loop. */
static void on_reply(keel_status rc, const struct keel_redis_reply *reply, void *arg)
{
    struct rl_call *c = arg;
    struct keel_ratelimit_result res;

    if (rc == KEEL_E_INTERNAL && !c->eval && keel_ratelimit_reply_is_noscript(reply)) {
        c->eval = true;
        if (send_script(c) == KEEL_OK)
            return;
    }
    if (rc == KEEL_OK)
        rc = keel_ratelimit_parse_reply(reply, c->rate[c->i], &res);
    if (rc < 0)
        rc = fallback(c, &res);
    rc = rc < 0 ? KEEL_DECLINED : record(c, &res);
    if (rc == KEEL_DECLINED) {
        c->i++;
        rc = run(c);
    }
    if (rc != KEEL_AGAIN)
        keel_request_resume(c->req, rc);
}

/* Runs c's decisions; parks the request when Redis has them. */
static keel_status start(struct rl_call *c)
{
    keel_status rc = run(c);

    return rc == KEEL_AGAIN ? keel_request_park(c->req) : rc;
}

/* ---------------------------------------------------------- handlers */

static keel_status limit_ip(struct keel_request *req)
{
    const struct keel_route *route = req->route;
    struct rl_call *c;

    if (route && (route->flags & KEEL_ROUTE_NO_RATELIMIT))
        return KEEL_DECLINED;
    c = call_new(req);
    if (!c)
        return KEEL_E_NOMEM;
    /* No peer: the client is gone and nothing will read the answer. */
    if (client_key(req, c) < 0)
        return KEEL_DECLINED;
    call_add(c, "ip", &req->cfg->rate_limit_ip);
    if (route && (route->flags & KEEL_ROUTE_AUTH_LIMIT))
        call_add(c, "auth", &req->cfg->rate_limit_auth);
    return start(c);
}

static keel_status limit_user(struct keel_request *req)
{
    const struct keel_route *route = req->route;
    struct rl_call *c;

    if (!req->task.user_id || (route && (route->flags & KEEL_ROUTE_NO_RATELIMIT)))
        return KEEL_DECLINED;
    c = call_new(req);
    if (!c)
        return KEEL_E_NOMEM;
    c->key = req->task.user_id;
    c->keylen = strlen(req->task.user_id);
    c->client = req->task.user_id;
    call_add(c, "user", &req->cfg->rate_limit_user);
    return start(c);
}

/* Response filter: the RateLimit fields of the request's most constrained
 * decision, on every response that had one. */
static void add_headers(struct keel_request *req)
{
    const struct rl_state *s = req->mw_data[KEEL_MW_SLOT_RATELIMIT];
    char *policy, *state;

    if (!s)
        return;
    policy = keel_arena_alloc(req->arena, HEADER_LEN);
    state = keel_arena_alloc(req->arena, HEADER_LEN);
    if (!policy || !state ||
        keel_ratelimit_headers(&s->res, s->rate, s->scope, policy, HEADER_LEN, state, HEADER_LEN) <
            0)
        return;
    keel_resp_set_header(req, "RateLimit-Policy", policy);
    keel_resp_set_header(req, "RateLimit", state);
}

const struct keel_middleware keel_mw_ratelimit_ip = {
    .name = "ratelimit_ip",
    .order = KEEL_MW_ORDER_RATELIMIT_IP,
    .init = init,
    .phase = KEEL_PHASE_ACCESS,
    .handler = limit_ip,
    .filter = add_headers,
};

const struct keel_middleware keel_mw_ratelimit_user = {
    .name = "ratelimit_user",
    .order = KEEL_MW_ORDER_RATELIMIT_USER,
    .phase = KEEL_PHASE_ACCESS,
    .handler = limit_user,
};
