/*
 * inventory: the events of one transaction in sets (process_batch, ABI 1.5).
 *
 * A run of valid order.placed events of a set is reserved with a few statements however many
 * orders it has: one SELECT ... FOR UPDATE reads and locks the stock of every SKU the run names
 * (in SKU order, the order the lone path locks them in), each order is then reserved all or
 * nothing in memory, in the run's order (two orders of one run for a scarce SKU: the first gets
 * it, as one after the other), one UPDATE takes what the run reserved from every SKU, and one
 * INSERT records the reservation rows.
 *
 * A run of valid inventory.commit / inventory.release commands is settled the same way: one
 * SELECT ... FOR UPDATE reads and locks the RESERVED rows of the run's orders, one UPDATE moves
 * the stock of every SKU they name (in SKU order), one UPDATE per kind ends their rows. The lone
 * path spends a statement per command, and the commands of a busy pipeline come in runs as long
 * as its orders' (bench/RESULTS.md, step 28).
 *
 * Runs keep the set's order: an event never moves ahead of another, so a set gives what the same
 * events one at a time give. Any other event (an invalid one, a retry, a lone event between two
 * runs) goes through process() in its place.
 */
#include "ofp_id.h"
#include "ofp_sql.h"
#include "inventory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- stock -------------------------------------------------------------------------------- */

/* What a run adds to one SKU's stock columns. */
typedef struct stock_delta {
    const char *sku;
    int64_t on_hand, available, reserved;
} stock_delta;

/* Adds the deltas d[0..n) (SKUs sorted, distinct, n >= 1) to the stock rows in one UPDATE, which
 * locks them in SKU order. 0, -1 (db_last_error says why) or -2 (out of memory). */
static int stock_apply(inventory *inv, of_call *call, const stock_delta *d, size_t n)
{
    /* The SKUs, the last repeated up to the list's length (ofp_sql_list_len): a CASE takes its
     * first match and an IN list ignores a repeat. */
    size_t places = ofp_sql_list_len(n);
    of_db_value *p = calloc(7 * places, sizeof(*p));
    size_t size = 200 + 48 * places;
    char *sql = p ? malloc(size) : NULL;
    if (!sql) {
        free(p);
        return -2;
    }
    static const char *const head[3] = {"UPDATE stock SET on_hand = on_hand + CASE sku",
                                        " END, available = available + CASE sku",
                                        " END, reserved = reserved + CASE sku"};
    size_t len = 0, k = 0;
    for (int col = 0; col < 3; col++) {
        len += (size_t)snprintf(sql + len, size - len, "%s", head[col]);
        for (size_t t = 0; t < places; t++) {
            const stock_delta *e = &d[t < n ? t : n - 1];
            len += (size_t)snprintf(sql + len, size - len, " WHEN ? THEN ?");
            p[k++] = (of_db_value)OF_DB_S(e->sku);
            p[k++] = (of_db_value)OF_DB_I(col == 0   ? e->on_hand
                                          : col == 1 ? e->available
                                                     : e->reserved);
        }
    }
    len += (size_t)snprintf(sql + len, size - len, " END WHERE sku IN (");
    for (size_t t = 0; t < places; t++) {
        len += (size_t)snprintf(sql + len, size - len, t ? ", ?" : "?");
        p[k++] = (of_db_value)OF_DB_S(d[t < n ? t : n - 1].sku);
    }
    snprintf(sql + len, size - len, ")");
    int64_t changed = inv->api->db_exec(call, sql, p, k);
    free(sql);
    free(p);
    return changed < 0 ? -1 : 0;
}

/* ---- order.placed in runs ------------------------------------------------------------------ */

#define INV_RUN_LINES 2000 /* most order lines in one run (one order may have more) */

/* A valid order.placed of a set, parsed; doc owns the strings. */
typedef struct placed {
    json_t *doc;
    order o;
    int reserved; /* 1 reserved, 0 not (fail_line says which line) */
    size_t fail_line;
    int no_stock_row; /* the failed line's SKU has no stock row (unknown, most likely) */
} placed;

/* One SKU of a run: its stock as read (locked) and what the run takes from it. */
typedef struct run_sku {
    const char *sku;
    int found;
    int64_t available, taken;
} run_sku;

static int run_sku_cmp(const void *a, const void *b)
{
    return strcmp(((const run_sku *)a)->sku, ((const run_sku *)b)->sku);
}

static run_sku *run_sku_find(run_sku *skus, size_t n, const char *sku)
{
    run_sku key = {.sku = sku};
    return bsearch(&key, skus, n, sizeof(*skus), run_sku_cmp);
}

/* The call's event as a valid order.placed on its first try: 1 (filled, doc owned by pl), 0 (any
 * other event, which process() handles) or -1 (out of memory). */
static int placed_parse(inventory *inv, of_call *call, placed *pl)
{
    const of_host_api *api = inv->api;
    size_t tlen = 0, plen = 0;
    const char *type = api->event_header(call, "ce_type", &tlen);
    if (!type || tlen != strlen("order.placed") || memcmp(type, "order.placed", tlen) != 0 ||
        api->event_attempt(call) > 1)
        return 0;
    const char *payload = api->event_payload(call, &plen);
    json_t *doc = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, NULL);
    char why[256];
    memset(pl, 0, sizeof(*pl));
    int rc = doc ? inv_parse_order(inv, doc, &pl->o, why, sizeof(why)) : -1;
    if (rc != 0) {
        free(pl->o.lines);
        json_decref(doc);
        memset(pl, 0, sizeof(*pl));
        return rc == -2 ? -1 : 0;
    }
    pl->doc = doc;
    return 1;
}

/* Reads and locks the run's SKUs (skus sorted, distinct). 0, or -1 (db_last_error says why) or
 * -2 (out of memory). */
static int run_read_stock(inventory *inv, of_call *call, run_sku *skus, size_t n)
{
    size_t len = ofp_sql_list_len(n);
    of_db_value *p = calloc(len, sizeof(*p));
    char *sql = p ? ofp_sql_rows_new("SELECT sku, available FROM stock WHERE sku IN (", "?", len,
                                     ") ORDER BY sku FOR UPDATE")
                  : NULL;
    if (!sql) {
        free(p);
        return -2;
    }
    for (size_t i = 0; i < len; i++)
        p[i] = (of_db_value)OF_DB_S(skus[i < n ? i : n - 1].sku);
    of_db_rows *rows = inv->api->db_query(call, sql, p, len);
    free(sql);
    free(p);
    if (!rows)
        return -1;
    int r;
    while ((r = inv->api->db_rows_next(rows)) == 1) {
        of_db_value v[2];
        if (ofp_db_row(inv->api, rows, v, 2) != 0 || v[0].type != OF_DB_TEXT ||
            v[0].len > INV_SKU_MAX || v[1].type != OF_DB_INT) {
            inv->api->log(inv->stage, OF_LOG_ERROR, "inventory: unexpected stock row shape");
            r = -1;
            break;
        }
        char sku[INV_SKU_MAX + 1];
        memcpy(sku, v[0].p, v[0].len);
        sku[v[0].len] = '\0';
        run_sku *k = run_sku_find(skus, n, sku);
        if (k) {
            k->found = 1;
            k->available = v[1].i;
        }
    }
    inv->api->db_rows_free(rows);
    return r < 0 ? -1 : 0;
}

/* Takes what the run reserved from every SKU it touched (skus sorted), in one UPDATE. 0, -1 or
 * -2. */
static int take_stock(inventory *inv, of_call *call, const run_sku *skus, size_t n)
{
    stock_delta *d = calloc(n ? n : 1, sizeof(*d));
    if (!d)
        return -2;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (skus[i].taken > 0)
            d[m++] = (stock_delta){skus[i].sku, 0, -skus[i].taken, skus[i].taken};
    int rc = m ? stock_apply(inv, call, d, m) : 0;
    free(d);
    return rc;
}

static size_t reserve_run(inventory *inv, of_call *const *calls, placed *pl, size_t n,
                          of_status *status)
{
    const of_host_api *api = inv->api;
    size_t n_lines = 0;
    for (size_t i = 0; i < n; i++)
        n_lines += pl[i].o.n_lines;
    run_sku *skus = calloc(n_lines, sizeof(*skus));
    const order **done = calloc(n, sizeof(*done));
    int rc = skus && done ? 0 : -2;
    size_t n_skus = 0, n_done = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        for (size_t l = 0; l < pl[i].o.n_lines; l++)
            skus[n_skus++].sku = pl[i].o.lines[l].sku;
    if (rc == 0) {
        qsort(skus, n_skus, sizeof(*skus), run_sku_cmp);
        size_t u = 0;
        for (size_t i = 0; i < n_skus; i++)
            if (u == 0 || strcmp(skus[u - 1].sku, skus[i].sku) != 0)
                skus[u++] = skus[i];
        n_skus = u;
        rc = run_read_stock(inv, calls[0], skus, n_skus);
    }
    /* All or nothing per order, in the run's order, against what is left. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const order *o = &pl[i].o;
        size_t l = 0;
        for (; l < o->n_lines; l++) {
            const run_sku *k = run_sku_find(skus, n_skus, o->lines[l].sku);
            if (!k->found || k->available - k->taken < o->lines[l].quantity)
                break;
        }
        pl[i].reserved = l == o->n_lines;
        pl[i].fail_line = l;
        pl[i].no_stock_row = !pl[i].reserved && !run_sku_find(skus, n_skus, o->lines[l].sku)->found;
        if (!pl[i].reserved)
            continue;
        for (l = 0; l < o->n_lines; l++)
            run_sku_find(skus, n_skus, o->lines[l].sku)->taken += o->lines[l].quantity;
        done[n_done++] = o;
    }
    if (rc == 0)
        rc = take_stock(inv, calls[0], skus, n_skus);
    if (rc == 0 && n_done > 0)
        rc = inv_record_reservations(inv, calls[0], done, n_done);
    free(skus);
    free(done);
    if (rc != 0) {
        /* None of it goes through (the calls share the transaction, and so its error: the host
         * then tries each event alone, where a second order.placed of a reserved order is
         * found). */
        if (rc == -1) {
            ofp_events_db_failed(api, inv->stage, calls, n, status, "reserving stock");
        } else {
            for (size_t i = 0; i < n; i++) {
                api->set_reason(calls[i], "out of memory");
                status[i] = OF_RETRY;
            }
        }
        return 0;
    }
    size_t i = 0;
    for (; i < n; i++) {
        placed *p = &pl[i];
        if (p->reserved) {
            status[i] = inv_emit_reserved(inv, calls[i], &p->o);
        } else if (inv_ignore_known(inv, calls[i], &p->o, &status[i]) == 0) {
            /* Not for an order reserved before (its stock may be gone since). */
            const order_line *l = &p->o.lines[p->fail_line];
            const char *reason = "insufficient stock";
            status[i] =
                p->no_stock_row ? inv_unreservable_reason(inv, calls[i], l, &reason) : OF_OK;
            if (status[i] == OF_OK)
                status[i] = inv_emit_rejected(inv, calls[i], p->o.id, reason, l->sku);
        }
        if (status[i] != OF_OK)
            break;
    }
    return i;
}

/* ---- commands in runs ---------------------------------------------------------------------- */

#define INV_RUN_COMMANDS 256 /* most commands in one run: the IN lists' length */

/* A valid command of a set on its first try; doc owns order_id. */
typedef struct command {
    json_t *doc;
    const char *order_id;
    int commit;
} command;

/* The call's event as a valid command on its first try: 1 (filled, doc owned by c), 0 (any other
 * event, which process() handles) or -1 (out of memory). An order id ending in a space goes alone:
 * SQL compares with PAD SPACE, so its rows would not be told apart from another order's here. */
static int command_parse(inventory *inv, of_call *call, command *c)
{
    const of_host_api *api = inv->api;
    size_t tlen = 0, plen = 0;
    const char *type = api->event_header(call, "ce_type", &tlen);
    memset(c, 0, sizeof(*c));
    if (!type || api->event_attempt(call) > 1)
        return 0;
    if (tlen == strlen("inventory.commit") && memcmp(type, "inventory.commit", tlen) == 0)
        c->commit = 1;
    else if (tlen != strlen("inventory.release") || memcmp(type, "inventory.release", tlen) != 0)
        return 0;
    const char *payload = api->event_payload(call, &plen);
    json_error_t err;
    json_t *doc = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, &err);
    if (!doc)
        return json_error_code(&err) == json_error_out_of_memory ? -1 : 0;
    /* A malformed command goes to process(), which rejects it for the reason set here. */
    const char *id = inv_command_order_id(inv, call, doc, c->commit);
    if (!id || !ofp_valid_key(id, strlen(id))) {
        json_decref(doc);
        return 0;
    }
    c->doc = doc;
    c->order_id = id;
    return 1;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One RESERVED row of a run's orders, as read (locked). */
typedef struct held {
    size_t order; /* index in the run's sorted ids */
    char sku[INV_SKU_MAX + 1];
    int64_t quantity;
} held;

static int held_sku_cmp(const void *a, const void *b)
{
    return strcmp(((const held *)a)->sku, ((const held *)b)->sku);
}

/* head, an IN list of v[0..n) (n >= 1; the last repeated up to ofp_sql_list_len, which an IN list
 * ignores), then tail: a query whose rows go to *rows, or with rows NULL a statement, whose count
 * it returns. -1 (db_last_error says why) or -2 (out of memory). */
static int64_t run_in_list(inventory *inv, of_call *call, const char *head, const char *tail,
                           const char *const *v, size_t n, of_db_rows **rows)
{
    size_t len = ofp_sql_list_len(n);
    of_db_value *p = calloc(len, sizeof(*p));
    char *sql = p ? ofp_sql_rows_new(head, "?", len, tail) : NULL;
    if (!sql) {
        free(p);
        return -2;
    }
    for (size_t i = 0; i < len; i++)
        p[i] = (of_db_value)OF_DB_S(v[i < n ? i : n - 1]);
    int64_t r;
    if (rows) {
        *rows = inv->api->db_query(call, sql, p, len);
        r = *rows ? 0 : -1;
    } else {
        r = inv->api->db_exec(call, sql, p, len);
        r = r < 0 ? -1 : r;
    }
    free(sql);
    free(p);
    return r;
}

/* Reads and locks the RESERVED rows of the orders ids[0..m) (sorted, distinct) into *out (*n_out
 * rows). 0, -1 (db_last_error says why), -2 (out of memory) or -3 (a row of another order: one
 * whose id differs from a run's only by trailing spaces, which SQL's PAD SPACE comparison matches
 * and C does not: the run then goes the lone path's way). */
static int read_held(inventory *inv, of_call *call, const char *const *ids, size_t m, held **out,
                     size_t *n_out)
{
    of_db_rows *rows = NULL;
    int rc = (int)run_in_list(
        inv, call, "SELECT order_id, sku, quantity FROM reservations WHERE order_id IN (",
        ") AND state = 'RESERVED' ORDER BY order_id, sku FOR UPDATE", ids, m, &rows);
    if (rc != 0)
        return rc;
    held *h = NULL;
    size_t n = 0, cap = 0;
    int r;
    while ((r = inv->api->db_rows_next(rows)) == 1) {
        of_db_value v[3];
        if (ofp_db_row(inv->api, rows, v, 3) != 0 || v[0].type != OF_DB_TEXT ||
            v[0].len > INV_ORDER_ID_MAX || v[1].type != OF_DB_TEXT || v[1].len > INV_SKU_MAX ||
            v[2].type != OF_DB_INT) {
            inv->api->log(inv->stage, OF_LOG_ERROR, "inventory: unexpected reservation row shape");
            rc = -1;
            break;
        }
        char id[INV_ORDER_ID_MAX + 1];
        memcpy(id, v[0].p, v[0].len);
        id[v[0].len] = '\0';
        const char *key = id;
        const char *const *at = bsearch(&key, ids, m, sizeof(*ids), str_cmp);
        if (!at) {
            rc = -3;
            break;
        }
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            held *g = realloc(h, nc * sizeof(*h));
            if (!g) {
                rc = -2;
                break;
            }
            h = g;
            cap = nc;
        }
        h[n].order = (size_t)(at - ids);
        memcpy(h[n].sku, v[1].p, v[1].len);
        h[n].sku[v[1].len] = '\0';
        h[n].quantity = v[2].i;
        n++;
    }
    if (rc == 0 && r < 0)
        rc = -1;
    inv->api->db_rows_free(rows);
    if (rc != 0) {
        free(h);
        return rc;
    }
    *out = h;
    *n_out = n;
    return 0;
}

/* Ends the held rows of the orders whose settler is of kind `commit`: one UPDATE for their ids.
 * 0, -1, -2, or -4 when it did not end every row it read locked (the reason set). */
static int end_held(inventory *inv, of_call *call, const char *const *ids, const int *kind,
                    const size_t *rows_of, size_t m, int commit)
{
    size_t k = 0, want = 0;
    for (size_t i = 0; i < m; i++)
        if (kind[i] == commit && rows_of[i] > 0) {
            k++;
            want += rows_of[i];
        }
    if (k == 0)
        return 0;
    const char **list = calloc(k, sizeof(*list));
    if (!list)
        return -2;
    for (size_t i = 0, t = 0; i < m; i++)
        if (kind[i] == commit && rows_of[i] > 0)
            list[t++] = ids[i];
    int64_t changed =
        run_in_list(inv, call,
                    commit ? "UPDATE reservations SET state = 'COMMITTED' WHERE order_id IN ("
                           : "UPDATE reservations SET state = 'RELEASED' WHERE order_id IN (",
                    ") AND state = 'RESERVED'", list, k, NULL);
    free(list);
    if (changed < 0)
        return (int)changed;
    if ((size_t)changed != want) {
        /* The rows were read locked: this cannot happen unless the schema changed underneath. */
        inv->api->set_reason(call, "%zu reservation rows ended where %zu were read",
                             (size_t)changed, want);
        return -4;
    }
    return 0;
}

/* Moves the stock of the held rows h[0..n) (each as its order's settler says) and ends them. */
static int settle_held(inventory *inv, of_call *call, const char *const *ids, const int *kind,
                       const size_t *rows_of, size_t m, held *h, size_t n)
{
    int rc = 0;
    if (n > 0) {
        qsort(h, n, sizeof(*h), held_sku_cmp);
        stock_delta *d = calloc(n, sizeof(*d));
        if (!d)
            return -2;
        size_t u = 0;
        for (size_t i = 0; i < n; i++) {
            if (u == 0 || strcmp(d[u - 1].sku, h[i].sku) != 0)
                d[u++] = (stock_delta){.sku = h[i].sku};
            if (kind[h[i].order])
                d[u - 1].on_hand -= h[i].quantity;
            else
                d[u - 1].available += h[i].quantity;
            d[u - 1].reserved -= h[i].quantity;
        }
        rc = stock_apply(inv, call, d, u);
        free(d);
    }
    if (rc == 0)
        rc = end_held(inv, call, ids, kind, rows_of, m, 1);
    if (rc == 0)
        rc = end_held(inv, call, ids, kind, rows_of, m, 0);
    return rc;
}

/* Settles the run of commands c[0..n) (n >= 2, each on its first try) and answers each in status:
 * the first command of an order settles its RESERVED rows as the lone path would, a later one of
 * the same order finds nothing left. Returns how many went through from the front. */
static size_t settle_run(inventory *inv, of_call *const *calls, const command *c, size_t n,
                         of_status *status)
{
    const of_host_api *api = inv->api;
    const char **ids = calloc(n, sizeof(*ids));
    size_t *settler = calloc(n, sizeof(*settler));   /* per id: its first command */
    size_t *order_of = calloc(n, sizeof(*order_of)); /* per command: its id's index */
    size_t *rows_of = calloc(n, sizeof(*rows_of));
    int *kind = calloc(n, sizeof(*kind));
    held *h = NULL;
    size_t m = 0, n_held = 0;
    int rc = ids && settler && order_of && rows_of && kind ? 0 : -2;
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            ids[i] = c[i].order_id;
        qsort(ids, n, sizeof(*ids), str_cmp);
        for (size_t i = 0; i < n; i++)
            if (m == 0 || strcmp(ids[m - 1], ids[i]) != 0)
                ids[m++] = ids[i];
        for (size_t i = n; i-- > 0;) { /* backwards: an id's first command is the last set */
            const char *const *at = bsearch(&c[i].order_id, ids, m, sizeof(*ids), str_cmp);
            order_of[i] = (size_t)(at - ids);
            settler[order_of[i]] = i;
            kind[order_of[i]] = c[i].commit;
        }
        rc = read_held(inv, calls[0], ids, m, &h, &n_held);
    }
    for (size_t i = 0; rc == 0 && i < n_held; i++)
        rows_of[h[i].order]++;
    if (rc == 0)
        rc = settle_held(inv, calls[0], ids, kind, rows_of, m, h, n_held);
    size_t i = 0;
    if (rc == 0) {
        for (; i < n; i++) {
            size_t o = order_of[i];
            status[i] = inv_settled(inv, calls[i], c[i].order_id, c[i].commit,
                                    settler[o] == i && rows_of[o] > 0);
            if (status[i] != OF_OK)
                break;
        }
    } else if (rc == -3) {
        /* Nothing written yet (the rows are only locked): each command as the lone path does
         * it, in the same transaction. */
        for (; i < n; i++) {
            status[i] = inv_process(inv, calls[i]);
            if (status[i] != OF_OK)
                break;
        }
    } else if (rc == -1) {
        ofp_events_db_failed(api, inv->stage, calls, n, status, "settling stock");
    } else {
        /* Out of memory, or a count that does not add up (-4): the first command tries again
         * alone, the others after it. */
        if (rc == -2)
            api->set_reason(calls[0], "out of memory");
        status[0] = OF_RETRY;
    }
    free(h);
    free(kind);
    free(rows_of);
    free(order_of);
    free(settler);
    free(ids);
    return i;
}

/* ---- the set ------------------------------------------------------------------------------- */

enum { EV_OTHER, EV_PLACED, EV_COMMAND };

void inv_process_batch(void *instance, of_call *const *calls, size_t n, of_status *status)
{
    inventory *inv = instance;
    placed *pl = calloc(n, sizeof(*pl));
    command *cmd = calloc(n, sizeof(*cmd));
    int *kind = calloc(n, sizeof(*kind));
    if (!pl || !cmd || !kind) {
        for (size_t j = 0; j < n; j++) {
            inv->api->set_reason(calls[j], "out of memory");
            status[j] = OF_RETRY;
        }
        n = 0;
    }
    for (size_t j = 0; j < n; j++) {
        int r = placed_parse(inv, calls[j], &pl[j]);
        if (r == 0)
            r = command_parse(inv, calls[j], &cmd[j]) * EV_COMMAND;
        if (r < 0) {
            inv->api->set_reason(calls[j], "out of memory");
            status[j] = OF_RETRY;
            n = j; /* the host stops at j */
            break;
        }
        kind[j] = r;
    }
    size_t i = 0;
    while (i < n) {
        /* A run's statements take a few placeholders per line or command: the bounds keep them
         * far below the server's 65,535 whatever the batch and max_lines. */
        size_t j = i, lines = 0;
        if (kind[i] == EV_PLACED) {
            while (j < n && kind[j] == EV_PLACED &&
                   (j == i || lines + pl[j].o.n_lines <= INV_RUN_LINES))
                lines += pl[j++].o.n_lines;
        } else if (kind[i] == EV_COMMAND) {
            while (j < n && kind[j] == EV_COMMAND && j - i < INV_RUN_COMMANDS)
                j++;
        }
        size_t ok;
        if (j - i >= 2) {
            ok =
                i + (kind[i] == EV_PLACED ? reserve_run(inv, calls + i, pl + i, j - i, status + i)
                                          : settle_run(inv, calls + i, cmd + i, j - i, status + i));
        } else {
            j = i + 1; /* a lone event of a kind, or another event: as process() */
            status[i] = inv_process(inv, calls[i]);
            ok = status[i] == OF_OK ? j : i;
        }
        if (ok < j)
            break;
        i = j;
    }
    for (size_t j = 0; pl && cmd && j < n; j++) {
        free(pl[j].o.lines);
        json_decref(pl[j].doc);
        json_decref(cmd[j].doc);
    }
    free(pl);
    free(cmd);
    free(kind);
}
