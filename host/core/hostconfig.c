/* orderflow.yaml: the host configuration. */
#include "hostconfig.h"
#include "cache.h"
#include "db.h"
#include "gateway.h"
#include "kafka_conf.h"
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

static const char *const top_keys[] = {
    "plugin_dirs", "pipelines", "bus", "mysql", "redis", "http", "log", "drain_timeout", NULL};
static const char *const bus_keys[] = {"type", "kafka", NULL};
static const char *const kafka_keys[] = {"bootstrap", "client_id", "properties", NULL};
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
    va_list ap;
    va_start(ap, fmt);
    of_diag_addv(c->diag, OF_SEV_ERROR, c->file, at ? at->line : 0, at ? at->column : 0, fmt, ap);
    va_end(ap);
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
    free(cfg->kafka.bootstrap);
    free(cfg->kafka.client_id);
    for (size_t i = 0; i < cfg->kafka.n_properties; i++) {
        free(cfg->kafka.properties[i].key);
        free(cfg->kafka.properties[i].value);
    }
    free(cfg->kafka.properties);
    if (cfg->mysql) {
        of_mysql_config_free(cfg->mysql);
        free(cfg->mysql);
    }
    if (cfg->redis) {
        of_redis_config_free(cfg->redis);
        free(cfg->redis);
    }
    if (cfg->http) {
        of_http_config_free(cfg->http);
        free(cfg->http);
    }
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

static void cwarn(ctx *c, const of_ynode *at, const char *msg)
{
    of_diag_add(c->diag, OF_SEV_WARNING, c->file, at ? at->line : 0, at ? at->column : 0, "%s",
                msg);
}

/* The key node of `key` in a mapping (for positions), or NULL. */
static const of_ynode *map_key(const of_ynode *map, const char *key)
{
    if (!map || map->kind != OF_Y_MAP)
        return NULL;
    for (size_t i = 0; i < map->n_pairs; i++)
        if (strcmp(map->pairs[i].key->str, key) == 0)
            return map->pairs[i].key;
    return NULL;
}

/* Every librdkafka configuration property name (global and topic), parsed from the table
 * librdkafka prints, for "did you mean" hints. NULL-terminated; NULL when unavailable. */
static char **kafka_property_names(size_t *count)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    rd_kafka_conf_properties_show(f);
    fclose(f);
    char **names = NULL;
    size_t n = 0;
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        size_t w = strcspn(line, " |");
        if (w == 0 || line[0] < 'a' || line[0] > 'z' || !strstr(line, " | "))
            continue;
        char **nn = realloc(names, (n + 2) * sizeof(*nn));
        if (!nn)
            break;
        names = nn;
        if (!(names[n] = strndup(line, w)))
            break;
        names[++n] = NULL;
    }
    free(buf);
    *count = n;
    return names;
}

static void free_names(char **names)
{
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
}

/* A hostname[:port] list as librdkafka takes it: "host:port,host:port", each entry optionally
 * with a "proto://" prefix and an IPv6 address in brackets. Returns NULL or the problem. */
static const char *bootstrap_problem(const char *s, char *why, size_t why_size)
{
    const char *p = s;
    for (;;) {
        size_t n = strcspn(p, ",");
        char entry[512];
        const char *b = p, *e = p + n;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e == b) {
            snprintf(why, why_size, "has an empty entry");
            return why;
        }
        snprintf(entry, sizeof(entry), "%.*s", (int)(e - b), b);
        const char *host = strstr(entry, "://");
        host = host ? host + 3 : entry;
        const char *port = NULL;
        if (*host == '[') {
            const char *close = strchr(host, ']');
            if (!close) {
                snprintf(why, why_size, "entry '%.80s' has an unclosed '['", entry);
                return why;
            }
            if (close[1] == ':')
                port = close + 2;
            else if (close[1]) {
                snprintf(why, why_size, "entry '%.80s' is not HOST:PORT", entry);
                return why;
            }
        } else {
            const char *colon = strrchr(host, ':');
            if (colon == host) {
                snprintf(why, why_size, "entry '%.80s' has no host", entry);
                return why;
            }
            if (colon)
                port = colon + 1;
        }
        if (port) {
            char *end;
            errno = 0;
            long v = strtol(port, &end, 10);
            if (!*port || *end || errno || v < 1 || v > 65535 || *port == '+' || *port == '-') {
                snprintf(why, why_size, "entry '%.80s' has an invalid port (1..65535)", entry);
                return why;
            }
        }
        if (!p[n])
            return NULL;
        p += n + 1;
    }
}

static char *string_value(ctx *c, const of_ynode *n, const char *what)
{
    if (of_yis_string(n) && n->len > 0) {
        char *s = strdup(n->str);
        if (!s)
            cerr(c, n, "out of memory");
        return s;
    }
    char got[96];
    of_ynode_describe(n, got, sizeof(got));
    cerr(c, n, "%s must be a non-empty string; got %s", what, got);
    return NULL;
}

static void load_kafka_properties(ctx *c, const of_ynode *n)
{
    if (!is_mapping_or_null(c, n, "bus.kafka.properties"))
        return;
    of_kafka_config *kc = &c->cfg->kafka;
    kc->properties = calloc(n->n_pairs ? n->n_pairs : 1, sizeof(*kc->properties));
    if (!kc->properties) {
        cerr(c, n, "out of memory");
        return;
    }
    char **names = NULL;
    size_t n_names = 0;
    for (size_t i = 0; i < n->n_pairs; i++) {
        const of_ynode *k = n->pairs[i].key, *v = n->pairs[i].value;
        char got[96];
        if (v->kind != OF_Y_SCALAR || v->is_null) {
            of_ynode_describe(v, got, sizeof(got));
            cerr(c, v,
                 "kafka property '%.80s' must be a single value (string, number or bool); got %s",
                 k->str, got);
            continue;
        }
        char why[600];
        if (of_kafka_property_check(k->str, v->str, why, sizeof(why)) < 0) {
            if (of_kafka_property_managed(k->str)) {
                cerr(c, k, "%s", why);
                continue;
            }
            /* Unknown names are reported at the key, bad values at the value. */
            rd_kafka_conf_t *probe = rd_kafka_conf_new();
            char ignored[256];
            int unknown = rd_kafka_conf_set(probe, k->str, v->str, ignored, sizeof(ignored)) ==
                          RD_KAFKA_CONF_UNKNOWN;
            rd_kafka_conf_destroy(probe);
            if (unknown) {
                if (!names)
                    names = kafka_property_names(&n_names);
                const char *hint =
                    names ? of_did_you_mean(k->str, (const char *const *)names, n_names) : NULL;
                cerr(c, k, "%s%s%s%s", why, hint ? " (did you mean '" : "", hint ? hint : "",
                     hint ? "'?)" : "");
            } else {
                cerr(c, v, "%s", why);
            }
            continue;
        }
        of_kv *kv = &kc->properties[kc->n_properties];
        kv->key = strdup(k->str);
        kv->value = strdup(v->str);
        if (!kv->key || !kv->value) {
            free(kv->key);
            free(kv->value);
            cerr(c, k, "out of memory");
            continue;
        }
        kc->n_properties++;
    }
    free_names(names);
}

static void load_kafka(ctx *c, const of_ynode *bus, const of_ynode *n)
{
    int is_map = n ? is_mapping_or_null(c, n, "bus.kafka") : 0;
    const of_ynode *b = is_map ? of_ymap_get(n, "bootstrap") : NULL;
    if (n && n->kind != OF_Y_MAP && !(n->kind == OF_Y_SCALAR && n->is_null))
        return; /* reported as not a mapping */
    if (is_map)
        of_ymap_check_keys(n, kafka_keys, "bus.kafka", c->file, c->diag);
    if (!b) {
        cerr(c, bus,
             "bus type kafka needs 'kafka: {bootstrap: HOST:PORT,...}' (the brokers to "
             "connect to)");
    } else if ((c->cfg->kafka.bootstrap = string_value(c, b, "bus.kafka 'bootstrap'"))) {
        char why[200];
        if (bootstrap_problem(b->str, why, sizeof(why)))
            cerr(c, b, "bus.kafka 'bootstrap' %s; expected HOST:PORT[,HOST:PORT...]", why);
    }
    if (!is_map)
        return;
    const of_ynode *id = of_ymap_get(n, "client_id");
    if (id)
        c->cfg->kafka.client_id = string_value(c, id, "bus.kafka 'client_id'");
    const of_ynode *props = of_ymap_get(n, "properties");
    if (props)
        load_kafka_properties(c, props);
}

static void load_bus(ctx *c, const of_ynode *n)
{
    if (!is_mapping_or_null(c, n, "bus"))
        return;
    of_ymap_check_keys(n, bus_keys, "bus", c->file, c->diag);
    const of_ynode *t = of_ymap_get(n, "type");
    const of_ynode *kafka = of_ymap_get(n, "kafka");
    static const char *const kinds[] = {"memory", "kafka", NULL};
    if (t && !of_yis_string(t)) {
        char got[96];
        of_ynode_describe(t, got, sizeof(got));
        cerr(c, t, "bus 'type' must be one of: memory, kafka; got %s", got);
        return;
    }
    if (!t || strcmp(t->str, "memory") == 0) {
        c->cfg->bus = OF_BUS_MEMORY;
        if (kafka)
            cwarn(c, map_key(n, "kafka"),
                  t ? "bus 'kafka' is ignored with bus type memory"
                    : "bus 'kafka' is ignored: the bus type is memory unless 'type: kafka' is set");
        return;
    }
    if (strcmp(t->str, "kafka") == 0) {
        c->cfg->bus = OF_BUS_KAFKA;
        load_kafka(c, n, kafka);
        return;
    }
    const char *hint = of_did_you_mean(t->str, kinds, 2);
    cerr(c, t, "unknown bus type '%.80s'%s%s%s; allowed: memory, kafka", t->str,
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
             "pipelines, bus, mysql, redis, http, log, drain_timeout; got %s",
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
        if ((n = of_ymap_get(root, "mysql"))) {
            c.cfg->mysql = calloc(1, sizeof(*c.cfg->mysql));
            if (c.cfg->mysql)
                of_mysql_config_parse(c.cfg->mysql, n, c.dir, path, diag);
        }
        if ((n = of_ymap_get(root, "redis"))) {
            c.cfg->redis = calloc(1, sizeof(*c.cfg->redis));
            if (c.cfg->redis)
                of_redis_config_parse(c.cfg->redis, n, path, diag);
        }
        if ((n = of_ymap_get(root, "http"))) {
            c.cfg->http = calloc(1, sizeof(*c.cfg->http));
            if (c.cfg->http)
                of_http_config_parse(c.cfg->http, n, path, diag);
        }
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
