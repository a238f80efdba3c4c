/* The business plugins' SQL built from a count (plugins/common/ofp_sql.c): the text for 0, 1
 * and several rows, and a buffer too small for it refused (0) rather than cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ofp_sql.h"

#include <stdlib.h>
#include <string.h>

static void test_rows(void **state)
{
    (void)state;
    char out[128];
    const char *want = "SELECT x FROM t WHERE k IN (?, ?, ?)";
    assert_int_equal(ofp_sql_rows(out, sizeof(out), "SELECT x FROM t WHERE k IN (", "?", 3, ")"),
                     strlen(want));
    assert_string_equal(out, want);
    assert_int_equal(ofp_sql_rows(out, sizeof(out), "INSERT INTO t VALUES ", "(?, 'A')", 1, ""),
                     strlen("INSERT INTO t VALUES (?, 'A')"));
    assert_string_equal(out, "INSERT INTO t VALUES (?, 'A')");
    assert_int_equal(ofp_sql_rows(out, sizeof(out), "H", "r", 0, "T"), 2);
    assert_string_equal(out, "HT");
}

static void test_too_small(void **state)
{
    (void)state;
    char out[16];
    memset(out, 'z', sizeof(out));
    /* "IN (?, ?, ?, ?)" is 15 bytes and its NUL: fits exactly. */
    assert_int_equal(ofp_sql_rows(out, 16, "IN (", "?", 4, ")"), 15);
    assert_string_equal(out, "IN (?, ?, ?, ?)");
    memset(out, 'z', sizeof(out));
    assert_int_equal(ofp_sql_rows(out, 16, "IN (", "?", 5, ")"), 0);
    assert_int_equal(out[0], 'z');                                  /* nothing written */
    assert_int_equal(ofp_sql_rows(out, 4, "IN (", "?", 0, ")"), 0); /* head and tail alone */
    assert_int_equal(ofp_sql_rows(out, 16, "IN (", "?", (size_t)-1, ")"), 0);
}

/* The allocating form: sized for any count (a batch's), the same text. */
static void test_rows_new(void **state)
{
    (void)state;
    char *sql = ofp_sql_rows_new("SELECT x FROM t WHERE k IN (", "?", 3, ")");
    assert_non_null(sql);
    assert_string_equal(sql, "SELECT x FROM t WHERE k IN (?, ?, ?)");
    free(sql);
    sql = ofp_sql_rows_new("INSERT INTO t VALUES ", "(?, ?)", 1000, " RETURNING id");
    assert_non_null(sql);
    assert_int_equal(strlen(sql), strlen("INSERT INTO t VALUES ") + 1000 * 6 + 999 * 2 +
                                      strlen(" RETURNING id"));
    free(sql);
}

/* A list's places: the next power of two, so that sets of 5 to 8 values share one statement. */
static void test_list_len(void **state)
{
    (void)state;
    assert_int_equal(ofp_sql_list_len(0), 0);
    assert_int_equal(ofp_sql_list_len(1), 1);
    assert_int_equal(ofp_sql_list_len(2), 2);
    assert_int_equal(ofp_sql_list_len(3), 4);
    assert_int_equal(ofp_sql_list_len(5), 8);
    assert_int_equal(ofp_sql_list_len(8), 8);
    assert_int_equal(ofp_sql_list_len(33), 64);
    assert_int_equal(ofp_sql_list_len(1000), 1024);
    /* No power of two above it: the count itself, never less. */
    assert_int_equal(ofp_sql_list_len((size_t)-1), (size_t)-1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_too_small),
        cmocka_unit_test(test_rows_new),
        cmocka_unit_test(test_list_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
