/* The plugin loader and registry: finds stage plugins in the configured directories, refuses
 * unsafe or incompatible files with a message naming the file, what was found and what was
 * expected, and keeps the loaded ones by name. */
#ifndef OF_PLUGIN_H
#define OF_PLUGIN_H

#include <orderflow/stage.h>

#include "diag.h"

#include <stddef.h>

typedef struct of_plugin {
    char *name;   /* descriptor name (copied) */
    char *path;   /* the file it was loaded from */
    void *handle; /* dlopen handle; NULL for a plugin registered from a linked descriptor */
    const of_stage_descriptor *desc;
} of_plugin;

/* The smallest descriptor the loader accepts: ABI 1.0's fields up to and including `shutdown`
 * (the spare `reserved` slots may be cut off). */
#define OF_DESCRIPTOR_MIN_SIZE (offsetof(of_stage_descriptor, shutdown) + sizeof(of_shutdown_fn))
/* Longest plugin name: [a-z0-9][a-z0-9_-]{0,62}. */
#define OF_PLUGIN_NAME_MAX 63

typedef struct of_plugin_registry {
    of_plugin **plugins;
    size_t count, cap;
} of_plugin_registry;

/* Loads one file: refuses a file or directory writable by group or others, a file that is not
 * an ELF shared object, one that dlopen (RTLD_NOW|RTLD_LOCAL) refuses, one without the entry
 * symbol, another ABI major, a descriptor smaller than ABI 1.0's, a build signature unlike the
 * host's, a bad name, a missing process callback, a broken option table. Returns NULL and
 * writes "PATH: reason (found X, expected Y)" to errstr. */
of_plugin *of_plugin_load(const char *path, char *errstr, size_t errstr_size);
/* Checks a descriptor the same way (no file); used for linked descriptors (the SDK harness). */
int of_plugin_check_descriptor(const of_stage_descriptor *desc, const char *origin, char *errstr,
                               size_t errstr_size);
void of_plugin_unload(of_plugin *p);

/* The descriptor's `accepts` list (ABI 1.3), or NULL when the plugin's descriptor predates it or
 * sets none (every type). */
const char *const *of_descriptor_accepts(const of_stage_descriptor *desc);
/* 1 when the stage acts on an event whose ce_type header is type[0..len-1] (type NULL: the event
 * has none, and process() gets it), 0 when the host acknowledges it without process(). */
int of_descriptor_accepts_type(const of_stage_descriptor *desc, const void *type, size_t len);

/* 1 when the descriptor has the flags slot (ABI 1.1) and OF_STAGE_DATABASE in it. */
int of_descriptor_uses_db(const of_stage_descriptor *desc);
/* The descriptor's `process_batch` (ABI 1.5), or NULL when the plugin's descriptor predates it or
 * sets none (its events go one by one through process()). */
of_process_batch_fn of_descriptor_process_batch(const of_stage_descriptor *desc);

void of_registry_init(of_plugin_registry *reg);
/* Scans directories in order for *.so files and loads each. Every refusal is reported to diag
 * as an error against the file (line 0); two plugins with the same name are both named in an
 * error and the second is not registered. Returns the number of errors. A missing directory
 * is an error too. */
int of_registry_scan(of_plugin_registry *reg, const char *const *dirs, size_t n_dirs,
                     of_diag *diag);
/* Adds one loaded plugin; -1 (and errstr) when the name is taken. Takes ownership on success. */
int of_registry_add(of_plugin_registry *reg, of_plugin *p, char *errstr, size_t errstr_size);
const of_plugin *of_registry_find(const of_plugin_registry *reg, const char *name);
void of_registry_free(of_plugin_registry *reg); /* unloads all */

/* The host's own build signature, for messages and tests. */
void of_host_signature(of_build_signature *out);

#endif
