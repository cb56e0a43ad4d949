/* Plans: path normalisation, glob and net validation, decisions. */
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

int main(void)
{
    RUN(test_normalize);
    RUN(test_globs);
    RUN(test_net_specs);
    RUN(test_fs_decisions);
    RUN(test_net_decisions);
    return CHECK_EXIT();
}
