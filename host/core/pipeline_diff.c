/* Whether a stage's definition changed between two loads of the configuration: a hot reload
 * restarts the stages whose definition differs and leaves the others running. */
#include "pipeline.h"

#include <string.h>

static int str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int config_eq(const of_config *a, const of_config *b)
{
    if (!a || !b)
        return a == b;
    if (a->count != b->count)
        return 0;
    for (size_t i = 0; i < a->count; i++) {
        const of_config_value *x = &a->values[i], *y = &b->values[i];
        if (!x->option || !y->option || !str_eq(x->option->name, y->option->name) ||
            x->is_set != y->is_set || x->has_value != y->has_value || !str_eq(x->text, y->text) ||
            x->i != y->i || x->size != y->size || x->d != y->d || x->list_count != y->list_count)
            return 0;
        for (size_t k = 0; k < x->list_count; k++)
            if (!str_eq(x->list[k], y->list[k]))
                return 0;
    }
    return 1;
}

static int outputs_eq(const of_stage_def *a, const of_stage_def *b)
{
    if (a->n_outputs != b->n_outputs)
        return 0;
    for (size_t i = 0; i < a->n_outputs; i++) {
        int found = 0;
        for (size_t k = 0; k < b->n_outputs && !found; k++)
            found = str_eq(a->outputs[i].output, b->outputs[k].output) &&
                    str_eq(a->outputs[i].topic, b->outputs[k].topic);
        if (!found)
            return 0;
    }
    return 1;
}

int of_stage_def_equal(const of_stage_def *a, const of_stage_def *b)
{
    if (!a || !b)
        return 0;
    if (!str_eq(a->name, b->name) || !str_eq(a->plugin_name, b->plugin_name))
        return 0;
    /* The same file loaded twice is one dlopen handle: the same descriptor. A plugin replaced on
     * disk under the same path is not loaded again by dlopen, so it needs a restart. */
    if (!a->plugin || !b->plugin || a->plugin->desc != b->plugin->desc)
        return 0;
    if (a->n_inputs != b->n_inputs || a->inputs_given != b->inputs_given)
        return 0;
    for (size_t i = 0; i < a->n_inputs; i++)
        if (!str_eq(a->inputs[i], b->inputs[i]))
            return 0;
    const of_retry_policy *ra = &a->retry, *rb = &b->retry;
    const of_breaker_policy *ba = &a->breaker, *bb = &b->breaker;
    return outputs_eq(a, b) && a->concurrency == b->concurrency &&
           a->max_in_flight == b->max_in_flight && a->batch == b->batch &&
           str_eq(a->consumer_group, b->consumer_group) && str_eq(a->dead_letter, b->dead_letter) &&
           ra->max_attempts == rb->max_attempts &&
           ra->initial_backoff_ms == rb->initial_backoff_ms &&
           ra->max_backoff_ms == rb->max_backoff_ms && ra->multiplier == rb->multiplier &&
           ra->jitter == rb->jitter && ba->enabled == bb->enabled &&
           ba->failure_rate == bb->failure_rate && ba->window == bb->window &&
           ba->min_calls == bb->min_calls && ba->open_for_ms == bb->open_for_ms &&
           ba->trial_calls == bb->trial_calls && config_eq(a->config, b->config);
}
