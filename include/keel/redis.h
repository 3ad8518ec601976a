/*
 * redis.h - the Redis client (RESP2, on hiredis) behind the L2 cache, rate
 * limits and the token blocklist (SPEC sections 1 and 8).
 *
 * One asynchronous connection per event loop, made lazily on the loop's
 * thread by the first command issued there and kept in a slot indexed by
 * the loop id, so loops never share a connection or take a lock to use
 * one. All loops share one circuit breaker named "redis"
 * (keel/breaker.h). docs/internals/redis.md explains the design.
 *
 * Threading: keel_redis_command* and keel_redis_loop_close run on the
 * event-loop thread that owns `loop`/`loop_id` only; callbacks run on that
 * same thread. Thread-pool work cannot issue commands: hand the work back
 * to the loop first. keel_redis_ping_sync blocks and belongs on a pool
 * thread. Init and shutdown run on the main thread while no loop uses
 * Redis.
 *
 * Pipelining: commands issued back to back on one loop, before the loop
 * next polls, leave in one write and their replies are read in order; no
 * call is needed for it. A command never waits for the previous reply.
 *
 * Failing fast: while Redis is disabled (no KEEL_REDIS_URL), while the
 * loop's connection is down between reconnect attempts, while the breaker
 * is open, or when too many commands already wait on the connection, a
 * command returns KEEL_E_UNAVAILABLE at once and its callback is never
 * called. Callers treat that like a cache miss: with Redis down, requests
 * still succeed on the database alone.
 *
 * No hiredis type appears here (STYLE.md section 1): replies are shown
 * through struct keel_redis_reply, a read-only view valid during the
 * callback only.
 */
#ifndef KEEL_REDIS_H
#define KEEL_REDIS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "keel/core.h"

struct keel_breaker;
struct keel_breaker_opts;
struct keel_config;
struct uv_loop_s;

/* RESP2 reply types. */
enum keel_redis_type {
    KEEL_REDIS_NIL,     /* null bulk string or null array */
    KEEL_REDIS_STRING,  /* bulk string: str, len (binary-safe) */
    KEEL_REDIS_STATUS,  /* simple string ("OK", "PONG"): str, len */
    KEEL_REDIS_INTEGER, /* integer */
    KEEL_REDIS_ARRAY,   /* elements, element[0 .. elements-1] */
    KEEL_REDIS_ERROR,   /* error reply ("WRONGTYPE ..."): str, len */
};

/* A reply, valid only while the callback runs: copy what you keep. `str`
 * is NUL-terminated after `len` bytes (a bulk string may also contain NUL
 * bytes); NULL for types without a string. */
struct keel_redis_reply {
    enum keel_redis_type type;
    long long integer;
    const char *str;
    size_t len;
    size_t elements;
    const struct keel_redis_reply *element;
};

/*
 * Completion of a command, called exactly once for every command whose
 * keel_redis_command* call returned KEEL_OK, always later (never inside
 * that call) and on the issuing loop's thread. It may issue further
 * commands. `rc`:
 *   KEEL_OK            a reply arrived; reply is non-NULL and not an error
 *   KEEL_E_INTERNAL    Redis answered with an error reply (type
 *                      KEEL_REDIS_ERROR; reply->str holds the message, for
 *                      logs only)
 *   KEEL_E_TIMEOUT     no reply within the command timeout; reply is NULL.
 *                      The command may or may not have run. A reply that
 *                      arrives later is dropped.
 *   KEEL_E_UNAVAILABLE the connection failed (refused, connect timeout,
 *                      AUTH/SELECT refused), was lost, or was closed (loop
 *                      shutdown) before the reply; reply is NULL. The
 *                      command may or may not have run.
 */
typedef void (*keel_redis_cb)(keel_status rc, const struct keel_redis_reply *reply, void *arg);

/* Tunables; a zero field takes its default. */
struct keel_redis_opts {
    unsigned connect_timeout_ms; /* resolve + TCP connect; 1000 */
    unsigned command_timeout_ms; /* issue to reply; 500 */
    unsigned max_pending;        /* commands awaiting a reply per connection; 10000 */
    /* After a command has timed out, its connection is dropped and remade
     * if the reply is still missing this long after the timeout (a dead
     * peer that never answers); 5000. */
    unsigned stall_ms;
    /* Breaker options; NULL = the defaults of keel/breaker.h. */
    const struct keel_breaker_opts *breaker;
};

#define KEEL_REDIS_CONNECT_TIMEOUT_MS 1000
#define KEEL_REDIS_COMMAND_TIMEOUT_MS 500
#define KEEL_REDIS_MAX_PENDING        10000
#define KEEL_REDIS_STALL_MS           5000
#define KEEL_REDIS_BACKOFF_MIN_MS     100
#define KEEL_REDIS_BACKOFF_MAX_MS     5000

/*
 * Sets the client up for cfg->threads loops from cfg->redis_url, with the
 * breaker options of cfg (KEEL_BREAKER_*). A NULL or empty URL disables
 * Redis: KEEL_OK, keel_redis_enabled() false, and every command fails with
 * KEEL_E_UNAVAILABLE. Otherwise the URL is validated (no connection is
 * made here; a Redis that is down does not stop the start), the breaker
 * and the metrics are created, and a non-critical readiness check "redis"
 * is registered (keel/health.h). Accepted URLs:
 *
 *     redis://[[user]:password@]host[:port][/db]   port 6379, db 0
 *     unix://[[user]:password@]/path/to/redis.sock[?db=N]
 *
 * host may be a name (resolved off the loop on every connect), an IPv4
 * address or a bracketed IPv6 address; user and password may be
 * percent-encoded. With a password, AUTH is sent on connect; with a db
 * other than 0, SELECT. Returns KEEL_E_INVALID for a malformed URL or
 * rediss:// (hiredis 0.14 has no TLS), logging why without the URL (it may
 * hold a password). Call once, on the main thread, before the loops run;
 * again only after keel_redis_shutdown().
 */
keel_status keel_redis_init(const struct keel_config *cfg);

/* keel_redis_init() with explicit settings (tests, tools): `url` as above
 * (NULL or "" disables Redis), `nloops` loop slots (ids 0..nloops-1), opts
 * NULL for the defaults. Does not register the readiness check. */
keel_status
keel_redis_init_opts(const char *url, unsigned nloops, const struct keel_redis_opts *opts);

/* True between a keel_redis_init* with a URL and keel_redis_shutdown(). */
bool keel_redis_enabled(void);

/* The shared breaker, or NULL when Redis is disabled. Owned by this module. */
struct keel_breaker *keel_redis_breaker(void);

/*
 * Sends a command on the connection of loop `loop_id` (the caller's own
 * loop; a request's is keel_request_thread(req)), connecting it first if
 * this is the loop's first command. `fmt` is hiredis's format: a printf-
 * like string where %s is a C string and %b a binary-safe (pointer,
 * size_t) pair, each expanding to exactly one argument, so values are never
 * parsed as separate words: "SET %s %b".
 *
 * Returns KEEL_OK when the command was queued: cb(arg) will be called
 * exactly once as described at keel_redis_cb. Otherwise cb is never
 * called and the return is KEEL_E_UNAVAILABLE (disabled, breaker open,
 * connection down, max_pending reached, loop already closed) or
 * KEEL_E_INVALID (bad format string; SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE,
 * PUNSUBSCRIBE and MONITOR, which change the connection's protocol and are
 * not supported on these shared connections).
 */
keel_status keel_redis_command(
    struct uv_loop_s *loop, unsigned loop_id, keel_redis_cb cb, void *arg, const char *fmt, ...);

/* keel_redis_command with a va_list. */
keel_status keel_redis_vcommand(struct uv_loop_s *loop,
                                unsigned loop_id,
                                keel_redis_cb cb,
                                void *arg,
                                const char *fmt,
                                va_list ap);

/* keel_redis_command with the command as `argc` arguments: argv[i] of
 * argvlen[i] bytes (binary-safe), or NUL-terminated when argvlen is NULL.
 * The arguments are copied before the call returns. */
keel_status keel_redis_command_argv(struct uv_loop_s *loop,
                                    unsigned loop_id,
                                    keel_redis_cb cb,
                                    void *arg,
                                    int argc,
                                    const char *const *argv,
                                    const size_t *argvlen);

/*
 * Closes loop `loop_id`'s connection at shutdown so the loop can end (a
 * keel_server_on_loop_close hook; the signature matches). Commands still
 * waiting get KEEL_E_UNAVAILABLE now; later commands on this loop fail with
 * KEEL_E_UNAVAILABLE and never reconnect. The libuv handles close
 * asynchronously: the loop must run again (uv_run) for them to be freed.
 * A no-op when Redis is disabled or the loop never used it.
 */
void keel_redis_loop_close(struct uv_loop_s *loop, unsigned loop_id);

/* Frees the client (slots, breaker, parsed URL). Call on the main thread
 * after every loop that used Redis was closed with keel_redis_loop_close
 * and has run its close callbacks. Safe when never initialized. */
void keel_redis_shutdown(void);

/*
 * The readiness probe: opens a blocking connection to `url` (NULL: the
 * URL given to keel_redis_init*), authenticates as the URL says (PING
 * needs no SELECT), sends PING and expects PONG, all within timeout_ms in total, then
 * closes the connection. Independent of the per-loop connections and of
 * the breaker (it neither consults nor feeds it). *latency_ms (may be NULL)
 * receives the PING round trip in milliseconds. Blocks: call it on a pool
 * thread. Returns KEEL_OK, KEEL_E_INVALID (bad URL, or no URL at all),
 * KEEL_E_TIMEOUT, or KEEL_E_UNAVAILABLE (refused, closed, error reply such
 * as a wrong password or LOADING).
 */
keel_status keel_redis_ping_sync(const char *url, unsigned timeout_ms, double *latency_ms);

#endif
