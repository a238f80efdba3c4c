/* The WebSocket hub without a gateway: fake connections record what is written to them. Checked:
 * channel and pipeline matching, the backlog of a client not yet open (order, and its bound), a
 * connection that fails a write is closed and skipped, the client limit, bad channels and
 * messages, and the fan-out between two hubs through a real Redis (a private redis-server): each
 * message once on every host, none echoed back to its origin, resubscribing after Redis
 * restarts, and local delivery while Redis is away; a host subscribed only while it has clients,
 * a new client returned only once the subscription is up, and messages of every size and of
 * every byte but NUL crossing intact, in batches larger than the publisher's buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "redis_fixture.h"
#include "ws_hub.h"

#include <pthread.h>

/* A fake connection: the frames written to it, and the close it got. */
typedef struct fake_conn {
    pthread_mutex_t mu;
    char *frames[4096];
    int n;
    int fail_writes; /* 1: every write fails */
    int close_code;
} fake_conn;

static int fake_write(void *conn, const char *msg, size_t len)
{
    fake_conn *f = conn;
    pthread_mutex_lock(&f->mu);
    int rc = -1;
    if (!f->fail_writes && f->n < 4096) {
        f->frames[f->n++] = strndup(msg, len);
        rc = 0;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void fake_close(void *conn, int code, const char *reason)
{
    (void)reason;
    fake_conn *f = conn;
    pthread_mutex_lock(&f->mu);
    f->close_code = code;
    pthread_mutex_unlock(&f->mu);
}

static void fake_init(fake_conn *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
}

static void fake_free(fake_conn *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->frames[i]);
    pthread_mutex_destroy(&f->mu);
}

static int frames(fake_conn *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->n;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* Waits up to 3 s for n frames. */
static void wait_frames(fake_conn *f, int n)
{
    for (int i = 0; i < 300 && frames(f) < n; i++)
        rf_sleep_ms(10);
    assert_int_equal(frames(f), n);
}

static of_ws_hub *hub_new(const of_redis_config *redis, int max_clients)
{
    of_ws_hub *h = of_ws_hub_new(redis, NULL, max_clients, fake_write, fake_close);
    assert_non_null(h);
    char err[256];
    assert_int_equal(of_ws_hub_start(h, err, sizeof(err)), 0);
    return h;
}

static of_ws_client *client(of_ws_hub *h, const char *pipeline, const char *channel)
{
    int full = 0;
    of_ws_client *c = of_ws_client_new(h, pipeline, &full);
    assert_non_null(c);
    assert_int_equal(of_ws_client_subscribe(c, channel), 0);
    return c;
}

static void pub(of_ws_hub *h, const char *pipeline, const char *channel, const char *msg)
{
    assert_int_equal(of_ws_hub_publish(h, pipeline, channel, msg, strlen(msg)), 0);
}

static void test_matching_and_backlog(void **state)
{
    (void)state;
    of_ws_hub *h = hub_new(NULL, 8);
    fake_conn fa, fb;
    fake_init(&fa);
    fake_init(&fb);
    of_ws_client *a = client(h, "shop", "order:1");
    assert_int_equal(of_ws_client_subscribe(a, "order:1"), 0); /* repeated: once */
    assert_int_equal(of_ws_client_channels(a), 1);
    of_ws_client *b = client(h, "shop", "customer:c1");
    assert_int_equal(of_ws_client_subscribe(b, "order:1"), 0);
    assert_int_equal(of_ws_client_send_first(a, "snapshot", 8), 0);
    /* Before the clients are open: kept, in order, after the snapshot. */
    pub(h, "shop", "order:1", "one");
    pub(h, "shop", "order:2", "not theirs");
    pub(h, "elsewhere", "order:1", "another pipeline");
    pub(h, "shop", "customer:c1", "two");
    rf_sleep_ms(100);
    assert_int_equal(frames(&fa), 0);
    assert_int_equal(of_ws_client_open(a, &fa), 0);
    assert_int_equal(of_ws_client_open(b, &fb), 0);
    assert_int_equal(frames(&fa), 2);
    assert_string_equal(fa.frames[0], "snapshot");
    assert_string_equal(fa.frames[1], "one");
    assert_int_equal(frames(&fb), 2);
    assert_string_equal(fb.frames[0], "one");
    assert_string_equal(fb.frames[1], "two");
    /* Open: live. */
    pub(h, "shop", "order:1", "three");
    wait_frames(&fa, 3);
    wait_frames(&fb, 3);
    assert_string_equal(fa.frames[2], "three");
    /* A snapshot after the open is refused. */
    assert_int_equal(of_ws_client_send_first(a, "late", 4), -1);
    of_ws_stats s;
    of_ws_hub_stats(h, &s);
    assert_int_equal(s.clients, 2);
    assert_int_equal(s.published, 5);
    assert_int_equal(s.sent, 5); /* backlog and live; a snapshot is not "sent" from the queue */
    of_ws_client_close(a);
    of_ws_client_close(b);
    of_ws_hub_stats(h, &s);
    assert_int_equal(s.clients, 0);
    of_ws_hub_free(h);
    fake_free(&fa);
    fake_free(&fb);
}

static void test_backlog_bound(void **state)
{
    (void)state;
    of_ws_hub *h = hub_new(NULL, 8);
    fake_conn f;
    fake_init(&f);
    of_ws_client *c = client(h, "p", "c");
    for (int i = 0; i < OF_WS_BACKLOG_MAX + 10; i++)
        pub(h, "p", "c", "x");
    of_ws_stats s;
    for (int i = 0; i < 300; i++) {
        of_ws_hub_stats(h, &s);
        if (s.dropped)
            break;
        rf_sleep_ms(10);
    }
    assert_true(s.dropped >= 1);
    /* A client that fell that far behind before it opened is not opened at all. */
    assert_int_equal(of_ws_client_open(c, &f), -1);
    assert_int_equal(frames(&f), 0);
    of_ws_client_close(c);
    of_ws_hub_free(h);
    fake_free(&f);
}

static void test_failed_write_closes(void **state)
{
    (void)state;
    of_ws_hub *h = hub_new(NULL, 8);
    fake_conn bad, good;
    fake_init(&bad);
    fake_init(&good);
    of_ws_client *cb = client(h, "p", "c");
    of_ws_client *cg = client(h, "p", "c");
    assert_int_equal(of_ws_client_open(cb, &bad), 0);
    assert_int_equal(of_ws_client_open(cg, &good), 0);
    bad.fail_writes = 1;
    pub(h, "p", "c", "1");
    pub(h, "p", "c", "2");
    wait_frames(&good, 2);
    pthread_mutex_lock(&bad.mu);
    assert_int_equal(bad.close_code, 1008);
    pthread_mutex_unlock(&bad.mu);
    bad.fail_writes = 0;
    pub(h, "p", "c", "3");
    wait_frames(&good, 3);
    assert_int_equal(frames(&bad), 0); /* skipped for good */
    of_ws_client_close(cb);
    of_ws_client_close(cg);
    of_ws_hub_free(h);
    fake_free(&bad);
    fake_free(&good);
}

static void test_limits_and_bad_input(void **state)
{
    (void)state;
    of_ws_hub *h = hub_new(NULL, 2);
    int full = 0;
    of_ws_client *a = of_ws_client_new(h, "p", &full);
    of_ws_client *b = of_ws_client_new(h, "p", &full);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(of_ws_client_new(h, "p", &full));
    assert_int_equal(full, 1);
    char ch[16];
    for (int i = 0; i < OF_WS_MAX_CHANNELS; i++) {
        snprintf(ch, sizeof(ch), "c%d", i);
        assert_int_equal(of_ws_client_subscribe(a, ch), 0);
    }
    assert_int_equal(of_ws_client_subscribe(a, "one-too-many"), -1);
    char long_name[OF_WS_CHANNEL_MAX + 2];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    const char *bad[] = {"", "with space", "new\nline", "semi;colon", "é", long_name, NULL};
    for (int i = 0; bad[i]; i++) {
        assert_false(of_ws_channel_valid(bad[i]));
        assert_int_equal(of_ws_client_subscribe(b, bad[i]), -1);
        assert_int_equal(of_ws_hub_publish(h, "p", bad[i], "x", 1), -1);
    }
    long_name[OF_WS_CHANNEL_MAX] = '\0';
    assert_true(of_ws_channel_valid(long_name));
    assert_true(of_ws_channel_valid("order:0b7c-1.x_y@z"));
    char *big = calloc(1, OF_WS_MAX_MESSAGE + 1);
    assert_int_equal(of_ws_hub_publish(h, "p", "c", big, OF_WS_MAX_MESSAGE + 1), -1);
    assert_int_equal(of_ws_hub_publish(h, "p", "c", big, OF_WS_MAX_MESSAGE), 0);
    assert_int_equal(of_ws_client_send_first(b, big, OF_WS_MAX_MESSAGE), 0);
    assert_int_equal(of_ws_client_send_first(b, "x", 1), -1); /* the snapshot's bound */
    free(big);
    of_ws_client_close(a);
    of_ws_client_close(b);
    of_ws_hub_stop(h);
    assert_int_equal(of_ws_hub_publish(h, "p", "c", "x", 1), -1);
    assert_null(of_ws_client_new(h, "p", &full));
    of_ws_hub_free(h);
}

static int fanout_up(of_ws_hub *h)
{
    of_ws_stats s;
    of_ws_hub_stats(h, &s);
    return s.fanout_up;
}

static void wait_fanout(of_ws_hub *h, int up)
{
    for (int i = 0; i < 500 && fanout_up(h) != up; i++)
        rf_sleep_ms(10);
    assert_int_equal(fanout_up(h), up);
}

static void test_fanout_between_hosts(void **state)
{
    (void)state;
    rf_private srv = {0};
    assert_int_equal(rf_private_start(&srv), 0);
    char prefix[96];
    rf_unique_prefix(prefix, sizeof(prefix), "ws");
    of_redis_config cfg;
    rf_config(&cfg, "127.0.0.1", srv.port, prefix);
    of_ws_hub *h1 = hub_new(&cfg, 8), *h2 = hub_new(&cfg, 8);
    /* A host of another deployment (another key prefix) hears nothing of these. */
    of_redis_config other;
    rf_config(&other, "127.0.0.1", srv.port, "someone-else:");
    of_ws_hub *h3 = hub_new(&other, 8);
    fake_conn f1, f2, f3;
    fake_init(&f1);
    fake_init(&f2);
    fake_init(&f3);
    of_ws_client *c1 = client(h1, "shop", "order:9");
    of_ws_client *c2 = client(h2, "shop", "order:9");
    of_ws_client *c3 = client(h3, "shop", "order:9");
    /* A client is returned once its host is subscribed: no wait here. */
    assert_int_equal(fanout_up(h1), 1);
    assert_int_equal(fanout_up(h2), 1);
    assert_int_equal(fanout_up(h3), 1);
    assert_int_equal(of_ws_client_open(c1, &f1), 0);
    assert_int_equal(of_ws_client_open(c2, &f2), 0);
    assert_int_equal(of_ws_client_open(c3, &f3), 0);

    pub(h1, "shop", "order:9", "from host 1");
    pub(h2, "shop", "order:9", "from host 2");
    pub(h2, "shop", "order:10", "nobody's");
    wait_frames(&f1, 2);
    wait_frames(&f2, 2);
    rf_sleep_ms(200); /* an echo of a host's own message would arrive by now */
    assert_int_equal(frames(&f1), 2);
    assert_int_equal(frames(&f2), 2);
    assert_int_equal(frames(&f3), 0);
    /* Each host has both, once each (which comes first depends on the hosts' threads). */
    for (int i = 0; i < 2; i++) {
        fake_conn *f = i ? &f2 : &f1;
        int one = !strcmp(f->frames[0], "from host 1") + !strcmp(f->frames[1], "from host 1");
        int two = !strcmp(f->frames[0], "from host 2") + !strcmp(f->frames[1], "from host 2");
        assert_int_equal(one, 1);
        assert_int_equal(two, 1);
    }
    of_ws_stats s;
    of_ws_hub_stats(h1, &s);
    assert_int_equal(s.remote, 2); /* order:9 and order:10 from host 2 */

    /* Redis goes away: each host still serves its own connections; when Redis is back, the
     * subscriber comes back by itself and the fan-out resumes. */
    rf_private_stop(&srv);
    wait_fanout(h1, 0);
    pub(h1, "shop", "order:9", "local only");
    wait_frames(&f1, 3);
    assert_int_equal(rf_private_start(&srv), 0);
    wait_fanout(h1, 1);
    wait_fanout(h2, 1);
    /* The publisher's connection reconnects on its own pace (once a second at most). */
    int before = frames(&f1);
    for (int i = 0; i < 50 && frames(&f1) == before; i++) {
        pub(h2, "shop", "order:9", "after the restart");
        rf_sleep_ms(100);
    }
    assert_true(frames(&f1) > before);
    assert_string_equal(f1.frames[before], "after the restart");
    of_ws_hub_stats(h1, &s);
    assert_true(s.redis_down >= 1);

    of_ws_client_close(c1);
    of_ws_client_close(c2);
    of_ws_client_close(c3);
    of_ws_hub_free(h1);
    of_ws_hub_free(h2);
    of_ws_hub_free(h3);
    fake_free(&f1);
    fake_free(&f2);
    fake_free(&f3);
    of_redis_config_free(&cfg);
    of_redis_config_free(&other);
    rf_private_stop(&srv);
}

/* Subscribers of the fan-out's channel, as Redis counts them. */
static long long numsub(int port, const char *channel)
{
    redisContext *rc = rf_connect_to("127.0.0.1", port, NULL);
    assert_non_null(rc);
    redisReply *r = redisCommand(rc, "PUBSUB NUMSUB %s", channel);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    long long n = r->element[1]->integer;
    freeReplyObject(r);
    redisFree(rc);
    return n;
}

static void test_fanout_only_while_listened(void **state)
{
    (void)state;
    rf_private srv = {0};
    assert_int_equal(rf_private_start(&srv), 0);
    char prefix[96], channel[128];
    rf_unique_prefix(prefix, sizeof(prefix), "wsl");
    snprintf(channel, sizeof(channel), "%sws", prefix);
    of_redis_config cfg;
    rf_config(&cfg, "127.0.0.1", srv.port, prefix);
    of_ws_hub *h1 = hub_new(&cfg, 8), *h2 = hub_new(&cfg, 8);
    of_ws_hub_set_linger(h2, 300);

    /* Nobody listens: no host subscribes, and what h1 publishes meanwhile is for nobody. */
    rf_sleep_ms(300);
    assert_int_equal(fanout_up(h1), 0);
    assert_int_equal(fanout_up(h2), 0);
    assert_int_equal(numsub(srv.port, channel), 0);
    pub(h1, "shop", "order:1", "before anyone listened");

    /* A client on h2: subscribed when of_ws_client_new returns, so h1's very next message
     * reaches it. */
    fake_conn f;
    fake_init(&f);
    of_ws_client *c = client(h2, "shop", "order:1");
    assert_int_equal(fanout_up(h2), 1);
    assert_int_equal(numsub(srv.port, channel), 1);
    assert_int_equal(of_ws_client_open(c, &f), 0);
    pub(h1, "shop", "order:1", "first");

    /* Messages of every size and byte (but NUL), several at once: larger together than the
     * publisher's buffer of one round trip (1 MiB), so they go out in pieces. */
    enum { BIG = 6, BIG_LEN = 250 * 1024 };
    char *big[BIG];
    for (int i = 0; i < BIG; i++) {
        assert_non_null(big[i] = malloc(BIG_LEN + 1));
        for (size_t j = 0; j < BIG_LEN; j++)
            big[i][j] = (char)(1 + (j * 7 + (size_t)i) % 255);
        big[i][BIG_LEN] = '\0';
    }
    for (int i = 0; i < BIG; i++)
        pub(h1, "shop", "order:1", big[i]);
    pub(h1, "shop", "order:1", "line\r\nbreaks\n$3\r\n*1\r\n");
    pub(h1, "shop", "order:1", "");
    /* h1's writer sends "before anyone listened" on its own time: it reaches h2 when Redis got it
     * after h2 subscribed, which is right either way. */
    for (int i = 0; i < 300 && frames(&f) < 3 + BIG; i++)
        rf_sleep_ms(10);
    int skip = frames(&f) > 0 && strcmp(f.frames[0], "before anyone listened") == 0;
    wait_frames(&f, skip + 3 + BIG);
    assert_string_equal(f.frames[skip], "first");
    for (int i = 0; i < BIG; i++)
        assert_memory_equal(f.frames[skip + 1 + i], big[i], BIG_LEN + 1);
    assert_string_equal(f.frames[skip + 1 + BIG], "line\r\nbreaks\n$3\r\n*1\r\n");
    assert_string_equal(f.frames[skip + 2 + BIG], "");
    for (int i = 0; i < BIG; i++)
        free(big[i]);

    /* The last client gone: h2 unsubscribes after its linger (h1 never subscribed). */
    of_ws_client_close(c);
    wait_fanout(h2, 0);
    assert_int_equal(numsub(srv.port, channel), 0);
    assert_int_equal(fanout_up(h1), 0);

    /* A client again: subscribed again before it is returned. */
    fake_conn g;
    fake_init(&g);
    c = client(h2, "shop", "order:1");
    assert_int_equal(fanout_up(h2), 1);
    assert_int_equal(of_ws_client_open(c, &g), 0);
    pub(h1, "shop", "order:1", "again");
    wait_frames(&g, 1);
    assert_string_equal(g.frames[0], "again");
    of_ws_client_close(c);

    of_ws_hub_free(h1);
    of_ws_hub_free(h2);
    fake_free(&f);
    fake_free(&g);
    of_redis_config_free(&cfg);
    rf_private_stop(&srv);
}

static void test_no_redis_is_local(void **state)
{
    (void)state;
    of_redis_config cfg;
    rf_config(&cfg, "127.0.0.1", 1, "oftest:"); /* nothing listens on port 1 */
    of_ws_hub *h = hub_new(&cfg, 8);
    fake_conn f;
    fake_init(&f);
    of_ws_client *c = client(h, "p", "c");
    assert_int_equal(of_ws_client_open(c, &f), 0);
    pub(h, "p", "c", "still delivered");
    wait_frames(&f, 1);
    assert_int_equal(fanout_up(h), 0);
    of_ws_client_close(c);
    of_ws_hub_free(h);
    fake_free(&f);
    of_redis_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matching_and_backlog),
        cmocka_unit_test(test_backlog_bound),
        cmocka_unit_test(test_failed_write_closes),
        cmocka_unit_test(test_limits_and_bad_input),
        cmocka_unit_test(test_fanout_between_hosts),
        cmocka_unit_test(test_fanout_only_while_listened),
        cmocka_unit_test(test_no_redis_is_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
