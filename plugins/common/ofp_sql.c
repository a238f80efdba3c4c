#include "ofp_sql.h"

#include <stdlib.h>
#include <string.h>

size_t ofp_sql_rows(char *out, size_t size, const char *head, const char *row, size_t n,
                    const char *tail)
{
    size_t hl = strlen(head), rl = strlen(row), tl = strlen(tail);
    if (hl + tl + 1 > size)
        return 0;
    /* n rows take n * (rl + 2) - 2 bytes: each with its separator but the first. */
    size_t room = size - hl - tl - 1;
    if (n > 0 && n > (room + 2) / (rl + 2))
        return 0;
    size_t pos = hl;
    memcpy(out, head, hl);
    for (size_t i = 0; i < n; i++) {
        if (i) {
            memcpy(out + pos, ", ", 2);
            pos += 2;
        }
        memcpy(out + pos, row, rl);
        pos += rl;
    }
    memcpy(out + pos, tail, tl + 1);
    return pos + tl;
}

char *ofp_sql_rows_new(const char *head, const char *row, size_t n, const char *tail)
{
    size_t size = strlen(head) + n * (strlen(row) + 2) + strlen(tail) + 1;
    char *sql = malloc(size);
    if (sql && ofp_sql_rows(sql, size, head, row, n, tail) == 0) {
        free(sql);
        sql = NULL;
    }
    return sql;
}

size_t ofp_sql_list_len(size_t n)
{
    size_t len = 1;
    while (len < n && len <= (size_t)-1 / 2)
        len *= 2;
    return n == 0 ? 0 : len < n ? n : len;
}
