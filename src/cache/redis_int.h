/*
 * redis_int.h - what the Redis client (redis.c) shares with its URL parser
 * (redis_url.c), its readiness probe (redis_probe.c) and its libuv event
 * adapter (redis_uv.c). Only src/cache/ includes this file.
 */
#ifndef KEEL_REDIS_INT_H
#define KEEL_REDIS_INT_H

#include <stdbool.h>

#include "keel/core.h"

struct redisAsyncContext; /* <hiredis/async.h> */
struct uv_loop_s;         /* <uv.h> */

/* A parsed KEEL_REDIS_URL. Strings are heap copies; the password is wiped
 * on free. */
struct target {
    bool is_unix;
    char *host; /* host name or address, or the socket path */
    int port;
    char *user; /* NULL: AUTH with the password alone */
    char *password;
    long db;
};

/* Parses url into *t (zeroed first). Returns NULL or why it is invalid;
 * the reason never contains the URL, which may hold a password. On
 * failure *t is left empty; on success keel__redis_target_free() frees it
 * (redis_url.c). */
const char *keel__redis_parse_url(struct target *t, const char *url);

/* Frees t's strings, wiping the password, and zeroes *t (redis_url.c). */
void keel__redis_target_free(struct target *t);

/* Connects to t, authenticates if t has a password, and sends PING, all
 * within timeout_ms (0 counts as 1). KEEL_OK on PONG, with the PING's round
 * trip in *latency_ms when that is not NULL; KEEL_E_TIMEOUT when the
 * deadline passed; KEEL_E_UNAVAILABLE otherwise (redis_probe.c). */
keel_status
keel__redis_ping_target(const struct target *t, unsigned timeout_ms, double *latency_ms);

/* Attaches a new asynchronous context to the loop: hiredis then asks for
 * read and write events through a uv_poll handle on the context's socket.
 * REDIS_OK, or REDIS_ERR when the handle cannot be made (redis_uv.c). */
int keel__redis_ev_attach(struct redisAsyncContext *ac, struct uv_loop_s *loop);

#endif
