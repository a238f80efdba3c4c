/* Option value parsers, option table checks and config validation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "options.h"
#include "yamltree.h"

#include <stdio.h>
#include <string.h>

static char err[1024];

/* ---- ints ---- */

static void test_int_ok(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(of_parse_int("42", &v, err, sizeof(err)), 0);
    assert_int_equal(v, 42);
    assert_int_equal(of_parse_int("-7", &v, err, sizeof(err)), 0);
    assert_int_equal(v, -7);
    assert_int_equal(of_parse_int("+5", &v, err, sizeof(err)), 0);
    assert_int_equal(v, 5);
    assert_int_equal(of_parse_int("9223372036854775807", &v, err, sizeof(err)), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(of_parse_int("-9223372036854775808", &v, err, sizeof(err)), 0);
    assert_true(v == INT64_MIN);
}

static void test_int_bad(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(of_parse_int("9223372036854775808", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(of_parse_int("12abc", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "expected an integer"));
    assert_non_null(strstr(err, "'12abc'"));
    assert_int_equal(of_parse_int("", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_int(" 1", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_int("1.5", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_int("-", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_int("0x10", &v, err, sizeof(err)), -1);
}

/* ---- bools ---- */

static void test_bool(void **state)
{
    (void)state;
    const char *yes[] = {"true", "TRUE", "Yes", "on", "ON"};
    const char *no[] = {"false", "False", "no", "NO", "off"};
    for (size_t i = 0; i < 5; i++) {
        int b = -1;
        assert_int_equal(of_parse_bool(yes[i], &b, err, sizeof(err)), 0);
        assert_int_equal(b, 1);
        assert_int_equal(of_parse_bool(no[i], &b, err, sizeof(err)), 0);
        assert_int_equal(b, 0);
    }
    int b;
    assert_int_equal(of_parse_bool("1", &b, err, sizeof(err)), -1);
    assert_int_equal(of_parse_bool("truth", &b, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "expected a boolean"));
    assert_non_null(strstr(err, "'truth'"));
}

/* ---- doubles ---- */

static void test_double(void **state)
{
    (void)state;
    double d = 0;
    assert_int_equal(of_parse_double("0.25", &d, err, sizeof(err)), 0);
    assert_true(d == 0.25);
    assert_int_equal(of_parse_double("1e3", &d, err, sizeof(err)), 0);
    assert_true(d == 1000.0);
    assert_int_equal(of_parse_double("-2", &d, err, sizeof(err)), 0);
    assert_true(d == -2.0);
    assert_int_equal(of_parse_double(".5", &d, err, sizeof(err)), 0);
    assert_true(d == 0.5);
    assert_int_equal(of_parse_double("nan", &d, err, sizeof(err)), -1);
    assert_int_equal(of_parse_double("inf", &d, err, sizeof(err)), -1);
    assert_int_equal(of_parse_double("-inf", &d, err, sizeof(err)), -1);
    assert_int_equal(of_parse_double("1e999", &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "finite"));
    assert_int_equal(of_parse_double("1.5x", &d, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'1.5x'"));
    assert_int_equal(of_parse_double("", &d, err, sizeof(err)), -1);
}

/* ---- durations ---- */

static void test_duration_ok(void **state)
{
    (void)state;
    struct {
        const char *s;
        int64_t ms;
    } ok[] = {{"250ms", 250}, {"1.5s", 1500}, {"2m", 120000},  {"1h", 3600000},    {"0s", 0},
              {"0ms", 0},     {"10s", 10000}, {"0.5m", 30000}, {"1.25h", 4500000}, {"90s", 90000}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = -1;
        assert_int_equal(of_parse_duration_ms(ok[i].s, &v, err, sizeof(err)), 0);
        assert_int_equal(v, ok[i].ms);
    }
}

static void test_duration_bad(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(of_parse_duration_ms("250", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unit"));
    assert_non_null(strstr(err, "'250'"));
    assert_int_equal(of_parse_duration_ms("-1s", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "negative"));
    assert_int_equal(of_parse_duration_ms("99999999999999999999h", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too large"));
    assert_int_equal(of_parse_duration_ms("9999999999999h", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too large"));
    assert_int_equal(of_parse_duration_ms("5us", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "below a millisecond"));
    assert_int_equal(of_parse_duration_ms("5ns", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_duration_ms("5sec", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "expected a duration"));
    assert_int_equal(of_parse_duration_ms("s", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_duration_ms("", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_duration_ms("1.5.5s", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_duration_ms("5 s", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_duration_ms("0.1ms", &v, err, sizeof(err)), -1);
}

/* ---- sizes ---- */

static void test_size_ok(void **state)
{
    (void)state;
    struct {
        const char *s;
        uint64_t b;
    } ok[] = {{"512", 512},
              {"512B", 512},
              {"64KiB", 65536},
              {"10MB", 10000000},
              {"1GiB", 1073741824ull},
              {"2K", 2048},
              {"1M", 1048576},
              {"1G", 1073741824ull},
              {"1KB", 1000},
              {"1TB", 1000000000000ull},
              {"1TiB", 1099511627776ull},
              {"1.5KiB", 1536},
              {"0", 0},
              {"18446744073709551615", UINT64_MAX}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1;
        assert_int_equal(of_parse_size(ok[i].s, &v, err, sizeof(err)), 0);
        assert_true(v == ok[i].b);
    }
}

static void test_size_bad(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(of_parse_size("-1KiB", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "negative"));
    assert_int_equal(of_parse_size("18446744073709551616", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too large"));
    assert_int_equal(of_parse_size("20000000TiB", &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too large"));
    assert_int_equal(of_parse_size("10kb", &v, err, sizeof(err)), -1); /* case-sensitive */
    assert_non_null(strstr(err, "expected a size"));
    assert_non_null(strstr(err, "'10kb'"));
    assert_int_equal(of_parse_size("10XB", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_size("KiB", &v, err, sizeof(err)), -1);
    assert_int_equal(of_parse_size("", &v, err, sizeof(err)), -1);
}

/* ---- helpers ---- */

static void test_levenshtein(void **state)
{
    (void)state;
    assert_int_equal(of_levenshtein("timeout", "timout"), 1);
    assert_int_equal(of_levenshtein("", "abc"), 3);
    assert_int_equal(of_levenshtein("kitten", "sitting"), 3);
    const char *c[] = {"timeout", "retries", "url"};
    assert_string_equal(of_did_you_mean("timout", c, 3), "timeout");
    assert_string_equal(of_did_you_mean("ulr", c, 3), "url");
    assert_null(of_did_you_mean("completely", c, 3));
    const char *short_names[] = {"a", "b"};
    assert_null(of_did_you_mean("zz", short_names, 2));
}

static void test_type_names_and_describe(void **state)
{
    (void)state;
    assert_string_equal(of_option_type_name(OF_OPT_DURATION), "duration");
    assert_string_equal(of_option_type_name(OF_OPT_LIST), "list");
    char buf[128];
    of_option d = {.name = "t",
                   .type = OF_OPT_DURATION,
                   .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
                   .min = 10,
                   .max = 60000};
    of_option_describe_type(&d, buf, sizeof(buf));
    assert_string_equal(buf, "duration, 10ms..1m");
    static const char *const ev[] = {"a", "b", "c", NULL};
    of_option e = {.name = "e", .type = OF_OPT_ENUM, .enum_values = ev};
    of_option_describe_type(&e, buf, sizeof(buf));
    assert_string_equal(buf, "enum: a|b|c");
    of_option s = {.name = "s", .type = OF_OPT_SIZE, .flags = OF_OPT_HAS_MAX, .max = 65536};
    of_option_describe_type(&s, buf, sizeof(buf));
    assert_string_equal(buf, "size, <= 64KiB");
    of_option i = {.name = "i", .type = OF_OPT_INT, .flags = OF_OPT_HAS_MIN, .min = 1};
    of_option_describe_type(&i, buf, sizeof(buf));
    assert_string_equal(buf, "int, >= 1");
}

/* ---- a table used below ---- */

static const char *const modes[] = {"fast", "safe", NULL};

static const of_option table[] = {
    {.name = "url", .type = OF_OPT_STRING, .flags = OF_OPT_REQUIRED, .description = "endpoint"},
    {.name = "timeout",
     .type = OF_OPT_DURATION,
     .default_value = "5s",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 10,
     .max = 60000},
    {.name = "retries",
     .type = OF_OPT_INT,
     .default_value = "3",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 0,
     .max = 10},
    {.name = "verbose", .type = OF_OPT_BOOL, .default_value = "false"},
    {.name = "ratio",
     .type = OF_OPT_DOUBLE,
     .default_value = "0.5",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 0,
     .max = 1},
    {.name = "buffer", .type = OF_OPT_SIZE, .default_value = "64KiB"},
    {.name = "mode", .type = OF_OPT_ENUM, .default_value = "safe", .enum_values = modes},
    {.name = "tags", .type = OF_OPT_LIST, .flags = OF_OPT_HAS_MAX, .max = 3},
    {.name = "password", .type = OF_OPT_STRING, .flags = OF_OPT_SECRET},
    {.name = "pin", .type = OF_OPT_INT, .flags = OF_OPT_SECRET | OF_OPT_HAS_MAX, .max = 9999},
    {0}};

static void test_table_ok(void **state)
{
    (void)state;
    assert_int_equal(of_options_check_table(table, err, sizeof(err)), 0);
    assert_int_equal(of_options_check_table(NULL, err, sizeof(err)), 0);
}

static void expect_table_error(const of_option *t, const char *needle)
{
    err[0] = '\0';
    assert_int_equal(of_options_check_table(t, err, sizeof(err)), -1);
    if (!strstr(err, needle))
        fail_msg("expected '%s' in '%s'", needle, err);
}

static void test_table_bad(void **state)
{
    (void)state;
    of_option bad_name[] = {{.name = "Bad-Name", .type = OF_OPT_STRING}, {0}};
    expect_table_error(bad_name, "bad name");
    of_option empty_name[] = {{.name = "", .type = OF_OPT_STRING}, {0}};
    expect_table_error(empty_name, "bad name");
    of_option dup[] = {
        {.name = "a", .type = OF_OPT_STRING}, {.name = "a", .type = OF_OPT_INT}, {0}};
    expect_table_error(dup, "declared twice");
    of_option bad_type[] = {{.name = "a", .type = (of_option_type)99}, {0}};
    expect_table_error(bad_type, "unknown type");
    of_option no_enum[] = {{.name = "a", .type = OF_OPT_ENUM}, {0}};
    expect_table_error(no_enum, "enum without");
    static const char *const none[] = {NULL};
    of_option empty_enum[] = {{.name = "a", .type = OF_OPT_ENUM, .enum_values = none}, {0}};
    expect_table_error(empty_enum, "enum without");
    of_option bad_default[] = {{.name = "a", .type = OF_OPT_DURATION, .default_value = "5"}, {0}};
    expect_table_error(bad_default, "bad default");
    of_option out_of_bounds[] = {{.name = "a",
                                  .type = OF_OPT_INT,
                                  .default_value = "50",
                                  .flags = OF_OPT_HAS_MAX,
                                  .max = 10},
                                 {0}};
    expect_table_error(out_of_bounds, "at most 10");
    of_option req_default[] = {
        {.name = "a", .type = OF_OPT_INT, .default_value = "1", .flags = OF_OPT_REQUIRED}, {0}};
    expect_table_error(req_default, "required and has a default");
    of_option enum_default[] = {
        {.name = "a", .type = OF_OPT_ENUM, .default_value = "slow", .enum_values = modes}, {0}};
    expect_table_error(enum_default, "bad default");
    of_option min_gt_max[] = {{.name = "a",
                               .type = OF_OPT_INT,
                               .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
                               .min = 5,
                               .max = 1},
                              {0}};
    expect_table_error(min_gt_max, "greater than max");
}

/* ---- from pairs ---- */

static void test_pairs_defaults(void **state)
{
    (void)state;
    const char *k[] = {"url"};
    const char *v[] = {"http://x"};
    of_config *c = of_config_from_pairs(table, k, v, 1, err, sizeof(err));
    assert_non_null(c);
    const of_config_value *t = of_config_find(c, "timeout");
    assert_non_null(t);
    assert_int_equal(t->is_set, 0);
    assert_int_equal(t->has_value, 1);
    assert_int_equal(t->i, 5000);
    assert_int_equal(of_config_find(c, "retries")->i, 3);
    assert_int_equal(of_config_find(c, "buffer")->size, 65536);
    assert_true(of_config_find(c, "ratio")->d == 0.5);
    assert_int_equal(of_config_find(c, "mode")->i, 1);
    assert_string_equal(of_config_find(c, "mode")->text, "safe");
    assert_int_equal(of_config_find(c, "tags")->has_value, 0);
    assert_int_equal(of_config_find(c, "url")->is_set, 1);
    assert_string_equal(of_config_find(c, "url")->text, "http://x");
    assert_null(of_config_find(c, "nope"));
    of_config_free(c);
}

static void test_pairs_values(void **state)
{
    (void)state;
    const char *k[] = {"url", "timeout", "verbose", "mode", "tags", "buffer"};
    const char *v[] = {"u", "1.5s", "yes", "fast", " a, b ,,c ", "10MB"};
    of_config *c = of_config_from_pairs(table, k, v, 6, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(of_config_find(c, "timeout")->i, 1500);
    assert_int_equal(of_config_find(c, "verbose")->i, 1);
    assert_int_equal(of_config_find(c, "mode")->i, 0);
    const of_config_value *tags = of_config_find(c, "tags");
    assert_int_equal(tags->list_count, 3);
    assert_string_equal(tags->list[0], "a");
    assert_string_equal(tags->list[1], "b");
    assert_string_equal(tags->list[2], "c");
    assert_int_equal(of_config_find(c, "buffer")->size, 10000000);
    of_config_free(c);
}

static void test_pairs_errors_all_reported(void **state)
{
    (void)state;
    const char *k[] = {"timout", "retries", "mode", "tags"};
    const char *v[] = {"1s", "11", "quick", "a,b,c,d"};
    of_config *c = of_config_from_pairs(table, k, v, 4, err, sizeof(err));
    assert_null(c);
    assert_non_null(strstr(err, "unknown option 'timout'"));
    assert_non_null(strstr(err, "did you mean 'timeout'"));
    assert_non_null(strstr(err, "allowed: url, timeout, retries"));
    assert_non_null(strstr(err, "option 'retries': must be at most 10; got 11"));
    assert_non_null(strstr(err, "expected one of fast, safe; got 'quick'"));
    assert_non_null(strstr(err, "at most 3 items"));
    assert_non_null(strstr(err, "missing required option 'url'"));
}

static void test_pairs_bounds_min(void **state)
{
    (void)state;
    const char *k[] = {"url", "timeout"};
    const char *v[] = {"u", "5ms"};
    assert_null(of_config_from_pairs(table, k, v, 2, err, sizeof(err)));
    assert_non_null(strstr(err, "at least 10ms; got 5ms"));
    v[1] = "2m";
    assert_null(of_config_from_pairs(table, k, v, 2, err, sizeof(err)));
    assert_non_null(strstr(err, "at most 1m; got 2m"));
    v[1] = "1m";
    of_config *c = of_config_from_pairs(table, k, v, 2, err, sizeof(err));
    assert_non_null(c);
    of_config_free(c);
}

static void test_pairs_secret_hidden(void **state)
{
    (void)state;
    const char *k[] = {"url", "pin", "password"};
    const char *v[] = {"u", "hunter2", "x"};
    assert_null(of_config_from_pairs(table, k, v, 2, err, sizeof(err)));
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "<secret>"));
    v[1] = "12345";
    assert_null(of_config_from_pairs(table, k, v, 2, err, sizeof(err)));
    assert_null(strstr(err, "12345"));
    assert_non_null(strstr(err, "<secret>"));
    v[1] = "1234";
    of_config *c = of_config_from_pairs(table, k, v, 3, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(of_config_find(c, "password")->text, "x");
    of_config_free(c);
}

static void test_pairs_duplicate(void **state)
{
    (void)state;
    const char *k[] = {"url", "url"};
    const char *v[] = {"a", "b"};
    assert_null(of_config_from_pairs(table, k, v, 2, err, sizeof(err)));
    assert_non_null(strstr(err, "given twice"));
}

/* ---- from YAML ---- */

static of_ydoc *parse(const char *text, of_diag *d)
{
    of_diag_init(d);
    of_ydoc *doc = of_ydoc_load_buffer("cfg.yaml", text, strlen(text), d);
    assert_non_null(doc);
    assert_int_equal(d->errors, 0);
    return doc;
}

static const of_diag_entry *find_diag(const of_diag *d, const char *needle)
{
    for (size_t i = 0; i < d->count; i++)
        if (strstr(d->entries[i].message, needle))
            return &d->entries[i];
    return NULL;
}

static void expect_diag(const of_diag *d, const char *needle, int line, int column)
{
    const of_diag_entry *e = find_diag(d, needle);
    if (!e) {
        for (size_t i = 0; i < d->count; i++)
            fprintf(stderr, "  diag %d:%d %s\n", d->entries[i].line, d->entries[i].column,
                    d->entries[i].message);
        fail_msg("no diagnostic containing '%s'", needle);
    }
    if (line >= 0 && (e->line != line || e->column != column))
        fail_msg("'%s' at %d:%d, expected %d:%d", e->message, e->line, e->column, line, column);
}

static void test_yaml_valid(void **state)
{
    (void)state;
    of_diag d;
    of_ydoc *doc = parse("url: http://x\n"
                         "timeout: 250ms\n"
                         "retries: \"4\"\n"
                         "tags: [a, b]\n"
                         "ratio: 1e-1\n"
                         "verbose: on\n",
                         &d);
    of_config *c = of_config_from_yaml(table, doc->root, "cfg.yaml", "stage 's' config", &d);
    assert_non_null(c);
    assert_int_equal(d.errors, 0);
    assert_int_equal(of_config_find(c, "timeout")->i, 250);
    assert_int_equal(of_config_find(c, "retries")->i, 4);
    assert_int_equal(of_config_find(c, "tags")->list_count, 2);
    assert_string_equal(of_config_find(c, "tags")->list[1], "b");
    assert_true(of_config_find(c, "ratio")->d == 0.1);
    assert_int_equal(of_config_find(c, "verbose")->i, 1);
    of_config_free(c);
    of_ydoc_free(doc);
    of_diag_free(&d);
}

static void test_yaml_errors_with_positions(void **state)
{
    (void)state;
    of_diag d;
    of_ydoc *doc = parse("timout: 1s\n"          /* 1: unknown, did you mean */
                         "retries: [1]\n"        /* 2: wrong kind */
                         "mode: Fast\n"          /* 3: bad enum */
                         "tags: {a: 1}\n"        /* 4: list given a mapping */
                         "buffer: lots\n"        /* 5: bad size */
                         "password: [hunter2]\n" /* 6: wrong kind (secret) */
                         "pin: 99999\n"          /* 7: secret out of bounds */
                         "ratio:\n",             /* 8: null */
                         &d);
    of_config *c =
        of_config_from_yaml_at(table, doc->root, "cfg.yaml", 20, 3, "stage 's' config", &d);
    assert_null(c);
    expect_diag(&d, "stage 's' config: unknown option 'timout' (did you mean 'timeout'?)", 1, 1);
    expect_diag(&d, "option 'retries' expects a scalar (int, 0..10); got a sequence", 2, 10);
    expect_diag(&d, "got 'Fast' (did you mean 'fast'?)", 3, 7);
    expect_diag(&d, "option 'tags' expects a list", 4, 7);
    expect_diag(&d, "expected a size", 5, 9);
    expect_diag(&d, "option 'password' expects a scalar (string)", 6, 11);
    expect_diag(&d, "option 'pin': must be at most 9999; got <secret>", 7, 6);
    expect_diag(&d, "option 'ratio' has no value", 8, 7);
    /* required missing: at the config mapping */
    expect_diag(&d, "missing required option 'url'", 1, 1);
    assert_int_equal(d.errors, 9);
    for (size_t i = 0; i < d.count; i++)
        assert_null(strstr(d.entries[i].message, "99999"));
    of_ydoc_free(doc);
    of_diag_free(&d);
}

static void test_yaml_not_mapping_and_null(void **state)
{
    (void)state;
    of_diag d;
    of_ydoc *doc = parse("- a\n- b\n", &d);
    assert_null(of_config_from_yaml(table, doc->root, "cfg.yaml", "x", &d));
    expect_diag(&d, "expected a mapping", 1, 1);
    of_ydoc_free(doc);
    of_diag_free(&d);

    /* No config at all: required missing reported at the given position. */
    of_diag_init(&d);
    assert_null(of_config_from_yaml_at(table, NULL, "p.yaml", 7, 5, "stage 's' config", &d));
    expect_diag(&d, "missing required option 'url'", 7, 5);
    of_diag_free(&d);

    /* A table without required options accepts NULL / null. */
    of_diag_init(&d);
    of_config *c = of_config_from_yaml(table + 1, NULL, "p.yaml", "x", &d);
    assert_non_null(c);
    assert_int_equal(of_config_find(c, "retries")->i, 3);
    of_config_free(c);
    doc = parse("~\n", &d);
    c = of_config_from_yaml(table + 1, doc->root, "p.yaml", "x", &d);
    assert_non_null(c);
    of_config_free(c);
    of_ydoc_free(doc);
    of_diag_free(&d);
}

static void test_yaml_list_forms(void **state)
{
    (void)state;
    of_diag d;
    of_ydoc *doc = parse("url: u\ntags: \"x, y\"\n", &d);
    of_config *c = of_config_from_yaml(table, doc->root, "c", "x", &d);
    assert_non_null(c);
    assert_int_equal(of_config_find(c, "tags")->list_count, 2);
    assert_string_equal(of_config_find(c, "tags")->list[1], "y");
    of_config_free(c);
    of_ydoc_free(doc);
    of_diag_free(&d);

    doc = parse("url: u\ntags:\n  - a\n  - {b: 1}\n", &d);
    assert_null(of_config_from_yaml(table, doc->root, "c", "x", &d));
    expect_diag(&d, "list items must be strings; got a mapping", 4, 5);
    of_ydoc_free(doc);
    of_diag_free(&d);
}

static void test_no_options_plugin(void **state)
{
    (void)state;
    of_diag d;
    of_ydoc *doc = parse("a: 1\n", &d);
    assert_null(of_config_from_yaml(NULL, doc->root, "c", "x", &d));
    expect_diag(&d, "takes no options", 1, 1);
    of_ydoc_free(doc);
    of_diag_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_ok),
        cmocka_unit_test(test_int_bad),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_double),
        cmocka_unit_test(test_duration_ok),
        cmocka_unit_test(test_duration_bad),
        cmocka_unit_test(test_size_ok),
        cmocka_unit_test(test_size_bad),
        cmocka_unit_test(test_levenshtein),
        cmocka_unit_test(test_type_names_and_describe),
        cmocka_unit_test(test_table_ok),
        cmocka_unit_test(test_table_bad),
        cmocka_unit_test(test_pairs_defaults),
        cmocka_unit_test(test_pairs_values),
        cmocka_unit_test(test_pairs_errors_all_reported),
        cmocka_unit_test(test_pairs_bounds_min),
        cmocka_unit_test(test_pairs_secret_hidden),
        cmocka_unit_test(test_pairs_duplicate),
        cmocka_unit_test(test_yaml_valid),
        cmocka_unit_test(test_yaml_errors_with_positions),
        cmocka_unit_test(test_yaml_not_mapping_and_null),
        cmocka_unit_test(test_yaml_list_forms),
        cmocka_unit_test(test_no_options_plugin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
