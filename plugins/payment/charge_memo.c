/*
 * payment plugin: the answers kept for charges whose events run again (charge_memo.h). A small
 * table under one lock: it holds at most a few batches' answers, and only after a failure.
 */
#include "charge_memo.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    int used;
    int64_t at_ms;
    char order_id[65];
    pay_result res;
} slot;

struct pay_memo {
    pthread_mutex_t mu;
    slot slots[PAY_MEMO_SLOTS];
};

static size_t slot_of(const char *order_id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)order_id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % PAY_MEMO_SLOTS;
}

pay_memo *pay_memo_new(void)
{
    pay_memo *m = calloc(1, sizeof(*m));
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void pay_memo_free(pay_memo *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void pay_memo_put(pay_memo *m, const char *order_id, const pay_result *res, int64_t now_ms)
{
    if (!m || res->verdict == PAY_RETRY || strlen(order_id) >= sizeof(m->slots[0].order_id))
        return;
    pthread_mutex_lock(&m->mu);
    slot *s = &m->slots[slot_of(order_id)];
    s->used = 1;
    s->at_ms = now_ms;
    strcpy(s->order_id, order_id);
    s->res = *res;
    pthread_mutex_unlock(&m->mu);
}

int pay_memo_take(pay_memo *m, const char *order_id, int64_t now_ms, pay_result *out)
{
    if (!m)
        return 0;
    int found = 0;
    pthread_mutex_lock(&m->mu);
    slot *s = &m->slots[slot_of(order_id)];
    if (s->used && strcmp(s->order_id, order_id) == 0) {
        found = now_ms - s->at_ms < PAY_MEMO_TTL_MS;
        if (found)
            *out = s->res;
        s->used = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return found;
}
