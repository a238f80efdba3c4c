/* The per-stage circuit breaker (breaker.h). One mutex guards everything; state-change callbacks
 * are queued under it and delivered after it is released, by one thread at a time, in order. */
#include "breaker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void of_breaker_policy_default(of_breaker_policy *p)
{
    if (!p)
        return;
    p->enabled = 1;
    p->failure_rate = OF_BREAKER_DEFAULT_FAILURE_RATE;
    p->window = OF_BREAKER_DEFAULT_WINDOW;
    p->min_calls = OF_BREAKER_DEFAULT_MIN_CALLS;
    p->open_for_ms = OF_BREAKER_DEFAULT_OPEN_FOR_MS;
    p->trial_calls = OF_BREAKER_DEFAULT_TRIAL_CALLS;
}

const char *of_breaker_state_name(of_breaker_state s)
{
    switch (s) {
    case OF_BREAKER_CLOSED:
        return "closed";
    case OF_BREAKER_OPEN:
        return "open";
    case OF_BREAKER_HALF_OPEN:
        return "half-open";
    }
    return "?";
}

/* The effective policy: zero fields take their defaults; -1 when a value is out of bounds. */
static int resolve_policy(const of_breaker_policy *in, of_breaker_policy *out)
{
    if (!in) {
        of_breaker_policy_default(out);
        return 0;
    }
    *out = *in;
    if (!out->enabled)
        return 0;
    if (out->failure_rate == 0)
        out->failure_rate = OF_BREAKER_DEFAULT_FAILURE_RATE;
    if (out->window == 0)
        out->window = OF_BREAKER_DEFAULT_WINDOW;
    if (out->min_calls == 0)
        out->min_calls =
            out->window < OF_BREAKER_DEFAULT_MIN_CALLS ? out->window : OF_BREAKER_DEFAULT_MIN_CALLS;
    if (out->open_for_ms == 0)
        out->open_for_ms = OF_BREAKER_DEFAULT_OPEN_FOR_MS;
    if (out->trial_calls == 0)
        out->trial_calls = OF_BREAKER_DEFAULT_TRIAL_CALLS;
    if (!(out->failure_rate > 0 && out->failure_rate <= 1) || out->window < 1 ||
        out->window > OF_BREAKER_MAX_WINDOW || out->min_calls < 1 || out->min_calls > out->window ||
        out->open_for_ms < OF_BREAKER_MIN_OPEN_FOR_MS || out->trial_calls < 1 ||
        out->trial_calls > OF_BREAKER_MAX_TRIAL_CALLS)
        return -1;
    out->enabled = 1;
    return 0;
}

int of_breaker_init_notify(of_breaker *b, const of_breaker_policy *p,
                           of_breaker_change_fn on_change, void *opaque)
{
    if (!b)
        return -1;
    memset(b, 0, sizeof(*b));
    if (resolve_policy(p, &b->policy) != 0) {
        errno = EINVAL;
        return -1;
    }
    if (b->policy.enabled) {
        b->ring = calloc((size_t)b->policy.window, 1);
        if (!b->ring)
            return -1;
    }
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b->ring);
        b->ring = NULL;
        return -1;
    }
    b->state = OF_BREAKER_CLOSED;
    b->on_change = on_change;
    b->opaque = opaque;
    return 0;
}

int of_breaker_init(of_breaker *b, const of_breaker_policy *p)
{
    return of_breaker_init_notify(b, p, NULL, NULL);
}

void of_breaker_destroy(of_breaker *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b->ring);
    b->ring = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Under b->mu
 * ------------------------------------------------------------------------------------------- */

static void clear_window(of_breaker *b)
{
    memset(b->ring, 0, (size_t)b->policy.window);
    b->ring_next = b->ring_count = b->ring_failures = 0;
}

/* Queues the change for on_change. When the queue is full the change is merged into the last
 * queued one (A->B then B->C becomes A->C), so the last delivered state is always the real one. */
static void queue_change(of_breaker *b, of_breaker_state from, of_breaker_state to)
{
    if (!b->on_change)
        return;
    if (b->n_pending < OF_BREAKER_PENDING_MAX) {
        b->pending[b->n_pending][0] = from;
        b->pending[b->n_pending][1] = to;
        b->n_pending++;
        return;
    }
    b->pending[b->n_pending - 1][1] = to;
    if (b->pending[b->n_pending - 1][0] == to)
        b->n_pending--;
}

static void set_state(of_breaker *b, of_breaker_state to, int64_t now_ms)
{
    of_breaker_state from = b->state;
    if (from == to)
        return;
    b->state = to;
    b->transitions++;
    /* Every permit still out belongs to the state that ends here. */
    b->stale += b->active;
    b->active = 0;
    switch (to) {
    case OF_BREAKER_OPEN:
        b->opened_at_ms = now_ms;
        break;
    case OF_BREAKER_HALF_OPEN:
        b->trial_successes = 0;
        break;
    case OF_BREAKER_CLOSED:
        clear_window(b);
        break;
    }
    queue_change(b, from, to);
}

/* OPEN whose open_for has passed becomes HALF_OPEN. */
static void advance(of_breaker *b, int64_t now_ms)
{
    if (b->state == OF_BREAKER_OPEN && now_ms - b->opened_at_ms >= b->policy.open_for_ms)
        set_state(b, OF_BREAKER_HALF_OPEN, now_ms);
}

/* Settles one outstanding permit; 1 when it is a permit of the current state (its outcome
 * counts), 0 when stale (or none was out). Stale ones are settled first: see breaker.h. */
static int settle_permit(of_breaker *b)
{
    if (b->stale > 0) {
        b->stale--;
        return 0;
    }
    if (b->active > 0) {
        b->active--;
        return 1;
    }
    return 0;
}

static void push_outcome(of_breaker *b, int failure, int64_t now_ms)
{
    int w = b->policy.window;
    if (b->ring_count == w)
        b->ring_failures -= b->ring[b->ring_next];
    else
        b->ring_count++;
    b->ring[b->ring_next] = (unsigned char)(failure ? 1 : 0);
    b->ring_failures += failure ? 1 : 0;
    b->ring_next = (b->ring_next + 1) % w;
    if (b->ring_count >= b->policy.min_calls &&
        (double)b->ring_failures / (double)b->ring_count >= b->policy.failure_rate)
        set_state(b, OF_BREAKER_OPEN, now_ms);
}

/* Unlocks b->mu, delivering queued changes first unless another thread is already at it (that
 * thread then delivers these too: it only stops once the queue is empty under the lock). */
static void unlock_and_deliver(of_breaker *b)
{
    if (b->n_pending == 0 || b->delivering) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    b->delivering = 1;
    while (b->n_pending > 0) {
        of_breaker_state from = b->pending[0][0], to = b->pending[0][1];
        b->n_pending--;
        memmove(&b->pending[0], &b->pending[1], (size_t)b->n_pending * sizeof(b->pending[0]));
        pthread_mutex_unlock(&b->mu);
        b->on_change(b->opaque, from, to);
        pthread_mutex_lock(&b->mu);
    }
    b->delivering = 0;
    pthread_mutex_unlock(&b->mu);
}

/* ---------------------------------------------------------------------------------------------
 * API
 * ------------------------------------------------------------------------------------------- */

int of_breaker_acquire(of_breaker *b, int64_t now_ms, int64_t *wait_ms)
{
    if (wait_ms)
        *wait_ms = 0;
    if (!b || !b->policy.enabled)
        return 1;
    pthread_mutex_lock(&b->mu);
    advance(b, now_ms);
    int permitted = 0;
    int64_t wait = 0;
    switch (b->state) {
    case OF_BREAKER_CLOSED:
        permitted = 1;
        break;
    case OF_BREAKER_OPEN:
        wait = b->opened_at_ms + b->policy.open_for_ms - now_ms;
        if (wait > b->policy.open_for_ms) /* the clock went back */
            wait = b->policy.open_for_ms;
        if (wait < 1)
            wait = 1;
        break;
    case OF_BREAKER_HALF_OPEN:
        permitted = b->active < b->policy.trial_calls;
        if (!permitted)
            wait = OF_BREAKER_POLL_MS;
        break;
    }
    if (permitted)
        b->active++;
    if (wait_ms)
        *wait_ms = wait;
    unlock_and_deliver(b);
    return permitted;
}

void of_breaker_record(of_breaker *b, int64_t now_ms, int success)
{
    if (!b || !b->policy.enabled)
        return;
    pthread_mutex_lock(&b->mu);
    if (settle_permit(b)) {
        switch (b->state) {
        case OF_BREAKER_CLOSED:
            push_outcome(b, !success, now_ms);
            break;
        case OF_BREAKER_HALF_OPEN:
            if (!success)
                set_state(b, OF_BREAKER_OPEN, now_ms);
            else if (++b->trial_successes >= b->policy.trial_calls)
                set_state(b, OF_BREAKER_CLOSED, now_ms);
            break;
        case OF_BREAKER_OPEN: /* no permits are given while open: cannot be current */
            break;
        }
    }
    unlock_and_deliver(b);
}

void of_breaker_release(of_breaker *b)
{
    if (!b || !b->policy.enabled)
        return;
    pthread_mutex_lock(&b->mu);
    settle_permit(b);
    pthread_mutex_unlock(&b->mu);
}

of_breaker_state of_breaker_get_state(of_breaker *b, int64_t now_ms)
{
    if (!b || !b->policy.enabled)
        return OF_BREAKER_CLOSED;
    pthread_mutex_lock(&b->mu);
    advance(b, now_ms);
    of_breaker_state s = b->state;
    unlock_and_deliver(b);
    return s;
}

uint64_t of_breaker_transitions(of_breaker *b)
{
    if (!b || !b->policy.enabled)
        return 0;
    pthread_mutex_lock(&b->mu);
    uint64_t n = b->transitions;
    pthread_mutex_unlock(&b->mu);
    return n;
}
