/*
 * lane.c - a fixed set of threads running blocking jobs in FIFO order,
 * with a bounded wait (include/keel/lane.h).
 *
 * DESIGN: one mutex-protected FIFO, worker threads that sleep only while it
 * is empty (a submit signals the condition only when a worker is idle), and
 * a reaper thread that wakes every REAP_MS to complete the jobs at the head
 * that have waited max_wait or more. The reaper matters only when every
 * worker is stuck (a hung database): otherwise workers pop jobs long before
 * they expire, and check the wait themselves as they pop. Jobs are
 * completed outside the lock.
 */
#include "keel/lane.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REAP_MS 100

struct keel_lane {
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* workers: a job was queued, or stop */
    pthread_cond_t reap_cv; /* the reaper's timed sleep; stop */
    struct keel_lane_job *head, *tail;
    unsigned nqueued;
    unsigned nidle;
    bool stop;
    uint64_t max_wait_ns;
    unsigned nthreads; /* started */
    pthread_t *threads;
    pthread_t reaper;
    bool reaping;
    char name[16];
};

static bool waited_too_long(const struct keel_lane *l, const struct keel_lane_job *j, uint64_t now)
{
    return now - j->queued_ns >= l->max_wait_ns;
}

/* Completes a detached list of jobs as expired (no lock held). */
static void expire_all(struct keel_lane_job *j)
{
    struct keel_lane_job *next;

    for (; j; j = next) {
        next = j->next; /* complete may free j */
        j->next = NULL;
        j->expired = true;
        j->complete(j);
    }
}

static void *worker(void *arg)
{
    struct keel_lane *l = arg;
    struct keel_lane_job *j;

    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->head && !l->stop) {
            l->nidle++;
            pthread_cond_wait(&l->work_cv, &l->mu);
            l->nidle--;
        }
        if (l->stop)
            break;
        j = l->head;
        l->head = j->next;
        if (!l->head)
            l->tail = NULL;
        l->nqueued--;
        pthread_mutex_unlock(&l->mu);
        j->next = NULL;
        j->expired = waited_too_long(l, j, keel_now_ns());
        if (!j->expired)
            j->run(j);
        j->complete(j);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void *reaper(void *arg)
{
    struct keel_lane *l = arg;
    struct keel_lane_job *done, **tailp;
    struct timespec ts;
    uint64_t now;

    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        ts = keel_deadline_in(CLOCK_MONOTONIC, REAP_MS);
        pthread_cond_timedwait(&l->reap_cv, &l->mu, &ts);
        if (l->stop)
            break;
        /* The expired jobs are a prefix of the FIFO. */
        now = keel_now_ns();
        done = NULL;
        tailp = &done;
        while (l->head && waited_too_long(l, l->head, now)) {
            *tailp = l->head;
            tailp = &l->head->next;
            l->head = l->head->next;
            l->nqueued--;
        }
        *tailp = NULL;
        if (!l->head)
            l->tail = NULL;
        if (done) {
            pthread_mutex_unlock(&l->mu);
            expire_all(done);
            pthread_mutex_lock(&l->mu);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

keel_status
keel_lane_start(const char *name, unsigned nthreads, unsigned max_wait_ms, struct keel_lane **out)
{
    struct keel_lane *l;
    pthread_condattr_t ca;
    char tname[32];
    unsigned i;

    *out = NULL;
    if (nthreads == 0)
        return KEEL_E_INVALID;
    l = keel_xcalloc(1, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->max_wait_ns = (uint64_t)max_wait_ms * 1000000u;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->reap_cv, &ca);
    pthread_condattr_destroy(&ca);
    l->threads = keel_xcalloc(nthreads, sizeof(*l->threads));
    for (i = 0; i < nthreads; i++) {
        if (pthread_create(&l->threads[i], NULL, worker, l) != 0)
            break;
        snprintf(tname, sizeof(tname), "%.10s-%u", l->name, i % 1000);
        tname[15] = '\0'; /* the kernel's limit */
        pthread_setname_np(l->threads[i], tname);
        l->nthreads++;
    }
    if (l->nthreads > 0 && pthread_create(&l->reaper, NULL, reaper, l) == 0) {
        l->reaping = true;
        snprintf(tname, sizeof(tname), "%.10s-reap", l->name);
        tname[15] = '\0';
        pthread_setname_np(l->reaper, tname);
    }
    if (!l->reaping) {
        keel_lane_stop(l);
        return KEEL_E_INTERNAL;
    }
    *out = l;
    return KEEL_OK;
}

void keel_lane_submit(struct keel_lane *l, struct keel_lane_job *j)
{
    j->next = NULL;
    j->expired = false;
    j->queued_ns = keel_now_ns();
    pthread_mutex_lock(&l->mu);
    if (l->stop) {
        pthread_mutex_unlock(&l->mu);
        expire_all(j);
        return;
    }
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    l->nqueued++;
    if (l->nidle > 0) /* a busy lane wakes nobody: the next free worker pops it */
        pthread_cond_signal(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
}

unsigned keel_lane_queued(struct keel_lane *l)
{
    unsigned n;

    pthread_mutex_lock(&l->mu);
    n = l->nqueued;
    pthread_mutex_unlock(&l->mu);
    return n;
}

void keel_lane_stop(struct keel_lane *l)
{
    struct keel_lane_job *left;
    unsigned i;

    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    left = l->head;
    l->head = l->tail = NULL;
    l->nqueued = 0;
    pthread_cond_broadcast(&l->work_cv);
    pthread_cond_broadcast(&l->reap_cv);
    pthread_mutex_unlock(&l->mu);
    expire_all(left);
    for (i = 0; i < l->nthreads; i++)
        pthread_join(l->threads[i], NULL);
    if (l->reaping)
        pthread_join(l->reaper, NULL);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->reap_cv);
    pthread_mutex_destroy(&l->mu);
    free(l->threads);
    free(l);
}
