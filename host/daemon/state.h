/* What one reading of the configuration gives the daemon: the host configuration, the plugins
 * found in its plugin folders and the pipelines. The daemon runs on one; a hot reload reads the
 * next and keeps the earlier ones while any of their stages still run (stages borrow their
 * definitions from them). */
#ifndef OF_DAEMON_STATE_H
#define OF_DAEMON_STATE_H

#include "hostconfig.h"
#include "pipeline.h"
#include "plugin.h"

#include <stdio.h>

typedef struct daemon_state {
    of_host_config *cfg;
    of_plugin_registry reg;
    of_pipeline **pipelines;
    size_t n_pipelines;
} daemon_state;

/* Reads config_path, scans the plugin folders and loads every pipeline, with the checks of
 * `orderflow lint`; every problem is printed to out (stderr at start; the log on a reload).
 * Returns the number of errors (0: usable). st must be freed with state_free either way. */
int state_load(daemon_state *st, const char *config_path, FILE *out);
void state_free(daemon_state *st);

/* 1 when some pipeline declares routes or the configuration has an http: section. */
int state_wants_gateway(const daemon_state *st);

#endif
