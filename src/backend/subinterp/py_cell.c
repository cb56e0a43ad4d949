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

static void report_start(iso_cell *c, int rc, iso_error *err)
{
    pthread_mutex_lock(&c->ch.mu);
    iso_sub_of(c)->start_rc = rc;
    if (rc) {
        iso_error_move(&iso_sub_of(c)->start_err, err);
    } else {
        iso_sub_of(c)->interp_alive = true;
        atomic_store(&c->ch.state, ISO_STATE_IDLE);
    }
    pthread_cond_broadcast(&c->ch.cv);
    pthread_mutex_unlock(&c->ch.mu);
}

/* An interrupt aimed at this request may still be pending: drop it so it
 * never fires in the next one. Called with running_seq still set. */
static void clear_interrupt(iso_cell *c)
{
    PyThreadState_SetAsyncExc(c->guest.py->thread_id, NULL);
    PyErr_Clear();
    atomic_store(&iso_sub_of(c)->running_seq, 0);
}

/* ---- the cell thread --------------------------------------------------- */

/* Wait (GIL released) for a request; NULL when the cell must stop. */
static iso_req *wait_request(iso_cell *c)
{
    for (;;) {
        uint32_t seen = iso_signal_peek(&c->ch.to_cell);
        if (atomic_load(&c->ch.stop))
            return NULL;
        pthread_mutex_lock(&c->ch.mu);
        iso_req *r = c->ch.req;
        c->ch.req = NULL;
        pthread_mutex_unlock(&c->ch.mu);
        if (r)
            return r;
        iso_signal_wait(&c->ch.to_cell, seen, -1);
    }
}

/* No interrupter may touch the interpreter once we start ending it. */
static void retire_interrupters(iso_cell *c)
{
    pthread_mutex_lock(&c->ch.mu);
    iso_sub_of(c)->interp_alive = false;
    while (iso_sub_of(c)->interrupters > 0)
        pthread_cond_wait(&c->ch.cv, &c->ch.mu);
    pthread_mutex_unlock(&c->ch.mu);
}

static void serve(iso_cell *c, iso_py_state *p)
{
    for (;;) {
        PyEval_SaveThread();
        iso_req *r;
        while ((r = wait_request(c)) && r->type == ISO_REQ_CONFINE) {
            iso_req_destroy(r); /* no Python in it: no GIL */
            iso_cell_confine_run(c);
        }
        if (!r) {
            retire_interrupters(c);
            iso_py_take_gil(p->ts);
            return;
        }
        iso_py_take_gil(p->ts);
        atomic_store(&iso_sub_of(c)->running_seq, r->seq);
        iso_msg *m = iso_guest_run(&c->guest, r->type == ISO_REQ_CALL, r->text,
                                   r->len, &r->args);
        clear_interrupt(c);
        iso_req_destroy(r);
        iso_mem_account_flush(); /* stats() after a request are exact */
        if (m)
            iso_host_push(&c->host, m);
    }
}

/* ---- the guest's sink: the outbox and the reply slot ------------------- */

static int sink_send(void *ctx, iso_msg *m)
{
    return iso_host_push(&((iso_cell *)ctx)->host, m);
}

static void sink_why_refused(void *ctx, char *buf, size_t n)
{
    iso_host_queue_why(&((iso_cell *)ctx)->host, buf, n);
}

/* request(): block until the host answers (sub_reply) or the cell is
 * stopping; the answer moved out of the reply slot. */
static bool sink_await_reply(void *ctx, iso_value *value, char **error)
{
    iso_cell *c = ctx;
    bool ready = false;
    while (!ready && !atomic_load(&c->ch.stop)) {
        uint32_t seen = iso_signal_peek(&c->ch.to_cell);
        pthread_mutex_lock(&c->ch.mu);
        ready = c->ch.reply_ready;
        c->ch.reply_ready = false;
        if (ready) {
            iso_value_move(value, &c->ch.reply);
            *error = c->ch.reply_error;
            c->ch.reply_error = NULL;
        }
        pthread_mutex_unlock(&c->ch.mu);
        if (!ready)
            iso_signal_wait(&c->ch.to_cell, seen, -1);
    }
    return ready;
}

/* Everything the cell's Python allocates from here on, its interpreter's
 * creation included, is charged to the cell (limits.mem, stats). */
static int open_account(iso_cell *c, iso_error *err)
{
    c->guest.mem_account = iso_mem_account_open();
    if (!c->guest.mem_account)
        return iso_error_set(err, ISO_CRASHED,
                             "too many sub-interpreter cells at once");
    iso_mem_account_enter(c->guest.mem_account);
    return 0;
}

void *iso_py_cell_thread(void *arg)
{
    iso_cell *c = arg;
    iso_py_state py = {0};
    iso_error err = {0};
    c->guest.py = &py;
    c->guest.sink =
        (iso_guest_sink){sink_send, sink_await_reply, sink_why_refused, c};
    iso_sub_of(c)->has_cpu_clock =
        pthread_getcpuclockid(pthread_self(), &iso_sub_of(c)->cpu_clock) == 0;
    iso_host_phase(&c->host, "thread", iso_now());
    int rc = iso_py_runtime_init(&err);
    if (rc == 0)
        rc = open_account(c, &err);
    if (rc == 0 && (rc = new_interpreter(&py, &err)) == 0) {
        iso_host_phase(&c->host, "interpreter", iso_now());
        if ((rc = iso_guest_setup(&c->guest, &err)) != 0)
            destroy(&c->guest);
    }
    if (rc == 0)
        iso_host_phase(&c->host, "guest runtime", iso_now());
    if (rc == 0)
        iso_py_register_cell_thread(py.ts); /* a worker process has one */
    iso_mem_account_flush();
    report_start(c, rc, &err);
    if (rc == 0) {
        serve(c, &py);
        iso_mem_account_limit(c->guest.mem_account,
                              0); /* ending must not fail */
        destroy(&c->guest);
    }
    iso_abandoned_thread_ends(c);
    iso_mem_account_close(c->guest.mem_account);
    iso_host_release(&c->host);
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

static void interrupt(iso_cell *c, uint64_t seq);

/* What confines a started sub-interpreter cell until its thread confines
 * itself (cell_confine.c then writes the rows of what it applied). */
static int describe_confinement(iso_cell *c)
{
    static const char *const kernel[] = {"landlock", "seccomp", "bpf",
                                         "cgroup",   "rlimit",  NULL};
    iso_value *v = &c->confinement;
    iso_value_set_list(v);
    int rc = iso_confinement_add(v, "python-guard", "active", "cell thread",
                                 "imports, fs, net, exec and capabilities in "
                                 "Python: a guardrail, not a boundary");
    for (int i = 0; rc == 0 && kernel[i]; i++)
        rc = iso_confinement_add(v, kernel[i], "missing", "cell thread",
                                 "not applied yet: the cell thread "
                                 "confines itself before its first request");
    return rc;
}

static int sub_start(iso_cell *c, const iso_cell_config *cfg,
                     const iso_host_hooks *host, iso_error *err)
{
    (void)cfg;
    c->host = *host; /* before the thread, which reports its phases */
    if (describe_confinement(c))
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    iso_host_hold(&c->host); /* the thread's reference */
    int e =
        iso_thread_start(&iso_sub_of(c)->thread, NULL, iso_py_cell_thread, c);
    if (e) {
        iso_host_release(&c->host); /* the host's own is left */
        iso_error_set(err, ISO_CRASHED, "cannot start the cell thread: %s",
                      strerror(e));
        err->code = e;
        return -1;
    }
    pthread_mutex_lock(&c->ch.mu);
    while (iso_sub_of(c)->start_rc > 0)
        pthread_cond_wait(&c->ch.cv, &c->ch.mu);
    int rc = iso_sub_of(c)->start_rc;
    if (rc)
        iso_error_move(err, &iso_sub_of(c)->start_err);
    pthread_mutex_unlock(&c->ch.mu);
    if (rc)
        pthread_join(iso_sub_of(c)->thread, NULL);
    return rc;
}

static int sub_submit(iso_cell *c, iso_req *r, iso_error *err)
{
    (void)err;
    pthread_mutex_lock(&c->ch.mu);
    c->ch.req = r;
    pthread_mutex_unlock(&c->ch.mu);
    iso_signal_notify(&c->ch.to_cell);
    return 0;
}

static int sub_receive(iso_cell *c, double deadline, iso_error *err)
{
    (void)err;
    uint32_t seen = iso_signal_peek(&c->ch.to_host);
    if (iso_host_drain(&c->host) || deadline == 0)
        return 0;
    iso_signal_wait(&c->ch.to_host, seen, deadline);
    iso_host_drain(&c->host);
    return 0;
}

static void sub_reply(iso_cell *c, iso_value *value, const char *error)
{
    char *e = error ? strdup(error) : NULL;
    pthread_mutex_lock(&c->ch.mu);
    iso_value_free(&c->ch.reply);
    free(c->ch.reply_error);
    if (value)
        iso_value_move(&c->ch.reply, value);
    c->ch.reply_error = e;
    if (error && !e)
        c->ch.reply_error = strdup("out of memory");
    c->ch.reply_ready = true;
    pthread_mutex_unlock(&c->ch.mu);
    iso_signal_notify(&c->ch.to_cell);
}

/* The cell gave no result within its grace period: give its thread up,
 * and park it (interrupter) so that it stops competing for the GIL and a
 * CPU. */
static void abandon(iso_cell *c)
{
    iso_abandoned_add(c);
    atomic_store(&c->ch.abandoned, true);
    atomic_store(&c->ch.stop, true);
    iso_signal_notify(&c->ch.to_cell);
    pthread_detach(iso_sub_of(c)->thread);
    iso_host_retire(&c->host, ISO_STATE_DEAD);
    interrupt(c, 0);
}

/* Interrupt now and again; abandon after the grace period. */
static bool sub_overrun(iso_cell *c, double overdue)
{
    if (overdue >= ISO_KILL_GRACE_S) {
        abandon(c);
        return false;
    }
    double now = iso_now();
    if (now - c->last_interrupt >= ISO_INTERRUPT_EVERY_S) {
        c->last_interrupt = now;
        interrupt(c, c->next_seq);
    }
    return true;
}

static bool join_within(iso_cell *c, double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double end = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + seconds;
    ts.tv_sec = (time_t)end;
    ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
    return pthread_timedjoin_np(iso_sub_of(c)->thread, NULL, &ts) == 0;
}

static void sub_stop(iso_cell *c, bool force, bool busy)
{
    if (force && busy)
        interrupt(c, c->next_seq);
    atomic_store(&c->ch.stop, true);
    iso_signal_notify(&c->ch.to_cell);
    if (!join_within(c, force ? ISO_KILL_GRACE_S : ISO_CLOSE_GRACE_S))
        abandon(c);
    else
        iso_host_retire(&c->host, ISO_STATE_CLOSED);
}

/* ---- the ops, on the handle (iso_sub) --------------------------------- */

static int op_start(iso_cell *c, const iso_cell_config *cfg,
                    const iso_host_hooks *host, iso_backend_cell **out,
                    iso_error *err)
{
    iso_sub *s = calloc(1, sizeof *s);
    if (!s)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    s->cell = c;
    s->start_rc = 1; /* not started yet */
    *out = (iso_backend_cell *)s;
    return sub_start(c, cfg, host, err);
}
static int op_confine(iso_backend_cell *h, iso_error *err)
{
    return iso_sub_confine(iso_sub_cell(h), err);
}
static int op_confined(iso_backend_cell *h, iso_error *err)
{
    return iso_cell_confined(iso_sub_cell(h), err);
}
static void op_destroy(iso_backend_cell *h)
{
    iso_sub *s = (iso_sub *)h;
    if (!s)
        return;
    iso_cell_unconfine(s->cell); /* the cell's cgroup, the BPF guard */
    iso_error_clear(&s->start_err);
    iso_error_clear(&s->confine_err);
    free(s);
}
static int op_submit(iso_backend_cell *h, iso_req *r, iso_error *err)
{
    return sub_submit(iso_sub_cell(h), r, err);
}
static int op_receive(iso_backend_cell *h, double deadline, iso_error *err)
{
    return sub_receive(iso_sub_cell(h), deadline, err);
}
static void op_reply(iso_backend_cell *h, iso_value *value, const char *error)
{
    sub_reply(iso_sub_cell(h), value, error);
}
static iso_kind op_over(iso_backend_cell *h)
{
    return iso_sub_over(iso_sub_cell(h));
}
static int op_watch(iso_backend_cell *h, uint64_t seq, double started)
{
    return iso_watchdog_watch(iso_sub_cell(h), seq, started);
}
static void op_forget(iso_backend_cell *h)
{
    iso_watchdog_forget(iso_sub_cell(h));
}
static iso_kind op_found(iso_backend_cell *h, uint64_t seq, double *since)
{
    return iso_watchdog_found(iso_sub_cell(h), seq, since);
}
static bool op_overrun(iso_backend_cell *h, double overdue)
{
    return sub_overrun(iso_sub_cell(h), overdue);
}
static void op_stop(iso_backend_cell *h, bool force, bool busy)
{
    sub_stop(iso_sub_cell(h), force, busy);
}
static void op_interrupt(iso_backend_cell *h, uint64_t seq)
{
    interrupt(iso_sub_cell(h), seq);
}
static int64_t op_cpu_ms(const iso_backend_cell *h)
{
    return iso_cell_thread_cpu_ms(iso_sub_cell(h));
}
static int64_t op_mem_bytes(const iso_backend_cell *h)
{
    return iso_sub_mem_bytes(iso_sub_cell(h));
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

/* ---- interrupts -------------------------------------------------------- */

typedef struct interrupt_job {
    iso_cell *c;
    uint64_t seq;
} interrupt_job;

static void interrupter_done(iso_cell *c)
{
    pthread_mutex_lock(&c->ch.mu);
    iso_sub_of(c)->interrupters--;
    pthread_cond_broadcast(&c->ch.cv);
    pthread_mutex_unlock(&c->ch.mu);
    iso_host_release(&c->host);
}

/* Runs on its own short-lived thread: taking the cell's GIL may wait for
 * as long as one C call of the guest runs, and nobody else should. */
static void *interrupter(void *arg)
{
    interrupt_job *job = arg;
    iso_cell *c = job->c;
    iso_py_state *p = c->guest.py;
    PyThreadState *ts = PyThreadState_New(p->interp);
    PyEval_RestoreThread(ts);
    if (atomic_load(&c->ch.abandoned))
        iso_abandoned_park(c, p);
    else if (atomic_load(&iso_sub_of(c)->running_seq) == job->seq)
        PyThreadState_SetAsyncExc(p->thread_id, PyExc_TimeoutError);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    interrupter_done(c);
    free(job);
    return NULL;
}

static void interrupt(iso_cell *c, uint64_t seq)
{
    interrupt_job *job = malloc(sizeof *job);
    if (!job)
        return;
    *job = (interrupt_job){c, seq};
    pthread_mutex_lock(&c->ch.mu);
    /* One at a time; but the park must not be lost to one in flight that
     * looked at c->ch.abandoned too early. */
    bool ok =
        iso_sub_of(c)->interp_alive &&
        (iso_sub_of(c)->interrupters == 0 || atomic_load(&c->ch.abandoned));
    if (ok) {
        iso_sub_of(c)->interrupters++;
        iso_host_hold(&c->host);
    }
    pthread_mutex_unlock(&c->ch.mu);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (ok && iso_thread_start(&t, &attr, interrupter, job) == 0)
        job = NULL;
    else if (ok)
        interrupter_done(c);
    pthread_attr_destroy(&attr);
    free(job);
}
