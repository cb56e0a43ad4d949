/*
 * Kernel layers on a sub-interpreter cell's own thread (defense in depth,
 * not a boundary: the thread shares the host's memory).
 *
 * Spawn hands the cell its rules, then asks the cell thread to confine
 * itself (ISO_REQ_CONFINE) and waits: the thread joins its own threaded
 * cgroup, takes a private fd table holding only stdio and the doorbell,
 * then no_new_privs, Landlock and an ERRNO seccomp filter (confine.c). A warm
 * cell is confined when it is taken from the pool, a new one right after it
 * started; either way exactly once and before any guest code, and its thread
 * never serves another cell.
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
#include "netguard.h"
#include <arpa/inet.h>

struct iso_cell_kernel {
    iso_cgroup cg; /* the thread's cgroup; path "" when missing */
    long tid;
    bool joined;    /* the thread is in cg already (it joined while warm) */
    bool join_only; /* the pending ISO_REQ_CONFINE only joins cg */
    bool compat;    /* the mode when spawn asked (the thread runs later) */
    uint64_t cg_id; /* cg's id, found while warm; 0: not yet */
    char cgroup_why[600]; /* why the thread has no cgroup */
    char guard_why[600];  /* why the BPF guard does not cover the cell */
};

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
    iso_error err = {0};
    ki->bpf = iso_netguard_open(&err) == 0;
    snprintf(ki->bpf_why, sizeof ki->bpf_why, "%.255s", err.message);
    iso_error_clear(&err);
}

/* ---- the BPF network guard, for cells of either backend ------------------ */

/* Guarded cgroups and their cells, so that a denial reaches the right cell.
 * The lock is held while delivering: a cell is unguarded (under it) before
 * it is freed. */
static struct {
    pthread_mutex_t mu;
    struct guarded {
        uint64_t id;
        iso_cell *c;
    } * list;
    size_t n, cap;
} guarded = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

static bool remember(uint64_t id, iso_cell *c)
{
    pthread_mutex_lock(&guarded.mu);
    if (guarded.n == guarded.cap) {
        size_t cap = guarded.cap ? 2 * guarded.cap : 16;
        void *p = realloc(guarded.list, cap * sizeof *guarded.list);
        if (!p) {
            pthread_mutex_unlock(&guarded.mu);
            return false;
        }
        guarded.list = p, guarded.cap = cap;
    }
    guarded.list[guarded.n++] = (struct guarded){id, c};
    pthread_mutex_unlock(&guarded.mu);
    return true;
}

static void forget(uint64_t id)
{
    pthread_mutex_lock(&guarded.mu);
    for (size_t i = 0; i < guarded.n; i++)
        if (guarded.list[i].id == id)
            guarded.list[i] = guarded.list[--guarded.n];
    pthread_mutex_unlock(&guarded.mu);
}

/* Install the cell's net rules for the cgroup at dir before anything of
 * the cell runs in it. False (with why) when the guard cannot: the cell
 * then falls back to Landlock's port rules. */
bool iso_cell_guard(iso_cell *c, const char *dir, uint64_t id, char *why,
                    size_t n)
{
    iso_error err = {0};
    iso_net_rule rules[ISO_NETGUARD_MAX_RULES];
    size_t count = 0;
    int rc = iso_netguard_open(&err);
    if (rc == 0 && !id)
        rc = iso_cgroup_id_of(dir, &id, &err);
    if (rc == 0)
        rc = iso_netguard_rules_from_plan(c->plan, rules,
                                          ISO_NETGUARD_MAX_RULES, &count, &err);
    if (rc == 0)
        rc = iso_netguard_set(id, rules, count, &err);
    if (rc == 0 && !remember(id, c)) {
        iso_netguard_forget(id);
        rc = iso_error_set(&err, ISO_MEMORY, "out of memory");
    }
    if (rc) {
        snprintf(why, n, "%s", err.message);
        iso_error_clear(&err);
        return false;
    }
    c->guard_cgroup = id;
    c->guard_rules = (int)count;
    return true;
}

void iso_cell_unguard(iso_cell *c)
{
    if (!c || !c->guard_cgroup)
        return;
    forget(c->guard_cgroup);
    iso_netguard_forget(c->guard_cgroup);
    c->guard_cgroup = 0;
}

int iso_cell_guard_row(iso_cell *c, iso_value *list, const char *scope,
                       const char *why)
{
    char detail[600];
    if (!c->guard_cgroup)
        return iso_confinement_add(list, "bpf", "missing", scope, why);
    snprintf(detail, sizeof detail,
             "connect/sendmsg/bind judged by %d rule(s) for cgroup %llu, deny "
             "by default; denials become events",
             c->guard_rules, (unsigned long long)c->guard_cgroup);
    return iso_confinement_add(list, "bpf", "active", scope, detail);
}

static iso_msg *denial_msg(const iso_net_denial *d)
{
    char addr[INET6_ADDRSTRLEN], target[INET6_ADDRSTRLEN + 16];
    inet_ntop(d->family == 4 ? AF_INET : AF_INET6, d->addr, addr, sizeof addr);
    snprintf(target, sizeof target, d->family == 4 ? "%s:%u" : "[%s]:%u", addr,
             (unsigned)d->port);
    /* The kernel saw it: source "kernel", unlike what a cell reports. */
    const char *items[] = {"net",  iso_net_denial_action(d),
                           target, "the cell's net rules",
                           "bpf",  "kernel"};
    iso_msg *m = iso_msg_new(ISO_MSG_DENIAL);
    if (!m)
        return NULL;
    iso_value_set_list(&m->value);
    for (size_t i = 0; i < 6; i++) {
        iso_value *v = iso_list_append(&m->value);
        if (!v ||
            iso_value_set_string(v, ISO_STR, items[i], strlen(items[i]))) {
            iso_msg_destroy(m);
            return NULL;
        }
    }
    return m;
}

static void route(const iso_net_denial *d, void *ud)
{
    (void)ud;
    for (size_t i = 0; i < guarded.n; i++)
        if (guarded.list[i].id == d->cgroup_id) {
            iso_msg *m = denial_msg(d);
            if (m)
                iso_cell_deliver(guarded.list[i].c, m);
            return;
        }
}

void iso_cell_guard_drain(void)
{
    if (!iso_netguard_available())
        return;
    pthread_mutex_lock(&guarded.mu);
    iso_netguard_drain(route, NULL);
    pthread_mutex_unlock(&guarded.mu);
}

/* ---- the cell thread ---------------------------------------------------- */

static int thread_config(iso_cell *c, iso_grants *gs, iso_confine_config *cc,
                         char *threads, size_t n, iso_error *err)
{
    iso_grants_runtime(gs, true); /* refused extensions left out */
    iso_grants_opted_in(gs, c->imports, c->n_imports);
    cc->n_fixed_grants = gs->n;
    iso_grants_plan(gs, c->plan);
    cc->in_thread = true;
    cc->compat = c->kernel->compat;
    cc->grants = gs->g;
    cc->n_grants = gs->n;
    cc->processes = 0;
    cc->death_note_fd = -1;
    cc->deny_syscalls = (const char *const *)c->deny_syscalls;
    cc->n_deny = c->n_deny_syscalls;
    cc->connect_by_bpf = c->guard_cgroup != 0;
    if (c->kernel->cg.path[0]) {
        iso_cgroup_threads_path(&c->kernel->cg, threads, n);
        cc->cgroup_threads = threads;
        cc->cgroup_joined = c->kernel->joined;
    } else {
        cc->cgroup_missing = c->kernel->cgroup_why;
    }
    return iso_confine_net_from_plan(cc, c->plan, err);
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

static int describe(iso_cell *c, const iso_confine_report *rep)
{
    iso_value *v = &c->confinement;
    iso_value_free(v);
    iso_value_set_list(v);
    int rc = iso_confinement_add(v, "python-guard", "active", "cell thread",
                                 "imports, fs, net, exec and capabilities "
                                 "in Python: a guardrail, not a boundary");
    if (rc == 0)
        rc = iso_confine_rows(rep, "cell thread", v);
    if (rc == 0)
        rc = native_row(v, rep);
    if (rc == 0)
        rc = iso_cell_guard_row(c, v, "cell thread", c->kernel->guard_why);
    if (rc == 0)
        rc = iso_confinement_add(
            v, "rlimit", "not needed", "process",
            "rlimits are per process: cpu_ms is the watchdog's, mem the "
            "cell's allocation account; open_files is refused for "
            "sub-interpreter cells");
    return rc;
}

/* On the cell thread, with its GIL. */
/* The thread's cgroup (unless it joined one while warm), guarded before
 * anything of the cell runs. On the cell thread: spawn need not wait. */
static void make_cgroup(iso_cell *c)
{
    iso_error err = {0};
    struct iso_cell_kernel *k = c->kernel;
    if (!k->joined && iso_cgroup_thread_create(c->name, &k->cg, &err) < 0) {
        snprintf(k->cgroup_why, sizeof k->cgroup_why, "%s", err.message);
        snprintf(k->guard_why, sizeof k->guard_why,
                 "the BPF guard sees cgroups, and this cell thread has none");
    } else {
        iso_cell_phase(c, "cgroup", iso_now());
        iso_cell_guard(c, k->cg.path, k->cg_id, k->guard_why,
                       sizeof k->guard_why);
    }
    iso_cell_phase(c, "bpf rules", iso_now());
    iso_error_clear(&err);
}

static int confine_self(iso_cell *c, iso_error *err)
{
    iso_grants gs = {.n = 0};
    iso_confine_config cc = {.mem_bytes = -1};
    iso_confine_report rep = {.n = 0};
    char threads[ISO_PATH_MAX + 64];
    /* the one host fd the thread keeps: it rings the host with it */
    int bell = iso_cell_doorbell_fd();
    cc.keep_fds = &bell;
    cc.n_keep = bell >= 0;
    c->kernel->tid = (long)syscall(SYS_gettid);
    make_cgroup(c);
    int rc = thread_config(c, &gs, &cc, threads, sizeof threads, err);
    if (rc == 0)
        rc = iso_confine_thread(&cc, &rep, err);
    for (size_t i = 0; rc == 0 && i < rep.n; i++)
        if (i == 0 || rep.steps[i].done_at != rep.steps[i - 1].done_at)
            iso_cell_phase(c, rep.steps[i].layer, rep.steps[i].done_at);
    if (rc == 0 && describe(c, &rep))
        rc = iso_error_set(err, ISO_MEMORY, "out of memory");
    iso_confine_net_free(&cc);
    iso_grants_free(&gs);
    return rc;
}

/* On a warm cell's thread: into its cgroup, nothing else yet. */
static int join_self(iso_cell *c, iso_error *err)
{
    char threads[ISO_PATH_MAX + 64];
    c->kernel->tid = (long)syscall(SYS_gettid);
    iso_cgroup_threads_path(&c->kernel->cg, threads, sizeof threads);
    return iso_confine_join_cgroup(threads, err);
}

void iso_cell_confine_run(iso_cell *c)
{
    iso_error err = {0};
    int rc = c->kernel->join_only ? join_self(c, &err) : confine_self(c, &err);
    pthread_mutex_lock(&c->mu);
    c->confine_rc = rc;
    iso_error_move(&c->confine_err, &err);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* ---- the host side ------------------------------------------------------ */

static struct iso_cell_kernel *kernel_of(iso_cell *c)
{
    if (!c->kernel)
        c->kernel = calloc(1, sizeof *c->kernel);
    return c->kernel;
}

/* Hand the cell thread ISO_REQ_CONFINE; iso_cell_confined waits for it. */
static int post_request(iso_cell *c, iso_error *err)
{
    iso_req *r = calloc(1, sizeof *r);
    if (!r)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    r->type = ISO_REQ_CONFINE;
    pthread_mutex_lock(&c->mu);
    c->confine_rc = 1; /* pending */
    c->req = r;
    pthread_mutex_unlock(&c->mu);
    c->confining = true;
    iso_signal_notify(&c->to_cell);
    return 0;
}

int iso_cell_confined(iso_cell *c, iso_error *err)
{
    if (!c->confining)
        return 0;
    pthread_mutex_lock(&c->mu);
    while (c->confine_rc > 0)
        pthread_cond_wait(&c->cv, &c->mu);
    int rc = c->confine_rc;
    if (rc)
        iso_error_move(err, &c->confine_err);
    pthread_mutex_unlock(&c->mu);
    c->confining = false;
    return rc;
}

static int ask_thread(iso_cell *c, iso_error *err)
{
    return post_request(c, err) || iso_cell_confined(c, err) ? -1 : 0;
}

void iso_cell_cgroup_prepare(iso_cell *c)
{
    iso_error err = {0};
    struct iso_cell_kernel *k = kernel_of(c);
    if (!k || iso_cgroup_thread_create("pool", &k->cg, &err) < 0) {
        iso_error_clear(&err);
        return; /* spawn tries again, and reports why */
    }
    k->join_only = true;
    int rc = ask_thread(c, &err);
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

int iso_cell_confine(iso_cell *c, iso_error *err)
{
    if (!kernel_of(c))
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    c->kernel->compat = iso_mode_get() == ISO_MODE_COMPAT;
    return post_request(c, err);
}

void iso_cell_unconfine(iso_cell *c)
{
    if (!c->kernel)
        return;
    iso_error err = {0};
    iso_cell_unguard(c);
    iso_cgroup_thread_release(&c->kernel->cg, c->kernel->tid, &err);
    iso_error_clear(&err);
    free(c->kernel);
    c->kernel = NULL;
}

/* ---- hot reload ---------------------------------------------------------- */

/* Which of a's and b's fs and net rules are the same. */
static void compare(const iso_plan *a, const iso_plan *b, bool *fs, bool *net)
{
    iso_value fa = {0}, na = {0}, fb = {0}, nb = {0};
    bool ok = iso_plan_to_value(a, &fa, &na) == 0 &&
              iso_plan_to_value(b, &fb, &nb) == 0;
    *fs = ok && iso_value_equal(&fa, &fb);
    *net = ok && iso_value_equal(&na, &nb);
    iso_value_free(&fa), iso_value_free(&na);
    iso_value_free(&fb), iso_value_free(&nb);
}

static int report_layer(iso_value *map, const char *layer, const char *what)
{
    iso_value *k, *v;
    if (iso_map_append(map, &k, &v))
        return -1;
    return iso_value_set_string(k, ISO_STR, layer, strlen(layer)) ||
           iso_value_set_string(v, ISO_STR, what, strlen(what));
}

/* Put plan in the cell's place; the old one lives as long as the cell, as
 * a guard on the cell thread may be deciding with it right now. */
static int swap_plan(iso_cell *c, iso_plan *plan)
{
    iso_plan **r = realloc(c->retired, (c->n_retired + 1) * sizeof *r);
    if (!r)
        return -1;
    c->retired = r;
    pthread_mutex_lock(&c->mu);
    r[c->n_retired++] = c->plan;
    __atomic_store_n(&c->plan, iso_plan_ref(plan), __ATOMIC_RELEASE);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* What the kernel layers took from the net rules when the cell was
 * confined: seccomp the socket calls the rule kinds allow, Landlock the
 * bind rules' ports. A reload cannot change either. */
static void net_kernel_same(const iso_plan *a, const iso_plan *b, bool *calls,
                            bool *binds)
{
    iso_plan_net_kinds ka = iso_plan_net_kinds_of(a),
                       kb = iso_plan_net_kinds_of(b);
    *calls =
        ka.ip == kb.ip && ka.bind == kb.bind && ka.unix_path == kb.unix_path;
    uint16_t *pa = NULL, *pb = NULL;
    size_t na = 0, nb = 0;
    bool anya = false, anyb = false;
    *binds = iso_plan_bind_ports(a, &pa, &na, &anya) == 0 &&
             iso_plan_bind_ports(b, &pb, &nb, &anyb) == 0 && anya == anyb &&
             na == nb && (na == 0 || memcmp(pa, pb, na * sizeof *pa) == 0);
    free(pa);
    free(pb);
}

int iso_cell_reload(iso_cell *c, iso_plan *plan, iso_value *report,
                    iso_error *err)
{
    iso_net_rule rules[ISO_NETGUARD_MAX_RULES];
    size_t n = 0;
    bool fs_same, net_same;
    if (iso_cell_settle(c, err))
        return -1;
    compare(c->plan, plan, &fs_same, &net_same);
    bool calls_same, binds_same;
    net_kernel_same(c->plan, plan, &calls_same, &binds_same);
    /* everything that can fail first: then nothing has changed */
    if (c->guard_cgroup && (iso_netguard_rules_from_plan(
                                plan, rules, ISO_NETGUARD_MAX_RULES, &n, err) ||
                            iso_netguard_set(c->guard_cgroup, rules, n, err)))
        return -1;
    if (swap_plan(c, plan))
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    c->guard_rules = (int)n;
    /* a worker's python-guard takes it as a frame (1: now, 0: before its
     * next request); a sub-interpreter cell's reads c->plan */
    int guard = c->ops->reload ? c->ops->reload(c, err) : 1;
    if (guard < 0)
        return -1;
    iso_value_set_map(report);
    /* Landlock's fs grants, connect ports (without the guard) and bind
     * ports are fixed once applied: the cell keeps them and the guard takes
     * the new rules, so it is left with what both allow, never more */
    bool landlock_same =
        fs_same && (net_same || (c->guard_cgroup && binds_same));
    int rc = report_layer(report, "bpf",
                          c->guard_cgroup ? "applied" : "not guarded") ||
             report_layer(report, "python-guard",
                          guard ? "applied" : "at the next request") ||
             report_layer(report, "landlock",
                          landlock_same ? "unchanged" : "restart needed") ||
             report_layer(report, "seccomp",
                          calls_same ? "unchanged" : "restart needed");
    return rc ? iso_error_set(err, ISO_MEMORY, "out of memory") : 0;
}
