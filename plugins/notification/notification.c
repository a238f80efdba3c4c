/*
 * notification: sends each order status change to the customer (docs/notification.md).
 *
 * A database stage (OF_STAGE_DATABASE) consuming orders.status. For each order.status_changed:
 *  - publishes it on the WebSocket channels "order:<id>" and "customer:<id>" (ABI 1.2; a host
 *    without WebSocket support skips this);
 *  - logs it at INFO;
 *  - emits one delivery per active webhook of the customer on the `webhooks` output (key: the
 *    webhook id), with a delivery id derived from the event's ce_id and the webhook id, so a
 *    redelivered event yields the same ids. The `webhook` stage (webhook.c) POSTs them. Secrets
 *    never go on the bus.
 *
 * It also owns the schema of both stages and the routes (notification_http.c): webhook
 * registration and the WebSocket routes.
 */
#include "notification.h"
#include "ofp_id.h"
#include "ofp_sql.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const outputs[] = {"webhooks", NULL};

static const of_option options[] = {
    {.name = "max_webhooks_per_customer",
     .type = OF_OPT_INT,
     .default_value = "10",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 1,
     .max = 1000,
     .description = "webhooks one customer may register"},
    {.name = "allow_private_addresses",
     .type = OF_OPT_BOOL,
     .default_value = "false",
     .description = "registration accepts URLs naming loopback, private or link-local addresses "
                    "(tests)"},
    {.name = NULL},
};

static const of_migration migrations[] = {
    {1, "create notification_webhooks and notification_deliveries",
     "CREATE TABLE notification_webhooks (\n"
     "  id CHAR(36) NOT NULL,\n"
     "  customer_id VARCHAR(64) NOT NULL,\n"
     "  url VARCHAR(2048) NOT NULL,\n"
     "  description VARCHAR(255) NULL,\n"
     "  secret VARCHAR(128) NOT NULL,\n"
     "  active TINYINT(1) NOT NULL DEFAULT 1,\n"
     "  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  PRIMARY KEY (id),\n"
     "  KEY notification_webhooks_customer (customer_id, active)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;\n"
     "CREATE TABLE notification_deliveries (\n"
     "  delivery_id CHAR(36) NOT NULL,\n"
     "  webhook_id CHAR(36) NOT NULL,\n"
     "  order_id VARCHAR(64) NOT NULL,\n"
     "  attempts INT NOT NULL,\n"
     "  last_status INT NULL,\n"
     "  last_error VARCHAR(255) NULL,\n"
     "  delivered_at TIMESTAMP(3) NULL,\n"
     "  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  PRIMARY KEY (delivery_id),\n"
     "  KEY notification_deliveries_webhook (webhook_id)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"},
    {0, NULL, NULL},
};

/* A string field of at most max bytes (not empty unless allow_empty); NULL when not. */
static const char *str_field(json_t *doc, const char *name, size_t max, int allow_empty)
{
    json_t *v = json_object_get(doc, name);
    if (!json_is_string(v))
        return NULL;
    size_t len = json_string_length(v);
    if (len > max || (len == 0 && !allow_empty) || memchr(json_string_value(v), 0, len))
        return NULL;
    return json_string_value(v);
}

/* A final state of the order saga (docs/orders.md). */
static int ntf_final(const char *state)
{
    return strcmp(state, "CONFIRMED") == 0 || strcmp(state, "REJECTED") == 0 ||
           strcmp(state, "CANCELLED") == 0;
}

/* One order.status_changed of a set, parsed; the strings point into doc. */
typedef struct ntf_change {
    json_t *doc; /* owned; NULL for an event of another type (acknowledged, nothing to do) */
    const char *order_id, *customer, *to, *reason, *at, *from;
    int64_t seq;
} ntf_change;

/* Checks the call's event: OF_OK with c->doc set (one of ours), OF_OK without (another type on
 * the topic), or OF_REJECT with the reason set. */
static of_status ntf_parse(const of_host_api *api, of_call *call, ntf_change *c)
{
    memset(c, 0, sizeof(*c));
    size_t tlen = 0;
    const char *type = api->event_header(call, "ce_type", &tlen);
    if (type && !(tlen == strlen(NTF_EVENT_TYPE) && memcmp(type, NTF_EVENT_TYPE, tlen) == 0))
        return OF_OK; /* another event on the topic: not ours */
    size_t plen = 0;
    const char *payload = api->event_payload(call, &plen);
    json_error_t e;
    json_t *doc = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(doc)) {
        json_decref(doc);
        api->set_reason(call, "not a JSON object");
        return OF_REJECT;
    }
    c->order_id = str_field(doc, "order_id", NTF_ORDER_ID_MAX, 0);
    c->customer = str_field(doc, "customer_id", NTF_CUSTOMER_MAX, 0);
    c->to = str_field(doc, "to", 16, 0);
    c->reason = str_field(doc, "reason", 1024, 1);
    c->at = str_field(doc, "at", 64, 0);
    json_t *fromv = json_object_get(doc, "from"), *seqv = json_object_get(doc, "seq");
    c->from = json_is_string(fromv) ? str_field(doc, "from", 16, 0) : NULL;
    c->seq = json_is_integer(seqv) ? (int64_t)json_integer_value(seqv) : 0;
    if (!c->order_id || !c->customer || !c->to || !c->reason || !c->at ||
        !(json_is_null(fromv) || (json_is_string(fromv) && c->from)) ||
        (seqv && (!json_is_integer(seqv) || c->seq < 1))) {
        json_decref(doc);
        api->set_reason(call, "not an order.status_changed {order_id, customer_id, seq, from, to, "
                              "reason, at}");
        return OF_REJECT;
    }
    if (!ofp_valid_key(c->customer, strlen(c->customer))) {
        json_decref(doc);
        api->set_reason(call, "customer_id must not end in a space");
        return OF_REJECT;
    }
    c->doc = doc;
    return OF_OK;
}

/* The active webhooks of a set's customers, as the one query returned them: by customer, then
 * in registration order. */
typedef struct ntf_hook {
    char customer[NTF_CUSTOMER_MAX + 1];
    char id[NTF_ID_LEN + 1];
    int bad; /* the row was not a webhook id: the customer's events are rejected */
} ntf_hook;

typedef struct ntf_hooks {
    ntf_hook *v;
    size_t n, cap;
} ntf_hooks;

/* One SELECT for the distinct customers of changes[0..m); 0, or -1 with the statement failed
 * (db_last_error on calls[first] says why) or out of memory (-2). */
static int ntf_lookup(const of_host_api *api, of_call *call, const ntf_change *changes, size_t m,
                      ntf_hooks *out)
{
    of_db_value *params = calloc(m ? ofp_sql_list_len(m) : 1, sizeof(*params));
    size_t np = 0;
    for (size_t i = 0; params && i < m; i++) {
        if (!changes[i].doc)
            continue;
        size_t j = 0;
        while (j < np && strcmp(params[j].p, changes[i].customer) != 0)
            j++;
        if (j == np)
            params[np++] = (of_db_value)OF_DB_S(changes[i].customer);
    }
    size_t len = ofp_sql_list_len(np);
    for (size_t i = np; params && i < len; i++)
        params[i] = params[np - 1];
    char *sql = params ? ofp_sql_rows_new("SELECT customer_id, id FROM notification_webhooks "
                                          "WHERE active = 1 AND customer_id IN (",
                                          "?", len, ") ORDER BY customer_id, created_at, id")
                       : NULL;
    if (!sql) {
        free(sql);
        free(params);
        return -2;
    }
    of_db_rows *rows = api->db_query(call, sql, params, len);
    free(sql);
    free(params);
    if (!rows)
        return -1;
    int r;
    while ((r = api->db_rows_next(rows)) == 1) {
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 16;
            ntf_hook *v = realloc(out->v, cap * sizeof(*v));
            if (!v) {
                api->db_rows_free(rows);
                return -2;
            }
            out->v = v;
            out->cap = cap;
        }
        ntf_hook *h = &out->v[out->n];
        of_db_value c, id;
        if (api->db_rows_get(rows, 0, &c) != 0 || c.type != OF_DB_TEXT || c.len > NTF_CUSTOMER_MAX)
            continue; /* cannot be one of the set's customers */
        memcpy(h->customer, c.p, c.len);
        h->customer[c.len] = '\0';
        h->bad =
            api->db_rows_get(rows, 1, &id) != 0 || id.type != OF_DB_TEXT || id.len != NTF_ID_LEN;
        if (!h->bad) {
            memcpy(h->id, id.p, id.len);
            h->id[id.len] = '\0';
        }
        out->n++;
    }
    api->db_rows_free(rows);
    return r < 0 ? -1 : 0;
}

/* The webhook deliveries of one change (one per webhook of its customer) and its other channels.
 * OF_OK, or OF_RETRY / OF_REJECT with the reason set. */
static of_status ntf_deliver(ntf *n, of_call *call, const ntf_change *c, const ntf_hooks *hooks)
{
    const of_host_api *api = n->api;
    size_t idlen = 0;
    const char *ce_id = api->event_header(call, "ce_id", &idlen);
    char seed[160];
    if (!ce_id || idlen == 0) { /* an event without an id: its content identifies it */
        snprintf(seed, sizeof(seed), "%s/%" PRId64 "/%s", c->order_id, c->seq, c->to);
        ce_id = seed;
        idlen = strlen(seed);
    }
    for (size_t i = 0; i < hooks->n; i++)
        if (hooks->v[i].bad && strcmp(hooks->v[i].customer, c->customer) == 0) {
            api->set_reason(call, "unexpected webhook row");
            return OF_REJECT;
        }
    size_t count = 0;
    for (size_t i = 0; i < hooks->n; i++) {
        const char *wid = hooks->v[i].id;
        if (strcmp(hooks->v[i].customer, c->customer) != 0)
            continue;
        char did[NTF_DELIVERY_ID_LEN + 1];
        ofp_jw w;
        ofp_jw_init(&w);
        if (ntf_delivery_id(ce_id, idlen, wid, did) == 0) {
            ofp_jw_object(&w, NULL);
            ofp_jw_str(&w, "delivery_id", did);
            ofp_jw_str(&w, "webhook_id", wid);
            ofp_jw_str(&w, "type", NTF_EVENT_TYPE);
            ofp_jw_str(&w, "timestamp", c->at);
            ofp_jw_object(&w, "data");
            ntf_status_members(&w, 0, c->order_id, c->customer, c->seq, c->from, c->to, c->reason,
                               c->at);
            ofp_jw_end(&w);
            ofp_jw_end(&w);
        }
        size_t tlen = 0;
        const char *text = ofp_jw_text(&w, &tlen);
        of_header h = {.name = "ce_type",
                       .value = NTF_DELIVERY_CE_TYPE,
                       .value_len = strlen(NTF_DELIVERY_CE_TYPE)};
        int rc = text ? api->emit(call, "webhooks", wid, strlen(wid), text, tlen, &h, 1) : -1;
        ofp_jw_free(&w);
        if (rc != 0) {
            api->set_reason(call, "out of memory");
            return OF_RETRY;
        }
        count++;
    }
    api->counter_add(n->deliveries, (double)count);
    api->counter_add(n->changes, 1);

    /* The log channel. */
    api->log(n->stage, OF_LOG_INFO,
             "order %s of %s: %s -> %s (seq %" PRId64 ", %s), %zu webhook(s)", c->order_id,
             c->customer, c->from ? c->from : "none", c->to, c->seq, c->reason, count);

    /* The live channels: at most once per publish; the message's (order_id, seq) lets a client
     * drop a repeat after a retry. */
    if (n->has_ws) {
        ofp_jw w;
        size_t tlen = 0;
        const char *text = ntf_status_text(&w, &tlen, c->order_id, c->customer, c->seq, c->from,
                                           c->to, c->reason, c->at);
        char ch[NTF_CHANNEL_MAX + 1];
        if (text) {
            if (ntf_channel("order", c->order_id, ch) == 0)
                api->ws_publish(n->stage, ch, text, tlen);
            if (ntf_channel("customer", c->customer, ch) == 0)
                api->ws_publish(n->stage, ch, text, tlen);
            api->counter_add(n->published, 1);
        }
        ofp_jw_free(&w);
        /* The host's dashboard lists recent items with their latest state (no customer id:
         * operators see the flow, not who ordered). */
        ofp_jw_init(&w);
        ofp_jw_object(&w, NULL);
        ofp_jw_str(&w, "type", "item");
        ofp_jw_str(&w, "pipeline", api->pipeline_name(n->stage));
        ofp_jw_str(&w, "key", c->order_id);
        ofp_jw_str(&w, "state", c->to);
        ofp_jw_int(&w, "seq", c->seq);
        ofp_jw_str(&w, "at", c->at);
        ofp_jw_bool(&w, "final", ntf_final(c->to));
        ofp_jw_end(&w);
        if ((text = ofp_jw_text(&w, &tlen)))
            api->ws_publish(n->stage, "dashboard", text, tlen);
        ofp_jw_free(&w);
    }
    return OF_OK;
}

/* A set of status changes in one transaction (ABI 1.5; process() hands over one): the webhooks
 * of all their customers in one query, then each change's deliveries and channels. Stops at the
 * first change that does not go through: the host commits only the ones before it. */
static void ntf_process_batch(void *instance, of_call *const *calls, size_t count,
                              of_status *status)
{
    ntf *n = instance;
    const of_host_api *api = n->api;
    ntf_change one, *changes = count == 1 ? &one : calloc(count, sizeof(*changes));
    if (!changes) {
        for (size_t i = 0; i < count; i++) {
            api->set_reason(calls[i], "out of memory");
            status[i] = OF_RETRY;
        }
        return;
    }
    size_t m = 0, ours = 0; /* changes parsed before the first bad one; how many are ours */
    while (m < count && (status[m] = ntf_parse(api, calls[m], &changes[m])) == OF_OK) {
        ours += changes[m].doc != NULL;
        m++;
    }
    ntf_hooks hooks = {0};
    int looked = ours ? ntf_lookup(api, calls[0], changes, m, &hooks) : 0;
    for (size_t i = 0; i < m; i++) {
        if (!changes[i].doc)
            continue;       /* status[i] is OF_OK already */
        if (looked == -1) { /* the calls share the transaction, and so its error */
            status[i] = ofp_event_db_failed(api, n->stage, calls[i], "webhooks of the customer");
        } else if (looked < 0) {
            api->set_reason(calls[i], "out of memory");
            status[i] = OF_RETRY;
        } else {
            status[i] = ntf_deliver(n, calls[i], &changes[i], &hooks);
        }
        if (status[i] != OF_OK)
            break;
    }
    for (size_t i = 0; i < m; i++)
        json_decref(changes[i].doc);
    free(hooks.v);
    if (changes != &one)
        free(changes);
}

static of_status ntf_process(void *instance, of_call *call)
{
    of_status s = OF_RETRY;
    ntf_process_batch(instance, &call, 1, &s);
    return s;
}

static int ntf_init(of_stage *stage, const of_host_api *api, const of_config *cfg, void **instance,
                    char *errstr, size_t errstr_size)
{
    if (!OF_API_HAS(api, db_query) || !OF_API_HAS(api, db_last_error) ||
        !OF_API_HAS(api, http_handler) || !OF_API_HAS(api, http_problem)) {
        snprintf(errstr, errstr_size, "this host lacks the database or HTTP functions (ABI 1.1)");
        return -1;
    }
    ntf *n = calloc(1, sizeof(*n));
    if (!n) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    n->api = api;
    n->stage = stage;
    n->has_ws =
        OF_API_HAS(api, ws_publish) && OF_API_HAS(api, ws_subscribe) && OF_API_HAS(api, ws_send);
    n->max_webhooks = api->config_int(cfg, "max_webhooks_per_customer");
    n->allow_private = api->config_bool(cfg, "allow_private_addresses");
    n->changes = api->counter_register(stage, "notification_status_changes_total",
                                       "order status changes notified");
    n->deliveries = api->counter_register(stage, "notification_webhook_deliveries_total",
                                          "webhook deliveries emitted");
    n->published = api->counter_register(stage, "notification_ws_published_total",
                                         "status changes published to WebSocket channels");
    n->registered = api->counter_register(stage, "notification_webhooks_registered_total",
                                          "webhooks registered");
    if (!n->has_ws)
        api->log(stage, OF_LOG_INFO,
                 "this host has no WebSocket functions (ABI 1.2): live notifications are off");
    if (ntf_http_register(n, errstr, errstr_size) != 0) {
        free(n);
        return -1;
    }
    *instance = n;
    return 0;
}

static void ntf_shutdown(void *instance)
{
    free(instance);
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "notification",
    .version = "1.0.0",
    .description = "order status changes to the customer: WebSocket, webhooks, log",
    .options = options,
    .outputs = outputs,
    .init = ntf_init,
    .process = ntf_process,
    .shutdown = ntf_shutdown,
    .process_batch = ntf_process_batch,
    .flags = OF_STAGE_DATABASE,
    .migrations = migrations,
    .accepts = (const char *const[]){NTF_EVENT_TYPE, NULL},
};

OF_STAGE_DEFINE(descriptor)
