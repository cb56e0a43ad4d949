/*
 * A cell's BPF network guard, for cells of either backend (the rules and
 * the denial routes are the kernel layer's: guard_routes.c), and hot
 * reload of its plan.
 */
#include <stdlib.h>
#include <string.h>

#include "cell_internal.h"
#include "cell_queue.h"
#include "guard_routes.h"

/* ---- the BPF network guard ---------------------------------------------- */

/* A denial for c (the route's context), under the routes' lock: c is
 * unguarded (iso_cell_unguard, under it) before it is freed. */
static void deliver_denial(void *ctx, iso_msg *m)
{
    iso_cell_deliver(ctx, m);
}

bool iso_cell_guard(iso_cell *c, const char *dir, uint64_t id, char *why,
                    size_t n)
{
    c->guard.audit = iso_mode_learning();
    return iso_guard_install(&c->guard, iso_cell_plan(c), dir, id,
                             deliver_denial, c, why, n);
}

void iso_cell_unguard(iso_cell *c)
{
    if (c)
        iso_guard_remove(&c->guard);
}

int iso_cell_guard_row(iso_cell *c, iso_value *list, const char *scope,
                       const char *why)
{
    return iso_guard_row(&c->guard, list, scope, why);
}

void iso_cell_guard_drain(void)
{
    iso_guard_drain();
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
    pthread_mutex_lock(&c->ch.mu);
    r[c->n_retired++] = c->guest.plan;
    __atomic_store_n(&c->guest.plan, iso_plan_ref(plan), __ATOMIC_RELEASE);
    pthread_mutex_unlock(&c->ch.mu);
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
    bool fs_same, net_same;
    if (iso_cell_settle(c, err))
        return -1;
    compare(c->guest.plan, plan, &fs_same, &net_same);
    bool calls_same, binds_same;
    net_kernel_same(c->guest.plan, plan, &calls_same, &binds_same);
    /* everything that can fail first: then nothing has changed */
    iso_guard next = c->guard;
    if (next.cgroup_id && iso_guard_update(&next, plan, err))
        return -1;
    if (swap_plan(c, plan))
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    c->guard = next;
    /* a worker's python-guard takes it as a frame (1: now, 0: before its
     * next request); a sub-interpreter cell's reads c->guest.plan */
    int guard =
        c->ops->reload ? c->ops->reload(c->handle, plan, c->busy, err) : 1;
    if (guard < 0)
        return -1;
    iso_value_set_map(report);
    /* Landlock's fs grants, connect ports (without the guard) and bind
     * ports are fixed once applied: the cell keeps them and the guard takes
     * the new rules, so it is left with what both allow, never more */
    bool landlock_same =
        fs_same && (net_same || (c->guard.cgroup_id && binds_same));
    int rc = report_layer(report, "bpf",
                          c->guard.cgroup_id ? "applied" : "not guarded") ||
             report_layer(report, "python-guard",
                          guard ? "applied" : "at the next request") ||
             report_layer(report, "landlock",
                          landlock_same ? "unchanged" : "restart needed") ||
             report_layer(report, "seccomp",
                          calls_same ? "unchanged" : "restart needed");
    return rc ? iso_error_set(err, ISO_MEMORY, "out of memory") : 0;
}
