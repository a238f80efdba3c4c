/* payment plugin: the providers' pure functions, no host. The simulated provider's decline
 * rules and its deterministic transient failures (the same order and attempt always get the same
 * verdict; the rate is respected over 10000 orders); URL parsing; and the HTTP client against a
 * tiny HTTP server run in a thread on 127.0.0.1: 200 captured, 402 declined, 500, a body without
 * Content-Length, a server that never answers (a timeout within the bound), one that closes
 * without answering or in the middle of the answer, garbage, oversized headers and bodies, and a
 * refused connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "provider.h"
#include "test_listen.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- simulated provider ------------------------------------------------------------------ */

static const char *const blocked[] = {"cust-blocked", "cust-fraud"};

static pay_sim rules(void)
{
    pay_sim s = {.decline_over_cents = 10000,
                 .customers = blocked,
                 .n_customers = 2,
                 .marker = "-decline-",
                 .transient_failure_rate = 0};
    return s;
}

static pay_result charge(const pay_sim *s, const char *order, const char *customer, int64_t amount,
                         int attempt)
{
    pay_charge c = {.order_id = order,
                    .customer_id = customer,
                    .amount_cents = amount,
                    .currency = "EUR",
                    .attempt = attempt};
    pay_result r;
    pay_sim_charge(s, &c, &r);
    return r;
}

static void test_sim_decline_rules(void **state)
{
    (void)state;
    pay_sim s = rules();
    pay_result r = charge(&s, "o-1", "cust-1", 10000, 1);
    assert_int_equal(r.verdict, PAY_CAPTURED); /* at the limit: fine */
    assert_true(strncmp(r.ref, "sim_", 4) == 0 && strlen(r.ref) == 20);
    pay_result again = charge(&s, "o-1", "cust-1", 10000, 3);
    assert_string_equal(r.ref, again.ref); /* a pure function of the order */
    assert_string_not_equal(r.ref, charge(&s, "o-2", "cust-1", 10000, 1).ref);

    r = charge(&s, "o-1", "cust-1", 10001, 1);
    assert_int_equal(r.verdict, PAY_DECLINED);
    assert_string_equal(r.reason, "amount 10001 over the limit of 10000");
    assert_string_equal(r.ref, "");

    r = charge(&s, "o-1", "cust-fraud", 5, 1);
    assert_int_equal(r.verdict, PAY_DECLINED);
    assert_string_equal(r.reason, "customer cust-fraud is blocked");
    assert_int_equal(charge(&s, "o-1", "cust-fraud2", 5, 1).verdict, PAY_CAPTURED); /* exact */

    r = charge(&s, "o-1", "acme-decline-7", 5, 1);
    assert_int_equal(r.verdict, PAY_DECLINED);
    assert_string_equal(r.reason, "card declined for customer acme-decline-7");
    assert_int_equal(charge(&s, "o-1", "acme-declined", 5, 1).verdict, PAY_CAPTURED);

    /* no rules: everything is captured */
    pay_sim none = {0};
    assert_int_equal(charge(&none, "o-1", "cust-blocked", INT64_MAX, 1).verdict, PAY_CAPTURED);
    none.marker = "";
    assert_int_equal(charge(&none, "o-1", "x", 1, 1).verdict, PAY_CAPTURED);
}

static void test_sim_transient_deterministic(void **state)
{
    (void)state;
    pay_sim s = rules();
    s.transient_failure_rate = 0.5;
    char order[32];
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(order, sizeof(order), "ord-%d", i);
        for (int a = 1; a <= 3; a++) {
            pay_result r1 = charge(&s, order, "cust-1", 100, a);
            pay_result r2 = charge(&s, order, "cust-1", 100, a);
            assert_int_equal(r1.verdict, r2.verdict);
            assert_true(r1.verdict == PAY_RETRY || r1.verdict == PAY_CAPTURED);
            if (r1.verdict == PAY_RETRY)
                assert_non_null(strstr(r1.reason, "transient"));
            assert_true(pay_sim_unit(order, a) == pay_sim_unit(order, a));
            assert_true(pay_sim_unit(order, a) >= 0 && pay_sim_unit(order, a) < 1);
        }
        differ += charge(&s, order, "c", 1, 1).verdict != charge(&s, order, "c", 1, 2).verdict;
    }
    assert_true(differ > 50); /* the attempt matters: a retry can succeed */
    /* a transient failure comes before the decline rules; a later try gets the verdict */
    for (int i = 0; i < 100; i++) {
        snprintf(order, sizeof(order), "big-%d", i);
        pay_result r = charge(&s, order, "cust-1", 999999, 1);
        assert_true(r.verdict == PAY_RETRY || r.verdict == PAY_DECLINED);
    }
    s.transient_failure_rate = 0;
    assert_int_equal(charge(&s, "ord-1", "c", 1, 1).verdict, PAY_CAPTURED);
    s.transient_failure_rate = 1;
    for (int a = 1; a < 50; a++)
        assert_int_equal(charge(&s, "ord-1", "c", 1, a).verdict, PAY_RETRY);
}

static void test_sim_rate_respected(void **state)
{
    (void)state;
    const double rates[] = {0.01, 0.1, 0.3, 0.5, 0.9};
    char order[32];
    for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
        pay_sim s = {.transient_failure_rate = rates[k]};
        int failed = 0, failed2 = 0;
        for (int i = 0; i < 10000; i++) {
            snprintf(order, sizeof(order), "order-%06d", i);
            failed += charge(&s, order, "c", 1, 1).verdict == PAY_RETRY;
            failed2 += charge(&s, order, "c", 1, 2).verdict == PAY_RETRY;
        }
        double f = failed / 10000.0, f2 = failed2 / 10000.0;
        /* 10000 draws: the standard deviation is at most 0.005 */
        assert_true(f > rates[k] - 0.02 && f < rates[k] + 0.02);
        assert_true(f2 > rates[k] - 0.02 && f2 < rates[k] + 0.02);
    }
}

/* ---- URLs ---------------------------------------------------------------------------------- */

static void test_url_parse(void **state)
{
    (void)state;
    pay_url u;
    char err[256];
    assert_int_equal(pay_url_parse("http://pay.local:8080/v1/charges/", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "pay.local");
    assert_string_equal(u.port, "8080");
    assert_string_equal(u.path, "/v1/charges");
    assert_int_equal(pay_url_parse("http://127.0.0.1", &u, err, sizeof(err)), 0);
    assert_string_equal(u.port, "80");
    assert_string_equal(u.path, "/");
    assert_int_equal(pay_url_parse("HTTP://[::1]:9/x", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "9");
    assert_string_equal(u.path, "/x");

    const char *bad[] = {"",
                         "pay.local/x",
                         "ftp://x/",
                         "http://",
                         "http:///x",
                         "http://x:/",
                         "http://x:0/",
                         "http://x:65536/",
                         "http://x:12a/",
                         "http://user@x/",
                         "http://x/a?b=1",
                         "http://x/a#f",
                         "http://x/a b",
                         "http://x/a\r\nX-Injected: 1",
                         "http://[::1/x",
                         "http://[::1]x/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(pay_url_parse(bad[i], &u, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(pay_url_parse("https://pay.example/", &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "proxy"));
}

/* ---- a tiny HTTP server -------------------------------------------------------------------- */

typedef struct srv {
    int lfd;
    int port;
    int stop[2];
    int silent;           /* accept and read, never answer (until stopped) */
    const char *response; /* written as is, then the connection is closed */
    size_t response_len;
    char request[16384];
    size_t request_len;
    pthread_t thread;
} srv;

static void read_request(srv *s, int fd)
{
    s->request_len = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = s->stop[0], .events = POLLIN}};
        if (poll(p, 2, 5000) <= 0 || p[1].revents)
            return;
        ssize_t n =
            recv(fd, s->request + s->request_len, sizeof(s->request) - 1 - s->request_len, 0);
        if (n <= 0)
            return;
        s->request_len += (size_t)n;
        s->request[s->request_len] = '\0';
        char *e = strstr(s->request, "\r\n\r\n");
        const char *cl = strstr(s->request, "Content-Length: ");
        if (e && cl && s->request_len >= (size_t)(e + 4 - s->request) + (size_t)atol(cl + 16))
            return;
    }
}

static void *serve(void *arg)
{
    srv *s = arg;
    struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN}, {.fd = s->stop[0], .events = POLLIN}};
    if (poll(p, 2, 10000) <= 0 || p[1].revents)
        return NULL;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    read_request(s, fd);
    if (s->silent) {
        struct pollfd q = {.fd = s->stop[0], .events = POLLIN};
        poll(&q, 1, 30000);
    } else {
        size_t off = 0;
        while (off < s->response_len) {
            ssize_t n = send(fd, s->response + off, s->response_len - off, MSG_NOSIGNAL);
            if (n <= 0)
                break; /* the client gave up */
            off += (size_t)n;
        }
    }
    close(fd);
    return NULL;
}

static void srv_start(srv *s, const char *response, size_t len, int silent)
{
    memset(s, 0, sizeof(*s));
    s->response = response;
    s->response_len = len;
    s->silent = silent;
    assert_int_equal(pipe(s->stop), 0);
    s->lfd = tl_listen_loopback(4, &s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void srv_stop(srv *s)
{
    assert_int_equal(write(s->stop[1], "x", 1), 1);
    pthread_join(s->thread, NULL);
    close(s->lfd);
    close(s->stop[0]);
    close(s->stop[1]);
}

static pay_url srv_url(const srv *s, const char *path)
{
    char text[128], err[256];
    snprintf(text, sizeof(text), "http://127.0.0.1:%d%s", s->port, path);
    pay_url u;
    assert_int_equal(pay_url_parse(text, &u, err, sizeof(err)), 0);
    return u;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const pay_charge the_charge = {.order_id = "ord-42",
                                      .customer_id = "cust-1",
                                      .amount_cents = 2599,
                                      .currency = "EUR",
                                      .attempt = 1};

/* Charges against a server answering `response`; returns the result. */
static pay_result charge_against(srv *s, const char *response, size_t len, int64_t timeout_ms)
{
    srv_start(s, response, len, 0);
    pay_url u = srv_url(s, "/v1/charges");
    pay_result r;
    pay_http_charge(&u, "sekret", timeout_ms, &the_charge, &r);
    srv_stop(s);
    return r;
}

#define CHARGE(s, lit) charge_against((s), (lit), sizeof(lit) - 1, 2000)

static void test_http_captured(void **state)
{
    (void)state;
    srv s;
    pay_result r = CHARGE(&s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              "content-length: 36\r\n\r\n"
                              "{\"status\":\"captured\",\"ref\":\"ch_123\"}");
    assert_int_equal(r.verdict, PAY_CAPTURED);
    assert_string_equal(r.ref, "ch_123");

    /* what was sent */
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", s.port);
    assert_true(strncmp(s.request, "POST /v1/charges HTTP/1.0\r\n", 27) == 0);
    assert_non_null(strstr(s.request, host));
    assert_non_null(strstr(s.request, "\r\nAuthorization: Bearer sekret\r\n"));
    assert_non_null(strstr(s.request, "\r\nContent-Type: application/json\r\n"));
    const char *body = strstr(s.request, "\r\n\r\n");
    assert_non_null(body);
    json_t *doc = json_loads(body + 4, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "order_id")), "ord-42");
    assert_string_equal(json_string_value(json_object_get(doc, "idempotency_key")), "ord-42");
    assert_int_equal(json_integer_value(json_object_get(doc, "amount_cents")), 2599);
    assert_string_equal(json_string_value(json_object_get(doc, "currency")), "EUR");
    json_decref(doc);

    /* no Content-Length: the body ends with the connection */
    r = CHARGE(&s, "HTTP/1.0 200 OK\r\n\r\n{\"status\":\"captured\",\"ref\":\"ch_9\"}");
    assert_int_equal(r.verdict, PAY_CAPTURED);
    assert_string_equal(r.ref, "ch_9");
}

static void test_http_declined(void **state)
{
    (void)state;
    srv s;
    pay_result r = CHARGE(&s, "HTTP/1.1 402 Payment Required\r\nContent-Length: 51\r\n\r\n"
                              "{\"status\":\"declined\",\"reason\":\"insufficient funds\"}");
    assert_int_equal(r.verdict, PAY_DECLINED);
    assert_string_equal(r.reason, "insufficient funds");
    /* a 402 is a decline even with a body that says nothing */
    r = CHARGE(&s, "HTTP/1.1 402 Payment Required\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(r.verdict, PAY_DECLINED);
    assert_string_equal(r.reason, "declined by the provider");
}

static void test_http_errors_retry(void **state)
{
    (void)state;
    srv s;
    pay_result r =
        CHARGE(&s, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!");
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "HTTP 500"));
    r = CHARGE(&s, "HTTP/1.1 503 Service Unavailable\r\n\r\n");
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "HTTP 503"));
    /* a 200 that is not a capture: nothing is known, try again */
    r = CHARGE(&s, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!");
    assert_int_equal(r.verdict, PAY_RETRY);
    r = CHARGE(&s, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{\"status\":\"pending\"}");
    assert_int_equal(r.verdict, PAY_RETRY);
    r = CHARGE(&s, "HTTP/1.1 200 OK\r\nContent-Length: 21\r\n\r\n{\"status\":\"captured\"}");
    assert_int_equal(r.verdict, PAY_RETRY); /* no ref */
}

static void test_http_timeout(void **state)
{
    (void)state;
    srv s;
    srv_start(&s, NULL, 0, 1);
    pay_url u = srv_url(&s, "/v1/charges");
    pay_result r;
    int64_t t0 = now_ms();
    pay_http_charge(&u, NULL, 300, &the_charge, &r);
    int64_t took = now_ms() - t0;
    srv_stop(&s);
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "timeout"));
    assert_true(took >= 280 && took < 1500);
    assert_null(strstr(s.request, "Authorization")); /* no key, no header */
}

static void test_http_closed(void **state)
{
    (void)state;
    srv s;
    pay_result r = charge_against(&s, "", 0, 2000);
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "closed without a response"));
    r = CHARGE(&s, "HTTP/1.1 200 OK\r\nContent-Le");
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "closed in the response headers"));
    r = CHARGE(&s, "HTTP/1.1 200 OK\r\nContent-Length: 36\r\n\r\n{\"status\":\"capt");
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "closed after 15 of 36 body bytes"));
}

static void test_http_garbage(void **state)
{
    (void)state;
    srv s;
    const char *garbage[] = {
        "HELLO WORLD\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/2 200\r\n\r\n",
        "HTTP/1.1 999 What\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "\x01\x02\x03\xff\xfe binary\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        pay_result r = charge_against(&s, garbage[i], strlen(garbage[i]), 2000);
        assert_int_equal(r.verdict, PAY_RETRY);
        assert_true(strstr(r.reason, "malformed") || strstr(r.reason, "unsupported"));
    }
}

static void test_http_oversized(void **state)
{
    (void)state;
    srv s;
    size_t big = 200000;
    char *resp = malloc(big);
    assert_non_null(resp);

    /* a Content-Length over the limit: refused at the headers */
    int n = snprintf(resp, big, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 100000);
    memset(resp + n, 'a', big - (size_t)n);
    pay_result r = charge_against(&s, resp, big, 2000);
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "body too large"));

    /* no Content-Length and a body that goes on */
    n = snprintf(resp, big, "HTTP/1.1 200 OK\r\n\r\n");
    memset(resp + n, 'a', big - (size_t)n);
    r = charge_against(&s, resp, big, 2000);
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "too large"));

    /* headers that never end */
    n = snprintf(resp, big, "HTTP/1.1 200 OK\r\n");
    for (size_t i = (size_t)n; i + 16 < big; i += 16)
        memcpy(resp + i, "X-Pad: 12345678\r", 16), resp[i + 15] = '\n';
    r = charge_against(&s, resp, big, 2000);
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "headers too large"));
    free(resp);
}

static void test_http_refused(void **state)
{
    (void)state;
    /* a port nobody listens on */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    char text[64], err[256];
    snprintf(text, sizeof(text), "http://127.0.0.1:%d/charge", ntohs(a.sin_port));
    pay_url u;
    assert_int_equal(pay_url_parse(text, &u, err, sizeof(err)), 0);
    pay_result r;
    int64_t t0 = now_ms();
    pay_http_charge(&u, NULL, 2000, &the_charge, &r);
    assert_true(now_ms() - t0 < 1000);
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "cannot connect"));

    /* a name that does not resolve */
    assert_int_equal(pay_url_parse("http://no-such-host.invalid/x", &u, err, sizeof(err)), 0);
    pay_http_charge(&u, NULL, 2000, &the_charge, &r);
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "resolve"));
}

static void test_http_refund(void **state)
{
    (void)state;
    srv s;
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 34\r\n\r\n"
                             "{\"status\":\"refunded\",\"ref\":\"re_1\"}";
    srv_start(&s, ok, sizeof(ok) - 1, 0);
    pay_url u = srv_url(&s, "/v1/charges/");
    pay_result r;
    pay_http_refund(&u, "k", 2000, "ord-42", &r);
    srv_stop(&s);
    assert_int_equal(r.verdict, PAY_CAPTURED);
    assert_true(strncmp(s.request, "POST /v1/charges/refunds HTTP/1.0\r\n", 35) == 0);
    json_t *doc = json_loads(strstr(s.request, "\r\n\r\n") + 4, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "order_id")), "ord-42");
    assert_string_equal(json_string_value(json_object_get(doc, "idempotency_key")),
                        "ord-42:refund");
    json_decref(doc);

    /* at the root: /refunds */
    static const char no[] = "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n";
    srv_start(&s, no, sizeof(no) - 1, 0);
    u = srv_url(&s, "");
    pay_http_refund(&u, NULL, 2000, "ord-42", &r);
    srv_stop(&s);
    assert_int_equal(r.verdict, PAY_RETRY);
    assert_non_null(strstr(r.reason, "HTTP 503"));
    assert_true(strncmp(s.request, "POST /refunds HTTP/1.0\r\n", 24) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sim_decline_rules),
        cmocka_unit_test(test_sim_transient_deterministic),
        cmocka_unit_test(test_sim_rate_respected),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_http_captured),
        cmocka_unit_test(test_http_declined),
        cmocka_unit_test(test_http_errors_retry),
        cmocka_unit_test(test_http_timeout),
        cmocka_unit_test(test_http_closed),
        cmocka_unit_test(test_http_garbage),
        cmocka_unit_test(test_http_oversized),
        cmocka_unit_test(test_http_refused),
        cmocka_unit_test(test_http_refund),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
