/* The host function table handed to every plugin's init(), and the of_stage / of_call helpers
 * behind it. Every function tolerates bad input from a plugin (NULL pointers, names that are not
 * in its option table, unknown outputs): it logs and returns a neutral value instead of
 * crashing the host. */
#include "stage_runtime.h"

#include "cache.h"
#include "db.h"
#include "stage_tx.h"
#include "gateway.h"

#include "log.h"
#include "plugin.h"
#include "options.h"
#include "runner.h"
#include "uuid.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------------
 * Stage identity
 * ------------------------------------------------------------------------------------------- */

static const char *stage_name_of(const of_stage *st)
{
    return st && st->def ? st->def->name : NULL;
}

static const char *pipeline_name_of(const of_stage *st)
{
    return st ? st->pipeline_name : NULL;
}

static const char *plugin_name_of(const of_stage *st)
{
    return st && st->desc && st->desc->name ? st->desc->name : "";
}

const char *const of_round_phase_names[5] = {"record", "process", "outbox", "commit", "publish"};

const double of_stage_latency_bounds[OF_STAGE_LATENCY_N_BOUNDS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

int of_stage_setup(of_stage *st, const char *pipeline_name, const of_stage_def *def,
                   const of_stage_descriptor *desc, of_metrics *metrics)
{
    st->pipeline_name = pipeline_name;
    st->def = def;
    st->desc = desc;
    st->metrics = metrics;
    const char *pname = pipeline_name ? pipeline_name : "";
    const char *sname = def && def->name ? def->name : "";
    if (asprintf(&st->ce_source, "orderflow/%s/%s", pname, sname) < 0) {
        st->ce_source = NULL;
        return -1;
    }
    if (def && def->dead_letter)
        st->dead_letter = strdup(def->dead_letter);
    else if (def && def->n_inputs > 0 && asprintf(&st->dead_letter, "%s.dlq", def->inputs[0]) < 0)
        st->dead_letter = NULL;
    if (def && (def->dead_letter || def->n_inputs > 0) && !st->dead_letter) {
        of_stage_cleanup(st);
        return -1;
    }
    if (metrics) {
        const char *plugin = desc && desc->name ? desc->name : "";
        const char *const lbl[] = {"plugin", plugin, NULL};
        st->m_received = of_metrics_counter_l(metrics, "stage_events_received",
                                              "Events handed to the stage", pname, sname, lbl);
        st->m_processed_ok = of_metrics_counter_l(
            metrics, "stage_events_processed",
            "Events the stage processed successfully (outputs delivered)", pname, sname, lbl);
        st->m_emitted =
            of_metrics_counter_l(metrics, "stage_events_emitted",
                                 "Events published on the stage's outputs", pname, sname, lbl);
        st->m_retried =
            of_metrics_counter_l(metrics, "stage_events_retried",
                                 "Retries of events (tries after the first)", pname, sname, lbl);
        st->m_rejected = of_metrics_counter_l(metrics, "stage_events_rejected",
                                              "Events the stage rejected", pname, sname, lbl);
        st->m_dead_lettered =
            of_metrics_counter_l(metrics, "stage_events_dead_lettered",
                                 "Events sent to the dead-letter topic", pname, sname, lbl);
        st->m_abandoned = of_metrics_counter_l(metrics, "stage_events_abandoned",
                                               "Events left uncommitted when a drain timed out",
                                               pname, sname, lbl);
        st->m_skipped = of_metrics_counter_l(
            metrics, "stage_events_skipped",
            "Events acknowledged without process(): a type the stage does not accept", pname, sname,
            lbl);
        st->m_latency =
            of_metrics_histogram_l(metrics, "stage_processing_seconds",
                                   "Time one process() call took (every try), in seconds", pname,
                                   sname, lbl, of_stage_latency_bounds, OF_STAGE_LATENCY_N_BOUNDS);
        static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000};
        if (of_descriptor_uses_db(desc)) {
            st->m_tx_events = of_metrics_histogram_l(
                metrics, "stage_transaction_events",
                "Events committed per database transaction (a stage's batch: setting)", pname,
                sname, lbl, batch_bounds, sizeof(batch_bounds) / sizeof(batch_bounds[0]));
            for (int i = 0; i < 5; i++) {
                const char *const pl[] = {"plugin", plugin, "phase", of_round_phase_names[i], NULL};
                st->m_round[i] = of_metrics_histogram_l(
                    metrics, "stage_round_seconds",
                    "Time of one phase of a database stage's committed round of two or more "
                    "events, in seconds",
                    pname, sname, pl, of_stage_latency_bounds, OF_STAGE_LATENCY_N_BOUNDS);
            }
        }
    }
    return 0;
}

void of_stage_cleanup(of_stage *st)
{
    if (!st)
        return;
    of_stage_http_free(st);
    free(st->ce_source);
    st->ce_source = NULL;
    free(st->dead_letter);
    st->dead_letter = NULL;
}

const char *of_stage_output_topic(const of_stage *st, const char *output)
{
    if (!st || !st->def || !output)
        return NULL;
    for (size_t i = 0; i < st->def->n_outputs; i++)
        if (st->def->outputs[i].output && strcmp(st->def->outputs[i].output, output) == 0)
            return st->def->outputs[i].topic;
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Calls
 * ------------------------------------------------------------------------------------------- */

void of_call_init(of_call *call, of_stage *st, const of_event *input, int attempt)
{
    memset(call, 0, sizeof(*call));
    call->stage = st;
    call->input = input;
    call->attempt = attempt;
}

void of_call_reset(of_call *call)
{
    if (!call)
        return;
    for (size_t i = 0; i < call->n_emitted; i++)
        of_event_free(call->emitted[i].event);
    free(call->emitted);
    call->emitted = NULL;
    call->n_emitted = call->cap_emitted = 0;
    of_call_cache_drop(call);
    call->has_reason = 0;
    call->reason[0] = '\0';
}

const char *of_call_reason(const of_call *call)
{
    return call && call->has_reason ? call->reason : NULL;
}

void of_rfc3339_now(char *buf, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    /* Milliseconds as an int in 0..999: the compiler then knows the field's width. */
    snprintf(buf, size, "%s.%03dZ", base, (int)(ts.tv_nsec / 1000000) % 1000);
}

static int has_header(const of_event *ev, const char *name)
{
    return of_event_header_get(ev, name) != NULL;
}

static int add_if_missing(of_event *ev, const char *name, const char *value)
{
    if (has_header(ev, name))
        return 0;
    return of_event_add_header(ev, name, value, strlen(value));
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void random_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i += 16) {
        uint64_t r = of_rand_u64();
        for (size_t j = i; j < n && j < i + 16; j++, r >>= 4)
            out[j] = hex[r & 0xf];
    }
}

/* A W3C traceparent for an event a stage emits: the input's trace with a new span (this stage's
 * hop), or a new trace when the input has none or a malformed one, so that every event can be
 * followed by its trace id. */
static void child_traceparent(const of_event *input, const char *trace_id, char out[56])
{
    const of_event_header *h = input ? of_event_header_get(input, "traceparent") : NULL;
    const char *v = h ? h->value : NULL;
    /* 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags> */
    int valid = v && h->value_len == 55 && memcmp(v, "00-", 3) == 0 && v[35] == '-' &&
                v[52] == '-' && is_hex(v + 3, 32) && is_hex(v + 36, 16) && is_hex(v + 53, 2) &&
                memcmp(v + 3, "00000000000000000000000000000000", 32) != 0;
    /* Without an input (an HTTP handler's emit), the request's trace goes on: the call's, else
     * the one the gateway set in the log context. */
    const char *ctx_trace = input ? NULL : trace_id ? trace_id : of_log_context_trace_id();
    memcpy(out, "00-", 3);
    if (valid)
        memcpy(out + 3, v + 3, 32);
    else if (ctx_trace)
        memcpy(out + 3, ctx_trace, 32);
    else
        random_hex(out + 3, 32);
    out[35] = '-';
    random_hex(out + 36, 16);
    out[52] = '-';
    if (valid)
        memcpy(out + 53, v + 53, 2);
    else
        memcpy(out + 53, "01", 2);
    out[55] = '\0';
}

/* The id of the index-th event a stage emits for an input: derived from the input's own id, so
 * a redelivered or retried input yields the same ids and the next stage's inbox recognises the
 * repeat (a name-based UUID, version 8, from SHA-256, whose first 48 bits are the input's). */
static void derived_id(const of_event *input, const of_stage *st, const char *output, size_t index,
                       char out[OF_UUID_LEN + 1])
{
    char in_id[256], seed[1024];
    of_stage_tx_event_id(input, in_id, sizeof(in_id));
    int n = snprintf(seed, sizeof(seed), "%s|%s|%s|%zu", in_id,
                     st && st->ce_source ? st->ce_source : "", output ? output : "", index);
    uint8_t h[32];
    of_sha256(seed, n > 0 ? (size_t)n : 0, h);
    /* The input's time prefix, when it has one, keeps a flow's ids ordered by when it began. */
    of_uuid_prefix(in_id, strlen(in_id), h);
    h[6] = (uint8_t)((h[6] & 0x0f) | 0x80); /* version 8: custom */
    h[8] = (uint8_t)((h[8] & 0x3f) | 0x80); /* RFC 9562 variant */
    of_uuid_format(h, out);
}

int of_add_inherited_headers(of_event *ev, const of_event *input, const char *trace_id,
                             const of_stage *st, const char *output, size_t index)
{
    /* Decided before anything is inherited: which of the generated ones the stage set. */
    int own_id = has_header(ev, "ce_id"), own_source = has_header(ev, "ce_source"),
        own_time = has_header(ev, "ce_time"), own_type = has_header(ev, "ce_type"),
        own_trace = has_header(ev, "traceparent");
    if (input) {
        for (size_t i = 0; i < input->n_headers; i++) {
            const of_event_header *h = &input->headers[i];
            /* ce_type describes the event, not its cause: an output is a new kind of event. */
            int inherit = strcmp(h->name, "tracestate") == 0 || strncmp(h->name, "ce_", 3) == 0;
            if (!inherit || strcmp(h->name, "ce_id") == 0 || strcmp(h->name, "ce_source") == 0 ||
                strcmp(h->name, "ce_time") == 0 || strcmp(h->name, "ce_type") == 0)
                continue;
            /* Not when the stage set it, nor twice when the input repeats a header. */
            int seen = 0;
            for (size_t j = 0; j < ev->n_headers && !seen; j++)
                seen = strcmp(ev->headers[j].name, h->name) == 0;
            if (!seen && of_event_add_header(ev, h->name, h->value, h->value_len) != 0)
                return -1;
        }
    }
    if (!own_trace) {
        char tp[56];
        child_traceparent(input, trace_id, tp);
        if (of_event_add_header(ev, "traceparent", tp, 55) != 0)
            return -1;
    }
    if (!own_type && st && st->def && output) {
        char type[512];
        snprintf(type, sizeof(type), "%s.%s.%s", st->pipeline_name ? st->pipeline_name : "",
                 st->def->name, output);
        if (of_event_add_header(ev, "ce_type", type, strlen(type)) != 0)
            return -1;
    }
    if (!own_id) {
        char id[OF_UUID_LEN + 1];
        if (input)
            derived_id(input, st, output, index, id);
        else
            of_uuid7(id); /* an HTTP request is not redelivered: a new id is right */
        if (of_event_add_header(ev, "ce_id", id, strlen(id)) != 0)
            return -1;
    }
    if (!own_source && st && st->ce_source &&
        of_event_add_header(ev, "ce_source", st->ce_source, strlen(st->ce_source)) != 0)
        return -1;
    if (!own_time) {
        char when[40];
        of_rfc3339_now(when, sizeof(when));
        if (of_event_add_header(ev, "ce_time", when, strlen(when)) != 0)
            return -1;
    }
    if (add_if_missing(ev, "ce_specversion", "1.0") != 0 ||
        add_if_missing(ev, "content-type", "application/json") != 0)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------------------------- */

static void *api_alloc(size_t size)
{
    return malloc(size ? size : 1);
}

static void *api_calloc(size_t n, size_t size)
{
    return calloc(n ? n : 1, size ? size : 1);
}

static void *api_realloc(void *ptr, size_t size)
{
    return realloc(ptr, size);
}

static void api_free(void *ptr)
{
    free(ptr);
}

static char *api_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------------------------- */

static of_log_level_t to_host_level(of_log_level level)
{
    int l = (int)level;
    if (l < (int)OF_LVL_ERROR)
        l = OF_LVL_ERROR;
    if (l > (int)OF_LVL_DEBUG)
        l = OF_LVL_DEBUG;
    return (of_log_level_t)l;
}

static void api_log(of_stage *stage, of_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void api_log(of_stage *stage, of_log_level level, const char *fmt, ...)
{
    if (!fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    of_logv(to_host_level(level), pipeline_name_of(stage), stage_name_of(stage), fmt, ap);
    va_end(ap);
}

static int api_log_enabled(of_stage *stage, of_log_level level)
{
    (void)stage;
    return of_log_enabled(to_host_level(level));
}

/* ---------------------------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------------------------- */

/* The value of `name`, or NULL after logging why (unknown name, or `want` says the option's
 * type cannot answer this accessor). */
static const of_config_value *cfg_lookup(const of_config *cfg, const char *name, const char *fn)
{
    if (!name) {
        of_log(OF_LVL_ERROR, NULL, NULL, "%s: called without an option name", fn);
        return NULL;
    }
    if (!cfg) {
        of_log(OF_LVL_ERROR, NULL, NULL,
               "%s('%s'): no configuration (the config is valid only inside init)", fn, name);
        return NULL;
    }
    const of_config_value *v = of_config_find(cfg, name);
    if (!v || !v->option) {
        of_log(OF_LVL_ERROR, NULL, NULL,
               "%s('%s'): no such option in the stage's option table (declare it in the "
               "descriptor's options)",
               fn, name);
        return NULL;
    }
    return v;
}

static void wrong_type(const of_config_value *v, const char *fn)
{
    of_log(OF_LVL_ERROR, NULL, NULL, "%s('%s'): the option is of type %s", fn, v->option->name,
           of_option_type_name(v->option->type));
}

static const char *api_config_string(const of_config *cfg, const char *name)
{
    const of_config_value *v = cfg_lookup(cfg, name, "config_string");
    if (!v || !v->has_value)
        return NULL;
    return v->text;
}

static int64_t api_config_int(const of_config *cfg, const char *name)
{
    const of_config_value *v = cfg_lookup(cfg, name, "config_int");
    if (!v || !v->has_value)
        return 0;
    switch (v->option->type) {
    case OF_OPT_INT:
    case OF_OPT_BOOL:
    case OF_OPT_DURATION:
    case OF_OPT_ENUM:
        return v->i;
    case OF_OPT_SIZE:
        return v->size > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v->size;
    case OF_OPT_DOUBLE:
        return (int64_t)v->d;
    default:
        wrong_type(v, "config_int");
        return 0;
    }
}

static int api_config_bool(const of_config *cfg, const char *name)
{
    const of_config_value *v = cfg_lookup(cfg, name, "config_bool");
    if (!v || !v->has_value)
        return 0;
    if (v->option->type != OF_OPT_BOOL) {
        wrong_type(v, "config_bool");
        return 0;
    }
    return v->i != 0;
}

static double api_config_double(const of_config *cfg, const char *name)
{
    const of_config_value *v = cfg_lookup(cfg, name, "config_double");
    if (!v || !v->has_value)
        return 0;
    switch (v->option->type) {
    case OF_OPT_DOUBLE:
        return v->d;
    case OF_OPT_INT:
    case OF_OPT_DURATION:
        return (double)v->i;
    case OF_OPT_SIZE:
        return (double)v->size;
    default:
        wrong_type(v, "config_double");
        return 0;
    }
}

static int64_t api_config_duration_ms(const of_config *cfg, const char *name)
{
    const of_config_value *v = cfg_lookup(cfg, name, "config_duration_ms");
    if (!v || !v->has_value)
        return 0;
    if (v->option->type != OF_OPT_DURATION) {
        wrong_type(v, "config_duration_ms");
        return 0;
    }
    return v->i;
}

static uint64_t api_config_size(const of_config *cfg, const char *name)
{
    const of_config_value *v = cfg_lookup(cfg, name, "config_size");
    if (!v || !v->has_value)
        return 0;
    if (v->option->type == OF_OPT_SIZE)
        return v->size;
    if (v->option->type == OF_OPT_INT)
        return v->i > 0 ? (uint64_t)v->i : 0;
    wrong_type(v, "config_size");
    return 0;
}

static int api_config_enum(const of_config *cfg, const char *name)
{
    const of_config_value *v = cfg_lookup(cfg, name, "config_enum");
    if (!v)
        return -1;
    if (v->option->type != OF_OPT_ENUM) {
        wrong_type(v, "config_enum");
        return -1;
    }
    return v->has_value ? (int)v->i : -1;
}

static size_t api_config_list_count(const of_config *cfg, const char *name)
{
    const of_config_value *v = cfg_lookup(cfg, name, "config_list_count");
    if (!v || !v->has_value)
        return 0;
    if (v->option->type != OF_OPT_LIST) {
        wrong_type(v, "config_list_count");
        return 0;
    }
    return v->list_count;
}

static const char *api_config_list_item(const of_config *cfg, const char *name, size_t index)
{
    const of_config_value *v = cfg_lookup(cfg, name, "config_list_item");
    if (!v || !v->has_value)
        return NULL;
    if (v->option->type != OF_OPT_LIST) {
        wrong_type(v, "config_list_item");
        return NULL;
    }
    return index < v->list_count ? v->list[index] : NULL;
}

static int api_config_is_set(const of_config *cfg, const char *name)
{
    const of_config_value *v = cfg_lookup(cfg, name, "config_is_set");
    return v ? v->is_set != 0 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * The input event
 * ------------------------------------------------------------------------------------------- */

static const void *api_event_key(const of_call *call, size_t *len)
{
    const of_event *ev = call ? call->input : NULL;
    if (!ev || !ev->key) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = ev->key_len;
    return ev->key;
}

static const void *api_event_payload(const of_call *call, size_t *len)
{
    const of_event *ev = call ? call->input : NULL;
    if (!ev || !ev->payload) {
        if (len)
            *len = 0;
        return "";
    }
    if (len)
        *len = ev->payload_len;
    return ev->payload;
}

static const void *api_event_header(const of_call *call, const char *name, size_t *len)
{
    const of_event *ev = call ? call->input : NULL;
    const of_event_header *h = ev && name ? of_event_header_get(ev, name) : NULL;
    if (len)
        *len = h ? h->value_len : 0;
    return h ? h->value : NULL;
}

static size_t api_event_header_count(const of_call *call)
{
    return call && call->input ? call->input->n_headers : 0;
}

static int api_event_header_at(const of_call *call, size_t index, of_header *out)
{
    if (!call || !call->input || !out || index >= call->input->n_headers)
        return -1;
    const of_event_header *h = &call->input->headers[index];
    out->name = h->name;
    out->value = h->value;
    out->value_len = h->value_len;
    return 0;
}

static const char *api_event_topic(const of_call *call)
{
    return call && call->input ? call->input->topic : NULL;
}

static int32_t api_event_partition(const of_call *call)
{
    return call && call->input ? call->input->partition : -1;
}

static int64_t api_event_offset(const of_call *call)
{
    return call && call->input ? call->input->offset : -1;
}

static int api_event_attempt(const of_call *call)
{
    return call ? call->attempt : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Emitting
 * ------------------------------------------------------------------------------------------- */

static void log_unknown_output(const of_stage *st, const char *output)
{
    char mapped[512];
    size_t pos = 0;
    mapped[0] = '\0';
    for (size_t i = 0; st && st->def && i < st->def->n_outputs && pos < sizeof(mapped); i++) {
        int w = snprintf(mapped + pos, sizeof(mapped) - pos, "%s%s", i ? ", " : "",
                         st->def->outputs[i].output);
        if (w > 0)
            pos += (size_t)w;
    }
    of_log(OF_LVL_ERROR, pipeline_name_of(st), stage_name_of(st),
           "emit: unknown or unmapped output '%s' (mapped outputs: %s)", output ? output : "(null)",
           mapped[0] ? mapped : "none");
}

static int api_emit(of_call *call, const char *output, const void *key, size_t key_len,
                    const void *payload, size_t payload_len, const of_header *headers,
                    size_t header_count)
{
    if (!call || !call->stage)
        return -1;
    of_stage *st = call->stage;
    const char *topic = of_stage_output_topic(st, output);
    if (!topic) {
        log_unknown_output(st, output);
        return -1;
    }
    const char *out_name = NULL;
    for (size_t i = 0; i < st->def->n_outputs; i++)
        if (strcmp(st->def->outputs[i].output, output) == 0)
            out_name = st->def->outputs[i].output;
    if (!key && call->input && call->input->key) {
        key = call->input->key;
        key_len = call->input->key_len;
    }
    if (!payload)
        payload_len = 0;
    of_event *ev = of_event_new(key, key_len, payload ? payload : "", payload_len);
    if (!ev)
        goto nomem;
    for (size_t i = 0; headers && i < header_count; i++) {
        if (!headers[i].name) {
            of_log(OF_LVL_WARN, pipeline_name_of(st), stage_name_of(st),
                   "emit on '%s': header %zu has no name; ignored", output, i);
            continue;
        }
        if (of_event_add_header(ev, headers[i].name, headers[i].value,
                                headers[i].value ? headers[i].value_len : 0) != 0)
            goto nomem;
    }
    if (of_add_inherited_headers(ev, call->input, call->trace_id, st, out_name, call->n_emitted) !=
        0)
        goto nomem;
    if (call->n_emitted == call->cap_emitted) {
        size_t ncap = call->cap_emitted ? call->cap_emitted * 2 : 4;
        of_emitted *n = realloc(call->emitted, ncap * sizeof(*n));
        if (!n)
            goto nomem;
        call->emitted = n;
        call->cap_emitted = ncap;
    }
    call->emitted[call->n_emitted].output = out_name;
    call->emitted[call->n_emitted].topic = topic;
    call->emitted[call->n_emitted].event = ev;
    call->n_emitted++;
    return 0;
nomem:
    of_event_free(ev);
    of_log(OF_LVL_ERROR, pipeline_name_of(st), stage_name_of(st), "emit on '%s': out of memory",
           output);
    return -1;
}

static void api_set_reason(of_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void api_set_reason(of_call *call, const char *fmt, ...)
{
    if (!call || !fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->reason, sizeof(call->reason), fmt, ap);
    va_end(ap);
    call->has_reason = 1;
}

/* ---------------------------------------------------------------------------------------------
 * Custom metrics
 * ------------------------------------------------------------------------------------------- */

static int plugin_metric_name(const of_stage *stage, const char *name, char *full, size_t size,
                              const char *fn)
{
    if (!of_metric_name_valid(name) ||
        (size_t)snprintf(full, size, "%s%s", OF_METRIC_PLUGIN_PREFIX, name) >= size ||
        !of_metric_name_valid(full)) {
        of_log(OF_LVL_ERROR, pipeline_name_of(stage), stage_name_of(stage),
               "%s: bad metric name '%s' (expected [a-z_][a-z0-9_]*)", fn, name ? name : "(null)");
        return -1;
    }
    return 0;
}

static of_counter *api_counter_register(of_stage *stage, const char *name, const char *help)
{
    char full[OF_METRIC_NAME_MAX + 1];
    if (!stage || !stage->metrics ||
        plugin_metric_name(stage, name, full, sizeof(full), "counter_register") != 0)
        return NULL;
    const char *const lbl[] = {"plugin", plugin_name_of(stage), NULL};
    of_counter *c = of_metrics_counter_l(stage->metrics, full, help, pipeline_name_of(stage),
                                         stage_name_of(stage), lbl);
    if (!c)
        of_log(OF_LVL_ERROR, pipeline_name_of(stage), stage_name_of(stage),
               "counter_register('%s'): the name is taken by a histogram, or no memory", name);
    return c;
}

static void api_counter_add(of_counter *counter, double delta)
{
    of_counter_add_(counter, delta);
}

static of_histogram *api_histogram_register(of_stage *stage, const char *name, const char *help,
                                            const double *bounds, size_t count)
{
    char full[OF_METRIC_NAME_MAX + 1];
    if (!stage || !stage->metrics ||
        plugin_metric_name(stage, name, full, sizeof(full), "histogram_register") != 0)
        return NULL;
    const char *const lbl[] = {"plugin", plugin_name_of(stage), NULL};
    of_histogram *h = of_metrics_histogram_l(stage->metrics, full, help, pipeline_name_of(stage),
                                             stage_name_of(stage), lbl, bounds, count);
    if (!h)
        of_log(OF_LVL_ERROR, pipeline_name_of(stage), stage_name_of(stage),
               "histogram_register('%s'): bounds must ascend and be at most %d, and the name "
               "must not be a counter's",
               name, OF_HIST_MAX_BOUNDS);
    return h;
}

static void api_histogram_observe(of_histogram *histogram, double value)
{
    of_histogram_observe_(histogram, value);
}

/* ---------------------------------------------------------------------------------------------
 * Identity and the table
 * ------------------------------------------------------------------------------------------- */

static const char *api_stage_name(const of_stage *stage)
{
    return stage_name_of(stage);
}

static const char *api_pipeline_name(const of_stage *stage)
{
    return pipeline_name_of(stage);
}

static const of_host_api host_api = {
    .abi_major = OF_ABI_MAJOR,
    .abi_minor = OF_ABI_MINOR,
    .size = (uint32_t)sizeof(of_host_api),
    .alloc = api_alloc,
    .calloc = api_calloc,
    .realloc = api_realloc,
    .free = api_free,
    .strdup = api_strdup,
    .log = api_log,
    .log_enabled = api_log_enabled,
    .config_string = api_config_string,
    .config_int = api_config_int,
    .config_bool = api_config_bool,
    .config_double = api_config_double,
    .config_duration_ms = api_config_duration_ms,
    .config_size = api_config_size,
    .config_enum = api_config_enum,
    .config_list_count = api_config_list_count,
    .config_list_item = api_config_list_item,
    .config_is_set = api_config_is_set,
    .event_key = api_event_key,
    .event_payload = api_event_payload,
    .event_header = api_event_header,
    .event_header_count = api_event_header_count,
    .event_header_at = api_event_header_at,
    .event_topic = api_event_topic,
    .event_partition = api_event_partition,
    .event_offset = api_event_offset,
    .event_attempt = api_event_attempt,
    .emit = api_emit,
    .set_reason = api_set_reason,
    .counter_register = api_counter_register,
    .counter_add = api_counter_add,
    .histogram_register = api_histogram_register,
    .histogram_observe = api_histogram_observe,
    .stage_name = api_stage_name,
    .pipeline_name = api_pipeline_name,
    /* ABI 1.1 */
    .db_exec = of_api_db_exec,
    .db_query = of_api_db_query,
    .db_rows_next = of_api_db_rows_next,
    .db_rows_columns = of_api_db_rows_columns,
    .db_rows_get = of_api_db_rows_get,
    .db_rows_free = of_api_db_rows_free,
    .db_last_insert_id = of_api_db_last_insert_id,
    .db_last_error = of_api_db_last_error,
    .cache_get = of_api_cache_get,
    .cache_set = of_api_cache_set,
    .cache_del = of_api_cache_del,
    .cache_incr = of_api_cache_incr,
    .cache_publish = of_api_cache_publish,
    .http_handler = of_api_http_handler,
    .http_authenticator = of_api_http_authenticator,
    .http_method = of_api_http_method,
    .http_path = of_api_http_path,
    .http_param = of_api_http_param,
    .http_query = of_api_http_query,
    .http_header = of_api_http_header,
    .http_body = of_api_http_body,
    .http_principal = of_api_http_principal,
    .http_respond = of_api_http_respond,
    .http_problem = of_api_http_problem,
    .ws_subscribe = of_api_ws_subscribe,
    .ws_send = of_api_ws_send,
    .ws_publish = of_api_ws_publish,
    /* ABI 1.4 */
    .cache_set_after_commit = of_api_cache_set_after_commit,
    /* ABI 1.6 */
    .http_batch_handler = of_api_http_batch_handler,
};

const of_host_api *of_host_api_get(void)
{
    return &host_api;
}
