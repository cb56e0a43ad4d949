/*
 * cgroup v2 directories (host side; no Lua, no Python).
 *
 * Every process cell gets <mount>/luaisolate/cells-<pid>/<name>-<pid>-<n>:
 * its worker joins it before guest code runs, the host kills the whole
 * directory on kill and removes it on close. A sub-interpreter cell's
 * thread gets a threaded child of the host's own <root>/host-<pid>. The
 * mount point is discovered from /proc/self/mountinfo (hybrid hosts mount
 * v2 at /sys/fs/cgroup/unified).
 *
 * Errors: ISO_NOT_IMPLEMENTED when there is no cgroup v2 mount or it is not
 * writable, ISO_INVALID_ARGUMENT for a bad name, ISO_CRASHED for other
 * system errors (err->code is the errno). None of these block for long;
 * iso_cgroup_remove may sleep up to ~200 ms.
 */
#ifndef ISO_CGROUP_H
#define ISO_CGROUP_H

#include <stdatomic.h>
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
/* iso_cgroup_create(name, -1, -1) for a cell made ahead (the process
 * pool's refill): fails, kind closed, once iso_cgroup_cells_end has run
 * and until a process spawn makes the cells dir again, so a refill in
 * flight never leaves a cells dir behind the host's end. */
int iso_cgroup_create_pooled(const char *name, iso_cgroup *cg, iso_error *err);
/* memory.max (with swap 0, oom.group 1) / pids.max of a cgroup made
 * ahead (the process pool), as iso_cgroup_create would have: a value < 0
 * or a controller cg lacks writes nothing. 0, or -1 with err. */
int iso_cgroup_set_limits(iso_cgroup *cg, int64_t mem_bytes, int64_t pids_max,
                          iso_error *err);
/* Path of cg's cgroup.procs (a child writes "0" into it to join). */
void iso_cgroup_procs_path(const iso_cgroup *cg, char *out, size_t n);
/* SIGKILL everything in it: cgroup.kill (kernel >= 5.14), else each pid in
 * cgroup.procs. Does not wait for the deaths. Idempotent (a removed or
 * never created cgroup is success). */
int iso_cgroup_kill(const iso_cgroup *cg, iso_error *err);
/* rmdir, retrying EBUSY for up to ~200 ms (it stays busy briefly after its
 * processes died). Idempotent (ENOENT is success). */
int iso_cgroup_remove(const iso_cgroup *cg, iso_error *err);
/* Number of this process's process-cell directories (in its cells dir). */
int iso_cgroup_count(size_t *n, iso_error *err);
/* <root>/cells-<pid>, this process's directory for process-cell cgroups
 * (made on first use; controllers enabled in it). */
int iso_cgroup_cells_dir(char *out, size_t n, iso_error *err);
/* cgroup.kill on dir (its whole subtree dies), then rmdir its
 * subdirectories and dir. Does not block for long (~200 ms per busy dir). */
int iso_cgroup_kill_tree(const char *dir, iso_error *err);
/* This process's end of its process cells: kill_tree on its cells dir
 * (the next process spawn makes it again, a pool refill does not). Any
 * thread; idempotent. */
void iso_cgroup_cells_end(void);

/*
 * State dead hosts left (cgroup_stale.c). Under the root, a directory
 * belongs to the host whose pid its name carries: host-<pid>,
 * cells-<pid>, or (older layout, cell cgroups next to each other)
 * <name>-<pid>-<n>. Those whose pid no longer exists (kill(pid, 0) says
 * ESRCH) are killed (cgroup.kill) and removed; a live process's never are.
 * fn (may be NULL) is told each directory removed. Returns how many were
 * removed, or -1 with err. The first iso_cgroup_root of a process runs it
 * once (iso_cgroup_stale_cleaned is then true).
 */
typedef void (*iso_cgroup_found)(const char *path, void *ud);
int iso_cgroup_clean_stale(iso_cgroup_found fn, void *ud, iso_error *err);
extern _Atomic bool iso_cgroup_stale_cleaned;

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
/* Move the host (and what it started there) back where it came from and
 * remove host-<pid>; registered with atexit by host_enter. Idempotent. */
void iso_cgroup_host_leave(void);
/* ISO_NOT_IMPLEMENTED (saying how to turn them on) before host_enter. */
int iso_cgroup_thread_create(const char *name, iso_cgroup *cg, iso_error *err);
void iso_cgroup_threads_path(const iso_cgroup *cg, char *out, size_t n);
/* Move thread tid (if alive) back to the host directory; remove cg (now,
 * or soon on a reaper thread while the kernel still holds it busy). */
int iso_cgroup_thread_release(const iso_cgroup *cg, long tid, iso_error *err);

/* cgroup_reaper.c, for cgroup.c: start the reaper thread (with the first
 * thread cgroup); hand it cg to remove once its thread has left (false
 * when it cannot take it: remove cg now). */
void iso_cgroup_reaper_start(void);
bool iso_cgroup_reap_later(const iso_cgroup *cg);

#endif
