/* The gateway over TLS: Debian's civetweb 1.15 reaches OpenSSL 3 through orderflow's shims
 * (host/tlsshim/), the fixture certificate is served on 127.0.0.1 and verified by curl against
 * it, and a plain-HTTP request to the TLS port gets no HTTP answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* The shared helpers include some this file does not need. */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "test_gateway_client.h"
#include "test_gateway_env.h"

#define FIXTURES OF_SOURCE_DIR "/tests/fixtures/http"

static gw_env E; /* one TLS gateway for the group */

static int group_setup(void **state)
{
    (void)state;
    env_prepare(&E, ROUTES_YAML);
    of_http_config cfg;
    test_config(&cfg);
    cfg.tls_cert = strdup(FIXTURES "/cert.pem");
    cfg.tls_key = strdup(FIXTURES "/key.pem");
    char err[2048];
    int rc = env_start_with(&E, &cfg, err, sizeof(err));
    of_http_config_free(&cfg);
    if (rc != 0)
        fail_msg("TLS gateway start: %s", err);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    env_free(&E);
    return 0;
}

/* GET https://127.0.0.1:PORT<path> with curl, verifying the server against the fixture
 * certificate (its subjectAltName has IP:127.0.0.1). The body goes into body (NUL-terminated);
 * returns the HTTP status curl saw (0: no response). */
static int curl_get(const char *path, char *body, size_t size)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "curl -sS --max-time 10 --cacert '%s/cert.pem' -w '\\n%%{http_code}' "
             "'https://127.0.0.1:%d%s' 2>&1",
             FIXTURES, E.port, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(body, 1, size - 1, p);
    body[n] = '\0';
    int st = pclose(p);
    if (st != 0)
        fail_msg("curl failed (%d): %s", st, body);
    char *nl = strrchr(body, '\n');
    assert_non_null(nl);
    *nl = '\0';
    return atoi(nl + 1);
}

static void test_tls_healthz(void **state)
{
    (void)state;
    char body[4096];
    assert_int_equal(curl_get("/healthz", body, sizeof(body)), 200);
    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    if (!j)
        fail_msg("not JSON: %s", body);
    assert_string_equal(jstr(j, "status"), "ok");
    json_decref(j);
}

/* A route to a stage handler, over TLS, twice in a row (new TLS handshakes each time). */
static void test_tls_route(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        char body[8192];
        assert_int_equal(curl_get("/api/v1/echo/tls-42", body, sizeof(body)), 200);
        assert_non_null(strstr(body, "tls-42"));
    }
}

/* Plain HTTP to the TLS port: the handshake fails, the connection closes, no HTTP response. */
static void test_tls_port_refuses_plain_http(void **state)
{
    (void)state;
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    http_conn c;
    assert_int_equal(conn_open(&c, E.port), 0);
    (void)conn_send(&c, req, sizeof(req) - 1);
    http_resp r;
    conn_read(&c, &r, 5000);
    assert_int_equal(r.status, 0);
    assert_true(r.closed);
    assert_true(c.len == 0 || !memmem(c.buf, c.len, "HTTP/", 5));
    resp_free(&r);
    conn_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_healthz),
        cmocka_unit_test(test_tls_route),
        cmocka_unit_test(test_tls_port_refuses_plain_http),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
