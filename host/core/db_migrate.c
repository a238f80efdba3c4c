/* Schema migrations: the host's own (the inbox and the outbox) and each plugin's, applied in
 * version order, each once, recorded in of_schema_migrations with the SHA-256 of its SQL.
 *
 * MariaDB commits DDL implicitly, so a migration cannot be undone with its record: each is
 * recorded right after it ran, and the record is what says "applied". A migration that failed
 * half-way is not recorded and runs again next time (write DDL that can be repeated, such as
 * CREATE TABLE IF NOT EXISTS, when a migration holds several statements). Hosts starting
 * together serialise on the server lock OF_DB_MIGRATE_LOCK, each reading what is applied only
 * once it holds the lock. */
#include "db.h"

#include "log.h"
#include "timeutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a host waits for another one's migrations (seconds; GET_LOCK's timeout). */
#define LOCK_WAIT_S 60
/* The migration connection's read timeout: DDL on a large table can take long. */
#define MIGRATE_READ_TIMEOUT_MS ((int64_t)3600 * 1000)

/* ---------------------------------------------------------------------------------------------
 * SHA-256 (FIPS 180-4)
 * ------------------------------------------------------------------------------------------- */

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t rotr(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + K[i] + w[i];
        uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

void of_sha256(const void *data, size_t len, uint8_t out[32])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const uint8_t *p = data;
    size_t left = len;
    while (left >= 64) {
        sha256_block(h, p);
        p += 64;
        left -= 64;
    }
    uint8_t tail[128];
    memset(tail, 0, sizeof(tail));
    if (left)
        memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t tail_len = left + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha256_block(h, tail);
    if (tail_len == 128)
        sha256_block(h, tail + 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

void of_sha256_hex(const void *data, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[32];
    of_sha256(data, len, d);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 0xf];
    }
    out[64] = '\0';
}

/* ---------------------------------------------------------------------------------------------
 * The host's schema
 * ------------------------------------------------------------------------------------------- */

static const char schema_table_sql[] =
    "CREATE TABLE IF NOT EXISTS of_schema_migrations (\n"
    "  component VARCHAR(128) NOT NULL,\n"
    "  version INT NOT NULL,\n"
    "  name VARCHAR(255) NOT NULL,\n"
    "  checksum CHAR(64) NOT NULL,\n"
    "  applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
    "  PRIMARY KEY (component, version)\n"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

static const of_migration host_migrations[] = {
    {1, "create inbox",
     "CREATE TABLE of_inbox (\n"
     "  consumer_group VARCHAR(255) NOT NULL,\n"
     "  event_id VARCHAR(255) NOT NULL,\n"
     "  applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  PRIMARY KEY (consumer_group, event_id),\n"
     "  INDEX of_inbox_applied (applied_at)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"},
    {2, "create outbox",
     "CREATE TABLE of_outbox (\n"
     "  id BIGINT NOT NULL AUTO_INCREMENT,\n"
     "  topic VARCHAR(255) NOT NULL,\n"
     "  msg_key VARBINARY(1024) NULL,\n"
     "  payload LONGBLOB NOT NULL,\n"
     "  headers LONGBLOB NOT NULL,\n"
     "  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n"
     "  published_at TIMESTAMP(3) NULL DEFAULT NULL,\n"
     "  source VARCHAR(512) NULL,\n"
     "  PRIMARY KEY (id),\n"
     "  INDEX of_outbox_unpublished (published_at, id),\n"
     "  INDEX of_outbox_source (source)\n"
     ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"},
    /* A row the bus refuses for good (too large, say) is parked, not retried for ever. */
    {3, "outbox parking",
     "ALTER TABLE of_outbox ADD COLUMN parked_at TIMESTAMP(3) NULL DEFAULT NULL,\n"
     "  ADD COLUMN park_reason VARCHAR(1024) NULL DEFAULT NULL"},
    {0, NULL, NULL},
};

const of_migration *of_db_host_migrations(void)
{
    return host_migrations;
}

const of_migration *of_plugin_migrations(const of_stage_descriptor *desc)
{
    if (!desc || desc->abi_minor < 1 ||
        offsetof(of_stage_descriptor, migrations) + sizeof(desc->migrations) > desc->struct_size)
        return NULL;
    return desc->migrations;
}

int of_db_migrations_check(const char *component, const of_migration *migs, char *errstr,
                           size_t errstr_size)
{
    if (!component || !*component || strlen(component) > 128) {
        of_seterr(errstr, errstr_size,
                  "migrations: a component name of 1..128 characters is "
                  "required");
        return -1;
    }
    if (!migs)
        return 0;
    for (int i = 0; migs[i].version != 0; i++) {
        const of_migration *m = &migs[i];
        if (m->version != i + 1) {
            if (i > 0 && m->version <= migs[i - 1].version)
                of_seterr(errstr, errstr_size,
                          "%s: migration versions must increase: %d follows %d", component,
                          m->version, migs[i - 1].version);
            else
                of_seterr(errstr, errstr_size,
                          "%s: migration versions must be 1, 2, 3 ... without gaps: found %d "
                          "where %d was expected",
                          component, m->version, i + 1);
            return -1;
        }
        if (!m->name || !*m->name || strlen(m->name) > 255) {
            of_seterr(errstr, errstr_size, "%s: migration %d needs a name of 1..255 characters",
                      component, m->version);
            return -1;
        }
        if (!m->sql || !*m->sql) {
            of_seterr(errstr, errstr_size, "%s: migration %d '%s' has no SQL", component,
                      m->version, m->name);
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Applying
 * ------------------------------------------------------------------------------------------- */

/* Runs the statements of one migration: split where a line ends with `;`. */
static int run_statements(of_db_conn *c, const char *sql, int *failed_at)
{
    size_t len = strlen(sql);
    char *buf = malloc(len + 1);
    if (!buf) {
        of_db_conn_set_error(c, OF_DB_ERR_OTHER, 0, "out of memory");
        return -1;
    }
    size_t start = 0;
    int stmt_no = 0;
    for (size_t i = 0; i <= len; i++) {
        int end = i == len;
        if (!end && sql[i] == '\n') {
            /* A line ending with ';' (trailing blanks allowed) ends a statement. */
            size_t j = i;
            while (j > start && (sql[j - 1] == ' ' || sql[j - 1] == '\t' || sql[j - 1] == '\r'))
                j--;
            end = j > start && sql[j - 1] == ';';
        }
        if (!end)
            continue;
        size_t n = i - start;
        memcpy(buf, sql + start, n);
        buf[n] = '\0';
        start = i + 1;
        /* Trim blanks and the final ';'. */
        char *s = buf;
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        size_t sl = strlen(s);
        while (sl > 0 && (s[sl - 1] == ' ' || s[sl - 1] == '\t' || s[sl - 1] == '\r' ||
                          s[sl - 1] == '\n' || s[sl - 1] == ';'))
            s[--sl] = '\0';
        if (sl == 0)
            continue;
        stmt_no++;
        if (of_db_exec_text(c, s) != 0) {
            *failed_at = stmt_no;
            free(buf);
            return -1;
        }
    }
    free(buf);
    return 0;
}

typedef struct applied_row {
    int version;
    char checksum[65];
    char name[256];
} applied_row;

/* The component's applied migrations, ordered by version. -1 with errstr. */
static int read_applied(of_db_conn *c, const char *component, applied_row **out, size_t *n_out,
                        char *errstr, size_t errstr_size)
{
    *out = NULL;
    *n_out = 0;
    of_db_value p[1] = {OF_DB_S(component)};
    of_db_rows *r = of_db_query(c,
                                "SELECT version, checksum, name FROM of_schema_migrations "
                                "WHERE component = ? ORDER BY version",
                                p, 1);
    const char *msg;
    if (!r) {
        of_db_conn_error(c, &msg);
        of_seterr(errstr, errstr_size, "%s: reading the applied migrations: %s", component, msg);
        return -1;
    }
    applied_row *rows = NULL;
    size_t n = 0;
    int rc;
    while ((rc = of_db_rows_next(r)) == 1) {
        applied_row *nr = realloc(rows, (n + 1) * sizeof(*nr));
        if (!nr) {
            rc = -1;
            break;
        }
        rows = nr;
        of_db_value v, cs, nm;
        of_db_rows_get(r, 0, &v);
        of_db_rows_get(r, 1, &cs);
        of_db_rows_get(r, 2, &nm);
        rows[n].version = (int)v.i;
        snprintf(rows[n].checksum, sizeof(rows[n].checksum), "%.*s", (int)cs.len,
                 cs.p ? (const char *)cs.p : "");
        snprintf(rows[n].name, sizeof(rows[n].name), "%.*s", (int)nm.len,
                 nm.p ? (const char *)nm.p : "");
        n++;
    }
    of_db_rows_free(r);
    if (rc < 0) {
        free(rows);
        of_seterr(errstr, errstr_size, "%s: reading the applied migrations failed", component);
        return -1;
    }
    *out = rows;
    *n_out = n;
    return 0;
}

static const applied_row *find_applied(const applied_row *rows, size_t n, int version)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].version == version)
            return &rows[i];
    return NULL;
}

/* With the lock held: applies what is missing. Returns the count or -1. */
static int migrate_locked(of_db_conn *c, const char *component, const of_migration *migs,
                          of_db_migrate_fn applied_fn, void *opaque, char *errstr,
                          size_t errstr_size)
{
    applied_row *done = NULL;
    size_t n_done = 0;
    if (read_applied(c, component, &done, &n_done, errstr, errstr_size) != 0)
        return -1;
    int known = 0;
    for (int i = 0; migs && migs[i].version != 0; i++)
        known = migs[i].version;
    int count = 0, rc = 0;
    /* Every applied migration must be the one this build has. */
    for (size_t i = 0; i < n_done; i++) {
        const applied_row *a = &done[i];
        if (a->version > known) {
            of_log(OF_LVL_WARN, NULL, NULL,
                   "migrations of %s: the database has version %d ('%s'), which this build "
                   "does not know (it knows up to %d); a newer build applied it",
                   component, a->version, a->name, known);
            continue;
        }
        if (a->version < 1)
            continue;
        const of_migration *m = &migs[a->version - 1];
        char sum[65];
        of_sha256_hex(m->sql, strlen(m->sql), sum);
        if (strcmp(sum, a->checksum) != 0) {
            of_seterr(errstr, errstr_size,
                      "%s: migration %d '%s' was changed after it was applied (checksum %.12s... "
                      "in the database, %.12s... now); never edit an applied migration, add a "
                      "new one",
                      component, m->version, m->name, a->checksum, sum);
            rc = -1;
            goto out;
        }
    }
    for (int i = 0; migs && migs[i].version != 0; i++) {
        const of_migration *m = &migs[i];
        if (find_applied(done, n_done, m->version))
            continue;
        char sum[65];
        of_sha256_hex(m->sql, strlen(m->sql), sum);
        int failed_at = 0;
        const char *msg;
        /* DML in a migration commits with its record; DDL commits on its own. */
        if (of_db_exec_text(c, "START TRANSACTION") != 0 ||
            run_statements(c, m->sql, &failed_at) != 0) {
            of_db_conn_error(c, &msg);
            char where[48] = "";
            if (failed_at)
                snprintf(where, sizeof(where), " at statement %d", failed_at);
            of_seterr(errstr, errstr_size, "%s: migration %d '%s' failed%s: %s", component,
                      m->version, m->name, where, msg);
            of_db_exec_text(c, "ROLLBACK");
            rc = -1;
            goto out;
        }
        of_db_value p[4] = {OF_DB_S(component), OF_DB_I(m->version), OF_DB_S(m->name),
                            OF_DB_S(sum)};
        if (of_db_exec(c,
                       "INSERT INTO of_schema_migrations (component, version, name, checksum, "
                       "applied_at) VALUES (?, ?, ?, ?, NOW(3))",
                       p, 4) < 0 ||
            of_db_exec_text(c, "COMMIT") != 0) {
            of_db_conn_error(c, &msg);
            of_seterr(errstr, errstr_size, "%s: migration %d '%s' ran but recording it failed: %s",
                      component, m->version, m->name, msg);
            of_db_exec_text(c, "ROLLBACK");
            rc = -1;
            goto out;
        }
        count++;
        of_log(OF_LVL_INFO, NULL, NULL, "migration %s %d '%s' applied", component, m->version,
               m->name);
        if (applied_fn)
            applied_fn(opaque, component, m);
    }
out:
    free(done);
    return rc < 0 ? -1 : count;
}

/* A dedicated connection holding the migration lock, with of_schema_migrations in place. */
static of_db_conn *lock_open(of_db_pool *pool, char *errstr, size_t errstr_size)
{
    of_db_conn *c = of_db_connect_dedicated(pool, MIGRATE_READ_TIMEOUT_MS, errstr, errstr_size);
    if (!c)
        return NULL;
    of_db_value p[2] = {OF_DB_S(OF_DB_MIGRATE_LOCK), OF_DB_I(LOCK_WAIT_S)};
    of_db_rows *r = of_db_query(c, "SELECT GET_LOCK(?, ?)", p, 2);
    const char *msg;
    of_db_value v = {.type = OF_DB_NULL};
    if (!r || of_db_rows_next(r) != 1 || of_db_rows_get(r, 0, &v) != 0) {
        of_db_conn_error(c, &msg);
        of_seterr(errstr, errstr_size, "migrations: taking the lock '%s': %s", OF_DB_MIGRATE_LOCK,
                  msg);
        of_db_rows_free(r);
        of_db_release(c);
        return NULL;
    }
    int64_t got = v.type == OF_DB_INT ? v.i : -1;
    of_db_rows_free(r);
    if (got != 1) {
        of_seterr(errstr, errstr_size,
                  "migrations: another host held the lock '%s' for %d s (still migrating?)",
                  OF_DB_MIGRATE_LOCK, LOCK_WAIT_S);
        of_db_release(c);
        return NULL;
    }
    if (of_db_exec_text(c, schema_table_sql) != 0) {
        of_db_conn_error(c, &msg);
        of_seterr(errstr, errstr_size, "migrations: creating of_schema_migrations: %s", msg);
        of_db_exec_text(c, "DO RELEASE_LOCK('" OF_DB_MIGRATE_LOCK "')");
        of_db_release(c);
        return NULL;
    }
    return c;
}

static void lock_close(of_db_conn *c)
{
    if (!c)
        return;
    /* Closing the connection releases the lock too; this says so at once. */
    of_db_exec_text(c, "DO RELEASE_LOCK('" OF_DB_MIGRATE_LOCK "')");
    of_db_release(c);
}

int of_db_migrate(of_db_pool *pool, const char *component, const of_migration *migs,
                  of_db_migrate_fn applied, void *opaque, char *errstr, size_t errstr_size)
{
    if (of_db_migrations_check(component, migs, errstr, errstr_size) != 0)
        return -1;
    of_db_conn *c = lock_open(pool, errstr, errstr_size);
    if (!c)
        return -1;
    int n = migrate_locked(c, component, migs, applied, opaque, errstr, errstr_size);
    lock_close(c);
    return n < 0 ? -1 : 0;
}

int of_db_migrate_all(of_db_pool *pool, const of_plugin_registry *reg, of_db_migrate_fn applied,
                      void *opaque, char *errstr, size_t errstr_size)
{
    /* Every array is checked before anything runs. */
    if (of_db_migrations_check(OF_DB_HOST_COMPONENT, host_migrations, errstr, errstr_size) != 0)
        return -1;
    for (size_t i = 0; reg && i < reg->count; i++) {
        const of_plugin *p = reg->plugins[i];
        if (strcmp(p->name, OF_DB_HOST_COMPONENT) == 0 && of_plugin_migrations(p->desc)) {
            of_seterr(errstr, errstr_size,
                      "plugin '%s' has migrations but its name is the host's component", p->name);
            return -1;
        }
        if (of_db_migrations_check(p->name, of_plugin_migrations(p->desc), errstr, errstr_size) !=
            0)
            return -1;
    }
    of_db_conn *c = lock_open(pool, errstr, errstr_size);
    if (!c)
        return -1;
    int total = migrate_locked(c, OF_DB_HOST_COMPONENT, host_migrations, applied, opaque, errstr,
                               errstr_size);
    for (size_t i = 0; total >= 0 && reg && i < reg->count; i++) {
        const of_plugin *p = reg->plugins[i];
        const of_migration *m = of_plugin_migrations(p->desc);
        if (!m || m[0].version == 0)
            continue;
        int n = migrate_locked(c, p->name, m, applied, opaque, errstr, errstr_size);
        total = n < 0 ? -1 : total + n;
    }
    lock_close(c);
    return total < 0 ? -1 : 0;
}
