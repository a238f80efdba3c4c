/* The HTTP gateway: the `http:` section of the host configuration, the `routes:` section of a
 * pipeline, the civetweb server that maps a method and a path to a stage's handler (auth
 * filter, roles, rate limits, body limit, content type, RFC 9457 problems), the built-in
 * /healthz, /readyz and /api/openapi.json, and the http_* functions of the host table
 * (ABI 1.1).
 *
 * Lifecycle (the daemon):
 *   of_http_config_parse()            host configuration, `http:` section
 *   of_routes_parse()                 each pipeline's `routes:` (validated with the pipeline)
 *   ... the runner initialises the stages: their init() calls api->http_handler and
 *       api->http_authenticator ...
 *   gw = of_gateway_new(&cfg, invoke, opaque)
 *   of_gateway_set_cache_pool(gw, pool)       optional: shared rate limits through Redis
 *   of_gateway_set_ws_hub(gw, hub)            optional: WebSocket routes (ws_hub.h)
 *   of_gateway_add_stage(gw, stage)           every initialised stage (handlers, authenticator)
 *   of_gateway_add_routes(gw, pipeline, ...)  every pipeline's routes
 *   of_gateway_add_probe(gw, "kafka", ...)    readiness probes for /readyz
 *   of_gateway_start(gw, errstr, size)        resolves every route to a registered handler,
 *                                             checks the authenticator, binds, serves
 *   ...
 *   of_gateway_stop(gw)                       before the runner shuts the stages down: waits for
 *                                             the requests in progress
 *   of_gateway_free(gw)
 */
#ifndef OF_GATEWAY_H
#define OF_GATEWAY_H

#include <orderflow/host_api.h>

#include "diag.h"
#include "pipeline.h"
#include "yamltree.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct of_cache_pool;

/* ---- the `http:` host configuration -------------------------------------------------------- */

#define OF_HTTP_DEFAULT_LISTEN             "127.0.0.1:8080"
#define OF_HTTP_DEFAULT_THREADS            16
#define OF_HTTP_MAX_THREADS                256
#define OF_HTTP_DEFAULT_MAX_BODY           (1024u * 1024u)
#define OF_HTTP_MAX_MAX_BODY               (64u * 1024u * 1024u)
#define OF_HTTP_DEFAULT_REQUEST_TIMEOUT_MS 10000
#define OF_HTTP_MIN_REQUEST_TIMEOUT_MS     100
#define OF_HTTP_MAX_REQUEST_TIMEOUT_MS     (10 * 60 * 1000)

/* rate_limit: token buckets (ratelimit.h). A rate of 0 means no limit of that kind. */
typedef struct of_http_rate_limit {
    double per_principal; /* requests a second per authenticated subject */
    double per_address;   /* requests a second per client address */
    int64_t burst;        /* bucket size: requests allowed at once; default max(1, ceil(rate)) */
} of_http_rate_limit;

typedef struct of_http_config {
    int enabled;                /* 1 when the host configuration has an `http:` section */
    char *listen;               /* "127.0.0.1:8080", "0.0.0.0:8080" or "[::1]:8080" */
    int threads;                /* worker threads (one per connection in progress), 1..256 */
    uint64_t max_body;          /* bytes, 1..64MiB, default 1MiB */
    int64_t request_timeout_ms; /* reading one request (headers and body), default 10s */
    int keep_alive;             /* default 1 */
    char *tls_cert, *tls_key;   /* PEM files (resolved against the config's folder); both or
                                   neither */
    int has_rate_limit;
    of_http_rate_limit rate_limit;
    /* Open WebSockets at most; each holds a gateway thread. -1: the default, threads / 2. */
    int ws_connections;
    /* Where things were written, for errors found only at start (bind, TLS). */
    char *file;
    int line, column;               /* the `http:` key; 0 without a section */
    int listen_line, listen_column; /* the listen value (or the section) */
    int tls_line, tls_column;       /* the tls value */
    int ws_line, ws_column;         /* the websocket_connections value */
} of_http_config;

/* The defaults, enabled = 0. 0, or -1 when out of memory. */
int of_http_config_default(of_http_config *out);
/* Fills *out with the defaults, then with the `http:` section `node` (the value of the key):
 * NULL means no section (enabled = 0); a null value (`http:` alone) means every default;
 * otherwise a mapping. Every problem goes to diag with line:column (unknown keys with "did you
 * mean"). *out must be freed even when diag got errors (the caller then refuses the file). */
void of_http_config_parse(of_http_config *out, const of_ynode *node, const char *file,
                          of_diag *diag);
void of_http_config_free(of_http_config *cfg);
/* Deep copy; 0 or -1 (no memory; *dst is then empty but freeable). */
int of_http_config_copy(of_http_config *dst, const of_http_config *src);

/* ---- routes: in a pipeline --------------------------------------------------------------------
 */

typedef enum of_http_method {
    OF_HTTP_GET = 0,
    OF_HTTP_POST = 1,
    OF_HTTP_PUT = 2,
    OF_HTTP_PATCH = 3,
    OF_HTTP_DELETE = 4,
    OF_HTTP_N_METHODS = 5
} of_http_method;

/* "GET", ...; NULL out of range. */
const char *of_http_method_name(of_http_method m);
/* The method for a name (exact, upper case); -1 when not one of the five. */
int of_http_method_parse(const char *s);

#define OF_ROUTE_MAX_PATH     1024
#define OF_ROUTE_MAX_SEGMENTS 32
#define OF_HTTP_NAME_MAX      64  /* handler, parameter and role names */
#define OF_ROUTE_BATCH_MAX    256 /* requests in one transaction (`batch:`) */

typedef struct of_route_segment {
    char *text;   /* the literal, or the parameter's name without braces */
    int is_param; /* `{name}` */
} of_route_segment;

/* One entry of `routes:`:
 *   - method: POST                              # GET | POST | PUT | PATCH | DELETE
 *     path: /api/v1/orders/{id}/cancel          # exact; {name} segments are parameters
 *     handler: orders.cancel                    # <stage>.<handler registered in its init>
 *     auth: required                            # required (default) | none
 *     roles: [admin]                            # any of them; needs auth: required
 *     summary: Cancel an order                  # for the OpenAPI document
 *     request_schema: {type: object, ...}       # optional JSON Schema of the body (OpenAPI)
 *     websocket: true                           # a GET upgraded to a WebSocket (ABI 1.2)
 *     batch: 64                                 # concurrent requests share a transaction */
typedef struct of_route {
    of_http_method method;
    char *path; /* as written */
    of_route_segment *segments;
    size_t n_segments;  /* 0 for "/" */
    char *handler;      /* "stage.handler" as written */
    char *stage;        /* the part before the last '.' */
    char *handler_name; /* the part after it */
    int auth_required;
    char **roles;
    size_t n_roles;
    char *summary;        /* NULL when absent */
    char *request_schema; /* compact JSON text, NULL when absent */
    int websocket;        /* `websocket: true`: a GET the client upgrades (ABI 1.2) */
    int batch;            /* at most this many requests in one transaction (http_group.h); 1 */
    int line, column;     /* the route's mapping */
} of_route;

/* Validates the value of a pipeline's `routes:` key (NULL or null: no routes) against the
 * pipeline p (its stages must be parsed). Every problem goes to diag with line:column. Returns 0
 * with the routes in *out (*n of them; free with of_routes_free), or -1 when there was an error
 * (*out NULL, *n 0). */
int of_routes_parse(const of_ynode *routes, const of_pipeline *p, const char *file, of_diag *diag,
                    of_route **out, size_t *n);
void of_routes_free(of_route *routes, size_t n);

/* ---- what a stage registers in init (the http_handler / http_authenticator host functions) ----
 */

typedef struct of_http_handler_reg {
    char *name;
    of_http_handler fn;
    of_http_batch_handler batch; /* ABI 1.6; NULL when the stage registered none */
} of_http_handler_reg;

/* struct of_stage's `http` field (stage_runtime.h): NULL until the stage registers something. */
typedef struct of_stage_http {
    of_http_handler_reg *handlers;
    size_t n_handlers, cap_handlers;
    of_authenticator authenticator; /* NULL: none */
} of_stage_http;

/* Frees st->http (of_stage_cleanup calls this). NULL is fine. */
void of_stage_http_free(of_stage *st);
/* The handler a stage registered under name, or NULL. */
of_http_handler of_stage_http_find(const of_stage *st, const char *name);
/* Its batch form (http_batch_handler, ABI 1.6), or NULL. */
of_http_batch_handler of_stage_http_find_batch(const of_stage *st, const char *name);

/* ---- a request, as the handler sees it through the host table ------------------------------ */

typedef struct of_http_pair {
    const char *name;
    const char *value;
} of_http_pair;

/* The SDK's opaque of_http_request. Host-internal; plugins use the http_* functions. */
struct of_http_request {
    const char *method;      /* "GET", ... */
    const char *path;        /* as received, percent-encoded, without the query */
    const char *remote_addr; /* the client's address */
    const of_route *route;   /* NULL for built-in routes */
    of_http_pair *params;    /* decoded `{name}` parameters (owned values) */
    size_t n_params;
    of_http_pair *query; /* decoded query parameters (owned names and values) */
    size_t n_query;
    of_http_pair *headers; /* borrowed from civetweb for the request's duration */
    size_t n_headers;
    char *body; /* owned, NUL-terminated (the NUL is not counted); "" when none */
    size_t body_len;
    int has_principal;
    of_principal principal;  /* subject and roles owned (copied from the authenticator) */
    struct of_ws_client *ws; /* a WebSocket route's client being opened (ws_hub.h), or NULL */
    char trace_id[33];       /* the request's trace (32 hex digits), "" when the gateway set none */
    /* The answer. */
    int answered;
    int status;
    char *content_type;
    char *resp_body;
    size_t resp_len;
    char **resp_headers; /* "Name: value", owned */
    size_t n_resp_headers;
};

/* The http_* functions of the host table (host_api.h documents them). Each tolerates NULL and
 * bad arguments (logs and fails) instead of crashing the host. */
int of_api_http_handler(of_stage *stage, const char *name, of_http_handler fn);
int of_api_http_authenticator(of_stage *stage, of_authenticator fn);
int of_api_http_batch_handler(of_stage *stage, const char *name, of_http_batch_handler fn);
const char *of_api_http_method(const of_http_request *req);
const char *of_api_http_path(const of_http_request *req);
const char *of_api_http_param(const of_http_request *req, const char *name);
const char *of_api_http_query(const of_http_request *req, const char *name);
const char *of_api_http_header(const of_http_request *req, const char *name);
const void *of_api_http_body(const of_http_request *req, size_t *len);
const of_principal *of_api_http_principal(const of_http_request *req);
int of_api_http_respond(of_http_request *req, int status, const char *content_type,
                        const void *body, size_t len, const char *const *headers);
int of_api_http_problem(of_http_request *req, int status, const char *title, const char *detail);
/* The ws_* functions (ABI 1.2; hostapi_ws.c). */
int of_api_ws_subscribe(of_http_request *req, const char *channel);
int of_api_ws_send(of_http_request *req, const void *msg, size_t len);
int of_api_ws_publish(of_stage *stage, const char *channel, const void *msg, size_t len);

/* Answers 400 application/problem+json for a body that is not valid JSON, saying where: detail
 * "the body is not valid JSON: <text> (line L, column C, byte P)" and the extension members
 * line, column and position. For handlers that parse the body with jansson. 0, or -1 when
 * already answered. */
int of_http_json_error(of_http_request *req, const json_error_t *error);
/* The same without jansson's type (for a host-table slot, should plugins get it). */
int of_http_json_error_at(of_http_request *req, const char *text, int line, int column,
                          int position);

/* Forgets an answer (for an invoke hook that must replace it, e.g. when the commit failed). */
void of_http_request_clear_response(of_http_request *req);

/* Frees what a request owns (params, query, body, principal, answer); not the struct. */
void of_http_request_release(of_http_request *req);

/* ---- RFC 9457 problems (problem.c) ----------------------------------------------------------- */

/* The reason phrase of a status ("Not Found"); "Unknown" for others. */
const char *of_http_status_text(int status);
/* A problem document {type, title, status, detail, instance} as compact JSON (malloc'd), with
 * type "about:blank"; title NULL means the status's reason phrase; detail and instance may be
 * NULL (left out). extra (may be NULL) adds members; it is not consumed. Invalid UTF-8 in the
 * strings is replaced. NULL when out of memory. */
char *of_problem_json(int status, const char *title, const char *detail, const char *instance,
                      const json_t *extra);
/* 1 when s[0..n) is valid UTF-8 (as jansson accepts it), else 0. */
int of_http_utf8_valid(const char *s, size_t n);
/* A JSON string of s with every byte that is not UTF-8 replaced by U+FFFD; NULL: no memory. */
json_t *of_json_string_lossy(const char *s);

/* ---- the gateway ------------------------------------------------------------------------------
 */

typedef struct of_gateway of_gateway;

/* How a route's handler runs: the lead's hook wraps it in the stage's database transaction and
 * the outbox. It must run fn(stage->instance, call, req) with an of_call whose stage is `stage`
 * and whose input is NULL, and return what it returned (or its own verdict). */
typedef of_status (*of_gateway_invoke_fn)(void *opaque, of_stage *stage, of_http_handler fn,
                                          of_http_request *req);
/* The default hook: of_call_init(stage, NULL, 1), the handler, of_call_reset. What the handler
 * emitted is dropped (there is no transaction to publish it from). */
of_status of_gateway_invoke_default(void *opaque, of_stage *stage, of_http_handler fn,
                                    of_http_request *req);

/* A readiness probe for /readyz: 0 when the dependency is ready; -1 and a short reason in
 * detail otherwise. Called on the gateway's threads, possibly at the same time. */
typedef int (*of_gateway_probe_fn)(void *opaque, char *detail, size_t detail_size);

/* cfg is copied. invoke NULL: of_gateway_invoke_default. NULL when out of memory. */
of_gateway *of_gateway_new(const of_http_config *cfg, of_gateway_invoke_fn invoke,
                           void *invoke_opaque);
/* Shared rate limits: the buckets live in this Redis (borrowed; must outlive the gateway). Without
 * it they are per process. Before start. */
void of_gateway_set_cache_pool(of_gateway *gw, struct of_cache_pool *pool);
/* The hub WebSocket routes' connections join (borrowed; it must outlive the gateway's stop).
 * Without one, WebSocket routes answer 503. */
struct of_ws_hub;
void of_gateway_set_ws_hub(of_gateway *gw, struct of_ws_hub *hub);
/* Serves /dashboard and its feed /dashboard/ws (dashboard.h); before of_gateway_start. */
struct of_dashboard;
void of_gateway_set_dashboard(of_gateway *gw, struct of_dashboard *d);
/* How many WebSockets the configuration allows open at once. */
int of_gateway_ws_limit(const of_http_config *cfg);
/* A hub (ws_hub.h) that writes to this gateway's connections, for of_gateway_set_ws_hub and the
 * runner (ws_publish); redis NULL: this host only. Start it before the stages run. */
struct of_redis_config;
struct of_metrics;
struct of_ws_hub *of_gateway_ws_hub_new(const of_http_config *cfg,
                                        const struct of_redis_config *redis,
                                        struct of_metrics *metrics);
/* The metric registry (borrowed; it must outlive the gateway): served at /metrics, and the
 * gateway counts requests (http_requests by route pattern, method and status class,
 * http_request_duration_seconds, http_rate_limited) and registers ws_connections and ready
 * (the readiness probes). Before start. */
void of_gateway_set_metrics(of_gateway *gw, struct of_metrics *metrics);
/* A stage whose handlers and authenticator the gateway may use (borrowed: the runner owns it and
 * it must outlive the gateway's stop). Before start. 0 or -1 (no memory). */
int of_gateway_add_stage(of_gateway *gw, of_stage *stage);
/* The routes of a pipeline (borrowed: they must outlive the gateway). file names the pipeline
 * file in start errors. Before start. 0 or -1 (no memory). */
int of_gateway_add_routes(of_gateway *gw, const char *pipeline, const char *file,
                          const of_route *routes, size_t n);
/* A readiness probe under a name ("kafka", "mysql", "redis"). Before start. 0 or -1. */
int of_gateway_add_probe(of_gateway *gw, const char *name, of_gateway_probe_fn fn, void *opaque);

/* Resolves every route's handler among the added stages (same pipeline, stage named by the
 * route, handler registered by it), checks the routes of different pipelines do not collide,
 * that there is at most one authenticator and that there is one when a route needs auth, then
 * listens and serves. 0, or -1 with every problem in errstr (one per line). */
int of_gateway_start(of_gateway *gw, char *errstr, size_t errstr_size);
/* The port it listens on (the bound one when the configuration said port 0); 0 before start. */
int of_gateway_port(const of_gateway *gw);
/* Stops listening and waits for the requests in progress. Idempotent. */
void of_gateway_stop(of_gateway *gw);

/* Hot reload: from now on the gateway serves the routes of `pipelines` with the handlers and the
 * authenticator of `stages` (the running ones, old and new), checked like at start. Requests
 * in progress finish on the routing they began with; the swap waits for them, so once it
 * returns no request uses a stage left out. 0, or -1 with errstr (the old routing stays). */
int of_gateway_reload(of_gateway *gw, of_stage *const *stages, size_t n_stages,
                      const of_pipeline *const *pipelines, size_t n_pipelines, char *errstr,
                      size_t errstr_size);
/* An informational check /readyz shows without making the host unready ("status":
 * "degraded", with the note as detail), such as a reload that failed; NULL note clears it. */
void of_gateway_set_note(of_gateway *gw, const char *name, const char *note);
void of_gateway_free(of_gateway *gw); /* stops first; NULL is fine */

/* The OpenAPI 3.1 document of what the gateway serves (its routes and the built-in ones), for
 * `orderflow` tooling too. routes: the resolved routes, each with its pipeline name (for tags).
 * (openapi.c) */
typedef struct of_openapi_route {
    const of_route *route;
    const char *pipeline;
} of_openapi_route;
json_t *of_openapi_document(const of_openapi_route *routes, size_t n, int rate_limited);

#endif
