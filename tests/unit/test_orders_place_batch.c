/* The orders plugin's intake in groups (its batch handler for POST /api/v1/orders, ABI 1.6): the
 * built plugin file, its and inventory's schema in the project's MariaDB (own database per run),
 * requests run as one group by the host's group commit (of_http_group_run). The plugin is given a
 * host table whose db_exec and db_query count their calls, so the test sees that a group's
 * orders are written in a few set-based statements, not one round of statements per order; and
 * that every request gets what it would get alone: 202 with its order, items, first history row
 * and two events; 400 and 422 for what cannot be an order; 200 with the first order for a
 * repeated Idempotency-Key, also when the first is in the same group. Hostile sizes: groups of
 * orders with 100 lines each, every SKU unknown. A request that cannot be priced is answered within
 * the group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_db_util.h"

#include "plugin_fixture.h"

#include "gateway.h"
#include "http_group.h"
#include "http_invoke.h"
#include "plugin.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static of_db_pool *pool;
static of_plugin *orders_plugin, *inventory_plugin;
static of_stage st;
static of_stage_def def;
static of_output_map maps[4];
static of_host_api counting;
static atomic_int db_calls;
static of_http_handler place;
static of_route route = {.method = OF_HTTP_POST,
                         .path = (char *)"/api/v1/orders",
                         .handler = (char *)"orders.place",
                         .stage = (char *)"orders",
                         .handler_name = (char *)"place",
                         .batch = 64};

static int64_t count_exec(of_call *call, const char *sql, const of_db_value *p, size_t n)
{
    atomic_fetch_add(&db_calls, 1);
    return of_host_api_get()->db_exec(call, sql, p, n);
}

static of_db_rows *count_query(of_call *call, const char *sql, const of_db_value *p, size_t n)
{
    atomic_fetch_add(&db_calls, 1);
    return of_host_api_get()->db_query(call, sql, p, n);
}

/* One statement on the test's database; 0 or -1. */
static int exec_sql(const char *sql)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    int rc = c ? of_db_exec_text(c, sql) : -1;
    of_db_release(c);
    return rc;
}

static int group_setup(void **state)
{
    (void)state;
    if (!(pool = dbt_host_schema_pool(4, NULL)))
        return -1;
    /* The catalog the intake prices from is inventory's. */
    if (!(inventory_plugin = pf_load(pool, "inventory", 0)) ||
        !(orders_plugin = pf_load(pool, "orders", 0)))
        return -1;
    static const char *const outs[] = {"placed", "status", "inventory", "payment"};
    for (size_t i = 0; i < 4; i++)
        maps[i] = (of_output_map){.output = (char *)outs[i], .topic = (char *)outs[i]};
    def = (of_stage_def){.name = (char *)"orders", .outputs = maps, .n_outputs = 4};
    if (of_stage_setup(&st, "shop", &def, orders_plugin->desc, NULL) != 0)
        return -1;
    counting = *of_host_api_get();
    counting.db_exec = count_exec;
    counting.db_query = count_query;
    char err[512] = "";
    void *instance = NULL;
    if (orders_plugin->desc->init(&st, &counting, NULL, &instance, err, sizeof(err)) != 0) {
        fprintf(stderr, "orders init: %s\n", err);
        return -1;
    }
    st.instance = instance;
    st.initialized = 1;
    place = of_stage_http_find(&st, "place");
    if (!place || !of_stage_http_find_batch(&st, "place")) {
        fprintf(stderr, "the orders plugin registered no batch form of place\n");
        return -1;
    }
    return exec_sql("INSERT INTO products (sku, name, price_cents, currency) VALUES "
                    "('A', 'a', 1000, 'EUR'), ('B', 'b', 250, 'EUR'), ('C', 'c', 500, 'USD')");
}

static int group_teardown(void **state)
{
    (void)state;
    if (orders_plugin && st.instance)
        orders_plugin->desc->shutdown(st.instance);
    of_stage_cleanup(&st);
    of_plugin_unload(inventory_plugin);
    return pf_teardown(orders_plugin, pool);
}

/* ---- requests ----------------------------------------------------------------------------- */

typedef struct preq {
    of_http_request req;
    of_http_pair header;
    const char *roles[1];
} preq;

static void preq_init(preq *p, const char *customer, const char *key, const char *body)
{
    memset(p, 0, sizeof(*p));
    p->req.method = "POST";
    p->req.path = "/api/v1/orders";
    p->req.route = &route;
    p->req.body = strdup(body);
    assert_non_null(p->req.body);
    p->req.body_len = strlen(body);
    if (key) {
        p->header = (of_http_pair){"Idempotency-Key", key};
        p->req.headers = &p->header;
        p->req.n_headers = 1;
    }
    p->req.has_principal = 1;
    p->req.principal.subject = strdup(customer);
    p->roles[0] = NULL;
    p->req.principal.roles = p->roles;
}

/* Runs the requests as one group; the statuses into s. */
static void run(preq *ps, size_t n, of_status *s)
{
    of_http_invoker inv;
    of_http_invoker_init(&inv, pool, NULL, NULL);
    of_http_request *ptrs[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &ps[i].req;
    of_http_group_run(&inv, &st, place, ptrs, n, s);
    of_http_invoker_destroy(&inv);
}

static void release_all(preq *ps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ps[i].req.principal.roles = NULL; /* the test's, not owned */
        of_http_request_release(&ps[i].req);
    }
}

/* The answer's order_id (into id), asserting the status. */
static void answered(const preq *p, int status, char id[37])
{
    assert_true(p->req.answered);
    if (p->req.status != status)
        fail_msg("answered %d, not %d: %.*s", p->req.status, status, (int)p->req.resp_len,
                 p->req.resp_body);
    if (!id)
        return;
    json_t *d = json_loadb(p->req.resp_body, p->req.resp_len, 0, NULL);
    assert_non_null(d);
    const char *v = json_string_value(json_object_get(d, "order_id"));
    assert_non_null(v);
    assert_int_equal(strlen(v), 36);
    memcpy(id, v, 37);
    json_decref(d);
}

/* A count about one order: fmt a literal with one %s, the id. */
#define Q_INT(fmt, id)                                                                             \
    ({                                                                                             \
        char q_sql_[512];                                                                          \
        snprintf(q_sql_, sizeof(q_sql_), fmt, id);                                                 \
        dbt_pool_int(pool, q_sql_);                                                                \
    })

/* One stored order as it must be: its total, items, first history row and two outbox events. */
static void stored_order(const char *id, const char *customer, int64_t total, int64_t lines,
                         int keyed)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT COUNT(*) FROM orders WHERE id = '%s' AND customer_id = '%s' AND status = "
             "'PENDING' AND history_seq = 1 AND total_cents = %lld AND currency = 'EUR' AND "
             "idempotency_key IS %sNULL",
             id, customer, (long long)total, keyed ? "NOT " : "");
    assert_int_equal(dbt_pool_int(pool, sql), 1);
    assert_int_equal(Q_INT("SELECT COUNT(*) FROM order_items WHERE order_id = '%s'", id), lines);
    assert_int_equal(Q_INT("SELECT MAX(line) FROM order_items WHERE order_id = '%s'", id), lines);
    assert_int_equal(Q_INT("SELECT COUNT(*) FROM order_history WHERE order_id = '%s' AND seq = 1 "
                           "AND to_status = 'PENDING' AND from_status IS NULL",
                           id),
                     1);
    assert_int_equal(Q_INT("SELECT COUNT(*) FROM of_outbox WHERE msg_key = '%s'", id), 2);
}

/* Places one order alone, which must be answered 202; its id into id. */
static void place_first(const char *customer, const char *key, const char *body, char id[37])
{
    preq first;
    preq_init(&first, customer, key, body);
    of_status s;
    run(&first, 1, &s);
    answered(&first, 202, id);
    release_all(&first, 1);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Four orders, a malformed body, an unknown SKU and two currencies in one group: one set of
 * statements for the four, the others answered without holding them back. */
static void test_group_places_in_few_statements(void **state)
{
    (void)state;
    preq p[7];
    preq_init(&p[0], "cust-1", "k1", "{\"items\": [{\"sku\": \"A\", \"quantity\": 2}]}");
    preq_init(
        &p[1], "cust-2", NULL,
        "{\"items\": [{\"sku\": \"A\", \"quantity\": 1}, {\"sku\": \"B\", \"quantity\": 3}]}");
    preq_init(&p[2], "cust-1", NULL, "{\"items\": [");
    preq_init(&p[3], "cust-2", NULL, "{\"items\": [{\"sku\": \"NOPE\", \"quantity\": 1}]}");
    preq_init(&p[4], "cust-3", "k5", "{\"items\": [{\"sku\": \"B\", \"quantity\": 1}]}");
    preq_init(
        &p[5], "cust-3", NULL,
        "{\"items\": [{\"sku\": \"A\", \"quantity\": 1}, {\"sku\": \"C\", \"quantity\": 1}]}");
    preq_init(&p[6], "cust-4", "k7", "{\"items\": [{\"sku\": \"B\", \"quantity\": 4}]}");
    of_status s[7];
    atomic_store(&db_calls, 0);
    int64_t before = dbt_pool_int(pool, "SELECT COUNT(*) FROM orders");
    run(p, 7, s);
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(s[i], OF_OK);
    /* Prices (1), orders (4 rows: 1), items (5 rows: 4 + 1), history (4 rows: 1). Alone each
     * order costs 4 or more. */
    assert_int_equal(atomic_load(&db_calls), 5);
    char id[4][37];
    answered(&p[0], 202, id[0]);
    answered(&p[1], 202, id[1]);
    answered(&p[2], 400, NULL);
    answered(&p[3], 422, NULL);
    assert_non_null(strstr(p[3].req.resp_body, "unknown sku NOPE"));
    answered(&p[4], 202, id[2]);
    answered(&p[5], 422, NULL);
    assert_non_null(strstr(p[5].req.resp_body, "more than one currency"));
    answered(&p[6], 202, id[3]);
    assert_int_equal(dbt_pool_int(pool, "SELECT COUNT(*) FROM orders") - before, 4);
    stored_order(id[0], "cust-1", 2000, 1, 1);
    stored_order(id[1], "cust-2", 1750, 2, 0);
    stored_order(id[2], "cust-3", 250, 1, 1);
    stored_order(id[3], "cust-4", 1000, 1, 1);
    release_all(p, 7);
}

/* A repeated key makes the group's INSERT fail, and the lone path answers: a key used before (200
 * with the first order), the same key twice in one group (one order; the other answered with
 * it). A keyed order that cannot be priced gets its 422 after its key was looked up. The same key
 * of another customer is another order. */
static void test_repeated_keys(void **state)
{
    (void)state;
    char id1[37];
    place_first("cust-5", "r1", "{\"items\": [{\"sku\": \"A\", \"quantity\": 1}]}", id1);

    preq p[5];
    preq_init(&p[0], "cust-5", "r1", "{\"items\": [{\"sku\": \"A\", \"quantity\": 1}]}");
    preq_init(&p[1], "cust-5", "r2", "{\"items\": [{\"sku\": \"NOPE\", \"quantity\": 1}]}");
    preq_init(&p[2], "cust-5", "r3", "{\"items\": [{\"sku\": \"B\", \"quantity\": 2}]}");
    preq_init(&p[3], "cust-5", "r3", "{\"items\": [{\"sku\": \"B\", \"quantity\": 2}]}");
    preq_init(&p[4], "cust-6", "r1", "{\"items\": [{\"sku\": \"B\", \"quantity\": 1}]}");
    of_status s[5];
    int64_t before = dbt_pool_int(pool, "SELECT COUNT(*) FROM orders");
    run(p, 5, s);
    char id[37], id3a[37], id3b[37], id6[37];
    answered(&p[0], 200, id);
    assert_string_equal(id, id1);
    answered(&p[1], 422, NULL);
    /* r3 twice: one placed it, the other answers with the same order. */
    assert_true(p[2].req.status == 202 || p[3].req.status == 202);
    answered(&p[2], p[2].req.status, id3a);
    answered(&p[3], p[3].req.status, id3b);
    assert_string_equal(id3a, id3b);
    assert_int_equal(p[2].req.status + p[3].req.status, 402);
    answered(&p[4], 202, id6);
    assert_int_equal(dbt_pool_int(pool, "SELECT COUNT(*) FROM orders") - before, 2);
    stored_order(id3a, "cust-5", 500, 1, 1);
    stored_order(id6, "cust-6", 250, 1, 1);
    release_all(p, 5);
}

/* A request that cannot be priced is answered by the batch itself, without holding the group
 * back: 422, or the first order when its key was used before (the product removed since). The
 * group then costs its reads and one round of INSERTs: no second round, nothing alone. */
static void test_unpriced_in_group(void **state)
{
    (void)state;
    assert_int_equal(exec_sql("INSERT INTO products (sku, name, price_cents, currency) VALUES "
                              "('D', 'd', 700, 'EUR')"),
                     0);
    char id1[37];
    place_first("cust-9", "u1", "{\"items\": [{\"sku\": \"D\", \"quantity\": 1}]}", id1);
    assert_int_equal(exec_sql("DELETE FROM products WHERE sku = 'D'"), 0);

    preq p[4];
    preq_init(&p[0], "cust-9", NULL, "{\"items\": [{\"sku\": \"A\", \"quantity\": 1}]}");
    preq_init(&p[1], "cust-9", "u1", "{\"items\": [{\"sku\": \"D\", \"quantity\": 1}]}");
    preq_init(&p[2], "cust-9", "u2", "{\"items\": [{\"sku\": \"NOPE\", \"quantity\": 1}]}");
    preq_init(&p[3], "cust-9", NULL, "{\"items\": [{\"sku\": \"B\", \"quantity\": 2}]}");
    of_status s[4];
    atomic_store(&db_calls, 0);
    run(p, 4, s);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(s[i], OF_OK);
    /* Prices 1, u1's key and items 2, u2's key 1, orders 1, items 1, history 1. */
    assert_int_equal(atomic_load(&db_calls), 7);
    char id[37], a[37], b[37];
    answered(&p[0], 202, a);
    answered(&p[1], 200, id);
    assert_string_equal(id, id1);
    answered(&p[2], 422, NULL);
    assert_non_null(strstr(p[2].req.resp_body, "unknown sku NOPE"));
    answered(&p[3], 202, b);
    stored_order(a, "cust-9", 1000, 1, 0);
    stored_order(b, "cust-9", 500, 1, 0);
    release_all(p, 4);
}

/* Sixteen orders of 100 lines each, every SKU unknown and different: the lookups go in chunks of
 * 128, and each request gets its 422. */
static void test_large_group(void **state)
{
    (void)state;
    enum { N = 16, LINES = 100 };
    preq p[N];
    for (size_t i = 0; i < N; i++) {
        json_t *items = json_array();
        for (size_t l = 0; l < LINES; l++) {
            char sku[32];
            snprintf(sku, sizeof(sku), "X%zu-%zu", i, l);
            json_array_append_new(items, json_pack("{s:s, s:i}", "sku", sku, "quantity", 1));
        }
        json_t *doc = json_pack("{s:o}", "items", items);
        char *body = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        preq_init(&p[i], "cust-7", NULL, body);
        free(body);
    }
    of_status s[N];
    int64_t before = dbt_pool_int(pool, "SELECT COUNT(*) FROM orders");
    atomic_store(&db_calls, 0);
    run(p, N, s);
    for (size_t i = 0; i < N; i++) {
        answered(&p[i], 422, NULL);
        assert_int_equal(s[i], OF_OK);
    }
    /* 1,600 distinct SKUs, 128 a statement. */
    assert_int_equal(atomic_load(&db_calls), 13);
    assert_int_equal(dbt_pool_int(pool, "SELECT COUNT(*) FROM orders"), before);
    release_all(p, N);
}

/* Seventeen orders of two lines: the INSERTs go in statements of 16 rows and fewer (powers of
 * two), every row stored. */
static void test_rows_in_chunks(void **state)
{
    (void)state;
    enum { N = 17 };
    preq p[N];
    for (size_t i = 0; i < N; i++)
        preq_init(&p[i], "cust-8", NULL,
                  "{\"items\": [{\"sku\": \"B\", \"quantity\": 1}, {\"sku\": \"A\", "
                  "\"quantity\": 3}]}");
    of_status s[N];
    atomic_store(&db_calls, 0);
    run(p, N, s);
    /* Prices 1, orders 16 + 1, items 16 + 16 + 2, history 16 + 1. */
    assert_int_equal(atomic_load(&db_calls), 8);
    for (size_t i = 0; i < N; i++) {
        char id[37];
        answered(&p[i], 202, id);
        stored_order(id, "cust-8", 3250, 2, 0);
    }
    release_all(p, N);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_places_in_few_statements),
        cmocka_unit_test(test_repeated_keys),
        cmocka_unit_test(test_unpriced_in_group),
        cmocka_unit_test(test_large_group),
        cmocka_unit_test(test_rows_in_chunks),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
