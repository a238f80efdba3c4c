/* The `http:` section of the host configuration: defaults, every key, and every problem at its
 * line:column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway.h"
#include "yamltree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE_CONFIG OF_SOURCE_DIR "/tests/fixtures/http/orderflow.yaml"

typedef struct parsed {
    of_diag diag;
    of_ydoc *doc;
    of_http_config cfg;
} parsed;

/* Parses `text` as a host configuration named `file` and its http: section. */
static void parse(parsed *p, const char *file, const char *text)
{
    of_diag_init(&p->diag);
    p->doc = of_ydoc_load_buffer(file, text, strlen(text), &p->diag);
    assert_non_null(p->doc);
    const of_ynode *node = p->doc->root ? of_ymap_get(p->doc->root, "http") : NULL;
    of_http_config_parse(&p->cfg, node, file, &p->diag);
}

static void parsed_free(parsed *p)
{
    of_http_config_free(&p->cfg);
    of_ydoc_free(p->doc);
    of_diag_free(&p->diag);
}

/* An error at line:column whose message holds `text`. */
static void expect_error(parsed *p, int line, int column, const char *text)
{
    for (size_t i = 0; i < p->diag.count; i++) {
        const of_diag_entry *e = &p->diag.entries[i];
        if (e->severity == OF_SEV_ERROR && e->line == line && e->column == column &&
            strstr(e->message, text))
            return;
    }
    fprintf(stderr, "expected an error at %d:%d containing '%s'; got:\n", line, column, text);
    of_diag_print(&p->diag, stderr);
    fail();
}

/* Exactly one error, at line:column, containing text. */
static void expect_only_error(const char *yaml, int line, int column, const char *text)
{
    parsed p;
    parse(&p, "orderflow.yaml", yaml);
    expect_error(&p, line, column, text);
    if (p.diag.errors != 1) {
        of_diag_print(&p.diag, stderr);
        fail_msg("expected exactly one error for:\n%s", yaml);
    }
    parsed_free(&p);
}

static void test_no_section_is_disabled_with_defaults(void **state)
{
    (void)state;
    parsed p;
    parse(&p, "orderflow.yaml", "log: {level: info}\n");
    assert_int_equal(p.diag.errors, 0);
    assert_int_equal(p.cfg.enabled, 0);
    assert_string_equal(p.cfg.listen, "127.0.0.1:8080");
    assert_int_equal(p.cfg.threads, 16);
    assert_int_equal(p.cfg.max_body, 1024 * 1024);
    assert_int_equal(p.cfg.request_timeout_ms, 10000);
    assert_int_equal(p.cfg.keep_alive, 1);
    assert_int_equal(of_gateway_ws_limit(&p.cfg), 8); /* half the threads */
    assert_null(p.cfg.tls_cert);
    assert_int_equal(p.cfg.has_rate_limit, 0);
    parsed_free(&p);
}

static void test_empty_section_enables_defaults(void **state)
{
    (void)state;
    parsed p;
    parse(&p, "orderflow.yaml", "http:\n");
    assert_int_equal(p.diag.errors, 0);
    assert_int_equal(p.cfg.enabled, 1);
    assert_string_equal(p.cfg.listen, OF_HTTP_DEFAULT_LISTEN);
    assert_int_equal(p.cfg.threads, OF_HTTP_DEFAULT_THREADS);
    parsed_free(&p);
}

static void test_every_key(void **state)
{
    (void)state;
    parsed p;
    parse(&p, FIXTURE_CONFIG,
          "http:\n"
          "  listen: 0.0.0.0:9090\n"
          "  threads: 32\n"
          "  max_body: 2MiB\n"
          "  request_timeout: 1500ms\n"
          "  keep_alive: false\n"
          "  tls:\n"
          "    cert: cert.pem\n"
          "    key: key.pem\n"
          "  rate_limit:\n"
          "    per_principal: 600/m\n"
          "    per_address: 50/s\n"
          "    burst: 20\n");
    of_diag_print(&p.diag, stderr);
    assert_int_equal(p.diag.errors, 0);
    assert_int_equal(p.cfg.enabled, 1);
    assert_string_equal(p.cfg.listen, "0.0.0.0:9090");
    assert_int_equal(p.cfg.listen_line, 2);
    assert_int_equal(p.cfg.listen_column, 11);
    assert_int_equal(p.cfg.threads, 32);
    assert_int_equal(p.cfg.max_body, 2 * 1024 * 1024);
    assert_int_equal(p.cfg.request_timeout_ms, 1500);
    assert_int_equal(p.cfg.keep_alive, 0);
    /* relative to the configuration file's folder */
    assert_string_equal(p.cfg.tls_cert, OF_SOURCE_DIR "/tests/fixtures/http/cert.pem");
    assert_string_equal(p.cfg.tls_key, OF_SOURCE_DIR "/tests/fixtures/http/key.pem");
    assert_int_equal(p.cfg.has_rate_limit, 1);
    assert_true(p.cfg.rate_limit.per_principal > 9.99 && p.cfg.rate_limit.per_principal < 10.01);
    assert_true(p.cfg.rate_limit.per_address > 49.99 && p.cfg.rate_limit.per_address < 50.01);
    assert_int_equal(p.cfg.rate_limit.burst, 20);

    of_http_config copy;
    assert_int_equal(of_http_config_copy(&copy, &p.cfg), 0);
    assert_string_equal(copy.tls_key, p.cfg.tls_key);
    assert_ptr_not_equal(copy.tls_key, p.cfg.tls_key);
    of_http_config_free(&copy);
    parsed_free(&p);
}

static void test_listen_forms(void **state)
{
    (void)state;
    const char *good[] = {"127.0.0.1:8080", "0.0.0.0:1", "[::1]:8080", "[::]:443", "127.0.0.1:0"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char yaml[128];
        snprintf(yaml, sizeof(yaml), "http:\n  listen: \"%s\"\n", good[i]);
        parsed p;
        parse(&p, "orderflow.yaml", yaml);
        if (p.diag.errors)
            of_diag_print(&p.diag, stderr);
        assert_int_equal(p.diag.errors, 0);
        assert_string_equal(p.cfg.listen, good[i]);
        parsed_free(&p);
    }
    expect_only_error("http:\n  listen: localhost:8080\n", 2, 11, "not an IPv4 address");
    expect_only_error("http:\n  listen: 127.0.0.1\n", 2, 11, "has no port");
    expect_only_error("http:\n  listen: \"[::1:8080\"\n", 2, 11, "unclosed '['");
    expect_only_error("http:\n  listen: \"[::zz]:8080\"\n", 2, 11, "invalid IPv6 address");
    expect_only_error("http:\n  listen: \"::1:8080\"\n", 2, 11, "without brackets");
    expect_only_error("http:\n  listen: 127.0.0.1:70000\n", 2, 11, "invalid port '70000'");
    expect_only_error("http:\n  listen: 127.0.0.1:-1\n", 2, 11, "invalid port");
    expect_only_error("http:\n  listen: [a, b]\n", 2, 11, "must be an address");
}

static void test_number_errors(void **state)
{
    (void)state;
    expect_only_error("http:\n  threads: 0\n", 2, 12, "must be 1..256; got 0");
    expect_only_error("http:\n  threads: 257\n", 2, 12, "must be 1..256; got 257");
    expect_only_error("http:\n  threads: many\n", 2, 12, "http 'threads'");
    expect_only_error("http:\n  max_body: 65MiB\n", 2, 13, "between 1 byte and 64MiB");
    expect_only_error("http:\n  max_body: lots\n", 2, 13, "http 'max_body'");
    expect_only_error("http:\n  max_body: 0\n", 2, 13, "between 1 byte and 64MiB");
    expect_only_error("http:\n  request_timeout: 10\n", 2, 20, "http 'request_timeout'");
    expect_only_error("http:\n  request_timeout: 20m\n", 2, 20, "between 100ms and 10m");
    expect_only_error("http:\n  request_timeout: 50ms\n", 2, 20, "between 100ms and 10m");
    expect_only_error("http:\n  keep_alive: maybe\n", 2, 15, "http 'keep_alive'");
    expect_only_error("http:\n  websocket_connections: -1\n", 2, 26, "must be 0..255");
    expect_only_error("http:\n  websocket_connections: lots\n", 2, 26,
                      "http 'websocket_connections'");
    expect_only_error("http:\n  threads: 4\n  websocket_connections: 4\n", 3, 26,
                      "must be below 'threads' (4)");
}

static void test_tls_errors(void **state)
{
    (void)state;
    expect_only_error("http:\n  tls:\n    cert: /etc/hostname\n", 3, 5, "'key' is missing");
    expect_only_error("http:\n  tls:\n    key: /etc/hostname\n", 3, 5, "'cert' is missing");
    expect_only_error("http:\n  tls:\n    cert: /nonexistent/cert.pem\n    key: /etc/hostname\n", 3,
                      11, "cannot be read");
    expect_only_error("http:\n  tls: yes\n", 2, 8, "must be a mapping");
    expect_only_error("http:\n  tls:\n    cert: /etc/hostname\n    key: /etc/hostname\n"
                      "    chain: x\n",
                      5, 5, "unknown key 'chain' in http.tls");
}

static void test_rate_limit_errors(void **state)
{
    (void)state;
    expect_only_error("http:\n  rate_limit:\n    per_address: 100\n", 3, 18, "such as 100/s");
    expect_only_error("http:\n  rate_limit:\n    per_address: 0/s\n", 3, 18, "more than 0");
    expect_only_error("http:\n  rate_limit:\n    per_address: /s\n", 3, 18, "no number");
    expect_only_error("http:\n  rate_limit:\n    per_address: 10/d\n", 3, 18, "such as 100/s");
    expect_only_error("http:\n  rate_limit:\n    per_address: 10/s\n    burst: 0\n", 4, 12,
                      "must be 1..1000000; got 0");
    expect_only_error("http:\n  rate_limit:\n    burst: 5\n", 3, 5, "needs 'per_principal'");
    expect_only_error("http:\n  rate_limit:\n    per_adress: 5/s\n    per_principal: 1/s\n", 3, 5,
                      "did you mean 'per_address'");
    parsed p;
    parse(&p, "orderflow.yaml", "http:\n  rate_limit:\n    per_principal: 30/m\n");
    assert_int_equal(p.diag.errors, 0);
    assert_int_equal(p.cfg.has_rate_limit, 1);
    assert_true(p.cfg.rate_limit.per_principal > 0.49 && p.cfg.rate_limit.per_principal < 0.51);
    assert_true(p.cfg.rate_limit.per_address == 0);
    assert_int_equal(p.cfg.rate_limit.burst, 0); /* the gateway's default */
    parsed_free(&p);
}

static void test_section_errors(void **state)
{
    (void)state;
    expect_only_error("http: [1, 2]\n", 1, 7, "'http' must be a mapping");
    expect_only_error("http:\n  listn: 127.0.0.1:80\n", 2, 3, "did you mean 'listen'");
    /* Every problem at once. */
    parsed p;
    parse(&p, "orderflow.yaml",
          "http:\n  listen: nowhere\n  threads: 0\n  max_body: 1TB\n  keep_alive: 3\n");
    assert_int_equal(p.diag.errors, 4);
    expect_error(&p, 2, 11, "listen");
    expect_error(&p, 3, 12, "threads");
    expect_error(&p, 4, 13, "max_body");
    expect_error(&p, 5, 15, "keep_alive");
    parsed_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_section_is_disabled_with_defaults),
        cmocka_unit_test(test_empty_section_enables_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_number_errors),
        cmocka_unit_test(test_tls_errors),
        cmocka_unit_test(test_rate_limit_errors),
        cmocka_unit_test(test_section_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
