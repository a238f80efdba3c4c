/*
 * orders: the saga consumer. process_batch() (and process(), a set of one) reads inventory.events
 * and payment.events and moves the order (docs/orders.md, docs/orders-plugin.md):
 *
 *   inventory.reserved  PENDING  -> RESERVED
 *   inventory.rejected  PENDING  -> REJECTED (the event's reason)
 *   payment.captured    RESERVED -> PAID -> CONFIRMED (in one UPDATE), emits inventory.commit
 *   payment.declined    RESERVED -> CANCELLED (the event's reason), emits inventory.release
 *   (a payment event that comes before the order's inventory.reserved, which this stage reads
 *   from another topic, moves a PENDING order to RESERVED first: the payment implies it)
 *
 * An event that finds the order in another state (late, repeated, or the customer cancelled
 * meanwhile) changes nothing, except where the saga would otherwise leak:
 *   - payment.captured of a CANCELLED order emits payment.refund (the money goes back);
 *   - inventory.reserved of a CANCELLED order emits inventory.release (an order cancelled while
 *     PENDING may be reserved after its cancel: the stock goes back).
 * inventory.released / inventory.committed / payment.refunded and other types are acknowledged
 * without effect (by the host, from the descriptor's `accepts`, or here on a host before ABI
 * 1.3). Unknown orders are logged and acknowledged; malformed events are rejected (dead
 * letter); database outages and deadlocks are retried.
 */
#include "ofp_http.h"
#include "ofp_id.h"
#include "ofp_sql.h"
#include "orders.h"

#include <inttypes.h>
#include <stdlib.h>

#include <stdio.h>
#include <string.h>

typedef enum kind {
    K_RESERVED,
    K_REJECTED,
    K_CAPTURED,
    K_DECLINED,
    K_IGNORED,
} kind;

static kind kind_of(const char *t)
{
    if (strcmp(t, "inventory.reserved") == 0)
        return K_RESERVED;
    if (strcmp(t, "inventory.rejected") == 0)
        return K_REJECTED;
    if (strcmp(t, "payment.captured") == 0)
        return K_CAPTURED;
    if (strcmp(t, "payment.declined") == 0)
        return K_DECLINED;
    return K_IGNORED;
}

/* An optional string member; NULL when absent or null, "" marks a wrong type (*bad = 1). */
static const char *opt_string(json_t *doc, const char *name, int *bad)
{
    json_t *v = json_object_get(doc, name);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

/* ---- one set of saga events (process_batch; process() hands over one) -------------------------
 *
 * All the orders a set names are read and locked in one statement, with their last history seq;
 * each event then moves its order in memory, in the set's order (two events of one order in a
 * set see each other), emitting as it goes; at the end one UPDATE gives every moved order its
 * last status and one INSERT appends every history row. A set costs three statements however
 * many events it has; a lone event costs what it did before (a read, an UPDATE, an INSERT). */

/* An event of the set, parsed. */
typedef struct saga_ev {
    kind k;
    char type[64];
    json_t *doc;    /* owned; NULL when the host hands a type this stage ignores */
    const char *id; /* order id, in doc */
    const char *reason, *sku;
    char payment_id[72];
    size_t order; /* index into the set's orders */
} saga_ev;

/* An order of the set: as read (locked), then as the events move it. */
typedef struct saga_order {
    const char *id; /* an event's */
    int found;
    char status[17];
    char customer[ORD_CUSTOMER_MAX + 1];
    int64_t seq; /* the last history row's */
    int moved;
} saga_order;

/* A history row to append. */
typedef struct saga_hist {
    size_t order;
    int64_t seq, at;
    char from[17], to[17];
    char reason[ORD_REASON_MAX + 1];
} saga_hist;

typedef struct saga_set {
    orders *o;
    saga_order *orders;
    size_t n_orders;
    saga_hist *hist;
    size_t n_hist, cap_hist;
} saga_set;

/* Parses the call's event into e: OF_OK (e->doc NULL for a type without effect), or OF_REJECT
 * with the reason set. */
static of_status saga_parse(orders *o, of_call *call, saga_ev *e)
{
    const of_host_api *api = o->api;
    memset(e, 0, sizeof(*e));
    size_t tlen = 0, plen = 0;
    const char *type = api->event_header(call, "ce_type", &tlen);
    if (!type || tlen == 0 || tlen >= sizeof(e->type)) {
        api->set_reason(call, "no ce_type header: not an event this stage knows");
        return OF_REJECT;
    }
    memcpy(e->type, type, tlen);
    e->type[tlen] = '\0';
    e->k = kind_of(e->type);
    if (e->k == K_IGNORED) {
        if (api->log_enabled(o->stage, OF_LOG_DEBUG)) {
            char shown[80];
            ofp_shown(e->type, tlen, shown, sizeof(shown));
            api->log(o->stage, OF_LOG_DEBUG, "%s: nothing to do", shown);
        }
        return OF_OK;
    }
    const char *payload = api->event_payload(call, &plen);
    json_error_t err;
    json_t *doc = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, &err);
    if (!doc) {
        api->set_reason(call, "%s: the payload is not JSON: %s (line %d, column %d)", e->type,
                        err.text, err.line, err.column);
        return OF_REJECT;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        api->set_reason(call, "%s: the payload is not a JSON object", e->type);
        return OF_REJECT;
    }
    json_t *idv = json_object_get(doc, "order_id");
    int bad = 0;
    e->reason = opt_string(doc, "reason", &bad);
    e->sku = opt_string(doc, "sku", &bad);
    /* Not ending in a space: the set's rows are matched to its events by bytes (ofp_valid_key). */
    if (!json_is_string(idv) || json_string_length(idv) > ORD_EVENT_ID_MAX ||
        !ofp_valid_key(json_string_value(idv), json_string_length(idv))) {
        json_decref(doc);
        api->set_reason(call,
                        "%s: order_id must be a string of 1 to %d characters, not ending "
                        "in a space",
                        e->type, ORD_EVENT_ID_MAX);
        return OF_REJECT;
    }
    if (bad) {
        json_decref(doc);
        api->set_reason(call, "%s: reason and sku must be strings", e->type);
        return OF_REJECT;
    }
    e->id = json_string_value(idv);
    /* payment_id: the payment plugin's number (or a provider's string); only shown. */
    json_t *pid = json_object_get(doc, "payment_id");
    if (json_is_integer(pid))
        snprintf(e->payment_id, sizeof(e->payment_id), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(pid));
    else if (json_is_string(pid))
        ofp_shown(json_string_value(pid), json_string_length(pid), e->payment_id,
                  sizeof(e->payment_id));
    e->doc = doc;
    return OF_OK;
}

/* Reads and locks the set's orders with their last history seq (orders.history_seq), in one
 * statement. The seq is on the locked row, not only a MAX over order_history: a locking read
 * returns the row as its last writer committed it, after waiting for that writer (the saga of
 * another host holding the order's other topic, the cancel route), where a plain read of the
 * history can come from a snapshot taken before the wait (at an earlier order of the set) and
 * reuse a seq. The MAX is there for writers from before migration 2 (ORD_HISTORY_MAX_SQL). Only
 * the orders rows are locked (one record lock each). 0, -1 (db_last_error says why) or -2 (out of
 * memory). */
static int saga_load(saga_set *set, of_call *call)
{
    const of_host_api *api = set->o->api;
    size_t n = set->n_orders, len = ofp_sql_list_len(n);
    of_db_value *params = calloc(len, sizeof(*params));
    char *sql = params ? ofp_sql_rows_new("SELECT o.id, o.status, o.customer_id, "
                                          "GREATEST(o.history_seq, " ORD_HISTORY_MAX_SQL
                                          ") FROM orders o WHERE o.id IN (",
                                          "?", len, ") FOR UPDATE")
                       : NULL;
    if (!sql) {
        free(params);
        return -2;
    }
    for (size_t i = 0; i < len; i++)
        params[i] = (of_db_value)OF_DB_S(set->orders[i < n ? i : n - 1].id);
    of_db_rows *rows = api->db_query(call, sql, params, len);
    free(sql);
    free(params);
    if (!rows)
        return -1;
    int r;
    while ((r = api->db_rows_next(rows)) == 1) {
        of_db_value id, st, cu, sq;
        if (api->db_rows_get(rows, 0, &id) != 0 || id.type != OF_DB_TEXT ||
            api->db_rows_get(rows, 1, &st) != 0 || st.type != OF_DB_TEXT || st.len >= 17 ||
            api->db_rows_get(rows, 2, &cu) != 0 || cu.type != OF_DB_TEXT ||
            cu.len > ORD_CUSTOMER_MAX || api->db_rows_get(rows, 3, &sq) != 0 ||
            sq.type != OF_DB_INT) {
            api->log(set->o->stage, OF_LOG_ERROR, "orders: unexpected row shape");
            r = -1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            saga_order *so = &set->orders[i];
            if (strlen(so->id) != id.len || memcmp(so->id, id.p, id.len) != 0)
                continue;
            so->found = 1;
            memcpy(so->status, st.p, st.len);
            so->status[st.len] = '\0';
            memcpy(so->customer, cu.p, cu.len);
            so->customer[cu.len] = '\0';
            so->seq = sq.i;
        }
    }
    api->db_rows_free(rows);
    return r < 0 ? -1 : 0;
}

/* Moves the order through steps (in memory): a history row, a status event and a log line each,
 * the last status cached after the commit. 0, or -1 (emitting failed, or out of memory). */
static int saga_move(saga_set *set, of_call *call, saga_order *so, const ord_step *steps, size_t n)
{
    orders *o = set->o;
    if (set->n_hist + n > set->cap_hist) {
        size_t cap = set->cap_hist ? set->cap_hist * 2 : 16;
        while (cap < set->n_hist + n)
            cap *= 2;
        saga_hist *h = realloc(set->hist, cap * sizeof(*h));
        if (!h)
            return -1;
        set->hist = h;
        set->cap_hist = cap;
    }
    int64_t at = ord_now_ms();
    char when[40];
    ofp_rfc3339_ms(at, when, sizeof(when));
    for (size_t i = 0; i < n; i++) {
        saga_hist *h = &set->hist[set->n_hist++];
        h->order = (size_t)(so - set->orders);
        h->seq = ++so->seq;
        h->at = at;
        snprintf(h->from, sizeof(h->from), "%s", so->status);
        snprintf(h->to, sizeof(h->to), "%s", steps[i].to);
        ord_cut_reason(steps[i].reason, h->reason);
        if (ord_emit_status(o, call, so->id, so->customer, h->seq, h->from, h->to, h->reason,
                            when) != 0)
            return -1;
        o->api->log(o->stage, OF_LOG_INFO, "order %s: %s -> %s (%s)", so->id, h->from, h->to,
                    h->reason);
        snprintf(so->status, sizeof(so->status), "%s", h->to);
    }
    so->moved = 1;
    ord_cache_status(o, call, so->id, so->seq, so->status);
    o->api->counter_add(o->transitions, (double)n);
    return 0;
}

/* The event found its order in another state than `expected` (or unknown): logged and counted;
 * nothing changes. */
static void saga_not_in(orders *o, const saga_ev *e, const saga_order *so, const char *expected)
{
    if (!so->found) {
        o->api->log(o->stage, OF_LOG_WARN, "%s for unknown order %s: ignored", e->type, e->id);
        return;
    }
    o->api->counter_add(o->ignored, 1);
    o->api->log(o->stage, OF_LOG_INFO, "%s for order %s in %s (not %s): ignored", e->type, e->id,
                so->status, expected);
}

static of_status emit_failed(orders *o, of_call *call, const char *what)
{
    o->api->set_reason(call, "%s: emitting %s failed", what, what);
    return OF_RETRY;
}

/* RESERVED -> steps for a payment event. Payment answers inventory.reserved, which this stage
 * reads from another topic than payment.events, so the payment's event may come first: it implies
 * the reservation, and a PENDING order is moved to RESERVED first (the inventory.reserved that
 * follows finds it past PENDING and changes nothing). Ignoring it instead would leave the order
 * RESERVED for good. 1 moved, 0 not in either state, -1 failed. */
static int saga_from_reserved(saga_set *set, of_call *call, saga_order *so, const ord_step *steps,
                              size_t n)
{
    if (!so->found)
        return 0;
    if (strcmp(so->status, "PENDING") == 0) {
        ord_step reserved = {"RESERVED", "stock reserved"};
        if (saga_move(set, call, so, &reserved, 1) != 0)
            return -1;
    }
    if (strcmp(so->status, "RESERVED") != 0)
        return 0;
    return saga_move(set, call, so, steps, n) == 0 ? 1 : -1;
}

/* What the event does to its order (in memory) and emits. */
static of_status saga_apply(saga_set *set, of_call *call, const saga_ev *e)
{
    orders *o = set->o;
    const of_host_api *api = o->api;
    saga_order *so = &set->orders[e->order];
    char why[ORD_REASON_MAX + 1];
    int r;
    switch (e->k) {
    case K_RESERVED:
        if (so->found && strcmp(so->status, "PENDING") == 0) {
            ord_step st = {"RESERVED", "stock reserved"};
            return saga_move(set, call, so, &st, 1) == 0
                       ? OF_OK
                       : emit_failed(o, call, "order.status_changed");
        }
        saga_not_in(o, e, so, "PENDING");
        /* Cancelled while PENDING, reserved after: give the stock back. */
        if (so->found && strcmp(so->status, "CANCELLED") == 0 &&
            ord_emit_command(o, call, "inventory", "inventory.release", e->id,
                             "order cancelled before the reservation") != 0)
            return emit_failed(o, call, "inventory.release");
        return OF_OK;
    case K_REJECTED:
        if (e->sku)
            snprintf(why, sizeof(why), "%s (sku %s)",
                     e->reason ? e->reason : "rejected by inventory", e->sku);
        else
            snprintf(why, sizeof(why), "%s", e->reason ? e->reason : "rejected by inventory");
        if (so->found && strcmp(so->status, "PENDING") == 0) {
            ord_step st = {"REJECTED", why};
            return saga_move(set, call, so, &st, 1) == 0
                       ? OF_OK
                       : emit_failed(o, call, "order.status_changed");
        }
        saga_not_in(o, e, so, "PENDING");
        return OF_OK;
    case K_CAPTURED: {
        if (e->payment_id[0])
            snprintf(why, sizeof(why), "payment captured (payment %s)", e->payment_id);
        else
            snprintf(why, sizeof(why), "payment captured");
        ord_step paid[] = {{"PAID", why}, {"CONFIRMED", "order confirmed"}};
        r = saga_from_reserved(set, call, so, paid, 2);
        if (r < 0)
            return emit_failed(o, call, "order.status_changed");
        if (r == 0) {
            saga_not_in(o, e, so, "RESERVED");
            if (!so->found || strcmp(so->status, "CANCELLED") != 0)
                return OF_OK;
            /* A capture of a cancelled order: the money goes back. */
            if (ord_emit_command(o, call, "payment", "payment.refund", e->id,
                                 "payment captured after the order was cancelled") != 0)
                return emit_failed(o, call, "payment.refund");
            api->counter_add(o->refunds, 1);
            api->log(o->stage, OF_LOG_INFO, "order %s: captured after its cancel, refund asked",
                     e->id);
            return OF_OK;
        }
        if (ord_emit_command(o, call, "inventory", "inventory.commit", e->id, NULL) != 0)
            return emit_failed(o, call, "inventory.commit");
        return OF_OK;
    }
    case K_DECLINED:
        snprintf(why, sizeof(why), "payment declined: %s",
                 e->reason ? e->reason : "no reason given");
        r = saga_from_reserved(set, call, so, &(ord_step){"CANCELLED", why}, 1);
        if (r < 0)
            return emit_failed(o, call, "order.status_changed");
        if (r == 0) {
            saga_not_in(o, e, so, "RESERVED");
            return OF_OK;
        }
        if (ord_emit_command(o, call, "inventory", "inventory.release", e->id,
                             "payment declined") != 0)
            return emit_failed(o, call, "inventory.release");
        return OF_OK;
    case K_IGNORED:
        break;
    }
    return OF_OK;
}

/* The moved orders' last statuses in one UPDATE, the history rows in one INSERT. 0, -1 (see
 * db_last_error) or -2 (out of memory). */
static int saga_write(saga_set *set, of_call *call)
{
    const of_host_api *api = set->o->api;
    size_t moved = 0;
    for (size_t i = 0; i < set->n_orders; i++)
        moved += set->orders[i].moved;
    if (moved == 0)
        return 0;
    /* The moved orders, the last repeated up to the list's length (ofp_sql_list_len). */
    size_t places = ofp_sql_list_len(moved);
    size_t np = 5 * places > 6 * set->n_hist ? 5 * places : 6 * set->n_hist;
    of_db_value *p = calloc(np, sizeof(*p));
    size_t *mv = p ? calloc(places, sizeof(*mv)) : NULL;
    size_t size = 200 + 40 * places + 60 * set->n_hist;
    char *sql = mv ? malloc(size) : NULL;
    if (!sql) {
        free(mv);
        free(p);
        return -2;
    }
    for (size_t i = 0, m = 0; i < set->n_orders; i++)
        if (set->orders[i].moved)
            mv[m++] = i;
    for (size_t m = moved; m < places; m++)
        mv[m] = mv[moved - 1];
    /* UPDATE orders SET status = CASE id WHEN ? THEN ? ... END, history_seq = CASE id ... END
     * ... WHERE id IN (?, ...) */
    size_t len = (size_t)snprintf(sql, size, "UPDATE orders SET status = CASE id");
    size_t k = 0;
    for (int col = 0; col < 2; col++) {
        if (col == 1)
            len += (size_t)snprintf(sql + len, size - len, " END, history_seq = CASE id");
        for (size_t m = 0; m < places; m++) {
            saga_order *so = &set->orders[mv[m]];
            len += (size_t)snprintf(sql + len, size - len, " WHEN ? THEN ?");
            p[k++] = (of_db_value)OF_DB_S(so->id);
            p[k++] = col == 0 ? (of_db_value)OF_DB_S(so->status) : (of_db_value)OF_DB_I(so->seq);
        }
    }
    len += (size_t)snprintf(sql + len, size - len, " END, updated_at = NOW(3) WHERE id IN (");
    for (size_t m = 0; m < places; m++) {
        len += (size_t)snprintf(sql + len, size - len, m ? ", ?" : "?");
        p[k++] = (of_db_value)OF_DB_S(set->orders[mv[m]].id);
    }
    free(mv);
    snprintf(sql + len, size - len, ")");
    int rc = api->db_exec(call, sql, p, k) < 0 ? -1 : 0;
    if (rc == 0) {
        k = 0;
        for (size_t i = 0; i < set->n_hist; i++) {
            const saga_hist *h = &set->hist[i];
            p[k++] = (of_db_value)OF_DB_S(set->orders[h->order].id);
            p[k++] = (of_db_value)OF_DB_I(h->seq);
            p[k++] = (of_db_value)OF_DB_S(h->from);
            p[k++] = (of_db_value)OF_DB_S(h->to);
            p[k++] = (of_db_value)OF_DB_S(h->reason);
            p[k++] = (of_db_value)OF_DB_I(h->at);
        }
        if (ofp_sql_rows(sql, size,
                         "INSERT INTO order_history (order_id, seq, from_status, to_status, "
                         "reason, at) VALUES ",
                         "(?, ?, ?, ?, ?, FROM_UNIXTIME(? / 1000))", set->n_hist, "") == 0)
            rc = -2;
        else if (api->db_exec(call, sql, p, k) < 0)
            rc = -1;
    }
    free(sql);
    free(p);
    return rc;
}

/* A set of saga events in one transaction (ABI 1.5). Stops at the first event that does not go
 * through: the host commits only the ones before it. */
void ord_process_batch(void *instance, of_call *const *calls, size_t n, of_status *status)
{
    orders *o = instance;
    saga_ev one_ev, *evs = n == 1 ? &one_ev : calloc(n, sizeof(*evs));
    saga_order one_order, *sos = n == 1 ? &one_order : calloc(n, sizeof(*sos));
    saga_set set = {.o = o, .orders = sos};
    size_t m = 0; /* events parsed before the first bad one */
    if (evs && sos) {
        while (m < n && (status[m] = saga_parse(o, calls[m], &evs[m])) == OF_OK) {
            saga_ev *e = &evs[m++];
            if (!e->doc)
                continue;
            size_t j = 0;
            while (j < set.n_orders && strcmp(sos[j].id, e->id) != 0)
                j++;
            if (j == set.n_orders) {
                memset(&sos[j], 0, sizeof(sos[j]));
                sos[j].id = e->id;
                set.n_orders++;
            }
            e->order = j;
        }
    } else {
        for (size_t i = 0; i < n; i++)
            o->api->set_reason(calls[i], "out of memory");
    }
    int rc = set.n_orders ? saga_load(&set, calls[0]) : 0;
    size_t i = 0;
    for (; rc == 0 && i < m; i++) {
        if (evs[i].doc && (status[i] = saga_apply(&set, calls[i], &evs[i])) != OF_OK)
            break;
    }
    if (rc == 0 && i == m)
        rc = saga_write(&set, calls[0]);
    if (rc != 0) {
        /* The set's reads or writes failed: none of it goes through (the calls share the
         * transaction, and so its error). */
        if (rc == -1) {
            ofp_events_db_failed(o->api, o->stage, calls, m, status, "the order's saga");
        } else {
            for (size_t j = 0; j < m; j++) {
                o->api->set_reason(calls[j], "out of memory");
                status[j] = OF_RETRY;
            }
        }
    }
    for (size_t j = 0; evs && j < m; j++)
        json_decref(evs[j].doc);
    free(set.hist);
    if (evs != &one_ev)
        free(evs);
    if (sos != &one_order)
        free(sos);
}

of_status ord_process(void *instance, of_call *call)
{
    of_status s = OF_RETRY;
    ord_process_batch(instance, &call, 1, &s);
    return s;
}
