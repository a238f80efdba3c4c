/* An event as the host carries it: a copy it owns, with the topic and position it was read at. */
#ifndef OF_EVENT_H
#define OF_EVENT_H

#include <orderflow/host_api.h>

#include <stddef.h>
#include <stdint.h>

typedef struct of_event_header {
    char *name;  /* owned, NUL-terminated; one allocation with the value (event.c) */
    void *value; /* points into name's allocation; value_len bytes plus a NUL for convenience */
    size_t value_len;
} of_event_header;

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
    of_event_header *headers; /* owned */
    size_t n_headers;
    size_t cap_headers; /* room in headers */
} of_event;

/* All return NULL / -1 on no memory. */
of_event *of_event_new(const void *key, size_t key_len, const void *payload, size_t payload_len);
of_event *of_event_clone(const of_event *ev);
void of_event_free(of_event *ev);
int of_event_set_topic(of_event *ev, const char *topic);
/* Appends a header (duplicates allowed, as in Kafka). */
int of_event_add_header(of_event *ev, const char *name, const void *value, size_t len);
/* Replaces the first header of that name or appends it. */
int of_event_set_header(of_event *ev, const char *name, const void *value, size_t len);
/* First header with that name or NULL. */
const of_event_header *of_event_header_get(const of_event *ev, const char *name);

#endif
