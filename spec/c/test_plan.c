/* Plans: path normalisation, glob and net validation, decisions. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "isolate.h"

static void test_normalize(void)
{
    char out[ISO_PATH_MAX];
    CHECK_EQ_INT(iso_path_normalize("/a/b/../c//./d/", out, sizeof out, NULL),
                 0);
    CHECK_EQ_STR(out, "/a/c/d");
    CHECK_EQ_INT(iso_path_normalize("/../..", out, sizeof out, NULL), 0);
    CHECK_EQ_STR(out, "/");
    CHECK_EQ_INT(iso_path_normalize("relative", out, sizeof out, NULL), -1);
    CHECK_EQ_INT(iso_path_normalize("/abc", out, 4, NULL), -1); /* too long */
}

static void test_globs(void)
{
    iso_error err = {0};
    CHECK_EQ_INT(iso_glob_check("/srv/**/x/*.txt", &err), 0);
    CHECK_EQ_INT(iso_glob_check("srv", &err), -1);
    CHECK_EQ_INT(err.kind, ISO_POLICY);
    CHECK_EQ_INT(iso_glob_check("/a/b**", &err), -1);
    CHECK_EQ_INT(iso_glob_check("/a/[ab]", &err), -1);
    CHECK_EQ_INT(iso_glob_check("/a/*/../b", &err), -1);
    CHECK_EQ_INT(iso_glob_check("/a/b/../c", &err), 0);
    iso_error_clear(&err);
}

static void test_net_specs(void)
{
    const char *good[] = {"127.0.0.1:80",   "10.0.0.0/8:*", "[::1]:443",
                          "[fd00::]/8:1-2", "[fd00::/8]:3", "localhost:22",
                          "0.0.0.0/0:65535"};
    const char *bad[] = {"127.0.0.1",   "host:80",       "1.2.3.4:70000",
                         "1.2.3.4:9-8", "10.0.0.0/33:1", "::1:80",
                         "[::1]:x",     "1.2.3.4:-1",    "[::1]/129:1"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK_EQ_INT(iso_net_check(good[i], NULL), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ_INT(iso_net_check(bad[i], NULL), -1);
}

static bool fs(iso_plan *p, iso_fs_access op, const char *path, int *rule)
{
    return iso_plan_check_fs(p, op, path, rule);
}

static void test_fs_decisions(void)
{
    iso_plan *p = iso_plan_new();
    CHECK_EQ_INT(iso_plan_add_fs(p, ISO_FS_READ, "/data", "r", NULL), 0);
    CHECK_EQ_INT(iso_plan_add_fs(p, ISO_FS_DENY, "/data/private/**", "d", NULL),
                 0);
    CHECK_EQ_INT(iso_plan_add_fs(p, ISO_FS_ALLOW, "/tmp/*.txt", "a", NULL), 0);
    int rule;
    CHECK(fs(p, ISO_FS_READ, "/data", &rule) && rule == 0);
    CHECK(fs(p, ISO_FS_READ, "/data/x/y", &rule) && rule == 0);
    CHECK(!fs(p, ISO_FS_READ, "/data-x", &rule) && rule == -1);
    CHECK(!fs(p, ISO_FS_WRITE, "/data/x", &rule) && rule == -1);
    CHECK(!fs(p, ISO_FS_READ, "/data/private", &rule) && rule == 1);
    CHECK(!fs(p, ISO_FS_READ, "/data/private/k/l", &rule) && rule == 1);
    CHECK(fs(p, ISO_FS_WRITE, "/tmp/a.txt", &rule) && rule == 2);
    CHECK(!fs(p, ISO_FS_READ, "/tmp/d/a.txt", &rule));
    CHECK_EQ_STR(iso_plan_fs_text(p, 1), "d");
    CHECK_EQ_STR(iso_plan_fs_text(p, -1), "default deny");
    iso_plan_unref(p);
}

/* stat of a directory on the way to a grant: proper ancestors of what a
 * rule matches, wildcards included, never past a deny rule. */
static void test_fs_on_the_way(void)
{
    iso_plan *p = iso_plan_new();
    CHECK_EQ_INT(iso_plan_add_fs(p, ISO_FS_READ, "/srv/data", "r", NULL), 0);
    CHECK_EQ_INT(iso_plan_add_fs(p, ISO_FS_WRITE, "/home/*/out/**", "w", NULL),
                 0);
    CHECK_EQ_INT(iso_plan_add_fs(p, ISO_FS_DENY, "/home/eve/**", "d", NULL), 0);
    CHECK_EQ_INT(iso_plan_add_fs(p, ISO_FS_READ, "/opt/**/lib", "r2", NULL), 0);
    CHECK(iso_plan_fs_on_the_way(p, "/"));
    CHECK(iso_plan_fs_on_the_way(p, "/srv"));
    CHECK(!iso_plan_fs_on_the_way(p, "/srv/data"));   /* the grant itself */
    CHECK(!iso_plan_fs_on_the_way(p, "/srv/data/x")); /* beneath it */
    CHECK(!iso_plan_fs_on_the_way(p, "/srv/other"));
    CHECK(!iso_plan_fs_on_the_way(p, "/sr"));
    CHECK(!iso_plan_fs_on_the_way(p, "/etc"));
    CHECK(iso_plan_fs_on_the_way(p, "/home"));
    CHECK(iso_plan_fs_on_the_way(p, "/home/bob"));
    CHECK(!iso_plan_fs_on_the_way(p, "/home/eve")); /* a deny rule: no */
    CHECK(!iso_plan_fs_on_the_way(p, "/home/bob/in"));
    CHECK(iso_plan_fs_on_the_way(p, "/home/bob/out")); /* ** may be empty */
    CHECK(iso_plan_fs_on_the_way(p, "/opt/a/b/c"));
    iso_plan_unref(p);
    CHECK(!iso_plan_fs_on_the_way(NULL, "/"));
}

static bool net(iso_plan *p, const char *target, int *rule)
{
    iso_addr a;
    uint16_t port;
    CHECK_EQ_INT(iso_endpoint_parse(target, &a, &port, NULL), 0);
    return iso_plan_check_net(p, &a, port, rule);
}

static void test_net_decisions(void)
{
    iso_plan *p = iso_plan_new();
    iso_plan_add_net(p, ISO_NET_CONNECT, "10.0.0.0/8:8000-8100", NULL, NULL);
    iso_plan_add_net(p, ISO_NET_DENY, "10.1.0.0/16:*", NULL, NULL);
    iso_plan_add_net(p, ISO_NET_CONNECT, "[2001:db8::]/32:443", NULL, NULL);
    int rule;
    CHECK(net(p, "10.2.3.4:8050", &rule) && rule == 0);
    CHECK(!net(p, "10.2.3.4:8101", &rule) && rule == -1);
    CHECK(!net(p, "10.1.3.4:8050", &rule) && rule == 1);
    CHECK(net(p, "[::ffff:10.2.3.4]:8000", &rule) && rule == 0);
    CHECK(net(p, "[2001:db8:1::5]:443", &rule) && rule == 2);
    CHECK(!net(p, "[2001:db9::5]:443", &rule));
    iso_addr a;
    uint16_t port;
    CHECK_EQ_INT(iso_endpoint_parse("10.0.0.0/8:80", &a, &port, NULL), -1);
    CHECK_EQ_INT(iso_endpoint_parse("1.2.3.4:1-2", &a, &port, NULL), -1);
    iso_plan_unref(p);
}

/* unix: specs: absolute, normalised, at most 107 bytes, never for bind. */
static void test_unix_specs(void)
{
    iso_error err = {0};
    char longest[200] = "unix:/";
    memset(longest + 6, 'a', 106); /* "/" + 106 = 107 bytes */
    CHECK_EQ_INT(iso_net_check("unix:/run/a.sock", NULL), 0);
    CHECK_EQ_INT(iso_net_check("unix:/run/*.sock", NULL), 0);
    CHECK_EQ_INT(iso_net_check(longest, NULL), 0);
    longest[6 + 106] = 'a';
    CHECK_EQ_INT(iso_net_check(longest, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_POLICY);
    CHECK_EQ_INT(iso_net_check("unix:run/a", NULL), -1);
    CHECK_EQ_INT(iso_net_check("unix:", NULL), -1);
    CHECK_EQ_INT(iso_net_check_for(ISO_NET_BIND, "unix:/run/a", &err), -1);
    CHECK_EQ_INT(err.kind, ISO_POLICY);
    CHECK_EQ_INT(iso_net_check_for(ISO_NET_BIND, "127.0.0.1:80", NULL), 0);
    CHECK_EQ_INT(iso_net_check_for(ISO_NET_DENY, "unix:/run/a", NULL), 0);
    iso_plan *p = iso_plan_new();
    CHECK_EQ_INT(iso_plan_add_net(p, ISO_NET_BIND, "unix:/x", NULL, &err), -1);
    CHECK_EQ_INT(iso_plan_net_count(p), 0);
    iso_addr a;
    uint16_t port;
    CHECK_EQ_INT(iso_endpoint_parse("unix:/run/a", &a, &port, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    iso_plan_unref(p);
    iso_error_clear(&err);
}

static bool bind_ok(iso_plan *p, const char *target, int *rule)
{
    iso_addr a;
    uint16_t port;
    CHECK_EQ_INT(iso_endpoint_parse(target, &a, &port, NULL), 0);
    return iso_plan_check_bind(p, &a, port, rule);
}

/* connect and bind rules answer only their own call; deny answers both;
 * unix: rules answer only unix paths. */
static void test_bind_and_unix_decisions(void)
{
    iso_plan *p = iso_plan_new();
    iso_plan_add_net(p, ISO_NET_BIND, "127.0.0.1:8080", NULL, NULL);
    iso_plan_add_net(p, ISO_NET_CONNECT, "127.0.0.1:9", NULL, NULL);
    iso_plan_add_net(p, ISO_NET_DENY, "0.0.0.0/0:8081", NULL, NULL);
    iso_plan_add_net(p, ISO_NET_BIND, "0.0.0.0/0:8000-8100", NULL, NULL);
    iso_plan_add_net(p, ISO_NET_CONNECT, "unix:/run/a/../b.sock", NULL, NULL);
    iso_plan_add_net(p, ISO_NET_CONNECT, "unix:/srv/*/s", NULL, NULL);
    iso_plan_add_net(p, ISO_NET_DENY, "unix:/srv/x/s", NULL, NULL);
    int rule;
    CHECK(bind_ok(p, "127.0.0.1:8080", &rule) && rule == 0);
    CHECK(!net(p, "127.0.0.1:8080", &rule) && rule == -1);
    CHECK(!bind_ok(p, "127.0.0.1:9", &rule) && rule == -1);
    CHECK(net(p, "127.0.0.1:9", &rule) && rule == 1);
    CHECK(!bind_ok(p, "1.2.3.4:8081", &rule) && rule == 2);
    CHECK(!net(p, "1.2.3.4:8081", &rule) && rule == 2);
    CHECK(bind_ok(p, "[::ffff:1.2.3.4]:8050", &rule) && rule == 3);
    CHECK(!bind_ok(p, "[::1]:8050", &rule));
    CHECK(iso_plan_check_unix(p, "/run/b.sock", &rule) && rule == 4);
    CHECK(!iso_plan_check_unix(p, "/run/a/../b.sock", &rule)); /* normalised */
    CHECK(!iso_plan_check_unix(p, "/run/b.sock2", &rule) && rule == -1);
    CHECK(iso_plan_check_unix(p, "/srv/y/s", &rule) && rule == 5);
    CHECK(!iso_plan_check_unix(p, "/srv/x/s", &rule) && rule == 6);
    CHECK(!iso_plan_check_unix(p, "/srv/y/z/s", &rule));
    /* an IP decision never matches a unix: rule */
    CHECK(!net(p, "0.0.0.0:0", &rule) && rule == -1);
    iso_plan_net r;
    CHECK_EQ_INT(iso_plan_net_rule(p, 4, &r, NULL), 0);
    CHECK(r.unix_path && r.action == ISO_NET_CONNECT);
    CHECK_EQ_INT(iso_plan_net_rule(p, 0, &r, NULL), 0);
    CHECK(!r.unix_path && r.action == ISO_NET_BIND);
    iso_plan_unref(p);
}

/* What seccomp and Landlock get from a plan: kinds and per-kind ports. */
static void test_kinds_and_ports(void)
{
    iso_plan *p = iso_plan_new();
    iso_plan_net_kinds k = iso_plan_net_kinds_of(p);
    CHECK(!k.ip && !k.bind && !k.unix_path);
    iso_plan_add_net(p, ISO_NET_DENY, "10.0.0.0/8:*", NULL, NULL);
    iso_plan_add_net(p, ISO_NET_DENY, "unix:/a", NULL, NULL);
    k = iso_plan_net_kinds_of(p);
    CHECK(!k.ip && !k.bind && !k.unix_path); /* deny rules allow nothing */
    iso_plan_add_net(p, ISO_NET_CONNECT, "unix:/b", NULL, NULL);
    k = iso_plan_net_kinds_of(p);
    CHECK(!k.ip && !k.bind && k.unix_path);
    iso_plan_add_net(p, ISO_NET_BIND, "127.0.0.1:8080-8081", NULL, NULL);
    iso_plan_add_net(p, ISO_NET_CONNECT, "127.0.0.1:443", NULL, NULL);
    k = iso_plan_net_kinds_of(p);
    CHECK(k.ip && k.bind && k.unix_path);
    uint16_t *ports = NULL;
    size_t n = 0;
    bool any = true;
    CHECK_EQ_INT(iso_plan_connect_ports(p, &ports, &n, &any), 0);
    CHECK(n == 1 && ports[0] == 443 && !any);
    free(ports);
    CHECK_EQ_INT(iso_plan_bind_ports(p, &ports, &n, &any), 0);
    CHECK(n == 2 && ports[0] == 8080 && ports[1] == 8081 && !any);
    free(ports);
    iso_plan_add_net(p, ISO_NET_BIND, "0.0.0.0:*", NULL, NULL);
    CHECK_EQ_INT(iso_plan_bind_ports(p, &ports, &n, &any), 0);
    CHECK(any);
    free(ports);
    CHECK(iso_plan_net_kinds_of(NULL).ip == false);
    iso_plan_unref(p);
}

/* The value form a worker rebuilds its plan from keeps every kind. */
static void test_value_round_trip(void)
{
    iso_plan *p = iso_plan_new();
    iso_plan_add_net(p, ISO_NET_BIND, "127.0.0.1:8080", "b", NULL);
    iso_plan_add_net(p, ISO_NET_CONNECT, "unix:/run/s", "u", NULL);
    iso_plan_add_net(p, ISO_NET_DENY, "unix:/run/t", "d", NULL);
    iso_value fs = {0}, netv = {0}; /* NIL */
    CHECK_EQ_INT(iso_plan_to_value(p, &fs, &netv), 0);
    iso_error err = {0};
    iso_plan *q = iso_plan_from_value(&fs, &netv, &err);
    CHECK(q != NULL);
    int rule;
    CHECK(bind_ok(q, "127.0.0.1:8080", &rule) && rule == 0);
    CHECK(iso_plan_check_unix(q, "/run/s", &rule) && rule == 1);
    CHECK(!iso_plan_check_unix(q, "/run/t", &rule) && rule == 2);
    CHECK_EQ_STR(iso_plan_net_text(q, 2), "d");
    iso_value_free(&fs);
    iso_value_free(&netv);
    iso_plan_unref(q);
    iso_plan_unref(p);
}

int main(void)
{
    RUN(test_normalize);
    RUN(test_globs);
    RUN(test_net_specs);
    RUN(test_fs_decisions);
    RUN(test_fs_on_the_way);
    RUN(test_net_decisions);
    RUN(test_unix_specs);
    RUN(test_bind_and_unix_decisions);
    RUN(test_kinds_and_ports);
    RUN(test_value_round_trip);
    return CHECK_EXIT();
}
