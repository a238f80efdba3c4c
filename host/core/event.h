/* An event as the host carries it: a copy it owns, with the topic and position it was read at. */
#ifndef OF_EVENT_H
#define OF_EVENT_H

#include <orderflow/host_api.h>

#include <stddef.h>
#include <stdint.h>

typedef struct of_event_header {
    char *name;  /* NUL-terminated; in the event's header blocks (event.c), with the value */
    void *value; /* value_len bytes plus a NUL for convenience */
    size_t value_len;
} of_event_header;

struct of_event_hblock; /* event.c */

typedef struct of_event {
    char *topic;       /* owned; NULL until produced/consumed */
    int32_t partition; /* -1 when not yet assigned */
    int64_t offset;    /* -1 when not yet assigned */
    int64_t timestamp_ms;
    /* key and payload live in the event's own allocation (event.c), so they are never
     * replaced or freed on their own: an event is built once and read many times. */
    void *key; /* NULL when keyless; key_len bytes plus a NUL */
    size_t key_len;
    void *payload; /* never NULL; payload_len bytes plus a NUL */
    size_t payload_len;
    of_event_header *headers; /* in the first header block, or on its own once it outgrew it */
    size_t n_headers;
    size_t cap_headers; /* room in headers */
    int headers_own;    /* headers is an allocation of its own */
    /* The headers' names and values, the newest block first, freed with the event: an event's
     * headers cost one allocation together rather than one each. */
    struct of_event_hblock *hblocks;
} of_event;

/* All return NULL / -1 on no memory. */
of_event *of_event_new(const void *key, size_t key_len, const void *payload, size_t payload_len);
of_event *of_event_clone(const of_event *ev);
void of_event_free(of_event *ev);
int of_event_set_topic(of_event *ev, const char *topic);
/* Room for n more headers with bytes of names and values (each name and value counts its
 * length plus one), so that adding them allocates nothing more; 0 or -1. For a copy of headers
 * whose sizes are known (a clone, a consumed message). */
int of_event_reserve_headers(of_event *ev, size_t n, size_t bytes);
/* Appends a header (duplicates allowed, as in Kafka). */
int of_event_add_header(of_event *ev, const char *name, const void *value, size_t len);
/* Replaces the first header of that name or appends it. The old value's bytes stay in the
 * event's blocks until it is freed (a header is replaced a few times at most). */
int of_event_set_header(of_event *ev, const char *name, const void *value, size_t len);
/* First header with that name or NULL. */
const of_event_header *of_event_header_get(const of_event *ev, const char *name);

#endif
