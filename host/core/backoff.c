/* Retry backoff and the runner's per-thread random numbers (xorshift; no rand()). */
#include "runner.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

int64_t of_backoff_delay_ms(const of_retry_policy *p, int attempt, double rnd)
{
    if (!p || attempt < 2)
        return 0;
    double initial = p->initial_backoff_ms > 0 ? (double)p->initial_backoff_ms : 0.0;
    double max = p->max_backoff_ms > 0 ? (double)p->max_backoff_ms : initial;
    double mult = p->multiplier >= 1.0 ? p->multiplier : 1.0;
    double delay = initial;
    /* Grow step by step so a huge attempt number stops at the cap instead of overflowing. */
    for (int i = 2; i < attempt && delay < max; i++)
        delay *= mult;
    if (delay > max)
        delay = max;
    double jitter = p->jitter;
    if (!(jitter > 0))
        jitter = 0;
    if (jitter > 1)
        jitter = 1;
    if (!(rnd >= 0))
        rnd = 0;
    if (rnd >= 1)
        rnd = 0.999999999;
    delay *= 1.0 + jitter * (2.0 * rnd - 1.0);
    if (delay < 0)
        delay = 0;
    if (delay > 9.0e15)
        delay = 9.0e15;
    return (int64_t)llround(delay);
}

static _Thread_local uint64_t tl_state;

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t of_rand_u64(void)
{
    uint64_t x = tl_state;
    if (x == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t seed = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        seed ^= (uint64_t)(uintptr_t)&tl_state; /* differs per thread */
        seed ^= (uint64_t)pthread_self() * 0x2545f4914f6cdd1dull;
        x = splitmix64(seed);
        if (x == 0)
            x = 0x9e3779b97f4a7c15ull;
    }
    /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    tl_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

double of_rand_unit(void)
{
    return (double)(of_rand_u64() >> 11) * (1.0 / 9007199254740992.0);
}
