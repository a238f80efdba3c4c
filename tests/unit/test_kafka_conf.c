/* The librdkafka configurations the host builds for each role: the defaults it chooses (which an
 * operator property overrides) and the properties its guarantees rest on (which nothing
 * overrides). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kafka_conf.h"

#include <string.h>

/* The value of key in conf, as librdkafka reports it. */
static const char *get(rd_kafka_conf_t *conf, const char *key)
{
    static char value[256];
    size_t size = sizeof(value);
    if (rd_kafka_conf_get(conf, key, value, &size) != RD_KAFKA_CONF_OK)
        return "(unset)";
    return value;
}

static rd_kafka_conf_t *build(of_kv *props, size_t n, of_kafka_role role)
{
    of_kafka_config kc = {.bootstrap = "127.0.0.1:1", .properties = props, .n_properties = n};
    char err[512] = "";
    rd_kafka_conf_t *conf =
        of_kafka_conf_new(&kc, role, role == OF_KAFKA_CONSUMER ? "g1" : NULL, err, sizeof(err));
    if (!conf)
        fail_msg("of_kafka_conf_new: %s", err);
    return conf;
}

static void test_defaults(void **state)
{
    (void)state;
    rd_kafka_conf_t *p = build(NULL, 0, OF_KAFKA_PRODUCER);
    /* A batch waits up to 5 ms for more events, not 1 (bench/RESULTS.md, step 34). */
    assert_string_equal(get(p, "linger.ms"), "5");
    assert_string_equal(get(p, "message.timeout.ms"), "60000");
    assert_string_equal(get(p, "enable.idempotence"), "true");
    assert_string_equal(get(p, "acks"), "-1");
    rd_kafka_conf_destroy(p);

    rd_kafka_conf_t *c = build(NULL, 0, OF_KAFKA_CONSUMER);
    /* The broker holds a fetch until 64 KiB or 10 ms instead of answering at the first byte. */
    assert_string_equal(get(c, "fetch.wait.max.ms"), "10");
    assert_string_equal(get(c, "fetch.min.bytes"), "65536");
    assert_string_equal(get(c, "queued.max.messages.kbytes"), "4096");
    assert_string_equal(get(c, "group.id"), "g1");
    assert_string_equal(get(c, "enable.auto.offset.store"), "false");
    rd_kafka_conf_destroy(c);
}

static void test_operator_overrides_defaults(void **state)
{
    (void)state;
    of_kv props[] = {{"linger.ms", "0"}, {"fetch.wait.max.ms", "1"}, {"fetch.min.bytes", "1"}};
    rd_kafka_conf_t *p = build(props, 3, OF_KAFKA_PRODUCER);
    assert_string_equal(get(p, "linger.ms"), "0");
    rd_kafka_conf_destroy(p);
    rd_kafka_conf_t *c = build(props, 3, OF_KAFKA_CONSUMER);
    assert_string_equal(get(c, "fetch.wait.max.ms"), "1");
    assert_string_equal(get(c, "fetch.min.bytes"), "1");
    rd_kafka_conf_destroy(c);
}

static void test_managed_win(void **state)
{
    (void)state;
    /* The loader refuses these (test_hostconfig); were one to slip through, the host's value
     * is set after the operator's. */
    of_kv props[] = {{"enable.auto.offset.store", "true"}, {"acks", "1"}};
    rd_kafka_conf_t *c = build(props, 1, OF_KAFKA_CONSUMER);
    assert_string_equal(get(c, "enable.auto.offset.store"), "false");
    rd_kafka_conf_destroy(c);
    rd_kafka_conf_t *p = build(props + 1, 1, OF_KAFKA_PRODUCER);
    assert_string_equal(get(p, "acks"), "-1");
    rd_kafka_conf_destroy(p);
}

/* A consumer without a group, and an operator value librdkafka refuses: no configuration, and
 * the reason names what was wrong. */
static void test_refusals(void **state)
{
    (void)state;
    of_kafka_config kc = {.bootstrap = "127.0.0.1:1"};
    char err[512] = "";
    assert_null(of_kafka_conf_new(&kc, OF_KAFKA_CONSUMER, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "a consumer needs a group"));
    of_kv bad[] = {{"fetch.min.bytes", "lots"}};
    kc.properties = bad;
    kc.n_properties = 1;
    err[0] = '\0';
    assert_null(of_kafka_conf_new(&kc, OF_KAFKA_CONSUMER, "g1", err, sizeof(err)));
    assert_non_null(strstr(err, "fetch.min.bytes"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_operator_overrides_defaults),
        cmocka_unit_test(test_managed_win),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
