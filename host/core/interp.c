/* ${VAR} / ${VAR:-default} interpolation; see interp.h for the rules. */
#include "interp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

/* 0, or -1 when the result would pass the limit or memory runs out (*oom tells which). */
static int buf_add(buf *b, const char *s, size_t n, int *oom)
{
    if (n > OF_INTERP_MAX_BYTES || b->len + n > OF_INTERP_MAX_BYTES)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            *oom = 1;
            return -1;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static const char *env_getenv(const char *name, void *opaque)
{
    (void)opaque;
    return getenv(name);
}

static int is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static char *fail(buf *b, size_t *err_offset, size_t off, char *errstr, size_t errstr_size,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static char *fail(buf *b, size_t *err_offset, size_t off, char *errstr, size_t errstr_size,
                  const char *fmt, ...)
{
    free(b->data);
    b->data = NULL;
    if (err_offset)
        *err_offset = off;
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

char *of_interp(const char *in, size_t len, of_env_lookup lookup, void *opaque, size_t *out_len,
                size_t *err_offset, char *errstr, size_t errstr_size)
{
    buf b = {0};
    int oom = 0;
    if (!lookup)
        lookup = env_getenv;
    if (!in)
        len = 0;
    if (err_offset)
        *err_offset = 0;
#define ADD(s, n, at)                                                                              \
    do {                                                                                           \
        if (buf_add(&b, (s), (n), &oom) < 0)                                                       \
            return oom ? fail(&b, err_offset, (at), errstr, errstr_size, "out of memory")          \
                       : fail(&b, err_offset, (at), errstr, errstr_size,                           \
                              "value longer than %u bytes after interpolation",                    \
                              OF_INTERP_MAX_BYTES);                                                \
    } while (0)
    ADD("", 0, 0);
    size_t i = 0;
    while (i < len) {
        /* Copy the run up to the next '$'. */
        const char *dollar = memchr(in + i, '$', len - i);
        size_t run = dollar ? (size_t)(dollar - (in + i)) : len - i;
        if (run) {
            ADD(in + i, run, i);
            i += run;
            continue;
        }
        size_t start = i;
        if (i + 1 < len && in[i + 1] == '$') {
            ADD("$", 1, start);
            i += 2;
            continue;
        }
        if (i + 1 >= len || in[i + 1] != '{') {
            ADD("$", 1, start);
            i++;
            continue;
        }
        /* ${ ... */
        size_t name_at = i + 2, p = name_at;
        const char *close = memchr(in + name_at, '}', len - name_at);
        if (!close)
            return fail(&b, err_offset, start, errstr, errstr_size,
                        "unterminated '${' (missing '}')");
        size_t close_at = (size_t)(close - in);
        if (p < len && is_name_start(in[p])) {
            while (p < len && is_name_char(in[p]))
                p++;
        }
        if (p == name_at || (p < close_at && in[p] != ':')) {
            /* Bad name: show the text up to the closing brace (bounded). */
            size_t n = close_at - name_at;
            if (n == 0)
                return fail(&b, err_offset, name_at, errstr, errstr_size,
                            "empty variable name in '${}'");
            return fail(&b, err_offset, name_at, errstr, errstr_size,
                        "bad variable name '%.*s' (a name is letters, digits and _, not starting "
                        "with a digit; a default is written ${NAME:-value})",
                        (int)(n > 64 ? 64 : n), in + name_at);
        }
        size_t name_len = p - name_at;
        if (name_len > 255)
            return fail(&b, err_offset, name_at, errstr, errstr_size,
                        "variable name longer than 255 characters");
        char name[256];
        memcpy(name, in + name_at, name_len);
        name[name_len] = '\0';
        int has_default = 0;
        size_t def_at = 0, def_len = 0;
        if (p < close_at) {
            /* in[p] == ':' */
            if (p + 1 >= close_at || in[p + 1] != '-')
                return fail(&b, err_offset, p, errstr, errstr_size,
                            "unsupported form in '${%s:...}' (only ${%s} and ${%s:-default} are "
                            "supported)",
                            name, name, name);
            has_default = 1;
            def_at = p + 2;
            def_len = close_at - def_at;
            for (size_t k = def_at; k + 1 < close_at; k++)
                if (in[k] == '$' && in[k + 1] == '{')
                    return fail(&b, err_offset, k, errstr, errstr_size,
                                "nested '${' inside the default of ${%s:-...} is not supported",
                                name);
        }
        const char *val = lookup(name, opaque);
        if (val && (!has_default || val[0] != '\0')) {
            ADD(val, strlen(val), start);
        } else if (has_default) {
            ADD(in + def_at, def_len, start);
        } else {
            return fail(&b, err_offset, start, errstr, errstr_size,
                        "environment variable %s is not set and has no default (write "
                        "${%s:-value})",
                        name, name);
        }
        i = close_at + 1;
    }
#undef ADD
    if (out_len)
        *out_len = b.len;
    return b.data;
}
