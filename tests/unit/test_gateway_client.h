/* A minimal HTTP/1.1 client for the gateway tests: raw bytes out, one response in (status,
 * headers, a Content-Length body), on a connection that can be kept for keep-alive. Include
 * after cmocka.h. */
#ifndef OF_TEST_GATEWAY_CLIENT_H
#define OF_TEST_GATEWAY_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef struct http_resp {
    int status; /* 0: no response (closed or timed out) */
    char *head; /* status line and headers, NUL-terminated */
    char *body; /* NUL-terminated */
    size_t body_len;
    int closed; /* the server closed the connection after this response */
} http_resp;

typedef struct http_conn {
    int fd;
    char *buf; /* bytes read past the last response */
    size_t len, cap;
} http_conn;

static void resp_free(http_resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static int conn_open(http_conn *c, int port)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

static void conn_close(http_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

/* Sends everything; 0, or -1 when the server closed its side (EPIPE, ECONNRESET). */
static int conn_send(http_conn *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads more into c->buf within timeout_ms. >0 bytes, 0 at EOF, -1 on timeout or error. */
static ssize_t conn_fill(http_conn *c, int timeout_ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, timeout_ms);
    if (pr <= 0)
        return -1;
    if (c->cap - c->len < 65536) {
        size_t ncap = c->cap ? c->cap * 2 : 131072;
        char *n = realloc(c->buf, ncap);
        if (!n)
            return -1;
        c->buf = n;
        c->cap = ncap;
    }
    ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    if (r < 0)
        return errno == ECONNRESET ? 0 : -1;
    c->len += (size_t)r;
    return r;
}

/* The value of header `name` in a response head (first one), copied into out; 0 or -1. */
static int resp_header(const http_resp *r, const char *name, char *out, size_t size)
{
    if (!r->head)
        return -1;
    size_t n = strlen(name);
    for (const char *line = strstr(r->head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t vn = strcspn(v, "\r\n");
            snprintf(out, size, "%.*s", (int)vn, v);
            return 0;
        }
    }
    return -1;
}

/* Reads one response (timeout per wait). */
static void conn_read(http_conn *c, http_resp *r, int timeout_ms)
{
    memset(r, 0, sizeof(*r));
    char *end;
    for (;;) {
        if (c->buf) {
            c->buf[c->len] = '\0';
            if ((end = strstr(c->buf, "\r\n\r\n")))
                break;
        }
        ssize_t got = conn_fill(c, timeout_ms);
        if (got <= 0) {
            r->closed = got == 0;
            return;
        }
    }
    size_t head_len = (size_t)(end - c->buf) + 4;
    r->head = strndup(c->buf, head_len - 2);
    if (sscanf(r->head, "HTTP/%*d.%*d %d", &r->status) != 1)
        r->status = -1;
    char v[64];
    size_t body_len = 0;
    if (resp_header(r, "Content-Length", v, sizeof(v)) == 0)
        body_len = strtoul(v, NULL, 10);
    while (c->len < head_len + body_len) {
        ssize_t got = conn_fill(c, timeout_ms);
        if (got <= 0)
            break;
    }
    if (c->len < head_len + body_len)
        body_len = c->len - head_len;
    r->body = malloc(body_len + 1);
    memcpy(r->body, c->buf + head_len, body_len);
    r->body[body_len] = '\0';
    r->body_len = body_len;
    memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len);
    c->len -= head_len + body_len;
    if (resp_header(r, "Connection", v, sizeof(v)) == 0 && strcasecmp(v, "close") == 0)
        r->closed = 1;
}

/* 1 when the server closed the connection within timeout_ms (EOF), 0 otherwise. */
__attribute__((unused)) static int conn_wait_closed(http_conn *c, int timeout_ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        ssize_t got = conn_fill(c, timeout_ms);
        if (got == 0)
            return 1;
        if (got < 0)
            return 0;
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms)
            return 0;
    }
}

/* One request on a new connection: raw bytes, one response. */
static void http_raw(int port, const void *req, size_t len, http_resp *r)
{
    http_conn c;
    memset(r, 0, sizeof(*r));
    if (conn_open(&c, port) < 0)
        return;
    (void)conn_send(&c, req, len); /* the server may answer and close before all is sent */
    conn_read(&c, r, 5000);
    conn_close(&c);
}

/* A request built from parts: method, target, extra header lines ("A: b\r\n..." or NULL), body
 * (Content-Length added when body is not NULL). Connection: close. */
static void http_do(int port, const char *method, const char *target, const char *headers,
                    const char *body, http_resp *r)
{
    char *req = NULL;
    size_t blen = body ? strlen(body) : 0;
    int n;
    if (body)
        n = asprintf(&req,
                     "%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n%sContent-Length: "
                     "%zu\r\n\r\n%s",
                     method, target, headers ? headers : "", blen, body);
    else
        n = asprintf(&req, "%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n%s\r\n", method,
                     target, headers ? headers : "");
    assert_true(n > 0);
    http_raw(port, req, (size_t)n, r);
    free(req);
}

#endif
