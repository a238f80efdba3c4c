/* Time-ordered UUIDs (uuid.h). */
#include "uuid.h"

#include "runner.h"

#include <string.h>
#include <time.h>

static const char hex[] = "0123456789abcdef";

void of_uuid_format(const uint8_t b[16], char out[OF_UUID_LEN + 1])
{
    size_t pos = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[pos++] = '-';
        out[pos++] = hex[b[i] >> 4];
        out[pos++] = hex[b[i] & 0x0f];
    }
    out[pos] = '\0';
}

void of_uuid7_at(uint64_t unix_ms, char out[OF_UUID_LEN + 1])
{
    uint8_t b[16];
    uint64_t r1 = of_rand_u64(), r2 = of_rand_u64();
    memcpy(b + 6, &r1, 2);
    memcpy(b + 8, &r2, 8);
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(unix_ms >> (8 * (5 - i)));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x70); /* version 7 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 9562 variant */
    of_uuid_format(b, out);
}

void of_uuid7(char out[OF_UUID_LEN + 1])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    of_uuid7_at((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u, out);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int of_uuid_prefix(const char *id, size_t len, uint8_t prefix[6])
{
    if (!id || len != OF_UUID_LEN)
        return 0;
    for (size_t i = 0; i < OF_UUID_LEN; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? id[i] != '-' : hex_value(id[i]) < 0)
            return 0;
    }
    /* The first 12 hex digits: 8, the dash at 8, then 4. */
    static const size_t at[12] = {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12};
    for (int i = 0; i < 6; i++)
        prefix[i] = (uint8_t)(hex_value(id[at[2 * i]]) << 4 | hex_value(id[at[2 * i + 1]]));
    return 1;
}
