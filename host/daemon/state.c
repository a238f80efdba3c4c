/* Loading the configuration, its plugins and its pipelines (state.h). */
#include "state.h"

#include <stdlib.h>

int state_load(daemon_state *st, const char *config_path, FILE *out)
{
    of_diag diag;
    of_diag_init(&diag);
    of_registry_init(&st->reg);
    st->cfg = of_host_config_load(config_path, &diag);
    if (st->cfg) {
        of_registry_scan(&st->reg, (const char *const *)st->cfg->plugin_dirs,
                         st->cfg->n_plugin_dirs, &diag);
        st->pipelines =
            calloc(st->cfg->n_pipelines ? st->cfg->n_pipelines : 1, sizeof(*st->pipelines));
        for (size_t i = 0; st->pipelines && i < st->cfg->n_pipelines; i++) {
            of_pipeline *p = of_pipeline_load(st->cfg->pipelines[i], &st->reg, &diag);
            if (p)
                st->pipelines[st->n_pipelines++] = p;
        }
        if (st->cfg->n_pipelines == 0)
            of_diag_add(&diag, OF_SEV_ERROR, config_path, 0, 0, "no pipeline to run");
    }
    of_diag_print(&diag, out);
    int errors = (int)diag.errors;
    of_diag_free(&diag);
    return errors;
}

void state_free(daemon_state *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_pipelines; i++)
        of_pipeline_free(st->pipelines[i]);
    free(st->pipelines);
    of_registry_free(&st->reg);
    of_host_config_free(st->cfg);
    st->pipelines = NULL;
    st->n_pipelines = 0;
    st->cfg = NULL;
}

int state_wants_gateway(const daemon_state *st)
{
    size_t n_routes = 0;
    for (size_t i = 0; i < st->n_pipelines; i++)
        n_routes += st->pipelines[i]->n_routes;
    return st->cfg->http || n_routes > 0;
}
