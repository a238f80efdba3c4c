/* Test plugin "entry_elsewhere": defines no entry of its own but links a library that does
 * (entry_lib.c). The loader must not take a dependency's entry for the plugin's. */
#include <orderflow/stage.h>

int of_tp_entry_lib_marker(void);

/* Uses the library, so that it stays a dependency under --as-needed. */
int of_tp_entry_elsewhere_unused(void);
int of_tp_entry_elsewhere_unused(void)
{
    return of_tp_entry_lib_marker();
}
