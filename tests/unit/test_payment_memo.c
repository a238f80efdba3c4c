/* The payment plugin's memo of charge answers (plugins/payment/charge_memo.c): an answer kept is
 * taken once, for its own order only, within its time; answers to try again, over-long order ids
 * and answers after their time are not given; a newer answer in the same slot wins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "charge_memo.h"

#include <stdio.h>
#include <string.h>

static pay_result answer(pay_verdict v, const char *ref)
{
    pay_result r = {.verdict = v};
    snprintf(r.ref, sizeof(r.ref), "%s", ref);
    snprintf(r.reason, sizeof(r.reason), "%s", v == PAY_DECLINED ? "no funds" : "");
    return r;
}

static void test_kept_and_taken_once(void **state)
{
    (void)state;
    pay_memo *m = pay_memo_new();
    assert_non_null(m);
    pay_result a = answer(PAY_CAPTURED, "ch_1"), d = answer(PAY_DECLINED, ""), out;
    pay_memo_put(m, "ord-1", &a, 1000);
    pay_memo_put(m, "ord-2", &d, 1000);
    assert_int_equal(pay_memo_take(m, "ord-3", 1001, &out), 0);
    assert_int_equal(pay_memo_take(m, "ord-1", 1001, &out), 1);
    assert_int_equal(out.verdict, PAY_CAPTURED);
    assert_string_equal(out.ref, "ch_1");
    assert_int_equal(pay_memo_take(m, "ord-1", 1002, &out), 0); /* taken: gone */
    assert_int_equal(pay_memo_take(m, "ord-2", 1002, &out), 1);
    assert_int_equal(out.verdict, PAY_DECLINED);
    assert_string_equal(out.reason, "no funds");
    pay_memo_free(m);
    pay_memo_free(NULL);
    assert_int_equal(pay_memo_take(NULL, "ord-1", 0, &out), 0);
}

static void test_not_kept(void **state)
{
    (void)state;
    pay_memo *m = pay_memo_new();
    assert_non_null(m);
    pay_result retry = answer(PAY_RETRY, ""), a = answer(PAY_CAPTURED, "ch"), out;
    pay_memo_put(m, "ord-r", &retry, 0);
    assert_int_equal(pay_memo_take(m, "ord-r", 1, &out), 0);
    char long_id[80];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    pay_memo_put(m, long_id, &a, 0);
    assert_int_equal(pay_memo_take(m, long_id, 1, &out), 0);
    /* Too old: not given, and dropped. */
    pay_memo_put(m, "ord-old", &a, 0);
    assert_int_equal(pay_memo_take(m, "ord-old", PAY_MEMO_TTL_MS, &out), 0);
    pay_memo_put(m, "ord-old", &a, 0);
    assert_int_equal(pay_memo_take(m, "ord-old", PAY_MEMO_TTL_MS - 1, &out), 1);
    pay_memo_free(m);
}

static void test_slot_taken_by_newer(void **state)
{
    (void)state;
    pay_memo *m = pay_memo_new();
    assert_non_null(m);
    pay_result a = answer(PAY_CAPTURED, "first"), b = answer(PAY_CAPTURED, "second"), out;
    /* More orders than slots: some share a slot; each order gets its own answer or none. */
    char id[32];
    for (int i = 0; i < 4 * PAY_MEMO_SLOTS; i++) {
        snprintf(id, sizeof(id), "o-%d", i);
        pay_memo_put(m, id, i % 2 ? &a : &b, 10);
    }
    int given = 0;
    for (int i = 0; i < 4 * PAY_MEMO_SLOTS; i++) {
        snprintf(id, sizeof(id), "o-%d", i);
        if (pay_memo_take(m, id, 11, &out)) {
            given++;
            assert_string_equal(out.ref, i % 2 ? "first" : "second");
        }
    }
    assert_true(given > 0 && given <= PAY_MEMO_SLOTS);
    /* The same order again: the newer answer. */
    pay_memo_put(m, "o-x", &a, 20);
    pay_memo_put(m, "o-x", &b, 21);
    assert_int_equal(pay_memo_take(m, "o-x", 22, &out), 1);
    assert_string_equal(out.ref, "second");
    pay_memo_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_and_taken_once),
        cmocka_unit_test(test_not_kept),
        cmocka_unit_test(test_slot_taken_by_newer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
