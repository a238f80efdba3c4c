#include "memtrim.h"

#include "thread_name.h"
#include "timeutil.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

struct of_memtrim {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int stop;
    int64_t period_ms;
};

static void *run(void *arg)
{
    of_memtrim *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        struct timespec until = of_mono_after_ms(t->period_ms);
        while (!t->stop && pthread_cond_timedwait(&t->cv, &t->mu, &until) != ETIMEDOUT)
            ;
        if (t->stop)
            break;
        pthread_mutex_unlock(&t->mu);
        malloc_trim(0);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

of_memtrim *of_memtrim_start(int64_t period_ms)
{
    of_memtrim *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->period_ms = period_ms > 0 ? period_ms : 10000;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t);
        return NULL;
    }
    if (of_cond_init_monotonic(&t->cv) != 0) {
        pthread_mutex_destroy(&t->mu);
        free(t);
        return NULL;
    }
    if (pthread_create(&t->thread, NULL, run, t) != 0) {
        pthread_cond_destroy(&t->cv);
        pthread_mutex_destroy(&t->mu);
        free(t);
        return NULL;
    }
    of_thread_name(t->thread, "of-memtrim", NULL);
    return t;
}

void of_memtrim_stop(of_memtrim *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
