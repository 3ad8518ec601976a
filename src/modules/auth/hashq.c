/*
 * hashq.c - the password-hash queue: at most `cap` Argon2id computations
 * per loop at once, the rest waiting in a bounded FIFO (issue 4: "a login
 * flood cannot exhaust memory or starve other requests").
 *
 * DESIGN: the cap is split across the loops (ceil(concurrency / threads)
 * each) so each loop's queue is touched only by its own thread: no lock,
 * no atomics. A hash is a task of its own (keel/task.h) run with the
 * shared offload (keel_task_offload, libuv's thread pool): unlike the
 * request it serves, it never goes away, so its end always frees its slot
 * and starts the next hash, and only then is the request answered (or
 * dropped, when its client left). The pool is sized for the database
 * pools plus four, so hashing can never take every thread the database
 * needs. Memory for hashing is bounded by threads x cap x
 * KEEL_PASSWORD_MEMORY. A queued request is parked (its connection held);
 * one cut meanwhile is dropped when its turn comes.
 */
#include <stdlib.h>

#include "keel/config.h"
#include "keel/log.h"

#include "auth_int.h"

#define HASHQ_MAX_WAITING 256

struct job {
    struct keel_task task; /* the hash, on the request's loop */
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

static keel_status start(struct loopq *q, struct job *j);

/* Starts waiting jobs while slots are free; drops those whose client
 * left. */
static void pump(struct loopq *q)
{
    struct job *j;
    keel_status rc;

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
        rc = start(q, j);
        if (rc < 0)
            keel_request_resume(j->req, rc);
    }
}

static keel_status hashed(struct keel_task *t, void *arg)
{
    (void)t;
    (void)arg;
    return KEEL_OK;
}

/* The hash is over: free its slot, start the next, then answer. */
static void hash_resume(struct keel_task *t, keel_status rc)
{
    struct job *j = KEEL_CONTAINER_OF(t, struct job, task);
    struct keel_request *req = j->req;
    struct loopq *q = &queues[keel_request_thread(req)];

    (void)rc;
    q->running--;
    pump(q);
    if (keel_request_cut(req))
        keel_request_resume(req, KEEL_E_UNAVAILABLE);
    else
        keel_request_resume(req, j->done(req, j->arg));
}

static const struct keel_task_ops hash_task = {.resume = hash_resume};

/* Runs j's hash; an error means it did not start (the slot stays free). */
static keel_status start(struct loopq *q, struct job *j)
{
    keel_status rc;

    q->running++;
    rc = keel_task_offload(&j->task, j->fn, hashed, j->arg);
    if (rc == KEEL_AGAIN)
        return KEEL_OK;
    q->running--;
    return keel_errorf(j->req, rc, "password hash: %s", keel_strerror(rc));
}

keel_status
auth_hashq_submit(struct keel_request *req, keel_work_fn work, keel_resume_fn done, void *arg)
{
    struct loopq *q = &queues[keel_request_thread(req)];
    struct job *j;
    keel_status rc;

    if (q->running >= cap_per_loop && q->waiting >= HASHQ_MAX_WAITING) {
        keel_resp_set_header(req, "Retry-After", "1");
        return keel_fail(req, 503, NULL, "Too many sign-ins at once; try again shortly.");
    }
    j = keel_arena_calloc(req->arena, 1, sizeof(*j));
    if (!j)
        return KEEL_E_NOMEM;
    keel_task_init(&j->task, &hash_task, keel_request_thread(req), req->arena);
    j->task.log = req->task.log;
    j->req = req;
    j->fn = work;
    j->done = done;
    j->arg = arg;
    if (q->running < cap_per_loop) {
        rc = start(q, j);
        if (rc < 0)
            return rc;
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
