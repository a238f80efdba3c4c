/* Names for the daemon's threads, so that `top -H`, `ps -L`, perf and gdb say which stage or
 * service a thread works for (Linux keeps 15 characters of a thread's name). */
#ifndef OF_THREAD_NAME_H
#define OF_THREAD_NAME_H

#include <pthread.h>

/* The longest name the kernel keeps, without its terminating NUL. */
#define OF_THREAD_NAME_MAX 15

/* Writes into out (at least OF_THREAD_NAME_MAX + 1 bytes) `what` followed by `suffix`, `what`
 * cut short so that the suffix always fits: "notification" and ":c" make "notification:c",
 * "a-very-long-stage-name" and ":12" make "a-very-long-:12". Either may be NULL or empty. */
void of_thread_name_compose(char *out, const char *what, const char *suffix);

/* Names thread t as of_thread_name_compose() composes. A name is a diagnostic aid: failing to
 * set it is not an error, so nothing is returned. */
void of_thread_name(pthread_t t, const char *what, const char *suffix);

#endif
