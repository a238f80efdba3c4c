#include "cli.h"
#include "hostconfig.h"
#include "plugin_path.h"

void of_cli_load_plugins(const of_cli *cli, of_plugin_registry *reg, of_diag *diag)
{
    const char *dirs[OF_CLI_MAX_DIRS];
    size_t n = 0;
    of_host_config *hc = NULL;
    if (cli->n_plugin_dirs) {
        for (size_t i = 0; i < cli->n_plugin_dirs; i++)
            dirs[n++] = cli->plugin_dirs[i];
    } else if (cli->config_path) {
        hc = of_host_config_load(cli->config_path, diag);
        for (size_t i = 0; hc && i < hc->n_plugin_dirs && n < OF_CLI_MAX_DIRS; i++)
            dirs[n++] = hc->plugin_dirs[i];
        if (!hc)
            return;
    } else {
        n = of_env_plugin_dirs(dirs, OF_CLI_MAX_DIRS);
        if (n == 0)
            dirs[n++] = of_default_plugin_dir();
    }
    of_registry_scan(reg, dirs, n, diag);
    of_host_config_free(hc);
}
