/*
 * payment plugin: the HTTP provider, on the plugins' shared client (plugins/common/ofp_client.c):
 * one request per connection (HTTP/1.0 with Host and Connection: close, so the answer is never
 * chunked), one deadline for connecting, sending and receiving, bounded answers. Only http://: a
 * provider reached over TLS goes through a local proxy (docs/payment.md).
 */
#include "provider.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int pay_url_parse(const char *url, pay_url *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    if (url && strncasecmp(url, "https://", 8) == 0) {
        snprintf(err, err_size,
                 "url: https is not supported; put a local TLS proxy in front of "
                 "the provider and give its http:// address");
        return -1;
    }
    if (ofp_url_parse(url, 0, out, err, err_size) != 0)
        return -1;
    size_t path_len = strlen(out->path);
    while (path_len > 1 && out->path[path_len - 1] == '/')
        out->path[--path_len] = '\0';
    if (path_len + 64 >= 1024) {
        snprintf(err, err_size, "url: path too long");
        return -1;
    }
    return 0;
}

/* One client for the plugin: plain http, any address (the provider is configuration, not
 * input). */
static ofp_client *client;
static pthread_once_t client_once = PTHREAD_ONCE_INIT;

static void client_make(void)
{
    ofp_client_options o = {.allow_private = 1, .user_agent = "orderflow-payment/1.0"};
    char err[128];
    client = ofp_client_new(&o, err, sizeof(err));
}

/* The client lives as long as the plugin: freed when the host unloads it. */
__attribute__((destructor)) static void client_drop(void)
{
    ofp_client_free(client);
    client = NULL;
}

int pay_http_post(const pay_url *url, const char *path, const char *body, size_t body_len,
                  const char *api_key, int64_t timeout_ms, pay_http_response *resp, char *err,
                  size_t err_size)
{
    memset(resp, 0, sizeof(*resp));
    pthread_once(&client_once, client_make);
    if (!client) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    char auth[600];
    const char *headers[] = {"Accept: application/json", NULL, NULL};
    if (api_key && *api_key) {
        if (strpbrk(api_key, "\r\n")) {
            snprintf(err, err_size, "api_key: a line break is not allowed");
            return -1;
        }
        snprintf(auth, sizeof(auth), "Authorization: Bearer %.512s", api_key);
        headers[1] = auth;
    }
    return ofp_client_post(client, url, path, headers, body, body_len, timeout_ms, resp, err,
                           err_size) == OFP_CLIENT_OK
               ? 0
               : -1;
}

static void set_retry(pay_result *out, const char *what, const char *why)
{
    out->verdict = PAY_RETRY;
    snprintf(out->reason, sizeof(out->reason), "%.16s: %.200s", what, why);
}

/* The JSON object of a response body, or NULL. */
static json_t *body_object(const pay_http_response *r)
{
    json_t *doc = json_loadb(r->body, r->len, 0, NULL);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static const char *str_field(const json_t *doc, const char *name)
{
    const json_t *v = doc ? json_object_get(doc, name) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int post_json(const pay_url *url, const char *path, json_t *doc, const char *api_key,
                     int64_t timeout_ms, pay_http_response *resp, pay_result *out, const char *what)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        set_retry(out, what, "out of memory");
        return -1;
    }
    char err[PAY_REASON_MAX];
    int rc =
        pay_http_post(url, path, text, strlen(text), api_key, timeout_ms, resp, err, sizeof(err));
    free(text);
    if (rc != 0)
        set_retry(out, what, err);
    return rc;
}

void pay_http_charge(const pay_url *url, const char *api_key, int64_t timeout_ms,
                     const pay_charge *c, pay_result *out)
{
    memset(out, 0, sizeof(*out));
    json_t *req = json_pack("{s:s, s:I, s:s, s:s}", "order_id", c->order_id, "amount_cents",
                            (json_int_t)c->amount_cents, "currency", c->currency, "idempotency_key",
                            c->order_id);
    pay_http_response resp;
    if (post_json(url, "", req, api_key, timeout_ms, &resp, out, "charge") != 0)
        return;
    json_t *doc = body_object(&resp);
    const char *status = str_field(doc, "status");
    if (resp.status == 200) {
        const char *ref = str_field(doc, "ref");
        if (status && strcmp(status, "captured") == 0 && ref && *ref) {
            out->verdict = PAY_CAPTURED;
            snprintf(out->ref, sizeof(out->ref), "%s", ref);
        } else {
            set_retry(out, "charge", "HTTP 200 without {\"status\":\"captured\",\"ref\":...}");
        }
    } else if (resp.status == 402) {
        const char *reason = str_field(doc, "reason");
        out->verdict = PAY_DECLINED;
        snprintf(out->reason, sizeof(out->reason), "%s",
                 reason && *reason ? reason : "declined by the provider");
    } else {
        char why[64];
        snprintf(why, sizeof(why), "provider answered HTTP %d", resp.status);
        set_retry(out, "charge", why);
    }
    json_decref(doc);
    free(resp.body);
}

void pay_http_refund(const pay_url *url, const char *api_key, int64_t timeout_ms,
                     const char *order_id, pay_result *out)
{
    memset(out, 0, sizeof(*out));
    char key[128];
    snprintf(key, sizeof(key), "%.64s:refund", order_id);
    json_t *req = json_pack("{s:s, s:s}", "order_id", order_id, "idempotency_key", key);
    pay_http_response resp;
    if (post_json(url, "/refunds", req, api_key, timeout_ms, &resp, out, "refund") != 0)
        return;
    if (resp.status >= 200 && resp.status < 300) {
        out->verdict = PAY_CAPTURED;
        json_t *doc = body_object(&resp);
        const char *ref = str_field(doc, "ref");
        snprintf(out->ref, sizeof(out->ref), "%s", ref ? ref : "");
        json_decref(doc);
    } else {
        char why[64];
        snprintf(why, sizeof(why), "provider answered HTTP %d", resp.status);
        set_retry(out, "refund", why);
    }
    free(resp.body);
}
