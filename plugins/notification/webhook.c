/*
 * webhook: delivers the notification stage's webhook deliveries (docs/notification.md).
 *
 * A database stage (OF_STAGE_DATABASE) consuming the topic of notification's `webhooks` output
 * (key: the webhook id, so one endpoint's deliveries go in order). For each delivery it reads the
 * webhook (url, secret, active) from notification_webhooks; a deleted or inactive one drops the
 * delivery, as does one notification_deliveries already records as delivered. Otherwise it POSTs
 *
 *   {"id": <delivery id>, "type": "order.status_changed", "timestamp": <the change's time>,
 *    "data": {...}}
 *
 * signed after the Standard Webhooks specification (webhook-id, webhook-timestamp,
 * webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">), the signature made
 * again at each attempt. A 2xx records the delivery and acknowledges it; 410 Gone deactivates
 * the webhook; anything else (a connection error, a timeout, another status) returns OF_RETRY, so
 * the stage's `retry:` policy backs off and, once the tries run out, the delivery goes to the
 * dead-letter topic (replayable with `orderflow dlq replay`). A URL that resolves to a private
 * address is refused for good (OF_REJECT) unless allow_private_addresses is set.
 */
#include <orderflow/stage.h>

#include "notify.h"
#include "ofp_client.h"
#include "ofp_http.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WEBHOOK_VERSION "1.0.0"

static const of_option options[] = {
    {.name = "timeout",
     .type = OF_OPT_DURATION,
     .default_value = "5s",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 1,
     .max = 60000,
     .description = "one bound for connecting, the TLS handshake, sending and receiving"},
    {.name = "allow_private_addresses",
     .type = OF_OPT_BOOL,
     .default_value = "false",
     .description = "deliver to loopback, private and link-local addresses (tests, internal "
                    "receivers)"},
    {.name = "ca_file",
     .type = OF_OPT_STRING,
     .description = "PEM file of the CAs trusted for https:// (default: the system's store)"},
    {.name = NULL},
};

typedef struct webhook {
    const of_host_api *api;
    of_stage *stage;
    int64_t timeout_ms;
    ofp_client *client;
    of_counter *delivered, *failed, *dropped, *gone;
} webhook;

static const char *str_field(json_t *doc, const char *name, size_t max)
{
    json_t *v = json_object_get(doc, name);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        memchr(json_string_value(v), 0, json_string_length(v)))
        return NULL;
    return json_string_value(v);
}

/* Copies a text column; 0, or -1. */
static int text_col(const of_host_api *api, of_db_rows *rows, size_t col, char *out, size_t size)
{
    of_db_value v;
    if (api->db_rows_get(rows, col, &v) != 0 || v.type != OF_DB_TEXT || v.len >= size)
        return -1;
    memcpy(out, v.p, v.len);
    out[v.len] = '\0';
    return 0;
}

/* Records the delivery's outcome in notification_deliveries; 0, or -1. */
static int record(webhook *w, of_call *call, const char *did, const char *wid, const char *order_id,
                  int attempts, int status, const char *error, int delivered)
{
    of_db_value p[] = {OF_DB_S(did),      OF_DB_S(wid),    OF_DB_S(order_id),
                       OF_DB_I(attempts), OF_DB_I(status), error ? OF_DB_S(error) : OF_DB_NULLV,
                       OF_DB_I(delivered)};
    return w->api->db_exec(call,
                           "INSERT INTO notification_deliveries (delivery_id, webhook_id, "
                           "order_id, attempts, last_status, last_error, delivered_at, "
                           "updated_at) VALUES (?, ?, ?, ?, ?, ?, IF(? = 1, NOW(3), NULL), "
                           "NOW(3)) ON DUPLICATE KEY UPDATE attempts = VALUES(attempts), "
                           "last_status = VALUES(last_status), last_error = "
                           "VALUES(last_error), delivered_at = COALESCE(delivered_at, "
                           "VALUES(delivered_at)), updated_at = NOW(3)",
                           p, 7) < 0
               ? -1
               : 0;
}

static of_status webhook_process(void *instance, of_call *call)
{
    webhook *w = instance;
    const of_host_api *api = w->api;
    size_t plen = 0;
    const char *payload = api->event_payload(call, &plen);
    json_t *doc = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, NULL);
    const char *did = doc ? str_field(doc, "delivery_id", NTF_DELIVERY_ID_LEN) : NULL;
    const char *wid = doc ? str_field(doc, "webhook_id", NTF_ID_LEN) : NULL;
    const char *type = doc ? str_field(doc, "type", 128) : NULL;
    const char *stamp = doc ? str_field(doc, "timestamp", 64) : NULL;
    json_t *data = doc ? json_object_get(doc, "data") : NULL;
    const char *order_id = json_is_object(data) ? str_field(data, "order_id", 64) : NULL;
    if (!did || strncmp(did, "msg_", 4) != 0 || !wid || !type || !stamp || !order_id) {
        json_decref(doc);
        api->set_reason(call, "not a webhook delivery {delivery_id, webhook_id, type, timestamp, "
                              "data: {order_id, ...}}");
        return OF_REJECT;
    }
    of_status st = OF_OK;
    char *body = NULL;
    ofp_response resp = {0};
    char url[OFP_URL_MAX + 1], secret[NTF_SECRET_MAX + 1];
    secret[0] = '\0';

    /* The webhook, now: deleted or deactivated since the delivery was made means no delivery. */
    of_db_value p = OF_DB_S(wid);
    of_db_rows *rows = api->db_query(
        call, "SELECT url, secret, active FROM notification_webhooks WHERE id = ?", &p, 1);
    if (!rows) {
        st = ofp_event_db_failed(api, w->stage, call, "reading the webhook");
        goto out;
    }
    of_db_value active = {0};
    int r = api->db_rows_next(rows);
    if (r == 1 && (text_col(api, rows, 0, url, sizeof(url)) != 0 ||
                   text_col(api, rows, 1, secret, sizeof(secret)) != 0 ||
                   api->db_rows_get(rows, 2, &active) != 0 || active.type != OF_DB_INT))
        r = -2;
    api->db_rows_free(rows);
    if (r < 0) {
        st = r == -1 ? ofp_event_db_failed(api, w->stage, call, "reading the webhook") : OF_REJECT;
        if (r == -2)
            api->set_reason(call, "unexpected webhook row");
        goto out;
    }
    if (r == 0 || active.i == 0) {
        api->log(w->stage, OF_LOG_INFO, "delivery %s dropped: webhook %s is %s", did, wid,
                 r == 0 ? "deleted" : "inactive");
        api->counter_add(w->dropped, 1);
        goto out;
    }
    of_db_value dp = OF_DB_S(did);
    rows = api->db_query(call,
                         "SELECT delivered_at IS NOT NULL FROM notification_deliveries WHERE "
                         "delivery_id = ?",
                         &dp, 1);
    if (!rows) {
        st = ofp_event_db_failed(api, w->stage, call, "reading the delivery");
        goto out;
    }
    of_db_value done = {0};
    r = api->db_rows_next(rows);
    if (r == 1 && (api->db_rows_get(rows, 0, &done) != 0 || done.type != OF_DB_INT))
        r = -1;
    api->db_rows_free(rows);
    if (r < 0) {
        st = ofp_event_db_failed(api, w->stage, call, "reading the delivery");
        goto out;
    }
    if (r == 1 && done.i) {
        api->log(w->stage, OF_LOG_DEBUG, "delivery %s was already delivered", did);
        goto out;
    }

    ofp_url u;
    char err[256];
    if (ofp_url_parse(url, OFP_URL_HTTPS | OFP_URL_QUERY, &u, err, sizeof(err)) != 0) {
        api->set_reason(call, "webhook %s: %s", wid, err);
        st = OF_REJECT;
        goto out;
    }
    json_t *msg = json_pack("{s:s, s:s, s:s, s:O}", "id", did, "type", type, "timestamp", stamp,
                            "data", data);
    body = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    int64_t ts = (int64_t)time(NULL);
    char sig[NTF_SIGNATURE_MAX + 1];
    if (!body || ntf_sign(secret, did, ts, body, strlen(body), sig) != 0) {
        api->set_reason(call, body ? "webhook %s: its secret is not base64" : "out of memory", wid);
        st = body ? OF_REJECT : OF_RETRY;
        goto out;
    }
    char hid[64], hts[48], hsig[96];
    snprintf(hid, sizeof(hid), "webhook-id: %s", did);
    snprintf(hts, sizeof(hts), "webhook-timestamp: %" PRId64, ts);
    snprintf(hsig, sizeof(hsig), "webhook-signature: %s", sig);
    const char *const headers[] = {hid, hts, hsig, NULL};
    int attempt = api->event_attempt(call);
    ofp_client_rc rc = ofp_client_post(w->client, &u, NULL, headers, body, strlen(body),
                                       w->timeout_ms, &resp, err, sizeof(err));
    if (rc == OFP_CLIENT_BLOCKED) {
        api->log(w->stage, OF_LOG_WARN, "delivery %s to webhook %s refused: %s", did, wid, err);
        api->set_reason(call, "webhook %s: %s", wid, err);
        st = OF_REJECT;
        goto out;
    }
    if (rc != OFP_CLIENT_OK) {
        api->counter_add(w->failed, 1);
        api->log(w->stage, OF_LOG_WARN, "delivery %s to webhook %s, attempt %d: %s", did, wid,
                 attempt, err);
        api->set_reason(call, "webhook %s: %s", wid, err);
        st = OF_RETRY;
        goto out;
    }
    if (resp.status >= 200 && resp.status < 300) {
        if (record(w, call, did, wid, order_id, attempt, resp.status, NULL, 1) != 0) {
            st = ofp_event_db_failed(api, w->stage, call, "recording the delivery");
            goto out;
        }
        api->counter_add(w->delivered, 1);
        api->log(w->stage, OF_LOG_INFO, "delivery %s to webhook %s: HTTP %d (attempt %d)", did, wid,
                 resp.status, attempt);
        goto out;
    }
    if (resp.status == 410) { /* the receiver says it is gone for good */
        of_db_value g = OF_DB_S(wid);
        if (api->db_exec(call, "UPDATE notification_webhooks SET active = 0 WHERE id = ?", &g, 1) <
                0 ||
            record(w, call, did, wid, order_id, attempt, 410, "410 Gone: webhook deactivated", 0) !=
                0) {
            st = ofp_event_db_failed(api, w->stage, call, "deactivating the webhook");
            goto out;
        }
        api->counter_add(w->gone, 1);
        api->log(w->stage, OF_LOG_WARN, "webhook %s answered 410 Gone: deactivated", wid);
        goto out;
    }
    api->counter_add(w->failed, 1);
    api->log(w->stage, OF_LOG_WARN, "delivery %s to webhook %s, attempt %d: HTTP %d", did, wid,
             attempt, resp.status);
    api->set_reason(call, "webhook %s: the receiver answered HTTP %d", wid, resp.status);
    st = OF_RETRY;
out:
    explicit_bzero(secret, sizeof(secret));
    free(resp.body);
    free(body);
    json_decref(doc);
    return st;
}

static int webhook_init(of_stage *stage, const of_host_api *api, const of_config *cfg,
                        void **instance, char *errstr, size_t errstr_size)
{
    if (!OF_API_HAS(api, db_query) || !OF_API_HAS(api, db_last_error)) {
        snprintf(errstr, errstr_size, "this host lacks the database functions (ABI 1.1)");
        return -1;
    }
    webhook *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    w->api = api;
    w->stage = stage;
    w->timeout_ms = api->config_duration_ms(cfg, "timeout");
    ofp_client_options o = {.allow_private = api->config_bool(cfg, "allow_private_addresses"),
                            .ca_file = api->config_string(cfg, "ca_file"),
                            .user_agent = "orderflow-webhook/" WEBHOOK_VERSION};
    char err[256];
    w->client = ofp_client_new(&o, err, sizeof(err));
    if (!w->client) {
        snprintf(errstr, errstr_size, "%s", err);
        free(w);
        return -1;
    }
    w->delivered =
        api->counter_register(stage, "webhook_deliveries_total", "webhook deliveries acknowledged");
    w->failed = api->counter_register(stage, "webhook_attempt_failures_total",
                                      "delivery attempts that failed and will be retried");
    w->dropped = api->counter_register(stage, "webhook_dropped_total",
                                       "deliveries dropped: the webhook was deleted or inactive");
    w->gone = api->counter_register(stage, "webhook_gone_total",
                                    "webhooks deactivated by a 410 Gone answer");
    if (o.allow_private)
        api->log(stage, OF_LOG_WARN,
                 "allow_private_addresses: webhooks may reach loopback and private addresses");
    *instance = w;
    return 0;
}

static void webhook_shutdown(void *instance)
{
    webhook *w = instance;
    ofp_client_free(w->client);
    free(w);
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "webhook",
    .version = WEBHOOK_VERSION,
    .description = "POSTs webhook deliveries, signed (Standard Webhooks), retried",
    .options = options,
    .outputs = NULL,
    .init = webhook_init,
    .process = webhook_process,
    .shutdown = webhook_shutdown,
    .flags = OF_STAGE_DATABASE,
    .migrations = NULL,
};

OF_STAGE_DEFINE(descriptor)
