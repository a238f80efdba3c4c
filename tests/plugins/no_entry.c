/* Test plugin "no_entry": a valid descriptor, but the exported function has another name. */
#include <orderflow/stage.h>

static of_status pass(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "no-entry",
    .version = "1.0.0",
    .process = pass,
};

OF_EXPORT const of_stage_descriptor *orderflow_stage_entry_v0(void);
OF_EXPORT const of_stage_descriptor *orderflow_stage_entry_v0(void)
{
    return &descriptor;
}
