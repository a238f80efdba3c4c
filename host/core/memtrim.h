/* Gives the memory a burst left free back to the kernel. glibc keeps what its arenas freed for
 * reuse and returns it only from the top of a heap; after a backlog drains, the daemon's resident
 * memory would stay at the burst's level for good. A thread calls malloc_trim(0) every period,
 * which also releases the free pages inside the heaps. */
#ifndef OF_MEMTRIM_H
#define OF_MEMTRIM_H

#include <stdint.h>

typedef struct of_memtrim of_memtrim;

/* Starts the thread; NULL when it cannot (the daemon runs on without it). */
of_memtrim *of_memtrim_start(int64_t period_ms);
/* Stops and frees it; NULL is fine. */
void of_memtrim_stop(of_memtrim *t);

#endif
