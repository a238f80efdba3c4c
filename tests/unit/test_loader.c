/* The plugin loader: every refusal names the file and what was found and expected; the good
 * plugin loads with the right descriptor; directory scans report each bad file, duplicates and
 * unsafe directories. The test plugins are built by tests/plugins into OF_TEST_PLUGIN_DIR/<case>.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "plugin.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef OF_TEST_PLUGIN_DIR
#error "OF_TEST_PLUGIN_DIR must be defined by the build"
#endif

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

#define assert_has(hay, needle)                                                                    \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            fail_msg("expected \"%s\" in:\n    %s", n_, h_ ? h_ : "(null)");                       \
    } while (0)

/* OF_TEST_PLUGIN_DIR/<case>/<file> in buf. */
static const char *tp(char *buf, size_t size, const char *test_case, const char *file)
{
    int n = snprintf(buf, size, "%s/%s/%s", OF_TEST_PLUGIN_DIR, test_case, file);
    assert_true(n > 0 && (size_t)n < size);
    return buf;
}

static const char *tp_dir(char *buf, size_t size, const char *test_case)
{
    int n = snprintf(buf, size, "%s/%s", OF_TEST_PLUGIN_DIR, test_case);
    assert_true(n > 0 && (size_t)n < size);
    return buf;
}

/* Loads path, asserts it is refused with a message that starts with "PATH: " and returns it. */
static const char *refused(const char *path, char *err, size_t size)
{
    memset(err, 0, size);
    of_plugin *p = of_plugin_load(path, err, size);
    if (p) {
        of_plugin_unload(p);
        fail_msg("%s was loaded, expected a refusal", path);
    }
    size_t n = strlen(path);
    if (strncmp(err, path, n) != 0 || err[n] != ':' || err[n + 1] != ' ')
        fail_msg("the message does not start with \"%s: \":\n    %s", path, err);
    return err;
}

/* After a refusal past dlopen, the object must have been closed again. */
static void assert_not_mapped(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (h) {
        dlclose(h);
        fail_msg("%s is still loaded after it was refused or unloaded", path);
    }
}

static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !base[0])
        base = "/tmp";
    char *t = NULL;
    assert_true(asprintf(&t, "%s/of-loader-XXXXXX", base) > 0);
    assert_non_null(mkdtemp(t));
    assert_int_equal(chmod(t, 0755), 0);
    return t;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static char *join(const char *dir, const char *name)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static void copy_file(const char *src, const char *dst, mode_t mode)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        fail_msg("cannot open %s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0)
        fail_msg("cannot create %s: %s", dst, strerror(errno));
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    assert_int_equal(fchmod(out, mode), 0);
    close(in);
    close(out);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    if (len)
        assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void patch_file(const char *path, off_t off, const void *bytes, size_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, len, off), (ssize_t)len);
    close(fd);
}

static void read_ehdr(const char *path, Elf64_Ehdr *eh)
{
    memset(eh, 0, sizeof(*eh));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_true(read(fd, eh, sizeof(*eh)) >= (ssize_t)EI_NIDENT);
    close(fd);
}

/* A private copy of the good plugin, in a fresh directory (mode 0755), file mode `mode`. */
static char *good_copy(char **dir_out, mode_t mode)
{
    char src[PATH_MAX];
    *dir_out = make_tmpdir();
    char *dst = join(*dir_out, "good.so");
    copy_file(tp(src, sizeof(src), "good", "good.so"), dst, mode);
    return dst;
}

/* ---------------------------------------------------------------------------------------------
 * The good plugin
 * ------------------------------------------------------------------------------------------- */

static void test_host_signature(void **state)
{
    (void)state;
    of_build_signature s;
    memset(&s, 0xff, sizeof(s));
    of_host_signature(&s);
    assert_int_equal(s.pointer_size, sizeof(void *));
    assert_int_equal(s.time_t_size, sizeof(time_t));
    assert_int_equal(s.size_t_size, sizeof(size_t));
    assert_int_equal(s.big_endian, OF_BIG_ENDIAN_);
    assert_int_equal(s.features, OF_SDK_FEATURES);
}

static void test_load_good(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048] = "";
    tp(path, sizeof(path), "good", "good.so");
    of_plugin *p = of_plugin_load(path, err, sizeof(err));
    if (!p)
        fail_msg("good.so refused: %s", err);
    assert_string_equal(p->name, "good");
    assert_string_equal(p->path, path);
    assert_non_null(p->handle);
    const of_stage_descriptor *d = p->desc;
    assert_non_null(d);
    assert_int_equal(d->abi_major, OF_ABI_MAJOR);
    assert_int_equal(d->abi_minor, OF_ABI_MINOR);
    assert_int_equal(d->struct_size, sizeof(of_stage_descriptor));
    of_build_signature host;
    of_host_signature(&host);
    assert_int_equal(d->signature.pointer_size, host.pointer_size);
    assert_int_equal(d->signature.time_t_size, host.time_t_size);
    assert_int_equal(d->signature.size_t_size, host.size_t_size);
    assert_int_equal(d->signature.big_endian, host.big_endian);
    assert_int_equal(d->signature.features, host.features);
    assert_string_equal(d->name, "good");
    assert_string_equal(d->version, "1.2.3");
    assert_string_equal(d->description, "copies each payload to 'out'");
    assert_non_null(d->options);
    assert_string_equal(d->options[0].name, "prefix");
    assert_int_equal(d->options[0].type, OF_OPT_STRING);
    assert_string_equal(d->options[1].name, "timeout");
    assert_int_equal(d->options[1].type, OF_OPT_DURATION);
    assert_string_equal(d->options[1].default_value, "250ms");
    assert_string_equal(d->options[2].name, "mode");
    assert_int_equal(d->options[2].type, OF_OPT_ENUM);
    assert_null(d->options[3].name);
    assert_non_null(d->outputs);
    assert_string_equal(d->outputs[0], "out");
    assert_null(d->outputs[1]);
    assert_non_null(d->init);
    assert_non_null(d->process);
    assert_non_null(d->shutdown);
    for (size_t i = 0; i < sizeof(d->reserved) / sizeof(d->reserved[0]); i++)
        assert_null(d->reserved[i]);
    of_plugin_unload(p);
    assert_not_mapped(path);
    of_plugin_unload(NULL);
}

static void test_load_through_symlink(void **state)
{
    (void)state;
    char target[PATH_MAX], err[2048] = "";
    tp(target, sizeof(target), "good", "good.so");
    char *dir = make_tmpdir();
    char *link = join(dir, "link.so");
    assert_int_equal(symlink(target, link), 0);
    of_plugin *p = of_plugin_load(link, err, sizeof(err));
    if (!p)
        fail_msg("a symbolic link to good.so refused: %s", err);
    assert_string_equal(p->name, "good");
    of_plugin_unload(p);
    free(link);
    remove_tree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * Built broken plugins
 * ------------------------------------------------------------------------------------------- */

static void test_bad_abi(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048];
    refused(tp(path, sizeof(path), "bad_abi", "bad_abi.so"), err, sizeof(err));
    assert_has(err, "built for ABI 2.0, this host speaks ABI 1.x");
    assert_has(err, "found abi_major 2, expected 1");
    assert_not_mapped(path);
}

static void test_bad_signature(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048], want[128];
    refused(tp(path, sizeof(path), "bad_signature", "bad_signature.so"), err, sizeof(err));
    assert_has(err, "build signature does not match the host's");
    snprintf(want, sizeof(want), "time_t is %zu bytes in the plugin, %zu in the host",
             sizeof(time_t) == 8 ? (size_t)4 : (size_t)8, sizeof(time_t));
    assert_has(err, want);
    assert_has(err, "SDK feature flags 0x100 the host lacks");
    snprintf(want, sizeof(want), "found features 0x%x, expected a subset of 0x%x",
             OF_SDK_FEATURES | 0x100u, OF_SDK_FEATURES);
    assert_has(err, want);
    assert_not_mapped(path);
}

static void test_small_struct(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048], want[128];
    refused(tp(path, sizeof(path), "small_struct", "small_struct.so"), err, sizeof(err));
    snprintf(want, sizeof(want),
             "descriptor too small (found struct_size %zu, expected at least %zu",
             offsetof(of_stage_descriptor, name), (size_t)OF_DESCRIPTOR_MIN_SIZE);
    assert_has(err, want);
    assert_not_mapped(path);
}

static void test_no_entry(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048];
    refused(tp(path, sizeof(path), "no_entry", "no_entry.so"), err, sizeof(err));
    assert_has(err, "no entry symbol 'orderflow_stage_entry' (define it with OF_STAGE_DEFINE)");
    assert_not_mapped(path);
}

static void test_null_process(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048];
    refused(tp(path, sizeof(path), "null_process", "null_process.so"), err, sizeof(err));
    assert_has(err,
               "plugin 'null-process' has no process callback (found NULL, expected a function)");
    assert_not_mapped(path);
}

static void test_bad_name(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048];
    refused(tp(path, sizeof(path), "bad_name", "bad_name.so"), err, sizeof(err));
    assert_has(err, "bad plugin name (found 'Bad Name!', expected [a-z0-9][a-z0-9_-]*");
    assert_not_mapped(path);
}

static void test_bad_options(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048];
    refused(tp(path, sizeof(path), "bad_options", "bad_options.so"), err, sizeof(err));
    assert_has(err, "plugin 'bad-options': bad option table: ");
    assert_has(err, "'timeout'");
    assert_has(err, "abc");
    assert_not_mapped(path);
}

static void test_undefined_symbol(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048];
    refused(tp(path, sizeof(path), "undefined_symbol", "undefined_symbol.so"), err, sizeof(err));
    assert_has(err, "dlopen failed: ");
    assert_has(err, "undefined symbol: of_log");
    assert_not_mapped(path);
}

static void test_entry_elsewhere(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048];
    refused(tp(path, sizeof(path), "entry_elsewhere", "entry_elsewhere.so"), err, sizeof(err));
    assert_has(err,
               "entry symbol 'orderflow_stage_entry' is not defined in this file (found it in ");
    assert_has(err, "of_tp_entry_lib.so, expected it here");
    assert_not_mapped(path);
}

static void test_not_elf(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048], want[128];
    tp(path, sizeof(path), "not_elf", "not_elf.so");
    unsigned char head[4];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(head, 1, 4, f), 4);
    fclose(f);
    refused(path, err, sizeof(err));
    snprintf(want, sizeof(want),
             "not a shared object: no ELF header (found %02x %02x %02x %02x, expected 7f 45 4c 46)",
             head[0], head[1], head[2], head[3]);
    assert_has(err, want);
}

static void test_executable(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048];
    tp(path, sizeof(path), "executable", "executable.so");
    Elf64_Ehdr eh;
    read_ehdr(path, &eh);
    refused(path, err, sizeof(err));
    assert_has(err, "an ELF executable");
    assert_has(err, "not a shared object");
    if (eh.e_type == ET_EXEC)
        assert_has(err, "(found e_type ET_EXEC, expected ET_DYN)");
    else
        assert_has(err, "(found DF_1_PIE in DT_FLAGS_1, expected a library linked with -shared)");
}

static void test_executable_nopie(void **state)
{
    (void)state;
    char path[PATH_MAX], err[2048];
    refused(tp(path, sizeof(path), "executable_nopie", "executable_nopie.so"), err, sizeof(err));
    assert_has(err,
               "an ELF executable, not a shared object (found e_type ET_EXEC, expected ET_DYN)");
}

/* ---------------------------------------------------------------------------------------------
 * Headers patched at run time
 * ------------------------------------------------------------------------------------------- */

static void test_wrong_class(void **state)
{
    (void)state;
    char *dir, err[2048];
    char *path = good_copy(&dir, 0644);
    unsigned char cls = sizeof(void *) == 8 ? ELFCLASS32 : ELFCLASS64;
    patch_file(path, EI_CLASS, &cls, 1);
    refused(path, err, sizeof(err));
    if (sizeof(void *) == 8)
        assert_has(err, "wrong ELF class (found ELFCLASS32 (32-bit), expected ELFCLASS64 (64-bit)");
    else
        assert_has(err, "wrong ELF class (found ELFCLASS64 (64-bit), expected ELFCLASS32 (32-bit)");
    free(path);
    remove_tree(dir);
}

static void test_wrong_byte_order(void **state)
{
    (void)state;
    char *dir, err[2048];
    char *path = good_copy(&dir, 0644);
    unsigned char data = OF_BIG_ENDIAN_ ? ELFDATA2LSB : ELFDATA2MSB;
    patch_file(path, EI_DATA, &data, 1);
    refused(path, err, sizeof(err));
    assert_has(err, OF_BIG_ENDIAN_ ? "wrong ELF byte order (found ELFDATA2LSB"
                                   : "wrong ELF byte order (found ELFDATA2MSB");
    free(path);
    remove_tree(dir);
}

static void test_wrong_machine(void **state)
{
    (void)state;
    char *dir, err[2048], want[128];
    char *path = good_copy(&dir, 0644);
    Elf64_Ehdr eh;
    read_ehdr(path, &eh);
    uint16_t host = eh.e_machine;
    uint16_t other = host == EM_AARCH64 ? EM_X86_64 : EM_AARCH64;
    patch_file(path, offsetof(Elf64_Ehdr, e_machine), &other, sizeof(other));
    refused(path, err, sizeof(err));
    snprintf(want, sizeof(want), "built for another machine (found e_machine %u (", other);
    assert_has(err, want);
    snprintf(want, sizeof(want), "expected %u (", host);
    assert_has(err, want);
    assert_has(err, other == EM_AARCH64 ? "(AArch64)" : "(x86-64)");
    free(path);
    remove_tree(dir);
}

static void test_relocatable(void **state)
{
    (void)state;
    char *dir, err[2048];
    char *path = good_copy(&dir, 0644);
    uint16_t type = ET_REL;
    patch_file(path, offsetof(Elf64_Ehdr, e_type), &type, sizeof(type));
    refused(path, err, sizeof(err));
    assert_has(err, "an ELF relocatable object (.o), not a shared object (found e_type ET_REL, "
                    "expected ET_DYN)");
    free(path);
    remove_tree(dir);
}

static void test_truncated_and_empty(void **state)
{
    (void)state;
    char err[2048];
    char *dir = make_tmpdir();
    char *trunc = join(dir, "trunc.so");
    const unsigned char head[] = {0x7f, 'E', 'L', 'F', ELFCLASS64, ELFDATA2LSB};
    write_file(trunc, head, sizeof(head), 0644);
    refused(trunc, err, sizeof(err));
    assert_has(err, "truncated ELF header (found 6 bytes");
    char *empty = join(dir, "empty.so");
    write_file(empty, "", 0, 0644);
    refused(empty, err, sizeof(err));
    assert_has(err,
               "not a shared object: no ELF header (found an empty file, expected 7f 45 4c 46)");
    free(trunc);
    free(empty);
    remove_tree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * File system checks
 * ------------------------------------------------------------------------------------------- */

static void test_writable_file(void **state)
{
    (void)state;
    char *dir, err[2048];
    char *path = good_copy(&dir, 0644);
    assert_int_equal(chmod(path, 0646), 0); /* o+w */
    refused(path, err, sizeof(err));
    assert_has(err, "file is writable by group or others (found mode 0646, expected no group or "
                    "other write permission");
    assert_int_equal(chmod(path, 0664), 0); /* g+w */
    refused(path, err, sizeof(err));
    assert_has(err, "(found mode 0664,");
    assert_int_equal(chmod(path, 0644), 0);
    of_plugin *p = of_plugin_load(path, err, sizeof(err));
    if (!p)
        fail_msg("mode 0644 refused: %s", err);
    of_plugin_unload(p);
    free(path);
    remove_tree(dir);
}

static void test_writable_dir(void **state)
{
    (void)state;
    char *dir, err[2048], want[PATH_MAX + 64];
    char *path = good_copy(&dir, 0644);
    assert_int_equal(chmod(dir, 0777), 0);
    refused(path, err, sizeof(err));
    snprintf(want, sizeof(want), "directory %s is writable by group or others (found mode 0777,",
             dir);
    assert_has(err, want);
    assert_int_equal(chmod(dir, 0775), 0);
    refused(path, err, sizeof(err));
    assert_has(err, "(found mode 0775,");
    free(path);
    remove_tree(dir);
}

/* A link in a safe directory to a file in a writable one: the target's directory counts. */
static void test_symlink_into_writable_dir(void **state)
{
    (void)state;
    char *dir, err[2048], want[PATH_MAX + 64];
    char *target = good_copy(&dir, 0644);
    char *unsafe = join(dir, "unsafe");
    assert_int_equal(mkdir(unsafe, 0755), 0);
    char *moved = join(unsafe, "good.so");
    assert_int_equal(rename(target, moved), 0);
    assert_int_equal(chmod(unsafe, 0777), 0);
    char *link = join(dir, "link.so");
    assert_int_equal(symlink(moved, link), 0);
    refused(link, err, sizeof(err));
    char *real_unsafe = realpath(unsafe, NULL);
    assert_non_null(real_unsafe);
    snprintf(want, sizeof(want), "directory %s is writable by group or others (found mode 0777,",
             real_unsafe);
    assert_has(err, want);
    free(real_unsafe);
    free(target);
    free(unsafe);
    free(moved);
    free(link);
    remove_tree(dir);
}

static void test_not_regular_missing_loop(void **state)
{
    (void)state;
    char err[2048];
    char *dir = make_tmpdir();
    char *fifo = join(dir, "fifo.so");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    refused(fifo, err, sizeof(err));
    assert_has(err, "not a regular file (found a FIFO, expected a regular file)");

    char *sub = join(dir, "sub.so");
    assert_int_equal(mkdir(sub, 0755), 0);
    refused(sub, err, sizeof(err));
    assert_has(err, "not a regular file (found a directory, expected a regular file)");

    char *missing = join(dir, "missing.so");
    refused(missing, err, sizeof(err));
    assert_has(err, "cannot stat: No such file or directory");

    char *loop = join(dir, "loop.so");
    assert_int_equal(symlink("loop.so", loop), 0);
    refused(loop, err, sizeof(err));
    assert_has(err, "symbolic link loop (found too many levels of symbolic links");

    char *dangling = join(dir, "dangling.so");
    assert_int_equal(symlink("nowhere.so", dangling), 0);
    refused(dangling, err, sizeof(err));
    assert_has(err, "dangling symbolic link (found a link to a missing file");

    /* No error buffer at all must not crash. */
    assert_null(of_plugin_load(missing, NULL, 0));

    free(fifo);
    free(sub);
    free(missing);
    free(loop);
    free(dangling);
    remove_tree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * Directory scans
 * ------------------------------------------------------------------------------------------- */

static void test_scan_good(void **state)
{
    (void)state;
    char dir[PATH_MAX], path[PATH_MAX];
    const char *dirs[] = {tp_dir(dir, sizeof(dir), "good")};
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    assert_int_equal(of_registry_scan(&reg, dirs, 1, &diag), 0);
    assert_int_equal(diag.errors, 0);
    assert_int_equal(reg.count, 1);
    const of_plugin *p = of_registry_find(&reg, "good");
    assert_non_null(p);
    assert_string_equal(p->path, tp(path, sizeof(path), "good", "good.so"));
    of_registry_free(&reg);
    of_diag_free(&diag);
}

static void test_scan_dup(void **state)
{
    (void)state;
    char dir[PATH_MAX], a[PATH_MAX], b[PATH_MAX];
    const char *dirs[] = {tp_dir(dir, sizeof(dir), "dup")};
    tp(a, sizeof(a), "dup", "twin_a.so");
    tp(b, sizeof(b), "dup", "twin_b.so");
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    assert_int_equal(of_registry_scan(&reg, dirs, 1, &diag), 1);
    assert_int_equal(diag.errors, 1);
    assert_int_equal(diag.count, 1);
    /* Sorted: twin_a is registered, twin_b is the one refused, and both are named. */
    assert_int_equal(diag.entries[0].severity, OF_SEV_ERROR);
    assert_string_equal(diag.entries[0].file, b);
    assert_has(diag.entries[0].message, "'twin'");
    assert_has(diag.entries[0].message, a);
    assert_int_equal(reg.count, 1);
    const of_plugin *p = of_registry_find(&reg, "twin");
    assert_non_null(p);
    assert_string_equal(p->path, a);
    of_registry_free(&reg);
    of_diag_free(&diag);
}

/* Every broken case folder gives exactly one error, against its file, carrying the reason the
 * loader gives for that file. */
static void test_scan_each_broken_case(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "bad_abi",      "bad_signature", "small_struct",     "no_entry",
        "null_process", "bad_name",      "bad_options",      "undefined_symbol",
        "not_elf",      "executable",    "executable_nopie", "entry_elsewhere",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char dir[PATH_MAX], file[PATH_MAX + 8], err[2048];
        tp_dir(dir, sizeof(dir), cases[i]);
        snprintf(file, sizeof(file), "%s/%s.so", dir, cases[i]);
        refused(file, err, sizeof(err));
        const char *dirs[] = {dir};
        of_plugin_registry reg;
        of_diag diag;
        of_registry_init(&reg);
        of_diag_init(&diag);
        int n = of_registry_scan(&reg, dirs, 1, &diag);
        if (n != 1 || diag.count != 1)
            fail_msg("%s: %d errors, %zu entries, expected 1", cases[i], n, diag.count);
        assert_string_equal(diag.entries[0].file, file);
        /* The diagnostic's message is the loader's reason without the repeated path. */
        assert_string_equal(diag.entries[0].message, err + strlen(file) + 2);
        assert_int_equal(reg.count, 0);
        of_registry_free(&reg);
        of_diag_free(&diag);
    }
}

/* Files are loaded in name order, whatever order the directory lists them in: of sixteen
 * plugins named "twin", written from p.so down to a.so, a.so is registered and the others are
 * reported in order, each naming a.so. */
static void test_scan_sorted(void **state)
{
    (void)state;
    char src[PATH_MAX];
    tp(src, sizeof(src), "dup", "twin_a.so");
    char *dir = make_tmpdir();
    for (char c = 'p'; c >= 'a'; c--) {
        char name[8] = {c, '.', 's', 'o', '\0'};
        char *dst = join(dir, name);
        copy_file(src, dst, 0644);
        free(dst);
    }
    char *first = join(dir, "a.so");
    const char *dirs[] = {dir};
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    assert_int_equal(of_registry_scan(&reg, dirs, 1, &diag), 15);
    assert_int_equal(diag.count, 15);
    assert_int_equal(reg.count, 1);
    assert_string_equal(of_registry_find(&reg, "twin")->path, first);
    for (size_t i = 0; i < diag.count; i++) {
        char name[8] = {(char)('b' + i), '.', 's', 'o', '\0'};
        char *want = join(dir, name);
        assert_string_equal(diag.entries[i].file, want);
        assert_has(diag.entries[i].message, first);
        free(want);
    }
    of_registry_free(&reg);
    of_diag_free(&diag);
    free(first);
    remove_tree(dir);
}

static void test_scan_missing_dir(void **state)
{
    (void)state;
    char dir[PATH_MAX];
    tp_dir(dir, sizeof(dir), "no_such_case");
    const char *dirs[] = {dir};
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    assert_int_equal(of_registry_scan(&reg, dirs, 1, &diag), 1);
    assert_int_equal(diag.errors, 1);
    assert_string_equal(diag.entries[0].file, dir);
    assert_has(diag.entries[0].message, "cannot open plugin directory: No such file or directory");
    of_registry_free(&reg);
    of_diag_free(&diag);
}

static void test_scan_not_a_dir(void **state)
{
    (void)state;
    char file[PATH_MAX];
    const char *dirs[] = {tp(file, sizeof(file), "good", "good.so")};
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    assert_int_equal(of_registry_scan(&reg, dirs, 1, &diag), 1);
    assert_string_equal(diag.entries[0].file, file);
    assert_has(diag.entries[0].message, "Not a directory");
    assert_int_equal(reg.count, 0);
    of_registry_free(&reg);
    of_diag_free(&diag);
}

static void test_scan_writable_dir(void **state)
{
    (void)state;
    char *dir;
    char *path = good_copy(&dir, 0644);
    assert_int_equal(chmod(dir, 0777), 0);
    const char *dirs[] = {dir};
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    assert_int_equal(of_registry_scan(&reg, dirs, 1, &diag), 1);
    assert_int_equal(diag.count, 1);
    assert_string_equal(diag.entries[0].file, dir);
    assert_has(diag.entries[0].message,
               "plugin directory is writable by group or others (found mode 0777, expected no "
               "group or other write permission");
    assert_int_equal(reg.count, 0);
    of_registry_free(&reg);
    of_diag_free(&diag);
    free(path);
    remove_tree(dir);
}

static void test_scan_writable_file(void **state)
{
    (void)state;
    char *dir;
    char *path = good_copy(&dir, 0666);
    const char *dirs[] = {dir};
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    assert_int_equal(of_registry_scan(&reg, dirs, 1, &diag), 1);
    assert_int_equal(diag.count, 1);
    assert_string_equal(diag.entries[0].file, path);
    assert_has(diag.entries[0].message, "file is writable by group or others (found mode 0666,");
    assert_int_equal(reg.count, 0);
    of_registry_free(&reg);
    of_diag_free(&diag);
    free(path);
    remove_tree(dir);
}

/* Only *.so entries are tried; a directory named *.so is skipped. */
static void test_scan_skips_other_files(void **state)
{
    (void)state;
    char *dir;
    char *path = good_copy(&dir, 0644);
    char *txt = join(dir, "README.txt");
    write_file(txt, "not a plugin\n", 13, 0644);
    char *versioned = join(dir, "libx.so.1");
    write_file(versioned, "not a plugin\n", 13, 0644);
    char *bare = join(dir, ".so");
    write_file(bare, "not a plugin\n", 13, 0644);
    char *sub = join(dir, "sub.so");
    assert_int_equal(mkdir(sub, 0755), 0);
    const char *dirs[] = {dir};
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    assert_int_equal(of_registry_scan(&reg, dirs, 1, &diag), 0);
    assert_int_equal(diag.count, 0);
    assert_int_equal(reg.count, 1);
    assert_non_null(of_registry_find(&reg, "good"));
    of_registry_free(&reg);
    of_diag_free(&diag);
    free(path);
    free(txt);
    free(versioned);
    free(bare);
    free(sub);
    remove_tree(dir);
}

static void test_scan_several_dirs(void **state)
{
    (void)state;
    char good[PATH_MAX], missing[PATH_MAX], bad[PATH_MAX], badfile[PATH_MAX];
    const char *dirs[] = {tp_dir(good, sizeof(good), "good"),
                          tp_dir(missing, sizeof(missing), "no_such_case"),
                          tp_dir(bad, sizeof(bad), "bad_abi")};
    tp(badfile, sizeof(badfile), "bad_abi", "bad_abi.so");
    of_plugin_registry reg;
    of_diag diag;
    of_registry_init(&reg);
    of_diag_init(&diag);
    assert_int_equal(of_registry_scan(&reg, dirs, 3, &diag), 2);
    assert_int_equal(diag.errors, 2);
    assert_string_equal(diag.entries[0].file, missing);
    assert_string_equal(diag.entries[1].file, badfile);
    assert_has(diag.entries[1].message, "built for ABI 2.0");
    assert_int_equal(reg.count, 1);
    assert_non_null(of_registry_find(&reg, "good"));
    of_registry_free(&reg);
    of_diag_free(&diag);
}

/* ---------------------------------------------------------------------------------------------
 * Descriptor checks on in-test descriptors
 * ------------------------------------------------------------------------------------------- */

static of_status t_process(void *instance, of_call *call)
{
    (void)instance;
    (void)call;
    return OF_OK;
}

static const char *const t_outputs[] = {"out", "dead_letters-2", NULL};

static of_stage_descriptor base_desc(void)
{
    of_stage_descriptor d = {
        OF_DESCRIPTOR_HEADER, .name = "in-test",
        .version = "0.1.0",   .description = "built in the test",
        .outputs = t_outputs, .process = t_process,
    };
    return d;
}

static void desc_ok(const of_stage_descriptor *d)
{
    char err[1024] = "";
    if (of_plugin_check_descriptor(d, "in-test.c", err, sizeof(err)) != 0)
        fail_msg("refused: %s", err);
}

/* Refused with "in-test.c: " followed by a message holding `want`. */
static void desc_refused(const of_stage_descriptor *d, const char *want)
{
    char err[1024] = "";
    if (of_plugin_check_descriptor(d, "in-test.c", err, sizeof(err)) == 0)
        fail_msg("accepted, expected a refusal with \"%s\"", want);
    if (strncmp(err, "in-test.c: ", 11) != 0)
        fail_msg("the message does not name the origin: %s", err);
    assert_has(err, want);
}

static void test_desc_valid(void **state)
{
    (void)state;
    of_stage_descriptor d = base_desc();
    desc_ok(&d);
    d.outputs = NULL; /* a sink */
    d.description = NULL;
    d.options = NULL;
    d.init = NULL;
    d.shutdown = NULL;
    desc_ok(&d);
}

static void test_desc_null(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(of_plugin_check_descriptor(NULL, "in-test.c", err, sizeof(err)), -1);
    assert_has(err, "in-test.c: no descriptor (found NULL");
}

static void test_desc_abi_major(void **state)
{
    (void)state;
    of_stage_descriptor d = base_desc();
    d.abi_major = 2;
    d.abi_minor = 0;
    desc_refused(&d, "built for ABI 2.0, this host speaks ABI 1.x (found abi_major 2, expected 1)");
    d.abi_major = 0;
    d.abi_minor = 9;
    desc_refused(&d, "built for ABI 0.9, this host speaks ABI 1.x (found abi_major 0, expected 1)");
}

static void test_desc_abi_minor_newer(void **state)
{
    (void)state;
    of_stage_descriptor d = base_desc();
    d.abi_minor = OF_ABI_MINOR + 1;
    desc_ok(&d);
}

static void test_desc_struct_size(void **state)
{
    (void)state;
    char want[128];
    of_stage_descriptor d = base_desc();
    d.struct_size = (uint32_t)OF_DESCRIPTOR_MIN_SIZE;
    desc_ok(&d);
    d.struct_size = (uint32_t)sizeof(of_stage_descriptor) + 64; /* a newer minor's, larger */
    desc_ok(&d);
    d.struct_size = (uint32_t)OF_DESCRIPTOR_MIN_SIZE - 1;
    snprintf(want, sizeof(want),
             "descriptor too small (found struct_size %zu, expected at least %zu",
             (size_t)OF_DESCRIPTOR_MIN_SIZE - 1, (size_t)OF_DESCRIPTOR_MIN_SIZE);
    desc_refused(&d, want);
    d.struct_size = 0;
    desc_refused(&d, "found struct_size 0,");
}

static void test_desc_signature(void **state)
{
    (void)state;
    char want[160];
    of_stage_descriptor d = base_desc();
    d.signature.pointer_size = 4 + 8 - sizeof(void *);
    snprintf(want, sizeof(want), "a pointer is %zu bytes in the plugin, %zu in the host",
             4 + 8 - sizeof(void *), sizeof(void *));
    desc_refused(&d, want);

    d = base_desc();
    d.signature.time_t_size = sizeof(time_t) == 8 ? 4 : 8;
    snprintf(want, sizeof(want), "time_t is %u bytes in the plugin, %zu in the host",
             (unsigned)d.signature.time_t_size, sizeof(time_t));
    desc_refused(&d, want);

    d = base_desc();
    d.signature.size_t_size = 2;
    snprintf(want, sizeof(want), "size_t is 2 bytes in the plugin, %zu in the host",
             sizeof(size_t));
    desc_refused(&d, want);

    d = base_desc();
    d.signature.big_endian = !OF_BIG_ENDIAN_;
    desc_refused(&d, OF_BIG_ENDIAN_ ? "the plugin is little-endian (big_endian 0), the host "
                                      "big-endian (big_endian 1)"
                                    : "the plugin is big-endian (big_endian 1), the host "
                                      "little-endian (big_endian 0)");

    d = base_desc();
    d.signature.features = OF_SDK_FEATURES | 0x80000000u | 0x40u;
    snprintf(want, sizeof(want),
             "SDK feature flags 0x80000040 the host lacks (found features 0x%x, expected a "
             "subset of 0x%x)",
             OF_SDK_FEATURES | 0x80000040u, OF_SDK_FEATURES);
    desc_refused(&d, want);

    /* Fewer features than the host is fine. */
    d = base_desc();
    d.signature.features = 0;
    desc_ok(&d);
}

static void test_desc_signature_lists_every_mismatch(void **state)
{
    (void)state;
    char want[160];
    of_stage_descriptor d = base_desc();
    d.signature.size_t_size = 3;
    d.signature.features = OF_SDK_FEATURES | 0x2u;
    desc_refused(&d, "build signature does not match the host's: ");
    snprintf(want, sizeof(want), "size_t is 3 bytes in the plugin, %zu in the host; ",
             sizeof(size_t));
    desc_refused(&d, want);
    desc_refused(&d, "SDK feature flags 0x2 the host lacks");
}

static void test_desc_name(void **state)
{
    (void)state;
    of_stage_descriptor d = base_desc();
    static const char *const bad[] = {"",    "Bad", "-x",  "_x",         "a b",
                                      "a.b", "a/b", "ab!", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d.name = bad[i];
        desc_refused(&d, "bad plugin name (found '");
    }
    d.name = "Bad Name!";
    desc_refused(&d, "bad plugin name (found 'Bad Name!', expected [a-z0-9][a-z0-9_-]*, at most "
                     "63 characters)");
    d.name = "caf\xc3\xa9";
    desc_refused(&d, "found 'caf\\xc3\\xa9'");
    d.name = NULL;
    desc_refused(&d, "bad plugin name (found NULL,");

    char name[80];
    memset(name, 'a', sizeof(name));
    name[63] = '\0';
    d.name = name;
    desc_ok(&d);
    name[63] = 'a';
    name[64] = '\0';
    desc_refused(&d, "bad plugin name (found 'aaaa");

    static const char *const good[] = {"a", "0", "9lives", "a_b-c", "x-"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        d.name = good[i];
        desc_ok(&d);
    }
}

static void test_desc_version_and_process(void **state)
{
    (void)state;
    of_stage_descriptor d = base_desc();
    d.version = NULL;
    desc_refused(&d, "plugin 'in-test' has no version (found NULL,");
    d = base_desc();
    d.process = NULL;
    desc_refused(&d, "plugin 'in-test' has no process callback (found NULL, expected a function)");
}

static void test_desc_reserved(void **state)
{
    (void)state;
    static int marker;
    of_stage_descriptor d = base_desc();
    d.reserved[2] = &marker;
    desc_refused(&d, "reserved slot 2 is set (found 0x");
    desc_refused(&d, "expected NULL in ABI 1.6)");
    d.reserved[2] = NULL;
    d.reserved[3] = &marker;
    desc_refused(&d, "reserved slot 3 is set");

    /* Slots beyond the plugin's struct_size are not the plugin's and are not read. */
    d = base_desc();
    d.struct_size = (uint32_t)(offsetof(of_stage_descriptor, reserved) + 2 * sizeof(void *));
    d.reserved[2] = &marker;
    desc_ok(&d);
    d.reserved[1] = &marker;
    desc_refused(&d, "reserved slot 1 is set");

    /* A newer minor may have given the slots a meaning; this host ignores them. */
    d = base_desc();
    d.abi_minor = OF_ABI_MINOR + 1;
    d.reserved[0] = &marker;
    desc_ok(&d);
}

static void t_process_batch(void *instance, of_call *const *calls, size_t n, of_status *status)
{
    (void)instance;
    (void)calls;
    for (size_t i = 0; i < n; i++)
        status[i] = OF_OK;
}

/* process_batch (ABI 1.5): only for a database stage (no other stage's events share a
 * transaction); read only from a descriptor of 1.5 or later that has the slot, which had to be
 * NULL before. */
static void test_desc_process_batch(void **state)
{
    (void)state;
    of_stage_descriptor d = base_desc();
    assert_null(of_descriptor_process_batch(&d));
    d.process_batch = t_process_batch;
    desc_refused(&d, "plugin 'in-test' has process_batch but not OF_STAGE_DATABASE");
    d.flags = OF_STAGE_DATABASE;
    desc_ok(&d);
    assert_true(of_descriptor_process_batch(&d) == t_process_batch);

    /* Before 1.5 the slot was reserved slot 0 (slot 1 before 1.3, when accepts was slot 0). */
    d.abi_minor = 4;
    assert_null(of_descriptor_process_batch(&d));
    desc_refused(&d, "reserved slot 0 is set (found 0x");
    desc_refused(&d, "expected NULL in ABI 1.4; process_batch came with ABI 1.5)");
    d.abi_minor = 2;
    desc_refused(&d, "reserved slot 1 is set (found 0x");
    /* Cut off by the plugin's struct_size: not the plugin's, not read. */
    d = base_desc();
    d.flags = OF_STAGE_DATABASE;
    d.struct_size = (uint32_t)offsetof(of_stage_descriptor, process_batch);
    d.process_batch = t_process_batch;
    assert_null(of_descriptor_process_batch(&d));
    desc_ok(&d);
}

/* accepts (ABI 1.3): a list of event types, each printable and unique, at least one, at most
 * OF_ACCEPTS_MAX; read only from a descriptor of 1.3 or later that has the slot. */
static void test_desc_accepts(void **state)
{
    (void)state;
    of_stage_descriptor d = base_desc();
    assert_null(of_descriptor_accepts(&d));
    assert_int_equal(of_descriptor_accepts_type(&d, "anything", 8), 1);
    static const char *const two[] = {"order.placed", "inventory.reserved", NULL};
    d.accepts = two;
    desc_ok(&d);
    assert_ptr_equal(of_descriptor_accepts(&d), two);
    assert_int_equal(of_descriptor_accepts_type(&d, "order.placed", 12), 1);
    assert_int_equal(of_descriptor_accepts_type(&d, "inventory.reserved", 18), 1);
    assert_int_equal(of_descriptor_accepts_type(&d, "order.place", 11), 0);     /* a prefix */
    assert_int_equal(of_descriptor_accepts_type(&d, "order.placed!", 13), 0);   /* longer */
    assert_int_equal(of_descriptor_accepts_type(&d, "order.placed\0x", 14), 0); /* embedded NUL */
    assert_int_equal(of_descriptor_accepts_type(&d, "", 0), 0);
    assert_int_equal(of_descriptor_accepts_type(&d, NULL, 0), 1); /* no ce_type: process() */

    static const char *const empty[] = {NULL};
    d.accepts = empty;
    desc_refused(&d, "plugin 'in-test': accepts an empty list (expected 1 to 64 types, or NULL");
    static const char *const blank[] = {"a.b", "", NULL};
    d.accepts = blank;
    desc_refused(&d, "bad accepted type #1 (found '', expected 1 to 127 printable characters");
    static const char *const spaced[] = {"a b", NULL};
    d.accepts = spaced;
    desc_refused(&d, "bad accepted type #0 (found 'a b'");
    static const char *const ctl[] = {"a\x01", NULL};
    d.accepts = ctl;
    desc_refused(&d, "bad accepted type #0 (found 'a\\x01'");
    static const char *const high[] = {"caf\xc3\xa9", NULL};
    d.accepts = high;
    desc_refused(&d, "bad accepted type #0");
    static char longest[129];
    memset(longest, 't', 128);
    static const char *const toolong[] = {longest, NULL};
    d.accepts = toolong;
    desc_refused(&d, "bad accepted type #0");
    longest[127] = '\0'; /* 127 is the limit */
    desc_ok(&d);
    static const char *const twice[] = {"x", "y", "x", NULL};
    d.accepts = twice;
    desc_refused(&d, "accepted type 'x' is listed twice (found it at #0 and #2");
    static char names[OF_ACCEPTS_MAX + 1][8];
    static const char *many[OF_ACCEPTS_MAX + 2];
    for (int i = 0; i <= OF_ACCEPTS_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "t%d", i);
        many[i] = names[i];
    }
    many[OF_ACCEPTS_MAX + 1] = NULL;
    d.accepts = many;
    desc_refused(&d, "accepts too many types (expected 1 to 64 types");
    many[OF_ACCEPTS_MAX] = NULL;
    desc_ok(&d);

    /* Before 1.3 the slot was reserved: not read as a list. */
    d = base_desc();
    d.abi_minor = 2;
    d.accepts = two;
    assert_null(of_descriptor_accepts(&d));
    desc_refused(&d, "reserved slot 0 is set (found 0x"); /* the 1.2 rules: it must be NULL */
    desc_refused(&d, "expected NULL in ABI 1.2; accepts came with ABI 1.3)");
    d = base_desc();
    d.struct_size = (uint32_t)offsetof(of_stage_descriptor, accepts);
    d.accepts = two;
    assert_null(of_descriptor_accepts(&d));
    desc_ok(&d);
}

static void test_desc_flags(void **state)
{
    (void)state;
    of_stage_descriptor d = base_desc();
    d.flags = OF_STAGE_DATABASE;
    desc_ok(&d);
    /* A flag this host does not know would change what the plugin expects of it. */
    d.flags = OF_STAGE_DATABASE | (1u << 7);
    desc_refused(&d, "plugin 'in-test' has unknown flags 0x80 (found 0x81, this host knows 0x1)");
    /* A 1.0 descriptor ends before the flags: they are not read. */
    d = base_desc();
    d.abi_minor = 0;
    d.struct_size = (uint32_t)offsetof(of_stage_descriptor, flags);
    d.flags = 0xff;
    desc_ok(&d);
}

static void test_desc_options(void **state)
{
    (void)state;
    static const of_option bad_default[] = {
        {.name = "timeout", .type = OF_OPT_DURATION, .default_value = "abc"},
        {.name = NULL},
    };
    static const of_option bad_name[] = {
        {.name = "Bad-Option", .type = OF_OPT_STRING},
        {.name = NULL},
    };
    static const of_option fine[] = {
        {.name = "timeout", .type = OF_OPT_DURATION, .default_value = "1.5s"},
        {.name = "limit", .type = OF_OPT_SIZE, .default_value = "64KiB"},
        {.name = NULL},
    };
    of_stage_descriptor d = base_desc();
    d.options = bad_default;
    desc_refused(&d, "plugin 'in-test': bad option table: ");
    desc_refused(&d, "'timeout'");
    d.options = bad_name;
    desc_refused(&d, "plugin 'in-test': bad option table: ");
    desc_refused(&d, "Bad-Option");
    d.options = fine;
    desc_ok(&d);
}

static void test_desc_outputs(void **state)
{
    (void)state;
    static const char *const upper[] = {"out", "Out", NULL};
    static const char *const empty[] = {"", NULL};
    static const char *const spaced[] = {"a b", NULL};
    static const char *const twice[] = {"out", "err", "out", NULL};
    of_stage_descriptor d = base_desc();
    d.outputs = upper;
    desc_refused(&d, "plugin 'in-test': bad output name #1 (found 'Out', expected [a-z0-9_-]+)");
    d.outputs = empty;
    desc_refused(&d, "bad output name #0 (found '',");
    d.outputs = spaced;
    desc_refused(&d, "bad output name #0 (found 'a b',");
    d.outputs = twice;
    desc_refused(&d, "plugin 'in-test': output 'out' is declared twice (found it at #0 and #2, "
                     "expected unique names)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_signature),
        cmocka_unit_test(test_load_good),
        cmocka_unit_test(test_load_through_symlink),
        cmocka_unit_test(test_bad_abi),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_small_struct),
        cmocka_unit_test(test_no_entry),
        cmocka_unit_test(test_null_process),
        cmocka_unit_test(test_bad_name),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_undefined_symbol),
        cmocka_unit_test(test_entry_elsewhere),
        cmocka_unit_test(test_not_elf),
        cmocka_unit_test(test_executable),
        cmocka_unit_test(test_executable_nopie),
        cmocka_unit_test(test_wrong_class),
        cmocka_unit_test(test_wrong_byte_order),
        cmocka_unit_test(test_wrong_machine),
        cmocka_unit_test(test_relocatable),
        cmocka_unit_test(test_truncated_and_empty),
        cmocka_unit_test(test_writable_file),
        cmocka_unit_test(test_writable_dir),
        cmocka_unit_test(test_symlink_into_writable_dir),
        cmocka_unit_test(test_not_regular_missing_loop),
        cmocka_unit_test(test_scan_good),
        cmocka_unit_test(test_scan_dup),
        cmocka_unit_test(test_scan_each_broken_case),
        cmocka_unit_test(test_scan_sorted),
        cmocka_unit_test(test_scan_missing_dir),
        cmocka_unit_test(test_scan_not_a_dir),
        cmocka_unit_test(test_scan_writable_dir),
        cmocka_unit_test(test_scan_writable_file),
        cmocka_unit_test(test_scan_skips_other_files),
        cmocka_unit_test(test_scan_several_dirs),
        cmocka_unit_test(test_desc_valid),
        cmocka_unit_test(test_desc_null),
        cmocka_unit_test(test_desc_abi_major),
        cmocka_unit_test(test_desc_abi_minor_newer),
        cmocka_unit_test(test_desc_struct_size),
        cmocka_unit_test(test_desc_signature),
        cmocka_unit_test(test_desc_signature_lists_every_mismatch),
        cmocka_unit_test(test_desc_name),
        cmocka_unit_test(test_desc_version_and_process),
        cmocka_unit_test(test_desc_reserved),
        cmocka_unit_test(test_desc_accepts),
        cmocka_unit_test(test_desc_process_batch),
        cmocka_unit_test(test_desc_flags),
        cmocka_unit_test(test_desc_options),
        cmocka_unit_test(test_desc_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
