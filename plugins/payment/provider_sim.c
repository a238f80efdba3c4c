/*
 * payment plugin: the simulated provider. Deterministic, so that tests and demos can predict
 * every verdict: a charge fails transiently when pay_sim_unit(order id, attempt) falls below
 * the configured rate, and is declined by the first rule that matches.
 */
#include "provider.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* splitmix64's finaliser: spreads FNV's weak low bits over the whole word. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t hash_order(const char *order_id, int attempt)
{
    uint64_t h = fnv1a(0xcbf29ce484222325ULL, order_id, strlen(order_id));
    h = fnv1a(h, "#", 1);
    uint32_t a = (uint32_t)attempt;
    unsigned char b[4] = {(unsigned char)a, (unsigned char)(a >> 8), (unsigned char)(a >> 16),
                          (unsigned char)(a >> 24)};
    return mix(fnv1a(h, b, sizeof(b)));
}

double pay_sim_unit(const char *order_id, int attempt)
{
    return (double)(hash_order(order_id, attempt) >> 11) * 0x1.0p-53;
}

void pay_sim_charge(const pay_sim *sim, const pay_charge *c, pay_result *out)
{
    memset(out, 0, sizeof(*out));
    if (sim->transient_failure_rate > 0 &&
        pay_sim_unit(c->order_id, c->attempt) < sim->transient_failure_rate) {
        out->verdict = PAY_RETRY;
        snprintf(out->reason, sizeof(out->reason), "simulated transient failure (attempt %d)",
                 c->attempt);
        return;
    }
    if (sim->decline_over_cents > 0 && c->amount_cents > sim->decline_over_cents) {
        out->verdict = PAY_DECLINED;
        snprintf(out->reason, sizeof(out->reason), "amount %" PRId64 " over the limit of %" PRId64,
                 c->amount_cents, sim->decline_over_cents);
        return;
    }
    for (size_t i = 0; i < sim->n_customers; i++) {
        if (strcmp(sim->customers[i], c->customer_id) == 0) {
            out->verdict = PAY_DECLINED;
            snprintf(out->reason, sizeof(out->reason), "customer %.64s is blocked", c->customer_id);
            return;
        }
    }
    if (sim->marker && *sim->marker && strstr(c->customer_id, sim->marker)) {
        out->verdict = PAY_DECLINED;
        snprintf(out->reason, sizeof(out->reason), "card declined for customer %.64s",
                 c->customer_id);
        return;
    }
    out->verdict = PAY_CAPTURED;
    snprintf(out->ref, sizeof(out->ref), "sim_%016" PRIx64, hash_order(c->order_id, 0));
}
