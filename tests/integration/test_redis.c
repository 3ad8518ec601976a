/*
 * test_redis.c - the Redis client (include/keel/redis.h) against the real
 * server KEEL_TEST_REDIS_URL names (redis://host:port[/db], started on
 * loopback by the test harness, tests/lib/servers.py); exits 77 (skip)
 * without it.
 *
 * Each test drives its own libuv loop as "loop 0" and checks what callers
 * rely on: replies and their order in a pipeline, error replies, AUTH and
 * SELECT, command timeouts (BLPOP blocks the server side for us: DEBUG
 * SLEEP is disabled by default since Redis 7), a dead peer, reconnection
 * after the server kills the connection, fail-fast and the breaker, loop
 * shutdown with commands in flight, and the blocking readiness probe.
 * Only the server is real; the "dead peer" is a listening socket of the
 * test that never answers, the "unreachable server" a listener whose accept
 * queue is full (SYNs are dropped), the "down server" a port nobody
 * listens on. Needs Redis >= 6 (ACL users, fractional BLPOP timeouts).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "keel/breaker.h"
#include "keel/buf.h"
#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/redis.h"

#include "test.h"

static const char *url; /* KEEL_TEST_REDIS_URL */
static char host[128];
static int port;
static uv_loop_t loop;

#define CHECK_RC(expr, want)                                                                       \
    do {                                                                                           \
        keel_status rc_ = (expr);                                                                  \
        if (rc_ != (want))                                                                         \
            fail_msg("%s:%d: %s returned %s, expected %s", __FILE__, __LINE__, #expr,              \
                     keel_status_name(rc_), keel_status_name(want));                               \
    } while (0)

/* ------------------------------------------------------------- helpers */

/* What a callback saw, flattened to text: "+OK", ":3", "\"v\"", "nil",
 * "-ERR ...", "[:1,[\"x\"]]". */
struct res {
    int calls;
    keel_status rc;
    char text[256];
    int order; /* completion sequence number */
    uint64_t at_ms;
};

static int seq;

static void describe(struct keel_buf *b, const struct keel_redis_reply *r)
{
    size_t i;

    switch (r->type) {
    case KEEL_REDIS_NIL:
        keel_buf_appends(b, "nil");
        break;
    case KEEL_REDIS_STRING:
        keel_buf_appendc(b, '"');
        keel_buf_append(b, r->str, r->len);
        keel_buf_appendc(b, '"');
        break;
    case KEEL_REDIS_STATUS:
        keel_buf_appendc(b, '+');
        keel_buf_append(b, r->str, r->len);
        break;
    case KEEL_REDIS_ERROR:
        keel_buf_appendc(b, '-');
        keel_buf_append(b, r->str, r->len);
        break;
    case KEEL_REDIS_INTEGER:
        keel_buf_appendf(b, ":%lld", r->integer);
        break;
    case KEEL_REDIS_ARRAY:
        keel_buf_appendc(b, '[');
        for (i = 0; i < r->elements; i++) {
            if (i)
                keel_buf_appendc(b, ',');
            describe(b, &r->element[i]);
        }
        keel_buf_appendc(b, ']');
        break;
    }
}

static void on_res(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    struct res *res = arg;
    struct keel_buf b;

    res->calls++;
    res->rc = rc;
    res->order = ++seq;
    res->at_ms = uv_now(&loop);
    res->text[0] = '\0';
    if (rc == KEEL_OK || rc == KEEL_E_INTERNAL) {
        assert_non_null(r);
        keel_buf_init(&b, sizeof(res->text) - 1);
        describe(&b, r);
        if (b.data) {
            memcpy(res->text, b.data, b.len);
            res->text[b.len] = '\0';
        }
        keel_buf_free(&b);
    } else {
        assert_null(r);
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *n >= want or ms have passed; returns *n >= want. */
static bool run_until(const int *n, int want, unsigned ms)
{
    uv_timer_t guard;
    uint64_t end;

    uv_update_time(&loop);
    end = uv_now(&loop) + ms;
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, on_tick, 5, 5);
    while (*n < want && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return *n >= want;
}

static void run_for(unsigned ms)
{
    int never = 0;

    run_until(&never, 1, ms);
}

static const struct keel_redis_opts default_opts = {0};
static int devnull = -1;

/* Expected warnings (a server down, a refused password) stay out of the
 * test output. */
static void quiet(void)
{
    keel_log_init(KEEL_LOG_ERROR, devnull);
}

static void loud(void)
{
    keel_log_init(KEEL_LOG_INFO, 1);
}

static void start(const char *u, const struct keel_redis_opts *o)
{
    CHECK_RC(keel_redis_init_opts(u, 1, o ? o : &default_opts), KEEL_OK);
}

/* Closes loop 0's connection, lets its handles close, and frees the
 * client: the loop must then have no handle left (checked in main). */
static void stop(void)
{
    keel_redis_loop_close(&loop, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    keel_redis_shutdown();
}

static keel_status cmd(struct res *r, const char *fmt, ...)
{
    va_list ap;
    keel_status rc;

    va_start(ap, fmt);
    rc = keel_redis_vcommand(&loop, 0, on_res, r, fmt, ap);
    va_end(ap);
    return rc;
}

/* One command, waited for; returns its result. */
static struct res cmd_wait(const char *fmt, const char *arg)
{
    struct res r = {0};

    CHECK_RC(cmd(&r, fmt, arg), KEEL_OK);
    assert_true(run_until(&r.calls, 1, 3000));
    return r;
}

/* A blocking side connection to the test server, for setup and checks. */
static redisContext *side(void)
{
    redisContext *c = redisConnectWithTimeout(host, port, (struct timeval){2, 0});

    assert_non_null(c);
    assert_int_equal(c->err, 0);
    return c;
}

static void side_cmd(redisContext *c, const char *expect_prefix, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (expect_prefix && !(r->str && strncmp(r->str, expect_prefix, strlen(expect_prefix)) == 0))
        fail_msg("side command: got %s", r->str ? r->str : "(no string)");
    freeReplyObject(r);
}

/* A loopback listener that accepts nothing and never answers: connects
 * succeed (the backlog), commands get no reply. */
static int listener(int *port_out, int backlog)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, backlog), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port_out = ntohs(a.sin_port);
    return fd;
}

static int silent_listener(int *port_out)
{
    return listener(port_out, 16);
}

/* A loopback port nobody listens on. */
static int closed_port(void)
{
    int p, fd = silent_listener(&p);

    close(fd);
    return p;
}

static double metric(const char *series)
{
    struct keel_buf b;
    const char *p;
    double v = -1;

    keel_buf_init(&b, 1 << 20);
    assert_int_equal(keel_metrics_render(&b), KEEL_OK);
    p = b.data ? strstr(b.data, series) : NULL;
    if (p && p[strlen(series)] == ' ')
        v = strtod(p + strlen(series) + 1, NULL);
    keel_buf_free(&b);
    return v;
}

/* --------------------------------------------------------------- tests */

static void test_urls_and_disabled(void **state)
{
    static const char *const bad[] = {
        "http://h",        "redis://",         "redis://:6379",   "redis://h:0",
        "redis://h:65536", "redis://h:12x",    "redis://h/abc",   "redis://user@h",
        "rediss://h:6379", "unix://",          "unix://rel/path", "unix:///s?db=x",
        "unix:///s?x=1",   "redis://[::1",     "redis://[::1]x",  "redis://h?db=1",
        "redis://:%zz@h",  "redis://:a%00b@h", "redis://h/-1",    "redis://h:6379/1/2",
    };
    static const char *const good[] = {
        "redis://127.0.0.1:6379/0", "redis://:p%40ss@h:1/2",   "redis://u:p@h",
        "redis://[::1]:6379",       "redis://[::1]",           "redis://h/",
        "unix:///tmp/x.sock",       "unix:///tmp/x.sock?db=3", "unix://:pw@/tmp/x.sock",
    };
    struct res r = {0};
    size_t i;

    (void)state;
    quiet(); /* the invalid-URL lines */
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        if (keel_redis_init_opts(bad[i], 1, NULL) != KEEL_E_INVALID)
            fail_msg("accepted %s", bad[i]);
        assert_false(keel_redis_enabled());
        keel_redis_shutdown();
        CHECK_RC(keel_redis_ping_sync(bad[i], 100, NULL), KEEL_E_INVALID);
    }
    loud();
    for (i = 0; i < KEEL_ARRAY_LEN(good); i++) {
        if (keel_redis_init_opts(good[i], 1, NULL) != KEEL_OK)
            fail_msg("refused %s", good[i]);
        assert_true(keel_redis_enabled());
        keel_redis_shutdown();
    }
    /* No URL: disabled, every command fails at once, no callback. */
    for (i = 0; i < 2; i++) {
        CHECK_RC(keel_redis_init_opts(i ? "" : NULL, 1, NULL), KEEL_OK);
        assert_false(keel_redis_enabled());
        assert_null(keel_redis_breaker());
        CHECK_RC(cmd(&r, "PING"), KEEL_E_UNAVAILABLE);
        CHECK_RC(keel_redis_ping_sync(NULL, 100, NULL), KEEL_E_INVALID);
        keel_redis_loop_close(&loop, 0);
        keel_redis_shutdown();
    }
    assert_int_equal(r.calls, 0);
}

static void test_pipeline(void **state)
{
    struct res r[9] = {{0}};
    const char bin[] = {'a', '\0', 'b', ' ', '\n'};

    (void)state;
    start(url, NULL);
    /* Issued back to back: one write, replies in order. */
    CHECK_RC(cmd(&r[0], "DEL keel:t:k keel:t:n keel:t:bin"), KEEL_OK);
    CHECK_RC(cmd(&r[1], "SET keel:t:k %s", "hello world"), KEEL_OK);
    CHECK_RC(cmd(&r[2], "GET keel:t:k"), KEEL_OK);
    CHECK_RC(cmd(&r[3], "INCR keel:t:n"), KEEL_OK);
    CHECK_RC(cmd(&r[4], "INCR keel:t:n"), KEEL_OK);
    CHECK_RC(cmd(&r[5], "INCRBY keel:t:n %d", 40), KEEL_OK);
    CHECK_RC(cmd(&r[6], "SET keel:t:bin %b", bin, sizeof(bin)), KEEL_OK);
    CHECK_RC(cmd(&r[7], "MGET keel:t:k keel:t:missing keel:t:n"), KEEL_OK);
    CHECK_RC(cmd(&r[8], "EVAL %s 0", "return {1, {'x', {}}, false}"), KEEL_OK);
    assert_true(run_until(&r[8].calls, 1, 3000));
    for (int i = 0; i < 9; i++) {
        assert_int_equal(r[i].calls, 1);
        CHECK_RC(r[i].rc, KEEL_OK);
        assert_int_equal(r[i].order, r[0].order + i);
    }
    assert_string_equal(r[1].text, "+OK");
    assert_string_equal(r[2].text, "\"hello world\"");
    assert_string_equal(r[3].text, ":1");
    assert_string_equal(r[4].text, ":2");
    assert_string_equal(r[5].text, ":42");
    assert_string_equal(r[7].text, "[\"hello world\",nil,\"42\"]");
    assert_string_equal(r[8].text, "[:1,[\"x\",[]],nil]");

    /* The binary value round-trips byte for byte. */
    {
        struct res g = {0};

        CHECK_RC(cmd(&g, "STRLEN keel:t:bin"), KEEL_OK);
        assert_true(run_until(&g.calls, 1, 3000));
        assert_string_equal(g.text, ":5");
    }
    assert_true(metric("keel_redis_commands_total{outcome=\"ok\"}") >= 10);
    assert_true(metric("keel_circuit_breaker_state{name=\"redis\"}") == 0);
    stop();
}

static void test_argv_and_errors(void **state)
{
    const char *argv[] = {"SET", "keel:t:argv", "x\0y"};
    const size_t lens[] = {3, 11, 3};
    const char *argv2[] = {"GETRANGE", "keel:t:argv", "1", "2"};
    struct res a = {0}, b = {0}, e = {0}, s = {0};

    (void)state;
    start(url, NULL);
    CHECK_RC(keel_redis_command_argv(&loop, 0, on_res, &a, 3, argv, lens), KEEL_OK);
    CHECK_RC(keel_redis_command_argv(&loop, 0, on_res, &b, 4, argv2, NULL), KEEL_OK);
    /* An error reply: KEEL_E_INTERNAL with the message; the breaker does
     * not count it against Redis. */
    CHECK_RC(cmd(&e, "INCR keel:t:argv"), KEEL_OK);
    assert_true(run_until(&e.calls, 1, 3000));
    CHECK_RC(a.rc, KEEL_OK);
    assert_string_equal(a.text, "+OK");
    assert_int_equal(b.text[0], '"');
    assert_int_equal(b.text[1], '\0'); /* "\0y": the NUL shows up in the text */
    CHECK_RC(e.rc, KEEL_E_INTERNAL);
    assert_non_null(strstr(e.text, "-ERR value is not an integer"));
    assert_int_equal(keel_breaker_state(keel_redis_breaker()), KEEL_BREAKER_CLOSED);
    assert_true(metric("keel_redis_commands_total{outcome=\"error\"}") >= 1);

    /* Refused before anything is sent: no callback. */
    CHECK_RC(cmd(&s, "SUBSCRIBE chan"), KEEL_E_INVALID);
    CHECK_RC(cmd(&s, "psubscribe chan*"), KEEL_E_INVALID);
    CHECK_RC(cmd(&s, "MONITOR"), KEEL_E_INVALID);
    CHECK_RC(keel_redis_command_argv(&loop, 0, on_res, &s, 0, argv, NULL), KEEL_E_INVALID);
    run_for(50);
    assert_int_equal(s.calls, 0);
    stop();
}

/* A callback that issues the next command, and one that closes the loop's
 * connection while other commands wait. */
struct chain {
    struct res first, second, third;
};

static void on_first(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    struct chain *ch = arg;

    on_res(rc, r, &ch->first);
    CHECK_RC(cmd(&ch->second, "GET keel:t:chain"), KEEL_OK);
}

static void on_closing(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    struct chain *ch = arg;

    on_res(rc, r, &ch->first);
    keel_redis_loop_close(&loop, 0);
    CHECK_RC(cmd(&ch->third, "PING"), KEEL_E_UNAVAILABLE);
}

static void test_callbacks_reenter(void **state)
{
    struct chain ch = {0};

    (void)state;
    start(url, NULL);
    CHECK_RC(keel_redis_command(&loop, 0, on_first, &ch, "SET keel:t:chain %s", "v1"), KEEL_OK);
    assert_true(run_until(&ch.second.calls, 1, 3000));
    assert_string_equal(ch.second.text, "\"v1\"");

    /* Close from inside a callback: the command behind it fails, later
     * commands fail at once, and every handle closes. */
    memset(&ch, 0, sizeof(ch));
    CHECK_RC(keel_redis_command(&loop, 0, on_closing, &ch, "PING"), KEEL_OK);
    CHECK_RC(cmd(&ch.second, "PING"), KEEL_OK);
    assert_true(run_until(&ch.second.calls, 1, 3000));
    CHECK_RC(ch.first.rc, KEEL_OK);
    CHECK_RC(ch.second.rc, KEEL_E_UNAVAILABLE);
    assert_int_equal(ch.third.calls, 0);
    CHECK_RC(cmd(&ch.third, "PING"), KEEL_E_UNAVAILABLE);
    stop();
}

static void test_timeout(void **state)
{
    struct keel_redis_opts o = {.command_timeout_ms = 200};
    struct res bl = {0}, ping = {0}, after = {0};
    uint64_t t0;

    (void)state;
    start(url, &o);
    assert_string_equal(cmd_wait("PING", NULL).text, "+PONG");
    /* BLPOP holds the connection for 1 s on the server side. */
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    CHECK_RC(cmd(&bl, "BLPOP keel:t:never %d", 1), KEEL_OK);
    CHECK_RC(cmd(&ping, "PING"), KEEL_OK); /* queued behind it */
    assert_true(run_until(&ping.calls, 1, 3000));
    CHECK_RC(bl.rc, KEEL_E_TIMEOUT);
    CHECK_RC(ping.rc, KEEL_E_TIMEOUT);
    assert_true(bl.at_ms - t0 >= 190 && bl.at_ms - t0 < 900);
    /* The late replies are dropped: still one call each. */
    run_for(1200);
    assert_int_equal(bl.calls, 1);
    assert_int_equal(ping.calls, 1);
    /* The connection is still good. */
    CHECK_RC(cmd(&after, "PING"), KEEL_OK);
    assert_true(run_until(&after.calls, 1, 3000));
    CHECK_RC(after.rc, KEEL_OK);
    assert_true(metric("keel_redis_commands_total{outcome=\"timeout\"}") >= 2);
    stop();
}

static void test_select_and_auth(void **state)
{
    char u[512];
    redisContext *c = side();
    redisReply *r;
    struct res bad = {0};

    (void)state;
    /* SELECT: the URL's database is the one written. */
    snprintf(u, sizeof(u), "redis://%s:%d/5", host, port);
    start(u, NULL);
    assert_string_equal(cmd_wait("SET keel:t:db %s", "five").text, "+OK");
    stop();
    side_cmd(c, "OK", "SELECT 5");
    r = redisCommand(c, "GET keel:t:db");
    assert_non_null(r);
    assert_string_equal(r->str, "five");
    freeReplyObject(r);
    side_cmd(c, "OK", "SELECT 0");

    /* AUTH with an ACL user (the default user stays as it is). */
    side_cmd(c, "OK", "ACL SETUSER keel_itest on >s3cr%%et ~keel:* +@all");
    snprintf(u, sizeof(u), "redis://keel_itest:s3cr%%25et@%s:%d/0", host, port);
    start(u, NULL);
    assert_string_equal(cmd_wait("SET keel:t:auth %s", "yes").text, "+OK");
    CHECK_RC(keel_redis_ping_sync(NULL, 1000, NULL), KEEL_OK);
    CHECK_RC(keel_redis_ping_sync(u, 1000, NULL), KEEL_OK);
    stop();

    /* A wrong password: the handshake is refused, the commands behind it
     * fail, the probe says unavailable. */
    snprintf(u, sizeof(u), "redis://keel_itest:wrong@%s:%d/2", host, port);
    quiet();
    start(u, NULL);
    CHECK_RC(cmd(&bad, "PING"), KEEL_OK);
    assert_true(run_until(&bad.calls, 1, 3000));
    CHECK_RC(bad.rc, KEEL_E_UNAVAILABLE);
    CHECK_RC(keel_redis_ping_sync(u, 1000, NULL), KEEL_E_UNAVAILABLE);
    stop();
    loud();
    side_cmd(c, NULL, "ACL DELUSER keel_itest");
    redisFree(c);
}

static void test_reconnect(void **state)
{
    struct res id1, id2, lost = {0};
    redisContext *c = side();
    bool failed_fast = false;
    int tries;

    (void)state;
    quiet();
    start(url, NULL);
    id1 = cmd_wait("CLIENT ID", NULL);
    assert_int_equal(id1.text[0], ':');
    /* The server kills our connection. */
    side_cmd(c, NULL, "CLIENT KILL ID %s", id1.text + 1);
    CHECK_RC(cmd(&lost, "PING"), KEEL_OK);
    assert_true(run_until(&lost.calls, 1, 3000));
    CHECK_RC(lost.rc, KEEL_E_UNAVAILABLE);
    /* Down: commands fail at once until the reconnect (50..100 ms). */
    for (tries = 0; tries < 200; tries++) {
        struct res p = {0};
        keel_status rc = cmd(&p, "CLIENT ID");

        if (rc == KEEL_E_UNAVAILABLE) {
            assert_int_equal(p.calls, 0);
            failed_fast = true;
            run_for(10);
            continue;
        }
        CHECK_RC(rc, KEEL_OK);
        assert_true(run_until(&p.calls, 1, 3000));
        if (p.rc == KEEL_OK) {
            id2 = p;
            break;
        }
    }
    assert_true(failed_fast);
    assert_true(tries < 200);
    assert_string_not_equal(id1.text, id2.text);
    assert_int_equal(keel_breaker_state(keel_redis_breaker()), KEEL_BREAKER_CLOSED);
    stop();
    loud();
    redisFree(c);
}

static void test_hostname(void **state)
{
    char u[512];
    int tries;

    (void)state;
    if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0)
        skip();
    /* "localhost" goes through the resolver (off the loop); if its first
     * address is refused (::1 when Redis listens on 127.0.0.1 only), the
     * next attempt takes the next address. */
    snprintf(u, sizeof(u), "redis://localhost:%d", port);
    start(u, NULL);
    for (tries = 0; tries < 100; tries++) {
        struct res p = {0};

        if (cmd(&p, "PING") == KEEL_OK && run_until(&p.calls, 1, 3000) && p.rc == KEEL_OK)
            break;
        run_for(20);
    }
    assert_true(tries < 100);
    stop();
}

static void test_breaker_server_down(void **state)
{
    struct keel_breaker_opts bo = {.min_calls = 5, .open_ms = 300};
    struct keel_redis_opts o = {.breaker = &bo, .connect_timeout_ms = 500};
    char u[128];
    struct res r[5] = {{0}}, x = {0};
    int i, fast = 0;

    (void)state;
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d", closed_port());
    quiet();
    start(u, &o);
    /* The first command waits for the connect, which is refused. */
    CHECK_RC(cmd(&r[0], "PING"), KEEL_OK);
    assert_true(run_until(&r[0].calls, 1, 2000));
    CHECK_RC(r[0].rc, KEEL_E_UNAVAILABLE);
    /* Down: fail fast, counted by the breaker, which opens at 5. */
    for (i = 1; i < 5; i++)
        CHECK_RC(cmd(&r[i], "PING"), KEEL_E_UNAVAILABLE);
    assert_int_equal(keel_breaker_state(keel_redis_breaker()), KEEL_BREAKER_OPEN);
    assert_true(metric("keel_circuit_breaker_state{name=\"redis\"}") == 2);
    CHECK_RC(cmd(&x, "PING"), KEEL_E_UNAVAILABLE);
    assert_true(metric("keel_redis_commands_total{outcome=\"rejected\"}") >= 5);
    /* Half-open after 300 ms; still down, so the trial fails: open again. */
    run_for(350);
    for (i = 0; i < 3; i++)
        fast += cmd(&x, "PING") == KEEL_E_UNAVAILABLE;
    assert_int_equal(fast, 3);
    assert_int_equal(keel_breaker_state(keel_redis_breaker()), KEEL_BREAKER_OPEN);
    assert_int_equal(x.calls, 0);
    stop();
    loud();

    /* The probe fails fast too. */
    CHECK_RC(keel_redis_ping_sync(u, 1000, NULL), KEEL_E_UNAVAILABLE);
}

static void test_breaker_slow_server(void **state)
{
    struct keel_breaker_opts bo = {.min_calls = 5, .open_ms = 300};
    struct keel_redis_opts o = {.breaker = &bo, .command_timeout_ms = 100};
    struct res r[5] = {{0}}, x = {0}, t[3] = {{0}};
    int i;

    (void)state;
    quiet();
    start(url, &o);
    assert_string_equal(cmd_wait("PING", NULL).text, "+PONG");
    /* Five commands stuck behind a 0.5 s BLPOP: five timeouts open it. */
    CHECK_RC(cmd(&r[0], "BLPOP keel:t:never 0.5"), KEEL_OK);
    for (i = 1; i < 5; i++)
        CHECK_RC(cmd(&r[i], "PING"), KEEL_OK);
    assert_true(run_until(&r[4].calls, 1, 2000));
    for (i = 0; i < 5; i++)
        CHECK_RC(r[i].rc, KEEL_E_TIMEOUT);
    assert_int_equal(keel_breaker_state(keel_redis_breaker()), KEEL_BREAKER_OPEN);
    CHECK_RC(cmd(&x, "PING"), KEEL_E_UNAVAILABLE);
    /* After open_ms the server has answered; three trials close it. */
    run_for(600);
    for (i = 0; i < 3; i++)
        CHECK_RC(cmd(&t[i], "PING"), KEEL_OK);
    CHECK_RC(cmd(&x, "PING"), KEEL_E_UNAVAILABLE); /* a fourth is not a trial */
    assert_true(run_until(&t[2].calls, 1, 2000));
    for (i = 0; i < 3; i++)
        CHECK_RC(t[i].rc, KEEL_OK);
    assert_int_equal(keel_breaker_state(keel_redis_breaker()), KEEL_BREAKER_CLOSED);
    assert_true(metric("keel_circuit_breaker_state{name=\"redis\"}") == 0);
    assert_int_equal(x.calls, 0);
    stop();
    loud();
}

static void test_dead_peer(void **state)
{
    struct keel_redis_opts o = {.command_timeout_ms = 100, .stall_ms = 200};
    struct res r = {0};
    char u[128];
    int p, fd = silent_listener(&p), accepted = 0;

    (void)state;
    /* Connects succeed (the backlog) but nothing ever answers. */
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d", p);
    quiet();
    start(u, &o);
    CHECK_RC(cmd(&r, "PING"), KEEL_OK);
    assert_true(run_until(&r.calls, 1, 2000));
    CHECK_RC(r.rc, KEEL_E_TIMEOUT);
    /* stall_ms after the timeout, the connection is dropped and remade:
     * the listener sees a second connection. */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 100 && accepted < 2; i++) {
        int c;

        run_for(20);
        while ((c = accept(fd, NULL, NULL)) >= 0) {
            accepted++;
            close(c);
        }
    }
    assert_true(accepted >= 2);
    stop();
    close(fd);
    loud();

    /* The probe times out against it within its budget. */
    fd = silent_listener(&p);
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d", p);
    CHECK_RC(keel_redis_ping_sync(u, 200, NULL), KEEL_E_TIMEOUT);
    close(fd);
}

static void test_connect_timeout(void **state)
{
    struct keel_redis_opts o = {.connect_timeout_ms = 200, .command_timeout_ms = 2000};
    struct res r = {0}, x = {0};
    int p, fd = listener(&p, 0), fill[4];
    char u[128];
    uint64_t t0;

    (void)state;
    /* A full accept queue: the kernel drops further SYNs, so a connect
     * neither succeeds nor fails. */
    for (int i = 0; i < 4; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)p),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        (void)connect(fill[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(100 * 1000);
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d", p);
    quiet();
    start(u, &o);
    uv_update_time(&loop);
    t0 = uv_now(&loop);
    CHECK_RC(cmd(&r, "PING"), KEEL_OK); /* waits for the connect */
    assert_true(run_until(&r.calls, 1, 3000));
    CHECK_RC(r.rc, KEEL_E_UNAVAILABLE);
    assert_true(r.at_ms - t0 >= 190 && r.at_ms - t0 < 1500);
    CHECK_RC(cmd(&x, "PING"), KEEL_E_UNAVAILABLE); /* backing off */
    stop();
    loud();
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(fd);
}

static void test_limits_and_close(void **state)
{
    struct keel_redis_opts o = {.max_pending = 3};
    struct res r[4] = {{0}}, late = {0};

    (void)state;
    start(url, &o);
    assert_string_equal(cmd_wait("PING", NULL).text, "+PONG");
    for (int i = 0; i < 3; i++)
        CHECK_RC(cmd(&r[i], "BLPOP keel:t:never 1"), KEEL_OK);
    CHECK_RC(cmd(&r[3], "PING"), KEEL_E_UNAVAILABLE); /* queue full */
    /* Shutdown with commands in flight: each gets UNAVAILABLE now. */
    keel_redis_loop_close(&loop, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        CHECK_RC(r[i].rc, KEEL_E_UNAVAILABLE);
    }
    CHECK_RC(cmd(&late, "PING"), KEEL_E_UNAVAILABLE);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns: every handle is closed */
    keel_redis_shutdown();
    assert_int_equal(r[3].calls, 0);
    assert_int_equal(late.calls, 0);
}

static void test_ping_sync(void **state)
{
    double ms = -1;

    (void)state;
    CHECK_RC(keel_redis_ping_sync(url, 1000, &ms), KEEL_OK);
    assert_true(ms >= 0 && ms < 1000);
    start(url, NULL);
    CHECK_RC(keel_redis_ping_sync(NULL, 1000, NULL), KEEL_OK);
    stop();
}

/* ---------------------------------------------------------------- main */

static bool parse_test_url(const char *u)
{
    const char *p = u + strlen("redis://"), *colon, *end;

    if (strncmp(u, "redis://", 8) != 0 || strchr(p, '@'))
        return false;
    end = p + strcspn(p, "/");
    colon = memchr(p, ':', (size_t)(end - p));
    if (!colon || (size_t)(colon - p) >= sizeof(host))
        return false;
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = '\0';
    port = atoi(colon + 1);
    return port > 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls_and_disabled),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_argv_and_errors),
        cmocka_unit_test(test_callbacks_reenter),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_select_and_auth),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_hostname),
        cmocka_unit_test(test_breaker_server_down),
        cmocka_unit_test(test_breaker_slow_server),
        cmocka_unit_test(test_dead_peer),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_limits_and_close),
        cmocka_unit_test(test_ping_sync),
    };
    int rc;

    url = getenv("KEEL_TEST_REDIS_URL");
    if (!url || !*url) {
        fprintf(stderr, "KEEL_TEST_REDIS_URL is not set: skipped\n");
        return 77;
    }
    if (!parse_test_url(url)) {
        fprintf(stderr, "KEEL_TEST_REDIS_URL must be redis://host:port[/db]\n");
        return 1;
    }
    devnull = open("/dev/null", O_WRONLY);
    uv_loop_init(&loop);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    /* Every test closed what it opened: the loop has no handle left. */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "handles left open on the loop\n");
        rc = 1;
    }
    keel_metrics_reset_for_tests();
    close(devnull);
    return rc;
}
