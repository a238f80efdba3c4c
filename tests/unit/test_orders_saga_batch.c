/* The orders plugin's saga in sets (process_batch, ABI 1.5): the built plugin file in the host's
 * runner, on the memory bus with the project's MariaDB (own database per run). Saga events of
 * five orders and an unknown one, queued before the stage starts so its one worker takes them in
 * sets, two events of one order side by side: every order must end where the saga says, with
 * its history numbered without gaps, one status event per move in order, and the compensations
 * (release, refund) emitted once; a malformed event and an order id ending in a space (the same
 * order to SQL) are dead-lettered, a type the stage does not accept is skipped. The same events one
 * at a time (batch 1) must give the same result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_db_util.h"

#include "plugin_fixture.h"

#include "bus.h"
#include "metrics.h"
#include "pipeline.h"
#include "plugin.h"
#include "runner.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tpipe.h"

static of_db_pool *pool;
static of_plugin *plugin;

#define OID(c) "00000000-0000-4000-8000-00000000000" c /* an order id of 36 characters */

static int group_setup(void **state)
{
    (void)state;
    pool = dbt_host_schema_pool(6, NULL); /* 2 held by a test */
    if (!pool)
        return -1;
    plugin = pf_load(pool, "orders", 1);
    if (!plugin)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return pf_teardown(plugin, pool);
}

/* Orders A, B, D, E placed (PENDING, history seq 1) and C cancelled (seq 2). */
static void reset_orders(void)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM order_history"));
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM orders"));
    const char *ids[] = {OID("a"), OID("b"), OID("c"), OID("d"), OID("e")};
    for (size_t i = 0; i < 5; i++) {
        const char *status = i == 2 ? "CANCELLED" : "PENDING";
        of_db_value p[] = {OF_DB_S(ids[i]), OF_DB_S(status), OF_DB_I(i == 2 ? 2 : 1)};
        assert_int_equal(of_db_exec(c,
                                    "INSERT INTO orders (id, customer_id, status, history_seq, "
                                    "total_cents, currency) VALUES (?, 'cust-1', ?, ?, 1000, "
                                    "'EUR')",
                                    p, 3),
                         1);
        assert_int_equal(of_db_exec(c,
                                    "INSERT INTO order_history (order_id, seq, from_status, "
                                    "to_status, reason) VALUES (?, 1, NULL, 'PENDING', 'placed')",
                                    p, 1),
                         1);
        if (i == 2)
            assert_int_equal(of_db_exec(c,
                                        "INSERT INTO order_history (order_id, seq, from_status, "
                                        "to_status, reason) VALUES (?, 2, 'PENDING', "
                                        "'CANCELLED', 'cancelled by the customer')",
                                        p, 1),
                             1);
    }
    of_db_release(c);
}

static void produce(of_bus *bus, const char *key, const char *type, const char *payload)
{
    of_event *ev = of_event_new(key, strlen(key), payload, strlen(payload));
    assert_non_null(ev);
    assert_int_equal(of_event_add_header(ev, "ce_type", type, strlen(type)), 0);
    char err[256];
    assert_int_equal(bus->ops->produce(bus, "in", ev, NULL, NULL, err, sizeof(err)), 0);
    of_event_free(ev);
}

typedef struct joined {
    char buf[8192];
    size_t n;
} joined;

static void add(joined *j, const char *s)
{
    j->n += (size_t)snprintf(j->buf + j->n, sizeof(j->buf) - j->n, "%s%s", j->n ? "," : "", s);
}

/* A status event as "<last id char>:<seq>:<from>><to>"; another as "<last id char>:<ce_type>". */
static int event_cb(const of_event *ev, void *opaque)
{
    joined *j = opaque;
    json_t *d = json_loadb(ev->payload, ev->payload_len, 0, NULL);
    const char *id = json_string_value(json_object_get(d, "order_id"));
    char s[160];
    size_t idl = id ? strlen(id) : 0;
    char last = idl ? id[idl - 1] : '?';
    const char *type = "?";
    for (size_t i = 0; i < ev->n_headers; i++)
        if (strcmp(ev->headers[i].name, "ce_type") == 0)
            type = ev->headers[i].value;
    if (json_object_get(d, "seq")) {
        const char *from = json_string_value(json_object_get(d, "from"));
        snprintf(s, sizeof(s), "%c:%lld:%s>%s", last,
                 (long long)json_integer_value(json_object_get(d, "seq")), from ? from : "-",
                 json_string_value(json_object_get(d, "to")));
    } else {
        snprintf(s, sizeof(s), "%c:%.60s", last, type);
    }
    add(j, s);
    json_decref(d);
    return 0;
}

static void topic(of_bus *bus, const char *name, joined *j)
{
    memset(j, 0, sizeof(*j));
    of_membus_read_topic(bus, name, event_cb, j);
}

/* Every order's status and history as "<last id char>=<status>[<seq>:<to>/<reason>...]". */
static void state(joined *j)
{
    memset(j, 0, sizeof(*j));
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    of_db_rows *r = of_db_query(c,
                                "SELECT o.id, o.status, h.seq, h.to_status, h.reason FROM orders o "
                                "JOIN order_history h ON h.order_id = o.id ORDER BY o.id, h.seq",
                                NULL, 0);
    assert_non_null(r);
    char cur = 0;
    while (of_db_rows_next(r) == 1) {
        of_db_value id, st, seq, to, why;
        assert_int_equal(of_db_rows_get(r, 0, &id), 0);
        assert_int_equal(of_db_rows_get(r, 1, &st), 0);
        assert_int_equal(of_db_rows_get(r, 2, &seq), 0);
        assert_int_equal(of_db_rows_get(r, 3, &to), 0);
        assert_int_equal(of_db_rows_get(r, 4, &why), 0);
        char last = ((const char *)id.p)[id.len - 1], s[400];
        if (last != cur)
            snprintf(s, sizeof(s), "%c=%.*s", last, (int)st.len, (const char *)st.p), add(j, s);
        cur = last;
        snprintf(s, sizeof(s), "%lld:%.*s/%.*s", (long long)seq.i, (int)to.len, (const char *)to.p,
                 (int)why.len, (const char *)why.p);
        add(j, s);
    }
    of_db_rows_free(r);
    of_db_release(c);
}

typedef struct env {
    of_bus *bus;
    of_metrics *metrics;
    of_runner *runner;
    tpipe t;
} env;

/* A memory bus with the input topic, for the events to queue up before the stage starts. */
static void env_bus(env *e)
{
    e->bus = of_membus_new();
    e->metrics = of_metrics_new();
    assert_non_null(e->bus);
    assert_non_null(e->metrics);
    of_membus_set_retain(e->bus, 1);
    char err[512] = "";
    assert_int_equal(e->bus->ops->ensure_topic(e->bus, "in", 1, 1, err, sizeof(err)), 0);
}

/* The orders stage on it (one worker, one try per event). */
static void env_start(env *e, const char *pipeline, int batch)
{
    char err[512] = "";
    e->runner = of_runner_new(e->bus, e->metrics);
    assert_non_null(e->runner);
    of_runner_set_db(e->runner, pool);
    tp_init(&e->t, pipeline);
    const char *topics[] = {"in", "placed", "status", "inventory", "payment", "in.dlq"};
    for (size_t i = 0; i < 6; i++)
        tp_topic(&e->t, topics[i], 1);
    of_stage_def *d = tp_stage(&e->t, "orders", plugin->desc, "in", "in.dlq");
    for (size_t i = 1; i < 5; i++)
        tp_map(d, topics[i], topics[i]);
    d->batch = batch;
    d->retry.max_attempts = 1;
    if (of_runner_add_pipeline(e->runner, &e->t.p, err, sizeof(err)) != 0)
        fail_msg("add_pipeline: %s", err);
    if (of_runner_start(e->runner, err, sizeof(err)) != 0)
        fail_msg("start: %s", err);
}

static void env_free(env *e)
{
    of_runner_free(e->runner);
    e->bus->ops->destroy(e->bus);
    of_metrics_free(e->metrics);
}

static void wait_idle(env *e)
{
    if (!of_membus_wait_idle(e->bus, 30000))
        fail_msg("the bus did not become idle within 30 s");
}

static const struct of_histogram *tx_events(env *e, const char *pipeline)
{
    const struct of_histogram *h =
        of_metrics_find_histogram(e->metrics, "stage_transaction_events", pipeline, "orders");
    assert_non_null(h);
    return h;
}

static void run_saga(const char *pipeline, int batch)
{
    reset_orders();
    env e;
    env_bus(&e);
    of_bus *bus = e.bus;

    /* One key for all: one worker, this order. */
    const char *k = "k";
    produce(bus, k, "inventory.reserved", "{\"order_id\":\"" OID("a") "\"}");
    produce(bus, k, "payment.captured", "{\"order_id\":\"" OID("a") "\",\"payment_id\":7}");
    /* The payment before the reservation: it implies it; the reservation then changes nothing. */
    produce(bus, k, "payment.captured", "{\"order_id\":\"" OID("b") "\",\"payment_id\":8}");
    produce(bus, k, "inventory.reserved", "{\"order_id\":\"" OID("b") "\"}");
    /* A cancelled order reserved and captured late: stock and money go back. */
    produce(bus, k, "inventory.reserved", "{\"order_id\":\"" OID("c") "\"}");
    produce(bus, k, "payment.captured", "{\"order_id\":\"" OID("c") "\",\"payment_id\":9}");
    produce(bus, k, "inventory.committed", "{\"order_id\":\"" OID("c") "\"}"); /* not accepted */
    produce(bus, k, "inventory.reserved", "{\"order_id\":\"" OID("d") "\"}");
    produce(bus, k, "payment.declined", "{\"order_id\":\"" OID("d") "\",\"reason\":\"card\"}");
    produce(bus, k, "inventory.rejected",
            "{\"order_id\":\"" OID("e") "\",\"reason\":\"out of stock\",\"sku\":\"X-1\"}");
    produce(bus, k, "inventory.reserved", "{\"order_id\":\"" OID("f") "\"}");  /* unknown */
    produce(bus, k, "payment.captured", "{\"order_id\":5}");                   /* malformed */
    produce(bus, k, "inventory.rejected", "{\"order_id\":\"" OID("a") " \"}"); /* A to SQL */
    produce(bus, k, "inventory.reserved", "{\"order_id\":\"" OID("a") "\"}");  /* late repeat */

    env_start(&e, pipeline, batch);
    wait_idle(&e);

    joined j;
    state(&j);
    assert_string_equal(j.buf, "a=CONFIRMED,1:PENDING/placed,2:RESERVED/stock reserved,"
                               "3:PAID/payment captured (payment 7),4:CONFIRMED/order confirmed,"
                               "b=CONFIRMED,1:PENDING/placed,2:RESERVED/stock reserved,"
                               "3:PAID/payment captured (payment 8),4:CONFIRMED/order confirmed,"
                               "c=CANCELLED,1:PENDING/placed,2:CANCELLED/cancelled by the customer,"
                               "d=CANCELLED,1:PENDING/placed,2:RESERVED/stock reserved,"
                               "3:CANCELLED/payment declined: card,"
                               "e=REJECTED,1:PENDING/placed,2:REJECTED/out of stock (sku X-1)");
    topic(bus, "status", &j);
    assert_string_equal(j.buf, "a:2:PENDING>RESERVED,a:3:RESERVED>PAID,a:4:PAID>CONFIRMED,"
                               "b:2:PENDING>RESERVED,b:3:RESERVED>PAID,b:4:PAID>CONFIRMED,"
                               "d:2:PENDING>RESERVED,d:3:RESERVED>CANCELLED,"
                               "e:2:PENDING>REJECTED");
    topic(bus, "inventory", &j);
    assert_string_equal(j.buf, "a:inventory.commit,b:inventory.commit,c:inventory.release,"
                               "d:inventory.release");
    topic(bus, "payment", &j);
    assert_string_equal(j.buf, "c:payment.refund");
    topic(bus, "in.dlq", &j);
    assert_string_equal(j.buf, "?:payment.captured, :inventory.rejected");

    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(e.runner, pipeline, "orders", &st), 0);
    assert_int_equal(st.processed_ok, 11);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(st.dead_lettered, 2);
    const struct of_histogram *h = tx_events(&e, pipeline);
    assert_int_equal(h->sum_micro, 11 * 1000000ULL);
    print_message("batch %d: %llu transactions for 11 events\n", batch,
                  (unsigned long long)h->count);
    if (batch > 1 && h->count > 6)
        fail_msg("%llu transactions for 11 events: no sets", (unsigned long long)h->count);
    env_free(&e);
}

static void test_saga_in_sets(void **state)
{
    (void)state;
    run_saga("osb", 32);
}

static void test_saga_one_by_one(void **state)
{
    (void)state;
    run_saga("os1", 1);
}

/* Another writer of an order (the saga of another host, holding the order's other topic) moves
 * B while this stage's set waits for B's row lock, after it has read and locked A: the set must
 * number B's next history row after the other writer's, in the same transaction (no failed
 * statement, after which each event would go alone). D's row, held a little longer than the
 * stage needs to start, keeps its worker busy until A and B are queued behind it, so they come
 * in one set (with D or after it). */
static void test_seq_read_under_the_lock(void **unused)
{
    (void)unused;
    reset_orders();
    env e;
    env_bus(&e);
    produce(e.bus, "k", "inventory.reserved", "{\"order_id\":\"" OID("d") "\"}");
    produce(e.bus, "k", "inventory.reserved", "{\"order_id\":\"" OID("a") "\"}");
    produce(e.bus, "k", "payment.captured", "{\"order_id\":\"" OID("b") "\",\"payment_id\":8}");
    char err[256];
    of_db_conn *hold_d = of_db_acquire(pool, err, sizeof(err));
    of_db_conn *other = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(hold_d);
    assert_non_null(other);
    DBT_OK(hold_d, of_db_exec_text(hold_d, "START TRANSACTION"));
    DBT_OK(hold_d, of_db_exec_text(hold_d, "SELECT id FROM orders WHERE id = '" OID("d") "' FOR "
                                                                                         "UPDATE"));
    DBT_OK(other, of_db_exec_text(other, "START TRANSACTION"));
    DBT_OK(other, of_db_exec_text(other, "UPDATE orders SET status = 'RESERVED', history_seq = 2 "
                                         "WHERE id = '" OID("b") "'"));
    DBT_OK(other, of_db_exec_text(other, "INSERT INTO order_history (order_id, seq, from_status, "
                                         "to_status, reason) VALUES ('" OID(
                                             "b") "', 2, "
                                                  "'PENDING', 'RESERVED', 'elsewhere')"));
    env_start(&e, "osl", 32);
    struct timespec pause = {0, 400 * 1000000L};
    nanosleep(&pause, NULL); /* the worker waits for D, A and B queue up */
    DBT_OK(hold_d, of_db_exec_text(hold_d, "COMMIT"));
    nanosleep(&pause, NULL); /* the set has locked A and waits for B */
    DBT_OK(other, of_db_exec_text(other, "COMMIT"));
    of_db_release(hold_d);
    of_db_release(other);
    wait_idle(&e);

    joined j;
    state(&j);
    assert_string_equal(j.buf, "a=RESERVED,1:PENDING/placed,2:RESERVED/stock reserved,"
                               "b=CONFIRMED,1:PENDING/placed,2:RESERVED/elsewhere,"
                               "3:PAID/payment captured (payment 8),4:CONFIRMED/order confirmed,"
                               "c=CANCELLED,1:PENDING/placed,2:CANCELLED/cancelled by the customer,"
                               "d=RESERVED,1:PENDING/placed,2:RESERVED/stock reserved,"
                               "e=PENDING,1:PENDING/placed");
    topic(e.bus, "status", &j);
    assert_string_equal(j.buf, "d:2:PENDING>RESERVED,a:2:PENDING>RESERVED,b:3:RESERVED>PAID,"
                               "b:4:PAID>CONFIRMED");
    topic(e.bus, "in.dlq", &j);
    assert_string_equal(j.buf, "");
    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(e.runner, "osl", "orders", &st), 0);
    assert_int_equal(st.processed_ok, 3);
    assert_int_equal(st.dead_lettered, 0);
    /* Each event ran once ([D A B], or D then [A B]): a failed set would have run them again. */
    const struct of_histogram *runs =
        of_metrics_find_histogram(e.metrics, "stage_processing_seconds", "osl", "orders");
    assert_non_null(runs);
    assert_int_equal(runs->count, 3);
    assert_int_equal(tx_events(&e, "osl")->sum_micro, 3 * 1000000ULL);
    env_free(&e);
}

/* A statement of the set fails because of one of its orders (B's history rows are refused by a
 * trigger): only B's event is dead-lettered (alone, where it fails again); A's and D's go through,
 * though A came first in the set and there is one try. D has a history row that a host from
 * before migration 2 appended without counting it in orders.history_seq: D's move follows it. */
static void test_set_failure_rejects_only_the_culprit(void **state)
{
    (void)state;
    reset_orders();
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    DBT_OK(c, of_db_exec_text(
                  c, "INSERT INTO order_history (order_id, seq, from_status, "
                     "to_status, reason) VALUES ('" OID("d") "', 2, 'PENDING', "
                                                             "'PENDING', 'an older host')"));
    DBT_OK(c, of_db_exec_text(
                  c, "CREATE TRIGGER osf_refuse BEFORE INSERT ON order_history FOR "
                     "EACH ROW BEGIN IF NEW.order_id = '" OID(
                         "b") "' THEN SIGNAL "
                              "SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'; END "
                              "IF; END"));
    env e;
    env_bus(&e);
    produce(e.bus, "k", "inventory.reserved", "{\"order_id\":\"" OID("a") "\"}");
    produce(e.bus, "k", "inventory.reserved", "{\"order_id\":\"" OID("b") "\"}");
    produce(e.bus, "k", "inventory.reserved", "{\"order_id\":\"" OID("d") "\"}");
    env_start(&e, "osf", 32);
    wait_idle(&e);
    DBT_OK(c, of_db_exec_text(c, "DROP TRIGGER osf_refuse"));
    of_db_release(c);
    joined j;
    topic(e.bus, "in.dlq", &j);
    assert_string_equal(j.buf, "b:inventory.reserved");
    topic(e.bus, "status", &j);
    assert_string_equal(j.buf, "a:2:PENDING>RESERVED,d:3:PENDING>RESERVED");
    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(e.runner, "osf", "orders", &st), 0);
    assert_int_equal(st.processed_ok, 2);
    assert_int_equal(st.dead_lettered, 1);
    env_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_saga_in_sets),
        cmocka_unit_test(test_saga_one_by_one),
        cmocka_unit_test(test_seq_read_under_the_lock),
        cmocka_unit_test(test_set_failure_rejects_only_the_culprit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
