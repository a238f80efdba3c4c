#include "pipeline_tests.h"

#include "bus.h"
#include "metrics.h"
#include "runner.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct collected {
    of_event **events;
    size_t count, cap;
} collected;

static int collect_one(const of_event *ev, void *opaque)
{
    collected *c = opaque;
    if (c->count == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        of_event **n = realloc(c->events, cap * sizeof(*n));
        if (!n)
            return 1;
        c->events = n;
        c->cap = cap;
    }
    of_event *copy = of_event_clone(ev);
    if (!copy)
        return 1;
    c->events[c->count++] = copy;
    return 0;
}

static void collected_free(collected *c)
{
    for (size_t i = 0; i < c->count; i++)
        of_event_free(c->events[i]);
    free(c->events);
}

static int same_key(const char *expected, const of_event *ev)
{
    if (!expected)
        return ev->key == NULL;
    return ev->key && ev->key_len == strlen(expected) &&
           memcmp(ev->key, expected, ev->key_len) == 0;
}

/* Compares a payload with an expectation: as JSON when the expectation is JSON (so key order and
 * white space do not matter), byte for byte otherwise. */
static int payload_matches(const of_test_event *want, const of_event *ev)
{
    if (!want->value)
        return 1;
    if (want->value_is_json) {
        json_error_t jerr;
        json_t *a = json_loads(want->value, JSON_DECODE_ANY, &jerr);
        json_t *b = json_loadb(ev->payload, ev->payload_len, JSON_DECODE_ANY, &jerr);
        int eq = a && b && json_equal(a, b);
        json_decref(a);
        json_decref(b);
        return eq;
    }
    return ev->payload_len == strlen(want->value) &&
           memcmp(ev->payload, want->value, ev->payload_len) == 0;
}

static const char *headers_mismatch(const of_test_event *want, const of_event *ev)
{
    for (size_t i = 0; i < want->n_headers; i++) {
        const of_event_header *h = of_event_header_get(ev, want->headers[i].name);
        if (!h || h->value_len != strlen(want->headers[i].value) ||
            memcmp(h->value, want->headers[i].value, h->value_len) != 0)
            return want->headers[i].name;
    }
    return NULL;
}

static void print_event(FILE *out, const char *label, const of_event *ev)
{
    fprintf(out, "      %s key=%s value=%.*s\n", label, ev->key ? (const char *)ev->key : "(none)",
            (int)(ev->payload_len > 400 ? 400 : ev->payload_len), (const char *)ev->payload);
}

/* Checks one topic: expected events grouped by key must equal the actual events of that key in
 * order, and no actual event may be left over. Returns the number of problems printed. */
static int check_topic(const of_pipeline *p, const of_test_def *t, const char *topic,
                       collected *got, FILE *out)
{
    int problems = 0;
    unsigned char *used = calloc(got->count ? got->count : 1, 1);
    if (!used)
        return 1;
    for (size_t i = 0; i < t->n_expect; i++) {
        const of_test_event *want = &t->expect[i];
        if (strcmp(want->topic, topic) != 0)
            continue;
        /* The next unused actual event with this key: per-key order is what the bus keeps. */
        size_t j = 0;
        for (; j < got->count; j++)
            if (!used[j] && same_key(want->key, got->events[j]))
                break;
        if (j == got->count) {
            fprintf(out, "    %s:%d:%d: expected an event on '%s' with key %s, got none\n", p->file,
                    want->line, want->column, topic, want->key ? want->key : "(none)");
            problems++;
            continue;
        }
        used[j] = 1;
        const char *bad_header = headers_mismatch(want, got->events[j]);
        if (!payload_matches(want, got->events[j]) || bad_header) {
            fprintf(out, "    %s:%d:%d: event on '%s' differs%s%s%s\n", p->file, want->line,
                    want->column, topic, bad_header ? " (header '" : "",
                    bad_header ? bad_header : "", bad_header ? "')" : "");
            fprintf(out, "      expected key=%s value=%s\n", want->key ? want->key : "(none)",
                    want->value ? want->value : "(any)");
            print_event(out, "got     ", got->events[j]);
            problems++;
        }
    }
    for (size_t j = 0; j < got->count; j++) {
        if (!used[j]) {
            fprintf(out, "    %s:%d:%d: unexpected event on '%s'\n", p->file, t->line, t->column,
                    topic);
            print_event(out, "got     ", got->events[j]);
            problems++;
        }
    }
    free(used);
    return problems;
}

static int run_one(const of_pipeline *p, const of_test_def *t, int timeout_ms, FILE *out)
{
    char err[1024];
    int problems = 0;
    of_bus *bus = of_membus_new();
    /* Expectations may name intermediate topics that stages consume: keep their events. */
    if (bus)
        of_membus_set_retain(bus, 1);
    of_metrics *metrics = of_metrics_new();
    of_runner *runner = bus && metrics ? of_runner_new(bus, metrics) : NULL;
    if (!runner) {
        fprintf(out, "    out of memory\n");
        problems++;
        goto done;
    }
    if (of_runner_add_pipeline(runner, p, err, sizeof(err)) != 0 ||
        of_runner_start(runner, err, sizeof(err)) != 0) {
        fprintf(out, "    %s\n", err);
        problems++;
        goto done;
    }
    for (size_t i = 0; i < t->n_inputs; i++) {
        const of_test_event *in = &t->inputs[i];
        const char *v = in->value ? in->value : "";
        of_event *ev = of_event_new(in->key, in->key ? strlen(in->key) : 0, v, strlen(v));
        for (size_t h = 0; ev && h < in->n_headers; h++)
            of_event_add_header(ev, in->headers[h].name, in->headers[h].value,
                                strlen(in->headers[h].value));
        if (!ev || bus->ops->produce(bus, in->topic, ev, NULL, NULL, err, sizeof(err)) != 0) {
            fprintf(out, "    %s:%d:%d: cannot feed event: %s\n", p->file, in->line, in->column,
                    ev ? err : "out of memory");
            problems++;
        }
        of_event_free(ev);
    }
    if (!of_membus_wait_idle(bus, timeout_ms)) {
        fprintf(out, "    the pipeline did not finish within %d ms\n", timeout_ms);
        problems++;
    }
    of_runner_drain(runner, 1000);

    /* Every topic named in an expectation, in first-mention order, then the must-be-empty ones. */
    for (size_t i = 0; i < t->n_expect; i++) {
        const char *topic = t->expect[i].topic;
        int seen = 0;
        for (size_t k = 0; k < i; k++)
            if (strcmp(t->expect[k].topic, topic) == 0)
                seen = 1;
        if (seen)
            continue;
        collected got = {0};
        of_membus_read_topic(bus, topic, collect_one, &got);
        problems += check_topic(p, t, topic, &got, out);
        collected_free(&got);
    }
    for (size_t i = 0; i < t->n_expect_empty; i++) {
        const char *topic = t->expect_empty[i];
        collected got = {0};
        of_membus_read_topic(bus, topic, collect_one, &got);
        if (got.count) {
            fprintf(out, "    expected no event on '%s', got %zu\n", topic, got.count);
            print_event(out, "first   ", got.events[0]);
            problems++;
        }
        collected_free(&got);
    }
done:
    of_runner_free(runner);
    if (bus)
        bus->ops->destroy(bus);
    of_metrics_free(metrics);
    return problems;
}

void of_pipeline_run_tests(const of_pipeline *p, const char *filter, int timeout_ms, FILE *out,
                           of_test_summary *summary)
{
    for (size_t i = 0; i < p->n_tests; i++) {
        const of_test_def *t = &p->tests[i];
        if (filter && !strstr(t->name, filter))
            continue;
        /* Failures are collected in a buffer so the verdict line comes first. */
        char *buf = NULL;
        size_t len = 0;
        FILE *details = open_memstream(&buf, &len);
        int problems = run_one(p, t, timeout_ms, details ? details : out);
        if (details)
            fclose(details);
        fprintf(out, "%s %s: %s\n", problems ? "FAIL" : "PASS", p->name, t->name);
        if (problems && buf)
            fputs(buf, out);
        free(buf);
        if (problems)
            summary->failed++;
        else
            summary->passed++;
    }
}
