/*
 * inventory: products, stock and reservations for the order saga (docs/orders.md,
 * docs/inventory.md).
 *
 * A database stage (OF_STAGE_DATABASE): each try of process() runs in the host's transaction,
 * which also records the input in the inbox and what is emitted in the outbox. It consumes
 *
 *   order.placed       (orders.placed)       -> reserves every line or none; emits
 *                                                inventory.reserved or inventory.rejected
 *   inventory.release  (inventory.commands)  -> RESERVED lines go back to available;
 *                                                emits inventory.released when any did
 *   inventory.commit   (inventory.commands)  -> RESERVED lines leave on-hand stock;
 *                                                emits inventory.committed when any did
 *
 * and emits on its one output "events" (inventory.events), keyed by the order id, with ce_type
 * set explicitly. The database decides every reservation: one conditional UPDATE per line
 * (`... WHERE sku = ? AND available >= ?`), in SKU order so that two orders never lock the same
 * rows in opposite orders; when a line cannot be reserved, the lines this try already reserved
 * are given back in the same transaction before the rejection is emitted, so the commit that
 * follows OF_OK leaves stock as it was. A batch's consecutive order.placed, and its consecutive
 * commands, are handled together (process_batch, inventory_batch.c) with the same result.
 *
 * The admin routes (create_product, set_stock, list_products, get_product) are in
 * inventory_http.c.
 */
#include "ofp_http.h"
#include "ofp_sql.h"
#include "inventory.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const of_option options[] = {
    {.name = "max_lines",
     .type = OF_OPT_INT,
     .default_value = "100",
     .description = "most lines an order may have; larger orders are rejected as invalid",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 1,
     .max = INV_LINES_LIMIT},
    {.name = NULL},
};

static const char *const outputs[] = {"events", NULL};

static const of_migration migrations[] = {
    {1, "create products, stock and reservations",
     "CREATE TABLE products (\n"
     "  sku VARCHAR(64) NOT NULL,\n"
     "  name VARCHAR(200) NOT NULL,\n"
     "  price_cents BIGINT NOT NULL,\n"
     "  currency CHAR(3) NOT NULL,\n"
     "  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  PRIMARY KEY (sku),\n"
     "  CONSTRAINT products_price CHECK (price_cents >= 0)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;\n"
     "CREATE TABLE stock (\n"
     "  sku VARCHAR(64) NOT NULL,\n"
     "  on_hand BIGINT NOT NULL,\n"
     "  available BIGINT NOT NULL,\n"
     "  reserved BIGINT NOT NULL,\n"
     "  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) "
     "ON UPDATE CURRENT_TIMESTAMP(3),\n"
     "  PRIMARY KEY (sku),\n"
     "  CONSTRAINT stock_product FOREIGN KEY (sku) REFERENCES products (sku),\n"
     "  CONSTRAINT stock_on_hand CHECK (on_hand >= 0),\n"
     "  CONSTRAINT stock_available CHECK (available >= 0),\n"
     "  CONSTRAINT stock_reserved CHECK (reserved >= 0)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;\n"
     "CREATE TABLE reservations (\n"
     "  order_id VARCHAR(64) NOT NULL,\n"
     "  sku VARCHAR(64) NOT NULL,\n"
     "  quantity BIGINT NOT NULL,\n"
     "  state ENUM('RESERVED','RELEASED','COMMITTED') NOT NULL DEFAULT 'RESERVED',\n"
     "  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) "
     "ON UPDATE CURRENT_TIMESTAMP(3),\n"
     "  PRIMARY KEY (order_id, sku),\n"
     "  KEY reservations_sku (sku),\n"
     "  CONSTRAINT reservations_product FOREIGN KEY (sku) REFERENCES products (sku),\n"
     "  CONSTRAINT reservations_quantity CHECK (quantity > 0)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"},
    {0, NULL, NULL},
};

/* ---- emitting ------------------------------------------------------------------------------- */

/* Emits the text of w with ce_type `type`, keyed by the order id, and frees w. Written with
 * ofp_json.h rather than as a jansson document: an event for every order. */
static of_status inv_emit_event(inventory *inv, of_call *call, const char *type,
                                const char *order_id, ofp_jw *w)
{
    size_t len = 0;
    const char *text = ofp_jw_text(w, &len);
    if (!text) {
        ofp_jw_free(w);
        inv->api->set_reason(call, "out of memory");
        return OF_RETRY;
    }
    of_header h = {.name = "ce_type", .value = type, .value_len = strlen(type)};
    int rc = inv->api->emit(call, "events", order_id, strlen(order_id), text, len, &h, 1);
    ofp_jw_free(w);
    if (rc != 0) {
        inv->api->set_reason(call, "emit %s failed", type);
        return OF_RETRY;
    }
    return OF_OK;
}

of_status inv_emit_rejected(inventory *inv, of_call *call, const char *order_id, const char *reason,
                            const char *sku)
{
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "order_id", order_id);
    ofp_jw_str(&w, "reason", reason);
    if (sku)
        ofp_jw_str(&w, "sku", sku);
    ofp_jw_end(&w);
    of_status st = inv_emit_event(inv, call, "inventory.rejected", order_id, &w);
    if (st == OF_OK)
        inv->api->counter_add(inv->rejected, 1);
    return st;
}

/* ---- order.placed --------------------------------------------------------------------------- */

static int line_cmp(const void *a, const void *b)
{
    return strcmp(((const order_line *)a)->sku, ((const order_line *)b)->sku);
}

/* Validates an order.placed document; 0, or -1 with the reason in why (the order id is filled
 * whenever the document has a usable one). */
int inv_parse_order(inventory *inv, json_t *doc, order *o, char *why, size_t why_size)
{
    char shown[80];
    if (!json_is_object(doc)) {
        snprintf(why, why_size, "the payload is not a JSON object");
        return -1;
    }
    json_t *id = json_object_get(doc, "order_id");
    if (!json_is_string(id) || json_string_length(id) == 0 ||
        json_string_length(id) > INV_ORDER_ID_MAX ||
        strlen(json_string_value(id)) != json_string_length(id)) {
        snprintf(why, why_size, "order_id must be a string of 1 to %d characters",
                 INV_ORDER_ID_MAX);
        return -1;
    }
    snprintf(o->id, sizeof(o->id), "%s", json_string_value(id));
    o->customer_id = json_object_get(doc, "customer_id");
    if (!(json_is_string(o->customer_id) && json_string_length(o->customer_id) > 0) &&
        !json_is_integer(o->customer_id)) {
        snprintf(why, why_size, "customer_id is missing");
        return -1;
    }
    json_t *total = json_object_get(doc, "total_cents");
    if (!json_is_integer(total) || json_integer_value(total) < 0) {
        snprintf(why, why_size, "total_cents must be an integer >= 0");
        return -1;
    }
    o->total_cents = json_integer_value(total);
    json_t *cur = json_object_get(doc, "currency");
    if (!json_is_string(cur) ||
        !inv_valid_currency(json_string_value(cur), json_string_length(cur))) {
        snprintf(why, why_size, "currency must be an ISO 4217 code (three capital letters)");
        return -1;
    }
    o->currency = json_string_value(cur);
    json_t *items = json_object_get(doc, "items");
    if (!json_is_array(items) || json_array_size(items) == 0) {
        snprintf(why, why_size, "items must be a non-empty array");
        return -1;
    }
    if ((int64_t)json_array_size(items) > inv->max_lines) {
        snprintf(why, why_size, "more than %" PRId64 " lines", inv->max_lines);
        return -1;
    }
    o->n_lines = json_array_size(items);
    o->lines = calloc(o->n_lines, sizeof(*o->lines));
    if (!o->lines) {
        snprintf(why, why_size, "out of memory");
        return -2;
    }
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        if (!json_is_object(item)) {
            snprintf(why, why_size, "items[%zu] is not an object", i);
            return -1;
        }
        json_t *sku = json_object_get(item, "sku");
        if (!json_is_string(sku) ||
            !inv_valid_sku(json_string_value(sku), json_string_length(sku))) {
            snprintf(why, why_size, "items[%zu].sku must be 1 to %d of A-Z a-z 0-9 . _ -", i,
                     INV_SKU_MAX);
            return -1;
        }
        json_t *qty = json_object_get(item, "quantity");
        if (!json_is_integer(qty) || json_integer_value(qty) <= 0 ||
            json_integer_value(qty) > INV_QTY_MAX) {
            snprintf(why, why_size, "items[%zu].quantity must be an integer from 1 to %d", i,
                     INV_QTY_MAX);
            return -1;
        }
        json_t *price = json_object_get(item, "unit_price_cents");
        if (price && (!json_is_integer(price) || json_integer_value(price) < 0)) {
            snprintf(why, why_size, "items[%zu].unit_price_cents must be an integer >= 0", i);
            return -1;
        }
        o->lines[i].sku = json_string_value(sku);
        o->lines[i].quantity = json_integer_value(qty);
    }
    qsort(o->lines, o->n_lines, sizeof(*o->lines), line_cmp);
    for (i = 1; i < o->n_lines; i++) {
        if (strcmp(o->lines[i - 1].sku, o->lines[i].sku) == 0) {
            ofp_shown(o->lines[i].sku, strlen(o->lines[i].sku), shown, sizeof(shown));
            snprintf(why, why_size, "sku %s appears in more than one line", shown);
            return -1;
        }
    }
    return 0;
}

/* Why line `l` could not be reserved: an unknown SKU or not enough stock. */
of_status inv_unreservable_reason(inventory *inv, of_call *call, const order_line *l,
                                  const char **reason)
{
    of_db_value p = OF_DB_S(l->sku);
    of_db_rows *rows = inv->api->db_query(call, "SELECT 1 FROM products WHERE sku = ?", &p, 1);
    if (!rows)
        return ofp_event_db_failed(inv->api, inv->stage, call, "looking up a product");
    int found = inv->api->db_rows_next(rows);
    inv->api->db_rows_free(rows);
    if (found < 0)
        return ofp_event_db_failed(inv->api, inv->stage, call, "looking up a product");
    *reason = found ? "insufficient stock" : "unknown sku";
    return OF_OK;
}

/* 1 when this order already has reservation rows (a second order.placed for it, with another
 * event id than the first: the inbox did not catch it), 0 when not, -1 on error. */
static int order_known(inventory *inv, of_call *call, const char *order_id)
{
    of_db_value p = OF_DB_S(order_id);
    of_db_rows *rows =
        inv->api->db_query(call, "SELECT 1 FROM reservations WHERE order_id = ? LIMIT 1", &p, 1);
    if (!rows)
        return -1;
    int found = inv->api->db_rows_next(rows);
    inv->api->db_rows_free(rows);
    return found;
}

/* 1 (answered: the order.placed is ignored) when this order already has reservation rows, 0
 * when not, -1 on a database error (answered too). */
int inv_ignore_known(inventory *inv, of_call *call, const order *o, of_status *st)
{
    int known = order_known(inv, call, o->id);
    if (known < 0) {
        *st =
            ofp_event_db_failed(inv->api, inv->stage, call, "looking up the order's reservations");
        return -1;
    }
    if (known) {
        inv->api->log(inv->stage, OF_LOG_WARN,
                      "order %s was already reserved or answered: this order.placed is ignored",
                      o->id);
        *st = OF_OK;
    }
    return known;
}

/* The reservation rows of the orders os[0..n) in multi-row INSERTs of at most INV_ROWS_PER_INSERT
 * rows (the placeholders are built from the line count, never from input). 0, -1 (db_last_error
 * says why) or -2 (out of memory, the reason set). */
#define INV_ROWS_PER_INSERT 500
int inv_record_reservations(inventory *inv, of_call *call, const order *const *os, size_t n)
{
    of_db_value *p = calloc(3 * INV_ROWS_PER_INSERT, sizeof(*p));
    if (!p) {
        inv->api->set_reason(call, "out of memory");
        return -2;
    }
    int rc = 0;
    size_t rows = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        for (size_t l = 0; rc == 0 && l < os[i]->n_lines; l++) {
            p[3 * rows] = OF_DB_S(os[i]->id);
            p[3 * rows + 1] = OF_DB_S(os[i]->lines[l].sku);
            p[3 * rows + 2] = OF_DB_I(os[i]->lines[l].quantity);
            rows++;
            int last = i + 1 == n && l + 1 == os[i]->n_lines;
            if (rows < INV_ROWS_PER_INSERT && !last)
                continue;
            char *sql = ofp_sql_rows_new(
                "INSERT INTO reservations (order_id, sku, quantity, state) VALUES ",
                "(?, ?, ?, 'RESERVED')", rows, "");
            if (!sql) {
                inv->api->set_reason(call, "out of memory");
                rc = -2;
            } else if (inv->api->db_exec(call, sql, p, 3 * rows) < 0) {
                rc = -1;
            }
            free(sql);
            rows = 0;
        }
    }
    free(p);
    return rc;
}

/* inventory.reserved for o, whose lines are reserved and recorded. */
of_status inv_emit_reserved(inventory *inv, of_call *call, const order *o)
{
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "order_id", o->id);
    if (json_is_integer(o->customer_id)) /* as the order.placed had it (checked on parsing) */
        ofp_jw_int(&w, "customer_id", (int64_t)json_integer_value(o->customer_id));
    else
        ofp_jw_strn(&w, "customer_id", json_string_value(o->customer_id),
                    json_string_length(o->customer_id));
    ofp_jw_int(&w, "total_cents", o->total_cents);
    ofp_jw_str(&w, "currency", o->currency);
    ofp_jw_array(&w, "items");
    for (size_t i = 0; i < o->n_lines; i++) {
        ofp_jw_object(&w, NULL);
        ofp_jw_str(&w, "sku", o->lines[i].sku);
        ofp_jw_int(&w, "quantity", o->lines[i].quantity);
        ofp_jw_end(&w);
    }
    ofp_jw_end(&w);
    ofp_jw_end(&w);
    of_status st = inv_emit_event(inv, call, "inventory.reserved", o->id, &w);
    if (st == OF_OK)
        inv->api->counter_add(inv->reserved, 1);
    return st;
}

/* Reserves every line of o or none. */
static of_status reserve(inventory *inv, of_call *call, const order *o)
{
    const of_host_api *api = inv->api;
    of_status st = OF_OK;
    /* A second order.placed for an order (another event id than the first, which the inbox
     * would have caught) is rare: the first try does not look for it, its reservation INSERT
     * finds it (the primary key) and the retry looks first. */
    int first = api->event_attempt(call) <= 1;
    if (!first && inv_ignore_known(inv, call, o, &st) != 0)
        return st;
    size_t done = 0;
    for (; done < o->n_lines; done++) {
        const order_line *l = &o->lines[done];
        of_db_value p[] = {OF_DB_I(l->quantity), OF_DB_I(l->quantity), OF_DB_S(l->sku),
                           OF_DB_I(l->quantity)};
        int64_t n = api->db_exec(call,
                                 "UPDATE stock SET available = available - ?, "
                                 "reserved = reserved + ? WHERE sku = ? AND available >= ?",
                                 p, 4);
        if (n < 0)
            return ofp_event_db_failed(inv->api, inv->stage, call, "reserving stock");
        if (n == 0)
            break;
    }
    if (done < o->n_lines) {
        /* Give back what this try reserved: the host commits on OF_OK. The rows are still
         * locked by this transaction, so nobody saw the intermediate state. */
        for (size_t i = 0; i < done; i++) {
            const order_line *l = &o->lines[i];
            of_db_value p[] = {OF_DB_I(l->quantity), OF_DB_I(l->quantity), OF_DB_S(l->sku)};
            int64_t n = api->db_exec(call,
                                     "UPDATE stock SET available = available + ?, "
                                     "reserved = reserved - ? WHERE sku = ?",
                                     p, 3);
            if (n < 0)
                return ofp_event_db_failed(inv->api, inv->stage, call,
                                           "undoing a partial reservation");
            if (n != 1) {
                api->set_reason(call, "undoing a partial reservation: sku %s vanished", l->sku);
                return OF_RETRY; /* rolled back by the host; cannot happen with the FK */
            }
        }
        /* Not for an order reserved before (its stock may be gone since). */
        if (first && inv_ignore_known(inv, call, o, &st) != 0)
            return st;
        const char *reason = NULL;
        st = inv_unreservable_reason(inv, call, &o->lines[done], &reason);
        if (st != OF_OK)
            return st;
        return inv_emit_rejected(inv, call, o->id, reason, o->lines[done].sku);
    }
    int rec = inv_record_reservations(inv, call, &o, 1);
    if (rec == -2)
        return OF_RETRY;
    if (rec != 0) {
        const char *msg = NULL;
        if (api->db_last_error(call, &msg) == OF_DB_ERR_DUPLICATE) {
            /* Reserved before, or by a concurrent try: the next try looks and skips. */
            api->set_reason(call, "order %s has reservations already", o->id);
            return OF_RETRY;
        }
        return ofp_event_db_failed(inv->api, inv->stage, call, "recording a reservation");
    }
    return inv_emit_reserved(inv, call, o);
}

/* The order id to answer an invalid order with: the payload's when usable, else the key. */
static int fallback_order_id(inventory *inv, of_call *call, json_t *doc, char *out, size_t size)
{
    json_t *id = json_is_object(doc) ? json_object_get(doc, "order_id") : NULL;
    if (json_is_string(id) && json_string_length(id) > 0 &&
        json_string_length(id) <= INV_ORDER_ID_MAX &&
        strlen(json_string_value(id)) == json_string_length(id)) {
        snprintf(out, size, "%s", json_string_value(id));
        return 0;
    }
    size_t klen = 0;
    const char *key = inv->api->event_key(call, &klen);
    if (key && klen > 0 && klen <= INV_ORDER_ID_MAX && !memchr(key, '\0', klen)) {
        snprintf(out, size, "%.*s", (int)klen, key);
        return 0;
    }
    return -1;
}

static of_status invalid_order(inventory *inv, of_call *call, json_t *doc, const char *why)
{
    char id[INV_ORDER_ID_MAX + 1];
    if (fallback_order_id(inv, call, doc, id, sizeof(id)) != 0) {
        /* Nobody could correlate an answer: a dead letter, not a business answer. */
        inv->api->set_reason(call, "invalid order without an order id: %s", why);
        return OF_REJECT;
    }
    char reason[512];
    snprintf(reason, sizeof(reason), "invalid order: %s", why);
    inv->api->counter_add(inv->invalid, 1);
    return inv_emit_rejected(inv, call, id, reason, NULL);
}

static of_status on_order_placed(inventory *inv, of_call *call, json_t *doc)
{
    order o = {0};
    char why[256] = "";
    int rc = inv_parse_order(inv, doc, &o, why, sizeof(why));
    of_status st;
    if (rc == -2) {
        inv->api->set_reason(call, "%s", why);
        st = OF_RETRY;
    } else if (rc != 0) {
        st = invalid_order(inv, call, doc, why);
    } else {
        st = reserve(inv, call, &o);
    }
    free(o.lines);
    return st;
}

/* ---- inventory.release / inventory.commit --------------------------------------------------- */

of_status inv_settled(inventory *inv, of_call *call, const char *order_id, int commit, int any)
{
    if (!any) {
        inv->api->log(inv->stage, OF_LOG_INFO, "%s of order %s: nothing reserved, nothing to do",
                      commit ? "commit" : "release", order_id);
        return OF_OK;
    }
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "order_id", order_id);
    ofp_jw_end(&w);
    of_status st = inv_emit_event(inv, call, commit ? "inventory.committed" : "inventory.released",
                                  order_id, &w);
    if (st == OF_OK)
        inv->api->counter_add(commit ? inv->committed : inv->released, 1);
    return st;
}

/* Ends the order's RESERVED rows: released (back to available) or committed (out of on-hand). One
 * statement moves the stock of every line and the reservations' state together; STRAIGHT_JOIN
 * keeps it reading the order's reservations first (by primary key, so in sku order) and locking
 * each one's stock row after it: stock rows are locked in sku order, as reserve() locks them. */
static of_status settle(inventory *inv, of_call *call, const char *order_id, int commit)
{
    const of_host_api *api = inv->api;
    of_db_value p[] = {OF_DB_S(order_id)};
    int64_t changed = api->db_exec(
        call,
        commit
            ? "UPDATE reservations r STRAIGHT_JOIN stock s ON s.sku = r.sku "
              "SET s.on_hand = s.on_hand - r.quantity, s.reserved = s.reserved - r.quantity, "
              "r.state = 'COMMITTED' WHERE r.order_id = ? AND r.state = 'RESERVED'"
            : "UPDATE reservations r STRAIGHT_JOIN stock s ON s.sku = r.sku "
              "SET s.available = s.available + r.quantity, s.reserved = s.reserved - r.quantity, "
              "r.state = 'RELEASED' WHERE r.order_id = ? AND r.state = 'RESERVED'",
        p, 1);
    if (changed < 0)
        return ofp_event_db_failed(inv->api, inv->stage, call,
                                   commit ? "committing stock" : "releasing stock");
    return inv_settled(inv, call, order_id, commit, changed > 0);
}

const char *inv_command_order_id(inventory *inv, of_call *call, json_t *doc, int commit)
{
    json_t *id = json_is_object(doc) ? json_object_get(doc, "order_id") : NULL;
    if (!json_is_string(id) || json_string_length(id) == 0 ||
        json_string_length(id) > INV_ORDER_ID_MAX ||
        strlen(json_string_value(id)) != json_string_length(id)) {
        inv->api->set_reason(call, "%s: order_id must be a string of 1 to %d characters",
                             commit ? "inventory.commit" : "inventory.release", INV_ORDER_ID_MAX);
        return NULL;
    }
    json_t *reason = json_object_get(doc, "reason");
    if (reason && !json_is_string(reason) && !json_is_null(reason)) {
        inv->api->set_reason(call, "%s: reason must be a string",
                             commit ? "inventory.commit" : "inventory.release");
        return NULL;
    }
    return json_string_value(id);
}

static of_status on_command(inventory *inv, of_call *call, json_t *doc, int commit)
{
    const char *id = inv_command_order_id(inv, call, doc, commit);
    return id ? settle(inv, call, id, commit) : OF_REJECT;
}

/* ---- the stage ------------------------------------------------------------------------------ */

of_status inv_process(void *instance, of_call *call)
{
    inventory *inv = instance;
    const of_host_api *api = inv->api;
    size_t tlen = 0, plen = 0;
    const char *type = api->event_header(call, "ce_type", &tlen);
    char t[64];
    if (!type || tlen == 0 || tlen >= sizeof(t)) {
        api->set_reason(call, "no ce_type header: not an event this stage knows");
        return OF_REJECT;
    }
    memcpy(t, type, tlen);
    t[tlen] = '\0';
    int kind = strcmp(t, "order.placed") == 0        ? 0
               : strcmp(t, "inventory.release") == 0 ? 1
               : strcmp(t, "inventory.commit") == 0  ? 2
                                                     : -1;
    if (kind < 0) {
        char shown[80];
        ofp_shown(t, tlen, shown, sizeof(shown));
        api->set_reason(call, "unknown ce_type '%s'", shown);
        return OF_REJECT;
    }
    const char *payload = api->event_payload(call, &plen);
    json_error_t err;
    json_t *doc = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, &err);
    if (!doc) {
        enum json_error_code code = json_error_code(&err);
        if (kind == 0 &&
            (code == json_error_duplicate_key || code == json_error_numeric_overflow)) {
            /* JSON, but not an order this stage accepts: the business answers it. */
            return invalid_order(inv, call, NULL,
                                 code == json_error_duplicate_key
                                     ? "a JSON object has the same key twice"
                                     : "a number is out of range");
        }
        api->set_reason(call, "the payload is not JSON: %s (line %d, column %d)", err.text,
                        err.line, err.column);
        return OF_REJECT;
    }
    of_status st =
        kind == 0 ? on_order_placed(inv, call, doc) : on_command(inv, call, doc, kind == 2);
    json_decref(doc);
    return st;
}

static int inventory_init(of_stage *stage, const of_host_api *api, const of_config *cfg,
                          void **instance, char *errstr, size_t errstr_size)
{
    if (!OF_API_HAS(api, db_exec) || !OF_API_HAS(api, db_last_error) ||
        !OF_API_HAS(api, http_handler) || !OF_API_HAS(api, http_problem)) {
        snprintf(errstr, errstr_size, "this host lacks the database or HTTP functions (ABI 1.1)");
        return -1;
    }
    inventory *inv = calloc(1, sizeof(*inv));
    if (!inv) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    inv->api = api;
    inv->stage = stage;
    inv->max_lines = api->config_int(cfg, "max_lines");
    inv->reserved = api->counter_register(stage, "inventory_reserved_total", "orders reserved");
    inv->rejected = api->counter_register(stage, "inventory_rejected_total",
                                          "orders rejected (invalid, unknown sku, no stock)");
    inv->invalid = api->counter_register(stage, "inventory_invalid_orders_total",
                                         "orders rejected as invalid");
    inv->released = api->counter_register(stage, "inventory_released_total", "orders released");
    inv->committed = api->counter_register(stage, "inventory_committed_total", "orders committed");
    if (inv_http_register(inv, errstr, errstr_size) != 0) {
        free(inv);
        return -1;
    }
    *instance = inv;
    return 0;
}

static void inventory_shutdown(void *instance)
{
    free(instance);
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "inventory",
    .version = "1.0.0",
    .description = "products, stock and all-or-nothing reservations for the order saga",
    .options = options,
    .outputs = outputs,
    .init = inventory_init,
    .process = inv_process,
    .shutdown = inventory_shutdown,
    .process_batch = inv_process_batch,
    .flags = OF_STAGE_DATABASE,
    .migrations = migrations,
};

OF_STAGE_DEFINE(descriptor)
