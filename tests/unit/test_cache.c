/* The `redis:` configuration, the Redis pool and the cache operations behind the host table's
 * cache_* functions, against a real Redis (redis_fixture.h): values, expiry, atomic counters,
 * publish, binary values, key prefixes, failing fast while Redis is unreachable and recovering
 * when it comes back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache.h"
#include "redis_fixture.h"
#include "stage_runtime.h"
#include "timeutil.h"
#include "yamltree.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct fixture {
    of_redis_config cfg;
    of_cache_pool *pool;
    char prefix[128];
    redisContext *direct; /* a connection of the test's own, for checking */
} fixture;

static int group_setup(void **state)
{
    (void)state;
    return rf_ensure_shared();
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    rf_unique_prefix(f->prefix, sizeof(f->prefix), "cache");
    rf_config(&f->cfg, rf_host(), rf_port(), f->prefix);
    f->pool = of_cache_pool_new(&f->cfg, NULL);
    f->direct = rf_connect();
    if (!f->pool || !f->direct)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    if (f->direct) {
        /* remove what the test left */
        redisReply *r = redisCommand(f->direct, "KEYS %s*", f->prefix);
        for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
            redisReply *d =
                redisCommand(f->direct, "DEL %b", r->element[i]->str, (size_t)r->element[i]->len);
            if (d)
                freeReplyObject(d);
        }
        if (r)
            freeReplyObject(r);
        redisFree(f->direct);
    }
    of_cache_pool_free(f->pool);
    of_redis_config_free(&f->cfg);
    free(f);
    return 0;
}

/* The reply of a command on the test's own connection, as a string ("" for nil). */
static redisReply *direct(fixture *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(f->direct, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static long long direct_pttl(fixture *f, const char *key)
{
    redisReply *r = direct(f, "PTTL %s%s", f->prefix, key);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* ---- configuration ---------------------------------------------------------------------- */

static of_diag d;

static of_ydoc *parse_yaml(const char *text)
{
    of_ydoc *doc = of_ydoc_load_buffer("orderflow.yaml", text, strlen(text), &d);
    assert_non_null(doc);
    assert_int_equal(d.errors, 0);
    return doc;
}

static void dump(void)
{
    for (size_t i = 0; i < d.count; i++)
        fprintf(stderr, "  diag %d:%d %s\n", d.entries[i].line, d.entries[i].column,
                d.entries[i].message);
}

static void expect_diag(const char *needle, int line, int column)
{
    for (size_t i = 0; i < d.count; i++) {
        if (strstr(d.entries[i].message, needle)) {
            if (d.entries[i].line != line || d.entries[i].column != column)
                fail_msg("'%s' at %d:%d, expected %d:%d", d.entries[i].message, d.entries[i].line,
                         d.entries[i].column, line, column);
            return;
        }
    }
    dump();
    fail_msg("no diagnostic containing '%s'", needle);
}

static void no_diag_contains(const char *needle)
{
    for (size_t i = 0; i < d.count; i++)
        if (strstr(d.entries[i].message, needle))
            fail_msg("diagnostic shows '%s': %s", needle, d.entries[i].message);
}

static void test_config_defaults(void **state)
{
    (void)state;
    of_diag_init(&d);
    of_redis_config c;
    of_redis_config_parse(&c, NULL, "x.yaml", &d);
    assert_int_equal(d.errors, 0);
    assert_int_equal(c.enabled, 0);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 6379);
    assert_null(c.password);
    assert_int_equal(c.db, 0);
    assert_int_equal(c.pool_size, 4);
    assert_int_equal(c.connect_timeout_ms, 200);
    assert_int_equal(c.command_timeout_ms, 200);
    assert_string_equal(c.key_prefix, "orderflow:");
    of_redis_config_free(&c);

    /* `redis:` alone: Redis with every default */
    of_ydoc *doc = parse_yaml("redis:\n");
    of_redis_config_parse(&c, of_ymap_get(doc->root, "redis"), "orderflow.yaml", &d);
    assert_int_equal(d.errors, 0);
    assert_int_equal(c.enabled, 1);
    assert_int_equal(c.port, 6379);
    of_redis_config_free(&c);
    of_ydoc_free(doc);
    of_diag_free(&d);
}

static void test_config_values(void **state)
{
    (void)state;
    of_diag_init(&d);
    setenv("OF_TEST_REDIS_PW", "s3cr3t-from-env", 1);
    of_ydoc *doc = parse_yaml("redis:\n"
                              "  host: cache.internal\n"
                              "  port: 16380\n"
                              "  password: ${OF_TEST_REDIS_PW}\n"
                              "  db: 15\n"
                              "  pool_size: 128\n"
                              "  connect_timeout: 1.5s\n"
                              "  command_timeout: 50ms\n"
                              "  key_prefix: ''\n");
    of_redis_config c;
    of_redis_config_parse(&c, of_ymap_get(doc->root, "redis"), "orderflow.yaml", &d);
    if (d.errors)
        dump();
    assert_int_equal(d.errors, 0);
    assert_int_equal(c.enabled, 1);
    assert_string_equal(c.host, "cache.internal");
    assert_int_equal(c.port, 16380);
    assert_string_equal(c.password, "s3cr3t-from-env");
    assert_int_equal(c.db, 15);
    assert_int_equal(c.pool_size, 128);
    assert_int_equal(c.connect_timeout_ms, 1500);
    assert_int_equal(c.command_timeout_ms, 50);
    assert_string_equal(c.key_prefix, "");
    of_redis_config_free(&c);
    of_ydoc_free(doc);
    unsetenv("OF_TEST_REDIS_PW");
    of_diag_free(&d);
}

static void test_config_errors(void **state)
{
    (void)state;
    of_diag_init(&d);
    of_ydoc *doc = parse_yaml("redis:\n"
                              "  hots: x\n"
                              "  port: 70000\n"
                              "  password: [hunter2-in-a-list]\n"
                              "  db: 16\n"
                              "  pool_size: 0\n"
                              "  connect_timeout: 200\n"
                              "  command_timeout: 2m\n"
                              "  key_prefix: 'has space'\n");
    of_redis_config c;
    of_redis_config_parse(&c, of_ymap_get(doc->root, "redis"), "orderflow.yaml", &d);
    expect_diag("unknown key 'hots'", 2, 3);
    expect_diag("did you mean 'host'", 2, 3);
    expect_diag("redis 'port' must be 1..65535", 3, 9);
    expect_diag("redis 'password' must be a string; got a sequence", 4, 13);
    expect_diag("redis 'db' must be 0..15", 5, 7);
    expect_diag("redis 'pool_size' must be 1..128", 6, 14);
    expect_diag("redis 'connect_timeout'", 7, 20);
    expect_diag("redis 'command_timeout' must be between 1ms and 60s", 8, 20);
    expect_diag("redis 'key_prefix' must not contain spaces", 9, 15);
    assert_int_equal(d.errors, 8);
    no_diag_contains("hunter2");
    /* the values that were wrong keep their defaults */
    assert_int_equal(c.port, 6379);
    assert_int_equal(c.db, 0);
    assert_int_equal(c.pool_size, 4);
    of_redis_config_free(&c);
    of_ydoc_free(doc);
    of_diag_free(&d);

    /* a password of the wrong kind of scalar is never shown; nor is a mapping's content */
    of_diag_init(&d);
    doc = parse_yaml("redis:\n  password: ''\n  port: '6x'\n");
    of_redis_config_parse(&c, of_ymap_get(doc->root, "redis"), "orderflow.yaml", &d);
    expect_diag("redis 'password' is empty", 2, 13);
    expect_diag("redis 'port'", 3, 9);
    assert_int_equal(d.errors, 2);
    of_redis_config_free(&c);
    of_ydoc_free(doc);
    of_diag_free(&d);

    of_diag_init(&d);
    doc = parse_yaml("redis: [a]\n");
    of_redis_config_parse(&c, of_ymap_get(doc->root, "redis"), "orderflow.yaml", &d);
    expect_diag("'redis' must be a mapping", 1, 8);
    of_redis_config_free(&c);
    of_ydoc_free(doc);
    of_diag_free(&d);
}

/* ---- cache operations ------------------------------------------------------------------- */

static void test_get_set_del(void **state)
{
    fixture *f = *state;
    char *v = (char *)1;
    size_t len = 99;
    assert_int_equal(of_cache_get(f->pool, "absent", &v, &len), 0);
    assert_null(v);
    assert_int_equal(len, 0);

    assert_int_equal(of_cache_set(f->pool, "k", "hello", 5, 0), 0);
    assert_int_equal(of_cache_get(f->pool, "k", &v, &len), 1);
    assert_int_equal(len, 5);
    assert_string_equal(v, "hello"); /* NUL-terminated */
    free(v);
    assert_int_equal(direct_pttl(f, "k"), -1); /* ttl 0: no expiry */

    /* overwrite, and an empty value */
    assert_int_equal(of_cache_set(f->pool, "k", "", 0, 0), 0);
    assert_int_equal(of_cache_get(f->pool, "k", &v, &len), 1);
    assert_int_equal(len, 0);
    assert_string_equal(v, "");
    free(v);

    assert_int_equal(of_cache_del(f->pool, "k"), 0);
    assert_int_equal(of_cache_get(f->pool, "k", &v, NULL), 0);
    assert_int_equal(of_cache_del(f->pool, "k"), 0); /* deleting nothing is fine */

    /* bad arguments */
    assert_int_equal(of_cache_set(f->pool, NULL, "x", 1, 0), -1);
    assert_int_equal(of_cache_set(f->pool, "k", NULL, 3, 0), -1);
    assert_int_equal(of_cache_set(f->pool, "k", "x", 1, -5), -1);
    assert_int_equal(of_cache_get(f->pool, "k", NULL, NULL), -1);
    assert_int_equal(of_cache_pool_is_down(f->pool), 0);
    assert_int_equal(of_cache_ping(f->pool), 0);
}

static void test_ttl_expiry(void **state)
{
    fixture *f = *state;
    assert_int_equal(of_cache_set(f->pool, "short", "v", 1, 300), 0);
    long long pttl = direct_pttl(f, "short");
    assert_true(pttl > 0 && pttl <= 300);
    /* a long ttl is set as given */
    assert_int_equal(of_cache_set(f->pool, "long", "v", 1, 600000), 0);
    pttl = direct_pttl(f, "long");
    assert_true(pttl > 590000 && pttl <= 600000);

    int64_t start = of_mono_ms();
    char *v = NULL;
    int rc;
    while ((rc = of_cache_get(f->pool, "short", &v, NULL)) == 1 && of_mono_ms() - start < 5000) {
        free(v);
        v = NULL;
        rf_sleep_ms(20);
    }
    assert_int_equal(rc, 0); /* gone after its ttl */
    assert_true(of_mono_ms() - start >= 200);
    assert_int_equal(of_cache_get(f->pool, "long", &v, NULL), 1);
    free(v);
}

static void test_binary_values(void **state)
{
    fixture *f = *state;
    const char val[] = {'a', '\0', 'b', '\0', (char)0xff, '\n', '%', 's'};
    assert_int_equal(of_cache_set(f->pool, "bin", val, sizeof(val), 0), 0);
    char *v = NULL;
    size_t len = 0;
    assert_int_equal(of_cache_get(f->pool, "bin", &v, &len), 1);
    assert_int_equal(len, sizeof(val));
    assert_memory_equal(v, val, sizeof(val));
    assert_int_equal(v[len], '\0');
    free(v);
    /* keys with format characters and spaces are taken as they are */
    assert_int_equal(of_cache_set(f->pool, "a key %s %b", "x", 1, 0), 0);
    redisReply *r = direct(f, "GET %s%s", f->prefix, "a key %s %b");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "x");
    freeReplyObject(r);
}

static void test_key_prefix(void **state)
{
    fixture *f = *state;
    assert_string_equal(of_cache_pool_prefix(f->pool), f->prefix);
    char pk[200]; /* a key nobody else uses, even without the prefix */
    snprintf(pk, sizeof(pk), "pk:%s", f->prefix);
    assert_int_equal(of_cache_set(f->pool, pk, "prefixed", 8, 0), 0);
    redisReply *r = direct(f, "GET %s%s", f->prefix, pk);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "prefixed");
    freeReplyObject(r);
    /* the bare key is not touched */
    r = direct(f, "EXISTS %s", pk);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    /* reads are prefixed as well: what was written under the prefix is seen, a bare key not */
    r = direct(f, "SET %sfrom:outside x", f->prefix);
    freeReplyObject(r);
    char *v = NULL;
    assert_int_equal(of_cache_get(f->pool, "from:outside", &v, NULL), 1);
    assert_string_equal(v, "x");
    free(v);
    char bare[200];
    snprintf(bare, sizeof(bare), "%sunprefixed", f->prefix);
    r = direct(f, "SET %s x", bare);
    freeReplyObject(r);
    assert_int_equal(of_cache_get(f->pool, bare, &v, NULL), 0); /* reads <prefix><prefix>... */

    /* a key longer than the stack buffer */
    char big[1000];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(of_cache_set(f->pool, big, "y", 1, 0), 0);
    assert_int_equal(of_cache_get(f->pool, big, &v, NULL), 1);
    assert_string_equal(v, "y");
    free(v);
}

typedef struct incr_arg {
    of_cache_pool *pool;
    int n;
    int failures;
    int64_t max_seen;
} incr_arg;

static void *incr_thread(void *p)
{
    incr_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        int64_t v = 0;
        if (of_cache_incr(a->pool, "counter", 1, 60000, &v) != 0)
            a->failures++;
        else if (v > a->max_seen)
            a->max_seen = v;
    }
    return NULL;
}

static void test_incr_atomic(void **state)
{
    fixture *f = *state;
    enum { THREADS = 8, EACH = 250 };
    pthread_t t[THREADS];
    incr_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (incr_arg){.pool = f->pool, .n = EACH};
        assert_int_equal(pthread_create(&t[i], NULL, incr_thread, &a[i]), 0);
    }
    int64_t max_seen = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].failures, 0);
        if (a[i].max_seen > max_seen)
            max_seen = a[i].max_seen;
    }
    assert_int_equal(max_seen, THREADS * EACH);
    redisReply *r = direct(f, "GET %scounter", f->prefix);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(atoll(r->str), THREADS * EACH);
    freeReplyObject(r);
    /* the ttl was set when the key was created, and later increments did not extend it */
    long long pttl = direct_pttl(f, "counter");
    assert_true(pttl > 0 && pttl <= 60000);
    int64_t v = 0;
    assert_int_equal(of_cache_incr(f->pool, "counter", -5, 600000, &v), 0);
    assert_int_equal(v, THREADS * EACH - 5);
    assert_true(direct_pttl(f, "counter") <= 60000);

    /* without a ttl: no expiry */
    assert_int_equal(of_cache_incr(f->pool, "forever", 7, 0, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(direct_pttl(f, "forever"), -1);

    /* a new key gets the ttl it is created with */
    assert_int_equal(of_cache_incr(f->pool, "window", 1, 100000, &v), 0);
    assert_int_equal(v, 1);
    assert_true(direct_pttl(f, "window") > 90000);
}

static void test_incr_not_integer(void **state)
{
    fixture *f = *state;
    assert_int_equal(of_cache_set(f->pool, "text", "abc", 3, 0), 0);
    of_cache_stats before, after;
    of_cache_pool_stats(f->pool, &before);
    int64_t v = 42;
    assert_int_equal(of_cache_incr(f->pool, "text", 1, 0, &v), -1);
    assert_int_equal(v, 42);
    of_cache_pool_stats(f->pool, &after);
    assert_int_equal(after.errors, before.errors + 1);
    /* an error reply is the call's failure, not Redis's: the pool stays up */
    assert_int_equal(after.down, 0);
    assert_int_equal(of_cache_ping(f->pool), 0);
    /* a wrong type for GET as well */
    redisReply *r = direct(f, "RPUSH %slist a", f->prefix);
    freeReplyObject(r);
    char *s = NULL;
    assert_int_equal(of_cache_get(f->pool, "list", &s, NULL), -1);
    assert_null(s);
}

static void test_publish(void **state)
{
    fixture *f = *state;
    redisContext *sub = rf_connect();
    assert_non_null(sub);
    char channel[200];
    snprintf(channel, sizeof(channel), "%sorders", f->prefix);
    redisReply *r = redisCommand(sub, "SUBSCRIBE %s", channel);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);

    const char msg[] = {'{', '}', '\0', 'x'};
    assert_int_equal(of_cache_publish(f->pool, "orders", msg, sizeof(msg)), 0);
    void *reply = NULL;
    assert_int_equal(redisGetReply(sub, &reply), REDIS_OK);
    r = reply;
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[0]->str, "message");
    assert_string_equal(r->element[1]->str, channel); /* the prefixed channel */
    assert_int_equal(r->element[2]->len, sizeof(msg));
    assert_memory_equal(r->element[2]->str, msg, sizeof(msg));
    freeReplyObject(r);
    redisFree(sub);

    /* nobody listening is still a success */
    assert_int_equal(of_cache_publish(f->pool, "nobody", "x", 1), 0);
    assert_int_equal(of_cache_publish(f->pool, NULL, "x", 1), -1);
}

static void test_stage_functions(void **state)
{
    fixture *f = *state;
    of_stage st;
    memset(&st, 0, sizeof(st));
    char *v = (char *)1;
    size_t len = 7;
    int64_t n = 0;
    /* no pool: everything fails at once */
    assert_int_equal(of_api_cache_get(&st, "k", &v, &len), -1);
    assert_null(v);
    assert_int_equal(len, 0);
    assert_int_equal(of_api_cache_set(&st, "k", "v", 1, 0), -1);
    assert_int_equal(of_api_cache_del(&st, "k"), -1);
    assert_int_equal(of_api_cache_incr(&st, "k", 1, 0, &n), -1);
    assert_int_equal(of_api_cache_publish(&st, "c", "m", 1), -1);
    assert_int_equal(of_api_cache_get(NULL, "k", &v, &len), -1);

    st.cache = f->pool;
    assert_int_equal(of_api_cache_set(&st, "sk", "value", 5, 10000), 0);
    assert_int_equal(of_api_cache_get(&st, "sk", &v, &len), 1);
    assert_string_equal(v, "value");
    assert_int_equal(len, 5);
    free(v); /* api->free is free */
    assert_int_equal(of_api_cache_incr(&st, "sn", 3, 0, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(of_api_cache_publish(&st, "c", "m", 1), 0);
    assert_int_equal(of_api_cache_del(&st, "sk"), 0);
    assert_int_equal(of_api_cache_get(&st, "sk", &v, &len), 0);
}

/* Several SETs in one round trip, with and without an expiry, binary values and a long key; an
 * error reply in a pipeline is that command's alone; Redis away fails them all. */
static void test_set_many(void **state)
{
    fixture *f = *state;
    char big[3000];
    memset(big, 'b', sizeof(big));
    of_cache_write w[] = {
        {.key = (char *)"m1", .value = (char *)"one", .len = 3, .ttl_ms = 0},
        {.key = (char *)"m2", .value = (char *)"t\0o", .len = 3, .ttl_ms = 60000},
        {.key = big, .value = (char *)"long key", .len = 8, .ttl_ms = 0},
    };
    big[sizeof(big) - 1] = '\0'; /* a key longer than the prefixing buffer */
    assert_int_equal(of_cache_set_many(f->pool, w, 3), 0);
    char *v = NULL;
    size_t len = 0;
    assert_int_equal(of_cache_get(f->pool, "m1", &v, &len), 1);
    assert_string_equal(v, "one");
    free(v);
    assert_int_equal(of_cache_get(f->pool, "m2", &v, &len), 1);
    assert_int_equal(len, 3);
    assert_memory_equal(v, "t\0o", 3);
    free(v);
    assert_int_equal(of_cache_get(f->pool, big, &v, &len), 1);
    assert_string_equal(v, "long key");
    free(v);
    assert_int_equal(direct_pttl(f, "m1"), -1);
    long long ttl = direct_pttl(f, "m2");
    assert_true(ttl > 50000 && ttl <= 60000);
    of_cache_write more[] = {
        {.key = (char *)"m3", .value = (char *)"x", .len = 1, .ttl_ms = 0},
        {.key = (char *)"m4", .value = (char *)"y", .len = 1, .ttl_ms = 0},
    };
    of_cache_cmd cmds[2];
    const char *a0[] = {"SET", "oftest-unused", "v", "PX", "-5"};
    size_t l0[] = {3, 13, 1, 2, 2};
    cmds[0] = (of_cache_cmd){5, a0, l0};
    const char *a1[] = {"PING"};
    size_t l1[] = {4};
    cmds[1] = (of_cache_cmd){1, a1, l1};
    struct redisReply *r[2];
    assert_int_equal(of_cache_pipeline(f->pool, cmds, 2, r), 0);
    assert_int_equal(r[0]->type, REDIS_REPLY_ERROR);
    assert_int_equal(r[1]->type, REDIS_REPLY_STATUS);
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    assert_int_equal(of_cache_set_many(f->pool, more, 2), 0);
    assert_int_equal(of_cache_set_many(f->pool, more, 0), 0);
    assert_int_equal(of_cache_set_many(NULL, more, 2), 2);
    of_redis_config cfg;
    rf_config(&cfg, "127.0.0.1", 1, "oftest:"); /* nothing listens on port 1 */
    of_cache_pool *away = of_cache_pool_new(&cfg, NULL);
    assert_non_null(away);
    assert_int_equal(of_cache_set_many(away, more, 2), 2);
    assert_int_equal(of_cache_pipeline(away, cmds, 2, r), -1);
    assert_null(r[0]);
    of_cache_pool_free(away);
    of_redis_config_free(&cfg);
}

/* cache_set_after_commit keeps copies with the call; of_call_cache_apply makes them, and a
 * reset drops them unmade. */
static void test_set_after_commit(void **state)
{
    fixture *f = *state;
    of_stage_def def = {.name = (char *)"s"};
    of_stage st;
    memset(&st, 0, sizeof(st));
    st.def = &def;
    st.pipeline_name = "p";
    of_call call;
    of_call_init(&call, &st, NULL, 1);
    /* no pool: refused */
    assert_int_equal(of_api_cache_set_after_commit(&call, "k", "v", 1, 0), -1);
    st.cache = f->pool;
    char key[600], value[20];
    memset(key, 'k', sizeof(key));
    key[OF_CACHE_KEY_MAX + 1] = '\0';
    assert_int_equal(of_api_cache_set_after_commit(&call, key, "v", 1, 0), -1); /* key too long */
    assert_int_equal(of_api_cache_set_after_commit(&call, "", "v", 1, 0), -1);
    assert_int_equal(of_api_cache_set_after_commit(&call, NULL, "v", 1, 0), -1);
    assert_int_equal(of_api_cache_set_after_commit(&call, "k", NULL, 1, 0), -1);
    assert_int_equal(of_api_cache_set_after_commit(&call, "k", "v", 1, -1), -1);
    assert_int_equal(of_api_cache_set_after_commit(NULL, "k", "v", 1, 0), -1);
    char *huge = calloc(1, OF_CALL_CACHE_VALUE_MAX + 1);
    assert_non_null(huge);
    assert_int_equal(
        of_api_cache_set_after_commit(&call, "k", huge, OF_CALL_CACHE_VALUE_MAX + 1, 0), -1);
    assert_int_equal(of_api_cache_set_after_commit(&call, "big", huge, OF_CALL_CACHE_VALUE_MAX, 0),
                     0);
    free(huge);
    for (int i = 1; i < OF_CALL_CACHE_WRITES_MAX; i++) {
        char k[16];
        snprintf(k, sizeof(k), "w%d", i);
        snprintf(value, sizeof(value), "v%d", i);
        assert_int_equal(of_api_cache_set_after_commit(&call, k, value, strlen(value), 60000), 0);
    }
    assert_int_equal(of_api_cache_set_after_commit(&call, "one-too-many", "v", 1, 0), -1);
    /* Kept, not written. */
    char *v = NULL;
    size_t len = 0;
    assert_int_equal(of_cache_get(f->pool, "w1", &v, &len), 0);
    of_call_cache_apply(&call, 1);
    assert_int_equal(of_cache_get(f->pool, "w1", &v, &len), 1);
    assert_string_equal(v, "v1");
    free(v);
    assert_int_equal(of_cache_get(f->pool, "w63", &v, &len), 1);
    assert_string_equal(v, "v63");
    free(v);
    assert_int_equal(of_cache_get(f->pool, "big", &v, &len), 1);
    assert_int_equal(len, OF_CALL_CACHE_VALUE_MAX);
    free(v);
    assert_true(direct_pttl(f, "w1") > 0);
    of_call_reset(&call);
    assert_int_equal(call.n_cache_writes, 0);
    /* Dropped by a reset: never written. */
    assert_int_equal(of_api_cache_set_after_commit(&call, "dropped", "v", 1, 0), 0);
    of_call_reset(&call);
    of_call_cache_apply(&call, 1);
    assert_int_equal(of_cache_get(f->pool, "dropped", &v, &len), 0);
    /* Two calls' writes in one round trip, in call order (the later write of a key wins). */
    of_call two[2];
    of_call_init(&two[0], &st, NULL, 1);
    of_call_init(&two[1], &st, NULL, 1);
    assert_int_equal(of_api_cache_set_after_commit(&two[0], "same", "first", 5, 0), 0);
    assert_int_equal(of_api_cache_set_after_commit(&two[1], "same", "second", 6, 0), 0);
    of_call_cache_apply(two, 2);
    assert_int_equal(of_cache_get(f->pool, "same", &v, &len), 1);
    assert_string_equal(v, "second");
    free(v);
    of_call_reset(&two[0]);
    of_call_reset(&two[1]);
}

/* ---- failing fast ----------------------------------------------------------------------- */

typedef struct hammer_arg {
    of_cache_pool *pool;
    int calls, failures;
} hammer_arg;

static void *hammer_thread(void *p)
{
    hammer_arg *a = p;
    for (int i = 0; i < a->calls; i++) {
        char *v = NULL;
        int64_t n;
        int rc = i % 4 == 0   ? of_cache_get(a->pool, "k", &v, NULL)
                 : i % 4 == 1 ? of_cache_set(a->pool, "k", "v", 1, 1000)
                 : i % 4 == 2 ? of_cache_incr(a->pool, "n", 1, 0, &n)
                              : of_cache_publish(a->pool, "c", "m", 1);
        if (rc == -1)
            a->failures++;
        free(v);
    }
    return NULL;
}

static void test_down_fails_fast(void **state)
{
    (void)state;
    of_metrics *m = of_metrics_new();
    of_redis_config cfg;
    rf_config(&cfg, "127.0.0.1", 1, "oftest:"); /* nothing listens on port 1 */
    cfg.pool_size = 4;
    of_cache_pool *p = of_cache_pool_new(&cfg, m);
    assert_non_null(p);
    assert_int_equal(of_cache_pool_is_down(p), 0); /* not tried yet */

    int64_t start = of_mono_ms();
    enum { THREADS = 4, EACH = 250 };
    pthread_t t[THREADS];
    hammer_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (hammer_arg){.pool = p, .calls = EACH};
        assert_int_equal(pthread_create(&t[i], NULL, hammer_thread, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].failures, EACH); /* every one of the 1000 calls: -1 */
    }
    int64_t elapsed = of_mono_ms() - start;
    of_cache_stats s;
    of_cache_pool_stats(p, &s);
    assert_int_equal(s.down, 1);
    assert_int_equal(of_cache_pool_is_down(p), 1);
    assert_int_equal(of_cache_ping(p), -1);
    /* at most one connect attempt per second, not one per call */
    assert_true(s.connect_attempts >= 1);
    assert_true(s.connect_attempts <= 1 + (uint64_t)(elapsed / OF_CACHE_RETRY_MS));
    assert_int_equal(s.connect_failures, s.connect_attempts);
    assert_true(s.unavailable >= THREADS * EACH);
    assert_int_equal(s.open, 0);

    /* it keeps trying, once per interval: call for a little over two intervals */
    while (of_mono_ms() - start < 2 * OF_CACHE_RETRY_MS + 300) {
        char *v = NULL;
        assert_int_equal(of_cache_get(p, "k", &v, NULL), -1);
        rf_sleep_ms(5);
    }
    elapsed = of_mono_ms() - start;
    of_cache_pool_stats(p, &s);
    assert_true(s.connect_attempts >= 2);
    assert_true(s.connect_attempts <= 1 + (uint64_t)(elapsed / OF_CACHE_RETRY_MS));
    assert_int_equal(s.down, 1);

    /* the failures are counted in the metrics */
    struct of_counter *c = of_metrics_find_counter(m, "redis_unavailable", NULL, NULL);
    assert_non_null(c);
    assert_true(of_counter_value(c) >= THREADS * EACH);
    c = of_metrics_find_counter(m, "redis_connect_failures", NULL, NULL);
    assert_non_null(c);
    assert_true(of_counter_value(c) >= 2);

    of_cache_pool_free(p);
    of_redis_config_free(&cfg);
    of_metrics_free(m);
}

static void test_recovery(void **state)
{
    (void)state;
    rf_private srv = {0};
    assert_int_equal(rf_private_start(&srv), 0);
    of_redis_config cfg;
    rf_config(&cfg, "127.0.0.1", srv.port, "oftest:recovery:");
    cfg.pool_size = 2;
    of_cache_pool *p = of_cache_pool_new(&cfg, NULL);
    assert_non_null(p);
    /* a write to a connection Redis closed must not end the process */
    struct sigaction sa;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_IGN);
    int64_t n = 0;
    assert_int_equal(of_cache_set(p, "k", "before", 6, 0), 0);
    assert_int_equal(of_cache_incr(p, "n", 1, 60000, &n), 0);
    assert_int_equal(n, 1);

    /* Redis goes away: the first call notices, then every call fails at once */
    rf_private_stop(&srv);
    char *v = NULL;
    assert_int_equal(of_cache_get(p, "k", &v, NULL), -1);
    assert_int_equal(of_cache_pool_is_down(p), 1);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(of_cache_set(p, "k", "x", 1, 0), -1);
    assert_int_equal(of_cache_ping(p), -1);

    /* it comes back (empty, without the script cache): calls succeed again within a few
     * retry intervals, and the counter script is loaded again (EVALSHA, then EVAL) */
    assert_int_equal(rf_private_start(&srv), 0);
    int64_t start = of_mono_ms();
    while (of_cache_ping(p) != 0 && of_mono_ms() - start < 5000)
        rf_sleep_ms(50);
    assert_int_equal(of_cache_ping(p), 0);
    assert_int_equal(of_cache_pool_is_down(p), 0);
    assert_int_equal(of_cache_set(p, "k", "after", 5, 0), 0);
    assert_int_equal(of_cache_get(p, "k", &v, NULL), 1);
    assert_string_equal(v, "after");
    free(v);
    assert_int_equal(of_cache_incr(p, "n", 1, 60000, &n), 0);
    assert_int_equal(n, 1); /* a new Redis: the counter started again */

    /* SCRIPT FLUSH: EVALSHA fails with NOSCRIPT, the pool falls back to EVAL */
    redisContext *c = rf_connect_to("127.0.0.1", srv.port, NULL);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "SCRIPT FLUSH");
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(of_cache_incr(p, "n", 2, 60000, &n), 0);
    assert_int_equal(n, 3);
    redisFree(c);

    of_cache_pool_free(p);
    of_redis_config_free(&cfg);
    rf_private_stop(&srv);
}

static void test_auth_and_db(void **state)
{
    (void)state;
    rf_private srv = {0};
    snprintf(srv.password, sizeof(srv.password), "pw-%d", (int)getpid());
    assert_int_equal(rf_private_start(&srv), 0);

    of_redis_config cfg;
    rf_config(&cfg, "127.0.0.1", srv.port, "oftest:auth:");
    cfg.password = strdup(srv.password);
    cfg.db = 3;
    of_cache_pool *p = of_cache_pool_new(&cfg, NULL);
    assert_non_null(p);
    assert_int_equal(of_cache_set(p, "k", "in-db-3", 7, 0), 0);
    redisContext *c = rf_connect_to("127.0.0.1", srv.port, srv.password);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "GET oftest:auth:k"); /* db 0 */
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    r = redisCommand(c, "SELECT 3");
    freeReplyObject(r);
    r = redisCommand(c, "GET oftest:auth:k");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "in-db-3");
    freeReplyObject(r);
    redisFree(c);
    of_cache_pool_free(p);

    /* a wrong password: AUTH refused is a failed connect, the pool is down */
    free(cfg.password);
    cfg.password = strdup("wrong");
    p = of_cache_pool_new(&cfg, NULL);
    assert_int_equal(of_cache_set(p, "k", "x", 1, 0), -1);
    assert_int_equal(of_cache_pool_is_down(p), 1);
    of_cache_stats s;
    of_cache_pool_stats(p, &s);
    assert_int_equal(s.connect_attempts, 1);
    assert_int_equal(s.connect_failures, 1);
    of_cache_pool_free(p);

    of_redis_config_free(&cfg);
    rf_private_stop(&srv);
}

/* More callers than connections: they wait their turn (within the command timeout), and the
 * pool never opens more than pool_size connections. */
static void test_pool_bound(void **state)
{
    (void)state;
    char prefix[128];
    rf_unique_prefix(prefix, sizeof(prefix), "bound");
    of_redis_config cfg;
    rf_config(&cfg, rf_host(), rf_port(), prefix);
    cfg.pool_size = 2;
    cfg.command_timeout_ms = 2000;
    of_cache_pool *p = of_cache_pool_new(&cfg, NULL);
    enum { THREADS = 6, EACH = 100 };
    pthread_t t[THREADS];
    incr_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (incr_arg){.pool = p, .n = EACH};
        assert_int_equal(pthread_create(&t[i], NULL, incr_thread, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].failures, 0);
    }
    of_cache_stats s;
    of_cache_pool_stats(p, &s);
    assert_true(s.open >= 1 && s.open <= 2);
    assert_true(s.connect_attempts >= 1 && s.connect_attempts <= 2);
    assert_int_equal(of_cache_del(p, "counter"), 0);
    of_cache_pool_free(p);
    of_redis_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_values),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test_setup_teardown(test_get_set_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incr_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incr_not_integer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_functions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_after_commit, setup, teardown),
        cmocka_unit_test(test_down_fails_fast),
        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_auth_and_db),
        cmocka_unit_test(test_pool_bound),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
