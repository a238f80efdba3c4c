/* The stage runner: runs the stages of pipelines on a bus. Per stage, one consumer thread reads
 * the input topics as the stage's consumer group and hands each event to one of `concurrency`
 * worker threads chosen by the event key's hash, so one key's events are processed in order.
 * A worker calls process(), retries RETRY in place with the stage's backoff, sends REJECT (or
 * retries exhausted) to the dead-letter topic with headers saying why, publishes what an OK
 * emitted on the mapped topics, and marks the input done once every publication is
 * acknowledged. Offsets are committed per partition up to the lowest event not yet done:
 * at-least-once, never at-most-once. When a stage's in-flight events reach max_in_flight, its
 * consumer is paused. */
#ifndef OF_RUNNER_H
#define OF_RUNNER_H

#include <jansson.h>
#include "bus.h"
#include "metrics.h"
#include "pipeline.h"

#include <stddef.h>
#include <stdint.h>

typedef struct of_runner of_runner;

/* The dead-letter headers (OF_DLQ_H_*) are part of the SDK: orderflow/stage.h. */

/* The runner borrows bus and metrics; both must outlive it. */
of_runner *of_runner_new(of_bus *bus, of_metrics *metrics);
struct of_db_pool;
/* The database for stages with OF_STAGE_DATABASE (borrowed; before add_pipeline). Their tries
 * run in transactions with inbox and outbox (stage_tx.h); without it such stages are refused. */
void of_runner_set_db(of_runner *r, struct of_db_pool *db);
struct of_outbox_marker;
/* Marks the outbox rows of acknowledged events published in batches (outbox_marker.h; borrowed;
 * before start; NULL: each event's rows are marked in a transaction of their own). */
void of_runner_set_outbox_marker(of_runner *r, struct of_outbox_marker *marker);
struct of_cache_pool;
/* Redis for the stages' cache_* functions (borrowed; before add_pipeline; NULL: none). */
struct of_ws_hub;
void of_runner_set_cache(of_runner *r, struct of_cache_pool *cache);
/* The WebSocket hub the stages' ws_publish goes to (borrowed; before add_pipeline). */
void of_runner_set_ws_hub(of_runner *r, struct of_ws_hub *hub);
/* Creates the pipeline's topics on the bus and initialises every stage (in file order). On
 * failure the stages already initialised are shut down in reverse order, nothing of this
 * pipeline remains, and errstr names the stage and the plugin's reason. The pipeline must
 * outlive the runner. */
int of_runner_add_pipeline(of_runner *r, const of_pipeline *p, char *errstr, size_t errstr_size);

/* ---- hot reload: stages come and go while the others run ---- */
/* Creates p's topics and sets up and initialises the stages whose index i has want[i] != 0
 * (want NULL: every stage), without starting them: *out (n_out of them) is for
 * of_runner_adopt, or of_runner_discard when the reload is given up. The pipeline must outlive
 * the stages. 0, or -1 with errstr (nothing left initialised). */
int of_runner_prepare(of_runner *r, const of_pipeline *p, const unsigned char *want,
                      of_stage ***out, size_t *n_out, char *errstr, size_t errstr_size);
/* Shuts down and frees prepared stages that will not run, and the array. */
void of_runner_discard(of_stage **stages, size_t n);
/* Takes prepared stages (and the array); when the runner runs, starts them at once (their
 * consumers join their groups). 0, or -1 with errstr: every stage of the call is then
 * stopped and freed again. */
int of_runner_adopt(of_runner *r, of_stage **stages, size_t n, char *errstr, size_t errstr_size);
/* Takes one stage out of a running runner: its consumer stops reading, the events in flight
 * finish (for up to timeout_ms; the rest is left uncommitted for redelivery), the consumer
 * closes and commits, leaving its group at once, and the plugin's shutdown runs. The stage is
 * freed. Returns the events abandoned. */
size_t of_runner_retire(of_runner *r, struct of_stage *st, int64_t timeout_ms);

/* Every stage's counters, in-flight events and breaker state, as a JSON array of objects
 * (pipeline, stage, plugin, received, processed, emitted, retried, rejected, dead_lettered,
 * in_flight, breaker); the caller owns it. For the dashboard. */
json_t *of_runner_stats_json(of_runner *r);
/* Starts the consumer and worker threads of every added stage. */
int of_runner_start(of_runner *r, char *errstr, size_t errstr_size);
/* Stops taking new events, lets every dispatched event finish (retries included) up to
 * timeout_ms, commits, calls each stage's shutdown in reverse order and joins the threads.
 * Returns the number of events abandoned uncommitted (0 on a clean drain). */
size_t of_runner_drain(of_runner *r, int64_t timeout_ms);
void of_runner_free(of_runner *r); /* drains with a zero timeout if still running */

/* The initialised stages, pipelines in the order added, stages in file order (for the gateway,
 * which calls their route handlers). Owned by the runner. */
size_t of_runner_stage_count(const of_runner *r);
struct of_stage *of_runner_stage_at(of_runner *r, size_t i);

/* Per-stage counts, for tests and later for /metrics. */
typedef struct of_stage_stats {
    uint64_t received, processed_ok, emitted, retried, rejected, dead_lettered, in_flight, skipped;
    int breaker_state; /* of_breaker_state: 0 closed, 1 open, 2 half-open */
} of_stage_stats;
int of_runner_stage_stats(of_runner *r, const char *pipeline, const char *stage,
                          of_stage_stats *out);

/* Computes the delay before try number `attempt` (2 = first retry): initial * multiplier^(n-2)
 * capped at max, then +/- jitter fraction using `rnd` in [0,1). */
int64_t of_backoff_delay_ms(const of_retry_policy *p, int attempt, double rnd);

/* Per-thread xorshift random numbers (seeded from the clock and the thread): jitter, ids. */
uint64_t of_rand_u64(void);
double of_rand_unit(void); /* [0,1) */

#endif
