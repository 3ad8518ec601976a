/*
 * task.c - tasks (keel/task.h): waits and their ends, the thread-pool
 * offload, and posts to a task's loop.
 *
 * DESIGN: a wait is a counted hold on the task and on its loop, so a loop
 * never closes under a task that still expects a result (runtime.c closes
 * a draining loop only when nothing holds it). The owner's resume function
 * decides what a result means; for a request it is the pipeline
 * (src/http/request.c). The offload uses libuv's thread pool: its
 * completion comes back on the loop that queued it, the task's.
 */
#include "keel/task.h"

#include <uv.h>

#include "keel/arena.h"

void keel_task_init(struct keel_task *t,
                    const struct keel_task_ops *ops,
                    unsigned loop,
                    struct keel_arena *a)
{
    *t = (struct keel_task){.ops = ops, .arena = a, .loop = loop};
}

keel_status keel_task_wait(struct keel_task *t)
{
    if (t->ops->hold)
        t->ops->hold(t);
    t->holds++;
    keel_loop_hold(t->loop);
    return KEEL_AGAIN;
}

void keel_task_resume(struct keel_task *t, keel_status rc)
{
    KEEL_ASSERT(t->holds > 0);
    t->holds--;
    keel_loop_release(t->loop);
    t->ops->resume(t, rc); /* may free t */
}

bool keel_task_gone(const struct keel_task *t)
{
    return t->ops->gone && t->ops->gone(t);
}

void keel_task_complete(struct keel_task *t, keel_task_fn done, void *arg)
{
    const struct keel_log_ctx *prev;
    keel_status rc;

    if (keel_task_gone(t)) {
        keel_task_resume(t, KEEL_DONE); /* nothing to answer: the owner drops it */
        return;
    }
    prev = keel_log_ctx_set(&t->log);
    rc = done(t, arg);
    keel_log_ctx_set(prev);
    keel_task_resume(t, rc);
}

struct uv_loop_s *keel_task_uv_loop(const struct keel_task *t)
{
    return keel_loop_uv(t->loop);
}

void keel_task_post(const struct keel_task *t, struct keel_post *p)
{
    keel_loop_post(t->loop, p);
}

/* ------------------------------------------------------------- offload */

struct offload {
    uv_work_t work;
    struct keel_task *task;
    keel_work_fn fn;
    keel_task_fn done;
    void *arg;
};

static void offload_run(uv_work_t *w)
{
    struct offload *o = w->data;
    const struct keel_log_ctx *prev = keel_log_ctx_set(&o->task->log);

    o->fn(o->arg);
    keel_log_ctx_set(prev);
}

static void offload_after(uv_work_t *w, int status)
{
    struct offload *o = w->data;

    (void)status; /* UV_ECANCELED cannot happen: Keel never cancels work */
    keel_task_complete(o->task, o->done, o->arg);
}

keel_status keel_task_offload(struct keel_task *t, keel_work_fn work, keel_task_fn done, void *arg)
{
    struct offload *o = keel_arena_alloc(t->arena, sizeof(*o));

    if (!o)
        return KEEL_E_NOMEM;
    o->work.data = o;
    o->task = t;
    o->fn = work;
    o->done = done;
    o->arg = arg;
    if (uv_queue_work(keel_task_uv_loop(t), &o->work, offload_run, offload_after) < 0)
        return KEEL_E_INTERNAL;
    return keel_task_wait(t);
}
