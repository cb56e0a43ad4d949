/*
 * The eBPF network guard (host side; no Lua, no Python).
 *
 * cgroup connect4/6 and sendmsg4/6 programs (src/kernel/netguard.bpf.c),
 * attached once per process to the luaisolate cgroup root, judge every
 * connect() and unconnected sendto() made from a registered cgroup -- a
 * process cell's own cgroup or a cell thread's threaded cgroup -- against
 * that cgroup's rules: a matching deny beats every allow, and anything no
 * rule allows is denied (EPERM), as in iso_plan_check_net(). Cgroups that
 * were never registered are not ours and pass (other hosts' cells, this
 * host's own threads). IPv4-mapped IPv6 is judged as the IPv4 address.
 *
 * The verdict follows the cgroup of the thread that calls connect/sendmsg.
 * Refusals are queued in a ring buffer for iso_netguard_drain.
 *
 * Threads: every function may be called from any thread, except that
 * iso_netguard_drain has one caller at a time and none of them may race
 * iso_netguard_close.
 */
#ifndef ISO_NETGUARD_H
#define ISO_NETGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate.h"

#define ISO_NETGUARD_MAX_RULES 32 /* rules per cgroup */

typedef struct iso_net_rule {
    bool deny;        /* else allow; a deny refuses connect and bind alike */
    bool bind;        /* an allow rule for bind(), else for connect/sendto */
    int family;       /* 4 or 6 */
    int proto;        /* 0 (any), IPPROTO_TCP or IPPROTO_UDP */
    int prefix;       /* 0-32 or 0-128 */
    uint8_t addr[16]; /* network order; IPv4 in addr[0..3] */
    uint16_t port_lo; /* inclusive, host order */
    uint16_t port_hi;
} iso_net_rule;

typedef struct iso_net_denial {
    uint64_t cgroup_id;
    uint32_t pid, tid; /* as seen from the initial pid namespace */
    int family;        /* 4 (IPv4-mapped IPv6 included) or 6 */
    int proto;         /* IPPROTO_TCP, IPPROTO_UDP, else the socket's */
    uint8_t addr[16];  /* network order; IPv4 in addr[0..3] */
    uint16_t port;     /* host order */
    bool sendmsg;      /* sendto/sendmsg */
    bool bind;         /* bind() */
    bool listen;       /* a connection to a listener no bind rule allows
                        * (pid and tid are 0: judged in softirq) */
} iso_net_denial;

/* "connect", "sendto", "bind" or "listen": the refused call, as denial events
 * name it. Static string. */
const char *iso_net_denial_action(const iso_net_denial *d);

/* Load the programs and attach them through libbpf links (which the kernel
 * treats as BPF_F_ALLOW_MULTI, so other hosts' guards coexist) to the
 * luaisolate cgroup (iso_cgroup_root). Once per process: later calls
 * return the first outcome at once, success or failure, until
 * iso_netguard_close. ISO_NOT_IMPLEMENTED says what is missing: a build
 * without the guard, no cgroup v2, or the kernel refusing to load or
 * attach (with the errno text). Blocks for the load (milliseconds). */
int iso_netguard_open(iso_error *err);
/* True after a successful open, until close. */
bool iso_netguard_available(void);
/* Why the guard is unavailable: the failed open's message (also for a
 * build without it, before any open), or NULL. Static storage, valid until
 * iso_netguard_close. */
const char *iso_netguard_why(void);
/* Detach (destroy the links), free the maps and the ring buffer, forget a
 * failed open. Every registered cgroup is unguarded afterwards. For tests
 * and exit; idempotent. */
void iso_netguard_close(void);

/* A plan's net rules as guard rules: connect rules allow connect/sendto,
 * bind rules allow bind, deny rules deny both, any protocol; unix: rules
 * are not the guard's (the python-guard judges them) and are skipped;
 * `localhost` becomes two rules (127.0.0.0/8 and ::1/128). A NULL plan gives
 * none (deny all). ISO_INVALID_ARGUMENT, naming the limit, when they need more
 * than min(cap, ISO_NETGUARD_MAX_RULES). */
int iso_netguard_rules_from_plan(const iso_plan *p, iso_net_rule *out,
                                 size_t cap, size_t *n, iso_error *err);

/* Install or replace a cgroup's rules (n == 0 denies everything). A
 * replacement is atomic: each connect is judged by the old set or the new
 * one, never a mix. The first install does not block; a replacement waits
 * for an RCU grace period (~15 ms) so that no program still reads the rule
 * set it overwrites. ISO_INVALID_ARGUMENT for a bad rule or too many,
 * ISO_CLOSED before a successful open (ISO_NOT_IMPLEMENTED after a failed
 * one), ISO_CRASHED when the kernel refuses the update (err->code). */
int iso_netguard_set(uint64_t cgroup_id, const iso_net_rule *rules, size_t n,
                     iso_error *err);
/* Learn mode for a guarded cgroup: what its rules refuse is reported and
 * allowed from now on (a reload keeps it). 0, or -1 with err. */
int iso_netguard_audit(uint64_t cgroup_id, iso_error *err);
/* Stop guarding a cgroup (both generations and its cells entry); it is
 * unguarded from then on, so a connect racing this call may get either
 * verdict. Idempotent; a no-op when the guard is not open. */
void iso_netguard_forget(uint64_t cgroup_id);
/* Pass each pending denial to fn (may be NULL: discard), without blocking,
 * at most one ring buffer's worth per call. fn runs on the caller's thread
 * inside libbpf: it must return normally (no longjmp). Returns how many
 * were drained (0 when the guard is not open), or a negative errno. Denials
 * made while the ring buffer was full are not reported. */
int iso_netguard_drain(void (*fn)(const iso_net_denial *d, void *ud), void *ud);

/* The id the kernel gives a cgroup v2 directory (what
 * bpf_get_current_cgroup_id returns inside it): its file handle, i.e. its
 * inode number on 64-bit. ISO_INVALID_ARGUMENT when path is not a cgroup
 * v2 directory. Does not block. */
int iso_cgroup_id_of(const char *path, uint64_t *id, iso_error *err);

#endif
