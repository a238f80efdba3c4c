/* The db_* functions of the host table: each runs in the transaction the host opened for the
 * call (call->tx). Without one (no database configured, or a stage without OF_STAGE_DATABASE)
 * they fail with OF_DB_ERR_NOT_CONFIGURED. Bad input from a plugin (NULL pointers) fails the
 * call instead of crashing the host. */
#include "db.h"

#include "stage_runtime.h"

#include <stddef.h>

static of_db_tx *tx_of(of_call *call)
{
    return call ? call->tx : NULL;
}

int64_t of_api_db_exec(of_call *call, const char *sql, const of_db_value *params, size_t n_params)
{
    of_db_tx *tx = tx_of(call);
    return tx ? of_db_tx_exec(tx, sql, params, n_params) : -1;
}

of_db_rows *of_api_db_query(of_call *call, const char *sql, const of_db_value *params,
                            size_t n_params)
{
    of_db_tx *tx = tx_of(call);
    return tx ? of_db_tx_query(tx, sql, params, n_params) : NULL;
}

int of_api_db_rows_next(of_db_rows *rows)
{
    return of_db_rows_next(rows);
}

size_t of_api_db_rows_columns(const of_db_rows *rows)
{
    return of_db_rows_columns(rows);
}

int of_api_db_rows_get(const of_db_rows *rows, size_t column, of_db_value *out)
{
    return of_db_rows_get(rows, column, out);
}

void of_api_db_rows_free(of_db_rows *rows)
{
    of_db_rows_free(rows);
}

int64_t of_api_db_last_insert_id(of_call *call)
{
    return of_db_tx_last_insert_id(tx_of(call));
}

of_db_error of_api_db_last_error(of_call *call, const char **message)
{
    const char *msg = NULL;
    of_db_error e = of_db_tx_error(tx_of(call), &msg);
    if (message)
        *message = msg ? msg : "";
    return e;
}
