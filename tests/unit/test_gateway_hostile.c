/* The gateway under hostile and awkward clients (it must answer or close, never crash, hang or
 * leak a connection; the sanitizers watch), keep-alive, concurrency, rate limits, and the invoke
 * hook the transactions plug into. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_gateway_client.h"
#include "test_gateway_env.h"

#include <pthread.h>

static gw_env E;

static int group_setup(void **state)
{
    (void)state;
    env_prepare(&E, ROUTES_YAML);
    env_start(&E);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    env_free(&E);
    return 0;
}

static void expect_alive(void)
{
    http_resp r;
    http_do(E.port, "GET", "/healthz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* Sends raw bytes; the server answers with a status in [lo, hi] or closes the connection, within
 * a few seconds. Returns the status (0 when it closed without one). */
static int send_hostile(const void *data, size_t len, int lo, int hi)
{
    http_conn c;
    assert_int_equal(conn_open(&c, E.port), 0);
    (void)conn_send(&c, data, len);
    http_resp r;
    conn_read(&c, &r, 4000);
    int status = r.status;
    if (getenv("GW_TEST_VERBOSE"))
        fprintf(stderr, "hostile %.40s... -> %d %s\n", (const char *)data, status,
                r.body ? r.body : "(closed)");
    if (status) {
        if (status < lo || status > hi)
            fail_msg("status %d not in %d..%d for %.60s:\n%s", status, lo, hi, (const char *)data,
                     r.body ? r.body : "");
        char ct[64];
        if (status >= 400) {
            assert_int_equal(resp_header(&r, "Content-Type", ct, sizeof(ct)), 0);
            assert_string_equal(ct, "application/problem+json");
            json_error_t err;
            json_t *j = json_loadb(r.body, r.body_len, 0, &err);
            assert_non_null(j);
            json_decref(j);
        }
    } else if (!r.closed) {
        fail_msg("no answer and no close for %.60s", (const char *)data);
    }
    resp_free(&r);
    conn_close(&c);
    return status;
}

static void test_malformed_requests(void **state)
{
    (void)state;
    const char *const cases[] = {
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET /healthz\r\n\r\n",
        "GET /healthz HTTP/9.9\r\nHost: t\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nNo colon header\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET http://evil.example/api/v1/echo/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET api/v1/echo/1 HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /api/v1/echo/1 HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
        "POST /api/v1/echo/1 HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        "POST /api/v1/echo/1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n",
        "POST /api/v1/echo/1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        "\r\n\r\n\r\n\r\n",
        "GET /api/v1/echo/1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer\r\n\r\n",
        "GET /api/v1/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \x01\x02\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        send_hostile(cases[i], strlen(cases[i]), 200, 505);
    /* NUL bytes in the request line, a header and the path. */
    const char nul1[] = "GET /heal\0thz HTTP/1.1\r\nHost: t\r\n\r\n";
    send_hostile(nul1, sizeof(nul1) - 1, 400, 505);
    const char nul2[] = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n";
    send_hostile(nul2, sizeof(nul2) - 1, 200, 505);
    const char nul3[] =
        "POST /api/v1/json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 5\r\nConnection: close\r\n\r\n{\0\0}\0";
    send_hostile(nul3, sizeof(nul3) - 1, 400, 400); /* the handler's malformed JSON */
    expect_alive();
}

static void test_huge_headers_and_many_headers(void **state)
{
    (void)state;
    size_t big = 100000;
    char *req = malloc(big + 200);
    int n = snprintf(req, 200, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(req + n, 'a', big);
    memcpy(req + n + big, "\r\n\r\n", 4);
    int st = send_hostile(req, (size_t)n + big + 4, 400, 431);
    assert_true(st == 0 || st >= 400);
    /* A huge request line. */
    n = snprintf(req, 200, "GET /api/v1/echo/");
    memset(req + n, 'b', big);
    memcpy(req + n + big, " HTTP/1.1\r\n\r\n", 13);
    st = send_hostile(req, (size_t)n + big + 13, 400, 431);
    assert_true(st == 0 || st >= 400);
    free(req);
    /* More headers than civetweb keeps (64): still answered. */
    char many[8192];
    size_t pos = (size_t)snprintf(many, sizeof(many), "GET /api/v1/echo/1 HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 100; i++)
        pos += (size_t)snprintf(many + pos, sizeof(many) - pos, "X-H%d: %d\r\n", i, i);
    pos += (size_t)snprintf(many + pos, sizeof(many) - pos, "Connection: close\r\n\r\n");
    send_hostile(many, pos, 200, 431);
    expect_alive();
}

static void test_random_bytes(void **state)
{
    (void)state;
    unsigned seed = 12345;
    char buf[600];
    for (int round = 0; round < 60; round++) {
        size_t len = 1 + (size_t)(rand_r(&seed) % (sizeof(buf) - 1));
        for (size_t i = 0; i < len; i++)
            buf[i] = (char)(rand_r(&seed) & 0xff);
        /* Half of them look like a request line first. */
        if (round % 2)
            memcpy(buf, "GET /api/v1/echo/", len > 17 ? 17 : len);
        if (len > 4)
            memcpy(buf + len - 4, "\r\n\r\n", 4);
        send_hostile(buf, len, 200, 505);
    }
    expect_alive();
}

static void test_slow_clients(void **state)
{
    (void)state;
    /* Slow headers (request_timeout 500ms): closed, not waited for forever. */
    int calls_before = atomic_load(&E.inst.calls);
    http_conn c;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(conn_open(&c, E.port), 0);
    assert_int_equal(conn_send(&c, "GET /healthz HTTP/1.1\r\nHo", 25), 0);
    http_resp r;
    conn_read(&c, &r, 5000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(r.status == 0 || r.status == 408 || r.status == 400);
    assert_true(r.status != 0 || r.closed);
    assert_true(t1.tv_sec - t0.tv_sec < 4);
    resp_free(&r);
    conn_close(&c);

    /* A body that stops arriving. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(conn_open(&c, E.port), 0);
    const char head[] = "POST /api/v1/echo/1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                        "\r\nContent-Length: 100\r\n\r\n{\"a\":";
    assert_int_equal(conn_send(&c, head, sizeof(head) - 1), 0);
    conn_read(&c, &r, 5000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(r.status == 408 || (r.status == 0 && r.closed));
    assert_true(t1.tv_sec - t0.tv_sec < 4);
    resp_free(&r);
    conn_close(&c);

    /* A body trickling in a byte at a time beyond the timeout: 408 or closed. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(conn_open(&c, E.port), 0);
    const char head2[] = "POST /api/v1/echo/1 HTTP/1.1\r\nHost: t\r\nContent-Type: "
                         "application/json\r\nContent-Length: 60\r\n\r\n";
    assert_int_equal(conn_send(&c, head2, sizeof(head2) - 1), 0);
    for (int i = 0; i < 12; i++) {
        struct timespec d = {0, 100 * 1000 * 1000};
        nanosleep(&d, NULL);
        if (conn_send(&c, " ", 1) < 0)
            break;
    }
    conn_read(&c, &r, 5000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(r.status == 408 || (r.status == 0 && r.closed));
    resp_free(&r);
    conn_close(&c);
    /* None of the cut bodies reached the handler. */
    assert_int_equal(atomic_load(&E.inst.calls), calls_before);

    /* Clients that go away mid-request. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(conn_open(&c, E.port), 0);
        (void)conn_send(&c, head, sizeof(head) - 1);
        conn_close(&c);
        assert_int_equal(conn_open(&c, E.port), 0);
        conn_close(&c);
    }
    expect_alive();
}

static void test_keep_alive(void **state)
{
    (void)state;
    http_conn c;
    assert_int_equal(conn_open(&c, E.port), 0);
    const char *const reqs[] = {
        "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /api/v1/echo/1?q=a HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /no/such/thing HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /api/v1/echo/2 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 7\r\n\r\n{\"x\":1}",
        "GET /api/v1/me HTTP/1.1\r\nHost: t\r\n\r\n",
        "DELETE /api/v1/things/1 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /api/v1/echo/after-204 HTTP/1.1\r\nHost: t\r\n\r\n",
    };
    const int want[] = {200, 200, 404, 200, 401, 204, 200};
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(conn_send(&c, reqs[i], strlen(reqs[i])), 0);
        http_resp r;
        conn_read(&c, &r, 3000);
        assert_int_equal(r.status, want[i]);
        assert_false(r.closed);
        char v[32];
        assert_int_equal(resp_header(&r, "Connection", v, sizeof(v)), 0);
        assert_string_equal(v, "keep-alive");
        if (want[i] == 204) {
            assert_int_equal(r.body_len, 0);
            assert_int_equal(resp_header(&r, "Content-Length", v, sizeof(v)), -1);
        }
        if (i == 6)
            assert_non_null(strstr(r.body, "after-204"));
        resp_free(&r);
    }
    /* Two pipelined requests in one write. */
    const char two[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /api/v1/echo/3 HTTP/1.1\r\n"
                       "Host: t\r\n\r\n";
    assert_int_equal(conn_send(&c, two, sizeof(two) - 1), 0);
    http_resp r;
    conn_read(&c, &r, 3000);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    conn_read(&c, &r, 3000);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(jstr(j, "id"), "3");
    json_decref(j);
    resp_free(&r);
    /* An answer given before the body was read ends the connection: the unread body must never
     * be taken for the next request (a request smuggled in a body). */
    const char smuggle[] = "GET /api/v1/me HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                           "\r\nContent-Length: 47\r\n\r\n"
                           "GET /api/v1/echo/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(strlen("GET /api/v1/echo/smuggled HTTP/1.1\r\nHost: t\r\n\r\n"), 47);
    assert_int_equal(conn_send(&c, smuggle, sizeof(smuggle) - 1), 0);
    conn_read(&c, &r, 3000);
    assert_int_equal(r.status, 401);
    assert_true(r.closed);
    resp_free(&r);
    conn_read(&c, &r, 2000);
    assert_int_equal(r.status, 0); /* no second answer */
    resp_free(&r);
    conn_close(&c);
    assert_int_equal(conn_open(&c, E.port), 0);
    /* A refused body ends the connection (its bytes are never read). */
    const char big[] = "POST /api/v1/echo/2 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                       "\r\nContent-Length: 999999\r\n\r\n{";
    assert_int_equal(conn_send(&c, big, sizeof(big) - 1), 0);
    conn_read(&c, &r, 3000);
    assert_int_equal(r.status, 413);
    assert_true(r.closed);
    resp_free(&r);
    assert_true(conn_wait_closed(&c, 3000));
    conn_close(&c);
    /* An idle keep-alive connection is closed by the server, freeing its thread. */
    assert_int_equal(conn_open(&c, E.port), 0);
    assert_int_equal(conn_send(&c, reqs[0], strlen(reqs[0])), 0);
    conn_read(&c, &r, 3000);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(conn_wait_closed(&c, 4000));
    conn_close(&c);
}

static void test_keep_alive_off(void **state)
{
    (void)state;
    gw_env e;
    env_prepare(&e, ROUTES_YAML);
    of_http_config cfg;
    test_config(&cfg);
    cfg.keep_alive = 0;
    char err[512];
    if (env_start_with(&e, &cfg, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    of_http_config_free(&cfg);
    http_conn c;
    assert_int_equal(conn_open(&c, e.port), 0);
    const char two[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\n"
                       "Host: t\r\n\r\n";
    assert_int_equal(conn_send(&c, two, sizeof(two) - 1), 0);
    http_resp r;
    conn_read(&c, &r, 3000);
    assert_int_equal(r.status, 200);
    assert_true(r.closed); /* Connection: close */
    resp_free(&r);
    conn_read(&c, &r, 3000);
    assert_int_equal(r.status, 0); /* the second request is not served on this connection */
    resp_free(&r);
    conn_close(&c);
    env_free(&e);
}

typedef struct worker_arg {
    int port;
    int ok;
    int id;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    for (int i = 0; i < 40; i++) {
        char target[64];
        snprintf(target, sizeof(target), "/api/v1/echo/w%d-%d", a->id, i);
        http_resp r;
        http_do(a->port, i % 2 ? "GET" : "POST", target,
                "Content-Type: application/json\r\nAuthorization: Bearer " TOKEN_USER "\r\n",
                i % 2 ? NULL : "{\"n\":1}", &r);
        char want[64];
        snprintf(want, sizeof(want), "\"id\":\"w%d-%d\"", a->id, i);
        if (r.status == 200 && r.body && strstr(r.body, want))
            a->ok++;
        resp_free(&r);
    }
    return NULL;
}

static void test_concurrent_clients(void **state)
{
    (void)state;
    int before = atomic_load(&E.inst.calls);
    pthread_t t[12];
    worker_arg a[12];
    for (int i = 0; i < 12; i++) {
        a[i] = (worker_arg){.port = E.port, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &a[i]), 0);
    }
    for (int i = 0; i < 12; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].ok, 40);
    }
    assert_int_equal(atomic_load(&E.inst.calls) - before, 12 * 40);
    /* The handler's emit worked each time (and the default hook dropped the events). */
    assert_true(atomic_load(&E.inst.emitted_ok) >= 12 * 40);
}

/* ---- rate limits
 * --------------------------------------------------------------------------------- */

static void test_rate_limits(void **state)
{
    (void)state;
    gw_env e;
    env_prepare(&e, ROUTES_YAML);
    of_http_config cfg;
    test_config(&cfg);
    cfg.has_rate_limit = 1;
    cfg.rate_limit.per_address = 0.5; /* one every 2 s */
    cfg.rate_limit.per_principal = 0.2;
    cfg.rate_limit.burst = 3;
    char err[1024];
    if (env_start_with(&e, &cfg, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    of_http_config_free(&cfg);
    http_resp r;
    for (int i = 0; i < 3; i++) {
        http_do(e.port, "GET", "/api/v1/echo/1", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    http_do(e.port, "GET", "/api/v1/echo/1", NULL, NULL, &r);
    json_t *j = expect_problem(&r, 429, "/api/v1/echo/1");
    assert_non_null(strstr(jstr(j, "detail"), "address"));
    json_decref(j);
    char v[16];
    assert_int_equal(resp_header(&r, "Retry-After", v, sizeof(v)), 0);
    assert_true(atoi(v) >= 1 && atoi(v) <= 2);
    resp_free(&r);
    /* Probes are never limited. */
    http_do(e.port, "GET", "/healthz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* The OpenAPI document lists 429 when limits are on. */
    http_do(e.port, "GET", "/api/openapi.json", NULL, NULL, &r);
    assert_non_null(strstr(r.body, "\"429\""));
    resp_free(&r);
    of_gateway_free(e.gw);
    e.gw = NULL;

    /* Per principal: by the token's subject. */
    test_config(&cfg);
    cfg.has_rate_limit = 1;
    cfg.rate_limit.per_principal = 0.2;
    cfg.rate_limit.burst = 2;
    if (env_start_with(&e, &cfg, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    of_http_config_free(&cfg);
    for (int i = 0; i < 2; i++) {
        http_do(e.port, "GET", "/api/v1/me", "Authorization: Bearer " TOKEN_USER "\r\n", NULL, &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    http_do(e.port, "GET", "/api/v1/me", "Authorization: Bearer " TOKEN_USER "\r\n", NULL, &r);
    j = expect_problem(&r, 429, "/api/v1/me");
    assert_non_null(strstr(jstr(j, "detail"), "principal"));
    json_decref(j);
    assert_int_equal(resp_header(&r, "Retry-After", v, sizeof(v)), 0);
    assert_true(atoi(v) >= 1 && atoi(v) <= 5);
    resp_free(&r);
    /* Another principal has its own bucket; unauthenticated routes are not limited by it. */
    http_do(e.port, "GET", "/api/v1/me", "Authorization: Bearer " TOKEN_ADMIN "\r\n", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 4; i++) {
        http_do(e.port, "GET", "/api/v1/echo/1", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    env_free(&e);
}

/* ---- the invoke hook
 * ----------------------------------------------------------------------------- */

typedef struct hook_state {
    _Atomic int calls;
    _Atomic int fail_commit;
    of_stage *last_stage;
} hook_state;

/* What the transaction hook does: runs the handler in a call, and when the "commit" fails,
 * replaces the handler's answer. */
static of_status tx_hook(void *opaque, of_stage *stage, of_http_handler fn, of_http_request *req)
{
    hook_state *h = opaque;
    atomic_fetch_add(&h->calls, 1);
    h->last_stage = stage;
    of_call call;
    of_call_init(&call, stage, NULL, 1);
    of_status s = fn(stage->instance, &call, req);
    of_call_reset(&call);
    if (s == OF_OK && atomic_load(&h->fail_commit)) {
        of_http_request_clear_response(req);
        of_api_http_problem(req, 503, NULL, "the database is unavailable");
        return OF_RETRY;
    }
    return s;
}

static void test_invoke_hook(void **state)
{
    (void)state;
    gw_env e;
    env_prepare(&e, ROUTES_YAML);
    of_http_config cfg;
    test_config(&cfg);
    hook_state h = {0};
    e.gw = of_gateway_new(&cfg, tx_hook, &h);
    of_http_config_free(&cfg);
    assert_int_equal(of_gateway_add_stage(e.gw, &e.st[0]), 0);
    assert_int_equal(of_gateway_add_stage(e.gw, &e.st[1]), 0);
    assert_int_equal(of_gateway_add_routes(e.gw, "shop", "shop.yaml", e.routes, e.n_routes), 0);
    char err[512];
    assert_int_equal(of_gateway_start(e.gw, err, sizeof(err)), 0);
    int port = of_gateway_port(e.gw);
    http_resp r;
    http_do(port, "GET", "/api/v1/echo/5", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(atomic_load(&h.calls), 1);
    assert_ptr_equal(h.last_stage, &e.st[0]);
    atomic_store(&h.fail_commit, 1);
    http_do(port, "GET", "/api/v1/echo/5", NULL, NULL, &r);
    json_t *j = expect_problem(&r, 503, "/api/v1/echo/5");
    assert_string_equal(jstr(j, "detail"), "the database is unavailable");
    json_decref(j);
    resp_free(&r);
    /* Built-in routes and refused requests never reach the hook. */
    http_do(port, "GET", "/healthz", NULL, NULL, &r);
    resp_free(&r);
    http_do(port, "GET", "/api/v1/me", NULL, NULL, &r);
    resp_free(&r);
    assert_int_equal(atomic_load(&h.calls), 2);
    /* Stop is idempotent; the port is gone after it. */
    of_gateway_stop(e.gw);
    of_gateway_stop(e.gw);
    assert_int_equal(of_gateway_port(e.gw), 0);
    http_conn c;
    int connected = conn_open(&c, port) == 0;
    if (connected)
        conn_close(&c);
    assert_false(connected);
    env_free(&e);
    of_gateway_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_huge_headers_and_many_headers),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_slow_clients),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_keep_alive_off),
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_rate_limits),
        cmocka_unit_test(test_invoke_hook),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
