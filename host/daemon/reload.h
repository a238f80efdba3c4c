/* Hot reload (SIGHUP): the configuration is read again, checked and its plugins loaded while the
 * pipelines keep running; only when all of that worked are the stages whose definition changed
 * (or that went away) drained and replaced, and the new ones started. Stages whose definition
 * is unchanged keep running untouched, events and all. A reload that fails leaves everything as
 * it was and says why (the log; /readyz's "config" check).
 *
 * What a reload cannot change (the bus, mysql:, redis:, http:, which are opened once at start)
 * is reported as needing a restart and otherwise ignored. */
#ifndef OF_DAEMON_RELOAD_H
#define OF_DAEMON_RELOAD_H

#include "db.h"
#include "gateway.h"
#include "runner.h"
#include "state.h"

typedef struct daemon_gens {
    const char *config_path;
    daemon_state *current;
    daemon_state **retired; /* earlier generations some running stage still borrows from */
    size_t n_retired;
    of_runner *runner;
    of_gateway *gw; /* NULL without a gateway */
    of_db_pool *db; /* NULL without a database */
} daemon_gens;

/* One reload. 0 when the new configuration runs (possibly with nothing to change); -1 when it
 * was refused or could not be applied, with the reason in why. */
int daemon_reload(daemon_gens *g, char *why, size_t why_size);
/* Frees the current and retired generations (after the runner is freed). */
void daemon_gens_free(daemon_gens *g);

#endif
