/*
 * Plans: the fs and net rules of a compiled policy, and the decisions the
 * guards and Policy:check() make with them. One implementation for both,
 * so what `luaisolate check` says is what a cell does.
 */
#include <arpa/inet.h>
#include <fnmatch.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolate.h"

typedef struct fs_rule {
    iso_fs_access access;
    char *glob;   /* normalised */
    bool literal; /* no wildcard: matches the path and what is beneath */
    char *text;
} fs_rule;

typedef struct net_rule {
    iso_net_action action;
    char *path;     /* a unix: rule's normalised path; NULL for IP rules */
    bool localhost; /* 127.0.0.0/8 and ::1 */
    iso_addr addr;
    int prefix; /* bits */
    uint16_t port_lo, port_hi;
    char *spec;
    char *text;
} net_rule;

struct iso_plan {
    _Atomic int refs;
    fs_rule *fs;
    size_t n_fs, cap_fs;
    net_rule *net;
    size_t n_net, cap_net;
};

/* ---- paths ------------------------------------------------------------- */

/* Append segment [s, s+n) to out (length *len), handling . and .. */
static int push_segment(char *out, size_t size, size_t *len, const char *s,
                        size_t n)
{
    if (n == 0 || (n == 1 && s[0] == '.'))
        return 0;
    if (n == 2 && s[0] == '.' && s[1] == '.') {
        while (*len > 0 && out[*len - 1] != '/')
            (*len)--;
        if (*len > 0)
            (*len)--; /* the slash; at the root this stays empty */
        return 0;
    }
    if (*len + 1 + n + 1 > size)
        return -1;
    out[(*len)++] = '/';
    memcpy(out + *len, s, n);
    *len += n;
    return 0;
}

int iso_path_normalize(const char *in, char *out, size_t size, iso_error *err)
{
    if (!in || in[0] != '/')
        return iso_error_set(err, ISO_POLICY, "path must be absolute");
    size_t len = 0;
    for (const char *p = in; *p;) {
        size_t n = strcspn(p, "/");
        if (push_segment(out, size, &len, p, n))
            return iso_error_set(err, ISO_POLICY, "path is too long");
        p += n + (p[n] == '/');
    }
    if (len == 0)
        out[len++] = '/';
    out[len] = '\0';
    return 0;
}

/* ---- globs ------------------------------------------------------------- */

static bool has_wildcard(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '*' || s[i] == '?')
            return true;
    return false;
}

static int check_segment(const char *s, size_t n, bool *wild, iso_error *err)
{
    if (strcspn(s, "[]{}\\") < n)
        return iso_error_set(err, ISO_POLICY,
                             "'[', ']', '{', '}' and '\\' are not glob syntax "
                             "here: use * (one segment) or ** (any depth)");
    if (memmem(s, n, "**", 2) && n != 2)
        return iso_error_set(err, ISO_POLICY,
                             "** must be a whole path segment, as in /a/**/b");
    if (*wild && n == 2 && s[0] == '.' && s[1] == '.')
        return iso_error_set(err, ISO_POLICY,
                             "'..' cannot follow a wildcard segment");
    *wild = *wild || has_wildcard(s, n);
    return 0;
}

int iso_glob_check(const char *glob, iso_error *err)
{
    if (!glob || glob[0] != '/')
        return iso_error_set(err, ISO_POLICY,
                             "a path rule must be an absolute path or glob");
    if (strlen(glob) >= ISO_PATH_MAX)
        return iso_error_set(err, ISO_POLICY, "path rule is too long");
    bool wild = false;
    for (const char *p = glob; *p;) {
        size_t n = strcspn(p, "/");
        if (n && check_segment(p, n, &wild, err))
            return -1;
        p += n + (p[n] == '/');
    }
    return 0;
}

/* Does pattern segment list match path segment list? `**` spans zero or
 * more segments. Segments are NUL-free views separated by '/'. */
static bool match_from(const char *pat, const char *path)
{
    while (*pat == '/')
        pat++;
    while (*path == '/')
        path++;
    if (!*pat)
        return !*path;
    size_t pn = strcspn(pat, "/");
    if (pn == 2 && pat[0] == '*' && pat[1] == '*') {
        for (const char *p = path;; p += strcspn(p, "/")) {
            if (match_from(pat + 2, p))
                return true;
            if (!*p)
                return false;
            p++;
        }
    }
    if (!*path)
        return false;
    size_t sn = strcspn(path, "/");
    char ps[ISO_PATH_MAX], ss[ISO_PATH_MAX];
    snprintf(ps, sizeof ps, "%.*s", (int)pn, pat);
    snprintf(ss, sizeof ss, "%.*s", (int)sn, path);
    return fnmatch(ps, ss, 0) == 0 && match_from(pat + pn, path + sn);
}

static bool beneath(const char *dir, const char *path)
{
    size_t n = strlen(dir);
    if (n == 1) /* "/" */
        return true;
    return strncmp(dir, path, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static bool fs_match(const fs_rule *r, const char *path)
{
    return r->literal ? beneath(r->glob, path) : match_from(r->glob, path);
}

/* Is path (segments after the ones matched so far) a proper ancestor of
 * some path pat matches? `**` matches any depth, so anything leads on. */
static bool leads_into(const char *pat, const char *path)
{
    while (*pat == '/')
        pat++;
    while (*path == '/')
        path++;
    if (!*path)
        return *pat != '\0'; /* more to come beneath path */
    size_t pn = strcspn(pat, "/"), sn = strcspn(path, "/");
    if (pn == 0)
        return false;
    if (pn == 2 && pat[0] == '*' && pat[1] == '*')
        return true;
    char ps[ISO_PATH_MAX], ss[ISO_PATH_MAX];
    snprintf(ps, sizeof ps, "%.*s", (int)pn, pat);
    snprintf(ss, sizeof ss, "%.*s", (int)sn, path);
    return fnmatch(ps, ss, 0) == 0 && leads_into(pat + pn, path + sn);
}

static bool fs_leads_to(const fs_rule *r, const char *path)
{
    if (r->literal)
        return strcmp(r->glob, path) != 0 && beneath(path, r->glob);
    return leads_into(r->glob, path);
}

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

static int parse_net(const char *spec, net_rule *r, iso_error *err)
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
    if (parse_net(spec, &r, err))
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
    if (parse_net(s, &r, err))
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

static bool net_match(const net_rule *r, const iso_addr *a, uint16_t port)
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
    r->literal = !has_wildcard(norm, strlen(norm));
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
    if (iso_net_check_for(action, spec, err) || parse_net(spec, &r, err))
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
        if (!fs_match(r, path))
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
        if (r->access == ISO_FS_DENY && fs_match(r, path))
            return false;
        leads = leads || (r->access != ISO_FS_DENY && fs_leads_to(r, path));
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
            !net_match(r, &a, port))
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
    return has_wildcard(r->path, strlen(r->path)) ? match_from(r->path, path)
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
