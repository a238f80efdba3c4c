/*
 * orderflow stage SDK: the public ABI a stage plugin is written against.
 *
 * A stage is a shared object that exports exactly one symbol, `orderflow_stage_entry`, which
 * returns a pointer to a constant descriptor (use OF_STAGE_DEFINE). The host dlopen()s the file,
 * checks the descriptor's ABI version and build signature before it calls anything else, then
 * validates the stage's `config:` against the descriptor's option table and calls `init` with a
 * table of host functions (see host_api.h). A plugin links against nothing of the host: every
 * service it uses reaches it through that table.
 *
 * Compatibility rules:
 *  - OF_ABI_MAJOR changes when an existing field or function changes meaning or layout; the
 *    host refuses a plugin built for another major.
 *  - OF_ABI_MINOR grows when fields are appended to the descriptor or functions to the host
 *    table. Structures carry their own size so that either side can tell what the other has.
 */
#ifndef ORDERFLOW_STAGE_H
#define ORDERFLOW_STAGE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <orderflow/host_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OF_ABI_MAJOR 1
#define OF_ABI_MINOR 6

/* Name of the one symbol the loader looks up. */
#define OF_STAGE_ENTRY_SYMBOL "orderflow_stage_entry"

/* SDK feature flags recorded in the build signature. A host refuses a plugin that was built
 * with a feature flag it does not have (the layout of shared structures would differ). */
#define OF_FEATURE_BASE 0x1u
#define OF_SDK_FEATURES (OF_FEATURE_BASE)

/* Build signature: facts about the compiler and SDK the plugin was built with that must match
 * the host's, in the spirit of NGINX's module signature. Filled by OF_BUILD_SIGNATURE_INIT in the
 * plugin's own translation unit so that sizeof() is the plugin compiler's answer. */
typedef struct of_build_signature {
    uint8_t pointer_size; /* sizeof(void *) */
    uint8_t time_t_size;  /* sizeof(time_t) */
    uint8_t size_t_size;  /* sizeof(size_t) */
    uint8_t big_endian;   /* 1 when built for a big-endian target */
    uint32_t features;    /* OF_SDK_FEATURES of the SDK headers used */
} of_build_signature;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define OF_BIG_ENDIAN_ 1
#else
#define OF_BIG_ENDIAN_ 0
#endif

#define OF_BUILD_SIGNATURE_INIT                                                                    \
    {                                                                                              \
        (uint8_t)sizeof(void *), (uint8_t)sizeof(time_t), (uint8_t)sizeof(size_t), OF_BIG_ENDIAN_, \
            OF_SDK_FEATURES                                                                        \
    }

/* ---------------------------------------------------------------------------------------------
 * Options: a stage declares its typed configuration in a table; the host validates a stage's
 * `config:` against it (types, bounds, enums, required keys, unknown keys) before `init`, fills
 * in defaults, and prints the table in `orderflow plugins`.
 * ------------------------------------------------------------------------------------------- */

typedef enum of_option_type {
    OF_OPT_STRING = 1,
    OF_OPT_INT = 2,      /* int64; "42", "-7" */
    OF_OPT_BOOL = 3,     /* true/false, yes/no, on/off */
    OF_OPT_DOUBLE = 4,   /* "0.25", "1e3" */
    OF_OPT_DURATION = 5, /* "250ms", "1.5s", "2m", "1h"; read as milliseconds; a bare number is
                            refused (no silent unit) */
    OF_OPT_SIZE = 6,     /* "512", "64KiB", "10MB", "1GiB"; read as bytes */
    OF_OPT_ENUM = 7,     /* one of enum_values */
    OF_OPT_LIST = 8      /* a YAML sequence of strings (or a comma-separated string) */
} of_option_type;

enum {
    OF_OPT_REQUIRED = 1u << 0, /* must be given in config: (a default makes no sense then) */
    OF_OPT_SECRET = 1u << 1,   /* never printed, never logged */
    OF_OPT_HAS_MIN = 1u << 2,  /* min applies (int, double, duration in ms, size in bytes, list
                                  length) */
    OF_OPT_HAS_MAX = 1u << 3   /* max applies, same units */
};

/* One option. A table is an array terminated by an entry whose name is NULL. Every pointer is
 * owned by the plugin and must stay valid while the plugin is loaded (string literals do). */
typedef struct of_option {
    const char *name;               /* [a-z0-9_]+, unique in the table */
    of_option_type type;            /* */
    const char *default_value;      /* textual default, parsed like a config value; NULL: none */
    const char *description;        /* one line, shown by `orderflow plugins` */
    uint32_t flags;                 /* OF_OPT_* */
    double min;                     /* with OF_OPT_HAS_MIN */
    double max;                     /* with OF_OPT_HAS_MAX */
    const char *const *enum_values; /* OF_OPT_ENUM: NULL-terminated list of allowed values */
} of_option;

/* ---------------------------------------------------------------------------------------------
 * Opaque handles. All are owned by the host; a plugin never frees them.
 * ------------------------------------------------------------------------------------------- */

/* One configured stage (a plugin instance in a pipeline). Valid from init until shutdown
 * returns. */
typedef struct of_stage of_stage;

/* A stage's validated configuration. Valid during init only: copy what you keep. */
typedef struct of_config of_config;

/* One call of process(): the input event and what the stage emits in answer. Valid during that
 * call only; the host may reuse it for the next event. */
typedef struct of_call of_call;

struct of_host_api;

/* of_status, what process() returns, is declared in host_api.h. */

/* Headers the host adds to an event it sends to a stage's dead-letter topic (besides the
 * event's own key, payload and headers), so the event can be inspected and replayed. */
#define OF_DLQ_H_TOPIC     "of_dlq_topic"     /* where it was read */
#define OF_DLQ_H_PARTITION "of_dlq_partition" /* decimal */
#define OF_DLQ_H_OFFSET    "of_dlq_offset"    /* decimal */
#define OF_DLQ_H_PIPELINE  "of_dlq_pipeline"
#define OF_DLQ_H_STAGE     "of_dlq_stage"
#define OF_DLQ_H_ATTEMPTS  "of_dlq_attempts" /* tries made, decimal */
#define OF_DLQ_H_ERROR     "of_dlq_error"    /* the reason given with set_reason */
#define OF_DLQ_H_STATUS    "of_dlq_status"   /* "rejected" or "retries-exhausted" */
/* Present when the broker refused the dead letter whole (too large, say) and it was published
 * without its payload, which stays in the input topic at the position the headers give. */
#define OF_DLQ_H_PAYLOAD_DROPPED "of_dlq_payload_dropped"

/* init: called once per configured stage before any event.
 *   stage   - the host's handle for this stage; keep it for logging and metrics.
 *   api     - the host function table; valid until the plugin is unloaded. Check api->size or
 *             OF_API_HAS before calling a function added after ABI 1.0.
 *   config  - validated options with defaults applied; valid only during this call.
 *   instance- out: the plugin's own state, handed back to process and shutdown. May be NULL.
 *   errstr  - on failure, write a NUL-terminated reason of at most errstr_size bytes.
 * Return 0 on success. On failure, do not leave anything allocated: the host will not call
 * shutdown for this stage, and it shuts down the stages already initialised, in reverse order. */
typedef int (*of_init_fn)(of_stage *stage, const struct of_host_api *api, const of_config *config,
                          void **instance, char *errstr, size_t errstr_size);

/* process: one input event. Called from the stage's worker threads: calls for events of the
 * same key never overlap and arrive in the key's order, but calls for different keys run
 * concurrently, so shared state in `instance` needs its own locking. */
typedef of_status (*of_process_fn)(void *instance, of_call *call);

/* process_batch (ABI 1.5, optional, database stages only): several input events that share one
 * transaction, handed over at once so the stage can do its database work for all of them in a
 * few set-based statements (one SELECT ... WHERE x IN (...) instead of one per event). Called
 * instead of process() when the host has more than one event for the transaction (the pipeline's
 * `batch:`); a single event still goes through process(), so both must do the same thing.
 *   calls  - n calls in queue order (a key's events in its order); each is an ordinary of_call
 *            with its own event, emits, reason and cache writes. The database functions work
 *            with any of them: they share one transaction. Host-owned, valid during this call.
 *   n      - at least 2.
 *   status - out: n entries, status[i] is what process() would have returned for calls[i]; the
 *            host sets them all to OF_RETRY before the call, so an entry left alone is a retry.
 * The host commits the calls before the first whose status is not OF_OK. When there is such a
 * call k, the transaction rolls back, calls 0..k-1 come back in a new process_batch (or
 * process() for one) without it, k goes on under the retry policy as if process() had said so,
 * and the calls after k come in a later transaction: a stage may run an event more than once,
 * as after any rollback. One exception: when the transaction's last statement failed as the
 * call returns, call k's status is not taken as its own (any event of the set may have caused a
 * failure of a statement they share): every event from k on is tried alone from its first try,
 * where the culprit answers for itself. Same threading rules as process(). */
typedef void (*of_process_batch_fn)(void *instance, of_call *const *calls, size_t n,
                                    of_status *status);

/* shutdown: the last call for a stage; after in-flight events have drained. Free `instance`. */
typedef void (*of_shutdown_fn)(void *instance);

/* The descriptor a plugin returns from its entry symbol. Constant, owned by the plugin, valid
 * while the plugin is loaded. Fields are only ever appended; struct_size tells the host which
 * ones this plugin has. */
typedef struct of_stage_descriptor {
    uint32_t abi_major;           /* OF_ABI_MAJOR at build time */
    uint32_t abi_minor;           /* OF_ABI_MINOR at build time */
    uint32_t struct_size;         /* sizeof(of_stage_descriptor) at build time */
    of_build_signature signature; /* OF_BUILD_SIGNATURE_INIT */
    const char *name;             /* unique plugin name, [a-z0-9][a-z0-9_-]*, at most 63 chars */
    const char *version;          /* the plugin's own version, e.g. "1.2.0" */
    const char *description;      /* one line */
    const of_option *options;     /* option table, NULL-name terminated; NULL for none */
    const char *const *outputs;   /* NULL-terminated names of the outputs it emits on; each
                                     must be mapped to a topic in the pipeline */
    of_init_fn init;              /* may be NULL: no state */
    of_process_fn process;        /* required */
    of_shutdown_fn shutdown;      /* may be NULL */
    uintptr_t flags;              /* ABI 1.1: OF_STAGE_* (0 for a 1.0 plugin: the slot was NULL) */
    const struct of_migration *migrations; /* ABI 1.1: the stage's schema, or NULL */
    /* ABI 1.3: the event types (ce_type header values) the stage acts on, NULL-terminated, at
     * most OF_ACCEPTS_MAX of at most 127 bytes each; NULL for every type. The host acknowledges
     * an input whose ce_type is none of them without calling process(): no transaction, no inbox
     * row, no try (counted in orderflow_stage_events_skipped_total). Inputs without a ce_type
     * still reach process(), which says what is wrong with them. For stages that read topics
     * carrying other stages' events too; a stage that must refuse unknown types leaves it NULL. */
    const char *const *accepts;
    /* ABI 1.5: several events of one transaction at once (see of_process_batch_fn); NULL to get
     * them one by one through process(). Needs OF_STAGE_DATABASE. */
    of_process_batch_fn process_batch;
    void *reserved[4]; /* spare slots for growth within ABI 1; must be NULL */
} of_stage_descriptor;

#define OF_ACCEPTS_MAX 64

#define OF_DESCRIPTOR_HEADER                                                                       \
    .abi_major = OF_ABI_MAJOR, .abi_minor = OF_ABI_MINOR,                                          \
    .struct_size = (uint32_t)sizeof(of_stage_descriptor), .signature = OF_BUILD_SIGNATURE_INIT

#if defined(__GNUC__)
#define OF_EXPORT __attribute__((visibility("default")))
#else
#define OF_EXPORT
#endif

/* One schema migration a stage ships (ABI 1.1). `orderflow migrate` and the daemon at start
 * apply the ones a database lacks, in version order, each once, recorded per plugin; a
 * migration already applied must never change (its checksum is kept and compared). An array
 * ends with an entry whose version is 0. One migration may hold several statements separated by
 * `;` at the end of a line. */
typedef struct of_migration {
    int version;      /* 1, 2, 3 ... strictly increasing */
    const char *name; /* short description, e.g. "create orders" */
    const char *sql;  /* MariaDB DDL/DML */
} of_migration;

/* Descriptor flags (ABI 1.1). */
enum {
    /* The stage uses the database: each event's work runs in a host transaction that also
     * records the event as applied (a redelivery is skipped) and writes what the stage emits to
     * the outbox; the host commits it when process() returns OF_OK. Needs a database in the host
     * configuration; without one the pipeline is refused. */
    OF_STAGE_DATABASE = 1u << 0
};
#define OF_STAGE_KNOWN_FLAGS (OF_STAGE_DATABASE)

typedef const of_stage_descriptor *(*of_stage_entry_fn)(void);

/* Defines the entry symbol returning `desc` (an of_stage_descriptor with static storage). */
#define OF_STAGE_DEFINE(desc)                                                                      \
    OF_EXPORT const of_stage_descriptor *orderflow_stage_entry(void);                              \
    OF_EXPORT const of_stage_descriptor *orderflow_stage_entry(void)                               \
    {                                                                                              \
        return &(desc);                                                                            \
    }

#ifdef __cplusplus
}
#endif

#endif /* ORDERFLOW_STAGE_H */
