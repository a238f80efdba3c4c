/*
 * auth: users, passwords and bearer tokens for the HTTP gateway.
 *
 * A route-only stage: it consumes no events and emits none. In init it registers four HTTP
 * handlers (the pipeline's `routes:` map them to paths, see docs/auth.md) and the gateway's
 * authenticator, which verifies the JSON Web Tokens that "login" issues:
 *
 *   register      POST {email, password, display_name}  -> 201 the user, role "customer"
 *   login         POST {email, password}                -> 200 {access_token, token_type,
 *                                                               expires_in}
 *   create_admin  POST {email, password, display_name}  -> 201 the user, role "admin" (the
 *                                                           caller needs the admin role)
 *   me            GET                                   -> 200 the caller's user
 *
 * Users live in the table `users` (the stage's migration). Passwords are hashed with yescrypt
 * and never logged; a login for an unknown email hashes a dummy password so that it takes as
 * long as a wrong password. Every handler runs in the host's transaction for the call: 2xx
 * answers return OF_OK (committed), refusals OF_REJECT (rolled back), database outages
 * OF_RETRY (503).
 */
#include <orderflow/stage.h>

#include "ofp_http.h"

#include "jwt_verify.h"
#include "password.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

typedef struct auth {
    const of_host_api *api;
    of_stage *stage;
    auth_jwt_ctx jwt;
    char *issuer, *audience;
    unsigned char *key, *public_key;
    size_t key_len, public_key_len;
    int64_t ttl_s;
    int min_password;
    int cost;
    char dummy_hash[AUTH_HASH_MAX + 1]; /* verified against when the email is unknown */
    of_counter *registered, *logins_ok, *logins_failed;
} auth;

static const char *const algorithms[] = {"HS256", "RS256", "ES256", NULL};

static const of_option options[] = {
    {.name = "issuer",
     .type = OF_OPT_STRING,
     .description = "the tokens' iss claim, required to match when verifying",
     .flags = OF_OPT_REQUIRED},
    {.name = "audience",
     .type = OF_OPT_STRING,
     .description = "the tokens' aud claim, required to match when verifying",
     .flags = OF_OPT_REQUIRED},
    {.name = "algorithm",
     .type = OF_OPT_ENUM,
     .default_value = "HS256",
     .description = "signature algorithm; tokens with any other alg are refused",
     .enum_values = algorithms},
    {.name = "key_file",
     .type = OF_OPT_STRING,
     .description = "HS256: file with the secret (>= 32 bytes); RS256/ES256: PEM private key",
     .flags = OF_OPT_REQUIRED},
    {.name = "public_key_file",
     .type = OF_OPT_STRING,
     .description = "RS256/ES256: PEM public key that verifies the tokens (required for them)"},
    {.name = "token_ttl",
     .type = OF_OPT_DURATION,
     .default_value = "1h",
     .description = "lifetime of the tokens login issues",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 60 * 1000,
     .max = 24 * 3600 * 1000},
    {.name = "min_password_length",
     .type = OF_OPT_INT,
     .default_value = "10",
     .description = "shortest password accepted at registration, in characters",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = 8,
     .max = 128},
    {.name = "yescrypt_cost",
     .type = OF_OPT_INT,
     .default_value = "5",
     .description = "yescrypt cost of new password hashes (each step doubles the work)",
     .flags = OF_OPT_HAS_MIN | OF_OPT_HAS_MAX,
     .min = AUTH_YESCRYPT_COST_MIN,
     .max = AUTH_YESCRYPT_COST_MAX},
    {.name = NULL},
};

static const of_migration migrations[] = {
    {1, "create users",
     "CREATE TABLE users (\n"
     "  id BIGINT NOT NULL AUTO_INCREMENT,\n"
     "  email VARCHAR(254) NOT NULL,\n"
     "  password_hash VARCHAR(255) NOT NULL,\n"
     "  display_name VARCHAR(200) NOT NULL,\n"
     "  roles VARCHAR(200) NOT NULL DEFAULT 'customer',\n"
     "  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  PRIMARY KEY (id),\n"
     "  UNIQUE KEY users_email (email)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"},
    {0, NULL, NULL},
};

/* ---- answering ------------------------------------------------------------------------------ */

/* ---- request bodies ------------------------------------------------------------------------- */

/* A required string field. 0, or -1 when answered (400). */
static int string_field(auth *a, of_http_request *req, const json_t *doc, const char *name,
                        const char **s, size_t *len)
{
    const json_t *v = json_object_get(doc, name);
    if (!v) {
        ofp_problem(a->api, req, 400, "Invalid request", "%s: is required", name);
        return -1;
    }
    if (!json_is_string(v)) {
        ofp_problem(a->api, req, 400, "Invalid request", "%s: must be a string", name);
        return -1;
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

/* ---- users ---------------------------------------------------------------------------------- */

/* Roles as stored ("admin,customer") into a JSON array. */
static json_t *roles_array(const char *text, size_t len)
{
    json_t *arr = json_array();
    size_t i = 0;
    while (arr && i < len) {
        size_t start = i;
        while (i < len && text[i] != ',')
            i++;
        size_t s = start, e = i;
        while (s < e && text[s] == ' ')
            s++;
        while (e > s && text[e - 1] == ' ')
            e--;
        if (e > s && json_array_append_new(arr, json_stringn(text + s, e - s)) != 0) {
            json_decref(arr);
            return NULL;
        }
        i++;
    }
    return arr;
}

static json_t *user_json(int64_t id, const char *email, size_t email_len, const char *name,
                         size_t name_len, const char *roles, size_t roles_len)
{
    json_t *doc = json_object();
    json_t *r = roles_array(roles, roles_len);
    if (!doc || !r || json_object_set_new(doc, "id", json_integer(id)) ||
        json_object_set_new(doc, "email", json_stringn(email, email_len)) ||
        json_object_set_new(doc, "display_name", json_stringn(name, name_len)) ||
        json_object_set(doc, "roles", r)) {
        json_decref(doc);
        doc = NULL;
    }
    json_decref(r);
    return doc;
}

/* register and create_admin: a new user with one role. */
static of_status create_user(auth *a, of_call *call, of_http_request *req, const char *role,
                             const char *creator)
{
    static const char *const fields[] = {"email", "password", "display_name", NULL};
    const of_host_api *api = a->api;
    json_t *doc = ofp_read_object(a->api, req, fields);
    if (!doc)
        return OF_REJECT;
    const char *email, *password, *name, *why;
    size_t email_len, password_len, name_len;
    of_status st = OF_REJECT;
    if (string_field(a, req, doc, "email", &email, &email_len) ||
        string_field(a, req, doc, "password", &password, &password_len) ||
        string_field(a, req, doc, "display_name", &name, &name_len))
        goto out;
    if ((why = auth_check_email(email, email_len))) {
        ofp_problem(a->api, req, 400, "Invalid request", "email: %s", why);
        goto out;
    }
    if ((why = auth_check_password(password, password_len, a->min_password))) {
        if (strcmp(why, AUTH_PASSWORD_TOO_SHORT) == 0)
            ofp_problem(a->api, req, 400, "Invalid request",
                        "password: must be at least %d characters", a->min_password);
        else
            ofp_problem(a->api, req, 400, "Invalid request", "password: %s", why);
        goto out;
    }
    if ((why = auth_check_display_name(name, name_len))) {
        ofp_problem(a->api, req, 400, "Invalid request", "display_name: %s", why);
        goto out;
    }
    char lower[AUTH_EMAIL_MAX + 1];
    char hash[AUTH_HASH_MAX + 1], err[160];
    if (auth_email_normalize(email, email_len, lower, sizeof(lower)) != 0) {
        ofp_problem(a->api, req, 400, "Invalid request", "email: must be at most 254 characters");
        goto out;
    }
    if (auth_password_hash(password, a->cost, hash, sizeof(hash), err, sizeof(err)) != 0) {
        api->log(a->stage, OF_LOG_ERROR, "cannot hash a password: %s", err);
        st = ofp_internal_error(a->api, req);
        goto out;
    }
    of_db_value params[] = {OF_DB_SN(lower, email_len), OF_DB_S(hash), OF_DB_SN(name, name_len),
                            OF_DB_S(role)};
    int64_t n = api->db_exec(call,
                             "INSERT INTO users (email, password_hash, display_name, roles) "
                             "VALUES (?, ?, ?, ?)",
                             params, sizeof(params) / sizeof(params[0]));
    explicit_bzero(hash, sizeof(hash));
    if (n < 0) {
        if (api->db_last_error(call, NULL) == OF_DB_ERR_DUPLICATE)
            ofp_problem(a->api, req, 409, "Email already registered",
                        "a user with this email address already exists");
        else
            st = ofp_http_db_failed(a->api, a->stage, call, req, "register");
        goto out;
    }
    int64_t id = api->db_last_insert_id(call);
    if (id <= 0) {
        api->log(a->stage, OF_LOG_ERROR, "register: no id for the new user");
        st = ofp_internal_error(a->api, req);
        goto out;
    }
    char location[64];
    snprintf(location, sizeof(location), "Location: /api/v1/users/%" PRId64, id);
    const char *const headers[] = {location, NULL};
    st = ofp_respond_json(a->api, req, 201,
                          user_json(id, lower, email_len, name, name_len, role, strlen(role)),
                          headers);
    if (st == OF_OK) {
        api->counter_add(a->registered, 1);
        api->log(a->stage, OF_LOG_INFO, "user %" PRId64 " created with role %s%s%s", id, role,
                 creator ? " by subject " : "", creator ? creator : "");
    }
out:
    json_decref(doc);
    return st;
}

static of_status handle_register(void *instance, of_call *call, of_http_request *req)
{
    return create_user(instance, call, req, "customer", NULL);
}

static of_status handle_create_admin(void *instance, of_call *call, of_http_request *req)
{
    auth *a = instance;
    /* The route should say roles: [admin]; checked here too, so that a route declared without
     * it does not let anybody create administrators. */
    const of_principal *p = a->api->http_principal(req);
    if (!p || !p->subject)
        return ofp_problem(a->api, req, 401, "Unauthorized",
                           "creating an administrator needs a bearer token with the admin role");
    int admin = 0;
    for (size_t i = 0; p->roles && p->roles[i] && !admin; i++)
        admin = strcmp(p->roles[i], "admin") == 0;
    if (!admin)
        return ofp_problem(a->api, req, 403, "Forbidden",
                           "creating an administrator needs the admin role");
    return create_user(a, call, req, "admin", p->subject);
}

static of_status handle_login(void *instance, of_call *call, of_http_request *req)
{
    static const char *const fields[] = {"email", "password", NULL};
    auth *a = instance;
    const of_host_api *api = a->api;
    json_t *doc = ofp_read_object(a->api, req, fields);
    if (!doc)
        return OF_REJECT;
    const char *email, *password;
    size_t email_len, password_len;
    of_status st = OF_REJECT;
    if (string_field(a, req, doc, "email", &email, &email_len) ||
        string_field(a, req, doc, "password", &password, &password_len))
        goto out;
    if (password_len > AUTH_PASSWORD_MAX_BYTES) {
        ofp_problem(a->api, req, 400, "Invalid request", "password: must be at most %d bytes",
                    AUTH_PASSWORD_MAX_BYTES);
        goto out;
    }
    int found = 0;
    int64_t id = 0;
    char hash[AUTH_HASH_MAX + 1] = "", roles[256] = "";
    char lower[AUTH_EMAIL_MAX + 1];
    if (auth_email_normalize(email, email_len, lower, sizeof(lower)) == 0 &&
        strlen(lower) == email_len) {
        of_db_value param = OF_DB_SN(lower, email_len);
        of_db_rows *rows = api->db_query(
            call, "SELECT id, password_hash, roles FROM users WHERE email = ?", &param, 1);
        if (!rows) {
            st = ofp_http_db_failed(a->api, a->stage, call, req, "login");
            goto out;
        }
        int r = api->db_rows_next(rows);
        if (r < 0) {
            api->db_rows_free(rows);
            st = ofp_http_db_failed(a->api, a->stage, call, req, "login");
            goto out;
        }
        of_db_value vid, vhash, vroles;
        if (r == 1 && api->db_rows_get(rows, 0, &vid) == 0 &&
            api->db_rows_get(rows, 1, &vhash) == 0 && api->db_rows_get(rows, 2, &vroles) == 0 &&
            vid.type == OF_DB_INT && vhash.type == OF_DB_TEXT && vhash.len < sizeof(hash) &&
            vroles.type == OF_DB_TEXT && vroles.len < sizeof(roles)) {
            found = 1;
            id = vid.i;
            memcpy(hash, vhash.p, vhash.len);
            hash[vhash.len] = '\0';
            memcpy(roles, vroles.p, vroles.len);
            roles[vroles.len] = '\0';
        }
        api->db_rows_free(rows);
    }
    /* The same work whether or not the email is known. */
    int ok = auth_password_verify(password, found ? hash : a->dummy_hash) && found &&
             strlen(password) == password_len;
    explicit_bzero(hash, sizeof(hash));
    if (!ok) {
        api->counter_add(a->logins_failed, 1);
        if (found)
            api->log(a->stage, OF_LOG_INFO, "login failed for user %" PRId64, id);
        else
            api->log(a->stage, OF_LOG_INFO, "login failed: unknown email");
        ofp_problem(a->api, req, 401, "Invalid credentials",
                    "the email or the password is not correct");
        goto out;
    }

    const char *role_ptrs[AUTH_JWT_MAX_ROLES];
    size_t n_roles = 0;
    for (char *save = NULL, *tok = strtok_r(roles, ", ", &save);
         tok && n_roles < AUTH_JWT_MAX_ROLES; tok = strtok_r(NULL, ", ", &save))
        role_ptrs[n_roles++] = tok;
    char subject[24], err[256];
    snprintf(subject, sizeof(subject), "%" PRId64, id);
    char *token = auth_jwt_sign(&a->jwt, subject, role_ptrs, n_roles, (int64_t)time(NULL), a->ttl_s,
                                err, sizeof(err));
    if (!token) {
        api->log(a->stage, OF_LOG_ERROR, "cannot sign a token: %s", err);
        st = ofp_internal_error(a->api, req);
        goto out;
    }
    json_t *answer = json_object();
    if (answer && (json_object_set_new(answer, "access_token", json_string(token)) ||
                   json_object_set_new(answer, "token_type", json_string("Bearer")) ||
                   json_object_set_new(answer, "expires_in", json_integer(a->ttl_s)))) {
        json_decref(answer);
        answer = NULL;
    }
    explicit_bzero(token, strlen(token));
    free(token);
    /* RFC 6749 5.1: a token answer is never cached. */
    static const char *const headers[] = {"Cache-Control: no-store", "Pragma: no-cache", NULL};
    st = ofp_respond_json(a->api, req, 200, answer, headers);
    if (st == OF_OK) {
        api->counter_add(a->logins_ok, 1);
        api->log(a->stage, OF_LOG_DEBUG, "user %" PRId64 " logged in", id);
    }
out:
    json_decref(doc);
    return st;
}

/* A user id as the subject gives it: 1..18 digits, no sign, no leading zero. 0 when not one. */
static int64_t subject_id(const char *s)
{
    if (!s || s[0] < '1' || s[0] > '9' || strlen(s) > 18)
        return 0;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (*p - '0');
    }
    return v;
}

static of_status handle_me(void *instance, of_call *call, of_http_request *req)
{
    auth *a = instance;
    const of_host_api *api = a->api;
    const of_principal *p = api->http_principal(req);
    if (!p || !p->subject)
        return ofp_problem(a->api, req, 401, "Unauthorized",
                           "this route needs a bearer token (declare it with auth: required)");
    int64_t id = subject_id(p->subject);
    if (id <= 0)
        return ofp_problem(a->api, req, 404, "No such user", "the token's subject is not a user");
    of_db_value param = OF_DB_I(id);
    of_db_rows *rows = api->db_query(call,
                                     "SELECT id, email, display_name, roles, created_at FROM "
                                     "users WHERE id = ?",
                                     &param, 1);
    if (!rows)
        return ofp_http_db_failed(a->api, a->stage, call, req, "me");
    int r = api->db_rows_next(rows);
    if (r < 0) {
        api->db_rows_free(rows);
        return ofp_http_db_failed(a->api, a->stage, call, req, "me");
    }
    if (r == 0) {
        api->db_rows_free(rows);
        return ofp_problem(a->api, req, 404, "No such user", "the token's user no longer exists");
    }
    of_db_value v[5];
    json_t *doc = NULL;
    int got = 1;
    for (size_t i = 0; i < 5; i++)
        got &= api->db_rows_get(rows, i, &v[i]) == 0;
    if (got && v[0].type == OF_DB_INT && v[1].type == OF_DB_TEXT && v[2].type == OF_DB_TEXT &&
        v[3].type == OF_DB_TEXT) {
        doc = user_json(v[0].i, v[1].p, v[1].len, v[2].p, v[2].len, v[3].p, v[3].len);
        /* created_at: "YYYY-MM-DD HH:MM:SS.mmm" in UTC (the host's sessions) -> RFC 3339 */
        if (doc && v[4].type == OF_DB_TEXT && v[4].len >= 19 && v[4].len < 40) {
            char ts[48];
            memcpy(ts, v[4].p, v[4].len);
            ts[v[4].len] = '\0';
            if (ts[10] == ' ')
                ts[10] = 'T';
            strcat(ts, "Z");
            json_object_set_new(doc, "created_at", json_string(ts));
        }
    }
    api->db_rows_free(rows);
    if (!doc) {
        api->log(a->stage, OF_LOG_ERROR, "me: unexpected columns for user %" PRId64, id);
        return ofp_internal_error(a->api, req);
    }
    return ofp_respond_json(a->api, req, 200, doc, NULL);
}

/* ---- the gateway's authenticator ------------------------------------------------------------ */

/* The identity handed to the gateway stays valid until the next call on this thread. */
static _Thread_local auth_jwt_identity tls_identity;

static int authenticate(void *instance, const char *token, of_principal *out, char *errstr,
                        size_t errstr_size)
{
    auth *a = instance;
    if (auth_jwt_verify(&a->jwt, token, (int64_t)time(NULL), &tls_identity, errstr, errstr_size) !=
        0)
        return -1;
    out->subject = tls_identity.subject;
    out->roles = tls_identity.roles;
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void auth_free(auth *a)
{
    if (!a)
        return;
    const of_host_api *api = a->api;
    auth_key_free(a->key, a->key_len);
    auth_key_free(a->public_key, a->public_key_len);
    api->free(a->issuer);
    api->free(a->audience);
    explicit_bzero(a, sizeof(*a));
    api->free(a);
}

/* Warns when a private key or secret can be read by group or others. */
static void check_mode(auth *a, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077))
        a->api->log(a->stage, OF_LOG_WARN,
                    "key_file %s is readable by group or others (mode %04o); chmod 600 it", path,
                    (unsigned)(st.st_mode & 07777));
}

static int auth_init(of_stage *stage, const of_host_api *api, const of_config *config,
                     void **instance, char *errstr, size_t errstr_size)
{
    if (!OF_API_HAS(api, db_exec) || !OF_API_HAS(api, db_query) || !OF_API_HAS(api, db_rows_next) ||
        !OF_API_HAS(api, db_rows_get) || !OF_API_HAS(api, db_rows_free) ||
        !OF_API_HAS(api, db_last_insert_id) || !OF_API_HAS(api, db_last_error)) {
        snprintf(errstr, errstr_size,
                 "the auth stage needs the host's database (a mysql: section, ABI 1.1)");
        return -1;
    }
    if (!OF_API_HAS(api, http_handler) || !OF_API_HAS(api, http_authenticator) ||
        !OF_API_HAS(api, http_body) || !OF_API_HAS(api, http_principal) ||
        !OF_API_HAS(api, http_respond) || !OF_API_HAS(api, http_problem)) {
        snprintf(errstr, errstr_size, "the auth stage needs the host's HTTP gateway (ABI 1.1)");
        return -1;
    }
    auth *a = api->calloc(1, sizeof(*a));
    if (!a) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    a->api = api;
    a->stage = stage;
    char err[384];
    const char *issuer = api->config_string(config, "issuer");
    const char *audience = api->config_string(config, "audience");
    const char *key_file = api->config_string(config, "key_file");
    const char *public_key_file = api->config_string(config, "public_key_file");
    int alg = api->config_enum(config, "algorithm");
    if (!issuer || !*issuer || !audience || !*audience) {
        snprintf(errstr, errstr_size, "issuer and audience must not be empty");
        goto fail;
    }
    if (alg < 0 || !auth_alg_name((auth_alg)alg)) {
        snprintf(errstr, errstr_size, "algorithm must be HS256, RS256 or ES256");
        goto fail;
    }
    if (alg == AUTH_ALG_HS256 && public_key_file) {
        snprintf(errstr, errstr_size,
                 "public_key_file is only for RS256 and ES256 (HS256 verifies with key_file)");
        goto fail;
    }
    if (alg != AUTH_ALG_HS256 && (!public_key_file || !*public_key_file)) {
        snprintf(errstr, errstr_size, "public_key_file is required for %s",
                 auth_alg_name((auth_alg)alg));
        goto fail;
    }
    if (!(a->issuer = api->strdup(issuer)) || !(a->audience = api->strdup(audience))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (auth_key_read(key_file, alg == AUTH_ALG_HS256, &a->key, &a->key_len, err, sizeof(err))) {
        snprintf(errstr, errstr_size, "key_file: %s", err);
        goto fail;
    }
    check_mode(a, key_file);
    if (alg != AUTH_ALG_HS256 &&
        auth_key_read(public_key_file, 0, &a->public_key, &a->public_key_len, err, sizeof(err))) {
        snprintf(errstr, errstr_size, "public_key_file: %s", err);
        goto fail;
    }
    a->jwt = (auth_jwt_ctx){
        .alg = (auth_alg)alg,
        .sign_key = a->key,
        .sign_key_len = a->key_len,
        .verify_key = alg == AUTH_ALG_HS256 ? a->key : a->public_key,
        .verify_key_len = alg == AUTH_ALG_HS256 ? a->key_len : a->public_key_len,
        .issuer = a->issuer,
        .audience = a->audience,
    };
    if (auth_jwt_self_test(&a->jwt, err, sizeof(err)) != 0) {
        snprintf(errstr, errstr_size, "%s", err);
        goto fail;
    }
    a->ttl_s = api->config_duration_ms(config, "token_ttl") / 1000;
    a->min_password = (int)api->config_int(config, "min_password_length");
    a->cost = (int)api->config_int(config, "yescrypt_cost");

    /* The dummy hash: a random password nobody knows, at the configured cost. */
    unsigned char rnd[24];
    char dummy[sizeof(rnd) * 2 + 1];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        snprintf(errstr, errstr_size, "no random bytes: %s", strerror(errno));
        goto fail;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(dummy + 2 * i, 3, "%02x", rnd[i]);
    int hrc =
        auth_password_hash(dummy, a->cost, a->dummy_hash, sizeof(a->dummy_hash), err, sizeof(err));
    explicit_bzero(dummy, sizeof(dummy));
    explicit_bzero(rnd, sizeof(rnd));
    if (hrc != 0) {
        snprintf(errstr, errstr_size, "yescrypt does not work here: %s", err);
        goto fail;
    }

    static const struct {
        const char *name;
        of_http_handler fn;
    } handlers[] = {
        {"register", handle_register},
        {"login", handle_login},
        {"create_admin", handle_create_admin},
        {"me", handle_me},
    };
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        if (api->http_handler(stage, handlers[i].name, handlers[i].fn) != 0) {
            snprintf(errstr, errstr_size, "cannot register the HTTP handler '%s'",
                     handlers[i].name);
            goto fail;
        }
    }
    if (api->http_authenticator(stage, authenticate) != 0) {
        snprintf(errstr, errstr_size, "cannot register the authenticator");
        goto fail;
    }
    a->registered = api->counter_register(stage, "auth_users_registered", "users created");
    a->logins_ok = api->counter_register(stage, "auth_logins_succeeded", "tokens issued");
    a->logins_failed =
        api->counter_register(stage, "auth_logins_failed", "logins refused (wrong credentials)");
    api->log(stage, OF_LOG_INFO, "issuing %s tokens for issuer '%s', audience '%s', valid %llds",
             auth_alg_name((auth_alg)alg), a->issuer, a->audience, (long long)a->ttl_s);
    *instance = a;
    return 0;
fail:
    auth_free(a);
    return -1;
}

static of_status auth_process(void *instance, of_call *call)
{
    auth *a = instance;
    a->api->set_reason(call, "the auth stage consumes no events (it only serves HTTP routes)");
    return OF_REJECT;
}

static void auth_shutdown(void *instance)
{
    auth_free(instance);
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "auth",
    .version = "1.0.0",
    .description = "users, passwords and JWT bearer tokens for the HTTP gateway",
    .options = options,
    .outputs = NULL,
    .init = auth_init,
    .process = auth_process,
    .shutdown = auth_shutdown,
    .flags = OF_STAGE_DATABASE,
    .migrations = migrations,
};

OF_STAGE_DEFINE(descriptor)
