/* The per-stage circuit breaker: the sliding window, the open time, half-open trials, released
 * calls, stale calls, callbacks and concurrency. Time is driven by hand: no sleeps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "breaker.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

static of_breaker_policy policy(double rate, int window, int min_calls, int64_t open_for_ms,
                                int trial_calls)
{
    of_breaker_policy p = {.enabled = 1,
                           .failure_rate = rate,
                           .window = window,
                           .min_calls = min_calls,
                           .open_for_ms = open_for_ms,
                           .trial_calls = trial_calls};
    return p;
}

/* One permitted call with this outcome. */
static void call(of_breaker *b, int64_t now, int success)
{
    int64_t wait = -1;
    assert_int_equal(of_breaker_acquire(b, now, &wait), 1);
    assert_int_equal(wait, 0);
    of_breaker_record(b, now, success);
}

static void calls(of_breaker *b, int64_t now, int success, int n)
{
    for (int i = 0; i < n; i++)
        call(b, now, success);
}

#define assert_state(b, now, s) assert_int_equal(of_breaker_get_state(b, now), s)

/* Opens a breaker with window 10, min_calls 10, rate 0.5, open_for 5s, trial_calls 3 at t=1000
 * and checks that it did. */
static void open_at_1000(of_breaker *b)
{
    of_breaker_policy p = policy(0.5, 10, 10, 5000, 3);
    assert_int_equal(of_breaker_init(b, &p), 0);
    calls(b, 1000, 0, 10);
    assert_state(b, 1000, OF_BREAKER_OPEN);
}

/* ---- policy ---- */

static void test_policy_defaults_and_bounds(void **state)
{
    (void)state;
    of_breaker_policy p;
    of_breaker_policy_default(&p);
    assert_int_equal(p.enabled, 1);
    assert_true(p.failure_rate == 0.5);
    assert_int_equal(p.window, 20);
    assert_int_equal(p.min_calls, 10);
    assert_int_equal(p.open_for_ms, 30000);
    assert_int_equal(p.trial_calls, 3);

    of_breaker b;
    assert_int_equal(of_breaker_init(&b, NULL), 0); /* NULL: the defaults */
    assert_int_equal(b.policy.window, 20);
    of_breaker_destroy(&b);

    /* zero fields of an enabled policy take the defaults; min_calls is capped by the window */
    of_breaker_policy z = {.enabled = 1, .window = 4};
    assert_int_equal(of_breaker_init(&b, &z), 0);
    assert_true(b.policy.failure_rate == 0.5);
    assert_int_equal(b.policy.min_calls, 4);
    assert_int_equal(b.policy.open_for_ms, 30000);
    assert_int_equal(b.policy.trial_calls, 3);
    of_breaker_destroy(&b);

    of_breaker_policy bad[] = {
        policy(1.5, 10, 5, 1000, 1),  policy(-0.1, 10, 5, 1000, 1),
        policy(0.5, 10, 11, 1000, 1), policy(0.5, 10001, 5, 1000, 1),
        policy(0.5, 10, 5, 9, 1),     policy(0.5, 10, 5, 1000, 1001),
        policy(0.5, -1, 5, 1000, 1),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (of_breaker_init(&b, &bad[i]) == 0)
            fail_msg("bad policy #%zu accepted", i);
    }

    assert_string_equal(of_breaker_state_name(OF_BREAKER_CLOSED), "closed");
    assert_string_equal(of_breaker_state_name(OF_BREAKER_OPEN), "open");
    assert_string_equal(of_breaker_state_name(OF_BREAKER_HALF_OPEN), "half-open");
    assert_string_equal(of_breaker_state_name((of_breaker_state)7), "?");
}

/* ---- closed ---- */

static void test_closed_below_min_calls_even_if_all_fail(void **state)
{
    (void)state;
    of_breaker b;
    of_breaker_policy p = policy(0.5, 20, 10, 5000, 3);
    assert_int_equal(of_breaker_init(&b, &p), 0);
    calls(&b, 100, 0, 9);
    assert_state(&b, 100, OF_BREAKER_CLOSED);
    assert_int_equal(of_breaker_transitions(&b), 0);
    call(&b, 100, 0); /* the 10th */
    assert_state(&b, 100, OF_BREAKER_OPEN);
    of_breaker_destroy(&b);
}

static void test_opens_at_exactly_the_threshold(void **state)
{
    (void)state;
    of_breaker b;
    of_breaker_policy p = policy(0.5, 10, 10, 5000, 3);
    assert_int_equal(of_breaker_init(&b, &p), 0);
    calls(&b, 0, 1, 5);
    calls(&b, 0, 0, 4);
    assert_state(&b, 0, OF_BREAKER_CLOSED); /* 9 calls: below min_calls */
    call(&b, 0, 0);                         /* 5 of 10 = 0.5 */
    assert_state(&b, 0, OF_BREAKER_OPEN);
    of_breaker_destroy(&b);

    /* a rate with no exact binary form: 3 of 10 is 0.3 */
    p = policy(0.3, 10, 10, 5000, 3);
    assert_int_equal(of_breaker_init(&b, &p), 0);
    calls(&b, 0, 1, 7);
    calls(&b, 0, 0, 2);
    assert_state(&b, 0, OF_BREAKER_CLOSED);
    call(&b, 0, 0);
    assert_state(&b, 0, OF_BREAKER_OPEN);
    of_breaker_destroy(&b);
}

static void test_stays_closed_below_the_threshold(void **state)
{
    (void)state;
    of_breaker b;
    of_breaker_policy p = policy(0.5, 10, 10, 5000, 3);
    assert_int_equal(of_breaker_init(&b, &p), 0);
    /* S F S F S F S F S S: 4 of 10, and every window after it holds 4 failures too */
    for (int i = 0; i < 4; i++) {
        call(&b, 0, 1);
        call(&b, 0, 0);
    }
    calls(&b, 0, 1, 2);
    assert_state(&b, 0, OF_BREAKER_CLOSED);
    /* the same again: each window on the way holds 4 failures of 10 */
    for (int i = 0; i < 10; i++) {
        call(&b, 0, i % 2 == 0 || i == 9);
        assert_state(&b, 0, OF_BREAKER_CLOSED);
    }
    assert_int_equal(of_breaker_transitions(&b), 0);
    of_breaker_destroy(&b);
}

static void test_window_slides(void **state)
{
    (void)state;
    of_breaker b;
    of_breaker_policy p = policy(0.75, 4, 4, 5000, 3);
    assert_int_equal(of_breaker_init(&b, &p), 0);
    /* old failures fall out: F F S S S S leaves S S S S; then F F: 2 of 4 */
    calls(&b, 0, 0, 2);
    calls(&b, 0, 1, 4);
    calls(&b, 0, 0, 2);
    assert_state(&b, 0, OF_BREAKER_CLOSED); /* 4 failures seen, but only 2 in the window */
    call(&b, 0, 0);                         /* S F F F: 0.75 */
    assert_state(&b, 0, OF_BREAKER_OPEN);
    of_breaker_destroy(&b);

    /* old successes fall out: S S S S then F F F opens (3 of 7 overall, 3 of the last 4) */
    assert_int_equal(of_breaker_init(&b, &p), 0);
    calls(&b, 0, 1, 4);
    calls(&b, 0, 0, 2);
    assert_state(&b, 0, OF_BREAKER_CLOSED);
    call(&b, 0, 0);
    assert_state(&b, 0, OF_BREAKER_OPEN);
    of_breaker_destroy(&b);
}

/* ---- open ---- */

static void test_open_refuses_with_the_remaining_time(void **state)
{
    (void)state;
    of_breaker b;
    open_at_1000(&b);
    int64_t wait = -1;
    assert_int_equal(of_breaker_acquire(&b, 1000, &wait), 0);
    assert_int_equal(wait, 5000);
    assert_int_equal(of_breaker_acquire(&b, 3500, &wait), 0);
    assert_int_equal(wait, 2500);
    assert_int_equal(of_breaker_acquire(&b, 5999, &wait), 0);
    assert_int_equal(wait, 1);
    assert_state(&b, 5999, OF_BREAKER_OPEN);
    assert_int_equal(of_breaker_acquire(&b, 900, &wait), 0); /* a clock that went back */
    assert_int_equal(wait, 5000);
    assert_int_equal(of_breaker_acquire(&b, 2000, NULL), 0); /* wait_ms may be NULL */
    assert_state(&b, 6000, OF_BREAKER_HALF_OPEN);            /* reported once open_for passed */
    of_breaker_destroy(&b);
}

/* ---- half-open ---- */

static void test_half_open_admits_exactly_trial_calls(void **state)
{
    (void)state;
    of_breaker b;
    open_at_1000(&b);
    int64_t wait = -1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(of_breaker_acquire(&b, 6000, &wait), 1);
        assert_int_equal(wait, 0);
    }
    assert_int_equal(of_breaker_acquire(&b, 6000, &wait), 0);
    assert_int_equal(wait, OF_BREAKER_POLL_MS);
    assert_int_equal(of_breaker_acquire(&b, 9000, &wait), 0); /* time does not free a slot */
    assert_state(&b, 9000, OF_BREAKER_HALF_OPEN);
    /* one success frees its slot: one more trial, still no fifth */
    of_breaker_record(&b, 9000, 1);
    assert_state(&b, 9000, OF_BREAKER_HALF_OPEN);
    assert_int_equal(of_breaker_acquire(&b, 9000, &wait), 1);
    assert_int_equal(of_breaker_acquire(&b, 9000, &wait), 0);
    of_breaker_destroy(&b);
}

static void test_trial_successes_close_with_a_cleared_window(void **state)
{
    (void)state;
    of_breaker b;
    open_at_1000(&b);
    calls(&b, 6000, 1, 2);
    assert_state(&b, 6000, OF_BREAKER_HALF_OPEN);
    call(&b, 6000, 1);
    assert_state(&b, 6000, OF_BREAKER_CLOSED);
    /* the 10 failures that opened it are gone: 9 more failures are below min_calls */
    calls(&b, 6000, 0, 9);
    assert_state(&b, 6000, OF_BREAKER_CLOSED);
    call(&b, 6000, 0);
    assert_state(&b, 6000, OF_BREAKER_OPEN);
    of_breaker_destroy(&b);
}

static void test_trial_failure_opens_again_with_a_new_open_time(void **state)
{
    (void)state;
    of_breaker b;
    open_at_1000(&b);
    call(&b, 6000, 1);
    assert_int_equal(of_breaker_acquire(&b, 6100, NULL), 1);
    assert_int_equal(of_breaker_acquire(&b, 6100, NULL), 1);
    of_breaker_record(&b, 6200, 0); /* one failure is enough */
    assert_state(&b, 6200, OF_BREAKER_OPEN);
    int64_t wait = -1;
    assert_int_equal(of_breaker_acquire(&b, 6200, &wait), 0);
    assert_int_equal(wait, 5000); /* counted from 6200, not from 1000 */
    /* the other trial ends while open: it neither closes nor counts */
    of_breaker_record(&b, 6300, 1);
    assert_state(&b, 11199, OF_BREAKER_OPEN);
    assert_state(&b, 11200, OF_BREAKER_HALF_OPEN);
    /* and the new half-open has every trial slot free, and counts successes afresh */
    for (int i = 0; i < 3; i++)
        assert_int_equal(of_breaker_acquire(&b, 11200, NULL), 1);
    assert_int_equal(of_breaker_acquire(&b, 11200, NULL), 0);
    of_breaker_record(&b, 11300, 1);
    of_breaker_record(&b, 11300, 1);
    assert_state(&b, 11300, OF_BREAKER_HALF_OPEN);
    of_breaker_record(&b, 11300, 1);
    assert_state(&b, 11300, OF_BREAKER_CLOSED);
    of_breaker_destroy(&b);
}

static void test_release_frees_a_trial_slot_without_counting(void **state)
{
    (void)state;
    of_breaker b;
    of_breaker_policy p = policy(0.5, 10, 10, 5000, 2);
    assert_int_equal(of_breaker_init(&b, &p), 0);
    /* in closed, released calls are not outcomes: 20 of them and 9 failures stay closed */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(of_breaker_acquire(&b, 0, NULL), 1);
        of_breaker_release(&b);
    }
    calls(&b, 0, 0, 9);
    assert_state(&b, 0, OF_BREAKER_CLOSED);
    call(&b, 1000, 0);
    assert_state(&b, 1000, OF_BREAKER_OPEN);

    assert_int_equal(of_breaker_acquire(&b, 6000, NULL), 1);
    assert_int_equal(of_breaker_acquire(&b, 6000, NULL), 1);
    assert_int_equal(of_breaker_acquire(&b, 6000, NULL), 0);
    of_breaker_release(&b);
    assert_int_equal(of_breaker_acquire(&b, 6000, NULL), 1);
    /* the release was no success: two more are needed to close */
    of_breaker_record(&b, 6000, 1);
    assert_state(&b, 6000, OF_BREAKER_HALF_OPEN);
    of_breaker_record(&b, 6000, 1);
    assert_state(&b, 6000, OF_BREAKER_CLOSED);
    of_breaker_destroy(&b);
}

/* Calls permitted while closed that end after the breaker opened take no trial slot and are no
 * trial outcome. */
static void test_stale_calls_are_no_trials(void **state)
{
    (void)state;
    of_breaker b;
    of_breaker_policy p = policy(0.5, 10, 10, 5000, 1);
    assert_int_equal(of_breaker_init(&b, &p), 0);
    assert_int_equal(of_breaker_acquire(&b, 0, NULL), 1); /* slow call A */
    assert_int_equal(of_breaker_acquire(&b, 0, NULL), 1); /* slow call B */
    calls(&b, 1000, 0, 10);
    assert_state(&b, 1000, OF_BREAKER_OPEN);
    assert_int_equal(of_breaker_acquire(&b, 6000, NULL), 1); /* the trial */
    assert_int_equal(of_breaker_acquire(&b, 6000, NULL), 0);
    of_breaker_record(&b, 6100, 1); /* A succeeds: were it the trial, the breaker would close */
    assert_state(&b, 6100, OF_BREAKER_HALF_OPEN);
    assert_int_equal(of_breaker_acquire(&b, 6100, NULL), 0); /* and no slot came free */
    of_breaker_release(&b);                                  /* B */
    assert_int_equal(of_breaker_acquire(&b, 6100, NULL), 0);
    of_breaker_record(&b, 6200, 1); /* the trial */
    assert_state(&b, 6200, OF_BREAKER_CLOSED);
    assert_int_equal(b.active, 0);
    assert_int_equal(b.stale, 0);
    of_breaker_destroy(&b);
}

/* ---- disabled ---- */

static void test_disabled_always_permits(void **state)
{
    (void)state;
    of_breaker b;
    of_breaker_policy p = policy(0.5, 10, 1, 5000, 1);
    p.enabled = 0;
    assert_int_equal(of_breaker_init(&b, &p), 0);
    for (int i = 0; i < 100; i++) {
        int64_t wait = -1;
        assert_int_equal(of_breaker_acquire(&b, i, &wait), 1);
        assert_int_equal(wait, 0);
        of_breaker_record(&b, i, 0);
    }
    of_breaker_release(&b);
    assert_state(&b, 100, OF_BREAKER_CLOSED);
    assert_int_equal(of_breaker_transitions(&b), 0);
    of_breaker_destroy(&b);

    /* a zeroed policy (a stage built by hand) is a disabled breaker */
    of_breaker_policy zero;
    memset(&zero, 0, sizeof(zero));
    assert_int_equal(of_breaker_init(&b, &zero), 0);
    calls(&b, 0, 0, 50);
    assert_state(&b, 0, OF_BREAKER_CLOSED);
    of_breaker_destroy(&b);
}

/* ---- transitions and callbacks ---- */

typedef struct seen {
    pthread_mutex_t mu;
    of_breaker_state from[64], to[64];
    int n;
    int overflow;
    of_breaker *b;
    int reentered; /* the callback could call back in: no lock held */
} seen;

static void on_change(void *opaque, of_breaker_state from, of_breaker_state to)
{
    seen *s = opaque;
    if (s->b)
        s->reentered += of_breaker_transitions(s->b) > 0;
    pthread_mutex_lock(&s->mu);
    if (s->n < 64) {
        s->from[s->n] = from;
        s->to[s->n] = to;
        s->n++;
    } else {
        s->overflow = 1;
    }
    pthread_mutex_unlock(&s->mu);
}

static void expect_change(const seen *s, int i, of_breaker_state from, of_breaker_state to)
{
    if (i >= s->n)
        fail_msg("change #%d missing (%d seen)", i, s->n);
    if (s->from[i] != from || s->to[i] != to)
        fail_msg("change #%d: %s -> %s, expected %s -> %s", i, of_breaker_state_name(s->from[i]),
                 of_breaker_state_name(s->to[i]), of_breaker_state_name(from),
                 of_breaker_state_name(to));
}

static void test_transitions_and_callbacks(void **state)
{
    (void)state;
    seen s = {.n = 0};
    pthread_mutex_init(&s.mu, NULL);
    of_breaker b;
    s.b = &b;
    of_breaker_policy p = policy(0.5, 10, 10, 5000, 2);
    assert_int_equal(of_breaker_init_notify(&b, &p, on_change, &s), 0);
    calls(&b, 1000, 0, 10);
    assert_int_equal(of_breaker_transitions(&b), 1);
    assert_int_equal(s.n, 1);
    expect_change(&s, 0, OF_BREAKER_CLOSED, OF_BREAKER_OPEN);

    /* nothing happens until someone looks: acquire makes it half-open */
    assert_int_equal(of_breaker_acquire(&b, 6000, NULL), 1);
    assert_int_equal(s.n, 2);
    expect_change(&s, 1, OF_BREAKER_OPEN, OF_BREAKER_HALF_OPEN);
    of_breaker_record(&b, 6000, 0);
    expect_change(&s, 2, OF_BREAKER_HALF_OPEN, OF_BREAKER_OPEN);

    /* get_state makes the change too */
    assert_state(&b, 11000, OF_BREAKER_HALF_OPEN);
    expect_change(&s, 3, OF_BREAKER_OPEN, OF_BREAKER_HALF_OPEN);
    assert_state(&b, 11000, OF_BREAKER_HALF_OPEN); /* looking again changes nothing */
    calls(&b, 11000, 1, 2);
    expect_change(&s, 4, OF_BREAKER_HALF_OPEN, OF_BREAKER_CLOSED);
    assert_int_equal(s.n, 5);
    assert_int_equal(of_breaker_transitions(&b), 5);
    assert_int_equal(s.reentered, 5);
    of_breaker_destroy(&b);
    pthread_mutex_destroy(&s.mu);
}

/* A callback that causes a change itself (here: by looking after open_for) is not re-entered:
 * the change is delivered after it returns, in order. */
typedef struct nested {
    of_breaker *b;
    int depth, max_depth, n;
    of_breaker_state to[8];
} nested;

static void on_change_nested(void *opaque, of_breaker_state from, of_breaker_state to)
{
    (void)from;
    nested *s = opaque;
    s->depth++;
    if (s->depth > s->max_depth)
        s->max_depth = s->depth;
    if (s->n < 8)
        s->to[s->n++] = to;
    if (to == OF_BREAKER_OPEN)
        of_breaker_get_state(s->b, 1000000); /* open_for has passed: half-open, now */
    s->depth--;
}

static void test_callback_is_never_reentered(void **state)
{
    (void)state;
    of_breaker b;
    nested s = {.b = &b};
    of_breaker_policy p = policy(0.5, 10, 10, 5000, 2);
    assert_int_equal(of_breaker_init_notify(&b, &p, on_change_nested, &s), 0);
    calls(&b, 1000, 0, 10);
    assert_int_equal(s.max_depth, 1);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.to[0], OF_BREAKER_OPEN);
    assert_int_equal(s.to[1], OF_BREAKER_HALF_OPEN);
    assert_int_equal(of_breaker_transitions(&b), 2);
    of_breaker_destroy(&b);
}

/* More changes than the queue holds pile up during one callback: they are merged, and what is
 * delivered is still one chain ending in the real state. */
typedef struct flood {
    of_breaker *b;
    int n, flooded;
    of_breaker_state from[64], to[64];
} flood;

static void on_change_flood(void *opaque, of_breaker_state from, of_breaker_state to)
{
    flood *s = opaque;
    if (s->n < 64) {
        s->from[s->n] = from;
        s->to[s->n] = to;
        s->n++;
    }
    if (s->flooded++)
        return;
    /* 20 rounds of half-open -> open, then half-open: 41 changes */
    for (int i = 1; i <= 20; i++) {
        int64_t t = 1000 + i * 5000;
        assert_int_equal(of_breaker_acquire(s->b, t, NULL), 1);
        of_breaker_record(s->b, t, 0);
    }
    assert_int_equal(of_breaker_get_state(s->b, 106000), OF_BREAKER_HALF_OPEN); /* one more */
}

static void test_piled_up_changes_are_merged_in_order(void **state)
{
    (void)state;
    of_breaker b;
    flood s = {.b = &b};
    of_breaker_policy p = policy(0.5, 10, 10, 5000, 2);
    assert_int_equal(of_breaker_init_notify(&b, &p, on_change_flood, &s), 0);
    calls(&b, 1000, 0, 10);
    assert_int_equal(of_breaker_transitions(&b), 42);
    assert_true(s.n >= 2 && s.n <= 1 + OF_BREAKER_PENDING_MAX);
    assert_int_equal(s.from[0], OF_BREAKER_CLOSED);
    for (int i = 0; i < s.n; i++) {
        assert_int_not_equal(s.from[i], s.to[i]);
        if (i > 0)
            assert_int_equal(s.from[i], s.to[i - 1]);
    }
    assert_int_equal(s.to[s.n - 1], OF_BREAKER_HALF_OPEN);
    assert_state(&b, 106000, OF_BREAKER_HALF_OPEN);
    of_breaker_destroy(&b);
}

/* ---- threads ---- */

#define N_THREADS 8
#define N_CALLS   20000

typedef struct shared {
    of_breaker *b;
    _Atomic int64_t clock; /* ms; every call moves it on by one */
    _Atomic int in_trial;
    _Atomic int max_in_trial;
    _Atomic uint64_t permitted, refused;
    int half_open_only; /* release every call: stays half-open */
} shared;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

typedef struct worker_arg {
    shared *sh;
    uint64_t seed;
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *wa = arg;
    shared *sh = wa->sh;
    for (int i = 0; i < N_CALLS; i++) {
        int64_t now = atomic_fetch_add(&sh->clock, 1);
        int64_t wait = -1;
        if (!of_breaker_acquire(sh->b, now, &wait)) {
            atomic_fetch_add(&sh->refused, 1);
            if (wait <= 0)
                atomic_store(&sh->max_in_trial, 1000); /* a refusal must say how long */
            continue;
        }
        atomic_fetch_add(&sh->permitted, 1);
        if (sh->half_open_only) {
            int n = atomic_fetch_add(&sh->in_trial, 1) + 1;
            int m = atomic_load(&sh->max_in_trial);
            while (n > m && !atomic_compare_exchange_weak(&sh->max_in_trial, &m, n))
                ;
            sched_yield();
            atomic_fetch_sub(&sh->in_trial, 1);
            of_breaker_release(sh->b);
            continue;
        }
        if (xorshift(&wa->seed) % 4 == 0)
            sched_yield();
        /* mostly failing for a while, then mostly succeeding, and so on */
        int failing = (now / 4000) % 2 == 0;
        int success = (int)(xorshift(&wa->seed) % 100) >= (failing ? 80 : 5);
        of_breaker_record(sh->b, atomic_load(&sh->clock), success);
    }
    return NULL;
}

static void run_threads(shared *sh)
{
    pthread_t th[N_THREADS];
    worker_arg args[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        args[i].sh = sh;
        args[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
}

static int valid_change(of_breaker_state from, of_breaker_state to)
{
    return (from == OF_BREAKER_CLOSED && to == OF_BREAKER_OPEN) ||
           (from == OF_BREAKER_OPEN && to == OF_BREAKER_HALF_OPEN) ||
           (from == OF_BREAKER_HALF_OPEN && to == OF_BREAKER_OPEN) ||
           (from == OF_BREAKER_HALF_OPEN && to == OF_BREAKER_CLOSED);
}

static void test_concurrent_calls_keep_counts_consistent(void **state)
{
    (void)state;
    static seen s; /* large */
    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.mu, NULL);
    of_breaker b;
    of_breaker_policy p = policy(0.5, 20, 10, 200, 3);
    assert_int_equal(of_breaker_init_notify(&b, &p, on_change, &s), 0);
    shared sh = {.b = &b};
    run_threads(&sh);

    /* every permit was settled */
    assert_int_equal(b.active, 0);
    assert_int_equal(b.stale, 0);
    assert_int_equal(atomic_load(&sh.permitted) + atomic_load(&sh.refused),
                     (uint64_t)N_THREADS * N_CALLS);
    assert_true(atomic_load(&sh.max_in_trial) < 1000);
    /* it did open and close, several times */
    uint64_t transitions = of_breaker_transitions(&b);
    assert_true(transitions >= 4);
    assert_true(atomic_load(&sh.refused) > 0);
    /* the callbacks form one chain from closed to the current state, in order */
    of_breaker_state now = of_breaker_get_state(&b, atomic_load(&sh.clock));
    assert_true(s.n > 0);
    if (!s.overflow) {
        assert_int_equal(s.from[0], OF_BREAKER_CLOSED);
        for (int i = 1; i < s.n; i++)
            if (s.from[i] != s.to[i - 1])
                fail_msg("change #%d starts at %s, the one before ended at %s", i,
                         of_breaker_state_name(s.from[i]), of_breaker_state_name(s.to[i - 1]));
        assert_int_equal(s.to[s.n - 1], now);
        /* changes are only merged when 16 pile up during one callback */
        if ((uint64_t)s.n == of_breaker_transitions(&b))
            for (int i = 0; i < s.n; i++)
                assert_true(valid_change(s.from[i], s.to[i]));
    }
    of_breaker_destroy(&b);
    pthread_mutex_destroy(&s.mu);
}

static void test_concurrent_half_open_admits_at_most_trial_calls(void **state)
{
    (void)state;
    of_breaker b;
    of_breaker_policy p = policy(0.5, 10, 10, 10, 3);
    assert_int_equal(of_breaker_init(&b, &p), 0);
    calls(&b, 0, 0, 10);
    assert_state(&b, 10, OF_BREAKER_HALF_OPEN);
    shared sh = {.b = &b, .half_open_only = 1};
    atomic_store(&sh.clock, 10);
    run_threads(&sh);
    int max = atomic_load(&sh.max_in_trial);
    if (max > 3)
        fail_msg("%d trials at once, at most 3 allowed", max);
    assert_true(max >= 1);
    assert_true(atomic_load(&sh.permitted) > 0);
    assert_true(atomic_load(&sh.refused) > 0);
    assert_state(&b, atomic_load(&sh.clock), OF_BREAKER_HALF_OPEN); /* releases never close */
    assert_int_equal(b.active, 0);
    of_breaker_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_defaults_and_bounds),
        cmocka_unit_test(test_closed_below_min_calls_even_if_all_fail),
        cmocka_unit_test(test_opens_at_exactly_the_threshold),
        cmocka_unit_test(test_stays_closed_below_the_threshold),
        cmocka_unit_test(test_window_slides),
        cmocka_unit_test(test_open_refuses_with_the_remaining_time),
        cmocka_unit_test(test_half_open_admits_exactly_trial_calls),
        cmocka_unit_test(test_trial_successes_close_with_a_cleared_window),
        cmocka_unit_test(test_trial_failure_opens_again_with_a_new_open_time),
        cmocka_unit_test(test_release_frees_a_trial_slot_without_counting),
        cmocka_unit_test(test_stale_calls_are_no_trials),
        cmocka_unit_test(test_disabled_always_permits),
        cmocka_unit_test(test_transitions_and_callbacks),
        cmocka_unit_test(test_callback_is_never_reentered),
        cmocka_unit_test(test_piled_up_changes_are_merged_in_order),
        cmocka_unit_test(test_concurrent_calls_keep_counts_consistent),
        cmocka_unit_test(test_concurrent_half_open_admits_at_most_trial_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
