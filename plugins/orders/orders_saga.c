/*
 * orders: the saga consumer. process() reads inventory.events and payment.events and moves the
 * order (docs/orders.md):
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
#include "orders.h"

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

static of_status tr_failed(orders *o, of_call *call, ord_tr r, const char *what)
{
    if (r == ORD_TR_EMIT_ERROR) {
        o->api->set_reason(call, "%s: emitting the status event failed", what);
        return OF_RETRY;
    }
    return ofp_event_db_failed(o->api, o->stage, call, what);
}

/* The order was not in the expected state: why (unknown, or elsewhere), and its status. */
static of_status not_in_state(orders *o, of_call *call, const char *type, const char *order_id,
                              const char *expected, char status[17])
{
    char customer[ORD_CUSTOMER_MAX + 1];
    int r = ord_load_head(o, call, order_id, 0, status, customer);
    if (r < 0)
        return ofp_event_db_failed(o->api, o->stage, call, "reading the order");
    if (r == 0) {
        status[0] = '\0';
        o->api->log(o->stage, OF_LOG_WARN, "%s for unknown order %s: ignored", type, order_id);
        return OF_OK;
    }
    o->api->counter_add(o->ignored, 1);
    o->api->log(o->stage, OF_LOG_INFO, "%s for order %s in %s (not %s): ignored", type, order_id,
                status, expected);
    return OF_OK;
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

/* RESERVED -> the path's statuses for a payment event. Payment answers inventory.reserved, which
 * this stage reads from another topic than payment.events, so the payment's event may come first:
 * it implies the reservation, and a PENDING order is moved to RESERVED first, in the same
 * transaction (the inventory.reserved that follows finds it past PENDING and changes nothing).
 * Ignoring it instead would leave the order RESERVED for good. */
static ord_tr from_reserved(orders *o, of_call *call, const char *id, const ord_step *path,
                            size_t n)
{
    ord_tr r = ord_transition_path(o, call, id, "RESERVED", path, n);
    if (r != ORD_TR_NOT_IN)
        return r;
    ord_tr p = ord_transition(o, call, id, "PENDING", "RESERVED", "stock reserved");
    if (p != ORD_TR_DONE)
        return p; /* an error, or not PENDING either */
    return ord_transition_path(o, call, id, "RESERVED", path, n);
}

static of_status on_event(orders *o, of_call *call, kind k, const char *type, json_t *doc)
{
    const of_host_api *api = o->api;
    json_t *idv = json_object_get(doc, "order_id");
    if (!json_is_string(idv) || json_string_length(idv) == 0 ||
        json_string_length(idv) > ORD_EVENT_ID_MAX ||
        strlen(json_string_value(idv)) != json_string_length(idv)) {
        api->set_reason(call, "%s: order_id must be a string of 1 to %d characters", type,
                        ORD_EVENT_ID_MAX);
        return OF_REJECT;
    }
    const char *id = json_string_value(idv);
    int bad = 0;
    const char *reason = opt_string(doc, "reason", &bad);
    const char *sku = opt_string(doc, "sku", &bad);
    if (bad) {
        api->set_reason(call, "%s: reason and sku must be strings", type);
        return OF_REJECT;
    }
    /* payment_id: the payment plugin's number (or a provider's string); only shown. */
    char payment_id[72] = "";
    json_t *pid = json_object_get(doc, "payment_id");
    if (json_is_integer(pid))
        snprintf(payment_id, sizeof(payment_id), "%" JSON_INTEGER_FORMAT, json_integer_value(pid));
    else if (json_is_string(pid))
        ofp_shown(json_string_value(pid), json_string_length(pid), payment_id, sizeof(payment_id));
    char status[17] = "", why[ORD_REASON_MAX + 1];
    ord_tr r;
    switch (k) {
    case K_RESERVED:
        r = ord_transition(o, call, id, "PENDING", "RESERVED", "stock reserved");
        if (r < 0)
            return tr_failed(o, call, r, "inventory.reserved");
        if (r == ORD_TR_NOT_IN) {
            of_status st = not_in_state(o, call, type, id, "PENDING", status);
            if (st != OF_OK || strcmp(status, "CANCELLED") != 0)
                return st;
            /* Cancelled while PENDING, reserved after: give the stock back. */
            if (ord_emit(o, call, "inventory", "inventory.release", id,
                         json_pack("{s:s, s:s}", "order_id", id, "reason",
                                   "order cancelled before the reservation")) != 0) {
                api->set_reason(call, "emitting inventory.release failed");
                return OF_RETRY;
            }
        }
        return OF_OK;
    case K_REJECTED:
        if (sku)
            snprintf(why, sizeof(why), "%s (sku %s)", reason ? reason : "rejected by inventory",
                     sku);
        else
            snprintf(why, sizeof(why), "%s", reason ? reason : "rejected by inventory");
        r = ord_transition(o, call, id, "PENDING", "REJECTED", why);
        if (r < 0)
            return tr_failed(o, call, r, "inventory.rejected");
        return r == ORD_TR_NOT_IN ? not_in_state(o, call, type, id, "PENDING", status) : OF_OK;
    case K_CAPTURED:
        if (payment_id[0])
            snprintf(why, sizeof(why), "payment captured (payment %s)", payment_id);
        else
            snprintf(why, sizeof(why), "payment captured");
        /* Paid and confirmed at once: one UPDATE, one read, one INSERT of both history rows. */
        ord_step paid[] = {{"PAID", why}, {"CONFIRMED", "order confirmed"}};
        r = from_reserved(o, call, id, paid, 2);
        if (r < 0)
            return tr_failed(o, call, r, "payment.captured");
        if (r == ORD_TR_NOT_IN) {
            of_status st = not_in_state(o, call, type, id, "RESERVED", status);
            if (st != OF_OK || strcmp(status, "CANCELLED") != 0)
                return st;
            /* A capture of a cancelled order: the money goes back. */
            if (ord_emit(o, call, "payment", "payment.refund", id,
                         json_pack("{s:s, s:s}", "order_id", id, "reason",
                                   "payment captured after the order was cancelled")) != 0) {
                api->set_reason(call, "emitting payment.refund failed");
                return OF_RETRY;
            }
            api->counter_add(o->refunds, 1);
            api->log(o->stage, OF_LOG_INFO, "order %s: captured after its cancel, refund asked",
                     id);
            return OF_OK;
        }
        if (ord_emit(o, call, "inventory", "inventory.commit", id,
                     json_pack("{s:s}", "order_id", id)) != 0) {
            api->set_reason(call, "emitting inventory.commit failed");
            return OF_RETRY;
        }
        return OF_OK;
    case K_DECLINED:
        snprintf(why, sizeof(why), "payment declined: %s", reason ? reason : "no reason given");
        r = from_reserved(o, call, id, &(ord_step){"CANCELLED", why}, 1);
        if (r < 0)
            return tr_failed(o, call, r, "payment.declined");
        if (r == ORD_TR_NOT_IN)
            return not_in_state(o, call, type, id, "RESERVED", status);
        if (ord_emit(o, call, "inventory", "inventory.release", id,
                     json_pack("{s:s, s:s}", "order_id", id, "reason", "payment declined")) != 0) {
            api->set_reason(call, "emitting inventory.release failed");
            return OF_RETRY;
        }
        return OF_OK;
    case K_IGNORED:
        break;
    }
    return OF_OK;
}

of_status ord_process(void *instance, of_call *call)
{
    orders *o = instance;
    const of_host_api *api = o->api;
    size_t tlen = 0, plen = 0;
    const char *type = api->event_header(call, "ce_type", &tlen);
    char t[64];
    if (!type || tlen == 0 || tlen >= sizeof(t)) {
        api->set_reason(call, "no ce_type header: not an event this stage knows");
        return OF_REJECT;
    }
    memcpy(t, type, tlen);
    t[tlen] = '\0';
    kind k = kind_of(t);
    if (k == K_IGNORED) {
        if (api->log_enabled(o->stage, OF_LOG_DEBUG)) {
            char shown[80];
            ofp_shown(t, tlen, shown, sizeof(shown));
            api->log(o->stage, OF_LOG_DEBUG, "%s: nothing to do", shown);
        }
        return OF_OK;
    }
    const char *payload = api->event_payload(call, &plen);
    json_error_t err;
    json_t *doc = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, &err);
    if (!doc) {
        api->set_reason(call, "%s: the payload is not JSON: %s (line %d, column %d)", t, err.text,
                        err.line, err.column);
        return OF_REJECT;
    }
    of_status st;
    if (!json_is_object(doc)) {
        api->set_reason(call, "%s: the payload is not a JSON object", t);
        st = OF_REJECT;
    } else {
        st = on_event(o, call, k, t, doc);
    }
    json_decref(doc);
    return st;
}
