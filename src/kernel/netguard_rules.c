/*
 * The network guard's pure side, no BPF in it: a plan's net rules as
 * guard rules, a denial's action, and a cgroup's id (netguard.c loads the
 * programs and installs the rules).
 */
#include "netguard.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "cgroup.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

const char *iso_net_denial_action(const iso_net_denial *d)
{
    return d->listen    ? "listen"
           : d->bind    ? "bind"
           : d->sendmsg ? "sendto"
                        : "connect";
}

/* Guard rules for one plan rule: none for a unix: rule, two for
 * localhost, else one. */
static size_t guard_rules_of(const iso_plan_net *r)
{
    return r->unix_path ? 0 : r->localhost ? 2 : 1;
}

/* One plan rule as guard_rules_of(r) guard rules. */
static size_t from_plan_rule(const iso_plan_net *r, iso_net_rule *out)
{
    if (r->unix_path)
        return 0;
    iso_net_rule base = {.deny = r->action == ISO_NET_DENY,
                         .bind = r->action == ISO_NET_BIND,
                         .port_lo = r->port_lo,
                         .port_hi = r->port_hi};
    if (!r->localhost) {
        out[0] = base;
        out[0].family = r->addr.family;
        out[0].prefix = r->prefix;
        memcpy(out[0].addr, r->addr.bytes, sizeof out[0].addr);
        return 1;
    }
    out[0] = out[1] = base;
    out[0].family = 4, out[0].prefix = 8, out[0].addr[0] = 127;
    out[1].family = 6, out[1].prefix = 128, out[1].addr[15] = 1;
    return 2;
}

int iso_netguard_rules_from_plan(const iso_plan *p, iso_net_rule *out,
                                 size_t cap, size_t *n, iso_error *err)
{
    size_t count = iso_plan_net_count(p), need = 0;
    iso_plan_net r;
    *n = 0;
    for (size_t i = 0; i < count; i++) {
        iso_plan_net_rule(p, i, &r, NULL);
        need += guard_rules_of(&r);
    }
    if (need > ISO_NETGUARD_MAX_RULES)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "netguard: the policy's %zu net rules make %zu "
                             "guard rules; the eBPF guard holds at most %d",
                             count, need, ISO_NETGUARD_MAX_RULES);
    if (need > cap)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "netguard: %zu guard rules do not fit in %zu",
                             need, cap);
    for (size_t i = 0; i < count; i++) {
        iso_plan_net_rule(p, i, &r, NULL);
        *n += from_plan_rule(&r, out + *n);
    }
    return 0;
}

/* ---- cgroup ids -------------------------------------------------------- */

int iso_cgroup_id_of(const char *path, uint64_t *id, iso_error *err)
{
    struct statfs fs;
    struct stat st;
    if (statfs(path, &fs) < 0 || stat(path, &st) < 0 ||
        fs.f_type != CGROUP2_SUPER_MAGIC || !S_ISDIR(st.st_mode))
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "netguard: %s is not a cgroup v2 directory", path);
    /* The file handle of a kernfs node is its 64-bit id; st_ino is the
     * same number on 64-bit hosts and the fallback. */
    union {
        struct file_handle fh;
        char buf[sizeof(struct file_handle) + sizeof(uint64_t)];
    } h = {.fh.handle_bytes = sizeof(uint64_t)};
    int mount_id;
    if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) == 0 &&
        h.fh.handle_bytes == sizeof(uint64_t)) {
        memcpy(id, h.fh.f_handle, sizeof *id);
        return 0;
    }
    *id = (uint64_t)st.st_ino;
    return 0;
}
