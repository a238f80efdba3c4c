/*
 * notification: the HTTP routes (all `auth: required`; the caller is the token's subject).
 *
 *   webhooks_create  POST   /api/v1/webhooks {url, description?} -> 201 {id, url, description,
 *                    secret, created_at} + Location; the secret is shown only here
 *   webhooks_list    GET    /api/v1/webhooks -> 200 {items: [{id, url, description, active,
 *                    created_at}]} (no secrets)
 *   webhooks_delete  DELETE /api/v1/webhooks/{id} -> 204 (someone else's: 404)
 *   order_events     GET    /api/v1/orders/{id}/events, `websocket: true`: the order's changes,
 *                    the ones so far first (own order, or admin; else 404)
 *   customer_events  GET    /api/v1/events, `websocket: true`: every change of the caller's
 *                    orders (an admin may give ?customer=<id>)
 *
 * order_events reads the orders plugin's tables (orders, order_history) in the same database.
 */
#include "notification.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MS(col) "CAST(ROUND(UNIX_TIMESTAMP(" col ") * 1000) AS SIGNED)"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int text_eq(const of_db_value *v, const char *s)
{
    return v->type == OF_DB_TEXT && v->len == strlen(s) && memcmp(v->p, s, v->len) == 0;
}

/* ---- webhooks ------------------------------------------------------------------------------- */

static of_status webhooks_create(void *instance, of_call *call, of_http_request *req)
{
    ntf *n = instance;
    const of_host_api *api = n->api;
    int admin = 0;
    const char *customer = ofp_caller(n->api, req, NTF_CUSTOMER_MAX, &admin);
    if (!customer)
        return OF_REJECT;
    static const char *const allowed[] = {"url", "description", NULL};
    json_t *doc = ofp_read_object(api, req, allowed);
    if (!doc)
        return OF_REJECT;
    json_t *urlv = json_object_get(doc, "url"), *descv = json_object_get(doc, "description");
    of_status st = OF_REJECT;
    char err[256];
    if (!json_is_string(urlv)) {
        ofp_problem(api, req, 400, "Invalid request", "url: a string is required");
        goto out;
    }
    if (descv && !json_is_null(descv) &&
        (!json_is_string(descv) || memchr(json_string_value(descv), 0, json_string_length(descv)) ||
         ntf_utf8_chars(json_string_value(descv), json_string_length(descv)) >
             NTF_DESCRIPTION_MAX)) {
        ofp_problem(api, req, 400, "Invalid request",
                    "description: a string of at most %d "
                    "characters",
                    NTF_DESCRIPTION_MAX);
        goto out;
    }
    const char *url = json_string_value(urlv);
    if (memchr(url, 0, json_string_length(urlv)) ||
        ntf_check_webhook_url(url, n->allow_private, err, sizeof(err)) != 0) {
        ofp_problem(api, req, 422, "Unprocessable Content", "%s", err);
        goto out;
    }
    const char *desc = json_is_string(descv) ? json_string_value(descv) : NULL;
    of_db_value c = OF_DB_S(customer);
    of_db_rows *rows = api->db_query(
        call, "SELECT COUNT(*) FROM notification_webhooks WHERE customer_id = ?", &c, 1);
    if (!rows) {
        st = ofp_http_db_failed(api, n->stage, call, req, "webhooks_create: count");
        goto out;
    }
    of_db_value cnt = {0};
    int r = api->db_rows_next(rows);
    if (r == 1 && (api->db_rows_get(rows, 0, &cnt) != 0 || cnt.type != OF_DB_INT))
        r = -2;
    api->db_rows_free(rows);
    if (r != 1) {
        st = r == -1 ? ofp_http_db_failed(api, n->stage, call, req, "webhooks_create: count")
                     : ofp_internal_error(api, req);
        goto out;
    }
    if (cnt.i >= n->max_webhooks) {
        ofp_problem(api, req, 409, "Conflict",
                    "at most %" PRId64 " webhooks per customer: delete one first", n->max_webhooks);
        goto out;
    }
    char id[NTF_ID_LEN + 1], secret[NTF_SECRET_MAX + 1];
    if (ofp_uuid(id) != 0 || ntf_secret_new(secret) != 0) {
        api->log(n->stage, OF_LOG_ERROR, "webhooks_create: no random bytes");
        st = ofp_internal_error(api, req);
        goto out;
    }
    int64_t now = now_ms();
    of_db_value ins[] = {OF_DB_S(id),     OF_DB_S(customer),
                         OF_DB_S(url),    desc ? OF_DB_S(desc) : OF_DB_NULLV,
                         OF_DB_S(secret), OF_DB_I(now)};
    if (api->db_exec(call,
                     "INSERT INTO notification_webhooks (id, customer_id, url, description, "
                     "secret, active, created_at) VALUES (?, ?, ?, ?, ?, 1, FROM_UNIXTIME(? / "
                     "1000))",
                     ins, 6) < 0) {
        st = ofp_http_db_failed(api, n->stage, call, req, "webhooks_create: insert");
        goto out;
    }
    api->counter_add(n->registered, 1);
    api->log(n->stage, OF_LOG_INFO, "webhook %s registered for %s", id, customer);
    char created[40], location[80];
    ofp_rfc3339_ms(now, created, sizeof(created));
    snprintf(location, sizeof(location), "Location: /api/v1/webhooks/%s", id);
    const char *const headers[] = {location, NULL};
    st = ofp_respond_json(api, req, 201,
                          json_pack("{s:s, s:s, s:o, s:s, s:s}", "id", id, "url", url,
                                    "description", desc ? json_string(desc) : json_null(), "secret",
                                    secret, "created_at", created),
                          headers);
    explicit_bzero(secret, sizeof(secret));
out:
    json_decref(doc);
    return st;
}

static of_status webhooks_list(void *instance, of_call *call, of_http_request *req)
{
    ntf *n = instance;
    const of_host_api *api = n->api;
    int admin = 0;
    const char *customer = ofp_caller(n->api, req, NTF_CUSTOMER_MAX, &admin);
    if (!customer)
        return OF_REJECT;
    of_db_value c = OF_DB_S(customer);
    of_db_rows *rows = api->db_query(call,
                                     "SELECT id, url, description, active, " MS(
                                         "created_at") " FROM notification_webhooks WHERE "
                                                       "customer_id = ? ORDER BY created_at, id",
                                     &c, 1);
    if (!rows)
        return ofp_http_db_failed(api, n->stage, call, req, "webhooks_list");
    json_t *items = json_array();
    int r = 0;
    while (items && (r = api->db_rows_next(rows)) == 1) {
        of_db_value v[5];
        if (ofp_db_row(api, rows, v, 5) != 0 || v[0].type != OF_DB_TEXT ||
            v[1].type != OF_DB_TEXT || (v[2].type != OF_DB_TEXT && v[2].type != OF_DB_NULL) ||
            v[3].type != OF_DB_INT || v[4].type != OF_DB_INT) {
            r = -2;
            break;
        }
        char created[40];
        ofp_rfc3339_ms(v[4].i, created, sizeof(created));
        json_array_append_new(
            items, json_pack("{s:s%, s:s%, s:o, s:b, s:s}", "id", (const char *)v[0].p, v[0].len,
                             "url", (const char *)v[1].p, v[1].len, "description",
                             v[2].type == OF_DB_TEXT ? json_stringn((const char *)v[2].p, v[2].len)
                                                     : json_null(),
                             "active", (int)(v[3].i != 0), "created_at", created));
    }
    api->db_rows_free(rows);
    if (!items || r < 0) {
        json_decref(items);
        return r == -1 ? ofp_http_db_failed(api, n->stage, call, req, "webhooks_list")
                       : ofp_internal_error(api, req);
    }
    return ofp_respond_json(api, req, 200, json_pack("{s:o}", "items", items), NULL);
}

static of_status webhooks_delete(void *instance, of_call *call, of_http_request *req)
{
    ntf *n = instance;
    const of_host_api *api = n->api;
    int admin = 0;
    const char *customer = ofp_caller(n->api, req, NTF_CUSTOMER_MAX, &admin);
    if (!customer)
        return OF_REJECT;
    const char *id = api->http_param(req, "id");
    if (!id || !ofp_valid_uuid(id))
        return ofp_problem(api, req, 404, "Not Found", "no such webhook");
    of_db_value p[] = {OF_DB_S(id), OF_DB_S(customer)};
    int64_t rc = admin ? api->db_exec(call, "DELETE FROM notification_webhooks WHERE id = ?", p, 1)
                       : api->db_exec(call,
                                      "DELETE FROM notification_webhooks WHERE id = ? AND "
                                      "customer_id = ?",
                                      p, 2);
    if (rc < 0)
        return ofp_http_db_failed(api, n->stage, call, req, "webhooks_delete");
    if (rc == 0)
        return ofp_problem(api, req, 404, "Not Found", "no such webhook");
    api->log(n->stage, OF_LOG_INFO, "webhook %s deleted by %s", id, customer);
    api->http_respond(req, 204, NULL, "", 0, NULL);
    return OF_OK;
}

/* ---- WebSocket routes ----------------------------------------------------------------------- */

static int ws_available(ntf *n, of_http_request *req)
{
    if (n->has_ws)
        return 1;
    ofp_problem(n->api, req, 501, "Not Implemented", "this host has no WebSocket support");
    return 0;
}

static of_status subscribe(ntf *n, of_http_request *req, const char *kind, const char *id)
{
    char ch[NTF_CHANNEL_MAX + 1];
    if (ntf_channel(kind, id, ch) != 0 || n->api->ws_subscribe(req, ch) != 0) {
        n->api->log(n->stage, OF_LOG_ERROR, "cannot subscribe to the channel of %s %s", kind, id);
        return ofp_internal_error(n->api, req);
    }
    return OF_OK;
}

static of_status order_events(void *instance, of_call *call, of_http_request *req)
{
    ntf *n = instance;
    const of_host_api *api = n->api;
    int admin = 0;
    const char *customer = ofp_caller(n->api, req, NTF_CUSTOMER_MAX, &admin);
    if (!customer)
        return OF_REJECT;
    if (!ws_available(n, req))
        return OF_REJECT;
    const char *id = api->http_param(req, "id");
    if (!id || !ofp_valid_uuid(id))
        return ofp_problem(api, req, 404, "Not Found", "no such order");
    /* Subscribed before the first read: the transaction's snapshot is taken at that read, so a
     * change committed after it reaches the client through the channel, one committed before
     * it through the history; one in between is in both, and the client drops the repeat by
     * (order_id, seq). A refused upgrade drops the subscription with the connection. */
    of_status st = subscribe(n, req, "order", id);
    if (st != OF_OK)
        return st;
    of_db_value p = OF_DB_S(id);
    of_db_rows *rows = api->db_query(call, "SELECT customer_id FROM orders WHERE id = ?", &p, 1);
    if (!rows)
        return ofp_http_db_failed(api, n->stage, call, req, "order_events");
    char owner[NTF_CUSTOMER_MAX + 1] = "";
    of_db_value v;
    int r = api->db_rows_next(rows);
    if (r == 1) {
        if (api->db_rows_get(rows, 0, &v) != 0 || v.type != OF_DB_TEXT || v.len >= sizeof(owner))
            r = -2;
        else if (!admin && !text_eq(&v, customer))
            r = 0; /* someone else's: as if it did not exist */
        else
            memcpy(owner, v.p, v.len), owner[v.len] = '\0';
    }
    api->db_rows_free(rows);
    if (r != 1)
        return r == 0    ? ofp_problem(api, req, 404, "Not Found", "no such order")
               : r == -1 ? ofp_http_db_failed(api, n->stage, call, req, "order_events")
                         : ofp_internal_error(api, req);
    rows = api->db_query(call,
                         "SELECT seq, from_status, to_status, reason, " MS(
                             "at") " FROM order_history WHERE order_id = ? ORDER BY seq",
                         &p, 1);
    if (!rows)
        return ofp_http_db_failed(api, n->stage, call, req, "order_events: history");
    while ((r = api->db_rows_next(rows)) == 1) {
        of_db_value h[5];
        if (ofp_db_row(api, rows, h, 5) != 0 || h[0].type != OF_DB_INT ||
            (h[1].type != OF_DB_TEXT && h[1].type != OF_DB_NULL) || h[2].type != OF_DB_TEXT ||
            h[3].type != OF_DB_TEXT || h[4].type != OF_DB_INT) {
            r = -2;
            break;
        }
        /* Column values are NUL-terminated text. */
        char at[40];
        ofp_rfc3339_ms(h[4].i, at, sizeof(at));
        ofp_jw w;
        size_t tlen = 0;
        const char *text = ntf_status_text(&w, &tlen, id, owner, h[0].i,
                                           h[1].type == OF_DB_TEXT ? (const char *)h[1].p : NULL,
                                           (const char *)h[2].p, (const char *)h[3].p, at);
        int sent = text ? api->ws_send(req, text, tlen) : -1;
        ofp_jw_free(&w);
        if (sent != 0) {
            r = -3;
            break;
        }
    }
    api->db_rows_free(rows);
    if (r == -1)
        return ofp_http_db_failed(api, n->stage, call, req, "order_events: history");
    if (r < 0) {
        api->log(n->stage, OF_LOG_ERROR, "order_events %s: %s", id,
                 r == -2 ? "unexpected history row" : "the snapshot could not be queued");
        return ofp_internal_error(api, req);
    }
    return OF_OK; /* not answered: the host upgrades the connection */
}

static of_status customer_events(void *instance, of_call *call, of_http_request *req)
{
    (void)call;
    ntf *n = instance;
    int admin = 0;
    const char *customer = ofp_caller(n->api, req, NTF_CUSTOMER_MAX, &admin);
    if (!customer)
        return OF_REJECT;
    if (!ws_available(n, req))
        return OF_REJECT;
    const char *other = n->api->http_query(req, "customer");
    if (other && *other) {
        if (!admin && strcmp(other, customer) != 0)
            return ofp_problem(n->api, req, 403, "Forbidden",
                               "only an administrator may follow another customer");
        if (strlen(other) > NTF_CUSTOMER_MAX)
            return ofp_problem(n->api, req, 400, "Invalid request",
                               "customer: at most %d characters", NTF_CUSTOMER_MAX);
        customer = other;
    }
    return subscribe(n, req, "customer", customer);
}

int ntf_http_register(ntf *n, char *errstr, size_t errstr_size)
{
    static const struct {
        const char *name;
        of_http_handler fn;
    } handlers[] = {
        {"webhooks_create", webhooks_create}, {"webhooks_list", webhooks_list},
        {"webhooks_delete", webhooks_delete}, {"order_events", order_events},
        {"customer_events", customer_events},
    };
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        if (n->api->http_handler(n->stage, handlers[i].name, handlers[i].fn) != 0) {
            snprintf(errstr, errstr_size, "cannot register the handler %s", handlers[i].name);
            return -1;
        }
    }
    return 0;
}
