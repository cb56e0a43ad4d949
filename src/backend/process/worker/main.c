/*
 * luaisolate-cell: the process backend's worker.
 *
 *   luaisolate-cell --zygote      (fd 3: the host's control socket)
 *
 * The zygote initialises CPython and the guest runtime once,
 * single-threaded, runs no guest code and forks one child per cell. A child
 * reads its CONFIG frame, confines itself (confine.c) and only then becomes a
 * cell: the same guest runtime as the sub-interpreter backend's (guest.h),
 * running on the main thread of its own process, its sink talking to the host
 * in frames (wire.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include "cgroup.h"
#include "grants.h"
#include "guest.h"
#include "handoff.h"
#include "setup.h"
#include "wire.h"
#include "zygote.h"

#define CONFIG_TIMEOUT_S 10.0

static iso_wire wire;   /* the child's connection to its host */
static iso_guest guest; /* the cell this child becomes */

/* ---- frames <-> messages ----------------------------------------------- */

static const int msg_frame_types[] = {
    [ISO_MSG_RESULT] = ISO_FRAME_RESULT,   [ISO_MSG_POST] = ISO_FRAME_POST,
    [ISO_MSG_LOG] = ISO_FRAME_LOG,         [ISO_MSG_METRIC] = ISO_FRAME_METRIC,
    [ISO_MSG_REQUEST] = ISO_FRAME_REQUEST, [ISO_MSG_DENIAL] = ISO_FRAME_DENIAL,
};

/* Send m (consumed) to the host; a host that is gone ends the cell. */
static void send_msg(iso_msg *m, uint64_t seq)
{
    iso_frame f = {
        .type = msg_frame_types[m->type], .seq = seq, .time = m->time};
    iso_value_move(&f.value, &m->value);
    iso_error_move(&f.error, &m->error);
    iso_msg_destroy(m);
    iso_error err = {0};
    int rc = iso_wire_send(&wire, &f, &err);
    iso_frame_clear(&f);
    if (rc)
        _exit(0);
}

/* The guest's sink: what it sends goes out at once (the host keeps the
 * queue limits and kills a worker that passes them). */
static int sink_send(void *ctx, iso_msg *m)
{
    (void)ctx;
    send_msg(m, 0);
    return 0;
}

/* RELOAD: the python-guard's new plan. Landlock and seccomp stay as they
 * were applied, so the cell is left with what both plans allow. Only
 * between decisions (between requests, or while request() waits): this
 * thread is the only one that decides. A plan that does not parse ends
 * the cell: it must not go on under rules its host has moved past. */
static void reload(const iso_value *value)
{
    iso_error err = {0};
    iso_plan *plan = iso_worker_plan(value, &err);
    if (!plan)
        _exit(8);
    iso_plan *old = guest.plan;
    __atomic_store_n(&guest.plan, plan, __ATOMIC_RELEASE);
    iso_plan_unref(old);
    iso_frame ack = {.type = ISO_FRAME_RELOADED, .time = iso_wallclock()};
    int rc = iso_wire_send(&wire, &ack, &err);
    iso_frame_clear(&ack);
    if (rc)
        _exit(0);
}

/* The next frame that is not a RELOAD (those are applied on the way). */
static int next_frame(iso_frame *f, iso_error *err)
{
    for (;;) {
        int rc = iso_wire_recv(&wire, f, -1, err);
        if (rc || f->type != ISO_FRAME_RELOAD)
            return rc;
        reload(&f->value);
        iso_frame_clear(f);
    }
}

/* request(): wait for the host's REPLY frame. */
static bool sink_await_reply(void *ctx, iso_value *value, char **error)
{
    (void)ctx;
    iso_frame f = {0};
    iso_error err = {0};
    if (next_frame(&f, &err) || f.type != ISO_FRAME_REPLY) {
        iso_frame_clear(&f);
        iso_error_clear(&err);
        _exit(0); /* STOP, EOF or nonsense while a request waits: done */
    }
    iso_value_move(value, &f.value);
    *error = f.error.kind ? strdup(f.error.message) : NULL;
    iso_frame_clear(&f);
    return true;
}

/* ---- the config -------------------------------------------------------- */

/* deadline: iso_now() seconds, < 0 forever (a pool child waits for its
 * cell; the host's end closing ends it) */
static int read_config(iso_value *config, double deadline, iso_error *err)
{
    iso_frame f = {0};
    if (iso_wire_recv(&wire, &f, deadline, err))
        return -1;
    if (f.type != ISO_FRAME_CONFIG) {
        iso_frame_clear(&f);
        return iso_wire_violation(err, "expected CONFIG");
    }
    iso_value_move(config, &f.value);
    iso_frame_clear(&f);
    return 0;
}

/* ---- the cell ---------------------------------------------------------- */

/* Collect once, then move every object the zygote made into the
 * collector's permanent generation (gc.freeze): a child's collections
 * never walk them, so they neither take time nor copy the pages those
 * objects live on. */
static int freeze_heap(iso_error *err)
{
    PyGC_Collect();
    PyObject *gc = iso_py_import("gc");
    PyObject *r = gc ? PyObject_CallMethod(gc, "freeze", NULL) : NULL;
    Py_XDECREF(gc);
    if (!r) {
        PyErr_Clear();
        return iso_error_set(err, ISO_CRASHED, "cannot freeze the heap");
    }
    Py_DECREF(r);
    return 0;
}

/* The guest every child becomes, set up once in the zygote before any
 * fork: the runtime only (builtins, guards, the modules they import),
 * which no policy changes. A child inherits it whole instead of paying
 * for the imports and the copy-on-write faults they take after fork. */
static int guest_prepare(iso_error *err)
{
    static iso_py_state py;
    py.ts = PyThreadState_Get();
    snprintf(guest.name, sizeof guest.name, "cell");
    guest.backend = ISO_BACKEND_PROCESS;
    guest.py = &py;
    guest.sink =
        (iso_guest_sink){.send = sink_send, .await_reply = sink_await_reply};
    if (iso_guest_setup(&guest, err))
        return -1;
    return freeze_heap(err);
}

/* Its rules, from the CONFIG: read only while it serves a request. */
static bool configure_guest(const iso_value *config, iso_plan *plan)
{
    const char *name = iso_config_str(config, "name");
    snprintf(guest.name, sizeof guest.name, "%s", name ? name : "cell");
    guest.imports =
        (char **)iso_config_strings(config, "imports", &guest.n_imports);
    guest.capabilities = (char **)iso_config_strings(config, "capabilities",
                                                     &guest.n_capabilities);
    guest.plan = plan;
    const iso_value *limits = iso_config_field(config, "limits");
    guest.output_bytes = iso_config_int(limits, "output_bytes");
    /* MemoryError: kind memory */
    guest.mem_limit = iso_config_int(limits, "mem");
    const char *mode = iso_config_str(config, "mode");
    guest.learn = mode && strcmp(mode, "learn") == 0;
    return guest.imports && guest.capabilities;
}

static void serve(void)
{
    for (;;) {
        iso_frame f = {0};
        iso_error err = {0};
        if (next_frame(&f, &err) ||
            (f.type != ISO_FRAME_EXEC && f.type != ISO_FRAME_CALL))
            _exit(ISO_WIRE_VIOLATED(&err) ? 2 : 0);
        const char *text = f.text ? f.text : "";
        iso_msg *m = iso_guest_run(&guest, f.type == ISO_FRAME_CALL, text,
                                   strlen(text), &f.value);
        uint64_t seq = f.seq;
        iso_frame_clear(&f);
        if (!m)
            _exit(3);
        send_msg(m, seq);
    }
}

/* The moments of this child's start, for the READY frame. */
static iso_worker_mark marks[8];
static size_t n_marks;

static void mark(const char *name)
{
    if (n_marks < sizeof marks / sizeof *marks)
        marks[n_marks++] = (iso_worker_mark){name, iso_now()};
}

/* What no policy decides, then for a pool child the page faults ahead;
 * then the CONFIG frame. The cell's runtime came set up from the zygote
 * (no rules yet: they come with the CONFIG, and no guest code runs before
 * the late half). Exits on failure: nothing of a guest has run. */
static void before_config(const iso_worker_fds *w, bool warm,
                          iso_confine_report *report, iso_value *config)
{
    iso_error err = {0};
    if (iso_worker_confine_early(w, report, &err)) {
        dprintf(w->note, "confinement: %s", err.message);
        _exit(5);
    }
    if (warm) {
        iso_prefault();
        mark("prefault");
        iso_frame waiting = {.type = ISO_FRAME_WAITING,
                             .time = iso_wallclock()};
        if (iso_wire_send(&wire, &waiting, &err))
            _exit(0); /* the host let go of us already */
    }
    if (read_config(config, warm ? -1 : iso_now() + CONFIG_TIMEOUT_S, &err))
        _exit(4);
    mark("config");
}

/* The child: confinement in two halves around its CONFIG, then serve
 * until STOP or EOF. */
static void run_cell(const iso_worker_fds *w, bool warm)
{
    iso_value config = {0};
    iso_error err = {0};
    iso_confine_report report = {0};
    mark("forked");
    iso_wire_init(&wire, w->sock);
    signal(SIGXFSZ, SIG_IGN); /* past output_bytes: EFBIG for the guest */
    /* as CPython does when it owns the signals: a write to a broken pipe
     * or socket is BrokenPipeError for the guest, not the worker's death */
    signal(SIGPIPE, SIG_IGN);
    before_config(w, warm, &report, &config);
    iso_plan *plan = iso_worker_plan(&config, &err);
    if (!plan ||
        iso_worker_confine_late(&config, plan, w->note, &report, &err)) {
        dprintf(w->note, "confinement: %s", err.message);
        _exit(5);
    }
    if (!configure_guest(&config, plan)) {
        dprintf(w->note, "cell set-up: out of memory");
        _exit(6);
    }
    iso_frame ready = {.type = ISO_FRAME_READY, .time = iso_wallclock()};
    if (iso_worker_ready(&report, marks, n_marks, &ready.value) ||
        iso_wire_send(&wire, &ready, &err))
        _exit(7);
    iso_frame_clear(&ready);
    serve();
}

/* ---- the zygote -------------------------------------------------------- */

static void close_fds(const int fds[ISO_ZYGOTE_MAX_FDS])
{
    for (int i = 0; i < ISO_ZYGOTE_MAX_FDS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* Fork a cell child for fds (frames, death note, its cgroup or -1),
 * created in its cgroup where the kernel can; the parent keeps none of
 * them. The child dies with the zygote (PDEATHSIG, re-checked: the
 * zygote may have died between fork and prctl). */
static pid_t fork_cell(int ctl, int sigfd, const int fds[ISO_ZYGOTE_MAX_FDS],
                       int flags)
{
    pid_t zygote_pid = getpid();
    iso_worker_fds w = {.sock = fds[0], .note = fds[1], .cgroup = fds[2]};
    PyOS_BeforeFork();
    pid_t pid = iso_fork_into(w.cgroup, &w.born_in_cgroup);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != zygote_pid)
            _exit(0);
        PyOS_AfterFork_Child();
        close(ctl);
        close(sigfd);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        run_cell(&w, flags & ISO_ZYGOTE_WARM);
        _exit(0);
    }
    PyOS_AfterFork_Parent();
    close_fds(fds);
    return pid;
}

static int reap(int ctl)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        iso_zygote_msg m = {
            .type = ISO_ZYGOTE_EXIT, .pid = pid, .status = status};
        if (send(ctl, &m, sizeof m, MSG_NOSIGNAL) < 0)
            return -1;
    }
    return 0;
}

/* The host's token, from its HELLO: a SPAWN without it is not the host's. */
static unsigned char token[ISO_ZYGOTE_TOKEN];

/* The first record: HELLO with the token, from the process that started
 * us (the socket's peer credentials say who made the pair). */
static int hello(int ctl)
{
    int fds[ISO_ZYGOTE_MAX_FDS];
    iso_zygote_msg m;
    struct ucred peer;
    socklen_t len = sizeof peer;
    if (getsockopt(ctl, SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0 ||
        peer.pid != getppid())
        return -1;
    ssize_t n = iso_zygote_recv(ctl, &m, fds);
    close_fds(fds);
    if (n <= 0 || m.type != ISO_ZYGOTE_HELLO)
        return -1;
    memcpy(token, m.token, sizeof token);
    return 0;
}

static int spawn_one(int ctl, int sigfd)
{
    int fds[ISO_ZYGOTE_MAX_FDS];
    iso_zygote_msg m;
    ssize_t n = iso_zygote_recv(ctl, &m, fds);
    if (n <= 0)
        return -1; /* the host is gone: so are we */
    if (m.type != ISO_ZYGOTE_SPAWN || !iso_zygote_token_ok(&m, token)) {
        close_fds(fds); /* not the host's: nothing to answer */
        return 0;
    }
    pid_t pid = -1;
    errno = EBADF;
    if (fds[0] >= 0 && fds[1] >= 0)
        pid = fork_cell(ctl, sigfd, fds, m.flags);
    else
        close_fds(fds);
    iso_zygote_msg r = {
        .type = ISO_ZYGOTE_SPAWNED, .pid = pid, .status = pid < 0 ? errno : 0};
    return send(ctl, &r, sizeof r, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* Where the host's process cells live ("-": none), killed when the host
 * goes away. */
static const char *cells_cgroup = "-";

/* The host is gone: so is every cell (cgroup.kill takes what their guests
 * started too; the cells' own PDEATHSIG follows when we exit). */
static int host_gone(void)
{
    iso_error err = {0};
    if (strcmp(cells_cgroup, "-") != 0)
        iso_cgroup_kill_tree(cells_cgroup, &err);
    iso_error_clear(&err);
    return 0;
}

/* Die with the host: PDEATHSIG (SIGTERM, read from the signalfd, so the
 * cells can be killed first), then the usual re-check that the parent is
 * still the host that started us. */
static bool tie_to_host(pid_t host, sigset_t *mask)
{
    sigemptyset(mask);
    sigaddset(mask, SIGCHLD);
    sigaddset(mask, SIGTERM);
    sigprocmask(SIG_BLOCK, mask, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM))
        return false;
    return host <= 0 || getppid() == host;
}

static int zygote(int ctl, pid_t host)
{
    iso_error err = {0};
    sigset_t mask;
    if (!tie_to_host(host, &mask))
        return host_gone();
    if (hello(ctl)) {
        fprintf(stderr, "luaisolate-cell: no HELLO from the host that "
                        "started the zygote\n");
        return 1;
    }
    int sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (iso_py_runtime_init(&err)) {
        fprintf(stderr, "luaisolate-cell: %s\n", err.message);
        return 1;
    }
    PyEval_RestoreThread(iso_py_main_thread_state()); /* ours from now on */
    /* What every cell's runtime needs, imported once for all children. */
    PyObject *warm = iso_py_import("os"), *tb = iso_py_import("traceback");
    Py_XDECREF(warm), Py_XDECREF(tb);
    PyErr_Clear();
    iso_py_guest_warm();  /* the import guard's site-packages roots */
    iso_grants_prepare(); /* the runtime's paths, resolved once for all */
    if (guest_prepare(&err)) {
        fprintf(stderr, "luaisolate-cell: cell set-up: %s\n", err.message);
        return 1;
    }
    struct pollfd pfd[2] = {{.fd = ctl, .events = POLLIN},
                            {.fd = sigfd, .events = POLLIN}};
    for (;;) {
        if (poll(pfd, 2, -1) < 0 && errno != EINTR)
            return host_gone();
        if (pfd[1].revents) {
            struct signalfd_siginfo si = {0};
            if (read(sigfd, &si, sizeof si) < 0 && errno != EAGAIN)
                return host_gone();
            if (si.ssi_signo == SIGTERM)
                return host_gone(); /* PDEATHSIG, or told to go */
        }
        if (reap(ctl) || (pfd[0].revents && spawn_one(ctl, sigfd)))
            return host_gone(); /* the control socket hung up */
    }
}

#ifdef ISO_SANITIZE
/* A sanitizer build of the worker (tests only) runs with an environment
 * it cannot take options from: a crashing guest must still die by its
 * signal, the zygote's deliberate leak-at-exit is not news, and CPython
 * expects a huge malloc to return NULL (MemoryError), as libc's does. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0:handle_segv=0:handle_abort=0:handle_sigbus=0:"
           "allocator_may_return_null=1";
}
#endif

int main(int argc, char **argv)
{
    unsetenv("LD_BIND_NOW"); /* the loader's, done with (proc.c) */
    if (argc >= 2 && argc <= 4 && strcmp(argv[1], "--zygote") == 0) {
        if (argc == 4)
            cells_cgroup = argv[3];
        return zygote(ISO_ZYGOTE_FD, argc >= 3 ? atoi(argv[2]) : 0);
    }
    fprintf(stderr, "usage: luaisolate-cell --zygote [HOST-PID [CELLS-CGROUP]]"
                    "  (started by the luaisolate host, not by hand)\n");
    return 2;
}
