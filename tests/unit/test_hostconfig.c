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
                "allowed: plugin_dirs, pipelines, bus, log, drain_timeout",
                1, 1);
    expect_diag("matches no file", 3, 5);
    expect_diag("'pipelines' items must be non-empty strings; got a sequence", 4, 5);
    expect_diag("unknown bus type 'kafak'; allowed: memory", 6, 9);
    expect_diag("unknown key 'brokers' in bus; allowed: type", 7, 3);
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

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_valid),        T(test_defaults),
        T(test_all_errors),   T(test_wrong_types_and_relative),
        T(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
