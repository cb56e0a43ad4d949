/*
 * The sub-interpreter backend: one CPython sub-interpreter per cell, owned
 * by the cell's own thread. On CPython >= 3.13 each cell has its own GIL
 * and allocator; before that, legacy sub-interpreters share one GIL.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest.h"
#include "py_alloc.h"
#include "subinterp.h"

/* ---- creation and teardown --------------------------------------------- */

#if ISO_OWN_GIL
static int new_interpreter(iso_py_state *p, iso_error *err)
{
    PyInterpreterConfig cfg = {
        .use_main_obmalloc = 0,
        .allow_fork = 0,
        .allow_exec = 0,
        .allow_threads = 1,
        .allow_daemon_threads = 0,
        .check_multi_interp_extensions = 1,
        .gil = PyInterpreterConfig_OWN_GIL,
    };
    PyStatus st = Py_NewInterpreterFromConfig(&p->ts, &cfg);
    if (PyStatus_Exception(st))
        return iso_error_set(err, ISO_CRASHED,
                             "cannot create a sub-interpreter: %s",
                             st.err_msg ? st.err_msg : "unknown error");
    return 0;
}

static void end_interpreter(iso_py_state *p)
{
    Py_EndInterpreter(p->ts);
}
#else
static int new_interpreter(iso_py_state *p, iso_error *err)
{
    p->aux = PyThreadState_New(iso_py_main_interp());
    if (!p->aux)
        return iso_error_set(err, ISO_CRASHED, "cannot create a thread state");
    iso_py_take_gil(p->aux);
    p->ts = Py_NewInterpreter();
    if (p->ts)
        return 0;
    PyThreadState_Clear(p->aux);
    PyThreadState_DeleteCurrent();
    return iso_error_set(err, ISO_CRASHED, "cannot create a sub-interpreter");
}

static void end_interpreter(iso_py_state *p)
{
    Py_EndInterpreter(p->ts);
    PyThreadState_Swap(p->aux);
    PyThreadState_Clear(p->aux);
    PyThreadState_DeleteCurrent();
}
#endif

/* Legacy Py_EndInterpreter aborts the process if other threads remain in
 * the interpreter (guest threads): leak the interpreter instead. */
static bool alone_in_interpreter(iso_py_state *p)
{
    PyThreadState *t = PyInterpreterState_ThreadHead(p->interp);
    return t == p->ts && PyThreadState_Next(t) == NULL;
}

static void destroy(iso_guest *g)
{
    iso_py_state *p = g->py;
    iso_py_forget_interp(p->interp);
    iso_guest_clear(g);
    /* A door to this interpreter made before forget_interp (a cell waiting
     * for the GIL, the nudger) may still wait: let it through. */
    for (int i = 0; i < 5 && !alone_in_interpreter(p); i++) {
        struct timespec pause = {0, 1000 * 1000};
        PyThreadState *me = PyEval_SaveThread();
        nanosleep(&pause, NULL);
        PyEval_RestoreThread(me);
    }
    if (alone_in_interpreter(p)) {
        int64_t id = PyInterpreterState_GetID(p->interp);
        end_interpreter(p);
        iso_py_guest_interp_ended(id);
    } else
        PyEval_SaveThread();
}

static void report_start(iso_sub *s, int rc, iso_error *err)
{
    pthread_mutex_lock(&s->ch->mu);
    s->start_rc = rc;
    if (rc) {
        iso_error_move(&s->start_err, err);
    } else {
        s->interp_alive = true;
        atomic_store(&s->ch->state, ISO_STATE_IDLE);
    }
    pthread_cond_broadcast(&s->ch->cv);
    pthread_mutex_unlock(&s->ch->mu);
}

/* An interrupt aimed at this request may still be pending: drop it so it
 * never fires in the next one. Called with running_seq still set. */
static void clear_interrupt(iso_sub *s)
{
    PyThreadState_SetAsyncExc(s->guest->py->thread_id, NULL);
    PyErr_Clear();
    atomic_store(&s->running_seq, 0);
}

/* ---- the cell thread --------------------------------------------------- */

/* Wait (GIL released) for a request; NULL when the cell must stop. */
static iso_req *wait_request(iso_sub *s)
{
    for (;;) {
        uint32_t seen = iso_signal_peek(&s->ch->to_cell);
        if (atomic_load(&s->ch->stop))
            return NULL;
        pthread_mutex_lock(&s->ch->mu);
        iso_req *r = s->ch->req;
        s->ch->req = NULL;
        pthread_mutex_unlock(&s->ch->mu);
        if (r)
            return r;
        iso_signal_wait(&s->ch->to_cell, seen, -1);
    }
}

/* No interrupter may touch the interpreter once we start ending it. */
static void retire_interrupters(iso_sub *s)
{
    pthread_mutex_lock(&s->ch->mu);
    s->interp_alive = false;
    while (s->interrupters > 0)
        pthread_cond_wait(&s->ch->cv, &s->ch->mu);
    pthread_mutex_unlock(&s->ch->mu);
}

static void serve(iso_sub *s, iso_py_state *p)
{
    for (;;) {
        PyEval_SaveThread();
        iso_req *r;
        while ((r = wait_request(s)) && r->type == ISO_REQ_CONFINE) {
            iso_req_destroy(r); /* no Python in it: no GIL */
            iso_sub_confine_run(s);
        }
        if (!r) {
            retire_interrupters(s);
            iso_py_take_gil(p->ts);
            return;
        }
        iso_py_take_gil(p->ts);
        atomic_store(&s->running_seq, r->seq);
        iso_msg *m = iso_guest_run(s->guest, r->type == ISO_REQ_CALL, r->text,
                                   r->len, &r->args);
        clear_interrupt(s);
        iso_req_destroy(r);
        iso_mem_account_flush(); /* stats() after a request are exact */
        if (m)
            iso_host_push(&s->host, m);
    }
}

/* ---- the guest's sink: the outbox and the reply slot ------------------- */

static int sink_send(void *ctx, iso_msg *m)
{
    return iso_host_push(&((iso_sub *)ctx)->host, m);
}

static void sink_why_refused(void *ctx, char *buf, size_t n)
{
    iso_host_queue_why(&((iso_sub *)ctx)->host, buf, n);
}

/* request(): block until the host answers (sub_reply) or the cell is
 * stopping; the answer moved out of the reply slot. */
static bool sink_await_reply(void *ctx, iso_value *value, char **error)
{
    iso_sub *s = ctx;
    bool ready = false;
    while (!ready && !atomic_load(&s->ch->stop)) {
        uint32_t seen = iso_signal_peek(&s->ch->to_cell);
        pthread_mutex_lock(&s->ch->mu);
        ready = s->ch->reply_ready;
        s->ch->reply_ready = false;
        if (ready) {
            iso_value_move(value, &s->ch->reply);
            *error = s->ch->reply_error;
            s->ch->reply_error = NULL;
        }
        pthread_mutex_unlock(&s->ch->mu);
        if (!ready)
            iso_signal_wait(&s->ch->to_cell, seen, -1);
    }
    return ready;
}

/* Everything the cell's Python allocates from here on, its interpreter's
 * creation included, is charged to the cell (limits.mem, stats). */
static int open_account(iso_sub *s, iso_error *err)
{
    s->guest->mem_account = iso_mem_account_open();
    if (!s->guest->mem_account)
        return iso_error_set(err, ISO_CRASHED,
                             "too many sub-interpreter cells at once");
    iso_mem_account_enter(s->guest->mem_account);
    return 0;
}

/* The thread's last touch of its cell: a close waiting for it goes on
 * now, not once the thread has ended (a thread's end, its seccomp filter
 * freed, takes a wake-up and some 0.1 ms more on a VM). The thread's own
 * reference keeps the cell, and so s, until the release. */
static void thread_done(iso_sub *s)
{
    iso_host_hooks host = s->host;
    pthread_mutex_lock(&s->ch->mu);
    s->thread_done = true;
    pthread_cond_broadcast(&s->ch->cv);
    pthread_mutex_unlock(&s->ch->mu);
    iso_host_release(&host);
}

void *iso_py_cell_thread(void *arg)
{
    iso_sub *s = arg;
    iso_py_state py = {0};
    iso_error err = {0};
    s->guest->py = &py;
    s->guest->sink =
        (iso_guest_sink){sink_send, sink_await_reply, sink_why_refused, s};
    s->has_cpu_clock =
        pthread_getcpuclockid(pthread_self(), &s->cpu_clock) == 0;
    iso_host_phase(&s->host, "thread", iso_now());
    int rc = iso_py_runtime_init(&err);
    if (rc == 0)
        rc = open_account(s, &err);
    if (rc == 0 && (rc = new_interpreter(&py, &err)) == 0) {
        iso_host_phase(&s->host, "interpreter", iso_now());
        if ((rc = iso_guest_setup(s->guest, &err)) != 0)
            destroy(s->guest);
    }
    if (rc == 0)
        iso_host_phase(&s->host, "guest runtime", iso_now());
    if (rc == 0)
        iso_py_register_cell_thread(py.ts); /* a worker process has one */
    iso_mem_account_flush();
    report_start(s, rc, &err);
    if (rc == 0) {
        serve(s, &py);
        iso_mem_account_limit(s->guest->mem_account,
                              0); /* ending must not fail */
        destroy(s->guest);
    }
    iso_abandoned_thread_ends(s);
    iso_mem_account_close(s->guest->mem_account);
    thread_done(s);
    return NULL;
}

/* ---- the floor: a bare interpreter ------------------------------------- */

typedef struct floor_run {
    size_t n;
    double *seconds;
    int rc;
    iso_error err;
} floor_run;

/* Create and end n interpreters configured as a cell's, nothing else: no
 * cell, no guest runtime, no accounting, no confinement. */
static void *floor_thread(void *arg)
{
    floor_run *f = arg;
    f->rc = iso_py_runtime_init(&f->err);
    for (size_t i = 0; f->rc == 0 && i < f->n; i++) {
        iso_py_state p = {0};
        double t0 = iso_now();
        f->rc = new_interpreter(&p, &f->err);
        if (f->rc == 0)
            end_interpreter(&p);
        f->seconds[i] = iso_now() - t0;
    }
    return NULL;
}

int iso_bench_interp_floor(size_t n, double *seconds, iso_error *err)
{
    floor_run f = {.n = n, .seconds = seconds};
    pthread_t t;
    int e = iso_thread_start(&t, NULL, floor_thread, &f);
    if (e)
        return iso_error_set(err, ISO_CRASHED, "cannot start a thread: %s",
                             strerror(e));
    pthread_join(t, NULL);
    if (f.rc)
        iso_error_move(err, &f.err);
    return f.rc;
}

/* ---- the host side: iso_cell_ops ---------------------------------------- */

/* What confines a started sub-interpreter cell until its thread confines
 * itself (the confined op then hands the host the rows of what the
 * thread applied). */
static int describe_confinement(iso_sub *s)
{
    static const char *const kernel[] = {"landlock", "seccomp", "bpf",
                                         "cgroup",   "rlimit",  NULL};
    iso_value v = {0};
    iso_value_set_list(&v);
    int rc = iso_confinement_add(&v, "python-guard", "active", "cell thread",
                                 "imports, fs, net, exec and capabilities in "
                                 "Python: a guardrail, not a boundary");
    for (int i = 0; rc == 0 && kernel[i]; i++)
        rc = iso_confinement_add(&v, kernel[i], "missing", "cell thread",
                                 "not applied yet: the cell thread "
                                 "confines itself before its first request");
    if (rc == 0)
        iso_host_confined(&s->host, &v);
    iso_value_free(&v);
    return rc;
}

static int sub_start(iso_sub *s, const iso_cell_config *cfg,
                     const iso_host_hooks *host, iso_error *err)
{
    (void)cfg;
    s->host = *host; /* before the thread, which reports its phases */
    s->ch = host->ch;
    s->guest = host->guest;
    if (describe_confinement(s))
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    iso_host_hold(&s->host); /* the thread's reference */
    int e = iso_thread_start(&s->thread, NULL, iso_py_cell_thread, s);
    if (e) {
        iso_host_release(&s->host); /* the host's own is left */
        iso_error_set(err, ISO_CRASHED, "cannot start the cell thread: %s",
                      strerror(e));
        err->code = e;
        return -1;
    }
    pthread_mutex_lock(&s->ch->mu);
    while (s->start_rc > 0)
        pthread_cond_wait(&s->ch->cv, &s->ch->mu);
    int rc = s->start_rc;
    if (rc)
        iso_error_move(err, &s->start_err);
    pthread_mutex_unlock(&s->ch->mu);
    if (rc)
        pthread_join(s->thread, NULL);
    return rc;
}

static int sub_submit(iso_sub *s, iso_req *r, iso_error *err)
{
    (void)err;
    s->last_seq = r->seq;
    s->last_interrupt = 0;
    pthread_mutex_lock(&s->ch->mu);
    s->ch->req = r;
    pthread_mutex_unlock(&s->ch->mu);
    iso_signal_notify(&s->ch->to_cell);
    return 0;
}

static int sub_receive(iso_sub *s, double deadline, iso_error *err)
{
    (void)err;
    uint32_t seen = iso_signal_peek(&s->ch->to_host);
    if (iso_host_drain(&s->host) || deadline == 0)
        return 0;
    iso_signal_wait(&s->ch->to_host, seen, deadline);
    iso_host_drain(&s->host);
    return 0;
}

static void sub_reply(iso_sub *s, iso_value *value, const char *error)
{
    char *e = error ? strdup(error) : NULL;
    pthread_mutex_lock(&s->ch->mu);
    iso_value_free(&s->ch->reply);
    free(s->ch->reply_error);
    if (value)
        iso_value_move(&s->ch->reply, value);
    s->ch->reply_error = e;
    if (error && !e)
        s->ch->reply_error = strdup("out of memory");
    s->ch->reply_ready = true;
    pthread_mutex_unlock(&s->ch->mu);
    iso_signal_notify(&s->ch->to_cell);
}

/* The cell gave no result within its grace period: give its thread up,
 * and park it (interrupter) so that it stops competing for the GIL and a
 * CPU. */
static void abandon(iso_sub *s)
{
    iso_abandoned_add(s);
    atomic_store(&s->ch->abandoned, true);
    atomic_store(&s->ch->stop, true);
    iso_signal_notify(&s->ch->to_cell);
    pthread_detach(s->thread);
    iso_host_retire(&s->host, ISO_STATE_DEAD);
    iso_sub_interrupt(s, 0);
}

/* Interrupt now and again (*again: when next); abandon after the grace
 * period. */
static bool sub_overrun(iso_sub *s, double overdue, double *again)
{
    if (overdue >= ISO_KILL_GRACE_S) {
        abandon(s);
        return false;
    }
    double now = iso_now();
    if (now - s->last_interrupt >= ISO_INTERRUPT_EVERY_S) {
        s->last_interrupt = now;
        iso_sub_interrupt(s, s->last_seq);
    }
    *again = s->last_interrupt + ISO_INTERRUPT_EVERY_S;
    return true;
}

/* Wait up to `seconds` for the thread to be done with the cell; then it
 * ends on its own (detached). */
static bool done_within(iso_sub *s, double seconds)
{
    double end = iso_now() + seconds;
    pthread_mutex_lock(&s->ch->mu);
    double left;
    while (!s->thread_done && (left = end - iso_now()) > 0)
        iso_cond_wait_for(&s->ch->cv, &s->ch->mu, left);
    bool done = s->thread_done;
    pthread_mutex_unlock(&s->ch->mu);
    if (done)
        pthread_detach(s->thread);
    return done;
}

static void sub_stop(iso_sub *s, bool force, bool busy)
{
    if (force && busy)
        iso_sub_interrupt(s, s->last_seq);
    atomic_store(&s->ch->stop, true);
    iso_signal_notify(&s->ch->to_cell);
    if (!done_within(s, force ? ISO_KILL_GRACE_S : ISO_CLOSE_GRACE_S))
        abandon(s);
    else
        iso_host_retire(&s->host, ISO_STATE_CLOSED);
}

/* ---- the ops, on the handle (iso_sub) --------------------------------- */

static int op_start(iso_cell *c, const iso_cell_config *cfg,
                    const iso_host_hooks *host, iso_backend_cell **out,
                    iso_error *err)
{
    (void)c; /* the host's: what the thread needs of it is in host */
    iso_sub *s = calloc(1, sizeof *s);
    if (!s)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    s->start_rc = 1; /* not started yet */
    *out = (iso_backend_cell *)s;
    return sub_start(s, cfg, host, err);
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* The limits and syscalls.deny of cfg, the cell's own copy (a warm cell
 * gets them only now): 0, or -1 with err. */
static int take_limits(iso_sub *s, const iso_cell_config *cfg, iso_error *err)
{
    size_t n = cfg->n_deny_syscalls;
    char **deny = calloc(n + 1, sizeof *deny);
    for (size_t i = 0; deny && i < n; i++)
        if (!(deny[i] = strdup(cfg->deny_syscalls[i]))) {
            free_strings(deny, i);
            deny = NULL;
        }
    if (!deny)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    free_strings(s->deny_syscalls, s->n_deny_syscalls);
    s->deny_syscalls = deny, s->n_deny_syscalls = n;
    s->wall_ms = cfg->wall_ms;
    s->cpu_ms = cfg->cpu_ms;
    return 0;
}

static int op_confine(iso_backend_cell *h, const iso_cell_config *cfg,
                      iso_error *err)
{
    iso_sub *s = (iso_sub *)h;
    return take_limits(s, cfg, err) || iso_sub_confine(s, err) ? -1 : 0;
}
static int op_confined(iso_backend_cell *h, iso_error *err)
{
    return iso_sub_confined((iso_sub *)h, err);
}
static void op_destroy(iso_backend_cell *h)
{
    iso_sub *s = (iso_sub *)h;
    if (!s)
        return;
    iso_sub_unconfine(s); /* the cell's cgroup, the BPF guard */
    iso_error_clear(&s->start_err);
    iso_error_clear(&s->confine_err);
    iso_value_free(&s->rows);
    free_strings(s->deny_syscalls, s->n_deny_syscalls);
    free(s);
}
static int op_submit(iso_backend_cell *h, iso_req *r, iso_error *err)
{
    return sub_submit((iso_sub *)h, r, err);
}
static int op_receive(iso_backend_cell *h, double deadline, iso_error *err)
{
    return sub_receive((iso_sub *)h, deadline, err);
}
static void op_reply(iso_backend_cell *h, iso_value *value, const char *error)
{
    sub_reply((iso_sub *)h, value, error);
}
static iso_kind op_over(iso_backend_cell *h)
{
    return iso_sub_over((iso_sub *)h);
}
static int op_watch(iso_backend_cell *h, uint64_t seq, double started)
{
    return iso_watchdog_watch((iso_sub *)h, seq, started);
}
static void op_forget(iso_backend_cell *h)
{
    iso_watchdog_forget((iso_sub *)h);
}
static iso_kind op_found(iso_backend_cell *h, uint64_t seq, double *since)
{
    return iso_watchdog_found((iso_sub *)h, seq, since);
}
static bool op_overrun(iso_backend_cell *h, double overdue, double *again)
{
    return sub_overrun((iso_sub *)h, overdue, again);
}
static void op_stop(iso_backend_cell *h, bool force, bool busy)
{
    sub_stop((iso_sub *)h, force, busy);
}
static void op_interrupt(iso_backend_cell *h, uint64_t seq)
{
    iso_sub_interrupt((iso_sub *)h, seq);
}
static int64_t op_cpu_ms(const iso_backend_cell *h)
{
    return iso_sub_cpu_ms((const iso_sub *)h);
}
static int64_t op_mem_bytes(const iso_backend_cell *h)
{
    return iso_sub_mem_bytes((const iso_sub *)h);
}

const iso_cell_ops iso_subinterpreter_ops = {
    .take_warm = iso_pool_take,
    .warm_pool = iso_sub_pool_configure,
    .start = op_start,
    .confine = op_confine,
    .confined = op_confined,
    .submit = op_submit,
    .receive = op_receive,
    .reply = op_reply,
    .over = op_over,
    .watch = op_watch,
    .forget = op_forget,
    .found = op_found,
    .overrun = op_overrun,
    .stop = op_stop,
    .destroy = op_destroy,
    .interrupt = op_interrupt,
    .cpu_ms = op_cpu_ms,
    .mem_bytes = op_mem_bytes,
};
