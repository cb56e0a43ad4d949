/*
 * cgroup v2 directories for process cells (host side; no Lua, no Python).
 *
 * Every cell gets <mount>/luaisolate/<name>-<pid>-<n>: its worker joins it
 * before guest code runs, the host kills the whole directory on kill and
 * removes it on close. The mount point is discovered from
 * /proc/self/mountinfo (hybrid hosts mount v2 at /sys/fs/cgroup/unified).
 *
 * Errors: ISO_NOT_IMPLEMENTED when there is no cgroup v2 mount or it is not
 * writable, ISO_INVALID_ARGUMENT for a bad name, ISO_CRASHED for other
 * system errors (err->code is the errno). None of these block for long;
 * iso_cgroup_remove may sleep up to ~200 ms.
 */
#ifndef ISO_CGROUP_H
#define ISO_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate.h"

typedef struct iso_cgroup {
    char path[4096];   /* the cell's directory; "" = none */
    bool pids, memory; /* controllers enabled in it (limits enforceable) */
} iso_cgroup;

/* The cgroup v2 mount point from /proc/self/mountinfo. */
int iso_cgroup_mount(char *out, size_t n, iso_error *err);
/* <mount>/luaisolate, created if missing; enables the pids and memory
 * controllers in its subtree where the parent offers them. */
int iso_cgroup_root(char *out, size_t n, iso_error *err);
/* A new directory <root>/<name>-<unique suffix> for one cell (name as for
 * cells: [A-Za-z0-9_-]{1,64}); writes memory.max (and memory.swap.max = 0,
 * memory.oom.group = 1) / pids.max when those controllers are available and
 * the value is >= 0; cg->pids / cg->memory say which controllers are
 * enabled. On failure nothing is left behind and cg->path is "". */
int iso_cgroup_create(const char *name, int64_t mem_bytes, int64_t pids_max,
                      iso_cgroup *cg, iso_error *err);
/* Path of cg's cgroup.procs (a child writes "0" into it to join). */
void iso_cgroup_procs_path(const iso_cgroup *cg, char *out, size_t n);
/* SIGKILL everything in it: cgroup.kill (kernel >= 5.14), else each pid in
 * cgroup.procs. Does not wait for the deaths. Idempotent (a removed or
 * never created cgroup is success). */
int iso_cgroup_kill(const iso_cgroup *cg, iso_error *err);
/* rmdir, retrying EBUSY for up to ~200 ms (it stays busy briefly after its
 * processes died). Idempotent (ENOENT is success). */
int iso_cgroup_remove(const iso_cgroup *cg, iso_error *err);
/* Number of cell directories under the root (0 when there is no root). */
int iso_cgroup_count(size_t *n, iso_error *err);

/*
 * Threaded cgroups, so that kernel layers keyed by cgroup (the BPF guard)
 * see each sub-interpreter cell thread on its own. The host process must
 * first move into its own domain cgroup <root>/host-<pid>
 * (iso_cgroup_host_enter: idempotent; at exit the process moves back and
 * the directory is removed; directories of dead hosts are reaped). A cell
 * directory is then <root>/host-<pid>/<name>-<pid>-<n> of type threaded;
 * the cell thread writes its tid to cgroup.threads.
 */
int iso_cgroup_host_enter(iso_error *err);
bool iso_cgroup_host_entered(void);
/* ISO_NOT_IMPLEMENTED (saying how to turn them on) before host_enter. */
int iso_cgroup_thread_create(const char *name, iso_cgroup *cg, iso_error *err);
void iso_cgroup_threads_path(const iso_cgroup *cg, char *out, size_t n);
/* Move thread tid (if alive) back to the host directory; remove cg (now,
 * or soon on a reaper thread while the kernel still holds it busy). */
int iso_cgroup_thread_release(const iso_cgroup *cg, long tid, iso_error *err);

#endif
