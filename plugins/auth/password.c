/*
 * auth plugin: yescrypt password hashes (libxcrypt's crypt_gensalt_ra and crypt_rn) and the
 * syntax checks on registration input. See password.h.
 *
 * crypt_rn is crypt_r with the size of its work area and NULL instead of a "*0" failure token.
 * It is used rather than crypt_r because the sanitizers intercept crypt_r and bind the real one
 * when the process starts: in a daemon that dlopen()s this plugin (and so libcrypt) later, the
 * intercepted crypt_r would call a NULL pointer.
 */
#include "password.h"

#include <crypt.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(AUTH_PASSWORD_MAX_BYTES < CRYPT_MAX_PASSPHRASE_SIZE,
               "libxcrypt must be able to hash the longest password accepted");

/* ---- hashing ----------------------------------------------------------------------------- */

int auth_password_hash(const char *password, int cost, char *out, size_t out_size, char *errstr,
                       size_t errstr_size)
{
    if (!password || !out || out_size == 0) {
        snprintf(errstr, errstr_size, "bad arguments");
        return -1;
    }
    out[0] = '\0';
    if (cost < AUTH_YESCRYPT_COST_MIN || cost > AUTH_YESCRYPT_COST_MAX) {
        snprintf(errstr, errstr_size, "yescrypt cost %d is outside %d..%d", cost,
                 AUTH_YESCRYPT_COST_MIN, AUTH_YESCRYPT_COST_MAX);
        return -1;
    }
    /* NULL random bytes: libxcrypt reads them from the kernel. */
    errno = 0;
    char *setting = crypt_gensalt_ra("$y$", (unsigned long)cost, NULL, 0);
    if (!setting) {
        snprintf(errstr, errstr_size, "cannot make a yescrypt salt: %s",
                 errno ? strerror(errno) : "unknown error");
        return -1;
    }
    /* struct crypt_data is large (32 KiB): on the heap, not on a gateway thread's stack. */
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (!cd) {
        free(setting);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    const char *h = crypt_rn(password, setting, cd, (int)sizeof(*cd));
    int rc = -1;
    if (!h || h[0] == '*' || strncmp(h, "$y$", 3) != 0)
        snprintf(errstr, errstr_size, "yescrypt hashing failed");
    else if (strlen(h) >= out_size || strlen(h) > AUTH_HASH_MAX)
        snprintf(errstr, errstr_size, "the hash is longer than %d bytes", AUTH_HASH_MAX);
    else {
        memcpy(out, h, strlen(h) + 1);
        rc = 0;
    }
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    free(setting);
    return rc;
}

int auth_const_time_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t n = la > lb ? la : lb;
    unsigned diff = (unsigned)(la != lb);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < la ? (unsigned char)a[i] : 0;
        unsigned char y = i < lb ? (unsigned char)b[i] : 0;
        diff |= (unsigned)(x ^ y);
    }
    return diff == 0;
}

int auth_password_verify(const char *password, const char *stored_hash)
{
    if (!password || !stored_hash)
        return 0;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (!cd)
        return 0;
    const char *h = crypt_rn(password, stored_hash, cd, (int)sizeof(*cd));
    int ok = h && h[0] != '*' && strncmp(stored_hash, "$y$", 3) == 0 &&
             auth_const_time_equal(h, stored_hash);
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return ok;
}

/* ---- UTF-8 --------------------------------------------------------------------------------- */

/* Decodes one code point at s[*i]; advances *i. -1 on invalid UTF-8. */
static int32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    if (c < 0x80) {
        (*i)++;
        return c;
    }
    int n;
    int32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return -1;
    }
    if (len - *i <= (size_t)n)
        return -1;
    for (int k = 1; k <= n; k++) {
        unsigned char cc = s[*i + (size_t)k];
        if ((cc & 0xC0) != 0x80)
            return -1;
        cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    *i += (size_t)n + 1;
    return cp;
}

size_t auth_utf8_count(const char *s, size_t len)
{
    size_t i = 0, n = 0;
    while (i < len) {
        if (utf8_next((const unsigned char *)s, len, &i) < 0)
            return (size_t)-1;
        n++;
    }
    return n;
}

/* ---- input checks -------------------------------------------------------------------------- */

const char *auth_check_password(const char *password, size_t len, int min_chars)
{
    if (!password)
        return "is required";
    if (len > AUTH_PASSWORD_MAX_BYTES)
        return "must be at most 511 bytes";
    if (memchr(password, '\0', len))
        return "must not contain NUL characters";
    size_t n = auth_utf8_count(password, len);
    if (n == (size_t)-1)
        return "must be valid UTF-8";
    if (min_chars < AUTH_PASSWORD_MIN_FLOOR)
        min_chars = AUTH_PASSWORD_MIN_FLOOR;
    if (n < (size_t)min_chars)
        return AUTH_PASSWORD_TOO_SHORT;
    return NULL;
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* RFC 5322 atext. */
static int is_atext(int c)
{
    return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL);
}

const char *auth_check_email(const char *email, size_t len)
{
    if (!email)
        return "is required";
    if (len == 0)
        return "must not be empty";
    if (len > AUTH_EMAIL_MAX)
        return "must be at most 254 characters";
    const char *at = NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)email[i];
        if (c == ' ' || c == '\t')
            return "must not contain spaces";
        if (c < 0x20 || c == 0x7F)
            return "must not contain control characters";
        if (c > 0x7F)
            return "must be ASCII (write an internationalised domain in its xn-- form)";
        if (c == '@') {
            if (at)
                return "must contain exactly one '@'";
            at = email + i;
        }
    }
    if (!at)
        return "must contain exactly one '@'";
    size_t local_len = (size_t)(at - email);
    const char *domain = at + 1;
    size_t domain_len = len - local_len - 1;
    if (local_len == 0)
        return "needs a local part before the '@'";
    if (local_len > AUTH_EMAIL_LOCAL_MAX)
        return "has a local part longer than 64 characters";
    if (email[0] == '"')
        return "must not have a quoted local part";
    /* dot-atom: atext runs separated by single dots */
    for (size_t i = 0; i < local_len; i++) {
        char c = email[i];
        if (c == '.') {
            if (i == 0 || i + 1 == local_len || email[i + 1] == '.')
                return "has a local part with a dot at either end or two dots in a row";
        } else if (!is_atext(c)) {
            return "has a character not allowed in the local part";
        }
    }
    if (domain_len == 0)
        return "needs a domain after the '@'";
    if (domain[0] == '[')
        return "must not have an address literal as its domain";
    size_t labels = 0, label_len = 0;
    for (size_t i = 0; i <= domain_len; i++) {
        if (i == domain_len || domain[i] == '.') {
            if (label_len == 0)
                return "has an empty label in its domain";
            if (domain[i - 1] == '-' || domain[i - label_len] == '-')
                return "has a domain label that starts or ends with '-'";
            labels++;
            label_len = 0;
            continue;
        }
        char c = domain[i];
        if (!is_alpha(c) && !is_digit(c) && c != '-')
            return "has a character not allowed in a domain name";
        if (++label_len > AUTH_EMAIL_LABEL_MAX)
            return "has a domain label longer than 63 characters";
    }
    if (labels < 2)
        return "needs a domain with a dot (e.g. example.com)";
    return NULL;
}

int auth_email_normalize(const char *email, size_t len, char *out, size_t out_size)
{
    if (!email || !out || len >= out_size)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = email[i];
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    out[len] = '\0';
    return 0;
}

static int is_blank_cp(int32_t cp)
{
    return cp == 0x20 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200B) ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

const char *auth_check_display_name(const char *name, size_t len)
{
    if (!name)
        return "is required";
    if (len == 0)
        return "must not be empty";
    size_t i = 0, n = 0;
    int blank = 1;
    while (i < len) {
        int32_t cp = utf8_next((const unsigned char *)name, len, &i);
        if (cp < 0)
            return "must be valid UTF-8";
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F))
            return "must not contain control characters";
        if (cp == 0x2028 || cp == 0x2029)
            return "must not contain line or paragraph separators";
        if ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E ||
            cp == 0x200F || cp == 0x061C)
            return "must not contain bidirectional formatting characters";
        if (!is_blank_cp(cp))
            blank = 0;
        if (++n > AUTH_DISPLAY_NAME_MAX)
            return "must be at most 200 characters";
    }
    if (blank)
        return "must not be only spaces";
    return NULL;
}
