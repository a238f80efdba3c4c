/* orderflow.yaml: the host configuration. */
#include "hostconfig.h"
#include "options.h"
#include "yamltree.h"

#include <errno.h>
#include <stdarg.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef OF_DEFAULT_PLUGIN_DIR
#define OF_DEFAULT_PLUGIN_DIR "/usr/lib/orderflow/plugins"
#endif

static const char *const top_keys[] = {"plugin_dirs", "pipelines",     "bus",
                                       "log",         "drain_timeout", NULL};
static const char *const bus_keys[] = {"type", NULL};
static const char *const log_keys[] = {"level", "format", NULL};

typedef struct ctx {
    const char *file;
    char *dir; /* the config file's folder */
    of_diag *diag;
    of_host_config *cfg;
} ctx;

static void cerr(ctx *c, const of_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cerr(ctx *c, const of_ynode *at, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    of_diag_add(c->diag, OF_SEV_ERROR, c->file, at ? at->line : 0, at ? at->column : 0, "%s",
                msg ? msg : "out of memory");
    free(msg);
}

void of_host_config_free(of_host_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->file);
    for (size_t i = 0; i < cfg->n_plugin_dirs; i++)
        free(cfg->plugin_dirs[i]);
    free(cfg->plugin_dirs);
    for (size_t i = 0; i < cfg->n_pipelines; i++)
        free(cfg->pipelines[i]);
    free(cfg->pipelines);
    free(cfg);
}

static int push(char ***arr, size_t *n, char *s)
{
    if (!s)
        return -1;
    char **a = realloc(*arr, (*n + 1) * sizeof(*a));
    if (!a) {
        free(s);
        return -1;
    }
    a[(*n)++] = s;
    *arr = a;
    return 0;
}

/* A path relative to the config file's folder. */
static char *resolve(const ctx *c, const char *p)
{
    if (p[0] == '/' || strcmp(c->dir, ".") == 0)
        return strdup(p);
    char *out = NULL;
    if (asprintf(&out, "%s/%s", c->dir, p) < 0)
        return NULL;
    return out;
}

static int has_glob_chars(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* A sequence; reports otherwise. */
static int check_list(ctx *c, const of_ynode *n, const char *key)
{
    if (n->kind == OF_Y_SEQ)
        return 0;
    char got[96];
    of_ynode_describe(n, got, sizeof(got));
    cerr(c, n, "'%s' must be a list of strings; got %s", key, got);
    return -1;
}

/* A non-empty string item; reports otherwise. */
static int check_item(ctx *c, const of_ynode *it, const char *key)
{
    if (of_yis_string(it) && it->len > 0)
        return 0;
    char got[96];
    of_ynode_describe(it, got, sizeof(got));
    cerr(c, it, "'%s' items must be non-empty strings; got %s", key, got);
    return -1;
}

static void load_plugin_dirs(ctx *c, const of_ynode *n)
{
    if (check_list(c, n, "plugin_dirs") < 0)
        return;
    for (size_t i = 0; i < n->n_items; i++)
        if (check_item(c, n->items[i], "plugin_dirs") == 0 &&
            push(&c->cfg->plugin_dirs, &c->cfg->n_plugin_dirs, resolve(c, n->items[i]->str)) < 0)
            cerr(c, n->items[i], "out of memory");
}

static void load_pipelines(ctx *c, const of_ynode *n)
{
    if (check_list(c, n, "pipelines") < 0)
        return;
    for (size_t i = 0; i < n->n_items; i++) {
        const of_ynode *it = n->items[i];
        if (check_item(c, it, "pipelines") < 0)
            continue;
        char *path = resolve(c, it->str);
        if (!path) {
            cerr(c, it, "out of memory");
            continue;
        }
        if (!has_glob_chars(it->str)) {
            if (access(path, R_OK) != 0)
                cerr(c, it, "pipeline file '%s' cannot be read: %s", path, strerror(errno));
            else if (push(&c->cfg->pipelines, &c->cfg->n_pipelines, path) < 0)
                cerr(c, it, "out of memory");
            else
                path = NULL;
            free(path);
            continue;
        }
        glob_t g;
        memset(&g, 0, sizeof(g));
        int rc = glob(path, 0, NULL, &g);
        if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0))
            cerr(c, it, "pipeline pattern '%s' matches no file", path);
        else if (rc != 0)
            cerr(c, it, "cannot expand pipeline pattern '%s' (%s)", path,
                 rc == GLOB_NOSPACE ? "out of memory" : "read error");
        else
            for (size_t k = 0; k < g.gl_pathc; k++)
                if (push(&c->cfg->pipelines, &c->cfg->n_pipelines, strdup(g.gl_pathv[k])) < 0)
                    cerr(c, it, "out of memory");
        globfree(&g);
        free(path);
    }
}

static int is_mapping_or_null(ctx *c, const of_ynode *n, const char *key)
{
    if (n->kind == OF_Y_MAP)
        return 1;
    if (n->kind == OF_Y_SCALAR && n->is_null)
        return 0;
    char got[96];
    of_ynode_describe(n, got, sizeof(got));
    cerr(c, n, "'%s' must be a mapping; got %s", key, got);
    return 0;
}

static void load_bus(ctx *c, const of_ynode *n)
{
    if (!is_mapping_or_null(c, n, "bus"))
        return;
    of_ymap_check_keys(n, bus_keys, "bus", c->file, c->diag);
    const of_ynode *t = of_ymap_get(n, "type");
    if (!t)
        return;
    static const char *const kinds[] = {"memory", NULL};
    if (!of_yis_string(t)) {
        char got[96];
        of_ynode_describe(t, got, sizeof(got));
        cerr(c, t, "bus 'type' must be one of: memory; got %s", got);
        return;
    }
    if (strcmp(t->str, "memory") == 0) {
        c->cfg->bus = OF_BUS_MEMORY;
        return;
    }
    const char *hint = of_did_you_mean(t->str, kinds, 1);
    cerr(c, t, "unknown bus type '%.80s'%s%s%s; allowed: memory", t->str,
         hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
}

static void load_log(ctx *c, const of_ynode *n)
{
    if (!is_mapping_or_null(c, n, "log"))
        return;
    of_ymap_check_keys(n, log_keys, "log", c->file, c->diag);
    char got[96];
    const of_ynode *lv = of_ymap_get(n, "level");
    if (lv) {
        of_log_level_t level;
        if (!of_yis_string(lv) || of_log_parse_level(lv->str, &level) < 0) {
            of_ynode_describe(lv, got, sizeof(got));
            cerr(c, lv, "log 'level' must be one of error, warn, info, debug; got %s", got);
        } else {
            c->cfg->log_level = level;
        }
    }
    const of_ynode *fm = of_ymap_get(n, "format");
    if (fm) {
        if (of_yis_string(fm) && strcmp(fm->str, "text") == 0) {
            c->cfg->log_format = OF_LOG_TEXT;
        } else if (of_yis_string(fm) && strcmp(fm->str, "json") == 0) {
            c->cfg->log_format = OF_LOG_JSON;
        } else {
            of_ynode_describe(fm, got, sizeof(got));
            cerr(c, fm, "log 'format' must be one of text, json; got %s", got);
        }
    }
}

static void load_drain(ctx *c, const of_ynode *n)
{
    char why[256];
    if (!of_yis_string(n)) {
        char got[96];
        of_ynode_describe(n, got, sizeof(got));
        cerr(c, n, "'drain_timeout' must be a duration such as 30s; got %s", got);
        return;
    }
    int64_t ms;
    if (of_parse_duration_ms(n->str, &ms, why, sizeof(why)) < 0)
        cerr(c, n, "'drain_timeout': %s", why);
    else
        c->cfg->drain_timeout_ms = ms;
}

of_host_config *of_host_config_load(const char *path, of_diag *diag)
{
    size_t errors_before = diag->errors;
    of_ydoc *doc = of_ydoc_load_file(path, diag);
    if (!doc)
        return NULL;
    ctx c = {.file = path, .diag = diag};
    c.cfg = calloc(1, sizeof(*c.cfg));
    const char *slash = strrchr(path, '/');
    if (!slash)
        c.dir = strdup(".");
    else if (slash == path)
        c.dir = strdup("/");
    else
        c.dir = strndup(path, (size_t)(slash - path));
    if (!c.cfg || !c.dir || !(c.cfg->file = strdup(path))) {
        of_diag_add(diag, OF_SEV_ERROR, path, 0, 0, "out of memory");
        goto fail;
    }
    if (strcmp(c.dir, "/") == 0) {
        /* resolve() adds the slash itself */
        c.dir[0] = '\0';
    }
    c.cfg->bus = OF_BUS_MEMORY;
    c.cfg->log_level = OF_LVL_INFO;
    c.cfg->log_format = OF_LOG_TEXT;
    c.cfg->drain_timeout_ms = 30000;

    const of_ynode *root = doc->root;
    if (root && root->kind != OF_Y_MAP) {
        char got[96];
        of_ynode_describe(root, got, sizeof(got));
        cerr(&c, root,
             "the host configuration must be a mapping with keys plugin_dirs, "
             "pipelines, bus, log, drain_timeout; got %s",
             got);
        root = NULL;
    }
    if (root) {
        of_ymap_check_keys(root, top_keys, "the host configuration", path, diag);
        const of_ynode *n;
        if ((n = of_ymap_get(root, "plugin_dirs")))
            load_plugin_dirs(&c, n);
        if ((n = of_ymap_get(root, "pipelines")))
            load_pipelines(&c, n);
        if ((n = of_ymap_get(root, "bus")))
            load_bus(&c, n);
        if ((n = of_ymap_get(root, "log")))
            load_log(&c, n);
        if ((n = of_ymap_get(root, "drain_timeout")))
            load_drain(&c, n);
    }
    if (!of_ymap_get(root, "plugin_dirs") &&
        push(&c.cfg->plugin_dirs, &c.cfg->n_plugin_dirs, strdup(OF_DEFAULT_PLUGIN_DIR)) < 0)
        of_diag_add(diag, OF_SEV_ERROR, path, 0, 0, "out of memory");
    if (diag->errors != errors_before)
        goto fail;
    free(c.dir);
    of_ydoc_free(doc);
    return c.cfg;
fail:
    free(c.dir);
    of_host_config_free(c.cfg);
    of_ydoc_free(doc);
    return NULL;
}
