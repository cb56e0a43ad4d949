/* Host probes for `luaisolate doctor`: each layer is tried, not looked up
 * (probe_result.h says which file holds which probe). */
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

#include <seccomp.h>

#include "landlock.h"
#include "probe_result.h"

/* ---- building the result (probe_result.h) ------------------------------- */

iso_value *iso_probe_field(iso_probe *p, const char *key)
{
    iso_value *k, *v;
    if (*p->oom || !p->map || iso_map_append(p->map, &k, &v) < 0 ||
        iso_value_set_string(k, ISO_STR, key, strlen(key)) < 0) {
        *p->oom = true;
        return NULL;
    }
    return v;
}

void iso_probe_put_bool(iso_probe *p, const char *key, bool b)
{
    iso_value *v = iso_probe_field(p, key);
    if (v)
        iso_value_set_bool(v, b);
}

void iso_probe_put_int(iso_probe *p, const char *key, int64_t i)
{
    iso_value *v = iso_probe_field(p, key);
    if (v)
        iso_value_set_int(v, i);
}

void iso_probe_put_text(iso_probe *p, const char *key, const char *s)
{
    iso_value *v = iso_probe_field(p, key);
    if (v && iso_value_set_string(v, ISO_STR, s, strlen(s)) < 0)
        *p->oom = true;
}

iso_probe iso_probe_begin(iso_value *all, const char *name, bool *oom)
{
    iso_probe top = {all, oom}, p = {iso_probe_field(&top, name), oom};
    if (p.map)
        iso_value_set_map(p.map);
    return p;
}

void iso_probe_verdict(iso_probe *p, bool ok, const char *detail,
                       const char *advice)
{
    iso_probe_put_bool(p, "ok", ok);
    iso_probe_put_text(p, "detail", detail);
    if (!ok)
        iso_probe_put_text(p, "advice", advice);
}

const char *iso_probe_fmt(char *buf, size_t n, const char *f, ...)
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
        return iso_probe_fmt(buf, n,
                             "set up, but the test call was not stopped");
    if (rc == CHILD_TIMEOUT)
        return iso_probe_fmt(buf, n, "the child hung and was killed");
    if (rc > CHILD_SIGNAL)
        return iso_probe_fmt(buf, n, "the child died of signal %d",
                             rc - CHILD_SIGNAL);
    return iso_probe_fmt(buf, n, "%s", strerror(rc));
}

/* ---- python ------------------------------------------------------------- */

/* From the facts the caller read (iso_runtime_info_get): the kernel
 * layer never calls into the Python runtime. */
static void probe_python(iso_value *all, const iso_runtime_info *info,
                         bool *oom)
{
    iso_probe p = iso_probe_begin(all, "python", oom);
    char detail[256];
    iso_probe_put_text(&p, "version", info->python_version);
    iso_probe_put_text(&p, "cell_mode", info->cell_mode);
    iso_probe_put_bool(&p, "own_gil", info->own_gil);
    iso_probe_verdict(
        &p, true,
        iso_probe_fmt(detail, sizeof detail, "CPython %s, %s: %s",
                      info->python_version, info->cell_mode,
                      info->own_gil
                          ? "sub-interpreter cells run in parallel"
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
    iso_probe p = iso_probe_begin(all, "seccomp", oom);
    const struct scmp_version *v = seccomp_version();
    char ver[32], detail[256], why[128];
    iso_probe_put_text(&p, "libseccomp",
                       iso_probe_fmt(ver, sizeof ver, "%u.%u.%u", v->major,
                                     v->minor, v->micro));
    int rc = seccomp_try_filter();
    if (rc == 0)
        iso_probe_fmt(
            detail, sizeof detail,
            "a filter loaded in a child and made personality(2) fail");
    else
        iso_probe_fmt(detail, sizeof detail, "loading a filter in a child: %s",
                      child_why(rc, why, sizeof why));
    iso_probe_verdict(
        &p, rc == 0, detail,
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
    iso_probe p = iso_probe_begin(all, name, oom);
    char detail[256], why[128];
    int rc = in_child(fn, NULL);
    if (rc == 0)
        iso_probe_fmt(detail, sizeof detail, "%s", worked);
    else
        iso_probe_fmt(detail, sizeof detail, "%s in a child: %s", tried,
                      child_why(rc, why, sizeof why));
    iso_probe_verdict(&p, rc == 0, detail, advice);
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
        iso_probe_fmt(word, n, "enforced");
    else if (rc < 0)
        iso_probe_fmt(word, n, "needs ABI %d", need);
    else
        iso_probe_fmt(word, n, "failed (%s)", child_why(rc, why, sizeof why));
    return rc == 0;
}

static const char *landlock_advice(int abi, char *buf, size_t n)
{
    if (abi == -ENOSYS)
        return iso_probe_fmt(buf, n,
                             "the kernel has no Landlock: use Linux >= 5.13 "
                             "built with CONFIG_SECURITY_LANDLOCK");
    if (abi == -EOPNOTSUPP)
        return iso_probe_fmt(buf, n,
                             "Landlock is built in but off: add landlock to "
                             "the lsm= boot parameter");
    return iso_probe_fmt(buf, n,
                         "Landlock did not restrict a child: without it cells "
                         "have no file-system rules");
}

static void probe_landlock(iso_value *all, bool *oom)
{
    iso_probe p = iso_probe_begin(all, "landlock", oom);
    int abi = iso_landlock_abi();
    char fs[160], net[160], scope[160], detail[512], advice[256];
    landlock_try try_fs = {{.handled_access_fs = iso_landlock_fs_rights(abi)},
                           denied_open};
    landlock_try try_net = {
        {.handled_access_net = LANDLOCK_ACCESS_NET_CONNECT_TCP},
        denied_connect};
    landlock_try try_scope = {{.scoped = LANDLOCK_SCOPE_SIGNAL}, denied_signal};
    bool ok = landlock_kind(abi, 1, &try_fs, fs, sizeof fs);
    iso_probe_put_int(&p, "abi", abi > 0 ? abi : 0);
    iso_probe_put_bool(&p, "fs", ok);
    iso_probe_put_bool(&p, "net",
                       landlock_kind(abi, 4, &try_net, net, sizeof net));
    iso_probe_put_bool(&p, "scope",
                       landlock_kind(abi, 6, &try_scope, scope, sizeof scope));
    if (abi < 0)
        iso_probe_fmt(detail, sizeof detail, "no Landlock: %s", strerror(-abi));
    else
        iso_probe_fmt(detail, sizeof detail, "ABI %d: fs %s, tcp %s, scope %s",
                      abi, fs, net, scope);
    iso_probe_verdict(&p, ok, detail,
                      landlock_advice(abi, advice, sizeof advice));
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
    iso_probe p = iso_probe_begin(all, "kvm", oom);
    char detail[256];
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int api = fd < 0 ? -1 : ioctl(fd, KVM_GET_API_VERSION, 0);
    if (fd < 0)
        iso_probe_fmt(detail, sizeof detail, "/dev/kvm: %s", strerror(errno));
    else if (api < 0)
        iso_probe_fmt(detail, sizeof detail, "KVM_GET_API_VERSION: %s",
                      strerror(errno));
    else
        iso_probe_fmt(detail, sizeof detail,
                      "/dev/kvm opened read-write, KVM API %d", api);
    if (fd >= 0)
        close(fd);
    iso_probe_put_int(&p, "api", api > 0 ? api : 0);
    iso_probe_verdict(
        &p, api == KVM_API_VERSION, detail,
        "microvm cells need KVM: load kvm_intel or kvm_amd (nested "
        "virtualisation inside a VM) and read-write /dev/kvm");
}

static bool on_path(const char *dirs, const char *prog, char *path, size_t n)
{
    for (const char *d = dirs; *d;) {
        size_t len = strcspn(d, ":");
        iso_probe_fmt(path, n, "%.*s/%s", (int)len, d, prog);
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
    iso_probe p = iso_probe_begin(all, "vmm", oom);
    char path[ISO_PATH_MAX], detail[ISO_PATH_MAX + 32];
    const char *vmm = iso_find_vmm(path, sizeof path);
    iso_probe_put_text(&p, "binary", vmm ? vmm : "");
    iso_probe_put_text(&p, "path", path);
    if (vmm)
        iso_probe_fmt(detail, sizeof detail, "%s at %s", vmm, path);
    else
        iso_probe_fmt(detail, sizeof detail,
                      "no firecracker, cloud-hypervisor or "
                      "qemu-system-x86_64 on PATH");
    iso_probe_verdict(&p, vmm != NULL, detail,
                      "microvm cells need a VMM: install firecracker, "
                      "cloud-hypervisor or qemu-system-x86_64");
}

/* ---- all ---------------------------------------------------------------- */

int iso_probe_host(const iso_runtime_info *python, iso_value *out,
                   iso_error *err)
{
    static void (*const probes[])(iso_value *, bool *) = {
        probe_seccomp,    probe_no_new_privs, probe_landlock, iso_probe_bpf,
        iso_probe_cgroup, probe_userns,       probe_kvm,      probe_vmm,
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
