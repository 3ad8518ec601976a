/*
 * http_int.h - private types of the HTTP layer: the server (a runtime
 * service, keel/runtime.h), its per-loop state, the connections it owns
 * and their parsers. Only src/http and the tests and fuzzers of the HTTP
 * core include this file.
 *
 * Owners: server.c owns struct keel_server and struct keel_http_loop;
 * conn.c owns struct keel_conn (sockets, timers, reading, writing); parser.c
 * owns struct keel_parser (llhttp and the message being parsed); request.c
 * owns a request's life; pipeline.c its way through the phases.
 */
#ifndef KEEL_HTTP_INT_H
#define KEEL_HTTP_INT_H

#include <llhttp.h>
#include <stdatomic.h>
#include <time.h>
#include <uv.h>

#include "keel/buf.h"
#include "keel/config.h"
#include "keel/http.h"
#include "keel/server.h"

#define KEEL_READ_BUF         (64 * 1024)
#define KEEL_STREAM_CHUNK     (64 * 1024)
#define KEEL_ARENA_FREE       32
#define KEEL_LINGER_MS        2000
#define KEEL_LINGER_MAX_BYTES (256 * 1024) /* input discarded before a close, at most */
/* A refused request's unread body is read and dropped, keeping the
 * connection, when it is this small and announced by Content-Length;
 * a larger one (an upload) is never read: the connection closes. */
#define KEEL_DISCARD_MAX (64 * 1024)

struct keel_router;
struct keel_server;

/* The HTTP side of one runtime loop. */
struct keel_http_loop {
    unsigned id;
    uv_loop_t *uv;
    struct keel_server *server;
    uv_tcp_t listener;
    int fd; /* bound by prepare, handed to libuv by start */
    bool listening;
    bool draining;
    struct keel_conn *conns; /* doubly linked list of open connections */
    unsigned nconns;
    char *rbuf; /* shared read buffer, parsed in place */
    struct keel_arena *free_arenas[KEEL_ARENA_FREE];
    unsigned nfree;
    char date[40];
    time_t date_sec;
};

struct keel_server {
    const struct keel_config *cfg;
    struct keel_router *router;
    unsigned nloops;
    struct keel_http_loop *loops;
    _Atomic unsigned nconns;
    _Atomic long inflight;
    int port;
};

/* ---------------------------------------------------------------- parser */

/* What stopped a feed. */
enum keel_parse_event {
    KEEL_PARSE_MORE,    /* every byte was consumed; the message goes on */
    KEEL_PARSE_HEADERS, /* the head of a message with a body is complete; paused */
    KEEL_PARSE_MESSAGE, /* a message is complete; paused */
    KEEL_PARSE_BUSY,    /* the body's sink is busy; paused */
    KEEL_PARSE_ERROR,   /* the message is refused: status (or sink_rc) says how */
};

struct keel_parser {
    llhttp_t ll;
    struct keel_conn *conn;        /* handed to keel__request_new only */
    const struct keel_server *srv; /* limits and routes */
    struct keel_request *req;      /* the message being parsed; NULL between messages */
    /* Head accumulation across reads: bytes, then offsets into them. */
    struct keel_buf hbytes;
    struct keel_buf hoffs; /* uint32_t quadruples: name off/len, value off/len */
    uint32_t url_len;
    bool in_value;
    uint64_t value_end;    /* stream position after the last value span */
    const char *feed_base; /* the buffer being parsed, and its stream position */
    uint64_t feed_offset;
    unsigned nheaders;
    size_t header_bytes;
    int status;          /* of a refusal: 400, 413, 414, 431, 501, 505 ... */
    keel_status sink_rc; /* a sink's error (status 0) */
    bool head_only;      /* HEAD: an error response carries no body either */
    bool expect_continue;
    bool keep_alive; /* of the completed message */
    bool conn_close; /* its Connection header says close */
    bool discard;    /* dropping a refused request's body */
    /* Events of the last feed, for the connection's timers. */
    struct keel_request *begun; /* the request of a message that began (or NULL) */
    bool body_progress;         /* body bytes arrived */
};

void keel__parser_init(struct keel_parser *p, struct keel_conn *c, const struct keel_server *srv);
/* Frees the scratch buffers between messages and at close. */
void keel__parser_reset(struct keel_parser *p);
/* Parses data[0..len): *used receives the bytes consumed. */
enum keel_parse_event
keel__parser_feed(struct keel_parser *p, const char *data, size_t len, size_t *used);
/* Continues after KEEL_PARSE_HEADERS or _BUSY (a message's end needs
 * nothing: the next feed parses the next message). */
void keel__parser_resume(struct keel_parser *p);
/* Whether the rest of a message paused at its head (or at a busy sink) may
 * be read and dropped to keep the connection: see KEEL_DISCARD_MAX; never
 * for a client that waits for 100 Continue. */
bool keel__parser_discardable(const struct keel_parser *p);
/* Goes on with such a message, dropping its body (the request is gone):
 * the feeds end with KEEL_PARSE_MESSAGE when it is over. */
void keel__parser_discard(struct keel_parser *p);
/* The status to answer a KEEL_PARSE_ERROR of llhttp error err with. */
int keel__parser_error_status(const struct keel_parser *p);

/* ------------------------------------------------------------ connection */

enum conn_state {
    CONN_IDLE,      /* between requests (or before the first byte) */
    CONN_HEAD,      /* reading a request line and headers */
    CONN_BODY,      /* reading a body */
    CONN_BODY_BUSY, /* reading a body, paused while its sink is busy */
    CONN_BUSY,      /* a request is in the pipeline; reading paused */
    CONN_WRITING,   /* a response is being written */
    CONN_LINGER,    /* write side shut; draining input before close */
    CONN_CLOSING,   /* uv_close called */
};

struct keel_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct keel_http_loop *loop;
    struct keel_conn *prev, *next;
    struct keel_parser parser;
    enum conn_state state;
    struct keel_request *req; /* the request being served; owned here */
    /* Unparsed input saved while a request is handled (pipelining). */
    char *pending;
    size_t pending_len;
    size_t pending_cap;
    /* Output: the serialized head, and the current stream chunk. */
    struct keel_buf out;
    struct keel_buf chunk;
    uint64_t stream_sent;
    size_t lingered;             /* bytes discarded while lingering */
    enum keel_parse_event event; /* of the last feed, when it paused */
    bool keep_alive;
    bool message_read; /* the request's whole message has been read */
    bool body_wait;    /* the request waits (held) for its body */
    bool discarding;   /* dropping the unread body of an answered request */
    bool timer_header_armed;
    bool advancing;
    bool advance_again;
    unsigned refs; /* holds of waiting requests */
    bool freed_on_close;
};

/* conn.c */
void keel__conn_accept(struct keel_http_loop *loop);
/* Serves an already connected stream socket (tests and fuzzing). */
keel_status keel__conn_open(struct keel_http_loop *loop, int fd);
void keel__conn_send(struct keel_conn *c);
void keel__conn_close(struct keel_conn *c);
void keel__conn_drain(struct keel_http_loop *loop, bool force);
void keel__conn_hold(struct keel_conn *c);
void keel__conn_release(struct keel_conn *c);
/* The pipeline reached the body: KEEL_DECLINED when the message is read
 * already; else starts reading it (sending 100 Continue when asked; the
 * route's sink opened first) and returns KEEL_AGAIN with the request
 * held, resumed with KEEL_DECLINED once the message is complete or with
 * an error. */
keel_status keel__conn_read_body(struct keel_conn *c);

/* request.c */
struct keel_request *keel__request_new(struct keel_conn *c);
void keel__request_finish(struct keel_request *req);
struct keel_arena *keel__loop_arena(struct keel_http_loop *loop);
void keel__loop_arena_put(struct keel_http_loop *loop, struct keel_arena *a);

/* response.c */
keel_status keel__resp_head(struct keel_request *req, struct keel_buf *out, bool head_only);
const char *keel__loop_date(struct keel_http_loop *loop);

/* pipeline.c */
void keel__pipeline_start(struct keel_request *req);
void keel__pipeline_run(struct keel_request *req, keel_status rc);
void keel__pipeline_respond(struct keel_request *req);
void keel__pipeline_log(struct keel_request *req);

/* server.c: for tests and fuzzing, the HTTP state of the runtime's test
 * loop (keel__runtime_test_loop): no listener; connections are added
 * with keel__conn_open and the caller runs the loop. */
struct keel_http_loop *keel__server_test_loop(const struct keel_config *cfg,
                                              struct keel_router *router);

#endif
