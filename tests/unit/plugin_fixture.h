/* The business plugins' tests: a built plugin file (OF_BUILD_PLUGIN_DIR/<name>.so) loaded as the
 * daemon loads it, with its schema applied to the test's own database. Include after cmocka.h and
 * test_db_util.h. */
#ifndef OF_TEST_PLUGIN_FIXTURE_H
#define OF_TEST_PLUGIN_FIXTURE_H

#include "plugin.h"

#include <stdio.h>

/* Loads plugin `name` and applies its migrations to pool's database; with need_batch, the plugin
 * must have process_batch (a set test without it would test process() only). NULL (and why on
 * stderr) when it cannot be. */
static __attribute__((unused)) of_plugin *pf_load(of_db_pool *pool, const char *name,
                                                  int need_batch)
{
    char file[512], err[1024] = "";
    snprintf(file, sizeof(file), "%s/%s.so", OF_BUILD_PLUGIN_DIR, name);
    of_plugin *p = of_plugin_load(file, err, sizeof(err));
    if (!p) {
        fprintf(stderr, "loading the %s plugin: %s\n", name, err);
        return NULL;
    }
    if (need_batch && !of_descriptor_process_batch(p->desc)) {
        fprintf(stderr, "the %s plugin has no process_batch\n", name);
        of_plugin_unload(p);
        return NULL;
    }
    if (of_db_migrate(pool, name, p->desc->migrations, NULL, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s migrations: %s\n", name, err);
        of_plugin_unload(p);
        return NULL;
    }
    return p;
}

/* The group teardown: the plugin unloaded, the pool closed, the test's database dropped. */
static __attribute__((unused)) int pf_teardown(of_plugin *p, of_db_pool *pool)
{
    of_plugin_unload(p);
    of_db_pool_free(pool);
    return dbt_drop_database();
}

#endif
