/* The payment plugin in sets (process_batch, ABI 1.5): the built plugin file in the host's runner,
 * on the memory bus with the project's MariaDB (own database per run), the simulated provider
 * declining amounts over 50.00. Reserved events queued before the stage starts, so its one worker
 * takes them in sets: new orders charged once each and recorded with their own payment id (one
 * INSERT ... RETURNING for a set), an order seen twice in a set and one charged before answered
 * with the recorded payment, a refund after a charge of the same set finding it, a malformed event
 * dead-lettered without the others. The same events one at a time (batch 1) give the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_db_util.h"

#include "plugin_fixture.h"

#include "bus.h"
#include "metrics.h"
#include "options.h"
#include "pipeline.h"
#include "plugin.h"
#include "runner.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tpipe.h"

static of_db_pool *pool;
static of_plugin *plugin;

static int group_setup(void **state)
{
    (void)state;
    pool = dbt_host_schema_pool(4, NULL);
    if (!pool)
        return -1;
    plugin = pf_load(pool, "payment", 1);
    if (!plugin)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return pf_teardown(plugin, pool);
}

static void produce(of_bus *bus, const char *type, const char *payload)
{
    of_event *ev = of_event_new("k", 1, payload, strlen(payload));
    assert_non_null(ev);
    assert_int_equal(of_event_add_header(ev, "ce_type", type, strlen(type)), 0);
    char err[256];
    assert_int_equal(bus->ops->produce(bus, "in", ev, NULL, NULL, err, sizeof(err)), 0);
    of_event_free(ev);
}

static void reserved(of_bus *bus, const char *order, int64_t cents, const char *currency)
{
    char p[256];
    snprintf(p, sizeof(p),
             "{\"order_id\":\"%s\",\"customer_id\":\"cust-1\",\"total_cents\":%lld,"
             "\"currency\":\"%s\",\"items\":[]}",
             order, (long long)cents, currency);
    produce(bus, "inventory.reserved", p);
}

typedef struct joined {
    char buf[4096];
    size_t n;
} joined;

static void add(joined *j, const char *s)
{
    j->n += (size_t)snprintf(j->buf + j->n, sizeof(j->buf) - j->n, "%s%s", j->n ? "," : "", s);
}

/* An event as "<order>:<ce_type>[:<payment id>]". */
static int event_cb(const of_event *ev, void *opaque)
{
    json_t *d = json_loadb(ev->payload, ev->payload_len, 0, NULL);
    const char *type = "?";
    for (size_t i = 0; i < ev->n_headers; i++)
        if (strcmp(ev->headers[i].name, "ce_type") == 0)
            type = ev->headers[i].value;
    const char *order = json_string_value(json_object_get(d, "order_id"));
    json_t *pid = json_object_get(d, "payment_id");
    char s[160];
    if (pid)
        snprintf(s, sizeof(s), "%s:%.40s:%lld", order ? order : "?", type,
                 (long long)json_integer_value(pid));
    else
        snprintf(s, sizeof(s), "%s:%.40s", order ? order : "?", type);
    add(opaque, s);
    json_decref(d);
    return 0;
}

/* The payment id of an order, -1 without one. */
static long long id_of(const char *order)
{
    of_db_value p = OF_DB_S(order);
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    long long id =
        dbt_int(c, "SELECT COALESCE(MAX(id), -1) FROM payments WHERE order_id = ?", &p, 1);
    of_db_release(c);
    return id;
}

static void run_set(const char *pipeline, int batch)
{
    char err[512] = "";
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM payments"));
    /* C was charged before (a redelivery after its commit, say). */
    DBT_OK(c, of_db_exec_text(c, "INSERT INTO payments (id, order_id, amount_cents, currency, "
                                 "state, provider_ref) VALUES (777, 'C', 500, 'EUR', 'CAPTURED', "
                                 "'sim-C')"));
    of_db_release(c);

    of_bus *bus = of_membus_new();
    of_metrics *metrics = of_metrics_new();
    assert_non_null(bus);
    assert_non_null(metrics);
    of_membus_set_retain(bus, 1);
    assert_int_equal(bus->ops->ensure_topic(bus, "in", 1, 1, err, sizeof(err)), 0);
    reserved(bus, "A", 1000, "EUR");
    reserved(bus, "B", 9000, "EUR"); /* over 50.00: declined */
    reserved(bus, "A", 1000, "EUR"); /* A again, in the same set: not charged twice */
    produce(bus, "inventory.released", "{\"order_id\":\"A\"}"); /* not accepted: skipped */
    reserved(bus, "C", 500, "EUR");                             /* charged before */
    reserved(bus, "C ", 500, "EUR"); /* SQL takes it for C (PAD SPACE): refused as malformed */
    produce(bus, "payment.refund", "{\"order_id\":\"A\",\"reason\":\"cancelled\"}");
    reserved(bus, "D", 2000, "EUR");
    reserved(bus, "X", 2000, "eur"); /* malformed */
    reserved(bus, "E", 3000, "USD");
    reserved(bus, "B", 9000, "EUR"); /* B again: the recorded decline */

    of_runner *runner = of_runner_new(bus, metrics);
    assert_non_null(runner);
    of_runner_set_db(runner, pool);
    tpipe t;
    tp_init(&t, pipeline);
    tp_topic(&t, "in", 1);
    tp_topic(&t, "events", 1);
    tp_topic(&t, "in.dlq", 1);
    of_stage_def *d = tp_stage(&t, "payment", plugin->desc, "in", "in.dlq");
    tp_map(d, "events", "events");
    const char *keys[] = {"decline_over_cents"}, *values[] = {"5000"};
    d->config = of_config_from_pairs(plugin->desc->options, keys, values, 1, err, sizeof(err));
    assert_non_null(d->config);
    d->batch = batch;
    d->retry.max_attempts = 1;
    if (of_runner_add_pipeline(runner, &t.p, err, sizeof(err)) != 0)
        fail_msg("add_pipeline: %s", err);
    if (of_runner_start(runner, err, sizeof(err)) != 0)
        fail_msg("start: %s", err);
    if (!of_membus_wait_idle(bus, 30000))
        fail_msg("the bus did not become idle within 30 s");

    long long a = id_of("A"), dd = id_of("D"), e = id_of("E");
    assert_true(a > 0 && dd > 0 && e > 0 && a != dd && dd != e && a != e);
    assert_true(id_of("B") > 0);
    assert_int_equal(id_of("X"), -1);
    char expect[1024];
    snprintf(expect, sizeof(expect),
             "A:payment.captured:%lld,B:payment.declined,A:payment.captured:%lld,"
             "C:payment.captured:777,A:payment.refunded:%lld,D:payment.captured:%lld,"
             "E:payment.captured:%lld,B:payment.declined",
             a, a, a, dd, e);
    joined j = {0};
    of_membus_read_topic(bus, "events", event_cb, &j);
    assert_string_equal(j.buf, expect);
    memset(&j, 0, sizeof(j));
    of_membus_read_topic(bus, "in.dlq", event_cb, &j);
    assert_string_equal(j.buf, "C :inventory.reserved,X:inventory.reserved");
    c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(dbt_int(c, "SELECT COUNT(*) FROM payments", NULL, 0), 5);
    assert_int_equal(dbt_int(c,
                             "SELECT COUNT(*) FROM payments WHERE order_id = 'A' AND state = "
                             "'REFUNDED'",
                             NULL, 0),
                     1);
    assert_int_equal(dbt_int(c,
                             "SELECT COUNT(*) FROM payments WHERE order_id = 'B' AND state = "
                             "'DECLINED'",
                             NULL, 0),
                     1);
    of_db_release(c);

    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(runner, pipeline, "payment", &st), 0);
    assert_int_equal(st.processed_ok, 8);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(st.rejected, 2); /* "C " and X, not retried */
    assert_int_equal(st.dead_lettered, 2);
    const struct of_histogram *h =
        of_metrics_find_histogram(metrics, "stage_transaction_events", pipeline, "payment");
    assert_non_null(h);
    assert_int_equal(h->sum_micro, 8 * 1000000ULL);
    print_message("batch %d: %llu transactions for 8 events\n", batch,
                  (unsigned long long)h->count);
    if (batch > 1 && h->count > 5)
        fail_msg("%llu transactions for 8 events: no sets", (unsigned long long)h->count);
    of_runner_free(runner);
    of_config_free(d->config);
    bus->ops->destroy(bus);
    of_metrics_free(metrics);
}

static void test_payments_in_sets(void **state)
{
    (void)state;
    run_set("pbs", 32);
}

static void test_payments_one_by_one(void **state)
{
    (void)state;
    run_set("pb1", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payments_in_sets),
        cmocka_unit_test(test_payments_one_by_one),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
