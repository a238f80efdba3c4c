/* The Kafka bus against librdkafka's in-process mock cluster: a two-stage pipeline end to end
 * with per-key order, faults the real broker cannot be made to produce on demand (a broker
 * going down and coming back, produce and offset-commit requests failing), and readiness. No
 * timing assertions: each wait is bounded and fails the test when it runs out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bus.h"
#include "hostconfig.h"
#include "log.h"
#include "metrics.h"
#include "runner.h"
#include "tpipe.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Kafka protocol API keys (rdkafka_protocol.h is not installed). */
#define API_PRODUCE       0
#define API_OFFSET_COMMIT 8
#define API_SYNC_GROUP    14

#define KEYS 8

static rd_kafka_t *g_mock_owner;
static rd_kafka_mock_cluster_t *g_mock;
static of_kafka_config g_kc;
static const of_host_api *g_api;

/* What the recording stage saw, per key, in order. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_seen[KEYS][4096];
static int g_n_seen[KEYS];
static int g_total;

static void reset_seen(void)
{
    pthread_mutex_lock(&g_mu);
    memset(g_n_seen, 0, sizeof(g_n_seen));
    g_total = 0;
    pthread_mutex_unlock(&g_mu);
}

static int forward_init(of_stage *stage, const of_host_api *api, const of_config *cfg, void **inst,
                        char *errstr, size_t errstr_size)
{
    (void)stage;
    (void)cfg;
    (void)inst;
    (void)errstr;
    (void)errstr_size;
    g_api = api;
    return 0;
}

static of_status forward_process(void *inst, of_call *call)
{
    (void)inst;
    size_t len;
    const char *p = g_api->event_payload(call, &len);
    return g_api->emit(call, "out", NULL, 0, p, len, NULL, 0) == 0 ? OF_OK : OF_RETRY;
}

static of_status record_process(void *inst, of_call *call)
{
    (void)inst;
    size_t len;
    const char *p = g_api->event_payload(call, &len);
    int key, seq;
    if (sscanf(p, "%d:%d", &key, &seq) != 2 || key < 0 || key >= KEYS)
        return OF_REJECT;
    pthread_mutex_lock(&g_mu);
    if (g_n_seen[key] < 4096)
        g_seen[key][g_n_seen[key]++] = seq;
    g_total++;
    pthread_mutex_unlock(&g_mu);
    return OF_OK;
}

static const char *const out_outputs[] = {"out", NULL};

static const of_stage_descriptor forward_desc = {
    OF_DESCRIPTOR_HEADER,   .name = "forward",    .version = "1",
    .outputs = out_outputs, .init = forward_init, .process = forward_process,
};

static const of_stage_descriptor record_desc = {
    OF_DESCRIPTOR_HEADER, .name = "record",          .version = "1",
    .init = forward_init, .process = record_process,
};

static int setup(void **state)
{
    (void)state;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    g_mock_owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!g_mock_owner)
        fail_msg("mock owner: %s", err);
    g_mock = rd_kafka_mock_cluster_new(g_mock_owner, 1);
    assert_non_null(g_mock);
    memset(&g_kc, 0, sizeof(g_kc));
    g_kc.bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(g_mock));
    /* Short timeouts so a rebalance or reconnection does not dominate the test's time. */
    static of_kv props[] = {
        {(char *)"session.timeout.ms", (char *)"6000"},
        {(char *)"heartbeat.interval.ms", (char *)"500"},
        {(char *)"reconnect.backoff.max.ms", (char *)"500"},
        {(char *)"topic.metadata.refresh.interval.ms", (char *)"1000"},
    };
    g_kc.properties = props;
    g_kc.n_properties = sizeof(props) / sizeof(props[0]);
    of_log_set_level(OF_LVL_WARN);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rd_kafka_mock_cluster_destroy(g_mock);
    rd_kafka_destroy(g_mock_owner);
    free(g_kc.bootstrap);
    return 0;
}

typedef struct kenv {
    of_bus *bus;
    of_metrics *metrics;
    of_runner *runner;
    tpipe t;
} kenv;

/* in -> forward (2 workers) -> mid -> record (3 workers), topics with 4 partitions. */
static void kenv_start(kenv *e, const char *prefix)
{
    char err[512];
    static char names[4][64];
    snprintf(names[0], sizeof(names[0]), "%s.in", prefix);
    snprintf(names[1], sizeof(names[1]), "%s.mid", prefix);
    snprintf(names[2], sizeof(names[2]), "%s.in.dlq", prefix);
    snprintf(names[3], sizeof(names[3]), "%s.mid.dlq", prefix);
    /* The mock cluster has no controller for CreateTopics; the bus finds them existing. */
    for (int i = 0; i < 4; i++)
        rd_kafka_mock_topic_create(g_mock, names[i], i < 2 ? 4 : 1, 1);
    e->bus = of_kafkabus_new(&g_kc, err, sizeof(err));
    if (!e->bus)
        fail_msg("kafka bus: %s", err);
    e->metrics = of_metrics_new();
    e->runner = of_runner_new(e->bus, e->metrics);
    tp_init(&e->t, prefix);
    tp_topic(&e->t, names[0], 4);
    tp_topic(&e->t, names[1], 4);
    of_stage_def *a = tp_stage(&e->t, "forward", &forward_desc, names[0], names[2]);
    a->concurrency = 2;
    tp_map(a, "out", names[1]);
    of_stage_def *b = tp_stage(&e->t, "record", &record_desc, names[1], names[3]);
    b->concurrency = 3;
    if (of_runner_add_pipeline(e->runner, &e->t.p, err, sizeof(err)) != 0)
        fail_msg("add_pipeline: %s", err);
    if (of_runner_start(e->runner, err, sizeof(err)) != 0)
        fail_msg("start: %s", err);
}

static void kenv_stop(kenv *e)
{
    of_runner_drain(e->runner, 10000);
    of_runner_free(e->runner);
    e->bus->ops->destroy(e->bus);
    of_metrics_free(e->metrics);
}

static void produce_seq(of_bus *bus, const char *topic, int from, int to)
{
    char err[256], key[16], payload[32];
    for (int seq = from; seq < to; seq++) {
        for (int k = 0; k < KEYS; k++) {
            snprintf(key, sizeof(key), "key-%d", k);
            int n = snprintf(payload, sizeof(payload), "%d:%d", k, seq);
            of_event *ev = of_event_new(key, strlen(key), payload, (size_t)n);
            assert_non_null(ev);
            if (bus->ops->produce(bus, topic, ev, NULL, NULL, err, sizeof(err)) != 0)
                fail_msg("produce: %s", err);
            of_event_free(ev);
        }
    }
}

static int wait_total(int want, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        pthread_mutex_lock(&g_mu);
        int total = g_total;
        pthread_mutex_unlock(&g_mu);
        if (total >= want)
            return total;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&g_mu);
    int total = g_total;
    pthread_mutex_unlock(&g_mu);
    return total;
}

/* Every key's sequence numbers 0..n-1 arrived, in order (repeats allowed: at-least-once). */
static void assert_all_in_order(int n)
{
    pthread_mutex_lock(&g_mu);
    for (int k = 0; k < KEYS; k++) {
        int expect = 0;
        for (int i = 0; i < g_n_seen[k]; i++) {
            int seq = g_seen[k][i];
            if (seq == expect)
                expect++;
            else if (seq > expect)
                fail_msg("key %d: got seq %d before %d (out of order)", k, seq, expect);
        }
        if (expect != n)
            fail_msg("key %d: only %d of %d events arrived", k, expect, n);
    }
    pthread_mutex_unlock(&g_mu);
}

static int wait_ready(of_bus *bus, int want, int timeout_ms)
{
    char why[256];
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        if (bus->ops->ready(bus, why, sizeof(why)) == want)
            return 1;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static void test_end_to_end_in_key_order(void **state)
{
    (void)state;
    reset_seen();
    kenv e;
    kenv_start(&e, "e2e");
    produce_seq(e.bus, "e2e.in", 0, 50);
    assert_int_equal(wait_total(50 * KEYS, 60000), 50 * KEYS);
    assert_all_in_order(50);
    assert_true(wait_ready(e.bus, 1, 10000));
    kenv_stop(&e);
}

static void test_broker_down_and_back(void **state)
{
    (void)state;
    reset_seen();
    kenv e;
    kenv_start(&e, "down");
    produce_seq(e.bus, "down.in", 0, 10);
    assert_int_equal(wait_total(10 * KEYS, 60000), 10 * KEYS);
    assert_true(wait_ready(e.bus, 1, 10000));

    rd_kafka_mock_broker_set_down(g_mock, 1);
    assert_true(wait_ready(e.bus, 0, 20000)); /* reported, not crashed */
    /* Produced while the broker is away: queued by the producer, delivered once it is back. */
    produce_seq(e.bus, "down.in", 10, 20);
    rd_kafka_mock_broker_set_up(g_mock, 1);
    assert_true(wait_ready(e.bus, 1, 20000));
    assert_true(wait_total(20 * KEYS, 90000) >= 20 * KEYS);
    assert_all_in_order(20);
    kenv_stop(&e);
}

static void test_produce_errors_are_retried(void **state)
{
    (void)state;
    reset_seen();
    kenv e;
    kenv_start(&e, "perr");
    /* The next produce requests fail with retriable errors; the idempotent producer retries
     * them without reordering or duplicating. */
    rd_kafka_mock_push_request_errors(
        g_mock, API_PRODUCE, 4, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
    produce_seq(e.bus, "perr.in", 0, 20);
    assert_true(wait_total(20 * KEYS, 60000) >= 20 * KEYS);
    assert_all_in_order(20);
    kenv_stop(&e);
}

static void test_commit_errors_do_not_lose_events(void **state)
{
    (void)state;
    reset_seen();
    kenv e;
    kenv_start(&e, "cerr");
    rd_kafka_mock_push_request_errors(
        g_mock, API_OFFSET_COMMIT, 6, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE);
    produce_seq(e.bus, "cerr.in", 0, 20);
    assert_true(wait_total(20 * KEYS, 60000) >= 20 * KEYS);
    /* The background commits (every 200 ms, from both groups) use up the six failures within
     * this pause; a commit that still failed at close would rightly mean redelivery, which is
     * not what this test is about. 3 s was once too short under ctest -j2 (a coordinator
     * lookup's backoff after COORDINATOR_NOT_AVAILABLE: "Waiting for coordinator" at close). */
    struct timespec pause = {8, 0};
    nanosleep(&pause, NULL);
    kenv_stop(&e);

    /* A restart reads from the committed offsets: the commits got through in the end, so
     * nothing before them is read again, and what follows arrives. */
    reset_seen();
    kenv_start(&e, "cerr");
    produce_seq(e.bus, "cerr.in", 20, 25);
    assert_true(wait_total(5 * KEYS, 60000) >= 5 * KEYS);
    pthread_mutex_lock(&g_mu);
    for (int k = 0; k < KEYS; k++)
        for (int i = 0; i < g_n_seen[k]; i++)
            if (g_seen[k][i] < 20)
                fail_msg("key %d: seq %d read again after a clean stop", k, g_seen[k][i]);
    pthread_mutex_unlock(&g_mu);
    kenv_stop(&e);
}

static void count_assigned(void *opaque, const char *topic, int32_t partition)
{
    (void)topic;
    (void)partition;
    atomic_fetch_add((_Atomic int *)opaque, 1);
}

/* A consumer closed after joining its group but before its first assignment: a host stopped
 * while its groups rebalance. librdkafka before 2.3.0 aborts the process when such a consumer
 * is destroyed (confluentinc/librdkafka#4312); the bus waits for the assignment first. The
 * mock coordinator answers the first JoinGroup after 3 s; the SyncGroup's answer is held back 4 s
 * more, and the consumer is closed in between. */
static void test_close_before_first_assignment(void **state)
{
    (void)state;
    char err[512];
    rd_kafka_mock_topic_create(g_mock, "early.in", 2, 1);
    of_bus *bus = of_kafkabus_new(&g_kc, err, sizeof(err));
    if (!bus)
        fail_msg("kafka bus: %s", err);
    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(g_mock, 1, API_SYNC_GROUP, 1,
                                                                  RD_KAFKA_RESP_ERR_NO_ERROR, 4000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    _Atomic int assigned = 0;
    of_consumer_hooks hooks = {.assigned = count_assigned, .opaque = (void *)&assigned};
    const char *topics[] = {"early.in"};
    of_consumer *c = bus->ops->subscribe(bus, "early", topics, 1, &hooks, err, sizeof(err));
    if (!c)
        fail_msg("subscribe: %s", err);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        of_event *ev = NULL;
        bus->ops->poll(c, &ev, 100);
        of_event_free(ev);
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= 4500)
            break;
    }
    assert_int_equal(atomic_load(&assigned), 0); /* joined, its SyncGroup still unanswered */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bus->ops->consumer_close(c); /* aborted here without the wait */
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long waited = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (rd_kafka_version() < 0x020300ff && atomic_load(&assigned) != 2) {
        /* Under load (ctest -j2) the mock's answers once came so late that no assignment arrived
         * within the bus's bound: then it must have waited all of it and left the consumer
         * undestroyed (its warning), not destroyed it. */
        print_message("no assignment after %ld ms of waiting\n", waited);
        assert_int_equal(atomic_load(&assigned), 0);
        assert_true(waited >= 9900);
    }
    bus->ops->destroy(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* First: no other consumer of the mock cluster is still leaving a group then, whose
         * late SyncGroup could take the delay meant for this one's (it failed once that way
         * under ctest -j2, its assignment arriving within 4.5 s). */
        cmocka_unit_test(test_close_before_first_assignment),
        cmocka_unit_test(test_end_to_end_in_key_order),
        cmocka_unit_test(test_broker_down_and_back),
        cmocka_unit_test(test_produce_errors_are_retried),
        cmocka_unit_test(test_commit_errors_do_not_lose_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
