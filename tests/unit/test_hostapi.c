/* The host function table: completeness, memory, configuration accessors (names outside the
 * table included), the input event, emit, set_reason, custom metrics, identity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "log.h"
#include "metrics.h"
#include "options.h"
#include "stage_runtime.h"

#include <stdlib.h>
#include <string.h>

/* ---- the table -------------------------------------------------------------------------- */

static void test_table_complete(void **state)
{
    (void)state;
    const of_host_api *api = of_host_api_get();
    assert_non_null(api);
    assert_ptr_equal(api, of_host_api_get()); /* one static table */
    assert_int_equal(api->abi_major, OF_ABI_MAJOR);
    assert_int_equal(api->abi_minor, OF_ABI_MINOR);
    assert_int_equal(api->size, sizeof(of_host_api));
    /* Every slot after the header is a function pointer and none is NULL. */
    size_t first = offsetof(of_host_api, alloc);
    size_t n = (sizeof(of_host_api) - first) / sizeof(void (*)(void));
    assert_int_equal(n, 63); /* 34 in ABI 1.0, 24 more in 1.1, 3 in 1.2, 1 in 1.4, 1 in 1.6 */
    for (size_t i = 0; i < n; i++) {
        void (*fn)(void);
        memcpy(&fn, (const char *)api + first + i * sizeof(fn), sizeof(fn));
        if (!fn)
            fail_msg("host table slot %zu is NULL", i);
    }
    assert_true(OF_API_HAS(api, pipeline_name));
    assert_true(OF_API_HAS(api, emit));
    assert_true(OF_API_HAS(api, ws_publish));
    assert_true(OF_API_HAS(api, cache_set_after_commit));
    assert_true(OF_API_HAS(api, http_batch_handler));
    /* A table of a 1.2 host (its size ends after ws_publish) does not have it. */
    of_host_api older = *api;
    older.size = (uint32_t)(offsetof(of_host_api, ws_publish) + sizeof(api->ws_publish));
    assert_true(OF_API_HAS(&older, ws_publish));
    assert_false(OF_API_HAS(&older, cache_set_after_commit));
}

static void test_memory(void **state)
{
    (void)state;
    const of_host_api *api = of_host_api_get();
    char *p = api->alloc(16);
    assert_non_null(p);
    memset(p, 'x', 16);
    p = api->realloc(p, 64);
    assert_non_null(p);
    assert_int_equal(p[15], 'x');
    api->free(p);
    int *z = api->calloc(8, sizeof(int));
    for (int i = 0; i < 8; i++)
        assert_int_equal(z[i], 0);
    api->free(z);
    char *s = api->strdup("hello");
    assert_string_equal(s, "hello");
    api->free(s);
    assert_null(api->strdup(NULL));
    api->free(NULL);
}

/* ---- configuration ---------------------------------------------------------------------- */

static const char *const modes[] = {"fast", "safe", NULL};
static const of_option table[] = {
    {.name = "name", .type = OF_OPT_STRING},
    {.name = "count", .type = OF_OPT_INT, .default_value = "42"},
    {.name = "verbose", .type = OF_OPT_BOOL},
    {.name = "ratio", .type = OF_OPT_DOUBLE},
    {.name = "timeout", .type = OF_OPT_DURATION},
    {.name = "buffer", .type = OF_OPT_SIZE},
    {.name = "mode", .type = OF_OPT_ENUM, .enum_values = modes},
    {.name = "tags", .type = OF_OPT_LIST},
    {.name = "unset", .type = OF_OPT_STRING},
    {.name = "password", .type = OF_OPT_STRING, .flags = OF_OPT_SECRET},
    {.name = NULL},
};

static char *tag_items[] = {(char *)"a", (char *)"b"};

static void hand_config(of_config *cfg, of_config_value *v)
{
    memset(v, 0, 10 * sizeof(*v));
    for (int i = 0; i < 10; i++)
        v[i].option = &table[i];
    v[0] = (of_config_value){&table[0], 1, 1, (char *)"orders", 0, 0, 0, NULL, 0};
    v[1] = (of_config_value){&table[1], 0, 1, (char *)"42", 42, 0, 0, NULL, 0};
    v[2] = (of_config_value){&table[2], 1, 1, (char *)"yes", 1, 0, 0, NULL, 0};
    v[3] = (of_config_value){&table[3], 1, 1, (char *)"0.25", 0, 0, 0.25, NULL, 0};
    v[4] = (of_config_value){&table[4], 1, 1, (char *)"1.5s", 1500, 0, 0, NULL, 0};
    v[5] = (of_config_value){&table[5], 1, 1, (char *)"64KiB", 0, 65536, 0, NULL, 0};
    v[6] = (of_config_value){&table[6], 1, 1, (char *)"safe", 1, 0, 0, NULL, 0};
    v[7] = (of_config_value){&table[7], 1, 1, (char *)"a,b", 0, 0, 0, tag_items, 2};
    v[8] = (of_config_value){&table[8], 0, 0, NULL, 0, 0, 0, NULL, 0};
    v[9] = (of_config_value){&table[9], 1, 1, (char *)"hunter2", 0, 0, 0, NULL, 0};
    cfg->values = v;
    cfg->count = 10;
}

static void check_config(const of_host_api *api, const of_config *cfg)
{
    assert_string_equal(api->config_string(cfg, "name"), "orders");
    assert_string_equal(api->config_string(cfg, "password"), "hunter2");
    assert_null(api->config_string(cfg, "unset"));
    assert_int_equal(api->config_int(cfg, "count"), 42);
    assert_int_equal(api->config_bool(cfg, "verbose"), 1);
    assert_true(api->config_double(cfg, "ratio") == 0.25);
    assert_int_equal(api->config_duration_ms(cfg, "timeout"), 1500);
    assert_int_equal(api->config_size(cfg, "buffer"), 65536);
    assert_int_equal(api->config_enum(cfg, "mode"), 1);
    assert_string_equal(api->config_string(cfg, "mode"), "safe");
    assert_int_equal(api->config_list_count(cfg, "tags"), 2);
    assert_string_equal(api->config_list_item(cfg, "tags", 0), "a");
    assert_string_equal(api->config_list_item(cfg, "tags", 1), "b");
    assert_null(api->config_list_item(cfg, "tags", 2));
    assert_int_equal(api->config_is_set(cfg, "name"), 1);
    assert_int_equal(api->config_is_set(cfg, "count"), 0); /* defaulted, not given */
    assert_int_equal(api->config_is_set(cfg, "unset"), 0);
    /* Related types convert where it makes sense. */
    assert_true(api->config_double(cfg, "count") == 42.0);
    assert_int_equal(api->config_int(cfg, "timeout"), 1500);
}

static void test_config_accessors(void **state)
{
    (void)state;
    const of_host_api *api = of_host_api_get();
    of_config cfg;
    of_config_value v[10];
    hand_config(&cfg, v);
    check_config(api, &cfg);
}

static void test_config_from_pairs(void **state)
{
    (void)state;
    /* The same through the real validation path the harness and CLI use. */
    const of_host_api *api = of_host_api_get();
    const char *keys[] = {"name",   "verbose", "ratio", "timeout",
                          "buffer", "mode",    "tags",  "password"};
    const char *vals[] = {"orders", "yes", "0.25", "1.5s", "64KiB", "safe", "a,b", "hunter2"};
    char err[512] = "";
    of_config *cfg = of_config_from_pairs(table, keys, vals, 8, err, sizeof(err));
    if (!cfg)
        fail_msg("of_config_from_pairs: %s", err);
    check_config(api, cfg);
    of_config_free(cfg);
}

static void test_config_unknown_and_wrong_type(void **state)
{
    (void)state;
    const of_host_api *api = of_host_api_get();
    of_config cfg;
    of_config_value v[10];
    hand_config(&cfg, v);
    of_log_level_t saved = of_log_get_level();
    of_log_set_level(OF_LVL_ERROR);
    /* Names outside the table: logged, neutral values, no crash. */
    assert_null(api->config_string(&cfg, "nope"));
    assert_int_equal(api->config_int(&cfg, "nope"), 0);
    assert_int_equal(api->config_bool(&cfg, "nope"), 0);
    assert_true(api->config_double(&cfg, "nope") == 0);
    assert_int_equal(api->config_duration_ms(&cfg, "nope"), 0);
    assert_int_equal(api->config_size(&cfg, "nope"), 0);
    assert_int_equal(api->config_enum(&cfg, "nope"), -1);
    assert_int_equal(api->config_list_count(&cfg, "nope"), 0);
    assert_null(api->config_list_item(&cfg, "nope", 0));
    assert_int_equal(api->config_is_set(&cfg, "nope"), 0);
    assert_null(api->config_string(&cfg, NULL));
    assert_int_equal(api->config_int(NULL, "count"), 0);
    assert_null(api->config_string(NULL, "name"));
    /* Wrong kinds. */
    assert_int_equal(api->config_bool(&cfg, "name"), 0);
    assert_int_equal(api->config_duration_ms(&cfg, "count"), 0);
    assert_int_equal(api->config_enum(&cfg, "name"), -1);
    assert_int_equal(api->config_list_count(&cfg, "name"), 0);
    assert_int_equal(api->config_int(&cfg, "tags"), 0);
    of_log_set_level(saved);
}

/* ---- calls ------------------------------------------------------------------------------ */

static const char *const outs[] = {"ok", "spare", NULL};
static of_status nop(void *i, of_call *c)
{
    (void)i;
    (void)c;
    return OF_OK;
}
static const of_stage_descriptor desc = {OF_DESCRIPTOR_HEADER, .name = "unit", .version = "1",
                                         .outputs = outs, .process = nop};

typedef struct fake {
    of_stage_def def;
    of_output_map maps[1];
    char *inputs[1];
    of_stage st;
} fake;

static void fake_stage(fake *f, of_metrics *m)
{
    memset(f, 0, sizeof(*f));
    f->def.name = (char *)"enrich";
    f->def.plugin_name = (char *)"unit";
    f->inputs[0] = (char *)"orders";
    f->def.inputs = f->inputs;
    f->def.n_inputs = 1;
    f->maps[0].output = (char *)"ok";
    f->maps[0].topic = (char *)"orders.ok";
    f->def.outputs = f->maps;
    f->def.n_outputs = 1;
    assert_int_equal(of_stage_setup(&f->st, "shop", &f->def, &desc, m), 0);
}

static of_event *input_event(void)
{
    of_event *ev = of_event_new("key-1", 5, "{\"a\":1}", 7);
    assert_non_null(ev);
    assert_int_equal(of_event_set_topic(ev, "orders"), 0);
    ev->partition = 2;
    ev->offset = 17;
    assert_int_equal(of_event_add_header(ev, "traceparent",
                                         "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                         55),
                     0);
    assert_int_equal(of_event_add_header(ev, "ce_type", "order", 5), 0);
    assert_int_equal(of_event_add_header(ev, "dup", "1", 1), 0);
    assert_int_equal(of_event_add_header(ev, "dup", "2", 1), 0);
    return ev;
}

static void test_event_accessors_and_identity(void **state)
{
    (void)state;
    const of_host_api *api = of_host_api_get();
    fake f;
    fake_stage(&f, NULL);
    assert_string_equal(api->stage_name(&f.st), "enrich");
    assert_string_equal(api->pipeline_name(&f.st), "shop");
    assert_string_equal(f.st.dead_letter, "orders.dlq"); /* default: <first input>.dlq */
    of_event *ev = input_event();
    of_call call;
    of_call_init(&call, &f.st, ev, 2);
    size_t len = 99;
    assert_memory_equal(api->event_key(&call, &len), "key-1", 5);
    assert_int_equal(len, 5);
    assert_string_equal(api->event_payload(&call, &len), "{\"a\":1}");
    assert_int_equal(len, 7);
    assert_memory_equal(api->event_header(&call, "dup", &len), "1", 1); /* the first */
    assert_null(api->event_header(&call, "missing", &len));
    assert_int_equal(len, 0);
    assert_int_equal(api->event_header_count(&call), 4);
    of_header h;
    assert_int_equal(api->event_header_at(&call, 3, &h), 0);
    assert_string_equal(h.name, "dup");
    assert_memory_equal(h.value, "2", 1);
    assert_int_equal(api->event_header_at(&call, 4, &h), -1);
    assert_string_equal(api->event_topic(&call), "orders");
    assert_int_equal(api->event_partition(&call), 2);
    assert_int_equal(api->event_offset(&call), 17);
    assert_int_equal(api->event_attempt(&call), 2);
    of_call_reset(&call);
    of_event_free(ev);

    of_event *keyless = of_event_new(NULL, 0, NULL, 0);
    of_call_init(&call, &f.st, keyless, 1);
    len = 99;
    assert_null(api->event_key(&call, &len));
    assert_int_equal(len, 0);
    const char *p = api->event_payload(&call, &len);
    assert_non_null(p);
    assert_int_equal(len, 0);
    of_event_free(keyless);
    of_stage_cleanup(&f.st);
}

static void test_emit_and_reason(void **state)
{
    (void)state;
    const of_host_api *api = of_host_api_get();
    fake f;
    fake_stage(&f, NULL);
    of_event *ev = input_event();
    of_call call;
    of_call_init(&call, &f.st, ev, 1);
    of_log_level_t saved = of_log_get_level();
    of_log_set_level(OF_LVL_ERROR);
    assert_int_equal(api->emit(&call, "spare", NULL, 0, "x", 1, NULL, 0), -1);   /* unmapped */
    assert_int_equal(api->emit(&call, "missing", NULL, 0, "x", 1, NULL, 0), -1); /* undeclared */
    assert_int_equal(api->emit(&call, NULL, NULL, 0, "x", 1, NULL, 0), -1);
    of_log_set_level(saved);
    assert_int_equal(call.n_emitted, 0);
    of_header own[] = {{"traceparent", "00-mine-01", 10}, {"x", "y", 1}};
    assert_int_equal(api->emit(&call, "ok", NULL, 0, "out1", 4, own, 2), 0);
    assert_int_equal(api->emit(&call, "ok", "k2", 2, NULL, 0, NULL, 0), 0);
    assert_int_equal(call.n_emitted, 2);
    const of_event *a = call.emitted[0].event, *b = call.emitted[1].event;
    assert_string_equal(call.emitted[0].topic, "orders.ok");
    assert_string_equal(call.emitted[0].output, "ok");
    assert_string_equal(a->key, "key-1");
    assert_string_equal(a->payload, "out1");
    assert_string_equal(of_event_header_get(a, "traceparent")->value, "00-mine-01");
    assert_string_equal(of_event_header_get(a, "x")->value, "y");
    assert_string_equal(of_event_header_get(a, "ce_type")->value, "shop.enrich.ok");
    assert_string_equal(of_event_header_get(a, "ce_source")->value, "orderflow/shop/enrich");
    assert_null(of_event_header_get(a, "dup"));
    assert_string_equal(b->key, "k2");
    assert_int_equal(b->payload_len, 0);
    const char *tp = of_event_header_get(b, "traceparent")->value;
    assert_memory_equal(tp, "00-0af7651916cd43dd8448eb211c80319c-", 36); /* same trace */
    assert_memory_not_equal(tp + 36, "b7ad6b7169203331", 16);            /* new span */
    assert_string_equal(tp + 52, "-01");
    assert_string_not_equal(of_event_header_get(a, "ce_id")->value,
                            of_event_header_get(b, "ce_id")->value);

    assert_null(of_call_reason(&call));
    api->set_reason(&call, "first");
    api->set_reason(&call, "code %d: %s", 7, "bad");
    assert_string_equal(of_call_reason(&call), "code 7: bad");
    char *big = malloc(5000);
    memset(big, 'r', 4999);
    big[4999] = '\0';
    api->set_reason(&call, "%s", big);
    assert_int_equal(strlen(of_call_reason(&call)), OF_REASON_MAX - 1);
    free(big);
    of_call_reset(&call); /* frees what was emitted */
    assert_int_equal(call.n_emitted, 0);
    assert_null(of_call_reason(&call));
    of_event_free(ev);
    of_stage_cleanup(&f.st);
}

static void test_custom_metrics(void **state)
{
    (void)state;
    const of_host_api *api = of_host_api_get();
    of_metrics *m = of_metrics_new();
    fake f;
    fake_stage(&f, m);
    of_log_level_t saved = of_log_get_level();
    of_log_set_level(OF_LVL_ERROR);
    of_counter *c = api->counter_register(&f.st, "orders_seen", "Orders seen");
    assert_non_null(c);
    assert_ptr_equal(api->counter_register(&f.st, "orders_seen", "again"), c);
    assert_null(api->counter_register(&f.st, "Bad-Name", ""));
    assert_null(api->counter_register(&f.st, NULL, ""));
    api->counter_add(c, 2);
    api->counter_add(c, 0.5);
    api->counter_add(c, -1); /* ignored */
    api->counter_add(NULL, 1);
    struct of_counter *found = of_metrics_find_counter(m, "plugin_orders_seen", "shop", "enrich");
    assert_ptr_equal(found, c);
    assert_true(of_counter_value(found) == 2.5);
    const double bounds[] = {1, 10, 100};
    of_histogram *h = api->histogram_register(&f.st, "latency_ms", "", bounds, 3);
    assert_non_null(h);
    api->histogram_observe(h, 5);
    api->histogram_observe(NULL, 5);
    assert_int_equal(atomic_load(&h->buckets[1]), 1);
    const double bad[] = {10, 1};
    assert_null(api->histogram_register(&f.st, "bad_bounds", "", bad, 2));
    double many[40] = {0};
    for (int i = 0; i < 40; i++)
        many[i] = i;
    assert_null(api->histogram_register(&f.st, "too_many", "", many, 40));
    /* A stage without a registry gets NULL, not a crash. */
    fake g;
    fake_stage(&g, NULL);
    assert_null(api->counter_register(&g.st, "x", ""));
    of_log_set_level(saved);
    /* The runner's own counters exist for the stage too. */
    assert_non_null(of_metrics_find_counter(m, "stage_events_received", "shop", "enrich"));
    of_stage_cleanup(&g.st);
    of_stage_cleanup(&f.st);
    of_metrics_free(m);
}

static void test_log(void **state)
{
    (void)state;
    const of_host_api *api = of_host_api_get();
    fake f;
    fake_stage(&f, NULL);
    of_log_level_t saved = of_log_get_level();
    of_log_set_level(OF_LVL_WARN);
    assert_int_equal(api->log_enabled(&f.st, OF_LOG_ERROR), 1);
    assert_int_equal(api->log_enabled(&f.st, OF_LOG_WARN), 1);
    assert_int_equal(api->log_enabled(&f.st, OF_LOG_INFO), 0);
    assert_int_equal(api->log_enabled(&f.st, OF_LOG_DEBUG), 0);
    api->log(&f.st, OF_LOG_DEBUG, "not shown %d", 1);
    api->log(NULL, OF_LOG_WARN, "a warning without a stage (expected in the test output)");
    of_log_set_level(saved);
    of_stage_cleanup(&f.st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_complete),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_config_accessors),
        cmocka_unit_test(test_config_from_pairs),
        cmocka_unit_test(test_config_unknown_and_wrong_type),
        cmocka_unit_test(test_event_accessors_and_identity),
        cmocka_unit_test(test_emit_and_reason),
        cmocka_unit_test(test_custom_metrics),
        cmocka_unit_test(test_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
