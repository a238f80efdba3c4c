/*
 * payment plugin: the payment providers, pure functions without the host (unit-tested by
 * tests/unit/test_payment_sim.c).
 *
 *  - the simulated provider decides a charge from rules (amount limit, blocked customers, a
 *    marker in the customer id) and fails a deterministic fraction of tries transiently;
 *  - the HTTP provider POSTs the charge as JSON to a payment service over plain http:// with
 *    one deadline for connecting, sending and receiving (the shared client, ofp_client.h).
 */
#ifndef PAYMENT_PROVIDER_H
#define PAYMENT_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include "ofp_client.h"

#define PAY_REF_MAX    128 /* payments.provider_ref */
#define PAY_REASON_MAX 255 /* payments.reason */

typedef enum pay_verdict {
    PAY_CAPTURED = 0, /* charged (or, for a refund, refunded) */
    PAY_DECLINED = 1, /* refused for good: the reason says why */
    PAY_RETRY = 2     /* transient: nothing is known to have happened; try again later */
} pay_verdict;

typedef struct pay_result {
    pay_verdict verdict;
    char ref[PAY_REF_MAX + 1];       /* the provider's reference (captured) */
    char reason[PAY_REASON_MAX + 1]; /* declined: why; retry: what failed */
} pay_result;

typedef struct pay_charge {
    const char *order_id;
    const char *customer_id;
    int64_t amount_cents;
    const char *currency; /* 3 letters */
    int attempt;          /* 1 on the first try */
} pay_charge;

/* ---- simulated provider ---- */

typedef struct pay_sim {
    int64_t decline_over_cents;    /* 0: never; amounts above it are declined */
    const char *const *customers;  /* always declined; `n_customers` entries */
    size_t n_customers;            /* */
    const char *marker;            /* a customer id containing it is declined; NULL/"": none */
    double transient_failure_rate; /* 0..1 */
} pay_sim;

/* A number in [0, 1) that depends only on the order id and the attempt. */
double pay_sim_unit(const char *order_id, int attempt);

/* Decides a charge: a transient failure first (the fraction of tries given by the rate, chosen
 * by pay_sim_unit), then the decline rules, else captured with the reference "sim_<hex>". */
void pay_sim_charge(const pay_sim *sim, const pay_charge *charge, pay_result *out);

/* ---- HTTP provider ---- */

/* The URL and the client are plugins/common/ofp_client.{c,h}, shared with the webhook stage. */
typedef ofp_url pay_url;

/* Parses "http://host[:port][/path]" (no user info, query or fragment; IPv6 as [::1]); a trailing
 * '/' is dropped from the path. https:// is refused (see docs/payment.md). 0, or -1 with a
 * reason. */
int pay_url_parse(const char *url, pay_url *out, char *err, size_t err_size);

typedef ofp_response pay_http_response;

/* POSTs `body` (application/json) to host:port/path+`path` through the shared client (HTTP/1.0,
 * Connection: close), with `Authorization: Bearer api_key` when api_key is set. Connecting,
 * sending and receiving share one deadline of timeout_ms (name resolution is not bounded: use an
 * address or a local resolver). The answer is read up to its Content-Length (or to the end of
 * the connection without one), headers up to 16 KiB and bodies up to 64 KiB. Returns 0 and fills
 * *resp, or -1 with a reason in err: connection refused, timeout, closed early, a malformed or
 * oversized answer. */
int pay_http_post(const pay_url *url, const char *path, const char *body, size_t body_len,
                  const char *api_key, int64_t timeout_ms, pay_http_response *resp, char *err,
                  size_t err_size);

/* A charge through the HTTP provider: POST url {order_id, amount_cents, currency,
 * idempotency_key = order_id}. 200 {"status":"captured","ref":...} -> captured; 402
 * {"status":"declined","reason":...} -> declined; anything else (5xx, other statuses, a body
 * that is not what was promised, timeouts, connection errors) -> retry with the reason. */
void pay_http_charge(const pay_url *url, const char *api_key, int64_t timeout_ms,
                     const pay_charge *charge, pay_result *out);

/* A refund: POST url/refunds {order_id, idempotency_key = "<order_id>:refund"}. Any 2xx ->
 * PAY_CAPTURED (done); anything else -> retry with the reason. */
void pay_http_refund(const pay_url *url, const char *api_key, int64_t timeout_ms,
                     const char *order_id, pay_result *out);

#endif /* PAYMENT_PROVIDER_H */
