#include "thread_name.h"

#include <string.h>

void of_thread_name_compose(char *out, const char *what, const char *suffix)
{
    size_t ls = suffix ? strlen(suffix) : 0;
    if (ls > OF_THREAD_NAME_MAX)
        ls = OF_THREAD_NAME_MAX;
    size_t lw = what ? strlen(what) : 0;
    if (lw > OF_THREAD_NAME_MAX - ls)
        lw = OF_THREAD_NAME_MAX - ls;
    if (lw)
        memcpy(out, what, lw);
    if (ls)
        memcpy(out + lw, suffix, ls);
    out[lw + ls] = '\0';
}

void of_thread_name(pthread_t t, const char *what, const char *suffix)
{
    char name[OF_THREAD_NAME_MAX + 1];
    of_thread_name_compose(name, what, suffix);
    if (name[0])
        (void)pthread_setname_np(t, name);
}
