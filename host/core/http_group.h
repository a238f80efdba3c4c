/* Group commit for HTTP routes with `batch:` (ABI 1.6). Requests to such a route that arrive
 * while its transactions are busy queue up, and the next transaction takes up to `batch` of them
 * at once: one BEGIN, the stage's batch handler for all of them (or its handler for each, one
 * after the other), one outbox write, one COMMIT and one fsync, where each request alone would
 * have paid all of them. A request that finds a transaction free goes at once, so at low load
 * nothing waits; under load the queue fills while a commit is in flight, and the transactions
 * grow with the load.
 *
 * The requests' threads take turns leading: the thread whose request is queued when a
 * transaction is free runs the next group for every request in it (handlers included), and the
 * others sleep until their answer is ready; a handler may therefore run on another request's
 * thread. At most OF_HTTP_GROUP_TRANSACTIONS transactions per route are open at once: two let
 * one group commit while the next runs its statements, and no more, because every transaction
 * the intake opens is a commit the whole machine pays for: with four, the groups at 560 orders/s
 * held 1.6 requests and the pipeline behind them was slower (bench/RESULTS.md, step 31).
 *
 * What may not commit does not hold the others back: see of_http_batch_handler (host_api.h) for
 * how a group that does not go through whole is run again. */
#ifndef OF_HTTP_GROUP_H
#define OF_HTTP_GROUP_H

#include "http_invoke.h"

#include <stddef.h>

#define OF_HTTP_GROUP_TRANSACTIONS 2 /* at most the bits of an unsigned (http_group.c) */

struct of_http_request;
typedef struct of_http_groups of_http_groups;

/* The invoker's table of queues, one per stage and handler; NULL when out of memory. */
of_http_groups *of_http_groups_new(void);
/* After the gateway stopped (no request is queued). NULL is fine. */
void of_http_groups_free(of_http_groups *gs);

/* Runs req in a group of at most max requests of its route (max >= 2) and returns what its
 * handler returned (or the host's verdict: OF_RETRY with a 503 when nothing could be stored). The
 * answer is in req when it returns. inv->groups and inv->db must be set, stage must use the
 * database. */
of_status of_http_group_invoke(of_http_invoker *inv, of_stage *stage, of_http_handler fn,
                               struct of_http_request *req, size_t max);

/* Runs reqs[0..n) (n >= 1, all for the same route) as one group now, on this thread: what the
 * thread leading a group does. status[i] gets what reqs[i]'s handler returned, or the host's
 * verdict. */
void of_http_group_run(of_http_invoker *inv, of_stage *stage, of_http_handler fn,
                       struct of_http_request *const *reqs, size_t n, of_status *status);

/* Requests queued and not yet taken by a transaction, over every route. */
size_t of_http_groups_queued(of_http_groups *gs);

#endif
