/* orderflow new-stage NAME: writes a new stage project (the stage, its CMakeLists.txt, a harness
 * test and a pipeline snippet) from the scaffold templates of the orderflow-dev package.
 *
 * Every regular file TEMPLATE.in of the scaffold folder becomes DIR/NAME/TEMPLATE, with "STAGE"
 * in the file name replaced by the stage's C identifier (NAME with '-' as '_'), and in the text
 * @STAGE_NAME@, @STAGE_IDENT@, @STAGE_UPPER@ and @ORDERFLOW_VERSION@ replaced. */
#include "cli.h"
#include "plugin.h"
#include "plugin_path.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef OF_VERSION
#define OF_VERSION "0.0.0"
#endif
#ifndef OF_SCAFFOLD_DIR
#define OF_SCAFFOLD_DIR "/usr/share/orderflow/scaffold"
#endif
/* The scaffold relative to the folder of the running executable (a relocated install). */
#ifndef OF_SCAFFOLD_REL
#define OF_SCAFFOLD_REL "../share/orderflow/scaffold"
#endif

#define MAX_TEMPLATES     32
#define MAX_TEMPLATE_SIZE (256 * 1024)

static void usage(FILE *out)
{
    fputs("usage: orderflow new-stage [--dir DIR] [--templates DIR] NAME\n"
          "  writes DIR/NAME (default ./NAME): the stage, its CMakeLists.txt, a harness test,\n"
          "  a pipeline snippet and a README; it builds against the installed SDK (orderflow-dev)\n"
          "  NAME: [a-z0-9][a-z0-9_-]*, at most 63 characters (the plugin's name)\n"
          "  --dir DIR         where to create the stage's folder (default: the current one)\n"
          "  --templates DIR   the scaffold templates (default: ORDERFLOW_SCAFFOLD_DIR, else the\n"
          "                    installed ones, " OF_SCAFFOLD_DIR ")\n",
          out);
}

static int name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > OF_PLUGIN_NAME_MAX)
        return 0;
    if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The template folder: --templates, $ORDERFLOW_SCAFFOLD_DIR, the source tree's (for a CLI run
 * from the build tree), next to the executable (PREFIX/bin -> PREFIX/share), the install path. */
static const char *find_templates(const char *given, char *buf, size_t size)
{
    if (given)
        return given;
    const char *env = getenv("ORDERFLOW_SCAFFOLD_DIR");
    if (env && *env)
        return env;
#ifdef OF_SOURCE_SCAFFOLD_DIR
    if (of_running_in_build_tree() && is_dir(OF_SOURCE_SCAFFOLD_DIR))
        return OF_SOURCE_SCAFFOLD_DIR;
#endif
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            int len = snprintf(buf, size, "%s/%s", exe, OF_SCAFFOLD_REL);
            if (len > 0 && (size_t)len < size && is_dir(buf))
                return buf;
        }
    }
    return OF_SCAFFOLD_DIR;
}

typedef struct {
    const char *key;
    const char *value;
} subst;

/* Writes text to f with every @KEY@ of subs replaced; other '@' are copied as they are. */
static int write_substituted(FILE *f, const char *text, size_t len, const subst *subs,
                             size_t n_subs)
{
    size_t i = 0;
    while (i < len) {
        if (text[i] == '@') {
            int done = 0;
            for (size_t s = 0; s < n_subs && !done; s++) {
                size_t kl = strlen(subs[s].key);
                if (i + kl + 2 <= len && strncmp(text + i + 1, subs[s].key, kl) == 0 &&
                    text[i + 1 + kl] == '@') {
                    fputs(subs[s].value, f);
                    i += kl + 2;
                    done = 1;
                }
            }
            if (done)
                continue;
        }
        fputc(text[i], f);
        i++;
    }
    return ferror(f) ? -1 : 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(MAX_TEMPLATE_SIZE + 1);
    size_t n = buf ? fread(buf, 1, MAX_TEMPLATE_SIZE + 1, f) : 0;
    int bad = !buf || ferror(f) || n > MAX_TEMPLATE_SIZE;
    fclose(f);
    if (bad) {
        free(buf);
        errno = buf ? EFBIG : ENOMEM;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The output file name of template `tmpl` (ends with ".in"). */
static void output_name(const char *tmpl, const char *ident, char *out, size_t size)
{
    size_t n = strlen(tmpl) - 3;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size;) {
        if (strncmp(tmpl + i, "STAGE", 5) == 0 && i + 5 <= n) {
            int w = snprintf(out + o, size - o, "%s", ident);
            o = w > 0 && o + (size_t)w < size ? o + (size_t)w : size - 1;
            i += 5;
        } else {
            out[o++] = tmpl[i++];
        }
    }
    out[o] = '\0';
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int of_cmd_new_stage(const of_cli *cli, int argc, char **argv)
{
    const char *dir = ".";
    const char *templates = NULL;
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"templates", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "d:t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'd':
            dir = optarg;
            break;
        case 't':
            templates = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[optind];
    if (!name_valid(name)) {
        fprintf(
            stderr,
            "orderflow new-stage: bad stage name '%s' (expected [a-z0-9][a-z0-9_-]*, at most %d "
            "characters: it becomes the plugin's name)\n",
            name, OF_PLUGIN_NAME_MAX);
        return 2;
    }
    char ident[OF_PLUGIN_NAME_MAX + 1], upper[OF_PLUGIN_NAME_MAX + 1];
    size_t nl = strlen(name);
    for (size_t i = 0; i <= nl; i++) {
        ident[i] = name[i] == '-' ? '_' : name[i];
        upper[i] = (ident[i] >= 'a' && ident[i] <= 'z') ? (char)(ident[i] - 32) : ident[i];
    }

    char tbuf[PATH_MAX];
    const char *tdir = find_templates(templates, tbuf, sizeof(tbuf));
    DIR *d = opendir(tdir);
    if (!d) {
        fprintf(stderr,
                "orderflow new-stage: cannot read the scaffold templates in %s: %s (they come "
                "with the orderflow-dev package; or give --templates DIR)\n",
                tdir, strerror(errno));
        return 1;
    }
    char *names[MAX_TEMPLATES];
    size_t n_names = 0;
    int too_many = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l < 4 || strcmp(e->d_name + l - 3, ".in") != 0)
            continue;
        char path[PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s", tdir, e->d_name) >= (int)sizeof(path) ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n_names == MAX_TEMPLATES) {
            too_many = 1;
            break;
        }
        names[n_names] = strdup(e->d_name);
        if (names[n_names])
            n_names++;
    }
    closedir(d);
    int rc = 1;
    char target[PATH_MAX];
    if (too_many || n_names == 0) {
        fprintf(stderr, "orderflow new-stage: %s: %s\n", tdir,
                too_many ? "too many templates" : "no templates (*.in) there");
        goto out;
    }
    qsort(names, n_names, sizeof(names[0]), cmp_str);

    if (snprintf(target, sizeof(target), "%s/%s", dir, name) >= (int)sizeof(target)) {
        fprintf(stderr, "orderflow new-stage: path too long\n");
        goto out;
    }
    if (!is_dir(dir)) {
        fprintf(stderr, "orderflow new-stage: %s is not a folder\n", dir);
        goto out;
    }
    struct stat st;
    if (lstat(target, &st) == 0) {
        fprintf(stderr, "orderflow new-stage: %s already exists; not touching it\n", target);
        goto out;
    }
    if (mkdir(target, 0777) != 0) {
        fprintf(stderr, "orderflow new-stage: cannot create %s: %s\n", target, strerror(errno));
        goto out;
    }

    const subst subs[] = {
        {"STAGE_NAME", name},
        {"STAGE_IDENT", ident},
        {"STAGE_UPPER", upper},
        {"ORDERFLOW_VERSION", OF_VERSION},
    };
    char written[MAX_TEMPLATES][NAME_MAX + 1];
    size_t n_written = 0;
    int failed = 0;
    for (size_t i = 0; i < n_names && !failed; i++) {
        char src[PATH_MAX], dst[PATH_MAX], out_name[NAME_MAX + 1];
        output_name(names[i], ident, out_name, sizeof(out_name));
        if (snprintf(src, sizeof(src), "%s/%s", tdir, names[i]) >= (int)sizeof(src) ||
            snprintf(dst, sizeof(dst), "%s/%s", target, out_name) >= (int)sizeof(dst)) {
            fprintf(stderr, "orderflow new-stage: path too long\n");
            failed = 1;
            break;
        }
        size_t len = 0;
        char *text = read_file(src, &len);
        if (!text) {
            fprintf(stderr, "orderflow new-stage: cannot read %s: %s\n", src, strerror(errno));
            failed = 1;
            break;
        }
        FILE *f = fopen(dst, "wx");
        if (!f) {
            fprintf(stderr, "orderflow new-stage: cannot create %s: %s\n", dst, strerror(errno));
            free(text);
            failed = 1;
            break;
        }
        snprintf(written[n_written++], sizeof(written[0]), "%s", out_name);
        int werr = write_substituted(f, text, len, subs, sizeof(subs) / sizeof(subs[0]));
        free(text);
        if (fclose(f) != 0 || werr) {
            fprintf(stderr, "orderflow new-stage: cannot write %s: %s\n", dst, strerror(errno));
            failed = 1;
        } else if (!cli->quiet) {
            printf("  %s\n", dst);
        }
    }
    if (failed) {
        /* Leave nothing half-written behind. */
        for (size_t i = 0; i < n_written; i++) {
            char p[PATH_MAX];
            if (snprintf(p, sizeof(p), "%s/%s", target, written[i]) < (int)sizeof(p))
                unlink(p);
        }
        rmdir(target);
        goto out;
    }
    if (!cli->quiet)
        printf("stage '%s' created in %s; build and test it with:\n"
               "  cmake -S %s -B %s/build && cmake --build %s/build && ctest --test-dir %s/build\n",
               name, target, target, target, target, target);
    rc = 0;
out:
    for (size_t i = 0; i < n_names; i++)
        free(names[i]);
    return rc;
}
