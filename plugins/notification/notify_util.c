/* notification and webhook: the pure functions (notify.h). */
#include "notify.h"

#include "ofp_client.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int sha256(const void *a, size_t alen, const void *b, size_t blen, unsigned char out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    static const unsigned char nul = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, a, alen) == 1 &&
             (!b || (EVP_DigestUpdate(ctx, &nul, 1) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1)) &&
             EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

int ntf_delivery_id(const void *event_id, size_t event_id_len, const char *webhook_id,
                    char out[NTF_DELIVERY_ID_LEN + 1])
{
    unsigned char d[32];
    if (!event_id || !webhook_id ||
        sha256(event_id, event_id_len, webhook_id, strlen(webhook_id), d) != 0)
        return -1;
    memcpy(out, "msg_", 4);
    hex(d, 16, out + 4);
    return 0;
}

int ntf_secret_new(char out[NTF_SECRET_MAX + 1])
{
    unsigned char b[NTF_SECRET_BYTES];
    if (ofp_random_bytes(b, sizeof(b)) != 0)
        return -1;
    memcpy(out, "whsec_", 6);
    EVP_EncodeBlock((unsigned char *)out + 6, b, (int)sizeof(b));
    return 0;
}

/* Decodes standard base64 (with padding); the byte count, or -1. */
static int b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || (c == '=' && i >= len - 2);
        if (!ok || (c != '=' && i > 0 && in[i - 1] == '='))
            return -1;
    }
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    if (in[len - 1] == '=')
        n--;
    if (in[len - 2] == '=')
        n--;
    return n;
}

int ntf_sign(const char *secret, const char *msg_id, int64_t timestamp, const void *body,
             size_t body_len, char out[NTF_SIGNATURE_MAX + 1])
{
    if (!secret || !msg_id)
        return -1;
    if (strncmp(secret, "whsec_", 6) == 0)
        secret += 6;
    unsigned char key[96];
    int klen = b64_decode(secret, strlen(secret), key, sizeof(key));
    if (klen <= 0)
        return -1;
    char prefix[160];
    int pn = snprintf(prefix, sizeof(prefix), "%s.%" PRId64 ".", msg_id, timestamp);
    if (pn < 0 || (size_t)pn >= sizeof(prefix))
        return -1;
    unsigned char mac[EVP_MAX_MD_SIZE];
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t outl = 0;
    int ok = ctx && EVP_MAC_init(ctx, key, (size_t)klen, params) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)prefix, (size_t)pn) == 1 &&
             EVP_MAC_update(ctx, body, body_len) == 1 &&
             EVP_MAC_final(ctx, mac, &outl, sizeof(mac)) == 1 && outl == 32;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok)
        return -1;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)outl);
    return 0;
}

int ntf_check_webhook_url(const char *url, int allow_private, char *err, size_t err_size)
{
    ofp_url u;
    if (ofp_url_parse(url, OFP_URL_HTTPS | OFP_URL_QUERY, &u, err, err_size) != 0)
        return -1;
    if (allow_private)
        return 0;
    size_t hl = strlen(u.host);
    if (strcasecmp(u.host, "localhost") == 0 ||
        (hl > 10 && strcasecmp(u.host + hl - 10, ".localhost") == 0) ||
        (hl > 10 && strcasecmp(u.host + hl - 10, "localhost.") == 0)) {
        snprintf(err, err_size, "url: localhost is not allowed");
        return -1;
    }
    int p = ofp_addr_text_private(u.host);
    struct in_addr a4;
    if (p < 0 && inet_aton(u.host, &a4) == 1) { /* 127.1, 0x7f.0.0.1, 2130706433 ... */
        char dotted[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a4, dotted, sizeof(dotted));
        p = ofp_addr_text_private(dotted);
    }
    if (p == 1) {
        snprintf(err, err_size, "url: a private, loopback or link-local address is not allowed");
        return -1;
    }
    return 0;
}

static int channel_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '@' || c == '-';
}

int ntf_channel(const char *kind, const char *id, char out[NTF_CHANNEL_MAX + 1])
{
    size_t kl = strlen(kind), il = id ? strlen(id) : 0;
    if (!id || kl == 0 || kl + 2 + 32 > NTF_CHANNEL_MAX)
        return -1;
    int plain = il > 0 && kl + 1 + il <= NTF_CHANNEL_MAX;
    for (size_t i = 0; plain && i < il; i++)
        plain = channel_char(id[i]);
    if (plain) {
        memcpy(out, kind, kl);
        out[kl] = ':';
        memcpy(out + kl + 1, id, il + 1);
        return 0;
    }
    unsigned char d[32];
    if (sha256(id, il, NULL, 0, d) != 0)
        return -1;
    char h[65];
    hex(d, 16, h);
    snprintf(out, NTF_CHANNEL_MAX + 1, "%sh:%s", kind, h);
    return 0;
}

void ntf_status_members(ofp_jw *w, int with_type, const char *order_id, const char *customer_id,
                        int64_t seq, const char *from, const char *to, const char *reason,
                        const char *at)
{
    if (with_type)
        ofp_jw_str(w, "type", NTF_EVENT_TYPE);
    ofp_jw_str(w, "order_id", order_id);
    ofp_jw_str(w, "customer_id", customer_id);
    if (seq >= 1)
        ofp_jw_int(w, "seq", seq);
    ofp_jw_str(w, "from", from);
    ofp_jw_str(w, "to", to ? to : "");
    ofp_jw_str(w, "reason", reason ? reason : "");
    ofp_jw_str(w, "at", at ? at : "");
}

const char *ntf_status_text(ofp_jw *w, size_t *len, const char *order_id, const char *customer_id,
                            int64_t seq, const char *from, const char *to, const char *reason,
                            const char *at)
{
    ofp_jw_init(w);
    ofp_jw_object(w, NULL);
    ntf_status_members(w, 1, order_id, customer_id, seq, from, to, reason, at);
    ofp_jw_end(w);
    return ofp_jw_text(w, len);
}

size_t ntf_utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}
