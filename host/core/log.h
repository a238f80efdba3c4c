/* The host's log: one line per record to stderr, text for a terminal or JSON for journald. */
#ifndef OF_LOG_H
#define OF_LOG_H

#include <stdarg.h>

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

#endif
