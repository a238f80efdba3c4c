/* A YAML node as JSON (jansson): mappings and sequences as objects and arrays in document order,
 * plain scalars typed (null, true/false, integers, numbers), quoted and block scalars as
 * strings. Used where YAML stands for JSON: test events and request schemas in pipelines. */
#ifndef OF_YAML_JSON_H
#define OF_YAML_JSON_H

#include "yamltree.h"

#include <jansson.h>

/* A new reference, or NULL on no memory. */
json_t *of_ynode_to_json(const of_ynode *n);

#endif
