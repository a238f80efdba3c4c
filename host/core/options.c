/* Typed stage options: value parsers, option table checks and config validation. */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* More than this many options means the table is most likely missing its terminator. */
#define OF_OPTIONS_MAX 1024

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

size_t of_levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 256 || lb > 256)
        return SIZE_MAX;
    size_t row[257];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *of_did_you_mean(const char *word, const char *const *candidates, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3;
    if (!word)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!candidates[i])
            continue;
        size_t d = of_levenshtein(word, candidates[i]);
        /* A hint must keep part of the word: "zz" is not a typo of "a". */
        size_t shorter =
            strlen(word) < strlen(candidates[i]) ? strlen(word) : strlen(candidates[i]);
        if (d < best_d && d < shorter) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best;
}

void of_format_duration_ms(int64_t ms, char *buf, size_t size)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, size, "%" PRId64 "h", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, size, "%" PRId64 "m", ms / 60000);
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, size, "%" PRId64 "s", ms / 1000);
    else
        snprintf(buf, size, "%" PRId64 "ms", ms);
}

void of_format_size(uint64_t bytes, char *buf, size_t size)
{
    static const char *const bin[] = {"TiB", "GiB", "MiB", "KiB"};
    static const char *const dec[] = {"TB", "GB", "MB", "KB"};
    if (bytes != 0) {
        for (int i = 0; i < 4; i++) {
            uint64_t m = 1ull << (10 * (4 - i));
            if (bytes % m == 0) {
                snprintf(buf, size, "%" PRIu64 "%s", bytes / m, bin[i]);
                return;
            }
        }
        uint64_t m = 1000000000000ull;
        for (int i = 0; i < 4; i++, m /= 1000) {
            if (bytes % m == 0) {
                snprintf(buf, size, "%" PRIu64 "%s", bytes / m, dec[i]);
                return;
            }
        }
    }
    snprintf(buf, size, "%" PRIu64, bytes);
}

/* How a value appears in a message: quoted and shortened, or <secret>. */
static void shown_value(const char *s, int secret, char *buf, size_t size)
{
    if (secret) {
        snprintf(buf, size, "<secret>");
        return;
    }
    size_t len = strlen(s);
    if (len > 80)
        snprintf(buf, size, "'%.77s...'", s);
    else
        snprintf(buf, size, "'%s'", s);
}

static int fail(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Parsers
 * ------------------------------------------------------------------------------------------- */

static int parse_int(const char *s, int secret, int64_t *out, char *errstr, size_t errstr_size)
{
    char got[96];
    shown_value(s, secret, got, sizeof(got));
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return fail(errstr, errstr_size, "expected an integer such as 42 or -7; got %s", got);
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0')
        return fail(errstr, errstr_size, "expected an integer such as 42 or -7; got %s", got);
    if (errno == ERANGE)
        return fail(errstr, errstr_size, "integer out of range (%" PRId64 "..%" PRId64 "); got %s",
                    INT64_MIN, INT64_MAX, got);
    *out = (int64_t)v;
    return 0;
}

int of_parse_int(const char *s, int64_t *out, char *errstr, size_t errstr_size)
{
    return parse_int(s, 0, out, errstr, errstr_size);
}

static int parse_bool(const char *s, int secret, int *out, char *errstr, size_t errstr_size)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    char got[96];
    shown_value(s, secret, got, sizeof(got));
    return fail(errstr, errstr_size, "expected a boolean (true/false, yes/no, on/off); got %s",
                got);
}

int of_parse_bool(const char *s, int *out, char *errstr, size_t errstr_size)
{
    return parse_bool(s, 0, out, errstr, errstr_size);
}

static int parse_double(const char *s, int secret, double *out, char *errstr, size_t errstr_size)
{
    char got[96];
    shown_value(s, secret, got, sizeof(got));
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
        return fail(errstr, errstr_size, "expected a number such as 0.25 or 1e3; got %s", got);
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (*end != '\0')
        return fail(errstr, errstr_size, "expected a number such as 0.25 or 1e3; got %s", got);
    if (!isfinite(v))
        return fail(errstr, errstr_size, "expected a finite number; got %s (out of range)", got);
    *out = v;
    return 0;
}

int of_parse_double(const char *s, double *out, char *errstr, size_t errstr_size)
{
    return parse_double(s, 0, out, errstr, errstr_size);
}

/* Scans an unsigned decimal number "12", "1.5", ".5", "3." at s. Returns the number of
 * characters consumed (0 when there is no number). The integer part goes to *ip (*overflow set
 * when it does not fit in uint64), the first `max_frac` fraction digits to *frac and *frac_digits;
 * *nonzero tells whether any digit was not 0. */
static size_t scan_decimal(const char *s, uint64_t *ip, int *overflow, uint64_t *frac,
                           int *frac_digits, int max_frac, int *nonzero)
{
    size_t i = 0, digits = 0;
    *ip = 0;
    *overflow = 0;
    *frac = 0;
    *frac_digits = 0;
    *nonzero = 0;
    for (; isdigit((unsigned char)s[i]); i++, digits++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d)
            *nonzero = 1;
        if (*ip > (UINT64_MAX - d) / 10)
            *overflow = 1;
        else
            *ip = *ip * 10 + d;
    }
    if (s[i] == '.') {
        size_t j = i + 1;
        for (; isdigit((unsigned char)s[j]); j++, digits++) {
            unsigned d = (unsigned)(s[j] - '0');
            if (d)
                *nonzero = 1;
            if (*frac_digits < max_frac) {
                *frac = *frac * 10 + d;
                (*frac_digits)++;
            }
        }
        if (j > i + 1 || digits > 0)
            i = j;
    }
    return digits ? i : 0;
}

static uint64_t pow10u(int n)
{
    uint64_t r = 1;
    while (n-- > 0)
        r *= 10;
    return r;
}

static int parse_duration(const char *s, int secret, int64_t *out, char *errstr, size_t errstr_size)
{
    char got[96];
    shown_value(s, secret, got, sizeof(got));
    static const char expected[] = "expected a duration such as 250ms, 1.5s, 2m or 1h";
    if (*s == '-')
        return fail(errstr, errstr_size, "a duration cannot be negative; got %s", got);
    uint64_t ip, frac;
    int ovf, fdig, nonzero;
    size_t n = scan_decimal(s, &ip, &ovf, &frac, &fdig, 9, &nonzero);
    if (n == 0)
        return fail(errstr, errstr_size, "%s; got %s", expected, got);
    const char *unit = s + n;
    uint64_t mult;
    if (*unit == '\0')
        return fail(errstr, errstr_size,
                    "%s; got %s (a bare number is ambiguous: add a unit ms, s, m or h)", expected,
                    got);
    if (strcmp(unit, "ms") == 0)
        mult = 1;
    else if (strcmp(unit, "s") == 0)
        mult = 1000;
    else if (strcmp(unit, "m") == 0)
        mult = 60000;
    else if (strcmp(unit, "h") == 0)
        mult = 3600000;
    else if (strcmp(unit, "us") == 0 || strcmp(unit, "ns") == 0 || strcmp(unit, "\xc2\xb5s") == 0)
        return fail(errstr, errstr_size,
                    "%s; got %s (units below a millisecond are not supported: use ms, s, m or h)",
                    expected, got);
    else
        return fail(errstr, errstr_size, "%s; got %s (unknown unit; use ms, s, m or h)", expected,
                    got);
    uint64_t whole;
    if (ovf || __builtin_mul_overflow(ip, mult, &whole) || whole > (uint64_t)INT64_MAX)
        return fail(errstr, errstr_size, "duration too large (at most %" PRId64 "ms); got %s",
                    INT64_MAX, got);
    uint64_t part = fdig ? frac * mult / pow10u(fdig) : 0;
    if (whole + part > (uint64_t)INT64_MAX)
        return fail(errstr, errstr_size, "duration too large (at most %" PRId64 "ms); got %s",
                    INT64_MAX, got);
    if (nonzero && whole + part == 0)
        return fail(errstr, errstr_size,
                    "duration shorter than the 1ms resolution; got %s (write 0ms or at least 1ms)",
                    got);
    *out = (int64_t)(whole + part);
    return 0;
}

int of_parse_duration_ms(const char *s, int64_t *out, char *errstr, size_t errstr_size)
{
    return parse_duration(s, 0, out, errstr, errstr_size);
}

static int parse_size(const char *s, int secret, uint64_t *out, char *errstr, size_t errstr_size)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"KB", 1000ull},
        {"MB", 1000000ull},
        {"GB", 1000000000ull},
        {"TB", 1000000000000ull},
        {"KiB", 1ull << 10},
        {"MiB", 1ull << 20},
        {"GiB", 1ull << 30},
        {"TiB", 1ull << 40},
        {"K", 1ull << 10},
        {"M", 1ull << 20},
        {"G", 1ull << 30},
        {"T", 1ull << 40},
    };
    static const char expected[] = "expected a size such as 512, 64KiB, 10MB or 1GiB";
    char got[96];
    shown_value(s, secret, got, sizeof(got));
    if (*s == '-')
        return fail(errstr, errstr_size, "a size cannot be negative; got %s", got);
    uint64_t ip, frac;
    int ovf, fdig, nonzero;
    size_t n = scan_decimal(s, &ip, &ovf, &frac, &fdig, 6, &nonzero);
    if (n == 0)
        return fail(errstr, errstr_size, "%s; got %s", expected, got);
    const char *unit = s + n;
    uint64_t mult = 0;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(unit, units[i].unit) == 0) {
            mult = units[i].mult;
            break;
        }
    }
    if (!mult)
        return fail(errstr, errstr_size,
                    "%s; got %s (unknown unit; use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, K, M or "
                    "G)",
                    expected, got);
    uint64_t whole;
    (void)nonzero;
    if (ovf || __builtin_mul_overflow(ip, mult, &whole))
        return fail(errstr, errstr_size, "size too large (at most %" PRIu64 " bytes); got %s",
                    UINT64_MAX, got);
    uint64_t part = fdig ? frac * mult / pow10u(fdig) : 0;
    if (whole > UINT64_MAX - part)
        return fail(errstr, errstr_size, "size too large (at most %" PRIu64 " bytes); got %s",
                    UINT64_MAX, got);
    *out = whole + part;
    return 0;
}

int of_parse_size(const char *s, uint64_t *out, char *errstr, size_t errstr_size)
{
    return parse_size(s, 0, out, errstr, errstr_size);
}

const char *of_option_type_name(of_option_type t)
{
    switch (t) {
    case OF_OPT_STRING:
        return "string";
    case OF_OPT_INT:
        return "int";
    case OF_OPT_BOOL:
        return "bool";
    case OF_OPT_DOUBLE:
        return "double";
    case OF_OPT_DURATION:
        return "duration";
    case OF_OPT_SIZE:
        return "size";
    case OF_OPT_ENUM:
        return "enum";
    case OF_OPT_LIST:
        return "list";
    }
    return "unknown";
}

static int type_valid(of_option_type t)
{
    return t >= OF_OPT_STRING && t <= OF_OPT_LIST;
}

static int type_has_bounds(of_option_type t)
{
    return t == OF_OPT_INT || t == OF_OPT_DOUBLE || t == OF_OPT_DURATION || t == OF_OPT_SIZE ||
           t == OF_OPT_LIST;
}

/* Formats a bound in the option's own units. */
static void format_bound(const of_option *opt, double b, char *buf, size_t size)
{
    switch (opt->type) {
    case OF_OPT_DURATION:
        if (b >= (double)INT64_MIN && b <= 9.2e18 && b == floor(b)) {
            of_format_duration_ms((int64_t)b, buf, size);
            return;
        }
        break;
    case OF_OPT_SIZE:
        if (b >= 0 && b <= 1.8e19 && b == floor(b)) {
            of_format_size((uint64_t)b, buf, size);
            return;
        }
        break;
    case OF_OPT_INT:
    case OF_OPT_LIST:
        if (b >= -9.2e18 && b <= 9.2e18 && b == floor(b)) {
            snprintf(buf, size, "%" PRId64, (int64_t)b);
            return;
        }
        break;
    default:
        break;
    }
    snprintf(buf, size, "%g", b);
}

void of_option_describe_type(const of_option *opt, char *buf, size_t size)
{
    if (!buf || !size)
        return;
    buf[0] = '\0';
    if (!opt)
        return;
    size_t pos = 0;
#define APPEND(...)                                                                                \
    do {                                                                                           \
        if (pos < size) {                                                                          \
            int n_ = snprintf(buf + pos, size - pos, __VA_ARGS__);                                 \
            if (n_ > 0)                                                                            \
                pos += (size_t)n_;                                                                 \
        }                                                                                          \
    } while (0)
    if (opt->type == OF_OPT_ENUM) {
        APPEND("enum: ");
        for (size_t i = 0; opt->enum_values && opt->enum_values[i]; i++)
            APPEND("%s%s", i ? "|" : "", opt->enum_values[i]);
        return;
    }
    APPEND("%s", of_option_type_name(opt->type));
    if (!type_has_bounds(opt->type))
        return;
    char lo[64], hi[64];
    int has_min = (opt->flags & OF_OPT_HAS_MIN) != 0, has_max = (opt->flags & OF_OPT_HAS_MAX) != 0;
    if (has_min)
        format_bound(opt, opt->min, lo, sizeof(lo));
    if (has_max)
        format_bound(opt, opt->max, hi, sizeof(hi));
    const char *suffix = opt->type == OF_OPT_LIST ? " items" : "";
    if (has_min && has_max)
        APPEND(", %s..%s%s", lo, hi, suffix);
    else if (has_min)
        APPEND(", >= %s%s", lo, suffix);
    else if (has_max)
        APPEND(", <= %s%s", hi, suffix);
#undef APPEND
}

/* ---------------------------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------------------------- */

static void value_clear(of_config_value *v)
{
    free(v->text);
    for (size_t i = 0; i < v->list_count; i++)
        free(v->list[i]);
    free(v->list);
    const of_option *opt = v->option;
    memset(v, 0, sizeof(*v));
    v->option = opt;
}

static int list_push(of_config_value *v, const char *s, size_t len)
{
    char **n = realloc(v->list, (v->list_count + 1) * sizeof(*n));
    if (!n)
        return -1;
    v->list = n;
    char *item = strndup(s, len);
    if (!item)
        return -1;
    v->list[v->list_count++] = item;
    return 0;
}

/* Splits a comma-separated list; items are trimmed and empty ones dropped. */
static int list_split(of_config_value *v, const char *s)
{
    while (*s) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        const char *a = s, *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (b > a && list_push(v, a, (size_t)(b - a)) < 0)
            return -1;
        s = comma ? comma + 1 : end;
    }
    return 0;
}

/* Parses `text` as a value of opt into v (cleared first). 0, or -1 with errstr. */
static int parse_option_text(const of_option *opt, const char *text, of_config_value *v,
                             char *errstr, size_t errstr_size)
{
    int secret = (opt->flags & OF_OPT_SECRET) != 0;
    value_clear(v);
    int rc = 0, b = 0;
    switch (opt->type) {
    case OF_OPT_STRING:
        break;
    case OF_OPT_INT:
        rc = parse_int(text, secret, &v->i, errstr, errstr_size);
        break;
    case OF_OPT_BOOL:
        rc = parse_bool(text, secret, &b, errstr, errstr_size);
        v->i = b;
        break;
    case OF_OPT_DOUBLE:
        rc = parse_double(text, secret, &v->d, errstr, errstr_size);
        break;
    case OF_OPT_DURATION:
        rc = parse_duration(text, secret, &v->i, errstr, errstr_size);
        break;
    case OF_OPT_SIZE:
        rc = parse_size(text, secret, &v->size, errstr, errstr_size);
        break;
    case OF_OPT_ENUM: {
        size_t n = 0;
        int found = -1;
        for (; opt->enum_values && opt->enum_values[n]; n++)
            if (found < 0 && strcmp(opt->enum_values[n], text) == 0)
                found = (int)n;
        if (found < 0) {
            char allowed[512];
            size_t pos = 0;
            allowed[0] = '\0';
            for (size_t i = 0; i < n && pos < sizeof(allowed); i++) {
                int w = snprintf(allowed + pos, sizeof(allowed) - pos, "%s%s", i ? ", " : "",
                                 opt->enum_values[i]);
                if (w > 0)
                    pos += (size_t)w;
            }
            char got[96];
            shown_value(text, secret, got, sizeof(got));
            const char *hint = secret ? NULL : of_did_you_mean(text, opt->enum_values, n);
            return fail(errstr, errstr_size, "expected one of %s; got %s%s%s%s", allowed, got,
                        hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
        }
        v->i = found;
        v->text = strdup(opt->enum_values[found]);
        if (!v->text)
            return fail(errstr, errstr_size, "out of memory");
        v->has_value = 1;
        return 0;
    }
    case OF_OPT_LIST:
        if (list_split(v, text) < 0)
            return fail(errstr, errstr_size, "out of memory");
        break;
    default:
        return fail(errstr, errstr_size, "option has an unknown type %d", (int)opt->type);
    }
    if (rc < 0)
        return -1;
    v->text = strdup(text);
    if (!v->text)
        return fail(errstr, errstr_size, "out of memory");
    v->has_value = 1;
    return 0;
}

/* Checks OF_OPT_HAS_MIN/MAX. 0, or -1 with errstr. */
static int check_bounds(const of_option *opt, const of_config_value *v, char *errstr,
                        size_t errstr_size)
{
    if (!type_has_bounds(opt->type))
        return 0;
    double x;
    char got[64];
    int secret = (opt->flags & OF_OPT_SECRET) != 0;
    switch (opt->type) {
    case OF_OPT_INT:
        x = (double)v->i;
        snprintf(got, sizeof(got), "%" PRId64, v->i);
        break;
    case OF_OPT_DOUBLE:
        x = v->d;
        snprintf(got, sizeof(got), "%g", v->d);
        break;
    case OF_OPT_DURATION:
        x = (double)v->i;
        of_format_duration_ms(v->i, got, sizeof(got));
        break;
    case OF_OPT_SIZE:
        x = (double)v->size;
        of_format_size(v->size, got, sizeof(got));
        break;
    case OF_OPT_LIST:
        x = (double)v->list_count;
        snprintf(got, sizeof(got), "%zu item%s", v->list_count, v->list_count == 1 ? "" : "s");
        break;
    default:
        return 0;
    }
    if (secret && opt->type != OF_OPT_LIST)
        snprintf(got, sizeof(got), "<secret>");
    char b[64];
    const char *what = opt->type == OF_OPT_LIST ? " items" : "";
    if ((opt->flags & OF_OPT_HAS_MIN) && x < opt->min) {
        format_bound(opt, opt->min, b, sizeof(b));
        return fail(errstr, errstr_size, "must be at least %s%s; got %s", b, what, got);
    }
    if ((opt->flags & OF_OPT_HAS_MAX) && x > opt->max) {
        format_bound(opt, opt->max, b, sizeof(b));
        return fail(errstr, errstr_size, "must be at most %s%s; got %s", b, what, got);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Table checks
 * ------------------------------------------------------------------------------------------- */

static int name_valid(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

int of_options_check_table(const of_option *table, char *errstr, size_t errstr_size)
{
    if (!table)
        return 0;
    for (size_t i = 0; table[i].name; i++) {
        const of_option *o = &table[i];
        if (i >= OF_OPTIONS_MAX)
            return fail(errstr, errstr_size,
                        "option table has more than %d entries (is the NULL-name terminator "
                        "missing?)",
                        OF_OPTIONS_MAX);
        if (!name_valid(o->name) || strlen(o->name) > 63)
            return fail(errstr, errstr_size,
                        "option #%zu: bad name '%.80s' (expected [a-z0-9_]+, at most 63 chars)",
                        i + 1, o->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(table[j].name, o->name) == 0)
                return fail(errstr, errstr_size,
                            "option '%s' is declared twice (entries #%zu and #%zu)", o->name, j + 1,
                            i + 1);
        if (!type_valid(o->type))
            return fail(errstr, errstr_size, "option '%s': unknown type %d (expected 1..8)",
                        o->name, (int)o->type);
        if (o->flags &
            ~(uint32_t)(OF_OPT_REQUIRED | OF_OPT_SECRET | OF_OPT_HAS_MIN | OF_OPT_HAS_MAX))
            return fail(errstr, errstr_size, "option '%s': unknown flags 0x%x", o->name,
                        (unsigned)o->flags);
        if (o->type == OF_OPT_ENUM) {
            if (!o->enum_values || !o->enum_values[0])
                return fail(errstr, errstr_size, "option '%s': enum without enum_values", o->name);
            for (size_t k = 0; o->enum_values[k]; k++) {
                if (!o->enum_values[k][0])
                    return fail(errstr, errstr_size, "option '%s': empty enum value #%zu", o->name,
                                k + 1);
                for (size_t m = 0; m < k; m++)
                    if (strcmp(o->enum_values[m], o->enum_values[k]) == 0)
                        return fail(errstr, errstr_size,
                                    "option '%s': enum value '%s' is listed twice", o->name,
                                    o->enum_values[k]);
            }
        }
        if ((o->flags & (OF_OPT_HAS_MIN | OF_OPT_HAS_MAX)) && !type_has_bounds(o->type))
            return fail(errstr, errstr_size, "option '%s': min/max do not apply to a %s option",
                        o->name, of_option_type_name(o->type));
        if (((o->flags & OF_OPT_HAS_MIN) && !isfinite(o->min)) ||
            ((o->flags & OF_OPT_HAS_MAX) && !isfinite(o->max)))
            return fail(errstr, errstr_size, "option '%s': min/max must be finite", o->name);
        if ((o->flags & OF_OPT_HAS_MIN) && (o->flags & OF_OPT_HAS_MAX) && o->min > o->max)
            return fail(errstr, errstr_size, "option '%s': min %g is greater than max %g", o->name,
                        o->min, o->max);
        if ((o->flags & OF_OPT_REQUIRED) && o->default_value)
            return fail(errstr, errstr_size,
                        "option '%s' is required and has a default (a required option cannot "
                        "have one)",
                        o->name);
        if (o->default_value) {
            of_config_value v;
            memset(&v, 0, sizeof(v));
            v.option = o;
            char why[256];
            int rc = parse_option_text(o, o->default_value, &v, why, sizeof(why));
            if (rc == 0)
                rc = check_bounds(o, &v, why, sizeof(why));
            value_clear(&v);
            if (rc < 0)
                return fail(errstr, errstr_size, "option '%s': bad default: %s", o->name, why);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Config validation
 * ------------------------------------------------------------------------------------------- */

/* Where problems go: a diag (with file and a prefix) or a string buffer ("; "-joined). */
typedef struct sink {
    of_diag *diag;
    const char *file;
    const char *what;
    char *buf;
    size_t size;
    size_t errors;
} sink;

static void sink_err(sink *k, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void sink_err(sink *k, int line, int column, const char *fmt, ...)
{
    k->errors++;
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    const char *m = msg ? msg : "out of memory";
    if (k->diag) {
        if (k->what)
            of_diag_add(k->diag, OF_SEV_ERROR, k->file, line, column, "%s: %s", k->what, m);
        else
            of_diag_add(k->diag, OF_SEV_ERROR, k->file, line, column, "%s", m);
    } else if (k->buf && k->size) {
        size_t used = strlen(k->buf);
        if (used + 1 < k->size)
            snprintf(k->buf + used, k->size - used, "%s%s", used ? "; " : "", m);
    }
    free(msg);
}

static size_t table_count(const of_option *table)
{
    size_t n = 0;
    while (table && table[n].name && n < OF_OPTIONS_MAX)
        n++;
    return n;
}

static of_config *config_new(const of_option *table, size_t n)
{
    of_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    if (n) {
        cfg->values = calloc(n, sizeof(*cfg->values));
        if (!cfg->values) {
            free(cfg);
            return NULL;
        }
    }
    cfg->count = n;
    for (size_t i = 0; i < n; i++)
        cfg->values[i].option = &table[i];
    return cfg;
}

void of_config_free(of_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->count; i++)
        value_clear(&cfg->values[i]);
    free(cfg->values);
    free(cfg);
}

const of_config_value *of_config_find(const of_config *cfg, const char *name)
{
    if (!cfg || !name)
        return NULL;
    for (size_t i = 0; i < cfg->count; i++)
        if (cfg->values[i].option && strcmp(cfg->values[i].option->name, name) == 0)
            return &cfg->values[i];
    return NULL;
}

static long find_option(const of_option *table, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0)
            return (long)i;
    return -1;
}

static void unknown_option(sink *k, int line, int column, const of_option *table, size_t n,
                           const char *key)
{
    if (n == 0) {
        sink_err(k, line, column, "unknown option '%s': this plugin takes no options", key);
        return;
    }
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += strlen(table[i].name) + 2;
    char *allowed = malloc(cap);
    const char **names = malloc(n * sizeof(*names));
    if (!allowed || !names) {
        free(allowed);
        free(names);
        sink_err(k, line, column, "unknown option '%s'", key);
        return;
    }
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        names[i] = table[i].name;
        pos += (size_t)snprintf(allowed + pos, cap - pos, "%s%s", i ? ", " : "", table[i].name);
    }
    const char *hint = of_did_you_mean(key, names, n);
    if (hint)
        sink_err(k, line, column, "unknown option '%s' (did you mean '%s'?); allowed: %s", key,
                 hint, allowed);
    else
        sink_err(k, line, column, "unknown option '%s'; allowed: %s", key, allowed);
    free(allowed);
    free(names);
}

/* Parses and bound-checks one textual value; reports at line:column. */
static int set_from_text(sink *k, const of_option *opt, of_config_value *v, const char *text,
                         int line, int column)
{
    char why[768];
    if (parse_option_text(opt, text, v, why, sizeof(why)) < 0 ||
        check_bounds(opt, v, why, sizeof(why)) < 0) {
        sink_err(k, line, column, "option '%s': %s", opt->name, why);
        value_clear(v);
        v->is_set = 1;
        return -1;
    }
    v->is_set = 1;
    return 0;
}

static void set_from_node(sink *k, const of_option *opt, of_config_value *v, const of_ynode *node)
{
    char desc[256];
    of_option_describe_type(opt, desc, sizeof(desc));
    if (opt->type == OF_OPT_LIST && node->kind == OF_Y_SEQ) {
        value_clear(v);
        v->is_set = 1;
        int bad = 0;
        for (size_t i = 0; i < node->n_items; i++) {
            const of_ynode *it = node->items[i];
            if (it->kind != OF_Y_SCALAR || it->is_null) {
                sink_err(k, it->line, it->column, "option '%s': list items must be strings; got %s",
                         opt->name,
                         it->kind == OF_Y_SCALAR ? "null"
                         : it->kind == OF_Y_SEQ  ? "a sequence"
                                                 : "a mapping");
                bad = 1;
                continue;
            }
            if (list_push(v, it->str, it->len) < 0) {
                sink_err(k, it->line, it->column, "out of memory");
                bad = 1;
            }
        }
        if (bad)
            return;
        v->has_value = 1;
        /* Display text: the items comma-joined. */
        size_t cap = 1;
        for (size_t i = 0; i < v->list_count; i++)
            cap += strlen(v->list[i]) + 1;
        v->text = malloc(cap);
        if (v->text) {
            size_t pos = 0;
            v->text[0] = '\0';
            for (size_t i = 0; i < v->list_count; i++)
                pos += (size_t)snprintf(v->text + pos, cap - pos, "%s%s", i ? "," : "", v->list[i]);
        }
        char why[256];
        if (check_bounds(opt, v, why, sizeof(why)) < 0)
            sink_err(k, node->line, node->column, "option '%s': %s", opt->name, why);
        return;
    }
    if (node->kind != OF_Y_SCALAR) {
        v->is_set = 1;
        if (opt->type == OF_OPT_LIST)
            sink_err(k, node->line, node->column,
                     "option '%s' expects a list (a sequence or a comma-separated string); got a "
                     "mapping",
                     opt->name);
        else
            sink_err(k, node->line, node->column, "option '%s' expects a scalar (%s); got a %s",
                     opt->name, desc, node->kind == OF_Y_SEQ ? "sequence" : "mapping");
        return;
    }
    if (node->is_null) {
        v->is_set = 1;
        sink_err(k, node->line, node->column, "option '%s' has no value (expected %s)", opt->name,
                 desc);
        return;
    }
    set_from_text(k, opt, v, node->str, node->line, node->column);
}

/* Missing required options and defaults. */
static void finish(sink *k, of_config *cfg, int line, int column)
{
    for (size_t i = 0; i < cfg->count; i++) {
        of_config_value *v = &cfg->values[i];
        const of_option *opt = v->option;
        if (v->is_set)
            continue;
        if (opt->flags & OF_OPT_REQUIRED) {
            char type[256];
            of_option_describe_type(opt, type, sizeof(type));
            sink_err(k, line, column, "missing required option '%s' (%s%s%s)", opt->name, type,
                     opt->description ? ": " : "", opt->description ? opt->description : "");
            continue;
        }
        if (opt->default_value) {
            char why[512];
            if (parse_option_text(opt, opt->default_value, v, why, sizeof(why)) < 0) {
                sink_err(k, line, column, "option '%s': the plugin's default is invalid: %s",
                         opt->name, why);
                value_clear(v);
            }
        }
    }
}

of_config *of_config_from_yaml_at(const of_option *table, const of_ynode *config, const char *file,
                                  int line, int column, const char *what, of_diag *diag)
{
    sink k = {.diag = diag, .file = file, .what = what};
    size_t n = table_count(table);
    of_config *cfg = config_new(table, n);
    if (!cfg) {
        sink_err(&k, line, column, "out of memory");
        return NULL;
    }
    if (config && !(config->kind == OF_Y_SCALAR && config->is_null)) {
        line = config->line;
        column = config->column;
        if (config->kind != OF_Y_MAP) {
            sink_err(&k, config->line, config->column,
                     "expected a mapping of option names to values; got a %s",
                     config->kind == OF_Y_SEQ ? "sequence" : "scalar");
        } else {
            for (size_t i = 0; i < config->n_pairs; i++) {
                const of_ynode *key = config->pairs[i].key;
                const of_ynode *val = config->pairs[i].value;
                if (!key || key->kind != OF_Y_SCALAR || !key->str) {
                    sink_err(&k, key ? key->line : line, key ? key->column : column,
                             "option names must be strings");
                    continue;
                }
                long idx = find_option(table, n, key->str);
                if (idx < 0) {
                    unknown_option(&k, key->line, key->column, table, n, key->str);
                    continue;
                }
                of_config_value *v = &cfg->values[idx];
                if (v->is_set) {
                    sink_err(&k, key->line, key->column, "option '%s' is given twice", key->str);
                    continue;
                }
                if (!val) {
                    v->is_set = 1;
                    sink_err(&k, key->line, key->column, "option '%s' has no value", key->str);
                    continue;
                }
                set_from_node(&k, &table[idx], v, val);
            }
        }
    }
    finish(&k, cfg, line, column);
    if (k.errors) {
        of_config_free(cfg);
        return NULL;
    }
    return cfg;
}

of_config *of_config_from_yaml(const of_option *table, const of_ynode *config, const char *file,
                               const char *what, of_diag *diag)
{
    return of_config_from_yaml_at(table, config, file, 0, 0, what, diag);
}

of_config *of_config_from_pairs(const of_option *table, const char *const *keys,
                                const char *const *values, size_t count, char *errstr,
                                size_t errstr_size)
{
    if (errstr && errstr_size)
        errstr[0] = '\0';
    sink k = {.buf = errstr, .size = errstr_size};
    size_t n = table_count(table);
    of_config *cfg = config_new(table, n);
    if (!cfg) {
        fail(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        const char *key = keys ? keys[i] : NULL;
        if (!key) {
            sink_err(&k, 0, 0, "option #%zu has no name", i + 1);
            continue;
        }
        long idx = find_option(table, n, key);
        if (idx < 0) {
            unknown_option(&k, 0, 0, table, n, key);
            continue;
        }
        of_config_value *v = &cfg->values[idx];
        if (v->is_set) {
            sink_err(&k, 0, 0, "option '%s' is given twice", key);
            continue;
        }
        const char *val = values ? values[i] : NULL;
        if (!val) {
            v->is_set = 1;
            sink_err(&k, 0, 0, "option '%s' has no value", key);
            continue;
        }
        set_from_text(&k, &table[idx], v, val, 0, 0);
    }
    finish(&k, cfg, 0, 0);
    if (k.errors) {
        of_config_free(cfg);
        return NULL;
    }
    return cfg;
}
