/* Random bytes and UUIDs for the business plugins; pure (no host functions), compiled into each
 * plugin that uses them (a plugin links against nothing of the host, and nothing of another
 * plugin). */
#ifndef OFP_ID_H
#define OFP_ID_H

#include <stddef.h>

#define OFP_UUID_LEN 36 /* "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" */

/* n bytes from the kernel's random source (getrandom); 0, or -1. */
int ofp_random_bytes(void *buf, size_t n);
/* A new UUID v4 in its canonical lower-case form into out (OFP_UUID_LEN + 1 bytes); 0, or -1. */
int ofp_uuid(char out[OFP_UUID_LEN + 1]);
/* Whether s is a UUID in canonical lower-case form (any version): 36 characters, hex digits and
 * dashes at 8, 13, 18 and 23; anything else (upper case, paths, NULL) is refused. */
int ofp_valid_uuid(const char *s);

#endif
