/* The `orderflow` command line: shared options and the commands. */
#ifndef OF_CLI_H
#define OF_CLI_H

#include "diag.h"
#include "plugin.h"

#include <stddef.h>

#define OF_CLI_MAX_DIRS 32

typedef struct of_cli {
    const char *config_path;                  /* -c/--config: host config for plugin dirs */
    const char *plugin_dirs[OF_CLI_MAX_DIRS]; /* -P/--plugin-dir, in order */
    size_t n_plugin_dirs;
    int quiet;
} of_cli;

/* Loads the plugins from the directories the command line, the host config, ORDERFLOW_PLUGIN_PATH
 * or the default give (first that says any). Problems go to diag. */
void of_cli_load_plugins(const of_cli *cli, of_plugin_registry *reg, of_diag *diag);

int of_cmd_lint(const of_cli *cli, int argc, char **argv);
int of_cmd_plugins(const of_cli *cli, int argc, char **argv);
int of_cmd_graph(const of_cli *cli, int argc, char **argv);
int of_cmd_test(const of_cli *cli, int argc, char **argv);
int of_cmd_version(const of_cli *cli, int argc, char **argv);
int of_cmd_migrate(const of_cli *cli, int argc, char **argv);
int of_cmd_dlq(const of_cli *cli, int argc, char **argv);
int of_cmd_token(const of_cli *cli, int argc, char **argv);
int of_cmd_new_stage(const of_cli *cli, int argc, char **argv);

#endif
