/*
 * notification and webhook: what the two stages of this folder share (docs/notification.md).
 *
 *  - notification.c: the `notification` stage: consumes orders.status, publishes each change to
 *    the WebSocket channels of the order and of its customer, logs it, and emits one delivery per
 *    active webhook of the customer on its `webhooks` output; ships the schema.
 *  - notification_http.c: its routes: webhook registration, and the WebSocket routes.
 *  - webhook.c: the `webhook` stage: POSTs each delivery, signed (Standard Webhooks).
 *  - notify_util.c: the pure functions below (no host), unit-tested by
 *    tests/unit/test_notification_util.c.
 */
#ifndef ORDERFLOW_NOTIFY_H
#define ORDERFLOW_NOTIFY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ofp_id.h"
#include "ofp_json.h"

#define NTF_ID_LEN           OFP_UUID_LEN /* notification_webhooks.id CHAR(36): a UUID v7 */
#define NTF_CUSTOMER_MAX     64           /* customer_id VARCHAR(64), as in orders */
#define NTF_ORDER_ID_MAX     64           /* order ids accepted in events */
#define NTF_DESCRIPTION_MAX  255          /* characters */
#define NTF_DELIVERY_ID_LEN  36           /* "msg_" + 32 hex digits */
#define NTF_SECRET_BYTES     32           /* random bytes of a signing secret */
#define NTF_SECRET_MAX       128          /* "whsec_" + base64 */
#define NTF_SIGNATURE_MAX    64           /* "v1," + base64 of 32 bytes (44) */
#define NTF_CHANNEL_MAX      128          /* the host's limit on a WebSocket channel name */
#define NTF_EVENT_TYPE       "order.status_changed"
#define NTF_DELIVERY_CE_TYPE "webhook.delivery"

/* The delivery id of one status event for one webhook: "msg_" + the first 32 hex digits of
 * SHA-256(event id, a NUL byte, webhook id). The same event (a redelivery: the same ce_id) and
 * webhook always give the same id. 0, or -1. */
int ntf_delivery_id(const void *event_id, size_t event_id_len, const char *webhook_id,
                    char out[NTF_DELIVERY_ID_LEN + 1]);

/* A new signing secret: "whsec_" + base64 of NTF_SECRET_BYTES random bytes (getrandom). 0, or
 * -1. */
int ntf_secret_new(char out[NTF_SECRET_MAX + 1]);

/* The Standard Webhooks signature of one attempt: "v1," + base64(HMAC-SHA256(key, "<msg_id>.
 * <timestamp>.<body>")), key being the base64-decoded part of secret after "whsec_" (a secret
 * without the prefix is decoded whole). 0, or -1 (a secret that is not base64, or empty). */
int ntf_sign(const char *secret, const char *msg_id, int64_t timestamp, const void *body,
             size_t body_len, char out[NTF_SIGNATURE_MAX + 1]);

/* A URL a customer may register: http:// or https://, no user info, no fragment, at most 2048
 * bytes, a host; with allow_private 0 also not an address (in any form getaddrinfo reads, such as
 * 127.1 or 2130706433) that is private, loopback or link-local, nor localhost. (The delivery
 * checks the resolved address again.) 0, or -1 with a reason. */
int ntf_check_webhook_url(const char *url, int allow_private, char *err, size_t err_size);

/* The WebSocket channel of an order or a customer: "<kind>:<id>" when the id is 1.. characters of
 * [A-Za-z0-9._@-] and fits, else "<kind>h:" + 32 hex digits of SHA-256(id) (the host's channel
 * names allow only those characters; the publisher and the subscriber compute the same name).
 * 0, or -1. */
int ntf_channel(const char *kind, const char *id, char out[NTF_CHANNEL_MAX + 1]);

/* The members of one status change's message into the object open in w: {type, order_id,
 * customer_id, seq, from, to, reason, at}, type only when with_type (a webhook delivery's data has
 * none: its envelope says it). seq < 1: left out. from NULL: null. */
void ntf_status_members(ofp_jw *w, int with_type, const char *order_id, const char *customer_id,
                        int64_t seq, const char *from, const char *to, const char *reason,
                        const char *at);
/* The whole message, with type, as text in w (initialised here; the caller frees it with
 * ofp_jw_free): the text, or NULL (out of memory, or a string not UTF-8). */
const char *ntf_status_text(ofp_jw *w, size_t *len, const char *order_id, const char *customer_id,
                            int64_t seq, const char *from, const char *to, const char *reason,
                            const char *at);

/* Characters (not bytes) of UTF-8 text. */
size_t ntf_utf8_chars(const char *s, size_t len);

#endif /* ORDERFLOW_NOTIFY_H */
