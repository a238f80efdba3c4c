/* The host configuration file (orderflow.yaml): where plugins and pipelines are, which bus, how
 * to log. Later issues add kafka, mysql, redis and http sections. */
#ifndef OF_HOSTCONFIG_H
#define OF_HOSTCONFIG_H

#include "diag.h"
#include "log.h"

#include <stddef.h>
#include <stdint.h>

typedef enum of_bus_kind { OF_BUS_MEMORY = 0, OF_BUS_KAFKA = 1 } of_bus_kind;

typedef struct of_kv {
    char *key;
    char *value;
} of_kv;

/* bus.kafka: how to reach the broker. `properties` are librdkafka configuration properties
 * (validated against librdkafka itself at load, so an unknown or invalid one is an error with
 * its position); those the host manages for its guarantees (group.id, enable.auto.commit,
 * enable.idempotence, acks, ...) are refused. */
typedef struct of_kafka_config {
    char *bootstrap;   /* bootstrap.servers, required with type: kafka */
    of_kv *properties; /* in file order */
    size_t n_properties;
    char *client_id; /* default "orderflowd" */
} of_kafka_config;

struct of_mysql_config; /* db.h */
struct of_redis_config; /* cache.h */
struct of_http_config;  /* gateway.h */

typedef struct of_host_config {
    char *file;
    char **plugin_dirs; /* relative paths are resolved against the config file's folder */
    size_t n_plugin_dirs;
    char **pipelines; /* pipeline files (globs expanded, relative to the config's folder) */
    size_t n_pipelines;
    of_bus_kind bus;
    of_kafka_config kafka;         /* with bus == OF_BUS_KAFKA */
    struct of_mysql_config *mysql; /* NULL without a `mysql:` section */
    struct of_redis_config *redis; /* NULL without a `redis:` section */
    struct of_http_config *http;   /* NULL without an `http:` section */
    of_log_level_t log_level;
    of_log_format log_format;
    int64_t drain_timeout_ms; /* how long SIGTERM waits for in-flight events; default 30s */
} of_host_config;

/* Loads and validates; all problems to diag; NULL on any error. */
of_host_config *of_host_config_load(const char *path, of_diag *diag);
void of_host_config_free(of_host_config *cfg);

#endif
