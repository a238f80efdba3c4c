/* The host's metric registry: per-stage counters kept by the runner, custom metrics that plugins
 * declare through the host table, and collectors (values read at scrape time: gauges, and
 * counters kept elsewhere). Updates are lock-free atomics; registration locks. Rendered in the
 * Prometheus text format by metrics_text.c (every name gets OF_METRIC_PREFIX, counters
 * "_total"). */
#ifndef OF_METRICS_H
#define OF_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define OF_HIST_MAX_BOUNDS 32
#define OF_METRIC_NAME_MAX 200
/* Prefix of the metrics plugins register through the host table ("orders_seen" is stored as
 * "plugin_orders_seen"), so a plugin cannot collide with the runner's own "stage_*" counters. */
#define OF_METRIC_PLUGIN_PREFIX "plugin_"

typedef struct of_metrics of_metrics;

/* Exposed names are OF_METRIC_PREFIX + the registered name (+ "_total" for counters). */
#define OF_METRIC_PREFIX "orderflow_"

typedef enum of_metric_kind {
    OF_METRIC_COUNTER,
    OF_METRIC_HISTOGRAM,
    OF_METRIC_GAUGE
} of_metric_kind;

/* The SDK's opaque of_counter / of_histogram are these. `labels` holds the labels after pipeline
 * and stage, already rendered and escaped (`plugin="orders"`), "" when none. */
struct of_counter {
    char *name, *help, *pipeline, *stage, *labels;
    _Atomic uint64_t value_milli; /* value * 1000, so fractional adds survive */
};
struct of_histogram {
    char *name, *help, *pipeline, *stage, *labels;
    double bounds[OF_HIST_MAX_BOUNDS];
    size_t n_bounds;
    _Atomic uint64_t buckets[OF_HIST_MAX_BOUNDS + 1]; /* last is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_micro; /* sum * 1e6 */
};

of_metrics *of_metrics_new(void);
void of_metrics_free(of_metrics *m);
/* Same (name, pipeline, stage) returns the same metric. NULL on bad name or no memory. */
struct of_counter *of_metrics_counter(of_metrics *m, const char *name, const char *help,
                                      const char *pipeline, const char *stage);
struct of_histogram *of_metrics_histogram(of_metrics *m, const char *name, const char *help,
                                          const char *pipeline, const char *stage,
                                          const double *bounds, size_t n_bounds);
/* The same with more labels: labels is NULL or a NULL-terminated list of name, value pairs
 * (names [a-z_][a-z0-9_]*, values escaped on output); they are part of the identity. */
struct of_counter *of_metrics_counter_l(of_metrics *m, const char *name, const char *help,
                                        const char *pipeline, const char *stage,
                                        const char *const *labels);
struct of_histogram *of_metrics_histogram_l(of_metrics *m, const char *name, const char *help,
                                            const char *pipeline, const char *stage,
                                            const char *const *labels, const double *bounds,
                                            size_t n_bounds);
void of_counter_add_(struct of_counter *c, double delta);
double of_counter_value(const struct of_counter *c);
void of_histogram_observe_(struct of_histogram *h, double v);
/* Finds a registered counter (tests, harness), whatever its extra labels (the first
 * registered); NULL when absent. */
struct of_counter *of_metrics_find_counter(of_metrics *m, const char *name, const char *pipeline,
                                           const char *stage);
struct of_histogram *of_metrics_find_histogram(of_metrics *m, const char *name,
                                               const char *pipeline, const char *stage);
size_t of_metrics_counter_count(of_metrics *m);
/* [a-z_][a-z0-9_]*, at most OF_METRIC_NAME_MAX characters. */
int of_metric_name_valid(const char *name);

/* Collectors: a family whose samples are produced at scrape time by fn (gauges such as in-flight
 * events or pool sizes, or counters another component keeps). fn runs on the scraping thread,
 * without the registry's lock, possibly at the same time as other scrapes; it calls
 * of_metric_sample once per series. kind is OF_METRIC_GAUGE or OF_METRIC_COUNTER. opaque must
 * stay valid until of_metrics_free or of_metrics_remove_collectors(opaque). 0 or -1 (bad name,
 * name taken by another collector, no memory). */
typedef struct of_metric_sink of_metric_sink;
typedef void (*of_metric_collect_fn)(void *opaque, of_metric_sink *sink);
int of_metrics_collector(of_metrics *m, const char *name, const char *help, of_metric_kind kind,
                         of_metric_collect_fn fn, void *opaque);
/* Removes every collector registered with this opaque (waits for scrapes in progress). */
void of_metrics_remove_collectors(of_metrics *m, void *opaque);
/* One series of the family being collected: labels as for of_metrics_counter_l. */
void of_metric_sample(of_metric_sink *sink, const char *const *labels, double value);

/* The Prometheus text exposition (format 0.0.4) of everything registered: HELP and TYPE once
 * per family, label values escaped, histograms as cumulative _bucket{le}, _sum and _count.
 * malloc'd, NUL-terminated, *len its length; NULL when out of memory. (metrics_text.c) */
char *of_metrics_render(of_metrics *m, size_t *len);
#define OF_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Process metrics from /proc/self: process_resident_memory_bytes, process_threads,
 * process_open_fds, process_start_time_seconds, uptime_seconds, and build_info{version, abi}
 * (always 1). 0 or -1. (metrics_text.c) */
int of_metrics_add_process(of_metrics *m, const char *version, const char *abi);
typedef struct of_proc_stats {
    double rss_bytes, threads, open_fds, start_time_seconds;
} of_proc_stats;
/* Reads them; 0, or -1 when /proc is not there (fields then 0). */
int of_proc_stats_read(of_proc_stats *out);

/* Appends s escaped as a label value (backslash, double quote, newline). For tests. */
size_t of_metric_escape_label(char *dst, size_t cap, const char *s);

#endif
