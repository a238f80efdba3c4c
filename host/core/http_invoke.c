/* The gateway's invoke hook: a route handler runs in an of_call, for a stage with
 * OF_STAGE_DATABASE in a transaction whose outbox gets what the handler emits, and what it emitted
 * is published after the commit. Requests to a route with `batch:` share transactions
 * (http_group.c). */
#include "http_invoke.h"

#include "bus.h"
#include "cache.h"
#include "gateway.h"
#include "http_group.h"
#include "log.h"
#include "outbox_marker.h"
#include "plugin.h"
#include "timeutil.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void of_http_invoker_init(of_http_invoker *inv, of_db_pool *db, of_bus *bus,
                          struct of_outbox_marker *marker)
{
    memset(inv, 0, sizeof(*inv));
    inv->db = db;
    inv->bus = bus;
    inv->marker = marker;
    pthread_mutex_init(&inv->mu, NULL);
    pthread_cond_init(&inv->cv, NULL);
    inv->groups = of_http_groups_new();
}

size_t of_http_invoker_quiesce(of_http_invoker *inv, int64_t timeout_ms)
{
    struct timespec deadline = of_mono_after_ms(timeout_ms);
    pthread_mutex_lock(&inv->mu);
    while (inv->due > 0 && pthread_cond_timedwait(&inv->cv, &inv->mu, &deadline) != ETIMEDOUT)
        ;
    size_t left = inv->due;
    inv->detached = 1;
    pthread_mutex_unlock(&inv->mu);
    return left;
}

void of_http_invoker_destroy(of_http_invoker *inv)
{
    of_http_groups_free(inv->groups);
    inv->groups = NULL;
    pthread_cond_destroy(&inv->cv);
    pthread_mutex_destroy(&inv->mu);
}

/* The events of one answered request on their way to the broker. The count starts one above the
 * events, so that callbacks run inside produce() cannot finish it before every event was
 * handed over. */
typedef struct http_pub {
    of_http_invoker *inv;
    atomic_size_t left;
    atomic_int failed;
    size_t n;
    int64_t *ids;      /* the outbox rows, in the order of the events (owned) */
    unsigned char *ok; /* acknowledged */
} http_pub;

typedef struct http_pub_event {
    http_pub *pub;
    size_t i;
} http_pub_event;

static void http_pub_done(http_pub *p)
{
    if (atomic_fetch_sub(&p->left, 1) != 1)
        return;
    of_http_invoker *inv = p->inv;
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->ok[i])
            p->ids[k++] = p->ids[i];
    pthread_mutex_lock(&inv->mu);
    /* The marker never waits for the database, so it is called under the lock that keeps it
     * from being stopped meanwhile. */
    if (k && !inv->detached)
        of_outbox_marker_add(inv->marker, p->ids, k);
    inv->due--;
    pthread_cond_broadcast(&inv->cv);
    pthread_mutex_unlock(&inv->mu);
    free(p->ids);
    free(p->ok);
    free(p);
}

static void http_pub_delivered(void *opaque, int err, const char *errstr)
{
    http_pub_event *e = opaque;
    http_pub *p = e->pub;
    if (err == 0)
        p->ok[e->i] = 1;
    else if (atomic_fetch_add(&p->failed, 1) == 0)
        /* The row stays unmarked: the relay publishes it (or parks it when it never can go).
         * Once per request, as an outage fails them all. */
        of_log(OF_LVL_WARN, NULL, NULL,
               "publishing outbox row %" PRId64 " failed (%s); the outbox relay publishes it",
               p->ids[e->i], errstr ? errstr : "unknown");
    free(e);
    http_pub_done(p);
}

/* Hands a committed call's events to the bus and returns at once; takes ids (one per emitted
 * event). What cannot be handed over is left to the relay. */
static void publish_after_answer(of_http_invoker *inv, const of_call *call, int64_t *ids)
{
    size_t n = call->n_emitted;
    http_pub *p = calloc(1, sizeof(*p));
    unsigned char *ok = calloc(n, 1);
    if (!p || !ok) {
        free(p);
        free(ok);
        free(ids);
        of_log(OF_LVL_WARN, NULL, NULL, "out of memory publishing; the outbox relay publishes");
        return;
    }
    p->inv = inv;
    p->n = n;
    p->ids = ids;
    p->ok = ok;
    atomic_init(&p->left, n + 1);
    atomic_init(&p->failed, 0);
    pthread_mutex_lock(&inv->mu);
    inv->due++;
    pthread_mutex_unlock(&inv->mu);
    for (size_t i = 0; i < n; i++) {
        char err[256] = "";
        http_pub_event *e = malloc(sizeof(*e));
        int rc = -1;
        if (e) {
            *e = (http_pub_event){p, i};
            rc = inv->bus->ops->produce(inv->bus, call->emitted[i].topic, call->emitted[i].event,
                                        http_pub_delivered, e, err, sizeof(err));
        }
        if (rc != 0) {
            if (!e)
                snprintf(err, sizeof(err), "out of memory");
            free(e);
            if (atomic_fetch_add(&p->failed, 1) == 0)
                of_log(OF_LVL_WARN, NULL, NULL,
                       "producing to %s: %s; the outbox relay publishes it", call->emitted[i].topic,
                       err);
            http_pub_done(p);
        }
    }
    http_pub_done(p);
}

of_status of_http_invoker_settle(of_http_invoker *inv, of_stage *stage, of_call *call,
                                 of_http_request *req, int64_t *ids)
{
    int use_db = ids != NULL;
    /* Committed: the events are in the outbox. Publishing now keeps the latency low; if it
     * fails, the relay publishes them later, so the answer stands. */
    if (call->n_emitted && inv->bus && use_db && inv->marker) {
        publish_after_answer(inv, call, ids);
        return OF_OK;
    }
    if (call->n_emitted && inv->bus) {
        char why[512];
        if (of_stage_tx_publish_call(inv->bus, call) == 0) {
            if (use_db && inv->marker)
                of_outbox_marker_add(inv->marker, ids, call->n_emitted);
            else if (use_db && of_db_outbox_mark_published(inv->db, ids, call->n_emitted, why,
                                                           sizeof(why)) != 0)
                of_log(OF_LVL_WARN, stage->pipeline_name, stage->def->name,
                       "marking outbox rows published failed: %s", why);
        } else if (use_db) {
            of_log(OF_LVL_WARN, stage->pipeline_name, stage->def->name,
                   "publishing events failed; the outbox relay publishes them");
        } else {
            /* Without an outbox nothing would ever publish them: the request failed. */
            of_log(OF_LVL_WARN, stage->pipeline_name, stage->def->name,
                   "publishing events failed; answering 503");
            of_http_request_clear_response(req);
            of_api_http_problem(req, 503, "Service Unavailable",
                                "the request could not be completed; try again shortly");
            return OF_RETRY;
        }
    }
    free(ids);
    return OF_OK;
}

of_status of_http_invoke_alone(of_http_invoker *inv, of_stage *stage, of_http_handler fn,
                               of_http_request *req)
{
    of_call call;
    of_call_init(&call, stage, NULL, 1);
    call.trace_id = req && req->trace_id[0] ? req->trace_id : NULL;
    char why[512] = "";
    int use_db = inv->db && of_stage_uses_db(stage);
    if (use_db && of_stage_tx_open(inv->db, &call, NULL, why, sizeof(why)) != OF_TXR_OK) {
        of_call_reset(&call);
        of_log(OF_LVL_WARN, stage->pipeline_name, stage->def->name, "database: %s", why);
        of_api_http_problem(req, 503, "Service Unavailable",
                            "the database is unavailable; try again shortly");
        return OF_RETRY;
    }
    of_status s = fn(stage->instance, &call, req);
    if (s != OF_OK) {
        if (use_db)
            of_stage_tx_abort(&call);
        of_call_reset(&call);
        return s;
    }
    int64_t *ids = NULL;
    size_t n_ids = 0;
    if (use_db && of_stage_tx_commit(&call, &ids, &n_ids, why, sizeof(why)) != OF_TXR_OK) {
        /* Nothing was committed, so the handler's answer must not claim otherwise. */
        of_log(OF_LVL_WARN, stage->pipeline_name, stage->def->name, "database: %s", why);
        of_http_request_clear_response(req);
        of_api_http_problem(req, 503, "Service Unavailable",
                            "the request could not be stored; try again shortly");
        of_call_reset(&call);
        return OF_RETRY;
    }
    of_call_cache_apply(&call, 1);
    s = of_http_invoker_settle(inv, stage, &call, req, ids);
    of_call_reset(&call);
    return s;
}

of_status of_http_invoke(void *opaque, of_stage *stage, of_http_handler fn, of_http_request *req)
{
    of_http_invoker *inv = opaque;
    const of_route *route = req ? req->route : NULL;
    if (route && route->batch > 1 && inv->groups && inv->db && of_stage_uses_db(stage))
        return of_http_group_invoke(inv, stage, fn, req, (size_t)route->batch);
    return of_http_invoke_alone(inv, stage, fn, req);
}
