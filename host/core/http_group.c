/* Group commit for HTTP routes with `batch:`: the queues, who leads, and one group's rounds
 * (http_group.h). */
#include "http_group.h"

#include "cache.h"
#include "db.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "stage_runtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A request waiting in its route's queue; on its thread's stack. */
typedef struct waiter {
    of_stage *stage;
    of_http_handler fn;
    of_http_request *req;
    of_status status;
    int done; /* answered: status and req's answer are final */
    pthread_cond_t cv;
    struct waiter *next;
} waiter;

/* One route's queue: requests for the same stage and handler. */
typedef struct group {
    const of_stage *stage;
    of_http_handler fn;
    waiter *head, *tail;
    /* The open transactions, one bit each, and the connection each slot used last: a slot's
     * groups go back to it, so the route's statements stay prepared on a few connections. */
    unsigned slots_busy;
    of_db_affinity slot[OF_HTTP_GROUP_TRANSACTIONS];
    struct group *next;
} group;

struct of_http_groups {
    /* One lock for every queue: what it guards is a few pointer moves, never a statement. */
    pthread_mutex_t mu;
    group *list;
};

of_http_groups *of_http_groups_new(void)
{
    of_http_groups *gs = calloc(1, sizeof(*gs));
    if (gs)
        pthread_mutex_init(&gs->mu, NULL);
    return gs;
}

void of_http_groups_free(of_http_groups *gs)
{
    if (!gs)
        return;
    while (gs->list) {
        group *g = gs->list;
        gs->list = g->next;
        free(g);
    }
    pthread_mutex_destroy(&gs->mu);
    free(gs);
}

/* The queue of stage's fn; under gs->mu. A stage of a reloaded pipeline gets a queue of its own
 * (the old one, idle, stays: a few bytes per reload). NULL when out of memory. */
static group *group_of(of_http_groups *gs, const of_stage *stage, of_http_handler fn)
{
    for (group *g = gs->list; g; g = g->next)
        if (g->stage == stage && g->fn == fn)
            return g;
    group *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->stage = stage;
    g->fn = fn;
    g->next = gs->list;
    gs->list = g;
    return g;
}

_Static_assert(OF_HTTP_GROUP_TRANSACTIONS <= 8 * sizeof(unsigned), "one bit per transaction");

static int open_transactions(const group *g)
{
    return __builtin_popcount(g->slots_busy);
}

/* Takes up to max waiters from the front of g's queue into out; under gs->mu. */
static size_t take(group *g, waiter **out, size_t max)
{
    size_t n = 0;
    while (g->head && n < max) {
        out[n++] = g->head;
        g->head = g->head->next;
    }
    if (!g->head)
        g->tail = NULL;
    return n;
}

/* The arrays of one group's rounds. */
typedef struct round_bufs {
    of_call *calls;
    of_call **ptrs;
    of_http_request **reqs;
    of_status *status;
    unsigned char *ran;
    int64_t **ids;
} round_bufs;

static void bufs_free(round_bufs *b)
{
    free(b->calls);
    free(b->ptrs);
    free(b->reqs);
    free(b->status);
    free(b->ran);
    free(b->ids);
}

static int bufs_alloc(round_bufs *b, size_t n)
{
    b->calls = calloc(n, sizeof(*b->calls));
    b->ptrs = calloc(n, sizeof(*b->ptrs));
    b->reqs = calloc(n, sizeof(*b->reqs));
    b->status = calloc(n, sizeof(*b->status));
    b->ran = calloc(n, sizeof(*b->ran));
    b->ids = calloc(n, sizeof(*b->ids));
    if (b->calls && b->ptrs && b->reqs && b->status && b->ran && b->ids)
        return 0;
    bufs_free(b);
    return -1;
}

/* Requests per committed transaction of a batched route (operations guide, metrics). */
static void observe_size(const of_stage *stage, const of_route *route, size_t n)
{
    static const double bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    if (!stage->metrics)
        return;
    const char *method = of_http_method_name(route->method);
    of_histogram_observe_(
        of_metrics_histogram_l(
            stage->metrics, "http_transaction_requests",
            "Requests per committed transaction of a route with batch:", stage->pipeline_name,
            stage->def ? stage->def->name : NULL,
            (const char *const[]){"route", route->path, "method", method ? method : "other", NULL},
            bounds, sizeof(bounds) / sizeof(bounds[0])),
        (double)n);
}

/* Commits a round in which every request went through: the outbox rows of all of them, one
 * commit, then each request's cache writes and events. 0 when committed (every waiter's status
 * set); 1 when the outbox could not be written (nothing committed: the caller runs them alone);
 * when the commit fails they are answered 503, as a lone request would be. */
static int commit_round(of_http_invoker *inv, of_db_tx *tx, waiter **cur, size_t m, round_bufs *b)
{
    of_stage *stage = cur[0]->stage;
    char why[512];
    if (of_stage_tx_write_outbox_calls(b->calls, m, b->ids, why, sizeof(why)) != OF_TXR_OK) {
        of_log(OF_LVL_WARN, stage->pipeline_name, stage->def->name,
               "a group of %zu requests: %s; each runs alone", m, why);
        return 1;
    }
    if (of_db_tx_commit(tx) != 0) {
        const char *msg = NULL;
        of_db_tx_error(tx, &msg);
        /* The commit's outcome is unknown when the connection went: a request run again could
         * be stored twice, so they are answered as a lone request whose commit failed. */
        of_log(OF_LVL_WARN, stage->pipeline_name, stage->def->name,
               "database: committing a group of %zu requests: %s", m, msg ? msg : "failed");
        for (size_t i = 0; i < m; i++) {
            free(b->ids[i]);
            b->ids[i] = NULL;
            of_http_request_clear_response(b->reqs[i]);
            of_api_http_problem(b->reqs[i], 503, "Service Unavailable",
                                "the request could not be stored; try again shortly");
            cur[i]->status = OF_RETRY;
        }
        return 0;
    }
    observe_size(stage, b->reqs[0]->route, m);
    /* The group's cache writes in one pipelined round trip, not one each: the requests are
     * answered only after all of them. */
    of_call_cache_apply(b->calls, m);
    for (size_t i = 0; i < m; i++) {
        b->calls[i].tx = NULL;
        cur[i]->status = of_http_invoker_settle(inv, stage, &b->calls[i], b->reqs[i], b->ids[i]);
        b->ids[i] = NULL;
    }
    return 0;
}

/* The leading thread logs a handler's lines under the trace of the request it runs (the gateway
 * set the thread's log context to its own request's, own); a batch handler's lines carry the
 * leading request's trace, as it works for several at once. */
static const char *own_trace(char out[33])
{
    const char *t = of_log_context_trace_id();
    snprintf(out, 33, "%s", t ? t : "");
    return out[0] ? out : NULL;
}

static void log_as(const of_http_request *req, const char *own)
{
    of_log_context_set(req->trace_id[0] ? req->trace_id : own, NULL, 0);
}

/* Moves cur[0..*m) to the end of alone, their answers dropped: each runs alone. */
static void all_alone(waiter **cur, size_t *m, waiter **alone, size_t *n_alone)
{
    for (size_t i = 0; i < *m; i++) {
        of_http_request_clear_response(cur[i]->req);
        alone[(*n_alone)++] = cur[i];
    }
    *m = 0;
}

/* Runs the waiters w[0..n) (n >= 2) in shared transactions until each has its answer. Each
 * round runs the requests still together; when one does not go through, the round rolls back
 * and the next runs without it (see of_http_batch_handler). Those that must go alone run last,
 * each in its own transaction. */
static void run_group(of_http_invoker *inv, waiter **w, size_t n, const char *own)
{
    of_stage *stage = w[0]->stage;
    of_http_handler fn = w[0]->fn;
    const of_route *route = w[0]->req->route;
    of_http_batch_handler bfn = of_stage_http_find_batch(stage, route->handler_name);
    round_bufs b = {0};
    waiter *cur[OF_ROUTE_BATCH_MAX], *alone[OF_ROUTE_BATCH_MAX];
    size_t m = 0, n_alone = 0;
    if (bufs_alloc(&b, n) != 0) {
        memcpy(alone, w, n * sizeof(*w));
        n_alone = n;
    } else {
        memcpy(cur, w, n * sizeof(*w));
        m = n;
    }
    while (m > 1) {
        char why[512];
        of_db_tx *tx = of_db_tx_begin(inv->db, why, sizeof(why));
        if (!tx) {
            /* The database is away: each answers for itself (a 503 when it still is). */
            all_alone(cur, &m, alone, &n_alone);
            break;
        }
        for (size_t i = 0; i < m; i++) {
            of_call_init(&b.calls[i], stage, NULL, 1);
            b.calls[i].trace_id = cur[i]->req->trace_id[0] ? cur[i]->req->trace_id : NULL;
            b.calls[i].tx = tx;
            b.ptrs[i] = &b.calls[i];
            b.reqs[i] = cur[i]->req;
            b.status[i] = OF_RETRY;
            b.ran[i] = bfn != NULL;
            b.ids[i] = NULL;
        }
        if (bfn) {
            bfn(stage->instance, b.ptrs, b.reqs, m, b.status);
        } else {
            /* One after the other: after one that does not go through the round rolls back,
             * so the rest wait for the next. */
            for (size_t i = 0; i < m; i++) {
                b.ran[i] = 1;
                log_as(b.reqs[i], own);
                b.status[i] = fn(stage->instance, &b.calls[i], b.reqs[i]);
                if (b.status[i] != OF_OK)
                    break;
            }
            of_log_context_set(own, NULL, 0);
        }
        int doomed = of_db_tx_doomed(tx);
        /* Every set-based statement is the whole group's: when the last one failed, no request
         * can be blamed for it (a handler run alone owns its statements). */
        int shared_failure = bfn && of_db_tx_error(tx, NULL) != OF_DB_OK;
        int all_ok = !doomed;
        for (size_t i = 0; all_ok && i < m; i++)
            all_ok = b.ran[i] && b.status[i] == OF_OK;
        if (of_log_enabled(OF_LVL_DEBUG))
            of_log(OF_LVL_DEBUG, stage->pipeline_name, stage->def->name,
                   "a group of %zu requests to %s %s in one transaction%s", m,
                   of_http_method_name(route->method), route->path,
                   all_ok ? "" : ": not all went through");
        if (all_ok) {
            int rc = commit_round(inv, tx, cur, m, &b);
            of_db_tx_end(tx);
            for (size_t i = 0; i < m; i++) {
                b.calls[i].tx = NULL;
                of_call_reset(&b.calls[i]);
                free(b.ids[i]);
                b.ids[i] = NULL;
            }
            if (rc == 0)
                m = 0;
            else
                all_alone(cur, &m, alone, &n_alone);
            break;
        }
        of_db_tx_end(tx); /* rolls back */
        size_t kept = 0;
        for (size_t i = 0; i < m; i++) {
            waiter *x = cur[i];
            b.calls[i].tx = NULL;
            of_call_reset(&b.calls[i]);
            if (!doomed && (!b.ran[i] || b.status[i] == OF_OK)) {
                of_http_request_clear_response(x->req);
                cur[kept++] = x;
            } else if (!doomed && !shared_failure && x->req->answered) {
                x->status = b.status[i]; /* its answer stands: it did not commit */
            } else {
                of_http_request_clear_response(x->req);
                alone[n_alone++] = x;
            }
        }
        m = kept;
    }
    if (m == 1)
        alone[n_alone++] = cur[0];
    for (size_t i = 0; i < n_alone; i++) {
        log_as(alone[i]->req, own);
        alone[i]->status = of_http_invoke_alone(inv, stage, fn, alone[i]->req);
    }
    of_log_context_set(own, NULL, 0);
    bufs_free(&b);
}

void of_http_group_run(of_http_invoker *inv, of_stage *stage, of_http_handler fn,
                       of_http_request *const *reqs, size_t n, of_status *status)
{
    waiter ws[OF_ROUTE_BATCH_MAX], *w[OF_ROUTE_BATCH_MAX];
    char buf[33];
    const char *own = own_trace(buf);
    for (size_t done = 0; done < n;) {
        size_t k = n - done < OF_ROUTE_BATCH_MAX ? n - done : OF_ROUTE_BATCH_MAX;
        for (size_t i = 0; i < k; i++) {
            ws[i] = (waiter){.stage = stage, .fn = fn, .req = reqs[done + i], .status = OF_RETRY};
            w[i] = &ws[i];
        }
        if (k == 1)
            ws[0].status = of_http_invoke_alone(inv, stage, fn, ws[0].req);
        else
            run_group(inv, w, k, own);
        for (size_t i = 0; i < k; i++)
            status[done + i] = ws[i].status;
        done += k;
    }
}

size_t of_http_groups_queued(of_http_groups *gs)
{
    size_t n = 0;
    pthread_mutex_lock(&gs->mu);
    for (const group *g = gs->list; g; g = g->next)
        for (const waiter *w = g->head; w; w = w->next)
            n++;
    pthread_mutex_unlock(&gs->mu);
    return n;
}

of_status of_http_group_invoke(of_http_invoker *inv, of_stage *stage, of_http_handler fn,
                               of_http_request *req, size_t max)
{
    of_http_groups *gs = inv->groups;
    if (max > OF_ROUTE_BATCH_MAX)
        max = OF_ROUTE_BATCH_MAX;
    waiter me = {.stage = stage, .fn = fn, .req = req, .status = OF_RETRY};
    pthread_cond_init(&me.cv, NULL);
    pthread_mutex_lock(&gs->mu);
    group *g = group_of(gs, stage, fn);
    if (!g) {
        pthread_mutex_unlock(&gs->mu);
        pthread_cond_destroy(&me.cv);
        return of_http_invoke_alone(inv, stage, fn, req);
    }
    if (g->tail)
        g->tail->next = &me;
    else
        g->head = &me;
    g->tail = &me;
    while (!me.done) {
        if (open_transactions(g) >= OF_HTTP_GROUP_TRANSACTIONS || !g->head) {
            pthread_cond_wait(&me.cv, &gs->mu);
            continue;
        }
        waiter *batch[OF_ROUTE_BATCH_MAX];
        size_t n = take(g, batch, max);
        int s = 0;
        while (g->slots_busy & (1u << s))
            s++;
        g->slots_busy |= 1u << s;
        of_db_affinity own_conn = of_db_affinity_swap(g->slot[s]);
        /* More are queued than this group takes and a transaction is free: one of them leads. */
        if (g->head && open_transactions(g) < OF_HTTP_GROUP_TRANSACTIONS)
            pthread_cond_signal(&g->head->cv);
        pthread_mutex_unlock(&gs->mu);
        char buf[33];
        const char *own = own_trace(buf);
        if (n == 1) {
            log_as(batch[0]->req, own);
            batch[0]->status = of_http_invoke_alone(inv, stage, fn, batch[0]->req);
            of_log_context_set(own, NULL, 0);
            if (batch[0]->status == OF_OK)
                observe_size(stage, batch[0]->req->route, 1);
        } else {
            run_group(inv, batch, n, own);
        }
        pthread_mutex_lock(&gs->mu);
        g->slot[s] = of_db_affinity_swap(own_conn);
        g->slots_busy &= ~(1u << s);
        for (size_t i = 0; i < n; i++) {
            batch[i]->done = 1;
            if (batch[i] != &me)
                pthread_cond_signal(&batch[i]->cv);
        }
        /* The requests that queued meanwhile go next, led by the first of them. */
        if (g->head)
            pthread_cond_signal(&g->head->cv);
    }
    pthread_mutex_unlock(&gs->mu);
    pthread_cond_destroy(&me.cv);
    return me.status;
}
