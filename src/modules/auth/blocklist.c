/*
 * blocklist.c - revoked access tokens (docs/internals/identity.md,
 * "Blocklist"): jti entries (logout) and per-user cut-offs (role change,
 * deletion), kept in three places.
 *
 *  - In memory: a sharded hash table, asked by every authenticated request.
 *    An atomic count lets the common case (nothing revoked lately) skip
 *    every lock.
 *  - In the database (token_blocklist): the durable record. A poller
 *    thread copies rows newer than the last it saw into memory every
 *    second, so instances sharing PostgreSQL agree within about a second
 *    even without Redis. bigserial values can commit out of order, so each
 *    poll re-reads a margin of POLL_OVERLAP rows below the highest seen
 *    (noting an entry twice is harmless).
 *  - In Redis when configured: SET with an expiry on revocation, one MGET
 *    per authenticated request, so a logout is seen by every instance at
 *    once. A Redis failure falls back to memory.
 *
 * The poller also deletes expired rows of token_blocklist, login_throttle
 * and refresh families once a minute.
 */
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/config.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/redis.h"

#include "auth_int.h"

#define SHARDS       16
#define POLL_MS      1000
#define CLEAN_EVERY  60 /* polls */
#define POLL_OVERLAP 1000
#define POLL_BATCH   10000
#define SUBJECT_MAX  64

struct entry {
    struct entry *next;
    char kind;
    char subject[SUBJECT_MAX + 1];
    int64_t value_ms;
    int64_t expires_ms;
};

struct shard {
    pthread_mutex_t mu;
    struct entry *head;
};

static struct shard shards[SHARDS];
static atomic_size_t nentries;
static unsigned char hash_key[crypto_shorthash_KEYBYTES];
static struct keel_db *db;
static int64_t max_seq;
static pthread_t poller;
static bool poller_running;
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv = PTHREAD_COND_INITIALIZER;
static bool stopping;

static struct shard *shard_of(char kind, const char *subject)
{
    unsigned char h[crypto_shorthash_BYTES];
    char k[SUBJECT_MAX + 2];
    size_t n = strnlen(subject, SUBJECT_MAX);

    k[0] = kind;
    memcpy(k + 1, subject, n);
    crypto_shorthash(h, (const unsigned char *)k, n + 1, hash_key);
    return &shards[h[0] % SHARDS];
}

void auth_blocklist_note(char kind, const char *subject, int64_t value_ms)
{
    struct shard *s;
    struct entry *e;
    int64_t expires;

    if (!subject || strlen(subject) > SUBJECT_MAX)
        return;
    /* jti entries live until the token's exp; a cut-off until every token
     * it revokes has expired anyway. */
    expires = kind == 'j' ? value_ms : value_ms + (int64_t)KEEL_JWT_MAX_LIFETIME_S * 1000;
    s = shard_of(kind, subject);
    pthread_mutex_lock(&s->mu);
    for (e = s->head; e; e = e->next)
        if (e->kind == kind && strcmp(e->subject, subject) == 0)
            break;
    if (e) {
        if (value_ms > e->value_ms) {
            e->value_ms = value_ms;
            e->expires_ms = expires;
        }
    } else {
        e = keel_xcalloc(1, sizeof(*e));
        e->kind = kind;
        strcpy(e->subject, subject);
        e->value_ms = value_ms;
        e->expires_ms = expires;
        e->next = s->head;
        s->head = e;
        atomic_fetch_add(&nentries, 1);
    }
    pthread_mutex_unlock(&s->mu);
}

/* The entry's value, or -1 when there is none. */
static int64_t lookup(char kind, const char *subject)
{
    struct shard *s = shard_of(kind, subject);
    struct entry *e;
    int64_t v = -1;

    pthread_mutex_lock(&s->mu);
    for (e = s->head; e; e = e->next)
        if (e->kind == kind && strcmp(e->subject, subject) == 0) {
            v = e->value_ms;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return v;
}

bool auth_blocklist_local(const struct keel_identity *id)
{
    int64_t v;

    if (atomic_load_explicit(&nentries, memory_order_relaxed) == 0)
        return false;
    if (lookup('j', id->jti) >= 0)
        return true;
    v = lookup('u', id->user_id);
    return v >= 0 && id->issued_ms <= v;
}

static void purge(int64_t now_ms)
{
    struct entry **pp, *e;
    unsigned i;

    for (i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&shards[i].mu);
        for (pp = &shards[i].head; (e = *pp);) {
            if (e->expires_ms < now_ms) {
                *pp = e->next;
                free(e);
                atomic_fetch_sub(&nentries, 1);
            } else {
                pp = &e->next;
            }
        }
        pthread_mutex_unlock(&shards[i].mu);
    }
}

keel_status auth_blocklist_store(
    struct keel_db_conn *c, char kind, const char *subject, int64_t value_ms, int64_t expires_ms)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(kind == 'j' ? "jti" : "user"), KEEL_DB_TEXT(subject),
                                KEEL_DB_INT(value_ms), KEEL_DB_INT(expires_ms)};
    keel_status rc;

    rc = keel_db_exec(c,
                      "INSERT INTO token_blocklist (kind, subject, value_ms, expires_ms)"
                      " VALUES ($1, $2, $3, $4)",
                      p, KEEL_ARRAY_LEN(p), NULL);
    if (rc == KEEL_OK)
        auth_blocklist_note(kind, subject, value_ms);
    return rc;
}

/* ------------------------------------------------------------- Redis */

static void ignore_reply(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    (void)r;
    (void)arg;
    if (rc < 0)
        keel_log(KEEL_LOG_WARN,
                 "blocklist: Redis write failed; other instances see the "
                 "revocation at their next database poll",
                 KEEL_LF_STR("error", keel_strerror(rc)));
}

struct publish {
    struct keel_request *req;
    keel_status then;
};

static void published(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    struct publish *p = arg;

    ignore_reply(rc, r, NULL);
    keel_request_resume(p->req, p->then);
}

keel_status auth_blocklist_publish(struct keel_request *req,
                                   char kind,
                                   const char *subject,
                                   int64_t value_ms,
                                   int64_t expires_ms,
                                   keel_status then)
{
    char key[96], val[24], px[24];
    int64_t ttl = expires_ms - keel_wall_ms();
    struct publish *p;

    if (!keel_redis_enabled() || ttl <= 0)
        return then;
    p = keel_arena_alloc(req->arena, sizeof(*p));
    if (!p)
        return then;
    p->req = req;
    p->then = then;
    snprintf(key, sizeof(key), "keel:bl:%s:%s", kind == 'j' ? "jti" : "user", subject);
    snprintf(val, sizeof(val), "%lld", (long long)value_ms);
    snprintf(px, sizeof(px), "%lld", (long long)ttl);
    if (keel_redis_command(keel_request_uv_loop(req), keel_request_thread(req), published, p,
                           "SET %s %s PX %s", key, val, px) != KEEL_OK)
        return then; /* Redis down: the database poll carries it */
    return keel_request_park(req);
}

struct ask {
    struct keel_request *req;
    auth_blocklist_cb done;
    int64_t issued_ms;
};

static void ask_reply(keel_status rc, const struct keel_redis_reply *r, void *arg)
{
    struct ask *a = arg;
    bool revoked = false;
    char *end;
    long long cut;

    if (rc == KEEL_OK && r->type == KEEL_REDIS_ARRAY && r->elements == 2) {
        if (r->element[0].type == KEEL_REDIS_STRING)
            revoked = true;
        if (r->element[1].type == KEEL_REDIS_STRING) {
            cut = strtoll(r->element[1].str, &end, 10);
            if (end != r->element[1].str && a->issued_ms <= cut)
                revoked = true;
        }
    }
    /* A failed ask keeps whatever memory says (the caller checked it). */
    a->done(a->req, revoked);
}

bool auth_blocklist_ask_redis(struct keel_request *req,
                              const struct keel_identity *id,
                              auth_blocklist_cb done)
{
    struct ask *a;
    char k1[96], k2[96];

    if (!keel_redis_enabled())
        return false;
    a = keel_arena_alloc(req->arena, sizeof(*a));
    if (!a)
        return false;
    a->req = req;
    a->done = done;
    a->issued_ms = id->issued_ms;
    snprintf(k1, sizeof(k1), "keel:bl:jti:%s", id->jti);
    snprintf(k2, sizeof(k2), "keel:bl:user:%s", id->user_id);
    return keel_redis_command(keel_request_uv_loop(req), keel_request_thread(req), ask_reply, a,
                              "MGET %s %s", k1, k2) == KEEL_OK;
}

/* ------------------------------------------------------------ poller */

static keel_status poll_once(struct keel_db_conn *c)
{
    int64_t from = max_seq > POLL_OVERLAP ? max_seq - POLL_OVERLAP : 0;
    struct keel_db_param p[] = {KEEL_DB_INT(from), KEEL_DB_INT(keel_wall_ms()),
                                KEEL_DB_INT(POLL_BATCH)};
    struct keel_db_rows *r;
    const char *kind, *subject;
    char sub[SUBJECT_MAX + 1];
    size_t kl, sl;
    int64_t seq;
    keel_status rc;

    rc = keel_db_query(c,
                       "SELECT seq, kind, subject, value_ms FROM token_blocklist"
                       " WHERE seq > $1 AND expires_ms > $2 ORDER BY seq LIMIT $3",
                       p, KEEL_ARRAY_LEN(p), &r);
    if (rc < 0)
        return rc;
    while ((rc = keel_db_next(r)) == KEEL_OK) {
        seq = keel_db_int64(r, 0);
        kind = keel_db_text(r, 1, &kl);
        subject = keel_db_text(r, 2, &sl);
        if (seq > max_seq)
            max_seq = seq;
        if (!kind || !subject || sl > SUBJECT_MAX)
            continue;
        memcpy(sub, subject, sl);
        sub[sl] = '\0';
        auth_blocklist_note(kind[0] == 'j' ? 'j' : 'u', sub, keel_db_int64(r, 3));
    }
    keel_db_rows_free(r);
    return rc == KEEL_DONE ? KEEL_OK : rc;
}

static keel_status clean(struct keel_db_conn *c, void *arg)
{
    struct keel_db_param p[] = {KEEL_DB_INT(keel_wall_ms())};
    struct keel_db_param w[] = {KEEL_DB_INT(keel_wall_ms() - THROTTLE_WINDOW_MS)};
    keel_status rc;

    (void)arg;
    rc = keel_db_exec(c, "DELETE FROM token_blocklist WHERE expires_ms < $1", p, 1, NULL);
    if (rc == KEEL_OK)
        rc = keel_db_exec(c, "DELETE FROM refresh_families WHERE expires_ms < $1", p, 1, NULL);
    if (rc == KEEL_OK)
        rc = keel_db_exec(c, "DELETE FROM login_throttle WHERE window_ms < $1 AND blocked_ms < $1",
                          w, 1, NULL);
    return rc;
}

static void *poll_main(void *arg)
{
    struct keel_db_conn *c;
    struct timespec ts;
    unsigned n = 0;

    (void)arg;
    pthread_mutex_lock(&stop_mu);
    while (!stopping) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += POLL_MS / 1000;
        pthread_cond_timedwait(&stop_cv, &stop_mu, &ts);
        if (stopping)
            break;
        pthread_mutex_unlock(&stop_mu);
        if (keel_db_acquire(db, KEEL_DB_READ_PRIMARY, NULL, &c) == KEEL_OK) {
            (void)poll_once(c);
            keel_db_release(c);
        }
        purge(keel_wall_ms());
        if (++n % CLEAN_EVERY == 0)
            (void)keel_db_transaction(db, NULL, clean, NULL);
        pthread_mutex_lock(&stop_mu);
    }
    pthread_mutex_unlock(&stop_mu);
    return NULL;
}

keel_status auth_blocklist_init(const struct keel_config *cfg, struct keel_db *database)
{
    struct keel_db_conn *c;
    keel_status rc;
    unsigned i;

    (void)cfg;
    for (i = 0; i < SHARDS; i++)
        pthread_mutex_init(&shards[i].mu, NULL);
    crypto_shorthash_keygen(hash_key);
    db = database;
    max_seq = 0;
    stopping = false;
    rc = keel_db_acquire(db, KEEL_DB_READ_PRIMARY, NULL, &c);
    if (rc < 0)
        return rc;
    rc = poll_once(c);
    keel_db_release(c);
    if (rc < 0)
        return rc;
    if (pthread_create(&poller, NULL, poll_main, NULL) != 0)
        return KEEL_E_INTERNAL;
    poller_running = true;
    return KEEL_OK;
}

void auth_blocklist_fini(void)
{
    unsigned i;

    if (poller_running) {
        pthread_mutex_lock(&stop_mu);
        stopping = true;
        pthread_cond_signal(&stop_cv);
        pthread_mutex_unlock(&stop_mu);
        pthread_join(poller, NULL);
        poller_running = false;
    }
    purge(INT64_MAX);
    for (i = 0; i < SHARDS; i++)
        pthread_mutex_destroy(&shards[i].mu);
}
