/* Random bytes and UUIDs shared by the business plugins (ofp_id.h). */
#include "ofp_id.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

int ofp_random_bytes(void *buf, size_t n)
{
    unsigned char *b = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(b + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

int ofp_uuid_at(uint64_t unix_ms, char out[OFP_UUID_LEN + 1])
{
    unsigned char b[16];
    if (ofp_random_bytes(b + 6, sizeof(b) - 6) != 0)
        return -1;
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(unix_ms >> (8 * (5 - i)));
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x70); /* version 7 */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80); /* RFC 9562 variant */
    snprintf(out, OFP_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

int ofp_uuid(char out[OFP_UUID_LEN + 1])
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return -1;
    return ofp_uuid_at((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u, out);
}

int ofp_valid_uuid(const char *s)
{
    if (!s || strlen(s) != OFP_UUID_LEN)
        return 0;
    for (size_t i = 0; i < OFP_UUID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}
