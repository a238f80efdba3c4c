/*
 * auth plugin: JSON Web Tokens (RFC 7519) signed as compact JWS (RFC 7515) with libjwt.
 *
 * Signing makes the tokens the plugin issues at login. Verifying is the gateway's bearer-token
 * check, and it trusts nothing in the token before the signature is proven: the header is
 * split off and decoded here first and its `alg` must be exactly the configured one (so "none",
 * or an HS256 token made with an RS256 public key as its HMAC secret, never reaches libjwt's
 * verification); then libjwt checks the signature with the configured key; then the claims
 * (exp, nbf, iat with a leeway, iss, aud, sub, roles) are checked.
 *
 * Pure functions: no host, no globals; safe from any thread. Unit-tested on their own
 * (tests/unit/test_auth_jwt.c).
 */
#ifndef AUTH_JWT_VERIFY_H
#define AUTH_JWT_VERIFY_H

#include <stddef.h>
#include <stdint.h>

/* In the order of the `algorithm` option's values. */
typedef enum auth_alg { AUTH_ALG_HS256 = 0, AUTH_ALG_RS256 = 1, AUTH_ALG_ES256 = 2 } auth_alg;

#define AUTH_JWT_MAX_TOKEN    8192 /* bytes of a compact token; longer ones are refused */
#define AUTH_JWT_LEEWAY_S     30   /* clock skew allowed for exp, nbf and iat */
#define AUTH_JWT_MAX_ROLES    32
#define AUTH_JWT_MAX_NAME     64 /* bytes of the subject and of each role */
#define AUTH_HS256_MIN_SECRET 32 /* bytes of an HS256 secret */
#define AUTH_KEY_FILE_MAX     (64 * 1024)

/* "HS256", ...; NULL out of range. */
const char *auth_alg_name(auth_alg alg);
/* The algorithm for a name (exact); -1 when not one of the three. */
int auth_alg_parse(const char *name);

/* What signing and verifying use. Borrowed pointers; the caller keeps them alive. */
typedef struct auth_jwt_ctx {
    auth_alg alg;
    /* HS256: the secret. RS256/ES256: the PEM private key. NULL when only verifying. */
    const unsigned char *sign_key;
    size_t sign_key_len;
    /* HS256: the secret. RS256/ES256: the PEM public key. */
    const unsigned char *verify_key;
    size_t verify_key_len;
    const char *issuer;   /* iss, compared exactly */
    const char *audience; /* aud, compared exactly (or one member of an aud array) */
} auth_jwt_ctx;

/* Signs a token with the claims sub, roles (array), iat = nbf = now, exp = now + ttl_s, iss,
 * aud and a random jti. Returns the compact token (free with free()), or NULL with a reason in
 * errstr. */
char *auth_jwt_sign(const auth_jwt_ctx *ctx, const char *subject, const char *const *roles,
                    size_t n_roles, int64_t now, int64_t ttl_s, char *errstr, size_t errstr_size);

/* The identity in a verified token. Self-contained (roles point into role_text), so it can
 * live in thread-local storage and be handed to the gateway as is. */
typedef struct auth_jwt_identity {
    char subject[AUTH_JWT_MAX_NAME + 1];
    char role_text[AUTH_JWT_MAX_ROLES][AUTH_JWT_MAX_NAME + 1];
    const char *roles[AUTH_JWT_MAX_ROLES + 1]; /* NULL-terminated */
    size_t n_roles;
    int64_t iat, exp; /* iat 0 when absent */
} auth_jwt_identity;

/* Verifies a compact token at time now (seconds since the epoch). 0 and *out filled, or -1
 * with one of these reasons in errstr (safe to show to the client: it never echoes more of the
 * token than a sanitised algorithm name):
 *   "malformed token"  (also "malformed token: <what>"), "token too large",
 *   "algorithm none is not accepted", "algorithm <X> is not the configured <Y>",
 *   "unsupported token type", "bad signature", "token expired", "token not yet valid",
 *   "wrong issuer", "wrong audience", "missing subject", "out of memory". */
int auth_jwt_verify(const auth_jwt_ctx *ctx, const char *token, int64_t now, auth_jwt_identity *out,
                    char *errstr, size_t errstr_size);

/* Reads a key file (at most AUTH_KEY_FILE_MAX bytes). For an HMAC secret (hmac != 0) the
 * trailing line ending(s) are dropped, so `openssl rand -base64 48 > secret` works, and the
 * secret must have at least AUTH_HS256_MIN_SECRET bytes and not be a PEM key. The result is
 * NUL-terminated (not counted in *len); free it with auth_key_free. 0, or -1 with a reason
 * naming the path in errstr. */
int auth_key_read(const char *path, int hmac, unsigned char **out, size_t *len, char *errstr,
                  size_t errstr_size);
/* Wipes and frees what auth_key_read returned. NULL is fine. */
void auth_key_free(unsigned char *key, size_t len);

/* Checks a context before use: signs a token and verifies it, so a key of the wrong type, an
 * unreadable PEM, or a public key that is not the private key's is refused at start. 0, or -1
 * with a reason in errstr. */
int auth_jwt_self_test(const auth_jwt_ctx *ctx, char *errstr, size_t errstr_size);

/* Strict base64url (RFC 4648 section 5) without padding: no other characters, no dangling
 * bits. Decodes into out (at least in_len * 3 / 4 + 1 bytes); *out_len gets the length. 0 or
 * -1. Exposed for the tests. */
int auth_b64url_decode(const char *in, size_t in_len, unsigned char *out, size_t *out_len);

#endif
