/*
 * payment plugin: a set's charges sent to the provider at once.
 *
 * A provider call is a network round trip of tens to hundreds of milliseconds. Made one after
 * another, a set of 32 charges takes 32 of them, so the stage could only go faster with more
 * workers, and more workers make smaller sets (more transactions for the database). The pool's
 * helper threads run a set's calls beside the worker that asked, so a set takes about as long as
 * its slowest call.
 *
 * Jobs run on threads the host does not know: they must not call the host's functions (those
 * belong to the worker thread of the event). The providers' functions (provider.h) are pure.
 */
#ifndef PAYMENT_CHARGE_POOL_H
#define PAYMENT_CHARGE_POOL_H

#include <stddef.h>

#define PAY_POOL_MAX_THREADS 256

typedef struct pay_pool pay_pool;

/* One job: called once for each index of a run, on a helper thread or the caller's. */
typedef void (*pay_job_fn)(void *arg, size_t i);

/* Starts `threads` helpers (1..PAY_POOL_MAX_THREADS), named `name` (at most 15 bytes are kept).
 * Returns the pool, owned by the caller (pay_pool_free), or NULL with the reason in err. */
pay_pool *pay_pool_new(unsigned threads, const char *name, char *err, size_t err_size);

/* Calls fn(arg, i) once for every i in [0, n) and returns when all the calls have returned. The
 * calling thread runs jobs of its own run too, so a run always progresses; several threads may
 * run at once and share the helpers (the earliest run is served first). A NULL pool runs
 * everything on the caller. */
void pay_pool_run(pay_pool *pool, pay_job_fn fn, void *arg, size_t n);

/* Stops and joins the helpers, then frees the pool. No run may be in progress. NULL is fine. */
void pay_pool_free(pay_pool *pool);

#endif /* PAYMENT_CHARGE_POOL_H */
