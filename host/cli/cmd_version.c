#include "cli.h"

#include <orderflow/stage.h>

#include <stdio.h>

#ifndef OF_VERSION
#define OF_VERSION "0.0.0"
#endif

int of_cmd_version(const of_cli *cli, int argc, char **argv)
{
    (void)cli;
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "orderflow version: takes no arguments\n");
        return 2;
    }
    of_build_signature sig;
    of_host_signature(&sig);
    printf("orderflow %s\nstage ABI %d.%d (pointer %u, time_t %u, size_t %u, %s-endian, "
           "features 0x%x)\n",
           OF_VERSION, OF_ABI_MAJOR, OF_ABI_MINOR, sig.pointer_size, sig.time_t_size,
           sig.size_t_size, sig.big_endian ? "big" : "little", sig.features);
    return 0;
}
