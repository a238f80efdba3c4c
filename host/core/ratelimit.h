/* Token-bucket rate limits for the HTTP gateway, one bucket per key (the gateway keys buckets
 * per principal, e.g. "principal:<subject>", and per client address, e.g. "addr:<ip>").
 *
 * A bucket holds at most `burst` tokens and gains `rate_per_s` tokens a second; a request takes
 * one token, or is limited and told how long until a token is there (retry_after).
 *
 * Local mode (no pool): buckets live in this process, in a hash table of at most max_buckets
 * buckets (OF_RATELIMIT_DEFAULT_MAX_BUCKETS). Buckets that have refilled completely are
 * equivalent to absent ones and are dropped as they are met (least recently used first); when
 * the table is full of buckets still refilling, the least recently used one is evicted (its key
 * starts again with a full bucket), so a flood of distinct keys cannot grow memory without
 * bound. Keys longer than OF_RATELIMIT_KEY_MAX bytes are replaced by a 128-bit digest, so a
 * bucket's size is bounded too. Time is the caller's now_ms (monotonic ms), so tests drive it.
 *
 * Shared mode (a pool): every instance using the same Redis and key prefix shares one bucket
 * per key: an atomic Lua script (EVALSHA, EVAL when Redis lost it) keeps the bucket in a hash
 * at "<key_prefix>ratelimit:<key>" that expires once it would have refilled completely; it
 * uses Redis's clock (TIME), not now_ms, so hosts with different clocks agree. When Redis
 * fails (unreachable, or the pool is down and fails fast), the decision falls back to the local
 * buckets with now_ms: limits are per process until Redis answers again. Both transitions are
 * logged once.
 *
 * All functions are thread-safe. */
#ifndef OF_RATELIMIT_H
#define OF_RATELIMIT_H

#include "cache.h"

#include <stddef.h>
#include <stdint.h>

#define OF_RATELIMIT_DEFAULT_MAX_BUCKETS 65536
#define OF_RATELIMIT_KEY_MAX             128
/* Shared buckets never live longer than this in Redis (an absurdly slow rate still expires). */
#define OF_RATELIMIT_MAX_TTL_MS (7LL * 24 * 3600 * 1000)

typedef struct of_ratelimit of_ratelimit;

typedef struct of_ratelimit_stats {
    uint64_t allowed, limited;
    uint64_t shared;    /* decisions made in Redis */
    uint64_t local;     /* decisions made with the local buckets */
    uint64_t fallbacks; /* of the local ones, made because Redis failed */
    uint64_t evicted;   /* local buckets evicted while still refilling (the table was full) */
    size_t buckets;     /* local buckets now */
} of_ratelimit_stats;

/* rate_per_s > 0 and burst >= 1, both finite; pool may be NULL (local mode) and must outlive
 * the limiter. NULL on bad arguments or no memory. */
of_ratelimit *of_ratelimit_new(double rate_per_s, double burst, of_cache_pool *pool);
void of_ratelimit_free(of_ratelimit *rl);
/* Bounds the local table (at least 1); for tests and tuning, before the limiter is used. */
void of_ratelimit_set_max_buckets(of_ratelimit *rl, size_t max_buckets);

/* Takes one token from the bucket of bucket_key (NULL counts as ""). 1: allowed
 * (*retry_after_ms 0); 0: limited, *retry_after_ms > 0 is the wait until a token is there.
 * retry_after_ms may be NULL. A NULL limiter allows everything. */
int of_ratelimit_take(of_ratelimit *rl, const char *bucket_key, int64_t now_ms,
                      int64_t *retry_after_ms);

void of_ratelimit_get_stats(of_ratelimit *rl, of_ratelimit_stats *out);

#endif
