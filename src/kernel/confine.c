/*
 * Confinement of a process cell's worker: one function per step, applied
 * in order by iso_confine_apply (see confine.h for the list).
 */
#include "confine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "handoff.h"
#include "landlock.h"
#include "landlock_cache.h"
#include "seccomp_cache.h"

typedef int (*confine_step)(const iso_confine_config *cfg,
                            iso_confine_report *rep, iso_error *err);

const char *iso_step_state_name(iso_step_state s)
{
    switch (s) {
    case ISO_STEP_ACTIVE:
        return "active";
    case ISO_STEP_MISSING:
        return "missing";
    case ISO_STEP_NOT_NEEDED:
        return "not needed";
    }
    return "unknown";
}

static void step_add(iso_confine_report *rep, const char *layer,
                     iso_step_state state, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void step_add(iso_confine_report *rep, const char *layer,
                     iso_step_state state, const char *fmt, ...)
{
    if (rep->n >= ISO_CONFINE_MAX_STEPS)
        return;
    iso_step *s = &rep->steps[rep->n++];
    s->layer = layer;
    s->state = state;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->detail, sizeof s->detail, fmt, ap);
    va_end(ap);
}

/* A failed system call: ISO_CRASHED with what failed and the errno text. */
static int fail_sys(iso_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail_sys(iso_error *err, const char *fmt, ...)
{
    int e = errno;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    iso_error_set(err, ISO_CRASHED, "confine: %s: %s", what, strerror(e));
    if (err)
        err->code = e;
    return -1;
}

/* ---- close_fds ---------------------------------------------------------- */

/* also: one more fd kept (a cell thread's Landlock ruleset), -1: none. */
static bool fd_kept(const iso_confine_config *cfg, int also, int fd)
{
    if (fd == cfg->death_note_fd || fd == also)
        return true;
    for (size_t i = 0; i < cfg->n_keep; i++)
        if (cfg->keep_fds[i] == fd)
            return true;
    return false;
}

/* The smallest kept fd >= lo, or -1. */
static int next_kept(const iso_confine_config *cfg, int also, int lo)
{
    int best = cfg->death_note_fd >= lo ? cfg->death_note_fd : -1;
    if (also >= lo && (best < 0 || also < best))
        best = also;
    for (size_t i = 0; i < cfg->n_keep; i++) {
        int fd = cfg->keep_fds[i];
        if (fd >= lo && (best < 0 || fd < best))
            best = fd;
    }
    return best;
}

/* Kernels before 5.9 lack close_range: walk the fd directory instead
 * (thread-self: after unshare(CLONE_FILES), /proc/self/fd would list the
 * main thread's table, not this thread's). */
static int close_by_walk(const iso_confine_config *cfg, int also,
                         iso_error *err)
{
    DIR *d = opendir("/proc/thread-self/fd");
    if (!d)
        return fail_sys(err, "opendir /proc/thread-self/fd");
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd > 2 && fd != dirfd(d) &&
            !fd_kept(cfg, also, fd))
            close(fd);
    }
    closedir(d);
    return 0;
}

/* Close every fd above 2 in the gaps between the kept ones. */
static int close_unkept(const iso_confine_config *cfg, int also, iso_error *err)
{
    for (int lo = 3;;) {
        int k = next_kept(cfg, also, lo);
        if (k != lo) {
            unsigned hi = k < 0 ? UINT_MAX : (unsigned)k - 1;
            if (close_range((unsigned)lo, hi, 0) < 0)
                return errno == ENOSYS ? close_by_walk(cfg, also, err)
                                       : fail_sys(err, "close_range");
        }
        if (k < 0)
            return 0;
        lo = k + 1;
    }
}

/* Unkept stdio goes to /dev/null rather than closed, so that a stray
 * write(2) by the runtime cannot land in a socket opened later as fd 2. */
static int stdio_to_null(const iso_confine_config *cfg, int *redirected,
                         iso_error *err)
{
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul < 0)
        return fail_sys(err, "open /dev/null");
    for (int fd = 0; fd <= 2; fd++) {
        if (fd_kept(cfg, -1, fd))
            continue;
        (*redirected)++;
        if (fd != nul && dup2(nul, fd) < 0) {
            fail_sys(err, "dup2 /dev/null to %d", fd);
            close(nul);
            return -1;
        }
    }
    if (nul > 2)
        close(nul);
    else
        fcntl(nul, F_SETFD, 0); /* it is a stdio fd now */
    return 0;
}

/* How many fds cfg keeps besides stdio; -1 (with err) when a kept fd is
 * not open, a bug in the caller worth saying. */
static int count_kept(const iso_confine_config *cfg, size_t *kept,
                      iso_error *err)
{
    *kept = cfg->death_note_fd >= 0;
    for (size_t i = 0; i < cfg->n_keep; i++) {
        if (cfg->keep_fds[i] >= 0 && fcntl(cfg->keep_fds[i], F_GETFD) < 0)
            return iso_error_set(err, ISO_INVALID_ARGUMENT,
                                 "confine: kept fd %d is not open",
                                 cfg->keep_fds[i]);
        *kept +=
            cfg->keep_fds[i] >= 0 && cfg->keep_fds[i] != cfg->death_note_fd;
    }
    return 0;
}

static int step_close_fds(const iso_confine_config *cfg,
                          iso_confine_report *rep, iso_error *err)
{
    size_t kept;
    int redirected = 0;
    if (count_kept(cfg, &kept, err) < 0 || close_unkept(cfg, -1, err) < 0 ||
        stdio_to_null(cfg, &redirected, err) < 0)
        return -1;
    step_add(rep, "close_fds", ISO_STEP_ACTIVE,
             "kept %zu fd(s); %d of stdin/stdout/stderr on /dev/null", kept,
             redirected);
    return 0;
}

/* The Landlock ruleset a cell thread carries from its fd_table step to its
 * landlock step (the steps share nothing else): the cache's fd, valid in
 * the thread's private table; -1: none, built in the landlock step. */
static _Thread_local struct {
    int fd, abi;
    size_t skipped;
} carried = {-1, -1, 0};

static int hold_ruleset(const iso_confine_config *cfg, iso_error *err);

/* A cell thread shares the host's fd table: a guest could use the zygote's
 * control socket, another cell's frames socket or any file the host has
 * open. The thread takes a copy of the table for itself, then closes in it
 * everything but stdio and the few fds it needs (keep_fds). Threads the
 * guest starts share this table; the host's is never touched.
 * The cached Landlock ruleset is found (or built) first, and the cache
 * stays locked until the copy is taken: its fd, a host fd, is then the
 * ruleset's in the copy too, kept until the landlock step closes it. */
static int step_fd_table(const iso_confine_config *cfg, iso_confine_report *rep,
                         iso_error *err)
{
    size_t kept;
    if (count_kept(cfg, &kept, err) < 0)
        return -1;
    iso_landlock_cache_lock();
    int rc = hold_ruleset(cfg, err);
    if (rc == 0 && unshare(CLONE_FILES) < 0)
        rc = fail_sys(err, "unshare(CLONE_FILES)");
    iso_landlock_cache_unlock();
    if (rc < 0) {
        carried.fd = -1; /* the cache's, in the host's table */
        return -1;
    }
    if (close_unkept(cfg, carried.fd, err) < 0)
        return -1;
    step_add(rep, "fd_table", ISO_STEP_ACTIVE,
             "the thread's own: the host's fds closed in it but stdin, "
             "stdout, stderr and %zu of its own",
             kept);
    return 0;
}

/* ---- noexec: code from writable paths (cell threads) -------------------- */

/* The new mount API (Linux 5.12), by number: Debian 12's glibc cannot
 * include <linux/mount.h> next to <sys/mount.h>. */
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#define ISO_MOUNT_ATTR_NOEXEC 0x00000008
struct iso_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* Put a noexec copy of the mounts at path over path (this namespace only):
 * a clone of the tree, marked noexec, moved onto itself. */
static int noexec_over(const char *path, iso_error *err)
{
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, path,
                          OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR
                   ? 0 /* nothing there; Landlock skips it too */
                   : fail_sys(err, "open_tree %s", path);
    struct iso_mount_attr a = {.attr_set = ISO_MOUNT_ATTR_NOEXEC};
    int rc = (int)syscall(SYS_mount_setattr, fd, "",
                          AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a);
    if (rc == 0)
        rc = (int)syscall(SYS_move_mount, fd, "", AT_FDCWD, path,
                          MOVE_MOUNT_F_EMPTY_PATH);
    int e = errno;
    close(fd);
    errno = e;
    return rc < 0 ? fail_sys(err, "noexec mount over %s", path) : 1;
}

/* A writable grant code could be written to: a directory or a file (not a
 * device such as /dev/null, which cannot be mapped). */
static bool holds_code(const iso_fs_grant *g)
{
    struct stat st;
    return g->write && stat(g->path, &st) == 0 &&
           (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode));
}

/* The working directory still points into the mounts beneath the noexec
 * ones (relative paths would reach the exec-able copy): resolve it again.
 * The root cannot be re-resolved that way, so a writable "/" is not
 * covered. CLONE_NEWNS came with CLONE_FS: only this thread moves. */
static int noexec_settle(iso_confine_report *rep, size_t done, iso_error *err)
{
    char cwd[PATH_MAX];
    /* a working directory that is gone has nothing to re-enter: "/" */
    if (chdir(getcwd(cwd, sizeof cwd) ? cwd : "/") < 0)
        return fail_sys(err, "re-enter the working directory");
    step_add(rep, "noexec", ISO_STEP_ACTIVE,
             "own mount namespace: %zu writable path(s) mounted noexec", done);
    return 0;
}

/* Landlock does not mediate mmap(PROT_EXEC) of a file the thread may read:
 * a .so a guest writes into a path its policy makes writable and readable
 * could be dlopened. The thread takes its own mount namespace (host mounts
 * still propagate in, none of its own out), in which every writable grant
 * is noexec: the kernel then refuses to map code from there (EPERM). */
static int step_noexec(const iso_confine_config *cfg, iso_confine_report *rep,
                       iso_error *err)
{
    size_t writable = 0, done = 0;
    for (size_t i = 0; i < cfg->n_grants; i++)
        writable += holds_code(&cfg->grants[i]);
    if (writable == 0) {
        step_add(rep, "noexec", ISO_STEP_NOT_NEEDED, "no writable path");
        return 0;
    }
    for (size_t i = 0; i < cfg->n_grants; i++)
        if (cfg->grants[i].write && strcmp(cfg->grants[i].path, "/") == 0) {
            step_add(rep, "noexec", ISO_STEP_MISSING,
                     "/ itself is writable: the root cannot be remounted "
                     "noexec for one thread");
            return 0;
        }
    if (unshare(CLONE_NEWNS) < 0) {
        if (errno != EPERM)
            return fail_sys(err, "unshare(CLONE_NEWNS)");
        step_add(rep, "noexec", ISO_STEP_MISSING,
                 "no CAP_SYS_ADMIN for a mount namespace: code written to a "
                 "writable path can be loaded");
        return 0;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        return fail_sys(err, "make the thread's mounts slaves");
    for (size_t i = 0; i < cfg->n_grants; i++) {
        int rc = holds_code(&cfg->grants[i])
                     ? noexec_over(cfg->grants[i].path, err)
                     : 0;
        if (rc < 0)
            return -1;
        done += (size_t)rc;
    }
    return noexec_settle(rep, done, err);
}

/* ---- session and environment -------------------------------------------- */

/* A new session detaches the worker from the host's terminal and process
 * group: terminal signals (^C) and job control no longer reach it. */
static int step_session(const iso_confine_config *cfg, iso_confine_report *rep,
                        iso_error *err)
{
    (void)cfg;
    if (setsid() >= 0) {
        step_add(rep, "session", ISO_STEP_ACTIVE, "new session %ld",
                 (long)getpid());
        return 0;
    }
    if (errno == EPERM && getsid(0) == getpid()) {
        step_add(rep, "session", ISO_STEP_NOT_NEEDED,
                 "already leads its own session");
        return 0;
    }
    return fail_sys(err, "setsid");
}

static int step_environment(const iso_confine_config *cfg,
                            iso_confine_report *rep, iso_error *err)
{
    if (clearenv() != 0)
        return iso_error_set(err, ISO_CRASHED, "confine: clearenv failed");
    for (size_t i = 0; i < cfg->n_env; i++) {
        const char *kv = cfg->env[i];
        const char *eq = kv ? strchr(kv, '=') : NULL;
        char name[256];
        if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof name)
            return iso_error_set(err, ISO_INVALID_ARGUMENT,
                                 "confine: environment entry %zu is not "
                                 "NAME=VALUE",
                                 i);
        memcpy(name, kv, (size_t)(eq - kv));
        name[eq - kv] = '\0';
        if (setenv(name, eq + 1, 1) < 0)
            return fail_sys(err, "setenv %s", name);
    }
    step_add(rep, "environment", ISO_STEP_ACTIVE,
             "%zu variable(s), nothing inherited", cfg->n_env);
    return 0;
}

/* ---- rlimits ------------------------------------------------------------ */

/* Set a limit, never above the hard limit already in force: raising it
 * would need CAP_SYS_RESOURCE, and a stricter inherited limit stays. */
static int set_limit(int res, const char *name, uint64_t soft, uint64_t hard,
                     iso_error *err)
{
    struct rlimit cur, want;
    if (getrlimit(res, &cur) < 0)
        return fail_sys(err, "getrlimit %s", name);
    want.rlim_max = hard < cur.rlim_max ? (rlim_t)hard : cur.rlim_max;
    want.rlim_cur = soft < want.rlim_max ? (rlim_t)soft : want.rlim_max;
    if (setrlimit(res, &want) < 0)
        return fail_sys(err, "setrlimit %s", name);
    return 0;
}

static void detail_append(char *d, size_t n, const char *name, int64_t v,
                          const char *unit)
{
    size_t len = strlen(d);
    snprintf(d + len, n - len, " %s=%lld%s", name, (long long)v, unit);
}

static int step_rlimits(const iso_confine_config *cfg, iso_confine_report *rep,
                        iso_error *err)
{
    char d[256] = "core=0";
    /* no core files: they would hold the guest's memory outside the cell */
    if (set_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, 0, err) < 0)
        return -1;
    if (cfg->mem_bytes >= 0) {
        uint64_t m = (uint64_t)cfg->mem_bytes;
        if (set_limit(RLIMIT_AS, "RLIMIT_AS", m, m, err) < 0)
            return -1;
        detail_append(d, sizeof d, "as", cfg->mem_bytes, "");
    }
    if (cfg->cpu_ms >= 0) {
        /* whole seconds, at least 1 (0 would disarm the timer); the soft
         * limit sends SIGXCPU (the host's "cpu"), the hard one SIGKILL */
        int64_t s = cfg->cpu_ms / 1000 + (cfg->cpu_ms % 1000 != 0);
        s = s < 1 ? 1 : s;
        if (set_limit(RLIMIT_CPU, "RLIMIT_CPU", (uint64_t)s, (uint64_t)s + 1,
                      err) < 0)
            return -1;
        detail_append(d, sizeof d, "cpu", s, "s");
    }
    if (cfg->open_files >= 0) {
        uint64_t v = (uint64_t)cfg->open_files;
        if (set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", v, v, err) < 0)
            return -1;
        detail_append(d, sizeof d, "nofile", cfg->open_files, "");
    }
    if (cfg->output_bytes >= 0) {
        uint64_t v = (uint64_t)cfg->output_bytes;
        if (set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", v, v, err) < 0)
            return -1;
        detail_append(d, sizeof d, "fsize", cfg->output_bytes, "");
    }
    step_add(rep, "rlimits", ISO_STEP_ACTIVE, "%s", d);
    return 0;
}

/* The early half's rlimit: no core files, whatever the policy (no row:
 * the late half's rlimits row says core=0 with the rest). */
static int step_no_core(const iso_confine_config *cfg, iso_confine_report *rep,
                        iso_error *err)
{
    (void)cfg, (void)rep;
    return set_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, 0, err);
}

/* ---- cgroup and privileges ---------------------------------------------- */

/* Join the cgroup whose directory fd is cfg->cgroup_fd, unless the zygote
 * created us in it; the fd is closed either way. */
static int cgroup_by_fd(const iso_confine_config *cfg, iso_confine_report *rep,
                        iso_error *err)
{
    int fd = cfg->cgroup_born_in
                 ? -1
                 : openat(cfg->cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
    ssize_t w = fd >= 0 ? write(fd, "0", 1) : -1;
    int e = errno;
    if (fd >= 0)
        close(fd);
    close(cfg->cgroup_fd);
    errno = e;
    if (!cfg->cgroup_born_in && w != 1)
        return fail_sys(err, "join its cgroup");
    step_add(rep, "cgroup", ISO_STEP_ACTIVE, "%s",
             cfg->cgroup_born_in ? "created in its own (CLONE_INTO_CGROUP)"
                                 : "joined its own");
    return 0;
}

static int step_cgroup(const iso_confine_config *cfg, iso_confine_report *rep,
                       iso_error *err)
{
    if (cfg->cgroup_by_fd)
        return cgroup_by_fd(cfg, rep, err);
    if (!cfg->cgroup_procs) {
        step_add(rep, "cgroup", ISO_STEP_MISSING,
                 "no cgroup v2 directory from the host");
        return 0;
    }
    int fd = open(cfg->cgroup_procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return fail_sys(err, "open %s", cfg->cgroup_procs);
    ssize_t w = write(fd, "0", 1);
    int e = errno;
    close(fd);
    errno = e;
    if (w != 1)
        return fail_sys(err, "join %s", cfg->cgroup_procs);
    const char *end = strrchr(cfg->cgroup_procs, '/');
    int len = end ? (int)(end - cfg->cgroup_procs) : 0;
    step_add(rep, "cgroup", ISO_STEP_ACTIVE, "joined %.*s", len,
             cfg->cgroup_procs);
    return 0;
}

/* A cell thread joins its own threaded cgroup (the BPF guard keys its
 * rules by that cgroup). Only the calling thread moves. */
int iso_confine_join_cgroup(const char *threads_path, iso_error *err)
{
    char tid[24];
    snprintf(tid, sizeof tid, "%ld", (long)syscall(SYS_gettid));
    int fd = open(threads_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return fail_sys(err, "open %s", threads_path);
    ssize_t w = write(fd, tid, strlen(tid));
    int e = errno;
    close(fd);
    errno = e;
    if (w != (ssize_t)strlen(tid))
        return fail_sys(err, "join %s", threads_path);
    return 0;
}

static int step_thread_cgroup(const iso_confine_config *cfg,
                              iso_confine_report *rep, iso_error *err)
{
    if (!cfg->cgroup_threads) {
        step_add(rep, "cgroup", ISO_STEP_MISSING, "%s",
                 cfg->cgroup_missing ? cfg->cgroup_missing
                                     : "no threaded cgroup from the host");
        return 0;
    }
    /* a warm cell's thread joined while it waited in the pool: moving a
     * thread is the slow part (the kernel's threadgroup lock) */
    if (!cfg->cgroup_joined &&
        iso_confine_join_cgroup(cfg->cgroup_threads, err) < 0)
        return -1;
    const char *end = strrchr(cfg->cgroup_threads, '/');
    int len = end ? (int)(end - cfg->cgroup_threads) : 0;
    step_add(rep, "cgroup", ISO_STEP_ACTIVE, "thread joined %.*s", len,
             cfg->cgroup_threads);
    return 0;
}

/* Empty the bounding set, so that no execve can regain a capability. It
 * takes CAP_SETPCAP; without it the set stays, which is safe here too:
 * execve traps, and no_new_privs caps what an execve could grant at the
 * (then empty) permitted set. Returns how many were dropped, or -1. */
static int drop_bounding_set(bool setpcap, iso_error *err)
{
    int dropped = 0;
    for (int c = 0; setpcap && prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; c++) {
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0)
            return fail_sys(err, "drop capability %d from the bounding set", c);
        dropped++;
    }
    return dropped;
}

/* A root host forks a root worker with every capability: CAP_NET_ADMIN,
 * CAP_SYS_RAWIO, CAP_MKNOD... reach past Landlock and the syscall list. */
static int step_capabilities(const iso_confine_config *cfg,
                             iso_confine_report *rep, iso_error *err)
{
    (void)cfg;
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0)
        return fail_sys(err, "capget");
    bool held =
        d[0].permitted | d[1].permitted | d[0].inheritable | d[1].inheritable;
    if (!held) {
        step_add(rep, "capabilities", ISO_STEP_NOT_NEEDED,
                 "no capabilities held");
        return 0;
    }
    int dropped = drop_bounding_set(d[0].effective & (1U << CAP_SETPCAP), err);
    if (dropped < 0)
        return -1;
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) < 0)
        return fail_sys(err, "capset");
    step_add(rep, "capabilities", ISO_STEP_ACTIVE,
             "all dropped (%d from the bounding set)", dropped);
    return 0;
}

/* Landlock and unprivileged seccomp filters require no_new_privs. */
static int step_no_new_privs(const iso_confine_config *cfg,
                             iso_confine_report *rep, iso_error *err)
{
    (void)cfg;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) {
        step_add(rep, "no_new_privs", ISO_STEP_ACTIVE, "set");
        return 0;
    }
    if (errno == EINVAL) {
        step_add(rep, "no_new_privs", ISO_STEP_MISSING,
                 "kernel before 3.5 has no PR_SET_NO_NEW_PRIVS");
        return 0;
    }
    return fail_sys(err, "prctl(PR_SET_NO_NEW_PRIVS)");
}

/* ---- landlock ----------------------------------------------------------- */

/* A write grant creates, removes, renames and truncates beneath the path,
 * but never makes device nodes: a block device made in a writable
 * directory would expose the raw disk. */
static uint64_t grant_rights(const iso_fs_grant *g)
{
    uint64_t r = 0;
    if (g->read)
        r |= LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    if (g->write)
        r |= LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
             LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR |
             LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
             LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_SYM |
             LANDLOCK_ACCESS_FS_REFER | LANDLOCK_ACCESS_FS_TRUNCATE |
             LANDLOCK_ACCESS_FS_IOCTL_DEV;
    if (g->exec)
        r |= LANDLOCK_ACCESS_FS_EXECUTE;
    if (g->list)
        r |= LANDLOCK_ACCESS_FS_READ_DIR;
    return r;
}

/* The rule for g; id: what its path resolved to (absent: nothing there to
 * allow, the default deny holds). An fstat failure leaves id zero, which
 * no path resolves to: a cached ruleset built so is always stale. */
static int add_path_rule(int rfd, const iso_fs_grant *g, uint64_t handled,
                         iso_landlock_ident *id, iso_error *err)
{
    *id = (iso_landlock_ident){0, 0, true};
    if (!g->path || g->path[0] != '/')
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "confine: fs grant paths must be absolute");
    int fd = open(g->path, O_PATH | O_CLOEXEC);
    if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
        return 0;
    if (fd < 0)
        return fail_sys(err, "open %s", g->path);
    struct stat st;
    uint64_t want = grant_rights(g) & handled;
    id->absent = false;
    if (fstat(fd, &st) == 0) {
        id->dev = st.st_dev, id->ino = st.st_ino;
        if (!S_ISDIR(st.st_mode))
            want &= ISO_LANDLOCK_FILE_RIGHTS;
    }
    struct landlock_path_beneath_attr pb = {.allowed_access = want,
                                            .parent_fd = fd};
    int rc =
        want ? iso_landlock_add_rule(rfd, ISO_LANDLOCK_RULE_PATH_BENEATH, &pb)
             : 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc < 0 ? fail_sys(err, "Landlock rule for %s", g->path) : 0;
}

/* One Landlock port rule per port of the list, for one right. */
static int add_port_rules(int rfd, const uint16_t *ports, size_t n,
                          uint64_t right, iso_error *err)
{
    for (size_t i = 0; i < n; i++) {
        struct iso_landlock_net_port_attr np = {.allowed_access = right,
                                                .port = ports[i]};
        if (iso_landlock_add_rule(rfd, ISO_LANDLOCK_RULE_NET_PORT, &np) < 0)
            return fail_sys(err, "Landlock rule for TCP port %u",
                            (unsigned)ports[i]);
    }
    return 0;
}

static int add_net_rules(int rfd, const iso_confine_config *cfg,
                         uint64_t handled, iso_error *err)
{
    if ((handled & LANDLOCK_ACCESS_NET_CONNECT_TCP) &&
        add_port_rules(rfd, cfg->connect_ports, cfg->n_ports,
                       LANDLOCK_ACCESS_NET_CONNECT_TCP, err) < 0)
        return -1;
    if ((handled & LANDLOCK_ACCESS_NET_BIND_TCP) &&
        add_port_rules(rfd, cfg->bind_ports, cfg->n_bind_ports,
                       LANDLOCK_ACCESS_NET_BIND_TCP, err) < 0)
        return -1;
    return 0;
}

/* What the ruleset handles: every fs right (deny by default), TCP bind
 * unless a bind rule allows every port (only the bind rules' ports are
 * allowed, none without one; the BPF guard narrows to addresses), connect
 * unless a net rule allows every port or the BPF guard judges it, and both
 * scopes. */
static struct iso_landlock_ruleset_attr
ruleset_for(const iso_confine_config *cfg, int abi)
{
    struct iso_landlock_ruleset_attr a = {iso_landlock_fs_rights(abi), 0, 0};
    if (abi >= 4)
        a.handled_access_net =
            (cfg->bind_any_port ? 0 : LANDLOCK_ACCESS_NET_BIND_TCP) |
            (cfg->any_port || cfg->connect_by_bpf
                 ? 0
                 : LANDLOCK_ACCESS_NET_CONNECT_TCP);
    if (abi >= 6)
        a.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
    return a;
}

/* "[p1,p2,...]" (cut short past ~90 characters). */
static void port_list(const uint16_t *ports, size_t n, char *out, size_t size)
{
    size_t len = (size_t)snprintf(out, size, "[");
    for (size_t i = 0; i < n && len + 8 < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%u", i ? "," : "",
                                (unsigned)ports[i]);
    snprintf(out + len, size - len, "]");
}

static void report_ports(const iso_confine_config *cfg, iso_confine_report *rep)
{
    char conn[100], bind[100], bind_text[140];
    port_list(cfg->connect_ports, cfg->n_ports, conn, sizeof conn);
    port_list(cfg->bind_ports, cfg->n_bind_ports, bind, sizeof bind);
    if (cfg->bind_any_port)
        snprintf(bind_text, sizeof bind_text, "TCP bind to any port");
    else if (cfg->n_bind_ports == 0)
        snprintf(bind_text, sizeof bind_text, "TCP bind denied");
    else
        snprintf(bind_text, sizeof bind_text, "TCP bind only to port(s) %s",
                 bind);
    if (cfg->connect_by_bpf)
        step_add(rep, "landlock_net", ISO_STEP_ACTIVE,
                 "%s; connect left to the BPF guard", bind_text);
    else if (cfg->any_port)
        step_add(rep, "landlock_net", ISO_STEP_ACTIVE,
                 "%s; connect to any port (a net rule allows every port)",
                 bind_text);
    else
        step_add(rep, "landlock_net", ISO_STEP_ACTIVE,
                 "%s; connect only to port(s) %s", bind_text, conn);
}

int iso_confine_net_from_plan(iso_confine_config *cfg, const iso_plan *plan,
                              iso_error *err)
{
    uint16_t *conn = NULL, *bind = NULL;
    iso_plan_net_kinds k = iso_plan_net_kinds_of(plan);
    int rc = iso_plan_connect_ports(plan, &conn, &cfg->n_ports, &cfg->any_port);
    if (rc == 0)
        rc = iso_plan_bind_ports(plan, &bind, &cfg->n_bind_ports,
                                 &cfg->bind_any_port);
    cfg->connect_ports = conn;
    cfg->bind_ports = bind;
    cfg->net_calls = (k.bind ? ISO_SECCOMP_NET_LISTEN : 0) |
                     (k.unix_path ? ISO_SECCOMP_NET_UNIX : 0) |
                     (k.ip ? ISO_SECCOMP_NET_NETLINK : 0);
    if (rc < 0) {
        iso_confine_net_free(cfg);
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    }
    return 0;
}

void iso_confine_net_free(iso_confine_config *cfg)
{
    free((void *)cfg->connect_ports);
    free((void *)cfg->bind_ports);
    cfg->connect_ports = cfg->bind_ports = NULL;
    cfg->n_ports = cfg->n_bind_ports = 0;
}

static void report_landlock(const iso_confine_config *cfg,
                            iso_confine_report *rep, int abi, size_t skipped)
{
    step_add(rep, "landlock_fs", ISO_STEP_ACTIVE,
             "ABI %d: deny by default; %zu grant(s), %zu missing path(s) "
             "skipped",
             abi, cfg->n_grants - skipped, skipped);
    if (abi >= 4)
        report_ports(cfg, rep);
    else
        step_add(rep, "landlock_net", ISO_STEP_MISSING,
                 "Landlock ABI %d < 4: TCP connect and bind unrestricted", abi);
    if (abi >= 6)
        step_add(rep, "landlock_scope", ISO_STEP_ACTIVE,
                 "abstract unix sockets and signals limited to the cell");
    else
        step_add(rep, "landlock_scope", ISO_STEP_MISSING,
                 "Landlock ABI %d < 6: abstract unix sockets and signals "
                 "not scoped",
                 abi);
}

static void report_no_landlock(iso_confine_report *rep, int abi_errno)
{
    const char *why = abi_errno == ENOSYS ? "kernel built without Landlock"
                      : abi_errno == EOPNOTSUPP
                          ? "Landlock disabled (not in the lsm= boot list)"
                          : strerror(abi_errno);
    step_add(rep, "landlock_fs", ISO_STEP_MISSING, "%s", why);
    step_add(rep, "landlock_net", ISO_STEP_MISSING, "%s", why);
    step_add(rep, "landlock_scope", ISO_STEP_MISSING, "%s", why);
}

/* A ruleset for cfg (its fd, -1 with err) and how many grants were
 * missing; ids (NULL: not wanted) gets what each grant resolved to. */
static int build_ruleset(const iso_confine_config *cfg,
                         const struct iso_landlock_ruleset_attr *a,
                         iso_landlock_ident *ids, size_t *skipped,
                         iso_error *err)
{
    int rfd = iso_landlock_create_ruleset(a, sizeof *a, 0);
    if (rfd < 0)
        return fail_sys(err, "landlock_create_ruleset");
    int rc = 0;
    *skipped = 0;
    for (size_t i = 0; rc == 0 && i < cfg->n_grants; i++) {
        iso_landlock_ident id;
        rc =
            add_path_rule(rfd, &cfg->grants[i], a->handled_access_fs, &id, err);
        *skipped += rc == 0 && id.absent;
        if (ids)
            ids[i] = id;
    }
    if (rc == 0)
        rc = add_net_rules(rfd, cfg, a->handled_access_net, err);
    if (rc < 0) {
        close(rfd);
        return -1;
    }
    return rfd;
}

/* Restrict the thread (or process) with rfd, then close it. */
static int restrict_with(const iso_confine_config *cfg, iso_confine_report *rep,
                         int abi, int rfd, size_t skipped, iso_error *err)
{
    int rc = iso_landlock_restrict_self(rfd) < 0
                 ? fail_sys(err, "landlock_restrict_self")
                 : 0;
    close(rfd);
    if (rc == 0)
        report_landlock(cfg, rep, abi, skipped);
    return rc;
}

static int step_landlock(const iso_confine_config *cfg, iso_confine_report *rep,
                         iso_error *err)
{
    int abi = iso_landlock_abi();
    if (abi < 0) {
        report_no_landlock(rep, -abi);
        return 0;
    }
    struct iso_landlock_ruleset_attr a = ruleset_for(cfg, abi);
    size_t skipped;
    int rfd = build_ruleset(cfg, &a, NULL, &skipped, err);
    return rfd < 0 ? -1 : restrict_with(cfg, rep, abi, rfd, skipped, err);
}

/* Under the cache lock, in a cell thread before it takes its own fd
 * table: carried gets the cached ruleset for cfg, built and cached on a miss
 * (none without Landlock or when out of memory: the landlock step builds
 * it then, as for a process). */
static int hold_ruleset(const iso_confine_config *cfg, iso_error *err)
{
    carried.fd = -1;
    carried.abi = iso_landlock_abi();
    if (carried.abi < 0)
        return 0;
    iso_landlock_key k = {ruleset_for(cfg, carried.abi),
                          cfg->grants,
                          cfg->n_grants,
                          cfg->n_fixed_grants < cfg->n_grants
                              ? cfg->n_fixed_grants
                              : cfg->n_grants,
                          cfg->connect_ports,
                          cfg->bind_ports,
                          cfg->n_ports,
                          cfg->n_bind_ports};
    if ((carried.fd = iso_landlock_cache_find(&k, &carried.skipped)) >= 0)
        return 0;
    iso_landlock_ident *ids = calloc(cfg->n_grants + 1, sizeof *ids);
    if (!ids)
        return 0;
    int rfd = build_ruleset(cfg, &k.attr, ids, &carried.skipped, err);
    if (rfd >= 0 && iso_landlock_cache_add(&k, ids, rfd, carried.skipped))
        carried.fd = rfd;
    else if (rfd >= 0)
        close(rfd); /* built again after unshare, outside the host table */
    free(ids);
    return rfd < 0 ? -1 : 0;
}

/* A cell thread's: with the ruleset held since the fd_table step. */
static int step_thread_landlock(const iso_confine_config *cfg,
                                iso_confine_report *rep, iso_error *err)
{
    int fd = carried.fd;
    carried.fd = -1;
    if (fd < 0)
        return step_landlock(cfg, rep, err);
    return restrict_with(cfg, rep, carried.abi, fd, carried.skipped, err);
}

/* ---- seccomp ------------------------------------------------------------ */

/* Names of the trapped system calls by number, filled while the filter is
 * built: the SIGSYS handler may not call libseccomp's resolver (it
 * allocates), only read this table. */
#define TRAP_NAMES_MAX 128
static iso_trap_name trap_names[TRAP_NAMES_MAX];
static size_t n_trap_names;
static volatile int death_fd = -1;

/* The list, plus pidfd_getfd, process_madvise and kcmp (another
 * process's fds or memory, reachable for the same uid) and mount_setattr
 * (the new mount API's last call). One group of related calls a line. */
/* clang-format off */
static const char *const builtin_deny[] = {
    "execve", "execveat", "personality",
    "ptrace", "process_vm_readv", "process_vm_writev",
    "pidfd_getfd", "process_madvise", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "mount_setattr",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "setns", "unshare",
    "bpf", "perf_event_open", "userfaultfd", "open_by_handle_at",
    "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
    "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
};
/* compat mode: only what no ordinary program needs and what would hand a
 * guest the machine (code execution, other processes' memory, the kernel).
 * Kept for programs that break under the full list, e.g. ones that
 * mount, unshare or use io_uring. */
static const char *const compat_deny[] = {
    "execve", "execveat",
    "ptrace", "process_vm_readv", "process_vm_writev",
    "bpf", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot",
};
/* Cell threads, in every mode: the host's fd table through a pidfd of the
 * host itself or a comparison of fds, and code loaded from memory (a .so
 * written to a memfd and dlopened through /proc/self/fd: Landlock does not
 * mediate memfds). */
static const char *const thread_deny[] = {
    "pidfd_getfd", "kcmp", "memfd_create",
};
/* clang-format on */

static const char *trap_name(int nr)
{
    for (size_t i = 0; i < n_trap_names; i++)
        if (trap_names[i].nr == nr)
            return trap_names[i].name;
    return NULL;
}

static void append(char *buf, size_t *n, size_t cap, const char *s)
{
    while (*s && *n < cap)
        buf[(*n)++] = *s++;
}

/* Async-signal-safe: write(2), _exit(2) and the precomputed table only. */
static void on_sigsys(int sig, siginfo_t *si, void *uctx)
{
    (void)sig;
    (void)uctx;
    char buf[96], digits[16];
    size_t n = 0;
    const char *name = trap_name(si->si_syscall);
    append(buf, &n, sizeof buf, "seccomp: ");
    if (!name) {
        unsigned v = (unsigned)si->si_syscall;
        size_t d = sizeof digits - 1;
        digits[d] = '\0';
        do
            digits[--d] = (char)('0' + v % 10);
        while ((v /= 10) && d);
        append(buf, &n, sizeof buf, "syscall ");
        name = digits + d;
    }
    append(buf, &n, sizeof buf, name);
    if (death_fd >= 0) {
        ssize_t w = write(death_fd, buf, n);
        (void)w;
    }
    _exit(ISO_CONFINE_SECCOMP_EXIT);
}

static int seccomp_fail(iso_error *err, int rc, const char *what)
{
    iso_error_set(err, ISO_CRASHED, "confine: seccomp %s: %s", what,
                  strerror(-rc));
    if (err)
        err->code = -rc;
    return -1;
}

/* Record nr's name for the handler (once). */
static int trap_record(int nr, const char *name, iso_error *err)
{
    if (trap_name(nr))
        return 0;
    if (n_trap_names >= TRAP_NAMES_MAX)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "confine: more than %d denied system calls",
                             TRAP_NAMES_MAX);
    trap_names[n_trap_names].nr = nr;
    snprintf(trap_names[n_trap_names].name, sizeof trap_names[0].name, "%s",
             name);
    n_trap_names++;
    return 0;
}

/* Trap name unconditionally. A built-in name this architecture lacks is
 * skipped; a policy name must exist. */
static int trap_syscall(scmp_filter_ctx ctx, uint32_t act, const char *name,
                        bool policy, iso_error *err)
{
    int nr = name ? seccomp_syscall_resolve_name(name) : __NR_SCMP_ERROR;
    if (nr < 0) /* unknown, or a pseudo number: not a syscall here */
        return policy ? iso_error_set(err, ISO_INVALID_ARGUMENT,
                                      "confine: unknown system call \"%s\" "
                                      "in syscalls.deny",
                                      name ? name : "(null)")
                      : 0;
    if (trap_record(nr, name, err) < 0)
        return -1;
    /* also for a name already recorded: "clone" in syscalls.deny traps
     * every clone, not only the conditional built-in ones */
    int rc = seccomp_rule_add(ctx, act, nr, 0);
    /* EEXIST: a built-in rule already acts on it (clone3 -> ENOSYS) */
    return rc < 0 && rc != -EEXIST ? seccomp_fail(err, rc, name) : 0;
}

static int clone_rules(scmp_filter_ctx ctx, uint32_t act,
                       const iso_confine_config *cfg, iso_error *err)
{
    /* clone takes its flags in a0 everywhere; only the low 32 bits count */
    static const uint64_t ns[] = {CLONE_NEWNS,  CLONE_NEWCGROUP, CLONE_NEWUTS,
                                  CLONE_NEWIPC, CLONE_NEWUSER,   CLONE_NEWPID,
                                  CLONE_NEWNET};
    if (trap_record(SCMP_SYS(clone), "clone", err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof ns / sizeof ns[0]; i++)
        rc = seccomp_rule_add(ctx, act, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, ns[i], ns[i]));
    if (rc == 0 && cfg->processes <= 0) /* a thread is fine, a process not */
        rc = seccomp_rule_add(ctx, act, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
    /* clone3's flags sit in memory seccomp cannot read: ENOSYS makes glibc
     * fall back to clone, which the rules above can judge */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc < 0)
        return seccomp_fail(err, rc, "clone rules");
    if (cfg->processes <= 0 &&
        (trap_syscall(ctx, act, "fork", false, err) < 0 ||
         trap_syscall(ctx, act, "vfork", false, err) < 0))
        return -1;
    return 0;
}

/* A process traps (its handler writes the death note, the worker ends);
 * a cell thread gets EPERM, since killing a thread that may hold the GIL
 * would stop every cell. */
static uint32_t deny_action(const iso_confine_config *cfg)
{
    return cfg->in_thread ? SCMP_ACT_ERRNO(EPERM) : SCMP_ACT_TRAP;
}

static int filter_attributes(scmp_filter_ctx ctx, const iso_confine_config *cfg)
{
    /* x86_64: libseccomp's filter also sends x32 numbers (nr | 1 << 30) to
     * this bad-arch action (visible in the BPF, not in the PFC dump) */
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
                              cfg->in_thread ? SCMP_ACT_ERRNO(ENOSYS)
                                             : SCMP_ACT_KILL_PROCESS);
    /* no_new_privs is its own, earlier step */
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    /* keep the SIGSYS handler (and so the death note) in place */
    if (rc == 0 && !cfg->in_thread)
        rc = seccomp_rule_add(
            ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(rt_sigaction), 2,
            SCMP_A0(SCMP_CMP_EQ, SIGSYS), SCMP_A1(SCMP_CMP_NE, 0));
    return rc;
}

/* ---- seccomp: socket families, listen, tty injection, SIGIO ------------ */

/* These fail with EPERM in both backends, never trap: a runtime probing
 * them (getaddrinfo tries nscd's unix socket and NETLINK_ROUTE) must get
 * an error it handles, not a dead worker. Every comparison is on the low
 * 32 bits (MASKED_EQ with 0xffffffff): the kernel reads these arguments as
 * int, so garbage in the upper half must not slip past an EQ. */
#define LOW32 0xffffffffULL
#define ISO_TIOCLINUX 0x541C /* <linux/tiocl.h> needs no libc: spelt out */

static int refuse_a1(scmp_filter_ctx ctx, int nr, uint64_t value)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 1,
                            SCMP_A1(SCMP_CMP_MASKED_EQ, LOW32, value));
}

/* TIOCSTI/TIOCLINUX push keystrokes into a terminal the guest can reach
 * (the host's, through an fd a sub-interpreter shares), whatever
 * dev.tty.legacy_tiocsti says. F_SETOWN and friends aim SIGIO/SIGURG at a
 * pid of the guest's choosing (the host's). */
static int tty_and_sigio_rules(scmp_filter_ctx ctx)
{
    static const uint64_t ioctls[] = {TIOCSTI, ISO_TIOCLINUX, FIOASYNC,
                                      FIOSETOWN, SIOCSPGRP};
    static const uint64_t fcntls[] = {F_SETOWN, F_SETOWN_EX, F_SETSIG};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof ioctls / sizeof *ioctls; i++)
        rc = refuse_a1(ctx, SCMP_SYS(ioctl), ioctls[i]);
    for (size_t i = 0; rc == 0 && i < sizeof fcntls / sizeof *fcntls; i++)
        rc = refuse_a1(ctx, SCMP_SYS(fcntl), fcntls[i]);
    if (rc == 0) /* F_SETFL with O_ASYNC: signal-driven I/O */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(fcntl), 2,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, LOW32, F_SETFL),
                              SCMP_A2(SCMP_CMP_MASKED_EQ, O_ASYNC, O_ASYNC));
    return rc;
}

/* EPERM for socket() when `when` holds (if given) and the argument `arg`,
 * read through `width` (an all-ones mask: 0xffffffff, or 0xf for the socket
 * type without its flags), is in [lo, end): the range as aligned
 * power-of-two blocks, each one MASKED_EQ, since libseccomp compares an
 * argument only once per rule. */
static int refuse_range(scmp_filter_ctx ctx, const struct scmp_arg_cmp *when,
                        unsigned arg, uint64_t width, uint64_t lo, uint64_t end)
{
    int rc = 0;
    while (rc == 0 && lo < end) {
        uint64_t size = lo ? lo & -lo : width + 1; /* lo's alignment */
        while (lo + size > end)
            size >>= 1;
        struct scmp_arg_cmp c[2];
        unsigned k = 0;
        if (when)
            c[k++] = *when;
        c[k++] = (struct scmp_arg_cmp){arg, SCMP_CMP_MASKED_EQ,
                                       width & ~(size - 1), lo};
        rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM),
                                    SCMP_SYS(socket), k, c);
        lo += size;
    }
    return rc;
}

/* EPERM for every value of the argument but the sorted allowed[0..n). */
static int refuse_outside(scmp_filter_ctx ctx, const struct scmp_arg_cmp *when,
                          unsigned arg, uint64_t width, const uint64_t *allowed,
                          size_t n)
{
    uint64_t lo = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i <= n; i++) {
        uint64_t end = i < n ? allowed[i] : width + 1;
        rc = refuse_range(ctx, when, arg, width, lo, end);
        lo = end + 1;
    }
    return rc;
}

/* IPv4/IPv6 sockets: SOCK_STREAM and SOCK_DGRAM of TCP, MPTCP and UDP
 * only. SOCK_RAW and SOCK_PACKET (which the kernel turns into a packet
 * socket) pass no cgroup hook and reach every host and port; a cell thread
 * of a root host holds CAP_NET_RAW for them. Other protocols (SCTP,
 * UDP-Lite, ICMP...) are kernel surface no policy rule speaks of. */
static int inet_rules(scmp_filter_ctx ctx, uint64_t family)
{
    static const uint64_t types[] = {SOCK_STREAM, SOCK_DGRAM};
    static const uint64_t protos[] = {0, IPPROTO_TCP, IPPROTO_UDP,
                                      262 /* IPPROTO_MPTCP */};
    struct scmp_arg_cmp is = SCMP_A0(SCMP_CMP_MASKED_EQ, LOW32, family);
    int rc = refuse_outside(ctx, &is, 1, 0xf, types, 2);
    return rc ? rc : refuse_outside(ctx, &is, 2, LOW32, protos, 4);
}

/* socket(): IPv4 and IPv6 (the BPF guard and Landlock judge their use);
 * AF_UNIX only when a unix: rule names a path (pathname sockets are
 * reachable through any fs view, Landlock does not mediate connect);
 * AF_NETLINK only for NETLINK_ROUTE and only with IP net rules (name
 * resolution). Every other family -- packet, vsock, alg, xdp... -- fails.
 * socketpair() stays allowed: it reaches no one. */
static int socket_rules(scmp_filter_ctx ctx, unsigned calls)
{
    uint64_t families[4];
    size_t n = 0;
    if (calls & ISO_SECCOMP_NET_UNIX)
        families[n++] = AF_UNIX;
    families[n++] = AF_INET;
    families[n++] = AF_INET6;
    if (calls & ISO_SECCOMP_NET_NETLINK)
        families[n++] = AF_NETLINK;
    int rc = refuse_outside(ctx, NULL, 0, LOW32, families, n);
    if (rc == 0)
        rc = inet_rules(ctx, AF_INET);
    if (rc == 0)
        rc = inet_rules(ctx, AF_INET6);
    if (rc == 0 && (calls & ISO_SECCOMP_NET_NETLINK))
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 2,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, LOW32, AF_NETLINK),
                              SCMP_A2(SCMP_CMP_NE, NETLINK_ROUTE));
    /* the autobind of listen() on an unbound socket passes no bind hook */
    if (rc == 0 && !(calls & ISO_SECCOMP_NET_LISTEN))
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(listen), 0);
    return rc;
}

static int net_call_rules(scmp_filter_ctx ctx, const iso_confine_config *cfg,
                          iso_error *err)
{
    int rc = tty_and_sigio_rules(ctx);
    if (rc == 0)
        rc = socket_rules(ctx, cfg->net_calls);
    return rc < 0 ? seccomp_fail(err, rc, "socket and ioctl rules") : 0;
}

static int build_filter(scmp_filter_ctx ctx, const iso_confine_config *cfg,
                        iso_error *err)
{
    int rc = filter_attributes(ctx, cfg);
    if (rc < 0)
        return seccomp_fail(err, rc, "filter attributes");
    uint32_t act = deny_action(cfg);
    const char *const *list = cfg->compat ? compat_deny : builtin_deny;
    size_t n = cfg->compat ? sizeof compat_deny / sizeof *compat_deny
                           : sizeof builtin_deny / sizeof *builtin_deny;
    n_trap_names = 0;
    for (size_t i = 0; i < n; i++)
        if (trap_syscall(ctx, act, list[i], false, err) < 0)
            return -1;
    for (size_t i = 0;
         cfg->in_thread && i < sizeof thread_deny / sizeof *thread_deny; i++)
        if (trap_syscall(ctx, act, thread_deny[i], false, err) < 0)
            return -1;
    if (clone_rules(ctx, act, cfg, err) < 0 ||
        net_call_rules(ctx, cfg, err) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n_deny; i++)
        if (trap_syscall(ctx, act, cfg->deny_syscalls[i], true, err) < 0)
            return -1;
    return 0;
}

static int install_sigsys(const iso_confine_config *cfg, iso_error *err)
{
    struct sigaction sa;
    sigset_t set;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigfillset(&sa.sa_mask);
    sigemptyset(&set);
    sigaddset(&set, SIGSYS);
    death_fd = cfg->death_note_fd;
    if (sigaction(SIGSYS, &sa, NULL) < 0 ||
        sigprocmask(SIG_UNBLOCK, &set, NULL) < 0)
        return fail_sys(err, "install the SIGSYS handler");
    return 0;
}

/* Probe with a NULL program: EFAULT means filters exist, EINVAL not. */
const char *iso_seccomp_missing(void)
{
    if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0 && errno == EINVAL)
        return "kernel built without seccomp";
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, NULL, 0, 0) < 0 &&
        errno == EINVAL)
        return "kernel built without seccomp filters";
    return NULL;
}

/* the name table is shared: filters are built in turn */
static pthread_mutex_t building = PTHREAD_MUTEX_INITIALIZER;

/* A worker's filter: built, its names kept for the SIGSYS handler, loaded.
 * Only where its host sent none compiled (see iso_confine_worker_filter). */
static int load_process_filter(const iso_confine_config *cfg, size_t *denied,
                               iso_error *err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return iso_error_set(err, ISO_CRASHED, "confine: seccomp_init failed");
    pthread_mutex_lock(&building);
    int rc = build_filter(ctx, cfg, err);
    if (rc == 0)
        rc = install_sigsys(cfg, err);
    if (rc == 0 && (rc = seccomp_load(ctx)) < 0)
        rc = seccomp_fail(err, rc, "load");
    seccomp_release(ctx);
    *denied = n_trap_names;
    pthread_mutex_unlock(&building);
    return rc < 0 ? -1 : 0;
}

/* A worker's filter its host compiled: the names into the handler's
 * table, the handler, then the program as seccomp_load would install it
 * (flags 0: a worker has one thread). */
static int load_compiled_filter(const iso_confine_config *cfg, size_t *denied,
                                iso_error *err)
{
    const iso_worker_filter *f = cfg->compiled;
    if (f->n_traps > TRAP_NAMES_MAX || !f->prog.filter || f->prog.len == 0)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "confine: a malformed compiled seccomp filter");
    pthread_mutex_lock(&building);
    for (size_t i = 0; i < f->n_traps; i++)
        trap_names[i] = f->traps[i];
    n_trap_names = f->n_traps;
    *denied = n_trap_names;
    pthread_mutex_unlock(&building);
    if (install_sigsys(cfg, err) < 0)
        return -1;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &f->prog) < 0)
        return fail_sys(err, "seccomp: load the compiled filter");
    return 0;
}

/* libseccomp's BPF for ctx, read back from a memfd (libseccomp 2.5 can
 * export only to an fd). */
static int export_program(scmp_filter_ctx ctx, struct sock_fprog *prog,
                          iso_error *err)
{
    int fd = memfd_create("iso-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return fail_sys(err, "memfd_create for the seccomp program");
    int rc = seccomp_export_bpf(ctx, fd);
    off_t size = rc == 0 ? lseek(fd, 0, SEEK_END) : -1;
    size_t n = size > 0 ? (size_t)size / sizeof *prog->filter : 0;
    prog->filter = n > 0 && n <= BPF_MAXINSNS ? malloc((size_t)size) : NULL;
    prog->len = (unsigned short)n;
    if (prog->filter && pread(fd, prog->filter, (size_t)size, 0) != size) {
        free(prog->filter);
        prog->filter = NULL;
    }
    close(fd);
    if (rc < 0)
        return seccomp_fail(err, rc, "export");
    return prog->filter ? 0
                        : iso_error_set(err, ISO_CRASHED,
                                        "confine: seccomp export gave no "
                                        "usable program");
}

/* Compile cfg's thread filter with libseccomp into prog (caller frees). */
static int compile_thread_filter(const iso_confine_config *cfg,
                                 struct sock_fprog *prog, size_t *denied,
                                 iso_error *err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return iso_error_set(err, ISO_CRASHED, "confine: seccomp_init failed");
    /* a binary tree by syscall number: the kernel's install (which runs
     * the filter for every syscall number to cache verdicts) and each
     * judged call take about half the time of the default linear list */
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (rc < 0) {
        seccomp_release(ctx);
        return seccomp_fail(err, rc, "optimize attribute");
    }
    pthread_mutex_lock(&building);
    rc = build_filter(ctx, cfg, err);
    *denied = n_trap_names;
    pthread_mutex_unlock(&building);
    if (rc == 0)
        rc = export_program(ctx, prog, err);
    seccomp_release(ctx);
    return rc;
}

/* A cell thread's filter: compiled once per key, then installed as
 * seccomp_load would (flags 0: no TSYNC, the filter is this thread's). */
static int load_thread_filter(const iso_confine_config *cfg, size_t *denied,
                              iso_error *err)
{
    iso_seccomp_key key = {.compat = cfg->compat,
                           .in_thread = true,
                           .processes = cfg->processes > 0,
                           .net = cfg->net_calls,
                           .deny = cfg->deny_syscalls,
                           .n_deny = cfg->n_deny};
    struct sock_fprog prog = {0};
    if (!iso_seccomp_cache_find(&key, &prog, denied, NULL)) {
        if (compile_thread_filter(cfg, &prog, denied, err) < 0)
            return -1;
        iso_seccomp_cache_add(&key, &prog, *denied, NULL);
    }
    int rc = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
    free(prog.filter);
    return rc < 0 ? fail_sys(err, "seccomp load") : 0;
}

/* cfg's worker filter built under the lock, with its trap names copied. */
static int build_worker_filter(const iso_confine_config *cfg,
                               iso_worker_filter *out, iso_error *err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return iso_error_set(err, ISO_CRASHED, "confine: seccomp_init failed");
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (rc < 0)
        rc = seccomp_fail(err, rc, "optimize attribute");
    pthread_mutex_lock(&building);
    if (rc == 0)
        rc = build_filter(ctx, cfg, err);
    out->traps =
        rc == 0 ? malloc((n_trap_names + 1) * sizeof *out->traps) : NULL;
    if (rc == 0 && !out->traps)
        rc = iso_error_set(err, ISO_MEMORY, "out of memory");
    for (size_t i = 0; rc == 0 && i < n_trap_names; i++)
        out->traps[i] = trap_names[i];
    out->n_traps = rc == 0 ? n_trap_names : 0;
    pthread_mutex_unlock(&building);
    if (rc == 0)
        rc = export_program(ctx, &out->prog, err);
    seccomp_release(ctx);
    return rc < 0 ? -1 : 0;
}

int iso_confine_worker_filter(const iso_confine_config *cfg,
                              iso_worker_filter *out, iso_error *err)
{
    iso_seccomp_key key = {.compat = cfg->compat,
                           .processes = cfg->processes > 0,
                           .net = cfg->net_calls,
                           .deny = cfg->deny_syscalls,
                           .n_deny = cfg->n_deny};
    iso_seccomp_extra extra = {0};
    size_t denied;
    memset(out, 0, sizeof *out);
    if (cfg->in_thread)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "confine: a worker filter is not a thread's");
    if (iso_seccomp_cache_find(&key, &out->prog, &denied, &extra)) {
        out->traps = extra.data;
        out->n_traps = extra.len / sizeof *out->traps;
        return 0;
    }
    if (build_worker_filter(cfg, out, err) < 0) {
        iso_worker_filter_free(out);
        return -1;
    }
    extra.data = out->traps;
    extra.len = out->n_traps * sizeof *out->traps;
    iso_seccomp_cache_add(&key, &out->prog, out->n_traps, &extra);
    return 0;
}

void iso_worker_filter_free(iso_worker_filter *f)
{
    free(f->prog.filter);
    free(f->traps);
    memset(f, 0, sizeof *f);
}

static int step_seccomp(const iso_confine_config *cfg, iso_confine_report *rep,
                        iso_error *err)
{
    const char *missing = iso_seccomp_missing();
    if (missing) {
        step_add(rep, "seccomp", ISO_STEP_MISSING, "%s", missing);
        return 0;
    }
    size_t denied = 0;
    if ((cfg->in_thread  ? load_thread_filter(cfg, &denied, err)
         : cfg->compiled ? load_compiled_filter(cfg, &denied, err)
                         : load_process_filter(cfg, &denied, err)) < 0)
        return -1;
    step_add(rep, "seccomp", ISO_STEP_ACTIVE,
             "%s list: %zu system calls %s; clone3 -> ENOSYS; %s; foreign "
             "and x32 system calls %s",
             cfg->compat ? "compat" : "full", denied,
             cfg->in_thread ? "fail with EPERM" : "trap",
             cfg->processes > 0 ? "fork allowed" : "no process creation",
             cfg->in_thread ? "fail with ENOSYS" : "kill");
    unsigned calls = cfg->net_calls;
    step_add(rep, "seccomp_net", ISO_STEP_ACTIVE,
             "EPERM for socket() other than TCP/UDP over IPv4/IPv6%s%s%s; "
             "TIOCSTI, "
             "TIOCLINUX; F_SETOWN(_EX), F_SETSIG, O_ASYNC, FIOASYNC, "
             "FIOSETOWN, SIOCSPGRP",
             calls & ISO_SECCOMP_NET_UNIX ? "/unix (a unix: rule)" : "",
             calls & ISO_SECCOMP_NET_NETLINK ? "/NETLINK_ROUTE" : "",
             calls & ISO_SECCOMP_NET_LISTEN ? "" : "; listen() (no bind rule)");
    return 0;
}

/* ---- the list ----------------------------------------------------------- */

static const confine_step steps[] = {
    step_close_fds,    step_session,  step_environment,
    step_rlimits,      step_cgroup,   step_capabilities,
    step_no_new_privs, step_landlock, step_seccomp,
};

int iso_confine_rows(const iso_confine_report *rep, const char *scope,
                     iso_value *list)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < rep->n; i++)
        rc = iso_confinement_add(list, rep->steps[i].layer,
                                 iso_step_state_name(rep->steps[i].state),
                                 scope, rep->steps[i].detail);
    return rc;
}

static const confine_step thread_steps[] = {
    step_thread_cgroup, step_fd_table,        step_noexec,
    step_no_new_privs,  step_thread_landlock, step_seccomp,
};

/* Run list, appending to rep (fresh: emptied first); each row is stamped
 * with the time its step ended. */
static int run_steps(const confine_step *list, size_t n,
                     const iso_confine_config *cfg, iso_confine_report *rep,
                     bool fresh, iso_error *err)
{
    iso_confine_report scratch;
    if (!rep)
        rep = &scratch, fresh = true;
    if (fresh)
        rep->n = 0;
    for (size_t i = 0; i < n; i++) {
        size_t from = rep->n;
        if (list[i](cfg, rep, err) < 0)
            return -1;
        double t = iso_now();
        for (size_t k = from; k < rep->n; k++)
            rep->steps[k].done_at = t;
    }
    return 0;
}

static const confine_step early_steps[] = {
    step_close_fds, step_session,      step_environment,  step_no_core,
    step_cgroup,    step_capabilities, step_no_new_privs,
};

static const confine_step late_steps[] = {
    step_rlimits,
    step_landlock,
    step_seccomp,
};

int iso_confine_early(const iso_confine_config *cfg, iso_confine_report *rep,
                      iso_error *err)
{
    return run_steps(early_steps, sizeof early_steps / sizeof *early_steps, cfg,
                     rep, true, err);
}

int iso_confine_late(const iso_confine_config *cfg, iso_confine_report *rep,
                     iso_error *err)
{
    return run_steps(late_steps, sizeof late_steps / sizeof *late_steps, cfg,
                     rep, false, err);
}

int iso_confine_apply(const iso_confine_config *cfg, iso_confine_report *rep,
                      iso_error *err)
{
    return run_steps(steps, sizeof steps / sizeof *steps, cfg, rep, true, err);
}

int iso_confine_thread(const iso_confine_config *cfg, iso_confine_report *rep,
                       iso_error *err)
{
    if (!cfg->in_thread)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "confine: iso_confine_thread needs in_thread");
    carried.fd = -1;
    int rc = run_steps(thread_steps, sizeof thread_steps / sizeof *thread_steps,
                       cfg, rep, true, err);
    if (carried.fd >= 0) /* a step between failed: the thread's copy */
        close(carried.fd);
    carried.fd = -1;
    return rc;
}
