#include "event.h"
#include "timeutil.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every event of every stage is built, copied and freed at least once per hop, with a handful
 * of headers each: the event, its key and payload are one allocation, and its headers (their
 * array and their names and values) another, so a hop costs a few calls of malloc instead of a
 * few dozen. */

/* Bytes for headers' names and values; never moved (headers point into them) nor freed before
 * the event. */
struct of_event_hblock {
    struct of_event_hblock *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes; the first block begins with the headers' array */
};

/* The CloudEvents headers, a traceparent and a tracestate or two fit without growing. */
#define FIRST_HEADERS 12
/* Room for names and values in a new block: the CloudEvents set and a trace take ~400 bytes. */
#define BLOCK_BYTES 512

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
    size_t bytes = 0;
    for (size_t i = 0; i < src->n_headers; i++)
        bytes += strlen(src->headers[i].name) + 1 + src->headers[i].value_len + 1;
    if (src->n_headers && of_event_reserve_headers(ev, src->n_headers, bytes) != 0)
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
    if (ev->headers_own)
        free(ev->headers);
    for (struct of_event_hblock *b = ev->hblocks, *next; b; b = next) {
        next = b->next;
        free(b); /* names and values, and the first headers' array */
    }
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

/* A new block with room for head bytes first (the headers' array) and then bytes; NULL when
 * the sizes overflow or out of memory. */
static struct of_event_hblock *block_new(of_event *ev, size_t head, size_t bytes)
{
    const size_t most = SIZE_MAX - sizeof(struct of_event_hblock) - sizeof(max_align_t);
    if (head > most || bytes > most - head)
        return NULL;
    size_t cap = head + (bytes > BLOCK_BYTES ? bytes : BLOCK_BYTES);
    if (cap > most)
        return NULL;
    struct of_event_hblock *b = malloc(sizeof(*b) + cap);
    if (!b)
        return NULL;
    b->cap = cap;
    b->used = head;
    b->next = ev->hblocks;
    ev->hblocks = b;
    return b;
}

/* Room for n more headers in the array; 0 or -1. The first array is made in a block of its own
 * with room for names and values after it. */
static int array_room(of_event *ev, size_t n, size_t bytes)
{
    if (ev->cap_headers - ev->n_headers >= n)
        return 0;
    if (n > SIZE_MAX / sizeof(of_event_header) - ev->n_headers)
        return -1;
    size_t want = ev->n_headers + n;
    if (ev->cap_headers == 0) {
        size_t cap = want > FIRST_HEADERS ? want : FIRST_HEADERS;
        /* the array's size, rounded up so that what follows stays aligned */
        size_t head = (cap * sizeof(of_event_header) + sizeof(max_align_t) - 1) /
                      sizeof(max_align_t) * sizeof(max_align_t);
        struct of_event_hblock *b = block_new(ev, head, bytes);
        if (!b)
            return -1;
        ev->headers = (of_event_header *)(void *)b->data;
        ev->cap_headers = cap;
        return 0;
    }
    size_t cap = ev->cap_headers * 2 > want ? ev->cap_headers * 2 : want;
    if (cap > SIZE_MAX / sizeof(of_event_header))
        return -1;
    of_event_header *h =
        ev->headers_own ? realloc(ev->headers, cap * sizeof(*h)) : malloc(cap * sizeof(*h));
    if (!h)
        return -1;
    if (!ev->headers_own && ev->n_headers)
        memcpy(h, ev->headers, ev->n_headers * sizeof(*h));
    ev->headers = h;
    ev->headers_own = 1;
    ev->cap_headers = cap;
    return 0;
}

/* n bytes for names and values, from the newest block when it has room; NULL when out of
 * memory. */
static char *header_bytes(of_event *ev, size_t n)
{
    struct of_event_hblock *b = ev->hblocks;
    if (!b || b->cap - b->used < n) {
        if (!(b = block_new(ev, 0, n)))
            return NULL;
    }
    char *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

int of_event_reserve_headers(of_event *ev, size_t n, size_t bytes)
{
    if (array_room(ev, n, bytes) != 0)
        return -1;
    struct of_event_hblock *b = ev->hblocks;
    if (!b || b->cap - b->used < bytes)
        return block_new(ev, 0, bytes) ? 0 : -1;
    return 0;
}

/* A header's name and value, "name\0value\0", in the event's blocks. */
static int header_fill(of_event *ev, of_event_header *h, const char *name, const void *value,
                       size_t len)
{
    if (!value)
        len = 0;
    size_t nl = strlen(name);
    if (nl > SIZE_MAX - 2 || len > SIZE_MAX - 2 - nl)
        return -1;
    char *at = header_bytes(ev, nl + 1 + len + 1);
    if (!at)
        return -1;
    h->name = put_bytes(at, name, nl);
    h->value = put_bytes(at + nl + 1, value ? value : "", len);
    h->value_len = len;
    return 0;
}

int of_event_add_header(of_event *ev, const char *name, const void *value, size_t len)
{
    if (array_room(ev, 1, 0) != 0)
        return -1;
    if (header_fill(ev, &ev->headers[ev->n_headers], name, value, len) != 0)
        return -1;
    ev->n_headers++;
    return 0;
}

int of_event_set_header(of_event *ev, const char *name, const void *value, size_t len)
{
    for (size_t i = 0; i < ev->n_headers; i++)
        if (strcmp(ev->headers[i].name, name) == 0)
            return header_fill(ev, &ev->headers[i], name, value, len);
    return of_event_add_header(ev, name, value, len);
}

const of_event_header *of_event_header_get(const of_event *ev, const char *name)
{
    for (size_t i = 0; i < ev->n_headers; i++)
        if (strcmp(ev->headers[i].name, name) == 0)
            return &ev->headers[i];
    return NULL;
}
