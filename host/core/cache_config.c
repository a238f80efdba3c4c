/* The `redis:` section of the host configuration. */
#include "cache.h"

#include "options.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const redis_keys[] = {
    "host",       "port", "password", "db", "pool_size", "connect_timeout", "command_timeout",
    "key_prefix", NULL};

int of_redis_config_default(of_redis_config *out)
{
    memset(out, 0, sizeof(*out));
    out->port = OF_REDIS_DEFAULT_PORT;
    out->db = 0;
    out->pool_size = OF_REDIS_DEFAULT_POOL_SIZE;
    out->connect_timeout_ms = OF_REDIS_DEFAULT_TIMEOUT_MS;
    out->command_timeout_ms = OF_REDIS_DEFAULT_TIMEOUT_MS;
    out->host = strdup(OF_REDIS_DEFAULT_HOST);
    out->key_prefix = strdup(OF_REDIS_DEFAULT_KEY_PREFIX);
    if (!out->host || !out->key_prefix) {
        of_redis_config_free(out);
        return -1;
    }
    return 0;
}

void of_redis_config_free(of_redis_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->host);
    if (cfg->password) {
        /* a secret: do not leave it in freed memory */
        explicit_bzero(cfg->password, strlen(cfg->password));
        free(cfg->password);
    }
    free(cfg->key_prefix);
    cfg->host = cfg->password = cfg->key_prefix = NULL;
}

typedef struct pctx {
    const char *file;
    of_diag *diag;
} pctx;

static void perr(pctx *c, const of_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(pctx *c, const of_ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    of_diag_addv(c->diag, OF_SEV_ERROR, c->file, at ? at->line : 0, at ? at->column : 0, fmt, ap);
    va_end(ap);
}

/* A scalar that is not null; reports "must be WHAT; got ..." otherwise. With secret, a scalar
 * is never shown. */
static int want_scalar(pctx *c, const of_ynode *n, const char *key, const char *what, int secret)
{
    if (of_yis_string(n))
        return 0;
    char got[96];
    if (secret && n->kind == OF_Y_SCALAR)
        snprintf(got, sizeof(got), "%s", n->is_null ? "null" : "a value of another type");
    else
        of_ynode_describe(n, got, sizeof(got));
    perr(c, n, "redis '%s' must be %s; got %s", key, what, got);
    return -1;
}

/* An integer in [lo, hi] (written plain or quoted, e.g. from ${VAR}). */
static void parse_int_key(pctx *c, const of_ynode *n, const char *key, int64_t lo, int64_t hi,
                          int *out)
{
    char what[64];
    snprintf(what, sizeof(what), "an integer %lld..%lld", (long long)lo, (long long)hi);
    if (want_scalar(c, n, key, what, 0) < 0)
        return;
    int64_t v;
    char why[256];
    if (of_parse_int(n->str, &v, why, sizeof(why)) < 0) {
        perr(c, n, "redis '%s': %s", key, why);
        return;
    }
    if (v < lo || v > hi) {
        perr(c, n, "redis '%s' must be %lld..%lld; got %lld", key, (long long)lo, (long long)hi,
             (long long)v);
        return;
    }
    *out = (int)v;
}

static void parse_timeout_key(pctx *c, const of_ynode *n, const char *key, int64_t *out)
{
    if (want_scalar(c, n, key, "a duration such as 200ms", 0) < 0)
        return;
    int64_t ms;
    char why[256];
    if (of_parse_duration_ms(n->str, &ms, why, sizeof(why)) < 0) {
        perr(c, n, "redis '%s': %s", key, why);
        return;
    }
    if (ms < 1 || ms > OF_REDIS_MAX_TIMEOUT_MS) {
        char shown[64];
        of_format_duration_ms(ms, shown, sizeof(shown));
        perr(c, n, "redis '%s' must be between 1ms and 60s; got %s", key, shown);
        return;
    }
    *out = ms;
}

/* Replaces *slot with a copy of the node's string. */
static void set_string(pctx *c, const of_ynode *n, char **slot)
{
    char *s = strdup(n->str);
    if (!s) {
        perr(c, n, "out of memory");
        return;
    }
    free(*slot);
    *slot = s;
}

static int has_space_or_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 1;
    return 0;
}

void of_redis_config_parse(of_redis_config *out, const of_ynode *node, const char *file,
                           of_diag *diag)
{
    pctx c = {.file = file, .diag = diag};
    if (of_redis_config_default(out) < 0) {
        of_diag_add(diag, OF_SEV_ERROR, file, node ? node->line : 0, node ? node->column : 0,
                    "out of memory");
        return;
    }
    if (!node)
        return;
    out->enabled = 1;
    if (node->kind == OF_Y_SCALAR && node->is_null)
        return;
    if (node->kind != OF_Y_MAP) {
        char got[96];
        of_ynode_describe(node, got, sizeof(got));
        perr(&c, node,
             "'redis' must be a mapping (host, port, password, db, pool_size, connect_timeout, "
             "command_timeout, key_prefix); got %s",
             got);
        return;
    }
    of_ymap_check_keys(node, redis_keys, "redis", file, diag);

    const of_ynode *n;
    if ((n = of_ymap_get(node, "host")) && want_scalar(&c, n, "host", "a host name", 0) == 0) {
        if (n->len == 0 || has_space_or_ctl(n->str))
            perr(&c, n, "redis 'host' must be a host name or address without spaces; got '%.80s'",
                 n->str);
        else
            set_string(&c, n, &out->host);
    }
    if ((n = of_ymap_get(node, "port")))
        parse_int_key(&c, n, "port", 1, 65535, &out->port);
    if ((n = of_ymap_get(node, "password")) && want_scalar(&c, n, "password", "a string", 1) == 0) {
        if (n->len == 0)
            perr(&c, n, "redis 'password' is empty; leave the key out for a Redis without AUTH");
        else if (strlen(n->str) != n->len)
            perr(&c, n, "redis 'password' must not contain NUL bytes");
        else
            set_string(&c, n, &out->password);
    }
    if ((n = of_ymap_get(node, "db")))
        parse_int_key(&c, n, "db", 0, OF_REDIS_MAX_DB, &out->db);
    if ((n = of_ymap_get(node, "pool_size")))
        parse_int_key(&c, n, "pool_size", 1, OF_REDIS_MAX_POOL_SIZE, &out->pool_size);
    if ((n = of_ymap_get(node, "connect_timeout")))
        parse_timeout_key(&c, n, "connect_timeout", &out->connect_timeout_ms);
    if ((n = of_ymap_get(node, "command_timeout")))
        parse_timeout_key(&c, n, "command_timeout", &out->command_timeout_ms);
    if ((n = of_ymap_get(node, "key_prefix"))) {
        /* "" is allowed: no prefix. A quoted '' is a string; a plain empty value is null. */
        if (n->kind == OF_Y_SCALAR && n->is_null && n->quoted == 0) {
            perr(&c, n, "redis 'key_prefix' must be a string (write '' for no prefix); got null");
        } else if (want_scalar(&c, n, "key_prefix", "a string", 0) == 0) {
            if (n->len > OF_REDIS_MAX_KEY_PREFIX)
                perr(&c, n, "redis 'key_prefix' is %zu bytes; at most %d", n->len,
                     OF_REDIS_MAX_KEY_PREFIX);
            else if (strlen(n->str) != n->len || has_space_or_ctl(n->str))
                perr(&c, n, "redis 'key_prefix' must not contain spaces or control characters");
            else
                set_string(&c, n, &out->key_prefix);
        }
    }
}

int of_redis_config_copy(of_redis_config *dst, const of_redis_config *src)
{
    *dst = *src;
    dst->host = strdup(src->host ? src->host : OF_REDIS_DEFAULT_HOST);
    dst->password = src->password ? strdup(src->password) : NULL;
    dst->key_prefix = strdup(src->key_prefix ? src->key_prefix : "");
    if (dst->pool_size < 1)
        dst->pool_size = OF_REDIS_DEFAULT_POOL_SIZE;
    if (dst->pool_size > OF_REDIS_MAX_POOL_SIZE)
        dst->pool_size = OF_REDIS_MAX_POOL_SIZE;
    if (dst->connect_timeout_ms < 1)
        dst->connect_timeout_ms = OF_REDIS_DEFAULT_TIMEOUT_MS;
    if (dst->command_timeout_ms < 1)
        dst->command_timeout_ms = OF_REDIS_DEFAULT_TIMEOUT_MS;
    if (!dst->host || !dst->key_prefix || (src->password && !dst->password)) {
        of_redis_config_free(dst);
        memset(dst, 0, sizeof(*dst));
        return -1;
    }
    return 0;
}
