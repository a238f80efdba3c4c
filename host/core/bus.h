/* The bus: topics with keyed partitions, consumer groups and committed offsets. The embedded
 * in-memory bus (bus_memory.c) and the Kafka bus implement the same operations, so the runner
 * does not know which it drives. Semantics follow Kafka: a partition is an ordered log, a
 * group's position advances on poll, its committed offset only on commit. */
#ifndef OF_BUS_H
#define OF_BUS_H

#include "event.h"

#include <stddef.h>
#include <stdint.h>

typedef struct of_bus of_bus;
typedef struct of_consumer of_consumer;

/* Called once per produced event when the bus has it durably (or failed to): err is 0 or a
 * negative code with errstr: OF_BUS_ERR_PERMANENT when the event can never be delivered as it
 * is (larger than the broker takes, an invalid record), -1 for anything that may pass later.
 * May run on any thread, also inside produce(). */
#define OF_BUS_ERR_PERMANENT (-2)
typedef void (*of_delivery_cb)(void *opaque, int err, const char *errstr);

/* Partition ownership changes (Kafka rebalances), called from inside poll() on the thread that
 * polls. `revoked` with lost == 0: the partition is about to go to another consumer; the
 * callee may block to let its in-flight events finish, and commits still work during the call.
 * lost != 0: the partition is already gone (commits would fail): in-flight events of it must be
 * given up uncommitted. `assigned`: a partition was added. Either may be NULL. */
typedef struct of_consumer_hooks {
    void *opaque;
    void (*assigned)(void *opaque, const char *topic, int32_t partition);
    void (*revoked)(void *opaque, const char *topic, int32_t partition, int lost);
} of_consumer_hooks;

typedef struct of_bus_ops {
    const char *name; /* "memory", "kafka" */
    /* Creates the topic when missing (partitions >= 1). An existing topic is left as it is. */
    int (*ensure_topic)(of_bus *bus, const char *topic, int partitions, int replication,
                        char *errstr, size_t errstr_size);
    /* Hands a copy of ev (key, payload, headers; its topic/partition/offset are ignored) to the
     * bus for `topic`; the partition is chosen from the key (murmur2 as Kafka, or round-robin
     * when keyless). Returns 0 when accepted (cb follows), -1 (or OF_BUS_ERR_PERMANENT: it
     * can never be taken) with errstr when refused at once (cb is then not called). */
    int (*produce)(of_bus *bus, const char *topic, const of_event *ev, of_delivery_cb cb,
                   void *opaque, char *errstr, size_t errstr_size);
    /* Joins `group` on these topics. hooks (copied; may be NULL) hear of rebalances. */
    of_consumer *(*subscribe)(of_bus *bus, const char *group, const char *const *topics,
                              size_t n_topics, const of_consumer_hooks *hooks, char *errstr,
                              size_t errstr_size);
    /* Next event at the group's position: 1 with *out (caller owns it, topic/partition/offset
     * set), 0 on timeout or while paused, -1 on error. timeout_ms 0 does not block; < 0 blocks
     * until an event, a resume or wakeup(). */
    int (*poll)(of_consumer *c, of_event **out, int timeout_ms);
    /* Commits `next_offset` (the offset of the next event to read) for a partition. */
    int (*commit)(of_consumer *c, const char *topic, int32_t partition, int64_t next_offset);
    /* Stop / restart handing out events (backpressure, open breaker). */
    void (*pause)(of_consumer *c);
    void (*resume)(of_consumer *c);
    /* Wakes a poll() blocked in another thread (or makes the next poll() return 0 at once). */
    void (*wakeup)(of_consumer *c);
    void (*consumer_close)(of_consumer *c);
    /* 1 when the bus can serve (the broker answers), 0 with the reason in errstr. Cheap: it
     * reports the last known state and never blocks. */
    int (*ready)(of_bus *bus, char *errstr, size_t errstr_size);
    /* Waits up to timeout_ms for every produced event's delivery callback; 0 when none is left. */
    int (*flush)(of_bus *bus, int timeout_ms);
    void (*destroy)(of_bus *bus);
    /* The partition's high watermark (the offset the next event produced will get) as the
     * consumer last heard it: cached, never blocks. 0 with *high, or -1 when not known. May be
     * NULL (consumer lag is then not reported). */
    int (*high_watermark)(of_consumer *c, const char *topic, int32_t partition, int64_t *high);
} of_bus_ops;

struct of_bus {
    const of_bus_ops *ops;
};

/* The embedded bus. One consumer per group (a second subscribe to a group with a live consumer
 * is refused); a new group starts at the earliest event kept. A partition's events are freed
 * once every group that subscribed to its topic has committed past them; topics no group reads
 * keep everything. Its destroy also frees consumers left open. */
of_bus *of_membus_new(void);
/* retain != 0: never free committed events, so of_membus_read_topic also sees everything that
 * went through topics a stage consumes (`orderflow test` expectations on intermediate topics).
 * Default 0: trim, so a long-running embedded bus stays bounded. */
void of_membus_set_retain(of_bus *bus, int retain);
/* 1 when every group has committed every event of every partition of its topics, i.e. nothing
 * is left to process; waits up to timeout_ms for that. */
int of_membus_wait_idle(of_bus *bus, int timeout_ms);
/* Reads a topic's events in partition then offset order without a group (tests, `orderflow
 * test`): calls fn for each; stops when fn returns non-zero. Returns the count visited. fn runs
 * under the bus's lock: it must not call the bus. */
size_t of_membus_read_topic(of_bus *bus, const char *topic,
                            int (*fn)(const of_event *ev, void *opaque), void *opaque);

struct of_kafka_config;
/* The Kafka bus (bus_kafka.c). The configuration is borrowed and must outlive the bus. NULL with
 * errstr when the clients cannot be created (a broker that is down is not such an error: the
 * bus then reports itself not ready and librdkafka keeps reconnecting). */
of_bus *of_kafkabus_new(const struct of_kafka_config *cfg, char *errstr, size_t errstr_size);

/* Kafka's default partitioner hash, so both buses place a key on the same partition. */
uint32_t of_murmur2(const void *key, size_t len);

#endif
