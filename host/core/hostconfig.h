/* The host configuration file (orderflow.yaml): where plugins and pipelines are, which bus, how
 * to log. Later issues add kafka, mysql, redis and http sections. */
#ifndef OF_HOSTCONFIG_H
#define OF_HOSTCONFIG_H

#include "diag.h"
#include "log.h"

#include <stddef.h>
#include <stdint.h>

typedef enum of_bus_kind { OF_BUS_MEMORY = 0 } of_bus_kind;

typedef struct of_host_config {
    char *file;
    char **plugin_dirs; /* relative paths are resolved against the config file's folder */
    size_t n_plugin_dirs;
    char **pipelines; /* pipeline files (globs expanded, relative to the config's folder) */
    size_t n_pipelines;
    of_bus_kind bus;
    of_log_level_t log_level;
    of_log_format log_format;
    int64_t drain_timeout_ms; /* how long SIGTERM waits for in-flight events; default 30s */
} of_host_config;

/* Loads and validates; all problems to diag; NULL on any error. */
of_host_config *of_host_config_load(const char *path, of_diag *diag);
void of_host_config_free(of_host_config *cfg);

#endif
