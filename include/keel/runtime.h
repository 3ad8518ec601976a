/*
 * runtime.h - the loop runtime: N event-loop threads, work posted to them
 * from other threads, signals, and the process lifecycle (start, ready,
 * drain on SIGTERM/SIGINT, exit), with nothing of HTTP in it. `keel serve`
 * runs the HTTP server on it (keel/server.h); a worker process runs the
 * job workers on it alone (SPEC section 1).
 *
 * What runs on the loops are services (struct keel_runtime_service): each
 * gets every loop once before it runs, is told when draining begins and at
 * the shutdown deadline, and is stopped after the loops ended. A loop ends
 * once draining has begun and nothing holds it: services hold a loop for
 * each piece of work they still owe (keel_loop_hold: an open connection, a
 * task waiting for a result, keel/task.h), so a result posted to a loop
 * always finds it open.
 *
 * Threading: keel_runtime_add, _on_loop_close and _run are main-thread
 * calls made before (or, for _run, as) the loops start. keel_loop_post is
 * for any thread. keel_loop_hold / _release run on the loop's own thread.
 */
#ifndef KEEL_RUNTIME_H
#define KEEL_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/core.h"

struct keel_config;
struct uv_loop_s;

enum keel_runtime_state {
    KEEL_RUNTIME_STARTING,
    KEEL_RUNTIME_READY,
    KEEL_RUNTIME_DRAINING,
};

/* Something that lives on every loop (the HTTP listeners, the job
 * workers). Every callback may be NULL. */
struct keel_runtime_service {
    const char *name;
    /* Main thread, before any loop exists: take what can fail at start
     * (bind the sockets). An error stops the start. */
    keel_status (*prepare)(void *arg, unsigned nloops);
    /* Main thread, once per loop, after the loop is made and before its
     * thread runs: initialize the loop's handles. An error stops the
     * start. */
    keel_status (*start)(void *arg, unsigned loop_id, struct uv_loop_s *uv);
    /* On the loop's thread: draining has begun (force false): stop taking
     * new work and let what runs finish; or the shutdown deadline passed
     * (force true): cut what is left. */
    void (*drain)(void *arg, unsigned loop_id, bool force);
    /* Main thread, once every loop runs and the state is READY: announce
     * it (the HTTP server logs "listening"). */
    void (*ready)(void *arg);
    /* On the loop's thread, as it closes (drained, nothing held): close
     * the handles start made; the loop runs once more for their close
     * callbacks. */
    void (*close)(void *arg, unsigned loop_id, struct uv_loop_s *uv);
    /* Main thread, after every loop ended (also after a failed start):
     * free what prepare and start made. */
    void (*stop)(void *arg);
    void *arg;
};

/* Adds a service (copied). Before keel_runtime_run; at most 8. Returns
 * KEEL_OK or KEEL_E_TOO_LARGE. */
keel_status keel_runtime_add(const struct keel_runtime_service *s);

/* Registers fn to run on each loop's thread as it closes (a per-loop
 * client such as a Redis connection): a service with only `close`.
 * keel_redis_loop_close has this signature. */
keel_status keel_runtime_on_loop_close(void (*fn)(struct uv_loop_s *uv, unsigned loop_id));

/* Runs cfg->threads loops with the added services until SIGTERM/SIGINT,
 * drains within cfg->shutdown_timeout_ms, stops the services, forgets
 * them, and returns KEEL_OK (exit 0) or the start's error. */
keel_status keel_runtime_run(const struct keel_config *cfg);

enum keel_runtime_state keel_runtime_state(void);
/* Seconds since the runtime started (0 before). */
int64_t keel_runtime_uptime(void);
/* The number of loops (0 when not running). */
unsigned keel_runtime_loops(void);

/* Loop `loop_id`'s libuv loop (for handles and clients made on it). */
struct uv_loop_s *keel_loop_uv(unsigned loop_id);

/* Work handed to a loop thread from another thread: fn(p) runs on the
 * loop soon after keel_loop_post. Embed it in the object it finishes
 * (KEEL_CONTAINER_OF). */
struct keel_post {
    struct keel_post *next;
    void (*fn)(struct keel_post *p);
};

/* Queues p for loop `loop_id` and wakes it (posts made before the loop
 * wakes run in one batch, in order). Any thread. The loop must be held
 * (keel_loop_hold) by the work p finishes, which keeps it open. */
void keel_loop_post(unsigned loop_id, struct keel_post *p);

/* Holds loop `loop_id` open while work it owes is outstanding, and
 * releases it. Loop thread only. */
void keel_loop_hold(unsigned loop_id);
void keel_loop_release(unsigned loop_id);

/* For tests and fuzzing: a runtime of one loop (id 0) with no thread, no
 * signals and no services, in state READY; the caller runs the returned
 * loop itself. */
struct uv_loop_s *keel__runtime_test_loop(const struct keel_config *cfg);

#endif
