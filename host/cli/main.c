/* orderflow: lint, inspect, graph and test pipelines and plugins. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fputs("usage: orderflow [-c CONFIG] [-P PLUGIN_DIR]... COMMAND [ARGS]\n"
          "\n"
          "commands:\n"
          "  lint FILE|DIR...           check pipeline and host config files; exit 1 on errors\n"
          "  plugins [NAME]             list plugins with their options and outputs\n"
          "  graph [--format dot|mermaid] FILE\n"
          "                             draw a pipeline's topics and stages\n"
          "  test [--filter TEXT] [--timeout MS] FILE...\n"
          "                             run the tests a pipeline declares, on the embedded bus\n"
          "  dlq list [--json] [--limit N] TOPIC\n"
          "                             print the dead letters in a Kafka topic\n"
          "  dlq replay [--to TOPIC] [--dry-run] [--limit N] [--from-beginning] TOPIC\n"
          "                             republish dead letters to their original topic\n"
          "                             (both: --bootstrap HOST:PORT, or -c with a kafka bus)\n"
          "  migrate                    apply the host's and the plugins' schema migrations\n"
          "  token --key-file F --sub S --iss I --aud A [--alg ALG] [--roles R,...] [--ttl 1h]\n"
          "                             issue a signed JWT (for ops: the first admin)\n"
          "  new-stage [--dir DIR] NAME write a new stage project (stage, CMakeLists.txt, harness\n"
          "                             test, pipeline snippet) from the orderflow-dev scaffold\n"
          "  version                    print the version and the stage ABI\n"
          "\n"
          "options:\n"
          "  -c, --config FILE          host configuration (its plugin_dirs; dlq: its bus.kafka)\n"
          "  -P, --plugin-dir DIR       look for plugins here (repeatable; overrides the rest)\n"
          "  -q, --quiet                print only problems\n"
          "\n"
          "Without -P or -c, ORDERFLOW_PLUGIN_PATH (colon-separated) or the default plugin\n"
          "directory is used.\n",
          out);
}

int main(int argc, char **argv)
{
    of_cli cli = {0};
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"plugin-dir", required_argument, NULL, 'P'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    /* '+' stops at the command so its own options are parsed by it. */
    while ((opt = getopt_long(argc, argv, "+c:P:qh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cli.config_path = optarg;
            break;
        case 'P':
            if (cli.n_plugin_dirs == OF_CLI_MAX_DIRS) {
                fprintf(stderr, "orderflow: at most %d plugin directories\n", OF_CLI_MAX_DIRS);
                return 2;
            }
            cli.plugin_dirs[cli.n_plugin_dirs++] = optarg;
            break;
        case 'q':
            cli.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    int cargc = argc - optind;
    char **cargv = argv + optind;
    optind = 1; /* the command parses its own options from cargv */

    static const struct {
        const char *name;
        int (*fn)(const of_cli *, int, char **);
    } commands[] = {
        {"lint", of_cmd_lint}, {"plugins", of_cmd_plugins}, {"graph", of_cmd_graph},
        {"test", of_cmd_test}, {"migrate", of_cmd_migrate}, {"version", of_cmd_version},
        {"dlq", of_cmd_dlq},   {"token", of_cmd_token},     {"new-stage", of_cmd_new_stage},
    };
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].fn(&cli, cargc, cargv);
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "orderflow: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
