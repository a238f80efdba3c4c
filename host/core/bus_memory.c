/* The embedded bus: Kafka's model in memory. A topic has N partitions, each an append-only log
 * of events with offsets; keyed events go to murmur2(key) % N as Kafka's default partitioner
 * places them, keyless ones round-robin. A consumer group has a committed offset per partition;
 * on this bus one consumer per group holds all the partitions of its topics. Everything is
 * guarded by one mutex per bus; one condition variable (CLOCK_MONOTONIC) wakes pollers and
 * of_membus_wait_idle. A partition's prefix is freed once every group that ever subscribed to
 * its topic has committed past it; topics no group reads are kept whole, so tests can read
 * outputs and dead letters with of_membus_read_topic. */
#include "bus.h"
#include "timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct mb_part {
    of_event **log;
    size_t head, len, cap; /* live events log[head .. head + len) */
    int64_t base;          /* offset of log[head] */
} mb_part;

typedef struct mb_topic {
    char *name;
    int n_parts;
    mb_part *parts;
    uint32_t rr; /* next partition for a keyless event */
    int n_groups;
} mb_topic;

typedef struct mb_gtopic {
    mb_topic *topic;
    int64_t *committed; /* per partition; separately allocated, so its address is stable */
} mb_gtopic;

typedef struct mb_group {
    char *name;
    mb_gtopic *topics;
    size_t n_topics;
    of_consumer *live;
} mb_group;

typedef struct mb_assign {
    mb_topic *topic;
    int partition;
    int64_t position;
    int64_t *committed; /* the group's committed offset of this partition */
} mb_assign;

typedef struct membus membus;

struct of_consumer {
    membus *bus;
    mb_group *group;
    mb_assign *assign;
    size_t n_assign;
    size_t rr; /* the partition to look at first on the next poll */
    int paused;
    int woken;
};

struct membus {
    of_bus base; /* first: an of_bus * is a membus * */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    mb_topic **topics;
    size_t n_topics, cap_topics;
    mb_group **groups;
    size_t n_groups, cap_groups;
    of_consumer **consumers; /* open consumers, freed by destroy if still open */
    size_t n_consumers, cap_consumers;
    int retain; /* keep committed events (no trimming) */
};

static const of_bus_ops membus_ops;

static membus *as_membus(of_bus *bus)
{
    return bus && bus->ops == &membus_ops ? (membus *)bus : NULL;
}

static int push_ptr(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        void **a = realloc(*arr, ncap * sizeof(*a));
        if (!a)
            return -1;
        *arr = a;
        *cap = ncap;
    }
    (*arr)[(*n)++] = p;
    return 0;
}

/* Waits on the bus condition; returns non-zero once the deadline passed (timeout_ms < 0: no
 * deadline). */
static int wait_until(membus *b, const struct timespec *deadline, int timeout_ms)
{
    if (timeout_ms < 0) {
        pthread_cond_wait(&b->cv, &b->mu);
        return 0;
    }
    return pthread_cond_timedwait(&b->cv, &b->mu, deadline) == ETIMEDOUT;
}

static mb_topic *find_topic(membus *b, const char *name)
{
    for (size_t i = 0; i < b->n_topics; i++)
        if (strcmp(b->topics[i]->name, name) == 0)
            return b->topics[i];
    return NULL;
}

static mb_group *find_group(membus *b, const char *name)
{
    for (size_t i = 0; i < b->n_groups; i++)
        if (strcmp(b->groups[i]->name, name) == 0)
            return b->groups[i];
    return NULL;
}

static int64_t part_end(const mb_part *p)
{
    return p->base + (int64_t)p->len;
}

/* ------------------------------------------------------------------------------------------ */

static int mb_ensure_topic(of_bus *bus, const char *topic, int partitions, int replication,
                           char *errstr, size_t errstr_size)
{
    (void)replication; /* one copy in memory */
    membus *b = as_membus(bus);
    if (!b || !topic || !*topic) {
        of_seterr(errstr, errstr_size, "ensure_topic: no topic name");
        return -1;
    }
    if (partitions < 1) {
        of_seterr(errstr, errstr_size, "topic '%s': partitions must be at least 1 (got %d)", topic,
                  partitions);
        return -1;
    }
    pthread_mutex_lock(&b->mu);
    if (find_topic(b, topic)) {
        pthread_mutex_unlock(&b->mu);
        return 0;
    }
    mb_topic *t = calloc(1, sizeof(*t));
    if (t) {
        t->name = strdup(topic);
        t->parts = calloc((size_t)partitions, sizeof(*t->parts));
        t->n_parts = partitions;
    }
    if (!t || !t->name || !t->parts ||
        push_ptr((void ***)&b->topics, &b->n_topics, &b->cap_topics, t) != 0) {
        pthread_mutex_unlock(&b->mu);
        if (t) {
            free(t->name);
            free(t->parts);
            free(t);
        }
        of_seterr(errstr, errstr_size, "topic '%s': out of memory", topic);
        return -1;
    }
    pthread_mutex_unlock(&b->mu);
    return 0;
}

static of_event *copy_for_log(const of_event *ev)
{
    of_event *c = of_event_new(ev->key, ev->key_len, ev->payload, ev->payload_len);
    if (!c)
        return NULL;
    c->timestamp_ms = ev->timestamp_ms > 0 ? ev->timestamp_ms : of_now_ms();
    for (size_t i = 0; i < ev->n_headers; i++) {
        if (of_event_add_header(c, ev->headers[i].name, ev->headers[i].value,
                                ev->headers[i].value_len) != 0) {
            of_event_free(c);
            return NULL;
        }
    }
    return c;
}

static int part_append(mb_part *p, of_event *ev)
{
    if (p->head + p->len == p->cap) {
        if (p->head > 0) {
            memmove(p->log, p->log + p->head, p->len * sizeof(*p->log));
            p->head = 0;
        } else {
            size_t ncap = p->cap ? p->cap * 2 : 64;
            of_event **n = realloc(p->log, ncap * sizeof(*n));
            if (!n)
                return -1;
            p->log = n;
            p->cap = ncap;
        }
    }
    p->log[p->head + p->len] = ev;
    p->len++;
    return 0;
}

static int mb_produce(of_bus *bus, const char *topic, const of_event *ev, of_delivery_cb cb,
                      void *opaque, char *errstr, size_t errstr_size)
{
    membus *b = as_membus(bus);
    if (!b || !topic || !ev) {
        of_seterr(errstr, errstr_size, "produce: bad arguments");
        return -1;
    }
    of_event *c = copy_for_log(ev);
    if (!c || of_event_set_topic(c, topic) != 0) {
        of_event_free(c);
        of_seterr(errstr, errstr_size, "produce to '%s': out of memory", topic);
        return -1;
    }
    pthread_mutex_lock(&b->mu);
    mb_topic *t = find_topic(b, topic);
    if (!t) {
        pthread_mutex_unlock(&b->mu);
        of_event_free(c);
        of_seterr(errstr, errstr_size, "produce: unknown topic '%s'", topic);
        return -1;
    }
    int part;
    if (c->key)
        part = (int)((of_murmur2(c->key, c->key_len) & 0x7fffffffu) % (uint32_t)t->n_parts);
    else
        part = (int)(t->rr++ % (uint32_t)t->n_parts);
    mb_part *p = &t->parts[part];
    c->partition = part;
    c->offset = part_end(p);
    if (part_append(p, c) != 0) {
        pthread_mutex_unlock(&b->mu);
        of_event_free(c);
        of_seterr(errstr, errstr_size, "produce to '%s': out of memory", topic);
        return -1;
    }
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    /* Outside the lock: the callback may call the bus again. */
    if (cb)
        cb(opaque, 0, NULL);
    return 0;
}

static void consumer_free(of_consumer *c)
{
    if (!c)
        return;
    free(c->assign);
    free(c);
}

/* The memory bus has one consumer per group and never rebalances, so hooks are not needed. */
static of_consumer *mb_subscribe(of_bus *bus, const char *group, const char *const *topics,
                                 size_t n_topics, const of_consumer_hooks *hooks, char *errstr,
                                 size_t errstr_size)
{
    (void)hooks;
    membus *b = as_membus(bus);
    if (!b || !group || !*group) {
        of_seterr(errstr, errstr_size, "subscribe: no group name");
        return NULL;
    }
    if (n_topics == 0 || !topics) {
        of_seterr(errstr, errstr_size, "group '%s': subscribe needs at least one topic", group);
        return NULL;
    }
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < n_topics; i++) {
        if (!topics[i] || !find_topic(b, topics[i])) {
            pthread_mutex_unlock(&b->mu);
            of_seterr(errstr, errstr_size, "group '%s': unknown topic '%s'", group,
                      topics[i] ? topics[i] : "(null)");
            return NULL;
        }
    }
    mb_group *g = find_group(b, group);
    if (g && g->live) {
        pthread_mutex_unlock(&b->mu);
        of_seterr(errstr, errstr_size,
                  "group '%s' already has a consumer (the memory bus allows one per group)", group);
        return NULL;
    }
    if (!g) {
        g = calloc(1, sizeof(*g));
        if (!g || !(g->name = strdup(group)) ||
            push_ptr((void ***)&b->groups, &b->n_groups, &b->cap_groups, g) != 0) {
            if (g)
                free(g->name);
            free(g);
            goto nomem;
        }
    }
    of_consumer *c = calloc(1, sizeof(*c));
    if (!c)
        goto nomem;
    c->bus = b;
    c->group = g;
    for (size_t i = 0; i < n_topics; i++) {
        mb_topic *t = find_topic(b, topics[i]);
        int dup = 0;
        for (size_t j = 0; j < i; j++)
            if (strcmp(topics[j], topics[i]) == 0)
                dup = 1;
        if (dup)
            continue;
        mb_gtopic *gt = NULL;
        for (size_t j = 0; j < g->n_topics; j++)
            if (g->topics[j].topic == t)
                gt = &g->topics[j];
        if (!gt) {
            mb_gtopic *n = realloc(g->topics, (g->n_topics + 1) * sizeof(*n));
            if (!n)
                goto nomem_c;
            g->topics = n;
            int64_t *committed = calloc((size_t)t->n_parts, sizeof(*committed));
            if (!committed)
                goto nomem_c;
            gt = &g->topics[g->n_topics++];
            gt->topic = t;
            gt->committed = committed;
            /* A new group starts at the earliest event still kept. */
            for (int p = 0; p < t->n_parts; p++)
                committed[p] = t->parts[p].base;
            t->n_groups++;
        }
        mb_assign *a = realloc(c->assign, (c->n_assign + (size_t)t->n_parts) * sizeof(*a));
        if (!a)
            goto nomem_c;
        c->assign = a;
        for (int p = 0; p < t->n_parts; p++) {
            mb_assign *x = &c->assign[c->n_assign++];
            x->topic = t;
            x->partition = p;
            x->committed = &gt->committed[p];
            x->position = *x->committed;
        }
    }
    if (push_ptr((void ***)&b->consumers, &b->n_consumers, &b->cap_consumers, c) != 0)
        goto nomem_c;
    g->live = c;
    pthread_mutex_unlock(&b->mu);
    return c;
nomem_c:
    consumer_free(c);
nomem:
    pthread_mutex_unlock(&b->mu);
    of_seterr(errstr, errstr_size, "group '%s': out of memory", group);
    return NULL;
}

static int mb_poll(of_consumer *c, of_event **out, int timeout_ms)
{
    if (!c || !out)
        return -1;
    *out = NULL;
    membus *b = c->bus;
    struct timespec deadline = {0, 0};
    if (timeout_ms > 0)
        deadline = of_mono_after_ms(timeout_ms);
    pthread_mutex_lock(&b->mu);
    for (;;) {
        if (c->woken) {
            c->woken = 0;
            break;
        }
        if (!c->paused) {
            for (size_t i = 0; i < c->n_assign; i++) {
                size_t idx = (c->rr + i) % c->n_assign;
                mb_assign *a = &c->assign[idx];
                mb_part *p = &a->topic->parts[a->partition];
                if (a->position < p->base)
                    a->position = p->base;
                if (a->position >= part_end(p))
                    continue;
                of_event *ev = of_event_clone(p->log[p->head + (size_t)(a->position - p->base)]);
                if (!ev) {
                    pthread_mutex_unlock(&b->mu);
                    return -1;
                }
                a->position++;
                c->rr = (idx + 1) % c->n_assign;
                pthread_mutex_unlock(&b->mu);
                *out = ev;
                return 1;
            }
        }
        if (timeout_ms == 0 || wait_until(b, &deadline, timeout_ms))
            break;
    }
    pthread_mutex_unlock(&b->mu);
    return 0;
}

/* Frees the events of a partition that every group reading the topic has committed. */
static void trim_locked(membus *b, mb_topic *t, int partition)
{
    if (b->retain || t->n_groups == 0)
        return;
    int64_t low = INT64_MAX;
    for (size_t i = 0; i < b->n_groups; i++) {
        mb_group *g = b->groups[i];
        for (size_t j = 0; j < g->n_topics; j++)
            if (g->topics[j].topic == t && g->topics[j].committed[partition] < low)
                low = g->topics[j].committed[partition];
    }
    mb_part *p = &t->parts[partition];
    if (low == INT64_MAX || low <= p->base)
        return;
    size_t drop = (size_t)(low - p->base);
    if (drop > p->len)
        drop = p->len;
    for (size_t i = 0; i < drop; i++) {
        of_event_free(p->log[p->head + i]);
        p->log[p->head + i] = NULL;
    }
    p->head += drop;
    p->len -= drop;
    p->base += (int64_t)drop;
    if (p->len == 0) {
        p->head = 0;
    } else if (p->head >= p->cap / 2) {
        memmove(p->log, p->log + p->head, p->len * sizeof(*p->log));
        p->head = 0;
    }
}

static int mb_commit(of_consumer *c, const char *topic, int32_t partition, int64_t next_offset)
{
    if (!c || !topic)
        return -1;
    membus *b = c->bus;
    pthread_mutex_lock(&b->mu);
    mb_assign *a = NULL;
    for (size_t i = 0; i < c->n_assign; i++)
        if (c->assign[i].partition == partition && strcmp(c->assign[i].topic->name, topic) == 0)
            a = &c->assign[i];
    if (!a || next_offset < 0 || next_offset > part_end(&a->topic->parts[partition])) {
        pthread_mutex_unlock(&b->mu);
        return -1;
    }
    if (next_offset > *a->committed) { /* never backwards */
        *a->committed = next_offset;
        trim_locked(b, a->topic, partition);
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return 0;
}

static void mb_pause(of_consumer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->bus->mu);
    c->paused = 1;
    pthread_mutex_unlock(&c->bus->mu);
}

static void mb_resume(of_consumer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->bus->mu);
    c->paused = 0;
    pthread_cond_broadcast(&c->bus->cv);
    pthread_mutex_unlock(&c->bus->mu);
}

static void mb_wakeup(of_consumer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->bus->mu);
    c->woken = 1;
    pthread_cond_broadcast(&c->bus->cv);
    pthread_mutex_unlock(&c->bus->mu);
}

static void mb_consumer_close(of_consumer *c)
{
    if (!c)
        return;
    membus *b = c->bus;
    pthread_mutex_lock(&b->mu);
    if (c->group->live == c)
        c->group->live = NULL;
    for (size_t i = 0; i < b->n_consumers; i++) {
        if (b->consumers[i] == c) {
            b->consumers[i] = b->consumers[--b->n_consumers];
            break;
        }
    }
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    consumer_free(c);
}

static void mb_destroy(of_bus *bus)
{
    membus *b = as_membus(bus);
    if (!b)
        return;
    for (size_t i = 0; i < b->n_consumers; i++)
        consumer_free(b->consumers[i]);
    free(b->consumers);
    for (size_t i = 0; i < b->n_groups; i++) {
        mb_group *g = b->groups[i];
        for (size_t j = 0; j < g->n_topics; j++)
            free(g->topics[j].committed);
        free(g->topics);
        free(g->name);
        free(g);
    }
    free(b->groups);
    for (size_t i = 0; i < b->n_topics; i++) {
        mb_topic *t = b->topics[i];
        for (int p = 0; p < t->n_parts; p++) {
            mb_part *part = &t->parts[p];
            for (size_t k = 0; k < part->len; k++)
                of_event_free(part->log[part->head + k]);
            free(part->log);
        }
        free(t->parts);
        free(t->name);
        free(t);
    }
    free(b->topics);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static int mb_ready(of_bus *bus, char *errstr, size_t errstr_size)
{
    (void)bus;
    (void)errstr;
    (void)errstr_size;
    return 1;
}

/* Deliveries are reported inside produce(): nothing is ever outstanding. */
static int mb_flush(of_bus *bus, int timeout_ms)
{
    (void)bus;
    (void)timeout_ms;
    return 0;
}

static const of_bus_ops membus_ops = {
    .name = "memory",
    .ensure_topic = mb_ensure_topic,
    .produce = mb_produce,
    .subscribe = mb_subscribe,
    .poll = mb_poll,
    .commit = mb_commit,
    .pause = mb_pause,
    .resume = mb_resume,
    .wakeup = mb_wakeup,
    .consumer_close = mb_consumer_close,
    .ready = mb_ready,
    .flush = mb_flush,
    .destroy = mb_destroy,
};

of_bus *of_membus_new(void)
{
    membus *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->base.ops = &membus_ops;
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) {
        free(b);
        return NULL;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&b->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        free(b);
        return NULL;
    }
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        pthread_cond_destroy(&b->cv);
        free(b);
        return NULL;
    }
    return &b->base;
}

void of_membus_set_retain(of_bus *bus, int retain)
{
    membus *b = as_membus(bus);
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    b->retain = retain != 0;
    pthread_mutex_unlock(&b->mu);
}

static int idle_locked(membus *b)
{
    for (size_t i = 0; i < b->n_groups; i++) {
        mb_group *g = b->groups[i];
        for (size_t j = 0; j < g->n_topics; j++) {
            mb_topic *t = g->topics[j].topic;
            for (int p = 0; p < t->n_parts; p++)
                if (g->topics[j].committed[p] < part_end(&t->parts[p]))
                    return 0;
        }
    }
    return 1;
}

int of_membus_wait_idle(of_bus *bus, int timeout_ms)
{
    membus *b = as_membus(bus);
    if (!b)
        return 0;
    struct timespec deadline = {0, 0};
    if (timeout_ms > 0)
        deadline = of_mono_after_ms(timeout_ms);
    pthread_mutex_lock(&b->mu);
    int idle;
    while (!(idle = idle_locked(b))) {
        if (timeout_ms == 0 || wait_until(b, &deadline, timeout_ms))
            break;
    }
    if (!idle)
        idle = idle_locked(b);
    pthread_mutex_unlock(&b->mu);
    return idle;
}

size_t of_membus_read_topic(of_bus *bus, const char *topic,
                            int (*fn)(const of_event *ev, void *opaque), void *opaque)
{
    membus *b = as_membus(bus);
    if (!b || !topic || !fn)
        return 0;
    size_t visited = 0;
    pthread_mutex_lock(&b->mu);
    mb_topic *t = find_topic(b, topic);
    for (int p = 0; t && p < t->n_parts; p++) {
        mb_part *part = &t->parts[p];
        for (size_t k = 0; k < part->len; k++) {
            visited++;
            if (fn(part->log[part->head + k], opaque) != 0)
                goto out;
        }
    }
out:
    pthread_mutex_unlock(&b->mu);
    return visited;
}
