/*
 * db_listen.c - PostgreSQL LISTEN for the rest of Keel (keel_db_listen_start
 * in include/keel/db.h): a thread with a libpq connection of its own that
 * hands every notification on one channel to a callback. The cache's
 * invalidation listener uses it so invalidations still flow between
 * instances when Redis is down.
 *
 * DESIGN: the connection is not a pool slot (it would hold one forever)
 * and it is used asynchronously, unlike the pools' (storage.md): the
 * thread waits in poll() on the socket and on an eventfd, so stop is
 * immediate even in the middle of a connect. Connect parameters match the
 * pools' (db_pg.c): the primary (target_session_attrs=read-write: NOTIFY
 * is only delivered on the server it was sent to, and a standby cannot
 * LISTEN), TCP keepalives and tcp_user_timeout to notice a vanished host.
 * After a loss: UP is announced again only once LISTEN is back in effect;
 * the caller must assume it missed notifications in between. Backoff 100
 * ms doubling to 5 s, jittered. libpq stays inside src/db (STYLE.md).
 */
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "keel/core.h"
#include "keel/db.h"
#include "keel/log.h"

#define CONNECT_MS     5000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct keel_db_listener {
    struct keel_db *db;
    char *url;
    char *channel;
    keel_db_listen_fn cb;
    void *arg;
    pthread_t thread;
    int wake; /* eventfd, written once to stop */
    atomic_bool stop;
};

static uint64_t now_ms(void)
{
    return keel_now_ns() / 1000000u;
}

/* Waits for `events` on fd (fd < 0: only for stop) until deadline_ms.
 * Returns 1 when fd is ready, 0 on timeout, -1 on stop or error. */
static int wait_fd(struct keel_db_listener *l, int fd, short events, uint64_t deadline_ms)
{
    struct pollfd p[2] = {{.fd = l->wake, .events = POLLIN}, {.fd = fd, .events = events}};
    uint64_t now;
    int n;

    for (;;) {
        if (atomic_load(&l->stop))
            return -1;
        now = now_ms();
        if (now >= deadline_ms)
            return 0;
        n = poll(p, fd >= 0 ? 2 : 1, (int)(deadline_ms - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || atomic_load(&l->stop))
            return -1;
        if (n > 0 && fd >= 0 && p[1].revents)
            return 1;
    }
}

/* libpq's messages never quote the password, but a URL that holds one
 * is a secret: make sure (storage.md "no password in logs"). */
static void log_failure(struct keel_db_listener *l, const char *what, PGconn *pg)
{
    char msg[256];
    PQconninfoOption *opts = PQconninfoParse(l->url, NULL), *o;
    const char *pw = NULL;
    char *at;
    size_t n;

    snprintf(msg, sizeof(msg), "%s", pg ? PQerrorMessage(pg) : "out of memory");
    n = strcspn(msg, "\n");
    msg[n] = '\0';
    for (o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0)
            pw = o->val;
    if (pw && *pw)
        while ((at = strstr(msg, pw)))
            memset(at, '*', strlen(pw));
    keel_log(KEEL_LOG_WARN, what, KEEL_LF_STR("channel", l->channel), KEEL_LF_STR("error", msg));
    if (opts)
        PQconninfoFree(opts);
}

/* The pools' defaults (db_pg.c), with our own name for pg_stat_activity. */
static PGconn *connect_start(struct keel_db_listener *l)
{
    static const char *const kw[] = {"connect_timeout",
                                     "application_name",
                                     "keepalives",
                                     "keepalives_idle",
                                     "keepalives_interval",
                                     "keepalives_count",
                                     "tcp_user_timeout",
                                     "target_session_attrs",
                                     "dbname",
                                     NULL};
    const char *val[] = {"5", "keel-listen", "1",          "10",   "5",
                         "3", "15000",       "read-write", l->url, NULL};

    return PQconnectStartParams(kw, val, 1);
}

/* Connects asynchronously within CONNECT_MS. NULL on failure or stop. */
static PGconn *connect_primary(struct keel_db_listener *l, bool quiet)
{
    uint64_t deadline = now_ms() + CONNECT_MS;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    PGconn *pg = connect_start(l);
    int ready;

    if (!pg || PQstatus(pg) == CONNECTION_BAD)
        goto fail;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED || PQsocket(pg) < 0)
            goto fail;
        ready = wait_fd(l, PQsocket(pg), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (ready <= 0) {
            if (ready == 0 && !quiet)
                keel_log(KEEL_LOG_WARN, "database listener: connect timed out",
                         KEEL_LF_STR("channel", l->channel));
            PQfinish(pg);
            return NULL;
        }
        st = PQconnectPoll(pg);
    }
    return pg;
fail:
    if (!quiet && !atomic_load(&l->stop))
        log_failure(l, "database listener: connect failed", pg);
    PQfinish(pg);
    return NULL;
}

/* Sends LISTEN and waits for its result. */
static bool listen_on(struct keel_db_listener *l, PGconn *pg)
{
    char *ident = PQescapeIdentifier(pg, l->channel, strlen(l->channel));
    char *sql = ident ? keel_xmalloc(strlen(ident) + 8) : NULL;
    uint64_t deadline = now_ms() + CONNECT_MS;
    bool ok = false, sent;
    PGresult *res;

    if (!ident)
        return false;
    strcpy(sql, "LISTEN ");
    strcat(sql, ident);
    sent = PQsendQuery(pg, sql) == 1;
    free(sql);
    PQfreemem(ident);
    if (!sent)
        return false;
    for (;;) {
        while (!PQisBusy(pg)) {
            res = PQgetResult(pg);
            if (!res)
                return ok;
            ok = PQresultStatus(res) == PGRES_COMMAND_OK;
            PQclear(res);
        }
        if (wait_fd(l, PQsocket(pg), POLLIN, deadline) <= 0 || !PQconsumeInput(pg))
            return false;
    }
}

/* Delivers notifications until the connection fails (false) or stop. */
static bool serve(struct keel_db_listener *l, PGconn *pg)
{
    PGnotify *n;
    int ready;

    for (;;) {
        while ((n = PQnotifies(pg))) {
            if (n->extra)
                l->cb(KEEL_DB_LISTEN_NOTIFY, n->extra, strlen(n->extra), l->arg);
            PQfreemem(n);
        }
        /* Keepalives and tcp_user_timeout surface a dead peer as an error. */
        ready = wait_fd(l, PQsocket(pg), POLLIN, now_ms() + 60000);
        if (ready < 0)
            return atomic_load(&l->stop);
        if (ready > 0 && !PQconsumeInput(pg))
            return false;
    }
}

static void *listen_main(void *arg)
{
    struct keel_db_listener *l = arg;
    unsigned backoff = BACKOFF_MIN_MS;
    bool warned = false;
    PGconn *pg;

    while (!atomic_load(&l->stop)) {
        pg = connect_primary(l, warned);
        if (pg && !listen_on(l, pg)) {
            if (!warned && !atomic_load(&l->stop))
                log_failure(l, "database listener: LISTEN failed", pg);
        } else if (pg) {
            keel_log(KEEL_LOG_INFO, "database listener ready", KEEL_LF_STR("channel", l->channel));
            l->cb(KEEL_DB_LISTEN_UP, NULL, 0, l->arg);
            backoff = BACKOFF_MIN_MS;
            warned = false;
            if (serve(l, pg)) {
                PQfinish(pg);
                break;
            }
            log_failure(l, "database listener: connection lost; reconnecting", pg);
            l->cb(KEEL_DB_LISTEN_DOWN, NULL, 0, l->arg);
        }
        warned = true; /* one warning per outage */
        PQfinish(pg);
        if (wait_fd(l, -1, 0, now_ms() + backoff / 2 + randombytes_uniform(backoff / 2 + 1)) < 0)
            break;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

keel_status keel_db_listen_start(struct keel_db *db,
                                 const char *url,
                                 const char *channel,
                                 keel_db_listen_fn cb,
                                 void *arg,
                                 struct keel_db_listener **out)
{
    struct keel_db_listener *l;

    *out = NULL;
    if (!db || strcmp(keel_db_dialect(db), "postgres") != 0 || !url || !channel || !*channel || !cb)
        return KEEL_E_INVALID;
    l = keel_xcalloc(1, sizeof(*l));
    l->db = db;
    l->url = keel_xstrdup(url);
    l->channel = keel_xstrdup(channel);
    l->cb = cb;
    l->arg = arg;
    l->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->wake < 0 || pthread_create(&l->thread, NULL, listen_main, l) != 0) {
        if (l->wake >= 0)
            close(l->wake);
        explicit_bzero(l->url, strlen(l->url));
        free(l->url);
        free(l->channel);
        free(l);
        return KEEL_E_INTERNAL;
    }
    *out = l;
    return KEEL_OK;
}

void keel_db_listen_stop(struct keel_db_listener *l)
{
    uint64_t one = 1;

    if (!l)
        return;
    atomic_store(&l->stop, true);
    if (write(l->wake, &one, sizeof(one)) < 0)
        keel_log(KEEL_LOG_WARN, "database listener: wake-up failed",
                 KEEL_LF_STR("error", strerror(errno)));
    pthread_join(l->thread, NULL);
    close(l->wake);
    explicit_bzero(l->url, strlen(l->url));
    free(l->url);
    free(l->channel);
    free(l);
}
