/* The WebSocket hub (ws_hub.h): subscriptions, the publish queue and its writer thread, and the
 * Redis pub/sub fan-out between hosts. */
#include "ws_hub.h"

#include "log.h"
#include "thread_name.h"
#include "timeutil.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* How long the fan-out waits before it tries Redis again after losing it. */
#define FANOUT_RETRY_MS 1000
/* How often the subscriber thread looks at the stop flag while Redis is quiet. */
#define SUB_POLL_MS 200
/* The fan-out's publishing buffer is handed to hiredis whenever it holds this much, and not kept
 * between batches beyond it. */
#define PUB_CHUNK (1u << 20)

typedef struct ws_msg {
    struct ws_msg *next;
    char *pipeline, *channel, *data; /* point into the same allocation */
    size_t len;
    uint64_t hash;
    int remote; /* heard from another host: not published again */
} ws_msg;

typedef struct ws_buf {
    char *data;
    size_t len;
} ws_buf;

struct of_ws_client {
    of_ws_hub *hub;
    of_ws_client *prev, *next;
    char *pipeline;
    int any_pipeline; /* OF_WS_ANY_PIPELINE: the channel in every pipeline */
    char *channels[OF_WS_MAX_CHANNELS];
    uint64_t hashes[OF_WS_MAX_CHANNELS];
    size_t n_channels;
    int refs; /* writer deliveries in progress; under hub->mu */

    pthread_mutex_t mu; /* what follows */
    void *conn;         /* set by of_ws_client_open */
    int open, dead;
    ws_buf *first; /* the snapshot, written first */
    size_t n_first, first_bytes;
    ws_buf *backlog; /* published before the client was open */
    size_t n_backlog;
};

struct of_ws_hub {
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* the queue has messages, or stop */
    pthread_cond_t refs_cv; /* a delivery finished */
    pthread_cond_t stop_cv; /* the subscriber's naps end early on stop */
    pthread_cond_t sub_cv;  /* a client arrived, a subscription attempt ended, or stop */
    ws_msg *head, *tail;
    size_t n_queued;
    of_ws_client *clients;
    int n_clients, max_clients;
    int started, stopping;
    pthread_t writer, subscriber;
    int has_subscriber;

    of_ws_write_fn write_fn;
    of_ws_close_fn close_fn;
    of_ws_tap_fn tap;
    void *tap_opaque;

    int use_redis;
    of_redis_config redis;
    char *redis_channel; /* <key_prefix>ws */
    char origin[17];     /* this hub's random id, 16 hex digits */
    redisContext *pub;   /* the writer's connection */
    int64_t pub_retry_at;
    char *pub_buf; /* the writer's PUBLISH commands, formatted */
    size_t pub_len, pub_cap;
    _Atomic int fanout_up; /* written under mu */
    uint64_t sub_attempts; /* under mu: subscription attempts ended, either way */
    int sub_down;          /* under mu: the last attempt failed */
    int64_t linger_ms;     /* under mu */
    int pub_down_logged;

    _Atomic uint64_t published, remote, sent, dropped, redis_down;
    int64_t last_drop_log;
    struct of_counter *m_published, *m_sent, *m_dropped, *m_remote;
};

/* FNV-1a over pipeline, a separator and channel: a cheap first test before the strcmp. */
static uint64_t chan_hash(const char *pipeline, const char *channel)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = pipeline; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0x1f) * 1099511628211ULL;
    for (const char *p = channel; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

int of_ws_channel_valid(const char *channel)
{
    if (!channel)
        return 0;
    size_t n = strlen(channel);
    if (n == 0 || n > OF_WS_CHANNEL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = channel[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr(":._@-", ch)))
            return 0;
    }
    return 1;
}

static void count(_Atomic uint64_t *stat, struct of_counter *m, uint64_t n)
{
    atomic_fetch_add(stat, n);
    if (m)
        of_counter_add_(m, (double)n);
}

static void note_drop(of_ws_hub *hub, const char *why)
{
    count(&hub->dropped, hub->m_dropped, 1);
    /* Once a second at most: a stuck client must not flood the log. */
    int64_t now = of_mono_ms();
    if (now - hub->last_drop_log >= 1000) {
        hub->last_drop_log = now;
        of_log(OF_LVL_WARN, NULL, NULL, "websocket: message dropped: %s (%llu dropped so far)", why,
               (unsigned long long)atomic_load(&hub->dropped));
    }
}

/* ---------------------------------------------------------------------------------------------
 * The hub
 * ------------------------------------------------------------------------------------------- */

of_ws_hub *of_ws_hub_new(const of_redis_config *redis, of_metrics *metrics, int max_clients,
                         of_ws_write_fn write_fn, of_ws_close_fn close_fn)
{
    if (!write_fn || !close_fn)
        return NULL;
    of_ws_hub *hub = calloc(1, sizeof(*hub));
    if (!hub)
        return NULL;
    hub->max_clients = max_clients > 0 ? max_clients : OF_WS_DEFAULT_MAX_CLIENTS;
    hub->linger_ms = OF_WS_FANOUT_LINGER_MS;
    hub->write_fn = write_fn;
    hub->close_fn = close_fn;
    unsigned char rnd[8];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        uint64_t t = (uint64_t)of_now_ms() ^ (uint64_t)(uintptr_t)hub;
        memcpy(rnd, &t, sizeof(rnd));
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(hub->origin + 2 * i, 3, "%02x", rnd[i]);
    if (redis && redis->enabled) {
        if (of_redis_config_copy(&hub->redis, redis) != 0) {
            free(hub);
            return NULL;
        }
        hub->use_redis = 1;
        size_t n = strlen(hub->redis.key_prefix) + 3;
        if (!(hub->redis_channel = malloc(n))) {
            of_redis_config_free(&hub->redis);
            free(hub);
            return NULL;
        }
        snprintf(hub->redis_channel, n, "%sws", hub->redis.key_prefix);
        of_redis_ignore_sigpipe();
    }
    if (pthread_mutex_init(&hub->mu, NULL) != 0 || of_cond_init_monotonic(&hub->cv) != 0 ||
        pthread_cond_init(&hub->refs_cv, NULL) != 0 || of_cond_init_monotonic(&hub->stop_cv) != 0 ||
        of_cond_init_monotonic(&hub->sub_cv) != 0) {
        /* Failing here means the system is out of resources; the pieces are not reused. */
        if (hub->use_redis) {
            of_redis_config_free(&hub->redis);
            free(hub->redis_channel);
        }
        free(hub);
        return NULL;
    }
    if (metrics) {
        hub->m_published =
            of_metrics_counter(metrics, "ws_messages_published",
                               "Messages stages published to WebSocket channels", NULL, NULL);
        hub->m_sent = of_metrics_counter(metrics, "ws_frames_sent",
                                         "Messages written to WebSocket connections", NULL, NULL);
        hub->m_dropped = of_metrics_counter(
            metrics, "ws_messages_dropped",
            "WebSocket messages lost: queue or backlog full, or a client too slow", NULL, NULL);
        hub->m_remote = of_metrics_counter(metrics, "ws_messages_remote",
                                           "WebSocket messages heard from other hosts", NULL, NULL);
    }
    return hub;
}

/* Appends a message to the queue; with the lock held. */
static int enqueue_locked(of_ws_hub *hub, ws_msg *m)
{
    if (hub->n_queued >= OF_WS_QUEUE_MAX) {
        free(m);
        return -1;
    }
    if (hub->tail)
        hub->tail->next = m;
    else
        hub->head = m;
    hub->tail = m;
    hub->n_queued++;
    pthread_cond_signal(&hub->cv);
    return 0;
}

static ws_msg *msg_new(const char *pipeline, size_t pl, const char *channel, size_t cl,
                       const void *data, size_t len)
{
    ws_msg *m = malloc(sizeof(*m) + pl + 1 + cl + 1 + len + 1);
    if (!m)
        return NULL;
    memset(m, 0, sizeof(*m));
    m->pipeline = (char *)(m + 1);
    memcpy(m->pipeline, pipeline, pl);
    m->pipeline[pl] = '\0';
    m->channel = m->pipeline + pl + 1;
    memcpy(m->channel, channel, cl);
    m->channel[cl] = '\0';
    m->data = m->channel + cl + 1;
    memcpy(m->data, data, len);
    m->data[len] = '\0';
    m->len = len;
    m->hash = chan_hash(m->pipeline, m->channel);
    return m;
}

int of_ws_hub_publish(of_ws_hub *hub, const char *pipeline, const char *channel, const void *msg,
                      size_t len)
{
    if (!hub || !pipeline || !of_ws_channel_valid(channel) || (!msg && len) ||
        len > OF_WS_MAX_MESSAGE)
        return -1;
    ws_msg *m = msg_new(pipeline, strlen(pipeline), channel, strlen(channel), msg ? msg : "", len);
    if (!m)
        return -1;
    pthread_mutex_lock(&hub->mu);
    int rc = hub->started && !hub->stopping ? enqueue_locked(hub, m) : (free(m), -1);
    int full = rc != 0 && hub->started && !hub->stopping;
    pthread_mutex_unlock(&hub->mu);
    if (rc == 0) {
        count(&hub->published, hub->m_published, 1);
        if (hub->tap)
            hub->tap(hub->tap_opaque, pipeline, channel, msg ? msg : "", len);
    } else if (full)
        note_drop(hub, "the publish queue is full");
    return rc;
}

void of_ws_hub_set_tap(of_ws_hub *hub, of_ws_tap_fn fn, void *opaque)
{
    if (!hub)
        return;
    hub->tap = fn;
    hub->tap_opaque = opaque;
}

/* ---- delivering -------------------------------------------------------------------------- */

static int buf_push(ws_buf **arr, size_t *n, const char *data, size_t len)
{
    ws_buf *a = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (!a)
        return -1;
    *arr = a;
    if (!(a[*n].data = malloc(len + 1)))
        return -1;
    memcpy(a[*n].data, data, len);
    a[*n].data[len] = '\0';
    a[*n].len = len;
    (*n)++;
    return 0;
}

static void bufs_free(ws_buf *arr, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(arr[i].data);
    free(arr);
}

static int client_wants(const of_ws_client *c, const ws_msg *m)
{
    if (c->any_pipeline) {
        for (size_t i = 0; i < c->n_channels; i++)
            if (strcmp(c->channels[i], m->channel) == 0)
                return 1;
        return 0;
    }
    for (size_t i = 0; i < c->n_channels; i++)
        if (c->hashes[i] == m->hash && strcmp(c->channels[i], m->channel) == 0)
            return strcmp(c->pipeline, m->pipeline) == 0;
    return 0;
}

/* With c->mu held: the client is beyond help; it is told to go (when open) and skipped. */
static void client_kill_locked(of_ws_client *c, int code, const char *why)
{
    if (c->dead)
        return;
    c->dead = 1;
    if (c->open && c->conn)
        c->hub->close_fn(c->conn, code, why);
}

static void deliver_to(of_ws_hub *hub, of_ws_client *c, const ws_msg *m)
{
    pthread_mutex_lock(&c->mu);
    if (c->dead) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (!c->open) {
        if (c->n_backlog >= OF_WS_BACKLOG_MAX ||
            buf_push(&c->backlog, &c->n_backlog, m->data, m->len) != 0) {
            note_drop(hub, "a connection being opened has too much waiting");
            client_kill_locked(c, 1008, "too many messages before the connection opened");
        }
    } else if (hub->write_fn(c->conn, m->data, m->len) == 0) {
        count(&hub->sent, hub->m_sent, 1);
    } else {
        note_drop(hub, "a connection could not take it (gone or too slow)");
        client_kill_locked(c, 1008, "too slow");
    }
    pthread_mutex_unlock(&c->mu);
}

static void deliver(of_ws_hub *hub, const ws_msg *m)
{
    of_ws_client *targets[256];
    size_t n = 0;
    of_ws_client *from = NULL;
    /* In rounds of 256 so a large fleet of clients needs no allocation. */
    do {
        n = 0;
        pthread_mutex_lock(&hub->mu);
        of_ws_client *c = from ? from : hub->clients;
        for (; c && n < sizeof(targets) / sizeof(targets[0]); c = c->next) {
            if (client_wants(c, m)) {
                c->refs++;
                targets[n++] = c;
            }
        }
        from = c;
        if (from)
            from->refs++; /* holds the place for the next round */
        pthread_mutex_unlock(&hub->mu);
        for (size_t i = 0; i < n; i++)
            deliver_to(hub, targets[i], m);
        pthread_mutex_lock(&hub->mu);
        for (size_t i = 0; i < n; i++)
            targets[i]->refs--;
        if (from)
            from->refs--;
        pthread_cond_broadcast(&hub->refs_cv);
        pthread_mutex_unlock(&hub->mu);
    } while (from);
}

/* ---- the fan-out: publishing ------------------------------------------------------------ */

/* Room for n more bytes in the publishing buffer; 0 or -1. */
static int pub_reserve(of_ws_hub *hub, size_t n)
{
    if (hub->pub_cap - hub->pub_len >= n)
        return 0;
    size_t cap = hub->pub_cap ? hub->pub_cap : 4096;
    while (cap - hub->pub_len < n)
        cap *= 2;
    char *p = realloc(hub->pub_buf, cap);
    if (!p)
        return -1;
    hub->pub_buf = p;
    hub->pub_cap = cap;
    return 0;
}

static char *put(char *p, const void *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}

/* Appends "PUBLISH <channel> <envelope>" in Redis's protocol, the envelope being
 * "<origin>\n<pipeline>\n<channel>\n<message>". Written here rather than by hiredis's printf-like
 * formatting, which costs several allocations a message (a tenth of the daemon's, step 41 of
 * bench/RESULTS.md). 0 or -1 (out of memory). */
static int pub_format(of_ws_hub *hub, const ws_msg *m)
{
    size_t rl = strlen(hub->redis_channel), pl = strlen(m->pipeline), cl = strlen(m->channel);
    size_t el = 16 + 1 + pl + 1 + cl + 1 + m->len;
    char head[96];
    int hn = snprintf(head, sizeof(head), "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n", rl);
    char mid[32];
    int mn = snprintf(mid, sizeof(mid), "\r\n$%zu\r\n", el);
    if (pub_reserve(hub, (size_t)hn + rl + (size_t)mn + el + 2) != 0)
        return -1;
    char *p = hub->pub_buf + hub->pub_len;
    p = put(p, head, (size_t)hn);
    p = put(p, hub->redis_channel, rl);
    p = put(p, mid, (size_t)mn);
    p = put(p, hub->origin, 16);
    *p++ = '\n';
    p = put(p, m->pipeline, pl);
    *p++ = '\n';
    p = put(p, m->channel, cl);
    *p++ = '\n';
    p = put(p, m->data, m->len);
    *p++ = '\r';
    *p++ = '\n';
    hub->pub_len = (size_t)(p - hub->pub_buf);
    return 0;
}

static void pub_lost(of_ws_hub *hub, const char *reason)
{
    char why[256]; /* reason may be the context's own errstr, freed below */
    snprintf(why, sizeof(why), "%s", reason);
    if (hub->pub) {
        redisFree(hub->pub);
        hub->pub = NULL;
    }
    hub->pub_retry_at = of_mono_ms() + FANOUT_RETRY_MS;
    if (!hub->pub_down_logged) {
        hub->pub_down_logged = 1;
        count(&hub->redis_down, NULL, 1);
        of_log(OF_LVL_WARN, NULL, NULL,
               "websocket fan-out: cannot publish to redis %s:%d (%s): messages reach this "
               "host's connections only until it is back",
               hub->redis.host, hub->redis.port, why);
    }
}

static const char *ctx_err(const redisContext *c, const char *otherwise)
{
    return c && c->errstr[0] ? c->errstr : otherwise;
}

/* Hands what is formatted to hiredis's output buffer; 0, or -1 when the connection failed (and
 * was dropped). */
static int pub_flush(of_ws_hub *hub)
{
    if (hub->pub_len == 0)
        return 0;
    int rc = redisAppendFormattedCommand(hub->pub, hub->pub_buf, hub->pub_len);
    hub->pub_len = 0;
    if (rc != REDIS_OK) {
        pub_lost(hub, ctx_err(hub->pub, "out of memory"));
        return -1;
    }
    return 0;
}

/* Publishes this host's messages of a batch in one pipelined round trip; 0, or -1 when the
 * connection failed (and was dropped). */
static int fan_out_once(of_ws_hub *hub, ws_msg *batch, int force)
{
    if (!hub->pub) {
        if (!force && of_mono_ms() < hub->pub_retry_at)
            return 0;
        char why[256] = "";
        if (!(hub->pub = of_redis_connect(&hub->redis, why, sizeof(why)))) {
            pub_lost(hub, why);
            return 0;
        }
        if (hub->pub_down_logged) {
            hub->pub_down_logged = 0;
            of_log(OF_LVL_INFO, NULL, NULL, "websocket fan-out: publishing to redis again");
        }
    }
    size_t appended = 0;
    hub->pub_len = 0;
    for (ws_msg *m = batch; m; m = m->next) {
        if (m->remote || pub_format(hub, m) != 0)
            continue;
        appended++;
        if (hub->pub_len >= PUB_CHUNK && pub_flush(hub) != 0)
            return -1;
    }
    if (pub_flush(hub) != 0)
        return -1;
    if (hub->pub_cap > PUB_CHUNK) { /* a burst's buffer is not kept */
        free(hub->pub_buf);
        hub->pub_buf = NULL;
        hub->pub_cap = 0;
    }
    for (size_t i = 0; i < appended; i++) {
        void *reply = NULL;
        if (redisGetReply(hub->pub, &reply) != REDIS_OK) {
            pub_lost(hub, ctx_err(hub->pub, "no answer"));
            return -1;
        }
        freeReplyObject(reply);
    }
    return 0;
}

static void fan_out(of_ws_hub *hub, ws_msg *batch)
{
    if (!hub->use_redis)
        return;
    /* A connection that went stale while Redis restarted fails on first use: one fresh try
     * then, so the first messages after a restart are not lost. PUBLISH has no effect besides
     * the delivery, and a message half-published before the failure reaches a host at most
     * twice. */
    if (fan_out_once(hub, batch, 0) != 0)
        (void)fan_out_once(hub, batch, 1);
}

static void *writer_main(void *arg)
{
    of_ws_hub *hub = arg;
    pthread_mutex_lock(&hub->mu);
    for (;;) {
        while (!hub->head && !hub->stopping)
            pthread_cond_wait(&hub->cv, &hub->mu);
        if (!hub->head && hub->stopping)
            break;
        ws_msg *batch = hub->head;
        hub->head = hub->tail = NULL;
        hub->n_queued = 0;
        pthread_mutex_unlock(&hub->mu);
        fan_out(hub, batch);
        while (batch) {
            ws_msg *next = batch->next;
            deliver(hub, batch);
            free(batch);
            batch = next;
        }
        pthread_mutex_lock(&hub->mu);
    }
    pthread_mutex_unlock(&hub->mu);
    if (hub->pub) {
        redisFree(hub->pub);
        hub->pub = NULL;
    }
    return NULL;
}

/* ---- the fan-out: subscribing ----------------------------------------------------------- */

static int stopping(of_ws_hub *hub)
{
    pthread_mutex_lock(&hub->mu);
    int s = hub->stopping;
    pthread_mutex_unlock(&hub->mu);
    return s;
}

/* A message from the Redis channel: another host's, for this host's clients. */
static void heard(of_ws_hub *hub, const char *e, size_t len)
{
    const char *end = e + len;
    if (len < 17 || e[16] != '\n' || memcmp(e, hub->origin, 16) == 0)
        return; /* not an envelope, or this host's own */
    const char *pl = e + 17;
    const char *nl1 = memchr(pl, '\n', (size_t)(end - pl));
    if (!nl1)
        return;
    const char *ch = nl1 + 1;
    const char *nl2 = memchr(ch, '\n', (size_t)(end - ch));
    if (!nl2)
        return;
    const char *data = nl2 + 1;
    char channel[OF_WS_CHANNEL_MAX + 1];
    size_t cl = (size_t)(nl2 - ch);
    if (cl > OF_WS_CHANNEL_MAX || (size_t)(end - data) > OF_WS_MAX_MESSAGE)
        return;
    memcpy(channel, ch, cl);
    channel[cl] = '\0';
    if (!of_ws_channel_valid(channel))
        return;
    ws_msg *m = msg_new(pl, (size_t)(nl1 - pl), ch, cl, data, (size_t)(end - data));
    if (!m)
        return;
    m->remote = 1;
    pthread_mutex_lock(&hub->mu);
    int rc = hub->stopping ? (free(m), 0) : enqueue_locked(hub, m);
    pthread_mutex_unlock(&hub->mu);
    if (rc != 0)
        note_drop(hub, "the publish queue is full");
    else
        count(&hub->remote, hub->m_remote, 1);
}

/* Sleeps ms unless the hub stops first. */
static void nap(of_ws_hub *hub, int64_t ms)
{
    struct timespec until = of_mono_after_ms(ms);
    pthread_mutex_lock(&hub->mu);
    while (!hub->stopping && pthread_cond_timedwait(&hub->stop_cv, &hub->mu, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&hub->mu);
}

/* Whether the subscription is to end: the hub stops, or no connection of this host has
 * listened for linger_ms (*idle_since: when the last one left, 0 while some listen). Marks the
 * fan-out down in the same hold of the lock, so a client arriving after the decision waits for
 * the next subscription rather than trusting this one. */
static int sub_should_end(of_ws_hub *hub, int64_t *idle_since, int *idle)
{
    pthread_mutex_lock(&hub->mu);
    int end = hub->stopping;
    if (!end && hub->n_clients > 0) {
        *idle_since = 0;
    } else if (!end) {
        int64_t now = of_mono_ms();
        if (!*idle_since)
            *idle_since = now;
        else if (now - *idle_since >= hub->linger_ms)
            end = *idle = 1;
    }
    if (end)
        atomic_store(&hub->fanout_up, 0);
    pthread_mutex_unlock(&hub->mu);
    return end;
}

/* An attempt to subscribe ended; wakes the clients waiting for it. */
static void sub_attempt_ended(of_ws_hub *hub, int up)
{
    pthread_mutex_lock(&hub->mu);
    atomic_store(&hub->fanout_up, up);
    hub->sub_down = !up;
    hub->sub_attempts++;
    pthread_cond_broadcast(&hub->sub_cv);
    pthread_mutex_unlock(&hub->mu);
}

/* Subscribed only while a connection of this host listens: otherwise the host would hear every
 * message of every host, its own included, for nobody (a few percent of the daemon's CPU under
 * load). A client's arrival wakes it (of_ws_client_new waits for the subscription). */
static void *subscriber_main(void *arg)
{
    of_ws_hub *hub = arg;
    int down_logged = 0, was_up = 0;
    for (;;) {
        pthread_mutex_lock(&hub->mu);
        while (!hub->stopping && hub->n_clients == 0)
            pthread_cond_wait(&hub->sub_cv, &hub->mu);
        int stop = hub->stopping;
        pthread_mutex_unlock(&hub->mu);
        if (stop)
            break;
        char why[256] = "";
        redisContext *c = of_redis_connect(&hub->redis, why, sizeof(why));
        redisReply *r = NULL;
        if (c) {
            r = redisCommand(c, "SUBSCRIBE %s", hub->redis_channel);
            if (!r || r->type == REDIS_REPLY_ERROR)
                snprintf(why, sizeof(why), "SUBSCRIBE: %s",
                         r && r->str ? r->str : (c->errstr[0] ? c->errstr : "no answer"));
        }
        if (!c || !r || r->type == REDIS_REPLY_ERROR) {
            if (r)
                freeReplyObject(r);
            if (c)
                redisFree(c);
            sub_attempt_ended(hub, 0);
            if (!down_logged) {
                down_logged = 1;
                if (was_up)
                    count(&hub->redis_down, NULL, 1);
                of_log(OF_LVL_WARN, NULL, NULL,
                       "websocket fan-out: cannot subscribe on redis %s:%d (%s): other hosts' "
                       "messages do not reach this host's connections until it is back",
                       hub->redis.host, hub->redis.port, why);
            }
            nap(hub, FANOUT_RETRY_MS);
            continue;
        }
        freeReplyObject(r);
        sub_attempt_ended(hub, 1);
        if (down_logged)
            of_log(OF_LVL_INFO, NULL, NULL, "websocket fan-out: subscribed on redis again");
        down_logged = 0;
        was_up = 1;
        /* Reads with poll() so the thread notices a stop: a hiredis read timeout would leave the
         * context unusable. */
        int64_t idle_since = 0;
        int idle = 0;
        while (!sub_should_end(hub, &idle_since, &idle)) {
            void *reply = NULL;
            if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
                break;
            if (reply) {
                redisReply *rr = reply;
                if (rr->type == REDIS_REPLY_ARRAY && rr->elements == 3 &&
                    rr->element[0]->type == REDIS_REPLY_STRING &&
                    strcmp(rr->element[0]->str, "message") == 0 &&
                    rr->element[2]->type == REDIS_REPLY_STRING)
                    heard(hub, rr->element[2]->str, rr->element[2]->len);
                freeReplyObject(reply);
                continue;
            }
            struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
            int pr = poll(&pfd, 1, SUB_POLL_MS);
            if (pr < 0 && errno != EINTR)
                break;
            if (pr > 0 && redisBufferRead(c) != REDIS_OK)
                break;
        }
        pthread_mutex_lock(&hub->mu);
        atomic_store(&hub->fanout_up, 0);
        pthread_mutex_unlock(&hub->mu);
        int lost = !idle && !stopping(hub);
        snprintf(why, sizeof(why), "%s", c->errstr[0] ? c->errstr : "connection closed");
        redisFree(c);
        if (lost) {
            down_logged = 1;
            count(&hub->redis_down, NULL, 1);
            of_log(OF_LVL_WARN, NULL, NULL,
                   "websocket fan-out: lost the redis subscription (%s); resubscribing", why);
            nap(hub, FANOUT_RETRY_MS);
        }
    }
    return NULL;
}

int of_ws_hub_start(of_ws_hub *hub, char *errstr, size_t errstr_size)
{
    if (!hub || hub->started) {
        of_seterr(errstr, errstr_size, "websocket hub: %s", hub ? "already started" : "no hub");
        return -1;
    }
    if (pthread_create(&hub->writer, NULL, writer_main, hub) != 0) {
        of_seterr(errstr, errstr_size, "websocket hub: cannot start its thread");
        return -1;
    }
    of_thread_name(hub->writer, "of-ws-writer", NULL);
    if (hub->use_redis) {
        if (pthread_create(&hub->subscriber, NULL, subscriber_main, hub) != 0) {
            pthread_mutex_lock(&hub->mu);
            hub->stopping = 1;
            pthread_cond_broadcast(&hub->cv);
            pthread_mutex_unlock(&hub->mu);
            pthread_join(hub->writer, NULL);
            of_seterr(errstr, errstr_size, "websocket hub: cannot start the fan-out thread");
            return -1;
        }
        hub->has_subscriber = 1;
        of_thread_name(hub->subscriber, "of-ws-redis", NULL);
    }
    pthread_mutex_lock(&hub->mu);
    hub->started = 1;
    pthread_mutex_unlock(&hub->mu);
    return 0;
}

void of_ws_hub_stop(of_ws_hub *hub)
{
    if (!hub)
        return;
    pthread_mutex_lock(&hub->mu);
    if (!hub->started || hub->stopping) {
        hub->stopping = 1;
        pthread_mutex_unlock(&hub->mu);
        return;
    }
    hub->stopping = 1;
    pthread_cond_broadcast(&hub->cv);
    pthread_cond_broadcast(&hub->stop_cv);
    pthread_cond_broadcast(&hub->sub_cv);
    pthread_mutex_unlock(&hub->mu);
    /* The writer finishes what is queued, so a status published just before the stop still
     * reaches the open connections; then they are told to go. */
    pthread_join(hub->writer, NULL);
    if (hub->has_subscriber)
        pthread_join(hub->subscriber, NULL);
    pthread_mutex_lock(&hub->mu);
    for (of_ws_client *c = hub->clients; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        client_kill_locked(c, 1001, "the server is shutting down");
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&hub->mu);
}

void of_ws_hub_free(of_ws_hub *hub)
{
    if (!hub)
        return;
    of_ws_hub_stop(hub);
    while (hub->head) {
        ws_msg *n = hub->head->next;
        free(hub->head);
        hub->head = n;
    }
    if (hub->clients)
        of_log(OF_LVL_ERROR, NULL, NULL, "websocket hub freed with %d client%s still open",
               hub->n_clients, hub->n_clients == 1 ? "" : "s");
    if (hub->use_redis) {
        of_redis_config_free(&hub->redis);
        free(hub->redis_channel);
    }
    pthread_cond_destroy(&hub->refs_cv);
    pthread_cond_destroy(&hub->stop_cv);
    pthread_cond_destroy(&hub->sub_cv);
    free(hub->pub_buf);
    pthread_cond_destroy(&hub->cv);
    pthread_mutex_destroy(&hub->mu);
    free(hub);
}

void of_ws_hub_stats(of_ws_hub *hub, of_ws_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!hub)
        return;
    out->published = atomic_load(&hub->published);
    out->remote = atomic_load(&hub->remote);
    out->sent = atomic_load(&hub->sent);
    out->dropped = atomic_load(&hub->dropped);
    out->redis_down = atomic_load(&hub->redis_down);
    out->fanout_up = atomic_load(&hub->fanout_up);
    pthread_mutex_lock(&hub->mu);
    out->clients = hub->n_clients;
    pthread_mutex_unlock(&hub->mu);
}

/* ---------------------------------------------------------------------------------------------
 * Clients
 * ------------------------------------------------------------------------------------------- */

/* With hub->mu held, a client just counted: returns once the fan-out is subscribed, or its
 * attempt failed (Redis is away: this host's messages still reach the client, as with no Redis),
 * or the attempt takes longer than a connect and three commands may. Why wait: the caller reads
 * its snapshot next, and what another host publishes after that must reach the client. */
static void await_subscription(of_ws_hub *hub)
{
    if (!hub->use_redis)
        return;
    pthread_cond_broadcast(&hub->sub_cv);
    if (atomic_load(&hub->fanout_up) || hub->sub_down)
        return;
    uint64_t attempt = hub->sub_attempts;
    struct timespec until =
        of_mono_after_ms(hub->redis.connect_timeout_ms + 3 * hub->redis.command_timeout_ms + 100);
    while (!atomic_load(&hub->fanout_up) && hub->sub_attempts == attempt && !hub->stopping)
        if (pthread_cond_timedwait(&hub->sub_cv, &hub->mu, &until) == ETIMEDOUT)
            break;
}

void of_ws_hub_set_linger(of_ws_hub *hub, int64_t ms)
{
    if (!hub)
        return;
    pthread_mutex_lock(&hub->mu);
    hub->linger_ms = ms > 0 ? ms : 0;
    pthread_mutex_unlock(&hub->mu);
}

of_ws_client *of_ws_client_new(of_ws_hub *hub, const char *pipeline, int *full)
{
    *full = 0;
    if (!hub || !pipeline)
        return NULL;
    of_ws_client *c = calloc(1, sizeof(*c));
    if (!c || !(c->pipeline = strdup(pipeline)) || pthread_mutex_init(&c->mu, NULL) != 0) {
        if (c)
            free(c->pipeline);
        free(c);
        return NULL;
    }
    c->hub = hub;
    c->any_pipeline = strcmp(pipeline, OF_WS_ANY_PIPELINE) == 0;
    pthread_mutex_lock(&hub->mu);
    if (hub->n_clients >= hub->max_clients || hub->stopping || !hub->started) {
        pthread_mutex_unlock(&hub->mu);
        *full = 1;
        pthread_mutex_destroy(&c->mu);
        free(c->pipeline);
        free(c);
        return NULL;
    }
    c->next = hub->clients;
    if (hub->clients)
        hub->clients->prev = c;
    hub->clients = c;
    hub->n_clients++;
    await_subscription(hub);
    pthread_mutex_unlock(&hub->mu);
    return c;
}

int of_ws_client_subscribe(of_ws_client *c, const char *channel)
{
    if (!c || !of_ws_channel_valid(channel))
        return -1;
    of_ws_hub *hub = c->hub;
    uint64_t h = chan_hash(c->pipeline, channel);
    pthread_mutex_lock(&hub->mu);
    int rc = 0;
    for (size_t i = 0; i < c->n_channels; i++)
        if (c->hashes[i] == h && strcmp(c->channels[i], channel) == 0)
            goto out;
    if (c->n_channels >= OF_WS_MAX_CHANNELS || !(c->channels[c->n_channels] = strdup(channel))) {
        rc = -1;
        goto out;
    }
    c->hashes[c->n_channels++] = h;
out:
    pthread_mutex_unlock(&hub->mu);
    return rc;
}

size_t of_ws_client_channels(const of_ws_client *c)
{
    return c ? c->n_channels : 0;
}

int of_ws_client_send_first(of_ws_client *c, const void *msg, size_t len)
{
    if (!c || (!msg && len))
        return -1;
    pthread_mutex_lock(&c->mu);
    int rc = -1;
    if (!c->open && len <= OF_WS_MAX_MESSAGE - c->first_bytes &&
        buf_push(&c->first, &c->n_first, msg ? msg : "", len) == 0) {
        c->first_bytes += len;
        rc = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int of_ws_client_open(of_ws_client *c, void *conn)
{
    if (!c || !conn)
        return -1;
    of_ws_hub *hub = c->hub;
    pthread_mutex_lock(&c->mu);
    c->conn = conn;
    c->open = 1;
    int rc = c->dead ? -1 : 0;
    for (size_t i = 0; i < c->n_first && rc == 0; i++)
        rc = hub->write_fn(conn, c->first[i].data, c->first[i].len);
    for (size_t i = 0; i < c->n_backlog && rc == 0; i++) {
        rc = hub->write_fn(conn, c->backlog[i].data, c->backlog[i].len);
        if (rc == 0)
            count(&hub->sent, hub->m_sent, 1);
    }
    bufs_free(c->first, c->n_first);
    bufs_free(c->backlog, c->n_backlog);
    c->first = c->backlog = NULL;
    c->n_first = c->n_backlog = c->first_bytes = 0;
    if (rc != 0)
        c->dead = 1;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void of_ws_client_close(of_ws_client *c)
{
    if (!c)
        return;
    of_ws_hub *hub = c->hub;
    pthread_mutex_lock(&hub->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        hub->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    hub->n_clients--;
    /* The writer may be writing to this client (or keeping its place in the list): wait. */
    while (c->refs > 0)
        pthread_cond_wait(&hub->refs_cv, &hub->mu);
    pthread_mutex_unlock(&hub->mu);
    for (size_t i = 0; i < c->n_channels; i++)
        free(c->channels[i]);
    bufs_free(c->first, c->n_first);
    bufs_free(c->backlog, c->n_backlog);
    pthread_mutex_destroy(&c->mu);
    free(c->pipeline);
    free(c);
}
