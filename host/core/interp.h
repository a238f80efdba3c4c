/* ${VAR} and ${VAR:-default} interpolation of configuration values. `$$` stands for a literal
 * `$`. A variable that is unset (or, with :-, unset or empty) and has no default is an error, as
 * is an unterminated `${` or a bad variable name. */
#ifndef OF_INTERP_H
#define OF_INTERP_H

#include <stddef.h>

/* Rules (in the spirit of the shell):
 *  - ${NAME} is the variable's value; NAME is [A-Za-z_][A-Za-z0-9_]*.
 *  - ${NAME:-default} is the value when NAME is set and not empty, the default otherwise.
 *  - The default is literal text up to the first `}`: it is not expanded again, so it cannot
 *    contain `}`, and a `${` inside it is an error (nesting is not supported).
 *  - $$ is a literal `$`; a `$` followed by anything else than `{` or `$` stays as it is.
 *  - Other forms (${NAME-x}, ${NAME:?x}, ${}) are errors, as is an unterminated `${`.
 *  - The result is at most OF_INTERP_MAX_BYTES long. */
#define OF_INTERP_MAX_BYTES (1024u * 1024u)

/* Looks a variable up; NULL when unset. The default uses getenv. */
typedef const char *(*of_env_lookup)(const char *name, void *opaque);

/* Expands `in` (len bytes). On success returns a malloc'ed NUL-terminated string (length in
 * *out_len when non-NULL). On failure returns NULL and writes the reason to errstr, with
 * *err_offset set to the byte offset in `in` where the problem starts. */
char *of_interp(const char *in, size_t len, of_env_lookup lookup, void *opaque, size_t *out_len,
                size_t *err_offset, char *errstr, size_t errstr_size);

#endif
