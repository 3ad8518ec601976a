/*
 * test_runtime.c - the loop runtime without HTTP (src/runtime/runtime.c):
 * a service of its own gets every loop, a post from the main thread runs
 * on the loop it was posted to, SIGTERM drains, a loop stays open while
 * held and closes once released, the services are closed and stopped,
 * and keel_runtime_run returns KEEL_OK. A failing start stops cleanly.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <uv.h>

#include "keel/config.h"
#include "keel/log.h"
#include "keel/runtime.h"

#include "test.h"

#define NLOOPS 2

struct loop_state {
    struct keel_post post;
    unsigned id;
    uv_timer_t release; /* the held work finishes a moment after the drain */
    pthread_t thread;   /* where the post ran */
    bool posted, drained, forced, closed;
};

static struct {
    struct loop_state loops[NLOOPS];
    pthread_t main;
    unsigned prepared, started, ready, stopped;
    keel_status fail_start; /* KEEL_OK, or what start returns for loop 1 */
    _Atomic int state_at_drain;
} S;

static void on_post(struct keel_post *p)
{
    struct loop_state *l = KEEL_CONTAINER_OF(p, struct loop_state, post);

    l->posted = true;
    l->thread = pthread_self();
}

static keel_status svc_prepare(void *arg, unsigned nloops)
{
    (void)arg;
    S.prepared = nloops;
    return KEEL_OK;
}

static keel_status svc_start(void *arg, unsigned id, uv_loop_t *uv)
{
    (void)arg;
    if (id == 1 && S.fail_start < 0)
        return S.fail_start;
    S.loops[id].id = id;
    uv_timer_init(uv, &S.loops[id].release);
    S.loops[id].release.data = &S.loops[id];
    keel_loop_hold(id); /* work owed on this loop until after the drain */
    S.started++;
    return KEEL_OK;
}

static void svc_ready(void *arg)
{
    unsigned i;

    (void)arg;
    S.ready++;
    for (i = 0; i < NLOOPS; i++) {
        S.loops[i].post.fn = on_post;
        keel_loop_post(i, &S.loops[i].post);
    }
    raise(SIGTERM);
}

static void on_release(uv_timer_t *t)
{
    struct loop_state *l = t->data;

    keel_loop_release(l->id);
}

static void svc_drain(void *arg, unsigned id, bool force)
{
    (void)arg;
    if (force) {
        S.loops[id].forced = true;
        return;
    }
    S.loops[id].drained = true;
    atomic_store(&S.state_at_drain, keel_runtime_state());
    uv_timer_start(&S.loops[id].release, on_release, 100, 0);
}

static void svc_close(void *arg, unsigned id, uv_loop_t *uv)
{
    (void)arg;
    (void)uv;
    S.loops[id].closed = true;
    uv_close((uv_handle_t *)&S.loops[id].release, NULL);
}

static void svc_stop(void *arg)
{
    (void)arg;
    S.stopped++;
}

static const struct keel_runtime_service svc = {
    .name = "test",
    .prepare = svc_prepare,
    .start = svc_start,
    .ready = svc_ready,
    .drain = svc_drain,
    .close = svc_close,
    .stop = svc_stop,
};

static struct keel_config config(void)
{
    struct keel_config cfg = {0};

    cfg.threads = NLOOPS;
    cfg.shutdown_timeout_ms = 5000;
    return cfg;
}

static void test_lifecycle_without_http(void **state)
{
    struct keel_config cfg = config();
    uint64_t t0 = keel_now_ns();
    unsigned i;

    (void)state;
    memset(&S, 0, sizeof(S));
    S.main = pthread_self();
    assert_int_equal(keel_runtime_add(&svc), KEEL_OK);
    assert_int_equal(keel_runtime_run(&cfg), KEEL_OK);
    assert_int_equal(S.prepared, NLOOPS);
    assert_int_equal(S.started, NLOOPS);
    assert_int_equal(S.ready, 1);
    assert_int_equal(S.stopped, 1);
    assert_int_equal(atomic_load(&S.state_at_drain), KEEL_RUNTIME_DRAINING);
    for (i = 0; i < NLOOPS; i++) {
        assert_true(S.loops[i].posted);
        assert_false(pthread_equal(S.loops[i].thread, S.main));
        assert_true(S.loops[i].drained);
        assert_false(S.loops[i].forced); /* released long before the deadline */
        assert_true(S.loops[i].closed);
    }
    /* It waited for the held work (100 ms), not for the deadline (5 s). */
    assert_true(keel_now_ns() - t0 >= 100000000ull);
    assert_true(keel_now_ns() - t0 < 4000000000ull);
    assert_int_equal(keel_runtime_loops(), 0);
}

static void test_failed_start(void **state)
{
    struct keel_config cfg = config();

    (void)state;
    memset(&S, 0, sizeof(S));
    S.fail_start = KEEL_E_UNAVAILABLE;
    assert_int_equal(keel_runtime_add(&svc), KEEL_OK);
    assert_int_equal(keel_runtime_run(&cfg), KEEL_E_UNAVAILABLE);
    assert_int_equal(S.ready, 0);
    assert_int_equal(S.stopped, 1); /* stop cleans up after a failed start too */
    /* Services are forgotten after a run: another run starts afresh. */
    S.fail_start = KEEL_OK;
    memset(&S.loops, 0, sizeof(S.loops));
    S.prepared = S.started = S.ready = S.stopped = 0;
    assert_int_equal(keel_runtime_add(&svc), KEEL_OK);
    assert_int_equal(keel_runtime_run(&cfg), KEEL_OK);
    assert_int_equal(S.started, NLOOPS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle_without_http),
        cmocka_unit_test(test_failed_start),
    };

    keel_log_init(KEEL_LOG_ERROR, 2);
    return cmocka_run_group_tests_name("runtime", tests, NULL, NULL);
}
