/*
 * The eBPF network guard, for real: a test cgroup under the luaisolate
 * root, listeners on 127.0.0.1 and ::1, and children that join the cgroup
 * and report what connect() and sendto() did. Skips (saying why) only where
 * the guard is unavailable: iso_netguard_open says not_implemented (no
 * build with clang and bpftool, no cgroup v2, not root, a kernel that
 * refuses the programs).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "cgroup.h"
#include "check.h"
#include "netguard.h"

static bool usable;    /* the guard opened */
static iso_cgroup cg;  /* registered with the guard */
static iso_cgroup cg2; /* never registered */
static uint64_t cgid;

/* Listening or bound sockets and their ports: TCP on 127.0.0.1 (a, b) and
 * ::1 (a, b), UDP on 127.0.0.1 (a, b) and ::1. */
static int t4_fd[2], t6_fd[2], u4_fd[2], u6_fd;
static uint16_t t4[2], t6[2], u4[2], u6;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- sockets ----------------------------------------------------------- */

/* addr as "1.2.3.4" or "::1"; the sockaddr's length. */
static socklen_t sockaddr_of(const char *addr, uint16_t port,
                             struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        inet_pton(AF_INET6, addr, &s6->sin6_addr);
        return sizeof *s6;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    inet_pton(AF_INET, addr, &s4->sin_addr);
    return sizeof *s4;
}

/* A socket bound to addr:0 (listening when TCP); *port is the one given. */
static int bound(const char *addr, int type, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_of(addr, 0, &ss);
    int fd = socket(ss.ss_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0 ||
        (type == SOCK_STREAM && listen(fd, 4096) < 0) ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    *port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static void open_listeners(void)
{
    for (int i = 0; i < 2; i++) {
        t4_fd[i] = bound("127.0.0.1", SOCK_STREAM, &t4[i]);
        t6_fd[i] = bound("::1", SOCK_STREAM, &t6[i]);
        u4_fd[i] = bound("127.0.0.1", SOCK_DGRAM, &u4[i]);
        CHECK(t4_fd[i] >= 0 && t6_fd[i] >= 0 && u4_fd[i] >= 0);
    }
    u6_fd = bound("::1", SOCK_DGRAM, &u6);
    CHECK(u6_fd >= 0);
}

/* Empty the accept queues and datagram queues between tests. */
static void drain_sockets(void)
{
    char buf[64];
    int fds[] = {t4_fd[0], t4_fd[1], t6_fd[0], t6_fd[1],
                 u4_fd[0], u4_fd[1], u6_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        for (int c; (c = accept4(fds[i], NULL, NULL, SOCK_CLOEXEC)) >= 0;)
            close(c);
        while (recv(fds[i], buf, sizeof buf, MSG_DONTWAIT) > 0)
            ;
    }
}

/* ---- probes: what a child sees ----------------------------------------- */

typedef struct probe {
    int family;  /* AF_INET or AF_INET6: the socket's */
    int type;    /* SOCK_STREAM or SOCK_DGRAM */
    bool sendto; /* else connect */
    const char *addr;
    uint16_t port;
    bool bind; /* bind() instead */
} probe;

#define TCP4(addr, port)                               \
    {                                                  \
        AF_INET, SOCK_STREAM, false, addr, port, false \
    }
#define TCP6(addr, port)                                \
    {                                                   \
        AF_INET6, SOCK_STREAM, false, addr, port, false \
    }
#define SEND4(addr, port)                            \
    {                                                \
        AF_INET, SOCK_DGRAM, true, addr, port, false \
    }
#define SEND6(addr, port)                             \
    {                                                 \
        AF_INET6, SOCK_DGRAM, true, addr, port, false \
    }
#define BIND4(type, addr, port)                \
    {                                          \
        AF_INET, type, false, addr, port, true \
    }
#define BIND6(type, addr, port)                 \
    {                                           \
        AF_INET6, type, false, addr, port, true \
    }
#define UDPCONN4(addr, port)                          \
    {                                                 \
        AF_INET, SOCK_DGRAM, false, addr, port, false \
    }

/* 0 when it went through, else the errno. */
static int try_probe(const probe *p)
{
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_of(p->addr, p->port, &ss);
    int fd = socket(p->family, p->type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int rc = p->bind ? bind(fd, (struct sockaddr *)&ss, len)
             : p->sendto
                 ? (int)sendto(fd, "x", 1, 0, (struct sockaddr *)&ss, len)
                 : connect(fd, (struct sockaddr *)&ss, len);
    int e = rc < 0 ? errno : 0;
    close(fd);
    return e;
}

static bool join(const iso_cgroup *c)
{
    char path[ISO_PATH_MAX + 32];
    iso_cgroup_procs_path(c, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    bool ok = fd >= 0 && write(fd, "0", 1) == 1;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Run the probes in a child that joins `in` first (NULL: stays where the
 * test runs); results[i] is probe i's errno. Returns the child's pid. */
static pid_t run_probes(const iso_cgroup *in, const probe *ps, int n,
                        int *results)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        int bad = -1;
        if (in && !join(in))
            _exit(write(p[1], &bad, sizeof bad) == sizeof bad ? 3 : 4);
        for (int i = 0; i < n; i++) {
            int r = try_probe(&ps[i]);
            if (write(p[1], &r, sizeof r) != sizeof r)
                _exit(4);
        }
        _exit(0);
    }
    close(p[1]);
    for (int i = 0; i < n; i++)
        if (read(p[0], &results[i], sizeof results[i]) != sizeof results[i])
            results[i] = -2;
    close(p[0]);
    waitpid(pid, NULL, 0);
    drain_sockets();
    return pid;
}

/* Each probe's result is expected[i] (0 or an errno). */
static void expect(const iso_cgroup *in, const probe *ps, int n,
                   const int *expected, const char *what)
{
    int results[32];
    run_probes(in, ps, n, results);
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(results[i], expected[i]);
        if (results[i] != expected[i])
            fprintf(stderr, "  %s: probe %d (%s %s:%u)\n", what, i,
                    ps[i].sendto ? "sendto" : "connect", ps[i].addr,
                    ps[i].port);
    }
}

/* ---- rules ------------------------------------------------------------- */

static iso_net_rule rule(bool deny, int proto, const char *addr, int prefix,
                         uint16_t lo, uint16_t hi)
{
    iso_net_rule r = {.deny = deny,
                      .proto = proto,
                      .prefix = prefix,
                      .port_lo = lo,
                      .port_hi = hi};
    r.family = strchr(addr, ':') ? 6 : 4;
    inet_pton(r.family == 6 ? AF_INET6 : AF_INET, addr, r.addr);
    return r;
}

#define ALLOW(...) rule(false, __VA_ARGS__)
#define DENY(...) rule(true, __VA_ARGS__)
#define SET(...)                                                               \
    do {                                                                       \
        iso_net_rule set_rules_[] = {__VA_ARGS__};                             \
        iso_error set_err_ = {0};                                              \
        CHECK_EQ_INT(iso_netguard_set(                                         \
                         cgid, set_rules_,                                     \
                         sizeof set_rules_ / sizeof(iso_net_rule), &set_err_), \
                     0);                                                       \
    } while (0)

static iso_net_rule bind_rule(int proto, const char *addr, int prefix,
                              uint16_t lo, uint16_t hi)
{
    iso_net_rule r = rule(false, proto, addr, prefix, lo, hi);
    r.bind = true;
    return r;
}

/* A port nothing listens on now (bound and released). */
static uint16_t free_port(void)
{
    uint16_t port = 0;
    int fd = bound("127.0.0.1", SOCK_STREAM, &port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* ---- the programs attached to the root --------------------------------- */

#define N_HOOKS 7
static const enum bpf_attach_type hooks[N_HOOKS] = {
    BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET6_CONNECT, BPF_CGROUP_UDP4_SENDMSG,
    BPF_CGROUP_UDP6_SENDMSG,  BPF_CGROUP_INET4_BIND,    BPF_CGROUP_INET6_BIND,
    BPF_CGROUP_INET_INGRESS};

static bool has_id(const uint32_t *ids, int n, uint32_t id)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* Program ids this process holds through a prog or link fd (fdinfo). */
static int held_prog_ids(uint32_t *ids, int cap)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fdinfo");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/self/fdinfo/%s", e->d_name);
        FILE *f = fopen(path, "r");
        unsigned id;
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "prog_id: %u", &id) == 1 && n < cap &&
                !has_id(ids, n, id))
                ids[n++] = id;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

/* How many of ids[0..n) are attached to the root at hook h. */
static int attached_of(enum bpf_attach_type h, const uint32_t *ids, int n)
{
    char root[ISO_PATH_MAX];
    uint32_t att[256], cnt = 256, flags = 0;
    if (iso_cgroup_root(root, sizeof root, NULL) < 0)
        return -1;
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = bpf_prog_query(fd, h, 0, &flags, att, &cnt);
    close(fd);
    if (rc < 0)
        return -1;
    int found = 0;
    for (uint32_t i = 0; i < cnt; i++)
        found += has_id(ids, n, att[i]);
    return found;
}

/* ---- tests ------------------------------------------------------------- */

static void test_open(void)
{
    iso_error err = {0};
    if (iso_netguard_open(&err) < 0) {
        CHECK_EQ_INT(err.kind, ISO_NOT_IMPLEMENTED);
        CHECK(iso_netguard_why() != NULL);
        CHECK(!iso_netguard_available());
        /* the failure is remembered, not retried */
        CHECK_EQ_INT(iso_netguard_open(NULL), -1);
        printf("SKIP: %s\n", err.message);
        return;
    }
    CHECK(iso_netguard_available());
    CHECK(iso_netguard_why() == NULL);
    CHECK_EQ_INT(iso_netguard_open(&err), 0); /* idempotent */
    uint32_t ids[64];
    int n = held_prog_ids(ids, 64);
    for (int i = 0; i < N_HOOKS; i++)
        CHECK_EQ_INT(attached_of(hooks[i], ids, n), 1);
    CHECK_EQ_INT(iso_cgroup_create("netguard", -1, -1, &cg, &err), 0);
    CHECK_EQ_INT(iso_cgroup_create("netguard", -1, -1, &cg2, &err), 0);
    CHECK_EQ_INT(iso_cgroup_id_of(cg.path, &cgid, &err), 0);
    open_listeners();
    usable = cg.path[0] && cg2.path[0] && cgid != 0 && check_failed == 0;
}

static void test_cgroup_id(void)
{
    if (!usable)
        return;
    struct stat st;
    uint64_t id = 0, id2 = 0;
    iso_error err = {0};
    CHECK(stat(cg.path, &st) == 0);
    CHECK_EQ_INT(cgid, st.st_ino);
    CHECK_EQ_INT(iso_cgroup_id_of(cg2.path, &id2, &err), 0);
    CHECK(id2 != cgid);
    CHECK_EQ_INT(iso_cgroup_id_of("/tmp", &id, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    char procs[ISO_PATH_MAX + 32];
    iso_cgroup_procs_path(&cg, procs, sizeof procs);
    CHECK_EQ_INT(iso_cgroup_id_of(procs, &id, &err), -1);
    CHECK_EQ_INT(iso_cgroup_id_of("/nonexistent/cg", &id, &err), -1);
}

static void test_bad_rules(void)
{
    iso_error err = {0};
    iso_net_rule many[ISO_NETGUARD_MAX_RULES + 1];
    for (int i = 0; i <= ISO_NETGUARD_MAX_RULES; i++)
        many[i] = ALLOW(0, "127.0.0.1", 32, 1, 1);
    iso_net_rule bad[] = {
        ALLOW(0, "127.0.0.1", 33, 1, 1),            /* prefix */
        ALLOW(0, "::1", 129, 1, 1),                 /* prefix */
        ALLOW(IPPROTO_ICMP, "127.0.0.1", 32, 1, 1), /* proto */
        ALLOW(0, "127.0.0.1", 32, 2, 1),            /* ports */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(iso_netguard_set(1234, &bad[i], 1, &err), -1);
        CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    }
    iso_net_rule fam = ALLOW(0, "127.0.0.1", 32, 1, 1);
    fam.family = 5;
    CHECK_EQ_INT(iso_netguard_set(1234, &fam, 1, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    CHECK_EQ_INT(iso_netguard_set(1234, many, ISO_NETGUARD_MAX_RULES + 1, &err),
                 -1);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    CHECK_HAS_STR(err.message, "32");
    CHECK_EQ_INT(iso_netguard_set(0, many, 1, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
}

/* bind rules become bind guard rules, deny rules refuse both, unix:
 * rules are not the guard's. */
static void test_from_plan_bind_unix(void)
{
    iso_error err = {0};
    iso_plan *p = iso_plan_new();
    CHECK_EQ_INT(
        iso_plan_add_net(p, ISO_NET_BIND, "127.0.0.1:8080", NULL, &err), 0);
    CHECK_EQ_INT(
        iso_plan_add_net(p, ISO_NET_CONNECT, "unix:/run/x.sock", NULL, &err),
        0);
    CHECK_EQ_INT(iso_plan_add_net(p, ISO_NET_DENY, "unix:/run/y", NULL, &err),
                 0);
    CHECK_EQ_INT(iso_plan_add_net(p, ISO_NET_DENY, "10.0.0.0/8:*", NULL, &err),
                 0);
    iso_net_rule r[ISO_NETGUARD_MAX_RULES];
    size_t n = 99;
    CHECK_EQ_INT(iso_netguard_rules_from_plan(p, r, 32, &n, &err), 0);
    CHECK_EQ_INT(n, 2);
    CHECK(!r[0].deny && r[0].bind && r[0].port_lo == 8080 &&
          r[0].addr[0] == 127 && r[0].prefix == 32);
    CHECK(r[1].deny && !r[1].bind && r[1].prefix == 8 && r[1].addr[0] == 10);
    iso_plan_unref(p);
}

static void test_from_plan(void)
{
    iso_error err = {0};
    iso_plan *p = iso_plan_new();
    CHECK_EQ_INT(
        iso_plan_add_net(p, ISO_NET_CONNECT, "10.1.0.0/16:443", NULL, &err), 0);
    CHECK_EQ_INT(iso_plan_add_net(p, ISO_NET_DENY, "localhost:22", NULL, &err),
                 0);
    CHECK_EQ_INT(iso_plan_add_net(p, ISO_NET_CONNECT, "[2001:db8::1]:8000-8100",
                                  NULL, &err),
                 0);
    iso_net_rule r[ISO_NETGUARD_MAX_RULES];
    size_t n = 99;
    CHECK_EQ_INT(iso_netguard_rules_from_plan(p, r, 32, &n, &err), 0);
    CHECK_EQ_INT(n, 4);
    CHECK(!r[0].deny && r[0].family == 4 && r[0].prefix == 16 &&
          r[0].proto == 0 && r[0].addr[0] == 10 && r[0].addr[1] == 1 &&
          r[0].port_lo == 443 && r[0].port_hi == 443);
    CHECK(r[1].deny && r[1].family == 4 && r[1].prefix == 8 &&
          r[1].addr[0] == 127 && r[1].port_lo == 22 && r[1].port_hi == 22);
    CHECK(r[2].deny && r[2].family == 6 && r[2].prefix == 128 &&
          r[2].addr[15] == 1 && r[2].addr[0] == 0 && r[2].port_lo == 22);
    CHECK(!r[3].deny && r[3].family == 6 && r[3].prefix == 128 &&
          r[3].addr[0] == 0x20 && r[3].port_lo == 8000 && r[3].port_hi == 8100);
    /* too small a buffer, too many rules, no plan */
    CHECK_EQ_INT(iso_netguard_rules_from_plan(p, r, 3, &n, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    for (int i = 0; i < 15; i++)
        iso_plan_add_net(p, ISO_NET_CONNECT, "localhost:*", NULL, &err);
    CHECK_EQ_INT(iso_netguard_rules_from_plan(p, r, 32, &n, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    CHECK_HAS_STR(err.message, "at most 32");
    CHECK_EQ_INT(iso_netguard_rules_from_plan(NULL, r, 32, &n, &err), 0);
    CHECK_EQ_INT(n, 0);
    iso_plan_unref(p);
}

/* TCP on both families: the allowed port goes through, the other gets
 * EPERM -- in the cgroup only. */
static void test_tcp(void)
{
    if (!usable)
        return;
    SET(ALLOW(IPPROTO_TCP, "127.0.0.1", 32, t4[0], t4[0]),
        ALLOW(0, "::1", 128, t6[0], t6[0]));
    probe ps[] = {TCP4("127.0.0.1", t4[0]), TCP4("127.0.0.1", t4[1]),
                  TCP6("::1", t6[0]), TCP6("::1", t6[1])};
    expect(&cg, ps, 4, (int[]){0, EPERM, 0, EPERM}, "tcp in the cell");
    expect(NULL, ps, 4, (int[]){0, 0, 0, 0}, "tcp outside");
    expect(&cg2, ps, 4, (int[]){0, 0, 0, 0}, "tcp in another cgroup");
}

/* ::ffff:127.0.0.1 from a v6 socket is judged by the IPv4 rules only. */
static void test_mapped(void)
{
    if (!usable)
        return;
    probe ps[] = {TCP6("::ffff:127.0.0.1", t4[0]),
                  TCP6("::ffff:127.0.0.1", t4[1]), TCP4("127.0.0.1", t4[1]),
                  TCP6("::1", t6[0])};
    SET(ALLOW(0, "127.0.0.1", 32, t4[0], t4[0]));
    expect(&cg, ps, 4, (int[]){0, EPERM, EPERM, EPERM}, "v4 allow");
    SET(ALLOW(0, "::", 0, 0, 65535), ALLOW(0, "127.0.0.0", 8, 0, 65535),
        DENY(0, "127.0.0.1", 32, t4[0], t4[0]));
    expect(&cg, ps, 4, (int[]){EPERM, 0, 0, 0}, "v4 deny");
    SET(ALLOW(0, "::", 0, 0, 65535));
    expect(&cg, ps, 4, (int[]){EPERM, EPERM, EPERM, 0}, "v6 rules only");
}

/* Unconnected sendto goes through sendmsg4/6; the protocol counts. */
static void test_udp(void)
{
    if (!usable)
        return;
    SET(ALLOW(IPPROTO_UDP, "127.0.0.1", 32, u4[0], u4[0]),
        ALLOW(IPPROTO_TCP, "127.0.0.1", 32, u4[1], u4[1]));
    probe ps[] = {SEND4("127.0.0.1", u4[0]),
                  SEND4("127.0.0.1", u4[1]),
                  SEND6("::1", u6),
                  SEND6("::ffff:127.0.0.1", u4[0]),
                  SEND6("::ffff:127.0.0.1", u4[1]),
                  UDPCONN4("127.0.0.1", u4[1])};
    expect(&cg, ps, 6, (int[]){0, EPERM, EPERM, 0, EPERM, EPERM}, "udp");
    SET(ALLOW(IPPROTO_UDP, "::1", 128, u6, u6));
    expect(&cg, ps, 6, (int[]){EPERM, EPERM, 0, EPERM, EPERM, EPERM}, "udp v6");
    expect(NULL, ps, 6, (int[]){0, 0, 0, 0, 0, 0}, "udp outside");
}

static void test_deny_beats_allow(void)
{
    if (!usable)
        return;
    probe ps[] = {TCP4("127.0.0.1", t4[0]), TCP4("127.0.0.1", t4[1])};
    SET(ALLOW(0, "127.0.0.0", 8, 0, 65535),
        DENY(0, "127.0.0.1", 32, t4[1], t4[1]));
    expect(&cg, ps, 2, (int[]){0, EPERM}, "allow then deny");
    SET(DENY(0, "127.0.0.1", 32, t4[1], t4[1]),
        ALLOW(0, "127.0.0.0", 8, 0, 65535));
    expect(&cg, ps, 2, (int[]){0, EPERM}, "deny then allow");
    SET(ALLOW(IPPROTO_TCP, "127.0.0.1", 32, t4[0], t4[0]),
        DENY(0, "127.0.0.0", 8, 0, 65535));
    expect(&cg, ps, 2, (int[]){EPERM, EPERM}, "wide deny");
}

/* n == 0 denies everything; forget makes the cgroup nobody's. */
static void test_empty_and_forget(void)
{
    if (!usable)
        return;
    iso_error err = {0};
    probe ps[] = {TCP4("127.0.0.1", t4[0]), TCP6("::1", t6[0]),
                  SEND4("127.0.0.1", u4[0])};
    CHECK_EQ_INT(iso_netguard_set(cgid, NULL, 0, &err), 0);
    expect(&cg, ps, 3, (int[]){EPERM, EPERM, EPERM}, "no rules");
    iso_netguard_forget(cgid);
    expect(&cg, ps, 3, (int[]){0, 0, 0}, "forgotten");
    iso_netguard_forget(cgid); /* idempotent */
    SET(ALLOW(0, "127.0.0.1", 32, t4[0], t4[0]));
    expect(&cg, ps, 3, (int[]){0, EPERM, EPERM}, "registered again");
}

typedef struct seen {
    iso_net_denial d[16];
    int n;
} seen;

static void collect(const iso_net_denial *d, void *ud)
{
    seen *s = ud;
    if (s->n < 16)
        s->d[s->n++] = *d;
}

static void check_denial(const iso_net_denial *d, pid_t pid, int family,
                         int proto, const char *addr, uint16_t port,
                         bool sendmsg)
{
    uint8_t want[16] = {0};
    inet_pton(family == 6 ? AF_INET6 : AF_INET, addr, want);
    CHECK_EQ_INT(d->cgroup_id, cgid);
    CHECK_EQ_INT(d->pid, pid);
    CHECK_EQ_INT(d->tid, pid);
    CHECK_EQ_INT(d->family, family);
    CHECK_EQ_INT(d->proto, proto);
    CHECK(memcmp(d->addr, want, 16) == 0);
    CHECK_EQ_INT(d->port, port);
    CHECK_EQ_INT(d->sendmsg, sendmsg);
}

static void test_denials(void)
{
    if (!usable)
        return;
    while (iso_netguard_drain(NULL, NULL) > 0)
        ;
    SET(ALLOW(0, "127.0.0.1", 32, t4[0], t4[0]));
    probe ps[] = {TCP4("127.0.0.1", t4[1]), TCP6("::1", t6[1]),
                  SEND4("127.0.0.1", u4[1]), TCP6("::ffff:127.0.0.1", t4[1]),
                  TCP4("127.0.0.1", t4[0])};
    int res[5];
    pid_t pid = run_probes(&cg, ps, 5, res);
    CHECK(res[0] == EPERM && res[1] == EPERM && res[2] == EPERM &&
          res[3] == EPERM && res[4] == 0);
    seen s = {.n = 0};
    CHECK_EQ_INT(iso_netguard_drain(collect, &s), 4);
    CHECK_EQ_INT(s.n, 4);
    if (s.n < 4)
        return;
    check_denial(&s.d[0], pid, 4, IPPROTO_TCP, "127.0.0.1", t4[1], false);
    check_denial(&s.d[1], pid, 6, IPPROTO_TCP, "::1", t6[1], false);
    check_denial(&s.d[2], pid, 4, IPPROTO_UDP, "127.0.0.1", u4[1], true);
    check_denial(&s.d[3], pid, 4, IPPROTO_TCP, "127.0.0.1", t4[1], false);
    CHECK_EQ_INT(iso_netguard_drain(collect, &s), 0);
}

/* bind4/bind6: only bind rules allow a bind, by address, port and
 * protocol; connect rules do not, nor bind rules a connect; a deny rule
 * refuses both. */
static void test_bind(void)
{
    if (!usable)
        return;
    uint16_t P = free_port(), Q = free_port();
    probe ps[] = {BIND4(SOCK_STREAM, "127.0.0.1", P),
                  BIND4(SOCK_STREAM, "127.0.0.1", Q),
                  BIND4(SOCK_STREAM, "0.0.0.0", P),
                  BIND4(SOCK_DGRAM, "127.0.0.1", P),
                  BIND6(SOCK_STREAM, "::ffff:127.0.0.1", P),
                  BIND6(SOCK_STREAM, "::1", P),
                  BIND4(SOCK_DGRAM, "0.0.0.0", 0),
                  TCP4("127.0.0.1", t4[0])};
    SET(bind_rule(IPPROTO_TCP, "127.0.0.1", 32, P, P));
    expect(&cg, ps, 8, (int[]){0, EPERM, EPERM, EPERM, 0, EPERM, EPERM, EPERM},
           "a TCP bind rule");
    SET(bind_rule(0, "127.0.0.1", 32, P, P), ALLOW(0, "127.0.0.1", 32, Q, Q),
        ALLOW(0, "127.0.0.1", 32, t4[0], t4[0]));
    expect(&cg, ps, 8, (int[]){0, EPERM, EPERM, 0, 0, EPERM, EPERM, 0},
           "bind and connect rules");
    SET(bind_rule(0, "0.0.0.0", 0, 0, 65535), DENY(0, "127.0.0.1", 32, P, P));
    expect(&cg, ps, 8, (int[]){EPERM, 0, 0, EPERM, EPERM, EPERM, 0, EPERM},
           "deny beats a bind rule");
    expect(NULL, ps, 7, (int[]){0, 0, 0, 0, 0, 0, 0}, "bind outside");
    seen s = {.n = 0};
    SET(bind_rule(IPPROTO_TCP, "127.0.0.1", 32, P, P));
    while (iso_netguard_drain(NULL, NULL) > 0)
        ;
    probe one[] = {BIND4(SOCK_DGRAM, "127.0.0.1", Q)};
    expect(&cg, one, 1, (int[]){EPERM}, "one bind");
    CHECK_EQ_INT(iso_netguard_drain(collect, &s), 1);
    CHECK(s.n == 1 && s.d[0].bind && !s.d[0].sendmsg && s.d[0].port == Q &&
          s.d[0].proto == IPPROTO_UDP);
    CHECK_EQ_STR(iso_net_denial_action(&s.d[0]), "bind");
}

/* 0 when a connect to 127.0.0.1:port completes within 300 ms, else
 * ETIMEDOUT (nothing answered) or the connect's errno. */
static int connect_within(uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_of("127.0.0.1", port, &ss);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = connect(fd, (struct sockaddr *)&ss, len), e = 0;
    if (rc < 0 && errno != EINPROGRESS)
        e = errno;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (rc < 0 && e == 0) {
        socklen_t el = sizeof e;
        if (poll(&p, 1, 300) != 1)
            e = ETIMEDOUT;
        else
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
    }
    close(fd);
    return e;
}

/* In cg: an autobound listener (listen() with no bind) and one on the
 * allowed port P; their ports go to `out`, then it waits for `go`. */
static void listeners_child(uint16_t P, int out, int go)
{
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_of("127.0.0.1", P, &ss);
    uint16_t ports[2] = {0, 0};
    bool joined = join(&cg); /* first: a socket keeps its creator's cgroup */
    int a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!joined || listen(a, 4) < 0 ||
        bind(b, (struct sockaddr *)&ss, len) < 0 || listen(b, 4) < 0)
        _exit(write(out, ports, sizeof ports) == sizeof ports ? 3 : 4);
    len = sizeof ss;
    getsockname(a, (struct sockaddr *)&ss, &len);
    ports[0] = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    ports[1] = P;
    char c;
    if (write(out, ports, sizeof ports) != sizeof ports || read(go, &c, 1) != 1)
        _exit(4);
    _exit(0);
}

/* listen()'s autobind passes no bind hook: the ingress program keeps a
 * listener no bind rule allows from ever getting a connection. */
static void test_listen_autobind(void)
{
    if (!usable)
        return;
    uint16_t P = free_port(), ports[2] = {0, 0};
    SET(bind_rule(IPPROTO_TCP, "127.0.0.1", 32, P, P));
    while (iso_netguard_drain(NULL, NULL) > 0)
        ;
    int up[2], down[2];
    CHECK(pipe(up) == 0 && pipe(down) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(up[0]), close(down[1]);
        listeners_child(P, up[1], down[0]);
    }
    close(up[1]), close(down[0]);
    CHECK(read(up[0], ports, sizeof ports) == sizeof ports);
    CHECK(ports[0] != 0 && ports[0] != P);
    CHECK_EQ_INT(connect_within(ports[0]), ETIMEDOUT); /* SYN dropped */
    CHECK_EQ_INT(connect_within(ports[1]), 0);
    CHECK(write(down[1], "g", 1) == 1);
    close(up[0]), close(down[1]);
    waitpid(pid, NULL, 0);
    seen s = {.n = 0};
    CHECK(iso_netguard_drain(collect, &s) >= 1);
    CHECK(s.n >= 1 && s.d[0].listen && s.d[0].port == ports[0] &&
          s.d[0].pid == 0 && s.d[0].cgroup_id == cgid);
    CHECK_EQ_STR(iso_net_denial_action(&s.d[0]), "listen");
}

/* Thread cell: in a child process moved into cg2, one thread goes on to
 * the threaded cgroup cg2/cell. */
typedef struct thread_probe {
    const char *threads; /* cg2/cell/cgroup.threads */
    int result, bind_result;
    pid_t tid;
} thread_probe;

static void *probe_in_thread_cgroup(void *arg)
{
    thread_probe *tp = arg;
    char tid[32];
    tp->tid = gettid();
    snprintf(tid, sizeof tid, "%d", (int)tp->tid);
    int fd = open(tp->threads, O_WRONLY | O_CLOEXEC);
    bool moved = fd >= 0 && write(fd, tid, strlen(tid)) > 0;
    if (fd >= 0)
        close(fd);
    probe p = TCP4("127.0.0.1", t4[1]);
    probe b = BIND4(SOCK_DGRAM, "127.0.0.1", 0);
    tp->result = moved ? try_probe(&p) : -1;
    tp->bind_result = moved ? try_probe(&b) : -1;
    return NULL;
}

/* Child: results = {the cell thread's connect, the main thread's, the
 * cell thread's tid, the cell thread's bind, the main thread's}. */
static void thread_cell_child(const char *threads, int out)
{
    thread_probe tp = {.threads = threads, .result = -1};
    pthread_t th;
    if (!join(&cg2) ||
        pthread_create(&th, NULL, probe_in_thread_cgroup, &tp) != 0)
        _exit(3);
    pthread_join(th, NULL);
    probe p = TCP4("127.0.0.1", t4[1]);
    probe b = BIND4(SOCK_DGRAM, "127.0.0.1", 0);
    int res[5] = {tp.result, try_probe(&p), (int)tp.tid, tp.bind_result,
                  try_probe(&b)};
    _exit(write(out, res, sizeof res) == sizeof res ? 0 : 4);
}

/* The guard keys on the calling thread's cgroup: a cell thread in a
 * threaded cgroup is refused where its own process's other thread is
 * not. */
static void test_thread_cell(void)
{
    if (!usable)
        return;
    char cell[ISO_PATH_MAX + 16], path[ISO_PATH_MAX + 64];
    uint64_t id = 0;
    iso_error err = {0};
    snprintf(cell, sizeof cell, "%s/cell", cg2.path);
    snprintf(path, sizeof path, "%s/cgroup.type", cell);
    CHECK(mkdir(cell, 0755) == 0);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    CHECK(fd >= 0 && write(fd, "threaded", 8) == 8);
    if (fd >= 0)
        close(fd);
    CHECK_EQ_INT(iso_cgroup_id_of(cell, &id, &err), 0);
    iso_net_rule allow = ALLOW(0, "127.0.0.1", 32, t4[0], t4[0]);
    CHECK_EQ_INT(iso_netguard_set(id, &allow, 1, &err), 0);
    while (iso_netguard_drain(NULL, NULL) > 0)
        ;
    snprintf(path, sizeof path, "%s/cgroup.threads", cell);
    int p[2], res[5] = {-2, -2, 0, -2, -2};
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0)
        thread_cell_child(path, p[1]);
    close(p[1]);
    CHECK(read(p[0], res, sizeof res) == sizeof res);
    close(p[0]);
    waitpid(pid, NULL, 0);
    drain_sockets();
    CHECK_EQ_INT(res[0], EPERM); /* the cell thread */
    CHECK_EQ_INT(res[1], 0);     /* its process's main thread, in cg2 */
    CHECK_EQ_INT(res[3], EPERM); /* bind4 keys on the thread's cgroup too */
    CHECK_EQ_INT(res[4], 0);
    seen s = {.n = 0};
    CHECK_EQ_INT(iso_netguard_drain(collect, &s), 2);
    CHECK(s.n == 2 && s.d[0].cgroup_id == id && s.d[0].pid == (uint32_t)pid &&
          s.d[0].tid == (uint32_t)res[2] && s.d[0].tid != s.d[0].pid);
    CHECK(s.d[1].bind && s.d[1].tid == (uint32_t)res[2]);
    iso_netguard_forget(id);
    iso_cgroup gone = {.pids = false};
    CHECK(snprintf(gone.path, sizeof gone.path, "%s", cell) < ISO_PATH_MAX);
    CHECK_EQ_INT(iso_cgroup_remove(&gone, &err), 0); /* retries EBUSY */
}

/* A replacement takes effect for the next connect. */
static void test_reload(void)
{
    if (!usable)
        return;
    probe ps[] = {TCP4("127.0.0.1", t4[0]), TCP4("127.0.0.1", t4[1])};
    for (int round = 0; round < 3; round++) {
        double t0 = now_ms();
        SET(ALLOW(0, "127.0.0.1", 32, t4[0], t4[0]));
        double t1 = now_ms();
        expect(&cg, ps, 2, (int[]){0, EPERM}, "set A");
        SET(ALLOW(0, "127.0.0.1", 32, t4[1], t4[1]));
        expect(&cg, ps, 2, (int[]){EPERM, 0}, "set B");
        if (round == 0)
            printf("a reload takes %.1f ms\n", t1 - t0);
    }
}

/* Child of test_reload_atomic: UDP connect (a hook call, no packet) to T,
 * U and W until told to stop; counts[] = T refused, U allowed, W allowed,
 * W refused, probes. */
static void hammer(int ready, int stop, uint16_t T, uint16_t U, uint16_t W)
{
    long counts[5] = {0};
    struct sockaddr_storage st, su, sw;
    socklen_t len = sockaddr_of("127.0.0.1", T, &st);
    sockaddr_of("127.0.0.1", U, &su);
    sockaddr_of("127.0.0.1", W, &sw);
    /* join first: which programs run follows the socket's cgroup */
    if (!join(&cg))
        _exit(3);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || write(ready, "r", 1) != 1)
        _exit(3);
    fcntl(stop, F_SETFL, O_NONBLOCK);
    for (char c;; counts[4]++) {
        counts[0] += connect(fd, (struct sockaddr *)&st, len) != 0;
        counts[1] += connect(fd, (struct sockaddr *)&su, len) == 0;
        bool w = connect(fd, (struct sockaddr *)&sw, len) == 0;
        counts[w ? 2 : 3]++;
        if ((counts[4] & 63) == 0 && read(stop, &c, 1) != -1)
            break; /* a byte, or EOF: the parent is gone */
    }
    _exit(write(ready, counts, sizeof counts) == sizeof counts ? 0 : 4);
}

/* Two sets with the same two rules in opposite order, plus one that tells
 * them apart: A = [allow 127/8, deny U, allow W], B = [deny U, allow 127/8,
 * deny W]. Whole sets always allow T and refuse U. A connect that read
 * slot 0 and slot 1 from different sets would see two allows (U allowed)
 * or two denies (T refused). W shows both sets were seen. */
static void test_reload_atomic(void)
{
    if (!usable)
        return;
    uint16_t T = 9, U = 10, W = 11; /* UDP connect needs no listener */
    iso_net_rule all = ALLOW(0, "127.0.0.0", 8, 0, 65535);
    iso_net_rule deny_u = DENY(0, "127.0.0.1", 32, U, U);
    iso_net_rule a[] = {all, deny_u, ALLOW(0, "127.0.0.1", 32, W, W)};
    iso_net_rule b[] = {deny_u, all, DENY(0, "127.0.0.1", 32, W, W)};
    iso_error err = {0};
    CHECK_EQ_INT(iso_netguard_set(cgid, a, 3, &err), 0);
    int up[2], down[2];
    CHECK(pipe(up) == 0 && pipe(down) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(up[0]), close(down[1]);
        hammer(up[1], down[0], T, U, W);
    }
    close(up[1]), close(down[0]);
    char c;
    CHECK(read(up[0], &c, 1) == 1);
    int flips = 0, failed = 0;
    double t0 = now_ms();
    /* at least 60 flips and 300 ms: a flip may take no time at all, and the
     * prober needs a while on a loaded machine to make its 1000 probes */
    for (; flips < 60 || now_ms() - t0 < 300; flips++)
        failed += iso_netguard_set(cgid, flips % 2 ? a : b, 3, &err) != 0;
    double ms = now_ms() - t0;
    CHECK(write(down[1], "s", 1) == 1);
    long counts[5] = {0};
    CHECK(read(up[0], counts, sizeof counts) == sizeof counts);
    close(up[0]), close(down[1]);
    waitpid(pid, NULL, 0);
    printf("%d flips in %.0f ms under %ld probes x 3: T refused %ld, U "
           "allowed %ld, W allowed %ld / refused %ld\n",
           flips, ms, counts[4], counts[0], counts[1], counts[2], counts[3]);
    CHECK_EQ_INT(failed, 0);
    CHECK(counts[4] > 1000);
    CHECK_EQ_INT(counts[0], 0);
    CHECK_EQ_INT(counts[1], 0);
    CHECK(counts[2] > 0 && counts[3] > 0);
    /* the ring overflowed meanwhile: a drain is bounded and empties it */
    int drained = 0, total = 0;
    while ((drained = iso_netguard_drain(NULL, NULL)) > 0)
        total += drained;
    CHECK_EQ_INT(drained, 0);
    CHECK(total > 0);
}

static void *open_in_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)iso_netguard_open(NULL);
}

/* close detaches everything of ours; concurrent opens load once. */
static void test_close_reopen(void)
{
    if (!usable)
        return;
    iso_error err = {0};
    uint32_t ids[64];
    int n = held_prog_ids(ids, 64);
    CHECK(n >= N_HOOKS);
    iso_netguard_close();
    iso_netguard_close(); /* idempotent */
    CHECK(!iso_netguard_available());
    for (int i = 0; i < N_HOOKS; i++)
        CHECK_EQ_INT(attached_of(hooks[i], ids, n), 0);
    uint32_t none[64];
    CHECK_EQ_INT(held_prog_ids(none, 64), 0);
    probe ps[] = {TCP4("127.0.0.1", t4[1])};
    expect(&cg, ps, 1, (int[]){0}, "after close");
    CHECK_EQ_INT(iso_netguard_set(cgid, NULL, 0, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_CLOSED);
    CHECK_EQ_INT(iso_netguard_drain(NULL, NULL), 0);
    iso_netguard_forget(cgid); /* a no-op while closed */

    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, open_in_thread, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        CHECK_EQ_INT((intptr_t)rc, 0);
    }
    n = held_prog_ids(ids, 64);
    for (int i = 0; i < N_HOOKS; i++)
        CHECK_EQ_INT(attached_of(hooks[i], ids, n), 1);
    /* the maps are new: the cgroup starts unguarded */
    expect(&cg, ps, 1, (int[]){0}, "reopened");
    SET(ALLOW(0, "127.0.0.1", 32, t4[0], t4[0]));
    expect(&cg, ps, 1, (int[]){EPERM}, "reopened and set");
}

static void test_cleanup(void)
{
    iso_error err = {0};
    if (cgid)
        iso_netguard_forget(cgid);
    iso_netguard_close();
    CHECK(!iso_netguard_available());
    if (!cg.path[0])
        return;
    CHECK_EQ_INT(iso_cgroup_remove(&cg, &err), 0);
    CHECK_EQ_INT(iso_cgroup_remove(&cg2, &err), 0);
    struct stat st;
    CHECK(stat(cg.path, &st) < 0 && errno == ENOENT);
    CHECK(stat(cg2.path, &st) < 0 && errno == ENOENT);
}

int main(void)
{
    alarm(120); /* a hung child fails the run instead of stalling it */
    double t0 = now_ms();
    RUN(test_open);
    RUN(test_bad_rules);
    RUN(test_from_plan);
    RUN(test_from_plan_bind_unix);
    RUN(test_cgroup_id);
    RUN(test_tcp);
    RUN(test_mapped);
    RUN(test_udp);
    RUN(test_bind);
    RUN(test_listen_autobind);
    RUN(test_deny_beats_allow);
    RUN(test_empty_and_forget);
    RUN(test_denials);
    RUN(test_thread_cell);
    RUN(test_reload);
    RUN(test_reload_atomic);
    RUN(test_close_reopen);
    RUN(test_cleanup);
    printf("%.0f ms\n", now_ms() - t0);
    return CHECK_EXIT();
}
