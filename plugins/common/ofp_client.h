/*
 * A small HTTP/1.0 client the business plugins share (payment's HTTP provider, the webhook
 * delivery stage); compiled into each plugin that uses it. Pure C and OpenSSL, no host.
 *
 *  - one request per connection (HTTP/1.0 with Host and Connection: close, so the answer is never
 *    chunked), over plain sockets or TLS (https://: the system's trust store or a CA file, SNI,
 *    host name verification);
 *  - one deadline for connecting, the TLS handshake, sending and receiving (name resolution is
 *    not bounded by it: give an address, or rely on a local resolver);
 *  - bounded answers: headers up to OFP_CLIENT_MAX_HEAD, bodies up to OFP_CLIENT_MAX_BODY;
 *  - optionally, no private addresses (server-side request forgery): an address that is
 *    loopback, private, link-local, unique-local, unspecified, multicast or reserved is refused,
 *    checked on every resolved address and again on the address actually connected to.
 */
#ifndef OFP_CLIENT_H
#define OFP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define OFP_URL_MAX         2048  /* the whole URL */
#define OFP_CLIENT_MAX_HEAD 16384 /* status line and headers */
#define OFP_CLIENT_MAX_BODY 65536

/* URL parsing flags. */
enum {
    OFP_URL_HTTPS = 1u << 0, /* https:// is accepted */
    OFP_URL_QUERY = 1u << 1  /* a ?query is accepted (kept in path) */
};

typedef struct ofp_url {
    int tls;                    /* https:// */
    char host[256];             /* a name, an IPv4 address or an IPv6 one (without [ ]) */
    char port[8];               /* decimal; 80 or 443 by default */
    char path[OFP_URL_MAX + 1]; /* starts with '/'; with the query when allowed */
} ofp_url;

/* Parses "http[s]://host[:port][/path][?query]": no user info, no fragment, no spaces or control
 * characters, at most OFP_URL_MAX bytes, a host (IPv6 as [::1]), a port in 1..65535.
 * 0, or -1 with a reason in err. */
int ofp_url_parse(const char *url, unsigned flags, ofp_url *out, char *err, size_t err_size);

/* 1 when the address must not be reached when private addresses are refused: IPv4 0/8, 10/8,
 * 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24, 192.168/16, 198.18/15, 224/4, 240/4;
 * IPv6 ::, ::1, fe80::/10, fec0::/10, fc00::/7, ff00::/8, and IPv4-mapped, -compatible or NAT64
 * (64:ff9b::/96) addresses whose IPv4 address is one of those. 0 otherwise (and for other
 * families: 1). */
int ofp_addr_private(const struct sockaddr *sa);
/* The same for a textual address ("10.0.0.1", "::1"): 1 private, 0 public, -1 not an address. */
int ofp_addr_text_private(const char *text);

/* A client: its TLS context (made lazily on the first https:// request) and its rules. One client
 * may serve several threads at once. */
typedef struct ofp_client ofp_client;

typedef struct ofp_client_options {
    int allow_private;      /* 0: refuse private addresses (see ofp_addr_private) */
    const char *ca_file;    /* https: PEM file of trusted CAs; NULL: the system's store */
    const char *user_agent; /* sent as User-Agent; NULL: none */
} ofp_client_options;

/* NULL with a reason in err (a CA file that cannot be read, no memory). */
ofp_client *ofp_client_new(const ofp_client_options *opts, char *err, size_t err_size);
void ofp_client_free(ofp_client *c);

typedef struct ofp_response {
    int status; /* e.g. 200 */
    char *body; /* malloc'ed, NUL-terminated (free with free()); never NULL on success */
    size_t len;
} ofp_response;

/* What a request came to. */
typedef enum ofp_client_rc {
    OFP_CLIENT_OK = 0,      /* an answer was read (any status) */
    OFP_CLIENT_FAILED = -1, /* transient: resolution, connection, TLS, timeout, bad answer */
    OFP_CLIENT_BLOCKED = -2 /* refused by the client's rules (a private address): permanent */
} ofp_client_rc;

/* POSTs body (application/json) to url's host and port, at url->path followed by `suffix` (NULL
 * or "" for none), with the extra headers ("Name: value" lines, NULL-terminated; NULL for none).
 * Connecting, the handshake, sending and receiving share one deadline of timeout_ms. Fills *resp
 * on OFP_CLIENT_OK; otherwise a reason in err. */
ofp_client_rc ofp_client_post(ofp_client *c, const ofp_url *url, const char *suffix,
                              const char *const *headers, const char *body, size_t body_len,
                              int64_t timeout_ms, ofp_response *resp, char *err, size_t err_size);

#endif /* OFP_CLIENT_H */
