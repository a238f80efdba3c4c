/* Test plugin "bad_name": a name with capitals, a space and punctuation. */
#include <orderflow/stage.h>

static of_status pass(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "Bad Name!",
    .version = "1.0.0",
    .process = pass,
};

OF_STAGE_DEFINE(descriptor)
