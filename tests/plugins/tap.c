/*
 * tap: a test stage for integration tests. It forwards each event on "out", appends a line per
 * finished event to a record file (so a test can prove what was processed, also across a
 * SIGKILL), rejects payloads containing a poison marker, fails transiently on a flaky marker,
 * and can slow down to keep events in flight.
 */
#include <orderflow/stage.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct tap {
    const of_host_api *api;
    int fd; /* record file, -1 for none */
    char tag[64];
    char poison[128];
    char flaky[128];
    int64_t flaky_failures;
    int64_t delay_ms;
    int forward;
} tap;

static const of_option options[] = {
    {.name = "record", .type = OF_OPT_STRING, .description = "file to append 'tag key payload'"},
    {.name = "tag", .type = OF_OPT_STRING, .default_value = "tap", .description = "record prefix"},
    {.name = "poison", .type = OF_OPT_STRING, .description = "payloads containing it are rejected"},
    {.name = "flaky", .type = OF_OPT_STRING, .description = "payloads containing it fail first"},
    {.name = "flaky_failures",
     .type = OF_OPT_INT,
     .default_value = "2",
     .flags = OF_OPT_HAS_MIN,
     .min = 0,
     .description = "tries that fail for a flaky payload"},
    {.name = "delay", .type = OF_OPT_DURATION, .default_value = "0ms", .description = "per event"},
    {.name = "forward", .type = OF_OPT_BOOL, .default_value = "true", .description = "emit on out"},
    {.name = NULL},
};

static const char *const outputs[] = {"out", NULL};

static void copy_opt(const of_host_api *api, const of_config *cfg, const char *name, char *dst,
                     size_t size)
{
    const char *v = api->config_string(cfg, name);
    snprintf(dst, size, "%s", v ? v : "");
}

static int tap_init(of_stage *stage, const of_host_api *api, const of_config *cfg, void **inst,
                    char *errstr, size_t errstr_size)
{
    (void)stage;
    tap *t = api->calloc(1, sizeof(*t));
    if (!t) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    t->api = api;
    t->fd = -1;
    const char *record = api->config_string(cfg, "record");
    if (record && *record) {
        t->fd = open(record, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (t->fd < 0) {
            snprintf(errstr, errstr_size, "cannot open %s: %s", record, strerror(errno));
            api->free(t);
            return -1;
        }
    }
    copy_opt(api, cfg, "tag", t->tag, sizeof(t->tag));
    copy_opt(api, cfg, "poison", t->poison, sizeof(t->poison));
    copy_opt(api, cfg, "flaky", t->flaky, sizeof(t->flaky));
    t->flaky_failures = api->config_int(cfg, "flaky_failures");
    t->delay_ms = api->config_duration_ms(cfg, "delay");
    t->forward = api->config_bool(cfg, "forward");
    *inst = t;
    return 0;
}

static int has(const char *payload, size_t len, const char *marker)
{
    return *marker && memmem(payload, len, marker, strlen(marker)) != NULL;
}

static of_status tap_process(void *inst, of_call *call)
{
    tap *t = inst;
    const of_host_api *api = t->api;
    size_t len, klen;
    const char *payload = api->event_payload(call, &len);
    const char *key = api->event_key(call, &klen);
    if (t->delay_ms > 0) {
        struct timespec ts = {t->delay_ms / 1000, (t->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (has(payload, len, t->poison)) {
        api->set_reason(call, "poison marker '%s' in payload", t->poison);
        return OF_REJECT;
    }
    if (has(payload, len, t->flaky) && api->event_attempt(call) <= t->flaky_failures) {
        api->set_reason(call, "flaky failure on attempt %d", api->event_attempt(call));
        return OF_RETRY;
    }
    if (t->forward && api->emit(call, "out", NULL, 0, payload, len, NULL, 0) != 0)
        return OF_RETRY;
    if (t->fd >= 0) {
        char line[4096];
        int n = snprintf(line, sizeof(line), "%s %.*s %.*s\n", t->tag, (int)(key ? klen : 1),
                         key ? key : "-", (int)(len > 3000 ? 3000 : len), payload);
        if (n > 0 && write(t->fd, line, (size_t)n) != n)
            return OF_RETRY;
    }
    return OF_OK;
}

static void tap_shutdown(void *inst)
{
    tap *t = inst;
    if (t->fd >= 0)
        close(t->fd);
    t->api->free(t);
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "tap",
    .version = "1.0.0",
    .description = "test stage: forwards, records, rejects poison, fails on flaky markers",
    .options = options,
    .outputs = outputs,
    .init = tap_init,
    .process = tap_process,
    .shutdown = tap_shutdown,
};

OF_STAGE_DEFINE(descriptor)
