/* The memory trimmer: what a burst allocated and freed goes back to the kernel although live
 * blocks are left above it (glibc alone returns memory only from the top of a heap). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "memtrim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long resident_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

#define N_BLOCKS 60000
#define BLOCK    1000 /* below the mmap threshold: from the heap */

static void test_burst_is_given_back(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* AddressSanitizer's allocator replaces glibc's: nothing for malloc_trim to do */
#endif
    static char *blocks[N_BLOCKS];
    long before = resident_kb();
    for (size_t i = 0; i < N_BLOCKS; i++) {
        blocks[i] = malloc(BLOCK);
        assert_non_null(blocks[i]);
        memset(blocks[i], 0x5a, BLOCK); /* resident */
    }
    /* A live block above the burst keeps glibc from trimming the top. */
    char *pin = malloc(BLOCK);
    assert_non_null(pin);
    memset(pin, 1, BLOCK);
    long peak = resident_kb();
    assert_true(peak - before > 40000); /* ~60 MB touched */
    for (size_t i = 0; i < N_BLOCKS; i++)
        free(blocks[i]);
    long freed = resident_kb();
    /* Freed, but still resident: this is what the trimmer is for. */
    assert_true(freed - before > 40000);

    of_memtrim *t = of_memtrim_start(50);
    assert_non_null(t);
    long now = freed;
    for (int i = 0; i < 100 && now - before > 10000; i++) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        now = resident_kb();
    }
    of_memtrim_stop(t);
    free(pin);
    if (now - before > 10000)
        fail_msg("resident memory stayed at +%ld KB after the trimmer ran (peak +%ld KB)",
                 now - before, peak - before);
}

static void test_stop_is_prompt_and_null_is_fine(void **state)
{
    (void)state;
    of_memtrim_stop(NULL);
    of_memtrim *t = of_memtrim_start(3600 * 1000); /* an hour: stop must not wait for it */
    assert_non_null(t);
    of_memtrim_stop(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_is_given_back),
        cmocka_unit_test(test_stop_is_prompt_and_null_is_fine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
