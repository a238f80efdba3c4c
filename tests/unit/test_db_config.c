/* The host configuration's `mysql:` section (of_mysql_config_parse). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static of_diag d;
static of_mysql_config cfg;
static of_ydoc *doc;
static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    of_diag_init(&d);
    of_mysql_config_defaults(&cfg);
    doc = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    of_diag_free(&d);
    of_mysql_config_free(&cfg);
    of_ydoc_free(doc);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/of_dbcfg_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void dump(void)
{
    for (size_t i = 0; i < d.count; i++)
        fprintf(stderr, "  diag %s %d:%d %s\n",
                d.entries[i].severity == OF_SEV_ERROR ? "error" : "warning", d.entries[i].line,
                d.entries[i].column, d.entries[i].message);
}

/* Parses the `mysql:` value of a YAML text. */
static void parse(const char *yaml)
{
    doc = of_ydoc_load_buffer("orderflow.yaml", yaml, strlen(yaml), &d);
    if (!doc) {
        dump();
        fail_msg("YAML did not load");
    }
    of_mysql_config_parse(&cfg, of_ymap_get(doc->root, "mysql"), tmpdir, "orderflow.yaml", &d);
}

static void expect_diag(of_severity sev, const char *needle, int line, int column)
{
    for (size_t i = 0; i < d.count; i++) {
        if (strstr(d.entries[i].message, needle)) {
            if (d.entries[i].severity != sev || d.entries[i].line != line ||
                d.entries[i].column != column)
                fail_msg("'%s' (%s) at %d:%d, expected %s at %d:%d", d.entries[i].message,
                         d.entries[i].severity == OF_SEV_ERROR ? "error" : "warning",
                         d.entries[i].line, d.entries[i].column,
                         sev == OF_SEV_ERROR ? "error" : "warning", line, column);
            if (strcmp(d.entries[i].file, "orderflow.yaml") != 0)
                fail_msg("diagnostic in file '%s'", d.entries[i].file);
            return;
        }
    }
    dump();
    fail_msg("no diagnostic containing '%s'", needle);
}

static void no_secret_in_diags(const char *secret)
{
    for (size_t i = 0; i < d.count; i++)
        if (strstr(d.entries[i].message, secret))
            fail_msg("the secret appears in '%s'", d.entries[i].message);
}

static void test_full(void **state)
{
    (void)state;
    setenv("OF_TEST_DB_PW", "s3cr3t-from-env", 1);
    parse("mysql:\n"
          "  host: db.internal\n"
          "  port: 3307\n"
          "  user: orders\n"
          "  password: ${OF_TEST_DB_PW}\n"
          "  database: orders_prod\n"
          "  pool_size: 16\n"
          "  connect_timeout: 2s\n"
          "  read_timeout: 1m\n"
          "  write_timeout: 1500ms\n"
          "  acquire_timeout: 250ms\n");
    if (d.count)
        dump();
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.warnings, 0);
    assert_true(cfg.enabled);
    assert_string_equal(cfg.host, "db.internal");
    assert_int_equal(cfg.port, 3307);
    assert_null(cfg.socket);
    assert_string_equal(cfg.user, "orders");
    assert_string_equal(cfg.password, "s3cr3t-from-env");
    assert_string_equal(cfg.database, "orders_prod");
    assert_int_equal(cfg.pool_size, 16);
    assert_int_equal(cfg.connect_timeout_ms, 2000);
    assert_int_equal(cfg.read_timeout_ms, 60000);
    assert_int_equal(cfg.write_timeout_ms, 1500);
    assert_int_equal(cfg.acquire_timeout_ms, 250);
}

static void test_defaults(void **state)
{
    (void)state;
    parse("mysql:\n  user: u\n  database: db\n");
    assert_int_equal(d.count, 0);
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 3306);
    assert_null(cfg.socket);
    assert_null(cfg.password);
    assert_int_equal(cfg.pool_size, 8);
    assert_int_equal(cfg.connect_timeout_ms, 5000);
    assert_int_equal(cfg.read_timeout_ms, 30000);
    assert_int_equal(cfg.write_timeout_ms, 30000);
    assert_int_equal(cfg.acquire_timeout_ms, 5000);
}

static void test_required_and_unknown(void **state)
{
    (void)state;
    parse("log: {level: info}\n"
          "mysql:\n"
          "  hots: db\n"
          "  pool_size: 8\n");
    expect_diag(OF_SEV_ERROR, "unknown key 'hots' in mysql (did you mean 'host'?)", 3, 3);
    expect_diag(OF_SEV_ERROR, "mysql needs 'user'", 3, 3);
    expect_diag(OF_SEV_ERROR, "mysql needs 'database'", 3, 3);
    assert_int_equal(d.errors, 3);
}

static void test_not_a_mapping(void **state)
{
    (void)state;
    parse("mysql: [a, b]\n");
    expect_diag(OF_SEV_ERROR, "'mysql' must be a mapping", 1, 8);
}

static void test_bad_values(void **state)
{
    (void)state;
    parse("mysql:\n"
          "  user: u\n"
          "  database: db\n"
          "  port: 70000\n"
          "  pool_size: 0\n"
          "  connect_timeout: 5\n"
          "  read_timeout: [1s]\n"
          "  write_timeout: 2h\n"
          "  host: \"\"\n");
    expect_diag(OF_SEV_ERROR, "mysql 'port' must be 1..65535; got 70000", 4, 9);
    expect_diag(OF_SEV_ERROR, "mysql 'pool_size' must be 1..256; got 0", 5, 14);
    expect_diag(OF_SEV_ERROR, "mysql 'connect_timeout':", 6, 20);
    expect_diag(OF_SEV_ERROR, "mysql 'read_timeout' must be a duration", 7, 17);
    expect_diag(OF_SEV_ERROR, "mysql 'write_timeout' must be 1ms..1h; got 2h", 8, 18);
    expect_diag(OF_SEV_ERROR, "mysql 'host' must be a non-empty string", 9, 9);
    assert_int_equal(d.errors, 6);

    of_diag_free(&d);
    of_diag_init(&d);
    of_mysql_config_free(&cfg);
    of_ydoc_free(doc);
    parse("mysql:\n  user: u\n  database: db\n  pool_size: 257\n  port: abc\n");
    expect_diag(OF_SEV_ERROR, "mysql 'pool_size' must be 1..256; got 257", 4, 14);
    expect_diag(OF_SEV_ERROR, "mysql 'port' must be an integer 1..65535; got 'abc'", 5, 9);
}

static void test_socket_wins(void **state)
{
    (void)state;
    parse("mysql:\n"
          "  socket: /run/mysqld/mysqld.sock\n"
          "  host: db\n"
          "  user: u\n"
          "  database: db\n");
    assert_int_equal(d.errors, 0);
    assert_string_equal(cfg.socket, "/run/mysqld/mysqld.sock");
    expect_diag(OF_SEV_WARNING, "mysql 'host' is ignored: 'socket' is set", 3, 3);
}

static void test_secret_never_printed(void **state)
{
    (void)state;
    parse("mysql:\n"
          "  user: u\n"
          "  database: db\n"
          "  password: hunter2-secret\n"
          "  password_file: /nonexistent\n");
    expect_diag(OF_SEV_ERROR, "give either 'password' or 'password_file', not both", 5, 3);
    no_secret_in_diags("hunter2");

    of_diag_free(&d);
    of_diag_init(&d);
    of_mysql_config_free(&cfg);
    of_ydoc_free(doc);
    parse("mysql:\n  user: u\n  database: db\n  password: {value: hunter2-secret}\n");
    expect_diag(OF_SEV_ERROR, "mysql 'password' must be a string; got a mapping", 4, 13);
    no_secret_in_diags("hunter2");
}

static void write_file(const char *name, const char *content, mode_t mode)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_password_file(void **state)
{
    (void)state;
    write_file("pw", "from-a-file\n", 0600);
    /* Relative to the configuration's folder. */
    parse("mysql:\n  user: u\n  database: db\n  password_file: pw\n");
    if (d.count)
        dump();
    assert_int_equal(d.count, 0);
    assert_string_equal(cfg.password, "from-a-file");

    of_diag_free(&d);
    of_diag_init(&d);
    of_mysql_config_free(&cfg);
    of_ydoc_free(doc);
    write_file("pw_open", "open-secret\r\n", 0644);
    parse("mysql:\n  user: u\n  database: db\n  password_file: pw_open\n");
    assert_int_equal(d.errors, 0);
    expect_diag(OF_SEV_WARNING, "is readable by other users (mode 644)", 4, 18);
    assert_string_equal(cfg.password, "open-secret");
    no_secret_in_diags("open-secret");

    of_diag_free(&d);
    of_diag_init(&d);
    of_mysql_config_free(&cfg);
    of_ydoc_free(doc);
    write_file("pw_two", "line-one\nline-two\n", 0600);
    write_file("pw_empty", "\n", 0600);
    parse("mysql:\n  user: u\n  database: db\n  password_file: missing\n");
    expect_diag(OF_SEV_ERROR, "/missing' cannot be read: No such file or directory", 4, 18);
    of_diag_free(&d);
    of_diag_init(&d);
    of_mysql_config_free(&cfg);
    of_ydoc_free(doc);
    parse("mysql:\n  user: u\n  database: db\n  password_file: pw_two\n");
    expect_diag(OF_SEV_ERROR, "must hold the password on one line", 4, 18);
    no_secret_in_diags("line-one");
    of_diag_free(&d);
    of_diag_init(&d);
    of_mysql_config_free(&cfg);
    of_ydoc_free(doc);
    parse("mysql:\n  user: u\n  database: db\n  password_file: pw_empty\n");
    expect_diag(OF_SEV_ERROR, "is empty", 4, 18);
}

static void test_free_resets(void **state)
{
    (void)state;
    parse("mysql:\n  user: u\n  database: db\n  password: x\n");
    of_mysql_config_free(&cfg);
    assert_null(cfg.user);
    assert_null(cfg.password);
    assert_int_equal(cfg.enabled, 0);
    assert_int_equal(cfg.pool_size, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_required_and_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_never_printed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_resets, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
