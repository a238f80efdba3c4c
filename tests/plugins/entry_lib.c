/* A plain shared library (not a plugin) that defines the entry symbol; entry_elsewhere.so links
 * against it, so dlsym on the plugin finds the entry in this library instead of the plugin. */
#include <orderflow/stage.h>

static of_status pass(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "elsewhere",
    .version = "1.0.0",
    .process = pass,
};

OF_STAGE_DEFINE(descriptor)

/* Referenced by entry_elsewhere.so so that the linker keeps the dependency (--as-needed). */
OF_EXPORT int of_tp_entry_lib_marker(void);
OF_EXPORT int of_tp_entry_lib_marker(void)
{
    return 42;
}
