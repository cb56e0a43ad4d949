/*
 * What dead hosts left under the luaisolate cgroup root: their host-<pid>
 * and cells-<pid> directories, and cell directories of the older flat
 * layout (<name>-<pid>-<n>). A host killed with SIGKILL runs no exit
 * handler; its zygote kills its cells (PDEATHSIG, src/backend/process/worker/main.c) but
 * cannot remove the host's own directory. The next host start, or
 * `luaisolate doctor --clean`, does.
 *
 * Several hosts share the root (other users, test suites running at
 * once): a directory is touched only when the process its name names is
 * gone (kill(pid, 0) fails with ESRCH), never on a guess.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroup.h"

_Atomic bool iso_cgroup_stale_cleaned;

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 10)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* The pid a directory name carries (see above); 0 if it carries none. */
static long owner_pid(const char *name)
{
    static const char *const prefixes[] = {"host-", "cells-"};
    for (int i = 0; i < 2; i++) {
        size_t k = strlen(prefixes[i]);
        if (!strncmp(name, prefixes[i], k) &&
            all_digits(name + k, strlen(name + k)))
            return strtol(name + k, NULL, 10);
    }
    const char *last = strrchr(name, '-'); /* <name>-<pid>-<n> */
    if (!last || last == name || !all_digits(last + 1, strlen(last + 1)))
        return 0;
    const char *p = last - 1;
    while (p > name && *p != '-')
        p--;
    if (p == name || !all_digits(p + 1, (size_t)(last - p - 1)))
        return 0;
    return strtol(p + 1, NULL, 10);
}

static bool process_gone(long pid)
{
    return pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* The names under root that belong to dead processes (NULL-terminated,
 * malloc'd; NULL when there are none or on error). Read first, removed
 * after: removing while readdir walks is not well defined. */
static char **stale_names(const char *root, size_t *n)
{
    DIR *d = opendir(root);
    char **names = NULL;
    size_t cap = 0;
    *n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (e->d_type != DT_DIR || !process_gone(owner_pid(e->d_name)))
            continue;
        if (*n + 1 >= cap) {
            char **grown =
                realloc(names, (cap = cap ? cap * 2 : 8) * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        if ((names[*n] = strdup(e->d_name)) != NULL)
            (*n)++;
    }
    if (d)
        closedir(d);
    return names;
}

int iso_cgroup_clean_stale(iso_cgroup_found fn, void *ud, iso_error *err)
{
    char mount[ISO_PATH_MAX], root[ISO_PATH_MAX + 16];
    atomic_store(&iso_cgroup_stale_cleaned, true);
    if (iso_cgroup_mount(mount, sizeof mount, err) < 0)
        return -1;
    snprintf(root, sizeof root, "%s/luaisolate", mount);
    size_t n;
    char **names = stale_names(root, &n);
    int removed = 0;
    for (size_t i = 0; i < n; i++) {
        char path[sizeof root + 300];
        iso_error e = {0};
        snprintf(path, sizeof path, "%s/%s", root, names[i]);
        iso_cgroup_kill_tree(path, &e);
        iso_error_clear(&e);
        if (access(path, F_OK) < 0 && errno == ENOENT) {
            removed++;
            if (fn)
                fn(path, ud);
        }
        free(names[i]);
    }
    free(names);
    return removed;
}
