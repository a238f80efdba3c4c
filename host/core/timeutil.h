/* Clocks and error strings shared by the bus, the runner and the stores. Waits use the
 * monotonic clock so a change of the wall clock neither shortens nor stretches them. */
#ifndef OF_TIMEUTIL_H
#define OF_TIMEUTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Wall-clock milliseconds since the epoch (event timestamps). */
int64_t of_now_ms(void);
/* Monotonic milliseconds (durations, deadlines). */
int64_t of_mono_ms(void);
/* The monotonic time ms from now, for pthread_cond_timedwait on a monotonic condvar. Negative
 * ms counts as 0; more than a year is capped. */
struct timespec of_mono_after_ms(int64_t ms);
/* A condition variable that waits on CLOCK_MONOTONIC. 0 or -1. */
int of_cond_init_monotonic(pthread_cond_t *cv);
/* librdkafka-style errstr: formats into errstr when it is not NULL. */
void of_seterr(char *errstr, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
