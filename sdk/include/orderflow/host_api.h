/*
 * orderflow stage SDK: the host function table.
 *
 * The host hands a plugin this table in init(); it is the plugin's only way to reach the host
 * (the plugin links against nothing of it). The table is versioned and append-only: a function
 * added in a later minor version sits after the ones before it, and `size` says how far the
 * table a host passed reaches. Test with OF_API_HAS(api, fn) before calling a function newer
 * than ABI 1.0; a host may also leave a slot NULL when it does not offer that service (for
 * example a database function on a host configured without a database).
 *
 * Ownership, unless a function says otherwise:
 *  - pointers the host returns are owned by the host and valid for the lifetime the function
 *    names (usually "during this process() call");
 *  - pointers the plugin passes in are only read during the call; the host copies what it keeps.
 */
#ifndef ORDERFLOW_HOST_API_H
#define ORDERFLOW_HOST_API_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct of_stage of_stage;
typedef struct of_config of_config;
typedef struct of_call of_call;

typedef enum of_log_level {
    OF_LOG_ERROR = 0,
    OF_LOG_WARN = 1,
    OF_LOG_INFO = 2,
    OF_LOG_DEBUG = 3
} of_log_level;

/* A header on an event: a name and a byte value. */
typedef struct of_header {
    const char *name;  /* NUL-terminated */
    const void *value; /* value_len bytes, not necessarily NUL-terminated */
    size_t value_len;
} of_header;

/* A custom metric a plugin declares. Owned by the host, valid until the plugin is unloaded. */
typedef struct of_counter of_counter;
typedef struct of_histogram of_histogram;

typedef struct of_host_api {
    uint32_t abi_major; /* the host's OF_ABI_MAJOR */
    uint32_t abi_minor; /* the host's OF_ABI_MINOR */
    uint32_t size;      /* sizeof(of_host_api) in the host: which functions exist */

    /* ---- memory: the host's allocator, so memory can cross the boundary safely ---- */
    void *(*alloc)(size_t size);              /* NULL on failure; free with api->free */
    void *(*calloc)(size_t n, size_t size);   /* zeroed */
    void *(*realloc)(void *ptr, size_t size); /* as realloc(3) */
    void (*free)(void *ptr);                  /* NULL is fine */
    char *(*strdup)(const char *s);           /* free with api->free */

    /* ---- logging: the host adds time, pipeline and stage; secrets are the caller's duty ---- */
    void (*log)(of_stage *stage, of_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    int (*log_enabled)(of_stage *stage, of_log_level level); /* skip costly formatting */

    /* ---- configuration: valid only inside init; `name` must be in the option table ---- */
    /* String, enum or secret value; NULL when unset and without default. Valid during init. */
    const char *(*config_string)(const of_config *cfg, const char *name);
    int64_t (*config_int)(const of_config *cfg, const char *name);
    int (*config_bool)(const of_config *cfg, const char *name);
    double (*config_double)(const of_config *cfg, const char *name);
    int64_t (*config_duration_ms)(const of_config *cfg, const char *name);
    uint64_t (*config_size)(const of_config *cfg, const char *name);
    /* Index of an enum value in the option's enum_values; -1 when unset. */
    int (*config_enum)(const of_config *cfg, const char *name);
    /* Items of a list option; index out of range gives NULL. Valid during init. */
    size_t (*config_list_count)(const of_config *cfg, const char *name);
    const char *(*config_list_item)(const of_config *cfg, const char *name, size_t index);
    /* 1 when the option was given in config: (not only defaulted). */
    int (*config_is_set)(const of_config *cfg, const char *name);

    /* ---- the input event of a process() call: pointers valid during that call ---- */
    const void *(*event_key)(const of_call *call, size_t *len);     /* NULL, 0 when keyless */
    const void *(*event_payload)(const of_call *call, size_t *len); /* never NULL; may be empty */
    /* Value of the first header with this name, or NULL. */
    const void *(*event_header)(const of_call *call, const char *name, size_t *len);
    size_t (*event_header_count)(const of_call *call);
    /* Header at index (0 .. count-1); returns 0 and fills *out, or -1 out of range. */
    int (*event_header_at)(const of_call *call, size_t index, of_header *out);
    const char *(*event_topic)(const of_call *call); /* the topic it was read from */
    int32_t (*event_partition)(const of_call *call);
    int64_t (*event_offset)(const of_call *call);
    /* 1 on the first try, 2 on the first retry, ... */
    int (*event_attempt)(const of_call *call);

    /* ---- emitting: events are buffered and published only if process() returns OF_OK ---- */
    /* Emit on a declared output (descriptor.outputs). key may be NULL (the input's key is kept,
     * so one order's events stay on one partition). Headers are copied; the host adds the
     * CloudEvents and traceparent headers the output inherits from the input unless given here.
     * Returns 0, or -1 for an unknown output (also logged) or no memory. */
    int (*emit)(of_call *call, const char *output, const void *key, size_t key_len,
                const void *payload, size_t payload_len, const of_header *headers,
                size_t header_count);
    /* The reason recorded with OF_REJECT or OF_RETRY; copied; the last call wins. */
    void (*set_reason)(of_call *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

    /* ---- custom metrics: register in init, update from any thread ---- */
    /* name: [a-z_][a-z0-9_]*; the host prefixes it and labels it with pipeline and stage.
     * Registering the same name twice returns the same metric. NULL on bad name. */
    of_counter *(*counter_register)(of_stage *stage, const char *name, const char *help);
    void (*counter_add)(of_counter *counter, double delta); /* delta >= 0 */
    /* bounds: ascending upper bounds, copied; count at most 32. */
    of_histogram *(*histogram_register)(of_stage *stage, const char *name, const char *help,
                                        const double *bounds, size_t count);
    void (*histogram_observe)(of_histogram *histogram, double value);

    /* ---- identity ---- */
    const char *(*stage_name)(const of_stage *stage);    /* valid until shutdown */
    const char *(*pipeline_name)(const of_stage *stage); /* valid until shutdown */

    /* Later minor versions append database, cache and HTTP functions here. */
} of_host_api;

/* True when the table a host passed has `fn` and it is not NULL. */
#define OF_API_HAS(api, fn)                                                                        \
    ((api) != NULL && offsetof(of_host_api, fn) + sizeof((api)->fn) <= (size_t)(api)->size &&      \
     (api)->fn != NULL)

#ifdef __cplusplus
}
#endif

#endif /* ORDERFLOW_HOST_API_H */
