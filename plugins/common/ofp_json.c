/* Compact JSON text written into a buffer (ofp_json.h). */
#include "ofp_json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ofp_jw_init(ofp_jw *w)
{
    memset(w, 0, offsetof(ofp_jw, inline_buf));
    w->p = w->inline_buf;
    w->cap = sizeof(w->inline_buf);
    w->p[0] = '\0';
}

void ofp_jw_free(ofp_jw *w)
{
    if (w->p != w->inline_buf)
        free(w->p);
    w->p = w->inline_buf;
    w->cap = sizeof(w->inline_buf);
    w->len = 0;
    w->p[0] = '\0';
}

/* Room for n more bytes and the terminating NUL; 0 or -1 (the writer failed). */
static int room(ofp_jw *w, size_t n)
{
    if (w->failed)
        return -1;
    if (n < w->cap - w->len)
        return 0;
    if (n > SIZE_MAX / 2 - w->len) {
        w->failed = 1;
        return -1;
    }
    size_t cap = w->cap * 2;
    while (cap - w->len <= n)
        cap *= 2;
    char *p = w->p == w->inline_buf ? malloc(cap) : realloc(w->p, cap);
    if (!p) {
        w->failed = 1;
        return -1;
    }
    if (w->p == w->inline_buf)
        memcpy(p, w->inline_buf, w->len);
    w->p = p;
    w->cap = cap;
    return 0;
}

static void put(ofp_jw *w, const char *s, size_t n)
{
    if (room(w, n) != 0)
        return;
    memcpy(w->p + w->len, s, n);
    w->len += n;
    w->p[w->len] = '\0';
}

/* The length of the UTF-8 sequence at s (at most n bytes), or 0 when it is not one: overlong
 * forms, surrogates and code points past U+10FFFF are refused, as jansson does. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* The bytes s (n of them) take escaped, or 0 when they are not UTF-8. */
static size_t escaped_len(const unsigned char *s, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(s + i, n - i);
            if (k == 0)
                return 0;
            out += k;
            i += k;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\')
            out += 1;
        else if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' ||
                 c == '\t')
            out += 2;
        else
            out += 6;
        i++;
    }
    return out + 2; /* the quotes */
}

static void put_string(ofp_jw *w, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    /* Measured first, so that the reservation is exact and a short string stays in the inline
     * buffer. */
    size_t out = escaped_len(s, n);
    if (out == 0) {
        w->failed = 1;
        return;
    }
    if (room(w, out) != 0)
        return;
    char *o = w->p + w->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x80 || (c >= 0x20 && c != '"' && c != '\\')) {
            *o++ = (char)c; /* UTF-8 checked above */
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default: {
            static const char hex[] = "0123456789ABCDEF";
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
        }
    }
    *o++ = '"';
    w->len = (size_t)(o - w->p);
    w->p[w->len] = '\0';
}

/* The separator and key before a value; -1 when the value is out of place. */
static int begin_value(ofp_jw *w, const char *key)
{
    if (w->failed)
        return -1;
    if (w->depth == 0) {
        if (key || w->len > 0) { /* the top holds one value, without a key */
            w->failed = 1;
            return -1;
        }
        return 0;
    }
    unsigned d = w->depth - 1;
    if (!key != !w->is_object[d]) {
        w->failed = 1;
        return -1;
    }
    if (w->members[d])
        put(w, ",", 1);
    w->members[d] = 1;
    if (key) {
        put_string(w, key, strlen(key));
        put(w, ":", 1);
    }
    return w->failed ? -1 : 0;
}

static void open_container(ofp_jw *w, const char *key, int object)
{
    if (begin_value(w, key) != 0)
        return;
    if (w->depth == OFP_JW_DEPTH) {
        w->failed = 1;
        return;
    }
    w->members[w->depth] = 0;
    w->is_object[w->depth] = (unsigned char)object;
    w->depth++;
    put(w, object ? "{" : "[", 1);
}

void ofp_jw_object(ofp_jw *w, const char *key)
{
    open_container(w, key, 1);
}

void ofp_jw_array(ofp_jw *w, const char *key)
{
    open_container(w, key, 0);
}

void ofp_jw_end(ofp_jw *w)
{
    if (w->failed)
        return;
    if (w->depth == 0) {
        w->failed = 1;
        return;
    }
    w->depth--;
    put(w, w->is_object[w->depth] ? "}" : "]", 1);
}

void ofp_jw_strn(ofp_jw *w, const char *key, const char *s, size_t len)
{
    if (begin_value(w, key) == 0)
        put_string(w, s, len);
}

void ofp_jw_str(ofp_jw *w, const char *key, const char *s)
{
    if (!s)
        ofp_jw_null(w, key);
    else
        ofp_jw_strn(w, key, s, strlen(s));
}

void ofp_jw_int(ofp_jw *w, const char *key, int64_t v)
{
    if (begin_value(w, key) != 0)
        return;
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRId64, v);
    put(w, num, (size_t)n);
}

void ofp_jw_bool(ofp_jw *w, const char *key, int v)
{
    if (begin_value(w, key) == 0)
        put(w, v ? "true" : "false", v ? 4 : 5);
}

void ofp_jw_null(ofp_jw *w, const char *key)
{
    if (begin_value(w, key) == 0)
        put(w, "null", 4);
}

const char *ofp_jw_text(ofp_jw *w, size_t *len)
{
    if (w->failed || w->depth != 0 || w->len == 0)
        return NULL;
    if (len)
        *len = w->len;
    return w->p;
}
