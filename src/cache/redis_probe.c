/*
 * redis_probe.c - the blocking readiness probe behind keel_redis_ping_sync()
 * (redis.c): connect, AUTH when the target has a password, PING, all
 * within one deadline, on a synchronous hiredis context of its own.
 *
 * DESIGN: the probe shares nothing with the event-loop connections: it
 * blocks, so it belongs on a pool thread (readiness runs its checks there,
 * src/modules/health/health.c), and it tells whether a fresh connection can be made
 * now, whatever state the loops' connections are in. It does not go
 * through the circuit breaker and is not counted in
 * keel_redis_commands_total.
 */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>

#include "keel/core.h"

#include "redis_int.h"

static struct timeval tv_of(uint64_t ms)
{
    return (struct timeval){.tv_sec = (time_t)(ms / 1000),
                            .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

/* Maps a failed blocking call to a status. hiredis 0.14 reports a connect
 * timeout as "Connection timed out" and a read timeout as "Resource
 * temporarily unavailable" (EAGAIN from SO_RCVTIMEO). */
static keel_status sync_error(const redisContext *ctx)
{
    if (ctx->err == REDIS_ERR_IO &&
        (strstr(ctx->errstr, "timed out") || strstr(ctx->errstr, "temporarily unavailable")))
        return KEEL_E_TIMEOUT;
    return KEEL_E_UNAVAILABLE;
}

/* One blocking command within what is left of the deadline. Returns the
 * reply (caller frees) or NULL with *rc set. */
static redisReply *
sync_command(redisContext *ctx, uint64_t deadline_ns, keel_status *rc, int argc, const char **argv)
{
    uint64_t now = keel_now_ns();
    redisReply *r;

    if (now >= deadline_ns) {
        *rc = KEEL_E_TIMEOUT;
        return NULL;
    }
    redisSetTimeout(ctx, tv_of((deadline_ns - now + 999999) / 1000000));
    r = redisCommandArgv(ctx, argc, argv, NULL);
    if (!r)
        *rc = sync_error(ctx);
    return r;
}

keel_status keel__redis_ping_target(const struct target *t, unsigned timeout_ms, double *latency_ms)
{
    uint64_t deadline, t0;
    redisContext *ctx;
    redisReply *r = NULL;
    keel_status rc = KEEL_E_UNAVAILABLE;

    if (timeout_ms == 0)
        timeout_ms = 1; /* a zero timeval means "no timeout" to hiredis */
    deadline = keel_now_ns() + (uint64_t)timeout_ms * 1000000u;

    ctx = t->is_unix ? redisConnectUnixWithTimeout(t->host, tv_of(timeout_ms))
                     : redisConnectWithTimeout(t->host, t->port, tv_of(timeout_ms));
    if (!ctx)
        return KEEL_E_UNAVAILABLE;
    if (ctx->err) {
        rc = sync_error(ctx);
        goto out;
    }
    if (t->password) {
        const char *argv[3] = {"AUTH", t->user ? t->user : t->password, t->password};

        r = sync_command(ctx, deadline, &rc, t->user ? 3 : 2, argv);
        if (!r)
            goto out;
        if (r->type == REDIS_REPLY_ERROR) {
            rc = KEEL_E_UNAVAILABLE;
            goto out;
        }
        freeReplyObject(r);
    }
    t0 = keel_now_ns();
    r = sync_command(ctx, deadline, &rc, 1, (const char *[]){"PING"});
    if (!r)
        goto out;
    if (latency_ms)
        *latency_ms = (double)(keel_now_ns() - t0) / 1e6;
    rc =
        r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0 ? KEEL_OK : KEEL_E_UNAVAILABLE;
out:
    if (r)
        freeReplyObject(r);
    redisFree(ctx);
    return rc;
}
