/*
 * orders: the HTTP routes (all `auth: required`; the caller is the token's subject).
 *
 *   place   POST /api/v1/orders {items: [{sku, quantity}]} [Idempotency-Key] -> 202
 *           {order_id, status} + Location (200 for a repeated key); prices from the catalog
 *   get     GET  /api/v1/orders/{id} -> 200 the order with items and history (own, or admin)
 *   list    GET  /api/v1/orders?status=&limit=1..100&after=<order id> -> 200 {items, next_after}
 *   cancel  POST /api/v1/orders/{id}/cancel -> 200 {order_id, status} (own or admin; 409 when
 *           terminal)
 *
 * Someone else's order answers 404, never 403, so that ids do not leak. Each handler runs in the
 * host's transaction: OF_OK commits (and publishes what was emitted), OF_REJECT rolls back,
 * OF_RETRY answers 503 for a database outage or deadlock.
 */
#include "ofp_http.h"
#include "ofp_sql.h"
#include "orders.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const statuses[] = {"PENDING",  "RESERVED",  "PAID", "CONFIRMED",
                                       "REJECTED", "CANCELLED", NULL};

static of_status not_found(orders *o, of_http_request *req)
{
    return ofp_problem(o->api, req, 404, "Not Found", "no such order");
}

/* The {id} path parameter, validated; NULL when answered (404). */
static const char *path_id(orders *o, of_http_request *req)
{
    const char *id = o->api->http_param(req, "id");
    if (!id || !ord_valid_id(id)) {
        not_found(o, req);
        return NULL;
    }
    return id;
}

static int text_eq(const of_db_value *v, const char *s)
{
    return v->type == OF_DB_TEXT && v->len == strlen(s) && memcmp(v->p, s, v->len) == 0;
}

/* ---- place ---------------------------------------------------------------------------------- */

typedef struct line {
    const char *sku; /* in the parsed body */
    int64_t quantity;
    int64_t price;
    char currency[4];
    int priced;
} line;

/* Validates the body; the lines point into *doc. 0, or -1 when answered (400). */
static int parse_body(orders *o, of_http_request *req, json_t **doc, line **lines, size_t *n)
{
    size_t len = 0;
    const char *body = o->api->http_body(req, &len);
    json_error_t e;
    *doc = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &e);
    if (!*doc) {
        ofp_problem(o->api, req, 400, "Malformed JSON",
                    "the body is not valid JSON: %s (line %d, column %d)", e.text, e.line,
                    e.column);
        return -1;
    }
    char shown[80];
    const char *key;
    json_t *v;
    if (!json_is_object(*doc)) {
        ofp_problem(o->api, req, 400, "Invalid request", "the body must be a JSON object");
        return -1;
    }
    json_object_foreach(*doc, key, v)
    {
        if (strcmp(key, "items") != 0) {
            ofp_shown(key, strlen(key), shown, sizeof(shown));
            ofp_problem(o->api, req, 400, "Invalid request", "unknown field '%s'", shown);
            return -1;
        }
    }
    json_t *items = json_object_get(*doc, "items");
    if (!json_is_array(items) || json_array_size(items) == 0 ||
        json_array_size(items) > ORD_LINES_MAX) {
        ofp_problem(o->api, req, 400, "Invalid request",
                    "items: an array of 1 to %d lines is required", ORD_LINES_MAX);
        return -1;
    }
    *n = json_array_size(items);
    *lines = calloc(*n, sizeof(**lines));
    if (!*lines) {
        ofp_internal_error(o->api, req);
        return -1;
    }
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        if (!json_is_object(item)) {
            ofp_problem(o->api, req, 400, "Invalid request", "items[%zu]: an object is required",
                        i);
            return -1;
        }
        json_object_foreach(item, key, v)
        {
            if (strcmp(key, "sku") != 0 && strcmp(key, "quantity") != 0) {
                ofp_shown(key, strlen(key), shown, sizeof(shown));
                ofp_problem(o->api, req, 400, "Invalid request", "items[%zu]: unknown field '%s'",
                            i, shown);
                return -1;
            }
        }
        json_t *sku = json_object_get(item, "sku"), *qty = json_object_get(item, "quantity");
        if (!json_is_string(sku) ||
            !ord_valid_sku(json_string_value(sku), json_string_length(sku))) {
            ofp_problem(o->api, req, 400, "Invalid request",
                        "items[%zu].sku: 1 to %d characters of A-Z a-z 0-9 . _ - are required", i,
                        ORD_SKU_MAX);
            return -1;
        }
        if (!json_is_integer(qty) || json_integer_value(qty) < 1 ||
            json_integer_value(qty) > ORD_QTY_MAX) {
            ofp_problem(o->api, req, 400, "Invalid request",
                        "items[%zu].quantity: an integer from 1 to %d is required", i, ORD_QTY_MAX);
            return -1;
        }
        (*lines)[i].sku = json_string_value(sku);
        (*lines)[i].quantity = json_integer_value(qty);
        for (size_t j = 0; j < i; j++) {
            if (strcmp((*lines)[j].sku, (*lines)[i].sku) == 0) {
                ofp_problem(o->api, req, 400, "Invalid request",
                            "items[%zu].sku: %s is already in items[%zu] (one line per sku)", i,
                            (*lines)[i].sku, j);
                return -1;
            }
        }
    }
    return 0;
}

/* Idempotency-Key: NULL when absent; "" marks an invalid one (answered 400). */
static const char *idempotency_key(orders *o, of_http_request *req)
{
    const char *k = o->api->http_header(req, "Idempotency-Key");
    if (!k)
        return NULL;
    size_t len = strlen(k);
    int ok = len >= 1 && len <= ORD_IDEM_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = k[i] >= 0x20 && k[i] <= 0x7E;
    if (!ok) {
        ofp_problem(o->api, req, 400, "Invalid request",
                    "Idempotency-Key: 1 to %d printable ASCII characters are required",
                    ORD_IDEM_MAX);
        return "";
    }
    return k;
}

/* Looks the key up: 1 with the order's id and status, 0 none, -1 db error. A locking read when
 * `lock` (sees a row committed by a concurrent request after this transaction began). */
static int find_by_key(orders *o, of_call *call, const char *customer, const char *key, int lock,
                       char id[ORD_ID_LEN + 1], char status[17])
{
    const of_host_api *api = o->api;
    of_db_value p[] = {OF_DB_S(customer), OF_DB_S(key)};
    of_db_rows *rows = api->db_query(
        call,
        lock ? "SELECT id, status FROM orders WHERE customer_id = ? AND idempotency_key = ? "
               "FOR UPDATE"
             : "SELECT id, status FROM orders WHERE customer_id = ? AND idempotency_key = ?",
        p, 2);
    if (!rows)
        return -1;
    int r = api->db_rows_next(rows);
    of_db_value a, b;
    if (r == 1) {
        if (api->db_rows_get(rows, 0, &a) != 0 || api->db_rows_get(rows, 1, &b) != 0 ||
            a.type != OF_DB_TEXT || a.len != ORD_ID_LEN || b.type != OF_DB_TEXT || b.len > 16) {
            r = -2;
        } else {
            memcpy(id, a.p, a.len);
            id[a.len] = '\0';
            memcpy(status, b.p, b.len);
            status[b.len] = '\0';
        }
    }
    api->db_rows_free(rows);
    return r;
}

/* 1 when the stored order has exactly these lines (sku and quantity, in order), 0 when not,
 * -1 db error. */
static int same_lines(orders *o, of_call *call, const char *id, const line *lines, size_t n)
{
    const of_host_api *api = o->api;
    of_db_value p = OF_DB_S(id);
    of_db_rows *rows = api->db_query(
        call, "SELECT sku, quantity FROM order_items WHERE order_id = ? ORDER BY line", &p, 1);
    if (!rows)
        return -1;
    size_t i = 0;
    int same = 1, r;
    while ((r = api->db_rows_next(rows)) == 1) {
        of_db_value sku, qty;
        if (i >= n || api->db_rows_get(rows, 0, &sku) != 0 ||
            api->db_rows_get(rows, 1, &qty) != 0 || !text_eq(&sku, lines[i].sku) ||
            qty.type != OF_DB_INT || qty.i != lines[i].quantity)
            same = 0;
        i++;
    }
    api->db_rows_free(rows);
    if (r < 0)
        return -1;
    return same && i == n;
}

/* Answers a repeated Idempotency-Key: 200 with the first order, or 422 for another body. */
static of_status answer_repeat(orders *o, of_call *call, of_http_request *req, const char *id,
                               const char *status, const line *lines, size_t n)
{
    int same = same_lines(o, call, id, lines, n);
    if (same < 0)
        return ofp_http_db_failed(o->api, o->stage, call, req,
                                  "place: comparing with the first request");
    if (!same)
        return ofp_problem(o->api, req, 422, "Unprocessable Content",
                           "this Idempotency-Key was used for another order with other items");
    char location[80];
    snprintf(location, sizeof(location), "Location: /api/v1/orders/%s", id);
    const char *const headers[] = {location, NULL};
    return ofp_respond_json(o->api, req, 200,
                            json_pack("{s:s, s:s}", "order_id", id, "status", status), headers);
}

/* Prices every line from inventory's products table. 0; 1 when they cannot be (why in
 * problem, for a 422); -1 db error. */
static int price_lines(orders *o, of_call *call, line *lines, size_t n, char *problem,
                       size_t problem_size)
{
    const of_host_api *api = o->api;
    /* The statement has one placeholder per line: built from the count, never from input. */
    static const char head[] = "SELECT sku, price_cents, currency FROM products WHERE sku IN (";
    char sql[sizeof(head) + 3 * 2 * ORD_LINES_MAX + 2];
    size_t len = ofp_sql_list_len(n); /* < 2 * ORD_LINES_MAX */
    if (ofp_sql_rows(sql, sizeof(sql), head, "?", len, ")") == 0)
        return -1; /* cannot happen: n <= ORD_LINES_MAX */
    of_db_value p[2 * ORD_LINES_MAX];
    for (size_t i = 0; i < len; i++)
        p[i] = OF_DB_S(lines[i < n ? i : n - 1].sku);
    of_db_rows *rows = api->db_query(call, sql, p, len);
    if (!rows)
        return -1;
    int r;
    while ((r = api->db_rows_next(rows)) == 1) {
        of_db_value sku, price, cur;
        if (api->db_rows_get(rows, 0, &sku) != 0 || api->db_rows_get(rows, 1, &price) != 0 ||
            api->db_rows_get(rows, 2, &cur) != 0 || price.type != OF_DB_INT ||
            cur.type != OF_DB_TEXT || cur.len != 3)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (text_eq(&sku, lines[i].sku)) {
                lines[i].price = price.i;
                memcpy(lines[i].currency, cur.p, 3);
                lines[i].currency[3] = '\0';
                lines[i].priced = 1;
            }
        }
    }
    api->db_rows_free(rows);
    if (r < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!lines[i].priced) {
            snprintf(problem, problem_size, "unknown sku %s (items[%zu])", lines[i].sku, i);
            return 1;
        }
        if (strcmp(lines[i].currency, lines[0].currency) != 0) {
            snprintf(problem, problem_size,
                     "items in more than one currency: %s is priced in %s, %s in %s", lines[0].sku,
                     lines[0].currency, lines[i].sku, lines[i].currency);
            return 1;
        }
    }
    return 0;
}

static of_status place_order(orders *o, of_call *call, of_http_request *req, const char *customer,
                             const char *key, line *lines, size_t n)
{
    const of_host_api *api = o->api;
    char id[ORD_ID_LEN + 1], status[17];
    /* A repeated Idempotency-Key is rare: the order's INSERT finds it (the unique key), so the
     * first request costs no lookup by key. */
    char problem[256];
    int pr = price_lines(o, call, lines, n, problem, sizeof(problem));
    if (pr < 0)
        return ofp_http_db_failed(o->api, o->stage, call, req, "place: prices");
    if (pr > 0 && key) {
        /* Lines that were priced for the first request and no longer are (a product removed
         * since): its answer still stands. */
        int r = find_by_key(o, call, customer, key, 0, id, status);
        if (r < 0)
            return ofp_http_db_failed(o->api, o->stage, call, req, "place: idempotency key");
        if (r == 1)
            return answer_repeat(o, call, req, id, status, lines, n);
    }
    if (pr > 0)
        return ofp_problem(o->api, req, 422, "Unprocessable Content", "%s", problem);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t amount;
        if (__builtin_mul_overflow(lines[i].price, lines[i].quantity, &amount) ||
            __builtin_add_overflow(total, amount, &total))
            return ofp_problem(o->api, req, 422, "Unprocessable Content",
                               "the order's total is too large");
    }
    if (ord_uuid(id) != 0) {
        api->log(o->stage, OF_LOG_ERROR, "place: no random bytes for an order id");
        return ofp_internal_error(o->api, req);
    }
    int64_t now = ord_now_ms();
    of_db_value ins[] = {OF_DB_S(id),
                         OF_DB_S(customer),
                         OF_DB_I(total),
                         OF_DB_S(lines[0].currency),
                         key ? OF_DB_S(key) : OF_DB_NULLV,
                         OF_DB_I(now),
                         OF_DB_I(now)};
    if (api->db_exec(call,
                     "INSERT INTO orders (id, customer_id, status, history_seq, total_cents, "
                     "currency, idempotency_key, created_at, updated_at) VALUES (?, ?, "
                     "'PENDING', 1, ?, ?, ?, FROM_UNIXTIME(? / 1000), FROM_UNIXTIME(? / 1000))",
                     ins, 7) < 0) {
        if (key && api->db_last_error(call, NULL) == OF_DB_ERR_DUPLICATE) {
            /* The key was used before (or by a concurrent request, committed meanwhile, which
             * the locking read waits for): answer with its order. */
            int r = find_by_key(o, call, customer, key, 1, id, status);
            if (r == 1)
                return answer_repeat(o, call, req, id, status, lines, n);
            if (r == 0)
                return OF_RETRY;
            return ofp_http_db_failed(o->api, o->stage, call, req, "place: idempotency key");
        }
        return ofp_http_db_failed(o->api, o->stage, call, req, "place: order");
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        of_db_value p[] = {OF_DB_S(id), OF_DB_I((int64_t)i + 1), OF_DB_S(lines[i].sku),
                           OF_DB_I(lines[i].quantity), OF_DB_I(lines[i].price)};
        if (api->db_exec(call,
                         "INSERT INTO order_items (order_id, line, sku, quantity, "
                         "unit_price_cents) VALUES (?, ?, ?, ?, ?)",
                         p, 5) < 0) {
            json_decref(items);
            return ofp_http_db_failed(o->api, o->stage, call, req, "place: items");
        }
        json_array_append_new(items, json_pack("{s:s, s:I, s:I}", "sku", lines[i].sku, "quantity",
                                               (json_int_t)lines[i].quantity, "unit_price_cents",
                                               (json_int_t)lines[i].price));
    }
    of_db_value h[] = {OF_DB_S(id), OF_DB_I(now)};
    if (api->db_exec(call,
                     "INSERT INTO order_history (order_id, seq, from_status, to_status, reason, "
                     "at) VALUES (?, 1, NULL, 'PENDING', 'placed', FROM_UNIXTIME(? / 1000))",
                     h, 2) < 0) {
        json_decref(items);
        return ofp_http_db_failed(o->api, o->stage, call, req, "place: history");
    }
    char placed_at[40];
    ofp_rfc3339_ms(now, placed_at, sizeof(placed_at));
    json_t *doc = items ? json_pack("{s:s, s:s, s:o, s:I, s:s, s:s}", "order_id", id, "customer_id",
                                    customer, "items", items, "total_cents", (json_int_t)total,
                                    "currency", lines[0].currency, "placed_at", placed_at)
                        : NULL;
    if (ord_emit(o, call, "placed", "order.placed", id, doc) != 0) {
        api->log(o->stage, OF_LOG_ERROR, "place: emitting order.placed failed");
        return ofp_internal_error(o->api, req);
    }
    /* The first transition is published like the others, so that status subscribers see every
     * one (seq 1, from null). */
    if (ord_emit_status(o, call, id, customer, 1, NULL, "PENDING", "placed", placed_at) != 0) {
        api->log(o->stage, OF_LOG_ERROR, "place: emitting order.status_changed failed");
        return ofp_internal_error(o->api, req);
    }
    ord_cache_status(o, call, id, 1, "PENDING");
    api->counter_add(o->placed, 1);
    api->log(o->stage, OF_LOG_INFO, "order %s placed: %zu lines, %" PRId64 " %s", id, n, total,
             lines[0].currency);
    char location[80];
    snprintf(location, sizeof(location), "Location: /api/v1/orders/%s", id);
    const char *const headers[] = {location, NULL};
    return ofp_respond_json(o->api, req, 202,
                            json_pack("{s:s, s:s}", "order_id", id, "status", "PENDING"), headers);
}

static of_status place(void *instance, of_call *call, of_http_request *req)
{
    orders *o = instance;
    int admin = 0;
    const char *customer = ofp_caller(o->api, req, ORD_CUSTOMER_MAX, &admin);
    if (!customer)
        return OF_REJECT;
    const char *key = idempotency_key(o, req);
    if (key && !*key)
        return OF_REJECT;
    json_t *doc = NULL;
    line *lines = NULL;
    size_t n = 0;
    of_status st = OF_REJECT;
    if (parse_body(o, req, &doc, &lines, &n) == 0)
        st = place_order(o, call, req, customer, key, lines, n);
    free(lines);
    json_decref(doc);
    return st;
}

/* ---- get ------------------------------------------------------------------------------------ */

#define MS(col) "CAST(ROUND(UNIX_TIMESTAMP(" col ") * 1000) AS SIGNED)"

/* The current row (id, status, total_cents, currency, created ms, updated ms) as a summary. */
static json_t *summary_row(orders *o, of_db_rows *rows)
{
    of_db_value v[6];
    for (size_t i = 0; i < 6; i++)
        if (o->api->db_rows_get(rows, i, &v[i]) != 0)
            return NULL;
    if (v[0].type != OF_DB_TEXT || v[1].type != OF_DB_TEXT || v[2].type != OF_DB_INT ||
        v[3].type != OF_DB_TEXT || v[4].type != OF_DB_INT || v[5].type != OF_DB_INT)
        return NULL;
    char created[40], updated[40];
    ofp_rfc3339_ms(v[4].i, created, sizeof(created));
    ofp_rfc3339_ms(v[5].i, updated, sizeof(updated));
    return json_pack("{s:s%, s:s%, s:I, s:s%, s:s, s:s}", "order_id", (const char *)v[0].p,
                     v[0].len, "status", (const char *)v[1].p, v[1].len, "total_cents",
                     (json_int_t)v[2].i, "currency", (const char *)v[3].p, v[3].len, "created_at",
                     created, "updated_at", updated);
}

/* The cached "<seq>:<STATUS>" when it is at least as new as `seq`; 1 and status, else 0. */
static int cached_status(orders *o, const char *id, int64_t seq, char status[17])
{
    if (!o->has_cache)
        return 0;
    char key[80], *value = NULL;
    size_t len = 0;
    snprintf(key, sizeof(key), "order:%s:status", id);
    if (o->api->cache_get(o->stage, key, &value, &len) != 1 || !value)
        return 0;
    char *colon = memchr(value, ':', len);
    int ok = 0;
    if (colon && colon != value) {
        errno = 0;
        char *end = NULL;
        long long s = strtoll(value, &end, 10);
        const char *st = colon + 1;
        size_t sl = len - (size_t)(st - value);
        if (errno == 0 && end == colon && s >= seq) {
            for (size_t i = 0; statuses[i] && !ok; i++)
                if (strlen(statuses[i]) == sl && memcmp(statuses[i], st, sl) == 0) {
                    memcpy(status, st, sl);
                    status[sl] = '\0';
                    ok = 1;
                }
        }
    }
    o->api->free(value);
    return ok;
}

static of_status get_order(void *instance, of_call *call, of_http_request *req)
{
    orders *o = instance;
    const of_host_api *api = o->api;
    int admin = 0;
    const char *customer = ofp_caller(o->api, req, ORD_CUSTOMER_MAX, &admin);
    if (!customer)
        return OF_REJECT;
    const char *id = path_id(o, req);
    if (!id)
        return OF_REJECT;
    of_db_value p = OF_DB_S(id);
    of_db_rows *rows = api->db_query(call,
                                     "SELECT id, status, total_cents, currency, " MS(
                                         "created_at") ", " MS("updated_at") ", customer_id "
                                                                             "FROM orders WHERE "
                                                                             "id = ?",
                                     &p, 1);
    if (!rows)
        return ofp_http_db_failed(o->api, o->stage, call, req, "get");
    int r = api->db_rows_next(rows);
    json_t *doc = NULL;
    of_db_value owner = {0};
    if (r == 1) {
        doc = summary_row(o, rows);
        if (!doc || api->db_rows_get(rows, 6, &owner) != 0 || owner.type != OF_DB_TEXT)
            r = -2;
        else if (!admin && !text_eq(&owner, customer))
            r = 0; /* someone else's: as if it did not exist */
        else
            json_object_set_new(doc, "customer_id", json_stringn((const char *)owner.p, owner.len));
    }
    api->db_rows_free(rows);
    if (r != 1) {
        json_decref(doc);
        return r == 0 ? not_found(o, req)
                      : (r == -1 ? ofp_http_db_failed(o->api, o->stage, call, req, "get")
                                 : ofp_internal_error(o->api, req));
    }
    json_t *items = json_array(), *history = json_array();
    json_object_set_new(doc, "items", items);
    json_object_set_new(doc, "history", history);
    rows = api->db_query(call,
                         "SELECT line, sku, quantity, unit_price_cents FROM order_items "
                         "WHERE order_id = ? ORDER BY line",
                         &p, 1);
    if (!rows) {
        json_decref(doc);
        return ofp_http_db_failed(o->api, o->stage, call, req, "get items");
    }
    while ((r = api->db_rows_next(rows)) == 1) {
        of_db_value v[4];
        int ok = 1;
        for (size_t i = 0; i < 4 && ok; i++)
            ok = api->db_rows_get(rows, i, &v[i]) == 0;
        if (!ok || v[0].type != OF_DB_INT || v[1].type != OF_DB_TEXT || v[2].type != OF_DB_INT ||
            v[3].type != OF_DB_INT) {
            r = -2;
            break;
        }
        json_array_append_new(items, json_pack("{s:I, s:s%, s:I, s:I}", "line", (json_int_t)v[0].i,
                                               "sku", (const char *)v[1].p, v[1].len, "quantity",
                                               (json_int_t)v[2].i, "unit_price_cents",
                                               (json_int_t)v[3].i));
    }
    api->db_rows_free(rows);
    if (r < 0) {
        json_decref(doc);
        return r == -1 ? ofp_http_db_failed(o->api, o->stage, call, req, "get items")
                       : ofp_internal_error(o->api, req);
    }
    rows = api->db_query(call,
                         "SELECT seq, from_status, to_status, reason, " MS(
                             "at") " FROM order_history WHERE order_id = ? ORDER BY seq",
                         &p, 1);
    if (!rows) {
        json_decref(doc);
        return ofp_http_db_failed(o->api, o->stage, call, req, "get history");
    }
    int64_t last_seq = 0;
    while ((r = api->db_rows_next(rows)) == 1) {
        of_db_value v[5];
        int ok = 1;
        for (size_t i = 0; i < 5 && ok; i++)
            ok = api->db_rows_get(rows, i, &v[i]) == 0;
        if (!ok || v[0].type != OF_DB_INT || (v[1].type != OF_DB_TEXT && v[1].type != OF_DB_NULL) ||
            v[2].type != OF_DB_TEXT || v[3].type != OF_DB_TEXT || v[4].type != OF_DB_INT) {
            r = -2;
            break;
        }
        char at[40];
        ofp_rfc3339_ms(v[4].i, at, sizeof(at));
        last_seq = v[0].i;
        json_array_append_new(history, json_pack("{s:I, s:o, s:s%, s:s%, s:s}", "seq",
                                                 (json_int_t)v[0].i, "from",
                                                 v[1].type == OF_DB_TEXT
                                                     ? json_stringn((const char *)v[1].p, v[1].len)
                                                     : json_null(),
                                                 "to", (const char *)v[2].p, v[2].len, "reason",
                                                 (const char *)v[3].p, v[3].len, "at", at));
    }
    api->db_rows_free(rows);
    if (r < 0) {
        json_decref(doc);
        return r == -1 ? ofp_http_db_failed(o->api, o->stage, call, req, "get history")
                       : ofp_internal_error(o->api, req);
    }
    /* The status from Redis when it is at least as new as the stored history (see
     * docs/orders-plugin.md, "The status cache"); else the row's. */
    char status[17];
    if (cached_status(o, id, last_seq, status))
        json_object_set_new(doc, "status", json_string(status));
    return ofp_respond_json(o->api, req, 200, doc, NULL);
}

/* ---- list ----------------------------------------------------------------------------------- */

/* A decimal in [lo, hi]; 0, or -1. */
static int parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s || strlen(s) > 6)
        return -1;
    for (const char *c = s; *c; c++)
        if (*c < '0' || *c > '9')
            return -1;
    long v = strtol(s, NULL, 10);
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static of_status list_orders(void *instance, of_call *call, of_http_request *req)
{
    orders *o = instance;
    const of_host_api *api = o->api;
    int admin = 0;
    const char *customer = ofp_caller(o->api, req, ORD_CUSTOMER_MAX, &admin);
    if (!customer)
        return OF_REJECT;
    long limit = 20;
    const char *l = api->http_query(req, "limit");
    if (l && parse_int(l, 1, 100, &limit) != 0)
        return ofp_problem(o->api, req, 400, "Invalid request", "limit: an integer from 1 to 100");
    const char *status = api->http_query(req, "status");
    if (status && !*status)
        status = NULL;
    if (status) {
        int known = 0;
        for (size_t i = 0; statuses[i] && !known; i++)
            known = strcmp(statuses[i], status) == 0;
        if (!known)
            return ofp_problem(o->api, req, 400, "Invalid request",
                               "status: one of PENDING, RESERVED, PAID, CONFIRMED, REJECTED, "
                               "CANCELLED");
    }
    const char *after = api->http_query(req, "after");
    if (after && !*after)
        after = NULL;
    if (after) {
        char st[17], owner[ORD_CUSTOMER_MAX + 1];
        int r = ord_valid_id(after) ? ord_load_head(o, call, after, 0, st, owner) : 0;
        if (r < 0)
            return ofp_http_db_failed(o->api, o->stage, call, req, "list");
        if (r == 0 || strcmp(owner, customer) != 0)
            return ofp_problem(o->api, req, 400, "Invalid request",
                               "after: the id of the last order of the previous page");
    }
    /* Fixed fragments only; every value is a placeholder. */
    char sql[768];
    snprintf(sql, sizeof(sql),
             "SELECT id, status, total_cents, currency, %s, %s FROM orders WHERE customer_id = ?"
             "%s%s ORDER BY created_at DESC, id DESC LIMIT ?",
             MS("created_at"), MS("updated_at"), status ? " AND status = ?" : "",
             after ? " AND (created_at < (SELECT c.created_at FROM orders c WHERE c.id = ?) OR "
                     "(created_at = (SELECT c.created_at FROM orders c WHERE c.id = ?) AND "
                     "id < ?))"
                   : "");
    of_db_value p[6];
    size_t np = 0;
    p[np++] = OF_DB_S(customer);
    if (status)
        p[np++] = OF_DB_S(status);
    if (after) {
        p[np++] = OF_DB_S(after);
        p[np++] = OF_DB_S(after);
        p[np++] = OF_DB_S(after);
    }
    p[np++] = OF_DB_I(limit + 1);
    of_db_rows *rows = api->db_query(call, sql, p, np);
    if (!rows)
        return ofp_http_db_failed(o->api, o->stage, call, req, "list");
    json_t *items = json_array(), *next = json_null();
    long n = 0;
    int r = 0;
    while (items && (r = api->db_rows_next(rows)) == 1) {
        if (n == limit) { /* one more exists: the page ends with the one before */
            json_t *last = json_array_get(items, json_array_size(items) - 1);
            json_decref(next);
            next = json_incref(json_object_get(last, "order_id"));
            break;
        }
        json_t *row = summary_row(o, rows);
        if (!row) {
            r = -2;
            break;
        }
        json_array_append_new(items, row);
        n++;
    }
    api->db_rows_free(rows);
    if (!items || r < 0) {
        json_decref(items);
        json_decref(next);
        return r == -1 ? ofp_http_db_failed(o->api, o->stage, call, req, "list")
                       : ofp_internal_error(o->api, req);
    }
    return ofp_respond_json(o->api, req, 200,
                            json_pack("{s:o, s:o}", "items", items, "next_after", next), NULL);
}

/* ---- cancel --------------------------------------------------------------------------------- */

static of_status cancel_order(void *instance, of_call *call, of_http_request *req)
{
    orders *o = instance;
    const of_host_api *api = o->api;
    int admin = 0;
    const char *customer = ofp_caller(o->api, req, ORD_CUSTOMER_MAX, &admin);
    if (!customer)
        return OF_REJECT;
    const char *id = path_id(o, req);
    if (!id)
        return OF_REJECT;
    char status[17], owner[ORD_CUSTOMER_MAX + 1];
    int r = ord_load_head(o, call, id, 1, status, owner);
    if (r < 0)
        return ofp_http_db_failed(o->api, o->stage, call, req, "cancel");
    if (r == 0 || (!admin && strcmp(owner, customer) != 0))
        return not_found(o, req);
    if (ord_terminal(status))
        return ofp_problem(o->api, req, 409, "Conflict",
                           "the order is %s and can no longer be cancelled", status);
    const char *reason = strcmp(owner, customer) == 0 ? "cancelled by the customer"
                                                      : "cancelled by an administrator";
    ord_tr t = ord_transition(o, call, id, status, "CANCELLED", reason);
    if (t == ORD_TR_DB_ERROR)
        return ofp_http_db_failed(o->api, o->stage, call, req, "cancel");
    if (t == ORD_TR_EMIT_ERROR)
        return ofp_internal_error(o->api, req);
    if (t == ORD_TR_NOT_IN) /* cannot happen: the row is locked */
        return OF_RETRY;
    int release = strcmp(status, "RESERVED") == 0 || strcmp(status, "PAID") == 0;
    int refund = strcmp(status, "PAID") == 0;
    if ((release && ord_emit(o, call, "inventory", "inventory.release", id,
                             json_pack("{s:s, s:s}", "order_id", id, "reason", reason)) != 0) ||
        (refund && ord_emit(o, call, "payment", "payment.refund", id,
                            json_pack("{s:s, s:s}", "order_id", id, "reason", reason)) != 0)) {
        api->log(o->stage, OF_LOG_ERROR, "cancel %s: emitting a command failed", id);
        return ofp_internal_error(o->api, req);
    }
    return ofp_respond_json(o->api, req, 200,
                            json_pack("{s:s, s:s}", "order_id", id, "status", "CANCELLED"), NULL);
}

int ord_http_register(orders *o, char *errstr, size_t errstr_size)
{
    static const struct {
        const char *name;
        of_http_handler fn;
    } handlers[] = {
        {"place", place},
        {"get", get_order},
        {"list", list_orders},
        {"cancel", cancel_order},
    };
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        if (o->api->http_handler(o->stage, handlers[i].name, handlers[i].fn) != 0) {
            snprintf(errstr, errstr_size, "cannot register the handler %s", handlers[i].name);
            return -1;
        }
    }
    return 0;
}
