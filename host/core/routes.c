/* The `routes:` section of a pipeline file: which method and path go to which stage's handler,
 * validated with every problem at its line:column. */
#include "gateway.h"
#include "yaml_json.h"

#include "options.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const route_keys[] = {"method",  "path",           "handler",   "auth",  "roles",
                                         "summary", "request_schema", "websocket", "batch", NULL};
static const char *const method_names[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
/* Paths the gateway serves itself. */
static const char *const reserved_paths[] = {"/healthz", "/readyz", "/api/openapi.json", NULL};

#define SUMMARY_MAX 300

const char *of_http_method_name(of_http_method m)
{
    return (unsigned)m < OF_HTTP_N_METHODS ? method_names[m] : NULL;
}

int of_http_method_parse(const char *s)
{
    for (int i = 0; s && i < OF_HTTP_N_METHODS; i++)
        if (strcmp(s, method_names[i]) == 0)
            return i;
    return -1;
}

typedef struct rctx {
    const char *file;
    of_diag *diag;
    int oom;
} rctx;

static void rerr(rctx *c, const of_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rerr(rctx *c, const of_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    of_diag_addv(c->diag, OF_SEV_ERROR, c->file, at ? at->line : 0, at ? at->column : 0, fmt, ap);
    va_end(ap);
}

static char *xstrdup(rctx *c, const of_ynode *at, const char *s)
{
    char *d = strdup(s);
    if (!d && !c->oom) {
        c->oom = 1;
        rerr(c, at, "out of memory");
    }
    return d;
}

static void route_free(of_route *r)
{
    free(r->path);
    for (size_t i = 0; i < r->n_segments; i++)
        free(r->segments[i].text);
    free(r->segments);
    free(r->handler);
    free(r->stage);
    free(r->handler_name);
    for (size_t i = 0; i < r->n_roles; i++)
        free(r->roles[i]);
    free(r->roles);
    free(r->summary);
    free(r->request_schema);
}

void of_routes_free(of_route *routes, size_t n)
{
    for (size_t i = 0; routes && i < n; i++)
        route_free(&routes[i]);
    free(routes);
}

/* [a-z_][a-z0-9_]*, at most OF_HTTP_NAME_MAX. */
static int valid_ident(const char *s, size_t n)
{
    if (n == 0 || n > OF_HTTP_NAME_MAX || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* RFC 3986 pchar without percent-encoding. */
static int path_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("-._~!$&'()*+,;=:@", ch) != NULL;
}

/* Splits and checks a route path into r->segments. Reports at `at`; 0 or -1. */
static int parse_path(rctx *c, of_route *r, const of_ynode *at, const char *path)
{
    size_t len = strlen(path);
    if (path[0] != '/') {
        rerr(c, at, "route path '%.80s' must start with '/'", path);
        return -1;
    }
    if (len > OF_ROUTE_MAX_PATH) {
        rerr(c, at, "route path is %zu characters long; at most %d", len, OF_ROUTE_MAX_PATH);
        return -1;
    }
    if (len > 1 && path[len - 1] == '/') {
        rerr(c, at,
             "route path '%.80s' must not end with '/': paths match exactly, so the client's "
             "'%.*s' would not match it",
             path, (int)(len > 81 ? 80 : len - 1), path);
        return -1;
    }
    if (len == 1)
        return 0;
    r->segments = calloc(OF_ROUTE_MAX_SEGMENTS, sizeof(*r->segments));
    if (!r->segments) {
        rerr(c, at, "out of memory");
        return -1;
    }
    const char *p = path + 1;
    for (;;) {
        size_t n = strcspn(p, "/");
        if (r->n_segments == OF_ROUTE_MAX_SEGMENTS) {
            rerr(c, at, "route path '%.80s' has more than %d segments", path,
                 OF_ROUTE_MAX_SEGMENTS);
            return -1;
        }
        if (n == 0) {
            rerr(c, at, "route path '%.80s' has an empty segment ('//')", path);
            return -1;
        }
        of_route_segment *seg = &r->segments[r->n_segments];
        if (p[0] == '{' && p[n - 1] == '}' && n >= 2) {
            if (!valid_ident(p + 1, n - 2)) {
                rerr(c, at,
                     "route path '%.80s': bad parameter name '%.*s' (expected [a-z_][a-z0-9_]*, "
                     "at most %d characters)",
                     path, (int)(n > 66 ? 64 : n - 2), p + 1, OF_HTTP_NAME_MAX);
                return -1;
            }
            for (size_t k = 0; k < r->n_segments; k++) {
                if (r->segments[k].is_param && strlen(r->segments[k].text) == n - 2 &&
                    memcmp(r->segments[k].text, p + 1, n - 2) == 0) {
                    rerr(c, at, "route path '%.80s' names parameter '%.*s' twice", path,
                         (int)(n - 2), p + 1);
                    return -1;
                }
            }
            seg->is_param = 1;
            seg->text = strndup(p + 1, n - 2);
        } else {
            for (size_t k = 0; k < n; k++) {
                if (p[k] == '{' || p[k] == '}') {
                    rerr(c, at,
                         "route path '%.80s': a parameter must be a whole segment, like "
                         "/orders/{id}; got '%.*s'",
                         path, (int)(n > 80 ? 80 : n), p);
                    return -1;
                }
                if (!path_char(p[k])) {
                    rerr(c, at,
                         "route path '%.80s' has the character '%c' (0x%02x); a path holds "
                         "letters, digits and -._~!$&'()*+,;=:@ (write it unencoded)",
                         path, p[k] >= 0x20 && p[k] < 0x7f ? p[k] : '?', (unsigned char)p[k]);
                    return -1;
                }
            }
            if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
                rerr(c, at, "route path '%.80s' has a '%.*s' segment", path, (int)n, p);
                return -1;
            }
            seg->text = strndup(p, n);
        }
        if (!seg->text) {
            rerr(c, at, "out of memory");
            return -1;
        }
        r->n_segments++;
        if (!p[n])
            break;
        p += n + 1;
    }
    return 0;
}

/* The path with every parameter as "{}": equal for routes that match the same requests. */
static void shape_of(const of_route *r, char *buf, size_t size)
{
    size_t pos = 0;
    buf[0] = '\0';
    if (r->n_segments == 0)
        snprintf(buf, size, "/");
    for (size_t i = 0; i < r->n_segments && pos < size; i++) {
        int w = snprintf(buf + pos, size - pos, "/%s",
                         r->segments[i].is_param ? "{}" : r->segments[i].text);
        if (w > 0)
            pos += (size_t)w;
    }
}

/* ---------------------------------------------------------------------------------------------
 * request_schema: YAML to JSON (the OpenAPI document carries it)
 * ------------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------------
 * One route
 * ------------------------------------------------------------------------------------------- */

static const char *want_string(rctx *c, const of_ynode *n, const char *where, const char *key)
{
    if (of_yis_string(n))
        return n->str;
    char got[96];
    of_ynode_describe(n, got, sizeof(got));
    rerr(c, n, "%s '%s' must be a string; got %s", where, key, got);
    return NULL;
}

static void parse_handler(rctx *c, of_route *r, const of_ynode *n, const of_pipeline *p,
                          const char *where)
{
    const char *h = want_string(c, n, where, "handler");
    if (!h)
        return;
    const char *dot = strrchr(h, '.');
    if (!dot || dot == h || !valid_ident(dot + 1, strlen(dot + 1))) {
        rerr(c, n,
             "%s handler '%.80s' must be <stage>.<handler>, e.g. orders.cancel (the handler name "
             "[a-z_][a-z0-9_]*, as the stage registers it in init)",
             where, h);
        return;
    }
    char *stage = strndup(h, (size_t)(dot - h));
    if (!stage) {
        rerr(c, n, "out of memory");
        return;
    }
    int found = 0;
    for (size_t i = 0; p && i < p->n_stages; i++)
        if (p->stages[i].name && strcmp(p->stages[i].name, stage) == 0)
            found = 1;
    if (!found) {
        const char **names = calloc(p && p->n_stages ? p->n_stages : 1, sizeof(*names));
        size_t k = 0;
        for (size_t i = 0; names && p && i < p->n_stages; i++)
            if (p->stages[i].name)
                names[k++] = p->stages[i].name;
        const char *hint = names ? of_did_you_mean(stage, names, k) : NULL;
        rerr(c, n, "%s handler '%.80s': the pipeline has no stage '%.80s'%s%s%s", where, h, stage,
             hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
        free(names);
        free(stage);
        return;
    }
    r->stage = stage;
    r->handler = xstrdup(c, n, h);
    r->handler_name = xstrdup(c, n, dot + 1);
}

static void parse_roles(rctx *c, of_route *r, const of_ynode *n, const char *where)
{
    char got[96];
    if (n->kind == OF_Y_SCALAR && n->is_null)
        return;
    if (n->kind != OF_Y_SEQ) {
        of_ynode_describe(n, got, sizeof(got));
        rerr(c, n, "%s roles must be a list of role names, e.g. [admin]; got %s", where, got);
        return;
    }
    if (n->n_items == 0)
        return;
    r->roles = calloc(n->n_items, sizeof(*r->roles));
    if (!r->roles) {
        rerr(c, n, "out of memory");
        return;
    }
    for (size_t i = 0; i < n->n_items; i++) {
        const of_ynode *it = n->items[i];
        if (!of_yis_string(it) || it->len == 0 || it->len > OF_HTTP_NAME_MAX) {
            of_ynode_describe(it, got, sizeof(got));
            rerr(c, it, "%s roles must be names of 1..%d characters; got %s", where,
                 OF_HTTP_NAME_MAX, got);
            continue;
        }
        int bad = 0;
        for (size_t k = 0; k < it->len; k++) {
            char ch = it->str[k];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.' || ch == ':'))
                bad = 1;
        }
        if (bad) {
            rerr(c, it, "%s role '%.80s' may hold only letters, digits and _-.:", where, it->str);
            continue;
        }
        int dup = 0;
        for (size_t k = 0; k < r->n_roles; k++)
            dup |= strcmp(r->roles[k], it->str) == 0;
        if (dup) {
            rerr(c, it, "%s lists role '%s' twice", where, it->str);
            continue;
        }
        if ((r->roles[r->n_roles] = xstrdup(c, it, it->str)))
            r->n_roles++;
    }
}

/* 0 when the route is complete and valid, -1 otherwise (reported). */
static int parse_route(rctx *c, of_route *r, const of_ynode *n, size_t idx, const of_pipeline *p)
{
    char where[160], got[96];
    size_t errors_before = c->diag->errors;
    r->line = n->line;
    r->column = n->column;
    r->auth_required = 1;
    snprintf(where, sizeof(where), "route #%zu", idx + 1);
    of_ymap_check_keys(n, route_keys, "a route", c->file, c->diag);

    const of_ynode *m = of_ymap_get(n, "method"), *pa = of_ymap_get(n, "path"),
                   *h = of_ymap_get(n, "handler");
    if (m && pa && of_yis_string(m) && of_yis_string(pa))
        snprintf(where, sizeof(where), "route %.10s %.120s", m->str, pa->str);

    if (!m) {
        rerr(c, n, "%s is missing required key 'method' (GET, POST, PUT, PATCH or DELETE)", where);
    } else if (want_string(c, m, where, "method")) {
        int mi = of_http_method_parse(m->str);
        if (mi < 0) {
            char upper[16];
            size_t k = 0;
            for (; m->str[k] && k < sizeof(upper) - 1; k++)
                upper[k] =
                    (char)(m->str[k] >= 'a' && m->str[k] <= 'z' ? m->str[k] - 32 : m->str[k]);
            upper[k] = '\0';
            int ui = m->str[k] ? -1 : of_http_method_parse(upper);
            rerr(c, m, "%s: unknown method '%.40s'%s%s%s; allowed: GET, POST, PUT, PATCH, DELETE",
                 where, m->str, ui >= 0 ? " (did you mean '" : "", ui >= 0 ? upper : "",
                 ui >= 0 ? "'?)" : "");
        } else {
            r->method = (of_http_method)mi;
        }
    }

    if (!pa) {
        rerr(c, n, "%s is missing required key 'path' (e.g. /api/v1/orders/{id})", where);
    } else if (want_string(c, pa, where, "path")) {
        for (size_t k = 0; reserved_paths[k]; k++)
            if (strcmp(pa->str, reserved_paths[k]) == 0)
                rerr(c, pa, "%s: the path %s is served by the gateway itself", where,
                     reserved_paths[k]);
        if (parse_path(c, r, pa, pa->str) == 0)
            r->path = xstrdup(c, pa, pa->str);
    }

    if (!h)
        rerr(c, n, "%s is missing required key 'handler' (<stage>.<handler>)", where);
    else
        parse_handler(c, r, h, p, where);

    const of_ynode *a = of_ymap_get(n, "auth");
    if (a) {
        if (of_yis_string(a) && strcmp(a->str, "required") == 0) {
            r->auth_required = 1;
        } else if (of_yis_string(a) && strcmp(a->str, "none") == 0) {
            r->auth_required = 0;
        } else {
            of_ynode_describe(a, got, sizeof(got));
            rerr(c, a, "%s auth must be 'required' or 'none'; got %s", where, got);
        }
    }

    const of_ynode *ro = of_ymap_get(n, "roles");
    if (ro) {
        parse_roles(c, r, ro, where);
        if (r->n_roles && !r->auth_required)
            rerr(c, ro, "%s has roles but auth: none; roles need auth: required", where);
    }

    const of_ynode *s = of_ymap_get(n, "summary");
    if (s && !(s->kind == OF_Y_SCALAR && s->is_null) && want_string(c, s, where, "summary")) {
        if (s->len > SUMMARY_MAX || !of_http_utf8_valid(s->str, s->len) || strchr(s->str, '\n'))
            rerr(c, s, "%s summary must be one line of at most %d characters", where, SUMMARY_MAX);
        else
            r->summary = xstrdup(c, s, s->str);
    }

    const of_ynode *ws = of_ymap_get(n, "websocket");
    if (ws) {
        char why[128];
        if (!of_yis_string(ws) || of_parse_bool(ws->str, &r->websocket, why, sizeof(why)) < 0) {
            of_ynode_describe(ws, got, sizeof(got));
            rerr(c, ws, "%s websocket must be true or false; got %s", where, got);
        } else if (r->websocket && m && of_yis_string(m) && strcmp(m->str, "GET") != 0) {
            rerr(c, ws, "%s: a WebSocket route is opened with GET, not %.20s", where, m->str);
        } else if (r->websocket && r->path && (!r->n_segments || r->segments[0].is_param)) {
            rerr(c, ws,
                 "%s: a WebSocket route's path must begin with a fixed segment, such as "
                 "/api/...",
                 where);
        }
    }

    r->batch = 1;
    const of_ynode *b = of_ymap_get(n, "batch");
    if (b) {
        int64_t v = 0;
        char why[128];
        if (!of_yis_string(b) || of_parse_int(b->str, &v, why, sizeof(why)) < 0 || v < 1 ||
            v > OF_ROUTE_BATCH_MAX) {
            of_ynode_describe(b, got, sizeof(got));
            rerr(c, b, "%s batch must be an integer from 1 to %d; got %s", where,
                 OF_ROUTE_BATCH_MAX, got);
        } else if (v > 1 && r->websocket) {
            rerr(c, b, "%s: a WebSocket route cannot be batched (each upgrade is answered alone)",
                 where);
        } else {
            r->batch = (int)v;
        }
    }

    const of_ynode *rs = of_ymap_get(n, "request_schema");
    if (rs && !(rs->kind == OF_Y_SCALAR && rs->is_null)) {
        if (rs->kind != OF_Y_MAP) {
            of_ynode_describe(rs, got, sizeof(got));
            rerr(c, rs, "%s request_schema must be a mapping (a JSON Schema); got %s", where, got);
        } else if (m && of_yis_string(m) &&
                   (strcmp(m->str, "GET") == 0 || strcmp(m->str, "DELETE") == 0)) {
            rerr(c, rs, "%s: a %s request has no body, so no request_schema", where, m->str);
        } else {
            json_t *j = of_ynode_to_json(rs);
            char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            json_decref(j);
            if (!text)
                rerr(c, rs, "%s request_schema cannot be written as JSON (is all text UTF-8?)",
                     where);
            else
                r->request_schema = text;
        }
    }
    return c->diag->errors == errors_before && r->path && r->handler && r->handler_name ? 0 : -1;
}

int of_routes_parse(const of_ynode *routes, const of_pipeline *p, const char *file, of_diag *diag,
                    of_route **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!routes || (routes->kind == OF_Y_SCALAR && routes->is_null))
        return 0;
    rctx c = {.file = file, .diag = diag};
    size_t errors_before = diag->errors;
    char got[96];
    if (routes->kind != OF_Y_SEQ) {
        of_ynode_describe(routes, got, sizeof(got));
        rerr(&c, routes, "'routes' must be a list of routes ({method, path, handler, ...}); got %s",
             got);
        return -1;
    }
    if (routes->n_items == 0)
        return 0;
    of_route *rs = calloc(routes->n_items, sizeof(*rs));
    int *ok = calloc(routes->n_items, sizeof(*ok));
    if (!rs || !ok) {
        free(rs);
        free(ok);
        rerr(&c, routes, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < routes->n_items; i++) {
        const of_ynode *it = routes->items[i];
        if (it->kind != OF_Y_MAP) {
            of_ynode_describe(it, got, sizeof(got));
            rerr(&c, it, "each route must be a mapping (method, path, handler, ...); got %s", got);
            continue;
        }
        ok[i] = parse_route(&c, &rs[i], it, i, p) == 0;
        if (!ok[i])
            continue;
        char shape[OF_ROUTE_MAX_PATH + 8], other[OF_ROUTE_MAX_PATH + 8];
        shape_of(&rs[i], shape, sizeof(shape));
        for (size_t k = 0; k < i; k++) {
            if (!ok[k] || rs[k].method != rs[i].method)
                continue;
            shape_of(&rs[k], other, sizeof(other));
            if (strcmp(shape, other) != 0)
                continue;
            const of_ynode *at = of_ymap_get(it, "path");
            if (strcmp(rs[k].path, rs[i].path) == 0)
                rerr(&c, at, "duplicate route %s %s (first defined at line %d)",
                     of_http_method_name(rs[i].method), rs[i].path, rs[k].line);
            else
                rerr(&c, at,
                     "route %s %s matches the same requests as %s %s at line %d (the paths "
                     "differ only in parameter names)",
                     of_http_method_name(rs[i].method), rs[i].path,
                     of_http_method_name(rs[k].method), rs[k].path, rs[k].line);
            break;
        }
    }
    free(ok);
    if (diag->errors != errors_before) {
        of_routes_free(rs, routes->n_items);
        return -1;
    }
    *out = rs;
    *n = routes->n_items;
    return 0;
}
