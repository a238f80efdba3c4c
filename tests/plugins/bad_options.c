/* Test plugin "bad_options": a duration option whose default does not parse. */
#include <orderflow/stage.h>

static of_status pass(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const of_option options[] = {
    {.name = "timeout", .type = OF_OPT_DURATION, .default_value = "abc", .description = "broken"},
    {.name = NULL},
};

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER, .name = "bad-options", .version = "1.0.0",
    .options = options,   .process = pass,
};

OF_STAGE_DEFINE(descriptor)
