/*
 * The seccomp step: the deny lists (full, compat, and the cell threads'
 * extra), the SIGSYS handler that writes a worker's death note, and the
 * filters: built and loaded by a process, compiled by the host for its
 * workers (cached, seccomp_cache.h), compiled once per key for cell
 * threads. seccomp_net's rules are in confine_seccomp_net.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine_steps.h"
#include "seccomp_cache.h"

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
    if (cfg->audit) /* learn mode: logged (the kernel's audit log), allowed */
        return SCMP_ACT_LOG;
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

static int net_call_rules(scmp_filter_ctx ctx, const iso_confine_config *cfg,
                          iso_error *err)
{
    int rc = iso_seccomp_net_rules(ctx, cfg->net_calls);
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
        return iso_confine_fail(err, "install the SIGSYS handler");
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
        return iso_confine_fail(err, "seccomp: load the compiled filter");
    return 0;
}

/* libseccomp's BPF for ctx, read back from a memfd (libseccomp 2.5 can
 * export only to an fd). */
static int export_program(scmp_filter_ctx ctx, struct sock_fprog *prog,
                          iso_error *err)
{
    int fd = memfd_create("iso-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return iso_confine_fail(err, "memfd_create for the seccomp program");
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
                           .audit = cfg->audit,
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
    return rc < 0 ? iso_confine_fail(err, "seccomp load") : 0;
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
                           .audit = cfg->audit,
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

int iso_step_seccomp(const iso_confine_config *cfg, iso_confine_report *rep,
                     iso_error *err)
{
    const char *missing = iso_seccomp_missing();
    if (missing) {
        iso_step_add(rep, "seccomp", ISO_STEP_MISSING, "%s", missing);
        return 0;
    }
    size_t denied = 0;
    if ((cfg->in_thread  ? load_thread_filter(cfg, &denied, err)
         : cfg->compiled ? load_compiled_filter(cfg, &denied, err)
                         : load_process_filter(cfg, &denied, err)) < 0)
        return -1;
    iso_step_add(rep, "seccomp", cfg->audit ? ISO_STEP_AUDIT : ISO_STEP_ACTIVE,
                 "%s list: %zu system calls %s; clone3 -> ENOSYS; %s; foreign "
                 "and x32 system calls %s",
                 cfg->compat ? "compat" : "full", denied,
                 cfg->audit       ? "logged and allowed (learn mode)"
                 : cfg->in_thread ? "fail with EPERM"
                                  : "trap",
                 cfg->processes > 0 ? "fork allowed" : "no process creation",
                 cfg->in_thread ? "fail with ENOSYS" : "kill");
    iso_step_fact_str(rep, "list", cfg->compat ? "compat" : "full");
    iso_step_fact_int(rep, "denied", (int64_t)denied);
    unsigned calls = cfg->net_calls;
    iso_step_add(rep, "seccomp_net", ISO_STEP_ACTIVE,
                 "EPERM for socket() other than TCP/UDP over IPv4/IPv6%s%s%s; "
                 "TIOCSTI, "
                 "TIOCLINUX; F_SETOWN(_EX), F_SETSIG, O_ASYNC, FIOASYNC, "
                 "FIOSETOWN, SIOCSPGRP",
                 calls & ISO_SECCOMP_NET_UNIX ? "/unix (a unix: rule)" : "",
                 calls & ISO_SECCOMP_NET_NETLINK ? "/NETLINK_ROUTE" : "",
                 calls & ISO_SECCOMP_NET_LISTEN ? ""
                                                : "; listen() (no bind rule)");
    iso_step_fact_str(rep, "listen",
                      calls & ISO_SECCOMP_NET_LISTEN ? "allowed" : "denied");
    return 0;
}
