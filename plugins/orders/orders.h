/*
 * orders: shared declarations of the stage (orders.c: descriptor, schema, transitions and
 * helpers), its saga consumer (orders_saga.c: process()), its order intake (orders_place.c) and its
 * other HTTP routes (orders_http.c).
 */
#ifndef ORDERFLOW_ORDERS_H
#define ORDERFLOW_ORDERS_H

#include <orderflow/stage.h>

#include "ofp_http.h"
#include "ofp_json.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define ORD_ID_LEN        36   /* orders.id CHAR(36): a UUID v7 */
#define ORD_EVENT_ID_MAX  64   /* order ids accepted in events (looked up, never stored) */
#define ORD_CUSTOMER_MAX  64   /* orders.customer_id VARCHAR(64) */
#define ORD_SKU_MAX       64   /* order_items.sku VARCHAR(64) */
#define ORD_IDEM_MAX      128  /* orders.idempotency_key VARCHAR(128) */
#define ORD_REASON_MAX    255  /* order_history.reason VARCHAR(255) */
#define ORD_LINES_MAX     100  /* lines of one order */
#define ORD_QTY_MAX       1000 /* quantity of one line */
#define ORD_STATUS_TTL_MS (24LL * 3600 * 1000)

/* The history's last seq of the order `o`, read without locks, as a column of a SELECT on
 * `orders o`. orders.history_seq (read under the row lock) is the seq a writer must follow; this
 * covers a host from before migration 2 that moved an order without counting (a rolling upgrade):
 * the next seq is past both. */
#define ORD_HISTORY_MAX_SQL                                                                        \
    "(SELECT COALESCE(MAX(h.seq), 0) FROM order_history h WHERE h.order_id = o.id)"

typedef struct orders {
    const of_host_api *api;
    of_stage *stage;
    int has_cache;
    int cache_after_commit; /* the host has cache_set_after_commit (ABI 1.4) */
    of_counter *placed, *transitions, *ignored, *refunds;
} orders;

/* Outcome of a conditional transition. */
typedef enum ord_tr {
    ORD_TR_DONE = 1,      /* moved, history appended, status event emitted */
    ORD_TR_NOT_IN = 0,    /* the order is not in `from` (or unknown): nothing changed */
    ORD_TR_DB_ERROR = -1, /* see db_last_error */
    ORD_TR_EMIT_ERROR = -2
} ord_tr;

/* ---- orders.c ---- */

/* A new order id, a time-ordered UUID (ofp_uuid), into out (ORD_ID_LEN + 1 bytes); 0, or -1. */
int ord_uuid(char out[ORD_ID_LEN + 1]);
/* 1 when s has the shape of an id this plugin generates (lower-case UUID). */
int ord_valid_id(const char *s);
/* 1 when s (len bytes) is a SKU: 1..64 of [A-Za-z0-9._-]. */
int ord_valid_sku(const char *s, size_t len);
/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t ord_now_ms(void);
/* 1 when v is the text s. */
int ord_text_eq(const of_db_value *v, const char *s);
/* 1 for CONFIRMED, REJECTED, CANCELLED. */
int ord_terminal(const char *status);

/* Emits the text of w on output with ce_type `type`, keyed by order_id, and frees w (the text
 * is written with ofp_json.h: the events are made for every order, where a jansson document
 * costs a dozen allocations); 0, or -1 (also when w has no text). */
int ord_emit(orders *o, of_call *call, const char *output, const char *type, const char *order_id,
             ofp_jw *w);

/* Emits a command {order_id, reason} (reason NULL: {order_id}) as ord_emit does. */
int ord_emit_command(orders *o, of_call *call, const char *output, const char *type,
                     const char *order_id, const char *reason);

/* Emits order.status_changed {order_id, customer_id, seq, from (NULL: JSON null), to, reason,
 * at} on "status", keyed by the order id; 0, or -1. */
int ord_emit_status(orders *o, of_call *call, const char *order_id, const char *customer,
                    int64_t seq, const char *from, const char *to, const char *reason,
                    const char *at);

/* The order's current status and customer (copied into the buffers): 1 found, 0 unknown,
 * -1 database error. `lock` adds FOR UPDATE. */
int ord_load_head(orders *o, of_call *call, const char *order_id, int lock, char status[17],
                  char customer[ORD_CUSTOMER_MAX + 1]);

/* `UPDATE orders SET status=to ... WHERE id=? AND status=from`; when a row moved: appends the
 * history row (seq = max + 1), emits order.status_changed (with that seq) on "status" and caches
 * "<seq>:<to>" under order:<id>:status. The HTTP routes' move; the saga moves orders in sets
 * (orders_saga.c). */
ord_tr ord_transition(orders *o, of_call *call, const char *order_id, const char *from,
                      const char *to, const char *reason);
/* One step of a path: the status moved to, and why. */
typedef struct ord_step {
    const char *to;
    const char *reason;
} ord_step;
/* reason cut to ORD_REASON_MAX bytes (the history column), never inside a UTF-8 sequence. */
void ord_cut_reason(const char *reason, char out[ORD_REASON_MAX + 1]);
/* Caches "<seq>:<status>" for the order once the call commits (best effort). */
void ord_cache_status(orders *o, of_call *call, const char *order_id, int64_t seq,
                      const char *status);

/* ---- orders_saga.c ---- */

of_status ord_process(void *instance, of_call *call);
/* A set of saga events (ABI 1.5 process_batch; ord_process is a set of one). */
void ord_process_batch(void *instance, of_call *const *calls, size_t n, of_status *status);

/* ---- orders_place.c ---- */

/* POST /api/v1/orders: one request, and (ABI 1.6) the requests of a group commit. */
of_status ord_place(void *instance, of_call *call, of_http_request *req);
void ord_place_batch(void *instance, of_call *const *calls, of_http_request *const *reqs, size_t n,
                     of_status *status);

/* ---- orders_http.c ---- */

int ord_http_register(orders *o, char *errstr, size_t errstr_size);

#endif /* ORDERFLOW_ORDERS_H */
