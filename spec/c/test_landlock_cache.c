/* The Landlock ruleset cache of cell threads (landlock_cache.h): threads
 * confined with the same grants share one built ruleset and each gets
 * exactly its grants; a policy directory replaced between two
 * confinements is served a ruleset built on the new one; different grants
 * or ports never share one; the cached host fd never stays in a confined
 * thread's table; the oldest make room, their fds closed. Each case runs in a
 * child: confinement cannot be undone. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "confine.h"
#include "landlock.h"
#include "landlock_cache.h"

typedef struct probe {
    iso_fs_grant grant;
    const uint16_t *bind;
    size_t n_bind;
    const char *in, *out;     /* files to open for reading */
    const char *write_to;     /* opened for writing, or NULL */
    pthread_barrier_t *start; /* NULL: start at once */
    char result[200];
} probe;

/* 0 or the errno of opening path with flags. */
static int open_errno(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

/* Open fds above stdio in the calling thread's table. */
static int fds_above_stdio(void)
{
    int n = 0;
    for (int fd = 3; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

static void *confined(void *arg)
{
    probe *p = arg;
    iso_confine_config c;
    memset(&c, 0, sizeof c);
    c.mem_bytes = c.cpu_ms = c.open_files = c.output_bytes = c.processes = -1;
    c.death_note_fd = -1;
    c.in_thread = true;
    c.grants = &p->grant;
    c.n_grants = 1;
    c.bind_ports = p->bind;
    c.n_bind_ports = p->n_bind;
    c.cgroup_missing = "test: no cgroup";
    if (p->start)
        pthread_barrier_wait(p->start);
    iso_error err = {0};
    if (iso_confine_thread(&c, NULL, &err) < 0) {
        snprintf(p->result, sizeof p->result, "rc=-1 %s",
                 iso_kind_name(err.kind));
        return NULL;
    }
    snprintf(p->result, sizeof p->result, "in=%d out=%d write=%d fds=%d",
             open_errno(p->in, O_RDONLY), open_errno(p->out, O_RDONLY),
             p->write_to ? open_errno(p->write_to, O_WRONLY) : -1,
             fds_above_stdio());
    return NULL;
}

static void run_thread(probe *p)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, confined, p) == 0);
    pthread_join(t, NULL);
}

static void say_stats(int out)
{
    iso_landlock_cache_stats st;
    iso_landlock_cache_stats_get(&st);
    say(out, "entries=%zu hits=%llu misses=%llu stale=%llu\n", st.entries,
        (unsigned long long)st.hits, (unsigned long long)st.misses,
        (unsigned long long)st.stale);
}

/* fn(out, arg) in a child; what it wrote into buf. */
static void in_child(void (*fn)(int, void *), void *arg, char *buf, size_t n)
{
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        fn(pipefd[1], arg);
        _exit(0);
    }
    close(pipefd[1]);
    size_t len = 0;
    ssize_t got;
    while (len + 1 < n && (got = read(pipefd[0], buf + len, n - 1 - len)) > 0)
        len += (size_t)got;
    buf[len] = '\0';
    close(pipefd[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
          WEXITSTATUS(status) == 0);
}

static char dir_a[] = "/tmp/iso-llcache-a-XXXXXX";
static char dir_b[] = "/tmp/iso-llcache-b-XXXXXX";
static char file_a[64], file_b[64];

static void write_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0 && write(fd, "x", 1) == 1);
    close(fd);
}

/* Two threads, released together, confined with the same grant. */
static void same_grants(int out, void *arg)
{
    (void)arg;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    probe p[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        p[i] = (probe){.grant = {dir_a, true, false, false, false},
                       .in = file_a,
                       .out = file_b,
                       .write_to = file_a,
                       .start = &start};
        pthread_create(&t[i], NULL, confined, &p[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        say(out, "%s\n", p[i].result);
    }
    say_stats(out);
}

static void test_same_grants_share(void)
{
    char buf[600];
    in_child(same_grants, NULL, buf, sizeof buf);
    /* each reads its grant only, may not write it, holds no host fd */
    const char *want = "in=0 out=13 write=13 fds=0\n"
                       "in=0 out=13 write=13 fds=0\n"
                       "entries=1 hits=1 misses=1 stale=0\n";
    CHECK_EQ_STR(buf, want);
}

static void replaced(int out, void *arg)
{
    (void)arg;
    char gone[80], inside[100];
    snprintf(gone, sizeof gone, "%s/later", dir_b);
    snprintf(inside, sizeof inside, "%s/f", gone);
    CHECK(mkdir(gone, 0755) == 0);
    write_file(inside);
    probe p = {.grant = {gone, true, false, false, false},
               .in = inside,
               .out = file_a};
    run_thread(&p);
    say(out, "first: %s\n", p.result);
    /* removed and made again: another inode, the old rule holds the old */
    CHECK(unlink(inside) == 0 && rmdir(gone) == 0 && mkdir(gone, 0755) == 0);
    write_file(inside);
    run_thread(&p);
    say(out, "again: %s\n", p.result);
    /* removed: nothing there, then made: the rule must now exist */
    CHECK(unlink(inside) == 0 && rmdir(gone) == 0);
    run_thread(&p);
    say(out, "absent: %s\n", p.result);
    CHECK(mkdir(gone, 0755) == 0);
    write_file(inside);
    run_thread(&p);
    say(out, "made: %s\n", p.result);
    run_thread(&p);
    say(out, "same: %s\n", p.result);
    unlink(inside);
    rmdir(gone);
    say_stats(out);
}

static void test_replaced_directory(void)
{
    char buf[800];
    in_child(replaced, NULL, buf, sizeof buf);
    CHECK_HAS_STR(buf, "first: in=0 out=13 write=-1 fds=0\n");
    CHECK_HAS_STR(buf, "again: in=0 out=13 write=-1 fds=0\n");
    CHECK_HAS_STR(buf, "absent: in=2 out=13 write=-1 fds=0\n");
    CHECK_HAS_STR(buf, "made: in=0 out=13 write=-1 fds=0\n");
    CHECK_HAS_STR(buf, "same: in=0 out=13 write=-1 fds=0\n");
    /* each change a stale entry built again in place; the last one a hit */
    CHECK_HAS_STR(buf, "entries=1 hits=1 misses=4 stale=3\n");
}

static void different(int out, void *arg)
{
    (void)arg;
    static const uint16_t port = 8080;
    probe p[4] = {
        {.grant = {dir_a, true, false, false, false},
         .in = file_a,
         .out = file_b,
         .write_to = file_a},
        {.grant = {dir_b, true, false, false, false},
         .in = file_b,
         .out = file_a,
         .write_to = file_b},
        {.grant = {dir_a, true, true, false, false},
         .in = file_a,
         .out = file_b,
         .write_to = file_a},
        {.grant = {dir_a, true, false, false, false},
         .bind = &port,
         .n_bind = 1,
         .in = file_a,
         .out = file_b,
         .write_to = file_a},
    };
    for (int i = 0; i < 4; i++) {
        run_thread(&p[i]);
        say(out, "%d: %s\n", i, p[i].result);
    }
    say_stats(out);
}

static void test_different_grants_apart(void)
{
    char buf[800];
    in_child(different, NULL, buf, sizeof buf);
    CHECK_HAS_STR(buf, "0: in=0 out=13 write=13 fds=0\n");
    CHECK_HAS_STR(buf, "1: in=0 out=13 write=13 fds=0\n");
    CHECK_HAS_STR(buf, "2: in=0 out=13 write=0 fds=0\n");
    CHECK_HAS_STR(buf, "3: in=0 out=13 write=13 fds=0\n");
    CHECK_HAS_STR(buf, "entries=4 hits=0 misses=4 stale=0\n");
}

/* Landlock ruleset fds in the process's (the host's) table. */
static int host_rulesets(void)
{
    int n = 0;
    char link[64], target[64];
    for (int fd = 3; fd < 1024; fd++) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len > 0) {
            target[len] = '\0';
            n += strstr(target, "landlock") != NULL;
        }
    }
    return n;
}

/* More distinct configs (bind ports) than the cache holds: the oldest
 * make room, their fds closed; one of them again is built again. */
static void evicted(int out, void *arg)
{
    (void)arg;
    uint16_t ports[40];
    probe p = {.grant = {dir_a, true, false, false, false},
               .in = file_a,
               .out = file_b,
               .n_bind = 1};
    int bad = 0;
    for (int i = 0; i < 40; i++) {
        ports[i] = (uint16_t)(9000 + i);
        p.bind = &ports[i];
        run_thread(&p);
        bad += strcmp(p.result, "in=0 out=13 write=-1 fds=0") != 0;
    }
    say(out, "bad=%d host_rulesets=%d\n", bad, host_rulesets());
    p.bind = &ports[0];
    run_thread(&p);
    say(out, "first again: %s\n", p.result);
    say_stats(out);
}

static void test_eviction(void)
{
    char buf[600];
    in_child(evicted, NULL, buf, sizeof buf);
    CHECK_HAS_STR(buf, "bad=0 host_rulesets=32\n");
    CHECK_HAS_STR(buf, "first again: in=0 out=13 write=-1 fds=0\n");
    CHECK_HAS_STR(buf, "entries=32 hits=0 misses=41 stale=0\n");
}

int main(void)
{
    alarm(60);
    int abi = iso_landlock_abi();
    if (abi < 1) {
        printf("skip: no Landlock (%d): there is no ruleset to cache\n", abi);
        return 0;
    }
    CHECK(mkdtemp(dir_a) && mkdtemp(dir_b));
    snprintf(file_a, sizeof file_a, "%s/in", dir_a);
    snprintf(file_b, sizeof file_b, "%s/in", dir_b);
    write_file(file_a);
    write_file(file_b);
    RUN(test_same_grants_share);
    RUN(test_replaced_directory);
    RUN(test_different_grants_apart);
    RUN(test_eviction);
    unlink(file_a);
    unlink(file_b);
    rmdir(dir_a);
    rmdir(dir_b);
    return CHECK_EXIT();
}
