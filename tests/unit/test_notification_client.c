/* The plugins' shared HTTP client (plugins/common/ofp_client.c) as the webhook stage uses it,
 * against a tiny server run in a thread (plain or TLS with the fixture certificate of
 * tests/fixtures/http, a self-signed CA for localhost and 127.0.0.1): what is sent (headers of a
 * signed delivery, Host, User-Agent), any status read back (2xx, 410, 500), a server that never
 * answers (a timeout within the bound), garbage, oversized answers, a refused connection, private
 * addresses refused before connecting, and TLS: trusted through ca_file, untrusted without it, a
 * host name the certificate does not name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "notify.h"
#include "ofp_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FIXTURES OF_SOURCE_DIR "/tests/fixtures/http"

typedef struct srv {
    int lfd, port, stop[2];
    int silent;   /* read the request, never answer */
    int any_addr; /* listen on every address (TLS host name test) */
    SSL_CTX *tls; /* serve TLS */
    const char *response;
    size_t response_len;
    char request[16384];
    size_t request_len;
    int accepted;
    pthread_t thread;
} srv;

static int io_read(int fd, SSL *ssl, char *buf, size_t cap)
{
    if (ssl)
        return SSL_read(ssl, buf, (int)cap);
    return (int)recv(fd, buf, cap, 0);
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
    s->accepted = 1;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    SSL *ssl = NULL;
    if (s->tls) {
        ssl = SSL_new(s->tls);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {
            SSL_free(ssl);
            close(fd);
            return NULL;
        }
    }
    s->request_len = 0;
    for (;;) {
        int n =
            io_read(fd, ssl, s->request + s->request_len, sizeof(s->request) - 1 - s->request_len);
        if (n <= 0)
            break;
        s->request_len += (size_t)n;
        s->request[s->request_len] = '\0';
        char *e = strstr(s->request, "\r\n\r\n");
        const char *cl = strstr(s->request, "Content-Length: ");
        if (e && cl && s->request_len >= (size_t)(e + 4 - s->request) + (size_t)atol(cl + 16))
            break;
    }
    if (s->silent) {
        struct pollfd q = {.fd = s->stop[0], .events = POLLIN};
        poll(&q, 1, 30000);
    } else {
        size_t off = 0;
        while (off < s->response_len) {
            int n = ssl ? SSL_write(ssl, s->response + off, (int)(s->response_len - off))
                        : (int)send(fd, s->response + off, s->response_len - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
    }
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    return NULL;
}

static void srv_start(srv *s, const char *response, size_t len)
{
    s->response = response;
    s->response_len = len;
    assert_int_equal(pipe(s->stop), 0);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(s->any_addr ? INADDR_ANY : INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(listen(s->lfd, 4), 0);
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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static ofp_client *client(int allow_private, const char *ca)
{
    ofp_client_options o = {
        .allow_private = allow_private, .ca_file = ca, .user_agent = "orderflow-webhook/1.0.0"};
    char err[256];
    ofp_client *c = ofp_client_new(&o, err, sizeof(err));
    if (!c)
        fail_msg("client: %s", err);
    return c;
}

/* POSTs {"a":1} to scheme://host:port/path with c; the result code, the answer and the error. */
static ofp_client_rc post(ofp_client *c, const char *scheme, const char *host, int port,
                          const char *path, const char *const *headers, int64_t timeout_ms,
                          ofp_response *resp, char *err, size_t err_size)
{
    char text[256];
    snprintf(text, sizeof(text), "%s://%s:%d%s", scheme, host, port, path);
    ofp_url u;
    if (ofp_url_parse(text, OFP_URL_HTTPS | OFP_URL_QUERY, &u, err, err_size) != 0)
        fail_msg("%s: %s", text, err);
    return ofp_client_post(c, &u, NULL, headers, "{\"a\":1}", 7, timeout_ms, resp, err, err_size);
}

static void test_signed_delivery_sent(void **state)
{
    (void)state;
    static const char ok[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    srv s = {0};
    srv_start(&s, ok, sizeof(ok) - 1);
    ofp_client *c = client(1, NULL);
    char sig[NTF_SIGNATURE_MAX + 1];
    assert_int_equal(ntf_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1", 1700000000,
                              "{\"a\":1}", 7, sig),
                     0);
    char hsig[96];
    snprintf(hsig, sizeof(hsig), "webhook-signature: %s", sig);
    const char *const headers[] = {"webhook-id: msg_1", "webhook-timestamp: 1700000000", hsig,
                                   NULL};
    ofp_response r;
    char err[256];
    assert_int_equal(
        post(c, "http", "127.0.0.1", s.port, "/hooks/a?x=1", headers, 2000, &r, err, sizeof(err)),
        OFP_CLIENT_OK);
    srv_stop(&s);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.len, 0);
    free(r.body);
    assert_true(strncmp(s.request, "POST /hooks/a?x=1 HTTP/1.0\r\n", 28) == 0);
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", s.port);
    assert_non_null(strstr(s.request, host));
    assert_non_null(strstr(s.request, "\r\nUser-Agent: orderflow-webhook/1.0.0\r\n"));
    assert_non_null(strstr(s.request, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(s.request, "\r\nwebhook-id: msg_1\r\n"));
    assert_non_null(strstr(s.request, "\r\nwebhook-timestamp: 1700000000\r\n"));
    assert_non_null(strstr(s.request, hsig));
    assert_string_equal(strstr(s.request, "\r\n\r\n") + 4, "{\"a\":1}");

    /* a header with a line break is never sent */
    const char *const evil[] = {"webhook-id: x\r\nX-Injected: 1", NULL};
    assert_int_equal(post(c, "http", "127.0.0.1", 9, "/", evil, 2000, &r, err, sizeof(err)),
                     OFP_CLIENT_FAILED);
    ofp_client_free(c);
}

static void test_statuses(void **state)
{
    (void)state;
    const struct {
        const char *resp;
        int status;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200},
        {"HTTP/1.0 202 Accepted\r\n\r\nqueued", 202},
        {"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n", 410},
        {"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!", 500},
        {"HTTP/1.1 301 Moved\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n",
         301}, /* never followed */
    };
    ofp_client *c = client(1, NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        srv s = {0};
        srv_start(&s, cases[i].resp, strlen(cases[i].resp));
        ofp_response r;
        char err[256];
        assert_int_equal(
            post(c, "http", "127.0.0.1", s.port, "/", NULL, 2000, &r, err, sizeof(err)),
            OFP_CLIENT_OK);
        srv_stop(&s);
        assert_int_equal(r.status, cases[i].status);
        free(r.body);
    }
    ofp_client_free(c);
}

static void test_failures(void **state)
{
    (void)state;
    ofp_client *c = client(1, NULL);
    ofp_response r;
    char err[256];

    /* never answers: a timeout within the bound */
    srv s = {.silent = 1};
    srv_start(&s, NULL, 0);
    int64_t t0 = now_ms();
    assert_int_equal(post(c, "http", "127.0.0.1", s.port, "/", NULL, 300, &r, err, sizeof(err)),
                     OFP_CLIENT_FAILED);
    int64_t took = now_ms() - t0;
    srv_stop(&s);
    assert_non_null(strstr(err, "timeout"));
    assert_true(took >= 280 && took < 1500);

    /* garbage and oversized answers */
    size_t big = 200000;
    char *huge = malloc(big);
    assert_non_null(huge);
    int n = snprintf(huge, big, "HTTP/1.1 200 OK\r\n\r\n");
    memset(huge + n, 'a', big - (size_t)n);
    const struct {
        const char *resp;
        size_t len;
        const char *why;
    } cases[] = {
        {"", 0, "closed without a response"},
        {"HELLO\r\n\r\n", 9, "malformed"},
        {"HTTP/1.1 2x0 OK\r\n\r\n", 19, "malformed"},
        {"\x01\x02\xff\xfe\r\n\r\n", 8, "malformed"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 52, "unsupported"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 44, "too large"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 42, "closed after 3 of 10"},
        {huge, big, "too large"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        srv g = {0};
        srv_start(&g, cases[i].resp, cases[i].len);
        assert_int_equal(
            post(c, "http", "127.0.0.1", g.port, "/", NULL, 2000, &r, err, sizeof(err)),
            OFP_CLIENT_FAILED);
        srv_stop(&g);
        if (!strstr(err, cases[i].why))
            fail_msg("case %zu: %s, expected %s", i, err, cases[i].why);
    }
    free(huge);

    /* a port nobody listens on */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    assert_int_equal(
        post(c, "http", "127.0.0.1", ntohs(a.sin_port), "/", NULL, 2000, &r, err, sizeof(err)),
        OFP_CLIENT_FAILED);
    assert_non_null(strstr(err, "cannot connect"));
    ofp_client_free(c);
}

static void test_private_refused(void **state)
{
    (void)state;
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    ofp_client *c = client(0, NULL);
    const char *hosts[] = {"127.0.0.1", "localhost", "127.1", "[::ffff:127.0.0.1]"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        srv s = {0};
        srv_start(&s, ok, sizeof(ok) - 1);
        ofp_response r;
        char err[256];
        ofp_client_rc rc = post(c, "http", hosts[i], s.port, "/", NULL, 1000, &r, err, sizeof(err));
        srv_stop(&s);
        if (rc != OFP_CLIENT_BLOCKED)
            fail_msg("%s: %d (%s)", hosts[i], (int)rc, err);
        assert_non_null(strstr(err, "refused"));
        assert_int_equal(s.accepted, 0); /* refused before connecting */
    }
    ofp_client_free(c);
}

static SSL_CTX *server_tls(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, FIXTURES "/cert.pem"), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, FIXTURES "/key.pem", SSL_FILETYPE_PEM), 1);
    return ctx;
}

static void test_tls(void **state)
{
    (void)state;
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    SSL_CTX *stls = server_tls();
    ofp_client *trusting = client(1, FIXTURES "/cert.pem");
    ofp_client *system_store = client(1, NULL);
    ofp_response r;
    char err[256];
    const char *names[] = {"127.0.0.1", "localhost"};
    for (size_t i = 0; i < 2; i++) {
        srv s = {.tls = stls};
        srv_start(&s, ok, sizeof(ok) - 1);
        ofp_client_rc rc =
            post(trusting, "https", names[i], s.port, "/hook", NULL, 3000, &r, err, sizeof(err));
        srv_stop(&s);
        if (rc != OFP_CLIENT_OK)
            fail_msg("https://%s: %s", names[i], err);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ok");
        free(r.body);
        assert_true(strncmp(s.request, "POST /hook HTTP/1.0\r\n", 21) == 0);
    }
    /* the self-signed CA is not in the system's store */
    srv s = {.tls = stls};
    srv_start(&s, ok, sizeof(ok) - 1);
    assert_int_equal(
        post(system_store, "https", "127.0.0.1", s.port, "/", NULL, 3000, &r, err, sizeof(err)),
        OFP_CLIENT_FAILED);
    srv_stop(&s);
    assert_non_null(strstr(err, "not trusted"));
    /* a name the certificate does not have (127.0.0.2 reaches a server on every address) */
    srv m = {.tls = stls, .any_addr = 1};
    srv_start(&m, ok, sizeof(ok) - 1);
    assert_int_equal(
        post(trusting, "https", "127.0.0.2", m.port, "/", NULL, 3000, &r, err, sizeof(err)),
        OFP_CLIENT_FAILED);
    srv_stop(&m);
    assert_non_null(strstr(err, "not trusted"));
    /* a plain HTTP server behind an https:// URL */
    srv p = {0};
    srv_start(&p, ok, sizeof(ok) - 1);
    assert_int_equal(
        post(trusting, "https", "127.0.0.1", p.port, "/", NULL, 2000, &r, err, sizeof(err)),
        OFP_CLIENT_FAILED);
    srv_stop(&p);
    /* a CA file that cannot be read */
    ofp_client_options o = {.ca_file = "/nonexistent/ca.pem"};
    assert_null(ofp_client_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "CA file"));
    ofp_client_free(trusting);
    ofp_client_free(system_store);
    SSL_CTX_free(stls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signed_delivery_sent),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_private_refused),
        cmocka_unit_test(test_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
