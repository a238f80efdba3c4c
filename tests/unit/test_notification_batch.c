/* The notification plugin's set-based batches (process_batch, ABI 1.5): the built plugin file in
 * the host's runner, on the memory bus with the project's MariaDB (own database per run). Status
 * changes of customers with no, one, two and three webhooks (and an inactive one), queued before
 * the stage starts, so its one worker takes them in sets: each change must be delivered to exactly
 * its own customer's active webhooks, in registration order, once. A malformed change and the
 * changes of a customer whose webhook row is broken are dead-lettered without taking the
 * deliveries of the others in their set with them, as is a customer id ending in a space. */
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

#define W(c) "00000000-0000-4000-8000-00000000000" c /* a webhook id of 36 characters */

/* customer, webhook id, active, created_at */
static const char *const hooks[][4] = {
    {"c1", W("2"), "1", "2026-01-01 00:00:02"}, /* c1's second (registered later) */
    {"c1", W("1"), "1", "2026-01-01 00:00:01"},
    {"c3", W("3"), "1", "2026-01-01 00:00:03"},
    {"c3", W("4"), "0", "2026-01-01 00:00:04"}, /* inactive: never delivered */
    {"c4", W("7"), "1", "2026-01-01 00:00:05"},
    {"c4", W("6"), "1", "2026-01-01 00:00:05"}, /* same time: by id */
    {"c4", W("5"), "1", "2026-01-01 00:00:06"},
    {"cbad", "not-a-webhook-id", "1", "2026-01-01 00:00:07"},
};

/* Registration order per customer (created_at, then id): what each change is delivered to. */
static const char *const order_of[][4] = {
    {"c1", W("1"), W("2"), NULL},
    {"c3", W("3"), NULL, NULL},
    {"c4", W("6"), W("7"), W("5")},
};

static int group_setup(void **state)
{
    (void)state;
    pool = dbt_host_schema_pool(4, NULL);
    if (!pool)
        return -1;
    plugin = pf_load(pool, "notification", 1);
    if (!plugin)
        return -1;
    char err[1024] = "";
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    if (!c)
        return -1;
    for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++) {
        of_db_value p[] = {OF_DB_S(hooks[i][1]), OF_DB_S(hooks[i][0]), OF_DB_S(hooks[i][2]),
                           OF_DB_S(hooks[i][3])};
        if (of_db_exec(c,
                       "INSERT INTO notification_webhooks (id, customer_id, url, secret, active, "
                       "created_at) VALUES (?, ?, 'https://example.com/h', 'whsec_x', ?, ?)",
                       p, 4) != 1) {
            of_db_release(c);
            return -1;
        }
    }
    of_db_release(c);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return pf_teardown(plugin, pool);
}

static void produce(of_bus *bus, const char *key, const char *payload, const char *ce_id)
{
    of_event *ev = of_event_new(key, strlen(key), payload, strlen(payload));
    assert_non_null(ev);
    assert_int_equal(of_event_add_header(ev, "ce_type", "order.status_changed", 20), 0);
    assert_int_equal(of_event_add_header(ev, "ce_id", ce_id, strlen(ce_id)), 0);
    char err[256];
    assert_int_equal(bus->ops->produce(bus, "status", ev, NULL, NULL, err, sizeof(err)), 0);
    of_event_free(ev);
}

typedef struct joined {
    char buf[16384];
    size_t n;
} joined;

/* A delivery as "<webhook id>/<order id>"; a dead letter as its payload's order id or "?". */
static int delivery_cb(const of_event *ev, void *opaque)
{
    joined *j = opaque;
    json_t *d = json_loadb(ev->payload, ev->payload_len, 0, NULL);
    const char *wid = json_string_value(json_object_get(d, "webhook_id"));
    const char *oid = json_string_value(json_object_get(json_object_get(d, "data"), "order_id"));
    const char *dead = json_string_value(json_object_get(d, "order_id"));
    j->n += (size_t)snprintf(j->buf + j->n, sizeof(j->buf) - j->n, "%s%s%s%s", j->n ? "," : "",
                             wid ? wid : "", wid ? "/" : "",
                             oid    ? oid
                             : dead ? dead
                                    : "?");
    json_decref(d);
    return j->n >= sizeof(j->buf);
}

static void test_each_change_reaches_its_own_webhooks(void **state)
{
    (void)state;
    of_bus *bus = of_membus_new();
    of_metrics *metrics = of_metrics_new();
    assert_non_null(bus);
    assert_non_null(metrics);
    of_membus_set_retain(bus, 1);
    char err[512] = "";
    assert_int_equal(bus->ops->ensure_topic(bus, "status", 1, 1, err, sizeof(err)), 0);

    /* 60 changes over c1..c4 and cbad, with a malformed one; all queued before the stage runs. */
    const char *customers[] = {"c1", "c2", "c3", "c4", "c2", "c4", "cbad", "c1", "c3", "c2"};
    char expect[16384] = "", dead[1024] = "";
    size_t en = 0, dn = 0;
    int committed = 0;
    for (int i = 0; i < 60; i++) {
        char oid[32], id[32], payload[512];
        snprintf(oid, sizeof(oid), "o%02d", i);
        snprintf(id, sizeof(id), "ev-%02d", i);
        /* "c1 " is c1 to SQL (PAD SPACE) and not to C: refused, not given c1's webhooks. */
        const char *cust = i == 41 ? "c1 " : customers[i % 10];
        if (i == 23) {
            snprintf(payload, sizeof(payload), "{\"order_id\":\"%s\",\"seq\":\"one\"}", oid);
            dn += (size_t)snprintf(dead + dn, sizeof(dead) - dn, "%s%s", dn ? "," : "", oid);
        } else {
            snprintf(payload, sizeof(payload),
                     "{\"order_id\":\"%s\",\"customer_id\":\"%s\",\"seq\":1,\"from\":null,"
                     "\"to\":\"PENDING\",\"reason\":\"placed\",\"at\":\"2026-11-28T00:00:00Z\"}",
                     oid, cust);
            if (strcmp(cust, "cbad") == 0 || i == 41) {
                dn += (size_t)snprintf(dead + dn, sizeof(dead) - dn, "%s%s", dn ? "," : "", oid);
            } else {
                committed++;
                for (size_t c = 0; c < sizeof(order_of) / sizeof(order_of[0]); c++)
                    for (int w = 1; w < 4 && strcmp(order_of[c][0], cust) == 0 && order_of[c][w];
                         w++)
                        en += (size_t)snprintf(expect + en, sizeof(expect) - en, "%s%s/%s",
                                               en ? "," : "", order_of[c][w], oid);
            }
        }
        produce(bus, "k", payload, id); /* one key: one worker, the changes in this order */
    }

    of_runner *runner = of_runner_new(bus, metrics);
    assert_non_null(runner);
    of_runner_set_db(runner, pool);
    tpipe t;
    tp_init(&t, "nb");
    tp_topic(&t, "status", 1);
    tp_topic(&t, "hooks", 1);
    tp_topic(&t, "status.dlq", 1);
    of_stage_def *d = tp_stage(&t, "notification", plugin->desc, "status", "status.dlq");
    tp_map(d, "webhooks", "hooks");
    d->config = of_config_from_pairs(plugin->desc->options, NULL, NULL, 0, err, sizeof(err));
    assert_non_null(d->config); /* the defaults */
    d->batch = 32;
    d->retry.max_attempts = 1;
    if (of_runner_add_pipeline(runner, &t.p, err, sizeof(err)) != 0)
        fail_msg("add_pipeline: %s", err);
    if (of_runner_start(runner, err, sizeof(err)) != 0)
        fail_msg("start: %s", err);
    if (!of_membus_wait_idle(bus, 30000))
        fail_msg("the bus did not become idle within 30 s");

    joined got;
    memset(&got, 0, sizeof(got));
    of_membus_read_topic(bus, "hooks", delivery_cb, &got);
    assert_string_equal(got.buf, expect);
    memset(&got, 0, sizeof(got));
    of_membus_read_topic(bus, "status.dlq", delivery_cb, &got);
    assert_string_equal(got.buf, dead);

    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(runner, "nb", "notification", &st), 0);
    assert_int_equal(st.processed_ok, committed);
    assert_int_equal(st.dead_lettered, 60 - committed);
    /* The changes went in sets: fewer transactions than committed changes. */
    const struct of_histogram *h =
        of_metrics_find_histogram(metrics, "stage_transaction_events", "nb", "notification");
    assert_non_null(h);
    assert_int_equal(h->sum_micro, (uint64_t)committed * 1000000ULL);
    print_message("%llu transactions for %d changes\n", (unsigned long long)h->count, committed);
    if (h->count * 2 > (uint64_t)committed)
        fail_msg("%llu transactions for %d changes: no sets", (unsigned long long)h->count,
                 committed);
    of_runner_free(runner);
    of_config_free(d->config);
    bus->ops->destroy(bus);
    of_metrics_free(metrics);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_change_reaches_its_own_webhooks),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
