#include "offset_tracker.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    int64_t offset;
    int done;
} slot;

/* A ring of dispatched offsets in increasing order; done ones are popped from the front. */
struct of_offset_tracker {
    slot *ring;
    size_t cap, head, len; /* live slots ring[(head + i) % cap], i < len */
    size_t pending;        /* slots not done */
    int64_t last;          /* last dispatched offset, -1 before any */
};

of_offset_tracker *of_offtrack_new(void)
{
    of_offset_tracker *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->last = -1;
    return t;
}

void of_offtrack_free(of_offset_tracker *t)
{
    if (!t)
        return;
    free(t->ring);
    free(t);
}

static slot *at(const of_offset_tracker *t, size_t i)
{
    return &t->ring[(t->head + i) % t->cap];
}

int of_offtrack_dispatch(of_offset_tracker *t, int64_t offset)
{
    if (offset < 0 || offset <= t->last)
        return -1;
    if (t->len == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 64;
        slot *n = malloc(ncap * sizeof(*n));
        if (!n)
            return -1;
        for (size_t i = 0; i < t->len; i++)
            n[i] = *at(t, i);
        free(t->ring);
        t->ring = n;
        t->cap = ncap;
        t->head = 0;
    }
    slot *s = &t->ring[(t->head + t->len) % t->cap];
    s->offset = offset;
    s->done = 0;
    t->len++;
    t->pending++;
    t->last = offset;
    return 0;
}

int of_offtrack_done(of_offset_tracker *t, int64_t offset)
{
    /* Binary search: the live slots are sorted by offset. */
    size_t lo = 0, hi = t->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at(t, mid)->offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->len || at(t, lo)->offset != offset || at(t, lo)->done)
        return -1;
    at(t, lo)->done = 1;
    t->pending--;
    while (t->len > 0 && at(t, 0)->done) {
        t->head = (t->head + 1) % t->cap;
        t->len--;
    }
    return 0;
}

int64_t of_offtrack_committable(const of_offset_tracker *t)
{
    if (t->len > 0)
        return at(t, 0)->offset;
    return t->last < 0 ? -1 : t->last + 1;
}

size_t of_offtrack_pending(const of_offset_tracker *t)
{
    return t->pending;
}

int64_t of_offtrack_last(const of_offset_tracker *t)
{
    return t->last;
}
