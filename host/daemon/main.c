/* orderflowd: loads the host configuration, refuses to start on any error in it, its plugins or
 * its pipelines (the same checks as `orderflow lint`), runs the pipelines, and drains in-flight
 * events on SIGTERM. */
#include "bus.h"
#include "cache.h"
#include "dashboard.h"
#include "db.h"
#include "gateway.h"
#include "http_invoke.h"
#include "hostconfig.h"
#include "log.h"
#include "memtrim.h"
#include "metrics.h"
#include "outbox_marker.h"
#include "pipeline.h"
#include "plugin.h"
#include "reload.h"
#include "runner.h"
#include "state.h"
#include "sd_notify.h"
#include "ws_hub.h"

#include <getopt.h>
#include <malloc.h>
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
    fputs("usage: orderflowd [-c CONFIG] [--check] [--log-level LEVEL] [--log-format FORMAT] "
          "[--version]\n"
          "  -c, --config FILE   host configuration (default " DEFAULT_CONFIG ")\n"
          "      --check         validate the configuration, its plugins and pipelines, then exit\n"
          "      --log-level L   error | warn | info | debug (overrides log.level)\n"
          "      --log-format F  text | json (overrides log.format)\n"
          "  -V, --version       print the version\n",
          out);
}

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

/* The configuration's http: section, or the defaults in *defaults (free it with
 * of_http_config_free when the result is defaults). */
static const of_http_config *http_config(const daemon_state *st, of_http_config *defaults)
{
    memset(defaults, 0, sizeof(*defaults));
    if (st->cfg->http)
        return st->cfg->http;
    of_http_config_default(defaults);
    return defaults;
}

/* The WebSocket hub, before the stages start (they may publish from their first event). */
static of_ws_hub *start_ws_hub(daemon_state *st, of_metrics *metrics, char *err, size_t err_size)
{
    of_http_config defaults;
    const of_http_config *hc = http_config(st, &defaults);
    of_ws_hub *hub = of_gateway_ws_hub_new(hc, st->cfg->redis, metrics);
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

/* The HTTP gateway, when the configuration has an http: section or a pipeline declares routes:
 * its handlers are the stages' (already initialised by the runner). */
static of_gateway *start_gateway(daemon_state *st, of_runner *runner, of_bus *bus, of_db_pool *db,
                                 of_cache_pool *cache, of_ws_hub *hub, of_dashboard *dash,
                                 of_metrics *metrics, of_http_invoker *invoker, char *err,
                                 size_t err_size)
{
    if (!state_wants_gateway(st))
        return NULL;
    of_http_config defaults;
    const of_http_config *hc = http_config(st, &defaults);
    invoker->db = db;
    invoker->bus = bus;
    of_gateway *gw = of_gateway_new(hc, of_http_invoke, invoker);
    of_http_config_free(&defaults);
    if (!gw) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    of_gateway_set_cache_pool(gw, cache);
    of_gateway_set_metrics(gw, metrics);
    of_gateway_set_ws_hub(gw, hub);
    of_gateway_set_dashboard(gw, dash);
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

int main(int argc, char **argv)
{
    /* Dozens of worker threads would each get a malloc arena of their own, and what a burst
     * made them hold is rarely given back: two arenas keep the daemon's memory near what it
     * uses (measured in bench/RESULTS.md). MALLOC_ARENA_MAX in the environment still wins. */
    if (!getenv("MALLOC_ARENA_MAX"))
        mallopt(M_ARENA_MAX, 2);
    const char *config_path = DEFAULT_CONFIG;
    int check_only = 0;
    const char *log_level = NULL, *log_format = NULL;
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
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
        case 'L':
        case 'F': {
            of_log_level_t lv;
            of_log_format fm;
            if (opt == 'L' ? of_log_parse_level(optarg, &lv) != 0
                           : of_log_parse_format(optarg, &fm) != 0) {
                fprintf(stderr, "orderflowd: bad %s '%s' (expected %s)\n",
                        opt == 'L' ? "--log-level" : "--log-format", optarg,
                        opt == 'L' ? "error, warn, info or debug" : "text or json");
                return 2;
            }
            *(opt == 'L' ? &log_level : &log_format) = optarg;
            break;
        }
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

    daemon_state *st = calloc(1, sizeof(*st));
    if (!st)
        return 1;
    int errors = state_load(st, config_path, stderr);
    if (errors) {
        fprintf(stderr, "orderflowd: %d error%s in the configuration; not starting\n", errors,
                errors == 1 ? "" : "s");
        state_free(st);
        free(st);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration OK (%zu pipeline%s, %zu plugin%s)\n", config_path,
               st->n_pipelines, st->n_pipelines == 1 ? "" : "s", st->reg.count,
               st->reg.count == 1 ? "" : "s");
        state_free(st);
        free(st);
        return 0;
    }
    of_log_level_t base_level = st->cfg->log_level;
    of_log_format format = st->cfg->log_format;
    if (log_level)
        of_log_parse_level(log_level, &base_level);
    if (log_format)
        of_log_parse_format(log_format, &format);
    of_log_set_level(base_level);
    of_log_set_format(format);

    /* Signals are taken synchronously by this thread alone; workers never see them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    char err[1024];
    int rc = 1;
    of_bus *bus = NULL;
    of_metrics *metrics = NULL;
    of_runner *runner = NULL;
    of_db_pool *db = NULL;
    of_outbox_relay *relay = NULL;
    of_outbox_marker *marker = NULL;
    of_cache_pool *cache = NULL;
    of_gateway *gw = NULL;
    of_ws_hub *hub = NULL;
    of_dashboard *dash = NULL;
    of_memtrim *trim = NULL;
    of_http_invoker invoker;
    of_http_invoker_init(&invoker, NULL, NULL, NULL);
    /* The configuration the daemon runs on, and the earlier ones a reload keeps while some of
     * their stages still run. */
    daemon_gens gens = {.config_path = config_path, .current = st};
    if (st->cfg->mysql) {
        /* Schema first: a stage never runs against tables it does not have. Migrations are
         * safe when several hosts start together (a lock serialises them). */
        db = of_db_pool_new(st->cfg->mysql, err, sizeof(err));
        if (!db || of_db_migrate_all(db, &st->reg, log_migration, NULL, err, sizeof(err)) != 0) {
            of_log(OF_LVL_ERROR, NULL, NULL, "cannot start: database: %s", err);
            goto out;
        }
    }
    if (st->cfg->bus == OF_BUS_KAFKA) {
        bus = of_kafkabus_new(&st->cfg->kafka, err, sizeof(err));
        if (!bus) {
            of_log(OF_LVL_ERROR, NULL, NULL, "cannot start: %s", err);
            goto out;
        }
    } else {
        bus = of_membus_new();
    }
    metrics = of_metrics_new();
    if (metrics) {
        char abi[32];
        snprintf(abi, sizeof(abi), "%d.%d", OF_ABI_MAJOR, OF_ABI_MINOR);
        of_metrics_add_process(metrics, OF_VERSION, abi);
        if (db)
            of_db_register_metrics(db, metrics);
    }
    runner = bus && metrics ? of_runner_new(bus, metrics) : NULL;
    if (!runner) {
        of_log(OF_LVL_ERROR, NULL, NULL, "out of memory at start");
        goto out;
    }
    of_runner_set_db(runner, db);
    if (db) {
        /* Acknowledged outbox rows are marked published in batches (every 20 ms or 500 ids),
         * off the workers' and the request threads' path. */
        if (!(marker = of_outbox_marker_start(db, 20, 500))) {
            of_log(OF_LVL_ERROR, NULL, NULL, "cannot start the outbox marker");
            goto out;
        }
        of_runner_set_outbox_marker(runner, marker);
        invoker.marker = marker;
    }
    if (st->cfg->redis) {
        /* Redis is optional at run time: an unreachable one makes cache calls fail fast-> */
        cache = of_cache_pool_new(st->cfg->redis, metrics);
        if (!cache) {
            of_log(OF_LVL_ERROR, NULL, NULL, "cannot start: out of memory for the redis pool");
            goto out;
        }
        of_runner_set_cache(runner, cache);
    }
    if (state_wants_gateway(st)) {
        if (!(hub = start_ws_hub(st, metrics, err, sizeof(err)))) {
            of_log(OF_LVL_ERROR, NULL, NULL, "cannot start: %s", err);
            goto out;
        }
        of_runner_set_ws_hub(runner, hub);
    }
    for (size_t i = 0; i < st->n_pipelines; i++) {
        if (of_runner_add_pipeline(runner, st->pipelines[i], err, sizeof(err)) != 0) {
            of_log(OF_LVL_ERROR, st->pipelines[i]->name, NULL, "cannot start: %s", err);
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
    /* What a backlog made the daemon hold goes back once it has drained. Every 2 s, because
     * every 10 s let the resident size swing by 5 MB between two trims at 560 orders/s
     * (bench/RESULTS.md, step 31b). Without the thread the daemon still runs, only holding
     * more. */
    if (!(trim = of_memtrim_start(2000)))
        of_log(OF_LVL_WARN, NULL, NULL, "cannot start the memory trimmer");
    /* The dashboard's feed: this host's stage counters once a second (dashboard.h). */
    if (hub && !(dash = of_dashboard_start(hub, runner, 1000))) {
        of_log(OF_LVL_ERROR, NULL, NULL, "cannot start the dashboard");
        goto out;
    }
    gw = start_gateway(st, runner, bus, db, cache, hub, dash, metrics, &invoker, err, sizeof(err));
    if (!gw && err[0]) {
        of_log(OF_LVL_ERROR, NULL, NULL, "cannot start the HTTP gateway:\n%s", err);
        goto out;
    }
    if (gw)
        of_log(OF_LVL_INFO, NULL, NULL, "http: listening on port %d", of_gateway_port(gw));
    of_log(OF_LVL_INFO, NULL, NULL, "orderflowd %s running %zu pipeline%s on the %s bus",
           OF_VERSION, st->n_pipelines, st->n_pipelines == 1 ? "" : "s", bus->ops->name);
    of_sd_notify("READY=1\nSTATUS=running"); /* systemd Type=notify: started */

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGUSR1) {
            /* Toggles debug logging: base level -> debug -> base level. */
            of_log_level_t to = of_log_get_level() == OF_LVL_DEBUG && base_level != OF_LVL_DEBUG
                                    ? base_level
                                    : OF_LVL_DEBUG;
            of_log_level_t from = of_log_get_level();
            if (to == OF_LVL_DEBUG)
                of_log_set_level(to);
            of_log(OF_LVL_WARN, NULL, NULL, "SIGUSR1: log level %s -> %s", of_log_level_name(from),
                   of_log_level_name(to));
            of_log_set_level(to);
            continue;
        }
        if (sig == SIGHUP) {
            /* Signals arriving during the reload stay pending (as one): another reload follows,
             * so the last change to the files is always read. */
            of_log(OF_LVL_INFO, NULL, NULL, "SIGHUP: reloading %s", config_path);
            of_sd_notify("RELOADING=1\nSTATUS=reloading");
            gens.runner = runner;
            gens.gw = gw;
            gens.db = db;
            char why[1200];
            if (daemon_reload(&gens, why, sizeof(why)) != 0) {
                of_log(OF_LVL_ERROR, NULL, NULL, "reload failed: %s", why);
                of_gateway_set_note(gw, "config", why);
            } else {
                of_gateway_set_note(gw, "config", NULL);
            }
            of_sd_notify("READY=1\nSTATUS=running");
            continue;
        }
        of_log(OF_LVL_INFO, NULL, NULL, "%s: draining in-flight events (up to %lld ms)",
               sig == SIGTERM ? "SIGTERM" : "SIGINT",
               (long long)gens.current->cfg->drain_timeout_ms);
        of_sd_notify("STOPPING=1\nSTATUS=draining");
        break;
    }
    /* WebSocket clients are told to go (their threads then end), and no new requests come while
     * the stages drain: handlers call into them. */
    of_dashboard_stop(dash);
    dash = NULL;
    of_ws_hub_stop(hub);
    of_gateway_stop(gw);
    /* Answered requests whose events the broker has yet to acknowledge: their ids go to the
     * marker before it stops. At most 5 s of the drain: a broker that takes longer is away, and
     * the relay publishes what it did not acknowledge. */
    int64_t ack_wait = gens.current->cfg->drain_timeout_ms;
    size_t due = of_http_invoker_quiesce(&invoker, ack_wait < 5000 ? ack_wait : 5000);
    if (due)
        of_log(OF_LVL_WARN, NULL, NULL,
               "%zu answered request%s still waiting for the broker; the outbox relay publishes "
               "their events",
               due, due == 1 ? "" : "s");
    size_t abandoned = of_runner_drain(runner, gens.current->cfg->drain_timeout_ms);
    if (abandoned)
        of_log(OF_LVL_WARN, NULL, NULL,
               "%zu event%s not finished in time; left uncommitted for redelivery", abandoned,
               abandoned == 1 ? "" : "s");
    /* Nothing adds any more (the gateway stopped, the stages drained): mark what is queued. */
    of_outbox_marker_stop(marker);
    marker = NULL;
    of_log(OF_LVL_INFO, NULL, NULL, "stopped");
    rc = 0;
out:
    of_memtrim_stop(trim);
    of_dashboard_stop(dash);
    of_gateway_free(gw);
    of_outbox_relay_stop(relay);
    of_runner_free(runner);
    of_http_invoker_quiesce(&invoker, 5000);
    of_outbox_marker_stop(marker); /* after everything that adds to it, before the pool */
    of_ws_hub_free(hub);
    if (bus)
        bus->ops->destroy(bus);
    of_http_invoker_destroy(&invoker); /* after the bus: its last callbacks lock the invoker */
    of_cache_pool_free(cache);
    of_db_pool_free(db);
    of_metrics_free(metrics);
    daemon_gens_free(&gens);
    return rc;
}
