/*
 * The cell as both of its threads see it. The host (Lua) thread owns the
 * host-side queues; everything crossing to the cell thread goes through
 * its channel (ch: `mu` and one of the two signals).
 */
#ifndef ISO_CELL_H
#define ISO_CELL_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "backend.h"
#include "cell_channel.h"
#include "guard_routes.h"
#include "guest.h"
#include "handoff.h"
#include "host_hooks.h"
#include "isolate.h"
#include "msg.h"

#define ISO_CLOSE_GRACE_S 2.0 /* close: how long to wait for the thread */
#define ISO_KILL_GRACE_S 0.25 /* kill / wall_ms: interrupt, then abandon */
#define ISO_INTERRUPT_EVERY_S 0.05

/* backend.c: the ops of backend b (NULL: none in this build); a test puts
 * a fake backend in a slot with iso_backend_ops_set. */
const iso_cell_ops *iso_backend_ops(iso_backend b);
void iso_backend_ops_set(iso_backend b, const iso_cell_ops *ops);

struct iso_cell {
    _Atomic int refs; /* the host handle; a backend's threads (hold hook) */
    char name[ISO_NAME_MAX + 1];
    iso_backend backend;
    const iso_cell_ops *ops;
    iso_backend_cell *handle; /* the backend's own state (its start op) */
    iso_host_hooks host;      /* py_cell.c: the hooks its start op was given */
    iso_value confinement;    /* per layer: what confines this cell */
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
    iso_guard guard;    /* the BPF guard of its cgroup (cell_guard.c) */
    iso_plan **retired; /* plans replaced by reloads */
    size_t n_retired;
    /* The host's queue limits (0: unbounded), and what waits now in the
     * outbox and the host's posts and events: charged by whoever queues a
     * message, refunded when the host takes it. */
    int64_t queue_bytes, queue_values;
    _Atomic int64_t queued_bytes, queued_values;

    iso_cell_channel ch; /* what crosses to and from the cell thread */

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
    /* How its spawn went (the phase hook), under mu: spawn_began and each
     * phase's end in iso_now() seconds, as the host or its worker saw it */
    double spawn_began;
    iso_phase phases[ISO_PHASES_MAX];
    size_t n_phases;
    uint64_t calls, posts_count, denials;
};

/* modes.c: the rollout mode (backends get it in their hooks). */
iso_mode iso_mode_get(void);
/* cell_confine.c: kernel layers on a sub-interpreter cell's thread.
 * Host: spawn starts the cell thread's confinement; everything else that
 * touches the cell first waits for it with iso_cell_confined, its
 * confined op (-1 with err when it failed). The cell thread serves it
 * before any request. */
int iso_cell_confine(iso_cell *c, iso_error *err);
int iso_cell_confined(iso_cell *c, iso_error *err);
/* cell.c: the confined op, then a warning event for a missing layer, or
 * the cell stopped with the reason kept for every later call. */
int iso_cell_settle(iso_cell *c, iso_error *err);
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
void iso_cell_unconfine(iso_cell *c);   /* its destroy op */

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
/* The doorbell's ringing end (made on first use; -1 if it could not be):
 * the one host fd a confined cell thread keeps besides 0, 1 and 2. */
int iso_cell_doorbell_fd(void);
void *iso_py_cell_thread(void *arg); /* py_cell.c: the cell thread */
void iso_cell_unref(iso_cell *c);

/* A started cell of backend b, unnamed and without rules (a warm pool's). */
iso_cell *iso_cell_new_blank(iso_backend b, iso_error *err);

/* Host thread. */
/* Move the outbox into the host queues; true when anything moved. */
bool iso_cell_drain_outbox(iso_cell *c);

#endif
