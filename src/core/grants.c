/* Landlock grants for a cell (see grants.h). */
#include "grants.h"

#include <Python.h>
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read-only (with exec) paths the interpreter needs besides sys.path:
 * shared libraries that extension modules load. */
static const char *const system_paths[] = {
    "/usr/lib", "/lib", "/usr/lib64", "/lib64", "/etc/ld.so.cache", NULL};

/* Read-only: what name resolution reads (getaddrinfo, getservbyname), so
 * that a policy's net rules can name hosts. */
static const char *const resolver_files[] = {
    "/etc/hosts",    "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf",
    "/etc/gai.conf", "/etc/services",    "/etc/protocols",     NULL};

static void grant(iso_grants *gs, const char *path, bool read, bool write,
                  bool exec)
{
    char *copy = path ? strdup(path) : NULL;
    if (!copy || gs->n == ISO_GRANTS_MAX || access(path, F_OK) != 0) {
        free(copy); /* Landlock needs the path to exist */
        return;
    }
    gs->owned[gs->n] = copy;
    gs->g[gs->n++] = (iso_fs_grant){copy, read, write, exec};
}

/* The runtime's grants are the same for every cell of a process: found
 * once (with the GIL), then copied without it, so that a cell thread can
 * confine itself while another holds the GIL. */
static struct {
    pthread_mutex_t mu;
    bool ready;
    iso_grants g;
} runtime = {PTHREAD_MUTEX_INITIALIZER, false, {.n = 0}};

static void collect_runtime(iso_grants *gs)
{
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    Py_ssize_t n = path && PyList_Check(path) ? PyList_GET_SIZE(path) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(path, i);
        const char *s = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        grant(gs, s, true, false, true);
    }
    PyErr_Clear();
    Dl_info self; /* where libpython lives, wherever it was built */
    char dir[PATH_MAX];
    if (dladdr((void *)Py_Initialize, &self) && self.dli_fname) {
        snprintf(dir, sizeof dir, "%s", self.dli_fname);
        grant(gs, dirname(dir), true, false, true);
    }
    for (int i = 0; system_paths[i]; i++)
        grant(gs, system_paths[i], true, false, true);
    for (int i = 0; resolver_files[i]; i++)
        grant(gs, resolver_files[i], true, false, false);
    grant(gs, "/dev/null", true, true, false);
}

void iso_grants_prepare(void)
{
    pthread_mutex_lock(&runtime.mu);
    if (!runtime.ready)
        collect_runtime(&runtime.g);
    runtime.ready = true;
    pthread_mutex_unlock(&runtime.mu);
}

void iso_grants_runtime(iso_grants *gs)
{
    pthread_mutex_lock(&runtime.mu);
    for (size_t i = 0; i < runtime.g.n; i++) {
        const iso_fs_grant *g = &runtime.g.g[i];
        grant(gs, g->path, g->read, g->write, g->exec);
    }
    pthread_mutex_unlock(&runtime.mu);
}

/* A policy glob's directory: the segments before the first wildcard. */
static void grant_rule(iso_grants *gs, const char *kind, const char *glob)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", glob);
    char *wild = strpbrk(dir, "*?");
    if (wild) {
        *wild = '\0';
        char *slash = strrchr(dir, '/');
        slash[slash == dir ? 1 : 0] = '\0';
    }
    bool all = strcmp(kind, "allow") == 0;
    grant(gs, dir, all || strcmp(kind, "read") == 0,
          all || strcmp(kind, "write") == 0, false);
}

void iso_grants_plan(iso_grants *gs, const iso_plan *plan)
{
    iso_value fs = {0}, net = {0};
    if (!plan || iso_plan_to_value(plan, &fs, &net) != 0)
        goto out;
    for (size_t i = 0; i < fs.u.seq.len; i++) {
        const iso_value *r = &fs.u.seq.items[i]; /* [kind, glob, text] */
        if (strcmp(r->u.seq.items[0].u.str.ptr, "deny") != 0)
            grant_rule(gs, r->u.seq.items[0].u.str.ptr,
                       r->u.seq.items[1].u.str.ptr);
    }
out:
    iso_value_free(&fs);
    iso_value_free(&net);
}

void iso_grants_free(iso_grants *gs)
{
    for (size_t i = 0; i < gs->n; i++)
        free(gs->owned[i]);
    gs->n = 0;
}
