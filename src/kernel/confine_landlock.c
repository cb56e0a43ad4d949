/*
 * The Landlock steps: landlock_fs (deny by default, the grants allowed),
 * landlock_net (TCP bind and connect ports, ABI >= 4) and landlock_scope
 * (abstract unix sockets and signals, ABI >= 6), for a process in one
 * go, for a cell thread with the ruleset it found in the cache
 * (landlock_cache.h) before it took its own fd table.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confine_steps.h"
#include "landlock.h"
#include "landlock_cache.h"
#include "seccomp_cache.h"

/* The Landlock ruleset a cell thread carries from its fd_table step to its
 * landlock step (the steps share nothing else): the cache's fd, valid in
 * the thread's private table; -1: none, built in the landlock step. */
static _Thread_local struct {
    int fd, abi;
    size_t skipped;
} carried = {-1, -1, 0};

/* A write grant creates, removes, renames and truncates beneath the path,
 * but never makes device nodes: a block device made in a writable
 * directory would expose the raw disk. */
static uint64_t grant_rights(const iso_fs_grant *g)
{
    uint64_t r = 0;
    if (g->read)
        r |= LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    if (g->write)
        r |= LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
             LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR |
             LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
             LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_SYM |
             LANDLOCK_ACCESS_FS_REFER | LANDLOCK_ACCESS_FS_TRUNCATE |
             LANDLOCK_ACCESS_FS_IOCTL_DEV;
    if (g->exec)
        r |= LANDLOCK_ACCESS_FS_EXECUTE;
    if (g->list)
        r |= LANDLOCK_ACCESS_FS_READ_DIR;
    return r;
}

/* The rule for g; id: what its path resolved to (absent: nothing there to
 * allow, the default deny holds). An fstat failure leaves id zero, which
 * no path resolves to: a cached ruleset built so is always stale. */
static int add_path_rule(int rfd, const iso_fs_grant *g, uint64_t handled,
                         iso_landlock_ident *id, iso_error *err)
{
    *id = (iso_landlock_ident){0, 0, true};
    if (!g->path || g->path[0] != '/')
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "confine: fs grant paths must be absolute");
    int fd = open(g->path, O_PATH | O_CLOEXEC);
    if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
        return 0;
    if (fd < 0)
        return iso_confine_fail(err, "open %s", g->path);
    struct stat st;
    uint64_t want = grant_rights(g) & handled;
    id->absent = false;
    if (fstat(fd, &st) == 0) {
        id->dev = st.st_dev, id->ino = st.st_ino;
        if (!S_ISDIR(st.st_mode))
            want &= ISO_LANDLOCK_FILE_RIGHTS;
    }
    struct landlock_path_beneath_attr pb = {.allowed_access = want,
                                            .parent_fd = fd};
    int rc =
        want ? iso_landlock_add_rule(rfd, ISO_LANDLOCK_RULE_PATH_BENEATH, &pb)
             : 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc < 0 ? iso_confine_fail(err, "Landlock rule for %s", g->path) : 0;
}

/* One Landlock port rule per port of the list, for one right. */
static int add_port_rules(int rfd, const uint16_t *ports, size_t n,
                          uint64_t right, iso_error *err)
{
    for (size_t i = 0; i < n; i++) {
        struct iso_landlock_net_port_attr np = {.allowed_access = right,
                                                .port = ports[i]};
        if (iso_landlock_add_rule(rfd, ISO_LANDLOCK_RULE_NET_PORT, &np) < 0)
            return iso_confine_fail(err, "Landlock rule for TCP port %u",
                                    (unsigned)ports[i]);
    }
    return 0;
}

static int add_net_rules(int rfd, const iso_confine_config *cfg,
                         uint64_t handled, iso_error *err)
{
    if ((handled & LANDLOCK_ACCESS_NET_CONNECT_TCP) &&
        add_port_rules(rfd, cfg->connect_ports, cfg->n_ports,
                       LANDLOCK_ACCESS_NET_CONNECT_TCP, err) < 0)
        return -1;
    if ((handled & LANDLOCK_ACCESS_NET_BIND_TCP) &&
        add_port_rules(rfd, cfg->bind_ports, cfg->n_bind_ports,
                       LANDLOCK_ACCESS_NET_BIND_TCP, err) < 0)
        return -1;
    return 0;
}

/* What the ruleset handles: every fs right (deny by default), TCP bind
 * unless a bind rule allows every port (only the bind rules' ports are
 * allowed, none without one; the BPF guard narrows to addresses), connect
 * unless a net rule allows every port or the BPF guard judges it, and both
 * scopes. */
static struct iso_landlock_ruleset_attr
ruleset_for(const iso_confine_config *cfg, int abi)
{
    struct iso_landlock_ruleset_attr a = {iso_landlock_fs_rights(abi), 0, 0};
    if (abi >= 4)
        a.handled_access_net =
            (cfg->bind_any_port ? 0 : LANDLOCK_ACCESS_NET_BIND_TCP) |
            (cfg->any_port || cfg->connect_by_bpf
                 ? 0
                 : LANDLOCK_ACCESS_NET_CONNECT_TCP);
    if (abi >= 6)
        a.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
    return a;
}

/* "[p1,p2,...]" (cut short past ~90 characters). */
static void port_list(const uint16_t *ports, size_t n, char *out, size_t size)
{
    size_t len = (size_t)snprintf(out, size, "[");
    for (size_t i = 0; i < n && len + 8 < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%u", i ? "," : "",
                                (unsigned)ports[i]);
    snprintf(out + len, size - len, "]");
}

static void report_ports(const iso_confine_config *cfg, iso_confine_report *rep)
{
    char conn[100], bind[100], bind_text[140];
    port_list(cfg->connect_ports, cfg->n_ports, conn, sizeof conn);
    port_list(cfg->bind_ports, cfg->n_bind_ports, bind, sizeof bind);
    if (cfg->bind_any_port)
        snprintf(bind_text, sizeof bind_text, "TCP bind to any port");
    else if (cfg->n_bind_ports == 0)
        snprintf(bind_text, sizeof bind_text, "TCP bind denied");
    else
        snprintf(bind_text, sizeof bind_text, "TCP bind only to port(s) %s",
                 bind);
    if (cfg->connect_by_bpf)
        iso_step_add(rep, "landlock_net", ISO_STEP_ACTIVE,
                     "%s; connect left to the BPF guard", bind_text);
    else if (cfg->any_port)
        iso_step_add(rep, "landlock_net", ISO_STEP_ACTIVE,
                     "%s; connect to any port (a net rule allows every port)",
                     bind_text);
    else
        iso_step_add(rep, "landlock_net", ISO_STEP_ACTIVE,
                     "%s; connect only to port(s) %s", bind_text, conn);
    iso_step_fact_str(rep, "bind", cfg->bind_any_port     ? "any"
                                   : cfg->n_bind_ports == 0 ? "denied"
                                                            : "ports");
    iso_step_fact_ports(rep, "bind_ports", cfg->bind_ports, cfg->n_bind_ports);
}

int iso_confine_net_from_plan(iso_confine_config *cfg, const iso_plan *plan,
                              iso_error *err)
{
    uint16_t *conn = NULL, *bind = NULL;
    iso_plan_net_kinds k = iso_plan_net_kinds_of(plan);
    int rc = iso_plan_connect_ports(plan, &conn, &cfg->n_ports, &cfg->any_port);
    if (rc == 0)
        rc = iso_plan_bind_ports(plan, &bind, &cfg->n_bind_ports,
                                 &cfg->bind_any_port);
    cfg->connect_ports = conn;
    cfg->bind_ports = bind;
    cfg->net_calls = (k.bind ? ISO_SECCOMP_NET_LISTEN : 0) |
                     (k.unix_path ? ISO_SECCOMP_NET_UNIX : 0) |
                     (k.ip ? ISO_SECCOMP_NET_NETLINK : 0);
    if (rc < 0) {
        iso_confine_net_free(cfg);
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    }
    return 0;
}

void iso_confine_net_free(iso_confine_config *cfg)
{
    free((void *)cfg->connect_ports);
    free((void *)cfg->bind_ports);
    cfg->connect_ports = cfg->bind_ports = NULL;
    cfg->n_ports = cfg->n_bind_ports = 0;
}

static void report_landlock(const iso_confine_config *cfg,
                            iso_confine_report *rep, int abi, size_t skipped)
{
    iso_step_add(rep, "landlock_fs", ISO_STEP_ACTIVE,
                 "ABI %d: deny by default; %zu grant(s), %zu missing path(s) "
                 "skipped",
                 abi, cfg->n_grants - skipped, skipped);
    if (abi >= 4)
        report_ports(cfg, rep);
    else
        iso_step_add(rep, "landlock_net", ISO_STEP_MISSING,
                     "Landlock ABI %d < 4: TCP connect and bind unrestricted",
                     abi);
    if (abi >= 6)
        iso_step_add(rep, "landlock_scope", ISO_STEP_ACTIVE,
                     "abstract unix sockets and signals limited to the cell");
    else
        iso_step_add(rep, "landlock_scope", ISO_STEP_MISSING,
                     "Landlock ABI %d < 6: abstract unix sockets and signals "
                     "not scoped",
                     abi);
}

static void report_no_landlock(iso_confine_report *rep, int abi_errno)
{
    const char *why = abi_errno == ENOSYS ? "kernel built without Landlock"
                      : abi_errno == EOPNOTSUPP
                          ? "Landlock disabled (not in the lsm= boot list)"
                          : strerror(abi_errno);
    iso_step_add(rep, "landlock_fs", ISO_STEP_MISSING, "%s", why);
    iso_step_add(rep, "landlock_net", ISO_STEP_MISSING, "%s", why);
    iso_step_add(rep, "landlock_scope", ISO_STEP_MISSING, "%s", why);
}

/* A ruleset for cfg (its fd, -1 with err) and how many grants were
 * missing; ids (NULL: not wanted) gets what each grant resolved to. */
static int build_ruleset(const iso_confine_config *cfg,
                         const struct iso_landlock_ruleset_attr *a,
                         iso_landlock_ident *ids, size_t *skipped,
                         iso_error *err)
{
    int rfd = iso_landlock_create_ruleset(a, sizeof *a, 0);
    if (rfd < 0)
        return iso_confine_fail(err, "landlock_create_ruleset");
    int rc = 0;
    *skipped = 0;
    for (size_t i = 0; rc == 0 && i < cfg->n_grants; i++) {
        iso_landlock_ident id;
        rc =
            add_path_rule(rfd, &cfg->grants[i], a->handled_access_fs, &id, err);
        *skipped += rc == 0 && id.absent;
        if (ids)
            ids[i] = id;
    }
    if (rc == 0)
        rc = add_net_rules(rfd, cfg, a->handled_access_net, err);
    if (rc < 0) {
        close(rfd);
        return -1;
    }
    return rfd;
}

/* Restrict the thread (or process) with rfd, then close it. */
static int restrict_with(const iso_confine_config *cfg, iso_confine_report *rep,
                         int abi, int rfd, size_t skipped, iso_error *err)
{
    int rc = iso_landlock_restrict_self(rfd) < 0
                 ? iso_confine_fail(err, "landlock_restrict_self")
                 : 0;
    close(rfd);
    if (rc == 0)
        report_landlock(cfg, rep, abi, skipped);
    return rc;
}

/* Landlock refuses or allows; it cannot log. Learning, it stays off so the
 * Python guard and the BPF guard see and record every access. */
static void report_audit(iso_confine_report *rep)
{
    static const char *const layers[] = {"landlock_fs", "landlock_net",
                                         "landlock_scope"};
    for (size_t i = 0; i < 3; i++)
        iso_step_add(rep, layers[i], ISO_STEP_AUDIT,
                     "learn mode: not applied (Landlock cannot audit)");
}

int iso_step_landlock(const iso_confine_config *cfg, iso_confine_report *rep,
                      iso_error *err)
{
    int abi = iso_landlock_abi();
    if (cfg->audit) {
        report_audit(rep);
        return 0;
    }
    if (abi < 0) {
        report_no_landlock(rep, -abi);
        return 0;
    }
    struct iso_landlock_ruleset_attr a = ruleset_for(cfg, abi);
    size_t skipped;
    int rfd = build_ruleset(cfg, &a, NULL, &skipped, err);
    return rfd < 0 ? -1 : restrict_with(cfg, rep, abi, rfd, skipped, err);
}

/* Under the cache lock, in a cell thread before it takes its own fd
 * table: carried gets the cached ruleset for cfg, built and cached on a miss
 * (none without Landlock or when out of memory: the landlock step builds
 * it then, as for a process). */
int iso_thread_ruleset_hold(const iso_confine_config *cfg, iso_error *err)
{
    carried.fd = -1;
    carried.abi = iso_landlock_abi();
    if (carried.abi < 0 || cfg->audit)
        return 0;
    iso_landlock_key k = {ruleset_for(cfg, carried.abi),
                          cfg->grants,
                          cfg->n_grants,
                          cfg->n_fixed_grants < cfg->n_grants
                              ? cfg->n_fixed_grants
                              : cfg->n_grants,
                          cfg->connect_ports,
                          cfg->bind_ports,
                          cfg->n_ports,
                          cfg->n_bind_ports};
    if ((carried.fd = iso_landlock_cache_find(&k, &carried.skipped)) >= 0)
        return 0;
    iso_landlock_ident *ids = calloc(cfg->n_grants + 1, sizeof *ids);
    if (!ids)
        return 0;
    int rfd = build_ruleset(cfg, &k.attr, ids, &carried.skipped, err);
    if (rfd >= 0 && iso_landlock_cache_add(&k, ids, rfd, carried.skipped))
        carried.fd = rfd;
    else if (rfd >= 0)
        close(rfd); /* built again after unshare, outside the host table */
    free(ids);
    return rfd < 0 ? -1 : 0;
}

/* A cell thread's: with the ruleset held since the fd_table step. */
int iso_step_thread_landlock(const iso_confine_config *cfg,
                             iso_confine_report *rep, iso_error *err)
{
    int fd = carried.fd;
    carried.fd = -1;
    if (fd < 0)
        return iso_step_landlock(cfg, rep, err);
    return restrict_with(cfg, rep, carried.abi, fd, carried.skipped, err);
}

int iso_thread_ruleset_fd(void)
{
    return carried.fd;
}

void iso_thread_ruleset_forget(void)
{
    carried.fd = -1;
}

void iso_thread_ruleset_close(void)
{
    if (carried.fd >= 0)
        close(carried.fd);
    carried.fd = -1;
}
