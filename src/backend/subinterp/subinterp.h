/*
 * What the sub-interpreter backend's files share (py_cell.c holds its ops
 * table): the host-side limits of a cell (limits.c) and the abandoned
 * guests (abandoned.c).
 */
#ifndef ISO_SUBINTERP_H
#define ISO_SUBINTERP_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "cell.h"
#include "guest.h"
#include "pool.h"

/* A sub-interpreter cell's own state, its handle (iso_backend_cell): what
 * only this backend's threads use. The host's cell points to it (handle)
 * and it back to the cell; it lives as long as the cell (the destroy op
 * frees it). */
typedef struct iso_sub {
    iso_cell *cell;
    int start_rc; /* ch.mu: set once the interpreter exists */
    iso_error start_err;
    int confine_rc; /* ch.mu: 1 while the thread confines itself */
    iso_error confine_err;
    bool interp_alive; /* ch.mu: interrupters may touch the interp */
    int interrupters;  /* ch.mu: interrupters in flight */
    struct iso_cell_kernel *kernel; /* cell_confine.c */
    /* Cell thread only (and interrupters, under the cell's GIL). */
    pthread_t thread;
    clockid_t cpu_clock;
    bool has_cpu_clock;
    _Atomic uint64_t running_seq; /* request being run; 0 when idle */
} iso_sub;

static inline iso_sub *iso_sub_of(const iso_cell *c)
{
    return (iso_sub *)c->handle;
}
/* The ops' way back from the handle to the host's cell. */
static inline iso_cell *iso_sub_cell(const iso_backend_cell *h)
{
    return ((const iso_sub *)h)->cell;
}

/* limits.mem and the thread's kernel layers, before any guest code (the
 * confine op): 0, or -1 with err. */
int iso_sub_confine(iso_cell *c, iso_error *err);
/* Which of cpu_ms and mem the running request passed (the over op). */
iso_kind iso_sub_over(iso_cell *c);
/* What the cell's memory account holds, in bytes (the mem_bytes op). */
int64_t iso_sub_mem_bytes(const iso_cell *c);

/* The host gave up on c's thread: keep c (a reference of the list's own)
 * until its thread ends, unless it has ended already (c->guest.py NULL). */
void iso_abandoned_add(iso_cell *c);
/* c's thread ends (abandoned or not): its entry, if any, goes. */
void iso_abandoned_thread_ends(iso_cell *c);
/* Interrupter, with c's GIL: park the abandoned guest's threads for good
 * at their next trace event. */
void iso_abandoned_park(iso_cell *c, iso_py_state *p);

#endif
