#include "plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void of_registry_init(of_plugin_registry *reg)
{
    memset(reg, 0, sizeof(*reg));
}

const of_plugin *of_registry_find(const of_plugin_registry *reg, const char *name)
{
    for (size_t i = 0; i < reg->count; i++)
        if (strcmp(reg->plugins[i]->name, name) == 0)
            return reg->plugins[i];
    return NULL;
}

int of_registry_add(of_plugin_registry *reg, of_plugin *p, char *errstr, size_t errstr_size)
{
    const of_plugin *other = of_registry_find(reg, p->name);
    if (other) {
        snprintf(errstr, errstr_size,
                 "%s: plugin name '%s' is already taken by %s (two plugins with the same name)",
                 p->path ? p->path : "<linked>", p->name, other->path ? other->path : "<linked>");
        return -1;
    }
    if (reg->count == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 8;
        of_plugin **n = realloc(reg->plugins, cap * sizeof(*n));
        if (!n) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        reg->plugins = n;
        reg->cap = cap;
    }
    reg->plugins[reg->count++] = p;
    return 0;
}

void of_registry_free(of_plugin_registry *reg)
{
    for (size_t i = reg->count; i > 0; i--)
        of_plugin_unload(reg->plugins[i - 1]);
    free(reg->plugins);
    memset(reg, 0, sizeof(*reg));
}
