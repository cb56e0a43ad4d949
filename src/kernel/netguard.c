/*
 * The eBPF network guard's loader: load and attach the programs once per
 * process, install rule sets by generation flip, drain the denials. (Rules
 * from a plan, a denial's action and cgroup ids are netguard_rules.c's.)
 *
 * Reload atomicity. rules[{cgid, gen}] holds two generations; a writer
 * fills the inactive one, then flips cells[cgid].gen, and a program reads
 * the generation once and then one whole rule set. That alone is not
 * enough: the kernel recycles a hash element as soon as it is replaced (a
 * preallocated map swaps it into a per-CPU spare, BPF_F_NO_PREALLOC frees
 * it to a per-CPU cache; either is handed to the next update at once), so
 * a program that read generation g just before the flip away from g could
 * still be walking that element when the next reload rewrites g. Before a
 * reload writes the inactive generation it therefore waits for an RCU
 * grace period, by which every program that started under the old
 * generation has returned. The first install of a cgroup needs no wait:
 * nothing can be reading a generation no cells entry ever named.
 */
#include "netguard.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "cgroup.h"
#include "netguard_abi.h"

#ifndef ISO_HAVE_NETGUARD
#define ISO_HAVE_NETGUARD 0
#endif
#if ISO_HAVE_NETGUARD
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "netguard.skel.h" /* a SYSTEM include: its warnings are not ours */
#endif
#ifndef ISO_NETGUARD_MISSING
#define ISO_NETGUARD_MISSING "not configured"
#endif
#define NOT_BUILT \
    "built without clang -target bpf / bpftool (" ISO_NETGUARD_MISSING ")"

_Static_assert(NG_MAX_RULES == ISO_NETGUARD_MAX_RULES, "rule limit");
_Static_assert(NG_PROTO_TCP == IPPROTO_TCP && NG_PROTO_UDP == IPPROTO_UDP,
               "protocol numbers");
_Static_assert(NG_SOCK_STREAM == SOCK_STREAM && NG_SOCK_DGRAM == SOCK_DGRAM,
               "socket types (this ABI's, as the BPF side assumes)");
_Static_assert(sizeof(struct ng_key) == 16 && sizeof(struct ng_rule) == 28 &&
                   sizeof(struct ng_denial) == 40,
               "no implicit padding in what the kernel compares or copies");

#define N_PROGS 7
/* Denials one drain passes on at most: one ring's worth (8-byte headers). */
#define DRAIN_MAX (NG_RINGBUF / (8 + sizeof(struct ng_denial)))

static struct {
    pthread_mutex_t lock;       /* all below, and the map writers */
    pthread_mutex_t drain_lock; /* the ring buffer's single consumer */
    bool open;
    char why[sizeof(((iso_error *)0)->message)]; /* "" = open did not fail */
#if ISO_HAVE_NETGUARD
    struct netguard *skel;
    struct bpf_link *links[N_PROGS];
    struct ring_buffer *rb;
    int gp_outer, gp_inner; /* a map of maps, updated to wait for an RCU GP */
    char libbpf_said[256];  /* libbpf's first warning during open */
    /* the drain in progress (under drain_lock) */
    void (*drain_fn)(const iso_net_denial *d, void *ud);
    void *drain_ud;
    int drained;
#endif
} ng = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .drain_lock = PTHREAD_MUTEX_INITIALIZER,
#if ISO_HAVE_NETGUARD
    .gp_outer = -1,
    .gp_inner = -1,
#endif
};

static int unavailable(iso_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Every reason open fails is the guard being unavailable here. */
static int unavailable(iso_error *err, int code, const char *fmt, ...)
{
    char msg[sizeof ng.why];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    iso_error_set(err, ISO_NOT_IMPLEMENTED, "netguard: %s", msg);
    if (err)
        err->code = code;
    return -1;
}

/* ---- the kernel side (only in a build with the programs) --------------- */

#if ISO_HAVE_NETGUARD

/* libbpf prints to stderr by default; a library must not. Keep its first
 * telling warning line for the open error instead (verifier logs follow on
 * later lines and are dropped). The RLIMIT_MEMLOCK one is noise since 5.11
 * charges BPF memory to the cgroup. */
static int capture_libbpf(enum libbpf_print_level level, const char *fmt,
                          va_list ap)
{
    char line[sizeof ng.libbpf_said];
    if (level != LIBBPF_WARN || ng.libbpf_said[0])
        return 0;
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    if (!strstr(line, "RLIMIT_MEMLOCK"))
        memcpy(ng.libbpf_said, line, sizeof line);
    return 0;
}

static int load_programs(iso_error *err)
{
    ng.skel = netguard__open();
    if (!ng.skel)
        return unavailable(err, errno,
                           "libbpf could not open the embedded programs: %s",
                           strerror(errno));
    int rc = netguard__load(ng.skel);
    const char *said = ng.libbpf_said;
    if (rc < 0)
        return unavailable(err, -rc,
                           "the kernel refused to load the programs: %s%s%s%s",
                           strerror(-rc),
                           rc == -EPERM ? " (it takes root: CAP_BPF and "
                                          "CAP_NET_ADMIN)"
                                        : "",
                           said[0] ? "; " : "", said);
    return 0;
}

/* Links, not bpf_prog_attach: the kernel attaches them as
 * BPF_F_ALLOW_MULTI, and they detach when their fd closes, so a host that
 * dies leaves nothing attached. */
static int attach_programs(const char *root, iso_error *err)
{
    static const char *const names[N_PROGS] = {
        "cgroup/connect4",   "cgroup/connect6", "cgroup/sendmsg4",
        "cgroup/sendmsg6",   "cgroup/bind4",    "cgroup/bind6",
        "cgroup_skb/ingress"};
    struct bpf_program *progs[N_PROGS] = {
        ng.skel->progs.connect4,      ng.skel->progs.connect6,
        ng.skel->progs.sendmsg4,      ng.skel->progs.sendmsg6,
        ng.skel->progs.bind4,         ng.skel->progs.bind6,
        ng.skel->progs.listen_ingress};
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return unavailable(err, errno, "cannot open %s: %s", root,
                           strerror(errno));
    int rc = 0;
    for (int i = 0; i < N_PROGS && rc == 0; i++) {
        ng.links[i] = bpf_program__attach_cgroup(progs[i], fd);
        if (!ng.links[i])
            rc = unavailable(err, errno,
                             "the kernel refused to attach %s to %s: %s",
                             names[i], root, strerror(errno));
    }
    close(fd);
    return rc;
}

static int on_record(void *ctx, void *data, size_t size);

/* The ring buffer reader, and the map of maps whose update makes the
 * kernel wait for running programs (see grace_period). */
static int open_channels(iso_error *err)
{
    int fd = bpf_map__fd(ng.skel->maps.denials);
    ng.rb = ring_buffer__new(fd, on_record, NULL, NULL);
    if (!ng.rb)
        return unavailable(err, errno, "cannot read the denial ring: %s",
                           strerror(errno));
    ng.gp_inner =
        bpf_map_create(BPF_MAP_TYPE_ARRAY, "ng_gp_inner", 4, 4, 1, NULL);
    LIBBPF_OPTS(bpf_map_create_opts, opts, .inner_map_fd = ng.gp_inner);
    if (ng.gp_inner >= 0)
        ng.gp_outer =
            bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "ng_gp", 4, 4, 1, &opts);
    if (ng.gp_outer < 0)
        return unavailable(err, errno, "cannot create a map of maps: %s",
                           strerror(errno));
    return 0;
}

static void unload(void)
{
    for (int i = 0; i < N_PROGS; i++) {
        bpf_link__destroy(ng.links[i]);
        ng.links[i] = NULL;
    }
    ring_buffer__free(ng.rb);
    ng.rb = NULL;
    netguard__destroy(ng.skel);
    ng.skel = NULL;
    if (ng.gp_outer >= 0)
        close(ng.gp_outer);
    if (ng.gp_inner >= 0)
        close(ng.gp_inner);
    ng.gp_outer = ng.gp_inner = -1;
}

static int load(iso_error *err)
{
    char root[ISO_PATH_MAX];
    iso_error e = {0};
    if (iso_cgroup_root(root, sizeof root, &e) < 0)
        return unavailable(err, e.code, "%s", e.message);
    ng.libbpf_said[0] = '\0';
    libbpf_print_fn_t prev = libbpf_set_print(capture_libbpf);
    int rc = load_programs(err);
    if (rc == 0)
        rc = attach_programs(root, err);
    if (rc == 0)
        rc = open_channels(err);
    libbpf_set_print(prev);
    if (rc < 0)
        unload();
    return rc;
}

/* Returns once every BPF program running now has finished: the kernel
 * promises that after an update of a map of maps from user space
 * (maybe_wait_bpf_programs, a synchronize_rcu), and cgroup programs run
 * under rcu_read_lock. */
static int grace_period(iso_error *err)
{
    uint32_t zero = 0, inner = (uint32_t)ng.gp_inner;
    if (bpf_map_update_elem(ng.gp_outer, &zero, &inner, BPF_ANY) == 0)
        return 0;
    int e = errno;
    iso_error_set(err, ISO_CRASHED, "netguard: waiting for programs: %s",
                  strerror(e));
    if (err)
        err->code = e;
    return -1;
}

static int map_error(iso_error *err, const char *map, uint64_t cgid)
{
    int e = errno;
    iso_error_set(err, ISO_CRASHED, "netguard: update %s for cgroup %llu: %s",
                  map, (unsigned long long)cgid,
                  e == E2BIG ? "too many guarded cgroups" : strerror(e));
    if (err)
        err->code = e;
    return -1;
}

/* Fill the inactive generation, then flip to it (see the top of the file
 * for the wait). */
static int install(uint64_t cgid, const struct ng_rules *v, iso_error *err)
{
    int cells = bpf_map__fd(ng.skel->maps.cells);
    int rules = bpf_map__fd(ng.skel->maps.rules);
    struct ng_cell cell = {0};
    bool reload = bpf_map_lookup_elem(cells, &cgid, &cell) == 0;
    struct ng_key key = {.cgid = cgid, .gen = reload ? (cell.gen ^ 1) & 1 : 0};
    if (reload && grace_period(err) < 0)
        return -1;
    if (bpf_map_update_elem(rules, &key, v, BPF_ANY) < 0)
        return map_error(err, "rules", cgid);
    cell.gen = key.gen | (cell.gen & NG_GEN_AUDIT); /* a reload keeps it */
    if (bpf_map_update_elem(cells, &cgid, &cell, BPF_ANY) < 0) {
        map_error(err, "cells", cgid);
        if (!reload)
            bpf_map_delete_elem(rules, &key);
        return -1;
    }
    return 0;
}

/* cells first: from then on the cgroup is not ours, so no program looks
 * for the rules being deleted. */
static void uninstall(uint64_t cgid)
{
    int rules = bpf_map__fd(ng.skel->maps.rules);
    bpf_map_delete_elem(bpf_map__fd(ng.skel->maps.cells), &cgid);
    for (uint32_t gen = 0; gen < 2; gen++) {
        struct ng_key key = {.cgid = cgid, .gen = gen};
        bpf_map_delete_elem(rules, &key);
    }
}

static void to_denial(const struct ng_denial *r, iso_net_denial *d)
{
    *d = (iso_net_denial){.cgroup_id = r->cgid,
                          .pid = r->pid,
                          .tid = r->tid,
                          .family = r->family,
                          .proto = r->proto,
                          .port = r->port,
                          .sendmsg = r->op == NG_OP_SENDMSG,
                          .bind = r->op == NG_OP_BIND,
                          .listen = r->op == NG_OP_LISTEN};
    memcpy(d->addr, r->addr, sizeof d->addr);
}

/* libbpf's callback. A negative return stops the drain after this record
 * (libbpf has already consumed it): that is how a drain stays bounded
 * while cells keep being refused. */
static int on_record(void *ctx, void *data, size_t size)
{
    struct ng_denial r;
    iso_net_denial d;
    (void)ctx;
    if (size < sizeof r)
        return 0;
    memcpy(&r, data, sizeof r);
    to_denial(&r, &d);
    if (ng.drain_fn)
        ng.drain_fn(&d, ng.drain_ud);
    return ++ng.drained >= (int)DRAIN_MAX ? -EAGAIN : 0;
}

static int consume(void (*fn)(const iso_net_denial *, void *), void *ud)
{
    ng.drain_fn = fn;
    ng.drain_ud = ud;
    ng.drained = 0;
    int rc = ring_buffer__consume(ng.rb);
    ng.drain_fn = NULL;
    return rc < 0 && rc != -EAGAIN ? rc : ng.drained;
}

static bool have_ring(void)
{
    return ng.rb != NULL;
}

#else /* !ISO_HAVE_NETGUARD: the same steps, each saying why not */

static int load(iso_error *err)
{
    return unavailable(err, 0, "%s", NOT_BUILT);
}

static void unload(void)
{
}

static int install(uint64_t cgid, const struct ng_rules *v, iso_error *err)
{
    (void)cgid, (void)v;
    return iso_error_set(err, ISO_NOT_IMPLEMENTED, "netguard: not built");
}

static void uninstall(uint64_t cgid)
{
    (void)cgid;
}

static int consume(void (*fn)(const iso_net_denial *, void *), void *ud)
{
    (void)fn, (void)ud;
    return 0;
}

static bool have_ring(void)
{
    return false;
}

#endif

/* ---- open and close ---------------------------------------------------- */

int iso_netguard_open(iso_error *err)
{
    iso_error e = {0};
    int rc = 0;
    pthread_mutex_lock(&ng.drain_lock);
    pthread_mutex_lock(&ng.lock);
    if (!ng.open && ng.why[0]) {
        rc = iso_error_set(err, ISO_NOT_IMPLEMENTED, "%s", ng.why);
    } else if (!ng.open) {
        rc = load(&e);
        ng.open = rc == 0;
        if (rc < 0)
            snprintf(ng.why, sizeof ng.why, "%s", e.message);
        iso_error_move(err, &e);
    }
    pthread_mutex_unlock(&ng.lock);
    pthread_mutex_unlock(&ng.drain_lock);
    return rc;
}

bool iso_netguard_available(void)
{
    pthread_mutex_lock(&ng.lock);
    bool open = ng.open;
    pthread_mutex_unlock(&ng.lock);
    return open;
}

/* Caller holds ng.lock. A build without the guard knows why before any
 * open. */
static const char *why_locked(void)
{
    if (ng.why[0])
        return ng.why;
    if (!ISO_HAVE_NETGUARD)
        return "netguard: " NOT_BUILT;
    return NULL;
}

const char *iso_netguard_why(void)
{
    pthread_mutex_lock(&ng.lock);
    const char *why = why_locked();
    pthread_mutex_unlock(&ng.lock);
    return why;
}

void iso_netguard_close(void)
{
    pthread_mutex_lock(&ng.drain_lock);
    pthread_mutex_lock(&ng.lock);
    unload();
    ng.open = false;
    ng.why[0] = '\0';
    pthread_mutex_unlock(&ng.lock);
    pthread_mutex_unlock(&ng.drain_lock);
}

/* ---- rules ------------------------------------------------------------- */

static int check_rule(const iso_net_rule *r, size_t i, iso_error *err)
{
    const char *bad = NULL;
    if (r->family != 4 && r->family != 6)
        bad = "family must be 4 or 6";
    else if (r->prefix < 0 || r->prefix > (r->family == 4 ? 32 : 128))
        bad = "prefix out of range for its family";
    else if (r->proto != 0 && r->proto != IPPROTO_TCP &&
             r->proto != IPPROTO_UDP)
        bad = "proto must be 0 (any), IPPROTO_TCP or IPPROTO_UDP";
    else if (r->port_lo > r->port_hi)
        bad = "port_lo is above port_hi";
    if (bad)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "netguard: rule %zu: %s", i, bad);
    return 0;
}

static int check_rules(uint64_t cgid, const iso_net_rule *rules, size_t n,
                       iso_error *err)
{
    if (cgid == 0)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "netguard: no cgroup has id 0");
    if (n > ISO_NETGUARD_MAX_RULES || (n > 0 && !rules))
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "netguard: %zu rules; the eBPF guard holds at "
                             "most %d per cgroup",
                             n, ISO_NETGUARD_MAX_RULES);
    for (size_t i = 0; i < n; i++)
        if (check_rule(&rules[i], i, err) < 0)
            return -1;
    return 0;
}

/* Checked rules into the map's layout; every byte set, padding included,
 * so that what the kernel stores is exactly what we meant. */
static void encode(const iso_net_rule *in, size_t n, struct ng_rules *v)
{
    memset(v, 0, sizeof *v);
    v->n = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        struct ng_rule *r = &v->r[i];
        r->action = in[i].deny ? NG_DENY : NG_ALLOW;
        r->op = in[i].deny   ? NG_RULE_ANY
                : in[i].bind ? NG_RULE_BIND
                             : NG_RULE_CONNECT;
        r->family = (uint8_t)in[i].family;
        r->proto = (uint8_t)in[i].proto;
        r->prefix = (uint8_t)in[i].prefix;
        memcpy(r->addr, in[i].addr, in[i].family == 4 ? 4 : 16);
        r->port_lo = in[i].port_lo;
        r->port_hi = in[i].port_hi;
    }
}

/* Caller holds ng.lock. */
static int not_open(iso_error *err)
{
    const char *why = why_locked();
    if (why)
        return iso_error_set(err, ISO_NOT_IMPLEMENTED, "%s", why);
    return iso_error_set(err, ISO_CLOSED,
                         "netguard: not open (call iso_netguard_open)");
}

int iso_netguard_set(uint64_t cgroup_id, const iso_net_rule *rules, size_t n,
                     iso_error *err)
{
    struct ng_rules v;
    if (check_rules(cgroup_id, rules, n, err) < 0)
        return -1;
    encode(rules, n, &v);
    pthread_mutex_lock(&ng.lock);
    int rc = ng.open ? install(cgroup_id, &v, err) : not_open(err);
    pthread_mutex_unlock(&ng.lock);
    return rc;
}

int iso_netguard_audit(uint64_t cgroup_id, iso_error *err)
{
    struct ng_cell cell = {0};
    pthread_mutex_lock(&ng.lock);
    int cells = ng.open ? bpf_map__fd(ng.skel->maps.cells) : -1;
    int rc = cells < 0 ? not_open(err) : 0;
    if (rc == 0 && bpf_map_lookup_elem(cells, &cgroup_id, &cell) == 0) {
        cell.gen |= NG_GEN_AUDIT;
        if (bpf_map_update_elem(cells, &cgroup_id, &cell, BPF_EXIST) < 0)
            rc = map_error(err, "cells", cgroup_id);
    } else if (rc == 0) {
        rc = map_error(err, "cells", cgroup_id);
    }
    pthread_mutex_unlock(&ng.lock);
    return rc;
}

void iso_netguard_forget(uint64_t cgroup_id)
{
    pthread_mutex_lock(&ng.lock);
    if (ng.open)
        uninstall(cgroup_id);
    pthread_mutex_unlock(&ng.lock);
}

int iso_netguard_drain(void (*fn)(const iso_net_denial *d, void *ud), void *ud)
{
    pthread_mutex_lock(&ng.drain_lock);
    int n = have_ring() ? consume(fn, ud) : 0;
    pthread_mutex_unlock(&ng.drain_lock);
    return n;
}
