#include "ofp_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
