/* Test plugin "small_struct": struct_size says the descriptor ends before `name`. */
#include <orderflow/stage.h>

static of_status pass(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const of_stage_descriptor descriptor = {
    .abi_major = OF_ABI_MAJOR,
    .abi_minor = OF_ABI_MINOR,
    .struct_size = (uint32_t)offsetof(of_stage_descriptor, name),
    .signature = OF_BUILD_SIGNATURE_INIT,
    .name = "small-struct",
    .version = "1.0.0",
    .process = pass,
};

OF_STAGE_DEFINE(descriptor)
