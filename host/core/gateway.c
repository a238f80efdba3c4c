/* The HTTP gateway on civetweb: one begin_request callback answers every request (civetweb
 * serves no files and runs no CGI). A request goes through, in order:
 *
 *   built-in routes (/healthz, /readyz, /api/openapi.json)
 *   rate limit per client address                    429 + Retry-After
 *   the router: method + exact path, {param} segments 404 / 405 + Allow / 400 (bad encoding)
 *   query string                                      400
 *   auth filter (Authorization: Bearer)               401 + WWW-Authenticate
 *   rate limit per principal                          429 + Retry-After
 *   roles                                             403
 *   body size (Content-Length, then while reading)    413 (the connection is closed)
 *   content type for POST/PUT/PATCH with a body       415
 *   the handler, through the invoke hook              its answer; 500 / 503 when none
 *
 * civetweb runs with decode_url off, so the router sees the path as sent: it splits it into
 * segments first and percent-decodes each one after, so "%2F" inside a parameter never becomes
 * a separator, and "." / ".." segments (encoded or not) are refused rather than resolved.
 *
 * A route with `websocket: true` takes the same path up to its handler (a token may also come
 * as ?access_token=, since browsers cannot set headers on a WebSocket); when the handler
 * accepts, begin_request hands the connection back to civetweb, whose WebSocket handshake and
 * read loop then run on this thread for the connection's life, with the hub (ws_hub.h) writing
 * what is published. */
#include "gateway.h"
#include "plugin_path.h"

#include "cache.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"
#include "ratelimit.h"
#include "runner.h"
#include "stage_runtime.h"
#include "timeutil.h"
#include "dashboard.h"
#include "ws_hub.h"

#include <civetweb.h>

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#define REALM "orderflow"

typedef struct gw_route_set {
    char *pipeline;
    char *file;
    const of_route *routes;
    size_t n;
} gw_route_set;

typedef struct gw_route {
    const of_route *def;
    const char *pipeline; /* the set's copy */
    const char *file;
    of_stage *stage;
    of_http_handler fn;
} gw_route;

typedef struct gw_probe {
    char *name;
    of_gateway_probe_fn fn;
    void *opaque;
} gw_probe;

struct of_gateway {
    of_http_config cfg;
    of_gateway_invoke_fn invoke;
    void *invoke_opaque;
    struct of_cache_pool *pool;
    of_stage **stages;
    size_t n_stages;
    gw_route_set *sets;
    size_t n_sets;
    gw_probe *probes;
    size_t n_probes;
    gw_route *routes; /* resolved at start */
    size_t n_routes;
    of_authenticator auth;
    of_stage *auth_stage;
    of_ratelimit *rl_principal, *rl_address;
    char *openapi;
    size_t openapi_len;
    struct mg_context *ctx;
    int lib_inited;
    int port;
    of_ws_hub *ws;       /* borrowed; NULL: WebSocket routes answer 503 */
    of_metrics *metrics; /* borrowed; NULL: no /metrics, no request accounting */
    /* Held for reading while a request is routed, handled and counted, for writing while a
     * reload swaps the routes, stages and OpenAPI document (of_gateway_reload). Writers first,
     * so a steady stream of requests cannot hold a reload off. */
    pthread_rwlock_t routes_mu;
    struct of_dashboard *dashboard; /* borrowed; NULL: no /dashboard */
    pthread_mutex_t note_mu;
    char *note_name, *note; /* an informational /readyz check (a failed reload), or NULL */
};

/* What handle() returns when a WebSocket route's handler accepted the upgrade: begin_request
 * then lets civetweb go on with the handshake. */
#define HANDED_TO_WEBSOCKET (-101)

/* ---------------------------------------------------------------------------------------------
 * Building the gateway
 * ------------------------------------------------------------------------------------------- */

of_status of_gateway_invoke_default(void *opaque, of_stage *stage, of_http_handler fn,
                                    of_http_request *req)
{
    (void)opaque;
    of_call call;
    of_call_init(&call, stage, NULL, 1);
    of_status s = fn(stage->instance, &call, req);
    of_call_reset(&call);
    return s;
}

of_gateway *of_gateway_new(const of_http_config *cfg, of_gateway_invoke_fn invoke,
                           void *invoke_opaque)
{
    of_gateway *gw = calloc(1, sizeof(*gw));
    if (!gw)
        return NULL;
    if (of_http_config_copy(&gw->cfg, cfg) < 0 || !gw->cfg.listen) {
        of_http_config_free(&gw->cfg);
        free(gw);
        return NULL;
    }
    gw->invoke = invoke ? invoke : of_gateway_invoke_default;
    gw->invoke_opaque = invoke_opaque;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&gw->routes_mu, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0 || pthread_mutex_init(&gw->note_mu, NULL) != 0) {
        if (rc == 0)
            pthread_rwlock_destroy(&gw->routes_mu);
        of_http_config_free(&gw->cfg);
        free(gw);
        return NULL;
    }
    return gw;
}

void of_gateway_set_dashboard(of_gateway *gw, struct of_dashboard *d)
{
    if (gw)
        gw->dashboard = d;
}

void of_gateway_set_ws_hub(of_gateway *gw, struct of_ws_hub *hub)
{
    if (gw)
        gw->ws = hub;
}

/* ---- metrics ---- */

#define RATE_LIMITED_HELP "Requests refused by a rate limit (429), by limit"

static void collect_ws(void *opaque, of_metric_sink *sink)
{
    of_gateway *gw = opaque;
    if (!gw->ws)
        return;
    of_ws_stats st;
    of_ws_hub_stats(gw->ws, &st);
    of_metric_sample(sink, NULL, st.clients);
}

/* Runs the readiness probes (as /readyz does): orderflow_ready and one series per check. */
static void collect_ready(void *opaque, of_metric_sink *sink)
{
    of_gateway *gw = opaque;
    int ready = 1;
    for (size_t i = 0; i < gw->n_probes; i++) {
        char detail[256] = "";
        if (gw->probes[i].fn(gw->probes[i].opaque, detail, sizeof(detail)) != 0)
            ready = 0;
    }
    of_metric_sample(sink, NULL, ready);
}

void of_gateway_set_metrics(of_gateway *gw, of_metrics *metrics)
{
    gw->metrics = metrics;
    if (!metrics)
        return;
    of_metrics_collector(metrics, "ws_connections", "Open WebSocket connections", OF_METRIC_GAUGE,
                         collect_ws, gw);
    of_metrics_collector(metrics, "ready", "1 when every readiness check (/readyz) passes, else 0",
                         OF_METRIC_GAUGE, collect_ready, gw);
    if (gw->cfg.has_rate_limit) /* shown at 0 from the start */
        for (int i = 0; i < 2; i++)
            of_metrics_counter_l(metrics, "http_rate_limited", RATE_LIMITED_HELP, NULL, NULL,
                                 (const char *const[]){"limit", i ? "principal" : "address", NULL});
}

int of_gateway_ws_limit(const of_http_config *cfg)
{
    if (cfg->ws_connections >= 0)
        return cfg->ws_connections;
    return cfg->threads / 2;
}

void of_gateway_set_cache_pool(of_gateway *gw, struct of_cache_pool *pool)
{
    if (gw)
        gw->pool = pool;
}

int of_gateway_add_stage(of_gateway *gw, of_stage *stage)
{
    if (!gw || !stage || gw->ctx)
        return -1;
    of_stage **n = realloc(gw->stages, (gw->n_stages + 1) * sizeof(*n));
    if (!n)
        return -1;
    gw->stages = n;
    gw->stages[gw->n_stages++] = stage;
    return 0;
}

int of_gateway_add_routes(of_gateway *gw, const char *pipeline, const char *file,
                          const of_route *routes, size_t n)
{
    if (!gw || gw->ctx || (n && !routes))
        return -1;
    gw_route_set *sets = realloc(gw->sets, (gw->n_sets + 1) * sizeof(*sets));
    if (!sets)
        return -1;
    gw->sets = sets;
    gw_route_set *s = &gw->sets[gw->n_sets];
    s->pipeline = strdup(pipeline ? pipeline : "");
    s->file = strdup(file ? file : "<pipeline>");
    s->routes = routes;
    s->n = n;
    if (!s->pipeline || !s->file) {
        free(s->pipeline);
        free(s->file);
        return -1;
    }
    gw->n_sets++;
    return 0;
}

int of_gateway_add_probe(of_gateway *gw, const char *name, of_gateway_probe_fn fn, void *opaque)
{
    if (!gw || !name || !fn || gw->ctx)
        return -1;
    gw_probe *p = realloc(gw->probes, (gw->n_probes + 1) * sizeof(*p));
    if (!p)
        return -1;
    gw->probes = p;
    if (!(p[gw->n_probes].name = strdup(name)))
        return -1;
    p[gw->n_probes].fn = fn;
    p[gw->n_probes].opaque = opaque;
    gw->n_probes++;
    return 0;
}

int of_gateway_port(const of_gateway *gw)
{
    return gw && gw->ctx ? gw->port : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string ('+' is a space when plus_space). NULL with why set
 * on a bad escape, a NUL byte or invalid UTF-8; NULL with why "" when out of memory. */
static char *pct_decode(const char *s, size_t n, int plus_space, const char **why)
{
    char *out = malloc(n + 1);
    if (!out) {
        *why = "";
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h1 = i + 1 < n ? hexval(s[i + 1]) : -1, h2 = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (h1 < 0 || h2 < 0) {
                free(out);
                *why = "a '%' not followed by two hexadecimal digits";
                return NULL;
            }
            out[o++] = (char)(h1 * 16 + h2);
            i += 2;
        } else if (plus_space && s[i] == '+') {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    if (memchr(out, '\0', o)) {
        free(out);
        *why = "an encoded NUL byte (%00)";
        return NULL;
    }
    if (!of_http_utf8_valid(out, o)) {
        free(out);
        *why = "bytes that are not UTF-8";
        return NULL;
    }
    return out;
}

static const char *header_of(const of_http_request *req, const char *name)
{
    return of_api_http_header(req, name);
}

/* application/json or application/<anything>+json, parameters allowed. */
static int json_content_type(const char *ct)
{
    if (!ct)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return 1;
    if (n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
        strncasecmp(ct + n - 5, "+json", 5) == 0) {
        for (size_t i = 12; i < n - 5; i++)
            if (ct[i] == '/' || ct[i] == ' ' || ct[i] == '\t')
                return 0;
        return 1;
    }
    return 0;
}

static int body_method(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

/* An error_description for WWW-Authenticate: RFC 6750 allows %x20-21 / %x23-5B / %x5D-7E. */
static void auth_param(const char *in, char *out, size_t size)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 1 < size; p++)
        out[o++] = (*p >= 0x20 && *p <= 0x7e && *p != '"' && *p != '\\') ? (char)*p : ' ';
    out[o] = '\0';
}

/* ---------------------------------------------------------------------------------------------
 * Answering
 * ------------------------------------------------------------------------------------------- */

typedef struct answer_opts {
    const char *const *headers; /* "Name: value", NULL-terminated, or NULL */
    int close;                  /* close the connection after the answer */
    int no_store;
} answer_opts;

/* The header lines of one answer, sent through civetweb's response functions or, for a refused
 * WebSocket upgrade (civetweb takes such a connection for a WebSocket already and will not let
 * its response functions write on it), written out by hand. */
typedef struct resp_hdrs {
    char names[40][128];
    const char *values[40];
    size_t n;
} resp_hdrs;

static void hdr_add(resp_hdrs *h, const char *name, const char *value)
{
    if (h->n >= sizeof(h->values) / sizeof(h->values[0]) || strlen(name) >= sizeof(h->names[0]))
        return;
    strcpy(h->names[h->n], name);
    h->values[h->n++] = value;
}

static void add_header_line(resp_hdrs *h, const char *line)
{
    const char *colon = strchr(line, ':');
    if (!colon)
        return;
    size_t n = (size_t)(colon - line);
    if (n == 0 || n >= sizeof(h->names[0]) || h->n >= sizeof(h->values) / sizeof(h->values[0]))
        return;
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    memcpy(h->names[h->n], line, n);
    h->names[h->n][n] = '\0';
    h->values[h->n++] = v;
}

static void send_head_by_hand(struct mg_connection *conn, int status, const resp_hdrs *h)
{
    mg_printf(conn, "HTTP/1.1 %d %s\r\n", status, mg_get_response_code_text(conn, status));
    for (size_t i = 0; i < h->n; i++)
        mg_printf(conn, "%s: %s\r\n", h->names[i], h->values[i]);
    mg_printf(conn, "Connection: close\r\n\r\n");
}

/* 1 while the request being answered on this thread announced a body the gateway has not read
 * (civetweb runs one request at a time per thread). An answer then closes the connection: the
 * unread bytes must never be parsed as the next request (a request smuggled in a body). */
static _Thread_local int body_unread;

static void send_raw(struct mg_connection *conn, int status, const char *ctype, const char *body,
                     size_t len, const char *const *extra, size_t n_extra, const answer_opts *o)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if ((o && o->close) || body_unread)
        mg_disable_connection_keep_alive(conn);
    /* 204 and 304 have no content, not even a length (RFC 9110 8.6). */
    int no_content = status == 204 || status == 304;
    if (no_content)
        len = 0;
    char clen[32];
    snprintf(clen, sizeof(clen), "%zu", len);
    resp_hdrs h;
    h.n = 0;
    if (!no_content) {
        hdr_add(&h, "Content-Type", ctype);
        hdr_add(&h, "Content-Length", clen);
    }
    hdr_add(&h, "X-Content-Type-Options", "nosniff");
    if (o && o->no_store)
        hdr_add(&h, "Cache-Control", "no-store");
    for (size_t i = 0; extra && i < n_extra; i++)
        add_header_line(&h, extra[i]);
    for (size_t i = 0; o && o->headers && o->headers[i]; i++)
        add_header_line(&h, o->headers[i]);
    int rc = mg_response_header_start(conn, status);
    if (rc == -2) {
        mg_disable_connection_keep_alive(conn);
        send_head_by_hand(conn, status, &h);
    } else if (rc < 0) {
        return;
    } else {
        for (size_t i = 0; i < h.n; i++)
            mg_response_header_add(conn, h.names[i], h.values[i], -1);
        mg_response_header_send(conn);
    }
    if (len && !(ri && ri->request_method && strcmp(ri->request_method, "HEAD") == 0))
        mg_write(conn, body, len);
}

/* A problem answer; extra JSON members may be NULL. Returns status (for civetweb's log). */
static int send_problem(struct mg_connection *conn, const char *instance, int status,
                        const char *title, const char *detail, const json_t *extra,
                        const answer_opts *o)
{
    char *text = of_problem_json(status, title, detail, instance, extra);
    static const char fallback[] = "{\"type\":\"about:blank\",\"status\":500}";
    answer_opts opts = o ? *o : (answer_opts){0};
    opts.no_store = 1;
    if (!text)
        send_raw(conn, 500, "application/problem+json", fallback, sizeof(fallback) - 1, NULL, 0,
                 &opts);
    else
        send_raw(conn, status, "application/problem+json", text, strlen(text), NULL, 0, &opts);
    free(text);
    return text ? status : 500;
}

static int send_json(struct mg_connection *conn, int status, const char *text)
{
    answer_opts o = {.no_store = 1};
    send_raw(conn, status, "application/json", text, strlen(text), NULL, 0, &o);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Built-in routes
 * ------------------------------------------------------------------------------------------- */

static int serve_readyz(of_gateway *gw, struct mg_connection *conn, const char *path)
{
    json_t *checks = json_object();
    char reasons[1024];
    size_t pos = 0;
    reasons[0] = '\0';
    int ready = 1;
    for (size_t i = 0; i < gw->n_probes; i++) {
        char detail[256] = "";
        int rc = gw->probes[i].fn(gw->probes[i].opaque, detail, sizeof(detail));
        detail[sizeof(detail) - 1] = '\0';
        json_t *c = json_pack("{s:s}", "status", rc == 0 ? "up" : "down");
        if (rc != 0) {
            ready = 0;
            if (detail[0] && c)
                json_object_set_new(c, "detail", of_json_string_lossy(detail));
            if (pos < sizeof(reasons)) {
                int w = snprintf(reasons + pos, sizeof(reasons) - pos, "%s%s%s%s%s",
                                 pos ? ", " : "", gw->probes[i].name, detail[0] ? " (" : "", detail,
                                 detail[0] ? ")" : "");
                if (w > 0)
                    pos += (size_t)w;
            }
        }
        if (c)
            json_object_set_new(checks, gw->probes[i].name, c);
    }
    pthread_mutex_lock(&gw->note_mu);
    if (gw->note_name && gw->note)
        json_object_set_new(checks, gw->note_name,
                            json_pack("{s:s, s:o}", "status", "degraded", "detail",
                                      of_json_string_lossy(gw->note)));
    pthread_mutex_unlock(&gw->note_mu);
    int status;
    if (ready) {
        json_t *doc = json_pack("{s:s, s:O}", "status", "ready", "checks", checks);
        char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        status = text ? send_json(conn, 200, text)
                      : send_problem(conn, path, 500, NULL, "out of memory", NULL, NULL);
        free(text);
        json_decref(doc);
    } else {
        char detail[1200];
        snprintf(detail, sizeof(detail), "not ready: %s", reasons);
        json_t *extra = json_pack("{s:O}", "checks", checks);
        const char *const hdrs[] = {"Retry-After: 1", NULL};
        answer_opts o = {.headers = hdrs};
        status = send_problem(conn, path, 503, NULL, detail, extra, &o);
        json_decref(extra);
    }
    json_decref(checks);
    return status;
}

/* 1 for the paths of the built-in routes. */
static int builtin_path(const char *path)
{
    return path && (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
                    strcmp(path, "/api/openapi.json") == 0 || strcmp(path, "/metrics") == 0);
}

/* 0 when the request was not for a built-in route; else the status sent. */
static int serve_builtin(of_gateway *gw, struct mg_connection *conn, const char *method,
                         const char *path)
{
    int which = strcmp(path, "/healthz") == 0            ? 1
                : strcmp(path, "/readyz") == 0           ? 2
                : strcmp(path, "/api/openapi.json") == 0 ? 3
                : strcmp(path, "/metrics") == 0          ? 4
                                                         : 0;
    if (!which)
        return 0;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        const char *const hdrs[] = {"Allow: GET, HEAD", NULL};
        answer_opts o = {.headers = hdrs};
        char detail[200];
        snprintf(detail, sizeof(detail), "%s allows GET, not %.20s", path, method);
        return send_problem(conn, path, 405, NULL, detail, NULL, &o);
    }
    if (which == 1)
        return send_json(conn, 200, "{\"status\":\"ok\"}");
    if (which == 2)
        return serve_readyz(gw, conn, path);
    if (which == 4) {
        size_t len = 0;
        char *text = gw->metrics ? of_metrics_render(gw->metrics, &len) : NULL;
        if (!text)
            return send_problem(conn, path, 503, NULL,
                                gw->metrics ? "out of memory" : "metrics are not available", NULL,
                                NULL);
        answer_opts mo = {.no_store = 1};
        send_raw(conn, 200, OF_METRICS_CONTENT_TYPE, text, len, NULL, 0, &mo);
        free(text);
        return 200;
    }
    answer_opts o = {0};
    send_raw(conn, 200, "application/json", gw->openapi, gw->openapi_len, NULL, 0, &o);
    return 200;
}

/* ---------------------------------------------------------------------------------------------
 * The router
 * ------------------------------------------------------------------------------------------- */

typedef struct req_path {
    char *decoded[OF_ROUTE_MAX_SEGMENTS];
    size_t n;
    int too_many;  /* more segments than any route has */
    int has_empty; /* "//" or a trailing slash */
} req_path;

static void req_path_free(req_path *rp)
{
    for (size_t i = 0; i < rp->n; i++)
        free(rp->decoded[i]);
    rp->n = 0;
}

/* Splits the raw path and decodes each segment. 0, or -1 with why (a 400). */
static int split_path(const char *path, req_path *rp, const char **why, char *seg_shown,
                      size_t shown_size)
{
    memset(rp, 0, sizeof(*rp));
    if (strcmp(path, "/") == 0)
        return 0;
    const char *p = path + 1;
    for (;;) {
        size_t n = strcspn(p, "/");
        if (n == 0)
            rp->has_empty = 1;
        if (rp->n == OF_ROUTE_MAX_SEGMENTS) {
            rp->too_many = 1;
            return 0;
        }
        const char *w = NULL;
        char *d = pct_decode(p, n, 0, &w);
        if (!d) {
            snprintf(seg_shown, shown_size, "%.*s", (int)(n > 80 ? 80 : n), p);
            *why = w;
            req_path_free(rp);
            return -1;
        }
        if (strcmp(d, ".") == 0 || strcmp(d, "..") == 0) {
            snprintf(seg_shown, shown_size, "%.*s", (int)(n > 80 ? 80 : n), p);
            *why = "a '.' or '..' segment (paths are matched as sent, never resolved)";
            free(d);
            req_path_free(rp);
            return -1;
        }
        rp->decoded[rp->n++] = d;
        if (!p[n])
            break;
        p += n + 1;
    }
    return 0;
}

/* Whether route r matches the path; *score ranks matches (a literal earlier in the path beats a
 * parameter there). */
static int route_matches(const of_route *r, const req_path *rp, uint64_t *score)
{
    if (r->n_segments != rp->n || rp->too_many || rp->has_empty)
        return 0;
    uint64_t s = 0;
    for (size_t i = 0; i < r->n_segments; i++) {
        const of_route_segment *seg = &r->segments[i];
        if (seg->is_param) {
            if (!rp->decoded[i][0])
                return 0;
        } else {
            if (strcmp(seg->text, rp->decoded[i]) != 0)
                return 0;
            s |= 1ull << (OF_ROUTE_MAX_SEGMENTS - 1 - i);
        }
    }
    *score = s;
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * One request
 * ------------------------------------------------------------------------------------------- */

static int parse_query(of_http_request *req, const char *qs, const char **why)
{
    if (!qs || !*qs)
        return 0;
    size_t cap = 1;
    for (const char *p = qs; *p; p++)
        cap += *p == '&';
    req->query = calloc(cap, sizeof(*req->query));
    if (!req->query) {
        *why = "";
        return -1;
    }
    const char *p = qs;
    for (;;) {
        size_t n = strcspn(p, "&");
        if (n) {
            size_t eq = strcspn(p, "=");
            size_t kn = eq < n ? eq : n;
            char *k = pct_decode(p, kn, 1, why);
            char *v = k ? (eq < n ? pct_decode(p + eq + 1, n - eq - 1, 1, why) : strdup("")) : NULL;
            if (!k || !v) {
                if (k && !v && !*why)
                    *why = "";
                free(k);
                free(v);
                return -1;
            }
            req->query[req->n_query].name = k;
            req->query[req->n_query].value = v;
            req->n_query++;
        }
        if (!p[n])
            break;
        p += n + 1;
    }
    return 0;
}

/* Copies what the authenticator returned into the request. 0 or -1 (no memory / no subject). */
static int keep_principal(of_http_request *req, const of_principal *p)
{
    if (!p->subject || !p->subject[0])
        return -1;
    size_t n = 0;
    while (p->roles && p->roles[n] && n < 256)
        n++;
    char *subject = strdup(p->subject);
    const char **roles = calloc(n + 1, sizeof(*roles));
    if (!subject || !roles) {
        free(subject);
        free(roles);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(roles[i] = strdup(p->roles[i]))) {
            for (size_t k = 0; k < i; k++)
                free((char *)roles[k]);
            free(roles);
            free(subject);
            return -1;
        }
    }
    req->principal.subject = subject;
    req->principal.roles = roles;
    req->has_principal = 1;
    return 0;
}

static int rate_limited(of_ratelimit *rl, const char *kind, const char *id,
                        struct mg_connection *conn, const char *path)
{
    if (!rl)
        return 0;
    char key[1024]; /* the limiter digests long keys itself */
    snprintf(key, sizeof(key), "%s:%s", kind, id);
    int64_t retry_ms = 0;
    if (of_ratelimit_take(rl, key, of_mono_ms(), &retry_ms))
        return 0;
    int64_t secs = retry_ms <= 0 ? 1 : (retry_ms + 999) / 1000;
    char retry[48], detail[160];
    snprintf(retry, sizeof(retry), "Retry-After: %lld", (long long)secs);
    snprintf(detail, sizeof(detail), "too many requests %s; retry in %lld s",
             strcmp(kind, "addr") == 0 ? "from this address" : "for this principal",
             (long long)secs);
    const char *const hdrs[] = {retry, NULL};
    answer_opts o = {.headers = hdrs};
    return send_problem(conn, path, 429, NULL, detail, NULL, &o);
}

/* 401 with WWW-Authenticate; error NULL for "no token". */
static int unauthorized(struct mg_connection *conn, const char *path, const char *error_desc,
                        const char *detail)
{
    char www[400];
    if (error_desc) {
        char safe[200];
        auth_param(error_desc, safe, sizeof(safe));
        snprintf(www, sizeof(www),
                 "WWW-Authenticate: Bearer realm=\"" REALM
                 "\", error=\"invalid_token\", error_description=\"%s\"",
                 safe);
    } else {
        snprintf(www, sizeof(www), "WWW-Authenticate: Bearer realm=\"" REALM "\"");
    }
    const char *const hdrs[] = {www, NULL};
    answer_opts o = {.headers = hdrs};
    return send_problem(conn, path, 401, NULL, detail, NULL, &o);
}

/* Reads the body into req (at most max_body). 0, or the status already sent. */
static int read_body(of_gateway *gw, struct mg_connection *conn, of_http_request *req,
                     long long content_length)
{
    uint64_t max = gw->cfg.max_body;
    size_t cap = content_length > 0 ? (size_t)content_length + 1 : 4096;
    if (cap > max + 1)
        cap = (size_t)max + 1;
    char *buf = malloc(cap + 1);
    if (!buf)
        return send_problem(conn, req->path, 503, NULL, "out of memory", NULL,
                            &(answer_opts){.close = 1});
    size_t len = 0;
    int64_t deadline = of_mono_ms() + gw->cfg.request_timeout_ms;
    for (;;) {
        if (len == cap) {
            if (len > max) {
                free(buf);
                char detail[160];
                snprintf(detail, sizeof(detail), "the body is larger than %llu bytes",
                         (unsigned long long)max);
                return send_problem(conn, req->path, 413, NULL, detail, NULL,
                                    &(answer_opts){.close = 1});
            }
            size_t ncap = cap * 2 > max + 1 ? (size_t)max + 1 : cap * 2;
            char *n = realloc(buf, ncap + 1);
            if (!n) {
                free(buf);
                return send_problem(conn, req->path, 503, NULL, "out of memory", NULL,
                                    &(answer_opts){.close = 1});
            }
            buf = n;
            cap = ncap;
        }
        int r = mg_read(conn, buf + len, cap - len);
        if (r < 0) {
            free(buf);
            return send_problem(conn, req->path, 400, NULL,
                                "the body could not be read (bad chunked encoding, or the "
                                "client went away)",
                                NULL, &(answer_opts){.close = 1});
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > max) {
            free(buf);
            char detail[160];
            snprintf(detail, sizeof(detail), "the body is larger than %llu bytes",
                     (unsigned long long)max);
            return send_problem(conn, req->path, 413, NULL, detail, NULL,
                                &(answer_opts){.close = 1});
        }
        if (of_mono_ms() > deadline) {
            free(buf);
            return send_problem(conn, req->path, 408, NULL,
                                "the body took longer than the request timeout to arrive", NULL,
                                &(answer_opts){.close = 1});
        }
    }
    if (content_length > 0 && len < (size_t)content_length) {
        /* civetweb ends the read at the request timeout like at the end of the body */
        free(buf);
        char detail[200];
        snprintf(detail, sizeof(detail),
                 "the body ended after %zu of %lld bytes (the client stopped sending, or the "
                 "request timeout passed)",
                 len, content_length);
        return send_problem(conn, req->path, 408, NULL, detail, NULL, &(answer_opts){.close = 1});
    }
    buf[len] = '\0';
    body_unread = 0;
    req->body = buf;
    req->body_len = len;
    return 0;
}

static int send_answer(struct mg_connection *conn, const of_http_request *req)
{
    answer_opts o = {.no_store = strncmp(req->content_type, "application/problem+json", 24) == 0};
    send_raw(conn, req->status, req->content_type, req->resp_body, req->resp_len,
             (const char *const *)req->resp_headers, req->n_resp_headers, &o);
    return req->status;
}

/* A handler that gave no answer: a 503 for OF_RETRY, a 500 otherwise, and a log line. */
static int run_handler_failed(struct mg_connection *conn, const gw_route *rt, of_http_request *req,
                              of_status s)
{
    const char *pn = rt->pipeline, *sn = rt->def->stage;
    if (s == OF_RETRY) {
        of_log(OF_LVL_WARN, pn, sn, "http %s %s: handler %s asked for a retry without answering",
               req->method, req->path, rt->def->handler);
        const char *const hdrs[] = {"Retry-After: 1", NULL};
        return send_problem(conn, req->path, 503, NULL,
                            "the service is temporarily unavailable; retry shortly", NULL,
                            &(answer_opts){.headers = hdrs});
    }
    if (s == OF_REJECT)
        of_log(OF_LVL_ERROR, pn, sn, "http %s %s: handler %s failed without answering", req->method,
               req->path, rt->def->handler);
    else
        of_log(OF_LVL_ERROR, pn, sn, "http %s %s: handler %s returned %s without answering",
               req->method, req->path, rt->def->handler, s == OF_OK ? "OK" : "an unknown status");
    return send_problem(conn, req->path, 500, NULL, "the request could not be completed", NULL,
                        NULL);
}

/* Runs the route's handler and answers. */
static int run_handler(of_gateway *gw, struct mg_connection *conn, const gw_route *rt,
                       of_http_request *req)
{
    of_status s = gw->invoke(gw->invoke_opaque, rt->stage, rt->fn, req);
    if (req->answered)
        return send_answer(conn, req);
    return run_handler_failed(conn, rt, req, s);
}

/* A GET on a WebSocket route that is not a proper upgrade (RFC 6455 section 4.2.1). */
static int not_an_upgrade(of_http_request *req, struct mg_connection *conn)
{
    const char *up = header_of(req, "Upgrade"), *co = header_of(req, "Connection");
    const char *key = header_of(req, "Sec-WebSocket-Key");
    const char *ver = header_of(req, "Sec-WebSocket-Version");
    if (!up || strcasecmp(up, "websocket") != 0 || !co || !strcasestr(co, "upgrade")) {
        const char *const hdrs[] = {"Upgrade: websocket", "Connection: Upgrade", NULL};
        return send_problem(conn, req->path, 426, NULL,
                            "this route is a WebSocket: open it with a GET carrying Upgrade: "
                            "websocket and Connection: Upgrade",
                            NULL, &(answer_opts){.headers = hdrs});
    }
    if (!ver || strcmp(ver, "13") != 0) {
        const char *const hdrs[] = {"Sec-WebSocket-Version: 13", NULL};
        return send_problem(conn, req->path, 426, NULL,
                            "only WebSocket version 13 (RFC 6455) is spoken here", NULL,
                            &(answer_opts){.headers = hdrs});
    }
    size_t kl = key ? strlen(key) : 0;
    if (kl != 24 || key[22] != '=' || key[23] != '=')
        return send_problem(conn, req->path, 400, NULL,
                            "Sec-WebSocket-Key must be 16 random bytes in base64", NULL, NULL);
    return 0;
}

/* Runs a WebSocket route's handler: an answer refuses the upgrade; OF_OK without one accepts
 * it, the client (with its subscriptions and first messages) then belonging to the connection. */
static int run_ws_handler(of_gateway *gw, struct mg_connection *conn, const gw_route *rt,
                          of_http_request *req)
{
    if (!gw->ws)
        return send_problem(conn, req->path, 503, NULL, "WebSockets are not available on this host",
                            NULL, NULL);
    int full = 0;
    req->ws = of_ws_client_new(gw->ws, rt->pipeline, &full);
    if (!req->ws) {
        char detail[200];
        snprintf(detail, sizeof(detail), "%s; retry shortly",
                 full ? "this host has as many WebSocket connections as it serves"
                      : "out of memory");
        const char *const hdrs[] = {"Retry-After: 5", NULL};
        return send_problem(conn, req->path, 503, NULL, detail, NULL,
                            &(answer_opts){.headers = hdrs});
    }
    of_status s = gw->invoke(gw->invoke_opaque, rt->stage, rt->fn, req);
    if (req->answered || s != OF_OK) {
        of_ws_client_close(req->ws);
        req->ws = NULL;
        if (req->answered)
            return send_answer(conn, req);
        return run_handler_failed(conn, rt, req, s);
    }
    mg_set_user_connection_data(conn, req->ws);
    req->ws = NULL;
    return HANDED_TO_WEBSOCKET;
}

static void count_limited(of_gateway *gw, const char *kind)
{
    if (gw->metrics)
        of_counter_add_(of_metrics_counter_l(gw->metrics, "http_rate_limited", RATE_LIMITED_HELP,
                                             NULL, NULL,
                                             (const char *const[]){"limit", kind, NULL}),
                        1);
}

/* /dashboard (the page) and /dashboard/ws (its feed: every pipeline's "dashboard" channel, the
 * latest snapshot first). 0 when the request is for neither. */
static int serve_dashboard(of_gateway *gw, struct mg_connection *conn, of_http_request *req)
{
    int page = strcmp(req->path, "/dashboard") == 0, feed = strcmp(req->path, "/dashboard/ws") == 0;
    if (!gw->dashboard || (!page && !feed))
        return 0;
    if (strcmp(req->method, "GET") != 0 && !(page && strcmp(req->method, "HEAD") == 0)) {
        const char *const hdrs[] = {page ? "Allow: GET, HEAD" : "Allow: GET", NULL};
        return send_problem(conn, req->path, 405, NULL, "the dashboard is read with GET", NULL,
                            &(answer_opts){.headers = hdrs});
    }
    if (page) {
        /* Everything is inline: nothing else may load, and only this host may be talked to. */
        const char *const hdrs[] = {
            "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src "
            "'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
            NULL};
        send_raw(conn, 200, "text/html; charset=utf-8", of_dashboard_html, of_dashboard_html_len,
                 NULL, 0, &(answer_opts){.headers = hdrs, .no_store = 1});
        return 200;
    }
    int status = not_an_upgrade(req, conn);
    if (status)
        return status;
    if (!gw->ws)
        return send_problem(conn, req->path, 503, NULL, "WebSockets are not available", NULL, NULL);
    int full = 0;
    of_ws_client *c = of_ws_client_new(gw->ws, OF_WS_ANY_PIPELINE, &full);
    if (!c) {
        const char *const hdrs[] = {"Retry-After: 5", NULL};
        return send_problem(conn, req->path, 503, NULL,
                            full ? "this host has as many WebSocket connections as it serves"
                                 : "out of memory",
                            NULL, &(answer_opts){.headers = hdrs});
    }
    char *latest = of_dashboard_latest(gw->dashboard);
    if (of_ws_client_subscribe(c, OF_DASHBOARD_CHANNEL) != 0 ||
        (latest && of_ws_client_send_first(c, latest, strlen(latest)) != 0)) {
        free(latest);
        of_ws_client_close(c);
        return send_problem(conn, req->path, 503, NULL, "out of memory", NULL, NULL);
    }
    free(latest);
    mg_set_user_connection_data(conn, c);
    return HANDED_TO_WEBSOCKET;
}

static int handle(of_gateway *gw, struct mg_connection *conn, of_http_request *req,
                  const struct mg_request_info *ri)
{
    const char *method = req->method, *path = req->path;
    int status;
    if ((status = serve_dashboard(gw, conn, req)))
        return status;
    if ((status = serve_builtin(gw, conn, method, path)))
        return status;
    if ((status = rate_limited(gw->rl_address, "addr", ri->remote_addr, conn, path))) {
        count_limited(gw, "address");
        return status;
    }

    /* Route. */
    req_path rp;
    const char *why = NULL;
    char shown[100];
    if (split_path(path, &rp, &why, shown, sizeof(shown)) < 0) {
        if (why && !*why)
            return send_problem(conn, path, 503, NULL, "out of memory", NULL, NULL);
        char detail[300];
        snprintf(detail, sizeof(detail), "the path segment '%s' has %s", shown, why);
        return send_problem(conn, path, 400, NULL, detail, NULL, NULL);
    }
    const gw_route *best = NULL;
    uint64_t best_score = 0;
    unsigned allowed = 0;
    int m = of_http_method_parse(method);
    for (size_t i = 0; i < gw->n_routes; i++) {
        uint64_t score;
        if (!route_matches(gw->routes[i].def, &rp, &score))
            continue;
        allowed |= 1u << gw->routes[i].def->method;
        if ((int)gw->routes[i].def->method == m && (!best || score > best_score)) {
            best = &gw->routes[i];
            best_score = score;
        }
    }
    if (!best) {
        req_path_free(&rp);
        if (allowed) {
            char allow[80] = "Allow: ";
            for (int k = 0; k < OF_HTTP_N_METHODS; k++)
                if (allowed & (1u << k)) {
                    if (allow[7])
                        strcat(allow, ", ");
                    strcat(allow, of_http_method_name((of_http_method)k));
                }
            char detail[200];
            snprintf(detail, sizeof(detail), "this path allows %s, not %.20s", allow + 7, method);
            const char *const hdrs[] = {allow, NULL};
            return send_problem(conn, path, 405, NULL, detail, NULL,
                                &(answer_opts){.headers = hdrs});
        }
        size_t len = strlen(path);
        const char *hint = len > 1 && path[len - 1] == '/'
                               ? "no route for this path (routes match exactly: try it without "
                                 "the trailing slash)"
                               : "no route for this path";
        return send_problem(conn, path, 404, NULL, hint, NULL, NULL);
    }
    const of_route *r = best->def;
    req->route = r;

    /* Path parameters. */
    size_t n_params = 0;
    for (size_t i = 0; i < r->n_segments; i++)
        n_params += r->segments[i].is_param != 0;
    if (n_params && !(req->params = calloc(n_params, sizeof(*req->params)))) {
        req_path_free(&rp);
        return send_problem(conn, path, 503, NULL, "out of memory", NULL, NULL);
    }
    for (size_t i = 0; i < r->n_segments; i++) {
        if (r->segments[i].is_param) {
            req->params[req->n_params].name = r->segments[i].text;
            req->params[req->n_params].value = rp.decoded[i]; /* owned by the request now */
            req->n_params++;
            rp.decoded[i] = NULL;
        }
    }
    req_path_free(&rp);

    if (r->websocket && (status = not_an_upgrade(req, conn)))
        return status;

    /* Query. */
    why = NULL;
    if (parse_query(req, ri->query_string, &why) < 0) {
        if (why && !*why)
            return send_problem(conn, path, 503, NULL, "out of memory", NULL, NULL);
        char detail[200];
        snprintf(detail, sizeof(detail), "the query string has %s", why ? why : "an error");
        return send_problem(conn, path, 400, NULL, detail, NULL, NULL);
    }

    /* Authentication. */
    if (r->auth_required) {
        const char *authz = header_of(req, "Authorization");
        const char *tok = NULL;
        if ((!authz || !*authz) && r->websocket)
            tok = of_api_http_query(req, "access_token");
        if (tok) {
            /* checked like a header's token below */
        } else if (!authz || !*authz) {
            return unauthorized(conn, path, NULL,
                                r->websocket
                                    ? "this route needs a bearer token (Authorization: Bearer "
                                      "<token>, or ?access_token=<token>)"
                                    : "this route needs a bearer token (Authorization: Bearer "
                                      "<token>)");
        } else if (strncasecmp(authz, "Bearer", 6) != 0 || (authz[6] != ' ' && authz[6] != '\t')) {
            return unauthorized(conn, path, NULL,
                                "the Authorization header must use the Bearer scheme");
        } else {
            tok = authz + 6;
        }
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t tn = strlen(tok);
        while (tn && (tok[tn - 1] == ' ' || tok[tn - 1] == '\t'))
            tn--;
        int bad = tn == 0;
        for (size_t i = 0; i < tn && !bad; i++) {
            char ch = tok[i];
            bad = !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || strchr("-._~+/=", ch));
        }
        if (bad)
            return unauthorized(conn, path, "malformed bearer token",
                                "the bearer token is malformed");
        char *token = strndup(tok, tn);
        if (!token)
            return send_problem(conn, path, 503, NULL, "out of memory", NULL, NULL);
        of_principal p = {0};
        char err[256] = "";
        int rc = gw->auth(gw->auth_stage->instance, token, &p, err, sizeof(err));
        explicit_bzero(token, tn);
        free(token);
        err[sizeof(err) - 1] = '\0';
        if (rc != 0)
            return unauthorized(conn, path, err[0] ? err : "invalid token",
                                err[0] ? err : "the bearer token is not valid");
        if (keep_principal(req, &p) < 0) {
            of_log(OF_LVL_ERROR, gw->auth_stage->pipeline_name, gw->auth_stage->def->name,
                   "authenticator accepted a token without a subject (or out of memory)");
            return send_problem(conn, path, 500, NULL, "the token could not be checked", NULL,
                                NULL);
        }
        if ((status =
                 rate_limited(gw->rl_principal, "principal", req->principal.subject, conn, path))) {
            count_limited(gw, "principal");
            return status;
        }
        if (r->n_roles) {
            int ok = 0;
            for (size_t i = 0; i < r->n_roles && !ok; i++)
                for (size_t k = 0; req->principal.roles[k] && !ok; k++)
                    ok = strcmp(req->principal.roles[k], r->roles[i]) == 0;
            if (!ok) {
                char detail[600];
                size_t pos = (size_t)snprintf(detail, sizeof(detail), "this route needs %s",
                                              r->n_roles > 1 ? "one of the roles" : "the role");
                for (size_t i = 0; i < r->n_roles && pos < sizeof(detail); i++)
                    pos += (size_t)snprintf(detail + pos, sizeof(detail) - pos, "%s %s",
                                            i ? "," : "", r->roles[i]);
                return send_problem(conn, path, 403, NULL, detail, NULL, NULL);
            }
        }
    }

    /* Body. */
    long long cl = ri->content_length;
    const char *te = header_of(req, "Transfer-Encoding");
    int chunked = te && strcasestr(te, "chunked") != NULL;
    if (cl > 0 && (unsigned long long)cl > gw->cfg.max_body) {
        char detail[200];
        snprintf(detail, sizeof(detail), "the body is %lld bytes; at most %llu are accepted", cl,
                 (unsigned long long)gw->cfg.max_body);
        return send_problem(conn, path, 413, NULL, detail, NULL, &(answer_opts){.close = 1});
    }
    const char *ct = header_of(req, "Content-Type");
    if (body_method(method) && cl > 0 && !json_content_type(ct)) {
        char detail[200];
        snprintf(detail, sizeof(detail),
                 "the body must be application/json (or application/*+json); got %.80s",
                 ct ? ct : "no Content-Type");
        const char *const hdrs[] = {strcmp(method, "PATCH") == 0 ? "Accept-Patch: application/json"
                                                                 : "Accept-Post: application/json",
                                    NULL};
        return send_problem(conn, path, 415, NULL, detail, NULL,
                            &(answer_opts){.headers = hdrs, .close = 1});
    }
    if (cl > 0 || chunked) {
        if ((status = read_body(gw, conn, req, cl)))
            return status;
        if (body_method(method) && req->body_len > 0 && !json_content_type(ct)) {
            char detail[200];
            snprintf(detail, sizeof(detail),
                     "the body must be application/json (or application/*+json); got %.80s",
                     ct ? ct : "no Content-Type");
            return send_problem(conn, path, 415, NULL, detail, NULL, NULL);
        }
    } else if (!(req->body = strdup(""))) {
        return send_problem(conn, path, 503, NULL, "out of memory", NULL, NULL);
    }
    if (r->websocket)
        return run_ws_handler(gw, conn, best, req);
    return run_handler(gw, conn, best, req);
}

static const double http_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,  0.5,    1,     2.5,  5,     10};

/* Counts a request: by route pattern (never the raw path), method and status class. */
static void account(of_gateway *gw, const of_http_request *req, int status, double seconds)
{
    if (!gw->metrics)
        return;
    const char *route = req->route                ? req->route->path
                        : builtin_path(req->path) ? req->path
                                                  : "unmatched";
    static const char *const known[] = {"GET",    "HEAD",    "POST",  "PUT",
                                        "DELETE", "OPTIONS", "PATCH", NULL};
    const char *method = "other";
    for (size_t i = 0; known[i]; i++)
        if (req->method && strcmp(req->method, known[i]) == 0)
            method = known[i];
    char cls[8];
    snprintf(cls, sizeof(cls), "%dxx", status >= 100 && status <= 599 ? status / 100 : 5);
    of_counter_add_(
        of_metrics_counter_l(
            gw->metrics, "http_requests",
            "HTTP requests answered, by route pattern, method and status class", NULL, NULL,
            (const char *const[]){"route", route, "method", method, "status_class", cls, NULL}),
        1);
    of_histogram_observe_(
        of_metrics_histogram_l(gw->metrics, "http_request_duration_seconds",
                               "Time to answer an HTTP request, in seconds", NULL, NULL,
                               (const char *const[]){"route", route, "method", method, NULL},
                               http_bounds, sizeof(http_bounds) / sizeof(http_bounds[0])),
        seconds);
}

/* The request's trace in the log context: the incoming traceparent's trace id, or a new one;
 * what the handler emits continues it (of_add_inherited_headers). */
static void set_request_trace(of_http_request *req)
{
    const char *tp = of_api_http_header(req, "traceparent");
    char trace[33];
    if (!tp || of_traceparent_trace_id(tp, strlen(tp), trace) != 0) {
        static const char hex[] = "0123456789abcdef";
        uint64_t a = of_rand_u64(), b = of_rand_u64();
        for (int i = 0; i < 16; i++, a >>= 4, b >>= 4) {
            trace[i] = hex[a & 0xf];
            trace[16 + i] = hex[b & 0xf];
        }
        trace[32] = '\0';
    }
    of_log_context_set(trace, NULL, 0);
    memcpy(req->trace_id, trace, sizeof(trace));
}

static int on_begin_request(struct mg_connection *conn)
{
    of_gateway *gw = mg_get_user_data(mg_get_context(conn));
    const struct mg_request_info *ri = mg_get_request_info(conn);
    int64_t t0 = of_mono_ms();
    of_http_pair headers[MG_MAX_HEADERS];
    of_http_request req;
    memset(&req, 0, sizeof(req));
    req.method = ri->request_method ? ri->request_method : "";
    req.remote_addr = ri->remote_addr;
    for (int i = 0; i < ri->num_headers && i < MG_MAX_HEADERS; i++) {
        headers[i].name = ri->http_headers[i].name ? ri->http_headers[i].name : "";
        headers[i].value = ri->http_headers[i].value ? ri->http_headers[i].value : "";
    }
    req.headers = headers;
    req.n_headers = ri->num_headers > 0 ? (size_t)ri->num_headers : 0;
    const char *te = of_api_http_header(&req, "Transfer-Encoding");
    body_unread = ri->content_length > 0 || (te && *te);
    struct timespec ts0;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    set_request_trace(&req);
    pthread_rwlock_rdlock(&gw->routes_mu);
    const char *target = ri->local_uri_raw;
    int status;
    if (!target || target[0] != '/') {
        req.path = "/";
        status = send_problem(conn, NULL, 400, NULL,
                              "the request target must be a path such as /api/v1/orders", NULL,
                              &(answer_opts){.close = 1});
    } else {
        req.path = target;
        status = handle(gw, conn, &req, ri);
    }
    if (of_log_enabled(OF_LVL_DEBUG))
        of_log(OF_LVL_DEBUG, NULL, NULL, "http %s %.200s -> %d (%lld ms)", req.method, req.path,
               status == HANDED_TO_WEBSOCKET ? 101 : status, (long long)(of_mono_ms() - t0));
    struct timespec ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    account(gw, &req, status == HANDED_TO_WEBSOCKET ? 101 : status,
            (double)(ts1.tv_sec - ts0.tv_sec) + (double)(ts1.tv_nsec - ts0.tv_nsec) / 1e9);
    pthread_rwlock_unlock(&gw->routes_mu);
    of_log_context_clear();
    of_http_request_release(&req);
    body_unread = 0;
    if (status == HANDED_TO_WEBSOCKET)
        return 0;
    return status > 0 && status < 1000 ? status : 500;
}

/* ---------------------------------------------------------------------------------------------
 * WebSocket connections (civetweb runs them on the thread that accepted the upgrade)
 * ------------------------------------------------------------------------------------------- */

static int ws_write(void *conn, const char *msg, size_t len)
{
    return mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_TEXT, msg, len) > 0 ? 0 : -1;
}

static void ws_close_frame(void *conn, int code, const char *reason)
{
    char buf[125];
    size_t n = strlen(reason);
    if (n > sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    buf[0] = (char)((code >> 8) & 0xff);
    buf[1] = (char)(code & 0xff);
    memcpy(buf + 2, reason, n);
    (void)mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, buf, n + 2);
}

static int ws_on_connect(const struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    /* Only upgrades that went through a WebSocket route's handler carry a client. */
    return mg_get_user_connection_data(conn) ? 0 : 1;
}

static void ws_on_ready(struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    of_ws_client *c = mg_get_user_connection_data(conn);
    if (c && of_ws_client_open(c, conn) != 0)
        ws_close_frame(conn, 1011, "the first messages could not be sent");
}

static int ws_on_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata)
{
    (void)cbdata;
    int op = bits & 0xf;
    if (op == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE)
        return 0;
    if (op == MG_WEBSOCKET_OPCODE_PING)
        (void)mg_websocket_write(conn, MG_WEBSOCKET_OPCODE_PONG, data, len);
    /* What a client sends is not read: the channels were chosen at the upgrade. */
    return 1;
}

static void client_done(const struct mg_connection *conn)
{
    of_ws_client *c = mg_get_user_connection_data(conn);
    if (c) {
        mg_set_user_connection_data(conn, NULL);
        of_ws_client_close(c);
    }
}

static void ws_on_close(const struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    client_done(conn);
}

of_ws_hub *of_gateway_ws_hub_new(const of_http_config *cfg, const of_redis_config *redis,
                                 of_metrics *metrics)
{
    return of_ws_hub_new(redis, metrics, of_gateway_ws_limit(cfg), ws_write, ws_close_frame);
}

/* Also after an upgrade civetweb refused before its connect callback: the client goes. */
static void on_end_request(const struct mg_connection *conn, int status)
{
    (void)status;
    client_done(conn);
}

/* civetweb's own errors (malformed request, header too large, bad version, ...). */
static int on_http_error(struct mg_connection *conn, int status, const char *msg)
{
    if (status < 400 || status > 599)
        return 1;
    send_problem(conn, NULL, status, NULL, msg && *msg ? msg : NULL, NULL,
                 &(answer_opts){.close = 1});
    return 0;
}

static int on_log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    of_log(OF_LVL_WARN, NULL, NULL, "http: %s", message ? message : "");
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------------------------- */

typedef struct errbuf {
    char *buf;
    size_t size, pos;
    int count;
} errbuf;

static void eb_add(errbuf *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void eb_add(errbuf *e, const char *fmt, ...)
{
    e->count++;
    if (!e->buf || !e->size || e->pos + 1 >= e->size)
        return;
    if (e->pos) {
        e->buf[e->pos++] = '\n';
        e->buf[e->pos] = '\0';
    }
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(e->buf + e->pos, e->size - e->pos, fmt, ap);
    va_end(ap);
    if (w > 0)
        e->pos = e->pos + (size_t)w >= e->size ? e->size - 1 : e->pos + (size_t)w;
}

static void shape(const of_route *r, char *buf, size_t size)
{
    size_t pos = 0;
    snprintf(buf, size, "/");
    for (size_t i = 0; i < r->n_segments && pos < size; i++) {
        int w = snprintf(buf + pos, size - pos, "/%s",
                         r->segments[i].is_param ? "{}" : r->segments[i].text);
        if (w > 0)
            pos += (size_t)w;
    }
}

static void describe_handlers(const of_stage *st, char *buf, size_t size)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (size_t i = 0; st->http && i < st->http->n_handlers && pos < size; i++) {
        int w = snprintf(buf + pos, size - pos, "%s%s", i ? ", " : "", st->http->handlers[i].name);
        if (w > 0)
            pos += (size_t)w;
    }
    if (!buf[0])
        snprintf(buf, size, "none");
}

static int resolve_routes(of_gateway *gw, errbuf *eb)
{
    size_t total = 0;
    for (size_t i = 0; i < gw->n_sets; i++)
        total += gw->sets[i].n;
    free(gw->routes);
    gw->routes = total ? calloc(total, sizeof(*gw->routes)) : NULL;
    gw->n_routes = 0;
    if (total && !gw->routes) {
        eb_add(eb, "out of memory");
        return -1;
    }
    int needs_auth = 0;
    const gw_route *first_auth = NULL;
    for (size_t s = 0; s < gw->n_sets; s++) {
        const gw_route_set *set = &gw->sets[s];
        for (size_t i = 0; i < set->n; i++) {
            const of_route *r = &set->routes[i];
            const char *mname = of_http_method_name(r->method);
            of_stage *st = NULL;
            for (size_t k = 0; k < gw->n_stages && !st; k++) {
                of_stage *c = gw->stages[k];
                if (c->def && c->def->name && r->stage && strcmp(c->def->name, r->stage) == 0 &&
                    strcmp(c->pipeline_name ? c->pipeline_name : "", set->pipeline) == 0)
                    st = c;
            }
            if (!st) {
                eb_add(eb, "%s:%d:%d: route %s %s: stage '%s' of pipeline '%s' is not running",
                       set->file, r->line, r->column, mname, r->path, r->stage, set->pipeline);
                continue;
            }
            of_http_handler fn = of_stage_http_find(st, r->handler_name);
            if (!fn) {
                char names[300];
                describe_handlers(st, names, sizeof(names));
                eb_add(eb,
                       "%s:%d:%d: route %s %s: stage '%s' registered no handler '%s' (with "
                       "api->http_handler in init; it registered: %s)",
                       set->file, r->line, r->column, mname, r->path, r->stage, r->handler_name,
                       names);
                continue;
            }
            if (r->batch > 1 && !of_descriptor_uses_db(st->desc)) {
                /* Sharing a transaction is all `batch:` does: without one it would mean nothing,
                 * and a pipeline that says it must not pass for one that does it. */
                eb_add(eb,
                       "%s:%d:%d: route %s %s: batch needs a stage with a database, and '%s' "
                       "has none (OF_STAGE_DATABASE)",
                       set->file, r->line, r->column, mname, r->path, r->stage);
                continue;
            }
            char sh[OF_ROUTE_MAX_PATH + 8], other[OF_ROUTE_MAX_PATH + 8];
            shape(r, sh, sizeof(sh));
            int clash = 0;
            for (size_t k = 0; k < gw->n_routes && !clash; k++) {
                const gw_route *o = &gw->routes[k];
                if (o->def->method != r->method)
                    continue;
                shape(o->def, other, sizeof(other));
                if (strcmp(sh, other) == 0) {
                    eb_add(eb,
                           "%s:%d:%d: route %s %s of pipeline '%s' matches the same requests as "
                           "%s %s of pipeline '%s' (%s:%d:%d)",
                           set->file, r->line, r->column, mname, r->path, set->pipeline, mname,
                           o->def->path, o->pipeline, o->file, o->def->line, o->def->column);
                    clash = 1;
                }
            }
            if (clash)
                continue;
            gw_route *g = &gw->routes[gw->n_routes++];
            g->def = r;
            g->pipeline = set->pipeline;
            g->file = set->file;
            g->stage = st;
            g->fn = fn;
            if (r->auth_required && !needs_auth) {
                needs_auth = 1;
                first_auth = g;
            }
        }
    }
    /* The authenticator: at most one in the whole host. */
    gw->auth = NULL;
    gw->auth_stage = NULL;
    for (size_t k = 0; k < gw->n_stages; k++) {
        of_stage *st = gw->stages[k];
        if (!st->http || !st->http->authenticator)
            continue;
        if (gw->auth) {
            eb_add(eb,
                   "stages '%s' (pipeline '%s') and '%s' (pipeline '%s') both registered an "
                   "authenticator; the gateway has exactly one",
                   gw->auth_stage->def->name, gw->auth_stage->pipeline_name, st->def->name,
                   st->pipeline_name);
            continue;
        }
        gw->auth = st->http->authenticator;
        gw->auth_stage = st;
    }
    if (needs_auth && !gw->auth)
        eb_add(eb,
               "%s:%d:%d: route %s %s has auth: required, but no stage registered an "
               "authenticator (api->http_authenticator in init; e.g. the auth plugin's stage)",
               first_auth->file, first_auth->def->line, first_auth->def->column,
               of_http_method_name(first_auth->def->method), first_auth->def->path);
    if (eb->count)
        return -1;
    /* A handler no route uses is likely a typo in the pipeline. */
    for (size_t k = 0; k < gw->n_stages; k++) {
        of_stage *st = gw->stages[k];
        for (size_t h = 0; st->http && h < st->http->n_handlers; h++) {
            int used = 0;
            for (size_t i = 0; i < gw->n_routes && !used; i++)
                used = gw->routes[i].stage == st &&
                       strcmp(gw->routes[i].def->handler_name, st->http->handlers[h].name) == 0;
            if (!used)
                of_log(OF_LVL_WARN, st->pipeline_name, st->def ? st->def->name : NULL,
                       "HTTP handler '%s' is registered but no route uses it",
                       st->http->handlers[h].name);
        }
    }
    return eb->count ? -1 : 0;
}

static int build_openapi(of_gateway *gw)
{
    of_openapi_route *rs = calloc(gw->n_routes ? gw->n_routes : 1, sizeof(*rs));
    if (!rs)
        return -1;
    for (size_t i = 0; i < gw->n_routes; i++) {
        rs[i].route = gw->routes[i].def;
        rs[i].pipeline = gw->routes[i].pipeline;
    }
    json_t *doc = of_openapi_document(rs, gw->n_routes, gw->rl_address || gw->rl_principal);
    free(rs);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    if (!text)
        return -1;
    free(gw->openapi);
    gw->openapi = text;
    gw->openapi_len = strlen(text);
    return 0;
}

/* The cert and key in one anonymous file (civetweb 1.15 takes them from one PEM file): its
 * /proc/self/fd path, valid while the descriptor is open. -1 with errstr. */
static int tls_bundle(const of_http_config *cfg, char *path, size_t size, errbuf *eb)
{
    int fd = memfd_create("orderflow-tls", MFD_CLOEXEC);
    if (fd < 0) {
        eb_add(eb, "tls: memfd_create: %s", strerror(errno));
        return -1;
    }
    const char *files[2] = {cfg->tls_cert, cfg->tls_key};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "rb");
        if (!f) {
            eb_add(eb, "%s:%d:%d: http tls: cannot read '%s': %s", cfg->file ? cfg->file : "",
                   cfg->tls_line, cfg->tls_column, files[i], strerror(errno));
            close(fd);
            return -1;
        }
        char buf[8192];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            if (write(fd, buf, n) != (ssize_t)n) {
                fclose(f);
                close(fd);
                eb_add(eb, "tls: cannot copy the certificate: %s", strerror(errno));
                return -1;
            }
        fclose(f);
        if (write(fd, "\n", 1) != 1) {
            close(fd);
            return -1;
        }
    }
    snprintf(path, size, "/proc/self/fd/%d", fd);
    return fd;
}

#ifndef OF_TLSSHIM_DIR
#define OF_TLSSHIM_DIR "/usr/lib/orderflow/tlsshim"
#endif

/* Where the OpenSSL 3 shims are (host/tlsshim/): the build tree's when the running program lives
 * in the build tree (like of_default_plugin_dir), otherwise the installed ones. */
static const char *tls_shim_dir(void)
{
#if defined(OF_BUILD_TLSSHIM_DIR)
    if (of_running_in_build_tree())
        return OF_BUILD_TLSSHIM_DIR;
#endif
    return OF_TLSSHIM_DIR;
}

/* civetweb 1.15 dlopen()s "libssl.so" and "libcrypto.so" and looks up OpenSSL 1.1 names, some of
 * which OpenSSL 3 no longer has. Loading our shims (SONAMEs libssl.so / libcrypto.so, depending
 * on the real OpenSSL 3 libraries, defining the missing names) globally first makes civetweb's
 * dlopen() return them. Never unloaded. On failure, why says what (for the error message). */
static void tls_load_shims(char *why, size_t size)
{
    static const char *const names[] = {"libcrypto.so", "libssl.so"};
    const char *dir = tls_shim_dir();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (!dlopen(path, RTLD_NOW | RTLD_GLOBAL)) {
            const char *e = dlerror();
            if (!e)
                e = path;
            size_t len = strlen(e) < size - 1 ? strlen(e) : size - 1; /* may truncate */
            memcpy(why, e, len);
            why[len] = '\0';
            return;
        }
    }
}

/* civetweb finds a WebSocket handler by path prefix: one per first segment of the WebSocket
 * routes ("/api" for "/api/v1/events"); begin_request has chosen the route already. Setting a
 * prefix again replaces its handler with the same one. */
static void register_ws_prefixes(of_gateway *gw)
{
    if (gw->dashboard)
        mg_set_websocket_handler(gw->ctx, "/dashboard", ws_on_connect, ws_on_ready, ws_on_data,
                                 ws_on_close, gw);
    for (size_t i = 0; i < gw->n_routes; i++) {
        const of_route *r = gw->routes[i].def;
        if (!r->websocket || !r->n_segments)
            continue;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = gw->routes[j].def->websocket && gw->routes[j].def->n_segments &&
                   strcmp(gw->routes[j].def->segments[0].text, r->segments[0].text) == 0;
        if (seen)
            continue;
        char prefix[OF_ROUTE_MAX_PATH + 2];
        snprintf(prefix, sizeof(prefix), "/%s", r->segments[0].text);
        mg_set_websocket_handler(gw->ctx, prefix, ws_on_connect, ws_on_ready, ws_on_data,
                                 ws_on_close, gw);
    }
}

int of_gateway_start(of_gateway *gw, char *errstr, size_t errstr_size)
{
    errbuf eb = {.buf = errstr, .size = errstr_size};
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (!gw) {
        eb_add(&eb, "no gateway");
        return -1;
    }
    if (gw->ctx) {
        eb_add(&eb, "the gateway is already running");
        return -1;
    }
    const of_http_config *cfg = &gw->cfg;
    const char *cfile = cfg->file ? cfg->file : "<host configuration>";
    if (resolve_routes(gw, &eb) < 0)
        return -1;

    of_ratelimit_free(gw->rl_principal);
    of_ratelimit_free(gw->rl_address);
    gw->rl_principal = gw->rl_address = NULL;
    if (cfg->has_rate_limit) {
        const of_http_rate_limit *rl = &cfg->rate_limit;
        if (rl->per_principal > 0)
            gw->rl_principal = of_ratelimit_new(
                rl->per_principal,
                (double)(rl->burst ? rl->burst : fmax(1, ceil(rl->per_principal))), gw->pool);
        if (rl->per_address > 0)
            gw->rl_address = of_ratelimit_new(
                rl->per_address, (double)(rl->burst ? rl->burst : fmax(1, ceil(rl->per_address))),
                gw->pool);
        if ((rl->per_principal > 0 && !gw->rl_principal) ||
            (rl->per_address > 0 && !gw->rl_address)) {
            eb_add(&eb, "out of memory (rate limits)");
            return -1;
        }
    }
    if (build_openapi(gw) < 0) {
        eb_add(&eb, "out of memory (OpenAPI document)");
        return -1;
    }

    int tls = cfg->tls_cert && cfg->tls_key;
    char shim_why[512] = "";
    if (tls)
        tls_load_shims(shim_why, sizeof(shim_why));
    unsigned want = tls ? MG_FEATURES_TLS : 0;
    unsigned got = mg_init_library(want);
    gw->lib_inited = 1;
    if (tls && !(got & MG_FEATURES_TLS)) {
        eb_add(&eb,
               "%s:%d:%d: http tls: the civetweb library cannot use TLS here: it could not load "
               "OpenSSL through libssl.so and libcrypto.so (%s%s); install libssl3 and "
               "orderflow's OpenSSL 3 shims (%s), or terminate TLS in a reverse proxy and "
               "listen on plain HTTP",
               cfile, cfg->tls_line, cfg->tls_column,
               shim_why[0] ? "the OpenSSL 3 shims did not load: "
                           : "the shims loaded, yet civetweb found OpenSSL unusable",
               shim_why, tls_shim_dir());
        goto fail;
    }
    if (cfg->listen[0] == '[' && !mg_check_feature(MG_FEATURES_IPV6)) {
        eb_add(&eb,
               "%s:%d:%d: http listen '%s': the civetweb library was built without IPv6; listen "
               "on an IPv4 address",
               cfile, cfg->listen_line, cfg->listen_column, cfg->listen);
        goto fail;
    }

    char ports[128], threads[16], timeout[32], ka_timeout[32], queue[16], cert_path[64] = "";
    snprintf(ports, sizeof(ports), "%s%s", cfg->listen, tls ? "s" : "");
    snprintf(threads, sizeof(threads), "%d", cfg->threads);
    snprintf(timeout, sizeof(timeout), "%lld", (long long)cfg->request_timeout_ms);
    /* An idle keep-alive connection holds a worker thread: do not let it wait long. */
    snprintf(ka_timeout, sizeof(ka_timeout), "%lld",
             (long long)(cfg->request_timeout_ms < 5000 ? cfg->request_timeout_ms : 5000));
    snprintf(queue, sizeof(queue), "%d", cfg->threads * 4 > 20 ? cfg->threads * 4 : 20);
    int cert_fd = -1;
    if (tls && (cert_fd = tls_bundle(cfg, cert_path, sizeof(cert_path), &eb)) < 0)
        goto fail;
    const char *options[40];
    size_t k = 0;
    options[k++] = "listening_ports";
    options[k++] = ports;
    options[k++] = "num_threads";
    options[k++] = threads;
    options[k++] = "request_timeout_ms";
    options[k++] = timeout;
    options[k++] = "keep_alive_timeout_ms";
    options[k++] = ka_timeout;
    options[k++] = "enable_keep_alive";
    options[k++] = cfg->keep_alive ? "yes" : "no";
    options[k++] = "decode_url";
    options[k++] = "no";
    options[k++] = "connection_queue";
    options[k++] = queue;
    options[k++] = "enable_directory_listing";
    options[k++] = "no";
    options[k++] = "max_request_size";
    options[k++] = "16384";
    /* An answer goes out in pieces (headers, then body): without it Nagle holds the body until
     * the client's delayed ACK, ~40 ms per request on a keep-alive connection. */
    options[k++] = "tcp_nodelay";
    options[k++] = "1";
    /* An idle WebSocket is pinged at this pace (a dead client is found within a few rounds),
     * and a stopping gateway waits at most this long for a connection's read loop. */
    options[k++] = "websocket_timeout_ms";
    options[k++] = "5000";
    options[k++] = "enable_websocket_ping_pong";
    options[k++] = "yes";
    if (tls) {
        options[k++] = "ssl_certificate";
        options[k++] = cert_path;
    }
    options[k] = NULL;

    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.begin_request = on_begin_request;
    cb.http_error = on_http_error;
    cb.log_message = on_log_message;
    cb.end_request = on_end_request;
    struct mg_init_data init = {
        .callbacks = &cb, .user_data = gw, .configuration_options = options};
    char why[256] = "";
    unsigned code = 0;
    struct mg_error_data err = {.code = &code, .text = why, .text_buffer_size = sizeof(why)};
    /* civetweb ignores SIGCHLD for its CGI support, which the daemon does not use: keep the
     * process's disposition (a SIG_IGN SIGCHLD would break waitpid elsewhere). */
    struct sigaction old_chld;
    sigaction(SIGCHLD, NULL, &old_chld);
    gw->ctx = mg_start2(&init, &err);
    sigaction(SIGCHLD, &old_chld, NULL);
    if (cert_fd >= 0)
        close(cert_fd);
    if (!gw->ctx) {
        eb_add(&eb, "%s:%d:%d: http: cannot listen on %s: %s", cfile, cfg->listen_line,
               cfg->listen_column, cfg->listen, why[0] ? why : "civetweb failed to start");
        goto fail;
    }
    register_ws_prefixes(gw);
    struct mg_server_port sp[4];
    int n = mg_get_server_ports(gw->ctx, 4, sp);
    gw->port = n > 0 ? sp[0].port : 0;
    of_log(OF_LVL_INFO, NULL, NULL, "http gateway listening on %s (port %d%s), %zu route%s",
           cfg->listen, gw->port, tls ? ", TLS" : "", gw->n_routes, gw->n_routes == 1 ? "" : "s");
    return 0;
fail:
    if (gw->lib_inited) {
        mg_exit_library();
        gw->lib_inited = 0;
    }
    return -1;
}

void of_gateway_stop(of_gateway *gw)
{
    if (!gw)
        return;
    if (gw->ctx) {
        mg_stop(gw->ctx);
        gw->ctx = NULL;
        gw->port = 0;
    }
    if (gw->lib_inited) {
        mg_exit_library();
        gw->lib_inited = 0;
    }
}

void of_gateway_free(of_gateway *gw)
{
    if (!gw)
        return;
    of_gateway_stop(gw);
    of_metrics_remove_collectors(gw->metrics, gw);
    of_ratelimit_free(gw->rl_principal);
    of_ratelimit_free(gw->rl_address);
    for (size_t i = 0; i < gw->n_sets; i++) {
        free(gw->sets[i].pipeline);
        free(gw->sets[i].file);
    }
    free(gw->sets);
    for (size_t i = 0; i < gw->n_probes; i++)
        free(gw->probes[i].name);
    free(gw->probes);
    free(gw->stages);
    free(gw->routes);
    free(gw->openapi);
    of_http_config_free(&gw->cfg);
    free(gw->note_name);
    free(gw->note);
    pthread_mutex_destroy(&gw->note_mu);
    pthread_rwlock_destroy(&gw->routes_mu);
    free(gw);
}

/* ---------------------------------------------------------------------------------------------
 * Hot reload
 * ------------------------------------------------------------------------------------------- */

int of_gateway_reload(of_gateway *gw, of_stage *const *stages, size_t n_stages,
                      const of_pipeline *const *pipelines, size_t n_pipelines, char *errstr,
                      size_t errstr_size)
{
    if (errstr && errstr_size)
        errstr[0] = '\0';
    /* The new routing is built aside, with the start's own checks; requests keep the old one
     * until the swap. */
    of_gateway *next = of_gateway_new(&gw->cfg, gw->invoke, gw->invoke_opaque);
    if (!next) {
        of_seterr(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n_stages; i++)
        if (of_gateway_add_stage(next, stages[i]) != 0)
            goto oom;
    for (size_t i = 0; i < n_pipelines; i++) {
        const of_pipeline *p = pipelines[i];
        if (of_gateway_add_routes(next, p->name, p->file, p->routes, p->n_routes) != 0)
            goto oom;
    }
    errbuf eb = {.buf = errstr, .size = errstr_size};
    if (resolve_routes(next, &eb) < 0 || build_openapi(next) < 0) {
        if (errstr && !errstr[0])
            of_seterr(errstr, errstr_size, "out of memory");
        of_gateway_free(next);
        return -1;
    }
    pthread_rwlock_wrlock(&gw->routes_mu);
#define SWAP(field)                                                                                \
    do {                                                                                           \
        __typeof__(gw->field) t_ = gw->field;                                                      \
        gw->field = next->field;                                                                   \
        next->field = t_;                                                                          \
    } while (0)
    SWAP(stages);
    SWAP(n_stages);
    SWAP(sets);
    SWAP(n_sets);
    SWAP(routes);
    SWAP(n_routes);
    SWAP(auth);
    SWAP(auth_stage);
    SWAP(openapi);
    SWAP(openapi_len);
#undef SWAP
    pthread_rwlock_unlock(&gw->routes_mu);
    if (gw->ctx)
        register_ws_prefixes(gw);
    of_gateway_free(next); /* the old routing; no request uses it any more */
    return 0;
oom:
    of_gateway_free(next);
    of_seterr(errstr, errstr_size, "out of memory");
    return -1;
}

void of_gateway_set_note(of_gateway *gw, const char *name, const char *note)
{
    if (!gw)
        return;
    char *n = name && note ? strdup(name) : NULL, *t = name && note ? strdup(note) : NULL;
    pthread_mutex_lock(&gw->note_mu);
    free(gw->note_name);
    free(gw->note);
    gw->note_name = n && t ? n : NULL;
    gw->note = n && t ? t : NULL;
    pthread_mutex_unlock(&gw->note_mu);
    if (!(n && t)) {
        free(n);
        free(t);
    }
}
