/* The embedded bus: Kafka's murmur2 and partitioner, produce/poll/commit, positions, pause,
 * wakeup, trimming, keyless round-robin, idle detection, one consumer per group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bus.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static of_bus *new_bus_with(const char *topic, int partitions)
{
    of_bus *bus = of_membus_new();
    assert_non_null(bus);
    char err[256];
    assert_int_equal(bus->ops->ensure_topic(bus, topic, partitions, 1, err, sizeof(err)), 0);
    return bus;
}

static void produce_kv(of_bus *bus, const char *topic, const char *key, const char *payload)
{
    of_event *ev = of_event_new(key, key ? strlen(key) : 0, payload, strlen(payload));
    assert_non_null(ev);
    char err[256];
    assert_int_equal(bus->ops->produce(bus, topic, ev, NULL, NULL, err, sizeof(err)), 0);
    of_event_free(ev);
}

static of_consumer *sub1(of_bus *bus, const char *group, const char *topic)
{
    const char *topics[] = {topic};
    char err[256] = "";
    of_consumer *c = bus->ops->subscribe(bus, group, topics, 1, NULL, err, sizeof(err));
    if (!c)
        fail_msg("subscribe: %s", err);
    return c;
}

/* Joins a thread, failing the test if it does not end within 10 s. */
static void join_bounded(pthread_t t)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    int rc = pthread_timedjoin_np(t, NULL, &ts);
    if (rc != 0)
        fail_msg("thread did not finish within 10 s");
}

/* ---- murmur2 ---------------------------------------------------------------------------- */

static void test_murmur2_kafka_vectors(void **state)
{
    (void)state;
    /* org.apache.kafka.common.utils.UtilsTest#testMurmur2 and librdkafka's rdmurmur2 cases. */
    static const struct {
        const char *key;
        int32_t java;
    } cases[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
        {"kafka", (int32_t)0xd067cf64u},
        {"1", -1993445489},
        {"12", 126087238},
        {"123", -267702483},
        {"1234", -1614185708},
        {"12345", -1188365604},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t h = of_murmur2(cases[i].key, strlen(cases[i].key));
        if ((int32_t)h != cases[i].java)
            fail_msg("murmur2('%s') = %d, Kafka says %d", cases[i].key, (int32_t)h, cases[i].java);
    }
}

static int32_t g_seen_partition;
static int remember_partition(const of_event *ev, void *opaque)
{
    (void)opaque;
    g_seen_partition = ev->partition;
    return 0;
}

static void test_partition_like_kafka(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("t", 7);
    static const char *keys[] = {"21", "foobar", "abc", "kafka", "12345"};
    static const int32_t java[] = {-973932308, -790332482, 479470107, (int32_t)0xd067cf64u,
                                   -1188365604};
    for (size_t i = 0; i < 5; i++) {
        char err[64];
        bus->ops->destroy(bus);
        bus = of_membus_new();
        assert_int_equal(bus->ops->ensure_topic(bus, "t", 7, 1, err, sizeof(err)), 0);
        produce_kv(bus, "t", keys[i], "x");
        g_seen_partition = -1;
        assert_int_equal(of_membus_read_topic(bus, "t", remember_partition, NULL), 1);
        /* Utils.toPositive(murmur2(key)) % numPartitions */
        int32_t expected = (int32_t)(((uint32_t)java[i] & 0x7fffffffu) % 7u);
        assert_int_equal(g_seen_partition, expected);
    }
    bus->ops->destroy(bus);
}

/* ---- produce / poll / commit ------------------------------------------------------------ */

static int g_cb_calls, g_cb_err;
static void count_cb(void *opaque, int err, const char *errstr)
{
    (void)errstr;
    assert_ptr_equal(opaque, &g_cb_calls);
    g_cb_calls++;
    g_cb_err |= err;
}

static void test_produce_poll_commit_positions(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("orders", 1);
    char err[256];
    g_cb_calls = g_cb_err = 0;
    for (int i = 0; i < 3; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "p%d", i);
        of_event *ev = of_event_new("k", 1, payload, strlen(payload));
        assert_int_equal(of_event_add_header(ev, "h", "v", 1), 0);
        assert_int_equal(
            bus->ops->produce(bus, "orders", ev, count_cb, &g_cb_calls, err, sizeof(err)), 0);
        of_event_free(ev); /* the bus keeps its own copy */
    }
    assert_int_equal(g_cb_calls, 3); /* synchronous delivery */
    assert_int_equal(g_cb_err, 0);

    /* Group "other" joins (and leaves) first, so its position keeps 0 and 1 from the trim. */
    bus->ops->consumer_close(sub1(bus, "other", "orders"));
    of_consumer *c = sub1(bus, "g", "orders");
    for (int i = 0; i < 3; i++) {
        of_event *ev = NULL;
        assert_int_equal(bus->ops->poll(c, &ev, 1000), 1);
        char payload[16];
        snprintf(payload, sizeof(payload), "p%d", i);
        assert_string_equal(ev->payload, payload);
        assert_string_equal(ev->topic, "orders");
        assert_int_equal(ev->partition, 0);
        assert_int_equal(ev->offset, i);
        assert_string_equal(ev->key, "k");
        const of_event_header *h = of_event_header_get(ev, "h");
        assert_non_null(h);
        assert_string_equal(h->value, "v");
        of_event_free(ev);
    }
    of_event *ev = NULL;
    assert_int_equal(bus->ops->poll(c, &ev, 0), 0);
    assert_null(ev);

    /* Committed 2: a new consumer of the group starts at offset 2. */
    assert_int_equal(bus->ops->commit(c, "orders", 0, 2), 0);
    assert_int_equal(bus->ops->commit(c, "orders", 0, 1), 0);  /* never goes backwards */
    assert_int_equal(bus->ops->commit(c, "orders", 0, 4), -1); /* beyond the end */
    assert_int_equal(bus->ops->commit(c, "nope", 0, 1), -1);
    assert_int_equal(bus->ops->commit(c, "orders", 3, 1), -1);
    bus->ops->consumer_close(c);
    c = sub1(bus, "g", "orders");
    assert_int_equal(bus->ops->poll(c, &ev, 1000), 1);
    assert_int_equal(ev->offset, 2);
    of_event_free(ev);
    bus->ops->consumer_close(c);

    /* The other group starts at its committed offset: 0. */
    c = sub1(bus, "other", "orders");
    assert_int_equal(bus->ops->poll(c, &ev, 1000), 1);
    assert_int_equal(ev->offset, 0);
    of_event_free(ev);
    assert_int_equal(bus->ops->commit(c, "orders", 0, 3), 0);
    bus->ops->consumer_close(c);
    /* Both committed 2 or more: 0 and 1 are freed; a group that is new now starts at the
     * earliest event kept (offset 2), as Kafka's auto.offset.reset=earliest. */
    c = sub1(bus, "late", "orders");
    assert_int_equal(bus->ops->poll(c, &ev, 1000), 1);
    assert_int_equal(ev->offset, 2);
    of_event_free(ev);
    bus->ops->consumer_close(c);
    bus->ops->destroy(bus);
}

static void test_errors(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("t", 3);
    char err[256] = "";
    assert_int_equal(bus->ops->ensure_topic(bus, "bad", 0, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "partitions"));
    of_event *probe = of_event_new(NULL, 0, "x", 1);
    err[0] = '\0';
    assert_int_equal(bus->ops->produce(bus, "missing", probe, NULL, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "missing"));
    of_event_free(probe);
    const char *topics[] = {"missing"};
    assert_null(bus->ops->subscribe(bus, "g", topics, 1, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "missing"));
    bus->ops->destroy(bus);
}

static int max_partition_cb(const of_event *ev, void *opaque)
{
    int *max = opaque;
    if (ev->partition > *max)
        *max = ev->partition;
    return 0;
}

static void test_existing_topic_kept(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("t", 2);
    char err[64];
    assert_int_equal(bus->ops->ensure_topic(bus, "t", 8, 1, err, sizeof(err)), 0);
    for (int i = 0; i < 16; i++)
        produce_kv(bus, "t", NULL, "x");
    int max = -1;
    assert_int_equal(of_membus_read_topic(bus, "t", max_partition_cb, &max), 16);
    assert_int_equal(max, 1);
    bus->ops->destroy(bus);
}

static void test_keyless_round_robin_and_fair_poll(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("t", 3);
    for (int i = 0; i < 9; i++) {
        char p[8];
        snprintf(p, sizeof(p), "%d", i);
        produce_kv(bus, "t", NULL, p);
    }
    of_consumer *c = sub1(bus, "g", "t");
    /* Keyless events went 0,1,2,0,1,2,...; a fair poll visits partitions in turn. */
    int counts[3] = {0};
    int last = -1;
    for (int i = 0; i < 9; i++) {
        of_event *ev = NULL;
        assert_int_equal(bus->ops->poll(c, &ev, 1000), 1);
        assert_true(ev->partition >= 0 && ev->partition < 3);
        assert_int_not_equal(ev->partition, last);
        last = ev->partition;
        counts[ev->partition]++;
        /* Payload i was the i-th produced: partition i % 3, offset i / 3. */
        int n = atoi(ev->payload);
        assert_int_equal(n % 3, ev->partition);
        assert_int_equal(n / 3, ev->offset);
        of_event_free(ev);
    }
    assert_int_equal(counts[0], 3);
    assert_int_equal(counts[1], 3);
    assert_int_equal(counts[2], 3);
    bus->ops->consumer_close(c);
    bus->ops->destroy(bus);
}

static void test_fair_poll_with_backlog(void **state)
{
    (void)state;
    /* Partition 0 has a long backlog; partition 1 must not wait behind it. */
    of_bus *bus = new_bus_with("t", 2);
    int32_t p_of_a = (int32_t)((of_murmur2("a", 1) & 0x7fffffffu) % 2u);
    const char *other = NULL;
    static const char *cands[] = {"b", "c", "d", "e", "f", "g", "h"};
    for (size_t i = 0; i < 7 && !other; i++)
        if ((int32_t)((of_murmur2(cands[i], 1) & 0x7fffffffu) % 2u) != p_of_a)
            other = cands[i];
    assert_non_null(other);
    for (int i = 0; i < 50; i++)
        produce_kv(bus, "t", "a", "backlog");
    produce_kv(bus, "t", other, "other");
    of_consumer *c = sub1(bus, "g", "t");
    int found_at = -1;
    for (int i = 0; i < 51; i++) {
        of_event *ev = NULL;
        assert_int_equal(bus->ops->poll(c, &ev, 1000), 1);
        if (strcmp(ev->payload, "other") == 0)
            found_at = i;
        of_event_free(ev);
    }
    assert_true(found_at >= 0 && found_at <= 1);
    bus->ops->consumer_close(c);
    bus->ops->destroy(bus);
}

static void test_pause_resume(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("t", 1);
    produce_kv(bus, "t", "k", "x");
    of_consumer *c = sub1(bus, "g", "t");
    bus->ops->pause(c);
    of_event *ev = NULL;
    assert_int_equal(bus->ops->poll(c, &ev, 0), 0);
    assert_int_equal(bus->ops->poll(c, &ev, 20), 0);
    assert_null(ev);
    bus->ops->resume(c);
    assert_int_equal(bus->ops->poll(c, &ev, 1000), 1);
    assert_int_equal(ev->offset, 0);
    of_event_free(ev);
    bus->ops->consumer_close(c);
    bus->ops->destroy(bus);
}

typedef struct poll_arg {
    of_bus *bus;
    of_consumer *c;
    int rc;
    of_event *ev;
} poll_arg;

static void *poll_forever(void *p)
{
    poll_arg *a = p;
    a->rc = a->bus->ops->poll(a->c, &a->ev, -1);
    return NULL;
}

static void test_wakeup_interrupts_poll(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("t", 1);
    of_consumer *c = sub1(bus, "g", "t");
    poll_arg a = {bus, c, -5, NULL};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, poll_forever, &a), 0);
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    bus->ops->wakeup(c);
    join_bounded(t); /* a poll without deadline ends only through wakeup */
    assert_int_equal(a.rc, 0);
    assert_null(a.ev);

    /* A produce wakes a blocked poll with the event. */
    a.rc = -5;
    assert_int_equal(pthread_create(&t, NULL, poll_forever, &a), 0);
    nanosleep(&ts, NULL);
    produce_kv(bus, "t", "k", "hello");
    join_bounded(t);
    assert_int_equal(a.rc, 1);
    assert_string_equal(a.ev->payload, "hello");
    of_event_free(a.ev);
    bus->ops->consumer_close(c);
    bus->ops->destroy(bus);
}

static int count_cb_visit(const of_event *ev, void *opaque)
{
    (void)ev;
    (*(size_t *)opaque)++;
    return 0;
}

static size_t topic_size(of_bus *bus, const char *topic)
{
    size_t n = 0;
    size_t visited = of_membus_read_topic(bus, topic, count_cb_visit, &n);
    assert_int_equal(visited, n);
    return n;
}

static void test_trim_after_all_groups_commit(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("in", 1);
    char err[64];
    assert_int_equal(bus->ops->ensure_topic(bus, "out", 1, 1, err, sizeof(err)), 0);
    for (int i = 0; i < 100; i++) {
        produce_kv(bus, "in", "k", "x");
        produce_kv(bus, "out", "k", "y");
    }
    of_consumer *a = sub1(bus, "a", "in");
    of_consumer *b = sub1(bus, "b", "in");
    for (int i = 0; i < 100; i++) {
        of_event *ev;
        assert_int_equal(bus->ops->poll(a, &ev, 1000), 1);
        of_event_free(ev);
    }
    assert_int_equal(bus->ops->commit(a, "in", 0, 100), 0);
    assert_int_equal(topic_size(bus, "in"), 100); /* b has not committed */
    assert_int_equal(bus->ops->commit(b, "in", 0, 60), 0);
    assert_int_equal(topic_size(bus, "in"), 40);
    /* Offsets survive the trim: b reads on at 60. */
    of_event *ev;
    assert_int_equal(bus->ops->poll(b, &ev, 1000), 1);
    assert_int_equal(ev->offset, 60);
    of_event_free(ev);
    assert_int_equal(bus->ops->commit(b, "in", 0, 100), 0);
    assert_int_equal(topic_size(bus, "in"), 0);
    /* A topic no group reads keeps everything. */
    assert_int_equal(topic_size(bus, "out"), 100);
    /* New events after a full trim get the next offsets. */
    produce_kv(bus, "in", "k", "z");
    assert_int_equal(bus->ops->poll(a, &ev, 1000), 1);
    assert_int_equal(ev->offset, 100);
    of_event_free(ev);
    bus->ops->consumer_close(a);
    bus->ops->consumer_close(b);
    bus->ops->destroy(bus);
}

static void test_retain_keeps_committed_events(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("mid", 2);
    of_membus_set_retain(bus, 1);
    for (int i = 0; i < 10; i++)
        produce_kv(bus, "mid", NULL, "x");
    of_consumer *c = sub1(bus, "g", "mid");
    of_event *ev;
    while (bus->ops->poll(c, &ev, 0) == 1) {
        assert_int_equal(bus->ops->commit(c, ev->topic, ev->partition, ev->offset + 1), 0);
        of_event_free(ev);
    }
    assert_int_equal(of_membus_wait_idle(bus, 0), 1);
    assert_int_equal(topic_size(bus, "mid"), 10); /* consumed and committed, still readable */
    bus->ops->consumer_close(c);
    bus->ops->destroy(bus);
}

static void test_second_subscriber_refused(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("t", 2);
    of_consumer *c = sub1(bus, "g", "t");
    const char *topics[] = {"t"};
    char err[256] = "";
    assert_null(bus->ops->subscribe(bus, "g", topics, 1, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "g"));
    bus->ops->consumer_close(c);
    c = bus->ops->subscribe(bus, "g", topics, 1, NULL, err, sizeof(err));
    assert_non_null(c);
    bus->ops->consumer_close(c);
    bus->ops->destroy(bus);
}

typedef struct commit_later {
    of_bus *bus;
    of_consumer *c;
} commit_later;

static void *drain_and_commit(void *p)
{
    commit_later *a = p;
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    of_event *ev;
    while (a->bus->ops->poll(a->c, &ev, 0) == 1) {
        a->bus->ops->commit(a->c, ev->topic, ev->partition, ev->offset + 1);
        of_event_free(ev);
    }
    return NULL;
}

static void test_idle_detection(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("t", 2);
    assert_int_equal(of_membus_wait_idle(bus, 0), 1); /* no groups */
    produce_kv(bus, "t", "a", "1");
    assert_int_equal(of_membus_wait_idle(bus, 0), 1); /* nobody reads t */
    of_consumer *c = sub1(bus, "g", "t");
    assert_int_equal(of_membus_wait_idle(bus, 0), 0);
    produce_kv(bus, "t", "b", "2");
    produce_kv(bus, "t", "c", "3");
    assert_int_equal(of_membus_wait_idle(bus, 10), 0);
    commit_later a = {bus, c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain_and_commit, &a), 0);
    assert_int_equal(of_membus_wait_idle(bus, 10000), 1);
    join_bounded(t);
    bus->ops->consumer_close(c);
    bus->ops->destroy(bus);
}

static void test_destroy_with_open_consumer(void **state)
{
    (void)state;
    of_bus *bus = new_bus_with("t", 1);
    produce_kv(bus, "t", "k", "x");
    (void)sub1(bus, "g", "t");
    bus->ops->destroy(bus); /* frees it: nothing leaks */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur2_kafka_vectors),
        cmocka_unit_test(test_partition_like_kafka),
        cmocka_unit_test(test_produce_poll_commit_positions),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_existing_topic_kept),
        cmocka_unit_test(test_keyless_round_robin_and_fair_poll),
        cmocka_unit_test(test_fair_poll_with_backlog),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_wakeup_interrupts_poll),
        cmocka_unit_test(test_trim_after_all_groups_commit),
        cmocka_unit_test(test_retain_keeps_committed_events),
        cmocka_unit_test(test_second_subscriber_refused),
        cmocka_unit_test(test_idle_detection),
        cmocka_unit_test(test_destroy_with_open_consumer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
