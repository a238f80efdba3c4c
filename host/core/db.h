/* The host's MariaDB/MySQL database: the `mysql:` section of the host configuration, a pool of
 * connections, statements with `?` placeholders (prepared statements), a call's transaction
 * with the inbox (events already applied) and the outbox (events emitted, published after the
 * commit), schema migrations, and the db_* functions of the host table.
 *
 * Threads: a pool is shared by every thread; a connection, a transaction and a result set are
 * used by one thread at a time (the one that acquired or began it). */
#ifndef OF_DB_H
#define OF_DB_H

#include <orderflow/host_api.h>
#include <orderflow/stage.h>

#include "diag.h"
#include "event.h"
#include "plugin.h"
#include "yamltree.h"

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * Configuration (db_config.c)
 * ------------------------------------------------------------------------------------------- */

#define OF_DB_POOL_MAX 256

typedef struct of_mysql_config {
    int enabled;    /* a `mysql:` section was given (set by of_mysql_config_parse) */
    char *host;     /* default "127.0.0.1" */
    int port;       /* default 3306 */
    char *socket;   /* a Unix socket path; when set, host and port are not used */
    char *user;     /* required */
    char *password; /* secret: never printed; from `password` or `password_file`; may be NULL */
    char *database; /* required */
    int pool_size;  /* 1..256, default 8 */
    int64_t connect_timeout_ms; /* default 5s (the client library counts whole seconds) */
    int64_t read_timeout_ms;    /* default 30s */
    int64_t write_timeout_ms;   /* default 30s */
    int64_t acquire_timeout_ms; /* how long an acquire waits for a free connection; default 5s */
} of_mysql_config;

/* Fills the defaults (enabled 0, nothing required set). */
void of_mysql_config_defaults(of_mysql_config *out);
/* Parses the value of the host configuration's `mysql:` key (a mapping). Every problem goes to
 * diag at its node's position (the secret is never echoed); a relative password_file is
 * resolved against config_dir. `out` gets the defaults first, then what is given, and
 * enabled = 1; the caller still frees it after errors. */
void of_mysql_config_parse(of_mysql_config *out, const of_ynode *node, const char *config_dir,
                           const char *file, of_diag *diag);
/* Frees the strings (the password is wiped first) and resets to the defaults. */
void of_mysql_config_free(of_mysql_config *cfg);

/* ---------------------------------------------------------------------------------------------
 * Pool and statements (db_pool.c)
 * ------------------------------------------------------------------------------------------- */

typedef struct of_db_pool of_db_pool;
typedef struct of_db_conn of_db_conn;
/* of_db_rows (a result set) is declared in host_api.h. */

/* Maps a server or client error number to the SDK's categories: 1062 DUPLICATE; 1451, 1452,
 * 1048, 3819, 4025 CONSTRAINT; 1213, 1205 TRANSIENT; client connection errors (2002, 2003,
 * 2006, 2013, ...) and server shutdown/kill UNAVAILABLE; 0 OK; anything else OTHER. */
of_db_error of_db_map_errno(unsigned int sql_errno);
/* 1 for an error after which the connection cannot be used any more. */
int of_db_errno_is_connection(unsigned int sql_errno);
/* "duplicate", "constraint", ... */
const char *of_db_error_name(of_db_error e);

/* A pool for a configuration (copied). Connects nothing yet: connections are opened on demand,
 * up to pool_size. NULL with errstr on no memory or a configuration without user/database. */
of_db_pool *of_db_pool_new(const of_mysql_config *cfg, char *errstr, size_t errstr_size);
/* Closes every idle connection. Every acquired connection must have been released. */
void of_db_pool_free(of_db_pool *pool);
const of_mysql_config *of_db_pool_config(const of_db_pool *pool);

/* A connection for this thread: an idle one (checked with a ping when it was idle for long), or
 * a new one while fewer than pool_size are open, else the first one released within
 * acquire_timeout. NULL with "database unavailable: ..." in errstr when none can be had within
 * that time (connecting is bounded by connect_timeout). */
of_db_conn *of_db_acquire(of_db_pool *pool, char *errstr, size_t errstr_size);
/* The same for of_db_tx_begin: the connection may be in autocommit=0, which a transaction left
 * it in (of_db_acquire switches such a connection back for users outside a transaction). */
of_db_conn *of_db_acquire_for_tx(of_db_pool *pool, char *errstr, size_t errstr_size);
/* Starts a transaction on c: on a connection a transaction left in autocommit=0 and released
 * less than a second ago, without a round trip (the next statement starts it); else with one
 * (SET autocommit = 0, or START TRANSACTION), which also finds a connection the server dropped.
 * 0 or -1 (the connection's error says why). */
int of_db_conn_begin(of_db_conn *c);
/* A connection outside the pool's count (closed by of_db_release), with its own read timeout
 * (ms; <= 0: the pool's): for long work such as migrations. */
of_db_conn *of_db_connect_dedicated(of_db_pool *pool, int64_t read_timeout_ms, char *errstr,
                                    size_t errstr_size);
/* Gives a connection back: result sets still open are freed (with a warning), an open
 * transaction is rolled back, and a connection that failed with a connection error is closed
 * (a new one replaces it on a later acquire). NULL is fine. */
void of_db_release(of_db_conn *conn);

/* Which idle connection a thread's next acquire prefers: the one it released last, so that its
 * statements are still prepared there. A thread that runs work on behalf of others (the leader
 * of an HTTP group, http_group.c) swaps in the affinity of that work and swaps its own back
 * after, so the work's statement shapes stay on a few connections instead of churning every
 * connection's cache. Returns the calling thread's affinity before the swap. */
typedef struct of_db_affinity {
    const of_db_pool *pool;
    const of_db_conn *conn; /* only compared with the idle list: a stale pointer is harmless */
} of_db_affinity;
of_db_affinity of_db_affinity_swap(of_db_affinity a);
/* 0 when a connection can be had and answers a ping, else -1 with the reason (for /readyz). */
int of_db_ping(of_db_pool *pool, char *errstr, size_t errstr_size);

typedef struct of_db_pool_stats {
    int size;                  /* pool_size */
    int open;                  /* connections open (idle or in use) */
    int idle;                  /* of those, idle */
    uint64_t acquired;         /* successful acquires */
    uint64_t connect_failures; /* connections that could not be opened */
    uint64_t replaced;         /* broken connections closed */
    uint64_t timeouts;         /* acquires that found every connection busy for acquire_timeout */
    uint64_t waits;            /* acquires that had to wait for a connection */
} of_db_pool_stats;
void of_db_pool_stats_get(of_db_pool *pool, of_db_pool_stats *out);
struct of_metrics;
/* Registers the pool's metrics (mysql_pool_*) and the outbox backlog (outbox_unpublished,
 * outbox_oldest_unpublished_age_seconds, queried at most every 5 s at scrape time) in metrics.
 * The pool must outlive the registry or be removed with of_metrics_remove_collectors(pool).
 * (db_metrics.c) 0 or -1. */
int of_db_register_metrics(of_db_pool *pool, struct of_metrics *metrics);

/* Statements. `?` placeholders get params[0..n_params-1] (prepared statements, cached per
 * connection by SQL text). On failure the connection's last error says why (of_db_conn_error);
 * a success clears it.
 *
 * Each connection keeps its OF_DB_STMT_CACHE_SIZE most recently used statements prepared, except
 * those with more than OF_DB_STMT_CACHE_MAX_PARAMS placeholders (a large set's), which are closed
 * after use: a kept statement costs ~10 KB of client memory (Connector/C's buffers and one
 * MYSQL_BIND per placeholder), times every connection of the pool. Callers that build SQL from a
 * count keep the count to a few values (ofp_sql_list_len for the plugins) so that the statements
 * they use stay in the cache. */
#define OF_DB_STMT_CACHE_SIZE       32
#define OF_DB_STMT_CACHE_MAX_PARAMS 128
/* Rows affected (for a statement with a result set: the number of rows), or -1. */
int64_t of_db_exec(of_db_conn *c, const char *sql, const of_db_value *params, size_t n_params);
/* The whole result set, read into memory; NULL on error. Free with of_db_rows_free before the
 * connection is released. */
of_db_rows *of_db_query(of_db_conn *c, const char *sql, const of_db_value *params, size_t n_params);
/* 1 when a row is available, 0 at the end, -1 on error. */
int of_db_rows_next(of_db_rows *rows);
size_t of_db_rows_columns(const of_db_rows *rows);
const char *of_db_rows_column_name(const of_db_rows *rows, size_t column);
/* The current row's column: INT for integer columns, DOUBLE for float/double, BLOB for binary
 * strings, TEXT (NUL-terminated) for everything else (DECIMAL, dates and times as text), NULL.
 * 0, or -1 for a bad index or no current row. Pointers valid until the next row. */
int of_db_rows_get(const of_db_rows *rows, size_t column, of_db_value *out);
void of_db_rows_free(of_db_rows *rows);
/* A statement without parameters through the text protocol, its results discarded: transaction
 * control, DDL, SET. 0 or -1. */
int of_db_exec_text(of_db_conn *c, const char *sql);
/* The AUTO_INCREMENT id of the last insert on this connection. */
int64_t of_db_last_insert_id(const of_db_conn *c);
/* 1 when the connection's server takes INSERT ... RETURNING (MariaDB 10.5 and later), which
 * multi-row outbox inserts need to learn their rows' ids; elsewhere they go one row at a time. */
int of_db_conn_returning(const of_db_conn *c);
/* on = 0: the pool's connections behave as if their server had no RETURNING (tests of the
 * one-row-at-a-time path). */
void of_db_pool_set_returning(of_db_pool *pool, int on);
/* The last statement's outcome: OF_DB_OK, or the category and "MESSAGE (errno N)". */
of_db_error of_db_conn_error(const of_db_conn *c, const char **message);
unsigned int of_db_conn_errno(const of_db_conn *c);
/* 1 once the connection failed with a connection error. */
int of_db_conn_broken(const of_db_conn *c);
/* Sets the connection's last error (for checks done above the statement layer). */
void of_db_conn_set_error(of_db_conn *c, of_db_error e, unsigned int sql_errno, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
/* Records whether a transaction is open on the connection (a release rolls it back). */
void of_db_conn_set_in_tx(of_db_conn *c, int in_tx);

/* ---------------------------------------------------------------------------------------------
 * Transactions, inbox, outbox (db_tx.c)
 * ------------------------------------------------------------------------------------------- */

typedef struct of_db_tx of_db_tx;

/* Acquires a connection and starts a transaction (a connection found dead on the way is
 * replaced once). NULL with "database unavailable: ..." in errstr. */
of_db_tx *of_db_tx_begin(of_db_pool *pool, char *errstr, size_t errstr_size);
of_db_conn *of_db_tx_conn(of_db_tx *tx);
/* Statements inside the transaction. A failed one leaves the transaction usable, except after
 * a deadlock or a lost connection: the server rolled it back, the transaction is doomed, and
 * every later statement and the commit fail with TRANSIENT (deadlock) or UNAVAILABLE. */
int64_t of_db_tx_exec(of_db_tx *tx, const char *sql, const of_db_value *params, size_t n_params);
of_db_rows *of_db_tx_query(of_db_tx *tx, const char *sql, const of_db_value *params,
                           size_t n_params);
/* 0 when committed; -1 when the transaction is doomed (nothing was committed: retry) or the
 * commit failed (with a lost connection the outcome is unknown: the inbox makes a retry safe).
 * After a commit or rollback the transaction takes no more statements. */
int of_db_tx_commit(of_db_tx *tx);
int of_db_tx_rollback(of_db_tx *tx);
/* Rolls back unless committed, releases the connection and frees the transaction. NULL is
 * fine. */
void of_db_tx_end(of_db_tx *tx);
/* 1 when the server rolled the transaction back (deadlock, lost connection). */
int of_db_tx_doomed(const of_db_tx *tx);
/* Why the last operation on the transaction failed (OF_DB_OK after a success); the message
 * is valid until the next operation. */
of_db_error of_db_tx_error(const of_db_tx *tx, const char **message);
/* The AUTO_INCREMENT id of the last insert in the transaction. */
int64_t of_db_tx_last_insert_id(const of_db_tx *tx);

/* Records an event as applied by a consumer group: 1 recorded now, 0 already recorded (the
 * event was applied before: skip it), -1 error. The row becomes visible with the commit. */
int of_db_inbox_record(of_db_tx *tx, const char *group, const char *event_id);
/* The same for n events in a few multi-row statements (a batch): returns how many were recorded
 * now (n when none was applied before; fewer says some were, not which), or -1. */
int64_t of_db_inbox_record_many(of_db_tx *tx, const char *group, const char *const *event_ids,
                                size_t n);
/* Writes an event to the outbox in the transaction (key, payload and headers byte-exact);
 * *id (may be NULL) gets its id. 0 or -1. */
int of_db_outbox_add(of_db_tx *tx, const char *topic, const of_event *ev, const char *source,
                     int64_t *id);
/* One row for of_db_outbox_add_many: borrowed for the call. */
typedef struct of_db_outbox_row {
    const char *topic;
    const of_event *ev;
    const char *source; /* may be NULL */
} of_db_outbox_row;
/* Writes n events to the outbox in the transaction, in order, in a few multi-row statements
 * (one row each where the server has no RETURNING: of_db_conn_returning); ids[i] (n of them,
 * may be NULL) gets row i's id, rising with i. 0 or -1 (nothing is known about which rows went
 * in: roll back). */
int of_db_outbox_add_many(of_db_tx *tx, const of_db_outbox_row *rows, size_t n, int64_t *ids);
/* Marks outbox rows as published, in its own short transactions. 0 or -1 with errstr. */
int of_db_outbox_mark_published(of_db_pool *pool, const int64_t *ids, size_t n, char *errstr,
                                size_t errstr_size);
/* Parks rows the bus refused for good (OF_BUS_ERR_PERMANENT): they stay in the outbox with
 * parked_at and the reason (at most 1000 bytes kept), are never offered again and are not
 * removed by the cleanup, for an operator to look at. 0 or -1. */
int of_db_outbox_park(of_db_pool *pool, const int64_t *ids, size_t n, const char *reason,
                      char *errstr, size_t errstr_size);
/* One unpublished outbox row: the event has key, payload and headers; topic, partition and
 * offset are not set. Valid during the call. Return 0 to go on, non-zero to stop. */
typedef int (*of_db_outbox_fn)(void *opaque, int64_t id, const char *topic, const of_event *ev);
/* Calls fn for up to `limit` unpublished rows created at least older_than_ms ago (by the
 * database's clock), oldest first, after reading them (no connection is held during fn).
 * Returns the number of rows read, or -1 with errstr. */
int64_t of_db_outbox_fetch_unpublished(of_db_pool *pool, int64_t older_than_ms, size_t limit,
                                       of_db_outbox_fn fn, void *opaque, char *errstr,
                                       size_t errstr_size);
/* The same for the unpublished rows an input event wrote (`source` as given to outbox_add), in
 * the order they were written: a redelivered event that was applied before publishes them
 * before the events after it, so per-key order holds. */
int64_t of_db_outbox_fetch_source(of_db_pool *pool, const char *source, of_db_outbox_fn fn,
                                  void *opaque, char *errstr, size_t errstr_size);
/* Deletes inbox rows applied and outbox rows published more than retention_ms ago, in batches
 * of OF_DB_CLEANUP_BATCH rows each in its own transaction. Returns the rows deleted or -1. */
#define OF_DB_CLEANUP_BATCH 1000
int64_t of_db_cleanup(of_db_pool *pool, int64_t retention_ms, char *errstr, size_t errstr_size);

/* The outbox's header encoding: a version byte 0x01, then per header a LEB128 varint name
 * length, the name, a varint value length and the value. Encode returns a malloc'ed buffer
 * (*len bytes) or NULL on no memory; decode appends the headers to ev: 0, or -1 for a
 * malformed buffer or no memory. */
void *of_db_headers_encode(const of_event *ev, size_t *len);
int of_db_headers_decode(of_event *ev, const void *buf, size_t len);

/* ---------------------------------------------------------------------------------------------
 * Migrations (db_migrate.c)
 * ------------------------------------------------------------------------------------------- */

#define OF_DB_HOST_COMPONENT "orderflow"
#define OF_DB_MIGRATE_LOCK   "orderflow.migrate"

/* SHA-256 (FIPS 180-4). */
void of_sha256(const void *data, size_t len, uint8_t out[32]);
void of_sha256_hex(const void *data, size_t len, char out[65]); /* lowercase, NUL-terminated */

/* The host's own migrations (component "orderflow"): the inbox and the outbox. The table
 * of_schema_migrations itself is created by of_db_migrate when missing. */
const of_migration *of_db_host_migrations(void);
/* The migrations of a plugin's descriptor (ABI 1.1), or NULL (none, or a 1.0 descriptor). */
const of_migration *of_plugin_migrations(const of_stage_descriptor *desc);
/* Checks an array: versions 1, 2, 3 ... without gap, names and SQL present. 0 or -1. */
int of_db_migrations_check(const char *component, const of_migration *migs, char *errstr,
                           size_t errstr_size);

/* Called after each migration applied. */
typedef void (*of_db_migrate_fn)(void *opaque, const char *component, const of_migration *m);

/* Applies the migrations of a component the database lacks, in version order, each recorded
 * (with the SHA-256 of its SQL) right after it ran, under the server lock
 * OF_DB_MIGRATE_LOCK so that hosts starting together apply each once; `applied` (may be NULL)
 * hears of each. An applied migration whose SQL changed is an error, as is a bad array.
 * Returns 0, or -1 with errstr. */
int of_db_migrate(of_db_pool *pool, const char *component, const of_migration *migs,
                  of_db_migrate_fn applied, void *opaque, char *errstr, size_t errstr_size);
/* The host's migrations, then each plugin's that has some, in registry order (every array is
 * checked before any runs). 0 or -1. */
int of_db_migrate_all(of_db_pool *pool, const of_plugin_registry *reg, of_db_migrate_fn applied,
                      void *opaque, char *errstr, size_t errstr_size);

/* ---------------------------------------------------------------------------------------------
 * The db_* functions of the host table (hostapi_db.c): each works on call->tx; without one
 * (no database, or a stage without OF_STAGE_DATABASE) they fail with NOT_CONFIGURED.
 * ------------------------------------------------------------------------------------------- */

int64_t of_api_db_exec(of_call *call, const char *sql, const of_db_value *params, size_t n_params);
of_db_rows *of_api_db_query(of_call *call, const char *sql, const of_db_value *params,
                            size_t n_params);
int of_api_db_rows_next(of_db_rows *rows);
size_t of_api_db_rows_columns(const of_db_rows *rows);
int of_api_db_rows_get(const of_db_rows *rows, size_t column, of_db_value *out);
void of_api_db_rows_free(of_db_rows *rows);
int64_t of_api_db_last_insert_id(of_call *call);
of_db_error of_api_db_last_error(of_call *call, const char **message);

#endif
