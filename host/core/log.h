/* The host's log: one line per record to stderr, text for a terminal or JSON for journald. */
#ifndef OF_LOG_H
#define OF_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum of_log_level_t {
    OF_LVL_ERROR = 0,
    OF_LVL_WARN = 1,
    OF_LVL_INFO = 2,
    OF_LVL_DEBUG = 3
} of_log_level_t;

typedef enum of_log_format { OF_LOG_TEXT = 0, OF_LOG_JSON = 1 } of_log_format;

void of_log_set_level(of_log_level_t level);
of_log_level_t of_log_get_level(void);
void of_log_set_format(of_log_format format);
int of_log_enabled(of_log_level_t level);
/* pipeline/stage may be NULL. Thread-safe; one write(2) per record. */
void of_logv(of_log_level_t level, const char *pipeline, const char *stage, const char *fmt,
             va_list ap);
void of_log(of_log_level_t level, const char *pipeline, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int of_log_parse_level(const char *s, of_log_level_t *out);
const char *of_log_level_name(of_log_level_t level);
int of_log_parse_format(const char *s, of_log_format *out);

/* The calling thread's log context: what it is working on, added to every record it logs
 * (JSON: "trace_id" and "key"; text: " trace_id=... key=..." at the end) until cleared. The
 * runner sets it around each event (the trace id of its traceparent header, the event's key),
 * the gateway around each request. trace_id must be 32 lowercase hex digits or NULL; key is
 * shown only when printable (at most 128 bytes are kept); either may be NULL. */
void of_log_context_set(const char *trace_id, const void *key, size_t key_len);
void of_log_context_clear(void);
/* The context's trace id (32 hex digits) or NULL. */
const char *of_log_context_trace_id(void);
/* The trace id of a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, not all zeros): 0 with it in
 * out (NUL-terminated), -1 when value is not a valid traceparent. */
int of_traceparent_trace_id(const char *value, size_t len, char out[33]);

#endif
