/*
 * server.c - the HTTP server as a runtime service (keel/server.h): one
 * SO_REUSEPORT listener and one set of connections per loop.
 *
 * DESIGN: the runtime (src/runtime) owns the loops, signals and the
 * lifecycle; this file owns what HTTP keeps per loop (listener, open
 * connections, the shared read buffer, recycled arenas, the Date header)
 * and answers the runtime's calls: prepare binds every listener on the
 * main thread, so a bad address fails the start before any loop runs;
 * start hands each socket to its loop; drain closes the listener and the
 * idle connections (busy ones close after their response), and at the
 * deadline cuts them all. A connection holds its loop (keel_loop_hold)
 * from accept to free, so a loop ends only when its last connection did.
 */
#include <stdlib.h>
#include <unistd.h>

#include "keel/log.h"
#include "keel/metrics.h"
#include "keel/net.h"
#include "keel/runtime.h"

#include "http/http_int.h"

static struct keel_server server;

static void on_connection(uv_stream_t *listener, int status)
{
    struct keel_http_loop *loop = listener->data;

    if (status < 0) {
        keel_log(KEEL_LOG_WARN, "accept failed", KEEL_LF_STR("error", uv_strerror(status)));
        return;
    }
    keel__conn_accept(loop);
}

static keel_status http_prepare(void *arg, unsigned nloops)
{
    const struct keel_config *cfg = server.cfg;
    char err[256];
    int port = cfg->listen.port;
    unsigned i;

    (void)arg;
    server.nloops = nloops;
    server.loops = keel_xcalloc(nloops, sizeof(*server.loops));
    for (i = 0; i < nloops; i++)
        server.loops[i].fd = -1;
    for (i = 0; i < nloops; i++) {
        server.loops[i].fd = keel_net_bind(cfg->listen.host, &port, err, sizeof(err));
        if (server.loops[i].fd < 0) {
            keel_log(KEEL_LOG_ERROR, "cannot listen", KEEL_LF_STR("error", err));
            return KEEL_E_UNAVAILABLE;
        }
    }
    server.port = port;
    return KEEL_OK;
}

static void loop_setup(struct keel_http_loop *loop, unsigned id, uv_loop_t *uv)
{
    loop->id = id;
    loop->uv = uv;
    loop->server = &server;
    loop->rbuf = keel_xmalloc(KEEL_READ_BUF);
}

static keel_status http_start(void *arg, unsigned id, uv_loop_t *uv)
{
    struct keel_http_loop *loop = &server.loops[id];
    int rc;

    (void)arg;
    loop_setup(loop, id, uv);
    rc = uv_tcp_init(uv, &loop->listener);
    if (rc == 0)
        rc = uv_tcp_open(&loop->listener, loop->fd);
    loop->listener.data = loop;
    if (rc == 0) {
        loop->fd = -1; /* libuv owns it now */
        rc = uv_listen((uv_stream_t *)&loop->listener, 4096, on_connection);
    }
    if (rc < 0) {
        keel_log(KEEL_LOG_ERROR, "listen failed", KEEL_LF_STR("error", uv_strerror(rc)));
        return KEEL_E_UNAVAILABLE;
    }
    loop->listening = true;
    return KEEL_OK;
}

static void http_ready(void *arg)
{
    (void)arg;
    keel_log(KEEL_LOG_INFO, "listening", KEEL_LF_STR("host", server.cfg->listen.host),
             KEEL_LF_INT("port", server.port), KEEL_LF_INT("threads", server.nloops));
}

static void http_drain(void *arg, unsigned id, bool force)
{
    struct keel_http_loop *loop = &server.loops[id];

    (void)arg;
    loop->draining = true;
    if (loop->listening) {
        uv_close((uv_handle_t *)&loop->listener, NULL);
        loop->listening = false;
    }
    if (force && loop->nconns > 0)
        keel_log(KEEL_LOG_WARN, "shutdown timeout: closing connections", KEEL_LF_INT("thread", id),
                 KEEL_LF_INT("connections", loop->nconns));
    keel__conn_drain(loop, force);
}

static void http_close(void *arg, unsigned id, uv_loop_t *uv)
{
    struct keel_http_loop *loop = &server.loops[id];

    (void)arg;
    (void)uv;
    if (loop->listening) { /* a failed start: the loop closes undrained */
        uv_close((uv_handle_t *)&loop->listener, NULL);
        loop->listening = false;
    }
}

static void http_stop(void *arg)
{
    unsigned i, j;

    (void)arg;
    for (i = 0; server.loops && i < server.nloops; i++) {
        struct keel_http_loop *loop = &server.loops[i];

        if (loop->fd >= 0)
            close(loop->fd);
        for (j = 0; j < loop->nfree; j++)
            keel_arena_destroy(loop->free_arenas[j]);
        free(loop->rbuf);
    }
    free(server.loops);
    server.loops = NULL;
    server.nloops = 0;
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

keel_status keel_server_add(const struct keel_config *cfg, struct keel_router *router)
{
    static const struct keel_runtime_service http = {
        .name = "http",
        .prepare = http_prepare,
        .start = http_start,
        .ready = http_ready,
        .drain = http_drain,
        .close = http_close,
        .stop = http_stop,
    };

    server.cfg = cfg;
    server.router = router;
    keel_metric_gauge_fn("keel_http_connections", "Open client connections.", gauge_connections,
                         NULL);
    keel_metric_gauge_fn("keel_http_requests_in_flight", "Requests being processed.",
                         gauge_inflight, NULL);
    return keel_runtime_add(&http);
}

struct keel_http_loop *keel__server_test_loop(const struct keel_config *cfg,
                                              struct keel_router *router)
{
    static struct keel_http_loop loop;
    uv_loop_t *uv = keel__runtime_test_loop(cfg);

    if (!uv)
        return NULL;
    server.cfg = cfg;
    server.router = router;
    server.nloops = 1;
    server.loops = &loop;
    if (!loop.rbuf)
        loop_setup(&loop, 0, uv);
    return &loop;
}
