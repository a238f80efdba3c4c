/* SHA-256 (migration checksums), the outbox's header encoding and the error mapping: no
 * database needed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_sha(const void *data, size_t len, const char *want)
{
    char hex[65];
    of_sha256_hex(data, len, hex);
    if (strcmp(hex, want) != 0)
        fail_msg("sha256 of %zu bytes: %s, expected %s", len, hex, want);
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    /* FIPS 180-4 examples and the padding boundaries (55/56/63/64 bytes fill one block or
     * spill into a second). */
    check_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha(m448, strlen(m448),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklm"
        "nopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_sha(m896, strlen(m896),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    static const struct {
        size_t n;
        const char *hex;
    } as[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
    };
    char *a = malloc(1000000);
    assert_non_null(a);
    memset(a, 'a', 1000000);
    for (size_t i = 0; i < sizeof(as) / sizeof(as[0]); i++)
        check_sha(a, as[i].n, as[i].hex);
    free(a);
    uint8_t raw[32];
    of_sha256("abc", 3, raw);
    assert_int_equal(raw[0], 0xba);
    assert_int_equal(raw[31], 0xad);
}

static of_event *sample_event(void)
{
    of_event *ev = of_event_new("k\0ey", 4, "pay\0load", 8);
    assert_non_null(ev);
    assert_int_equal(of_event_add_header(ev, "ce_id", "abc-1", 5), 0);
    assert_int_equal(of_event_add_header(ev, "bin", "\x00\x01\xff\x80", 4), 0);
    assert_int_equal(of_event_add_header(ev, "empty", "", 0), 0);
    assert_int_equal(of_event_add_header(ev, "bin", "second", 6), 0); /* repeated name */
    char big[300];
    memset(big, 'x', sizeof(big)); /* a two-byte varint length */
    assert_int_equal(of_event_add_header(ev, "big", big, sizeof(big)), 0);
    return ev;
}

static void assert_same_headers(const of_event *a, const of_event *b)
{
    assert_int_equal(a->n_headers, b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        assert_string_equal(a->headers[i].name, b->headers[i].name);
        assert_int_equal(a->headers[i].value_len, b->headers[i].value_len);
        assert_memory_equal(a->headers[i].value, b->headers[i].value, a->headers[i].value_len);
    }
}

static void test_headers_round_trip(void **state)
{
    (void)state;
    of_event *ev = sample_event();
    size_t len = 0;
    uint8_t *buf = of_db_headers_encode(ev, &len);
    assert_non_null(buf);
    assert_int_equal(buf[0], 0x01);
    /* 5 headers: 1 version byte + names + values + one length byte each, two for "big". */
    size_t expect = 1;
    for (size_t i = 0; i < ev->n_headers; i++)
        expect += 1 + strlen(ev->headers[i].name) + ev->headers[i].value_len + 1;
    assert_int_equal(len, expect + 1);
    of_event *back = of_event_new(NULL, 0, "", 0);
    assert_int_equal(of_db_headers_decode(back, buf, len), 0);
    assert_same_headers(ev, back);
    of_event_free(back);
    free(buf);

    /* No headers: the version byte alone. */
    of_event *bare = of_event_new(NULL, 0, "", 0);
    buf = of_db_headers_encode(bare, &len);
    assert_int_equal(len, 1);
    assert_int_equal(of_db_headers_decode(bare, buf, len), 0);
    assert_int_equal(bare->n_headers, 0);
    free(buf);
    of_event_free(bare);
    of_event_free(ev);
}

static void test_headers_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
        const char *why;
    } bad[] = {
        {"", 0, "empty"},
        {"\x02", 1, "unknown version"},
        {"\x01\x05"
         "ab",
         4, "name longer than the buffer"},
        {"\x01\x01"
         "a\x05"
         "xy",
         5, "value longer than the buffer"},
        {"\x01\x00\x00", 3, "empty name"},
        {"\x01\x02"
         "a\x00\x00",
         5, "NUL in a name"},
        {"\x01\x80", 2, "truncated varint"},
        {"\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, "varint over 64 bits"},
        {"\x01\x01"
         "a",
         3, "missing value length"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        of_event *ev = of_event_new(NULL, 0, "", 0);
        if (of_db_headers_decode(ev, bad[i].bytes, bad[i].len) == 0)
            fail_msg("malformed headers accepted: %s", bad[i].why);
        of_event_free(ev);
    }
}

static void test_error_mapping(void **state)
{
    (void)state;
    assert_int_equal(of_db_map_errno(0), OF_DB_OK);
    assert_int_equal(of_db_map_errno(1062), OF_DB_ERR_DUPLICATE);
    static const unsigned int constraint[] = {1451, 1452, 1048, 3819, 4025};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(of_db_map_errno(constraint[i]), OF_DB_ERR_CONSTRAINT);
    assert_int_equal(of_db_map_errno(1213), OF_DB_ERR_TRANSIENT);
    assert_int_equal(of_db_map_errno(1205), OF_DB_ERR_TRANSIENT);
    static const unsigned int conn[] = {2002, 2003, 2006, 2013, 1927, 1053};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(of_db_map_errno(conn[i]), OF_DB_ERR_UNAVAILABLE);
        assert_true(of_db_errno_is_connection(conn[i]));
    }
    assert_int_equal(of_db_map_errno(1064), OF_DB_ERR_OTHER); /* syntax */
    assert_int_equal(of_db_map_errno(1146), OF_DB_ERR_OTHER); /* no such table */
    assert_false(of_db_errno_is_connection(1062));
    assert_string_equal(of_db_error_name(OF_DB_ERR_TRANSIENT), "transient");
}

static void test_migration_array_checks(void **state)
{
    (void)state;
    char err[512];
    const of_migration ok[] = {{1, "a", "SELECT 1"}, {2, "b", "SELECT 2"}, {0, NULL, NULL}};
    assert_int_equal(of_db_migrations_check("x", ok, err, sizeof(err)), 0);
    const of_migration gap[] = {{1, "a", "SELECT 1"}, {3, "b", "SELECT 2"}, {0, NULL, NULL}};
    assert_int_equal(of_db_migrations_check("x", gap, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "without gaps: found 3 where 2 was expected"));
    const of_migration down[] = {{1, "a", "SELECT 1"}, {1, "b", "SELECT 2"}, {0, NULL, NULL}};
    assert_int_equal(of_db_migrations_check("x", down, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "must increase: 1 follows 1"));
    const of_migration start2[] = {{2, "a", "SELECT 1"}, {0, NULL, NULL}};
    assert_int_equal(of_db_migrations_check("x", start2, err, sizeof(err)), -1);
    const of_migration noname[] = {{1, "", "SELECT 1"}, {0, NULL, NULL}};
    assert_int_equal(of_db_migrations_check("x", noname, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "needs a name"));
    const of_migration nosql[] = {{1, "a", ""}, {0, NULL, NULL}};
    assert_int_equal(of_db_migrations_check("x", nosql, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "has no SQL"));
    assert_int_equal(of_db_migrations_check("orderflow", of_db_host_migrations(), err, sizeof(err)),
                     0);

    /* A 1.0 descriptor has no migrations field: never read. */
    of_stage_descriptor d = {.abi_major = 1,
                             .abi_minor = 1,
                             .struct_size = (uint32_t)sizeof(of_stage_descriptor),
                             .migrations = ok};
    assert_ptr_equal(of_plugin_migrations(&d), ok);
    d.abi_minor = 0;
    d.struct_size = (uint32_t)offsetof(of_stage_descriptor, flags);
    assert_null(of_plugin_migrations(&d));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),         cmocka_unit_test(test_headers_round_trip),
        cmocka_unit_test(test_headers_malformed),      cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_migration_array_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
