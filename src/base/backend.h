/*
 * The seam between the host's cell object (src/core) and a backend: the
 * ops a backend offers, the requests it runs, and the hooks (host_hooks.h)
 * it reports through. A backend includes this and never the cell object;
 * the host holds each cell's backend state only as an iso_backend_cell
 * handle.
 */
#ifndef ISO_BACKEND_H
#define ISO_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "host_hooks.h"
#include "isolate.h"

/* A backend's own state for one cell; what it is, only the backend knows
 * (the process backend: its worker; the sub-interpreter backend: its
 * thread's state). */
typedef struct iso_backend_cell iso_backend_cell;

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

static inline void iso_req_destroy(iso_req *r)
{
    if (!r)
        return;
    free(r->text);
    iso_value_free(&r->args);
    free(r);
}

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
    /* Keep target cells warm for take_warm, each made by make (the host's:
     * a started cell of this backend, unnamed, without rules, and in
     * *handle the backend's state for it): 0, or -1 with err. NULL: the
     * backend keeps no warm cells. */
    int (*warm_pool)(size_t target,
                     iso_cell *(*make)(iso_backend_cell **handle,
                                       iso_error *err),
                     iso_error *err);
    /* Create cell c (the host's; cfg says what it is) and wait until it is
     * ready, the host then counts it idle. *out is the backend's state for
     * it, set even when start fails (destroy frees it). From here on the
     * backend tells the host what the cell sends, that it ended, and how
     * its spawn went through `host` (a copy is the backend's to keep). */
    int (*start)(iso_cell *c, const iso_cell_config *cfg,
                 const iso_host_hooks *host, iso_backend_cell **out,
                 iso_error *err);
    /* Limits and confinement of a started (or warm, just configured) cell
     * before any guest code, by cfg (what the backend keeps of it, it
     * copies): 0, or -1 with err. NULL: the cell confined itself before it
     * was ready (its missing layers are in its rows). */
    int (*confine)(iso_backend_cell *h, const iso_cell_config *cfg,
                   iso_error *err);
    /* Wait until the confinement the cell applies itself (started by the
     * confine op) is done: 0, or -1 with err saying why it failed (the
     * confined hook has the rows of what confines it by then). NULL: the
     * backend confines its cells before start returns. */
    int (*confined)(iso_backend_cell *h, iso_error *err);
    /* Hand over request r (owned). */
    int (*submit)(iso_backend_cell *h, iso_req *r, iso_error *err);
    /* Deliver what the cell sent (the deliver hook), waiting for something
     * until deadline (iso_now() seconds, < 0 forever). -1 with err when
     * the cell died. */
    int (*receive)(iso_backend_cell *h, double deadline, iso_error *err);
    /* Answer the cell's broker request. */
    void (*reply)(iso_backend_cell *h, iso_value *value, const char *error);
    /* A limit the host checks itself while it waits for a result:
     * ISO_CPU, ISO_MEMORY or ISO_OK. NULL: the backend enforces cpu_ms
     * and mem otherwise (a worker's RLIMIT_CPU and its own MemoryError). */
    iso_kind (*over)(iso_backend_cell *h);
    /* Watch request seq (started at `started`) for its limits while the
     * host does not wait for it: 0 when watched; forget it; what was found
     * (ISO_OK: nothing yet) and since when. NULL: no watcher. */
    int (*watch)(iso_backend_cell *h, uint64_t seq, double started);
    void (*forget)(iso_backend_cell *h);
    iso_kind (*found)(iso_backend_cell *h, uint64_t seq, double *since);
    /* The running request is past wall_ms by `overdue` seconds. Returns
     * true while the cell may still answer (it was interrupted; *again:
     * when, in iso_now() seconds, to call again), false once it was
     * killed or abandoned (retired). */
    bool (*overrun)(iso_backend_cell *h, double overdue, double *again);
    /* End the cell (force: without waiting for it; busy: a request was
     * submitted whose result the host has not taken). Leaves it retired
     * (the retire hook). */
    void (*stop)(iso_backend_cell *h, bool force, bool busy);
    /* Free backend state (last reference gone; h may be NULL when the
     * cell was never started). */
    void (*destroy)(iso_backend_cell *h);
    /* Interrupt request seq if it still runs; any thread (the watchdog).
     * NULL: the backend enforces its limits otherwise. */
    void (*interrupt)(iso_backend_cell *h, uint64_t seq);
    /* Hand the cell's own guard plan, the cell's plan now (a reload; busy
     * as for stop): 1 when in force on return, 0 when it takes it before
     * its next request (it is busy), -1 with err (the cell died). NULL: its
     * guard reads the guest's plan (iso_guest_plan). */
    int (*reload)(iso_backend_cell *h, iso_plan *plan, bool busy,
                  iso_error *err);
    /* An open cell's CPU time in ms and memory in bytes (stats). */
    int64_t (*cpu_ms)(const iso_backend_cell *h);
    int64_t (*mem_bytes)(const iso_backend_cell *h);
    /* The fd that becomes readable when the cell sent something, for
     * iso_cell_wait_any (-1 once it is gone). NULL: the cell rings the
     * doorbell instead. */
    int (*poll_fd)(const iso_backend_cell *h);
} iso_cell_ops;

extern const iso_cell_ops iso_subinterpreter_ops, iso_process_ops;
/* proc.c, pure: may a worker report kind in a RESULT (what it sends: guest,
 * value, and memory under limits.mem)? A death note made fit to show:
 * bytes other than printable ASCII dropped, in place; its new length. */
bool iso_worker_kind_allowed(iso_kind kind, int64_t mem_limit);
size_t iso_death_note_clean(char *note);
/* SIGKILL the zygote (its cells die with it: PDEATHSIG) and reap it; the
 * next process cell starts a new one. Any thread; never blocks on a lock. */
void iso_process_end(void);

#endif
