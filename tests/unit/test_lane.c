/*
 * test_lane.c - the lane (src/core/lane.c): every job runs and completes
 * once, in FIFO order on one thread; jobs queued behind stuck threads are
 * completed as expired by the reaper (without running) while the stuck
 * job goes on; a job that waited too long is expired by the worker that
 * pops it; stop expires what is still queued and waits for what runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>

#include "keel/lane.h"

#define NJOBS 200

struct tjob {
    struct keel_lane_job lj;
    int id;
    bool block; /* run waits until the test opens the gate */
    bool ran;
    bool completed;
    bool expired;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int running; /* blocked jobs inside run */
static int order[NJOBS], norder;
static int ncompleted;
static int twice; /* completions of a job already completed */

static void reset(void)
{
    gate_open = false;
    twice = 0;
    running = 0;
    norder = 0;
    ncompleted = 0;
}

static void run(struct keel_lane_job *lj)
{
    struct tjob *t = (struct tjob *)lj;

    pthread_mutex_lock(&mu);
    t->ran = true;
    order[norder++] = t->id;
    if (t->block) {
        running++;
        pthread_cond_broadcast(&cv);
        while (!gate_open)
            pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
}

static void complete(struct keel_lane_job *lj)
{
    struct tjob *t = (struct tjob *)lj;

    pthread_mutex_lock(&mu);
    twice += t->completed; /* checked by the test thread: once only */
    t->completed = true;
    t->expired = lj->expired;
    ncompleted++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void init_job(struct tjob *t, int id, bool block)
{
    memset(t, 0, sizeof(*t));
    t->id = id;
    t->block = block;
    t->lj.run = run;
    t->lj.complete = complete;
}

static void wait_for(int *counter, int want)
{
    pthread_mutex_lock(&mu);
    while (*counter < want)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void open_gate(void)
{
    pthread_mutex_lock(&mu);
    gate_open = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void test_runs_all_in_order(void **state)
{
    static struct tjob jobs[NJOBS];
    struct keel_lane *l;
    int i;

    (void)state;
    reset();
    assert_int_equal(keel_lane_start("t-order", 1, 60000, &l), KEEL_OK);
    for (i = 0; i < NJOBS; i++) {
        init_job(&jobs[i], i, false);
        keel_lane_submit(l, &jobs[i].lj);
    }
    wait_for(&ncompleted, NJOBS);
    assert_int_equal(twice, 0);
    for (i = 0; i < NJOBS; i++) {
        assert_true(jobs[i].ran);
        assert_false(jobs[i].expired);
        assert_int_equal(order[i], i); /* one thread: FIFO */
    }
    assert_int_equal(keel_lane_queued(l), 0);
    keel_lane_stop(l);
}

static void test_many_threads(void **state)
{
    static struct tjob jobs[NJOBS];
    struct keel_lane *l;
    int i;

    (void)state;
    reset();
    assert_int_equal(keel_lane_start("t-many", 4, 60000, &l), KEEL_OK);
    for (i = 0; i < NJOBS; i++) {
        init_job(&jobs[i], i, false);
        keel_lane_submit(l, &jobs[i].lj);
    }
    wait_for(&ncompleted, NJOBS);
    for (i = 0; i < NJOBS; i++)
        assert_true(jobs[i].ran && jobs[i].completed && !jobs[i].expired);
    keel_lane_stop(l);
}

static void test_stuck_threads_expire_the_queue(void **state)
{
    struct tjob stuck[2], queued[3];
    struct keel_lane *l;
    int i;

    (void)state;
    reset();
    assert_int_equal(keel_lane_start("t-stuck", 2, 150, &l), KEEL_OK);
    for (i = 0; i < 2; i++) {
        init_job(&stuck[i], i, true);
        keel_lane_submit(l, &stuck[i].lj);
    }
    wait_for(&running, 2);
    for (i = 0; i < 3; i++) {
        init_job(&queued[i], 10 + i, false);
        keel_lane_submit(l, &queued[i].lj);
    }
    assert_int_equal(keel_lane_queued(l), 3);
    /* Both threads are stuck: the reaper completes the queue, unrun. */
    wait_for(&ncompleted, 3);
    for (i = 0; i < 3; i++)
        assert_true(queued[i].completed && queued[i].expired && !queued[i].ran);
    assert_false(stuck[0].completed || stuck[1].completed);
    assert_int_equal(keel_lane_queued(l), 0);
    open_gate();
    wait_for(&ncompleted, 5);
    assert_int_equal(twice, 0);
    for (i = 0; i < 2; i++)
        assert_true(stuck[i].ran && !stuck[i].expired);
    keel_lane_stop(l);
}

static void test_zero_wait_expires_at_pop(void **state)
{
    struct tjob t;
    struct keel_lane *l;

    (void)state;
    reset();
    /* max_wait 0: any job has waited "too long" when a worker pops it. */
    assert_int_equal(keel_lane_start("t-zero", 1, 0, &l), KEEL_OK);
    init_job(&t, 1, false);
    keel_lane_submit(l, &t.lj);
    wait_for(&ncompleted, 1);
    assert_true(t.expired && !t.ran);
    keel_lane_stop(l);
}

struct stopper {
    struct keel_lane *l;
};

static void *stop_thread(void *arg)
{
    keel_lane_stop(((struct stopper *)arg)->l);
    return NULL;
}

static void test_stop_expires_queued_waits_running(void **state)
{
    struct tjob busy, left;
    struct stopper s;
    pthread_t th;

    (void)state;
    reset();
    assert_int_equal(keel_lane_start("t-stop", 1, 60000, &s.l), KEEL_OK);
    init_job(&busy, 1, true);
    keel_lane_submit(s.l, &busy.lj);
    wait_for(&running, 1);
    init_job(&left, 2, false);
    keel_lane_submit(s.l, &left.lj);
    assert_int_equal(pthread_create(&th, NULL, stop_thread, &s), 0);
    wait_for(&ncompleted, 1); /* stop expires the queued job at once */
    assert_true(left.completed && left.expired && !left.ran);
    assert_false(busy.completed);
    open_gate();
    assert_int_equal(pthread_join(th, NULL), 0); /* ... and waits for the running one */
    assert_true(busy.completed && busy.ran && !busy.expired);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_all_in_order),
        cmocka_unit_test(test_many_threads),
        cmocka_unit_test(test_stuck_threads_expire_the_queue),
        cmocka_unit_test(test_zero_wait_expires_at_pop),
        cmocka_unit_test(test_stop_expires_queued_waits_running),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
