/*
 * What the sub-interpreter backend's files share (py_cell.c holds its ops
 * table): a cell's handle, iso_sub; its limits (limits.c), kernel layers
 * (cell_confine.c), the watchdog and the abandoned guests (abandoned.c).
 * The backend knows the host's cell only through the seam (backend.h,
 * host_hooks.h, cell_channel.h), never its object.
 */
#ifndef ISO_SUBINTERP_H
#define ISO_SUBINTERP_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "backend.h"
#include "cell_channel.h"
#include "guest.h"
#include "pool.h"

#define ISO_CLOSE_GRACE_S 2.0 /* close: how long to wait for the thread */
#define ISO_KILL_GRACE_S 0.25 /* kill / wall_ms: interrupt, then abandon */
#define ISO_INTERRUPT_EVERY_S 0.05

/* A sub-interpreter cell's own state, its handle (iso_backend_cell): what
 * only this backend's threads use, and what they reach of the host's cell
 * (its channel and guest, through the start op's hooks). It lives as long
 * as the host's cell (the destroy op frees it). */
typedef struct iso_sub {
    iso_host_hooks host;  /* the hooks the start op was given */
    iso_cell_channel *ch; /* the host's: what crosses to the cell thread */
    iso_guest *guest;     /* the host's: what the guest runtime reads */
    /* Set by the confine op (a warm cell's rules come with it). */
    int64_t wall_ms, cpu_ms; /* 0: none */
    char **deny_syscalls;    /* the policy's syscalls.deny */
    size_t n_deny_syscalls;
    int start_rc; /* ch->mu: set once the interpreter exists */
    iso_error start_err;
    int confine_rc; /* ch->mu: 1 while the thread confines itself */
    iso_error confine_err;
    iso_value rows;    /* ch->mu: what confines the cell, as the thread found */
    bool interp_alive; /* ch->mu: interrupters may touch the interp */
    bool thread_done;  /* ch->mu: the thread touches nothing of the cell */
    int interrupters;  /* ch->mu: interrupters in flight */
    struct iso_sub_kernel *kernel; /* cell_confine.c */
    /* Host thread only. */
    bool confining;        /* the thread's confinement is not awaited yet */
    uint64_t last_seq;     /* the request submitted last */
    double last_interrupt; /* when an overrun last interrupted it */
    /* Cell thread only (and interrupters, under the cell's GIL). */
    pthread_t thread;
    clockid_t cpu_clock;
    bool has_cpu_clock;
    _Atomic uint64_t running_seq; /* request being run; 0 when idle */
} iso_sub;

void *iso_py_cell_thread(void *arg); /* py_cell.c: the cell thread (s) */
/* interrupt.c: interrupt request seq if it still runs (0: whatever runs);
 * any thread. */
void iso_sub_interrupt(iso_sub *s, uint64_t seq);

/* limits.mem and the thread's kernel layers, before any guest code (the
 * confine op): 0, or -1 with err. */
int iso_sub_confine(iso_sub *s, iso_error *err);
/* Which of cpu_ms and mem the running request passed (the over op). */
iso_kind iso_sub_over(iso_sub *s);
/* What the cell's memory account holds, in bytes (the mem_bytes op). */
int64_t iso_sub_mem_bytes(const iso_sub *s);
/* limits.c: CPU time of the cell's thread, in ms (process cells have
 * RLIMIT_CPU in their worker instead). */
int64_t iso_sub_cpu_ms(const iso_sub *s);

/* cell_confine.c: kernel layers on the cell's thread. Host: the confine
 * op starts the cell thread's confinement (iso_sub_kernel_confine); the
 * confined op waits for it (-1 with err when it failed), then hands the
 * host the rows of what confines the cell. The cell thread serves it
 * before any request (iso_sub_confine_run). */
int iso_sub_kernel_confine(iso_sub *s, iso_error *err);
int iso_sub_confined(iso_sub *s, iso_error *err);
void iso_sub_confine_run(iso_sub *s); /* the cell thread */
void iso_sub_unconfine(iso_sub *s);   /* its destroy op */
/* On the pool's refill thread: a warm cell's thread joins a threaded
 * cgroup of its own ahead of spawn. Best effort (spawn makes one when it
 * did not). */
void iso_sub_cgroup_prepare(iso_sub *s);

/* The watchdog (watchdog.c): interrupts a request past a limit even while
 * the host does not wait for it; the host adopts what it found
 * (iso_watchdog_found) as the request's overrun. */
int iso_watchdog_watch(iso_sub *s, uint64_t seq, double started);
void iso_watchdog_forget(iso_sub *s);
iso_kind iso_watchdog_found(iso_sub *s, uint64_t seq, double *since);

/* The host gave up on s's thread: keep s (a hold of the list's own on the
 * host's cell) until its thread ends, unless it has ended already
 * (s->guest->py NULL). */
void iso_abandoned_add(iso_sub *s);
/* s's thread ends (abandoned or not): its entry, if any, goes. */
void iso_abandoned_thread_ends(iso_sub *s);
/* Interrupter, with s's GIL: park the abandoned guest's threads for good
 * at their next trace event. */
void iso_abandoned_park(iso_sub *s, iso_py_state *p);

#endif
