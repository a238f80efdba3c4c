/*
 * payment plugin: the HTTP provider over plain sockets. One request per connection (HTTP/1.0
 * with Host and Connection: close, so the answer is never chunked), one deadline for connecting,
 * sending and receiving, bounded answers. Only http://: a provider reached over TLS goes through
 * a local proxy (docs/payment.md).
 */
#include "provider.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pay_url_parse(const char *url, pay_url *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    if (!url || !*url) {
        snprintf(err, err_size, "no url");
        return -1;
    }
    for (const char *c = url; *c; c++) {
        if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '?' || *c == '#' || *c == '@') {
            snprintf(err, err_size,
                     "url: spaces, control characters, user info, query and "
                     "fragment are not allowed");
            return -1;
        }
    }
    if (strncasecmp(url, "https://", 8) == 0) {
        snprintf(err, err_size,
                 "url: https is not supported; put a local TLS proxy in front of "
                 "the provider and give its http:// address");
        return -1;
    }
    if (strncasecmp(url, "http://", 7) != 0) {
        snprintf(err, err_size, "url: must start with http://");
        return -1;
    }
    const char *auth = url + 7;
    size_t auth_len = strcspn(auth, "/");
    const char *path = auth + auth_len;
    const char *host = auth, *port = NULL;
    size_t host_len;
    if (*auth == '[') {
        const char *close = memchr(auth, ']', auth_len);
        if (!close) {
            snprintf(err, err_size, "url: unterminated [ in the host");
            return -1;
        }
        host = auth + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < path) {
            if (close[1] != ':') {
                snprintf(err, err_size, "url: bad host");
                return -1;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(auth, ':', auth_len);
        host_len = colon ? (size_t)(colon - auth) : auth_len;
        if (colon)
            port = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof(out->host)) {
        snprintf(err, err_size, "url: no host, or a host too long");
        return -1;
    }
    memcpy(out->host, host, host_len);
    if (port) {
        size_t port_len = (size_t)(path - port);
        long v = 0;
        if (port_len == 0 || port_len > 5) {
            snprintf(err, err_size, "url: bad port");
            return -1;
        }
        for (size_t i = 0; i < port_len; i++) {
            if (!isdigit((unsigned char)port[i])) {
                snprintf(err, err_size, "url: bad port");
                return -1;
            }
            v = v * 10 + (port[i] - '0');
        }
        if (v < 1 || v > 65535) {
            snprintf(err, err_size, "url: port out of range");
            return -1;
        }
        snprintf(out->port, sizeof(out->port), "%ld", v);
    } else {
        snprintf(out->port, sizeof(out->port), "80");
    }
    size_t path_len = strlen(path);
    while (path_len > 1 && path[path_len - 1] == '/')
        path_len--;
    if (path_len + 64 >= sizeof(out->path)) {
        snprintf(err, err_size, "url: path too long");
        return -1;
    }
    if (path_len == 0)
        out->path[0] = '/';
    else
        memcpy(out->path, path, path_len);
    return 0;
}

/* 1 when fd is ready for `events`, 0 at the deadline, -1 on error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static int connect_deadline(const pay_url *url, int64_t deadline, char *err, size_t err_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(url->host, url->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_size, "cannot resolve %s: %s", url->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    snprintf(err, err_size, "cannot connect to %s:%s", url->host, url->port);
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        int s = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0)
            continue;
        if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0) {
            fd = s;
            break;
        }
        if (errno != EINPROGRESS) {
            snprintf(err, err_size, "cannot connect to %s:%s: %s", url->host, url->port,
                     strerror(errno));
            close(s);
            continue;
        }
        int w = wait_fd(s, POLLOUT, deadline);
        if (w == 0) {
            snprintf(err, err_size, "timeout connecting to %s:%s", url->host, url->port);
            close(s);
            break; /* the deadline is spent */
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (w < 0 || getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            snprintf(err, err_size, "cannot connect to %s:%s: %s", url->host, url->port,
                     strerror(soerr ? soerr : errno));
            close(s);
            continue;
        }
        fd = s;
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *buf, size_t len, int64_t deadline, char *err,
                    size_t err_size)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(fd, POLLOUT, deadline);
            if (w > 0)
                continue;
            snprintf(err, err_size, w == 0 ? "timeout sending the request" : "poll: %s",
                     strerror(errno));
            return -1;
        }
        snprintf(err, err_size, "sending the request: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The status line and headers of `head` (without the final blank line): the status, and the
 * Content-Length (-1 when absent). 0, or -1 with a reason. */
static int parse_head(const char *head, size_t len, int *status, int64_t *content_length, char *err,
                      size_t err_size)
{
    *content_length = -1;
    if (len < 12 || memcmp(head, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)head[7]) ||
        head[8] != ' ' || !isdigit((unsigned char)head[9]) || !isdigit((unsigned char)head[10]) ||
        !isdigit((unsigned char)head[11]) || (len > 12 && head[12] != ' ' && head[12] != '\r')) {
        snprintf(err, err_size, "malformed response: not an HTTP/1.x status line");
        return -1;
    }
    *status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    if (*status < 100 || *status > 599) {
        snprintf(err, err_size, "malformed response: status %d", *status);
        return -1;
    }
    const char *line = memchr(head, '\n', len);
    const char *end = head + len;
    while (line && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        size_t n = (size_t)(eol - line);
        if (n > 0 && line[n - 1] == '\r')
            n--;
        const char *colon = memchr(line, ':', n);
        if (!colon || colon == line) {
            snprintf(err, err_size, "malformed response: a header line without a name");
            return -1;
        }
        size_t name_len = (size_t)(colon - line);
        const char *v = colon + 1, *vend = line + n;
        while (v < vend && (*v == ' ' || *v == '\t'))
            v++;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        if (name_len == 14 && strncasecmp(line, "content-length", 14) == 0) {
            int64_t cl = 0;
            if (v == vend || vend - v > 15) {
                snprintf(err, err_size, "malformed response: bad Content-Length");
                return -1;
            }
            for (const char *d = v; d < vend; d++) {
                if (!isdigit((unsigned char)*d)) {
                    snprintf(err, err_size, "malformed response: bad Content-Length");
                    return -1;
                }
                cl = cl * 10 + (*d - '0');
            }
            if (*content_length >= 0 && *content_length != cl) {
                snprintf(err, err_size, "malformed response: conflicting Content-Length");
                return -1;
            }
            *content_length = cl;
        } else if (name_len == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
            snprintf(err, err_size, "unsupported response: Transfer-Encoding");
            return -1;
        }
        line = eol < end ? eol : NULL;
    }
    return 0;
}

static int read_response(int fd, int64_t deadline, pay_http_response *resp, char *err,
                         size_t err_size)
{
    size_t cap = PAY_HTTP_MAX_HEAD + PAY_HTTP_MAX_BODY + 1;
    char *buf = malloc(cap);
    if (!buf) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    size_t len = 0, head_len = 0, body_off = 0;
    int status = 0, rc = -1;
    int64_t content_length = -1;
    for (;;) {
        if (head_len > 0 && content_length >= 0 && len - body_off >= (size_t)content_length)
            break; /* complete */
        if (len == cap - 1) {
            snprintf(err, err_size, "response too large");
            goto out;
        }
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            snprintf(err, err_size, w == 0 ? "timeout waiting for the response" : "poll: %s",
                     strerror(errno));
            goto out;
        }
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            snprintf(err, err_size, "reading the response: %s", strerror(errno));
            goto out;
        }
        if (n == 0) { /* end of the connection */
            if (head_len == 0) {
                snprintf(err, err_size,
                         len ? "connection closed in the response headers"
                             : "connection closed without a response");
                goto out;
            }
            if (content_length >= 0) {
                snprintf(err, err_size, "connection closed after %zu of %" PRId64 " body bytes",
                         len - body_off, content_length);
                goto out;
            }
            break; /* no Content-Length: the body ends with the connection */
        }
        len += (size_t)n;
        if (head_len == 0) {
            buf[len] = '\0';
            char *e = memmem(buf, len, "\r\n\r\n", 4);
            if (!e) {
                if (len > PAY_HTTP_MAX_HEAD) {
                    snprintf(err, err_size, "response headers too large");
                    goto out;
                }
                continue;
            }
            head_len = (size_t)(e - buf);
            body_off = head_len + 4;
            if (head_len > PAY_HTTP_MAX_HEAD) {
                snprintf(err, err_size, "response headers too large");
                goto out;
            }
            if (parse_head(buf, head_len, &status, &content_length, err, err_size) != 0)
                goto out;
            if (content_length > PAY_HTTP_MAX_BODY) {
                snprintf(err, err_size, "response body too large (%" PRId64 " bytes)",
                         content_length);
                goto out;
            }
        }
        if (len - body_off > PAY_HTTP_MAX_BODY) {
            snprintf(err, err_size, "response body too large");
            goto out;
        }
    }
    size_t body_len = content_length >= 0 ? (size_t)content_length : len - body_off;
    resp->body = malloc(body_len + 1);
    if (!resp->body) {
        snprintf(err, err_size, "out of memory");
        goto out;
    }
    memcpy(resp->body, buf + body_off, body_len);
    resp->body[body_len] = '\0';
    resp->len = body_len;
    resp->status = status;
    rc = 0;
out:
    free(buf);
    return rc;
}

int pay_http_post(const pay_url *url, const char *path, const char *body, size_t body_len,
                  const char *api_key, int64_t timeout_ms, pay_http_response *resp, char *err,
                  size_t err_size)
{
    memset(resp, 0, sizeof(*resp));
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 1);
    char full[sizeof(url->path) + 64];
    const char *base = strcmp(url->path, "/") == 0 && path && *path ? "" : url->path;
    snprintf(full, sizeof(full), "%s%s", base, path ? path : "");
    int v6 = strchr(url->host, ':') != NULL;
    char head[2048 + sizeof(full)];
    int n = snprintf(head, sizeof(head),
                     "POST %s HTTP/1.0\r\n"
                     "Host: %s%s%s%s%s\r\n"
                     "User-Agent: orderflow-payment/1.0\r\n"
                     "Accept: application/json\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "%s%.512s%s"
                     "\r\n",
                     full, v6 ? "[" : "", url->host, v6 ? "]" : "",
                     strcmp(url->port, "80") ? ":" : "", strcmp(url->port, "80") ? url->port : "",
                     body_len, api_key && *api_key ? "Authorization: Bearer " : "",
                     api_key && *api_key ? api_key : "", api_key && *api_key ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(head)) {
        snprintf(err, err_size, "request too large");
        return -1;
    }
    int fd = connect_deadline(url, deadline, err, err_size);
    if (fd < 0)
        return -1;
    int rc = -1;
    if (send_all(fd, head, (size_t)n, deadline, err, err_size) == 0 &&
        send_all(fd, body, body_len, deadline, err, err_size) == 0)
        rc = read_response(fd, deadline, resp, err, err_size);
    close(fd);
    return rc;
}

static void set_retry(pay_result *out, const char *what, const char *why)
{
    out->verdict = PAY_RETRY;
    snprintf(out->reason, sizeof(out->reason), "%.16s: %.200s", what, why);
}

/* The JSON object of a response body, or NULL. */
static json_t *body_object(const pay_http_response *r)
{
    json_t *doc = json_loadb(r->body, r->len, 0, NULL);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static const char *str_field(const json_t *doc, const char *name)
{
    const json_t *v = doc ? json_object_get(doc, name) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int post_json(const pay_url *url, const char *path, json_t *doc, const char *api_key,
                     int64_t timeout_ms, pay_http_response *resp, pay_result *out, const char *what)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        set_retry(out, what, "out of memory");
        return -1;
    }
    char err[PAY_REASON_MAX];
    int rc =
        pay_http_post(url, path, text, strlen(text), api_key, timeout_ms, resp, err, sizeof(err));
    free(text);
    if (rc != 0)
        set_retry(out, what, err);
    return rc;
}

void pay_http_charge(const pay_url *url, const char *api_key, int64_t timeout_ms,
                     const pay_charge *c, pay_result *out)
{
    memset(out, 0, sizeof(*out));
    json_t *req = json_pack("{s:s, s:I, s:s, s:s}", "order_id", c->order_id, "amount_cents",
                            (json_int_t)c->amount_cents, "currency", c->currency, "idempotency_key",
                            c->order_id);
    pay_http_response resp;
    if (post_json(url, "", req, api_key, timeout_ms, &resp, out, "charge") != 0)
        return;
    json_t *doc = body_object(&resp);
    const char *status = str_field(doc, "status");
    if (resp.status == 200) {
        const char *ref = str_field(doc, "ref");
        if (status && strcmp(status, "captured") == 0 && ref && *ref) {
            out->verdict = PAY_CAPTURED;
            snprintf(out->ref, sizeof(out->ref), "%s", ref);
        } else {
            set_retry(out, "charge", "HTTP 200 without {\"status\":\"captured\",\"ref\":...}");
        }
    } else if (resp.status == 402) {
        const char *reason = str_field(doc, "reason");
        out->verdict = PAY_DECLINED;
        snprintf(out->reason, sizeof(out->reason), "%s",
                 reason && *reason ? reason : "declined by the provider");
    } else {
        char why[64];
        snprintf(why, sizeof(why), "provider answered HTTP %d", resp.status);
        set_retry(out, "charge", why);
    }
    json_decref(doc);
    free(resp.body);
}

void pay_http_refund(const pay_url *url, const char *api_key, int64_t timeout_ms,
                     const char *order_id, pay_result *out)
{
    memset(out, 0, sizeof(*out));
    char key[128];
    snprintf(key, sizeof(key), "%.64s:refund", order_id);
    json_t *req = json_pack("{s:s, s:s}", "order_id", order_id, "idempotency_key", key);
    pay_http_response resp;
    if (post_json(url, "/refunds", req, api_key, timeout_ms, &resp, out, "refund") != 0)
        return;
    if (resp.status >= 200 && resp.status < 300) {
        out->verdict = PAY_CAPTURED;
        json_t *doc = body_object(&resp);
        const char *ref = str_field(doc, "ref");
        snprintf(out->ref, sizeof(out->ref), "%s", ref ? ref : "");
        json_decref(doc);
    } else {
        char why[64];
        snprintf(why, sizeof(why), "provider answered HTTP %d", resp.status);
        set_retry(out, "refund", why);
    }
    free(resp.body);
}
