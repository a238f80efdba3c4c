/* A circuit breaker per stage (count-based sliding window, in the manner of Resilience4j).
 *
 * CLOSED: every call is permitted and its outcome (success or failure) goes into a ring of the
 * last `window` outcomes; once at least `min_calls` are recorded and failures / recorded >=
 * `failure_rate`, the breaker OPENs. OPEN: nothing is permitted until `open_for` has passed since
 * it opened; then it is HALF-OPEN. HALF-OPEN: at most `trial_calls` calls are in progress at a
 * time; `trial_calls` recorded successes close it (with an empty window), any recorded failure
 * opens it again (for a new open_for).
 *
 * What a call is, and what counts, is the caller's business. The runner records one try of
 * process() as one call: OF_OK with every emitted event delivered is a success; OF_RETRY and a
 * failed publication are failures (a dependency is failing); OF_REJECT is a problem of the
 * event, not of a dependency, so that call is released without an outcome.
 *
 * Time is passed in (monotonic milliseconds, of_mono_ms() in the runner), so the breaker never
 * reads a clock and tests drive it deterministically. All functions are thread-safe.
 *
 * Permits carry no identity. A call permitted before a state change that ends after it (a slow
 * process() still running when the breaker opened) is "stale": the breaker counts those apart
 * and lets the outcomes that arrive while any are outstanding settle them first, without effect.
 * So a stale call never takes or frees a half-open trial slot (at most trial_calls trials are
 * ever in progress) and nothing leaks; at worst a few outcomes that end right around a state
 * change are not counted. */
#ifndef OF_BREAKER_H
#define OF_BREAKER_H

#include <pthread.h>
#include <stdint.h>

/* Defaults (also those of a stage without a `breaker:` section). */
#define OF_BREAKER_DEFAULT_FAILURE_RATE 0.5
#define OF_BREAKER_DEFAULT_WINDOW       20
#define OF_BREAKER_DEFAULT_MIN_CALLS    10 /* or the window when that is smaller */
#define OF_BREAKER_DEFAULT_OPEN_FOR_MS  30000
#define OF_BREAKER_DEFAULT_TRIAL_CALLS  3
/* Bounds, checked by the pipeline loader and by of_breaker_init. */
#define OF_BREAKER_MAX_WINDOW      10000
#define OF_BREAKER_MIN_OPEN_FOR_MS 10
#define OF_BREAKER_MAX_TRIAL_CALLS 1000
/* The wait acquire() suggests while every half-open trial slot is taken. */
#define OF_BREAKER_POLL_MS 10

typedef struct of_breaker_policy {
    int enabled;         /* 0: every call is permitted and nothing is recorded */
    double failure_rate; /* 0 < x <= 1; default 0.5 */
    int window;          /* outcomes remembered, 1..10000; default 20 */
    int min_calls;       /* outcomes needed before the rate counts, 1..window; default 10 */
    int64_t open_for_ms; /* >= 10; default 30s */
    int trial_calls;     /* half-open: concurrent trials, and successes to close; 1..1000; 3 */
} of_breaker_policy;

/* Fills p with the defaults, enabled. */
void of_breaker_policy_default(of_breaker_policy *p);

typedef enum of_breaker_state {
    OF_BREAKER_CLOSED = 0,
    OF_BREAKER_OPEN = 1,
    OF_BREAKER_HALF_OPEN = 2,
} of_breaker_state;

/* "closed", "open", "half-open" ("?" for anything else). */
const char *of_breaker_state_name(of_breaker_state s);

/* Called on every state change, in the order the changes happened, never with the breaker's
 * lock held, and never for two changes at once (one thread delivers at a time; it may be
 * another thread than the one whose call caused the change, and a call may return before its
 * change was delivered while another thread is delivering). The callback may call
 * of_breaker_get_state / of_breaker_transitions; it must not take a lock that a caller of
 * acquire/record/release/get_state holds during that call. */
typedef void (*of_breaker_change_fn)(void *opaque, of_breaker_state from, of_breaker_state to);

#define OF_BREAKER_PENDING_MAX 16

/* Embeddable; the fields are private. */
typedef struct of_breaker {
    pthread_mutex_t mu;
    of_breaker_policy policy;
    of_breaker_state state;    /* as stored: OPEN becomes HALF_OPEN on the next look */
    unsigned char *ring;       /* window outcomes, 1 = failure */
    int ring_next, ring_count; /* next slot to write, outcomes held */
    int ring_failures;
    int64_t opened_at_ms;
    int active;          /* permits of the current state still outstanding (half-open: trials) */
    int stale;           /* permits from before the last state change still outstanding */
    int trial_successes; /* half-open */
    uint64_t transitions;
    of_breaker_change_fn on_change;
    void *opaque;
    /* state changes not yet delivered to on_change */
    of_breaker_state pending[OF_BREAKER_PENDING_MAX][2];
    int n_pending;
    int delivering;
} of_breaker;

/* p NULL: the defaults. A zero field of an enabled policy takes its default (a zeroed policy is
 * a disabled breaker). 0, or -1 when a value is out of bounds or memory is short (then there is
 * nothing to destroy). */
int of_breaker_init(of_breaker *b, const of_breaker_policy *p);
/* The same with a state-change callback (on_change may be NULL). */
int of_breaker_init_notify(of_breaker *b, const of_breaker_policy *p,
                           of_breaker_change_fn on_change, void *opaque);
/* No call may be in progress on b. */
void of_breaker_destroy(of_breaker *b);

/* 1: the call may go ahead (in half-open it holds a trial slot) and must be followed by exactly
 * one of_breaker_record or of_breaker_release. 0: not now; *wait_ms (when not NULL) says how
 * long until it may be: the rest of open_for when open, OF_BREAKER_POLL_MS when half-open with
 * every trial slot taken. */
int of_breaker_acquire(of_breaker *b, int64_t now_ms, int64_t *wait_ms);
/* The outcome of a permitted call: success non-zero or 0 (a failure). */
void of_breaker_record(of_breaker *b, int64_t now_ms, int success);
/* A permitted call that ended with no outcome to count (the event was rejected): frees its
 * slot, changes nothing else. */
void of_breaker_release(of_breaker *b);

/* The state at now_ms: an open breaker whose open_for has passed is half-open (and the change
 * is made, and delivered, now). A disabled breaker is always closed. */
of_breaker_state of_breaker_get_state(of_breaker *b, int64_t now_ms);
/* State changes so far (open -> half-open included). */
uint64_t of_breaker_transitions(of_breaker *b);

#endif
