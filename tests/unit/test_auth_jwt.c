/* auth plugin: JSON Web Tokens. Round trips for HS256, RS256 and ES256, and every attack the
 * verifier refuses: alg none, the HS256/RS256 key confusion, other algorithms, bad signatures,
 * expired and not-yet-valid tokens, wrong issuer or audience, missing subject, bad roles,
 * truncated, garbage, oversized and badly encoded tokens; key files. Pure functions of
 * plugins/auth/jwt_verify.c; no host. RSA and EC keys are made at test time with openssl(1)
 * (the tests that need them are skipped without it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jwt_verify.h"

#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 1750000000 /* "now" for the tests */

static const char hs_secret[] = "0123456789abcdef0123456789abcdef-test-secret";

typedef struct keys {
    char dir[64];
    int have_openssl;
    unsigned char *rsa, *rsa_pub, *rsa2_pub, *ec, *ec_pub, *ec2_pub;
    size_t rsa_len, rsa_pub_len, rsa2_pub_len, ec_len, ec_pub_len, ec2_pub_len;
} keys;

static keys K;

static unsigned char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unsigned char *key = NULL;
    char err[256];
    if (auth_key_read(path, 0, &key, len, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    return key;
}

static int setup(void **state)
{
    (void)state;
    snprintf(K.dir, sizeof(K.dir), "/tmp/of_auth_jwt_XXXXXX");
    if (!mkdtemp(K.dir))
        return -1;
    K.have_openssl = system("command -v openssl >/dev/null 2>&1") == 0;
    if (!K.have_openssl)
        return 0;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "(cd %s && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem"
             " && openssl pkey -in rsa.pem -pubout -out rsa.pub"
             " && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2.pem"
             " && openssl pkey -in rsa2.pem -pubout -out rsa2.pub"
             " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem"
             " && openssl pkey -in ec.pem -pubout -out ec.pub"
             " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec2.pem"
             " && openssl pkey -in ec2.pem -pubout -out ec2.pub) >/dev/null 2>&1",
             K.dir);
    if (system(cmd) != 0)
        return -1;
    if (!(K.rsa = slurp(K.dir, "rsa.pem", &K.rsa_len)) ||
        !(K.rsa_pub = slurp(K.dir, "rsa.pub", &K.rsa_pub_len)) ||
        !(K.rsa2_pub = slurp(K.dir, "rsa2.pub", &K.rsa2_pub_len)) ||
        !(K.ec = slurp(K.dir, "ec.pem", &K.ec_len)) ||
        !(K.ec_pub = slurp(K.dir, "ec.pub", &K.ec_pub_len)) ||
        !(K.ec2_pub = slurp(K.dir, "ec2.pub", &K.ec2_pub_len)))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    auth_key_free(K.rsa, K.rsa_len);
    auth_key_free(K.rsa_pub, K.rsa_pub_len);
    auth_key_free(K.rsa2_pub, K.rsa2_pub_len);
    auth_key_free(K.ec, K.ec_len);
    auth_key_free(K.ec_pub, K.ec_pub_len);
    auth_key_free(K.ec2_pub, K.ec2_pub_len);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", K.dir);
    return system(cmd) == 0 ? 0 : -1;
}

#define NEED_OPENSSL()                                                                             \
    do {                                                                                           \
        if (!K.have_openssl)                                                                       \
            skip();                                                                                \
    } while (0)

static auth_jwt_ctx ctx_for(auth_alg alg)
{
    auth_jwt_ctx c = {.alg = alg, .issuer = "https://shop.example", .audience = "orderflow-api"};
    switch (alg) {
    case AUTH_ALG_HS256:
        c.sign_key = c.verify_key = (const unsigned char *)hs_secret;
        c.sign_key_len = c.verify_key_len = strlen(hs_secret);
        break;
    case AUTH_ALG_RS256:
        c.sign_key = K.rsa;
        c.sign_key_len = K.rsa_len;
        c.verify_key = K.rsa_pub;
        c.verify_key_len = K.rsa_pub_len;
        break;
    case AUTH_ALG_ES256:
        c.sign_key = K.ec;
        c.sign_key_len = K.ec_len;
        c.verify_key = K.ec_pub;
        c.verify_key_len = K.ec_pub_len;
        break;
    }
    return c;
}

static char *sign(const auth_jwt_ctx *c, const char *sub, int64_t now, int64_t ttl)
{
    static const char *const roles[] = {"customer", "admin"};
    char err[256];
    char *t = auth_jwt_sign(c, sub, roles, 2, now, ttl, err, sizeof(err));
    if (!t)
        fail_msg("sign: %s", err);
    return t;
}

/* Verifies; returns the reason ("" when accepted). */
static const char *check(const auth_jwt_ctx *c, const char *token, int64_t now)
{
    static char err[256];
    static auth_jwt_identity id;
    err[0] = '\0';
    int rc = auth_jwt_verify(c, token, now, &id, err, sizeof(err));
    if (rc == 0) {
        assert_string_equal(err, "");
        return "";
    }
    assert_int_equal(rc, -1);
    assert_true(err[0] != '\0');
    assert_string_equal(id.subject, "");
    assert_null(id.roles[0]);
    return err;
}

/* ---- hand-made tokens ------------------------------------------------------------------ */

static void b64url(const void *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
    }
    out[o] = '\0';
}

/* header.payload.sig from raw JSON texts and a raw signature segment. */
static char *raw_token(const char *header, const char *payload, const char *sig)
{
    size_t n = strlen(header) * 2 + strlen(payload) * 2 + strlen(sig) + 8;
    char *t = malloc(n);
    assert_non_null(t);
    b64url(header, strlen(header), t);
    strcat(t, ".");
    b64url(payload, strlen(payload), t + strlen(t));
    strcat(t, ".");
    strcat(t, sig);
    return t;
}

/* Claims signed by libjwt directly, for claims auth_jwt_sign never makes. */
static char *sign_claims(jwt_alg_t alg, const unsigned char *key, size_t key_len,
                         const char *claims)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, key, (int)key_len), 0);
    char *t = jwt_encode_str(jwt);
    assert_non_null(t);
    jwt_free(jwt);
    return t;
}

static char *hs_claims(const char *claims)
{
    return sign_claims(JWT_ALG_HS256, (const unsigned char *)hs_secret, strlen(hs_secret), claims);
}

#define GOOD_CLAIMS_FMT                                                                            \
    "{\"sub\":\"42\",\"roles\":[\"customer\"],\"iat\":%d,\"nbf\":%d,\"exp\":%d,"                   \
    "\"iss\":\"https://shop.example\",\"aud\":\"orderflow-api\"}"

/* ---- round trips ----------------------------------------------------------------------- */

static void round_trip(auth_alg alg)
{
    auth_jwt_ctx c = ctx_for(alg);
    char *t = sign(&c, "42", T0, 3600);
    /* the header says the algorithm and typ JWT */
    const char *dot = strchr(t, '.');
    assert_non_null(dot);
    unsigned char hdr[256];
    size_t hn = 0;
    assert_int_equal(auth_b64url_decode(t, (size_t)(dot - t), hdr, &hn), 0);
    hdr[hn] = '\0';
    char want[32];
    snprintf(want, sizeof(want), "\"alg\":\"%s\"", auth_alg_name(alg));
    assert_non_null(strstr((char *)hdr, want));

    auth_jwt_identity id;
    char err[256] = "";
    assert_int_equal(auth_jwt_verify(&c, t, T0 + 10, &id, err, sizeof(err)), 0);
    assert_string_equal(id.subject, "42");
    assert_int_equal(id.n_roles, 2);
    assert_string_equal(id.roles[0], "customer");
    assert_string_equal(id.roles[1], "admin");
    assert_null(id.roles[2]);
    assert_int_equal(id.iat, T0);
    assert_int_equal(id.exp, T0 + 3600);
    /* still good at the end of its life, within the leeway after it */
    assert_string_equal(check(&c, t, T0 + 3600 + 29), "");
    assert_string_equal(check(&c, t, T0 + 3600 + 30), "token expired");
    /* a verifier without the signing key verifies just as well */
    auth_jwt_ctx v = c;
    v.sign_key = NULL;
    v.sign_key_len = 0;
    assert_string_equal(check(&v, t, T0), "");
    assert_int_equal(auth_jwt_self_test(&c, err, sizeof(err)), 0);
    free(t);
}

static void test_round_trip_hs256(void **state)
{
    (void)state;
    round_trip(AUTH_ALG_HS256);
}

static void test_round_trip_rs256(void **state)
{
    (void)state;
    NEED_OPENSSL();
    round_trip(AUTH_ALG_RS256);
}

static void test_round_trip_es256(void **state)
{
    (void)state;
    NEED_OPENSSL();
    round_trip(AUTH_ALG_ES256);
}

static void test_claims_made(void **state)
{
    (void)state;
    auth_jwt_ctx c = ctx_for(AUTH_ALG_HS256);
    char *t1 = sign(&c, "7", T0, 60), *t2 = sign(&c, "7", T0, 60);
    /* a random jti: two tokens for the same claims differ */
    assert_string_not_equal(t1, t2);
    char *d1 = strchr(t1, '.') + 1, *d2 = strchr(d1, '.');
    unsigned char body[1024];
    size_t n = 0;
    assert_int_equal(auth_b64url_decode(d1, (size_t)(d2 - d1), body, &n), 0);
    body[n] = '\0';
    const char *want[] = {"\"sub\":\"7\"",
                          "\"iat\":1750000000",
                          "\"nbf\":1750000000",
                          "\"exp\":1750000060",
                          "\"iss\":\"https://shop.example\"",
                          "\"aud\":\"orderflow-api\"",
                          "\"jti\":\"",
                          "\"roles\":["};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr((char *)body, want[i]))
            fail_msg("%s not in %s", want[i], body);
    free(t1);
    free(t2);
    /* signing refuses bad input */
    char err[256];
    static const char *const bad_role[] = {"ok", "bad\nrole"};
    assert_null(auth_jwt_sign(&c, "", NULL, 0, T0, 60, err, sizeof(err)));
    assert_null(auth_jwt_sign(&c, "x", bad_role, 2, T0, 60, err, sizeof(err)));
    assert_null(auth_jwt_sign(&c, "x", NULL, 0, T0, 0, err, sizeof(err)));
    auth_jwt_ctx nokey = c;
    nokey.sign_key = NULL;
    assert_null(auth_jwt_sign(&nokey, "x", NULL, 0, T0, 60, err, sizeof(err)));
}

/* ---- algorithm attacks ----------------------------------------------------------------- */

static void test_alg_none(void **state)
{
    (void)state;
    auth_jwt_ctx c = ctx_for(AUTH_ALG_HS256);
    char claims[512];
    snprintf(claims, sizeof(claims), GOOD_CLAIMS_FMT, T0, T0, T0 + 3600);
    const char *headers[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"none\"}",
                             "{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}", "{\"alg\":\"nOnE\"}"};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *t = raw_token(headers[i], claims, "");
        assert_string_equal(check(&c, t, T0), "algorithm none is not accepted");
        free(t);
        /* with some signature as well */
        t = raw_token(headers[i], claims, "c2lnbmF0dXJl");
        assert_string_equal(check(&c, t, T0), "algorithm none is not accepted");
        free(t);
    }
    /* libjwt itself would parse an unsigned token when given no key: the verifier never
     * lets it get that far. */
    char *t = raw_token("{\"alg\":\"none\"}", claims, "");
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, t, NULL, 0) == 0)
        jwt_free(jwt);
    free(t);
    /* missing or non-string alg */
    t = raw_token("{\"typ\":\"JWT\"}", claims, "c2ln");
    assert_string_equal(check(&c, t, T0), "malformed token: no algorithm");
    free(t);
    t = raw_token("{\"alg\":null}", claims, "c2ln");
    assert_string_equal(check(&c, t, T0), "malformed token: no algorithm");
    free(t);
}

static void test_alg_confusion_hs256_with_rsa_public_key(void **state)
{
    (void)state;
    NEED_OPENSSL();
    /* The classic: the verifier is configured for RS256; the attacker signs an HS256 token
     * using the (public) RSA public key PEM as the HMAC secret. */
    auth_jwt_ctx rs = ctx_for(AUTH_ALG_RS256);
    auth_jwt_ctx forger = {.alg = AUTH_ALG_HS256,
                           .sign_key = K.rsa_pub,
                           .sign_key_len = K.rsa_pub_len,
                           .issuer = rs.issuer,
                           .audience = rs.audience};
    char err[256];
    char *t =
        auth_jwt_sign(&forger, "1", (const char *const[]){"admin"}, 1, T0, 3600, err, sizeof(err));
    assert_non_null(t);
    /* libjwt alone, given the configured (public) key, takes the alg from the token and
     * accepts the forgery: that is why the header is checked first. */
    jwt_t *jwt = NULL;
    int lib = jwt_decode(&jwt, t, K.rsa_pub, (int)K.rsa_pub_len);
    if (lib == 0)
        jwt_free(jwt);
    assert_int_equal(lib, 0);
    assert_string_equal(check(&rs, t, T0), "algorithm HS256 is not the configured RS256");
    free(t);
}

static void test_alg_mismatch(void **state)
{
    (void)state;
    NEED_OPENSSL();
    auth_jwt_ctx hs = ctx_for(AUTH_ALG_HS256), rs = ctx_for(AUTH_ALG_RS256),
                 es = ctx_for(AUTH_ALG_ES256);
    char *t_rs = sign(&rs, "1", T0, 60), *t_es = sign(&es, "1", T0, 60),
         *t_hs = sign(&hs, "1", T0, 60);
    assert_string_equal(check(&hs, t_rs, T0), "algorithm RS256 is not the configured HS256");
    assert_string_equal(check(&hs, t_es, T0), "algorithm ES256 is not the configured HS256");
    assert_string_equal(check(&rs, t_es, T0), "algorithm ES256 is not the configured RS256");
    assert_string_equal(check(&es, t_rs, T0), "algorithm RS256 is not the configured ES256");
    assert_string_equal(check(&es, t_hs, T0), "algorithm HS256 is not the configured ES256");
    free(t_rs);
    free(t_es);
    free(t_hs);
    /* other algorithms libjwt knows, and made-up ones, shown sanitised */
    char claims[512];
    snprintf(claims, sizeof(claims), GOOD_CLAIMS_FMT, T0, T0, T0 + 60);
    char *t = raw_token("{\"alg\":\"HS512\"}", claims, "c2ln");
    assert_string_equal(check(&hs, t, T0), "algorithm HS512 is not the configured HS256");
    free(t);
    t = raw_token("{\"alg\":\"hs256\"}", claims, "c2ln"); /* case matters */
    assert_string_equal(check(&hs, t, T0), "algorithm hs256 is not the configured HS256");
    free(t);
    t = raw_token("{\"alg\":\"<script>alert(1)</script>\\r\\nX: y\"}", claims, "c2ln");
    const char *why = check(&hs, t, T0);
    assert_null(strchr(why, '<'));
    assert_null(strchr(why, '\n'));
    assert_non_null(strstr(why, "is not the configured HS256"));
    free(t);
}

static void test_header_rules(void **state)
{
    (void)state;
    auth_jwt_ctx c = ctx_for(AUTH_ALG_HS256);
    char claims[512];
    snprintf(claims, sizeof(claims), GOOD_CLAIMS_FMT, T0, T0, T0 + 60);
    struct {
        const char *header, *why;
    } cases[] = {
        {"{\"alg\":\"HS256\",\"typ\":\"JWS\"}", "unsupported token type"},
        {"{\"alg\":\"HS256\",\"typ\":\"jwt\"}", "unsupported token type"},
        {"{\"alg\":\"HS256\",\"typ\":1}", "unsupported token type"},
        {"{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", "malformed token: unsupported critical header"},
        /* a second alg after the first: refused, whichever a parser would keep */
        {"{\"alg\":\"HS256\",\"alg\":\"none\"}", "malformed token"},
        {"[\"HS256\"]", "malformed token"},
        {"\"HS256\"", "malformed token"},
        {"{\"alg\":\"HS256\"", "malformed token"},
        {"", "malformed token"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = raw_token(cases[i].header, claims, "c2ln");
        const char *why = check(&c, t, T0);
        if (strcmp(why, cases[i].why) != 0)
            fail_msg("header %s: '%s', expected '%s'", cases[i].header, why, cases[i].why);
        free(t);
    }
}

/* ---- signatures ------------------------------------------------------------------------ */

static char other_b64(char ch)
{
    return ch == 'A' ? 'B' : 'A';
}

static void bad_signatures(auth_alg alg)
{
    auth_jwt_ctx c = ctx_for(alg);
    char *t = sign(&c, "42", T0, 3600);
    size_t n = strlen(t);
    char *sig = strrchr(t, '.') + 1;
    size_t sn = strlen(sig);

    /* one character of the signature changed (not the last: its low bits may be unused) */
    char *u = strdup(t);
    u[(size_t)(sig - t) + sn / 2] = other_b64(u[(size_t)(sig - t) + sn / 2]);
    assert_string_equal(check(&c, u, T0), "bad signature");
    free(u);
    /* the first character of the signature */
    u = strdup(t);
    u[sig - t] = other_b64(u[sig - t]);
    assert_string_equal(check(&c, u, T0), "bad signature");
    free(u);
    /* one character of the payload changed */
    u = strdup(t);
    char *pay = strchr(u, '.') + 1;
    pay[4] = other_b64(pay[4]);
    const char *why = check(&c, u, T0);
    assert_true(strcmp(why, "bad signature") == 0 || strncmp(why, "malformed token", 15) == 0);
    free(u);
    /* the payload swapped for one claiming another subject, signature kept */
    char claims[512];
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"1\",\"roles\":[\"admin\"],\"iat\":%d,\"nbf\":%d,\"exp\":%d,"
             "\"iss\":\"https://shop.example\",\"aud\":\"orderflow-api\"}",
             T0, T0, T0 + 3600);
    char *hdr_end = strchr(t, '.');
    char *forged = malloc(n + 1024);
    memcpy(forged, t, (size_t)(hdr_end - t) + 1);
    b64url(claims, strlen(claims), forged + (hdr_end - t) + 1);
    strcat(forged, ".");
    strcat(forged, sig);
    assert_string_equal(check(&c, forged, T0), "bad signature");
    free(forged);
    /* the signature cut short */
    u = strdup(t);
    u[n - 4] = '\0';
    why = check(&c, u, T0);
    assert_true(strcmp(why, "bad signature") == 0 || strcmp(why, "malformed token") == 0);
    free(u);
    /* no signature */
    u = strdup(t);
    *strrchr(u, '.') = '\0';
    strcat(u, ".");
    assert_string_equal(check(&c, u, T0), "malformed token");
    free(u);
    /* the signature of another token */
    char *t2 = sign(&c, "43", T0, 3600);
    u = malloc(n + strlen(t2) + 1);
    memcpy(u, t, (size_t)(sig - t));
    strcpy(u + (sig - t), strrchr(t2, '.') + 1);
    assert_string_equal(check(&c, u, T0), "bad signature");
    free(u);
    free(t2);
    free(t);
}

static void test_bad_signature_hs256(void **state)
{
    (void)state;
    bad_signatures(AUTH_ALG_HS256);
    /* signed with another secret */
    auth_jwt_ctx other = ctx_for(AUTH_ALG_HS256);
    other.sign_key = (const unsigned char *)"another-secret-of-at-least-32-bytes!";
    other.sign_key_len = strlen((const char *)other.sign_key);
    char *t = sign(&other, "1", T0, 60);
    auth_jwt_ctx c = ctx_for(AUTH_ALG_HS256);
    assert_string_equal(check(&c, t, T0), "bad signature");
    free(t);
}

static void test_bad_signature_rs256(void **state)
{
    (void)state;
    NEED_OPENSSL();
    bad_signatures(AUTH_ALG_RS256);
    /* verified with another key pair's public key */
    auth_jwt_ctx c = ctx_for(AUTH_ALG_RS256);
    char *t = sign(&c, "1", T0, 60);
    c.verify_key = K.rsa2_pub;
    c.verify_key_len = K.rsa2_pub_len;
    assert_string_equal(check(&c, t, T0), "bad signature");
    free(t);
}

static void test_bad_signature_es256(void **state)
{
    (void)state;
    NEED_OPENSSL();
    bad_signatures(AUTH_ALG_ES256);
    auth_jwt_ctx c = ctx_for(AUTH_ALG_ES256);
    char *t = sign(&c, "1", T0, 60);
    c.verify_key = K.ec2_pub;
    c.verify_key_len = K.ec2_pub_len;
    assert_string_equal(check(&c, t, T0), "bad signature");
    free(t);
}

/* ---- claims ---------------------------------------------------------------------------- */

static void test_expired_and_not_yet_valid(void **state)
{
    (void)state;
    auth_jwt_ctx c = ctx_for(AUTH_ALG_HS256);
    char *t = sign(&c, "42", T0 - 7200, 3600); /* expired an hour ago */
    assert_string_equal(check(&c, t, T0), "token expired");
    free(t);
    t = sign(&c, "42", T0 - 70, 60); /* expired 10 s ago: inside the leeway */
    assert_string_equal(check(&c, t, T0), "");
    free(t);
    t = sign(&c, "42", T0 + 3600, 3600); /* issued an hour from now */
    assert_string_equal(check(&c, t, T0), "token not yet valid");
    free(t);
    t = sign(&c, "42", T0 + 20, 3600); /* 20 s ahead: clock skew, accepted */
    assert_string_equal(check(&c, t, T0), "");
    free(t);
    t = sign(&c, "42", T0 + 31, 3600);
    assert_string_equal(check(&c, t, T0), "token not yet valid");
    free(t);

    /* nbf alone, iat alone in the future */
    char claims[512];
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"1\",\"nbf\":%d,\"exp\":%d,\"iss\":\"https://shop.example\","
             "\"aud\":\"orderflow-api\"}",
             T0 + 600, T0 + 3600);
    t = hs_claims(claims);
    assert_string_equal(check(&c, t, T0), "token not yet valid");
    free(t);
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"1\",\"iat\":%d,\"exp\":%d,\"iss\":\"https://shop.example\","
             "\"aud\":\"orderflow-api\"}",
             T0 + 600, T0 + 3600);
    t = hs_claims(claims);
    assert_string_equal(check(&c, t, T0), "token not yet valid");
    free(t);
    /* exp is required and must be a number */
    t = hs_claims("{\"sub\":\"1\",\"iss\":\"https://shop.example\",\"aud\":\"orderflow-api\"}");
    assert_string_equal(check(&c, t, T0), "malformed token: no valid exp");
    free(t);
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"1\",\"exp\":\"%d\",\"iss\":\"https://shop.example\","
             "\"aud\":\"orderflow-api\"}",
             T0 + 3600);
    t = hs_claims(claims);
    assert_string_equal(check(&c, t, T0), "malformed token: no valid exp");
    free(t);
    /* a fractional exp is a NumericDate too */
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"1\",\"exp\":%d.5,\"iss\":\"https://shop.example\","
             "\"aud\":\"orderflow-api\"}",
             T0 + 3600);
    t = hs_claims(claims);
    assert_string_equal(check(&c, t, T0), "");
    free(t);
}

static void test_issuer_and_audience(void **state)
{
    (void)state;
    auth_jwt_ctx c = ctx_for(AUTH_ALG_HS256);
    char *t = sign(&c, "42", T0, 3600);
    auth_jwt_ctx v = c;
    v.issuer = "https://evil.example";
    assert_string_equal(check(&v, t, T0), "wrong issuer");
    v.issuer = "https://shop.example/"; /* exact comparison */
    assert_string_equal(check(&v, t, T0), "wrong issuer");
    v = c;
    v.audience = "another-api";
    assert_string_equal(check(&v, t, T0), "wrong audience");
    free(t);

    struct {
        const char *iss_aud, *why;
    } cases[] = {
        {"\"aud\":\"orderflow-api\"", "wrong issuer"},          /* no iss */
        {"\"iss\":\"https://shop.example\"", "wrong audience"}, /* no aud */
        {"\"iss\":[\"https://shop.example\"],\"aud\":\"orderflow-api\"", "wrong issuer"},
        {"\"iss\":\"https://shop.example\",\"aud\":[\"x\",\"orderflow-api\"]", ""},
        {"\"iss\":\"https://shop.example\",\"aud\":[\"x\",\"y\"]", "wrong audience"},
        {"\"iss\":\"https://shop.example\",\"aud\":[]", "wrong audience"},
        {"\"iss\":\"https://shop.example\",\"aud\":[1,null]", "wrong audience"},
        {"\"iss\":\"https://shop.example\",\"aud\":\"ORDERFLOW-API\"", "wrong audience"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char claims[512];
        snprintf(claims, sizeof(claims), "{\"sub\":\"1\",\"exp\":%d,%s}", T0 + 3600,
                 cases[i].iss_aud);
        t = hs_claims(claims);
        const char *why = check(&c, t, T0);
        if (strcmp(why, cases[i].why) != 0)
            fail_msg("%s: '%s', expected '%s'", cases[i].iss_aud, why, cases[i].why);
        free(t);
    }
}

static void test_subject_and_roles(void **state)
{
    (void)state;
    auth_jwt_ctx c = ctx_for(AUTH_ALG_HS256);
    struct {
        const char *claims, *why;
        size_t n_roles;
    } cases[] = {
        {"\"roles\":[\"a\"]", "missing subject", 0},
        {"\"sub\":42", "missing subject", 0},
        {"\"sub\":null", "missing subject", 0},
        {"\"sub\":\"\"", "malformed token: bad subject", 0},
        {"\"sub\":\"a\\u0001b\"", "malformed token: bad subject", 0},
        {"\"sub\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"",
         "malformed token: bad subject", 0},
        {"\"sub\":\"1\"", "", 0},
        {"\"sub\":\"1\",\"roles\":[]", "", 0},
        {"\"sub\":\"1\",\"roles\":[\"admin\",\"customer\"]", "", 2},
        {"\"sub\":\"1\",\"roles\":\"admin\"",
         "malformed token: roles must be an array of at most 32 strings", 0},
        {"\"sub\":\"1\",\"roles\":[\"admin\",7]", "malformed token: bad role", 0},
        {"\"sub\":\"1\",\"roles\":[\"\"]", "malformed token: bad role", 0},
        {"\"sub\":\"1\",\"roles\":[\"ad\\nmin\"]", "malformed token: bad role", 0},
        {"\"sub\":\"1\",\"roles\":{\"admin\":true}",
         "malformed token: roles must be an array of at most 32 strings", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char claims[512];
        snprintf(claims, sizeof(claims),
                 "{%s,\"exp\":%d,\"iss\":\"https://shop.example\",\"aud\":\"orderflow-api\"}",
                 cases[i].claims, T0 + 3600);
        char *t = hs_claims(claims);
        auth_jwt_identity id;
        char err[256] = "";
        int rc = auth_jwt_verify(&c, t, T0, &id, err, sizeof(err));
        if (strcmp(err, cases[i].why) != 0)
            fail_msg("%s: '%s', expected '%s'", cases[i].claims, err, cases[i].why);
        if (rc == 0) {
            assert_int_equal(id.n_roles, cases[i].n_roles);
            assert_null(id.roles[id.n_roles]);
        }
        free(t);
    }
    /* 33 roles are too many */
    char claims[2048] = "{\"sub\":\"1\",\"roles\":[";
    for (int i = 0; i < 33; i++)
        snprintf(claims + strlen(claims), sizeof(claims) - strlen(claims), "%s\"r%d\"",
                 i ? "," : "", i);
    snprintf(claims + strlen(claims), sizeof(claims) - strlen(claims),
             "],\"exp\":%d,\"iss\":\"https://shop.example\",\"aud\":\"orderflow-api\"}", T0 + 60);
    char *t = hs_claims(claims);
    assert_string_equal(check(&c, t, T0),
                        "malformed token: roles must be an array of at most 32 strings");
    free(t);
}

/* ---- garbage --------------------------------------------------------------------------- */

static void test_garbage_tokens(void **state)
{
    (void)state;
    auth_jwt_ctx c = ctx_for(AUTH_ALG_HS256);
    const char *junk[] = {
        "",
        ".",
        "..",
        "...",
        "abc",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9.",
        "eyJhbGciOiJIUzI1NiJ9..",
        ".eyJzdWIiOiIxIn0.c2ln",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        "\xff\xfe.\x01\x02.\x03",
        "null.null.null",
        "e30.e30.e30", /* {}.{}.{} */
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        const char *why = check(&c, junk[i], T0);
        if (strncmp(why, "malformed token", 15) != 0)
            fail_msg("'%s': '%s'", junk[i], why);
    }
    assert_string_equal(check(&c, NULL, T0), "malformed token");

    /* a valid token with pieces missing */
    char *t = sign(&c, "42", T0, 60);
    size_t n = strlen(t);
    for (size_t cut = 1; cut < n; cut += 7) {
        char *u = strndup(t, cut);
        const char *why = check(&c, u, T0);
        assert_true(strncmp(why, "malformed token", 15) == 0 || strcmp(why, "bad signature") == 0);
        free(u);
    }
    /* whitespace, padding, standard-alphabet characters: strict base64url only */
    const char *inserts[] = {" ", "=", "==", "+", "/", "\n", "%", "\t"};
    for (size_t i = 0; i < sizeof(inserts) / sizeof(inserts[0]); i++) {
        for (int seg = 0; seg < 3; seg++) {
            char *dot = t;
            for (int k = 0; k < seg; k++)
                dot = strchr(dot, '.') + 1;
            size_t at = (size_t)(dot - t) + 2;
            char *u = malloc(n + 8);
            memcpy(u, t, at);
            strcpy(u + at, inserts[i]);
            strcat(u, t + at);
            const char *why = check(&c, u, T0);
            if (strncmp(why, "malformed token", 15) != 0)
                fail_msg("'%s' in segment %d: '%s'", inserts[i], seg, why);
            free(u);
        }
    }
    free(t);

    /* too large: refused before anything is decoded */
    char *huge = malloc(AUTH_JWT_MAX_TOKEN + 100);
    memset(huge, 'A', AUTH_JWT_MAX_TOKEN + 99);
    huge[AUTH_JWT_MAX_TOKEN + 99] = '\0';
    huge[100] = huge[200] = '.';
    assert_string_equal(check(&c, huge, T0), "token too large");
    huge[AUTH_JWT_MAX_TOKEN + 1] = '\0';
    assert_string_equal(check(&c, huge, T0), "token too large");
    huge[AUTH_JWT_MAX_TOKEN] = '\0';
    assert_string_equal(check(&c, huge, T0), "malformed token"); /* the limit itself: decoded */
    free(huge);
    /* a huge claim set signed properly is still refused by size */
    char *claims = malloc(10000);
    snprintf(claims, 10000, "{\"sub\":\"1\",\"exp\":%d,\"pad\":\"", T0 + 60);
    size_t cl = strlen(claims);
    memset(claims + cl, 'x', 7000);
    strcpy(claims + cl + 7000, "\"}");
    t = hs_claims(claims);
    assert_string_equal(check(&c, t, T0), "token too large");
    free(t);
    free(claims);
}

static void test_base64url(void **state)
{
    (void)state;
    unsigned char out[64];
    size_t n = 0;
    assert_int_equal(auth_b64url_decode("", 0, out, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(auth_b64url_decode("YQ", 2, out, &n), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(out, "a", 1);
    assert_int_equal(auth_b64url_decode("YWI", 3, out, &n), 0);
    assert_memory_equal(out, "ab", 2);
    assert_int_equal(auth_b64url_decode("YWJj", 4, out, &n), 0);
    assert_memory_equal(out, "abc", 3);
    assert_int_equal(auth_b64url_decode("-_8", 3, out, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
    /* refused: a dangling character, padding, other alphabets, unused bits set */
    assert_int_equal(auth_b64url_decode("Y", 1, out, &n), -1);
    assert_int_equal(auth_b64url_decode("YQ==", 4, out, &n), -1);
    assert_int_equal(auth_b64url_decode("+/8", 3, out, &n), -1);
    assert_int_equal(auth_b64url_decode("YR", 2, out, &n), -1); /* 'a' with a stray bit */
    assert_int_equal(auth_b64url_decode("YWJ", 3, out, &n), -1);
    assert_int_equal(auth_b64url_decode("Y Q", 3, out, &n), -1);
    assert_int_equal(auth_b64url_decode("Y\0Q", 3, out, &n), -1);
}

/* ---- keys ------------------------------------------------------------------------------ */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_key_files(void **state)
{
    (void)state;
    char path[160], err[256];
    unsigned char *key = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/secret", K.dir);
    /* trailing line endings are not part of the secret */
    write_file(path, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYK\r\n");
    assert_int_equal(auth_key_read(path, 1, &key, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 44);
    assert_int_equal(key[len], '\0');
    auth_key_free(key, len);
    /* too short */
    write_file(path, "short-secret\n");
    assert_int_equal(auth_key_read(path, 1, &key, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at least 32"));
    assert_null(key);
    /* a PEM key is not an HMAC secret */
    write_file(path, "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE0000000000000"
                     "00000000\n-----END PUBLIC KEY-----\n");
    assert_int_equal(auth_key_read(path, 1, &key, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "PEM"));
    /* ... and a PEM file is what RS/ES need */
    assert_int_equal(auth_key_read(path, 0, &key, &len, err, sizeof(err)), 0);
    auth_key_free(key, len);
    write_file(path, "not a key at all, but long enough to be a secret\n");
    assert_int_equal(auth_key_read(path, 0, &key, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a PEM"));
    /* missing file, a directory, too large */
    snprintf(path, sizeof(path), "%s/missing", K.dir);
    assert_int_equal(auth_key_read(path, 1, &key, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "missing"));
    assert_int_equal(auth_key_read(K.dir, 1, &key, &len, err, sizeof(err)), -1);
    snprintf(path, sizeof(path), "%s/big", K.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < AUTH_KEY_FILE_MAX + 10; i++)
        fputc('k', f);
    fclose(f);
    assert_int_equal(auth_key_read(path, 1, &key, &len, err, sizeof(err)), -1);
    assert_int_equal(auth_key_read(NULL, 1, &key, &len, err, sizeof(err)), -1);
}

static void test_self_test_catches_wrong_keys(void **state)
{
    (void)state;
    NEED_OPENSSL();
    char err[512];
    auth_jwt_ctx c = ctx_for(AUTH_ALG_RS256);
    assert_int_equal(auth_jwt_self_test(&c, err, sizeof(err)), 0);
    /* a public key of another pair */
    c.verify_key = K.rsa2_pub;
    c.verify_key_len = K.rsa2_pub_len;
    assert_int_equal(auth_jwt_self_test(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "public_key_file"));
    /* the private key where the public one belongs */
    c = ctx_for(AUTH_ALG_RS256);
    c.verify_key = K.rsa;
    c.verify_key_len = K.rsa_len;
    assert_int_equal(auth_jwt_self_test(&c, err, sizeof(err)), -1);
    /* an EC key for RS256, an RSA key for ES256 */
    c = ctx_for(AUTH_ALG_RS256);
    c.sign_key = K.ec;
    c.sign_key_len = K.ec_len;
    assert_int_equal(auth_jwt_self_test(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "key_file"));
    c = ctx_for(AUTH_ALG_ES256);
    c.sign_key = K.rsa;
    c.sign_key_len = K.rsa_len;
    assert_int_equal(auth_jwt_self_test(&c, err, sizeof(err)), -1);
    c = ctx_for(AUTH_ALG_ES256);
    c.verify_key = K.rsa_pub;
    c.verify_key_len = K.rsa_pub_len;
    assert_int_equal(auth_jwt_self_test(&c, err, sizeof(err)), -1);
}

static void test_alg_names(void **state)
{
    (void)state;
    assert_int_equal(auth_alg_parse("HS256"), AUTH_ALG_HS256);
    assert_int_equal(auth_alg_parse("RS256"), AUTH_ALG_RS256);
    assert_int_equal(auth_alg_parse("ES256"), AUTH_ALG_ES256);
    assert_int_equal(auth_alg_parse("hs256"), -1);
    assert_int_equal(auth_alg_parse("none"), -1);
    assert_int_equal(auth_alg_parse(NULL), -1);
    assert_string_equal(auth_alg_name(AUTH_ALG_ES256), "ES256");
    assert_null(auth_alg_name((auth_alg)7));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_hs256),
        cmocka_unit_test(test_round_trip_rs256),
        cmocka_unit_test(test_round_trip_es256),
        cmocka_unit_test(test_claims_made),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_alg_confusion_hs256_with_rsa_public_key),
        cmocka_unit_test(test_alg_mismatch),
        cmocka_unit_test(test_header_rules),
        cmocka_unit_test(test_bad_signature_hs256),
        cmocka_unit_test(test_bad_signature_rs256),
        cmocka_unit_test(test_bad_signature_es256),
        cmocka_unit_test(test_expired_and_not_yet_valid),
        cmocka_unit_test(test_issuer_and_audience),
        cmocka_unit_test(test_subject_and_roles),
        cmocka_unit_test(test_garbage_tokens),
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_self_test_catches_wrong_keys),
        cmocka_unit_test(test_alg_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
