/* The metric registry: counters and histograms labelled with pipeline and stage. Registration
 * takes the registry's mutex; updates are lock-free atomics on the metric itself. */
#include "metrics.h"
#include "metrics_priv.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int of_metric_name_valid(const char *name)
{
    if (!name || !*name)
        return 0;
    if (!((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
        return 0;
    for (const char *p = name + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return strlen(name) <= OF_METRIC_NAME_MAX;
}

of_metrics *of_metrics_new(void)
{
    of_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    if (pthread_rwlock_init(&m->collect_lock, NULL) != 0) {
        pthread_mutex_destroy(&m->mu);
        free(m);
        return NULL;
    }
    return m;
}

static void free_labels(char *name, char *help, char *pipeline, char *stage, char *labels)
{
    free(name);
    free(help);
    free(pipeline);
    free(stage);
    free(labels);
}

size_t of_metric_escape_label(char *dst, size_t cap, const char *s)
{
    size_t pos = 0;
    for (; s && *s; s++) {
        const char *rep = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        size_t n = rep ? 2 : 1;
        if (dst && pos + n < cap) {
            if (rep)
                memcpy(dst + pos, rep, 2);
            else
                dst[pos] = *s;
        }
        pos += n;
    }
    if (dst && cap)
        dst[pos < cap ? pos : cap - 1] = '\0';
    return pos;
}

char *of_metrics_render_labels(const char *const *labels)
{
    size_t need = 1;
    for (size_t i = 0; labels && labels[i]; i += 2) {
        if (!of_metric_name_valid(labels[i]))
            return NULL;
        need += strlen(labels[i]) + 4 + of_metric_escape_label(NULL, 0, labels[i + 1]);
    }
    char *out = malloc(need);
    if (!out)
        return NULL;
    size_t pos = 0;
    for (size_t i = 0; labels && labels[i]; i += 2) {
        if (pos)
            out[pos++] = ',';
        size_t n = strlen(labels[i]);
        memcpy(out + pos, labels[i], n);
        pos += n;
        out[pos++] = '=';
        out[pos++] = '"';
        pos += of_metric_escape_label(out + pos, need - pos, labels[i + 1]);
        out[pos++] = '"';
    }
    out[pos] = '\0';
    return out;
}

void of_metrics_free(of_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_counters; i++) {
        struct of_counter *c = m->counters[i];
        free_labels(c->name, c->help, c->pipeline, c->stage, c->labels);
        free(c);
    }
    for (size_t i = 0; i < m->n_histograms; i++) {
        struct of_histogram *h = m->histograms[i];
        free_labels(h->name, h->help, h->pipeline, h->stage, h->labels);
        free(h);
    }
    for (size_t i = 0; i < m->n_collectors; i++) {
        free(m->collectors[i]->name);
        free(m->collectors[i]->help);
        free(m->collectors[i]);
    }
    free(m->counters);
    free(m->histograms);
    free(m->collectors);
    pthread_rwlock_destroy(&m->collect_lock);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static char *dup_or_null(const char *s, int *failed)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *failed = 1;
    return d;
}

/* labels NULL: any labels. */
static struct of_counter *find_counter_locked(of_metrics *m, const char *name, const char *pipeline,
                                              const char *stage, const char *labels)
{
    for (size_t i = 0; i < m->n_counters; i++) {
        struct of_counter *c = m->counters[i];
        if (strcmp(c->name, name) == 0 && str_eq(c->pipeline, pipeline) &&
            str_eq(c->stage, stage) && (!labels || strcmp(c->labels, labels) == 0))
            return c;
    }
    return NULL;
}

static struct of_histogram *find_histogram_locked(of_metrics *m, const char *name,
                                                  const char *pipeline, const char *stage,
                                                  const char *labels)
{
    for (size_t i = 0; i < m->n_histograms; i++) {
        struct of_histogram *h = m->histograms[i];
        if (strcmp(h->name, name) == 0 && str_eq(h->pipeline, pipeline) &&
            str_eq(h->stage, stage) && (!labels || strcmp(h->labels, labels) == 0))
            return h;
    }
    return NULL;
}

static int collector_named_locked(of_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->n_collectors; i++)
        if (strcmp(m->collectors[i]->name, name) == 0)
            return 1;
    return 0;
}

/* Grows an array of pointers by one slot; 0 or -1. */
static int grow(void ***arr, size_t n, size_t *cap)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void **a = realloc(*arr, ncap * sizeof(*a));
    if (!a)
        return -1;
    *arr = a;
    *cap = ncap;
    return 0;
}

struct of_counter *of_metrics_counter(of_metrics *m, const char *name, const char *help,
                                      const char *pipeline, const char *stage)
{
    return of_metrics_counter_l(m, name, help, pipeline, stage, NULL);
}

struct of_counter *of_metrics_counter_l(of_metrics *m, const char *name, const char *help,
                                        const char *pipeline, const char *stage,
                                        const char *const *labels)
{
    if (!m || !of_metric_name_valid(name))
        return NULL;
    char *lbl = of_metrics_render_labels(labels);
    if (!lbl)
        return NULL;
    pthread_mutex_lock(&m->mu);
    struct of_counter *c = find_counter_locked(m, name, pipeline, stage, lbl);
    if (c || find_histogram_locked(m, name, pipeline, stage, NULL) ||
        collector_named_locked(m, name)) {
        /* A histogram or collector of that name: the kinds must not mix. */
        pthread_mutex_unlock(&m->mu);
        free(lbl);
        return c;
    }
    if (grow((void ***)&m->counters, m->n_counters, &m->cap_counters) != 0)
        goto fail;
    c = calloc(1, sizeof(*c));
    if (!c)
        goto fail;
    int failed = 0;
    c->name = dup_or_null(name, &failed);
    c->help = dup_or_null(help ? help : "", &failed);
    c->pipeline = dup_or_null(pipeline, &failed);
    c->stage = dup_or_null(stage, &failed);
    c->labels = lbl;
    lbl = NULL;
    if (failed) {
        free_labels(c->name, c->help, c->pipeline, c->stage, c->labels);
        free(c);
        goto fail;
    }
    atomic_init(&c->value_milli, 0);
    m->counters[m->n_counters++] = c;
    pthread_mutex_unlock(&m->mu);
    return c;
fail:
    pthread_mutex_unlock(&m->mu);
    free(lbl);
    return NULL;
}

struct of_histogram *of_metrics_histogram(of_metrics *m, const char *name, const char *help,
                                          const char *pipeline, const char *stage,
                                          const double *bounds, size_t n_bounds)
{
    return of_metrics_histogram_l(m, name, help, pipeline, stage, NULL, bounds, n_bounds);
}

struct of_histogram *of_metrics_histogram_l(of_metrics *m, const char *name, const char *help,
                                            const char *pipeline, const char *stage,
                                            const char *const *labels, const double *bounds,
                                            size_t n_bounds)
{
    if (!m || !of_metric_name_valid(name) || n_bounds > OF_HIST_MAX_BOUNDS || (n_bounds && !bounds))
        return NULL;
    for (size_t i = 0; i < n_bounds; i++) {
        if (isnan(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return NULL;
    }
    char *lbl = of_metrics_render_labels(labels);
    if (!lbl)
        return NULL;
    pthread_mutex_lock(&m->mu);
    struct of_histogram *h = find_histogram_locked(m, name, pipeline, stage, lbl);
    if (h || find_counter_locked(m, name, pipeline, stage, NULL) ||
        collector_named_locked(m, name)) {
        pthread_mutex_unlock(&m->mu);
        free(lbl);
        return h;
    }
    if (grow((void ***)&m->histograms, m->n_histograms, &m->cap_histograms) != 0)
        goto fail;
    h = calloc(1, sizeof(*h));
    if (!h)
        goto fail;
    int failed = 0;
    h->name = dup_or_null(name, &failed);
    h->help = dup_or_null(help ? help : "", &failed);
    h->pipeline = dup_or_null(pipeline, &failed);
    h->stage = dup_or_null(stage, &failed);
    h->labels = lbl;
    lbl = NULL;
    if (failed) {
        free_labels(h->name, h->help, h->pipeline, h->stage, h->labels);
        free(h);
        goto fail;
    }
    if (n_bounds)
        memcpy(h->bounds, bounds, n_bounds * sizeof(*bounds));
    h->n_bounds = n_bounds;
    for (size_t i = 0; i <= OF_HIST_MAX_BOUNDS; i++)
        atomic_init(&h->buckets[i], 0);
    atomic_init(&h->count, 0);
    atomic_init(&h->sum_micro, 0);
    m->histograms[m->n_histograms++] = h;
    pthread_mutex_unlock(&m->mu);
    return h;
fail:
    pthread_mutex_unlock(&m->mu);
    free(lbl);
    return NULL;
}

void of_counter_add_(struct of_counter *c, double delta)
{
    /* Counters only grow: negative, NaN and absurd deltas are ignored. */
    if (!c || !(delta >= 0) || delta > 1e15)
        return;
    uint64_t milli = (uint64_t)llround(delta * 1000.0);
    atomic_fetch_add_explicit(&c->value_milli, milli, memory_order_relaxed);
}

double of_counter_value(const struct of_counter *c)
{
    if (!c)
        return 0;
    uint64_t v = atomic_load_explicit(&((struct of_counter *)c)->value_milli, memory_order_relaxed);
    return (double)v / 1000.0;
}

void of_histogram_observe_(struct of_histogram *h, double v)
{
    if (!h || isnan(v))
        return;
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    double micro = v * 1e6;
    if (micro > 9e18)
        micro = 9e18;
    else if (micro < -9e18)
        micro = -9e18;
    /* Two's complement wrap-around keeps negative observations subtracting from the sum. */
    atomic_fetch_add_explicit(&h->sum_micro, (uint64_t)(int64_t)llround(micro),
                              memory_order_relaxed);
}

struct of_counter *of_metrics_find_counter(of_metrics *m, const char *name, const char *pipeline,
                                           const char *stage)
{
    if (!m || !name)
        return NULL;
    pthread_mutex_lock(&m->mu);
    struct of_counter *c = find_counter_locked(m, name, pipeline, stage, NULL);
    pthread_mutex_unlock(&m->mu);
    return c;
}

struct of_histogram *of_metrics_find_histogram(of_metrics *m, const char *name,
                                               const char *pipeline, const char *stage)
{
    if (!m || !name)
        return NULL;
    pthread_mutex_lock(&m->mu);
    struct of_histogram *h = find_histogram_locked(m, name, pipeline, stage, NULL);
    pthread_mutex_unlock(&m->mu);
    return h;
}

size_t of_metrics_counter_count(of_metrics *m)
{
    if (!m)
        return 0;
    pthread_mutex_lock(&m->mu);
    size_t n = m->n_counters;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int of_metrics_collector(of_metrics *m, const char *name, const char *help, of_metric_kind kind,
                         of_metric_collect_fn fn, void *opaque)
{
    if (!m || !fn || !of_metric_name_valid(name) ||
        (kind != OF_METRIC_GAUGE && kind != OF_METRIC_COUNTER))
        return -1;
    of_collector *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->name = strdup(name);
    c->help = strdup(help ? help : "");
    c->kind = kind;
    c->fn = fn;
    c->opaque = opaque;
    if (!c->name || !c->help) {
        free(c->name);
        free(c->help);
        free(c);
        return -1;
    }
    pthread_mutex_lock(&m->mu);
    int taken =
        collector_named_locked(m, name) || find_counter_locked(m, name, NULL, NULL, NULL) != NULL;
    for (size_t i = 0; i < m->n_counters && !taken; i++)
        taken = strcmp(m->counters[i]->name, name) == 0;
    for (size_t i = 0; i < m->n_histograms && !taken; i++)
        taken = strcmp(m->histograms[i]->name, name) == 0;
    if (taken || grow((void ***)&m->collectors, m->n_collectors, &m->cap_collectors) != 0) {
        pthread_mutex_unlock(&m->mu);
        free(c->name);
        free(c->help);
        free(c);
        return -1;
    }
    m->collectors[m->n_collectors++] = c;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

void of_metrics_remove_collectors(of_metrics *m, void *opaque)
{
    if (!m)
        return;
    pthread_rwlock_wrlock(&m->collect_lock);
    pthread_mutex_lock(&m->mu);
    size_t k = 0;
    for (size_t i = 0; i < m->n_collectors; i++) {
        of_collector *c = m->collectors[i];
        if (c->opaque == opaque) {
            free(c->name);
            free(c->help);
            free(c);
        } else {
            m->collectors[k++] = c;
        }
    }
    m->n_collectors = k;
    pthread_mutex_unlock(&m->mu);
    pthread_rwlock_unlock(&m->collect_lock);
}
