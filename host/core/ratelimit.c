/* Token buckets for the HTTP gateway: local (a bounded hash table with LRU eviction) or shared
 * through Redis with an atomic Lua script, falling back to local while Redis fails. */
#include "ratelimit.h"

#include "log.h"

#include <hiredis/hiredis.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tolerance for float rounding: 0.9999999999 tokens is a token. */
#define EPS 1e-9

typedef struct bucket {
    struct bucket *hnext;         /* hash chain */
    struct bucket *newer, *older; /* LRU list: head is the most recently used */
    uint64_t hash;
    double tokens;
    int64_t last_ms;
    size_t key_len;
    char key[];
} bucket;

struct of_ratelimit {
    double rate_per_ms, burst;
    of_cache_pool *pool; /* borrowed; NULL: local only */
    char rate_arg[40], burst_arg[40], ttl_arg[24];
    of_cache_script script;

    pthread_mutex_t mu; /* the local table */
    bucket **table;
    size_t table_size; /* a power of two */
    size_t count, max_buckets;
    bucket *lru_head, *lru_tail;

    _Atomic int falling_back; /* the last shared attempt failed */
    _Atomic uint64_t n_allowed, n_limited, n_shared, n_local, n_fallbacks, n_evicted;
};

/* The shared bucket: tokens and the time they were counted, in Redis's clock. ARGV: tokens per
 * millisecond, burst, expiry in ms. Returns {allowed, retry_after_ms}. */
static const char bucket_lua[] =
    "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
    "local rate = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "local ttl = tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens = tonumber(b[1])\n"
    "local ts = tonumber(b[2])\n"
    "if tokens == nil or ts == nil then\n"
    "  tokens = burst\n"
    "  ts = now\n"
    "end\n"
    "if now > ts then\n"
    "  tokens = math.min(burst, tokens + (now - ts) * rate)\n"
    "  ts = now\n"
    "end\n"
    "local allowed = 0\n"
    "local retry = 0\n"
    "if tokens >= 1 - 1e-9 then\n"
    "  tokens = tokens - 1\n"
    "  allowed = 1\n"
    "else\n"
    "  retry = math.ceil((1 - tokens) / rate - 1e-9)\n"
    "  if retry < 1 then retry = 1 end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts',\n"
    "           string.format('%.17g', ts))\n"
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"
    "return {allowed, retry}\n";

/* ---- keys ------------------------------------------------------------------------------- */

static uint64_t fnv1a(const char *s, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* The key a bucket is stored under: the key itself, or "#" and a 128-bit digest of it when it
 * is longer than OF_RATELIMIT_KEY_MAX. out has OF_RATELIMIT_KEY_MAX + 1 bytes. */
static size_t bucket_key(const char *key, char *out)
{
    size_t n = strlen(key);
    if (n <= OF_RATELIMIT_KEY_MAX) {
        memcpy(out, key, n + 1);
        return n;
    }
    uint64_t a = mix64(fnv1a(key, n, 0xcbf29ce484222325ULL));
    uint64_t b = mix64(fnv1a(key, n, 0x84222325cbf29ce4ULL) ^ (uint64_t)n);
    return (size_t)snprintf(out, OF_RATELIMIT_KEY_MAX + 1, "#%016llx%016llx", (unsigned long long)a,
                            (unsigned long long)b);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static size_t pow2_at_least(size_t n)
{
    size_t s = 16;
    while (s < n && s < ((size_t)1 << 30))
        s <<= 1;
    return s;
}

of_ratelimit *of_ratelimit_new(double rate_per_s, double burst, of_cache_pool *pool)
{
    if (!isfinite(rate_per_s) || !isfinite(burst) || rate_per_s <= 0 || burst < 1)
        return NULL;
    of_ratelimit *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    rl->rate_per_ms = rate_per_s / 1000.0;
    rl->burst = burst;
    rl->pool = pool;
    rl->max_buckets = OF_RATELIMIT_DEFAULT_MAX_BUCKETS;
    rl->table_size = pow2_at_least(rl->max_buckets);
    rl->table = calloc(rl->table_size, sizeof(*rl->table));
    if (!rl->table || pthread_mutex_init(&rl->mu, NULL) != 0) {
        free(rl->table);
        free(rl);
        return NULL;
    }
    /* a shared bucket expires once it would be full again: then it is as good as absent */
    double refill_ms = ceil(burst / rl->rate_per_ms) + 1000.0;
    int64_t ttl =
        refill_ms > (double)OF_RATELIMIT_MAX_TTL_MS ? OF_RATELIMIT_MAX_TTL_MS : (int64_t)refill_ms;
    snprintf(rl->rate_arg, sizeof(rl->rate_arg), "%.17g", rl->rate_per_ms);
    snprintf(rl->burst_arg, sizeof(rl->burst_arg), "%.17g", burst);
    snprintf(rl->ttl_arg, sizeof(rl->ttl_arg), "%lld", (long long)ttl);
    of_cache_script_init(&rl->script, bucket_lua);
    return rl;
}

void of_ratelimit_free(of_ratelimit *rl)
{
    if (!rl)
        return;
    for (bucket *b = rl->lru_head, *next; b; b = next) {
        next = b->older;
        free(b);
    }
    free(rl->table);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

void of_ratelimit_set_max_buckets(of_ratelimit *rl, size_t max_buckets)
{
    if (!rl)
        return;
    if (max_buckets < 1)
        max_buckets = 1;
    pthread_mutex_lock(&rl->mu);
    size_t size = pow2_at_least(max_buckets);
    if (rl->count == 0 && size != rl->table_size) {
        bucket **t = calloc(size, sizeof(*t));
        if (t) {
            free(rl->table);
            rl->table = t;
            rl->table_size = size;
        }
    }
    rl->max_buckets = max_buckets;
    pthread_mutex_unlock(&rl->mu);
}

void of_ratelimit_get_stats(of_ratelimit *rl, of_ratelimit_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!rl)
        return;
    out->allowed = atomic_load(&rl->n_allowed);
    out->limited = atomic_load(&rl->n_limited);
    out->shared = atomic_load(&rl->n_shared);
    out->local = atomic_load(&rl->n_local);
    out->fallbacks = atomic_load(&rl->n_fallbacks);
    out->evicted = atomic_load(&rl->n_evicted);
    pthread_mutex_lock(&rl->mu);
    out->buckets = rl->count;
    pthread_mutex_unlock(&rl->mu);
}

/* ---- local buckets (with rl->mu) --------------------------------------------------------- */

static void lru_unlink(of_ratelimit *rl, bucket *b)
{
    if (b->newer)
        b->newer->older = b->older;
    else
        rl->lru_head = b->older;
    if (b->older)
        b->older->newer = b->newer;
    else
        rl->lru_tail = b->newer;
    b->newer = b->older = NULL;
}

static void lru_push_head(of_ratelimit *rl, bucket *b)
{
    b->newer = NULL;
    b->older = rl->lru_head;
    if (rl->lru_head)
        rl->lru_head->newer = b;
    rl->lru_head = b;
    if (!rl->lru_tail)
        rl->lru_tail = b;
}

static void remove_bucket(of_ratelimit *rl, bucket *b)
{
    bucket **pp = &rl->table[b->hash & (rl->table_size - 1)];
    while (*pp && *pp != b)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = b->hnext;
    lru_unlink(rl, b);
    rl->count--;
    free(b);
}

/* Tokens after refilling up to now (not stored). */
static double refilled(const of_ratelimit *rl, const bucket *b, int64_t now)
{
    if (now <= b->last_ms)
        return b->tokens;
    double t = b->tokens + (double)(now - b->last_ms) * rl->rate_per_ms;
    return t > rl->burst ? rl->burst : t;
}

static int take_local(of_ratelimit *rl, const char *key, size_t key_len, int64_t now,
                      int64_t *retry_after)
{
    pthread_mutex_lock(&rl->mu);
    /* Drop a few of the oldest buckets once they are full again (as good as absent): keeps the
     * table small without a sweep. */
    for (int i = 0; i < 2 && rl->lru_tail; i++) {
        bucket *old = rl->lru_tail;
        if (refilled(rl, old, now) < rl->burst - EPS)
            break;
        remove_bucket(rl, old);
    }
    uint64_t h = mix64(fnv1a(key, key_len, 0xcbf29ce484222325ULL));
    bucket *b = rl->table[h & (rl->table_size - 1)];
    while (b && !(b->hash == h && b->key_len == key_len && memcmp(b->key, key, key_len) == 0))
        b = b->hnext;
    if (b) {
        lru_unlink(rl, b);
    } else {
        while (rl->count >= rl->max_buckets && rl->lru_tail) {
            if (refilled(rl, rl->lru_tail, now) < rl->burst - EPS)
                atomic_fetch_add(&rl->n_evicted, 1);
            remove_bucket(rl, rl->lru_tail);
        }
        b = malloc(sizeof(*b) + key_len + 1);
        if (!b) {
            /* no memory for a bucket: let the request through rather than fail it */
            pthread_mutex_unlock(&rl->mu);
            *retry_after = 0;
            return 1;
        }
        memset(b, 0, sizeof(*b));
        b->hash = h;
        b->key_len = key_len;
        memcpy(b->key, key, key_len + 1);
        b->tokens = rl->burst;
        b->last_ms = now;
        size_t slot = h & (rl->table_size - 1);
        b->hnext = rl->table[slot];
        rl->table[slot] = b;
        rl->count++;
    }
    lru_push_head(rl, b);
    b->tokens = refilled(rl, b, now);
    if (now > b->last_ms)
        b->last_ms = now;
    int allowed;
    if (b->tokens >= 1 - EPS) {
        b->tokens -= 1;
        if (b->tokens < 0)
            b->tokens = 0;
        allowed = 1;
        *retry_after = 0;
    } else {
        allowed = 0;
        double wait = ceil((1 - b->tokens) / rl->rate_per_ms - EPS);
        *retry_after = wait < 1 ? 1 : wait > 9.0e15 ? (int64_t)9.0e15 : (int64_t)wait;
    }
    pthread_mutex_unlock(&rl->mu);
    return allowed;
}

/* ---- shared buckets --------------------------------------------------------------------- */

/* 1 or 0 decided in Redis, -1 when Redis failed. */
static int take_shared(of_ratelimit *rl, const char *key, size_t key_len, int64_t *retry_after)
{
    static const char ns[] = "ratelimit:";
    const char *prefix = of_cache_pool_prefix(rl->pool);
    size_t pl = strlen(prefix), nl = sizeof(ns) - 1;
    char rkey[OF_REDIS_MAX_KEY_PREFIX + sizeof(ns) + OF_RATELIMIT_KEY_MAX + 1];
    if (pl > OF_REDIS_MAX_KEY_PREFIX)
        return -1;
    memcpy(rkey, prefix, pl);
    memcpy(rkey + pl, ns, nl);
    memcpy(rkey + pl + nl, key, key_len);
    const char *args[] = {rkey, rl->rate_arg, rl->burst_arg, rl->ttl_arg};
    size_t lens[] = {pl + nl + key_len, strlen(rl->rate_arg), strlen(rl->burst_arg),
                     strlen(rl->ttl_arg)};
    redisReply *r = of_cache_eval(rl->pool, &rl->script, 1, 4, args, lens);
    if (!r)
        return -1;
    int rc = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER) {
        rc = r->element[0]->integer ? 1 : 0;
        *retry_after = rc ? 0 : (int64_t)r->element[1]->integer;
        if (!rc && *retry_after < 1)
            *retry_after = 1;
    } else if (of_log_enabled(OF_LVL_DEBUG)) {
        of_log(OF_LVL_DEBUG, NULL, NULL, "rate limit script: unexpected reply (%.200s)",
               r->type == REDIS_REPLY_ERROR && r->str ? r->str : "not {allowed, retry}");
    }
    freeReplyObject(r);
    return rc;
}

int of_ratelimit_take(of_ratelimit *rl, const char *bucket_key_in, int64_t now_ms,
                      int64_t *retry_after_ms)
{
    int64_t ignored;
    if (!retry_after_ms)
        retry_after_ms = &ignored;
    *retry_after_ms = 0;
    if (!rl)
        return 1;
    char key[OF_RATELIMIT_KEY_MAX + 1];
    size_t key_len = bucket_key(bucket_key_in ? bucket_key_in : "", key);
    int rc = -1;
    if (rl->pool) {
        rc = take_shared(rl, key, key_len, retry_after_ms);
        if (rc >= 0) {
            atomic_fetch_add(&rl->n_shared, 1);
            if (atomic_exchange(&rl->falling_back, 0))
                of_log(OF_LVL_INFO, NULL, NULL, "rate limits are shared through Redis again");
        } else {
            atomic_fetch_add(&rl->n_fallbacks, 1);
            if (!atomic_exchange(&rl->falling_back, 1))
                of_log(OF_LVL_WARN, NULL, NULL,
                       "rate limits fall back to this process's own buckets: Redis is "
                       "unavailable");
        }
    }
    if (rc < 0) {
        rc = take_local(rl, key, key_len, now_ms, retry_after_ms);
        atomic_fetch_add(&rl->n_local, 1);
    }
    atomic_fetch_add(rc ? &rl->n_allowed : &rl->n_limited, 1);
    return rc;
}
