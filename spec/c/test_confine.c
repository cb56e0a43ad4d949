/*
 * Worker confinement, for real: each case forks a child that applies a
 * config and then tries things; the parent judges by exit status, the
 * death note and what the child wrote to its result pipe. Needs root for
 * the cgroup and capability parts (skipped, with the reason, otherwise);
 * Landlock net/scope parts are skipped only on kernels without them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "confine.h"
#include "landlock.h"
#include "cgroup.h"
#include "check.h"
#include "seccomp_cache.h"

typedef void (*child_fn)(int out, const iso_confine_report *rep, void *arg);

typedef struct run {
    int status;     /* from waitpid */
    char out[8192]; /* what the child wrote to its result pipe */
    char note[256]; /* the death note */
} run;

static int landlock_abi; /* < 0: none */

static void read_all(int fd, char *buf, size_t n)
{
    size_t len = 0;
    ssize_t got;
    while (len + 1 < n && (got = read(fd, buf + len, n - 1 - len)) != 0)
        if (got > 0)
            len += (size_t)got;
        else if (errno != EINTR)
            break;
    buf[len] = '\0';
}

/* Run fn(out, arg) in a child (whose threads may end up confined); its
 * output into buf. */
static void in_child(void (*fn)(int out, void *arg), void *arg, char *buf,
                     size_t n)
{
    int out[2];
    buf[0] = '\0';
    CHECK(pipe(out) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(out[0]);
        fn(out[1], arg);
        _exit(0);
    }
    close(out[1]);
    read_all(out[0], buf, n);
    close(out[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
}

static iso_confine_config base_config(void)
{
    iso_confine_config c;
    memset(&c, 0, sizeof c);
    c.mem_bytes = c.cpu_ms = c.open_files = c.output_bytes = c.processes = -1;
    c.death_note_fd = -1;
    return c;
}

/* The child's side: keep its result pipe, apply, run fn. */
static void child_main(const iso_confine_config *cfg, int out, int note,
                       child_fn fn, void *arg)
{
    int keep[16];
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_keep && n < 15; i++)
        keep[n++] = cfg->keep_fds[i];
    keep[n++] = out;
    iso_confine_config c = *cfg;
    c.keep_fds = keep;
    c.n_keep = n;
    c.death_note_fd = note;
    iso_confine_report rep;
    iso_error err = {0};
    if (iso_confine_apply(&c, &rep, &err) < 0) {
        say(out, "apply: %s: %s", iso_kind_name(err.kind), err.message);
        _exit(2);
    }
    fn(out, &rep, arg);
    _exit(0);
}

static void run_confined(const iso_confine_config *cfg, child_fn fn, void *arg,
                         run *r)
{
    int out[2], note[2];
    memset(r, 0, sizeof *r);
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(note, O_CLOEXEC) < 0) {
        CHECK(!"pipe2");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(out[0]);
        close(note[0]);
        child_main(cfg, out[1], note[1], fn, arg);
    }
    close(out[1]);
    close(note[1]);
    read_all(out[0], r->out, sizeof r->out);
    read_all(note[0], r->note, sizeof r->note);
    close(out[0]);
    close(note[0]);
    CHECK(pid > 0 && waitpid(pid, &r->status, 0) == pid);
}

static bool exited_with(const run *r, int code)
{
    return WIFEXITED(r->status) && WEXITSTATUS(r->status) == code;
}

/* ---- the report --------------------------------------------------------- */

static void write_report(int out, const iso_confine_report *rep, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < rep->n; i++)
        say(out, "%s|%s|%s\n", rep->steps[i].layer,
            iso_step_state_name(rep->steps[i].state), rep->steps[i].detail);
}

/* Check the step lines; returns what follows them. */
static const char *check_report(const char *out, const char *cgroup_state)
{
    const char *caps = geteuid() == 0 ? "active" : "not needed";
    const char *net = landlock_abi >= 4 ? "active" : "missing";
    const char *scope = landlock_abi >= 6 ? "active" : "missing";
    const char *fs = landlock_abi >= 1 ? "active" : "missing";
    const char *want[][2] = {
        {"close_fds", "active"},    {"session", "active"},
        {"environment", "active"},  {"rlimits", "active"},
        {"cgroup", cgroup_state},   {"capabilities", caps},
        {"no_new_privs", "active"}, {"landlock_fs", fs},
        {"landlock_net", net},      {"landlock_scope", scope},
        {"seccomp", "active"},      {"seccomp_net", "active"},
    };
    const char *p = out;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char line[64];
        snprintf(line, sizeof line, "%s|%s|", want[i][0], want[i][1]);
        CHECK_EQ_INT(strncmp(p, line, strlen(line)), 0);
        if (strncmp(p, line, strlen(line)) != 0)
            fprintf(stderr, "  expected %s at: %.80s\n", line, p);
        p = strchr(p, '\n');
        if (!p)
            return "";
        p++;
    }
    return p;
}

static void test_state_names(void)
{
    CHECK_EQ_STR(iso_step_state_name(ISO_STEP_ACTIVE), "active");
    CHECK_EQ_STR(iso_step_state_name(ISO_STEP_MISSING), "missing");
    CHECK_EQ_STR(iso_step_state_name(ISO_STEP_NOT_NEEDED), "not needed");
}

static void test_report_without_cgroup(void)
{
    iso_confine_config c = base_config();
    uint16_t ports[] = {80, 443};
    c.connect_ports = ports;
    c.n_ports = 2;
    run r;
    run_confined(&c, write_report, NULL, &r);
    CHECK(exited_with(&r, 0));
    CHECK_EQ_STR(check_report(r.out, "missing"), ""); /* no more steps */
    CHECK_HAS_STR(r.out, "connect only to port(s) [80,443]");
    printf("%s", r.out);
}

static void join_report(int out, const iso_confine_report *rep, void *arg)
{
    write_report(out, rep, arg);
    char buf[512] = "";
    int fd = open("/proc/self/cgroup", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    say(out, "cgroup file: %s", buf);
}

/* The cgroup step joins the given cgroup: /proc/self/cgroup says so. */
static void test_report_with_cgroup(void)
{
    char mount[ISO_PATH_MAX], procs[ISO_PATH_MAX + 16], want[ISO_PATH_MAX];
    iso_cgroup cg;
    iso_error err = {0};
    if (iso_cgroup_mount(mount, sizeof mount, &err) < 0 ||
        iso_cgroup_create("confine", -1, -1, &cg, &err) < 0) {
        printf("skip: no usable cgroup v2 (%s)\n", err.message);
        return;
    }
    iso_cgroup_procs_path(&cg, procs, sizeof procs);
    iso_fs_grant grants[] = {{"/proc", true, false, false, false}};
    iso_confine_config c = base_config();
    c.cgroup_procs = procs;
    c.grants = grants;
    c.n_grants = 1;
    run r;
    run_confined(&c, join_report, NULL, &r);
    CHECK(exited_with(&r, 0));
    CHECK_HAS_STR(check_report(r.out, "active"), "cgroup file: ");
    snprintf(want, sizeof want, "0::%s\n", cg.path + strlen(mount));
    CHECK_HAS_STR(r.out, want);
    CHECK_EQ_INT(iso_cgroup_remove(&cg, &err), 0);
}

/* ---- seccomp ------------------------------------------------------------ */

enum attempt {
    TRY_EXECVE,
    TRY_EXECVEAT,
    TRY_FORK,
    TRY_VFORK,
    TRY_UNSHARE_USER,
    TRY_CLONE_NEWNET,
    TRY_PTRACE,
    TRY_MOUNT,
    TRY_IO_URING,
    TRY_BPF,
    TRY_PERSONALITY,
    TRY_UNAME, /* denied by the config, not built in */
    TRY_PIDFD_GETFD,
};

static void attempt(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
    char *argv[] = {"/bin/true", NULL};
    struct utsname_buf {
        char b[6 * 65];
    } u;
    switch ((enum attempt)(intptr_t)arg) {
    case TRY_EXECVE:
        execve("/bin/true", argv, argv + 1);
        break;
    case TRY_EXECVEAT:
        syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, argv + 1, 0);
        break;
    case TRY_FORK:
        if (fork() == 0)
            _exit(0);
        break;
    case TRY_VFORK:
        if (syscall(SYS_vfork) == 0)
            _exit(0);
        break;
    case TRY_UNSHARE_USER:
        unshare(CLONE_NEWUSER);
        break;
    case TRY_CLONE_NEWNET:
        if (syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0) == 0)
            _exit(0);
        break;
    case TRY_PTRACE:
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        break;
    case TRY_MOUNT:
        mount("none", "/mnt", "tmpfs", 0, NULL);
        break;
    case TRY_IO_URING:
        syscall(SYS_io_uring_setup, 4, &u);
        break;
    case TRY_BPF:
        syscall(SYS_bpf, 0, &u, 0);
        break;
    case TRY_PERSONALITY:
        syscall(SYS_personality, 0xffffffff);
        break;
    case TRY_UNAME:
        syscall(SYS_uname, &u);
        break;
    case TRY_PIDFD_GETFD:
        syscall(SYS_pidfd_getfd, 0, 0, 0);
        break;
    }
    say(out, "survived: %s", strerror(errno));
}

static void expect_trap(enum attempt a, int64_t processes, const char *note)
{
    const char *deny[] = {"uname"};
    iso_confine_config c = base_config();
    c.processes = processes;
    c.deny_syscalls = deny;
    c.n_deny = 1;
    run r;
    run_confined(&c, attempt, (void *)(intptr_t)a, &r);
    CHECK(exited_with(&r, ISO_CONFINE_SECCOMP_EXIT));
    CHECK_EQ_STR(r.note, note);
    if (!exited_with(&r, ISO_CONFINE_SECCOMP_EXIT))
        fprintf(stderr, "  status %#x, out: %s\n", r.status, r.out);
}

static void test_denied_syscalls(void)
{
    expect_trap(TRY_EXECVE, -1, "seccomp: execve");
    expect_trap(TRY_EXECVEAT, -1, "seccomp: execveat");
    expect_trap(TRY_FORK, 0, "seccomp: clone"); /* glibc forks with clone */
    expect_trap(TRY_VFORK, -1, "seccomp: vfork");
    expect_trap(TRY_UNSHARE_USER, 4, "seccomp: unshare");
    expect_trap(TRY_CLONE_NEWNET, 4, "seccomp: clone");
    expect_trap(TRY_PTRACE, -1, "seccomp: ptrace");
    expect_trap(TRY_MOUNT, -1, "seccomp: mount");
    expect_trap(TRY_IO_URING, -1, "seccomp: io_uring_setup");
    expect_trap(TRY_BPF, -1, "seccomp: bpf");
    expect_trap(TRY_PERSONALITY, -1, "seccomp: personality");
    expect_trap(TRY_UNAME, -1, "seccomp: uname");
    expect_trap(TRY_PIDFD_GETFD, -1, "seccomp: pidfd_getfd");
}

static void *thread_body(void *arg)
{
    return arg;
}

/* processes 0: a thread starts (clone with CLONE_THREAD, after clone3 says
 * ENOSYS), then fork traps. */
static void thread_then_fork(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
    (void)arg;
    pthread_t t;
    void *res = NULL;
    long clone3 = syscall(SYS_clone3, NULL, 0);
    say(out, "clone3=%ld/%s\n", clone3, clone3 < 0 ? strerror(errno) : "");
    int rc = pthread_create(&t, NULL, thread_body, (void *)42);
    if (rc == 0)
        pthread_join(t, &res);
    say(out, "thread=%d/%ld\n", rc, (long)(intptr_t)res);
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    int st = 0;
    waitpid(pid, &st, 0);
    say(out, "fork=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static bool killed_by_sigsys(const run *r)
{
    return WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGSYS;
}

/* A policy may name built-in or conditional calls again: "clone" then
 * traps every clone (threads too), duplicates are harmless, and clone3
 * stays ENOSYS. pthread_create blocks every signal around clone, and a
 * trap while SIGSYS is blocked kills with SIGSYS without our handler: the
 * cell stops, but there is no death note. */
static void test_policy_deny_overlaps(void)
{
    const char *deny[] = {"clone", "execve", "clone3", "execve"};
    iso_confine_config c = base_config();
    c.processes = 2;
    c.deny_syscalls = deny;
    c.n_deny = 4;
    run r;
    run_confined(&c, thread_then_fork, NULL, &r);
    CHECK_HAS_STR(r.out, "clone3=-1/Function not implemented\n");
    CHECK(strstr(r.out, "thread=") == NULL);
    CHECK(killed_by_sigsys(&r));
    CHECK_EQ_STR(r.note, "");
}

static void spawn_true(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
    (void)arg;
    char *argv[] = {"/bin/true", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, argv + 1);
    say(out, "survived: %d", rc);
}

/* posix_spawn (and CPython's _posixsubprocess) also block signals around
 * their clone/vfork: the same anonymous SIGSYS death. */
static void test_spawn_stops_without_note(void)
{
    iso_confine_config c = base_config();
    c.processes = 0;
    run r;
    run_confined(&c, spawn_true, NULL, &r);
    CHECK(killed_by_sigsys(&r));
    CHECK_EQ_STR(r.note, "");
    CHECK_EQ_STR(r.out, "");
}

static void test_threads_and_processes(void)
{
    iso_confine_config c = base_config();
    c.processes = 0;
    run r;
    run_confined(&c, thread_then_fork, NULL, &r);
    CHECK_HAS_STR(r.out, "clone3=-1/Function not implemented\n");
    CHECK_HAS_STR(r.out, "thread=0/42\n");
    CHECK(strstr(r.out, "fork=") == NULL);
    CHECK(exited_with(&r, ISO_CONFINE_SECCOMP_EXIT));
    CHECK_EQ_STR(r.note, "seccomp: clone");

    c.processes = 2; /* processes > 0: fork allowed (pids.max counts) */
    run_confined(&c, thread_then_fork, NULL, &r);
    CHECK_HAS_STR(r.out, "thread=0/42\n");
    CHECK_HAS_STR(r.out, "fork=7\n");
    CHECK(exited_with(&r, 0));
    CHECK_EQ_STR(r.note, "");
}

static void *x32_call(void *arg)
{
    (void)arg;
#if defined(__x86_64__)
    syscall(0x40000000L | SYS_getpid);
#endif
    return NULL;
}

/* x32 numbers and i386 (int 0x80) calls end the process (bad arch); from
 * a thread too: killing only the thread could leave a lock held. */
static void foreign_abi(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
#if defined(__x86_64__)
    long r;
    pthread_t t;
    if (arg == (void *)2) {
        r = pthread_create(&t, NULL, x32_call, NULL);
        if (r == 0)
            pthread_join(t, NULL);
    } else if (arg) {
        __asm__ volatile("int $0x80"
                         : "=a"(r)
                         : "a"(20L)
                         : "memory", "r8", "r9", "r10", "r11");
    } else {
        r = syscall(0x40000000L | SYS_getpid);
    }
    say(out, "survived: %ld", r);
#else
    (void)out;
    (void)arg;
#endif
}

static void plain_int80(int out, void *arg)
{
    foreign_abi(out, NULL, arg);
}

static void test_foreign_abis(void)
{
#if defined(__x86_64__)
    iso_confine_config c = base_config();
    run r;
    run_confined(&c, foreign_abi, NULL, &r);
    CHECK(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGSYS);
    CHECK_EQ_STR(r.out, "");
    run_confined(&c, foreign_abi, (void *)2, &r);
    CHECK(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGSYS);
    CHECK_EQ_STR(r.out, "");

    /* int 0x80 only reaches seccomp where IA32 emulation is on: probe */
    int p[2];
    char buf[64] = "";
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        plain_int80(p[1], (void *)1);
        _exit(0);
    }
    close(p[1]);
    read_all(p[0], buf, sizeof buf);
    close(p[0]);
    waitpid(pid, NULL, 0);
    if (strncmp(buf, "survived: ", 10) != 0 || atol(buf + 10) <= 0) {
        printf("skip: int 0x80 (no IA32 emulation: %s)\n", buf);
        return;
    }
    run_confined(&c, foreign_abi, (void *)1, &r);
    CHECK(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGSYS);
#else
    printf("skip: foreign ABI checks are for x86_64\n");
#endif
}

/* The SIGSYS handler cannot be replaced (it writes the death note). */
static void replace_sigsys(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
    (void)arg;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    int set = sigaction(SIGSYS, &sa, NULL);
    int e = errno;
    int query = sigaction(SIGSYS, NULL, &old);
    say(out, "set=%d/%d query=%d", set, e, query);
}

static void test_sigsys_handler_kept(void)
{
    iso_confine_config c = base_config();
    run r;
    run_confined(&c, replace_sigsys, NULL, &r);
    char want[64];
    snprintf(want, sizeof want, "set=-1/%d query=0", EPERM);
    CHECK_EQ_STR(r.out, want);
}

static void nothing(int out, const iso_confine_report *rep, void *arg)
{
    (void)out;
    (void)rep;
    (void)arg;
}

static void test_bad_configs(void)
{
    const char *deny[] = {"no_such_syscall"};
    iso_confine_config c = base_config();
    c.deny_syscalls = deny;
    c.n_deny = 1;
    run r;
    run_confined(&c, nothing, NULL, &r);
    CHECK(exited_with(&r, 2));
    CHECK_HAS_STR(r.out, "apply: invalid_argument");
    CHECK_HAS_STR(r.out, "no_such_syscall");

    const char *env[] = {"NOEQUALS"};
    c = base_config();
    c.env = env;
    c.n_env = 1;
    run_confined(&c, nothing, NULL, &r);
    CHECK(exited_with(&r, 2));
    CHECK_HAS_STR(r.out, "apply: invalid_argument");

    int bad_keep[] = {900};
    c = base_config();
    c.keep_fds = bad_keep;
    c.n_keep = 1;
    run_confined(&c, nothing, NULL, &r);
    CHECK(exited_with(&r, 2));
    CHECK_HAS_STR(r.out, "kept fd 900 is not open");
}

/* No capability is left; root-only calls (sethostname, here with the
 * current name so that a failing test changes nothing) fail. */
static void capabilities(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
    (void)arg;
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    char name[256] = "";
    memset(d, 0xff, sizeof d);
    syscall(SYS_capget, &h, d);
    gethostname(name, sizeof name - 1);
    int rc = sethostname(name, strlen(name));
    say(out, "eff=%x/%x perm=%x/%x bset_sys_admin=%d sethostname=%d",
        d[0].effective, d[1].effective, d[0].permitted, d[1].permitted,
        prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0), rc < 0 ? errno : 0);
}

static void test_capabilities(void)
{
    if (geteuid() != 0) {
        printf("skip: not root, no capabilities to drop\n");
        return;
    }
    iso_confine_config c = base_config();
    run r;
    run_confined(&c, capabilities, NULL, &r);
    char want[96];
    snprintf(want, sizeof want,
             "eff=0/0 perm=0/0 bset_sys_admin=0 sethostname=%d", EPERM);
    CHECK_EQ_STR(r.out, want);
}

/* ---- landlock ----------------------------------------------------------- */

static char tmpdir[64];

static int try_open(const char *rel, int flags)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

static void fs_attempts(int out, const iso_confine_report *rep, void *arg)
{
    (void)arg;
    char blk[128];
    snprintf(blk, sizeof blk, "%s/rw/blk", tmpdir);
    say(out, "outside=%d ", try_open("outside", O_RDONLY));
    say(out, "ro_read=%d ", try_open("ro/f", O_RDONLY));
    say(out, "ro_write=%d ", try_open("ro/f", O_WRONLY));
    say(out, "ro_create=%d ", try_open("ro/new", O_WRONLY | O_CREAT));
    say(out, "rw_create=%d ", try_open("rw/new", O_WRONLY | O_CREAT));
    say(out, "rw_read=%d ", try_open("rw/new", O_RDONLY));
    say(out, "mknod=%d\n", mknod(blk, S_IFBLK | 0600, makedev(8, 0)) < 0);
    say(out, "%s", rep->steps[7].detail);
}

static void make_file(const char *rel)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, "x", 1) == 1);
    close(fd);
}

static void test_landlock_fs(void)
{
    if (landlock_abi < 1) {
        printf("skip: no Landlock on this kernel\n");
        return;
    }
    char ro[96], rw[96], gone[96], cmd[128];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_confine-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    snprintf(ro, sizeof ro, "%s/ro", tmpdir);
    snprintf(rw, sizeof rw, "%s/rw", tmpdir);
    snprintf(gone, sizeof gone, "%s/not-there", tmpdir);
    CHECK(mkdir(ro, 0755) == 0 && mkdir(rw, 0755) == 0);
    make_file("outside");
    make_file("ro/f");
    iso_fs_grant grants[] = {{ro, true, false, false, false},
                             {rw, true, true, false, false},
                             {gone, true, false, false, false}};
    iso_confine_config c = base_config();
    c.grants = grants;
    c.n_grants = 3;
    run r;
    run_confined(&c, fs_attempts, NULL, &r);
    char want[160];
    snprintf(want, sizeof want,
             "outside=%d ro_read=0 ro_write=%d ro_create=%d rw_create=0 "
             "rw_read=0 mknod=1\n",
             EACCES, EACCES, EACCES);
    CHECK_HAS_STR(r.out, want);
    CHECK_HAS_STR(r.out, "2 grant(s), 1 missing path(s) skipped");
    CHECK(exited_with(&r, 0));
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
}

static int tcp_listener(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
          listen(s, 4) == 0 &&
          getsockname(s, (struct sockaddr *)&a, &len) == 0);
    *port = ntohs(a.sin_port);
    return s;
}

static int tcp_try(uint16_t port, bool do_bind)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = do_bind ? bind(s, (struct sockaddr *)&a, sizeof a)
                     : connect(s, (struct sockaddr *)&a, sizeof a);
    int e = rc < 0 ? errno : 0;
    close(s);
    return e;
}

static void net_attempts(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
    const uint16_t *ports = arg;
    say(out, "listed=%d unlisted=%d bind=%d", tcp_try(ports[0], false),
        tcp_try(ports[1], false), tcp_try(0, true));
}

static void test_landlock_net(void)
{
    if (landlock_abi < 4) {
        printf("skip: Landlock ABI %d < 4 has no TCP rules\n", landlock_abi);
        return;
    }
    uint16_t ports[2];
    int a = tcp_listener(&ports[0]), b = tcp_listener(&ports[1]);
    iso_confine_config c = base_config();
    c.connect_ports = ports;
    c.n_ports = 1;
    run r;
    char want[96];
    run_confined(&c, net_attempts, ports, &r);
    snprintf(want, sizeof want, "listed=0 unlisted=%d bind=%d", EACCES, EACCES);
    CHECK_EQ_STR(r.out, want);

    c.any_port = true; /* connect unrestricted, bind still denied */
    run_confined(&c, net_attempts, ports, &r);
    snprintf(want, sizeof want, "listed=0 unlisted=0 bind=%d", EACCES);
    CHECK_EQ_STR(r.out, want);
    close(a);
    close(b);
}

static void scope_attempts(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
    const struct sockaddr_un *addr = arg;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                                strlen(addr->sun_path + 1));
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = connect(s, (const struct sockaddr *)addr, len);
    say(out, "abstract=%d ", rc < 0 ? errno : 0);
    rc = kill(getppid(), 0);
    say(out, "signal=%d", rc < 0 ? errno : 0);
}

static void test_landlock_scope(void)
{
    if (landlock_abi < 6) {
        printf("skip: Landlock ABI %d < 6 has no scoping\n", landlock_abi);
        return;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "test_confine-%ld",
             (long)getpid());
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                                strlen(a.sun_path + 1));
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, len) == 0 &&
          listen(s, 1) == 0);
    iso_confine_config c = base_config();
    c.net_calls = ISO_SECCOMP_NET_UNIX; /* Landlock's scope is under test */
    run r;
    run_confined(&c, scope_attempts, &a, &r);
    char want[64];
    snprintf(want, sizeof want, "abstract=%d signal=%d", EPERM, EPERM);
    CHECK_EQ_STR(r.out, want);
    close(s);
}

/* ---- seccomp_net: socket families, listen, ttys, SIGIO ------------------ */

/* 0 or the errno of a raw socket(2): the family as a long, so that
 * garbage in its upper half reaches the filter (the kernel reads an int). */
static int sock_errno(long family, int type, long proto)
{
    long fd = syscall(SYS_socket, family, type | SOCK_CLOEXEC, proto);
    if (fd < 0)
        return errno;
    close((int)fd);
    return 0;
}

static int call_err(long rc)
{
    return rc < 0 ? errno : 0;
}

static void net_call_attempts(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep, (void)arg;
    int sv[2] = {-1, -1};
    int pair = call_err(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    say(out,
        "inet=%d inet6=%d unix=%d unixhigh=%d route=%d diag=%d alg=%d "
        "pair=%d listen=%d ",
        sock_errno(AF_INET, SOCK_STREAM, 0),
        sock_errno(AF_INET6, SOCK_DGRAM, 0),
        sock_errno(AF_UNIX, SOCK_STREAM, 0),
        sock_errno((1L << 32) | AF_UNIX, SOCK_STREAM, 0),
        sock_errno(AF_NETLINK, SOCK_RAW, 0),
        sock_errno(AF_NETLINK, SOCK_RAW, 4),
        sock_errno(38 /* AF_ALG */, SOCK_SEQPACKET, 0), pair,
        call_err(listen(l, 1)));
    say(out,
        "setown=%d setsig=%d async=%d nonblock=%d getown=%d tiocsti=%d "
        "tiocstihigh=%d tioclinux=%d fioasync=%d",
        call_err(fcntl(sv[0], F_SETOWN, getppid())),
        call_err(fcntl(sv[0], F_SETSIG, SIGIO)),
        call_err(fcntl(sv[0], F_SETFL, O_ASYNC | O_NONBLOCK)),
        call_err(fcntl(sv[0], F_SETFL, O_NONBLOCK)),
        call_err(fcntl(sv[0], F_GETOWN)), call_err(ioctl(0, TIOCSTI, "x")),
        call_err(syscall(SYS_ioctl, 0, (1L << 32) | TIOCSTI, "x")),
        call_err(ioctl(0, 0x541C, "\x0b")),
        call_err(ioctl(sv[0], FIOASYNC, &(int){1})));
}

/* What seccomp_net refuses in a worker, by what the plan allows. */
static void test_seccomp_net(void)
{
    iso_confine_config c = base_config();
    run r;
    char want[512];
    run_confined(&c, net_call_attempts, NULL, &r);
    CHECK(exited_with(&r, 0));
    snprintf(want, sizeof want,
             "inet=0 inet6=0 unix=%d unixhigh=%d route=%d diag=%d alg=%d "
             "pair=0 listen=%d setown=%d setsig=%d async=%d nonblock=0 "
             "getown=0 tiocsti=%d tiocstihigh=%d tioclinux=%d fioasync=%d",
             EPERM, EPERM, EPERM, EPERM, EPERM, EPERM, EPERM, EPERM, EPERM,
             EPERM, EPERM, EPERM, EPERM);
    CHECK_EQ_STR(r.out, want);
    c.net_calls =
        ISO_SECCOMP_NET_UNIX | ISO_SECCOMP_NET_NETLINK | ISO_SECCOMP_NET_LISTEN;
    run_confined(&c, net_call_attempts, NULL, &r);
    CHECK(exited_with(&r, 0));
    snprintf(want, sizeof want,
             "inet=0 inet6=0 unix=0 unixhigh=0 route=0 diag=%d alg=%d pair=0 "
             "listen=0 setown=%d",
             EPERM, EPERM, EPERM);
    CHECK(strncmp(r.out, want, strlen(want)) == 0);
    if (strncmp(r.out, want, strlen(want)) != 0)
        fprintf(stderr, "  got %s\n  want %s...\n", r.out, want);
}

/* Raw, packet and SCTP sockets, and TCP/UDP ones, from a thread: confined
 * as a cell thread or not (the control: root holds CAP_NET_RAW, which a
 * cell thread keeps). */
typedef struct inet_probe {
    bool confine;
    char out[128];
} inet_probe;

static void *inet_thread(void *arg)
{
    inet_probe *t = arg;
    iso_confine_config c = base_config();
    c.in_thread = true;
    c.cgroup_missing = "test: no cgroup";
    iso_error err = {0};
    if (t->confine && iso_confine_thread(&c, NULL, &err) < 0) {
        snprintf(t->out, sizeof t->out, "confine failed: %.100s", err.message);
        return NULL;
    }
    snprintf(t->out, sizeof t->out,
             "tcp=%d udp6=%d raw=%d packet=%d sctp=%d sctphigh=%d",
             sock_errno(AF_INET, SOCK_STREAM, IPPROTO_TCP),
             sock_errno(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, IPPROTO_UDP),
             sock_errno(AF_INET, SOCK_RAW, IPPROTO_ICMP),
             sock_errno(AF_INET, 10 /* SOCK_PACKET: becomes AF_PACKET */, 0),
             sock_errno(AF_INET6, SOCK_STREAM, 132 /* SCTP */),
             sock_errno(AF_INET, SOCK_STREAM, (1L << 32) | 132));
    return NULL;
}

static void inet_probes(int out, void *unused)
{
    (void)unused;
    inet_probe open = {false, ""}, confined = {true, ""};
    pthread_t th;
    if (pthread_create(&th, NULL, inet_thread, &open) == 0)
        pthread_join(th, NULL);
    if (pthread_create(&th, NULL, inet_thread, &confined) == 0)
        pthread_join(th, NULL);
    say(out, "open: %s\nconfined: %s\n", open.out, confined.out);
}

/* IPv4/IPv6 sockets are TCP and UDP only: raw and packet sockets pass no
 * cgroup hook (the BPF guard never sees them). */
static void test_inet_types_and_protocols(void)
{
    char buf[512], want[160];
    in_child(inet_probes, NULL, buf, sizeof buf);
    if (geteuid() == 0) /* the control: the kernel alone lets root do it */
        CHECK_HAS_STR(buf, "open: tcp=0 udp6=0 raw=0 packet=0 ");
    snprintf(want, sizeof want,
             "confined: tcp=0 udp6=0 raw=%d packet=%d sctp=%d sctphigh=%d\n",
             EPERM, EPERM, EPERM, EPERM);
    CHECK_HAS_STR(buf, want);
}

/* Does Landlock's signal scope alone stop SIGIO that a scoped process aims
 * at its parent with F_SETOWN + O_ASYNC? The child scopes itself (or not:
 * the control), arms its end of a socketpair and the parent writes to the
 * other end. Returns how many SIGIO the parent got within 300 ms. */
static int sigio_from_child(bool scoped)
{
    int sv[2];
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGIO);
    sigprocmask(SIG_BLOCK, &set, NULL);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct iso_landlock_ruleset_attr a = {0, 0, LANDLOCK_SCOPE_SIGNAL};
        int fd = scoped ? iso_landlock_create_ruleset(&a, sizeof a, 0) : -2;
        bool ok = !scoped ||
                  (fd >= 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
                   iso_landlock_restrict_self(fd) == 0);
        ok = ok && fcntl(sv[0], F_SETOWN, getppid()) == 0 &&
             fcntl(sv[0], F_SETFL, O_ASYNC) == 0;
        _exit(write(ready[1], "r", 1) == 1 && ok ? (pause(), 0) : 3);
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    CHECK(write(sv[1], "x", 1) == 1);
    struct timespec ts = {0, 300 * 1000 * 1000};
    int got = sigtimedwait(&set, NULL, &ts) == SIGIO;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(sv[0]), close(sv[1]), close(ready[0]), close(ready[1]);
    while (sigtimedwait(&set, NULL, &(struct timespec){0, 0}) > 0)
        ;
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    return got;
}

static void test_landlock_stops_sigio(void)
{
    if (landlock_abi < 6) {
        printf("skip: Landlock ABI %d < 6 has no signal scope\n", landlock_abi);
        return;
    }
    CHECK_EQ_INT(sigio_from_child(false), 1); /* the control: it arrives */
    CHECK_EQ_INT(sigio_from_child(true), 0);  /* scoped: never delivered */
}

/* ---- environment, fds, rlimits ----------------------------------------- */

extern char **environ;

static void dump_env(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
    (void)arg;
    for (char **e = environ; e && *e; e++)
        say(out, "%s\n", *e);
}

static void test_environment(void)
{
    setenv("TEST_CONFINE_SECRET", "host-only", 1);
    const char *env[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "EMPTY="};
    iso_confine_config c = base_config();
    c.env = env;
    c.n_env = 3;
    run r;
    run_confined(&c, dump_env, NULL, &r);
    CHECK_EQ_STR(r.out, "PATH=/usr/bin:/bin\nLANG=C.UTF-8\nEMPTY=\n");
    unsetenv("TEST_CONFINE_SECRET");
}

typedef struct fd_case {
    struct stat null;
    int kept, dropped[3];
} fd_case;

/* Reports "open=N null=M kept=1 dropped=0". */
static void list_fds(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
    const fd_case *fc = arg;
    int open_fds = 0, nulls = 0, kept = 0, dropped = 0;
    for (int fd = 0; fd < 4096; fd++) {
        struct stat st;
        if (fcntl(fd, F_GETFD) < 0)
            continue;
        open_fds++;
        nulls += fd <= 2 && fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) &&
                 st.st_rdev == fc->null.st_rdev;
        kept += fd == fc->kept;
        dropped += fd == fc->dropped[0] || fd == fc->dropped[1] ||
                   fd == fc->dropped[2];
    }
    say(out, "open=%d null=%d kept=%d dropped=%d", open_fds, nulls, kept,
        dropped);
}

static void test_fds(void)
{
    int kept[2], dropped[2];
    fd_case fc;
    CHECK(stat("/dev/null", &fc.null) == 0);
    CHECK(pipe(kept) == 0 && pipe(dropped) == 0); /* not close-on-exec */
    fc.kept = kept[0];
    fc.dropped[0] = kept[1];
    fc.dropped[1] = dropped[0];
    fc.dropped[2] = dropped[1];
    int keep[] = {kept[0]};
    iso_confine_config c = base_config();
    c.keep_fds = keep;
    c.n_keep = 1;
    run r;
    run_confined(&c, list_fds, &fc, &r);
    /* stdio, the kept fd, and the child's result pipe and death note */
    CHECK_EQ_STR(r.out, "open=6 null=3 kept=1 dropped=0");
    close(kept[0]);
    close(kept[1]);
    close(dropped[0]);
    close(dropped[1]);
}

static void get_limits(int out, const iso_confine_report *rep, void *arg)
{
    (void)arg;
    static const int res[] = {RLIMIT_CORE, RLIMIT_AS, RLIMIT_CPU, RLIMIT_NOFILE,
                              RLIMIT_FSIZE};
    for (size_t i = 0; i < sizeof res / sizeof res[0]; i++) {
        struct rlimit rl;
        getrlimit(res[i], &rl);
        say(out, "%llu/%llu ", (unsigned long long)rl.rlim_cur,
            (unsigned long long)rl.rlim_max);
    }
    say(out, "| %s", rep->steps[3].detail);
}

static void spin(int out, const iso_confine_report *rep, void *arg)
{
    (void)out;
    (void)rep;
    (void)arg;
    for (volatile unsigned long i = 0;; i++)
        ;
}

#if !defined(__SANITIZE_ADDRESS__)
static void big_malloc(int out, const iso_confine_report *rep, void *arg)
{
    (void)rep;
    (void)arg;
    void *p = malloc(512u << 20);
    say(out, "malloc=%s", p ? "ok" : "NULL");
    free(p);
}
#endif

/* RLIMIT_AS bites: the allocation fails (Python: MemoryError). ASan maps
 * terabytes of shadow, so a sanitizer build cannot run under a small
 * limit. */
static void test_mem_limit(void)
{
#if defined(__SANITIZE_ADDRESS__)
    printf("skip: an ASan build cannot run under a small RLIMIT_AS\n");
#else
    iso_confine_config c = base_config();
    c.mem_bytes = 256 << 20;
    run r;
    run_confined(&c, big_malloc, NULL, &r);
    CHECK_EQ_STR(r.out, "malloc=NULL");
    c.mem_bytes = -1;
    run_confined(&c, big_malloc, NULL, &r);
    CHECK_EQ_STR(r.out, "malloc=ok");
#endif
}

static void test_rlimits(void)
{
    iso_confine_config c = base_config();
    c.mem_bytes = 1LL << 46; /* 64 TiB: above what ASan's shadow maps */
    c.cpu_ms = 1500;         /* rounds up to 2 s; hard limit one second later */
    c.open_files = 64;
    c.output_bytes = 1 << 20;
    run r;
    run_confined(&c, get_limits, NULL, &r);
    CHECK_EQ_STR(r.out,
                 "0/0 70368744177664/70368744177664 2/3 64/64 1048576/1048576 "
                 "| core=0 as=70368744177664 cpu=2s nofile=64 "
                 "fsize=1048576");

    c = base_config(); /* nothing set: only core dumps off */
    run_confined(&c, get_limits, NULL, &r);
    CHECK_HAS_STR(r.out, "0/0 ");
    CHECK_HAS_STR(r.out, "| core=0");

    c.cpu_ms = 1; /* a busy loop ends by SIGXCPU after a second */
    run_confined(&c, spin, NULL, &r);
    CHECK(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGXCPU);
}

/* ---- one thread of a process (sub-interpreter cells) -------------------- */

typedef struct thread_probe {
    const char *secret; /* a file outside the grants */
    uint16_t closed_port, other_port;
    int rc;
    char out[512];
} thread_probe;

/* errno of a TCP connect to 127.0.0.1:port (0 when it connected). */
static int connect_errno(uint16_t port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int e = connect(s, (struct sockaddr *)&a, sizeof a) == 0 ? 0 : errno;
    close(s);
    return e;
}

static void *confined_thread(void *arg)
{
    thread_probe *t = arg;
    iso_fs_grant g = {"/usr", true, false, true, false};
    uint16_t ports[] = {t->closed_port};
    iso_confine_config c = base_config();
    c.in_thread = true;
    c.grants = &g;
    c.n_grants = 1;
    c.connect_ports = ports;
    c.n_ports = 1;
    c.cgroup_missing = "test: no cgroup";
    iso_confine_report rep;
    iso_error err = {0};
    if ((t->rc = iso_confine_thread(&c, &rep, &err)) < 0) {
        snprintf(t->out, sizeof t->out, "%s", err.message);
        return NULL;
    }
    int fd = open(t->secret, O_RDONLY | O_CLOEXEC);
    int open_e = fd < 0 ? errno : 0;
    char *argv[] = {"true", NULL};
    int exec_e = execve("/bin/true", argv, environ) < 0 ? errno : 0;
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    int fork_e = pid < 0 ? errno : 0;
    snprintf(t->out, sizeof t->out,
             "open=%d exec=%d fork=%d listed=%d "
             "unlisted=%d",
             open_e, exec_e, fork_e, connect_errno(t->closed_port),
             connect_errno(t->other_port));
    return NULL;
}

static void thread_and_sibling(int out, void *secret)
{
    thread_probe t = {.secret = secret, .closed_port = 9, .other_port = 7};
    pthread_t th;
    pthread_create(&th, NULL, confined_thread, &t);
    pthread_join(th, NULL);
    int fd = open(secret, O_RDONLY | O_CLOEXEC); /* this thread: free */
    say(out, "rc=%d %s main_open=%d", t.rc, t.out, fd >= 0);
}

/* Run fn in a child with the path of a fresh temporary file outside every
 * grant; what it says must be want. */
static void expect_with_secret(void (*fn)(int out, void *arg), const char *want)
{
    char secret[] = "/tmp/iso-confine-XXXXXX";
    int fd = mkstemp(secret);
    CHECK(fd >= 0);
    close(fd);
    char buf[600];
    in_child(fn, secret, buf, sizeof buf);
    CHECK_EQ_STR(buf, want);
    unlink(secret);
}

/* The confined thread gets errors (never a kill); its process's other
 * threads are not confined. In a child, so this test stays unconfined. */
static void test_thread_only(void)
{
    if (landlock_abi < 4) {
        printf("SKIP test_thread_only: Landlock ABI %d < 4\n", landlock_abi);
        return;
    }
    expect_with_secret(thread_and_sibling,
                       "rc=0 open=13 exec=1 fork=1 listed=111 unlisted=13 "
                       "main_open=1");
}

/* ---- a cell thread's own fd table --------------------------------------- */

typedef struct fd_probe {
    int host_file, host_sock, keep; /* opened by the main thread */
    char out[256];
} fd_probe;

static int errno_of(long rc)
{
    return rc < 0 ? errno : 0;
}

/* errno of opening the host's fd through /proc/self/fd (0: it opened). */
static int reopen_errno(int fd)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int got = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (got >= 0)
        close(got);
    return got < 0 ? errno : 0;
}

static void *fd_thread(void *arg)
{
    fd_probe *t = arg;
    iso_fs_grant g = {"/usr", true, false, true, false};
    iso_confine_config c = base_config();
    c.in_thread = true;
    c.grants = &g;
    c.n_grants = 1;
    c.keep_fds = &t->keep;
    c.n_keep = 1;
    c.cgroup_missing = "test: no cgroup";
    iso_error err = {0};
    if (iso_confine_thread(&c, NULL, &err) < 0) {
        snprintf(t->out, sizeof t->out, "rc=-1 %.200s", err.message);
        return NULL;
    }
    /* before anything here opens an fd, which could take a closed number */
    int file = errno_of(fcntl(t->host_file, F_GETFD));
    int sock = errno_of(fcntl(t->host_sock, F_GETFD));
    int keep = errno_of(fcntl(t->keep, F_GETFD));
    /* a pidfd of this process reaches the main thread's table */
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    snprintf(t->out, sizeof t->out,
             "file=%d sock=%d keep=%d getfd=%d kcmp=%d memfd=%d "
             "reopen_file=%d reopen_sock=%d",
             file, sock, keep,
             errno_of(syscall(SYS_pidfd_getfd, pidfd, t->host_file, 0)),
             errno_of(syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0)),
             errno_of(syscall(SYS_memfd_create, "x", 0)),
             reopen_errno(t->host_file), reopen_errno(t->host_sock));
    return NULL;
}

static void fd_table_child(int out, void *secret)
{
    int sv[2];
    fd_probe t = {.host_file = open(secret, O_RDONLY | O_CLOEXEC)};
    CHECK(t.host_file >= 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    t.host_sock = sv[0], t.keep = sv[1];
    pthread_t th;
    pthread_create(&th, NULL, fd_thread, &t);
    pthread_join(th, NULL);
    say(out, "%s main=%d,%d,%d", t.out, fcntl(t.host_file, F_GETFD) >= 0,
        fcntl(t.host_sock, F_GETFD) >= 0, fcntl(t.keep, F_GETFD) >= 0);
}

/* The confined thread has its own table: the host's fds are closed in it
 * (EBADF) but the kept one, the host's table is untouched, and the routes
 * back to the host's table are refused: pidfd_getfd and kcmp (seccomp),
 * reopening a file outside the grants through /proc/self/fd (Landlock) or
 * a socket (ENXIO: sockets cannot be reopened). memfd_create is denied
 * (code loaded from memory). */
static void test_thread_fd_table(void)
{
    if (landlock_abi < 1) {
        printf("SKIP test_thread_fd_table: no Landlock\n");
        return;
    }
    expect_with_secret(fd_table_child,
                       "file=9 sock=9 keep=0 getfd=1 kcmp=1 memfd=1 "
                       "reopen_file=13 reopen_sock=6 main=1,1,1");
}

/* ---- noexec writable paths ---------------------------------------------- */

/* errno of mapping path executable (0: it mapped). */
static int map_exec_errno(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    int e = p == MAP_FAILED ? errno : 0;
    if (p != MAP_FAILED)
        munmap(p, 4096);
    close(fd);
    return e;
}

typedef struct noexec_probe {
    const char *dir;
    char out[300];
} noexec_probe;

static void *noexec_thread(void *arg)
{
    noexec_probe *t = arg;
    iso_fs_grant g[] = {{"/usr", true, false, true, false},
                        {t->dir, true, true, false, false}};
    iso_confine_config c = base_config();
    c.in_thread = true;
    c.grants = g;
    c.n_grants = 2;
    c.cgroup_missing = "test: no cgroup";
    iso_confine_report rep;
    iso_error err = {0};
    if (iso_confine_thread(&c, &rep, &err) < 0) {
        snprintf(t->out, sizeof t->out, "rc=-1 %.200s", err.message);
        return NULL;
    }
    char abs[200];
    snprintf(abs, sizeof abs, "%s/code", t->dir);
    const char *state = "none";
    for (size_t i = 0; i < rep.n; i++)
        if (strcmp(rep.steps[i].layer, "noexec") == 0)
            state = iso_step_state_name(rep.steps[i].state);
    snprintf(t->out, sizeof t->out, "%s rel=%d abs=%d", state,
             map_exec_errno("code"), map_exec_errno(abs));
    return NULL;
}

static void noexec_child(int out, void *dir)
{
    noexec_probe t = {.dir = dir};
    CHECK(chdir(dir) == 0); /* relative paths must not reach around it */
    pthread_t th;
    pthread_create(&th, NULL, noexec_thread, &t);
    pthread_join(th, NULL);
    say(out, "%s main=%d", t.out, map_exec_errno("code"));
}

/* A writable grant is noexec for the confined thread, by absolute path and
 * relative to a working directory inside it; the rest of the process may
 * still map code from there. */
static void test_noexec_writable(void)
{
    if (landlock_abi < 1 || geteuid() != 0) {
        printf("SKIP test_noexec_writable: needs Landlock and root\n");
        return;
    }
    char dir[] = "/tmp/iso-noexec-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof path, "%s/code", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
    CHECK(fd >= 0 && write(fd,
                           "\x7f"
                           "ELF",
                           4) == 4);
    close(fd);
    char buf[600];
    in_child(noexec_child, dir, buf, sizeof buf);
    CHECK_EQ_STR(buf, "active rel=1 abs=1 main=0");
    unlink(path);
    rmdir(dir);
}

/* ---- cached seccomp programs for cell threads ---------------------------- */

typedef struct cached_probe {
    bool compat;
    const char *const *deny;
    size_t n_deny;
    char out[160];
} cached_probe;

/* errno of a raw system call with harmless arguments (0: it ran). */
static int call_errno(long nr, long a0)
{
    return syscall(nr, a0) < 0 ? errno : 0;
}

static void *cached_thread(void *arg)
{
    cached_probe *t = arg;
    iso_confine_config c = base_config();
    c.in_thread = true;
    c.compat = t->compat;
    c.deny_syscalls = t->deny;
    c.n_deny = t->n_deny;
    c.cgroup_missing = "test: no cgroup";
    iso_confine_report rep;
    iso_error err = {0};
    if (iso_confine_thread(&c, &rep, &err) < 0) {
        snprintf(t->out, sizeof t->out, "rc=-1 %s", iso_kind_name(err.kind));
        return NULL;
    }
    size_t row = rep.n - 1; /* the seccomp row, wherever it is */
    while (row > 0 && strcmp(rep.steps[row].layer, "seccomp") != 0)
        row--;
    snprintf(t->out, sizeof t->out, "getppid=%d getpgrp=%d personality=%d %s",
             call_errno(SYS_getppid, 0), call_errno(SYS_getpgrp, 0),
             call_errno(SYS_personality, 0xffffffffL), rep.steps[row].detail);
    return NULL;
}

/* Confine a fresh thread of this process as t says; its findings. */
static const char *confine_fresh_thread(cached_probe *t)
{
    pthread_t th;
    if (pthread_create(&th, NULL, cached_thread, t) != 0)
        return "pthread_create failed";
    pthread_join(th, NULL);
    return t->out;
}

/* The number in a seccomp row's "... list: N system calls ..." */
static int denied_count(const char *detail)
{
    const char *p = strstr(detail, "list: ");
    return p ? atoi(p + 6) : -1;
}

/* In a child (its threads end up confined): a program is compiled once per
 * (mode, deny list as a set) and, installed from the cache, denies exactly
 * what its own deny list says, never another cell's. */
static void cached_programs(int out, void *unused)
{
    (void)unused;
    static const char *const ppid[] = {"getppid"};
    static const char *const pgrp[] = {"getpgrp"};
    static const char *const both[] = {"getppid", "getpgrp"};
    static const char *const both_swapped[] = {"getpgrp", "getppid"};
    static const char *const unknown[] = {"no_such_call"};
    cached_probe a = {false, ppid, 1, ""}, b = {false, pgrp, 1, ""},
                 b2 = {false, pgrp, 1, ""}, c = {false, both, 2, ""},
                 c2 = {false, both_swapped, 2, ""}, full = {false, NULL, 0, ""},
                 compat = {true, NULL, 0, ""}, bad = {false, unknown, 1, ""};
    iso_seccomp_cache_stats st;
    iso_seccomp_cache_clear();
    confine_fresh_thread(&a);
    confine_fresh_thread(&b);
    confine_fresh_thread(&b2); /* from the cache */
    confine_fresh_thread(&c);
    confine_fresh_thread(&c2); /* the same set: from the cache */
    confine_fresh_thread(&full);
    confine_fresh_thread(&compat);
    confine_fresh_thread(&bad);
    iso_seccomp_cache_stats_get(&st);
    say(out, "a: %.33s\nb: %.33s\nb2: %.33s\nc: %.33s\nc2: %.33s\n", a.out,
        b.out, b2.out, c.out, c2.out);
    say(out, "full: %.42s\ncompat: %.42s\nbad: %s\n", full.out, compat.out,
        bad.out);
    say(out, "counts: %d %d %d %d %d\n", denied_count(a.out),
        denied_count(b2.out) - denied_count(b.out),
        denied_count(c.out) - denied_count(full.out),
        denied_count(c2.out) - denied_count(c.out),
        denied_count(full.out) > denied_count(compat.out));
    say(out, "entries=%zu hits=%llu misses=%llu\n", st.entries,
        (unsigned long long)st.hits, (unsigned long long)st.misses);
}

static void test_cached_seccomp_programs(void)
{
    char buf[1024];
    in_child(cached_programs, NULL, buf, sizeof buf);
    CHECK_HAS_STR(buf, "a: getppid=1 getpgrp=0 personality=1\n");
    CHECK_HAS_STR(buf, "b: getppid=0 getpgrp=1 personality=1\n");
    CHECK_HAS_STR(buf, "b2: getppid=0 getpgrp=1 personality=1\n");
    CHECK_HAS_STR(buf, "c: getppid=1 getpgrp=1 personality=1\n");
    CHECK_HAS_STR(buf, "c2: getppid=1 getpgrp=1 personality=1\n");
    /* compat's minimal list leaves personality alone */
    CHECK_HAS_STR(buf, "full: getppid=0 getpgrp=0 personality=1 ");
    CHECK_HAS_STR(buf, "compat: getppid=0 getpgrp=0 personality=0 ");
    /* an unknown name is refused, and nothing is cached for it */
    CHECK_HAS_STR(buf, "bad: rc=-1 invalid_argument\n");
    /* a: its count; a cached program reports the count of its own build */
    CHECK(strstr(buf, "counts: -1 ") == NULL);
    CHECK_HAS_STR(buf, " 0 2 0 1\n");
    /* a, b, c, full, compat compiled; b2 and c2 found; bad missed */
    CHECK_HAS_STR(buf, "entries=5 hits=2 misses=6\n");
}

int main(void)
{
    alarm(120); /* a hung child fails the run instead of stalling it */
    landlock_abi = iso_landlock_abi();
    printf("Landlock ABI %d, euid %d\n", landlock_abi, (int)geteuid());
    RUN(test_state_names);
    RUN(test_report_without_cgroup);
    RUN(test_report_with_cgroup);
    RUN(test_denied_syscalls);
    RUN(test_threads_and_processes);
    RUN(test_policy_deny_overlaps);
    RUN(test_spawn_stops_without_note);
    RUN(test_foreign_abis);
    RUN(test_sigsys_handler_kept);
    RUN(test_bad_configs);
    RUN(test_capabilities);
    RUN(test_landlock_fs);
    RUN(test_landlock_net);
    RUN(test_landlock_scope);
    RUN(test_seccomp_net);
    RUN(test_inet_types_and_protocols);
    RUN(test_landlock_stops_sigio);
    RUN(test_environment);
    RUN(test_fds);
    RUN(test_rlimits);
    RUN(test_mem_limit);
    RUN(test_thread_only);
    RUN(test_thread_fd_table);
    RUN(test_noexec_writable);
    RUN(test_cached_seccomp_programs);
    return CHECK_EXIT();
}
