/*
 * sink.c - a test sink for streamed request bodies (debug module): the
 * body is hashed (SHA-256) and counted as it arrives, never kept, so the
 * e2e tests can send tens of megabytes and check that memory stays flat
 * and that every byte arrived in order. After every MiB the sink says it
 * is busy and resumes 1 ms later from a loop timer, so backpressure (the
 * connection pausing its reads) is exercised on every large body.
 *
 * The state lives on the heap, not in the arena: the timer handle must
 * outlive the request until libuv has closed it. The arena's cleanup
 * closes the timer; its close callback frees the state.
 */
#include <sodium.h>
#include <stdlib.h>
#include <uv.h>

#include "keel/arena.h"
#include "keel/json.h"

#include "debug_int.h"

#define BUSY_EVERY (1024 * 1024)

struct sink {
    crypto_hash_sha256_state sha;
    uint64_t bytes;
    uint64_t next_busy;
    uv_timer_t timer;
    struct keel_request *req;
};

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sink_cleanup(void *p)
{
    struct sink *s = p;

    s->timer.data = s;
    uv_close((uv_handle_t *)&s->timer, on_closed);
}

static keel_status sink_open(struct keel_request *req)
{
    struct sink *s = keel_xcalloc(1, sizeof(*s));

    crypto_hash_sha256_init(&s->sha);
    s->next_busy = BUSY_EVERY;
    s->req = req;
    uv_timer_init(keel_request_uv_loop(req), &s->timer);
    if (keel_arena_defer(req->arena, sink_cleanup, s) < 0) {
        s->timer.data = s;
        uv_close((uv_handle_t *)&s->timer, on_closed);
        return KEEL_E_NOMEM;
    }
    req->body_ctx = s;
    return KEEL_OK;
}

static void on_ready(uv_timer_t *t)
{
    struct sink *s = KEEL_CONTAINER_OF(t, struct sink, timer);

    keel_request_body_resume(s->req);
}

static keel_status sink_write(struct keel_request *req, const char *p, size_t n)
{
    struct sink *s = req->body_ctx;

    crypto_hash_sha256_update(&s->sha, (const unsigned char *)p, n);
    s->bytes += n;
    if (s->bytes < s->next_busy)
        return KEEL_OK;
    s->next_busy = s->bytes + BUSY_EVERY;
    uv_timer_start(&s->timer, on_ready, 1, 0);
    return KEEL_AGAIN;
}

const struct keel_body_sink debug_sink = {.open = sink_open, .write = sink_write};

keel_status debug_sink_done(struct keel_request *req)
{
    struct sink *s = req->body_ctx;
    unsigned char digest[crypto_hash_sha256_BYTES];
    char hex[2 * crypto_hash_sha256_BYTES + 1];
    struct keel_json j;

    if (!s) /* no body was sent */
        return keel_fail(req, 400, NULL, "A body is required.");
    crypto_hash_sha256_final(&s->sha, digest);
    sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
    keel_resp_start(req, 200, "application/json");
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "bytes");
    keel_json_int(&j, (int64_t)s->bytes);
    keel_json_key(&j, "sha256");
    keel_json_str(&j, hex);
    keel_json_obj_close(&j);
    return keel_json_end(&j) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}
