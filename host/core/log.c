#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = OF_LVL_INFO;
static _Atomic int g_format = OF_LOG_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* The thread's context (of_log_context_set). */
static _Thread_local char ctx_trace[33];
static _Thread_local char ctx_key[129];

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int of_traceparent_trace_id(const char *v, size_t len, char out[33])
{
    if (!v || len != 55 || memcmp(v, "00-", 3) != 0 || v[35] != '-' || v[52] != '-' ||
        !is_lower_hex(v + 3, 32) || !is_lower_hex(v + 36, 16) || !is_lower_hex(v + 53, 2) ||
        memcmp(v + 3, "00000000000000000000000000000000", 32) == 0)
        return -1;
    memcpy(out, v + 3, 32);
    out[32] = '\0';
    return 0;
}

void of_log_context_set(const char *trace_id, const void *key, size_t key_len)
{
    ctx_trace[0] = '\0';
    ctx_key[0] = '\0';
    if (trace_id && strlen(trace_id) == 32 && is_lower_hex(trace_id, 32))
        memcpy(ctx_trace, trace_id, 33);
    if (key && key_len > 0) {
        const unsigned char *k = key;
        size_t n = key_len < sizeof(ctx_key) - 1 ? key_len : sizeof(ctx_key) - 1;
        for (size_t i = 0; i < n; i++)
            if (k[i] < 0x20 || k[i] >= 0x7f)
                return; /* a binary key is not shown */
        memcpy(ctx_key, k, n);
        ctx_key[n] = '\0';
    }
}

void of_log_context_clear(void)
{
    ctx_trace[0] = '\0';
    ctx_key[0] = '\0';
}

const char *of_log_context_trace_id(void)
{
    return ctx_trace[0] ? ctx_trace : NULL;
}

const char *of_log_level_name(of_log_level_t level)
{
    return level_names[level <= OF_LVL_DEBUG ? level : OF_LVL_DEBUG];
}

int of_log_parse_format(const char *s, of_log_format *out)
{
    if (strcmp(s, "text") == 0)
        *out = OF_LOG_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = OF_LOG_JSON;
    else
        return -1;
    return 0;
}

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
        if (ctx_trace[0])
            pos +=
                (size_t)snprintf(line + pos, sizeof(line) - pos, ",\"trace_id\":\"%s\"", ctx_trace);
        if (ctx_key[0]) {
            pos += (size_t)snprintf(line + pos, sizeof(line) - pos, ",\"key\":\"");
            pos = json_escape(line, sizeof(line), pos, ctx_key);
            line[pos++] = '"';
        }
        pos += (size_t)snprintf(line + pos, sizeof(line) - pos, ",\"msg\":\"");
        pos = json_escape(line, sizeof(line) - 3, pos, msg);
        line[pos++] = '"';
        line[pos++] = '}';
        line[pos++] = '\n';
    } else {
        char ctx[256] = "";
        if (ctx_trace[0] || ctx_key[0])
            snprintf(ctx, sizeof(ctx), "%s%s%s%s", ctx_trace[0] ? " trace_id=" : "", ctx_trace,
                     ctx_key[0] ? " key=" : "", ctx_key);
        int n = snprintf(line, sizeof(line), "%s %-5s %s%s%s%s%s%s\n", when, lvl,
                         pipeline ? pipeline : "", pipeline && stage ? "/" : "", stage ? stage : "",
                         pipeline || stage ? ": " : "", msg, ctx);
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
