/* A YAML document as a tree whose every node knows its line and column, built with libyaml.
 * Hostile input is bounded: file size, nesting depth and node count (alias expansion included)
 * have limits, and duplicate mapping keys are errors. */
#ifndef OF_YAMLTREE_H
#define OF_YAMLTREE_H

#include "diag.h"
#include <stddef.h>

#define OF_YAML_MAX_BYTES (4u * 1024u * 1024u)
#define OF_YAML_MAX_DEPTH 64
#define OF_YAML_MAX_NODES 200000
/* Total bytes of all scalars after alias expansion and interpolation (a few large scalars
 * aliased many times must not explode memory either). */
#define OF_YAML_MAX_TOTAL_BYTES (64u * 1024u * 1024u)

typedef enum of_ynode_kind { OF_Y_SCALAR, OF_Y_SEQ, OF_Y_MAP } of_ynode_kind;

typedef struct of_ynode of_ynode;

typedef struct of_ypair {
    of_ynode *key; /* always a scalar */
    of_ynode *value;
} of_ypair;

struct of_ynode {
    of_ynode_kind kind;
    int line, column; /* 1-based start position */
    /* scalar */
    char *str; /* NUL-terminated value after interpolation; owned */
    size_t len;
    int quoted;  /* 1 when written quoted or as a block: never null/bool/number */
    int is_null; /* plain `~`, `null` or empty */
    /* seq: items; map: pairs in document order */
    of_ynode **items;
    size_t n_items;
    of_ypair *pairs;
    size_t n_pairs;
};

typedef struct of_ydoc {
    char *file;     /* owned copy of the path as given */
    of_ynode *root; /* NULL for an empty document */
} of_ydoc;

/* Parses one YAML document from a file or a buffer. Scalars get ${VAR} / ${VAR:-default}
 * interpolation (see interp.h) from the process environment. Problems go to diag with
 * positions; returns NULL when the document cannot be used (syntax error, limits), otherwise a
 * document even if some scalars failed interpolation (those are reported as errors). */
of_ydoc *of_ydoc_load_file(const char *path, of_diag *diag);
of_ydoc *of_ydoc_load_buffer(const char *name, const char *buf, size_t len, of_diag *diag);
void of_ydoc_free(of_ydoc *doc);

/* Lookup helpers: NULL when absent or not a map. */
of_ynode *of_ymap_get(const of_ynode *map, const char *key);
const char *of_ykind_name(of_ynode_kind kind); /* "scalar", "sequence", "mapping" */

/* Helpers for schema validators. */
/* Reports every key of `map` that is not in `allowed` (NULL-terminated) at the key's position:
 * "unknown key 'k' in WHERE (did you mean 'x'?); allowed: a, b, c". Returns the count. */
size_t of_ymap_check_keys(const of_ynode *map, const char *const *allowed, const char *where,
                          const char *file, of_diag *diag);
/* Describes a node for "got ..." in messages: "a sequence", "a mapping", "null" or the quoted
 * scalar (shortened). */
void of_ynode_describe(const of_ynode *n, char *buf, size_t size);
/* 1 when n is a scalar that is not null. */
int of_yis_string(const of_ynode *n);

#endif
