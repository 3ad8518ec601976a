/*
 * metrics.h - a Prometheus metrics registry rendered in text format 0.0.4
 * (SPEC section 6; the output passes `promtool check metrics`).
 *
 * A family (struct keel_metric) is a counter, gauge or histogram with 0 to
 * KEEL_METRIC_MAX_LABELS label names; its children are keyed by label values.
 * Register families on the main thread at startup, keep the returned pointer
 * and update it from any thread:
 *
 *     static const char *const lbl[] = {"method", "route", "status"};
 *     m = keel_metric_counter("keel_http_requests_total", "HTTP requests served.", 3, lbl);
 *     ...
 *     keel_metric_add(m, (const char *const[]){"GET", "/v1/users/{id}", "200"}, 1);
 *
 * Updates never contend across event-loop threads: a thread that called
 * keel_metrics_thread_init(shard) owns a private shard of every family and
 * updates it with plain relaxed atomic stores; the scrape sums the shards.
 * Threads that never called it share one mutex-protected shard, which is fine
 * for thread-pool workers and the main thread but not for the hot path.
 *
 * Cardinality is bounded: a family holds at most KEEL_METRIC_MAX_SERIES
 * distinct label sets; later new label sets are all counted in one series
 * whose label values are all "other". Label values longer than
 * KEEL_METRIC_LABEL_MAX bytes are cut to that length. So dynamic label values
 * (from requests) cannot grow memory without bound, but prefer static ones.
 */
#ifndef KEEL_METRICS_H
#define KEEL_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "keel/buf.h"
#include "keel/core.h"

#define KEEL_METRICS_MAX_THREADS  128 /* private shards; shard ids are 0..127 */
#define KEEL_METRIC_MAX_LABELS    4
#define KEEL_METRIC_MAX_BUCKETS   32
#define KEEL_METRIC_MAX_SERIES    2000 /* distinct label sets per family, "other" excluded */
#define KEEL_METRIC_LABEL_MAX     128  /* bytes of a label value that are kept */
#define KEEL_METRICS_MAX_FAMILIES 256

/* Default histogram buckets for request latencies in seconds (Prometheus
 * client defaults, 5 ms .. 10 s). */
extern const double keel_metric_latency_buckets[];
#define KEEL_METRIC_LATENCY_NBUCKETS 11

struct keel_metric;

/*
 * Registration. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]* (counters should
 * end in _total, units should be base units: _seconds, _bytes); `help` is one
 * line of text; `labels` holds `nlabels` names matching [a-zA-Z_][a-zA-Z0-9_]*
 * that do not start with "__" ("le" is reserved for histograms). Strings are
 * copied. Registering an existing name again with the same type and labels
 * returns the existing family. Returns NULL (and logs an error) on invalid
 * arguments, a name taken by another type, or more than
 * KEEL_METRICS_MAX_FAMILIES families; every update function treats a NULL
 * family as a no-op. Families live until keel_metrics_reset_for_tests().
 * Thread-safe, but meant for startup.
 */
struct keel_metric *keel_metric_counter(const char *name,
                                        const char *help,
                                        unsigned nlabels,
                                        const char *const *labels);
struct keel_metric *
keel_metric_gauge(const char *name, const char *help, unsigned nlabels, const char *const *labels);
/* `bounds` are the `nbounds` (1..KEEL_METRIC_MAX_BUCKETS) finite upper bounds
 * of the buckets, strictly increasing; the +Inf bucket is implicit. */
struct keel_metric *keel_metric_histogram(const char *name,
                                          const char *help,
                                          unsigned nlabels,
                                          const char *const *labels,
                                          const double *bounds,
                                          unsigned nbounds);

/* A label-less gauge whose value is fn(arg), called on the scraping thread
 * during keel_metrics_render(), for values owned elsewhere (pool sizes, open
 * connections). fn must be thread-safe and must not call into this registry.
 * Returns the family, or NULL like the registration functions above. */
struct keel_metric *
keel_metric_gauge_fn(const char *name, const char *help, double (*fn)(void *arg), void *arg);

/*
 * Updates. `label_values` holds one string per label name, in registration
 * order (it may be NULL for a family without labels; a NULL value counts as
 * ""). The strings are borrowed for the call only: the first use of a label
 * set copies them.
 *
 * keel_metric_add: counter += v (v must be >= 0; negative and NaN values are
 * ignored) or gauge += v (any sign). keel_metric_set: gauge = v. A gauge's
 * rendered value is the last value set plus every add since registration,
 * summed over threads: use either add (per-thread deltas, e.g. in-flight
 * requests) or set (last writer wins, e.g. a queue depth) for one family,
 * not both. keel_metric_observe: counts v in a histogram. Calls on a family of
 * another type are ignored.
 */
void keel_metric_add(struct keel_metric *m, const char *const *label_values, double v);
void keel_metric_set(struct keel_metric *m, const char *const *label_values, double v);
void keel_metric_observe(struct keel_metric *m, const char *const *label_values, double v);

/* Binds the calling thread to private shard `shard` (0..KEEL_METRICS_MAX_THREADS-1).
 * Each shard must be used by at most one live thread at a time (one per event
 * loop); a shard may be reused by a later thread. Out-of-range values, and
 * threads that never call this, use the shared locked shard. */
void keel_metrics_thread_init(unsigned shard);

/* Sets the labels of `keel_build_info{version,commit} 1` (copied; NULL counts
 * as "unknown"). The series is rendered once this has been called. */
void keel_metrics_set_build_info(const char *version, const char *commit);

/* Appends the whole exposition to `out`: the registered families in
 * registration order, keel_build_info, then the process_* metrics. Label
 * values and help texts are escaped; invalid UTF-8 in label values is shown
 * as U+FFFD. Returns KEEL_OK, or KEEL_E_TOO_LARGE when `out` reached its
 * maximum (its contents are then incomplete). Thread-safe; concurrent updates
 * may or may not be included. */
keel_status keel_metrics_render(struct keel_buf *out);

/* Appends process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds and
 * process_start_time_seconds, read from /proc/self (Linux). Values that
 * cannot be read are left out. Returns KEEL_OK or KEEL_E_TOO_LARGE. Called by
 * keel_metrics_render(). */
keel_status keel_metrics_render_process(struct keel_buf *out);

/* Forgets every family and the build info, freeing all memory. Only for tests
 * and shutdown: no other thread may use the registry meanwhile, and pointers
 * returned earlier become invalid. */
void keel_metrics_reset_for_tests(void);

#endif
