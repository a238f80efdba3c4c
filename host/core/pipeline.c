/* Pipeline files: schema validation into the of_pipeline model. Every problem
 * is reported with its position; nothing stops at the first one. */
#include "pipeline.h"

#include "gateway.h"
#include "yaml_json.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN  128
#define TOPIC_MAX_LEN 249

static const char *const top_keys[] = {"pipeline", "description", "topics", "stages",
                                       "routes",   "tests",       NULL};
static const char *const topic_keys[] = {"partitions", "replication", "external", NULL};
static const char *const stage_keys[] = {
    "name",  "plugin",         "inputs",      "outputs", "concurrency", "max_in_flight",
    "batch", "consumer_group", "dead_letter", "retry",   "breaker",     "config",
    NULL};
static const char *const retry_keys[] = {"max_attempts", "initial_backoff", "max_backoff",
                                         "multiplier",   "jitter",          NULL};
static const char *const breaker_keys[] = {"enabled",  "failure_rate", "window", "min_calls",
                                           "open_for", "trial_calls",  NULL};
static const char *const test_keys[] = {"name", "input", "inputs", "expect", "expect_empty", NULL};
static const char *const block_keys[] = {"topic", "events", NULL};
static const char *const event_keys[] = {"key", "value", "headers", NULL};

typedef struct pctx {
    const char *file;
    of_diag *diag;
    const of_plugin_registry *reg;
    of_pipeline *p;
    size_t n_declared; /* topics declared under topics: (the rest are implied dead
                          letters) */
    int oom;
} pctx;

static void vreport(pctx *c, of_severity sev, int line, int column, const char *fmt, va_list ap)
{
    of_diag_addv(c->diag, sev, c->file, line, column, fmt, ap);
}

static void perr(pctx *c, const of_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(pctx *c, const of_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, OF_SEV_ERROR, at ? at->line : 0, at ? at->column : 0, fmt, ap);
    va_end(ap);
}

static void pwarn(pctx *c, const of_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pwarn(pctx *c, const of_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, OF_SEV_WARNING, at ? at->line : 0, at ? at->column : 0, fmt, ap);
    va_end(ap);
}

static void nomem(pctx *c, const of_ynode *at)
{
    if (!c->oom)
        perr(c, at, "out of memory");
    c->oom = 1;
}

static char *xstrdup(pctx *c, const of_ynode *at, const char *s)
{
    char *d = strdup(s);
    if (!d)
        nomem(c, at);
    return d;
}

/* ---------------------------------------------------------------------------------------------
 * Freeing
 * -------------------------------------------------------------------------------------------
 */

static void test_event_free(of_test_event *e)
{
    free(e->topic);
    free(e->key);
    free(e->value);
    for (size_t i = 0; i < e->n_headers; i++) {
        free(e->headers[i].name);
        free(e->headers[i].value);
    }
    free(e->headers);
}

void of_pipeline_free(of_pipeline *p)
{
    if (!p)
        return;
    free(p->file);
    free(p->name);
    free(p->description);
    for (size_t i = 0; i < p->n_topics; i++)
        free(p->topics[i].name);
    free(p->topics);
    of_routes_free(p->routes, p->n_routes);
    for (size_t i = 0; i < p->n_stages; i++) {
        of_stage_def *s = &p->stages[i];
        free(s->name);
        free(s->plugin_name);
        for (size_t k = 0; k < s->n_inputs; k++)
            free(s->inputs[k]);
        free(s->inputs);
        for (size_t k = 0; k < s->n_outputs; k++) {
            free(s->outputs[k].output);
            free(s->outputs[k].topic);
        }
        free(s->outputs);
        free(s->consumer_group);
        free(s->dead_letter);
        of_config_free(s->config);
    }
    free(p->stages);
    for (size_t i = 0; i < p->n_tests; i++) {
        of_test_def *t = &p->tests[i];
        free(t->name);
        for (size_t k = 0; k < t->n_inputs; k++)
            test_event_free(&t->inputs[k]);
        free(t->inputs);
        for (size_t k = 0; k < t->n_expect; k++)
            test_event_free(&t->expect[k]);
        free(t->expect);
        for (size_t k = 0; k < t->n_expect_empty; k++)
            free(t->expect_empty[k]);
        free(t->expect_empty);
    }
    free(p->tests);
    free(p);
}

const of_topic_def *of_pipeline_topic(const of_pipeline *p, const char *name)
{
    if (!p || !name)
        return NULL;
    for (size_t i = 0; i < p->n_topics; i++)
        if (p->topics[i].name && strcmp(p->topics[i].name, name) == 0)
            return &p->topics[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Typed values
 * -------------------------------------------------------------------------------------------
 */

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
              ch == '-'))
            return 0;
    }
    return 1;
}

static int valid_topic(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TOPIC_MAX_LEN || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

/* A non-null scalar; reports "WHAT must be a string; got ..." otherwise. */
static const char *want_string(pctx *c, const of_ynode *n, const char *what)
{
    if (of_yis_string(n))
        return n->str;
    char got[96];
    of_ynode_describe(n, got, sizeof(got));
    perr(c, n, "%s must be a string; got %s", what, got);
    return NULL;
}

static int want_int(pctx *c, const of_ynode *n, const char *what, int64_t lo, int64_t hi, int *out)
{
    char got[96], why[256];
    int64_t v;
    if (!of_yis_string(n)) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, "%s must be an integer between %lld and %lld; got %s", what, (long long)lo,
             (long long)hi, got);
        return -1;
    }
    if (of_parse_int(n->str, &v, why, sizeof(why)) < 0) {
        perr(c, n, "%s: %s", what, why);
        return -1;
    }
    if (v < lo || v > hi) {
        perr(c, n, "%s must be between %lld and %lld; got %lld", what, (long long)lo, (long long)hi,
             (long long)v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int want_bool(pctx *c, const of_ynode *n, const char *what, int *out)
{
    char got[96], why[256];
    if (!of_yis_string(n)) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, "%s must be true or false; got %s", what, got);
        return -1;
    }
    if (of_parse_bool(n->str, out, why, sizeof(why)) < 0) {
        perr(c, n, "%s: %s", what, why);
        return -1;
    }
    return 0;
}

static int want_duration(pctx *c, const of_ynode *n, const char *what, int64_t *out)
{
    char got[96], why[256];
    if (!of_yis_string(n)) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, "%s must be a duration such as 250ms or 1.5s; got %s", what, got);
        return -1;
    }
    if (of_parse_duration_ms(n->str, out, why, sizeof(why)) < 0) {
        perr(c, n, "%s: %s", what, why);
        return -1;
    }
    return 0;
}

static int want_double(pctx *c, const of_ynode *n, const char *what, double lo, double hi,
                       double *out)
{
    char got[96], why[256];
    double v;
    if (!of_yis_string(n)) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, "%s must be a number; got %s", what, got);
        return -1;
    }
    if (of_parse_double(n->str, &v, why, sizeof(why)) < 0) {
        perr(c, n, "%s: %s", what, why);
        return -1;
    }
    if (v < lo || v > hi) {
        if (hi > 1e300)
            perr(c, n, "%s must be at least %g; got %g", what, lo, v);
        else
            perr(c, n, "%s must be between %g and %g; got %g", what, lo, hi, v);
        return -1;
    }
    *out = v;
    return 0;
}

/* A mapping, or null/absent (returns 0 for those); reports other kinds. */
static int want_map_or_null(pctx *c, const of_ynode *n, const char *what)
{
    if (!n || (n->kind == OF_Y_SCALAR && n->is_null))
        return 0;
    if (n->kind == OF_Y_MAP)
        return 1;
    char got[96];
    of_ynode_describe(n, got, sizeof(got));
    perr(c, n, "%s must be a mapping; got %s", what, got);
    return -1;
}

/* "a, b, c" of the names; caller frees. */
static char *join_names(const char *const *names, size_t n)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += strlen(names[i]) + 2;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t pos = 0;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++)
        pos += (size_t)snprintf(s + pos, cap - pos, "%s%s", i ? ", " : "", names[i]);
    return s;
}

/* Names of the declared topics, for hints. */
static const char **topic_names(const of_pipeline *p, size_t *n)
{
    const char **names = calloc(p->n_topics + 1, sizeof(*names));
    size_t k = 0;
    if (names)
        for (size_t i = 0; i < p->n_topics; i++)
            if (p->topics[i].name)
                names[k++] = p->topics[i].name;
    *n = k;
    return names;
}

/* Reports an undeclared topic with a did-you-mean hint. */
static void undeclared(pctx *c, const of_ynode *at, const char *prefix, const char *topic)
{
    size_t n = 0;
    const char **names = topic_names(c->p, &n);
    const char *hint = names ? of_did_you_mean(topic, names, n) : NULL;
    if (hint)
        perr(c, at, "%s '%s' is not declared under topics: (did you mean '%s'?)", prefix, topic,
             hint);
    else
        perr(c, at, "%s '%s' is not declared under topics:", prefix, topic);
    free(names);
}

static int topic_declared(pctx *c, const char *name)
{
    return of_pipeline_topic(c->p, name) != NULL;
}

/* ---------------------------------------------------------------------------------------------
 * topics:
 * -------------------------------------------------------------------------------------------
 */

static int add_topic(pctx *c, const char *name, int partitions, int replication, int external,
                     int line, int column)
{
    of_pipeline *p = c->p;
    of_topic_def *t = realloc(p->topics, (p->n_topics + 1) * sizeof(*t));
    if (!t)
        return -1;
    p->topics = t;
    of_topic_def *d = &p->topics[p->n_topics];
    memset(d, 0, sizeof(*d));
    if (!(d->name = strdup(name)))
        return -1;
    d->partitions = partitions;
    d->replication = replication;
    d->external = external;
    d->line = line;
    d->column = column;
    p->n_topics++;
    return 0;
}

static void parse_topics(pctx *c, const of_ynode *n)
{
    if (want_map_or_null(c, n, "'topics'") <= 0)
        return;
    for (size_t i = 0; i < n->n_pairs; i++) {
        const of_ynode *k = n->pairs[i].key, *v = n->pairs[i].value;
        char what[300];
        int partitions = 3, replication = 1, external = 0;
        if (!valid_topic(k->str)) {
            perr(c, k,
                 "bad topic name '%.80s' (letters, digits, '.', '_' and '-', at most "
                 "%d)",
                 k->str, TOPIC_MAX_LEN);
            continue;
        }
        int r = want_map_or_null(c, v, "a topic's settings (partitions, replication, external)");
        if (r > 0) {
            snprintf(what, sizeof(what), "topic '%s'", k->str);
            of_ymap_check_keys(v, topic_keys, what, c->file, c->diag);
            const of_ynode *x;
            snprintf(what, sizeof(what), "topic '%s' partitions", k->str);
            if ((x = of_ymap_get(v, "partitions")))
                want_int(c, x, what, 1, 1024, &partitions);
            snprintf(what, sizeof(what), "topic '%s' replication", k->str);
            if ((x = of_ymap_get(v, "replication")))
                want_int(c, x, what, 1, 16, &replication);
            snprintf(what, sizeof(what), "topic '%s' external", k->str);
            if ((x = of_ymap_get(v, "external")))
                want_bool(c, x, what, &external);
        }
        if (add_topic(c, k->str, partitions, replication, external, k->line, k->column) < 0)
            nomem(c, k);
    }
}

/* ---------------------------------------------------------------------------------------------
 * stages:
 * -------------------------------------------------------------------------------------------
 */

static void parse_inputs(pctx *c, of_stage_def *s, const of_ynode *n, const char *where)
{
    char got[96];
    if (n->kind != OF_Y_SEQ) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, "%s inputs must be a list of topic names, e.g. [orders]; got %s", where, got);
        return;
    }
    if (n->n_items == 0) {
        perr(c, n, "%s inputs must name at least one topic", where);
        return;
    }
    s->inputs = calloc(n->n_items, sizeof(*s->inputs));
    if (!s->inputs) {
        nomem(c, n);
        return;
    }
    for (size_t i = 0; i < n->n_items; i++) {
        const of_ynode *it = n->items[i];
        if (!of_yis_string(it)) {
            of_ynode_describe(it, got, sizeof(got));
            perr(c, it, "%s inputs must be topic names; got %s", where, got);
            continue;
        }
        int dup = 0;
        for (size_t k = 0; k < s->n_inputs; k++)
            if (strcmp(s->inputs[k], it->str) == 0)
                dup = 1;
        if (dup) {
            perr(c, it, "%s lists input '%s' twice", where, it->str);
            continue;
        }
        if (!topic_declared(c, it->str)) {
            char prefix[300];
            snprintf(prefix, sizeof(prefix), "%s input topic", where);
            undeclared(c, it, prefix, it->str);
        }
        if (!(s->inputs[s->n_inputs] = xstrdup(c, it, it->str)))
            continue;
        s->n_inputs++;
    }
}

static size_t count_outputs(const of_stage_descriptor *d)
{
    size_t n = 0;
    while (d && d->outputs && d->outputs[n])
        n++;
    return n;
}

static void parse_outputs(pctx *c, of_stage_def *s, const of_ynode *stage_node, const of_ynode *n,
                          const char *where)
{
    const of_stage_descriptor *desc = s->plugin ? s->plugin->desc : NULL;
    size_t n_decl = count_outputs(desc);
    int r = n ? want_map_or_null(c, n, "outputs (output name -> topic)") : 0;
    if (r < 0)
        return;
    if (r > 0) {
        s->outputs = calloc(n->n_pairs, sizeof(*s->outputs));
        if (!s->outputs) {
            nomem(c, n);
            return;
        }
        for (size_t i = 0; i < n->n_pairs; i++) {
            const of_ynode *k = n->pairs[i].key, *v = n->pairs[i].value;
            if (desc) {
                size_t j = 0;
                while (j < n_decl && strcmp(desc->outputs[j], k->str) != 0)
                    j++;
                if (j == n_decl) {
                    if (n_decl == 0) {
                        perr(c, k,
                             "%s: plugin '%s' has no outputs, so output '%s' cannot be "
                             "mapped",
                             where, s->plugin_name, k->str);
                    } else {
                        char *list = join_names(desc->outputs, n_decl);
                        const char *hint = of_did_you_mean(k->str, desc->outputs, n_decl);
                        perr(c, k, "%s: plugin '%s' has no output '%s'%s%s%s; its outputs: %s",
                             where, s->plugin_name, k->str, hint ? " (did you mean '" : "",
                             hint ? hint : "", hint ? "'?)" : "", list ? list : "?");
                        free(list);
                    }
                }
            }
            char what[300];
            snprintf(what, sizeof(what), "%s output '%s'", where, k->str);
            const char *topic = want_string(c, v, what);
            if (!topic)
                continue;
            if (!topic_declared(c, topic)) {
                size_t nt = 0;
                const char **names = topic_names(c->p, &nt);
                const char *hint = names ? of_did_you_mean(topic, names, nt) : NULL;
                perr(c, v, "%s: output '%s' goes to undeclared topic '%s'%s%s%s", where, k->str,
                     topic, hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
                free(names);
            }
            of_output_map *m = &s->outputs[s->n_outputs];
            m->output = xstrdup(c, k, k->str);
            m->topic = xstrdup(c, v, topic);
            if (!m->output || !m->topic) {
                free(m->output);
                free(m->topic);
                continue;
            }
            s->n_outputs++;
        }
    }
    /* Every output the plugin emits on must go somewhere. */
    for (size_t j = 0; j < n_decl; j++) {
        int mapped = 0;
        for (size_t i = 0; r > 0 && i < n->n_pairs; i++)
            if (strcmp(n->pairs[i].key->str, desc->outputs[j]) == 0)
                mapped = 1;
        if (!mapped)
            perr(c, r > 0 ? n : stage_node,
                 "%s: output '%s' of plugin '%s' is not mapped to a topic (add '%s: "
                 "TOPIC' under "
                 "outputs:)",
                 where, desc->outputs[j], s->plugin_name, desc->outputs[j]);
    }
}

static void parse_retry(pctx *c, of_retry_policy *r, const of_ynode *n, const char *where)
{
    char what[300];
    snprintf(what, sizeof(what), "%s retry", where);
    if (want_map_or_null(c, n, what) <= 0)
        return;
    of_ymap_check_keys(n, retry_keys, what, c->file, c->diag);
    const of_ynode *x;
    int ok_initial = 1, ok_max = 1;
    snprintf(what, sizeof(what), "%s retry.max_attempts", where);
    if ((x = of_ymap_get(n, "max_attempts")))
        want_int(c, x, what, 1, 1000, &r->max_attempts);
    snprintf(what, sizeof(what), "%s retry.initial_backoff", where);
    if ((x = of_ymap_get(n, "initial_backoff")))
        ok_initial = want_duration(c, x, what, &r->initial_backoff_ms) == 0;
    snprintf(what, sizeof(what), "%s retry.max_backoff", where);
    const of_ynode *maxn = of_ymap_get(n, "max_backoff");
    if (maxn)
        ok_max = want_duration(c, maxn, what, &r->max_backoff_ms) == 0;
    snprintf(what, sizeof(what), "%s retry.multiplier", where);
    if ((x = of_ymap_get(n, "multiplier")))
        want_double(c, x, what, 1.0, 1e308, &r->multiplier);
    snprintf(what, sizeof(what), "%s retry.jitter", where);
    if ((x = of_ymap_get(n, "jitter")))
        want_double(c, x, what, 0.0, 1.0, &r->jitter);
    if (ok_initial && ok_max && r->max_backoff_ms < r->initial_backoff_ms) {
        char a[64], b[64];
        of_format_duration_ms(r->max_backoff_ms, a, sizeof(a));
        of_format_duration_ms(r->initial_backoff_ms, b, sizeof(b));
        perr(c, maxn ? maxn : of_ymap_get(n, "initial_backoff"),
             "%s retry.max_backoff (%s) is below initial_backoff (%s)", where, a, b);
    }
}

/* breaker: {enabled, failure_rate, window, min_calls, open_for, trial_calls}; every key
 * optional, the defaults are in breaker.h. Values are checked even when enabled is false. */
static void parse_breaker(pctx *c, of_breaker_policy *b, const of_ynode *n, const char *where)
{
    char what[300];
    snprintf(what, sizeof(what), "%s breaker", where);
    if (want_map_or_null(c, n, what) <= 0)
        return;
    of_ymap_check_keys(n, breaker_keys, what, c->file, c->diag);
    const of_ynode *x;
    snprintf(what, sizeof(what), "%s breaker.enabled", where);
    if ((x = of_ymap_get(n, "enabled")))
        want_bool(c, x, what, &b->enabled);
    snprintf(what, sizeof(what), "%s breaker.failure_rate", where);
    if ((x = of_ymap_get(n, "failure_rate"))) {
        double v;
        /* want_double's bounds are inclusive; this one is (0, 1] */
        if (want_double(c, x, what, -1e308, 1e308, &v) == 0) {
            if (v > 0 && v <= 1)
                b->failure_rate = v;
            else
                perr(c, x, "%s must be above 0 and at most 1 (a fraction of the calls); got %g",
                     what, v);
        }
    }
    int ok_window = 1;
    snprintf(what, sizeof(what), "%s breaker.window", where);
    if ((x = of_ymap_get(n, "window")))
        ok_window = want_int(c, x, what, 1, OF_BREAKER_MAX_WINDOW, &b->window) == 0;
    snprintf(what, sizeof(what), "%s breaker.min_calls", where);
    const of_ynode *minn = of_ymap_get(n, "min_calls");
    if (minn) {
        int v;
        if (want_int(c, minn, what, 1, OF_BREAKER_MAX_WINDOW, &v) == 0) {
            if (ok_window && v > b->window)
                perr(c, minn, "%s (%d) exceeds window (%d): the breaker could never open", what, v,
                     b->window);
            else
                b->min_calls = v;
        }
    } else if (ok_window && b->window < b->min_calls) {
        b->min_calls = b->window; /* the default min_calls, capped by a small window */
    }
    snprintf(what, sizeof(what), "%s breaker.open_for", where);
    if ((x = of_ymap_get(n, "open_for"))) {
        int64_t ms;
        if (want_duration(c, x, what, &ms) == 0) {
            if (ms < OF_BREAKER_MIN_OPEN_FOR_MS) {
                char got[64];
                of_format_duration_ms(ms, got, sizeof(got));
                perr(c, x, "%s must be at least %dms; got %s", what, OF_BREAKER_MIN_OPEN_FOR_MS,
                     got);
            } else {
                b->open_for_ms = ms;
            }
        }
    }
    snprintf(what, sizeof(what), "%s breaker.trial_calls", where);
    if ((x = of_ymap_get(n, "trial_calls")))
        want_int(c, x, what, 1, OF_BREAKER_MAX_TRIAL_CALLS, &b->trial_calls);
}

static void resolve_plugin(pctx *c, of_stage_def *s, const of_ynode *n, const char *where)
{
    if (!c->reg)
        return;
    s->plugin = of_registry_find(c->reg, s->plugin_name);
    if (s->plugin)
        return;
    size_t count = c->reg->count;
    if (count == 0) {
        perr(c, n, "%s: unknown plugin '%s' (no plugins are loaded: check plugin_dirs)", where,
             s->plugin_name);
        return;
    }
    const char **names = calloc(count, sizeof(*names));
    if (!names) {
        nomem(c, n);
        return;
    }
    for (size_t i = 0; i < count; i++)
        names[i] = c->reg->plugins[i]->name;
    char *list = join_names(names, count);
    const char *hint = of_did_you_mean(s->plugin_name, names, count);
    perr(c, n, "%s: unknown plugin '%s'%s%s%s; available: %s", where, s->plugin_name,
         hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "", list ? list : "?");
    free(list);
    free(names);
}

static void parse_stage(pctx *c, size_t idx, const of_ynode *n, const of_ynode **name_nodes)
{
    of_stage_def *s = &c->p->stages[idx];
    char where[200], what[300];
    s->line = n->line;
    s->column = n->column;
    s->concurrency = 1;
    s->max_in_flight = 1000;
    s->batch = 1;
    s->retry.max_attempts = 5;
    s->retry.initial_backoff_ms = 100;
    s->retry.max_backoff_ms = 30000;
    s->retry.multiplier = 2.0;
    s->retry.jitter = 0.2;
    of_breaker_policy_default(&s->breaker);

    /* name first: the other messages use it */
    const of_ynode *x = of_ymap_get(n, "name");
    if (x && of_yis_string(x))
        snprintf(where, sizeof(where), "stage '%.80s'", x->str);
    else
        snprintf(where, sizeof(where), "stage #%zu", idx + 1);
    of_ymap_check_keys(n, stage_keys, where, c->file, c->diag);
    if (!x) {
        perr(c, n, "%s is missing required key 'name'", where);
    } else if (want_string(c, x, "a stage's name")) {
        if (!valid_name(x->str)) {
            perr(c, x,
                 "bad stage name '%.80s' (expected [a-z0-9][a-z0-9_.-]*, at most %d "
                 "chars)",
                 x->str, NAME_MAX_LEN);
        } else {
            for (size_t k = 0; k < idx; k++) {
                if (name_nodes[k] && strcmp(name_nodes[k]->str, x->str) == 0) {
                    perr(c, x, "duplicate stage name '%s' (first defined at line %d)", x->str,
                         name_nodes[k]->line);
                    break;
                }
            }
            name_nodes[idx] = x;
            s->name = xstrdup(c, x, x->str);
        }
    }

    x = of_ymap_get(n, "plugin");
    if (!x) {
        perr(c, n, "%s is missing required key 'plugin'", where);
    } else {
        snprintf(what, sizeof(what), "%s plugin", where);
        if (want_string(c, x, what) && (s->plugin_name = xstrdup(c, x, x->str)))
            resolve_plugin(c, s, x, where);
    }

    /* A stage without inputs only answers HTTP routes (checked once routes are known). */
    x = of_ymap_get(n, "inputs");
    if (x)
        parse_inputs(c, s, x, where);
    s->inputs_given = x != NULL;

    /* Outputs are only checked against the plugin once it is known; without a
     * registry they are still checked against topics. */
    if (c->reg == NULL || s->plugin || !s->plugin_name)
        parse_outputs(c, s, n, of_ymap_get(n, "outputs"), where);
    else if ((x = of_ymap_get(n, "outputs")) && want_map_or_null(c, x, "outputs") > 0) {
        /* unknown plugin: still check that the topics exist */
        for (size_t i = 0; i < x->n_pairs; i++) {
            const of_ynode *v = x->pairs[i].value;
            snprintf(what, sizeof(what), "%s output '%s'", where, x->pairs[i].key->str);
            const char *topic = want_string(c, v, what);
            if (topic && !topic_declared(c, topic))
                perr(c, v, "%s: output '%s' goes to undeclared topic '%s'", where,
                     x->pairs[i].key->str, topic);
        }
    }

    snprintf(what, sizeof(what), "%s concurrency", where);
    if ((x = of_ymap_get(n, "concurrency")))
        want_int(c, x, what, 1, 256, &s->concurrency);
    snprintf(what, sizeof(what), "%s max_in_flight", where);
    if ((x = of_ymap_get(n, "max_in_flight")))
        want_int(c, x, what, 1, 1000000, &s->max_in_flight);
    snprintf(what, sizeof(what), "%s batch", where);
    if ((x = of_ymap_get(n, "batch")))
        want_int(c, x, what, 1, 1000, &s->batch);

    snprintf(what, sizeof(what), "%s consumer_group", where);
    if ((x = of_ymap_get(n, "consumer_group"))) {
        if (want_string(c, x, what))
            s->consumer_group = xstrdup(c, x, x->str);
    } else if (c->p->name && s->name) {
        if (asprintf(&s->consumer_group, "orderflow.%s.%s", c->p->name, s->name) < 0) {
            s->consumer_group = NULL;
            nomem(c, n);
        }
    }

    snprintf(what, sizeof(what), "%s dead_letter", where);
    if ((x = of_ymap_get(n, "dead_letter"))) {
        if (want_string(c, x, what)) {
            if (!valid_topic(x->str))
                perr(c, x, "%s: bad topic name '%.80s'", what, x->str);
            else
                s->dead_letter = xstrdup(c, x, x->str);
        }
    } else if (s->n_inputs > 0) {
        if (asprintf(&s->dead_letter, "%s.dlq", s->inputs[0]) < 0) {
            s->dead_letter = NULL;
            nomem(c, n);
        }
    }

    if ((x = of_ymap_get(n, "retry")))
        parse_retry(c, &s->retry, x, where);
    if ((x = of_ymap_get(n, "breaker")))
        parse_breaker(c, &s->breaker, x, where);

    if (s->plugin) {
        snprintf(what, sizeof(what), "%s config", where);
        s->config = of_config_from_yaml_at(s->plugin->desc->options, of_ymap_get(n, "config"),
                                           c->file, n->line, n->column, what, c->diag);
    } else if ((x = of_ymap_get(n, "config"))) {
        snprintf(what, sizeof(what), "%s config", where);
        want_map_or_null(c, x, what);
    }
}

static void parse_stages(pctx *c, const of_ynode *root)
{
    const of_ynode *n = of_ymap_get(root, "stages");
    char got[96];
    if (!n) {
        perr(c, root, "missing required key 'stages' (the list of stages)");
        return;
    }
    if (n->kind != OF_Y_SEQ || n->n_items == 0) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, "'stages' must be a non-empty list of stages; got %s",
             n->kind == OF_Y_SEQ ? "an empty list" : got);
        return;
    }
    c->p->stages = calloc(n->n_items, sizeof(*c->p->stages));
    const of_ynode **name_nodes = calloc(n->n_items, sizeof(*name_nodes));
    if (!c->p->stages || !name_nodes) {
        free(name_nodes);
        nomem(c, n);
        return;
    }
    c->p->n_stages = n->n_items;
    for (size_t i = 0; i < n->n_items; i++) {
        const of_ynode *it = n->items[i];
        if (it->kind != OF_Y_MAP) {
            of_ynode_describe(it, got, sizeof(got));
            perr(c, it, "each stage must be a mapping (name, plugin, inputs, ...); got %s", got);
            c->p->stages[i].line = it->line;
            c->p->stages[i].column = it->column;
            continue;
        }
        parse_stage(c, i, it, name_nodes);
    }
    free(name_nodes);
}

/* ---------------------------------------------------------------------------------------------
 * Topic graph checks and implied dead-letter topics
 * -------------------------------------------------------------------------------------------
 */

static int stage_outputs_to(const of_stage_def *s, const char *topic)
{
    for (size_t k = 0; k < s->n_outputs; k++)
        if (strcmp(s->outputs[k].topic, topic) == 0)
            return 1;
    return 0;
}

static int produced(const of_pipeline *p, const char *topic)
{
    for (size_t i = 0; i < p->n_stages; i++) {
        if (stage_outputs_to(&p->stages[i], topic))
            return 1;
        if (p->stages[i].dead_letter && strcmp(p->stages[i].dead_letter, topic) == 0)
            return 1;
    }
    return 0;
}

static int consumed(const of_pipeline *p, const char *topic)
{
    for (size_t i = 0; i < p->n_stages; i++)
        for (size_t k = 0; k < p->stages[i].n_inputs; k++)
            if (strcmp(p->stages[i].inputs[k], topic) == 0)
                return 1;
    return 0;
}

/* The YAML node of a stage's input `topic`, for positions. */
static const of_ynode *input_node(const of_ynode *root, size_t stage, const char *topic)
{
    const of_ynode *stages = of_ymap_get(root, "stages");
    if (!stages || stage >= stages->n_items)
        return NULL;
    const of_ynode *in = of_ymap_get(stages->items[stage], "inputs");
    for (size_t i = 0; in && in->kind == OF_Y_SEQ && i < in->n_items; i++)
        if (of_yis_string(in->items[i]) && strcmp(in->items[i]->str, topic) == 0)
            return in->items[i];
    return stages->items[stage];
}

static void check_graph(pctx *c, const of_ynode *root)
{
    of_pipeline *p = c->p;
    for (size_t i = 0; i < p->n_stages; i++) {
        const of_stage_def *s = &p->stages[i];
        for (size_t k = 0; k < s->n_inputs; k++) {
            const char *t = s->inputs[k];
            const of_topic_def *def = of_pipeline_topic(p, t);
            if (!def)
                continue; /* already an error */
            if (stage_outputs_to(s, t))
                perr(c, input_node(root, i, t),
                     "stage '%s' consumes topic '%s' that it produces itself (a loop)",
                     s->name ? s->name : "?", t);
            else if (s->dead_letter && strcmp(s->dead_letter, t) == 0)
                perr(c, input_node(root, i, t),
                     "stage '%s' consumes its own dead-letter topic '%s' (a loop)",
                     s->name ? s->name : "?", t);
            else if (!def->external && !produced(p, t))
                pwarn(c, input_node(root, i, t),
                      "topic '%s' is consumed by stage '%s' but nothing produces it "
                      "(mark it "
                      "external: true if it comes from outside)",
                      t, s->name ? s->name : "?");
        }
    }
    for (size_t i = 0; i < c->n_declared; i++) {
        const of_topic_def *t = &p->topics[i];
        if (!consumed(p, t->name) && !produced(p, t->name)) {
            of_ynode at = {.line = t->line, .column = t->column};
            pwarn(c, &at, "topic '%s' is declared but no stage reads or writes it", t->name);
        }
    }
}

static void add_dead_letters(pctx *c)
{
    of_pipeline *p = c->p;
    for (size_t i = 0; i < p->n_stages; i++) {
        const of_stage_def *s = &p->stages[i];
        if (!s->dead_letter || of_pipeline_topic(p, s->dead_letter))
            continue;
        int partitions = 3, replication = 1;
        const of_topic_def *in = s->n_inputs ? of_pipeline_topic(p, s->inputs[0]) : NULL;
        if (in) {
            partitions = in->partitions;
            replication = in->replication;
        }
        if (add_topic(c, s->dead_letter, partitions, replication, 0, s->line, s->column) < 0)
            nomem(c, NULL);
    }
}

/* ---------------------------------------------------------------------------------------------
 * tests:
 * -------------------------------------------------------------------------------------------
 */

static int looks_like_json(const char *s)
{
    const char *p = s;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p != '{' && *p != '[')
        return 0;
    json_error_t jerr;
    json_t *j = json_loads(s, 0, &jerr);
    int ok = j && (json_is_object(j) || json_is_array(j));
    json_decref(j);
    return ok;
}

/* One event of a block into *e (topic set by the caller). expect: an absent
 * value means any. */
static int parse_event(pctx *c, of_test_event *e, const of_ynode *n, const char *where, int expect)
{
    char got[96];
    e->line = n->line;
    e->column = n->column;
    if (n->kind != OF_Y_MAP) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, "%s: each event must be a mapping (key, value, headers); got %s", where, got);
        return -1;
    }
    of_ymap_check_keys(n, event_keys, "an event", c->file, c->diag);
    const of_ynode *k = of_ymap_get(n, "key");
    if (k && !(k->kind == OF_Y_SCALAR && k->is_null)) {
        if (k->kind != OF_Y_SCALAR) {
            of_ynode_describe(k, got, sizeof(got));
            perr(c, k, "%s: an event key must be a string; got %s", where, got);
        } else {
            e->key = xstrdup(c, k, k->str);
        }
    }
    const of_ynode *v = of_ymap_get(n, "value");
    if (!v) {
        if (!expect)
            e->value = xstrdup(c, n, "");
    } else if (v->kind == OF_Y_SCALAR) {
        e->value = xstrdup(c, v, v->is_null ? "" : v->str);
        if (e->value && !v->is_null)
            e->value_is_json = looks_like_json(e->value);
    } else {
        json_t *j = of_ynode_to_json(v);
        char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(j);
        if (!text) {
            perr(c, v, "%s: the value cannot be written as JSON (is all text valid UTF-8?)", where);
        } else {
            e->value = xstrdup(c, v, text);
            e->value_is_json = 1;
            free(text);
        }
    }
    const of_ynode *h = of_ymap_get(n, "headers");
    int r = h ? want_map_or_null(c, h, "an event's headers") : 0;
    if (r > 0) {
        e->headers = calloc(h->n_pairs, sizeof(*e->headers));
        if (!e->headers) {
            nomem(c, h);
            return -1;
        }
        for (size_t i = 0; i < h->n_pairs; i++) {
            const of_ynode *hk = h->pairs[i].key, *hv = h->pairs[i].value;
            if (hv->kind != OF_Y_SCALAR) {
                of_ynode_describe(hv, got, sizeof(got));
                perr(c, hv, "%s: header '%s' must have a string value; got %s", where, hk->str,
                     got);
                continue;
            }
            of_test_header *th = &e->headers[e->n_headers];
            th->name = xstrdup(c, hk, hk->str);
            th->value = xstrdup(c, hv, hv->is_null ? "" : hv->str);
            if (!th->name || !th->value) {
                free(th->name);
                free(th->value);
                continue;
            }
            e->n_headers++;
        }
    }
    return 0;
}

/* Appends the events of one {topic, events} block to *arr. */
static void parse_block(pctx *c, const of_ynode *n, of_test_event **arr, size_t *count,
                        const char *where, int expect)
{
    char got[96];
    if (n->kind != OF_Y_MAP) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, "%s must be a mapping with 'topic' and 'events'; got %s", where, got);
        return;
    }
    of_ymap_check_keys(n, block_keys, where, c->file, c->diag);
    const of_ynode *t = of_ymap_get(n, "topic");
    const char *topic = NULL;
    char what[300];
    snprintf(what, sizeof(what), "%s topic", where);
    if (!t)
        perr(c, n, "%s is missing required key 'topic'", where);
    else if ((topic = want_string(c, t, what)) && !topic_declared(c, topic)) {
        undeclared(c, t, what, topic);
        topic = NULL;
    }
    const of_ynode *ev = of_ymap_get(n, "events");
    if (!ev) {
        perr(c, n, "%s is missing required key 'events'", where);
        return;
    }
    if (ev->kind != OF_Y_SEQ || ev->n_items == 0) {
        of_ynode_describe(ev, got, sizeof(got));
        perr(c, ev, "%s events must be a non-empty list of events%s; got %s", where,
             expect ? " (use expect_empty: for a topic that must stay empty)" : "",
             ev->kind == OF_Y_SEQ ? "an empty list" : got);
        return;
    }
    of_test_event *a = realloc(*arr, (*count + ev->n_items) * sizeof(*a));
    if (!a) {
        nomem(c, ev);
        return;
    }
    *arr = a;
    for (size_t i = 0; i < ev->n_items; i++) {
        of_test_event *e = &a[*count];
        memset(e, 0, sizeof(*e));
        (*count)++;
        parse_event(c, e, ev->items[i], where, expect);
        if (topic)
            e->topic = xstrdup(c, t, topic);
    }
}

static void parse_test(pctx *c, of_test_def *t, const of_ynode *n, size_t idx,
                       const of_ynode **name_nodes)
{
    char where[200], what[300], got[96];
    t->line = n->line;
    t->column = n->column;
    const of_ynode *x = of_ymap_get(n, "name");
    if (x && of_yis_string(x))
        snprintf(where, sizeof(where), "test '%.80s'", x->str);
    else
        snprintf(where, sizeof(where), "test #%zu", idx + 1);
    of_ymap_check_keys(n, test_keys, where, c->file, c->diag);
    if (!x) {
        perr(c, n, "%s is missing required key 'name'", where);
    } else if (want_string(c, x, "a test's name")) {
        for (size_t k = 0; k < idx; k++) {
            if (name_nodes[k] && strcmp(name_nodes[k]->str, x->str) == 0) {
                perr(c, x, "duplicate test name '%s' (first defined at line %d)", x->str,
                     name_nodes[k]->line);
                break;
            }
        }
        name_nodes[idx] = x;
        t->name = xstrdup(c, x, x->str);
    }

    const of_ynode *in = of_ymap_get(n, "input"), *ins = of_ymap_get(n, "inputs");
    if (in && ins) {
        perr(c, ins,
             "%s has both 'input' and 'inputs'; use one ('inputs' is a list of "
             "{topic, events} blocks)",
             where);
    } else if (in) {
        snprintf(what, sizeof(what), "%s input", where);
        parse_block(c, in, &t->inputs, &t->n_inputs, what, 0);
    } else if (ins) {
        if (ins->kind != OF_Y_SEQ || ins->n_items == 0) {
            of_ynode_describe(ins, got, sizeof(got));
            perr(c, ins,
                 "%s inputs must be a non-empty list of {topic, events} blocks; got "
                 "%s",
                 where, ins->kind == OF_Y_SEQ ? "an empty list" : got);
        } else {
            for (size_t i = 0; i < ins->n_items; i++) {
                snprintf(what, sizeof(what), "%s inputs[%zu]", where, i + 1);
                parse_block(c, ins->items[i], &t->inputs, &t->n_inputs, what, 0);
            }
        }
    } else {
        perr(c, n, "%s is missing required key 'input' (or 'inputs')", where);
    }

    const of_ynode *ex = of_ymap_get(n, "expect");
    if (ex && !(ex->kind == OF_Y_SCALAR && ex->is_null)) {
        if (ex->kind != OF_Y_SEQ) {
            of_ynode_describe(ex, got, sizeof(got));
            perr(c, ex, "%s expect must be a list of {topic, events} blocks; got %s", where, got);
        } else {
            for (size_t i = 0; i < ex->n_items; i++) {
                snprintf(what, sizeof(what), "%s expect[%zu]", where, i + 1);
                parse_block(c, ex->items[i], &t->expect, &t->n_expect, what, 1);
            }
        }
    }

    const of_ynode *ee = of_ymap_get(n, "expect_empty");
    if (ee && !(ee->kind == OF_Y_SCALAR && ee->is_null)) {
        if (ee->kind != OF_Y_SEQ) {
            of_ynode_describe(ee, got, sizeof(got));
            perr(c, ee, "%s expect_empty must be a list of topics; got %s", where, got);
        } else if ((t->expect_empty = calloc(ee->n_items + 1, sizeof(char *))) == NULL) {
            nomem(c, ee);
        } else {
            snprintf(what, sizeof(what), "%s expect_empty topic", where);
            for (size_t i = 0; i < ee->n_items; i++) {
                const of_ynode *it = ee->items[i];
                const char *topic = want_string(c, it, what);
                if (!topic)
                    continue;
                if (!topic_declared(c, topic)) {
                    undeclared(c, it, what, topic);
                    continue;
                }
                if ((t->expect_empty[t->n_expect_empty] = xstrdup(c, it, topic)))
                    t->n_expect_empty++;
            }
        }
    }
}

static void parse_tests(pctx *c, const of_ynode *root)
{
    const of_ynode *n = of_ymap_get(root, "tests");
    if (!n || (n->kind == OF_Y_SCALAR && n->is_null))
        return;
    char got[96];
    if (n->kind != OF_Y_SEQ) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, "'tests' must be a list of tests; got %s", got);
        return;
    }
    if (n->n_items == 0)
        return;
    c->p->tests = calloc(n->n_items, sizeof(*c->p->tests));
    const of_ynode **names = calloc(n->n_items, sizeof(*names));
    if (!c->p->tests || !names) {
        free(names);
        nomem(c, n);
        return;
    }
    c->p->n_tests = n->n_items;
    for (size_t i = 0; i < n->n_items; i++) {
        const of_ynode *it = n->items[i];
        if (it->kind != OF_Y_MAP) {
            of_ynode_describe(it, got, sizeof(got));
            perr(c, it, "each test must be a mapping (name, input, expect, ...); got %s", got);
            continue;
        }
        parse_test(c, &c->p->tests[i], it, i, names);
    }
    free(names);
}

/* ---------------------------------------------------------------------------------------------
 * Entry points
 * -------------------------------------------------------------------------------------------
 */

of_pipeline *of_pipeline_from_ydoc(const of_ydoc *doc, const of_plugin_registry *registry,
                                   of_diag *diag)
{
    size_t errors_before = diag->errors;
    pctx c = {.file = doc->file, .diag = diag, .reg = registry};
    c.p = calloc(1, sizeof(*c.p));
    if (!c.p || !(c.p->file = strdup(doc->file ? doc->file : "<input>"))) {
        free(c.p);
        of_diag_add(diag, OF_SEV_ERROR, doc->file, 0, 0, "out of memory");
        return NULL;
    }
    const of_ynode *root = doc->root;
    char got[96];
    if (!root) {
        of_diag_add(diag, OF_SEV_ERROR, doc->file, 0, 0,
                    "the file is empty: a pipeline needs at least 'pipeline' and 'stages'");
        goto done;
    }
    if (root->kind != OF_Y_MAP) {
        of_ynode_describe(root, got, sizeof(got));
        perr(&c, root,
             "a pipeline file must be a mapping (pipeline, topics, stages, ...); "
             "got %s",
             got);
        goto done;
    }
    of_ymap_check_keys(root, top_keys, "the pipeline file", c.file, diag);

    const of_ynode *x = of_ymap_get(root, "pipeline");
    if (!x) {
        perr(&c, root, "missing required key 'pipeline' (the pipeline's name)");
    } else if (want_string(&c, x, "'pipeline' (the pipeline's name)")) {
        if (!valid_name(x->str))
            perr(&c, x,
                 "bad pipeline name '%.80s' (expected [a-z0-9][a-z0-9_.-]*, at most "
                 "%d chars)",
                 x->str, NAME_MAX_LEN);
        else
            c.p->name = xstrdup(&c, x, x->str);
    }
    if ((x = of_ymap_get(root, "description")) && !(x->kind == OF_Y_SCALAR && x->is_null)) {
        if (want_string(&c, x, "'description'"))
            c.p->description = xstrdup(&c, x, x->str);
    }

    parse_topics(&c, of_ymap_get(root, "topics"));
    c.n_declared = c.p->n_topics;
    parse_stages(&c, root);
    check_graph(&c, root);
    add_dead_letters(&c);
    parse_tests(&c, root);
    if (of_routes_parse(of_ymap_get(root, "routes"), c.p, c.file, diag, &c.p->routes,
                        &c.p->n_routes) == 0) {
        for (size_t i = 0; i < c.p->n_stages; i++) {
            const of_stage_def *st = &c.p->stages[i];
            int served = 0;
            for (size_t k = 0; k < c.p->n_routes && !served; k++)
                served = strcmp(c.p->routes[k].stage, st->name) == 0;
            if (!st->inputs_given && !served)
                of_diag_add(diag, OF_SEV_ERROR, c.file, st->line, st->column,
                            "stage '%s' has no inputs and serves no route: give it inputs "
                            "(topics it consumes) or routes that name it",
                            st->name);
        }
    }

done:
    if (diag->errors != errors_before) {
        of_pipeline_free(c.p);
        return NULL;
    }
    return c.p;
}

of_pipeline *of_pipeline_load(const char *path, const of_plugin_registry *registry, of_diag *diag)
{
    size_t errors_before = diag->errors;
    of_ydoc *doc = of_ydoc_load_file(path, diag);
    if (!doc)
        return NULL;
    of_pipeline *p = of_pipeline_from_ydoc(doc, registry, diag);
    of_ydoc_free(doc);
    if (p && diag->errors != errors_before) {
        /* the document itself had errors (interpolation, duplicate keys) */
        of_pipeline_free(p);
        return NULL;
    }
    return p;
}
