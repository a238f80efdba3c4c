/*
 * orders: placing orders, POST /api/v1/orders {items: [{sku, quantity}]} [Idempotency-Key] ->
 * 202 {order_id, status} + Location (200 with the first order for a repeated key, 422 when that
 * key came with other items); prices from inventory's catalog.
 *
 * One request (ord_place) or, on a route with `batch:`, the requests that share a transaction
 * (ord_place_batch, ABI 1.6): their prices in one SELECT, their orders, items and history rows in
 * a few multi-row INSERTs, so that a group costs about what one order did. Both paths validate,
 * price and answer alike. A repeated Idempotency-Key is not looked up first (the unique key
 * finds it): when the group's INSERT fails on it, the batch hands the group back to the host,
 * which runs each request alone, where the lone path answers with the first order.
 */
#include "ofp_http.h"
#include "ofp_sql.h"
#include "orders.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct line {
    const char *sku; /* in the parsed body */
    int64_t quantity;
    int64_t price;
    char currency[4];
    int priced;
} line;

/* One request to place an order, from its checks to its answer. */
typedef struct placement {
    of_call *call;
    of_http_request *req;
    const char *customer; /* the token's subject (the host's) */
    const char *key;      /* Idempotency-Key, NULL when absent */
    json_t *doc;          /* the parsed body the lines point into */
    line *lines;
    size_t n;
    int64_t total;
    char id[ORD_ID_LEN + 1];
} placement;

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
            api->db_rows_get(rows, 1, &qty) != 0 || !ord_text_eq(&sku, lines[i].sku) ||
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

/* Reads a request: the caller, the key and the body. 0 when it can be placed; -1 when answered
 * (401/403, 400). */
static int prepare(orders *o, placement *p)
{
    int admin = 0;
    p->customer = ofp_caller(o->api, p->req, ORD_CUSTOMER_MAX, &admin);
    if (!p->customer)
        return -1;
    p->key = idempotency_key(o, p->req);
    if (p->key && !*p->key)
        return -1;
    return parse_body(o, p->req, &p->doc, &p->lines, &p->n);
}

static void placement_free(placement *p)
{
    free(p->lines);
    json_decref(p->doc);
    p->lines = NULL;
    p->doc = NULL;
}

static int sku_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The catalog's price of each distinct SKU of a set of orders. */
typedef struct price {
    int64_t cents;
    char currency[4];
    int known;
} price;

#define PRICE_SKUS_PER_SELECT 128 /* the placeholders the host keeps a statement prepared with */

/* Prices every line of ps[0..n) from inventory's products table, in one SELECT per 128 distinct
 * SKUs. 0, -1 db error, -2 no memory. */
static int price_set(orders *o, of_call *call, placement *const *ps, size_t n)
{
    const of_host_api *api = o->api;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ps[i]->n;
    const char **skus = malloc(total * sizeof(*skus));
    price *prices = calloc(total, sizeof(*prices));
    of_db_value *params = calloc(PRICE_SKUS_PER_SELECT, sizeof(*params));
    int rc = -2;
    if (!skus || !prices || !params)
        goto out;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t l = 0; l < ps[i]->n; l++)
            skus[k++] = ps[i]->lines[l].sku;
    qsort(skus, total, sizeof(*skus), sku_cmp);
    size_t distinct = 0;
    for (size_t i = 0; i < total; i++)
        if (distinct == 0 || strcmp(skus[distinct - 1], skus[i]) != 0)
            skus[distinct++] = skus[i];
    rc = 0;
    for (size_t from = 0; rc == 0 && from < distinct; from += PRICE_SKUS_PER_SELECT) {
        size_t cnt =
            distinct - from < PRICE_SKUS_PER_SELECT ? distinct - from : PRICE_SKUS_PER_SELECT;
        /* The list padded to a power of two (a repeated SKU adds nothing): few shapes. */
        size_t len = ofp_sql_list_len(cnt);
        for (size_t i = 0; i < len; i++)
            params[i] = OF_DB_S(skus[from + (i < cnt ? i : cnt - 1)]);
        char *sql = ofp_sql_rows_new(
            "SELECT sku, price_cents, currency FROM products WHERE sku IN (", "?", len, ")");
        if (!sql) {
            rc = -2;
            break;
        }
        of_db_rows *rows = api->db_query(call, sql, params, len);
        free(sql);
        if (!rows) {
            rc = -1;
            break;
        }
        int r;
        while ((r = api->db_rows_next(rows)) == 1) {
            of_db_value v[3];
            if (ofp_db_row(api, rows, v, 3) != 0 || v[0].type != OF_DB_TEXT ||
                v[1].type != OF_DB_INT || v[2].type != OF_DB_TEXT || v[2].len != 3)
                continue;
            const char *key = v[0].p;
            const char **hit = bsearch(&key, skus + from, cnt, sizeof(*skus), sku_cmp);
            if (!hit)
                continue;
            price *pr = &prices[hit - skus];
            pr->cents = v[1].i;
            memcpy(pr->currency, v[2].p, 3);
            pr->currency[3] = '\0';
            pr->known = 1;
        }
        api->db_rows_free(rows);
        if (r < 0)
            rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        for (size_t l = 0; l < ps[i]->n; l++) {
            line *ln = &ps[i]->lines[l];
            const char **hit = bsearch(&ln->sku, skus, distinct, sizeof(*skus), sku_cmp);
            const price *pr = hit ? &prices[hit - skus] : NULL;
            ln->priced = pr && pr->known;
            if (ln->priced) {
                ln->price = pr->cents;
                memcpy(ln->currency, pr->currency, 4);
            }
        }
    }
out:
    free(skus);
    free(prices);
    free(params);
    return rc;
}

/* After price_set: 0 with p->total, or 1 when the order cannot be placed (why in problem, for a
 * 422). */
static int check_priced(placement *p, char *problem, size_t problem_size)
{
    const line *lines = p->lines;
    for (size_t i = 0; i < p->n; i++) {
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
    int64_t total = 0;
    for (size_t i = 0; i < p->n; i++) {
        int64_t amount;
        if (__builtin_mul_overflow(lines[i].price, lines[i].quantity, &amount) ||
            __builtin_add_overflow(total, amount, &total)) {
            snprintf(problem, problem_size, "the order's total is too large");
            return 1;
        }
    }
    p->total = total;
    return 0;
}

/* n rows of `per` values each (params, row after row) as `head row, row, ...` in statements of
 * at most max rows (a power of two), each of a power of two: a set takes a handful of statement
 * shapes, which stay prepared on the host's connections. 0, -1 db error, -2 no memory. */
static int insert_rows(orders *o, of_call *call, const char *head, const char *row, size_t per,
                       const of_db_value *params, size_t n, size_t max)
{
    for (size_t done = 0; done < n;) {
        size_t k = max;
        while (k > n - done)
            k /= 2;
        char *sql = ofp_sql_rows_new(head, row, k, "");
        if (!sql)
            return -2;
        int64_t r = o->api->db_exec(call, sql, params + done * per, k * per);
        free(sql);
        if (r < 0)
            return -1;
        done += k;
    }
    return 0;
}

/* The orders rows of ps[0..n) (ids set, priced), PENDING at `now`. As insert_rows. */
static int insert_orders(orders *o, of_call *call, placement *const *ps, size_t n, int64_t now)
{
    of_db_value *p = calloc(7 * n, sizeof(*p));
    if (!p)
        return -2;
    for (size_t i = 0; i < n; i++) {
        of_db_value *r = p + 7 * i;
        r[0] = OF_DB_S(ps[i]->id);
        r[1] = OF_DB_S(ps[i]->customer);
        r[2] = OF_DB_I(ps[i]->total);
        r[3] = OF_DB_S(ps[i]->lines[0].currency);
        r[4] = ps[i]->key ? OF_DB_S(ps[i]->key) : OF_DB_NULLV;
        r[5] = OF_DB_I(now);
        r[6] = OF_DB_I(now);
    }
    int rc = insert_rows(o, call,
                         "INSERT INTO orders (id, customer_id, status, history_seq, total_cents, "
                         "currency, idempotency_key, created_at, updated_at) VALUES ",
                         "(?, ?, 'PENDING', 1, ?, ?, ?, FROM_UNIXTIME(? / 1000), "
                         "FROM_UNIXTIME(? / 1000))",
                         7, p, n, 16);
    free(p);
    return rc;
}

/* Their order_items and first order_history rows. As insert_rows. */
static int insert_lines(orders *o, of_call *call, placement *const *ps, size_t n, int64_t now)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ps[i]->n;
    of_db_value *p = calloc(5 * total > 2 * n ? 5 * total : 2 * n, sizeof(*p));
    if (!p)
        return -2;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t l = 0; l < ps[i]->n; l++, k++) {
            of_db_value *r = p + 5 * k;
            r[0] = OF_DB_S(ps[i]->id);
            r[1] = OF_DB_I((int64_t)l + 1);
            r[2] = OF_DB_S(ps[i]->lines[l].sku);
            r[3] = OF_DB_I(ps[i]->lines[l].quantity);
            r[4] = OF_DB_I(ps[i]->lines[l].price);
        }
    }
    int rc = insert_rows(o, call,
                         "INSERT INTO order_items (order_id, line, sku, quantity, "
                         "unit_price_cents) VALUES ",
                         "(?, ?, ?, ?, ?)", 5, p, total, 16);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        p[2 * i] = OF_DB_S(ps[i]->id);
        p[2 * i + 1] = OF_DB_I(now);
    }
    if (rc == 0)
        rc = insert_rows(o, call,
                         "INSERT INTO order_history (order_id, seq, from_status, to_status, "
                         "reason, at) VALUES ",
                         "(?, 1, NULL, 'PENDING', 'placed', FROM_UNIXTIME(? / 1000))", 2, p, n, 64);
    free(p);
    return rc;
}

/* A stored order's events, cached status and 202. OF_OK, or the status of the 500 answered. */
static of_status announce(orders *o, placement *p, int64_t now)
{
    const of_host_api *api = o->api;
    char placed_at[40];
    ofp_rfc3339_ms(now, placed_at, sizeof(placed_at));
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "order_id", p->id);
    ofp_jw_str(&w, "customer_id", p->customer);
    ofp_jw_array(&w, "items");
    for (size_t i = 0; i < p->n; i++) {
        ofp_jw_object(&w, NULL);
        ofp_jw_str(&w, "sku", p->lines[i].sku);
        ofp_jw_int(&w, "quantity", p->lines[i].quantity);
        ofp_jw_int(&w, "unit_price_cents", p->lines[i].price);
        ofp_jw_end(&w);
    }
    ofp_jw_end(&w);
    ofp_jw_int(&w, "total_cents", p->total);
    ofp_jw_str(&w, "currency", p->lines[0].currency);
    ofp_jw_str(&w, "placed_at", placed_at);
    ofp_jw_end(&w);
    if (ord_emit(o, p->call, "placed", "order.placed", p->id, &w) != 0) {
        api->log(o->stage, OF_LOG_ERROR, "place: emitting order.placed failed");
        return ofp_internal_error(api, p->req);
    }
    /* The first transition is published like the others, so that status subscribers see every
     * one (seq 1, from null). */
    if (ord_emit_status(o, p->call, p->id, p->customer, 1, NULL, "PENDING", "placed", placed_at) !=
        0) {
        api->log(o->stage, OF_LOG_ERROR, "place: emitting order.status_changed failed");
        return ofp_internal_error(api, p->req);
    }
    ord_cache_status(o, p->call, p->id, 1, "PENDING");
    api->counter_add(o->placed, 1);
    api->log(o->stage, OF_LOG_INFO, "order %s placed: %zu lines, %" PRId64 " %s", p->id, p->n,
             p->total, p->lines[0].currency);
    char location[80];
    snprintf(location, sizeof(location), "Location: /api/v1/orders/%s", p->id);
    const char *const headers[] = {location, NULL};
    return ofp_respond_json(
        api, p->req, 202, json_pack("{s:s, s:s}", "order_id", p->id, "status", "PENDING"), headers);
}

/* An order that cannot be priced (why in problem): 422, unless its key was used before, whose
 * answer stands (lines priced for the first request and no longer: a product removed since).
 * Only reads. */
static of_status answer_unpriced(orders *o, placement *p, const char *problem)
{
    char id[ORD_ID_LEN + 1], status[17];
    int r = p->key ? find_by_key(o, p->call, p->customer, p->key, 0, id, status) : 0;
    if (r < 0)
        return ofp_http_db_failed(o->api, o->stage, p->call, p->req, "place: idempotency key");
    if (r == 1)
        return answer_repeat(o, p->call, p->req, id, status, p->lines, p->n);
    return ofp_problem(o->api, p->req, 422, "Unprocessable Content", "%s", problem);
}

static of_status place_one(orders *o, placement *p)
{
    const of_host_api *api = o->api;
    of_call *call = p->call;
    of_http_request *req = p->req;
    char id[ORD_ID_LEN + 1], status[17];
    /* A repeated Idempotency-Key is rare: the order's INSERT finds it (the unique key), so the
     * first request costs no lookup by key. */
    char problem[256];
    int pr = price_set(o, call, &p, 1);
    if (pr == -2)
        return ofp_internal_error(api, req);
    if (pr < 0)
        return ofp_http_db_failed(api, o->stage, call, req, "place: prices");
    if (check_priced(p, problem, sizeof(problem)) != 0)
        return answer_unpriced(o, p, problem);
    if (ord_uuid(p->id) != 0) {
        api->log(o->stage, OF_LOG_ERROR, "place: no random bytes for an order id");
        return ofp_internal_error(api, req);
    }
    int64_t now = ord_now_ms();
    int rc = insert_orders(o, call, &p, 1, now);
    if (rc == -2)
        return ofp_internal_error(api, req);
    if (rc < 0) {
        if (p->key && api->db_last_error(call, NULL) == OF_DB_ERR_DUPLICATE) {
            /* The key was used before (or by a concurrent request, committed meanwhile, which
             * the locking read waits for): answer with its order. */
            int r = find_by_key(o, call, p->customer, p->key, 1, id, status);
            if (r == 1)
                return answer_repeat(o, call, req, id, status, p->lines, p->n);
            if (r == 0)
                return OF_RETRY;
            return ofp_http_db_failed(api, o->stage, call, req, "place: idempotency key");
        }
        return ofp_http_db_failed(api, o->stage, call, req, "place: order");
    }
    rc = insert_lines(o, call, &p, 1, now);
    if (rc == -2)
        return ofp_internal_error(api, req);
    if (rc < 0)
        return ofp_http_db_failed(api, o->stage, call, req, "place: items and history");
    return announce(o, p, now);
}

of_status ord_place(void *instance, of_call *call, of_http_request *req)
{
    orders *o = instance;
    placement p = {.call = call, .req = req};
    of_status st = OF_REJECT;
    if (prepare(o, &p) == 0)
        st = place_one(o, &p);
    placement_free(&p);
    return st;
}

void ord_place_batch(void *instance, of_call *const *calls, of_http_request *const *reqs, size_t n,
                     of_status *status)
{
    orders *o = instance;
    const of_host_api *api = o->api;
    placement *ps = calloc(n, sizeof(*ps));
    placement **go = calloc(n, sizeof(*go));
    size_t m = 0;
    if (!ps || !go)
        goto out; /* every request left OF_RETRY and unanswered: each runs alone */
    for (size_t i = 0; i < n; i++) {
        ps[i] = (placement){.call = calls[i], .req = reqs[i]};
        if (prepare(o, &ps[i]) == 0)
            go[m++] = &ps[i];
        else
            status[i] = OF_OK; /* answered before any database work: nothing to hold back */
    }
    if (m == 0)
        goto out;
    int rc = price_set(o, calls[0], go, m);
    if (rc < 0) {
        if (rc == -2)
            api->log(o->stage, OF_LOG_WARN, "place: out of memory pricing %zu orders", m);
        goto out; /* left OF_RETRY: each runs alone, where it answers for itself */
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        placement *p = go[i];
        size_t at = (size_t)(p - ps);
        char problem[256];
        if (check_priced(p, problem, sizeof(problem)) != 0) {
            /* Its answer only reads, so the request does not hold the group back. */
            answer_unpriced(o, p, problem);
            if (api->db_last_error(p->call, NULL) != OF_DB_OK)
                goto out; /* a read failed: left OF_RETRY, each request runs alone */
            status[at] = OF_OK;
            continue;
        }
        if (ord_uuid(p->id) != 0) {
            api->log(o->stage, OF_LOG_ERROR, "place: no random bytes for an order id");
            ofp_internal_error(api, p->req);
            status[at] = OF_OK;
            continue;
        }
        go[k++] = p;
    }
    m = k;
    if (m == 0)
        goto out;
    int64_t now = ord_now_ms();
    /* A failure leaves the placed requests OF_RETRY with the statement failed: each runs alone
     * (a repeated key is found there, an outage answers 503 there). */
    if (insert_orders(o, calls[0], go, m, now) != 0 || insert_lines(o, calls[0], go, m, now) != 0)
        goto out;
    for (size_t i = 0; i < m; i++)
        status[go[i] - ps] = announce(o, go[i], now);
out:
    for (size_t i = 0; ps && i < n; i++)
        placement_free(&ps[i]);
    free(ps);
    free(go);
}
