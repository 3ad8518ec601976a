/*
 * server.h - the HTTP server: N event-loop threads, each with its own
 * SO_REUSEPORT listener, started from the main thread, which keeps signals
 * and lifecycle (SPEC section 1 and 7).
 */
#ifndef KEEL_SERVER_H
#define KEEL_SERVER_H

#include "keel/core.h"

struct keel_config;
struct keel_router;

enum keel_server_state {
    KEEL_SERVER_STARTING,
    KEEL_SERVER_READY,
    KEEL_SERVER_DRAINING,
};

/* Binds the listeners, runs the loops until SIGTERM/SIGINT, drains within
 * cfg->shutdown_timeout_ms, and returns KEEL_OK (exit 0) or an error
 * (bind failure: KEEL_E_UNAVAILABLE). The router must be complete and is
 * shared read-only by every loop. */
keel_status keel_server_run(const struct keel_config *cfg, struct keel_router *router);

enum keel_server_state keel_server_state(void);

/* Registers fn to run on each loop thread when that loop has drained, so
 * per-loop clients (a Redis connection) close and the loop can end. At
 * start, before keel_server_run; at most 8 hooks. */
struct uv_loop_s;
keel_status keel_server_on_loop_close(void (*fn)(struct uv_loop_s *loop, unsigned loop_id));
/* Work handed to a loop thread from another thread: fn(p) runs on loop
 * `loop_id` soon after keel_server_post. Embed it in the object it
 * finishes (container_of). */
struct keel_post {
    struct keel_post *next;
    void (*fn)(struct keel_post *p);
};

/* Queues p for its loop and wakes the loop (one uv_async_t per loop; posts
 * made before the loop wakes run in one batch, in order). Any thread. Only
 * for work a parked request of that loop waits for: a loop closes only
 * once it has no connection left, so it is still open. */
void keel_server_post(unsigned loop_id, struct keel_post *p);

/* Seconds since the server started (0 before). */
int64_t keel_server_uptime(void);

#endif
