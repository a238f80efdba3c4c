/* Unit test of the example stage with the SDK harness: no broker, no daemon. */
#include <orderflow/harness.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const of_stage_descriptor *orderflow_stage_entry(void);

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

int main(void)
{
    char err[512];
    of_harness *h = of_harness_new(orderflow_stage_entry(), err, sizeof(err));
    if (!h) {
        fprintf(stderr, "harness: %s\n", err);
        return 1;
    }
    CHECK(of_harness_set(h, "keyword", "urgent") == 0);
    CHECK(of_harness_set(h, "case", "insensitive") == 0);
    CHECK(of_harness_set(h, "max_payload", "32B") == 0);
    if (of_harness_start(h) != 0) {
        fprintf(stderr, "start: %s\n", of_harness_error(h));
        return 1;
    }
    CHECK(of_harness_feed_str(h, "o-1", "an URGENT order") == 0);
    CHECK(of_harness_feed_str(h, "o-2", "a calm order") == 0);
    CHECK(of_harness_feed_str(h, "o-3", "a payload far longer than thirty-two bytes") == 0);
    CHECK(of_harness_drain(h, 10000) == 0);

    CHECK(of_harness_count(h, "matched") == 1);
    CHECK(of_harness_count(h, "unmatched") == 1);
    CHECK(of_harness_count(h, OF_HARNESS_DEAD_LETTER) == 1);
    size_t len;
    const char *p = of_harness_payload(h, "matched", 0, &len);
    CHECK(p && strcmp(p, "an URGENT order") == 0);
    const char *k = of_harness_key(h, "unmatched", 0, &len);
    CHECK(k && strcmp(k, "o-2") == 0);
    CHECK(of_harness_counter(h, "keyword_matched") == 1.0);
    of_harness_free(h);

    /* A missing required option is refused before init. */
    h = of_harness_new(orderflow_stage_entry(), err, sizeof(err));
    CHECK(h != NULL);
    if (h) {
        CHECK(of_harness_start(h) != 0);
        CHECK(strstr(of_harness_error(h), "keyword") != NULL);
        of_harness_free(h);
    }
    if (failures == 0)
        printf("keyword-router: all checks passed\n");
    return failures ? 1 : 0;
}
