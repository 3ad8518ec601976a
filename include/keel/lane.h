/*
 * lane.h - a lane: a fixed set of threads that run blocking jobs in FIFO
 * order, with a bound on how long a job may wait for one of them
 * (docs/internals/storage.md "The storage lane").
 *
 * Why not libuv's thread pool: it wakes a sleeping thread for every job,
 * and is sized for the worst case (one thread per database connection, so
 * a hung database cannot take every thread). On a busy server that is two
 * context switches per job and a contended queue lock. A lane has few
 * threads that stay busy while jobs are queued, so a queued job costs no
 * wake-up; the bound on the wait keeps a hung dependency from turning a
 * queue into an unbounded delay: a job that waited longer than max_wait is
 * completed as expired, without running.
 *
 * Ownership: the caller owns each job (embed it in the object it serves);
 * the lane links it until complete() is called, once, on a lane thread.
 */
#ifndef KEEL_LANE_H
#define KEEL_LANE_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/core.h"

struct keel_lane;

struct keel_lane_job {
    /* Set by the caller before keel_lane_submit. */
    void (*run)(struct keel_lane_job *j);      /* a lane thread */
    void (*complete)(struct keel_lane_job *j); /* a lane thread, after run or instead of it */

    /* Set by the lane. */
    struct keel_lane_job *next;
    uint64_t queued_ns;
    bool expired; /* waited longer than max_wait: run was not called */
};

/* Starts nthreads (>= 1) threads; a job that waited max_wait_ms or more for
 * one is expired. `name` names the threads (at most 15 characters). Returns
 * KEEL_OK or KEEL_E_INTERNAL (no thread could start). */
keel_status
keel_lane_start(const char *name, unsigned nthreads, unsigned max_wait_ms, struct keel_lane **out);

/* Queues j. Any thread. After keel_lane_stop began, j is completed as
 * expired at once. */
void keel_lane_submit(struct keel_lane *l, struct keel_lane_job *j);

/* Jobs waiting for a thread now (for metrics and tests). */
unsigned keel_lane_queued(struct keel_lane *l);

/* Stops the lane: jobs still queued are completed as expired, running
 * ones finish, the threads are joined and l is freed. NULL is a no-op. */
void keel_lane_stop(struct keel_lane *l);

#endif
