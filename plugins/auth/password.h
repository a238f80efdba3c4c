/*
 * auth plugin: passwords (yescrypt through libxcrypt) and the checks on what a user types when
 * registering (email, password, display name). Pure functions: no host, no globals, safe from
 * any thread; unit-tested on their own (tests/unit/test_auth_password.c).
 *
 * The checks return NULL when the value is acceptable, or a short reason ("must contain exactly
 * one '@'") that the caller prefixes with the field's name. A reason never quotes the value.
 */
#ifndef AUTH_PASSWORD_H
#define AUTH_PASSWORD_H

#include <stddef.h>

/* Longer passwords are refused before any hashing: libxcrypt hashes at most
 * CRYPT_MAX_PASSPHRASE_SIZE - 1 = 511 bytes (crypt_r fails beyond), and a longer limit would
 * need a pre-hash that makes the stored hashes non-standard. */
#define AUTH_PASSWORD_MAX_BYTES    511
#define AUTH_PASSWORD_MIN_FLOOR    8   /* min_password_length may not go below this */
#define AUTH_EMAIL_MAX             254 /* RFC 5321: a path of 256 octets with its angle brackets */
#define AUTH_EMAIL_LOCAL_MAX       64  /* RFC 5321 4.5.3.1.1 */
#define AUTH_EMAIL_LABEL_MAX       63  /* RFC 1035 */
#define AUTH_DISPLAY_NAME_MAX      200 /* characters (code points): VARCHAR(200) in utf8mb4 */
#define AUTH_HASH_MAX              255 /* the password_hash column */
#define AUTH_YESCRYPT_COST_MIN     1
#define AUTH_YESCRYPT_COST_MAX     11
#define AUTH_YESCRYPT_COST_DEFAULT 5

/* Hashes a password with a fresh random salt: "$y$..." into out (at least AUTH_HASH_MAX + 1
 * bytes). cost is yescrypt's (1..11). 0, or -1 with a reason in errstr (never the password). */
int auth_password_hash(const char *password, int cost, char *out, size_t out_size, char *errstr,
                       size_t errstr_size);

/* 1 when password hashes to stored_hash (the full strings compared in constant time), else 0;
 * a stored hash that is not a yescrypt hash never matches. Takes as long as hashing. */
int auth_password_verify(const char *password, const char *stored_hash);

/* 1 when the two strings are equal. The time taken depends only on their lengths. */
int auth_const_time_equal(const char *a, const char *b);

/* A password for registration: no NUL, valid UTF-8, at least min_chars characters (code
 * points; never fewer than AUTH_PASSWORD_MIN_FLOOR), at most AUTH_PASSWORD_MAX_BYTES bytes.
 * Spaces and any other characters are fine. Too short gives AUTH_PASSWORD_TOO_SHORT (the caller
 * adds the minimum). */
#define AUTH_PASSWORD_TOO_SHORT "is too short"
const char *auth_check_password(const char *password, size_t len, int min_chars);

/* An address as a user types it: printable ASCII only (no spaces, no controls), at most 254
 * bytes, exactly one '@'; a local part of 1..64 bytes as an RFC 5322 dot-atom (quoted local
 * parts are refused); a domain of at least two dot-separated labels of letters, digits and
 * hyphens (1..63 each, no hyphen at either end; internationalised domains in their xn-- form;
 * address literals refused). */
const char *auth_check_email(const char *email, size_t len);

/* Copies email lower-cased (ASCII) into out; 0, or -1 when it does not fit. */
int auth_email_normalize(const char *email, size_t len, char *out, size_t out_size);

/* A display name: valid UTF-8, 1..200 characters, no control characters (C0, DEL, C1), no
 * bidirectional overrides or isolates, no line or paragraph separators, and not only spaces. */
const char *auth_check_display_name(const char *name, size_t len);

/* Number of code points in s[0..len) when it is valid UTF-8 (no overlong forms, surrogates or
 * values past U+10FFFF); (size_t)-1 otherwise. */
size_t auth_utf8_count(const char *s, size_t len);

#endif
