/* Test plugin "bad_abi": claims ABI 2.0. */
#include <orderflow/stage.h>

static of_status pass(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const of_stage_descriptor descriptor = {
    .abi_major = 2,
    .abi_minor = 0,
    .struct_size = (uint32_t)sizeof(of_stage_descriptor),
    .signature = OF_BUILD_SIGNATURE_INIT,
    .name = "bad-abi",
    .version = "1.0.0",
    .process = pass,
};

OF_STAGE_DEFINE(descriptor)
