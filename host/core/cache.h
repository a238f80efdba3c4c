/* The host's Redis: the `redis:` section of the host configuration, a thread-safe pool of
 * hiredis connections that fails fast while Redis is unreachable, and the cache operations
 * behind the SDK's cache_* host functions (ABI 1.1).
 *
 * Failing fast: the pool connects lazily (within connect_timeout, then AUTH and SELECT). When a
 * connect or a command fails on the connection (I/O error, timeout, refused), the pool is
 * "down": it drops its idle connections and every call returns -1 (NULL) at once, without
 * touching the network, until a retry time OF_CACHE_RETRY_MS later; then one caller tries to
 * connect (at most one connect attempt per OF_CACHE_RETRY_MS while down) and, when that works,
 * the pool is up again. Each transition is logged once (warn when it goes down, info when it
 * comes back), never per call. An error reply from Redis (WRONGTYPE, a value that is not an
 * integer, ...) fails that call only: the connection is fine. */
#ifndef OF_CACHE_H
#define OF_CACHE_H

#include "diag.h"
#include "metrics.h"
#include "yamltree.h"

#include <stddef.h>
#include <stdint.h>

struct of_stage;
struct redisReply;   /* hiredis */
struct redisContext; /* hiredis */

/* ---- configuration --------------------------------------------------------------------- */

#define OF_REDIS_DEFAULT_HOST       "127.0.0.1"
#define OF_REDIS_DEFAULT_PORT       6379
#define OF_REDIS_DEFAULT_POOL_SIZE  4
#define OF_REDIS_MAX_POOL_SIZE      128
#define OF_REDIS_MAX_DB             15
#define OF_REDIS_DEFAULT_TIMEOUT_MS 200
#define OF_REDIS_MAX_TIMEOUT_MS     60000
#define OF_REDIS_DEFAULT_KEY_PREFIX "orderflow:"
#define OF_REDIS_MAX_KEY_PREFIX     128

/* How long the pool stays down after a failure before it tries to connect again. */
#define OF_CACHE_RETRY_MS 1000

typedef struct of_redis_config {
    int enabled;    /* 1 when the host configuration has a `redis:` section */
    char *host;     /* default 127.0.0.1 */
    int port;       /* 1..65535, default 6379 */
    char *password; /* NULL: no AUTH. A secret: never logged nor printed in a diagnostic */
    int db;         /* 0..15, default 0 (SELECT when not 0) */
    int pool_size;  /* 1..128 connections at most, default 4 */
    int64_t connect_timeout_ms; /* default 200 */
    int64_t command_timeout_ms; /* default 200; also the longest wait for a free connection */
    char *key_prefix;           /* default "orderflow:"; may be "" */
} of_redis_config;

/* The defaults, enabled = 0. 0, or -1 when out of memory. */
int of_redis_config_default(of_redis_config *out);
/* Fills *out with the defaults, then with the `redis:` section `node` (the value of the key):
 * NULL means no section (enabled = 0); a null value (`redis:` alone) means Redis with every
 * default; otherwise it must be a mapping. Problems go to diag with line:column (unknown keys
 * with "did you mean"); a password is never shown. *out is usable (and must be freed) even
 * when diag got errors; the caller refuses the configuration then. */
void of_redis_config_parse(of_redis_config *out, const of_ynode *node, const char *file,
                           of_diag *diag);
void of_redis_config_free(of_redis_config *cfg);
/* A deep copy with the defaults filled in where src has none (host, key_prefix, sizes); 0, or -1
 * when out of memory (dst then needs no freeing). */
int of_redis_config_copy(of_redis_config *dst, const of_redis_config *src);

/* A new hiredis connection to cfg's server, authenticated and on its db, with the command
 * timeout set; NULL with the reason in why (never the password). For the few users that need a
 * connection of their own (the WebSocket fan-out's subscriber); free with redisFree. */
struct redisContext *of_redis_connect(const of_redis_config *cfg, char *why, size_t why_size);
/* Sets SIGPIPE to SIG_IGN when it has the default action (see of_cache_pool_new). */
void of_redis_ignore_sigpipe(void);

/* ---- the pool -------------------------------------------------------------------------- */

typedef struct of_cache_pool of_cache_pool;

typedef struct of_cache_stats {
    uint64_t connect_attempts; /* connections tried (the test hook for the retry pace) */
    uint64_t connect_failures; /* of those, failed (refused, timeout, AUTH or SELECT refused) */
    uint64_t unavailable;      /* calls that failed because Redis was unreachable or down */
    uint64_t errors;           /* calls Redis answered with an error reply */
    uint64_t round_trips;      /* requests sent and waited for; a pipeline of commands is one */
    int down;                  /* 1 while the pool is down */
    int open;                  /* connections open (idle and in use) */
} of_cache_stats;

/* A pool for cfg (copied). Does not connect yet. metrics may be NULL; with it the pool counts
 * redis_connect_failures, redis_unavailable, redis_errors and redis_round_trips. NULL when out
 * of memory. Sets SIGPIPE to SIG_IGN when it has the default action: a write to a connection
 * Redis closed must fail, not end the process. */
of_cache_pool *of_cache_pool_new(const of_redis_config *cfg, of_metrics *metrics);
/* Closes every connection. No call may be in progress. NULL is fine. */
void of_cache_pool_free(of_cache_pool *pool);
/* For /readyz: 0 when Redis answers PING, -1 otherwise (fast while the pool is down). */
int of_cache_ping(of_cache_pool *pool);
/* 1 while the pool is down (a failure less than a retry interval ago, not yet recovered). */
int of_cache_pool_is_down(of_cache_pool *pool);
void of_cache_pool_stats(of_cache_pool *pool, of_cache_stats *out);
/* The configured key prefix (never NULL). */
const char *of_cache_pool_prefix(const of_cache_pool *pool);

/* One command as an argument vector (binary-safe). The reply (free it with freeReplyObject) is
 * possibly an error reply (counted in `errors`); NULL when Redis is unavailable. */
struct redisReply *of_cache_command(of_cache_pool *pool, int argc, const char **argv,
                                    const size_t *argvlen);

/* Several commands on one connection in one round trip: all are written, then the replies read
 * in order. 0 with replies[i] for each command (free them with freeReplyObject; error replies
 * counted), or -1 when Redis is unavailable or the connection failed midway (no replies; the
 * commands may or may not have run). */
typedef struct of_cache_cmd {
    int argc;
    const char **argv;
    const size_t *lens;
} of_cache_cmd;
int of_cache_pipeline(of_cache_pool *pool, const of_cache_cmd *cmds, size_t n,
                      struct redisReply **replies);

/* A Lua script, run with EVALSHA and, when Redis does not know it (NOSCRIPT, after a restart or
 * SCRIPT FLUSH), with EVAL. */
typedef struct of_cache_script {
    const char *source; /* static storage */
    char sha1[41];      /* lowercase hex of the source's SHA-1 */
} of_cache_script;

void of_cache_script_init(of_cache_script *script, const char *source);
/* Runs the script with nkeys keys followed by the other arguments (args[0..nargs-1], keys
 * first, each binary-safe with its length). As of_cache_command. */
struct redisReply *of_cache_eval(of_cache_pool *pool, const of_cache_script *script, int nkeys,
                                 int nargs, const char **args, const size_t *lens);

/* ---- cache operations (keys and channels get the pool's key prefix) --------------------- */

/* 1 found (*value from malloc, NUL-terminated, *len bytes without the NUL; len may be NULL),
 * 0 not found, -1 unavailable or error. */
int of_cache_get(of_cache_pool *pool, const char *key, char **value, size_t *len);
/* ttl_ms 0: no expiry (> 0: PX). 0 or -1. */
int of_cache_set(of_cache_pool *pool, const char *key, const void *value, size_t len,
                 int64_t ttl_ms);
/* SET key value [PX ttl] for each write, in one round trip (of_cache_pipeline). The number of
 * writes that failed (0: all made), n when Redis is unavailable. */
typedef struct of_cache_write {
    char *key;   /* without the prefix */
    char *value; /* len bytes */
    size_t len;
    int64_t ttl_ms; /* 0: no expiry */
} of_cache_write;
size_t of_cache_set_many(of_cache_pool *pool, const of_cache_write *writes, size_t n);
/* 0 (also when the key did not exist) or -1. */
int of_cache_del(of_cache_pool *pool, const char *key);
/* INCRBY delta; when ttl_ms > 0 and the key has no expiry (it was just created) PEXPIRE ttl_ms,
 * atomically (one Lua script). 0 and *result, or -1 (also when the value is not an integer). */
int of_cache_incr(of_cache_pool *pool, const char *key, int64_t delta, int64_t ttl_ms,
                  int64_t *result);
/* PUBLISH on the prefixed channel. 0 or -1. */
int of_cache_publish(of_cache_pool *pool, const char *channel, const void *msg, size_t len);

/* The host table's cache_* functions (host_api.h): the above on stage->cache; -1 for a stage
 * without a pool (no `redis:` section) or a NULL stage. */
int of_api_cache_get(struct of_stage *stage, const char *key, char **value, size_t *len);
int of_api_cache_set(struct of_stage *stage, const char *key, const void *value, size_t len,
                     int64_t ttl_ms);
int of_api_cache_del(struct of_stage *stage, const char *key);
int of_api_cache_incr(struct of_stage *stage, const char *key, int64_t delta, int64_t ttl_ms,
                      int64_t *result);
int of_api_cache_publish(struct of_stage *stage, const char *channel, const void *msg, size_t len);
/* ABI 1.4: keeps the write with the call (of_call.cache_writes). */
#define OF_CALL_CACHE_WRITES_MAX 64
#define OF_CALL_CACHE_VALUE_MAX  (64 * 1024)
#define OF_CACHE_KEY_MAX         512
struct of_call;
int of_api_cache_set_after_commit(struct of_call *call, const char *key, const void *value,
                                  size_t len, int64_t ttl_ms);
/* Makes the kept writes of n committed calls of one stage, in one round trip; call it after the
 * commit, before publishing. The calls keep their writes (of_call_reset frees them). */
void of_call_cache_apply(struct of_call *calls, size_t n);
/* Frees a call's kept writes. */
void of_call_cache_drop(struct of_call *call);

#endif
