/* Retry backoff: growth, cap, jitter bounds; and the per-thread random numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "runner.h"

static of_retry_policy policy(int64_t initial, int64_t max, double mult, double jitter)
{
    of_retry_policy p = {5, initial, max, mult, jitter};
    return p;
}

static void test_growth(void **state)
{
    (void)state;
    of_retry_policy p = policy(100, 30000, 2.0, 0.0);
    assert_int_equal(of_backoff_delay_ms(&p, 1, 0.5), 0); /* the first try does not wait */
    assert_int_equal(of_backoff_delay_ms(&p, 2, 0.5), 100);
    assert_int_equal(of_backoff_delay_ms(&p, 3, 0.5), 200);
    assert_int_equal(of_backoff_delay_ms(&p, 4, 0.5), 400);
    assert_int_equal(of_backoff_delay_ms(&p, 5, 0.5), 800);
    of_retry_policy q = policy(10, 100000, 1.5, 0.0);
    assert_int_equal(of_backoff_delay_ms(&q, 4, 0.0), 23); /* 10 * 1.5^2 = 22.5 */
    of_retry_policy flat = policy(7, 1000, 1.0, 0.0);
    assert_int_equal(of_backoff_delay_ms(&flat, 50, 0.3), 7);
}

static void test_cap(void **state)
{
    (void)state;
    of_retry_policy p = policy(100, 1000, 2.0, 0.0);
    assert_int_equal(of_backoff_delay_ms(&p, 5, 0.5), 800);
    assert_int_equal(of_backoff_delay_ms(&p, 6, 0.5), 1000);
    assert_int_equal(of_backoff_delay_ms(&p, 7, 0.5), 1000);
    /* A huge attempt number stays at the cap (no overflow). */
    assert_int_equal(of_backoff_delay_ms(&p, 1000000, 0.5), 1000);
    of_retry_policy big = policy(1000, 3600000, 10.0, 0.0);
    assert_int_equal(of_backoff_delay_ms(&big, 1000, 0.0), 3600000);
}

static void test_jitter_bounds(void **state)
{
    (void)state;
    of_retry_policy p = policy(1000, 30000, 2.0, 0.2);
    /* rnd 0 -> -20%, rnd 0.5 -> exact, rnd -> 1 -> +20% */
    assert_int_equal(of_backoff_delay_ms(&p, 2, 0.0), 800);
    assert_int_equal(of_backoff_delay_ms(&p, 2, 0.5), 1000);
    assert_in_range(of_backoff_delay_ms(&p, 2, 0.999999), 1199, 1200);
    for (int i = 0; i < 1000; i++) {
        double r = of_rand_unit();
        assert_true(r >= 0.0 && r < 1.0);
        int64_t d = of_backoff_delay_ms(&p, 3, r);
        assert_in_range(d, 1600, 2400);
    }
    /* Jitter applies after the cap: at most max * (1 + jitter). */
    of_retry_policy c = policy(1000, 1500, 2.0, 0.5);
    assert_in_range(of_backoff_delay_ms(&c, 9, 0.999), 2240, 2250);
    assert_int_equal(of_backoff_delay_ms(&c, 9, 0.0), 750);
    /* Out-of-range inputs are clamped, never negative. */
    of_retry_policy wild = policy(100, 1000, 0.5, 7.0);
    assert_true(of_backoff_delay_ms(&wild, 3, -3.0) >= 0);
    assert_true(of_backoff_delay_ms(&wild, 3, 42.0) <= 200);
}

static void test_random_spread(void **state)
{
    (void)state;
    int buckets[10] = {0};
    for (int i = 0; i < 10000; i++)
        buckets[(int)(of_rand_unit() * 10)]++;
    for (int i = 0; i < 10; i++)
        assert_in_range(buckets[i], 700, 1300);
    uint64_t a = of_rand_u64(), b = of_rand_u64();
    assert_true(a != b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_random_spread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
