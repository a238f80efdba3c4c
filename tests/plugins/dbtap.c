/*
 * dbtap: a test stage that uses the database (OF_STAGE_DATABASE). Each event inserts one row
 * (key, payload) into dbtap_writes and is forwarded on "out". Tests count the rows to prove that
 * a redelivered event is never applied twice. Database errors the database causes are retried,
 * others reject the event.
 */
#include <orderflow/stage.h>

#include <stdio.h>
#include <string.h>

static const of_host_api *g_api;

static const of_migration migrations[] = {
    {1, "create dbtap_writes",
     "CREATE TABLE dbtap_writes (\n"
     "  id BIGINT AUTO_INCREMENT PRIMARY KEY,\n"
     "  k VARCHAR(64) NOT NULL,\n"
     "  payload VARCHAR(255) NOT NULL,\n"
     "  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)\n"
     ") ENGINE=InnoDB"},
    {0, NULL, NULL},
};

static const char *const outputs[] = {"out", NULL};

static int dbtap_init(of_stage *stage, const of_host_api *api, const of_config *cfg,
                      void **instance, char *errstr, size_t errstr_size)
{
    (void)stage;
    (void)cfg;
    (void)instance;
    if (!OF_API_HAS(api, db_exec)) {
        snprintf(errstr, errstr_size, "this host has no database functions");
        return -1;
    }
    g_api = api;
    return 0;
}

static of_status dbtap_process(void *instance, of_call *call)
{
    (void)instance;
    size_t klen, plen;
    const char *key = g_api->event_key(call, &klen);
    const char *payload = g_api->event_payload(call, &plen);
    of_db_value params[] = {key ? OF_DB_SN(key, klen) : OF_DB_S("-"), OF_DB_SN(payload, plen)};
    if (g_api->db_exec(call, "INSERT INTO dbtap_writes (k, payload) VALUES (?, ?)", params, 2) <
        0) {
        const char *msg = NULL;
        of_db_error e = g_api->db_last_error(call, &msg);
        g_api->set_reason(call, "insert: %s", msg ? msg : "failed");
        return e == OF_DB_ERR_TRANSIENT || e == OF_DB_ERR_UNAVAILABLE ? OF_RETRY : OF_REJECT;
    }
    if (g_api->emit(call, "out", NULL, 0, payload, plen, NULL, 0) != 0)
        return OF_RETRY;
    return OF_OK;
}

static const of_stage_descriptor descriptor = {
    OF_DESCRIPTOR_HEADER,
    .name = "dbtap",
    .version = "1.0.0",
    .description = "test stage: one database row per event, forwarded on out",
    .outputs = outputs,
    .init = dbtap_init,
    .process = dbtap_process,
    .flags = OF_STAGE_DATABASE,
    .migrations = migrations,
};

OF_STAGE_DEFINE(descriptor)
