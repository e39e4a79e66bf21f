/* sysprobe: one named action per run, for the escape tests (tests/integration/test_escapes.py).
 *
 *     sysprobe NAME [ARGS...]
 *
 * prints "NAME ok" or "NAME errno=<ENAME>" on stdout (forks and ids add " key=value" fields after it)
 * and exits 0 either way; a bad NAME or bad arguments exit 2. Details go to stderr.
 *
 * Syscalls are made through syscall(2) with the x86_64 numbers written out here, not through libc
 * wrappers: a libc may lack a wrapper, emulate one call with another (clone with clone3, say), or
 * retry on ENOSYS, and then the test would measure the libc instead of the seccomp filter.
 * Nothing here changes the host even where the call is allowed: reboot gets bad magic, time is set
 * to what it is, nodes and cgroups made on purpose are named by the caller or removed at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "sysprobe uses x86_64 syscall numbers"
#endif

enum {
    NR_read = 0, NR_write = 1, NR_close = 3, NR_fstat = 5, NR_mmap = 9, NR_munmap = 11,
    NR_socket = 41, NR_clone = 56, NR_exit = 60, NR_wait4 = 61, NR_kill = 62, NR_getcwd = 79,
    NR_chdir = 80, NR_mkdir = 83, NR_rmdir = 84, NR_umask = 95, NR_ptrace = 101, NR_syslog = 103,
    NR_getpid = 39, NR_pause = 34, NR_uselib = 134, NR_ustat = 136, NR_mknod = 133,
    NR_personality = 135, NR_sysfs = 139, NR_pivot_root = 155, NR__sysctl = 156, NR_chroot = 161,
    NR_acct = 163, NR_settimeofday = 164, NR_mount = 165, NR_umount2 = 166, NR_swapon = 167,
    NR_swapoff = 168, NR_reboot = 169, NR_sethostname = 170, NR_iopl = 172, NR_ioperm = 173,
    NR_create_module = 174, NR_init_module = 175, NR_delete_module = 176, NR_quotactl = 179,
    NR_nfsservctl = 180, NR_lookup_dcookie = 212, NR_clock_settime = 227, NR_clock_gettime = 228,
    NR_vserver = 236, NR_set_mempolicy = 238, NR_get_mempolicy = 239, NR_kexec_load = 246,
    NR_add_key = 248, NR_request_key = 249, NR_keyctl = 250, NR_openat = 257, NR_unshare = 272,
    NR_fanotify_init = 300, NR_name_to_handle_at = 303, NR_open_by_handle_at = 304, NR_setns = 308,
    NR_process_vm_readv = 310, NR_kcmp = 312, NR_finit_module = 313, NR_memfd_create = 319,
    NR_kexec_file_load = 320, NR_bpf = 321, NR_userfaultfd = 323, NR_perf_event_open = 298,
    NR_io_uring_setup = 425, NR_open_tree = 428, NR_move_mount = 429, NR_fsopen = 430,
    NR_fsconfig = 431, NR_fsmount = 432, NR_fspick = 433, NR_pidfd_open = 434, NR_clone3 = 435,
    NR_pidfd_getfd = 438, NR_process_madvise = 440, NR_mount_setattr = 442,
};

#define CLONE_NEWNS 0x00020000L
#define CLONE_NEWCGROUP 0x02000000L
#define CLONE_NEWUSER 0x10000000L
#define AT_FDCWD_ (-100L)
#define KEY_SPEC_SESSION_KEYRING (-3L)
#define KEY_SPEC_PROCESS_KEYRING (-2L)
#define UFFD_USER_MODE_ONLY 1L
#define MOVE_MOUNT_F_EMPTY_PATH 0x4L
#define OPEN_TREE_CLONE 1L
#define FSOPEN_CLOEXEC 1L
#define MiB (1024L * 1024L)

/* The errno names the tests compare against; anything else prints as a number. */
#define E(name) {name, #name}
static const struct { int number; const char *name; } ERRNOS[] = {
    E(EPERM), E(ENOENT), E(ESRCH), E(EINTR), E(EIO), E(ENXIO), E(E2BIG), E(ENOEXEC), E(EBADF),
    E(ECHILD), E(EAGAIN), E(ENOMEM), E(EACCES), E(EFAULT), E(ENOTBLK), E(EBUSY), E(EEXIST),
    E(EXDEV), E(ENODEV), E(ENOTDIR), E(EISDIR), E(EINVAL), E(ENFILE), E(EMFILE), E(ENOTTY),
    E(ETXTBSY), E(EFBIG), E(ENOSPC), E(ESPIPE), E(EROFS), E(EMLINK), E(EPIPE), E(ERANGE),
    E(ENAMETOOLONG), E(ENOSYS), E(ENOTEMPTY), E(ELOOP), E(ENODATA), E(EOVERFLOW), E(EOPNOTSUPP),
    E(EAFNOSUPPORT), E(EPROTONOSUPPORT), E(ESOCKTNOSUPPORT), E(ESTALE), E(EDQUOT), E(ENOKEY),
    E(EKEYREVOKED), E(EKEYREJECTED), E(ENOMEDIUM),
};

static const char *errno_name(int number) {
    static char unknown[32];
    for (size_t i = 0; i < sizeof ERRNOS / sizeof ERRNOS[0]; i++)
        if (ERRNOS[i].number == number)
            return ERRNOS[i].name;
    snprintf(unknown, sizeof unknown, "%d", number);
    return unknown;
}

/* An action returns 0 for success, an errno value for failure, or USAGE. */
#define USAGE (-1)

/* The result of a raw syscall as 0 or errno. */
static int result(long value) { return value == -1 ? errno : 0; }

static int close_result(long fd) {
    if (fd == -1)
        return errno;
    syscall(NR_close, fd);
    return 0;
}

static int parse_long(const char *text, long *value) {
    char *end;
    errno = 0;
    *value = strtol(text, &end, 0);
    return errno == 0 && end != text && *end == '\0';
}

static int write_file(const char *path, const char *text) {
    long fd = syscall(NR_openat, AT_FDCWD_, path, O_WRONLY | O_CLOEXEC);
    if (fd == -1)
        return errno;
    long written = syscall(NR_write, fd, text, strlen(text));
    int error = written == -1 ? errno : 0;
    syscall(NR_close, fd);
    return error;
}

/* fork through the raw clone (or clone3) syscall: the child exits at once, the parent reaps it. */
static int reap(long pid) {
    if (pid == -1)
        return errno;
    if (pid == 0)
        syscall(NR_exit, 0);
    int status;
    syscall(NR_wait4, pid, &status, 0, NULL);
    return 0;
}

/* --- namespaces and the cgroup tree ----------------------------------------------------------- */

static int unshare_user(void) { return result(syscall(NR_unshare, CLONE_NEWUSER)); }

/* A user namespace that maps our own uid and gid onto themselves: with --userns host, root onto
 * host root, whose files (the cgroup tree's) then count as ours. */
static int own_user_namespace(void) {
    char map[64];
    long uid = getuid(), gid = getgid();
    int error = unshare_user();
    if (error)
        return fprintf(stderr, "unshare(CLONE_NEWUSER): %s\n", errno_name(error)), error;
    snprintf(map, sizeof map, "%ld %ld 1", uid, uid);
    if ((error = write_file("/proc/self/uid_map", map)))
        return fprintf(stderr, "uid_map: %s\n", errno_name(error)), error;
    if ((error = write_file("/proc/self/setgroups", "deny")))
        return fprintf(stderr, "setgroups: %s\n", errno_name(error)), error;
    snprintf(map, sizeof map, "%ld %ld 1", gid, gid);
    if ((error = write_file("/proc/self/gid_map", map)))
        return fprintf(stderr, "gid_map: %s\n", errno_name(error)), error;
    if ((error = result(syscall(NR_unshare, CLONE_NEWNS | CLONE_NEWCGROUP))))
        return fprintf(stderr, "unshare(CLONE_NEWNS|CLONE_NEWCGROUP): %s\n", errno_name(error)), error;
    /* Mount points on a tmpfs of this mount namespace, so that nothing is made in the root. */
    if ((error = result(syscall(NR_mount, "sysprobe", "/tmp", "tmpfs", 0L, "mode=0700"))))
        return fprintf(stderr, "mount tmpfs on /tmp: %s\n", errno_name(error)), error;
    return 0;
}

/* Mounts the v1 hierarchy of `controller` at /tmp/<controller>: its root is our cgroup namespace's. */
static int mount_v1(const char *controller, char *where, size_t size) {
    snprintf(where, size, "/tmp/%s", controller);
    int error = result(syscall(NR_mkdir, where, 0700L));
    if (!error)
        error = result(syscall(NR_mount, "cgroup", where, "cgroup", 0L, controller));
    if (error)
        fprintf(stderr, "mount cgroup v1 %s: %s\n", controller, errno_name(error));
    return error;
}

/* Sets FILE in DIRECTORY to VALUE (unlimited) only when it holds a limit: a cgroup without one is
 * left exactly as it was, whichever cgroup it turns out to be. */
static int try_write(const char *directory, const char *file, const char *value, int *lifted) {
    char path[256], current[64] = {0};
    snprintf(path, sizeof path, "%s/%s", directory, file);
    long fd = syscall(NR_openat, AT_FDCWD_, path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return fprintf(stderr, "read %s: %s\n", file, errno_name(errno)), errno;
    syscall(NR_read, fd, current, sizeof current - 1);
    syscall(NR_close, fd);
    if (strncmp(current, "max", 3) == 0 || strncmp(current, "9223372036854", 13) == 0)
        return fprintf(stderr, "%s: no limit to lift\n", file), 0;
    int error = write_file(path, value);
    fprintf(stderr, "write %s %s: %s\n", value, file, error ? errno_name(error) : "ok");
    if (!error)
        *lifted = 1;
    return error;
}

/* The limits lifted from inside: ok when any of them could be rewritten. Without a limit to lift
 * it says ENOENT: then the sequence shows nothing. */
static int cgroupns_lift_limits(void) {
    char where[64];
    int lifted = 0, first = 0, error;
    if ((error = own_user_namespace()))
        return error;
    if (!(error = mount_v1("memory", where, sizeof where))) {
        /* memsw first: the kernel keeps memory.limit_in_bytes at or below it */
        try_write(where, "memory.memsw.limit_in_bytes", "-1", &lifted);
        error = try_write(where, "memory.limit_in_bytes", "-1", &lifted);
    }
    first = error;
    if (!(error = mount_v1("pids", where, sizeof where)))
        error = try_write(where, "pids.max", "max", &lifted);
    if (lifted)
        return 0;
    return first ? first : error ? error : ENOENT;
}

/* A new cgroup under our cgroup namespace's root, removed at once: ok when it could be made. */
static int cgroupns_mkdir(void) {
    char where[64], path[128];
    int error;
    if ((error = own_user_namespace()))
        return error;
    if ((error = mount_v1("freezer", where, sizeof where)) && (error = mount_v1("pids", where, sizeof where)))
        return error;
    snprintf(path, sizeof path, "%s/sysprobe-%ld", where, (long)getpid());
    if ((error = result(syscall(NR_mkdir, path, 0755L))))
        return fprintf(stderr, "mkdir %s: %s\n", path, errno_name(error)), error;
    syscall(NR_rmdir, path);
    fprintf(stderr, "made and removed %s\n", path);
    return 0;
}

static int setns_action(const char *path) {
    long fd = syscall(NR_openat, AT_FDCWD_, path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return fprintf(stderr, "open %s: %s\n", path, errno_name(errno)), errno;
    int error = result(syscall(NR_setns, fd, CLONE_NEWNS));
    syscall(NR_close, fd);
    return error;
}

static int clone3_action(void) {
    uint64_t args[8] = {0}; /* struct clone_args, CLONE_ARGS_SIZE_VER0 */
    args[4] = SIGCHLD;      /* exit_signal */
    return reap(syscall(NR_clone3, args, sizeof args));
}

/* --- devices and files -------------------------------------------------------------------------- */

static long encode_dev(long major, long minor) {
    return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xffL) << 12);
}

static int mknod_action(mode_t type, int argc, char **argv) {
    long major, minor;
    if (argc < 2 || argc > 3 || !parse_long(argv[0], &major) || !parse_long(argv[1], &minor))
        return USAGE;
    const char *path = argc == 3 ? argv[2] : "/tmp/sysprobe-node";
    syscall(NR_umask, 0L);
    return result(syscall(NR_mknod, path, (long)(type | 0666), encode_dev(major, minor)));
}

static int open_action(const char *path) {
    return close_result(syscall(NR_openat, AT_FDCWD_, path, O_RDWR | O_CLOEXEC | O_NOCTTY));
}

/* An inherited descriptor: ok when it is open and usable, through a directory to etc/shadow. */
static int read_fd(long fd) {
    struct stat st;
    char byte;
    if (syscall(NR_fstat, fd, &st) == -1)
        return errno;
    if (S_ISDIR(st.st_mode)) {
        fprintf(stderr, "fd %ld is a directory\n", fd);
        long shadow = syscall(NR_openat, fd, "etc/shadow", O_RDONLY | O_CLOEXEC);
        if (shadow == -1)
            shadow = syscall(NR_openat, fd, "shadow", O_RDONLY | O_CLOEXEC);
        if (shadow == -1)
            return errno;
        int error = syscall(NR_read, shadow, &byte, 1L) == -1 ? errno : 0;
        syscall(NR_close, shadow);
        return error;
    }
    return syscall(NR_read, fd, &byte, 1L) == -1 ? errno : 0;
}

/* An inherited descriptor open for writing: a write of no bytes checks it and changes nothing. */
static int write_fd(long fd) {
    struct stat st;
    if (syscall(NR_fstat, fd, &st) == -1)
        return errno;
    return result(syscall(NR_write, fd, "", 0L));
}

static int open_by_handle_at_action(void) {
    struct { uint32_t bytes; int32_t type; unsigned char handle[8]; } h = {8, 1, {0}};
    long root = syscall(NR_openat, AT_FDCWD_, "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int error = close_result(syscall(NR_open_by_handle_at, root, &h, (long)O_RDONLY));
    syscall(NR_close, root);
    return error;
}

static int name_to_handle_at_action(void) {
    struct { uint32_t bytes; int32_t type; unsigned char handle[128]; } h = {128, 0, {0}};
    int mount_id;
    return result(syscall(NR_name_to_handle_at, AT_FDCWD_, "/", &h, &mount_id, 0L));
}

/* --- kernel interfaces ----------------------------------------------------------------------- */

static int perf_event_open_action(void) {
    struct {
        uint32_t type, size;
        uint64_t config, sample_period, sample_type, read_format, flags, rest[10];
    } attr = {0};
    attr.type = 1;                             /* PERF_TYPE_SOFTWARE */
    attr.size = 64;                            /* PERF_ATTR_SIZE_VER0 */
    attr.config = 1;                           /* PERF_COUNT_SW_TASK_CLOCK */
    attr.flags = 1 | (1 << 5) | (1 << 6);      /* disabled, exclude_kernel, exclude_hv */
    return close_result(syscall(NR_perf_event_open, &attr, 0L, -1L, -1L, 8L /* FD_CLOEXEC */));
}

static int bpf_action(void) {
    uint32_t attr[16] = {2 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1};
    return close_result(syscall(NR_bpf, 0L /* BPF_MAP_CREATE */, attr, (long)sizeof attr));
}

static int io_uring_setup_action(void) {
    uint64_t params[16] = {0}; /* struct io_uring_params is 120 bytes */
    return close_result(syscall(NR_io_uring_setup, 1L, params));
}

static int clock_settime_action(void) {
    struct timespec now;
    syscall(NR_clock_gettime, (long)CLOCK_REALTIME, &now);
    return result(syscall(NR_clock_settime, (long)CLOCK_REALTIME, &now));
}

static long pidfd_self(void) { return syscall(NR_pidfd_open, (long)getpid(), 0L); }

static int pidfd_getfd_action(void) {
    long pidfd = pidfd_self();
    if (pidfd == -1)
        return fprintf(stderr, "pidfd_open: %s\n", errno_name(errno)), errno;
    int error = close_result(syscall(NR_pidfd_getfd, pidfd, 0L, 0L));
    syscall(NR_close, pidfd);
    return error;
}

static int process_madvise_action(void) {
    static char page[4096] __attribute__((aligned(4096)));
    struct iovec iov = {page, sizeof page};
    long pidfd = pidfd_self();
    if (pidfd == -1)
        return fprintf(stderr, "pidfd_open: %s\n", errno_name(errno)), errno;
    int error = result(syscall(NR_process_madvise, pidfd, &iov, 1L, 20L /* MADV_COLD */, 0L));
    syscall(NR_close, pidfd);
    return error;
}

static int process_vm_readv_action(void) {
    char source[8] = "sysprobe", target[8];
    struct iovec local = {target, sizeof target}, remote = {source, sizeof source};
    return result(syscall(NR_process_vm_readv, (long)getpid(), &local, 1L, &remote, 1L, 0L));
}

static int socket_action(long family, long type) { return close_result(syscall(NR_socket, family, type, 0L)); }

/* --- resources --------------------------------------------------------------------------------- */

/* Allocates and touches MB megabytes; under a lower memory limit the OOM killer ends it. */
static int alloc_action(long megabytes) {
    long size = megabytes * MiB;
    char *memory = (char *)syscall(NR_mmap, 0L, size, 3L /* RW */, 0x22L /* PRIVATE|ANON */, -1L, 0L);
    if (memory == (char *)-1)
        return errno;
    for (long offset = 0; offset < size; offset += 4096)
        memory[offset] = 1;
    syscall(NR_munmap, memory, size);
    return 0;
}

/* Forks COUNT children that wait; prints how many it got, then ends them. */
static int forks_action(long count) {
    long children[4096];
    int error = 0;
    long made = 0;
    if (count < 0 || count > 4096)
        return USAGE;
    for (; made < count; made++) {
        long pid = syscall(NR_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
        if (pid == 0) {
            syscall(NR_pause);
            syscall(NR_exit, 0);
        }
        if (pid == -1) {
            error = errno;
            break;
        }
        children[made] = pid;
    }
    for (long i = 0; i < made; i++) {
        int status;
        syscall(NR_kill, children[i], (long)SIGKILL);
        syscall(NR_wait4, children[i], &status, 0L, NULL);
    }
    if (error)
        printf("forks errno=%s forked=%ld\n", errno_name(error), made);
    else
        printf("forks ok forked=%ld\n", made);
    return error;
}

/* --- the table ------------------------------------------------------------------------------- */

static int run(const char *name, int argc, char **argv, int *printed) {
    long number;
    /* actions without arguments */
    struct { const char *name; long nr; long a, b, c, d, e; } plain[] = {
        {"keyctl", NR_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, KEY_SPEC_SESSION_KEYRING, 0, 0, 0},
        {"request_key", NR_request_key, (long)"user", (long)"sysprobe:absent", 0, 0, 0},
        {"umount2", NR_umount2, (long)"/proc", 2 /* MNT_DETACH */, 0, 0, 0},
        {"pivot_root", NR_pivot_root, (long)".", (long)".", 0, 0, 0},
        {"clone-plain", -1, 0, 0, 0, 0, 0},
        {"ptrace", NR_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0, 0},
        {"kexec_load", NR_kexec_load, 0, 0, 0, 0, 0},
        {"kexec_file_load", NR_kexec_file_load, -1, -1, 0, 0, 0},
        {"init_module", NR_init_module, 0, 0, (long)"", 0, 0},
        {"finit_module", NR_finit_module, -1, (long)"", 0, 0, 0},
        {"delete_module", NR_delete_module, (long)"sysprobe_absent", O_NONBLOCK, 0, 0, 0},
        {"swapon", NR_swapon, (long)"/sysprobe-absent", 0, 0, 0, 0},
        {"swapoff", NR_swapoff, (long)"/sysprobe-absent", 0, 0, 0, 0},
        /* bad magic: even where allowed, this reboots nothing */
        {"reboot", NR_reboot, 0, 0, 0, 0, 0},
        {"acct", NR_acct, 0, 0, 0, 0, 0},
        {"settimeofday", NR_settimeofday, 0, 0, 0, 0, 0},
        {"move_mount", NR_move_mount, -1, (long)"", AT_FDCWD_, (long)"/mnt", MOVE_MOUNT_F_EMPTY_PATH},
        {"fsconfig", NR_fsconfig, -1, 0, 0, 0, 0},
        {"fsmount", NR_fsmount, -1, 0, 0, 0, 0},
        {"fspick", NR_fspick, AT_FDCWD_, (long)"/", 0, 0, 0},
        {"mount_setattr", NR_mount_setattr, AT_FDCWD_, (long)"/", 0, 0, 0},
        {"kcmp", NR_kcmp, 0, 0, 0 /* KCMP_FILE */, 0, 0},
        {"iopl", NR_iopl, 3, 0, 0, 0, 0},
        {"ioperm", NR_ioperm, 0x80, 1, 1, 0, 0},
        {"quotactl", NR_quotactl, 0x80000100L /* QCMD(Q_SYNC, USRQUOTA) */, 0, 0, 0, 0},
        {"lookup_dcookie", NR_lookup_dcookie, 0, 0, 0, 0, 0},
        {"syslog", NR_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, 0, 0, 0, 0},
        {"sethostname", NR_sethostname, (long)"sysprobe", 8, 0, 0, 0},
        {"fanotify_init", NR_fanotify_init, 0, O_RDONLY, 0, 0, 0},
        {"get_mempolicy", NR_get_mempolicy, 0, 0, 0, 0, 0},
        {"set_mempolicy", NR_set_mempolicy, 0 /* MPOL_DEFAULT */, 0, 0, 0, 0},
        {"uselib", NR_uselib, (long)"/sysprobe-absent", 0, 0, 0, 0},
        {"ustat", NR_ustat, 0, 0, 0, 0, 0},
        {"sysfs", NR_sysfs, 3 /* the number of file system types */, 0, 0, 0, 0},
        {"_sysctl", NR__sysctl, 0, 0, 0, 0, 0},
        {"create_module", NR_create_module, 0, 0, 0, 0, 0},
        {"nfsservctl", NR_nfsservctl, 0, 0, 0, 0, 0},
        {"vserver", NR_vserver, 0, 0, 0, 0, 0},
        {"chroot", NR_chroot, (long)".", 0, 0, 0, 0},
    };
    if (argc == 0) {
        for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
            if (strcmp(name, plain[i].name) != 0)
                continue;
            if (plain[i].nr == -1)
                return reap(syscall(NR_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L));
            if (plain[i].nr == NR_kcmp)
                plain[i].a = plain[i].b = getpid();
            return result(syscall(plain[i].nr, plain[i].a, plain[i].b, plain[i].c, plain[i].d, plain[i].e));
        }
    }
    if (strcmp(name, "unshare-user") == 0 && argc == 0)
        return unshare_user();
    if (strcmp(name, "unshare-user-then-cgroupns-mount-cgroup-v1") == 0 && argc == 0)
        return cgroupns_lift_limits();
    if (strcmp(name, "unshare-user-then-cgroupns-mkdir-cgroup-v1") == 0 && argc == 0)
        return cgroupns_mkdir();
    if (strcmp(name, "add_key") == 0 && argc == 0)
        return result(syscall(NR_add_key, "user", "sysprobe", "x", 1L, KEY_SPEC_PROCESS_KEYRING));
    if (strcmp(name, "perf_event_open") == 0 && argc == 0)
        return perf_event_open_action();
    if (strcmp(name, "userfaultfd") == 0 && argc == 0)
        return close_result(syscall(NR_userfaultfd, (long)O_CLOEXEC | UFFD_USER_MODE_ONLY));
    if (strcmp(name, "io_uring_setup") == 0 && argc == 0)
        return io_uring_setup_action();
    if (strcmp(name, "personality") == 0 && argc == 1) {
        unsigned long persona;
        char *end;
        persona = strtoul(argv[0], &end, 0);
        return *end || end == argv[0] ? USAGE : result(syscall(NR_personality, persona));
    }
    if (strcmp(name, "bpf") == 0 && argc == 0)
        return bpf_action();
    if (strcmp(name, "mount-tmpfs") == 0 && argc <= 1) {
        const char *target = argc ? argv[0] : "/mnt";
        int error = result(syscall(NR_mount, "sysprobe", target, "tmpfs", 0L, "size=1m"));
        if (!error)
            syscall(NR_umount2, target, 2L);
        return error;
    }
    if (strcmp(name, "setns") == 0 && argc <= 1)
        return setns_action(argc ? argv[0] : "/proc/self/ns/mnt");
    if (strcmp(name, "clone-newuser") == 0 && argc == 0)
        return reap(syscall(NR_clone, CLONE_NEWUSER | SIGCHLD, 0L, 0L, 0L, 0L));
    if (strcmp(name, "clone3") == 0 && argc == 0)
        return clone3_action();
    if (strcmp(name, "syscall") == 0 && argc == 1 && parse_long(argv[0], &number))
        return result(syscall(number, 0L, 0L, 0L, 0L, 0L, 0L));
    if (strcmp(name, "mknod-char") == 0)
        return mknod_action(S_IFCHR, argc, argv);
    if (strcmp(name, "mknod-block") == 0)
        return mknod_action(S_IFBLK, argc, argv);
    if (strcmp(name, "open") == 0 && argc == 1)
        return open_action(argv[0]);
    if (strcmp(name, "read-fd") == 0 && argc == 1 && parse_long(argv[0], &number))
        return read_fd(number);
    if (strcmp(name, "write-fd") == 0 && argc == 1 && parse_long(argv[0], &number))
        return write_fd(number);
    if (strcmp(name, "clock_settime") == 0 && argc == 0)
        return clock_settime_action();
    if (strcmp(name, "open_by_handle_at") == 0 && argc == 0)
        return open_by_handle_at_action();
    if (strcmp(name, "name_to_handle_at") == 0 && argc == 0)
        return name_to_handle_at_action();
    if (strcmp(name, "fsopen") == 0 && argc == 0)
        return close_result(syscall(NR_fsopen, "tmpfs", FSOPEN_CLOEXEC));
    if (strcmp(name, "open_tree") == 0 && argc == 0)
        return close_result(syscall(NR_open_tree, AT_FDCWD_, "/", OPEN_TREE_CLONE | O_CLOEXEC));
    if (strcmp(name, "pidfd_open") == 0 && argc == 0)
        return close_result(pidfd_self());
    if (strcmp(name, "pidfd_getfd") == 0 && argc == 0)
        return pidfd_getfd_action();
    if (strcmp(name, "process_madvise") == 0 && argc == 0)
        return process_madvise_action();
    if (strcmp(name, "process_vm_readv") == 0 && argc == 0)
        return process_vm_readv_action();
    if (strcmp(name, "memfd_create") == 0 && argc == 0)
        return close_result(syscall(NR_memfd_create, "sysprobe", 1L /* MFD_CLOEXEC */));
    if (strcmp(name, "getcwd") == 0 && argc == 0) {
        char cwd[4096];
        return syscall(NR_getcwd, cwd, sizeof cwd) == -1 ? errno : 0;
    }
    if (strcmp(name, "socket-inet") == 0 && argc == 0)
        return socket_action(2 /* AF_INET */, 1 /* SOCK_STREAM */);
    if (strcmp(name, "socket-unix") == 0 && argc == 0)
        return socket_action(1 /* AF_UNIX */, 1);
    if (strcmp(name, "socket-alg") == 0 && argc == 0)
        return socket_action(38 /* AF_ALG */, 5 /* SOCK_SEQPACKET */);
    if (strcmp(name, "socket-vsock") == 0 && argc == 0)
        return socket_action(40 /* AF_VSOCK */, 1);
    if (strcmp(name, "alloc") == 0 && argc == 1 && parse_long(argv[0], &number) && number > 0)
        return alloc_action(number);
    if (strcmp(name, "ids") == 0 && argc == 0) {
        *printed = 1; /* what a setuid binary gives its caller */
        printf("ids ok uid=%ld euid=%ld\n", (long)getuid(), (long)geteuid());
        return 0;
    }
    if (strcmp(name, "forks") == 0 && argc == 1 && parse_long(argv[0], &number)) {
        *printed = 1;
        return forks_action(number);
    }
    return USAGE;
}

int main(int argc, char **argv) {
    int printed = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: sysprobe NAME [ARGS...]\n");
        return 2;
    }
    int error = run(argv[1], argc - 2, argv + 2, &printed);
    if (error == USAGE) {
        fprintf(stderr, "sysprobe: unknown action or bad arguments: %s\n", argv[1]);
        return 2;
    }
    if (printed)
        return 0; /* the action printed its own line, with fields of its own */
    if (error)
        printf("%s errno=%s\n", argv[1], errno_name(error));
    else
        printf("%s ok\n", argv[1]);
    return 0;
}
