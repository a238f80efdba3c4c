/* Diagnostics: every problem found in a file, each with file:line:column, so that lint reports
 * all of them at once instead of stopping at the first. */
#ifndef OF_DIAG_H
#define OF_DIAG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

typedef enum of_severity { OF_SEV_ERROR = 0, OF_SEV_WARNING = 1 } of_severity;

typedef struct of_diag_entry {
    of_severity severity;
    char *file;    /* owned */
    int line;      /* 1-based; 0 when the problem has no position (the file as a whole) */
    int column;    /* 1-based; 0 likewise */
    char *message; /* owned */
} of_diag_entry;

typedef struct of_diag {
    of_diag_entry *entries;
    size_t count, cap;
    size_t errors, warnings;
} of_diag;

void of_diag_init(of_diag *d);
void of_diag_free(of_diag *d);
/* Adds an entry; file may be NULL. Never fails (on no memory the message is dropped and the
 * error count still grows, so the caller still refuses the input). */
void of_diag_add(of_diag *d, of_severity sev, const char *file, int line, int column,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The same with a va_list, for wrappers that take a node's position. */
void of_diag_addv(of_diag *d, of_severity sev, const char *file, int line, int column,
                  const char *fmt, va_list ap);
/* Sorts by file, line, column (stable), then prints "file:line:column: error: message". */
void of_diag_print(of_diag *d, FILE *out);

#endif
