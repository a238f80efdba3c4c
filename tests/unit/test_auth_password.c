/* auth plugin: yescrypt hashing and verification, constant-time comparison, and the checks on
 * registration input (email, password, display name) against hostile values. Pure functions of
 * plugins/auth/password.c; no host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "password.h"

#include <stdio.h>
#include <string.h>

#define CHECK_EMAIL(s)   auth_check_email((s), strlen(s))
#define CHECK_NAME(s)    auth_check_display_name((s), strlen(s))
#define CHECK_PW(s, min) auth_check_password((s), strlen(s), (min))

static void test_hash_and_verify(void **state)
{
    (void)state;
    char hash[AUTH_HASH_MAX + 1], err[160];
    assert_int_equal(
        auth_password_hash("correct horse battery", 5, hash, sizeof(hash), err, sizeof(err)), 0);
    assert_memory_equal(hash, "$y$", 3);
    assert_true(strlen(hash) > 40 && strlen(hash) <= AUTH_HASH_MAX);
    /* the password appears nowhere in the hash */
    assert_null(strstr(hash, "horse"));
    assert_int_equal(auth_password_verify("correct horse battery", hash), 1);
    assert_int_equal(auth_password_verify("correct horse batterY", hash), 0);
    assert_int_equal(auth_password_verify("correct horse battery ", hash), 0);
    assert_int_equal(auth_password_verify("", hash), 0);

    /* A fresh salt each time: two hashes of one password differ, both verify. */
    char hash2[AUTH_HASH_MAX + 1];
    assert_int_equal(
        auth_password_hash("correct horse battery", 5, hash2, sizeof(hash2), err, sizeof(err)), 0);
    assert_string_not_equal(hash, hash2);
    assert_int_equal(auth_password_verify("correct horse battery", hash2), 1);
}

static void test_hash_costs_and_errors(void **state)
{
    (void)state;
    char hash[AUTH_HASH_MAX + 1], err[160];
    assert_int_equal(auth_password_hash("p4ssw0rd-long", 1, hash, sizeof(hash), err, sizeof(err)),
                     0);
    assert_memory_equal(hash, "$y$", 3);
    assert_int_equal(auth_password_verify("p4ssw0rd-long", hash), 1);
    /* out-of-range costs are refused, not clamped */
    assert_int_equal(auth_password_hash("x", 0, hash, sizeof(hash), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cost"));
    assert_int_equal(auth_password_hash("x", 12, hash, sizeof(hash), err, sizeof(err)), -1);
    /* too small an output buffer */
    char small[16];
    assert_int_equal(auth_password_hash("p4ssw0rd-long", 1, small, sizeof(small), err, sizeof(err)),
                     -1);
    /* UTF-8 and long passwords hash fine */
    char big[AUTH_PASSWORD_MAX_BYTES + 1];
    memset(big, 'a', AUTH_PASSWORD_MAX_BYTES);
    big[AUTH_PASSWORD_MAX_BYTES] = '\0';
    assert_int_equal(auth_password_hash(big, 1, hash, sizeof(hash), err, sizeof(err)), 0);
    assert_int_equal(auth_password_verify(big, hash), 1);
    big[AUTH_PASSWORD_MAX_BYTES - 1] = 'b';
    assert_int_equal(auth_password_verify(big, hash), 0);
    assert_int_equal(
        auth_password_hash("p\xc3\xa4sswort \xe2\x9c\x93", 1, hash, sizeof(hash), err, sizeof(err)),
        0);
    assert_int_equal(auth_password_verify("p\xc3\xa4sswort \xe2\x9c\x93", hash), 1);
}

static void test_verify_refuses_other_hashes(void **state)
{
    (void)state;
    /* Only yescrypt hashes ever match: a stored DES/MD5/SHA-crypt or broken value does not,
     * even when crypt() itself would accept it. */
    char err[160], md5[AUTH_HASH_MAX + 1];
    (void)err;
    struct {
        const char *hash;
    } bad[] = {{""}, {"*"}, {"*0"}, {"$y$"}, {"$y$j9T$"}, {"plaintext"}, {"abJnggxhB/yWI"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(auth_password_verify("plaintext", bad[i].hash), 0);
    /* An MD5-crypt hash of the right password still does not verify. */
    snprintf(md5, sizeof(md5), "%s", "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/");
    assert_int_equal(auth_password_verify("password", md5), 0);
    assert_int_equal(auth_password_verify(NULL, "$y$x"), 0);
    assert_int_equal(auth_password_verify("x", NULL), 0);
}

static void test_const_time_equal(void **state)
{
    (void)state;
    assert_int_equal(auth_const_time_equal("", ""), 1);
    assert_int_equal(auth_const_time_equal("abc", "abc"), 1);
    assert_int_equal(auth_const_time_equal("abc", "abd"), 0);
    assert_int_equal(auth_const_time_equal("abc", "ab"), 0);
    assert_int_equal(auth_const_time_equal("ab", "abc"), 0);
    assert_int_equal(auth_const_time_equal("", "a"), 0);
}

static void test_password_rules(void **state)
{
    (void)state;
    assert_null(CHECK_PW("0123456789", 10));
    assert_string_equal(CHECK_PW("012345678", 10), AUTH_PASSWORD_TOO_SHORT);
    /* characters, not bytes: ten 2-byte letters are ten characters */
    assert_null(CHECK_PW("\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3"
                         "\xa4\xc3\xa4",
                         10));
    assert_string_equal(CHECK_PW("\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4", 10),
                        AUTH_PASSWORD_TOO_SHORT);
    /* the floor of 8 holds even when asked for less */
    assert_string_equal(CHECK_PW("1234567", 1), AUTH_PASSWORD_TOO_SHORT);
    /* spaces and quotes are just characters */
    assert_null(CHECK_PW("' OR '1'='1' --", 10));
    assert_null(CHECK_PW("          ", 10));
    /* at most 511 bytes (what libxcrypt hashes) */
    char big[AUTH_PASSWORD_MAX_BYTES + 2];
    memset(big, 'x', sizeof(big));
    assert_null(auth_check_password(big, AUTH_PASSWORD_MAX_BYTES, 10));
    assert_non_null(auth_check_password(big, AUTH_PASSWORD_MAX_BYTES + 1, 10));
    /* NUL inside, invalid UTF-8 */
    assert_non_null(auth_check_password("abcdefghij\0klm", 14, 10));
    assert_non_null(CHECK_PW("abcdefghij\xff", 10));
    assert_non_null(CHECK_PW("abcdefghij\xc0\xaf", 10)); /* overlong '/' */
    assert_non_null(auth_check_password(NULL, 0, 10));
}

static void test_email_valid(void **state)
{
    (void)state;
    const char *good[] = {
        "a@b.co",
        "alice@example.com",
        "Alice.Smith+orders@mail.example.co.uk",
        "o'brien@example.ie",
        "a'OR'1'='1@example.com", /* odd but valid: stored verbatim through a parameter */
        "x_y-z!#$%&*/=?^`{|}~@xn--bcher-kva.example",
        "1234@123.example",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *why = CHECK_EMAIL(good[i]);
        if (why)
            fail_msg("'%s' refused: %s", good[i], why);
    }
    /* length limits: 64 local, 63 a label, 254 in all */
    char buf[400];
    memset(buf, 'a', 64);
    strcpy(buf + 64, "@example.com");
    assert_null(CHECK_EMAIL(buf));
    memset(buf, 'a', 65);
    strcpy(buf + 65, "@example.com");
    assert_non_null(CHECK_EMAIL(buf));
    strcpy(buf, "a@");
    memset(buf + 2, 'b', 63);
    strcpy(buf + 65, ".com");
    assert_null(CHECK_EMAIL(buf));
    strcpy(buf, "a@");
    memset(buf + 2, 'b', 64);
    strcpy(buf + 66, ".com");
    assert_non_null(CHECK_EMAIL(buf));
    /* 254 exactly: a@ + 4 labels of 60 + dots ... built up to the limit */
    size_t n = 0;
    n += (size_t)sprintf(buf, "%s", "abcdefgh@");
    while (n + 61 <= 250) {
        memset(buf + n, 'c', 60);
        n += 60;
        buf[n++] = '.';
    }
    while (n < 251)
        buf[n++] = 'd';
    memcpy(buf + n, ".io", 4);
    n += 3;
    assert_int_equal(strlen(buf), 254);
    assert_null(CHECK_EMAIL(buf));
    buf[n] = 'x';
    buf[n + 1] = '\0';
    assert_non_null(CHECK_EMAIL(buf));
}

static void test_email_hostile(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "plainaddress",
        "@example.com",
        "alice@",
        "alice@@example.com",
        "alice@bob@example.com",
        "alice @example.com",
        " alice@example.com",
        "alice@example.com ",
        "alice@exa mple.com",
        "alice\t@example.com",
        "alice@example.com\n",
        "alice\r\n@example.com",
        "alice@example.com\r\nBcc: victim@example.com",
        "'; DROP TABLE users; --@example.com",
        "\"quoted\"@example.com",
        ".alice@example.com",
        "alice.@example.com",
        "al..ice@example.com",
        "alice@localhost",
        "alice@[127.0.0.1]",
        "alice@-example.com",
        "alice@example-.com",
        "alice@example..com",
        "alice@.example.com",
        "alice@example.com.",
        "alice@exa_mple.com",
        "al(ice)@example.com",
        "al<ice>@example.com",
        "al\\ice@example.com",
        "al,ice@example.com",
        "al:ice@example.com",
        "j\xc3\xb6rg@example.com",
        "alice@b\xc3\xbc"
        "cher.example",
        "alice\x7f@example.com",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (!CHECK_EMAIL(bad[i]))
            fail_msg("'%s' accepted", bad[i]);
    /* an embedded NUL counts as a control character */
    assert_non_null(auth_check_email("alice\0@example.com", 18));
    assert_non_null(auth_check_email(NULL, 0));
    /* reasons never quote the value */
    const char *why = CHECK_EMAIL("<script>@example.com");
    assert_non_null(why);
    assert_null(strstr(why, "script"));
}

static void test_email_normalize(void **state)
{
    (void)state;
    char out[AUTH_EMAIL_MAX + 1];
    assert_int_equal(auth_email_normalize("Alice.Smith@EXAMPLE.com", 23, out, sizeof(out)), 0);
    assert_string_equal(out, "alice.smith@example.com");
    assert_int_equal(auth_email_normalize("x@y.z", 5, out, 5), -1);
    assert_int_equal(auth_email_normalize("x@y.z", 5, out, 6), 0);
}

static void test_display_name(void **state)
{
    (void)state;
    assert_null(CHECK_NAME("Alice"));
    assert_null(CHECK_NAME("J\xc3\xb6rg M\xc3\xbcller"));
    assert_null(CHECK_NAME("\xe5\xb1\xb1\xe7\x94\xb0\xe5\xa4\xaa\xe9\x83\x8e")); /* 山田太郎 */
    assert_null(CHECK_NAME("\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d"));                 /* שלום */
    assert_null(CHECK_NAME("\xf0\x9f\x98\x80 Smiley"));                          /* emoji */
    assert_null(CHECK_NAME("Robert'); DROP TABLE users;--"));
    assert_null(CHECK_NAME("<script>alert(1)</script>")); /* escaped where shown, not here */
    assert_null(CHECK_NAME(" padded "));

    char buf[1000];
    memset(buf, 'n', 200);
    buf[200] = '\0';
    assert_null(CHECK_NAME(buf));
    buf[200] = 'n';
    buf[201] = '\0';
    assert_non_null(CHECK_NAME(buf));
    /* 200 characters of 3 bytes each are fine (600 bytes) */
    for (int i = 0; i < 200; i++)
        memcpy(buf + 3 * i, "\xe2\x82\xac", 3); /* € */
    buf[600] = '\0';
    assert_null(CHECK_NAME(buf));
    memcpy(buf + 600, "\xe2\x82\xac", 4);
    assert_non_null(CHECK_NAME(buf));

    const char *bad[] = {
        "",
        "   ",
        "\xc2\xa0\xe3\x80\x80", /* no-break space, ideographic space */
        "Al\nice",
        "Alice\r",
        "Al\tice",
        "Al\x1b[31mice",     /* terminal escape */
        "Alice\x7f",         /* DEL */
        "Alice\xc2\x85",     /* NEL (C1) */
        "Alice\xe2\x80\xa8", /* line separator */
        "evil\xe2\x80\xae"
        "gnp.exe",        /* right-to-left override */
        "x\xe2\x81\xa6y", /* left-to-right isolate */
        "Alice\xff",
        "Alice\xc3",        /* truncated sequence */
        "\xc0\x80",         /* overlong NUL */
        "\xe0\x80\xaf",     /* overlong '/' */
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* past U+10FFFF */
        "\xf8\x88\x80\x80\x80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (!CHECK_NAME(bad[i]))
            fail_msg("display name #%zu accepted", i);
    assert_non_null(auth_check_display_name("Al\0ice", 6));
    assert_non_null(auth_check_display_name(NULL, 0));
}

static void test_utf8_count(void **state)
{
    (void)state;
    assert_int_equal(auth_utf8_count("", 0), 0);
    assert_int_equal(auth_utf8_count("abc", 3), 3);
    assert_int_equal(auth_utf8_count("\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80", 9), 3);
    assert_int_equal(auth_utf8_count("\xe2\x82", 2), (size_t)-1);
    assert_int_equal(auth_utf8_count("\x80", 1), (size_t)-1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_and_verify),
        cmocka_unit_test(test_hash_costs_and_errors),
        cmocka_unit_test(test_verify_refuses_other_hashes),
        cmocka_unit_test(test_const_time_equal),
        cmocka_unit_test(test_password_rules),
        cmocka_unit_test(test_email_valid),
        cmocka_unit_test(test_email_hostile),
        cmocka_unit_test(test_email_normalize),
        cmocka_unit_test(test_display_name),
        cmocka_unit_test(test_utf8_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
