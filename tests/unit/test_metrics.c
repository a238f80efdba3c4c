/* The metric registry: names, registration identity, counters, histograms, threads; the
 * Prometheus exposition (names, HELP/TYPE once per family, escaping, cumulative buckets,
 * collectors) and the process metrics from /proc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_name_validation(void **state)
{
    (void)state;
    assert_true(of_metric_name_valid("orders_total"));
    assert_true(of_metric_name_valid("_x9"));
    assert_true(of_metric_name_valid("a"));
    assert_false(of_metric_name_valid(""));
    assert_false(of_metric_name_valid(NULL));
    assert_false(of_metric_name_valid("9lives"));
    assert_false(of_metric_name_valid("Orders"));
    assert_false(of_metric_name_valid("orders-total"));
    assert_false(of_metric_name_valid("orders total"));
    assert_false(of_metric_name_valid("orders.total"));
    char long_name[OF_METRIC_NAME_MAX + 2];
    for (size_t i = 0; i < sizeof(long_name) - 1; i++)
        long_name[i] = 'a';
    long_name[sizeof(long_name) - 1] = '\0';
    assert_false(of_metric_name_valid(long_name));

    of_metrics *m = of_metrics_new();
    assert_null(of_metrics_counter(m, "Bad", "", "p", "s"));
    assert_null(of_metrics_histogram(m, "bad-name", "", "p", "s", NULL, 0));
    of_metrics_free(m);
}

static void test_counter_identity_and_values(void **state)
{
    (void)state;
    of_metrics *m = of_metrics_new();
    struct of_counter *a = of_metrics_counter(m, "seen", "Seen events", "p", "s");
    assert_non_null(a);
    assert_ptr_equal(of_metrics_counter(m, "seen", "other help", "p", "s"), a);
    struct of_counter *b = of_metrics_counter(m, "seen", "", "p", "t");
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    struct of_counter *g = of_metrics_counter(m, "seen", "", NULL, NULL);
    assert_non_null(g);
    assert_ptr_not_equal(g, a);
    assert_int_equal(of_metrics_counter_count(m), 3);

    of_counter_add_(a, 1);
    of_counter_add_(a, 2.5);
    of_counter_add_(a, -7);  /* ignored: counters only grow */
    of_counter_add_(a, NAN); /* ignored */
    assert_true(of_counter_value(a) == 3.5);
    assert_true(of_counter_value(b) == 0);
    assert_ptr_equal(of_metrics_find_counter(m, "seen", "p", "s"), a);
    assert_ptr_equal(of_metrics_find_counter(m, "seen", NULL, NULL), g);
    assert_null(of_metrics_find_counter(m, "nope", "p", "s"));
    assert_string_equal(a->help, "Seen events");
    assert_string_equal(a->pipeline, "p");
    assert_string_equal(a->stage, "s");
    of_counter_add_(NULL, 1); /* harmless */
    assert_true(of_counter_value(NULL) == 0);
    of_metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    of_metrics *m = of_metrics_new();
    const double bounds[] = {1, 5, 10};
    struct of_histogram *h = of_metrics_histogram(m, "latency_ms", "", "p", "s", bounds, 3);
    assert_non_null(h);
    assert_ptr_equal(of_metrics_histogram(m, "latency_ms", "", "p", "s", bounds, 3), h);
    assert_ptr_equal(of_metrics_find_histogram(m, "latency_ms", "p", "s"), h);
    /* A counter of the same name and labels would mix kinds. */
    assert_null(of_metrics_counter(m, "latency_ms", "", "p", "s"));
    of_histogram_observe_(h, 0.5); /* <= 1 */
    of_histogram_observe_(h, 1);   /* <= 1 */
    of_histogram_observe_(h, 3);   /* <= 5 */
    of_histogram_observe_(h, 10);  /* <= 10 */
    of_histogram_observe_(h, 11);  /* +Inf */
    assert_int_equal(atomic_load(&h->buckets[0]), 2);
    assert_int_equal(atomic_load(&h->buckets[1]), 1);
    assert_int_equal(atomic_load(&h->buckets[2]), 1);
    assert_int_equal(atomic_load(&h->buckets[3]), 1);
    assert_int_equal(atomic_load(&h->count), 5);
    assert_int_equal(atomic_load(&h->sum_micro), 25500000);

    const double descending[] = {5, 1};
    assert_null(of_metrics_histogram(m, "bad_bounds", "", "p", "s", descending, 2));
    double many[OF_HIST_MAX_BOUNDS + 1];
    for (int i = 0; i <= OF_HIST_MAX_BOUNDS; i++)
        many[i] = i;
    assert_null(of_metrics_histogram(m, "too_many", "", "p", "s", many, OF_HIST_MAX_BOUNDS + 1));
    assert_non_null(of_metrics_histogram(m, "just_enough", "", "p", "s", many, OF_HIST_MAX_BOUNDS));
    of_metrics_free(m);
}

typedef struct adder {
    of_metrics *m;
    int n;
} adder;

static void *add_many(void *p)
{
    adder *a = p;
    for (int i = 0; i < a->n; i++) {
        /* Registration races too: everyone must get the same counter. */
        struct of_counter *c = of_metrics_counter(a->m, "hits", "", "p", "s");
        of_counter_add_(c, 1);
        of_counter_add_(c, 0.5);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    of_metrics *m = of_metrics_new();
    pthread_t t[8];
    adder a = {m, 5000};
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, add_many, &a), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_true(of_counter_value(of_metrics_find_counter(m, "hits", "p", "s")) == 8 * 5000 * 1.5);
    assert_int_equal(of_metrics_counter_count(m), 1);
    of_metrics_free(m);
}

/* The lines of an exposition, for assertions. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void gauge_two(void *opaque, of_metric_sink *sink)
{
    int *calls = opaque;
    (*calls)++;
    of_metric_sample(sink, (const char *const[]){"state", "in_use", NULL}, 2);
    of_metric_sample(sink, (const char *const[]){"state", "idle", NULL}, 0.5);
}

static void test_exposition(void **state)
{
    (void)state;
    of_metrics *m = of_metrics_new();
    const char *const plug[] = {"plugin", "orders", NULL};
    struct of_counter *a =
        of_metrics_counter_l(m, "stage_events_received", "Events handed", "p", "s", plug);
    struct of_counter *b =
        of_metrics_counter_l(m, "stage_events_received", "Events handed", "p", "t", plug);
    of_metrics_counter(m, "other", "Other", NULL, NULL);
    struct of_counter *esc =
        of_metrics_counter_l(m, "weird", "Help with \\ and\na newline", "p\"q", "a\\b\nc", NULL);
    struct of_counter *tot = of_metrics_counter(m, "plugin_x_total", "", "p", "s");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(esc);
    /* Labels are part of the identity; a bad label name is refused. */
    assert_ptr_equal(of_metrics_counter_l(m, "stage_events_received", "", "p", "s", plug), a);
    assert_null(of_metrics_counter_l(m, "bad_label", "", NULL, NULL,
                                     (const char *const[]){"Bad-Name", "x", NULL}));
    of_counter_add_(a, 3);
    of_counter_add_(b, 1.5);
    of_counter_add_(tot, 2);
    const double bounds[] = {0.1, 1, 10};
    struct of_histogram *h =
        of_metrics_histogram_l(m, "stage_processing_seconds", "Latency", "p", "s", plug, bounds, 3);
    of_histogram_observe_(h, 0.05);
    of_histogram_observe_(h, 0.5);
    of_histogram_observe_(h, 0.7);
    of_histogram_observe_(h, 100);
    int calls = 0;
    assert_int_equal(of_metrics_collector(m, "mysql_pool_connections", "Pool", OF_METRIC_GAUGE,
                                          gauge_two, &calls),
                     0);
    /* A collector's name is its own. */
    assert_int_equal(
        of_metrics_collector(m, "mysql_pool_connections", "", OF_METRIC_GAUGE, gauge_two, &calls),
        -1);
    assert_int_equal(of_metrics_collector(m, "other", "", OF_METRIC_GAUGE, gauge_two, &calls), -1);
    assert_null(of_metrics_counter(m, "mysql_pool_connections", "", NULL, NULL));

    size_t len = 0;
    char *text = of_metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_int_equal(calls, 1);
    /* Counters: prefix, _total, HELP and TYPE once per family, labels in order. */
    assert_int_equal(count_of(text, "# TYPE orderflow_stage_events_received_total counter\n"), 1);
    assert_int_equal(count_of(text, "# HELP orderflow_stage_events_received_total "), 1);
    assert_true(has_line(text, "# HELP orderflow_stage_events_received_total Events handed"));
    assert_true(has_line(
        text,
        "orderflow_stage_events_received_total{pipeline=\"p\",stage=\"s\",plugin=\"orders\"} 3"));
    assert_true(has_line(
        text,
        "orderflow_stage_events_received_total{pipeline=\"p\",stage=\"t\",plugin=\"orders\"} 1.5"));
    assert_true(has_line(text, "orderflow_other_total 0"));
    /* A name already ending in _total is not doubled. */
    assert_true(has_line(text, "orderflow_plugin_x_total{pipeline=\"p\",stage=\"s\"} 2"));
    /* Escaping: label values (\\, \", \n) and HELP (\\, \n). */
    assert_true(has_line(text, "# HELP orderflow_weird_total Help with \\\\ and\\na newline"));
    assert_true(
        has_line(text, "orderflow_weird_total{pipeline=\"p\\\"q\",stage=\"a\\\\b\\nc\"} 0"));
    /* Histograms: cumulative buckets, +Inf = _count, _sum. */
    assert_true(has_line(text, "# TYPE orderflow_stage_processing_seconds histogram"));
    const char *lbl = "{pipeline=\"p\",stage=\"s\",plugin=\"orders\"";
    char line[256];
    const char *const les[] = {"0.1", "1", "10", "+Inf"};
    const int cum[] = {1, 3, 3, 4};
    for (int i = 0; i < 4; i++) {
        snprintf(line, sizeof(line), "orderflow_stage_processing_seconds_bucket%s,le=\"%s\"} %d",
                 lbl, les[i], cum[i]);
        assert_true(has_line(text, line));
    }
    snprintf(line, sizeof(line), "orderflow_stage_processing_seconds_count%s} 4", lbl);
    assert_true(has_line(text, line));
    snprintf(line, sizeof(line), "orderflow_stage_processing_seconds_sum%s} 101.25", lbl);
    assert_true(has_line(text, line));
    /* Collectors: gauges with their samples. */
    assert_true(has_line(text, "# TYPE orderflow_mysql_pool_connections gauge"));
    assert_true(has_line(text, "orderflow_mysql_pool_connections{state=\"in_use\"} 2"));
    assert_true(has_line(text, "orderflow_mysql_pool_connections{state=\"idle\"} 0.5"));
    /* Every line ends with a newline, and nothing but comments and samples. */
    assert_int_equal(text[len - 1], '\n');
    free(text);

    of_metrics_remove_collectors(m, &calls);
    text = of_metrics_render(m, &len);
    assert_null(strstr(text, "mysql_pool_connections"));
    assert_int_equal(calls, 1);
    free(text);
    of_metrics_free(m);
}

static void test_process_metrics(void **state)
{
    (void)state;
    of_proc_stats ps;
    assert_int_equal(of_proc_stats_read(&ps), 0);
    assert_true(ps.rss_bytes > 100000);
    assert_true(ps.threads >= 1);
    assert_true(ps.open_fds >= 3);
    assert_true(ps.start_time_seconds > 1.5e9);
    /* One more descriptor is seen. */
    int fd = dup(0);
    of_proc_stats ps2;
    of_proc_stats_read(&ps2);
    assert_true(ps2.open_fds == ps.open_fds + 1);
    close(fd);

    of_metrics *m = of_metrics_new();
    assert_int_equal(of_metrics_add_process(m, "1.2.3", "1.2"), 0);
    char *text = of_metrics_render(m, NULL);
    assert_non_null(text);
    assert_true(has_line(text, "# TYPE orderflow_process_resident_memory_bytes gauge"));
    assert_true(has_line(text, "orderflow_build_info{version=\"1.2.3\",abi=\"1.2\"} 1"));
    assert_non_null(strstr(text, "\norderflow_process_threads "));
    assert_non_null(strstr(text, "\norderflow_process_open_fds "));
    assert_non_null(strstr(text, "\norderflow_process_start_time_seconds "));
    const char *up = strstr(text, "\norderflow_uptime_seconds ");
    assert_non_null(up);
    double uptime = strtod(up + strlen("\norderflow_uptime_seconds "), NULL);
    assert_true(uptime >= 0 && uptime < 3600);
    free(text);
    of_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_validation), cmocka_unit_test(test_counter_identity_and_values),
        cmocka_unit_test(test_histogram),       cmocka_unit_test(test_concurrent_updates),
        cmocka_unit_test(test_exposition),      cmocka_unit_test(test_process_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
