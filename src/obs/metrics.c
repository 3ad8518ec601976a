/*
 * metrics.c - Prometheus registry and text exposition (see include/keel/metrics.h).
 *
 * DESIGN
 * Every request updates a few metrics on its event-loop thread, so an update
 * must not touch a lock or a cache line another loop writes. Each family
 * therefore has one shard per loop thread (KEEL_METRICS_MAX_THREADS of them,
 * chosen by keel_metrics_thread_init) plus one shared shard for every other
 * thread. A shard is a hash table of children keyed by label values, and only
 * its owning thread mutates it: lookups take no lock, and since a child's
 * values have a single writer, updating them is a relaxed load and store (no
 * locked read-modify-write). The owner takes the shard's mutex only to insert
 * a child or grow the table; the scraper takes the same mutex while it walks
 * the table, and reads the values with relaxed atomic loads. The shared shard
 * is made single-writer by a per-family mutex held across the whole update.
 *
 * Label sets are interned per family (struct labelset): the first thread to
 * use a label set copies its strings under the family's series mutex and
 * gives it a dense index; each shard's child then points at the interned set.
 * This is where cardinality is bounded (KEEL_METRIC_MAX_SERIES, then "other"),
 * and it lets the scrape merge shards by index into one array of sums instead
 * of comparing strings. Interning happens once per label set and shard, so the
 * series mutex is off the hot path; a family that is already full sends every
 * unknown label set through it, which only costs time to whoever is flooding
 * it with junk values.
 *
 * Gauges use the same shards for keel_metric_add() (per-thread deltas that
 * sum up, like in-flight requests), while keel_metric_set() stores into the
 * shared label set, because "last writer wins" needs one location.
 *
 * Lock order: the registry lock, a family's series lock and a shard lock are
 * never held together, except the shared-writer lock, which is taken first.
 */
#include "keel/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/log.h"

#define SHARED_SHARD KEEL_METRICS_MAX_THREADS
#define NSHARDS      (KEEL_METRICS_MAX_THREADS + 1)
#define SERIES_HASH  512 /* chains of the per-family label-set table */
#define CACHE_LINE   64

enum family_type { T_COUNTER, T_GAUGE, T_HISTOGRAM, T_GAUGE_FN };

static const char *const type_names[] = {"counter", "gauge", "histogram", "gauge"};

/* One distinct label set of a family, shared by the children of all shards. */
struct labelset {
    struct labelset *next; /* chain in keel_metric._chains */
    uint64_t hash;
    unsigned index;            /* position in keel_metric._series */
    _Atomic uint64_t set_bits; /* gauge: last keel_metric_set(), as double bits */
    size_t lens[KEEL_METRIC_MAX_LABELS];
    char *values[KEEL_METRIC_MAX_LABELS];
};

/* One label set's values in one shard; written by the shard's owner only. */
struct child {
    struct labelset *ls;
    uint64_t hash;
    _Atomic uint64_t val;       /* counter total or gauge delta, double bits */
    _Atomic uint64_t sum;       /* histogram sum, double bits */
    _Atomic uint64_t buckets[]; /* histogram: nbounds + 1 (+Inf), not cumulative */
};

struct shard {
    _Alignas(CACHE_LINE) pthread_mutex_t lock; /* owner inserts, scraper reads */
    struct child **slots;                      /* open addressing; NULL until first insert */
    size_t mask;                               /* table size - 1 */
    size_t count;
    struct child *other; /* this shard's child of the "other" label set */
};

struct keel_metric {
    char *_name;
    char *_help;
    enum family_type _type;
    unsigned _nlabels;
    char *_labels[KEEL_METRIC_MAX_LABELS];
    unsigned _nbounds;
    double _bounds[KEEL_METRIC_MAX_BUCKETS];
    double (*_fn)(void *);
    void *_fn_arg;
    size_t _child_size;

    pthread_mutex_t _series_lock; /* guards the label-set fields below */
    struct labelset **_series;    /* by index */
    size_t _nseries;
    size_t _series_cap;
    struct labelset *_other; /* where label sets past the cap are counted */
    bool _other_extra;       /* _other was created past the cap (not a real set) */
    struct labelset *_chains[SERIES_HASH];

    pthread_mutex_t _shared_writer; /* makes the shared shard single-writer */
    struct shard _shards[NSHARDS];
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct keel_metric *g_families[KEEL_METRICS_MAX_FAMILIES];
static size_t g_nfamilies;
static char *g_build_version;
static char *g_build_commit;

static _Thread_local unsigned t_shard = SHARED_SHARD;

const double keel_metric_latency_buckets[KEEL_METRIC_LATENCY_NBUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* ------------------------------------------------------------- helpers -- */

static uint64_t dbl_bits(double d)
{
    uint64_t u;

    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bits_dbl(uint64_t u)
{
    double d;

    memcpy(&d, &u, sizeof(d));
    return d;
}

/* Single-writer add: a relaxed load and store, no locked instruction. */
static void dbl_add(_Atomic uint64_t *a, double v)
{
    double d = bits_dbl(atomic_load_explicit(a, memory_order_relaxed));

    atomic_store_explicit(a, dbl_bits(d + v), memory_order_relaxed);
}

static void u64_inc(_Atomic uint64_t *a)
{
    atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static const char *label_value(const char *const *lv, unsigned i)
{
    return lv && lv[i] ? lv[i] : "";
}

static uint64_t hash_values(unsigned n, const char *const *lv)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

    for (unsigned i = 0; i < n; i++) {
        const char *s = label_value(lv, i);

        for (size_t k = 0; k < KEEL_METRIC_LABEL_MAX && s[k]; k++)
            h = (h ^ (unsigned char)s[k]) * 0x100000001b3ull;
        h = (h ^ 0xff) * 0x100000001b3ull; /* separator: ("a","bc") != ("ab","c") */
    }
    return h;
}

static bool ls_equal(const struct labelset *ls, unsigned n, const char *const *lv)
{
    for (unsigned i = 0; i < n; i++) {
        const char *s = label_value(lv, i);
        size_t len = strnlen(s, KEEL_METRIC_LABEL_MAX);

        if (len != ls->lens[i] || memcmp(s, ls->values[i], len) != 0)
            return false;
    }
    return true;
}

static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++) {
        char c = *s;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || (colon && c == ':')))
            return false;
    }
    return true;
}

/* -------------------------------------------------------- registration -- */

/* What a registration call asked for; strings are the caller's. */
struct family_spec {
    const char *name;
    const char *help;
    enum family_type type;
    unsigned nlabels;
    const char *const *labels;
    unsigned nbounds;
    const double *bounds;
    double (*fn)(void *);
    void *arg;
};

static const char *check_labels(const struct family_spec *sp)
{
    if (sp->nlabels > KEEL_METRIC_MAX_LABELS || (sp->nlabels && !sp->labels))
        return "too many labels";
    for (unsigned i = 0; i < sp->nlabels; i++) {
        if (!valid_name(sp->labels[i], false) || strncmp(sp->labels[i], "__", 2) == 0)
            return "invalid label name";
        if (sp->type == T_HISTOGRAM && strcmp(sp->labels[i], "le") == 0)
            return "label 'le' is reserved for histograms";
        for (unsigned k = 0; k < i; k++)
            if (strcmp(sp->labels[i], sp->labels[k]) == 0)
                return "duplicate label name";
    }
    return NULL;
}

static const char *check_bounds(const struct family_spec *sp)
{
    if (sp->nbounds < 1 || sp->nbounds > KEEL_METRIC_MAX_BUCKETS || !sp->bounds)
        return "bucket count out of range";
    for (unsigned i = 0; i < sp->nbounds; i++) {
        if (!isfinite(sp->bounds[i]) || (i > 0 && !(sp->bounds[i] > sp->bounds[i - 1])))
            return "bucket bounds must be finite and strictly increasing";
    }
    return NULL;
}

/* NULL when the spec is acceptable, else why not. */
static const char *check_spec(const struct family_spec *sp)
{
    if (!valid_name(sp->name, true))
        return "invalid metric name";
    if (strncmp(sp->name, "process_", 8) == 0 || strcmp(sp->name, "keel_build_info") == 0)
        return "metric name is reserved";
    if (!sp->help)
        return "help text missing";
    if (sp->type == T_GAUGE_FN && !sp->fn)
        return "callback missing";
    if (sp->type == T_HISTOGRAM && check_bounds(sp))
        return check_bounds(sp);
    return check_labels(sp);
}

/* True when `m` was registered with the same definition as `sp`. */
static bool same_family(const struct keel_metric *m, const struct family_spec *sp)
{
    if (m->_type != sp->type || m->_nlabels != sp->nlabels || m->_nbounds != sp->nbounds ||
        m->_fn != sp->fn || m->_fn_arg != sp->arg)
        return false;
    for (unsigned i = 0; i < m->_nlabels; i++)
        if (strcmp(m->_labels[i], sp->labels[i]) != 0)
            return false;
    return m->_nbounds == 0 || memcmp(m->_bounds, sp->bounds, m->_nbounds * sizeof(double)) == 0;
}

static struct labelset *labelset_new(struct keel_metric *m, uint64_t h, const char *const *lv)
{
    struct labelset *ls = keel_xcalloc(1, sizeof(*ls));

    ls->hash = h;
    for (unsigned i = 0; i < m->_nlabels; i++) {
        const char *s = label_value(lv, i);

        ls->lens[i] = strnlen(s, KEEL_METRIC_LABEL_MAX);
        ls->values[i] = keel_xmalloc(ls->lens[i] + 1);
        memcpy(ls->values[i], s, ls->lens[i]);
        ls->values[i][ls->lens[i]] = '\0';
    }
    if (m->_nseries == m->_series_cap) {
        m->_series_cap = m->_series_cap ? m->_series_cap * 2 : 16;
        m->_series = keel_xrealloc(m->_series, m->_series_cap * sizeof(*m->_series));
    }
    ls->index = (unsigned)m->_nseries;
    m->_series[m->_nseries++] = ls;
    ls->next = m->_chains[h % SERIES_HASH];
    m->_chains[h % SERIES_HASH] = ls;
    return ls;
}

static struct keel_metric *family_new(const struct family_spec *sp)
{
    /* Shards are cache-line aligned so that two loops never share a line. */
    size_t size = (sizeof(struct keel_metric) + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    struct keel_metric *m = aligned_alloc(CACHE_LINE, size);

    if (!m)
        abort();
    memset(m, 0, size);
    m->_name = keel_xstrdup(sp->name);
    m->_help = keel_xstrdup(sp->help);
    m->_type = sp->type;
    m->_nlabels = sp->nlabels;
    for (unsigned i = 0; i < sp->nlabels; i++)
        m->_labels[i] = keel_xstrdup(sp->labels[i]);
    m->_nbounds = sp->nbounds;
    if (sp->nbounds)
        memcpy(m->_bounds, sp->bounds, sp->nbounds * sizeof(double));
    m->_fn = sp->fn;
    m->_fn_arg = sp->arg;
    m->_child_size = sizeof(struct child);
    if (m->_type == T_HISTOGRAM)
        m->_child_size += (m->_nbounds + 1) * sizeof(_Atomic uint64_t);
    m->_child_size = (m->_child_size + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    pthread_mutex_init(&m->_series_lock, NULL);
    pthread_mutex_init(&m->_shared_writer, NULL);
    for (unsigned i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&m->_shards[i].lock, NULL);
    /* A label-less series exists from the start, so it is rendered as 0. */
    if (m->_nlabels == 0 && m->_type != T_GAUGE_FN)
        labelset_new(m, hash_values(0, NULL), NULL);
    return m;
}

static struct keel_metric *family_register(const struct family_spec *sp)
{
    const char *why = check_spec(sp);
    struct keel_metric *m = NULL;

    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; !why && i < g_nfamilies; i++) {
        if (strcmp(g_families[i]->_name, sp->name) != 0)
            continue;
        if (same_family(g_families[i], sp))
            m = g_families[i];
        else
            why = "name already registered with another definition";
        break;
    }
    if (!why && !m && g_nfamilies == KEEL_METRICS_MAX_FAMILIES)
        why = "too many metric families";
    if (!why && !m) {
        m = family_new(sp);
        g_families[g_nfamilies++] = m;
    }
    pthread_mutex_unlock(&g_lock);
    if (why) {
        keel_log(KEEL_LOG_ERROR, "metric registration rejected", KEEL_LF_STR("metric", sp->name),
                 KEEL_LF_STR("error", why));
        return NULL;
    }
    return m;
}

struct keel_metric *
keel_metric_counter(const char *name, const char *help, unsigned nlabels, const char *const *labels)
{
    struct family_spec sp = {
        .name = name, .help = help, .type = T_COUNTER, .nlabels = nlabels, .labels = labels};

    return family_register(&sp);
}

struct keel_metric *
keel_metric_gauge(const char *name, const char *help, unsigned nlabels, const char *const *labels)
{
    struct family_spec sp = {
        .name = name, .help = help, .type = T_GAUGE, .nlabels = nlabels, .labels = labels};

    return family_register(&sp);
}

struct keel_metric *keel_metric_histogram(const char *name,
                                          const char *help,
                                          unsigned nlabels,
                                          const char *const *labels,
                                          const double *bounds,
                                          unsigned nbounds)
{
    struct family_spec sp = {.name = name,
                             .help = help,
                             .type = T_HISTOGRAM,
                             .nlabels = nlabels,
                             .labels = labels,
                             .nbounds = nbounds,
                             .bounds = bounds};

    return family_register(&sp);
}

struct keel_metric *
keel_metric_gauge_fn(const char *name, const char *help, double (*fn)(void *arg), void *arg)
{
    struct family_spec sp = {.name = name, .help = help, .type = T_GAUGE_FN, .fn = fn, .arg = arg};

    return family_register(&sp);
}

void keel_metrics_set_build_info(const char *version, const char *commit)
{
    char *v = keel_xstrdup(version ? version : "unknown");
    char *c = keel_xstrdup(commit ? commit : "unknown");

    pthread_mutex_lock(&g_lock);
    free(g_build_version);
    free(g_build_commit);
    g_build_version = v;
    g_build_commit = c;
    pthread_mutex_unlock(&g_lock);
}

void keel_metrics_thread_init(unsigned shard)
{
    t_shard = shard < KEEL_METRICS_MAX_THREADS ? shard : SHARED_SHARD;
}

/* ------------------------------------------------------------ children -- */

static struct child *
table_find(const struct keel_metric *m, const struct shard *sh, uint64_t h, const char *const *lv)
{
    if (!sh->slots)
        return NULL;
    for (size_t i = h & sh->mask;; i = (i + 1) & sh->mask) {
        struct child *c = sh->slots[i];

        if (!c)
            return NULL;
        if (c->hash == h && ls_equal(c->ls, m->_nlabels, lv))
            return c;
    }
}

static void table_put(struct child **slots, size_t mask, struct child *c)
{
    size_t i = c->hash & mask;

    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = c;
}

/* Adds c to the shard, growing the table at half load. Runs on the owner
 * thread; the lock keeps a concurrent scrape off the table meanwhile. */
static void table_insert(struct shard *sh, struct child *c)
{
    pthread_mutex_lock(&sh->lock);
    if (!sh->slots || (sh->count + 1) * 2 > sh->mask + 1) {
        size_t size = sh->slots ? (sh->mask + 1) * 2 : 16;
        struct child **slots = keel_xcalloc(size, sizeof(*slots));

        for (size_t i = 0; sh->slots && i <= sh->mask; i++)
            if (sh->slots[i])
                table_put(slots, size - 1, sh->slots[i]);
        free(sh->slots);
        sh->slots = slots;
        sh->mask = size - 1;
    }
    table_put(sh->slots, sh->mask, c);
    sh->count++;
    pthread_mutex_unlock(&sh->lock);
}

static struct child *child_new(const struct keel_metric *m, struct labelset *ls)
{
    struct child *c = aligned_alloc(CACHE_LINE, m->_child_size);

    if (!c)
        abort();
    memset(c, 0, m->_child_size);
    c->ls = ls;
    c->hash = ls->hash;
    return c;
}

/* The interned label set for lv, created if the family has room; otherwise
 * the family's "other" set, with *folded set. */
static struct labelset *
series_get(struct keel_metric *m, uint64_t h, const char *const *lv, bool *folded)
{
    static const char *const other[KEEL_METRIC_MAX_LABELS] = {"other", "other", "other", "other"};
    struct labelset *ls;

    *folded = false;
    pthread_mutex_lock(&m->_series_lock);
    for (ls = m->_chains[h % SERIES_HASH]; ls; ls = ls->next)
        if (ls->hash == h && ls_equal(ls, m->_nlabels, lv))
            goto out;
    if (m->_nseries - (m->_other_extra ? 1u : 0u) < KEEL_METRIC_MAX_SERIES) {
        ls = labelset_new(m, h, lv);
        goto out;
    }
    *folded = true;
    if (!m->_other) {
        uint64_t oh = hash_values(m->_nlabels, other);

        for (ls = m->_chains[oh % SERIES_HASH]; ls; ls = ls->next)
            if (ls->hash == oh && ls_equal(ls, m->_nlabels, other))
                break;
        m->_other_extra = !ls;
        m->_other = ls ? ls : labelset_new(m, oh, other);
    }
    ls = m->_other;
out:
    pthread_mutex_unlock(&m->_series_lock);
    return ls;
}

/* The shard's child for lv; slow path of child_get(). */
static struct child *
child_insert(struct keel_metric *m, struct shard *sh, uint64_t h, const char *const *lv)
{
    bool folded;
    struct labelset *ls = series_get(m, h, lv, &folded);
    struct child *c;

    if (folded && sh->other)
        return sh->other;
    /* A folded label set is not keyed in the table (that would grow it with
     * every junk value); the "other" child is, under its own values. */
    c = folded ? table_find(m, sh, ls->hash, (const char *const *)ls->values) : NULL;
    if (!c) {
        c = child_new(m, ls);
        table_insert(sh, c);
    }
    if (folded)
        sh->other = c;
    return c;
}

static struct child *child_get(struct keel_metric *m, struct shard *sh, const char *const *lv)
{
    uint64_t h = hash_values(m->_nlabels, lv);
    struct child *c = table_find(m, sh, h, lv);

    return c ? c : child_insert(m, sh, h, lv);
}

/* Finds the calling thread's child for lv; keel_metric_release() must follow. */
static struct child *child_acquire(struct keel_metric *m, const char *const *lv)
{
    unsigned s = t_shard;

    if (s == SHARED_SHARD)
        pthread_mutex_lock(&m->_shared_writer);
    return child_get(m, &m->_shards[s], lv);
}

static void child_release(struct keel_metric *m)
{
    if (t_shard == SHARED_SHARD)
        pthread_mutex_unlock(&m->_shared_writer);
}

/* ------------------------------------------------------------- updates -- */

void keel_metric_add(struct keel_metric *m, const char *const *label_values, double v)
{
    struct child *c;

    if (!m || (m->_type != T_COUNTER && m->_type != T_GAUGE) ||
        (m->_type == T_COUNTER && !(v >= 0)))
        return;
    c = child_acquire(m, label_values);
    dbl_add(&c->val, v);
    child_release(m);
}

void keel_metric_set(struct keel_metric *m, const char *const *label_values, double v)
{
    struct child *c;

    if (!m || m->_type != T_GAUGE)
        return;
    c = child_acquire(m, label_values);
    atomic_store_explicit(&c->ls->set_bits, dbl_bits(v), memory_order_relaxed);
    child_release(m);
}

void keel_metric_observe(struct keel_metric *m, const char *const *label_values, double v)
{
    struct child *c;
    unsigned i = 0;

    if (!m || m->_type != T_HISTOGRAM || isnan(v))
        return;
    while (i < m->_nbounds && v > m->_bounds[i])
        i++;
    c = child_acquire(m, label_values);
    u64_inc(&c->buckets[i]);
    dbl_add(&c->sum, v);
    child_release(m);
}

/* ----------------------------------------------------------- rendering -- */

struct out {
    struct keel_buf *b;
    keel_status rc;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->rc == KEEL_OK)
        o->rc = keel_buf_append(o->b, s, n);
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s, or 0 when it is invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len, i;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Appends s escaped for a label value (quotes too) or a HELP text. */
static void put_escaped(struct out *o, const char *s, size_t n, bool quotes)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0, i = 0;

    while (i < n) {
        size_t len = utf8_len(p + i, n - i);
        const char *rep = NULL;

        if (p[i] == '\\')
            rep = "\\\\";
        else if (p[i] == '\n')
            rep = "\\n";
        else if (p[i] == '"' && quotes)
            rep = "\\\"";
        else if (len == 0)
            rep = "\xef\xbf\xbd";
        if (!rep) {
            i += len;
            continue;
        }
        put(o, s + run, i - run);
        puts_(o, rep);
        i += len ? len : 1;
        run = i;
    }
    put(o, s + run, n - run);
}

/* Formats v as Prometheus reads it: the shorter of %.15g and %.17g that
 * reads back exactly (0.1 stays "0.1"), or NaN/+Inf/-Inf. */
static const char *fmt_double(char tmp[32], double v)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(tmp, 32, "%.15g", v);
    if (strtod(tmp, NULL) != v)
        snprintf(tmp, 32, "%.17g", v);
    return tmp;
}

static void put_double(struct out *o, double v)
{
    char tmp[32];

    puts_(o, fmt_double(tmp, v));
}

static void put_u64(struct out *o, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);

    put(o, tmp, (size_t)n);
}

static void put_header(struct out *o, const char *name, const char *help, const char *type)
{
    puts_(o, "# HELP ");
    puts_(o, name);
    put(o, " ", 1);
    put_escaped(o, help, strlen(help), false);
    puts_(o, "\n# TYPE ");
    puts_(o, name);
    put(o, " ", 1);
    puts_(o, type);
    put(o, "\n", 1);
}

/* Writes `name<suffix>{l="v",...,le="<le>"} ` (braces only when needed). */
static void put_series(struct out *o,
                       const struct keel_metric *m,
                       const char *suffix,
                       const struct labelset *ls,
                       const char *le)
{
    bool any = m->_nlabels > 0 || le;

    puts_(o, m->_name);
    puts_(o, suffix);
    if (any)
        put(o, "{", 1);
    for (unsigned i = 0; i < m->_nlabels; i++) {
        if (i)
            put(o, ",", 1);
        puts_(o, m->_labels[i]);
        put(o, "=\"", 2);
        put_escaped(o, ls->values[i], ls->lens[i], true);
        put(o, "\"", 1);
    }
    if (le) {
        puts_(o, m->_nlabels ? ",le=\"" : "le=\"");
        puts_(o, le);
        put(o, "\"", 1);
    }
    puts_(o, any ? "} " : " ");
}

/* Per-series sums over all shards, indexed by labelset index. */
struct totals {
    size_t n;
    struct labelset **series;
    double *val;    /* counter/gauge value, histogram sum */
    uint64_t *hist; /* n * (nbounds + 1) bucket counts */
};

static void totals_collect(struct keel_metric *m, struct totals *t)
{
    size_t nb = m->_nbounds + 1;

    pthread_mutex_lock(&m->_series_lock);
    t->n = m->_nseries;
    t->series = keel_xcalloc(t->n, sizeof(*t->series));
    if (t->n)
        memcpy(t->series, m->_series, t->n * sizeof(*t->series));
    pthread_mutex_unlock(&m->_series_lock);
    t->val = keel_xcalloc(t->n, sizeof(double));
    t->hist = m->_type == T_HISTOGRAM ? keel_xcalloc(t->n * nb, sizeof(uint64_t)) : NULL;
    for (unsigned s = 0; s < NSHARDS; s++) {
        struct shard *sh = &m->_shards[s];

        pthread_mutex_lock(&sh->lock);
        for (size_t i = 0; sh->slots && i <= sh->mask; i++) {
            struct child *c = sh->slots[i];

            if (!c || c->ls->index >= t->n) /* created after the snapshot */
                continue;
            if (m->_type == T_HISTOGRAM) {
                for (size_t k = 0; k < nb; k++)
                    t->hist[c->ls->index * nb + k] +=
                        atomic_load_explicit(&c->buckets[k], memory_order_relaxed);
                t->val[c->ls->index] +=
                    bits_dbl(atomic_load_explicit(&c->sum, memory_order_relaxed));
            } else {
                t->val[c->ls->index] +=
                    bits_dbl(atomic_load_explicit(&c->val, memory_order_relaxed));
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
}

static void render_histogram(struct out *o, const struct keel_metric *m, const struct totals *t)
{
    size_t nb = m->_nbounds + 1;

    for (size_t i = 0; i < t->n; i++) {
        uint64_t cum = 0;

        for (size_t k = 0; k < nb; k++) {
            char tmp[32];

            cum += t->hist[i * nb + k];
            put_series(o, m, "_bucket", t->series[i],
                       k < m->_nbounds ? fmt_double(tmp, m->_bounds[k]) : "+Inf");
            put_u64(o, cum);
            put(o, "\n", 1);
        }
        put_series(o, m, "_sum", t->series[i], NULL);
        put_double(o, t->val[i]);
        put(o, "\n", 1);
        put_series(o, m, "_count", t->series[i], NULL);
        put_u64(o, cum);
        put(o, "\n", 1);
    }
}

static void render_family(struct out *o, struct keel_metric *m)
{
    struct totals t;

    put_header(o, m->_name, m->_help, type_names[m->_type]);
    if (m->_type == T_GAUGE_FN) {
        puts_(o, m->_name);
        put(o, " ", 1);
        put_double(o, m->_fn(m->_fn_arg));
        put(o, "\n", 1);
        return;
    }
    totals_collect(m, &t);
    if (m->_type == T_HISTOGRAM) {
        render_histogram(o, m, &t);
    } else {
        for (size_t i = 0; i < t.n; i++) {
            double v = t.val[i];

            if (m->_type == T_GAUGE)
                v += bits_dbl(atomic_load_explicit(&t.series[i]->set_bits, memory_order_relaxed));
            put_series(o, m, "", t.series[i], NULL);
            put_double(o, v);
            put(o, "\n", 1);
        }
    }
    free(t.series);
    free(t.val);
    free(t.hist);
}

static void render_build_info(struct out *o, const char *version, const char *commit)
{
    put_header(o, "keel_build_info", "Version and commit of the running Keel binary.", "gauge");
    puts_(o, "keel_build_info{version=\"");
    put_escaped(o, version, strlen(version), true);
    puts_(o, "\",commit=\"");
    put_escaped(o, commit, strlen(commit), true);
    puts_(o, "\"} 1\n");
}

keel_status keel_metrics_render(struct keel_buf *out)
{
    struct keel_metric *fams[KEEL_METRICS_MAX_FAMILIES];
    struct out o = {.b = out, .rc = KEEL_OK};
    char *version = NULL, *commit = NULL;
    size_t n;

    pthread_mutex_lock(&g_lock);
    n = g_nfamilies;
    memcpy(fams, g_families, n * sizeof(fams[0]));
    if (g_build_version) {
        version = keel_xstrdup(g_build_version);
        commit = keel_xstrdup(g_build_commit);
    }
    pthread_mutex_unlock(&g_lock);
    for (size_t i = 0; i < n && o.rc == KEEL_OK; i++)
        render_family(&o, fams[i]);
    if (version)
        render_build_info(&o, version, commit);
    free(version);
    free(commit);
    if (o.rc == KEEL_OK)
        o.rc = keel_metrics_render_process(out);
    return o.rc;
}

/* ---------------------------------------------------------------- reset -- */

static void family_free(struct keel_metric *m)
{
    for (unsigned s = 0; s < NSHARDS; s++) {
        struct shard *sh = &m->_shards[s];

        for (size_t i = 0; sh->slots && i <= sh->mask; i++)
            free(sh->slots[i]);
        free(sh->slots);
        pthread_mutex_destroy(&sh->lock);
    }
    for (size_t i = 0; i < m->_nseries; i++) {
        for (unsigned k = 0; k < m->_nlabels; k++)
            free(m->_series[i]->values[k]);
        free(m->_series[i]);
    }
    for (unsigned k = 0; k < m->_nlabels; k++)
        free(m->_labels[k]);
    free(m->_series);
    free(m->_name);
    free(m->_help);
    pthread_mutex_destroy(&m->_series_lock);
    pthread_mutex_destroy(&m->_shared_writer);
    free(m);
}

void keel_metrics_reset_for_tests(void)
{
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_nfamilies; i++)
        family_free(g_families[i]);
    g_nfamilies = 0;
    free(g_build_version);
    free(g_build_commit);
    g_build_version = NULL;
    g_build_commit = NULL;
    pthread_mutex_unlock(&g_lock);
}
