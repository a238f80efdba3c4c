/* Helpers for the database tests: the project's MariaDB (scripts/services.sh, started when it
 * is down), and a database of the test program's own, orderflow_t<random>, dropped at the end.
 * Include after cmocka.h. */
#ifndef TEST_DB_UTIL_H
#define TEST_DB_UTIL_H

#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char dbt_name[64];

/* Reads `export NAME=value` lines of `services.sh env` into the environment (what is set
 * already wins, so a developer can point the tests elsewhere). */
static __attribute__((unused)) void dbt_load_env(void)
{
    FILE *f = popen("bash '" OF_SOURCE_DIR "/scripts/services.sh' env", "r");
    if (!f)
        return;
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "export ", 7) != 0)
            continue;
        char *name = line + 7, *eq = strchr(name, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *v = eq + 1, *out = v;
        for (char *s = v; *s && *s != '\n'; s++) {
            if (*s == '\\' && s[1])
                s++;
            else if (*s == '\'' || *s == '"')
                continue;
            *out++ = *s;
        }
        *out = '\0';
        setenv(name, v, 0);
    }
    pclose(f);
}

/* MariaDB must answer: started with services.sh when it does not (a test never skips). */
static __attribute__((unused)) void dbt_ensure_service(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    int rc = system("bash '" OF_SOURCE_DIR "/scripts/services.sh' status mariadb >/dev/null 2>&1 "
                    "|| bash '" OF_SOURCE_DIR "/scripts/services.sh' start mariadb >&2");
    if (rc != 0)
        fprintf(stderr, "test_db: starting MariaDB with services.sh failed (%d)\n", rc);
    dbt_load_env();
}

static __attribute__((unused)) const char *dbt_env(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* A configuration for `database` on the project's MariaDB (TCP). Free with
 * of_mysql_config_free. */
static __attribute__((unused)) void dbt_config(of_mysql_config *cfg, const char *database)
{
    of_mysql_config_defaults(cfg);
    cfg->enabled = 1;
    cfg->host = strdup(dbt_env("OF_MYSQL_HOST", "127.0.0.1"));
    cfg->port = atoi(dbt_env("OF_MYSQL_PORT", "13306"));
    cfg->user = strdup(dbt_env("OF_MYSQL_USER", "orderflow"));
    cfg->password = strdup(dbt_env("OF_MYSQL_PASSWORD", "orderflow"));
    cfg->database = strdup(database);
    cfg->pool_size = 4;
}

static __attribute__((unused)) of_db_pool *dbt_pool_for(const char *database, int pool_size)
{
    of_mysql_config cfg;
    dbt_config(&cfg, database);
    cfg.pool_size = pool_size;
    char err[512] = "";
    of_db_pool *p = of_db_pool_new(&cfg, err, sizeof(err));
    of_mysql_config_free(&cfg);
    if (!p)
        fprintf(stderr, "pool: %s\n", err);
    return p;
}

/* One statement on the base database (creating and dropping the test's own). */
static __attribute__((unused)) int dbt_admin(const char *sql)
{
    of_db_pool *p = dbt_pool_for(dbt_env("OF_MYSQL_DATABASE", "orderflow"), 1);
    char err[512] = "";
    of_db_conn *c = p ? of_db_acquire(p, err, sizeof(err)) : NULL;
    int rc = -1;
    if (c) {
        rc = of_db_exec_text(c, sql);
        if (rc != 0) {
            const char *msg;
            of_db_conn_error(c, &msg);
            fprintf(stderr, "%s: %s\n", sql, msg);
        }
        of_db_release(c);
    } else {
        fprintf(stderr, "admin connection: %s\n", err);
    }
    of_db_pool_free(p);
    return rc;
}

/* Creates orderflow_t<random> (dbt_name). 0 or -1. */
static __attribute__((unused)) int dbt_create_database(void)
{
    dbt_ensure_service();
    unsigned int seed =
        (unsigned int)time(NULL) ^ (unsigned int)getpid() ^ (unsigned int)(uintptr_t)&seed;
    srand(seed);
    snprintf(dbt_name, sizeof(dbt_name), "orderflow_t%08x%04x", (unsigned int)rand(),
             (unsigned int)getpid() & 0xffff);
    char sql[160];
    snprintf(sql, sizeof(sql), "CREATE DATABASE `%s` CHARACTER SET utf8mb4", dbt_name);
    return dbt_admin(sql);
}

static __attribute__((unused)) int dbt_drop_database(void)
{
    if (!dbt_name[0])
        return 0;
    char sql[160];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS `%s`", dbt_name);
    return dbt_admin(sql);
}

/* Fails the test with the connection's error. */
#define DBT_OK(c, expr)                                                                            \
    do {                                                                                           \
        if ((expr) < 0) {                                                                          \
            const char *m_;                                                                        \
            of_db_conn_error((c), &m_);                                                            \
            fail_msg("%s: %s", #expr, m_);                                                         \
        }                                                                                          \
    } while (0)

/* The first column of the first row as an integer (-1 when there is none). */
static __attribute__((unused)) int64_t dbt_int(of_db_conn *c, const char *sql,
                                               const of_db_value *params, size_t n)
{
    of_db_rows *r = of_db_query(c, sql, params, n);
    if (!r) {
        const char *m;
        of_db_conn_error(c, &m);
        fail_msg("%s: %s", sql, m);
    }
    int64_t v = -1;
    of_db_value out;
    if (of_db_rows_next(r) == 1 && of_db_rows_get(r, 0, &out) == 0 && out.type == OF_DB_INT)
        v = out.i;
    of_db_rows_free(r);
    return v;
}

/* dbt_int on a connection of the pool, for a query without parameters. */
static __attribute__((unused)) int64_t dbt_pool_int(of_db_pool *pool, const char *sql)
{
    char err[256];
    of_db_conn *c = of_db_acquire(pool, err, sizeof(err));
    if (!c)
        fail_msg("no connection: %s", err);
    int64_t v = dbt_int(c, sql, NULL, 0);
    of_db_release(c);
    return v;
}

static __attribute__((unused)) double dbt_elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1000.0 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* A database of the test's own with the host's schema (inbox, outbox) and, when table_sql is not
 * NULL, the test's table it creates, and a pool of pool_size on it; NULL (and a message) on
 * failure. Drop it with dbt_drop_database. */
static __attribute__((unused)) of_db_pool *dbt_host_schema_pool(int pool_size,
                                                                const char *table_sql)
{
    if (dbt_create_database() != 0)
        return NULL;
    of_db_pool *p = dbt_pool_for(dbt_name, pool_size);
    if (!p)
        return NULL;
    char err[512] = "";
    if (of_db_migrate(p, OF_DB_HOST_COMPONENT, of_db_host_migrations(), NULL, NULL, err,
                      sizeof(err)) != 0) {
        fprintf(stderr, "host migrations: %s\n", err);
        of_db_pool_free(p);
        return NULL;
    }
    if (table_sql) {
        of_db_conn *c = of_db_acquire(p, err, sizeof(err));
        int rc = c ? of_db_exec_text(c, table_sql) : -1;
        of_db_release(c);
        if (rc != 0) {
            fprintf(stderr, "%s: failed\n", table_sql);
            of_db_pool_free(p);
            return NULL;
        }
    }
    return p;
}

#endif
