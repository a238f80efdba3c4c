/*
 * auth plugin: signing and verifying JSON Web Tokens. See jwt_verify.h for the contract.
 *
 * Verification order (each step refuses with its own reason):
 *   1. size and shape: at most AUTH_JWT_MAX_TOKEN bytes, three base64url segments (strict: no
 *      padding, no other characters, no dangling bits);
 *   2. the header, decoded here: a JSON object (duplicate names refused) whose `alg` is exactly
 *      the configured algorithm; "none" in any case is refused by name; `typ` absent or "JWT";
 *      `crit` refused (no extension is understood);
 *   3. the payload: a JSON object (duplicate names refused), not trusted yet;
 *   4. the signature: for HS256 first a constant-time HMAC comparison of our own (libjwt 1.10
 *      compares with strcmp), then libjwt's jwt_decode with the configured key (the secret, or
 *      the public key for RS256/ES256), and the algorithm libjwt saw must be ours;
 *   5. the claims: exp (required) not passed, nbf and iat not in the future (30 s leeway each),
 *      iss and aud exactly the configured ones, sub a non-empty string, roles (optional) an
 *      array of strings.
 */
#include "jwt_verify.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const alg_names[] = {"HS256", "RS256", "ES256"};

const char *auth_alg_name(auth_alg alg)
{
    return (unsigned)alg < 3 ? alg_names[alg] : NULL;
}

int auth_alg_parse(const char *name)
{
    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, alg_names[i]) == 0)
            return i;
    return -1;
}

static jwt_alg_t to_libjwt(auth_alg alg)
{
    switch (alg) {
    case AUTH_ALG_HS256:
        return JWT_ALG_HS256;
    case AUTH_ALG_RS256:
        return JWT_ALG_RS256;
    case AUTH_ALG_ES256:
        return JWT_ALG_ES256;
    }
    return JWT_ALG_INVAL;
}

/* ---- base64url ------------------------------------------------------------------------------ */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int auth_b64url_decode(const char *in, size_t in_len, unsigned char *out, size_t *out_len)
{
    if (in_len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < in_len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero: one text per byte string, so a "flipped" last character
     * cannot leave the decoded bytes unchanged. */
    if (acc != 0)
        return -1;
    *out_len = o;
    return 0;
}

/* Decodes a segment into a new NUL-terminated buffer. NULL when it is not strict base64url
 * (*nomem set when out of memory). */
static unsigned char *b64url_dup(const char *in, size_t in_len, size_t *out_len, int *nomem)
{
    unsigned char *buf = malloc(in_len * 3 / 4 + 2);
    if (!buf) {
        *nomem = 1;
        return NULL;
    }
    if (auth_b64url_decode(in, in_len, buf, out_len) != 0) {
        free(buf);
        return NULL;
    }
    buf[*out_len] = '\0';
    return buf;
}

/* A JSON object from a base64url segment; NULL when it is not one. */
static json_t *segment_object(const char *seg, size_t len, int *nomem)
{
    size_t n = 0;
    unsigned char *raw = b64url_dup(seg, len, &n, nomem);
    if (!raw)
        return NULL;
    json_error_t jerr;
    json_t *obj = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, &jerr);
    free(raw);
    if (obj && !json_is_object(obj)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static void fail(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!errstr || errstr_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* A copy of an untrusted name fit for an error message: letters, digits, '-', '_' and '.'
 * kept, anything else shown as '?', at most 16 characters. */
static void sanitize(const char *s, char *out, size_t out_size)
{
    size_t o = 0, i = 0;
    for (; s[i] && o + 1 < out_size && i < 16; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || c == '.';
        out[o++] = ok ? (char)c : '?';
    }
    if (s[i] && o + 4 < out_size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* A subject or role: 1..AUTH_JWT_MAX_NAME bytes of UTF-8 with no control characters (jansson
 * guarantees the UTF-8). */
static int name_ok(const char *s, size_t len)
{
    if (len == 0 || len > AUTH_JWT_MAX_NAME || strlen(s) != len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F)
            return 0;
    }
    return 1;
}

/* A NumericDate (RFC 7519 2): an integer, or a finite real taken down to the second. */
static int numeric_date(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < -9.0e15 || d > 9.0e15)
            return -1;
        *out = (int64_t)floor(d);
        return 0;
    }
    return -1;
}

/* ---- signing -------------------------------------------------------------------------------- */

char *auth_jwt_sign(const auth_jwt_ctx *ctx, const char *subject, const char *const *roles,
                    size_t n_roles, int64_t now, int64_t ttl_s, char *errstr, size_t errstr_size)
{
    if (!ctx || !ctx->sign_key || ctx->sign_key_len == 0 || ctx->sign_key_len > INT_MAX ||
        !auth_alg_name(ctx->alg) || !ctx->issuer || !ctx->audience) {
        fail(errstr, errstr_size, "no signing key");
        return NULL;
    }
    if (!subject || !name_ok(subject, strlen(subject))) {
        fail(errstr, errstr_size, "the subject must have 1..%d bytes and no control characters",
             AUTH_JWT_MAX_NAME);
        return NULL;
    }
    if (n_roles > AUTH_JWT_MAX_ROLES) {
        fail(errstr, errstr_size, "at most %d roles", AUTH_JWT_MAX_ROLES);
        return NULL;
    }
    if (ttl_s <= 0) {
        fail(errstr, errstr_size, "the lifetime must be positive");
        return NULL;
    }
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        fail(errstr, errstr_size, "no random bytes for the token id: %s", strerror(errno));
        return NULL;
    }
    char jti[33];
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(jti + 2 * i, 3, "%02x", rnd[i]);

    json_t *claims = json_object(), *jroles = json_array();
    int bad = !claims || !jroles;
    for (size_t i = 0; !bad && i < n_roles; i++) {
        if (!roles[i] || !name_ok(roles[i], strlen(roles[i]))) {
            json_decref(claims);
            json_decref(jroles);
            fail(errstr, errstr_size, "role %zu must have 1..%d bytes and no control characters",
                 i + 1, AUTH_JWT_MAX_NAME);
            return NULL;
        }
        bad = json_array_append_new(jroles, json_string(roles[i])) != 0;
    }
    if (!bad) {
        bad |= json_object_set_new(claims, "sub", json_string(subject));
        bad |= json_object_set(claims, "roles", jroles);
        bad |= json_object_set_new(claims, "iat", json_integer(now));
        bad |= json_object_set_new(claims, "nbf", json_integer(now));
        bad |= json_object_set_new(claims, "exp", json_integer(now + ttl_s));
        bad |= json_object_set_new(claims, "iss", json_string(ctx->issuer));
        bad |= json_object_set_new(claims, "aud", json_string(ctx->audience));
        bad |= json_object_set_new(claims, "jti", json_string(jti));
    }
    json_decref(jroles);
    char *text = bad ? NULL : json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    if (!text) {
        fail(errstr, errstr_size, "cannot build the claims (out of memory, or not UTF-8)");
        return NULL;
    }

    jwt_t *jwt = NULL;
    char *token = NULL;
    int rc = jwt_new(&jwt);
    if (rc == 0)
        rc = jwt_add_grants_json(jwt, text);
    if (rc == 0)
        rc = jwt_set_alg(jwt, to_libjwt(ctx->alg), ctx->sign_key, (int)ctx->sign_key_len);
    if (rc == 0) {
        errno = 0;
        token = jwt_encode_str(jwt);
        if (!token)
            rc = errno ? errno : EINVAL;
    }
    jwt_free(jwt);
    free(text);
    if (!token) {
        if (rc == ENOMEM)
            fail(errstr, errstr_size, "out of memory");
        else
            fail(errstr, errstr_size, "cannot sign with the %s key (is it a %s private key?)",
                 auth_alg_name(ctx->alg),
                 ctx->alg == AUTH_ALG_HS256   ? "an HMAC secret, not a"
                 : ctx->alg == AUTH_ALG_RS256 ? "an RSA"
                                              : "a P-256 EC");
        return NULL;
    }
    return token;
}

/* ---- verifying ------------------------------------------------------------------------------ */

/* HS256 only: the HMAC of header.payload compared in constant time with the decoded
 * signature. 1 when it matches. */
static int hmac_matches(const auth_jwt_ctx *ctx, const char *signed_part, size_t signed_len,
                        const unsigned char *sig, size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (ctx->verify_key_len > INT_MAX)
        return 0;
    if (!HMAC(EVP_sha256(), ctx->verify_key, (int)ctx->verify_key_len,
              (const unsigned char *)signed_part, signed_len, mac, &mac_len))
        return 0;
    int ok = mac_len == 32 && sig_len == 32 && CRYPTO_memcmp(mac, sig, 32) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

int auth_jwt_verify(const auth_jwt_ctx *ctx, const char *token, int64_t now, auth_jwt_identity *out,
                    char *errstr, size_t errstr_size)
{
    if (!ctx || !ctx->verify_key || !auth_alg_name(ctx->alg) || !out) {
        fail(errstr, errstr_size, "the verifier is not configured");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (!token) {
        fail(errstr, errstr_size, "malformed token");
        return -1;
    }
    size_t len = strnlen(token, AUTH_JWT_MAX_TOKEN + 1);
    if (len > AUTH_JWT_MAX_TOKEN) {
        fail(errstr, errstr_size, "token too large");
        return -1;
    }
    /* 1. Shape: header.payload.signature */
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) ||
        dot1 == token || dot2 == dot1 + 1) {
        fail(errstr, errstr_size, "malformed token");
        return -1;
    }
    size_t h_len = (size_t)(dot1 - token), p_len = (size_t)(dot2 - dot1 - 1);
    size_t s_len = len - (size_t)(dot2 + 1 - token);

    /* 2. The header, before anything else looks at the token. */
    int nomem = 0;
    json_t *header = segment_object(token, h_len, &nomem);
    if (!header) {
        fail(errstr, errstr_size, nomem ? "out of memory" : "malformed token");
        return -1;
    }
    int rc = -1;
    json_t *payload = NULL;
    unsigned char *sig = NULL;
    jwt_t *jwt = NULL;
    const char *alg = json_string_value(json_object_get(header, "alg"));
    const json_t *typ = json_object_get(header, "typ");
    char shown[32];
    if (!alg) {
        fail(errstr, errstr_size, "malformed token: no algorithm");
        goto done;
    }
    if (strcasecmp(alg, "none") == 0) {
        fail(errstr, errstr_size, "algorithm none is not accepted");
        goto done;
    }
    if (strcmp(alg, auth_alg_name(ctx->alg)) != 0) {
        sanitize(alg, shown, sizeof(shown));
        fail(errstr, errstr_size, "algorithm %s is not the configured %s", shown,
             auth_alg_name(ctx->alg));
        goto done;
    }
    if (typ && !(json_is_string(typ) && strcmp(json_string_value(typ), "JWT") == 0)) {
        fail(errstr, errstr_size, "unsupported token type");
        goto done;
    }
    if (json_object_get(header, "crit")) {
        fail(errstr, errstr_size, "malformed token: unsupported critical header");
        goto done;
    }

    /* 3. The payload: its shape only, nothing trusted yet. */
    if (!(payload = segment_object(dot1 + 1, p_len, &nomem))) {
        fail(errstr, errstr_size, nomem ? "out of memory" : "malformed token");
        goto done;
    }

    /* 4. The signature. */
    size_t sig_len = 0;
    if (s_len == 0 || !(sig = b64url_dup(dot2 + 1, s_len, &sig_len, &nomem))) {
        fail(errstr, errstr_size, nomem ? "out of memory" : "malformed token");
        goto done;
    }
    if ((ctx->alg == AUTH_ALG_HS256 &&
         !hmac_matches(ctx, token, (size_t)(dot2 - token), sig, sig_len)) ||
        (ctx->alg == AUTH_ALG_ES256 && sig_len != 64)) {
        fail(errstr, errstr_size, "bad signature");
        goto done;
    }
    if (ctx->verify_key_len > INT_MAX) {
        fail(errstr, errstr_size, "bad signature");
        goto done;
    }
    int jrc = jwt_decode(&jwt, token, ctx->verify_key, (int)ctx->verify_key_len);
    if (jrc != 0 || !jwt || jwt_get_alg(jwt) != to_libjwt(ctx->alg)) {
        fail(errstr, errstr_size, jrc == ENOMEM ? "out of memory" : "bad signature");
        goto done;
    }

    /* 5. The claims, from the payload just proven. */
    int64_t exp, t;
    const json_t *v = json_object_get(payload, "exp");
    if (!v || numeric_date(v, &exp) != 0) {
        fail(errstr, errstr_size, "malformed token: no valid exp");
        goto done;
    }
    if (now >= exp + AUTH_JWT_LEEWAY_S) {
        fail(errstr, errstr_size, "token expired");
        goto done;
    }
    if ((v = json_object_get(payload, "nbf"))) {
        if (numeric_date(v, &t) != 0) {
            fail(errstr, errstr_size, "malformed token: bad nbf");
            goto done;
        }
        if (t > now + AUTH_JWT_LEEWAY_S) {
            fail(errstr, errstr_size, "token not yet valid");
            goto done;
        }
    }
    out->iat = 0;
    if ((v = json_object_get(payload, "iat"))) {
        if (numeric_date(v, &t) != 0) {
            fail(errstr, errstr_size, "malformed token: bad iat");
            goto done;
        }
        if (t > now + AUTH_JWT_LEEWAY_S) {
            fail(errstr, errstr_size, "token not yet valid");
            goto done;
        }
        out->iat = t;
    }
    out->exp = exp;
    v = json_object_get(payload, "iss");
    if (!json_is_string(v) || !ctx->issuer || strcmp(json_string_value(v), ctx->issuer) != 0) {
        fail(errstr, errstr_size, "wrong issuer");
        goto done;
    }
    v = json_object_get(payload, "aud");
    int aud_ok = 0;
    if (json_is_string(v)) {
        aud_ok = ctx->audience && strcmp(json_string_value(v), ctx->audience) == 0;
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *it;
        json_array_foreach(v, i, it)
        {
            if (json_is_string(it) && ctx->audience &&
                strcmp(json_string_value(it), ctx->audience) == 0)
                aud_ok = 1;
        }
    }
    if (!aud_ok) {
        fail(errstr, errstr_size, "wrong audience");
        goto done;
    }
    v = json_object_get(payload, "sub");
    if (!json_is_string(v)) {
        fail(errstr, errstr_size, "missing subject");
        goto done;
    }
    if (!name_ok(json_string_value(v), json_string_length(v))) {
        fail(errstr, errstr_size, "malformed token: bad subject");
        goto done;
    }
    memcpy(out->subject, json_string_value(v), json_string_length(v) + 1);
    v = json_object_get(payload, "roles");
    if (v) {
        if (!json_is_array(v) || json_array_size(v) > AUTH_JWT_MAX_ROLES) {
            fail(errstr, errstr_size,
                 "malformed token: roles must be an array of at most %d "
                 "strings",
                 AUTH_JWT_MAX_ROLES);
            goto done;
        }
        size_t i;
        const json_t *it;
        json_array_foreach(v, i, it)
        {
            if (!json_is_string(it) || !name_ok(json_string_value(it), json_string_length(it))) {
                fail(errstr, errstr_size, "malformed token: bad role");
                goto done;
            }
            memcpy(out->role_text[i], json_string_value(it), json_string_length(it) + 1);
            out->roles[i] = out->role_text[i];
        }
        out->n_roles = json_array_size(v);
    }
    out->roles[out->n_roles] = NULL;
    rc = 0;
done:
    if (rc != 0) {
        out->subject[0] = '\0';
        out->n_roles = 0;
        out->roles[0] = NULL;
    }
    jwt_free(jwt);
    free(sig);
    json_decref(payload);
    json_decref(header);
    return rc;
}

/* ---- keys ----------------------------------------------------------------------------------- */

void auth_key_free(unsigned char *key, size_t len)
{
    if (!key)
        return;
    explicit_bzero(key, len + 1);
    free(key);
}

int auth_key_read(const char *path, int hmac, unsigned char **out, size_t *len, char *errstr,
                  size_t errstr_size)
{
    *out = NULL;
    *len = 0;
    if (!path || !*path) {
        fail(errstr, errstr_size, "no key file given");
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fail(errstr, errstr_size, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(errstr, errstr_size, "%s is not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_size > AUTH_KEY_FILE_MAX) {
        fail(errstr, errstr_size, "%s is larger than %d bytes: not a key", path, AUTH_KEY_FILE_MAX);
        close(fd);
        return -1;
    }
    unsigned char *buf = malloc(AUTH_KEY_FILE_MAX + 1);
    if (!buf) {
        fail(errstr, errstr_size, "out of memory");
        close(fd);
        return -1;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, AUTH_KEY_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(errstr, errstr_size, "cannot read %s: %s", path, strerror(errno));
            close(fd);
            auth_key_free(buf, AUTH_KEY_FILE_MAX);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > AUTH_KEY_FILE_MAX) {
            fail(errstr, errstr_size, "%s is larger than %d bytes: not a key", path,
                 AUTH_KEY_FILE_MAX);
            close(fd);
            auth_key_free(buf, AUTH_KEY_FILE_MAX);
            return -1;
        }
    }
    close(fd);
    int is_pem = memmem(buf, n, "-----BEGIN ", 11) != NULL;
    if (hmac) {
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            n--;
        if (is_pem) {
            fail(errstr, errstr_size,
                 "%s holds a PEM key; HS256 needs a random secret (e.g. openssl rand -base64 48)",
                 path);
            auth_key_free(buf, AUTH_KEY_FILE_MAX);
            return -1;
        }
        if (n < AUTH_HS256_MIN_SECRET) {
            fail(errstr, errstr_size,
                 "%s has %zu bytes; an HS256 secret needs at least %d (e.g. openssl rand "
                 "-base64 48)",
                 path, n, AUTH_HS256_MIN_SECRET);
            auth_key_free(buf, AUTH_KEY_FILE_MAX);
            return -1;
        }
    } else if (!is_pem) {
        fail(errstr, errstr_size, "%s is not a PEM file (-----BEGIN ...)", path);
        auth_key_free(buf, AUTH_KEY_FILE_MAX);
        return -1;
    }
    buf[n] = '\0';
    /* Shrink to the key's size so auth_key_free wipes exactly what is there. */
    unsigned char *key = malloc(n + 1);
    if (!key) {
        fail(errstr, errstr_size, "out of memory");
        auth_key_free(buf, AUTH_KEY_FILE_MAX);
        return -1;
    }
    memcpy(key, buf, n + 1);
    auth_key_free(buf, AUTH_KEY_FILE_MAX);
    *out = key;
    *len = n;
    return 0;
}

int auth_jwt_self_test(const auth_jwt_ctx *ctx, char *errstr, size_t errstr_size)
{
    char why[256];
    const char *alg = auth_alg_name(ctx->alg);
    static const char *const roles[] = {"self-test"};
    int64_t now = (int64_t)time(NULL);
    char *token = auth_jwt_sign(ctx, "self-test", roles, 1, now, 60, why, sizeof(why));
    if (!token) {
        fail(errstr, errstr_size, "key_file is not a usable %s key: %s", alg, why);
        return -1;
    }
    auth_jwt_identity *id = malloc(sizeof(*id));
    if (!id) {
        free(token);
        fail(errstr, errstr_size, "out of memory");
        return -1;
    }
    int rc = auth_jwt_verify(ctx, token, now, id, why, sizeof(why));
    free(token);
    free(id);
    if (rc != 0) {
        if (ctx->alg == AUTH_ALG_HS256)
            fail(errstr, errstr_size, "a token signed with key_file does not verify: %s", why);
        else
            fail(errstr, errstr_size,
                 "public_key_file is not the %s public key (PEM) of key_file: a token signed "
                 "with key_file does not verify (%s)",
                 alg, why);
        return -1;
    }
    return 0;
}
