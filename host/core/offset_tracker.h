/* Offset tracker: which offsets of one partition were dispatched and which are done, so the
 * runner commits only up to the lowest offset not yet done (everything below it finished),
 * whatever order the workers finish in. Not thread-safe: the runner holds its stage lock. */
#ifndef OF_OFFSET_TRACKER_H
#define OF_OFFSET_TRACKER_H

#include <stddef.h>
#include <stdint.h>

typedef struct of_offset_tracker of_offset_tracker;

of_offset_tracker *of_offtrack_new(void);
void of_offtrack_free(of_offset_tracker *t);
/* Records a dispatched offset; offsets must grow (gaps are fine, as after compaction).
 * -1 when it does not grow or on no memory. */
int of_offtrack_dispatch(of_offset_tracker *t, int64_t offset);
/* Marks a dispatched offset done; -1 when it is not pending. */
int of_offtrack_done(of_offset_tracker *t, int64_t offset);
/* The offset to commit: the lowest pending one, or the last dispatched + 1 when none is
 * pending; -1 before anything was dispatched. */
int64_t of_offtrack_committable(const of_offset_tracker *t);
/* The last dispatched offset, -1 before any. */
int64_t of_offtrack_last(const of_offset_tracker *t);
/* Dispatched offsets not yet done. */
size_t of_offtrack_pending(const of_offset_tracker *t);

#endif
