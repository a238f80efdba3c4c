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

/* How many places a list of n values (an IN list, the branches of a CASE) is given: the next
 * power of two (0 for 0). A set's statements then take a handful of shapes (1, 2, 4, 8, ...
 * values) instead of one per set size, so that the statements the host keeps prepared on each
 * database connection stay few and keep being reused: each shape costs a prepare round trip when
 * it is missing and ~10 KB of the daemon's memory while it is kept. The caller repeats a value of
 * the list in the extra places, which an IN list or a CASE ignores; never for the rows of an
 * INSERT. */
size_t ofp_sql_list_len(size_t n);

#endif
