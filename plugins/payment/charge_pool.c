/*
 * payment plugin: the helper threads that send a set's charges at once (charge_pool.h).
 *
 * A run lives on its caller's stack. It is in the pool's queue while it has jobs nobody took;
 * helpers and its caller take its jobs one at a time under the pool's lock, and the caller
 * waits for the last one to return before its run (and its stack) goes away.
 */
#include "charge_pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pay_run {
    pay_job_fn fn;
    void *arg;
    size_t n;
    size_t next; /* the next job to take */
    size_t done; /* jobs returned */
    struct pay_run *link;
} pay_run;

struct pay_pool {
    pthread_mutex_t mu;
    pthread_cond_t work;     /* helpers: a run was queued, or stop */
    pthread_cond_t finished; /* callers: a job of some run returned */
    pay_run *head, *tail;    /* runs with jobs left to take */
    int stop;
    unsigned n_threads; /* started */
    char name[16];
    pthread_t threads[];
};

static void unlink_run(pay_pool *p, pay_run *r)
{
    pay_run *prev = NULL;
    for (pay_run *x = p->head; x; prev = x, x = x->link) {
        if (x != r)
            continue;
        if (prev)
            prev->link = x->link;
        else
            p->head = x->link;
        if (p->tail == x)
            p->tail = prev;
        x->link = NULL;
        return;
    }
}

/* Takes the next job of r (under mu); r leaves the queue with its last one. */
static size_t take(pay_pool *p, pay_run *r)
{
    size_t i = r->next++;
    if (r->next == r->n)
        unlink_run(p, r);
    return i;
}

/* Runs job i of r outside the lock and counts it (returns with mu held). */
static void run_job(pay_pool *p, pay_run *r, size_t i)
{
    pthread_mutex_unlock(&p->mu);
    r->fn(r->arg, i);
    pthread_mutex_lock(&p->mu);
    if (++r->done == r->n)
        pthread_cond_broadcast(&p->finished);
}

static void *helper_main(void *arg)
{
    pay_pool *p = arg;
    pthread_setname_np(pthread_self(), p->name);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->work, &p->mu);
        if (!p->head)
            break;
        pay_run *r = p->head;
        run_job(p, r, take(p, r));
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

pay_pool *pay_pool_new(unsigned threads, const char *name, char *err, size_t err_size)
{
    if (threads < 1 || threads > PAY_POOL_MAX_THREADS) {
        snprintf(err, err_size, "charge pool: %u threads (1 to %d)", threads, PAY_POOL_MAX_THREADS);
        return NULL;
    }
    pay_pool *p = calloc(1, sizeof(*p) + threads * sizeof(pthread_t));
    if (!p) {
        snprintf(err, err_size, "charge pool: out of memory");
        return NULL;
    }
    snprintf(p->name, sizeof(p->name), "%s", name ? name : "charge");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->finished, NULL);
    for (; p->n_threads < threads; p->n_threads++) {
        int rc = pthread_create(&p->threads[p->n_threads], NULL, helper_main, p);
        if (rc != 0) {
            snprintf(err, err_size, "charge pool: starting thread %u of %u: %s", p->n_threads + 1,
                     threads, strerror(rc));
            pay_pool_free(p);
            return NULL;
        }
    }
    return p;
}

void pay_pool_run(pay_pool *p, pay_job_fn fn, void *arg, size_t n)
{
    if (!p || n < 2) {
        for (size_t i = 0; i < n; i++)
            fn(arg, i);
        return;
    }
    pay_run r = {.fn = fn, .arg = arg, .n = n};
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->link = &r;
    else
        p->head = &r;
    p->tail = &r;
    /* The caller takes one job itself: wake helpers for the others, not all of them. */
    for (size_t k = 1; k < n && k <= p->n_threads; k++)
        pthread_cond_signal(&p->work);
    while (r.next < r.n)
        run_job(p, &r, take(p, &r));
    while (r.done < r.n)
        pthread_cond_wait(&p->finished, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void pay_pool_free(pay_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->finished);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
