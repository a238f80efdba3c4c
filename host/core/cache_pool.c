/* The host's pool of hiredis connections: lazy connects, per-command timeouts, and a circuit
 * that makes every call fail fast while Redis is unreachable (see cache.h). */
#include "cache.h"

#include "log.h"
#include "timeutil.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* A connection and the pool generation it was opened in: a connection opened before the pool
 * went down is never reused, and its failure says nothing about the pool now. */
typedef struct pconn {
    redisContext *ctx;
    uint64_t gen;
} pconn;

struct of_cache_pool {
    of_redis_config cfg; /* owned copies */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a connection was released, a connect ended, or the pool went down */
    pconn **idle;      /* pool_size slots */
    int n_idle;
    int n_open;       /* idle + in use + being connected */
    int connecting;   /* a connect is in progress (one at a time) */
    int down;         /* after a failure, until a connect succeeds */
    int64_t retry_at; /* monotonic ms: no connect before this while down */
    uint64_t gen;     /* bumped when the pool goes down */
    _Atomic uint64_t connect_attempts, connect_failures, unavailable, errors, round_trips;
    struct of_counter *m_connect_failures, *m_unavailable, *m_errors, *m_round_trips;
};

static void count(_Atomic uint64_t *n, struct of_counter *m)
{
    atomic_fetch_add(n, 1);
    if (m)
        of_counter_add_(m, 1);
}

static struct timeval tv_ms(int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* ---- pool lifecycle ---------------------------------------------------------------------- */

/* hiredis writes with write(2): a write to a connection Redis closed would raise SIGPIPE, whose
 * default action ends the process. A closed connection must be an error return instead. */
void of_redis_ignore_sigpipe(void)
{
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
        old.sa_handler == SIG_DFL) {
        struct sigaction ign;
        memset(&ign, 0, sizeof(ign));
        ign.sa_handler = SIG_IGN;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGPIPE, &ign, NULL);
    }
}

of_cache_pool *of_cache_pool_new(const of_redis_config *cfg, of_metrics *metrics)
{
    if (!cfg)
        return NULL;
    of_redis_ignore_sigpipe();
    of_cache_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    int failed = of_redis_config_copy(&p->cfg, cfg) != 0;
    p->idle = calloc((size_t)p->cfg.pool_size, sizeof(*p->idle));
    if (failed || !p->idle) {
        of_redis_config_free(&p->cfg);
        free(p->idle);
        free(p);
        return NULL;
    }
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        of_redis_config_free(&p->cfg);
        free(p->idle);
        free(p);
        return NULL;
    }
    if (of_cond_init_monotonic(&p->cv) != 0) {
        pthread_mutex_destroy(&p->mu);
        of_redis_config_free(&p->cfg);
        free(p->idle);
        free(p);
        return NULL;
    }
    if (metrics) {
        p->m_connect_failures = of_metrics_counter(metrics, "redis_connect_failures",
                                                   "Connections to Redis that failed", NULL, NULL);
        p->m_unavailable =
            of_metrics_counter(metrics, "redis_unavailable",
                               "Redis calls that failed because Redis was unreachable", NULL, NULL);
        p->m_errors = of_metrics_counter(metrics, "redis_errors",
                                         "Redis calls answered with an error reply", NULL, NULL);
        p->m_round_trips = of_metrics_counter(
            metrics, "redis_round_trips",
            "Requests sent to Redis and waited for (a pipeline of commands is one)", NULL, NULL);
    }
    return p;
}

static void close_conn(pconn *k)
{
    if (!k)
        return;
    if (k->ctx)
        redisFree(k->ctx);
    free(k);
}

void of_cache_pool_free(of_cache_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_idle; i++)
        close_conn(p->idle[i]);
    free(p->idle);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    of_redis_config_free(&p->cfg);
    free(p);
}

const char *of_cache_pool_prefix(const of_cache_pool *p)
{
    return p && p->cfg.key_prefix ? p->cfg.key_prefix : "";
}

int of_cache_pool_is_down(of_cache_pool *p)
{
    if (!p)
        return 1;
    pthread_mutex_lock(&p->mu);
    int d = p->down;
    pthread_mutex_unlock(&p->mu);
    return d;
}

void of_cache_pool_stats(of_cache_pool *p, of_cache_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!p)
        return;
    out->connect_attempts = atomic_load(&p->connect_attempts);
    out->connect_failures = atomic_load(&p->connect_failures);
    out->unavailable = atomic_load(&p->unavailable);
    out->errors = atomic_load(&p->errors);
    out->round_trips = atomic_load(&p->round_trips);
    pthread_mutex_lock(&p->mu);
    out->down = p->down;
    out->open = p->n_open;
    pthread_mutex_unlock(&p->mu);
}

/* ---- connecting ------------------------------------------------------------------------- */

/* A new connection with the command timeout set, authenticated and on the configured db; NULL
 * with the reason in why (never containing the password). Called without the lock. */
static redisContext *connect_redis(of_cache_pool *p, char *why, size_t why_size)
{
    atomic_fetch_add(&p->connect_attempts, 1);
    return of_redis_connect(&p->cfg, why, why_size);
}

redisContext *of_redis_connect(const of_redis_config *cfg, char *why, size_t why_size)
{
    redisContext *c = redisConnectWithTimeout(cfg->host, cfg->port, tv_ms(cfg->connect_timeout_ms));
    if (!c) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(why, why_size, "connect: %s", c->errstr);
        goto fail;
    }
    if (redisSetTimeout(c, tv_ms(cfg->command_timeout_ms)) != REDIS_OK) {
        snprintf(why, why_size, "cannot set the command timeout: %s", c->errstr);
        goto fail;
    }
    (void)redisEnableKeepAlive(c);
    if (cfg->password) {
        const char *argv[] = {"AUTH", cfg->password};
        size_t lens[] = {4, strlen(cfg->password)};
        redisReply *r = redisCommandArgv(c, 2, argv, lens);
        if (!r) {
            snprintf(why, why_size, "AUTH: %s", c->errstr);
            goto fail;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            /* Redis's message names no password ("WRONGPASS invalid username-password pair") */
            snprintf(why, why_size, "AUTH refused: %.200s", r->str ? r->str : "error");
            freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (cfg->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", cfg->db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        redisReply *r = redisCommandArgv(c, 2, argv, lens);
        if (!r) {
            snprintf(why, why_size, "SELECT %s: %s", db, c->errstr);
            goto fail;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(why, why_size, "SELECT %s refused: %.200s", db, r->str ? r->str : "error");
            freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

/* With the lock: the pool goes (or stays) down; logs the transition once. */
static void mark_down_locked(of_cache_pool *p, const char *why)
{
    p->retry_at = of_mono_ms() + OF_CACHE_RETRY_MS;
    if (!p->down) {
        p->down = 1;
        p->gen++;
        of_log(OF_LVL_WARN, NULL, NULL,
               "redis %s:%d unavailable (%s): cache calls fail at once; reconnecting at most once "
               "per %dms",
               p->cfg.host, p->cfg.port, why, OF_CACHE_RETRY_MS);
    }
    /* Idle connections were opened before the failure: probably dead as well. */
    for (int i = 0; i < p->n_idle; i++) {
        close_conn(p->idle[i]);
        p->n_open--;
    }
    p->n_idle = 0;
    pthread_cond_broadcast(&p->cv);
}

/* A connection to run one command on, or NULL (down, or no connection free within the command
 * timeout). */
static pconn *acquire(of_cache_pool *p)
{
    int64_t deadline = -1;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        int64_t now = of_mono_ms();
        if (p->down) {
            /* the circuit: one connect attempt per retry interval, nobody waits for it */
            if (p->connecting || now < p->retry_at) {
                pthread_mutex_unlock(&p->mu);
                return NULL;
            }
        } else if (p->n_idle > 0) {
            pconn *k = p->idle[--p->n_idle];
            pthread_mutex_unlock(&p->mu);
            return k;
        } else if (p->connecting || p->n_open >= p->cfg.pool_size) {
            if (deadline < 0)
                deadline = now + p->cfg.command_timeout_ms;
            if (now >= deadline) {
                pthread_mutex_unlock(&p->mu);
                return NULL;
            }
            struct timespec ts = of_mono_after_ms(deadline - now);
            int rc = pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            if (rc != 0 && rc != ETIMEDOUT) {
                pthread_mutex_unlock(&p->mu);
                return NULL;
            }
            continue;
        }
        /* connect, outside the lock; others wait for it (or fail at once while down) */
        p->connecting = 1;
        p->n_open++;
        if (p->down)
            p->retry_at = now + OF_CACHE_RETRY_MS;
        pthread_mutex_unlock(&p->mu);

        char why[300] = "";
        pconn *k = calloc(1, sizeof(*k));
        redisContext *c = k ? connect_redis(p, why, sizeof(why)) : NULL;
        if (!k)
            snprintf(why, sizeof(why), "out of memory");

        pthread_mutex_lock(&p->mu);
        p->connecting = 0;
        if (!c) {
            free(k);
            p->n_open--;
            count(&p->connect_failures, p->m_connect_failures);
            mark_down_locked(p, why);
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        if (p->down) {
            p->down = 0;
            of_log(OF_LVL_INFO, NULL, NULL, "redis %s:%d available again", p->cfg.host,
                   p->cfg.port);
        }
        k->ctx = c;
        k->gen = p->gen;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        return k;
    }
}

/* Gives a connection back; broken: it failed (I/O error or timeout), with why. */
static void release(of_cache_pool *p, pconn *k, int broken, const char *why)
{
    pthread_mutex_lock(&p->mu);
    int current = k->gen == p->gen;
    if (broken || p->down || !current || p->n_idle >= p->cfg.pool_size) {
        close_conn(k);
        p->n_open--;
        /* a connection of an earlier generation says nothing about Redis now */
        if (broken && current)
            mark_down_locked(p, why);
    } else {
        p->idle[p->n_idle++] = k;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ---- commands --------------------------------------------------------------------------- */

/* Runs a command on k; NULL when the connection failed (k is then released as broken). */
static redisReply *run_on(of_cache_pool *p, pconn *k, int argc, const char **argv,
                          const size_t *lens)
{
    count(&p->round_trips, p->m_round_trips);
    redisReply *r = redisCommandArgv(k->ctx, argc, argv, lens);
    if (!r) {
        char why[300];
        snprintf(why, sizeof(why), "%s", k->ctx->errstr[0] ? k->ctx->errstr : "I/O error");
        release(p, k, 1, why);
    }
    return r;
}

static void count_reply(of_cache_pool *p, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR)
        count(&p->errors, p->m_errors);
}

struct redisReply *of_cache_command(of_cache_pool *p, int argc, const char **argv,
                                    const size_t *argvlen)
{
    if (!p || argc < 1 || !argv || !argvlen)
        return NULL;
    pconn *k = acquire(p);
    if (!k) {
        count(&p->unavailable, p->m_unavailable);
        return NULL;
    }
    redisReply *r = run_on(p, k, argc, argv, argvlen);
    if (!r) {
        count(&p->unavailable, p->m_unavailable);
        return NULL;
    }
    release(p, k, 0, NULL);
    count_reply(p, r);
    return r;
}

int of_cache_pipeline(of_cache_pool *p, const of_cache_cmd *cmds, size_t n,
                      struct redisReply **replies)
{
    if (!p || (!cmds && n) || !replies)
        return -1;
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (n == 0)
        return 0;
    pconn *k = acquire(p);
    if (!k) {
        count(&p->unavailable, p->m_unavailable);
        return -1;
    }
    count(&p->round_trips, p->m_round_trips);
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = redisAppendCommandArgv(k->ctx, cmds[i].argc, cmds[i].argv, cmds[i].lens) == REDIS_OK;
    for (size_t i = 0; ok && i < n; i++) {
        void *r = NULL;
        ok = redisGetReply(k->ctx, &r) == REDIS_OK && r;
        replies[i] = r;
    }
    if (!ok) {
        for (size_t i = 0; i < n; i++) {
            if (replies[i])
                freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
        char why[300];
        snprintf(why, sizeof(why), "%s", k->ctx->errstr[0] ? k->ctx->errstr : "I/O error");
        release(p, k, 1, why);
        count(&p->unavailable, p->m_unavailable);
        return -1;
    }
    release(p, k, 0, NULL);
    for (size_t i = 0; i < n; i++)
        count_reply(p, replies[i]);
    return 0;
}

int of_cache_ping(of_cache_pool *p)
{
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    redisReply *r = of_cache_command(p, 1, argv, lens);
    int ok = r && r->type == REDIS_REPLY_STATUS && r->str && strcmp(r->str, "PONG") == 0;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

/* ---- scripts ---------------------------------------------------------------------------- */

/* SHA-1 (FIPS 180-4), for the script's EVALSHA digest. */
typedef struct sha1_ctx {
    uint32_t h[5];
    uint64_t bytes;
    unsigned char block[64];
    size_t used;
} sha1_ctx;

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(sha1_ctx *s, const unsigned char *b)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
               (uint32_t)b[4 * i + 2] << 8 | (uint32_t)b[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = s->h[0], bb = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (bb & c) | (~bb & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = bb ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (bb & c) | (bb & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = bb ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(bb, 30);
        bb = a;
        a = t;
    }
    s->h[0] += a;
    s->h[1] += bb;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
}

static void sha1_update(sha1_ctx *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    s->bytes += len;
    while (len > 0) {
        size_t n = 64 - s->used < len ? 64 - s->used : len;
        memcpy(s->block + s->used, p, n);
        s->used += n;
        p += n;
        len -= n;
        if (s->used == 64) {
            sha1_block(s, s->block);
            s->used = 0;
        }
    }
}

static void sha1_hex(const void *data, size_t len, char out[41])
{
    sha1_ctx s = {.h = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0}};
    sha1_update(&s, data, len);
    uint64_t bits = s.bytes * 8;
    unsigned char pad = 0x80, zero = 0;
    sha1_update(&s, &pad, 1);
    while (s.used != 56)
        sha1_update(&s, &zero, 1);
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_update(&s, lenb, 8);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 8; j++)
            out[i * 8 + j] = hex[(s.h[i] >> (28 - 4 * j)) & 0xf];
    out[40] = '\0';
}

void of_cache_script_init(of_cache_script *script, const char *source)
{
    script->source = source;
    sha1_hex(source, strlen(source), script->sha1);
}

struct redisReply *of_cache_eval(of_cache_pool *p, const of_cache_script *script, int nkeys,
                                 int nargs, const char **args, const size_t *lens)
{
    if (!p || !script || !script->source || nkeys < 0 || nargs < nkeys || (nargs && !args) ||
        (nargs && !lens))
        return NULL;
    size_t n = (size_t)nargs + 3;
    const char **argv = malloc(n * sizeof(*argv));
    size_t *argl = malloc(n * sizeof(*argl));
    if (!argv || !argl) {
        free(argv);
        free(argl);
        return NULL;
    }
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVALSHA";
    argl[0] = 7;
    argv[1] = script->sha1;
    argl[1] = 40;
    argv[2] = nk;
    argl[2] = strlen(nk);
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        argl[3 + i] = lens[i];
    }
    redisReply *r = NULL;
    pconn *k = acquire(p);
    if (!k)
        goto unavailable;
    r = run_on(p, k, (int)n, argv, argl);
    if (!r)
        goto unavailable;
    if (r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* not in the script cache (a restarted Redis, SCRIPT FLUSH): EVAL caches it again */
        freeReplyObject(r);
        argv[0] = "EVAL";
        argl[0] = 4;
        argv[1] = script->source;
        argl[1] = strlen(script->source);
        r = run_on(p, k, (int)n, argv, argl);
        if (!r)
            goto unavailable;
    }
    release(p, k, 0, NULL);
    count_reply(p, r);
    free(argv);
    free(argl);
    return r;
unavailable:
    count(&p->unavailable, p->m_unavailable);
    free(argv);
    free(argl);
    return NULL;
}
