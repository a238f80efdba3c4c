/* Test plugin "undefined_symbol": calls the host's internal of_log directly instead of going
 * through the host table. The host exports nothing, so dlopen(RTLD_NOW) must refuse it. Built
 * without --no-undefined. */
#include <orderflow/stage.h>

/* The host-internal function, as a careless plugin would declare it. */
void of_log(int level, const char *pipeline, const char *stage, const char *fmt, ...);

static of_status call_host(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    of_log(2, NULL, NULL, "hello from a plugin that links against the host");
    return OF_OK;
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "undefined-symbol",
    .version = "1.0.0",
    .process = call_host,
};

OF_STAGE_DEFINE(descriptor)
