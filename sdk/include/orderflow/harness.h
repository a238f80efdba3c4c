/*
 * orderflow stage SDK: the in-memory test harness.
 *
 * Unit-test a stage in-process, without Kafka: the harness runs the stage on the host's own
 * embedded bus and stage runner (the same code `orderflowd` runs), feeds it events and collects
 * what it emits on each output and what it sends to the dead-letter topic. Link the test with
 * liborderflow-harness (pkg-config `orderflow-harness`, CMake `Orderflow::harness`); the stage
 * itself still links against nothing.
 *
 * Every function that can fail returns 0 on success or -1 and writes the reason to the
 * harness's error buffer, read with of_harness_error().
 */
#ifndef ORDERFLOW_HARNESS_H
#define ORDERFLOW_HARNESS_H

#include <orderflow/stage.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct of_harness of_harness;

/* The pseudo-output under which dead-lettered events are collected. */
#define OF_HARNESS_DEAD_LETTER "dead-letter"

/* A stage from a descriptor linked into the test (call your plugin's orderflow_stage_entry()),
 * checked exactly as the loader checks a file. NULL on failure, with the reason in errstr. */
of_harness *of_harness_new(const of_stage_descriptor *desc, char *errstr, size_t errstr_size);
/* A stage from a built plugin file, through the real loader. */
of_harness *of_harness_load(const char *so_path, char *errstr, size_t errstr_size);
void of_harness_free(of_harness *h); /* shuts the stage down if started */

const char *of_harness_error(const of_harness *h); /* the last failure's reason */

/* Before start: set an option as its textual value ("250ms", "64KiB", "a,b,c" for a list). */
int of_harness_set(of_harness *h, const char *option, const char *value);
/* Before start: the stage's worker threads (default 1) and retry policy (default 3 tries,
 * 1 ms backoff, so tests stay fast). */
int of_harness_set_concurrency(of_harness *h, int workers);
int of_harness_set_retry(of_harness *h, int max_attempts, int64_t initial_backoff_ms);
/* Validates the configuration and calls the stage's init. */
int of_harness_start(of_harness *h);

/* Feeds one event to the stage's input (key may be NULL). Headers are copied. */
int of_harness_feed(of_harness *h, const void *key, size_t key_len, const void *payload,
                    size_t payload_len, const of_header *headers, size_t header_count);
/* Convenience: NUL-terminated key and payload, no headers. */
int of_harness_feed_str(of_harness *h, const char *key, const char *payload);
/* Waits until every fed event is finished (processed, retried, dead-lettered); -1 on timeout. */
int of_harness_drain(of_harness *h, int timeout_ms);

/* Collected events of an output (or OF_HARNESS_DEAD_LETTER), in the order they were published
 * per key. Pointers are owned by the harness and valid until of_harness_free. */
size_t of_harness_count(const of_harness *h, const char *output);
const char *of_harness_payload(const of_harness *h, const char *output, size_t index, size_t *len);
const char *of_harness_key(const of_harness *h, const char *output, size_t index, size_t *len);
const char *of_harness_header(const of_harness *h, const char *output, size_t index,
                              const char *name, size_t *len);
/* The value of a custom counter the stage registered (0 when it has none of that name). */
double of_harness_counter(const of_harness *h, const char *name);

/* ABI 1.2: what the stage published with ws_publish on a channel, in publication order (the
 * harness runs no gateway: nothing is delivered, everything is recorded). Pointers are owned by
 * the harness and valid until of_harness_free. */
size_t of_harness_ws_count(const of_harness *h, const char *channel);
const char *of_harness_ws_message(const of_harness *h, const char *channel, size_t index,
                                  size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* ORDERFLOW_HARNESS_H */
