/* The stage runner on the memory bus, with pipelines built by hand and stages defined here:
 * per-key order, output routing and inherited headers, retry, dead letters, backpressure,
 * drain, init rollback; and the offset tracker on its own. No timing assertions: every wait is
 * bounded and fails the test when it runs out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bus.h"
#include "log.h"
#include "metrics.h"
#include "offset_tracker.h"
#include "pipeline.h"
#include "runner.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tpipe.h"

/* ---------------------------------------------------------------------------------------------
 * Shared helpers
 * ------------------------------------------------------------------------------------------- */

static const of_host_api *g_api;
static of_runner *g_runner;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

typedef struct env {
    of_bus *bus;
    of_metrics *metrics;
    of_runner *runner;
} env;

/* An embedded bus, and a runner on it or, when wrap is given, on the bus wrap returns for it. */
static void env_new_wrapped(env *e, of_bus *(*wrap)(of_bus *inner))
{
    e->bus = of_membus_new();
    e->metrics = of_metrics_new();
    assert_non_null(e->bus);
    assert_non_null(e->metrics);
    e->runner = of_runner_new(wrap ? wrap(e->bus) : e->bus, e->metrics);
    assert_non_null(e->runner);
    g_runner = e->runner;
}

static void env_new(env *e)
{
    env_new_wrapped(e, NULL);
}

static void env_free(env *e)
{
    of_runner_free(e->runner);
    g_runner = NULL;
    e->bus->ops->destroy(e->bus);
    of_metrics_free(e->metrics);
}

static void add_and_start(env *e, tpipe *t)
{
    char err[512] = "";
    if (of_runner_add_pipeline(e->runner, &t->p, err, sizeof(err)) != 0)
        fail_msg("add_pipeline: %s", err);
    if (of_runner_start(e->runner, err, sizeof(err)) != 0)
        fail_msg("start: %s", err);
}

static void produce(of_bus *bus, const char *topic, const char *key, const char *payload,
                    const of_header *headers, size_t n_headers)
{
    of_event *ev = of_event_new(key, key ? strlen(key) : 0, payload, strlen(payload));
    assert_non_null(ev);
    for (size_t i = 0; i < n_headers; i++)
        assert_int_equal(
            of_event_add_header(ev, headers[i].name, headers[i].value, headers[i].value_len), 0);
    char err[256];
    assert_int_equal(bus->ops->produce(bus, topic, ev, NULL, NULL, err, sizeof(err)), 0);
    of_event_free(ev);
}

static void wait_idle(env *e)
{
    if (!of_membus_wait_idle(e->bus, 30000))
        fail_msg("the bus did not become idle within 30 s");
}

typedef struct collected {
    of_event *ev[64];
    size_t n;
} collected;

static int collect_cb(const of_event *ev, void *opaque)
{
    collected *c = opaque;
    if (c->n < 64)
        c->ev[c->n++] = of_event_clone(ev);
    return 0;
}

static void collect(of_bus *bus, const char *topic, collected *c)
{
    memset(c, 0, sizeof(*c));
    of_membus_read_topic(bus, topic, collect_cb, c);
}

static void collected_free(collected *c)
{
    for (size_t i = 0; i < c->n; i++)
        of_event_free(c->ev[i]);
    c->n = 0;
}

static const char *hdr(const of_event *ev, const char *name)
{
    const of_event_header *h = of_event_header_get(ev, name);
    return h ? h->value : NULL;
}

static void stats_of(env *e, const char *pipeline, const char *stage, of_stage_stats *s)
{
    assert_int_equal(of_runner_stage_stats(e->runner, pipeline, stage, s), 0);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (bounded) until *value >= want under g_mu. */
static void wait_at_least(const int *value, int want)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&g_mu);
    while (*value < want) {
        if (pthread_cond_timedwait(&g_cv, &g_mu, &until) != 0 && *value < want) {
            int v = *value;
            pthread_mutex_unlock(&g_mu);
            fail_msg("waited 20 s for %d, have %d", want, v);
        }
    }
    pthread_mutex_unlock(&g_mu);
}

static void wait_received(env *e, const char *p, const char *s, uint64_t want)
{
    for (int i = 0; i < 20000; i++) {
        of_stage_stats st;
        stats_of(e, p, s, &st);
        if (st.received >= want)
            return;
        sleep_ms(1);
    }
    fail_msg("stage %s/%s did not receive %llu events within 20 s", p, s, (unsigned long long)want);
}

static int save_api(of_stage *stage, const of_host_api *api, const of_config *config,
                    void **instance, char *errstr, size_t errstr_size)
{
    (void)stage;
    (void)config;
    (void)errstr;
    (void)errstr_size;
    g_api = api;
    *instance = NULL;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Per-key order with concurrency 4
 * ------------------------------------------------------------------------------------------- */

#define N_KEYS 50
#define N_SEQ  40

static struct {
    int last[N_KEYS];
    int active[N_KEYS];
    int violations, overlaps, calls;
} g_order;

static of_status order_process(void *instance, of_call *call)
{
    (void)instance;
    size_t len;
    const char *p = g_api->event_payload(call, &len);
    int key = -1, seq = -1;
    sscanf(p, "%d:%d", &key, &seq);
    if (key < 0 || key >= N_KEYS)
        return OF_REJECT;
    pthread_mutex_lock(&g_mu);
    if (g_order.active[key]++)
        g_order.overlaps++;
    if (seq <= g_order.last[key])
        g_order.violations++;
    g_order.last[key] = seq;
    g_order.calls++;
    pthread_mutex_unlock(&g_mu);
    if (seq % 7 == 0)
        sched_yield();
    pthread_mutex_lock(&g_mu);
    g_order.active[key]--;
    pthread_mutex_unlock(&g_mu);
    return OF_OK;
}

static const of_stage_descriptor order_desc = {
    OF_DESCRIPTOR_HEADER, .name = "order-check",    .version = "1",
    .init = save_api,     .process = order_process,
};

/* Starts pipeline "p" with one order-check stage "check" of `concurrency` workers reading "in"
 * (3 partitions). */
static void start_check(env *e, tpipe *t, int concurrency)
{
    tp_init(t, "p");
    tp_topic(t, "in", 3);
    tp_topic(t, "in.dlq", 1);
    of_stage_def *d = tp_stage(t, "check", &order_desc, "in", "in.dlq");
    d->concurrency = concurrency;
    env_new(e);
    add_and_start(e, t);
}

static void test_per_key_order_concurrency_4(void **state)
{
    (void)state;
    memset(&g_order, 0, sizeof(g_order));
    for (int k = 0; k < N_KEYS; k++)
        g_order.last[k] = -1;
    static tpipe t;
    env e;
    start_check(&e, &t, 4);
    for (int s = 0; s < N_SEQ; s++) {
        for (int k = 0; k < N_KEYS; k++) {
            char key[16], payload[32];
            snprintf(key, sizeof(key), "key-%d", k);
            snprintf(payload, sizeof(payload), "%d:%d", k, s);
            produce(e.bus, "in", key, payload, NULL, 0);
        }
    }
    wait_idle(&e);
    assert_int_equal(of_runner_drain(e.runner, 10000), 0);
    assert_int_equal(g_order.calls, N_KEYS * N_SEQ);
    assert_int_equal(g_order.violations, 0);
    assert_int_equal(g_order.overlaps, 0);
    for (int k = 0; k < N_KEYS; k++)
        assert_int_equal(g_order.last[k], N_SEQ - 1);
    of_stage_stats s;
    stats_of(&e, "p", "check", &s);
    assert_int_equal(s.received, N_KEYS * N_SEQ);
    assert_int_equal(s.processed_ok, N_KEYS * N_SEQ);
    assert_int_equal(s.in_flight, 0);
    /* The stats are registered as counters too. */
    struct of_counter *c =
        of_metrics_find_counter(e.metrics, "stage_events_received", "p", "check");
    assert_non_null(c);
    assert_true(of_counter_value(c) == N_KEYS * N_SEQ);
    c = of_metrics_find_counter(e.metrics, "stage_events_processed", "p", "check");
    assert_non_null(c);
    assert_true(of_counter_value(c) == N_KEYS * N_SEQ);
    env_free(&e);
}

/* Whether a thread of this process is named name (/proc/self/task/N/comm). */
static int thread_named(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int found = 0;
    for (struct dirent *de; !found && (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread ended meanwhile */
        if (fgets(comm, sizeof(comm), f))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
        found = strcmp(comm, name) == 0;
    }
    closedir(d);
    return found;
}

/* A stage's threads carry its name (top -H, perf and gdb then say whose they are): each worker
 * its index, the consumer ":c". */
static void test_threads_named_for_their_stage(void **state)
{
    (void)state;
    static tpipe t;
    env e;
    start_check(&e, &t, 3);
    const char *const want[] = {"check:0", "check:1", "check:2", "check:c"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!thread_named(want[i]))
            fail_msg("no thread named %s", want[i]);
    assert_false(thread_named("check:3"));
    assert_int_equal(of_runner_drain(e.runner, 10000), 0);
    env_free(&e);
}

/* ---------------------------------------------------------------------------------------------
 * Output routing and inherited headers
 * ------------------------------------------------------------------------------------------- */

static const char *const router_outputs[] = {"even", "odd", "spare", NULL};
static int g_bad_emit_rcs[2];

static of_status router_process(void *instance, of_call *call)
{
    (void)instance;
    const char *p = g_api->event_payload(call, NULL);
    int n = atoi(p);
    pthread_mutex_lock(&g_mu);
    g_bad_emit_rcs[0] += g_api->emit(call, "spare", NULL, 0, "x", 1, NULL, 0);       /* unmapped */
    g_bad_emit_rcs[1] += g_api->emit(call, "nonexistent", NULL, 0, "x", 1, NULL, 0); /* unknown */
    pthread_mutex_unlock(&g_mu);
    if (n % 2 == 0) {
        if (g_api->emit(call, "even", NULL, 0, "first", 5, NULL, 0) != 0 ||
            g_api->emit(call, "even", NULL, 0, "second", 6, NULL, 0) != 0)
            return OF_REJECT;
    } else {
        of_header own[] = {{"ce_type", "custom.type", 11}, {"x-own", "1", 1}};
        if (g_api->emit(call, "odd", "custom", 6, "third", 5, own, 2) != 0)
            return OF_REJECT;
    }
    return OF_OK;
}

static const of_stage_descriptor router_desc = {
    OF_DESCRIPTOR_HEADER,      .name = "router", .version = "1",
    .outputs = router_outputs, .init = save_api, .process = router_process,
};

static void test_outputs_routed_with_inherited_headers(void **state)
{
    (void)state;
    g_bad_emit_rcs[0] = g_bad_emit_rcs[1] = 0;
    static tpipe t;
    tp_init(&t, "shop");
    tp_topic(&t, "in", 2);
    tp_topic(&t, "t.even", 1);
    tp_topic(&t, "t.odd", 1);
    tp_topic(&t, "in.dlq", 1);
    of_stage_def *d = tp_stage(&t, "route", &router_desc, "in", "in.dlq");
    tp_map(d, "even", "t.even");
    tp_map(d, "odd", "t.odd");
    env e;
    env_new(&e);
    add_and_start(&e, &t);
    of_header in_headers[] = {
        {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 55},
        {"ce_type", "order.created", 13},
        {"ce_id", "input-id", 8},
        {"ce_source", "shop-frontend", 13},
        {"ce_specversion", "1.0", 3},
        {"ce_subject", "order-17", 8},
        {"x-private", "secret", 6},
        {"content-type", "text/plain", 10},
    };
    produce(e.bus, "in", "k0", "0", in_headers, 8);
    produce(e.bus, "in", "k1", "1", in_headers, 8);
    wait_idle(&e);

    collected even, odd, dlq;
    collect(e.bus, "t.even", &even);
    collect(e.bus, "t.odd", &odd);
    collect(e.bus, "in.dlq", &dlq);
    assert_int_equal(dlq.n, 0);
    assert_int_equal(even.n, 2);
    assert_int_equal(odd.n, 1);
    assert_string_equal(even.ev[0]->payload, "first");
    assert_string_equal(even.ev[1]->payload, "second");
    for (size_t i = 0; i < 2; i++) {
        const of_event *ev = even.ev[i];
        assert_string_equal(ev->key, "k0"); /* the input's key when emit gives none */
        /* The input's trace continues with a span of this stage's own. */
        const char *tp = hdr(ev, "traceparent");
        assert_int_equal(strlen(tp), 55);
        assert_memory_equal(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
        assert_memory_not_equal(tp + 36, "00f067aa0ba902b7", 16);
        assert_string_equal(tp + 52, "-01");
        /* The type names the output, not the input's type. */
        assert_string_equal(hdr(ev, "ce_type"), "shop.route.even");
        assert_string_equal(hdr(ev, "ce_subject"), "order-17");
        assert_string_equal(hdr(ev, "ce_specversion"), "1.0");
        assert_string_equal(hdr(ev, "ce_source"), "orderflow/shop/route");
        assert_string_equal(hdr(ev, "content-type"), "application/json");
        assert_null(hdr(ev, "x-private"));
        const char *id = hdr(ev, "ce_id");
        assert_non_null(id);
        assert_string_not_equal(id, "input-id");
        assert_int_equal(strlen(id), 36);
        assert_int_equal(id[14], '8'); /* derived from the input's id: UUID version 8 */
        const char *when = hdr(ev, "ce_time");
        assert_non_null(when);
        assert_int_equal(strlen(when), 24);
        assert_int_equal(when[10], 'T');
        assert_int_equal(when[23], 'Z');
        /* Exactly one of each generated header. */
        size_t n_id = 0;
        for (size_t j = 0; j < ev->n_headers; j++)
            n_id += strcmp(ev->headers[j].name, "ce_id") == 0;
        assert_int_equal(n_id, 1);
    }
    assert_string_not_equal(hdr(even.ev[0], "ce_id"), hdr(even.ev[1], "ce_id"));
    const of_event *o = odd.ev[0];
    assert_string_equal(o->key, "custom");
    assert_string_equal(hdr(o, "ce_type"), "custom.type"); /* the stage's own wins */
    assert_string_equal(hdr(o, "x-own"), "1");
    assert_memory_equal(hdr(o, "traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
    assert_string_not_equal(hdr(o, "ce_id"), "input-id");
    assert_string_not_equal(hdr(o, "ce_id"), hdr(even.ev[0], "ce_id"));
    assert_int_equal(g_bad_emit_rcs[0], -2);
    assert_int_equal(g_bad_emit_rcs[1], -2);
    of_stage_stats s;
    stats_of(&e, "shop", "route", &s);
    assert_int_equal(s.emitted, 3);
    assert_int_equal(s.processed_ok, 2);
    collected_free(&even);
    collected_free(&odd);
    env_free(&e);
}

/* ---------------------------------------------------------------------------------------------
 * Retry, reject, dead letters
 * ------------------------------------------------------------------------------------------- */

static const char *const one_output[] = {"out", NULL};
static struct {
    int attempts[16];
    int n;
    int succeed_at; /* 0: never */
} g_retry;

static of_status retry_process(void *instance, of_call *call)
{
    (void)instance;
    int attempt = g_api->event_attempt(call);
    pthread_mutex_lock(&g_mu);
    if (g_retry.n < 16)
        g_retry.attempts[g_retry.n++] = attempt;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    char payload[32];
    snprintf(payload, sizeof(payload), "attempt %d", attempt);
    g_api->emit(call, "out", NULL, 0, payload, strlen(payload), NULL, 0);
    if (g_retry.succeed_at && attempt >= g_retry.succeed_at)
        return OF_OK;
    g_api->set_reason(call, "db down (try %d)", attempt);
    return OF_RETRY;
}

static const of_stage_descriptor retry_desc = {
    OF_DESCRIPTOR_HEADER,  .name = "flaky",  .version = "1",
    .outputs = one_output, .init = save_api, .process = retry_process,
};

static void retry_pipeline(tpipe *t, int max_attempts)
{
    tp_init(t, "pay");
    tp_topic(t, "in", 2);
    tp_topic(t, "out", 1);
    tp_topic(t, "in.dlq", 1);
    of_stage_def *d = tp_stage(t, "charge", &retry_desc, "in", "in.dlq");
    tp_map(d, "out", "out");
    d->retry.max_attempts = max_attempts;
}

static void test_retry_then_success(void **state)
{
    (void)state;
    memset(&g_retry, 0, sizeof(g_retry));
    g_retry.succeed_at = 3;
    static tpipe t;
    retry_pipeline(&t, 5);
    env e;
    env_new(&e);
    add_and_start(&e, &t);
    produce(e.bus, "in", "o-1", "{}", NULL, 0);
    wait_idle(&e);
    assert_int_equal(g_retry.n, 3);
    assert_int_equal(g_retry.attempts[0], 1);
    assert_int_equal(g_retry.attempts[1], 2);
    assert_int_equal(g_retry.attempts[2], 3);
    collected out, dlq;
    collect(e.bus, "out", &out);
    collect(e.bus, "in.dlq", &dlq);
    assert_int_equal(out.n, 1); /* what the failed tries emitted was discarded */
    assert_string_equal(out.ev[0]->payload, "attempt 3");
    assert_int_equal(dlq.n, 0);
    of_stage_stats s;
    stats_of(&e, "pay", "charge", &s);
    assert_int_equal(s.retried, 2);
    assert_int_equal(s.processed_ok, 1);
    assert_int_equal(s.dead_lettered, 0);
    collected_free(&out);
    env_free(&e);
}

static void test_retry_exhausted_dead_letter(void **state)
{
    (void)state;
    memset(&g_retry, 0, sizeof(g_retry));
    static tpipe t;
    retry_pipeline(&t, 3);
    env e;
    env_new(&e);
    add_and_start(&e, &t);
    of_header h[] = {{"traceparent", "00-aa-bb-01", 11}, {"x-n", "7", 1}};
    produce(e.bus, "in", "o-7", "{\"id\":7}", h, 2);
    wait_idle(&e);
    assert_int_equal(g_retry.n, 3);
    collected out, dlq;
    collect(e.bus, "out", &out);
    collect(e.bus, "in.dlq", &dlq);
    assert_int_equal(out.n, 0);
    assert_int_equal(dlq.n, 1);
    const of_event *ev = dlq.ev[0];
    assert_string_equal(ev->key, "o-7");
    assert_string_equal(ev->payload, "{\"id\":7}");
    assert_string_equal(hdr(ev, "traceparent"), "00-aa-bb-01");
    assert_string_equal(hdr(ev, "x-n"), "7");
    assert_string_equal(hdr(ev, OF_DLQ_H_TOPIC), "in");
    char part[8];
    snprintf(part, sizeof(part), "%u", (of_murmur2("o-7", 3) & 0x7fffffffu) % 2u);
    assert_string_equal(hdr(ev, OF_DLQ_H_PARTITION), part);
    assert_string_equal(hdr(ev, OF_DLQ_H_OFFSET), "0");
    assert_string_equal(hdr(ev, OF_DLQ_H_STAGE), "charge");
    assert_string_equal(hdr(ev, OF_DLQ_H_PIPELINE), "pay");
    assert_string_equal(hdr(ev, OF_DLQ_H_ATTEMPTS), "3");
    assert_string_equal(hdr(ev, OF_DLQ_H_ERROR), "db down (try 3)");
    assert_string_equal(hdr(ev, OF_DLQ_H_STATUS), "retries-exhausted");
    of_stage_stats s;
    stats_of(&e, "pay", "charge", &s);
    assert_int_equal(s.retried, 2);
    assert_int_equal(s.dead_lettered, 1);
    assert_int_equal(s.rejected, 0);
    assert_int_equal(s.processed_ok, 0);
    collected_free(&dlq);
    env_free(&e);
}

static of_status reject_process(void *instance, of_call *call)
{
    (void)instance;
    const char *p = g_api->event_payload(call, NULL);
    /* Emitted before failing: must be discarded. */
    g_api->emit(call, "out", NULL, 0, p, strlen(p), NULL, 0);
    if (strcmp(p, "bad") == 0) {
        g_api->set_reason(call, "first reason");
        g_api->set_reason(call, "not valid: %s", p); /* the last call wins */
        return OF_REJECT;
    }
    if (strcmp(p, "bad-noreason") == 0)
        return OF_REJECT;
    return OF_OK;
}

static const of_stage_descriptor reject_desc = {
    OF_DESCRIPTOR_HEADER,  .name = "validator", .version = "1",
    .outputs = one_output, .init = save_api,    .process = reject_process,
};

static void test_reject_dead_letters_and_partition_flows(void **state)
{
    (void)state;
    static tpipe t;
    tp_init(&t, "orders");
    tp_topic(&t, "in", 1);
    tp_topic(&t, "valid", 1);
    tp_topic(&t, "in.dlq", 1);
    of_stage_def *d = tp_stage(&t, "validate", &reject_desc, "in", "in.dlq");
    tp_map(d, "out", "valid");
    d->concurrency = 2;
    env e;
    env_new(&e);
    add_and_start(&e, &t);
    produce(e.bus, "in", "a", "bad", NULL, 0);
    produce(e.bus, "in", "a", "good1", NULL, 0);
    produce(e.bus, "in", "b", "bad-noreason", NULL, 0);
    produce(e.bus, "in", "b", "good2", NULL, 0);
    wait_idle(&e);
    collected out, dlq;
    collect(e.bus, "valid", &out);
    collect(e.bus, "in.dlq", &dlq);
    assert_int_equal(out.n, 2);
    int seen1 = 0, seen2 = 0;
    for (size_t i = 0; i < out.n; i++) {
        seen1 |= strcmp(out.ev[i]->payload, "good1") == 0;
        seen2 |= strcmp(out.ev[i]->payload, "good2") == 0;
    }
    assert_true(seen1 && seen2);
    assert_int_equal(dlq.n, 2);
    for (size_t i = 0; i < dlq.n; i++) {
        const of_event *ev = dlq.ev[i];
        assert_string_equal(hdr(ev, OF_DLQ_H_STATUS), "rejected");
        assert_string_equal(hdr(ev, OF_DLQ_H_ATTEMPTS), "1");
        if (strcmp(ev->payload, "bad") == 0) {
            assert_string_equal(hdr(ev, OF_DLQ_H_ERROR), "not valid: bad");
            assert_string_equal(hdr(ev, OF_DLQ_H_OFFSET), "0");
        } else {
            assert_string_equal(ev->payload, "bad-noreason");
            assert_string_equal(hdr(ev, OF_DLQ_H_ERROR), "rejected without a reason");
            assert_string_equal(hdr(ev, OF_DLQ_H_OFFSET), "2");
        }
    }
    of_stage_stats s;
    stats_of(&e, "orders", "validate", &s);
    assert_int_equal(s.rejected, 2);
    assert_int_equal(s.dead_lettered, 2);
    assert_int_equal(s.processed_ok, 2);
    assert_int_equal(s.emitted, 2);
    assert_int_equal(of_runner_drain(e.runner, 10000), 0);
    /* Everything was committed: the group reads nothing more. */
    const char *topics[] = {"in"};
    char err[128];
    of_consumer *c = e.bus->ops->subscribe(e.bus, "orderflow.orders.validate", topics, 1, NULL, err,
                                           sizeof(err));
    assert_non_null(c);
    of_event *ev = NULL;
    assert_int_equal(e.bus->ops->poll(c, &ev, 0), 0);
    e.bus->ops->consumer_close(c);
    collected_free(&out);
    collected_free(&dlq);
    env_free(&e);
}

/* A stage whose output topic vanished after setup: publication fails, the event is retried
 * and finally dead-lettered with the delivery error. */
static of_status emit_ok_process(void *instance, of_call *call)
{
    (void)instance;
    g_api->emit(call, "out", NULL, 0, "x", 1, NULL, 0);
    return OF_OK;
}

static const of_stage_descriptor emit_ok_desc = {
    OF_DESCRIPTOR_HEADER,  .name = "emitter", .version = "1",
    .outputs = one_output, .init = save_api,  .process = emit_ok_process,
};

static void test_failed_delivery_retries(void **state)
{
    (void)state;
    static tpipe t;
    tp_init(&t, "p");
    tp_topic(&t, "in", 1);
    tp_topic(&t, "in.dlq", 1);
    of_stage_def *d = tp_stage(&t, "emit", &emit_ok_desc, "in", "in.dlq");
    tp_map(d, "out", "out");
    env e;
    env_new(&e);
    char err[256];
    assert_int_equal(of_runner_add_pipeline(e.runner, &t.p, err, sizeof(err)), 0);
    d->outputs[0].topic = (char *)"no-such-topic"; /* the memory bus refuses it */
    assert_int_equal(of_runner_start(e.runner, err, sizeof(err)), 0);
    produce(e.bus, "in", "k", "v", NULL, 0);
    wait_idle(&e);
    collected dlq;
    collect(e.bus, "in.dlq", &dlq);
    assert_int_equal(dlq.n, 1);
    assert_string_equal(hdr(dlq.ev[0], OF_DLQ_H_STATUS), "retries-exhausted");
    assert_non_null(strstr(hdr(dlq.ev[0], OF_DLQ_H_ERROR), "no-such-topic"));
    of_stage_stats s;
    stats_of(&e, "p", "emit", &s);
    assert_int_equal(s.retried, 2);
    assert_int_equal(s.processed_ok, 0);
    collected_free(&dlq);
    env_free(&e);
}

/* ---------------------------------------------------------------------------------------------
 * Backpressure and drain
 * ------------------------------------------------------------------------------------------- */

static struct {
    int entered, active, max_active, released, shutdowns;
    uint64_t max_in_flight_seen;
    const char *pipeline, *stage;
} g_block;

/* Keeps the most events the blocked stage has had in flight. */
static void note_in_flight(void)
{
    of_stage_stats s;
    if (g_runner && of_runner_stage_stats(g_runner, g_block.pipeline, g_block.stage, &s) == 0) {
        pthread_mutex_lock(&g_mu);
        if (s.in_flight > g_block.max_in_flight_seen)
            g_block.max_in_flight_seen = s.in_flight;
        pthread_mutex_unlock(&g_mu);
    }
}

static of_status block_process(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    note_in_flight();
    pthread_mutex_lock(&g_mu);
    g_block.entered++;
    if (++g_block.active > g_block.max_active)
        g_block.max_active = g_block.active;
    pthread_cond_broadcast(&g_cv);
    while (!g_block.released)
        pthread_cond_wait(&g_cv, &g_mu);
    g_block.active--;
    pthread_mutex_unlock(&g_mu);
    return OF_OK;
}

static void block_shutdown(void *instance)
{
    (void)instance;
    pthread_mutex_lock(&g_mu);
    g_block.shutdowns++;
    pthread_mutex_unlock(&g_mu);
}

static const of_stage_descriptor block_desc = {
    OF_DESCRIPTOR_HEADER, .name = "blocker",        .version = "1",
    .init = save_api,     .process = block_process, .shutdown = block_shutdown,
};

static void release_blocked(void)
{
    pthread_mutex_lock(&g_mu);
    g_block.released = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* The bus's pause and resume, counted: at max_in_flight the consumer should stop taking events,
 * and pause the bus (which in librdkafka drops what it prefetched) only when nothing finishes.
 * The runner gets a bus that forwards to the embedded one (which knows itself by its ops) and
 * counts; the test produces and waits on the embedded bus itself. */
typedef struct counting_bus {
    of_bus base;
    of_bus *inner;
} counting_bus;

static counting_bus g_cbus;
static of_bus_ops g_counting_ops;
static atomic_int g_pauses, g_resumes;

static int cb_ensure_topic(of_bus *b, const char *topic, int partitions, int replication,
                           char *errstr, size_t errstr_size)
{
    of_bus *in = ((counting_bus *)b)->inner;
    return in->ops->ensure_topic(in, topic, partitions, replication, errstr, errstr_size);
}

static int cb_produce(of_bus *b, const char *topic, const of_event *ev, of_delivery_cb cb,
                      void *opaque, char *errstr, size_t errstr_size)
{
    of_bus *in = ((counting_bus *)b)->inner;
    return in->ops->produce(in, topic, ev, cb, opaque, errstr, errstr_size);
}

static of_consumer *cb_subscribe(of_bus *b, const char *group, const char *const *topics,
                                 size_t n_topics, const of_consumer_hooks *hooks, char *errstr,
                                 size_t errstr_size)
{
    of_bus *in = ((counting_bus *)b)->inner;
    return in->ops->subscribe(in, group, topics, n_topics, hooks, errstr, errstr_size);
}

static int cb_ready(of_bus *b, char *errstr, size_t errstr_size)
{
    of_bus *in = ((counting_bus *)b)->inner;
    return in->ops->ready(in, errstr, errstr_size);
}

static int cb_flush(of_bus *b, int timeout_ms)
{
    of_bus *in = ((counting_bus *)b)->inner;
    return in->ops->flush(in, timeout_ms);
}

static void cb_destroy(of_bus *b)
{
    (void)b; /* env_free destroys the embedded bus */
}

static void counting_pause(of_consumer *c)
{
    atomic_fetch_add(&g_pauses, 1);
    g_cbus.inner->ops->pause(c);
}

static void counting_resume(of_consumer *c)
{
    atomic_fetch_add(&g_resumes, 1);
    g_cbus.inner->ops->resume(c);
}

static of_bus *counting_bus_over(of_bus *inner)
{
    g_counting_ops = *inner->ops;
    g_counting_ops.ensure_topic = cb_ensure_topic;
    g_counting_ops.produce = cb_produce;
    g_counting_ops.subscribe = cb_subscribe;
    g_counting_ops.ready = cb_ready;
    g_counting_ops.flush = cb_flush;
    g_counting_ops.destroy = cb_destroy;
    g_counting_ops.pause = counting_pause;
    g_counting_ops.resume = counting_resume;
    g_cbus.base.ops = &g_counting_ops;
    g_cbus.inner = inner;
    atomic_store(&g_pauses, 0);
    atomic_store(&g_resumes, 0);
    return &g_cbus.base;
}

/* Starts stage `slow` of pipeline `name` (on the counting bus) with max_in_flight 3 over n events
 * of distinct keys queued before it starts. */
static void start_limited(env *e, tpipe *t, const char *name, const of_stage_descriptor *desc,
                          int concurrency, int n)
{
    memset(&g_block, 0, sizeof(g_block));
    g_block.pipeline = name;
    g_block.stage = "slow";
    tp_init(t, name);
    tp_topic(t, "in", 3);
    tp_topic(t, "in.dlq", 1);
    of_stage_def *d = tp_stage(t, "slow", desc, "in", "in.dlq");
    d->concurrency = concurrency;
    d->max_in_flight = 3;
    env_new_wrapped(e, counting_bus_over);
    char err[256];
    assert_int_equal(of_runner_add_pipeline(e->runner, &t->p, err, sizeof(err)), 0);
    for (int i = 0; i < n; i++) {
        char key[16];
        snprintf(key, sizeof(key), "key-%d", i);
        produce(e->bus, "in", key, "x", NULL, 0);
    }
    assert_int_equal(of_runner_start(e->runner, err, sizeof(err)), 0);
}

static void test_max_in_flight_waits_then_pauses(void **state)
{
    (void)state;
    static tpipe t;
    env e;
    start_limited(&e, &t, "bp", &block_desc, 8, 20);
    wait_at_least(&g_block.entered, 3);
    sleep_ms(50); /* a consumer that ignored the limit would dispatch more meanwhile */
    of_stage_stats s;
    stats_of(&e, "bp", "slow", &s);
    assert_int_equal(s.received, 3);
    assert_int_equal(s.in_flight, 3);
    pthread_mutex_lock(&g_mu);
    assert_int_equal(g_block.entered, 3);
    pthread_mutex_unlock(&g_mu);
    /* The consumer waits for room without pausing the bus... */
    assert_int_equal(atomic_load(&g_pauses), 0);
    /* ...until nothing has finished for a second: then the bus is paused, so the consumer can
     * go on polling (a Kafka consumer serves its group's rebalances only in a poll). */
    for (int i = 0; i < 100 && atomic_load(&g_pauses) == 0; i++)
        sleep_ms(50);
    sleep_ms(300); /* no second pause follows */
    assert_int_equal(atomic_load(&g_pauses), 1);
    stats_of(&e, "bp", "slow", &s);
    assert_int_equal(s.received, 3);
    release_blocked();
    wait_idle(&e);
    stats_of(&e, "bp", "slow", &s);
    assert_int_equal(s.processed_ok, 20);
    assert_true(g_block.max_active <= 3);
    assert_true(g_block.max_in_flight_seen <= 3);
    assert_true(g_block.max_in_flight_seen >= 1);
    assert_true(atomic_load(&g_resumes) >= 1); /* the pause ended below the limit */
    env_free(&e);
    assert_int_equal(g_block.shutdowns, 1);
}

/* A stage at its limit whose events keep finishing never pauses the bus. */
static of_status paced_process(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    note_in_flight();
    sleep_ms(5);
    return OF_OK;
}

static const of_stage_descriptor paced_desc = {
    OF_DESCRIPTOR_HEADER, .name = "paced",          .version = "1",
    .init = save_api,     .process = paced_process,
};

static void test_max_in_flight_without_pausing(void **state)
{
    (void)state;
    static tpipe t;
    env e;
    start_limited(&e, &t, "pace", &paced_desc, 2, 60);
    wait_idle(&e);
    of_stage_stats s;
    stats_of(&e, "pace", "slow", &s);
    assert_int_equal(s.processed_ok, 60);
    assert_int_equal(g_block.max_in_flight_seen, 3); /* the limit was reached, and held */
    assert_int_equal(atomic_load(&g_pauses), 0);
    env_free(&e);
}

typedef struct drain_arg {
    of_runner *r;
    int64_t timeout;
    size_t result;
} drain_arg;

static void *drain_thread(void *p)
{
    drain_arg *a = p;
    a->result = of_runner_drain(a->r, a->timeout);
    return NULL;
}

static void join_bounded(pthread_t t)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    if (pthread_timedjoin_np(t, NULL, &ts) != 0)
        fail_msg("thread did not finish within 20 s");
}

static void test_drain_finishes_in_flight_and_commits(void **state)
{
    (void)state;
    memset(&g_block, 0, sizeof(g_block));
    g_block.pipeline = "dr";
    g_block.stage = "work";
    static tpipe t;
    tp_init(&t, "dr");
    tp_topic(&t, "in", 2);
    tp_topic(&t, "in.dlq", 1);
    of_stage_def *d = tp_stage(&t, "work", &block_desc, "in", "in.dlq");
    d->concurrency = 2;
    env e;
    env_new(&e);
    add_and_start(&e, &t);
    for (int i = 0; i < 6; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        produce(e.bus, "in", key, "x", NULL, 0);
    }
    wait_received(&e, "dr", "work", 6);
    wait_at_least(&g_block.entered, 1);
    drain_arg a = {e.runner, 30000, 99};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, drain_thread, &a), 0);
    sleep_ms(20);
    assert_int_equal(g_block.shutdowns, 0); /* not before in-flight events finished */
    release_blocked();
    join_bounded(th);
    assert_int_equal(a.result, 0);
    assert_int_equal(g_block.entered, 6);
    assert_int_equal(g_block.shutdowns, 1);
    of_stage_stats s;
    stats_of(&e, "dr", "work", &s);
    assert_int_equal(s.processed_ok, 6);
    assert_int_equal(s.in_flight, 0);
    /* Committed: the group's consumer is closed and nothing is left to read. */
    assert_int_equal(of_membus_wait_idle(e.bus, 0), 1);
    const char *topics[] = {"in"};
    char err[128];
    of_consumer *c =
        e.bus->ops->subscribe(e.bus, "orderflow.dr.work", topics, 1, NULL, err, sizeof(err));
    assert_non_null(c);
    of_event *ev = NULL;
    assert_int_equal(e.bus->ops->poll(c, &ev, 0), 0);
    e.bus->ops->consumer_close(c);
    assert_int_equal(of_runner_drain(e.runner, 0), 0); /* a second drain does nothing */
    env_free(&e);
    assert_int_equal(g_block.shutdowns, 1);
}

static void test_drain_timeout_abandons_uncommitted(void **state)
{
    (void)state;
    memset(&g_retry, 0, sizeof(g_retry));
    static tpipe t;
    retry_pipeline(&t, 5);
    t.stages[0].retry.initial_backoff_ms = 600000; /* sleeping in backoff when the drain ends */
    t.stages[0].retry.max_backoff_ms = 600000;
    env e;
    env_new(&e);
    add_and_start(&e, &t);
    produce(e.bus, "in", "k", "v", NULL, 0);
    wait_at_least(&g_retry.n, 1);
    assert_int_equal(of_runner_drain(e.runner, 100), 1);
    /* Not committed: the group reads the event again. */
    const char *topics[] = {"in"};
    char err[128];
    of_consumer *c =
        e.bus->ops->subscribe(e.bus, "orderflow.pay.charge", topics, 1, NULL, err, sizeof(err));
    assert_non_null(c);
    of_event *ev = NULL;
    assert_int_equal(e.bus->ops->poll(c, &ev, 1000), 1);
    assert_int_equal(ev->offset, 0);
    of_event_free(ev);
    e.bus->ops->consumer_close(c);
    collected dlq;
    collect(e.bus, "in.dlq", &dlq);
    assert_int_equal(dlq.n, 0);
    struct of_counter *ab =
        of_metrics_find_counter(e.metrics, "stage_events_abandoned", "pay", "charge");
    assert_non_null(ab);
    assert_true(of_counter_value(ab) == 1);
    env_free(&e);
}

/* ---------------------------------------------------------------------------------------------
 * Init failure rollback
 * ------------------------------------------------------------------------------------------- */

static struct {
    int inits[3], shutdowns[3];
} g_life;

static int life_init(of_stage *stage, const of_host_api *api, const of_config *config,
                     void **instance, char *errstr, size_t errstr_size, int which)
{
    (void)config;
    g_api = api;
    g_life.inits[which]++;
    assert_non_null(api->stage_name(stage));
    if (which == 1) {
        snprintf(errstr, errstr_size, "boom: missing table");
        return -1;
    }
    *instance = &g_life.shutdowns[which];
    return 0;
}

static int init0(of_stage *s, const of_host_api *a, const of_config *c, void **i, char *e, size_t n)
{
    return life_init(s, a, c, i, e, n, 0);
}
static int init1(of_stage *s, const of_host_api *a, const of_config *c, void **i, char *e, size_t n)
{
    return life_init(s, a, c, i, e, n, 1);
}
static int init2(of_stage *s, const of_host_api *a, const of_config *c, void **i, char *e, size_t n)
{
    return life_init(s, a, c, i, e, n, 2);
}

static void life_shutdown(void *instance)
{
    (*(int *)instance)++;
}

static of_status noop_process(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const of_stage_descriptor life0 = {OF_DESCRIPTOR_HEADER,    .name = "first",
                                          .version = "1",          .init = init0,
                                          .process = noop_process, .shutdown = life_shutdown};
static const of_stage_descriptor life1 = {OF_DESCRIPTOR_HEADER,    .name = "failer",
                                          .version = "1",          .init = init1,
                                          .process = noop_process, .shutdown = life_shutdown};
static const of_stage_descriptor life2 = {OF_DESCRIPTOR_HEADER,    .name = "third",
                                          .version = "1",          .init = init2,
                                          .process = noop_process, .shutdown = life_shutdown};

static void test_init_failure_rolls_back(void **state)
{
    (void)state;
    memset(&g_life, 0, sizeof(g_life));
    static tpipe t;
    tp_init(&t, "rb");
    tp_topic(&t, "a", 1);
    tp_topic(&t, "b", 1);
    tp_topic(&t, "c", 1);
    tp_stage(&t, "s1", &life0, "a", NULL);
    tp_stage(&t, "s2", &life1, "b", NULL);
    tp_stage(&t, "s3", &life2, "c", NULL);
    env e;
    env_new(&e);
    char err[512] = "";
    assert_int_equal(of_runner_add_pipeline(e.runner, &t.p, err, sizeof(err)), -1);
    assert_string_equal(err, "stage 's2' (plugin failer): init failed: boom: missing table");
    assert_int_equal(g_life.inits[0], 1);
    assert_int_equal(g_life.shutdowns[0], 1); /* rolled back */
    assert_int_equal(g_life.inits[1], 1);
    assert_int_equal(g_life.shutdowns[1], 0); /* its own init failed: no shutdown */
    assert_int_equal(g_life.inits[2], 0);     /* never reached */
    of_stage_stats s;
    assert_int_equal(of_runner_stage_stats(e.runner, "rb", "s1", &s), -1);
    /* Nothing of it runs: the start has nothing to do, no group got a consumer. */
    assert_int_equal(of_runner_start(e.runner, err, sizeof(err)), 0);
    produce(e.bus, "a", "k", "v", NULL, 0);
    const char *topics[] = {"a"};
    of_consumer *c =
        e.bus->ops->subscribe(e.bus, "orderflow.rb.s1", topics, 1, NULL, err, sizeof(err));
    assert_non_null(c);
    e.bus->ops->consumer_close(c);
    assert_int_equal(of_runner_drain(e.runner, 1000), 0);
    env_free(&e);
    assert_int_equal(g_life.shutdowns[0], 1);
}

/* ---------------------------------------------------------------------------------------------
 * Two pipelines in one runner, chained through a topic
 * ------------------------------------------------------------------------------------------- */

static of_status upper_process(void *instance, of_call *call)
{
    (void)instance;
    size_t len;
    const char *p = g_api->event_payload(call, &len);
    char buf[64];
    size_t n = len < sizeof(buf) ? len : sizeof(buf) - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(p[i] >= 'a' && p[i] <= 'z' ? p[i] - 32 : p[i]);
    return g_api->emit(call, "out", NULL, 0, buf, n, NULL, 0) == 0 ? OF_OK : OF_RETRY;
}

static const of_stage_descriptor upper_desc = {
    OF_DESCRIPTOR_HEADER,  .name = "upper",  .version = "1",
    .outputs = one_output, .init = save_api, .process = upper_process,
};

static of_status copy_process(void *instance, of_call *call)
{
    (void)instance;
    size_t len;
    const char *p = g_api->event_payload(call, &len);
    return g_api->emit(call, "out", NULL, 0, p, len, NULL, 0) == 0 ? OF_OK : OF_RETRY;
}

static const of_stage_descriptor copy_desc = {
    OF_DESCRIPTOR_HEADER,  .name = "copy",   .version = "1",
    .outputs = one_output, .init = save_api, .process = copy_process,
};

static void test_two_pipelines_chained(void **state)
{
    (void)state;
    static tpipe ta, tb;
    tp_init(&ta, "pa");
    tp_topic(&ta, "a.in", 2);
    tp_topic(&ta, "mid", 2);
    tp_topic(&ta, "a.in.dlq", 1);
    tp_map(tp_stage(&ta, "up", &upper_desc, "a.in", "a.in.dlq"), "out", "mid");
    tp_init(&tb, "pb");
    tp_topic(&tb, "mid", 2);
    tp_topic(&tb, "b.out", 1);
    tp_topic(&tb, "mid.dlq", 1);
    tp_map(tp_stage(&tb, "copy", &copy_desc, "mid", "mid.dlq"), "out", "b.out");
    env e;
    env_new(&e);
    char err[256];
    assert_int_equal(of_runner_add_pipeline(e.runner, &ta.p, err, sizeof(err)), 0);
    assert_int_equal(of_runner_add_pipeline(e.runner, &tb.p, err, sizeof(err)), 0);
    assert_int_equal(of_runner_start(e.runner, err, sizeof(err)), 0);
    assert_int_equal(of_runner_add_pipeline(e.runner, &tb.p, err, sizeof(err)), -1);
    for (int i = 0; i < 5; i++)
        produce(e.bus, "a.in", "same-key", "hello", NULL, 0);
    wait_idle(&e);
    collected out;
    collect(e.bus, "b.out", &out);
    assert_int_equal(out.n, 5);
    for (size_t i = 0; i < out.n; i++) {
        assert_string_equal(out.ev[i]->payload, "HELLO");
        assert_string_equal(out.ev[i]->key, "same-key");
        assert_string_equal(hdr(out.ev[i], "ce_source"), "orderflow/pb/copy");
    }
    collected_free(&out);
    env_free(&e);
}

static void test_start_failure_cleans_up(void **state)
{
    (void)state;
    /* Two stages in one consumer group: the memory bus refuses the second subscription. */
    static tpipe ta, tb;
    tp_init(&ta, "one");
    tp_topic(&ta, "in", 1);
    tp_stage(&ta, "s", &copy_desc, "in", "in.dlq")->consumer_group = (char *)"shared";
    tp_init(&tb, "two");
    tp_topic(&tb, "in", 1);
    tp_stage(&tb, "s", &copy_desc, "in", "in.dlq")->consumer_group = (char *)"shared";
    env e;
    env_new(&e);
    char err[256] = "";
    assert_int_equal(of_runner_add_pipeline(e.runner, &ta.p, err, sizeof(err)), 0);
    assert_int_equal(of_runner_add_pipeline(e.runner, &tb.p, err, sizeof(err)), 0);
    of_log_level_t saved = of_log_get_level();
    of_log_set_level(OF_LVL_ERROR);
    assert_int_equal(of_runner_start(e.runner, err, sizeof(err)), -1);
    of_log_set_level(saved);
    assert_non_null(strstr(err, "shared"));
    /* The first stage's threads were stopped and its consumer closed: the group is free. */
    const char *topics[] = {"in"};
    of_consumer *c = e.bus->ops->subscribe(e.bus, "shared", topics, 1, NULL, err, sizeof(err));
    assert_non_null(c);
    e.bus->ops->consumer_close(c);
    env_free(&e);
}

/* ---------------------------------------------------------------------------------------------
 * Offset tracker
 * ------------------------------------------------------------------------------------------- */

static void test_offset_tracker_contiguous_prefix(void **state)
{
    (void)state;
    of_offset_tracker *t = of_offtrack_new();
    assert_non_null(t);
    assert_int_equal(of_offtrack_committable(t), -1);
    for (int64_t o = 10; o < 15; o++)
        assert_int_equal(of_offtrack_dispatch(t, o), 0);
    assert_int_equal(of_offtrack_pending(t), 5);
    assert_int_equal(of_offtrack_committable(t), 10);
    assert_int_equal(of_offtrack_done(t, 12), 0);
    assert_int_equal(of_offtrack_done(t, 14), 0);
    assert_int_equal(of_offtrack_committable(t), 10); /* 10 and 11 are not done */
    assert_int_equal(of_offtrack_done(t, 11), 0);
    assert_int_equal(of_offtrack_committable(t), 10);
    assert_int_equal(of_offtrack_done(t, 10), 0);
    assert_int_equal(of_offtrack_committable(t), 13); /* 10..12 done, 13 pending */
    assert_int_equal(of_offtrack_done(t, 13), 0);
    assert_int_equal(of_offtrack_committable(t), 15);
    assert_int_equal(of_offtrack_pending(t), 0);
    /* Errors: not growing, unknown, done twice. */
    assert_int_equal(of_offtrack_dispatch(t, 14), -1);
    assert_int_equal(of_offtrack_done(t, 13), -1);
    assert_int_equal(of_offtrack_done(t, 99), -1);
    /* Gaps (compacted topics) are fine. */
    assert_int_equal(of_offtrack_dispatch(t, 20), 0);
    assert_int_equal(of_offtrack_dispatch(t, 25), 0);
    assert_int_equal(of_offtrack_done(t, 25), 0);
    assert_int_equal(of_offtrack_committable(t), 20);
    assert_int_equal(of_offtrack_done(t, 20), 0);
    assert_int_equal(of_offtrack_committable(t), 26);
    assert_int_equal(of_offtrack_last(t), 25);
    of_offtrack_free(t);
}

static void test_offset_tracker_many_out_of_order(void **state)
{
    (void)state;
    /* Completion in reverse blocks of 7 across ring growth and wrap-around. */
    of_offset_tracker *t = of_offtrack_new();
    int64_t next = 0, committed = 0;
    for (int round = 0; round < 50; round++) {
        int64_t base = next;
        for (int i = 0; i < 100; i++)
            assert_int_equal(of_offtrack_dispatch(t, next++), 0);
        for (int64_t blk = base; blk < next; blk += 7) {
            int64_t end = blk + 7 < next ? blk + 7 : next;
            for (int64_t o = end - 1; o >= blk; o--) {
                assert_int_equal(of_offtrack_done(t, o), 0);
                int64_t c = of_offtrack_committable(t);
                assert_true(c >= committed);
                /* Until the block's first offset is done, nothing of the block commits. */
                assert_int_equal(c, o > blk ? blk : end);
                committed = c;
            }
            assert_int_equal(of_offtrack_committable(t), end);
        }
    }
    assert_int_equal(of_offtrack_committable(t), 5000);
    of_offtrack_free(t);
}

/* A dependency that is down until the test says otherwise. */
static _Atomic int g_dependency_down;

static of_status dependent_process(void *inst, of_call *call)
{
    (void)inst;
    if (atomic_load(&g_dependency_down)) {
        g_api->set_reason(call, "dependency down");
        return OF_RETRY;
    }
    return OF_OK;
}

static const of_stage_descriptor dependent_desc = {
    OF_DESCRIPTOR_HEADER, .name = "dependent",          .version = "1",
    .init = save_api,     .process = dependent_process,
};

static int wait_breaker(env *e, int state, int timeout_ms)
{
    of_stage_stats s;
    for (int waited = 0; waited < timeout_ms; waited += 5) {
        stats_of(e, "brk", "call", &s);
        if (s.breaker_state == state)
            return 1;
        sleep_ms(5);
    }
    return 0;
}

static void test_open_breaker_pauses_consumption(void **state)
{
    (void)state;
    static tpipe t;
    tp_init(&t, "brk");
    tp_topic(&t, "in", 1);
    tp_topic(&t, "in.dlq", 1);
    of_stage_def *d = tp_stage(&t, "call", &dependent_desc, "in", "in.dlq");
    d->retry.max_attempts = 1000; /* the event waits out the outage instead of dead-lettering */
    d->breaker.enabled = 1;
    d->breaker.failure_rate = 0.5;
    d->breaker.window = 4;
    d->breaker.min_calls = 4;
    d->breaker.open_for_ms = 300;
    d->breaker.trial_calls = 1;
    atomic_store(&g_dependency_down, 1);
    env e;
    env_new(&e);
    add_and_start(&e, &t);
    produce(e.bus, "in", "k", "first", NULL, 0);
    if (!wait_breaker(&e, 1, 10000))
        fail_msg("four failures in a window of four did not open the breaker");

    /* While open, the stage takes nothing new from its input. */
    of_stage_stats s;
    stats_of(&e, "brk", "call", &s);
    uint64_t received = s.received;
    for (int i = 0; i < 10; i++)
        produce(e.bus, "in", "other", "later", NULL, 0);
    sleep_ms(150);
    stats_of(&e, "brk", "call", &s);
    assert_int_equal(s.received, received);
    assert_int_equal(s.processed_ok, 0);

    /* The dependency recovers: a trial call after open_for succeeds, the breaker closes and
     * everything held back is processed, nothing dead-lettered. */
    atomic_store(&g_dependency_down, 0);
    wait_idle(&e);
    stats_of(&e, "brk", "call", &s);
    assert_int_equal(s.processed_ok, 11);
    assert_int_equal(s.dead_lettered, 0);
    assert_int_equal(s.breaker_state, 0);
    env_free(&e);
}

/* A redelivered input (the same ce_id) yields the same ids for what the stage emits, so the
 * next stage's inbox recognises the repeat; another input yields other ids. */
static void test_emitted_ids_follow_the_input(void **state)
{
    (void)state;
    static tpipe t;
    tp_init(&t, "shop");
    tp_topic(&t, "in", 1);
    tp_topic(&t, "t.even", 1);
    tp_topic(&t, "t.odd", 1);
    tp_topic(&t, "in.dlq", 1);
    of_stage_def *d = tp_stage(&t, "route", &router_desc, "in", "in.dlq");
    tp_map(d, "even", "t.even");
    tp_map(d, "odd", "t.odd");
    env e;
    env_new(&e);
    add_and_start(&e, &t);
    of_header same[] = {{"ce_id", "order-17-placed", 15}};
    of_header other[] = {{"ce_id", "order-18-placed", 15}};
    /* Inputs whose ids are time-ordered UUIDs: made 0x10 ms apart, read out of order. */
    of_header later[] = {{"ce_id", "0190a1b2-c3e4-7abc-8def-0123456789ab", 36}};
    of_header earlier[] = {{"ce_id", "0190A1B2-C3D4-7ABC-8DEF-0123456789AB", 36}};
    produce(e.bus, "in", "k0", "0", same, 1);
    produce(e.bus, "in", "k0", "0", same, 1); /* a redelivery */
    produce(e.bus, "in", "k0", "0", other, 1);
    produce(e.bus, "in", "k0", "0", later, 1);
    produce(e.bus, "in", "k0", "0", earlier, 1);
    wait_idle(&e);
    collected even;
    collect(e.bus, "t.even", &even);
    assert_int_equal(even.n, 10); /* two emits per input */
    assert_string_equal(hdr(even.ev[0], "ce_id"), hdr(even.ev[2], "ce_id"));
    assert_string_equal(hdr(even.ev[1], "ce_id"), hdr(even.ev[3], "ce_id"));
    assert_string_not_equal(hdr(even.ev[0], "ce_id"), hdr(even.ev[1], "ce_id"));
    assert_string_not_equal(hdr(even.ev[0], "ce_id"), hdr(even.ev[4], "ce_id"));
    /* An output keeps the first 48 bits (the time) of an input's UUID, so the inbox rows a flow
     * leaves go in near one end of its index; the rest is still derived (version 8). */
    for (size_t i = 6; i < 10; i++) {
        const char *id = hdr(even.ev[i], "ce_id");
        assert_int_equal(strlen(id), 36);
        assert_memory_equal(id, i < 8 ? "0190a1b2-c3e4-8" : "0190a1b2-c3d4-8", 15);
        assert_string_not_equal(id + 15, i < 8 ? "abc-8def-0123456789ab" : "ABC-8DEF-0123456789AB");
    }
    assert_string_not_equal(hdr(even.ev[6], "ce_id"), hdr(even.ev[7], "ce_id"));
    assert_true(strcmp(hdr(even.ev[8], "ce_id"), hdr(even.ev[6], "ce_id")) < 0);
    collected_free(&even);
    env_free(&e);
}

/* A bus that refuses dead letters with a payload over 16 bytes, as a broker refuses messages over
 * its size limit; everything else goes to the memory bus underneath. */
static of_bus_ops g_picky_ops;
static of_bus *g_picky_inner;
static int picky_produce(of_bus *bus, const char *topic, const of_event *ev, of_delivery_cb cb,
                         void *opaque, char *errstr, size_t errstr_size)
{
    (void)bus;
    if (strstr(topic, ".dlq") && ev->payload_len > 16) {
        snprintf(errstr, errstr_size, "Broker: Message size too large");
        return -1;
    }
    return g_picky_inner->ops->produce(g_picky_inner, topic, ev, cb, opaque, errstr, errstr_size);
}

static int picky_ensure(of_bus *bus, const char *topic, int partitions, int replication,
                        char *errstr, size_t errstr_size)
{
    (void)bus;
    return g_picky_inner->ops->ensure_topic(g_picky_inner, topic, partitions, replication, errstr,
                                            errstr_size);
}

static of_consumer *picky_subscribe(of_bus *bus, const char *group, const char *const *topics,
                                    size_t n, const of_consumer_hooks *hooks, char *errstr,
                                    size_t errstr_size)
{
    (void)bus;
    return g_picky_inner->ops->subscribe(g_picky_inner, group, topics, n, hooks, errstr,
                                         errstr_size);
}

static of_status reject_all_process(void *instance, of_call *call)
{
    (void)instance;
    g_api->set_reason(call, "refused");
    return OF_REJECT;
}

static const of_stage_descriptor reject_all_desc = {
    OF_DESCRIPTOR_HEADER,          .name = "refuser", .version = "1", .init = save_api,
    .process = reject_all_process,
};

/* A dead letter the broker refuses whole goes without its payload after a few tries, instead of
 * stalling the worker for good; the events after it still flow. */
static void test_dead_letter_too_large_goes_without_payload(void **state)
{
    (void)state;
    static tpipe t;
    tp_init(&t, "orders");
    tp_topic(&t, "in", 1);
    tp_topic(&t, "in.dlq", 1);
    tp_stage(&t, "refuse", &reject_all_desc, "in", "in.dlq");
    env e;
    env_new(&e);
    g_picky_inner = e.bus;
    g_picky_ops = *e.bus->ops;
    g_picky_ops.produce = picky_produce;
    g_picky_ops.ensure_topic = picky_ensure;
    g_picky_ops.subscribe = picky_subscribe;
    static of_bus picky;
    picky.ops = &g_picky_ops;
    of_runner_free(e.runner); /* a runner on the picky bus instead */
    e.runner = of_runner_new(&picky, e.metrics);
    of_log_level_t saved = of_log_get_level();
    of_log_set_level(OF_LVL_ERROR - 1 + 1); /* the refusals are logged as errors: expected */
    add_and_start(&e, &t);
    produce(e.bus, "in", "k", "a payload far longer than sixteen bytes", NULL, 0);
    produce(e.bus, "in", "k", "small", NULL, 0);
    wait_idle(&e);
    of_log_set_level(saved);
    collected dlq;
    collect(e.bus, "in.dlq", &dlq);
    assert_int_equal(dlq.n, 2);
    assert_int_equal(dlq.ev[0]->payload_len, 0);
    assert_non_null(strstr(hdr(dlq.ev[0], OF_DLQ_H_PAYLOAD_DROPPED), "39 bytes dropped"));
    assert_string_equal(hdr(dlq.ev[0], OF_DLQ_H_ERROR), "refused");
    assert_string_equal(hdr(dlq.ev[0], OF_DLQ_H_OFFSET), "0");
    assert_string_equal(dlq.ev[1]->payload, "small"); /* whole: it fits */
    assert_null(hdr(dlq.ev[1], OF_DLQ_H_PAYLOAD_DROPPED));
    collected_free(&dlq);
    env_free(&e);
}

/* A stage whose "hold" event waits until the test releases it. */
static pthread_mutex_t g_hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_hold_cv = PTHREAD_COND_INITIALIZER;
static int g_hold_released;

static of_status holder_process(void *instance, of_call *call)
{
    (void)instance;
    if (strcmp(g_api->event_payload(call, NULL), "hold") == 0) {
        pthread_mutex_lock(&g_hold_mu);
        while (!g_hold_released)
            pthread_cond_wait(&g_hold_cv, &g_hold_mu);
        pthread_mutex_unlock(&g_hold_mu);
    }
    return OF_OK;
}

static const of_stage_descriptor holder_desc = {
    OF_DESCRIPTOR_HEADER, .name = "holder",          .version = "1",
    .init = save_api,     .process = holder_process,
};

/* One stuck event holds its partition's commit back while the events after it (other keys, on
 * another worker) finish: the consumer pauses once the window passes 10 x max_in_flight instead
 * of taking the whole partition, and takes the rest once the stuck event is done. */
static void test_stuck_event_bounds_the_window(void **state)
{
    (void)state;
    static tpipe t;
    tp_init(&t, "win");
    tp_topic(&t, "in", 1);
    tp_topic(&t, "in.dlq", 1);
    of_stage_def *d = tp_stage(&t, "hold", &holder_desc, "in", "in.dlq");
    d->concurrency = 2;
    d->max_in_flight = 2;
    /* Keys on the two workers (murmur2 % 2, as the runner dispatches). */
    char hold_key[16] = "h0", flow_key[16] = "";
    uint32_t hw = (of_murmur2(hold_key, strlen(hold_key)) & 0x7fffffffu) % 2;
    for (int i = 0; !flow_key[0] && i < 100; i++) {
        char k[16];
        snprintf(k, sizeof(k), "f%d", i);
        if ((of_murmur2(k, strlen(k)) & 0x7fffffffu) % 2 != hw)
            snprintf(flow_key, sizeof(flow_key), "%s", k);
    }
    assert_true(flow_key[0] != '\0');
    g_hold_released = 0;
    env e;
    env_new(&e);
    add_and_start(&e, &t);
    produce(e.bus, "in", hold_key, "hold", NULL, 0);
    for (int i = 0; i < 100; i++)
        produce(e.bus, "in", flow_key, "flow", NULL, 0);
    of_stage_stats st;
    for (int waited = 0; waited < 10000; waited += 10) {
        stats_of(&e, "win", "hold", &st);
        if (st.processed_ok >= 20)
            break;
        sleep_ms(10);
    }
    sleep_ms(200); /* what would be taken without the bound is taken by now */
    stats_of(&e, "win", "hold", &st);
    assert_true(st.processed_ok >= 20);
    assert_true(st.received <= 1 + 10 * 2 + 2 + 1); /* the window limit, plus in flight */
    pthread_mutex_lock(&g_hold_mu);
    g_hold_released = 1;
    pthread_cond_broadcast(&g_hold_cv);
    pthread_mutex_unlock(&g_hold_mu);
    wait_idle(&e);
    stats_of(&e, "win", "hold", &st);
    assert_int_equal(st.processed_ok, 101);
    env_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offset_tracker_contiguous_prefix),
        cmocka_unit_test(test_offset_tracker_many_out_of_order),
        cmocka_unit_test(test_per_key_order_concurrency_4),
        cmocka_unit_test(test_threads_named_for_their_stage),
        cmocka_unit_test(test_outputs_routed_with_inherited_headers),
        cmocka_unit_test(test_retry_then_success),
        cmocka_unit_test(test_retry_exhausted_dead_letter),
        cmocka_unit_test(test_reject_dead_letters_and_partition_flows),
        cmocka_unit_test(test_failed_delivery_retries),
        cmocka_unit_test(test_max_in_flight_waits_then_pauses),
        cmocka_unit_test(test_max_in_flight_without_pausing),
        cmocka_unit_test(test_drain_finishes_in_flight_and_commits),
        cmocka_unit_test(test_drain_timeout_abandons_uncommitted),
        cmocka_unit_test(test_init_failure_rolls_back),
        cmocka_unit_test(test_two_pipelines_chained),
        cmocka_unit_test(test_start_failure_cleans_up),
        cmocka_unit_test(test_open_breaker_pauses_consumption),
        cmocka_unit_test(test_emitted_ids_follow_the_input),
        cmocka_unit_test(test_dead_letter_too_large_goes_without_payload),
        cmocka_unit_test(test_stuck_event_bounds_the_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
