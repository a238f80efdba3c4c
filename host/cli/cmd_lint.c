/* orderflow lint: the same validation orderflowd runs before it starts, on any number of files. */
#include "cli.h"
#include "hostconfig.h"
#include "pipeline.h"
#include "yamltree.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct lint_run {
    const of_cli *cli;
    of_plugin_registry reg; /* plugins of the command line, loaded on first need */
    int reg_loaded;
    of_diag diag;
    int files;
} lint_run;

static const of_plugin_registry *cli_registry(lint_run *run)
{
    if (!run->reg_loaded) {
        of_cli_load_plugins(run->cli, &run->reg, &run->diag);
        run->reg_loaded = 1;
    }
    return &run->reg;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A pipeline file says `stages:` or `pipeline:` at the top; anything else is a host config. */
static int is_pipeline_file(const char *path)
{
    of_diag scratch;
    of_diag_init(&scratch);
    of_ydoc *doc = of_ydoc_load_file(path, &scratch);
    int yes = 1;
    if (doc && doc->root && doc->root->kind == OF_Y_MAP)
        yes = of_ymap_get(doc->root, "stages") || of_ymap_get(doc->root, "pipeline");
    of_ydoc_free(doc);
    of_diag_free(&scratch);
    return yes;
}

static void lint_host_config(lint_run *run, const char *path)
{
    of_host_config *hc = of_host_config_load(path, &run->diag);
    if (!hc)
        return;
    of_plugin_registry own;
    const of_plugin_registry *reg;
    of_registry_init(&own);
    if (run->cli->n_plugin_dirs) {
        reg = cli_registry(run);
    } else {
        of_registry_scan(&own, (const char *const *)hc->plugin_dirs, hc->n_plugin_dirs, &run->diag);
        reg = &own;
    }
    for (size_t i = 0; i < hc->n_pipelines; i++) {
        run->files++;
        of_pipeline_free(of_pipeline_load(hc->pipelines[i], reg, &run->diag));
    }
    of_registry_free(&own);
    of_host_config_free(hc);
}

static void lint_path(lint_run *run, const char *path, int explicit_arg);

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void lint_dir(lint_run *run, const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        of_diag_add(&run->diag, OF_SEV_ERROR, path, 0, 0, "cannot open directory");
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char **nn = realloc(names, (n + 1) * sizeof(*nn));
        if (!nn)
            break;
        names = nn;
        if (asprintf(&names[n], "%s/%s", path, e->d_name) < 0)
            break;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n; i++) {
        lint_path(run, names[i], 0);
        free(names[i]);
    }
    free(names);
}

static void lint_path(lint_run *run, const char *path, int explicit_arg)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        of_diag_add(&run->diag, OF_SEV_ERROR, path, 0, 0, "no such file or directory");
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        lint_dir(run, path);
        return;
    }
    /* Inside a directory only YAML files are pipelines; a file named explicitly is linted. */
    if (!explicit_arg && !has_suffix(path, ".yaml") && !has_suffix(path, ".yml"))
        return;
    run->files++;
    if (is_pipeline_file(path))
        of_pipeline_free(of_pipeline_load(path, cli_registry(run), &run->diag));
    else
        lint_host_config(run, path);
}

int of_cmd_lint(const of_cli *cli, int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: orderflow lint FILE|DIR...\n");
        return 2;
    }
    lint_run run = {.cli = cli};
    of_registry_init(&run.reg);
    of_diag_init(&run.diag);
    for (int i = 1; i < argc; i++)
        lint_path(&run, argv[i], 1);
    of_diag_print(&run.diag, stderr);
    int rc = run.diag.errors ? 1 : 0;
    if (!cli->quiet)
        printf("%d file%s checked: %zu error%s, %zu warning%s\n", run.files,
               run.files == 1 ? "" : "s", run.diag.errors, run.diag.errors == 1 ? "" : "s",
               run.diag.warnings, run.diag.warnings == 1 ? "" : "s");
    of_diag_free(&run.diag);
    of_registry_free(&run.reg);
    return rc;
}
