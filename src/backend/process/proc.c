/*
 * The process backend, host side: one confined luaisolate-cell process per
 * cell, forked by a zygote (a worker with CPython initialised and no guest
 * code), spoken to in frames (wire.c) on the Lua thread itself: no extra
 * thread, no extra hop. Everything a guest sends is decoded as data,
 * checked against the frame rules, and a malformed frame kills the cell.
 *
 * Longer than 600 lines because the zygote, a worker's start, its frames and
 * the ops share one worker state (proc) and the zygote's lock; the warm pool of
 * workers is proc_pool.c's already.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "cgroup.h"
#include "confine.h"
#include "handoff.h"
#include "netguard.h"
#include "guest.h"
#include "msg.h"
#include "proc_pool.h"
#include "wire.h"
#include "zygote.h"

#define START_TIMEOUT_S 10.0
#define STOP_GRACE_S 2.0
#define EXITS_MAX 1024

extern char **environ;

/* A process cell's backend state: its worker. */
struct iso_backend_cell {
    pid_t pid;
    iso_wire wire;
    int sock, note; /* frames; the reading end of the death note */
    iso_cgroup cg;
    bool has_cg;
    bool guarded;        /* the BPF guard covers its cgroup */
    iso_host_hooks host; /* given at start: what the host hears from us */
    char name[ISO_NAME_MAX + 1];
    char **caps; /* the capabilities request() may use */
    size_t n_caps;
    int64_t output_bytes, mem_limit; /* limits.output_bytes, .mem; 0: none */
    iso_plan *plan;      /* the cell's plan as it is now (a reload swaps it) */
    uint64_t awaiting;   /* the request whose RESULT is due (0: none) */
    bool reload_pending; /* a reload while busy: sent before the next frame */
    char guard_why[600]; /* why it does not */
    int64_t output_used; /* posted, logged, measured: counted by the host */
};
typedef struct iso_backend_cell proc;

/* The zygote, shared by every process cell of this host. */
static struct {
    pthread_mutex_t mu;
    pid_t pid;
    int ctl;
    struct {
        pid_t pid;
        int status;
    } exits[EXITS_MAX]; /* reported by the zygote, not yet claimed */
    size_t n_exits;
    unsigned char token[ISO_ZYGOTE_TOKEN]; /* every SPAWN carries it */
} zyg = {PTHREAD_MUTEX_INITIALIZER, 0, -1, {{0, 0}}, 0, {0}};

/* ---- finding and starting the worker ----------------------------------- */

static bool executable(const char *path)
{
    return access(path, X_OK) == 0;
}

/* Next to the host, next to the module in a build tree or a rock tree, or
 * where this build put it. */
static bool find_worker(char *out, size_t n)
{
    char base[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", base, sizeof base - 1);
    if (len > 0) {
        base[len] = '\0';
        snprintf(out, n, "%.*s/luaisolate-cell",
                 (int)(strrchr(base, '/') - base), base);
        if (executable(out))
            return true;
    }
    Dl_info self;
    if (dladdr((void *)find_worker, &self) && self.dli_fname) {
        const char *slash = strrchr(self.dli_fname, '/');
        int dir = slash ? (int)(slash - self.dli_fname) : 0;
        const char *up[] = {"/../luaisolate-cell",
                            "/../../../../bin/luaisolate-cell"};
        for (int i = 0; i < 2; i++) {
            snprintf(out, n, "%.*s%s", dir, self.dli_fname, up[i]);
            if (executable(out))
                return true;
        }
    }
    snprintf(out, n, "%s", ISO_CELL_BIN);
    return executable(out);
}

static int proc_check(iso_error *err)
{
    char path[PATH_MAX];
    if (!find_worker(path, sizeof path))
        return iso_error_set(err, ISO_NOT_IMPLEMENTED,
                             "backend 'process' is not available: the "
                             "luaisolate-cell worker is not installed next "
                             "to the host or the module (looked for %s)",
                             ISO_CELL_BIN);
    return 0;
}

static void zygote_lost(void);

/* PR_SET_PDEATHSIG (set by the zygote on itself) fires when the THREAD
 * that started it ends, not the process: so the zygote is always started
 * from a thread of its own that lives as long as the host, never from
 * whichever thread first needed a process cell. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running, asked;
    const char *path;
    char **argv, **envp;
    const posix_spawn_file_actions_t *fa;
    const posix_spawnattr_t *attr;
    int result;
} starter = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *starter_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&starter.mu);
    for (;;) {
        while (!starter.asked)
            pthread_cond_wait(&starter.cv, &starter.mu);
        starter.result = posix_spawn(&zyg.pid, starter.path, starter.fa,
                                     starter.attr, starter.argv, starter.envp);
        starter.asked = false;
        pthread_cond_broadcast(&starter.cv);
    }
    return NULL;
}

/* posix_spawn on the starter thread; 0 or an errno. */
static int spawn_on_starter(const char *path,
                            const posix_spawn_file_actions_t *fa,
                            const posix_spawnattr_t *attr, char **argv,
                            char **envp)
{
    pthread_mutex_lock(&starter.mu);
    if (!starter.running)
        starter.running = iso_thread_detached(starter_main);
    int rc = starter.running ? 0 : EAGAIN;
    if (rc == 0) {
        starter.path = path, starter.fa = fa, starter.attr = attr;
        starter.argv = argv, starter.envp = envp;
        starter.asked = true;
        pthread_cond_broadcast(&starter.cv);
        while (starter.asked)
            pthread_cond_wait(&starter.cv, &starter.mu);
        rc = starter.result;
    }
    pthread_mutex_unlock(&starter.mu);
    return rc;
}

/* The zygote starts with no signal blocked and the host's termination
 * signals at their defaults, whatever the starting thread had, in a
 * process group of its own: a terminal's Ctrl-C is the host's to handle
 * (the zygote and its cells end when the host does). */
static void spawn_attr(posix_spawnattr_t *attr)
{
    sigset_t none, deflt;
    sigemptyset(&none);
    sigemptyset(&deflt);
    sigaddset(&deflt, SIGINT), sigaddset(&deflt, SIGTERM);
    sigaddset(&deflt, SIGHUP), sigaddset(&deflt, SIGPIPE);
    posix_spawnattr_init(attr);
    posix_spawnattr_setsigmask(attr, &none);
    posix_spawnattr_setsigdefault(attr, &deflt);
    posix_spawnattr_setpgroup(attr, 0);
    posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK |
                                       POSIX_SPAWN_SETSIGDEF |
                                       POSIX_SPAWN_SETPGROUP);
}

/* posix_spawn, so a host with cell threads never forks itself. The zygote
 * is told the host's pid (it re-checks its parent after PDEATHSIG) and
 * the host's cells cgroup (which it kills when the host goes away). */
static void at_exit(void)
{
    iso_shutdown(false); /* host_enter registered the leaving itself */
}

/* Once the host has a zygote, its end (iso_shutdown, lifecycle.c) runs at
 * exit: registered once. */
static void shutdown_at_exit(void)
{
    static _Atomic bool armed;
    if (!atomic_exchange(&armed, true))
        atexit(at_exit);
}

static int zygote_start(iso_error *err)
{
    char path[PATH_MAX], host[24], cells[ISO_PATH_MAX] = "-";
    int sv[2];
    if (!find_worker(path, sizeof path))
        return proc_check(err);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
        return iso_error_set(err, ISO_CRASHED, "socketpair: %s",
                             strerror(errno));
    iso_error cg_err = {0};
    if (iso_cgroup_cells_dir(cells, sizeof cells, &cg_err))
        snprintf(cells, sizeof cells, "-"); /* cells have no cgroup either */
    iso_error_clear(&cg_err);
    snprintf(host, sizeof host, "%ld", (long)getpid());
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], ISO_ZYGOTE_FD);
    spawn_attr(&attr);
    char *argv[] = {"luaisolate-cell", "--zygote", host, cells, NULL};
    /* No host variable reaches a cell. LD_BIND_NOW: the loader resolves
     * every symbol in the zygote, once, so no child writes (and copies) a
     * page of the libraries' tables on its first call of each function;
     * the zygote drops it before CPython reads its environment. */
    char *envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "LANG=C.UTF-8",
                    "LD_BIND_NOW=1", NULL};
    int e = spawn_on_starter(path, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(sv[1]);
    if (e) {
        close(sv[0]);
        return iso_error_set(err, ISO_CRASHED, "cannot start %s: %s", path,
                             strerror(e));
    }
    zyg.ctl = sv[0];
    shutdown_at_exit();
    if (iso_zygote_hello(zyg.ctl, zyg.token) == 0)
        return 0;
    zygote_lost(); /* it reads the token first or ends */
    return iso_error_set(err, ISO_CRASHED, "cannot hand the zygote its token");
}

/* Read one control record (waiting until deadline); EXITs are filed. */
static int zygote_read(iso_zygote_msg *m, double deadline)
{
    struct pollfd p = {.fd = zyg.ctl, .events = POLLIN};
    double left = deadline - iso_now();
    int ms = deadline < 0 ? -1 : left > 0 ? (int)(left * 1000) + 1 : 0;
    if (poll(&p, 1, ms) <= 0)
        return -1;
    int fds[ISO_ZYGOTE_MAX_FDS];
    if (iso_zygote_recv(zyg.ctl, m, fds) <= 0)
        return -2; /* the zygote is gone */
    for (int i = 0; i < ISO_ZYGOTE_MAX_FDS; i++)
        if (fds[i] >= 0)
            close(fds[i]); /* the zygote sends none: not ours to keep */
    if (m->type == ISO_ZYGOTE_EXIT && zyg.n_exits < EXITS_MAX) {
        zyg.exits[zyg.n_exits].pid = m->pid;
        zyg.exits[zyg.n_exits++].status = m->status;
    }
    return 0;
}

static void zygote_lost(void)
{
    close(zyg.ctl);
    zyg.ctl = -1;
    waitpid(zyg.pid, NULL, 0);
    zyg.pid = 0;
}

/* The wait status of pid, once the zygote reaped it; -1 if not by then. */
static int exit_status(pid_t pid, double deadline)
{
    iso_zygote_msg m;
    for (;;) {
        for (size_t i = 0; i < zyg.n_exits; i++)
            if (zyg.exits[i].pid == pid) {
                int status = zyg.exits[i].status;
                zyg.exits[i] = zyg.exits[--zyg.n_exits];
                return status;
            }
        if (zyg.ctl < 0)
            return -1; /* no zygote: nobody reaps it or tells */
        int rc = zygote_read(&m, deadline);
        if (rc == -2)
            zygote_lost();
        if (rc)
            return -1;
    }
}

static int send_spawn(iso_zygote_msg *m, const int *fds, int nfds)
{
    memcpy(m->token, zyg.token, sizeof m->token);
    return iso_zygote_send(zyg.ctl, m, fds, nfds);
}

/* Ask the zygote for a child serving (sock, note), created in the cgroup
 * whose directory is cgroup_fd (-1: none). start: a zygote may be started
 * for it (the pool's refills never start one: a host that shut its cells
 * down must not get a zygote back from a refill). The zygote lock held. */
static pid_t zygote_spawn(int sock, int note, int cgroup_fd, int flags,
                          bool start, iso_error *err)
{
    if (zyg.ctl < 0 && !start)
        return iso_error_set(err, ISO_CRASHED, "no zygote");
    if (zyg.ctl < 0 && zygote_start(err))
        return -1;
    iso_zygote_msg m = {.type = ISO_ZYGOTE_SPAWN, .flags = flags};
    int fds[3] = {sock, note, cgroup_fd};
    int nfds = cgroup_fd >= 0 ? 3 : 2;
    if (send_spawn(&m, fds, nfds)) {
        zygote_lost(); /* it died since: once more with a new one */
        if (!start || zygote_start(err) || send_spawn(&m, fds, nfds))
            return iso_error_set(err, ISO_CRASHED, "the zygote is gone");
    }
    double deadline = iso_now() + START_TIMEOUT_S;
    do {
        int rc = zygote_read(&m, deadline);
        if (rc)
            return iso_error_set(err, ISO_CRASHED, "the zygote did not answer");
    } while (m.type != ISO_ZYGOTE_SPAWNED);
    if (m.pid < 0)
        return iso_error_set(err, ISO_CRASHED, "fork: %s", strerror(m.status));
    return m.pid;
}

/* ---- the config frame -------------------------------------------------- */

static int put(iso_value *map, const char *key, iso_value **v)
{
    iso_value *k;
    if (iso_map_append(map, &k, v))
        return -1;
    return iso_value_set_string(k, ISO_STR, key, strlen(key));
}

static int put_str(iso_value *map, const char *key, const char *s)
{
    iso_value *v;
    return put(map, key, &v) || iso_value_set_string(v, ISO_STR, s, strlen(s));
}

static int put_strings(iso_value *map, const char *key, const char *const *list,
                       size_t n)
{
    iso_value *v;
    if (put(map, key, &v))
        return -1;
    iso_value_set_list(v);
    for (size_t i = 0; i < n; i++) {
        iso_value *item = iso_list_append(v);
        if (!item ||
            iso_value_set_string(item, ISO_STR, list[i], strlen(list[i])))
            return -1;
    }
    return 0;
}

static int put_limits(iso_value *map, const iso_cell_config *cfg)
{
    const char *names[] = {"cpu_ms", "mem", "open_files", "output_bytes",
                           "processes"};
    int64_t values[] = {cfg->cpu_ms, cfg->mem_bytes, cfg->open_files,
                        cfg->output_bytes, cfg->processes};
    iso_value *limits, *v;
    if (put(map, "limits", &limits))
        return -1;
    iso_value_set_map(limits);
    for (int i = 0; i < 5; i++) {
        if (values[i] <= 0 && i != 4)
            continue; /* not set */
        if (put(limits, names[i], &v))
            return -1;
        iso_value_set_int(v, values[i]);
    }
    return 0;
}

/* The worker's seccomp program, compiled here (once per distinct policy
 * key: the cache) so that the worker only installs it. */
static int put_filter(iso_value *map, const iso_worker_filter *f)
{
    iso_value *v, *k, *prog, *traps;
    if (put(map, "seccomp", &v))
        return -1;
    iso_value_set_map(v);
    if (iso_map_append(v, &k, &prog) ||
        iso_value_set_string(k, ISO_STR, "program", 7) ||
        iso_value_set_string(prog, ISO_BYTES, (const char *)f->prog.filter,
                             f->prog.len * sizeof *f->prog.filter) ||
        iso_map_append(v, &k, &traps) ||
        iso_value_set_string(k, ISO_STR, "traps", 5))
        return -1;
    iso_value_set_list(traps);
    for (size_t i = 0; i < f->n_traps; i++) {
        iso_value *row = iso_list_append(traps), *x;
        if (!row)
            return -1;
        iso_value_set_list(row);
        if (!(x = iso_list_append(row)))
            return -1;
        iso_value_set_int(x, f->traps[i].nr);
        if (!(x = iso_list_append(row)) ||
            iso_value_set_string(x, ISO_STR, f->traps[i].name,
                                 strlen(f->traps[i].name)))
            return -1;
    }
    return 0;
}

/* What the worker would compile from its CONFIG, compiled by the host.
 * A policy it cannot compile goes without: the worker then builds the
 * filter itself and fails its confinement with the reason. */
static int compiled_filter(const iso_cell_config *cfg, iso_mode mode,
                           iso_value *map)
{
    iso_confine_config cc = {
        .compat = mode == ISO_MODE_COMPAT,
        .audit = mode == ISO_MODE_LEARN,
        .processes = cfg->processes,
        .deny_syscalls = cfg->deny_syscalls,
        .n_deny = cfg->n_deny_syscalls,
    };
    iso_worker_filter f;
    iso_error err = {0};
    int rc = iso_confine_net_from_plan(&cc, cfg->plan, &err);
    bool have = rc == 0 && iso_confine_worker_filter(&cc, &f, &err) == 0;
    iso_confine_net_free(&cc);
    iso_error_clear(&err);
    if (rc)
        return -1; /* out of memory */
    rc = have ? put_filter(map, &f) : 0;
    if (have)
        iso_worker_filter_free(&f);
    return rc;
}

static int config_value(const iso_cell_config *cfg, const proc *p,
                        iso_value *map)
{
    iso_value *fs, *net;
    iso_value_set_map(map);
    int rc = put_str(map, "name", cfg->name) ||
             put_strings(map, "imports", cfg->imports, cfg->n_imports) ||
             put_strings(map, "capabilities", cfg->capabilities,
                         cfg->n_capabilities) ||
             put_strings(map, "syscalls_deny", cfg->deny_syscalls,
                         cfg->n_deny_syscalls) ||
             put_limits(map, cfg) || put(map, "fs", &fs) ||
             put(map, "net", &net) || iso_plan_to_value(cfg->plan, fs, net);
    (void)p;     /* its cgroup: the worker is in it before its CONFIG */
    if (rc == 0) /* compat mode: the minimal seccomp list */
        rc = put_str(map, "mode", iso_mode_name_at((int)p->host.mode));
    if (rc == 0 && p->guarded) /* Landlock leaves connect to it */
        rc = put_str(map, "connect", "bpf");
    if (rc == 0)
        rc = compiled_filter(cfg, p->host.mode, map);
    return rc;
}

/* ---- death ------------------------------------------------------------- */

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void cleanup(proc *p)
{
    iso_error err = {0};
    iso_host_unguard(&p->host);
    if (p->has_cg) {
        iso_cgroup_kill(&p->cg, &err);
        iso_cgroup_remove(&p->cg, &err);
        p->has_cg = false;
    }
    iso_error_clear(&err);
    if (p->sock >= 0)
        close(p->sock);
    if (p->note >= 0)
        close(p->note);
    p->sock = p->note = -1;
    iso_wire_free(&p->wire);
}

static void kill_worker(proc *p)
{
    iso_error err = {0};
    if (!p->has_cg || iso_cgroup_kill(&p->cg, &err))
        kill(p->pid, SIGKILL);
    iso_error_clear(&err);
}

size_t iso_death_note_clean(char *note)
{
    size_t n = 0;
    for (const char *s = note; *s; s++)
        if (*s >= 0x20 && *s < 0x7f)
            note[n++] = *s;
    note[n] = '\0';
    return n;
}

/* A death note "seccomp: NAME" (confine_seccomp.c's SIGSYS handler) names
 * the system call the filter refused: err->syscall, as the worker claims
 * it (cleaned, and cut to the field). */
static void note_syscall(const char *note, iso_error *err)
{
    static const char prefix[] = "seccomp: ";
    if (strncmp(note, prefix, sizeof prefix - 1) != 0)
        return;
    const char *name = note + sizeof prefix - 1;
    size_t n = strnlen(name, sizeof err->syscall - 1);
    memcpy(err->syscall, name, n);
    err->syscall[n] = '\0';
}

/* Why it died: the host's own observation (its wait status) first; the
 * death note is the cell's claim, bounded, cleaned and shown as one. */
static int death_reason(proc *p, iso_error *err)
{
    char note[256] = "";
    fcntl(p->note, F_SETFL, O_NONBLOCK);
    ssize_t n = read(p->note, note, sizeof note - 1);
    note[n > 0 ? n : 0] = '\0';
    iso_death_note_clean(note);
    pthread_mutex_lock(&zyg.mu);
    int st = exit_status(p->pid, iso_now() + 1.0);
    pthread_mutex_unlock(&zyg.mu);
    if (st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGXCPU)
        return iso_error_set(err, ISO_CPU, "cell '%s' exceeded limits.cpu_ms",
                             p->name);
    if (note[0]) {
        iso_error_set(err, ISO_CRASHED, "cell '%s' died; it reported: %s",
                      p->name, note);
        note_syscall(note, err);
        return -1;
    }
    if (st != -1 && WIFSIGNALED(st)) {
        iso_error_set(err, ISO_CRASHED, "cell '%s' was killed by %s", p->name,
                      strsignal(WTERMSIG(st)));
        err->signal = WTERMSIG(st);
        return -1;
    }
    return iso_error_set(err, ISO_CRASHED, "cell '%s' exited (status %d)",
                         p->name, st != -1 ? WEXITSTATUS(st) : -1);
}

/* Kill the worker and claim its exit, without a reason from it. */
static void put_down(proc *p)
{
    kill_worker(p);
    pthread_mutex_lock(&zyg.mu);
    exit_status(p->pid, iso_now() + 1.0);
    pthread_mutex_unlock(&zyg.mu);
}

/* The worker is gone or misbehaved: make sure of it and say why. */
static int died(proc *p, iso_error *err)
{
    if (err->kind == ISO_OUTPUT) { /* the host's verdict: kept as is */
        put_down(p);
    } else if (ISO_WIRE_VIOLATED(err)) {
        put_down(p);
        char why[sizeof err->message];
        snprintf(why, sizeof why, "%s", err->message);
        iso_error_set(err, ISO_CRASHED, "cell '%s' broke the protocol (%s)",
                      p->name, why);
        err->code = ISO_E_PROTOCOL;
    } else {
        death_reason(p, err);
    }
    cleanup(p);
    iso_host_retire(&p->host, ISO_STATE_DEAD);
    return -1;
}

/* ---- frames <-> messages ----------------------------------------------- */

static const int frame_msg_types[] = {
    [ISO_FRAME_RESULT] = ISO_MSG_RESULT,   [ISO_FRAME_POST] = ISO_MSG_POST,
    [ISO_FRAME_LOG] = ISO_MSG_LOG,         [ISO_FRAME_METRIC] = ISO_MSG_METRIC,
    [ISO_FRAME_REQUEST] = ISO_MSG_REQUEST, [ISO_FRAME_DENIAL] = ISO_MSG_DENIAL,
};

static int send_frame(proc *p, iso_frame *f, iso_error *err)
{
    int rc = iso_wire_send(&p->wire, f, err);
    iso_frame_clear(f);
    return rc;
}

/* ---- what a worker sends is untrusted ---------------------------------- */

static int violation(iso_error *err, const char *what)
{
    return iso_wire_violation(err, "%s", what);
}

bool iso_worker_kind_allowed(iso_kind kind, int64_t mem_limit)
{
    return kind == ISO_GUEST || kind == ISO_VALUE ||
           (kind == ISO_MEMORY && mem_limit > 0);
}

static bool is_str(const iso_value *v, size_t max)
{
    return v->type == ISO_STR && v->u.str.len <= max;
}

/* A result answers the running request, once, with a kind a worker may
 * report: timeout, cpu, crashed... come from the host's own eyes. */
static int check_result(const proc *p, const iso_frame *f, iso_error *err)
{
    if (!p->awaiting || f->seq != p->awaiting)
        return violation(err, "a RESULT for no running request");
    if (f->error.kind != ISO_OK &&
        !iso_worker_kind_allowed(f->error.kind, p->mem_limit))
        return violation(err, "a RESULT with a verdict only the host gives");
    return 0;
}

/* [capability, action, payload], one at a time: the worker waits for its
 * answer before it sends another. */
static int check_request(const proc *p, const iso_frame *f, iso_error *err)
{
    const iso_value *it = f->value.u.seq.items;
    if (!is_str(&it[0], ISO_REQUEST_TEXT_MAX) ||
        !is_str(&it[1], ISO_REQUEST_TEXT_MAX))
        return violation(err, "a REQUEST whose capability or action is not "
                              "a short string");
    if (iso_host_request_waiting(&p->host))
        return violation(err, "a second REQUEST before the first was answered");
    return 0;
}

static int check_denial(const iso_frame *f, iso_error *err)
{
    for (size_t i = 0; i < f->value.u.seq.len; i++)
        if (f->value.u.seq.items[i].type != ISO_STR)
            return violation(err, "a DENIAL with an item that is not a string");
    return 0;
}

/* limits.output_bytes, counted again here as the worker counts it: a
 * worker that sends more than it may lied. */
static int charge_output(proc *p, const iso_frame *f, iso_error *err)
{
    int64_t n = (int64_t)iso_value_string_bytes(&f->value);
    if (p->output_bytes <= 0 || p->output_used + n <= p->output_bytes) {
        p->output_used += n;
        return 0;
    }
    return iso_error_set(err, ISO_OUTPUT,
                         "cell '%s' sent more than limits.output_bytes=%lld "
                         "(its worker should have refused it)",
                         p->name, (long long)p->output_bytes);
}

static int check_frame(proc *p, const iso_frame *f, iso_error *err)
{
    switch (f->type) {
    case ISO_FRAME_RESULT:
        return check_result(p, f, err);
    case ISO_FRAME_REQUEST:
        return check_request(p, f, err);
    case ISO_FRAME_DENIAL:
        return check_denial(f, err);
    case ISO_FRAME_POST:
    case ISO_FRAME_LOG:
    case ISO_FRAME_METRIC:
        return charge_output(p, f, err);
    default:
        return violation(err, "a frame a ready worker never sends");
    }
}

static bool granted(const proc *p, const iso_value *cap)
{
    for (size_t i = 0; i < p->n_caps; i++)
        if (strlen(p->caps[i]) == cap->u.str.len &&
            memcmp(p->caps[i], cap->u.str.ptr, cap->u.str.len) == 0)
            return true;
    return false;
}

/* The host's own denial of capability cap: source "host". */
static iso_msg *host_denial(const iso_value *cap)
{
    const char *items[] = {"capability", "request", NULL, "default deny",
                           "broker"};
    iso_msg *m = iso_msg_new(ISO_MSG_DENIAL);
    int rc = m ? 0 : -1;
    if (m)
        iso_value_set_list(&m->value);
    for (int i = 0; rc == 0 && i < 5; i++) {
        iso_value *v = iso_list_append(&m->value);
        rc = !v ? -1
             : items[i]
                 ? iso_value_set_string(v, ISO_STR, items[i], strlen(items[i]))
                 : iso_value_copy(v, cap);
    }
    if (rc == 0 && iso_denial_mark(m, "host") == 0)
        return m;
    iso_msg_destroy(m);
    return NULL;
}

/* An ungranted REQUEST (the worker checks grants, so it was forged) never
 * reaches a handler: the host answers it with an error and records a
 * denial of its own. */
static int refuse_request(proc *p, const iso_value *cap, iso_error *err)
{
    iso_frame f = {.type = ISO_FRAME_REPLY, .time = iso_wallclock()};
    iso_error_set(&f.error, ISO_POLICY,
                  "capability '%.200s' is not granted to this cell",
                  cap->u.str.ptr);
    iso_error ignored = {0};
    send_frame(p, &f, &ignored); /* a dead worker shows at the next read */
    iso_error_clear(&ignored);
    iso_msg *m = host_denial(cap);
    if (!m)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    return iso_host_deliver(&p->host, m, err);
}

static int deliver(proc *p, iso_frame *f, iso_error *err)
{
    if (check_frame(p, f, err)) /* it knows every type a worker sends */
        return -1;
    if (f->type == ISO_FRAME_REQUEST && p->host.mode != ISO_MODE_LEARN &&
        !granted(p, &f->value.u.seq.items[0])) /* learn: the guest told */
        return refuse_request(p, &f->value.u.seq.items[0], err);
    if (f->type == ISO_FRAME_RESULT)
        p->awaiting = 0; /* answered: another RESULT for it is a lie */
    iso_msg *m = iso_msg_new(frame_msg_types[f->type]);
    if (!m)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    m->time = f->time;
    iso_value_move(&m->value, &f->value);
    iso_error_move(&m->error, &f->error);
    if (m->type == ISO_MSG_DENIAL && iso_denial_mark(m, "cell")) {
        iso_msg_destroy(m);
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    }
    return iso_host_deliver(&p->host, m, err);
}

/* The worker is dead: what it sent before it died may still wait in the
 * socket. Its posts and events are kept (its result no longer counts). */
static void salvage(proc *p)
{
    iso_error err = {0};
    for (int rc = 0; rc == 0;) {
        iso_frame f = {0};
        if (p->sock < 0 || iso_wire_recv(&p->wire, &f, 0, &err))
            break;
        bool keep = f.type != ISO_FRAME_RESULT && f.type != ISO_FRAME_REQUEST;
        rc = keep ? deliver(p, &f, &err) : 0;
        iso_frame_clear(&f);
    }
    iso_error_clear(&err);
}

/* A reload reaches the worker's python-guard as a RELOAD frame with the
 * cell's plan as it is now. A busy worker reads frames only at its next
 * request() or request, so while busy only the latest plan is sent, just
 * before the next frame it will read (a reload storm never fills the
 * socket); an idle one takes it at once and says so. */
static int send_reload(proc *p, iso_error *err)
{
    iso_frame f = {.type = ISO_FRAME_RELOAD, .time = iso_wallclock()};
    iso_value *fs, *net;
    iso_value_set_map(&f.value);
    p->reload_pending = false;
    if (put(&f.value, "fs", &fs) || put(&f.value, "net", &net) ||
        iso_plan_to_value(p->plan, fs, net)) {
        iso_frame_clear(&f);
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    }
    return send_frame(p, &f, err);
}

static int proc_reload(proc *p, iso_plan *plan, bool busy, iso_error *err)
{
    iso_plan_unref(p->plan);
    p->plan = iso_plan_ref(plan);
    if (busy) {
        p->reload_pending = true;
        return 0;
    }
    if (send_reload(p, err))
        return died(p, err);
    for (double deadline = iso_now() + START_TIMEOUT_S;;) {
        iso_frame r = {0};
        if (iso_wire_recv(&p->wire, &r, deadline, err)) {
            if (err->kind == ISO_TIMEOUT) /* one that cannot say: gone */
                kill_worker(p);
            return died(p, err);
        }
        bool done = r.type == ISO_FRAME_RELOADED;
        int rc = done ? 0 : deliver(p, &r, err);
        iso_frame_clear(&r);
        if (rc)
            return died(p, err);
        if (done)
            return 1;
    }
}

/* ---- iso_cell_ops ------------------------------------------------------ */

static int proc_receive(proc *p, double deadline, iso_error *err)
{
    for (int n = 0;; n++) {
        iso_frame f = {0};
        if (iso_wire_recv(&p->wire, &f, n ? 0 : deadline, err)) {
            if (err->kind != ISO_TIMEOUT)
                return died(p, err);
            iso_error_clear(err);
            return 0;
        }
        /* the word on a reload a busy worker took later: nothing to do */
        int rc = f.type == ISO_FRAME_RELOADED ? 0 : deliver(p, &f, err);
        iso_frame_clear(&f);
        if (rc)
            return died(p, err);
    }
}

static int proc_submit(proc *p, iso_req *r, iso_error *err)
{
    iso_frame f = {.type = r->type == ISO_REQ_EXEC ? ISO_FRAME_EXEC
                                                   : ISO_FRAME_CALL,
                   .seq = r->seq,
                   .time = iso_wallclock()};
    p->awaiting = r->seq;
    f.text = r->text;
    r->text = NULL;
    iso_value_move(&f.value, &r->args);
    iso_req_destroy(r);
    if (f.type == ISO_FRAME_CALL && f.value.type != ISO_LIST)
        iso_value_set_list(&f.value);
    if ((!p->reload_pending || send_reload(p, err) == 0) &&
        send_frame(p, &f, err) == 0)
        return 0;
    iso_frame_clear(&f);
    p->awaiting = 0;
    return err->kind == ISO_CRASHED ? died(p, err) : -1;
}

static void proc_reply(proc *p, iso_value *value, const char *error)
{
    iso_frame f = {.type = ISO_FRAME_REPLY, .time = iso_wallclock()};
    iso_error err = {0};
    if (error)
        iso_error_set(&f.error, ISO_GUEST, "%s", error);
    else if (value)
        iso_value_move(&f.value, value);
    if (p->reload_pending) /* request() takes it before its reply */
        send_reload(p, &err);
    iso_error_clear(&err);
    send_frame(p, &f, &err); /* a dead worker shows up at the next receive */
    iso_error_clear(&err);
}

/* Past wall_ms: the whole cgroup dies; the cell is closed. */
static bool proc_overrun(proc *p, double overdue, double *again)
{
    (void)overdue, (void)again; /* killed at once: never called again */
    put_down(p);
    salvage(p);
    cleanup(p);
    iso_host_retire(&p->host, ISO_STATE_DEAD);
    return false;
}

static void proc_stop(proc *p, bool force, bool busy)
{
    iso_frame f = {.type = ISO_FRAME_STOP, .time = iso_wallclock()};
    iso_error err = {0};
    if (force || busy || send_frame(p, &f, &err))
        kill_worker(p);
    iso_error_clear(&err);
    pthread_mutex_lock(&zyg.mu);
    if (exit_status(p->pid, iso_now() + STOP_GRACE_S) == -1) {
        kill_worker(p);
        exit_status(p->pid, iso_now() + STOP_GRACE_S);
    }
    pthread_mutex_unlock(&zyg.mu);
    salvage(p);
    cleanup(p);
    iso_host_retire(&p->host, force ? ISO_STATE_DEAD : ISO_STATE_CLOSED);
}

static void proc_destroy(proc *p)
{
    if (p) {
        cleanup(p);
        iso_plan_unref(p->plan);
        free_strings(p->caps, p->n_caps);
    }
    free(p);
}

/* ---- start ------------------------------------------------------------- */

/* ---- workers, made ahead (the pool) or for one spawn ------------------- */

/* A worker past its policy-independent confinement, waiting for its
 * CONFIG: frames, death note, and the cgroup it was created in. */
static void warm_close(iso_proc_warm *w)
{
    if (w->sock >= 0)
        close(w->sock);
    if (w->note >= 0)
        close(w->note);
    w->sock = w->note = -1;
}

static int socket_pairs(int sv[2], int note[2], iso_error *err)
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return iso_error_set(err, ISO_CRASHED, "socketpair: %s",
                             strerror(errno));
    /* the death note is a socket too: a pipe's end can be reopened through
     * /proc/self/fd/N by a sub-interpreter guest (Landlock does not mediate
     * pipes), a socket cannot */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, note)) {
        close(sv[0]), close(sv[1]);
        return iso_error_set(err, ISO_CRASHED, "socketpair: %s",
                             strerror(errno));
    }
    shutdown(note[0], SHUT_WR), shutdown(note[1], SHUT_RD);
    return 0;
}

/* Its cgroup (no limits yet: they are the policy's) and its id; none is
 * not an error here (the cell reports the layer missing, and says why),
 * but for a pooled worker once the host's process cells have ended.
 * Returns the error's kind, 0 when it has its cgroup. */
static int warm_cgroup(const char *name, bool pooled, iso_proc_warm *w)
{
    iso_error err = {0};
    w->has_cg = (pooled ? iso_cgroup_create_pooled(name, &w->cg, &err)
                        : iso_cgroup_create(name, -1, -1, &w->cg, &err)) == 0;
    w->cg_made_at = iso_now();
    if (w->has_cg && iso_cgroup_id_of(w->cg.path, &w->cg_id, &err) < 0)
        w->cg_id = 0; /* the guard looks again */
    if (!w->has_cg)
        snprintf(w->cg_why, sizeof w->cg_why, "%.399s", err.message);
    int kind = (int)err.kind;
    iso_error_clear(&err);
    return kind;
}

/* A pool worker says WAITING once it is past its early confinement and
 * its page faults: only then is it ready to be taken. */
static int await_waiting(iso_proc_warm *w, iso_error *err)
{
    iso_wire wire;
    iso_frame f = {0};
    iso_wire_init(&wire, w->sock);
    int rc = iso_wire_recv(&wire, &f, iso_now() + START_TIMEOUT_S, err);
    if (rc == 0 && (f.type != ISO_FRAME_WAITING || wire.len != wire.off))
        rc = iso_wire_violation(err, "expected WAITING");
    iso_frame_clear(&f);
    iso_wire_free(&wire);
    return rc;
}

int iso_proc_warm_make(const char *name, bool pooled, iso_proc_warm *w,
                       iso_error *err)
{
    int sv[2], note[2];
    memset(w, 0, sizeof *w);
    w->sock = w->note = -1;
    w->pid = -1;
    if (warm_cgroup(name, pooled, w) == ISO_CLOSED)
        return iso_error_set(err, ISO_CLOSED, "the process cells have ended");
    if (socket_pairs(sv, note, err))
        return iso_proc_warm_discard(w), -1;
    w->sock = sv[0], w->note = note[0];
    int cgfd =
        w->has_cg ? open(w->cg.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    pthread_mutex_lock(&zyg.mu);
    w->pid = zygote_spawn(sv[1], note[1], cgfd, pooled ? ISO_ZYGOTE_WARM : 0,
                          !pooled, err);
    pthread_mutex_unlock(&zyg.mu);
    close(sv[1]), close(note[1]);
    if (cgfd >= 0)
        close(cgfd);
    if (w->pid < 0 || (pooled && await_waiting(w, err)))
        return iso_proc_warm_discard(w), -1;
    w->made_at = iso_now();
    return 0;
}

void iso_proc_warm_discard(iso_proc_warm *w)
{
    iso_error err = {0};
    warm_close(w); /* a waiting worker reads EOF and exits */
    if (w->has_cg)
        iso_cgroup_kill(&w->cg, &err);
    else if (w->pid > 0)
        kill(w->pid, SIGKILL);
    if (w->pid > 0 && pthread_mutex_trylock(&zyg.mu) == 0) {
        exit_status(w->pid, iso_now() + STOP_GRACE_S); /* claimed */
        pthread_mutex_unlock(&zyg.mu);
    }
    if (w->has_cg)
        iso_cgroup_remove(&w->cg, &err);
    w->has_cg = false;
    w->pid = -1;
    iso_error_clear(&err);
}

/* ---- start ------------------------------------------------------------- */

/* The cell takes worker w: the policy's cgroup limits and BPF rules go on
 * its cgroup before its CONFIG is sent (nothing of the guest runs before
 * that). */
static int adopt(const iso_cell_config *cfg, proc *p, iso_proc_warm *w,
                 iso_error *err)
{
    p->pid = w->pid, p->sock = w->sock, p->note = w->note;
    p->cg = w->cg, p->has_cg = w->has_cg;
    w->sock = w->note = -1, w->has_cg = false;
    iso_wire_init(&p->wire, p->sock);
    if (p->has_cg &&
        iso_cgroup_set_limits(&p->cg, cfg->mem_bytes ? cfg->mem_bytes : -1,
                              cfg->processes > 0 ? cfg->processes : -1, err))
        return -1;
    iso_host_phase(&p->host, "cgroup limits", iso_now());
    if (cfg->processes > 0 && !(p->has_cg && p->cg.pids))
        return iso_error_set(err, ISO_NOT_IMPLEMENTED,
                             "limits.processes needs the pids controller of "
                             "cgroup v2, which this host does not offer");
    if (!p->has_cg)
        snprintf(p->guard_why, sizeof p->guard_why,
                 "the BPF guard sees cgroups, and this cell has none (%.400s)",
                 w->cg_why);
    else
        p->guarded = iso_host_guard(&p->host, p->cg.path, w->cg_id,
                                    p->guard_why, sizeof p->guard_why);
    iso_host_phase(&p->host, "bpf rules", iso_now());
    return 0;
}

static const iso_value *map_field(const iso_value *map, const char *key)
{
    for (size_t i = 0; map->type == ISO_MAP && i < map->u.seq.len; i++) {
        const iso_value *k = &map->u.seq.items[2 * i];
        if (k->type == ISO_STR && strcmp(k->u.str.ptr, key) == 0)
            return k + 1;
    }
    return NULL;
}

/* READY's value: {confinement = rows, phases = [[name, iso_now()]...]}:
 * the rows, copied to out. */
static int take_ready(proc *p, iso_value *v, iso_value *out, iso_error *err)
{
    const iso_value *rows = map_field(v, "confinement");
    const iso_value *phases = map_field(v, "phases");
    if (v->type != ISO_MAP || !rows || rows->type != ISO_LIST || !phases ||
        phases->type != ISO_LIST)
        return iso_wire_violation(err, "a malformed READY");
    for (size_t i = 0; i < phases->u.seq.len; i++) {
        const iso_value *ph = &phases->u.seq.items[i];
        if (ph->type == ISO_LIST && ph->u.seq.len == 2 &&
            ph->u.seq.items[0].type == ISO_STR &&
            ph->u.seq.items[1].type == ISO_FLOAT)
            iso_host_phase(&p->host, ph->u.seq.items[0].u.str.ptr,
                           ph->u.seq.items[1].u.f);
    }
    return iso_value_copy(out, rows)
               ? iso_error_set(err, ISO_MEMORY, "out of memory")
               : 0;
}

/* The worker's READY: its confinement rows and the guard's go to the host. */
static int await_ready(proc *p, iso_error *err)
{
    iso_frame f = {0};
    iso_value rows = {0};
    if (iso_wire_recv(&p->wire, &f, iso_now() + START_TIMEOUT_S, err)) {
        if (err->kind == ISO_TIMEOUT)
            kill_worker(p);
        death_reason(p, err);
        return -1;
    }
    int rc = f.type == ISO_FRAME_READY
                 ? take_ready(p, &f.value, &rows, err)
                 : iso_wire_violation(err, "expected READY");
    iso_frame_clear(&f);
    iso_host_phase(&p->host, "ready", iso_now());
    if (rc == 0 && iso_host_guard_row(&p->host, &rows, "process", p->guard_why))
        rc = iso_error_set(err, ISO_MEMORY, "out of memory");
    if (rc == 0)
        iso_host_confined(&p->host, &rows);
    iso_value_free(&rows);
    return rc;
}

static int send_config(const iso_cell_config *cfg, proc *p, iso_error *err)
{
    iso_frame f = {.type = ISO_FRAME_CONFIG, .time = iso_wallclock()};
    if (config_value(cfg, p, &f.value)) {
        iso_frame_clear(&f);
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    }
    if (send_frame(p, &f, err))
        return death_reason(p, err);
    iso_host_phase(&p->host, "config sent", iso_now());
    return 0;
}

/* What the host side checks the worker's frames against, kept from cfg:
 * 0, or -1 when out of memory. */
static int take_config(proc *p, const iso_cell_config *cfg)
{
    snprintf(p->name, sizeof p->name, "%s", cfg->name);
    p->output_bytes = cfg->output_bytes;
    p->mem_limit = cfg->mem_bytes;
    p->plan = iso_plan_ref(cfg->plan);
    p->caps = calloc(cfg->n_capabilities + 1, sizeof *p->caps);
    if (!p->caps)
        return -1;
    for (; p->n_caps < cfg->n_capabilities; p->n_caps++)
        if (!(p->caps[p->n_caps] = strdup(cfg->capabilities[p->n_caps])))
            return -1;
    return 0;
}

/* A worker from the pool, or one made now (the cold path). */
static int get_worker(proc *p, iso_proc_warm *w, iso_error *err)
{
    if (iso_proc_pool_take(w)) {
        iso_host_phase(&p->host, "from the pool", iso_now());
        return 0;
    }
    if (iso_proc_warm_make(p->name, false, w, err))
        return -1;
    iso_host_phase(&p->host, "cgroup", w->cg_made_at);
    iso_host_phase(&p->host, "fork", w->made_at);
    iso_proc_pool_wake(); /* process cells are in use: keep workers ahead */
    return 0;
}

static int proc_start(iso_cell *c, const iso_cell_config *cfg,
                      const iso_host_hooks *host, proc **out, iso_error *err)
{
    (void)c; /* the host's: the worker's state is all in p */
    proc *p = *out = calloc(1, sizeof *p);
    if (!p)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    p->sock = p->note = -1;
    p->pid = -1;
    p->host = *host;
    if (take_config(p, cfg))
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    iso_proc_warm w;
    int rc = get_worker(p, &w, err);
    if (rc == 0) {
        rc = adopt(cfg, p, &w, err);
        if (rc == 0)
            rc = send_config(cfg, p, err);
        if (rc == 0)
            rc = await_ready(p, err);
    }
    if (rc) {
        if (p->pid > 0)
            kill_worker(p);
        cleanup(p);
        return -1;
    }
    return 0;
}

static int64_t proc_cpu_ms(const proc *p)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", p ? p->pid : -1);
    FILE *f = p ? fopen(path, "r") : NULL;
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    char *s = strrchr(buf, ')'); /* fields 14, 15: utime, stime in ticks */
    unsigned long ut = 0, stime = 0;
    if (!s ||
        sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &stime) != 2)
        return 0;
    return (int64_t)(ut + stime) * 1000 / sysconf(_SC_CLK_TCK);
}

/* Its resident set. */
static int64_t proc_mem_bytes(const proc *p)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", p ? p->pid : -1);
    FILE *f = p ? fopen(path, "r") : NULL;
    long long resident = 0;
    if (f && fscanf(f, "%*d %lld", &resident) != 1)
        resident = 0;
    if (f)
        fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

void iso_process_end(void)
{
    iso_proc_pool_end(); /* before the zygote: no refill starts one again */
    /* from a signal thread the Lua thread may hold the lock (waiting for
     * an exit): the zygote still dies, and its cells with it */
    bool locked = pthread_mutex_trylock(&zyg.mu) == 0;
    if (zyg.pid > 0)
        kill(zyg.pid, SIGKILL);
    if (locked && zyg.ctl >= 0)
        zygote_lost(); /* closes the channel and reaps it */
    if (locked)
        pthread_mutex_unlock(&zyg.mu);
}

/* The socket its frames arrive on. */
static int proc_frames_fd(const proc *p)
{
    return p ? p->sock : -1;
}

const iso_cell_ops iso_process_ops = {
    .check = proc_check,
    .start = proc_start,
    .submit = proc_submit,
    .receive = proc_receive,
    .reply = proc_reply,
    .overrun = proc_overrun,
    .stop = proc_stop,
    .destroy = proc_destroy,
    .reload = proc_reload,
    .cpu_ms = proc_cpu_ms,
    .mem_bytes = proc_mem_bytes,
    .poll_fd = proc_frames_fd,
};
