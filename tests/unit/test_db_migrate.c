/* Schema migrations, against the project's MariaDB (own database per run). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_db_util.h"

#include <pthread.h>

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

/* What the callback saw, as "component version name" lines. */
static char seen[4096];
static int n_seen;

static void on_applied(void *opaque, const char *component, const of_migration *m)
{
    (void)opaque;
    n_seen++;
    size_t len = strlen(seen);
    snprintf(seen + len, sizeof(seen) - len, "%s %d %s\n", component, m->version, m->name);
}

static int64_t q(const char *sql, const of_db_value *p, size_t n)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    if (!c)
        fail_msg("acquire: %s", err);
    int64_t v = dbt_int(c, sql, p, n);
    of_db_release(c);
    return v;
}

static int64_t recorded(const char *component)
{
    of_db_value p = OF_DB_S(component);
    return q("SELECT COUNT(*) FROM of_schema_migrations WHERE component = ?", &p, 1);
}

/* The number applied, or -1. */
static int migrate(const char *component, const of_migration *migs, char *err, size_t size)
{
    seen[0] = '\0';
    n_seen = 0;
    err[0] = '\0';
    int rc = of_db_migrate(pool, component, migs, on_applied, NULL, err, size);
    assert_true(rc == 0 || rc == -1);
    return rc == 0 ? n_seen : -1;
}

static const of_migration shop_v2[] = {
    {1, "create items",
     "CREATE TABLE items (\n"
     "  id INT PRIMARY KEY,\n"
     "  name VARCHAR(50) NOT NULL\n"
     ")"},
    {2, "seed items",
     "INSERT INTO items VALUES (1, 'semi;colon');  \n"
     "INSERT INTO items VALUES (2, 'two')\n"},
    {0, NULL, NULL},
};

static const of_migration shop_v3[] = {
    {1, "create items",
     "CREATE TABLE items (\n"
     "  id INT PRIMARY KEY,\n"
     "  name VARCHAR(50) NOT NULL\n"
     ")"},
    {2, "seed items",
     "INSERT INTO items VALUES (1, 'semi;colon');  \n"
     "INSERT INTO items VALUES (2, 'two')\n"},
    {3, "add price",
     "ALTER TABLE items ADD COLUMN price INT NOT NULL DEFAULT 0;\n"
     "UPDATE items SET price = 5;\n"},
    {0, NULL, NULL},
};

static void test_apply_once_in_order(void **state)
{
    (void)state;
    char err[512];
    int n = migrate("shop", shop_v2, err, sizeof(err));
    if (n < 0)
        fail_msg("%s", err);
    assert_int_equal(n, 2);
    assert_string_equal(seen, "shop 1 create items\nshop 2 seed items\n");
    assert_int_equal(recorded("shop"), 2);
    assert_int_equal(q("SELECT COUNT(*) FROM items", NULL, 0), 2);
    of_db_value name = OF_DB_S("semi;colon");
    assert_int_equal(q("SELECT id FROM items WHERE name = ?", &name, 1), 1);
    /* The checksum is the SHA-256 of the SQL. */
    char sum[65];
    of_sha256_hex(shop_v2[1].sql, strlen(shop_v2[1].sql), sum);
    of_db_value p[2] = {OF_DB_S("shop"), OF_DB_S(sum)};
    assert_int_equal(
        q("SELECT version FROM of_schema_migrations WHERE component = ? AND checksum = ?", p, 2),
        2);

    /* Again: nothing to do. */
    n = migrate("shop", shop_v2, err, sizeof(err));
    assert_int_equal(n, 0);
    assert_string_equal(seen, "");
    assert_int_equal(q("SELECT COUNT(*) FROM items", NULL, 0), 2);

    /* A release with one more migration applies only that one. */
    n = migrate("shop", shop_v3, err, sizeof(err));
    if (n < 0)
        fail_msg("%s", err);
    assert_int_equal(n, 1);
    assert_string_equal(seen, "shop 3 add price\n");
    assert_int_equal(q("SELECT CAST(SUM(price) AS SIGNED) FROM items", NULL, 0), 10);
    assert_int_equal(recorded("shop"), 3);

    /* An older build (knows 1..2) runs against it: a warning, no error. */
    assert_int_equal(migrate("shop", shop_v2, err, sizeof(err)), 0);
}

static void test_changed_checksum_refused(void **state)
{
    (void)state;
    char err[512];
    const of_migration v1[] = {{1, "create c1", "CREATE TABLE c1 (a INT)"}, {0, NULL, NULL}};
    assert_int_equal(migrate("chk", v1, err, sizeof(err)), 1);
    const of_migration edited[] = {{1, "create c1", "CREATE TABLE c1 (a BIGINT)"},
                                   {2, "create c2", "CREATE TABLE c2 (a INT)"},
                                   {0, NULL, NULL}};
    assert_int_equal(migrate("chk", edited, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "chk: migration 1 'create c1' was changed after it was applied"));
    /* Nothing after it ran. */
    assert_string_equal(seen, "");
    assert_int_equal(recorded("chk"), 1);
    assert_int_equal(q("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
                       "DATABASE() AND table_name = 'c2'",
                       NULL, 0),
                     0);
    /* Another component with the same versions is independent. */
    assert_int_equal(migrate("chk2", (const of_migration[]){{1, "x", "DO 1"}, {0, NULL, NULL}}, err,
                             sizeof(err)),
                     1);
}

static void test_bad_arrays_refused(void **state)
{
    (void)state;
    char err[512];
    const of_migration gap[] = {{1, "a", "DO 1"}, {3, "c", "DO 3"}, {0, NULL, NULL}};
    assert_int_equal(migrate("gappy", gap, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "gappy: migration versions must be 1, 2, 3 ... without gaps"));
    const of_migration same[] = {{1, "a", "DO 1"}, {1, "b", "DO 2"}, {0, NULL, NULL}};
    assert_int_equal(migrate("gappy", same, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "must increase"));
    /* Refused before anything ran. */
    assert_int_equal(recorded("gappy"), 0);
    /* An empty array or none: nothing to do. */
    const of_migration none[] = {{0, NULL, NULL}};
    assert_int_equal(migrate("empty", none, err, sizeof(err)), 0);
    assert_int_equal(migrate("empty", NULL, err, sizeof(err)), 0);
}

static void test_failed_migration_not_recorded(void **state)
{
    (void)state;
    char err[512];
    const of_migration broken[] = {
        {1, "make f1", "CREATE TABLE IF NOT EXISTS f1 (a INT);\nINSERT INTO nope VALUES (1);\n"},
        {2, "later", "CREATE TABLE f2 (a INT)"},
        {0, NULL, NULL}};
    assert_int_equal(migrate("fail", broken, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "fail: migration 1 'make f1' failed at statement 2"));
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(recorded("fail"), 0);
    /* Fixed (a new build before it ever applied): runs from the start. */
    const of_migration fixed[] = {
        {1, "make f1", "CREATE TABLE IF NOT EXISTS f1 (a INT);\nINSERT INTO f1 VALUES (1);\n"},
        {2, "later", "CREATE TABLE f2 (a INT)"},
        {0, NULL, NULL}};
    assert_int_equal(migrate("fail", fixed, err, sizeof(err)), 2);
    assert_int_equal(q("SELECT COUNT(*) FROM f1", NULL, 0), 1);
}

typedef struct racer {
    const of_migration *migs;
    int rc;
    int applied;
    char err[512];
} racer;

static void count_applied(void *opaque, const char *component, const of_migration *m)
{
    (void)component;
    (void)m;
    ((racer *)opaque)->applied++;
}

static void *race(void *opaque)
{
    racer *r = opaque;
    /* Each thread is a host of its own: its own pool. */
    of_db_pool *p = dbt_pool_for(dbt_name, 2);
    r->rc = p ? of_db_migrate(p, "race", r->migs, count_applied, r, r->err, sizeof(r->err)) : -1;
    of_db_pool_free(p);
    return NULL;
}

static void test_two_hosts_at_once(void **state)
{
    (void)state;
    static const of_migration migs[] = {
        {1, "create log", "CREATE TABLE race_log (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"},
        {2, "slow", "DO SLEEP(0.4)"},
        {3, "insert", "INSERT INTO race_log (v) VALUES (3)"},
        {4, "insert again", "INSERT INTO race_log (v) VALUES (4);\nDO SLEEP(0.2);\n"},
        {5, "alter", "ALTER TABLE race_log ADD COLUMN w INT"},
        {0, NULL, NULL},
    };
    racer a = {.migs = migs}, b = {.migs = migs};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, race, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, race, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    if (a.rc < 0)
        fail_msg("host a: %s", a.err);
    if (b.rc < 0)
        fail_msg("host b: %s", b.err);
    /* Each migration ran exactly once, on one of them. */
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(a.applied + b.applied, 5);
    assert_true(a.applied == 0 || b.applied == 0);
    assert_int_equal(recorded("race"), 5);
    assert_int_equal(q("SELECT COUNT(*) FROM race_log", NULL, 0), 2);
}

static void add_fake(of_plugin_registry *reg, const char *name, const of_migration *migs,
                     int abi_1_0)
{
    of_stage_descriptor *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->abi_major = 1;
    d->abi_minor = abi_1_0 ? 0 : 1;
    d->struct_size = abi_1_0 ? (uint32_t)offsetof(of_stage_descriptor, flags)
                             : (uint32_t)sizeof(of_stage_descriptor);
    d->name = name;
    d->migrations = migs; /* a 1.0 descriptor's slot beyond struct_size is never read */
    of_plugin *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->name = strdup(name);
    p->desc = d;
    char err[256];
    assert_int_equal(of_registry_add(reg, p, err, sizeof(err)), 0);
}

static void free_fakes(of_plugin_registry *reg)
{
    for (size_t i = 0; i < reg->count; i++)
        free((void *)reg->plugins[i]->desc);
    of_registry_free(reg);
}

static void test_migrate_all(void **state)
{
    (void)state;
    static const of_migration orders[] = {
        {1, "create orders", "CREATE TABLE orders (id INT PRIMARY KEY)"},
        {2, "seed orders", "INSERT INTO orders VALUES (1)"},
        {0, NULL, NULL}};
    static const of_migration pay[] = {{1, "create pay", "CREATE TABLE pay (id INT)"},
                                       {0, NULL, NULL}};
    static const of_migration never[] = {{1, "never", "CREATE TABLE never_made (id INT)"},
                                         {0, NULL, NULL}};
    of_plugin_registry reg;
    of_registry_init(&reg);
    add_fake(&reg, "orders", orders, 0);
    add_fake(&reg, "nodb", NULL, 0);
    add_fake(&reg, "old", never, 1);
    add_fake(&reg, "pay", pay, 0);
    char err[512] = "";
    seen[0] = '\0';
    n_seen = 0;
    int n = of_db_migrate_all(pool, &reg, on_applied, NULL, err, sizeof(err));
    if (n != 0)
        fail_msg("%s", err);
    assert_int_equal(n_seen, 6);
    assert_string_equal(seen, "orderflow 1 create inbox\n"
                              "orderflow 2 create outbox\n"
                              "orderflow 3 outbox parking\n"
                              "orders 1 create orders\n"
                              "orders 2 seed orders\n"
                              "pay 1 create pay\n");
    assert_int_equal(q("SELECT COUNT(*) FROM of_inbox", NULL, 0), 0);
    assert_int_equal(q("SELECT COUNT(*) FROM of_outbox", NULL, 0), 0);
    assert_int_equal(recorded("old"), 0);
    seen[0] = '\0';
    assert_int_equal(of_db_migrate_all(pool, &reg, on_applied, NULL, err, sizeof(err)), 0);
    assert_string_equal(seen, "");
    free_fakes(&reg);

    /* A plugin with a bad array stops everything before it starts. */
    static const of_migration bad[] = {{2, "x", "DO 1"}, {0, NULL, NULL}};
    of_registry_init(&reg);
    add_fake(&reg, "late", pay, 0);
    add_fake(&reg, "bad", bad, 0);
    assert_int_equal(of_db_migrate_all(pool, &reg, on_applied, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad: migration versions"));
    assert_int_equal(recorded("late"), 0);
    free_fakes(&reg);
}

static void test_unavailable(void **state)
{
    (void)state;
    of_mysql_config cfg;
    dbt_config(&cfg, dbt_name);
    cfg.port = 1;
    char err[512] = "";
    of_db_pool *p = of_db_pool_new(&cfg, err, sizeof(err));
    of_mysql_config_free(&cfg);
    assert_non_null(p);
    assert_int_equal(of_db_migrate_all(p, NULL, NULL, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "database unavailable"));
    of_db_pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_once_in_order),
        cmocka_unit_test(test_changed_checksum_refused),
        cmocka_unit_test(test_bad_arrays_refused),
        cmocka_unit_test(test_failed_migration_not_recorded),
        cmocka_unit_test(test_two_hosts_at_once),
        cmocka_unit_test(test_migrate_all),
        cmocka_unit_test(test_unavailable),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
