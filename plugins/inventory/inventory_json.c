/* inventory: small validation and formatting helpers. */
#include "inventory.h"

#include <stdio.h>
#include <time.h>

int inv_valid_sku(const char *s, size_t len)
{
    if (!s || len == 0 || len > INV_SKU_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int inv_valid_currency(const char *s, size_t len)
{
    if (!s || len != 3)
        return 0;
    for (size_t i = 0; i < 3; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return 0;
    return 1;
}

size_t inv_utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

void inv_shown(const char *s, size_t len, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; s && i < len && o + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (char)(c < 0x20 || c >= 0x7F || c == '"' || c == '\\' ? '?' : c);
    }
    if (size)
        out[o] = '\0';
}

void inv_rfc3339_ms(int64_t ms, char *out, size_t size)
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
