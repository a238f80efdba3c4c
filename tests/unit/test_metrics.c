/* The metric registry: names, registration identity, counters, histograms, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_validation),
        cmocka_unit_test(test_counter_identity_and_values),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_concurrent_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
