/*
 * cache_listen.c - the Redis side of the invalidation listener: a thread
 * with its own blocking hiredis connection, SUBSCRIBEd to keel:invalidate,
 * handing every message to keel__cache_receive (cache.c).
 *
 * DESIGN: pub/sub changes a connection's protocol, so the event loops'
 * shared connections (redis.c) cannot carry it; a thread with a blocking
 * connection is the simplest thing that works and never touches a loop.
 * It waits in poll() on the socket and on an eventfd, so shutdown wakes it
 * at once instead of waiting for a read timeout. It connects with the
 * parsed URL of redis_url.c (AUTH and SELECT as the URL says; channels are
 * not per database, SELECT only keeps the session like the others).
 *
 * A silent peer (a host that vanished without a reset) is found by PING:
 * after PING_MS without traffic one is sent (allowed while subscribed; the
 * reply is ["pong", ""]), and DEAD_MS without any reply drops the
 * connection. Lost connections are remade after 100 ms doubling to 5 s,
 * jittered. Every successful SUBSCRIBE tells cache.c, which clears L1:
 * what was published while we were away is lost.
 *
 * Once a second it also checks whether L2 must be retired (an
 * invalidation may have missed it) and, if so, bumps the L2 epoch on a
 * short-lived connection: an idle instance must not leave values it failed
 * to delete readable by the others once Redis answers again.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>

#include "keel/log.h"
#include "keel/redis.h"

#include "cache/cache_int.h"
#include "cache/redis_int.h"

#define CMD_TIMEOUT_MS 2000
#define PING_MS        5000
#define DEAD_MS        15000

static struct {
    struct target t;
    pthread_t thread;
    bool running;
    int wake; /* eventfd: written once to stop */
    atomic_bool stop;
} S = {.wake = -1};

static uint64_t now_ms(void)
{
    return keel_now_ns() / 1000000u;
}

/* Waits up to ms for the stop signal; true when it came. */
static bool stop_wait(unsigned ms)
{
    struct pollfd p = {.fd = S.wake, .events = POLLIN};

    if (atomic_load(&S.stop))
        return true;
    while (poll(&p, 1, (int)ms) < 0 && errno == EINTR)
        ;
    return atomic_load(&S.stop);
}

static bool command_ok(redisContext *ctx, int argc, const char **argv, int want)
{
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    bool ok = r && r->type == want;

    if (r && r->type == REDIS_REPLY_ERROR)
        keel_log(KEEL_LOG_ERROR, "cache listener: Redis refused the handshake",
                 KEEL_LF_STRN("error", r->str, r->len));
    if (r)
        freeReplyObject(r);
    return ok;
}

/* Connects, authenticates and selects. NULL on failure. */
static redisContext *open_conn(void)
{
    struct timeval tv = {.tv_sec = 1};
    struct timeval cmd = {.tv_sec = CMD_TIMEOUT_MS / 1000};
    char db[24];
    redisContext *ctx = S.t.is_unix ? redisConnectUnixWithTimeout(S.t.host, tv)
                                    : redisConnectWithTimeout(S.t.host, S.t.port, tv);

    if (!ctx)
        return NULL;
    if (ctx->err || redisSetTimeout(ctx, cmd) != REDIS_OK)
        goto fail;
    (void)redisEnableKeepAlive(ctx);
    if (S.t.password) {
        const char *argv[3] = {"AUTH", S.t.user ? S.t.user : S.t.password, S.t.password};

        if (!command_ok(ctx, S.t.user ? 3 : 2, argv, REDIS_REPLY_STATUS))
            goto fail;
    }
    if (S.t.db != 0) {
        snprintf(db, sizeof(db), "%ld", S.t.db);
        if (!command_ok(ctx, 2, (const char *[]){"SELECT", db}, REDIS_REPLY_STATUS))
            goto fail;
    }
    return ctx;
fail:
    redisFree(ctx);
    return NULL;
}

static redisContext *subscribe(void)
{
    redisContext *ctx = open_conn();

    if (ctx && !command_ok(ctx, 2, (const char *[]){"SUBSCRIBE", KEEL__CACHE_REDIS_CHANNEL},
                           REDIS_REPLY_ARRAY)) {
        redisFree(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* Retires L2 when an invalidation may have missed it, on a short-lived
 * connection (ours is subscribed): the loops do it too, but only when a
 * request needs L2, and an idle instance must not leave old values
 * readable by the others. */
static void bump_epoch(void)
{
    uint64_t target;
    redisContext *ctx;
    redisReply *r;

    if (!keel__cache_epoch_due(&target))
        return;
    ctx = open_conn();
    if (!ctx)
        return;
    r = redisCommand(ctx, "INCR %s", KEEL__CACHE_EPOCH_KEY);
    if (r && r->type == REDIS_REPLY_INTEGER)
        keel__cache_epoch_bumped(target);
    if (r)
        freeReplyObject(r);
    redisFree(ctx);
}

static void handle(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0 ||
        r->element[2]->type != REDIS_REPLY_STRING)
        return; /* pong, subscribe confirmations */
    keel__cache_receive(r->element[2]->str, r->element[2]->len);
}

static bool send_ping(redisContext *ctx)
{
    int done = 0;

    if (redisAppendCommand(ctx, "PING") != REDIS_OK)
        return false;
    while (!done)
        if (redisBufferWrite(ctx, &done) != REDIS_OK)
            return false;
    return true;
}

/* Reads messages until the connection fails (false) or stop (true). */
static bool serve(redisContext *ctx)
{
    struct pollfd p[2] = {{.fd = ctx->fd, .events = POLLIN}, {.fd = S.wake, .events = POLLIN}};
    uint64_t last_rx = now_ms(), last_ping = last_rx, last_bump = 0;
    void *reply;
    int n;

    for (;;) {
        if (now_ms() - last_bump >= 1000) {
            bump_epoch();
            last_bump = now_ms();
        }
        while (redisGetReplyFromReader(ctx, &reply) == REDIS_OK && reply) {
            handle(reply);
            freeReplyObject(reply);
        }
        if (ctx->err)
            return false;
        n = poll(p, 2, 1000);
        if (atomic_load(&S.stop))
            return true;
        if (n < 0 && errno != EINTR)
            return false;
        if (n > 0 && p[0].revents) {
            if (redisBufferRead(ctx) != REDIS_OK)
                return false;
            last_rx = now_ms();
            continue;
        }
        if (now_ms() - last_rx >= DEAD_MS)
            return false;
        if (now_ms() - last_rx >= PING_MS && now_ms() - last_ping >= PING_MS) {
            if (!send_ping(ctx))
                return false;
            last_ping = now_ms();
        }
    }
}

static void *sub_main(void *arg)
{
    unsigned backoff = KEEL_REDIS_BACKOFF_MIN_MS;
    bool warned = false, was_up = false;
    redisContext *ctx;

    (void)arg;
    while (!atomic_load(&S.stop)) {
        ctx = subscribe();
        was_up = ctx != NULL;
        if (ctx) {
            keel_log(KEEL_LOG_INFO, "cache listener subscribed",
                     KEEL_LF_STR("channel", KEEL__CACHE_REDIS_CHANNEL));
            keel__cache_listener_state(KEEL__CACHE_CH_REDIS, true);
            backoff = KEEL_REDIS_BACKOFF_MIN_MS;
            warned = false;
            if (serve(ctx)) {
                redisFree(ctx);
                break;
            }
            keel__cache_listener_state(KEEL__CACHE_CH_REDIS, false);
            redisFree(ctx);
        }
        if (!warned) { /* once per outage; the redis client logs the details */
            keel_log(KEEL_LOG_WARN,
                     was_up ? "cache listener: Redis connection lost; resubscribing"
                            : "cache listener: cannot subscribe to Redis; retrying",
                     KEEL_LF_STR("channel", KEEL__CACHE_REDIS_CHANNEL));
            warned = true;
        }
        if (stop_wait(backoff / 2 + randombytes_uniform(backoff / 2 + 1)))
            break;
        backoff = backoff * 2 > KEEL_REDIS_BACKOFF_MAX_MS ? KEEL_REDIS_BACKOFF_MAX_MS : backoff * 2;
    }
    keel__cache_listener_state(KEEL__CACHE_CH_REDIS, false);
    return NULL;
}

keel_status keel__cache_sub_start(const char *url)
{
    const char *why = keel__redis_parse_url(&S.t, url);

    if (why) {
        keel_log(KEEL_LOG_ERROR, "cache listener: bad KEEL_REDIS_URL", KEEL_LF_STR("why", why));
        return KEEL_E_INVALID;
    }
    S.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    atomic_store(&S.stop, false);
    if (S.wake < 0 || pthread_create(&S.thread, NULL, sub_main, NULL) != 0) {
        if (S.wake >= 0)
            close(S.wake);
        S.wake = -1;
        keel__redis_target_free(&S.t);
        return KEEL_E_INTERNAL;
    }
    S.running = true;
    return KEEL_OK;
}

void keel__cache_sub_stop(void)
{
    uint64_t one = 1;

    if (!S.running)
        return;
    atomic_store(&S.stop, true);
    if (write(S.wake, &one, sizeof(one)) < 0)
        keel_log(KEEL_LOG_WARN, "cache listener: wake-up failed",
                 KEEL_LF_STR("error", strerror(errno)));
    pthread_join(S.thread, NULL);
    close(S.wake);
    S.wake = -1;
    S.running = false;
    keel__redis_target_free(&S.t);
}
