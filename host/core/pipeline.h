/* Pipeline files: the model, and the one validation path shared by `orderflow lint`,
 * `orderflow test` and `orderflowd` (which refuses to start on any error). */
#ifndef OF_PIPELINE_H
#define OF_PIPELINE_H

#include "breaker.h"
#include "diag.h"
#include "options.h"
#include "plugin.h"
#include "yamltree.h"

#include <stdint.h>

typedef struct of_topic_def {
    char *name;
    int partitions;  /* default 3 */
    int replication; /* default 1 */
    int external;    /* produced outside the pipeline (HTTP intake, another pipeline) */
    int line, column;
} of_topic_def;

typedef struct of_retry_policy {
    int max_attempts;           /* total tries including the first; default 5, 1..1000 */
    int64_t initial_backoff_ms; /* default 100ms */
    int64_t max_backoff_ms;     /* default 30s */
    double multiplier;          /* default 2.0, >= 1 */
    double jitter;              /* default 0.2, 0..1: +/- fraction of the delay */
} of_retry_policy;

typedef struct of_output_map {
    char *output; /* the plugin's output name */
    char *topic;  /* the topic it goes to */
} of_output_map;

typedef struct of_stage_def {
    char *name;
    char *plugin_name;
    const of_plugin *plugin; /* resolved in the registry; NULL if not found (an error) */
    char **inputs;
    size_t n_inputs;
    int inputs_given; /* `inputs:` was written (a stage without it only serves routes) */
    of_output_map *outputs;
    size_t n_outputs;
    int concurrency;   /* worker threads; default 1, 1..256 */
    int max_in_flight; /* events dispatched but not finished; default 1000 */
    /* A database stage's worker takes up to this many queued events into one transaction (one
     * commit, one round of publishing); default 1, 1..1000. */
    int batch;
    char *consumer_group; /* default orderflow.<pipeline>.<stage> */
    char *dead_letter;    /* default <first input>.dlq */
    of_retry_policy retry;
    of_breaker_policy breaker; /* breaker: (breaker.h); enabled with the defaults when absent */
    of_config *config;         /* validated against the plugin's table; NULL if invalid */
    int line, column;
} of_stage_def;

typedef struct of_test_header {
    char *name;
    char *value;
} of_test_header;

/* A declared test: events into a topic, events expected on topics. The YAML schema:
 *
 *   tests:
 *     - name: routes urgent messages      # required, unique in the file
 *       input:                            # one block {topic, events} ...
 *         topic: messages                 #   required, a declared (or implied dead-letter) topic
 *         events:                         #   required, non-empty
 *           - key: m-1                    #   optional: keyless when absent or null
 *             value: {text: urgent}       #   mapping/sequence: compact JSON, key order kept
 *             headers: {source: web}      #   optional name -> string
 *       inputs: [{topic, events}, ...]    # ... or several blocks (exactly one of input/inputs)
 *       expect:                           # optional list of {topic, events} blocks
 *         - topic: messages.urgent
 *           events: [{key: m-1, value: {text: urgent}}]
 *       expect_empty: [messages.dlq]      # optional list of topics that must get nothing
 *
 * The blocks are flattened: `inputs` and `expect` hold every event of every block in file order,
 * each with its block's topic. A scalar value is kept as written (value_is_json is 1 when it
 * parses as a JSON object or array); an input event without value has an empty payload; an
 * expected event without value has value NULL (any payload matches). */
typedef struct of_test_event {
    char *topic;
    char *key;   /* NULL: keyless */
    char *value; /* payload text: JSON text when written as YAML mapping/sequence */
    int value_is_json;
    of_test_header *headers;
    size_t n_headers;
    int line, column;
} of_test_event;

typedef struct of_test_def {
    char *name;
    of_test_event *inputs;
    size_t n_inputs;
    of_test_event *expect; /* expected events, per topic in this order */
    size_t n_expect;
    char **expect_empty; /* topics that must receive nothing */
    size_t n_expect_empty;
    int line, column;
} of_test_def;

typedef struct of_pipeline {
    char *file;
    char *name;
    char *description;
    of_topic_def *topics; /* declared topics plus implied dead-letter topics */
    size_t n_topics;
    of_stage_def *stages;
    size_t n_stages;
    of_test_def *tests;
    size_t n_tests;
    struct of_route *routes; /* the HTTP routes (gateway.h), in file order */
    size_t n_routes;
} of_pipeline;

/* Loads and validates a pipeline file. Every problem goes to diag; returns the pipeline when it
 * has no errors (warnings allowed), NULL otherwise. `registry` resolves plugins and validates
 * each stage's config: against its option table; a NULL registry skips those checks (used only
 * by unit tests of the YAML layer). */
of_pipeline *of_pipeline_load(const char *path, const of_plugin_registry *registry, of_diag *diag);
/* The same from an already parsed document (the caller keeps the document). */
of_pipeline *of_pipeline_from_ydoc(const of_ydoc *doc, const of_plugin_registry *registry,
                                   of_diag *diag);
void of_pipeline_free(of_pipeline *p);

const of_topic_def *of_pipeline_topic(const of_pipeline *p, const char *name);

/* 1 when two definitions of a stage (from two loads of the configuration) would run the same
 * way: name, plugin (the same loaded descriptor), inputs, outputs, concurrency, in-flight
 * bound, consumer group, dead-letter topic, retry, breaker and every config value. A hot reload
 * restarts a stage only when this is 0 (pipeline_diff.c). */
int of_stage_def_equal(const of_stage_def *a, const of_stage_def *b);

#endif
