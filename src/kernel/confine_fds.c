/*
 * The confinement steps on what a worker or a cell thread can reach
 * through its file descriptors and mounts: close_fds (a process), and a
 * cell thread's fd_table (its own copy of the fd table) and noexec (its
 * own mount namespace, writable grants mounted noexec).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine_steps.h"
#include "landlock_cache.h"

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
        return iso_confine_fail(err, "opendir /proc/thread-self/fd");
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
                                       : iso_confine_fail(err, "close_range");
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
        return iso_confine_fail(err, "open /dev/null");
    for (int fd = 0; fd <= 2; fd++) {
        if (fd_kept(cfg, -1, fd))
            continue;
        (*redirected)++;
        if (fd != nul && dup2(nul, fd) < 0) {
            iso_confine_fail(err, "dup2 /dev/null to %d", fd);
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

int iso_step_close_fds(const iso_confine_config *cfg, iso_confine_report *rep,
                       iso_error *err)
{
    size_t kept;
    int redirected = 0;
    if (count_kept(cfg, &kept, err) < 0 || close_unkept(cfg, -1, err) < 0 ||
        stdio_to_null(cfg, &redirected, err) < 0)
        return -1;
    iso_step_add(rep, "close_fds", ISO_STEP_ACTIVE,
                 "kept %zu fd(s); %d of stdin/stdout/stderr on /dev/null", kept,
                 redirected);
    return 0;
}

/* A cell thread shares the host's fd table: a guest could use the zygote's
 * control socket, another cell's frames socket or any file the host has
 * open. The thread takes a copy of the table for itself, then closes in it
 * everything but stdio and the few fds it needs (keep_fds). Threads the
 * guest starts share this table; the host's is never touched.
 * The cached Landlock ruleset is found (or built) first, and the cache
 * stays locked until the copy is taken: its fd, a host fd, is then the
 * ruleset's in the copy too, kept until the landlock step closes it. */
int iso_step_fd_table(const iso_confine_config *cfg, iso_confine_report *rep,
                      iso_error *err)
{
    size_t kept;
    if (count_kept(cfg, &kept, err) < 0)
        return -1;
    iso_landlock_cache_lock();
    int rc = iso_thread_ruleset_hold(cfg, err);
    if (rc == 0 && unshare(CLONE_FILES) < 0)
        rc = iso_confine_fail(err, "unshare(CLONE_FILES)");
    iso_landlock_cache_unlock();
    if (rc < 0) {
        iso_thread_ruleset_forget(); /* the cache's, in the host's table */
        return -1;
    }
    if (close_unkept(cfg, iso_thread_ruleset_fd(), err) < 0)
        return -1;
    iso_step_add(rep, "fd_table", ISO_STEP_ACTIVE,
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
                   : iso_confine_fail(err, "open_tree %s", path);
    struct iso_mount_attr a = {.attr_set = ISO_MOUNT_ATTR_NOEXEC};
    int rc = (int)syscall(SYS_mount_setattr, fd, "",
                          AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a);
    if (rc == 0)
        rc = (int)syscall(SYS_move_mount, fd, "", AT_FDCWD, path,
                          MOVE_MOUNT_F_EMPTY_PATH);
    int e = errno;
    close(fd);
    errno = e;
    return rc < 0 ? iso_confine_fail(err, "noexec mount over %s", path) : 1;
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
        return iso_confine_fail(err, "re-enter the working directory");
    iso_step_add(rep, "noexec", ISO_STEP_ACTIVE,
                 "own mount namespace: %zu writable path(s) mounted noexec",
                 done);
    return 0;
}

/* Landlock does not mediate mmap(PROT_EXEC) of a file the thread may read:
 * a .so a guest writes into a path its policy makes writable and readable
 * could be dlopened. The thread takes its own mount namespace (host mounts
 * still propagate in, none of its own out), in which every writable grant
 * is noexec: the kernel then refuses to map code from there (EPERM). */
int iso_step_noexec(const iso_confine_config *cfg, iso_confine_report *rep,
                    iso_error *err)
{
    size_t writable = 0, done = 0;
    for (size_t i = 0; i < cfg->n_grants; i++)
        writable += holds_code(&cfg->grants[i]);
    if (writable == 0) {
        iso_step_add(rep, "noexec", ISO_STEP_NOT_NEEDED, "no writable path");
        return 0;
    }
    for (size_t i = 0; i < cfg->n_grants; i++)
        if (cfg->grants[i].write && strcmp(cfg->grants[i].path, "/") == 0) {
            iso_step_add(rep, "noexec", ISO_STEP_MISSING,
                         "/ itself is writable: the root cannot be remounted "
                         "noexec for one thread");
            return 0;
        }
    if (unshare(CLONE_NEWNS) < 0) {
        if (errno != EPERM)
            return iso_confine_fail(err, "unshare(CLONE_NEWNS)");
        iso_step_add(
            rep, "noexec", ISO_STEP_MISSING,
            "no CAP_SYS_ADMIN for a mount namespace: code written to a "
            "writable path can be loaded");
        return 0;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        return iso_confine_fail(err, "make the thread's mounts slaves");
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
