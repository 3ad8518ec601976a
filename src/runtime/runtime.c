/*
 * runtime.c - the event-loop threads, the work posted to them, signals and
 * the process lifecycle: start, ready, drain on SIGTERM/SIGINT, exit.
 *
 * DESIGN: one libuv loop per thread (KEEL_THREADS). What a loop serves is
 * up to the services added before the start (the HTTP listeners, later
 * the job workers): the runtime knows only that a service owes work on a
 * loop while it holds it (keel_loop_hold). The main thread owns signals:
 * on the first SIGTERM/SIGINT the state turns "draining" (readiness
 * answers 503), every loop is woken and tells its services to stop taking
 * work, checks every 50 ms whether anything still holds it, and closes
 * once nothing does. At the shutdown deadline the services are told to cut
 * what is left. When every loop has ended the process goes on to exit 0;
 * work stuck beyond the deadline (a query in a driver cannot be
 * cancelled) is abandoned a second later with _exit.
 *
 * Posts: each loop has one uv_async_t and a mutex-protected FIFO. A post
 * is only made for work a hold keeps open, and a loop closes only when no
 * hold is left, so a post never finds its loop closed.
 */
#include "keel/runtime.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "keel/config.h"
#include "keel/log.h"
#include "keel/metrics.h"

#define MAX_SERVICES  8
#define DRAIN_TICK_MS 50

struct rt_loop {
    unsigned id;
    uv_loop_t uv;
    uv_async_t wake; /* drain requests from the main thread */
    uv_timer_t tick; /* while draining: holds left, deadline */
    uv_async_t post; /* keel_loop_post: runs the posted work */
    pthread_mutex_t post_mu;
    struct keel_post *post_head, *post_tail; /* post_mu */
    bool post_closed;                        /* post_mu */
    uv_thread_t thread;
    unsigned holds;
    bool draining;
    uint64_t drain_deadline_ms; /* uv_now() value past which work is cut */
    bool closed;
    bool made;
    unsigned nstarted; /* services whose start succeeded here (the first ones) */
};

static struct {
    const struct keel_config *cfg;
    unsigned nloops;
    struct rt_loop *loops;
    _Atomic int state;
    int64_t start_ms;
    struct keel_runtime_service services[MAX_SERVICES];
    unsigned nservices;
} rt;

enum keel_runtime_state keel_runtime_state(void)
{
    return rt.loops ? (enum keel_runtime_state)atomic_load(&rt.state) : KEEL_RUNTIME_STARTING;
}

int64_t keel_runtime_uptime(void)
{
    return rt.loops ? (keel_wall_ms() - rt.start_ms) / 1000 : 0;
}

unsigned keel_runtime_loops(void)
{
    return rt.loops ? rt.nloops : 0;
}

uv_loop_t *keel_loop_uv(unsigned loop_id)
{
    KEEL_ASSERT(loop_id < rt.nloops);
    return &rt.loops[loop_id].uv;
}

keel_status keel_runtime_add(const struct keel_runtime_service *s)
{
    if (rt.nservices == MAX_SERVICES)
        return KEEL_E_TOO_LARGE;
    rt.services[rt.nservices++] = *s;
    return KEEL_OK;
}

static void close_hook(void *arg, unsigned loop_id, uv_loop_t *uv)
{
    void (*fn)(uv_loop_t *, unsigned) = (void (*)(uv_loop_t *, unsigned))arg;

    fn(uv, loop_id);
}

keel_status keel_runtime_on_loop_close(void (*fn)(uv_loop_t *uv, unsigned loop_id))
{
    struct keel_runtime_service s = {.name = "loop-close", .close = close_hook};

    /* A function pointer travels as the service's argument; POSIX
     * guarantees the conversion round-trips (dlsym relies on it). */
    s.arg = (void *)fn;
    return keel_runtime_add(&s);
}

/* --------------------------------------------------------------- holds */

void keel_loop_hold(unsigned loop_id)
{
    KEEL_ASSERT(loop_id < rt.nloops);
    rt.loops[loop_id].holds++;
}

void keel_loop_release(unsigned loop_id)
{
    KEEL_ASSERT(loop_id < rt.nloops && rt.loops[loop_id].holds > 0);
    rt.loops[loop_id].holds--;
}

/* --------------------------------------------------------------- posts */

static void on_post(uv_async_t *a)
{
    struct rt_loop *loop = a->data;
    struct keel_post *p, *next;

    pthread_mutex_lock(&loop->post_mu);
    p = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_mu);
    for (; p; p = next) {
        next = p->next; /* fn may free p */
        p->fn(p);
    }
}

void keel_loop_post(unsigned loop_id, struct keel_post *p)
{
    struct rt_loop *loop;

    if (KEEL_NEVER(loop_id >= rt.nloops))
        return;
    loop = &rt.loops[loop_id];
    p->next = NULL;
    pthread_mutex_lock(&loop->post_mu);
    if (KEEL_NEVER(loop->post_closed)) {
        pthread_mutex_unlock(&loop->post_mu);
        keel_log(KEEL_LOG_ERROR, "work posted to a closed loop dropped",
                 KEEL_LF_INT("thread", loop_id));
        return;
    }
    if (loop->post_tail)
        loop->post_tail->next = p;
    else
        loop->post_head = p;
    loop->post_tail = p;
    uv_async_send(&loop->post); /* under post_mu: the loop cannot close it meanwhile */
    pthread_mutex_unlock(&loop->post_mu);
}

/* -------------------------------------------------------------- drain */

static void drain_services(struct rt_loop *loop, bool force)
{
    unsigned i;

    for (i = 0; i < rt.nservices; i++)
        if (rt.services[i].drain)
            rt.services[i].drain(rt.services[i].arg, loop->id, force);
}

static void close_loop(struct rt_loop *loop)
{
    unsigned i;

    if (loop->closed)
        return;
    loop->closed = true;
    for (i = 0; i < loop->nstarted; i++)
        if (rt.services[i].close)
            rt.services[i].close(rt.services[i].arg, loop->id, &loop->uv);
    uv_close((uv_handle_t *)&loop->wake, NULL);
    uv_close((uv_handle_t *)&loop->tick, NULL);
    pthread_mutex_lock(&loop->post_mu);
    loop->post_closed = true;
    pthread_mutex_unlock(&loop->post_mu);
    uv_close((uv_handle_t *)&loop->post, NULL);
}

static void on_tick(uv_timer_t *t)
{
    struct rt_loop *loop = t->data;

    if (loop->holds == 0) {
        close_loop(loop);
        return;
    }
    if (uv_now(&loop->uv) >= loop->drain_deadline_ms)
        drain_services(loop, true); /* each service says what it cuts */
}

static void on_wake(uv_async_t *a)
{
    struct rt_loop *loop = a->data;

    if (loop->draining || keel_runtime_state() != KEEL_RUNTIME_DRAINING)
        return;
    loop->draining = true;
    loop->drain_deadline_ms = uv_now(&loop->uv) + rt.cfg->shutdown_timeout_ms;
    drain_services(loop, false);
    /* Check often while draining so the exit follows the last response. */
    uv_timer_start(&loop->tick, on_tick, 0, DRAIN_TICK_MS);
}

/* --------------------------------------------------------------- loops */

static uv_async_t loops_done;
static _Atomic unsigned nloops_done;

static void loop_main(void *arg)
{
    struct rt_loop *loop = arg;

    keel_metrics_thread_init(loop->id);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    atomic_fetch_add(&nloops_done, 1);
    uv_async_send(&loops_done);
}

static keel_status loop_make(struct rt_loop *loop, unsigned id, bool timers)
{
    loop->id = id;
    if (uv_loop_init(&loop->uv) < 0)
        return KEEL_E_INTERNAL;
    loop->made = true;
    pthread_mutex_init(&loop->post_mu, NULL);
    uv_async_init(&loop->uv, &loop->post, on_post);
    loop->post.data = loop;
    if (timers) {
        uv_async_init(&loop->uv, &loop->wake, on_wake);
        loop->wake.data = loop;
        uv_timer_init(&loop->uv, &loop->tick);
        loop->tick.data = loop;
    }
    return KEEL_OK;
}

static keel_status loop_start(struct rt_loop *loop)
{
    unsigned i;
    keel_status rc;

    for (i = 0; i < rt.nservices; i++, loop->nstarted++) {
        if (!rt.services[i].start)
            continue;
        rc = rt.services[i].start(rt.services[i].arg, loop->id, &loop->uv);
        if (rc < 0)
            return rc;
    }
    return KEEL_OK;
}

static void loop_free(struct rt_loop *loop, bool ran)
{
    if (!ran)
        close_loop(loop);             /* a failed start: its thread never ran to close it */
    uv_run(&loop->uv, UV_RUN_NOWAIT); /* run pending close callbacks */
    uv_loop_close(&loop->uv);
    pthread_mutex_destroy(&loop->post_mu);
}

/* ------------------------------------------------------ the main thread */

static uv_signal_t sigterm, sigint;
static uv_timer_t force_timer;

static void on_loops_done(uv_async_t *a)
{
    (void)a;
    if (atomic_load(&nloops_done) < rt.nloops)
        return;
    uv_close((uv_handle_t *)&loops_done, NULL);
    if (!uv_is_closing((uv_handle_t *)&force_timer))
        uv_close((uv_handle_t *)&force_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&sigterm)) {
        uv_close((uv_handle_t *)&sigterm, NULL);
        uv_close((uv_handle_t *)&sigint, NULL);
    }
}

/* The loops cut their work at the deadline, but work already on a thread
 * cannot be cancelled (a query stuck in a driver): past the deadline and
 * a grace second the process leaves without it. */
static void on_force(uv_timer_t *t)
{
    (void)t;
    keel_log(KEEL_LOG_WARN, "exit", KEEL_LF_INT("code", 0),
             KEEL_LF_STR("reason", "shutdown timeout: thread-pool work abandoned"));
    _exit(KEEL_EXIT_OK);
}

static void wake_all(unsigned n)
{
    unsigned i;

    for (i = 0; i < n; i++)
        uv_async_send(&rt.loops[i].wake);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    keel_log(KEEL_LOG_INFO, "draining",
             KEEL_LF_STR("signal", signum == SIGINT ? "SIGINT" : "SIGTERM"),
             KEEL_LF_INT("timeout_ms", (int64_t)rt.cfg->shutdown_timeout_ms));
    atomic_store(&rt.state, KEEL_RUNTIME_DRAINING);
    wake_all(rt.nloops);
    /* A second signal kills the process at once (default disposition). */
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_timer_start(&force_timer, on_force, rt.cfg->shutdown_timeout_ms + 1000, 0);
}

static keel_status start_all(unsigned *started)
{
    keel_status rc = KEEL_OK;
    unsigned i;

    for (i = 0; rc == KEEL_OK && i < rt.nservices; i++)
        if (rt.services[i].prepare)
            rc = rt.services[i].prepare(rt.services[i].arg, rt.nloops);
    for (i = 0; rc == KEEL_OK && i < rt.nloops; i++)
        rc = loop_make(&rt.loops[i], i, true);
    for (i = 0; rc == KEEL_OK && i < rt.nloops; i++)
        rc = loop_start(&rt.loops[i]);
    for (i = 0; rc == KEEL_OK && i < rt.nloops; i++, (*started)++)
        if (uv_thread_create(&rt.loops[i].thread, loop_main, &rt.loops[i]) != 0)
            rc = KEEL_E_INTERNAL;
    return rc;
}

static void run_ready(void)
{
    unsigned i;

    uv_signal_init(uv_default_loop(), &sigterm);
    uv_signal_init(uv_default_loop(), &sigint);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    atomic_store(&rt.state, KEEL_RUNTIME_READY);
    for (i = 0; i < rt.nservices; i++)
        if (rt.services[i].ready)
            rt.services[i].ready(rt.services[i].arg);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}

static void finish(unsigned started)
{
    unsigned i;

    for (i = 0; i < started; i++)
        uv_thread_join(&rt.loops[i].thread);
    for (i = 0; i < rt.nloops && rt.loops[i].made; i++)
        loop_free(&rt.loops[i], i < started);
    for (i = 0; i < rt.nservices; i++)
        if (rt.services[i].stop)
            rt.services[i].stop(rt.services[i].arg);
    uv_loop_close(uv_default_loop());
    free(rt.loops);
    rt.loops = NULL;
    rt.nloops = 0;
    rt.nservices = 0;
    atomic_store(&nloops_done, 0);
}

keel_status keel_runtime_run(const struct keel_config *cfg)
{
    unsigned started = 0;
    keel_status rc;

    rt.cfg = cfg;
    rt.nloops = cfg->threads;
    rt.start_ms = keel_wall_ms();
    atomic_store(&rt.state, KEEL_RUNTIME_STARTING);
    signal(SIGPIPE, SIG_IGN);
    rt.loops = keel_xcalloc(rt.nloops, sizeof(*rt.loops));
    uv_async_init(uv_default_loop(), &loops_done, on_loops_done);
    uv_timer_init(uv_default_loop(), &force_timer);
    rc = start_all(&started);
    if (rc == KEEL_OK) {
        run_ready();
    } else {
        /* Start-up failed: stop the loops that run, then clean up. */
        atomic_store(&rt.state, KEEL_RUNTIME_DRAINING);
        wake_all(started);
        uv_close((uv_handle_t *)&loops_done, NULL);
        uv_close((uv_handle_t *)&force_timer, NULL);
        uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    }
    finish(started);
    return rc;
}

uv_loop_t *keel__runtime_test_loop(const struct keel_config *cfg)
{
    static struct rt_loop loop;

    rt.cfg = cfg;
    rt.nloops = 1;
    rt.loops = &loop;
    rt.start_ms = keel_wall_ms();
    atomic_store(&rt.state, KEEL_RUNTIME_READY);
    if (!loop.made && loop_make(&loop, 0, false) < 0)
        return NULL;
    return &loop.uv;
}
