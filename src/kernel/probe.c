/* Host probes for `luaisolate doctor`: each layer is tried, not looked up. */
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/kvm.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <seccomp.h>

#include "cgroup.h"
#include "landlock.h"

/* ---- building the result ------------------------------------------------ */

/* One probe's map being filled; *oom is shared by all and sticky, so a
 * probe reads as a list of facts and memory is checked once at the end. */
typedef struct probe {
    iso_value *map;
    bool *oom;
} probe;

static iso_value *field(probe *p, const char *key)
{
    iso_value *k, *v;
    if (*p->oom || !p->map || iso_map_append(p->map, &k, &v) < 0 ||
        iso_value_set_string(k, ISO_STR, key, strlen(key)) < 0) {
        *p->oom = true;
        return NULL;
    }
    return v;
}

static void put_bool(probe *p, const char *key, bool b)
{
    iso_value *v = field(p, key);
    if (v)
        iso_value_set_bool(v, b);
}

static void put_int(probe *p, const char *key, int64_t i)
{
    iso_value *v = field(p, key);
    if (v)
        iso_value_set_int(v, i);
}

static void put_text(probe *p, const char *key, const char *s)
{
    iso_value *v = field(p, key);
    if (v && iso_value_set_string(v, ISO_STR, s, strlen(s)) < 0)
        *p->oom = true;
}

static probe probe_begin(iso_value *all, const char *name, bool *oom)
{
    probe top = {all, oom}, p = {field(&top, name), oom};
    if (p.map)
        iso_value_set_map(p.map);
    return p;
}

/* Every probe ends with ok, detail and, when not ok, advice. */
static void put_verdict(probe *p, bool ok, const char *detail,
                        const char *advice)
{
    put_bool(p, "ok", ok);
    put_text(p, "detail", detail);
    if (!ok)
        put_text(p, "advice", advice);
}

/* snprintf that keeps the format checked; truncation is fine for text. */
static const char *fmt(char *buf, size_t n, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static const char *fmt(char *buf, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, n, f, ap);
    va_end(ap);
    return buf;
}

/* ---- children ----------------------------------------------------------- */

#define CHILD_TIMEOUT_MS 2000
/* Child results besides 0 (the layer held) and an errno (setting it up
 * failed): */
#define NOT_ENFORCED 250  /* set up, yet the test call was not stopped */
#define CHILD_TIMEOUT 251 /* killed after CHILD_TIMEOUT_MS */
#define CHILD_SIGNAL 1000 /* + the signal that ended it */

typedef int (*child_fn)(void *arg);

/* Wait for pid, killing it when it overstays: its result code. */
static int reap(pid_t pid)
{
    struct timespec pause = {0, 1000 * 1000};
    int st = 0;
    for (int waited_ms = 0;; waited_ms++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            return errno;
        if (waited_ms >= CHILD_TIMEOUT_MS) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            return CHILD_TIMEOUT;
        }
        nanosleep(&pause, NULL);
    }
    if (WIFSIGNALED(st))
        return CHILD_SIGNAL + WTERMSIG(st);
    return WEXITSTATUS(st);
}

/* fn(arg) in a forked child, which only makes system calls and _exits. */
static int in_child(child_fn fn, void *arg)
{
    pid_t pid = fork();
    if (pid < 0)
        return errno;
    if (pid == 0)
        _exit(fn(arg) & 0xff);
    return reap(pid);
}

static const char *child_why(int rc, char *buf, size_t n)
{
    if (rc == NOT_ENFORCED)
        return fmt(buf, n, "set up, but the test call was not stopped");
    if (rc == CHILD_TIMEOUT)
        return fmt(buf, n, "the child hung and was killed");
    if (rc > CHILD_SIGNAL)
        return fmt(buf, n, "the child died of signal %d", rc - CHILD_SIGNAL);
    return fmt(buf, n, "%s", strerror(rc));
}

/* ---- python ------------------------------------------------------------- */

/* From the facts the caller read (iso_runtime_info_get): the kernel
 * layer never calls into the Python runtime. */
static void probe_python(iso_value *all, const iso_runtime_info *info,
                         bool *oom)
{
    probe p = probe_begin(all, "python", oom);
    char detail[256];
    put_text(&p, "version", info->python_version);
    put_text(&p, "cell_mode", info->cell_mode);
    put_bool(&p, "own_gil", info->own_gil);
    put_verdict(&p, true,
                fmt(detail, sizeof detail, "CPython %s, %s: %s",
                    info->python_version, info->cell_mode,
                    info->own_gil ? "sub-interpreter cells run in parallel"
                                  : "sub-interpreter cells take turns "
                                    "(CPython >= 3.13 runs them in parallel)"),
                "");
}

/* ---- seccomp and no_new_privs ------------------------------------------- */

/* What the probe filter makes personality(2) fail with: no real call
 * returns it. */
#define SECCOMP_PROBE_ERRNO ENOTUNIQ

static int try_seccomp(void *ctx)
{
    int rc = seccomp_load(ctx);
    if (rc < 0)
        return -rc;
    errno = 0;
    long r = syscall(SYS_personality, 0xffffffffUL); /* a query */
    return r == -1 && errno == SECCOMP_PROBE_ERRNO ? 0 : NOT_ENFORCED;
}

/* Allow everything but personality(2), load it in a child, call it. */
static int seccomp_try_filter(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return ENOMEM;
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(SECCOMP_PROBE_ERRNO),
                              SCMP_SYS(personality), 0);
    rc = rc < 0 ? -rc : in_child(try_seccomp, ctx);
    seccomp_release(ctx);
    return rc;
}

static void probe_seccomp(iso_value *all, bool *oom)
{
    probe p = probe_begin(all, "seccomp", oom);
    const struct scmp_version *v = seccomp_version();
    char ver[32], detail[256], why[128];
    put_text(&p, "libseccomp",
             fmt(ver, sizeof ver, "%u.%u.%u", v->major, v->minor, v->micro));
    int rc = seccomp_try_filter();
    if (rc == 0)
        fmt(detail, sizeof detail,
            "a filter loaded in a child and made personality(2) fail");
    else
        fmt(detail, sizeof detail, "loading a filter in a child: %s",
            child_why(rc, why, sizeof why));
    put_verdict(&p, rc == 0, detail,
                "the kernel needs CONFIG_SECCOMP_FILTER: without it cells "
                "have no system-call filter");
}

static int try_no_new_privs(void *unused)
{
    (void)unused;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return errno;
    return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 0 : NOT_ENFORCED;
}

/* A probe that is one attempt in a child: worked, or what went wrong. */
static void probe_attempt(iso_value *all, bool *oom, const char *name,
                          child_fn fn, const char *worked, const char *tried,
                          const char *advice)
{
    probe p = probe_begin(all, name, oom);
    char detail[256], why[128];
    int rc = in_child(fn, NULL);
    if (rc == 0)
        fmt(detail, sizeof detail, "%s", worked);
    else
        fmt(detail, sizeof detail, "%s in a child: %s", tried,
            child_why(rc, why, sizeof why));
    put_verdict(&p, rc == 0, detail, advice);
}

static void probe_no_new_privs(iso_value *all, bool *oom)
{
    probe_attempt(all, oom, "no_new_privs", try_no_new_privs,
                  "PR_SET_NO_NEW_PRIVS held in a child", "PR_SET_NO_NEW_PRIVS",
                  "the kernel refused no_new_privs (Linux >= 3.5 has it): "
                  "seccomp and Landlock depend on it");
}

/* ---- landlock ----------------------------------------------------------- */

/* A ruleset that handles one kind of access with no rule, and the call
 * it must then deny. */
typedef struct landlock_try {
    struct iso_landlock_ruleset_attr attr;
    int (*denied)(void); /* 0 when the test call was refused */
} landlock_try;

static int denied_open(void)
{
    int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
    return fd < 0 && errno == EACCES ? 0 : NOT_ENFORCED;
}

/* Nothing leaves the machine: a refused connect to 127.0.0.1:1 at worst. */
static int denied_connect(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(1)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return errno;
    int rc = connect(s, (struct sockaddr *)&sin, sizeof sin);
    rc = rc < 0 && errno == EACCES ? 0 : NOT_ENFORCED;
    close(s);
    return rc;
}

/* Signal 0 only checks permission; the parent is outside the domain. */
static int denied_signal(void)
{
    return kill(getppid(), 0) < 0 && errno == EPERM ? 0 : NOT_ENFORCED;
}

static int try_landlock(void *arg)
{
    const landlock_try *t = arg;
    int fd = iso_landlock_create_ruleset(&t->attr, sizeof t->attr, 0);
    if (fd < 0)
        return errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        iso_landlock_restrict_self(fd) < 0)
        return errno;
    close(fd);
    return t->denied();
}

/* One access kind: "enforced", why not, or the ABI it needs. */
static bool landlock_kind(int abi, int need, landlock_try *t, char *word,
                          size_t n)
{
    char why[128];
    int rc = abi >= need ? in_child(try_landlock, t) : -1;
    if (rc == 0)
        fmt(word, n, "enforced");
    else if (rc < 0)
        fmt(word, n, "needs ABI %d", need);
    else
        fmt(word, n, "failed (%s)", child_why(rc, why, sizeof why));
    return rc == 0;
}

static const char *landlock_advice(int abi, char *buf, size_t n)
{
    if (abi == -ENOSYS)
        return fmt(buf, n,
                   "the kernel has no Landlock: use Linux >= 5.13 "
                   "built with CONFIG_SECURITY_LANDLOCK");
    if (abi == -EOPNOTSUPP)
        return fmt(buf, n,
                   "Landlock is built in but off: add landlock to "
                   "the lsm= boot parameter");
    return fmt(buf, n,
               "Landlock did not restrict a child: without it cells "
               "have no file-system rules");
}

static void probe_landlock(iso_value *all, bool *oom)
{
    probe p = probe_begin(all, "landlock", oom);
    int abi = iso_landlock_abi();
    char fs[160], net[160], scope[160], detail[512], advice[256];
    landlock_try try_fs = {{.handled_access_fs = iso_landlock_fs_rights(abi)},
                           denied_open};
    landlock_try try_net = {
        {.handled_access_net = LANDLOCK_ACCESS_NET_CONNECT_TCP},
        denied_connect};
    landlock_try try_scope = {{.scoped = LANDLOCK_SCOPE_SIGNAL}, denied_signal};
    bool ok = landlock_kind(abi, 1, &try_fs, fs, sizeof fs);
    put_int(&p, "abi", abi > 0 ? abi : 0);
    put_bool(&p, "fs", ok);
    put_bool(&p, "net", landlock_kind(abi, 4, &try_net, net, sizeof net));
    put_bool(&p, "scope",
             landlock_kind(abi, 6, &try_scope, scope, sizeof scope));
    if (abi < 0)
        fmt(detail, sizeof detail, "no Landlock: %s", strerror(-abi));
    else
        fmt(detail, sizeof detail, "ABI %d: fs %s, tcp %s, scope %s", abi, fs,
            net, scope);
    put_verdict(&p, ok, detail, landlock_advice(abi, advice, sizeof advice));
}

/* ---- bpf ---------------------------------------------------------------- */

/* r0 = imm; exit */
static void return_imm(struct bpf_insn insns[2], int imm)
{
    insns[0] = (struct bpf_insn){
        .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = imm};
    insns[1] = (struct bpf_insn){.code = BPF_JMP | BPF_EXIT};
}

/* Attach prog to a fresh cgroup of ours as connect4, then undo it all. */
static bool attach_connect4(int prog, char *why, size_t n)
{
    iso_cgroup cg;
    iso_error err = {0};
    if (iso_cgroup_create("doctor", -1, -1, &cg, &err) < 0) {
        fmt(why, n, "no cgroup to attach to: %s", err.message);
        return false;
    }
    int dir = open(cg.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dir < 0 ? -errno
                     : bpf_prog_attach(prog, dir, BPF_CGROUP_INET4_CONNECT,
                                       BPF_F_ALLOW_MULTI);
    if (rc == 0)
        rc = bpf_prog_detach2(prog, dir, BPF_CGROUP_INET4_CONNECT);
    if (rc < 0)
        fmt(why, n, "attaching it to %s: %s", cg.path, strerror(-rc));
    if (dir >= 0)
        close(dir);
    if (iso_cgroup_remove(&cg, &err) < 0 && rc == 0) {
        fmt(why, n, "%s", err.message);
        rc = -1;
    }
    return rc == 0;
}

static bool try_sock_addr(char *why, size_t n)
{
    struct bpf_insn insns[2];
    LIBBPF_OPTS(bpf_prog_load_opts, opts,
                .expected_attach_type = BPF_CGROUP_INET4_CONNECT);
    return_imm(insns, 1); /* allow */
    int prog = bpf_prog_load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "iso_probe", "GPL",
                             insns, 2, &opts);
    if (prog < 0) {
        fmt(why, n, "loading a cgroup/connect4 program: %s", strerror(-prog));
        return false;
    }
    bool ok = attach_connect4(prog, why, n);
    close(prog);
    return ok;
}

/* Load an allow-everything program on the file_open hook and link it for
 * a moment: the kernel refuses either when BPF-LSM is not active. */
static bool try_lsm(char *why, size_t n)
{
    struct bpf_insn insns[2];
    struct btf *btf = btf__load_vmlinux_btf();
    int id =
        btf ? btf__find_by_name_kind(btf, "bpf_lsm_file_open", BTF_KIND_FUNC)
            : -ENOENT;
    btf__free(btf);
    if (id < 0) {
        fmt(why, n, "no kernel BTF for bpf_lsm_file_open");
        return false;
    }
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_LSM_MAC,
                .attach_btf_id = id);
    return_imm(insns, 0); /* allow */
    int prog =
        bpf_prog_load(BPF_PROG_TYPE_LSM, "iso_probe", "GPL", insns, 2, &opts);
    int link = prog < 0 ? prog : bpf_link_create(prog, 0, BPF_LSM_MAC, NULL);
    if (link < 0)
        fmt(why, n, "%s an LSM program: %s", prog < 0 ? "loading" : "linking",
            strerror(-link));
    else
        close(link);
    if (prog >= 0)
        close(prog);
    return link >= 0;
}

static bool try_ringbuf(char *why, size_t n)
{
    int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "iso_probe", 0, 0,
                            (unsigned)sysconf(_SC_PAGESIZE), NULL);
    if (fd < 0) {
        fmt(why, n, "creating a ring buffer: %s", strerror(-fd));
        return false;
    }
    close(fd);
    return true;
}

static void probe_bpf(iso_value *all, bool *oom)
{
    probe p = probe_begin(all, "bpf", oom);
    char sock[256] = "", lsm[160] = "", ring[160] = "", detail[640];
    bool ok = try_sock_addr(sock, sizeof sock);
    bool has_lsm = try_lsm(lsm, sizeof lsm);
    bool has_ring = try_ringbuf(ring, sizeof ring);
    put_bool(&p, "cgroup_sock_addr", ok);
    put_bool(&p, "lsm", has_lsm);
    put_bool(&p, "ringbuf", has_ring);
    fmt(detail, sizeof detail, "cgroup_sock_addr: %s; lsm: %s; ringbuf: %s",
        ok ? "loaded, attached, detached" : sock,
        has_lsm ? "loaded, linked" : lsm, has_ring ? "created" : ring);
    put_verdict(&p, ok, detail,
                "BPF network rules need BPF_PROG_TYPE_CGROUP_SOCK_ADDR "
                "(CONFIG_CGROUP_BPF), a writable cgroup v2 and root or "
                "CAP_BPF + CAP_NET_ADMIN");
}

/* ---- cgroup ------------------------------------------------------------- */

/* Read a small file into buf; false when it cannot be read. */
static bool read_small(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd < 0 ? -1 : read(fd, buf, n - 1);
    if (fd >= 0)
        close(fd);
    buf[got > 0 ? got : 0] = '\0';
    return got >= 0;
}

/* controllers: the words of <mount>/cgroup.controllers, as a list; the
 * same words in names ("" when none or unreadable). */
static void put_controllers(probe *p, const char *mount, char *names, size_t n)
{
    char path[ISO_PATH_MAX + 32], copy[512], *save = NULL;
    iso_value *list = field(p, "controllers");
    if (list)
        iso_value_set_list(list);
    fmt(path, sizeof path, "%s/cgroup.controllers", mount);
    if (!mount[0] || !read_small(path, names, n))
        names[0] = '\0';
    names[strcspn(names, "\n")] = '\0';
    fmt(copy, sizeof copy, "%s", names);
    for (char *w = strtok_r(copy, " ", &save); w && list;
         w = strtok_r(NULL, " ", &save)) {
        iso_value *item = iso_list_append(list);
        if (!item || iso_value_set_string(item, ISO_STR, w, strlen(w)) < 0)
            *p->oom = true;
    }
}

/* dir/t as a threaded cgroup, read back, removed. */
static bool try_threaded(const char *dir, char *why, size_t n)
{
    char t[ISO_PATH_MAX + 8], type[ISO_PATH_MAX + 32], got[64] = "";
    fmt(t, sizeof t, "%s/t", dir);
    fmt(type, sizeof type, "%s/cgroup.type", t);
    if (mkdir(t, 0755) < 0) {
        fmt(why, n, "mkdir %s: %s", t, strerror(errno));
        return false;
    }
    int fd = open(type, O_WRONLY | O_CLOEXEC);
    bool wrote = fd >= 0 && write(fd, "threaded", 8) == 8;
    if (!wrote)
        fmt(why, n, "writing threaded to %s: %s", type, strerror(errno));
    if (fd >= 0)
        close(fd);
    bool ok = wrote && read_small(type, got, sizeof got) &&
              strcmp(got, "threaded\n") == 0;
    if (wrote && !ok)
        fmt(why, n, "%s reads back '%.*s'", type, (int)strcspn(got, "\n"), got);
    if (rmdir(t) < 0 && ok) {
        fmt(why, n, "rmdir %s: %s", t, strerror(errno));
        ok = false;
    }
    return ok;
}

/* A cell directory of ours (writable), and a threaded one inside it. */
static bool try_cgroup_dirs(bool *threaded, char *why, size_t n)
{
    iso_cgroup cg;
    iso_error err = {0};
    *threaded = false;
    if (iso_cgroup_create("doctor", -1, -1, &cg, &err) < 0) {
        fmt(why, n, "%s", err.message);
        return false;
    }
    *threaded = try_threaded(cg.path, why, n);
    if (iso_cgroup_remove(&cg, &err) < 0) {
        fmt(why, n, "%s", err.message);
        *threaded = false;
        return false;
    }
    return true;
}

static void probe_cgroup(iso_value *all, bool *oom)
{
    probe p = probe_begin(all, "cgroup", oom);
    char mount[ISO_PATH_MAX] = "", names[512], why[ISO_PATH_MAX + 128] = "";
    char detail[ISO_PATH_MAX + 768];
    iso_error err = {0};
    bool threaded = false, writable = false;
    if (iso_cgroup_mount(mount, sizeof mount, &err) == 0)
        writable = try_cgroup_dirs(&threaded, why, sizeof why);
    else
        fmt(why, sizeof why, "%s", err.message);
    put_text(&p, "mount", mount);
    put_bool(&p, "writable", writable);
    put_bool(&p, "threaded", threaded);
    put_controllers(&p, mount, names, sizeof names);
    fmt(detail, sizeof detail, "%s%s: %s, %s; controllers: %s",
        mount[0] ? "cgroup2 at " : "no cgroup2", mount,
        writable ? "writable" : "not writable",
        threaded ? "threaded subtrees work"
        : why[0] ? why
                 : "not threaded",
        names[0] ? names : "none");
    put_verdict(&p, writable, detail,
                "process cells need a writable cgroup v2: mount cgroup2 and "
                "run as root or in a delegated subtree");
}

/* ---- user namespaces, kvm, vmm ------------------------------------------ */

static int try_userns(void *unused)
{
    (void)unused;
    return unshare(CLONE_NEWUSER) < 0 ? errno : 0;
}

static void probe_userns(iso_value *all, bool *oom)
{
    probe_attempt(all, oom, "userns", try_userns,
                  "a child entered a new user namespace",
                  "unshare(CLONE_NEWUSER)",
                  "user namespaces are off (CONFIG_USER_NS, sysctl "
                  "user.max_user_namespaces); not needed by today's backends");
}

static void probe_kvm(iso_value *all, bool *oom)
{
    probe p = probe_begin(all, "kvm", oom);
    char detail[256];
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int api = fd < 0 ? -1 : ioctl(fd, KVM_GET_API_VERSION, 0);
    if (fd < 0)
        fmt(detail, sizeof detail, "/dev/kvm: %s", strerror(errno));
    else if (api < 0)
        fmt(detail, sizeof detail, "KVM_GET_API_VERSION: %s", strerror(errno));
    else
        fmt(detail, sizeof detail, "/dev/kvm opened read-write, KVM API %d",
            api);
    if (fd >= 0)
        close(fd);
    put_int(&p, "api", api > 0 ? api : 0);
    put_verdict(&p, api == KVM_API_VERSION, detail,
                "microvm cells need KVM: load kvm_intel or kvm_amd (nested "
                "virtualisation inside a VM) and read-write /dev/kvm");
}

static bool on_path(const char *dirs, const char *prog, char *path, size_t n)
{
    for (const char *d = dirs; *d;) {
        size_t len = strcspn(d, ":");
        fmt(path, n, "%.*s/%s", (int)len, d, prog);
        if (len > 0 && access(path, X_OK) == 0)
            return true;
        d += len + (d[len] == ':');
    }
    return false;
}

const char *iso_find_vmm(char *path, size_t n)
{
    static const char *const names[] = {"firecracker", "cloud-hypervisor",
                                        "qemu-system-x86_64"};
    const char *dirs = getenv("PATH");
    if (!dirs)
        dirs = "/usr/local/bin:/usr/bin:/bin";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (on_path(dirs, names[i], path, n))
            return names[i];
    path[0] = '\0';
    return NULL;
}

static void probe_vmm(iso_value *all, bool *oom)
{
    probe p = probe_begin(all, "vmm", oom);
    char path[ISO_PATH_MAX], detail[ISO_PATH_MAX + 32];
    const char *vmm = iso_find_vmm(path, sizeof path);
    put_text(&p, "binary", vmm ? vmm : "");
    put_text(&p, "path", path);
    if (vmm)
        fmt(detail, sizeof detail, "%s at %s", vmm, path);
    else
        fmt(detail, sizeof detail,
            "no firecracker, cloud-hypervisor or "
            "qemu-system-x86_64 on PATH");
    put_verdict(&p, vmm != NULL, detail,
                "microvm cells need a VMM: install firecracker, "
                "cloud-hypervisor or qemu-system-x86_64");
}

/* ---- all ---------------------------------------------------------------- */

int iso_probe_host(const iso_runtime_info *python, iso_value *out,
                   iso_error *err)
{
    static void (*const probes[])(iso_value *, bool *) = {
        probe_seccomp, probe_no_new_privs, probe_landlock, probe_bpf,
        probe_cgroup,  probe_userns,       probe_kvm,      probe_vmm,
    };
    bool oom = false;
    iso_value_set_map(out);
    probe_python(out, python, &oom);
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
        probes[i](out, &oom);
    if (oom) {
        iso_value_free(out);
        return iso_error_set(err, ISO_MEMORY, "doctor: out of memory");
    }
    return 0;
}
