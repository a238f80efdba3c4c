/* The outbox marker: marks outbox rows published in batches, off the workers' path.
 *
 * After a stage's commit and the broker's acknowledgement the outbox rows of an event are only
 * bookkeeping: an unmarked row is republished by the outbox relay once it is older than its
 * grace (90 s in the daemon), and the republished event is recognised downstream by the inbox.
 * So the runner and the gateway hand the acknowledged ids to the marker, which collects them
 * from every thread and marks them in one UPDATE every interval_ms or batch ids, whichever
 * comes first, in a thread of its own. A failed UPDATE is logged and its ids dropped (the relay
 * publishes those rows once more: at least once, never lost), as a failed per-event mark was. */
#ifndef OF_OUTBOX_MARKER_H
#define OF_OUTBOX_MARKER_H

#include "db.h"

#include <stddef.h>
#include <stdint.h>

typedef struct of_outbox_marker of_outbox_marker;

/* Starts the marker's thread; NULL when out of memory or no thread. */
of_outbox_marker *of_outbox_marker_start(of_db_pool *pool, int64_t interval_ms, size_t batch);
/* Queues ids to be marked published; never waits for the database. Above a bound (the database
 * is away for long) the ids are dropped with a warning: the relay republishes those rows. */
void of_outbox_marker_add(of_outbox_marker *m, const int64_t *ids, size_t n);
/* Marks every id queued so far, now, in the caller's thread. 0, or -1 when an UPDATE failed. */
int of_outbox_marker_flush(of_outbox_marker *m);
/* Ids queued and not yet marked (tests, metrics). */
size_t of_outbox_marker_pending(of_outbox_marker *m);
/* Ids marked since the start, and UPDATE statements that did it (tests, metrics). */
void of_outbox_marker_counts(of_outbox_marker *m, uint64_t *marked, uint64_t *batches);
/* Flushes what is queued, stops the thread and frees the marker (NULL: nothing). Call it once
 * no thread adds any more (after the runner's drain and the gateway's stop). */
void of_outbox_marker_stop(of_outbox_marker *m);

#endif
