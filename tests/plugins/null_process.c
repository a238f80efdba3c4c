/* Test plugin "null_process": no process callback. */
#include <orderflow/stage.h>

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "null-process",
    .version = "1.0.0",
    .process = NULL,
};

OF_STAGE_DEFINE(descriptor)
