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

/* Publishes a call's emitted events and waits for every acknowledgement; 0 when all arrived. */
int of_stage_tx_publish_call(struct of_bus *bus, const of_call *call);

#endif
