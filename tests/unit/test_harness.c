/* The SDK test harness on the real runner and memory bus: feed, drain, collect outputs and
 * dead letters, custom counters, option errors, descriptor checks, the plugin loader path.
 *
 * This test links the shipped liborderflow-harness.so, as a plugin author's test does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <orderflow/harness.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include <pthread.h>
#include <unistd.h>

static const of_host_api *g_api;

typedef struct echo {
    const of_host_api *api;
    of_stage *stage;
    char *prefix;
    char *reject;
    of_counter *seen;
    int last_seq[16];
    pthread_mutex_t mu;
    int order_violations;
} echo;

static const of_option echo_options[] = {
    {.name = "prefix", .type = OF_OPT_STRING, .default_value = "", .description = "prefix"},
    {.name = "reject", .type = OF_OPT_STRING, .description = "payload to reject"},
    {.name = NULL},
};
static const char *const echo_outputs[] = {"out", "other", NULL};

static int echo_shutdowns;

static int echo_init(of_stage *stage, const of_host_api *api, const of_config *config,
                     void **instance, char *errstr, size_t errstr_size)
{
    g_api = api;
    echo *e = api->calloc(1, sizeof(*e));
    if (!e) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    e->api = api;
    e->stage = stage;
    e->prefix = api->strdup(api->config_string(config, "prefix"));
    const char *rej = api->config_string(config, "reject");
    e->reject = rej ? api->strdup(rej) : NULL;
    if (e->reject && strcmp(e->reject, "init-fail") == 0) {
        snprintf(errstr, errstr_size, "told to fail");
        api->free(e->prefix);
        api->free(e->reject);
        api->free(e);
        return -1;
    }
    e->seen = api->counter_register(stage, "seen", "events seen");
    for (int i = 0; i < 16; i++)
        e->last_seq[i] = -1;
    pthread_mutex_init(&e->mu, NULL);
    *instance = e;
    return 0;
}

static of_status echo_process(void *instance, of_call *call)
{
    echo *e = instance;
    const of_host_api *api = e->api;
    size_t len;
    const char *p = api->event_payload(call, &len);
    api->counter_add(e->seen, 1);
    if (e->reject && strcmp(p, e->reject) == 0) {
        api->set_reason(call, "payload '%s' is refused", p);
        return OF_REJECT;
    }
    if (strcmp(p, "retry-once") == 0 && api->event_attempt(call) == 1)
        return OF_RETRY;
    if (strcmp(p, "always-retry") == 0) {
        api->set_reason(call, "still failing");
        return OF_RETRY;
    }
    if (strncmp(p, "ws ", 3) == 0) {
        size_t kl;
        const char *k = api->event_key(call, &kl);
        char ch[64];
        snprintf(ch, sizeof(ch), "room:%.*s", (int)kl, k ? k : "");
        return api->ws_publish(e->stage, ch, p + 3, len - 3) == 0 ? OF_OK : OF_REJECT;
    }
    int key = -1, seq = -1;
    if (sscanf(p, "seq %d %d", &key, &seq) == 2 && key >= 0 && key < 16) {
        pthread_mutex_lock(&e->mu);
        if (seq <= e->last_seq[key])
            e->order_violations++;
        e->last_seq[key] = seq;
        pthread_mutex_unlock(&e->mu);
    }
    char buf[256];
    snprintf(buf, sizeof(buf), "%s%s", e->prefix, p);
    of_header h = {"x-echo", "1", 1};
    if (api->emit(call, "out", NULL, 0, buf, strlen(buf), &h, 1) != 0)
        return OF_RETRY;
    return OF_OK;
}

static void echo_shutdown(void *instance)
{
    echo *e = instance;
    echo_shutdowns++;
    pthread_mutex_destroy(&e->mu);
    e->api->free(e->prefix);
    e->api->free(e->reject);
    e->api->free(e);
}

static const of_stage_descriptor echo_desc = {
    OF_DESCRIPTOR_HEADER,      .name = "echo",
    .version = "1.0.0",        .description = "echoes events",
    .options = echo_options,   .outputs = echo_outputs,
    .init = echo_init,         .process = echo_process,
    .shutdown = echo_shutdown,
};

static of_harness *new_echo(void)
{
    char err[512] = "";
    of_harness *h = of_harness_new(&echo_desc, err, sizeof(err));
    if (!h)
        fail_msg("of_harness_new: %s", err);
    return h;
}

static void start(of_harness *h)
{
    if (of_harness_start(h) != 0)
        fail_msg("start: %s", of_harness_error(h));
}

static void test_feed_drain_collect(void **state)
{
    (void)state;
    echo_shutdowns = 0;
    of_harness *h = new_echo();
    assert_int_equal(of_harness_set(h, "prefix", "wrong:"), 0);
    assert_int_equal(of_harness_set(h, "prefix", "echo:"), 0); /* the last value wins */
    assert_int_equal(of_harness_set(h, "reject", "poison"), 0);
    start(h);
    assert_int_equal(of_harness_set(h, "prefix", "late"), -1);
    assert_non_null(strstr(of_harness_error(h), "already started"));
    /* A malformed traceparent is replaced by a new trace; a valid one is continued. */
    of_header hd[] = {{"traceparent", "00-1-2-01", 9}};
    assert_int_equal(of_harness_feed(h, "k1", 2, "hello", 5, hd, 1), 0);
    assert_int_equal(of_harness_feed_str(h, "k2", "poison"), 0);
    assert_int_equal(of_harness_feed_str(h, NULL, "retry-once"), 0);
    assert_int_equal(of_harness_feed_str(h, "k1", "world"), 0);
    assert_int_equal(of_harness_drain(h, 10000), 0);

    assert_int_equal(of_harness_count(h, "out"), 3);
    assert_int_equal(of_harness_count(h, "other"), 0);
    assert_int_equal(of_harness_count(h, "no-such-output"), 0);
    size_t len;
    /* k1's events in order; the retried keyless one may come anywhere. */
    const char *first_k1 = NULL, *second_k1 = NULL;
    int retried_seen = 0;
    for (size_t i = 0; i < 3; i++) {
        const char *p = of_harness_payload(h, "out", i, &len);
        const char *k = of_harness_key(h, "out", i, NULL);
        assert_non_null(p);
        assert_int_equal(len, strlen(p));
        if (strcmp(p, "echo:retry-once") == 0) {
            retried_seen = 1;
            assert_null(k);
        } else {
            assert_string_equal(k, "k1");
            if (!first_k1)
                first_k1 = p;
            else
                second_k1 = p;
        }
        assert_string_equal(of_harness_header(h, "out", i, "x-echo", NULL), "1");
        assert_string_equal(of_harness_header(h, "out", i, "ce_source", NULL),
                            "orderflow/harness/echo");
    }
    assert_true(retried_seen);
    assert_string_equal(first_k1, "echo:hello");
    assert_string_equal(second_k1, "echo:world");
    for (size_t i = 0; i < 3; i++) {
        const char *p = of_harness_payload(h, "out", i, NULL);
        const char *tp = of_harness_header(h, "out", i, "traceparent", &len);
        assert_non_null(tp);
        assert_int_equal(len, 55);
        if (strcmp(p, "echo:hello") == 0)
            assert_memory_not_equal(tp, "00-1-2-01", 9);
    }
    assert_null(of_harness_payload(h, "out", 3, &len));
    assert_int_equal(len, 0);

    assert_int_equal(of_harness_count(h, OF_HARNESS_DEAD_LETTER), 1);
    assert_string_equal(of_harness_payload(h, OF_HARNESS_DEAD_LETTER, 0, NULL), "poison");
    assert_string_equal(of_harness_key(h, OF_HARNESS_DEAD_LETTER, 0, NULL), "k2");
    assert_string_equal(of_harness_header(h, OF_HARNESS_DEAD_LETTER, 0, OF_DLQ_H_ERROR, NULL),
                        "payload 'poison' is refused");
    assert_string_equal(of_harness_header(h, OF_HARNESS_DEAD_LETTER, 0, OF_DLQ_H_STATUS, NULL),
                        "rejected");
    assert_string_equal(of_harness_header(h, OF_HARNESS_DEAD_LETTER, 0, OF_DLQ_H_STAGE, NULL),
                        "echo");

    assert_true(of_harness_counter(h, "seen") == 5.0); /* 4 events, one tried twice */
    assert_true(of_harness_counter(h, "unknown") == 0.0);

    /* More after a drain: collected pointers stay valid, new events are appended. */
    const char *kept = of_harness_payload(h, "out", 0, NULL);
    assert_int_equal(of_harness_feed_str(h, "k3", "again"), 0);
    assert_int_equal(of_harness_drain(h, 10000), 0);
    assert_int_equal(of_harness_count(h, "out"), 4);
    assert_string_equal(of_harness_payload(h, "out", 3, NULL), "echo:again");
    assert_ptr_equal(of_harness_payload(h, "out", 0, NULL), kept);

    /* ws_publish (ABI 1.2) is recorded per channel, in order. */
    assert_int_equal(of_harness_feed_str(h, "a", "ws one"), 0);
    assert_int_equal(of_harness_feed_str(h, "b", "ws other"), 0);
    assert_int_equal(of_harness_feed_str(h, "a", "ws two"), 0);
    assert_int_equal(of_harness_drain(h, 10000), 0);
    assert_int_equal(of_harness_ws_count(h, "room:a"), 2);
    assert_int_equal(of_harness_ws_count(h, "room:b"), 1);
    assert_int_equal(of_harness_ws_count(h, "room:c"), 0);
    assert_string_equal(of_harness_ws_message(h, "room:a", 0, &len), "one");
    assert_int_equal(len, 3);
    assert_string_equal(of_harness_ws_message(h, "room:a", 1, NULL), "two");
    assert_string_equal(of_harness_ws_message(h, "room:b", 0, NULL), "other");
    assert_null(of_harness_ws_message(h, "room:a", 2, NULL));
    assert_int_equal(of_harness_count(h, OF_HARNESS_DEAD_LETTER), 1);
    of_harness_free(h);
    assert_int_equal(echo_shutdowns, 1);
}

static void test_retries_exhausted_dead_letter(void **state)
{
    (void)state;
    of_harness *h = new_echo();
    assert_int_equal(of_harness_set_retry(h, 4, 0), 0);
    start(h);
    assert_int_equal(of_harness_feed_str(h, "k", "always-retry"), 0);
    assert_int_equal(of_harness_drain(h, 10000), 0);
    assert_int_equal(of_harness_count(h, "out"), 0);
    assert_int_equal(of_harness_count(h, OF_HARNESS_DEAD_LETTER), 1);
    assert_string_equal(of_harness_header(h, OF_HARNESS_DEAD_LETTER, 0, OF_DLQ_H_ATTEMPTS, NULL),
                        "4");
    assert_string_equal(of_harness_header(h, OF_HARNESS_DEAD_LETTER, 0, OF_DLQ_H_STATUS, NULL),
                        "retries-exhausted");
    assert_string_equal(of_harness_header(h, OF_HARNESS_DEAD_LETTER, 0, OF_DLQ_H_ERROR, NULL),
                        "still failing");
    assert_string_equal(of_harness_header(h, OF_HARNESS_DEAD_LETTER, 0, OF_DLQ_H_TOPIC, NULL),
                        "input");
    assert_true(of_harness_counter(h, "seen") == 4.0);
    of_harness_free(h);
}

static void test_concurrency_keeps_key_order(void **state)
{
    (void)state;
    of_harness *h = new_echo();
    assert_int_equal(of_harness_set_concurrency(h, 4), 0);
    assert_int_equal(of_harness_set_concurrency(h, 0), -1);
    assert_int_equal(of_harness_set_concurrency(h, 257), -1);
    start(h);
    for (int s = 0; s < 30; s++) {
        for (int k = 0; k < 16; k++) {
            char key[8], payload[32];
            snprintf(key, sizeof(key), "k%d", k);
            snprintf(payload, sizeof(payload), "seq %d %d", k, s);
            assert_int_equal(of_harness_feed_str(h, key, payload), 0);
        }
    }
    assert_int_equal(of_harness_drain(h, 30000), 0);
    assert_int_equal(of_harness_count(h, "out"), 16 * 30);
    /* Collected in publication order: per key, ascending. */
    int last[16];
    for (int k = 0; k < 16; k++)
        last[k] = -1;
    for (size_t i = 0; i < 16 * 30; i++) {
        int k, s;
        assert_int_equal(sscanf(of_harness_payload(h, "out", i, NULL), "seq %d %d", &k, &s), 2);
        assert_true(s > last[k]);
        last[k] = s;
    }
    of_harness_free(h);
}

static void test_option_errors_and_lifecycle(void **state)
{
    (void)state;
    of_harness *h = new_echo();
    assert_int_equal(of_harness_feed_str(h, "k", "v"), -1); /* not started */
    assert_non_null(strstr(of_harness_error(h), "not started"));
    assert_int_equal(of_harness_drain(h, 10), -1);
    assert_int_equal(of_harness_set(h, "prefx", "x"), 0); /* checked at start */
    assert_int_equal(of_harness_start(h), -1);
    assert_non_null(strstr(of_harness_error(h), "prefx"));
    of_harness_free(h);

    /* init failing: the reason reaches the harness error; nothing to shut down. */
    echo_shutdowns = 0;
    h = new_echo();
    assert_int_equal(of_harness_set(h, "reject", "init-fail"), 0);
    assert_int_equal(of_harness_start(h), -1);
    assert_non_null(strstr(of_harness_error(h), "told to fail"));
    assert_non_null(strstr(of_harness_error(h), "stage 'echo'"));
    of_harness_free(h);
    assert_int_equal(echo_shutdowns, 0);

    assert_int_equal(of_harness_set_retry(NULL, 1, 1), -1);
    h = new_echo();
    assert_int_equal(of_harness_set_retry(h, 0, 1), -1);
    assert_int_equal(of_harness_set_retry(h, 2, -1), -1);
    of_harness_free(h);
    of_harness_free(NULL);
}

static void test_drain_timeout(void **state)
{
    (void)state;
    of_harness *h = new_echo();
    assert_int_equal(of_harness_set_retry(h, 5, 600000), 0); /* retries far in the future */
    start(h);
    assert_int_equal(of_harness_feed_str(h, "k", "always-retry"), 0);
    of_log_level_t saved = of_log_get_level();
    of_log_set_level(OF_LVL_ERROR);
    assert_int_equal(of_harness_drain(h, 50), -1);
    assert_non_null(strstr(of_harness_error(h), "unfinished"));
    of_harness_free(h); /* gives the retrying event up after its own bounded drain */
    of_log_set_level(saved);
}

static const of_stage_descriptor bad_abi = {
    .abi_major = OF_ABI_MAJOR + 1,
    .abi_minor = 0,
    .struct_size = (uint32_t)sizeof(of_stage_descriptor),
    .signature = OF_BUILD_SIGNATURE_INIT,
    .name = "future",
    .version = "9",
    .process = echo_process,
};

static const of_stage_descriptor no_process = {
    OF_DESCRIPTOR_HEADER,
    .name = "lazy",
    .version = "1",
};

static void test_bad_descriptors_refused(void **state)
{
    (void)state;
    char err[512] = "";
    assert_null(of_harness_new(&bad_abi, err, sizeof(err)));
    assert_non_null(strstr(err, "ABI"));
    err[0] = '\0';
    assert_null(of_harness_new(&no_process, err, sizeof(err)));
    assert_true(err[0] != '\0');
    err[0] = '\0';
    assert_null(of_harness_new(NULL, err, sizeof(err)));
    assert_true(err[0] != '\0');
}

static void test_load_plugin_file(void **state)
{
    (void)state;
    char err[1024] = "";
    assert_null(of_harness_load("/nonexistent/dir/stage.so", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/dir/stage.so"));
    const char *path = OF_BUILD_PLUGIN_DIR "/keyword-router.so";
    if (access(path, R_OK) != 0) {
        print_message("skipping the loader half: %s is not built\n", path);
        return;
    }
    of_harness *h = of_harness_load(path, err, sizeof(err));
    if (!h)
        fail_msg("of_harness_load: %s", err);
    assert_int_equal(of_harness_set(h, "keyword", "urgent"), 0);
    start(h);
    assert_int_equal(of_harness_feed_str(h, "o-1", "an urgent order"), 0);
    assert_int_equal(of_harness_feed_str(h, "o-2", "a calm order"), 0);
    assert_int_equal(of_harness_drain(h, 10000), 0);
    assert_int_equal(of_harness_count(h, "matched"), 1);
    assert_int_equal(of_harness_count(h, "unmatched"), 1);
    assert_string_equal(of_harness_key(h, "matched", 0, NULL), "o-1");
    of_harness_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feed_drain_collect),
        cmocka_unit_test(test_retries_exhausted_dead_letter),
        cmocka_unit_test(test_concurrency_keeps_key_order),
        cmocka_unit_test(test_option_errors_and_lifecycle),
        cmocka_unit_test(test_drain_timeout),
        cmocka_unit_test(test_bad_descriptors_refused),
        cmocka_unit_test(test_load_plugin_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
