/*
 * keyword-router: the SDK's example stage. It routes each event to the output "matched" when its
 * payload contains a configured keyword and to "unmatched" otherwise, refuses payloads larger
 * than a configured size, and counts what it routed. Small as it is, it shows every part of the
 * ABI: the option table, outputs, init with an error string, process with OK/REJECT, the host
 * table for emitting, logging and metrics, and shutdown.
 */
#include <orderflow/stage.h>

#include <stdio.h>
#include <string.h>

typedef struct router {
    const of_host_api *api;
    of_stage *stage;
    char *keyword;
    size_t keyword_len;
    int case_sensitive;
    uint64_t max_payload;
    of_counter *matched;
} router;

static const char *const case_modes[] = {"sensitive", "insensitive", NULL};

static const of_option options[] = {
    {.name = "keyword",
     .type = OF_OPT_STRING,
     .description = "text whose presence in the payload routes an event to 'matched'",
     .flags = OF_OPT_REQUIRED},
    {.name = "case",
     .type = OF_OPT_ENUM,
     .default_value = "sensitive",
     .description = "how the keyword is compared",
     .enum_values = case_modes},
    {.name = "max_payload",
     .type = OF_OPT_SIZE,
     .default_value = "64KiB",
     .description = "larger payloads are rejected to the dead-letter topic",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 1,
     .max = 16 * 1024 * 1024},
    {.name = NULL},
};

static const char *const outputs[] = {"matched", "unmatched", NULL};

static int router_init(of_stage *stage, const of_host_api *api, const of_config *config,
                       void **instance, char *errstr, size_t errstr_size)
{
    router *r = api->calloc(1, sizeof(*r));
    if (!r) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    r->api = api;
    r->stage = stage;
    /* The config is only valid during init, so the keyword is copied. */
    r->keyword = api->strdup(api->config_string(config, "keyword"));
    if (!r->keyword || r->keyword[0] == '\0') {
        snprintf(errstr, errstr_size, "keyword must not be empty");
        api->free(r->keyword);
        api->free(r);
        return -1;
    }
    r->keyword_len = strlen(r->keyword);
    r->case_sensitive = api->config_enum(config, "case") == 0;
    r->max_payload = api->config_size(config, "max_payload");
    r->matched = api->counter_register(stage, "keyword_matched", "events that had the keyword");
    *instance = r;
    return 0;
}

static int contains(const router *r, const char *hay, size_t len)
{
    if (r->keyword_len > len)
        return 0;
    for (size_t i = 0; i + r->keyword_len <= len; i++) {
        size_t j = 0;
        for (; j < r->keyword_len; j++) {
            char a = hay[i + j], b = r->keyword[j];
            if (!r->case_sensitive) {
                a = (char)(a >= 'A' && a <= 'Z' ? a + 32 : a);
                b = (char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
            }
            if (a != b)
                break;
        }
        if (j == r->keyword_len)
            return 1;
    }
    return 0;
}

static of_status router_process(void *instance, of_call *call)
{
    router *r = instance;
    const of_host_api *api = r->api;
    size_t len;
    const char *payload = api->event_payload(call, &len);
    if (len > r->max_payload) {
        api->set_reason(call, "payload of %zu bytes exceeds max_payload %llu", len,
                        (unsigned long long)r->max_payload);
        return OF_REJECT;
    }
    int hit = contains(r, payload, len);
    if (api->emit(call, hit ? "matched" : "unmatched", NULL, 0, payload, len, NULL, 0) != 0)
        return OF_RETRY;
    if (hit)
        api->counter_add(r->matched, 1);
    return OF_OK;
}

static void router_shutdown(void *instance)
{
    router *r = instance;
    r->api->free(r->keyword);
    r->api->free(r);
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "keyword-router",
    .version = "1.0.0",
    .description = "routes events to 'matched' or 'unmatched' by a keyword in the payload",
    .options = options,
    .outputs = outputs,
    .init = router_init,
    .process = router_process,
    .shutdown = router_shutdown,
};

OF_STAGE_DEFINE(descriptor)
