/*
 * orderflow stage SDK: the host function table.
 *
 * The host hands a plugin this table in init(); it is the plugin's only way to reach the host
 * (the plugin links against nothing of it). The table is versioned and append-only: a function
 * added in a later minor version sits after the ones before it, and `size` says how far the
 * table a host passed reaches. Test with OF_API_HAS(api, fn) before calling a function newer
 * than ABI 1.0; a host may also leave a slot NULL when it does not offer that service (for
 * example a database function on a host configured without a database).
 *
 * Ownership, unless a function says otherwise:
 *  - pointers the host returns are owned by the host and valid for the lifetime the function
 *    names (usually "during this process() call");
 *  - pointers the plugin passes in are only read during the call; the host copies what it keeps.
 */
#ifndef ORDERFLOW_HOST_API_H
#define ORDERFLOW_HOST_API_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct of_stage of_stage;
typedef struct of_config of_config;
typedef struct of_call of_call;

/* What process() returns. */
typedef enum of_status {
    OF_OK = 0,    /* done: what was emitted is published, the input is acknowledged */
    OF_RETRY = 1, /* transient failure: what was emitted is discarded and the event is offered
                     again after the stage's backoff, up to retry.max_attempts */
    OF_REJECT = 2 /* permanent failure: what was emitted is discarded and the event goes to the
                     stage's dead-letter topic with the reason set by api->set_reason */
} of_status;

typedef enum of_log_level {
    OF_LOG_ERROR = 0,
    OF_LOG_WARN = 1,
    OF_LOG_INFO = 2,
    OF_LOG_DEBUG = 3
} of_log_level;

/* A header on an event: a name and a byte value. */
typedef struct of_header {
    const char *name;  /* NUL-terminated */
    const void *value; /* value_len bytes, not necessarily NUL-terminated */
    size_t value_len;
} of_header;

/* A custom metric a plugin declares. Owned by the host, valid until the plugin is unloaded. */
typedef struct of_counter of_counter;
typedef struct of_histogram of_histogram;

/* ---- ABI 1.1: database, cache and HTTP ---------------------------------------------------- */

/* A value bound to a `?` placeholder, or read from a result column. Text and blobs are pointers
 * with a length: parameters are only read during the call; column values the host returns stay
 * valid until the next db_rows_next or db_rows_free. */
typedef enum of_db_type {
    OF_DB_NULL = 0,
    OF_DB_INT = 1,    /* i */
    OF_DB_DOUBLE = 2, /* d */
    OF_DB_TEXT = 3,   /* p, len (not NUL-terminated as a parameter; NUL-terminated as a column) */
    OF_DB_BLOB = 4    /* p, len */
} of_db_type;

typedef struct of_db_value {
    of_db_type type;
    int64_t i;
    double d;
    const void *p;
    size_t len;
} of_db_value;

#define OF_DB_I(v)     ((of_db_value){.type = OF_DB_INT, .i = (v)})
#define OF_DB_D(v)     ((of_db_value){.type = OF_DB_DOUBLE, .d = (v)})
#define OF_DB_S(s)     ((of_db_value){.type = OF_DB_TEXT, .p = (s), .len = strlen(s)})
#define OF_DB_SN(s, n) ((of_db_value){.type = OF_DB_TEXT, .p = (s), .len = (n)})
#define OF_DB_NULLV    ((of_db_value){.type = OF_DB_NULL})

/* Why a database call failed; a stage maps TRANSIENT and UNAVAILABLE to OF_RETRY. */
typedef enum of_db_error {
    OF_DB_OK = 0,
    OF_DB_ERR_DUPLICATE = 1,     /* a unique key already has this value */
    OF_DB_ERR_CONSTRAINT = 2,    /* another constraint (foreign key, check, not null) */
    OF_DB_ERR_TRANSIENT = 3,     /* deadlock or lock wait timeout: try the event again */
    OF_DB_ERR_UNAVAILABLE = 4,   /* no connection to the database: try again later */
    OF_DB_ERR_OTHER = 5,         /* a bad statement or anything else: a bug, not the input */
    OF_DB_ERR_NOT_CONFIGURED = 6 /* the host has no database, or the stage did not ask for one */
} of_db_error;

typedef struct of_db_rows of_db_rows;

/* An HTTP request routed to a plugin's handler. Owned by the host; valid during the handler. */
typedef struct of_http_request of_http_request;

/* A route handler: answers the request with api->http_respond or api->http_problem (a handler
 * that answers neither gets a 500). Runs in an of_call like process(): database work is one
 * transaction, committed when the handler returns OF_OK and rolled back otherwise; events it
 * emits are written to the outbox in that transaction and published after the commit. Return
 * OF_OK, OF_RETRY (answered 503 with Retry-After unless the handler answered) or OF_REJECT. */
typedef of_status (*of_http_handler)(void *instance, of_call *call, of_http_request *request);

/* A batch handler (ABI 1.6, optional): requests to a route with `batch:` in the pipeline, which
 * share one transaction, handed over at once so the stage can do its database work for all of
 * them in a few set-based statements, as process_batch does for events (stage.h). Requests that
 * arrive while the route's transactions are busy wait and then go together, up to `batch` of
 * them: a lone request waits for nothing and goes through the handler, so both must do the same.
 *   calls, requests - n of each, requests[i] answered in calls[i]: each call has its own emits,
 *                     reason and cache writes; the database functions work with any of them, as
 *                     they share one transaction. Host-owned, valid during this call.
 *   n      - at least 2.
 *   status - out: what the handler would have returned for requests[i]; the host sets them all
 *            to OF_RETRY before the call, so an entry left alone is a retry. A request answered
 *            with no database work done for it (a 400 for a malformed body, say) may be left
 *            OF_OK: it adds nothing to the transaction, and it does not hold the others back.
 * When every status is OF_OK the transaction commits, then each request's events are published
 * and its answer sent (a failed commit answers them all 503). Otherwise it rolls back and: the
 * OF_OK requests run again together without the others (their answers are dropped first); a
 * request that was answered keeps its answer; one that was not runs again alone through the
 * handler, in a transaction of its own. When the transaction's last statement failed as the
 * handler returned (a duplicate key in one row fails a whole multi-row INSERT), no status but
 * OF_OK is taken as the request's own: each of those runs alone, where a culprit answers for
 * itself. Runs on one of the gateway's threads, not necessarily the one that received a
 * request: what belongs to a request is reached through its call and request only. */
typedef void (*of_http_batch_handler)(void *instance, of_call *const *calls,
                                      of_http_request *const *requests, size_t n,
                                      of_status *status);

/* The identity a verified token carries. Strings are copied by the host. */
typedef struct of_principal {
    const char *subject;      /* e.g. the user id */
    const char *const *roles; /* NULL-terminated */
} of_principal;

/* An authenticator checks a bearer token for the gateway's auth filter. Returns 0 and fills
 * *out (pointers valid until the next call on this thread) or -1 with a reason in errstr,
 * which the client sees in the 401 problem's detail. Called on the gateway's threads. */
typedef int (*of_authenticator)(void *instance, const char *token, of_principal *out, char *errstr,
                                size_t errstr_size);

typedef struct of_host_api {
    uint32_t abi_major; /* the host's OF_ABI_MAJOR */
    uint32_t abi_minor; /* the host's OF_ABI_MINOR */
    uint32_t size;      /* sizeof(of_host_api) in the host: which functions exist */

    /* ---- memory: the host's allocator, so memory can cross the boundary safely ---- */
    void *(*alloc)(size_t size);              /* NULL on failure; free with api->free */
    void *(*calloc)(size_t n, size_t size);   /* zeroed */
    void *(*realloc)(void *ptr, size_t size); /* as realloc(3) */
    void (*free)(void *ptr);                  /* NULL is fine */
    char *(*strdup)(const char *s);           /* free with api->free */

    /* ---- logging: the host adds time, pipeline and stage; secrets are the caller's duty ---- */
    void (*log)(of_stage *stage, of_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    int (*log_enabled)(of_stage *stage, of_log_level level); /* skip costly formatting */

    /* ---- configuration: valid only inside init; `name` must be in the option table ---- */
    /* String, enum or secret value; NULL when unset and without default. Valid during init. */
    const char *(*config_string)(const of_config *cfg, const char *name);
    int64_t (*config_int)(const of_config *cfg, const char *name);
    int (*config_bool)(const of_config *cfg, const char *name);
    double (*config_double)(const of_config *cfg, const char *name);
    int64_t (*config_duration_ms)(const of_config *cfg, const char *name);
    uint64_t (*config_size)(const of_config *cfg, const char *name);
    /* Index of an enum value in the option's enum_values; -1 when unset. */
    int (*config_enum)(const of_config *cfg, const char *name);
    /* Items of a list option; index out of range gives NULL. Valid during init. */
    size_t (*config_list_count)(const of_config *cfg, const char *name);
    const char *(*config_list_item)(const of_config *cfg, const char *name, size_t index);
    /* 1 when the option was given in config: (not only defaulted). */
    int (*config_is_set)(const of_config *cfg, const char *name);

    /* ---- the input event of a process() call: pointers valid during that call ---- */
    const void *(*event_key)(const of_call *call, size_t *len);     /* NULL, 0 when keyless */
    const void *(*event_payload)(const of_call *call, size_t *len); /* never NULL; may be empty */
    /* Value of the first header with this name, or NULL. */
    const void *(*event_header)(const of_call *call, const char *name, size_t *len);
    size_t (*event_header_count)(const of_call *call);
    /* Header at index (0 .. count-1); returns 0 and fills *out, or -1 out of range. */
    int (*event_header_at)(const of_call *call, size_t index, of_header *out);
    const char *(*event_topic)(const of_call *call); /* the topic it was read from */
    int32_t (*event_partition)(const of_call *call);
    int64_t (*event_offset)(const of_call *call);
    /* 1 on the first try, 2 on the first retry, ... */
    int (*event_attempt)(const of_call *call);

    /* ---- emitting: events are buffered and published only if process() returns OF_OK ---- */
    /* Emit on a declared output (descriptor.outputs). key may be NULL (the input's key is kept,
     * so one order's events stay on one partition). Headers are copied; the host adds the
     * CloudEvents and traceparent headers the output inherits from the input unless given here.
     * Returns 0, or -1 for an unknown output (also logged) or no memory. */
    int (*emit)(of_call *call, const char *output, const void *key, size_t key_len,
                const void *payload, size_t payload_len, const of_header *headers,
                size_t header_count);
    /* The reason recorded with OF_REJECT or OF_RETRY; copied; the last call wins. */
    void (*set_reason)(of_call *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

    /* ---- custom metrics: register in init, update from any thread ---- */
    /* name: [a-z_][a-z0-9_]*; the host prefixes it and labels it with pipeline and stage.
     * Registering the same name twice returns the same metric. NULL on bad name. */
    of_counter *(*counter_register)(of_stage *stage, const char *name, const char *help);
    void (*counter_add)(of_counter *counter, double delta); /* delta >= 0 */
    /* bounds: ascending upper bounds, copied; count at most 32. */
    of_histogram *(*histogram_register)(of_stage *stage, const char *name, const char *help,
                                        const double *bounds, size_t count);
    void (*histogram_observe)(of_histogram *histogram, double value);

    /* ---- identity ---- */
    const char *(*stage_name)(const of_stage *stage);    /* valid until shutdown */
    const char *(*pipeline_name)(const of_stage *stage); /* valid until shutdown */

    /* ---- ABI 1.1: database (the host's MySQL pool) ---- */
    /* Every function runs inside the transaction the host opened for this call (for a stage
     * with OF_STAGE_DATABASE, or a route handler); the host also records the input event's id
     * there (so a redelivered event is never applied twice) and the emitted events (published
     * only after the commit). With the pipeline's `batch:` several calls share the transaction;
     * a call that does not return OF_OK makes the host roll it back and run the calls before it
     * again without it (process() may run more than once for an event; the run that commits
     * counts). A stage with process_batch (ABI 1.5, stage.h) gets such calls together and may
     * pass any of them here: the statement runs in their one transaction.
     * Statements use `?` placeholders: never build SQL from input. */
    /* Rows affected, or -1 (see db_last_error). */
    int64_t (*db_exec)(of_call *call, const char *sql, const of_db_value *params, size_t n_params);
    /* A result set read with db_rows_next; NULL on error. Free with db_rows_free. */
    of_db_rows *(*db_query)(of_call *call, const char *sql, const of_db_value *params,
                            size_t n_params);
    /* 1 when a row is available, 0 at the end, -1 on error. */
    int (*db_rows_next)(of_db_rows *rows);
    size_t (*db_rows_columns)(const of_db_rows *rows);
    /* The current row's column; 0, or -1 for a bad index. Valid until the next row. */
    int (*db_rows_get)(const of_db_rows *rows, size_t column, of_db_value *out);
    void (*db_rows_free)(of_db_rows *rows);
    int64_t (*db_last_insert_id)(of_call *call);
    /* Why the last db call of this call failed; message valid until the next db call. */
    of_db_error (*db_last_error)(of_call *call, const char **message);

    /* ---- ABI 1.1: cache (the host's Redis pool) ---- */
    /* All fail fast (-1) when Redis is not configured or unreachable: a cache is optional, so
     * a stage goes on without it. Keys are prefixed by the host's configured namespace. */
    /* 1 found (*value allocated with api->alloc, free with api->free; NUL-terminated), 0 not
     * found, -1 unavailable. */
    int (*cache_get)(of_stage *stage, const char *key, char **value, size_t *len);
    /* ttl_ms 0: no expiry. 0 or -1. */
    int (*cache_set)(of_stage *stage, const char *key, const void *value, size_t len,
                     int64_t ttl_ms);
    int (*cache_del)(of_stage *stage, const char *key);
    /* Atomic add; sets the expiry when the key is created. 0 and *result, or -1. */
    int (*cache_incr)(of_stage *stage, const char *key, int64_t delta, int64_t ttl_ms,
                      int64_t *result);
    int (*cache_publish)(of_stage *stage, const char *channel, const void *msg, size_t len);

    /* ---- ABI 1.1: HTTP (the host's gateway) ---- */
    /* In init: makes a handler available under a name; the pipeline's `routes:` map a method
     * and path to "stage.handler". 0, or -1 for a bad or duplicate name. */
    int (*http_handler)(of_stage *stage, const char *name, of_http_handler fn);
    /* In init: this stage verifies bearer tokens for routes with `auth: required`. */
    int (*http_authenticator)(of_stage *stage, of_authenticator fn);
    const char *(*http_method)(const of_http_request *req);
    const char *(*http_path)(const of_http_request *req);
    /* A `{name}` path parameter, a query parameter (decoded) or a header; NULL when absent. */
    const char *(*http_param)(const of_http_request *req, const char *name);
    const char *(*http_query)(const of_http_request *req, const char *name);
    const char *(*http_header)(const of_http_request *req, const char *name);
    /* The body (at most the configured limit; larger ones are refused with 413 before the
     * handler runs). Never NULL. */
    const void *(*http_body)(const of_http_request *req, size_t *len);
    /* The verified caller for `auth: required` routes, NULL otherwise. */
    const of_principal *(*http_principal)(const of_http_request *req);
    /* Answers: status, content type (NULL: application/json), body (copied), extra headers
     * as "Name: value" strings (NULL-terminated array or NULL). 0, or -1 when already answered. */
    int (*http_respond)(of_http_request *req, int status, const char *content_type,
                        const void *body, size_t len, const char *const *headers);
    /* An RFC 9457 application/problem+json answer. */
    int (*http_problem)(of_http_request *req, int status, const char *title, const char *detail);

    /* ---- ABI 1.2: WebSocket (the host's gateway) ---- */
    /* A route with `websocket: true` in the pipeline's `routes:` is a GET a client upgrades to
     * a WebSocket. Its handler runs like any other (auth filter, roles, path parameters, a
     * database transaction) before the upgrade: answering with http_problem (or http_respond)
     * refuses the upgrade with that answer; returning OF_OK without answering accepts it, with
     * the subscriptions and first messages the handler set up with ws_subscribe and ws_send.
     * A client without an Authorization header may give its token as `?access_token=`
     * (browsers cannot set headers on a WebSocket). Messages are text frames (UTF-8 JSON by
     * convention); what clients send is ignored, pings are answered. */

    /* In such a handler: the connection will receive what is published on `channel` (1..128
     * bytes of [A-Za-z0-9:._@-]; channels are per pipeline, so two pipelines never share one).
     * At most 8 per connection. 0, or -1 (bad name, too many, not a WebSocket route). */
    int (*ws_subscribe)(of_http_request *req, const char *channel);
    /* In such a handler: a message sent on the connection right after the upgrade, before any
     * published one (a snapshot of the current state, say); copied. At most 256 KiB in all.
     * 0, or -1. */
    int (*ws_send)(of_http_request *req, const void *msg, size_t len);
    /* From process(), a handler or any thread of the plugin: sends msg (copied, at most 256 KiB)
     * to every connection subscribed to `channel` in this stage's pipeline, on this host and -
     * through Redis pub/sub, when the host has a `redis:` section - on every host sharing the
     * Redis key prefix. Never blocks on a client: messages are queued, and a connection that
     * cannot keep up loses them (counted and logged), as a live view can always re-read the
     * state. Delivery is at most once per publish; a stage that publishes from process() may
     * publish again when an event is retried or redelivered, so messages should carry what a
     * client needs to drop repeats. 0 when queued (even with no subscriber), -1 on a bad
     * channel or message, or when the host has no gateway. */
    int (*ws_publish)(of_stage *stage, const char *channel, const void *msg, size_t len);

    /* ---- ABI 1.4: cache writes that follow the transaction ---- */
    /* cache_set for what the call's database work makes true: the write is kept with the call
     * (key and value copied) and made only once the call's transaction has committed - with the
     * other kept writes of that transaction (a batch's too) in one pipelined round trip, before
     * what the call emitted is published - and dropped when the call does not commit (it returns
     * OF_RETRY or OF_REJECT, its batch's transaction is rolled back, the commit fails). A call
     * without a transaction (a stage without OF_STAGE_DATABASE) makes its writes when it returns
     * OF_OK. So a reader never finds a value the database does not have (it may find the one
     * before for a moment), and the stage does not wait for Redis while it holds row locks. Best
     * effort, like cache_set: a write that fails after the commit is counted and logged at debug
     * level, not retried. A call keeps at most 64 writes of at most 64 KiB each. key: 1..512
     * bytes; ttl_ms 0: no expiry. 0 when kept, -1 for bad arguments, too many or too large
     * writes, no memory, or a host without a `redis:` section. */
    int (*cache_set_after_commit)(of_call *call, const char *key, const void *value, size_t len,
                                  int64_t ttl_ms);

    /* ---- ABI 1.6: group commit for HTTP routes ---- */
    /* In init: the batch form of the handler registered (with http_handler, before this) under
     * `name`, for routes with `batch:` (see of_http_batch_handler). A route with `batch:` whose
     * handler has no batch form runs its requests one after the other in their shared
     * transaction. 0, or -1 for an unknown name, a second registration or a NULL fn. */
    int (*http_batch_handler)(of_stage *stage, const char *name, of_http_batch_handler fn);

    /* Later minor versions append functions here. */
} of_host_api;

/* True when the table a host passed has `fn` and it is not NULL. */
#define OF_API_HAS(api, fn)                                                                        \
    ((api) != NULL && offsetof(of_host_api, fn) + sizeof((api)->fn) <= (size_t)(api)->size &&      \
     (api)->fn != NULL)

#ifdef __cplusplus
}
#endif

#endif /* ORDERFLOW_HOST_API_H */
