/*
 * seccomp_net's rules, part of the seccomp step's filter: socket families
 * and types, listen() without a bind rule, tty injection and SIGIO
 * owners, all refused with EPERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "confine_steps.h"
#include "seccomp_cache.h"

/* These fail with EPERM in both backends, never trap: a runtime probing
 * them (getaddrinfo tries nscd's unix socket and NETLINK_ROUTE) must get
 * an error it handles, not a dead worker. Every comparison is on the low
 * 32 bits (MASKED_EQ with 0xffffffff): the kernel reads these arguments as
 * int, so garbage in the upper half must not slip past an EQ. */
#define LOW32 0xffffffffULL
#define ISO_TIOCLINUX 0x541C /* <linux/tiocl.h> needs no libc: spelt out */

static int refuse_a1(scmp_filter_ctx ctx, int nr, uint64_t value)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 1,
                            SCMP_A1(SCMP_CMP_MASKED_EQ, LOW32, value));
}

/* TIOCSTI/TIOCLINUX push keystrokes into a terminal the guest can reach
 * (the host's, through an fd a sub-interpreter shares), whatever
 * dev.tty.legacy_tiocsti says. F_SETOWN and friends aim SIGIO/SIGURG at a
 * pid of the guest's choosing (the host's). */
static int tty_and_sigio_rules(scmp_filter_ctx ctx)
{
    static const uint64_t ioctls[] = {TIOCSTI, ISO_TIOCLINUX, FIOASYNC,
                                      FIOSETOWN, SIOCSPGRP};
    static const uint64_t fcntls[] = {F_SETOWN, F_SETOWN_EX, F_SETSIG};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof ioctls / sizeof *ioctls; i++)
        rc = refuse_a1(ctx, SCMP_SYS(ioctl), ioctls[i]);
    for (size_t i = 0; rc == 0 && i < sizeof fcntls / sizeof *fcntls; i++)
        rc = refuse_a1(ctx, SCMP_SYS(fcntl), fcntls[i]);
    if (rc == 0) /* F_SETFL with O_ASYNC: signal-driven I/O */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(fcntl), 2,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, LOW32, F_SETFL),
                              SCMP_A2(SCMP_CMP_MASKED_EQ, O_ASYNC, O_ASYNC));
    return rc;
}

/* EPERM for socket() when `when` holds (if given) and the argument `arg`,
 * read through `width` (an all-ones mask: 0xffffffff, or 0xf for the socket
 * type without its flags), is in [lo, end): the range as aligned
 * power-of-two blocks, each one MASKED_EQ, since libseccomp compares an
 * argument only once per rule. */
static int refuse_range(scmp_filter_ctx ctx, const struct scmp_arg_cmp *when,
                        unsigned arg, uint64_t width, uint64_t lo, uint64_t end)
{
    int rc = 0;
    while (rc == 0 && lo < end) {
        uint64_t size = lo ? lo & -lo : width + 1; /* lo's alignment */
        while (lo + size > end)
            size >>= 1;
        struct scmp_arg_cmp c[2];
        unsigned k = 0;
        if (when)
            c[k++] = *when;
        c[k++] = (struct scmp_arg_cmp){arg, SCMP_CMP_MASKED_EQ,
                                       width & ~(size - 1), lo};
        rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM),
                                    SCMP_SYS(socket), k, c);
        lo += size;
    }
    return rc;
}

/* EPERM for every value of the argument but the sorted allowed[0..n). */
static int refuse_outside(scmp_filter_ctx ctx, const struct scmp_arg_cmp *when,
                          unsigned arg, uint64_t width, const uint64_t *allowed,
                          size_t n)
{
    uint64_t lo = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i <= n; i++) {
        uint64_t end = i < n ? allowed[i] : width + 1;
        rc = refuse_range(ctx, when, arg, width, lo, end);
        lo = end + 1;
    }
    return rc;
}

/* IPv4/IPv6 sockets: SOCK_STREAM and SOCK_DGRAM of TCP, MPTCP and UDP
 * only. SOCK_RAW and SOCK_PACKET (which the kernel turns into a packet
 * socket) pass no cgroup hook and reach every host and port; a cell thread
 * of a root host holds CAP_NET_RAW for them. Other protocols (SCTP,
 * UDP-Lite, ICMP...) are kernel surface no policy rule speaks of. */
static int inet_rules(scmp_filter_ctx ctx, uint64_t family)
{
    static const uint64_t types[] = {SOCK_STREAM, SOCK_DGRAM};
    static const uint64_t protos[] = {0, IPPROTO_TCP, IPPROTO_UDP,
                                      262 /* IPPROTO_MPTCP */};
    struct scmp_arg_cmp is = SCMP_A0(SCMP_CMP_MASKED_EQ, LOW32, family);
    int rc = refuse_outside(ctx, &is, 1, 0xf, types, 2);
    return rc ? rc : refuse_outside(ctx, &is, 2, LOW32, protos, 4);
}

/* socket(): IPv4 and IPv6 (the BPF guard and Landlock judge their use);
 * AF_UNIX only when a unix: rule names a path (pathname sockets are
 * reachable through any fs view, Landlock does not mediate connect);
 * AF_NETLINK only for NETLINK_ROUTE and only with IP net rules (name
 * resolution). Every other family -- packet, vsock, alg, xdp... -- fails.
 * socketpair() stays allowed: it reaches no one. */
static int socket_rules(scmp_filter_ctx ctx, unsigned calls)
{
    uint64_t families[4];
    size_t n = 0;
    if (calls & ISO_SECCOMP_NET_UNIX)
        families[n++] = AF_UNIX;
    families[n++] = AF_INET;
    families[n++] = AF_INET6;
    if (calls & ISO_SECCOMP_NET_NETLINK)
        families[n++] = AF_NETLINK;
    int rc = refuse_outside(ctx, NULL, 0, LOW32, families, n);
    if (rc == 0)
        rc = inet_rules(ctx, AF_INET);
    if (rc == 0)
        rc = inet_rules(ctx, AF_INET6);
    if (rc == 0 && (calls & ISO_SECCOMP_NET_NETLINK))
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 2,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, LOW32, AF_NETLINK),
                              SCMP_A2(SCMP_CMP_NE, NETLINK_ROUTE));
    /* the autobind of listen() on an unbound socket passes no bind hook */
    if (rc == 0 && !(calls & ISO_SECCOMP_NET_LISTEN))
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(listen), 0);
    return rc;
}

int iso_seccomp_net_rules(scmp_filter_ctx ctx, unsigned calls)
{
    int rc = tty_and_sigio_rules(ctx);
    return rc < 0 ? rc : socket_rules(ctx, calls);
}
