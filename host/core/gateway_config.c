/* The `http:` section of the host configuration. */
#include "gateway.h"

#include "options.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const http_keys[] = {
    "listen",     "threads", "max_body",   "request_timeout",
    "keep_alive", "tls",     "rate_limit", "websocket_connections",
    NULL};
static const char *const tls_keys[] = {"cert", "key", NULL};
static const char *const rate_keys[] = {"per_principal", "per_address", "burst", NULL};

#define MAX_BURST 1000000

int of_http_config_default(of_http_config *out)
{
    memset(out, 0, sizeof(*out));
    out->threads = OF_HTTP_DEFAULT_THREADS;
    out->max_body = OF_HTTP_DEFAULT_MAX_BODY;
    out->request_timeout_ms = OF_HTTP_DEFAULT_REQUEST_TIMEOUT_MS;
    out->keep_alive = 1;
    out->ws_connections = -1;
    if (!(out->listen = strdup(OF_HTTP_DEFAULT_LISTEN)))
        return -1;
    return 0;
}

void of_http_config_free(of_http_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->listen);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->file);
    cfg->listen = cfg->tls_cert = cfg->tls_key = cfg->file = NULL;
}

static int dup_or_null(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    return (*dst = strdup(src)) ? 0 : -1;
}

int of_http_config_copy(of_http_config *dst, const of_http_config *src)
{
    *dst = *src;
    dst->listen = dst->tls_cert = dst->tls_key = dst->file = NULL;
    if (dup_or_null(&dst->listen, src->listen) < 0 ||
        dup_or_null(&dst->tls_cert, src->tls_cert) < 0 ||
        dup_or_null(&dst->tls_key, src->tls_key) < 0 || dup_or_null(&dst->file, src->file) < 0) {
        of_http_config_free(dst);
        return -1;
    }
    return 0;
}

typedef struct hctx {
    const char *file;
    of_diag *diag;
} hctx;

static void herr(hctx *c, const of_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void herr(hctx *c, const of_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    of_diag_addv(c->diag, OF_SEV_ERROR, c->file, at ? at->line : 0, at ? at->column : 0, fmt, ap);
    va_end(ap);
}

/* A non-null scalar; reports "http 'KEY' must be WHAT; got ..." otherwise. */
static int want_scalar(hctx *c, const of_ynode *n, const char *key, const char *what)
{
    if (of_yis_string(n))
        return 0;
    char got[96];
    of_ynode_describe(n, got, sizeof(got));
    herr(c, n, "http '%s' must be %s; got %s", key, what, got);
    return -1;
}

/* A mapping (1), null (0, when null_ok) or a reported error (-1). */
static int want_map(hctx *c, const of_ynode *n, const char *key, int null_ok)
{
    if (n->kind == OF_Y_MAP)
        return 1;
    if (null_ok && n->kind == OF_Y_SCALAR && n->is_null)
        return 0;
    char got[96];
    of_ynode_describe(n, got, sizeof(got));
    herr(c, n, "http '%s' must be a mapping; got %s", key, got);
    return -1;
}

/* "HOST:PORT" with an IPv4 address or a bracketed IPv6 one. NULL or the problem in why. */
static const char *listen_problem(const char *s, char *why, size_t size)
{
    char host[64];
    const char *port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close) {
            snprintf(why, size, "has an unclosed '['");
            return why;
        }
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= sizeof(host) || close[1] != ':') {
            snprintf(why, size, "is not [IPV6]:PORT");
            return why;
        }
        memcpy(host, s + 1, n);
        host[n] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1) {
            snprintf(why, size, "has an invalid IPv6 address '%.60s'", host);
            return why;
        }
        port = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) {
            snprintf(why, size, "has no port");
            return why;
        }
        size_t n = (size_t)(colon - s);
        if (n == 0 || n >= sizeof(host)) {
            snprintf(why, size, "has no address before the port");
            return why;
        }
        memcpy(host, s, n);
        host[n] = '\0';
        struct in_addr a4;
        if (strchr(host, ':')) {
            snprintf(why, size, "has an IPv6 address without brackets (write [%s]:PORT)", host);
            return why;
        }
        if (inet_pton(AF_INET, host, &a4) != 1) {
            snprintf(why, size,
                     "has '%.60s', which is not an IPv4 address (a host name is not "
                     "accepted: write 127.0.0.1 or 0.0.0.0)",
                     host);
            return why;
        }
        port = colon + 1;
    }
    char *end;
    errno = 0;
    long v = strtol(port, &end, 10);
    if (!*port || *end || errno || v < 0 || v > 65535 || *port == '+' || *port == '-' ||
        *port == ' ') {
        snprintf(why, size, "has an invalid port '%.20s' (0..65535; 0 picks a free port)", port);
        return why;
    }
    return NULL;
}

static void parse_listen(hctx *c, of_http_config *out, const of_ynode *n)
{
    out->listen_line = n->line;
    out->listen_column = n->column;
    if (want_scalar(c, n, "listen", "an address such as 127.0.0.1:8080") < 0)
        return;
    char why[200];
    if (listen_problem(n->str, why, sizeof(why))) {
        herr(c, n,
             "http 'listen' '%.80s' %s; expected ADDRESS:PORT such as 127.0.0.1:8080, "
             "0.0.0.0:8080 or [::1]:8080",
             n->str, why);
        return;
    }
    char *s = strdup(n->str);
    if (!s) {
        herr(c, n, "out of memory");
        return;
    }
    free(out->listen);
    out->listen = s;
}

static void parse_threads(hctx *c, of_http_config *out, const of_ynode *n)
{
    if (want_scalar(c, n, "threads", "an integer 1..256") < 0)
        return;
    int64_t v;
    char why[256];
    if (of_parse_int(n->str, &v, why, sizeof(why)) < 0) {
        herr(c, n, "http 'threads': %s", why);
        return;
    }
    if (v < 1 || v > OF_HTTP_MAX_THREADS) {
        herr(c, n, "http 'threads' must be 1..%d; got %lld", OF_HTTP_MAX_THREADS, (long long)v);
        return;
    }
    out->threads = (int)v;
}

static void parse_ws_connections(hctx *c, of_http_config *out, const of_ynode *n)
{
    if (want_scalar(c, n, "websocket_connections", "an integer 0..255") < 0)
        return;
    int64_t v;
    char why[256];
    if (of_parse_int(n->str, &v, why, sizeof(why)) < 0) {
        herr(c, n, "http 'websocket_connections': %s", why);
        return;
    }
    if (v < 0 || v >= OF_HTTP_MAX_THREADS) {
        herr(c, n, "http 'websocket_connections' must be 0..%d; got %lld", OF_HTTP_MAX_THREADS - 1,
             (long long)v);
        return;
    }
    out->ws_connections = (int)v;
    out->ws_line = n->line;
    out->ws_column = n->column;
}

static void parse_max_body(hctx *c, of_http_config *out, const of_ynode *n)
{
    if (want_scalar(c, n, "max_body", "a size such as 1MiB") < 0)
        return;
    uint64_t v;
    char why[256];
    if (of_parse_size(n->str, &v, why, sizeof(why)) < 0) {
        herr(c, n, "http 'max_body': %s", why);
        return;
    }
    if (v < 1 || v > OF_HTTP_MAX_MAX_BODY) {
        char shown[64];
        of_format_size(v, shown, sizeof(shown));
        herr(c, n, "http 'max_body' must be between 1 byte and 64MiB; got %s", shown);
        return;
    }
    out->max_body = v;
}

static void parse_timeout(hctx *c, of_http_config *out, const of_ynode *n)
{
    if (want_scalar(c, n, "request_timeout", "a duration such as 10s") < 0)
        return;
    int64_t ms;
    char why[256];
    if (of_parse_duration_ms(n->str, &ms, why, sizeof(why)) < 0) {
        herr(c, n, "http 'request_timeout': %s", why);
        return;
    }
    if (ms < OF_HTTP_MIN_REQUEST_TIMEOUT_MS || ms > OF_HTTP_MAX_REQUEST_TIMEOUT_MS) {
        char shown[64];
        of_format_duration_ms(ms, shown, sizeof(shown));
        herr(c, n, "http 'request_timeout' must be between 100ms and 10m; got %s", shown);
        return;
    }
    out->request_timeout_ms = ms;
}

static void parse_keep_alive(hctx *c, of_http_config *out, const of_ynode *n)
{
    if (want_scalar(c, n, "keep_alive", "true or false") < 0)
        return;
    int b;
    char why[256];
    if (of_parse_bool(n->str, &b, why, sizeof(why)) < 0) {
        herr(c, n, "http 'keep_alive': %s", why);
        return;
    }
    out->keep_alive = b;
}

/* A path relative to the configuration file's folder. */
static char *resolve(const char *file, const char *p)
{
    const char *slash = file ? strrchr(file, '/') : NULL;
    if (p[0] == '/' || !slash)
        return strdup(p);
    char *out = NULL;
    if (asprintf(&out, "%.*s/%s", (int)(slash - file), file, p) < 0)
        return NULL;
    return out;
}

static char *tls_file(hctx *c, const of_ynode *tls, const char *key)
{
    const of_ynode *n = of_ymap_get(tls, key);
    if (!n) {
        herr(c, tls, "http 'tls' needs both 'cert' and 'key' (PEM files); '%s' is missing", key);
        return NULL;
    }
    char what[64];
    snprintf(what, sizeof(what), "tls.%s", key);
    if (want_scalar(c, n, what, "the path of a PEM file") < 0)
        return NULL;
    if (n->len == 0) {
        herr(c, n, "http 'tls.%s' must not be empty", key);
        return NULL;
    }
    char *path = resolve(c->file, n->str);
    if (!path) {
        herr(c, n, "out of memory");
        return NULL;
    }
    if (access(path, R_OK) != 0) {
        herr(c, n, "http 'tls.%s' file '%s' cannot be read: %s", key, path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

static void parse_tls(hctx *c, of_http_config *out, const of_ynode *n)
{
    out->tls_line = n->line;
    out->tls_column = n->column;
    int r = want_map(c, n, "tls", 0);
    if (r <= 0)
        return;
    of_ymap_check_keys(n, tls_keys, "http.tls", c->file, c->diag);
    char *cert = tls_file(c, n, "cert"), *key = tls_file(c, n, "key");
    if (!cert || !key) {
        free(cert);
        free(key);
        return;
    }
    out->tls_cert = cert;
    out->tls_key = key;
}

/* "N/s", "N/m" or "N/h" as requests a second. */
static int parse_rate(hctx *c, const of_ynode *n, const char *key, double *out)
{
    char what[64];
    snprintf(what, sizeof(what), "rate_limit.%s", key);
    if (want_scalar(c, n, what, "a rate such as 100/s") < 0)
        return -1;
    const char *slash = strrchr(n->str, '/');
    double per = 0;
    if (slash && (strcmp(slash + 1, "s") == 0 || strcmp(slash + 1, "sec") == 0))
        per = 1;
    else if (slash && (strcmp(slash + 1, "m") == 0 || strcmp(slash + 1, "min") == 0))
        per = 60;
    else if (slash && strcmp(slash + 1, "h") == 0)
        per = 3600;
    if (per == 0) {
        herr(c, n,
             "http 'rate_limit.%s' must be a rate such as 100/s, 600/m or 1000/h; got '%.40s'", key,
             n->str);
        return -1;
    }
    char num[64];
    size_t len = (size_t)(slash - n->str);
    if (len == 0 || len >= sizeof(num)) {
        herr(c, n, "http 'rate_limit.%s' has no number before '/'; write e.g. 100/s", key);
        return -1;
    }
    memcpy(num, n->str, len);
    num[len] = '\0';
    double v;
    char why[256];
    if (of_parse_double(num, &v, why, sizeof(why)) < 0) {
        herr(c, n, "http 'rate_limit.%s': %s", key, why);
        return -1;
    }
    if (!(v > 0) || !isfinite(v) || v / per > 1e9) {
        herr(c, n,
             "http 'rate_limit.%s' must be more than 0 and at most 1e9/s (leave the key out for "
             "no limit); got '%.40s'",
             key, n->str);
        return -1;
    }
    *out = v / per;
    return 0;
}

static void parse_rate_limit(hctx *c, of_http_config *out, const of_ynode *n)
{
    int r = want_map(c, n, "rate_limit", 0);
    if (r <= 0)
        return;
    of_ymap_check_keys(n, rate_keys, "http.rate_limit", c->file, c->diag);
    const of_ynode *pp = of_ymap_get(n, "per_principal"), *pa = of_ymap_get(n, "per_address"),
                   *b = of_ymap_get(n, "burst");
    of_http_rate_limit rl = {0};
    int bad = 0;
    if (pp && parse_rate(c, pp, "per_principal", &rl.per_principal) < 0)
        bad = 1;
    if (pa && parse_rate(c, pa, "per_address", &rl.per_address) < 0)
        bad = 1;
    if (!pp && !pa) {
        herr(c, n,
             "http 'rate_limit' needs 'per_principal' or 'per_address' (or both), e.g. "
             "per_address: 50/s");
        bad = 1;
    }
    if (b) {
        int64_t v;
        char why[256];
        if (want_scalar(c, b, "rate_limit.burst", "an integer 1..1000000") < 0) {
            bad = 1;
        } else if (of_parse_int(b->str, &v, why, sizeof(why)) < 0) {
            herr(c, b, "http 'rate_limit.burst': %s", why);
            bad = 1;
        } else if (v < 1 || v > MAX_BURST) {
            herr(c, b, "http 'rate_limit.burst' must be 1..%d; got %lld", MAX_BURST, (long long)v);
            bad = 1;
        } else {
            rl.burst = v;
        }
    }
    if (bad)
        return;
    out->has_rate_limit = 1;
    out->rate_limit = rl;
}

void of_http_config_parse(of_http_config *out, const of_ynode *node, const char *file,
                          of_diag *diag)
{
    hctx c = {.file = file, .diag = diag};
    if (of_http_config_default(out) < 0 || (file && !(out->file = strdup(file)))) {
        of_diag_add(diag, OF_SEV_ERROR, file, node ? node->line : 0, node ? node->column : 0,
                    "out of memory");
        return;
    }
    if (!node)
        return;
    out->enabled = 1;
    out->line = out->listen_line = node->line;
    out->column = out->listen_column = node->column;
    if (node->kind == OF_Y_SCALAR && node->is_null)
        return;
    if (node->kind != OF_Y_MAP) {
        char got[96];
        of_ynode_describe(node, got, sizeof(got));
        herr(&c, node,
             "'http' must be a mapping (listen, threads, max_body, request_timeout, keep_alive, "
             "tls, rate_limit, websocket_connections); got %s",
             got);
        return;
    }
    of_ymap_check_keys(node, http_keys, "http", file, diag);
    const of_ynode *n;
    if ((n = of_ymap_get(node, "listen")))
        parse_listen(&c, out, n);
    if ((n = of_ymap_get(node, "threads")))
        parse_threads(&c, out, n);
    if ((n = of_ymap_get(node, "max_body")))
        parse_max_body(&c, out, n);
    if ((n = of_ymap_get(node, "request_timeout")))
        parse_timeout(&c, out, n);
    if ((n = of_ymap_get(node, "keep_alive")))
        parse_keep_alive(&c, out, n);
    if ((n = of_ymap_get(node, "tls")))
        parse_tls(&c, out, n);
    if ((n = of_ymap_get(node, "rate_limit")))
        parse_rate_limit(&c, out, n);
    if ((n = of_ymap_get(node, "websocket_connections")))
        parse_ws_connections(&c, out, n);
    /* Each open WebSocket holds one of the gateway's threads for its whole life: leave at least
     * one for plain requests. */
    if (out->ws_connections >= 0 && out->ws_line && out->ws_connections >= out->threads)
        herr(&c, of_ymap_get(node, "websocket_connections"),
             "http 'websocket_connections' (%d) must be below 'threads' (%d): each open "
             "WebSocket holds a gateway thread",
             out->ws_connections, out->threads);
}
