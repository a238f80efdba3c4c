#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void of_diag_init(of_diag *d)
{
    memset(d, 0, sizeof(*d));
}

void of_diag_free(of_diag *d)
{
    for (size_t i = 0; i < d->count; i++) {
        free(d->entries[i].file);
        free(d->entries[i].message);
    }
    free(d->entries);
    memset(d, 0, sizeof(*d));
}

void of_diag_addv(of_diag *d, of_severity sev, const char *file, int line, int column,
                  const char *fmt, va_list ap)
{
    /* Count first: even if the entry cannot be stored, the caller must see that it failed. */
    if (sev == OF_SEV_ERROR)
        d->errors++;
    else
        d->warnings++;
    if (d->count == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        of_diag_entry *e = realloc(d->entries, cap * sizeof(*e));
        if (!e)
            return;
        d->entries = e;
        d->cap = cap;
    }
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        return;
    of_diag_entry *e = &d->entries[d->count++];
    e->severity = sev;
    e->file = file ? strdup(file) : NULL;
    e->line = line;
    e->column = column;
    e->message = msg;
}

void of_diag_add(of_diag *d, of_severity sev, const char *file, int line, int column,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    of_diag_addv(d, sev, file, line, column, fmt, ap);
    va_end(ap);
}

static int cmp_entry(const void *a, const void *b)
{
    const of_diag_entry *x = a, *y = b;
    int c = strcmp(x->file ? x->file : "", y->file ? y->file : "");
    if (c)
        return c;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return 0;
}

/* qsort is not stable; entries with equal positions keep insertion order through an index. */
typedef struct {
    of_diag_entry e;
    size_t idx;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    int c = cmp_entry(&x->e, &y->e);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

void of_diag_print(of_diag *d, FILE *out)
{
    if (d->count > 1) {
        ranked *r = malloc(d->count * sizeof(*r));
        if (r) {
            for (size_t i = 0; i < d->count; i++) {
                r[i].e = d->entries[i];
                r[i].idx = i;
            }
            qsort(r, d->count, sizeof(*r), cmp_ranked);
            for (size_t i = 0; i < d->count; i++)
                d->entries[i] = r[i].e;
            free(r);
        }
    }
    for (size_t i = 0; i < d->count; i++) {
        const of_diag_entry *e = &d->entries[i];
        const char *sev = e->severity == OF_SEV_ERROR ? "error" : "warning";
        if (e->line > 0)
            fprintf(out, "%s:%d:%d: %s: %s\n", e->file ? e->file : "<input>", e->line, e->column,
                    sev, e->message);
        else
            fprintf(out, "%s: %s: %s\n", e->file ? e->file : "<input>", sev, e->message);
    }
}
