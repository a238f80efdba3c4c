/*
 * payment plugin: the provider's answers to charges whose events did not commit.
 *
 * A batch's charges are sent at once (charge_pool.h), but its events commit only up to the
 * first one to try again: the charges after it were made and their events run again. The memo
 * keeps those answers for a while, so that the run again takes them instead of asking the
 * provider a second time. Losing one (a full slot, a restart) only costs a repeated request with
 * the same idempotency key, which the provider answers with the first charge.
 */
#ifndef PAYMENT_CHARGE_MEMO_H
#define PAYMENT_CHARGE_MEMO_H

#include <stdint.h>

#include "provider.h"

#define PAY_MEMO_SLOTS  128   /* a slot per order id's hash; a newer answer takes the slot */
#define PAY_MEMO_TTL_MS 60000 /* answers older than this are not used */

typedef struct pay_memo pay_memo;

/* NULL when out of memory. Owned by the caller (pay_memo_free). Thread-safe. */
pay_memo *pay_memo_new(void);
void pay_memo_free(pay_memo *m);

/* Keeps a definite answer (captured or declined) to order_id's charge; answers to try again and
 * order ids over 64 bytes are not kept. */
void pay_memo_put(pay_memo *m, const char *order_id, const pay_result *res, int64_t now_ms);

/* Takes the answer kept for order_id (removing it) when younger than PAY_MEMO_TTL_MS: 1 and
 * *out filled, else 0. */
int pay_memo_take(pay_memo *m, const char *order_id, int64_t now_ms, pay_result *out);

#endif /* PAYMENT_CHARGE_MEMO_H */
