/* The metric registry's insides, shared by metrics.c (registration) and metrics_text.c
 * (exposition). Not for other files. */
#ifndef OF_METRICS_PRIV_H
#define OF_METRICS_PRIV_H

#include "metrics.h"

#include <pthread.h>

typedef struct of_collector {
    char *name, *help;
    of_metric_kind kind;
    of_metric_collect_fn fn;
    void *opaque;
} of_collector;

struct of_metrics {
    pthread_mutex_t mu;
    struct of_counter **counters;
    size_t n_counters, cap_counters;
    struct of_histogram **histograms;
    size_t n_histograms, cap_histograms;
    of_collector **collectors;
    size_t n_collectors, cap_collectors;
    /* Scrapes run collectors without mu; removing one waits for them (readers count). */
    pthread_rwlock_t collect_lock;
};

/* Renders labels (name, value pairs, NULL-terminated) as `a="x",b="y"`; malloc'd; NULL on no
 * memory or a bad label name. */
char *of_metrics_render_labels(const char *const *labels);

#endif
