/* The host configuration's `mysql:` section. */
#include "db.h"

#include "options.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const mysql_keys[] = {
    "host",     "port",      "socket",          "user",         "password",      "password_file",
    "database", "pool_size", "connect_timeout", "read_timeout", "write_timeout", "acquire_timeout",
    NULL};

/* Longest password file read. */
#define PASSWORD_FILE_MAX 4096
/* Longest timeout accepted. */
#define TIMEOUT_MAX_MS ((int64_t)3600 * 1000)

typedef struct pctx {
    const char *file;
    const char *dir;
    of_diag *diag;
} pctx;

static void perr(pctx *c, const of_ynode *at, of_severity sev, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void perr(pctx *c, const of_ynode *at, of_severity sev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    of_diag_addv(c->diag, sev, c->file, at ? at->line : 0, at ? at->column : 0, fmt, ap);
    va_end(ap);
}

void of_mysql_config_defaults(of_mysql_config *out)
{
    memset(out, 0, sizeof(*out));
    out->port = 3306;
    out->pool_size = 8;
    out->connect_timeout_ms = 5000;
    out->read_timeout_ms = 30000;
    out->write_timeout_ms = 30000;
    out->acquire_timeout_ms = 5000;
}

static void wipe_free(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

void of_mysql_config_free(of_mysql_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->host);
    free(cfg->socket);
    free(cfg->user);
    wipe_free(cfg->password);
    free(cfg->database);
    of_mysql_config_defaults(cfg);
}

/* A non-empty string value, copied; reports otherwise (never echoing a secret). */
static char *get_string(pctx *c, const of_ynode *n, const char *key, int secret, int allow_empty)
{
    if (of_yis_string(n) && (allow_empty || n->len > 0)) {
        char *s = strdup(n->str);
        if (!s)
            perr(c, n, OF_SEV_ERROR, "out of memory");
        return s;
    }
    char got[96];
    if (secret && n->kind == OF_Y_SCALAR && !n->is_null)
        snprintf(got, sizeof(got), "an empty string");
    else
        of_ynode_describe(n, got, sizeof(got));
    perr(c, n, OF_SEV_ERROR, "mysql '%s' must be a%s string; got %s", key,
         allow_empty ? "" : " non-empty", got);
    return NULL;
}

static int get_int(pctx *c, const of_ynode *n, const char *key, int64_t min, int64_t max,
                   int64_t *out)
{
    char why[256], got[96];
    int64_t v;
    if (!of_yis_string(n) || of_parse_int(n->str, &v, why, sizeof(why)) < 0) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, OF_SEV_ERROR, "mysql '%s' must be an integer %lld..%lld; got %s", key,
             (long long)min, (long long)max, got);
        return -1;
    }
    if (v < min || v > max) {
        perr(c, n, OF_SEV_ERROR, "mysql '%s' must be %lld..%lld; got %lld", key, (long long)min,
             (long long)max, (long long)v);
        return -1;
    }
    *out = v;
    return 0;
}

static void get_duration(pctx *c, const of_ynode *n, const char *key, int64_t min, int64_t *out)
{
    char why[256], got[96];
    int64_t v;
    if (!of_yis_string(n)) {
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, OF_SEV_ERROR, "mysql '%s' must be a duration such as 5s; got %s", key, got);
        return;
    }
    if (of_parse_duration_ms(n->str, &v, why, sizeof(why)) < 0) {
        perr(c, n, OF_SEV_ERROR, "mysql '%s': %s", key, why);
        return;
    }
    if (v < min || v > TIMEOUT_MAX_MS) {
        char lo[32], hi[32];
        of_format_duration_ms(min, lo, sizeof(lo));
        of_format_duration_ms(TIMEOUT_MAX_MS, hi, sizeof(hi));
        perr(c, n, OF_SEV_ERROR, "mysql '%s' must be %s..%s; got %s", key, lo, hi, n->str);
        return;
    }
    *out = v;
}

/* A path relative to the configuration's folder (as hostconfig.c resolves its paths: an
 * empty folder is the root). */
static char *resolve_path(const pctx *c, const char *p)
{
    if (p[0] == '/' || !c->dir || strcmp(c->dir, ".") == 0)
        return strdup(p);
    size_t n = strlen(c->dir);
    char *out = NULL;
    if (asprintf(&out, "%s%s%s", c->dir, n && c->dir[n - 1] == '/' ? "" : "/", p) < 0)
        return NULL;
    return out;
}

/* Reads the password file: its first line, trailing CR/LF stripped. */
static char *read_password_file(pctx *c, const of_ynode *n)
{
    if (!of_yis_string(n) || n->len == 0) {
        char got[96];
        of_ynode_describe(n, got, sizeof(got));
        perr(c, n, OF_SEV_ERROR, "mysql 'password_file' must be a file path; got %s", got);
        return NULL;
    }
    char *path = resolve_path(c, n->str);
    if (!path) {
        perr(c, n, OF_SEV_ERROR, "out of memory");
        return NULL;
    }
    char *pw = NULL;
    FILE *f = fopen(path, "re");
    if (!f) {
        perr(c, n, OF_SEV_ERROR, "mysql 'password_file' '%s' cannot be read: %s", path,
             strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            perr(c, n, OF_SEV_ERROR, "mysql 'password_file' '%s' is not a regular file", path);
            goto out;
        }
        if (st.st_mode & S_IROTH)
            perr(c, n, OF_SEV_WARNING,
                 "mysql 'password_file' '%s' is readable by other users (mode %03o); "
                 "chmod o-r it",
                 path, (unsigned)(st.st_mode & 0777));
    }
    char buf[PASSWORD_FILE_MAX + 2];
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    if (ferror(f)) {
        perr(c, n, OF_SEV_ERROR, "mysql 'password_file' '%s' cannot be read: %s", path,
             strerror(errno));
        goto wipe;
    }
    if (len > PASSWORD_FILE_MAX) {
        perr(c, n, OF_SEV_ERROR, "mysql 'password_file' '%s' is longer than %d bytes", path,
             PASSWORD_FILE_MAX);
        goto wipe;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    if (len == 0) {
        perr(c, n, OF_SEV_ERROR, "mysql 'password_file' '%s' is empty", path);
        goto wipe;
    }
    if (memchr(buf, '\0', len) || memchr(buf, '\n', len)) {
        perr(c, n, OF_SEV_ERROR,
             "mysql 'password_file' '%s' must hold the password on one line (it has more "
             "lines or a NUL byte)",
             path);
        goto wipe;
    }
    pw = strdup(buf);
    if (!pw)
        perr(c, n, OF_SEV_ERROR, "out of memory");
wipe:
    explicit_bzero(buf, sizeof(buf));
out:
    if (f)
        fclose(f);
    free(path);
    return pw;
}

static const of_ynode *key_node(const of_ynode *map, const char *key)
{
    for (size_t i = 0; map && map->kind == OF_Y_MAP && i < map->n_pairs; i++)
        if (strcmp(map->pairs[i].key->str, key) == 0)
            return map->pairs[i].key;
    return NULL;
}

void of_mysql_config_parse(of_mysql_config *out, const of_ynode *node, const char *config_dir,
                           const char *file, of_diag *diag)
{
    pctx c = {.file = file, .dir = config_dir, .diag = diag};
    of_mysql_config_defaults(out);
    out->enabled = 1;
    if (!node || node->kind != OF_Y_MAP) {
        char got[96] = "nothing";
        if (node)
            of_ynode_describe(node, got, sizeof(got));
        perr(&c, node, OF_SEV_ERROR,
             "'mysql' must be a mapping with at least user and database (keys: host, port, "
             "socket, user, password, password_file, database, pool_size, connect_timeout, "
             "read_timeout, write_timeout, acquire_timeout); got %s",
             got);
        return;
    }
    of_ymap_check_keys(node, mysql_keys, "mysql", file, diag);
    const of_ynode *n;
    int64_t v;
    if ((n = of_ymap_get(node, "host")))
        out->host = get_string(&c, n, "host", 0, 0);
    if ((n = of_ymap_get(node, "port")) && get_int(&c, n, "port", 1, 65535, &v) == 0)
        out->port = (int)v;
    if ((n = of_ymap_get(node, "socket")))
        out->socket = get_string(&c, n, "socket", 0, 0);
    if (out->socket) {
        const char *ignored[] = {"host", "port"};
        for (size_t i = 0; i < 2; i++)
            if ((n = key_node(node, ignored[i])))
                perr(&c, n, OF_SEV_WARNING, "mysql '%s' is ignored: 'socket' is set", ignored[i]);
    }
    if (!out->host && !(out->host = strdup("127.0.0.1")))
        perr(&c, node, OF_SEV_ERROR, "out of memory");

    if ((n = of_ymap_get(node, "user")))
        out->user = get_string(&c, n, "user", 0, 0);
    else
        perr(&c, node, OF_SEV_ERROR, "mysql needs 'user' (the database user to connect as)");

    const of_ynode *pw = of_ymap_get(node, "password"), *pwf = of_ymap_get(node, "password_file");
    if (pw && pwf) {
        perr(&c, key_node(node, "password_file"), OF_SEV_ERROR,
             "mysql: give either 'password' or 'password_file', not both");
    } else if (pw) {
        out->password = get_string(&c, pw, "password", 1, 1);
    } else if (pwf) {
        out->password = read_password_file(&c, pwf);
    }

    if ((n = of_ymap_get(node, "database"))) {
        out->database = get_string(&c, n, "database", 0, 0);
        if (out->database && strlen(out->database) > 64)
            perr(&c, n, OF_SEV_ERROR, "mysql 'database' is longer than 64 characters");
    } else {
        perr(&c, node, OF_SEV_ERROR, "mysql needs 'database' (the schema to use)");
    }
    if ((n = of_ymap_get(node, "pool_size")) &&
        get_int(&c, n, "pool_size", 1, OF_DB_POOL_MAX, &v) == 0)
        out->pool_size = (int)v;
    if ((n = of_ymap_get(node, "connect_timeout")))
        get_duration(&c, n, "connect_timeout", 1, &out->connect_timeout_ms);
    if ((n = of_ymap_get(node, "read_timeout")))
        get_duration(&c, n, "read_timeout", 1, &out->read_timeout_ms);
    if ((n = of_ymap_get(node, "write_timeout")))
        get_duration(&c, n, "write_timeout", 1, &out->write_timeout_ms);
    if ((n = of_ymap_get(node, "acquire_timeout")))
        get_duration(&c, n, "acquire_timeout", 0, &out->acquire_timeout_ms);
}
