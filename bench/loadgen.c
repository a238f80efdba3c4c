/* of-loadgen: the load generator of the order benchmark (bench/README section in README.md,
 * figures in bench/RESULTS.md).
 *
 * Places orders (POST /api/v1/orders) over N keep-alive HTTP/1.1 connections driven by one epoll
 * loop, at a fixed rate or as fast as the connections allow, for a set time, with bearer tokens
 * minted ahead of the run (one a line in a file; request i uses token i mod M) and SKUs from a
 * file (each line of an order a distinct SKU, quantity 1). Every request has its own
 * Idempotency-Key, so a request lost with its connection is sent again safely.
 *
 * Measured:
 *   intake   202s per second and the latency to the 202. At a fixed rate each request has an
 *            intended send time (t0 + i / rate) and its latency counts from that time, whether or
 *            not a connection was free then (no coordinated omission); as fast as possible it
 *            counts from the send.
 *   e2e      from the 202 (and from the intended send) to the order's final state (CONFIRMED,
 * REJECTED, CANCELLED) as seen on the status topic (order.status_changed events, key = order id),
 * consumed with librdkafka from the partitions' ends as they were before the first request; also
 *            the time of each step in between: send -> PENDING event (intake, commit, outbox
 *            relay), PENDING -> RESERVED (inventory), RESERVED -> PAID (payment), -> final.
 *   process  the resident memory and CPU of the processes given with --watch, and the machine's
 *            CPU, every second.
 *   errors   any answer but 202, a connection or protocol failure, a timeout, an order not final
 *            within --e2e-timeout, a final state not in --expect.
 *
 * Latencies go into log-linear histograms (values in microseconds, 128 sub-buckets per power of
 * two: at most 0.8 % relative error). Writes one JSON document (--out) and the accepted order
 * ids (--ids, one a line, for tools/check-orders.sh). Exit status: 0 no error, 1 errors, 2 usage
 * or setup failure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S  1000000000LL
#define NS_PER_MS 1000000LL
#define MAX_WATCH 8
#define ID_MAX    40

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        die("out of memory");
    return p;
}

/* ---- the histogram: log-linear, microseconds ---- */

#define H_SUB     128 /* sub-buckets per power of two */
#define H_LINEAR  256 /* values below this are exact */
#define H_MAXEXP  40
#define H_BUCKETS (H_LINEAR + (H_MAXEXP - 8 + 1) * H_SUB)

typedef struct {
    uint64_t count[H_BUCKETS];
    uint64_t n;
    uint64_t max;
    double sum;
} histo;

static int h_index(uint64_t v)
{
    if (v < H_LINEAR)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* >= 8 */
    if (e > H_MAXEXP)
        return H_BUCKETS - 1;
    int sub = (int)((v >> (e - 7)) & (H_SUB - 1));
    return H_LINEAR + (e - 8) * H_SUB + sub;
}

/* The highest value a bucket holds. */
static uint64_t h_upper(int i)
{
    if (i < H_LINEAR)
        return (uint64_t)i;
    int e = (i - H_LINEAR) / H_SUB + 8, sub = (i - H_LINEAR) % H_SUB;
    uint64_t lo = ((uint64_t)(H_SUB + sub)) << (e - 7);
    return lo + (1ULL << (e - 7)) - 1;
}

static void h_add(histo *h, int64_t ns)
{
    uint64_t us = ns > 0 ? (uint64_t)(ns / 1000) : 0;
    h->count[h_index(us)]++;
    h->n++;
    h->sum += (double)us;
    if (us > h->max)
        h->max = us;
}

static double h_quantile_ms(const histo *h, double q)
{
    if (!h->n)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            uint64_t v = h_upper(i);
            return (double)(v < h->max ? v : h->max) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

static json_t *h_json(const histo *h)
{
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "count", (json_int_t)h->n, "mean_ms",
                     h->n ? h->sum / (double)h->n / 1000.0 : 0.0, "p50_ms", h_quantile_ms(h, 0.50),
                     "p90_ms", h_quantile_ms(h, 0.90), "p99_ms", h_quantile_ms(h, 0.99), "p999_ms",
                     h_quantile_ms(h, 0.999), "max_ms", (double)h->max / 1000.0);
}

/* ---- the orders: one table keyed by order id, shared with the consumer thread ---- */

enum { ST_NONE, ST_PENDING, ST_RESERVED, ST_PAID, ST_CONFIRMED, ST_REJECTED, ST_CANCELLED, ST_N };
static const char *const st_names[ST_N] = {"",          "PENDING",  "RESERVED", "PAID",
                                           "CONFIRMED", "REJECTED", "CANCELLED"};

static int st_parse(const char *s)
{
    for (int i = 1; i < ST_N; i++)
        if (strcmp(s, st_names[i]) == 0)
            return i;
    return ST_NONE;
}

static int st_final(int s)
{
    return s >= ST_CONFIRMED;
}

typedef struct {
    char id[ID_MAX];
    uint8_t used, accepted, measured, final_state, last_state;
    uint16_t events;
    int64_t t_start;       /* intended (fixed rate) or actual send time */
    int64_t t_202;         /* the answer */
    int64_t t_state[ST_N]; /* when each state's event arrived (the first time) */
} order;

static struct {
    pthread_mutex_t mu;
    order *slots;
    size_t cap, used;
    /* stage: send (intended) -> PENDING event, PENDING -> RESERVED, RESERVED -> PAID, the last of
     * these -> final (PAID -> CONFIRMED; PENDING -> REJECTED) */
    histo e2e, e2e_send, stage[4];
    uint64_t finals_in_window, finals_total, foreign_events, duplicate_finals, events;
    uint64_t finals_by_state[ST_N];
    uint64_t finals_this_second;
    int64_t last_final_measured;
    int64_t window_start, window_end;
} T = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static order *t_find_locked(const char *id, int create);

static void t_grow_locked(void)
{
    order *old = T.slots;
    size_t oldcap = T.cap;
    T.cap = oldcap ? oldcap * 2 : 1 << 16;
    T.slots = xcalloc(T.cap, sizeof(order));
    T.used = 0;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].used) {
            order *o = t_find_locked(old[i].id, 1);
            *o = old[i];
        }
    free(old);
}

static order *t_find_locked(const char *id, int create)
{
    if (create && (T.used + 1) * 2 > T.cap)
        t_grow_locked();
    size_t mask = T.cap - 1;
    for (size_t i = hash_id(id) & mask;; i = (i + 1) & mask) {
        order *o = &T.slots[i];
        if (!o->used) {
            if (!create)
                return NULL;
            o->used = 1;
            snprintf(o->id, sizeof(o->id), "%s", id);
            T.used++;
            return o;
        }
        if (strcmp(o->id, id) == 0)
            return o;
    }
}

/* Called with the lock held once both the 202 and the final event are known. */
static void t_complete_locked(order *o)
{
    if (!o->measured)
        return;
    h_add(&T.e2e, o->t_state[o->final_state] - o->t_202);
    h_add(&T.e2e_send, o->t_state[o->final_state] - o->t_start);
    int64_t prev = o->t_start;
    int64_t marks[4] = {o->t_state[ST_PENDING], o->t_state[ST_RESERVED], o->t_state[ST_PAID],
                        o->t_state[o->final_state]};
    for (int k = 0; k < 4; k++) {
        if (!marks[k])
            continue; /* a REJECTED order has no RESERVED or PAID */
        if (prev)
            h_add(&T.stage[k], marks[k] - prev);
        prev = marks[k];
    }
    if (o->t_state[o->final_state] > T.last_final_measured)
        T.last_final_measured = o->t_state[o->final_state];
}

/* ---- options ---- */

static struct {
    const char *url_host;
    int port;
    const char *tokens_file, *skus_file, *out, *ids_file, *bootstrap, *topic, *label;
    const char *idem_prefix;
    double rate; /* 0: as fast as possible */
    double duration, warmup, timeout, e2e_timeout;
    int conns, lines;
    unsigned expect; /* bit per final state */
    int n_watch;
    char *watch_name[MAX_WATCH];
    int watch_pid[MAX_WATCH];
    int quiet, quickack;
} O = {.url_host = "127.0.0.1",
       .duration = 10,
       .timeout = 30,
       .e2e_timeout = 120,
       .conns = 32,
       .lines = 1,
       .label = "",
       .expect = 1u << ST_CONFIRMED};

static char **read_lines(const char *path, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot open %s: %s", path, strerror(errno));
    char **v = NULL, *line = NULL;
    size_t cap = 0;
    int len = 0, alloc = 0;
    ssize_t r;
    while ((r = getline(&line, &cap, f)) >= 0) {
        while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r' || line[r - 1] == ' '))
            line[--r] = '\0';
        if (r == 0)
            continue;
        if (len == alloc) {
            alloc = alloc ? alloc * 2 : 64;
            v = realloc(v, (size_t)alloc * sizeof(*v));
            if (!v)
                die("out of memory");
        }
        v[len++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (!len)
        die("%s is empty", path);
    *n = len;
    return v;
}

static void parse_url(const char *url)
{
    static char host[256];
    if (strncmp(url, "http://", 7) != 0)
        die("--url: only http://HOST:PORT is supported");
    const char *h = url + 7, *colon = strchr(h, ':');
    if (!colon || (size_t)(colon - h) >= sizeof(host))
        die("--url: a port is required (http://127.0.0.1:8080)");
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = '\0';
    O.url_host = host;
    O.port = atoi(colon + 1);
    if (O.port <= 0 || O.port > 65535)
        die("--url: bad port");
}

static void usage(void)
{
    fputs(
        "usage: of-loadgen --url http://HOST:PORT --tokens FILE --skus FILE --bootstrap HOST:PORT\n"
        "                  --topic STATUS_TOPIC [--rate R (0: max)] [--duration S] [--warmup S]\n"
        "                  [--connections N] [--lines N] [--timeout S] [--e2e-timeout S]\n"
        "                  [--expect CONFIRMED[,REJECTED,CANCELLED]] [--watch NAME=PID]...\n"
        "                  [--idempotency-prefix P] [--label L] [--out FILE] [--ids FILE] [-q]\n"
        "                  [--quickack (diagnosis: ACK answers at once, no delayed ACK)]\n",
        stderr);
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {{"url", 1, 0, 'u'},
                                       {"tokens", 1, 0, 't'},
                                       {"skus", 1, 0, 's'},
                                       {"bootstrap", 1, 0, 'b'},
                                       {"topic", 1, 0, 'T'},
                                       {"rate", 1, 0, 'r'},
                                       {"duration", 1, 0, 'd'},
                                       {"warmup", 1, 0, 'w'},
                                       {"connections", 1, 0, 'c'},
                                       {"lines", 1, 0, 'l'},
                                       {"timeout", 1, 0, 'o'},
                                       {"e2e-timeout", 1, 0, 'e'},
                                       {"expect", 1, 0, 'x'},
                                       {"watch", 1, 0, 'W'},
                                       {"idempotency-prefix", 1, 0, 'k'},
                                       {"label", 1, 0, 'L'},
                                       {"out", 1, 0, 'O'},
                                       {"ids", 1, 0, 'I'},
                                       {"quiet", 0, 0, 'q'},
                                       {"quickack", 0, 0, 'Q'},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    const char *url = NULL;
    while ((c = getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
        switch (c) {
        case 'u':
            url = optarg;
            break;
        case 't':
            O.tokens_file = optarg;
            break;
        case 's':
            O.skus_file = optarg;
            break;
        case 'b':
            O.bootstrap = optarg;
            break;
        case 'T':
            O.topic = optarg;
            break;
        case 'r':
            O.rate = atof(optarg);
            break;
        case 'd':
            O.duration = atof(optarg);
            break;
        case 'w':
            O.warmup = atof(optarg);
            break;
        case 'c':
            O.conns = atoi(optarg);
            break;
        case 'l':
            O.lines = atoi(optarg);
            break;
        case 'o':
            O.timeout = atof(optarg);
            break;
        case 'e':
            O.e2e_timeout = atof(optarg);
            break;
        case 'k':
            O.idem_prefix = optarg;
            break;
        case 'L':
            O.label = optarg;
            break;
        case 'O':
            O.out = optarg;
            break;
        case 'I':
            O.ids_file = optarg;
            break;
        case 'q':
            O.quiet = 1;
            break;
        case 'Q':
            O.quickack = 1;
            break;
        case 'x': {
            O.expect = 0;
            char *s = strdup(optarg), *save = NULL;
            for (char *p = strtok_r(s, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
                int st = st_parse(p);
                if (!st_final(st))
                    die("--expect: %s is not a final state", p);
                O.expect |= 1u << st;
            }
            free(s);
            break;
        }
        case 'W': {
            char *eq = strchr(optarg, '=');
            if (!eq || O.n_watch == MAX_WATCH)
                die("--watch NAME=PID (at most %d)", MAX_WATCH);
            O.watch_name[O.n_watch] = strndup(optarg, (size_t)(eq - optarg));
            O.watch_pid[O.n_watch++] = atoi(eq + 1);
            break;
        }
        default:
            usage();
        }
    }
    if (!url || !O.tokens_file || !O.skus_file || !O.bootstrap || !O.topic)
        usage();
    parse_url(url);
    if (O.rate < 0 || O.duration <= 0 || O.warmup < 0 || O.conns < 1 || O.conns > 4096 ||
        O.lines < 1 || O.lines > 100)
        die("bad --rate, --duration, --warmup, --connections or --lines");
}

/* ---- process and machine sampling ---- */

typedef struct {
    int64_t t;
    uint64_t ticks[MAX_WATCH];
    long rss_kb[MAX_WATCH];
    uint64_t m_busy, m_total;
} sample;

static int read_file(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    return 0;
}

static void take_sample(sample *s)
{
    char buf[8192], path[64];
    s->t = now_ns();
    for (int i = 0; i < O.n_watch; i++) {
        s->ticks[i] = 0;
        s->rss_kb[i] = -1;
        snprintf(path, sizeof(path), "/proc/%d/stat", O.watch_pid[i]);
        if (read_file(path, buf, sizeof(buf)) == 0) {
            const char *p = strrchr(buf, ')');
            unsigned long ut = 0, st = 0;
            if (p &&
                sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
                s->ticks[i] = ut + st;
        }
        snprintf(path, sizeof(path), "/proc/%d/status", O.watch_pid[i]);
        if (read_file(path, buf, sizeof(buf)) == 0) {
            const char *p = strstr(buf, "VmRSS:");
            if (p)
                s->rss_kb[i] = strtol(p + 6, NULL, 10);
        }
    }
    s->m_busy = s->m_total = 0;
    if (read_file("/proc/stat", buf, sizeof(buf)) == 0) {
        unsigned long long v[8] = {0};
        if (sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8) {
            for (int i = 0; i < 8; i++)
                s->m_total += v[i];
            s->m_busy = s->m_total - v[3] - v[4];
        }
    }
}

/* ---- HTTP connections ---- */

enum { C_DOWN, C_CONNECTING, C_IDLE, C_SENDING, C_WAITING };

typedef struct {
    int fd, state, idx;
    int64_t req; /* the request in progress, -1 none */
    int tries;   /* of that request */
    int64_t t_sent;
    char out[4096];
    size_t out_len, out_off;
    char in[8192];
    size_t in_len;
} conn;

static conn *conns;
static int epfd;
static char **tokens, **skus;
static int n_tokens, n_skus;
static int64_t t0, t_measure, t_end;

static struct {
    uint64_t sent, accepted, accepted_measured, retries, reconnects, unsent;
    uint64_t err_connect, err_io, err_timeout, err_bad_response, err_retries;
    uint64_t by_status[600];
    uint64_t accepted_this_second, sent_this_second;
    int64_t last_answer_measured;
    histo intake;
} H;

/* requests waiting to be sent again after their connection failed */
static int64_t *retry_q;
static int *retry_tries;
static size_t retry_n, retry_cap;

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static int64_t intended(int64_t i)
{
    return t0 + (int64_t)((double)i * (double)NS_PER_S / O.rate);
}

static void conn_close(conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_DOWN;
    c->in_len = 0;
}

static int conn_open(conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)O.port)};
    if (inet_pton(AF_INET, O.url_host, &a.sin_addr) != 1)
        die("--url: the host must be an IPv4 address");
    int r = connect(c->fd, (struct sockaddr *)&a, sizeof(a));
    if (r < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
                             .data.u32 = (uint32_t)c->idx};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    c->state = C_CONNECTING;
    return 0;
}

static void conn_want(conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events | EPOLLRDHUP, .data.u32 = (uint32_t)c->idx};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void build_request(conn *c, int64_t i)
{
    char body[2048];
    size_t bl = (size_t)snprintf(body, sizeof(body), "{\"items\":[");
    int picked[100];
    int lines = O.lines < n_skus ? O.lines : n_skus;
    for (int l = 0; l < lines; l++) {
        int s;
        int again;
        do {
            s = (int)(rng() % (uint64_t)n_skus);
            again = 0;
            for (int k = 0; k < l; k++)
                again |= picked[k] == s;
        } while (again);
        picked[l] = s;
        bl += (size_t)snprintf(body + bl, sizeof(body) - bl, "%s{\"sku\":\"%s\",\"quantity\":1}",
                               l ? "," : "", skus[s]);
    }
    bl += (size_t)snprintf(body + bl, sizeof(body) - bl, "]}");
    c->out_len =
        (size_t)snprintf(c->out, sizeof(c->out),
                         "POST /api/v1/orders HTTP/1.1\r\nHost: %s:%d\r\n"
                         "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                         "Idempotency-Key: %s-%" PRId64 "\r\nContent-Length: %zu\r\n\r\n%s",
                         O.url_host, O.port, tokens[i % n_tokens], O.idem_prefix, i, bl, body);
    if (c->out_len >= sizeof(c->out))
        die("request too large (a token of %zu bytes?)", strlen(tokens[i % n_tokens]));
    c->out_off = 0;
}

static void conn_flush(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN)
                break;
            return; /* the read side reports the failure */
        }
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len) {
        c->state = C_WAITING;
        conn_want(c, EPOLLIN);
    } else {
        c->state = C_SENDING;
        conn_want(c, EPOLLIN | EPOLLOUT);
    }
}

static void start_request(conn *c, int64_t i, int tries)
{
    c->req = i;
    c->tries = tries;
    c->in_len = 0;
    build_request(c, i);
    c->t_sent = now_ns();
    if (tries == 0) {
        H.sent++;
        H.sent_this_second++;
    }
    conn_flush(c);
}

static void retry_push(int64_t i, int tries)
{
    if (retry_n == retry_cap) {
        retry_cap = retry_cap ? retry_cap * 2 : 64;
        retry_q = realloc(retry_q, retry_cap * sizeof(*retry_q));
        retry_tries = realloc(retry_tries, retry_cap * sizeof(*retry_tries));
        if (!retry_q || !retry_tries)
            die("out of memory");
    }
    retry_q[retry_n] = i;
    retry_tries[retry_n++] = tries;
}

/* The connection failed or was closed by the server. A request without any answer yet is sent
 * again (same Idempotency-Key) up to 3 times. */
static void conn_failed(conn *c, int connecting)
{
    if (c->req >= 0) {
        if (c->in_len == 0 && c->tries < 3) {
            H.retries++;
            retry_push(c->req, c->tries + 1);
        } else if (c->in_len) {
            H.err_io++;
        } else {
            H.err_retries++;
            if (connecting)
                H.err_connect++;
        }
    }
    c->req = -1;
    conn_close(c);
}

static const char *find_ci(const char *hay, size_t n, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= n; i++)
        if (strncasecmp(hay + i, needle, nl) == 0)
            return hay + i;
    return NULL;
}

static int64_t start_time(int64_t i, const conn *c)
{
    return O.rate > 0 ? intended(i) : c->t_sent;
}

static void on_answer(conn *c, int status, const char *body, size_t body_len)
{
    int64_t now = now_ns(), i = c->req;
    int retried = c->tries > 0;
    H.by_status[status >= 100 && status < 600 ? status : 0]++;
    int64_t ts = start_time(i, c);
    int measured = ts >= t_measure && ts < t_end;
    if (O.rate == 0 && c->tries > 0)
        measured = 0; /* the first send is lost; keep the figures to clean requests */
    if (status == 202 || (status == 200 && retried)) {
        const char *k = strstr(body, "\"order_id\"");
        char id[ID_MAX] = "";
        if (k) {
            const char *q = strchr(k + 10, '"');
            const char *e = q ? memchr(q + 1, '"', (size_t)(body + body_len - (q + 1))) : NULL;
            if (e && (size_t)(e - q - 1) < sizeof(id)) {
                memcpy(id, q + 1, (size_t)(e - q - 1));
                id[e - q - 1] = '\0';
            }
        }
        if (!id[0]) {
            H.err_bad_response++;
            return;
        }
        H.accepted++;
        H.accepted_this_second++;
        if (measured) {
            H.accepted_measured++;
            h_add(&H.intake, now - ts);
            if (now > H.last_answer_measured)
                H.last_answer_measured = now;
        }
        pthread_mutex_lock(&T.mu);
        order *o = t_find_locked(id, 1);
        o->accepted = 1;
        o->measured = (uint8_t)measured;
        o->t_start = ts;
        o->t_202 = now;
        if (st_final(o->final_state))
            t_complete_locked(o);
        pthread_mutex_unlock(&T.mu);
    } else if (!O.quiet && H.by_status[status] <= 3) {
        fprintf(stderr, "loadgen: HTTP %d: %.*s\n", status, (int)(body_len > 300 ? 300 : body_len),
                body);
    }
}

/* Reads what is there; handles complete answers. */
static void conn_read(conn *c)
{
    int eof = 0;
    for (;;) {
        if (c->in_len == sizeof(c->in) - 1) {
            H.err_bad_response++;
            c->req = -1;
            conn_close(c);
            return;
        }
        if (O.quickack) {
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len, 0);
        if (r < 0) {
            if (errno == EAGAIN)
                break;
            conn_failed(c, 0);
            return;
        }
        if (r == 0) {
            eof = 1;
            break;
        }
        c->in_len += (size_t)r;
    }
    c->in[c->in_len] = '\0';
    const char *hend = strstr(c->in, "\r\n\r\n");
    if (!hend) {
        if (eof)
            conn_failed(c, 0);
        return;
    }
    size_t hl = (size_t)(hend - c->in) + 4;
    int status = 0;
    if (sscanf(c->in, "HTTP/1.%*d %d", &status) != 1) {
        H.err_bad_response++;
        c->req = -1;
        conn_close(c);
        return;
    }
    const char *cl = find_ci(c->in, hl, "\r\nContent-Length:");
    size_t clen = cl ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
    if (c->in_len < hl + clen) {
        if (eof)
            conn_failed(c, 0);
        return;
    }
    int close_after = eof || find_ci(c->in, hl, "\r\nConnection: close") != NULL;
    if (c->req < 0) { /* an answer nobody asked for */
        H.err_bad_response++;
        conn_close(c);
        return;
    }
    on_answer(c, status, c->in + hl, clen);
    c->req = -1;
    if (close_after || c->in_len > hl + clen) {
        H.reconnects += close_after;
        conn_close(c);
    } else {
        c->in_len = 0;
        c->state = C_IDLE;
    }
}

/* ---- the Kafka consumer of the status topic ---- */

static rd_kafka_t *rk;
static atomic_int consumer_stop;

static void consumer_setup(void)
{
    char err[512], group[128];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(group, sizeof(group), "orderflow-bench-%d-%" PRId64, (int)getpid(), now_ns());
    const char *kv[][2] = {{"bootstrap.servers", O.bootstrap}, {"group.id", group},
                           {"enable.auto.commit", "false"},    {"fetch.wait.max.ms", "5"},
                           {"fetch.error.backoff.ms", "20"},   {"log_level", "3"}};
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            die("kafka %s: %s", kv[i][0], err);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk)
        die("kafka: %s", err);
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, O.topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    if (e || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0)
        die("kafka: no metadata for %s: %s", O.topic,
            e ? rd_kafka_err2str(e)
              : rd_kafka_err2str(md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN));
    int np = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++) {
        int32_t pid = md->topics[0].partitions[p].id;
        int64_t lo, hi;
        e = rd_kafka_query_watermark_offsets(rk, O.topic, pid, &lo, &hi, 10000);
        if (e)
            die("kafka: offsets of %s [%d]: %s", O.topic, pid, rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_add(l, O.topic, pid)->offset = hi;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        die("kafka: assign: %s", rd_kafka_err2str(e));
}

static void *consumer_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&consumer_stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        int64_t now = now_ns();
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && !O.quiet)
                fprintf(stderr, "loadgen: kafka: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        char id[ID_MAX] = "";
        if (m->key && m->key_len < sizeof(id)) {
            memcpy(id, m->key, m->key_len);
            id[m->key_len] = '\0';
        }
        json_t *doc = json_loadb(m->payload, m->len, 0, NULL);
        const char *to = doc ? json_string_value(json_object_get(doc, "to")) : NULL;
        int st = to ? st_parse(to) : ST_NONE;
        if (!id[0] && doc) {
            const char *s = json_string_value(json_object_get(doc, "order_id"));
            if (s)
                snprintf(id, sizeof(id), "%s", s);
        }
        pthread_mutex_lock(&T.mu);
        T.events++;
        if (id[0] && st != ST_NONE) {
            order *o = t_find_locked(id, 1);
            if (o->events < UINT16_MAX)
                o->events++;
            if (!o->t_state[st])
                o->t_state[st] = now;
            o->last_state = (uint8_t)st;
            if (st_final(st)) {
                if (st_final(o->final_state)) {
                    T.duplicate_finals++;
                } else {
                    o->final_state = (uint8_t)st;
                    T.finals_total++;
                    T.finals_this_second++;
                    if (now >= T.window_start && now < T.window_end)
                        T.finals_in_window++;
                    if (o->accepted)
                        t_complete_locked(o);
                }
            }
        }
        pthread_mutex_unlock(&T.mu);
        json_decref(doc);
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

/* ---- the run ---- */

static volatile sig_atomic_t interrupted;
static void on_signal(int s)
{
    (void)s;
    interrupted = 1;
}

typedef struct {
    double t;
    uint64_t sent, accepted, finals;
    double cpu[MAX_WATCH];
    long rss_kb[MAX_WATCH];
    double machine_busy;
} second;

static second *series;
static size_t n_series, cap_series;

static void record_second(const sample *prev, const sample *cur)
{
    if (n_series == cap_series) {
        cap_series = cap_series ? cap_series * 2 : 256;
        series = realloc(series, cap_series * sizeof(*series));
        if (!series)
            die("out of memory");
    }
    second *s = &series[n_series++];
    double dt = (double)(cur->t - prev->t) / NS_PER_S, hz = (double)sysconf(_SC_CLK_TCK);
    s->t = (double)(cur->t - t0) / NS_PER_S;
    s->sent = H.sent_this_second;
    s->accepted = H.accepted_this_second;
    H.sent_this_second = H.accepted_this_second = 0;
    pthread_mutex_lock(&T.mu);
    s->finals = T.finals_this_second;
    T.finals_this_second = 0;
    pthread_mutex_unlock(&T.mu);
    for (int i = 0; i < O.n_watch; i++) {
        s->cpu[i] = dt > 0 ? 100.0 * (double)(cur->ticks[i] - prev->ticks[i]) / hz / dt : 0;
        s->rss_kb[i] = cur->rss_kb[i];
    }
    uint64_t dtot = cur->m_total - prev->m_total;
    s->machine_busy = dtot ? 100.0 * (double)(cur->m_busy - prev->m_busy) / (double)dtot : 0;
}

static int64_t total_requests(void)
{
    return O.rate > 0 ? (int64_t)llround(O.rate * (O.warmup + O.duration)) : INT64_MAX;
}

static void http_loop(void)
{
    struct epoll_event evs[256];
    int64_t next_i = 0, total = total_requests();
    int64_t hard_stop = t_end + (int64_t)((O.duration > 10 ? O.duration : 10) * NS_PER_S);
    sample prev, cur;
    take_sample(&prev);
    int64_t next_sample = prev.t + NS_PER_S, last_timeout_check = 0;
    int issuing = 1;
    for (;;) {
        int64_t now = now_ns();
        if (interrupted)
            issuing = 0;
        if (issuing && (O.rate > 0 ? next_i >= total : now >= t_end))
            issuing = 0;
        if (issuing && O.rate > 0 && now >= hard_stop) {
            H.unsent += (uint64_t)(total - next_i);
            issuing = 0;
        }
        /* hand due requests to free connections: retries first */
        int in_flight = 0;
        for (int k = 0; k < O.conns; k++) {
            conn *c = &conns[k];
            if (c->state == C_DOWN) {
                int64_t due = O.rate > 0
                                  ? (int64_t)floor((double)(now - t0) * O.rate / NS_PER_S) + 1
                                  : INT64_MAX;
                if (retry_n || (issuing && next_i < due && next_i < total))
                    if (conn_open(c) != 0)
                        H.err_connect++;
            }
            if (c->state == C_IDLE) {
                if (retry_n) {
                    retry_n--;
                    start_request(c, retry_q[retry_n], retry_tries[retry_n]);
                } else if (issuing) {
                    int64_t due = O.rate > 0
                                      ? (int64_t)floor((double)(now - t0) * O.rate / NS_PER_S) + 1
                                      : INT64_MAX;
                    if (next_i < due && next_i < total)
                        start_request(c, next_i++, 0);
                }
            }
            if (c->req >= 0 || c->state == C_CONNECTING)
                in_flight += c->req >= 0;
        }
        if (!issuing && in_flight == 0 && retry_n == 0)
            break;
        /* timeouts */
        if (now - last_timeout_check > 100 * NS_PER_MS) {
            last_timeout_check = now;
            for (int k = 0; k < O.conns; k++) {
                conn *c = &conns[k];
                if (c->req >= 0 && now - c->t_sent > (int64_t)(O.timeout * NS_PER_S)) {
                    H.err_timeout++;
                    c->req = -1;
                    conn_close(c);
                }
            }
        }
        if (now >= next_sample) {
            take_sample(&cur);
            record_second(&prev, &cur);
            prev = cur;
            next_sample += NS_PER_S;
        }
        /* sleep until the next intended send, the next sample or an event */
        int64_t wake = next_sample;
        if (issuing && O.rate > 0 && next_i < total) {
            int free_conn = 0;
            for (int k = 0; k < O.conns && !free_conn; k++)
                free_conn = conns[k].state == C_IDLE || conns[k].state == C_DOWN;
            if (free_conn && intended(next_i) < wake)
                wake = intended(next_i);
        }
        if (wake > now + 100 * NS_PER_MS)
            wake = now + 100 * NS_PER_MS;
        struct timespec ts = {0, 0};
        if (wake > now) {
            ts.tv_sec = (wake - now) / NS_PER_S;
            ts.tv_nsec = (wake - now) % NS_PER_S;
        }
        int n = epoll_pwait2(epfd, evs, 256, &ts, NULL);
        for (int e = 0; e < n; e++) {
            conn *c = &conns[evs[e].data.u32];
            uint32_t ev = evs[e].events;
            if (c->fd < 0)
                continue;
            if (c->state == C_CONNECTING) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr || (ev & (EPOLLERR | EPOLLHUP))) {
                    conn_failed(c, 1);
                    continue;
                }
                if (ev & EPOLLOUT) {
                    c->state = C_IDLE;
                    conn_want(c, EPOLLIN);
                }
                continue;
            }
            if (ev & EPOLLIN || ev & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
                if (c->state == C_IDLE) {
                    /* the server closed an idle keep-alive connection */
                    char b;
                    if (recv(c->fd, &b, 1, MSG_PEEK) <= 0) {
                        H.reconnects++;
                        conn_close(c);
                        continue;
                    }
                }
                conn_read(c);
                if (c->fd < 0)
                    continue;
            }
            if ((ev & EPOLLOUT) && c->state == C_SENDING)
                conn_flush(c);
        }
    }
    take_sample(&cur);
    record_second(&prev, &cur);
}

static int count_not_final(uint64_t *by_last)
{
    int n = 0;
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < T.cap; i++) {
        order *o = &T.slots[i];
        if (o->used && o->accepted && !st_final(o->final_state)) {
            n++;
            if (by_last)
                by_last[o->last_state]++;
        }
    }
    pthread_mutex_unlock(&T.mu);
    return n;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    tokens = read_lines(O.tokens_file, &n_tokens);
    skus = read_lines(O.skus_file, &n_skus);
    if (!O.idem_prefix) {
        static char pfx[64];
        snprintf(pfx, sizeof(pfx), "bench-%d-%" PRId64, (int)getpid(), now_ns());
        O.idem_prefix = pfx;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    pthread_mutex_lock(&T.mu);
    t_grow_locked();
    pthread_mutex_unlock(&T.mu);

    consumer_setup();
    pthread_t consumer;
    if (pthread_create(&consumer, NULL, consumer_main, NULL) != 0)
        die("pthread_create");

    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = xcalloc((size_t)O.conns, sizeof(conn));
    for (int k = 0; k < O.conns; k++) {
        conns[k].fd = -1;
        conns[k].idx = k;
        conns[k].req = -1;
    }
    /* Connect everything before the clock starts (tokens and SKUs are in memory already). */
    for (int k = 0; k < O.conns; k++)
        if (conn_open(&conns[k]) != 0)
            die("cannot connect to %s:%d", O.url_host, O.port);
    int64_t deadline = now_ns() + 5 * NS_PER_S;
    for (int up = 0; up < O.conns && now_ns() < deadline;) {
        struct epoll_event evs[64];
        int n = epoll_wait(epfd, evs, 64, 100);
        for (int e = 0; e < n; e++) {
            conn *c = &conns[evs[e].data.u32];
            if (c->state == C_CONNECTING && (evs[e].events & EPOLLOUT)) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr)
                    die("cannot connect to %s:%d: %s", O.url_host, O.port, strerror(soerr));
                c->state = C_IDLE;
                conn_want(c, EPOLLIN);
                up++;
            }
        }
    }

    t0 = now_ns();
    t_measure = t0 + (int64_t)(O.warmup * NS_PER_S);
    t_end = t_measure + (int64_t)(O.duration * NS_PER_S);
    pthread_mutex_lock(&T.mu);
    T.window_start = t_measure;
    T.window_end = t_end;
    pthread_mutex_unlock(&T.mu);
    if (!O.quiet)
        fprintf(stderr, "loadgen: %s%s%.0f s at %s, %d connections, %d tokens, %d SKUs\n", O.label,
                *O.label ? ": " : "", O.warmup + O.duration,
                O.rate > 0 ? "a fixed rate" : "the maximum rate", O.conns, n_tokens, n_skus);

    http_loop();
    int64_t t_load_done = now_ns();

    /* Until every accepted order is final (or the e2e timeout). */
    int64_t e2e_deadline = t_load_done + (int64_t)(O.e2e_timeout * NS_PER_S);
    while (!interrupted && now_ns() < e2e_deadline && count_not_final(NULL) > 0) {
        struct timespec ts = {0, 50 * NS_PER_MS};
        nanosleep(&ts, NULL);
    }
    /* late duplicates are not waited for; stop the consumer */
    atomic_store(&consumer_stop, 1);
    pthread_join(consumer, NULL);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    int64_t t_done = now_ns();

    uint64_t not_final_by[ST_N] = {0};
    int not_final = count_not_final(not_final_by);
    uint64_t unexpected[ST_N] = {0}, n_unexpected = 0;
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < T.cap; i++) {
        order *o = &T.slots[i];
        if (o->used && o->accepted && st_final(o->final_state) &&
            !(O.expect & (1u << o->final_state))) {
            unexpected[o->final_state]++;
            n_unexpected++;
        }
    }
    uint64_t foreign = 0;
    for (size_t i = 0; i < T.cap; i++)
        foreign += T.slots[i].used && !T.slots[i].accepted;
    pthread_mutex_unlock(&T.mu);

    uint64_t non202 = 0;
    json_t *codes = json_object();
    for (int s = 0; s < 600; s++) {
        if (!H.by_status[s])
            continue;
        char k[8];
        snprintf(k, sizeof(k), "%d", s);
        json_object_set_new(codes, k, json_integer((json_int_t)H.by_status[s]));
        if (s != 202 && s != 200)
            non202 += H.by_status[s];
    }
    /* a 200 is an answer to a repeated Idempotency-Key: fine after a retry, an error otherwise */
    uint64_t stray200 = H.by_status[200] > H.retries ? H.by_status[200] - H.retries : 0;
    non202 += stray200;
    uint64_t errors = non202 + H.err_connect + H.err_io + H.err_timeout + H.err_bad_response +
                      H.err_retries + (uint64_t)not_final + n_unexpected;

    double window = O.duration;
    double intake_span = H.last_answer_measured > t_end
                             ? (double)(H.last_answer_measured - t_measure) / NS_PER_S
                             : window;
    double e2e_span = T.last_final_measured > t_measure
                          ? (double)(T.last_final_measured - t_measure) / NS_PER_S
                          : window;
    json_t *unexp = json_object(), *nf = json_object(), *finals = json_object();
    for (int s = 1; s < ST_N; s++) {
        if (unexpected[s])
            json_object_set_new(unexp, st_names[s], json_integer((json_int_t)unexpected[s]));
        if (not_final_by[s])
            json_object_set_new(nf, st_names[s], json_integer((json_int_t)not_final_by[s]));
    }
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < T.cap; i++) {
        order *o = &T.slots[i];
        if (o->used && o->accepted && st_final(o->final_state))
            T.finals_by_state[o->final_state]++;
    }
    for (int s = ST_CONFIRMED; s < ST_N; s++)
        json_object_set_new(finals, st_names[s], json_integer((json_int_t)T.finals_by_state[s]));
    pthread_mutex_unlock(&T.mu);

    json_t *watch = json_array();
    for (int i = 0; i < O.n_watch; i++) {
        double cpu_sum = 0;
        long rss_max = 0, rss_min = -1;
        for (size_t k = 0; k < n_series; k++) {
            cpu_sum += series[k].cpu[i];
            if (series[k].rss_kb[i] > rss_max)
                rss_max = series[k].rss_kb[i];
            if (series[k].rss_kb[i] >= 0 && (rss_min < 0 || series[k].rss_kb[i] < rss_min))
                rss_min = series[k].rss_kb[i];
        }
        json_array_append_new(
            watch,
            json_pack("{s:s, s:i, s:f, s:I, s:I, s:I}", "name", O.watch_name[i], "pid",
                      O.watch_pid[i], "cpu_mean_pct", n_series ? cpu_sum / (double)n_series : 0.0,
                      "rss_kb_min", (json_int_t)rss_min, "rss_kb_max", (json_int_t)rss_max,
                      "rss_kb_last", (json_int_t)(n_series ? series[n_series - 1].rss_kb[i] : -1)));
    }
    json_t *ser = json_object(), *st = json_array(), *ss = json_array(), *sa = json_array(),
           *sf = json_array(), *sm = json_array(), *scpu = json_object(), *srss = json_object();
    for (int i = 0; i < O.n_watch; i++) {
        json_object_set_new(scpu, O.watch_name[i], json_array());
        json_object_set_new(srss, O.watch_name[i], json_array());
    }
    for (size_t k = 0; k < n_series; k++) {
        json_array_append_new(st, json_real(round(series[k].t * 1000) / 1000));
        json_array_append_new(ss, json_integer((json_int_t)series[k].sent));
        json_array_append_new(sa, json_integer((json_int_t)series[k].accepted));
        json_array_append_new(sf, json_integer((json_int_t)series[k].finals));
        json_array_append_new(sm, json_real(round(series[k].machine_busy * 10) / 10));
        for (int i = 0; i < O.n_watch; i++) {
            json_array_append_new(json_object_get(scpu, O.watch_name[i]),
                                  json_real(round(series[k].cpu[i] * 10) / 10));
            json_array_append_new(json_object_get(srss, O.watch_name[i]),
                                  json_integer((json_int_t)series[k].rss_kb[i]));
        }
    }
    json_object_set_new(ser, "t_s", st);
    json_object_set_new(ser, "sent", ss);
    json_object_set_new(ser, "accepted", sa);
    json_object_set_new(ser, "finals", sf);
    json_object_set_new(ser, "machine_busy_pct", sm);
    json_object_set_new(ser, "cpu_pct", scpu);
    json_object_set_new(ser, "rss_kb", srss);

    json_t *expect = json_array();
    for (int s = ST_CONFIRMED; s < ST_N; s++)
        if (O.expect & (1u << s))
            json_array_append_new(expect, json_string(st_names[s]));

    json_error_t jerr;
    json_t *doc = json_pack_ex(
        &jerr, 0,
        "{s:s, s:{s:s, s:f, s:f, s:f, s:i, s:i, s:o, s:b, s:s, s:i, s:i},"
        " s:{s:I, s:I, s:I, s:f, s:f, s:o, s:o},"
        " s:{s:I, s:I, s:f, s:f, s:o, s:o, s:I, s:I, s:I},"
        " s:o, s:f, s:f}",
        "label", O.label, "config", "mode", O.rate > 0 ? "fixed-rate" : "max", "rate", O.rate,
        "duration_s", O.duration, "warmup_s", O.warmup, "connections", O.conns, "lines", O.lines,
        "expect", expect, "quickack", O.quickack, "status_topic", O.topic, "tokens", n_tokens,
        "skus", n_skus, "intake", "sent", (json_int_t)H.sent, "accepted", (json_int_t)H.accepted,
        "accepted_measured", (json_int_t)H.accepted_measured, "offered_per_s",
        O.rate > 0 ? O.rate : (double)H.accepted_measured / window, "throughput_per_s",
        (double)H.accepted_measured / intake_span, "latency", h_json(&H.intake), "http_status",
        codes, "e2e", "final",
        (json_int_t)(T.finals_by_state[ST_CONFIRMED] + T.finals_by_state[ST_REJECTED] +
                     T.finals_by_state[ST_CANCELLED]),
        "measured", (json_int_t)T.e2e.n, "throughput_window_per_s",
        (double)T.finals_in_window / window, "throughput_per_s", (double)T.e2e.n / e2e_span,
        "latency", h_json(&T.e2e), "finals", finals, "status_events", (json_int_t)T.events,
        "duplicate_finals", (json_int_t)T.duplicate_finals, "foreign_orders", (json_int_t)foreign,
        "watch", watch, "load_s", (double)(t_load_done - t0) / NS_PER_S, "total_s",
        (double)(t_done - t0) / NS_PER_S);
    if (!doc)
        die("building the result: %s", jerr.text);
    json_t *stages = json_object();
    const char *stage_names[4] = {"send_to_pending_event", "pending_to_reserved",
                                  "reserved_to_paid", "to_final"};
    for (int k = 0; k < 4; k++)
        json_object_set_new(stages, stage_names[k], h_json(&T.stage[k]));
    json_object_set_new(json_object_get(doc, "e2e"), "stages", stages);
    /* from the (intended) send: the 202 itself may arrive after the final state */
    json_object_set_new(json_object_get(doc, "e2e"), "latency_from_send", h_json(&T.e2e_send));
    json_object_set_new(doc, "errors",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "total",
                                  (json_int_t)errors, "http_not_202", (json_int_t)non202, "connect",
                                  (json_int_t)H.err_connect, "io", (json_int_t)H.err_io, "timeout",
                                  (json_int_t)H.err_timeout, "bad_response",
                                  (json_int_t)H.err_bad_response, "retries_exhausted",
                                  (json_int_t)H.err_retries, "not_final", (json_int_t)not_final,
                                  "not_final_by_last_state", nf, "unexpected_final", unexp));
    json_object_set_new(doc, "notes",
                        json_pack("{s:I, s:I, s:I}", "resent_after_connection_loss",
                                  (json_int_t)H.retries, "server_closed_connections",
                                  (json_int_t)H.reconnects, "unsent_overload",
                                  (json_int_t)H.unsent));
    json_object_set_new(doc, "series", ser);

    if (O.out) {
        if (json_dump_file(doc, O.out, JSON_INDENT(1) | JSON_REAL_PRECISION(6)) != 0)
            die("cannot write %s", O.out);
    }
    if (O.ids_file) {
        FILE *f = fopen(O.ids_file, "a");
        if (!f)
            die("cannot write %s", O.ids_file);
        for (size_t i = 0; i < T.cap; i++)
            if (T.slots[i].used && T.slots[i].accepted)
                fprintf(f, "%s\n", T.slots[i].id);
        fclose(f);
    }
    if (!O.quiet)
        fprintf(stderr,
                "loadgen: %s%s%" PRIu64 " accepted, intake %.0f/s p50 %.2f p99 %.2f p99.9 %.2f ms;"
                " e2e %.0f/s p50 %.1f p99 %.1f ms; %" PRIu64 " error(s)\n",
                O.label, *O.label ? ": " : "", H.accepted,
                (double)H.accepted_measured / intake_span, h_quantile_ms(&H.intake, .5),
                h_quantile_ms(&H.intake, .99), h_quantile_ms(&H.intake, .999),
                (double)T.e2e.n / e2e_span, h_quantile_ms(&T.e2e, .5), h_quantile_ms(&T.e2e, .99),
                errors);
    json_decref(doc);
    return errors ? 1 : 0;
}
