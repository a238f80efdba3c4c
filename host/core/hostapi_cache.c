/* The cache operations on the host's Redis pool, and the host table's cache_* functions that
 * run them for a stage (host_api.h, ABI 1.1). Keys and channels get the pool's key prefix;
 * values are binary-safe. Every failure is -1: a cache is optional, a stage goes on without it.
 * Failures are not logged per call (the pool logs when Redis goes down and comes back; error
 * replies are logged at debug level and counted). */
#include "cache.h"

#include "log.h"
#include "stage_runtime.h"

#include <hiredis/hiredis.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A prefixed key: in buf when it fits, else allocated (*heap, free it). NULL when out of
 * memory. */
static const char *prefixed(of_cache_pool *p, const char *key, char *buf, size_t size, char **heap,
                            size_t *len)
{
    const char *prefix = of_cache_pool_prefix(p);
    size_t pl = strlen(prefix), kl = strlen(key);
    *heap = NULL;
    *len = pl + kl;
    char *out = buf;
    if (pl + kl + 1 > size) {
        if (!(out = *heap = malloc(pl + kl + 1)))
            return NULL;
    }
    memcpy(out, prefix, pl);
    memcpy(out + pl, key, kl + 1);
    return out;
}

static void log_error_reply(const char *op, const redisReply *r)
{
    if (of_log_enabled(OF_LVL_DEBUG))
        of_log(OF_LVL_DEBUG, NULL, NULL, "redis %s: %.200s", op, r->str ? r->str : "error");
}

/* Runs `cmd` with the prefixed key as its second argument, then extra arguments. */
static redisReply *keyed(of_cache_pool *p, const char *cmd, const char *key, int nextra,
                         const char **extra, const size_t *extra_lens)
{
    char buf[256], *heap;
    size_t kl;
    const char *k = prefixed(p, key, buf, sizeof(buf), &heap, &kl);
    if (!k)
        return NULL;
    const char *argv[6];
    size_t lens[6];
    argv[0] = cmd;
    lens[0] = strlen(cmd);
    argv[1] = k;
    lens[1] = kl;
    for (int i = 0; i < nextra && i < 4; i++) {
        argv[2 + i] = extra[i];
        lens[2 + i] = extra_lens[i];
    }
    redisReply *r = of_cache_command(p, 2 + nextra, argv, lens);
    free(heap);
    if (r && r->type == REDIS_REPLY_ERROR)
        log_error_reply(cmd, r);
    return r;
}

int of_cache_get(of_cache_pool *p, const char *key, char **value, size_t *len)
{
    if (value)
        *value = NULL;
    if (len)
        *len = 0;
    if (!p || !key || !value)
        return -1;
    redisReply *r = keyed(p, "GET", key, 0, NULL, NULL);
    if (!r)
        return -1;
    int rc = -1;
    if (r->type == REDIS_REPLY_NIL) {
        rc = 0;
    } else if (r->type == REDIS_REPLY_STRING) {
        /* malloc: the host's api->alloc, so the plugin frees it with api->free */
        char *v = malloc(r->len + 1);
        if (v) {
            memcpy(v, r->str, r->len);
            v[r->len] = '\0';
            *value = v;
            if (len)
                *len = r->len;
            rc = 1;
        }
    }
    freeReplyObject(r);
    return rc;
}

int of_cache_set(of_cache_pool *p, const char *key, const void *value, size_t len, int64_t ttl_ms)
{
    if (!p || !key || (!value && len > 0) || ttl_ms < 0)
        return -1;
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_ms);
    const char *extra[] = {value ? (const char *)value : "", "PX", ttl};
    size_t lens[] = {len, 2, strlen(ttl)};
    redisReply *r = keyed(p, "SET", key, ttl_ms > 0 ? 3 : 1, extra, lens);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_STATUS ? 0 : -1;
    freeReplyObject(r);
    return rc;
}

int of_cache_del(of_cache_pool *p, const char *key)
{
    if (!p || !key)
        return -1;
    redisReply *r = keyed(p, "DEL", key, 0, NULL, NULL);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    freeReplyObject(r);
    return rc;
}

/* INCRBY, and the expiry only when the key has none (it was just created): one script, so no
 * other client sees the key without its expiry and a crash between the two cannot leave a
 * counter that never expires. */
static const char incr_lua[] = "local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
                               "local ttl = tonumber(ARGV[2])\n"
                               "if ttl > 0 and redis.call('PTTL', KEYS[1]) == -1 then\n"
                               "  redis.call('PEXPIRE', KEYS[1], ttl)\n"
                               "end\n"
                               "return v\n";
static of_cache_script incr_script;
static pthread_once_t incr_once = PTHREAD_ONCE_INIT;

static void incr_script_init(void)
{
    of_cache_script_init(&incr_script, incr_lua);
}

int of_cache_incr(of_cache_pool *p, const char *key, int64_t delta, int64_t ttl_ms, int64_t *result)
{
    if (!p || !key || ttl_ms < 0)
        return -1;
    pthread_once(&incr_once, incr_script_init);
    char buf[256], *heap;
    size_t kl;
    const char *k = prefixed(p, key, buf, sizeof(buf), &heap, &kl);
    if (!k)
        return -1;
    char d[24], t[24];
    snprintf(d, sizeof(d), "%" PRId64, delta);
    snprintf(t, sizeof(t), "%" PRId64, ttl_ms);
    const char *args[] = {k, d, t};
    size_t lens[] = {kl, strlen(d), strlen(t)};
    redisReply *r = of_cache_eval(p, &incr_script, 1, 3, args, lens);
    free(heap);
    if (!r)
        return -1;
    int rc = -1;
    if (r->type == REDIS_REPLY_INTEGER) {
        if (result)
            *result = (int64_t)r->integer;
        rc = 0;
    } else if (r->type == REDIS_REPLY_ERROR) {
        log_error_reply("INCRBY", r);
    }
    freeReplyObject(r);
    return rc;
}

int of_cache_publish(of_cache_pool *p, const char *channel, const void *msg, size_t len)
{
    if (!p || !channel || (!msg && len > 0))
        return -1;
    const char *extra[] = {msg ? (const char *)msg : ""};
    size_t lens[] = {len};
    redisReply *r = keyed(p, "PUBLISH", channel, 1, extra, lens);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    freeReplyObject(r);
    return rc;
}

/* ---- the host table's functions --------------------------------------------------------- */

static of_cache_pool *pool_of(const struct of_stage *stage)
{
    return stage ? stage->cache : NULL;
}

int of_api_cache_get(struct of_stage *stage, const char *key, char **value, size_t *len)
{
    of_cache_pool *p = pool_of(stage);
    if (!p) {
        if (value)
            *value = NULL;
        if (len)
            *len = 0;
        return -1;
    }
    return of_cache_get(p, key, value, len);
}

int of_api_cache_set(struct of_stage *stage, const char *key, const void *value, size_t len,
                     int64_t ttl_ms)
{
    of_cache_pool *p = pool_of(stage);
    return p ? of_cache_set(p, key, value, len, ttl_ms) : -1;
}

int of_api_cache_del(struct of_stage *stage, const char *key)
{
    of_cache_pool *p = pool_of(stage);
    return p ? of_cache_del(p, key) : -1;
}

int of_api_cache_incr(struct of_stage *stage, const char *key, int64_t delta, int64_t ttl_ms,
                      int64_t *result)
{
    of_cache_pool *p = pool_of(stage);
    return p ? of_cache_incr(p, key, delta, ttl_ms, result) : -1;
}

int of_api_cache_publish(struct of_stage *stage, const char *channel, const void *msg, size_t len)
{
    of_cache_pool *p = pool_of(stage);
    return p ? of_cache_publish(p, channel, msg, len) : -1;
}

/* ---- writes that follow the transaction (ABI 1.4) ---------------------------------------- */

/* One SET of of_cache_set_many: its argument vector and what it points into. */
typedef struct set_args {
    const char *argv[5]; /* SET, the prefixed key, the value, PX, the expiry */
    size_t lens[5];
    char ttl[24];
    char key[256]; /* the prefixed key when it fits, else heap */
    char *heap;
} set_args;

size_t of_cache_set_many(of_cache_pool *p, const of_cache_write *w, size_t n)
{
    if (n == 0)
        return 0;
    if (!p || !w)
        return n;
    set_args *args = calloc(n, sizeof(*args));
    of_cache_cmd *cmds = calloc(n, sizeof(*cmds));
    struct redisReply **replies = calloc(n, sizeof(*replies));
    size_t failed = n, ready = 0;
    if (!args || !cmds || !replies)
        goto out;
    for (; ready < n; ready++) {
        set_args *a = &args[ready];
        size_t kl;
        const char *k = prefixed(p, w[ready].key, a->key, sizeof(a->key), &a->heap, &kl);
        if (!k)
            goto out;
        a->argv[0] = "SET";
        a->lens[0] = 3;
        a->argv[1] = k;
        a->lens[1] = kl;
        a->argv[2] = w[ready].value ? w[ready].value : "";
        a->lens[2] = w[ready].len;
        int argc = 3;
        if (w[ready].ttl_ms > 0) {
            snprintf(a->ttl, sizeof(a->ttl), "%" PRId64, w[ready].ttl_ms);
            a->argv[3] = "PX";
            a->lens[3] = 2;
            a->argv[4] = a->ttl;
            a->lens[4] = strlen(a->ttl);
            argc = 5;
        }
        cmds[ready] = (of_cache_cmd){.argc = argc, .argv = a->argv, .lens = a->lens};
    }
    if (of_cache_pipeline(p, cmds, n, replies) != 0)
        goto out;
    failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (replies[i]->type != REDIS_REPLY_STATUS) {
            failed++;
            if (replies[i]->type == REDIS_REPLY_ERROR)
                log_error_reply("SET", replies[i]);
        }
        freeReplyObject(replies[i]);
    }
out:
    for (size_t i = 0; args && i < ready; i++)
        free(args[i].heap);
    free(args);
    free(cmds);
    free(replies);
    return failed;
}

int of_api_cache_set_after_commit(struct of_call *call, const char *key, const void *value,
                                  size_t len, int64_t ttl_ms)
{
    if (!call || !call->stage || !pool_of(call->stage) || !key || (!value && len > 0) || ttl_ms < 0)
        return -1;
    size_t kl = strlen(key);
    if (kl == 0 || kl > OF_CACHE_KEY_MAX || len > OF_CALL_CACHE_VALUE_MAX) {
        of_log(OF_LVL_WARN, call->stage->pipeline_name, call->stage->def->name,
               "cache_set_after_commit: %s",
               kl == 0 || kl > OF_CACHE_KEY_MAX ? "the key must have 1 to 512 bytes"
                                                : "the value is larger than 64 KiB");
        return -1;
    }
    if (call->n_cache_writes == OF_CALL_CACHE_WRITES_MAX) {
        of_log(OF_LVL_WARN, call->stage->pipeline_name, call->stage->def->name,
               "cache_set_after_commit: more than %d writes in one call", OF_CALL_CACHE_WRITES_MAX);
        return -1;
    }
    if (call->n_cache_writes == call->cap_cache_writes) {
        size_t cap = call->cap_cache_writes ? call->cap_cache_writes * 2 : 4;
        of_cache_write *w = realloc(call->cache_writes, cap * sizeof(*w));
        if (!w)
            return -1;
        call->cache_writes = w;
        call->cap_cache_writes = cap;
    }
    char *k = malloc(kl + 1), *v = malloc(len + 1);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    memcpy(k, key, kl + 1);
    if (len)
        memcpy(v, value, len);
    v[len] = '\0';
    call->cache_writes[call->n_cache_writes++] =
        (of_cache_write){.key = k, .value = v, .len = len, .ttl_ms = ttl_ms};
    return 0;
}

void of_call_cache_apply(struct of_call *calls, size_t n)
{
    size_t total = 0;
    for (size_t c = 0; c < n; c++)
        total += calls[c].n_cache_writes;
    if (total == 0)
        return;
    of_cache_pool *p = pool_of(calls[0].stage);
    of_cache_write one[8];
    of_cache_write *all = total <= 8 ? one : malloc(total * sizeof(*all));
    size_t failed = total;
    if (all) {
        size_t k = 0;
        for (size_t c = 0; c < n; c++)
            for (size_t i = 0; i < calls[c].n_cache_writes; i++)
                all[k++] = calls[c].cache_writes[i];
        failed = of_cache_set_many(p, all, total);
        if (all != one)
            free(all);
    }
    /* Best effort, as cache_set: readers fall back to the database, and the next write of the
     * key replaces what is there. */
    if (failed && of_log_enabled(OF_LVL_DEBUG))
        of_log(OF_LVL_DEBUG, calls[0].stage->pipeline_name, calls[0].stage->def->name,
               "%zu of %zu cache writes after the commit failed", failed, total);
}

void of_call_cache_drop(struct of_call *call)
{
    for (size_t i = 0; i < call->n_cache_writes; i++) {
        free(call->cache_writes[i].key);
        free(call->cache_writes[i].value);
    }
    free(call->cache_writes);
    call->cache_writes = NULL;
    call->n_cache_writes = call->cap_cache_writes = 0;
}
