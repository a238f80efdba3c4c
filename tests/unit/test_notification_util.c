/* notification and webhook: the pure helpers (plugins/notification/notify_util.c) and the shared
 * client's address rules (plugins/common/ofp_client.c): Standard Webhooks signatures against the
 * specification's published example and an independent one, delivery ids, secrets, webhook URL
 * validation (malformed, hostile, oversized), the private-address classifier, channel names and
 * the message shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "notify.h"
#include "ofp_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_signature_vectors(void **state)
{
    (void)state;
    char sig[NTF_SIGNATURE_MAX + 1];
    /* The example of the Standard Webhooks specification (and its reference libraries). */
    static const char body[] = "{\"test\": 2432232314}";
    assert_int_equal(ntf_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                              "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body), sig),
                     0);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* The same key without the prefix. */
    assert_int_equal(ntf_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                              1614265330, body, strlen(body), sig),
                     0);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* An independent one, computed with
     *   python3 -c 'import hmac,hashlib,base64; k=bytes(range(32));
     *   m=b"msg_0123456789abcdef0123456789abcdef.1700000000.{\"id\":\"x\"}";
     *   print(base64.b64encode(hmac.new(k,m,hashlib.sha256).digest()).decode())'
     * with the key whsec_ + base64(bytes 0..31). */
    static const char body2[] = "{\"id\":\"x\"}";
    assert_int_equal(ntf_sign("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                              "msg_0123456789abcdef0123456789abcdef", 1700000000, body2,
                              strlen(body2), sig),
                     0);
    assert_string_equal(sig, "v1,uVaOKaioWCZ+3uOfirta+61PybO65fOzgXxcXTdOcEA=");
    /* Another timestamp, another signature. */
    char sig2[NTF_SIGNATURE_MAX + 1];
    assert_int_equal(ntf_sign("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                              "msg_0123456789abcdef0123456789abcdef", 1700000001, body2,
                              strlen(body2), sig2),
                     0);
    assert_string_not_equal(sig, sig2);
    /* Secrets that are not base64. */
    const char *bad[] = {"",           "whsec_",     "whsec_!!!!",     "whsec_abc",
                         "whsec_ab=c", "whsec_a===", "whsec_AAEC AwQF"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ntf_sign(bad[i], "msg_1", 1, "{}", 2, sig), -1);
}

static void test_secret(void **state)
{
    (void)state;
    char a[NTF_SECRET_MAX + 1], b[NTF_SECRET_MAX + 1];
    assert_int_equal(ntf_secret_new(a), 0);
    assert_int_equal(ntf_secret_new(b), 0);
    assert_string_not_equal(a, b);
    assert_true(strncmp(a, "whsec_", 6) == 0);
    assert_int_equal(strlen(a), 6 + 44); /* base64 of 32 bytes */
    unsigned char key[48];
    assert_int_equal(EVP_DecodeBlock(key, (const unsigned char *)a + 6, 44), 33); /* 32 + pad */
    char sig[NTF_SIGNATURE_MAX + 1];
    assert_int_equal(ntf_sign(a, "msg_x", 1, "{}", 2, sig), 0);
    assert_true(strncmp(sig, "v1,", 3) == 0 && strlen(sig) == 47);
}

static void test_delivery_id(void **state)
{
    (void)state;
    char a[NTF_DELIVERY_ID_LEN + 1], b[NTF_DELIVERY_ID_LEN + 1], c[NTF_DELIVERY_ID_LEN + 1];
    const char *wh = "6b0c1b7e-1f8a-4c52-9d43-0b3f8b0e9a11";
    assert_int_equal(ntf_delivery_id("ev-1", 4, wh, a), 0);
    assert_int_equal(ntf_delivery_id("ev-1", 4, wh, b), 0);
    assert_string_equal(a, b); /* a redelivered event gives the same id */
    assert_int_equal(strlen(a), NTF_DELIVERY_ID_LEN);
    assert_true(strncmp(a, "msg_", 4) == 0);
    for (size_t i = 4; i < NTF_DELIVERY_ID_LEN; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
    /* msg_ + the first 16 bytes of SHA-256("ev-1" NUL webhook id), as
     *   python3 -c 'import hashlib; print(hashlib.sha256(b"ev-1\0" + WH).hexdigest()[:32])' */
    unsigned char d[32];
    unsigned int n = 0;
    char in[64];
    size_t len = (size_t)snprintf(in, sizeof(in), "ev-1%c%s", 0, wh);
    assert_int_equal(EVP_Digest(in, len, d, &n, EVP_sha256(), NULL), 1);
    char expect[NTF_DELIVERY_ID_LEN + 1] = "msg_";
    for (size_t i = 0; i < 16; i++)
        snprintf(expect + 4 + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(a, expect);
    /* another event, another webhook: other ids */
    assert_int_equal(ntf_delivery_id("ev-2", 4, wh, c), 0);
    assert_string_not_equal(a, c);
    assert_int_equal(ntf_delivery_id("ev-1", 4, "6b0c1b7e-1f8a-4c52-9d43-0b3f8b0e9a12", c), 0);
    assert_string_not_equal(a, c);
    /* the separator: ("ab", "c") and ("a", "bc") differ */
    assert_int_equal(ntf_delivery_id("ab", 2, "c", b), 0);
    assert_int_equal(ntf_delivery_id("a", 1, "bc", c), 0);
    assert_string_not_equal(b, c);
}

static void test_webhook_url(void **state)
{
    (void)state;
    char err[256];
    const char *good[] = {"https://hooks.example.com/orderflow",
                          "http://hooks.example.com",
                          "HTTPS://Hooks.Example.com:8443/a/b?token=x&y=1",
                          "https://example.com?x=1",
                          "https://[2001:db8::1]:8443/h",
                          "https://93.184.216.34/h"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        err[0] = '\0';
        if (ntf_check_webhook_url(good[i], 0, err, sizeof(err)) != 0)
            fail_msg("%s refused: %s", good[i], err);
    }
    const char *bad[] = {"",
                         "hooks.example.com/x",
                         "ftp://hooks.example.com/",
                         "javascript:alert(1)",
                         "file:///etc/passwd",
                         "http://",
                         "https:///x",
                         "https://user:pw@hooks.example.com/",
                         "https://hooks.example.com@evil.example/",
                         "https://hooks.example.com/x#frag",
                         "https://hooks.example.com/a b",
                         "https://hooks.example.com/a\r\nX-Injected: 1",
                         "https://hooks.example.com/\xc3\xa9",
                         "https://hooks.example.com:0/",
                         "https://hooks.example.com:65536/",
                         "https://hooks.example.com:-1/",
                         "https://hooks.example.com:/",
                         "https://ho%6fks.example.com/",
                         "https://hooks.example.com\\@evil/",
                         "https://[::1/x",
                         "https://[zz::1]/x",
                         "https://[::1]x/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (ntf_check_webhook_url(bad[i], 1, err, sizeof(err)) != -1)
            fail_msg("%s accepted", bad[i]);
        assert_true(err[0] != '\0');
    }
    /* private and loopback addresses, in the forms getaddrinfo reads */
    const char *private[] = {
        "http://127.0.0.1:8080/h",    "http://127.1/h",       "http://2130706433/h",
        "http://0x7f000001/h",        "http://0177.0.0.1/h",  "http://localhost/h",
        "http://LOCALHOST:80/h",      "http://a.localhost/h", "http://10.1.2.3/h",
        "http://172.16.0.1/h",        "http://192.168.1.1/h", "http://169.254.169.254/latest",
        "http://0.0.0.0/h",           "http://[::1]/h",       "http://[::]/h",
        "http://[fe80::1]/h",         "http://[fd00::1]/h",   "http://[::ffff:127.0.0.1]/h",
        "http://[::ffff:10.0.0.1]/h", "http://100.64.0.1/h"};
    for (size_t i = 0; i < sizeof(private) / sizeof(private[0]); i++) {
        err[0] = '\0';
        if (ntf_check_webhook_url(private[i], 0, err, sizeof(err)) != -1)
            fail_msg("%s accepted", private[i]);
        assert_int_equal(ntf_check_webhook_url(private[i], 1, err, sizeof(err)), 0);
    }
    /* oversized */
    char *big = malloc(OFP_URL_MAX + 64);
    assert_non_null(big);
    int n = snprintf(big, OFP_URL_MAX + 64, "https://hooks.example.com/");
    memset(big + n, 'a', (size_t)(OFP_URL_MAX - n));
    big[OFP_URL_MAX] = '\0';
    assert_int_equal(ntf_check_webhook_url(big, 0, err, sizeof(err)), 0); /* 2048: fine */
    big[OFP_URL_MAX] = 'a';
    big[OFP_URL_MAX + 1] = '\0';
    assert_int_equal(ntf_check_webhook_url(big, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "2048"));
    /* a host name over 255 bytes */
    memset(big, 0, OFP_URL_MAX + 64);
    n = snprintf(big, OFP_URL_MAX + 64, "https://");
    memset(big + n, 'h', 300);
    strcat(big, "/x");
    assert_int_equal(ntf_check_webhook_url(big, 0, err, sizeof(err)), -1);
    free(big);
}

static int priv4(const char *a)
{
    struct sockaddr_in s = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, a, &s.sin_addr), 1);
    return ofp_addr_private((struct sockaddr *)&s);
}

static int priv6(const char *a)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, a, &s.sin6_addr), 1);
    return ofp_addr_private((struct sockaddr *)&s);
}

static void test_private_addresses(void **state)
{
    (void)state;
    const char *p4[] = {"0.0.0.0",         "0.1.2.3",     "10.0.0.1",       "10.255.255.255",
                        "100.64.0.1",      "100.127.1.1", "127.0.0.1",      "127.255.0.9",
                        "169.254.169.254", "172.16.0.1",  "172.31.255.255", "192.0.0.8",
                        "192.168.0.1",     "198.18.0.1",  "198.19.1.1",     "224.0.0.1",
                        "239.1.1.1",       "240.0.0.1",   "255.255.255.255"};
    for (size_t i = 0; i < sizeof(p4) / sizeof(p4[0]); i++)
        if (!priv4(p4[i]))
            fail_msg("%s is private", p4[i]);
    const char *pub4[] = {"1.1.1.1",         "8.8.8.8",        "9.255.255.255",   "11.0.0.1",
                          "100.63.255.255",  "100.128.0.1",    "126.255.255.255", "128.0.0.1",
                          "169.253.1.1",     "172.15.255.255", "172.32.0.1",      "192.0.2.1",
                          "192.167.1.1",     "192.169.0.1",    "198.17.1.1",      "198.20.0.1",
                          "223.255.255.255", "93.184.216.34"};
    for (size_t i = 0; i < sizeof(pub4) / sizeof(pub4[0]); i++)
        if (priv4(pub4[i]))
            fail_msg("%s is public", pub4[i]);
    const char *p6[] = {"::",
                        "::1",
                        "fe80::1",
                        "febf::1",
                        "fec0::1",
                        "fc00::1",
                        "fd12:3456::1",
                        "ff02::1",
                        "::ffff:127.0.0.1",
                        "::ffff:10.1.1.1",
                        "::ffff:169.254.169.254",
                        "64:ff9b::7f00:1",
                        "::127.0.0.1"};
    for (size_t i = 0; i < sizeof(p6) / sizeof(p6[0]); i++)
        if (!priv6(p6[i]))
            fail_msg("%s is private", p6[i]);
    const char *pub6[] = {"2001:db8::1",      "2606:4700::1111", "::ffff:8.8.8.8",
                          "64:ff9b::808:808", "fe7f::1",         "fbff::1"};
    for (size_t i = 0; i < sizeof(pub6) / sizeof(pub6[0]); i++)
        if (priv6(pub6[i]))
            fail_msg("%s is public", pub6[i]);
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_int_equal(ofp_addr_private(&other), 1);
    assert_int_equal(ofp_addr_text_private("10.0.0.1"), 1);
    assert_int_equal(ofp_addr_text_private("8.8.8.8"), 0);
    assert_int_equal(ofp_addr_text_private("fd00::2"), 1);
    assert_int_equal(ofp_addr_text_private("example.com"), -1);
}

static void test_channels_and_message(void **state)
{
    (void)state;
    char ch[NTF_CHANNEL_MAX + 1], ch2[NTF_CHANNEL_MAX + 1];
    assert_int_equal(ntf_channel("order", "6b0c1b7e-1f8a-4c52-9d43-0b3f8b0e9a11", ch), 0);
    assert_string_equal(ch, "order:6b0c1b7e-1f8a-4c52-9d43-0b3f8b0e9a11");
    assert_int_equal(ntf_channel("customer", "alice@example.com", ch), 0);
    assert_string_equal(ch, "customer:alice@example.com");
    /* characters a channel cannot hold: a digest, the same for the same id */
    assert_int_equal(ntf_channel("customer", "alice smith", ch), 0);
    assert_true(strncmp(ch, "customerh:", 10) == 0 && strlen(ch) == 10 + 32);
    assert_int_equal(ntf_channel("customer", "alice smith", ch2), 0);
    assert_string_equal(ch, ch2);
    assert_int_equal(ntf_channel("customer", "alice:smith", ch2), 0);
    assert_string_not_equal(ch, ch2);
    assert_int_equal(ntf_channel("customer", "", ch), 0);
    assert_true(strncmp(ch, "customerh:", 10) == 0);
    char longid[200];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(ntf_channel("customer", longid, ch), 0);
    assert_true(strlen(ch) <= NTF_CHANNEL_MAX && strncmp(ch, "customerh:", 10) == 0);

    ofp_jw w;
    assert_string_equal(ntf_status_text(&w, NULL, "o-1", "alice", 2, "PENDING", "RESERVED",
                                        "stock reserved", "2026-11-27T12:00:00.000Z"),
                        "{\"type\":\"order.status_changed\",\"order_id\":\"o-1\","
                        "\"customer_id\":\"alice\",\"seq\":2,\"from\":\"PENDING\",\"to\":"
                        "\"RESERVED\",\"reason\":\"stock reserved\",\"at\":"
                        "\"2026-11-27T12:00:00.000Z\"}");
    ofp_jw_free(&w);
    /* No from: null; no seq: left out; a reason with quotes and a line break, escaped. */
    assert_string_equal(
        ntf_status_text(&w, NULL, "o-1", "alice", 0, NULL, "PENDING", "said \"hi\"\n", "t"),
        "{\"type\":\"order.status_changed\",\"order_id\":\"o-1\","
        "\"customer_id\":\"alice\",\"from\":null,\"to\":\"PENDING\","
        "\"reason\":\"said \\\"hi\\\"\\n\",\"at\":\"t\"}");
    ofp_jw_free(&w);
    /* A reason that is not UTF-8 gives no message (jansson refused it too). */
    assert_null(ntf_status_text(&w, NULL, "o-1", "alice", 3, "A", "B", "\xff", "t"));
    ofp_jw_free(&w);
    /* A webhook's data: the same members without type. */
    ofp_jw_init(&w);
    ofp_jw_object(&w, NULL);
    ntf_status_members(&w, 0, "o-1", "alice", 1, NULL, "PENDING", "placed", "t");
    ofp_jw_end(&w);
    assert_string_equal(ofp_jw_text(&w, NULL),
                        "{\"order_id\":\"o-1\",\"customer_id\":\"alice\",\"seq\":1,\"from\":null,"
                        "\"to\":\"PENDING\",\"reason\":\"placed\",\"at\":\"t\"}");
    ofp_jw_free(&w);

    char id[NTF_ID_LEN + 1];
    assert_int_equal(ofp_uuid(id), 0);
    assert_true(ofp_valid_uuid(id));
    assert_int_equal(id[14], '7'); /* time-ordered: RFC 9562 version 7 */
    assert_non_null(strchr("89ab", id[19]));
    char at[NTF_ID_LEN + 1], at2[NTF_ID_LEN + 1];
    assert_int_equal(ofp_uuid_at(0x0123456789abull, at), 0);
    assert_true(ofp_valid_uuid(at));
    assert_memory_equal(at, "01234567-89ab-7", 15);
    assert_int_equal(ofp_uuid_at(0x0123456789acull, at2), 0);
    assert_true(strcmp(at, at2) < 0); /* a later millisecond sorts after */
    assert_true(strcmp(at2, id) < 0); /* and now after both */
    assert_false(ofp_valid_uuid("6B0C1B7E-1F8A-4C52-9D43-0B3F8B0E9A11"));
    assert_false(ofp_valid_uuid("../../etc/passwd"));
    assert_int_equal(ntf_utf8_chars("h\xc3\xa9llo", 6), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature_vectors), cmocka_unit_test(test_secret),
        cmocka_unit_test(test_delivery_id),       cmocka_unit_test(test_webhook_url),
        cmocka_unit_test(test_private_addresses), cmocka_unit_test(test_channels_and_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
