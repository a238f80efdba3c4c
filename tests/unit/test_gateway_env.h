/* A running gateway for the tests: a pipeline "shop" with a stage "shop" whose handlers are
 * defined here and a stage "auth" with the authenticator, the routes of ROUTES_YAML, on
 * 127.0.0.1 and a free port. Include after cmocka.h and test_gateway_client.h. */
#ifndef OF_TEST_GATEWAY_ENV_H
#define OF_TEST_GATEWAY_ENV_H

#include "gateway.h"
#include "stage_runtime.h"
#include "yamltree.h"

#include <jansson.h>
#include <stdatomic.h>

/* Tokens the test authenticator knows. */
#define TOKEN_ADMIN "adm1n.t0ken"
#define TOKEN_USER  "us3r.t0ken"

static const char ROUTES_YAML[] =
    "routes:\n"
    "  - {method: GET, path: \"/api/v1/echo/{id}\", handler: shop.echo, auth: none,\n"
    "     summary: Echo}\n"
    "  - {method: POST, path: \"/api/v1/echo/{id}\", handler: shop.echo, auth: none}\n"
    "  - {method: PATCH, path: \"/api/v1/echo/{id}\", handler: shop.echo, auth: none}\n"
    "  - {method: GET, path: /api/v1/me, handler: shop.echo}\n"
    "  - {method: DELETE, path: \"/api/v1/admin/items/{item}\", handler: shop.echo,\n"
    "     roles: [admin]}\n"
    "  - {method: POST, path: /api/v1/json, handler: shop.json, auth: none,\n"
    "     request_schema: {type: object}}\n"
    "  - {method: GET, path: /api/v1/nothing, handler: shop.nothing, auth: none}\n"
    "  - {method: GET, path: /api/v1/retry, handler: shop.retry, auth: none}\n"
    "  - {method: GET, path: /api/v1/reject, handler: shop.reject, auth: none}\n"
    "  - {method: PUT, path: /api/v1/conflict, handler: shop.conflict, auth: none}\n"
    "  - {method: POST, path: /api/v1/created, handler: shop.created, auth: none}\n"
    "  - {method: GET, path: /api/v1/orders/mine, handler: shop.mine, auth: none}\n"
    "  - {method: GET, path: \"/api/v1/orders/{id}\", handler: shop.echo, auth: none}\n"
    "  - {method: GET, path: /, handler: shop.echo, auth: none}\n"
    "  - {method: DELETE, path: \"/api/v1/things/{id}\", handler: shop.gone, auth: none}\n";

typedef struct shop_instance {
    _Atomic int calls;
    _Atomic int emitted_ok;
} shop_instance;

static const of_principal *principal_or_null(of_http_request *req)
{
    return of_api_http_principal(req);
}

static of_status respond_json(of_http_request *req, int status, json_t *o)
{
    char *t = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    int rc = t ? of_api_http_respond(req, status, NULL, t, strlen(t), NULL) : -1;
    free(t);
    return rc == 0 ? OF_OK : OF_REJECT;
}

/* Everything the handler can see, as JSON. */
static of_status h_echo(void *instance, of_call *call, of_http_request *req)
{
    shop_instance *si = instance;
    atomic_fetch_add(&si->calls, 1);
    size_t blen;
    const char *body = of_api_http_body(req, &blen);
    const of_principal *p = principal_or_null(req);
    json_t *o = json_object();
    json_object_set_new(o, "method", json_string(of_api_http_method(req)));
    json_object_set_new(o, "path", json_string(of_api_http_path(req)));
    const char *id = of_api_http_param(req, "id"), *item = of_api_http_param(req, "item");
    json_object_set_new(o, "id", id ? json_string(id) : json_null());
    json_object_set_new(o, "item", item ? json_string(item) : json_null());
    const char *q = of_api_http_query(req, "q"), *z = of_api_http_query(req, "z");
    json_object_set_new(o, "q", q ? json_string(q) : json_null());
    json_object_set_new(o, "z", z ? json_string(z) : json_null());
    const char *xt = of_api_http_header(req, "x-TEST");
    json_object_set_new(o, "x_test", xt ? json_string(xt) : json_null());
    json_object_set_new(o, "body", json_stringn(body, blen));
    json_object_set_new(o, "subject", p ? json_string(p->subject) : json_null());
    json_object_set_new(o, "stage", json_string(call->stage->def->name));
    json_object_set_new(o, "input_null", json_boolean(call->input == NULL));
    /* Emitted events are dropped by the default invoke hook (no transaction): no leak. */
    if (of_host_api_get()->emit(call, "out", NULL, 0, "{}", 2, NULL, 0) == 0)
        atomic_fetch_add(&si->emitted_ok, 1);
    return respond_json(req, 200, o);
}

static of_status h_json(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    (void)call;
    size_t len;
    const char *body = of_api_http_body(req, &len);
    json_error_t err;
    json_t *j = json_loadb(body, len, 0, &err);
    if (!j) {
        of_http_json_error(req, &err);
        return OF_OK;
    }
    json_t *o = json_pack("{s:O}", "got", j);
    json_decref(j);
    return respond_json(req, 201, o);
}

static of_status h_nothing(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    (void)call;
    (void)req;
    return OF_OK;
}

static of_status h_retry(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    (void)req;
    of_host_api_get()->set_reason(call, "database busy");
    return OF_RETRY;
}

static of_status h_reject(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    (void)req;
    of_host_api_get()->set_reason(call, "secret internal reason");
    return OF_REJECT;
}

static of_status h_conflict(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    (void)call;
    of_api_http_problem(req, 409, "Out of stock", "SKU-1 has 0 left");
    /* a second answer is refused */
    if (of_api_http_respond(req, 200, NULL, "{}", 2, NULL) != -1)
        return OF_REJECT;
    return OF_OK;
}

static of_status h_created(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    (void)call;
    const char *const injected[] = {"X-Ok: 1", "X-Bad: a\r\nInjected: yes", NULL};
    const char *const managed[] = {"Content-Length: 0", NULL};
    const char *const bad_name[] = {"Bad Name: x", NULL};
    int refused = of_api_http_respond(req, 201, NULL, "{}", 2, injected) == -1 &&
                  of_api_http_respond(req, 201, NULL, "{}", 2, managed) == -1 &&
                  of_api_http_respond(req, 201, NULL, "{}", 2, bad_name) == -1 &&
                  of_api_http_respond(req, 99, NULL, "{}", 2, NULL) == -1 &&
                  of_api_http_respond(req, 201, "text/plain\r\nX: y", "{}", 2, NULL) == -1;
    const char *const headers[] = {"Location: /api/v1/orders/42", "X-Custom:  yes ", NULL};
    char body[64];
    snprintf(body, sizeof(body), "{\"refused\":%s}", refused ? "true" : "false");
    of_api_http_respond(req, 201, "application/vnd.test+json", body, strlen(body), headers);
    return OF_OK;
}

static of_status h_mine(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    (void)call;
    return respond_json(req, 200, json_pack("{s:s}", "route", "mine"));
}

/* 204 with a body given by mistake: the gateway sends no content. */
static of_status h_gone(void *instance, of_call *call, of_http_request *req)
{
    (void)instance;
    (void)call;
    of_api_http_respond(req, 204, NULL, "oops", 4, NULL);
    return OF_OK;
}

static int test_authenticator(void *instance, const char *token, of_principal *out, char *errstr,
                              size_t errstr_size)
{
    (void)instance;
    static const char *const admin_roles[] = {"user", "admin", NULL};
    static const char *const user_roles[] = {"user", NULL};
    if (strcmp(token, TOKEN_ADMIN) == 0) {
        out->subject = "alice";
        out->roles = admin_roles;
        return 0;
    }
    if (strcmp(token, TOKEN_USER) == 0) {
        out->subject = "bob";
        out->roles = user_roles;
        return 0;
    }
    /* A reason with characters WWW-Authenticate may not carry. */
    snprintf(errstr, errstr_size, "token \"expired\"\r\n");
    return -1;
}

static of_status no_process(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const of_stage_descriptor shop_desc = {
    .name = "shop-test",
    .process = no_process,
};

typedef struct gw_env {
    of_stage_def defs[2];
    of_output_map outputs[1];
    of_pipeline p;
    of_stage st[2];
    shop_instance inst;
    of_diag diag;
    of_ydoc *doc;
    of_route *routes;
    size_t n_routes;
    of_gateway *gw;
    struct of_ws_hub *hub; /* set before env_start_with for WebSocket routes; not owned */
    int port;
    _Atomic int kafka_ready;
} gw_env;

static int probe_kafka(void *opaque, char *detail, size_t size)
{
    gw_env *e = opaque;
    if (atomic_load(&e->kafka_ready))
        return 0;
    snprintf(detail, size, "broker 127.0.0.1:9092 unreachable");
    return -1;
}

static int probe_always(void *opaque, char *detail, size_t size)
{
    (void)opaque;
    (void)detail;
    (void)size;
    return 0;
}

/* Builds the pipeline, the stages (handlers registered as init would) and the routes. */
static void env_prepare(gw_env *e, const char *routes_yaml)
{
    memset(e, 0, sizeof(*e));
    of_diag_init(&e->diag);
    e->defs[0].name = (char *)"shop";
    e->defs[1].name = (char *)"auth";
    e->outputs[0].output = (char *)"out";
    e->outputs[0].topic = (char *)"shop.out";
    e->defs[0].outputs = e->outputs;
    e->defs[0].n_outputs = 1;
    e->p.name = (char *)"shop";
    e->p.file = (char *)"shop.yaml";
    e->p.stages = e->defs;
    e->p.n_stages = 2;
    for (int i = 0; i < 2; i++)
        assert_int_equal(of_stage_setup(&e->st[i], "shop", &e->defs[i], &shop_desc, NULL), 0);
    e->st[0].instance = &e->inst;
    assert_int_equal(of_api_http_handler(&e->st[0], "echo", h_echo), 0);
    assert_int_equal(of_api_http_handler(&e->st[0], "json", h_json), 0);
    assert_int_equal(of_api_http_handler(&e->st[0], "nothing", h_nothing), 0);
    assert_int_equal(of_api_http_handler(&e->st[0], "retry", h_retry), 0);
    assert_int_equal(of_api_http_handler(&e->st[0], "reject", h_reject), 0);
    assert_int_equal(of_api_http_handler(&e->st[0], "conflict", h_conflict), 0);
    assert_int_equal(of_api_http_handler(&e->st[0], "created", h_created), 0);
    assert_int_equal(of_api_http_handler(&e->st[0], "mine", h_mine), 0);
    assert_int_equal(of_api_http_handler(&e->st[0], "gone", h_gone), 0);
    assert_int_equal(of_api_http_authenticator(&e->st[1], test_authenticator), 0);
    e->st[0].initialized = e->st[1].initialized = 1;
    e->doc = of_ydoc_load_buffer("shop.yaml", routes_yaml, strlen(routes_yaml), &e->diag);
    assert_non_null(e->doc);
    int rc = of_routes_parse(of_ymap_get(e->doc->root, "routes"), &e->p, "shop.yaml", &e->diag,
                             &e->routes, &e->n_routes);
    if (rc != 0)
        of_diag_print(&e->diag, stderr);
    assert_int_equal(rc, 0);
}

/* A gateway for cfg with the env's stages and routes; 0 or -1 with errstr. */
static int env_start_with(gw_env *e, const of_http_config *cfg, char *errstr, size_t size)
{
    e->gw = of_gateway_new(cfg, NULL, NULL);
    assert_non_null(e->gw);
    of_gateway_set_ws_hub(e->gw, e->hub);
    assert_int_equal(of_gateway_add_stage(e->gw, &e->st[0]), 0);
    assert_int_equal(of_gateway_add_stage(e->gw, &e->st[1]), 0);
    assert_int_equal(of_gateway_add_routes(e->gw, "shop", "shop.yaml", e->routes, e->n_routes), 0);
    assert_int_equal(of_gateway_add_probe(e->gw, "redis", probe_always, NULL), 0);
    assert_int_equal(of_gateway_add_probe(e->gw, "kafka", probe_kafka, e), 0);
    atomic_store(&e->kafka_ready, 1);
    if (of_gateway_start(e->gw, errstr, size) != 0)
        return -1;
    e->port = of_gateway_port(e->gw);
    assert_true(e->port > 0);
    return 0;
}

/* The test configuration: loopback, a free port, small limits. */
static void test_config(of_http_config *cfg)
{
    assert_int_equal(of_http_config_default(cfg), 0);
    free(cfg->listen);
    cfg->listen = strdup("127.0.0.1:0");
    cfg->enabled = 1;
    cfg->threads = 8;
    cfg->max_body = 1024;
    cfg->request_timeout_ms = 500;
}

__attribute__((unused)) static void env_start(gw_env *e)
{
    of_http_config cfg;
    test_config(&cfg);
    char err[2048];
    int rc = env_start_with(e, &cfg, err, sizeof(err));
    of_http_config_free(&cfg);
    if (rc != 0)
        fail_msg("gateway start: %s", err);
}

static void env_free(gw_env *e)
{
    of_gateway_free(e->gw);
    e->gw = NULL;
    of_routes_free(e->routes, e->n_routes);
    of_ydoc_free(e->doc);
    for (int i = 0; i < 2; i++) {
        of_stage_http_free(&e->st[i]);
        of_stage_cleanup(&e->st[i]);
    }
    of_diag_free(&e->diag);
}

/* Parses a JSON body; fails the test when it is not JSON. */
static json_t *body_json(const http_resp *r)
{
    json_error_t err;
    json_t *j = json_loadb(r->body ? r->body : "", r->body_len, 0, &err);
    if (!j)
        fail_msg("not JSON (%s): %s\n%s", err.text, r->head ? r->head : "(no head)",
                 r->body ? r->body : "");
    return j;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A problem+json answer with this status, the standard members and instance = path. */
static json_t *expect_problem(const http_resp *r, int status, const char *instance)
{
    if (r->status != status)
        fail_msg("expected %d, got %d:\n%s\n%s", status, r->status, r->head ? r->head : "",
                 r->body ? r->body : "");
    char ct[128];
    assert_int_equal(resp_header(r, "Content-Type", ct, sizeof(ct)), 0);
    assert_string_equal(ct, "application/problem+json");
    json_t *j = body_json(r);
    assert_string_equal(jstr(j, "type"), "about:blank");
    assert_non_null(jstr(j, "title"));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), status);
    assert_non_null(jstr(j, "detail"));
    if (instance)
        assert_string_equal(jstr(j, "instance"), instance);
    return j;
}

#endif
