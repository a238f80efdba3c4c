/* The gateway's invoke hook (host/core/http_invoke.c, of_http_invoke) against the project's
 * MariaDB: a committed request is answered before the broker acknowledges its events, the
 * acknowledged outbox rows reach the marker, the others stay for the relay, and quiesce lets the
 * marker go. The bus is a fake that holds every delivery until the test releases it. A handler's
 * kept cache writes (cache_set_after_commit) are made after its commit, and not when it does not
 * commit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_db_util.h"

#include "redis_fixture.h"

#include "bus.h"
#include "event.h"
#include "gateway.h"
#include "outbox_marker.h"
#include "http_invoke.h"

#include <pthread.h>
#include <time.h>

/* ---- a bus that holds deliveries ---------------------------------------------------------- */

#define HELD_MAX 16

typedef struct hold_bus {
    of_bus base;
    pthread_mutex_t mu;
    int inline_ack; /* acknowledge inside produce(), as the embedded bus may */
    int refuse;     /* produce() refuses at once */
    size_t n;
    of_delivery_cb cb[HELD_MAX];
    void *opaque[HELD_MAX];
    char topic[HELD_MAX][64];
} hold_bus;

static int hb_produce(of_bus *bus, const char *topic, const of_event *ev, of_delivery_cb cb,
                      void *opaque, char *errstr, size_t errstr_size)
{
    (void)ev;
    hold_bus *b = (hold_bus *)bus;
    if (b->refuse) {
        snprintf(errstr, errstr_size, "refused by the test");
        return -1;
    }
    if (b->inline_ack) {
        cb(opaque, 0, NULL);
        return 0;
    }
    pthread_mutex_lock(&b->mu);
    assert_true(b->n < HELD_MAX);
    b->cb[b->n] = cb;
    b->opaque[b->n] = opaque;
    snprintf(b->topic[b->n], sizeof(b->topic[0]), "%s", topic);
    b->n++;
    pthread_mutex_unlock(&b->mu);
    return 0;
}

static const of_bus_ops hold_ops = {.name = "hold", .produce = hb_produce};

static void hb_init(hold_bus *b)
{
    memset(b, 0, sizeof(*b));
    b->base.ops = &hold_ops;
    pthread_mutex_init(&b->mu, NULL);
}

static size_t hb_held(hold_bus *b)
{
    pthread_mutex_lock(&b->mu);
    size_t n = b->n;
    pthread_mutex_unlock(&b->mu);
    return n;
}

/* Acknowledges held delivery i (err 0) or fails it. */
static void hb_release(hold_bus *b, size_t i, int err)
{
    assert_true(i < hb_held(b));
    b->cb[i](b->opaque[i], err, err ? "broker away (test)" : NULL);
}

/* ---- the stage ------------------------------------------------------------------------------ */

static const of_stage_descriptor db_desc = {
    .abi_major = OF_ABI_MAJOR,
    .abi_minor = OF_ABI_MINOR,
    .struct_size = sizeof(of_stage_descriptor),
    .name = "place",
    .version = "1.0.0",
    .flags = OF_STAGE_DATABASE,
};

/* Emits two events and answers 202, as the orders intake does. */
static of_status h_place(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    const of_host_api *api = of_host_api_get();
    if (api->emit(call, "out", "k1", 2, "{\"n\":1}", 7, NULL, 0) != 0 ||
        api->emit(call, "out", "k2", 2, "{\"n\":2}", 7, NULL, 0) != 0)
        return OF_RETRY;
    return of_api_http_respond(req, 202, "application/json", "{}", 2, NULL) == 0 ? OF_OK : OF_RETRY;
}

static of_db_pool *pool;
static of_stage_def def;
static of_output_map maps[1];
static of_stage st;

static int group_setup(void **state)
{
    (void)state;
    if (!(pool = dbt_host_schema_pool(4, NULL)))
        return -1;
    maps[0] = (of_output_map){.output = (char *)"out", .topic = (char *)"invoke.out"};
    def = (of_stage_def){.name = (char *)"place", .outputs = maps, .n_outputs = 1};
    memset(&st, 0, sizeof(st));
    return of_stage_setup(&st, "p", &def, &db_desc, NULL);
}

static int group_teardown(void **state)
{
    (void)state;
    of_stage_cleanup(&st);
    of_db_pool_free(pool);
    return dbt_drop_database();
}

static int64_t count(const char *sql)
{
    return dbt_pool_int(pool, sql);
}

static int64_t rows_total(void)
{
    return count("SELECT COUNT(*) FROM of_outbox");
}

static int64_t rows_published(void)
{
    return count("SELECT COUNT(*) FROM of_outbox WHERE published_at IS NOT NULL");
}

static void empty_outbox(void)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(of_db_exec_text(c, "DELETE FROM of_outbox"), 0);
    of_db_release(c);
}

static size_t due(of_http_invoker *inv)
{
    pthread_mutex_lock(&inv->mu);
    size_t n = inv->due;
    pthread_mutex_unlock(&inv->mu);
    return n;
}

/* One request through the hook, in a thread of its own, so that a hook that waits for the
 * broker shows as a request not answered rather than as a test that never ends. */
typedef struct inv_run {
    of_http_invoker *inv;
    of_http_request req;
    of_status status;
    int http_status; /* the answer's */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} inv_run;

static void *inv_thread(void *arg)
{
    inv_run *r = arg;
    of_status s = of_http_invoke(r->inv, &st, h_place, &r->req);
    pthread_mutex_lock(&r->mu);
    r->status = s;
    r->http_status = r->req.status;
    r->done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Runs a request; 1 when it was answered within 10 s (the bus holding every delivery). */
static int invoke_answered(of_http_invoker *inv, inv_run *r, pthread_t *th)
{
    memset(r, 0, sizeof(*r));
    r->inv = inv;
    r->req.method = "POST";
    r->req.path = "/place";
    r->req.body = strdup("");
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    assert_int_equal(pthread_create(th, NULL, inv_thread, r), 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&r->mu);
    while (!r->done && pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == 0)
        ;
    int done = r->done;
    pthread_mutex_unlock(&r->mu);
    return done;
}

static void inv_finish(inv_run *r, pthread_t th)
{
    pthread_join(th, NULL);
    of_http_request_release(&r->req);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

/* A test's bus, marker and invoker over an empty outbox; without_marker: no marker. */
typedef struct inv_env {
    hold_bus bus;
    of_outbox_marker *m;
    of_http_invoker inv;
} inv_env;

static void ie_start(inv_env *e, int with_marker)
{
    empty_outbox();
    hb_init(&e->bus);
    e->m = with_marker ? of_outbox_marker_start(pool, 5, 500) : NULL;
    if (with_marker)
        assert_non_null(e->m);
    of_http_invoker_init(&e->inv, pool, &e->bus.base, e->m);
}

/* One request, which must be answered while the bus holds its deliveries. */
static void ie_request(inv_env *e, inv_run *r)
{
    pthread_t th;
    int answered = invoke_answered(&e->inv, r, &th);
    inv_finish(r, th);
    assert_true(answered);
}

static void ie_stop(inv_env *e)
{
    of_outbox_marker_stop(e->m);
    of_http_invoker_destroy(&e->inv);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Answered with both events still unacknowledged; the acknowledgements mark the rows. */
static void test_answer_before_ack(void **state)
{
    (void)state;
    inv_env e;
    ie_start(&e, 1);
    inv_run r;
    pthread_t th;
    int answered = invoke_answered(&e.inv, &r, &th);
    size_t held = hb_held(&e.bus);
    if (!answered) /* let the waiting request go before failing */
        for (size_t i = 0; i < held; i++)
            hb_release(&e.bus, i, 0);
    inv_finish(&r, th);
    assert_true(answered);
    assert_int_equal(r.status, OF_OK);
    assert_int_equal(r.http_status, 202);
    assert_int_equal(held, 2);
    assert_string_equal(e.bus.topic[0], "invoke.out");
    assert_int_equal(rows_total(), 2); /* committed before the answer */
    assert_int_equal(due(&e.inv), 1);
    hb_release(&e.bus, 1, 0);
    assert_int_equal(due(&e.inv), 1); /* one still due */
    assert_int_equal(of_outbox_marker_flush(e.m), 0);
    assert_int_equal(rows_published(), 0);
    hb_release(&e.bus, 0, 0);
    assert_int_equal(due(&e.inv), 0);
    assert_int_equal(of_outbox_marker_flush(e.m), 0);
    assert_int_equal(rows_published(), 2);
    assert_int_equal(of_http_invoker_quiesce(&e.inv, 0), 0);
    ie_stop(&e);
}

/* A failed delivery leaves its row unmarked for the relay; the other is marked. */
static void test_failed_ack_left_to_relay(void **state)
{
    (void)state;
    inv_env e;
    ie_start(&e, 1);
    inv_run r;
    ie_request(&e, &r);
    assert_int_equal(hb_held(&e.bus), 2);
    hb_release(&e.bus, 0, -1);
    hb_release(&e.bus, 1, 0);
    assert_int_equal(due(&e.inv), 0);
    assert_int_equal(of_outbox_marker_flush(e.m), 0);
    assert_int_equal(rows_total(), 2);
    assert_int_equal(rows_published(), 1);
    assert_int_equal(count("SELECT COUNT(*) FROM of_outbox WHERE published_at IS NULL AND "
                           "msg_key = 'k1'"),
                     1);
    ie_stop(&e);
}

/* Refused at once, or acknowledged inside produce(): answered, nothing left due. */
static void test_refused_and_inline(void **state)
{
    (void)state;
    inv_env e;
    ie_start(&e, 1);
    e.bus.refuse = 1;
    inv_run r;
    ie_request(&e, &r);
    assert_int_equal(r.http_status, 202);
    assert_int_equal(due(&e.inv), 0);
    assert_int_equal(of_outbox_marker_flush(e.m), 0);
    assert_int_equal(rows_total(), 2);
    assert_int_equal(rows_published(), 0);
    e.bus.refuse = 0;
    e.bus.inline_ack = 1;
    ie_request(&e, &r);
    assert_int_equal(due(&e.inv), 0);
    assert_int_equal(of_outbox_marker_flush(e.m), 0);
    assert_int_equal(rows_total(), 4);
    assert_int_equal(rows_published(), 2);
    ie_stop(&e);
}

/* After quiesce gave up waiting, a late acknowledgement does not touch the marker. */
static void test_quiesce_lets_the_marker_go(void **state)
{
    (void)state;
    inv_env e;
    ie_start(&e, 1);
    inv_run r;
    ie_request(&e, &r);
    assert_int_equal(of_http_invoker_quiesce(&e.inv, 20), 1);
    of_outbox_marker_stop(e.m); /* freed: a late add would be a use after free (ASan) */
    e.m = NULL;
    hb_release(&e.bus, 0, 0);
    hb_release(&e.bus, 1, 0);
    assert_int_equal(due(&e.inv), 0);
    assert_int_equal(rows_published(), 0);
    ie_stop(&e);
}

/* Without a marker the request's thread waits for the broker and marks the rows itself. */
static void test_without_marker_waits(void **state)
{
    (void)state;
    inv_env e;
    ie_start(&e, 0);
    inv_run r;
    pthread_t th;
    memset(&r, 0, sizeof(r));
    r.inv = &e.inv;
    r.req.body = strdup("");
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    assert_int_equal(pthread_create(&th, NULL, inv_thread, &r), 0);
    for (int i = 0; i < 2000 && hb_held(&e.bus) < 2; i++)
        usleep(5000);
    assert_int_equal(hb_held(&e.bus), 2);
    pthread_mutex_lock(&r.mu);
    int done = r.done;
    pthread_mutex_unlock(&r.mu);
    assert_false(done); /* still waiting for the acknowledgements */
    hb_release(&e.bus, 0, 0);
    hb_release(&e.bus, 1, 0);
    inv_finish(&r, th);
    assert_int_equal(r.status, OF_OK);
    assert_int_equal(rows_published(), 2);
    ie_stop(&e);
}

/* Keeps a cache write, checks it is not made yet, then answers as its request's body says. */
static of_status h_cached(void *instance, of_call *call, of_http_request *req)
{
    of_cache_pool *cache = instance;
    const of_host_api *api = of_host_api_get();
    const char *key = req->body;
    char *v = NULL;
    if (api->cache_set_after_commit(call, key, "yes", 3, 60000) != 0)
        return OF_RETRY;
    if (of_cache_get(cache, key, &v, NULL) != 0) {
        free(v);
        of_api_http_problem(req, 500, "Too early", "written before the commit");
        return OF_REJECT;
    }
    if (strstr(key, "reject"))
        return of_api_http_problem(req, 409, "Conflict", "refused") == 0 ? OF_REJECT : OF_RETRY;
    return of_api_http_respond(req, 200, NULL, "{}", 2, NULL) == 0 ? OF_OK : OF_RETRY;
}

static int invoke_cached(of_http_invoker *inv, of_stage *s, const char *key)
{
    of_http_request req;
    memset(&req, 0, sizeof(req));
    req.body = strdup(key);
    req.body_len = strlen(key);
    of_http_invoke(inv, s, h_cached, &req);
    int status = req.status;
    of_http_request_release(&req);
    return status;
}

static void test_cache_writes_after_commit(void **state)
{
    (void)state;
    of_redis_config cfg;
    of_cache_pool *cache = rf_shared_pool(&cfg, "invoke");
    assert_non_null(cache);
    of_stage cs;
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(of_stage_setup(&cs, "p", &def, &db_desc, NULL), 0);
    cs.cache = cache;
    cs.instance = cache;
    hold_bus bus;
    hb_init(&bus);
    of_http_invoker inv;
    of_http_invoker_init(&inv, pool, &bus.base, NULL);
    assert_int_equal(invoke_cached(&inv, &cs, "inv:ok"), 200);
    assert_int_equal(invoke_cached(&inv, &cs, "inv:reject"), 409);
    char *v = NULL;
    assert_int_equal(of_cache_get(cache, "inv:ok", &v, NULL), 1);
    assert_string_equal(v, "yes");
    free(v);
    assert_int_equal(of_cache_get(cache, "inv:reject", &v, NULL), 0);
    of_http_invoker_destroy(&inv);
    of_stage_cleanup(&cs);
    of_cache_pool_free(cache);
    of_redis_config_free(&cfg);
}

int main(void)
{
    dbt_ensure_service();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_before_ack),
        cmocka_unit_test(test_failed_ack_left_to_relay),
        cmocka_unit_test(test_refused_and_inline),
        cmocka_unit_test(test_quiesce_lets_the_marker_go),
        cmocka_unit_test(test_without_marker_waits),
        cmocka_unit_test(test_cache_writes_after_commit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
