/* The connection pool and statements, against the project's MariaDB (own database per run). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_db_util.h"

#include <pthread.h>
#include <stdatomic.h>

static of_db_pool *pool;

static int group_setup(void **state)
{
    (void)state;
    if (dbt_create_database() != 0)
        return -1;
    pool = dbt_pool_for(dbt_name, 4);
    return pool ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    of_db_pool_free(pool);
    return dbt_drop_database();
}

static of_db_conn *get(void)
{
    char err[512] = "";
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    if (!c)
        fail_msg("acquire: %s", err);
    return c;
}

static void test_lazy_and_reuse(void **state)
{
    (void)state;
    of_db_pool *p = dbt_pool_for(dbt_name, 2);
    assert_non_null(p);
    of_db_pool_stats st;
    of_db_pool_stats_get(p, &st);
    assert_int_equal(st.size, 2);
    assert_int_equal(st.open, 0); /* nothing connected before the first acquire */
    char err[256];
    of_db_conn *a = of_db_acquire(p, err, sizeof(err));
    assert_non_null(a);
    of_db_release(a);
    of_db_conn *b = of_db_acquire(p, err, sizeof(err));
    assert_ptr_equal(a, b); /* the idle connection is handed out again */
    of_db_pool_stats_get(p, &st);
    assert_int_equal(st.open, 1);
    assert_int_equal(st.idle, 0);
    assert_int_equal(st.acquired, 2);
    /* The session speaks utf8mb4 and UTC. */
    of_db_rows *r = of_db_query(
        b, "SELECT @@character_set_client, @@time_zone, @@session.innodb_lock_wait_timeout", NULL,
        0);
    assert_non_null(r);
    assert_int_equal(of_db_rows_next(r), 1);
    of_db_value v;
    assert_int_equal(of_db_rows_get(r, 0, &v), 0);
    assert_string_equal(v.p, "utf8mb4");
    assert_int_equal(of_db_rows_get(r, 1, &v), 0);
    assert_string_equal(v.p, "+00:00");
    /* Below the read timeout (30 s): a lock wait ends as TRANSIENT, not a lost connection. */
    assert_int_equal(of_db_rows_get(r, 2, &v), 0);
    assert_int_equal(v.i, 29);
    of_db_rows_free(r);
    of_db_release(b);
    assert_int_equal(of_db_ping(p, err, sizeof(err)), 0);
    of_db_pool_free(p);
}

static void *release_on_thread(void *c)
{
    of_db_release(c);
    return NULL;
}

static void *acquire_on_thread(void *p)
{
    char err[256];
    return of_db_acquire(p, err, sizeof(err));
}

/* A thread gets back the connection it released last even when another thread released one
 * after it (its statements are prepared there); a thread with none gets the one released last. */
static void test_thread_gets_its_connection_back(void **state)
{
    (void)state;
    of_db_pool *p = dbt_pool_for(dbt_name, 4);
    assert_non_null(p);
    char err[256];
    of_db_conn *a = of_db_acquire(p, err, sizeof(err));
    of_db_conn *b = of_db_acquire(p, err, sizeof(err));
    assert_non_null(a);
    assert_non_null(b);
    of_db_release(a);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, release_on_thread, b), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    of_db_conn *again = of_db_acquire(p, err, sizeof(err));
    assert_ptr_equal(again, a); /* not b, released after it */
    void *other = NULL;
    assert_int_equal(pthread_create(&t, NULL, acquire_on_thread, p), 0);
    assert_int_equal(pthread_join(t, &other), 0);
    assert_ptr_equal(other, b);
    of_db_release(other);
    of_db_release(again);
    of_db_pool_stats st;
    of_db_pool_stats_get(p, &st);
    assert_int_equal(st.open, 2);
    assert_int_equal(st.idle, 2);
    of_db_pool_free(p);
}

typedef struct worker_arg {
    of_db_pool *p;
    _Atomic int *in_use;
    _Atomic int *max_in_use;
    _Atomic int *failures;
    int id;
} worker_arg;

static void *worker(void *opaque)
{
    worker_arg *a = opaque;
    for (int i = 0; i < 15; i++) {
        char err[256];
        of_db_conn *c = of_db_acquire(a->p, err, sizeof(err));
        if (!c) {
            atomic_fetch_add(a->failures, 1);
            continue;
        }
        int now = atomic_fetch_add(a->in_use, 1) + 1;
        int seen = atomic_load(a->max_in_use);
        while (now > seen && !atomic_compare_exchange_weak(a->max_in_use, &seen, now))
            ;
        of_db_value p[2] = {OF_DB_I(a->id), OF_DB_I(i)};
        if (of_db_exec(c, "INSERT INTO conc (worker, n) VALUES (?, ?)", p, 2) != 1)
            atomic_fetch_add(a->failures, 1);
        atomic_fetch_sub(a->in_use, 1);
        of_db_release(c);
    }
    return NULL;
}

static void test_concurrency(void **state)
{
    (void)state;
    of_db_conn *c = get();
    DBT_OK(c, of_db_exec_text(c, "CREATE TABLE conc (worker INT, n INT, PRIMARY KEY (worker, n))"));
    of_db_release(c);
    /* 10 threads on 3 connections. */
    of_db_pool *p = dbt_pool_for(dbt_name, 3);
    assert_non_null(p);
    _Atomic int in_use = 0, max_in_use = 0, failures = 0;
    enum { N = 10 };
    pthread_t th[N];
    worker_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (worker_arg){p, &in_use, &max_in_use, &failures, i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&failures), 0);
    assert_true(atomic_load(&max_in_use) <= 3);
    assert_true(atomic_load(&max_in_use) >= 2); /* they did overlap */
    of_db_pool_stats st;
    of_db_pool_stats_get(p, &st);
    assert_true(st.open <= 3);
    assert_int_equal(st.acquired, N * 15);
    of_db_pool_free(p);
    c = get();
    assert_int_equal(dbt_int(c, "SELECT COUNT(*) FROM conc", NULL, 0), N * 15);
    of_db_release(c);
}

static void test_acquire_timeout(void **state)
{
    (void)state;
    of_mysql_config cfg;
    dbt_config(&cfg, dbt_name);
    cfg.pool_size = 1;
    cfg.acquire_timeout_ms = 300;
    char err[512] = "";
    of_db_pool *p = of_db_pool_new(&cfg, err, sizeof(err));
    of_mysql_config_free(&cfg);
    assert_non_null(p);
    of_db_conn *held = of_db_acquire(p, err, sizeof(err));
    assert_non_null(held);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    of_db_conn *none = of_db_acquire(p, err, sizeof(err));
    double ms = dbt_elapsed_ms(&t0);
    assert_null(none);
    assert_true(ms >= 250 && ms < 2000);
    assert_non_null(strstr(err, "database unavailable: all 1 connection stayed in use"));
    of_db_pool_stats st;
    of_db_pool_stats_get(p, &st);
    assert_int_equal(st.timeouts, 1);
    of_db_release(held);
    of_db_conn *again = of_db_acquire(p, err, sizeof(err));
    assert_ptr_equal(again, held);
    of_db_release(again);
    of_db_pool_free(p);
}

static void test_unavailable(void **state)
{
    (void)state;
    of_mysql_config cfg;
    dbt_config(&cfg, dbt_name);
    cfg.port = 1; /* nothing listens there */
    cfg.connect_timeout_ms = 2000;
    char err[512] = "";
    of_db_pool *p = of_db_pool_new(&cfg, err, sizeof(err));
    of_mysql_config_free(&cfg);
    assert_non_null(p);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    of_db_conn *c = of_db_acquire(p, err, sizeof(err));
    assert_null(c);
    assert_true(dbt_elapsed_ms(&t0) < 3000);
    assert_non_null(strstr(err, "database unavailable: cannot connect to 127.0.0.1:1"));
    assert_int_equal(of_db_ping(p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "database unavailable"));
    of_db_pool_stats st;
    of_db_pool_stats_get(p, &st);
    assert_int_equal(st.connect_failures, 2);
    assert_int_equal(st.open, 0);
    of_db_tx *tx = of_db_tx_begin(p, err, sizeof(err));
    assert_null(tx);
    assert_non_null(strstr(err, "database unavailable"));
    of_db_pool_free(p);

    /* A wrong password: unavailable too, and the password is not in the message. */
    dbt_config(&cfg, dbt_name);
    free(cfg.password);
    cfg.password = strdup("not-the-password-xyz");
    p = of_db_pool_new(&cfg, err, sizeof(err));
    of_mysql_config_free(&cfg);
    c = of_db_acquire(p, err, sizeof(err));
    assert_null(c);
    assert_non_null(strstr(err, "database unavailable"));
    assert_non_null(strstr(err, "errno 1045"));
    assert_null(strstr(err, "not-the-password-xyz"));
    of_db_pool_free(p);
}

static void test_broken_connection_replaced(void **state)
{
    (void)state;
    of_db_pool *p = dbt_pool_for(dbt_name, 1);
    char err[256];
    of_db_conn *c = of_db_acquire(p, err, sizeof(err));
    assert_non_null(c);
    int64_t id = dbt_int(c, "SELECT CONNECTION_ID()", NULL, 0);
    /* Kill it from another connection, as a server restart or a network cut would. */
    of_db_conn *killer = get();
    of_db_value kid = OF_DB_I(id);
    DBT_OK(killer, of_db_exec(killer, "KILL CONNECTION ?", &kid, 1));
    of_db_release(killer);
    assert_int_equal(of_db_exec(c, "SELECT 1", NULL, 0), -1);
    const char *msg;
    assert_int_equal(of_db_conn_error(c, &msg), OF_DB_ERR_UNAVAILABLE);
    assert_true(of_db_conn_broken(c));
    of_db_release(c);
    of_db_pool_stats st;
    of_db_pool_stats_get(p, &st);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.open, 0);
    c = of_db_acquire(p, err, sizeof(err));
    assert_non_null(c);
    assert_int_not_equal(dbt_int(c, "SELECT CONNECTION_ID()", NULL, 0), id);
    of_db_release(c);
    of_db_pool_free(p);
}

static void test_value_types(void **state)
{
    (void)state;
    of_db_conn *c = get();
    DBT_OK(c, of_db_exec_text(c, "CREATE TABLE vals (id INT PRIMARY KEY, i BIGINT, d DOUBLE, "
                                 "t VARCHAR(200), b BLOB, n INT NULL, dec_ DECIMAL(10,2), "
                                 "dt DATETIME(3), u BIGINT UNSIGNED, f FLOAT, tiny TINYINT)"));
    static const char bin[] = {0, 1, 2, (char)0xff, 0, 'x'};
    of_db_value p[10] = {
        OF_DB_I(1),
        OF_DB_I(-9223372036854775807LL - 1),
        OF_DB_D(3.25e-7),
        OF_DB_S("plain text"),
        {.type = OF_DB_BLOB, .p = bin, .len = sizeof(bin)},
        OF_DB_NULLV,
        OF_DB_S("12345678.91"),
        OF_DB_S("2024-05-01 12:34:56.789"),
        OF_DB_I(42),
        OF_DB_D(1.5),
    };
    assert_int_equal(of_db_exec(c,
                                "INSERT INTO vals (id, i, d, t, b, n, dec_, dt, u, f, tiny) VALUES "
                                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 7)",
                                p, 10),
                     1);
    of_db_value key = OF_DB_I(1);
    of_db_rows *r = of_db_query(
        c, "SELECT id, i, d, t, b, n, dec_, dt, u, f, tiny, NULL FROM vals WHERE id = ?", &key, 1);
    assert_non_null(r);
    assert_int_equal(of_db_rows_columns(r), 12);
    assert_string_equal(of_db_rows_column_name(r, 3), "t");
    of_db_value v;
    assert_int_equal(of_db_rows_get(r, 0, &v), -1); /* no row yet */
    assert_int_equal(of_db_rows_next(r), 1);
    assert_int_equal(of_db_rows_get(r, 0, &v), 0);
    assert_int_equal(v.type, OF_DB_INT);
    assert_int_equal(v.i, 1);
    assert_int_equal(of_db_rows_get(r, 1, &v), 0);
    assert_int_equal(v.type, OF_DB_INT);
    assert_true(v.i == -9223372036854775807LL - 1);
    assert_int_equal(of_db_rows_get(r, 2, &v), 0);
    assert_int_equal(v.type, OF_DB_DOUBLE);
    assert_true(v.d == 3.25e-7);
    assert_int_equal(of_db_rows_get(r, 3, &v), 0);
    assert_int_equal(v.type, OF_DB_TEXT);
    assert_int_equal(v.len, 10);
    assert_string_equal(v.p, "plain text");
    assert_int_equal(of_db_rows_get(r, 4, &v), 0);
    assert_int_equal(v.type, OF_DB_BLOB);
    assert_int_equal(v.len, sizeof(bin));
    assert_memory_equal(v.p, bin, sizeof(bin));
    assert_int_equal(of_db_rows_get(r, 5, &v), 0);
    assert_int_equal(v.type, OF_DB_NULL);
    assert_int_equal(of_db_rows_get(r, 6, &v), 0);
    assert_int_equal(v.type, OF_DB_TEXT);
    assert_string_equal(v.p, "12345678.91");
    assert_int_equal(of_db_rows_get(r, 7, &v), 0);
    assert_int_equal(v.type, OF_DB_TEXT);
    assert_string_equal(v.p, "2024-05-01 12:34:56.789");
    assert_int_equal(of_db_rows_get(r, 8, &v), 0);
    assert_int_equal(v.type, OF_DB_INT);
    assert_int_equal(v.i, 42);
    assert_int_equal(of_db_rows_get(r, 9, &v), 0);
    assert_int_equal(v.type, OF_DB_DOUBLE);
    assert_true(v.d == 1.5);
    assert_int_equal(of_db_rows_get(r, 10, &v), 0);
    assert_int_equal(v.type, OF_DB_INT);
    assert_int_equal(v.i, 7);
    assert_int_equal(of_db_rows_get(r, 11, &v), 0);
    assert_int_equal(v.type, OF_DB_NULL);
    assert_int_equal(of_db_rows_get(r, 12, &v), -1); /* bad index */
    assert_int_equal(of_db_rows_next(r), 0);
    of_db_rows_free(r);

    /* An empty result; a statement without one; exec of a SELECT counts its rows. */
    key = OF_DB_I(999);
    r = of_db_query(c, "SELECT id FROM vals WHERE id = ?", &key, 1);
    assert_non_null(r);
    assert_int_equal(of_db_rows_next(r), 0);
    of_db_rows_free(r);
    r = of_db_query(c, "DO 1", NULL, 0);
    assert_non_null(r);
    assert_int_equal(of_db_rows_columns(r), 0);
    assert_int_equal(of_db_rows_next(r), 0);
    of_db_rows_free(r);
    assert_int_equal(of_db_exec(c, "SELECT * FROM vals", NULL, 0), 1);
    of_db_release(c);
}

static void test_big_blob_and_utf8(void **state)
{
    (void)state;
    of_db_conn *c = get();
    DBT_OK(c, of_db_exec_text(c, "CREATE TABLE big (id INT AUTO_INCREMENT PRIMARY KEY, "
                                 "b LONGBLOB, t TEXT CHARACTER SET utf8mb4)"));
    size_t n = 1024 * 1024;
    unsigned char *blob = malloc(n);
    assert_non_null(blob);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        blob[i] = (unsigned char)x;
    }
    blob[0] = 0;
    blob[n - 1] = 0;
    const char *text = "snowman \xe2\x98\x83, emoji \xf0\x9f\x98\x80, \xe4\xb8\xad\xe6\x96\x87, "
                       "\xc3\xbc\xc3\xb1\xc3\xaf";
    of_db_value p[2] = {{.type = OF_DB_BLOB, .p = blob, .len = n}, OF_DB_S(text)};
    assert_int_equal(of_db_exec(c, "INSERT INTO big (b, t) VALUES (?, ?)", p, 2), 1);
    int64_t id = of_db_last_insert_id(c);
    assert_true(id >= 1);
    /* A short row too, so the column's buffer is first sized for the long one and a later
     * fetch has to grow it. */
    of_db_value small[2] = {{.type = OF_DB_BLOB, .p = "ab", .len = 2}, OF_DB_S("x")};
    assert_int_equal(of_db_exec(c, "INSERT INTO big (b, t) VALUES (?, ?)", small, 2), 1);
    assert_int_equal(of_db_last_insert_id(c), id + 1);
    of_db_rows *r =
        of_db_query(c, "SELECT b, t, CHAR_LENGTH(t), LENGTH(b) FROM big ORDER BY id", NULL, 0);
    assert_non_null(r);
    assert_int_equal(of_db_rows_next(r), 1);
    of_db_value v;
    assert_int_equal(of_db_rows_get(r, 0, &v), 0);
    assert_int_equal(v.type, OF_DB_BLOB);
    assert_int_equal(v.len, n);
    assert_memory_equal(v.p, blob, n);
    assert_int_equal(of_db_rows_get(r, 1, &v), 0);
    assert_int_equal(v.type, OF_DB_TEXT);
    assert_string_equal(v.p, text);
    assert_int_equal(of_db_rows_get(r, 2, &v), 0);
    assert_int_equal(v.i, 27); /* characters, not bytes: the emoji is one */
    assert_int_equal(of_db_rows_get(r, 3, &v), 0);
    assert_int_equal(v.i, (int64_t)n);
    assert_int_equal(of_db_rows_next(r), 1);
    assert_int_equal(of_db_rows_get(r, 0, &v), 0);
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.p, "ab", 2);
    assert_int_equal(of_db_rows_next(r), 0);
    of_db_rows_free(r);

    /* Two long values in one row and rows in between: buffers grow past the first chunk. */
    r = of_db_query(c, "SELECT b, REPEAT('z', 200000) FROM big ORDER BY id DESC", NULL, 0);
    assert_non_null(r);
    assert_int_equal(of_db_rows_next(r), 1);
    assert_int_equal(of_db_rows_get(r, 0, &v), 0);
    assert_int_equal(v.len, 2);
    assert_int_equal(of_db_rows_get(r, 1, &v), 0);
    assert_int_equal(v.len, 200000);
    assert_int_equal(of_db_rows_next(r), 1);
    assert_int_equal(of_db_rows_get(r, 0, &v), 0);
    assert_int_equal(v.len, n);
    assert_memory_equal(v.p, blob, n);
    of_db_rows_free(r);
    free(blob);
    of_db_release(c);
}

static void test_injection_stored_verbatim(void **state)
{
    (void)state;
    of_db_conn *c = get();
    DBT_OK(c, of_db_exec_text(c, "CREATE TABLE inj (id INT AUTO_INCREMENT PRIMARY KEY, "
                                 "s VARCHAR(255))"));
    static const char *const evil[] = {
        "'; DROP TABLE inj; --",
        "Robert'); DROP TABLE inj;--",
        "\\'; DELETE FROM inj WHERE 1=1; #",
        "\" OR \"1\"=\"1",
        "1 OR 1=1",
        "?",
        "back\\slash and \\0 and %_ wildcards",
    };
    size_t n = sizeof(evil) / sizeof(evil[0]);
    for (size_t i = 0; i < n; i++) {
        of_db_value p = OF_DB_S(evil[i]);
        assert_int_equal(of_db_exec(c, "INSERT INTO inj (s) VALUES (?)", &p, 1), 1);
    }
    assert_int_equal(dbt_int(c, "SELECT COUNT(*) FROM inj", NULL, 0), (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        of_db_value p = OF_DB_S(evil[i]);
        assert_int_equal(dbt_int(c, "SELECT COUNT(*) FROM inj WHERE s = ?", &p, 1), 1);
        /* Text with an embedded NUL is given by length. */
    }
    of_db_value nul = OF_DB_SN("a\0b", 3);
    assert_int_equal(of_db_exec(c, "INSERT INTO inj (s) VALUES (?)", &nul, 1), 1);
    assert_int_equal(dbt_int(c, "SELECT LENGTH(s) FROM inj WHERE s = ?", &nul, 1), 3);
    of_db_release(c);
}

static void expect_err(of_db_conn *c, of_db_error want, unsigned int want_errno)
{
    const char *msg;
    of_db_error e = of_db_conn_error(c, &msg);
    if (e != want || (want_errno && of_db_conn_errno(c) != want_errno))
        fail_msg("got %s errno %u (%s), expected %s errno %u", of_db_error_name(e),
                 of_db_conn_errno(c), msg, of_db_error_name(want), want_errno);
}

static void test_error_mapping(void **state)
{
    (void)state;
    of_db_conn *c = get();
    DBT_OK(c, of_db_exec_text(c, "CREATE TABLE parent (id INT PRIMARY KEY, code VARCHAR(10) "
                                 "UNIQUE) ENGINE=InnoDB"));
    DBT_OK(c, of_db_exec_text(c, "CREATE TABLE child (id INT PRIMARY KEY, parent_id INT NOT NULL, "
                                 "qty INT CHECK (qty > 0), FOREIGN KEY (parent_id) REFERENCES "
                                 "parent(id)) ENGINE=InnoDB"));
    of_db_value p[2] = {OF_DB_I(1), OF_DB_S("A")};
    assert_int_equal(of_db_exec(c, "INSERT INTO parent VALUES (?, ?)", p, 2), 1);
    expect_err(c, OF_DB_OK, 0);
    assert_int_equal(of_db_exec(c, "INSERT INTO parent VALUES (?, ?)", p, 2), -1);
    expect_err(c, OF_DB_ERR_DUPLICATE, 1062);
    const char *msg;
    of_db_conn_error(c, &msg);
    assert_non_null(strstr(msg, "Duplicate entry"));
    assert_non_null(strstr(msg, "errno 1062"));

    of_db_value ch[3] = {OF_DB_I(1), OF_DB_I(77), OF_DB_I(1)};
    assert_int_equal(of_db_exec(c, "INSERT INTO child VALUES (?, ?, ?)", ch, 3), -1);
    expect_err(c, OF_DB_ERR_CONSTRAINT, 1452);
    ch[1] = OF_DB_NULLV;
    assert_int_equal(of_db_exec(c, "INSERT INTO child VALUES (?, ?, ?)", ch, 3), -1);
    expect_err(c, OF_DB_ERR_CONSTRAINT, 1048);
    ch[1] = OF_DB_I(1);
    ch[2] = OF_DB_I(-5);
    assert_int_equal(of_db_exec(c, "INSERT INTO child VALUES (?, ?, ?)", ch, 3), -1);
    expect_err(c, OF_DB_ERR_CONSTRAINT, 4025);
    ch[2] = OF_DB_I(5);
    assert_int_equal(of_db_exec(c, "INSERT INTO child VALUES (?, ?, ?)", ch, 3), 1);
    assert_int_equal(of_db_exec(c, "DELETE FROM parent WHERE id = 1", NULL, 0), -1);
    expect_err(c, OF_DB_ERR_CONSTRAINT, 1451);

    /* A bad statement, an unknown table, a parameter count that does not match. */
    assert_int_equal(of_db_exec(c, "SELEKT 1", NULL, 0), -1);
    expect_err(c, OF_DB_ERR_OTHER, 1064);
    assert_null(of_db_query(c, "SELECT * FROM no_such_table", NULL, 0));
    expect_err(c, OF_DB_ERR_OTHER, 1146);
    assert_int_equal(of_db_exec(c, "INSERT INTO parent VALUES (?, ?)", p, 1), -1);
    expect_err(c, OF_DB_ERR_OTHER, 0);
    of_db_conn_error(c, &msg);
    assert_non_null(strstr(msg, "2 placeholders but 1 parameter was given"));
    of_db_value weird = {.type = (of_db_type)42};
    assert_int_equal(of_db_exec(c, "SELECT ?", &weird, 1), -1);
    expect_err(c, OF_DB_ERR_OTHER, 0);
    assert_int_equal(of_db_exec(c, NULL, NULL, 0), -1);
    expect_err(c, OF_DB_ERR_OTHER, 0);
    /* A success clears the error; the connection is still fine after all that. */
    assert_int_equal(of_db_exec(c, "SELECT 1", NULL, 0), 1);
    expect_err(c, OF_DB_OK, 0);
    assert_false(of_db_conn_broken(c));
    of_db_release(c);
}

static void test_lock_wait_timeout(void **state)
{
    (void)state;
    of_db_conn *a = get(), *b = get();
    DBT_OK(a, of_db_exec_text(a, "CREATE TABLE lw (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"));
    DBT_OK(a, of_db_exec_text(a, "INSERT INTO lw VALUES (1, 0)"));
    DBT_OK(a, of_db_exec_text(a, "START TRANSACTION"));
    of_db_conn_set_in_tx(a, 1);
    DBT_OK(a, of_db_exec(a, "UPDATE lw SET v = 1 WHERE id = 1", NULL, 0));
    DBT_OK(b, of_db_exec_text(b, "SET SESSION innodb_lock_wait_timeout = 1"));
    assert_int_equal(of_db_exec(b, "UPDATE lw SET v = 2 WHERE id = 1", NULL, 0), -1);
    expect_err(b, OF_DB_ERR_TRANSIENT, 1205);
    DBT_OK(b, of_db_exec_text(b, "SET SESSION innodb_lock_wait_timeout = DEFAULT"));
    of_db_release(a); /* rolls the open transaction back */
    of_db_release(b);
    of_db_conn *c = get();
    assert_int_equal(dbt_int(c, "SELECT v FROM lw", NULL, 0), 0);
    of_db_release(c);
}

/* Statements the connection has prepared so far (its session's COM_STMT_PREPARE). */
static int64_t prepares(of_db_conn *c)
{
    return dbt_int(c,
                   "SELECT CAST(VARIABLE_VALUE AS SIGNED) FROM information_schema.SESSION_STATUS "
                   "WHERE VARIABLE_NAME = 'COM_STMT_PREPARE'",
                   NULL, 0);
}

/* "SELECT ? + ? + ... + <tag>" with n placeholders, each given 1: returns n + tag. */
static int64_t run_sum(of_db_conn *c, size_t n, int tag)
{
    char sql[4096];
    size_t len = (size_t)snprintf(sql, sizeof(sql), "SELECT ");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, "? + ");
    snprintf(sql + len, sizeof(sql) - len, "%d", tag);
    of_db_value p[2 * OF_DB_STMT_CACHE_MAX_PARAMS];
    assert_true(n <= 2 * OF_DB_STMT_CACHE_MAX_PARAMS);
    for (size_t i = 0; i < n; i++)
        p[i] = OF_DB_I(1);
    return dbt_int(c, sql, p, n);
}

/* A connection keeps OF_DB_STMT_CACHE_SIZE statements prepared, no more (each costs client
 * memory on every connection of the pool), and does not keep one with more placeholders than
 * OF_DB_STMT_CACHE_MAX_PARAMS, nor push a kept one out for it. */
static void test_statement_cache_bound(void **state)
{
    (void)state;
    of_db_conn *c = get();
    enum { S = OF_DB_STMT_CACHE_SIZE, BIG = OF_DB_STMT_CACHE_MAX_PARAMS + 1 };
    int64_t before = prepares(c); /* the counting statement takes one place */
    for (int i = 1; i < S; i++)
        assert_int_equal(run_sum(c, 1, i), 1 + i);
    int64_t full = prepares(c);
    assert_int_equal(full - before, S - 1);
    for (int i = 1; i < S; i++) /* all kept: no prepare */
        assert_int_equal(run_sum(c, 1, i), 1 + i);
    assert_int_equal(prepares(c), full);
    /* One more pushes the least recently used (tag 1) out. */
    assert_int_equal(run_sum(c, 1, 1000), 1001);
    assert_int_equal(run_sum(c, 1, 1), 2);
    int64_t after = prepares(c);
    assert_int_equal(after - full, 2);
    /* Too many placeholders: prepared each time it runs, and nothing pushed out for it. */
    assert_int_equal(run_sum(c, BIG, 0), BIG);
    assert_int_equal(run_sum(c, BIG, 0), BIG);
    assert_int_equal(prepares(c) - after, 2);
    for (int i = 3; i < S; i++)
        assert_int_equal(run_sum(c, 1, i), 1 + i);
    assert_int_equal(run_sum(c, 1, 1000), 1001);
    assert_int_equal(run_sum(c, 1, 1), 2);
    assert_int_equal(prepares(c) - after, 2);
    /* At the bound it is kept. */
    assert_int_equal(run_sum(c, BIG - 1, 0), BIG - 1);
    assert_int_equal(run_sum(c, BIG - 1, 0), BIG - 1);
    assert_int_equal(prepares(c) - after, 3);
    of_db_release(c);
}

static void test_statement_cache(void **state)
{
    (void)state;
    of_db_conn *c = get();
    /* More distinct statements than the cache holds, each used twice: evictions and hits. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 50; i++) {
            char sql[64];
            snprintf(sql, sizeof(sql), "SELECT ? + %d", i);
            of_db_value p = OF_DB_I(1000);
            assert_int_equal(dbt_int(c, sql, &p, 1), 1000 + i);
        }
    }
    /* The same statement while its result set is still open: a second one is prepared. */
    of_db_value p1 = OF_DB_I(1), p2 = OF_DB_I(2);
    of_db_rows *r1 = of_db_query(c, "SELECT ? AS x UNION ALL SELECT 10", &p1, 1);
    of_db_rows *r2 = of_db_query(c, "SELECT ? AS x UNION ALL SELECT 10", &p2, 1);
    assert_non_null(r1);
    assert_non_null(r2);
    of_db_value v;
    assert_int_equal(of_db_rows_next(r1), 1);
    assert_int_equal(of_db_rows_next(r2), 1);
    assert_int_equal(of_db_rows_get(r1, 0, &v), 0);
    assert_int_equal(v.i, 1);
    assert_int_equal(of_db_rows_get(r2, 0, &v), 0);
    assert_int_equal(v.i, 2);
    /* Another statement runs while both are open (results are read into memory). */
    assert_int_equal(of_db_exec(c, "DO 1", NULL, 0), 0);
    assert_int_equal(of_db_rows_next(r1), 1);
    assert_int_equal(of_db_rows_get(r1, 0, &v), 0);
    assert_int_equal(v.i, 10);
    of_db_rows_free(r2);
    /* The table a cached statement reads changes: the server prepares it again. */
    DBT_OK(c, of_db_exec_text(c, "CREATE TABLE cache_t (a INT)"));
    DBT_OK(c, of_db_exec_text(c, "INSERT INTO cache_t VALUES (5)"));
    assert_int_equal(dbt_int(c, "SELECT * FROM cache_t", NULL, 0), 5);
    DBT_OK(c, of_db_exec_text(c, "ALTER TABLE cache_t ADD COLUMN b INT DEFAULT 3 FIRST"));
    assert_int_equal(dbt_int(c, "SELECT * FROM cache_t", NULL, 0), 3);
    /* Released with r1 still open: freed by the release (with a warning). */
    of_db_release(c);
    c = get();
    assert_int_equal(dbt_int(c, "SELECT 7", NULL, 0), 7);
    of_db_release(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lazy_and_reuse),
        cmocka_unit_test(test_thread_gets_its_connection_back),
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_acquire_timeout),
        cmocka_unit_test(test_unavailable),
        cmocka_unit_test(test_broken_connection_replaced),
        cmocka_unit_test(test_value_types),
        cmocka_unit_test(test_big_blob_and_utf8),
        cmocka_unit_test(test_injection_stored_verbatim),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_lock_wait_timeout),
        cmocka_unit_test(test_statement_cache),
        cmocka_unit_test(test_statement_cache_bound),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
