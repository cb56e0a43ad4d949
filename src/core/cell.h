/*
 * The cell as both of its threads see it. The host (Lua) thread owns the
 * host-side queues; everything crossing to the cell thread goes through
 * `mu` and one of the two signals.
 */
#ifndef ISO_CELL_H
#define ISO_CELL_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "guard_routes.h"
#include "guest.h"
#include "handoff.h"
#include "isolate.h"
#include "msg.h"

#define ISO_CLOSE_GRACE_S 2.0 /* close: how long to wait for the thread */
#define ISO_KILL_GRACE_S 0.25 /* kill / wall_ms: interrupt, then abandon */
#define ISO_INTERRUPT_EVERY_S 0.05

typedef enum iso_req_type {
    ISO_REQ_EXEC,
    ISO_REQ_CALL,
    ISO_REQ_CONFINE, /* cell_confine.c: the thread confines itself */
} iso_req_type;

typedef struct iso_req {
    iso_req_type type;
    char *text; /* source, or call target */
    size_t len;
    iso_value args; /* ISO_REQ_CALL: list */
    uint64_t seq;
} iso_req;

typedef enum iso_state {
    ISO_STATE_STARTING,
    ISO_STATE_IDLE,
    ISO_STATE_CLOSED,
    ISO_STATE_DEAD,
} iso_state;

typedef struct iso_msg_queue {
    iso_msg *head, *tail;
} iso_msg_queue;

/* What the generic host side (cell.c) needs from a backend: the
 * sub-interpreter backend (py_cell.c) and the process backend (proc.c),
 * found by kind in the registry (backend.c). cell.c never asks which
 * backend a cell has: what differs is an op here, or an op left NULL. */
typedef struct iso_cell_ops {
    /* Can this build and host run the backend? 0, or -1 with err saying
     * what is missing. NULL: always. */
    int (*check)(iso_error *err);
    /* A warm cell (started, unnamed, no rules) to make the spawned one;
     * NULL when there is none. NULL op: the backend has no such pool. */
    iso_cell *(*take_warm)(void);
    /* Create the cell and wait until it is ready. */
    int (*start)(iso_cell *c, const iso_cell_config *cfg, iso_error *err);
    /* Limits and confinement of a started (or warm, just configured) cell
     * before any guest code: 0, or -1 with err. NULL: the cell confined
     * itself before it was ready (its missing layers are in c->confinement). */
    int (*confine)(iso_cell *c, iso_error *err);
    /* Hand over request r (owned). */
    int (*submit)(iso_cell *c, iso_req *r, iso_error *err);
    /* Deliver what the cell sent (iso_cell_deliver), waiting for something
     * until deadline (iso_now() seconds, < 0 forever). -1 with err when
     * the cell died. */
    int (*receive)(iso_cell *c, double deadline, iso_error *err);
    /* Answer the cell's broker request. */
    void (*reply)(iso_cell *c, iso_value *value, const char *error);
    /* A limit the host checks itself while it waits for a result:
     * ISO_CPU, ISO_MEMORY or ISO_OK. NULL: the backend enforces cpu_ms
     * and mem otherwise (a worker's RLIMIT_CPU and its own MemoryError). */
    iso_kind (*over)(iso_cell *c);
    /* Watch request seq (started at `started`) for its limits while the
     * host does not wait for it: 0 when watched; forget it; what was found
     * (ISO_OK: nothing yet) and since when. NULL: no watcher. */
    int (*watch)(iso_cell *c, uint64_t seq, double started);
    void (*forget)(iso_cell *c);
    iso_kind (*found)(iso_cell *c, uint64_t seq, double *since);
    /* The running request is past wall_ms by `overdue` seconds. Returns
     * true while the cell may still answer (it was interrupted), false
     * once it was killed or abandoned (retired). */
    bool (*overrun)(iso_cell *c, double overdue);
    /* End the cell (force: without waiting for it). Leaves it retired. */
    void (*stop)(iso_cell *c, bool force);
    /* Free backend state (last reference gone). */
    void (*destroy)(iso_cell *c);
    /* Interrupt request seq if it still runs; any thread (the watchdog).
     * NULL: the backend enforces its limits otherwise. */
    void (*interrupt)(iso_cell *c, uint64_t seq);
    /* Hand the cell's own guard the plan c->plan now is (a reload): 1 when
     * in force on return, 0 when it takes it before its next request (it
     * is busy), -1 with err (the cell died). NULL: it reads c->plan. */
    int (*reload)(iso_cell *c, iso_error *err);
    /* An open cell's CPU time in ms and memory in bytes (stats). */
    int64_t (*cpu_ms)(const iso_cell *c);
    int64_t (*mem_bytes)(const iso_cell *c);
    /* The fd that becomes readable when the cell sent something, for
     * iso_cell_wait_any (-1 once it is gone). NULL: the cell rings the
     * doorbell instead. */
    int (*poll_fd)(const iso_cell *c);
} iso_cell_ops;

extern const iso_cell_ops iso_subinterpreter_ops, iso_process_ops;
/* backend.c: the ops of backend b (NULL: none in this build); a test puts
 * a fake backend in a slot with iso_backend_ops_set. */
const iso_cell_ops *iso_backend_ops(iso_backend b);
void iso_backend_ops_set(iso_backend b, const iso_cell_ops *ops);
/* proc.c, pure: may a worker report kind in a RESULT (what it sends: guest,
 * value, and memory under limits.mem)? A death note made fit to show:
 * bytes other than printable ASCII dropped, in place; its new length. */
bool iso_worker_kind_allowed(iso_kind kind, int64_t mem_limit);
size_t iso_death_note_clean(char *note);
/* SIGKILL the zygote (its cells die with it: PDEATHSIG) and reap it; the
 * next process cell starts a new one. Any thread; never blocks on a lock. */
void iso_process_end(void);
/* Record that phase name of c's spawn ended at `at` (iso_now() seconds;
 * a worker's clock is the host's). Past ISO_PHASES_MAX: dropped. */
void iso_cell_phase(iso_cell *c, const char *name, double at);
/* lifecycle.c: run iso_shutdown at exit (registered once). */
void iso_shutdown_at_exit(void);

struct iso_cell {
    _Atomic int refs; /* the host handle, the cell thread, interrupters */
    char name[ISO_NAME_MAX + 1];
    iso_backend backend;
    const iso_cell_ops *ops;
    void *backend_data;    /* proc.c: the worker process */
    iso_value confinement; /* per layer: what confines this cell */
    /* What the guest runtime reads: its name, imports, capabilities, plan
     * (immutable; NULL denies every fs and net access; a reload swaps
     * it), output and memory limits, and its sink. A sub-interpreter
     * cell's thread runs its guest with it; a process cell's host side
     * reads the rules from it. mem_account is set before the cell is
     * started, output_used and quiet are the cell thread's. */
    iso_guest guest;
    int64_t wall_ms, cpu_ms; /* 0: none */
    char **deny_syscalls;    /* the policy's syscalls.deny */
    size_t n_deny_syscalls;
    struct iso_cell_kernel *kernel; /* cell_confine.c */
    iso_guard guard;    /* the BPF guard of its cgroup (cell_guard.c) */
    iso_plan **retired; /* plans replaced by reloads */
    size_t n_retired;
    /* The host's queue limits (0: unbounded), and what waits now in the
     * outbox and the host's posts and events: charged by whoever queues a
     * message, refunded when the host takes it. */
    int64_t queue_bytes, queue_values;
    _Atomic int64_t queued_bytes, queued_values;

    pthread_mutex_t mu;
    pthread_cond_t cv;    /* slow events only: start-up, interrupters */
    iso_signal to_cell;   /* a request, a broker reply, or stop */
    iso_signal to_host;   /* the outbox grew */
    iso_req *req;         /* mu: the request the cell should run */
    iso_msg_queue outbox; /* mu: cell -> host */
    bool reply_ready;     /* mu: broker answer for the cell */
    iso_value reply;
    char *reply_error;
    _Atomic bool stop;      /* leave the loop and end the interpreter */
    _Atomic bool abandoned; /* the host gave up on this thread */
    _Atomic int state;      /* iso_state */
    int start_rc;           /* mu: set once the interpreter exists */
    iso_error start_err;
    int confine_rc; /* mu: 1 while the thread confines itself */
    iso_error confine_err;
    bool interp_alive; /* mu: interrupters may touch the interp */
    int interrupters;  /* mu: interrupters in flight */

    /* Cell thread only (and interrupters, under the cell's GIL). */
    pthread_t thread;
    clockid_t cpu_clock;
    bool has_cpu_clock;
    _Atomic uint64_t running_seq; /* request being run; 0 when idle */

    /* Host thread only. */
    iso_msg_queue posts, events;
    iso_msg *pending_result, *pending_request;
    uint64_t next_seq;
    bool busy;        /* a request was submitted, result not taken */
    iso_error lost;   /* why the cell died under a request, found by an
                         event poll: the next wait for the result gets it */
    iso_kind overrun; /* ISO_TIMEOUT / ISO_CPU: the request passed a limit */
    bool confining;   /* the cell thread's confinement is not awaited yet */
    bool watched;     /* the watchdog watches the running request */
    iso_error failed; /* why the host stopped the cell (confinement) */
    double overrun_since; /* when it did */
    double started, last_interrupt;
    double spawned_at, ended_at;
    /* How its spawn went (iso_cell_phase), under mu: spawn_began and each
     * phase's end in iso_now() seconds, as the host or its worker saw it */
    double spawn_began;
    iso_phase phases[ISO_PHASES_MAX];
    size_t n_phases;
    uint64_t calls, posts_count, denials;
};

/* modes.c: the rollout mode. */
typedef enum iso_mode {
    ISO_MODE_DEV,
    ISO_MODE_HARDENED,
    ISO_MODE_COMPAT
} iso_mode;
iso_mode iso_mode_get(void);
/* cell_confine.c: kernel layers on a sub-interpreter cell's thread.
 * Host: spawn starts the cell thread's confinement; everything else that
 * touches the cell first waits for it with iso_cell_confined (-1 with err
 * when it failed). The cell thread serves it before any request. */
int iso_cell_confine(iso_cell *c, iso_error *err);
int iso_cell_confined(iso_cell *c, iso_error *err);
/* cell.c: iso_cell_confined, then a warning event for a missing layer, or
 * the cell stopped with the reason kept for every later call. */
int iso_cell_settle(iso_cell *c, iso_error *err);
/* The pool's refill thread: a warm cell's thread joins a threaded cgroup of
 * its own ahead of spawn. Best effort (spawn makes one when it did not). */
void iso_cell_cgroup_prepare(iso_cell *c);
/* cell_guard.c: the BPF guard for a cell's cgroup (either backend):
 * install its plan's rules and route its denials to the cell's events;
 * the confinement row. */
bool iso_cell_guard(iso_cell *c, const char *cgroup_dir, uint64_t cgroup_id,
                    char *why, size_t n); /* cgroup_id 0: look it up */
void iso_cell_unguard(iso_cell *c);
int iso_cell_guard_row(iso_cell *c, iso_value *list, const char *scope,
                       const char *why);
void iso_cell_guard_drain(void); /* BPF denials -> their cells' events */
/* The plan the cell decides with now (iso_guest_plan). */
static inline const iso_plan *iso_cell_plan(iso_cell *c)
{
    return iso_guest_plan(&c->guest);
}
void iso_cell_confine_run(iso_cell *c); /* the cell thread */
void iso_cell_unconfine(iso_cell *c);   /* host: close */

/* The watchdog (watchdog.c): interrupts a sub-interpreter request past a
 * limit even while the host does not wait for it; the host adopts what it
 * found (iso_watchdog_found) as the request's overrun. */
int iso_watchdog_watch(iso_cell *c, uint64_t seq, double started);
void iso_watchdog_forget(iso_cell *c);
iso_kind iso_watchdog_found(iso_cell *c, uint64_t seq, double *since);
/* limits.c: CPU time of a sub-interpreter cell's thread, in ms (process
 * cells have RLIMIT_CPU in their worker instead). */
int64_t iso_cell_thread_cpu_ms(const iso_cell *c);

/* Both threads. */
/* Append m (consumed) to the outbox and wake the host. A post, log, metric
 * or denial is counted against the queue limits first: -1 (m destroyed)
 * when it would pass one. */
int iso_cell_push(iso_cell *c, iso_msg *m);
/* Count m against c's queue limits (any thread): -1, nothing counted, when
 * it would pass queue_bytes or queue_values. */
int iso_cell_queue_charge(iso_cell *c, iso_msg *m);
/* Which queue limit a refused charge passed, as "limits.<name>=N <unit>". */
void iso_cell_queue_why(iso_cell *c, char *buf, size_t n);
/* Set a denial's source, the 6th item of its list ("cell", "kernel" or
 * "host"), replacing whatever was there. -1 on OOM. */
int iso_denial_mark(iso_msg *m, const char *source);
void iso_cell_wake_host(iso_cell *c); /* have a waiting host look again */
/* The doorbell's ringing end (made on first use; -1 if it could not be):
 * the one host fd a confined cell thread keeps besides 0, 1 and 2. */
int iso_cell_doorbell_fd(void);
void *iso_py_cell_thread(void *arg); /* py_cell.c: the cell thread */
void iso_cell_unref(iso_cell *c);
void iso_req_destroy(iso_req *r);

/* The warm pool (pool.c). */
/* A started cell of backend b, unnamed and without rules (a warm pool's). */
iso_cell *iso_cell_new_blank(iso_backend b, iso_error *err);
iso_cell *iso_pool_take(void); /* a warm cell, or NULL when there is none */

/* Host thread, for backends. */
/* Sort m (consumed) into the host queues, counting what it queues against
 * the queue limits unless it was counted on the way (iso_cell_push). A
 * denial without a source is the cell's claim (source "cell"). -1 (m
 * destroyed) when it would pass a queue limit. */
int iso_cell_deliver(iso_cell *c, iso_msg *m);
/* The cell is over: state CLOSED or DEAD, name free, nothing running. */
void iso_cell_retire(iso_cell *c, iso_state state);
/* Move the outbox into the host queues; true when anything moved. */
bool iso_cell_drain_outbox(iso_cell *c);

#endif
