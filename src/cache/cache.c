/*
 * cache.c - PLACEHOLDER being replaced: a pass-through that loads every
 * read from the database (no caching, no invalidation).
 */
#include "keel/cache.h"

#include <stdlib.h>

#include "keel/http.h"

struct pass {
    keel_cache_load_fn load;
    keel_cache_done_fn done;
    void *arg;
    struct keel_buf out;
};

keel_status keel_cache_init(const struct keel_config *cfg, struct keel_db *db)
{
    (void)cfg;
    (void)db;
    return KEEL_OK;
}

void keel_cache_shutdown(void)
{
}

static keel_status pass_load(struct keel_db_conn *c, void *arg)
{
    struct pass *p = arg;

    return p->load(c, p->arg, &p->out);
}

static keel_status pass_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct pass *p = arg;

    rc = p->done(req, rc, p->out.data, p->out.len, "db", p->arg);
    keel_buf_free(&p->out);
    return rc;
}

keel_status keel_cache_get(struct keel_request *req,
                           const char *key,
                           uint32_t ttl_ms,
                           enum keel_db_intent intent,
                           keel_cache_load_fn load,
                           keel_cache_done_fn done,
                           void *arg)
{
    struct pass *p = keel_arena_calloc(req->arena, 1, sizeof(*p));

    (void)key;
    (void)ttl_ms;
    if (!p)
        return KEEL_E_NOMEM;
    p->load = load;
    p->done = done;
    p->arg = arg;
    keel_buf_init(&p->out, KEEL_CACHE_VALUE_MAX);
    return keel_db_run(req, intent, pass_load, pass_done, p);
}

keel_status keel_cache_invalidate(struct keel_request *req,
                                  const char *const *keys,
                                  unsigned nkeys,
                                  keel_status then)
{
    (void)req;
    (void)keys;
    (void)nkeys;
    return then;
}
