/* Test plugin "twin": built twice, as dup/twin_a.so and dup/twin_b.so, both named "twin". */
#include <orderflow/stage.h>

static of_status pass(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "twin",
    .version = "1.0.0",
    .process = pass,
};

OF_STAGE_DEFINE(descriptor)
