/*
 * The network guard: cgroup connect4/6, sendmsg4/6 and bind4/6 hooks that
 * judge each connect(), unconnected sendto() and bind() of a registered
 * cell against the cell's rules, and report what they refuse (maps:
 * netguard_abi.h; loader: src/kernel/netguard.c).
 *
 * No vmlinux.h, on purpose: struct bpf_sock_addr is UAPI (<linux/bpf.h>)
 * and nothing here reads a kernel-internal struct, so there is no CO-RE to
 * relocate and the build needs neither the running kernel's BTF nor
 * `bpftool btf dump`. (clang -g still emits BTF for our own maps, which
 * libbpf wants for BTF-defined maps.) The programs stay plain -- one
 * SEC("cgroup/...") each, no global data, no newer skeleton features --
 * because Debian 12's bpftool 7.1 / libbpf 1.1 build the skeleton.
 *
 * Verdict: a cgroup missing from `cells` is not ours (other hosts, the
 * host's own threads): allow. Otherwise the rules of the cell's active
 * generation decide: a matching deny beats every allow, and what nothing
 * allows is denied, as in iso_plan_check_net().
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "netguard_abi.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, NG_MAX_CELLS);
    __type(key, __u64);
    __type(value, struct ng_cell);
} cells SEC(".maps");

/* Two generations per cell. Not preallocated: 8192 rule sets of ~800 bytes
 * each would pin 6.5 MB whether or not any cell runs. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2 * NG_MAX_CELLS);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct ng_key);
    __type(value, struct ng_rules);
} rules SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, NG_RINGBUF);
} denials SEC(".maps");

/* Where the socket is going, as the rules see it. */
struct target {
    __u32 addr32[4]; /* network order; IPv4 in the first word */
    __u16 port;      /* host order */
    __u8 family;     /* 4 or 6 */
    __u8 proto;
    __u8 op; /* NG_RULE_CONNECT or NG_RULE_BIND: which rules apply */
};

/* The socket's protocol as a rule names it. A socket made with protocol 0
 * has sk_protocol filled in by the kernel, but the type settles it anyway;
 * MPTCP is TCP to a policy. Numbers that do not fit a byte become
 * NG_PROTO_OTHER so that truncation cannot turn them into TCP or UDP. */
static __always_inline __u8 sock_proto(const struct bpf_sock_addr *ctx)
{
    __u32 type = ctx->type, proto = ctx->protocol;
    if (type == NG_SOCK_STREAM &&
        (proto == 0 || proto == NG_PROTO_TCP || proto == 262 /* MPTCP */))
        return NG_PROTO_TCP;
    if (type == NG_SOCK_DGRAM && (proto == 0 || proto == NG_PROTO_UDP))
        return NG_PROTO_UDP;
    return proto <= 0xff ? (__u8)proto : NG_PROTO_OTHER;
}

static __always_inline void target4(const struct bpf_sock_addr *ctx,
                                    struct target *t)
{
    t->addr32[0] = ctx->user_ip4;
    t->addr32[1] = t->addr32[2] = t->addr32[3] = 0;
    t->port = bpf_ntohs((__u16)ctx->user_port);
    t->family = 4;
    t->proto = sock_proto(ctx);
}

/* An IPv4-mapped address (::ffff:a.b.c.d) reaches an IPv4 host, so it is
 * judged as that IPv4 address: else a v6 socket would bypass v4 rules. */
static __always_inline void target6(const struct bpf_sock_addr *ctx,
                                    struct target *t)
{
    __u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1];
    __u32 a2 = ctx->user_ip6[2], a3 = ctx->user_ip6[3];
    bool mapped = a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff);
    t->addr32[0] = mapped ? a3 : a0;
    t->addr32[1] = mapped ? 0 : a1;
    t->addr32[2] = mapped ? 0 : a2;
    t->addr32[3] = mapped ? 0 : a3;
    t->port = bpf_ntohs((__u16)ctx->user_port);
    t->family = mapped ? 4 : 6;
    t->proto = sock_proto(ctx);
}

/* The first r->prefix bits of the rule's address and the target's agree;
 * a word at a time, in network order. */
static __always_inline bool addr_match(const struct ng_rule *r,
                                       const struct target *t)
{
    __u32 bits = r->prefix;
#pragma unroll
    for (int w = 0; w < 4; w++) {
        if (bits == 0)
            return true;
        __u32 mask = bits >= 32 ? 0xffffffff : bpf_htonl(~0u << (32 - bits));
        if ((r->addr32[w] ^ t->addr32[w]) & mask)
            return false;
        bits = bits >= 32 ? bits - 32 : 0;
    }
    return true;
}

static __always_inline bool rule_match(const struct ng_rule *r,
                                       const struct target *t)
{
    return (r->op == NG_RULE_ANY || r->op == t->op) && r->family == t->family &&
           (r->proto == 0 || r->proto == t->proto) && t->port >= r->port_lo &&
           t->port <= r->port_hi && addr_match(r, t);
}

/* 1 allow, 0 deny. One pass: a deny ends it, an allow only counts if no
 * later deny matches. The constant bound is what the verifier sees. */
static __always_inline int decide(const struct ng_rules *rs,
                                  const struct target *t)
{
    __u32 n = rs->n;
    int allow = 0;
    for (__u32 i = 0; i < NG_MAX_RULES; i++) {
        if (i >= n)
            break;
        const struct ng_rule *r = &rs->r[i];
        if (!rule_match(r, t))
            continue;
        if (r->action == NG_DENY)
            return 0;
        allow = 1;
    }
    return allow;
}

/* Best effort: when the ring is full the record is lost, never the
 * denial. A packet is judged in softirq context: no task to name. */
static __always_inline void report(const struct target *t, __u64 cgid, __u8 op)
{
    struct ng_denial *d = bpf_ringbuf_reserve(&denials, sizeof *d, 0);
    if (!d)
        return;
    __u64 pid_tgid = op == NG_OP_LISTEN ? 0 : bpf_get_current_pid_tgid();
    d->cgid = cgid;
    d->pid = (__u32)(pid_tgid >> 32);
    d->tid = (__u32)pid_tgid;
    d->family = t->family;
    d->proto = t->proto;
    d->port = t->port;
    d->addr32[0] = t->addr32[0];
    d->addr32[1] = t->addr32[1];
    d->addr32[2] = t->addr32[2];
    d->addr32[3] = t->addr32[3];
    d->op = op;
    __builtin_memset(d->pad, 0, sizeof d->pad);
    bpf_ringbuf_submit(d, 0);
}

/* The rules are looked up once: the generation read from `cells` names one
 * whole rule set (the loader fills a generation before it flips to it). */
static __always_inline int judge_in(__u64 cgid, struct target *t, __u8 op)
{
    t->op =
        op == NG_OP_BIND || op == NG_OP_LISTEN ? NG_RULE_BIND : NG_RULE_CONNECT;
    struct ng_cell *cell = bpf_map_lookup_elem(&cells, &cgid);
    if (!cell)
        return 1;
    struct ng_key key = {.cgid = cgid, .gen = cell->gen & 1, .pad = 0};
    struct ng_rules *rs = bpf_map_lookup_elem(&rules, &key);
    if (rs && decide(rs, t))
        return 1;
    report(t, cgid, op);
    return cell->gen & NG_GEN_AUDIT ? 1 : 0; /* learn mode: log and allow */
}

/* A socket call: the verdict follows the calling thread's cgroup. */
static __always_inline int judge(struct target *t, __u8 op)
{
    return judge_in(bpf_get_current_cgroup_id(), t, op);
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
    struct target t;
    target4(ctx, &t);
    return judge(&t, NG_OP_CONNECT);
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
    struct target t;
    target6(ctx, &t);
    return judge(&t, NG_OP_CONNECT);
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
    struct target t;
    target4(ctx, &t);
    return judge(&t, NG_OP_SENDMSG);
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
    struct target t;
    target6(ctx, &t);
    return judge(&t, NG_OP_SENDMSG);
}

/* bind() of a cell's socket: only bind rules allow it (a socket bound to
 * nothing the policy names cannot listen or receive). The autobind of
 * listen() on an unbound socket does not pass here: seccomp refuses
 * listen() in cells whose policy has no bind rule. */
SEC("cgroup/bind4")
int bind4(struct bpf_sock_addr *ctx)
{
    struct target t;
    target4(ctx, &t);
    return judge(&t, NG_OP_BIND);
}

SEC("cgroup/bind6")
int bind6(struct bpf_sock_addr *ctx)
{
    struct target t;
    target6(ctx, &t);
    return judge(&t, NG_OP_BIND);
}

/* listen() on an unbound socket binds every address on an ephemeral port
 * without passing bind4/6 (inet_csk_listen_start calls get_port itself;
 * no post_bind hook runs either). seccomp refuses listen() to cells with
 * no bind rule; for the others, a packet reaching a listener of a cell's
 * socket is judged like a bind of the listener's address: a listener no
 * bind rule allows gets no connection (its SYNs are dropped). Everything
 * that is not a TCP listener passes at once. */
SEC("cgroup_skb/ingress")
int listen_ingress(struct __sk_buff *skb)
{
    struct bpf_sock *sk = skb->sk;
    if (!sk)
        return 1;
    sk = bpf_sk_fullsock(sk);
    if (!sk || sk->state != BPF_TCP_LISTEN || sk->protocol != NG_PROTO_TCP)
        return 1;
    struct target t;
    __u32 a0 = sk->src_ip6[0], a1 = sk->src_ip6[1];
    __u32 a2 = sk->src_ip6[2], a3 = sk->src_ip6[3];
    bool v4 = sk->family == 2 /* AF_INET */;
    bool mapped = !v4 && a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff);
    t.addr32[0] = v4 ? sk->src_ip4 : mapped ? a3 : a0;
    t.addr32[1] = v4 || mapped ? 0 : a1;
    t.addr32[2] = v4 || mapped ? 0 : a2;
    t.addr32[3] = v4 || mapped ? 0 : a3;
    t.port = (__u16)sk->src_port; /* host order in struct bpf_sock */
    t.family = v4 || mapped ? 4 : 6;
    t.proto = NG_PROTO_TCP;
    return judge_in(bpf_skb_cgroup_id(skb), &t, NG_OP_LISTEN);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
