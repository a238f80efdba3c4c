/* The connection pool and statement execution (MariaDB Connector/C, prepared statements).
 *
 * Locks: the pool's `mu` guards its idle list and counts; connecting, pinging and closing
 * happen outside it. A connection belongs to the thread that acquired it, so its statement
 * cache and result sets need no lock. */
#include "db.h"

#include "log.h"
#include "metrics.h"
#include "timeutil.h"

#include <mysql.h>
#include <errmsg.h>
#include <mysqld_error.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prepared statements kept per connection (least recently used one evicted; see db.h). */
#define STMT_CACHE_SIZE OF_DB_STMT_CACHE_SIZE
/* A connection idle for longer is pinged before it is handed out. */
#define IDLE_PING_MS 30000
/* A connection released this recently is trusted to be alive: a transaction on it starts with
 * its first statement instead of a START TRANSACTION round trip (of_db_conn_begin). */
#define HOT_MS 1000
/* A result column's first buffer is at most this big; longer values are fetched with
 * mysql_stmt_fetch_column into a buffer grown to fit. */
#define COLUMN_BUF_MAX (64u * 1024u)

typedef struct stmt_entry {
    char *sql; /* NULL: free slot */
    MYSQL_STMT *stmt;
    uint64_t used; /* LRU tick */
    int busy;      /* held by an open result set */
} stmt_entry;

struct of_db_rows {
    of_db_conn *conn;
    MYSQL_STMT *stmt;
    int cached; /* stmt belongs to the connection's cache (slot busy) */
    unsigned int n_cols;
    MYSQL_FIELD *fields; /* from the metadata result */
    MYSQL_RES *meta;
    MYSQL_BIND *binds;
    of_db_type *types;
    unsigned long *lengths;
    my_bool *nulls;
    my_bool *errors;
    int64_t *ints;
    double *doubles;
    char **bufs;
    size_t *caps;
    unsigned char *own; /* bufs[i] grew into an allocation of its own */
    void *cols;         /* the arrays above and the first text buffers, one allocation */
    int has_row;
    int drop_stmt;                  /* the statement failed: close it instead of caching it */
    struct of_db_rows *next, *prev; /* the connection's open result sets */
};

struct of_db_conn {
    of_db_pool *pool;
    MYSQL *mysql;
    int broken;
    int dedicated;
    int in_tx;
    int64_t idle_since_ms;
    stmt_entry cache[STMT_CACHE_SIZE];
    uint64_t tick;
    of_db_rows *rows; /* open result sets */
    int64_t last_insert_id;
    int returning;      /* the server takes INSERT ... RETURNING (MariaDB 10.5 and later) */
    int autocommit_off; /* left in autocommit=0 by a transaction (of_db_conn_begin) */
    of_db_error err;
    unsigned int sql_errno;
    char msg[512];
    of_db_conn *next_idle;
};

struct of_db_pool {
    of_mysql_config cfg; /* own copy */
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* CLOCK_MONOTONIC: a connection was released or a slot freed */
    atomic_int no_returning; /* of_db_pool_set_returning(pool, 0) */
    of_db_conn *idle;
    int n_idle;
    int n_open; /* idle + in use + being connected */
    uint64_t acquired, connect_failures, replaced, timeouts, waits;
    /* The outbox backlog as last queried for /metrics (under mu); backlog_busy: a scrape is
     * querying it (others report the last values meanwhile). */
    int64_t backlog_at_ms;
    double backlog_n, backlog_age;
    int backlog_known, backlog_busy;
};

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

int of_db_errno_is_connection(unsigned int e)
{
    switch (e) {
    case CR_SOCKET_CREATE_ERROR:
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_IPSOCK_ERROR:
    case CR_UNKNOWN_HOST:
    case CR_SERVER_GONE_ERROR:
    case CR_TCP_CONNECTION:
    case CR_SERVER_HANDSHAKE_ERR:
    case CR_SERVER_LOST:
    case CR_COMMANDS_OUT_OF_SYNC:
    case CR_SSL_CONNECTION_ERROR:
    case CR_MALFORMED_PACKET:
    case CR_SERVER_LOST_EXTENDED:
    case CR_ERR_NET_READ:
    case CR_ERR_NET_WRITE:
    case ER_CON_COUNT_ERROR:         /* 1040 too many connections */
    case ER_ACCESS_DENIED_ERROR:     /* 1045 */
    case ER_DBACCESS_DENIED_ERROR:   /* 1044 */
    case ER_SERVER_SHUTDOWN:         /* 1053 */
    case ER_ABORTING_CONNECTION:     /* 1152 */
    case ER_NEW_ABORTING_CONNECTION: /* 1184 */
    case ER_CONNECTION_KILLED:       /* 1927 */
        return 1;
    default:
        return 0;
    }
}

of_db_error of_db_map_errno(unsigned int e)
{
    switch (e) {
    case 0:
        return OF_DB_OK;
    case 1062: /* ER_DUP_ENTRY */
    case 1022: /* ER_DUP_KEY */
    case 1586: /* ER_DUP_ENTRY_WITH_KEY_NAME */
        return OF_DB_ERR_DUPLICATE;
    case 1451: /* ER_ROW_IS_REFERENCED_2 */
    case 1452: /* ER_NO_REFERENCED_ROW_2 */
    case 1216: /* ER_NO_REFERENCED_ROW */
    case 1217: /* ER_ROW_IS_REFERENCED */
    case 1048: /* ER_BAD_NULL_ERROR */
    case 1364: /* ER_NO_DEFAULT_FOR_FIELD */
    case 3819: /* ER_CHECK_CONSTRAINT_VIOLATED (MySQL) */
    case 4025: /* ER_CONSTRAINT_FAILED (MariaDB) */
        return OF_DB_ERR_CONSTRAINT;
    case 1213: /* ER_LOCK_DEADLOCK */
    case 1205: /* ER_LOCK_WAIT_TIMEOUT */
        return OF_DB_ERR_TRANSIENT;
    default:
        return of_db_errno_is_connection(e) ? OF_DB_ERR_UNAVAILABLE : OF_DB_ERR_OTHER;
    }
}

const char *of_db_error_name(of_db_error e)
{
    switch (e) {
    case OF_DB_OK:
        return "ok";
    case OF_DB_ERR_DUPLICATE:
        return "duplicate";
    case OF_DB_ERR_CONSTRAINT:
        return "constraint";
    case OF_DB_ERR_TRANSIENT:
        return "transient";
    case OF_DB_ERR_UNAVAILABLE:
        return "unavailable";
    case OF_DB_ERR_OTHER:
        return "other";
    case OF_DB_ERR_NOT_CONFIGURED:
        return "not configured";
    }
    return "unknown";
}

static void clear_error(of_db_conn *c)
{
    c->err = OF_DB_OK;
    c->sql_errno = 0;
    c->msg[0] = '\0';
}

void of_db_conn_set_error(of_db_conn *c, of_db_error e, unsigned int sql_errno, const char *fmt,
                          ...)
{
    if (!c)
        return;
    c->err = e;
    c->sql_errno = sql_errno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
}

static void set_server_error(of_db_conn *c, unsigned int e, const char *message)
{
    of_db_conn_set_error(c, of_db_map_errno(e), e, "%s (errno %u)",
                         message && *message ? message : "unknown error", e);
    if (of_db_errno_is_connection(e))
        c->broken = 1;
}

static void set_stmt_error(of_db_conn *c, MYSQL_STMT *st)
{
    set_server_error(c, mysql_stmt_errno(st), mysql_stmt_error(st));
}

static void set_mysql_error(of_db_conn *c)
{
    set_server_error(c, mysql_errno(c->mysql), mysql_error(c->mysql));
}

of_db_error of_db_conn_error(const of_db_conn *c, const char **message)
{
    if (message)
        *message = c ? c->msg : "no connection";
    return c ? c->err : OF_DB_ERR_UNAVAILABLE;
}

unsigned int of_db_conn_errno(const of_db_conn *c)
{
    return c ? c->sql_errno : 0;
}

int of_db_conn_broken(const of_db_conn *c)
{
    return c ? c->broken : 1;
}

void of_db_conn_set_in_tx(of_db_conn *c, int in_tx)
{
    if (c)
        c->in_tx = in_tx;
}

int of_db_conn_returning(const of_db_conn *c)
{
    return c && c->returning && !atomic_load(&c->pool->no_returning);
}

void of_db_pool_set_returning(of_db_pool *pool, int on)
{
    if (pool)
        atomic_store(&pool->no_returning, !on);
}

int64_t of_db_last_insert_id(const of_db_conn *c)
{
    return c ? c->last_insert_id : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_ok;

static void lib_init(void)
{
    lib_ok = mysql_library_init(0, NULL, NULL) == 0;
}

static unsigned int secs_up(int64_t ms)
{
    if (ms <= 0)
        return 1;
    int64_t s = (ms + 999) / 1000;
    return s > 86400 ? 86400u : (unsigned int)s;
}

static void describe_target(const of_mysql_config *cfg, char *buf, size_t size)
{
    if (cfg->socket)
        snprintf(buf, size, "socket %s", cfg->socket);
    else
        snprintf(buf, size, "%s:%d", cfg->host ? cfg->host : "127.0.0.1", cfg->port);
}

static void stmt_cache_clear(of_db_conn *c)
{
    for (size_t i = 0; i < STMT_CACHE_SIZE; i++) {
        if (c->cache[i].stmt)
            mysql_stmt_close(c->cache[i].stmt);
        free(c->cache[i].sql);
        memset(&c->cache[i], 0, sizeof(c->cache[i]));
    }
}

static void conn_close(of_db_conn *c)
{
    if (!c)
        return;
    while (c->rows)
        of_db_rows_free(c->rows);
    stmt_cache_clear(c);
    if (c->mysql)
        mysql_close(c->mysql);
    free(c);
}

/* Opens one connection (bounded by connect_timeout). NULL with errstr. */
static of_db_conn *conn_open(of_db_pool *p, int64_t read_timeout_ms, char *errstr,
                             size_t errstr_size)
{
    const of_mysql_config *cfg = &p->cfg;
    char target[300];
    describe_target(cfg, target, sizeof(target));
    pthread_once(&lib_once, lib_init);
    if (!lib_ok) {
        of_seterr(errstr, errstr_size, "database unavailable: the client library failed to start");
        return NULL;
    }
    of_db_conn *c = calloc(1, sizeof(*c));
    MYSQL *m = c ? mysql_init(NULL) : NULL;
    if (!m) {
        free(c);
        of_seterr(errstr, errstr_size, "database unavailable: out of memory");
        return NULL;
    }
    c->pool = p;
    c->mysql = m;
    unsigned int ct = secs_up(cfg->connect_timeout_ms);
    unsigned int rt = secs_up(read_timeout_ms > 0 ? read_timeout_ms : cfg->read_timeout_ms);
    unsigned int wt = secs_up(cfg->write_timeout_ms);
    my_bool no = 0;
    unsigned int proto = cfg->socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
    mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &rt);
    mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &wt);
    mysql_options(m, MYSQL_OPT_RECONNECT, &no);
    mysql_options(m, MYSQL_OPT_PROTOCOL, &proto);
    mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    /* TIMESTAMP columns (the inbox, the outbox) read and written in UTC; a lock wait ends
     * (1205, TRANSIENT) before the read timeout would cut the connection. */
    char init[160];
    snprintf(init, sizeof(init),
             "SET time_zone = '+00:00', innodb_lock_wait_timeout = "
             "LEAST(@@global.innodb_lock_wait_timeout, %u)",
             rt > 1 ? rt - 1 : 1);
    mysql_options(m, MYSQL_INIT_COMMAND, init);
    if (!mysql_real_connect(m, cfg->socket ? NULL : cfg->host, cfg->user, cfg->password,
                            cfg->database, cfg->socket ? 0 : (unsigned int)cfg->port, cfg->socket,
                            0)) {
        of_seterr(errstr, errstr_size,
                  "database unavailable: cannot connect to %s as '%s', database '%s': %s "
                  "(errno %u)",
                  target, cfg->user ? cfg->user : "", cfg->database ? cfg->database : "",
                  mysql_error(m), mysql_errno(m));
        mysql_close(m);
        free(c);
        return NULL;
    }
    c->idle_since_ms = of_mono_ms();
    const char *server = mysql_get_server_info(m);
    c->returning = server && strstr(server, "MariaDB") && mysql_get_server_version(m) >= 100500;
    return c;
}

of_db_pool *of_db_pool_new(const of_mysql_config *cfg, char *errstr, size_t errstr_size)
{
    if (!cfg || !cfg->user || !cfg->database) {
        of_seterr(errstr, errstr_size, "database: the configuration needs user and database");
        return NULL;
    }
    of_db_pool *p = calloc(1, sizeof(*p));
    if (!p)
        goto nomem;
    p->cfg = *cfg;
    p->cfg.host = cfg->host ? strdup(cfg->host) : strdup("127.0.0.1");
    p->cfg.socket = cfg->socket ? strdup(cfg->socket) : NULL;
    p->cfg.user = strdup(cfg->user);
    p->cfg.password = cfg->password ? strdup(cfg->password) : NULL;
    p->cfg.database = strdup(cfg->database);
    if (p->cfg.pool_size < 1)
        p->cfg.pool_size = 1;
    if (p->cfg.pool_size > OF_DB_POOL_MAX)
        p->cfg.pool_size = OF_DB_POOL_MAX;
    if (!p->cfg.host || (cfg->socket && !p->cfg.socket) || !p->cfg.user ||
        (cfg->password && !p->cfg.password) || !p->cfg.database) {
        of_mysql_config_free(&p->cfg);
        free(p);
        goto nomem;
    }
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        of_mysql_config_free(&p->cfg);
        free(p);
        goto nomem;
    }
    if (of_cond_init_monotonic(&p->cv) != 0) {
        pthread_mutex_destroy(&p->mu);
        of_mysql_config_free(&p->cfg);
        free(p);
        goto nomem;
    }
    pthread_once(&lib_once, lib_init);
    return p;
nomem:
    of_seterr(errstr, errstr_size, "database: out of memory");
    return NULL;
}

void of_db_pool_free(of_db_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    of_db_conn *c = p->idle;
    p->idle = NULL;
    p->n_open -= p->n_idle;
    p->n_idle = 0;
    int left = p->n_open;
    pthread_mutex_unlock(&p->mu);
    while (c) {
        of_db_conn *next = c->next_idle;
        conn_close(c);
        c = next;
    }
    if (left > 0)
        of_log(OF_LVL_WARN, NULL, NULL, "database pool freed with %d connection%s still acquired",
               left, left == 1 ? "" : "s");
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    of_mysql_config_free(&p->cfg);
    free(p);
}

const of_mysql_config *of_db_pool_config(const of_db_pool *pool)
{
    return pool ? &pool->cfg : NULL;
}

static of_db_conn *pool_acquire(of_db_pool *p, char *errstr, size_t errstr_size);

of_db_conn *of_db_acquire(of_db_pool *p, char *errstr, size_t errstr_size)
{
    /* Users outside a transaction expect each statement to commit: a connection a transaction
     * left in autocommit=0 is switched back (a round trip only after such a transaction). */
    for (int attempt = 0; attempt < 2; attempt++) {
        of_db_conn *c = pool_acquire(p, errstr, errstr_size);
        if (!c || !c->autocommit_off)
            return c;
        if (mysql_autocommit(c->mysql, 1) == 0) {
            c->autocommit_off = 0;
            return c;
        }
        set_mysql_error(c);
        of_seterr(errstr, errstr_size, "database unavailable: %s", c->msg);
        c->broken = 1; /* its mode is unknown: replaced */
        of_db_release(c);
    }
    return NULL;
}

of_db_conn *of_db_acquire_for_tx(of_db_pool *p, char *errstr, size_t errstr_size)
{
    return pool_acquire(p, errstr, errstr_size);
}

int of_db_conn_begin(of_db_conn *c)
{
    if (!c)
        return -1;
    /* autocommit=0 and no transaction open (the last one ended with COMMIT or ROLLBACK): the
     * next statement starts one, with the same isolation and snapshot rules as START
     * TRANSACTION. A connection idle for longer is checked by the START round trip, so one the
     * server dropped is replaced before the transaction's work. */
    if (c->autocommit_off && of_mono_ms() - c->idle_since_ms < HOT_MS) {
        clear_error(c);
        return 0;
    }
    if (!c->autocommit_off) {
        if (mysql_autocommit(c->mysql, 0) != 0) {
            set_mysql_error(c);
            return -1;
        }
        c->autocommit_off = 1;
        clear_error(c);
        return 0;
    }
    return of_db_exec_text(c, "START TRANSACTION");
}

/* The connection this thread released last, and its pool. A worker that gets it back finds its
 * own statements still prepared: with every stage's workers and the intake taking whichever
 * connection was released last, each connection cycled through all their statement shapes and
 * prepared ~1.2 statements per order again (MariaDB's general log at 280 orders/s). Only an
 * address compared with the idle list, so a closed connection's stale pointer is harmless. */
static _Thread_local struct {
    const of_db_pool *pool;
    const of_db_conn *conn;
} tl_last;

of_db_affinity of_db_affinity_swap(of_db_affinity a)
{
    of_db_affinity old = {tl_last.pool, tl_last.conn};
    tl_last.pool = a.pool;
    tl_last.conn = a.conn;
    return old;
}

/* Takes the idle connection this thread used last, else the one released last (LIFO: warm and
 * least likely to have timed out). Called with p->mu held and p->idle not NULL. */
static of_db_conn *take_idle_locked(of_db_pool *p)
{
    of_db_conn **at = &p->idle;
    if (tl_last.pool == p)
        for (of_db_conn **i = &p->idle; *i; i = &(*i)->next_idle)
            if (*i == tl_last.conn) {
                at = i;
                break;
            }
    of_db_conn *c = *at;
    *at = c->next_idle;
    c->next_idle = NULL;
    p->n_idle--;
    return c;
}

static of_db_conn *pool_acquire(of_db_pool *p, char *errstr, size_t errstr_size)
{
    if (!p) {
        of_seterr(errstr, errstr_size, "database unavailable: no database is configured");
        return NULL;
    }
    struct timespec deadline = of_mono_after_ms(p->cfg.acquire_timeout_ms);
    int waited = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->idle) {
            of_db_conn *c = take_idle_locked(p);
            pthread_mutex_unlock(&p->mu);
            /* A connection idle for long may have been closed by the server (wait_timeout) or
             * a restart: check it, and replace it when it is gone. */
            if (of_mono_ms() - c->idle_since_ms > IDLE_PING_MS && mysql_ping(c->mysql) != 0) {
                of_log(OF_LVL_INFO, NULL, NULL,
                       "database connection lost while idle (%s); reconnecting",
                       mysql_error(c->mysql));
                conn_close(c);
                pthread_mutex_lock(&p->mu);
                p->n_open--;
                p->replaced++;
                continue;
            }
            clear_error(c);
            pthread_mutex_lock(&p->mu);
            p->acquired++;
            pthread_mutex_unlock(&p->mu);
            return c;
        }
        if (p->n_open < p->cfg.pool_size) {
            p->n_open++;
            pthread_mutex_unlock(&p->mu);
            of_db_conn *c = conn_open(p, 0, errstr, errstr_size);
            pthread_mutex_lock(&p->mu);
            if (!c) {
                p->n_open--;
                p->connect_failures++;
                pthread_cond_signal(&p->cv);
                pthread_mutex_unlock(&p->mu);
                return NULL;
            }
            p->acquired++;
            pthread_mutex_unlock(&p->mu);
            return c;
        }
        if (!waited) {
            waited = 1;
            p->waits++;
        }
        if (pthread_cond_timedwait(&p->cv, &p->mu, &deadline) == ETIMEDOUT && !p->idle &&
            p->n_open >= p->cfg.pool_size) {
            p->timeouts++;
            int size = p->cfg.pool_size;
            pthread_mutex_unlock(&p->mu);
            of_seterr(errstr, errstr_size,
                      "database unavailable: all %d connection%s stayed in use for %" PRId64
                      " ms (acquire_timeout)",
                      size, size == 1 ? "" : "s", p->cfg.acquire_timeout_ms);
            return NULL;
        }
    }
}

of_db_conn *of_db_connect_dedicated(of_db_pool *p, int64_t read_timeout_ms, char *errstr,
                                    size_t errstr_size)
{
    if (!p) {
        of_seterr(errstr, errstr_size, "database unavailable: no database is configured");
        return NULL;
    }
    of_db_conn *c = conn_open(p, read_timeout_ms, errstr, errstr_size);
    if (c)
        c->dedicated = 1;
    return c;
}

void of_db_release(of_db_conn *c)
{
    if (!c)
        return;
    of_db_pool *p = c->pool;
    if (c->rows) {
        of_log(OF_LVL_WARN, NULL, NULL,
               "database connection released with result sets not freed; freeing them");
        while (c->rows)
            of_db_rows_free(c->rows);
    }
    if (c->in_tx && !c->broken) {
        if (mysql_query(c->mysql, "ROLLBACK") != 0) {
            set_mysql_error(c);
            c->broken = 1; /* its state is unknown */
        }
        c->in_tx = 0;
    }
    if (c->dedicated) {
        conn_close(c);
        return;
    }
    if (c->broken) {
        conn_close(c);
        pthread_mutex_lock(&p->mu);
        p->n_open--;
        p->replaced++;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    c->idle_since_ms = of_mono_ms();
    tl_last.pool = p;
    tl_last.conn = c;
    pthread_mutex_lock(&p->mu);
    c->next_idle = p->idle;
    p->idle = c;
    p->n_idle++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int of_db_ping(of_db_pool *p, char *errstr, size_t errstr_size)
{
    of_db_conn *c = of_db_acquire(p, errstr, errstr_size);
    if (!c)
        return -1;
    int rc = 0;
    if (mysql_ping(c->mysql) != 0) {
        set_mysql_error(c);
        c->broken = 1;
        of_seterr(errstr, errstr_size, "database unavailable: %s", c->msg);
        rc = -1;
    }
    of_db_release(c);
    return rc;
}

void of_db_pool_stats_get(of_db_pool *p, of_db_pool_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    out->size = p->cfg.pool_size;
    out->open = p->n_open;
    out->idle = p->n_idle;
    out->acquired = p->acquired;
    out->connect_failures = p->connect_failures;
    out->replaced = p->replaced;
    out->timeouts = p->timeouts;
    out->waits = p->waits;
    pthread_mutex_unlock(&p->mu);
}

/* ---------------------------------------------------------------------------------------------
 * Statements
 * ------------------------------------------------------------------------------------------- */

int of_db_exec_text(of_db_conn *c, const char *sql)
{
    if (!c || !sql)
        return -1;
    clear_error(c);
    if (c->broken) {
        of_db_conn_set_error(c, OF_DB_ERR_UNAVAILABLE, CR_SERVER_LOST,
                             "the connection to the database was lost");
        return -1;
    }
    if (mysql_real_query(c->mysql, sql, strlen(sql)) != 0) {
        set_mysql_error(c);
        return -1;
    }
    for (;;) {
        MYSQL_RES *res = mysql_store_result(c->mysql);
        if (res)
            mysql_free_result(res);
        else if (mysql_field_count(c->mysql) != 0) {
            set_mysql_error(c);
            return -1;
        }
        int more = mysql_next_result(c->mysql);
        if (more > 0) {
            set_mysql_error(c);
            return -1;
        }
        if (more < 0)
            break;
    }
    c->last_insert_id = (int64_t)mysql_insert_id(c->mysql);
    return 0;
}

/* A prepared statement for sql: from the cache (marked busy when `hold`), or new. *cached gets
 * the cache slot or -1 for a statement to close after use. NULL with the error set. */
static MYSQL_STMT *stmt_get(of_db_conn *c, const char *sql, int *cached)
{
    *cached = -1;
    int free_slot = -1, lru = -1;
    for (int i = 0; i < STMT_CACHE_SIZE; i++) {
        stmt_entry *e = &c->cache[i];
        if (!e->sql) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (!e->busy && strcmp(e->sql, sql) == 0) {
            e->used = ++c->tick;
            e->busy = 1;
            *cached = i;
            return e->stmt;
        }
        if (!e->busy && (lru < 0 || e->used < c->cache[lru].used))
            lru = i;
    }
    MYSQL_STMT *st = mysql_stmt_init(c->mysql);
    if (!st) {
        set_mysql_error(c);
        return NULL;
    }
    if (mysql_stmt_prepare(st, sql, strlen(sql)) != 0) {
        set_stmt_error(c, st);
        mysql_stmt_close(st);
        return NULL;
    }
    my_bool yes = 1;
    mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &yes);
    int slot = free_slot >= 0 ? free_slot : lru;
    if (slot < 0 || mysql_stmt_param_count(st) > OF_DB_STMT_CACHE_MAX_PARAMS)
        return st; /* every slot busy, or too big to keep: used once */
    char *copy = strdup(sql);
    if (!copy)
        return st;
    stmt_entry *e = &c->cache[slot];
    if (e->stmt)
        mysql_stmt_close(e->stmt);
    free(e->sql);
    e->sql = copy;
    e->stmt = st;
    e->used = ++c->tick;
    e->busy = 1;
    *cached = slot;
    return st;
}

static void stmt_put(of_db_conn *c, MYSQL_STMT *st, int cached)
{
    if (cached >= 0) {
        c->cache[cached].busy = 0;
        return;
    }
    mysql_stmt_close(st);
}

/* Drops a cached statement (after an error that may have invalidated it). */
static void stmt_drop(of_db_conn *c, MYSQL_STMT *st, int cached)
{
    if (cached >= 0) {
        free(c->cache[cached].sql);
        memset(&c->cache[cached], 0, sizeof(c->cache[cached]));
    }
    mysql_stmt_close(st);
}

static int bind_params(of_db_conn *c, MYSQL_STMT *st, const of_db_value *params, size_t n,
                       MYSQL_BIND *b)
{
    unsigned long want = mysql_stmt_param_count(st);
    if (want != n) {
        of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0,
                             "the statement has %lu placeholder%s but %zu parameter%s %s given",
                             want, want == 1 ? "" : "s", n, n == 1 ? "" : "s",
                             n == 1 ? "was" : "were");
        return -1;
    }
    if (n == 0)
        return 0;
    if (!params) {
        of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0, "%zu parameters announced but none given", n);
        return -1;
    }
    memset(b, 0, n * sizeof(*b));
    for (size_t i = 0; i < n; i++) {
        const of_db_value *v = &params[i];
        switch (v->type) {
        case OF_DB_NULL:
            b[i].buffer_type = MYSQL_TYPE_NULL;
            break;
        case OF_DB_INT:
            b[i].buffer_type = MYSQL_TYPE_LONGLONG;
            b[i].buffer = (void *)&v->i;
            break;
        case OF_DB_DOUBLE:
            b[i].buffer_type = MYSQL_TYPE_DOUBLE;
            b[i].buffer = (void *)&v->d;
            break;
        case OF_DB_TEXT:
        case OF_DB_BLOB:
            if (!v->p && v->len > 0) {
                of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0,
                                     "parameter %zu: %zu bytes announced but no pointer given",
                                     i + 1, v->len);
                return -1;
            }
            b[i].buffer_type = v->type == OF_DB_TEXT ? MYSQL_TYPE_STRING : MYSQL_TYPE_BLOB;
            b[i].buffer = (void *)(v->p ? v->p : "");
            b[i].buffer_length = (unsigned long)v->len;
            break;
        default:
            of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0, "parameter %zu has an unknown type %d",
                                 i + 1, (int)v->type);
            return -1;
        }
    }
    if (mysql_stmt_bind_param(st, b) != 0) {
        set_stmt_error(c, st);
        return -1;
    }
    return 0;
}

/* Prepares (or reuses) and executes a statement; a statement the server asks to prepare again
 * (its tables changed) is prepared once more. NULL with the error set. */
static MYSQL_STMT *run(of_db_conn *c, const char *sql, const of_db_value *params, size_t n,
                       int *cached)
{
    clear_error(c);
    if (!sql) {
        of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0, "no SQL given");
        return NULL;
    }
    if (c->broken) {
        of_db_conn_set_error(c, OF_DB_ERR_UNAVAILABLE, CR_SERVER_LOST,
                             "the connection to the database was lost");
        return NULL;
    }
    MYSQL_BIND small[8];
    MYSQL_BIND *b = n <= 8 ? small : calloc(n, sizeof(*b));
    if (!b) {
        of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0, "out of memory");
        return NULL;
    }
    MYSQL_STMT *st = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        st = stmt_get(c, sql, cached);
        if (!st)
            break;
        if (bind_params(c, st, params, n, b) != 0) {
            stmt_put(c, st, *cached);
            st = NULL;
            break;
        }
        if (mysql_stmt_execute(st) == 0)
            break;
        unsigned int e = mysql_stmt_errno(st);
        set_stmt_error(c, st);
        stmt_drop(c, st, *cached);
        st = NULL;
        /* 1615 ER_NEED_REPREPARE, 1243 ER_UNKNOWN_STMT_HANDLER */
        if ((e != 1615 && e != 1243) || c->broken)
            break;
    }
    if (b != small)
        free(b);
    return st;
}

static int64_t exec_once(of_db_conn *c, const char *sql, const of_db_value *params, size_t n_params)
{
    int cached;
    MYSQL_STMT *st = run(c, sql, params, n_params, &cached);
    if (!st)
        return -1;
    int64_t affected;
    if (mysql_stmt_field_count(st) > 0) {
        /* A statement with a result set: read and drop it, count its rows. */
        if (mysql_stmt_store_result(st) != 0) {
            set_stmt_error(c, st);
            stmt_drop(c, st, cached);
            return -1;
        }
        affected = (int64_t)mysql_stmt_num_rows(st);
        mysql_stmt_free_result(st);
    } else {
        affected = (int64_t)mysql_stmt_affected_rows(st);
        c->last_insert_id = (int64_t)mysql_stmt_insert_id(st);
    }
    stmt_put(c, st, cached);
    return affected;
}

int64_t of_db_exec(of_db_conn *c, const char *sql, const of_db_value *params, size_t n_params)
{
    if (!c)
        return -1;
    int64_t n = exec_once(c, sql, params, n_params);
    if (n < 0 && c->sql_errno == CR_NEW_STMT_METADATA && !c->broken)
        n = exec_once(c, sql, params, n_params); /* prepared again for the changed table */
    return n;
}

/* What a column is read as. */
static of_db_type column_type(const MYSQL_FIELD *f, enum enum_field_types *bind_as)
{
    switch (f->type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR:
        *bind_as = MYSQL_TYPE_LONGLONG;
        return OF_DB_INT;
    case MYSQL_TYPE_FLOAT:
    case MYSQL_TYPE_DOUBLE:
        *bind_as = MYSQL_TYPE_DOUBLE;
        return OF_DB_DOUBLE;
    case MYSQL_TYPE_NULL:
        *bind_as = MYSQL_TYPE_STRING;
        return OF_DB_NULL;
    case MYSQL_TYPE_BIT:
    case MYSQL_TYPE_GEOMETRY:
        *bind_as = MYSQL_TYPE_BLOB;
        return OF_DB_BLOB;
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
    case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_VAR_STRING:
    case MYSQL_TYPE_VARCHAR:
        *bind_as = MYSQL_TYPE_BLOB;
        return f->charsetnr == 63 ? OF_DB_BLOB : OF_DB_TEXT; /* 63: binary */
    default: /* DECIMAL, dates and times, JSON, ENUM, SET: as text */
        *bind_as = MYSQL_TYPE_STRING;
        return OF_DB_TEXT;
    }
}

void of_db_rows_free(of_db_rows *r)
{
    if (!r)
        return;
    of_db_conn *c = r->conn;
    if (r->stmt) {
        mysql_stmt_free_result(r->stmt);
        if (r->drop_stmt)
            stmt_drop(c, r->stmt, r->cached);
        else
            stmt_put(c, r->stmt, r->cached);
    }
    if (r->meta)
        mysql_free_result(r->meta);
    for (unsigned int i = 0; r->own && i < r->n_cols; i++)
        if (r->own[i])
            free(r->bufs[i]);
    free(r->cols);
    if (r->prev)
        r->prev->next = r->next;
    else if (c && c->rows == r)
        c->rows = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r);
}

static void bind_column(of_db_rows *r, unsigned int i, enum enum_field_types as)
{
    MYSQL_BIND *b = &r->binds[i];
    memset(b, 0, sizeof(*b));
    b->buffer_type = as;
    b->is_null = &r->nulls[i];
    b->length = &r->lengths[i];
    b->error = &r->errors[i];
    if (as == MYSQL_TYPE_LONGLONG) {
        b->buffer = &r->ints[i];
        b->is_unsigned = (r->fields[i].flags & UNSIGNED_FLAG) != 0;
    } else if (as == MYSQL_TYPE_DOUBLE) {
        b->buffer = &r->doubles[i];
    } else {
        b->buffer = r->bufs[i];
        b->buffer_length = (unsigned long)(r->caps[i] - 1); /* room for a NUL */
    }
}

/* The text buffer a column starts with: the longest value of this result (max_length, with
 * STMT_ATTR_UPDATE_MAX_LENGTH), at least 64 bytes (dates and decimals formatted as text), at
 * most COLUMN_BUF_MAX (a longer value grows its buffer on fetch), and a NUL. 0 for a column
 * bound to a number. */
static size_t first_cap(const MYSQL_FIELD *f)
{
    enum enum_field_types as;
    (void)column_type(f, &as);
    if (as != MYSQL_TYPE_STRING && as != MYSQL_TYPE_BLOB)
        return 0;
    unsigned long want = f->max_length;
    if (want < 64)
        want = 64;
    if (want > COLUMN_BUF_MAX)
        want = COLUMN_BUF_MAX;
    return (size_t)want + 1;
}

/* n items of size each, rounded up so that what follows them stays aligned. */
static size_t cols_room(size_t n, size_t size)
{
    return (n * size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
}

/* Carves n items of size each from *at. */
static void *carve(char **at, size_t n, size_t size)
{
    void *p = *at;
    *at += cols_room(n, size);
    return p;
}

/* A result's per-column arrays and its first text buffers in one allocation: a query costs
 * the calls of malloc of the client library and this one, not ten or more. 0 or -1. */
static int cols_alloc(of_db_rows *r, unsigned int n)
{
    size_t text = 0;
    for (unsigned int i = 0; i < n; i++)
        text += first_cap(&r->fields[i]); /* < 2^32 columns of <= 64 KiB: no overflow */
    size_t room = cols_room(n, sizeof(MYSQL_BIND)) + cols_room(n, sizeof(int64_t)) +
                  cols_room(n, sizeof(double)) + cols_room(n, sizeof(char *)) +
                  cols_room(n, sizeof(size_t)) + cols_room(n, sizeof(unsigned long)) +
                  cols_room(n, sizeof(of_db_type)) + 2 * cols_room(n, sizeof(my_bool)) +
                  cols_room(n, sizeof(unsigned char)) + text;
    char *at = r->cols = calloc(1, room);
    if (!at)
        return -1;
    r->binds = carve(&at, n, sizeof(MYSQL_BIND));
    r->ints = carve(&at, n, sizeof(int64_t));
    r->doubles = carve(&at, n, sizeof(double));
    r->bufs = carve(&at, n, sizeof(char *));
    r->caps = carve(&at, n, sizeof(size_t));
    r->lengths = carve(&at, n, sizeof(unsigned long));
    r->types = carve(&at, n, sizeof(of_db_type));
    r->nulls = carve(&at, n, sizeof(my_bool));
    r->errors = carve(&at, n, sizeof(my_bool));
    r->own = carve(&at, n, sizeof(unsigned char));
    for (unsigned int i = 0; i < n; i++) {
        if ((r->caps[i] = first_cap(&r->fields[i])) > 0) {
            r->bufs[i] = at;
            at += r->caps[i];
        }
    }
    return 0;
}

/* One try of a query; NULL with the error set. */
static of_db_rows *query_once(of_db_conn *c, const char *sql, const of_db_value *params,
                              size_t n_params)
{
    of_db_rows *r = calloc(1, sizeof(*r));
    if (!r) {
        of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0, "out of memory");
        return NULL;
    }
    r->conn = c;
    r->cached = -1;
    r->stmt = run(c, sql, params, n_params, &r->cached);
    if (!r->stmt) {
        free(r);
        return NULL;
    }
    /* Linked first so that every exit below frees through of_db_rows_free. */
    r->next = c->rows;
    if (c->rows)
        c->rows->prev = r;
    c->rows = r;
    r->n_cols = mysql_stmt_field_count(r->stmt);
    if (r->n_cols == 0)
        return r;
    if (mysql_stmt_store_result(r->stmt) != 0) {
        set_stmt_error(c, r->stmt);
        r->drop_stmt = 1;
        of_db_rows_free(r);
        return NULL;
    }
    r->meta = mysql_stmt_result_metadata(r->stmt);
    if (!r->meta) {
        set_stmt_error(c, r->stmt);
        r->drop_stmt = 1;
        of_db_rows_free(r);
        return NULL;
    }
    r->fields = mysql_fetch_fields(r->meta);
    unsigned int n = r->n_cols;
    if (cols_alloc(r, n) != 0)
        goto nomem;
    for (unsigned int i = 0; i < n; i++) {
        enum enum_field_types as;
        r->types[i] = column_type(&r->fields[i], &as);
        bind_column(r, i, as);
    }
    if (mysql_stmt_bind_result(r->stmt, r->binds) != 0) {
        set_stmt_error(c, r->stmt);
        r->drop_stmt = 1;
        of_db_rows_free(r);
        return NULL;
    }
    return r;
nomem:
    of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0, "out of memory");
    of_db_rows_free(r);
    return NULL;
}

of_db_rows *of_db_query(of_db_conn *c, const char *sql, const of_db_value *params, size_t n_params)
{
    if (!c)
        return NULL;
    of_db_rows *r = query_once(c, sql, params, n_params);
    /* CR_NEW_STMT_METADATA: the result's columns changed since the statement was prepared
     * (its table was altered); prepared again, it reads the new ones. */
    if (!r && c->sql_errno == CR_NEW_STMT_METADATA && !c->broken)
        r = query_once(c, sql, params, n_params);
    return r;
}

int of_db_rows_next(of_db_rows *r)
{
    if (!r || !r->conn)
        return -1;
    of_db_conn *c = r->conn;
    clear_error(c);
    r->has_row = 0;
    if (r->n_cols == 0 || !r->stmt)
        return 0;
    int rc = mysql_stmt_fetch(r->stmt);
    if (rc == MYSQL_NO_DATA)
        return 0;
    if (rc == 1) {
        set_stmt_error(c, r->stmt);
        return -1;
    }
    int rebind = 0;
    if (rc == MYSQL_DATA_TRUNCATED) {
        for (unsigned int i = 0; i < r->n_cols; i++) {
            if (!r->errors[i] || r->nulls[i])
                continue;
            enum enum_field_types as = r->binds[i].buffer_type;
            if (as != MYSQL_TYPE_STRING && as != MYSQL_TYPE_BLOB) {
                of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0,
                                     "column %u ('%s') does not fit a 64-bit value", i + 1,
                                     r->fields[i].name);
                return -1;
            }
            size_t need = (size_t)r->lengths[i] + 1;
            /* The value is fetched again whole: the old buffer's bytes are not kept. */
            char *nb = r->own[i] ? realloc(r->bufs[i], need) : malloc(need);
            if (!nb) {
                of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0,
                                     "out of memory for a %lu-byte value in column %u",
                                     r->lengths[i], i + 1);
                return -1;
            }
            r->bufs[i] = nb;
            r->own[i] = 1;
            r->caps[i] = need;
            bind_column(r, i, as);
            if (mysql_stmt_fetch_column(r->stmt, &r->binds[i], i, 0) != 0) {
                set_stmt_error(c, r->stmt);
                return -1;
            }
            rebind = 1;
        }
    }
    if (rebind && mysql_stmt_bind_result(r->stmt, r->binds) != 0) {
        set_stmt_error(c, r->stmt);
        return -1;
    }
    r->has_row = 1;
    return 1;
}

size_t of_db_rows_columns(const of_db_rows *r)
{
    return r ? r->n_cols : 0;
}

const char *of_db_rows_column_name(const of_db_rows *r, size_t column)
{
    if (!r || !r->fields || column >= r->n_cols)
        return NULL;
    return r->fields[column].name;
}

int of_db_rows_get(const of_db_rows *r, size_t column, of_db_value *out)
{
    if (!r || !out || column >= r->n_cols || !r->has_row)
        return -1;
    memset(out, 0, sizeof(*out));
    if (r->nulls[column] || r->types[column] == OF_DB_NULL) {
        out->type = OF_DB_NULL;
        return 0;
    }
    out->type = r->types[column];
    switch (out->type) {
    case OF_DB_INT:
        out->i = r->ints[column];
        break;
    case OF_DB_DOUBLE:
        out->d = r->doubles[column];
        break;
    default: {
        size_t len = r->lengths[column];
        if (len >= r->caps[column])
            len = r->caps[column] - 1;
        r->bufs[column][len] = '\0';
        out->p = r->bufs[column];
        out->len = len;
        break;
    }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Metrics
 * ------------------------------------------------------------------------------------------- */

#define BACKLOG_REFRESH_MS 5000

static void collect_pool_gauges(void *opaque, of_metric_sink *sink)
{
    of_db_pool_stats st;
    of_db_pool_stats_get(opaque, &st);
    of_metric_sample(sink, (const char *const[]){"state", "in_use", NULL}, st.open - st.idle);
    of_metric_sample(sink, (const char *const[]){"state", "idle", NULL}, st.idle);
}

static void collect_pool_size(void *opaque, of_metric_sink *sink)
{
    of_db_pool_stats st;
    of_db_pool_stats_get(opaque, &st);
    of_metric_sample(sink, NULL, st.size);
}

static void collect_pool_waits(void *opaque, of_metric_sink *sink)
{
    of_db_pool_stats st;
    of_db_pool_stats_get(opaque, &st);
    of_metric_sample(sink, NULL, (double)st.waits);
}

static void collect_pool_errors(void *opaque, of_metric_sink *sink)
{
    of_db_pool_stats st;
    of_db_pool_stats_get(opaque, &st);
    of_metric_sample(sink, (const char *const[]){"kind", "connect", NULL},
                     (double)st.connect_failures);
    of_metric_sample(sink, (const char *const[]){"kind", "acquire_timeout", NULL},
                     (double)st.timeouts);
    of_metric_sample(sink, (const char *const[]){"kind", "connection_lost", NULL},
                     (double)st.replaced);
}

static double value_number(const of_db_value *v)
{
    if (v->type == OF_DB_INT)
        return (double)v->i;
    if (v->type == OF_DB_DOUBLE)
        return v->d;
    if (v->type == OF_DB_TEXT && v->p)
        return strtod(v->p, NULL);
    return 0;
}

/* Refreshes the backlog when it is older than BACKLOG_REFRESH_MS and no other scrape is at it. */
static void refresh_backlog(of_db_pool *p)
{
    int64_t now = of_mono_ms();
    pthread_mutex_lock(&p->mu);
    int go =
        !p->backlog_busy && (!p->backlog_known || now - p->backlog_at_ms >= BACKLOG_REFRESH_MS);
    if (go)
        p->backlog_busy = 1;
    pthread_mutex_unlock(&p->mu);
    if (!go)
        return;
    char why[256];
    double n = 0, age = 0;
    int ok = 0;
    of_db_conn *c = of_db_acquire(p, why, sizeof(why));
    if (c) {
        of_db_rows *rows = of_db_query(
            c,
            "SELECT COUNT(*), COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), NOW(3)), 0) "
            "FROM of_outbox WHERE published_at IS NULL AND parked_at IS NULL",
            NULL, 0);
        of_db_value a, b;
        if (rows && of_db_rows_next(rows) == 1 && of_db_rows_get(rows, 0, &a) == 0 &&
            of_db_rows_get(rows, 1, &b) == 0) {
            n = value_number(&a);
            age = value_number(&b) / 1e6;
            ok = 1;
        }
        of_db_rows_free(rows);
        of_db_release(c);
    }
    pthread_mutex_lock(&p->mu);
    if (ok) {
        p->backlog_n = n;
        p->backlog_age = age < 0 ? 0 : age;
        p->backlog_known = 1;
    }
    p->backlog_at_ms = now;
    p->backlog_busy = 0;
    pthread_mutex_unlock(&p->mu);
}

static void collect_backlog(void *opaque, of_metric_sink *sink)
{
    of_db_pool *p = opaque;
    refresh_backlog(p);
    pthread_mutex_lock(&p->mu);
    int known = p->backlog_known;
    double n = p->backlog_n;
    pthread_mutex_unlock(&p->mu);
    if (known)
        of_metric_sample(sink, NULL, n);
}

static void collect_backlog_age(void *opaque, of_metric_sink *sink)
{
    of_db_pool *p = opaque;
    pthread_mutex_lock(&p->mu);
    int known = p->backlog_known;
    double age = p->backlog_age;
    pthread_mutex_unlock(&p->mu);
    if (known)
        of_metric_sample(sink, NULL, age);
}

int of_db_register_metrics(of_db_pool *p, of_metrics *m)
{
    if (!p || !m)
        return -1;
    int rc = 0;
    rc |= of_metrics_collector(m, "mysql_pool_connections",
                               "MySQL pool connections open, by state (in_use, idle)",
                               OF_METRIC_GAUGE, collect_pool_gauges, p);
    rc |= of_metrics_collector(m, "mysql_pool_size", "The MySQL pool's configured size",
                               OF_METRIC_GAUGE, collect_pool_size, p);
    rc |= of_metrics_collector(m, "mysql_pool_waits",
                               "Acquires that had to wait for a free MySQL connection",
                               OF_METRIC_COUNTER, collect_pool_waits, p);
    rc |= of_metrics_collector(m, "mysql_pool_errors",
                               "MySQL pool errors, by kind (connect, acquire_timeout, "
                               "connection_lost)",
                               OF_METRIC_COUNTER, collect_pool_errors, p);
    /* The count first: its collector refreshes what the age reports. */
    rc |= of_metrics_collector(m, "outbox_unpublished",
                               "Outbox rows not yet published (checked at most every 5 s)",
                               OF_METRIC_GAUGE, collect_backlog, p);
    rc |= of_metrics_collector(m, "outbox_oldest_unpublished_age_seconds",
                               "Age of the oldest unpublished outbox row (0 when none)",
                               OF_METRIC_GAUGE, collect_backlog_age, p);
    return rc ? -1 : 0;
}
