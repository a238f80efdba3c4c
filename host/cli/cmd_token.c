/* orderflow token: prints a signed JSON Web Token, for operators (creating the first admin,
 * calling admin routes). Generic: it knows nothing of the plugin that verifies the token, only
 * the token format (HS256/RS256/ES256 compact JWS with the claims sub, roles, iat, nbf, exp,
 * iss, aud and jti), and reads the key file by the same rules as the auth plugin (docs/auth.md).
 */
#include "cli.h"
#include "options.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOKEN_MAX_ROLES  32
#define TOKEN_MAX_NAME   64 /* bytes of the subject and of a role */
#define TOKEN_MAX_CLAIM  1024
#define TOKEN_MIN_SECRET 32
#define TOKEN_KEY_MAX    (64 * 1024)
#define TOKEN_MAX_TTL_MS (24LL * 3600 * 1000)

static void usage(FILE *out)
{
    fputs("usage: orderflow token --key-file FILE --sub SUBJECT --iss ISSUER --aud AUDIENCE\n"
          "                       [--alg HS256|RS256|ES256] [--roles ROLE,...] [--ttl DURATION]\n"
          "\n"
          "Prints a signed JSON Web Token (compact JWS) on standard output, with the claims\n"
          "sub, roles, iat, nbf (now), exp (now + ttl), iss, aud and a random jti.\n"
          "\n"
          "  --key-file FILE   HS256: the shared secret (at least 32 bytes; trailing line\n"
          "                    endings are ignored); RS256/ES256: the PEM private key\n"
          "  --alg ALG         HS256 (default), RS256 or ES256: the verifier's configured one\n"
          "  --sub SUBJECT     the subject (e.g. a user id), 1..64 bytes\n"
          "  --roles LIST      comma-separated roles, e.g. admin,customer (default: none)\n"
          "  --iss ISSUER      the issuer the verifier expects\n"
          "  --aud AUDIENCE    the audience the verifier expects\n"
          "  --ttl DURATION    lifetime, 1s..24h (default 1h)\n"
          "\n"
          "Exit status: 0 printed, 1 the key cannot sign, 2 bad arguments.\n",
          out);
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("orderflow token: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
    va_end(ap);
    return 2;
}

/* Printable text without control characters, 1..max bytes. */
static int text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return 0;
    return 1;
}

static int role_ok(const char *s, size_t n)
{
    if (n == 0 || n > TOKEN_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

static void wipe_free(unsigned char *key, size_t len)
{
    if (key) {
        explicit_bzero(key, len);
        free(key);
    }
}

/* The key file, by the auth plugin's rules. NULL after printing why. */
static unsigned char *read_key(const char *path, int hmac, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "orderflow token: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > TOKEN_KEY_MAX) {
        fprintf(stderr,
                "orderflow token: %s is not a key file (a regular file of at most %d "
                "bytes)\n",
                path, TOKEN_KEY_MAX);
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        fprintf(stderr, "orderflow token: out of memory\n");
        return NULL;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "orderflow token: cannot read %s: %s\n", path, strerror(errno));
            close(fd);
            wipe_free(buf, cap);
            return NULL;
        }
        if (r == 0 || (n += (size_t)r) == cap - 1)
            break;
    }
    close(fd);
    buf[n] = '\0';
    int is_pem = memmem(buf, n, "-----BEGIN ", 11) != NULL;
    const char *why = NULL;
    if (hmac) {
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            buf[--n] = '\0';
        if (is_pem)
            why = "holds a PEM key; HS256 needs a random secret (e.g. openssl rand -base64 48)";
        else if (n < TOKEN_MIN_SECRET)
            why = "is shorter than 32 bytes: too short for an HS256 secret";
    } else if (!is_pem) {
        why = "is not a PEM private key (-----BEGIN ...)";
    }
    if (why) {
        fprintf(stderr, "orderflow token: %s %s\n", path, why);
        wipe_free(buf, cap);
        return NULL;
    }
    *len = n;
    return buf;
}

int of_cmd_token(const of_cli *cli, int argc, char **argv)
{
    (void)cli;
    const char *key_file = NULL, *alg_name = "HS256", *sub = NULL, *roles = NULL, *iss = NULL,
               *aud = NULL, *ttl_text = "1h";
    static const struct option longopts[] = {
        {"key-file", required_argument, NULL, 'k'},
        {"alg", required_argument, NULL, 'a'},
        {"sub", required_argument, NULL, 's'},
        {"roles", required_argument, NULL, 'r'},
        {"iss", required_argument, NULL, 'i'},
        {"aud", required_argument, NULL, 'u'},
        {"ttl", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'k':
            key_file = optarg;
            break;
        case 'a':
            alg_name = optarg;
            break;
        case 's':
            sub = optarg;
            break;
        case 'r':
            roles = optarg;
            break;
        case 'i':
            iss = optarg;
            break;
        case 'u':
            aud = optarg;
            break;
        case 't':
            ttl_text = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc)
        return bad("unexpected argument '%s' (see orderflow token --help)", argv[optind]);
    if (!key_file)
        return bad("%s", "--key-file is required");
    if (!sub)
        return bad("%s", "--sub is required");
    if (!iss)
        return bad("%s", "--iss is required");
    if (!aud)
        return bad("%s", "--aud is required");
    jwt_alg_t alg;
    if (strcmp(alg_name, "HS256") == 0)
        alg = JWT_ALG_HS256;
    else if (strcmp(alg_name, "RS256") == 0)
        alg = JWT_ALG_RS256;
    else if (strcmp(alg_name, "ES256") == 0)
        alg = JWT_ALG_ES256;
    else
        return bad("--alg must be HS256, RS256 or ES256; got '%s'", alg_name);
    if (!text_ok(sub, TOKEN_MAX_NAME))
        return bad("%s", "--sub must have 1..64 bytes and no control characters");
    if (!text_ok(iss, TOKEN_MAX_CLAIM))
        return bad("%s", "--iss must have 1..1024 bytes and no control characters");
    if (!text_ok(aud, TOKEN_MAX_CLAIM))
        return bad("%s", "--aud must have 1..1024 bytes and no control characters");
    char err[256];
    int64_t ttl_ms = 0;
    if (of_parse_duration_ms(ttl_text, &ttl_ms, err, sizeof(err)) != 0)
        return bad("--ttl: %s", err);
    if (ttl_ms < 1000 || ttl_ms > TOKEN_MAX_TTL_MS)
        return bad("--ttl must be between 1s and 24h; got '%s'", ttl_text);

    json_t *jroles = json_array();
    if (!jroles)
        return bad("%s", "out of memory");
    for (const char *p = roles; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (!role_ok(p, n) || json_array_size(jroles) == TOKEN_MAX_ROLES) {
            json_decref(jroles);
            return bad("--roles must be at most 32 comma-separated names of 1..64 letters, "
                       "digits, '_', '-', '.' or ':'; got '%s'",
                       roles);
        }
        json_array_append_new(jroles, json_stringn(p, n));
        p = end ? end + 1 : p + n;
        if (end && !*p) {
            json_decref(jroles);
            return bad("--roles must not end with a comma; got '%s'", roles);
        }
    }

    unsigned char rnd[16];
    char jti[33];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        json_decref(jroles);
        fprintf(stderr, "orderflow token: no random bytes: %s\n", strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
    json_int_t now = (json_int_t)time(NULL);
    json_t *claims = json_object();
    int fail = !claims;
    if (!fail) {
        fail |= json_object_set_new(claims, "sub", json_string(sub));
        fail |= json_object_set(claims, "roles", jroles);
        fail |= json_object_set_new(claims, "iat", json_integer(now));
        fail |= json_object_set_new(claims, "nbf", json_integer(now));
        fail |= json_object_set_new(claims, "exp", json_integer(now + ttl_ms / 1000));
        fail |= json_object_set_new(claims, "iss", json_string(iss));
        fail |= json_object_set_new(claims, "aud", json_string(aud));
        fail |= json_object_set_new(claims, "jti", json_string(jti));
    }
    json_decref(jroles);
    char *text = fail ? NULL : json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    if (!text)
        return bad("%s", "--sub, --iss and --aud must be valid UTF-8");

    size_t key_len = 0;
    unsigned char *key = read_key(key_file, alg == JWT_ALG_HS256, &key_len);
    if (!key) {
        free(text);
        return 1;
    }
    jwt_t *jwt = NULL;
    char *token = NULL;
    if (key_len <= INT_MAX && jwt_new(&jwt) == 0 && jwt_add_grants_json(jwt, text) == 0 &&
        jwt_set_alg(jwt, alg, key, (int)key_len) == 0)
        token = jwt_encode_str(jwt);
    jwt_free(jwt);
    wipe_free(key, key_len + 1);
    free(text);
    if (!token) {
        fprintf(stderr, "orderflow token: cannot sign with %s: is it %s?\n", key_file,
                alg == JWT_ALG_HS256   ? "an HMAC secret"
                : alg == JWT_ALG_RS256 ? "an RSA private key in PEM"
                                       : "a P-256 EC private key in PEM");
        return 1;
    }
    printf("%s\n", token);
    free(token);
    return fflush(stdout) == 0 ? 0 : 1;
}
