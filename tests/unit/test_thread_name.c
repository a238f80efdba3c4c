/* Thread names: composed to fit the kernel's 15 characters with the suffix kept whole, and set
 * on the thread they are given. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "thread_name.h"

#include <pthread.h>
#include <string.h>

static void compose_is(const char *what, const char *suffix, const char *want)
{
    char out[OF_THREAD_NAME_MAX + 1];
    memset(out, 'x', sizeof(out));
    of_thread_name_compose(out, what, suffix);
    assert_string_equal(out, want);
}

static void test_compose(void **state)
{
    (void)state;
    compose_is("inventory", ":0", "inventory:0");
    compose_is("notification", ":c", "notification:c");
    /* Too long: the name is cut, the suffix (which thread of the stage) stays whole. */
    compose_is("a-very-long-stage-name", ":12", "a-very-long-:12");
    compose_is("exactly-15-char", NULL, "exactly-15-char");
    compose_is("sixteen-chars-xy", "", "sixteen-chars-x");
    compose_is(NULL, ":c", ":c");
    compose_is(NULL, NULL, "");
    compose_is("x", "a-suffix-longer-than-15", "a-suffix-longer");
}

static void *idle_main(void *arg)
{
    pthread_mutex_t *mu = arg;
    pthread_mutex_lock(mu); /* held by the test until it has read the name */
    pthread_mutex_unlock(mu);
    return NULL;
}

static void test_names_the_thread(void **state)
{
    (void)state;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, idle_main, &mu), 0);
    of_thread_name(t, "notification-stage", ":7");
    char got[64] = "";
    assert_int_equal(pthread_getname_np(t, got, sizeof(got)), 0);
    assert_string_equal(got, "notification-:7");
    pthread_mutex_unlock(&mu);
    pthread_join(t, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compose),
        cmocka_unit_test(test_names_the_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
