/*
 * Kernel layers on a sub-interpreter cell's own thread (defense in depth,
 * not a boundary: the thread shares the host's memory and file table).
 *
 * Spawn hands the cell its rules, then asks the cell thread to confine
 * itself (ISO_REQ_CONFINE) and waits: the thread joins its own threaded
 * cgroup, then no_new_privs, Landlock and an ERRNO seccomp filter
 * (confine.c). A warm cell is confined when it is taken from the pool, a
 * new one right after it started; either way exactly once and before any
 * guest code, and its thread never serves another cell.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cell.h"
#include "cgroup.h"
#include "confine.h"
#include "grants.h"
#include "landlock.h"

struct iso_cell_kernel {
    iso_cgroup cg; /* the thread's cgroup; path "" when missing */
    long tid;
};

static _Atomic int mode = ISO_MODE_DEV;

static const char *const mode_names[] = {"dev", "hardened", "compat"};

int iso_mode_set(const char *name, iso_error *err)
{
    const char *const *names = mode_names;
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0) {
            atomic_store(&mode, i);
            return 0;
        }
    return iso_error_set(err, ISO_INVALID_ARGUMENT,
                         "mode must be dev, hardened or compat, got '%s'",
                         name);
}

iso_mode iso_mode_get(void)
{
    return (iso_mode)atomic_load(&mode);
}

const char *iso_mode_name(void)
{
    return mode_names[iso_mode_get()];
}

int iso_thread_cgroups_enable(iso_error *err)
{
    return iso_cgroup_host_enter(err);
}

bool iso_thread_cgroups_enabled(void)
{
    return iso_cgroup_host_entered();
}

void iso_kernel_info_get(iso_kernel_info *ki)
{
    memset(ki, 0, sizeof *ki);
    int abi = iso_landlock_abi();
    ki->landlock_abi = abi > 0 ? abi : 0;
    ki->seccomp = iso_seccomp_missing() == NULL;
    snprintf(ki->bpf_why, sizeof ki->bpf_why, "%s",
             "the BPF network guard is not part of this build");
}

/* ---- the cell thread ---------------------------------------------------- */

static int thread_config(iso_cell *c, iso_grants *gs, iso_confine_config *cc,
                         char *threads, size_t n, iso_error *err)
{
    iso_grants_runtime(gs);
    iso_grants_plan(gs, c->plan);
    cc->in_thread = true;
    cc->compat = iso_mode_get() == ISO_MODE_COMPAT;
    cc->grants = gs->g;
    cc->n_grants = gs->n;
    cc->processes = 0;
    cc->death_note_fd = -1;
    cc->deny_syscalls = (const char *const *)c->deny_syscalls;
    cc->n_deny = c->n_deny_syscalls;
    if (c->kernel->cg.path[0]) {
        iso_cgroup_threads_path(&c->kernel->cg, threads, n);
        cc->cgroup_threads = threads;
    } else {
        cc->cgroup_missing = c->kernel_missing;
    }
    uint16_t *ports = NULL;
    if (iso_plan_connect_ports(c->plan, &ports, &cc->n_ports, &cc->any_port))
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    cc->connect_ports = ports;
    return 0;
}

static int describe(iso_cell *c, const iso_confine_report *rep)
{
    iso_value *v = &c->confinement;
    iso_value_free(v);
    iso_value_set_list(v);
    int rc = iso_confinement_add(v, "python-guard", "active", "cell thread",
                                 "imports, fs, net, exec and capabilities "
                                 "in Python: a guardrail, not a boundary");
    for (size_t i = 0; rc == 0 && i < rep->n; i++)
        rc = iso_confinement_add(v, rep->steps[i].layer,
                                 iso_step_state_name(rep->steps[i].state),
                                 "cell thread", rep->steps[i].detail);
    if (rc == 0)
        rc = iso_confinement_add(
            v, "rlimit", "not needed", "process",
            "rlimits are per process: cpu_ms is the watchdog's, mem and "
            "open_files are refused for sub-interpreter cells");
    return rc;
}

/* On the cell thread, with its GIL. */
static int confine_self(iso_cell *c, iso_error *err)
{
    iso_grants gs = {.n = 0};
    iso_confine_config cc = {.mem_bytes = -1};
    iso_confine_report rep = {.n = 0};
    char threads[ISO_PATH_MAX + 64];
    c->kernel->tid = (long)syscall(SYS_gettid);
    int rc = thread_config(c, &gs, &cc, threads, sizeof threads, err);
    if (rc == 0)
        rc = iso_confine_thread(&cc, &rep, err);
    if (rc == 0 && describe(c, &rep))
        rc = iso_error_set(err, ISO_MEMORY, "out of memory");
    free((void *)cc.connect_ports);
    iso_grants_free(&gs);
    return rc;
}

void iso_cell_confine_run(iso_cell *c)
{
    iso_error err = {0};
    int rc = confine_self(c, &err);
    pthread_mutex_lock(&c->mu);
    c->confine_rc = rc;
    iso_error_move(&c->confine_err, &err);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* ---- the host side ------------------------------------------------------ */

static void make_cgroup(iso_cell *c)
{
    iso_error err = {0};
    if (iso_cgroup_thread_create(c->name, &c->kernel->cg, &err) < 0)
        snprintf(c->kernel_missing, sizeof c->kernel_missing, "%s",
                 err.message);
    iso_error_clear(&err);
}

int iso_cell_confine(iso_cell *c, iso_error *err)
{
    if (!c->kernel && !(c->kernel = calloc(1, sizeof *c->kernel)))
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    make_cgroup(c);
    iso_req *r = calloc(1, sizeof *r);
    if (!r)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    r->type = ISO_REQ_CONFINE;
    pthread_mutex_lock(&c->mu);
    c->confine_rc = 1; /* pending */
    c->req = r;
    pthread_mutex_unlock(&c->mu);
    iso_signal_notify(&c->to_cell);
    pthread_mutex_lock(&c->mu);
    while (c->confine_rc > 0)
        pthread_cond_wait(&c->cv, &c->mu);
    int rc = c->confine_rc;
    if (rc)
        iso_error_move(err, &c->confine_err);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void iso_cell_unconfine(iso_cell *c)
{
    if (!c->kernel)
        return;
    iso_error err = {0};
    iso_cgroup_thread_release(&c->kernel->cg, c->kernel->tid, &err);
    iso_error_clear(&err);
    free(c->kernel);
    c->kernel = NULL;
}
