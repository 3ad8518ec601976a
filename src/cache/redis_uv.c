/*
 * redis_uv.c - the hiredis event adapter for libuv that the Redis client
 * (redis.c) attaches to each asynchronous context: one uv_poll handle per
 * context, started and stopped as hiredis asks for read and write events.
 *
 * The libuv adapter is ours, not <hiredis/adapters/libuv.h>: the 0.14.1
 * adapter returns early when uv_poll reports an error status, and libuv
 * reports a socket error (POLLERR: a refused connect, a reset) exactly that
 * way and stops the poll handle, so hiredis would never learn that its
 * connection failed. Ours hands the error to hiredis as a read/write
 * event, as the adapter of hiredis 1.0 does, and hiredis then finds the
 * error itself.
 *
 * The poll handle outlives the context by one loop turn: hiredis calls
 * cleanup when it frees the context, and the handle's memory goes when
 * libuv has closed it.
 */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <uv.h>

#include "keel/core.h"

#include "redis_int.h"

struct uvev {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis has let go of the context */
    int events;
};

static void ev_poll(uv_poll_t *h, int status, int events)
{
    struct uvev *e = h->data;

    /* An error status (POLLERR) means the socket failed: let hiredis read
     * or write as it asked to, so it sees the error and disconnects. */
    if (status < 0)
        events = e->events;
    if (e->ac && (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
    /* libuv stopped the handle on the error; hiredis still wants events. */
    if (status < 0 && e->ac && e->events)
        uv_poll_start(&e->poll, e->events, ev_poll);
}

static void ev_update(struct uvev *e, int add, int del)
{
    e->events = (e->events | add) & ~del;
    if (e->events)
        uv_poll_start(&e->poll, e->events, ev_poll);
    else
        uv_poll_stop(&e->poll);
}

static void ev_add_read(void *p)
{
    ev_update(p, UV_READABLE, 0);
}

static void ev_del_read(void *p)
{
    ev_update(p, 0, UV_READABLE);
}

static void ev_add_write(void *p)
{
    ev_update(p, UV_WRITABLE, 0);
}

static void ev_del_write(void *p)
{
    ev_update(p, 0, UV_WRITABLE);
}

static void ev_closed(uv_handle_t *h)
{
    free(h->data);
}

/* hiredis is freeing the context: the fd is closed right after, so the
 * poll handle must stop watching it now (uv_close does so at once). */
static void ev_cleanup(void *p)
{
    struct uvev *e = p;

    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, ev_closed);
}

int keel__redis_ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct uvev *e = keel_xcalloc(1, sizeof(*e));

    if (uv_poll_init(loop, &e->poll, ac->c.fd) < 0) {
        free(e);
        return REDIS_ERR;
    }
    e->poll.data = e;
    e->ac = ac;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return REDIS_OK;
}
