/* orderflow plugins: every plugin found, with its outputs and its option table. */
#include "cli.h"
#include "options.h"

#include <stdio.h>
#include <string.h>

static void print_option(const of_option *o)
{
    char type[256];
    of_option_describe_type(o, type, sizeof(type));
    printf("    %-20s %s", o->name, type);
    if (o->flags & OF_OPT_REQUIRED)
        printf(", required");
    else if (o->default_value)
        printf(", default %s", (o->flags & OF_OPT_SECRET) ? "<secret>" : o->default_value);
    if (o->flags & OF_OPT_SECRET)
        printf(", secret");
    printf("\n");
    if (o->description)
        printf("    %-20s %s\n", "", o->description);
}

static void print_plugin(const of_plugin *p)
{
    const of_stage_descriptor *d = p->desc;
    printf("%s %s\n", d->name, d->version);
    if (d->description)
        printf("  %s\n", d->description);
    printf("  file: %s\n", p->path ? p->path : "(linked)");
    printf("  abi: %u.%u\n", d->abi_major, d->abi_minor);
    printf("  outputs:");
    if (!d->outputs || !d->outputs[0])
        printf(" (none)");
    for (size_t i = 0; d->outputs && d->outputs[i]; i++)
        printf(" %s", d->outputs[i]);
    const char *const *acc = of_descriptor_accepts(d);
    printf("\n  accepts:");
    if (!acc)
        printf(" (every type)");
    for (size_t i = 0; acc && acc[i]; i++)
        printf(" %s", acc[i]);
    if (of_descriptor_uses_db(d))
        printf("\n  batches: %s", of_descriptor_process_batch(d)
                                      ? "set-based (process_batch: a batch's events at once)"
                                      : "one process() call per event");
    printf("\n  options:");
    if (!d->options || !d->options[0].name)
        printf(" (none)\n");
    else
        printf("\n");
    for (size_t i = 0; d->options && d->options[i].name; i++)
        print_option(&d->options[i]);
}

int of_cmd_plugins(const of_cli *cli, int argc, char **argv)
{
    if (argc > 2) {
        fprintf(stderr, "usage: orderflow plugins [NAME]\n");
        return 2;
    }
    const char *only = argc == 2 ? argv[1] : NULL;
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    of_cli_load_plugins(cli, &reg, &diag);
    of_diag_print(&diag, stderr);
    int found = 0;
    for (size_t i = 0; i < reg.count; i++) {
        if (only && strcmp(reg.plugins[i]->name, only) != 0)
            continue;
        if (found++)
            printf("\n");
        print_plugin(reg.plugins[i]);
    }
    int rc = diag.errors ? 1 : 0;
    if (only && !found) {
        fprintf(stderr, "orderflow plugins: no plugin named '%s'\n", only);
        rc = 1;
    }
    of_diag_free(&diag);
    of_registry_free(&reg);
    return rc;
}
