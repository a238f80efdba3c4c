/*
 * auth_verify_token: checks a token with the auth plugin's own verifier (jwt_verify.c), for the
 * command-line tests (tests/cli/token.sh). Not installed.
 *
 *   auth_verify_token ALG KEY_FILE ISSUER AUDIENCE TOKEN
 *
 * KEY_FILE is the HS256 secret or the RS256/ES256 public key. Prints "sub=...", "roles=a,b" and
 * "ttl=N" (exp - iat) and exits 0, or prints the reason and exits 1; 2 for bad arguments.
 */
#include "jwt_verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: auth_verify_token ALG KEY_FILE ISSUER AUDIENCE TOKEN\n");
        return 2;
    }
    int alg = auth_alg_parse(argv[1]);
    if (alg < 0) {
        fprintf(stderr, "unknown algorithm %s\n", argv[1]);
        return 2;
    }
    unsigned char *key = NULL;
    size_t key_len = 0;
    char err[512];
    if (auth_key_read(argv[2], alg == AUTH_ALG_HS256, &key, &key_len, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    auth_jwt_ctx ctx = {.alg = (auth_alg)alg,
                        .verify_key = key,
                        .verify_key_len = key_len,
                        .issuer = argv[3],
                        .audience = argv[4]};
    static auth_jwt_identity id;
    int rc = auth_jwt_verify(&ctx, argv[5], (int64_t)time(NULL), &id, err, sizeof(err));
    auth_key_free(key, key_len);
    if (rc != 0) {
        printf("%s\n", err);
        return 1;
    }
    printf("sub=%s\nroles=", id.subject);
    for (size_t i = 0; i < id.n_roles; i++)
        printf("%s%s", i ? "," : "", id.roles[i]);
    printf("\nttl=%lld\n", (long long)(id.exp - id.iat));
    return 0;
}
