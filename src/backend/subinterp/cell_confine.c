/*
 * Kernel layers on a sub-interpreter cell's own thread (defense in depth,
 * not a boundary: the thread shares the host's memory).
 *
 * The confine op hands the cell its limits, then asks the cell thread to
 * confine itself (ISO_REQ_CONFINE); the confined op waits for it and hands
 * the host the rows of what it applied: the thread joins its own threaded
 * cgroup, takes a private fd table holding only stdio and the doorbell,
 * then no_new_privs, Landlock and an ERRNO seccomp filter (confine.c). A warm
 * cell is confined when it is taken from the pool, a new one right after it
 * started; either way exactly once and before any guest code, and its thread
 * never serves another cell.
 *
 * (The BPF guard and hot reload are src/core/cell_guard.c's, what the
 * kernel offers src/kernel/kernel_info.c's.)
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroup.h"
#include "confine.h"
#include "grants.h"
#include "landlock.h"
#include "netguard.h"
#include "subinterp.h"

struct iso_sub_kernel {
    iso_cgroup cg; /* the thread's cgroup; path "" when missing */
    long tid;
    bool joined;    /* the thread is in cg already (it joined while warm) */
    bool join_only; /* the pending ISO_REQ_CONFINE only joins cg */
    bool compat;    /* the mode when spawn asked (the thread runs later) */
    bool audit;     /* learn mode, likewise */
    uint64_t cg_id; /* cg's id, found while warm; 0: not yet */
    char cgroup_why[600]; /* why the thread has no cgroup */
    char guard_why[600];  /* why the BPF guard does not cover the cell */
    bool guarded;         /* the host's BPF guard covers cg */
};

/* ---- the cell thread ---------------------------------------------------- */

static int thread_config(iso_sub *s, iso_grants *gs, iso_confine_config *cc,
                         char *threads, size_t n, iso_error *err)
{
    iso_grants_runtime(gs, true); /* refused extensions left out */
    iso_grants_opted_in(gs, s->guest->imports, s->guest->n_imports);
    cc->n_fixed_grants = gs->n;
    iso_grants_plan(gs, s->guest->plan);
    cc->in_thread = true;
    cc->compat = s->kernel->compat;
    cc->audit = s->kernel->audit;
    cc->grants = gs->g;
    cc->n_grants = gs->n;
    cc->processes = 0;
    cc->death_note_fd = -1;
    cc->deny_syscalls = (const char *const *)s->deny_syscalls;
    cc->n_deny = s->n_deny_syscalls;
    cc->connect_by_bpf = s->kernel->guarded;
    if (s->kernel->cg.path[0]) {
        iso_cgroup_threads_path(&s->kernel->cg, threads, n);
        cc->cgroup_threads = threads;
        cc->cgroup_joined = s->kernel->joined;
    } else {
        cc->cgroup_missing = s->kernel->cgroup_why;
    }
    return iso_confine_net_from_plan(cc, s->guest->plan, err);
}

/* The state of a layer in rep ("missing" when it is not there). */
static const char *state_of(const iso_confine_report *rep, const char *layer)
{
    for (size_t i = 0; i < rep->n; i++)
        if (strcmp(rep->steps[i].layer, layer) == 0)
            return iso_step_state_name(rep->steps[i].state);
    return "missing";
}

/* Native code: the refused extension files out of Landlock's grants (only
 * as good as Landlock, and only if not loaded already), memfd_create
 * denied, writable paths noexec (their own rows). */
static int native_row(iso_value *v, const iso_confine_report *rep)
{
    char loaded[ISO_PATH_MAX], detail[ISO_PATH_MAX + 200];
    size_t n = iso_grants_refused_count(loaded, sizeof loaded);
    const char *state = state_of(rep, "landlock_fs");
    if (loaded[0]) {
        state = "missing";
        snprintf(detail, sizeof detail,
                 "%s is loaded in this process already: dlopen reuses it "
                 "without opening the file",
                 loaded);
    } else {
        snprintf(detail, sizeof detail,
                 "%zu refused extension file(s) left out of Landlock's "
                 "grants; memfd_create denied",
                 n);
    }
    return iso_confinement_add(v, "native_code", state, "cell thread", detail);
}

/* The rows of what confines the cell, into s->rows (the confined op hands
 * them to the host). */
static int describe(iso_sub *s, const iso_confine_report *rep)
{
    iso_value rows = {0}, *v = &rows;
    iso_value_set_list(v);
    int rc = iso_confinement_add(v, "python-guard", "active", "cell thread",
                                 "imports, fs, net, exec and capabilities "
                                 "in Python: a guardrail, not a boundary");
    if (rc == 0)
        rc = iso_confine_rows(rep, "cell thread", v);
    if (rc == 0)
        rc = native_row(v, rep);
    if (rc == 0)
        rc = iso_host_guard_row(&s->host, v, "cell thread",
                                s->kernel->guard_why);
    if (rc == 0)
        rc = iso_confinement_add(
            v, "rlimit", "not needed", "process",
            "rlimits are per process: cpu_ms is the watchdog's, mem the "
            "cell's allocation account; open_files is refused for "
            "sub-interpreter cells");
    if (rc == 0) {
        pthread_mutex_lock(&s->ch->mu);
        iso_value_free(&s->rows);
        iso_value_move(&s->rows, v);
        pthread_mutex_unlock(&s->ch->mu);
    }
    iso_value_free(v);
    return rc;
}

/* On the cell thread, with its GIL. */
/* The thread's cgroup (unless it joined one while warm), guarded before
 * anything of the cell runs. On the cell thread: spawn need not wait. */
static void make_cgroup(iso_sub *s)
{
    iso_error err = {0};
    struct iso_sub_kernel *k = s->kernel;
    if (!k->joined &&
        iso_cgroup_thread_create(s->guest->name, &k->cg, &err) < 0) {
        snprintf(k->cgroup_why, sizeof k->cgroup_why, "%s", err.message);
        snprintf(k->guard_why, sizeof k->guard_why,
                 "the BPF guard sees cgroups, and this cell thread has none");
    } else {
        iso_host_phase(&s->host, "cgroup", iso_now());
        k->guarded = iso_host_guard(&s->host, k->cg.path, k->cg_id,
                                    k->guard_why, sizeof k->guard_why);
    }
    iso_host_phase(&s->host, "bpf rules", iso_now());
    iso_error_clear(&err);
}

static int confine_self(iso_sub *s, iso_error *err)
{
    iso_grants gs = {.n = 0};
    iso_confine_config cc = {.mem_bytes = -1};
    iso_confine_report rep = {.n = 0};
    char threads[ISO_PATH_MAX + 64];
    /* the one host fd the thread keeps: it rings the host with it */
    int bell = iso_host_doorbell_fd(&s->host);
    cc.keep_fds = &bell;
    cc.n_keep = bell >= 0;
    s->kernel->tid = (long)syscall(SYS_gettid);
    make_cgroup(s);
    int rc = thread_config(s, &gs, &cc, threads, sizeof threads, err);
    if (rc == 0)
        rc = iso_confine_thread(&cc, &rep, err);
    for (size_t i = 0; rc == 0 && i < rep.n; i++)
        if (i == 0 || rep.steps[i].done_at != rep.steps[i - 1].done_at)
            iso_host_phase(&s->host, rep.steps[i].layer, rep.steps[i].done_at);
    if (rc == 0 && describe(s, &rep))
        rc = iso_error_set(err, ISO_MEMORY, "out of memory");
    iso_confine_net_free(&cc);
    iso_grants_free(&gs);
    return rc;
}

/* On a warm cell's thread: into its cgroup, nothing else yet. */
static int join_self(iso_sub *s, iso_error *err)
{
    char threads[ISO_PATH_MAX + 64];
    s->kernel->tid = (long)syscall(SYS_gettid);
    iso_cgroup_threads_path(&s->kernel->cg, threads, sizeof threads);
    return iso_confine_join_cgroup(threads, err);
}

void iso_sub_confine_run(iso_sub *s)
{
    iso_error err = {0};
    int rc = s->kernel->join_only ? join_self(s, &err) : confine_self(s, &err);
    pthread_mutex_lock(&s->ch->mu);
    s->confine_rc = rc;
    iso_error_move(&s->confine_err, &err);
    pthread_cond_broadcast(&s->ch->cv);
    pthread_mutex_unlock(&s->ch->mu);
}

/* ---- the host side ------------------------------------------------------ */

static struct iso_sub_kernel *kernel_of(iso_sub *s)
{
    if (!s->kernel)
        s->kernel = calloc(1, sizeof *s->kernel);
    return s->kernel;
}

/* Hand the cell thread ISO_REQ_CONFINE; await_thread waits for it. */
static int post_request(iso_sub *s, iso_error *err)
{
    iso_req *r = calloc(1, sizeof *r);
    if (!r)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    r->type = ISO_REQ_CONFINE;
    pthread_mutex_lock(&s->ch->mu);
    s->confine_rc = 1; /* pending */
    s->ch->req = r;
    pthread_mutex_unlock(&s->ch->mu);
    s->confining = true;
    iso_signal_notify(&s->ch->to_cell);
    return 0;
}

/* Wait for the thread's answer to ISO_REQ_CONFINE, if one is pending. */
static int await_thread(iso_sub *s, iso_error *err)
{
    if (!s->confining)
        return 0;
    pthread_mutex_lock(&s->ch->mu);
    while (s->confine_rc > 0)
        pthread_cond_wait(&s->ch->cv, &s->ch->mu);
    int rc = s->confine_rc;
    if (rc)
        iso_error_move(err, &s->confine_err);
    pthread_mutex_unlock(&s->ch->mu);
    s->confining = false;
    return rc;
}

static int ask_thread(iso_sub *s, iso_error *err)
{
    return post_request(s, err) || await_thread(s, err) ? -1 : 0;
}

int iso_sub_confined(iso_sub *s, iso_error *err)
{
    if (await_thread(s, err))
        return -1;
    if (s->rows.type == ISO_LIST) /* the thread confined itself just now */
        iso_host_confined(&s->host, &s->rows);
    iso_value_free(&s->rows);
    return 0;
}

void iso_sub_cgroup_prepare(iso_sub *s)
{
    iso_error err = {0};
    struct iso_sub_kernel *k = kernel_of(s);
    if (!k || iso_cgroup_thread_create("pool", &k->cg, &err) < 0) {
        iso_error_clear(&err);
        return; /* spawn tries again, and reports why */
    }
    k->join_only = true;
    int rc = ask_thread(s, &err);
    k->join_only = false;
    k->joined = rc == 0;
    if (rc == 0 && iso_cgroup_id_of(k->cg.path, &k->cg_id, &err) < 0)
        k->cg_id = 0; /* spawn looks again */
    if (rc) {
        iso_cgroup_remove(&k->cg, &err);
        k->cg.path[0] = '\0';
    }
    iso_error_clear(&err);
}

int iso_sub_kernel_confine(iso_sub *s, iso_error *err)
{
    if (!kernel_of(s))
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    iso_mode mode = iso_host_mode_now(&s->host);
    s->kernel->compat = mode == ISO_MODE_COMPAT;
    s->kernel->audit = mode == ISO_MODE_LEARN;
    return post_request(s, err);
}

void iso_sub_unconfine(iso_sub *s)
{
    if (!s->kernel)
        return;
    iso_error err = {0};
    iso_host_unguard(&s->host);
    iso_cgroup_thread_release(&s->kernel->cg, s->kernel->tid, &err);
    iso_error_clear(&err);
    free(s->kernel);
    s->kernel = NULL;
}
