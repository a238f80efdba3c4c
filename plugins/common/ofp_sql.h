/* SQL text built from a count for the business plugins: a statement with one group of
 * placeholders per item (the lines of an order), never with input in it. Pure, compiled into each
 * plugin that uses it. */
#ifndef OFP_SQL_H
#define OFP_SQL_H

#include <stddef.h>

/* head, then n copies of row separated by ", ", then tail, NUL-terminated, into out (size
 * bytes). The fragments are the caller's constants. The length, or 0 when it does not fit. */
size_t ofp_sql_rows(char *out, size_t size, const char *head, const char *row, size_t n,
                    const char *tail);

/* The same in a buffer of its own (free it); NULL when out of memory. For statements whose
 * count of rows is not bounded by a constant (a batch's). */
char *ofp_sql_rows_new(const char *head, const char *row, size_t n, const char *tail);

#endif
