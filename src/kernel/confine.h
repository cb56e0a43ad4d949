/*
 * Confinement of a process cell's worker, applied in a freshly forked,
 * single-threaded child before any guest code runs.
 *
 * A flat, ordered list of steps (as nsjail's containProc); each records
 * whether its layer is active, missing (the kernel lacks it; the detail
 * says why) or not needed. A step that fails for any other reason fails
 * the whole call and the caller must exit: a half-confined worker must
 * never run guest code.
 *
 * Report layers, in order: close_fds, session, environment, rlimits,
 * cgroup, capabilities, no_new_privs, landlock_fs, landlock_net,
 * landlock_scope, seccomp, seccomp_net.
 */
#ifndef ISO_CONFINE_H
#define ISO_CONFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate.h"
#include "seccomp_cache.h"

typedef enum iso_step_state {
    ISO_STEP_ACTIVE,
    ISO_STEP_MISSING,
    ISO_STEP_NOT_NEEDED,
    ISO_STEP_AUDIT, /* learn mode: what it would refuse is logged, or the
                       layer is not applied when it cannot log (Landlock) */
} iso_step_state;

/* "active", "missing", "not needed", "audit". Static string. */
const char *iso_step_state_name(iso_step_state s);

/* A fact of a step that callers act on, as a field of its row next to
 * the detail text (kernel_spec asserts these, never the text): an
 * integer, a short string or a list of ports. */
typedef enum iso_fact_type {
    ISO_FACT_INT,
    ISO_FACT_STR,
    ISO_FACT_PORTS,
} iso_fact_type;

#define ISO_STEP_FACTS_MAX 3
#define ISO_FACT_PORTS_MAX 32

typedef struct iso_step_fact {
    const char *key; /* static string */
    iso_fact_type type;
    int64_t i;
    char s[32];
    uint16_t ports[ISO_FACT_PORTS_MAX]; /* the first ISO_FACT_PORTS_MAX */
    size_t n_ports;
} iso_step_fact;

typedef struct iso_step {
    const char *layer; /* static string, see the list above */
    iso_step_state state;
    char detail[256];
    double done_at; /* iso_now() when its step ended (spawn phases) */
    iso_step_fact facts[ISO_STEP_FACTS_MAX];
    size_t n_facts;
} iso_step;

#define ISO_CONFINE_MAX_STEPS 16

typedef struct iso_confine_report {
    iso_step steps[ISO_CONFINE_MAX_STEPS];
    size_t n;
} iso_confine_report;

typedef struct iso_fs_grant {
    const char *path; /* absolute; a missing path is skipped (counted) */
    bool read, write, exec;
    /* a directory that may be listed, its files granted one by one (what
     * is beneath it is readable only where another grant says so) */
    bool list;
} iso_fs_grant;

/* A trapped system call's number and name (the SIGSYS handler's table). */
typedef struct iso_trap_name {
    int nr;
    char name[32];
} iso_trap_name;

/* A worker's seccomp program, compiled by its host (which caches it by
 * what it depends on): the BPF and the names of the calls it traps. */
typedef struct iso_worker_filter {
    struct sock_fprog prog; /* filter malloc'd */
    iso_trap_name *traps;   /* malloc'd */
    size_t n_traps;
} iso_worker_filter;

typedef struct iso_confine_config {
    /* Every other fd is closed; 0, 1 and 2 are pointed at /dev/null unless
     * listed. death_note_fd is always kept. In a thread: the host fds the
     * thread keeps in its private table besides 0, 1 and 2. */
    const int *keep_fds;
    size_t n_keep;
    const char *const *env; /* the complete environment afterwards, "K=V" */
    size_t n_env;
    /* < 0: not set. processes > 0 also allows fork (pids.max counts). */
    int64_t mem_bytes, cpu_ms, open_files, output_bytes, processes;
    const char *cgroup_procs;   /* "0" is written there; NULL: none (missing) */
    /* instead of cgroup_procs: the cgroup's directory fd, closed by the
     * cgroup step (a guest must never hold it); born_in: the zygote
     * created the process in it already (clone3 CLONE_INTO_CGROUP) */
    bool cgroup_by_fd, cgroup_born_in;
    int cgroup_fd;
    const iso_fs_grant *grants; /* Landlock path-beneath rules */
    size_t n_grants;
    /* the first n_fixed_grants are the runtime's, resolved once per
     * process: a cell thread's cached ruleset is checked against what the
     * other grants' paths resolve to now, not these (landlock_cache.h) */
    size_t n_fixed_grants;
    const uint16_t *connect_ports; /* Landlock TCP connect allow-list */
    size_t n_ports;
    bool any_port; /* a net rule allows every port: connect unrestricted */
    const uint16_t *bind_ports; /* Landlock TCP bind allow-list */
    size_t n_bind_ports;
    bool bind_any_port; /* a bind rule allows every port */
    /* socket calls the net rules allow (ISO_SECCOMP_NET_*): listen(),
     * socket(AF_UNIX), NETLINK_ROUTE sockets; everything else of the
     * socket-family, tty-injection and SIGIO-owner filter is refused */
    unsigned net_calls;
    const char *const *deny_syscalls; /* added to the built-in list */
    size_t n_deny;
    int death_note_fd; /* "seccomp: <name>" is written here on a trap */
    /* iso_confine_thread only: seccomp answers EPERM instead of trapping;
     * the thread writes its tid to cgroup_threads (NULL: the cgroup layer
     * is missing, cgroup_missing says why). */
    bool in_thread;
    const char *cgroup_threads, *cgroup_missing;
    bool cgroup_joined; /* the thread is in cgroup_threads' cgroup already */
    bool compat;        /* the minimal seccomp list (compat mode) */
    /* learn mode: Landlock is not applied (it cannot audit) and seccomp's
     * deny list logs (SECCOMP_RET_LOG) instead of refusing */
    bool audit;
    /* a worker: the seccomp step loads this (compiled by the host from the
     * same fields) instead of building the filter itself */
    const iso_worker_filter *compiled;
    /* the BPF guard judges connects: Landlock handles TCP bind (and connect
     * only without the guard) */
    bool connect_by_bpf;
} iso_confine_config;

/*
 * Apply every step in order, recording each in rep (may be NULL):
 *
 *   close_fds       close_range around the kept fds; stdio -> /dev/null
 *   session         setsid()
 *   environment     clearenv, then exactly cfg->env
 *   rlimits         mem -> RLIMIT_AS, cpu_ms -> RLIMIT_CPU (seconds, rounded
 *                   up; soft, hard one second later: SIGXCPU then SIGKILL),
 *                   open_files -> RLIMIT_NOFILE, output_bytes ->
 *                   RLIMIT_FSIZE, RLIMIT_CORE = 0 always
 *   cgroup          join cfg->cgroup_procs
 *   capabilities    bounding, ambient, permitted, effective and inheritable
 *                   sets emptied (a root host forks a root worker)
 *   no_new_privs    PR_SET_NO_NEW_PRIVS (Landlock and seccomp need it)
 *   landlock_fs     every fs right of the ABI handled, only grants allowed
 *   landlock_net    ABI >= 4: TCP bind only to bind_ports (none: denied);
 *                   connect only to the ports (unless any_port)
 *   landlock_scope  ABI >= 6: abstract unix sockets and signals scoped
 *   seccomp         the deny list traps (SIGSYS handler writes the death
 *                   note and _exit(159)); clone3 -> ENOSYS; foreign
 *                   architectures and x32 kill the process (SIGSYS)
 *   seccomp_net     EPERM (never a trap) for: socket() of a family other
 *                   than IPv4/IPv6 (AF_UNIX and NETLINK_ROUTE only as
 *                   net_calls allows), listen() without a bind rule, the
 *                   TIOCSTI/TIOCLINUX ioctls, and aiming SIGIO anywhere
 *                   (F_SETOWN, F_SETOWN_EX, F_SETSIG, O_ASYNC, FIOASYNC,
 *                   FIOSETOWN, SIOCSPGRP)
 *
 * A trap while SIGSYS is blocked cannot run the handler: the kernel kills
 * the process with SIGSYS and no note is written. glibc's pthread_create
 * and posix_spawn, and CPython's subprocess, block every signal around
 * clone/vfork, so a denied process creation usually ends that way. Treat
 * any death by SIGSYS as a seccomp stop, named when a note came.
 *
 * Returns 0, or -1 with err (ISO_INVALID_ARGUMENT for a bad config,
 * ISO_CRASHED for a failed system call). Blocks only briefly. Not
 * thread-safe and not reversible: call it once, in the child.
 */
int iso_confine_apply(const iso_confine_config *cfg, iso_confine_report *rep,
                      iso_error *err);

/*
 * The same steps in two halves, for a worker forked ahead of its policy
 * (the process pool): iso_confine_early runs what no policy changes
 * (close_fds, session, environment, rlimits' core=0 without a row, cgroup
 * (by fd or born in it), capabilities, no_new_privs); iso_confine_late
 * what the policy decides (rlimits, landlock_*, seccomp*), appending to
 * the same report. Guest code may run only after both. cfg->env, keep_fds
 * and the cgroup fields are read by early, the rest by late.
 */
int iso_confine_early(const iso_confine_config *cfg, iso_confine_report *rep,
                      iso_error *err);
int iso_confine_late(const iso_confine_config *cfg, iso_confine_report *rep,
                     iso_error *err);

/*
 * Confine the calling thread only (a sub-interpreter cell's thread, before
 * its first guest code): cgroup (its threaded cgroup), fd_table (a
 * private copy of the fd table, unshare(CLONE_FILES), in which every fd
 * but 0, 1, 2 and keep_fds is closed), noexec (with a writable grant: a
 * mount namespace of its own where each writable grant is noexec, as
 * Landlock does not mediate mmap(PROT_EXEC); missing without
 * CAP_SYS_ADMIN), no_new_privs, landlock_fs,
 * landlock_net, landlock_scope, seccomp (also denying pidfd_getfd, kcmp
 * and memfd_create, in compat mode too), as above but with
 * ERRNO actions (EPERM for the deny list, ENOSYS for foreign
 * architectures): a thread killed while holding the GIL would stop every
 * cell. Threads the cell starts later inherit all of it. cfg->in_thread
 * must be set. Not reversible.
 */
int iso_confine_thread(const iso_confine_config *cfg, iso_confine_report *rep,
                       iso_error *err);

/* The calling thread joins the threaded cgroup whose cgroup.threads file
 * is threads_path (a warm cell's thread, ahead of its confinement). 0, or
 * -1 with err (ISO_CRASHED). */
int iso_confine_join_cgroup(const char *threads_path, iso_error *err);

/* Append one iso_confinement_add row per step of rep, with scope. */
int iso_confine_rows(const iso_confine_report *rep, const char *scope,
                     iso_value *list);

/* cfg's net fields from plan's net rules: Landlock's connect and bind
 * ports, and net_calls. The port lists are malloc'd: release them with
 * iso_confine_net_free. 0, or -1 with err (ISO_MEMORY). */
int iso_confine_net_from_plan(iso_confine_config *cfg, const iso_plan *plan,
                              iso_error *err);
void iso_confine_net_free(iso_confine_config *cfg);

/* The worker filter cfg asks for (compat, processes, net_calls,
 * deny_syscalls; not in_thread), compiled with libseccomp once per
 * distinct key (~0.8 ms) and copied from the cache after. The host does
 * this for its workers: a worker then only installs it. 0, or -1 with err
 * (ISO_INVALID_ARGUMENT: an unknown name in the deny list). Thread-safe.
 * Free with iso_worker_filter_free. */
int iso_confine_worker_filter(const iso_confine_config *cfg,
                              iso_worker_filter *out, iso_error *err);
void iso_worker_filter_free(iso_worker_filter *f);

/* Why this kernel cannot load seccomp filters, or NULL when it can. */
const char *iso_seccomp_missing(void);

/* The exit status of a worker whose seccomp handler caught a denied call. */
#define ISO_CONFINE_SECCOMP_EXIT 159

#endif
