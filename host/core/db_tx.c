/* A call's transaction (or a batch's), the inbox that makes a redelivered event a no-op, and the
 * outbox that holds what a stage emitted until it is published. */
#include "db.h"

#include "log.h"
#include "timeutil.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The server error numbers after which the transaction is gone: the server rolled it back. */
#define ER_LOCK_DEADLOCK_   1213
#define ER_LOCK_TABLE_FULL_ 1206
/* Ids marked per UPDATE; a power of two, as its "IN (...)" lists are (outbox_mark). */
#define MARK_PUBLISHED_CHUNK 256

struct of_db_tx {
    of_db_pool *pool;
    of_db_conn *conn;
    int open;   /* started, not yet committed or rolled back */
    int doomed; /* the server rolled it back: only a rollback is left */
    of_db_error doom_err;
    /* An error found above the connection (a doomed or finished transaction); else the
     * connection's last error is the transaction's. */
    of_db_error err;
    char msg[512];
};

static void tx_clear(of_db_tx *tx)
{
    tx->err = OF_DB_OK;
    tx->msg[0] = '\0';
}

static void tx_set(of_db_tx *tx, of_db_error e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tx_set(of_db_tx *tx, of_db_error e, const char *fmt, ...)
{
    tx->err = e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tx->msg, sizeof(tx->msg), fmt, ap);
    va_end(ap);
}

/* After a failed statement: is the transaction still there? */
static void tx_after_error(of_db_tx *tx)
{
    unsigned int e = of_db_conn_errno(tx->conn);
    if (of_db_conn_broken(tx->conn)) {
        tx->doomed = 1;
        tx->doom_err = OF_DB_ERR_UNAVAILABLE;
    } else if (e == ER_LOCK_DEADLOCK_ || e == ER_LOCK_TABLE_FULL_) {
        tx->doomed = 1;
        tx->doom_err = OF_DB_ERR_TRANSIENT;
    }
}

/* 0 when the transaction takes statements, else -1 with the reason set. */
static int tx_usable(of_db_tx *tx)
{
    tx_clear(tx);
    if (tx->doomed) {
        tx_set(tx, tx->doom_err,
               "the transaction was rolled back by the database (%s); the event must be tried "
               "again (return OF_RETRY)",
               tx->doom_err == OF_DB_ERR_TRANSIENT ? "deadlock" : "connection lost");
        return -1;
    }
    if (!tx->open) {
        tx_set(tx, OF_DB_ERR_OTHER, "the transaction is already finished");
        return -1;
    }
    return 0;
}

of_db_tx *of_db_tx_begin(of_db_pool *pool, char *errstr, size_t errstr_size)
{
    of_db_tx *tx = calloc(1, sizeof(*tx));
    if (!tx) {
        of_seterr(errstr, errstr_size, "database: out of memory");
        return NULL;
    }
    tx->pool = pool;
    /* An idle connection the server dropped shows only now: replace it once. */
    for (int attempt = 0; attempt < 2; attempt++) {
        tx->conn = of_db_acquire_for_tx(pool, errstr, errstr_size);
        if (!tx->conn)
            break;
        if (of_db_conn_begin(tx->conn) == 0) {
            of_db_conn_set_in_tx(tx->conn, 1);
            tx->open = 1;
            return tx;
        }
        const char *msg;
        of_db_conn_error(tx->conn, &msg);
        of_seterr(errstr, errstr_size, "database unavailable: starting a transaction: %s", msg);
        int broken = of_db_conn_broken(tx->conn);
        of_db_release(tx->conn);
        tx->conn = NULL;
        if (!broken)
            break;
    }
    free(tx);
    return NULL;
}

of_db_conn *of_db_tx_conn(of_db_tx *tx)
{
    return tx ? tx->conn : NULL;
}

int of_db_tx_doomed(const of_db_tx *tx)
{
    return tx ? tx->doomed : 0;
}

of_db_error of_db_tx_error(const of_db_tx *tx, const char **message)
{
    if (!tx) {
        if (message)
            *message = "no transaction: the host has no database or the stage did not ask for "
                       "one (OF_STAGE_DATABASE)";
        return OF_DB_ERR_NOT_CONFIGURED;
    }
    if (tx->err != OF_DB_OK) {
        if (message)
            *message = tx->msg;
        return tx->err;
    }
    return of_db_conn_error(tx->conn, message);
}

int64_t of_db_tx_last_insert_id(const of_db_tx *tx)
{
    return tx ? of_db_last_insert_id(tx->conn) : 0;
}

int64_t of_db_tx_exec(of_db_tx *tx, const char *sql, const of_db_value *params, size_t n_params)
{
    if (!tx || tx_usable(tx) != 0)
        return -1;
    int64_t n = of_db_exec(tx->conn, sql, params, n_params);
    if (n < 0)
        tx_after_error(tx);
    return n;
}

of_db_rows *of_db_tx_query(of_db_tx *tx, const char *sql, const of_db_value *params,
                           size_t n_params)
{
    if (!tx || tx_usable(tx) != 0)
        return NULL;
    of_db_rows *r = of_db_query(tx->conn, sql, params, n_params);
    if (!r)
        tx_after_error(tx);
    return r;
}

int of_db_tx_commit(of_db_tx *tx)
{
    if (!tx || tx_usable(tx) != 0)
        return -1;
    tx->open = 0;
    of_db_conn_set_in_tx(tx->conn, 0);
    if (of_db_exec_text(tx->conn, "COMMIT") != 0) {
        tx_after_error(tx);
        const char *msg;
        of_db_error e = of_db_conn_error(tx->conn, &msg);
        if (of_db_conn_broken(tx->conn))
            tx_set(tx, OF_DB_ERR_UNAVAILABLE,
                   "the commit's outcome is unknown (the connection was lost): %s", msg);
        else {
            /* The server refused it (a deferred error): whatever is left goes. */
            tx_set(tx, e, "the commit failed: %s", msg);
            if (of_db_exec_text(tx->conn, "ROLLBACK") != 0) {
                of_log(OF_LVL_WARN, NULL, NULL, "database: rollback after a failed commit failed");
                /* The release tries once more and closes the connection if that fails too: the
                 * next transaction on it must not find this one's work. */
                of_db_conn_set_in_tx(tx->conn, 1);
            }
        }
        return -1;
    }
    return 0;
}

int of_db_tx_rollback(of_db_tx *tx)
{
    if (!tx)
        return -1;
    tx_clear(tx);
    if (!tx->open) {
        tx_set(tx, OF_DB_ERR_OTHER, "the transaction is already finished");
        return -1;
    }
    tx->open = 0;
    of_db_conn_set_in_tx(tx->conn, 0);
    if (of_db_conn_broken(tx->conn))
        return 0; /* the server rolled it back when the connection went */
    if (of_db_exec_text(tx->conn, "ROLLBACK") != 0) {
        tx_after_error(tx);
        of_db_conn_set_in_tx(tx->conn, 1); /* as after a failed commit's rollback */
        return -1;
    }
    return 0;
}

void of_db_tx_end(of_db_tx *tx)
{
    if (!tx)
        return;
    if (tx->open)
        of_db_tx_rollback(tx);
    of_db_release(tx->conn);
    free(tx);
}

/* ---------------------------------------------------------------------------------------------
 * Inbox and outbox
 * ------------------------------------------------------------------------------------------- */

int of_db_inbox_record(of_db_tx *tx, const char *group, const char *event_id)
{
    if (!tx)
        return -1;
    if (!group || !*group || !event_id || !*event_id) {
        tx_set(tx, OF_DB_ERR_OTHER, "inbox: a consumer group and an event id are required");
        return -1;
    }
    /* An existing row is left as it is: 0 rows affected. A second transaction recording the
     * same event waits for the first one's row lock, then sees it. */
    of_db_value p[2] = {OF_DB_S(group), OF_DB_S(event_id)};
    int64_t n = of_db_tx_exec(tx,
                              "INSERT INTO of_inbox (consumer_group, event_id, applied_at) "
                              "VALUES (?, ?, NOW(3)) "
                              "ON DUPLICATE KEY UPDATE applied_at = applied_at",
                              p, 2);
    if (n < 0)
        return -1;
    return n > 0 ? 1 : 0;
}

/* Multi-row inbox statements go in chunks of a power of two (at most INBOX_CHUNK_MAX rows), so a
 * connection's statement cache holds a few shapes, not one per batch size. */
#define INBOX_CHUNK_MAX 32
/* Outbox rows carry payloads: fewer per statement keeps a statement well under
 * max_allowed_packet for ordinary events. */
#define OUTBOX_CHUNK_MAX 16

static size_t chunk_of(size_t left, size_t max)
{
    size_t c = max;
    while (c > left)
        c /= 2;
    return c;
}

/* "<head>" then `rows` times "<row>" joined with ", ", then "<tail>". */
static char *repeat_sql(const char *head, const char *row, const char *sep, size_t rows,
                        const char *tail)
{
    size_t len = strlen(head) + rows * (strlen(row) + strlen(sep)) + strlen(tail) + 1;
    char *sql = malloc(len);
    if (!sql)
        return NULL;
    size_t n = (size_t)snprintf(sql, len, "%s", head);
    for (size_t i = 0; i < rows; i++)
        n += (size_t)snprintf(sql + n, len - n, "%s%s", i ? sep : "", row);
    snprintf(sql + n, len - n, "%s", tail);
    return sql;
}

int64_t of_db_inbox_record_many(of_db_tx *tx, const char *group, const char *const *event_ids,
                                size_t n)
{
    if (!tx)
        return -1;
    if (!group || !*group) {
        tx_set(tx, OF_DB_ERR_OTHER, "inbox: a consumer group is required");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!event_ids[i] || !*event_ids[i]) {
            tx_set(tx, OF_DB_ERR_OTHER, "inbox: an event id is required");
            return -1;
        }
    of_db_value p[2 * INBOX_CHUNK_MAX];
    int64_t total = 0;
    for (size_t done = 0; done < n;) {
        size_t rows = chunk_of(n - done, INBOX_CHUNK_MAX);
        /* As of_db_inbox_record: an existing row is left as it is and not counted. */
        char *sql = repeat_sql(
            "INSERT INTO of_inbox (consumer_group, event_id, applied_at) VALUES ", "(?, ?, NOW(3))",
            ", ", rows, " ON DUPLICATE KEY UPDATE applied_at = applied_at");
        if (!sql) {
            tx_set(tx, OF_DB_ERR_OTHER, "inbox: out of memory");
            return -1;
        }
        for (size_t i = 0; i < rows; i++) {
            p[2 * i] = OF_DB_S(group);
            p[2 * i + 1] = OF_DB_S(event_ids[done + i]);
        }
        int64_t got = of_db_tx_exec(tx, sql, p, 2 * rows);
        free(sql);
        if (got < 0)
            return -1;
        total += got;
        done += rows;
    }
    return total;
}

static size_t varint_put(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        out[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

static int varint_get(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return -1;
        uint8_t b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

void *of_db_headers_encode(const of_event *ev, size_t *len)
{
    size_t cap = 1;
    for (size_t i = 0; ev && i < ev->n_headers; i++)
        cap += 20 + strlen(ev->headers[i].name) + ev->headers[i].value_len;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return NULL;
    size_t pos = 0;
    buf[pos++] = 0x01;
    for (size_t i = 0; ev && i < ev->n_headers; i++) {
        const of_event_header *h = &ev->headers[i];
        size_t nl = strlen(h->name);
        pos += varint_put(buf + pos, nl);
        memcpy(buf + pos, h->name, nl);
        pos += nl;
        pos += varint_put(buf + pos, h->value_len);
        if (h->value_len)
            memcpy(buf + pos, h->value, h->value_len);
        pos += h->value_len;
    }
    *len = pos;
    return buf;
}

int of_db_headers_decode(of_event *ev, const void *data, size_t len)
{
    const uint8_t *buf = data;
    if (!buf || len < 1 || buf[0] != 0x01)
        return -1;
    size_t pos = 1;
    while (pos < len) {
        uint64_t nl, vl;
        if (varint_get(buf, len, &pos, &nl) != 0 || nl > len - pos || nl == 0)
            return -1;
        const uint8_t *name = buf + pos;
        if (memchr(name, '\0', nl))
            return -1;
        pos += nl;
        if (varint_get(buf, len, &pos, &vl) != 0 || vl > len - pos)
            return -1;
        char *nm = strndup((const char *)name, nl);
        if (!nm)
            return -1;
        int rc = of_event_add_header(ev, nm, buf + pos, (size_t)vl);
        free(nm);
        if (rc != 0)
            return -1;
        pos += vl;
    }
    return 0;
}

int of_db_outbox_add(of_db_tx *tx, const char *topic, const of_event *ev, const char *source,
                     int64_t *id)
{
    if (!tx)
        return -1;
    if (!topic || !*topic || !ev) {
        tx_set(tx, OF_DB_ERR_OTHER, "outbox: a topic and an event are required");
        return -1;
    }
    size_t hlen = 0;
    void *h = of_db_headers_encode(ev, &hlen);
    if (!h) {
        tx_set(tx, OF_DB_ERR_OTHER, "outbox: out of memory");
        return -1;
    }
    of_db_value p[5] = {
        OF_DB_S(topic),
        ev->key ? (of_db_value){.type = OF_DB_BLOB, .p = ev->key, .len = ev->key_len} : OF_DB_NULLV,
        {.type = OF_DB_BLOB, .p = ev->payload ? ev->payload : "", .len = ev->payload_len},
        {.type = OF_DB_BLOB, .p = h, .len = hlen},
        source ? OF_DB_S(source) : OF_DB_NULLV,
    };
    int64_t n = of_db_tx_exec(
        tx,
        "INSERT INTO of_outbox (topic, msg_key, payload, headers, source, created_at) "
        "VALUES (?, ?, ?, ?, ?, NOW(3))",
        p, 5);
    free(h);
    if (n < 0)
        return -1;
    if (id)
        *id = of_db_last_insert_id(tx->conn);
    return 0;
}

/* One multi-row INSERT ... RETURNING id for rows[0..n-1] (n <= OUTBOX_CHUNK_MAX). */
static int outbox_chunk(of_db_tx *tx, const of_db_outbox_row *rows, size_t n, int64_t *ids)
{
    of_db_value p[5 * OUTBOX_CHUNK_MAX];
    void *hdr[OUTBOX_CHUNK_MAX] = {0};
    int rc = -1;
    char *sql = repeat_sql("INSERT INTO of_outbox (topic, msg_key, payload, headers, source, "
                           "created_at) VALUES ",
                           "(?, ?, ?, ?, ?, NOW(3))", ", ", n, " RETURNING id");
    if (!sql) {
        tx_set(tx, OF_DB_ERR_OTHER, "outbox: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const of_event *ev = rows[i].ev;
        size_t hlen = 0;
        hdr[i] = of_db_headers_encode(ev, &hlen);
        if (!hdr[i]) {
            tx_set(tx, OF_DB_ERR_OTHER, "outbox: out of memory");
            goto out;
        }
        of_db_value *v = p + 5 * i;
        v[0] = OF_DB_S(rows[i].topic);
        v[1] = ev->key ? (of_db_value){.type = OF_DB_BLOB, .p = ev->key, .len = ev->key_len}
                       : OF_DB_NULLV;
        v[2] = (of_db_value){
            .type = OF_DB_BLOB, .p = ev->payload ? ev->payload : "", .len = ev->payload_len};
        v[3] = (of_db_value){.type = OF_DB_BLOB, .p = hdr[i], .len = hlen};
        v[4] = rows[i].source ? OF_DB_S(rows[i].source) : OF_DB_NULLV;
    }
    of_db_rows *res = of_db_tx_query(tx, sql, p, 5 * n);
    if (!res)
        goto out;
    /* The rows come back in the order of VALUES. */
    size_t got = 0;
    int r;
    while ((r = of_db_rows_next(res)) == 1) {
        of_db_value v;
        if (got == n || of_db_rows_get(res, 0, &v) != 0 || v.type != OF_DB_INT ||
            (got > 0 && v.i <= ids[got - 1])) {
            r = -2;
            break;
        }
        ids[got++] = v.i;
    }
    of_db_rows_free(res);
    if (r == -1) {
        tx_after_error(tx);
        goto out;
    }
    if (r == -2 || got != n) {
        tx_set(tx, OF_DB_ERR_OTHER, "outbox: INSERT ... RETURNING gave %zu ids for %zu rows", got,
               n);
        goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        free(hdr[i]);
    free(sql);
    return rc;
}

int of_db_outbox_add_many(of_db_tx *tx, const of_db_outbox_row *rows, size_t n, int64_t *ids)
{
    if (!tx)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!rows[i].topic || !*rows[i].topic || !rows[i].ev) {
            tx_set(tx, OF_DB_ERR_OTHER, "outbox: a topic and an event are required");
            return -1;
        }
    if (tx_usable(tx) != 0)
        return -1;
    int many = n > 1 && of_db_conn_returning(tx->conn);
    int64_t local[OUTBOX_CHUNK_MAX];
    for (size_t done = 0; done < n;) {
        size_t k = many ? chunk_of(n - done, OUTBOX_CHUNK_MAX) : 1;
        int64_t *out = ids ? ids + done : local;
        if (k == 1) {
            if (of_db_outbox_add(tx, rows[done].topic, rows[done].ev, rows[done].source, out) != 0)
                return -1;
        } else if (outbox_chunk(tx, rows + done, k, out) != 0) {
            return -1;
        }
        done += k;
    }
    return 0;
}

static int outbox_mark(of_db_pool *pool, const int64_t *ids, size_t n, const char *park_reason,
                       char *errstr, size_t errstr_size);

int of_db_outbox_mark_published(of_db_pool *pool, const int64_t *ids, size_t n, char *errstr,
                                size_t errstr_size)
{
    return outbox_mark(pool, ids, n, NULL, errstr, errstr_size);
}

int of_db_outbox_park(of_db_pool *pool, const int64_t *ids, size_t n, const char *reason,
                      char *errstr, size_t errstr_size)
{
    return outbox_mark(pool, ids, n, reason ? reason : "refused by the bus", errstr, errstr_size);
}

/* The smallest power of two >= n (n at most MARK_PUBLISHED_CHUNK). */
static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p *= 2;
    return p;
}

/* Marks rows published, or parked with a reason (park_reason not NULL). */
static int outbox_mark(of_db_pool *pool, const int64_t *ids, size_t n, const char *park_reason,
                       char *errstr, size_t errstr_size)
{
    if (n == 0)
        return 0;
    if (!ids) {
        of_seterr(errstr, errstr_size, "outbox: no ids");
        return -1;
    }
    /* Each "IN (...)" list has a power of two of places, the last id repeated in the extra ones,
     * so the marker's UPDATE takes 9 shapes rather than one per count: the statements each
     * connection keeps prepared (db.h) are not pushed out by the marker's. */
    size_t chunk = pow2_at_least(n < MARK_PUBLISHED_CHUNK ? n : MARK_PUBLISHED_CHUNK);
    /* "UPDATE ... WHERE id IN (?,?,...)": at most 2 bytes per placeholder. */
    size_t sql_cap = 192 + 2 * chunk;
    char *sql = malloc(sql_cap);
    of_db_value *vals = calloc(chunk + 1, sizeof(*vals));
    if (!sql || !vals) {
        free(sql);
        free(vals);
        of_seterr(errstr, errstr_size, "outbox: out of memory");
        return -1;
    }
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk, places = pow2_at_least(k);
        size_t pos = (size_t)snprintf(
            sql, sql_cap, "%s WHERE published_at IS NULL AND parked_at IS NULL AND id IN (",
            park_reason ? "UPDATE of_outbox SET parked_at = NOW(3), park_reason = ?"
                        : "UPDATE of_outbox SET published_at = NOW(3)");
        size_t first = 0;
        if (park_reason) {
            size_t rl = strlen(park_reason);
            vals[first++] = OF_DB_SN(park_reason, rl > 1000 ? 1000 : rl);
        }
        for (size_t i = 0; i < places; i++) {
            sql[pos++] = i ? ',' : '?';
            if (i)
                sql[pos++] = '?';
            vals[first + i] = OF_DB_I(ids[off + (i < k ? i : k - 1)]);
        }
        sql[pos++] = ')';
        sql[pos] = '\0';
        of_db_tx *tx = of_db_tx_begin(pool, errstr, errstr_size);
        if (!tx) {
            rc = -1;
            break;
        }
        const char *msg;
        if (of_db_tx_exec(tx, sql, vals, first + places) < 0 || of_db_tx_commit(tx) != 0) {
            of_db_tx_error(tx, &msg);
            of_seterr(errstr, errstr_size, "outbox: marking %zu rows %s: %s", k,
                      park_reason ? "parked" : "published", msg);
            rc = -1;
        }
        of_db_tx_end(tx);
    }
    free(sql);
    free(vals);
    return rc;
}

typedef struct fetched {
    int64_t id;
    char *topic;
    of_event *ev;
} fetched;

/* Reads unpublished rows with `sql` (its parameters in p), then calls fn for each after the
 * connection went back to the pool. */
static int64_t fetch_rows(of_db_pool *pool, const char *sql, const of_db_value *p, size_t n_p,
                          of_db_outbox_fn fn, void *opaque, char *errstr, size_t errstr_size)
{
    of_db_conn *c = of_db_acquire(pool, errstr, errstr_size);
    if (!c)
        return -1;
    of_db_rows *r = of_db_query(c, sql, p, n_p);
    const char *msg;
    if (!r) {
        of_db_conn_error(c, &msg);
        of_seterr(errstr, errstr_size, "outbox: reading unpublished rows: %s", msg);
        of_db_release(c);
        return -1;
    }
    fetched *rows = NULL;
    size_t n = 0, cap = 0;
    int rc, failed = 0;
    while ((rc = of_db_rows_next(r)) == 1) {
        of_db_value id, topic, key, payload, headers;
        of_db_rows_get(r, 0, &id);
        of_db_rows_get(r, 1, &topic);
        of_db_rows_get(r, 2, &key);
        of_db_rows_get(r, 3, &payload);
        of_db_rows_get(r, 4, &headers);
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            fetched *nr = realloc(rows, ncap * sizeof(*nr));
            if (!nr) {
                failed = 1;
                of_seterr(errstr, errstr_size, "outbox: out of memory");
                break;
            }
            rows = nr;
            cap = ncap;
        }
        fetched *f = &rows[n];
        f->id = id.i;
        f->topic = strndup(topic.p ? topic.p : "", topic.len);
        f->ev = of_event_new(key.type == OF_DB_NULL ? NULL : key.p, key.len,
                             payload.type == OF_DB_NULL ? "" : payload.p, payload.len);
        if (!f->topic || !f->ev) {
            free(f->topic);
            of_event_free(f->ev);
            failed = 1;
            of_seterr(errstr, errstr_size, "outbox: out of memory");
            break;
        }
        n++;
        if (headers.type != OF_DB_NULL && of_db_headers_decode(f->ev, headers.p, headers.len)) {
            /* Written by this host: a malformed one is a bug or a hand edit; keep the event
             * without headers rather than never publishing it. */
            of_log(OF_LVL_WARN, NULL, NULL,
                   "outbox row %" PRId64 ": malformed headers; publishing it without them", f->id);
            of_event *bare =
                of_event_new(f->ev->key, f->ev->key_len, f->ev->payload, f->ev->payload_len);
            if (bare) {
                of_event_free(f->ev);
                f->ev = bare;
            }
        }
    }
    if (rc < 0 && !failed) {
        of_db_conn_error(c, &msg);
        of_seterr(errstr, errstr_size, "outbox: reading unpublished rows: %s", msg);
        failed = 1;
    }
    of_db_rows_free(r);
    of_db_release(c);
    int stop = 0;
    for (size_t i = 0; i < n; i++) {
        if (!failed && !stop && fn)
            stop = fn(opaque, rows[i].id, rows[i].topic, rows[i].ev) != 0;
        free(rows[i].topic);
        of_event_free(rows[i].ev);
    }
    free(rows);
    return failed ? -1 : (int64_t)n;
}

int64_t of_db_outbox_fetch_unpublished(of_db_pool *pool, int64_t older_than_ms, size_t limit,
                                       of_db_outbox_fn fn, void *opaque, char *errstr,
                                       size_t errstr_size)
{
    if (limit == 0)
        return 0;
    if (older_than_ms < 0)
        older_than_ms = 0;
    of_db_value p[2] = {OF_DB_I(older_than_ms * 1000),
                        OF_DB_I(limit > INT64_MAX ? INT64_MAX : (int64_t)limit)};
    return fetch_rows(pool,
                      "SELECT id, topic, msg_key, payload, headers FROM of_outbox "
                      "WHERE published_at IS NULL AND parked_at IS NULL "
                      "AND created_at <= NOW(3) - INTERVAL ? MICROSECOND "
                      "ORDER BY id LIMIT ?",
                      p, 2, fn, opaque, errstr, errstr_size);
}

int64_t of_db_outbox_fetch_source(of_db_pool *pool, const char *source, of_db_outbox_fn fn,
                                  void *opaque, char *errstr, size_t errstr_size)
{
    of_db_value p[1] = {OF_DB_S(source)};
    return fetch_rows(pool,
                      "SELECT id, topic, msg_key, payload, headers FROM of_outbox "
                      "WHERE source = ? AND published_at IS NULL AND parked_at IS NULL "
                      "ORDER BY id",
                      p, 1, fn, opaque, errstr, errstr_size);
}

/* Deletes in batches until a batch is not full. */
static int64_t delete_batches(of_db_pool *pool, const char *sql, int64_t retention_ms,
                              const char *what, char *errstr, size_t errstr_size)
{
    int64_t total = 0;
    for (;;) {
        of_db_tx *tx = of_db_tx_begin(pool, errstr, errstr_size);
        if (!tx)
            return -1;
        of_db_value p[2] = {OF_DB_I(retention_ms * 1000), OF_DB_I(OF_DB_CLEANUP_BATCH)};
        int64_t n = of_db_tx_exec(tx, sql, p, 2);
        if (n < 0 || of_db_tx_commit(tx) != 0) {
            const char *msg;
            of_db_tx_error(tx, &msg);
            of_seterr(errstr, errstr_size, "cleanup of %s: %s", what, msg);
            of_db_tx_end(tx);
            return -1;
        }
        of_db_tx_end(tx);
        total += n;
        if (n < OF_DB_CLEANUP_BATCH)
            return total;
    }
}

int64_t of_db_cleanup(of_db_pool *pool, int64_t retention_ms, char *errstr, size_t errstr_size)
{
    if (retention_ms < 0)
        retention_ms = 0;
    int64_t a = delete_batches(pool,
                               "DELETE FROM of_inbox "
                               "WHERE applied_at < NOW(3) - INTERVAL ? MICROSECOND LIMIT ?",
                               retention_ms, "the inbox", errstr, errstr_size);
    if (a < 0)
        return -1;
    int64_t b = delete_batches(pool,
                               "DELETE FROM of_outbox WHERE published_at IS NOT NULL "
                               "AND published_at < NOW(3) - INTERVAL ? MICROSECOND "
                               "ORDER BY published_at LIMIT ?",
                               retention_ms, "the outbox", errstr, errstr_size);
    if (b < 0)
        return -1;
    return a + b;
}
