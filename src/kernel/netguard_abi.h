/*
 * What the network guard's eBPF programs (netguard.bpf.c) and its loader
 * (src/kernel/netguard.c) share: map keys, map values and the denial record.
 * Both sides compile this header, so it uses only <linux/types.h> and
 * spells out every padding byte: hash keys are compared as raw bytes, and
 * a pad left to the compiler could differ between the two sides.
 */
#ifndef ISO_NETGUARD_ABI_H
#define ISO_NETGUARD_ABI_H

#include <linux/types.h>

#define NG_MAX_RULES 32      /* = ISO_NETGUARD_MAX_RULES */
#define NG_MAX_CELLS 4096    /* cgroups guarded at once */
#define NG_RINGBUF (1 << 18) /* bytes of pending denials (~5000 records) */

/* Rule actions and record ops. */
#define NG_ALLOW 0
#define NG_DENY 1
#define NG_OP_CONNECT 0
#define NG_OP_SENDMSG 1
#define NG_OP_BIND 2
#define NG_OP_LISTEN 3 /* a connection to a listener no bind rule allows */
/* What a rule judges: connect and sendmsg, bind, or both (deny rules). */
#define NG_RULE_CONNECT 0
#define NG_RULE_BIND 1
#define NG_RULE_ANY 2

/* IPPROTO_TCP/UDP and SOCK_STREAM/DGRAM, which no UAPI header the BPF side
 * can include without libc defines; netguard.c checks them against libc.
 * NG_PROTO_OTHER stands for a protocol number that does not fit a byte:
 * no rule names it, so only proto-0 ("any") rules match it. */
#define NG_PROTO_TCP 6
#define NG_PROTO_UDP 17
#define NG_PROTO_OTHER 255
#define NG_SOCK_STREAM 1
#define NG_SOCK_DGRAM 2

/* ng_cell.gen's bit for learn mode: what the rules refuse is reported and
 * allowed (log-and-allow). */
#define NG_GEN_AUDIT 2u

/* cells: cgroup id -> the generation of rules in force. */
struct ng_cell {
    __u32 gen; /* 0 or 1, | NG_GEN_AUDIT */
};

/* rules: {cgroup id, generation} -> that generation's rule set. */
struct ng_key {
    __u64 cgid;
    __u32 gen;
    __u32 pad; /* always 0 */
};

struct ng_rule {
    __u8 action; /* NG_ALLOW or NG_DENY */
    __u8 family; /* 4 or 6 */
    __u8 proto;  /* 0 (any), NG_PROTO_TCP or NG_PROTO_UDP */
    __u8 prefix; /* bits of addr that must match */
    /* network order; IPv4 in the first 4 bytes. The words let the program
     * compare 32 bits at a time. */
    union {
        __u8 addr[16];
        __u32 addr32[4];
    };
    __u16 port_lo, port_hi; /* host order, inclusive */
    __u8 op;                /* NG_RULE_* */
    __u8 pad[3];            /* always 0 */
};

struct ng_rules {
    __u32 n; /* rules in use, <= NG_MAX_RULES */
    struct ng_rule r[NG_MAX_RULES];
};

/* One refused connect() or sendmsg(), as the ring buffer carries it. */
struct ng_denial {
    __u64 cgid;
    __u32 pid, tid; /* in the initial pid namespace */
    __u8 family;    /* 4 or 6 (6 only when not IPv4-mapped) */
    __u8 proto;     /* as in ng_rule, NG_PROTO_OTHER included */
    __u16 port;     /* host order */
    union {
        __u8 addr[16];
        __u32 addr32[4];
    };
    __u8 op; /* NG_OP_*; for NG_OP_LISTEN pid and tid are 0 */
    __u8 pad[3];
};

#endif
