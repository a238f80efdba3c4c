#include "outbox_marker.h"

#include "log.h"
#include "thread_name.h"
#include "timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Beyond this many queued ids (the database is away for long) new ones are dropped: the relay
 * republishes their rows after its grace, and the inbox downstream makes that a no-op. */
#define MARKER_MAX_PENDING 200000

struct of_outbox_marker {
    of_db_pool *pool;
    int64_t interval_ms;
    size_t batch;
    pthread_t thread;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC: ids arrived past the batch, or stop */
    int64_t *ids;
    size_t n, cap;
    int stop;
    uint64_t marked, batches, dropped;
    int64_t last_drop_log_ms;
    pthread_mutex_t flush_mu; /* one UPDATE at a time (the thread or a caller's flush) */
};

/* Takes the queued ids (the caller frees them); under m->mu. */
static int64_t *take(of_outbox_marker *m, size_t *n)
{
    int64_t *ids = m->ids;
    *n = m->n;
    m->ids = NULL;
    m->n = m->cap = 0;
    return ids;
}

/* Marks what is queued now; 0 or -1. */
static int flush_once(of_outbox_marker *m)
{
    pthread_mutex_lock(&m->flush_mu);
    pthread_mutex_lock(&m->mu);
    size_t n;
    int64_t *ids = take(m, &n);
    pthread_mutex_unlock(&m->mu);
    int rc = 0;
    if (n) {
        char err[256] = "";
        if (of_db_outbox_mark_published(m->pool, ids, n, err, sizeof(err)) != 0) {
            /* As a failed per-event mark: the relay publishes them once more. */
            of_log(OF_LVL_WARN, NULL, NULL,
                   "outbox marker: marking %zu rows published failed: %s; the relay publishes "
                   "them again",
                   n, err);
            rc = -1;
        } else {
            pthread_mutex_lock(&m->mu);
            m->marked += n;
            m->batches++;
            pthread_mutex_unlock(&m->mu);
        }
    }
    free(ids);
    pthread_mutex_unlock(&m->flush_mu);
    return rc;
}

static void *marker_main(void *arg)
{
    of_outbox_marker *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        if (m->n == 0) {
            /* Nothing queued: sleep until something is (add() wakes the thread at the batch
             * size only, so wait for the first id with a timed wait as well). */
            struct timespec until = of_mono_after_ms(m->interval_ms);
            pthread_cond_timedwait(&m->cv, &m->mu, &until);
            continue;
        }
        /* Something queued: give the others interval_ms to join it, unless the batch fills. */
        struct timespec until = of_mono_after_ms(m->interval_ms);
        while (!m->stop && m->n < m->batch)
            if (pthread_cond_timedwait(&m->cv, &m->mu, &until) == ETIMEDOUT)
                break;
        pthread_mutex_unlock(&m->mu);
        flush_once(m);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

of_outbox_marker *of_outbox_marker_start(of_db_pool *pool, int64_t interval_ms, size_t batch)
{
    of_outbox_marker *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->pool = pool;
    m->interval_ms = interval_ms > 0 ? interval_ms : 20;
    m->batch = batch > 0 ? batch : 500;
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->flush_mu, NULL);
    if (of_cond_init_monotonic(&m->cv) != 0) {
        pthread_mutex_destroy(&m->flush_mu);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return NULL;
    }
    if (pthread_create(&m->thread, NULL, marker_main, m) != 0) {
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->flush_mu);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return NULL;
    }
    of_thread_name(m->thread, "of-outbox-mark", NULL);
    return m;
}

void of_outbox_marker_add(of_outbox_marker *m, const int64_t *ids, size_t n)
{
    if (!m || !ids || n == 0)
        return;
    pthread_mutex_lock(&m->mu);
    int drop = m->n + n > MARKER_MAX_PENDING;
    if (!drop && m->n + n > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < m->n + n)
            cap *= 2;
        int64_t *grown = realloc(m->ids, cap * sizeof(*grown));
        if (grown) {
            m->ids = grown;
            m->cap = cap;
        } else {
            drop = 1;
        }
    }
    if (drop) {
        m->dropped += n;
        int64_t now = of_mono_ms();
        int log_it = now - m->last_drop_log_ms >= 10000;
        if (log_it)
            m->last_drop_log_ms = now;
        uint64_t dropped = m->dropped;
        pthread_mutex_unlock(&m->mu);
        if (log_it)
            of_log(OF_LVL_WARN, NULL, NULL,
                   "outbox marker: %zu ids queued; %llu left unmarked so far (the relay "
                   "publishes those rows again)",
                   (size_t)MARKER_MAX_PENDING, (unsigned long long)dropped);
        return;
    }
    memcpy(m->ids + m->n, ids, n * sizeof(*ids));
    size_t before = m->n;
    m->n += n;
    /* Wake the thread for the first id (it starts its interval) and at the batch size. */
    if (before == 0 || (before < m->batch && m->n >= m->batch))
        pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

int of_outbox_marker_flush(of_outbox_marker *m)
{
    return m ? flush_once(m) : 0;
}

size_t of_outbox_marker_pending(of_outbox_marker *m)
{
    if (!m)
        return 0;
    pthread_mutex_lock(&m->mu);
    size_t n = m->n;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void of_outbox_marker_counts(of_outbox_marker *m, uint64_t *marked, uint64_t *batches)
{
    uint64_t a = 0, b = 0;
    if (m) {
        pthread_mutex_lock(&m->mu);
        a = m->marked;
        b = m->batches;
        pthread_mutex_unlock(&m->mu);
    }
    if (marked)
        *marked = a;
    if (batches)
        *batches = b;
}

void of_outbox_marker_stop(of_outbox_marker *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    flush_once(m); /* what was queued after the thread's last round */
    free(m->ids);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->flush_mu);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
