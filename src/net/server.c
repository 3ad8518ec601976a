/*
 * server.c - the event-loop threads, their listeners, and the process
 * lifecycle: start, ready, drain on SIGTERM/SIGINT, exit.
 *
 * DESIGN: one libuv loop per thread (KEEL_THREADS), each with its own
 * listening socket bound with SO_REUSEPORT, so the kernel spreads new
 * connections across loops and no accept lock is shared (libuv 1.44 has
 * no UV_TCP_REUSEPORT, so the sockets are made here and handed over with
 * uv_tcp_open). A connection lives on the loop that accepted it until it
 * closes. The main thread owns signals: on the first SIGTERM/SIGINT the
 * server turns "draining" (readiness answers 503), wakes every loop, and
 * each loop closes its listener and its idle connections, lets in-flight
 * requests finish with Connection: close, and cuts what is left at the
 * shutdown deadline. When every loop has ended the process exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keel/log.h"
#include "keel/metrics.h"

#include "net/net_int.h"

struct keel_server *keel__server;
static struct keel_server server;

enum keel_server_state keel_server_state(void)
{
    return keel__server ? (enum keel_server_state)atomic_load(&keel__server->state)
                        : KEEL_SERVER_STARTING;
}

int64_t keel_server_uptime(void)
{
    return keel__server ? (keel_wall_ms() - keel__server->start_ms) / 1000 : 0;
}

/* Binds one SO_REUSEPORT listening socket; *port is updated with the real
 * port when it was 0, so the other loops bind the same one. */
static int bind_socket(const char *host, int *port, char *errbuf, size_t errlen)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char service[16];
    int fd = -1, one = 1, rc;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", *port);
    rc = getaddrinfo(host, service, &hints, &ai);
    if (rc != 0) {
        snprintf(errbuf, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
        snprintf(errbuf, errlen, "cannot listen on %s:%d: %s", host, *port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* ------------------------------------------------------------ the loops */

static void on_connection(uv_stream_t *listener, int status)
{
    struct keel_loop *loop = listener->data;

    if (status < 0) {
        keel_log(KEEL_LOG_WARN, "accept failed", KEEL_LF_STR("error", uv_strerror(status)));
        return;
    }
    keel__conn_accept(loop);
}

static void (*close_hooks[8])(uv_loop_t *, unsigned);
static unsigned nclose_hooks;

keel_status keel_server_on_loop_close(void (*fn)(uv_loop_t *loop, unsigned loop_id))
{
    if (nclose_hooks == KEEL_ARRAY_LEN(close_hooks))
        return KEEL_E_TOO_LARGE;
    close_hooks[nclose_hooks++] = fn;
    return KEEL_OK;
}

static void close_loop_handles(struct keel_loop *loop)
{
    unsigned i;

    if (loop->closed)
        return;
    loop->closed = true;
    for (i = 0; i < nclose_hooks; i++)
        close_hooks[i](&loop->uv, loop->id);
    uv_close((uv_handle_t *)&loop->wake, NULL);
    uv_close((uv_handle_t *)&loop->tick, NULL);
    pthread_mutex_lock(&loop->post_mu);
    loop->post_closed = true;
    pthread_mutex_unlock(&loop->post_mu);
    uv_close((uv_handle_t *)&loop->post, NULL);
}

static void on_tick(uv_timer_t *t)
{
    struct keel_loop *loop = t->data;

    if (!loop->draining)
        return;
    if (loop->nconns == 0) {
        close_loop_handles(loop);
        return;
    }
    if (uv_now(&loop->uv) >= loop->drain_deadline_ms) {
        keel_log(KEEL_LOG_WARN, "shutdown timeout: closing connections",
                 KEEL_LF_INT("thread", loop->id), KEEL_LF_INT("connections", loop->nconns));
        keel__conn_drain(loop, true);
    }
}

static void on_wake(uv_async_t *a)
{
    struct keel_loop *loop = a->data;

    if (loop->draining || keel_server_state() != KEEL_SERVER_DRAINING)
        return;
    loop->draining = true;
    loop->drain_deadline_ms = uv_now(&loop->uv) + loop->server->cfg->shutdown_timeout_ms;
    if (loop->listening) {
        uv_close((uv_handle_t *)&loop->listener, NULL);
        loop->listening = false;
    }
    keel__conn_drain(loop, false);
    /* Check often while draining so the exit follows the last response. */
    uv_timer_start(&loop->tick, on_tick, 0, 50);
}

/* ------------------------------------------------------------- posts */

static void on_post(uv_async_t *a)
{
    struct keel_loop *loop = a->data;
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

void keel_server_post(unsigned loop_id, struct keel_post *p)
{
    struct keel_loop *loop;

    if (KEEL_NEVER(loop_id >= server.nloops))
        return;
    loop = &server.loops[loop_id];
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

static uv_async_t loops_done;
static _Atomic unsigned nloops_done;

static void loop_main(void *arg)
{
    struct keel_loop *loop = arg;

    keel_metrics_thread_init(loop->id);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    atomic_fetch_add(&nloops_done, 1);
    uv_async_send(&loops_done);
}

static keel_status loop_init(struct keel_loop *loop, unsigned id, int fd)
{
    int rc;

    loop->id = id;
    loop->server = &server;
    loop->rbuf = keel_xmalloc(KEEL_READ_BUF);
    rc = uv_loop_init(&loop->uv);
    if (rc == 0)
        rc = uv_tcp_init(&loop->uv, &loop->listener);
    if (rc == 0)
        rc = uv_tcp_open(&loop->listener, fd);
    loop->listener.data = loop;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&loop->listener, 4096, on_connection);
    if (rc < 0) {
        keel_log(KEEL_LOG_ERROR, "listen failed", KEEL_LF_STR("error", uv_strerror(rc)));
        return KEEL_E_UNAVAILABLE;
    }
    loop->listening = true;
    uv_async_init(&loop->uv, &loop->wake, on_wake);
    loop->wake.data = loop;
    uv_timer_init(&loop->uv, &loop->tick);
    loop->tick.data = loop;
    pthread_mutex_init(&loop->post_mu, NULL);
    uv_async_init(&loop->uv, &loop->post, on_post);
    loop->post.data = loop;
    return KEEL_OK;
}

static void loop_free(struct keel_loop *loop)
{
    unsigned i;

    uv_run(&loop->uv, UV_RUN_NOWAIT); /* run pending close callbacks */
    uv_loop_close(&loop->uv);
    for (i = 0; i < loop->nfree; i++)
        keel_arena_destroy(loop->free_arenas[i]);
    free(loop->rbuf);
}

/* -------------------------------------------------------- the main thread */

static uv_signal_t sigterm, sigint;
static uv_timer_t force_timer;

static void on_loops_done(uv_async_t *a)
{
    (void)a;
    if (atomic_load(&nloops_done) < server.nloops)
        return;
    uv_close((uv_handle_t *)&loops_done, NULL);
    if (!uv_is_closing((uv_handle_t *)&force_timer))
        uv_close((uv_handle_t *)&force_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&sigterm)) {
        uv_close((uv_handle_t *)&sigterm, NULL);
        uv_close((uv_handle_t *)&sigint, NULL);
    }
}

/* The loops cut their connections at the deadline, but work already on
 * the thread pool cannot be cancelled (a query stuck in a driver): past
 * the deadline and a grace second the process leaves without it. */
static void on_force(uv_timer_t *t)
{
    (void)t;
    keel_log(KEEL_LOG_WARN, "exit", KEEL_LF_INT("code", 0),
             KEEL_LF_STR("reason", "shutdown timeout: thread-pool work abandoned"));
    _exit(KEEL_EXIT_OK);
}

static void on_signal(uv_signal_t *s, int signum)
{
    unsigned i;

    (void)s;
    keel_log(KEEL_LOG_INFO, "draining",
             KEEL_LF_STR("signal", signum == SIGINT ? "SIGINT" : "SIGTERM"),
             KEEL_LF_INT("timeout_ms", (int64_t)server.cfg->shutdown_timeout_ms));
    atomic_store(&server.state, KEEL_SERVER_DRAINING);
    for (i = 0; i < server.nloops; i++)
        uv_async_send(&server.loops[i].wake);
    /* A second signal kills the process at once (default disposition). */
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_timer_start(&force_timer, on_force, server.cfg->shutdown_timeout_ms + 1000, 0);
}

static double gauge_connections(void *arg)
{
    (void)arg;
    return (double)atomic_load(&server.nconns);
}

static double gauge_inflight(void *arg)
{
    (void)arg;
    return (double)atomic_load(&server.inflight);
}

static keel_status open_listeners(const struct keel_config *cfg, int *fds)
{
    char err[256];
    int port = cfg->listen.port;
    unsigned i;

    for (i = 0; i < server.nloops; i++) {
        fds[i] = bind_socket(cfg->listen.host, &port, err, sizeof(err));
        if (fds[i] < 0) {
            keel_log(KEEL_LOG_ERROR, "cannot listen", KEEL_LF_STR("error", err));
            while (i-- > 0)
                close(fds[i]);
            return KEEL_E_UNAVAILABLE;
        }
    }
    server.port = port;
    return KEEL_OK;
}

keel_status keel_server_run(const struct keel_config *cfg, struct keel_router *router)
{
    unsigned i, started = 0;
    int *fds;
    keel_status rc = KEEL_OK;

    server.cfg = cfg;
    server.router = router;
    server.nloops = cfg->threads;
    server.start_ms = keel_wall_ms();
    atomic_store(&server.state, KEEL_SERVER_STARTING);
    keel__server = &server;
    signal(SIGPIPE, SIG_IGN);
    keel_metric_gauge_fn("keel_http_connections", "Open client connections.", gauge_connections,
                         NULL);
    keel_metric_gauge_fn("keel_http_requests_in_flight", "Requests being processed.",
                         gauge_inflight, NULL);

    fds = keel_xcalloc(server.nloops, sizeof(*fds));
    server.loops = keel_xcalloc(server.nloops, sizeof(*server.loops));
    rc = open_listeners(cfg, fds);
    for (i = 0; rc == KEEL_OK && i < server.nloops; i++)
        rc = loop_init(&server.loops[i], i, fds[i]);
    uv_async_init(uv_default_loop(), &loops_done, on_loops_done);
    uv_timer_init(uv_default_loop(), &force_timer);
    for (i = 0; rc == KEEL_OK && i < server.nloops; i++, started++)
        if (uv_thread_create(&server.loops[i].thread, loop_main, &server.loops[i]) != 0)
            rc = KEEL_E_INTERNAL;
    if (rc == KEEL_OK) {
        uv_signal_init(uv_default_loop(), &sigterm);
        uv_signal_init(uv_default_loop(), &sigint);
        uv_signal_start(&sigterm, on_signal, SIGTERM);
        uv_signal_start(&sigint, on_signal, SIGINT);
        atomic_store(&server.state, KEEL_SERVER_READY);
        keel_log(KEEL_LOG_INFO, "listening", KEEL_LF_STR("host", cfg->listen.host),
                 KEEL_LF_INT("port", server.port), KEEL_LF_INT("threads", server.nloops));
        uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    } else {
        /* Start-up failed: stop the loops that run, then clean up. */
        atomic_store(&server.state, KEEL_SERVER_DRAINING);
        for (i = 0; i < started; i++)
            uv_async_send(&server.loops[i].wake);
        uv_close((uv_handle_t *)&loops_done, NULL);
        uv_close((uv_handle_t *)&force_timer, NULL);
        uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    }
    for (i = 0; i < started; i++)
        uv_thread_join(&server.loops[i].thread);
    for (i = 0; i < server.nloops && server.loops[i].rbuf; i++)
        loop_free(&server.loops[i]);
    uv_loop_close(uv_default_loop());
    free(server.loops);
    free(fds);
    keel__server = NULL;
    return rc;
}

struct keel_loop *keel__server_test_loop(const struct keel_config *cfg, struct keel_router *router)
{
    static struct keel_loop loop;

    server.cfg = cfg;
    server.router = router;
    server.nloops = 1;
    server.loops = &loop;
    server.start_ms = keel_wall_ms();
    atomic_store(&server.state, KEEL_SERVER_READY);
    keel__server = &server;
    loop.server = &server;
    loop.rbuf = keel_xmalloc(KEEL_READ_BUF);
    uv_loop_init(&loop.uv);
    pthread_mutex_init(&loop.post_mu, NULL);
    uv_async_init(&loop.uv, &loop.post, on_post);
    loop.post.data = &loop;
    return &loop;
}
