#include "plugin_path.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef OF_DEFAULT_PLUGIN_DIR
#define OF_DEFAULT_PLUGIN_DIR "/usr/lib/orderflow/plugins"
#endif

int of_running_in_build_tree(void)
{
#if defined(OF_BUILD_DIR)
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        size_t blen = strlen(OF_BUILD_DIR);
        return (size_t)n > blen && strncmp(exe, OF_BUILD_DIR, blen) == 0 && exe[blen] == '/';
    }
#endif
    return 0;
}

const char *of_default_plugin_dir(void)
{
#if defined(OF_BUILD_PLUGIN_DIR)
    if (of_running_in_build_tree())
        return OF_BUILD_PLUGIN_DIR;
#endif
    return OF_DEFAULT_PLUGIN_DIR;
}

size_t of_env_plugin_dirs(const char **out, size_t max)
{
    static char copy[4096];
    const char *env = getenv("ORDERFLOW_PLUGIN_PATH");
    if (!env || !*env || strlen(env) >= sizeof(copy))
        return 0;
    strcpy(copy, env);
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ":", &save); tok && n < max; tok = strtok_r(NULL, ":", &save))
        if (*tok)
            out[n++] = tok;
    return n;
}
