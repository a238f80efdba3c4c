/* What the host knows about a running stage and about one process() call: the definitions of
 * the SDK's opaque of_stage and of_call, shared by the runner (runner.c), the host function
 * table (hostapi.c) and the SDK test harness (through the runner). */
#ifndef OF_STAGE_RUNTIME_H
#define OF_STAGE_RUNTIME_H

#include <orderflow/stage.h>

#include "event.h"
#include "metrics.h"
#include "pipeline.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* The buckets (seconds) of stage_processing_seconds. */
#define OF_STAGE_LATENCY_N_BOUNDS 14
extern const double of_stage_latency_bounds[OF_STAGE_LATENCY_N_BOUNDS];
/* The phases of a database stage's batched round, in order (the label values of
 * stage_round_seconds: of_round_phase_names). */
enum { OF_ROUND_RECORD, OF_ROUND_PROCESS, OF_ROUND_OUTBOX, OF_ROUND_COMMIT, OF_ROUND_PUBLISH };
extern const char *const of_round_phase_names[5];

/* set_reason keeps at most this many bytes (NUL included). */
#define OF_REASON_MAX 1024

struct of_runner;
struct of_stage_rt; /* the runner's threads and offsets for a stage (runner.c) */

typedef struct of_stage_counters {
    _Atomic uint64_t received;      /* events handed to the stage */
    _Atomic uint64_t processed_ok;  /* inputs finished with OF_OK and every output delivered */
    _Atomic uint64_t emitted;       /* events published on outputs */
    _Atomic uint64_t retried;       /* tries after the first (RETRY or failed delivery) */
    _Atomic uint64_t rejected;      /* OF_REJECT results */
    _Atomic uint64_t dead_lettered; /* inputs sent to the dead-letter topic */
    _Atomic uint64_t in_flight;     /* dispatched and not finished */
    _Atomic uint64_t abandoned;     /* given up uncommitted when a drain timed out */
    _Atomic uint64_t skipped;       /* acknowledged unseen: a type the stage does not accept */
} of_stage_counters;

/* The SDK's opaque of_stage. */
struct of_stage {
    const char *pipeline_name;       /* borrowed from the pipeline */
    const of_stage_def *def;         /* borrowed; name, outputs, retry, ... */
    const of_stage_descriptor *desc; /* the plugin's descriptor */
    void *instance;                  /* what init returned */
    int initialized;                 /* init succeeded, shutdown not yet called */
    of_metrics *metrics;             /* borrowed; NULL: custom metrics unavailable */
    struct of_runner *runner;        /* back-pointer; NULL outside a runner (unit tests) */
    struct of_stage_rt *rt;          /* runner-private */
    char *ce_source;                 /* "orderflow/<pipeline>/<stage>", owned */
    char *dead_letter;               /* resolved dead-letter topic, owned */
    of_stage_counters stats;
    _Atomic int breaker_state; /* of_breaker_state, for stats and readiness */
    /* The stats above, also registered in the metric registry (NULL without one). */
    struct of_counter *m_received, *m_processed_ok, *m_emitted, *m_retried, *m_rejected,
        *m_dead_lettered, *m_abandoned, *m_skipped;
    struct of_histogram *m_latency; /* stage_processing_seconds */
    /* stage_transaction_events: events per committed transaction (a database stage's batches);
     * NULL for a stage without the database. */
    struct of_histogram *m_tx_events;
    /* stage_round_seconds{phase}: where a committed round of two or more events spends its time
     * (OF_ROUND_*); NULLs for a stage without the database. */
    struct of_histogram *m_round[5];
    /* The host's Redis pool for the cache_* functions (cache.h); borrowed, NULL when the host
     * has no `redis:` section (every cache call then fails with -1). */
    struct of_cache_pool *cache;
    /* The HTTP handlers and authenticator the stage registered in init (gateway.h); owned,
     * NULL when none; freed by of_stage_http_free. */
    struct of_stage_http *http;
    /* The WebSocket hub for ws_publish (ws_hub.h); borrowed, NULL when the host runs no gateway
     * (ws_publish then fails with -1). */
    struct of_ws_hub *ws_hub;
};

/* One event a process() call emitted, buffered until the call returns OF_OK. */
typedef struct of_emitted {
    const char *output; /* the output name, borrowed from the stage definition */
    const char *topic;  /* the topic it maps to, borrowed from the stage definition */
    of_event *event;    /* owned; key, payload and headers (inherited ones included) */
} of_emitted;

/* The SDK's opaque of_call. */
struct of_call {
    of_stage *stage;
    const of_event *input;
    int attempt; /* 1 on the first try */
    of_emitted *emitted;
    size_t n_emitted, cap_emitted;
    int has_reason;
    char reason[OF_REASON_MAX];
    /* The database transaction the db_* functions of the host table work in (db.h); NULL
     * without a database or for a stage without OF_STAGE_DATABASE. Owned by the runner. */
    struct of_db_tx *tx;
    const char *tx_group; /* the consumer group the transaction records the input under */
    /* cache_set_after_commit's writes (ABI 1.4), owned; made by of_call_cache_apply after the
     * commit, dropped by of_call_reset. */
    struct of_cache_write *cache_writes;
    size_t n_cache_writes, cap_cache_writes;
    /* An HTTP handler's call: its request's trace id (borrowed from the request), which what it
     * emits continues; NULL for an event's call. Not the thread's log context: in a group commit
     * one thread runs the handlers of several requests (http_group.h). */
    const char *trace_id;
};

/* 1 when the stage asks for the database (of_descriptor_uses_db, plugin.h). */
int of_stage_uses_db(const of_stage *st);

/* The host function table (one static table; size = sizeof(of_host_api)). */
const of_host_api *of_host_api_get(void);

/* Fills the identity of a stage (pipeline name, definition, descriptor, ce_source, dead-letter
 * topic) and registers its stat counters when metrics is not NULL. 0 or -1 (no memory). */
int of_stage_setup(of_stage *st, const char *pipeline_name, const of_stage_def *def,
                   const of_stage_descriptor *desc, of_metrics *metrics);
/* Frees what of_stage_setup allocated (not the stage itself). */
void of_stage_cleanup(of_stage *st);
/* The topic an output is mapped to in the stage definition, NULL when unmapped. */
const char *of_stage_output_topic(const of_stage *st, const char *output);

/* Prepares a call for one try of an event. */
void of_call_init(of_call *call, of_stage *st, const of_event *input, int attempt);
/* Frees the buffered emitted events and clears the reason (the call can be reused). */
void of_call_reset(of_call *call);
/* The reason set_reason recorded, or NULL. */
const char *of_call_reason(const of_call *call);

/* Helpers shared with the runner. */
void of_rfc3339_now(char *buf, size_t size); /* "2024-05-01T12:00:00.123Z" */
/* Adds to an emitted event, each unless the stage set a header of that name: the input's
 * tracestate and ce_* extension headers; a traceparent continuing the input's trace with a new
 * span (a new trace when the input has none or a malformed one); ce_type
 * "<pipeline>.<stage>.<output>"; a ce_id derived from the input's id, this stage and the
 * emit's index (the same on every redelivery, so the next stage's inbox sees the repeat), with
 * the input's time prefix when its id is a UUID; a new version 7 UUID without an input (uuid.h);
 * this stage's ce_source; ce_time now;
 * ce_specversion 1.0; content-type application/json. Without an input (an HTTP handler's emit)
 * the traceparent continues trace_id (the request's, 32 hex digits), else the log context's. */
int of_add_inherited_headers(of_event *ev, const of_event *input, const char *trace_id,
                             const of_stage *st, const char *output, size_t index);

#endif
