/*
 * hashq.c - the password-hash queue: at most `cap` Argon2id computations
 * per loop at once, the rest waiting in a bounded FIFO (issue 4: "a login
 * flood cannot exhaust memory or starve other requests").
 *
 * DESIGN: the cap is split across the loops (ceil(concurrency / threads)
 * each) so each loop's queue is touched only by its own thread: no lock,
 * no atomics. A hash holds one thread-pool thread; the pool is sized for
 * the database pools plus four, so hashing can never take every thread
 * the database needs. Memory for hashing is bounded by
 * threads x cap x KEEL_PASSWORD_MEMORY. A queued request is parked (its
 * connection held); one cut meanwhile is dropped when its turn comes.
 */
#include <stdlib.h>
#include <uv.h>

#include "keel/config.h"
#include "keel/log.h"

#include "auth_int.h"

#define HASHQ_MAX_WAITING 256

struct job {
    uv_work_t work;
    struct keel_request *req;
    keel_work_fn fn;
    keel_resume_fn done;
    void *arg;
    struct job *next;
};

struct loopq {
    unsigned running;
    unsigned waiting;
    struct job *head, *tail;
};

static struct loopq *queues;
static unsigned nqueues;
static unsigned cap_per_loop;

keel_status auth_hashq_init(const struct keel_config *cfg)
{
    nqueues = cfg->threads;
    cap_per_loop = (cfg->password_concurrency + cfg->threads - 1) / cfg->threads;
    if (cap_per_loop == 0)
        cap_per_loop = 1;
    queues = keel_xcalloc(nqueues, sizeof(*queues));
    return KEEL_OK;
}

void auth_hashq_fini(void)
{
    free(queues);
    queues = NULL;
    nqueues = 0;
}

static void run(uv_work_t *w)
{
    struct job *j = w->data;

    j->fn(j->arg);
}

static void start(struct loopq *q, struct job *j);

/* Starts waiting jobs while slots are free; drops those whose client
 * left. */
static void pump(struct loopq *q)
{
    struct job *j;

    while (q->running < cap_per_loop && q->head) {
        j = q->head;
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        q->waiting--;
        if (keel_request_cut(j->req)) {
            keel_request_resume(j->req, KEEL_E_UNAVAILABLE); /* drops it */
            continue;
        }
        start(q, j);
    }
}

static void after(uv_work_t *w, int status)
{
    struct job *j = w->data;
    struct keel_request *req = j->req;
    struct loopq *q = &queues[keel_request_thread(req)];

    (void)status;
    q->running--;
    pump(q);
    if (keel_request_cut(req))
        keel_request_resume(req, KEEL_E_UNAVAILABLE);
    else
        keel_request_resume(req, j->done(req, j->arg));
}

static void start(struct loopq *q, struct job *j)
{
    q->running++;
    if (uv_queue_work(keel_request_uv_loop(j->req), &j->work, run, after) < 0) {
        q->running--;
        keel_request_resume(j->req, keel_errorf(j->req, KEEL_E_INTERNAL, "uv_queue_work failed"));
    }
}

keel_status
auth_hashq_submit(struct keel_request *req, keel_work_fn work, keel_resume_fn done, void *arg)
{
    struct loopq *q = &queues[keel_request_thread(req)];
    struct job *j;

    if (q->running >= cap_per_loop && q->waiting >= HASHQ_MAX_WAITING) {
        keel_resp_set_header(req, "Retry-After", "1");
        return keel_fail(req, 503, NULL, "Too many sign-ins at once; try again shortly.");
    }
    j = keel_arena_calloc(req->arena, 1, sizeof(*j));
    if (!j)
        return KEEL_E_NOMEM;
    j->work.data = j;
    j->req = req;
    j->fn = work;
    j->done = done;
    j->arg = arg;
    if (q->running < cap_per_loop) {
        q->running++;
        if (uv_queue_work(keel_request_uv_loop(req), &j->work, run, after) < 0) {
            q->running--;
            return keel_errorf(req, KEEL_E_INTERNAL, "uv_queue_work failed");
        }
        return keel_request_park(req);
    }
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->waiting++;
    return keel_request_park(req);
}
