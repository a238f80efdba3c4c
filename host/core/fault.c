#include "fault.h"

#include "log.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

static _Atomic long g_after_commit = -1; /* -1: not read yet; 0: off */
static _Atomic long g_commits;

void of_fault_after_commit(void)
{
    long limit = atomic_load(&g_after_commit);
    if (limit < 0) {
        const char *v = getenv("OF_FAULT_KILL_AFTER_COMMIT");
        limit = v ? strtol(v, NULL, 10) : 0;
        if (limit < 0)
            limit = 0;
        atomic_store(&g_after_commit, limit);
    }
    if (limit > 0 && atomic_fetch_add(&g_commits, 1) + 1 == limit) {
        of_log(OF_LVL_WARN, NULL, NULL, "fault injection: killed after commit %ld", limit);
        raise(SIGKILL);
    }
}
