/*
 * inventory: the admin and catalog routes.
 *
 *   create_product  POST {sku, name, price_cents, currency, initial_stock} -> 201 the product
 *                   (admin; 409 duplicate sku, 400 naming the field)
 *   set_stock       PUT {on_hand} on .../{sku}/stock -> 200 the product (admin; 404 unknown,
 *                   409 below the reserved units)
 *   list_products   GET ?limit=1..100 (20) &after=<sku> -> 200 {items, next_after}
 *   get_product     GET .../{sku} -> 200 the product with its stock, 404 unknown
 *
 * Each runs in the host's transaction for the call: 2xx answers return OF_OK (committed),
 * refusals OF_REJECT (rolled back), database outages OF_RETRY (503).
 */
#include "ofp_http.h"
#include "inventory.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The route declares roles: [admin]; checked here too, so that a route declared without them
 * does not open the catalog to everyone. Answers 401/403 and returns 0 when not an admin. */
static int require_admin(inventory *inv, of_http_request *req)
{
    const of_principal *p = inv->api->http_principal(req);
    if (!p) {
        ofp_problem(inv->api, req, 401, "Unauthorized", "this route needs a bearer token");
        return 0;
    }
    for (size_t i = 0; p->roles && p->roles[i]; i++)
        if (strcmp(p->roles[i], "admin") == 0)
            return 1;
    ofp_problem(inv->api, req, 403, "Forbidden", "changing the catalog needs the admin role");
    return 0;
}

/* ---- reading products ----------------------------------------------------------------------- */

#define PRODUCT_COLUMNS                                                                            \
    "SELECT p.sku, p.name, p.price_cents, p.currency, "                                            \
    "CAST(ROUND(UNIX_TIMESTAMP(p.created_at) * 1000) AS SIGNED), "                                 \
    "s.on_hand, s.available, s.reserved FROM products p JOIN stock s ON s.sku = p.sku "

/* The current row as a product document; NULL on a malformed row or no memory. */
static json_t *product_row(inventory *inv, of_db_rows *rows)
{
    const of_host_api *api = inv->api;
    of_db_value v[8];
    for (size_t i = 0; i < 8; i++)
        if (api->db_rows_get(rows, i, &v[i]) != 0)
            return NULL;
    if (v[0].type != OF_DB_TEXT || v[1].type != OF_DB_TEXT || v[3].type != OF_DB_TEXT)
        return NULL;
    for (size_t i = 4; i < 8; i++)
        if (v[i].type != OF_DB_INT)
            return NULL;
    if (v[2].type != OF_DB_INT)
        return NULL;
    char created[40];
    ofp_rfc3339_ms(v[4].i, created, sizeof(created));
    return json_pack("{s:s%, s:s%, s:I, s:s%, s:s, s:{s:I, s:I, s:I}}", "sku", (const char *)v[0].p,
                     v[0].len, "name", (const char *)v[1].p, v[1].len, "price_cents",
                     (json_int_t)v[2].i, "currency", (const char *)v[3].p, v[3].len, "created_at",
                     created, "stock", "on_hand", (json_int_t)v[5].i, "available",
                     (json_int_t)v[6].i, "reserved", (json_int_t)v[7].i);
}

/* Reads one product: 1 and *out, 0 when unknown, -1 on a database error, -2 malformed. */
static int load_product(inventory *inv, of_call *call, const char *sku, json_t **out)
{
    of_db_value p = OF_DB_S(sku);
    of_db_rows *rows = inv->api->db_query(call, PRODUCT_COLUMNS "WHERE p.sku = ?", &p, 1);
    if (!rows)
        return -1;
    int r = inv->api->db_rows_next(rows);
    if (r == 1) {
        *out = product_row(inv, rows);
        if (!*out)
            r = -2;
    }
    inv->api->db_rows_free(rows);
    return r;
}

/* The {sku} path parameter, validated; NULL when answered (404). */
static const char *path_sku(inventory *inv, of_http_request *req)
{
    const char *sku = inv->api->http_param(req, "sku");
    if (!sku || !inv_valid_sku(sku, strlen(sku))) {
        ofp_problem(inv->api, req, 404, "Not Found", "no such product");
        return NULL;
    }
    return sku;
}

/* ---- handlers ------------------------------------------------------------------------------- */

static of_status create_product(void *instance, of_call *call, of_http_request *req)
{
    inventory *inv = instance;
    const of_host_api *api = inv->api;
    if (!require_admin(inv, req))
        return OF_REJECT;
    static const char *const allowed[] = {"sku",      "name",          "price_cents",
                                          "currency", "initial_stock", NULL};
    json_t *doc = ofp_read_object(inv->api, req, allowed);
    if (!doc)
        return OF_REJECT;
    of_status st = OF_REJECT;
    json_t *sku = json_object_get(doc, "sku"), *name = json_object_get(doc, "name");
    json_t *price = json_object_get(doc, "price_cents"), *cur = json_object_get(doc, "currency");
    json_t *initial = json_object_get(doc, "initial_stock");
    if (!json_is_string(sku) || !inv_valid_sku(json_string_value(sku), json_string_length(sku))) {
        st = ofp_problem(inv->api, req, 400, "Invalid request",
                         "sku: 1 to %d characters of A-Z a-z 0-9 . _ - are required", INV_SKU_MAX);
    } else if (!json_is_string(name) || json_string_length(name) == 0 ||
               strlen(json_string_value(name)) != json_string_length(name) ||
               inv_utf8_chars(json_string_value(name), json_string_length(name)) > INV_NAME_MAX) {
        st = ofp_problem(inv->api, req, 400, "Invalid request",
                         "name: 1 to %d characters are required", INV_NAME_MAX);
    } else if (!json_is_integer(price) || json_integer_value(price) < 0) {
        st = ofp_problem(inv->api, req, 400, "Invalid request",
                         "price_cents: an integer >= 0 (minor units) is required");
    } else if (!json_is_string(cur) ||
               !inv_valid_currency(json_string_value(cur), json_string_length(cur))) {
        st = ofp_problem(inv->api, req, 400, "Invalid request",
                         "currency: an ISO 4217 code (three capital letters) is required");
    } else if (initial && (!json_is_integer(initial) || json_integer_value(initial) < 0 ||
                           json_integer_value(initial) > INV_STOCK_MAX)) {
        st = ofp_problem(inv->api, req, 400, "Invalid request",
                         "initial_stock: an integer from 0 to %lld is required",
                         (long long)INV_STOCK_MAX);
    } else {
        const char *s = json_string_value(sku);
        int64_t units = initial ? json_integer_value(initial) : 0;
        of_db_value p[] = {OF_DB_S(s), OF_DB_S(json_string_value(name)),
                           OF_DB_I(json_integer_value(price)), OF_DB_S(json_string_value(cur))};
        of_db_value q[] = {OF_DB_S(s), OF_DB_I(units), OF_DB_I(units)};
        json_t *product = NULL;
        if (api->db_exec(call,
                         "INSERT INTO products (sku, name, price_cents, currency) "
                         "VALUES (?, ?, ?, ?)",
                         p, 4) < 0) {
            if (api->db_last_error(call, NULL) == OF_DB_ERR_DUPLICATE)
                st = ofp_problem(inv->api, req, 409, "Conflict", "a product with this sku exists");
            else
                st = ofp_http_db_failed(inv->api, inv->stage, call, req, "create_product");
        } else if (api->db_exec(call,
                                "INSERT INTO stock (sku, on_hand, available, reserved) "
                                "VALUES (?, ?, ?, 0)",
                                q, 3) < 0) {
            st = ofp_http_db_failed(inv->api, inv->stage, call, req, "create_product stock");
        } else {
            int r = load_product(inv, call, s, &product);
            if (r == 1) {
                char location[128];
                snprintf(location, sizeof(location), "Location: /api/v1/products/%s", s);
                const char *const headers[] = {location, NULL};
                st = ofp_respond_json(inv->api, req, 201, product, headers);
                api->log(inv->stage, OF_LOG_INFO, "product %s created with %" PRId64 " units", s,
                         units);
            } else {
                st = r == -1 ? ofp_http_db_failed(inv->api, inv->stage, call, req,
                                                  "create_product read")
                             : ofp_internal_error(inv->api, req);
            }
        }
    }
    json_decref(doc);
    return st;
}

static of_status set_stock(void *instance, of_call *call, of_http_request *req)
{
    inventory *inv = instance;
    const of_host_api *api = inv->api;
    if (!require_admin(inv, req))
        return OF_REJECT;
    const char *sku = path_sku(inv, req);
    if (!sku)
        return OF_REJECT;
    static const char *const allowed[] = {"on_hand", NULL};
    json_t *doc = ofp_read_object(inv->api, req, allowed);
    if (!doc)
        return OF_REJECT;
    json_t *v = json_object_get(doc, "on_hand");
    int ok =
        json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= INV_STOCK_MAX;
    int64_t on_hand = ok ? json_integer_value(v) : 0;
    json_decref(doc);
    if (!ok)
        return ofp_problem(inv->api, req, 400, "Invalid request",
                           "on_hand: an integer from 0 to %lld is required",
                           (long long)INV_STOCK_MAX);
    /* Lock the row, so reservations wait for this change and it sees their units. */
    of_db_value p = OF_DB_S(sku);
    of_db_rows *rows =
        api->db_query(call, "SELECT reserved FROM stock WHERE sku = ? FOR UPDATE", &p, 1);
    if (!rows)
        return ofp_http_db_failed(inv->api, inv->stage, call, req, "set_stock");
    int r = api->db_rows_next(rows);
    of_db_value reserved = {0};
    if (r == 1 && (api->db_rows_get(rows, 0, &reserved) != 0 || reserved.type != OF_DB_INT))
        r = -2;
    api->db_rows_free(rows);
    if (r == -1)
        return ofp_http_db_failed(inv->api, inv->stage, call, req, "set_stock");
    if (r == -2)
        return ofp_internal_error(inv->api, req);
    if (r == 0)
        return ofp_problem(inv->api, req, 404, "Not Found", "no such product");
    if (on_hand < reserved.i)
        return ofp_problem(inv->api, req, 409, "Conflict",
                           "on_hand %" PRId64 " is below the %" PRId64 " units reserved by orders",
                           on_hand, reserved.i);
    of_db_value u[] = {OF_DB_I(on_hand), OF_DB_I(on_hand), OF_DB_S(sku)};
    if (api->db_exec(call, "UPDATE stock SET on_hand = ?, available = ? - reserved WHERE sku = ?",
                     u, 3) < 0)
        return ofp_http_db_failed(inv->api, inv->stage, call, req, "set_stock update");
    json_t *product = NULL;
    r = load_product(inv, call, sku, &product);
    if (r != 1)
        return r == -1 ? ofp_http_db_failed(inv->api, inv->stage, call, req, "set_stock read")
                       : ofp_internal_error(inv->api, req);
    api->log(inv->stage, OF_LOG_INFO, "stock of %s set to %" PRId64 " on hand", sku, on_hand);
    return ofp_respond_json(inv->api, req, 200, product, NULL);
}

static of_status get_product(void *instance, of_call *call, of_http_request *req)
{
    inventory *inv = instance;
    const char *sku = path_sku(inv, req);
    if (!sku)
        return OF_REJECT;
    json_t *product = NULL;
    int r = load_product(inv, call, sku, &product);
    if (r == 0)
        return ofp_problem(inv->api, req, 404, "Not Found", "no such product");
    if (r != 1)
        return r == -1 ? ofp_http_db_failed(inv->api, inv->stage, call, req, "get_product")
                       : ofp_internal_error(inv->api, req);
    return ofp_respond_json(inv->api, req, 200, product, NULL);
}

/* A decimal in [lo, hi]; 0, or -1. */
static int parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return -1;
    for (const char *c = s; *c; c++)
        if (*c < '0' || *c > '9')
            return -1;
    errno = 0;
    long v = strtol(s, NULL, 10);
    if (errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static of_status list_products(void *instance, of_call *call, of_http_request *req)
{
    inventory *inv = instance;
    const of_host_api *api = inv->api;
    long limit = 20;
    const char *l = api->http_query(req, "limit");
    if (l && parse_int(l, 1, 100, &limit) != 0)
        return ofp_problem(inv->api, req, 400, "Invalid request",
                           "limit: an integer from 1 to 100");
    const char *after = api->http_query(req, "after");
    if (after && *after && !inv_valid_sku(after, strlen(after)))
        return ofp_problem(inv->api, req, 400, "Invalid request",
                           "after: a sku (the last one seen)");
    of_db_value p[] = {OF_DB_S(after ? after : ""), OF_DB_I(limit + 1)};
    of_db_rows *rows =
        api->db_query(call, PRODUCT_COLUMNS "WHERE p.sku > ? ORDER BY p.sku LIMIT ?", p, 2);
    if (!rows)
        return ofp_http_db_failed(inv->api, inv->stage, call, req, "list_products");
    json_t *items = json_array();
    json_t *next = json_null();
    int r = 0;
    long n = 0;
    while (items && (r = api->db_rows_next(rows)) == 1) {
        if (n == limit) { /* one more exists: the page ends with the one before */
            json_t *last = json_array_get(items, json_array_size(items) - 1);
            json_decref(next);
            next = json_incref(json_object_get(last, "sku"));
            break;
        }
        json_t *product = product_row(inv, rows);
        if (!product) {
            r = -2;
            break;
        }
        json_array_append_new(items, product);
        n++;
    }
    api->db_rows_free(rows);
    if (!items || r < 0) {
        json_decref(items);
        json_decref(next);
        return r == -1 ? ofp_http_db_failed(inv->api, inv->stage, call, req, "list_products")
                       : ofp_internal_error(inv->api, req);
    }
    return ofp_respond_json(inv->api, req, 200,
                            json_pack("{s:o, s:o}", "items", items, "next_after", next), NULL);
}

int inv_http_register(inventory *inv, char *errstr, size_t errstr_size)
{
    static const struct {
        const char *name;
        of_http_handler fn;
    } handlers[] = {
        {"create_product", create_product},
        {"set_stock", set_stock},
        {"list_products", list_products},
        {"get_product", get_product},
    };
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        if (inv->api->http_handler(inv->stage, handlers[i].name, handlers[i].fn) != 0) {
            snprintf(errstr, errstr_size, "cannot register the handler %s", handlers[i].name);
            return -1;
        }
    }
    return 0;
}
