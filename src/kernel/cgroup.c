/* cgroup v2 directories: process cells' (create, kill, remove, count), the
 * host's own and the threaded ones of sub-interpreter cells' threads (their
 * reaper is cgroup_reaper.c's, what dead hosts left cgroup_stale.c's). */
#include "cgroup.h"
#include "handoff.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ROOT_NAME "luaisolate"

static int sys_error(iso_error *err, const char *what, const char *path)
{
    int e = errno;
    iso_error_set(err, ISO_CRASHED, "cgroup: %s %s: %s", what, path,
                  strerror(e));
    if (err)
        err->code = e;
    return -1;
}

/* Write s to a control file; 0 or -errno. */
static int write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t len = (ssize_t)strlen(s);
    int rc = write(fd, s, (size_t)len) == len ? 0 : -errno;
    close(fd);
    return rc;
}

/* Read a small control file as a string; 0 or -errno. */
static int read_file(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t got = read(fd, buf, n - 1);
    int rc = got < 0 ? -errno : 0;
    buf[got < 0 ? 0 : got] = '\0';
    close(fd);
    return rc;
}

/* Is word one of the space-separated words of list? */
static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += n) {
        bool start = p == list || p[-1] == ' ';
        bool end = p[n] == '\0' || p[n] == ' ' || p[n] == '\n';
        if (start && end)
            return true;
    }
    return false;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (const char *r = s; *r; w++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' &&
            r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
            *w = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w = *r++;
        }
    }
    *w = '\0';
}

/* The mount point of a mountinfo line if its type is cgroup2, else NULL.
 * Fields: id parent dev root mountpoint opts [optional...] - type src. */
static char *cgroup2_mountpoint(char *line)
{
    char *sep = strstr(line, " - ");
    if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
        return NULL;
    char *save = NULL, *field = strtok_r(line, " ", &save);
    for (int i = 0; field && i < 4; i++)
        field = strtok_r(NULL, " ", &save);
    if (field)
        unescape_octal(field);
    return field;
}

int iso_cgroup_mount(char *out, size_t n, iso_error *err)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return sys_error(err, "open", "/proc/self/mountinfo");
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char *mp = cgroup2_mountpoint(line);
        if (mp && strlen(mp) < n) {
            snprintf(out, n, "%s", mp);
            found = true;
        }
    }
    fclose(f);
    if (!found)
        return iso_error_set(err, ISO_NOT_IMPLEMENTED,
                             "cgroup: no cgroup v2 filesystem is mounted "
                             "(none in /proc/self/mountinfo)");
    return 0;
}

/* Turn on pids and memory for the children of dir when dir has them.
 * Best effort: a controller that cannot be enabled is simply absent from
 * the cells, and iso_cgroup_create reports that per cell. */
static void enable_controllers(const char *dir)
{
    static const char *const wanted[] = {"pids", "memory"};
    char path[ISO_PATH_MAX + 32], have[512], enabled[512];
    snprintf(path, sizeof path, "%s/cgroup.controllers", dir);
    if (read_file(path, have, sizeof have) < 0)
        return;
    snprintf(path, sizeof path, "%s/cgroup.subtree_control", dir);
    if (read_file(path, enabled, sizeof enabled) < 0)
        return;
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        char cmd[16];
        if (!has_word(have, wanted[i]) || has_word(enabled, wanted[i]))
            continue;
        snprintf(cmd, sizeof cmd, "+%s", wanted[i]);
        (void)write_file(path, cmd);
    }
}

int iso_cgroup_root(char *out, size_t n, iso_error *err)
{
    char mount[ISO_PATH_MAX];
    if (iso_cgroup_mount(mount, sizeof mount, err) < 0)
        return -1;
    if ((size_t)snprintf(out, n, "%s/" ROOT_NAME, mount) >= n)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "cgroup: path buffer too small");
    if (mkdir(out, 0755) < 0 && errno != EEXIST) {
        if (errno == EACCES || errno == EPERM || errno == EROFS)
            return iso_error_set(err, ISO_NOT_IMPLEMENTED,
                                 "cgroup: the cgroup v2 mount %s is not "
                                 "writable (%s)",
                                 mount, strerror(errno));
        return sys_error(err, "mkdir", out);
    }
    enable_controllers(out);
    if (!atomic_load(&iso_cgroup_stale_cleaned)) /* once, before any use */
        iso_cgroup_clean_stale(NULL, NULL, NULL);
    return 0;
}

/* The process cells of this process live in <root>/cells-<pid>: one
 * cgroup.kill there ends every cell and whatever its guest started (the
 * zygote does exactly that when the host goes away, see
 * src/backend/process/worker/main.c), and a dead host's cells are found by one
 * name. */
static struct {
    pthread_mutex_t mu;
    char dir[ISO_PATH_MAX + 32]; /* "" until made */
    pid_t pid;                   /* whose: a forked child makes its own */
    bool ended; /* by cells_end: only a spawn makes it again, not a refill */
} cells = {PTHREAD_MUTEX_INITIALIZER, "", 0, false};

static int make_cells_dir(iso_error *err)
{
    char root[ISO_PATH_MAX];
    if (iso_cgroup_root(root, sizeof root, err) < 0)
        return -1;
    snprintf(cells.dir, sizeof cells.dir, "%s/cells-%ld", root, (long)getpid());
    if (mkdir(cells.dir, 0755) < 0 && errno != EEXIST) {
        sys_error(err, "mkdir", cells.dir);
        cells.dir[0] = '\0';
        return -1;
    }
    enable_controllers(cells.dir);
    cells.pid = getpid();
    return 0;
}

/* The cells lock held: the cells dir in out, made if need be (and, with
 * reopen, made again after cells_end). */
static int cells_dir_locked(char *out, size_t n, bool reopen, iso_error *err)
{
    if (cells.ended && !reopen)
        return iso_error_set(err, ISO_CLOSED,
                             "cgroup: the process cells have ended");
    int rc = 0;
    if (!cells.dir[0] || cells.pid != getpid())
        rc = make_cells_dir(err);
    if (rc == 0) {
        cells.ended = false;
        snprintf(out, n, "%s", cells.dir);
    }
    return rc;
}

int iso_cgroup_cells_dir(char *out, size_t n, iso_error *err)
{
    pthread_mutex_lock(&cells.mu);
    int rc = cells_dir_locked(out, n, true, err);
    pthread_mutex_unlock(&cells.mu);
    return rc;
}

/* Remove dir's subdirectories (empty cgroups, waiting out EBUSY while
 * their last processes are reaped) and dir itself. */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    iso_cgroup c = {.pids = false};
    iso_error err = {0};
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        if (e->d_type == DT_DIR && e->d_name[0] != '.') {
            snprintf(c.path, sizeof c.path, "%s/%s", dir, e->d_name);
            iso_cgroup_remove(&c, &err);
            iso_error_clear(&err);
        }
    if (d)
        closedir(d);
    snprintf(c.path, sizeof c.path, "%s", dir);
    iso_cgroup_remove(&c, &err);
    iso_error_clear(&err);
}

int iso_cgroup_kill_tree(const char *dir, iso_error *err)
{
    iso_cgroup c = {.pids = false};
    snprintf(c.path, sizeof c.path, "%s", dir);
    int rc = iso_cgroup_kill(&c, err);
    remove_tree(dir);
    return rc;
}

void iso_cgroup_cells_end(void)
{
    char dir[sizeof cells.dir];
    pthread_mutex_lock(&cells.mu);
    snprintf(dir, sizeof dir, "%s", cells.pid == getpid() ? cells.dir : "");
    cells.dir[0] = '\0'; /* made again by the next process spawn */
    cells.ended = true;
    pthread_mutex_unlock(&cells.mu);
    iso_error err = {0};
    if (dir[0])
        iso_cgroup_kill_tree(dir, &err);
    iso_error_clear(&err);
}

/* mkdir <root>/<name>-<pid>-<n> with a process-wide counter; EEXIST (a
 * leftover from an earlier process with the same pid) tries the next n. */
static int make_cell_dir(const char *root, const char *name, iso_cgroup *cg,
                         iso_error *err)
{
    static atomic_uint counter;
    for (int tries = 0; tries < 1000; tries++) {
        unsigned k = atomic_fetch_add(&counter, 1);
        int len = snprintf(cg->path, sizeof cg->path, "%s/%s-%ld-%u", root,
                           name, (long)getpid(), k);
        if (len < 0 || (size_t)len >= sizeof cg->path)
            break;
        if (mkdir(cg->path, 0755) == 0)
            return 0;
        if (errno != EEXIST) {
            sys_error(err, "mkdir", cg->path);
            cg->path[0] = '\0';
            return -1;
        }
    }
    cg->path[0] = '\0';
    return iso_error_set(err, ISO_CRASHED, "cgroup: no usable name under %s",
                         root);
}

/* Write one limit file of the cell; a missing optional file is fine. */
static int write_limit(iso_cgroup *cg, const char *file, const char *value,
                       bool optional, iso_error *err)
{
    char path[ISO_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", cg->path, file);
    int rc = write_file(path, value);
    if (rc == 0 || (optional && rc == -ENOENT))
        return 0;
    errno = -rc;
    return sys_error(err, "write", path);
}

/* memory.max and pids.max; swap is capped too or memory.max would only
 * push the cell into swap, and an OOM kill takes the whole cell. */
static int write_limits(iso_cgroup *cg, int64_t mem, int64_t pids,
                        iso_error *err)
{
    char v[32];
    if (cg->memory && mem >= 0) {
        snprintf(v, sizeof v, "%" PRId64, mem);
        if (write_limit(cg, "memory.max", v, false, err) < 0 ||
            write_limit(cg, "memory.swap.max", "0", true, err) < 0 ||
            write_limit(cg, "memory.oom.group", "1", true, err) < 0)
            return -1;
    }
    if (cg->pids && pids >= 0) {
        snprintf(v, sizeof v, "%" PRId64, pids);
        if (write_limit(cg, "pids.max", v, false, err) < 0)
            return -1;
    }
    return 0;
}

/* The cell's directory is made with the cells lock held, so cells_end
 * either finds it there (and kills and removes it with the rest) or comes
 * first: then a refill makes no cells dir again behind the host's end. */
static int create_cell(const char *name, int64_t mem_bytes, int64_t pids_max,
                       bool reopen, iso_cgroup *cg, iso_error *err)
{
    char root[ISO_PATH_MAX], path[ISO_PATH_MAX + 32], have[512];
    memset(cg, 0, sizeof *cg);
    if (!iso_cell_name_valid(name))
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "cgroup: name must match ^[A-Za-z0-9_-]{1,64}$");
    pthread_mutex_lock(&cells.mu);
    int rc = cells_dir_locked(root, sizeof root, reopen, err);
    if (rc == 0)
        rc = make_cell_dir(root, name, cg, err);
    pthread_mutex_unlock(&cells.mu);
    if (rc < 0)
        return -1;
    snprintf(path, sizeof path, "%s/cgroup.controllers", cg->path);
    if (read_file(path, have, sizeof have) == 0) {
        cg->pids = has_word(have, "pids");
        cg->memory = has_word(have, "memory");
    }
    if (write_limits(cg, mem_bytes, pids_max, err) < 0) {
        rmdir(cg->path);
        memset(cg, 0, sizeof *cg);
        return -1;
    }
    return 0;
}

int iso_cgroup_create(const char *name, int64_t mem_bytes, int64_t pids_max,
                      iso_cgroup *cg, iso_error *err)
{
    return create_cell(name, mem_bytes, pids_max, true, cg, err);
}

int iso_cgroup_create_pooled(const char *name, iso_cgroup *cg, iso_error *err)
{
    return create_cell(name, -1, -1, false, cg, err);
}

int iso_cgroup_set_limits(iso_cgroup *cg, int64_t mem_bytes, int64_t pids_max,
                          iso_error *err)
{
    return write_limits(cg, mem_bytes, pids_max, err);
}

void iso_cgroup_procs_path(const iso_cgroup *cg, char *out, size_t n)
{
    snprintf(out, n, "%s/cgroup.procs", cg->path);
}

/* Kernels before 5.14 have no cgroup.kill: kill the listed pids, again
 * until none is left, since a member may fork while we read the list. */
static int kill_each(const iso_cgroup *cg, iso_error *err)
{
    char path[ISO_PATH_MAX + 32];
    iso_cgroup_procs_path(cg, path, sizeof path);
    for (int round = 0; round < 100; round++) {
        FILE *f = fopen(path, "re");
        if (!f)
            return errno == ENOENT ? 0 : sys_error(err, "open", path);
        long pid;
        int killed = 0;
        while (fscanf(f, "%ld", &pid) == 1)
            killed += kill((pid_t)pid, SIGKILL) == 0;
        fclose(f);
        if (killed == 0)
            return 0;
    }
    return iso_error_set(err, ISO_CRASHED, "cgroup: %s keeps gaining processes",
                         cg->path);
}

int iso_cgroup_kill(const iso_cgroup *cg, iso_error *err)
{
    char path[ISO_PATH_MAX + 32];
    struct stat st;
    if (!cg->path[0])
        return 0;
    snprintf(path, sizeof path, "%s/cgroup.kill", cg->path);
    int rc = write_file(path, "1");
    if (rc == 0)
        return 0;
    if (rc == -ENOENT && stat(cg->path, &st) < 0 && errno == ENOENT)
        return 0; /* already removed */
    if (rc == -ENOENT)
        return kill_each(cg, err);
    errno = -rc;
    return sys_error(err, "write", path);
}

int iso_cgroup_remove(const iso_cgroup *cg, iso_error *err)
{
    struct timespec pause = {0, 2 * 1000 * 1000};
    if (!cg->path[0])
        return 0;
    for (int waited_ms = 0;; waited_ms += 2) {
        if (rmdir(cg->path) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY || waited_ms >= 200)
            return sys_error(err, "rmdir", cg->path);
        nanosleep(&pause, NULL);
    }
}

int iso_cgroup_count(size_t *n, iso_error *err)
{
    char dir[ISO_PATH_MAX];
    *n = 0;
    if (iso_cgroup_cells_dir(dir, sizeof dir, err) < 0)
        return -1;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : sys_error(err, "opendir", dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_type == DT_DIR && e->d_name[0] != '.')
            (*n)++;
    closedir(d);
    return 0;
}

/* ---- threaded cgroups for sub-interpreter cells ------------------------- */

/* The host's own domain cgroup <root>/host-<pid> (cell threads get
 * threaded children of it), and where the host was before, to go back. */
static struct {
    pthread_mutex_t mu;
    bool entered;
    char dir[ISO_PATH_MAX + 32], origin[ISO_PATH_MAX + 16];
} host = {PTHREAD_MUTEX_INITIALIZER, false, "", ""};

/* <mount><path of "0::<path>" in /proc/self/cgroup>: where we are now. */
static int current_cgroup(const char *mount, char *out, size_t n,
                          iso_error *err)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return sys_error(err, "open", "/proc/self/cgroup");
    char line[ISO_PATH_MAX];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = '\0';
            int len = snprintf(out, n, "%s%s", mount, line + 3);
            found = len > 0 && (size_t)len < n;
        }
    fclose(f);
    return found ? 0
                 : iso_error_set(err, ISO_NOT_IMPLEMENTED,
                                 "cgroup: this process has no cgroup v2 path");
}

/* The host and the processes it started there (the zygote) go back where
 * the host came from, and the host directory with its (now empty) cell
 * directories goes away. */
static void leave_host_cgroup(void)
{
    char from[ISO_PATH_MAX + 64], to[ISO_PATH_MAX + 32], pid[24];
    snprintf(from, sizeof from, "%s/cgroup.procs", host.dir);
    snprintf(to, sizeof to, "%s/cgroup.procs", host.origin);
    FILE *f = fopen(from, "re");
    long p;
    while (f && fscanf(f, "%ld", &p) == 1) {
        snprintf(pid, sizeof pid, "%ld", p);
        (void)write_file(to, pid);
    }
    if (f)
        fclose(f);
    remove_tree(host.dir);
}

void iso_cgroup_host_leave(void)
{
    pthread_mutex_lock(&host.mu);
    if (host.entered)
        leave_host_cgroup();
    host.entered = false;
    pthread_mutex_unlock(&host.mu);
}

static int enter_host_cgroup(iso_error *err)
{
    char mount[ISO_PATH_MAX], root[ISO_PATH_MAX], procs[ISO_PATH_MAX + 64];
    if (iso_cgroup_mount(mount, sizeof mount, err) < 0 ||
        iso_cgroup_root(root, sizeof root, err) < 0 ||
        current_cgroup(mount, host.origin, sizeof host.origin, err) < 0)
        return -1;
    snprintf(host.dir, sizeof host.dir, "%s/host-%ld", root, (long)getpid());
    if (mkdir(host.dir, 0755) < 0 && errno != EEXIST)
        return sys_error(err, "mkdir", host.dir);
    snprintf(procs, sizeof procs, "%s/cgroup.procs", host.dir);
    char pid[24];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    int rc = write_file(procs, pid);
    if (rc < 0) {
        rmdir(host.dir);
        errno = -rc;
        return sys_error(err, "move the host into", host.dir);
    }
    atexit(iso_cgroup_host_leave);
    return 0;
}

int iso_cgroup_host_enter(iso_error *err)
{
    pthread_mutex_lock(&host.mu);
    int rc = host.entered ? 0 : enter_host_cgroup(err);
    if (rc == 0)
        host.entered = true;
    pthread_mutex_unlock(&host.mu);
    return rc;
}

bool iso_cgroup_host_entered(void)
{
    pthread_mutex_lock(&host.mu);
    bool entered = host.entered;
    pthread_mutex_unlock(&host.mu);
    return entered;
}

int iso_cgroup_thread_create(const char *name, iso_cgroup *cg, iso_error *err)
{
    memset(cg, 0, sizeof *cg);
    if (!iso_cgroup_host_entered())
        return iso_error_set(err, ISO_NOT_IMPLEMENTED,
                             "cgroup: thread cgroups are off (the luaisolate "
                             "host turns them on; a Lua app calls "
                             "sandbox.configure{thread_cgroups=true})");
    if (make_cell_dir(host.dir, name, cg, err) < 0)
        return -1;
    char path[ISO_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/cgroup.type", cg->path);
    int rc = write_file(path, "threaded");
    if (rc < 0) {
        rmdir(cg->path);
        errno = -rc;
        sys_error(err, "make threaded", cg->path);
        cg->path[0] = '\0';
        return -1;
    }
    iso_cgroup_reaper_start(); /* with the first one: a steady thread count */
    return 0;
}

void iso_cgroup_threads_path(const iso_cgroup *cg, char *out, size_t n)
{
    snprintf(out, n, "%s/cgroup.threads", cg->path);
}

int iso_cgroup_thread_release(const iso_cgroup *cg, long tid, iso_error *err)
{
    if (!cg->path[0])
        return 0;
    char path[ISO_PATH_MAX + 64], id[24];
    snprintf(path, sizeof path, "%s/cgroup.threads", host.dir);
    snprintf(id, sizeof id, "%ld", tid);
    (void)write_file(path, id); /* a thread that ended has left already */
    if (rmdir(cg->path) == 0 || errno == ENOENT || iso_cgroup_reap_later(cg))
        return 0;
    return iso_cgroup_remove(cg, err);
}
