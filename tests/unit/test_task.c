/*
 * test_task.c - tasks that are not requests (src/runtime/task.c, and the
 * task APIs of src/db/db.c and src/cache/cache_get.c): a task owned by a
 * libuv timer runs a storage call, a cache read (database, then L1) and a
 * thread-pool offload, each continued on the task's own loop through the
 * owner's resume function; a task whose owner went away is resumed with
 * KEEL_DONE without its callback; the loop is held while a task waits.
 * Real SQLite in a temporary directory, the runtime's test loop.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "keel/arena.h"
#include "keel/cache.h"
#include "keel/config.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/runtime.h"
#include "keel/task.h"

#include "test.h"

static char dir[64];
static struct keel_config cfg;
static struct keel_db *db;
static uv_loop_t *uv;
static pthread_t loop_thread;

/* A piece of work a timer starts: the task, and what its steps saw. */
struct timed {
    struct keel_task task;
    uv_timer_t timer;
    bool gone;
    int step;            /* which call the timer starts */
    unsigned resumed;    /* resume calls */
    keel_status last_rc; /* what the last resume got */
    unsigned done_calls; /* done callbacks run */
    bool done_on_loop;   /* every done ran on the loop's thread */
    int64_t value;       /* from the storage call */
    char cached[32];     /* from the cache read */
    const char *source;  /* "db" or "l1" */
    unsigned loads;      /* cache loads that ran */
    bool worked;         /* the offload's work ran */
};

static void timed_resume(struct keel_task *t, keel_status rc)
{
    struct timed *o = KEEL_CONTAINER_OF(t, struct timed, task);

    o->resumed++;
    o->last_rc = rc;
}

static bool timed_gone(const struct keel_task *t)
{
    const struct timed *o = (const struct timed *)(const void *)t; /* task is first */

    return o->gone;
}

static const struct keel_task_ops timed_ops = {.resume = timed_resume, .gone = timed_gone};

static void note_done(struct timed *o)
{
    o->done_calls++;
    o->done_on_loop = o->done_calls == 1
                          ? pthread_equal(pthread_self(), loop_thread)
                          : o->done_on_loop && pthread_equal(pthread_self(), loop_thread);
}

/* ------------------------------------------------------------- storage */

static keel_status select_answer(struct keel_db_conn *c, void *arg)
{
    struct timed *o = arg;
    struct keel_db_rows *r;
    keel_status rc = keel_db_query(c, "SELECT 41 + 1", NULL, 0, &r);

    if (rc < 0)
        return rc;
    if (keel_db_next(r) == KEEL_OK)
        o->value = keel_db_int64(r, 0);
    keel_db_rows_free(r);
    return KEEL_OK;
}

static keel_status db_done(struct keel_task *t, keel_status rc, void *arg)
{
    struct timed *o = arg;

    (void)t;
    note_done(o);
    return rc == KEEL_OK ? KEEL_DONE : rc;
}

/* --------------------------------------------------------------- cache */

static keel_status load_value(struct keel_db_conn *c, void *arg, struct keel_buf *out)
{
    struct timed *o = arg;

    (void)c;
    o->loads++;
    return keel_buf_appends(out, "forty-two");
}

static keel_status cache_done(struct keel_task *t,
                              keel_status rc,
                              const char *value,
                              size_t len,
                              const char *source,
                              void *arg)
{
    struct timed *o = arg;

    (void)t;
    note_done(o);
    if (rc == KEEL_OK && len < sizeof(o->cached)) {
        memcpy(o->cached, value, len);
        o->cached[len] = '\0';
    }
    o->source = source;
    return rc == KEEL_OK ? KEEL_DONE : rc;
}

/* ------------------------------------------------------------- offload */

static void work(void *arg)
{
    ((struct timed *)arg)->worked = true;
}

static keel_status work_done(struct keel_task *t, void *arg)
{
    (void)t;
    note_done(arg);
    return KEEL_DONE;
}

/* ----------------------------------------------------------- the timer */

static keel_status start_step(struct timed *o)
{
    switch (o->step) {
    case 0:
        return keel_db_run_task(&o->task, KEEL_DB_READ, select_answer, db_done, o);
    case 1:
        return keel_cache_get_task(&o->task, "tasktest:1", 60000, KEEL_DB_READ, load_value,
                                   cache_done, o);
    default:
        return keel_task_offload(&o->task, work, work_done, o);
    }
}

static void on_timer(uv_timer_t *t)
{
    struct timed *o = t->data;
    keel_status rc = start_step(o);

    if (rc != KEEL_AGAIN) { /* answered at once (an L1 hit) */
        o->resumed++;
        o->last_rc = rc;
    }
    uv_close((uv_handle_t *)&o->timer, NULL);
}

/* Runs step `step` from a timer on the loop until it is over. */
static void run_timed(struct timed *o, int step)
{
    memset(o, 0, sizeof(*o));
    keel_task_init(&o->task, &timed_ops, 0, keel_arena_new(KEEL_ARENA_BUDGET));
    o->step = step;
    uv_timer_init(uv, &o->timer);
    o->timer.data = o;
    uv_timer_start(&o->timer, on_timer, 1, 0);
    while (uv_run(uv, UV_RUN_ONCE) != 0 && o->resumed == 0)
        ;
    uv_run(uv, UV_RUN_NOWAIT); /* the timer's close */
}

static void timed_free(struct timed *o)
{
    keel_arena_destroy(o->task.arena);
}

static void test_storage_from_timer(void **state)
{
    struct timed o;

    (void)state;
    run_timed(&o, 0);
    assert_int_equal(o.resumed, 1);
    assert_int_equal(o.last_rc, KEEL_DONE);
    assert_int_equal(o.done_calls, 1);
    assert_true(o.done_on_loop);
    assert_int_equal(o.value, 42);
    assert_int_equal(o.task.holds, 0);
    timed_free(&o);
}

static void test_cache_from_timer(void **state)
{
    struct timed o;

    (void)state;
    run_timed(&o, 1); /* a miss: loaded on the storage lane, answered on the loop */
    assert_int_equal(o.resumed, 1);
    assert_int_equal(o.last_rc, KEEL_DONE);
    assert_int_equal(o.loads, 1);
    assert_string_equal(o.cached, "forty-two");
    assert_string_equal(o.source, "db");
    assert_true(o.done_on_loop);
    timed_free(&o);

    run_timed(&o, 1); /* now from L1, synchronously */
    assert_int_equal(o.resumed, 1);
    assert_int_equal(o.loads, 0);
    assert_string_equal(o.cached, "forty-two");
    assert_string_equal(o.source, "l1");
    assert_int_equal(o.task.holds, 0);
    timed_free(&o);
}

static void test_offload_from_timer(void **state)
{
    struct timed o;

    (void)state;
    run_timed(&o, 2);
    assert_true(o.worked);
    assert_int_equal(o.resumed, 1);
    assert_int_equal(o.last_rc, KEEL_DONE);
    assert_true(o.done_on_loop);
    timed_free(&o);
}

/* An owner that went away while its task waited: the storage call still
 * completes (its connection goes back to the pool), the done callback is
 * skipped, and the task is resumed with KEEL_DONE so its owner can drop
 * it. */
static void on_gone_timer(uv_timer_t *t)
{
    struct timed *o = t->data;

    assert_int_equal(keel_db_run_task(&o->task, KEEL_DB_READ, select_answer, db_done, o),
                     KEEL_AGAIN);
    o->gone = true;
    uv_close((uv_handle_t *)&o->timer, NULL);
}

static void test_gone_owner(void **state)
{
    struct timed o;

    (void)state;
    memset(&o, 0, sizeof(o));
    keel_task_init(&o.task, &timed_ops, 0, keel_arena_new(KEEL_ARENA_BUDGET));
    uv_timer_init(uv, &o.timer);
    o.timer.data = &o;
    uv_timer_start(&o.timer, on_gone_timer, 1, 0);
    while (uv_run(uv, UV_RUN_ONCE) != 0 && o.resumed == 0)
        ;
    uv_run(uv, UV_RUN_NOWAIT);
    assert_int_equal(o.resumed, 1);
    assert_int_equal(o.last_rc, KEEL_DONE);
    assert_int_equal(o.done_calls, 0);
    assert_int_equal(o.value, 42); /* the work itself ran */
    timed_free(&o);
}

/* keel_task_wait holds the task and its loop; keel_task_resume releases
 * both and hands the value to the owner. */
static void test_wait_and_resume(void **state)
{
    struct timed o;

    (void)state;
    memset(&o, 0, sizeof(o));
    keel_task_init(&o.task, &timed_ops, 0, NULL);
    assert_int_equal(keel_task_wait(&o.task), KEEL_AGAIN);
    assert_int_equal(keel_task_wait(&o.task), KEEL_AGAIN);
    assert_int_equal(o.task.holds, 2);
    keel_task_resume(&o.task, KEEL_AGAIN); /* a done that started its next wait */
    keel_task_resume(&o.task, KEEL_DONE);
    assert_int_equal(o.task.holds, 0);
    assert_int_equal(o.resumed, 2);
    assert_int_equal(o.last_rc, KEEL_DONE);
}

/* --------------------------------------------------------------- setup */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    static char url[128];

    (void)state;
    keel_log_init(KEEL_LOG_ERROR, 2);
    snprintf(dir, sizeof(dir), "/tmp/keel-test-task-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(url, sizeof(url), "sqlite:%s/t.db", dir);
    cfg.database_url = url;
    cfg.database_pool_size = 2;
    cfg.threads = 1;
    cfg.cache_enabled = true;
    cfg.cache_l1_bytes = 1 << 20;
    cfg.cache_l1_ttl_ms = 30000;
    if (keel_db_open(&cfg, &db) != KEEL_OK)
        return -1;
    keel_db_set_default(db);
    if (keel_cache_init(&cfg, db) != KEEL_OK)
        return -1;
    uv = keel__runtime_test_loop(&cfg);
    loop_thread = pthread_self();
    return uv ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    keel_cache_shutdown();
    keel_db_set_default(NULL);
    keel_db_close(db);
    return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_and_resume),  cmocka_unit_test(test_storage_from_timer),
        cmocka_unit_test(test_cache_from_timer), cmocka_unit_test(test_offload_from_timer),
        cmocka_unit_test(test_gone_owner),
    };

    return cmocka_run_group_tests_name("task", tests, setup, teardown);
}
