/* librdkafka configuration objects built from the host configuration: the operator's
 * `bus.kafka.properties`, then the properties orderflow's guarantees depend on, which the
 * operator cannot override (idempotent producer with acks=all, manual offset commits,
 * cooperative-sticky rebalancing). */
#ifndef OF_KAFKA_CONF_H
#define OF_KAFKA_CONF_H

#include "hostconfig.h"

#include <librdkafka/rdkafka.h>

#include <stddef.h>

typedef enum of_kafka_role {
    OF_KAFKA_PRODUCER = 0,
    OF_KAFKA_CONSUMER = 1,
    OF_KAFKA_ADMIN = 2
} of_kafka_role;

/* 1 when the host manages this property itself (it cannot be set in bus.kafka.properties). */
int of_kafka_property_managed(const char *key);

/* Checks one operator property against librdkafka: unknown, invalid value, or managed by the
 * host. Returns 0, or -1 with the reason in errstr. */
int of_kafka_property_check(const char *key, const char *value, char *errstr, size_t errstr_size);

/* A new configuration for a role. `group` is the consumer group (consumers only). The caller
 * owns the result (rd_kafka_new takes it over). NULL with errstr on failure. */
rd_kafka_conf_t *of_kafka_conf_new(const of_kafka_config *kc, of_kafka_role role, const char *group,
                                   char *errstr, size_t errstr_size);

#endif
