/* Effectively-once effects for stages that use the database (OF_STAGE_DATABASE): one try of
 * process() (or a batch of them: the runner's batch_try) runs in a
 * transaction that first records the input event in the inbox (a redelivered
 * event that was applied before is skipped), and that, when the stage answers OF_OK, also writes
 * what it emitted to the outbox before it commits. The emitted events are published after the
 * commit (by the runner, or by the outbox relay when a crash came in between), and only then is
 * the input's offset committed. */
#ifndef OF_STAGE_TX_H
#define OF_STAGE_TX_H

#include "db.h"
#include "stage_runtime.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef enum of_txr {
    OF_TXR_OK = 0,        /* done */
    OF_TXR_DUPLICATE = 1, /* the inbox says the event was applied before: skip it */
    OF_TXR_FAIL = 2,      /* this try failed (counts as a try) */
    OF_TXR_WAIT = 3       /* the database is unavailable or the transaction lost a deadlock:
                             try again later without using up a try */
} of_txr;

/* The inbox id of an event: its ce_id header, else topic/partition/offset. */
void of_stage_tx_event_id(const of_event *ev, char *out, size_t size);

/* Opens the transaction of a try and records the event in the inbox as `group`. On OK,
 * call->tx is set; otherwise nothing is left open. */
of_txr of_stage_tx_open(of_db_pool *pool, of_call *call, const char *group, char *why,
                        size_t why_size);
/* For a batch (several events in one transaction the runner opened): records call's input in
 * the inbox inside tx and sets call->tx (borrowed: the runner commits and ends tx). On anything
 * but OK call->tx is not set and the caller rolls tx back (OF_TXR_WAIT: it may be doomed, see
 * of_db_tx_doomed). */
of_txr of_stage_tx_join(of_db_tx *tx, of_call *call, const char *group, char *why, size_t why_size);
/* After OF_OK: writes call's emitted events to the outbox in call->tx, without committing.
 * *ids gets their outbox ids (malloc'ed, call->n_emitted of them, NULL when none; free them). */
of_txr of_stage_tx_write_outbox(of_call *call, int64_t **ids, char *why, size_t why_size);
/* The same for n calls that share one transaction (a batch: calls[0].tx), their rows in call
 * order, in a few multi-row statements. ids[i] gets calls[i]'s outbox ids (malloc'ed, NULL when
 * it emitted nothing). On failure no ids are returned and the transaction must not commit. */
of_txr of_stage_tx_write_outbox_calls(of_call *calls, size_t n, int64_t **ids, char *why,
                                      size_t why_size);
/* After OF_OK: writes call's emitted events to the outbox and commits. The outbox ids are
 * returned in *ids (malloc'ed, *n_ids of them; free them) so the runner can mark them published.
 * The transaction is ended either way. */
of_txr of_stage_tx_commit(of_call *call, int64_t **ids, size_t *n_ids, char *why, size_t why_size);
/* What the last failure in tx means for the event: OF_TXR_WAIT when the database caused it
 * (unavailable, deadlock: the try does not count), OF_TXR_FAIL otherwise. */
of_txr of_stage_tx_failure(const of_db_tx *tx);
/* After OF_RETRY or OF_REJECT: rolls back and ends. Returns OF_TXR_WAIT when the last database
 * error was one the database causes (unavailable, deadlock), OF_TXR_FAIL otherwise. */
of_txr of_stage_tx_abort(of_call *call);

struct of_bus;
/* For a redelivered event that was applied before: publishes the outbox rows it wrote that are
 * not yet published (a host stopped between its commit and their publication), in order, and
 * marks them. Returns how many, or -1 (the caller tries again later). */
int64_t of_stage_tx_publish_pending(of_db_pool *pool, struct of_bus *bus, const char *group,
                                    const of_event *ev, char *why, size_t why_size);

/* The outbox relay: publishes outbox rows that a crash left unpublished (older than grace_ms,
 * so that rows whose runner is still publishing them are left to it) and deletes inbox and
 * published outbox rows older than retention_ms. */
typedef struct of_outbox_relay of_outbox_relay;
of_outbox_relay *of_outbox_relay_start(of_db_pool *pool, struct of_bus *bus, int64_t grace_ms,
                                       int64_t retention_ms);
void of_outbox_relay_stop(of_outbox_relay *relay);
/* One round now (tests): returns the rows published, or -1. */
int64_t of_outbox_relay_run_once(of_db_pool *pool, struct of_bus *bus, int64_t grace_ms);

/* The gateway's invoke hook (gateway.h): runs a route handler in an of_call; for a stage with
 * OF_STAGE_DATABASE in a transaction (no inbox: a request is not redelivered) whose outbox gets
 * what the handler emits, committed when it returns OF_OK (a failed commit turns the answer into
 * a 503), then published.
 *
 * With a marker, a committed request is answered without waiting for the broker: its events are
 * in the outbox, so what the broker does not acknowledge the relay publishes later, and the
 * acknowledged rows reach the marker from the delivery callbacks. Without one (or without a
 * database) the request's thread waits for the acknowledgements, as it must when nothing else
 * would ever publish the events. */
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
struct of_http_request;
of_status of_http_invoke(void *opaque, of_stage *stage, of_http_handler fn,
                         struct of_http_request *req);

#endif
