/* ${VAR} / ${VAR:-default} interpolation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "interp.h"

#include <stdlib.h>
#include <string.h>

/* A fake environment: A=alpha, EMPTY="", B_2=two, everything else unset. */
static const char *fake_env(const char *name, void *opaque)
{
    (void)opaque;
    if (strcmp(name, "A") == 0)
        return "alpha";
    if (strcmp(name, "EMPTY") == 0)
        return "";
    if (strcmp(name, "B_2") == 0)
        return "two";
    return NULL;
}

static char err[512];
static size_t off;

static void expect_ok(const char *in, const char *want)
{
    size_t len = 0;
    char *out = of_interp(in, strlen(in), fake_env, NULL, &len, &off, err, sizeof(err));
    if (!out)
        fail_msg("'%s' failed: %s", in, err);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    free(out);
}

static void expect_err(const char *in, const char *needle, size_t at)
{
    err[0] = '\0';
    off = 9999;
    char *out = of_interp(in, strlen(in), fake_env, NULL, NULL, &off, err, sizeof(err));
    if (out) {
        free(out);
        fail_msg("'%s' should fail", in);
    }
    if (!strstr(err, needle))
        fail_msg("'%s': expected '%s' in '%s'", in, needle, err);
    assert_int_equal(off, at);
}

static void test_plain_and_set(void **state)
{
    (void)state;
    expect_ok("", "");
    expect_ok("no vars here", "no vars here");
    expect_ok("${A}", "alpha");
    expect_ok("x-${A}-y", "x-alpha-y");
    expect_ok("${A}${B_2}", "alphatwo");
    expect_ok("${A}/${B_2}/${A}", "alpha/two/alpha");
}

static void test_defaults(void **state)
{
    (void)state;
    expect_ok("${UNSET:-dflt}", "dflt");
    expect_ok("${A:-dflt}", "alpha");
    expect_ok("${EMPTY:-dflt}", "dflt"); /* empty counts as unset with :- */
    expect_ok("${EMPTY}", "");           /* but is a value without :- */
    expect_ok("${UNSET:-}", "");
    expect_ok("${UNSET:-a b:c-d}", "a b:c-d");
    expect_ok("${UNSET:-$A}", "$A"); /* defaults are not expanded again */
}

static void test_dollars(void **state)
{
    (void)state;
    expect_ok("$$", "$");
    expect_ok("cost: $$5", "cost: $5");
    expect_ok("$$${A}", "$alpha");
    expect_ok("a $ b", "a $ b");
    expect_ok("$A", "$A");
    expect_ok("end$", "end$");
    expect_ok("$$$$", "$$");
}

static void test_errors(void **state)
{
    (void)state;
    expect_err("x ${A", "unterminated", 2);
    expect_err("${A:-abc", "unterminated", 0);
    expect_err("${}", "empty variable name", 2);
    expect_err("ab${1A}", "bad variable name '1A'", 4);
    expect_err("${A-B}", "bad variable name 'A-B'", 2);
    expect_err("${A:x}", "unsupported form", 3);
    expect_err("pre ${ORDERFLOW_X} post",
               "environment variable ORDERFLOW_X is not set and has no default (write "
               "${ORDERFLOW_X:-value})",
               4);
    expect_err("${UNSET:-${A}}", "nested", 9);
}

static void test_getenv_default(void **state)
{
    (void)state;
    setenv("OF_TEST_INTERP_VAR", "from-env", 1);
    unsetenv("OF_TEST_INTERP_UNSET");
    const char *in = "${OF_TEST_INTERP_VAR}:${OF_TEST_INTERP_UNSET:-d}";
    char *out = of_interp(in, strlen(in), NULL, NULL, NULL, NULL, err, sizeof(err));
    assert_non_null(out);
    assert_string_equal(out, "from-env:d");
    free(out);
}

static void test_output_bounded(void **state)
{
    (void)state;
    size_t n = OF_INTERP_MAX_BYTES / 2 + 10;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = '\0';
    setenv("OF_TEST_BIG", big, 1);
    free(big);
    const char *in = "${OF_TEST_BIG}${OF_TEST_BIG}";
    char *out = of_interp(in, strlen(in), NULL, NULL, NULL, NULL, err, sizeof(err));
    assert_null(out);
    assert_non_null(strstr(err, "longer than"));
    unsetenv("OF_TEST_BIG");
}

static void test_length_respected(void **state)
{
    (void)state;
    /* Only the first len bytes are read. */
    size_t len = 0;
    char *out = of_interp("${A}${NOPE}", 4, fake_env, NULL, &len, NULL, err, sizeof(err));
    assert_non_null(out);
    assert_string_equal(out, "alpha");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_set),    cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_dollars),          cmocka_unit_test(test_errors),
        cmocka_unit_test(test_getenv_default),   cmocka_unit_test(test_output_bounded),
        cmocka_unit_test(test_length_respected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
