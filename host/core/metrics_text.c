/* The Prometheus text exposition (format 0.0.4) of the metric registry, and the process
 * metrics read from /proc/self. */
#include "metrics.h"
#include "metrics_priv.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct sbuf {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > ncap)
            ncap *= 2;
        char *nb = realloc(b->buf, ncap);
        if (!nb) {
            b->oom = 1;
            return;
        }
        b->buf = nb;
        b->cap = ncap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    free(big);
}

/* A sample value as Prometheus reads it. */
static void sb_value(sbuf *b, double v)
{
    if (isnan(v))
        sb_str(b, "NaN");
    else if (isinf(v))
        sb_str(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        sb_printf(b, "%.0f", v);
    else
        sb_printf(b, "%.15g", v);
}

static void sb_label_value(sbuf *b, const char *s)
{
    char small[256];
    size_t n = of_metric_escape_label(NULL, 0, s);
    if (n < sizeof(small)) {
        of_metric_escape_label(small, sizeof(small), s);
        sb_put(b, small, n);
        return;
    }
    char *big = malloc(n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    of_metric_escape_label(big, n + 1, s);
    sb_put(b, big, n);
    free(big);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The exposed family name: prefix + name (+ _total for counters). */
static void family_name(char *out, size_t size, const char *name, of_metric_kind kind)
{
    snprintf(out, size, "%s%s%s", OF_METRIC_PREFIX, name,
             kind == OF_METRIC_COUNTER && !ends_with(name, "_total") ? "_total" : "");
}

static void sb_help_type(sbuf *b, const char *family, const char *help, of_metric_kind kind)
{
    sb_printf(b, "# HELP %s ", family);
    for (const char *p = help && *help ? help : family; *p; p++) {
        if (*p == '\\')
            sb_str(b, "\\\\");
        else if (*p == '\n')
            sb_str(b, "\\n");
        else
            sb_put(b, p, 1);
    }
    sb_printf(b, "\n# TYPE %s %s\n", family,
              kind == OF_METRIC_COUNTER     ? "counter"
              : kind == OF_METRIC_HISTOGRAM ? "histogram"
                                            : "gauge");
}

/* `{pipeline="..",stage="..",<extra>[,le=".."]}` or nothing when there is no label. */
static void sb_labels(sbuf *b, const char *pipeline, const char *stage, const char *extra,
                      const char *le)
{
    int any = 0;
    if (!pipeline && !stage && (!extra || !*extra) && !le)
        return;
    sb_str(b, "{");
    if (pipeline) {
        sb_str(b, "pipeline=\"");
        sb_label_value(b, pipeline);
        sb_str(b, "\"");
        any = 1;
    }
    if (stage) {
        sb_str(b, any ? ",stage=\"" : "stage=\"");
        sb_label_value(b, stage);
        sb_str(b, "\"");
        any = 1;
    }
    if (extra && *extra) {
        if (any)
            sb_str(b, ",");
        sb_str(b, extra);
        any = 1;
    }
    if (le) {
        sb_str(b, any ? ",le=\"" : "le=\"");
        sb_str(b, le);
        sb_str(b, "\"");
    }
    sb_str(b, "}");
}

struct of_metric_sink {
    sbuf *b;
    const char *family;
};

void of_metric_sample(of_metric_sink *sink, const char *const *labels, double value)
{
    if (!sink)
        return;
    sbuf *b = sink->b;
    sb_str(b, sink->family);
    if (labels && labels[0]) {
        char *l = of_metrics_render_labels(labels);
        if (!l) {
            b->oom = 1;
            return;
        }
        sb_str(b, "{");
        sb_str(b, l);
        sb_str(b, "}");
        free(l);
    }
    sb_str(b, " ");
    sb_value(b, value);
    sb_str(b, "\n");
}

static void render_histogram(sbuf *b, const char *family, const struct of_histogram *hc)
{
    struct of_histogram *h = (struct of_histogram *)hc;
    uint64_t cum = 0;
    char name[OF_METRIC_NAME_MAX + 64], le[64];
    snprintf(name, sizeof(name), "%s_bucket", family);
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->n_bounds) {
            double v = h->bounds[i];
            if (isinf(v))
                snprintf(le, sizeof(le), "%s", v > 0 ? "+Inf" : "-Inf");
            else
                snprintf(le, sizeof(le), "%.15g", v);
        } else {
            snprintf(le, sizeof(le), "+Inf");
        }
        if (i < h->n_bounds && isinf(h->bounds[i]) && h->bounds[i] > 0)
            continue; /* +Inf comes last, once */
        sb_str(b, name);
        sb_labels(b, h->pipeline, h->stage, h->labels, le);
        sb_printf(b, " %llu\n", (unsigned long long)cum);
    }
    int64_t sum_micro = (int64_t)atomic_load_explicit(&h->sum_micro, memory_order_relaxed);
    sb_printf(b, "%s_sum", family);
    sb_labels(b, h->pipeline, h->stage, h->labels, NULL);
    sb_str(b, " ");
    sb_value(b, (double)sum_micro / 1e6);
    sb_printf(b, "\n%s_count", family);
    sb_labels(b, h->pipeline, h->stage, h->labels, NULL);
    /* The +Inf bucket's count, so that the two always agree. */
    sb_printf(b, " %llu\n", (unsigned long long)cum);
}

char *of_metrics_render(of_metrics *m, size_t *len)
{
    if (!m)
        return NULL;
    sbuf b = {0};
    char family[OF_METRIC_NAME_MAX + 64];
    pthread_mutex_lock(&m->mu);
    /* Counters, each family once, in the order first registered. */
    for (size_t i = 0; i < m->n_counters; i++) {
        const struct of_counter *c = m->counters[i];
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(m->counters[k]->name, c->name) == 0;
        if (seen)
            continue;
        family_name(family, sizeof(family), c->name, OF_METRIC_COUNTER);
        sb_help_type(&b, family, c->help, OF_METRIC_COUNTER);
        for (size_t k = i; k < m->n_counters; k++) {
            const struct of_counter *s = m->counters[k];
            if (strcmp(s->name, c->name) != 0)
                continue;
            sb_str(&b, family);
            sb_labels(&b, s->pipeline, s->stage, s->labels, NULL);
            sb_str(&b, " ");
            sb_value(&b, of_counter_value(s));
            sb_str(&b, "\n");
        }
    }
    for (size_t i = 0; i < m->n_histograms; i++) {
        const struct of_histogram *h = m->histograms[i];
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(m->histograms[k]->name, h->name) == 0;
        if (seen)
            continue;
        family_name(family, sizeof(family), h->name, OF_METRIC_HISTOGRAM);
        sb_help_type(&b, family, h->help, OF_METRIC_HISTOGRAM);
        for (size_t k = i; k < m->n_histograms; k++)
            if (strcmp(m->histograms[k]->name, h->name) == 0)
                render_histogram(&b, family, m->histograms[k]);
    }
    pthread_mutex_unlock(&m->mu);

    /* Collectors run without the registry's lock (they may be slow: a database query), but
     * under the read side of collect_lock so none is removed meanwhile. */
    pthread_rwlock_rdlock(&m->collect_lock);
    pthread_mutex_lock(&m->mu);
    size_t n = m->n_collectors;
    of_collector **cs = n ? malloc(n * sizeof(*cs)) : NULL;
    if (cs)
        memcpy(cs, m->collectors, n * sizeof(*cs));
    else
        n = 0;
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        family_name(family, sizeof(family), cs[i]->name, cs[i]->kind);
        sb_help_type(&b, family, cs[i]->help, cs[i]->kind);
        of_metric_sink sink = {&b, family};
        cs[i]->fn(cs[i]->opaque, &sink);
    }
    pthread_rwlock_unlock(&m->collect_lock);
    free(cs);

    if (b.oom || !b.buf) {
        free(b.buf);
        if (b.oom)
            return NULL;
        b.buf = strdup("");
        if (!b.buf)
            return NULL;
    }
    if (len)
        *len = b.len;
    return b.buf;
}

/* ---------------------------------------------------------------------------------------------
 * Process metrics
 * ------------------------------------------------------------------------------------------- */

int of_proc_stats_read(of_proc_stats *out)
{
    memset(out, 0, sizeof(*out));
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
            out->rss_bytes = (double)v * 1024.0;
        else if (sscanf(line, "Threads: %llu", &v) == 1)
            out->threads = (double)v;
    }
    fclose(f);
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        out->open_fds = n > 0 ? (double)(n - 1) : 0; /* less the directory's own descriptor */
    }
    /* Start time: field 22 of /proc/self/stat (clock ticks after boot) + the boot time. */
    f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t got = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[got] = '\0';
        const char *p = strrchr(buf, ')'); /* the command may contain spaces */
        unsigned long long start = 0;
        if (p) {
            p++;
            for (int field = 3; field <= 22 && *p; field++) {
                while (*p == ' ')
                    p++;
                if (field == 22)
                    start = strtoull(p, NULL, 10);
                while (*p && *p != ' ')
                    p++;
            }
        }
        double btime = 0;
        FILE *s = fopen("/proc/stat", "r");
        if (s) {
            while (fgets(line, sizeof(line), s)) {
                unsigned long long v;
                if (sscanf(line, "btime %llu", &v) == 1)
                    btime = (double)v;
            }
            fclose(s);
        }
        long hz = sysconf(_SC_CLK_TCK);
        if (btime > 0 && hz > 0)
            out->start_time_seconds = btime + (double)start / (double)hz;
    }
    return 0;
}

typedef struct proc_info {
    char version[64], abi[32];
    double start_time; /* seconds since the epoch, when the registration happened */
} proc_info;

static proc_info g_proc; /* one process, one set */

static void collect_rss(void *opaque, of_metric_sink *s)
{
    (void)opaque;
    of_proc_stats ps;
    if (of_proc_stats_read(&ps) == 0)
        of_metric_sample(s, NULL, ps.rss_bytes);
}

static void collect_threads(void *opaque, of_metric_sink *s)
{
    (void)opaque;
    of_proc_stats ps;
    if (of_proc_stats_read(&ps) == 0)
        of_metric_sample(s, NULL, ps.threads);
}

static void collect_fds(void *opaque, of_metric_sink *s)
{
    (void)opaque;
    of_proc_stats ps;
    if (of_proc_stats_read(&ps) == 0)
        of_metric_sample(s, NULL, ps.open_fds);
}

static void collect_start(void *opaque, of_metric_sink *s)
{
    proc_info *pi = opaque;
    of_metric_sample(s, NULL, pi->start_time);
}

static void collect_uptime(void *opaque, of_metric_sink *s)
{
    proc_info *pi = opaque;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    of_metric_sample(s, NULL, now > pi->start_time ? now - pi->start_time : 0);
}

static void collect_build(void *opaque, of_metric_sink *s)
{
    proc_info *pi = opaque;
    of_metric_sample(s, (const char *const[]){"version", pi->version, "abi", pi->abi, NULL}, 1);
}

int of_metrics_add_process(of_metrics *m, const char *version, const char *abi)
{
    proc_info *pi = &g_proc;
    snprintf(pi->version, sizeof(pi->version), "%s", version ? version : "");
    snprintf(pi->abi, sizeof(pi->abi), "%s", abi ? abi : "");
    of_proc_stats ps;
    of_proc_stats_read(&ps);
    if (ps.start_time_seconds > 0) {
        pi->start_time = ps.start_time_seconds;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        pi->start_time = (double)ts.tv_sec;
    }
    int rc = 0;
    rc |= of_metrics_collector(m, "process_resident_memory_bytes", "Resident memory size in bytes",
                               OF_METRIC_GAUGE, collect_rss, pi);
    rc |= of_metrics_collector(m, "process_threads", "Threads of the process", OF_METRIC_GAUGE,
                               collect_threads, pi);
    rc |= of_metrics_collector(m, "process_open_fds", "Open file descriptors", OF_METRIC_GAUGE,
                               collect_fds, pi);
    rc |= of_metrics_collector(m, "process_start_time_seconds",
                               "Start time of the process since the Unix epoch in seconds",
                               OF_METRIC_GAUGE, collect_start, pi);
    rc |= of_metrics_collector(m, "uptime_seconds", "Seconds since the process started",
                               OF_METRIC_GAUGE, collect_uptime, pi);
    rc |=
        of_metrics_collector(m, "build_info", "The version and stage ABI of this build (always 1)",
                             OF_METRIC_GAUGE, collect_build, pi);
    return rc ? -1 : 0;
}
