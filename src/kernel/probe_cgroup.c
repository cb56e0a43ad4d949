/* The cgroup probe for `luaisolate doctor`: the cgroup v2 mount, whether
 * directories can be made there (and threaded subtrees), and the root's
 * controllers. Every directory made is removed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "probe_result.h"

/* Read a small file into buf; false when it cannot be read. */
static bool read_small(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd < 0 ? -1 : read(fd, buf, n - 1);
    if (fd >= 0)
        close(fd);
    buf[got > 0 ? got : 0] = '\0';
    return got >= 0;
}

/* controllers: the words of <mount>/cgroup.controllers, as a list; the
 * same words in names ("" when none or unreadable). */
static void put_controllers(iso_probe *p, const char *mount, char *names,
                            size_t n)
{
    char path[ISO_PATH_MAX + 32], copy[512], *save = NULL;
    iso_value *list = iso_probe_field(p, "controllers");
    if (list)
        iso_value_set_list(list);
    iso_probe_fmt(path, sizeof path, "%s/cgroup.controllers", mount);
    if (!mount[0] || !read_small(path, names, n))
        names[0] = '\0';
    names[strcspn(names, "\n")] = '\0';
    iso_probe_fmt(copy, sizeof copy, "%s", names);
    for (char *w = strtok_r(copy, " ", &save); w && list;
         w = strtok_r(NULL, " ", &save)) {
        iso_value *item = iso_list_append(list);
        if (!item || iso_value_set_string(item, ISO_STR, w, strlen(w)) < 0)
            *p->oom = true;
    }
}

/* dir/t as a threaded cgroup, read back, removed. */
static bool try_threaded(const char *dir, char *why, size_t n)
{
    char t[ISO_PATH_MAX + 8], type[ISO_PATH_MAX + 32], got[64] = "";
    iso_probe_fmt(t, sizeof t, "%s/t", dir);
    iso_probe_fmt(type, sizeof type, "%s/cgroup.type", t);
    if (mkdir(t, 0755) < 0) {
        iso_probe_fmt(why, n, "mkdir %s: %s", t, strerror(errno));
        return false;
    }
    int fd = open(type, O_WRONLY | O_CLOEXEC);
    bool wrote = fd >= 0 && write(fd, "threaded", 8) == 8;
    if (!wrote)
        iso_probe_fmt(why, n, "writing threaded to %s: %s", type,
                      strerror(errno));
    if (fd >= 0)
        close(fd);
    bool ok = wrote && read_small(type, got, sizeof got) &&
              strcmp(got, "threaded\n") == 0;
    if (wrote && !ok)
        iso_probe_fmt(why, n, "%s reads back '%.*s'", type,
                      (int)strcspn(got, "\n"), got);
    if (rmdir(t) < 0 && ok) {
        iso_probe_fmt(why, n, "rmdir %s: %s", t, strerror(errno));
        ok = false;
    }
    return ok;
}

/* A cell directory of ours (writable), and a threaded one inside it. */
static bool try_cgroup_dirs(bool *threaded, char *why, size_t n)
{
    iso_cgroup cg;
    iso_error err = {0};
    *threaded = false;
    if (iso_cgroup_create("doctor", -1, -1, &cg, &err) < 0) {
        iso_probe_fmt(why, n, "%s", err.message);
        return false;
    }
    *threaded = try_threaded(cg.path, why, n);
    if (iso_cgroup_remove(&cg, &err) < 0) {
        iso_probe_fmt(why, n, "%s", err.message);
        *threaded = false;
        return false;
    }
    return true;
}

void iso_probe_cgroup(iso_value *all, bool *oom)
{
    iso_probe p = iso_probe_begin(all, "cgroup", oom);
    char mount[ISO_PATH_MAX] = "", names[512], why[ISO_PATH_MAX + 128] = "";
    char detail[ISO_PATH_MAX + 768];
    iso_error err = {0};
    bool threaded = false, writable = false;
    if (iso_cgroup_mount(mount, sizeof mount, &err) == 0)
        writable = try_cgroup_dirs(&threaded, why, sizeof why);
    else
        iso_probe_fmt(why, sizeof why, "%s", err.message);
    iso_probe_put_text(&p, "mount", mount);
    iso_probe_put_bool(&p, "writable", writable);
    iso_probe_put_bool(&p, "threaded", threaded);
    put_controllers(&p, mount, names, sizeof names);
    iso_probe_fmt(detail, sizeof detail, "%s%s: %s, %s; controllers: %s",
                  mount[0] ? "cgroup2 at " : "no cgroup2", mount,
                  writable ? "writable" : "not writable",
                  threaded ? "threaded subtrees work"
                  : why[0] ? why
                           : "not threaded",
                  names[0] ? names : "none");
    iso_probe_verdict(
        &p, writable, detail,
        "process cells need a writable cgroup v2: mount cgroup2 and "
        "run as root or in a delegated subtree");
}