/* The gateway's token buckets: local ones driven by a simulated clock (burst, refill,
 * retry-after, independent keys, the bound on memory), shared ones in a real Redis (two
 * limiters see one bucket) and the fallback to local buckets when Redis is unreachable. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ratelimit.h"
#include "redis_fixture.h"
#include "timeutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int group_setup(void **state)
{
    (void)state;
    return rf_ensure_shared();
}

/* Takes n tokens at now, expecting each to be allowed. */
static void take_ok(of_ratelimit *rl, const char *key, int64_t now, int n)
{
    for (int i = 0; i < n; i++) {
        int64_t retry = -1;
        if (of_ratelimit_take(rl, key, now, &retry) != 1)
            fail_msg("take %d of %d on '%s' at %lld was limited", i + 1, n, key, (long long)now);
        assert_int_equal(retry, 0);
    }
}

static void take_limited(of_ratelimit *rl, const char *key, int64_t now, int64_t want_retry)
{
    int64_t retry = -1;
    assert_int_equal(of_ratelimit_take(rl, key, now, &retry), 0);
    assert_int_equal(retry, want_retry);
}

/* ---- local ------------------------------------------------------------------------------ */

static void test_bad_arguments(void **state)
{
    (void)state;
    assert_null(of_ratelimit_new(0, 1, NULL));
    assert_null(of_ratelimit_new(-1, 1, NULL));
    assert_null(of_ratelimit_new(1, 0.5, NULL));
    assert_null(of_ratelimit_new(NAN, 1, NULL));
    assert_null(of_ratelimit_new(1, INFINITY, NULL));
    /* no limiter: no limit */
    int64_t retry = -1;
    assert_int_equal(of_ratelimit_take(NULL, "k", 0, &retry), 1);
    assert_int_equal(retry, 0);
}

static void test_burst_then_limit(void **state)
{
    (void)state;
    of_ratelimit *rl = of_ratelimit_new(2, 3, NULL); /* 2/s, burst 3 */
    assert_non_null(rl);
    take_ok(rl, "principal:alice", 1000, 3);
    take_limited(rl, "principal:alice", 1000, 500); /* one token every 500ms */
    take_limited(rl, "principal:alice", 1100, 400);
    take_limited(rl, "principal:alice", 1499, 1);
    of_ratelimit_stats s;
    of_ratelimit_get_stats(rl, &s);
    assert_int_equal(s.allowed, 3);
    assert_int_equal(s.limited, 3);
    assert_int_equal(s.local, 6);
    assert_int_equal(s.shared, 0);
    assert_int_equal(s.fallbacks, 0);
    /* retry_after may be NULL */
    assert_int_equal(of_ratelimit_take(rl, "principal:alice", 1499, NULL), 0);
    of_ratelimit_free(rl);
}

static void test_refill(void **state)
{
    (void)state;
    of_ratelimit *rl = of_ratelimit_new(2, 3, NULL);
    take_ok(rl, "k", 0, 3);
    take_limited(rl, "k", 0, 500);
    take_ok(rl, "k", 500, 1); /* one token after 500ms */
    take_limited(rl, "k", 500, 500);
    take_ok(rl, "k", 1500, 2); /* two after another second */
    take_limited(rl, "k", 1500, 500);
    /* a long pause fills the bucket up to the burst, not beyond */
    take_ok(rl, "k", 100000, 3);
    take_limited(rl, "k", 100000, 500);
    /* partial tokens add up: 250ms is half a token, twice is one */
    take_limited(rl, "k", 100250, 250);
    take_ok(rl, "k", 100500, 1);
    /* a clock going backwards neither refills nor breaks anything */
    take_limited(rl, "k", 50000, 500);
    take_ok(rl, "k", 101000, 1);
    of_ratelimit_free(rl);
}

static void test_retry_after(void **state)
{
    (void)state;
    /* one token every 2 s, burst 1 */
    of_ratelimit *rl = of_ratelimit_new(0.5, 1, NULL);
    take_ok(rl, "addr:192.0.2.1", 10000, 1);
    take_limited(rl, "addr:192.0.2.1", 10000, 2000);
    take_limited(rl, "addr:192.0.2.1", 10500, 1500);
    take_limited(rl, "addr:192.0.2.1", 11999, 1);
    take_ok(rl, "addr:192.0.2.1", 12000, 1); /* exactly when retry_after said */
    of_ratelimit_free(rl);

    /* a rate that is not a round number: the retry is rounded up, never down */
    rl = of_ratelimit_new(3, 1, NULL); /* a token every 333.33ms */
    take_ok(rl, "k", 0, 1);
    take_limited(rl, "k", 0, 334);
    take_limited(rl, "k", 333, 1);
    take_ok(rl, "k", 334, 1);
    of_ratelimit_free(rl);

    /* a fast rate with a fractional burst */
    rl = of_ratelimit_new(1000, 2.5, NULL);
    take_ok(rl, "k", 0, 2);
    take_limited(rl, "k", 0, 1);
    take_ok(rl, "k", 1, 1);
    of_ratelimit_free(rl);
}

static void test_keys_independent(void **state)
{
    (void)state;
    of_ratelimit *rl = of_ratelimit_new(1, 2, NULL);
    take_ok(rl, "principal:alice", 0, 2);
    take_limited(rl, "principal:alice", 0, 1000);
    take_ok(rl, "principal:bob", 0, 2);
    take_limited(rl, "principal:bob", 0, 1000);
    take_ok(rl, "addr:192.0.2.1", 0, 2);
    take_ok(rl, "", 0, 2);
    take_limited(rl, NULL, 0, 1000); /* NULL is "" */
    take_limited(rl, "principal:alice", 0, 1000);

    /* long keys (stored as digests) stay apart, and the same long key is one bucket */
    char a[1000], b[1000];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(a));
    b[sizeof(b) - 2] = 'y';
    take_ok(rl, a, 0, 2);
    take_limited(rl, a, 0, 1000);
    take_ok(rl, b, 0, 2);
    take_limited(rl, b, 0, 1000);
    of_ratelimit_stats s;
    of_ratelimit_get_stats(rl, &s);
    assert_int_equal(s.buckets, 6);
    of_ratelimit_free(rl);
}

static void test_eviction_bound(void **state)
{
    (void)state;
    of_ratelimit *rl = of_ratelimit_new(1, 5, NULL);
    of_ratelimit_set_max_buckets(rl, 100);
    /* a limited key, then a flood of distinct keys at the same moment */
    take_ok(rl, "victim", 0, 5);
    take_limited(rl, "victim", 0, 1000);
    char key[64];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "addr:flood-%d", i);
        assert_int_equal(of_ratelimit_take(rl, key, 0, NULL), 1);
        of_ratelimit_stats s;
        of_ratelimit_get_stats(rl, &s);
        if (s.buckets > 100)
            fail_msg("%zu buckets after %d keys; the bound is 100", s.buckets, i + 1);
    }
    of_ratelimit_stats s;
    of_ratelimit_get_stats(rl, &s);
    assert_int_equal(s.buckets, 100);
    assert_true(s.evicted >= 20000 - 100);
    /* the most recent keys are still there: their second take finds the used bucket */
    assert_int_equal(of_ratelimit_take(rl, "addr:flood-19999", 0, NULL), 1);
    int64_t retry;
    for (int i = 0; i < 3; i++)
        assert_int_equal(of_ratelimit_take(rl, "addr:flood-19999", 0, &retry), 1);
    take_limited(rl, "addr:flood-19999", 0, 1000);

    /* once time has passed, full (idle) buckets are dropped as they are met */
    for (int i = 0; i < 200; i++)
        of_ratelimit_take(rl, "active", 100000 + i, NULL);
    uint64_t evicted_before = s.evicted;
    of_ratelimit_get_stats(rl, &s);
    assert_int_equal(s.buckets, 1);              /* only "active", which is still refilling */
    assert_int_equal(s.evicted, evicted_before); /* dropping idle buckets is no eviction */
    /* 300 new keys in a table of 100: "active" is full again by then and simply dropped; 200
     * of the new ones are evicted while refilling */
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "later-%d", i);
        of_ratelimit_take(rl, key, 200000, NULL);
    }
    of_ratelimit_get_stats(rl, &s);
    assert_int_equal(s.buckets, 100);
    assert_int_equal(s.evicted - evicted_before, 200);
    of_ratelimit_free(rl);
}

typedef struct take_arg {
    of_ratelimit *rl;
    int n, allowed;
} take_arg;

static void *take_thread(void *p)
{
    take_arg *a = p;
    for (int i = 0; i < a->n; i++)
        a->allowed += of_ratelimit_take(a->rl, "shared-key", 5000, NULL);
    return NULL;
}

static void test_local_threads(void **state)
{
    (void)state;
    of_ratelimit *rl = of_ratelimit_new(1, 100, NULL);
    enum { THREADS = 8, EACH = 200 };
    pthread_t t[THREADS];
    take_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (take_arg){.rl = rl, .n = EACH};
        assert_int_equal(pthread_create(&t[i], NULL, take_thread, &a[i]), 0);
    }
    int allowed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        allowed += a[i].allowed;
    }
    assert_int_equal(allowed, 100); /* exactly the burst, not a token more */
    of_ratelimit_free(rl);
}

/* ---- shared through Redis --------------------------------------------------------------- */

static of_cache_pool *shared_pool(of_redis_config *cfg, const char *prefix)
{
    rf_config(cfg, rf_host(), rf_port(), prefix);
    of_cache_pool *p = of_cache_pool_new(cfg, NULL);
    assert_non_null(p);
    return p;
}

static void test_shared_one_bucket(void **state)
{
    (void)state;
    char prefix[128];
    rf_unique_prefix(prefix, sizeof(prefix), "rl");
    of_redis_config c1, c2;
    /* two pools, as two hosts would have */
    of_cache_pool *p1 = shared_pool(&c1, prefix), *p2 = shared_pool(&c2, prefix);
    /* 0.001/s: nothing refills during the test */
    of_ratelimit *a = of_ratelimit_new(0.001, 3, p1), *b = of_ratelimit_new(0.001, 3, p2);
    assert_non_null(a);
    assert_non_null(b);

    /* the limiters' own clocks disagree wildly: Redis's clock is the one used */
    int64_t retry = -1;
    assert_int_equal(of_ratelimit_take(a, "principal:alice", 1, &retry), 1);
    assert_int_equal(retry, 0);
    assert_int_equal(of_ratelimit_take(b, "principal:alice", 999999999, &retry), 1);
    assert_int_equal(of_ratelimit_take(a, "principal:alice", 5, &retry), 1);
    /* three tokens between them: both are limited now */
    assert_int_equal(of_ratelimit_take(b, "principal:alice", 0, &retry), 0);
    assert_in_range(retry, 900000, 1000000); /* a token every 1000 s */
    assert_int_equal(of_ratelimit_take(a, "principal:alice", 0, &retry), 0);
    assert_in_range(retry, 900000, 1000000);
    /* another key is another bucket */
    assert_int_equal(of_ratelimit_take(b, "principal:bob", 0, &retry), 1);

    of_ratelimit_stats s;
    of_ratelimit_get_stats(a, &s);
    assert_int_equal(s.shared, 3);
    assert_int_equal(s.local, 0);
    assert_int_equal(s.buckets, 0);
    of_ratelimit_get_stats(b, &s);
    assert_int_equal(s.shared, 3);
    assert_int_equal(s.allowed, 2);
    assert_int_equal(s.limited, 1);

    /* the bucket is a hash under the prefix that expires when it would be full again */
    redisContext *c = rf_connect();
    assert_non_null(c);
    redisReply *r = redisCommand(c, "PTTL %sratelimit:principal:alice", prefix);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > 3000000 && r->integer <= 3001000); /* burst / rate + 1 s */
    freeReplyObject(r);
    r = redisCommand(c, "DEL %sratelimit:principal:alice %sratelimit:principal:bob", prefix,
                     prefix);
    freeReplyObject(r);
    redisFree(c);

    of_ratelimit_free(a);
    of_ratelimit_free(b);
    of_cache_pool_free(p1);
    of_cache_pool_free(p2);
    of_redis_config_free(&c1);
    of_redis_config_free(&c2);
}

static void test_shared_refill(void **state)
{
    (void)state;
    char prefix[128];
    rf_unique_prefix(prefix, sizeof(prefix), "rlr");
    of_redis_config cfg;
    of_cache_pool *p = shared_pool(&cfg, prefix);
    of_ratelimit *rl = of_ratelimit_new(20, 1, p); /* a token every 50 ms */
    int64_t retry = -1;
    assert_int_equal(of_ratelimit_take(rl, "k", 0, &retry), 1);
    assert_int_equal(of_ratelimit_take(rl, "k", 0, &retry), 0);
    assert_in_range(retry, 1, 50);
    /* Redis's clock refills it: poll with a bounded wait */
    int64_t start = of_mono_ms();
    int rc = 0;
    while ((rc = of_ratelimit_take(rl, "k", 0, &retry)) == 0 && of_mono_ms() - start < 3000)
        rf_sleep_ms(10);
    assert_int_equal(rc, 1);
    of_ratelimit_stats s;
    of_ratelimit_get_stats(rl, &s);
    assert_int_equal(s.local, 0);
    of_ratelimit_free(rl);
    of_cache_pool_free(p);
    of_redis_config_free(&cfg);
}

static void test_fallback_when_unreachable(void **state)
{
    (void)state;
    of_redis_config cfg;
    rf_config(&cfg, "127.0.0.1", 1, "oftest:"); /* nothing listens on port 1 */
    of_cache_pool *p = of_cache_pool_new(&cfg, NULL);
    of_ratelimit *rl = of_ratelimit_new(2, 2, p);
    /* the local buckets decide, with the caller's clock */
    take_ok(rl, "principal:alice", 0, 2);
    take_limited(rl, "principal:alice", 0, 500);
    take_ok(rl, "principal:alice", 500, 1);
    of_ratelimit_stats s;
    of_ratelimit_get_stats(rl, &s);
    assert_int_equal(s.shared, 0);
    assert_int_equal(s.local, 4);
    assert_int_equal(s.fallbacks, 4);
    assert_int_equal(of_cache_pool_is_down(p), 1);
    of_ratelimit_free(rl);
    of_cache_pool_free(p);
    of_redis_config_free(&cfg);
}

static void test_fallback_and_back(void **state)
{
    (void)state;
    rf_private srv = {0};
    assert_int_equal(rf_private_start(&srv), 0);
    of_redis_config cfg;
    rf_config(&cfg, "127.0.0.1", srv.port, "oftest:rl:");
    of_cache_pool *p = of_cache_pool_new(&cfg, NULL);
    of_ratelimit *rl = of_ratelimit_new(0.001, 2, p);
    assert_int_equal(of_ratelimit_take(rl, "k", 0, NULL), 1);
    of_ratelimit_stats s;
    of_ratelimit_get_stats(rl, &s);
    assert_int_equal(s.shared, 1);

    /* Redis goes away: local buckets (a fresh one: burst 2) */
    rf_private_stop(&srv);
    assert_int_equal(of_ratelimit_take(rl, "k", 0, NULL), 1);
    assert_int_equal(of_ratelimit_take(rl, "k", 0, NULL), 1);
    assert_int_equal(of_ratelimit_take(rl, "k", 0, NULL), 0);
    of_ratelimit_get_stats(rl, &s);
    assert_int_equal(s.shared, 1);
    assert_int_equal(s.fallbacks, 3);

    /* back (an empty Redis without the script: EVALSHA, then EVAL): shared again */
    assert_int_equal(rf_private_start(&srv), 0);
    int64_t start = of_mono_ms();
    while (of_cache_ping(p) != 0 && of_mono_ms() - start < 5000)
        rf_sleep_ms(50);
    assert_int_equal(of_ratelimit_take(rl, "k", 0, NULL), 1);
    assert_int_equal(of_ratelimit_take(rl, "k", 0, NULL), 1);
    int64_t retry = 0;
    assert_int_equal(of_ratelimit_take(rl, "k", 0, &retry), 0);
    assert_in_range(retry, 900000, 1000000);
    of_ratelimit_get_stats(rl, &s);
    assert_int_equal(s.shared, 4);

    of_ratelimit_free(rl);
    of_cache_pool_free(p);
    of_redis_config_free(&cfg);
    rf_private_stop(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_burst_then_limit),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_keys_independent),
        cmocka_unit_test(test_eviction_bound),
        cmocka_unit_test(test_local_threads),
        cmocka_unit_test(test_shared_one_bucket),
        cmocka_unit_test(test_shared_refill),
        cmocka_unit_test(test_fallback_when_unreachable),
        cmocka_unit_test(test_fallback_and_back),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
