/* Where the CLI and the daemon look for plugins when no configuration says. */
#ifndef OF_PLUGIN_PATH_H
#define OF_PLUGIN_PATH_H

#include <stddef.h>

/* The default plugin directory: the build tree's plugin folder when the running program lives in
 * the build tree (so a developer's build finds its own plugins, never the installed ones),
 * otherwise the installed one. Returns a static string. */
const char *of_default_plugin_dir(void);

/* 1 when the running program is one of the build tree's (it then uses the build tree's plugins
 * and helper libraries, never the installed ones). */
int of_running_in_build_tree(void);

/* Splits ORDERFLOW_PLUGIN_PATH (colon-separated) into at most max entries of out, which point
 * into a static copy. Returns the count (0 when unset or empty). */
size_t of_env_plugin_dirs(const char **out, size_t max);

#endif
