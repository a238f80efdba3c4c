/* Pipeline file validation: every problem with its position, defaults, implied dead-letter
 * topics, topic warnings and the tests: schema. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX OF_SOURCE_DIR "/tests/fixtures/config/"

/* ---- a registry of descriptors defined here ---- */

static of_status noop_process(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const char *const router_outputs[] = {"matched", "unmatched", NULL};
static const char *const router_modes[] = {"any", "all", NULL};
static const of_option router_options[] = {
    {.name = "keywords", .type = OF_OPT_LIST, .flags = OF_OPT_REQUIRED | OF_OPT_HAS_MIN, .min = 1},
    {.name = "timeout", .type = OF_OPT_DURATION, .default_value = "1s"},
    {.name = "mode", .type = OF_OPT_ENUM, .default_value = "any", .enum_values = router_modes},
    {.name = NULL}};

static const of_stage_descriptor router_desc = {
    OF_DESCRIPTOR_HEADER,      .name = "test-router",
    .version = "1.0.0",        .description = "routes by keyword",
    .options = router_options, .outputs = router_outputs,
    .process = noop_process,
};

static const of_stage_descriptor sink_desc = {
    OF_DESCRIPTOR_HEADER,    .name = "test-sink",
    .version = "1.0.0",      .description = "swallows events",
    .process = noop_process,
};

static of_plugin_registry reg;
static of_diag d;

static void add_plugin(const of_stage_descriptor *desc)
{
    of_plugin *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->name = strdup(desc->name);
    p->path = strdup("<test>");
    p->handle = NULL;
    p->desc = desc;
    char err[256];
    assert_int_equal(of_registry_add(&reg, p, err, sizeof(err)), 0);
}

static int setup(void **state)
{
    (void)state;
    of_diag_init(&d);
    of_registry_init(&reg);
    add_plugin(&router_desc);
    add_plugin(&sink_desc);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    of_diag_free(&d);
    /* Freed by hand: these plugins were never loaded from a file. */
    for (size_t i = 0; i < reg.count; i++) {
        free(reg.plugins[i]->name);
        free(reg.plugins[i]->path);
        free(reg.plugins[i]);
    }
    free(reg.plugins);
    memset(&reg, 0, sizeof(reg));
    return 0;
}

static void dump(void)
{
    for (size_t i = 0; i < d.count; i++)
        fprintf(stderr, "  diag %s %d:%d %s\n", d.entries[i].severity ? "W" : "E",
                d.entries[i].line, d.entries[i].column, d.entries[i].message);
}

/* Finds a diagnostic containing needle at line:column (column < 0: any column). */
static void expect_at(of_severity sev, const char *needle, int line, int column)
{
    for (size_t i = 0; i < d.count; i++) {
        const of_diag_entry *e = &d.entries[i];
        if (strstr(e->message, needle) && e->severity == sev) {
            if (e->line != line || (column >= 0 && e->column != column)) {
                dump();
                fail_msg("'%s' at %d:%d, expected %d:%d", e->message, e->line, e->column, line,
                         column);
            }
            return;
        }
    }
    dump();
    fail_msg("no %s containing '%s'", sev == OF_SEV_ERROR ? "error" : "warning", needle);
}

#define expect_error(n, l, c)   expect_at(OF_SEV_ERROR, n, l, c)
#define expect_warning(n, l, c) expect_at(OF_SEV_WARNING, n, l, c)

static of_pipeline *from_text(const char *text, const of_plugin_registry *r)
{
    of_ydoc *doc = of_ydoc_load_buffer("p.yaml", text, strlen(text), &d);
    assert_non_null(doc);
    of_pipeline *p = of_pipeline_from_ydoc(doc, r, &d);
    of_ydoc_free(doc);
    return p;
}

static const of_stage_def *stage(const of_pipeline *p, const char *name)
{
    for (size_t i = 0; i < p->n_stages; i++)
        if (strcmp(p->stages[i].name, name) == 0)
            return &p->stages[i];
    fail_msg("no stage %s", name);
    return NULL;
}

/* ---- tests ---- */

static void test_valid_with_defaults(void **state)
{
    (void)state;
    of_pipeline *p = of_pipeline_load(FIX "pipelines/orders.yaml", &reg, &d);
    if (!p)
        dump();
    assert_non_null(p);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.warnings, 0);
    assert_string_equal(p->name, "orders");
    assert_string_equal(p->description, "Routes incoming orders");
    assert_string_equal(p->file, FIX "pipelines/orders.yaml");

    const of_topic_def *in = of_pipeline_topic(p, "orders.in");
    assert_non_null(in);
    assert_int_equal(in->partitions, 4);
    assert_int_equal(in->replication, 1);
    assert_int_equal(in->external, 1);
    assert_int_equal(in->line, 4);
    assert_int_equal(in->column, 3);
    const of_topic_def *ok = of_pipeline_topic(p, "orders.ok");
    assert_int_equal(ok->partitions, 3);
    assert_int_equal(ok->external, 0);
    assert_int_equal(of_pipeline_topic(p, "orders.bad")->partitions, 2);
    /* implied dead-letter topics, partitions of the first input */
    const of_topic_def *dlq = of_pipeline_topic(p, "orders.in.dlq");
    assert_non_null(dlq);
    assert_int_equal(dlq->partitions, 4);
    const of_topic_def *dlq2 = of_pipeline_topic(p, "orders.ok.dlq");
    assert_non_null(dlq2);
    assert_int_equal(dlq2->partitions, 3);
    assert_int_equal(p->n_topics, 5);
    assert_null(of_pipeline_topic(p, "nope"));

    assert_int_equal(p->n_stages, 2);
    const of_stage_def *r = stage(p, "route");
    assert_string_equal(r->plugin_name, "test-router");
    assert_ptr_equal(r->plugin->desc, &router_desc);
    assert_int_equal(r->n_inputs, 1);
    assert_string_equal(r->inputs[0], "orders.in");
    assert_int_equal(r->n_outputs, 2);
    assert_string_equal(r->outputs[1].output, "unmatched");
    assert_string_equal(r->outputs[1].topic, "orders.bad");
    assert_int_equal(r->concurrency, 1);
    assert_int_equal(r->max_in_flight, 1000);
    assert_int_equal(r->batch, 1);
    assert_string_equal(r->consumer_group, "orderflow.orders.route");
    assert_string_equal(r->dead_letter, "orders.in.dlq");
    assert_int_equal(r->retry.max_attempts, 5);
    assert_int_equal(r->retry.initial_backoff_ms, 100);
    assert_int_equal(r->retry.max_backoff_ms, 30000);
    assert_true(r->retry.multiplier == 2.0);
    assert_true(r->retry.jitter == 0.2);
    assert_int_equal(r->line, 11);
    assert_int_equal(r->column, 5);
    assert_non_null(r->config);
    const of_config_value *kw = of_config_find(r->config, "keywords");
    assert_int_equal(kw->list_count, 2);
    assert_string_equal(kw->list[1], "rush");
    assert_int_equal(of_config_find(r->config, "timeout")->i, 1000);

    const of_stage_def *s = stage(p, "sink");
    assert_int_equal(s->n_inputs, 2);
    assert_int_equal(s->n_outputs, 0);
    assert_non_null(s->config);
    assert_int_equal(s->config->count, 0);
    assert_int_equal(p->n_tests, 0);
    of_pipeline_free(p);
}

static void test_every_mistake_reported(void **state)
{
    (void)state;
    of_pipeline *p = of_pipeline_load(FIX "pipeline_mistakes.yaml", &reg, &d);
    assert_null(p);
    expect_error("bad pipeline name 'Bad_Name'", 1, 11);
    expect_error("unknown key 'descripton' in the pipeline file (did you mean 'description'?)", 2,
                 1);
    expect_error("topic 'orders.in' partitions must be between 1 and 1024; got 0", 5, 17);
    expect_error("topic 'orders.in' external: expected a boolean", 6, 15);
    expect_error("unknown key 'replicaton' in topic 'orders.bad' (did you mean 'replication'?)", 9,
                 5);
    expect_error("stage 'route' inputs must be a list of topic names", 13, 13);
    expect_error("plugin 'test-router' has no output 'unmatchd' (did you mean 'unmatched'?); its "
                 "outputs: matched, unmatched",
                 16, 7);
    expect_error("output 'unmatched' of plugin 'test-router' is not mapped to a topic", 15, 7);
    expect_error("stage 'route' concurrency must be between 1 and 256; got 300", 17, 18);
    expect_error("retry.max_backoff (1s) is below initial_backoff (5s)", 20, 20);
    expect_error("retry.multiplier must be at least 1; got 0.5", 21, 19);
    expect_error("stage 'route' config: option 'keywords' expects a list", 23, 17);
    expect_error("stage 'route' config: unknown option 'timout' (did you mean 'timeout'?)", 24, 7);
    expect_error("duplicate stage name 'route' (first defined at line 11)", 25, 11);
    expect_error("unknown plugin 'tset-sink' (did you mean 'test-sink'?); available: test-router, "
                 "test-sink",
                 26, 13);
    expect_error("input topic 'order.bad' is not declared under topics: (did you mean "
                 "'orders.bad'?)",
                 27, 25);
    expect_error("stage #3 is missing required key 'name'", 28, 5);
    expect_error("dead_letter must be a string; got a sequence", 30, 18);
    expect_error("a stage's name must be a string; got a sequence", 31, 11);
    expect_error("plugin 'test-sink' has no outputs, so output 'out' cannot be mapped", 35, 7);
    expect_error("test 't1' input topic 'nope' is not declared", 39, 14);
    expect_error("test 't1' expect_empty must be a list of topics; got 'orders.ok'", 41, 19);
    if (d.errors != 22)
        dump();
    assert_int_equal(d.errors, 22);
}

static void test_tests_schema(void **state)
{
    (void)state;
    of_pipeline *p = of_pipeline_load(FIX "pipeline_tests.yaml", &reg, &d);
    if (!p)
        dump();
    assert_non_null(p);
    assert_int_equal(p->n_tests, 2);
    const of_test_def *t = &p->tests[0];
    assert_string_equal(t->name, "one input block");
    assert_int_equal(t->line, 13);
    assert_int_equal(t->n_inputs, 4);

    const of_test_event *e = &t->inputs[0];
    assert_string_equal(e->topic, "in");
    assert_string_equal(e->key, "k1");
    assert_string_equal(e->value,
                        "{\"text\":\"urgent\",\"n\":1,\"ok\":true,\"none\":null,\"list\":[1,\"2\","
                        "2.5]}");
    assert_int_equal(e->value_is_json, 1);
    assert_int_equal(e->n_headers, 2);
    assert_string_equal(e->headers[0].name, "source");
    assert_string_equal(e->headers[0].value, "web");
    assert_string_equal(e->headers[1].name, "attempt");
    assert_string_equal(e->headers[1].value, "1");
    assert_int_equal(e->line, 17);
    assert_int_equal(e->column, 11);

    e = &t->inputs[1];
    assert_null(e->key);
    assert_string_equal(e->value, "{\"already\": \"json\"}");
    assert_int_equal(e->value_is_json, 1);
    e = &t->inputs[2];
    assert_string_equal(e->value, "plain text");
    assert_int_equal(e->value_is_json, 0);
    e = &t->inputs[3];
    assert_string_equal(e->value, ""); /* an input without value has an empty payload */

    assert_int_equal(t->n_expect, 2);
    assert_string_equal(t->expect[0].topic, "out.ok");
    assert_int_equal(t->expect[0].value_is_json, 1);
    assert_string_equal(t->expect[1].topic, "out.bad");
    assert_string_equal(t->expect[1].key, "k3");
    assert_null(t->expect[1].value); /* any payload */
    assert_int_equal(t->n_expect_empty, 1);
    assert_string_equal(t->expect_empty[0], "in.dlq"); /* implied dead-letter topic */

    t = &p->tests[1];
    assert_int_equal(t->n_inputs, 2);
    assert_string_equal(t->inputs[0].topic, "in");
    assert_string_equal(t->inputs[1].topic, "out.ok");
    assert_string_equal(t->inputs[1].value, "[1,2]");
    assert_int_equal(t->n_expect, 0);
    of_pipeline_free(p);
}

static void test_warnings_only(void **state)
{
    (void)state;
    of_pipeline *p = of_pipeline_load(FIX "pipeline_warnings.yaml", &reg, &d);
    if (!p)
        dump();
    assert_non_null(p);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.warnings, 2);
    expect_warning("topic 'in' is consumed by stage 'route' but nothing produces it (mark it "
                   "external: true if it comes from outside)",
                   11, 14);
    expect_warning("topic 'unused' is declared but no stage reads or writes it", 5, 3);
    /* dead_letter: errors is implied with the partitions of 'in' */
    const of_topic_def *t = of_pipeline_topic(p, "errors");
    assert_non_null(t);
    assert_int_equal(t->partitions, 3);
    assert_string_equal(p->stages[0].dead_letter, "errors");
    of_pipeline_free(p);
}

static void test_null_registry(void **state)
{
    (void)state;
    of_pipeline *p = of_pipeline_load(FIX "pipelines/orders.yaml", NULL, &d);
    assert_non_null(p);
    assert_null(p->stages[0].plugin);
    assert_null(p->stages[0].config);
    assert_int_equal(p->stages[0].n_outputs, 2);
    of_pipeline_free(p);
}

static void test_structure_errors(void **state)
{
    (void)state;
    assert_null(from_text("", &reg));
    assert_non_null(strstr(d.entries[0].message, "the file is empty"));
    of_diag_free(&d);

    assert_null(from_text("- a\n", &reg));
    expect_error("a pipeline file must be a mapping", 1, 1);
    of_diag_free(&d);

    assert_null(from_text("description: x\n", &reg));
    expect_error("missing required key 'pipeline'", 1, 1);
    expect_error("missing required key 'stages'", 1, 1);
    of_diag_free(&d);

    assert_null(from_text("pipeline: p\nstages: []\n", &reg));
    expect_error("'stages' must be a non-empty list of stages; got an empty list", 2, 9);
    of_diag_free(&d);

    assert_null(from_text("pipeline: p\nstages:\n  - just-a-string\n", &reg));
    expect_error("each stage must be a mapping", 3, 5);
    of_diag_free(&d);

    assert_null(from_text("pipeline: p\nstages:\n  - {name: s}\n", &reg));
    expect_error("stage 's' is missing required key 'plugin'", 3, 5);
    expect_error("stage 's' has no inputs and serves no route", 3, 5);
}

static void test_stage_errors(void **state)
{
    (void)state;
    /* self loop, undeclared output topic, missing required config option at the stage */
    assert_null(from_text("pipeline: p\n"
                          "topics: {a: {external: true}, b: }\n"
                          "stages:\n"
                          "  - name: s\n"
                          "    plugin: test-router\n"
                          "    inputs: [a, b]\n"
                          "    outputs: {matched: b, unmatched: c}\n",
                          &reg));
    expect_error("stage 's' consumes topic 'b' that it produces itself (a loop)", 6, 17);
    expect_error("output 'unmatched' goes to undeclared topic 'c'", 7, 38);
    expect_error("stage 's' config: missing required option 'keywords'", 4, 5);
    assert_int_equal(d.errors, 3);
    of_diag_free(&d);

    /* no outputs at all for a plugin that has some; empty inputs; values as quoted strings */
    assert_null(from_text("pipeline: p\n"
                          "topics: {a: {external: true}}\n"
                          "stages:\n"
                          "  - name: s\n"
                          "    plugin: test-router\n"
                          "    inputs: []\n"
                          "    concurrency: \"4\"\n"
                          "    max_in_flight: 0\n"
                          "    retry: {jitter: 1.5, max_attempts: x}\n"
                          "    config: {keywords: [k]}\n"
                          "    batch: 1001\n",
                          &reg));
    expect_error("output 'matched' of plugin 'test-router' is not mapped", 4, 5);
    expect_error("output 'unmatched' of plugin 'test-router' is not mapped", 4, 5);
    expect_error("stage 's' inputs must name at least one topic", 6, 13);
    expect_error("max_in_flight must be between 1 and 1000000; got 0", 8, 20);
    expect_error("retry.jitter must be between 0 and 1; got 1.5", 9, 21);
    expect_error("retry.max_attempts: expected an integer", 9, 40);
    expect_error("stage 's' batch must be between 1 and 1000; got 1001", 11, 12);
    assert_int_equal(d.errors, 7);
    of_diag_free(&d);

    /* unknown plugin with an empty registry */
    of_plugin_registry empty;
    of_registry_init(&empty);
    assert_null(from_text("pipeline: p\ntopics: {a: {external: true}}\n"
                          "stages: [{name: s, plugin: x, inputs: [a]}]\n",
                          &empty));
    expect_error("unknown plugin 'x' (no plugins are loaded", 3, 28);
}

static void test_consumer_group_and_overrides(void **state)
{
    (void)state;
    of_pipeline *p = from_text("pipeline: p\n"
                               "topics: {a: {external: true, partitions: 7, replication: 2}, "
                               "dl: {}}\n"
                               "stages:\n"
                               "  - name: s\n"
                               "    plugin: test-sink\n"
                               "    inputs: [a]\n"
                               "    concurrency: 8\n"
                               "    max_in_flight: 50\n"
                               "    batch: 64\n"
                               "    consumer_group: custom\n"
                               "    dead_letter: dl\n"
                               "    retry: {max_attempts: 2, initial_backoff: 1s, max_backoff: "
                               "1s, multiplier: 1, jitter: 0}\n",
                               &reg);
    if (!p)
        dump();
    assert_non_null(p);
    const of_stage_def *s = &p->stages[0];
    assert_int_equal(s->concurrency, 8);
    assert_int_equal(s->max_in_flight, 50);
    assert_int_equal(s->batch, 64);
    assert_string_equal(s->consumer_group, "custom");
    assert_string_equal(s->dead_letter, "dl");
    assert_int_equal(p->n_topics, 2); /* dl declared: nothing implied */
    assert_int_equal(s->retry.max_attempts, 2);
    assert_int_equal(s->retry.initial_backoff_ms, 1000);
    assert_int_equal(s->retry.max_backoff_ms, 1000);
    assert_true(s->retry.multiplier == 1.0);
    assert_true(s->retry.jitter == 0.0);
    assert_int_equal(of_pipeline_topic(p, "a")->replication, 2);
    assert_int_equal(d.warnings, 0);
    of_pipeline_free(p);
}

static void test_test_errors(void **state)
{
    (void)state;
    assert_null(from_text("pipeline: p\n"
                          "topics: {a: {external: true}}\n"
                          "stages: [{name: s, plugin: test-sink, inputs: [a]}]\n"
                          "tests:\n"
                          "  - name: x\n"
                          "    input: {topic: a, events: []}\n"
                          "    expect:\n"
                          "      - {topic: zz, events: [{key: [1]}]}\n"
                          "  - name: x\n"
                          "    inputs: [{events: [{valu: 1}]}]\n"
                          "  - {name: y}\n"
                          "  - name: z\n"
                          "    input: {topic: a, events: [{headers: {h: [1]}}]}\n",
                          &reg));
    expect_error("test 'x' input events must be a non-empty list of events", 6, 31);
    expect_error("test 'x' expect[1] topic 'zz' is not declared under topics:", 8, 17);
    expect_error("an event key must be a string; got a sequence", 8, 36);
    expect_error("duplicate test name 'x' (first defined at line 5)", 9, 11);
    expect_error("test 'x' inputs[1] is missing required key 'topic'", 10, 14);
    expect_error("unknown key 'valu' in an event (did you mean 'value'?)", 10, 25);
    expect_error("test 'y' is missing required key 'input' (or 'inputs')", 11, 5);
    expect_error("header 'h' must have a string value; got a sequence", 13, 46);
    assert_int_equal(d.errors, 8);
}

static void test_interpolation_error_fails_load(void **state)
{
    (void)state;
    unsetenv("OF_TEST_PIPELINE_UNSET");
    char path[] = "/tmp/of_pipeline_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("pipeline: p\n"
          "topics: {a: {external: true}}\n"
          "stages:\n"
          "  - name: s\n"
          "    plugin: test-router\n"
          "    inputs: [a]\n"
          "    outputs: {matched: a2, unmatched: a3}\n"
          "    config: {keywords: \"${OF_TEST_PIPELINE_UNSET}\"}\n",
          f);
    fclose(f);
    of_pipeline *p = of_pipeline_load(path, &reg, &d);
    remove(path);
    assert_null(p);
    expect_error("environment variable OF_TEST_PIPELINE_UNSET is not set", 8, 25);
}

/* ---- breaker: ---- */

static void test_breaker_section(void **state)
{
    (void)state;
    of_pipeline *p = from_text("pipeline: p\n"
                               "topics: {a: {external: true}}\n"
                               "stages:\n"
                               "  - name: s\n"
                               "    plugin: test-sink\n"
                               "    inputs: [a]\n"
                               "  - name: t\n"
                               "    plugin: test-sink\n"
                               "    inputs: [a]\n"
                               "    breaker: {failure_rate: 0.25, window: 50, min_calls: 50, "
                               "open_for: 1.5s, trial_calls: 7, enabled: true}\n"
                               "  - name: u\n"
                               "    plugin: test-sink\n"
                               "    inputs: [a]\n"
                               "    breaker:\n"
                               "      enabled: false\n"
                               "  - name: v\n"
                               "    plugin: test-sink\n"
                               "    inputs: [a]\n"
                               "    breaker: {window: 5, failure_rate: 1}\n"
                               "  - name: w\n"
                               "    plugin: test-sink\n"
                               "    inputs: [a]\n"
                               "    breaker:\n",
                               &reg);
    if (!p)
        dump();
    assert_non_null(p);
    assert_int_equal(d.errors, 0);
    /* no section, and an empty one: enabled with the defaults */
    const char *defaults[] = {"s", "w"};
    for (size_t i = 0; i < 2; i++) {
        const of_breaker_policy *b = &stage(p, defaults[i])->breaker;
        assert_int_equal(b->enabled, 1);
        assert_true(b->failure_rate == 0.5);
        assert_int_equal(b->window, 20);
        assert_int_equal(b->min_calls, 10);
        assert_int_equal(b->open_for_ms, 30000);
        assert_int_equal(b->trial_calls, 3);
    }
    const of_breaker_policy *b = &stage(p, "t")->breaker;
    assert_int_equal(b->enabled, 1);
    assert_true(b->failure_rate == 0.25);
    assert_int_equal(b->window, 50);
    assert_int_equal(b->min_calls, 50);
    assert_int_equal(b->open_for_ms, 1500);
    assert_int_equal(b->trial_calls, 7);
    b = &stage(p, "u")->breaker;
    assert_int_equal(b->enabled, 0);
    assert_int_equal(b->window, 20);
    /* a window below the default min_calls caps it */
    b = &stage(p, "v")->breaker;
    assert_int_equal(b->window, 5);
    assert_int_equal(b->min_calls, 5);
    assert_true(b->failure_rate == 1.0);
    /* every parsed policy is one the breaker accepts */
    for (size_t i = 0; i < p->n_stages; i++) {
        of_breaker br;
        assert_int_equal(of_breaker_init(&br, &p->stages[i].breaker), 0);
        of_breaker_destroy(&br);
    }
    of_pipeline_free(p);
}

static void test_breaker_errors(void **state)
{
    (void)state;
    assert_null(from_text("pipeline: p\n"
                          "topics: {a: {external: true}}\n"
                          "stages:\n"
                          "  - name: s\n"
                          "    plugin: test-sink\n"
                          "    inputs: [a]\n"
                          "    breaker:\n"
                          "      failure_rate: 0\n"
                          "      window: 10\n"
                          "      min_calls: 11\n"
                          "      open_for: 1ms\n"
                          "      trial_calls: 0\n"
                          "      enabeld: true\n"
                          "  - name: t\n"
                          "    plugin: test-sink\n"
                          "    inputs: [a]\n"
                          "    breaker: {failure_rate: 1.5, window: many, open_for: 10, enabled: "
                          "maybe, min_calls: [1]}\n"
                          "  - name: u\n"
                          "    plugin: test-sink\n"
                          "    inputs: [a]\n"
                          "    breaker: [1, 2]\n"
                          "  - name: v\n"
                          "    plugin: test-sink\n"
                          "    inputs: [a]\n"
                          "    breakr: {}\n"
                          "    breaker: {min_calls: 25, window: 10001, trial_calls: 1001}\n"
                          "  - name: w\n"
                          "    plugin: test-sink\n"
                          "    inputs: [a]\n"
                          "    breaker: {min_calls: 21, failure_rate: -0.5}\n",
                          &reg));
    expect_error("stage 's' breaker.failure_rate must be above 0 and at most 1 (a fraction of the "
                 "calls); got 0",
                 8, 21);
    expect_error("stage 's' breaker.min_calls (11) exceeds window (10)", 10, 18);
    expect_error("stage 's' breaker.open_for must be at least 10ms; got 1ms", 11, 17);
    expect_error("stage 's' breaker.trial_calls must be between 1 and 1000; got 0", 12, 20);
    expect_error("unknown key 'enabeld' in stage 's' breaker (did you mean 'enabled'?); allowed: "
                 "enabled, failure_rate, window, min_calls, open_for, trial_calls",
                 13, 7);
    expect_error("stage 't' breaker.failure_rate must be above 0 and at most 1 (a fraction of the "
                 "calls); got 1.5",
                 17, 29);
    expect_error("stage 't' breaker.window: expected an integer", 17, 42);
    expect_error("stage 't' breaker.open_for: expected a duration", 17, 58);
    expect_error("stage 't' breaker.enabled: expected a boolean", 17, 71);
    expect_error("stage 't' breaker.min_calls must be an integer between 1 and 10000; got a "
                 "sequence",
                 17, 89);
    expect_error("stage 'u' breaker must be a mapping; got a sequence", 21, 14);
    expect_error("unknown key 'breakr' in stage 'v' (did you mean 'breaker'?)", 25, 5);
    expect_error("stage 'v' breaker.window must be between 1 and 10000; got 10001", 26, 38);
    expect_error("stage 'v' breaker.trial_calls must be between 1 and 1000; got 1001", 26, 58);
    expect_error("stage 'w' breaker.min_calls (21) exceeds window (20)", 30, 26);
    expect_error("stage 'w' breaker.failure_rate must be above 0 and at most 1 (a fraction of the "
                 "calls); got -0.5",
                 30, 44);
    if (d.errors != 16)
        dump();
    assert_int_equal(d.errors, 16);
}

/* What a hot reload compares: a stage is restarted only when this says its definition changed. */
static void test_stage_def_equal(void **state)
{
    (void)state;
    static const char base[] =
        "pipeline: p\n"
        "topics: {in: {external: true}, in2: {external: true}, a: {}, b: {}}\n"
        "stages:\n"
        "  - name: r\n"
        "    plugin: test-router\n"
        "    inputs: [in]\n"
        "    outputs: {matched: a, unmatched: b}\n"
        "    concurrency: 2\n"
        "    retry: {max_attempts: 4}\n"
        "    config: {keywords: [x, y]%s}\n"
        "%s";
    struct {
        const char *config, *extra;
        int equal;
    } cases[] = {
        {"", "", 1},
        {", mode: any", "", 0}, /* given now, defaulted before: the plugin may tell them apart */
        {", timeout: 2s", "", 0},
        {"", "  - name: s\n    plugin: test-sink\n    inputs: [a]\n", 1}, /* another stage */
    };
    char text[2048];
    snprintf(text, sizeof(text), base, "", "");
    of_pipeline *a = from_text(text, &reg);
    assert_non_null(a);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), base, cases[i].config, cases[i].extra);
        of_pipeline *b = from_text(text, &reg);
        assert_non_null(b);
        assert_int_equal(of_stage_def_equal(stage(a, "r"), stage(b, "r")), cases[i].equal);
        of_pipeline_free(b);
    }
    static const char *const changes[][2] = {
        {"concurrency: 2", "concurrency: 3"},
        {"retry: {max_attempts: 4}", "retry: {max_attempts: 5}"},
        {"inputs: [in]", "inputs: [in, in2]"},
        {"outputs: {matched: a, unmatched: b}", "outputs: {matched: b, unmatched: a}"},
        {"config: {keywords: [x, y]", "config: {keywords: [y, x]"},
        {"    plugin: test-router\n", "    plugin: test-router\n    dead_letter: in.dead\n"},
    };
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        snprintf(text, sizeof(text), base, "", "");
        char *at = strstr(text, changes[i][0]);
        assert_non_null(at);
        char changed[2048];
        snprintf(changed, sizeof(changed), "%.*s%s%s", (int)(at - text), text, changes[i][1],
                 at + strlen(changes[i][0]));
        of_pipeline *b = from_text(changed, &reg);
        if (!b)
            dump();
        assert_non_null(b);
        if (of_stage_def_equal(stage(a, "r"), stage(b, "r")))
            fail_msg("'%s' -> '%s' was not seen as a change", changes[i][0], changes[i][1]);
        of_pipeline_free(b);
    }
    /* The same text with the outputs written in another order is the same stage. */
    snprintf(text, sizeof(text), base, "", "");
    char *at = strstr(text, "outputs: {matched: a, unmatched: b}");
    memcpy(at, "outputs: {unmatched: b, matched: a}", 35);
    of_pipeline *b = from_text(text, &reg);
    assert_non_null(b);
    assert_int_equal(of_stage_def_equal(stage(a, "r"), stage(b, "r")), 1);
    assert_int_equal(of_stage_def_equal(stage(a, "r"), NULL), 0);
    of_pipeline_free(b);
    of_pipeline_free(a);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_valid_with_defaults), T(test_every_mistake_reported),
        T(test_tests_schema),        T(test_warnings_only),
        T(test_null_registry),       T(test_structure_errors),
        T(test_stage_errors),        T(test_consumer_group_and_overrides),
        T(test_test_errors),         T(test_interpolation_error_fails_load),
        T(test_breaker_section),     T(test_breaker_errors),
        T(test_stage_def_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
