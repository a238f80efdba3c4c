/* The gateway's invoke hook (gateway.h): runs a route handler in an of_call; for a stage with
 * OF_STAGE_DATABASE in a transaction (no inbox: a request is not redelivered) whose outbox gets
 * what the handler emits, committed when it returns OF_OK (a failed commit turns the answer into
 * a 503), then published. Requests to a route with `batch:` share transactions: see
 * http_group.h.
 *
 * With a marker, a committed request is answered without waiting for the broker: its events are
 * in the outbox, so what the broker does not acknowledge the relay publishes later, and the
 * acknowledged rows reach the marker from the delivery callbacks. Without one (or without a
 * database) the request's thread waits for the acknowledgements, as it must when nothing else
 * would ever publish the events. */
#ifndef OF_HTTP_INVOKE_H
#define OF_HTTP_INVOKE_H

#include "stage_tx.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct of_http_request;
struct of_http_groups;

typedef struct of_http_invoker {
    of_db_pool *db;     /* may be NULL */
    struct of_bus *bus; /* may be NULL (nothing is published) */
    /* may be NULL (the rows are marked published in the request's thread) */
    struct of_outbox_marker *marker;
    /* Set by of_http_invoker_init: answered requests whose acknowledgements are still due, and
     * whether the marker has been let go (of_http_invoker_quiesce). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t due;
    int detached;
    /* The batched routes' queues (http_group.h); NULL when they could not be allocated, and
     * every request then runs alone. */
    struct of_http_groups *groups;
} of_http_invoker;

/* Sets up an invoker (the pointers are borrowed and must outlive it). */
void of_http_invoker_init(of_http_invoker *inv, of_db_pool *db, struct of_bus *bus,
                          struct of_outbox_marker *marker);
/* Waits up to timeout_ms for the acknowledgements of answered requests, then lets the marker go:
 * an acknowledgement after that leaves its row to the relay. Call once the gateway has stopped
 * and before the marker stops; returns how many were still due. */
size_t of_http_invoker_quiesce(of_http_invoker *inv, int64_t timeout_ms);
/* Frees what init set up; after quiesce, and after the bus is gone (a late delivery callback
 * still locks the invoker). */
void of_http_invoker_destroy(of_http_invoker *inv);

/* The hook itself (of_gateway_invoke_fn; opaque is the invoker). A request to a route with
 * `batch:` on a database stage goes through of_http_group_invoke, any other runs alone. */
of_status of_http_invoke(void *opaque, of_stage *stage, of_http_handler fn,
                         struct of_http_request *req);
/* One request in a transaction of its own, whatever its route says. */
of_status of_http_invoke_alone(of_http_invoker *inv, of_stage *stage, of_http_handler fn,
                               struct of_http_request *req);
/* After call's transaction committed and its kept cache writes were applied
 * (of_call_cache_apply: a group applies all of its requests' in one round trip): its events to
 * the broker. ids are its outbox rows (call->n_emitted of them, taken; NULL without a
 * database). Returns OF_OK, or OF_RETRY when the events could not be published and there is no
 * outbox to publish them later (the answer is then a 503). */
of_status of_http_invoker_settle(of_http_invoker *inv, of_stage *stage, of_call *call,
                                 struct of_http_request *req, int64_t *ids);

#endif
