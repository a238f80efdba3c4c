/*
 * orders: the order saga's owner (docs/orders.md, docs/orders-plugin.md).
 *
 * A database stage (OF_STAGE_DATABASE): every try of process() and every route handler runs in
 * the host's transaction, which also records the input in the inbox and what is emitted in the
 * outbox. The HTTP intake (orders_http.c) writes an order and its order.placed in one
 * transaction; process() (orders_saga.c) moves the order through its states on the inventory
 * and payment events. Every move is one conditional UPDATE (`... WHERE id = ? AND status = ?`),
 * so a late or repeated event finds the order elsewhere and changes nothing.
 *
 * Outputs: placed (orders.placed), status (orders.status), inventory (inventory.commands),
 * payment (payment.commands).
 */
#include "orders.h"

#include "ofp_id.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const outputs[] = {"placed", "status", "inventory", "payment", NULL};

static const of_migration migrations[] = {
    {1, "create orders, order_items and order_history",
     "CREATE TABLE orders (\n"
     "  id CHAR(36) NOT NULL,\n"
     "  customer_id VARCHAR(64) NOT NULL,\n"
     "  status VARCHAR(16) NOT NULL,\n"
     "  total_cents BIGINT NOT NULL,\n"
     "  currency CHAR(3) NOT NULL,\n"
     "  idempotency_key VARCHAR(128) NULL,\n"
     "  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  PRIMARY KEY (id),\n"
     "  UNIQUE KEY orders_idempotency (customer_id, idempotency_key),\n"
     "  KEY orders_customer_created (customer_id, created_at)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;\n"
     "CREATE TABLE order_items (\n"
     "  order_id CHAR(36) NOT NULL,\n"
     "  line INT NOT NULL,\n"
     "  sku VARCHAR(64) NOT NULL,\n"
     "  quantity INT NOT NULL,\n"
     "  unit_price_cents BIGINT NOT NULL,\n"
     "  PRIMARY KEY (order_id, line),\n"
     "  CONSTRAINT order_items_order FOREIGN KEY (order_id) REFERENCES orders (id)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;\n"
     "CREATE TABLE order_history (\n"
     "  order_id CHAR(36) NOT NULL,\n"
     "  seq INT NOT NULL,\n"
     "  from_status VARCHAR(16) NULL,\n"
     "  to_status VARCHAR(16) NOT NULL,\n"
     "  reason VARCHAR(255) NOT NULL,\n"
     "  at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  PRIMARY KEY (order_id, seq),\n"
     "  CONSTRAINT order_history_order FOREIGN KEY (order_id) REFERENCES orders (id)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"},
    /* The next history seq must come from a read that waits for the order's other writers (the
     * saga on another host, the cancel route): a locking read of the orders row does, while a
     * MAX(seq) over order_history would either take gap locks that stop the intake's inserts or
     * read a snapshot older than the row lock. IF NOT EXISTS: a rerun after a failed UPDATE. */
    {2, "orders.history_seq: the order's last history seq, kept with its status",
     "ALTER TABLE orders ADD COLUMN IF NOT EXISTS history_seq INT NOT NULL DEFAULT 1;\n"
     "UPDATE orders o SET history_seq = (SELECT COALESCE(MAX(h.seq), 0) FROM order_history h "
     "WHERE h.order_id = o.id)"},
    {0, NULL, NULL},
};

/* ---- small helpers -------------------------------------------------------------------------- */

_Static_assert(ORD_ID_LEN == OFP_UUID_LEN, "orders.id holds a UUID");

int ord_uuid(char out[ORD_ID_LEN + 1])
{
    return ofp_uuid(out);
}

int ord_valid_id(const char *s)
{
    return ofp_valid_uuid(s);
}

int ord_valid_sku(const char *s, size_t len)
{
    if (!s || len == 0 || len > ORD_SKU_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int64_t ord_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ord_text_eq(const of_db_value *v, const char *s)
{
    return v->type == OF_DB_TEXT && v->len == strlen(s) && memcmp(v->p, s, v->len) == 0;
}

int ord_terminal(const char *status)
{
    return strcmp(status, "CONFIRMED") == 0 || strcmp(status, "REJECTED") == 0 ||
           strcmp(status, "CANCELLED") == 0;
}

int ord_emit(orders *o, of_call *call, const char *output, const char *type, const char *order_id,
             ofp_jw *w)
{
    size_t len = 0;
    const char *text = ofp_jw_text(w, &len);
    of_header h = {.name = "ce_type", .value = type, .value_len = strlen(type)};
    int rc = text ? o->api->emit(call, output, order_id, strlen(order_id), text, len, &h, 1) : -1;
    ofp_jw_free(w);
    return rc;
}

int ord_emit_command(orders *o, of_call *call, const char *output, const char *type,
                     const char *order_id, const char *reason)
{
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "order_id", order_id);
    if (reason)
        ofp_jw_str(&w, "reason", reason);
    ofp_jw_end(&w);
    return ord_emit(o, call, output, type, order_id, &w);
}

int ord_emit_status(orders *o, of_call *call, const char *order_id, const char *customer,
                    int64_t seq, const char *from, const char *to, const char *reason,
                    const char *at)
{
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "order_id", order_id);
    ofp_jw_str(&w, "customer_id", customer);
    ofp_jw_int(&w, "seq", seq);
    ofp_jw_str(&w, "from", from);
    ofp_jw_str(&w, "to", to);
    ofp_jw_str(&w, "reason", reason);
    ofp_jw_str(&w, "at", at);
    ofp_jw_end(&w);
    return ord_emit(o, call, "status", "order.status_changed", order_id, &w);
}

/* ---- reading and moving an order ------------------------------------------------------------ */

/* Copies a text column into out (size bytes); 0, or -1 when not text or too long. */
static int text_col(const of_host_api *api, of_db_rows *rows, size_t col, char *out, size_t size)
{
    of_db_value v;
    if (api->db_rows_get(rows, col, &v) != 0 || v.type != OF_DB_TEXT || v.len >= size)
        return -1;
    memcpy(out, v.p, v.len);
    out[v.len] = '\0';
    return 0;
}

int ord_load_head(orders *o, of_call *call, const char *order_id, int lock, char status[17],
                  char customer[ORD_CUSTOMER_MAX + 1])
{
    const of_host_api *api = o->api;
    of_db_value p = OF_DB_S(order_id);
    of_db_rows *rows =
        api->db_query(call,
                      lock ? "SELECT status, customer_id FROM orders WHERE id = ? FOR UPDATE"
                           : "SELECT status, customer_id FROM orders WHERE id = ?",
                      &p, 1);
    if (!rows)
        return -1;
    int r = api->db_rows_next(rows);
    if (r == 1 && (text_col(api, rows, 0, status, 17) != 0 ||
                   text_col(api, rows, 1, customer, ORD_CUSTOMER_MAX + 1) != 0)) {
        api->log(o->stage, OF_LOG_ERROR, "order %s: unexpected row shape", order_id);
        r = -1;
    }
    api->db_rows_free(rows);
    return r;
}

void ord_cache_status(orders *o, of_call *call, const char *order_id, int64_t seq,
                      const char *status)
{
    if (!o->has_cache)
        return;
    char key[80], value[48];
    snprintf(key, sizeof(key), "order:%s:status", order_id);
    int n = snprintf(value, sizeof(value), "%" PRId64 ":%s", seq, status);
    /* After the commit when the host can (ABI 1.4): the cache never shows a transition that
     * was rolled back, and the transaction does not wait for Redis holding the order's row. */
    int rc = o->cache_after_commit
                 ? o->api->cache_set_after_commit(call, key, value, (size_t)n, ORD_STATUS_TTL_MS)
                 : o->api->cache_set(o->stage, key, value, (size_t)n, ORD_STATUS_TTL_MS);
    if (rc != 0)
        o->api->log(o->stage, OF_LOG_DEBUG, "order %s: status not cached (Redis unavailable)",
                    order_id);
}

void ord_cut_reason(const char *reason, char out[ORD_REASON_MAX + 1])
{
    snprintf(out, ORD_REASON_MAX + 1, "%s", reason ? reason : "");
    size_t rl = strlen(out);
    if (reason && strlen(reason) > rl) {
        while (rl > 0 && ((unsigned char)reason[rl] & 0xC0) == 0x80)
            rl--;
        out[rl] = '\0';
    }
}

ord_tr ord_transition(orders *o, of_call *call, const char *order_id, const char *from,
                      const char *to, const char *reason)
{
    const of_host_api *api = o->api;
    of_db_value u[] = {OF_DB_S(to), OF_DB_S(order_id), OF_DB_S(from)};
    int64_t moved = api->db_exec(call,
                                 "UPDATE orders SET status = ?, history_seq = history_seq + 1, "
                                 "updated_at = NOW(3) WHERE id = ? AND status = ?",
                                 u, 3);
    if (moved < 0)
        return ORD_TR_DB_ERROR;
    if (moved == 0)
        return ORD_TR_NOT_IN;
    /* The UPDATE holds the order's row lock and took the next seq from the latest version of the
     * row: the read below sees this transaction's own. The history's MAX(seq) is for orders a
     * host from before migration 2 moved without counting (ORD_HISTORY_MAX_SQL). */
    of_db_value id = OF_DB_S(order_id);
    of_db_rows *rows = api->db_query(call,
                                     "SELECT o.customer_id, o.history_seq, " ORD_HISTORY_MAX_SQL
                                     " FROM orders o WHERE o.id = ?",
                                     &id, 1);
    if (!rows)
        return ORD_TR_DB_ERROR;
    char customer[ORD_CUSTOMER_MAX + 1];
    of_db_value seqv = {0}, maxv = {0};
    int r = api->db_rows_next(rows);
    if (r == 1 && (text_col(api, rows, 0, customer, sizeof(customer)) != 0 ||
                   api->db_rows_get(rows, 1, &seqv) != 0 || seqv.type != OF_DB_INT ||
                   api->db_rows_get(rows, 2, &maxv) != 0 || maxv.type != OF_DB_INT))
        r = -2;
    api->db_rows_free(rows);
    if (r != 1) {
        if (r == -2)
            api->log(o->stage, OF_LOG_ERROR, "order %s: unexpected row shape", order_id);
        return ORD_TR_DB_ERROR;
    }
    int64_t seq = seqv.i, at = ord_now_ms();
    if (maxv.i >= seq) {
        seq = maxv.i + 1;
        of_db_value f[] = {OF_DB_I(seq), OF_DB_S(order_id)};
        if (api->db_exec(call, "UPDATE orders SET history_seq = ? WHERE id = ?", f, 2) < 0)
            return ORD_TR_DB_ERROR;
    }
    char why[ORD_REASON_MAX + 1];
    ord_cut_reason(reason, why);
    of_db_value h[] = {OF_DB_S(order_id), OF_DB_I(seq), OF_DB_S(from),
                       OF_DB_S(to),       OF_DB_S(why), OF_DB_I(at)};
    if (api->db_exec(call,
                     "INSERT INTO order_history (order_id, seq, from_status, to_status, reason, "
                     "at) VALUES (?, ?, ?, ?, ?, FROM_UNIXTIME(? / 1000))",
                     h, 6) < 0)
        return ORD_TR_DB_ERROR;
    char when[40];
    ofp_rfc3339_ms(at, when, sizeof(when));
    if (ord_emit_status(o, call, order_id, customer, seq, from, to, why, when) != 0)
        return ORD_TR_EMIT_ERROR;
    api->log(o->stage, OF_LOG_INFO, "order %s: %s -> %s (%s)", order_id, from, to, why);
    ord_cache_status(o, call, order_id, seq, to);
    api->counter_add(o->transitions, 1);
    return ORD_TR_DONE;
}

/* ---- the stage ------------------------------------------------------------------------------ */

static int orders_init(of_stage *stage, const of_host_api *api, const of_config *cfg,
                       void **instance, char *errstr, size_t errstr_size)
{
    (void)cfg;
    if (!OF_API_HAS(api, db_exec) || !OF_API_HAS(api, db_last_error) ||
        !OF_API_HAS(api, http_handler) || !OF_API_HAS(api, http_problem)) {
        snprintf(errstr, errstr_size, "this host lacks the database or HTTP functions (ABI 1.1)");
        return -1;
    }
    orders *o = calloc(1, sizeof(*o));
    if (!o) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    o->api = api;
    o->stage = stage;
    o->has_cache = OF_API_HAS(api, cache_get) && OF_API_HAS(api, cache_set);
    o->cache_after_commit = OF_API_HAS(api, cache_set_after_commit);
    o->placed = api->counter_register(stage, "orders_placed_total", "orders placed");
    o->transitions =
        api->counter_register(stage, "orders_transitions_total", "order status transitions");
    o->ignored = api->counter_register(stage, "orders_ignored_events_total",
                                       "saga events that found the order in another state");
    o->refunds = api->counter_register(stage, "orders_late_capture_refunds_total",
                                       "captures of cancelled orders sent back for a refund");
    if (ord_http_register(o, errstr, errstr_size) != 0) {
        free(o);
        return -1;
    }
    *instance = o;
    return 0;
}

static void orders_shutdown(void *instance)
{
    free(instance);
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "orders",
    .version = "1.0.0",
    .description = "order intake over HTTP and the order saga's state machine",
    .options = NULL,
    .outputs = outputs,
    .init = orders_init,
    .process = ord_process,
    .shutdown = orders_shutdown,
    .process_batch = ord_process_batch,
    .flags = OF_STAGE_DATABASE,
    .migrations = migrations,
    /* Its input topics carry the other outcomes too (committed, released, refunded): the host
     * acknowledges those without a transaction. */
    .accepts = (const char *const[]){"inventory.reserved", "inventory.rejected", "payment.captured",
                                     "payment.declined", NULL},
};

OF_STAGE_DEFINE(descriptor)
