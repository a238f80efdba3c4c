/* Time-ordered event ids (host/core/uuid.c): a version 7 UUID carries the time it was made in
 * its first 48 bits, ids made later sort after it, and the prefix of a canonical UUID is read back
 * (either case) while anything else is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "uuid.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void assert_shape(const char *id, char version)
{
    assert_int_equal(strlen(id), OF_UUID_LEN);
    for (size_t i = 0; i < OF_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(id[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", id[i]));
    }
    assert_int_equal(id[14], version);
    assert_non_null(strchr("89ab", id[19])); /* the RFC 9562 variant */
}

static void test_uuid7_at(void **state)
{
    (void)state;
    char id[OF_UUID_LEN + 1];
    of_uuid7_at(0x0123456789abull, id);
    assert_shape(id, '7');
    assert_memory_equal(id, "01234567-89ab-7", 15);
    uint8_t p[6];
    assert_int_equal(of_uuid_prefix(id, strlen(id), p), 1);
    const uint8_t want[6] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab};
    assert_memory_equal(p, want, 6);
    /* Two ids of one millisecond share the prefix and nothing else. */
    char other[OF_UUID_LEN + 1];
    of_uuid7_at(0x0123456789abull, other);
    assert_memory_equal(other, id, 13);
    assert_string_not_equal(other, id);
}

static void test_uuid7_now_sorts_by_time(void **state)
{
    (void)state;
    uint64_t before = now_ms();
    char a[OF_UUID_LEN + 1], b[OF_UUID_LEN + 1];
    of_uuid7(a);
    assert_shape(a, '7');
    uint8_t p[6];
    assert_int_equal(of_uuid_prefix(a, strlen(a), p), 1);
    uint64_t t = 0;
    for (int i = 0; i < 6; i++)
        t = t << 8 | p[i];
    assert_true(t >= before && t <= now_ms());
    struct timespec two_ms = {0, 2000000};
    nanosleep(&two_ms, NULL);
    of_uuid7(b);
    assert_true(strcmp(a, b) < 0); /* the text sorts as the time does */
}

static void test_prefix_of_other_ids(void **state)
{
    (void)state;
    uint8_t p[6] = {0};
    assert_int_equal(of_uuid_prefix("6B0C1B7E-1F8A-4C52-9D43-0B3F8B0E9A11", 36, p), 1);
    const uint8_t want[6] = {0x6b, 0x0c, 0x1b, 0x7e, 0x1f, 0x8a};
    assert_memory_equal(p, want, 6);
    const char *refused[] = {
        "input-id",
        "6b0c1b7e-1f8a-4c52-9d43-0b3f8b0e9a1",   /* one short */
        "6b0c1b7e-1f8a-4c52-9d43-0b3f8b0e9a111", /* one long */
        "6b0c1b7e1-f8a-4c52-9d43-0b3f8b0e9a11",  /* a dash moved */
        "6b0c1b7e-1f8a-4c52-9d43-0b3f8b0e9a1g",  /* not hex */
        "orders.placed/3/1234567890123456789012",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        memset(p, 0x5a, sizeof(p));
        assert_int_equal(of_uuid_prefix(refused[i], strlen(refused[i]), p), 0);
        assert_int_equal(p[0], 0x5a); /* untouched */
    }
    assert_int_equal(of_uuid_prefix(NULL, 36, p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid7_at),
        cmocka_unit_test(test_uuid7_now_sorts_by_time),
        cmocka_unit_test(test_prefix_of_other_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
