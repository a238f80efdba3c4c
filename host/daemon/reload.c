/* Hot reload (reload.h). */
#include "reload.h"

#include "cache.h"
#include "log.h"
#include "stage_runtime.h"

#include <stdlib.h>
#include <string.h>

/* Prints what the configuration check found into the log, line by line. */
static int load_logged(daemon_state *st, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    int errors = state_load(st, path, mem ? mem : stderr);
    if (mem) {
        fclose(mem);
        for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
            nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            if (*line)
                of_log(errors ? OF_LVL_ERROR : OF_LVL_WARN, NULL, NULL, "reload: %s", line);
        }
        free(text);
    }
    return errors;
}

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The sections opened once at start: a change is logged as needing a restart. */
static void warn_restart_only(const of_host_config *a, const of_host_config *b)
{
    const char *changed[4];
    size_t n = 0;
    if (a->bus != b->bus || !str_eq(a->kafka.bootstrap, b->kafka.bootstrap) ||
        a->kafka.n_properties != b->kafka.n_properties)
        changed[n++] = "bus";
    if (!a->mysql != !b->mysql ||
        (a->mysql && (!str_eq(a->mysql->host, b->mysql->host) || a->mysql->port != b->mysql->port ||
                      !str_eq(a->mysql->database, b->mysql->database))))
        changed[n++] = "mysql";
    if (!a->redis != !b->redis ||
        (a->redis && (!str_eq(a->redis->host, b->redis->host) || a->redis->port != b->redis->port ||
                      !str_eq(a->redis->key_prefix, b->redis->key_prefix))))
        changed[n++] = "redis";
    if (!a->http != !b->http || (a->http && !str_eq(a->http->listen, b->http->listen)))
        changed[n++] = "http";
    for (size_t i = 0; i < n; i++)
        of_log(OF_LVL_WARN, NULL, NULL,
               "reload: the %s: section changed; it is opened once at start, so the change takes "
               "effect after a restart",
               changed[i]);
}

/* The running stage of pipeline `pipeline` named `name`, or NULL. */
static of_stage *running(of_runner *r, const char *pipeline, const char *name)
{
    for (size_t i = 0; i < of_runner_stage_count(r); i++) {
        of_stage *st = of_runner_stage_at(r, i);
        if (st && strcmp(st->pipeline_name, pipeline) == 0 && strcmp(st->def->name, name) == 0)
            return st;
    }
    return NULL;
}

/* 1 when a running stage borrows its definition from one of st's pipelines. */
static int in_use(of_runner *r, const daemon_state *st)
{
    for (size_t i = 0; i < of_runner_stage_count(r); i++) {
        const of_stage *s = of_runner_stage_at(r, i);
        for (size_t k = 0; s && k < st->n_pipelines; k++) {
            const of_pipeline *p = st->pipelines[k];
            if (s->def >= p->stages && s->def < p->stages + p->n_stages)
                return 1;
        }
    }
    return 0;
}

static void log_migration(void *opaque, const char *component, const of_migration *m)
{
    (void)opaque;
    of_log(OF_LVL_INFO, NULL, NULL, "reload: database: applied migration %s %d (%s)", component,
           m->version, m->name);
}

int daemon_reload(daemon_gens *g, char *why, size_t why_size)
{
    why[0] = '\0';
    daemon_state *next = calloc(1, sizeof(*next));
    if (!next) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    int errors = load_logged(next, g->config_path);
    if (errors) {
        snprintf(why, why_size,
                 "%d error%s in the configuration (see the log); still running "
                 "the previous one",
                 errors, errors == 1 ? "" : "s");
        state_free(next);
        free(next);
        return -1;
    }
    warn_restart_only(g->current->cfg, next->cfg);
    if (!g->gw && state_wants_gateway(next)) {
        snprintf(why, why_size,
                 "the new configuration serves HTTP routes, and this host started without its "
                 "HTTP gateway: restart to serve them");
        state_free(next);
        free(next);
        return -1;
    }
    char err[1024] = "";
    if (g->db && of_db_migrate_all(g->db, &next->reg, log_migration, NULL, err, sizeof(err)) != 0) {
        snprintf(why, why_size, "database migrations: %s", err);
        state_free(next);
        free(next);
        return -1;
    }

    /* Which stages change: same pipeline, same name and an equal definition keep running. */
    size_t n_keep = 0, n_new = 0;
    of_stage **keep = NULL;
    unsigned char **want = calloc(next->n_pipelines ? next->n_pipelines : 1, sizeof(*want));
    of_stage ***made = calloc(next->n_pipelines ? next->n_pipelines : 1, sizeof(*made));
    size_t *n_made = calloc(next->n_pipelines ? next->n_pipelines : 1, sizeof(*n_made));
    size_t n_running = of_runner_stage_count(g->runner);
    keep = calloc(n_running ? n_running : 1, sizeof(*keep));
    of_stage **retire = calloc(n_running ? n_running : 1, sizeof(*retire));
    size_t n_retire = 0;
    int rc = -1;
    if (!want || !made || !n_made || !keep || !retire) {
        snprintf(why, why_size, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < next->n_pipelines; i++) {
        const of_pipeline *p = next->pipelines[i];
        if (!(want[i] = calloc(p->n_stages ? p->n_stages : 1, 1))) {
            snprintf(why, why_size, "out of memory");
            goto out;
        }
        for (size_t k = 0; k < p->n_stages; k++) {
            of_stage *old = running(g->runner, p->name, p->stages[k].name);
            if (old && of_stage_def_equal(old->def, &p->stages[k]))
                keep[n_keep++] = old;
            else
                want[i][k] = 1, n_new++;
        }
    }
    for (size_t i = 0; i < n_running; i++) {
        of_stage *st = of_runner_stage_at(g->runner, i);
        int kept = 0;
        for (size_t k = 0; k < n_keep && !kept; k++)
            kept = keep[k] == st;
        if (!kept)
            retire[n_retire++] = st;
    }

    /* The new and changed stages are set up and initialised while the old ones run. */
    for (size_t i = 0; i < next->n_pipelines; i++) {
        if (of_runner_prepare(g->runner, next->pipelines[i], want[i], &made[i], &n_made[i], err,
                              sizeof(err)) != 0) {
            snprintf(why, why_size, "pipeline '%s': %s", next->pipelines[i]->name, err);
            goto out;
        }
    }
    if (g->gw) {
        size_t n_all = n_keep + n_new, at = 0;
        of_stage **all = calloc(n_all ? n_all : 1, sizeof(*all));
        if (!all) {
            snprintf(why, why_size, "out of memory");
            goto out;
        }
        for (size_t k = 0; k < n_keep; k++)
            all[at++] = keep[k];
        for (size_t i = 0; i < next->n_pipelines; i++)
            for (size_t k = 0; k < n_made[i]; k++)
                all[at++] = made[i][k];
        int grc = of_gateway_reload(g->gw, all, at, (const of_pipeline *const *)next->pipelines,
                                    next->n_pipelines, err, sizeof(err));
        free(all);
        if (grc != 0) {
            snprintf(why, why_size, "HTTP routes:\n%s", err);
            goto out;
        }
    }

    /* The point of no return: the stages that change are drained (their consumers commit and
     * leave their groups), then their successors start and join the groups, reading on from
     * the committed offsets: nothing is lost, nothing is taken twice. */
    size_t abandoned = 0;
    for (size_t i = 0; i < n_retire; i++) {
        of_log(OF_LVL_INFO, retire[i]->pipeline_name, retire[i]->def->name,
               "reload: draining the stage");
        abandoned += of_runner_retire(g->runner, retire[i], g->current->cfg->drain_timeout_ms);
    }
    if (abandoned)
        of_log(OF_LVL_WARN, NULL, NULL,
               "reload: %zu event%s not finished in time; left uncommitted for redelivery",
               abandoned, abandoned == 1 ? "" : "s");
    rc = 0;
    for (size_t i = 0; i < next->n_pipelines; i++) {
        of_stage **m = made[i];
        size_t n = n_made[i];
        made[i] = NULL;
        n_made[i] = 0;
        if (of_runner_adopt(g->runner, m, n, err, sizeof(err)) != 0) {
            snprintf(why, why_size, "pipeline '%s': a stage could not start: %s",
                     next->pipelines[i]->name, err);
            rc = -1;
        }
    }
    of_log(rc == 0 ? OF_LVL_INFO : OF_LVL_ERROR, NULL, NULL,
           "reload: %zu stage%s kept running, %zu stopped, %zu started%s", n_keep,
           n_keep == 1 ? "" : "s", n_retire, n_new, rc == 0 ? "" : " (some failed to start)");

    /* The new generation is current; an earlier one goes once no running stage borrows from
     * it. */
    daemon_state **gens = realloc(g->retired, (g->n_retired + 1) * sizeof(*gens));
    if (gens) {
        g->retired = gens;
        g->retired[g->n_retired++] = g->current;
    } /* else: the old generation leaks rather than being freed under a running stage */
    g->current = next;
    next = NULL;
    for (size_t i = g->n_retired; i > 0; i--) {
        if (in_use(g->runner, g->retired[i - 1]))
            continue;
        state_free(g->retired[i - 1]);
        free(g->retired[i - 1]);
        memmove(g->retired + i - 1, g->retired + i, (g->n_retired - i) * sizeof(*g->retired));
        g->n_retired--;
    }
out:
    for (size_t i = 0; next && i < next->n_pipelines; i++)
        if (made && made[i])
            of_runner_discard(made[i], n_made[i]);
    for (size_t i = 0; want && next && i < next->n_pipelines; i++)
        free(want[i]);
    if (!next && want) {
        for (size_t i = 0; i < g->current->n_pipelines; i++)
            free(want[i]);
    }
    free(want);
    free(made);
    free(n_made);
    free(keep);
    free(retire);
    if (next) {
        state_free(next);
        free(next);
    }
    return rc;
}

void daemon_gens_free(daemon_gens *g)
{
    for (size_t i = 0; i < g->n_retired; i++) {
        state_free(g->retired[i]);
        free(g->retired[i]);
    }
    free(g->retired);
    g->retired = NULL;
    g->n_retired = 0;
    if (g->current) {
        state_free(g->current);
        free(g->current);
        g->current = NULL;
    }
}
