/* A database stage's batches (`batch:`): several queued events in one transaction, one savepoint
 * each. On the memory bus with the project's MariaDB (own database per run): the events go in
 * fewer transactions than events; a retry and a rejection in the middle of a batch roll back
 * just their own writes, keep the key's order and the retry policy; an event seen twice in one
 * batch applies once. A gate event holds the only worker until every event is queued, so the
 * batches form whatever the timing. With a Redis pool, the cache writes a stage keeps with its
 * calls (cache_set_after_commit) are made after the commit, only for the events that commit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_db_util.h"

#include "redis_fixture.h"

#include "bus.h"
#include "metrics.h"
#include "pipeline.h"
#include "runner.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tpipe.h"

static of_db_pool *pool;
static const of_host_api *g_api;

/* When set, the stage keeps a cache write "bt:<payload>" per event (test_cache_after_commit). */
static of_cache_pool *g_cache;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

/* How often process() ran for each payload (the last environment's). */
#define RUNS_MAX 64
static struct {
    char payload[64];
    int n;
} g_runs[RUNS_MAX];
static size_t g_n_runs;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_gate_open;
static int g_gate_entered; /* the gate's process() is waiting */

static int group_setup(void **state)
{
    (void)state;
    pool = dbt_host_schema_pool(4, "CREATE TABLE bt_writes (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                                   "payload VARCHAR(64) NOT NULL) ENGINE=InnoDB");
    return pool ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    of_db_pool_free(pool);
    return dbt_drop_database();
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

static void count_run(const char *payload)
{
    pthread_mutex_lock(&g_mu);
    size_t r = 0;
    while (r < g_n_runs && strcmp(g_runs[r].payload, payload) != 0)
        r++;
    if (r == g_n_runs && g_n_runs < RUNS_MAX) {
        snprintf(g_runs[r].payload, sizeof(g_runs[0].payload), "%s", payload);
        g_runs[r].n = 0;
        g_n_runs++;
    }
    if (r < RUNS_MAX)
        g_runs[r].n++;
    pthread_mutex_unlock(&g_mu);
}

/* Writes a row for every event first, then decides: "gate" waits for the test, "retry-once"
 * retries its first try, "reject" rejects; the rest are forwarded on "out". A try that does not
 * end in OF_OK must leave no row. */
static of_status bt_process(void *instance, of_call *call)
{
    (void)instance;
    size_t len;
    const char *p = g_api->event_payload(call, &len);
    char payload[64];
    snprintf(payload, sizeof(payload), "%.*s", (int)len, p);
    count_run(payload);
    of_db_value params[] = {OF_DB_S(payload)};
    if (strncmp(payload, "ro-", 3) == 0) { /* a reader: no savepoint is set for it */
        of_db_rows *rows =
            g_api->db_query(call, "SELECT COUNT(*) FROM bt_writes WHERE payload = ?", params, 1);
        if (!rows)
            return OF_RETRY;
        g_api->db_rows_free(rows);
    } else if (g_api->db_exec(call, "INSERT INTO bt_writes (payload) VALUES (?)", params, 1) < 0) {
        return OF_RETRY;
    }
    if (g_cache) {
        /* Kept with the call: not in Redis before the commit. */
        char key[80], *v = NULL;
        snprintf(key, sizeof(key), "bt:%s", payload);
        if (g_api->cache_set_after_commit(call, key, payload, strlen(payload), 60000) != 0)
            return OF_RETRY;
        if (of_cache_get(g_cache, key, &v, NULL) != 0) {
            free(v);
            g_api->set_reason(call, "%s was cached before its commit", payload);
            return OF_REJECT;
        }
    }
    if (strcmp(payload, "gate") == 0) {
        pthread_mutex_lock(&g_mu);
        g_gate_entered = 1;
        pthread_cond_broadcast(&g_cv);
        while (!g_gate_open)
            pthread_cond_wait(&g_cv, &g_mu);
        pthread_mutex_unlock(&g_mu);
    }
    if (strncmp(payload, "retry-once", 10) == 0 && g_api->event_attempt(call) == 1) {
        g_api->set_reason(call, "first try of %s fails", payload);
        return OF_RETRY;
    }
    if (strstr(payload, "reject")) {
        g_api->set_reason(call, "%s is rejected", payload);
        return OF_REJECT;
    }
    if (g_api->emit(call, "out", NULL, 0, p, len, NULL, 0) != 0)
        return OF_RETRY;
    if (strncmp(payload, "two", 3) == 0) { /* a second event: calls emit different counts */
        char second[80];
        int n = snprintf(second, sizeof(second), "%s+", payload);
        if (g_api->emit(call, "out", NULL, 0, second, (size_t)n, NULL, 0) != 0)
            return OF_RETRY;
    }
    return OF_OK;
}

static const of_stage_descriptor bt_desc = {
    OF_DESCRIPTOR_HEADER,
    .name = "batchtap",
    .version = "1",
    .outputs = (const char *const[]){"out", NULL},
    .init = save_api,
    .process = bt_process,
    .flags = OF_STAGE_DATABASE,
};

/* process_batch calls and the largest set one was given (the last environment's). */
static int g_sets;
static size_t g_set_max;

static void count_set(size_t n)
{
    pthread_mutex_lock(&g_mu);
    g_sets++;
    if (n > g_set_max)
        g_set_max = n;
    pthread_mutex_unlock(&g_mu);
}

/* The same stage through process_batch (ABI 1.5), stopping at the first call that does not go
 * through, as a stage that checks each call before the next would: the calls after it keep the
 * host's OF_RETRY, which must not count as their try. */
static void bt_process_set(void *instance, of_call *const *calls, size_t n, of_status *status)
{
    count_set(n);
    for (size_t i = 0; i < n; i++)
        if ((status[i] = bt_process(instance, calls[i])) != OF_OK)
            break;
}

/* Through process_batch, running every call whatever the ones before it said: what the calls after
 * the first failure wrote and emitted must be rolled back and dropped. */
static void bt_process_set_all(void *instance, of_call *const *calls, size_t n, of_status *status)
{
    count_set(n);
    for (size_t i = 0; i < n; i++)
        status[i] = bt_process(instance, calls[i]);
}

static const of_stage_descriptor bt_set_desc = {
    OF_DESCRIPTOR_HEADER,
    .name = "batchtap-set",
    .version = "1",
    .outputs = (const char *const[]){"out", NULL},
    .init = save_api,
    .process = bt_process,
    .flags = OF_STAGE_DATABASE,
    .process_batch = bt_process_set,
};

static const of_stage_descriptor bt_set_all_desc = {
    OF_DESCRIPTOR_HEADER,
    .name = "batchtap-set-all",
    .version = "1",
    .outputs = (const char *const[]){"out", NULL},
    .init = save_api,
    .process = bt_process,
    .flags = OF_STAGE_DATABASE,
    .process_batch = bt_process_set_all,
};

/* A set stage whose writes for the set are one multi-row INSERT, as the business stages' are. The
 * payload "clash" takes the id 999999, which the test holds already: the INSERT fails with a
 * duplicate key for the whole set, and the stage answers every call as a stage answers a
 * statement that failed for another reason than an outage: rejected. The gate goes through
 * bt_process (alone, so the events after it queue up into one set). */
static void bt_shared_set(void *instance, of_call *const *calls, size_t n, of_status *status)
{
    size_t len;
    const char *p = g_api->event_payload(calls[0], &len);
    if (n == 1 && len == 4 && memcmp(p, "gate", 4) == 0) {
        status[0] = bt_process(instance, calls[0]);
        return;
    }
    count_set(n);
    char payloads[16][64], sql[1024];
    of_db_value v[32];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        p = g_api->event_payload(calls[i], &len);
        snprintf(payloads[i], sizeof(payloads[i]), "%.*s", (int)len, p);
        count_run(payloads[i]);
        v[2 * i] = strcmp(payloads[i], "clash") == 0 ? OF_DB_I(999999) : OF_DB_NULLV;
        v[2 * i + 1] = (of_db_value)OF_DB_S(payloads[i]);
    }
    size_t o = (size_t)snprintf(sql, sizeof(sql), "INSERT INTO bt_writes (id, payload) VALUES ");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(sql + o, sizeof(sql) - o, "%s(?, ?)", i ? ", " : "");
    if (g_api->db_exec(calls[0], sql, v, 2 * n) < 0) {
        for (size_t i = 0; i < n; i++) {
            g_api->set_reason(calls[i], "the set's INSERT failed");
            status[i] = OF_REJECT;
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        status[i] =
            g_api->emit(calls[i], "out", NULL, 0, payloads[i], strlen(payloads[i]), NULL, 0) == 0
                ? OF_OK
                : OF_RETRY;
}

static of_status bt_shared_one(void *instance, of_call *call)
{
    of_status s = OF_RETRY;
    bt_shared_set(instance, &call, 1, &s);
    return s;
}

static const of_stage_descriptor bt_shared_desc = {
    OF_DESCRIPTOR_HEADER,
    .name = "batchtap-shared",
    .version = "1",
    .outputs = (const char *const[]){"out", NULL},
    .init = save_api,
    .process = bt_shared_one,
    .flags = OF_STAGE_DATABASE,
    .process_batch = bt_shared_set,
};

/* The same stage acting only on events of type "keep" (and on untyped ones). */
static const of_stage_descriptor bt_keep_desc = {
    OF_DESCRIPTOR_HEADER,
    .name = "batchtap-keep",
    .version = "1",
    .outputs = (const char *const[]){"out", NULL},
    .init = save_api,
    .process = bt_process,
    .flags = OF_STAGE_DATABASE,
    .accepts = (const char *const[]){"keep", NULL},
};

typedef struct env {
    of_bus *bus;
    of_metrics *metrics;
    of_runner *runner;
    tpipe t;
} env;

/* A fresh table, bus and runner with one batchtap stage (one worker, `batch` events per
 * transaction) reading "in", writing "out", dead letters to "in.dlq". */
static void env_start_with(env *e, const of_stage_descriptor *desc, const char *pipeline, int batch,
                           int max_attempts)
{
    char err[512] = "";
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM bt_writes"));
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM of_outbox"));
    of_db_release(c);
    g_gate_open = 0;
    g_gate_entered = 0;
    g_n_runs = 0;
    e->bus = of_membus_new();
    e->metrics = of_metrics_new();
    assert_non_null(e->bus);
    assert_non_null(e->metrics);
    of_membus_set_retain(e->bus, 1);
    e->runner = of_runner_new(e->bus, e->metrics);
    assert_non_null(e->runner);
    of_runner_set_db(e->runner, pool);
    if (g_cache)
        of_runner_set_cache(e->runner, g_cache);
    tp_init(&e->t, pipeline);
    tp_topic(&e->t, "in", 1);
    tp_topic(&e->t, "out", 1);
    tp_topic(&e->t, "in.dlq", 1);
    of_stage_def *d = tp_stage(&e->t, "bt", desc, "in", "in.dlq");
    tp_map(d, "out", "out");
    d->batch = batch;
    d->retry.max_attempts = max_attempts;
    if (of_runner_add_pipeline(e->runner, &e->t.p, err, sizeof(err)) != 0)
        fail_msg("add_pipeline: %s", err);
    if (of_runner_start(e->runner, err, sizeof(err)) != 0)
        fail_msg("start: %s", err);
}

/* The descriptor a test runs with: bt_desc, or the one its prestate names
 * (cmocka_unit_test_prestate runs the same test through process_batch). */
static const of_stage_descriptor *g_desc = &bt_desc;

static void env_start(env *e, const char *pipeline, int batch, int max_attempts)
{
    env_start_with(e, g_desc, pipeline, batch, max_attempts);
}

/* Picks the test's descriptor from its prestate; the pipeline name (and so the consumer group and
 * its inbox rows) gets the variant's suffix so the runs do not see each other's events. */
static const char *variant(void **state, const char *pipeline)
{
    static char name[32];
    g_desc = *state ? *state : &bt_desc;
    g_sets = 0;
    g_set_max = 0;
    snprintf(name, sizeof(name), "%s%s", pipeline,
             g_desc == &bt_set_desc       ? "s"
             : g_desc == &bt_set_all_desc ? "a"
                                          : "");
    return name;
}

/* With process_batch, the events after the gate came in sets: it was called, with more than one. */
static void check_sets(void)
{
    if (g_desc == &bt_desc)
        assert_int_equal(g_sets, 0);
    else if (g_sets == 0 || g_set_max < 2)
        fail_msg("process_batch ran %d times, largest set %zu", g_sets, g_set_max);
}

/* How often process() ran for payload. */
static int runs(const char *payload)
{
    for (size_t i = 0; i < g_n_runs; i++)
        if (strcmp(g_runs[i].payload, payload) == 0)
            return g_runs[i].n;
    return 0;
}

static void env_free(env *e)
{
    of_runner_free(e->runner);
    e->bus->ops->destroy(e->bus);
    of_metrics_free(e->metrics);
}

static void produce(env *e, const char *key, const char *payload, const char *ce_id)
{
    of_event *ev = of_event_new(key, key ? strlen(key) : 0, payload, strlen(payload));
    assert_non_null(ev);
    if (ce_id)
        assert_int_equal(of_event_add_header(ev, "ce_id", ce_id, strlen(ce_id)), 0);
    char err[256];
    assert_int_equal(e->bus->ops->produce(e->bus, "in", ev, NULL, NULL, err, sizeof(err)), 0);
    of_event_free(ev);
}

static void produce_typed(env *e, const char *payload, const char *ce_type)
{
    of_event *ev = of_event_new("k", 1, payload, strlen(payload));
    assert_non_null(ev);
    if (ce_type)
        assert_int_equal(of_event_add_header(ev, "ce_type", ce_type, strlen(ce_type)), 0);
    char err[256];
    assert_int_equal(e->bus->ops->produce(e->bus, "in", ev, NULL, NULL, err, sizeof(err)), 0);
    of_event_free(ev);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits until the gate's process() holds the worker. Produced alone before the others, the gate
 * is then a batch of its own, and every event after it is queued when the gate opens: the
 * batches after it do not depend on how fast the worker woke up. */
static void gate_entered(void)
{
    pthread_mutex_lock(&g_mu);
    while (!g_gate_entered)
        pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
}

/* Waits until the stage has taken every event (the gate holds the worker), then opens it and
 * waits until everything is processed and committed. */
static void release_and_wait(env *e, const char *pipeline, uint64_t events)
{
    of_stage_stats st;
    int i = 0;
    for (; i < 20000; i++) {
        assert_int_equal(of_runner_stage_stats(e->runner, pipeline, "bt", &st), 0);
        if (st.received >= events)
            break;
        sleep_ms(1);
    }
    if (i == 20000)
        fail_msg("the stage received %llu of %llu events in 20 s", (unsigned long long)st.received,
                 (unsigned long long)events);
    pthread_mutex_lock(&g_mu);
    g_gate_open = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    if (!of_membus_wait_idle(e->bus, 30000))
        fail_msg("the bus did not become idle within 30 s");
}

/* The first column of sql's rows (payloads) joined with ",", through c. */
static void joined_rows(of_db_conn *c, const char *sql, char *out, size_t size)
{
    of_db_rows *r = of_db_query(c, sql, NULL, 0);
    assert_non_null(r);
    size_t n = 0;
    out[0] = '\0';
    while (of_db_rows_next(r) == 1) {
        of_db_value v;
        assert_int_equal(of_db_rows_get(r, 0, &v), 0);
        n += (size_t)snprintf(out + n, size - n, "%s%.*s", n ? "," : "", (int)v.len,
                              (const char *)v.p);
        assert_true(n < size);
    }
    of_db_rows_free(r);
}

/* The payloads of bt_writes in insertion order, joined with ",". */
static void written(char *out, size_t size)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    joined_rows(c, "SELECT payload FROM bt_writes ORDER BY id", out, size);
    of_db_release(c);
}

/* The payloads of the outbox rows in id order, joined with ","; waits until every row is marked
 * published (the runner marks them after the publication). */
static void outbox_published(char *out, size_t size)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    const char *unpublished = "SELECT COUNT(*) FROM of_outbox WHERE published_at IS NULL";
    for (int i = 0; dbt_int(c, unpublished, NULL, 0) > 0 && i < 5000; i++)
        sleep_ms(1);
    assert_int_equal(dbt_int(c, unpublished, NULL, 0), 0);
    joined_rows(c, "SELECT payload FROM of_outbox ORDER BY id", out, size);
    of_db_release(c);
}

typedef struct joined {
    char buf[4096];
    size_t n;
} joined;

static int join_cb(const of_event *ev, void *opaque)
{
    joined *j = opaque;
    j->n += (size_t)snprintf(j->buf + j->n, sizeof(j->buf) - j->n, "%s%.*s", j->n ? "," : "",
                             (int)ev->payload_len, (const char *)ev->payload);
    return j->n >= sizeof(j->buf);
}

static void topic_payloads(env *e, const char *topic, joined *j)
{
    memset(j, 0, sizeof(*j));
    of_membus_read_topic(e->bus, topic, join_cb, j);
}

static const struct of_histogram *tx_events(env *e, const char *pipeline)
{
    const struct of_histogram *h =
        of_metrics_find_histogram(e->metrics, "stage_transaction_events", pipeline, "bt");
    assert_non_null(h);
    return h;
}

/* The count and sum of stage_round_seconds{phase} of stage bt in the metrics' text; -1 when the
 * series is absent. */
static long round_phase(env *e, const char *pipeline, const char *phase, double *sum)
{
    size_t len = 0;
    char *text = of_metrics_render(e->metrics, &len);
    assert_non_null(text);
    long count = -1;
    *sum = -1;
    char want[160];
    snprintf(want, sizeof(want), "pipeline=\"%s\",stage=\"bt\"", pipeline);
    char ph[64];
    snprintf(ph, sizeof(ph), "phase=\"%s\"}", phase);
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (!strstr(l, want) || !strstr(l, ph))
            continue;
        if (strncmp(l, "orderflow_stage_round_seconds_count{", 36) == 0)
            count = strtol(strrchr(l, ' ') + 1, NULL, 10);
        else if (strncmp(l, "orderflow_stage_round_seconds_sum{", 34) == 0)
            *sum = strtod(strrchr(l, ' ') + 1, NULL);
    }
    free(text);
    return count;
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------------- */

static void test_many_events_per_transaction(void **state)
{
    const char *pl = variant(state, "bt1");
    env e;
    env_start(&e, pl, 16, 3);
    produce(&e, "k", "gate", NULL);
    gate_entered();
    char expect[4096] = "gate", emitted[4096] = "gate";
    size_t n = strlen(expect), m = strlen(emitted);
    for (int i = 0; i < 100; i++) {
        char p[16];
        snprintf(p, sizeof(p), i % 3 ? "e%d" : "two%d", i);
        produce(&e, "k", p, NULL);
        n += (size_t)snprintf(expect + n, sizeof(expect) - n, ",%s", p);
        m += (size_t)snprintf(emitted + m, sizeof(emitted) - m, i % 3 ? ",%s" : ",%s,%s+", p, p);
    }
    release_and_wait(&e, pl, 101);

    char got[4096];
    written(got, sizeof(got));
    assert_string_equal(got, expect); /* each once, in order */
    joined out;
    topic_payloads(&e, "out", &out);
    assert_string_equal(out.buf, emitted);
    /* The outbox has them in the same order, each row marked published under its own id. */
    outbox_published(got, sizeof(got));
    assert_string_equal(got, emitted);
    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(e.runner, pl, "bt", &st), 0);
    assert_int_equal(st.processed_ok, 101);
    assert_int_equal(st.retried, 0);

    /* 101 events committed; the 100 queued behind the gate went 16 at a time at most. */
    const struct of_histogram *h = tx_events(&e, pl);
    assert_int_equal(h->sum_micro, 101 * 1000000ULL);
    assert_true(h->count >= 101 / 16 + 1);
    assert_true(h->count <= 20);
    assert_int_equal(h->buckets[h->n_bounds], 0); /* none over the last bound */
    /* Each batched round (the gate went alone) timed in its five phases. */
    static const char *const phases[] = {"record", "process", "outbox", "commit", "publish"};
    for (size_t i = 0; i < 5; i++) {
        double sum;
        long rounds = round_phase(&e, pl, phases[i], &sum);
        if (rounds < (long)(100 / 16 + 1) || rounds > (long)h->count - 1 || !(sum > 0))
            fail_msg("phase %s: %ld rounds (of %llu transactions), %g s", phases[i], rounds,
                     (unsigned long long)h->count, sum);
    }
    check_sets();
    env_free(&e);
}

static void test_retry_and_reject_inside_a_batch(void **state)
{
    const char *pl = variant(state, "bt2");
    env e;
    env_start(&e, pl, 32, 3);
    /* reject-0 is the first of the batch after the gate (it has no savepoint of its own). */
    const char *events[] = {"gate",   "reject-0", "a1",    "a2",        "retry-once", "a3", "a4",
                            "reject", "a5",       "ro-a6", "ro-reject", "a7",         NULL};
    for (size_t i = 0; events[i]; i++) {
        produce(&e, "k", events[i], NULL);
        if (i == 0)
            gate_entered();
    }
    release_and_wait(&e, pl, 12);

    /* The failed first try of retry-once and the rejected events left no row; the key's order
     * held through the retry. */
    char got[4096];
    written(got, sizeof(got));
    assert_string_equal(got, "gate,a1,a2,retry-once,a3,a4,a5,a7");
    joined out;
    topic_payloads(&e, "out", &out);
    assert_string_equal(out.buf, "gate,a1,a2,retry-once,a3,a4,a5,ro-a6,a7");
    outbox_published(got, sizeof(got));
    assert_string_equal(got, "gate,a1,a2,retry-once,a3,a4,a5,ro-a6,a7");
    topic_payloads(&e, "in.dlq", &out);
    assert_string_equal(out.buf, "reject-0,reject,ro-reject");
    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(e.runner, pl, "bt", &st), 0);
    assert_int_equal(st.processed_ok, 9);
    assert_int_equal(st.retried, 1);
    assert_int_equal(st.rejected, 3);
    assert_int_equal(st.dead_lettered, 3);
    /* No savepoints: an event that fails after others in its batch rolls the batch back, and
     * the events before it run again in a transaction without it. The batches after the gate:
     * [reject-0 ...] commits nothing; [a1 a2 retry-once ...] commits a1, a2 on their second run;
     * [a3 a4 reject ...] a3, a4; [a5 ro-a6 ro-reject a7] a5, ro-a6; a7 alone. */
    const char *twice[] = {"a1", "a2", "a3", "a4", "a5", "ro-a6", "retry-once", NULL};
    for (size_t i = 0; twice[i]; i++)
        if (runs(twice[i]) != 2)
            fail_msg("%s ran %d times, expected 2", twice[i], runs(twice[i]));
    const char *once[] = {"reject-0", "reject", "ro-reject", "a7", NULL};
    for (size_t i = 0; once[i]; i++)
        if (runs(once[i]) != 1)
            fail_msg("%s ran %d times, expected 1", once[i], runs(once[i]));
    /* The batch after the gate stopped at retry-once (a1, a2 committed together). */
    const struct of_histogram *h = tx_events(&e, pl);
    assert_int_equal(h->sum_micro, 9 * 1000000ULL);
    assert_true(h->count < 9);
    check_sets();
    env_free(&e);
}

static void test_retry_exhausted_inside_a_batch(void **state)
{
    const char *pl = variant(state, "bt3");
    env e;
    /* One try allowed: the batch's try is that one. */
    env_start(&e, pl, 8, 1);
    produce(&e, "k", "gate", NULL);
    gate_entered();
    produce(&e, "k", "b1", NULL);
    produce(&e, "k", "b2", NULL);
    produce(&e, "k", "retry-once-but-only-one-try", NULL);
    produce(&e, "k", "b3", NULL);
    produce(&e, "k", "b4", NULL);
    release_and_wait(&e, pl, 6);
    char got[4096];
    written(got, sizeof(got));
    assert_string_equal(got, "gate,b1,b2,b3,b4");
    joined dlq;
    topic_payloads(&e, "in.dlq", &dlq);
    assert_string_equal(dlq.buf, "retry-once-but-only-one-try");
    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(e.runner, pl, "bt", &st), 0);
    assert_int_equal(st.retried, 0);
    assert_int_equal(st.dead_lettered, 1);
    /* gate; b1 and b2; b3 and b4. */
    const struct of_histogram *h = tx_events(&e, pl);
    assert_int_equal(h->sum_micro, 5 * 1000000ULL);
    assert_true(h->count < 5);
    check_sets();
    env_free(&e);
}

/* A stage that accepts only "keep": the other types are acknowledged (offsets committed, the bus
 * goes idle) without process(), without an inbox row and without a transaction; untyped events
 * and accepted ones are processed in order, in batches as before. */
static void test_accepts_skips_other_types(void **state)
{
    (void)state;
    env e;
    env_start_with(&e, &bt_keep_desc, "bt5", 8, 3);
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    int64_t inbox0 =
        dbt_int(c, "SELECT COUNT(*) FROM of_inbox WHERE consumer_group LIKE '%bt5%'", NULL, 0);
    produce_typed(&e, "gate", "keep");
    gate_entered();
    const char *types[] = {"keep", "drop", NULL, "keep", "drop", "keep.more", "kee", "keep"};
    for (int i = 0; i < 8; i++) {
        char p[16];
        snprintf(p, sizeof(p), "%s%d", types[i] ? types[i] : "none", i);
        produce_typed(&e, p, types[i]);
    }
    release_and_wait(&e, "bt5", 9);
    char got[4096];
    written(got, sizeof(got));
    assert_string_equal(got, "gate,keep0,none2,keep3,keep7");
    joined out;
    topic_payloads(&e, "out", &out);
    assert_string_equal(out.buf, "gate,keep0,none2,keep3,keep7");
    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(e.runner, "bt5", "bt", &st), 0);
    assert_int_equal(st.received, 9);
    assert_int_equal(st.skipped, 4);
    assert_int_equal(st.processed_ok, 5);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(
        dbt_int(c, "SELECT COUNT(*) FROM of_inbox WHERE consumer_group LIKE '%bt5%'", NULL, 0) -
            inbox0,
        5);
    of_db_release(c);
    const struct of_counter *sk =
        of_metrics_find_counter(e.metrics, "stage_events_skipped", "bt5", "bt");
    assert_non_null(sk);
    assert_true(of_counter_value(sk) == 4.0);
    env_free(&e);
}

static void test_same_event_twice_in_a_batch(void **state)
{
    const char *pl = variant(state, "bt4");
    env e;
    env_start(&e, pl, 16, 3);
    produce(&e, "k", "gate", "id-gate");
    gate_entered();
    produce(&e, "k", "c1", "id-c1");
    produce(&e, "k", "c2", "id-c2");
    produce(&e, "k", "c2", "id-c2"); /* a producer's retry: the same event again */
    produce(&e, "k", "c3", "id-c3");
    release_and_wait(&e, pl, 5);
    char got[4096];
    written(got, sizeof(got));
    assert_string_equal(got, "gate,c1,c2,c3");
    joined out;
    topic_payloads(&e, "out", &out);
    assert_string_equal(out.buf, "gate,c1,c2,c3");
    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(e.runner, pl, "bt", &st), 0);
    assert_int_equal(st.processed_ok, 4);
    /* The repeat is skipped, not committed: gate; c1 and c2; c3 (or c3 with the repeat's
     * successors, when there were any). */
    const struct of_histogram *h = tx_events(&e, pl);
    assert_int_equal(h->sum_micro, 4 * 1000000ULL);
    assert_true(h->count < 4);
    /* Through process_batch the round that met the repeat is not run: it rolls back anyway,
     * and c1 runs once, in the round after it (one by one, it ran before the repeat was met). */
    if (g_desc != &bt_desc && runs("c1") != 1)
        fail_msg("c1 ran %d times through process_batch, expected 1", runs("c1"));
    check_sets();
    env_free(&e);
}

/* A process_batch that runs every call of its set: when one fails, what the calls after it wrote
 * and emitted is rolled back with the rest, they come again in a later set, and each commits
 * once. */
static void test_set_discards_calls_after_a_failure(void **state)
{
    (void)state;
    *state = (void *)&bt_set_all_desc;
    const char *pl = variant(state, "bt8");
    env e;
    env_start(&e, pl, 16, 3);
    /* The gate alone first, so the six after it are one set. */
    produce(&e, "k", "gate", NULL);
    gate_entered();
    const char *events[] = {"d1", "reject-d", "d2", "two-d3", "retry-once-d", "d4", NULL};
    for (size_t i = 0; events[i]; i++)
        produce(&e, "k", events[i], NULL);
    release_and_wait(&e, pl, 7);
    char got[4096];
    written(got, sizeof(got));
    assert_string_equal(got, "gate,d1,d2,two-d3,retry-once-d,d4");
    joined out;
    topic_payloads(&e, "out", &out);
    assert_string_equal(out.buf, "gate,d1,d2,two-d3,two-d3+,retry-once-d,d4");
    outbox_published(got, sizeof(got));
    assert_string_equal(got, "gate,d1,d2,two-d3,two-d3+,retry-once-d,d4");
    topic_payloads(&e, "in.dlq", &out);
    assert_string_equal(out.buf, "reject-d");
    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(e.runner, pl, "bt", &st), 0);
    assert_int_equal(st.processed_ok, 6);
    assert_int_equal(st.retried, 1);
    assert_int_equal(st.rejected, 1);
    /* [d1 reject-d d2 two-d3 retry-once-d d4] (all run) stops at reject-d: d1 again alone; then
     * [d2 two-d3 retry-once-d d4] (all run) stops at retry-once-d: d2 and two-d3 again as a set;
     * retry-once-d alone on its second try; d4 alone. */
    if (runs("d2") != 3 || runs("d4") != 3 || runs("reject-d") != 1 || runs("retry-once-d") != 3)
        fail_msg("d2 ran %d, d4 %d, reject-d %d, retry-once-d %d times (expected 3, 3, 1, 3)",
                 runs("d2"), runs("d4"), runs("reject-d"), runs("retry-once-d"));
    check_sets();
    env_free(&e);
}

/* A statement the whole set shares fails because of one event ("clash"): the stage cannot tell
 * which, and answers for every call. The host must not take call 0's answer as its own: every
 * event goes alone from its first try, and only the culprit is dead-lettered, even with one try
 * allowed. */
static void test_set_statement_failure_blames_no_one(void **state)
{
    const char *pl = variant(state, "bt9"); /* no prestate: resets the counts */
    env e;
    env_start_with(&e, &bt_shared_desc, pl, 16, 1);
    produce(&e, "k", "gate", NULL);
    gate_entered();
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    DBT_OK(c, of_db_exec_text(c, "INSERT INTO bt_writes (id, payload) VALUES (999999, 'held')"));
    of_db_release(c);
    const char *events[] = {"e1", "e2", "clash", "e3", "e4", NULL};
    for (size_t i = 0; events[i]; i++)
        produce(&e, "k", events[i], NULL);
    release_and_wait(&e, pl, 6);
    char got[4096];
    written(got, sizeof(got));
    assert_string_equal(got, "gate,held,e1,e2,e3,e4"); /* by id: 999999 moved the counter */
    joined out;
    topic_payloads(&e, "out", &out);
    assert_string_equal(out.buf, "gate,e1,e2,e3,e4");
    topic_payloads(&e, "in.dlq", &out);
    assert_string_equal(out.buf, "clash");
    of_stage_stats st;
    assert_int_equal(of_runner_stage_stats(e.runner, pl, "bt", &st), 0);
    assert_int_equal(st.processed_ok, 5);
    assert_int_equal(st.dead_lettered, 1);
    assert_int_equal(st.retried, 0);
    if (g_sets == 0 || g_set_max < 2)
        fail_msg("process_batch ran %d times, largest set %zu", g_sets, g_set_max);
    env_free(&e);
}

/* The value of "bt:<payload>" in Redis, "" when absent. */
static void cached(const char *payload, char *out, size_t size)
{
    char key[80], *v = NULL;
    snprintf(key, sizeof(key), "bt:%s", payload);
    int rc = of_cache_get(g_cache, key, &v, NULL);
    assert_true(rc >= 0);
    snprintf(out, size, "%s", rc == 1 ? v : "");
    free(v);
}

/* In a batch and alone: the events that commit have their cache writes made, the rejected one
 * and the failed first try do not, and no write is made before its commit. */
static void test_cache_after_commit(void **state)
{
    (void)state;
    const char *pipelines[] = {"bt6", "bt7"};
    for (int b = 0; b < 2; b++) {
        of_redis_config cfg;
        g_cache = rf_shared_pool(&cfg, pipelines[b]);
        assert_non_null(g_cache);
        env e;
        env_start(&e, pipelines[b], b == 0 ? 32 : 1, 3);
        const char *events[] = {"gate", "c1", "reject-c", "retry-once-c", "c2", "ro-c3", NULL};
        for (size_t i = 0; events[i]; i++) {
            produce(&e, "k", events[i], NULL);
            if (i == 0)
                gate_entered();
        }
        release_and_wait(&e, pipelines[b], 6);
        joined out;
        topic_payloads(&e, "in.dlq", &out);
        assert_string_equal(out.buf, "reject-c"); /* none was cached before its commit */
        char v[64];
        for (size_t i = 0; events[i]; i++) {
            cached(events[i], v, sizeof(v));
            assert_string_equal(v, strcmp(events[i], "reject-c") == 0 ? "" : events[i]);
        }
        env_free(&e);
        of_cache_pool_free(g_cache);
        g_cache = NULL;
        of_redis_config_free(&cfg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_events_per_transaction),
        cmocka_unit_test(test_retry_and_reject_inside_a_batch),
        cmocka_unit_test(test_retry_exhausted_inside_a_batch),
        cmocka_unit_test(test_same_event_twice_in_a_batch),
        /* The same through process_batch (ABI 1.5). */
        cmocka_unit_test_prestate(test_many_events_per_transaction, (void *)&bt_set_desc),
        cmocka_unit_test_prestate(test_retry_and_reject_inside_a_batch, (void *)&bt_set_desc),
        cmocka_unit_test_prestate(test_retry_exhausted_inside_a_batch, (void *)&bt_set_desc),
        cmocka_unit_test_prestate(test_same_event_twice_in_a_batch, (void *)&bt_set_desc),
        cmocka_unit_test(test_set_discards_calls_after_a_failure),
        cmocka_unit_test(test_set_statement_failure_blames_no_one),
        cmocka_unit_test(test_accepts_skips_other_types),
        cmocka_unit_test(test_cache_after_commit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
