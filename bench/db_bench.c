/*
 * db_bench.c - point selects by primary key through the storage API
 * (include/keel/db.h), the Keel half of the storage benchmark that
 * bench/storage.sh runs against `pgbench -S -M prepared` (issue 3
 * "Performance": Keel's rate >= 0.8 x pgbench's, same connections, same
 * run).
 *
 * Usage: db_bench [--url URL] [--threads N] [--duration S] [--scale S]
 *                 [--intent read|primary]
 * The URL defaults to $KEEL_DATABASE_URL. Prints one JSON object on stdout:
 *   {"qps":..., "threads":N, "errors":..., "queries":..., "seconds":...,
 *    "lat_avg_us":..., "lat_p50_us":..., "lat_p99_us":..., ...}
 * Exit status: 0 after a run (even with errors; they are in the JSON), 1 when
 * the database cannot be opened or no query succeeded, 64 for bad usage.
 *
 * DESIGN: the pool gets exactly N connections and N threads loop over
 * acquire -> query -> next -> read -> rows_free -> release, so each
 * connection is in use by one thread at a time, like pgbench's N clients,
 * and the pool's checkout and release are part of every query (as for a
 * repository call). The threads are plain pthreads calling the blocking API
 * directly, the way a thread-pool worker runs a keel_db_run job; the hop
 * from an event loop to the thread pool and back is measured through HTTP
 * elsewhere and is not what the bar compares. Before timing starts, every
 * thread holds a connection at once and runs the statement once, so all N
 * connections are open and the statement is prepared on each: the figure
 * excludes connection set-up, like pgbench's "tps ... (without initial
 * connection time)". The same statement text as pgbench's -S script is
 * used, with a uniformly random aid in 1..100000 x scale.
 */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/config.h"
#include "keel/core.h"
#include "keel/db.h"
#include "keel/log.h"

#define SELECT_SQL  "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
#define MAX_THREADS 1024
#define HIST_US     20000 /* latencies up to 20 ms at 1 us resolution, the rest in one bucket */

struct worker {
    pthread_t tid;
    uint64_t rng;
    uint64_t queries;
    uint64_t errors;
    uint64_t lat_ns_sum;
    int64_t balance_sum; /* keeps the read from being optimized away */
    uint32_t *hist;      /* HIST_US + 1 buckets */
    keel_status first_rc;
    char first_err[160];
};

struct bench {
    struct keel_db *db;
    enum keel_db_intent intent;
    int64_t naccounts;
    unsigned nthreads;
    pthread_barrier_t warm;  /* all threads hold a connection */
    pthread_barrier_t ready; /* connections released, about to start */
    pthread_barrier_t go;    /* main has taken the start time */
    _Atomic bool stop;
    _Atomic unsigned warm_failures;
};

static struct bench B;

/* xorshift64*: cheap and good enough to spread keys over the table. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void note_error(struct worker *w, keel_status rc, struct keel_db_conn *c)
{
    w->errors++;
    if (w->first_rc != KEEL_OK)
        return;
    w->first_rc = rc;
    snprintf(w->first_err, sizeof(w->first_err), "%s", c ? keel_db_errmsg(c) : "acquire failed");
}

/* One point select on an acquired connection: KEEL_OK when exactly one row
 * came back and its balance was read. */
static keel_status select_one(struct keel_db_conn *c, int64_t aid, int64_t *balance_out)
{
    struct keel_db_param p[1] = {KEEL_DB_INT(aid)};
    struct keel_db_rows *r;
    keel_status rc;

    rc = keel_db_query(c, SELECT_SQL, p, 1, &r);
    if (rc < 0)
        return rc;
    rc = keel_db_next(r);
    if (rc == KEEL_OK)
        *balance_out = keel_db_int64(r, 0);
    else if (rc == KEEL_DONE)
        rc = KEEL_E_NOT_FOUND; /* every aid in range exists */
    keel_db_rows_free(r);
    return rc;
}

static int64_t random_aid(struct worker *w)
{
    return 1 + (int64_t)(rng_next(&w->rng) % (uint64_t)B.naccounts);
}

/* Before timing: hold a connection while every other thread holds one, so
 * the pool opens all N, and prepare the statement on it. */
static void warm_up(struct worker *w)
{
    struct keel_db_conn *c = NULL;
    int64_t bal;
    keel_status rc;

    rc = keel_db_acquire(B.db, B.intent, NULL, &c);
    if (rc == KEEL_OK)
        rc = select_one(c, random_aid(w), &bal);
    if (rc < 0) {
        note_error(w, rc, c);
        atomic_fetch_add(&B.warm_failures, 1);
    }
    pthread_barrier_wait(&B.warm);
    keel_db_release(c);
    w->errors = 0; /* warm-up failures are reported by the count above */
}

static void record_latency(struct worker *w, uint64_t ns)
{
    uint64_t us = ns / 1000;

    w->lat_ns_sum += ns;
    w->hist[us < HIST_US ? us : HIST_US]++;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct keel_db_conn *c;
    int64_t bal;
    uint64_t t0, t1;
    keel_status rc;

    warm_up(w);
    pthread_barrier_wait(&B.ready);
    pthread_barrier_wait(&B.go);
    t0 = keel_now_ns();
    while (!atomic_load_explicit(&B.stop, memory_order_relaxed)) {
        rc = keel_db_acquire(B.db, B.intent, NULL, &c);
        if (rc < 0) {
            note_error(w, rc, NULL);
            t0 = keel_now_ns();
            continue;
        }
        rc = select_one(c, random_aid(w), &bal);
        if (rc < 0)
            note_error(w, rc, c);
        keel_db_release(c);
        t1 = keel_now_ns();
        if (rc == KEEL_OK) {
            w->queries++;
            w->balance_sum += bal;
            record_latency(w, t1 - t0);
        }
        t0 = t1;
    }
    return NULL;
}

/* ------------------------------------------------------------- report */

static uint64_t percentile_us(const uint32_t *hist, uint64_t total, double q)
{
    uint64_t want = (uint64_t)((double)total * q), seen = 0;
    unsigned i;

    if (total == 0)
        return 0;
    for (i = 0; i <= HIST_US; i++) {
        seen += hist[i];
        if (seen > want)
            return i;
    }
    return HIST_US;
}

/* Prints the JSON line; returns the number of successful queries. */
static uint64_t report(struct worker *ws, double seconds)
{
    static uint32_t hist[HIST_US + 1];
    uint64_t queries = 0, errors = 0, lat_sum = 0;
    const char *first_err = NULL;
    keel_status first_rc = KEEL_OK;
    unsigned i, j;

    for (i = 0; i < B.nthreads; i++) {
        queries += ws[i].queries;
        errors += ws[i].errors;
        lat_sum += ws[i].lat_ns_sum;
        for (j = 0; j <= HIST_US; j++)
            hist[j] += ws[i].hist[j];
        if (!first_err && ws[i].first_rc != KEEL_OK) {
            first_rc = ws[i].first_rc;
            first_err = ws[i].first_err;
        }
    }
    printf("{\"qps\":%.1f,\"threads\":%u,\"errors\":%llu,\"queries\":%llu,\"seconds\":%.3f,"
           "\"lat_avg_us\":%.1f,\"lat_p50_us\":%llu,\"lat_p99_us\":%llu,\"intent\":\"%s\","
           "\"dialect\":\"%s\",\"accounts\":%lld}\n",
           seconds > 0 ? (double)queries / seconds : 0.0, B.nthreads, (unsigned long long)errors,
           (unsigned long long)queries, seconds,
           queries ? (double)lat_sum / (double)queries / 1000.0 : 0.0,
           (unsigned long long)percentile_us(hist, queries, 0.50),
           (unsigned long long)percentile_us(hist, queries, 0.99),
           B.intent == KEEL_DB_READ ? "read" : "read_primary", keel_db_dialect(B.db),
           (long long)B.naccounts);
    fflush(stdout);
    if (first_err)
        fprintf(stderr, "db_bench: first error: %s: %s\n", keel_status_name(first_rc), first_err);
    return queries;
}

/* -------------------------------------------------------------- main */

static void usage(void)
{
    fprintf(stderr, "usage: db_bench [--url URL] [--threads N] [--duration S] [--scale S]"
                    " [--intent read|primary]\n"
                    "URL defaults to $KEEL_DATABASE_URL; N 16, S 10 seconds, scale 10.\n");
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > max)
        return false;
    *out = v;
    return true;
}

struct opts {
    const char *url;
    unsigned long threads, duration, scale;
    enum keel_db_intent intent;
};

static bool parse_args(int argc, char **argv, struct opts *o)
{
    int i;

    o->url = getenv("KEEL_DATABASE_URL");
    o->threads = 16;
    o->duration = 10;
    o->scale = 10;
    o->intent = KEEL_DB_READ;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!v)
            return false;
        i++;
        if (strcmp(a, "--url") == 0)
            o->url = v;
        else if (strcmp(a, "--threads") == 0) {
            if (!parse_uint(v, MAX_THREADS, &o->threads))
                return false;
        } else if (strcmp(a, "--duration") == 0) {
            if (!parse_uint(v, 86400, &o->duration))
                return false;
        } else if (strcmp(a, "--scale") == 0) {
            if (!parse_uint(v, 100000, &o->scale))
                return false;
        } else if (strcmp(a, "--intent") == 0) {
            if (strcmp(v, "read") == 0)
                o->intent = KEEL_DB_READ;
            else if (strcmp(v, "primary") == 0)
                o->intent = KEEL_DB_READ_PRIMARY;
            else
                return false;
        } else
            return false;
    }
    return o->url && o->url[0];
}

static keel_status open_db(const struct opts *o)
{
    struct keel_config cfg;
    keel_status rc;

    memset(&cfg, 0, sizeof(cfg));
    cfg.database_url = keel_xstrdup(o->url);
    cfg.database_pool_size = (uint32_t)o->threads; /* one connection per thread */
    cfg.threads = 2;
    rc = keel_db_open(&cfg, &B.db);
    free(cfg.database_url);
    return rc;
}

static int run(const struct opts *o)
{
    struct worker *ws = keel_xcalloc(o->threads, sizeof(*ws));
    struct timespec d = {(time_t)o->duration, 0};
    uint64_t start, end, total;
    unsigned i;

    B.nthreads = (unsigned)o->threads;
    B.naccounts = (int64_t)o->scale * 100000;
    B.intent = o->intent;
    pthread_barrier_init(&B.warm, NULL, B.nthreads);
    pthread_barrier_init(&B.ready, NULL, B.nthreads + 1);
    pthread_barrier_init(&B.go, NULL, B.nthreads + 1);
    for (i = 0; i < B.nthreads; i++) {
        randombytes_buf(&ws[i].rng, sizeof(ws[i].rng));
        ws[i].rng |= 1;
        ws[i].hist = keel_xcalloc(HIST_US + 1, sizeof(*ws[i].hist));
        if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "db_bench: pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&B.ready);
    if (atomic_load(&B.warm_failures))
        fprintf(stderr, "db_bench: %u of %u threads failed their warm-up query\n",
                atomic_load(&B.warm_failures), B.nthreads);
    start = keel_now_ns();
    pthread_barrier_wait(&B.go);
    while (nanosleep(&d, &d) < 0 && errno == EINTR)
        ;
    atomic_store(&B.stop, true);
    for (i = 0; i < B.nthreads; i++)
        pthread_join(ws[i].tid, NULL);
    end = keel_now_ns();
    total = report(ws, (double)(end - start) / 1e9);
    for (i = 0; i < B.nthreads; i++)
        free(ws[i].hist);
    free(ws);
    return total ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct opts o;
    keel_status rc;
    int code;

    if (!parse_args(argc, argv, &o)) {
        usage();
        return 64;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "db_bench: sodium_init failed\n");
        return 1;
    }
    keel_log_init(KEEL_LOG_WARN, 2);
    rc = open_db(&o);
    if (rc < 0) {
        fprintf(stderr, "db_bench: keel_db_open: %s (the log line above says why)\n",
                keel_status_name(rc));
        return 1;
    }
    code = run(&o);
    keel_db_close(B.db);
    return code;
}
