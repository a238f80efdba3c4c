/*
 * payment: charges orders once their stock is reserved, and refunds them on command (the
 * order saga, docs/orders.md; this stage: docs/payment.md).
 *
 *   inventory.reserved {order_id, customer_id, total_cents, currency, items}
 *       -> payment.captured {order_id, payment_id, amount_cents, currency}
 *       |  payment.declined {order_id, reason}
 *   payment.refund {order_id, reason}
 *       -> payment.refunded {order_id, payment_id, amount_cents, currency}
 *
 * A database stage: each try of process() runs in the host's transaction, which also records
 * the input event (a redelivered event is skipped) and writes what is emitted to the outbox.
 * The table `payments` has one row per order (a unique key on order_id): an order is charged at
 * most once, a second inventory.reserved for it re-emits the recorded outcome, a second refund
 * does nothing. Events are dispatched on their ce_type header, not on the topic; other types
 * (inventory.rejected, released, committed) are acknowledged without effect.
 *
 * The charge happens before the transaction commits: when the commit fails after a successful
 * charge, the retry charges again with the same idempotency key (the order id) and the provider
 * answers with the first charge (the simulated provider is a pure function of the order).
 */
#include <orderflow/stage.h>

#include "charge_memo.h"
#include "charge_pool.h"
#include "ofp_id.h"
#include "ofp_json.h"
#include "ofp_sql.h"
#include "provider.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { PROVIDER_SIMULATED = 0, PROVIDER_HTTP = 1 };

typedef struct payment {
    const of_host_api *api;
    of_stage *stage;
    int provider;
    /* simulated */
    pay_sim sim;
    char **customers;
    char *marker;
    int64_t latency_ms;
    /* http */
    pay_url url;
    int64_t timeout_ms;
    char *api_key;
    pay_pool *pool; /* NULL: charges one after another, on the worker */
    pay_memo *memo; /* answers to charges whose events run again (NULL: none kept) */
    of_counter *captured, *declined, *refunded, *failures, *duplicates;
} payment;

static const char *const providers[] = {"simulated", "http", NULL};

static const of_option options[] = {
    {.name = "provider",
     .type = OF_OPT_ENUM,
     .default_value = "simulated",
     .description = "simulated (rules below) or http (a payment service at url)",
     .enum_values = providers},
    {.name = "decline_over_cents",
     .type = OF_OPT_INT,
     .default_value = "0",
     .description = "simulated: amounts above it are declined; 0 = no limit",
     .flags = OF_OPT_HAS_MIN,
     .min = 0},
    {.name = "decline_customers",
     .type = OF_OPT_LIST,
     .description = "simulated: customer ids that are always declined"},
    {.name = "decline_marker",
     .type = OF_OPT_STRING,
     .description = "simulated: a customer id containing this text is declined"},
    {.name = "latency",
     .type = OF_OPT_DURATION,
     .default_value = "0ms",
     .description = "simulated: time each charge takes",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 0,
     .max = 60000},
    {.name = "transient_failure_rate",
     .type = OF_OPT_DOUBLE,
     .default_value = "0",
     .description = "simulated: fraction of charge tries that fail transiently (retried); "
                    "deterministic per order id and attempt",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 0,
     .max = 1},
    {.name = "url",
     .type = OF_OPT_STRING,
     .description = "http: the provider's charge endpoint, http://host[:port]/path (refunds go "
                    "to url/refunds)"},
    {.name = "timeout",
     .type = OF_OPT_DURATION,
     .default_value = "2s",
     .description = "http: bound on connecting, sending and receiving one request",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 1,
     .max = 60000},
    {.name = "provider_threads",
     .type = OF_OPT_INT,
     .default_value = "31",
     .description = "helper threads that send a set's charges at once, beside the worker's own "
                    "(http, or simulated with a latency); 0: one after another",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 0,
     .max = PAY_POOL_MAX_THREADS},
    {.name = "api_key",
     .type = OF_OPT_STRING,
     .description = "http: sent as Authorization: Bearer",
     .flags = OF_OPT_SECRET},
    {.name = NULL},
};

static const char *const outputs[] = {"events", NULL};

static const of_migration migrations[] = {
    {1, "create payments",
     "CREATE TABLE payments (\n"
     "  id BIGINT NOT NULL AUTO_INCREMENT,\n"
     "  order_id VARCHAR(64) NOT NULL,\n"
     "  amount_cents BIGINT NOT NULL,\n"
     "  currency CHAR(3) NOT NULL,\n"
     "  state ENUM('CAPTURED','REFUNDED','DECLINED') NOT NULL,\n"
     "  provider_ref VARCHAR(128) NULL,\n"
     "  reason VARCHAR(255) NULL,\n"
     "  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)\n"
     "    ON UPDATE CURRENT_TIMESTAMP(3),\n"
     "  PRIMARY KEY (id),\n"
     "  UNIQUE KEY payments_order (order_id)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"},
    {0, NULL, NULL},
};

/* ---- init and shutdown ---------------------------------------------------------------- */

static void payment_free(payment *p)
{
    const of_host_api *api = p->api;
    pay_pool_free(p->pool);
    pay_memo_free(p->memo);
    if (p->customers) {
        for (size_t i = 0; i < p->sim.n_customers; i++)
            api->free(p->customers[i]);
        api->free(p->customers);
    }
    api->free(p->marker);
    if (p->api_key) {
        memset(p->api_key, 0, strlen(p->api_key));
        api->free(p->api_key);
    }
    api->free(p);
}

static int payment_init(of_stage *stage, const of_host_api *api, const of_config *cfg,
                        void **instance, char *errstr, size_t errstr_size)
{
    if (!OF_API_HAS(api, db_exec) || !OF_API_HAS(api, db_last_insert_id)) {
        snprintf(errstr, errstr_size, "this host has no database functions (ABI 1.1 needed)");
        return -1;
    }
    payment *p = api->calloc(1, sizeof(*p));
    if (!p) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    p->api = api;
    p->stage = stage;
    p->provider =
        api->config_enum(cfg, "provider") == PROVIDER_HTTP ? PROVIDER_HTTP : PROVIDER_SIMULATED;
    p->sim.decline_over_cents = api->config_int(cfg, "decline_over_cents");
    p->sim.transient_failure_rate = api->config_double(cfg, "transient_failure_rate");
    p->latency_ms = api->config_duration_ms(cfg, "latency");
    p->timeout_ms = api->config_duration_ms(cfg, "timeout");
    size_t n = api->config_list_count(cfg, "decline_customers");
    if (n > 0) {
        p->customers = api->calloc(n, sizeof(char *));
        if (!p->customers)
            goto oom;
        for (size_t i = 0; i < n; i++) {
            const char *c = api->config_list_item(cfg, "decline_customers", i);
            if (!(p->customers[i] = api->strdup(c ? c : "")))
                goto oom;
            p->sim.n_customers = i + 1;
        }
    }
    p->sim.customers = (const char *const *)p->customers;
    const char *marker = api->config_string(cfg, "decline_marker");
    if (marker && *marker && !(p->marker = api->strdup(marker)))
        goto oom;
    p->sim.marker = p->marker;
    const char *key = api->config_string(cfg, "api_key");
    if (key && *key && !(p->api_key = api->strdup(key)))
        goto oom;
    if (p->provider == PROVIDER_HTTP) {
        const char *url = api->config_string(cfg, "url");
        char err[200];
        if (!url || !*url) {
            snprintf(errstr, errstr_size, "provider http needs a url");
            payment_free(p);
            return -1;
        }
        if (pay_url_parse(url, &p->url, err, sizeof(err)) != 0) {
            snprintf(errstr, errstr_size, "%s", err);
            payment_free(p);
            return -1;
        }
    }
    /* Without a latency the simulated provider answers at once, and the same again when asked
     * again: helpers would only hand off, a memo only copy. */
    int remote = p->provider == PROVIDER_HTTP || p->latency_ms > 0;
    if (remote && !(p->memo = pay_memo_new()))
        goto oom;
    int64_t threads = api->config_int(cfg, "provider_threads");
    if (threads > 0 && remote) {
        char err[160];
        p->pool = pay_pool_new((unsigned)threads, "payment-charge", err, sizeof(err));
        if (!p->pool) {
            snprintf(errstr, errstr_size, "%s", err);
            payment_free(p);
            return -1;
        }
    }
    p->captured = api->counter_register(stage, "payments_captured_total", "charges captured");
    p->declined = api->counter_register(stage, "payments_declined_total", "charges declined");
    p->refunded = api->counter_register(stage, "payments_refunded_total", "payments refunded");
    p->failures = api->counter_register(stage, "payment_provider_failures_total",
                                        "provider calls that failed transiently (retried)");
    p->duplicates = api->counter_register(stage, "payments_duplicate_total",
                                          "reserved events for an order already charged");
    if (p->provider == PROVIDER_HTTP)
        api->log(stage, OF_LOG_INFO,
                 "payment provider: http://%s:%s%s (timeout %" PRId64 " ms, %" PRId64
                 " helper threads)",
                 p->url.host, p->url.port, p->url.path, p->timeout_ms, p->pool ? threads : 0);
    else
        api->log(stage, OF_LOG_INFO,
                 "payment provider: simulated (decline over %" PRId64 " cents, %zu blocked "
                 "customers, marker '%s', transient failure rate %.3f)",
                 p->sim.decline_over_cents, p->sim.n_customers, p->marker ? p->marker : "",
                 p->sim.transient_failure_rate);
    *instance = p;
    return 0;
oom:
    snprintf(errstr, errstr_size, "out of memory");
    payment_free(p);
    return -1;
}

static void payment_shutdown(void *instance)
{
    if (instance)
        payment_free(instance);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void count(payment *p, of_counter *c)
{
    if (c)
        p->api->counter_add(c, 1);
}

static of_status db_failed(payment *p, of_call *call, const char *what)
{
    const char *msg = NULL;
    of_db_error e = p->api->db_last_error(call, &msg);
    p->api->set_reason(call, "%s: %s", what, msg ? msg : "database error");
    return e == OF_DB_ERR_TRANSIENT || e == OF_DB_ERR_UNAVAILABLE || e == OF_DB_ERR_DUPLICATE
               ? OF_RETRY
               : OF_REJECT;
}

/* The payload as a JSON object, or NULL with the reason set (the event is rejected). */
static json_t *read_object(payment *p, of_call *call)
{
    size_t len;
    const char *payload = p->api->event_payload(call, &len);
    json_error_t e;
    json_t *doc = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &e);
    if (!doc) {
        p->api->set_reason(call, "malformed JSON: %s (line %d, column %d)", e.text, e.line,
                           e.column);
        return NULL;
    }
    if (!json_is_object(doc)) {
        p->api->set_reason(call, "malformed event: the payload is not a JSON object");
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* A string field of 1..max bytes without NUL; NULL with the reason set. */
/* A string member of at most max bytes; a key (an id looked up in SQL and matched in C) must be
 * an ofp_valid_key. */
static const char *string_field(payment *p, of_call *call, const json_t *doc, const char *name,
                                size_t max, int required, int key)
{
    const json_t *v = json_object_get(doc, name);
    if (!v && !required)
        return "";
    if (!json_is_string(v) || (required && json_string_length(v) == 0) ||
        json_string_length(v) > max || strlen(json_string_value(v)) != json_string_length(v)) {
        p->api->set_reason(call, "malformed event: %s must be a string of %d to %zu characters",
                           name, required ? 1 : 0, max);
        return NULL;
    }
    if (key && !ofp_valid_key(json_string_value(v), json_string_length(v))) {
        p->api->set_reason(call, "malformed event: %s must not end in a space", name);
        return NULL;
    }
    return json_string_value(v);
}

typedef struct payment_row {
    int found;
    int64_t id;
    int64_t amount_cents;
    char currency[4];
    char state[16];
    char reason[PAY_REASON_MAX + 1];
} payment_row;

static void copy_text(const of_db_value *v, char *dst, size_t size)
{
    if (v->type == OF_DB_TEXT || v->type == OF_DB_BLOB) {
        size_t n = v->len < size - 1 ? v->len : size - 1;
        memcpy(dst, v->p, n);
        dst[n] = '\0';
    } else {
        dst[0] = '\0';
    }
}

/* The order's payment (locked for this transaction with `lock`). 0 (row->found says whether
 * there is one), or -1 with the reason set and *status the outcome. No lock before an insert:
 * a locking read of a missing row takes a gap lock, and two such transactions inserting into the
 * same gap deadlock; the unique key on order_id is what keeps a second charge out. */
static int load_payment(payment *p, of_call *call, const char *order_id, int lock, payment_row *row,
                        of_status *status)
{
    const of_host_api *api = p->api;
    memset(row, 0, sizeof(*row));
    of_db_value param = OF_DB_S(order_id);
    of_db_rows *rows = api->db_query(call,
                                     lock ? "SELECT id, amount_cents, currency, state, reason "
                                            "FROM payments WHERE order_id = ? FOR UPDATE"
                                          : "SELECT id, amount_cents, currency, state, reason "
                                            "FROM payments WHERE order_id = ?",
                                     &param, 1);
    if (!rows) {
        *status = db_failed(p, call, "reading the payment");
        return -1;
    }
    int r = api->db_rows_next(rows);
    if (r == 1) {
        of_db_value v[5];
        for (size_t i = 0; i < 5; i++)
            if (api->db_rows_get(rows, i, &v[i]) != 0)
                v[i] = OF_DB_NULLV;
        row->found = 1;
        row->id = v[0].i;
        row->amount_cents = v[1].i;
        copy_text(&v[2], row->currency, sizeof(row->currency));
        copy_text(&v[3], row->state, sizeof(row->state));
        copy_text(&v[4], row->reason, sizeof(row->reason));
    }
    api->db_rows_free(rows);
    if (r < 0) {
        *status = db_failed(p, call, "reading the payment");
        return -1;
    }
    return 0;
}

/* Emits the text of w as `ce_type` on "events", keyed by the order id, and frees w. Written
 * with ofp_json.h rather than as a jansson document: an event for every order. */
static of_status emit_event(payment *p, of_call *call, const char *order_id, const char *ce_type,
                            ofp_jw *w)
{
    size_t len = 0;
    const char *text = ofp_jw_text(w, &len);
    if (!text) {
        ofp_jw_free(w);
        p->api->set_reason(call, "out of memory");
        return OF_RETRY;
    }
    of_header h = {.name = "ce_type", .value = ce_type, .value_len = strlen(ce_type)};
    int rc = p->api->emit(call, "events", order_id, strlen(order_id), text, len, &h, 1);
    ofp_jw_free(w);
    if (rc != 0) {
        p->api->set_reason(call, "emit failed");
        return OF_RETRY;
    }
    return OF_OK;
}

static of_status emit_amount(payment *p, of_call *call, const char *ce_type, const char *order_id,
                             int64_t id, int64_t amount, const char *currency)
{
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "order_id", order_id);
    ofp_jw_int(&w, "payment_id", id);
    ofp_jw_int(&w, "amount_cents", amount);
    ofp_jw_str(&w, "currency", currency);
    ofp_jw_end(&w);
    return emit_event(p, call, order_id, ce_type, &w);
}

static of_status emit_declined(payment *p, of_call *call, const char *order_id, const char *reason)
{
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "order_id", order_id);
    ofp_jw_str(&w, "reason", reason);
    ofp_jw_end(&w);
    return emit_event(p, call, order_id, "payment.declined", &w);
}

static of_status emit_recorded(payment *p, of_call *call, const char *order_id,
                               const payment_row *row)
{
    if (strcmp(row->state, "DECLINED") == 0)
        return emit_declined(p, call, order_id, row->reason);
    return emit_amount(
        p, call, strcmp(row->state, "REFUNDED") == 0 ? "payment.refunded" : "payment.captured",
        order_id, row->id, row->amount_cents, row->currency);
}

/* ---- inventory.reserved: charge, in runs ---------------------------------------------------
 *
 * The reserved events of a set (process_batch; process() hands over one) are taken in runs: the
 * payments of all their orders are read in one SELECT, the orders without one are charged at
 * once (the charge pool's helpers beside the worker: a run takes about one provider call, not
 * one per order), and the new payments go in one INSERT; a refund between them ends a run, so it
 * sees the payments the events before it recorded. The answers are taken in the set's order and
 * the first charge to try again ends the try: nothing commits, and the answers of the other
 * charges are kept (charge_memo.h) for their events' next run instead of asking again. */

/* A reserved event of a run, checked. */
typedef enum pay_kind { PK_OTHER, PK_RESERVED, PK_REFUND } pay_kind;

typedef struct pay_res {
    pay_kind kind;                                 /* the run's functions skip all but reserved */
    const char *order_id, *customer_id, *currency; /* in its document */
    int64_t amount_cents;
    payment_row row; /* its order's payment: read, or this run's */
    int from_run;    /* row is another event's of this run: its id comes with the INSERT */
    size_t same;     /* from_run: the index of that event */
    int charge;      /* no payment and none earlier in the run: the provider is called */
    int attempt;     /* charge: the event's try, read on the worker */
    int known;       /* charge: answered by the memo, not sent */
    pay_result res;  /* charge: the provider's answer */
    int fresh;       /* charged here: row goes into the INSERT */
} pay_res;

/* Checks an inventory.reserved: 0, or -1 with the reason set (rejected). */
static int reserved_check(payment *p, of_call *call, json_t *doc, pay_res *r)
{
    const of_host_api *api = p->api;
    r->order_id = string_field(p, call, doc, "order_id", 64, 1, 1);
    if (!r->order_id)
        return -1;
    r->customer_id = string_field(p, call, doc, "customer_id", 255, 1, 0);
    if (!r->customer_id)
        return -1;
    const json_t *total = json_object_get(doc, "total_cents");
    if (!json_is_integer(total) || json_integer_value(total) < 0) {
        api->set_reason(call, "malformed event: total_cents must be an integer >= 0");
        return -1;
    }
    r->amount_cents = (int64_t)json_integer_value(total);
    r->currency = string_field(p, call, doc, "currency", 3, 1, 0);
    if (!r->currency)
        return -1;
    const char *c = r->currency;
    if (strlen(c) != 3 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2] < 'A' ||
        c[2] > 'Z') {
        api->set_reason(call, "malformed event: currency must be 3 upper-case letters");
        return -1;
    }
    return 0;
}

/* The recorded payments of the run's orders, in one SELECT without locks (a locking read of a
 * missing row takes a gap lock, and two transactions inserting into the same gap deadlock; the
 * unique key on order_id is what keeps a second charge out). 0, or -1 (db_last_error). */
static int run_load(payment *p, of_call *call, pay_res *rs, size_t n)
{
    const of_host_api *api = p->api;
    of_db_value *params = calloc(ofp_sql_list_len(n), sizeof(*params));
    size_t np = 0;
    for (size_t i = 0; params && i < n; i++)
        if (rs[i].kind == PK_RESERVED)
            params[np++] = (of_db_value)OF_DB_S(rs[i].order_id);
    size_t len = ofp_sql_list_len(np);
    for (size_t i = np; params && i < len; i++)
        params[i] = params[np - 1];
    char *sql = params ? ofp_sql_rows_new("SELECT order_id, id, amount_cents, currency, state, "
                                          "reason FROM payments WHERE order_id IN (",
                                          "?", len, ")")
                       : NULL;
    if (!sql) {
        free(params);
        return -2;
    }
    of_db_rows *rows = api->db_query(call, sql, params, len);
    free(sql);
    free(params);
    if (!rows)
        return -1;
    int r;
    while ((r = api->db_rows_next(rows)) == 1) {
        of_db_value v[6];
        for (size_t i = 0; i < 6; i++)
            if (api->db_rows_get(rows, i, &v[i]) != 0)
                v[i] = OF_DB_NULLV;
        for (size_t i = 0; i < n; i++) {
            if (rs[i].kind != PK_RESERVED || v[0].type != OF_DB_TEXT ||
                strlen(rs[i].order_id) != v[0].len || memcmp(rs[i].order_id, v[0].p, v[0].len) != 0)
                continue;
            payment_row *row = &rs[i].row;
            row->found = 1;
            row->id = v[1].i;
            row->amount_cents = v[2].i;
            copy_text(&v[3], row->currency, sizeof(row->currency));
            copy_text(&v[4], row->state, sizeof(row->state));
            copy_text(&v[5], row->reason, sizeof(row->reason));
        }
    }
    api->db_rows_free(rows);
    return r < 0 ? -1 : 0;
}

/* Which events of the run call the provider: a reserved event whose order has no payment, unless
 * an earlier event of the run is for the same order (it is answered with that one's outcome). */
static void run_plan(payment *p, of_call *const *calls, pay_res *rs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pay_res *r = &rs[i];
        if (r->kind != PK_RESERVED || r->row.found)
            continue;
        size_t j = 0;
        while (j < i && !(rs[j].kind == PK_RESERVED && (rs[j].charge || rs[j].from_run) &&
                          strcmp(rs[j].order_id, r->order_id) == 0))
            j++;
        if (j < i) {
            r->from_run = 1;
            r->same = rs[j].from_run ? rs[j].same : j;
            continue;
        }
        r->charge = 1;
        r->attempt = p->api->event_attempt(calls[i]);
        r->known = pay_memo_take(p->memo, r->order_id, now_ms(), &r->res);
        if (r->known)
            p->api->log(p->stage, OF_LOG_DEBUG,
                        "order %s: the provider's answer to its last try taken, not asked again",
                        r->order_id);
    }
}

/* Keeps the definite answers of the run's charges: they were made, and their events run again
 * (charge_memo.h; an answer to try again is not kept). */
static void run_keep(payment *p, const pay_res *rs, size_t n)
{
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++)
        if (rs[i].charge)
            pay_memo_put(p->memo, rs[i].order_id, &rs[i].res, now);
}

typedef struct charge_job {
    const payment *p;
    pay_res *rs;
    const size_t *which; /* the indexes of rs to charge */
} charge_job;

/* One provider call (a job of the charge pool: no host function here). */
static void charge_one(void *arg, size_t k)
{
    const charge_job *job = arg;
    const payment *p = job->p;
    pay_res *r = &job->rs[job->which[k]];
    pay_charge charge = {.order_id = r->order_id,
                         .customer_id = r->customer_id,
                         .amount_cents = r->amount_cents,
                         .currency = r->currency,
                         .attempt = r->attempt};
    if (p->provider == PROVIDER_HTTP) {
        pay_http_charge(&p->url, p->api_key, p->timeout_ms, &charge, &r->res);
        return;
    }
    if (p->latency_ms > 0) {
        struct timespec ts = {p->latency_ms / 1000, (p->latency_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    pay_sim_charge(&p->sim, &charge, &r->res);
}

/* Sends the run's charges, at once when there is a pool. 0, or -2 (out of memory). */
static int run_send(payment *p, pay_res *rs, size_t n)
{
    size_t one, *which = &one, m = 0;
    for (size_t i = 0; i < n; i++)
        m += rs[i].charge && !rs[i].known;
    if (m > 1 && !(which = malloc(m * sizeof(*which))))
        return -2;
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (rs[i].charge && !rs[i].known)
            which[m++] = i;
    charge_job job = {.p = p, .rs = rs, .which = which};
    pay_pool_run(p->pool, charge_one, &job, m);
    if (which != &one)
        free(which);
    return 0;
}

/* The provider's answer for rs[i], on the worker: OF_OK (row filled) or OF_RETRY. */
static of_status run_settle(payment *p, of_call *call, pay_res *r)
{
    const of_host_api *api = p->api;
    const pay_result *res = &r->res;
    if (res->verdict == PAY_RETRY) {
        count(p, p->failures);
        api->log(p->stage, OF_LOG_WARN, "charge for order %s failed (attempt %d): %s", r->order_id,
                 r->attempt, res->reason);
        api->set_reason(call, "%s", res->reason);
        return OF_RETRY;
    }
    r->fresh = 1;
    r->row.amount_cents = r->amount_cents;
    snprintf(r->row.currency, sizeof(r->row.currency), "%s", r->currency);
    snprintf(r->row.state, sizeof(r->row.state), "%s",
             res->verdict == PAY_CAPTURED ? "CAPTURED" : "DECLINED");
    snprintf(r->row.reason, sizeof(r->row.reason), "%s",
             res->verdict == PAY_CAPTURED ? "" : res->reason);
    return OF_OK;
}

static void fresh_params(const pay_res *r, of_db_value *v)
{
    int captured = strcmp(r->row.state, "CAPTURED") == 0;
    v[0] = (of_db_value)OF_DB_S(r->order_id);
    v[1] = (of_db_value)OF_DB_I(r->amount_cents);
    v[2] = (of_db_value)OF_DB_S(r->currency);
    v[3] = (of_db_value)OF_DB_S(r->row.state);
    v[4] = captured ? (of_db_value)OF_DB_S(r->res.ref) : OF_DB_NULLV;
    v[5] = captured ? OF_DB_NULLV : (of_db_value)OF_DB_S(r->row.reason);
}

#define INSERT_PAYMENT                                                                             \
    "INSERT INTO payments (order_id, amount_cents, currency, state, provider_ref, reason) VALUES "
#define PAYMENT_ROW "(?, ?, ?, ?, ?, ?)"

/* The run's new payments: one INSERT ... RETURNING id for several (ids in VALUES order), a plain
 * INSERT for one or on a server without RETURNING. 0, -1 (db_last_error) or -2 (out of memory). */
static int run_insert(payment *p, of_call *call, pay_res *rs, size_t n)
{
    const of_host_api *api = p->api;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += rs[i].fresh;
    if (m == 0)
        return 0;
    if (m > 1) {
        of_db_value *v = calloc(6 * m, sizeof(*v));
        char *sql = v ? ofp_sql_rows_new(INSERT_PAYMENT, PAYMENT_ROW, m, " RETURNING id") : NULL;
        if (!sql) {
            free(v);
            return -2;
        }
        for (size_t i = 0, k = 0; i < n; i++)
            if (rs[i].fresh)
                fresh_params(&rs[i], v + 6 * k++);
        of_db_rows *rows = api->db_query(call, sql, v, 6 * m);
        free(sql);
        free(v);
        if (rows) {
            int r = 1;
            for (size_t i = 0; i < n && r == 1; i++) {
                if (!rs[i].fresh)
                    continue;
                of_db_value id;
                r = api->db_rows_next(rows);
                if (r == 1 && (api->db_rows_get(rows, 0, &id) != 0 || id.type != OF_DB_INT))
                    r = -1;
                if (r == 1)
                    rs[i].row.id = id.i;
            }
            api->db_rows_free(rows);
            return r == 1 ? 0 : -1;
        }
        if (api->db_last_error(call, NULL) != OF_DB_ERR_OTHER)
            return -1;
        /* A server without INSERT ... RETURNING: one row at a time. */
    }
    for (size_t i = 0; i < n; i++) {
        if (!rs[i].fresh)
            continue;
        of_db_value v[6];
        fresh_params(&rs[i], v);
        if (api->db_exec(call, INSERT_PAYMENT PAYMENT_ROW, v, 6) < 0)
            return -1;
        rs[i].row.id = api->db_last_insert_id(call);
    }
    return 0;
}

/* What the event says once its run is recorded: the new payment's outcome, or the recorded one
 * again for an order charged before. */
static of_status run_answer(payment *p, of_call *call, pay_res *rs, size_t i)
{
    pay_res *r = &rs[i];
    if (!r->fresh) {
        const payment_row *row = r->from_run ? &rs[r->same].row : &r->row;
        count(p, p->duplicates);
        p->api->log(p->stage, OF_LOG_INFO,
                    "order %s already has payment %" PRId64 " (%s): not charged again", r->order_id,
                    row->id, row->state);
        return emit_recorded(p, call, r->order_id, row);
    }
    if (strcmp(r->row.state, "CAPTURED") == 0) {
        count(p, p->captured);
        p->api->log(p->stage, OF_LOG_DEBUG, "order %s: captured %" PRId64 " %s as payment %" PRId64,
                    r->order_id, r->amount_cents, r->currency, r->row.id);
        return emit_amount(p, call, "payment.captured", r->order_id, r->row.id, r->amount_cents,
                           r->currency);
    }
    count(p, p->declined);
    p->api->log(p->stage, OF_LOG_INFO, "order %s: declined: %s", r->order_id, r->row.reason);
    return emit_declined(p, call, r->order_id, r->row.reason);
}

/* One run (calls[0..n), checked into rs; the events of other types in it are left alone):
 * read, charge, record, answer the reserved ones. Returns how many went through from the front;
 * status says why the next did not. */
static size_t run_reserved(payment *p, of_call *const *calls, pay_res *rs, size_t n,
                           of_status *status)
{
    size_t reserved = 0;
    for (size_t i = 0; i < n; i++)
        reserved += rs[i].kind == PK_RESERVED;
    if (reserved == 0)
        return n;
    int rc = run_load(p, calls[0], rs, n);
    if (rc == 0) {
        run_plan(p, calls, rs, n);
        rc = run_send(p, rs, n);
    }
    size_t k = 0;
    while (rc == 0 && k < n &&
           (!rs[k].charge || (status[k] = run_settle(p, calls[k], &rs[k])) == OF_OK))
        k++;
    if (rc == 0 && k < n) {
        /* A charge to try again: nothing here commits, the events before it run again without
         * it and the host retries it alone; the others' answers are kept for their next run. */
        run_keep(p, rs, n);
        return k;
    }
    if (rc == 0 && (rc = run_insert(p, calls[0], rs, n)) != 0)
        run_keep(p, rs, n);
    for (size_t i = 0; rc != 0 && i < n; i++) {
        if (rc == -2)
            p->api->set_reason(calls[i], "out of memory");
        status[i] = rc == -2 ? OF_RETRY : db_failed(p, calls[i], "the payments of the orders");
    }
    if (rc != 0)
        return 0;
    for (k = 0; k < n; k++)
        if (rs[k].kind == PK_RESERVED && (status[k] = run_answer(p, calls[k], rs, k)) != OF_OK)
            break;
    return k;
}

/* ---- payment.refund ------------------------------------------------------------------------ */

static of_status on_refund(payment *p, of_call *call, json_t *doc)
{
    const of_host_api *api = p->api;
    const char *order_id = string_field(p, call, doc, "order_id", 64, 1, 1);
    if (!order_id)
        return OF_REJECT;
    const char *reason = string_field(p, call, doc, "reason", PAY_REASON_MAX, 0, 0);
    if (!reason)
        return OF_REJECT;

    payment_row row;
    of_status st;
    if (load_payment(p, call, order_id, 1, &row, &st) != 0)
        return st;
    if (!row.found || strcmp(row.state, "CAPTURED") != 0) {
        api->log(p->stage, OF_LOG_INFO, "refund for order %s: %s, nothing to do", order_id,
                 !row.found ? "no payment" : row.state);
        return OF_OK;
    }

    pay_result res = {.verdict = PAY_CAPTURED};
    if (p->provider == PROVIDER_HTTP)
        pay_http_refund(&p->url, p->api_key, p->timeout_ms, order_id, &res);
    if (res.verdict != PAY_CAPTURED) {
        count(p, p->failures);
        api->log(p->stage, OF_LOG_WARN, "refund for order %s failed (attempt %d): %s", order_id,
                 api->event_attempt(call), res.reason);
        api->set_reason(call, "%s", res.reason);
        return OF_RETRY;
    }
    of_db_value params[] = {*reason ? OF_DB_S(reason) : OF_DB_NULLV, OF_DB_I(row.id)};
    if (api->db_exec(call,
                     "UPDATE payments SET state = 'REFUNDED', reason = ? "
                     "WHERE id = ? AND state = 'CAPTURED'",
                     params, 2) < 0)
        return db_failed(p, call, "recording the refund");
    count(p, p->refunded);
    api->log(p->stage, OF_LOG_INFO, "order %s: payment %" PRId64 " refunded", order_id, row.id);
    return emit_amount(p, call, "payment.refunded", order_id, row.id, row.amount_cents,
                       row.currency);
}

/* ---- process ------------------------------------------------------------------------------- */

/* What the call's event is: 0, or -1 with the reason set (rejected). */
static int classify(payment *p, of_call *call, pay_res *r)
{
    size_t len = 0;
    const char *type = p->api->event_header(call, "ce_type", &len);
    if (!type) {
        p->api->set_reason(call, "no ce_type header: cannot tell what the event is");
        return -1;
    }
    r->kind = len == 18 && memcmp(type, "inventory.reserved", 18) == 0 ? PK_RESERVED
              : len == 14 && memcmp(type, "payment.refund", 14) == 0   ? PK_REFUND
                                                                       : PK_OTHER;
    if (r->kind == PK_OTHER && p->api->log_enabled(p->stage, OF_LOG_DEBUG))
        p->api->log(p->stage, OF_LOG_DEBUG, "ignored an event of type %.*s",
                    (int)(len > 64 ? 64 : len), type);
    return 0;
}

/* A set of events in one transaction (ABI 1.5; process() is a set of one): runs of reserved
 * events as above (events of other types inside a run are acknowledged), a refund alone. Stops
 * at the first event that does not go through: the host commits only the ones before it. */
static void payment_process_batch(void *instance, of_call *const *calls, size_t n,
                                  of_status *status)
{
    payment *p = instance;
    json_t *one_doc = NULL, **docs = n == 1 ? &one_doc : calloc(n, sizeof(*docs));
    pay_res one_res, *rs = n == 1 ? &one_res : calloc(n, sizeof(*rs));
    if (!docs || !rs) {
        for (size_t i = 0; i < n; i++)
            p->api->set_reason(calls[i], "out of memory");
        n = 0;
    }
    /* Check every event first; m: how many are fit (the first unfit one is rejected). */
    size_t m = 0;
    for (; m < n; m++) {
        memset(&rs[m], 0, sizeof(rs[m]));
        if (classify(p, calls[m], &rs[m]) != 0)
            break;
        if (rs[m].kind == PK_OTHER)
            continue;
        docs[m] = read_object(p, calls[m]);
        if (!docs[m] ||
            (rs[m].kind == PK_RESERVED && reserved_check(p, calls[m], docs[m], &rs[m]) != 0))
            break;
    }
    if (m < n)
        status[m] = OF_REJECT;
    for (size_t i = 0; i < m;) {
        if (rs[i].kind == PK_REFUND) { /* alone, after what the events before it recorded */
            if ((status[i] = on_refund(p, calls[i], docs[i])) != OF_OK)
                break;
            i++;
            continue;
        }
        size_t j = i; /* the run: up to the next refund */
        while (j < m && rs[j].kind != PK_REFUND) {
            status[j] = OF_OK;
            j++;
        }
        if (run_reserved(p, calls + i, rs + i, j - i, status + i) < j - i)
            break;
        i = j;
    }
    for (size_t i = 0; i < n && i <= m; i++)
        json_decref(docs[i]);
    if (docs != &one_doc)
        free(docs);
    if (rs != &one_res)
        free(rs);
}

static of_status payment_process(void *instance, of_call *call)
{
    of_status s = OF_RETRY;
    payment_process_batch(instance, &call, 1, &s);
    return s;
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "payment",
    .version = "1.0.0",
    .description = "charges reserved orders once (simulated or HTTP provider), refunds them",
    .options = options,
    .outputs = outputs,
    .init = payment_init,
    .process = payment_process,
    .shutdown = payment_shutdown,
    .process_batch = payment_process_batch,
    .flags = OF_STAGE_DATABASE,
    .migrations = migrations,
    /* inventory.events carries the other outcomes too: the host acknowledges those without a
     * transaction. */
    .accepts = (const char *const[]){"inventory.reserved", "payment.refund", NULL},
};

OF_STAGE_DEFINE(descriptor)
