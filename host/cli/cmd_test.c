/* orderflow test: runs the tests declared in pipeline files on the embedded bus. */
#include "cli.h"
#include "pipeline.h"
#include "pipeline_tests.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

int of_cmd_test(const of_cli *cli, int argc, char **argv)
{
    const char *filter = NULL;
    int timeout_ms = 30000;
    static const struct option longopts[] = {
        {"filter", required_argument, NULL, 'f'},
        {"timeout", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "f:t:", longopts, NULL)) != -1) {
        if (opt == 'f') {
            filter = optarg;
        } else if (opt == 't') {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v <= 0 || v > 3600000) {
                fprintf(stderr, "orderflow test: --timeout takes milliseconds (1..3600000)\n");
                return 2;
            }
            timeout_ms = (int)v;
        } else {
            fprintf(stderr, "usage: orderflow test [--filter TEXT] [--timeout MS] FILE...\n");
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: orderflow test [--filter TEXT] [--timeout MS] FILE...\n");
        return 2;
    }
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    of_cli_load_plugins(cli, &reg, &diag);
    of_test_summary sum = {0, 0};
    int broken = 0;
    for (int i = optind; i < argc; i++) {
        of_pipeline *p = of_pipeline_load(argv[i], &reg, &diag);
        if (!p) {
            broken++;
            continue;
        }
        if (p->n_tests == 0)
            printf("%s: declares no tests\n", argv[i]);
        of_pipeline_run_tests(p, filter, timeout_ms, stdout, &sum);
        of_pipeline_free(p);
    }
    of_diag_print(&diag, stderr);
    printf("%d passed, %d failed\n", sum.passed, sum.failed);
    int rc = (sum.failed || broken || diag.errors) ? 1 : 0;
    of_diag_free(&diag);
    of_registry_free(&reg);
    return rc;
}
