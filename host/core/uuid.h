/* Event ids: UUIDs whose first 48 bits are a time, so that the rows keyed by them (the inbox's
 * (consumer_group, event_id), the outbox's source) go in near one end of their index instead of
 * all over it: with random ids every insert dirtied a page of a B-tree that outgrows the buffer
 * pool (bench/RESULTS.md, step 24). */
#ifndef OF_UUID_H
#define OF_UUID_H

#include <stddef.h>
#include <stdint.h>

#define OF_UUID_LEN 36 /* canonical form, without its NUL */

/* The canonical lower-case form of b into out (OF_UUID_LEN + 1 bytes, NUL-terminated). */
void of_uuid_format(const uint8_t b[16], char out[OF_UUID_LEN + 1]);

/* A new version 7 UUID (RFC 9562): the Unix time in milliseconds, then 74 random bits. */
void of_uuid7(char out[OF_UUID_LEN + 1]);

/* The same for a given time (tests). */
void of_uuid7_at(uint64_t unix_ms, char out[OF_UUID_LEN + 1]);

/* When id (len bytes) is a UUID in canonical form (either case), its first 6 bytes into prefix
 * and 1; else 0. */
int of_uuid_prefix(const char *id, size_t len, uint8_t prefix[6]);

#endif
