/* The stage runner. Per stage: one consumer thread polls the stage's input topics as its
 * consumer group and dispatches each event to one of `concurrency` worker threads, chosen by
 * the key's murmur2 hash (keyless events: by partition), each worker with a FIFO queue, so one
 * key's events are processed one at a time and in order. A worker runs process(), retries in
 * place with the stage's backoff, dead-letters rejected and exhausted events, publishes what an
 * OK emitted and then marks the input done in the partition's offset tracker, committing up to
 * the lowest offset not yet done. A database stage with `batch` > 1 has its worker take the events
 * queued for it (up to `batch`) into one transaction (batch_try; with the stage's process_batch,
 * ABI 1.5, in one call for the set: run_set); the first that does not go
 * through ends the batch (the events before it are committed without it) and goes on alone, so a
 * key's order and every event's retry policy hold as above.
 *
 * Locks: a stage's `mu` guards its offset trackers, in-flight count and pause state, and is
 * taken before the bus's own lock (commit, pause, resume); a worker's `mu` guards its queue; the
 * runner's `mu` counts running workers for the drain. The bus never calls back into the runner
 * while holding its lock. */
#include "runner.h"

#include "log.h"
#include "breaker.h"
#include "cache.h"
#include "fault.h"
#include "offset_tracker.h"
#include "outbox_marker.h"
#include "plugin.h"
#include "stage_tx.h"
#include "stage_runtime.h"
#include "thread_name.h"
#include "timeutil.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_TIMEOUT_MS       200
#define DEFAULT_MAX_IN_FLIGHT 1000
#define DEFAULT_PARTITIONS    3
/* How long a revoked partition's in-flight events may take to finish before the partition is
 * handed over with them uncommitted (its next owner then processes them again). */
#define REVOKE_WAIT_MS 10000
/* How far (in max_in_flight units) a partition's last dispatched event may run ahead of its
 * commit point before consumption pauses. */
#define WINDOW_FACTOR 10
/* How long the consumer waits at max_in_flight for an event to finish before it pauses the bus
 * (see wait_for_room). */
#define BP_PAUSE_AFTER_MS 1000
/* Tries to publish a dead letter whole before it goes without its payload. */
#define DLQ_WHOLE_TRIES 3

typedef struct qitem {
    of_event *ev;
    uint64_t gen; /* the generation of its partition's tracker when it was dispatched */
    struct qitem *next;
} qitem;

typedef struct worker {
    struct of_stage_rt *rt;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC: also the backoff sleep */
    qitem *head, *tail;
    int stop; /* no more events will be queued: exit once the queue is empty */
} worker;

typedef struct part_track {
    char *topic;
    int32_t partition;
    of_offset_tracker *tracker;
    int64_t committed; /* last committed next_offset, -1 before the first commit */
    int wide;          /* its uncommitted window is over the limit (counted in rt->wide_parts) */
    uint64_t gen;      /* new for every assignment: events of an earlier one never commit */
} part_track;

struct of_stage_rt {
    of_runner *runner;
    of_stage *st;
    of_consumer *consumer; /* NULL for a stage without inputs */
    pthread_t consumer_thread;
    int consumer_started;
    worker *workers;
    int n_workers;
    pthread_mutex_t mu;
    part_track *parts;
    size_t n_parts;
    uint64_t in_flight; /* under mu */
    /* Two reasons to pause the consumer, kept apart so one's end does not undo the other. */
    int paused_bp;       /* under mu: nothing finished for BP_PAUSE_AFTER_MS at max_in_flight */
    int wide_parts;      /* under mu: partitions whose uncommitted window is over the limit */
    int paused_brk;      /* under mu: the circuit breaker is open */
    int consumer_paused; /* under mu: what the bus was last told */
    of_breaker breaker;
    int breaker_ok;
    of_db_pool *db;             /* borrowed: set for a stage with OF_STAGE_DATABASE */
    char group[512];            /* the consumer group, also the inbox's name for this stage */
    int64_t revoke_deadline_ms; /* consumer thread only: the current revocation's deadline */
    uint64_t next_gen;          /* under mu */
    pthread_cond_t done_cv;     /* CLOCK_MONOTONIC; an event finished (a revocation waits on it) */
    int max_in_flight;
    int batch;            /* events per transaction (a database stage's `batch:`), >= 1 */
    int workers_running;  /* under runner->mu: this stage's share of runner->workers_running */
    _Atomic int stopping; /* the consumer thread must stop */
    _Atomic int abandon;  /* the drain's deadline passed: give up what is not finished */
};

struct of_runner {
    of_bus *bus;
    of_metrics *metrics;
    of_db_pool *db;              /* borrowed; NULL without a database */
    of_outbox_marker *marker;    /* borrowed; NULL: outbox rows are marked per event */
    struct of_cache_pool *cache; /* borrowed; NULL without Redis */
    struct of_ws_hub *ws_hub;    /* borrowed; NULL without a gateway */
    /* Every stage, pipelines in the order added, stages in file order. The array changes only
     * under stages_mu held for writing (a reload adopts and retires stages); the metric
     * collectors read it holding it for reading. */
    of_stage **stages;
    size_t n_stages, cap_stages;
    pthread_rwlock_t stages_mu;
    int started, drained;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int workers_running;
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static const char *stage_name(const of_stage *st)
{
    return st->def->name;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void stat_add(_Atomic uint64_t *stat, struct of_counter *c, uint64_t n)
{
    atomic_fetch_add(stat, n);
    if (c)
        of_counter_add_(c, (double)n);
}

/* ---------------------------------------------------------------------------------------------
 * Offsets and in-flight accounting
 * ------------------------------------------------------------------------------------------- */

static part_track *find_part(struct of_stage_rt *rt, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < rt->n_parts; i++)
        if (rt->parts[i].partition == partition && strcmp(rt->parts[i].topic, topic) == 0)
            return &rt->parts[i];
    return NULL;
}

static part_track *find_or_add_part(struct of_stage_rt *rt, const char *topic, int32_t partition)
{
    part_track *p = find_part(rt, topic, partition);
    if (p)
        return p;
    part_track *n = realloc(rt->parts, (rt->n_parts + 1) * sizeof(*n));
    if (!n)
        return NULL;
    rt->parts = n;
    p = &rt->parts[rt->n_parts];
    p->topic = strdup(topic);
    p->tracker = of_offtrack_new();
    if (!p->topic || !p->tracker) {
        free(p->topic);
        of_offtrack_free(p->tracker);
        return NULL;
    }
    p->partition = partition;
    p->committed = -1;
    p->wide = 0;
    p->gen = ++rt->next_gen;
    rt->n_parts++;
    return p;
}

/* The tracker of this event's partition, when it still belongs to the assignment the event was
 * dispatched in. Under rt->mu. */
static part_track *live_part(struct of_stage_rt *rt, const of_event *ev, uint64_t gen)
{
    part_track *p = find_part(rt, ev->topic, ev->partition);
    return p && p->gen == gen ? p : NULL;
}

static void apply_pause_locked(struct of_stage_rt *rt);

/* Under rt->mu: one stuck event holds its partition's commit back while the events after it
 * finish; the tracker would grow without bound and a restart would repeat all of them. Past
 * WINDOW_FACTOR x max_in_flight offsets between the commit point and the last dispatched event,
 * the consumer pauses until the stuck event is done. */
static void update_window_locked(struct of_stage_rt *rt, part_track *p)
{
    int64_t last = of_offtrack_last(p->tracker), next = of_offtrack_committable(p->tracker);
    int wide =
        last >= 0 && next >= 0 && last + 1 - next > (int64_t)WINDOW_FACTOR * rt->max_in_flight;
    if (wide == p->wide)
        return;
    p->wide = wide;
    rt->wide_parts += wide ? 1 : -1;
    if (wide)
        of_log(OF_LVL_WARN, rt->st->pipeline_name, stage_name(rt->st),
               "partition %s[%" PRId32 "]: offset %" PRId64 " has held its commit back for %" PRId64
               " events; consumption paused until it is done",
               p->topic, p->partition, next, last + 1 - next);
    apply_pause_locked(rt);
}

static void drop_part_locked(struct of_stage_rt *rt, part_track *p)
{
    if (p->wide) {
        p->wide = 0;
        rt->wide_parts--;
        apply_pause_locked(rt);
    }
    free(p->topic);
    of_offtrack_free(p->tracker);
    size_t i = (size_t)(p - rt->parts);
    memmove(&rt->parts[i], &rt->parts[i + 1], (rt->n_parts - i - 1) * sizeof(*p));
    rt->n_parts--;
}

/* Under rt->mu: tells the bus whether to hand out events, from both pause reasons. */
static void apply_pause_locked(struct of_stage_rt *rt)
{
    int want = rt->paused_bp || rt->paused_brk || rt->wide_parts > 0;
    if (!rt->consumer || want == rt->consumer_paused)
        return;
    rt->consumer_paused = want;
    if (want)
        rt->runner->bus->ops->pause(rt->consumer);
    else
        rt->runner->bus->ops->resume(rt->consumer);
}

/* Under rt->mu: one event less in flight; resumes a consumer paused for backpressure. */
static void in_flight_dec_locked(struct of_stage_rt *rt)
{
    if (rt->in_flight > 0)
        rt->in_flight--;
    atomic_fetch_sub(&rt->st->stats.in_flight, 1);
    pthread_cond_broadcast(&rt->done_cv);
    if (rt->paused_bp && rt->in_flight < (uint64_t)rt->max_in_flight) {
        rt->paused_bp = 0;
        apply_pause_locked(rt);
    }
}

/* The breaker changed state (called outside its lock): an open breaker stops consumption, a
 * half-open one lets the trial events in. Never called with rt->mu held. */
static void on_breaker_change(void *opaque, of_breaker_state from, of_breaker_state to)
{
    struct of_stage_rt *rt = opaque;
    of_stage *st = rt->st;
    of_log(to == OF_BREAKER_OPEN ? OF_LVL_WARN : OF_LVL_INFO, st->pipeline_name, stage_name(st),
           "circuit breaker %s -> %s%s", of_breaker_state_name(from), of_breaker_state_name(to),
           to == OF_BREAKER_OPEN ? "; consumption paused" : "");
    atomic_store(&st->breaker_state, (int)to);
    if (st->metrics) {
        const char *const lbl[] = {"plugin", st->desc && st->desc->name ? st->desc->name : "", "to",
                                   of_breaker_state_name(to), NULL};
        of_counter_add_(of_metrics_counter_l(st->metrics, "stage_breaker_transitions",
                                             "Circuit breaker state changes, by the new state",
                                             st->pipeline_name, stage_name(st), lbl),
                        1);
    }
    pthread_mutex_lock(&rt->mu);
    rt->paused_brk = to == OF_BREAKER_OPEN;
    apply_pause_locked(rt);
    pthread_mutex_unlock(&rt->mu);
}

/* Under rt->mu: commits the partition up to the lowest offset still pending. */
static void commit_part_locked(struct of_stage_rt *rt, part_track *p)
{
    of_stage *st = rt->st;
    int64_t next = of_offtrack_committable(p->tracker);
    if (next > p->committed) {
        if (rt->runner->bus->ops->commit(rt->consumer, p->topic, p->partition, next) == 0)
            p->committed = next;
        else
            of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st),
                   "commit of %s[%" PRId32 "] at %" PRId64 " failed; retried with the next",
                   p->topic, p->partition, next);
    }
    update_window_locked(rt, p);
}

/* The event is finished (processed, published, or dead-lettered): mark its offset done and
 * commit its partition. */
static void finish_event(struct of_stage_rt *rt, const of_event *ev, uint64_t gen)
{
    pthread_mutex_lock(&rt->mu);
    /* A partition revoked meanwhile belongs to another consumer now: no commit for it. */
    part_track *p = live_part(rt, ev, gen);
    if (p && of_offtrack_done(p->tracker, ev->offset) == 0)
        commit_part_locked(rt, p);
    in_flight_dec_locked(rt);
    pthread_mutex_unlock(&rt->mu);
}

#define FINISH_PARTS 16 /* partitions a round's finish collects before committing them */

/* The k events of a round finished together: as finish_event for each, under one lock and with
 * one commit for each partition they are from instead of one for each event (a commit is a
 * call into the bus, for Kafka an offset store with a partition list of its own). The partition
 * trackers stay put meanwhile: they are added and dropped only under rt->mu. */
static void finish_events(struct of_stage_rt *rt, qitem *const *items, size_t k)
{
    part_track *touched[FINISH_PARTS];
    size_t nt = 0;
    pthread_mutex_lock(&rt->mu);
    for (size_t i = 0; i < k; i++) {
        part_track *p = live_part(rt, items[i]->ev, items[i]->gen);
        if (p && of_offtrack_done(p->tracker, items[i]->ev->offset) == 0) {
            size_t j = 0;
            while (j < nt && touched[j] != p)
                j++;
            if (j == nt && nt == FINISH_PARTS) {
                for (j = 0; j < nt; j++)
                    commit_part_locked(rt, touched[j]);
                nt = j = 0;
            }
            if (j == nt)
                touched[nt++] = p;
        }
        in_flight_dec_locked(rt);
    }
    for (size_t j = 0; j < nt; j++)
        commit_part_locked(rt, touched[j]);
    pthread_mutex_unlock(&rt->mu);
}

/* Gives an event up without committing it (the drain timed out). */
static void abandon_event(struct of_stage_rt *rt, const of_event *ev)
{
    of_stage *st = rt->st;
    of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st),
           "drain timed out: event %s[%" PRId32 "]@%" PRId64 " abandoned uncommitted", ev->topic,
           ev->partition, ev->offset);
    pthread_mutex_lock(&rt->mu);
    in_flight_dec_locked(rt);
    pthread_mutex_unlock(&rt->mu);
    stat_add(&st->stats.abandoned, st->m_abandoned, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Publishing
 * ------------------------------------------------------------------------------------------- */

typedef struct delivery {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    int failed;
    char err[256];
} delivery;

static void delivery_cb(void *opaque, int err, const char *errstr)
{
    delivery *d = opaque;
    pthread_mutex_lock(&d->mu);
    if (err && !d->failed) {
        d->failed = 1;
        snprintf(d->err, sizeof(d->err), "%s", errstr ? errstr : "delivery failed");
    }
    d->pending--;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static int delivery_init(delivery *d)
{
    memset(d, 0, sizeof(*d));
    if (pthread_mutex_init(&d->mu, NULL) != 0)
        return -1;
    if (pthread_cond_init(&d->cv, NULL) != 0) {
        pthread_mutex_destroy(&d->mu);
        return -1;
    }
    return 0;
}

static void delivery_produce(of_bus *bus, delivery *d, const char *topic, const of_event *ev)
{
    char err[256] = "";
    pthread_mutex_lock(&d->mu);
    d->pending++;
    pthread_mutex_unlock(&d->mu);
    if (bus->ops->produce(bus, topic, ev, delivery_cb, d, err, sizeof(err)) != 0) {
        pthread_mutex_lock(&d->mu);
        d->pending--;
        if (!d->failed) {
            d->failed = 1;
            snprintf(d->err, sizeof(d->err), "%s", err[0] ? err : "produce refused");
        }
        pthread_mutex_unlock(&d->mu);
    }
}

/* Waits for every callback; 0 when all were delivered, else -1 with the first error. */
static int delivery_wait(delivery *d, char *errstr, size_t errstr_size)
{
    pthread_mutex_lock(&d->mu);
    while (d->pending > 0)
        pthread_cond_wait(&d->cv, &d->mu);
    int failed = d->failed;
    if (failed)
        of_seterr(errstr, errstr_size, "%s", d->err);
    pthread_mutex_unlock(&d->mu);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    return failed ? -1 : 0;
}

/* Publishes what n calls emitted in one round (every produce, then one wait for the acks). */
static int publish_emitted(struct of_stage_rt *rt, const of_call *calls, size_t n, char *errstr,
                           size_t errstr_size)
{
    delivery d;
    if (delivery_init(&d) != 0) {
        of_seterr(errstr, errstr_size, "out of resources");
        return -1;
    }
    for (size_t c = 0; c < n; c++)
        for (size_t i = 0; i < calls[c].n_emitted; i++)
            delivery_produce(rt->runner->bus, &d, calls[c].emitted[i].topic,
                             calls[c].emitted[i].event);
    return delivery_wait(&d, errstr, errstr_size);
}

static int publish_one(struct of_stage_rt *rt, const char *topic, const of_event *ev, char *errstr,
                       size_t errstr_size)
{
    delivery d;
    if (delivery_init(&d) != 0) {
        of_seterr(errstr, errstr_size, "out of resources");
        return -1;
    }
    delivery_produce(rt->runner->bus, &d, topic, ev);
    return delivery_wait(&d, errstr, errstr_size);
}

/* ---------------------------------------------------------------------------------------------
 * Workers
 * ------------------------------------------------------------------------------------------- */

/* Sleeps ms unless the drain gives up first; 0 after the sleep, -1 when abandoned. */
static int sleep_unless_abandoned(worker *w, int64_t ms)
{
    struct timespec until = of_mono_after_ms(ms);
    pthread_mutex_lock(&w->mu);
    while (!atomic_load(&w->rt->abandon)) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
            break;
    }
    int abandoned = atomic_load(&w->rt->abandon);
    pthread_mutex_unlock(&w->mu);
    return abandoned ? -1 : 0;
}

static of_event *make_dead_letter(const of_stage *st, const of_event *ev, int attempts,
                                  const char *reason, const char *status)
{
    of_event *dl = of_event_clone(ev);
    if (!dl)
        return NULL;
    char part[16], off[24], tries[16];
    snprintf(part, sizeof(part), "%" PRId32, ev->partition);
    snprintf(off, sizeof(off), "%" PRId64, ev->offset);
    snprintf(tries, sizeof(tries), "%d", attempts);
    const char *topic = ev->topic ? ev->topic : "";
    const char *pairs[][2] = {
        {OF_DLQ_H_TOPIC, topic},
        {OF_DLQ_H_PARTITION, part},
        {OF_DLQ_H_OFFSET, off},
        {OF_DLQ_H_STAGE, stage_name(st)},
        {OF_DLQ_H_PIPELINE, st->pipeline_name ? st->pipeline_name : ""},
        {OF_DLQ_H_ATTEMPTS, tries},
        {OF_DLQ_H_ERROR, reason},
        {OF_DLQ_H_STATUS, status},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        if (of_event_set_header(dl, pairs[i][0], pairs[i][1], strlen(pairs[i][1])) != 0) {
            of_event_free(dl);
            return NULL;
        }
    }
    return dl;
}

/* Sends the input to the stage's dead-letter topic and finishes it. A failed publication is
 * tried again (the event must not be committed unpublished) until the drain gives up. */
static void dead_letter(worker *w, const of_event *ev, uint64_t gen, int attempts,
                        const char *reason, const char *status)
{
    struct of_stage_rt *rt = w->rt;
    of_stage *st = rt->st;
    of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st),
           "event %s[%" PRId32 "]@%" PRId64 " to dead-letter topic '%s' after %d %s (%s): %s",
           ev->topic, ev->partition, ev->offset, st->dead_letter ? st->dead_letter : "(none)",
           attempts, attempts == 1 ? "try" : "tries", status, reason);
    int tries = 0;
    for (int64_t pause_ms = 100;; tries++) {
        char err[256] = "no dead-letter topic";
        of_event *dl = st->dead_letter ? make_dead_letter(st, ev, attempts, reason, status) : NULL;
        /* A dead letter the broker keeps refusing (too large, say) would stall this worker for
         * good: after a few tries it goes without its payload, which stays in the input topic
         * at the position the headers give. */
        if (dl && tries >= DLQ_WHOLE_TRIES && dl->payload_len > 0) {
            char note[512];
            snprintf(note, sizeof(note),
                     "%zu bytes dropped; the event is at the position of_dlq_topic, "
                     "of_dlq_partition and of_dlq_offset give",
                     dl->payload_len);
            of_event *slim = of_event_new(dl->key, dl->key_len, "", 0);
            for (size_t i = 0; slim && i < dl->n_headers; i++)
                if (of_event_add_header(slim, dl->headers[i].name, dl->headers[i].value,
                                        dl->headers[i].value_len) != 0) {
                    of_event_free(slim);
                    slim = NULL;
                }
            if (slim &&
                of_event_set_header(slim, OF_DLQ_H_PAYLOAD_DROPPED, note, strlen(note)) == 0) {
                of_event_free(dl);
                dl = slim;
            } else {
                of_event_free(slim);
            }
        }
        int rc = -1;
        if (dl) {
            rc = publish_one(rt, st->dead_letter, dl, err, sizeof(err));
            of_event_free(dl);
        } else if (st->dead_letter) {
            snprintf(err, sizeof(err), "out of memory");
        }
        if (rc == 0)
            break;
        of_log(OF_LVL_ERROR, st->pipeline_name, stage_name(st),
               "publishing to dead-letter topic '%s' failed: %s; trying again",
               st->dead_letter ? st->dead_letter : "(none)", err);
        if (sleep_unless_abandoned(w, pause_ms) != 0) {
            abandon_event(rt, ev);
            return;
        }
        if (pause_ms < 5000)
            pause_ms *= 2;
    }
    stat_add(&st->stats.dead_lettered, st->m_dead_lettered, 1);
    finish_event(rt, ev, gen);
}

/* The database is unavailable (or a transaction lost a deadlock): the event is not at fault, so
 * it waits without using up a try, backing off up to 5 s, until the database is back or the
 * drain gives up. 0 to try again, -1 when abandoned. */
static int db_wait(worker *w, int *waits, const char *why)
{
    struct of_stage_rt *rt = w->rt;
    of_stage *st = rt->st;
    if (*waits % 20 == 0)
        of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st),
               "database: %s; the event waits and is tried again", why);
    int64_t delay = 100LL << (*waits < 6 ? *waits : 6);
    if (delay > 5000)
        delay = 5000;
    delay = (int64_t)((double)delay * (0.8 + 0.4 * of_rand_unit()));
    (*waits)++;
    return sleep_unless_abandoned(w, delay);
}

/* After a commit the emitted events must go out (they are in the outbox): publication is tried
 * until it succeeds; if the drain gives up first, the outbox relay publishes them later. */
static int publish_committed(worker *w, const of_call *calls, size_t n, char *err, size_t err_size)
{
    struct of_stage_rt *rt = w->rt;
    for (int64_t pause_ms = 100;; pause_ms = pause_ms < 5000 ? pause_ms * 2 : 5000) {
        if (publish_emitted(rt, calls, n, err, err_size) == 0)
            return 0;
        of_log(OF_LVL_WARN, rt->st->pipeline_name, stage_name(rt->st),
               "publishing committed events failed: %s; trying again", err);
        if (sleep_unless_abandoned(w, pause_ms) != 0)
            return -1;
    }
}

/* After a failed try: dead-letters the event when it has no tries left, else waits the
 * backoff. 0 to go on with the next try, -1 when the event is settled (dead-lettered, or
 * abandoned by the drain). */
static int after_failed_try(worker *w, const of_event *ev, uint64_t gen, int attempt,
                            const char *reason)
{
    struct of_stage_rt *rt = w->rt;
    of_stage *st = rt->st;
    const of_retry_policy *policy = &st->def->retry;
    int max_attempts = policy->max_attempts >= 1 ? policy->max_attempts : 1;
    if (attempt >= max_attempts) {
        dead_letter(w, ev, gen, attempt, reason, "retries-exhausted");
        return -1;
    }
    stat_add(&st->stats.retried, st->m_retried, 1);
    int64_t delay = of_backoff_delay_ms(policy, attempt + 1, of_rand_unit());
    if (of_log_enabled(OF_LVL_DEBUG))
        of_log(OF_LVL_DEBUG, st->pipeline_name, stage_name(st),
               "event %s[%" PRId32 "]@%" PRId64 ": try %d failed (%s); next in %" PRId64 " ms",
               ev->topic, ev->partition, ev->offset, attempt, reason, delay);
    if (sleep_unless_abandoned(w, delay) != 0) {
        abandon_event(rt, ev);
        return -1;
    }
    return 0;
}

/* Runs one event to its end (processed, dead-lettered, or abandoned), in a transaction of its
 * own for a database stage, starting with try `first` (a batch may have made the first). */
static void handle_event(worker *w, const of_event *ev, uint64_t gen, int first)
{
    struct of_stage_rt *rt = w->rt;
    of_stage *st = rt->st;
    char reason[OF_REASON_MAX];
    char why[512];
    of_call call;
    int waits = 0;

    for (int attempt = first;; attempt++) {
        /* An open breaker holds the event (without using up a try) until a trial is allowed.
         * Every permit is settled by exactly one record or release below. */
        int64_t wait_ms;
        while (!of_breaker_acquire(&rt->breaker, of_mono_ms(), &wait_ms)) {
            if (sleep_unless_abandoned(w, wait_ms) != 0) {
                abandon_event(rt, ev);
                return;
            }
        }
        of_call_init(&call, st, ev, attempt);
        if (rt->db) {
            of_txr r = of_stage_tx_open(rt->db, &call, rt->group, why, sizeof(why));
            if (r == OF_TXR_DUPLICATE) {
                /* Applied before (its commit got through, its offset did not): what it emitted
                 * is in the outbox; what of that is not yet published goes out now, before the
                 * events after it, so the key's order holds. */
                of_breaker_release(&rt->breaker);
                of_call_reset(&call);
                int64_t pending;
                while ((pending = of_stage_tx_publish_pending(rt->db, rt->runner->bus, rt->group,
                                                              ev, why, sizeof(why))) < 0) {
                    if (db_wait(w, &waits, why) != 0) {
                        abandon_event(rt, ev);
                        return;
                    }
                }
                if (pending > 0)
                    of_log(OF_LVL_INFO, st->pipeline_name, stage_name(st),
                           "event %s[%" PRId32 "]@%" PRId64 " was applied before; published the "
                           "%" PRId64 " event%s it had left in the outbox",
                           ev->topic, ev->partition, ev->offset, pending, pending == 1 ? "" : "s");
                of_log(OF_LVL_DEBUG, st->pipeline_name, stage_name(st),
                       "event %s[%" PRId32 "]@%" PRId64 " was applied before; skipped", ev->topic,
                       ev->partition, ev->offset);
                finish_event(rt, ev, gen);
                return;
            }
            if (r != OF_TXR_OK) {
                of_breaker_record(&rt->breaker, of_mono_ms(), 0);
                of_call_reset(&call);
                if (db_wait(w, &waits, why) != 0) {
                    abandon_event(rt, ev);
                    return;
                }
                attempt--;
                continue;
            }
        }
        int64_t t0 = mono_us();
        of_status s = st->desc->process(st->instance, &call);
        double took = (double)(mono_us() - t0) / 1e6;
        of_histogram_observe_(st->m_latency, took);
        if (of_log_enabled(OF_LVL_DEBUG))
            of_log(OF_LVL_DEBUG, st->pipeline_name, stage_name(st),
                   "event %s[%" PRId32 "]@%" PRId64 " try %d: %s, %zu emitted (%.3f ms)", ev->topic,
                   ev->partition, ev->offset, attempt,
                   s == OF_OK       ? "ok"
                   : s == OF_RETRY  ? "retry"
                   : s == OF_REJECT ? "reject"
                                    : "?",
                   call.n_emitted, took * 1e3);
        if (s == OF_OK) {
            char err[256];
            int64_t *ids = NULL;
            size_t n_ids = 0;
            if (rt->db) {
                of_txr r = of_stage_tx_commit(&call, &ids, &n_ids, why, sizeof(why));
                if (r != OF_TXR_OK) {
                    of_breaker_record(&rt->breaker, of_mono_ms(), 0);
                    of_call_reset(&call);
                    if (r == OF_TXR_WAIT) {
                        if (db_wait(w, &waits, why) != 0) {
                            abandon_event(rt, ev);
                            return;
                        }
                        attempt--;
                        continue;
                    }
                    snprintf(reason, sizeof(reason), "database: %s", why);
                    goto failed_try;
                }
                of_fault_after_commit();
                of_histogram_observe_(st->m_tx_events, 1);
            }
            /* Before publishing: whoever acts on the events finds the cache written. */
            of_call_cache_apply(&call, 1);
            int published = (rt->db ? publish_committed(w, &call, 1, err, sizeof(err))
                                    : publish_emitted(rt, &call, 1, err, sizeof(err))) == 0;
            of_breaker_record(&rt->breaker, of_mono_ms(), published);
            if (published) {
                /* Bookkeeping only: a row left unmarked is published once more by the relay
                 * after its grace, and the inbox downstream recognises it. */
                if (n_ids && rt->runner->marker)
                    of_outbox_marker_add(rt->runner->marker, ids, n_ids);
                else if (n_ids &&
                         of_db_outbox_mark_published(rt->db, ids, n_ids, why, sizeof(why)) != 0)
                    /* The relay publishes them once more: at least once, never lost. */
                    of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st),
                           "marking outbox rows published failed: %s", why);
                free(ids);
                stat_add(&st->stats.emitted, st->m_emitted, call.n_emitted);
                stat_add(&st->stats.processed_ok, st->m_processed_ok, 1);
                of_call_reset(&call);
                finish_event(rt, ev, gen);
                return;
            }
            free(ids);
            if (rt->db) {
                /* Committed but not yet published when the drain gave up: the outbox has the
                 * events, the offset stays uncommitted, the inbox makes the redelivery a no-op. */
                of_call_reset(&call);
                abandon_event(rt, ev);
                return;
            }
            snprintf(reason, sizeof(reason), "publishing the emitted events failed: %s", err);
            of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st), "%s", reason);
        } else if (s == OF_RETRY) {
            of_breaker_record(&rt->breaker, of_mono_ms(), 0);
            snprintf(reason, sizeof(reason), "%s",
                     call.has_reason ? call.reason : "retried without a reason");
            if (rt->db && of_stage_tx_abort(&call) == OF_TXR_WAIT) {
                /* The stage gave up because the database did: not the event's fault. */
                of_call_reset(&call);
                if (db_wait(w, &waits, reason) != 0) {
                    abandon_event(rt, ev);
                    return;
                }
                attempt--;
                continue;
            }
        } else {
            /* A rejection is the event's fault, not the dependency's. */
            of_breaker_release(&rt->breaker);
            if (rt->db)
                of_stage_tx_abort(&call);
            if (s == OF_REJECT)
                snprintf(reason, sizeof(reason), "%s",
                         call.has_reason ? call.reason : "rejected without a reason");
            else
                snprintf(reason, sizeof(reason), "process() returned an invalid status %d", (int)s);
            of_call_reset(&call);
            stat_add(&st->stats.rejected, st->m_rejected, 1);
            dead_letter(w, ev, gen, attempt, reason, "rejected");
            return;
        }
    failed_try:
        of_call_reset(&call); /* what a failed try emitted is discarded */
        if (after_failed_try(w, ev, gen, attempt, reason) != 0)
            return;
    }
}

/* Every record logged while an event is handled (the plugin's too) carries its trace id and
 * key. */
static void log_context_of(const of_event *ev)
{
    const of_event_header *tp = of_event_header_get(ev, "traceparent");
    char trace[33];
    int has_trace = tp && of_traceparent_trace_id(tp->value, tp->value_len, trace) == 0;
    of_log_context_set(has_trace ? trace : NULL, ev->key, ev->key_len);
}

/* What becomes of the first event a batch stopped at. */
typedef enum batch_next {
    NEXT_ALONE,    /* handled on its own from its first try (duplicate, database trouble) */
    NEXT_RETRIED,  /* its try in the batch failed and counts: the retry policy goes on */
    NEXT_REJECTED, /* it was rejected in the batch: dead-lettered */
} batch_next;

/* Publishes and finishes the k events a batch committed; their outbox ids go to the marker. */
static void batch_settle(worker *w, qitem **items, of_call *calls, int64_t **ids, size_t k)
{
    struct of_stage_rt *rt = w->rt;
    of_stage *st = rt->st;
    char err[256], why[512];
    int published = publish_committed(w, calls, k, err, sizeof(err)) == 0;
    of_breaker_record(&rt->breaker, of_mono_ms(), published);
    for (size_t i = 0; i < k; i++) {
        if (!published) {
            /* The drain gave up: the outbox has the events, the inbox makes the redelivery of
             * the uncommitted offsets a no-op. */
            abandon_event(rt, items[i]->ev);
            continue;
        }
        size_t n = calls[i].n_emitted;
        if (n && rt->runner->marker)
            of_outbox_marker_add(rt->runner->marker, ids[i], n);
        else if (n && of_db_outbox_mark_published(rt->db, ids[i], n, why, sizeof(why)) != 0)
            of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st),
                   "marking outbox rows published failed: %s", why);
        stat_add(&st->stats.emitted, st->m_emitted, n);
        stat_add(&st->stats.processed_ok, st->m_processed_ok, 1);
    }
    if (published)
        finish_events(rt, items, k);
}

/* Records the n events of a batch in the inbox in a few multi-row statements. 1 when all were
 * new (the batch then skips the per-event inbox statement), 0 when some event was applied before
 * or the statement failed: the transaction is then begun again and the batch records each event
 * on its own (of_stage_tx_join), which finds the repeat. -1 when no transaction is left. */
static int batch_record(struct of_stage_rt *rt, of_db_tx **tx, const char *const *eids, size_t n)
{
    if (of_db_inbox_record_many(*tx, rt->group, eids, n) == (int64_t)n)
        return 1;
    char why[512];
    of_db_tx_end(*tx);
    *tx = of_db_tx_begin(rt->db, why, sizeof(why));
    return *tx ? 0 : -1;
}

/* Why an event of a batch did not go through: what becomes of it (*next) and the reason. */
static void batch_outcome(of_db_tx *tx, const of_call *call, int joined, of_status s,
                          batch_next *next, char *reason, size_t reason_size)
{
    *next = NEXT_ALONE; /* a repeat, a database error: handled alone from its first try */
    if (!joined)
        return;
    if (s == OF_RETRY) {
        /* A retry the database caused does not count (handled alone, it waits for the
         * database); any other is this event's first failed try. */
        if (of_stage_tx_failure(tx) != OF_TXR_WAIT) {
            *next = NEXT_RETRIED;
            snprintf(reason, reason_size, "%s",
                     call->has_reason ? call->reason : "retried without a reason");
        }
    } else if (s != OF_OK) {
        *next = NEXT_REJECTED;
        if (s == OF_REJECT)
            snprintf(reason, reason_size, "%s",
                     call->has_reason ? call->reason : "rejected without a reason");
        else
            snprintf(reason, reason_size, "process() returned an invalid status %d", (int)s);
    }
}

/* A round of a batch, one process() call per event: each joins the transaction and runs in
 * turn. Returns how many went through from the front; when that is less than limit, *next and
 * reason say what becomes of the event it stopped at, whose call is reset. */
static size_t run_each(worker *w, of_db_tx *tx, qitem **items, of_call *calls, size_t limit,
                       int recorded, batch_next *next, char *reason, size_t reason_size)
{
    struct of_stage_rt *rt = w->rt;
    of_stage *st = rt->st;
    char why[512];
    size_t k;
    for (k = 0; k < limit; k++) {
        const of_event *ev = items[k]->ev;
        of_call *call = &calls[k];
        of_call_init(call, st, ev, 1);
        int joined = 1;
        if (recorded) {
            call->tx = tx;
            call->tx_group = rt->group;
        } else if (of_stage_tx_join(tx, call, rt->group, why, sizeof(why)) != OF_TXR_OK) {
            joined = 0;
        }
        of_status s = OF_OK;
        if (joined) {
            log_context_of(ev);
            int64_t t0 = mono_us();
            s = st->desc->process(st->instance, call);
            double took = (double)(mono_us() - t0) / 1e6;
            of_histogram_observe_(st->m_latency, took);
            if (of_log_enabled(OF_LVL_DEBUG))
                of_log(OF_LVL_DEBUG, st->pipeline_name, stage_name(st),
                       "event %s[%" PRId32 "]@%" PRId64 " in a batch (%zu of %zu): %s, %zu "
                       "emitted (%.3f ms)",
                       ev->topic, ev->partition, ev->offset, k + 1, limit,
                       s == OF_OK       ? "ok"
                       : s == OF_RETRY  ? "retry"
                       : s == OF_REJECT ? "reject"
                                        : "?",
                       call->n_emitted, took * 1e3);
            of_log_context_clear();
            if (s == OF_OK)
                continue; /* its outbox rows are written with the others' before the commit */
        }
        batch_outcome(tx, call, joined, s, next, reason, reason_size);
        of_call_reset(call);
        call->tx = NULL;
        break;
    }
    return k;
}

/* The arrays a set-based round hands to process_batch. */
typedef struct batch_set {
    of_call *calls;
    of_call **ptrs;
    of_status *status;
} batch_set;

/* A round of a batch through the stage's process_batch (ABI 1.5): every event joins the
 * transaction first (up to the first repeat), then one call runs them all, so the stage can do
 * its reads and writes for the set at once. Same result as run_each. */
static size_t run_set(worker *w, of_db_tx *tx, qitem **items, size_t limit, int recorded,
                      const batch_set *set, batch_next *next, char *reason, size_t reason_size)
{
    struct of_stage_rt *rt = w->rt;
    of_stage *st = rt->st;
    char why[512];
    of_call *calls = set->calls;
    size_t j = 0; /* calls joined */
    for (; j < limit; j++) {
        of_call_init(&calls[j], st, items[j]->ev, 1);
        if (recorded) {
            calls[j].tx = tx;
            calls[j].tx_group = rt->group;
        } else if (of_stage_tx_join(tx, &calls[j], rt->group, why, sizeof(why)) != OF_TXR_OK) {
            break; /* a repeat (or the database): the round stops before it */
        }
    }
    int64_t t0 = mono_us();
    int skipped = j > 0 && j < limit;
    if (skipped) {
        /* A repeat stops the round at j, and the calls before it run again without it: running
         * them here would be work the rollback throws away. */
        for (size_t i = 0; i < j; i++)
            set->status[i] = OF_OK;
    } else if (j == 1) {
        log_context_of(items[0]->ev);
        set->status[0] = st->desc->process(st->instance, &calls[0]);
        of_log_context_clear();
    } else if (j > 1) {
        for (size_t i = 0; i < j; i++) {
            set->ptrs[i] = &calls[i];
            set->status[i] = OF_RETRY;
        }
        of_descriptor_process_batch(st->desc)(st->instance, set->ptrs, j, set->status);
    }
    double took = (double)(mono_us() - t0) / 1e6;
    size_t k = 0;
    while (k < j && set->status[k] == OF_OK)
        k++;
    /* The stage's time, shared equally: the histogram stays per event. */
    for (size_t i = 0; !skipped && i < j; i++)
        of_histogram_observe_(st->m_latency, took / (double)j);
    if (of_log_enabled(OF_LVL_DEBUG))
        of_log(OF_LVL_DEBUG, st->pipeline_name, stage_name(st),
               "a set of %zu events (%zu joined) in one process_batch: the first %zu ok (%.3f ms)",
               limit, j, k, took * 1e3);
    if (k < limit) {
        int joined = k < j;
        if (joined && j > 1 && of_db_tx_error(tx, NULL) != OF_DB_OK) {
            /* The set's last statement failed and the stage stopped there: any of the events
             * may have caused it (a duplicate key in one row fails a whole multi-row INSERT),
             * so the answer of call k is not its own. Each goes alone from its first try,
             * where a real culprit answers for itself. */
            *next = NEXT_ALONE;
        } else {
            batch_outcome(tx, &calls[k], joined, joined ? set->status[k] : OF_OK, next, reason,
                          reason_size);
        }
        /* Every call from k on was begun (the one that did not join too): none goes on here. */
        size_t begun = j < limit ? j + 1 : j;
        for (size_t i = k; i < begun; i++) {
            of_call_reset(&calls[i]);
            calls[i].tx = NULL;
        }
    }
    return k;
}

/* One transaction for up to n queued events of a database stage: the events' inbox records (one
 * multi-row statement when none is a repeat), each event's process() (or, for a stage that has
 * it, one process_batch for all of them: run_set), the outbox rows of all of
 * them (a few multi-row statements), one commit (one fsync), one round of publishing and the n
 * offsets. No savepoints: an event failing is rare, and a savepoint per event was a round trip
 * each. When event k does not go through (a retry, a rejection, a repeat, a database error), the
 * whole transaction rolls back and events 0..k-1 run again in a new one (process() may always run
 * again after a rollback); k is handed back through *next with what its try said, and the ones
 * after it come in a later batch, so a key's events still apply in order. Returns how many events
 * it settled from the front (0 when nothing was committed: *next then says what becomes of the
 * first). */
static size_t batch_try(worker *w, qitem **items, size_t n, batch_next *next, char *reason,
                        size_t reason_size)
{
    struct of_stage_rt *rt = w->rt;
    of_stage *st = rt->st;
    char why[512];
    *next = NEXT_ALONE;
    int64_t wait_ms;
    if (!of_breaker_acquire(&rt->breaker, of_mono_ms(), &wait_ms))
        return 0; /* handled alone, which waits for the breaker */
    of_call *calls = calloc(n, sizeof(*calls));
    int64_t **ids = calloc(n, sizeof(*ids));
    char(*idbuf)[256] = calloc(n, sizeof(*idbuf));
    const char **eids = calloc(n, sizeof(*eids));
    int pb = of_descriptor_process_batch(st->desc) != NULL;
    batch_set sets = {calls, pb ? calloc(n, sizeof(of_call *)) : NULL,
                      pb ? calloc(n, sizeof(of_status)) : NULL};
    size_t limit = 0, k = 0; /* events this round runs; how many went through */
    int committed = 0;
    if (calls && ids && idbuf && eids && (!pb || (sets.ptrs && sets.status))) {
        for (size_t i = 0; i < n; i++) {
            of_stage_tx_event_id(items[i]->ev, idbuf[i], sizeof(idbuf[i]));
            eids[i] = idbuf[i];
        }
        limit = n;
    }
    int64_t at[6] = {0}; /* the last round's phase boundaries (OF_ROUND_*) */
    while (limit > 0) {
        at[0] = mono_us();
        of_db_tx *tx = of_db_tx_begin(rt->db, why, sizeof(why));
        int recorded = tx ? batch_record(rt, &tx, eids, limit) : -1;
        at[1] = mono_us();
        if (recorded < 0) {
            of_db_tx_end(tx);
            *next = NEXT_ALONE;
            k = 0;
            break;
        }
        k = pb && limit > 1
                ? run_set(w, tx, items, limit, recorded, &sets, next, reason, reason_size)
                : run_each(w, tx, items, calls, limit, recorded, next, reason, reason_size);
        at[2] = mono_us();
        int doomed = of_db_tx_doomed(tx);
        if (!doomed && k > 0 && k < limit) {
            /* Event k did not go through, and its writes cannot be undone alone: none of this
             * round commits, and the events before it run again without it. */
            if (of_log_enabled(OF_LVL_DEBUG))
                of_log(OF_LVL_DEBUG, st->pipeline_name, stage_name(st),
                       "a batch of %zu events stopped at event %zu; the %zu before it run again",
                       limit, k + 1, k);
            of_db_tx_end(tx);
            for (size_t i = 0; i < k; i++)
                of_call_reset(&calls[i]);
            limit = k;
            continue;
        }
        /* The batch's outbox rows in a few multi-row statements; when they cannot be written,
         * nothing commits. */
        if (!doomed && k > 0 &&
            of_stage_tx_write_outbox_calls(calls, k, ids, why, sizeof(why)) != OF_TXR_OK) {
            of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st),
                   "a batch of %zu events: %s; each is tried alone", k, why);
            doomed = 1;
        }
        at[3] = mono_us();
        if (doomed) {
            /* A deadlock or a lost connection took the whole batch: each event goes alone. */
            *next = NEXT_ALONE;
        } else if (k > 0) {
            committed = of_db_tx_commit(tx) == 0;
            if (!committed) {
                const char *msg = NULL;
                of_db_tx_error(tx, &msg);
                of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st),
                       "committing a batch of %zu events failed (%s); each is tried alone", k,
                       msg ? msg : "?");
                *next = NEXT_ALONE;
            }
        }
        of_db_tx_end(tx);
        at[4] = mono_us();
        for (size_t i = 0; i < k; i++)
            calls[i].tx = NULL;
        break;
    }
    size_t filled = k;
    if (committed) {
        of_fault_after_commit();
        of_histogram_observe_(st->m_tx_events, (double)k);
        of_call_cache_apply(calls, k);
        batch_settle(w, items, calls, ids, k);
        at[5] = mono_us();
        /* A round that stopped at a failing event and ran again counts its last run. */
        for (int i = 0; i < 5; i++)
            of_histogram_observe_(st->m_round[i], (double)(at[i + 1] - at[i]) / 1e6);
    } else {
        k = 0;
        if (*next == NEXT_RETRIED)
            of_breaker_record(&rt->breaker, of_mono_ms(), 0);
        else
            of_breaker_release(&rt->breaker);
    }
    for (size_t i = 0; i < filled; i++) {
        of_call_reset(&calls[i]);
        free(ids[i]);
    }
    free(calls);
    free(ids);
    free(idbuf);
    free(eids);
    free(sets.ptrs);
    free(sets.status);
    return k;
}

/* The events a worker took at once, in queue order: batched while there are several, one alone
 * as without `batch`. */
static void handle_taken(worker *w, qitem **items, size_t n)
{
    struct of_stage_rt *rt = w->rt;
    of_stage *st = rt->st;
    char reason[OF_REASON_MAX];
    size_t i = 0;
    while (i < n) {
        if (atomic_load(&rt->abandon)) {
            abandon_event(rt, items[i++]->ev);
            continue;
        }
        batch_next next = NEXT_ALONE;
        if (n - i > 1) {
            i += batch_try(w, items + i, n - i, &next, reason, sizeof(reason));
            if (i >= n)
                break;
        }
        const of_event *ev = items[i]->ev;
        uint64_t gen = items[i]->gen;
        log_context_of(ev);
        if (next == NEXT_ALONE) {
            handle_event(w, ev, gen, 1);
        } else if (next == NEXT_RETRIED) {
            if (after_failed_try(w, ev, gen, 1, reason) == 0)
                handle_event(w, ev, gen, 2);
        } else {
            stat_add(&st->stats.rejected, st->m_rejected, 1);
            dead_letter(w, ev, gen, 1, reason, "rejected");
        }
        of_log_context_clear();
        i++;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    struct of_stage_rt *rt = w->rt;
    qitem *one[1];
    size_t cap = (size_t)rt->batch;
    qitem **taken = cap > 1 ? calloc(cap, sizeof(*taken)) : NULL;
    if (!taken) {
        taken = one;
        cap = 1;
    }
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&w->mu);
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        while (w->head && n < cap) {
            taken[n++] = w->head;
            w->head = w->head->next;
        }
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        if (n == 0)
            break;
        /* Events of a partition revoked meanwhile are dropped: its new owner reads them again
         * from the last commit, and processing them here too would only duplicate the work. */
        size_t live = 0;
        for (size_t i = 0; i < n; i++) {
            pthread_mutex_lock(&rt->mu);
            int revoked = live_part(rt, taken[i]->ev, taken[i]->gen) == NULL;
            if (revoked && !atomic_load(&rt->abandon))
                in_flight_dec_locked(rt);
            pthread_mutex_unlock(&rt->mu);
            if (atomic_load(&rt->abandon))
                abandon_event(rt, taken[i]->ev);
            else if (!revoked) {
                taken[live++] = taken[i];
                continue;
            }
            of_event_free(taken[i]->ev);
            free(taken[i]);
        }
        handle_taken(w, taken, live);
        for (size_t i = 0; i < live; i++) {
            of_event_free(taken[i]->ev);
            free(taken[i]);
        }
    }
    if (taken != one)
        free(taken);
    of_runner *r = rt->runner;
    pthread_mutex_lock(&r->mu);
    r->workers_running--;
    rt->workers_running--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The consumer
 * ------------------------------------------------------------------------------------------- */

/* A rebalance takes a partition away (called inside poll(), on the consumer thread, which is
 * the only one that adds trackers). Unless the partition is already lost, its in-flight events
 * get REVOKE_WAIT_MS to finish and commit; then its tracker goes, so what is still queued is
 * skipped, what still finishes does not commit, and a later assignment starts afresh. */
static void on_revoked(void *opaque, const char *topic, int32_t partition, int lost)
{
    struct of_stage_rt *rt = opaque;
    of_stage *st = rt->st;
    pthread_mutex_lock(&rt->mu);
    part_track *p = find_part(rt, topic, partition);
    if (p && !lost) {
        /* One deadline for all the partitions of one revocation (the hook is called once per
         * partition): N partitions must not wait N times as long. */
        int64_t now = of_mono_ms();
        if (now > rt->revoke_deadline_ms + 1000)
            rt->revoke_deadline_ms = now + REVOKE_WAIT_MS;
        struct timespec deadline = of_mono_after_ms(rt->revoke_deadline_ms - now);
        while (of_offtrack_pending(p->tracker) > 0 && !atomic_load(&rt->abandon)) {
            if (pthread_cond_timedwait(&rt->done_cv, &rt->mu, &deadline) == ETIMEDOUT)
                break;
            p = find_part(rt, topic, partition);
            if (!p)
                break;
        }
    }
    if (p) {
        size_t pending = of_offtrack_pending(p->tracker);
        if (pending)
            of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st),
                   "partition %s[%" PRId32 "] %s with %zu event%s unfinished; left uncommitted "
                   "for its next owner",
                   topic, partition, lost ? "lost" : "revoked", pending, pending == 1 ? "" : "s");
        drop_part_locked(rt, p);
    }
    pthread_mutex_unlock(&rt->mu);
}

static int worker_for(const struct of_stage_rt *rt, const of_event *ev)
{
    uint32_t h = ev->key ? (of_murmur2(ev->key, ev->key_len) & 0x7fffffffu)
                         : (uint32_t)(ev->partition < 0 ? 0 : ev->partition);
    return (int)(h % (uint32_t)rt->n_workers);
}

/* Hands a polled event to its worker; takes ownership of ev. */
static void dispatch(struct of_stage_rt *rt, of_event *ev)
{
    of_stage *st = rt->st;
    qitem *it = malloc(sizeof(*it));
    for (;;) {
        pthread_mutex_lock(&rt->mu);
        part_track *p = it ? find_or_add_part(rt, ev->topic, ev->partition) : NULL;
        if (p && ev->offset <= of_offtrack_last(p->tracker)) {
            pthread_mutex_unlock(&rt->mu);
            of_log(OF_LVL_WARN, st->pipeline_name, stage_name(st),
                   "event %s[%" PRId32 "]@%" PRId64 " was already dispatched; skipped", ev->topic,
                   ev->partition, ev->offset);
            free(it);
            of_event_free(ev);
            return;
        }
        if (p && of_offtrack_dispatch(p->tracker, ev->offset) == 0) {
            it->gen = p->gen;
            rt->in_flight++;
            atomic_fetch_add(&st->stats.in_flight, 1);
            update_window_locked(rt, p);
            pthread_mutex_unlock(&rt->mu);
            break;
        }
        pthread_mutex_unlock(&rt->mu);
        /* Out of memory: hold on to the event (it must not be skipped) and try again. */
        of_log(OF_LVL_ERROR, st->pipeline_name, stage_name(st),
               "out of memory dispatching an event; trying again");
        if (atomic_load(&rt->stopping)) {
            free(it);
            of_event_free(ev);
            return;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        if (!it)
            it = malloc(sizeof(*it));
    }
    stat_add(&st->stats.received, st->m_received, 1);
    /* A type the stage does not act on: done here, without a worker, a transaction or a try. */
    const of_event_header *type = of_event_header_get(ev, "ce_type");
    if (type && !of_descriptor_accepts_type(st->desc, type->value, type->value_len)) {
        stat_add(&st->stats.skipped, st->m_skipped, 1);
        finish_event(rt, ev, it->gen);
        free(it);
        of_event_free(ev);
        return;
    }
    it->ev = ev;
    it->next = NULL;
    worker *w = &rt->workers[worker_for(rt, ev)];
    pthread_mutex_lock(&w->mu);
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Backpressure. At max_in_flight the consumer thread stops taking events and waits for one to
 * finish; the bus's bounded prefetch fills meanwhile and its fetching stops, and the next event
 * is at hand the moment there is room. Pausing the bus instead would cost a fetch for every
 * round at the limit: librdkafka's pause drops what it prefetched. It pauses only when nothing
 * finished for BP_PAUSE_AFTER_MS, because a consumer that is not polled does not serve its
 * group's rebalances either, and a stuck stage must still hand its partitions over; the pause
 * ends below the limit (in_flight_dec_locked). */
static void wait_for_room(struct of_stage_rt *rt)
{
    pthread_mutex_lock(&rt->mu);
    int64_t deadline = of_mono_ms() + BP_PAUSE_AFTER_MS;
    while (!rt->paused_bp && rt->in_flight >= (uint64_t)rt->max_in_flight &&
           !atomic_load(&rt->stopping)) {
        int64_t now = of_mono_ms();
        if (now >= deadline) {
            rt->paused_bp = 1;
            apply_pause_locked(rt);
            break;
        }
        /* A slice at a time, so a stop is seen as soon as by a poll. */
        int64_t until = deadline < now + POLL_TIMEOUT_MS ? deadline : now + POLL_TIMEOUT_MS;
        struct timespec ts = of_mono_after_ms(until - now);
        pthread_cond_timedwait(&rt->done_cv, &rt->mu, &ts);
    }
    pthread_mutex_unlock(&rt->mu);
}

static void *consumer_main(void *arg)
{
    struct of_stage_rt *rt = arg;
    of_stage *st = rt->st;
    const of_bus_ops *ops = rt->runner->bus->ops;
    int errors = 0;
    while (!atomic_load(&rt->stopping)) {
        /* An open breaker with idle workers turns half-open only when someone asks; the paused
         * consumer asks on every round, so consumption resumes for the trial events. */
        of_breaker_get_state(&rt->breaker, of_mono_ms());
        wait_for_room(rt);
        of_event *ev = NULL;
        int rc = ops->poll(rt->consumer, &ev, POLL_TIMEOUT_MS);
        if (rc < 0) {
            if (errors++ % 100 == 0)
                of_log(OF_LVL_ERROR, st->pipeline_name, stage_name(st),
                       "polling the input topics failed; trying again");
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (rc == 0 || !ev)
            continue;
        if (atomic_load(&rt->stopping)) {
            /* Not dispatched, not committed: read again after a restart. */
            of_event_free(ev);
            break;
        }
        dispatch(rt, ev);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Runner
 * ------------------------------------------------------------------------------------------- */

of_runner *of_runner_new(of_bus *bus, of_metrics *metrics)
{
    if (!bus)
        return NULL;
    of_runner *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->bus = bus;
    r->metrics = metrics;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return NULL;
    }
    if (of_cond_init_monotonic(&r->cv) != 0) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return NULL;
    }
    if (pthread_rwlock_init(&r->stages_mu, NULL) != 0) {
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return NULL;
    }
    return r;
}

static void shutdown_stage(of_stage *st)
{
    if (st->initialized && st->desc->shutdown)
        st->desc->shutdown(st->instance);
    st->initialized = 0;
    st->instance = NULL;
}

static void stage_free(of_stage *st)
{
    if (!st)
        return;
    of_stage_cleanup(st);
    free(st);
}

static int ensure(of_runner *r, const char *topic, int partitions, int replication, char *errstr,
                  size_t errstr_size)
{
    char why[256] = "";
    if (r->bus->ops->ensure_topic(r->bus, topic, partitions, replication, why, sizeof(why)) != 0) {
        of_seterr(errstr, errstr_size, "topic '%s': %s", topic, why);
        return -1;
    }
    return 0;
}

void of_runner_set_db(of_runner *r, of_db_pool *db)
{
    r->db = db;
}

void of_runner_set_outbox_marker(of_runner *r, of_outbox_marker *marker)
{
    r->marker = marker;
}

void of_runner_set_cache(of_runner *r, struct of_cache_pool *cache)
{
    r->cache = cache;
}

void of_runner_set_ws_hub(of_runner *r, struct of_ws_hub *hub)
{
    r->ws_hub = hub;
}

static int stage_start(of_runner *r, of_stage *st, char *errstr, size_t errstr_size);
static size_t stop_stages(of_runner *r, of_stage *const *list, size_t n, int64_t timeout_ms);

int of_runner_prepare(of_runner *r, const of_pipeline *p, const unsigned char *want,
                      of_stage ***out, size_t *n_out, char *errstr, size_t errstr_size)
{
    *out = NULL;
    *n_out = 0;
    if (!r || !p || !p->name) {
        of_seterr(errstr, errstr_size, "add_pipeline: no pipeline");
        return -1;
    }
    if (r->drained) {
        of_seterr(errstr, errstr_size, "pipeline '%s': the runner is drained", p->name);
        return -1;
    }
    for (size_t i = 0; i < p->n_topics; i++) {
        const of_topic_def *t = &p->topics[i];
        if (ensure(r, t->name, t->partitions > 0 ? t->partitions : DEFAULT_PARTITIONS,
                   t->replication > 0 ? t->replication : 1, errstr, errstr_size) != 0)
            return -1;
    }
    /* Topics a hand-built pipeline uses without declaring them (a validated pipeline declares
     * every one, dead-letter topics included). */
    for (size_t i = 0; i < p->n_stages; i++) {
        const of_stage_def *d = &p->stages[i];
        for (size_t j = 0; j < d->n_inputs; j++)
            if (!of_pipeline_topic(p, d->inputs[j]) &&
                ensure(r, d->inputs[j], DEFAULT_PARTITIONS, 1, errstr, errstr_size) != 0)
                return -1;
        for (size_t j = 0; j < d->n_outputs; j++)
            if (d->outputs[j].topic && !of_pipeline_topic(p, d->outputs[j].topic) &&
                ensure(r, d->outputs[j].topic, DEFAULT_PARTITIONS, 1, errstr, errstr_size) != 0)
                return -1;
        if (d->dead_letter && !of_pipeline_topic(p, d->dead_letter) &&
            ensure(r, d->dead_letter, 1, 1, errstr, errstr_size) != 0)
            return -1;
    }

    of_stage **made = calloc(p->n_stages ? p->n_stages : 1, sizeof(*made));
    if (!made) {
        of_seterr(errstr, errstr_size, "pipeline '%s': out of memory", p->name);
        return -1;
    }
    size_t n_made = 0;
    for (size_t i = 0; i < p->n_stages; i++) {
        const of_stage_def *d = &p->stages[i];
        const char *plugin = d->plugin_name ? d->plugin_name : "?";
        if (want && !want[i])
            continue;
        if (!d->plugin || !d->plugin->desc || !d->plugin->desc->process) {
            of_seterr(errstr, errstr_size, "stage '%s' (plugin %s): the plugin is not loaded",
                      d->name, plugin);
            goto rollback;
        }
        if (of_descriptor_uses_db(d->plugin->desc) && !r->db) {
            of_seterr(errstr, errstr_size,
                      "stage '%s' (plugin %s) uses the database, and the host configuration has "
                      "no mysql: section",
                      d->name, plugin);
            goto rollback;
        }
        of_stage *st = calloc(1, sizeof(*st));
        if (!st || of_stage_setup(st, p->name, d, d->plugin->desc, r->metrics) != 0) {
            free(st);
            of_seterr(errstr, errstr_size, "stage '%s' (plugin %s): out of memory", d->name,
                      plugin);
            goto rollback;
        }
        st->runner = r;
        st->cache = r->cache;
        st->ws_hub = r->ws_hub;
        if (st->dead_letter && !of_pipeline_topic(p, st->dead_letter) &&
            ensure(r, st->dead_letter, 1, 1, errstr, errstr_size) != 0) {
            stage_free(st);
            goto rollback;
        }
        if (st->desc->init) {
            char why[512] = "";
            void *instance = NULL;
            int rc = st->desc->init(st, of_host_api_get(), d->config, &instance, why, sizeof(why));
            why[sizeof(why) - 1] = '\0';
            if (rc != 0) {
                of_seterr(errstr, errstr_size, "stage '%s' (plugin %s): init failed: %s", d->name,
                          plugin, why[0] ? why : "no reason given");
                stage_free(st);
                goto rollback;
            }
            st->instance = instance;
        }
        st->initialized = 1;
        made[n_made++] = st;
    }
    *out = made;
    *n_out = n_made;
    return 0;
rollback:
    of_runner_discard(made, n_made);
    return -1;
}

void of_runner_discard(of_stage **stages, size_t n)
{
    for (size_t i = n; i > 0; i--) {
        shutdown_stage(stages[i - 1]);
        stage_free(stages[i - 1]);
    }
    free(stages);
}

int of_runner_adopt(of_runner *r, of_stage **stages, size_t n, char *errstr, size_t errstr_size)
{
    pthread_rwlock_wrlock(&r->stages_mu);
    if (r->n_stages + n > r->cap_stages) {
        size_t cap = r->cap_stages ? r->cap_stages : 8;
        while (cap < r->n_stages + n)
            cap *= 2;
        of_stage **grown = realloc(r->stages, cap * sizeof(*grown));
        if (!grown) {
            pthread_rwlock_unlock(&r->stages_mu);
            of_seterr(errstr, errstr_size, "out of memory");
            of_runner_discard(stages, n);
            return -1;
        }
        r->stages = grown;
        r->cap_stages = cap;
    }
    size_t first = r->n_stages;
    for (size_t i = 0; i < n; i++)
        r->stages[r->n_stages++] = stages[i];
    pthread_rwlock_unlock(&r->stages_mu);
    free(stages);
    if (!r->started)
        return 0;
    /* A running runner (a reload): the stages start now. One that cannot start is taken out
     * again, and so are those after it. */
    for (size_t i = first; i < r->n_stages; i++) {
        if (stage_start(r, r->stages[i], errstr, errstr_size) != 0) {
            of_log(OF_LVL_ERROR, r->stages[i]->pipeline_name, r->stages[i]->def->name,
                   "cannot start: %s", errstr ? errstr : "");
            size_t n_failed = r->n_stages - i;
            of_stage **failed = malloc(n_failed * sizeof(*failed));
            if (failed)
                memcpy(failed, r->stages + i, n_failed * sizeof(*failed));
            for (size_t k = 0; failed && k < n_failed; k++)
                of_runner_retire(r, failed[k], 0);
            free(failed);
            return -1;
        }
    }
    return 0;
}

int of_runner_add_pipeline(of_runner *r, const of_pipeline *p, char *errstr, size_t errstr_size)
{
    if (r && (r->started || r->drained)) {
        of_seterr(errstr, errstr_size, "pipeline '%s': the runner is already started",
                  p && p->name ? p->name : "?");
        return -1;
    }
    of_stage **made;
    size_t n;
    if (of_runner_prepare(r, p, NULL, &made, &n, errstr, errstr_size) != 0)
        return -1;
    return of_runner_adopt(r, made, n, errstr, errstr_size);
}

size_t of_runner_retire(of_runner *r, of_stage *st, int64_t timeout_ms)
{
    pthread_rwlock_wrlock(&r->stages_mu);
    int found = 0;
    for (size_t i = 0; i < r->n_stages && !found; i++) {
        if (r->stages[i] == st) {
            memmove(r->stages + i, r->stages + i + 1, (r->n_stages - i - 1) * sizeof(*r->stages));
            r->n_stages--;
            found = 1;
        }
    }
    pthread_rwlock_unlock(&r->stages_mu);
    if (!found)
        return 0;
    size_t abandoned = st->rt ? stop_stages(r, &st, 1, timeout_ms) : 0;
    shutdown_stage(st);
    stage_free(st);
    return abandoned;
}

static void rt_free(struct of_stage_rt *rt)
{
    if (!rt)
        return;
    for (int i = 0; i < rt->n_workers; i++) {
        worker *w = &rt->workers[i];
        for (qitem *it = w->head; it;) {
            qitem *next = it->next;
            of_event_free(it->ev);
            free(it);
            it = next;
        }
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
    free(rt->workers);
    for (size_t i = 0; i < rt->n_parts; i++) {
        free(rt->parts[i].topic);
        of_offtrack_free(rt->parts[i].tracker);
    }
    free(rt->parts);
    if (rt->breaker_ok)
        of_breaker_destroy(&rt->breaker);
    pthread_cond_destroy(&rt->done_cv);
    pthread_mutex_destroy(&rt->mu);
    free(rt);
}

/* Creates the runtime of a stage and starts its threads. */
static int stage_start(of_runner *r, of_stage *st, char *errstr, size_t errstr_size)
{
    const of_stage_def *d = st->def;
    struct of_stage_rt *rt = calloc(1, sizeof(*rt));
    if (!rt || pthread_mutex_init(&rt->mu, NULL) != 0) {
        free(rt);
        of_seterr(errstr, errstr_size, "stage '%s': out of memory", d->name);
        return -1;
    }
    if (of_cond_init_monotonic(&rt->done_cv) != 0) {
        pthread_mutex_destroy(&rt->mu);
        free(rt);
        of_seterr(errstr, errstr_size, "stage '%s': out of resources", d->name);
        return -1;
    }
    rt->runner = r;
    rt->st = st;
    if (of_breaker_init_notify(&rt->breaker, &d->breaker, on_breaker_change, rt) != 0) {
        pthread_cond_destroy(&rt->done_cv);
        pthread_mutex_destroy(&rt->mu);
        free(rt);
        of_seterr(errstr, errstr_size, "stage '%s': bad circuit breaker policy", d->name);
        return -1;
    }
    rt->breaker_ok = 1;
    /* Every transition series exists from the start, at 0, so a rate over it is defined before
     * the first trip (Prometheus treats a missing series as no data, not as zero). */
    static const of_breaker_state states[] = {OF_BREAKER_CLOSED, OF_BREAKER_HALF_OPEN,
                                              OF_BREAKER_OPEN};
    for (size_t k = 0; st->metrics && k < sizeof(states) / sizeof(states[0]); k++) {
        const char *const lbl[] = {"plugin", st->desc && st->desc->name ? st->desc->name : "", "to",
                                   of_breaker_state_name(states[k]), NULL};
        (void)of_metrics_counter_l(st->metrics, "stage_breaker_transitions",
                                   "Circuit breaker state changes, by the new state",
                                   st->pipeline_name, stage_name(st), lbl);
    }
    if (of_stage_uses_db(st))
        rt->db = r->db;
    rt->max_in_flight = d->max_in_flight > 0 ? d->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    rt->batch = rt->db && d->batch > 1 ? d->batch : 1;
    int n = d->concurrency > 0 ? d->concurrency : 1;
    rt->workers = calloc((size_t)n, sizeof(*rt->workers));
    if (!rt->workers) {
        rt_free(rt);
        of_seterr(errstr, errstr_size, "stage '%s': out of memory", d->name);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        worker *w = &rt->workers[i];
        w->rt = rt;
        if (pthread_mutex_init(&w->mu, NULL) != 0)
            break;
        if (of_cond_init_monotonic(&w->cv) != 0) {
            pthread_mutex_destroy(&w->mu);
            break;
        }
        rt->n_workers++;
    }
    st->rt = rt;
    if (rt->n_workers < n) {
        of_seterr(errstr, errstr_size, "stage '%s': out of resources", d->name);
        return -1;
    }
    if (d->n_inputs > 0) {
        char group_buf[512];
        const char *group = d->consumer_group;
        if (!group) {
            snprintf(group_buf, sizeof(group_buf), "orderflow.%s.%s", st->pipeline_name, d->name);
            group = group_buf;
        }
        char why[256] = "";
        snprintf(rt->group, sizeof(rt->group), "%s", group);
        of_consumer_hooks hooks = {.opaque = rt, .revoked = on_revoked};
        rt->consumer = r->bus->ops->subscribe(r->bus, group, (const char *const *)d->inputs,
                                              d->n_inputs, &hooks, why, sizeof(why));
        if (!rt->consumer) {
            of_seterr(errstr, errstr_size, "stage '%s': subscribing failed: %s", d->name, why);
            return -1;
        }
    }
    for (int i = 0; i < rt->n_workers; i++) {
        worker *w = &rt->workers[i];
        pthread_mutex_lock(&r->mu);
        r->workers_running++;
        rt->workers_running++;
        pthread_mutex_unlock(&r->mu);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pthread_mutex_lock(&r->mu);
            r->workers_running--;
            rt->workers_running--;
            pthread_mutex_unlock(&r->mu);
            of_seterr(errstr, errstr_size, "stage '%s': cannot start a worker thread", d->name);
            return -1;
        }
        w->started = 1;
        char idx[16];
        snprintf(idx, sizeof(idx), ":%d", i);
        of_thread_name(w->thread, d->name, idx);
    }
    if (rt->consumer) {
        if (pthread_create(&rt->consumer_thread, NULL, consumer_main, rt) != 0) {
            of_seterr(errstr, errstr_size, "stage '%s': cannot start the consumer thread", d->name);
            return -1;
        }
        rt->consumer_started = 1;
        of_thread_name(rt->consumer_thread, d->name, ":c");
    }
    return 0;
}

/* With r->mu: worker threads of these stages still running. */
static int running_locked(of_stage *const *list, size_t n)
{
    int running = 0;
    for (size_t i = 0; i < n; i++)
        if (list[i]->rt)
            running += list[i]->rt->workers_running;
    return running;
}

typedef struct closing {
    const of_bus_ops *ops;
    of_consumer *consumer;
    pthread_t thread;
    int started;
} closing;

static void *close_main(void *arg)
{
    closing *c = arg;
    c->ops->consumer_close(c->consumer);
    return NULL;
}

/* Closes the listed stages' consumers at once, each in a thread of its own. A Kafka consumer's
 * close leaves its group, and while a rebalance is under way (another host of the pipeline
 * joining or stopping too) the group coordinator holds the LeaveGroup behind the consumer's
 * pending JoinGroup until the request times out (5 s): one stage after another, a host with five
 * stages took 25 s to stop, and both hosts of a pipeline stopped together took as long. In
 * parallel the waits overlap. Where a thread cannot be had the consumer is closed here. */
static void close_consumers(const of_bus_ops *ops, of_stage *const *list, size_t n)
{
    closing *cs = calloc(n ? n : 1, sizeof(*cs));
    for (size_t i = 0; i < n; i++) {
        struct of_stage_rt *rt = list[i]->rt;
        if (!rt || !rt->consumer)
            continue;
        if (cs) {
            cs[i] = (closing){.ops = ops, .consumer = rt->consumer};
            cs[i].started = pthread_create(&cs[i].thread, NULL, close_main, &cs[i]) == 0;
        }
        if (!cs || !cs[i].started)
            ops->consumer_close(rt->consumer);
        rt->consumer = NULL;
    }
    for (size_t i = 0; cs && i < n; i++)
        if (cs[i].started)
            pthread_join(cs[i].thread, NULL);
    free(cs);
}

/* Stops and joins every thread of the listed stages (all of the runner's, or the one a reload
 * retires); gives up unfinished events at the deadline. Returns the number of events abandoned.
 * Consumers are closed (their groups see them leave at once), runtimes freed. */
static size_t stop_stages(of_runner *r, of_stage *const *list, size_t n, int64_t timeout_ms)
{
    struct timespec deadline = of_mono_after_ms(timeout_ms);
    const of_bus_ops *ops = r->bus->ops;
    for (size_t i = 0; i < n; i++) {
        struct of_stage_rt *rt = list[i]->rt;
        if (!rt)
            continue;
        atomic_store(&rt->stopping, 1);
        if (rt->consumer)
            ops->wakeup(rt->consumer);
    }
    for (size_t i = 0; i < n; i++) {
        struct of_stage_rt *rt = list[i]->rt;
        if (rt && rt->consumer_started) {
            pthread_join(rt->consumer_thread, NULL);
            rt->consumer_started = 0;
        }
    }
    /* No more events are dispatched: workers finish their queues, then exit. */
    for (size_t i = 0; i < n; i++) {
        struct of_stage_rt *rt = list[i]->rt;
        for (int j = 0; rt && j < rt->n_workers; j++) {
            pthread_mutex_lock(&rt->workers[j].mu);
            rt->workers[j].stop = 1;
            pthread_cond_broadcast(&rt->workers[j].cv);
            pthread_mutex_unlock(&rt->workers[j].mu);
        }
    }
    pthread_mutex_lock(&r->mu);
    int timed_out = 0;
    while (running_locked(list, n) > 0 && !timed_out)
        timed_out = pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == ETIMEDOUT;
    int still_running = running_locked(list, n);
    pthread_mutex_unlock(&r->mu);
    /* Workers still running with nothing in flight are only on their way out. */
    uint64_t unfinished = 0;
    for (size_t i = 0; still_running > 0 && i < n; i++) {
        struct of_stage_rt *rt = list[i]->rt;
        if (!rt)
            continue;
        pthread_mutex_lock(&rt->mu);
        unfinished += rt->in_flight;
        pthread_mutex_unlock(&rt->mu);
    }
    if (unfinished > 0) {
        of_log(OF_LVL_WARN, NULL, NULL,
               "drain: %" PRId64 " ms passed with %" PRIu64 " events unfinished; abandoning them",
               timeout_ms, unfinished);
        for (size_t i = 0; i < n; i++) {
            struct of_stage_rt *rt = list[i]->rt;
            if (!rt)
                continue;
            atomic_store(&rt->abandon, 1);
            for (int j = 0; j < rt->n_workers; j++) {
                pthread_mutex_lock(&rt->workers[j].mu);
                pthread_cond_broadcast(&rt->workers[j].cv);
                pthread_mutex_unlock(&rt->workers[j].mu);
            }
        }
    }
    /* A process() call in progress still has to return; the rest stops at once. */
    for (size_t i = 0; i < n; i++) {
        struct of_stage_rt *rt = list[i]->rt;
        for (int j = 0; rt && j < rt->n_workers; j++) {
            if (rt->workers[j].started) {
                pthread_join(rt->workers[j].thread, NULL);
                rt->workers[j].started = 0;
            }
        }
    }
    close_consumers(ops, list, n);
    size_t abandoned = 0;
    for (size_t i = 0; i < n; i++) {
        of_stage *st = list[i];
        struct of_stage_rt *rt = st->rt;
        if (!rt)
            continue;
        abandoned += (size_t)rt->in_flight; /* nothing should be left; counted if so */
        rt_free(rt);
        st->rt = NULL;
    }
    for (size_t i = 0; i < n; i++)
        abandoned += (size_t)atomic_load(&list[i]->stats.abandoned);
    return abandoned;
}

static void register_collectors(of_runner *r);

static size_t stop_all(of_runner *r, int64_t timeout_ms)
{
    return stop_stages(r, r->stages, r->n_stages, timeout_ms);
}

int of_runner_start(of_runner *r, char *errstr, size_t errstr_size)
{
    if (!r) {
        of_seterr(errstr, errstr_size, "no runner");
        return -1;
    }
    if (r->started || r->drained) {
        of_seterr(errstr, errstr_size, "the runner was already started");
        return -1;
    }
    for (size_t i = 0; i < r->n_stages; i++) {
        if (stage_start(r, r->stages[i], errstr, errstr_size) != 0) {
            of_log(OF_LVL_ERROR, r->stages[i]->pipeline_name, r->stages[i]->def->name,
                   "cannot start: %s", errstr ? errstr : "");
            stop_all(r, 0);
            return -1;
        }
    }
    r->started = 1;
    register_collectors(r);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Metrics read at scrape time
 * ------------------------------------------------------------------------------------------- */

static const char *plugin_of(const of_stage *st)
{
    return st->desc && st->desc->name ? st->desc->name : "";
}

static void collect_in_flight(void *opaque, of_metric_sink *sink)
{
    of_runner *r = opaque;
    pthread_rwlock_rdlock(&r->stages_mu);
    for (size_t i = 0; i < r->n_stages; i++) {
        of_stage *st = r->stages[i];
        const char *const lbl[] = {"pipeline", st->pipeline_name, "stage", stage_name(st),
                                   "plugin",   plugin_of(st),     NULL};
        of_metric_sample(sink, lbl, (double)atomic_load(&st->stats.in_flight));
    }
    pthread_rwlock_unlock(&r->stages_mu);
}

static void collect_breaker(void *opaque, of_metric_sink *sink)
{
    of_runner *r = opaque;
    static const of_breaker_state states[] = {OF_BREAKER_CLOSED, OF_BREAKER_HALF_OPEN,
                                              OF_BREAKER_OPEN};
    pthread_rwlock_rdlock(&r->stages_mu);
    for (size_t i = 0; i < r->n_stages; i++) {
        of_stage *st = r->stages[i];
        int now = atomic_load(&st->breaker_state);
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
            const char *const lbl[] = {
                "pipeline", st->pipeline_name, "stage", stage_name(st),
                "plugin",   plugin_of(st),     "state", of_breaker_state_name(states[k]),
                NULL};
            of_metric_sample(sink, lbl, now == (int)states[k] ? 1 : 0);
        }
    }
    pthread_rwlock_unlock(&r->stages_mu);
}

/* Per assigned partition: the high watermark less the group's committed offset (partitions
 * this host has not committed on yet are left out). */
static void collect_lag(void *opaque, of_metric_sink *sink)
{
    of_runner *r = opaque;
    if (!r->bus->ops->high_watermark)
        return;
    pthread_rwlock_rdlock(&r->stages_mu);
    for (size_t i = 0; i < r->n_stages; i++) {
        of_stage *st = r->stages[i];
        struct of_stage_rt *rt = st->rt;
        if (!rt || !rt->consumer)
            continue;
        pthread_mutex_lock(&rt->mu);
        for (size_t k = 0; k < rt->n_parts; k++) {
            part_track *p = &rt->parts[k];
            int64_t high;
            if (p->committed < 0 ||
                r->bus->ops->high_watermark(rt->consumer, p->topic, p->partition, &high) != 0)
                continue;
            char part[16];
            snprintf(part, sizeof(part), "%" PRId32, p->partition);
            const char *const lbl[] = {
                "pipeline", st->pipeline_name, "stage",     stage_name(st), "plugin", plugin_of(st),
                "topic",    p->topic,          "partition", part,           NULL};
            of_metric_sample(sink, lbl, high > p->committed ? (double)(high - p->committed) : 0);
        }
        pthread_mutex_unlock(&rt->mu);
    }
    pthread_rwlock_unlock(&r->stages_mu);
}

static void register_collectors(of_runner *r)
{
    if (!r->metrics)
        return;
    of_metrics_collector(r->metrics, "stage_in_flight", "Events taken and not yet finished",
                         OF_METRIC_GAUGE, collect_in_flight, r);
    of_metrics_collector(r->metrics, "stage_breaker_state",
                         "The stage's circuit breaker: 1 for its current state, 0 for the others",
                         OF_METRIC_GAUGE, collect_breaker, r);
    of_metrics_collector(r->metrics, "stage_consumer_lag",
                         "Events in the partition after the stage's committed offset",
                         OF_METRIC_GAUGE, collect_lag, r);
}

size_t of_runner_drain(of_runner *r, int64_t timeout_ms)
{
    if (!r || r->drained)
        return 0;
    /* Scrapes no longer look at stages going away (waits for one in progress). */
    of_metrics_remove_collectors(r->metrics, r);
    size_t abandoned = 0;
    if (r->started)
        abandoned = stop_all(r, timeout_ms);
    for (size_t i = r->n_stages; i > 0; i--)
        shutdown_stage(r->stages[i - 1]);
    r->started = 0;
    r->drained = 1;
    return abandoned;
}

void of_runner_free(of_runner *r)
{
    if (!r)
        return;
    of_runner_drain(r, 0);
    for (size_t i = 0; i < r->n_stages; i++)
        stage_free(r->stages[i]);
    free(r->stages);
    pthread_rwlock_destroy(&r->stages_mu);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

size_t of_runner_stage_count(const of_runner *r)
{
    return r ? r->n_stages : 0;
}

of_stage *of_runner_stage_at(of_runner *r, size_t i)
{
    return r && i < r->n_stages ? r->stages[i] : NULL;
}

int of_runner_stage_stats(of_runner *r, const char *pipeline, const char *stage,
                          of_stage_stats *out)
{
    if (!r || !pipeline || !stage || !out)
        return -1;
    pthread_rwlock_rdlock(&r->stages_mu);
    for (size_t i = 0; i < r->n_stages; i++) {
        of_stage *st = r->stages[i];
        if (strcmp(st->pipeline_name, pipeline) != 0 || strcmp(st->def->name, stage) != 0)
            continue;
        out->received = atomic_load(&st->stats.received);
        out->processed_ok = atomic_load(&st->stats.processed_ok);
        out->emitted = atomic_load(&st->stats.emitted);
        out->retried = atomic_load(&st->stats.retried);
        out->rejected = atomic_load(&st->stats.rejected);
        out->dead_lettered = atomic_load(&st->stats.dead_lettered);
        out->in_flight = atomic_load(&st->stats.in_flight);
        out->skipped = atomic_load(&st->stats.skipped);
        out->breaker_state = atomic_load(&st->breaker_state);
        pthread_rwlock_unlock(&r->stages_mu);
        return 0;
    }
    pthread_rwlock_unlock(&r->stages_mu);
    return -1;
}

json_t *of_runner_stats_json(of_runner *r)
{
    json_t *arr = json_array();
    if (!r || !arr)
        return arr;
    pthread_rwlock_rdlock(&r->stages_mu);
    for (size_t i = 0; i < r->n_stages; i++) {
        const of_stage *st = r->stages[i];
        int b = atomic_load(&st->breaker_state);
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "pipeline",
                      st->pipeline_name ? st->pipeline_name : "", "stage", stage_name(st), "plugin",
                      st->desc && st->desc->name ? st->desc->name : "", "received",
                      (json_int_t)atomic_load(&st->stats.received), "processed",
                      (json_int_t)atomic_load(&st->stats.processed_ok), "emitted",
                      (json_int_t)atomic_load(&st->stats.emitted), "retried",
                      (json_int_t)atomic_load(&st->stats.retried), "rejected",
                      (json_int_t)atomic_load(&st->stats.rejected), "dead_lettered",
                      (json_int_t)atomic_load(&st->stats.dead_lettered), "in_flight",
                      (json_int_t)atomic_load(&st->stats.in_flight), "skipped",
                      (json_int_t)atomic_load(&st->stats.skipped), "breaker",
                      of_breaker_state_name((of_breaker_state)b));
        if (o)
            json_array_append_new(arr, o);
    }
    pthread_rwlock_unlock(&r->stages_mu);
    return arr;
}
