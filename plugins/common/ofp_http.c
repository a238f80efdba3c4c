#include "ofp_http.h"
#include "ofp_id.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

of_status ofp_problemv(const of_host_api *api, of_http_request *req, int status, const char *title,
                       const char *fmt, va_list ap)
{
    char detail[512];
    vsnprintf(detail, sizeof(detail), fmt, ap);
    api->http_problem(req, status, title, detail);
    return OF_REJECT;
}

of_status ofp_problem(const of_host_api *api, of_http_request *req, int status, const char *title,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    of_status s = ofp_problemv(api, req, status, title, fmt, ap);
    va_end(ap);
    return s;
}

of_status ofp_internal_error(const of_host_api *api, of_http_request *req)
{
    return ofp_problem(api, req, 500, NULL, "the request could not be completed");
}

of_status ofp_respond_json(const of_host_api *api, of_http_request *req, int status, json_t *doc,
                           const char *const *headers)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text)
        return ofp_internal_error(api, req);
    api->http_respond(req, status, NULL, text, strlen(text), headers);
    free(text);
    return OF_OK;
}

of_status ofp_http_db_failed(const of_host_api *api, of_stage *stage, of_call *call,
                             of_http_request *req, const char *what)
{
    const char *msg = NULL;
    of_db_error e = api->db_last_error(call, &msg);
    if (e == OF_DB_ERR_TRANSIENT || e == OF_DB_ERR_UNAVAILABLE) {
        api->log(stage, OF_LOG_WARN, "%s: database unavailable (%s)", what,
                 msg ? msg : "no reason");
        return OF_RETRY;
    }
    api->log(stage, OF_LOG_ERROR, "%s: database error %d (%s)", what, (int)e,
             msg ? msg : "no reason");
    return ofp_internal_error(api, req);
}

const char *ofp_caller(const of_host_api *api, of_http_request *req, size_t max, int *admin)
{
    const of_principal *p = api->http_principal(req);
    if (!p || !p->subject) {
        ofp_problem(api, req, 401, "Unauthorized", "this route needs a bearer token");
        return NULL;
    }
    size_t len = strlen(p->subject);
    if (len > max || !ofp_valid_key(p->subject, len)) {
        ofp_problem(api, req, 403, "Forbidden",
                    "the token's subject cannot be a customer (empty, too long or ending in a "
                    "space)");
        return NULL;
    }
    *admin = 0;
    for (size_t i = 0; p->roles && p->roles[i]; i++)
        if (strcmp(p->roles[i], "admin") == 0)
            *admin = 1;
    return p->subject;
}

int ofp_db_row(const of_host_api *api, of_db_rows *rows, of_db_value *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (api->db_rows_get(rows, i, &v[i]) != 0)
            return -1;
    return 0;
}

of_status ofp_event_db_failed(const of_host_api *api, of_stage *stage, of_call *call,
                              const char *what)
{
    const char *msg = NULL;
    of_db_error e = api->db_last_error(call, &msg);
    api->set_reason(call, "%s: %s", what, msg ? msg : "database error");
    if (e == OF_DB_ERR_TRANSIENT || e == OF_DB_ERR_UNAVAILABLE)
        return OF_RETRY;
    api->log(stage, OF_LOG_ERROR, "%s: database error %d (%s)", what, (int)e,
             msg ? msg : "no reason");
    return OF_REJECT;
}

void ofp_events_db_failed(const of_host_api *api, of_stage *stage, of_call *const *calls, size_t n,
                          of_status *status, const char *what)
{
    if (n == 1) {
        status[0] = ofp_event_db_failed(api, stage, calls[0], what);
        return;
    }
    const char *msg = NULL;
    of_db_error e = api->db_last_error(calls[0], &msg);
    of_status st = e == OF_DB_ERR_TRANSIENT || e == OF_DB_ERR_UNAVAILABLE ? OF_RETRY : OF_REJECT;
    /* Not an error yet: the host tries each event alone, and the one that causes it is
     * rejected (and logged) by itself. */
    if (st == OF_REJECT)
        api->log(stage, OF_LOG_WARN, "%s, for a set of %zu events: %s", what, n,
                 msg ? msg : "database error");
    for (size_t i = 0; i < n; i++) {
        api->set_reason(calls[i], "%s: %s", what, msg ? msg : "database error");
        status[i] = st;
    }
}

void ofp_shown(const char *s, size_t len, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; s && i < len && o + 1 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[o++] =
            (char)(ch < 0x20 || ch >= 0x7F || ch == '"' || ch == '\'' || ch == '\\' ? '?' : ch);
    }
    if (size)
        out[o] = '\0';
}

void ofp_rfc3339_ms(int64_t ms, char *out, size_t size)
{
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        secs--;
    }
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(out, size, "1970-01-01T00:00:00.000Z");
        return;
    }
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03dZ", base, frac);
}

json_t *ofp_read_object(const of_host_api *api, of_http_request *req, const char *const *allowed)
{
    size_t len = 0;
    const char *body = api->http_body(req, &len);
    json_error_t e;
    json_t *doc = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &e);
    if (!doc) {
        ofp_problem(api, req, 400, "Malformed JSON",
                    "the body is not valid JSON: %s (line %d, column %d)", e.text, e.line,
                    e.column);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        ofp_problem(api, req, 400, "Invalid request", "the body must be a JSON object");
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v)
    {
        int known = 0;
        for (size_t i = 0; allowed[i] && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known) {
            char name[72];
            ofp_shown(key, strlen(key), name, sizeof(name));
            json_decref(doc);
            ofp_problem(api, req, 400, "Invalid request", "unknown field '%s'", name);
            return NULL;
        }
    }
    return doc;
}
