#include "stage_tx.h"

#include "bus.h"
#include "cache.h"
#include "gateway.h"
#include "log.h"
#include "outbox_marker.h"
#include "plugin.h"
#include "thread_name.h"
#include "timeutil.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void of_stage_tx_event_id(const of_event *ev, char *out, size_t size)
{
    const of_event_header *h = of_event_header_get(ev, "ce_id");
    if (h && h->value_len > 0 && h->value_len < 200)
        snprintf(out, size, "%.*s", (int)h->value_len, (const char *)h->value);
    else
        snprintf(out, size, "%s/%" PRId32 "/%" PRId64, ev->topic ? ev->topic : "", ev->partition,
                 ev->offset);
}

static of_txr classify(of_db_error e)
{
    return e == OF_DB_ERR_UNAVAILABLE || e == OF_DB_ERR_TRANSIENT ? OF_TXR_WAIT : OF_TXR_FAIL;
}

/* The outbox rows of an input event are tagged with the stage's group and the event's id, so a
 * redelivery can find the ones not yet published. */
static void source_of(const of_call *call, char *out, size_t size)
{
    char id[256] = "";
    if (call->input)
        of_stage_tx_event_id(call->input, id, sizeof(id));
    snprintf(out, size, "%s/%s", call->tx_group ? call->tx_group : "", id);
}

of_txr of_stage_tx_join(of_db_tx *tx, of_call *call, const char *group, char *why, size_t why_size)
{
    call->tx_group = group;
    if (call->input) {
        char id[256];
        of_stage_tx_event_id(call->input, id, sizeof(id));
        int rc = of_db_inbox_record(tx, group, id);
        if (rc != 1) {
            const char *msg = NULL;
            of_db_error e = of_db_tx_error(tx, &msg);
            of_seterr(why, why_size, "%s", rc == 0 ? "already applied" : msg ? msg : "inbox");
            return rc == 0 ? OF_TXR_DUPLICATE : of_db_tx_doomed(tx) ? OF_TXR_WAIT : classify(e);
        }
    }
    call->tx = tx;
    return OF_TXR_OK;
}

of_txr of_stage_tx_open(of_db_pool *pool, of_call *call, const char *group, char *why,
                        size_t why_size)
{
    call->tx_group = group;
    of_db_tx *tx = of_db_tx_begin(pool, why, why_size);
    if (!tx)
        return OF_TXR_WAIT; /* no connection: the database is unavailable */
    of_txr r = of_stage_tx_join(tx, call, group, why, why_size);
    if (r != OF_TXR_OK)
        of_db_tx_end(tx);
    return r;
}

of_txr of_stage_tx_write_outbox(of_call *call, int64_t **ids, char *why, size_t why_size)
{
    return of_stage_tx_write_outbox_calls(call, 1, ids, why, why_size);
}

of_txr of_stage_tx_write_outbox_calls(of_call *calls, size_t n, int64_t **ids, char *why,
                                      size_t why_size)
{
    of_db_tx *tx = n ? calls[0].tx : NULL;
    size_t total = 0;
    for (size_t c = 0; c < n; c++) {
        ids[c] = NULL;
        total += calls[c].n_emitted;
    }
    if (!tx || !total)
        return OF_TXR_OK;
    of_db_outbox_row *rows = calloc(total, sizeof(*rows));
    int64_t *all = calloc(total, sizeof(*all));
    char(*sources)[512] = calloc(n, sizeof(*sources));
    of_txr r = OF_TXR_FAIL;
    if (!rows || !all || !sources) {
        of_seterr(why, why_size, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t c = 0; c < n; c++) {
        if (calls[c].input)
            source_of(&calls[c], sources[c], sizeof(sources[c]));
        for (size_t i = 0; i < calls[c].n_emitted; i++, k++)
            rows[k] = (of_db_outbox_row){.topic = calls[c].emitted[i].topic,
                                         .ev = calls[c].emitted[i].event,
                                         .source = calls[c].input ? sources[c] : NULL};
    }
    if (of_db_outbox_add_many(tx, rows, total, all) != 0) {
        const char *msg = NULL;
        r = of_db_tx_doomed(tx) ? OF_TXR_WAIT : classify(of_db_tx_error(tx, &msg));
        of_seterr(why, why_size, "writing the outbox: %s", msg ? msg : "failed");
        goto out;
    }
    k = 0;
    for (size_t c = 0; c < n; c++) {
        size_t e = calls[c].n_emitted;
        if (!e)
            continue;
        if (n == 1) { /* the common single call: its ids are the whole list */
            ids[c] = all;
            all = NULL;
            break;
        }
        ids[c] = malloc(e * sizeof(**ids));
        if (!ids[c]) {
            for (size_t j = 0; j < c; j++) {
                free(ids[j]);
                ids[j] = NULL;
            }
            of_seterr(why, why_size, "out of memory");
            goto out;
        }
        memcpy(ids[c], all + k, e * sizeof(**ids));
        k += e;
    }
    r = OF_TXR_OK;
out:
    free(rows);
    free(all);
    free(sources);
    return r;
}

of_txr of_stage_tx_commit(of_call *call, int64_t **ids, size_t *n_ids, char *why, size_t why_size)
{
    of_db_tx *tx = call->tx;
    *ids = NULL;
    *n_ids = 0;
    if (!tx)
        return OF_TXR_OK;
    int64_t *list = NULL;
    of_txr r = of_stage_tx_write_outbox(call, &list, why, why_size);
    if (r == OF_TXR_OK && of_db_tx_commit(tx) != 0) {
        const char *msg = NULL;
        of_db_error e = of_db_tx_error(tx, &msg);
        /* A doomed transaction (deadlock, lost connection) committed nothing: try again. */
        r = of_db_tx_doomed(tx) ? OF_TXR_WAIT : classify(e);
        of_seterr(why, why_size, "commit: %s", msg ? msg : "failed");
    }
    of_db_tx_end(tx);
    call->tx = NULL;
    if (r != OF_TXR_OK) {
        free(list);
        return r;
    }
    *ids = list;
    *n_ids = call->n_emitted;
    return OF_TXR_OK;
}

of_txr of_stage_tx_failure(const of_db_tx *tx)
{
    return of_db_tx_doomed(tx) ? OF_TXR_WAIT : classify(of_db_tx_error(tx, NULL));
}

of_txr of_stage_tx_abort(of_call *call)
{
    of_db_tx *tx = call->tx;
    if (!tx)
        return OF_TXR_FAIL;
    of_txr r = of_stage_tx_failure(tx);
    of_db_tx_end(tx); /* rolls back */
    call->tx = NULL;
    return r;
}

/* ---------------------------------------------------------------------------------------------
 * The relay
 * ------------------------------------------------------------------------------------------- */

/* One relayed row: its own delivery context, so only the rows that were acknowledged are marked
 * published and a row that keeps failing does not make the others go out again and again. */
typedef struct relay_row {
    struct relay_round *round;
    int64_t id;
    int ok;
    int refused;     /* the bus will never take it (OF_BUS_ERR_PERMANENT): parked */
    char why[256];   /* with refused */
    char topic[128]; /* for the log */
} relay_row;

typedef struct relay_round {
    of_bus *bus;
    relay_row **rows;
    size_t n, cap;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending, failed;
} relay_round;

static void relay_delivered(void *opaque, int err, const char *errstr)
{
    relay_row *row = opaque;
    relay_round *r = row->round;
    pthread_mutex_lock(&r->mu);
    if (err == OF_BUS_ERR_PERMANENT) {
        row->refused = 1;
        snprintf(row->why, sizeof(row->why), "%s", errstr ? errstr : "refused by the bus");
    } else if (err) {
        r->failed = 1;
        of_log(OF_LVL_WARN, NULL, NULL, "outbox relay: delivery of row %" PRId64 " failed: %s",
               row->id, errstr ? errstr : "unknown");
    } else {
        row->ok = 1;
    }
    r->pending--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static int relay_one(void *opaque, int64_t id, const char *topic, const of_event *ev)
{
    relay_round *r = opaque;
    char err[256];
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        relay_row **rows = realloc(r->rows, cap * sizeof(*rows));
        if (!rows)
            return 1;
        r->rows = rows;
        r->cap = cap;
    }
    /* Rows are allocated one by one: a delivery callback may run while the array grows. */
    relay_row *row = calloc(1, sizeof(*row));
    if (!row)
        return 1;
    row->round = r;
    row->id = id;
    snprintf(row->topic, sizeof(row->topic), "%s", topic);
    r->rows[r->n++] = row;
    pthread_mutex_lock(&r->mu);
    r->pending++;
    pthread_mutex_unlock(&r->mu);
    int rc = r->bus->ops->produce(r->bus, topic, ev, relay_delivered, row, err, sizeof(err));
    if (rc == OF_BUS_ERR_PERMANENT) {
        /* This one can never go: it is parked, and the others still go. */
        pthread_mutex_lock(&r->mu);
        r->pending--;
        row->refused = 1;
        snprintf(row->why, sizeof(row->why), "%s", err);
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    if (rc != 0) {
        pthread_mutex_lock(&r->mu);
        r->pending--;
        r->failed = 1;
        pthread_mutex_unlock(&r->mu);
        of_log(OF_LVL_WARN, NULL, NULL, "outbox relay: producing to %s: %s", topic, err);
        return 1;
    }
    return 0;
}

static void round_init(relay_round *r, of_bus *bus)
{
    memset(r, 0, sizeof(*r));
    r->bus = bus;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

/* Waits for every delivery; 1 when all rows were acknowledged. The acknowledged rows' ids go
 * to *ok_ids (malloc'ed, *n_ok of them). */
static int round_wait(relay_round *r, int64_t **ok_ids, size_t *n_ok)
{
    pthread_mutex_lock(&r->mu);
    while (r->pending > 0)
        pthread_cond_wait(&r->cv, &r->mu);
    int all = !r->failed;
    pthread_mutex_unlock(&r->mu);
    *ok_ids = r->n ? malloc(r->n * sizeof(**ok_ids)) : NULL;
    *n_ok = 0;
    for (size_t i = 0; i < r->n && *ok_ids; i++)
        if (r->rows[i]->ok)
            (*ok_ids)[(*n_ok)++] = r->rows[i]->id;
    return all;
}

static void round_free(relay_round *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->rows[i]);
    free(r->rows);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

/* Publishes the rows a fetch hands to relay_one and marks the acknowledged ones published;
 * returns how many, or -1 when reading failed or some row was not delivered (that one goes
 * again with the next round; the others are not repeated). */
static int64_t relay_rows(of_db_pool *pool, of_bus *bus, int64_t grace_ms, const char *source,
                          char *err, size_t err_size)
{
    relay_round r;
    round_init(&r, bus);
    err[0] = '\0';
    int64_t got =
        source ? of_db_outbox_fetch_source(pool, source, relay_one, &r, err, err_size)
               : of_db_outbox_fetch_unpublished(pool, grace_ms, 500, relay_one, &r, err, err_size);
    int64_t *ok = NULL;
    size_t n_ok = 0;
    int all = round_wait(&r, &ok, &n_ok);
    if (n_ok && of_db_outbox_mark_published(pool, ok, n_ok, err, err_size) != 0)
        all = 0;
    for (size_t i = 0; i < r.n; i++) {
        relay_row *row = r.rows[i];
        if (!row->refused)
            continue;
        char perr[256] = "";
        if (of_db_outbox_park(pool, &row->id, 1, row->why, perr, sizeof(perr)) != 0) {
            of_log(OF_LVL_ERROR, NULL, NULL, "outbox relay: row %" PRId64 ": %s", row->id, perr);
            all = 0;
            continue;
        }
        /* Loud: an event a stage committed will never reach its topic without an operator. */
        of_log(OF_LVL_ERROR, NULL, NULL,
               "outbox relay: row %" PRId64 " for topic %s can never be delivered (%s); parked "
               "in of_outbox (parked_at, park_reason) for an operator, the others go on",
               row->id, row->topic, row->why);
    }
    if (got >= 0 && !all && !err[0])
        of_seterr(err, err_size, "%zu of %zu rows were not delivered", r.n - n_ok, r.n);
    int64_t published = got >= 0 && all ? (int64_t)n_ok : -1;
    free(ok);
    round_free(&r);
    return published;
}

int64_t of_outbox_relay_run_once(of_db_pool *pool, of_bus *bus, int64_t grace_ms)
{
    char err[256] = "";
    int64_t n = relay_rows(pool, bus, grace_ms, NULL, err, sizeof(err));
    if (n < 0)
        of_log(OF_LVL_DEBUG, NULL, NULL, "outbox relay: %s", err);
    else if (n > 0)
        of_log(OF_LVL_INFO, NULL, NULL,
               "outbox relay: published %" PRId64 " event%s a stopped host had left behind", n,
               n == 1 ? "" : "s");
    return n;
}

int64_t of_stage_tx_publish_pending(of_db_pool *pool, of_bus *bus, const char *group,
                                    const of_event *ev, char *why, size_t why_size)
{
    char id[256], source[512];
    of_stage_tx_event_id(ev, id, sizeof(id));
    snprintf(source, sizeof(source), "%s/%s", group, id);
    return relay_rows(pool, bus, 0, source, why, why_size);
}

struct of_outbox_relay {
    of_db_pool *pool;
    of_bus *bus;
    int64_t grace_ms, retention_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

#define RELAY_INTERVAL_MS   1000
#define CLEANUP_INTERVAL_MS (5 * 60 * 1000)

static void *relay_main(void *arg)
{
    of_outbox_relay *rl = arg;
    int64_t next_cleanup = of_mono_ms() + 10000;
    pthread_mutex_lock(&rl->mu);
    while (!rl->stop) {
        pthread_mutex_unlock(&rl->mu);
        of_outbox_relay_run_once(rl->pool, rl->bus, rl->grace_ms);
        if (of_mono_ms() >= next_cleanup) {
            char err[256];
            int64_t n = of_db_cleanup(rl->pool, rl->retention_ms, err, sizeof(err));
            if (n > 0)
                of_log(OF_LVL_INFO, NULL, NULL, "outbox relay: removed %" PRId64 " old rows", n);
            next_cleanup = of_mono_ms() + CLEANUP_INTERVAL_MS;
        }
        struct timespec until = of_mono_after_ms(RELAY_INTERVAL_MS);
        pthread_mutex_lock(&rl->mu);
        while (!rl->stop)
            if (pthread_cond_timedwait(&rl->cv, &rl->mu, &until) == ETIMEDOUT)
                break;
    }
    pthread_mutex_unlock(&rl->mu);
    return NULL;
}

of_outbox_relay *of_outbox_relay_start(of_db_pool *pool, of_bus *bus, int64_t grace_ms,
                                       int64_t retention_ms)
{
    of_outbox_relay *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    rl->pool = pool;
    rl->bus = bus;
    rl->grace_ms = grace_ms;
    rl->retention_ms = retention_ms;
    pthread_mutex_init(&rl->mu, NULL);
    of_cond_init_monotonic(&rl->cv);
    if (pthread_create(&rl->thread, NULL, relay_main, rl) != 0) {
        pthread_cond_destroy(&rl->cv);
        pthread_mutex_destroy(&rl->mu);
        free(rl);
        return NULL;
    }
    of_thread_name(rl->thread, "of-relay", NULL);
    return rl;
}

void of_outbox_relay_stop(of_outbox_relay *rl)
{
    if (!rl)
        return;
    pthread_mutex_lock(&rl->mu);
    rl->stop = 1;
    pthread_cond_broadcast(&rl->cv);
    pthread_mutex_unlock(&rl->mu);
    pthread_join(rl->thread, NULL);
    pthread_cond_destroy(&rl->cv);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

int of_stage_uses_db(const of_stage *st)
{
    return st && of_descriptor_uses_db(st->desc);
}

/* Publishes a call's emitted events and waits for every acknowledgement; 0 when all arrived. */
int of_stage_tx_publish_call(of_bus *bus, const of_call *call)
{
    relay_round r;
    round_init(&r, bus);
    int ok = 1;
    for (size_t i = 0; ok && i < call->n_emitted; i++)
        ok = relay_one(&r, (int64_t)i, call->emitted[i].topic, call->emitted[i].event) == 0;
    int64_t *ids = NULL;
    size_t n_ok = 0;
    int all = round_wait(&r, &ids, &n_ok);
    free(ids);
    round_free(&r);
    return ok && all && n_ok == call->n_emitted ? 0 : -1;
}
