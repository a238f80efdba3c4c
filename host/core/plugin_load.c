/* The plugin loader: checks a stage plugin file (permissions, ELF header) before it is mapped,
 * dlopen()s it with RTLD_NOW|RTLD_LOCAL, checks the descriptor its entry function returns, and
 * scans plugin directories into the registry. No code of a plugin runs here other than its ELF
 * constructors (run by dlopen) and its entry function; init is the runner's business.
 *
 * Every refusal is one line, "PATH: what is wrong (found X, expected Y)", in the spirit of
 * NGINX's module signature check and librdkafka's errstr. */
#include "plugin.h"
#include "options.h"

#include <dirent.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <link.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DF_1_PIE
#define DF_1_PIE 0x08000000
#endif

/* The host's own ELF identity: the class and byte order follow from the compiler; the machine
 * from the target macros. */
#if __ELF_NATIVE_CLASS == 64
#define OF_ELF_CLASS ELFCLASS64
#else
#define OF_ELF_CLASS ELFCLASS32
#endif

#if OF_BIG_ENDIAN_
#define OF_ELF_DATA ELFDATA2MSB
#else
#define OF_ELF_DATA ELFDATA2LSB
#endif

#if defined(__x86_64__)
#define OF_ELF_MACHINE EM_X86_64
#elif defined(__i386__)
#define OF_ELF_MACHINE EM_386
#elif defined(__aarch64__)
#define OF_ELF_MACHINE EM_AARCH64
#elif defined(__arm__)
#define OF_ELF_MACHINE EM_ARM
#elif defined(__riscv)
#define OF_ELF_MACHINE EM_RISCV
#elif defined(__powerpc64__)
#define OF_ELF_MACHINE EM_PPC64
#elif defined(__powerpc__)
#define OF_ELF_MACHINE EM_PPC
#elif defined(__s390__)
#define OF_ELF_MACHINE EM_S390
#elif defined(__mips__)
#define OF_ELF_MACHINE EM_MIPS
#elif defined(__loongarch__)
#define OF_ELF_MACHINE 258 /* EM_LOONGARCH */
#else
#error "orderflow: unknown target machine; add its EM_* value to plugin_load.c"
#endif

/* Group or other write permission. */
#define OF_UNSAFE_WRITE_BITS (S_IWGRP | S_IWOTH)

/* ---------------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------------- */

/* Writes "ORIGIN: " and the formatted reason to errstr (which may be NULL when size is 0). */
static void set_error(char *errstr, size_t size, const char *origin, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(char *errstr, size_t size, const char *origin, const char *fmt, ...)
{
    if (!errstr || size == 0)
        return;
    int n = snprintf(errstr, size, "%s: ", origin ? origin : "<descriptor>");
    if (n < 0 || (size_t)n >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr + n, size - (size_t)n, fmt, ap);
    va_end(ap);
}

/* A string as it may appear in a message: quoted, with bytes outside printable ASCII escaped,
 * cut after 64 characters; "NULL" for a null pointer. */
static const char *quote(const char *s, char *buf, size_t size)
{
    if (!s) {
        snprintf(buf, size, "NULL");
        return buf;
    }
    size_t o = 0;
    buf[o++] = '\'';
    size_t i = 0;
    for (; s[i] && i < 64 && o + 8 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            buf[o++] = (char)c;
        } else {
            int n = snprintf(buf + o, size - o, "\\x%02x", c);
            o += (size_t)n;
        }
    }
    if (s[i] && o + 5 < size) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
    return buf;
}

static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISLNK(mode))
        return "a symbolic link";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISREG(mode))
        return "a regular file";
    return "an unknown kind of file";
}

static const char *machine_name(unsigned m)
{
    switch (m) {
    case EM_386:
        return "x86";
    case EM_X86_64:
        return "x86-64";
    case EM_ARM:
        return "ARM";
    case EM_AARCH64:
        return "AArch64";
    case EM_RISCV:
        return "RISC-V";
    case EM_PPC:
        return "PowerPC";
    case EM_PPC64:
        return "PowerPC64";
    case EM_S390:
        return "S/390";
    case EM_MIPS:
        return "MIPS";
    case EM_SPARCV9:
        return "SPARC V9";
    case 258:
        return "LoongArch";
    default:
        return "unknown";
    }
}

static const char *class_name(unsigned c)
{
    switch (c) {
    case ELFCLASS32:
        return "ELFCLASS32 (32-bit)";
    case ELFCLASS64:
        return "ELFCLASS64 (64-bit)";
    default:
        return "an invalid class";
    }
}

static const char *data_name(unsigned d)
{
    switch (d) {
    case ELFDATA2LSB:
        return "ELFDATA2LSB (little-endian)";
    case ELFDATA2MSB:
        return "ELFDATA2MSB (big-endian)";
    default:
        return "an invalid byte order";
    }
}

/* ---------------------------------------------------------------------------------------------
 * File checks, before anything is mapped
 * ------------------------------------------------------------------------------------------- */

/* The directory part of path ("." when there is none). Caller frees. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Refuses a directory that group or others may write to: whoever can write there can replace
 * the plugin. */
static int check_dir(const char *path, const char *dir, char *errstr, size_t errstr_size)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        set_error(errstr, errstr_size, path, "cannot stat its directory %s: %s", dir,
                  strerror(errno));
        return -1;
    }
    if (st.st_mode & OF_UNSAFE_WRITE_BITS) {
        set_error(errstr, errstr_size, path,
                  "directory %s is writable by group or others (found mode %04o, expected no "
                  "group or other write permission, e.g. 0755)",
                  dir, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/* stat and permission checks of the file and of its directory (and, for a symbolic link, of
 * the directory of the file it points to). Fills *st with the file's (followed) status. */
static int check_file(const char *path, struct stat *st, char *errstr, size_t errstr_size)
{
    struct stat lst;
    if (lstat(path, &lst) != 0) {
        set_error(errstr, errstr_size, path, "cannot stat: %s", strerror(errno));
        return -1;
    }
    if (stat(path, st) != 0) {
        int e = errno;
        if (e == ELOOP)
            set_error(errstr, errstr_size, path,
                      "symbolic link loop (found too many levels of symbolic links, expected a "
                      "link to a regular file)");
        else if (e == ENOENT)
            set_error(errstr, errstr_size, path,
                      "dangling symbolic link (found a link to a missing file, expected a link "
                      "to a regular file)");
        else
            set_error(errstr, errstr_size, path, "cannot stat: %s", strerror(e));
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        set_error(errstr, errstr_size, path,
                  "not a regular file (found %s, expected a regular file)", file_kind(st->st_mode));
        return -1;
    }
    if (st->st_mode & OF_UNSAFE_WRITE_BITS) {
        set_error(errstr, errstr_size, path,
                  "file is writable by group or others (found mode %04o, expected no group or "
                  "other write permission, e.g. 0644)",
                  (unsigned)(st->st_mode & 07777));
        return -1;
    }
    char *dir = dir_of(path);
    if (!dir) {
        set_error(errstr, errstr_size, path, "out of memory");
        return -1;
    }
    int rc = check_dir(path, dir, errstr, errstr_size);
    free(dir);
    if (rc != 0 || !S_ISLNK(lst.st_mode))
        return rc;
    char *real = realpath(path, NULL);
    if (!real) {
        set_error(errstr, errstr_size, path, "cannot resolve symbolic link: %s", strerror(errno));
        return -1;
    }
    dir = dir_of(real);
    free(real);
    if (!dir) {
        set_error(errstr, errstr_size, path, "out of memory");
        return -1;
    }
    rc = check_dir(path, dir, errstr, errstr_size);
    free(dir);
    return rc;
}

static int read_at(int fd, void *buf, size_t len, off_t off, ssize_t *got)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *got = (ssize_t)done;
    return 0;
}

/* A position-independent executable is ET_DYN too; the linker marks it with DF_1_PIE in
 * DT_FLAGS_1 (glibc refuses to dlopen it for the same reason). Returns 1 when marked, 0 when
 * not, -1 on a read error. */
static int is_pie(int fd, const ElfW(Ehdr) * eh)
{
    if (eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phnum == 0 || eh->e_phnum == PN_XNUM)
        return 0; /* nothing we can read; dlopen judges the rest */
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        ElfW(Phdr) ph;
        ssize_t got;
        if (read_at(fd, &ph, sizeof(ph), (off_t)(eh->e_phoff + i * sizeof(ph)), &got) != 0)
            return -1;
        if ((size_t)got != sizeof(ph))
            return 0;
        if (ph.p_type != PT_DYNAMIC)
            continue;
        size_t count = ph.p_filesz / sizeof(ElfW(Dyn));
        for (size_t j = 0; j < count; j++) {
            ElfW(Dyn) dyn;
            if (read_at(fd, &dyn, sizeof(dyn), (off_t)(ph.p_offset + j * sizeof(dyn)), &got) != 0)
                return -1;
            if ((size_t)got != sizeof(dyn) || dyn.d_tag == DT_NULL)
                return 0;
            if (dyn.d_tag == DT_FLAGS_1 && (dyn.d_un.d_val & DF_1_PIE))
                return 1;
        }
        return 0;
    }
    return 0;
}

/* Opens the file it stat'ed and checks it is an ELF shared object for this host's class, byte
 * order and machine. */
static int check_elf(const char *path, const struct stat *st, char *errstr, size_t errstr_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        set_error(errstr, errstr_size, path, "cannot open: %s", strerror(errno));
        return -1;
    }
    int rc = -1;
    struct stat fst;
    if (fstat(fd, &fst) != 0) {
        set_error(errstr, errstr_size, path, "cannot stat: %s", strerror(errno));
        goto out;
    }
    if (fst.st_dev != st->st_dev || fst.st_ino != st->st_ino) {
        set_error(errstr, errstr_size, path,
                  "the file was replaced while it was being checked (found inode %llu, expected "
                  "%llu)",
                  (unsigned long long)fst.st_ino, (unsigned long long)st->st_ino);
        goto out;
    }

    ElfW(Ehdr) eh;
    memset(&eh, 0, sizeof(eh));
    ssize_t got;
    if (read_at(fd, &eh, sizeof(eh), 0, &got) != 0) {
        set_error(errstr, errstr_size, path, "cannot read: %s", strerror(errno));
        goto out;
    }
    if (got < SELFMAG || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        char found[32] = "an empty file";
        if (got > 0) {
            size_t o = 0;
            for (ssize_t i = 0; i < got && i < SELFMAG; i++)
                o += (size_t)snprintf(found + o, sizeof(found) - o, "%s%02x", i ? " " : "",
                                      eh.e_ident[i]);
        }
        set_error(errstr, errstr_size, path,
                  "not a shared object: no ELF header (found %s, expected 7f 45 4c 46)", found);
        goto out;
    }
    if (got < EI_NIDENT) {
        set_error(errstr, errstr_size, path,
                  "truncated ELF header (found %zd bytes, expected at least %zu)", got, sizeof(eh));
        goto out;
    }
    if (eh.e_ident[EI_CLASS] != OF_ELF_CLASS) {
        set_error(errstr, errstr_size, path,
                  "wrong ELF class (found %s, expected %s like the host)",
                  class_name(eh.e_ident[EI_CLASS]), class_name(OF_ELF_CLASS));
        goto out;
    }
    if (eh.e_ident[EI_DATA] != OF_ELF_DATA) {
        set_error(errstr, errstr_size, path,
                  "wrong ELF byte order (found %s, expected %s like the host)",
                  data_name(eh.e_ident[EI_DATA]), data_name(OF_ELF_DATA));
        goto out;
    }
    if ((size_t)got < sizeof(eh)) {
        set_error(errstr, errstr_size, path,
                  "truncated ELF header (found %zd bytes, expected at least %zu)", got, sizeof(eh));
        goto out;
    }
    if (eh.e_type != ET_DYN) {
        const char *what = eh.e_type == ET_EXEC   ? "an ELF executable"
                           : eh.e_type == ET_REL  ? "an ELF relocatable object (.o)"
                           : eh.e_type == ET_CORE ? "an ELF core dump"
                                                  : "an ELF file";
        const char *type = eh.e_type == ET_EXEC   ? "ET_EXEC"
                           : eh.e_type == ET_REL  ? "ET_REL"
                           : eh.e_type == ET_CORE ? "ET_CORE"
                           : eh.e_type == ET_NONE ? "ET_NONE"
                                                  : NULL;
        if (type)
            set_error(errstr, errstr_size, path,
                      "%s, not a shared object (found e_type %s, expected ET_DYN)", what, type);
        else
            set_error(errstr, errstr_size, path,
                      "%s, not a shared object (found e_type %u, expected ET_DYN)", what,
                      (unsigned)eh.e_type);
        goto out;
    }
    if (eh.e_machine != OF_ELF_MACHINE) {
        set_error(errstr, errstr_size, path,
                  "built for another machine (found e_machine %u (%s), expected %u (%s))",
                  (unsigned)eh.e_machine, machine_name(eh.e_machine), (unsigned)OF_ELF_MACHINE,
                  machine_name(OF_ELF_MACHINE));
        goto out;
    }
    int pie = is_pie(fd, &eh);
    if (pie < 0) {
        set_error(errstr, errstr_size, path, "cannot read: %s", strerror(errno));
        goto out;
    }
    if (pie) {
        set_error(errstr, errstr_size, path,
                  "an ELF executable (position-independent), not a shared object (found "
                  "DF_1_PIE in DT_FLAGS_1, expected a library linked with -shared)");
        goto out;
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Descriptor checks
 * ------------------------------------------------------------------------------------------- */

void of_host_signature(of_build_signature *out)
{
    const of_build_signature host = OF_BUILD_SIGNATURE_INIT;
    *out = host;
}

static int name_valid(const char *s)
{
    if (!s || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return 0;
    size_t i = 1;
    for (; s[i]; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
        if (i >= OF_PLUGIN_NAME_MAX)
            return 0;
    }
    return 1;
}

const char *const *of_descriptor_accepts(const of_stage_descriptor *desc)
{
    if (!desc || desc->abi_minor < 3 ||
        offsetof(of_stage_descriptor, accepts) + sizeof(desc->accepts) > desc->struct_size)
        return NULL;
    return desc->accepts;
}

int of_descriptor_accepts_type(const of_stage_descriptor *desc, const void *type, size_t len)
{
    const char *const *list = of_descriptor_accepts(desc);
    if (!list || !type)
        return 1;
    for (size_t i = 0; list[i]; i++)
        if (strlen(list[i]) == len && memcmp(list[i], type, len) == 0)
            return 1;
    return 0;
}

int of_descriptor_uses_db(const of_stage_descriptor *desc)
{
    return desc &&
           desc->struct_size >= offsetof(of_stage_descriptor, flags) + sizeof(desc->flags) &&
           (desc->flags & OF_STAGE_DATABASE) != 0;
}

of_process_batch_fn of_descriptor_process_batch(const of_stage_descriptor *desc)
{
    if (!desc || desc->abi_minor < 5 ||
        offsetof(of_stage_descriptor, process_batch) + sizeof(desc->process_batch) >
            desc->struct_size)
        return NULL;
    return desc->process_batch;
}

/* `process_batch` (ABI 1.5): the host runs batches only for database stages, so on any other the
 * function would silently never be called; refused instead. */
static int check_process_batch(const of_stage_descriptor *desc, const char *origin, char *errstr,
                               size_t errstr_size)
{
    if (offsetof(of_stage_descriptor, process_batch) + sizeof(desc->process_batch) >
        desc->struct_size)
        return 0;
    if (desc->abi_minor < 5 && desc->process_batch) {
        /* Before 1.5 the slot was reserved (the first spare one, the second before 1.3). */
        set_error(errstr, errstr_size, origin,
                  "plugin '%s': reserved slot %d is set (found %p, expected NULL in ABI %u.%u; "
                  "process_batch came with ABI 1.5)",
                  desc->name, desc->abi_minor < 3 ? 1 : 0, *(void *const *)&desc->process_batch,
                  desc->abi_major, desc->abi_minor);
        return -1;
    }
    if (of_descriptor_process_batch(desc) && !of_descriptor_uses_db(desc)) {
        set_error(errstr, errstr_size, origin,
                  "plugin '%s' has process_batch but not OF_STAGE_DATABASE (found flags 0x%lx, "
                  "expected the database flag: only a database stage's events share a "
                  "transaction)",
                  desc->name, (unsigned long)desc->flags);
        return -1;
    }
    return 0;
}

/* `accepts` (ABI 1.3): an empty list would silently drop every typed event, so it is refused
 * like any other malformed entry. */
static int check_accepts(const of_stage_descriptor *desc, const char *origin, char *errstr,
                         size_t errstr_size)
{
    if (desc->abi_minor < 3 &&
        offsetof(of_stage_descriptor, accepts) + sizeof(desc->accepts) <= desc->struct_size &&
        desc->accepts) {
        /* Before 1.3 the slot was reserved, and reserved slots must be NULL. */
        set_error(errstr, errstr_size, origin,
                  "plugin '%s': reserved slot 0 is set (found %p, expected NULL in ABI %u.%u; "
                  "accepts came with ABI 1.3)",
                  desc->name, (const void *)desc->accepts, desc->abi_major, desc->abi_minor);
        return -1;
    }
    const char *const *list = of_descriptor_accepts(desc);
    if (!list)
        return 0;
    char q[160];
    size_t n = 0;
    for (; n <= OF_ACCEPTS_MAX && list[n]; n++) {
        const char *t = list[n];
        size_t len = strnlen(t, 128);
        int ok = len > 0 && len < 128;
        for (size_t i = 0; ok && i < len; i++)
            ok = t[i] > 0x20 && t[i] < 0x7f;
        if (!ok) {
            set_error(errstr, errstr_size, origin,
                      "plugin '%s': bad accepted type #%zu (found %s, expected 1 to 127 printable "
                      "characters without spaces)",
                      desc->name, n, quote(t, q, sizeof(q)));
            return -1;
        }
        for (size_t j = 0; j < n; j++)
            if (strcmp(list[j], t) == 0) {
                set_error(errstr, errstr_size, origin,
                          "plugin '%s': accepted type '%s' is listed twice (found it at #%zu and "
                          "#%zu, expected unique types)",
                          desc->name, t, j, n);
                return -1;
            }
    }
    if (n == 0 || n > OF_ACCEPTS_MAX) {
        set_error(errstr, errstr_size, origin,
                  "plugin '%s': accepts %s (expected 1 to %d types, or NULL for every type)",
                  desc->name, n ? "too many types" : "an empty list", OF_ACCEPTS_MAX);
        return -1;
    }
    return 0;
}

static int output_valid(const char *s)
{
    if (!s || !s[0])
        return 0;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Appends "; " (unless first) and the formatted text to buf. */
static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t size, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len + 1 >= size)
        return;
    if (len) {
        int n = snprintf(buf + len, size - len, "; ");
        if (n < 0 || len + (size_t)n >= size)
            return;
        len += (size_t)n;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}

static int check_signature(const of_build_signature *sig, const char *origin, char *errstr,
                           size_t errstr_size)
{
    of_build_signature host;
    of_host_signature(&host);
    char why[512] = "";
    if (sig->pointer_size != host.pointer_size)
        append(why, sizeof(why), "a pointer is %u bytes in the plugin, %u in the host",
               sig->pointer_size, host.pointer_size);
    if (sig->time_t_size != host.time_t_size)
        append(why, sizeof(why), "time_t is %u bytes in the plugin, %u in the host",
               sig->time_t_size, host.time_t_size);
    if (sig->size_t_size != host.size_t_size)
        append(why, sizeof(why), "size_t is %u bytes in the plugin, %u in the host",
               sig->size_t_size, host.size_t_size);
    if (sig->big_endian != host.big_endian)
        append(why, sizeof(why), "the plugin is %s (big_endian %u), the host %s (big_endian %u)",
               sig->big_endian ? "big-endian" : "little-endian", sig->big_endian,
               host.big_endian ? "big-endian" : "little-endian", host.big_endian);
    uint32_t extra = sig->features & ~host.features;
    if (extra)
        append(why, sizeof(why),
               "the plugin was built with SDK feature flags 0x%" PRIx32 " the host lacks "
               "(found features 0x%" PRIx32 ", expected a subset of 0x%" PRIx32 ")",
               extra, sig->features, host.features);
    if (why[0] == '\0')
        return 0;
    set_error(errstr, errstr_size, origin,
              "build signature does not match the host's: %s (rebuild the plugin against this "
              "host's SDK)",
              why);
    return -1;
}

int of_plugin_check_descriptor(const of_stage_descriptor *desc, const char *origin, char *errstr,
                               size_t errstr_size)
{
    char q[300];
    if (!desc) {
        set_error(errstr, errstr_size, origin,
                  "no descriptor (found NULL, expected a pointer to an of_stage_descriptor)");
        return -1;
    }
    /* Only the first three fields are common to every layout; read nothing else until the
     * major version and the size say the rest is there. */
    if (desc->abi_major != OF_ABI_MAJOR) {
        set_error(errstr, errstr_size, origin,
                  "built for ABI %" PRIu32 ".%" PRIu32 ", this host speaks ABI %d.x (found "
                  "abi_major %" PRIu32 ", expected %d)",
                  desc->abi_major, desc->abi_minor, OF_ABI_MAJOR, desc->abi_major, OF_ABI_MAJOR);
        return -1;
    }
    if (desc->struct_size < OF_DESCRIPTOR_MIN_SIZE) {
        set_error(errstr, errstr_size, origin,
                  "descriptor too small (found struct_size %" PRIu32 ", expected at least %zu, "
                  "the ABI %d.0 descriptor up to 'shutdown')",
                  desc->struct_size, (size_t)OF_DESCRIPTOR_MIN_SIZE, OF_ABI_MAJOR);
        return -1;
    }
    /* A newer minor is fine: its extra fields are not read, and the plugin must test
     * OF_API_HAS before using host functions this host may not have. */
    if (check_signature(&desc->signature, origin, errstr, errstr_size) != 0)
        return -1;
    if (!name_valid(desc->name)) {
        set_error(errstr, errstr_size, origin,
                  "bad plugin name (found %s, expected [a-z0-9][a-z0-9_-]*, at most %d "
                  "characters)",
                  quote(desc->name, q, sizeof(q)), OF_PLUGIN_NAME_MAX);
        return -1;
    }
    if (!desc->version) {
        set_error(errstr, errstr_size, origin,
                  "plugin '%s' has no version (found NULL, expected a string such as \"1.0.0\")",
                  desc->name);
        return -1;
    }
    if (!desc->process) {
        set_error(errstr, errstr_size, origin,
                  "plugin '%s' has no process callback (found NULL, expected a function)",
                  desc->name);
        return -1;
    }
    /* Flags (ABI 1.1) are read only when the plugin's descriptor has them. */
    if (offsetof(of_stage_descriptor, flags) + sizeof(desc->flags) <= desc->struct_size &&
        desc->abi_minor <= OF_ABI_MINOR && (desc->flags & ~(uintptr_t)OF_STAGE_KNOWN_FLAGS)) {
        set_error(errstr, errstr_size, origin,
                  "plugin '%s' has unknown flags 0x%lx (found 0x%lx, this host knows 0x%x)",
                  desc->name, (unsigned long)(desc->flags & ~(uintptr_t)OF_STAGE_KNOWN_FLAGS),
                  (unsigned long)desc->flags, (unsigned)OF_STAGE_KNOWN_FLAGS);
        return -1;
    }
    /* Spare slots within the plugin's structure must be NULL. A plugin built for a newer minor
     * may have given them a meaning this host does not know; it ignores them then. */
    if (desc->abi_minor <= OF_ABI_MINOR) {
        size_t n = sizeof(desc->reserved) / sizeof(desc->reserved[0]);
        for (size_t i = 0; i < n; i++) {
            if (offsetof(of_stage_descriptor, reserved) + (i + 1) * sizeof(void *) >
                desc->struct_size)
                break;
            if (desc->reserved[i] != NULL) {
                set_error(errstr, errstr_size, origin,
                          "plugin '%s': reserved slot %zu is set (found %p, expected NULL in "
                          "ABI %d.%d)",
                          desc->name, i, desc->reserved[i], OF_ABI_MAJOR, OF_ABI_MINOR);
                return -1;
            }
        }
    }
    if (check_accepts(desc, origin, errstr, errstr_size) != 0 ||
        check_process_batch(desc, origin, errstr, errstr_size) != 0)
        return -1;
    if (desc->options) {
        char why[512] = "";
        if (of_options_check_table(desc->options, why, sizeof(why)) != 0) {
            set_error(errstr, errstr_size, origin, "plugin '%s': bad option table: %s", desc->name,
                      why[0] ? why : "(no reason given)");
            return -1;
        }
    }
    if (desc->outputs) {
        for (size_t i = 0; desc->outputs[i]; i++) {
            if (!output_valid(desc->outputs[i])) {
                set_error(errstr, errstr_size, origin,
                          "plugin '%s': bad output name #%zu (found %s, expected [a-z0-9_-]+)",
                          desc->name, i, quote(desc->outputs[i], q, sizeof(q)));
                return -1;
            }
            for (size_t j = 0; j < i; j++) {
                if (strcmp(desc->outputs[j], desc->outputs[i]) == 0) {
                    set_error(errstr, errstr_size, origin,
                              "plugin '%s': output '%s' is declared twice (found it at #%zu and "
                              "#%zu, expected unique names)",
                              desc->name, desc->outputs[i], j, i);
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */

/* The entry symbol dlsym found must be this object's own, not one of a library it links. */
static int entry_is_own(void *handle, void *sym, const char *path, char *errstr, size_t errstr_size)
{
    struct link_map *own = NULL, *where = NULL;
    Dl_info info;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &own) != 0 || !own)
        return 0; /* cannot tell; trust dlsym */
    if (!dladdr1(sym, &info, (void **)&where, RTLD_DL_LINKMAP) || !where || where == own)
        return 0;
    set_error(errstr, errstr_size, path,
              "entry symbol '%s' is not defined in this file (found it in %s, expected it here; "
              "define it with OF_STAGE_DEFINE)",
              OF_STAGE_ENTRY_SYMBOL, info.dli_fname ? info.dli_fname : "another library");
    return -1;
}

of_plugin *of_plugin_load(const char *path, char *errstr, size_t errstr_size)
{
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (!path || !path[0]) {
        set_error(errstr, errstr_size, "<plugin>", "empty path (expected a *.so file)");
        return NULL;
    }
    struct stat st;
    if (check_file(path, &st, errstr, errstr_size) != 0)
        return NULL;
    if (check_elf(path, &st, errstr, errstr_size) != 0)
        return NULL;

    dlerror();
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        set_error(errstr, errstr_size, path, "dlopen failed: %s", why ? why : "unknown error");
        return NULL;
    }
    dlerror();
    void *sym = dlsym(handle, OF_STAGE_ENTRY_SYMBOL);
    if (!sym) {
        set_error(errstr, errstr_size, path,
                  "no entry symbol '%s' (define it with OF_STAGE_DEFINE)", OF_STAGE_ENTRY_SYMBOL);
        goto refuse;
    }
    if (entry_is_own(handle, sym, path, errstr, errstr_size) != 0)
        goto refuse;

    of_stage_entry_fn entry;
    /* POSIX guarantees a data pointer from dlsym converts to a function pointer. */
    memcpy(&entry, &sym, sizeof(entry));
    const of_stage_descriptor *desc = entry();
    if (!desc) {
        set_error(errstr, errstr_size, path,
                  "entry function '%s' returned NULL (found no descriptor, expected a pointer "
                  "to an of_stage_descriptor)",
                  OF_STAGE_ENTRY_SYMBOL);
        goto refuse;
    }
    if (of_plugin_check_descriptor(desc, path, errstr, errstr_size) != 0)
        goto refuse;

    of_plugin *p = calloc(1, sizeof(*p));
    if (!p || !(p->name = strdup(desc->name)) || !(p->path = strdup(path))) {
        if (p) {
            free(p->name);
            free(p);
        }
        set_error(errstr, errstr_size, path, "out of memory");
        goto refuse;
    }
    p->handle = handle;
    p->desc = desc;
    return p;

refuse:
    dlclose(handle);
    return NULL;
}

void of_plugin_unload(of_plugin *p)
{
    if (!p)
        return;
    if (p->handle)
        dlclose(p->handle);
    free(p->name);
    free(p->path);
    free(p);
}

/* ---------------------------------------------------------------------------------------------
 * Directory scan
 * ------------------------------------------------------------------------------------------- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_so_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

/* The reason without its leading "PATH: ", since a diagnostic names the file already. */
static const char *reason_of(const char *err, const char *path)
{
    size_t n = strlen(path);
    if (strncmp(err, path, n) == 0 && err[n] == ':' && err[n + 1] == ' ')
        return err + n + 2;
    return err;
}

static void free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* The *.so names in dir, sorted. -1 with errno on failure. */
static int list_dir(const char *dir, of_diag *diag, char ***out, size_t *out_count)
{
    *out = NULL;
    *out_count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        of_diag_add(diag, OF_SEV_ERROR, dir, 0, 0, "cannot open plugin directory: %s",
                    strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(dirfd(d), &st) != 0) {
        of_diag_add(diag, OF_SEV_ERROR, dir, 0, 0, "cannot stat plugin directory: %s",
                    strerror(errno));
        closedir(d);
        return -1;
    }
    if (st.st_mode & OF_UNSAFE_WRITE_BITS) {
        of_diag_add(diag, OF_SEV_ERROR, dir, 0, 0,
                    "plugin directory is writable by group or others (found mode %04o, expected "
                    "no group or other write permission, e.g. 0755)",
                    (unsigned)(st.st_mode & 07777));
        closedir(d);
        return -1;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (!has_so_suffix(e->d_name))
            continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **n = realloc(names, ncap * sizeof(*n));
            if (!n)
                goto oom;
            names = n;
            cap = ncap;
        }
        if (!(names[count] = strdup(e->d_name)))
            goto oom;
        count++;
        errno = 0;
    }
    if (errno != 0) {
        of_diag_add(diag, OF_SEV_ERROR, dir, 0, 0, "cannot read plugin directory: %s",
                    strerror(errno));
        free_names(names, count);
        closedir(d);
        return -1;
    }
    closedir(d);
    if (count > 1)
        qsort(names, count, sizeof(*names), cmp_names);
    *out = names;
    *out_count = count;
    return 0;
oom:
    of_diag_add(diag, OF_SEV_ERROR, dir, 0, 0, "cannot read plugin directory: out of memory");
    free_names(names, count);
    closedir(d);
    return -1;
}

int of_registry_scan(of_plugin_registry *reg, const char *const *dirs, size_t n_dirs, of_diag *diag)
{
    int errors = 0;
    char err[2048];
    for (size_t i = 0; i < n_dirs; i++) {
        const char *dir = dirs[i];
        if (!dir || !dir[0]) {
            of_diag_add(diag, OF_SEV_ERROR, NULL, 0, 0,
                        "empty plugin directory name (expected a path)");
            errors++;
            continue;
        }
        char **names;
        size_t count;
        if (list_dir(dir, diag, &names, &count) != 0) {
            errors++;
            continue;
        }
        size_t dlen = strlen(dir);
        int slash = dir[dlen - 1] == '/';
        for (size_t j = 0; j < count; j++) {
            char *path = NULL;
            if (asprintf(&path, "%s%s%s", dir, slash ? "" : "/", names[j]) < 0) {
                of_diag_add(diag, OF_SEV_ERROR, dir, 0, 0, "out of memory");
                errors++;
                continue;
            }
            /* A directory named *.so is not a plugin file; anything else is tried and
             * refused when it is not a regular file. */
            struct stat st;
            if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
                free(path);
                continue;
            }
            of_plugin *p = of_plugin_load(path, err, sizeof(err));
            if (!p) {
                of_diag_add(diag, OF_SEV_ERROR, path, 0, 0, "%s", reason_of(err, path));
                errors++;
            } else if (of_registry_add(reg, p, err, sizeof(err)) != 0) {
                of_diag_add(diag, OF_SEV_ERROR, path, 0, 0, "%s", reason_of(err, path));
                of_plugin_unload(p);
                errors++;
            }
            free(path);
        }
        free_names(names, count);
    }
    return errors;
}
