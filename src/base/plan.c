/*
 * Plans: the fs and net rules of a compiled policy, and the decisions the
 * guards and Policy:check() make with them. One implementation for both,
 * so what `luaisolate check` says is what a cell does. Its rules' matchers
 * are plan_fs.c's and plan_net.c's; crossing to a worker is at the end.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_internal.h"

/* ---- the plan ---------------------------------------------------------- */

iso_plan *iso_plan_new(void)
{
    iso_plan *p = calloc(1, sizeof *p);
    if (p)
        atomic_init(&p->refs, 1);
    return p;
}

iso_plan *iso_plan_ref(iso_plan *p)
{
    if (p)
        atomic_fetch_add(&p->refs, 1);
    return p;
}

void iso_plan_unref(iso_plan *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    for (size_t i = 0; i < p->n_fs; i++) {
        free(p->fs[i].glob);
        free(p->fs[i].text);
    }
    for (size_t i = 0; i < p->n_net; i++) {
        free(p->net[i].path);
        free(p->net[i].spec);
        free(p->net[i].text);
    }
    free(p->fs);
    free(p->net);
    free(p);
}

/* Grow *items (element size sz) to hold one more. */
static int grow(void **items, size_t *cap, size_t n, size_t sz)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 8;
    void *q = realloc(*items, c * sz);
    if (!q)
        return -1;
    *items = q, *cap = c;
    return 0;
}

int iso_plan_add_fs(iso_plan *p, iso_fs_access access, const char *glob,
                    const char *text, iso_error *err)
{
    char norm[ISO_PATH_MAX];
    if (iso_glob_check(glob, err) ||
        iso_path_normalize(glob, norm, sizeof norm, err))
        return -1;
    if (grow((void **)&p->fs, &p->cap_fs, p->n_fs, sizeof *p->fs))
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    fs_rule *r = &p->fs[p->n_fs];
    r->access = access;
    r->literal = !iso_glob_has_wildcard(norm, strlen(norm));
    r->glob = strdup(norm);
    r->text = strdup(text ? text : glob);
    if (!r->glob || !r->text) {
        free(r->glob), free(r->text);
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    }
    p->n_fs++;
    return 0;
}

int iso_plan_add_net(iso_plan *p, iso_net_action action, const char *spec,
                     const char *text, iso_error *err)
{
    net_rule r;
    if (iso_net_check_for(action, spec, err) ||
        iso_net_rule_parse(spec, &r, err))
        return -1;
    if (grow((void **)&p->net, &p->cap_net, p->n_net, sizeof *p->net)) {
        free(r.path);
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    }
    r.action = action;
    r.spec = strdup(spec);
    r.text = strdup(text ? text : spec);
    if (!r.spec || !r.text) {
        free(r.spec), free(r.text), free(r.path);
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    }
    p->net[p->n_net++] = r;
    return 0;
}

bool iso_plan_check_fs(const iso_plan *p, iso_fs_access op, const char *path,
                       int *rule)
{
    int allow = -1;
    *rule = -1;
    for (size_t i = 0; p && i < p->n_fs; i++) {
        const fs_rule *r = &p->fs[i];
        if (!iso_fs_rule_match(r, path))
            continue;
        if (r->access == ISO_FS_DENY) {
            *rule = (int)i; /* deny beats every allow */
            return false;
        }
        if (allow < 0 && (r->access & op))
            allow = (int)i;
    }
    *rule = allow;
    return allow >= 0;
}

bool iso_plan_fs_on_the_way(const iso_plan *p, const char *path)
{
    bool leads = false;
    for (size_t i = 0; p && i < p->n_fs; i++) {
        const fs_rule *r = &p->fs[i];
        if (r->access == ISO_FS_DENY && iso_fs_rule_match(r, path))
            return false;
        leads = leads ||
                (r->access != ISO_FS_DENY && iso_fs_rule_leads_to(r, path));
    }
    return leads;
}

/* The IP rules of one kind (connect or bind) and every deny rule decide:
 * a deny refuses connect and bind alike. */
static bool check_ip(const iso_plan *p, iso_net_action kind,
                     const iso_addr *addr, uint16_t port, int *rule)
{
    iso_addr a = iso_addr_unmap(addr);
    int allow = -1;
    *rule = -1;
    for (size_t i = 0; p && i < p->n_net; i++) {
        const net_rule *r = &p->net[i];
        if (r->path || (r->action != kind && r->action != ISO_NET_DENY) ||
            !iso_net_rule_match(r, &a, port))
            continue;
        if (p->net[i].action == ISO_NET_DENY) {
            *rule = (int)i;
            return false;
        }
        if (allow < 0)
            allow = (int)i;
    }
    *rule = allow;
    return allow >= 0;
}

bool iso_plan_check_net(const iso_plan *p, const iso_addr *addr, uint16_t port,
                        int *rule)
{
    return check_ip(p, ISO_NET_CONNECT, addr, port, rule);
}

bool iso_plan_check_bind(const iso_plan *p, const iso_addr *addr, uint16_t port,
                         int *rule)
{
    return check_ip(p, ISO_NET_BIND, addr, port, rule);
}

/* A literal unix: rule names one socket; a glob matches as fs globs do. */
static bool unix_match(const net_rule *r, const char *path)
{
    return iso_glob_has_wildcard(r->path, strlen(r->path))
               ? iso_glob_match(r->path, path)
               : strcmp(r->path, path) == 0;
}

bool iso_plan_check_unix(const iso_plan *p, const char *path, int *rule)
{
    int allow = -1;
    *rule = -1;
    for (size_t i = 0; p && i < p->n_net; i++) {
        const net_rule *r = &p->net[i];
        if (!r->path || !unix_match(r, path))
            continue;
        if (r->action == ISO_NET_DENY) {
            *rule = (int)i;
            return false;
        }
        if (allow < 0)
            allow = (int)i;
    }
    *rule = allow;
    return allow >= 0;
}

iso_plan_net_kinds iso_plan_net_kinds_of(const iso_plan *p)
{
    iso_plan_net_kinds k = {false, false, false};
    for (size_t i = 0; p && i < p->n_net; i++) {
        const net_rule *r = &p->net[i];
        if (r->action == ISO_NET_DENY)
            continue;
        k.unix_path |= r->path != NULL;
        k.ip |= r->path == NULL;
        k.bind |= r->action == ISO_NET_BIND;
    }
    return k;
}

size_t iso_plan_net_count(const iso_plan *p)
{
    return p ? p->n_net : 0;
}

int iso_plan_net_rule(const iso_plan *p, size_t i, iso_plan_net *out,
                      iso_error *err)
{
    if (i >= iso_plan_net_count(p))
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "plan: no net rule %zu (it has %zu)", i,
                             iso_plan_net_count(p));
    const net_rule *r = &p->net[i];
    *out = (iso_plan_net){.action = r->action,
                          .unix_path = r->path != NULL,
                          .localhost = r->localhost,
                          .addr = r->addr,
                          .prefix = r->prefix,
                          .port_lo = r->port_lo,
                          .port_hi = r->port_hi};
    return 0;
}

const char *iso_plan_fs_text(const iso_plan *p, int rule)
{
    return p && rule >= 0 && (size_t)rule < p->n_fs ? p->fs[rule].text
                                                    : "default deny";
}

const char *iso_plan_net_text(const iso_plan *p, int rule)
{
    return p && rule >= 0 && (size_t)rule < p->n_net ? p->net[rule].text
                                                     : "default deny";
}

/* ---- crossing to a worker ---------------------------------------------- */

static const char *const access_names[] = {[ISO_FS_READ] = "read",
                                           [ISO_FS_WRITE] = "write",
                                           [ISO_FS_ALLOW] = "allow",
                                           [ISO_FS_DENY] = "deny"};

static const char *const action_names[] = {[ISO_NET_CONNECT] = "connect",
                                           [ISO_NET_DENY] = "deny",
                                           [ISO_NET_BIND] = "bind"};

static int push_rule(iso_value *list, const char *kind, const char *target,
                     const char *text)
{
    const char *items[] = {kind, target, text};
    iso_value *rule = iso_list_append(list);
    if (!rule)
        return -1;
    iso_value_set_list(rule);
    for (int i = 0; i < 3; i++) {
        iso_value *v = iso_list_append(rule);
        if (!v || iso_value_set_string(v, ISO_STR, items[i], strlen(items[i])))
            return -1;
    }
    return 0;
}

int iso_plan_to_value(const iso_plan *p, iso_value *fs, iso_value *net)
{
    iso_value_set_list(fs);
    iso_value_set_list(net);
    for (size_t i = 0; p && i < p->n_fs; i++)
        if (push_rule(fs, access_names[p->fs[i].access], p->fs[i].glob,
                      p->fs[i].text))
            return -1;
    for (size_t i = 0; p && i < p->n_net; i++)
        if (push_rule(net, action_names[p->net[i].action], p->net[i].spec,
                      p->net[i].text))
            return -1;
    return 0;
}

/* Rule [kind, target, text] of a list made by iso_plan_to_value. */
static int add_from_value(iso_plan *p, const iso_value *r, bool fs,
                          iso_error *err)
{
    if (r->type != ISO_LIST || r->u.seq.len != 3)
        return iso_error_set(err, ISO_POLICY, "malformed plan rule");
    const char *s[3];
    for (int i = 0; i < 3; i++) {
        if (r->u.seq.items[i].type != ISO_STR)
            return iso_error_set(err, ISO_POLICY, "malformed plan rule");
        s[i] = r->u.seq.items[i].u.str.ptr;
    }
    for (int a = ISO_NET_CONNECT; !fs && a <= ISO_NET_BIND; a++)
        if (strcmp(s[0], action_names[a]) == 0)
            return iso_plan_add_net(p, (iso_net_action)a, s[1], s[2], err);
    if (!fs)
        return iso_error_set(err, ISO_POLICY, "unknown net action '%s'", s[0]);
    for (int a = ISO_FS_READ; a <= ISO_FS_DENY; a++)
        if (strcmp(s[0], access_names[a]) == 0)
            return iso_plan_add_fs(p, (iso_fs_access)a, s[1], s[2], err);
    return iso_error_set(err, ISO_POLICY, "unknown fs access '%s'", s[0]);
}

iso_plan *iso_plan_from_value(const iso_value *fs, const iso_value *net,
                              iso_error *err)
{
    iso_plan *p = iso_plan_new();
    int rc = p ? 0 : iso_error_set(err, ISO_MEMORY, "out of memory");
    for (size_t i = 0; rc == 0 && fs && i < fs->u.seq.len; i++)
        rc = add_from_value(p, &fs->u.seq.items[i], true, err);
    for (size_t i = 0; rc == 0 && net && i < net->u.seq.len; i++)
        rc = add_from_value(p, &net->u.seq.items[i], false, err);
    if (rc) {
        iso_plan_unref(p);
        return NULL;
    }
    return p;
}

/* The ports of the IP rules of one kind, for Landlock's per-port rules. */
static int ports_of(const iso_plan *p, iso_net_action kind, uint16_t **ports,
                    size_t *n, bool *any)
{
    *ports = NULL, *n = 0, *any = false;
    size_t cap = 0;
    for (size_t i = 0; p && i < p->n_net && !*any; i++) {
        const net_rule *r = &p->net[i];
        if (r->action != kind || r->path)
            continue;
        if ((unsigned)r->port_hi - r->port_lo >= ISO_PORTS_MAX) {
            *any = true;
            break;
        }
        for (unsigned port = r->port_lo; port <= r->port_hi; port++) {
            if (grow((void **)ports, &cap, *n, sizeof **ports))
                return -1;
            (*ports)[(*n)++] = (uint16_t)port;
        }
    }
    return 0;
}

int iso_plan_connect_ports(const iso_plan *p, uint16_t **ports, size_t *n,
                           bool *any)
{
    return ports_of(p, ISO_NET_CONNECT, ports, n, any);
}

int iso_plan_bind_ports(const iso_plan *p, uint16_t **ports, size_t *n,
                        bool *any)
{
    return ports_of(p, ISO_NET_BIND, ports, n, any);
}
