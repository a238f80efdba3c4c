/* A pipeline's `routes:` section: the parsed model, and every problem at its line:column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gateway.h"
#include "yamltree.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parsed {
    of_diag diag;
    of_ydoc *doc;
    of_stage_def stages[3];
    of_pipeline p;
    of_route *routes;
    size_t n;
    int rc;
} parsed;

/* Parses the routes: of `yaml` against a pipeline with stages orders, auth and inventory. */
static void parse(parsed *x, const char *yaml)
{
    memset(x, 0, sizeof(*x));
    of_diag_init(&x->diag);
    x->stages[0].name = (char *)"orders";
    x->stages[1].name = (char *)"auth";
    x->stages[2].name = (char *)"inventory";
    x->p.name = (char *)"shop";
    x->p.file = (char *)"shop.yaml";
    x->p.stages = x->stages;
    x->p.n_stages = 3;
    x->doc = of_ydoc_load_buffer("shop.yaml", yaml, strlen(yaml), &x->diag);
    assert_non_null(x->doc);
    const of_ynode *routes = x->doc->root ? of_ymap_get(x->doc->root, "routes") : NULL;
    x->rc = of_routes_parse(routes, &x->p, "shop.yaml", &x->diag, &x->routes, &x->n);
}

static void parsed_free(parsed *x)
{
    of_routes_free(x->routes, x->n);
    of_ydoc_free(x->doc);
    of_diag_free(&x->diag);
}

static void expect_error(parsed *x, int line, int column, const char *text)
{
    for (size_t i = 0; i < x->diag.count; i++) {
        const of_diag_entry *e = &x->diag.entries[i];
        if (e->severity == OF_SEV_ERROR && e->line == line && e->column == column &&
            strstr(e->message, text) && strcmp(e->file, "shop.yaml") == 0)
            return;
    }
    fprintf(stderr, "expected an error at %d:%d containing '%s'; got:\n", line, column, text);
    of_diag_print(&x->diag, stderr);
    fail();
}

/* One route (the YAML after "routes:\n  - ") with exactly one error. */
static void expect_only_error(const char *yaml, int line, int column, const char *text)
{
    parsed x;
    parse(&x, yaml);
    expect_error(&x, line, column, text);
    assert_int_equal(x.rc, -1);
    assert_null(x.routes);
    assert_int_equal(x.n, 0);
    if (x.diag.errors != 1) {
        of_diag_print(&x.diag, stderr);
        fail_msg("expected exactly one error for:\n%s", yaml);
    }
    parsed_free(&x);
}

static void test_valid_routes(void **state)
{
    (void)state;
    parsed x;
    parse(&x, "pipeline: shop\n"
              "routes:\n"
              "  - method: POST\n"
              "    path: /api/v1/orders/{id}/cancel\n"
              "    handler: orders.cancel\n"
              "    roles: [admin, support]\n"
              "    summary: Cancel an order\n"
              "    request_schema:\n"
              "      type: object\n"
              "      required: [reason]\n"
              "      properties: {reason: {type: string, maxLength: 200}}\n"
              "  - {method: GET, path: \"/api/v1/orders/{id}\", handler: orders.get}\n"
              "  - {method: GET, path: /api/v1/orders/mine, handler: orders.mine}\n"
              "  - {method: POST, path: /api/v1/login, handler: auth.login, auth: none}\n"
              "  - {method: DELETE, path: /, handler: inventory.wipe, roles: []}\n");
    of_diag_print(&x.diag, stderr);
    assert_int_equal(x.rc, 0);
    assert_int_equal(x.diag.errors, 0);
    assert_int_equal(x.n, 5);

    const of_route *r = &x.routes[0];
    assert_int_equal(r->method, OF_HTTP_POST);
    assert_string_equal(r->path, "/api/v1/orders/{id}/cancel");
    assert_int_equal(r->n_segments, 5);
    assert_string_equal(r->segments[0].text, "api");
    assert_false(r->segments[0].is_param);
    assert_string_equal(r->segments[3].text, "id");
    assert_true(r->segments[3].is_param);
    assert_string_equal(r->segments[4].text, "cancel");
    assert_string_equal(r->handler, "orders.cancel");
    assert_string_equal(r->stage, "orders");
    assert_string_equal(r->handler_name, "cancel");
    assert_int_equal(r->auth_required, 1); /* the default */
    assert_int_equal(r->n_roles, 2);
    assert_string_equal(r->roles[0], "admin");
    assert_string_equal(r->roles[1], "support");
    assert_string_equal(r->summary, "Cancel an order");
    assert_int_equal(r->line, 3);
    assert_int_equal(r->column, 5);
    json_error_t err;
    json_t *schema = json_loads(r->request_schema, 0, &err);
    assert_non_null(schema);
    assert_string_equal(json_string_value(json_object_get(schema, "type")), "object");
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(schema, "properties"), "reason"), "maxLength")),
        200);
    json_decref(schema);

    assert_int_equal(x.routes[1].method, OF_HTTP_GET);
    assert_null(x.routes[1].summary);
    assert_null(x.routes[1].request_schema);
    assert_int_equal(x.routes[3].auth_required, 0);
    assert_string_equal(x.routes[3].stage, "auth");
    assert_int_equal(x.routes[4].n_segments, 0);
    assert_int_equal(x.routes[4].method, OF_HTTP_DELETE);
    parsed_free(&x);
}

static void test_no_routes(void **state)
{
    (void)state;
    parsed x;
    parse(&x, "pipeline: shop\n");
    assert_int_equal(x.rc, 0);
    assert_int_equal(x.n, 0);
    parsed_free(&x);
    parse(&x, "routes:\n");
    assert_int_equal(x.rc, 0);
    assert_int_equal(x.n, 0);
    parsed_free(&x);
    parse(&x, "routes: []\n");
    assert_int_equal(x.rc, 0);
    assert_int_equal(x.n, 0);
    parsed_free(&x);
}

static void test_method_errors(void **state)
{
    (void)state;
    expect_only_error("routes:\n  - {method: FETCH, path: /a, handler: orders.a}\n", 2, 14,
                      "unknown method 'FETCH'");
    expect_only_error("routes:\n  - {method: post, path: /a, handler: orders.a}\n", 2, 14,
                      "did you mean 'POST'");
    expect_only_error("routes:\n  - {path: /a, handler: orders.a}\n", 2, 5,
                      "missing required key 'method'");
    expect_only_error("routes:\n  - {method: [GET], path: /a, handler: orders.a}\n", 2, 14,
                      "method' must be a string");
}

static void test_path_errors(void **state)
{
    (void)state;
    expect_only_error("routes:\n  - {method: GET, path: a/b, handler: orders.a}\n", 2, 25,
                      "must start with '/'");
    expect_only_error("routes:\n  - {method: GET, path: /a/b/, handler: orders.a}\n", 2, 25,
                      "must not end with '/'");
    expect_only_error("routes:\n  - {method: GET, path: /a//b, handler: orders.a}\n", 2, 25,
                      "empty segment");
    expect_only_error("routes:\n  - {method: GET, path: \"/a/{Id}\", handler: orders.a}\n", 2, 25,
                      "bad parameter name 'Id'");
    expect_only_error("routes:\n  - {method: GET, path: \"/a/{}\", handler: orders.a}\n", 2, 25,
                      "bad parameter name ''");
    expect_only_error("routes:\n  - {method: GET, path: \"/a/x{id}\", handler: orders.a}\n", 2, 25,
                      "must be a whole segment");
    expect_only_error("routes:\n  - {method: GET, path: \"/a/{id}/b/{id}\", handler: orders.a}\n",
                      2, 25, "names parameter 'id' twice");
    expect_only_error("routes:\n  - {method: GET, path: /a/../b, handler: orders.a}\n", 2, 25,
                      "a '..' segment");
    expect_only_error("routes:\n  - {method: GET, path: /a/%41, handler: orders.a}\n", 2, 25,
                      "the character '%'");
    expect_only_error("routes:\n  - {method: GET, path: \"/a b\", handler: orders.a}\n", 2, 25,
                      "the character ' '");
    expect_only_error("routes:\n  - {method: GET, path: /a?x=1, handler: orders.a}\n", 2, 25,
                      "the character '?'");
    expect_only_error("routes:\n  - {method: GET, path: /healthz, handler: orders.a}\n", 2, 25,
                      "served by the gateway itself");
    expect_only_error("routes:\n  - {method: GET, path: /api/openapi.json, handler: orders.a}\n", 2,
                      25, "served by the gateway itself");
    expect_only_error("routes:\n  - {method: GET, handler: orders.a}\n", 2, 5,
                      "missing required key 'path'");
    char yaml[2400];
    snprintf(yaml, sizeof(yaml), "routes:\n  - {method: GET, path: /%01100d, handler: orders.a}\n",
             0);
    expect_only_error(yaml, 2, 25, "at most 1024");
    strcpy(yaml, "routes:\n  - {method: GET, path: ");
    for (int i = 0; i < 33; i++)
        strcat(yaml, "/s");
    strcat(yaml, ", handler: orders.a}\n");
    expect_only_error(yaml, 2, 25, "more than 32 segments");
}

static void test_handler_errors(void **state)
{
    (void)state;
    expect_only_error("routes:\n  - {method: GET, path: /a, handler: orders}\n", 2, 38,
                      "must be <stage>.<handler>");
    expect_only_error("routes:\n  - {method: GET, path: /a, handler: orders.Get}\n", 2, 38,
                      "must be <stage>.<handler>");
    expect_only_error("routes:\n  - {method: GET, path: /a, handler: .get}\n", 2, 38,
                      "must be <stage>.<handler>");
    expect_only_error("routes:\n  - {method: GET, path: /a, handler: order.get}\n", 2, 38,
                      "has no stage 'order' (did you mean 'orders'?)");
    expect_only_error("routes:\n  - {method: GET, path: /a, handler: payment.get}\n", 2, 38,
                      "has no stage 'payment'");
    expect_only_error("routes:\n  - {method: GET, path: /a}\n", 2, 5,
                      "missing required key 'handler'");
}

static void test_auth_and_roles_errors(void **state)
{
    (void)state;
    expect_only_error("routes:\n  - {method: GET, path: /a, handler: orders.a, auth: maybe}\n", 2,
                      54, "auth must be 'required' or 'none'");
    expect_only_error(
        "routes:\n  - {method: GET, path: /a, handler: orders.a, auth: none, roles: [admin]}\n", 2,
        67, "roles need auth: required");
    expect_only_error("routes:\n  - {method: GET, path: /a, handler: orders.a, roles: admin}\n", 2,
                      55, "must be a list of role names");
    expect_only_error(
        "routes:\n  - {method: GET, path: /a, handler: orders.a, roles: [admin, admin]}\n", 2, 63,
        "lists role 'admin' twice");
    expect_only_error("routes:\n  - {method: GET, path: /a, handler: orders.a, roles: [\"a b\"]}\n",
                      2, 56, "may hold only");
    expect_only_error("routes:\n  - {method: GET, path: /a, handler: orders.a, summary: [x]}\n", 2,
                      57, "summary' must be a string");
    expect_only_error(
        "routes:\n  - {method: GET, path: /a, handler: orders.a, request_schema: {type: object}}\n",
        2, 64, "a GET request has no body");
    expect_only_error(
        "routes:\n  - {method: POST, path: /a, handler: orders.a, request_schema: object}\n", 2, 65,
        "request_schema must be a mapping");
    expect_only_error("routes:\n  - {method: GET, path: /a, handler: orders.a, websocket: maybe}\n",
                      2, 59, "websocket must be true or false");
    expect_only_error("routes:\n  - {method: POST, path: /a, handler: orders.a, websocket: true}\n",
                      2, 60, "a WebSocket route is opened with GET, not POST");
    expect_only_error(
        "routes:\n  - {method: GET, path: \"/{id}/events\", handler: orders.a, websocket: true}\n",
        2, 71, "must begin with a fixed segment");
    expect_only_error("routes:\n  - {method: POST, path: /a, handler: orders.a, batch: 0}\n", 2, 56,
                      "batch must be an integer from 1 to 256; got '0'");
    expect_only_error("routes:\n  - {method: POST, path: /a, handler: orders.a, batch: 257}\n", 2,
                      56, "batch must be an integer from 1 to 256; got '257'");
    expect_only_error("routes:\n  - {method: POST, path: /a, handler: orders.a, batch: many}\n", 2,
                      56, "batch must be an integer from 1 to 256; got 'many'");
    expect_only_error("routes:\n  - {method: POST, path: /a, handler: orders.a, batch: [8]}\n", 2,
                      56, "batch must be an integer from 1 to 256; got a sequence");
    expect_only_error("routes:\n  - {method: POST, path: /a, handler: orders.a, batch: "
                      "99999999999999999999999}\n",
                      2, 56, "batch must be an integer from 1 to 256");
    expect_only_error(
        "routes:\n  - {method: GET, path: /a/b, handler: orders.a, websocket: true, batch: 2}\n", 2,
        74, "a WebSocket route cannot be batched");
    parsed x;
    parse(&x, "routes:\n  - {method: GET, path: /a, handler: orders.a, websocket: true}\n");
    assert_int_equal(x.rc, 0);
    assert_int_equal(x.routes[0].websocket, 1);
    assert_int_equal(x.routes[0].batch, 1); /* not given: each request alone */
    parsed_free(&x);
    parse(&x, "routes:\n  - {method: POST, path: /a, handler: orders.a, batch: 256}\n");
    assert_int_equal(x.rc, 0);
    assert_int_equal(x.routes[0].batch, 256);
    parsed_free(&x);
    parse(&x, "routes:\n  - {method: GET, path: /a, hander: orders.a}\n");
    assert_int_equal(x.rc, -1);
    assert_int_equal(x.diag.errors, 2);
    expect_error(&x, 2, 29, "unknown key 'hander' in a route (did you mean 'handler'?)");
    expect_error(&x, 2, 5, "missing required key 'handler'");
    parsed_free(&x);
}

static void test_duplicates(void **state)
{
    (void)state;
    parsed x;
    parse(&x, "routes:\n"
              "  - {method: GET, path: \"/orders/{id}\", handler: orders.get}\n"
              "  - {method: POST, path: \"/orders/{id}\", handler: orders.get}\n"
              "  - {method: GET, path: \"/orders/{id}\", handler: orders.other}\n"
              "  - {method: GET, path: \"/orders/{order_id}\", handler: orders.other}\n"
              "  - {method: GET, path: /orders/mine, handler: orders.mine}\n");
    assert_int_equal(x.rc, -1);
    assert_int_equal(x.diag.errors, 2);
    expect_error(&x, 4, 25, "duplicate route GET /orders/{id} (first defined at line 2)");
    expect_error(&x, 5, 25, "differ only in parameter names");
    parsed_free(&x);
}

static void test_shape_errors(void **state)
{
    (void)state;
    parsed x;
    parse(&x, "routes: {a: b}\n");
    assert_int_equal(x.rc, -1);
    expect_error(&x, 1, 9, "'routes' must be a list");
    parsed_free(&x);
    parse(&x, "routes:\n  - GET /a\n");
    assert_int_equal(x.rc, -1);
    expect_error(&x, 2, 5, "each route must be a mapping");
    parsed_free(&x);
    /* Every problem of a file at once. */
    parse(&x, "routes:\n"
              "  - {method: GET, path: /a/, handler: orders.a}\n"
              "  - {method: PUT, path: /b, handler: nope.b}\n"
              "  - {method: GET, path: /c, handler: orders.c, auth: sometimes}\n");
    assert_int_equal(x.diag.errors, 3);
    expect_error(&x, 2, 25, "must not end with '/'");
    expect_error(&x, 3, 38, "has no stage 'nope'");
    expect_error(&x, 4, 54, "auth must be");
    parsed_free(&x);
}

static void test_method_names(void **state)
{
    (void)state;
    assert_string_equal(of_http_method_name(OF_HTTP_PATCH), "PATCH");
    assert_null(of_http_method_name(OF_HTTP_N_METHODS));
    assert_int_equal(of_http_method_parse("DELETE"), OF_HTTP_DELETE);
    assert_int_equal(of_http_method_parse("delete"), -1);
    assert_int_equal(of_http_method_parse("HEAD"), -1);
    assert_int_equal(of_http_method_parse(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_routes),   cmocka_unit_test(test_no_routes),
        cmocka_unit_test(test_method_errors),  cmocka_unit_test(test_path_errors),
        cmocka_unit_test(test_handler_errors), cmocka_unit_test(test_auth_and_roles_errors),
        cmocka_unit_test(test_duplicates),     cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_method_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
