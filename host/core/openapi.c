/* The OpenAPI 3.1 document of what the gateway serves: every route (path parameters, bearer
 * security, roles, summary, request schema, the problem answers the gateway may give) and the
 * built-in routes. Served at GET /api/openapi.json. */
#include "gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef OF_VERSION
#define OF_VERSION "0.0.0"
#endif

#define PROBLEM_REF "#/components/schemas/Problem"

/* The gateway's problem answers: status, component name, description. */
static const struct {
    int status;
    const char *name;
    const char *description;
} problems[] = {
    {400, "BadRequest", "The request is malformed (path or query encoding, JSON body, ...)."},
    {401, "Unauthorized", "No bearer token, or the token is not valid."},
    {403, "Forbidden", "The token lacks every role the route allows."},
    {404, "NotFound", "No such route, or the handler found no such resource."},
    {405, "MethodNotAllowed", "The path exists with other methods (see the Allow header)."},
    {413, "ContentTooLarge", "The body is larger than the gateway's max_body."},
    {415, "UnsupportedMediaType", "The body is not application/json (or application/*+json)."},
    {426, "UpgradeRequired", "A WebSocket route asked for without a version 13 upgrade."},
    {429, "TooManyRequests", "A rate limit was reached; retry after Retry-After seconds."},
    {500, "InternalServerError", "The handler failed or answered nothing."},
    {503, "ServiceUnavailable", "A transient failure; retry after Retry-After seconds."},
};

#define N_PROBLEMS (sizeof(problems) / sizeof(problems[0]))

static json_t *problem_schema(void)
{
    return json_pack(
        "{s:s, s:s, s:{s:{s:s, s:s, s:s}, s:{s:s, s:s}, s:{s:s, s:i, s:i}, s:{s:s}, s:{s:s}}, "
        "s:[s,s,s], s:b}",
        "type", "object", "description", "RFC 9457 problem details", "properties", "type", "type",
        "string", "format", "uri-reference", "default", "about:blank", "title", "type", "string",
        "description", "the status's reason phrase or the handler's title", "status", "type",
        "integer", "minimum", 400, "maximum", 599, "detail", "type", "string", "instance", "type",
        "string", "required", "type", "title", "status", "additionalProperties", 1);
}

static json_t *components(void)
{
    json_t *responses = json_object();
    for (size_t i = 0; responses && i < N_PROBLEMS; i++) {
        json_t *r = json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", problems[i].description,
                              "content", "application/problem+json", "schema", "$ref", PROBLEM_REF);
        if (problems[i].status == 401 && r)
            json_object_set_new(r, "headers",
                                json_pack("{s:{s:s, s:{s:s}}}", "WWW-Authenticate", "description",
                                          "Bearer, with error=\"invalid_token\" and an "
                                          "error_description when a token was given",
                                          "schema", "type", "string"));
        if ((problems[i].status == 429 || problems[i].status == 503) && r)
            json_object_set_new(r, "headers",
                                json_pack("{s:{s:s, s:{s:s}}}", "Retry-After", "description",
                                          "seconds to wait", "schema", "type", "integer"));
        if (problems[i].status == 405 && r)
            json_object_set_new(r, "headers",
                                json_pack("{s:{s:s, s:{s:s}}}", "Allow", "description",
                                          "the methods the path has", "schema", "type", "string"));
        json_object_set_new(responses, problems[i].name, r);
    }
    return json_pack("{s:{s:{s:s, s:s, s:s}}, s:{s:o}, s:o}", "securitySchemes", "bearerAuth",
                     "type", "http", "scheme", "bearer", "bearerFormat", "JWT", "schemas",
                     "Problem", problem_schema(), "responses", responses);
}

static void add_problem(json_t *responses, int status)
{
    for (size_t i = 0; i < N_PROBLEMS; i++) {
        if (problems[i].status != status)
            continue;
        char key[8], ref[96];
        snprintf(key, sizeof(key), "%d", status);
        snprintf(ref, sizeof(ref), "#/components/responses/%s", problems[i].name);
        json_object_set_new(responses, key, json_pack("{s:s}", "$ref", ref));
    }
}

/* The path item for `path`, created when absent. */
static json_t *path_item(json_t *paths, const char *path)
{
    json_t *item = json_object_get(paths, path);
    if (!item) {
        item = json_object();
        json_object_set_new(paths, path, item);
    }
    return item;
}

static int has_body(of_http_method m)
{
    return m == OF_HTTP_POST || m == OF_HTTP_PUT || m == OF_HTTP_PATCH;
}

static void lower(const char *s, char *out, size_t size)
{
    size_t i = 0;
    for (; s[i] && i + 1 < size; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    out[i] = '\0';
}

static json_t *route_operation(const of_openapi_route * or, json_t *op_ids, int rate_limited)
{
    const of_route *r = or->route;
    json_t *op = json_object();
    if (!op)
        return NULL;
    /* operationId: the handler, made unique when several routes share it. */
    char id[300], m[16];
    lower(of_http_method_name(r->method), m, sizeof(m));
    snprintf(id, sizeof(id), "%s", r->handler);
    if (json_object_get(op_ids, id))
        snprintf(id, sizeof(id), "%s_%s", r->handler, m);
    for (int k = 2; json_object_get(op_ids, id); k++)
        snprintf(id, sizeof(id), "%s_%s_%d", r->handler, m, k);
    json_object_set_new(op_ids, id, json_true());
    json_object_set_new(op, "operationId", json_string(id));
    if (r->summary)
        json_object_set_new(op, "summary", json_string(r->summary));
    if (or->pipeline)
        json_object_set_new(op, "tags", json_pack("[s]", or->pipeline));

    char desc[1200];
    size_t pos = (size_t)snprintf(desc, sizeof(desc), "Handled by %s.", r->handler);
    if (r->auth_required && r->n_roles) {
        pos += (size_t)snprintf(desc + pos, sizeof(desc) - pos, " Requires a bearer token with %s:",
                                r->n_roles > 1 ? "one of the roles" : "the role");
        for (size_t i = 0; i < r->n_roles && pos < sizeof(desc); i++)
            pos += (size_t)snprintf(desc + pos, sizeof(desc) - pos, "%s %s", i ? "," : "",
                                    r->roles[i]);
        if (pos < sizeof(desc))
            pos += (size_t)snprintf(desc + pos, sizeof(desc) - pos, ".");
    } else if (r->auth_required) {
        pos += (size_t)snprintf(desc + pos, sizeof(desc) - pos, " Requires a bearer token.");
    } else {
        pos += (size_t)snprintf(desc + pos, sizeof(desc) - pos, " No authentication.");
    }
    if (r->websocket && pos < sizeof(desc))
        snprintf(desc + pos, sizeof(desc) - pos,
                 " A WebSocket: open it with an upgrade; a browser, which cannot set headers on "
                 "one, may pass the token as ?access_token=.");
    json_object_set_new(op, "description", json_string(desc));
    if (r->auth_required && r->n_roles) {
        json_t *roles = json_array();
        for (size_t i = 0; i < r->n_roles; i++)
            json_array_append_new(roles, json_string(r->roles[i]));
        json_object_set_new(op, "x-roles", roles);
    }

    json_t *params = json_array();
    for (size_t i = 0; i < r->n_segments; i++)
        if (r->segments[i].is_param)
            json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name",
                                                    r->segments[i].text, "in", "path", "required",
                                                    1, "schema", "type", "string"));
    if (json_array_size(params))
        json_object_set_new(op, "parameters", params);
    else
        json_decref(params);

    /* Without a global security requirement, an operation without `security` is public. */
    if (r->auth_required)
        json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearerAuth"));
    else
        json_object_set_new(op, "security", json_array());

    if (has_body(r->method)) {
        json_t *schema = NULL;
        if (r->request_schema) {
            json_error_t err;
            schema = json_loads(r->request_schema, 0, &err);
        }
        if (!schema)
            schema = json_object();
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b, s:{s:{s:o}, s:{s:o}}}", "required",
                                      r->request_schema != NULL, "content", "application/json",
                                      "schema", schema, "application/*+json", "schema",
                                      json_deep_copy(schema)));
    }

    json_t *responses = json_object();
    if (r->websocket) {
        json_object_set_new(
            responses, "101",
            json_pack("{s:s}", "description",
                      "Switching Protocols: a WebSocket (RFC 6455) of UTF-8 JSON text messages "
                      "from the server; what the client sends is ignored"));
        add_problem(responses, 426);
    } else {
        json_object_set_new(responses, "2XX",
                            json_pack("{s:s}", "description", "Success: the handler's answer"));
    }
    add_problem(responses, 400);
    if (r->auth_required)
        add_problem(responses, 401);
    if (r->auth_required && r->n_roles)
        add_problem(responses, 403);
    add_problem(responses, 404);
    add_problem(responses, 405);
    if (has_body(r->method)) {
        add_problem(responses, 413);
        add_problem(responses, 415);
    }
    if (rate_limited)
        add_problem(responses, 429);
    add_problem(responses, 500);
    add_problem(responses, 503);
    json_object_set_new(op, "responses", responses);
    return op;
}

static void add_builtins(json_t *paths, json_t *op_ids)
{
    json_object_set_new(
        path_item(paths, "/healthz"), "get",
        json_pack("{s:s, s:s, s:s, s:[], s:{s:{s:s, s:{s:{s:{s:s, s:{s:{s:s, s:s}}}}}}}}",
                  "operationId", "healthz", "summary", "Liveness: the process serves HTTP",
                  "description", "Built in. Always 200 while the gateway runs.", "security",
                  "responses", "200", "description", "Alive", "content", "application/json",
                  "schema", "type", "object", "properties", "status", "type", "string", "const",
                  "ok"));
    json_object_set_new(op_ids, "healthz", json_true());
    json_t *ready_checks =
        json_pack("{s:s, s:{s:s, s:{s:{s:s, s:[s,s]}, s:{s:s}}}}", "type", "object",
                  "additionalProperties", "type", "object", "properties", "status", "type",
                  "string", "enum", "up", "down", "detail", "type", "string");
    json_object_set_new(
        path_item(paths, "/readyz"), "get",
        json_pack(
            "{s:s, s:s, s:s, s:[], s:{s:{s:s, s:{s:{s:{s:s, s:{s:{s:s}, s:o}}}}}, "
            "s:{s:s, s:{s:{s:{s:s}}}}}}",
            "operationId", "readyz", "summary",
            "Readiness: every dependency (Kafka, MySQL, Redis, ...) is reachable", "description",
            "Built in. 200 when every readiness probe passes; 503 problem+json whose "
            "`checks` member says which dependency is not ready.",
            "security", "responses", "200", "description", "Ready", "content", "application/json",
            "schema", "type", "object", "properties", "status", "type", "string", "checks",
            json_deep_copy(ready_checks), "503", "description", "Not ready", "content",
            "application/problem+json", "schema", "$ref", PROBLEM_REF));
    json_decref(ready_checks);
    json_object_set_new(op_ids, "readyz", json_true());
    json_object_set_new(path_item(paths, "/api/openapi.json"), "get",
                        json_pack("{s:s, s:s, s:s, s:[], s:{s:{s:s, s:{s:{s:{s:s}}}}}}",
                                  "operationId", "openapi", "summary", "This document",
                                  "description", "Built in. The OpenAPI 3.1 document.", "security",
                                  "responses", "200", "description", "The document", "content",
                                  "application/json", "schema", "type", "object"));
    json_object_set_new(op_ids, "openapi", json_true());
}

json_t *of_openapi_document(const of_openapi_route *routes, size_t n, int rate_limited)
{
    json_t *paths = json_object(), *op_ids = json_object();
    if (!paths || !op_ids) {
        json_decref(paths);
        json_decref(op_ids);
        return NULL;
    }
    add_builtins(paths, op_ids);
    for (size_t i = 0; i < n; i++) {
        const of_route *r = routes[i].route;
        char m[16];
        lower(of_http_method_name(r->method), m, sizeof(m));
        json_t *op = route_operation(&routes[i], op_ids, rate_limited);
        if (op)
            json_object_set_new(path_item(paths, r->path), m, op);
    }
    json_decref(op_ids);
    json_t *doc =
        json_pack("{s:s, s:{s:s, s:s, s:s}, s:s, s:o, s:o}", "openapi", "3.1.0", "info", "title",
                  "orderflow", "version", OF_VERSION, "description",
                  "The HTTP API of the pipelines this orderflowd runs. Errors are RFC 9457 "
                  "application/problem+json.",
                  "jsonSchemaDialect", "https://spec.openapis.org/oas/3.1/dialect/base", "paths",
                  paths, "components", components());
    return doc;
}
