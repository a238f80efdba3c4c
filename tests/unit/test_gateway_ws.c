/* WebSocket routes on a real socket: the upgrade checks (426, 400), the token from the header or
 * ?access_token=, a handler refusing or failing, the snapshot before anything published, what is
 * published between the subscription and the open (kept, in order), channels and pipelines kept
 * apart, order under a burst, ping/pong, the connection limit, and the hub telling clients to go
 * when it stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_gateway_client.h"
#include "test_gateway_env.h"
#include "test_ws_client.h"
#include "ws_hub.h"

#define WS_LIMIT 3

static const char WS_ROUTES_YAML[] =
    "routes:\n"
    "  - {method: GET, path: \"/api/v1/rooms/{id}/events\", handler: shop.room, websocket: true}\n"
    "  - {method: GET, path: /api/v1/me, handler: shop.echo}\n";

static gw_env E;

static const of_host_api *api(void)
{
    return of_host_api_get();
}

static of_status h_room(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    const char *id = api()->http_param(req, "id");
    if (strcmp(id, "forbidden") == 0) {
        api()->http_problem(req, 403, NULL, "not your room");
        return OF_OK;
    }
    if (strcmp(id, "busy") == 0)
        return OF_RETRY;
    char ch[64];
    snprintf(ch, sizeof(ch), "room:%s", id);
    if (api()->ws_subscribe(req, ch) != 0 || api()->ws_subscribe(req, "bad channel!") != -1)
        return OF_REJECT;
    if (api()->http_query(req, "snapshot")) {
        char snap[64];
        snprintf(snap, sizeof(snap), "snap-%s", id);
        if (api()->ws_send(req, snap, strlen(snap)) != 0)
            return OF_REJECT;
    }
    /* Something published after the subscription but before the connection is open must
     * arrive after the snapshot, not be lost. */
    if (strcmp(id, "race") == 0)
        api()->ws_publish(call->stage, ch, "during", 6);
    return OF_OK;
}

static int group_setup(void **state)
{
    (void)state;
    env_prepare(&E, WS_ROUTES_YAML);
    E.st[0].initialized = 0;
    assert_int_equal(of_api_http_handler(&E.st[0], "room", h_room), 0);
    E.st[0].initialized = 1;
    of_http_config cfg;
    test_config(&cfg);
    cfg.ws_connections = WS_LIMIT;
    E.hub = of_gateway_ws_hub_new(&cfg, NULL, NULL);
    assert_non_null(E.hub);
    char err[2048];
    assert_int_equal(of_ws_hub_start(E.hub, err, sizeof(err)), 0);
    E.st[0].ws_hub = E.hub;
    int rc = env_start_with(&E, &cfg, err, sizeof(err));
    of_http_config_free(&cfg);
    if (rc != 0)
        fail_msg("gateway start: %s", err);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    of_ws_hub_stop(E.hub);
    env_free(&E);
    of_ws_hub_free(E.hub);
    return 0;
}

static int clients(void)
{
    of_ws_stats s;
    of_ws_hub_stats(E.hub, &s);
    return s.clients;
}

/* Waits until the hub has n clients (a closed connection leaves on the server's thread). */
static void wait_clients(int n)
{
    for (int i = 0; i < 300 && clients() != n; i++)
        usleep(10000);
    assert_int_equal(clients(), n);
}

static void ws_bye(http_conn *c)
{
    (void)ws_send_frame(c, WS_CLOSE, "\x03\xe8", 2);
    conn_close(c);
}

static void open_ok(http_conn *c, const char *target)
{
    http_resp r;
    assert_int_equal(ws_open(c, E.port, target, "Authorization: Bearer " TOKEN_USER "\r\n", &r), 0);
    if (r.status != 101)
        fail_msg("%s: expected 101, got %d: %s", target, r.status, r.body ? r.body : "");
    char accept[64];
    assert_int_equal(resp_header(&r, "Sec-WebSocket-Accept", accept, sizeof(accept)), 0);
    /* RFC 6455's own example key and answer. */
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    resp_free(&r);
}

static void publish(const char *channel, const char *msg)
{
    assert_int_equal(api()->ws_publish(&E.st[0], channel, msg, strlen(msg)), 0);
}

static void expect_text(http_conn *c, const char *want)
{
    char *got = ws_next_text(c, 3000);
    if (!got)
        fail_msg("expected '%s', got nothing", want);
    if (strcmp(got, want) != 0) {
        char copy[200];
        snprintf(copy, sizeof(copy), "%s", got);
        free(got);
        fail_msg("expected '%s', got '%s'", want, copy);
    }
    free(got);
}

static void test_not_an_upgrade(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "GET", "/api/v1/rooms/1/events", "Authorization: Bearer " TOKEN_USER "\r\n",
            NULL, &r);
    json_t *p = expect_problem(&r, 426, "/api/v1/rooms/1/events");
    char up[64];
    assert_int_equal(resp_header(&r, "Upgrade", up, sizeof(up)), 0);
    assert_string_equal(up, "websocket");
    json_decref(p);
    resp_free(&r);

    static const char v8[] = "GET /api/v1/rooms/1/events HTTP/1.1\r\nHost: t\r\n"
                             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                             "Sec-WebSocket-Version: 8\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    http_raw(E.port, v8, sizeof(v8) - 1, &r);
    p = expect_problem(&r, 426, "/api/v1/rooms/1/events");
    char ver[16];
    assert_int_equal(resp_header(&r, "Sec-WebSocket-Version", ver, sizeof(ver)), 0);
    assert_string_equal(ver, "13");
    json_decref(p);
    resp_free(&r);

    static const char short_key[] = "GET /api/v1/rooms/1/events HTTP/1.1\r\nHost: t\r\n"
                                    "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                                    "Sec-WebSocket-Version: 13\r\n"
                                    "Sec-WebSocket-Key: short\r\n\r\n";
    http_raw(E.port, short_key, sizeof(short_key) - 1, &r);
    json_decref(expect_problem(&r, 400, "/api/v1/rooms/1/events"));
    resp_free(&r);
    wait_clients(0);
}

static void test_token(void **state)
{
    (void)state;
    http_conn c;
    http_resp r;
    assert_int_equal(ws_open(&c, E.port, "/api/v1/rooms/1/events", NULL, &r), 0);
    json_t *p = expect_problem(&r, 401, "/api/v1/rooms/1/events");
    assert_non_null(strstr(jstr(p, "detail"), "access_token"));
    json_decref(p);
    resp_free(&r);
    conn_close(&c);

    assert_int_equal(ws_open(&c, E.port, "/api/v1/rooms/1/events?access_token=wrong", NULL, &r), 0);
    json_decref(expect_problem(&r, 401, "/api/v1/rooms/1/events"));
    resp_free(&r);
    conn_close(&c);

    assert_int_equal(
        ws_open(&c, E.port, "/api/v1/rooms/1/events?access_token=" TOKEN_USER, NULL, &r), 0);
    assert_int_equal(r.status, 101);
    resp_free(&r);
    wait_clients(1);
    publish("room:1", "hello");
    expect_text(&c, "hello");
    ws_bye(&c);
    wait_clients(0);

    /* The query token is for WebSockets only: a plain route still wants the header. */
    http_do(E.port, "GET", "/api/v1/me?access_token=" TOKEN_USER, NULL, NULL, &r);
    json_decref(expect_problem(&r, 401, "/api/v1/me"));
    resp_free(&r);
}

static void test_handler_refuses(void **state)
{
    (void)state;
    http_conn c;
    http_resp r;
    assert_int_equal(ws_open(&c, E.port, "/api/v1/rooms/forbidden/events",
                             "Authorization: Bearer " TOKEN_USER "\r\n", &r),
                     0);
    json_t *p = expect_problem(&r, 403, "/api/v1/rooms/forbidden/events");
    assert_string_equal(jstr(p, "detail"), "not your room");
    json_decref(p);
    resp_free(&r);
    conn_close(&c);

    assert_int_equal(ws_open(&c, E.port, "/api/v1/rooms/busy/events",
                             "Authorization: Bearer " TOKEN_USER "\r\n", &r),
                     0);
    json_decref(expect_problem(&r, 503, "/api/v1/rooms/busy/events"));
    resp_free(&r);
    conn_close(&c);
    wait_clients(0);
}

static void test_snapshot_then_live(void **state)
{
    (void)state;
    http_conn c;
    open_ok(&c, "/api/v1/rooms/7/events?snapshot=1");
    expect_text(&c, "snap-7");
    publish("room:8", "not for room 7");
    assert_int_equal(of_ws_hub_publish(E.hub, "another-pipeline", "room:7", "x", 1), 0);
    publish("room:7", "m1");
    expect_text(&c, "m1");
    ws_bye(&c);
    wait_clients(0);
}

static void test_published_before_open(void **state)
{
    (void)state;
    http_conn c;
    open_ok(&c, "/api/v1/rooms/race/events?snapshot=1");
    expect_text(&c, "snap-race");
    expect_text(&c, "during");
    ws_bye(&c);
    wait_clients(0);
}

static void test_burst_in_order(void **state)
{
    (void)state;
    http_conn a, b;
    open_ok(&a, "/api/v1/rooms/9/events");
    open_ok(&b, "/api/v1/rooms/9/events");
    wait_clients(2);
    char msg[32];
    for (int i = 0; i < 500; i++) {
        snprintf(msg, sizeof(msg), "n%d", i);
        publish("room:9", msg);
    }
    for (int i = 0; i < 500; i++) {
        snprintf(msg, sizeof(msg), "n%d", i);
        expect_text(&a, msg);
        expect_text(&b, msg);
    }
    ws_bye(&a);
    ws_bye(&b);
    wait_clients(0);
}

static void test_ping(void **state)
{
    (void)state;
    http_conn c;
    open_ok(&c, "/api/v1/rooms/p/events");
    assert_int_equal(ws_send_frame(&c, WS_PING, "are you there", 13), 0);
    int op = 0;
    char *p = NULL;
    size_t n = 0;
    assert_int_equal(ws_read(&c, &op, &p, &n, 3000), 1);
    assert_int_equal(op, WS_PONG);
    assert_string_equal(p, "are you there");
    free(p);
    /* Text from the client is not an error: ignored. */
    assert_int_equal(ws_send_frame(&c, WS_TEXT, "subscribe me to everything", 26), 0);
    publish("room:p", "still here");
    expect_text(&c, "still here");
    ws_bye(&c);
    wait_clients(0);
}

static void test_limit(void **state)
{
    (void)state;
    http_conn c[WS_LIMIT + 1];
    for (int i = 0; i < WS_LIMIT; i++)
        open_ok(&c[i], "/api/v1/rooms/l/events");
    http_resp r;
    assert_int_equal(ws_open(&c[WS_LIMIT], E.port, "/api/v1/rooms/l/events",
                             "Authorization: Bearer " TOKEN_USER "\r\n", &r),
                     0);
    json_t *p = expect_problem(&r, 503, "/api/v1/rooms/l/events");
    char ra[16];
    assert_int_equal(resp_header(&r, "Retry-After", ra, sizeof(ra)), 0);
    json_decref(p);
    resp_free(&r);
    conn_close(&c[WS_LIMIT]);
    /* Plain requests still get a thread. */
    http_do(E.port, "GET", "/api/v1/me", "Authorization: Bearer " TOKEN_USER "\r\n", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    ws_bye(&c[0]);
    wait_clients(WS_LIMIT - 1);
    open_ok(&c[0], "/api/v1/rooms/l/events");
    for (int i = 0; i < WS_LIMIT; i++)
        ws_bye(&c[i]);
    wait_clients(0);
}

static void test_openapi(void **state)
{
    (void)state;
    http_resp r;
    http_do(E.port, "GET", "/api/openapi.json", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *doc = body_json(&r);
    json_t *op = json_object_get(
        json_object_get(json_object_get(doc, "paths"), "/api/v1/rooms/{id}/events"), "get");
    assert_non_null(op);
    json_t *responses = json_object_get(op, "responses");
    assert_non_null(json_object_get(responses, "101"));
    assert_non_null(json_object_get(responses, "426"));
    assert_null(json_object_get(responses, "2XX"));
    assert_non_null(strstr(jstr(op, "description"), "access_token"));
    json_decref(doc);
    resp_free(&r);
}

/* Last: the hub stops and tells its clients to go. */
static void test_stop_says_going_away(void **state)
{
    (void)state;
    http_conn c;
    open_ok(&c, "/api/v1/rooms/s/events");
    wait_clients(1);
    of_ws_hub_stop(E.hub);
    int op = 0;
    char *p = NULL;
    size_t n = 0;
    assert_int_equal(ws_read(&c, &op, &p, &n, 3000), 1);
    assert_int_equal(op, WS_CLOSE);
    assert_true(n >= 2);
    assert_int_equal(((unsigned char)p[0] << 8) | (unsigned char)p[1], 1001);
    free(p);
    assert_int_equal(api()->ws_publish(&E.st[0], "room:s", "late", 4), -1);
    ws_bye(&c);
    wait_clients(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_an_upgrade),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_handler_refuses),
        cmocka_unit_test(test_snapshot_then_live),
        cmocka_unit_test(test_published_before_open),
        cmocka_unit_test(test_burst_in_order),
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_openapi),
        cmocka_unit_test(test_stop_says_going_away),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
