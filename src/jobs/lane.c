/*
 * lane.c - the engine's own storage work (claims, flushes, heartbeats,
 * reaping, relaying): run on the storage lane, finished on a loop.
 *
 * DESIGN: these are not tasks of a request, and nothing waits for them
 * but the engine itself, so they go to the lane directly (as the cache's
 * loads do) and come back with keel_loop_post. The loop is held from the
 * submit to the done, so it stays open for the answer. An op that waited
 * too long for a lane thread still runs its done, with nothing run: the
 * submitter's argument says "nothing happened" until run says otherwise,
 * and the engine tries again on its next tick.
 */
#include <stdlib.h>

#include "keel/db.h"

#include "jobs_int.h"

struct op {
    struct keel_lane_job lane;
    struct keel_post post;
    unsigned loop;
    jobs_op_fn run, done;
    void *arg;
};

static void op_run(struct keel_lane_job *j)
{
    struct op *o = KEEL_CONTAINER_OF(j, struct op, lane);

    o->run(o->arg);
}

static void op_finish(struct keel_post *p)
{
    struct op *o = KEEL_CONTAINER_OF(p, struct op, post);
    unsigned loop = o->loop;

    o->done(o->arg);
    free(o);
    keel_loop_release(loop);
}

static void op_complete(struct keel_lane_job *j)
{
    struct op *o = KEEL_CONTAINER_OF(j, struct op, lane);

    keel_loop_post(o->loop, &o->post);
}

void keel__jobs_op(unsigned loop, jobs_op_fn run, jobs_op_fn done, void *arg)
{
    struct op *o = keel_xcalloc(1, sizeof(*o));

    o->lane.run = op_run;
    o->lane.complete = op_complete;
    o->post.fn = op_finish;
    o->loop = loop;
    o->run = run;
    o->done = done;
    o->arg = arg;
    keel_loop_hold(loop);
    keel_lane_submit(keel_db_lane(keel__jobs.db), &o->lane);
}
