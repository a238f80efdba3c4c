/*
 * inventory: shared declarations of the stage (inventory.c), its admin routes
 * (inventory_http.c) and its JSON helpers (inventory_json.c).
 */
#ifndef ORDERFLOW_INVENTORY_H
#define ORDERFLOW_INVENTORY_H

#include <orderflow/stage.h>

#include "ofp_http.h"
#include "ofp_json.h"

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

/* ---- inventory.c: one event at a time, and what the sets share with it ---- */

typedef struct order_line {
    const char *sku; /* in the parsed document */
    int64_t quantity;
} order_line;

typedef struct order {
    char id[INV_ORDER_ID_MAX + 1];
    json_t *customer_id; /* borrowed from the document */
    int64_t total_cents;
    const char *currency;
    order_line *lines; /* sorted by sku */
    size_t n_lines;
} order;

/* Validates an order.placed document into o (o->lines allocated: free them); 0, -1 with the
 * reason in why (the order id is filled whenever the document has a usable one) or -2 (out of
 * memory). */
int inv_parse_order(inventory *inv, json_t *doc, order *o, char *why, size_t why_size);
/* inventory.reserved for o, whose lines are reserved and recorded. */
of_status inv_emit_reserved(inventory *inv, of_call *call, const order *o);
/* inventory.rejected for order_id; sku may be NULL. */
of_status inv_emit_rejected(inventory *inv, of_call *call, const char *order_id, const char *reason,
                            const char *sku);
/* 1 (answered in *st: the order.placed is ignored) when the order already has reservation rows,
 * 0 when not, -1 on a database error (answered too). */
int inv_ignore_known(inventory *inv, of_call *call, const order *o, of_status *st);
/* Why line l could not be reserved: an unknown SKU or not enough stock. */
of_status inv_unreservable_reason(inventory *inv, of_call *call, const order_line *l,
                                  const char **reason);
/* The reservation rows of the orders os[0..n); 0, -1 (db_last_error says why) or -2 (out of
 * memory, the reason set). */
int inv_record_reservations(inventory *inv, of_call *call, const order *const *os, size_t n);
/* The order id of an inventory.commit (commit 1) or inventory.release document; NULL, with the
 * call's reason set, when the command is malformed. Borrowed from doc. */
const char *inv_command_order_id(inventory *inv, of_call *call, json_t *doc, int commit);
/* What a command that settled the order's reservations (any: it had RESERVED rows) answers:
 * inventory.committed or inventory.released, or nothing (logged) when there were none. */
of_status inv_settled(inventory *inv, of_call *call, const char *order_id, int commit, int any);
/* The stage's process(): any event, alone. */
of_status inv_process(void *instance, of_call *call);

/* ---- inventory_batch.c ---- */

/* The stage's process_batch (ABI 1.5): runs of order.placed and runs of commands in sets. */
void inv_process_batch(void *instance, of_call *const *calls, size_t n, of_status *status);

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
