/* The host log: JSON and text records with the thread's context (trace id, key), traceparent
 * parsing, level and format names. Records go to stderr, redirected to a file here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "log.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs fn with stderr going to a temporary file; returns what was written (malloc'd). */
static char *capture(void (*fn)(void))
{
    char path[] = "/tmp/of_test_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, (size_t)size, 0), size);
    close(fd);
    unlink(path);
    return buf;
}

static const char *const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

static void log_with_context(void)
{
    of_log_context_set(TRACE, "order-1", 7);
    of_log(OF_LVL_INFO, "shop", "inventory", "reserved \"2\" units");
    of_log_context_clear();
    of_log(OF_LVL_INFO, NULL, NULL, "no context");
    of_log_context_set(NULL, "\x01\x02", 2); /* a binary key is not shown */
    of_log(OF_LVL_WARN, NULL, "s", "binary key");
    of_log_context_clear();
}

static void test_json_context(void **state)
{
    (void)state;
    of_log_set_format(OF_LOG_JSON);
    of_log_set_level(OF_LVL_INFO);
    char *out = capture(log_with_context);
    char *save = NULL;
    char *l1 = strtok_r(out, "\n", &save), *l2 = strtok_r(NULL, "\n", &save),
         *l3 = strtok_r(NULL, "\n", &save);
    assert_non_null(l3);
    json_error_t err;
    json_t *a = json_loads(l1, 0, &err), *b = json_loads(l2, 0, &err), *c = json_loads(l3, 0, &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(a, "trace_id")), TRACE);
    assert_string_equal(json_string_value(json_object_get(a, "key")), "order-1");
    assert_string_equal(json_string_value(json_object_get(a, "pipeline")), "shop");
    assert_string_equal(json_string_value(json_object_get(a, "stage")), "inventory");
    assert_string_equal(json_string_value(json_object_get(a, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(a, "msg")), "reserved \"2\" units");
    assert_null(json_object_get(b, "trace_id"));
    assert_null(json_object_get(b, "key"));
    assert_null(json_object_get(c, "key"));
    json_decref(a);
    json_decref(b);
    json_decref(c);
    free(out);
    of_log_set_format(OF_LOG_TEXT);
}

static void test_text_context(void **state)
{
    (void)state;
    of_log_set_format(OF_LOG_TEXT);
    char *out = capture(log_with_context);
    assert_non_null(strstr(out, " info  shop/inventory: reserved \"2\" units trace_id="
                                "4bf92f3577b34da6a3ce929d0e0e4736"
                                " key=order-1\n"));
    assert_non_null(strstr(out, " info  no context\n"));
    free(out);
}

static void test_traceparent(void **state)
{
    (void)state;
    char id[33];
    const char *ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_int_equal(of_traceparent_trace_id(ok, strlen(ok), id), 0);
    assert_string_equal(id, TRACE);
    const char *bad[] = {
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* all-zero trace */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* upper case */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",    /* short */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version */
        "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01", /* not hex */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(of_traceparent_trace_id(bad[i], strlen(bad[i]), id), -1);
    assert_int_equal(of_traceparent_trace_id(NULL, 0, id), -1);
    /* The context keeps only a well-formed trace id. */
    of_log_context_set("not-a-trace-id", NULL, 0);
    assert_null(of_log_context_trace_id());
    of_log_context_set(TRACE, NULL, 0);
    assert_string_equal(of_log_context_trace_id(), TRACE);
    of_log_context_clear();
    assert_null(of_log_context_trace_id());
}

static void test_names(void **state)
{
    (void)state;
    of_log_level_t l;
    of_log_format f;
    assert_int_equal(of_log_parse_level("debug", &l), 0);
    assert_int_equal(l, OF_LVL_DEBUG);
    assert_string_equal(of_log_level_name(OF_LVL_WARN), "warn");
    assert_int_equal(of_log_parse_format("json", &f), 0);
    assert_int_equal(f, OF_LOG_JSON);
    assert_int_equal(of_log_parse_format("xml", &f), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_context),
        cmocka_unit_test(test_text_context),
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
