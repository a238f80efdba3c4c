/* The YAML tree: positions, limits against hostile input, duplicate keys, interpolation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "yamltree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static of_diag d;

static int setup(void **state)
{
    (void)state;
    of_diag_init(&d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    of_diag_free(&d);
    return 0;
}

static of_ydoc *load(const char *text)
{
    return of_ydoc_load_buffer("t.yaml", text, strlen(text), &d);
}

static void expect_diag(const char *needle, int line, int column)
{
    for (size_t i = 0; i < d.count; i++) {
        if (strstr(d.entries[i].message, needle)) {
            if ((line >= 0 && d.entries[i].line != line) ||
                (column >= 0 && d.entries[i].column != column))
                fail_msg("'%s' at %d:%d, expected %d:%d", d.entries[i].message, d.entries[i].line,
                         d.entries[i].column, line, column);
            return;
        }
    }
    for (size_t i = 0; i < d.count; i++)
        fprintf(stderr, "  diag %d:%d %s\n", d.entries[i].line, d.entries[i].column,
                d.entries[i].message);
    fail_msg("no diagnostic containing '%s'", needle);
}

static void test_positions_and_kinds(void **state)
{
    (void)state;
    of_ydoc *doc = load("name: demo\n"
                        "list:\n"
                        "  - one\n"
                        "  - 'two'\n"
                        "map: {a: 1, b: ~}\n"
                        "block: |\n"
                        "  text\n"
                        "empty:\n");
    assert_non_null(doc);
    assert_int_equal(d.errors, 0);
    assert_string_equal(doc->file, "t.yaml");
    of_ynode *r = doc->root;
    assert_int_equal(r->kind, OF_Y_MAP);
    assert_int_equal(r->n_pairs, 5);
    assert_int_equal(r->line, 1);
    assert_int_equal(r->column, 1);
    of_ynode *name = of_ymap_get(r, "name");
    assert_string_equal(name->str, "demo");
    assert_int_equal(name->line, 1);
    assert_int_equal(name->column, 7);
    assert_int_equal(name->quoted, 0);
    assert_int_equal(r->pairs[1].key->line, 2);
    of_ynode *list = of_ymap_get(r, "list");
    assert_int_equal(list->kind, OF_Y_SEQ);
    assert_int_equal(list->n_items, 2);
    assert_int_equal(list->items[1]->line, 4);
    assert_int_equal(list->items[1]->column, 5);
    assert_int_equal(list->items[1]->quoted, 1);
    of_ynode *map = of_ymap_get(r, "map");
    assert_int_equal(map->kind, OF_Y_MAP);
    assert_int_equal(map->column, 6);
    assert_int_equal(of_ymap_get(map, "b")->is_null, 1);
    assert_int_equal(of_ymap_get(map, "a")->is_null, 0);
    of_ynode *block = of_ymap_get(r, "block");
    assert_string_equal(block->str, "text\n");
    assert_int_equal(block->quoted, 1);
    of_ynode *empty = of_ymap_get(r, "empty");
    assert_int_equal(empty->is_null, 1);
    assert_null(of_ymap_get(r, "absent"));
    assert_null(of_ymap_get(list, "x"));
    assert_string_equal(of_ykind_name(OF_Y_SEQ), "sequence");
    of_ydoc_free(doc);
}

static void test_null_forms(void **state)
{
    (void)state;
    of_ydoc *doc = load("[~, null, Null, NULL, '', \"null\", nul, !!str null]");
    assert_non_null(doc);
    of_ynode *s = doc->root;
    assert_int_equal(s->n_items, 8);
    int want[] = {1, 1, 1, 1, 0, 0, 0, 0};
    for (int i = 0; i < 8; i++)
        assert_int_equal(s->items[i]->is_null, want[i]);
    assert_int_equal(s->items[4]->quoted, 1);
    assert_int_equal(s->items[7]->quoted, 1);
    of_ydoc_free(doc);
}

static void test_empty_document(void **state)
{
    (void)state;
    of_ydoc *doc = load("");
    assert_non_null(doc);
    assert_null(doc->root);
    of_ydoc_free(doc);
    doc = load("# only a comment\n");
    assert_non_null(doc);
    assert_null(doc->root);
    of_ydoc_free(doc);
    doc = load("---\n");
    assert_non_null(doc);
    assert_null(doc->root);
    of_ydoc_free(doc);
    assert_int_equal(d.errors, 0);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    of_ydoc *doc = load("a: 1\n"
                        "b: 2\n"
                        "a: 3\n"
                        "nested:\n"
                        "  x: 1\n"
                        "  x: 2\n");
    assert_non_null(doc);
    assert_int_equal(d.errors, 2);
    expect_diag("duplicate key 'a' (first defined at line 1)", 3, 1);
    expect_diag("duplicate key 'x' (first defined at line 5)", 6, 3);
    /* the first one is kept */
    assert_string_equal(of_ymap_get(doc->root, "a")->str, "1");
    assert_int_equal(doc->root->n_pairs, 3);
    of_ydoc_free(doc);
}

static void test_non_scalar_key(void **state)
{
    (void)state;
    of_ydoc *doc = load("? [a, b]\n: 1\nc: 2\n");
    assert_non_null(doc);
    expect_diag("a mapping key must be a scalar; got a sequence", 1, 3);
    assert_int_equal(doc->root->n_pairs, 1);
    assert_string_equal(of_ymap_get(doc->root, "c")->str, "2");
    of_ydoc_free(doc);
}

static void test_syntax_error_position(void **state)
{
    (void)state;
    of_ydoc *doc = load("a: 1\nb: [1, 2\nc: 3\n");
    assert_null(doc);
    assert_true(d.errors >= 1);
    assert_non_null(strstr(d.entries[0].message, "YAML syntax error"));
    assert_int_equal(d.entries[0].line, 3);
    of_diag_free(&d);

    doc = load("a: 1\n  b: 2\n");
    assert_null(doc);
    expect_diag("YAML syntax error: mapping values are not allowed", 2, 4);
    of_diag_free(&d);

    doc = load("a:\n\t- b\n");
    assert_null(doc);
    expect_diag("YAML syntax error", 2, -1);
}

static void test_second_document(void **state)
{
    (void)state;
    of_ydoc *doc = load("a: 1\n---\nb: 2\n");
    assert_null(doc);
    expect_diag("a second YAML document", 2, 1);
}

static void test_billion_laughs(void **state)
{
    (void)state;
    const char *bomb =
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
        "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
        "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    of_ydoc *doc = load(bomb);
    assert_null(doc);
    expect_diag("nodes", -1, -1);
    expect_diag("alias '*", -1, -1);
}

static void test_big_scalar_aliases(void **state)
{
    (void)state;
    /* A 1 MB scalar aliased 100 times: few nodes, but too many bytes. */
    size_t n = 1024 * 1024;
    size_t cap = n + 4096;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t pos = (size_t)snprintf(buf, cap, "a: &x ");
    memset(buf + pos, 'y', n);
    pos += n;
    pos += (size_t)snprintf(buf + pos, cap - pos, "\nb: [");
    for (int i = 0; i < 100; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "*x,");
    pos += (size_t)snprintf(buf + pos, cap - pos, "*x]\n");
    of_ydoc *doc = of_ydoc_load_buffer("t.yaml", buf, pos, &d);
    free(buf);
    assert_null(doc);
    expect_diag("bytes", -1, -1);
}

static void test_alias_ok(void **state)
{
    (void)state;
    of_ydoc *doc = load("base: &b {x: 1, y: [2, 3]}\ncopy: *b\n");
    assert_non_null(doc);
    of_ynode *copy = of_ymap_get(doc->root, "copy");
    assert_int_equal(copy->kind, OF_Y_MAP);
    assert_int_equal(copy->line, 2);
    assert_int_equal(copy->column, 7);
    assert_string_equal(of_ymap_get(copy, "y")->items[1]->str, "3");
    assert_true(copy != of_ymap_get(doc->root, "base"));
    of_ydoc_free(doc);
}

static void test_unknown_alias(void **state)
{
    (void)state;
    of_ydoc *doc = load("a: *nope\n");
    if (doc) {
        expect_diag("unknown alias '*nope'", 1, 4);
        of_ydoc_free(doc);
    } else {
        /* libyaml may refuse it itself; either way it is an error with a position. */
        assert_true(d.errors > 0);
        assert_true(d.entries[0].line > 0);
    }
}

static void test_depth_bomb(void **state)
{
    (void)state;
    char buf[4096];
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        buf[n++] = '[';
    for (int i = 0; i < 200; i++)
        buf[n++] = ']';
    of_ydoc *doc = of_ydoc_load_buffer("t.yaml", buf, n, &d);
    assert_null(doc);
    expect_diag("nesting deeper than 64 levels", 1, 65);

    /* 64 levels is fine. */
    of_diag_free(&d);
    n = 0;
    for (int i = 0; i < 64; i++)
        buf[n++] = '[';
    for (int i = 0; i < 64; i++)
        buf[n++] = ']';
    doc = of_ydoc_load_buffer("t.yaml", buf, n, &d);
    assert_non_null(doc);
    of_ydoc_free(doc);

    /* Depth reached through an alias. */
    of_diag_free(&d);
    n = (size_t)snprintf(buf, sizeof(buf), "a: &deep ");
    for (int i = 0; i < 40; i++)
        buf[n++] = '[';
    for (int i = 0; i < 40; i++)
        buf[n++] = ']';
    n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                          "\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[[[*deep]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n");
    doc = of_ydoc_load_buffer("t.yaml", buf, n, &d);
    assert_null(doc);
    expect_diag("nests deeper", -1, -1);
}

static void test_too_many_nodes(void **state)
{
    (void)state;
    size_t count = OF_YAML_MAX_NODES + 10, cap = count * 3 + 16;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n = 0;
    buf[n++] = '[';
    for (size_t i = 0; i < count; i++) {
        buf[n++] = '1';
        buf[n++] = ',';
    }
    buf[n++] = '1';
    buf[n++] = ']';
    of_ydoc *doc = of_ydoc_load_buffer("t.yaml", buf, n, &d);
    free(buf);
    assert_null(doc);
    expect_diag("more than 200000 nodes", -1, -1);
}

static void test_oversized_file(void **state)
{
    (void)state;
    char path[] = "/tmp/of_yamltree_big_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    char line[64];
    memset(line, 'x', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\n';
    fputs("# ", f);
    for (size_t i = 0; i < OF_YAML_MAX_BYTES / sizeof(line) + 2; i++)
        fwrite(line, 1, sizeof(line), f);
    fclose(f);
    of_ydoc *doc = of_ydoc_load_file(path, &d);
    unlink(path);
    assert_null(doc);
    expect_diag("larger than the limit", 0, 0);

    of_diag_free(&d);
    doc = of_ydoc_load_buffer("b", "x", (size_t)OF_YAML_MAX_BYTES + 1, &d);
    assert_null(doc);
    expect_diag("the limit is", 0, 0);
}

static void test_nul_and_utf8(void **state)
{
    (void)state;
    static const char nul[] = "a: 1\nb: x\0y\n";
    of_ydoc *doc = of_ydoc_load_buffer("t.yaml", nul, sizeof(nul) - 1, &d);
    assert_null(doc);
    expect_diag("NUL byte", 2, 5);
    of_diag_free(&d);

    static const char bad[] = "a: 1\nb: caf\xe9\n";
    doc = of_ydoc_load_buffer("t.yaml", bad, sizeof(bad) - 1, &d);
    assert_null(doc);
    expect_diag("not valid UTF-8", 2, 7);
    of_diag_free(&d);

    static const char good[] = "b: caf\xc3\xa9\n";
    doc = of_ydoc_load_buffer("t.yaml", good, sizeof(good) - 1, &d);
    assert_non_null(doc);
    assert_string_equal(of_ymap_get(doc->root, "b")->str, "caf\xc3\xa9");
    of_ydoc_free(doc);

    /* NUL via an escape inside a double-quoted scalar */
    doc = load("a: \"x\\0y\"\n");
    assert_non_null(doc);
    expect_diag("NUL character", 1, 4);
    of_ydoc_free(doc);
}

static void test_missing_file(void **state)
{
    (void)state;
    of_ydoc *doc = of_ydoc_load_file("/nonexistent/of.yaml", &d);
    assert_null(doc);
    expect_diag("cannot open", 0, 0);
}

static void test_interpolation(void **state)
{
    (void)state;
    setenv("OF_YT_HOST", "db.local", 1);
    unsetenv("OF_YT_UNSET");
    of_ydoc *doc = load("host: ${OF_YT_HOST}\n"
                        "${OF_YT_HOST}: key-not-expanded\n"
                        "port: ${OF_YT_PORT:-5432}\n"
                        "bad: abc ${OF_YT_UNSET}\n"
                        "quoted: \"x${OF_YT_UNSET}\"\n"
                        "list: [\"${OF_YT_HOST}\", $$x]\n");
    assert_non_null(doc); /* interpolation errors keep the document */
    of_ynode *r = doc->root;
    assert_string_equal(of_ymap_get(r, "host")->str, "db.local");
    assert_non_null(of_ymap_get(r, "${OF_YT_HOST}"));
    assert_string_equal(of_ymap_get(r, "port")->str, "5432");
    assert_string_equal(of_ymap_get(r, "list")->items[0]->str, "db.local");
    assert_string_equal(of_ymap_get(r, "list")->items[1]->str, "$x");
    assert_int_equal(d.errors, 2);
    expect_diag("environment variable OF_YT_UNSET is not set", 4, 10);
    expect_diag("OF_YT_UNSET", 4, 10);
    /* quoted: column of the scalar (9) + quote (1) + offset 1 */
    int found = 0;
    for (size_t i = 0; i < d.count; i++)
        if (d.entries[i].line == 5) {
            assert_int_equal(d.entries[i].column, 11);
            found = 1;
        }
    assert_true(found);
    of_ydoc_free(doc);
}

static void test_fixture_file(void **state)
{
    (void)state;
    of_ydoc *doc = of_ydoc_load_file(OF_SOURCE_DIR "/tests/fixtures/config/dupkeys.yaml", &d);
    assert_non_null(doc);
    expect_diag("duplicate key 'pipeline' (first defined at line 2)", 5, 1);
    of_ydoc_free(doc);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_positions_and_kinds), T(test_null_forms),
        T(test_empty_document),      T(test_duplicate_keys),
        T(test_non_scalar_key),      T(test_syntax_error_position),
        T(test_second_document),     T(test_billion_laughs),
        T(test_big_scalar_aliases),  T(test_alias_ok),
        T(test_unknown_alias),       T(test_depth_bomb),
        T(test_too_many_nodes),      T(test_oversized_file),
        T(test_nul_and_utf8),        T(test_missing_file),
        T(test_interpolation),       T(test_fixture_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
