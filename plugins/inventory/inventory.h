/*
 * inventory: shared declarations of the stage (inventory.c), its admin routes
 * (inventory_http.c) and its JSON helpers (inventory_json.c).
 */
#ifndef ORDERFLOW_INVENTORY_H
#define ORDERFLOW_INVENTORY_H

#include <orderflow/stage.h>

#include "ofp_http.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define INV_SKU_MAX      64              /* products.sku VARCHAR(64) */
#define INV_ORDER_ID_MAX 64              /* reservations.order_id VARCHAR(64) */
#define INV_NAME_MAX     200             /* products.name VARCHAR(200), in characters */
#define INV_QTY_MAX      1000000         /* largest quantity of one order line */
#define INV_LINES_LIMIT  1000            /* the largest max_lines an operator may set */
#define INV_STOCK_MAX    1000000000000LL /* largest on_hand an admin may set */

typedef struct inventory {
    const of_host_api *api;
    of_stage *stage;
    int64_t max_lines;
    of_counter *reserved, *rejected, *released, *committed, *invalid;
} inventory;

/* ---- inventory_json.c ---- */

/* 1 when s (len bytes) is a valid SKU: 1..64 of [A-Za-z0-9._-]. */
int inv_valid_sku(const char *s, size_t len);
/* 1 when s is three upper-case ASCII letters. */
int inv_valid_currency(const char *s, size_t len);
/* Number of UTF-8 code points of a string jansson already validated. */
size_t inv_utf8_chars(const char *s, size_t len);

/* ---- inventory_http.c ---- */

/* Registers the admin handlers; 0, or -1 with errstr. */
int inv_http_register(inventory *inv, char *errstr, size_t errstr_size);

#endif /* ORDERFLOW_INVENTORY_H */
