/* orderflow dlq: inspect a dead-letter topic on Kafka and republish its events.
 *
 * Both commands read each partition on its own, in partition order, from a start offset to the
 * high watermark taken when the command started, with a plain assign() and consumer_poll()
 * (no group membership, no batch-consume API). `list` commits nothing; `replay` commits its
 * progress in the group orderflow.dlq-replay.<TOPIC> only after every republished event of a
 * batch is acknowledged, so a second replay does not publish the same events again. */
#include "cli.h"
#include "hostconfig.h"
#include "kafka_conf.h"
#include "timeutil.h"

#include <orderflow/stage.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DLQ_CONNECT_TIMEOUT_MS  10000 /* reaching the brokers, metadata, watermarks, commits */
#define DLQ_IDLE_TIMEOUT_MS     10000 /* no message while a partition still has some to read */
#define DLQ_DELIVERY_TIMEOUT_MS 30000 /* message.timeout.ms unless the configuration sets it */
#define DLQ_SHOW_BYTES          1024  /* payload bytes `list` shows */
#define DLQ_BATCH               1000  /* events replayed between two commits */
#define DLQ_PREFIX              "of_dlq_"

typedef struct dlq_opts {
    const char *sub; /* "list" or "replay" */
    const char *topic;
    const char *bootstrap;
    const char *to;
    int json, dry_run, from_beginning, quiet;
    int64_t limit; /* 0: no limit */
} dlq_opts;

/* What the librdkafka callbacks of one client saw. */
typedef struct kstate {
    char last_error[512];
    int all_down;
    int fatal;
} kstate;

static void say_err(const dlq_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_err(const dlq_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "orderflow dlq%s%s: ", o->sub ? " " : "", o->sub ? o->sub : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const char list_usage[] =
    "usage: orderflow [-c CONFIG] dlq list [--bootstrap HOST:PORT] [--json] [--limit N] TOPIC\n";
static const char replay_usage[] =
    "usage: orderflow [-c CONFIG] dlq replay [--bootstrap HOST:PORT] [--to TOPIC] [--dry-run]\n"
    "                                        [--limit N] [--from-beginning] TOPIC\n";

/* After a usage error: the one line of the subcommand (or both), not the whole help. */
static void short_usage(const dlq_opts *o)
{
    if (!o->sub || strcmp(o->sub, "list") == 0)
        fputs(list_usage, stderr);
    if (!o->sub || strcmp(o->sub, "replay") == 0)
        fputs(replay_usage, stderr);
}

static void usage(FILE *out)
{
    fputs("usage: orderflow [-c CONFIG] dlq list [--bootstrap HOST:PORT] [--json] [--limit N] "
          "TOPIC\n"
          "       orderflow [-c CONFIG] dlq replay [--bootstrap HOST:PORT] [--to TOPIC] "
          "[--dry-run]\n"
          "                                        [--limit N] [--from-beginning] TOPIC\n"
          "\n"
          "  list     print the dead letters in TOPIC with their of_dlq_* headers\n"
          "  replay   republish them to their original topic (of_dlq_topic, or --to) and\n"
          "           remember how far it got (consumer group orderflow.dlq-replay.TOPIC)\n"
          "\n"
          "The brokers are those of the host configuration's bus.kafka (-c CONFIG), or\n"
          "--bootstrap (which overrides the configuration's bootstrap).\n",
          out);
}

/* ------------------------------------------------------------------ text helpers */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = s[0] & 0x1fu;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = s[0] & 0x0fu;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Writes data with control characters, backslashes and invalid UTF-8 escaped (\n, \t, \r, \\,
 * \xNN); at most `max` input bytes, then how many more there were. */
static void put_escaped(FILE *out, const void *data, size_t len, size_t max)
{
    const unsigned char *s = data;
    size_t shown = len < max ? len : max;
    for (size_t i = 0; i < shown;) {
        unsigned char ch = s[i];
        size_t n = utf8_len(s + i, shown - i);
        if (ch == '\\') {
            fputs("\\\\", out);
        } else if (ch == '\n') {
            fputs("\\n", out);
        } else if (ch == '\t') {
            fputs("\\t", out);
        } else if (ch == '\r') {
            fputs("\\r", out);
        } else if (ch < 0x20 || ch == 0x7f || n == 0) {
            fprintf(out, "\\x%02x", ch);
        } else {
            fwrite(s + i, 1, n, out);
            i += n;
            continue;
        }
        i++;
    }
    if (len > shown)
        fprintf(out, "... (%zu more bytes)", len - shown);
}

static char *escaped_string(const void *data, size_t len, size_t max)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return NULL;
    put_escaped(f, data, len, max);
    fclose(f);
    return buf;
}

/* "(none)" for a missing key, "''" for an empty one, else the escaped key (shortened). */
static void describe_key(const rd_kafka_message_t *m, char *buf, size_t size)
{
    if (!m->key) {
        snprintf(buf, size, "(none)");
        return;
    }
    if (m->key_len == 0) {
        snprintf(buf, size, "''");
        return;
    }
    char *k = escaped_string(m->key, m->key_len, 64);
    snprintf(buf, size, "%s", k ? k : "?");
    free(k);
}

static json_t *json_bytes(const void *data, size_t len)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    json_t *j = json_stringn(data ? data : "", len);
    if (j)
        return j;
    /* not UTF-8: base64 in an object, so a reader can tell it from text */
    const unsigned char *s = data;
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < len)
            v |= s[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    j = json_pack("{s:s}", "base64", out);
    free(out);
    return j;
}

/* ------------------------------------------------------------------ kafka clients */

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kstate *ks = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        ks->all_down = 1;
        if (ks->last_error[0])
            return;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[400];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        snprintf(ks->last_error, sizeof(ks->last_error), "%s", why);
        ks->fatal = 1;
        return;
    }
    snprintf(ks->last_error, sizeof(ks->last_error), "%s", reason);
}

/* librdkafka's own log lines (connection failures, properties meant for the other role) would
 * drown the command's messages; the errors that matter reach on_error. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (getenv("ORDERFLOW_KAFKA_LOG"))
        fprintf(stderr, "rdkafka %d %s: %s\n", level, fac, buf);
}

static int has_property(const of_kafka_config *kc, const char *key)
{
    for (size_t i = 0; i < kc->n_properties; i++)
        if (strcmp(kc->properties[i].key, key) == 0)
            return 1;
    return 0;
}

static int set_default(rd_kafka_conf_t *conf, const of_kafka_config *kc, const char *key,
                       const char *value, char *errstr, size_t errstr_size)
{
    if (has_property(kc, key))
        return 0;
    if (rd_kafka_conf_set(conf, key, value, errstr, errstr_size) != RD_KAFKA_CONF_OK)
        return -1;
    return 0;
}

static rd_kafka_conf_t *client_conf(const of_kafka_config *kc, of_kafka_role role,
                                    const char *group, kstate *ks, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = of_kafka_conf_new(kc, role, group, errstr, errstr_size);
    if (!conf)
        return NULL;
    char tmo[24];
    snprintf(tmo, sizeof(tmo), "%d", DLQ_CONNECT_TIMEOUT_MS);
    int bad = set_default(conf, kc, "socket.connection.setup.timeout.ms", tmo, errstr, errstr_size);
    if (!bad && role == OF_KAFKA_CONSUMER)
        /* the end of a partition is how a read knows it is done (a trailing transaction marker
         * is never delivered as a message) */
        bad = rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, errstr_size) !=
                  RD_KAFKA_CONF_OK ||
              /* list commits nothing; replay commits itself, after the deliveries */
              rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) !=
                  RD_KAFKA_CONF_OK;
    if (!bad && role == OF_KAFKA_PRODUCER) {
        char dtmo[24];
        snprintf(dtmo, sizeof(dtmo), "%d", DLQ_DELIVERY_TIMEOUT_MS);
        /* Java's and the embedded bus's placement: murmur2 of the key */
        bad = (!has_property(kc, "delivery.timeout.ms") &&
               set_default(conf, kc, "message.timeout.ms", dtmo, errstr, errstr_size)) ||
              set_default(conf, kc, "partitioner", "murmur2_random", errstr, errstr_size);
    }
    if (bad) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, ks);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    return conf;
}

/* A client with client_conf's configuration (and a delivery callback for a producer). */
static rd_kafka_t *client_start(const of_kafka_config *kc, of_kafka_role role, const char *group,
                                kstate *ks,
                                void (*dr)(rd_kafka_t *, const rd_kafka_message_t *, void *),
                                char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = client_conf(kc, role, group, ks, errstr, errstr_size);
    if (!conf)
        return NULL;
    if (dr)
        rd_kafka_conf_set_dr_msg_cb(conf, dr);
    rd_kafka_t *rk = rd_kafka_new(role == OF_KAFKA_PRODUCER ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER,
                                  conf, errstr, errstr_size);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The partitions of `topic`, sorted. Waits at most DLQ_CONNECT_TIMEOUT_MS for the brokers and
 * gives up early when every broker refused the connection. 0, or -1 with errstr. */
static int topic_partitions(rd_kafka_t *rk, kstate *ks, const char *bootstrap, const char *topic,
                            int32_t **parts, int *n_parts, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        of_seterr(errstr, errstr_size, "topic '%s': %s", topic,
                  rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    int64_t deadline = of_mono_ms() + DLQ_CONNECT_TIMEOUT_MS;
    rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_NO_ERROR;
    int rc = -1;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 1000);
        rd_kafka_poll(rk, 0);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            const struct rd_kafka_metadata_topic *t = md->topic_cnt == 1 ? &md->topics[0] : NULL;
            err = t ? t->err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR && t->partition_cnt > 0) {
                *parts = calloc((size_t)t->partition_cnt, sizeof(**parts));
                if (*parts) {
                    for (int i = 0; i < t->partition_cnt; i++)
                        (*parts)[i] = t->partitions[i].id;
                    qsort(*parts, (size_t)t->partition_cnt, sizeof(**parts), cmp_i32);
                    *n_parts = t->partition_cnt;
                    rc = 0;
                } else {
                    of_seterr(errstr, errstr_size, "out of memory");
                }
                rd_kafka_metadata_destroy(md);
                break;
            }
            rd_kafka_metadata_destroy(md);
            if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
                of_seterr(errstr, errstr_size, "topic '%s' does not exist on %s", topic, bootstrap);
                break;
            }
            if (err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                err == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION) {
                of_seterr(errstr, errstr_size, "topic '%s': %s", topic, rd_kafka_err2str(err));
                break;
            }
            /* leader not available yet (a topic just created) and the like: ask again */
        }
        last = err;
        if (ks->all_down || ks->fatal) {
            of_seterr(errstr, errstr_size, "cannot connect to the Kafka brokers at %s: %s",
                      bootstrap, ks->last_error[0] ? ks->last_error : rd_kafka_err2str(last));
            break;
        }
        if (of_mono_ms() >= deadline) {
            of_seterr(errstr, errstr_size,
                      "no answer about topic '%s' from the Kafka brokers at %s within %d s: %s",
                      topic, bootstrap, DLQ_CONNECT_TIMEOUT_MS / 1000,
                      ks->last_error[0] ? ks->last_error : rd_kafka_err2str(last));
            break;
        }
        if (err != RD_KAFKA_RESP_ERR__TIMED_OUT)
            rd_kafka_poll(rk, 200); /* not a busy loop when the answer came at once */
    }
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* One partition's range and, for replay, where the last replay stopped. */
typedef struct part_range {
    int32_t id;
    int64_t low, high; /* watermarks when the command started */
    int64_t start;     /* first offset to read */
    int64_t committed; /* replay: the group's committed offset, -1 when none */
} part_range;

static int watermarks(rd_kafka_t *rk, const char *topic, part_range *p, char *errstr,
                      size_t errstr_size)
{
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic, p->id, &p->low, &p->high,
                                                               DLQ_CONNECT_TIMEOUT_MS);
    if (err) {
        of_seterr(errstr, errstr_size, "reading the offsets of %s partition %" PRId32 ": %s", topic,
                  p->id, rd_kafka_err2str(err));
        return -1;
    }
    p->start = p->low;
    p->committed = -1;
    return 0;
}

/* Calls fn for every message of one partition in [p->start, p->high). fn returns 0 to go on, 1
 * to stop there, -1 on error. Returns 0 when done or stopped, 1 when fn stopped, -1 on error
 * (with errstr). */
typedef int (*msg_fn)(void *ctx, const rd_kafka_message_t *m);

static int read_partition(rd_kafka_t *rk, kstate *ks, const char *topic, const part_range *p,
                          msg_fn fn, void *ctx, char *errstr, size_t errstr_size)
{
    if (p->start >= p->high)
        return 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p->id)->offset = p->start;
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        of_seterr(errstr, errstr_size, "reading %s partition %" PRId32 ": %s", topic, p->id,
                  rd_kafka_err2str(err));
        return -1;
    }
    int rc = 0;
    int64_t next = p->start;
    int64_t idle_since = of_mono_ms();
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_poll(rk, 0);
        if (!m) {
            if (ks->fatal || of_mono_ms() - idle_since >= DLQ_IDLE_TIMEOUT_MS) {
                of_seterr(errstr, errstr_size,
                          "no message from %s partition %" PRId32 " at offset %" PRId64
                          " for %d s (high watermark %" PRId64 "): %s",
                          topic, p->id, next, DLQ_IDLE_TIMEOUT_MS / 1000, p->high,
                          ks->last_error[0] ? ks->last_error : "no error reported");
                rc = -1;
                break;
            }
            continue;
        }
        idle_since = of_mono_ms();
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* the end as the broker sees it now: nothing more to read from this partition */
            rd_kafka_message_destroy(m);
            break;
        }
        if (m->err) {
            if (!m->rkt) {
                /* a client-level error; librdkafka keeps trying, the idle timeout bounds it */
                snprintf(ks->last_error, sizeof(ks->last_error), "%s", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                continue;
            }
            of_seterr(errstr, errstr_size, "reading %s partition %" PRId32 ": %s", topic, p->id,
                      rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            rc = -1;
            break;
        }
        if (m->offset < p->start || m->partition != p->id) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->offset >= p->high) { /* produced after the command started */
            rd_kafka_message_destroy(m);
            break;
        }
        next = m->offset + 1;
        int r = fn(ctx, m);
        int last = m->offset >= p->high - 1;
        rd_kafka_message_destroy(m);
        if (r != 0) {
            rc = r;
            if (r < 0 && errstr && errstr_size)
                errstr[0] = '\0'; /* fn reported it */
            break;
        }
        if (last)
            break;
    }
    rd_kafka_assign(rk, NULL);
    return rc;
}

/* ------------------------------------------------------------------ connecting */

typedef struct dlq_conn {
    of_host_config *hc;
    of_kafka_config kc; /* shallow: points into hc or the options */
    const char *bootstrap;
} dlq_conn;

/* The broker settings from -c CONFIG and --bootstrap. 0, or the exit status. */
static int conn_init(const of_cli *cli, const dlq_opts *o, dlq_conn *c)
{
    memset(c, 0, sizeof(*c));
    if (cli->config_path) {
        of_diag diag;
        of_diag_init(&diag);
        c->hc = of_host_config_load(cli->config_path, &diag);
        of_diag_print(&diag, stderr);
        of_diag_free(&diag);
        if (!c->hc)
            return 1;
        if (c->hc->bus == OF_BUS_KAFKA)
            c->kc = c->hc->kafka;
        else if (!o->bootstrap) {
            say_err(o,
                    "%s: the bus is not kafka (bus.type: memory); set bus.type: kafka with "
                    "bus.kafka.bootstrap, or give --bootstrap HOST:PORT",
                    cli->config_path);
            return 1;
        }
    } else if (!o->bootstrap) {
        say_err(o, "no brokers to connect to: give --bootstrap HOST:PORT, or -c CONFIG with a "
                   "kafka bus");
        return 2;
    }
    if (o->bootstrap)
        c->kc.bootstrap = (char *)o->bootstrap;
    if (!c->kc.client_id)
        c->kc.client_id = (char *)"orderflow-dlq";
    c->bootstrap = c->kc.bootstrap;
    return 0;
}

static void conn_free(dlq_conn *c)
{
    of_host_config_free(c->hc);
}

/* A consumer on the topic with its partitions' ranges. 0, or -1 (reported). */
static int open_topic(const dlq_opts *o, dlq_conn *c, const char *group, kstate *ks,
                      rd_kafka_t **rk_out, part_range **parts_out, int *n_out)
{
    char err[768];
    rd_kafka_t *rk = client_start(&c->kc, OF_KAFKA_CONSUMER, group, ks, NULL, err, sizeof(err));
    if (!rk) {
        say_err(o, "cannot create a Kafka consumer: %s", err);
        return -1;
    }
    int32_t *ids = NULL;
    int n = 0;
    if (topic_partitions(rk, ks, c->bootstrap, o->topic, &ids, &n, err, sizeof(err)) < 0) {
        say_err(o, "%s", err);
        rd_kafka_destroy(rk);
        return -1;
    }
    part_range *parts = calloc((size_t)n, sizeof(*parts));
    if (!parts) {
        say_err(o, "out of memory");
        free(ids);
        rd_kafka_destroy(rk);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        parts[i].id = ids[i];
        if (watermarks(rk, o->topic, &parts[i], err, sizeof(err)) < 0) {
            say_err(o, "%s", err);
            free(ids);
            free(parts);
            rd_kafka_destroy(rk);
            return -1;
        }
    }
    free(ids);
    *rk_out = rk;
    *parts_out = parts;
    *n_out = n;
    return 0;
}

/* ------------------------------------------------------------------ list */

static const char *const dlq_fields[] = {"pipeline", "stage", "attempts", "status", "error", NULL};

typedef struct list_ctx {
    const dlq_opts *o;
    int64_t shown;
} list_ctx;

/* The last value of header `name` as a NUL-terminated string (escaped when `esc`), or NULL. */
static char *header_text(const rd_kafka_message_t *m, const char *name, int esc)
{
    rd_kafka_headers_t *h = NULL;
    const void *val = NULL;
    size_t size = 0;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &val, &size))
        return NULL;
    if (!val)
        return strdup("");
    return esc ? escaped_string(val, size, 512) : strndup(val, size);
}

static void print_time(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];
    if (gmtime_r(&t, &tm) && strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm))
        printf("%s.%03dZ", buf, (int)(ms % 1000));
    else
        printf("%" PRId64, ms);
}

static int list_text(const rd_kafka_message_t *m)
{
    printf("partition %" PRId32 " offset %" PRId64 "\n", m->partition, m->offset);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    if (ts >= 0) {
        printf("  time:      ");
        print_time(ts);
        putchar('\n');
    }
    char key[160];
    describe_key(m, key, sizeof(key));
    printf("  key:       %s\n", key);
    char *topic = header_text(m, OF_DLQ_H_TOPIC, 1);
    char *part = header_text(m, OF_DLQ_H_PARTITION, 1);
    char *off = header_text(m, OF_DLQ_H_OFFSET, 1);
    printf("  from:      %s partition %s offset %s\n", topic && *topic ? topic : "(unknown)",
           part ? part : "?", off ? off : "?");
    free(topic);
    free(part);
    free(off);
    for (size_t i = 0; dlq_fields[i]; i++) {
        char name[32];
        snprintf(name, sizeof(name), DLQ_PREFIX "%s", dlq_fields[i]);
        char *v = header_text(m, name, 1);
        printf("  %s:%*s%s\n", dlq_fields[i], (int)(10 - strlen(dlq_fields[i])), "",
               v ? v : "(none)");
        free(v);
    }
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(h, i, &name, &val, &size); i++) {
            if (strncmp(name, DLQ_PREFIX, strlen(DLQ_PREFIX)) == 0)
                continue;
            printf("  header:    ");
            put_escaped(stdout, name, strlen(name), 128);
            fputs(val ? "=" : " (null)", stdout);
            if (val)
                put_escaped(stdout, val, size, 256);
            putchar('\n');
        }
    }
    if (!m->payload)
        printf("  payload:   (null)\n");
    else {
        printf("  payload:   (%zu byte%s) ", m->len, m->len == 1 ? "" : "s");
        put_escaped(stdout, m->payload, m->len, DLQ_SHOW_BYTES);
        putchar('\n');
    }
    putchar('\n');
    return 0;
}

/* The decimal value of a header as a JSON integer, the text when it is not one, or null. */
static json_t *json_header_num(const rd_kafka_message_t *m, const char *name)
{
    char *v = header_text(m, name, 0);
    if (!v)
        return json_null();
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    json_t *j = (*v && !*end && !errno) ? json_integer(n) : json_bytes(v, strlen(v));
    free(v);
    return j;
}

static json_t *json_header_str(const rd_kafka_message_t *m, const char *name)
{
    rd_kafka_headers_t *h = NULL;
    const void *val = NULL;
    size_t size = 0;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &val, &size))
        return json_null();
    return val ? json_bytes(val, size) : json_null();
}

static int list_json(const rd_kafka_message_t *m)
{
    json_t *o = json_object();
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    json_object_set_new(o, "partition", json_integer(m->partition));
    json_object_set_new(o, "offset", json_integer(m->offset));
    json_object_set_new(o, "timestamp_ms", ts >= 0 ? json_integer(ts) : json_null());
    json_object_set_new(o, "key", m->key ? json_bytes(m->key, m->key_len) : json_null());
    json_object_set_new(o, "topic", json_header_str(m, OF_DLQ_H_TOPIC));
    json_object_set_new(o, "original_partition", json_header_num(m, OF_DLQ_H_PARTITION));
    json_object_set_new(o, "original_offset", json_header_num(m, OF_DLQ_H_OFFSET));
    json_object_set_new(o, "pipeline", json_header_str(m, OF_DLQ_H_PIPELINE));
    json_object_set_new(o, "stage", json_header_str(m, OF_DLQ_H_STAGE));
    json_object_set_new(o, "attempts", json_header_num(m, OF_DLQ_H_ATTEMPTS));
    json_object_set_new(o, "status", json_header_str(m, OF_DLQ_H_STATUS));
    json_object_set_new(o, "error", json_header_str(m, OF_DLQ_H_ERROR));
    json_t *hs = json_array();
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(h, i, &name, &val, &size); i++)
            if (strncmp(name, DLQ_PREFIX, strlen(DLQ_PREFIX)) != 0)
                json_array_append_new(hs, json_pack("{s:o,s:o}", "name",
                                                    json_bytes(name, strlen(name)), "value",
                                                    val ? json_bytes(val, size) : json_null()));
    }
    json_object_set_new(o, "headers", hs);
    json_object_set_new(o, "payload", m->payload ? json_bytes(m->payload, m->len) : json_null());
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s)
        return -1;
    puts(s);
    free(s);
    return 0;
}

static int list_one(void *vctx, const rd_kafka_message_t *m)
{
    list_ctx *lc = vctx;
    if ((lc->o->json ? list_json(m) : list_text(m)) < 0)
        return -1;
    lc->shown++;
    return lc->o->limit && lc->shown >= lc->o->limit ? 1 : 0;
}

static int dlq_list(const dlq_opts *o, dlq_conn *c)
{
    kstate ks = {0};
    rd_kafka_t *rk;
    part_range *parts;
    int n;
    /* assign() without commits: the group is never joined nor written */
    if (open_topic(o, c, "orderflow.dlq-list", &ks, &rk, &parts, &n) < 0)
        return 1;
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += parts[i].high - parts[i].low;
    list_ctx lc = {.o = o};
    int rc = 0;
    char err[768] = "";
    for (int i = 0; i < n && rc == 0; i++) {
        int r = read_partition(rk, &ks, o->topic, &parts[i], list_one, &lc, err, sizeof(err));
        if (r < 0) {
            say_err(o, "%s", err[0] ? err : "cannot print an event (out of memory)");
            rc = 1;
        } else if (r > 0) {
            break; /* the limit */
        }
    }
    fflush(stdout);
    FILE *sum = o->json ? stderr : stdout;
    if (rc == 0 && o->limit && lc.shown >= o->limit && lc.shown < total)
        fprintf(sum, "%" PRId64 " dead letter%s in %s (first %" PRId64 " shown)\n", total,
                total == 1 ? "" : "s", o->topic, lc.shown);
    else if (rc == 0)
        fprintf(sum, "%" PRId64 " dead letter%s in %s\n", lc.shown, lc.shown == 1 ? "" : "s",
                o->topic);
    free(parts);
    rd_kafka_destroy(rk);
    return rc;
}

/* ------------------------------------------------------------------ replay */

typedef struct pending {
    int64_t offset;
    const char *target;
    char key[96];
    int done; /* delivery report received */
    rd_kafka_resp_err_t err;
} pending;

typedef struct replay_ctx {
    const dlq_opts *o;
    dlq_conn *c;
    rd_kafka_t *consumer, *producer;
    kstate *cks;
    part_range *part;
    pending *batch;
    size_t n_batch;
    int64_t replayed; /* acknowledged (or, dry run, would be) */
    int64_t taken;    /* counted against --limit */
    int stopped;      /* a dead letter that cannot be replayed; reported */
    int failed;       /* an error; reported */
    char **topics;    /* targets known to exist */
    size_t n_topics;
} replay_ctx;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    pending *p = m->_private;
    if (p) {
        p->done = 1;
        p->err = m->err;
    }
}

/* The target exists (asked once per topic, on the consumer, which never creates topics). */
static int target_exists(replay_ctx *rc, const char *topic, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < rc->n_topics; i++)
        if (strcmp(rc->topics[i], topic) == 0)
            return 0;
    int32_t *ids = NULL;
    int n = 0;
    if (topic_partitions(rc->consumer, rc->cks, rc->c->bootstrap, topic, &ids, &n, errstr,
                         errstr_size) < 0)
        return -1;
    free(ids);
    char **t = realloc(rc->topics, (rc->n_topics + 1) * sizeof(*t));
    if (!t || !(t[rc->n_topics] = strdup(topic))) {
        if (t)
            rc->topics = t;
        of_seterr(errstr, errstr_size, "out of memory");
        return -1;
    }
    rc->topics = t;
    rc->n_topics++;
    return 0;
}

/* Waits for every delivery of the batch, then commits the offset after the last event that
 * was delivered with all before it. 0, or -1 (reported). */
static int settle(replay_ctx *rc)
{
    if (rc->n_batch == 0)
        return 0;
    const dlq_opts *o = rc->o;
    int64_t deadline = of_mono_ms() + DLQ_DELIVERY_TIMEOUT_MS + DLQ_CONNECT_TIMEOUT_MS;
    for (;;) {
        rd_kafka_flush(rc->producer, 1000);
        size_t open = 0;
        for (size_t i = 0; i < rc->n_batch; i++)
            open += !rc->batch[i].done;
        if (!open)
            break;
        if (of_mono_ms() >= deadline) {
            say_err(o, "%zu publication%s not acknowledged in time; nothing committed for them",
                    open, open == 1 ? "" : "s");
            rc->failed = 1;
            break;
        }
    }
    size_t ok = 0;
    while (ok < rc->n_batch && rc->batch[ok].done && !rc->batch[ok].err)
        ok++;
    for (size_t i = 0; i < ok; i++)
        if (!o->quiet)
            printf("replayed partition %" PRId32 " offset %" PRId64 " (key %s) to %s\n",
                   rc->part->id, rc->batch[i].offset, rc->batch[i].key, rc->batch[i].target);
    rc->replayed += (int64_t)ok;
    if (ok < rc->n_batch) {
        const pending *bad = &rc->batch[ok];
        size_t later = 0;
        for (size_t i = ok + 1; i < rc->n_batch; i++)
            later += rc->batch[i].done && !rc->batch[i].err;
        if (bad->done)
            say_err(o,
                    "publishing partition %" PRId32 " offset %" PRId64 " to %s failed: %s; "
                    "progress is kept before it%s",
                    rc->part->id, bad->offset, bad->target, rd_kafka_err2str(bad->err),
                    later ? " (the events after it that were published will be published again "
                            "by the next replay)"
                          : "");
        rc->failed = 1;
    }
    int rcode = 0;
    /* never backwards: --from-beginning republishes without forgetting how far replays got */
    int64_t next = ok > 0 ? rc->batch[ok - 1].offset + 1 : -1;
    if (ok > 0 && next > rc->part->committed) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, o->topic, rc->part->id)->offset = next;
        rd_kafka_resp_err_t err = rd_kafka_commit(rc->consumer, l, 0);
        if (!err)
            err = l->elems[0].err;
        rd_kafka_topic_partition_list_destroy(l);
        if (err) {
            say_err(o,
                    "the events up to partition %" PRId32 " offset %" PRId64 " were republished "
                    "but committing that progress failed: %s (a next replay publishes them again)",
                    rc->part->id, rc->batch[ok - 1].offset, rd_kafka_err2str(err));
            rc->failed = 1;
            rcode = -1;
        } else {
            rc->part->committed = next;
        }
    }
    rc->n_batch = 0;
    return rc->failed ? -1 : rcode;
}

static int replay_one(void *vctx, const rd_kafka_message_t *m)
{
    replay_ctx *rc = vctx;
    const dlq_opts *o = rc->o;
    char *from = o->to ? NULL : header_text(m, OF_DLQ_H_TOPIC, 0);
    const char *target = o->to ? o->to : from;
    char why[768];
    if (!target || !*target) {
        say_err(o,
                "partition %" PRId32 " offset %" PRId64 " has no " OF_DLQ_H_TOPIC
                " header and no --to was given: stopped there (it and what follows stay in %s; "
                "give --to TOPIC to choose where it goes)",
                m->partition, m->offset, o->topic);
        free(from);
        rc->stopped = 1;
        return 1;
    }
    if (strcmp(target, o->topic) == 0) {
        say_err(o,
                "partition %" PRId32 " offset %" PRId64 " would go back into %s itself: stopped "
                "there (give --to TOPIC)",
                m->partition, m->offset, o->topic);
        free(from);
        rc->stopped = 1;
        return 1;
    }
    if (target_exists(rc, target, why, sizeof(why)) < 0) {
        say_err(o, "partition %" PRId32 " offset %" PRId64 ": %s: stopped there", m->partition,
                m->offset, why);
        free(from);
        rc->stopped = 1;
        return 1;
    }
    /* the stored name, so `from` can go */
    for (size_t i = 0; i < rc->n_topics; i++)
        if (strcmp(rc->topics[i], target) == 0)
            target = rc->topics[i];
    free(from);
    char key[96];
    describe_key(m, key, sizeof(key));
    rc->taken++;
    if (o->dry_run) {
        if (!o->quiet)
            printf("would replay partition %" PRId32 " offset %" PRId64 " (key %s) to %s\n",
                   m->partition, m->offset, key, target);
        rc->replayed++;
        return o->limit && rc->taken >= o->limit ? 1 : 0;
    }
    rd_kafka_headers_t *src = NULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    if (rd_kafka_message_headers(m, &src) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0; !rd_kafka_header_get_all(src, i, &name, &val, &size); i++)
            if (strncmp(name, DLQ_PREFIX, strlen(DLQ_PREFIX)) != 0)
                rd_kafka_header_add(h, name, -1, val, val ? (ssize_t)size : 0);
    }
    pending *p = &rc->batch[rc->n_batch];
    memset(p, 0, sizeof(*p));
    p->offset = m->offset;
    p->target = target;
    snprintf(p->key, sizeof(p->key), "%s", key);
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rc->producer, RD_KAFKA_V_TOPIC(target), RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rc->producer, 100);
            continue;
        }
        if (err) {
            rd_kafka_headers_destroy(h);
            say_err(o, "publishing partition %" PRId32 " offset %" PRId64 " to %s: %s",
                    m->partition, m->offset, target, rd_kafka_err2str(err));
            rc->failed = 1;
            return -1;
        }
        break;
    }
    rc->n_batch++;
    rd_kafka_poll(rc->producer, 0);
    if (rc->n_batch == DLQ_BATCH && settle(rc) < 0)
        return -1;
    return o->limit && rc->taken >= o->limit ? 1 : 0;
}

static int dlq_replay(const dlq_opts *o, dlq_conn *c)
{
    char group[512];
    snprintf(group, sizeof(group), "orderflow.dlq-replay.%s", o->topic);
    kstate cks = {0}, pks = {0};
    replay_ctx rc = {.o = o, .c = c, .cks = &cks};
    part_range *parts;
    int n;
    char err[768] = "";
    if (open_topic(o, c, group, &cks, &rc.consumer, &parts, &n) < 0)
        return 1;
    int status = 1;
    int64_t total = 0, earlier = 0;
    for (int i = 0; i < n; i++)
        total += parts[i].high - parts[i].low;
    if (n > 0) {
        /* where the last replay of this topic stopped */
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
        for (int i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(l, o->topic, parts[i].id);
        rd_kafka_resp_err_t e = rd_kafka_committed(rc.consumer, l, DLQ_CONNECT_TIMEOUT_MS);
        for (int i = 0; !e && i < n; i++) {
            int64_t off = l->elems[i].offset;
            if (l->elems[i].err)
                e = l->elems[i].err;
            else if (off >= 0)
                parts[i].committed = off;
            if (off >= 0 && !o->from_beginning)
                parts[i].start = off < parts[i].low    ? parts[i].low
                                 : off > parts[i].high ? parts[i].high
                                                       : off;
            earlier += parts[i].start - parts[i].low;
        }
        rd_kafka_topic_partition_list_destroy(l);
        if (e) {
            say_err(o, "reading the progress of consumer group %s: %s", group, rd_kafka_err2str(e));
            goto out;
        }
    }
    if (!o->dry_run) {
        rc.producer =
            client_start(&c->kc, OF_KAFKA_PRODUCER, NULL, &pks, on_delivery, err, sizeof(err));
        rc.batch = calloc(DLQ_BATCH, sizeof(*rc.batch));
        if (!rc.producer || !rc.batch) {
            say_err(o, "cannot create a Kafka producer: %s", rc.producer ? "out of memory" : err);
            goto out;
        }
    }
    for (int i = 0; i < n && !rc.stopped && !rc.failed; i++) {
        rc.part = &parts[i];
        err[0] = '\0';
        int r = read_partition(rc.consumer, &cks, o->topic, &parts[i], replay_one, &rc, err,
                               sizeof(err));
        if (r < 0 && err[0])
            say_err(o, "%s", err);
        if (r < 0)
            rc.failed = 1;
        /* what was published before a stop or an error is still settled and committed */
        if (!o->dry_run)
            settle(&rc);
        if (o->limit && rc.taken >= o->limit)
            break;
    }
    const char *what = o->dry_run ? "dry run: would replay" : "replayed";
    printf("%s %" PRId64 " of %" PRId64 " dead letter%s from %s", what, rc.replayed, total,
           total == 1 ? "" : "s", o->topic);
    if (earlier)
        printf(" (%" PRId64 " replayed before; --from-beginning replays %s again)", earlier,
               earlier == 1 ? "it" : "them");
    putchar('\n');
    status = rc.stopped || rc.failed ? 1 : 0;
out:
    if (rc.producer) {
        rd_kafka_flush(rc.producer, 1000);
        rd_kafka_destroy(rc.producer);
    }
    for (size_t i = 0; i < rc.n_topics; i++)
        free(rc.topics[i]);
    free(rc.topics);
    free(rc.batch);
    free(parts);
    rd_kafka_destroy(rc.consumer);
    return status;
}

/* ------------------------------------------------------------------ command line */

static int parse_limit(const dlq_opts *o, const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v <= 0 || *s == '+' || *s == ' ') {
        say_err(o, "--limit takes a positive whole number; got '%s'", s);
        return -1;
    }
    *out = v;
    return 0;
}

int of_cmd_dlq(const of_cli *cli, int argc, char **argv)
{
    dlq_opts o = {.quiet = cli->quiet};
    if (argc < 2) {
        fputs("orderflow dlq: missing subcommand (list or replay)\n", stderr);
        short_usage(&o);
        return 2;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "replay") != 0) {
        fprintf(stderr, "orderflow dlq: unknown subcommand '%s' (list or replay)\n", argv[1]);
        short_usage(&o);
        return 2;
    }
    o.sub = argv[1];
    int replay = strcmp(o.sub, "replay") == 0;
    enum { O_BOOTSTRAP = 1, O_JSON, O_LIMIT, O_TO, O_DRY, O_FROM_START, O_HELP };
    static const struct option list_opts[] = {
        {"bootstrap", required_argument, NULL, O_BOOTSTRAP},
        {"json", no_argument, NULL, O_JSON},
        {"limit", required_argument, NULL, O_LIMIT},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    static const struct option replay_opts[] = {
        {"bootstrap", required_argument, NULL, O_BOOTSTRAP},
        {"to", required_argument, NULL, O_TO},
        {"dry-run", no_argument, NULL, O_DRY},
        {"limit", required_argument, NULL, O_LIMIT},
        {"from-beginning", no_argument, NULL, O_FROM_START},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int sargc = argc - 1;
    char **sargv = argv + 1;
    optind = 0; /* a fresh scan of another vector */
    opterr = 0;
    int opt;
    while ((opt = getopt_long(sargc, sargv, ":h", replay ? replay_opts : list_opts, NULL)) != -1) {
        switch (opt) {
        case O_BOOTSTRAP:
            if (!*optarg) {
                say_err(&o, "--bootstrap needs HOST:PORT[,HOST:PORT...]");
                return 2;
            }
            o.bootstrap = optarg;
            break;
        case O_JSON:
            o.json = 1;
            break;
        case O_LIMIT:
            if (parse_limit(&o, optarg, &o.limit) < 0)
                return 2;
            break;
        case O_TO:
            if (!*optarg) {
                say_err(&o, "--to needs a topic name");
                return 2;
            }
            o.to = optarg;
            break;
        case O_DRY:
            o.dry_run = 1;
            break;
        case O_FROM_START:
            o.from_beginning = 1;
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            return 0;
        case ':':
            say_err(&o, "option '%s' needs a value", sargv[optind - 1]);
            short_usage(&o);
            return 2;
        default:
            if (optopt >= 0x20)
                say_err(&o, "unknown option '-%c'", optopt);
            else
                say_err(&o, "unknown option '%s'", sargv[optind - 1]);
            short_usage(&o);
            return 2;
        }
    }
    if (optind >= sargc) {
        say_err(&o, "missing the dead-letter TOPIC");
        short_usage(&o);
        return 2;
    }
    if (optind + 1 < sargc) {
        say_err(&o, "one TOPIC only; unexpected '%s'", sargv[optind + 1]);
        short_usage(&o);
        return 2;
    }
    o.topic = sargv[optind];
    if (!*o.topic) {
        say_err(&o, "the TOPIC is empty");
        return 2;
    }
    dlq_conn c;
    int rc = conn_init(cli, &o, &c);
    if (rc == 0)
        rc = replay ? dlq_replay(&o, &c) : dlq_list(&o, &c);
    conn_free(&c);
    return rc;
}
