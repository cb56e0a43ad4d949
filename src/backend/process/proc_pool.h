/*
 * Process-cell workers made ahead of their policy (proc_pool.c) or for one
 * spawn (proc.c): a child of the zygote, created in a cgroup of its own,
 * past every confinement step no policy changes (close_fds, session,
 * environment, core=0, cgroup, capabilities, no_new_privs; a pool worker
 * has also taken its copy-on-write faults), waiting for its CONFIG frame.
 * Spawn takes one, puts the policy's cgroup limits and BPF rules on its
 * cgroup, then sends the CONFIG: the worker applies the policy's rlimits,
 * Landlock and seccomp before it reads any guest code.
 */
#ifndef ISO_PROC_POOL_H
#define ISO_PROC_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup.h"
#include "isolate.h"

typedef struct iso_proc_warm {
    pid_t pid;
    int sock, note; /* frames; the reading end of the death note */
    iso_cgroup cg;
    bool has_cg;
    uint64_t cg_id;             /* 0: not known */
    char cg_why[400];           /* why it has no cgroup */
    double cg_made_at, made_at; /* iso_now(): its cgroup made, forked */
} iso_proc_warm;

/* proc.c: a worker for a cell named name (its cgroup's name); pooled: a
 * pool worker (prefaults; a zygote is never started for it). Blocks for
 * the zygote's fork. 0, or -1 with err (nothing left behind). */
int iso_proc_warm_make(const char *name, bool pooled, iso_proc_warm *w,
                       iso_error *err);
/* proc.c: a worker no cell took: killed, its exit claimed, its cgroup
 * removed, its fds closed. */
void iso_proc_warm_discard(iso_proc_warm *w);

/* proc_pool.c: take a pool worker (false: none ready; the cold path). */
bool iso_proc_pool_take(iso_proc_warm *out);
/* A process cell was spawned: the pool starts (or resumes) refilling. */
void iso_proc_pool_wake(void);
/* The host's cells are ending (iso_process_end): every pool worker is
 * dropped and the pool sleeps until the next process spawn. Any thread. */
void iso_proc_pool_end(void);

#endif
