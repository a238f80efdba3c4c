/* The gateway on a real socket: every status it answers, path parameters and percent-encoding,
 * the auth filter, roles, limits, the built-in routes, the OpenAPI document against the routes
 * it serves, and the start-time checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_gateway_client.h"
#include "test_gateway_env.h"

static gw_env E; /* one gateway for the group */

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

/* ---- built-in routes --------------------------------------------------------------------------
 */

static void test_healthz(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "GET", "/healthz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(jstr(j, "status"), "ok");
    json_decref(j);
    resp_free(&r);
    http_do(E.port, "POST", "/healthz", NULL, NULL, &r);
    json_t *p = expect_problem(&r, 405, "/healthz");
    char allow[64];
    assert_int_equal(resp_header(&r, "Allow", allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET, HEAD");
    json_decref(p);
    resp_free(&r);
}

static void test_readyz(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "GET", "/readyz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(jstr(j, "status"), "ready");
    assert_string_equal(jstr(json_object_get(json_object_get(j, "checks"), "kafka"), "status"),
                        "up");
    assert_string_equal(jstr(json_object_get(json_object_get(j, "checks"), "redis"), "status"),
                        "up");
    json_decref(j);
    resp_free(&r);

    atomic_store(&E.kafka_ready, 0);
    http_do(E.port, "GET", "/readyz", NULL, NULL, &r);
    atomic_store(&E.kafka_ready, 1);
    j = expect_problem(&r, 503, "/readyz");
    assert_non_null(strstr(jstr(j, "detail"), "kafka (broker 127.0.0.1:9092 unreachable)"));
    assert_null(strstr(jstr(j, "detail"), "redis"));
    json_t *kafka = json_object_get(json_object_get(j, "checks"), "kafka");
    assert_string_equal(jstr(kafka, "status"), "down");
    assert_string_equal(jstr(kafka, "detail"), "broker 127.0.0.1:9092 unreachable");
    assert_string_equal(jstr(json_object_get(json_object_get(j, "checks"), "redis"), "status"),
                        "up");
    json_decref(j);
    resp_free(&r);
}

/* ---- handlers ----------------------------------------------------------------------------------
 */

static void test_200_params_query_headers(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "GET", "/api/v1/echo/a%20b%2Fc%C3%A9?q=x+y%26&z=%41&z=second&flag",
            "X-Test: hello\r\n", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(jstr(j, "method"), "GET");
    assert_string_equal(jstr(j, "path"), "/api/v1/echo/a%20b%2Fc%C3%A9");
    assert_string_equal(jstr(j, "id"), "a b/c\xc3\xa9"); /* decoded, '/' stays inside */
    assert_string_equal(jstr(j, "q"), "x y&");
    assert_string_equal(jstr(j, "z"), "A"); /* the first of two */
    assert_string_equal(jstr(j, "x_test"), "hello");
    assert_string_equal(jstr(j, "body"), "");
    assert_true(json_is_null(json_object_get(j, "subject")));
    assert_string_equal(jstr(j, "stage"), "shop");
    assert_true(json_is_true(json_object_get(j, "input_null")));
    json_decref(j);
    char v[64];
    assert_int_equal(resp_header(&r, "Content-Type", v, sizeof(v)), 0);
    assert_string_equal(v, "application/json");
    assert_int_equal(resp_header(&r, "X-Content-Type-Options", v, sizeof(v)), 0);
    resp_free(&r);

    /* A literal segment beats a parameter; the parameter route takes the rest. */
    http_do(E.port, "GET", "/api/v1/orders/mine", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "route"), "mine");
    json_decref(j);
    resp_free(&r);
    http_do(E.port, "GET", "/api/v1/orders/42", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "id"), "42");
    json_decref(j);
    resp_free(&r);
    /* Encoded literal segments match their decoded form. */
    http_do(E.port, "GET", "/api/v1/orders/m%69ne", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "route"), "mine");
    json_decref(j);
    resp_free(&r);
    http_do(E.port, "GET", "/", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void test_post_body_and_content_types(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "POST", "/api/v1/echo/7", "Content-Type: application/json; charset=utf-8\r\n",
            "{\"a\":1}", &r);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(jstr(j, "body"), "{\"a\":1}");
    json_decref(j);
    resp_free(&r);
    http_do(E.port, "PATCH", "/api/v1/echo/7", "Content-Type: application/merge-patch+json\r\n",
            "{\"a\":null}", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* A POST without a body needs no content type. */
    http_do(E.port, "POST", "/api/v1/echo/7", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* Chunked. */
    const char chunked[] = "POST /api/v1/echo/9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                           "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "4\r\n{\"b\"\r\n3\r\n:2}\r\n0\r\n\r\n";
    http_raw(E.port, chunked, sizeof(chunked) - 1, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "body"), "{\"b\":2}");
    json_decref(j);
    resp_free(&r);
}

static void test_415_unsupported_media_type(void **state)
{
    (void)state;
    const char *bad[] = {"Content-Type: text/plain\r\n", NULL,
                         "Content-Type: application/jsonp\r\n",
                         "Content-Type: application/x+json/y\r\n", "Content-Type: text/json\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_resp r;
        http_do(E.port, "POST", "/api/v1/echo/7", bad[i], "{\"a\":1}", &r);
        json_t *j = expect_problem(&r, 415, "/api/v1/echo/7");
        char v[64];
        assert_int_equal(resp_header(&r, "Accept-Post", v, sizeof(v)), 0);
        json_decref(j);
        resp_free(&r);
    }
    http_resp r;
    http_do(E.port, "PATCH", "/api/v1/echo/7", "Content-Type: text/plain\r\n", "x", &r);
    json_t *j = expect_problem(&r, 415, "/api/v1/echo/7");
    char v[64];
    assert_int_equal(resp_header(&r, "Accept-Patch", v, sizeof(v)), 0);
    json_decref(j);
    resp_free(&r);
    /* Chunked without a content type. */
    const char chunked[] = "POST /api/v1/echo/9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    http_raw(E.port, chunked, sizeof(chunked) - 1, &r);
    json_decref(expect_problem(&r, 415, "/api/v1/echo/9"));
    resp_free(&r);
}

static void test_413_content_too_large(void **state)
{
    (void)state;
    /* By Content-Length: answered before the body is read, and the connection is closed. */
    http_conn c;
    assert_int_equal(conn_open(&c, E.port), 0);
    const char head[] = "POST /api/v1/echo/1 HTTP/1.1\r\nHost: t\r\n"
                        "Content-Type: application/json\r\nContent-Length: 5000000000\r\n\r\n";
    assert_int_equal(conn_send(&c, head, sizeof(head) - 1), 0);
    http_resp r;
    conn_read(&c, &r, 3000);
    json_t *j = expect_problem(&r, 413, "/api/v1/echo/1");
    assert_non_null(strstr(jstr(j, "detail"), "at most 1024"));
    json_decref(j);
    assert_true(r.closed);
    assert_true(conn_wait_closed(&c, 3000));
    resp_free(&r);
    conn_close(&c);

    /* Exactly the limit is fine. */
    char *body = malloc(1025);
    memset(body, 'a', 1024);
    body[0] = '"';
    body[1023] = '"';
    body[1024] = '\0';
    http_do(E.port, "POST", "/api/v1/echo/1", "Content-Type: application/json\r\n", body, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    free(body);

    /* Chunked beyond the limit: refused while reading. */
    assert_int_equal(conn_open(&c, E.port), 0);
    const char chead[] = "POST /api/v1/echo/1 HTTP/1.1\r\nHost: t\r\n"
                         "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(conn_send(&c, chead, sizeof(chead) - 1), 0);
    char chunk[600];
    snprintf(chunk, sizeof(chunk), "200\r\n%0512d\r\n", 0);
    for (int i = 0; i < 3; i++)
        if (conn_send(&c, chunk, strlen(chunk)) < 0)
            break;
    conn_read(&c, &r, 3000);
    json_decref(expect_problem(&r, 413, "/api/v1/echo/1"));
    assert_true(r.closed);
    resp_free(&r);
    conn_close(&c);
}

static void test_400_malformed_json(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "POST", "/api/v1/json", "Content-Type: application/json\r\n",
            "{\n  \"a\": 1,\n  \"b\": ]\n}", &r);
    json_t *j = expect_problem(&r, 400, "/api/v1/json");
    assert_string_equal(jstr(j, "title"), "Malformed JSON");
    assert_int_equal(json_integer_value(json_object_get(j, "line")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "column")), 8);
    assert_int_equal(json_integer_value(json_object_get(j, "position")), 20);
    assert_non_null(strstr(jstr(j, "detail"), "line 3, column 8"));
    json_decref(j);
    resp_free(&r);
    http_do(E.port, "POST", "/api/v1/json", "Content-Type: application/json\r\n", "{\"ok\":true}",
            &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
}

static void test_json_error_helper(void **state)
{
    (void)state;
    of_http_request req;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.path = "/x";
    json_error_t err;
    assert_null(json_loads("[1, 2,\n 3 x]", 0, &err));
    assert_int_equal(of_http_json_error(&req, &err), 0);
    assert_int_equal(req.status, 400);
    assert_string_equal(req.content_type, "application/problem+json");
    json_t *j = json_loads(req.resp_body, 0, &err);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "line")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "column")), 4);
    assert_int_equal(json_integer_value(json_object_get(j, "position")), 11);
    assert_string_equal(jstr(j, "instance"), "/x");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 400);
    json_decref(j);
    /* Only one answer per request. */
    assert_int_equal(of_http_json_error(&req, &err), -1);
    of_http_request_clear_response(&req);
    assert_int_equal(req.answered, 0);
    assert_int_equal(of_http_json_error_at(&req, "bad \xff text", 1, 1, 0), 0);
    j = json_loads(req.resp_body, 0, &err);
    assert_non_null(j); /* invalid UTF-8 in the text is replaced, not fatal */
    json_decref(j);
    of_http_request_release(&req);
}

static void test_handler_problem_and_headers(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "PUT", "/api/v1/conflict", NULL, NULL, &r);
    json_t *j = expect_problem(&r, 409, "/api/v1/conflict");
    assert_string_equal(jstr(j, "title"), "Out of stock");
    assert_string_equal(jstr(j, "detail"), "SKU-1 has 0 left");
    json_decref(j);
    resp_free(&r);

    http_do(E.port, "POST", "/api/v1/created", NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    j = body_json(&r);
    assert_true(json_is_true(json_object_get(j, "refused")));
    json_decref(j);
    char v[128];
    assert_int_equal(resp_header(&r, "Location", v, sizeof(v)), 0);
    assert_string_equal(v, "/api/v1/orders/42");
    assert_int_equal(resp_header(&r, "X-Custom", v, sizeof(v)), 0);
    assert_int_equal(resp_header(&r, "Content-Type", v, sizeof(v)), 0);
    assert_string_equal(v, "application/vnd.test+json");
    assert_int_equal(resp_header(&r, "Injected", v, sizeof(v)), -1);
    assert_int_equal(resp_header(&r, "X-Ok", v, sizeof(v)), -1);
    resp_free(&r);
}

static void test_500_and_503_without_answer(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "GET", "/api/v1/nothing", NULL, NULL, &r);
    json_decref(expect_problem(&r, 500, "/api/v1/nothing"));
    resp_free(&r);
    http_do(E.port, "GET", "/api/v1/reject", NULL, NULL, &r);
    json_t *j = expect_problem(&r, 500, "/api/v1/reject");
    assert_null(strstr(r.body, "secret internal reason")); /* never shown to the client */
    json_decref(j);
    resp_free(&r);
    http_do(E.port, "GET", "/api/v1/retry", NULL, NULL, &r);
    json_decref(expect_problem(&r, 503, "/api/v1/retry"));
    char v[16];
    assert_int_equal(resp_header(&r, "Retry-After", v, sizeof(v)), 0);
    assert_string_equal(v, "1");
    resp_free(&r);
}

/* ---- routing errors
 * ------------------------------------------------------------------------------ */

static void test_404_and_405(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "GET", "/api/v2/nothing/here", NULL, NULL, &r);
    json_decref(expect_problem(&r, 404, "/api/v2/nothing/here"));
    resp_free(&r);
    /* Exact match: no trailing slash, no missing segment, no extra one. */
    http_do(E.port, "GET", "/api/v1/echo/1/", NULL, NULL, &r);
    json_t *j = expect_problem(&r, 404, "/api/v1/echo/1/");
    assert_non_null(strstr(jstr(j, "detail"), "trailing slash"));
    json_decref(j);
    resp_free(&r);
    http_do(E.port, "GET", "/api/v1/echo", NULL, NULL, &r);
    json_decref(expect_problem(&r, 404, NULL));
    resp_free(&r);
    http_do(E.port, "GET", "/api/v1/echo/1/2", NULL, NULL, &r);
    json_decref(expect_problem(&r, 404, NULL));
    resp_free(&r);
    http_do(E.port, "GET", "/api//v1/echo/1", NULL, NULL, &r);
    json_decref(expect_problem(&r, 404, NULL));
    resp_free(&r);
    http_do(E.port, "GET", "/API/v1/echo/1", NULL, NULL, &r);
    json_decref(expect_problem(&r, 404, NULL));
    resp_free(&r);

    http_do(E.port, "DELETE", "/api/v1/echo/1", NULL, NULL, &r);
    j = expect_problem(&r, 405, "/api/v1/echo/1");
    char allow[64];
    assert_int_equal(resp_header(&r, "Allow", allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET, POST, PATCH");
    json_decref(j);
    resp_free(&r);
    http_do(E.port, "OPTIONS", "/api/v1/me", NULL, NULL, &r);
    json_decref(expect_problem(&r, 405, NULL));
    assert_int_equal(resp_header(&r, "Allow", allow, sizeof(allow)), 0);
    assert_string_equal(allow, "GET");
    resp_free(&r);
}

static void test_400_bad_encoding(void **state)
{
    (void)state;
    const char *bad[] = {"/api/v1/echo/%zz", "/api/v1/echo/%4",     "/api/v1/echo/%00",
                         "/api/v1/echo/%ff", "/api/v1/echo/%2e%2e", "/api/v1/../v1/echo/1",
                         "/api/v1/echo/.",   "/api/v1/echo/%C0%AF"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_resp r;
        http_do(E.port, "GET", bad[i], NULL, NULL, &r);
        json_decref(expect_problem(&r, 400, bad[i]));
        resp_free(&r);
    }
    const char *bad_query[] = {"/api/v1/echo/1?q=%zz", "/api/v1/echo/1?q=%00",
                               "/api/v1/echo/1?%ff=1"};
    for (size_t i = 0; i < sizeof(bad_query) / sizeof(bad_query[0]); i++) {
        http_resp r;
        http_do(E.port, "GET", bad_query[i], NULL, NULL, &r);
        json_t *j = expect_problem(&r, 400, "/api/v1/echo/1");
        assert_non_null(strstr(jstr(j, "detail"), "query"));
        json_decref(j);
        resp_free(&r);
    }
}

/* ---- auth
 * ------------------------------------------------------------------------------------------ */

static void test_401(void **state)
{
    (void)state;
    char www[300];
    http_resp r;
    /* No token: a challenge without error. */
    http_do(E.port, "GET", "/api/v1/me", NULL, NULL, &r);
    json_decref(expect_problem(&r, 401, "/api/v1/me"));
    assert_int_equal(resp_header(&r, "WWW-Authenticate", www, sizeof(www)), 0);
    assert_string_equal(www, "Bearer realm=\"orderflow\"");
    resp_free(&r);
    /* Another scheme: the same. */
    http_do(E.port, "GET", "/api/v1/me", "Authorization: Basic YWxpY2U6c2VjcmV0\r\n", NULL, &r);
    json_decref(expect_problem(&r, 401, "/api/v1/me"));
    assert_int_equal(resp_header(&r, "WWW-Authenticate", www, sizeof(www)), 0);
    assert_null(strstr(www, "error="));
    resp_free(&r);
    /* A token the authenticator refuses: invalid_token with its reason, made header-safe. */
    http_do(E.port, "GET", "/api/v1/me", "Authorization: Bearer wrong.token\r\n", NULL, &r);
    json_t *j = expect_problem(&r, 401, "/api/v1/me");
    assert_non_null(strstr(jstr(j, "detail"), "expired"));
    json_decref(j);
    assert_int_equal(resp_header(&r, "WWW-Authenticate", www, sizeof(www)), 0);
    assert_string_equal(www, "Bearer realm=\"orderflow\", error=\"invalid_token\", "
                             "error_description=\"token  expired   \"");
    resp_free(&r);
    /* A malformed token never reaches the authenticator. */
    http_do(E.port, "GET", "/api/v1/me", "Authorization: Bearer a b c\r\n", NULL, &r);
    json_decref(expect_problem(&r, 401, "/api/v1/me"));
    assert_int_equal(resp_header(&r, "WWW-Authenticate", www, sizeof(www)), 0);
    assert_non_null(strstr(www, "error=\"invalid_token\""));
    resp_free(&r);
    http_do(E.port, "GET", "/api/v1/me", "Authorization: Bearer \r\n", NULL, &r);
    json_decref(expect_problem(&r, 401, "/api/v1/me"));
    resp_free(&r);
    /* A good token: the principal reaches the handler (scheme case-insensitive). */
    http_do(E.port, "GET", "/api/v1/me", "Authorization: bearer " TOKEN_USER "\r\n", NULL, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "subject"), "bob");
    json_decref(j);
    resp_free(&r);
}

static void test_403_roles(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "DELETE", "/api/v1/admin/items/9", "Authorization: Bearer " TOKEN_USER "\r\n",
            NULL, &r);
    json_t *j = expect_problem(&r, 403, "/api/v1/admin/items/9");
    assert_non_null(strstr(jstr(j, "detail"), "admin"));
    json_decref(j);
    resp_free(&r);
    http_do(E.port, "DELETE", "/api/v1/admin/items/9", "Authorization: Bearer " TOKEN_ADMIN "\r\n",
            NULL, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "subject"), "alice");
    assert_string_equal(jstr(j, "item"), "9");
    json_decref(j);
    resp_free(&r);
    /* Without a token the answer is 401, not 403. */
    http_do(E.port, "DELETE", "/api/v1/admin/items/9", NULL, NULL, &r);
    json_decref(expect_problem(&r, 401, NULL));
    resp_free(&r);
}

/* ---- OpenAPI
 * ------------------------------------------------------------------------------------------ */

/* The document's concrete path for a template: every {x} becomes "p1". */
static void concrete(const char *tmpl, char *out, size_t size)
{
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 3 < size;) {
        if (*p == '{') {
            memcpy(out + o, "p1", 2);
            o += 2;
            const char *close = strchr(p, '}');
            p = close ? close + 1 : p + strlen(p);
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

static void test_openapi_matches_served_routes(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "GET", "/api/openapi.json", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *doc = body_json(&r);
    resp_free(&r);
    assert_string_equal(jstr(doc, "openapi"), "3.1.0");
    json_t *paths = json_object_get(doc, "paths");
    assert_non_null(paths);
    assert_non_null(json_object_get(
        json_object_get(json_object_get(doc, "components"), "securitySchemes"), "bearerAuth"));

    /* Every documented operation is served: trying it never gives the router's 404 or 405. */
    const char *path;
    json_t *item;
    size_t n_ops = 0;
    json_object_foreach(paths, path, item)
    {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op)
        {
            char m[16], target[512];
            size_t k = 0;
            for (; method[k] && k < sizeof(m) - 1; k++)
                m[k] = (char)(method[k] >= 'a' && method[k] <= 'z' ? method[k] - 32 : method[k]);
            m[k] = '\0';
            concrete(path, target, sizeof(target));
            int body = !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH");
            http_do(E.port, m, target,
                    "Authorization: Bearer " TOKEN_ADMIN "\r\nContent-Type: application/json\r\n",
                    body ? "{}" : NULL, &r);
            int unrouted =
                r.status == 405 || (r.status == 404 && strstr(r.body, "no route for this path"));
            if (unrouted || r.status <= 0)
                fail_msg("documented %s %s is not served: %d %s", m, path, r.status, r.body);
            resp_free(&r);
            n_ops++;
        }
    }

    /* Every served route is documented, with its parameters and security. */
    for (size_t i = 0; i < E.n_routes; i++) {
        const of_route *rt = &E.routes[i];
        char m[16];
        size_t k = 0;
        for (const char *s = of_http_method_name(rt->method); *s; s++)
            m[k++] = (char)(*s - 'A' + 'a');
        m[k] = '\0';
        json_t *op = json_object_get(json_object_get(paths, rt->path), m);
        if (!op)
            fail_msg("served route %s %s is missing from the document",
                     of_http_method_name(rt->method), rt->path);
        json_t *sec = json_object_get(op, "security");
        assert_int_equal(json_array_size(sec), rt->auth_required ? 1 : 0);
        size_t n_params = 0;
        for (size_t s = 0; s < rt->n_segments; s++)
            n_params += rt->segments[s].is_param != 0;
        assert_int_equal(json_array_size(json_object_get(op, "parameters")), n_params);
        json_t *responses = json_object_get(op, "responses");
        assert_non_null(json_object_get(responses, "400"));
        assert_non_null(json_object_get(responses, "500"));
        assert_non_null(json_object_get(responses, "503"));
        assert_int_equal(json_object_get(responses, "401") != NULL, rt->auth_required);
        assert_int_equal(json_object_get(responses, "403") != NULL, rt->n_roles > 0);
        if (rt->summary)
            assert_string_equal(jstr(op, "summary"), rt->summary);
        if (rt->n_roles)
            assert_non_null(strstr(jstr(op, "description"), rt->roles[0]));
    }
    const char *builtins[] = {"/healthz", "/readyz", "/api/openapi.json"};
    for (size_t i = 0; i < 3; i++)
        assert_non_null(json_object_get(json_object_get(paths, builtins[i]), "get"));
    assert_int_equal(n_ops, E.n_routes + 3);
    json_t *schema = json_object_get(
        json_object_get(
            json_object_get(
                json_object_get(json_object_get(json_object_get(paths, "/api/v1/json"), "post"),
                                "requestBody"),
                "content"),
            "application/json"),
        "schema");
    assert_string_equal(jstr(schema, "type"), "object");
    json_decref(doc);
}

/* ---- start checks
 * ----------------------------------------------------------------------------------- */

static int start_error(const char *routes_yaml, void (*tweak)(gw_env *), char *err, size_t size)
{
    gw_env e;
    env_prepare(&e, routes_yaml);
    if (tweak)
        tweak(&e);
    of_http_config cfg;
    test_config(&cfg);
    int rc = env_start_with(&e, &cfg, err, size);
    of_http_config_free(&cfg);
    env_free(&e);
    return rc;
}

static void drop_authenticator(gw_env *e)
{
    e->st[1].http->authenticator = NULL;
}

static void second_authenticator(gw_env *e)
{
    e->st[0].initialized = 0;
    assert_int_equal(of_api_http_authenticator(&e->st[0], test_authenticator), 0);
    e->st[0].initialized = 1;
}

static void test_start_checks(void **state)
{
    (void)state;
    char err[2048];
    assert_int_equal(start_error("routes:\n  - {method: GET, path: /a, handler: shop.missing}\n",
                                 NULL, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "shop.yaml:2:5: route GET /a: stage 'shop' registered no handler "
                                "'missing'"));
    assert_non_null(strstr(err, "it registered: echo, json"));

    /* Group commit shares a transaction: the test stages have no database. */
    assert_int_equal(
        start_error("routes:\n  - {method: POST, path: /a, handler: shop.echo, batch: 8}\n", NULL,
                    err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "shop.yaml:2:5: route POST /a: batch needs a stage with a "
                                "database, and 'shop' has none"));
    assert_int_equal(
        start_error("routes:\n  - {method: POST, path: /a, handler: shop.echo, batch: 1}\n", NULL,
                    err, sizeof(err)),
        0);

    assert_int_equal(start_error("routes:\n  - {method: GET, path: /a, handler: shop.echo}\n",
                                 drop_authenticator, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "route GET /a has auth: required, but no stage registered an "
                                "authenticator"));
    /* Without an auth route, no authenticator is needed. */
    assert_int_equal(
        start_error("routes:\n  - {method: GET, path: /a, handler: shop.echo, auth: none}\n",
                    drop_authenticator, err, sizeof(err)),
        0);

    assert_int_equal(
        start_error("routes:\n  - {method: GET, path: /a, handler: shop.echo, auth: none}\n",
                    second_authenticator, err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "both registered an authenticator"));

    /* Every problem at once, one per line. */
    assert_int_equal(start_error("routes:\n  - {method: GET, path: /a, handler: shop.nope1}\n"
                                 "  - {method: GET, path: /b, handler: shop.nope2}\n",
                                 NULL, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "'nope1'"));
    assert_non_null(strstr(err, "\nshop.yaml:3:5"));
}

static void test_start_cross_pipeline_collision(void **state)
{
    (void)state;
    gw_env e;
    env_prepare(&e, "routes:\n  - {method: GET, path: \"/x/{id}\", handler: shop.echo}\n");
    of_http_config cfg;
    test_config(&cfg);
    of_gateway *gw = of_gateway_new(&cfg, NULL, NULL);
    of_http_config_free(&cfg);
    assert_int_equal(of_gateway_add_stage(gw, &e.st[0]), 0);
    assert_int_equal(of_gateway_add_stage(gw, &e.st[1]), 0);
    assert_int_equal(of_gateway_add_routes(gw, "shop", "a.yaml", e.routes, e.n_routes), 0);
    assert_int_equal(of_gateway_add_routes(gw, "shop", "b.yaml", e.routes, e.n_routes), 0);
    char err[1024];
    assert_int_equal(of_gateway_start(gw, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "b.yaml:2:5: route GET /x/{id} of pipeline 'shop' matches the "
                                "same requests as GET /x/{id} of pipeline 'shop' (a.yaml:2:5)"));
    of_gateway_free(gw);
    env_free(&e);

    /* A route of another pipeline names that pipeline's stage: not running here. */
    env_prepare(&e, "routes:\n  - {method: GET, path: /y, handler: shop.echo}\n");
    test_config(&cfg);
    gw = of_gateway_new(&cfg, NULL, NULL);
    of_http_config_free(&cfg);
    assert_int_equal(of_gateway_add_stage(gw, &e.st[1]), 0);
    assert_int_equal(of_gateway_add_routes(gw, "other", "o.yaml", e.routes, e.n_routes), 0);
    assert_int_equal(of_gateway_start(gw, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "stage 'shop' of pipeline 'other' is not running"));
    of_gateway_free(gw);
    env_free(&e);
}

static void test_start_listen_problems(void **state)
{
    (void)state;
    char err[2048];
    gw_env e;
    env_prepare(&e, ROUTES_YAML);
    of_http_config cfg;
    test_config(&cfg);
    /* The port of the running gateway is taken. */
    free(cfg.listen);
    assert_true(asprintf(&cfg.listen, "127.0.0.1:%d", E.port) > 0);
    cfg.file = strdup("orderflow.yaml");
    cfg.listen_line = 3;
    cfg.listen_column = 11;
    assert_int_equal(env_start_with(&e, &cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "orderflow.yaml:3:11: http: cannot listen on 127.0.0.1:"));
    of_gateway_free(e.gw);
    e.gw = NULL;

    /* IPv6 works or is refused clearly (Debian's civetweb is built without it). */
    free(cfg.listen);
    cfg.listen = strdup("[::1]:0");
    int rc = env_start_with(&e, &cfg, err, sizeof(err));
    if (rc != 0)
        assert_true(strstr(err, "IPv6") || strstr(err, "cannot listen"));
    of_gateway_free(e.gw);
    e.gw = NULL;

    /* TLS works, or is refused with the reason (Debian's civetweb 1.15 cannot load OpenSSL 3). */
    free(cfg.listen);
    cfg.listen = strdup("127.0.0.1:0");
    cfg.tls_cert = strdup(OF_SOURCE_DIR "/tests/fixtures/http/cert.pem");
    cfg.tls_key = strdup(OF_SOURCE_DIR "/tests/fixtures/http/key.pem");
    cfg.tls_line = 5;
    cfg.tls_column = 8;
    rc = env_start_with(&e, &cfg, err, sizeof(err));
    if (rc != 0)
        assert_non_null(strstr(err, "orderflow.yaml:5:8: http tls: the civetweb library cannot "
                                    "use TLS"));
    else
        assert_true(of_gateway_port(e.gw) > 0);
    of_http_config_free(&cfg);
    env_free(&e);
}

static void test_registration_rules(void **state)
{
    (void)state;
    of_stage_def def = {.name = (char *)"s"};
    of_stage st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(of_stage_setup(&st, "p", &def, &shop_desc, NULL), 0);
    assert_int_equal(of_api_http_handler(&st, "get_order", h_echo), 0);
    assert_int_equal(of_api_http_handler(&st, "get_order", h_echo), -1); /* duplicate */
    assert_int_equal(of_api_http_handler(&st, "Get", h_echo), -1);
    assert_int_equal(of_api_http_handler(&st, "a.b", h_echo), -1);
    assert_int_equal(of_api_http_handler(&st, "", h_echo), -1);
    assert_int_equal(of_api_http_handler(&st, NULL, h_echo), -1);
    assert_int_equal(of_api_http_handler(&st, "x", NULL), -1);
    assert_int_equal(of_api_http_handler(NULL, "x", h_echo), -1);
    assert_int_equal(of_api_http_authenticator(&st, test_authenticator), 0);
    assert_int_equal(of_api_http_authenticator(&st, test_authenticator), 0); /* same: fine */
    assert_int_equal(of_api_http_authenticator(&st, NULL), -1);
    assert_ptr_equal(of_stage_http_find(&st, "get_order"), h_echo);
    assert_null(of_stage_http_find(&st, "other"));
    /* After init: refused. */
    st.initialized = 1;
    assert_int_equal(of_api_http_handler(&st, "late", h_echo), -1);
    assert_null(of_stage_http_find(&st, "late"));
    of_stage_http_free(&st);
    assert_null(st.http);
    of_stage_cleanup(&st);
    /* Readers tolerate NULL. */
    assert_null(of_api_http_method(NULL));
    assert_null(of_api_http_param(NULL, "x"));
    size_t len = 9;
    assert_non_null(of_api_http_body(NULL, &len));
    assert_int_equal(len, 0);
    assert_null(of_api_http_principal(NULL));
    assert_int_equal(of_api_http_problem(NULL, 400, "x", "y"), -1);
}

static void test_problem_document(void **state)
{
    (void)state;
    char *t = of_problem_json(404, NULL, "no \xc3\xa9 \xff", "/a", NULL);
    json_error_t err;
    json_t *j = json_loads(t, 0, &err);
    assert_non_null(j);
    assert_string_equal(jstr(j, "title"), "Not Found");
    assert_string_equal(jstr(j, "detail"), "no \xc3\xa9 \xef\xbf\xbd");
    json_decref(j);
    free(t);
    json_t *extra = json_pack("{s:s, s:i}", "status", "ignored", "retry", 3);
    t = of_problem_json(429, "Slow down", NULL, NULL, extra);
    json_decref(extra);
    j = json_loads(t, 0, &err);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 429);
    assert_int_equal(json_integer_value(json_object_get(j, "retry")), 3);
    assert_null(json_object_get(j, "detail"));
    assert_string_equal(jstr(j, "title"), "Slow down");
    json_decref(j);
    free(t);
    assert_string_equal(of_http_status_text(413), "Content Too Large");
    assert_string_equal(of_http_status_text(799), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_readyz),
        cmocka_unit_test(test_200_params_query_headers),
        cmocka_unit_test(test_post_body_and_content_types),
        cmocka_unit_test(test_415_unsupported_media_type),
        cmocka_unit_test(test_413_content_too_large),
        cmocka_unit_test(test_400_malformed_json),
        cmocka_unit_test(test_json_error_helper),
        cmocka_unit_test(test_handler_problem_and_headers),
        cmocka_unit_test(test_500_and_503_without_answer),
        cmocka_unit_test(test_404_and_405),
        cmocka_unit_test(test_400_bad_encoding),
        cmocka_unit_test(test_401),
        cmocka_unit_test(test_403_roles),
        cmocka_unit_test(test_openapi_matches_served_routes),
        cmocka_unit_test(test_start_checks),
        cmocka_unit_test(test_start_cross_pipeline_collision),
        cmocka_unit_test(test_start_listen_problems),
        cmocka_unit_test(test_registration_rules),
        cmocka_unit_test(test_problem_document),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
