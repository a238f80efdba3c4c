/* The SDK test harness: one stage in a one-stage pipeline built in memory, run by the host's
 * real runner on the embedded bus. Input topic "input" (one partition per worker), each
 * declared output mapped to topic "out.<output>" and the dead-letter topic "dead-letter" (one
 * partition each, so the collected order is the publication order). Only of_harness_* is
 * exported from the shared library: everything else here is static. */
#include <orderflow/harness.h>

#include "bus.h"
#include "metrics.h"
#include "options.h"
#include "pipeline.h"
#include "plugin.h"
#include "runner.h"
#include "ws_hub.h"

#include <pthread.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HARNESS_PIPELINE      "harness"
#define HARNESS_INPUT         "input"
#define HARNESS_DLQ_TOPIC     "dead-letter"
#define HARNESS_FREE_DRAIN_MS 2000

typedef struct collected {
    char *output; /* output name, or OF_HARNESS_DEAD_LETTER */
    char *topic;
    of_event **events;
    size_t n, cap;
} collected;

struct of_harness {
    const of_stage_descriptor *desc;
    of_plugin *loaded; /* of_harness_load's plugin, unloaded by free */
    of_plugin linked;  /* of_harness_new's descriptor as a plugin record */
    char err[1024];

    char **opt_keys, **opt_values;
    size_t n_opts;
    int concurrency;
    int max_attempts;
    int64_t backoff_ms;

    int started;
    of_bus *bus;
    of_metrics *metrics;
    of_runner *runner;
    of_config *config;

    of_pipeline pipe;
    of_stage_def stage;
    collected *outs; /* declared outputs, then the dead letters */
    size_t n_outs;

    of_ws_hub *hub; /* records ws_publish */
    pthread_mutex_t ws_mu;
    struct ws_rec {
        char *channel, *msg;
        size_t len;
    } * ws;
    size_t n_ws, cap_ws;
};

/* The harness has no connections: the hub never writes. */
static int harness_ws_write(void *conn, const char *msg, size_t len)
{
    (void)conn;
    (void)msg;
    (void)len;
    return -1;
}

static void harness_ws_close(void *conn, int code, const char *reason)
{
    (void)conn;
    (void)code;
    (void)reason;
}

static void ws_tap(void *opaque, const char *pipeline, const char *channel, const void *msg,
                   size_t len)
{
    (void)pipeline;
    of_harness *h = opaque;
    pthread_mutex_lock(&h->ws_mu);
    if (h->n_ws == h->cap_ws) {
        size_t cap = h->cap_ws ? h->cap_ws * 2 : 16;
        struct ws_rec *n = realloc(h->ws, cap * sizeof(*n));
        if (!n) {
            pthread_mutex_unlock(&h->ws_mu);
            return;
        }
        h->ws = n;
        h->cap_ws = cap;
    }
    char *c = strdup(channel), *m = malloc(len + 1);
    if (c && m) {
        memcpy(m, msg, len);
        m[len] = '\0';
        h->ws[h->n_ws++] = (struct ws_rec){c, m, len};
    } else {
        free(c);
        free(m);
    }
    pthread_mutex_unlock(&h->ws_mu);
}

size_t of_harness_ws_count(const of_harness *h, const char *channel)
{
    if (!h || !channel)
        return 0;
    of_harness *mh = (of_harness *)h; /* the lock only */
    size_t n = 0;
    pthread_mutex_lock(&mh->ws_mu);
    for (size_t i = 0; i < h->n_ws; i++)
        n += strcmp(h->ws[i].channel, channel) == 0;
    pthread_mutex_unlock(&mh->ws_mu);
    return n;
}

const char *of_harness_ws_message(const of_harness *h, const char *channel, size_t index,
                                  size_t *len)
{
    if (!h || !channel)
        return NULL;
    of_harness *mh = (of_harness *)h;
    const char *found = NULL;
    pthread_mutex_lock(&mh->ws_mu);
    for (size_t i = 0; i < h->n_ws && !found; i++) {
        if (strcmp(h->ws[i].channel, channel) != 0)
            continue;
        if (index-- == 0) {
            found = h->ws[i].msg;
            if (len)
                *len = h->ws[i].len;
        }
    }
    pthread_mutex_unlock(&mh->ws_mu);
    return found;
}

static int harness_fail(of_harness *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int harness_fail(of_harness *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->err, sizeof(h->err), fmt, ap);
    va_end(ap);
    return -1;
}

static void copy_err(char *errstr, size_t size, const char *msg)
{
    if (errstr && size)
        snprintf(errstr, size, "%s", msg);
}

static of_harness *harness_alloc(const of_stage_descriptor *desc)
{
    of_harness *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    if (pthread_mutex_init(&h->ws_mu, NULL) != 0) {
        free(h);
        return NULL;
    }
    h->desc = desc;
    h->concurrency = 1;
    h->max_attempts = 3;
    h->backoff_ms = 1;
    return h;
}

of_harness *of_harness_new(const of_stage_descriptor *desc, char *errstr, size_t errstr_size)
{
    if (of_plugin_check_descriptor(desc, "linked descriptor", errstr, errstr_size) != 0)
        return NULL;
    of_harness *h = harness_alloc(desc);
    if (!h) {
        copy_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    h->linked.name = strdup(desc->name);
    h->linked.desc = desc;
    if (!h->linked.name) {
        of_harness_free(h);
        copy_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    return h;
}

of_harness *of_harness_load(const char *so_path, char *errstr, size_t errstr_size)
{
    if (!so_path) {
        copy_err(errstr, errstr_size, "no plugin path");
        return NULL;
    }
    of_plugin *p = of_plugin_load(so_path, errstr, errstr_size);
    if (!p)
        return NULL;
    of_harness *h = harness_alloc(p->desc);
    if (!h) {
        of_plugin_unload(p);
        copy_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    h->loaded = p;
    return h;
}

const char *of_harness_error(const of_harness *h)
{
    return h ? h->err : "no harness";
}

int of_harness_set(of_harness *h, const char *option, const char *value)
{
    if (!h)
        return -1;
    if (h->started)
        return harness_fail(h, "of_harness_set('%s'): the stage is already started",
                            option ? option : "");
    if (!option || !value)
        return harness_fail(h, "of_harness_set: option and value are required");
    for (size_t i = 0; i < h->n_opts; i++) {
        if (strcmp(h->opt_keys[i], option) == 0) {
            char *v = strdup(value);
            if (!v)
                return harness_fail(h, "out of memory");
            free(h->opt_values[i]);
            h->opt_values[i] = v;
            return 0;
        }
    }
    char **k = realloc(h->opt_keys, (h->n_opts + 1) * sizeof(*k));
    if (!k)
        return harness_fail(h, "out of memory");
    h->opt_keys = k;
    char **v = realloc(h->opt_values, (h->n_opts + 1) * sizeof(*v));
    if (!v)
        return harness_fail(h, "out of memory");
    h->opt_values = v;
    char *ks = strdup(option), *vs = strdup(value);
    if (!ks || !vs) {
        free(ks);
        free(vs);
        return harness_fail(h, "out of memory");
    }
    h->opt_keys[h->n_opts] = ks;
    h->opt_values[h->n_opts] = vs;
    h->n_opts++;
    return 0;
}

int of_harness_set_concurrency(of_harness *h, int workers)
{
    if (!h)
        return -1;
    if (h->started)
        return harness_fail(h, "of_harness_set_concurrency: the stage is already started");
    if (workers < 1 || workers > 256)
        return harness_fail(h, "concurrency must be 1..256 (got %d)", workers);
    h->concurrency = workers;
    return 0;
}

int of_harness_set_retry(of_harness *h, int max_attempts, int64_t initial_backoff_ms)
{
    if (!h)
        return -1;
    if (h->started)
        return harness_fail(h, "of_harness_set_retry: the stage is already started");
    if (max_attempts < 1 || max_attempts > 1000)
        return harness_fail(h, "max_attempts must be 1..1000 (got %d)", max_attempts);
    if (initial_backoff_ms < 0)
        return harness_fail(h, "the backoff must not be negative");
    h->max_attempts = max_attempts;
    h->backoff_ms = initial_backoff_ms;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The in-memory pipeline
 * ------------------------------------------------------------------------------------------- */

static void free_pipeline(of_harness *h)
{
    for (size_t i = 0; i < h->pipe.n_topics; i++)
        free(h->pipe.topics[i].name);
    free(h->pipe.topics);
    free(h->pipe.name);
    free(h->pipe.file);
    of_stage_def *d = &h->stage;
    free(d->name);
    free(d->plugin_name);
    for (size_t i = 0; i < d->n_inputs; i++)
        free(d->inputs[i]);
    free(d->inputs);
    for (size_t i = 0; i < d->n_outputs; i++) {
        free(d->outputs[i].output);
        free(d->outputs[i].topic);
    }
    free(d->outputs);
    free(d->consumer_group);
    free(d->dead_letter);
    memset(&h->pipe, 0, sizeof(h->pipe));
    memset(d, 0, sizeof(*d));
    for (size_t i = 0; i < h->n_outs; i++) {
        for (size_t j = 0; j < h->outs[i].n; j++)
            of_event_free(h->outs[i].events[j]);
        free(h->outs[i].events);
        free(h->outs[i].output);
        free(h->outs[i].topic);
    }
    free(h->outs);
    h->outs = NULL;
    h->n_outs = 0;
}

static int add_topic(of_pipeline *p, const char *name, int partitions)
{
    of_topic_def *t = realloc(p->topics, (p->n_topics + 1) * sizeof(*t));
    if (!t)
        return -1;
    p->topics = t;
    memset(&t[p->n_topics], 0, sizeof(*t));
    t[p->n_topics].name = strdup(name);
    if (!t[p->n_topics].name)
        return -1;
    t[p->n_topics].partitions = partitions;
    t[p->n_topics].replication = 1;
    p->n_topics++;
    return 0;
}

static int build_pipeline(of_harness *h)
{
    const of_stage_descriptor *desc = h->desc;
    of_pipeline *p = &h->pipe;
    of_stage_def *d = &h->stage;
    size_t n_out = 0;
    while (desc->outputs && desc->outputs[n_out])
        n_out++;

    p->file = strdup("<harness>");
    p->name = strdup(HARNESS_PIPELINE);
    d->name = strdup(desc->name);
    d->plugin_name = strdup(desc->name);
    d->inputs = calloc(1, sizeof(*d->inputs));
    d->outputs = calloc(n_out ? n_out : 1, sizeof(*d->outputs));
    h->outs = calloc(n_out + 1, sizeof(*h->outs));
    if (!p->file || !p->name || !d->name || !d->plugin_name || !d->inputs || !d->outputs ||
        !h->outs)
        return -1;
    if (asprintf(&d->consumer_group, "orderflow.%s.%s", HARNESS_PIPELINE, desc->name) < 0) {
        d->consumer_group = NULL;
        return -1;
    }
    d->plugin = h->loaded ? h->loaded : &h->linked;
    d->inputs[0] = strdup(HARNESS_INPUT);
    if (!d->inputs[0])
        return -1;
    d->n_inputs = 1;
    if (add_topic(p, HARNESS_INPUT, h->concurrency) != 0)
        return -1;
    for (size_t i = 0; i < n_out; i++) {
        char *topic = NULL;
        if (asprintf(&topic, "out.%s", desc->outputs[i]) < 0)
            return -1;
        d->outputs[i].topic = topic;
        d->outputs[i].output = strdup(desc->outputs[i]);
        d->n_outputs++;
        h->outs[i].output = strdup(desc->outputs[i]);
        h->outs[i].topic = strdup(topic);
        h->n_outs++;
        if (!d->outputs[i].output || !h->outs[i].output || !h->outs[i].topic ||
            add_topic(p, topic, 1) != 0)
            return -1;
    }
    d->dead_letter = strdup(HARNESS_DLQ_TOPIC);
    h->outs[n_out].output = strdup(OF_HARNESS_DEAD_LETTER);
    h->outs[n_out].topic = strdup(HARNESS_DLQ_TOPIC);
    h->n_outs++;
    if (!d->dead_letter || !h->outs[n_out].output || !h->outs[n_out].topic ||
        add_topic(p, HARNESS_DLQ_TOPIC, 1) != 0)
        return -1;
    d->concurrency = h->concurrency;
    d->max_in_flight = 1000;
    d->retry.max_attempts = h->max_attempts;
    d->retry.initial_backoff_ms = h->backoff_ms;
    d->retry.max_backoff_ms = h->backoff_ms;
    d->retry.multiplier = 1.0;
    d->retry.jitter = 0.0;
    d->config = h->config;
    p->stages = d;
    p->n_stages = 1;
    return 0;
}

static void stop_and_free(of_harness *h)
{
    if (h->runner) {
        of_runner_drain(h->runner, HARNESS_FREE_DRAIN_MS);
        of_runner_free(h->runner);
        h->runner = NULL;
    }
    if (h->bus) {
        h->bus->ops->destroy(h->bus);
        h->bus = NULL;
    }
    of_ws_hub_free(h->hub);
    h->hub = NULL;
    of_metrics_free(h->metrics);
    h->metrics = NULL;
    free_pipeline(h);
    of_config_free(h->config);
    h->config = NULL;
    h->started = 0;
}

int of_harness_start(of_harness *h)
{
    if (!h)
        return -1;
    if (h->started)
        return harness_fail(h, "the stage is already started");
    char why[1024] = "";
    h->config =
        of_config_from_pairs(h->desc->options, (const char *const *)h->opt_keys,
                             (const char *const *)h->opt_values, h->n_opts, why, sizeof(why));
    if (!h->config)
        return harness_fail(h, "stage '%s' config: %s", h->desc->name, why[0] ? why : "invalid");
    if (build_pipeline(h) != 0) {
        stop_and_free(h);
        return harness_fail(h, "out of memory");
    }
    h->bus = of_membus_new();
    h->metrics = of_metrics_new();
    h->runner = h->bus && h->metrics ? of_runner_new(h->bus, h->metrics) : NULL;
    h->hub = of_ws_hub_new(NULL, NULL, 1, harness_ws_write, harness_ws_close);
    if (!h->runner || !h->hub || of_ws_hub_start(h->hub, why, sizeof(why)) != 0) {
        stop_and_free(h);
        return harness_fail(h, "out of memory");
    }
    of_ws_hub_set_tap(h->hub, ws_tap, h);
    of_runner_set_ws_hub(h->runner, h->hub);
    if (of_runner_add_pipeline(h->runner, &h->pipe, why, sizeof(why)) != 0 ||
        of_runner_start(h->runner, why, sizeof(why)) != 0) {
        stop_and_free(h);
        return harness_fail(h, "%s", why);
    }
    h->started = 1;
    return 0;
}

int of_harness_feed(of_harness *h, const void *key, size_t key_len, const void *payload,
                    size_t payload_len, const of_header *headers, size_t header_count)
{
    if (!h)
        return -1;
    if (!h->started)
        return harness_fail(h, "feed: the stage is not started (call of_harness_start first)");
    of_event *ev = of_event_new(key, key_len, payload, payload_len);
    if (!ev)
        return harness_fail(h, "out of memory");
    for (size_t i = 0; headers && i < header_count; i++) {
        if (!headers[i].name) {
            of_event_free(ev);
            return harness_fail(h, "feed: header %zu has no name", i);
        }
        if (of_event_add_header(ev, headers[i].name, headers[i].value,
                                headers[i].value ? headers[i].value_len : 0) != 0) {
            of_event_free(ev);
            return harness_fail(h, "out of memory");
        }
    }
    char why[256] = "";
    int rc = h->bus->ops->produce(h->bus, HARNESS_INPUT, ev, NULL, NULL, why, sizeof(why));
    of_event_free(ev);
    if (rc != 0)
        return harness_fail(h, "feed: %s", why);
    return 0;
}

int of_harness_feed_str(of_harness *h, const char *key, const char *payload)
{
    return of_harness_feed(h, key, key ? strlen(key) : 0, payload ? payload : "",
                           payload ? strlen(payload) : 0, NULL, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Collection
 * ------------------------------------------------------------------------------------------- */

typedef struct collect_ctx {
    collected *out;
    size_t seen;
    int failed;
} collect_ctx;

static int collect_one(const of_event *ev, void *opaque)
{
    collect_ctx *c = opaque;
    if (c->seen++ < c->out->n)
        return 0; /* already collected: the topics have one partition and only grow */
    if (c->out->n == c->out->cap) {
        size_t ncap = c->out->cap ? c->out->cap * 2 : 16;
        of_event **n = realloc(c->out->events, ncap * sizeof(*n));
        if (!n) {
            c->failed = 1;
            return 1;
        }
        c->out->events = n;
        c->out->cap = ncap;
    }
    of_event *copy = of_event_clone(ev);
    if (!copy) {
        c->failed = 1;
        return 1;
    }
    c->out->events[c->out->n++] = copy;
    return 0;
}

static collected *find_output(const of_harness *h, const char *output)
{
    if (!h || !output || !h->bus)
        return NULL;
    for (size_t i = 0; i < h->n_outs; i++) {
        if (strcmp(h->outs[i].output, output) == 0) {
            collect_ctx c = {&h->outs[i], 0, 0};
            of_membus_read_topic(h->bus, h->outs[i].topic, collect_one, &c);
            return &h->outs[i];
        }
    }
    return NULL;
}

int of_harness_drain(of_harness *h, int timeout_ms)
{
    if (!h)
        return -1;
    if (!h->started)
        return harness_fail(h, "drain: the stage is not started");
    if (!of_membus_wait_idle(h->bus, timeout_ms < 0 ? 0 : timeout_ms)) {
        of_stage_stats s;
        memset(&s, 0, sizeof(s));
        of_runner_stage_stats(h->runner, HARNESS_PIPELINE, h->desc->name, &s);
        return harness_fail(
            h,
            "drain: events still unfinished after %d ms (%llu in flight; a stage that "
            "blocks or retries with a long backoff?)",
            timeout_ms, (unsigned long long)s.in_flight);
    }
    for (size_t i = 0; i < h->n_outs; i++)
        find_output(h, h->outs[i].output);
    return 0;
}

size_t of_harness_count(const of_harness *h, const char *output)
{
    collected *c = find_output(h, output);
    return c ? c->n : 0;
}

static const of_event *collected_at(const of_harness *h, const char *output, size_t index)
{
    collected *c = find_output(h, output);
    return c && index < c->n ? c->events[index] : NULL;
}

const char *of_harness_payload(const of_harness *h, const char *output, size_t index, size_t *len)
{
    const of_event *ev = collected_at(h, output, index);
    if (len)
        *len = ev ? ev->payload_len : 0;
    return ev ? ev->payload : NULL;
}

const char *of_harness_key(const of_harness *h, const char *output, size_t index, size_t *len)
{
    const of_event *ev = collected_at(h, output, index);
    if (len)
        *len = ev && ev->key ? ev->key_len : 0;
    return ev ? ev->key : NULL;
}

const char *of_harness_header(const of_harness *h, const char *output, size_t index,
                              const char *name, size_t *len)
{
    const of_event *ev = collected_at(h, output, index);
    const of_event_header *hd = ev && name ? of_event_header_get(ev, name) : NULL;
    if (len)
        *len = hd ? hd->value_len : 0;
    return hd ? hd->value : NULL;
}

double of_harness_counter(const of_harness *h, const char *name)
{
    if (!h || !h->metrics || !name)
        return 0;
    char full[OF_METRIC_NAME_MAX + 1];
    if ((size_t)snprintf(full, sizeof(full), "%s%s", OF_METRIC_PLUGIN_PREFIX, name) >= sizeof(full))
        return 0;
    return of_counter_value(
        of_metrics_find_counter(h->metrics, full, HARNESS_PIPELINE, h->desc->name));
}

void of_harness_free(of_harness *h)
{
    if (!h)
        return;
    stop_and_free(h);
    for (size_t i = 0; i < h->n_opts; i++) {
        free(h->opt_keys[i]);
        free(h->opt_values[i]);
    }
    free(h->opt_keys);
    free(h->opt_values);
    free(h->linked.name);
    of_plugin_unload(h->loaded);
    for (size_t i = 0; i < h->n_ws; i++) {
        free(h->ws[i].channel);
        free(h->ws[i].msg);
    }
    free(h->ws);
    pthread_mutex_destroy(&h->ws_mu);
    free(h);
}
