/*
 * The confinement steps on the process (or thread) itself: session,
 * environment, rlimits, cgroup (a worker's own, or a cell thread's
 * threaded one), capabilities and no_new_privs.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine_steps.h"

/* A new session detaches the worker from the host's terminal and process
 * group: terminal signals (^C) and job control no longer reach it. */
int iso_step_session(const iso_confine_config *cfg, iso_confine_report *rep,
                     iso_error *err)
{
    (void)cfg;
    if (setsid() >= 0) {
        iso_step_add(rep, "session", ISO_STEP_ACTIVE, "new session %ld",
                     (long)getpid());
        return 0;
    }
    if (errno == EPERM && getsid(0) == getpid()) {
        iso_step_add(rep, "session", ISO_STEP_NOT_NEEDED,
                     "already leads its own session");
        return 0;
    }
    return iso_confine_fail(err, "setsid");
}

int iso_step_environment(const iso_confine_config *cfg, iso_confine_report *rep,
                         iso_error *err)
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
            return iso_confine_fail(err, "setenv %s", name);
    }
    iso_step_add(rep, "environment", ISO_STEP_ACTIVE,
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
        return iso_confine_fail(err, "getrlimit %s", name);
    want.rlim_max = hard < cur.rlim_max ? (rlim_t)hard : cur.rlim_max;
    want.rlim_cur = soft < want.rlim_max ? (rlim_t)soft : want.rlim_max;
    if (setrlimit(res, &want) < 0)
        return iso_confine_fail(err, "setrlimit %s", name);
    return 0;
}

static void detail_append(char *d, size_t n, const char *name, int64_t v,
                          const char *unit)
{
    size_t len = strlen(d);
    snprintf(d + len, n - len, " %s=%lld%s", name, (long long)v, unit);
}

int iso_step_rlimits(const iso_confine_config *cfg, iso_confine_report *rep,
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
    iso_step_add(rep, "rlimits", ISO_STEP_ACTIVE, "%s", d);
    return 0;
}

/* The early half's rlimit: no core files, whatever the policy (no row:
 * the late half's rlimits row says core=0 with the rest). */
int iso_step_no_core(const iso_confine_config *cfg, iso_confine_report *rep,
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
        return iso_confine_fail(err, "join its cgroup");
    iso_step_add(rep, "cgroup", ISO_STEP_ACTIVE, "%s",
                 cfg->cgroup_born_in ? "created in its own (CLONE_INTO_CGROUP)"
                                     : "joined its own");
    return 0;
}

int iso_step_cgroup(const iso_confine_config *cfg, iso_confine_report *rep,
                    iso_error *err)
{
    if (cfg->cgroup_by_fd)
        return cgroup_by_fd(cfg, rep, err);
    if (!cfg->cgroup_procs) {
        iso_step_add(rep, "cgroup", ISO_STEP_MISSING,
                     "no cgroup v2 directory from the host");
        return 0;
    }
    int fd = open(cfg->cgroup_procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return iso_confine_fail(err, "open %s", cfg->cgroup_procs);
    ssize_t w = write(fd, "0", 1);
    int e = errno;
    close(fd);
    errno = e;
    if (w != 1)
        return iso_confine_fail(err, "join %s", cfg->cgroup_procs);
    const char *end = strrchr(cfg->cgroup_procs, '/');
    int len = end ? (int)(end - cfg->cgroup_procs) : 0;
    iso_step_add(rep, "cgroup", ISO_STEP_ACTIVE, "joined %.*s", len,
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
        return iso_confine_fail(err, "open %s", threads_path);
    ssize_t w = write(fd, tid, strlen(tid));
    int e = errno;
    close(fd);
    errno = e;
    if (w != (ssize_t)strlen(tid))
        return iso_confine_fail(err, "join %s", threads_path);
    return 0;
}

int iso_step_thread_cgroup(const iso_confine_config *cfg,
                           iso_confine_report *rep, iso_error *err)
{
    if (!cfg->cgroup_threads) {
        iso_step_add(rep, "cgroup", ISO_STEP_MISSING, "%s",
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
    iso_step_add(rep, "cgroup", ISO_STEP_ACTIVE, "thread joined %.*s", len,
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
            return iso_confine_fail(
                err, "drop capability %d from the bounding set", c);
        dropped++;
    }
    return dropped;
}

/* A root host forks a root worker with every capability: CAP_NET_ADMIN,
 * CAP_SYS_RAWIO, CAP_MKNOD... reach past Landlock and the syscall list. */
int iso_step_capabilities(const iso_confine_config *cfg,
                          iso_confine_report *rep, iso_error *err)
{
    (void)cfg;
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0)
        return iso_confine_fail(err, "capget");
    bool held =
        d[0].permitted | d[1].permitted | d[0].inheritable | d[1].inheritable;
    if (!held) {
        iso_step_add(rep, "capabilities", ISO_STEP_NOT_NEEDED,
                     "no capabilities held");
        return 0;
    }
    int dropped = drop_bounding_set(d[0].effective & (1U << CAP_SETPCAP), err);
    if (dropped < 0)
        return -1;
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) < 0)
        return iso_confine_fail(err, "capset");
    iso_step_add(rep, "capabilities", ISO_STEP_ACTIVE,
                 "all dropped (%d from the bounding set)", dropped);
    return 0;
}

/* Landlock and unprivileged seccomp filters require no_new_privs. */
int iso_step_no_new_privs(const iso_confine_config *cfg,
                          iso_confine_report *rep, iso_error *err)
{
    (void)cfg;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) {
        iso_step_add(rep, "no_new_privs", ISO_STEP_ACTIVE, "set");
        return 0;
    }
    if (errno == EINVAL) {
        iso_step_add(rep, "no_new_privs", ISO_STEP_MISSING,
                     "kernel before 3.5 has no PR_SET_NO_NEW_PRIVS");
        return 0;
    }
    return iso_confine_fail(err, "prctl(PR_SET_NO_NEW_PRIVS)");
}
