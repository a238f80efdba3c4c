/* The host's metric registry: per-stage counters kept by the runner and custom metrics that
 * plugins declare through the host table. Updates are lock-free atomics; registration locks.
 * Exposition in Prometheus format arrives with the observability issue. */
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

typedef enum of_metric_kind { OF_METRIC_COUNTER, OF_METRIC_HISTOGRAM } of_metric_kind;

/* The SDK's opaque of_counter / of_histogram are these. */
struct of_counter {
    char *name, *help, *pipeline, *stage;
    _Atomic uint64_t value_milli; /* value * 1000, so fractional adds survive */
};
struct of_histogram {
    char *name, *help, *pipeline, *stage;
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
void of_counter_add_(struct of_counter *c, double delta);
double of_counter_value(const struct of_counter *c);
void of_histogram_observe_(struct of_histogram *h, double v);
/* Finds a registered counter (tests, harness); NULL when absent. */
struct of_counter *of_metrics_find_counter(of_metrics *m, const char *name, const char *pipeline,
                                           const char *stage);
struct of_histogram *of_metrics_find_histogram(of_metrics *m, const char *name,
                                               const char *pipeline, const char *stage);
size_t of_metrics_counter_count(of_metrics *m);
/* [a-z_][a-z0-9_]*, at most OF_METRIC_NAME_MAX characters. */
int of_metric_name_valid(const char *name);

#endif
