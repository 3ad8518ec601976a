/*
 * task.h - a task: a piece of work that lives on one loop and waits for
 * asynchronous results (storage, cache, Redis, thread-pool work) without
 * being an HTTP request. A request is a task (struct keel_request embeds
 * one as its first member); so will a job attempt, a timer's work or an
 * outbound call be. The storage, cache and offload APIs take a task and
 * continue it on its loop; requests keep their wrappers (keel/http.h,
 * keel/db.h, keel/cache.h).
 *
 * A wait: an API that will call back returns KEEL_AGAIN after
 * keel_task_wait (which holds the task and its loop); the owner returns
 * KEEL_AGAIN up its stack. When the result is there, the API calls its
 * done callback on the task's loop and hands done's return value to
 * keel_task_resume, which releases the hold and gives the value to the
 * owner's resume function: for a request, the pipeline continues with it.
 * Holds are counted, so a done callback may start the next wait before
 * the resume that ends the current one (its return value is then
 * KEEL_AGAIN).
 *
 * Gone: a task's owner may go away while it waits (a request whose
 * connection was cut). keel_task_gone says so; an API then skips the done
 * callback and resumes with KEEL_DONE, which the owner takes as "drop".
 *
 * Log context: while a task's code runs (on its loop or on a thread doing
 * its work), its log context is the thread's (keel/log.h), so every log
 * line written for it names its request id (and later trace id).
 *
 * Threading: everything here runs on the task's loop thread, except that
 * a thread doing the task's work may read its fields.
 */
#ifndef KEEL_TASK_H
#define KEEL_TASK_H

#include <stdbool.h>

#include "keel/core.h"
#include "keel/log.h"
#include "keel/runtime.h"

struct keel_arena;
struct keel_task;
struct uv_loop_s;

struct keel_task_ops {
    /* A wait ended: continue with rc (what the done callback returned,
     * or KEEL_DONE when the task was gone). Required. */
    void (*resume)(struct keel_task *t, keel_status rc);
    /* True when the owner went away (NULL: never). */
    bool (*gone)(const struct keel_task *t);
    /* A wait begins: hold what the owner must keep until its resume
     * (NULL: nothing). */
    void (*hold)(struct keel_task *t);
};

struct keel_task {
    const struct keel_task_ops *ops;
    struct keel_arena *arena; /* memory for the waits' state; outlives them */
    unsigned loop;            /* the loop it lives on (keel/runtime.h) */
    unsigned holds;           /* waits outstanding */
    /* Read-your-writes (keel/db.h): the identity whose own writes the
     * task's reads must see (a request's user id); NULL: none. */
    const char *user_id;
    struct keel_log_ctx log; /* request_id, trace_id */
};

/* Sets t up on loop `loop` with arena a; holds 0, no user, no log
 * context. */
void keel_task_init(struct keel_task *t,
                    const struct keel_task_ops *ops,
                    unsigned loop,
                    struct keel_arena *a);

/* Begins a wait: holds t (ops->hold) and its loop. Returns KEEL_AGAIN for
 * the caller to return. */
keel_status keel_task_wait(struct keel_task *t);

/* Ends a wait: releases the hold and calls ops->resume(t, rc). t must
 * not be touched afterwards unless the owner says otherwise. */
void keel_task_resume(struct keel_task *t, keel_status rc);

/* True when t's owner went away. */
bool keel_task_gone(const struct keel_task *t);

/* Ends a wait with done's result: resumes with KEEL_DONE when the task
 * is gone (done is not called), else with done(t, arg)'s return value.
 * The common tail of every API that continues a task. */
typedef keel_status (*keel_task_fn)(struct keel_task *t, void *arg);
void keel_task_complete(struct keel_task *t, keel_task_fn done, void *arg);

/* t's libuv loop (for clients that run on it: Redis). */
struct uv_loop_s *keel_task_uv_loop(const struct keel_task *t);

/* Runs work(arg) on libuv's thread pool (for blocking work that is not
 * storage: password hashing, probes), then done(t, arg) on t's loop, whose
 * return value resumes t (keel_task_complete). Returns KEEL_AGAIN or
 * KEEL_E_NOMEM / KEEL_E_INTERNAL (nothing was started). `work` must not
 * touch t; it runs with t's log context. */
typedef void (*keel_work_fn)(void *arg);
keel_status keel_task_offload(struct keel_task *t, keel_work_fn work, keel_task_fn done, void *arg);

/* Posts p to t's loop (keel_loop_post). Any thread, while t waits. */
void keel_task_post(const struct keel_task *t, struct keel_post *p);

#endif
