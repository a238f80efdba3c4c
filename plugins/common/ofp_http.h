/* Helpers the business plugins share for answering HTTP requests; compiled into each plugin
 * that uses them (a plugin links against nothing of the host, and nothing of another plugin). */
#ifndef OFP_HTTP_H
#define OFP_HTTP_H

#include <orderflow/stage.h>

#include <jansson.h>
#include <stdarg.h>

/* An RFC 9457 problem; returns OF_REJECT, so the handler's transaction is rolled back. */
of_status ofp_problem(const of_host_api *api, of_http_request *req, int status, const char *title,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
of_status ofp_problemv(const of_host_api *api, of_http_request *req, int status, const char *title,
                       const char *fmt, va_list ap);
/* A 500 that says nothing of the cause (which is logged by the caller). */
of_status ofp_internal_error(const of_host_api *api, of_http_request *req);
/* Answers doc (consumed; NULL means out of memory: a 500) as JSON; returns OF_OK. */
of_status ofp_respond_json(const of_host_api *api, of_http_request *req, int status, json_t *doc,
                           const char *const *headers);
/* A printable copy of an untrusted string for a message: controls, non-ASCII bytes, quotes and
 * backslashes become '?'. out is always terminated (size > 0). */
void ofp_shown(const char *s, size_t len, char *out, size_t size);
/* Milliseconds since the epoch as RFC 3339 UTC with milliseconds ("2026-11-27T12:00:00.123Z"). */
void ofp_rfc3339_ms(int64_t ms, char *out, size_t size);
/* The body as a JSON object with only the `allowed` fields (NULL-terminated); NULL when answered
 * (400: malformed JSON with its line and column, not an object, an unknown field). */
json_t *ofp_read_object(const of_host_api *api, of_http_request *req, const char *const *allowed);
/* A database call in a handler failed: outages and deadlocks give OF_RETRY (the gateway answers
 * 503), anything else is logged and answered 500. */
of_status ofp_http_db_failed(const of_host_api *api, of_stage *stage, of_call *call,
                             of_http_request *req, const char *what);
/* The same for a statement the n calls of a set (process_batch) share: every call gets the reason
 * and the status (they share the transaction, and so its error). With n > 1 a non-transient
 * error is logged once as a warning: the host tries each event alone (docs/sdk.md, section 13),
 * where the culprit is rejected and logged by ofp_event_db_failed. */
void ofp_events_db_failed(const of_host_api *api, of_stage *stage, of_call *const *calls, size_t n,
                          of_status *status, const char *what);
/* The caller of an `auth: required` route as a customer: the token's subject, and whether it
 * has the admin role. The subject must be an ofp_valid_key of at most max bytes, since it is the
 * customer id the plugin's rows are keyed by. NULL when answered (401 without a principal, 403
 * with a subject that cannot be a customer). The string is the host's, valid for the request. */
const char *ofp_caller(const of_host_api *api, of_http_request *req, size_t max, int *admin);
/* The first n columns of the current row (after db_rows_next answered 1) into v; 0, or -1 when
 * one cannot be read. */
int ofp_db_row(const of_host_api *api, of_db_rows *rows, of_db_value *v, size_t n);
/* A database call while processing an event failed: outages and deadlocks are retried, anything
 * else is a bug and the event goes to the dead-letter topic with the reason. */
of_status ofp_event_db_failed(const of_host_api *api, of_stage *stage, of_call *call,
                              const char *what);

#endif
