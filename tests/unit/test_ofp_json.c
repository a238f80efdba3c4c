/* The plugins' JSON writer (plugins/common/ofp_json.c) against jansson: the same members give the
 * same compact text, byte for byte (every ASCII byte, NUL, multibyte UTF-8, integers at their
 * limits, nesting, texts past the inline buffer), strings jansson refuses as not UTF-8 fail the
 * writer too (and thousands of random byte strings agree either way), and calls out of place
 * (a key in an array, none in an object, an unbalanced end, too deep, two values at the top, a
 * text still open) give no text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ofp_json.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void assert_same(ofp_jw *w, json_t *doc)
{
    char *want = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(want);
    size_t len = 0;
    const char *got = ofp_jw_text(w, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(want));
    assert_string_equal(got, want);
    free(want);
    json_decref(doc);
}

static void test_flat_object(void **state)
{
    (void)state;
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "type", "order.status_changed");
    ofp_jw_str(&w, "order_id", "o-1");
    ofp_jw_int(&w, "seq", 2);
    ofp_jw_str(&w, "from", NULL);
    ofp_jw_bool(&w, "final", 1);
    ofp_jw_bool(&w, "open", 0);
    ofp_jw_null(&w, "nothing");
    ofp_jw_int(&w, "min", INT64_MIN);
    ofp_jw_int(&w, "max", INT64_MAX);
    ofp_jw_int(&w, "zero", 0);
    ofp_jw_int(&w, "minus", -1);
    ofp_jw_str(&w, "k\"ey\n", "v");
    ofp_jw_end(&w);
    json_t *doc = json_pack("{s:s, s:s, s:I, s:n, s:b, s:b, s:n, s:I, s:I, s:I, s:I, s:s}", "type",
                            "order.status_changed", "order_id", "o-1", "seq", (json_int_t)2, "from",
                            "final", 1, "open", 0, "nothing", "min", (json_int_t)INT64_MIN, "max",
                            (json_int_t)INT64_MAX, "zero", (json_int_t)0, "minus", (json_int_t)-1,
                            "k\"ey\n", "v");
    assert_non_null(doc);
    assert_same(&w, doc);
    ofp_jw_free(&w);
}

static void test_every_ascii_byte_and_utf8(void **state)
{
    (void)state;
    char all[128];
    for (int i = 0; i < 128; i++)
        all[i] = (char)i; /* NUL first: only the _n form can hold it */
    const char *utf8 = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf / "
                       "\xe2\x80\xa8";
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_strn(&w, "all", all, sizeof(all));
    ofp_jw_str(&w, "utf8", utf8);
    ofp_jw_strn(&w, "", "", 0);
    ofp_jw_end(&w);
    json_t *doc = json_object();
    json_object_set_new(doc, "all", json_stringn(all, sizeof(all)));
    json_object_set_new(doc, "utf8", json_string(utf8));
    json_object_set_new(doc, "", json_string(""));
    assert_same(&w, doc);
    ofp_jw_free(&w);
}

static void test_nesting_and_growth(void **state)
{
    (void)state;
    /* An order's items, and enough of them that the text leaves the inline buffer. */
    ofp_jw w;
    ofp_jw_init(&w);
    json_t *doc = json_object(), *items = json_array();
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "order_id", "o-9");
    ofp_jw_array(&w, "items");
    for (int i = 0; i < 300; i++) {
        char sku[32];
        snprintf(sku, sizeof(sku), "SKU-%d\t\"x\"", i);
        ofp_jw_object(&w, NULL);
        ofp_jw_str(&w, "sku", sku);
        ofp_jw_int(&w, "quantity", i);
        ofp_jw_end(&w);
        json_array_append_new(items,
                              json_pack("{s:s, s:I}", "sku", sku, "quantity", (json_int_t)i));
    }
    ofp_jw_end(&w);
    ofp_jw_object(&w, "data");
    ofp_jw_array(&w, "empty");
    ofp_jw_end(&w);
    ofp_jw_object(&w, "none");
    ofp_jw_end(&w);
    ofp_jw_end(&w);
    ofp_jw_end(&w);
    json_object_set_new(doc, "order_id", json_string("o-9"));
    json_object_set_new(doc, "items", items);
    json_object_set_new(doc, "data", json_pack("{s:[], s:{}}", "empty", "none"));
    assert_true(w.len > OFP_JW_INLINE);
    assert_same(&w, doc);

    /* A string alone at the top, and a long one. */
    size_t big = 200 * 1024;
    char *s = malloc(big + 1);
    assert_non_null(s);
    for (size_t i = 0; i < big; i++)
        s[i] = (char)(0x01 + i % 0x7f);
    s[big] = '\0';
    ofp_jw_free(&w);
    ofp_jw_init(&w);
    ofp_jw_str(&w, NULL, s);
    assert_same(&w, json_string(s));
    ofp_jw_free(&w);
    free(s);
}

/* A text that fits the inline buffer takes no allocation, long strings near its end included
 * (the room a string needs is measured, not guessed at six bytes a byte). */
static void test_small_text_stays_inline(void **state)
{
    (void)state;
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "delivery_id", "0190c3a1-7b2e-7c44-9a1d-3f5e6a7b8c9d");
    ofp_jw_str(&w, "webhook_id", "0190c3a1-7b2e-7c44-9a1d-3f5e6a7b8c9e");
    ofp_jw_str(&w, "type", "order.status_changed");
    ofp_jw_str(&w, "timestamp", "2026-11-30T03:00:00.000Z");
    ofp_jw_object(&w, "data");
    ofp_jw_str(&w, "order_id", "0190c3a1-7b2e-7c44-9a1d-3f5e6a7b8c9f");
    ofp_jw_str(&w, "customer_id", "customer-0042");
    ofp_jw_int(&w, "seq", 3);
    ofp_jw_str(&w, "from", "RESERVED");
    ofp_jw_str(&w, "to", "PAID");
    ofp_jw_str(&w, "reason", "payment captured (payment 1234567)");
    ofp_jw_str(&w, "at", "2026-11-30T03:00:00.000Z");
    ofp_jw_end(&w);
    ofp_jw_end(&w);
    size_t len = 0;
    assert_non_null(ofp_jw_text(&w, &len));
    assert_true(len > 300 && len < OFP_JW_INLINE);
    assert_ptr_equal(w.p, w.inline_buf);
    ofp_jw_free(&w);
}

static int writer_accepts(const char *s, size_t n)
{
    ofp_jw w;
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ofp_jw_strn(&w, "s", s, n);
    ofp_jw_end(&w);
    int ok = ofp_jw_text(&w, NULL) != NULL;
    ofp_jw_free(&w);
    return ok;
}

static void test_not_utf8_refused_like_jansson(void **state)
{
    (void)state;
    static const char *bad[] = {
        "\x80",             /* a continuation alone */
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\x80",     /* overlong */
        "\xed\xa0\x80",     /* a surrogate */
        "\xf4\x90\x80\x80", /* past U+10FFFF */
        "\xf5\x80\x80\x80",
        "\xff",
        "\xc3", /* cut short */
        "\xe2\x82",
        "ok\xe2\x28\xa1", /* a broken continuation */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(json_string(bad[i]));
        assert_false(writer_accepts(bad[i], strlen(bad[i])));
    }
    /* Random byte strings, weighted towards UTF-8's lead and continuation bytes: the writer
     * accepts exactly what jansson accepts, and then writes the same text. */
    srand(20261130);
    int accepted = 0;
    for (int k = 0; k < 5000; k++) {
        char s[12];
        size_t n = (size_t)(rand() % (int)sizeof(s));
        for (size_t i = 0; i < n; i++) {
            int r = rand() % 4;
            s[i] = (char)(r == 0 ? 0x80 + rand() % 64 : r == 1 ? 0xc0 + rand() % 64 : rand() % 256);
        }
        json_t *js = json_stringn(s, n);
        ofp_jw w;
        ofp_jw_init(&w);
        ofp_jw_strn(&w, NULL, s, n);
        const char *got = ofp_jw_text(&w, NULL);
        assert_int_equal(js != NULL, got != NULL);
        if (js) {
            accepted++;
            char *want = json_dumps(js, JSON_COMPACT | JSON_ENCODE_ANY);
            assert_string_equal(got, want);
            free(want);
            json_decref(js);
        }
        ofp_jw_free(&w);
    }
    assert_true(accepted > 100 && accepted < 4900); /* both ways were tried */
}

static void test_out_of_place(void **state)
{
    (void)state;
    ofp_jw w;
    ofp_jw_init(&w); /* a key inside an array */
    ofp_jw_array(&w, NULL);
    ofp_jw_int(&w, "k", 1);
    ofp_jw_end(&w);
    assert_null(ofp_jw_text(&w, NULL));
    ofp_jw_free(&w);

    ofp_jw_init(&w); /* no key inside an object */
    ofp_jw_object(&w, NULL);
    ofp_jw_int(&w, NULL, 1);
    ofp_jw_end(&w);
    assert_null(ofp_jw_text(&w, NULL));
    ofp_jw_free(&w);

    ofp_jw_init(&w); /* still open */
    ofp_jw_object(&w, NULL);
    ofp_jw_int(&w, "a", 1);
    assert_null(ofp_jw_text(&w, NULL));
    ofp_jw_end(&w);
    assert_string_equal(ofp_jw_text(&w, NULL), "{\"a\":1}");
    ofp_jw_end(&w); /* one end too many */
    assert_null(ofp_jw_text(&w, NULL));
    ofp_jw_free(&w);

    ofp_jw_init(&w); /* two values at the top, or a key there */
    ofp_jw_int(&w, NULL, 1);
    ofp_jw_int(&w, NULL, 2);
    assert_null(ofp_jw_text(&w, NULL));
    ofp_jw_free(&w);
    ofp_jw_init(&w);
    ofp_jw_int(&w, "top", 1);
    assert_null(ofp_jw_text(&w, NULL));
    ofp_jw_free(&w);

    ofp_jw_init(&w); /* nothing written */
    assert_null(ofp_jw_text(&w, NULL));
    ofp_jw_free(&w);

    ofp_jw_init(&w); /* deeper than OFP_JW_DEPTH */
    for (int i = 0; i <= OFP_JW_DEPTH; i++)
        ofp_jw_array(&w, NULL);
    for (int i = 0; i <= OFP_JW_DEPTH; i++)
        ofp_jw_end(&w);
    assert_null(ofp_jw_text(&w, NULL));
    ofp_jw_free(&w);
    ofp_jw_init(&w); /* exactly that deep is fine */
    for (int i = 0; i < OFP_JW_DEPTH; i++)
        ofp_jw_array(&w, NULL);
    for (int i = 0; i < OFP_JW_DEPTH; i++)
        ofp_jw_end(&w);
    assert_string_equal(ofp_jw_text(&w, NULL), "[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]");
    ofp_jw_free(&w);

    ofp_jw_init(&w); /* a failure sticks: later calls write nothing */
    ofp_jw_object(&w, NULL);
    ofp_jw_str(&w, "bad", "\xff");
    ofp_jw_str(&w, "good", "x");
    ofp_jw_end(&w);
    assert_null(ofp_jw_text(&w, NULL));
    ofp_jw_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_object),
        cmocka_unit_test(test_every_ascii_byte_and_utf8),
        cmocka_unit_test(test_nesting_and_growth),
        cmocka_unit_test(test_small_text_stays_inline),
        cmocka_unit_test(test_not_utf8_refused_like_jansson),
        cmocka_unit_test(test_out_of_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
