/* Group commit for HTTP routes with `batch:` (host/core/http_group.c) against the project's
 * MariaDB: requests that queue while the route's transactions are busy go together into one
 * transaction, through the stage's batch handler (or its handler for each); what does not go
 * through is run again without holding the others back, as of_http_batch_handler (host_api.h)
 * says. A request's body tells the test stage what to do with it:
 *
 *   ok:<id>          insert row <id>, emit one event, answer 202
 *   bad-write:<id>   insert row <id>, then answer 400 and fail (its row must not commit)
 *   bad-nowrite:<id> answer 400 before any database work (a batch leaves it OF_OK)
 *   retry:<id>       a batch leaves it unanswered; alone it goes like ok
 *   gate:<id>        like ok, after the test opens the gate (holds a transaction open)
 *
 * An id already stored fails the batch's multi-row INSERT for every row of it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_fixture.h"
#include "test_db_util.h"

#include "gateway.h"
#include "http_group.h"
#include "http_invoke.h"
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const of_stage_descriptor db_desc = {
    .abi_major = OF_ABI_MAJOR,
    .abi_minor = OF_ABI_MINOR,
    .struct_size = sizeof(of_stage_descriptor),
    .name = "grp",
    .version = "1.0.0",
    .flags = OF_STAGE_DATABASE,
};

static of_db_pool *pool;
static of_stage_def def;
static of_output_map maps[1];
static of_stage st_batch, st_each; /* with a batch handler; with the handler only */
static of_route route = {.method = OF_HTTP_POST,
                         .path = (char *)"/grp",
                         .handler = (char *)"grp.h",
                         .stage = (char *)"grp",
                         .handler_name = (char *)"h",
                         .batch = 64};

/* What the handlers saw. */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static size_t batch_sizes[64], n_batches; /* n of each batch handler call */
static size_t alone_calls;                /* calls of the lone handler */
static char ran[4096];                    /* "<id>," for every run of a request, in order */
/* The gate: gate:<id> requests wait in their handler until it opens. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_inside;

static void seen_reset(void)
{
    pthread_mutex_lock(&seen_mu);
    n_batches = 0;
    alone_calls = 0;
    ran[0] = '\0';
    pthread_mutex_unlock(&seen_mu);
}

static void note_run(const char *id)
{
    pthread_mutex_lock(&seen_mu);
    size_t l = strlen(ran);
    snprintf(ran + l, sizeof(ran) - l, "%s,", id);
    pthread_mutex_unlock(&seen_mu);
}

/* "kind:id" of the body: kind into k, the id returned (in the body). */
static const char *body_kind(const of_http_request *req, char k[16])
{
    const char *colon = strchr(req->body, ':');
    assert_non_null(colon);
    size_t n = (size_t)(colon - req->body);
    assert_true(n < 16);
    memcpy(k, req->body, n);
    k[n] = '\0';
    return colon + 1;
}

static void pass_gate(void)
{
    pthread_mutex_lock(&gate_mu);
    gate_inside++;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static of_status answered_ok(of_call *call, of_http_request *req, const char *id)
{
    const of_host_api *api = of_host_api_get();
    if (api->emit(call, "out", id, strlen(id), "{}", 2, NULL, 0) != 0)
        return OF_RETRY;
    /* With a cache (test_group_cache_writes_in_one_round_trip): "grp:<id>" after the commit. */
    char key[64];
    snprintf(key, sizeof(key), "grp:%s", id);
    if (call->stage->cache && api->cache_set_after_commit(call, key, id, strlen(id), 60000) != 0)
        return OF_RETRY;
    return of_api_http_respond(req, 202, "application/json", "{}", 2, NULL) == 0 ? OF_OK : OF_RETRY;
}

static of_status h_alone(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    const of_host_api *api = of_host_api_get();
    char kind[16];
    const char *id = body_kind(req, kind);
    pthread_mutex_lock(&seen_mu);
    alone_calls++;
    pthread_mutex_unlock(&seen_mu);
    note_run(id);
    if (strcmp(kind, "bad-nowrite") == 0) {
        of_api_http_problem(req, 400, "Bad Request", "no");
        return OF_REJECT;
    }
    if (strcmp(kind, "gate") == 0)
        pass_gate();
    of_db_value p = OF_DB_S(id);
    if (api->db_exec(call, "INSERT INTO grp_rows (id) VALUES (?)", &p, 1) < 0) {
        of_api_http_problem(req, 409, "Conflict", "stored before");
        return OF_REJECT;
    }
    if (strcmp(kind, "bad-write") == 0) {
        of_api_http_problem(req, 400, "Bad Request", "no");
        return OF_REJECT;
    }
    return answered_ok(call, req, id);
}

static void h_batch(void *instance, of_call *const *calls, of_http_request *const *reqs, size_t n,
                    of_status *status)
{
    (void)instance;
    const of_host_api *api = of_host_api_get();
    pthread_mutex_lock(&seen_mu);
    if (n_batches < 64)
        batch_sizes[n_batches++] = n;
    pthread_mutex_unlock(&seen_mu);
    of_db_value ids[64];
    size_t at[64], k = 0;
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        char kind[16];
        const char *id = body_kind(reqs[i], kind);
        note_run(id);
        if (strcmp(kind, "bad-nowrite") == 0) {
            of_api_http_problem(reqs[i], 400, "Bad Request", "no");
            status[i] = OF_OK;
        } else if (strcmp(kind, "bad-write") == 0) {
            of_db_value p = OF_DB_S(id);
            assert_int_equal(api->db_exec(calls[i], "INSERT INTO grp_rows (id) VALUES (?)", &p, 1),
                             1);
            of_api_http_problem(reqs[i], 400, "Bad Request", "no");
            status[i] = OF_REJECT;
        } else if (strcmp(kind, "retry") != 0) {
            if (strcmp(kind, "gate") == 0)
                pass_gate();
            ids[k] = OF_DB_S(id);
            at[k++] = i;
        }
    }
    if (k == 0)
        return;
    char sql[64 * 5 + 64] = "INSERT INTO grp_rows (id) VALUES (?)";
    for (size_t i = 1; i < k; i++)
        strcat(sql, ", (?)");
    if (api->db_exec(calls[0], sql, ids, k) < 0)
        return; /* the statement failed: every row's request is left OF_RETRY */
    for (size_t i = 0; i < k; i++)
        status[at[i]] = answered_ok(calls[at[i]], reqs[at[i]], ids[i].p);
}

static int group_setup(void **state)
{
    (void)state;
    if (!(pool = dbt_host_schema_pool(OF_HTTP_GROUP_TRANSACTIONS + 2, NULL)))
        return -1;
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    if (!c || of_db_exec_text(c, "CREATE TABLE grp_rows (id VARCHAR(32) PRIMARY KEY)") != 0)
        return -1;
    of_db_release(c);
    maps[0] = (of_output_map){.output = (char *)"out", .topic = (char *)"grp.out"};
    def = (of_stage_def){.name = (char *)"grp", .outputs = maps, .n_outputs = 1};
    if (of_stage_setup(&st_batch, "p", &def, &db_desc, NULL) != 0 ||
        of_stage_setup(&st_each, "p", &def, &db_desc, NULL) != 0 ||
        of_api_http_handler(&st_batch, "h", h_alone) != 0 ||
        of_api_http_batch_handler(&st_batch, "h", h_batch) != 0 ||
        of_api_http_handler(&st_each, "h", h_alone) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    of_stage_cleanup(&st_batch);
    of_stage_cleanup(&st_each);
    of_db_pool_free(pool);
    return dbt_drop_database();
}

static void empty_tables(void)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(of_db_exec_text(c, "DELETE FROM grp_rows"), 0);
    assert_int_equal(of_db_exec_text(c, "DELETE FROM of_outbox"), 0);
    of_db_release(c);
    seen_reset();
}

static int64_t stored(const char *id)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM grp_rows WHERE id = '%s'", id);
    return dbt_pool_int(pool, sql);
}

static int64_t outbox_rows(void)
{
    return dbt_pool_int(pool, "SELECT COUNT(*) FROM of_outbox");
}

static size_t traces; /* each request gets a trace of its own: 000...<n> */

static void req_init(of_http_request *r, const char *body)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->trace_id, sizeof(r->trace_id), "%032zx", ++traces);
    r->method = "POST";
    r->path = "/grp";
    r->route = &route;
    r->body = strdup(body);
    r->body_len = strlen(body);
}

/* Runs the bodies as one group of stage s; statuses and answers into the arrays. */
static void run_bodies(of_stage *s, const char *const *bodies, size_t n, of_status *status,
                       int *http)
{
    of_http_invoker inv;
    of_http_invoker_init(&inv, pool, NULL, NULL);
    of_http_request reqs[16], *ptrs[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        req_init(&reqs[i], bodies[i]);
        ptrs[i] = &reqs[i];
    }
    of_http_group_run(&inv, s, h_alone, ptrs, n, status);
    for (size_t i = 0; i < n; i++) {
        http[i] = reqs[i].answered ? reqs[i].status : 0;
        of_http_request_release(&reqs[i]);
    }
    of_http_invoker_destroy(&inv);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* The outbox rows of key id whose traceparent continues trace (32 hex digits). */
static int64_t events_in_trace(const char *id, const char *trace)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT COUNT(*) FROM of_outbox WHERE msg_key = '%s' AND LOCATE('00-%s-', headers) "
             "> 0",
             id, trace);
    return dbt_pool_int(pool, sql);
}

/* Four requests: one batch handler call, one commit, every answer and row and event, each event
 * in its own request's trace (one thread ran all four handlers). */
static void test_group_commits_together(void **state)
{
    (void)state;
    empty_tables();
    const char *b[] = {"ok:a1", "ok:a2", "ok:a3", "ok:a4"};
    of_status s[4];
    int http[4];
    run_bodies(&st_batch, b, 4, s, http);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(s[i], OF_OK);
        assert_int_equal(http[i], 202);
    }
    assert_int_equal(n_batches, 1);
    assert_int_equal(batch_sizes[0], 4);
    assert_int_equal(alone_calls, 0);
    assert_int_equal(dbt_pool_int(pool, "SELECT COUNT(*) FROM grp_rows"), 4);
    assert_int_equal(outbox_rows(), 4);
    char trace[33];
    for (size_t i = 0; i < 4; i++) {
        snprintf(trace, sizeof(trace), "%032zx", traces - 3 + i);
        assert_int_equal(events_in_trace(b[i] + 3, trace), 1);
    }
}

/* The group's cache writes, made after its commit, go to Redis in one round trip, not one per
 * request (the requests are answered after all of them). */
static void test_group_cache_writes_in_one_round_trip(void **state)
{
    (void)state;
    of_redis_config cfg;
    of_cache_pool *cache = rf_shared_pool(&cfg, "grp");
    assert_non_null(cache);
    empty_tables();
    st_batch.cache = cache;
    const char *b[] = {"ok:c1", "ok:c2", "ok:c3", "ok:c4", "ok:c5"};
    of_status s[5];
    int http[5];
    of_cache_stats before, after;
    of_cache_pool_stats(cache, &before);
    run_bodies(&st_batch, b, 5, s, http);
    of_cache_pool_stats(cache, &after);
    st_batch.cache = NULL;
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(http[i], 202);
        char key[64], *v = NULL;
        snprintf(key, sizeof(key), "grp:%s", b[i] + 3);
        assert_int_equal(of_cache_get(cache, key, &v, NULL), 1);
        assert_string_equal(v, b[i] + 3);
        free(v);
    }
    assert_int_equal(n_batches, 1);
    if (after.round_trips - before.round_trips != 1)
        fail_msg("5 requests' cache writes took %llu round trips",
                 (unsigned long long)(after.round_trips - before.round_trips));
    of_cache_pool_free(cache);
    of_redis_config_free(&cfg);
}

/* A request that wrote and failed rolls the group back; the others go again without it and
 * commit, its own answer stands and its row is not stored. */
static void test_failed_request_does_not_hold_back(void **state)
{
    (void)state;
    empty_tables();
    const char *b[] = {"ok:b1", "bad-write:b2", "ok:b3"};
    of_status s[3];
    int http[3];
    run_bodies(&st_batch, b, 3, s, http);
    assert_int_equal(s[0], OF_OK);
    assert_int_equal(http[0], 202);
    assert_int_equal(s[1], OF_REJECT);
    assert_int_equal(http[1], 400);
    assert_int_equal(s[2], OF_OK);
    assert_int_equal(http[2], 202);
    assert_int_equal(stored("b1"), 1);
    assert_int_equal(stored("b2"), 0);
    assert_int_equal(stored("b3"), 1);
    assert_int_equal(outbox_rows(), 2);
    /* The second round is the two that went through, together. */
    assert_int_equal(n_batches, 2);
    assert_int_equal(batch_sizes[1], 2);
    assert_string_equal(ran, "b1,b2,b3,b1,b3,");
}

/* Answered before any database work and left OF_OK: the others commit in the same round. */
static void test_answered_without_work_commits_with_the_others(void **state)
{
    (void)state;
    empty_tables();
    const char *b[] = {"ok:c1", "bad-nowrite:c2", "ok:c3"};
    of_status s[3];
    int http[3];
    run_bodies(&st_batch, b, 3, s, http);
    assert_int_equal(http[0], 202);
    assert_int_equal(http[1], 400);
    assert_int_equal(http[2], 202);
    assert_int_equal(n_batches, 1);
    assert_string_equal(ran, "c1,c2,c3,");
    assert_int_equal(stored("c1") + stored("c3"), 2);
}

/* Left unanswered (OF_RETRY): the others commit, it runs alone through the handler. */
static void test_unanswered_runs_alone(void **state)
{
    (void)state;
    empty_tables();
    const char *b[] = {"ok:d1", "retry:d2", "ok:d3"};
    of_status s[3];
    int http[3];
    run_bodies(&st_batch, b, 3, s, http);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(s[i], OF_OK);
        assert_int_equal(http[i], 202);
    }
    assert_int_equal(alone_calls, 1);
    assert_string_equal(ran, "d1,d2,d3,d1,d3,d2,");
    assert_int_equal(stored("d2"), 1);
    assert_int_equal(outbox_rows(), 3);
}

/* The shared INSERT fails for one row stored before: nobody's fault in particular, so each runs
 * alone, where the culprit answers 409 and the others 202. */
static void test_shared_statement_failure_runs_each_alone(void **state)
{
    (void)state;
    empty_tables();
    const char *first[] = {"ok:e2"};
    of_status s[3];
    int http[3];
    run_bodies(&st_batch, first, 1, s, http);
    assert_int_equal(http[0], 202);
    seen_reset();
    const char *b[] = {"ok:e1", "ok:e2", "ok:e3"};
    run_bodies(&st_batch, b, 3, s, http);
    assert_int_equal(http[0], 202);
    assert_int_equal(s[1], OF_REJECT);
    assert_int_equal(http[1], 409);
    assert_int_equal(http[2], 202);
    assert_int_equal(alone_calls, 3);
    assert_int_equal(stored("e1") + stored("e3"), 2);
    assert_int_equal(outbox_rows(), 3);
}

/* Without a batch handler the handler runs for each in the shared transaction, stopping at a
 * failure; the rest go again in the next round. */
static void test_each_in_one_transaction(void **state)
{
    (void)state;
    empty_tables();
    const char *b[] = {"ok:f1", "ok:f2", "bad-write:f3", "ok:f4"};
    of_status s[4];
    int http[4];
    run_bodies(&st_each, b, 4, s, http);
    assert_int_equal(http[0], 202);
    assert_int_equal(http[1], 202);
    assert_int_equal(s[2], OF_REJECT);
    assert_int_equal(http[2], 400);
    assert_int_equal(http[3], 202);
    assert_int_equal(n_batches, 0);
    /* Round 1 stops at f3 (f4 not run); round 2 is f1, f2, f4. */
    assert_string_equal(ran, "f1,f2,f3,f1,f2,f4,");
    assert_int_equal(stored("f3"), 0);
    assert_int_equal(stored("f1") + stored("f2") + stored("f4"), 3);
}

/* ---- the queue: requests arriving while the transactions are busy ------------------------- */

typedef struct client {
    of_http_invoker *inv;
    of_http_request req;
    of_status status;
    pthread_t th;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    c->status = of_http_invoke(c->inv, &st_batch, h_alone, &c->req);
    return NULL;
}

static void wait_until(int (*cond)(void *), void *arg)
{
    for (int i = 0; i < 1000 && !cond(arg); i++)
        usleep(10 * 1000);
    assert_true(cond(arg));
}

static int all_inside(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_mu);
    int n = gate_inside;
    pthread_mutex_unlock(&gate_mu);
    return n == OF_HTTP_GROUP_TRANSACTIONS;
}

static int six_queued(void *arg)
{
    return of_http_groups_queued(((of_http_invoker *)arg)->groups) == 6;
}

/* Lone requests hold every transaction the route may open; six more queue meanwhile and then go
 * as one group. A lone request goes through the handler, not the batch handler. */
static void test_queued_requests_go_together(void **state)
{
    (void)state;
    empty_tables();
    gate_open = 0;
    gate_inside = 0;
    of_http_invoker inv;
    of_http_invoker_init(&inv, pool, NULL, NULL);
    assert_non_null(inv.groups);
    of_metrics *metrics = of_metrics_new();
    assert_non_null(metrics);
    st_batch.metrics = metrics;
    enum { T = OF_HTTP_GROUP_TRANSACTIONS, N = T + 6 };
    client cl[N];
    char body[32];
    for (size_t i = 0; i < N; i++) {
        snprintf(body, sizeof(body), "%s:q%zu", i < T ? "gate" : "ok", i);
        cl[i].inv = &inv;
        req_init(&cl[i].req, body);
        assert_int_equal(pthread_create(&cl[i].th, NULL, client_main, &cl[i]), 0);
        if (i == T - 1)
            wait_until(all_inside, NULL);
    }
    wait_until(six_queued, &inv);
    assert_int_equal(n_batches, 0);
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    for (size_t i = 0; i < N; i++) {
        pthread_join(cl[i].th, NULL);
        assert_int_equal(cl[i].status, OF_OK);
        assert_int_equal(cl[i].req.status, 202);
        of_http_request_release(&cl[i].req);
    }
    assert_int_equal(alone_calls, T);
    assert_int_equal(n_batches, 1);
    assert_int_equal(batch_sizes[0], 6);
    assert_int_equal(dbt_pool_int(pool, "SELECT COUNT(*) FROM grp_rows"), N);
    assert_int_equal(outbox_rows(), N);
    assert_int_equal(of_http_groups_queued(inv.groups), 0);
    of_http_invoker_destroy(&inv);
    /* Requests per transaction: T alone, one group of 6. */
    char *text = of_metrics_render(metrics, NULL);
    assert_non_null(text);
    char want[256];
    snprintf(want, sizeof(want),
             "orderflow_http_transaction_requests_sum{pipeline=\"p\",stage=\"grp\",route=\"/"
             "grp\",method=\"POST\"} %d",
             T + 6);
    if (!strstr(text, want))
        fail_msg("no '%s' in:\n%s", want, text);
    snprintf(want, sizeof(want),
             "orderflow_http_transaction_requests_count{pipeline=\"p\",stage=\"grp\",route=\"/"
             "grp\",method=\"POST\"} %d",
             T + 1);
    if (!strstr(text, want))
        fail_msg("no '%s' in:\n%s", want, text);
    free(text);
    st_batch.metrics = NULL;
    of_metrics_free(metrics);
}

/* A route without batch: each request alone, even when others are waiting. */
static void test_route_without_batch_runs_alone(void **state)
{
    (void)state;
    empty_tables();
    of_http_invoker inv;
    of_http_invoker_init(&inv, pool, NULL, NULL);
    of_route plain = route;
    plain.batch = 1;
    of_http_request r;
    req_init(&r, "ok:g1");
    r.route = &plain;
    assert_int_equal(of_http_invoke(&inv, &st_batch, h_alone, &r), OF_OK);
    assert_int_equal(r.status, 202);
    of_http_request_release(&r);
    assert_int_equal(alone_calls, 1);
    assert_int_equal(of_http_groups_queued(inv.groups), 0);
    of_http_invoker_destroy(&inv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_commits_together),
        cmocka_unit_test(test_group_cache_writes_in_one_round_trip),
        cmocka_unit_test(test_failed_request_does_not_hold_back),
        cmocka_unit_test(test_answered_without_work_commits_with_the_others),
        cmocka_unit_test(test_unanswered_runs_alone),
        cmocka_unit_test(test_shared_statement_failure_runs_each_alone),
        cmocka_unit_test(test_each_in_one_transaction),
        cmocka_unit_test(test_queued_requests_go_together),
        cmocka_unit_test(test_route_without_batch_runs_alone),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
