/* The payment plugin's charge pool (plugins/payment/charge_pool.c): every job of a run once, the
 * jobs of a run really at the same time (a barrier that only opens when all of them are running:
 * calls made one after another never reach it and time out), runs from several threads at once,
 * a run on a NULL pool, and the thread counts it refuses. No timing is asserted: the barrier's
 * timeout only turns a hang into a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "charge_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BARRIER_WAIT_S 10

typedef struct counts {
    _Atomic int *seen; /* per index */
    _Atomic size_t calls;
} counts;

static void count_job(void *arg, size_t i)
{
    counts *c = arg;
    atomic_fetch_add(&c->seen[i], 1);
    atomic_fetch_add(&c->calls, 1);
}

static void expect_each_once(const counts *c, size_t n)
{
    assert_int_equal(atomic_load(&c->calls), n);
    for (size_t i = 0; i < n; i++)
        if (atomic_load(&c->seen[i]) != 1)
            fail_msg("job %zu ran %d times", i, atomic_load(&c->seen[i]));
}

static void test_every_job_once(void **state)
{
    (void)state;
    char err[128];
    pay_pool *p = pay_pool_new(4, "test-pool", err, sizeof(err));
    assert_non_null(p);
    size_t sizes[] = {0, 1, 2, 5, 1000};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        counts c = {.seen = calloc(n + 1, sizeof(*c.seen))};
        assert_non_null(c.seen);
        pay_pool_run(p, count_job, &c, n);
        expect_each_once(&c, n);
        free(c.seen);
    }
    pay_pool_free(p);
}

typedef struct barrier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t want, arrived, met;
    int wait_s; /* how long a job waits for the others */
} barrier;

/* Waits until `want` jobs are inside at once; counts the jobs that saw it open. */
static void barrier_job(void *arg, size_t i)
{
    (void)i;
    barrier *b = arg;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += b->wait_s;
    pthread_mutex_lock(&b->mu);
    if (++b->arrived >= b->want)
        pthread_cond_broadcast(&b->cv);
    int rc = 0;
    while (b->arrived < b->want && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&b->cv, &b->mu, &deadline);
    if (b->arrived >= b->want)
        b->met++;
    pthread_mutex_unlock(&b->mu);
}

static void run_barrier(pay_pool *p, size_t n, size_t expect_met, int wait_s)
{
    barrier b = {.want = n, .wait_s = wait_s};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    pay_pool_run(p, barrier_job, &b, n);
    assert_int_equal(b.arrived, n);
    assert_int_equal(b.met, expect_met);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
}

static void test_jobs_at_once(void **state)
{
    (void)state;
    char err[128];
    /* 7 helpers and the caller: 8 jobs all running together. */
    pay_pool *p = pay_pool_new(7, "test-pool", err, sizeof(err));
    assert_non_null(p);
    run_barrier(p, 8, 8, BARRIER_WAIT_S);
    /* More jobs than threads: all done, in waves. */
    counts c = {.seen = calloc(64, sizeof(*c.seen))};
    assert_non_null(c.seen);
    pay_pool_run(p, count_job, &c, 64);
    expect_each_once(&c, 64);
    free(c.seen);
    pay_pool_free(p);
}

typedef struct runner_arg {
    pay_pool *p;
    size_t n;
    counts c;
} runner_arg;

static void *run_thread(void *arg)
{
    runner_arg *a = arg;
    for (int round = 0; round < 50; round++)
        pay_pool_run(a->p, count_job, &a->c, a->n);
    return NULL;
}

static void test_runs_from_threads(void **state)
{
    (void)state;
    char err[128];
    pay_pool *p = pay_pool_new(3, "test-pool", err, sizeof(err));
    assert_non_null(p);
    enum { RUNNERS = 4 };
    runner_arg a[RUNNERS];
    pthread_t t[RUNNERS];
    for (size_t i = 0; i < RUNNERS; i++) {
        a[i] = (runner_arg){.p = p, .n = 7 + 9 * i};
        a[i].c.seen = calloc(a[i].n, sizeof(*a[i].c.seen));
        assert_non_null(a[i].c.seen);
        assert_int_equal(pthread_create(&t[i], NULL, run_thread, &a[i]), 0);
    }
    for (size_t i = 0; i < RUNNERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(atomic_load(&a[i].c.calls), 50 * a[i].n);
        for (size_t j = 0; j < a[i].n; j++)
            assert_int_equal(atomic_load(&a[i].c.seen[j]), 50);
        free(a[i].c.seen);
    }
    pay_pool_free(p);
}

static void test_no_pool_runs_in_place(void **state)
{
    (void)state;
    counts c = {.seen = calloc(5, sizeof(*c.seen))};
    assert_non_null(c.seen);
    pay_pool_run(NULL, count_job, &c, 5);
    expect_each_once(&c, 5);
    free(c.seen);
    /* One after another: the first job waits out the barrier alone, only the last one sees it
     * full (what a pool that did not run jobs at once would give in the tests above). */
    run_barrier(NULL, 2, 1, 1);
}

static void test_thread_counts(void **state)
{
    (void)state;
    char err[128] = "";
    assert_null(pay_pool_new(0, "x", err, sizeof(err)));
    assert_non_null(strstr(err, "0 threads"));
    assert_null(pay_pool_new(PAY_POOL_MAX_THREADS + 1, "x", err, sizeof(err)));
    assert_non_null(strstr(err, "257 threads"));
    pay_pool *p = pay_pool_new(1, NULL, err, sizeof(err));
    assert_non_null(p);
    run_barrier(p, 2, 2, BARRIER_WAIT_S);
    pay_pool_free(p);
    pay_pool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_job_once),    cmocka_unit_test(test_jobs_at_once),
        cmocka_unit_test(test_runs_from_threads), cmocka_unit_test(test_no_pool_runs_in_place),
        cmocka_unit_test(test_thread_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
