/* orderflow migrate: applies the host's and the plugins' schema migrations the database of the
 * host configuration lacks, and says what it applied. */
#include "cli.h"
#include "db.h"
#include "log.h"
#include "yamltree.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fputs("usage: orderflow migrate [-c CONFIG]\n"
          "\n"
          "Applies the schema migrations of the host (component orderflow) and of every plugin\n"
          "that has some, in that order, to the database of the host configuration's mysql:\n"
          "section. Each runs once; exit 1 on any error (a changed migration included).\n",
          out);
}

/* The `mysql:` section of the host configuration file. 0, or -1 after printing the problems.
 * Warnings are printed only when asked: loading the plugins through the host configuration
 * prints them too. */
static int load_mysql(const char *path, of_mysql_config *out, int print_warnings)
{
    of_diag diag;
    of_diag_init(&diag);
    of_ydoc *doc = of_ydoc_load_file(path, &diag);
    const of_ynode *node = doc && doc->root ? of_ymap_get(doc->root, "mysql") : NULL;
    if (doc && !node)
        of_diag_add(&diag, OF_SEV_ERROR, path, 0, 0,
                    "no 'mysql:' section: the host has no database to migrate");
    if (node) {
        const char *slash = strrchr(path, '/');
        char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
        of_mysql_config_parse(out, node, dir, path, &diag);
        free(dir);
    }
    if (diag.errors || print_warnings)
        of_diag_print(&diag, stderr);
    int rc = diag.errors ? -1 : 0;
    of_diag_free(&diag);
    of_ydoc_free(doc);
    return rc;
}

typedef struct report {
    int quiet;
    int count;
} report;

static void on_applied(void *opaque, const char *component, const of_migration *m)
{
    report *r = opaque;
    r->count++;
    if (!r->quiet)
        printf("%s %d %s ... applied\n", component, m->version, m->name);
    fflush(stdout);
}

int of_cmd_migrate(const of_cli *cli, int argc, char **argv)
{
    const char *config = cli->config_path;
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || !config) {
        if (!config)
            fprintf(stderr, "orderflow migrate: a host configuration is required (-c FILE)\n");
        usage(stderr);
        return 2;
    }
    /* The migration functions log each migration at info; this command prints them itself. */
    of_log_set_level(OF_LVL_WARN);

    of_mysql_config mc;
    of_mysql_config_defaults(&mc);
    if (load_mysql(config, &mc, cli->n_plugin_dirs > 0) != 0) {
        of_mysql_config_free(&mc);
        return 1;
    }
    /* Plugins from -P, else the configuration's plugin_dirs. A plugin that fails to load would
     * have its migrations skipped: that is an error too. */
    of_cli cli2 = *cli;
    cli2.config_path = config;
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    of_cli_load_plugins(&cli2, &reg, &diag);
    of_diag_print(&diag, stderr);
    int rc = 1;
    if (diag.errors) {
        fprintf(stderr, "orderflow migrate: not migrating: fix the problems above first\n");
        goto out;
    }
    char err[1024] = "";
    of_db_pool *pool = of_db_pool_new(&mc, err, sizeof(err));
    if (!pool) {
        fprintf(stderr, "orderflow migrate: %s\n", err);
        goto out;
    }
    report rep = {.quiet = cli->quiet};
    int n = of_db_migrate_all(pool, &reg, on_applied, &rep, err, sizeof(err));
    of_db_pool_free(pool);
    if (n != 0) {
        fprintf(stderr, "orderflow migrate: %s\n", err);
        if (rep.count && !cli->quiet)
            printf("%d migration%s applied before the error\n", rep.count,
                   rep.count == 1 ? "" : "s");
        goto out;
    }
    if (!cli->quiet) {
        if (rep.count == 0)
            printf("up to date\n");
        else
            printf("%d migration%s applied\n", rep.count, rep.count == 1 ? "" : "s");
    }
    rc = 0;
out:
    of_diag_free(&diag);
    of_registry_free(&reg);
    of_mysql_config_free(&mc);
    return rc;
}
