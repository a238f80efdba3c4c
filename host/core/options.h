/* Typed stage options: parsing of option values (durations, sizes, bounds, enums, lists), and
 * validation of a stage's `config:` mapping against its plugin's option table, producing the
 * of_config that init() reads through the host table. */
#ifndef OF_OPTIONS_H
#define OF_OPTIONS_H

#include <orderflow/stage.h>

#include "diag.h"
#include "yamltree.h"

#include <stdint.h>

/* Parsers for one textual value. Return 0, or -1 with a reason in errstr ("expected a duration
 * such as 250ms, 1.5s or 2m; got '12'"). Durations and sizes refuse negative values and
 * overflow. */
int of_parse_int(const char *s, int64_t *out, char *errstr, size_t errstr_size);
int of_parse_bool(const char *s, int *out, char *errstr, size_t errstr_size);
int of_parse_double(const char *s, double *out, char *errstr, size_t errstr_size);
/* Units: ms, s, m, h (and us rounded up to 1 ms? no: refused, below resolution). Fractions
 * allowed ("1.5s"). A bare number is refused. Result in milliseconds. */
int of_parse_duration_ms(const char *s, int64_t *out, char *errstr, size_t errstr_size);
/* Units: none (bytes), B, KB/MB/GB (1000-based), KiB/MiB/GiB (1024-based), case-sensitive
 * as written here; also K/M/G meaning KiB/MiB/GiB. Result in bytes. */
int of_parse_size(const char *s, uint64_t *out, char *errstr, size_t errstr_size);

const char *of_option_type_name(of_option_type t); /* "string", "int", ... */

/* One validated value. */
typedef struct of_config_value {
    const of_option *option; /* points into the plugin's table */
    int is_set;              /* given in config: */
    int has_value;           /* given or defaulted */
    char *text;              /* canonical text (strings, enums; others as given) */
    int64_t i;               /* int, duration (ms), bool (0/1), enum index */
    uint64_t size;           /* size in bytes */
    double d;                /* double */
    char **list;             /* list items */
    size_t list_count;
} of_config_value;

/* The SDK's opaque of_config. */
struct of_config {
    of_config_value *values; /* one per option in the table, in table order */
    size_t count;
};

/* Checks an option table itself (names well-formed and unique, defaults parse and are within
 * bounds, enums have values). Used by the loader; returns 0 or -1 with errstr. */
int of_options_check_table(const of_option *table, char *errstr, size_t errstr_size);

/* Validates `config` (a mapping node, or NULL for none) against the table: unknown keys (with
 * the allowed ones listed), wrong types, out-of-range values, bad enum values, missing required
 * options. Every problem goes to diag at the node's position, prefixed with `what` (for
 * example "stage 'pay' config"). Returns a config with defaults applied, or NULL when there
 * was an error. */
of_config *of_config_from_yaml(const of_option *table, const of_ynode *config, const char *file,
                               const char *what, of_diag *diag);

/* Same from key/value strings (the test harness and the CLI); a list value is comma-separated.
 * keys/values are `count` long. */
of_config *of_config_from_pairs(const of_option *table, const char *const *keys,
                                const char *const *values, size_t count, char *errstr,
                                size_t errstr_size);

void of_config_free(of_config *cfg);
const of_config_value *of_config_find(const of_config *cfg, const char *name);

/* Like of_config_from_yaml; a missing required option is reported at line:column when `config`
 * is NULL (the position of the stage that has no config:). */
of_config *of_config_from_yaml_at(const of_option *table, const of_ynode *config, const char *file,
                                  int line, int column, const char *what, of_diag *diag);

/* Writes a one-line human description of an option's type and bounds, e.g.
 * "duration, 10ms..1m" or "enum: a|b|c". */
void of_option_describe_type(const of_option *opt, char *buf, size_t size);

/* Helpers shared by the configuration validators. */
/* Levenshtein edit distance (byte-wise); SIZE_MAX for strings longer than 256 bytes. */
size_t of_levenshtein(const char *a, const char *b);
/* The candidate closest to `word` when its edit distance is at most 2 (and smaller than the
 * length of both strings), else NULL. */
const char *of_did_you_mean(const char *word, const char *const *candidates, size_t n);
/* Formats milliseconds as the shortest exact duration ("1m", "1500ms"), bytes as a size
 * ("64KiB", "10MB", "100"). */
void of_format_duration_ms(int64_t ms, char *buf, size_t size);
void of_format_size(uint64_t bytes, char *buf, size_t size);

#endif
