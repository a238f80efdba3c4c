/* Transactions, the inbox, the outbox, cleanup and the db_* functions of the host
 * table, against the project's MariaDB (own database per run). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_db_util.h"

#include "bus.h"
#include "stage_runtime.h"
#include "stage_tx.h"

#include <pthread.h>
#include <time.h>

static of_db_pool *pool;

static int group_setup(void **state)
{
    (void)state;
    pool = dbt_host_schema_pool(
        6, "CREATE TABLE acct (id INT PRIMARY KEY, bal INT NOT NULL) ENGINE=InnoDB");
    return pool ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    of_db_pool_free(pool);
    return dbt_drop_database();
}

static of_db_tx *begin(void)
{
    char err[512] = "";
    of_db_tx *tx = of_db_tx_begin(pool, err, sizeof(err));
    if (!tx)
        fail_msg("begin: %s", err);
    return tx;
}

#define TX_OK(tx, expr)                                                                            \
    do {                                                                                           \
        if ((expr) < 0) {                                                                          \
            const char *m_;                                                                        \
            of_db_tx_error((tx), &m_);                                                             \
            fail_msg("%s: %s", #expr, m_);                                                         \
        }                                                                                          \
    } while (0)

/* A count through a fresh connection (what other hosts see). */
static int64_t count_outside(const char *sql, const of_db_value *p, size_t n)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    int64_t v = dbt_int(c, sql, p, n);
    of_db_release(c);
    return v;
}

static void reset_acct(void)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM acct"));
    of_db_release(c);
}

static void test_commit_and_rollback(void **state)
{
    (void)state;
    reset_acct();
    of_db_tx *tx = begin();
    of_db_value p[2] = {OF_DB_I(1), OF_DB_I(100)};
    assert_int_equal(of_db_tx_exec(tx, "INSERT INTO acct VALUES (?, ?)", p, 2), 1);
    /* Not visible outside before the commit. */
    assert_int_equal(count_outside("SELECT COUNT(*) FROM acct", NULL, 0), 0);
    assert_int_equal(of_db_tx_commit(tx), 0);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM acct", NULL, 0), 1);
    /* A finished transaction takes nothing more. */
    assert_int_equal(of_db_tx_exec(tx, "SELECT 1", NULL, 0), -1);
    const char *msg;
    assert_int_equal(of_db_tx_error(tx, &msg), OF_DB_ERR_OTHER);
    assert_non_null(strstr(msg, "already finished"));
    assert_int_equal(of_db_tx_commit(tx), -1);
    of_db_tx_end(tx);

    tx = begin();
    p[0] = OF_DB_I(2);
    assert_int_equal(of_db_tx_exec(tx, "INSERT INTO acct VALUES (?, ?)", p, 2), 1);
    assert_int_equal(of_db_tx_rollback(tx), 0);
    of_db_tx_end(tx);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM acct", NULL, 0), 1);

    /* Ended without a commit: rolled back. */
    tx = begin();
    p[0] = OF_DB_I(3);
    assert_int_equal(of_db_tx_exec(tx, "INSERT INTO acct VALUES (?, ?)", p, 2), 1);
    of_db_tx_end(tx);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM acct", NULL, 0), 1);
}

/* A counter of the transaction's own session (COM_INSERT, COM_BEGIN: how many such statements
 * the connection has sent so far). */
static int64_t session_count(of_db_tx *tx, const char *variable)
{
    of_db_value v = OF_DB_S(variable);
    return dbt_int(of_db_tx_conn(tx),
                   "SELECT CAST(VARIABLE_VALUE AS SIGNED) FROM information_schema.SESSION_STATUS "
                   "WHERE VARIABLE_NAME = ?",
                   &v, 1);
}

static void test_failed_statement_keeps_tx(void **state)
{
    (void)state;
    reset_acct();
    of_db_tx *tx = begin();
    of_db_value p[2] = {OF_DB_I(1), OF_DB_I(5)};
    TX_OK(tx, of_db_tx_exec(tx, "INSERT INTO acct VALUES (?, ?)", p, 2));
    assert_int_equal(of_db_tx_exec(tx, "INSERT INTO acct VALUES (?, ?)", p, 2), -1);
    const char *msg;
    assert_int_equal(of_db_tx_error(tx, &msg), OF_DB_ERR_DUPLICATE);
    assert_false(of_db_tx_doomed(tx));
    p[0] = OF_DB_I(2);
    TX_OK(tx, of_db_tx_exec(tx, "INSERT INTO acct VALUES (?, ?)", p, 2));
    assert_int_equal(of_db_tx_error(tx, &msg), OF_DB_OK);
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM acct", NULL, 0), 2);
}

typedef struct locker {
    of_db_tx *tx;
    int id;
    int64_t rc;
    of_db_error err;
} locker;

static void *lock_row(void *opaque)
{
    locker *l = opaque;
    of_db_value p = OF_DB_I(l->id);
    l->rc = of_db_tx_exec(l->tx, "UPDATE acct SET bal = bal + 1 WHERE id = ?", &p, 1);
    l->err = of_db_tx_error(l->tx, NULL);
    return NULL;
}

static void test_deadlock_dooms_tx(void **state)
{
    (void)state;
    reset_acct();
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    DBT_OK(c, of_db_exec_text(c, "INSERT INTO acct VALUES (1, 0), (2, 0)"));
    of_db_release(c);
    of_db_tx *a = begin(), *b = begin();
    of_db_value one = OF_DB_I(1), two = OF_DB_I(2);
    TX_OK(a, of_db_tx_exec(a, "UPDATE acct SET bal = bal + 1 WHERE id = ?", &one, 1));
    TX_OK(b, of_db_tx_exec(b, "UPDATE acct SET bal = bal + 1 WHERE id = ?", &two, 1));
    /* a waits for row 2 (in a thread), then b asks for row 1: a cycle. */
    locker la = {.tx = a, .id = 2};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, lock_row, &la), 0);
    struct timespec pause = {0, 300 * 1000000L};
    nanosleep(&pause, NULL);
    locker lb = {.tx = b, .id = 1};
    lock_row(&lb);
    pthread_join(th, NULL);
    /* One of them is the deadlock's victim; the other got its row. */
    locker *victim = la.rc < 0 ? &la : &lb, *winner = la.rc < 0 ? &lb : &la;
    assert_int_equal(victim->rc, -1);
    assert_int_equal(victim->err, OF_DB_ERR_TRANSIENT);
    assert_int_equal(winner->rc, 1);
    assert_true(of_db_tx_doomed(victim->tx));
    assert_false(of_db_tx_doomed(winner->tx));
    /* The victim refuses statements and the commit: the event is to be retried. */
    assert_int_equal(of_db_tx_exec(victim->tx, "SELECT 1", NULL, 0), -1);
    const char *msg;
    assert_int_equal(of_db_tx_error(victim->tx, &msg), OF_DB_ERR_TRANSIENT);
    assert_non_null(strstr(msg, "deadlock"));
    assert_int_equal(of_db_tx_commit(victim->tx), -1);
    assert_int_equal(of_db_tx_error(victim->tx, NULL), OF_DB_ERR_TRANSIENT);
    assert_int_equal(of_db_tx_commit(winner->tx), 0);
    of_db_tx_end(a);
    of_db_tx_end(b);
    /* Only the winner's two updates stayed. */
    assert_int_equal(count_outside("SELECT CAST(SUM(bal) AS SIGNED) FROM acct", NULL, 0), 2);
}

static void test_connection_lost_in_tx(void **state)
{
    (void)state;
    of_db_tx *tx = begin();
    int64_t id = dbt_int(of_db_tx_conn(tx), "SELECT CONNECTION_ID()", NULL, 0);
    of_db_value kid = OF_DB_I(id);
    char err[256];
    of_db_conn *k = of_db_acquire(pool, err, sizeof(err));
    DBT_OK(k, of_db_exec(k, "KILL CONNECTION ?", &kid, 1));
    of_db_release(k);
    assert_int_equal(of_db_tx_exec(tx, "SELECT 1", NULL, 0), -1);
    assert_int_equal(of_db_tx_error(tx, NULL), OF_DB_ERR_UNAVAILABLE);
    assert_true(of_db_tx_doomed(tx));
    assert_int_equal(of_db_tx_commit(tx), -1);
    assert_int_equal(of_db_tx_error(tx, NULL), OF_DB_ERR_UNAVAILABLE);
    of_db_tx_end(tx); /* the broken connection is closed, not pooled */
    tx = begin();
    assert_int_equal(of_db_tx_exec(tx, "SELECT 1", NULL, 0), 1);
    of_db_tx_end(tx);
}

typedef struct inbox_arg {
    const char *group, *event;
    int rc;
} inbox_arg;

static void *record_in_new_tx(void *opaque)
{
    inbox_arg *a = opaque;
    of_db_tx *tx = begin();
    a->rc = of_db_inbox_record(tx, a->group, a->event);
    if (a->rc >= 0)
        of_db_tx_commit(tx);
    of_db_tx_end(tx);
    return NULL;
}

static void test_inbox(void **state)
{
    (void)state;
    of_db_tx *tx = begin();
    assert_int_equal(of_db_inbox_record(tx, "g1", "ev-1"), 1);
    assert_int_equal(of_db_inbox_record(tx, "g1", "ev-1"), 0);
    assert_int_equal(of_db_inbox_record(tx, "g2", "ev-1"), 1); /* another group applies it too */
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);
    /* A redelivery: already applied. */
    tx = begin();
    assert_int_equal(of_db_inbox_record(tx, "g1", "ev-1"), 0);
    assert_int_equal(of_db_inbox_record(tx, "g1", "ev-2"), 1);
    of_db_tx_end(tx); /* rolled back: ev-2 is not applied */
    tx = begin();
    assert_int_equal(of_db_inbox_record(tx, "g1", "ev-2"), 1);
    assert_int_equal(of_db_inbox_record(tx, "", "ev-3"), -1);
    assert_int_equal(of_db_tx_error(tx, NULL), OF_DB_ERR_OTHER);
    /* An id longer than the column is an error, never silently cut to collide. */
    char longid[300];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(of_db_inbox_record(tx, "g1", longid), -1);
    assert_false(of_db_tx_doomed(tx));
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);

    /* The same event in two transactions at once (a rebalance): the second waits for the
     * first and, once it committed, finds the event applied. */
    tx = begin();
    assert_int_equal(of_db_inbox_record(tx, "g1", "ev-race"), 1);
    inbox_arg other = {"g1", "ev-race", -2};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, record_in_new_tx, &other), 0);
    struct timespec pause = {0, 300 * 1000000L};
    nanosleep(&pause, NULL);
    assert_int_equal(other.rc, -2); /* still waiting for the row lock */
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);
    pthread_join(th, NULL);
    assert_int_equal(other.rc, 0);
    of_db_value g = OF_DB_S("g1");
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_inbox WHERE consumer_group = ?", &g, 1),
                     3);
}

static of_event *make_event(const void *key, size_t key_len, const void *payload, size_t len)
{
    of_event *ev = of_event_new(key, key_len, payload, len);
    assert_non_null(ev);
    assert_int_equal(of_event_add_header(ev, "ce_id", "id-1", 4), 0);
    assert_int_equal(of_event_add_header(ev, "bin", "\x00\xff\x01", 3), 0);
    assert_int_equal(of_event_add_header(ev, "bin", "", 0), 0);
    return ev;
}

typedef struct collected {
    size_t n;
    int64_t ids[2000];
    char topic[64];
    of_event *first;
    size_t stop_after;
} collected;

static int collect(void *opaque, int64_t id, const char *topic, const of_event *ev)
{
    collected *c = opaque;
    if (c->n == 0) {
        snprintf(c->topic, sizeof(c->topic), "%s", topic);
        c->first = of_event_clone(ev);
    }
    if (c->n < 2000)
        c->ids[c->n] = id;
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static void collected_reset(collected *c)
{
    of_event_free(c->first);
    memset(c, 0, sizeof(*c));
}

static void clear_outbox(void)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM of_outbox"));
    of_db_release(c);
}

/* A batch's inbox: events in chunks (32 + 8), repeats counted out. */
static void test_inbox_many(void **state)
{
    (void)state;
    char buf[45][32];
    const char *ids[45];
    for (int i = 0; i < 45; i++) {
        snprintf(buf[i], sizeof(buf[i]), "many-%d", i);
        ids[i] = buf[i];
    }
    of_db_tx *tx = begin();
    assert_int_equal(of_db_inbox_record_many(tx, "gm", ids, 40), 40);
    assert_int_equal(of_db_inbox_record(tx, "gm", "many-39"), 0);
    assert_int_equal(of_db_inbox_record(tx, "gm", "many-40"), 1);
    assert_int_equal(of_db_tx_rollback(tx), 0);
    of_db_tx_end(tx);
    tx = begin();
    assert_int_equal(of_db_inbox_record_many(tx, "gm", ids, 40), 40);
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);
    of_db_value g = OF_DB_S("gm");
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_inbox WHERE consumer_group = ?", &g, 1),
                     40);

    /* A redelivery of 10, of which 3 were applied: 7 recorded now, and the repeat is seen. */
    tx = begin();
    assert_int_equal(of_db_inbox_record_many(tx, "gm", ids + 37, 8), 5);
    /* The same event twice in one call counts once. */
    const char *twice[] = {"many-x", "many-x"};
    assert_int_equal(of_db_inbox_record_many(tx, "gm", twice, 2), 1);
    of_db_tx_end(tx); /* rolled back */
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_inbox WHERE consumer_group = ?", &g, 1),
                     40);

    /* Bad input: an error, nothing recorded. */
    tx = begin();
    const char *bad[] = {"ok-1", ""};
    assert_int_equal(of_db_inbox_record_many(tx, "gm", bad, 2), -1);
    assert_int_equal(of_db_tx_error(tx, NULL), OF_DB_ERR_OTHER);
    assert_int_equal(of_db_inbox_record_many(tx, "", ids, 1), -1);
    assert_int_equal(of_db_inbox_record_many(tx, "gm", NULL, 0), 0);
    of_db_tx_end(tx);
}

static void test_outbox_round_trip(void **state)
{
    (void)state;
    clear_outbox();
    static collected got;
    char err[512] = "";
    static const char key[] = {'o', 0, 'r', (char)0xff};
    static const char payload[] = "{\"order\":1}\0tail";
    of_event *ev = make_event(key, sizeof(key), payload, sizeof(payload));
    of_event *keyless = of_event_new(NULL, 0, "", 0);
    of_db_tx *tx = begin();
    int64_t id1 = 0, id2 = 0;
    TX_OK(tx, of_db_outbox_add(tx, "orders.out", ev, NULL, &id1));
    TX_OK(tx, of_db_outbox_add(tx, "orders.empty", keyless, NULL, &id2));
    assert_true(id2 > id1 && id1 > 0);
    /* Nothing visible to the relay before the commit. */
    assert_int_equal(of_db_outbox_fetch_unpublished(pool, 0, 10, collect, &got, err, sizeof(err)),
                     0);
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);

    /* Rows younger than older_than are left to the publisher that wrote them. */
    assert_int_equal(
        of_db_outbox_fetch_unpublished(pool, 60000, 10, collect, &got, err, sizeof(err)), 0);
    assert_int_equal(got.n, 0);
    int64_t n = of_db_outbox_fetch_unpublished(pool, 0, 10, collect, &got, err, sizeof(err));
    if (n < 0)
        fail_msg("fetch: %s", err);
    assert_int_equal(n, 2);
    assert_int_equal(got.ids[0], id1);
    assert_int_equal(got.ids[1], id2);
    assert_string_equal(got.topic, "orders.out");
    assert_int_equal(got.first->key_len, sizeof(key));
    assert_memory_equal(got.first->key, key, sizeof(key));
    assert_int_equal(got.first->payload_len, sizeof(payload));
    assert_memory_equal(got.first->payload, payload, sizeof(payload));
    assert_int_equal(got.first->n_headers, ev->n_headers);
    for (size_t i = 0; i < ev->n_headers; i++) {
        assert_string_equal(got.first->headers[i].name, ev->headers[i].name);
        assert_int_equal(got.first->headers[i].value_len, ev->headers[i].value_len);
        assert_memory_equal(got.first->headers[i].value, ev->headers[i].value,
                            ev->headers[i].value_len);
    }
    collected_reset(&got);
    /* The keyless one stays keyless. */
    got.stop_after = 0;
    n = of_db_outbox_fetch_unpublished(pool, 0, 10, collect, &got, err, sizeof(err));
    assert_int_equal(n, 2);
    collected_reset(&got);

    /* Published ones are not fetched again. */
    assert_int_equal(of_db_outbox_mark_published(pool, &id1, 1, err, sizeof(err)), 0);
    n = of_db_outbox_fetch_unpublished(pool, 0, 10, collect, &got, err, sizeof(err));
    assert_int_equal(n, 1);
    assert_int_equal(got.ids[0], id2);
    assert_string_equal(got.topic, "orders.empty");
    assert_null(got.first->key);
    assert_int_equal(got.first->payload_len, 0);
    assert_int_equal(got.first->n_headers, 0);
    collected_reset(&got);
    assert_int_equal(of_db_outbox_mark_published(pool, &id2, 1, err, sizeof(err)), 0);
    assert_int_equal(of_db_outbox_fetch_unpublished(pool, 0, 10, collect, &got, err, sizeof(err)),
                     0);
    /* Marking again changes nothing and is no error. */
    assert_int_equal(of_db_outbox_mark_published(pool, &id2, 1, err, sizeof(err)), 0);
    assert_int_equal(of_db_outbox_mark_published(pool, NULL, 0, err, sizeof(err)), 0);

    /* A rolled-back transaction leaves nothing in the outbox. */
    tx = begin();
    TX_OK(tx, of_db_outbox_add(tx, "orders.out", ev, NULL, NULL));
    of_db_tx_end(tx);
    assert_int_equal(of_db_outbox_fetch_unpublished(pool, 0, 10, collect, &got, err, sizeof(err)),
                     0);
    /* A key longer than the column is refused. */
    char longkey[1100];
    memset(longkey, 'k', sizeof(longkey));
    of_event *big = of_event_new(longkey, sizeof(longkey), "x", 1);
    tx = begin();
    assert_int_equal(of_db_outbox_add(tx, "orders.out", big, NULL, NULL), -1);
    assert_int_equal(of_db_tx_error(tx, NULL), OF_DB_ERR_OTHER);
    of_db_tx_end(tx);
    of_event_free(big);
    of_event_free(ev);
    of_event_free(keyless);
}

/* A bus that refuses two topics for good: "too.big" at once, "invalid" in the delivery report;
 * anything else goes to the embedded bus. */
typedef struct refusing_bus {
    of_bus base;
    of_bus *inner;
    of_bus_ops ops;
} refusing_bus;

static int refusing_produce(of_bus *bus, const char *topic, const of_event *ev, of_delivery_cb cb,
                            void *opaque, char *errstr, size_t errstr_size)
{
    refusing_bus *rb = (refusing_bus *)bus;
    if (strcmp(topic, "too.big") == 0) {
        snprintf(errstr, errstr_size, "Broker: Message size too large");
        return OF_BUS_ERR_PERMANENT;
    }
    if (strcmp(topic, "invalid") == 0) {
        cb(opaque, OF_BUS_ERR_PERMANENT, "Broker: Invalid record");
        return 0;
    }
    return rb->inner->ops->produce(rb->inner, topic, ev, cb, opaque, errstr, errstr_size);
}

static void test_relay_parks_refused(void **state)
{
    (void)state;
    clear_outbox();
    refusing_bus rb = {.inner = of_membus_new()};
    assert_non_null(rb.inner);
    rb.ops = *rb.inner->ops;
    rb.ops.produce = refusing_produce;
    rb.base.ops = &rb.ops;
    char err[256];
    assert_int_equal(rb.inner->ops->ensure_topic(rb.inner, "fine", 1, 1, err, sizeof(err)), 0);
    of_event *ev = make_event("k", 1, "{}", 2);
    of_db_tx *tx = begin();
    int64_t ids[4];
    TX_OK(tx, of_db_outbox_add(tx, "fine", ev, NULL, &ids[0]));
    TX_OK(tx, of_db_outbox_add(tx, "too.big", ev, NULL, &ids[1]));
    TX_OK(tx, of_db_outbox_add(tx, "invalid", ev, NULL, &ids[2]));
    TX_OK(tx, of_db_outbox_add(tx, "fine", ev, NULL, &ids[3]));
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);

    /* The good ones go out; the refused ones are parked instead of holding the relay. */
    assert_int_equal(of_outbox_relay_run_once(pool, &rb.base, 0), 2);
    assert_int_equal(
        count_outside("SELECT COUNT(*) FROM of_outbox WHERE published_at IS NOT NULL", NULL, 0), 2);
    of_db_value p[] = {OF_DB_I(ids[1]), OF_DB_I(ids[2])};
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_outbox WHERE parked_at IS NOT NULL "
                                   "AND published_at IS NULL AND id IN (?, ?)",
                                   p, 2),
                     2);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_outbox WHERE id = ? AND "
                                   "park_reason LIKE '%size too large%'",
                                   &p[0], 1),
                     1);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_outbox WHERE id = ? AND "
                                   "park_reason LIKE '%Invalid record%'",
                                   &p[1], 1),
                     1);
    /* Never offered again, never counted as waiting, never cleaned up. */
    assert_int_equal(of_outbox_relay_run_once(pool, &rb.base, 0), 0);
    static collected got;
    assert_int_equal(of_db_outbox_fetch_unpublished(pool, 0, 10, collect, &got, err, sizeof(err)),
                     0);
    assert_int_equal(of_db_cleanup(pool, 0, err, sizeof(err)) >= 0, 1);
    assert_int_equal(
        count_outside("SELECT COUNT(*) FROM of_outbox WHERE parked_at IS NOT NULL", NULL, 0), 2);
    of_event_free(ev);
    rb.inner->ops->destroy(rb.inner);
}

static void test_outbox_many(void **state)
{
    (void)state;
    clear_outbox();
    static collected got;
    char err[512] = "";
    of_event *ev = make_event("k", 1, "p", 1);
    of_db_tx *tx = begin();
    for (int i = 0; i < 1200; i++)
        TX_OK(tx, of_db_outbox_add(tx, i % 2 ? "a" : "b", ev, NULL, NULL));
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);
    of_event_free(ev);
    /* limit, and a callback that stops early */
    got.stop_after = 3;
    assert_int_equal(of_db_outbox_fetch_unpublished(pool, 0, 5, collect, &got, err, sizeof(err)),
                     5);
    assert_int_equal(got.n, 3);
    collected_reset(&got);
    assert_int_equal(of_db_outbox_fetch_unpublished(pool, 0, 2000, collect, &got, err, sizeof(err)),
                     1200);
    for (size_t i = 1; i < got.n; i++)
        assert_true(got.ids[i] > got.ids[i - 1]); /* oldest first */
    /* More ids than one UPDATE takes (the last of its lists padded with a repeated id). */
    assert_int_equal(of_db_outbox_mark_published(pool, got.ids, 1100, err, sizeof(err)), 0);
    int64_t rest[3] = {got.ids[1101], got.ids[1150], got.ids[1199]};
    collected_reset(&got);
    assert_int_equal(of_db_outbox_fetch_unpublished(pool, 0, 2000, collect, &got, err, sizeof(err)),
                     100);
    collected_reset(&got);
    assert_int_equal(
        count_outside("SELECT COUNT(*) FROM of_outbox WHERE published_at IS NOT NULL", NULL, 0),
        1100);
    /* Three ids in a list of four places: those three, no other. */
    assert_int_equal(of_db_outbox_mark_published(pool, rest, 3, err, sizeof(err)), 0);
    assert_int_equal(
        count_outside("SELECT COUNT(*) FROM of_outbox WHERE published_at IS NOT NULL", NULL, 0),
        1103);
    of_db_value pr[3] = {OF_DB_I(rest[0]), OF_DB_I(rest[1]), OF_DB_I(rest[2])};
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_outbox WHERE published_at IS NOT NULL "
                                   "AND id IN (?, ?, ?)",
                                   pr, 3),
                     3);
}

/* of_db_outbox_add_many writes 37 rows (16 + 16 + 4 + 1 per statement where the server has
 * INSERT ... RETURNING, one by one where it has not) and hands back each row's own id: the row
 * read back under that id is the one given, source and all. */
static void outbox_add_many_with(int returning)
{
    clear_outbox();
    of_db_pool_set_returning(pool, returning);
    enum { N = 37 };
    of_event *evs[N];
    of_db_outbox_row rows[N];
    char srcs[N][32];
    int64_t ids[N];
    for (int i = 0; i < N; i++) {
        char key[16], payload[32];
        snprintf(key, sizeof(key), "k%d", i);
        int plen = snprintf(payload, sizeof(payload), "payload-%d-%d", returning, i);
        /* every third is keyless; headers on the even ones */
        evs[i] = i % 3 ? of_event_new(key, strlen(key), payload, (size_t)plen)
                       : of_event_new(NULL, 0, payload, (size_t)plen);
        assert_non_null(evs[i]);
        if (i % 2 == 0)
            assert_int_equal(of_event_add_header(evs[i], "ce_type", key, strlen(key)), 0);
        snprintf(srcs[i], sizeof(srcs[i]), "g/src-%d", i);
        rows[i] = (of_db_outbox_row){
            .topic = i % 2 ? "t.odd" : "t.even", .ev = evs[i], .source = i % 5 ? srcs[i] : NULL};
    }
    of_db_tx *tx = begin();
    assert_int_equal(of_db_conn_returning(of_db_tx_conn(tx)), returning);
    int64_t before = session_count(tx, "COM_INSERT");
    TX_OK(tx, of_db_outbox_add_many(tx, rows, N, ids));
    assert_int_equal(session_count(tx, "COM_INSERT") - before, returning ? 4 : N);
    for (int i = 1; i < N; i++)
        assert_true(ids[i] > ids[i - 1]);
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);

    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    for (int i = 0; i < N; i++) {
        of_db_value id = OF_DB_I(ids[i]);
        of_db_rows *r = of_db_query(
            c,
            "SELECT topic, msg_key, payload, source, LENGTH(headers) FROM of_outbox WHERE id = ?",
            &id, 1);
        assert_non_null(r);
        assert_int_equal(of_db_rows_next(r), 1);
        of_db_value v;
        assert_int_equal(of_db_rows_get(r, 0, &v), 0);
        assert_string_equal((const char *)v.p, rows[i].topic);
        assert_int_equal(of_db_rows_get(r, 1, &v), 0);
        if (evs[i]->key) {
            assert_int_equal(v.len, evs[i]->key_len);
            assert_memory_equal(v.p, evs[i]->key, v.len);
        } else {
            assert_int_equal(v.type, OF_DB_NULL);
        }
        assert_int_equal(of_db_rows_get(r, 2, &v), 0);
        assert_int_equal(v.len, evs[i]->payload_len);
        assert_memory_equal(v.p, evs[i]->payload, v.len);
        assert_int_equal(of_db_rows_get(r, 3, &v), 0);
        if (rows[i].source)
            assert_string_equal((const char *)v.p, rows[i].source);
        else
            assert_int_equal(v.type, OF_DB_NULL);
        assert_int_equal(of_db_rows_get(r, 4, &v), 0);
        assert_true(i % 2 == 0 ? v.i > 1 : v.i == 1); /* the version byte, then the header */
        of_db_rows_free(r);
    }
    of_db_release(c);

    /* Bad input: a row without a topic, or with a key longer than the column in the middle of
     * a chunk: an error, and the transaction commits none of them. */
    tx = begin();
    rows[5].topic = NULL;
    assert_int_equal(of_db_outbox_add_many(tx, rows, N, ids), -1);
    assert_int_equal(of_db_tx_error(tx, NULL), OF_DB_ERR_OTHER);
    rows[5].topic = "t.odd";
    char longkey[1100];
    memset(longkey, 'k', sizeof(longkey));
    of_event *big = of_event_new(longkey, sizeof(longkey), "x", 1);
    const of_event *keep = rows[20].ev;
    rows[20].ev = big;
    assert_int_equal(of_db_outbox_add_many(tx, rows, N, ids), -1);
    assert_int_equal(of_db_tx_error(tx, NULL), OF_DB_ERR_OTHER);
    rows[20].ev = keep;
    of_db_tx_end(tx);
    of_event_free(big);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_outbox", NULL, 0), N);
    /* No rows, no statement; one row, one plain INSERT. */
    tx = begin();
    before = session_count(tx, "COM_INSERT");
    TX_OK(tx, of_db_outbox_add_many(tx, rows, 0, ids));
    TX_OK(tx, of_db_outbox_add_many(tx, rows, 1, ids));
    assert_int_equal(session_count(tx, "COM_INSERT") - before, 1);
    of_db_tx_end(tx);
    for (int i = 0; i < N; i++)
        of_event_free(evs[i]);
    of_db_pool_set_returning(pool, 1);
}

static void test_outbox_add_many(void **state)
{
    (void)state;
    outbox_add_many_with(1);
    outbox_add_many_with(0);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A transaction on a connection another one just finished on starts with its first statement
 * (the connection stays in autocommit=0: no START TRANSACTION round trip) and is still a
 * transaction; a connection idle for a second starts with a round trip; a user outside a
 * transaction gets its statements committed as before. */
static void test_begin_without_round_trip(void **state)
{
    (void)state;
    reset_acct();
    of_db_tx *tx = begin();
    of_db_conn *conn = of_db_tx_conn(tx);
    TX_OK(tx, of_db_tx_exec(tx, "INSERT INTO acct VALUES (1, 10)", NULL, 0));
    int64_t b0 = session_count(tx, "COM_BEGIN");
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);

    /* The pool hands back the connection used last. */
    tx = begin();
    assert_ptr_equal(of_db_tx_conn(tx), conn);
    assert_int_equal(session_count(tx, "COM_BEGIN"), b0);
    TX_OK(tx, of_db_tx_exec(tx, "INSERT INTO acct VALUES (2, 20)", NULL, 0));
    assert_int_equal(count_outside("SELECT COUNT(*) FROM acct", NULL, 0), 1); /* not yet */
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM acct", NULL, 0), 2);

    /* Rolled back: gone. */
    tx = begin();
    assert_ptr_equal(of_db_tx_conn(tx), conn);
    TX_OK(tx, of_db_tx_exec(tx, "INSERT INTO acct VALUES (3, 30)", NULL, 0));
    of_db_tx_end(tx);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM acct", NULL, 0), 2);

    /* (count_outside took the connection and set it back to autocommit: the next transaction
     * switches it off again, with a round trip but no START.) Idle for over a second after a
     * transaction: START TRANSACTION checks the connection first. */
    tx = begin();
    assert_ptr_equal(of_db_tx_conn(tx), conn);
    int64_t b1 = session_count(tx, "COM_BEGIN");
    assert_int_equal(of_db_tx_commit(tx), 0);
    of_db_tx_end(tx);
    sleep_ms(1100);
    tx = begin();
    assert_ptr_equal(of_db_tx_conn(tx), conn);
    assert_int_equal(session_count(tx, "COM_BEGIN"), b1 + 1);
    of_db_tx_end(tx);

    /* Outside a transaction each statement commits on its own, on the same connection. */
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_ptr_equal(c, conn);
    assert_int_equal(of_db_exec(c, "INSERT INTO acct VALUES (4, 40)", NULL, 0), 1);
    of_db_release(c);
    tx = begin(); /* and takes the connection again */
    TX_OK(tx, of_db_tx_exec(tx, "UPDATE acct SET bal = 41 WHERE id = 4", NULL, 0));
    assert_int_equal(count_outside("SELECT COUNT(*) FROM acct WHERE bal = 40", NULL, 0), 1);
    of_db_tx_end(tx);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM acct WHERE id = 4 AND bal = 40", NULL, 0),
                     1);
}

static void test_cleanup(void **state)
{
    (void)state;
    clear_outbox();
    char err[512] = "";
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    assert_non_null(c);
    DBT_OK(c, of_db_exec_text(c, "DELETE FROM of_inbox"));
    /* 2500 old inbox rows (three batches) and 3 recent ones. */
    DBT_OK(c, of_db_exec_text(c, "INSERT INTO of_inbox SELECT 'old', CONCAT('e', seq), "
                                 "NOW(3) - INTERVAL 2 DAY FROM seq_1_to_2500"));
    DBT_OK(c, of_db_exec_text(c, "INSERT INTO of_inbox SELECT 'new', CONCAT('e', seq), "
                                 "NOW(3) - INTERVAL 10 MINUTE FROM seq_1_to_3"));
    /* Outbox: published long ago (deleted), published recently, unpublished and old (kept:
     * still to be published). */
    DBT_OK(c,
           of_db_exec_text(c, "INSERT INTO of_outbox (topic, payload, headers, created_at, "
                              "published_at) VALUES "
                              "('t', 'a', x'01', NOW(3) - INTERVAL 3 DAY, NOW(3) - INTERVAL 2 DAY),"
                              "('t', 'b', x'01', NOW(3) - INTERVAL 3 DAY, NOW(3) - INTERVAL 2 DAY),"
                              "('t', 'c', x'01', NOW(3) - INTERVAL 3 DAY, NOW(3)),"
                              "('t', 'd', x'01', NOW(3) - INTERVAL 3 DAY, NULL)"));
    of_db_release(c);
    int64_t n = of_db_cleanup(pool, 3600 * 1000, err, sizeof(err));
    if (n < 0)
        fail_msg("cleanup: %s", err);
    assert_int_equal(n, 2502);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_inbox", NULL, 0), 3);
    assert_int_equal(
        count_outside("SELECT COUNT(*) FROM of_inbox WHERE consumer_group = 'new'", NULL, 0), 3);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_outbox", NULL, 0), 2);
    assert_int_equal(
        count_outside("SELECT COUNT(*) FROM of_outbox WHERE payload IN ('c', 'd')", NULL, 0), 2);
    /* Nothing more to do. */
    assert_int_equal(of_db_cleanup(pool, 3600 * 1000, err, sizeof(err)), 0);
    /* A short retention takes the recent ones too (never the unpublished). */
    assert_int_equal(of_db_cleanup(pool, 1000, err, sizeof(err)), 3);
    struct timespec pause = {1, 100 * 1000000L};
    nanosleep(&pause, NULL);
    assert_int_equal(of_db_cleanup(pool, 1000, err, sizeof(err)), 1);
    assert_int_equal(count_outside("SELECT COUNT(*) FROM of_outbox", NULL, 0), 1);
}

static void test_host_api(void **state)
{
    (void)state;
    reset_acct();
    of_call call;
    of_call_init(&call, NULL, NULL, 1);
    /* No transaction: not configured. */
    assert_int_equal(of_api_db_exec(&call, "SELECT 1", NULL, 0), -1);
    assert_null(of_api_db_query(&call, "SELECT 1", NULL, 0));
    const char *msg = NULL;
    assert_int_equal(of_api_db_last_error(&call, &msg), OF_DB_ERR_NOT_CONFIGURED);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "OF_STAGE_DATABASE"));
    assert_int_equal(of_api_db_last_error(NULL, NULL), OF_DB_ERR_NOT_CONFIGURED);
    assert_int_equal(of_api_db_last_insert_id(&call), 0);

    /* Through the host table: the lead wires these slots. */
    call.tx = begin();
    of_db_value p[2] = {OF_DB_I(7), OF_DB_I(70)};
    assert_int_equal(of_api_db_exec(&call, "INSERT INTO acct VALUES (?, ?)", p, 2), 1);
    assert_int_equal(of_api_db_last_error(&call, &msg), OF_DB_OK);
    assert_int_equal(of_api_db_exec(&call, "INSERT INTO acct VALUES (?, ?)", p, 2), -1);
    assert_int_equal(of_api_db_last_error(&call, &msg), OF_DB_ERR_DUPLICATE);
    assert_non_null(strstr(msg, "Duplicate entry '7'"));
    assert_int_equal(of_api_db_exec(&call, NULL, NULL, 0), -1);
    assert_int_equal(of_api_db_last_error(&call, &msg), OF_DB_ERR_OTHER);
    of_db_rows *r = of_api_db_query(&call, "SELECT id, bal FROM acct WHERE id >= ?", p, 1);
    assert_non_null(r);
    assert_int_equal(of_api_db_rows_columns(r), 2);
    assert_int_equal(of_api_db_rows_next(r), 1);
    of_db_value v;
    assert_int_equal(of_api_db_rows_get(r, 1, &v), 0);
    assert_int_equal(v.i, 70);
    assert_int_equal(of_api_db_rows_get(r, 2, &v), -1);
    assert_int_equal(of_api_db_rows_next(r), 0);
    of_api_db_rows_free(r);
    of_api_db_rows_free(NULL);
    assert_int_equal(of_api_db_rows_next(NULL), -1);
    assert_int_equal(of_api_db_rows_columns(NULL), 0);
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    DBT_OK(c, of_db_exec_text(c, "CREATE TABLE IF NOT EXISTS autoid (id BIGINT AUTO_INCREMENT "
                                 "PRIMARY KEY, v INT)"));
    of_db_release(c);
    of_db_value one = OF_DB_I(1);
    assert_int_equal(of_api_db_exec(&call, "INSERT INTO autoid (v) VALUES (?)", &one, 1), 1);
    int64_t first = of_api_db_last_insert_id(&call);
    assert_true(first > 0);
    assert_int_equal(of_api_db_exec(&call, "INSERT INTO autoid (v) VALUES (?)", &one, 1), 1);
    assert_int_equal(of_api_db_last_insert_id(&call), first + 1);
    assert_int_equal(of_db_tx_commit(call.tx), 0);
    of_db_tx_end(call.tx);
    call.tx = NULL;
    assert_int_equal(count_outside("SELECT bal FROM acct WHERE id = 7", NULL, 0), 70);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_and_rollback),
        cmocka_unit_test(test_failed_statement_keeps_tx),
        cmocka_unit_test(test_deadlock_dooms_tx),
        cmocka_unit_test(test_connection_lost_in_tx),
        cmocka_unit_test(test_inbox),
        cmocka_unit_test(test_inbox_many),
        cmocka_unit_test(test_outbox_round_trip),
        cmocka_unit_test(test_outbox_many),
        cmocka_unit_test(test_outbox_add_many),
        cmocka_unit_test(test_begin_without_round_trip),
        cmocka_unit_test(test_relay_parks_refused),
        cmocka_unit_test(test_cleanup),
        cmocka_unit_test(test_host_api),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
