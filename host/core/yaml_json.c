#include "yaml_json.h"

#include "options.h"

#include <string.h>

static json_t *scalar_json(const of_ynode *n)
{
    if (n->quoted)
        return json_stringn(n->str, n->len);
    if (n->is_null)
        return json_null();
    if (!strcmp(n->str, "true") || !strcmp(n->str, "True") || !strcmp(n->str, "TRUE"))
        return json_true();
    if (!strcmp(n->str, "false") || !strcmp(n->str, "False") || !strcmp(n->str, "FALSE"))
        return json_false();
    int64_t i;
    double d;
    char why[8];
    if (of_parse_int(n->str, &i, why, sizeof(why)) == 0)
        return json_integer((json_int_t)i);
    if (of_parse_double(n->str, &d, why, sizeof(why)) == 0)
        return json_real(d);
    return json_stringn(n->str, n->len);
}

json_t *of_ynode_to_json(const of_ynode *n)
{
    if (n->kind == OF_Y_SCALAR)
        return scalar_json(n);
    if (n->kind == OF_Y_SEQ) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n->n_items; i++) {
            json_t *v = of_ynode_to_json(n->items[i]);
            if (!v || json_array_append_new(a, v) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    json_t *o = json_object();
    for (size_t i = 0; o && i < n->n_pairs; i++) {
        json_t *v = of_ynode_to_json(n->pairs[i].value);
        if (!v || json_object_set_new(o, n->pairs[i].key->str, v) < 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}
