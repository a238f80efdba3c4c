/* Test "plugin" executable: a program, built as executable/executable.so (the toolchain's
 * default, a PIE here) and executable_nopie/executable_nopie.so (ET_EXEC). */
#include <stdio.h>

int main(void)
{
    puts("an executable, not a plugin");
    return 0;
}
