/* Redis for the unit tests of the cache and the rate limiter.
 *
 * The shared Redis is the one of scripts/services.sh (OF_REDIS_HOST / OF_REDIS_PORT, default
 * 127.0.0.1:16379), started when it does not answer. Tests that stop and restart Redis use a
 * private redis-server of their own on a free port instead, so they never take the shared one
 * away from whoever else uses it; it dies with the test process. */
#ifndef OF_TEST_REDIS_FIXTURE_H
#define OF_TEST_REDIS_FIXTURE_H

#include "cache.h"

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline const char *rf_host(void)
{
    const char *h = getenv("OF_REDIS_HOST");
    return h && *h ? h : "127.0.0.1";
}

static inline int rf_port(void)
{
    const char *p = getenv("OF_REDIS_PORT");
    return p && *p ? atoi(p) : 16379;
}

static inline void rf_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A direct connection (not through the pool) for checking what the pool did; NULL when Redis
 * does not answer PING. */
static inline redisContext *rf_connect_to(const char *host, int port, const char *password)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r;
    if (password) {
        r = redisCommand(c, "AUTH %s", password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            if (r)
                freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r)
        freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static inline redisContext *rf_connect(void)
{
    return rf_connect_to(rf_host(), rf_port(), NULL);
}

/* 0 when the shared Redis answers (starting it with services.sh when it does not). */
static inline int rf_ensure_shared(void)
{
    redisContext *c = rf_connect();
    if (!c) {
        if (system("bash " OF_SOURCE_DIR "/scripts/services.sh start redis >&2") != 0)
            fprintf(stderr, "services.sh start redis failed\n");
        c = rf_connect();
    }
    if (!c) {
        fprintf(stderr, "redis does not answer on %s:%d\n", rf_host(), rf_port());
        return -1;
    }
    redisFree(c);
    return 0;
}

/* A key prefix no other run shares: "oftest:<pid>:<ns>:<what>:". */
static inline void rf_unique_prefix(char *buf, size_t size, const char *what)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, size, "oftest:%d:%lld%09ld:%s:", (int)getpid(), (long long)ts.tv_sec, ts.tv_nsec,
             what);
}

/* A configuration for host:port with short timeouts. */
static inline void rf_config(of_redis_config *c, const char *host, int port, const char *prefix)
{
    of_redis_config_default(c);
    c->enabled = 1;
    free(c->host);
    c->host = strdup(host);
    c->port = port;
    free(c->key_prefix);
    c->key_prefix = strdup(prefix);
}

/* A pool on the shared Redis (started when it does not answer) under a key prefix no other run
 * shares (rf_unique_prefix with what). cfg is filled in; free it with of_redis_config_free after
 * the pool. NULL when there is no Redis or no memory. */
static inline of_cache_pool *rf_shared_pool(of_redis_config *cfg, const char *what)
{
    if (rf_ensure_shared() != 0)
        return NULL;
    char prefix[128];
    rf_unique_prefix(prefix, sizeof(prefix), what);
    rf_config(cfg, rf_host(), rf_port(), prefix);
    return of_cache_pool_new(cfg, NULL);
}

/* A redis-server of the test's own. */
typedef struct rf_private {
    pid_t pid;
    int port;
    char password[64]; /* "" for none */
} rf_private;

static inline int rf_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (s >= 0)
        close(s);
    return port;
}

/* Starts (or starts again, on the same port) the private server; 0 when it answers. */
static inline int rf_private_start(rf_private *p)
{
    if (p->port <= 0 && (p->port = rf_free_port()) <= 0)
        return -1;
    char port[16];
    snprintf(port, sizeof(port), "%d", p->port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
        FILE *devnull = freopen("/dev/null", "w", stdout);
        (void)devnull;
        if (p->password[0])
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "no", "--dir", "/tmp", "--requirepass", p->password,
                   (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    for (int i = 0; i < 100; i++) {
        redisContext *c = rf_connect_to("127.0.0.1", p->port, p->password[0] ? p->password : NULL);
        if (c) {
            redisFree(c);
            return 0;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            p->pid = 0;
            fprintf(stderr, "redis-server on port %d exited at start\n", p->port);
            return -1;
        }
        rf_sleep_ms(50);
    }
    return -1;
}

static inline void rf_private_stop(rf_private *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGTERM);
    int status;
    waitpid(p->pid, &status, 0);
    p->pid = 0;
}

#endif
