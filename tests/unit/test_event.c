/* The host's events (host/core/event.c): keys, payloads and headers copied whole, binary-safe
 * and NUL-terminated; clones independent of their source; sizes that cannot be allocated refused;
 * and an event built with few allocations (this program is linked with --wrap=malloc, calloc and
 * realloc, tests/CMakeLists.txt, so that it can count them). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);

static size_t g_allocs; /* calls of malloc, calloc and realloc through the wraps */

void *__wrap_malloc(size_t n)
{
    g_allocs++;
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    g_allocs++;
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    g_allocs++;
    return __real_realloc(p, n);
}

static void test_key_and_payload_copied(void **state)
{
    (void)state;
    char key[] = "order-1", payload[] = {'a', '\0', 'b', 'c'};
    of_event *ev = of_event_new(key, strlen(key), payload, sizeof(payload));
    assert_non_null(ev);
    key[0] = 'X';
    payload[2] = 'X';
    assert_int_equal(ev->key_len, 7);
    assert_memory_equal(ev->key, "order-1", 8); /* with its NUL */
    assert_int_equal(ev->payload_len, 4);
    assert_memory_equal(ev->payload, "a\0bc", 5);
    assert_int_equal(ev->partition, -1);
    assert_int_equal(ev->offset, -1);
    assert_true(ev->timestamp_ms > 0);
    of_event_free(ev);

    /* keyless, empty and NULL payloads */
    ev = of_event_new(NULL, 5, NULL, 9);
    assert_non_null(ev);
    assert_null(ev->key);
    assert_int_equal(ev->key_len, 0);
    assert_non_null(ev->payload);
    assert_int_equal(ev->payload_len, 0);
    assert_string_equal(ev->payload, "");
    of_event_free(ev);
    ev = of_event_new("", 0, "", 0);
    assert_non_null(ev);
    assert_non_null(ev->key);
    assert_string_equal(ev->key, "");
    of_event_free(ev);
    of_event_free(NULL);
}

static void test_sizes_that_cannot_be_allocated(void **state)
{
    (void)state;
    assert_null(of_event_new("k", SIZE_MAX, "p", 1));
    assert_null(of_event_new("k", 1, "p", SIZE_MAX));
    assert_null(of_event_new("k", SIZE_MAX / 2, "p", SIZE_MAX / 2));
    of_event *ev = of_event_new("k", 1, "p", 1);
    assert_non_null(ev);
    assert_int_equal(of_event_add_header(ev, "h", "v", SIZE_MAX), -1);
    assert_int_equal(of_event_add_header(ev, "h", "v", SIZE_MAX - 2), -1);
    assert_int_equal(ev->n_headers, 0);
    assert_int_equal(of_event_add_header(ev, "h", "v", 1), 0);
    assert_int_equal(of_event_set_header(ev, "h", "v", SIZE_MAX), -1);
    assert_string_equal(of_event_header_get(ev, "h")->value, "v"); /* unchanged */
    of_event_free(ev);
}

static void test_headers(void **state)
{
    (void)state;
    of_event *ev = of_event_new("k", 1, "{}", 2);
    assert_non_null(ev);
    /* More than the first allocation holds; duplicates allowed, binary values kept whole. */
    for (int i = 0; i < 40; i++) {
        char name[16], value[16];
        snprintf(name, sizeof(name), "h%d", i % 20);
        snprintf(value, sizeof(value), "v%d", i);
        assert_int_equal(of_event_add_header(ev, name, value, strlen(value)), 0);
    }
    assert_int_equal(of_event_add_header(ev, "bin", "x\0y", 3), 0);
    assert_int_equal(of_event_add_header(ev, "none", NULL, 7), 0);
    assert_int_equal(ev->n_headers, 42);
    for (int i = 0; i < 40; i++) {
        char name[16], value[16];
        snprintf(name, sizeof(name), "h%d", i % 20);
        snprintf(value, sizeof(value), "v%d", i);
        assert_string_equal(ev->headers[i].name, name);
        assert_string_equal(ev->headers[i].value, value);
        assert_int_equal(ev->headers[i].value_len, strlen(value));
    }
    const of_event_header *h = of_event_header_get(ev, "h3");
    assert_string_equal(h->value, "v3"); /* the first of two */
    h = of_event_header_get(ev, "bin");
    assert_int_equal(h->value_len, 3);
    assert_memory_equal(h->value, "x\0y", 4);
    h = of_event_header_get(ev, "none");
    assert_int_equal(h->value_len, 0);
    assert_string_equal(h->value, "");
    assert_null(of_event_header_get(ev, "absent"));

    /* set replaces the first of that name in place, keeping the others and the order */
    assert_int_equal(of_event_set_header(ev, "h3", "a longer value than before", 26), 0);
    assert_string_equal(ev->headers[3].name, "h3");
    assert_string_equal(ev->headers[3].value, "a longer value than before");
    assert_string_equal(ev->headers[23].value, "v23");
    assert_string_equal(ev->headers[4].value, "v4");
    assert_int_equal(of_event_set_header(ev, "new", "n", 1), 0);
    assert_int_equal(ev->n_headers, 43);
    assert_string_equal(ev->headers[42].name, "new");
    of_event_free(ev);
}

static void test_clone_is_independent(void **state)
{
    (void)state;
    of_event *ev = of_event_new("key", 3, "payload", 7);
    assert_non_null(ev);
    ev->partition = 2;
    ev->offset = 41;
    ev->timestamp_ms = 1234;
    assert_int_equal(of_event_set_topic(ev, "orders"), 0);
    assert_int_equal(of_event_add_header(ev, "ce_id", "e-1", 3), 0);
    assert_int_equal(of_event_add_header(ev, "ce_type", "order.placed", 12), 0);
    of_event *c = of_event_clone(ev);
    assert_non_null(c);
    assert_int_equal(of_event_set_header(ev, "ce_id", "changed", 7), 0);
    assert_int_equal(of_event_set_topic(ev, "other"), 0);
    of_event_free(ev);
    assert_string_equal(c->topic, "orders");
    assert_int_equal(c->partition, 2);
    assert_int_equal(c->offset, 41);
    assert_int_equal(c->timestamp_ms, 1234);
    assert_string_equal(c->key, "key");
    assert_string_equal(c->payload, "payload");
    assert_int_equal(c->n_headers, 2);
    assert_string_equal(of_event_header_get(c, "ce_id")->value, "e-1");
    assert_string_equal(of_event_header_get(c, "ce_type")->value, "order.placed");
    of_event_free(c);
}

/* A stage's event on its way: key, payload, topic and the CloudEvents headers. Each hop builds
 * and copies several, so the calls of malloc stay few: one for the event with its key and
 * payload, one for the topic and one for all the headers (their array, names and values). */
static void test_few_allocations(void **state)
{
    (void)state;
    static const char *const names[] = {"ce_specversion", "ce_id",       "ce_type",
                                        "ce_source",      "ce_time",     "ce_subject",
                                        "traceparent",    "content-type"};
    size_t before = g_allocs;
    of_event *ev = of_event_new("order-1", 7, "{\"id\":\"order-1\"}", 16);
    assert_non_null(ev);
    assert_int_equal(of_event_set_topic(ev, "orders.placed"), 0);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(of_event_add_header(ev, names[i], "value", 5), 0);
    size_t built = g_allocs - before;
    before = g_allocs;
    of_event *c = of_event_clone(ev);
    size_t cloned = g_allocs - before;
    assert_non_null(c);
    of_event_free(ev);
    of_event_free(c);
    if (built > 3 || cloned > 3)
        fail_msg("an event with 8 headers took %zu allocations to build and %zu to copy (at most "
                 "3 each)",
                 built, cloned);
}

/* Headers of any size and number: values larger than a block, more headers than the first
 * array holds, replacements; reserved room is used without allocating again. */
static void test_header_blocks(void **state)
{
    (void)state;
    of_event *ev = of_event_new("k", 1, "p", 1);
    assert_non_null(ev);
    char *big = malloc(100000);
    assert_non_null(big);
    for (size_t i = 0; i < 100000; i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(of_event_add_header(ev, "small", "s", 1), 0);
    assert_int_equal(of_event_add_header(ev, "big", big, 100000), 0);
    for (int i = 0; i < 30; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i);
        assert_int_equal(of_event_add_header(ev, name, name, strlen(name)), 0);
    }
    assert_int_equal(of_event_set_header(ev, "small", big, 5000), 0);
    assert_int_equal(ev->n_headers, 32);
    assert_int_equal(of_event_header_get(ev, "small")->value_len, 5000);
    assert_memory_equal(of_event_header_get(ev, "small")->value, big, 5000);
    assert_int_equal(((const char *)of_event_header_get(ev, "small")->value)[5000], '\0');
    assert_memory_equal(of_event_header_get(ev, "big")->value, big, 100000);
    for (int i = 0; i < 30; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i);
        assert_string_equal(ev->headers[2 + i].name, name);
        assert_string_equal(ev->headers[2 + i].value, name);
    }
    of_event *c = of_event_clone(ev);
    assert_non_null(c);
    of_event_free(ev);
    assert_int_equal(c->n_headers, 32);
    assert_memory_equal(of_event_header_get(c, "big")->value, big, 100000);
    assert_memory_equal(of_event_header_get(c, "small")->value, big, 5000);
    of_event_free(c);

    /* Reserved room: the headers that fit it take no allocation. */
    ev = of_event_new(NULL, 0, "", 0);
    assert_non_null(ev);
    assert_int_equal(of_event_reserve_headers(ev, 20, 20 * (3 + 1 + 2000 + 1)), 0);
    size_t before = g_allocs;
    for (int i = 0; i < 20; i++) {
        char name[8];
        snprintf(name, sizeof(name), "h%02d", i);
        assert_int_equal(of_event_add_header(ev, name, big, 2000), 0);
    }
    assert_int_equal(g_allocs - before, 0);
    assert_int_equal(ev->n_headers, 20);
    assert_memory_equal(ev->headers[19].value, big, 2000);
    /* and past it, more allocations, nothing lost */
    assert_int_equal(of_event_add_header(ev, "more", "m", 1), 0);
    assert_string_equal(ev->headers[20].value, "m");
    assert_string_equal(ev->headers[0].name, "h00");
    /* sizes no allocation could hold */
    assert_int_equal(of_event_reserve_headers(ev, SIZE_MAX / 2, 0), -1);
    assert_int_equal(of_event_reserve_headers(ev, 1, SIZE_MAX - 8), -1);
    assert_int_equal(ev->n_headers, 21);
    of_event_free(ev);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_and_payload_copied),
        cmocka_unit_test(test_sizes_that_cannot_be_allocated),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_clone_is_independent),
        cmocka_unit_test(test_few_allocations),
        cmocka_unit_test(test_header_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
