#include "kafka_conf.h"

#include "timeutil.h"

#include <stdio.h>
#include <string.h>

/* What the guarantees rest on: set by the host for every client, never by the operator. */
static const char *const managed[] = {
    "bootstrap.servers", /* bus.kafka.bootstrap */
    "metadata.broker.list",
    "group.id",                 /* a stage's consumer_group */
    "enable.auto.commit",       /* stored offsets are committed in the background... */
    "enable.auto.offset.store", /* ...but only the host stores them, after an event finished */
    "enable.idempotence",       /* no duplicates or reordering from producer retries */
    "acks",
    "request.required.acks",
    "partition.assignment.strategy",
    "enable.partition.eof",
    NULL,
};

int of_kafka_property_managed(const char *key)
{
    for (size_t i = 0; managed[i]; i++)
        if (strcmp(managed[i], key) == 0)
            return 1;
    return 0;
}

int of_kafka_property_check(const char *key, const char *value, char *errstr, size_t errstr_size)
{
    if (of_kafka_property_managed(key)) {
        of_seterr(errstr, errstr_size,
                  "kafka property '%s' is managed by orderflow and cannot be set here", key);
        return -1;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char why[512] = "";
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, key, value, why, sizeof(why));
    rd_kafka_conf_destroy(conf);
    if (res == RD_KAFKA_CONF_UNKNOWN) {
        of_seterr(errstr, errstr_size, "unknown kafka property '%s'", key);
        return -1;
    }
    if (res != RD_KAFKA_CONF_OK) {
        of_seterr(errstr, errstr_size, "invalid value for kafka property '%s': %s", key, why);
        return -1;
    }
    return 0;
}

static int set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
               size_t errstr_size)
{
    char why[512] = "";
    if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        of_seterr(errstr, errstr_size, "kafka property %s=%s: %s", key, value, why);
        return -1;
    }
    return 0;
}

rd_kafka_conf_t *of_kafka_conf_new(const of_kafka_config *kc, of_kafka_role role, const char *group,
                                   char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        of_seterr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    const char *client = kc->client_id ? kc->client_id : "orderflowd";
    if (set(conf, "bootstrap.servers", kc->bootstrap ? kc->bootstrap : "", errstr, errstr_size) ||
        set(conf, "client.id", client, errstr, errstr_size))
        goto fail;
    /* A new group reads from the beginning, so events produced before a stage first ran are not
     * skipped; an operator property may say otherwise. */
    /* Keys go to the partition Kafka's Java clients and the embedded bus choose (murmur2), so
     * events of one order keep one partition whichever client produced them. */
    if (role == OF_KAFKA_PRODUCER &&
        (set(conf, "partitioner", "murmur2_random", errstr, errstr_size) ||
         /* A delivery gives up within a minute, so a drain and the outbox relay's grace (which
          * must be longer) stay bounded; an operator property may say otherwise. */
         set(conf, "message.timeout.ms", "60000", errstr, errstr_size) ||
         /* Every hop's worker waits for the broker's ack, so a batch should not wait long;
          * but each produce request costs the broker (and this process) a wake-up: at 1 ms the
          * producer sent ~1,150 requests a second at 560 orders/s. 5 ms (librdkafka's default) was
          * measured with the consumers' fetch wait below (bench/RESULTS.md, step 34); an operator
          * property may say otherwise. */
         set(conf, "linger.ms", "5", errstr, errstr_size)))
        goto fail;
    if (role == OF_KAFKA_CONSUMER &&
        (set(conf, "auto.offset.reset", "earliest", errstr, errstr_size) ||
         set(conf, "auto.commit.interval.ms", "200", errstr, errstr_size) ||
         /* Each stage has a consumer, and a backlog would have each prefetch up to librdkafka's
          * default 64 MiB: 4 MiB a stage keeps the workers fed (the runner bounds what is in
          * flight anyway) and the daemon's memory flat; an operator property may say
          * otherwise. */
         set(conf, "queued.max.messages.kbytes", "4096", errstr, errstr_size) ||
         /* The broker answers a fetch at its first byte: at 560 orders/s each busy stage's
          * consumer fetched ~430 times a second, each a response and a worker round for a few
          * events. Held up to 10 ms or 64 KiB, the rounds are fuller and the requests fewer (at
          * 200 orders/s the daemon's CPU -15 %, the broker's -18 %, the database's commits
          * -17 %) for at most 10 ms a hop at light load; a busy stage fills 64 KiB sooner
          * (bench/RESULTS.md, step 34). An operator property may say otherwise. */
         set(conf, "fetch.wait.max.ms", "10", errstr, errstr_size) ||
         set(conf, "fetch.min.bytes", "65536", errstr, errstr_size)))
        goto fail;
    /* Operator properties next, so the managed ones below always win. librdkafka warns about
     * a producer-only property on a consumer and the reverse; those are passed only to the
     * role they belong to by librdkafka itself (it ignores them elsewhere). */
    for (size_t i = 0; i < kc->n_properties; i++)
        if (set(conf, kc->properties[i].key, kc->properties[i].value, errstr, errstr_size))
            goto fail;
    switch (role) {
    case OF_KAFKA_PRODUCER:
        if (set(conf, "enable.idempotence", "true", errstr, errstr_size) ||
            set(conf, "acks", "all", errstr, errstr_size))
            goto fail;
        break;
    case OF_KAFKA_CONSUMER:
        if (!group || !*group) {
            of_seterr(errstr, errstr_size, "a consumer needs a group");
            goto fail;
        }
        /* At-least-once: the runner stores an offset only once every event below it finished
         * and what it emitted was acknowledged; librdkafka commits stored offsets in the
         * background, on revocation and on close. Storing is cheap, so per-event completion
         * does not turn into a commit request per event. */
        if (set(conf, "group.id", group, errstr, errstr_size) ||
            set(conf, "enable.auto.commit", "true", errstr, errstr_size) ||
            set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) ||
            set(conf, "enable.partition.eof", "false", errstr, errstr_size) ||
            set(conf, "partition.assignment.strategy", "cooperative-sticky", errstr, errstr_size))
            goto fail;
        break;
    case OF_KAFKA_ADMIN:
        break;
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}
