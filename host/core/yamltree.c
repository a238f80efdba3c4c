/* YAML documents as position-carrying trees, built from libyaml's event stream. Aliases are
 * expanded by copying the anchored subtree, after checking that the copy stays within the node,
 * byte and depth limits, so that hostile input fails before it allocates. */
#include "yamltree.h"
#include "interp.h"
#include "options.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

const char *of_ykind_name(of_ynode_kind kind)
{
    switch (kind) {
    case OF_Y_SCALAR:
        return "scalar";
    case OF_Y_SEQ:
        return "sequence";
    case OF_Y_MAP:
        return "mapping";
    }
    return "node";
}

of_ynode *of_ymap_get(const of_ynode *map, const char *key)
{
    if (!map || map->kind != OF_Y_MAP || !key)
        return NULL;
    for (size_t i = 0; i < map->n_pairs; i++) {
        const of_ynode *k = map->pairs[i].key;
        if (k && k->kind == OF_Y_SCALAR && k->str && strcmp(k->str, key) == 0)
            return map->pairs[i].value;
    }
    return NULL;
}

static void node_free(of_ynode *n)
{
    if (!n)
        return;
    free(n->str);
    for (size_t i = 0; i < n->n_items; i++)
        node_free(n->items[i]);
    free(n->items);
    for (size_t i = 0; i < n->n_pairs; i++) {
        node_free(n->pairs[i].key);
        node_free(n->pairs[i].value);
    }
    free(n->pairs);
    free(n);
}

void of_ydoc_free(of_ydoc *doc)
{
    if (!doc)
        return;
    node_free(doc->root);
    free(doc->file);
    free(doc);
}

/* ---------------------------------------------------------------------------------------------
 * Builder state
 * ------------------------------------------------------------------------------------------- */

typedef struct anchor {
    char *name;
    of_ynode *node; /* in the tree or in the graveyard; not owned here */
    size_t nodes;   /* node count of the subtree */
    size_t bytes;   /* scalar bytes of the subtree */
    int height;     /* nesting levels; 0 for a scalar */
    struct anchor *next;
} anchor;

#define ANCHOR_BUCKETS 256

typedef struct frame {
    of_ynode *node;
    char *anchor;   /* owned */
    of_ynode *key;  /* map: key waiting for its value */
    int have_key;   /* map: a key (maybe dropped) was read, the value comes next */
    int drop_value; /* map: the key was bad, drop the value */
    size_t cap;     /* capacity of items/pairs */
} frame;

typedef struct builder {
    const char *file;
    of_diag *diag;
    frame stack[OF_YAML_MAX_DEPTH + 1];
    int depth;
    of_ynode *root;
    int have_root;
    size_t nodes, bytes;
    anchor *anchors[ANCHOR_BUCKETS];
    of_ynode **graveyard; /* nodes dropped from the tree, freed at the end */
    size_t n_grave, cap_grave;
    int fatal;
} builder;

static void err(builder *b, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void err(builder *b, int line, int column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    of_diag_addv(b->diag, OF_SEV_ERROR, b->file, line, column, fmt, ap);
    va_end(ap);
}

static void oom(builder *b, int line, int column)
{
    err(b, line, column, "out of memory while reading the YAML document");
    b->fatal = 1;
}

static void bury(builder *b, of_ynode *n)
{
    if (!n)
        return;
    if (b->n_grave == b->cap_grave) {
        size_t cap = b->cap_grave ? b->cap_grave * 2 : 16;
        of_ynode **g = realloc(b->graveyard, cap * sizeof(*g));
        if (!g) {
            /* Cannot keep it: an anchor may still point at it, so leak rather than risk a
             * use-after-free; the builder is failing anyway. */
            oom(b, n->line, n->column);
            return;
        }
        b->graveyard = g;
        b->cap_grave = cap;
    }
    b->graveyard[b->n_grave++] = n;
}

static unsigned hash_name(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % ANCHOR_BUCKETS;
}

static anchor *anchor_find(builder *b, const char *name)
{
    for (anchor *a = b->anchors[hash_name(name)]; a; a = a->next)
        if (strcmp(a->name, name) == 0)
            return a; /* newest first: a redefined anchor wins */
    return NULL;
}

static void measure(const of_ynode *n, size_t *nodes, size_t *bytes, int *height)
{
    size_t cn = 1, cb = n->str ? n->len : 0;
    int h = 0;
    for (size_t i = 0; i < n->n_items; i++) {
        size_t a = 0, c = 0;
        int d = 0;
        measure(n->items[i], &a, &c, &d);
        cn += a;
        cb += c;
        if (d > h)
            h = d;
    }
    for (size_t i = 0; i < n->n_pairs; i++) {
        size_t a = 0, c = 0;
        int d = 0;
        measure(n->pairs[i].key, &a, &c, &d);
        cn += a;
        cb += c;
        if (d > h)
            h = d;
        measure(n->pairs[i].value, &a, &c, &d);
        cn += a;
        cb += c;
        if (d > h)
            h = d;
    }
    *nodes = cn;
    *bytes = cb;
    *height = n->kind == OF_Y_SCALAR ? 0 : h + 1;
}

static void anchor_add(builder *b, const char *name, of_ynode *node)
{
    anchor *a = calloc(1, sizeof(*a));
    if (!a || !(a->name = strdup(name))) {
        free(a);
        oom(b, node->line, node->column);
        return;
    }
    a->node = node;
    measure(node, &a->nodes, &a->bytes, &a->height);
    unsigned h = hash_name(name);
    a->next = b->anchors[h];
    b->anchors[h] = a;
}

static of_ynode *node_new(builder *b, of_ynode_kind kind, const yaml_mark_t *mark)
{
    of_ynode *n = calloc(1, sizeof(*n));
    if (!n) {
        oom(b, (int)mark->line + 1, (int)mark->column + 1);
        return NULL;
    }
    n->kind = kind;
    n->line = (int)mark->line + 1;
    n->column = (int)mark->column + 1;
    return n;
}

static of_ynode *node_copy(const of_ynode *src)
{
    of_ynode *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->kind = src->kind;
    n->line = src->line;
    n->column = src->column;
    n->len = src->len;
    n->quoted = src->quoted;
    n->is_null = src->is_null;
    if (src->str && !(n->str = malloc(src->len + 1)))
        goto fail;
    if (src->str)
        memcpy(n->str, src->str, src->len + 1);
    if (src->n_items) {
        n->items = calloc(src->n_items, sizeof(*n->items));
        if (!n->items)
            goto fail;
        for (size_t i = 0; i < src->n_items; i++) {
            if (!(n->items[i] = node_copy(src->items[i])))
                goto fail;
            n->n_items = i + 1;
        }
    }
    if (src->n_pairs) {
        n->pairs = calloc(src->n_pairs, sizeof(*n->pairs));
        if (!n->pairs)
            goto fail;
        for (size_t i = 0; i < src->n_pairs; i++) {
            n->pairs[i].key = node_copy(src->pairs[i].key);
            n->pairs[i].value = node_copy(src->pairs[i].value);
            n->n_pairs = i + 1;
            if (!n->pairs[i].key || !n->pairs[i].value)
                goto fail;
        }
    }
    return n;
fail:
    node_free(n);
    return NULL;
}

static int push_item(of_ynode *seq, size_t *cap, of_ynode *item)
{
    if (seq->n_items == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        of_ynode **items = realloc(seq->items, c * sizeof(*items));
        if (!items)
            return -1;
        seq->items = items;
        *cap = c;
    }
    seq->items[seq->n_items++] = item;
    return 0;
}

static int push_pair(of_ynode *map, size_t *cap, of_ynode *key, of_ynode *value)
{
    if (map->n_pairs == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        of_ypair *pairs = realloc(map->pairs, c * sizeof(*pairs));
        if (!pairs)
            return -1;
        map->pairs = pairs;
        *cap = c;
    }
    map->pairs[map->n_pairs].key = key;
    map->pairs[map->n_pairs].value = value;
    map->n_pairs++;
    return 0;
}

/* 1 when the next completed node is a mapping key. */
static int expecting_key(const builder *b)
{
    if (b->depth == 0)
        return 0;
    const frame *f = &b->stack[b->depth - 1];
    return f->node->kind == OF_Y_MAP && !f->have_key;
}

/* Hands a completed node to its parent (or makes it the root). */
static void attach(builder *b, of_ynode *n)
{
    if (b->depth == 0) {
        b->root = n;
        b->have_root = 1;
        return;
    }
    frame *f = &b->stack[b->depth - 1];
    if (f->node->kind == OF_Y_SEQ) {
        if (push_item(f->node, &f->cap, n) < 0) {
            bury(b, n);
            oom(b, n->line, n->column);
        }
        return;
    }
    if (!f->have_key) {
        f->have_key = 1;
        if (n->kind != OF_Y_SCALAR) {
            err(b, n->line, n->column, "a mapping key must be a scalar; got a %s",
                of_ykind_name(n->kind));
            f->drop_value = 1;
            bury(b, n);
            return;
        }
        f->key = n;
        return;
    }
    f->have_key = 0;
    if (f->drop_value) {
        f->drop_value = 0;
        bury(b, n);
        return;
    }
    if (push_pair(f->node, &f->cap, f->key, n) < 0) {
        bury(b, f->key);
        bury(b, n);
        oom(b, n->line, n->column);
    }
    f->key = NULL;
}

/* Counts a new subtree against the document limits. Returns 0, or -1 (fatal, reported). */
static int budget(builder *b, size_t nodes, size_t bytes, int line, int column, const char *alias)
{
    if (nodes > OF_YAML_MAX_NODES || b->nodes + nodes > OF_YAML_MAX_NODES) {
        if (alias)
            err(b, line, column,
                "alias '*%s' expands to %zu nodes: the document would have more than %u nodes "
                "(too many aliases of aliases?)",
                alias, nodes, (unsigned)OF_YAML_MAX_NODES);
        else
            err(b, line, column, "document has more than %u nodes", (unsigned)OF_YAML_MAX_NODES);
        b->fatal = 1;
        return -1;
    }
    if (bytes > OF_YAML_MAX_TOTAL_BYTES || b->bytes + bytes > OF_YAML_MAX_TOTAL_BYTES) {
        if (alias)
            err(b, line, column,
                "alias '*%s' expands to %zu bytes: the document would hold more than %u bytes of "
                "text",
                alias, bytes, (unsigned)OF_YAML_MAX_TOTAL_BYTES);
        else
            err(b, line, column, "document holds more than %u bytes of text",
                (unsigned)OF_YAML_MAX_TOTAL_BYTES);
        b->fatal = 1;
        return -1;
    }
    b->nodes += nodes;
    b->bytes += bytes;
    return 0;
}

static int by_key(const void *x, const void *y)
{
    const of_ypair *const *a = x, *const *c = y;
    const of_ynode *ka = (*a)->key, *kc = (*c)->key;
    size_t n = ka->len < kc->len ? ka->len : kc->len;
    int r = memcmp(ka->str, kc->str, n);
    if (r)
        return r;
    if (ka->len != kc->len)
        return ka->len < kc->len ? -1 : 1;
    return *a < *c ? -1 : (*a > *c); /* document order among equal keys */
}

/* Reports duplicate keys (at the later one, naming the first) and keeps only the first. */
static void check_duplicates(builder *b, of_ynode *map)
{
    if (map->n_pairs < 2)
        return;
    of_ypair **idx = malloc(map->n_pairs * sizeof(*idx));
    if (!idx) {
        oom(b, map->line, map->column);
        return;
    }
    for (size_t i = 0; i < map->n_pairs; i++)
        idx[i] = &map->pairs[i];
    qsort(idx, map->n_pairs, sizeof(*idx), by_key);
    int any = 0;
    for (size_t i = 0; i < map->n_pairs;) {
        size_t j = i + 1;
        while (j < map->n_pairs && idx[i]->key->len == idx[j]->key->len &&
               memcmp(idx[i]->key->str, idx[j]->key->str, idx[i]->key->len) == 0) {
            const of_ynode *first = idx[i]->key, *dup = idx[j]->key;
            err(b, dup->line, dup->column, "duplicate key '%.*s' (first defined at line %d)",
                (int)(dup->len > 80 ? 80 : dup->len), dup->str, first->line);
            bury(b, idx[j]->key);
            bury(b, idx[j]->value);
            idx[j]->key = NULL;
            idx[j]->value = NULL;
            any = 1;
            j++;
        }
        i = j;
    }
    free(idx);
    if (!any)
        return;
    size_t w = 0;
    for (size_t i = 0; i < map->n_pairs; i++)
        if (map->pairs[i].key)
            map->pairs[w++] = map->pairs[i];
    map->n_pairs = w;
}

/* Interpolates a value scalar in place; reports problems at the scalar (plus the offset when
 * it is on the same line). */
static void interpolate(builder *b, of_ynode *n, yaml_scalar_style_t style)
{
    if (!memchr(n->str, '$', n->len))
        return;
    char why[512];
    size_t off = 0, out_len = 0;
    char *s = of_interp(n->str, n->len, NULL, NULL, &out_len, &off, why, sizeof(why));
    if (!s) {
        int column = n->column;
        int block = style == YAML_LITERAL_SCALAR_STYLE || style == YAML_FOLDED_SCALAR_STYLE;
        if (!block && off <= n->len && !memchr(n->str, '\n', off))
            column += (int)off + (style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                                          style == YAML_DOUBLE_QUOTED_SCALAR_STYLE
                                      ? 1
                                      : 0);
        err(b, n->line, column, "%s", why);
        return;
    }
    if (out_len > n->len && budget(b, 0, out_len - n->len, n->line, n->column, NULL) < 0) {
        free(s);
        return;
    }
    free(n->str);
    n->str = s;
    n->len = out_len;
    if (memchr(n->str, '\0', n->len))
        err(b, n->line, n->column, "value contains a NUL character after interpolation");
}

static void on_scalar(builder *b, yaml_event_t *ev)
{
    const yaml_mark_t *m = &ev->start_mark;
    int line = (int)m->line + 1, column = (int)m->column + 1;
    size_t len = ev->data.scalar.length;
    if (budget(b, 1, len, line, column, NULL) < 0)
        return;
    of_ynode *n = node_new(b, OF_Y_SCALAR, m);
    if (!n)
        return;
    n->str = malloc(len + 1);
    if (!n->str) {
        free(n);
        oom(b, line, column);
        return;
    }
    memcpy(n->str, ev->data.scalar.value, len);
    n->str[len] = '\0';
    n->len = len;
    yaml_scalar_style_t style = ev->data.scalar.style;
    const char *tag = (const char *)ev->data.scalar.tag;
    int plain = style == YAML_PLAIN_SCALAR_STYLE || style == YAML_ANY_SCALAR_STYLE;
    if (!plain || (tag && strcmp(tag, YAML_STR_TAG) == 0)) {
        n->quoted = 1;
    } else if (len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
               strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0) {
        n->is_null = 1;
    }
    if (memchr(n->str, '\0', len))
        err(b, line, column, "scalar contains a NUL character (\\0)");
    else if (!expecting_key(b))
        interpolate(b, n, style);
    if (ev->data.scalar.anchor)
        anchor_add(b, (const char *)ev->data.scalar.anchor, n);
    attach(b, n);
}

static void on_alias(builder *b, yaml_event_t *ev)
{
    const yaml_mark_t *m = &ev->start_mark;
    int line = (int)m->line + 1, column = (int)m->column + 1;
    const char *name = (const char *)ev->data.alias.anchor;
    anchor *a = anchor_find(b, name);
    if (!a) {
        err(b, line, column, "unknown alias '*%s' (no anchor '&%s' before it)", name, name);
        of_ynode *n = node_new(b, OF_Y_SCALAR, m);
        if (!n)
            return;
        n->str = strdup("");
        n->is_null = 1;
        if (!n->str) {
            free(n);
            oom(b, line, column);
            return;
        }
        attach(b, n);
        return;
    }
    if (b->depth + a->height > OF_YAML_MAX_DEPTH) {
        err(b, line, column, "alias '*%s' nests deeper than %d levels", name, OF_YAML_MAX_DEPTH);
        b->fatal = 1;
        return;
    }
    if (budget(b, a->nodes, a->bytes, line, column, name) < 0)
        return;
    of_ynode *n = node_copy(a->node);
    if (!n) {
        oom(b, line, column);
        return;
    }
    n->line = line;
    n->column = column;
    attach(b, n);
}

static void on_start(builder *b, yaml_event_t *ev, of_ynode_kind kind)
{
    const yaml_mark_t *m = &ev->start_mark;
    int line = (int)m->line + 1, column = (int)m->column + 1;
    if (b->depth >= OF_YAML_MAX_DEPTH) {
        err(b, line, column, "nesting deeper than %d levels", OF_YAML_MAX_DEPTH);
        b->fatal = 1;
        return;
    }
    if (budget(b, 1, 0, line, column, NULL) < 0)
        return;
    of_ynode *n = node_new(b, kind, m);
    if (!n)
        return;
    const yaml_char_t *anc =
        kind == OF_Y_SEQ ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
    frame *f = &b->stack[b->depth++];
    memset(f, 0, sizeof(*f));
    f->node = n;
    if (anc && !(f->anchor = strdup((const char *)anc)))
        oom(b, line, column);
}

static void on_end(builder *b)
{
    if (b->depth == 0)
        return;
    frame *f = &b->stack[--b->depth];
    of_ynode *n = f->node;
    if (f->key) /* a key without value cannot come from libyaml, but stay safe */
        bury(b, f->key);
    if (n->kind == OF_Y_MAP)
        check_duplicates(b, n);
    if (f->anchor)
        anchor_add(b, f->anchor, n);
    free(f->anchor);
    memset(f, 0, sizeof(*f));
    attach(b, n);
}

static void builder_cleanup(builder *b, int keep_root)
{
    while (b->depth > 0) {
        frame *f = &b->stack[--b->depth];
        node_free(f->key);
        node_free(f->node);
        free(f->anchor);
    }
    for (size_t i = 0; i < b->n_grave; i++)
        node_free(b->graveyard[i]);
    free(b->graveyard);
    for (int i = 0; i < ANCHOR_BUCKETS; i++) {
        anchor *a = b->anchors[i];
        while (a) {
            anchor *next = a->next;
            free(a->name);
            free(a);
            a = next;
        }
    }
    if (!keep_root) {
        node_free(b->root);
        b->root = NULL;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Input checks: binary data and invalid UTF-8 get a clear message before libyaml sees them.
 * ------------------------------------------------------------------------------------------- */

static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int check_text(builder *b, const char *buf, size_t len)
{
    const unsigned char *s = (const unsigned char *)buf;
    int line = 1, column = 1;
    for (size_t i = 0; i < len;) {
        if (s[i] == 0) {
            err(b, line, column,
                "file contains a NUL byte (byte offset %zu): not a YAML text file (binary?)", i);
            return -1;
        }
        size_t n = utf8_seq(s + i, len - i);
        if (n == 0) {
            err(b, line, column,
                "file is not valid UTF-8 (byte 0x%02x at byte offset %zu); YAML files must be "
                "UTF-8 text",
                s[i], i);
            return -1;
        }
        if (s[i] == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
        i += n;
    }
    return 0;
}

of_ydoc *of_ydoc_load_buffer(const char *name, const char *buf, size_t len, of_diag *diag)
{
    builder b;
    memset(&b, 0, sizeof(b));
    b.file = name;
    b.diag = diag;
    if (len > OF_YAML_MAX_BYTES) {
        err(&b, 0, 0, "file is %zu bytes; the limit is %u bytes", len, (unsigned)OF_YAML_MAX_BYTES);
        return NULL;
    }
    if (!buf)
        len = 0;
    if (len && check_text(&b, buf, len) < 0)
        return NULL;

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        err(&b, 0, 0, "out of memory (YAML parser)");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)(buf ? buf : ""), len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    int docs = 0, done = 0;
    while (!done && !b.fatal) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            const char *problem = parser.problem ? parser.problem : "unknown problem";
            if (parser.error == YAML_MEMORY_ERROR) {
                err(&b, 0, 0, "out of memory while parsing YAML");
            } else if (parser.context) {
                err(&b, (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                    "YAML syntax error: %s %s (line %d, column %d)", problem, parser.context,
                    (int)parser.context_mark.line + 1, (int)parser.context_mark.column + 1);
            } else {
                err(&b, (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                    "YAML syntax error: %s", problem);
            }
            b.fatal = 1;
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (docs++ > 0) {
                err(&b, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                    "a second YAML document starts here; a file holds exactly one document");
                b.fatal = 1;
            }
            break;
        case YAML_SCALAR_EVENT:
            on_scalar(&b, &ev);
            break;
        case YAML_ALIAS_EVENT:
            on_alias(&b, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            on_start(&b, &ev, OF_Y_SEQ);
            break;
        case YAML_MAPPING_START_EVENT:
            on_start(&b, &ev, OF_Y_MAP);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            on_end(&b);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);

    if (b.fatal) {
        builder_cleanup(&b, 0);
        return NULL;
    }
    builder_cleanup(&b, 1);
    of_ydoc *doc = calloc(1, sizeof(*doc));
    if (!doc || !(doc->file = strdup(name ? name : "<input>"))) {
        free(doc);
        node_free(b.root);
        of_diag_add(diag, OF_SEV_ERROR, name, 0, 0, "out of memory");
        return NULL;
    }
    /* An empty document (no content, or only a plain empty scalar) has no root. */
    if (b.root && b.root->kind == OF_Y_SCALAR && b.root->is_null && b.root->len == 0) {
        node_free(b.root);
        b.root = NULL;
    }
    doc->root = b.root;
    return doc;
}

of_ydoc *of_ydoc_load_file(const char *path, of_diag *diag)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        of_diag_add(diag, OF_SEV_ERROR, path, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        of_diag_add(diag, OF_SEV_ERROR, path, 0, 0, "out of memory");
        return NULL;
    }
    for (;;) {
        if (len == cap) {
            if (cap > OF_YAML_MAX_BYTES)
                break;
            size_t ncap = cap * 2;
            char *n = realloc(buf, ncap);
            if (!n) {
                free(buf);
                fclose(f);
                of_diag_add(diag, OF_SEV_ERROR, path, 0, 0, "out of memory");
                return NULL;
            }
            buf = n;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int read_error = ferror(f);
    int saved = errno;
    fclose(f);
    if (read_error) {
        free(buf);
        of_diag_add(diag, OF_SEV_ERROR, path, 0, 0, "cannot read: %s", strerror(saved));
        return NULL;
    }
    if (len > OF_YAML_MAX_BYTES) {
        free(buf);
        of_diag_add(diag, OF_SEV_ERROR, path, 0, 0,
                    "file is larger than the limit of %u bytes for a YAML file",
                    (unsigned)OF_YAML_MAX_BYTES);
        return NULL;
    }
    of_ydoc *doc = of_ydoc_load_buffer(path, buf, len, diag);
    free(buf);
    return doc;
}

/* ---------------------------------------------------------------------------------------------
 * Schema helpers
 * ------------------------------------------------------------------------------------------- */

int of_yis_string(const of_ynode *n)
{
    return n && n->kind == OF_Y_SCALAR && !n->is_null && n->str;
}

void of_ynode_describe(const of_ynode *n, char *buf, size_t size)
{
    if (!n || (n->kind == OF_Y_SCALAR && n->is_null))
        snprintf(buf, size, "null");
    else if (n->kind == OF_Y_SEQ)
        snprintf(buf, size, "a sequence");
    else if (n->kind == OF_Y_MAP)
        snprintf(buf, size, "a mapping");
    else if (n->len > 60)
        snprintf(buf, size, "'%.57s...'", n->str);
    else
        snprintf(buf, size, "'%s'", n->str);
}

size_t of_ymap_check_keys(const of_ynode *map, const char *const *allowed, const char *where,
                          const char *file, of_diag *diag)
{
    if (!map || map->kind != OF_Y_MAP)
        return 0;
    size_t n_allowed = 0, cap = 1;
    for (; allowed && allowed[n_allowed]; n_allowed++)
        cap += strlen(allowed[n_allowed]) + 2;
    size_t bad = 0;
    char *list = NULL;
    for (size_t i = 0; i < map->n_pairs; i++) {
        const of_ynode *k = map->pairs[i].key;
        size_t j = 0;
        for (; j < n_allowed; j++)
            if (strcmp(k->str, allowed[j]) == 0)
                break;
        if (j < n_allowed)
            continue;
        bad++;
        if (!list && (list = malloc(cap)) != NULL) {
            size_t pos = 0;
            list[0] = '\0';
            for (size_t m = 0; m < n_allowed; m++)
                pos += (size_t)snprintf(list + pos, cap - pos, "%s%s", m ? ", " : "", allowed[m]);
        }
        const char *hint = of_did_you_mean(k->str, allowed, n_allowed);
        char hint_buf[160] = "";
        if (hint)
            snprintf(hint_buf, sizeof(hint_buf), " (did you mean '%s'?)", hint);
        of_diag_add(diag, OF_SEV_ERROR, file, k->line, k->column,
                    "unknown key '%.80s' in %s%s; allowed: %s", k->str, where, hint_buf,
                    list ? list : "?");
    }
    free(list);
    return bad;
}
