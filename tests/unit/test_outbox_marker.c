/* The outbox marker (host/core/outbox_marker.c): acknowledged outbox ids from many threads are
 * marked published in a few batched UPDATEs, by size, by time, on flush and on stop; against the
 * project's MariaDB (own database per run). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_db_util.h"

#include "event.h"
#include "outbox_marker.h"

#include <pthread.h>

static of_db_pool *pool;

static int group_setup(void **state)
{
    (void)state;
    if (!(pool = dbt_host_schema_pool(4, NULL)))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    of_db_pool_free(pool);
    return dbt_drop_database();
}

static int64_t count(const char *sql)
{
    return dbt_pool_int(pool, sql);
}

static int64_t published(void)
{
    return count("SELECT COUNT(*) FROM of_outbox WHERE published_at IS NOT NULL");
}

/* n fresh unpublished rows (the table emptied first); their ids in ids[]. */
static void make_rows(int64_t *ids, size_t n)
{
    char err[512] = "";
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(of_db_exec_text(c, "DELETE FROM of_outbox"), 0);
    of_db_release(c);
    of_event *ev = of_event_new("k", 1, "{}", 2);
    assert_non_null(ev);
    of_db_tx *tx = of_db_tx_begin(pool, err, sizeof(err));
    assert_non_null(tx);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(of_db_outbox_add(tx, "marker.out", ev, NULL, &ids[i]), 0);
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);
    of_event_free(ev);
}

/* Waits up to ms for every queued id to be marked. */
static void wait_marked(of_outbox_marker *m, uint64_t want, int ms)
{
    uint64_t marked = 0;
    for (int i = 0; i < ms / 5; i++) {
        of_outbox_marker_counts(m, &marked, NULL);
        if (marked >= want)
            return;
        usleep(5000);
    }
    fail_msg("marked %llu of %llu in %d ms", (unsigned long long)marked, (unsigned long long)want,
             ms);
}

#define N_ROWS    1200
#define N_THREADS 4

typedef struct adder {
    of_outbox_marker *m;
    const int64_t *ids;
    size_t n;
} adder;

static void *add_main(void *arg)
{
    adder *a = arg;
    /* Three at a time, as an event's rows arrive. */
    for (size_t i = 0; i < a->n; i += 3)
        of_outbox_marker_add(a->m, a->ids + i, a->n - i < 3 ? a->n - i : 3);
    return NULL;
}

/* Ids from several threads go out in a few UPDATEs, not one per add. */
static void test_batches_from_many_threads(void **state)
{
    (void)state;
    static int64_t ids[N_ROWS];
    make_rows(ids, N_ROWS);
    of_outbox_marker *m = of_outbox_marker_start(pool, 20, 500);
    assert_non_null(m);
    pthread_t th[N_THREADS];
    adder a[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        a[i] = (adder){m, ids + i * (N_ROWS / N_THREADS), N_ROWS / N_THREADS};
        assert_int_equal(pthread_create(&th[i], NULL, add_main, &a[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    wait_marked(m, N_ROWS, 5000);
    uint64_t marked, batches;
    of_outbox_marker_counts(m, &marked, &batches);
    assert_int_equal(marked, N_ROWS);
    assert_true(batches >= 1 && batches <= 40); /* 400 adds of 3 */
    assert_int_equal(of_outbox_marker_pending(m), 0);
    assert_int_equal(published(), N_ROWS);
    of_outbox_marker_stop(m);
}

/* A few ids wait at most about the interval. */
static void test_interval(void **state)
{
    (void)state;
    int64_t ids[5];
    make_rows(ids, 5);
    of_outbox_marker *m = of_outbox_marker_start(pool, 30, 500);
    assert_non_null(m);
    of_outbox_marker_add(m, ids, 5);
    wait_marked(m, 5, 2000);
    uint64_t batches;
    of_outbox_marker_counts(m, NULL, &batches);
    assert_int_equal(batches, 1);
    assert_int_equal(published(), 5);
    of_outbox_marker_stop(m);
}

/* A full batch goes at once, long before a long interval. */
static void test_batch_size(void **state)
{
    (void)state;
    int64_t ids[10];
    make_rows(ids, 10);
    of_outbox_marker *m = of_outbox_marker_start(pool, 60000, 10);
    assert_non_null(m);
    of_outbox_marker_add(m, ids, 4);
    of_outbox_marker_add(m, ids + 4, 6);
    wait_marked(m, 10, 2000);
    assert_int_equal(published(), 10);
    of_outbox_marker_stop(m);
}

/* flush() marks now; stop() marks what is still queued (the drain). */
static void test_flush_and_stop(void **state)
{
    (void)state;
    int64_t ids[8];
    make_rows(ids, 8);
    of_outbox_marker *m = of_outbox_marker_start(pool, 60000, 500);
    assert_non_null(m);
    of_outbox_marker_add(m, ids, 3);
    assert_int_equal(of_outbox_marker_flush(m), 0);
    assert_int_equal(published(), 3);
    assert_int_equal(of_outbox_marker_pending(m), 0);
    of_outbox_marker_add(m, ids + 3, 5);
    assert_int_equal(of_outbox_marker_pending(m), 5);
    of_outbox_marker_stop(m);
    assert_int_equal(published(), 8);
    /* A NULL marker is a no-op. */
    of_outbox_marker_stop(NULL);
    of_outbox_marker_add(NULL, ids, 1);
    assert_int_equal(of_outbox_marker_flush(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_from_many_threads),
        cmocka_unit_test(test_interval),
        cmocka_unit_test(test_batch_size),
        cmocka_unit_test(test_flush_and_stop),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
