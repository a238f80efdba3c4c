/* The http_* functions of the host table (ABI 1.1): what a stage registers in init (handlers, an
 * authenticator) and what a handler reads from and answers to a request. Like the rest of the
 * table, every function tolerates bad input from a plugin: it logs and fails instead of
 * crashing the host. */
#include "gateway.h"

#include "log.h"
#include "stage_runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *pname(const of_stage *st)
{
    return st ? st->pipeline_name : NULL;
}

static const char *sname(const of_stage *st)
{
    return st && st->def ? st->def->name : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Registration (init)
 * ------------------------------------------------------------------------------------------- */

static int valid_handler_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > OF_HTTP_NAME_MAX || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

static of_stage_http *stage_http(of_stage *st)
{
    if (!st->http)
        st->http = calloc(1, sizeof(*st->http));
    return st->http;
}

void of_stage_http_free(of_stage *st)
{
    if (!st || !st->http)
        return;
    for (size_t i = 0; i < st->http->n_handlers; i++)
        free(st->http->handlers[i].name);
    free(st->http->handlers);
    free(st->http);
    st->http = NULL;
}

static of_http_handler_reg *find_reg(const of_stage *st, const char *name)
{
    if (!st || !st->http || !name)
        return NULL;
    for (size_t i = 0; i < st->http->n_handlers; i++)
        if (strcmp(st->http->handlers[i].name, name) == 0)
            return &st->http->handlers[i];
    return NULL;
}

of_http_handler of_stage_http_find(const of_stage *st, const char *name)
{
    const of_http_handler_reg *r = find_reg(st, name);
    return r ? r->fn : NULL;
}

int of_api_http_handler(of_stage *stage, const char *name, of_http_handler fn)
{
    if (!stage) {
        of_log(OF_LVL_ERROR, NULL, NULL, "http_handler: called without a stage");
        return -1;
    }
    if (stage->initialized) {
        of_log(OF_LVL_ERROR, pname(stage), sname(stage),
               "http_handler('%s'): handlers are registered in init, not later",
               name ? name : "(null)");
        return -1;
    }
    if (!name || !valid_handler_name(name) || !fn) {
        of_log(OF_LVL_ERROR, pname(stage), sname(stage),
               "http_handler: %s (a name [a-z_][a-z0-9_]* of at most %d characters and a "
               "function)",
               !fn ? "no function" : "bad name", OF_HTTP_NAME_MAX);
        return -1;
    }
    if (of_stage_http_find(stage, name)) {
        of_log(OF_LVL_ERROR, pname(stage), sname(stage),
               "http_handler('%s'): a handler of that name is already registered", name);
        return -1;
    }
    of_stage_http *h = stage_http(stage);
    if (!h)
        goto nomem;
    if (h->n_handlers == h->cap_handlers) {
        size_t cap = h->cap_handlers ? h->cap_handlers * 2 : 4;
        of_http_handler_reg *n = realloc(h->handlers, cap * sizeof(*n));
        if (!n)
            goto nomem;
        h->handlers = n;
        h->cap_handlers = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        goto nomem;
    h->handlers[h->n_handlers].name = copy;
    h->handlers[h->n_handlers].fn = fn;
    h->handlers[h->n_handlers].batch = NULL;
    h->n_handlers++;
    return 0;
nomem:
    of_log(OF_LVL_ERROR, pname(stage), sname(stage), "http_handler('%s'): out of memory", name);
    return -1;
}

of_http_batch_handler of_stage_http_find_batch(const of_stage *st, const char *name)
{
    const of_http_handler_reg *r = find_reg(st, name);
    return r ? r->batch : NULL;
}

int of_api_http_batch_handler(of_stage *stage, const char *name, of_http_batch_handler fn)
{
    if (!stage) {
        of_log(OF_LVL_ERROR, NULL, NULL, "http_batch_handler: called without a stage");
        return -1;
    }
    const char *shown = name ? name : "(null)";
    if (stage->initialized) {
        of_log(OF_LVL_ERROR, pname(stage), sname(stage),
               "http_batch_handler('%s'): handlers are registered in init, not later", shown);
        return -1;
    }
    of_http_handler_reg *r = find_reg(stage, name);
    if (!r || !fn || r->batch) {
        of_log(OF_LVL_ERROR, pname(stage), sname(stage), "http_batch_handler('%s'): %s", shown,
               !r    ? "no handler of that name (register it with http_handler first)"
               : !fn ? "no function"
                     : "a batch handler of that name is already registered");
        return -1;
    }
    r->batch = fn;
    return 0;
}

int of_api_http_authenticator(of_stage *stage, of_authenticator fn)
{
    if (!stage || !fn) {
        of_log(OF_LVL_ERROR, pname(stage), sname(stage),
               "http_authenticator: called without a stage or a function");
        return -1;
    }
    if (stage->initialized) {
        of_log(OF_LVL_ERROR, pname(stage), sname(stage),
               "http_authenticator: an authenticator is registered in init, not later");
        return -1;
    }
    of_stage_http *h = stage_http(stage);
    if (!h) {
        of_log(OF_LVL_ERROR, pname(stage), sname(stage), "http_authenticator: out of memory");
        return -1;
    }
    if (h->authenticator && h->authenticator != fn) {
        of_log(OF_LVL_ERROR, pname(stage), sname(stage),
               "http_authenticator: the stage already registered another authenticator");
        return -1;
    }
    h->authenticator = fn;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Reading the request
 * ------------------------------------------------------------------------------------------- */

const char *of_api_http_method(const of_http_request *req)
{
    return req ? req->method : NULL;
}

const char *of_api_http_path(const of_http_request *req)
{
    return req ? req->path : NULL;
}

const char *of_api_http_param(const of_http_request *req, const char *name)
{
    if (!req || !name)
        return NULL;
    for (size_t i = 0; i < req->n_params; i++)
        if (strcmp(req->params[i].name, name) == 0)
            return req->params[i].value;
    return NULL;
}

const char *of_api_http_query(const of_http_request *req, const char *name)
{
    if (!req || !name)
        return NULL;
    for (size_t i = 0; i < req->n_query; i++)
        if (strcmp(req->query[i].name, name) == 0)
            return req->query[i].value;
    return NULL;
}

const char *of_api_http_header(const of_http_request *req, const char *name)
{
    if (!req || !name)
        return NULL;
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

const void *of_api_http_body(const of_http_request *req, size_t *len)
{
    if (!req || !req->body) {
        if (len)
            *len = 0;
        return "";
    }
    if (len)
        *len = req->body_len;
    return req->body;
}

const of_principal *of_api_http_principal(const of_http_request *req)
{
    return req && req->has_principal ? &req->principal : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Answering
 * ------------------------------------------------------------------------------------------- */

static int token_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* A header value: visible ASCII, spaces, tabs and UTF-8 bytes, no CR, LF or NUL. */
static int field_value_ok(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 0;
    return 1;
}

/* Headers the gateway writes itself. */
static int managed_header(const char *name, size_t n)
{
    static const char *const managed[] = {
        "content-length", "transfer-encoding", "connection", "content-type", "date", NULL};
    for (size_t i = 0; managed[i]; i++)
        if (strlen(managed[i]) == n && strncasecmp(managed[i], name, n) == 0)
            return 1;
    return 0;
}

/* 0 when "Name: value" is a header a handler may set. */
static int check_header_line(const char *line, char *why, size_t size)
{
    const char *colon = strchr(line, ':');
    if (!colon || colon == line) {
        snprintf(why, size, "'%.60s' is not \"Name: value\"", line);
        return -1;
    }
    for (const char *p = line; p < colon; p++)
        if (!token_char((unsigned char)*p)) {
            snprintf(why, size, "header name '%.*s' has a character a name may not have",
                     (int)(colon - line > 60 ? 60 : colon - line), line);
            return -1;
        }
    if (managed_header(line, (size_t)(colon - line))) {
        snprintf(why, size, "header '%.*s' is set by the gateway (content type: the argument)",
                 (int)(colon - line), line);
        return -1;
    }
    if (!field_value_ok(colon + 1)) {
        snprintf(why, size, "header '%.*s' has a control character (CR, LF, NUL, ...) in its value",
                 (int)(colon - line > 60 ? 60 : colon - line), line);
        return -1;
    }
    return 0;
}

void of_http_request_clear_response(of_http_request *req)
{
    if (!req)
        return;
    free(req->content_type);
    free(req->resp_body);
    for (size_t i = 0; i < req->n_resp_headers; i++)
        free(req->resp_headers[i]);
    free(req->resp_headers);
    req->content_type = NULL;
    req->resp_body = NULL;
    req->resp_len = 0;
    req->resp_headers = NULL;
    req->n_resp_headers = 0;
    req->status = 0;
    req->answered = 0;
}

void of_http_request_release(of_http_request *req)
{
    if (!req)
        return;
    of_http_request_clear_response(req);
    for (size_t i = 0; i < req->n_params; i++)
        free((char *)req->params[i].value);
    free(req->params);
    for (size_t i = 0; i < req->n_query; i++) {
        free((char *)req->query[i].name);
        free((char *)req->query[i].value);
    }
    free(req->query);
    free(req->body);
    free((char *)req->principal.subject);
    if (req->principal.roles) {
        for (size_t i = 0; req->principal.roles[i]; i++)
            free((char *)req->principal.roles[i]);
        free((void *)req->principal.roles);
    }
    req->params = NULL;
    req->query = NULL;
    req->body = NULL;
    req->n_params = req->n_query = req->body_len = 0;
    req->principal.subject = NULL;
    req->principal.roles = NULL;
    req->has_principal = 0;
}

int of_api_http_respond(of_http_request *req, int status, const char *content_type,
                        const void *body, size_t len, const char *const *headers)
{
    char why[200];
    if (!req)
        return -1;
    if (req->answered) {
        of_log(OF_LVL_ERROR, NULL, NULL, "http_respond: the request %s %s is already answered",
               req->method, req->path);
        return -1;
    }
    if (status < 200 || status > 599) {
        of_log(OF_LVL_ERROR, NULL, NULL, "http_respond: status %d is not 200..599", status);
        return -1;
    }
    if (content_type && (!*content_type || !field_value_ok(content_type))) {
        of_log(OF_LVL_ERROR, NULL, NULL, "http_respond: bad content type");
        return -1;
    }
    if (!body)
        len = 0;
    size_t n_headers = 0;
    for (; headers && headers[n_headers]; n_headers++) {
        if (check_header_line(headers[n_headers], why, sizeof(why)) < 0) {
            of_log(OF_LVL_ERROR, NULL, NULL, "http_respond: %s", why);
            return -1;
        }
    }
    char *ct = strdup(content_type ? content_type : "application/json");
    char *copy = malloc(len + 1);
    char **hs = n_headers ? calloc(n_headers, sizeof(*hs)) : NULL;
    int bad = !ct || !copy || (n_headers && !hs);
    for (size_t i = 0; !bad && i < n_headers; i++)
        bad = !(hs[i] = strdup(headers[i]));
    if (bad) {
        free(ct);
        free(copy);
        for (size_t i = 0; hs && i < n_headers; i++)
            free(hs[i]);
        free(hs);
        of_log(OF_LVL_ERROR, NULL, NULL, "http_respond: out of memory");
        return -1;
    }
    if (len)
        memcpy(copy, body, len);
    copy[len] = '\0';
    req->status = status;
    req->content_type = ct;
    req->resp_body = copy;
    req->resp_len = len;
    req->resp_headers = hs;
    req->n_resp_headers = n_headers;
    req->answered = 1;
    return 0;
}

/* A problem answer with extension members. */
static int respond_problem(of_http_request *req, int status, const char *title, const char *detail,
                           const json_t *extra)
{
    if (!req)
        return -1;
    if (status < 400 || status > 599) {
        of_log(OF_LVL_ERROR, NULL, NULL, "http_problem: status %d is not an error (400..599)",
               status);
        return -1;
    }
    char *text = of_problem_json(status, title, detail, req->path, extra);
    if (!text) {
        of_log(OF_LVL_ERROR, NULL, NULL, "http_problem: out of memory");
        return -1;
    }
    int rc = of_api_http_respond(req, status, "application/problem+json", text, strlen(text), NULL);
    free(text);
    return rc;
}

int of_api_http_problem(of_http_request *req, int status, const char *title, const char *detail)
{
    return respond_problem(req, status, title, detail, NULL);
}

int of_http_json_error_at(of_http_request *req, const char *text, int line, int column,
                          int position)
{
    char detail[400];
    snprintf(detail, sizeof(detail), "the body is not valid JSON: %s (line %d, column %d, byte %d)",
             text && *text ? text : "syntax error", line, column, position);
    json_t *extra =
        json_pack("{s:i, s:i, s:i}", "line", line, "column", column, "position", position);
    int rc = respond_problem(req, 400, "Malformed JSON", detail, extra);
    json_decref(extra);
    return rc;
}

int of_http_json_error(of_http_request *req, const json_error_t *error)
{
    if (!error)
        return of_http_json_error_at(req, NULL, 0, 0, 0);
    return of_http_json_error_at(req, error->text, error->line, error->column,
                                 (int)error->position);
}
