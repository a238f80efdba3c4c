#include "event.h"
#include "timeutil.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Copies len bytes and adds a NUL, so text payloads and keys can be used as C strings. */
static void *dup_bytes(const void *src, size_t len)
{
    char *p = malloc(len + 1);
    if (!p)
        return NULL;
    if (len)
        memcpy(p, src, len);
    p[len] = '\0';
    return p;
}

of_event *of_event_new(const void *key, size_t key_len, const void *payload, size_t payload_len)
{
    of_event *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return NULL;
    ev->partition = -1;
    ev->offset = -1;
    ev->timestamp_ms = of_now_ms();
    if (key) {
        ev->key = dup_bytes(key, key_len);
        if (!ev->key)
            goto fail;
        ev->key_len = key_len;
    }
    ev->payload = dup_bytes(payload ? payload : "", payload ? payload_len : 0);
    if (!ev->payload)
        goto fail;
    ev->payload_len = payload ? payload_len : 0;
    return ev;
fail:
    of_event_free(ev);
    return NULL;
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
    for (size_t i = 0; i < ev->n_headers; i++) {
        free(ev->headers[i].name);
        free(ev->headers[i].value);
    }
    free(ev->headers);
    free(ev->topic);
    free(ev->key);
    free(ev->payload);
    free(ev);
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

int of_event_add_header(of_event *ev, const char *name, const void *value, size_t len)
{
    of_event_header *h = realloc(ev->headers, (ev->n_headers + 1) * sizeof(*h));
    if (!h)
        return -1;
    ev->headers = h;
    char *n = strdup(name);
    void *v = dup_bytes(value ? value : "", value ? len : 0);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    h[ev->n_headers].name = n;
    h[ev->n_headers].value = v;
    h[ev->n_headers].value_len = value ? len : 0;
    ev->n_headers++;
    return 0;
}

int of_event_set_header(of_event *ev, const char *name, const void *value, size_t len)
{
    for (size_t i = 0; i < ev->n_headers; i++) {
        if (strcmp(ev->headers[i].name, name) == 0) {
            void *v = dup_bytes(value ? value : "", value ? len : 0);
            if (!v)
                return -1;
            free(ev->headers[i].value);
            ev->headers[i].value = v;
            ev->headers[i].value_len = value ? len : 0;
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
