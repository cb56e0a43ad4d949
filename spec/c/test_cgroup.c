/*
 * cgroup v2 directories, under the real mount: create, join, kill, remove,
 * count. Skips (saying why) only where there is no writable cgroup v2.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "check.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static bool usable; /* a writable cgroup v2 exists */

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_mount(void)
{
    char mount[ISO_PATH_MAX], root[ISO_PATH_MAX];
    iso_error err = {0};
    if (iso_cgroup_mount(mount, sizeof mount, &err) < 0) {
        CHECK_EQ_INT(err.kind, ISO_NOT_IMPLEMENTED);
        printf("skip: %s\n", err.message);
        return;
    }
    struct statfs fs;
    CHECK(statfs(mount, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC);
    if (iso_cgroup_root(root, sizeof root, &err) < 0) {
        CHECK_EQ_INT(err.kind, ISO_NOT_IMPLEMENTED);
        printf("skip: %s\n", err.message);
        return;
    }
    CHECK(strncmp(root, mount, strlen(mount)) == 0);
    CHECK_HAS_STR(root, "/luaisolate");
    CHECK(is_dir(root));
    usable = true;
    printf("cgroup v2 at %s, root %s\n", mount, root);
}

static void test_bad_names(void)
{
    iso_cgroup cg;
    iso_error err = {0};
    CHECK_EQ_INT(iso_cgroup_create("../escape", -1, -1, &cg, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    CHECK_EQ_INT(iso_cgroup_create("", -1, -1, &cg, &err), -1);
    CHECK_EQ_STR(cg.path, "");
}

/* Limits are written only where the controller exists; which ones do is
 * recorded. Two cells with one name get distinct directories. */
static void test_create_limits(void)
{
    if (!usable)
        return;
    iso_cgroup a, b;
    iso_error err = {0};
    size_t before = 0, during = 0, after = 0;
    CHECK_EQ_INT(iso_cgroup_count(&before, &err), 0);
    CHECK_EQ_INT(iso_cgroup_create("spec", 64 << 20, 16, &a, &err), 0);
    CHECK_EQ_INT(iso_cgroup_create("spec", -1, -1, &b, &err), 0);
    CHECK(strcmp(a.path, b.path) != 0);
    CHECK_EQ_INT(iso_cgroup_count(&during, &err), 0);
    CHECK_EQ_INT(during, before + 2);
    printf("controllers: pids %s, memory %s\n", a.pids ? "yes" : "no",
           a.memory ? "yes" : "no");
    char path[ISO_PATH_MAX + 32], buf[64] = "";
    snprintf(path, sizeof path, "%s/pids.max", a.path);
    int fd = open(path, O_RDONLY);
    CHECK_EQ_INT(fd >= 0, a.pids);
    if (fd >= 0 && read(fd, buf, sizeof buf - 1) > 0)
        CHECK_EQ_STR(buf, "16\n");
    if (fd >= 0)
        close(fd);
    CHECK_EQ_INT(iso_cgroup_remove(&a, &err), 0);
    CHECK_EQ_INT(iso_cgroup_remove(&b, &err), 0);
    CHECK_EQ_INT(iso_cgroup_count(&after, &err), 0);
    CHECK_EQ_INT(after, before);
}

/* Child: join, fork a grandchild (also in the cgroup), report, wait. */
static void member(const char *procs, int ready)
{
    int fd = open(procs, O_WRONLY);
    if (fd < 0 || write(fd, "0", 1) != 1)
        _exit(3);
    close(fd);
    if (fork() == 0) {
        if (write(ready, "g", 1) != 1)
            _exit(4);
        for (;;)
            pause();
    }
    if (write(ready, "c", 1) != 1)
        _exit(4);
    for (;;)
        pause();
}

static int count_procs(const iso_cgroup *cg)
{
    char path[ISO_PATH_MAX + 32];
    iso_cgroup_procs_path(cg, path, sizeof path);
    FILE *f = fopen(path, "r");
    int n = 0;
    long pid;
    while (f && fscanf(f, "%ld", &pid) == 1)
        n++;
    if (f)
        fclose(f);
    return n;
}

static void test_join_kill_remove(void)
{
    if (!usable)
        return;
    iso_cgroup cg;
    iso_error err = {0};
    size_t before = 0, after = 0;
    char procs[ISO_PATH_MAX + 32], seen[2];
    int p[2];
    CHECK_EQ_INT(iso_cgroup_count(&before, &err), 0);
    CHECK_EQ_INT(iso_cgroup_create("spec", -1, -1, &cg, &err), 0);
    iso_cgroup_procs_path(&cg, procs, sizeof procs);
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0)
        member(procs, p[1]);
    close(p[1]);
    CHECK(read(p[0], seen, 1) == 1 && read(p[0], seen + 1, 1) == 1);
    close(p[0]);
    CHECK_EQ_INT(count_procs(&cg), 2);
    CHECK_EQ_INT(iso_cgroup_kill(&cg, &err), 0);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* the grandchild was ours to reap (we are a subreaper) */
    CHECK(waitpid(-1, &st, 0) > 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    CHECK_EQ_INT(iso_cgroup_remove(&cg, &err), 0);
    CHECK(!is_dir(cg.path));
    CHECK_EQ_INT(iso_cgroup_count(&after, &err), 0);
    CHECK_EQ_INT(after, before);
    /* idempotent: a second kill and remove are no-ops */
    CHECK_EQ_INT(iso_cgroup_kill(&cg, &err), 0);
    CHECK_EQ_INT(iso_cgroup_remove(&cg, &err), 0);
    iso_cgroup none = {.path = ""};
    CHECK_EQ_INT(iso_cgroup_kill(&none, &err), 0);
    CHECK_EQ_INT(iso_cgroup_remove(&none, &err), 0);
}

/* An empty cgroup: kill is a no-op, remove works at once. */
static void test_kill_empty(void)
{
    if (!usable)
        return;
    iso_cgroup cg;
    iso_error err = {0};
    CHECK_EQ_INT(iso_cgroup_create("empty", -1, -1, &cg, &err), 0);
    CHECK_EQ_INT(iso_cgroup_kill(&cg, &err), 0);
    CHECK_EQ_INT(iso_cgroup_remove(&cg, &err), 0);
    CHECK(!is_dir(cg.path));
}

/* After the host's process cells end, a pool refill makes no cells dir
 * again (kind closed, nothing left behind); a spawn's create does, and
 * refills work again after it. */
static void test_pooled_after_end(void)
{
    if (!usable)
        return;
    iso_cgroup cg;
    iso_error err = {0};
    char dir[ISO_PATH_MAX];
    CHECK_EQ_INT(iso_cgroup_cells_dir(dir, sizeof dir, &err), 0);
    iso_cgroup_cells_end();
    CHECK(!is_dir(dir));
    CHECK_EQ_INT(iso_cgroup_create_pooled("pool", &cg, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_CLOSED);
    CHECK_EQ_STR(cg.path, "");
    CHECK(!is_dir(dir));
    iso_error_clear(&err);
    CHECK_EQ_INT(iso_cgroup_create("cell", -1, -1, &cg, &err), 0);
    CHECK(is_dir(dir) && is_dir(cg.path));
    iso_cgroup pooled;
    CHECK_EQ_INT(iso_cgroup_create_pooled("pool", &pooled, &err), 0);
    CHECK(is_dir(pooled.path));
    CHECK_EQ_INT(iso_cgroup_remove(&pooled, &err), 0);
    CHECK_EQ_INT(iso_cgroup_remove(&cg, &err), 0);
    iso_cgroup_cells_end();
    CHECK(!is_dir(dir));
}

int main(void)
{
    alarm(120); /* a hung child fails the run instead of stalling it */
    /* orphaned grandchildren come back to us, not to init */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    RUN(test_mount);
    RUN(test_bad_names);
    RUN(test_create_limits);
    RUN(test_join_kill_remove);
    RUN(test_kill_empty);
    RUN(test_pooled_after_end);
    return CHECK_EXIT();
}
