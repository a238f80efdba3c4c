/*
 * orders: the HTTP routes (all `auth: required`; the caller is the token's subject).
 *
 *   place   POST /api/v1/orders (orders_place.c)
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
        else if (!admin && !ord_text_eq(&owner, customer))
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
    if ((release && ord_emit_command(o, call, "inventory", "inventory.release", id, reason) != 0) ||
        (refund && ord_emit_command(o, call, "payment", "payment.refund", id, reason) != 0)) {
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
        {"place", ord_place},
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
    /* On a host before ABI 1.6 a route with `batch:` is refused, so the lone form is enough. */
    if (OF_API_HAS(o->api, http_batch_handler) &&
        o->api->http_batch_handler(o->stage, "place", ord_place_batch) != 0) {
        snprintf(errstr, errstr_size, "cannot register the batch handler place");
        return -1;
    }
    return 0;
}
