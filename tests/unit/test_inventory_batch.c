/* The inventory plugin's reservations in sets (process_batch, ABI 1.5): the built plugin file in
 * the host's runner, on the memory bus with the project's MariaDB (own database per run). Orders
 * and commands queued before the stage starts, so its one worker takes them in sets: two orders of
 * one set for a scarce SKU (the first gets it), an order with an unknown SKU reserving nothing of
 * its other line, a command ending a run, an invalid order, a product without a stock row, and a
 * second order.placed of a reserved order (another event id) in the same set, which must not take
 * stock twice. Stock, reservation rows and events must be what the same events one at a time
 * (batch 1) give.
 *
 * Then commands in sets: reservations set up in SQL, a set of inventory.commit and
 * inventory.release for them (one order twice, an unknown order, an order committed before, a
 * reservation whose order id ends in a space, which SQL matches with another order's id) must
 * leave the stock and rows and say what the same commands one at a time do, in a few statements
 * a run (the plugin's statements counted through a host table that wraps the runner's). */
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
    plugin = pf_load(pool, "inventory", 1);
    if (!plugin)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return pf_teardown(plugin, pool);
}

/* P-A (10 in stock), P-B (3), P-N (a product without a stock row). */
static void reset_stock(void)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM reservations"));
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM stock"));
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM products"));
    DBT_OK(c, of_db_exec_text(c, "INSERT INTO products (sku, name, price_cents, currency) VALUES "
                                 "('P-A', 'a', 100, 'EUR'), ('P-B', 'b', 100, 'EUR'), "
                                 "('P-N', 'n', 100, 'EUR')"));
    DBT_OK(c, of_db_exec_text(c, "INSERT INTO stock (sku, on_hand, available, reserved) VALUES "
                                 "('P-A', 10, 10, 0), ('P-B', 3, 3, 0)"));
    of_db_release(c);
}

static void produce(of_bus *bus, const char *type, const char *id, const char *payload)
{
    of_event *ev = of_event_new("k", 1, payload, strlen(payload));
    assert_non_null(ev);
    assert_int_equal(of_event_add_header(ev, "ce_type", type, strlen(type)), 0);
    assert_int_equal(of_event_add_header(ev, "ce_id", id, strlen(id)), 0);
    char err[256];
    assert_int_equal(bus->ops->produce(bus, "in", ev, NULL, NULL, err, sizeof(err)), 0);
    of_event_free(ev);
}

/* order.placed of `order` with lines "SKU:QTY,SKU:QTY" (the event id: `id`). */
static void placed(of_bus *bus, const char *id, const char *order, const char *lines)
{
    char items[512] = "", copy[256];
    size_t n = 0;
    snprintf(copy, sizeof(copy), "%s", lines);
    for (char *save = NULL, *l = strtok_r(copy, ",", &save); l; l = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(l, ':');
        *colon = '\0';
        n += (size_t)snprintf(items + n, sizeof(items) - n, "%s{\"sku\":\"%s\",\"quantity\":%s}",
                              n ? "," : "", l, colon + 1);
    }
    char p[1024];
    snprintf(p, sizeof(p),
             "{\"order_id\":\"%s\",\"customer_id\":\"cust-1\",\"total_cents\":100,"
             "\"currency\":\"EUR\",\"items\":[%s]}",
             order, items);
    produce(bus, "order.placed", id, p);
}

static void command(of_bus *bus, const char *id, const char *type, const char *order)
{
    char p[256];
    snprintf(p, sizeof(p), "{\"order_id\":\"%s\"}", order);
    produce(bus, type, id, p);
}

typedef struct joined {
    char buf[4096];
    size_t n;
} joined;

static void add(joined *j, const char *s)
{
    j->n += (size_t)snprintf(j->buf + j->n, sizeof(j->buf) - j->n, "%s%s", j->n ? "," : "", s);
}

/* An event as "<order>:<ce_type without 'inventory.'>[/<sku>/<reason>]". */
static int event_cb(const of_event *ev, void *opaque)
{
    json_t *d = json_loadb(ev->payload, ev->payload_len, 0, NULL);
    const char *type = "?";
    for (size_t i = 0; i < ev->n_headers; i++)
        if (strcmp(ev->headers[i].name, "ce_type") == 0)
            type = ev->headers[i].value;
    if (strncmp(type, "inventory.", 10) == 0)
        type += 10;
    const char *order = json_string_value(json_object_get(d, "order_id"));
    const char *sku = json_string_value(json_object_get(d, "sku"));
    const char *reason = json_string_value(json_object_get(d, "reason"));
    char s[200];
    if (reason)
        snprintf(s, sizeof(s), "%s:%s/%s/%.24s", order ? order : "?", type, sku ? sku : "-",
                 reason);
    else
        snprintf(s, sizeof(s), "%s:%s", order ? order : "?", type);
    add(opaque, s);
    json_decref(d);
    return 0;
}

static void rows(const char *sql, joined *j)
{
    memset(j, 0, sizeof(*j));
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    of_db_rows *r = of_db_query(c, sql, NULL, 0);
    assert_non_null(r);
    while (of_db_rows_next(r) == 1) {
        of_db_value v;
        assert_int_equal(of_db_rows_get(r, 0, &v), 0);
        char s[200];
        snprintf(s, sizeof(s), "%.*s", (int)v.len, (const char *)v.p);
        add(j, s);
    }
    of_db_rows_free(r);
    of_db_release(c);
}

/* The plugin's statements, counted by a host table wrapping the one the runner gives it. */
static const of_host_api *real_api;
static of_host_api counting_api;
static size_t statements;

static int64_t count_exec(of_call *call, const char *sql, const of_db_value *p, size_t n)
{
    __atomic_add_fetch(&statements, 1, __ATOMIC_RELAXED);
    return real_api->db_exec(call, sql, p, n);
}

static of_db_rows *count_query(of_call *call, const char *sql, const of_db_value *p, size_t n)
{
    __atomic_add_fetch(&statements, 1, __ATOMIC_RELAXED);
    return real_api->db_query(call, sql, p, n);
}

static int counting_init(of_stage *stage, const of_host_api *api, const of_config *cfg,
                         void **instance, char *errstr, size_t errstr_size)
{
    real_api = api;
    counting_api = *api;
    counting_api.db_exec = count_exec;
    counting_api.db_query = count_query;
    return plugin->desc->init(stage, &counting_api, cfg, instance, errstr, errstr_size);
}

/* A runner with the stage (the plugin's descriptor, its init counting statements) on a memory
 * bus whose topic "in" the test fills before rig_start. */
typedef struct rig {
    of_bus *bus;
    of_metrics *metrics;
    of_runner *runner;
    of_stage_descriptor desc;
    tpipe t;
    of_stage_def *d;
} rig;

static void rig_new(rig *r)
{
    memset(r, 0, sizeof(*r));
    char err[256];
    r->bus = of_membus_new();
    r->metrics = of_metrics_new();
    assert_non_null(r->bus);
    assert_non_null(r->metrics);
    of_membus_set_retain(r->bus, 1);
    assert_int_equal(r->bus->ops->ensure_topic(r->bus, "in", 1, 1, err, sizeof(err)), 0);
}

/* Starts the stage and waits until it has taken everything. */
static void rig_start(rig *r, const char *pipeline, int batch)
{
    char err[512] = "";
    r->runner = of_runner_new(r->bus, r->metrics);
    assert_non_null(r->runner);
    of_runner_set_db(r->runner, pool);
    r->desc = *plugin->desc;
    r->desc.init = counting_init;
    tp_init(&r->t, pipeline);
    tp_topic(&r->t, "in", 1);
    tp_topic(&r->t, "events", 1);
    tp_topic(&r->t, "in.dlq", 1);
    r->d = tp_stage(&r->t, "inventory", &r->desc, "in", "in.dlq");
    tp_map(r->d, "events", "events");
    r->d->config = of_config_from_pairs(plugin->desc->options, NULL, NULL, 0, err, sizeof(err));
    assert_non_null(r->d->config);
    r->d->batch = batch;
    /* The second o8 finds its reservation on its second try (as with one event at a time). */
    r->d->retry.max_attempts = 2;
    r->d->retry.initial_backoff_ms = 1;
    r->d->retry.max_backoff_ms = 1;
    if (of_runner_add_pipeline(r->runner, &r->t.p, err, sizeof(err)) != 0)
        fail_msg("add_pipeline: %s", err);
    __atomic_store_n(&statements, 0, __ATOMIC_RELAXED);
    if (of_runner_start(r->runner, err, sizeof(err)) != 0)
        fail_msg("start: %s", err);
    if (!of_membus_wait_idle(r->bus, 30000))
        fail_msg("the bus did not become idle within 30 s");
}

/* Transactions the stage committed (and checks that they hold `events` events). */
static uint64_t rig_transactions(rig *r, const char *pipeline, unsigned events)
{
    const struct of_histogram *h =
        of_metrics_find_histogram(r->metrics, "stage_transaction_events", pipeline, "inventory");
    assert_non_null(h);
    assert_int_equal(h->sum_micro, events * 1000000ULL);
    return h->count;
}

static void rig_free(rig *r)
{
    of_runner_free(r->runner);
    of_config_free(r->d->config);
    r->bus->ops->destroy(r->bus);
    of_metrics_free(r->metrics);
}

static void run_set(const char *pipeline, int batch)
{
    reset_stock();
    rig r;
    rig_new(&r);
    of_bus *bus = r.bus;
    placed(bus, "e1", "o1", "P-B:1,P-A:2");
    placed(bus, "e2", "o2", "P-B:2");              /* the last of P-B */
    placed(bus, "e3", "o3", "P-B:1");              /* none left: rejected */
    placed(bus, "e4", "o4", "P-A:1,X-1:1");        /* unknown SKU: P-A not taken either */
    command(bus, "e5", "inventory.release", "o1"); /* ends the run */
    placed(bus, "e6", "o5", "P-B:1");              /* o1's P-B back */
    produce(bus, "order.placed", "e7",
            "{\"order_id\":\"o6\",\"customer_id\":\"c\",\"total_cents\":1,\"currency\":\"EUR\","
            "\"items\":[{\"sku\":\"P-A\",\"quantity\":0}]}"); /* invalid */
    placed(bus, "e8", "o7", "P-N:1");                         /* a product without stock */
    placed(bus, "e9", "o8", "P-A:1");
    placed(bus, "e9-again", "o8", "P-A:1"); /* o8 again under another id: not twice */
    command(bus, "e10", "inventory.commit", "o2");
    rig_start(&r, pipeline, batch);

    joined j = {0};
    of_membus_read_topic(bus, "events", event_cb, &j);
    assert_string_equal(j.buf, "o1:reserved,o2:reserved,o3:rejected/P-B/insufficient stock,"
                               "o4:rejected/X-1/unknown sku,o1:released,o5:reserved,"
                               "o6:rejected/-/invalid order: items[0].,"
                               "o7:rejected/P-N/insufficient stock,o8:reserved,o2:committed");
    memset(&j, 0, sizeof(j));
    of_membus_read_topic(bus, "in.dlq", event_cb, &j);
    assert_string_equal(j.buf, "");
    rows("SELECT CONCAT_WS(' ', sku, on_hand, available, reserved) FROM stock ORDER BY sku", &j);
    assert_string_equal(j.buf, "P-A 10 9 1,P-B 1 0 1");
    rows("SELECT CONCAT_WS(' ', order_id, sku, quantity, state) FROM reservations ORDER BY "
         "order_id, sku",
         &j);
    assert_string_equal(j.buf, "o1 P-A 2 RELEASED,o1 P-B 1 RELEASED,o2 P-B 2 COMMITTED,"
                               "o5 P-B 1 RESERVED,o8 P-A 1 RESERVED");

    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(r.runner, pipeline, "inventory", &st), 0);
    assert_int_equal(st.processed_ok, 11);
    assert_int_equal(st.dead_lettered, 0);
    assert_int_equal(st.retried, 1); /* o8's second event, and nothing else */
    uint64_t tx = rig_transactions(&r, pipeline, 11);
    print_message("batch %d: %llu transactions for 11 events\n", batch, (unsigned long long)tx);
    /* Fewer with sets; how many depends on when the worker woke (and o8's second event splits
     * its set). */
    if (batch > 1 && tx >= 11)
        fail_msg("%llu transactions for 11 events: no batches", (unsigned long long)tx);
    rig_free(&r);
}

#define N_BULK 32 /* orders b10..b41, one P-A each: even ones committed, odd ones released */

/* Reservations set up in SQL: o1 (P-A 2, P-B 1), o2 (P-B 2), o3 (P-A 1), o4 (P-A 3), o5 (P-A 1,
 * COMMITTED before), "o6 " (P-B 1, the id ending in a space) and the bulk orders; the stock
 * holds what they reserved. */
static void reset_reserved(void)
{
    reset_stock();
    char err[256], sql[8192];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    size_t n = (size_t)snprintf(sql, sizeof(sql),
                                "INSERT INTO reservations (order_id, sku, quantity, state) VALUES "
                                "('o1', 'P-A', 2, 'RESERVED'), ('o1', 'P-B', 1, 'RESERVED'), "
                                "('o2', 'P-B', 2, 'RESERVED'), ('o3', 'P-A', 1, 'RESERVED'), "
                                "('o4', 'P-A', 3, 'RESERVED'), ('o5', 'P-A', 1, 'COMMITTED'), "
                                "('o6 ', 'P-B', 1, 'RESERVED')");
    for (int i = 0; i < N_BULK; i++)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, ", ('b%d', 'P-A', 1, 'RESERVED')", 10 + i);
    DBT_OK(c, of_db_exec_text(c, sql));
    /* P-A: on hand 100, reserved 2 + 1 + 3 + N_BULK; P-B: on hand 5, reserved 1 + 2 + 1. */
    DBT_OK(c, of_db_exec_text(c, "UPDATE stock SET on_hand = 100, reserved = 38, available = 62 "
                                 "WHERE sku = 'P-A'"));
    DBT_OK(c, of_db_exec_text(c, "UPDATE stock SET on_hand = 5, reserved = 4, available = 1 "
                                 "WHERE sku = 'P-B'"));
    of_db_release(c);
}

typedef struct outcome {
    joined events, stock, reservations;
    uint64_t transactions;
    size_t statements;
} outcome;

static void run_commands(const char *pipeline, int batch, outcome *out)
{
    reset_reserved();
    rig r;
    rig_new(&r);
    command(r.bus, "c1", "inventory.commit", "o1");
    command(r.bus, "c2", "inventory.release", "o2");
    command(r.bus, "c3", "inventory.commit", "o1");  /* o1 again: nothing left */
    command(r.bus, "c4", "inventory.release", "o9"); /* never reserved */
    command(r.bus, "c5", "inventory.commit", "o5");  /* committed before */
    command(r.bus, "c6", "inventory.release", "o3");
    for (int i = 0; i < N_BULK; i++) {
        char id[16], order[16];
        snprintf(id, sizeof(id), "cb%d", i);
        snprintf(order, sizeof(order), "b%d", 10 + i);
        command(r.bus, id, i % 2 ? "inventory.release" : "inventory.commit", order);
    }
    command(r.bus, "c7", "inventory.commit", "o4");
    rig_start(&r, pipeline, batch);
    out->statements = __atomic_load_n(&statements, __ATOMIC_RELAXED);
    out->transactions = rig_transactions(&r, pipeline, 7 + N_BULK);
    of_membus_read_topic(r.bus, "events", event_cb, &out->events);
    joined dlq = {0};
    of_membus_read_topic(r.bus, "in.dlq", event_cb, &dlq);
    assert_string_equal(dlq.buf, "");
    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(r.runner, pipeline, "inventory", &st), 0);
    assert_int_equal(st.processed_ok, 7 + N_BULK);
    assert_int_equal(st.retried, 0);
    rig_free(&r);
    rows("SELECT CONCAT_WS(' ', sku, on_hand, available, reserved) FROM stock ORDER BY sku",
         &out->stock);
    rows("SELECT CONCAT_WS(' ', order_id, sku, quantity, state) FROM reservations "
         "WHERE order_id NOT LIKE 'b%' ORDER BY order_id, sku",
         &out->reservations);
}

/* The bulk orders' events: b10:committed,b11:released,... */
static void bulk_events(joined *j)
{
    for (int i = 0; i < N_BULK; i++) {
        char s[32];
        snprintf(s, sizeof(s), "b%d:%s", 10 + i, i % 2 ? "released" : "committed");
        add(j, s);
    }
}

static void test_commands_in_sets(void **state)
{
    (void)state;
    outcome one = {0}, set = {0};
    run_commands("icb1", 1, &one);
    run_commands("icbs", 64, &set);
    print_message("commands one at a time: %zu statements in %llu transactions; in sets: %zu in "
                  "%llu\n",
                  one.statements, (unsigned long long)one.transactions, set.statements,
                  (unsigned long long)set.transactions);
    joined want = {0};
    add(&want, "o1:committed,o2:released,o3:released");
    bulk_events(&want);
    add(&want, "o4:committed");
    assert_string_equal(one.events.buf, want.buf);
    assert_string_equal(set.events.buf, want.buf);
    /* P-A: o1 (2), o4 (3) and 16 bulk committed, o3 (1) and 16 bulk released. P-B: o1 (1)
     * committed, o2 (2) released, "o6 " untouched. */
    assert_string_equal(one.stock.buf, "P-A 79 79 0,P-B 4 3 1");
    assert_string_equal(set.stock.buf, one.stock.buf);
    assert_string_equal(
        one.reservations.buf,
        "o1 P-A 2 COMMITTED,o1 P-B 1 COMMITTED,o2 P-B 2 RELEASED,"
        "o3 P-A 1 RELEASED,o4 P-A 3 COMMITTED,o5 P-A 1 COMMITTED,o6  P-B 1 RESERVED");
    assert_string_equal(set.reservations.buf, one.reservations.buf);
    /* One statement a command alone; a run takes at most four (its rows' read, the stock, the
     * two kinds of rows ended), so fewer than one a command unless nearly every round held one
     * or two commands (the events are all queued before the stage starts). */
    assert_int_equal(one.statements, 7 + N_BULK);
    if (set.statements > 4 * set.transactions || set.statements >= 7 + N_BULK)
        fail_msg("%zu statements in %llu transactions for %d commands: not in sets", set.statements,
                 (unsigned long long)set.transactions, 7 + N_BULK);
}

/* A command whose order id matches a reservation of another id in SQL (PAD SPACE: 'o6' = 'o6 ')
 * settles what the lone path settles: the run goes the lone path's way. */
static void test_commands_pad_space(void **state)
{
    (void)state;
    outcome out[2];
    memset(out, 0, sizeof(out));
    for (int b = 0; b < 2; b++) {
        reset_reserved();
        rig r;
        rig_new(&r);
        command(r.bus, "p1", "inventory.commit", "o1");
        command(r.bus, "p2", "inventory.commit", "o6");
        command(r.bus, "p3", "inventory.release", "o2");
        rig_start(&r, b ? "ipss" : "ips1", b ? 64 : 1);
        of_membus_read_topic(r.bus, "events", event_cb, &out[b].events);
        of_stage_stats st;
        assert_int_equal(of_runner_stage_stats(r.runner, b ? "ipss" : "ips1", "inventory", &st), 0);
        assert_int_equal(st.processed_ok, 3);
        assert_int_equal(st.retried, 0);
        rig_free(&r);
        rows("SELECT CONCAT_WS(' ', sku, on_hand, available, reserved) FROM stock ORDER BY sku",
             &out[b].stock);
    }
    assert_string_equal(out[0].events.buf, "o1:committed,o6:committed,o2:released");
    assert_string_equal(out[1].events.buf, out[0].events.buf);
    assert_string_equal(out[0].stock.buf, "P-A 98 62 36,P-B 3 3 0");
    assert_string_equal(out[1].stock.buf, out[0].stock.buf);
}

static void test_reservations_in_sets(void **state)
{
    (void)state;
    run_set("ibs", 32);
}

static void test_reservations_one_by_one(void **state)
{
    (void)state;
    run_set("ib1", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reservations_in_sets),
        cmocka_unit_test(test_reservations_one_by_one),
        cmocka_unit_test(test_commands_in_sets),
        cmocka_unit_test(test_commands_pad_space),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
