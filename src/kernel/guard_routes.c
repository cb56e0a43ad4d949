/*
 * The BPF network guard for cells of either backend (guard_routes.h):
 * rules per cgroup, and the table that routes a cgroup's denials.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup.h"
#include "guard_routes.h"
#include "handoff.h"
#include "msg.h"
#include "netguard.h"

/* Guarded cgroups and where their denials go. The lock is held while
 * delivering: a route is removed (under it) before its context is freed. */
static struct {
    pthread_mutex_t mu;
    struct route {
        uint64_t id;
        iso_guard_deliver deliver;
        void *ctx;
    } * list;
    size_t n, cap;
} routes = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

static bool route_add(uint64_t id, iso_guard_deliver deliver, void *ctx)
{
    pthread_mutex_lock(&routes.mu);
    bool ok = iso_room_for_one((void **)&routes.list, &routes.cap, routes.n,
                               sizeof *routes.list);
    if (ok)
        routes.list[routes.n++] = (struct route){id, deliver, ctx};
    pthread_mutex_unlock(&routes.mu);
    return ok;
}

static void route_remove(uint64_t id)
{
    pthread_mutex_lock(&routes.mu);
    for (size_t i = 0; i < routes.n; i++)
        if (routes.list[i].id == id)
            routes.list[i] = routes.list[--routes.n];
    pthread_mutex_unlock(&routes.mu);
}

bool iso_guard_install(iso_guard *g, const iso_plan *plan, const char *dir,
                       uint64_t id, iso_guard_deliver deliver, void *ctx,
                       char *why, size_t n)
{
    iso_error err = {0};
    iso_net_rule rules[ISO_NETGUARD_MAX_RULES];
    size_t count = 0;
    int rc = iso_netguard_open(&err);
    if (rc == 0 && !id)
        rc = iso_cgroup_id_of(dir, &id, &err);
    if (rc == 0)
        rc = iso_netguard_rules_from_plan(plan, rules, ISO_NETGUARD_MAX_RULES,
                                          &count, &err);
    if (rc == 0)
        rc = iso_netguard_set(id, rules, count, &err);
    if (rc == 0 && g->audit && iso_netguard_audit(id, &err)) {
        iso_netguard_forget(id);
        rc = -1;
    }
    if (rc == 0 && !route_add(id, deliver, ctx)) {
        iso_netguard_forget(id);
        rc = iso_error_set(&err, ISO_MEMORY, "out of memory");
    }
    if (rc) {
        snprintf(why, n, "%s", err.message);
        iso_error_clear(&err);
        return false;
    }
    g->cgroup_id = id;
    g->rules = (int)count;
    return true;
}

int iso_guard_update(iso_guard *g, const iso_plan *plan, iso_error *err)
{
    iso_net_rule rules[ISO_NETGUARD_MAX_RULES];
    size_t n = 0;
    if (iso_netguard_rules_from_plan(plan, rules, ISO_NETGUARD_MAX_RULES, &n,
                                     err) ||
        iso_netguard_set(g->cgroup_id, rules, n, err))
        return -1;
    g->rules = (int)n;
    return 0;
}

void iso_guard_remove(iso_guard *g)
{
    if (!g->cgroup_id)
        return;
    route_remove(g->cgroup_id);
    iso_netguard_forget(g->cgroup_id);
    g->cgroup_id = 0;
}

int iso_guard_row(const iso_guard *g, iso_value *list, const char *scope,
                  const char *why)
{
    char detail[600];
    if (!g->cgroup_id)
        return iso_confinement_add(list, "bpf", "missing", scope, why);
    snprintf(detail, sizeof detail,
             "connect/sendmsg/bind judged by %d rule(s) for cgroup %llu, %s",
             g->rules, (unsigned long long)g->cgroup_id,
             g->audit ? "log and allow (learn mode): what they refuse becomes "
                        "an event and runs"
                      : "deny by default; denials become events");
    return iso_confinement_add(list, "bpf", g->audit ? "audit" : "active",
                               scope, detail);
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
    for (size_t i = 0; i < routes.n; i++)
        if (routes.list[i].id == d->cgroup_id) {
            iso_msg *m = denial_msg(d);
            if (m)
                routes.list[i].deliver(routes.list[i].ctx, m);
            return;
        }
}

void iso_guard_drain(void)
{
    if (!iso_netguard_available())
        return;
    pthread_mutex_lock(&routes.mu);
    iso_netguard_drain(route, NULL);
    pthread_mutex_unlock(&routes.mu);
}
