/* The host configuration file (orderflow.yaml). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "hostconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX OF_SOURCE_DIR "/tests/fixtures/config/"

static of_diag d;

static int setup(void **state)
{
    (void)state;
    of_diag_init(&d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    of_diag_free(&d);
    return 0;
}

static void dump(void)
{
    for (size_t i = 0; i < d.count; i++)
        fprintf(stderr, "  diag %d:%d %s\n", d.entries[i].line, d.entries[i].column,
                d.entries[i].message);
}

static void expect_diag(const char *needle, int line, int column)
{
    for (size_t i = 0; i < d.count; i++) {
        if (strstr(d.entries[i].message, needle)) {
            if (d.entries[i].line != line || d.entries[i].column != column)
                fail_msg("'%s' at %d:%d, expected %d:%d", d.entries[i].message, d.entries[i].line,
                         d.entries[i].column, line, column);
            return;
        }
    }
    dump();
    fail_msg("no diagnostic containing '%s'", needle);
}

static void test_valid(void **state)
{
    (void)state;
    of_host_config *c = of_host_config_load(FIX "host_valid.yaml", &d);
    if (!c)
        dump();
    assert_non_null(c);
    assert_int_equal(c->n_plugin_dirs, 2);
    assert_string_equal(c->plugin_dirs[0], FIX "plugins");
    assert_string_equal(c->plugin_dirs[1], "/opt/orderflow/plugins");
    assert_true(c->n_pipelines >= 1);
    assert_string_equal(c->pipelines[0], FIX "pipelines/orders.yaml");
    assert_int_equal(c->bus, OF_BUS_MEMORY);
    assert_int_equal(c->log_level, OF_LVL_DEBUG);
    assert_int_equal(c->log_format, OF_LOG_JSON);
    assert_int_equal(c->drain_timeout_ms, 1500);
    of_host_config_free(c);
}

static void test_defaults(void **state)
{
    (void)state;
    of_host_config *c = of_host_config_load(FIX "host_empty.yaml", &d);
    assert_non_null(c);
    assert_int_equal(c->n_plugin_dirs, 1);
    /* OF_DEFAULT_PLUGIN_DIR is private to the core; check its shape. */
    const char *dflt = c->plugin_dirs[0];
    assert_int_equal(dflt[0], '/');
    size_t n = strlen(dflt);
    assert_true(n > 17);
    assert_string_equal(dflt + n - 17, "orderflow/plugins");
    assert_int_equal(c->n_pipelines, 0);
    assert_int_equal(c->log_level, OF_LVL_INFO);
    assert_int_equal(c->log_format, OF_LOG_TEXT);
    assert_int_equal(c->drain_timeout_ms, 30000);
    of_host_config_free(c);
}

static void test_all_errors(void **state)
{
    (void)state;
    of_host_config *c = of_host_config_load(FIX "host_bad.yaml", &d);
    assert_null(c);
    expect_diag("unknown key 'plugin_dir' in the host configuration (did you mean 'plugin_dirs'?); "
                "allowed: plugin_dirs, pipelines, bus, mysql, redis, http, log, drain_timeout",
                1, 1);
    expect_diag("matches no file", 3, 5);
    expect_diag("'pipelines' items must be non-empty strings; got a sequence", 4, 5);
    expect_diag("unknown bus type 'kafak' (did you mean 'kafka'?); allowed: memory, kafka", 6, 9);
    expect_diag("unknown key 'brokers' in bus; allowed: type, kafka", 7, 3);
    expect_diag("log 'level' must be one of error, warn, info, debug; got 'loud'", 9, 10);
    expect_diag("log 'format' must be one of text, json; got 'xml'", 10, 11);
    expect_diag("'drain_timeout': expected a duration", 11, 16);
    assert_int_equal(d.errors, 8);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_wrong_types_and_relative(void **state)
{
    (void)state;
    char dir[] = "/tmp/of_hostcfg_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cfg[256], p1[256], p2[256];
    snprintf(cfg, sizeof(cfg), "%s/orderflow.yaml", dir);
    snprintf(p1, sizeof(p1), "%s/one.yaml", dir);
    snprintf(p2, sizeof(p2), "%s/two.yaml", dir);
    write_file(p1, "pipeline: one\n");
    write_file(p2, "pipeline: two\n");

    write_file(cfg, "plugin_dirs: plugins\n"
                    "pipelines: [one.yaml, missing.yaml]\n"
                    "bus: memory\n"
                    "log: [a]\n");
    of_host_config *c = of_host_config_load(cfg, &d);
    assert_null(c);
    expect_diag("'plugin_dirs' must be a list of strings; got 'plugins'", 1, 14);
    expect_diag("cannot be read", 2, 23);
    expect_diag("'bus' must be a mapping; got 'memory'", 3, 6);
    expect_diag("'log' must be a mapping; got a sequence", 4, 6);
    assert_int_equal(d.errors, 4);
    of_diag_free(&d);

    write_file(cfg, "pipelines: [two.yaml, '*.yaml']\nplugin_dirs: [p]\n");
    c = of_host_config_load(cfg, &d);
    assert_non_null(c);
    /* explicit path first, then the glob's sorted matches */
    assert_int_equal(c->n_pipelines, 4);
    assert_string_equal(c->pipelines[0], p2);
    assert_string_equal(c->pipelines[1], p1);
    assert_string_equal(c->pipelines[2], cfg);
    char want[300];
    snprintf(want, sizeof(want), "%s/p", dir);
    assert_string_equal(c->plugin_dirs[0], want);
    of_host_config_free(c);

    write_file(cfg, "- a\n");
    c = of_host_config_load(cfg, &d);
    assert_null(c);
    expect_diag("must be a mapping", 1, 1);

    unlink(cfg);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
}

static void test_missing_file(void **state)
{
    (void)state;
    assert_null(of_host_config_load("/nonexistent/orderflow.yaml", &d));
    assert_int_equal(d.errors, 1);
}

/* Loads `text` as a host config from a temporary file (with diagnostics in d). */
static of_host_config *load_text(const char *text)
{
    char dir[] = "/tmp/of_hostcfg_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cfg[256];
    snprintf(cfg, sizeof(cfg), "%s/orderflow.yaml", dir);
    write_file(cfg, text);
    of_host_config *c = of_host_config_load(cfg, &d);
    unlink(cfg);
    rmdir(dir);
    return c;
}

static void expect_warning(const char *needle, int line, int column)
{
    for (size_t i = 0; i < d.count; i++) {
        if (d.entries[i].severity == OF_SEV_WARNING && strstr(d.entries[i].message, needle)) {
            if (d.entries[i].line != line || d.entries[i].column != column)
                fail_msg("'%s' at %d:%d, expected %d:%d", d.entries[i].message, d.entries[i].line,
                         d.entries[i].column, line, column);
            return;
        }
    }
    dump();
    fail_msg("no warning containing '%s'", needle);
}

static void test_kafka_valid(void **state)
{
    (void)state;
    of_host_config *c = load_text("bus:\n"
                                  "  type: kafka\n"
                                  "  kafka:\n"
                                  "    bootstrap: \"127.0.0.1:19092, broker-2:9093\"\n"
                                  "    client_id: orders-host\n"
                                  "    properties:\n"
                                  "      linger.ms: 5\n"
                                  "      enable.ssl.certificate.verification: false\n"
                                  "      compression.type: lz4\n"
                                  "      message.timeout.ms: 30000\n"
                                  "      socket.keepalive.enable: true\n");
    if (!c)
        dump();
    assert_non_null(c);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.warnings, 0);
    assert_int_equal(c->bus, OF_BUS_KAFKA);
    assert_string_equal(c->kafka.bootstrap, "127.0.0.1:19092, broker-2:9093");
    assert_string_equal(c->kafka.client_id, "orders-host");
    assert_int_equal(c->kafka.n_properties, 5);
    /* values as written, whatever YAML type they look like, in file order */
    assert_string_equal(c->kafka.properties[0].key, "linger.ms");
    assert_string_equal(c->kafka.properties[0].value, "5");
    assert_string_equal(c->kafka.properties[1].key, "enable.ssl.certificate.verification");
    assert_string_equal(c->kafka.properties[1].value, "false");
    assert_string_equal(c->kafka.properties[2].value, "lz4");
    assert_string_equal(c->kafka.properties[3].value, "30000");
    assert_string_equal(c->kafka.properties[4].value, "true");
    of_host_config_free(c);

    /* bootstrap alone is enough; client_id stays unset (the default applies later) */
    c = load_text("bus: {type: kafka, kafka: {bootstrap: localhost}}\n");
    assert_non_null(c);
    assert_int_equal(c->bus, OF_BUS_KAFKA);
    assert_string_equal(c->kafka.bootstrap, "localhost");
    assert_null(c->kafka.client_id);
    assert_int_equal(c->kafka.n_properties, 0);
    of_host_config_free(c);
}

static void test_kafka_missing_bootstrap(void **state)
{
    (void)state;
    assert_null(load_text("log: {level: info}\n"
                          "bus:\n"
                          "  type: kafka\n"));
    expect_diag("bus type kafka needs 'kafka: {bootstrap: HOST:PORT,...}'", 3, 3);
    assert_int_equal(d.errors, 1);
    of_diag_free(&d);

    assert_null(load_text("bus:\n"
                          "  type: kafka\n"
                          "  kafka:\n"
                          "    client_id: x\n"));
    expect_diag("bus type kafka needs", 2, 3);
    assert_int_equal(d.errors, 1);
    of_diag_free(&d);

    assert_null(load_text("bus:\n"
                          "  type: kafka\n"
                          "  kafka:\n"));
    expect_diag("bus type kafka needs", 2, 3);
    assert_int_equal(d.errors, 1);
}

static void test_kafka_properties_all_reported(void **state)
{
    (void)state;
    assert_null(load_text("bus:\n"
                          "  type: kafka\n"
                          "  kafka:\n"
                          "    bootstrap: localhost:9092\n"
                          "    properties:\n"
                          "      linger.msec: 5\n"
                          "      linger.ms: soon\n"
                          "      enable.auto.commit: true\n"
                          "      group.id: mine\n"
                          "      acks: 1\n"
                          "      batch.size: [1]\n"
                          "      compression.type: lz4\n"
                          "      no.such.thing: 1\n"));
    expect_diag("unknown kafka property 'linger.msec' (did you mean 'linger.ms'?)", 6, 7);
    expect_diag("invalid value for kafka property 'linger.ms'", 7, 18);
    expect_diag("kafka property 'enable.auto.commit' is managed by orderflow", 8, 7);
    expect_diag("kafka property 'group.id' is managed by orderflow", 9, 7);
    expect_diag("kafka property 'acks' is managed by orderflow", 10, 7);
    expect_diag("kafka property 'batch.size' must be a single value (string, number or bool); "
                "got a sequence",
                11, 19);
    expect_diag("unknown kafka property 'no.such.thing'", 13, 7);
    assert_int_equal(d.errors, 7);
}

static void test_kafka_wrong_types(void **state)
{
    (void)state;
    assert_null(load_text("bus:\n"
                          "  type: kafka\n"
                          "  kafka: brokers\n"));
    expect_diag("'bus.kafka' must be a mapping; got 'brokers'", 3, 10);
    assert_int_equal(d.errors, 1);
    of_diag_free(&d);

    assert_null(load_text("bus:\n"
                          "  type: [kafka]\n"));
    expect_diag("bus 'type' must be one of: memory, kafka; got a sequence", 2, 9);
    assert_int_equal(d.errors, 1);
    of_diag_free(&d);

    assert_null(load_text("bus:\n"
                          "  type: kafka\n"
                          "  kafka:\n"
                          "    bootstrap: [a, b]\n"
                          "    client-id: me\n"
                          "    client_id: \"\"\n"
                          "    properties: [linger.ms]\n"));
    expect_diag("bus.kafka 'bootstrap' must be a non-empty string; got a sequence", 4, 16);
    expect_diag("unknown key 'client-id' in bus.kafka (did you mean 'client_id'?); allowed: "
                "bootstrap, client_id, properties",
                5, 5);
    expect_diag("bus.kafka 'client_id' must be a non-empty string; got ''", 6, 16);
    expect_diag("'bus.kafka.properties' must be a mapping; got a sequence", 7, 17);
    assert_int_equal(d.errors, 4);
    of_diag_free(&d);

    assert_null(load_text("bus:\n"
                          "  type: kafka\n"
                          "  kafka:\n"
                          "    bootstrap: \"a:9092,,b:http\"\n"));
    expect_diag("bus.kafka 'bootstrap' has an empty entry", 4, 16);
    of_diag_free(&d);
    assert_null(load_text("bus: {type: kafka, kafka: {bootstrap: 'a:9092,b:http'}}\n"));
    expect_diag("entry 'b:http' has an invalid port", 1, 39);
    of_diag_free(&d);
    assert_null(load_text("bus: {type: kafka, kafka: {bootstrap: 'a:70000'}}\n"));
    expect_diag("entry 'a:70000' has an invalid port", 1, 39);
    of_diag_free(&d);

    /* accepted forms: a bare host, a protocol prefix, bracketed IPv6 */
    of_host_config *c =
        load_text("bus: {type: kafka, kafka: {bootstrap: 'k1,PLAINTEXT://k2:9092,[::1]:19092'}}\n");
    if (!c)
        dump();
    assert_non_null(c);
    of_host_config_free(c);
}

static void test_kafka_ignored_with_memory(void **state)
{
    (void)state;
    of_host_config *c = load_text("bus:\n"
                                  "  type: memory\n"
                                  "  kafka:\n"
                                  "    bootstrap: localhost:9092\n"
                                  "    properties: {linger.msec: 5}\n");
    assert_non_null(c);
    assert_int_equal(c->bus, OF_BUS_MEMORY);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.warnings, 1);
    expect_warning("bus 'kafka' is ignored with bus type memory", 3, 3);
    of_host_config_free(c);
    of_diag_free(&d);

    c = load_text("bus:\n"
                  "  kafka: {bootstrap: localhost:9092}\n");
    assert_non_null(c);
    assert_int_equal(c->bus, OF_BUS_MEMORY);
    expect_warning("the bus type is memory unless 'type: kafka' is set", 2, 3);
    of_host_config_free(c);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_valid),
        T(test_defaults),
        T(test_all_errors),
        T(test_wrong_types_and_relative),
        T(test_missing_file),
        T(test_kafka_valid),
        T(test_kafka_missing_bootstrap),
        T(test_kafka_properties_all_reported),
        T(test_kafka_wrong_types),
        T(test_kafka_ignored_with_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
