/* Random bytes and UUIDs for the business plugins; pure (no host functions), compiled into each
 * plugin that uses them (a plugin links against nothing of the host, and nothing of another
 * plugin). */
#ifndef OFP_ID_H
#define OFP_ID_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define OFP_UUID_LEN 36 /* "xxxxxxxx-xxxx-7xxx-yxxx-xxxxxxxxxxxx" */

/* n bytes from the kernel's random source (getrandom); 0, or -1. */
int ofp_random_bytes(void *buf, size_t n);
/* A new UUID version 7 (RFC 9562: the Unix time in milliseconds, then 74 random bits) in its
 * canonical lower-case form into out (OFP_UUID_LEN + 1 bytes); 0, or -1. Time-ordered so that
 * the rows keyed by it (orders and everything keyed by an order) go in near one end of their
 * index: random keys dirty a page anywhere in a B-tree that outgrows the buffer pool. */
int ofp_uuid(char out[OFP_UUID_LEN + 1]);
/* The same for a given time (tests). */
int ofp_uuid_at(uint64_t unix_ms, char out[OFP_UUID_LEN + 1]);
/* Whether s is a UUID in canonical lower-case form (any version): 36 characters, hex digits and
 * dashes at 8, 13, 18 and 23; anything else (upper case, paths, NULL) is refused. */
int ofp_valid_uuid(const char *s);
/* Whether s (len bytes) is fit to be a key a plugin both looks up in SQL and matches in C (a
 * customer id, an order id from an event): not empty, no NUL, no trailing space. The tables'
 * utf8mb4_bin collation compares with PAD SPACE ('bob ' = 'bob' in SQL), so a key with
 * trailing spaces names another customer's rows in SQL than in C. */
static inline int ofp_valid_key(const char *s, size_t len)
{
    return s && len > 0 && s[len - 1] != ' ' && !memchr(s, '\0', len);
}

#endif
