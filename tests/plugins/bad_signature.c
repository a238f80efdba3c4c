/* Test plugin "bad_signature": a build signature with the wrong size of time_t and an SDK
 * feature flag no host has. */
#include <orderflow/stage.h>

#define WRONG_TIME_T_SIZE (sizeof(time_t) == 8 ? 4 : 8)
#define UNKNOWN_FEATURE   0x100u

static of_status pass(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const of_stage_descriptor descriptor = {
    .abi_major = OF_ABI_MAJOR,
    .abi_minor = OF_ABI_MINOR,
    .struct_size = (uint32_t)sizeof(of_stage_descriptor),
    .signature = {(uint8_t)sizeof(void *), (uint8_t)WRONG_TIME_T_SIZE, (uint8_t)sizeof(size_t),
                  OF_BIG_ENDIAN_, OF_SDK_FEATURES | UNKNOWN_FEATURE},
    .name = "bad-signature",
    .version = "1.0.0",
    .process = pass,
};

OF_STAGE_DEFINE(descriptor)
