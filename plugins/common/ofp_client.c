/*
 * The plugins' HTTP/1.0 client (ofp_client.h): plain sockets or OpenSSL, one deadline, bounded
 * answers, and optionally no private addresses.
 */
#include "ofp_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

struct ofp_client {
    int allow_private;
    char *user_agent;
    pthread_mutex_t lock; /* guards the lazy creation of tls */
    SSL_CTX *tls;         /* made with the client when a CA file is given, else on first use */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- URLs ----------------------------------------------------------------------------------- */

int ofp_url_parse(const char *url, unsigned flags, ofp_url *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    if (!url || !*url) {
        snprintf(err, err_size, "no url");
        return -1;
    }
    size_t total = strlen(url);
    if (total > OFP_URL_MAX) {
        snprintf(err, err_size, "url: longer than %d bytes", OFP_URL_MAX);
        return -1;
    }
    for (const char *c = url; *c; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch <= 0x20 || ch >= 0x7f) {
            snprintf(err, err_size,
                     "url: spaces, control and non-ASCII characters are not "
                     "allowed (percent-encode them)");
            return -1;
        }
        if (ch == '#') {
            snprintf(err, err_size, "url: a fragment (#) is not allowed");
            return -1;
        }
        if (ch == '?' && !(flags & OFP_URL_QUERY)) {
            snprintf(err, err_size, "url: a query (?) is not allowed");
            return -1;
        }
        if (ch == '\\') {
            snprintf(err, err_size, "url: a backslash is not allowed");
            return -1;
        }
    }
    const char *auth;
    if (strncasecmp(url, "http://", 7) == 0) {
        auth = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        if (!(flags & OFP_URL_HTTPS)) {
            snprintf(err, err_size, "url: https is not supported here");
            return -1;
        }
        out->tls = 1;
        auth = url + 8;
    } else {
        snprintf(err, err_size,
                 (flags & OFP_URL_HTTPS) ? "url: must start with http:// or https://"
                                         : "url: must start with http://");
        return -1;
    }
    size_t auth_len = strcspn(auth, "/?");
    if (memchr(auth, '@', auth_len)) {
        snprintf(err, err_size, "url: user info (user@host) is not allowed");
        return -1;
    }
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
        char tmp[64];
        struct in6_addr a6;
        if (host_len == 0 || host_len >= sizeof(tmp)) {
            snprintf(err, err_size, "url: bad IPv6 address");
            return -1;
        }
        memcpy(tmp, host, host_len);
        tmp[host_len] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1) {
            snprintf(err, err_size, "url: bad IPv6 address");
            return -1;
        }
    } else {
        const char *colon = memchr(auth, ':', auth_len);
        host_len = colon ? (size_t)(colon - auth) : auth_len;
        if (colon)
            port = colon + 1;
        for (size_t i = 0; i < host_len; i++) {
            char ch = host[i];
            if (!(isalnum((unsigned char)ch) || ch == '-' || ch == '.' || ch == '_')) {
                snprintf(err, err_size, "url: bad character in the host");
                return -1;
            }
        }
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
        snprintf(out->port, sizeof(out->port), "%s", out->tls ? "443" : "80");
    }
    if (*path == '\0')
        out->path[0] = '/';
    else if (*path == '?')
        snprintf(out->path, sizeof(out->path), "/%s", path);
    else
        snprintf(out->path, sizeof(out->path), "%s", path);
    return 0;
}

/* ---- private addresses ---------------------------------------------------------------------- */

static int v4_private(uint32_t a) /* host byte order */
{
    uint8_t b0 = (uint8_t)(a >> 24), b1 = (uint8_t)(a >> 16), b2 = (uint8_t)(a >> 8);
    return b0 == 0 ||                           /* this network, unspecified */
           b0 == 10 ||                          /* RFC 1918 */
           (b0 == 100 && (b1 & 0xC0) == 64) ||  /* 100.64/10 shared (CGNAT) */
           b0 == 127 ||                         /* loopback */
           (b0 == 169 && b1 == 254) ||          /* link-local (cloud metadata) */
           (b0 == 172 && (b1 & 0xF0) == 16) ||  /* RFC 1918 */
           (b0 == 192 && b1 == 0 && b2 == 0) || /* IETF protocol assignments */
           (b0 == 192 && b1 == 168) ||          /* RFC 1918 */
           (b0 == 198 && (b1 & 0xFE) == 18) ||  /* benchmarking */
           b0 >= 224;                           /* multicast, reserved, broadcast */
}

static int v6_private(const uint8_t *b)
{
    static const uint8_t zero[16] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1))
        return 1; /* :: and ::1 */
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 || memcmp(b, zero, 12) == 0) {
        uint32_t v4 = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
        return v4_private(v4);
    }
    return (b[0] == 0xfe && (b[1] & 0xC0) == 0x80) || /* fe80::/10 link-local */
           (b[0] == 0xfe && (b[1] & 0xC0) == 0xC0) || /* fec0::/10 site-local (deprecated) */
           (b[0] & 0xFE) == 0xfc ||                   /* fc00::/7 unique-local */
           b[0] == 0xff;                              /* multicast */
}

int ofp_addr_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        return v4_private(ntohl(s4->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        return v6_private(s6->sin6_addr.s6_addr);
    }
    return 1;
}

int ofp_addr_text_private(const char *text)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, text, &a4) == 1)
        return v4_private(ntohl(a4.s_addr));
    if (inet_pton(AF_INET6, text, &a6) == 1)
        return v6_private(a6.s6_addr);
    return -1;
}

static void addr_text(const struct sockaddr *sa, char *out, size_t size)
{
    const void *p = sa->sa_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (!inet_ntop(sa->sa_family, p, out, (socklen_t)size))
        snprintf(out, size, "?");
}

/* ---- the client ----------------------------------------------------------------------------- */

static void tls_error(const char *what, char *err, size_t err_size)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    else
        snprintf(buf, sizeof(buf), "no detail");
    ERR_clear_error();
    snprintf(err, err_size, "%s: %s", what, buf);
}

static SSL_CTX *tls_context(const char *ca, char *err, size_t err_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        tls_error("TLS context", err, err_size);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* An answer without Content-Length ends with the connection; one with it is checked. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    if (ca && *ca) {
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            char what[300];
            snprintf(what, sizeof(what), "cannot load the CA file %.200s", ca);
            tls_error(what, err, err_size);
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        tls_error("the system's CA store", err, err_size);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

ofp_client *ofp_client_new(const ofp_client_options *opts, char *err, size_t err_size)
{
    ofp_client *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->allow_private = opts ? opts->allow_private : 0;
    if (opts && opts->user_agent && !(c->user_agent = strdup(opts->user_agent))) {
        ofp_client_free(c);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (opts && opts->ca_file && *opts->ca_file &&
        !(c->tls = tls_context(opts->ca_file, err, err_size))) {
        ofp_client_free(c);
        return NULL;
    }
    return c;
}

void ofp_client_free(ofp_client *c)
{
    if (!c)
        return;
    if (c->tls)
        SSL_CTX_free(c->tls);
    pthread_mutex_destroy(&c->lock);
    free(c->user_agent);
    free(c);
}

/* One connection: a socket, and a TLS session over it for https. */
typedef struct conn {
    int fd;
    SSL *ssl;
} conn;

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

static ofp_client_rc connect_deadline(const ofp_client *c, const ofp_url *url, int64_t deadline,
                                      int *out, char *err, size_t err_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(url->host, url->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_size, "cannot resolve %s: %s", url->host, gai_strerror(rc));
        return OFP_CLIENT_FAILED;
    }
    int fd = -1, tried = 0, blocked = 0;
    char shown[64] = "";
    snprintf(err, err_size, "cannot connect to %s:%s", url->host, url->port);
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (!c->allow_private && ofp_addr_private(ai->ai_addr)) {
            blocked++;
            addr_text(ai->ai_addr, shown, sizeof(shown));
            continue;
        }
        tried++;
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
    if (fd < 0 && blocked && !tried) {
        snprintf(err, err_size,
                 "%s resolves to %s, a private, loopback or link-local address: refused "
                 "(allow_private_addresses)",
                 url->host, shown);
        return OFP_CLIENT_BLOCKED;
    }
    if (fd < 0)
        return OFP_CLIENT_FAILED;
    if (!c->allow_private) { /* the address actually connected to */
        struct sockaddr_storage peer;
        socklen_t pl = sizeof(peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 ||
            ofp_addr_private((struct sockaddr *)&peer)) {
            snprintf(err, err_size, "%s: connected to a private address: refused", url->host);
            close(fd);
            return OFP_CLIENT_BLOCKED;
        }
    }
    *out = fd;
    return OFP_CLIENT_OK;
}

static int tls_wait(conn *cn, int ret, int64_t deadline, const char *what, char *err,
                    size_t err_size)
{
    int e = SSL_get_error(cn->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        int w = wait_fd(cn->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (w > 0)
            return 0;
        snprintf(err, err_size, w == 0 ? "timeout %s" : "poll: %s",
                 w == 0 ? what : strerror(errno));
        return -1;
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(err, err_size, "%s: %s", what, errno ? strerror(errno) : "connection closed");
        return -1;
    }
    char w2[96];
    snprintf(w2, sizeof(w2), "TLS error %s", what);
    tls_error(w2, err, err_size);
    return -1;
}

static int tls_handshake(ofp_client *c, conn *cn, const ofp_url *url, int64_t deadline, char *err,
                         size_t err_size)
{
    ERR_clear_error();
    pthread_mutex_lock(&c->lock);
    if (!c->tls)
        c->tls = tls_context(NULL, err, err_size);
    SSL_CTX *ctx = c->tls;
    pthread_mutex_unlock(&c->lock);
    if (!ctx)
        return -1;
    cn->ssl = SSL_new(ctx);
    if (!cn->ssl || SSL_set_fd(cn->ssl, cn->fd) != 1) {
        tls_error("TLS session", err, err_size);
        return -1;
    }
    int literal = ofp_addr_text_private(url->host) >= 0;
    if (!literal && SSL_set_tlsext_host_name(cn->ssl, url->host) != 1) {
        tls_error("TLS server name", err, err_size);
        return -1;
    }
    /* Host name (or IP address) verification of the server's certificate. */
    if (SSL_set1_host(cn->ssl, url->host) != 1) {
        tls_error("TLS host name", err, err_size);
        return -1;
    }
    for (;;) {
        int r = SSL_connect(cn->ssl);
        if (r == 1)
            return 0;
        long v = SSL_get_verify_result(cn->ssl);
        if (v != X509_V_OK) {
            snprintf(err, err_size, "TLS: the certificate of %s is not trusted: %s", url->host,
                     X509_verify_cert_error_string(v));
            ERR_clear_error();
            return -1;
        }
        if (tls_wait(cn, r, deadline, "in the TLS handshake", err, err_size) != 0)
            return -1;
    }
}

/* SSL_write over a socket may raise SIGPIPE: block it on this thread meanwhile, and swallow one
 * raised by this write. */
static int tls_write(conn *cn, const char *buf, size_t len)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int n = SSL_write(cn->ssl, buf, (int)(len > 1 << 20 ? 1 << 20 : len));
    int saved = errno;
    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) &&
        !sigismember(&old, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return n;
}

static int send_all(conn *cn, const char *buf, size_t len, int64_t deadline, char *err,
                    size_t err_size)
{
    size_t off = 0;
    while (off < len) {
        if (cn->ssl) {
            ERR_clear_error();
            int n = tls_write(cn, buf + off, len - off);
            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            if (tls_wait(cn, n, deadline, "sending the request", err, err_size) != 0)
                return -1;
            continue;
        }
        ssize_t n = send(cn->fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(cn->fd, POLLOUT, deadline);
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

/* Reads what is there: > 0 bytes, 0 at the end of the connection, -1 with a reason. Waits up to
 * the deadline for something to read. */
static ssize_t recv_some(conn *cn, char *buf, size_t cap, int64_t deadline, char *err,
                         size_t err_size)
{
    for (;;) {
        if (cn->ssl) {
            ERR_clear_error();
            int n = SSL_read(cn->ssl, buf, (int)(cap > 1 << 20 ? 1 << 20 : cap));
            if (n > 0)
                return n;
            int e = SSL_get_error(cn->ssl, n);
            if (e == SSL_ERROR_ZERO_RETURN ||
                (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0))
                return 0;
            if (tls_wait(cn, n, deadline, "waiting for the response", err, err_size) != 0)
                return -1;
            continue;
        }
        ssize_t n = recv(cn->fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(err, err_size, "reading the response: %s", strerror(errno));
            return -1;
        }
        int w = wait_fd(cn->fd, POLLIN, deadline);
        if (w <= 0) {
            snprintf(err, err_size, w == 0 ? "timeout waiting for the response" : "poll: %s",
                     strerror(errno));
            return -1;
        }
    }
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

static int read_response(conn *cn, int64_t deadline, ofp_response *resp, char *err, size_t err_size)
{
    size_t cap = OFP_CLIENT_MAX_HEAD + OFP_CLIENT_MAX_BODY + 1;
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
        ssize_t n = recv_some(cn, buf + len, cap - 1 - len, deadline, err, err_size);
        if (n < 0)
            goto out;
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
                if (len > OFP_CLIENT_MAX_HEAD) {
                    snprintf(err, err_size, "response headers too large");
                    goto out;
                }
                continue;
            }
            head_len = (size_t)(e - buf);
            body_off = head_len + 4;
            if (head_len > OFP_CLIENT_MAX_HEAD) {
                snprintf(err, err_size, "response headers too large");
                goto out;
            }
            if (parse_head(buf, head_len, &status, &content_length, err, err_size) != 0)
                goto out;
            if (content_length > OFP_CLIENT_MAX_BODY) {
                snprintf(err, err_size, "response body too large (%" PRId64 " bytes)",
                         content_length);
                goto out;
            }
        }
        if (len - body_off > OFP_CLIENT_MAX_BODY) {
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

/* 1 when every header line is "Name: value" without CR or LF. */
static int headers_ok(const char *const *headers)
{
    for (size_t i = 0; headers && headers[i]; i++) {
        const char *h = headers[i], *colon = strchr(h, ':');
        if (!colon || colon == h || strpbrk(h, "\r\n"))
            return 0;
    }
    return 1;
}

ofp_client_rc ofp_client_post(ofp_client *c, const ofp_url *url, const char *suffix,
                              const char *const *headers, const char *body, size_t body_len,
                              int64_t timeout_ms, ofp_response *resp, char *err, size_t err_size)
{
    memset(resp, 0, sizeof(*resp));
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 1);
    if (!headers_ok(headers)) {
        snprintf(err, err_size, "bad request header");
        return OFP_CLIENT_FAILED;
    }
    const char *dflt = url->tls ? "443" : "80";
    int v6 = strchr(url->host, ':') != NULL, port_shown = strcmp(url->port, dflt) != 0;
    size_t cap = strlen(url->path) + (suffix ? strlen(suffix) : 0) + 1024;
    for (size_t i = 0; headers && headers[i]; i++)
        cap += strlen(headers[i]) + 2;
    char *head = malloc(cap);
    if (!head) {
        snprintf(err, err_size, "out of memory");
        return OFP_CLIENT_FAILED;
    }
    const char *base = strcmp(url->path, "/") == 0 && suffix && *suffix ? "" : url->path;
    int n = snprintf(head, cap,
                     "POST %s%s HTTP/1.0\r\n"
                     "Host: %s%s%s%s%s\r\n"
                     "%s%s%s"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n",
                     base, suffix ? suffix : "", v6 ? "[" : "", url->host, v6 ? "]" : "",
                     port_shown ? ":" : "", port_shown ? url->port : "",
                     c->user_agent ? "User-Agent: " : "", c->user_agent ? c->user_agent : "",
                     c->user_agent ? "\r\n" : "", body_len);
    size_t len = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; n > 0 && headers && headers[i]; i++)
        len += (size_t)snprintf(head + len, cap - len, "%s\r\n", headers[i]);
    len += (size_t)snprintf(head + len, cap - len, "\r\n");
    conn cn = {.fd = -1};
    ofp_client_rc rc = connect_deadline(c, url, deadline, &cn.fd, err, err_size);
    if (rc == OFP_CLIENT_OK) {
        rc = OFP_CLIENT_FAILED;
        if ((!url->tls || tls_handshake(c, &cn, url, deadline, err, err_size) == 0) &&
            send_all(&cn, head, len, deadline, err, err_size) == 0 &&
            send_all(&cn, body, body_len, deadline, err, err_size) == 0 &&
            read_response(&cn, deadline, resp, err, err_size) == 0)
            rc = OFP_CLIENT_OK;
    }
    if (cn.ssl) /* no close_notify: the request said Connection: close */
        SSL_free(cn.ssl);
    if (cn.fd >= 0)
        close(cn.fd);
    free(head);
    ERR_clear_error();
    return rc;
}
