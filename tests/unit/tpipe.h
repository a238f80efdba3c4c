/* Pipelines built by hand for runner and bus tests (no YAML): topics, stages with descriptors
 * defined in the test, output maps. Include after cmocka.h. */
#ifndef OF_TEST_TPIPE_H
#define OF_TEST_TPIPE_H

#include "pipeline.h"

#include <string.h>

#define MAX_TOPICS 8
#define MAX_STAGES 4
#define MAX_MAPS   4

typedef struct tpipe {
    of_pipeline p;
    of_topic_def topics[MAX_TOPICS];
    of_stage_def stages[MAX_STAGES];
    of_plugin plugins[MAX_STAGES];
    of_output_map maps[MAX_STAGES][MAX_MAPS];
    char *inputs[MAX_STAGES][2];
} tpipe;

static void tp_init(tpipe *t, const char *name)
{
    memset(t, 0, sizeof(*t));
    t->p.name = (char *)name;
    t->p.file = (char *)"<test>";
    t->p.topics = t->topics;
    t->p.stages = t->stages;
}

static void tp_topic(tpipe *t, const char *name, int partitions)
{
    assert_true(t->p.n_topics < MAX_TOPICS);
    of_topic_def *d = &t->topics[t->p.n_topics++];
    d->name = (char *)name;
    d->partitions = partitions;
    d->replication = 1;
}

static of_stage_def *tp_stage(tpipe *t, const char *name, const of_stage_descriptor *desc,
                              const char *input, const char *dead_letter)
{
    assert_true(t->p.n_stages < MAX_STAGES);
    size_t i = t->p.n_stages++;
    of_stage_def *d = &t->stages[i];
    t->plugins[i].name = (char *)desc->name;
    t->plugins[i].desc = desc;
    d->name = (char *)name;
    d->plugin_name = (char *)desc->name;
    d->plugin = &t->plugins[i];
    t->inputs[i][0] = (char *)input;
    d->inputs = t->inputs[i];
    d->n_inputs = 1;
    d->outputs = t->maps[i];
    d->concurrency = 1;
    d->max_in_flight = 1000;
    d->dead_letter = (char *)dead_letter;
    d->retry.max_attempts = 3;
    d->retry.initial_backoff_ms = 1;
    d->retry.max_backoff_ms = 2;
    d->retry.multiplier = 2.0;
    d->retry.jitter = 0.2;
    return d;
}

static void tp_map(of_stage_def *d, const char *output, const char *topic)
{
    assert_true(d->n_outputs < MAX_MAPS);
    d->outputs[d->n_outputs].output = (char *)output;
    d->outputs[d->n_outputs].topic = (char *)topic;
    d->n_outputs++;
}

#endif
