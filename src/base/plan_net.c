/*
 * A plan's net side: net rule specs ("host:port", "cidr:lo-hi",
 * "unix:/path"), endpoints and addresses, and the matcher its net rules
 * decide with (plan.c holds the plan).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_internal.h"

/* ---- net specs --------------------------------------------------------- */

static int parse_port(const char *s, uint16_t *lo, uint16_t *hi, iso_error *err)
{
    if (strcmp(s, "*") == 0) {
        *lo = 0, *hi = 65535;
        return 0;
    }
    char *end;
    unsigned long a = strtoul(s, &end, 10), b = a;
    if (end != s && *end == '-' && end[1] >= '0' && end[1] <= '9')
        b = strtoul(end + 1, &end, 10);
    if (end == s || *end || s[0] < '0' || s[0] > '9' || a > 65535 ||
        b > 65535 || a > b)
        return iso_error_set(err, ISO_POLICY,
                             "port must be a number 0-65535, a range like "
                             "8000-8100, or *");
    *lo = (uint16_t)a, *hi = (uint16_t)b;
    return 0;
}

static int parse_prefix(const char *s, int max, int *prefix, iso_error *err)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || s[0] < '0' || s[0] > '9' || v > max)
        return iso_error_set(err, ISO_POLICY, "CIDR prefix must be 0-%d", max);
    *prefix = (int)v;
    return 0;
}

/* Host part: a.b.c.d, a.b.c.d/n, [v6], [v6]/n, [v6/n], localhost. */
static int parse_host(char *host, net_rule *r, iso_error *err)
{
    if (strcmp(host, "localhost") == 0) {
        r->localhost = true;
        return 0;
    }
    char *slash = NULL;
    bool v6 = host[0] == '[';
    if (v6) {
        char *close = strchr(host, ']');
        if (!close || (close[1] && close[1] != '/'))
            return iso_error_set(err, ISO_POLICY,
                                 "IPv6 addresses go in brackets: [::1]:443");
        *close = '\0';
        slash = close[1] ? close + 1 : strchr(host, '/');
        host++;
    } else {
        slash = strchr(host, '/');
    }
    if (slash)
        *slash++ = '\0';
    r->addr.family = v6 ? 6 : 4;
    r->prefix = v6 ? 128 : 32;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, r->addr.bytes) != 1)
        return iso_error_set(err, ISO_POLICY,
                             "host must be an IPv4 address, a bracketed IPv6 "
                             "address, localhost, or a CIDR prefix");
    return slash ? parse_prefix(slash, r->prefix, &r->prefix, err) : 0;
}

#define UNIX_PREFIX "unix:"

/* "unix:/path": an absolute path or glob (as fs rules), kept normalised. */
static int parse_unix(const char *spec, net_rule *r, iso_error *err)
{
    const char *path = spec + strlen(UNIX_PREFIX);
    char norm[ISO_PATH_MAX];
    memset(r, 0, sizeof *r);
    if (iso_glob_check(path, err) ||
        iso_path_normalize(path, norm, sizeof norm, err))
        return -1;
    /* sun_path holds 108 bytes: a longer path can never be connected to */
    if (strlen(norm) >= 108)
        return iso_error_set(err, ISO_POLICY,
                             "a unix socket path has at most 107 bytes");
    r->path = strdup(norm);
    return r->path ? 0 : iso_error_set(err, ISO_MEMORY, "out of memory");
}

int iso_net_rule_parse(const char *spec, net_rule *r, iso_error *err)
{
    char buf[128];
    if (spec && strncmp(spec, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0)
        return parse_unix(spec, r, err);
    const char *colon = spec ? strrchr(spec, ':') : NULL;
    if (!colon || strlen(spec) >= sizeof buf)
        return iso_error_set(err, ISO_POLICY,
                             "expected \"host:port\", e.g. \"127.0.0.1:6379\"");
    snprintf(buf, sizeof buf, "%.*s", (int)(colon - spec), spec);
    memset(r, 0, sizeof *r);
    if (parse_host(buf, r, err))
        return -1;
    return parse_port(colon + 1, &r->port_lo, &r->port_hi, err);
}

int iso_net_check_for(iso_net_action action, const char *spec, iso_error *err)
{
    net_rule r;
    if (iso_net_rule_parse(spec, &r, err))
        return -1;
    bool unix_path = r.path != NULL;
    free(r.path);
    if (unix_path && action == ISO_NET_BIND)
        return iso_error_set(err, ISO_POLICY,
                             "bind takes \"host:port\" (e.g. "
                             "\"127.0.0.1:8080\"); cells cannot listen on "
                             "unix sockets");
    return 0;
}

int iso_net_check(const char *spec, iso_error *err)
{
    return iso_net_check_for(ISO_NET_CONNECT, spec, err);
}

int iso_endpoint_parse(const char *s, iso_addr *addr, uint16_t *port,
                       iso_error *err)
{
    net_rule r;
    if (iso_net_rule_parse(s, &r, err))
        return -1;
    if (r.path) {
        free(r.path);
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "a target here is \"host:port\", not a unix "
                             "socket");
    }
    if (r.port_lo != r.port_hi ||
        (!r.localhost && r.prefix != (r.addr.family == 4 ? 32 : 128)))
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "a target is one address and one port");
    if (r.localhost) {
        r.addr.family = 4;
        memcpy(r.addr.bytes, (uint8_t[]){127, 0, 0, 1}, 4);
    }
    *addr = r.addr;
    *port = r.port_lo;
    return 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address. */
iso_addr iso_addr_unmap(const iso_addr *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};
    iso_addr out = *a;
    if (a->family == 6 && memcmp(a->bytes, mapped, 12) == 0) {
        out.family = 4;
        memmove(out.bytes, a->bytes + 12, 4);
    }
    return out;
}

bool iso_net_rule_match(const net_rule *r, const iso_addr *a, uint16_t port)
{
    if (port < r->port_lo || port > r->port_hi)
        return false;
    if (r->localhost) {
        static const uint8_t loop6[16] = {[15] = 1};
        return a->family == 4 ? a->bytes[0] == 127
                              : memcmp(a->bytes, loop6, 16) == 0;
    }
    return a->family == r->addr.family &&
           prefix_match(a->bytes, r->addr.bytes, r->prefix);
}
