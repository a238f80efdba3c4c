#include "event.h"
#include "timeutil.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every event of every stage is built, copied and freed at least once per hop, with a handful
 * of headers each: the event, its key and payload are one allocation, and a header's name and
 * value another, so a hop costs a few calls of malloc instead of a few dozen. */

/* Copies len bytes to dst and adds a NUL, so text payloads and keys can be used as C strings;
 * returns dst. */
static void *put_bytes(char *dst, const void *src, size_t len)
{
    if (len)
        memcpy(dst, src, len);
    dst[len] = '\0';
    return dst;
}

of_event *of_event_new(const void *key, size_t key_len, const void *payload, size_t payload_len)
{
    if (!payload)
        payload_len = 0;
    /* Lengths no allocation could hold are refused before they overflow the sum. */
    const size_t most = SIZE_MAX - sizeof(of_event) - 2;
    size_t room = 0;
    if (key) {
        if (key_len >= most)
            return NULL;
        room = key_len + 1;
    }
    if (payload_len > most - room)
        return NULL;
    of_event *ev = malloc(sizeof(*ev) + room + payload_len + 1);
    if (!ev)
        return NULL;
    memset(ev, 0, sizeof(*ev));
    ev->partition = -1;
    ev->offset = -1;
    ev->timestamp_ms = of_now_ms();
    char *at = (char *)(ev + 1);
    if (key) {
        ev->key = put_bytes(at, key, key_len);
        ev->key_len = key_len;
        at += key_len + 1;
    }
    ev->payload = put_bytes(at, payload ? payload : "", payload_len);
    ev->payload_len = payload_len;
    return ev;
}

of_event *of_event_clone(const of_event *src)
{
    of_event *ev = of_event_new(src->key, src->key_len, src->payload, src->payload_len);
    if (!ev)
        return NULL;
    ev->partition = src->partition;
    ev->offset = src->offset;
    ev->timestamp_ms = src->timestamp_ms;
    if (src->topic && of_event_set_topic(ev, src->topic) != 0)
        goto fail;
    for (size_t i = 0; i < src->n_headers; i++)
        if (of_event_add_header(ev, src->headers[i].name, src->headers[i].value,
                                src->headers[i].value_len) != 0)
            goto fail;
    return ev;
fail:
    of_event_free(ev);
    return NULL;
}

void of_event_free(of_event *ev)
{
    if (!ev)
        return;
    for (size_t i = 0; i < ev->n_headers; i++)
        free(ev->headers[i].name); /* the value too */
    free(ev->headers);
    free(ev->topic);
    free(ev); /* the key and payload too */
}

int of_event_set_topic(of_event *ev, const char *topic)
{
    char *t = strdup(topic);
    if (!t)
        return -1;
    free(ev->topic);
    ev->topic = t;
    return 0;
}

/* A header's name and value in one allocation: "name\0value\0". */
static int header_fill(of_event_header *h, const char *name, const void *value, size_t len)
{
    if (!value)
        len = 0;
    size_t nl = strlen(name);
    if (nl > SIZE_MAX - 2 || len > SIZE_MAX - 2 - nl)
        return -1;
    char *block = malloc(nl + 1 + len + 1);
    if (!block)
        return -1;
    h->name = put_bytes(block, name, nl);
    h->value = put_bytes(block + nl + 1, value ? value : "", len);
    h->value_len = len;
    return 0;
}

int of_event_add_header(of_event *ev, const char *name, const void *value, size_t len)
{
    if (ev->n_headers == ev->cap_headers) {
        /* CloudEvents headers and a traceparent: 8 fit most events without growing. */
        size_t cap = ev->cap_headers ? ev->cap_headers * 2 : 8;
        of_event_header *h = realloc(ev->headers, cap * sizeof(*h));
        if (!h)
            return -1;
        ev->headers = h;
        ev->cap_headers = cap;
    }
    if (header_fill(&ev->headers[ev->n_headers], name, value, len) != 0)
        return -1;
    ev->n_headers++;
    return 0;
}

int of_event_set_header(of_event *ev, const char *name, const void *value, size_t len)
{
    for (size_t i = 0; i < ev->n_headers; i++) {
        if (strcmp(ev->headers[i].name, name) == 0) {
            of_event_header h;
            if (header_fill(&h, name, value, len) != 0)
                return -1;
            free(ev->headers[i].name);
            ev->headers[i] = h;
            return 0;
        }
    }
    return of_event_add_header(ev, name, value, len);
}

const of_event_header *of_event_header_get(const of_event *ev, const char *name)
{
    for (size_t i = 0; i < ev->n_headers; i++)
        if (strcmp(ev->headers[i].name, name) == 0)
            return &ev->headers[i];
    return NULL;
}
