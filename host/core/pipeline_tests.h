/* Runs the tests a pipeline file declares (`tests:`) through the embedded bus and the real
 * stage runner: each test gets a fresh bus and freshly initialised stages, its input events are
 * produced, the pipeline runs until idle, and the events on each expected topic are compared as
 * JSON (per key, in order; headers given in the expectation must be present and equal). */
#ifndef OF_PIPELINE_TESTS_H
#define OF_PIPELINE_TESTS_H

#include "pipeline.h"

#include <stdio.h>

typedef struct of_test_summary {
    int passed;
    int failed;
} of_test_summary;

/* Runs every test of p (or only those whose name contains `filter` when not NULL), printing
 * one line per test and the reasons of failures to out. timeout_ms bounds each test's wait for
 * the pipeline to go idle. */
void of_pipeline_run_tests(const of_pipeline *p, const char *filter, int timeout_ms, FILE *out,
                           of_test_summary *summary);

#endif
