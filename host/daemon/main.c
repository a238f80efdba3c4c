/* orderflowd: loads the host configuration, refuses to start on any error in it, its plugins or
 * its pipelines (the same checks as `orderflow lint`), runs the pipelines, and drains in-flight
 * events on SIGTERM. */
#include "bus.h"
#include "cache.h"
#include "db.h"
#include "gateway.h"
#include "stage_tx.h"
#include "hostconfig.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "plugin.h"
#include "runner.h"
#include "ws_hub.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef OF_VERSION
#define OF_VERSION "0.0.0"
#endif

#define DEFAULT_CONFIG "/etc/orderflow/orderflow.yaml"

static void usage(FILE *out)
{
    fputs("usage: orderflowd [-c CONFIG] [--check] [--version]\n"
          "  -c, --config FILE   host configuration (default " DEFAULT_CONFIG ")\n"
          "      --check         validate the configuration, its plugins and pipelines, then exit\n"
          "  -V, --version       print the version\n",
          out);
}

typedef struct daemon_state daemon_state;
struct daemon_state {
    of_host_config *cfg;
    of_plugin_registry reg;
    of_pipeline **pipelines;
    size_t n_pipelines;
};

/* Readiness probes for /readyz. */
static int probe_kafka(void *opaque, char *detail, size_t size)
{
    of_bus *bus = opaque;
    return bus->ops->ready(bus, detail, size) ? 0 : -1;
}

static int probe_mysql(void *opaque, char *detail, size_t size)
{
    return of_db_ping(opaque, detail, size);
}

static int probe_redis(void *opaque, char *detail, size_t size)
{
    if (of_cache_ping(opaque) == 0)
        return 0;
    snprintf(detail, size, "redis does not answer");
    return -1;
}

/* The HTTP gateway, when the configuration has an http: section or a pipeline declares routes:
 * its handlers are the stages' (already initialised by the runner). */
/* 1 when the host serves HTTP: an http: section, or a pipeline with routes. */
static int wants_gateway(const daemon_state *st)
{
    size_t n_routes = 0;
    for (size_t i = 0; i < st->n_pipelines; i++)
        n_routes += st->pipelines[i]->n_routes;
    return st->cfg->http || n_routes > 0;
}

/* The WebSocket hub, before the stages start (they may publish from their first event). */
static of_ws_hub *start_ws_hub(daemon_state *st, of_metrics *metrics, char *err, size_t err_size)
{
    of_http_config defaults;
    memset(&defaults, 0, sizeof(defaults));
    const of_http_config *hc = st->cfg->http;
    if (!hc) {
        of_http_config_default(&defaults);
        hc = &defaults;
    }
    of_ws_hub *hub = of_gateway_ws_hub_new(hc, st->cfg->redis, metrics);
    if (hc == &defaults)
        of_http_config_free(&defaults);
    if (!hub) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (of_ws_hub_start(hub, err, err_size) != 0) {
        of_ws_hub_free(hub);
        return NULL;
    }
    return hub;
}

static of_gateway *start_gateway(daemon_state *st, of_runner *runner, of_bus *bus, of_db_pool *db,
                                 of_cache_pool *cache, of_ws_hub *hub, of_http_invoker *invoker,
                                 char *err, size_t err_size)
{
    if (!wants_gateway(st))
        return NULL;
    of_http_config defaults;
    memset(&defaults, 0, sizeof(defaults));
    const of_http_config *hc = st->cfg->http;
    if (!hc) {
        of_http_config_default(&defaults);
        hc = &defaults;
    }
    invoker->db = db;
    invoker->bus = bus;
    of_gateway *gw = of_gateway_new(hc, of_http_invoke, invoker);
    if (hc == &defaults)
        of_http_config_free(&defaults);
    if (!gw) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    of_gateway_set_cache_pool(gw, cache);
    of_gateway_set_ws_hub(gw, hub);
    for (size_t i = 0; i < of_runner_stage_count(runner); i++)
        of_gateway_add_stage(gw, of_runner_stage_at(runner, i));
    for (size_t i = 0; i < st->n_pipelines; i++) {
        const of_pipeline *p = st->pipelines[i];
        of_gateway_add_routes(gw, p->name, p->file, p->routes, p->n_routes);
    }
    of_gateway_add_probe(gw, bus->ops->name, probe_kafka, bus);
    if (db)
        of_gateway_add_probe(gw, "mysql", probe_mysql, db);
    if (cache)
        of_gateway_add_probe(gw, "redis", probe_redis, cache);
    if (of_gateway_start(gw, err, err_size) != 0) {
        of_gateway_free(gw);
        return NULL;
    }
    return gw;
}

static void log_migration(void *opaque, const char *component, const of_migration *m)
{
    (void)opaque;
    of_log(OF_LVL_INFO, NULL, NULL, "database: applied migration %s %d (%s)", component, m->version,
           m->name);
}

static void state_free(daemon_state *st)
{
    for (size_t i = 0; i < st->n_pipelines; i++)
        of_pipeline_free(st->pipelines[i]);
    free(st->pipelines);
    of_registry_free(&st->reg);
    of_host_config_free(st->cfg);
}

/* Everything that can be wrong is found here, before any thread or topic exists. */
static int load_all(daemon_state *st, const char *config_path)
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
    of_diag_print(&diag, stderr);
    int errors = (int)diag.errors;
    of_diag_free(&diag);
    if (errors)
        fprintf(stderr, "orderflowd: %d error%s in the configuration; not starting\n", errors,
                errors == 1 ? "" : "s");
    return errors ? -1 : 0;
}

int main(int argc, char **argv)
{
    const char *config_path = DEFAULT_CONFIG;
    int check_only = 0;
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "c:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'k':
            check_only = 1;
            break;
        case 'V':
            printf("orderflowd %s (stage ABI %d.%d)\n", OF_VERSION, OF_ABI_MAJOR, OF_ABI_MINOR);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    daemon_state st = {0};
    if (load_all(&st, config_path) != 0) {
        state_free(&st);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration OK (%zu pipeline%s, %zu plugin%s)\n", config_path, st.n_pipelines,
               st.n_pipelines == 1 ? "" : "s", st.reg.count, st.reg.count == 1 ? "" : "s");
        state_free(&st);
        return 0;
    }
    of_log_set_level(st.cfg->log_level);
    of_log_set_format(st.cfg->log_format);

    /* Signals are taken synchronously by this thread alone; workers never see them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    char err[1024];
    int rc = 1;
    of_bus *bus = NULL;
    of_metrics *metrics = NULL;
    of_runner *runner = NULL;
    of_db_pool *db = NULL;
    of_outbox_relay *relay = NULL;
    of_cache_pool *cache = NULL;
    of_gateway *gw = NULL;
    of_ws_hub *hub = NULL;
    of_http_invoker invoker = {0};
    if (st.cfg->mysql) {
        /* Schema first: a stage never runs against tables it does not have. Migrations are
         * safe when several hosts start together (a lock serialises them). */
        db = of_db_pool_new(st.cfg->mysql, err, sizeof(err));
        if (!db || of_db_migrate_all(db, &st.reg, log_migration, NULL, err, sizeof(err)) != 0) {
            of_log(OF_LVL_ERROR, NULL, NULL, "cannot start: database: %s", err);
            goto out;
        }
    }
    if (st.cfg->bus == OF_BUS_KAFKA) {
        bus = of_kafkabus_new(&st.cfg->kafka, err, sizeof(err));
        if (!bus) {
            of_log(OF_LVL_ERROR, NULL, NULL, "cannot start: %s", err);
            goto out;
        }
    } else {
        bus = of_membus_new();
    }
    metrics = of_metrics_new();
    runner = bus && metrics ? of_runner_new(bus, metrics) : NULL;
    if (!runner) {
        of_log(OF_LVL_ERROR, NULL, NULL, "out of memory at start");
        goto out;
    }
    of_runner_set_db(runner, db);
    if (st.cfg->redis) {
        /* Redis is optional at run time: an unreachable one makes cache calls fail fast. */
        cache = of_cache_pool_new(st.cfg->redis, metrics);
        if (!cache) {
            of_log(OF_LVL_ERROR, NULL, NULL, "cannot start: out of memory for the redis pool");
            goto out;
        }
        of_runner_set_cache(runner, cache);
    }
    if (wants_gateway(&st)) {
        if (!(hub = start_ws_hub(&st, metrics, err, sizeof(err)))) {
            of_log(OF_LVL_ERROR, NULL, NULL, "cannot start: %s", err);
            goto out;
        }
        of_runner_set_ws_hub(runner, hub);
    }
    for (size_t i = 0; i < st.n_pipelines; i++) {
        if (of_runner_add_pipeline(runner, st.pipelines[i], err, sizeof(err)) != 0) {
            of_log(OF_LVL_ERROR, st.pipelines[i]->name, NULL, "cannot start: %s", err);
            goto out;
        }
    }
    if (of_runner_start(runner, err, sizeof(err)) != 0) {
        of_log(OF_LVL_ERROR, NULL, NULL, "cannot start: %s", err);
        goto out;
    }
    if (db) {
        /* Publishes what a crash left in the outbox (rows older than 90 s: longer than a delivery
         * may take, 60 s, so no running worker still publishes them) and removes inbox and
         * outbox rows after a day. */
        relay = of_outbox_relay_start(db, bus, 90000, 24LL * 3600 * 1000);
        if (!relay) {
            of_log(OF_LVL_ERROR, NULL, NULL, "cannot start the outbox relay");
            goto out;
        }
    }
    err[0] = '\0';
    gw = start_gateway(&st, runner, bus, db, cache, hub, &invoker, err, sizeof(err));
    if (!gw && err[0]) {
        of_log(OF_LVL_ERROR, NULL, NULL, "cannot start the HTTP gateway:\n%s", err);
        goto out;
    }
    if (gw)
        of_log(OF_LVL_INFO, NULL, NULL, "http: listening on port %d", of_gateway_port(gw));
    of_log(OF_LVL_INFO, NULL, NULL, "orderflowd %s running %zu pipeline%s on the %s bus",
           OF_VERSION, st.n_pipelines, st.n_pipelines == 1 ? "" : "s", bus->ops->name);

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            of_log(OF_LVL_WARN, NULL, NULL,
                   "SIGHUP: reloading is not supported by this version; configuration unchanged");
            continue;
        }
        of_log(OF_LVL_INFO, NULL, NULL, "%s: draining in-flight events (up to %lld ms)",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", (long long)st.cfg->drain_timeout_ms);
        break;
    }
    /* WebSocket clients are told to go (their threads then end), and no new requests come while
     * the stages drain: handlers call into them. */
    of_ws_hub_stop(hub);
    of_gateway_stop(gw);
    size_t abandoned = of_runner_drain(runner, st.cfg->drain_timeout_ms);
    if (abandoned)
        of_log(OF_LVL_WARN, NULL, NULL,
               "%zu event%s not finished in time; left uncommitted for redelivery", abandoned,
               abandoned == 1 ? "" : "s");
    of_log(OF_LVL_INFO, NULL, NULL, "stopped");
    rc = 0;
out:
    of_gateway_free(gw);
    of_outbox_relay_stop(relay);
    of_runner_free(runner);
    of_ws_hub_free(hub);
    if (bus)
        bus->ops->destroy(bus);
    of_cache_pool_free(cache);
    of_metrics_free(metrics);
    of_db_pool_free(db);
    state_free(&st);
    return rc;
}
