/* The Kafka bus: the of_bus operations on librdkafka.
 *
 * One idempotent producer (acks=all) serves every stage; a thread polls it for delivery reports,
 * which reach the runner through the delivery callbacks it passed to produce(). Each stage is a
 * consumer in its own group (cooperative-sticky rebalancing). A finished offset is *stored*
 * (rd_kafka_offsets_store), and librdkafka commits stored offsets in the background, before a
 * revocation completes, and on close: an offset is never committed before the runner stored it,
 * so delivery is at-least-once. Only rd_kafka_consumer_poll is used to consume: the batch API
 * of librdkafka 2.0.x loses messages combined with pause, seek or rebalances.
 *
 * Readiness: a health thread asks the cluster for metadata every second and records whether it
 * answered; transitions are logged. */
#include "bus.h"
#include "kafka_conf.h"
#include "log.h"
#include "thread_name.h"
#include "timeutil.h"

#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEALTH_INTERVAL_MS 1000
#define ADMIN_TIMEOUT_MS   15000
/* The librdkafka release that fixed confluentinc/librdkafka#4312 (see await_first_assignment),
 * and how long a consumer stopped before its first assignment waits for it. */
#define OF_KAFKA_FIXED_4312      0x020300ff
#define FIRST_ASSIGNMENT_WAIT_MS 10000

typedef struct kbus {
    of_bus base;
    const of_kafka_config *cfg; /* borrowed: the host configuration outlives the bus */
    rd_kafka_t *producer;
    pthread_t poller, health;
    int poller_started, health_started;
    _Atomic int stop;
    pthread_mutex_t mu; /* guards ready_err and the health thread's sleep */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC */
    _Atomic int ready;
    char ready_err[256];
} kbus;

typedef struct kconsumer {
    kbus *bus;
    rd_kafka_t *rk;
    of_consumer_hooks hooks;
    char group[256];
    pthread_mutex_t mu; /* guards paused against the rebalance callback */
    int paused;
    _Atomic int woken;
    _Atomic int assigned_once; /* the group gave it an assignment (maybe empty) at least once */
    unsigned errors;           /* consume errors seen, for rate-limited logging */
} kconsumer;

typedef struct delivery_ctx {
    of_delivery_cb cb;
    void *opaque;
} delivery_ctx;

static const of_bus_ops kafkabus_ops;

/* ---------------------------------------------------------------------------------------------
 * Producer side
 * ------------------------------------------------------------------------------------------- */

/* Errors retrying cannot cure: the event itself is refused. */
static int permanent(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR_INVALID_RECORD ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE || err == RD_KAFKA_RESP_ERR_INVALID_MSG;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    (void)opaque;
    delivery_ctx *ctx = msg->_private;
    if (!ctx)
        return;
    if (ctx->cb)
        ctx->cb(ctx->opaque,
                !msg->err             ? 0
                : permanent(msg->err) ? OF_BUS_ERR_PERMANENT
                                      : -1,
                msg->err ? rd_kafka_err2str(msg->err) : NULL);
    free(ctx);
}

static _Atomic int g_fatal; /* a producer fatal error happened: nothing can be produced again */

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    /* Transport errors are retried by librdkafka itself; the health thread reports readiness. */
    if (err != RD_KAFKA_RESP_ERR__FATAL) {
        of_log(OF_LVL_DEBUG, NULL, NULL, "kafka: %s: %s",
               rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
        return;
    }
    char why[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
    of_log(OF_LVL_ERROR, NULL, NULL,
           "kafka: fatal producer error %s: %s; stopping so that a restart gets a new producer "
           "(the outbox and inbox make the restart safe)",
           rd_kafka_err2name(orig), why);
    /* Every later produce would fail: the daemon drains what it can and exits. */
    if (!atomic_exchange(&g_fatal, 1))
        raise(SIGTERM);
}

/* librdkafka's own log lines go through the host's log. A property given for both clients
 * (bus.kafka.properties) is only meant for the one it belongs to, so librdkafka's warning
 * that the other ignores it is noise. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "will be ignored by this"))
        return;
    of_log_level_t lvl = level <= 3   ? OF_LVL_ERROR
                         : level == 4 ? OF_LVL_WARN
                         : level <= 6 ? OF_LVL_INFO
                                      : OF_LVL_DEBUG;
    of_log(lvl, NULL, NULL, "kafka %s: %s", fac, buf);
}

static void *poller_main(void *arg)
{
    kbus *b = arg;
    while (!atomic_load(&b->stop))
        rd_kafka_poll(b->producer, 100);
    return NULL;
}

static void set_ready(kbus *b, int ready, const char *why)
{
    pthread_mutex_lock(&b->mu);
    int was = atomic_exchange(&b->ready, ready);
    snprintf(b->ready_err, sizeof(b->ready_err), "%s", why ? why : "");
    pthread_mutex_unlock(&b->mu);
    if (was != ready) {
        if (ready)
            of_log(OF_LVL_INFO, NULL, NULL, "kafka: ready (%s)", b->cfg->bootstrap);
        else
            of_log(OF_LVL_WARN, NULL, NULL, "kafka: not ready: %s", why ? why : "unknown");
    }
}

static void *health_main(void *arg)
{
    kbus *b = arg;
    while (!atomic_load(&b->stop)) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(b->producer, 0, NULL, &md, 2000);
        if (atomic_load(&g_fatal)) {
            set_ready(b, 0, "the producer had a fatal error; restarting");
        } else if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->broker_cnt > 0) {
            set_ready(b, 1, NULL);
        } else {
            char why[200];
            snprintf(why, sizeof(why), "broker %s does not answer (%s)", b->cfg->bootstrap,
                     err ? rd_kafka_err2str(err) : "no brokers in metadata");
            set_ready(b, 0, why);
        }
        if (md)
            rd_kafka_metadata_destroy(md);
        struct timespec until = of_mono_after_ms(HEALTH_INTERVAL_MS);
        pthread_mutex_lock(&b->mu);
        while (!atomic_load(&b->stop))
            if (pthread_cond_timedwait(&b->cv, &b->mu, &until) == ETIMEDOUT)
                break;
        pthread_mutex_unlock(&b->mu);
    }
    return NULL;
}

static int kb_ready(of_bus *bus, char *errstr, size_t errstr_size)
{
    kbus *b = (kbus *)bus;
    pthread_mutex_lock(&b->mu);
    int ready = atomic_load(&b->ready);
    if (!ready)
        of_seterr(errstr, errstr_size, "%s", b->ready_err[0] ? b->ready_err : "not yet connected");
    pthread_mutex_unlock(&b->mu);
    return ready;
}

/* 1 when the cluster has the topic, 0 when it does not, -1 when it cannot tell. */
static int topic_exists(kbus *b, const char *topic, int want_partitions)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(b->producer, topic, NULL);
    if (!rkt)
        return -1;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(b->producer, 0, rkt, &md, 5000);
    int rc = -1;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->topic_cnt == 1) {
        const struct rd_kafka_metadata_topic *t = &md->topics[0];
        if (t->err == RD_KAFKA_RESP_ERR_NO_ERROR && t->partition_cnt > 0) {
            rc = 1;
            if (t->partition_cnt < want_partitions)
                of_log(OF_LVL_WARN, NULL, NULL,
                       "kafka: topic %s has %d partitions, the pipeline declares %d; it is "
                       "left as it is",
                       topic, t->partition_cnt, want_partitions);
        } else if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            rc = 0;
        }
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

static int kb_ensure_topic(of_bus *bus, const char *topic, int partitions, int replication,
                           char *errstr, size_t errstr_size)
{
    kbus *b = (kbus *)bus;
    /* Asking first spares the admin request (and the controller) for topics that exist. */
    if (topic_exists(b, topic, partitions) == 1)
        return 0;
    char why[512] = "";
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(topic, partitions, replication, why, sizeof(why));
    if (!nt) {
        of_seterr(errstr, errstr_size, "%s", why);
        return -1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(b->producer);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(b->producer, RD_KAFKA_ADMIN_OP_ANY);
    rd_kafka_AdminOptions_set_request_timeout(opts, ADMIN_TIMEOUT_MS, why, sizeof(why));
    rd_kafka_CreateTopics(b->producer, &nt, 1, opts, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_TIMEOUT_MS + 2000);
    int rc = -1;
    if (!ev) {
        of_seterr(errstr, errstr_size, "creating the topic timed out");
    } else if (rd_kafka_event_error(ev)) {
        of_seterr(errstr, errstr_size, "creating the topic failed: %s",
                  rd_kafka_event_error_string(ev));
    } else {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t n = 0;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
        rd_kafka_resp_err_t err = n ? rd_kafka_topic_result_error(tr[0]) : RD_KAFKA_RESP_ERR__FAIL;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            rc = 0;
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
                of_log(OF_LVL_INFO, NULL, NULL,
                       "kafka: created topic %s (%d partitions, replication %d)", topic, partitions,
                       replication);
        } else {
            const char *msg = n ? rd_kafka_topic_result_error_string(tr[0]) : NULL;
            of_seterr(errstr, errstr_size, "creating the topic failed: %s",
                      msg ? msg : rd_kafka_err2str(err));
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

static int kb_produce(of_bus *bus, const char *topic, const of_event *ev, of_delivery_cb cb,
                      void *opaque, char *errstr, size_t errstr_size)
{
    kbus *b = (kbus *)bus;
    delivery_ctx *ctx = malloc(sizeof(*ctx));
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(ev->n_headers ? ev->n_headers : 1);
    if (!ctx || !hdrs) {
        free(ctx);
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        of_seterr(errstr, errstr_size, "out of memory");
        return -1;
    }
    ctx->cb = cb;
    ctx->opaque = opaque;
    for (size_t i = 0; i < ev->n_headers; i++)
        rd_kafka_header_add(hdrs, ev->headers[i].name, -1, ev->headers[i].value,
                            (ssize_t)ev->headers[i].value_len);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            b->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(ev->key, ev->key ? ev->key_len : 0),
            RD_KAFKA_V_VALUE(ev->payload, ev->payload_len), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_OPAQUE(ctx), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0; /* the headers belong to librdkafka now */
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !atomic_load(&b->stop)) {
            /* Backpressure: the local queue drains as the broker acknowledges. */
            rd_kafka_poll(b->producer, 10);
            continue;
        }
        rd_kafka_headers_destroy(hdrs);
        free(ctx);
        of_seterr(errstr, errstr_size, "producing to %s: %s", topic, rd_kafka_err2str(err));
        return permanent(err) ? OF_BUS_ERR_PERMANENT : -1;
    }
}

static int kb_flush(of_bus *bus, int timeout_ms)
{
    kbus *b = (kbus *)bus;
    return rd_kafka_flush(b->producer, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------
 * Consumer side
 * ------------------------------------------------------------------------------------------- */

static void notify(kconsumer *c, rd_kafka_topic_partition_list_t *parts, int revoked, int lost)
{
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        if (revoked && c->hooks.revoked)
            c->hooks.revoked(c->hooks.opaque, p->topic, p->partition, lost);
        else if (!revoked && c->hooks.assigned)
            c->hooks.assigned(c->hooks.opaque, p->topic, p->partition);
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kconsumer *c = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        atomic_store(&c->assigned_once, 1);
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        /* A consumer paused for backpressure or an open breaker stays paused. */
        pthread_mutex_lock(&c->mu);
        if (c->paused)
            rd_kafka_pause_partitions(rk, parts);
        pthread_mutex_unlock(&c->mu);
        notify(c, parts, 0, 0);
        of_log(OF_LVL_INFO, NULL, NULL, "kafka: group %s: %d partition%s assigned", c->group,
               parts->cnt, parts->cnt == 1 ? "" : "s");
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        int lost = rd_kafka_assignment_lost(rk);
        /* The runner lets in-flight events finish (and store their offsets) first... */
        notify(c, parts, 1, lost);
        /* ...which are committed before the partitions go to their next owner. */
        if (!lost) {
            rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
            if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
                of_log(OF_LVL_WARN, NULL, NULL, "kafka: commit on revocation failed: %s",
                       rd_kafka_err2str(cerr));
        }
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
        of_log(OF_LVL_INFO, NULL, NULL, "kafka: group %s: %d partition%s %s", c->group, parts->cnt,
               parts->cnt == 1 ? "" : "s", lost ? "lost" : "revoked");
    } else {
        of_log(OF_LVL_ERROR, NULL, NULL, "kafka: rebalance failed: %s", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
    if (error) {
        of_log(OF_LVL_ERROR, NULL, NULL, "kafka: rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    (void)offsets;
    (void)opaque;
    /* A failed background commit is repeated with the next interval (the stored offsets stay);
     * NO_OFFSET only means nothing new was stored. */
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        of_log(OF_LVL_WARN, NULL, NULL, "kafka: offset commit failed: %s", rd_kafka_err2str(err));
}

static of_consumer *kb_subscribe(of_bus *bus, const char *group, const char *const *topics,
                                 size_t n_topics, const of_consumer_hooks *hooks, char *errstr,
                                 size_t errstr_size)
{
    kbus *b = (kbus *)bus;
    kconsumer *c = calloc(1, sizeof(*c));
    if (!c || pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        of_seterr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    c->bus = b;
    snprintf(c->group, sizeof(c->group), "%s", group);
    if (hooks)
        c->hooks = *hooks;
    rd_kafka_conf_t *conf =
        of_kafka_conf_new(b->cfg, OF_KAFKA_CONSUMER, group, errstr, errstr_size);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    char why[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        of_seterr(errstr, errstr_size, "kafka consumer: %s", why);
        goto fail;
    }
    rd_kafka_poll_set_consumer(c->rk);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n_topics);
    for (size_t i = 0; i < n_topics; i++)
        rd_kafka_topic_partition_list_add(list, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) {
        of_seterr(errstr, errstr_size, "subscribing group %s: %s", group, rd_kafka_err2str(err));
        rd_kafka_destroy(c->rk);
        goto fail;
    }
    return (of_consumer *)c;
fail:
    pthread_mutex_destroy(&c->mu);
    free(c);
    return NULL;
}

static of_event *event_from_message(const rd_kafka_message_t *m)
{
    of_event *ev = of_event_new(m->key, m->key_len, m->payload, m->len);
    if (!ev)
        return NULL;
    if (of_event_set_topic(ev, rd_kafka_topic_name(m->rkt)) != 0)
        goto fail;
    ev->partition = m->partition;
    ev->offset = m->offset;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    if (ts > 0)
        ev->timestamp_ms = ts;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        const char *name;
        const void *value;
        size_t size, n = 0, bytes = 0;
        /* Sized first, so the headers take one allocation (event.h). */
        for (; rd_kafka_header_get_all(hdrs, n, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             n++)
            bytes += strlen(name) + 1 + size + 1;
        if (n && of_event_reserve_headers(ev, n, bytes) != 0)
            goto fail;
        for (size_t i = 0; i < n; i++)
            if (rd_kafka_header_get_all(hdrs, i, &name, &value, &size) !=
                    RD_KAFKA_RESP_ERR_NO_ERROR ||
                of_event_add_header(ev, name, value, size) != 0)
                goto fail;
    }
    return ev;
fail:
    of_event_free(ev);
    return NULL;
}

static int kb_poll(of_consumer *consumer, of_event **out, int timeout_ms)
{
    kconsumer *c = (kconsumer *)consumer;
    *out = NULL;
    if (atomic_exchange(&c->woken, 0))
        return 0;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms < 0 ? 1000 : timeout_ms);
    if (!m)
        return 0;
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && c->errors++ % 50 == 0)
            of_log(OF_LVL_WARN, NULL, NULL, "kafka: consume: %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return 0;
    }
    of_event *ev = event_from_message(m);
    if (!ev) {
        /* Not handed out, so not lost: rewind to it and let a later poll try again. */
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition)->offset =
            m->offset;
        rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 1000);
        if (e)
            rd_kafka_error_destroy(e);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_message_destroy(m);
        return -1;
    }
    rd_kafka_message_destroy(m);
    *out = ev;
    return 1;
}

static int kb_commit(of_consumer *consumer, const char *topic, int32_t partition,
                     int64_t next_offset)
{
    kconsumer *c = (kconsumer *)consumer;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next_offset;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    /* __STATE: the partition is no longer assigned here; its next owner reads it again. */
    return err == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

static void set_paused(kconsumer *c, int paused)
{
    pthread_mutex_lock(&c->mu);
    c->paused = paused;
    rd_kafka_topic_partition_list_t *assigned = NULL;
    if (rd_kafka_assignment(c->rk, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR && assigned) {
        if (paused)
            rd_kafka_pause_partitions(c->rk, assigned);
        else
            rd_kafka_resume_partitions(c->rk, assigned);
        rd_kafka_topic_partition_list_destroy(assigned);
    }
    pthread_mutex_unlock(&c->mu);
}

static void kb_pause(of_consumer *consumer)
{
    set_paused((kconsumer *)consumer, 1);
}

static void kb_resume(of_consumer *consumer)
{
    set_paused((kconsumer *)consumer, 0);
}

static void kb_wakeup(of_consumer *consumer)
{
    kconsumer *c = (kconsumer *)consumer;
    atomic_store(&c->woken, 1);
    rd_kafka_yield(c->rk);
}

/* librdkafka before 2.3.0 aborts the process (an assertion in the cooperative-sticky assignor)
 * when a consumer that has joined its group is destroyed before its first assignment
 * (confluentinc/librdkafka#4312): a host stopped while its groups rebalance did. Such a consumer
 * first waits, polling, for that assignment; what it polls meanwhile is dropped uncommitted (the
 * partition's owner reads it again). 1 when it may be destroyed. */
static int await_first_assignment(kconsumer *c)
{
    if (rd_kafka_version() >= OF_KAFKA_FIXED_4312 || atomic_load(&c->assigned_once))
        return 1;
    if (!atomic_load(&c->bus->ready))
        /* No broker answers, so waiting cannot bring the assignment; the abort needs a JoinGroup
         * answer without the SyncGroup's, which an outage at the stop rarely leaves. */
        return 1;
    int64_t deadline = of_mono_ms() + FIRST_ASSIGNMENT_WAIT_MS;
    while (!atomic_load(&c->assigned_once) && of_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 100);
        if (m)
            rd_kafka_message_destroy(m);
    }
    return atomic_load(&c->assigned_once);
}

static void kb_consumer_close(of_consumer *consumer)
{
    kconsumer *c = (kconsumer *)consumer;
    if (!c)
        return;
    int destroyable = await_first_assignment(c);
    /* Leaves the group: revocation (and the final commit of stored offsets) happens here. */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
    if (err)
        of_log(OF_LVL_WARN, NULL, NULL, "kafka: closing a consumer: %s", rd_kafka_err2str(err));
    if (!destroyable) {
        /* Destroying it would abort the daemon; the closed handle (and c, its opaque) is left. */
        of_log(OF_LVL_WARN, NULL, NULL,
               "kafka: group %s: no assignment within %d ms of the stop; the closed consumer is "
               "left undestroyed (librdkafka %s aborts destroying it: upgrade to 2.3.0 or later)",
               c->group, FIRST_ASSIGNMENT_WAIT_MS, rd_kafka_version_str());
        return;
    }
    rd_kafka_destroy(c->rk);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void kb_destroy(of_bus *bus)
{
    kbus *b = (kbus *)bus;
    if (!b)
        return;
    if (b->producer) {
        /* What is still queued is delivered (or fails) before the producer goes. */
        if (rd_kafka_flush(b->producer, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
            of_log(OF_LVL_WARN, NULL, NULL, "kafka: %d event%s undelivered at shutdown",
                   rd_kafka_outq_len(b->producer), rd_kafka_outq_len(b->producer) == 1 ? "" : "s");
    }
    pthread_mutex_lock(&b->mu);
    atomic_store(&b->stop, 1);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (b->health_started)
        pthread_join(b->health, NULL);
    if (b->poller_started)
        pthread_join(b->poller, NULL);
    if (b->producer)
        rd_kafka_destroy(b->producer);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static int kb_high_watermark(of_consumer *consumer, const char *topic, int32_t partition,
                             int64_t *high)
{
    kconsumer *c = (kconsumer *)consumer;
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(c->rk, topic, partition, &lo, &hi) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0)
        return -1;
    *high = hi;
    return 0;
}

static const of_bus_ops kafkabus_ops = {
    .name = "kafka",
    .ensure_topic = kb_ensure_topic,
    .produce = kb_produce,
    .subscribe = kb_subscribe,
    .poll = kb_poll,
    .commit = kb_commit,
    .pause = kb_pause,
    .resume = kb_resume,
    .wakeup = kb_wakeup,
    .consumer_close = kb_consumer_close,
    .ready = kb_ready,
    .flush = kb_flush,
    .destroy = kb_destroy,
    .high_watermark = kb_high_watermark,
};

of_bus *of_kafkabus_new(const of_kafka_config *cfg, char *errstr, size_t errstr_size)
{
    kbus *b = calloc(1, sizeof(*b));
    if (!b) {
        of_seterr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    b->base.ops = &kafkabus_ops;
    b->cfg = cfg;
    if (pthread_mutex_init(&b->mu, NULL) != 0 || of_cond_init_monotonic(&b->cv) != 0) {
        free(b);
        of_seterr(errstr, errstr_size, "out of resources");
        return NULL;
    }
    snprintf(b->ready_err, sizeof(b->ready_err), "not yet connected");
    rd_kafka_conf_t *conf = of_kafka_conf_new(cfg, OF_KAFKA_PRODUCER, NULL, errstr, errstr_size);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    char why[512];
    b->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!b->producer) {
        rd_kafka_conf_destroy(conf);
        of_seterr(errstr, errstr_size, "kafka producer: %s", why);
        goto fail;
    }
    if (pthread_create(&b->poller, NULL, poller_main, b) != 0)
        goto fail_threads;
    b->poller_started = 1;
    of_thread_name(b->poller, "of-kafka-acks", NULL);
    if (pthread_create(&b->health, NULL, health_main, b) != 0)
        goto fail_threads;
    b->health_started = 1;
    of_thread_name(b->health, "of-kafka-health", NULL);
    return &b->base;
fail_threads:
    of_seterr(errstr, errstr_size, "cannot start the kafka threads");
fail:
    kb_destroy(&b->base);
    return NULL;
}
