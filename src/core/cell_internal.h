/*
 * The cell object, private to src/core: cell.c and the files it is split
 * into (cell_queue.c, cell_guard.c) and the rest of the host engine
 * (backend.c, modes.c, lifecycle.c) share it; nothing outside src/core
 * includes it. A backend sees the cell only through the seam (backend.h,
 * host_hooks.h, cell_channel.h). The host (Lua) thread owns the host-side
 * queues; everything crossing to a cell thread goes through its channel
 * (ch: `mu` and one of the two signals).
 */
#ifndef ISO_CELL_INTERNAL_H
#define ISO_CELL_INTERNAL_H

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
#include "registry.h"

struct iso_cell {
    _Atomic int refs; /* the host handle; a backend's threads (hold hook) */
    char name[ISO_NAME_MAX + 1];
    iso_backend backend;
    const iso_cell_ops *ops;
    iso_backend_cell *handle; /* the backend's own state (its start op) */
    iso_value confinement;    /* per layer: what confines this cell */
    /* What the guest runtime reads: its name, imports, capabilities, plan
     * (immutable; NULL denies every fs and net access; a reload swaps
     * it), output and memory limits, and its sink. A sub-interpreter
     * cell's thread runs its guest with it (its start op gets it through
     * the hooks); a process cell's host side reads the rules from it.
     * mem_account is set before the cell is started, output_used and
     * quiet are the cell thread's. */
    iso_guest guest;
    int64_t wall_ms, cpu_ms; /* 0: none */
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
    bool confining;   /* the confinement a backend applies itself (the
                         confine op) is not awaited yet (confined op) */
    bool watched;     /* the watchdog watches the running request */
    iso_error failed; /* why the host stopped the cell (confinement) */
    double overrun_since; /* when it did */
    double overrun_again; /* when the overrun op asked to be called again */
    double started;
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
void iso_cell_unref(iso_cell *c);

/* A started cell of backend b, unnamed and without rules (a warm pool's),
 * and in *handle its backend's state. */
iso_cell *iso_cell_new_blank(iso_backend b, iso_backend_cell **handle,
                             iso_error *err);

/* Host thread. */
/* Move the outbox into the host queues; true when anything moved. */
bool iso_cell_drain_outbox(iso_cell *c);

#endif
