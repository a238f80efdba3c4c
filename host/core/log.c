#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = OF_LVL_INFO;
static _Atomic int g_format = OF_LOG_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void of_log_set_level(of_log_level_t level)
{
    atomic_store(&g_level, (int)level);
}

of_log_level_t of_log_get_level(void)
{
    return (of_log_level_t)atomic_load(&g_level);
}

void of_log_set_format(of_log_format format)
{
    atomic_store(&g_format, (int)format);
}

int of_log_enabled(of_log_level_t level)
{
    return (int)level <= atomic_load(&g_level);
}

int of_log_parse_level(const char *s, of_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (of_log_level_t)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = OF_LVL_WARN;
        return 0;
    }
    return -1;
}

/* Appends s as a JSON string body (without quotes), escaping what JSON requires. */
static size_t json_escape(char *dst, size_t cap, size_t pos, const char *s)
{
    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            dst[pos++] = '\\';
            dst[pos++] = (char)c;
        } else if (c < 0x20) {
            pos += (size_t)snprintf(dst + pos, cap - pos, "\\u%04x", c);
        } else {
            dst[pos++] = (char)c;
        }
    }
    return pos;
}

void of_logv(of_log_level_t level, const char *pipeline, const char *stage, const char *fmt,
             va_list ap)
{
    if (!of_log_enabled(level))
        return;
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t w = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof(when) - w, ".%03ldZ", ts.tv_nsec / 1000000);

    char line[4096];
    size_t pos;
    const char *lvl = level_names[level <= OF_LVL_DEBUG ? level : OF_LVL_DEBUG];
    if (atomic_load(&g_format) == OF_LOG_JSON) {
        pos = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\"", when, lvl);
        if (pipeline) {
            pos += (size_t)snprintf(line + pos, sizeof(line) - pos, ",\"pipeline\":\"");
            pos = json_escape(line, sizeof(line), pos, pipeline);
            line[pos++] = '"';
        }
        if (stage) {
            pos += (size_t)snprintf(line + pos, sizeof(line) - pos, ",\"stage\":\"");
            pos = json_escape(line, sizeof(line), pos, stage);
            line[pos++] = '"';
        }
        pos += (size_t)snprintf(line + pos, sizeof(line) - pos, ",\"msg\":\"");
        pos = json_escape(line, sizeof(line) - 3, pos, msg);
        line[pos++] = '"';
        line[pos++] = '}';
        line[pos++] = '\n';
    } else {
        int n = snprintf(line, sizeof(line), "%s %-5s %s%s%s%s%s\n", when, lvl,
                         pipeline ? pipeline : "", pipeline && stage ? "/" : "", stage ? stage : "",
                         pipeline || stage ? ": " : "", msg);
        pos = n < 0 ? 0 : (size_t)n;
        if (pos >= sizeof(line)) {
            pos = sizeof(line) - 1;
            line[pos - 1] = '\n';
        }
    }
    /* One write per record keeps lines from different threads whole. */
    ssize_t rc = write(STDERR_FILENO, line, pos);
    (void)rc;
}

void of_log(of_log_level_t level, const char *pipeline, const char *stage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    of_logv(level, pipeline, stage, fmt, ap);
    va_end(ap);
}
