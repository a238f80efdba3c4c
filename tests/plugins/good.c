/* Test plugin "good": a valid stage with an option table and one output, "out". process copies
 * the payload to "out" through the host table. The loader tests only load it. */
#include <orderflow/stage.h>

#include <stdio.h>

typedef struct good {
    const of_host_api *api;
} good;

static const char *const modes[] = {"copy", "drop", NULL};

static const of_option options[] = {
    {.name = "prefix", .type = OF_OPT_STRING, .default_value = "", .description = "unused"},
    {.name = "timeout",
     .type = OF_OPT_DURATION,
     .default_value = "250ms",
     .description = "unused",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 1,
     .max = 60000},
    {.name = "mode",
     .type = OF_OPT_ENUM,
     .default_value = "copy",
     .description = "unused",
     .enum_values = modes},
    {.name = NULL},
};

static const char *const outputs[] = {"out", NULL};

static int good_init(of_stage *stage, const of_host_api *api, const of_config *config,
                     void **instance, char *errstr, size_t errstr_size)
{
    (void)stage;
    (void)config;
    good *g = api->calloc(1, sizeof(*g));
    if (!g) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    g->api = api;
    *instance = g;
    return 0;
}

static of_status good_process(void *instance, of_call *call)
{
    const good *g = instance;
    size_t len;
    const void *payload = g->api->event_payload(call, &len);
    if (g->api->emit(call, "out", NULL, 0, payload, len, NULL, 0) != 0)
        return OF_RETRY;
    return OF_OK;
}

static void good_shutdown(void *instance)
{
    good *g = instance;
    g->api->free(g);
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,      .name = "good",
    .version = "1.2.3",        .description = "copies each payload to 'out'",
    .options = options,        .outputs = outputs,
    .init = good_init,         .process = good_process,
    .shutdown = good_shutdown,
};

OF_STAGE_DEFINE(descriptor)
