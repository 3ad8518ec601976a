/*
 * net_int.h - private types of the network and HTTP layers: the server, its
 * per-thread event loops and the connections they own. Nothing outside
 * src/net and src/http includes this file.
 */
#ifndef KEEL_NET_INT_H
#define KEEL_NET_INT_H

#include <llhttp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <uv.h>

#include "keel/buf.h"
#include "keel/config.h"
#include "keel/http.h"
#include "keel/server.h"

#define KEEL_READ_BUF     (64 * 1024)
#define KEEL_STREAM_CHUNK (64 * 1024)
#define KEEL_ARENA_FREE   32
#define KEEL_LINGER_MS    2000

struct keel_router;

struct keel_loop {
    unsigned id;
    uv_loop_t uv;
    uv_tcp_t listener;
    bool listening;
    uv_async_t wake; /* drain requests from the main thread */
    uv_timer_t tick; /* once a second: drain progress, forced close */
    uv_async_t post; /* keel_server_post: runs the posted work */
    pthread_mutex_t post_mu;
    struct keel_post *post_head, *post_tail; /* post_mu */
    bool post_closed;                        /* post_mu */
    uv_thread_t thread;
    struct keel_server *server;
    struct keel_conn *conns; /* doubly linked list of open connections */
    unsigned nconns;
    char *rbuf; /* shared read buffer, parsed in place */
    struct keel_arena *free_arenas[KEEL_ARENA_FREE];
    unsigned nfree;
    char date[40];
    time_t date_sec;
    bool draining;
    uint64_t drain_deadline_ms; /* uv_now() value past which connections are cut */
    bool closed;
};

struct keel_server {
    const struct keel_config *cfg;
    struct keel_router *router;
    unsigned nloops;
    struct keel_loop *loops;
    _Atomic int state;
    _Atomic unsigned nconns;
    _Atomic long inflight;
    int port;
    int64_t start_ms;
};

enum conn_state {
    CONN_IDLE,    /* between requests (or before the first byte) */
    CONN_HEAD,    /* reading a request line and headers */
    CONN_BODY,    /* reading a body */
    CONN_BUSY,    /* a request is in the pipeline; reading paused */
    CONN_WRITING, /* a response is being written */
    CONN_LINGER,  /* write side shut; draining input before close */
    CONN_CLOSING, /* uv_close called */
};

struct keel_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct keel_loop *loop;
    struct keel_conn *prev, *next;
    llhttp_t parser;
    enum conn_state state;
    struct keel_request *req;
    /* Header accumulation across reads: bytes, then offsets into them. */
    struct keel_buf hbytes;
    struct keel_buf hoffs; /* uint32_t pairs: name off/len, value off/len */
    uint32_t url_len;
    bool in_value;
    uint64_t value_end;    /* stream position after the last value span */
    const char *feed_base; /* the buffer being parsed, and its stream position */
    uint64_t feed_offset;
    unsigned nheaders;
    size_t header_bytes;
    /* Unparsed input saved while a request is handled (pipelining). */
    char *pending;
    size_t pending_len;
    size_t pending_cap;
    /* Output: the serialized head, and the current stream chunk. */
    struct keel_buf out;
    struct keel_buf chunk;
    uint64_t stream_sent;
    int early_status; /* set by parser callbacks that reject a request */
    bool keep_alive;
    bool head_only;
    bool expect_continue;
    bool message_done;
    bool timer_header_armed;
    bool advancing;
    bool advance_again;
    unsigned refs; /* pending thread-pool work */
    bool freed_on_close;
};

/* conn.c */
void keel__conn_arm(struct keel_conn *c, uint64_t ms);
void keel__conn_accept(struct keel_loop *loop);
/* Serves an already connected stream socket (tests and fuzzing). */
keel_status keel__conn_open(struct keel_loop *loop, int fd);
void keel__conn_send(struct keel_conn *c);
void keel__conn_close(struct keel_conn *c);
void keel__conn_drain(struct keel_loop *loop, bool force);
void keel__conn_hold(struct keel_conn *c);
void keel__conn_release(struct keel_conn *c);

/* parser.c */
extern const llhttp_settings_t keel__parser_settings;
void keel__parser_reset_headers(struct keel_conn *c);

/* request.c */
struct keel_request *keel__request_new(struct keel_conn *c);
void keel__request_finish(struct keel_request *req);
void keel__request_dispatch(struct keel_request *req);
struct keel_arena *keel__loop_arena(struct keel_loop *loop);
void keel__loop_arena_put(struct keel_loop *loop, struct keel_arena *a);

/* response.c */
keel_status keel__resp_head(struct keel_request *req, struct keel_buf *out, bool head_only);
const char *keel__loop_date(struct keel_loop *loop);

/* pipeline.c */
void keel__pipeline_start(struct keel_request *req);
void keel__pipeline_run(struct keel_request *req, keel_status rc);
void keel__pipeline_respond(struct keel_request *req);
void keel__pipeline_log(struct keel_request *req);

extern struct keel_server *keel__server;

/* server.c: for tests and fuzzing, the server state and one loop with no
 * listener and no thread; connections are added with keel__conn_open and
 * the caller runs the loop. */
struct keel_loop *keel__server_test_loop(const struct keel_config *cfg, struct keel_router *router);

#endif
