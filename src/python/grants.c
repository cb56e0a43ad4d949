/* Landlock grants for a cell (see grants.h). */
#include "grants.h"
#include "guest.h"

#include <Python.h>
#include <dirent.h>
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

/* Append g with a copy of its path. False when memory ran out: the grant
 * is then missing, and the default deny holds. */
static bool add(iso_grants *gs, iso_fs_grant g)
{
    char *copy = strdup(g.path);
    if (copy && gs->n == gs->cap) {
        size_t cap = gs->cap ? 2 * gs->cap : 64;
        iso_fs_grant *p = realloc(gs->g, cap * sizeof *p);
        if (p)
            gs->g = p, gs->cap = cap;
    }
    if (!copy || gs->n == gs->cap) {
        free(copy);
        return false;
    }
    g.path = copy;
    gs->g[gs->n++] = g;
    return true;
}

static void grant(iso_grants *gs, const char *path, bool read, bool write,
                  bool exec)
{
    if (path && access(path, F_OK) == 0) /* Landlock needs it to exist */
        add(gs, (iso_fs_grant){path, read, write, exec, false});
}

/* The runtime's grants are the same for every cell of a process: found
 * once (with the GIL), then copied without it, so that a cell thread can
 * confine itself while another holds the GIL. carved is made on first use
 * (process workers never need it). */
static struct {
    pthread_mutex_t mu;
    bool ready, carved_ready;
    iso_grants g, carved;
    iso_grants ext_dirs; /* sys.path: where extension modules live */
    char **refused;      /* real paths of the extension files left out */
    size_t n_refused;
    char loaded[PATH_MAX]; /* one of them the process has loaded already */
} runtime = {
    PTHREAD_MUTEX_INITIALIZER, false, false, {0}, {0}, {0}, NULL, 0, ""};

static void collect_runtime(iso_grants *gs)
{
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    Py_ssize_t n = path && PyList_Check(path) ? PyList_GET_SIZE(path) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(path, i);
        const char *s = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        grant(gs, s, true, false, true);
        grant(&runtime.ext_dirs, s, true, false, true);
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

/* ---- carving the refused extension modules out ------------------------- */

static void remember_refused(const char *dir, const char *name)
{
    char path[PATH_MAX], real[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char **r =
        realpath(path, real)
            ? realloc(runtime.refused, (runtime.n_refused + 1) * sizeof *r)
            : NULL;
    if (r && (r[runtime.n_refused] = strdup(real)) != NULL)
        runtime.n_refused++;
    if (r)
        runtime.refused = r;
    /* loaded already (by the host's own Python, say): dlopen hands out the
     * loaded copy without opening the file, so Landlock cannot refuse it */
    void *h = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
    if (h) {
        snprintf(runtime.loaded, sizeof runtime.loaded, "%s", path);
        dlclose(h);
    }
}

/* Every extension file (NAME.*.so or NAME.so) of a refused module in the
 * extension directories. */
static void find_refused(void)
{
    for (size_t i = 0; i < runtime.ext_dirs.n; i++) {
        DIR *d = opendir(runtime.ext_dirs.g[i].path);
        for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
            size_t len = strlen(e->d_name);
            const char *dot = strchr(e->d_name, '.');
            char module[NAME_MAX + 1];
            if (!dot || len < 3 || strcmp(e->d_name + len - 3, ".so") != 0)
                continue;
            snprintf(module, sizeof module, "%.*s", (int)(dot - e->d_name),
                     e->d_name);
            if (iso_py_extension_refused(module))
                remember_refused(runtime.ext_dirs.g[i].path, e->d_name);
        }
        if (d)
            closedir(d);
    }
}

/* 0: no refused file at or beneath path; 1: one beneath; 2: path is one. */
static int refused_at(const char *path)
{
    size_t n = strlen(path);
    int found = 0;
    for (size_t i = 0; i < runtime.n_refused && found < 2; i++) {
        const char *r = runtime.refused[i];
        if (strcmp(r, path) == 0)
            found = 2;
        else if (strncmp(r, path, n) == 0 && (r[n] == '/' || n == 1))
            found = 1;
    }
    return found;
}

/* add, unless the same grant is there already (/lib is /usr/lib here, and
 * sys.path lies beneath it). Once per process: quadratic is fine. */
static void add_once(iso_grants *gs, iso_fs_grant g)
{
    for (size_t i = 0; i < gs->n; i++)
        if (strcmp(gs->g[i].path, g.path) == 0 && gs->g[i].read == g.read &&
            gs->g[i].write == g.write && gs->g[i].exec == g.exec &&
            gs->g[i].list == g.list)
            return;
    add(gs, g);
}

/* Grant g at its real path, or, when a refused file lies beneath, a
 * listing of the directory and each entry on its own (depth-bounded). */
static void carve(iso_grants *gs, const iso_fs_grant *g, const char *path,
                  int depth)
{
    char real[PATH_MAX], child[PATH_MAX];
    if (!realpath(path, real))
        return;
    int at = refused_at(real);
    if (at == 0 || depth > 8) {
        add_once(gs, (iso_fs_grant){real, g->read, g->write, g->exec, false});
        return;
    }
    if (at == 2)
        return;
    add_once(gs, (iso_fs_grant){real, false, false, false, true});
    DIR *d = opendir(real);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(child, sizeof child, "%s/%s", real, e->d_name);
        carve(gs, g, child, depth + 1);
    }
    if (d)
        closedir(d);
}

static void make_carved(void)
{
    find_refused();
    for (size_t i = 0; i < runtime.g.n; i++)
        carve(&runtime.carved, &runtime.g.g[i], runtime.g.g[i].path, 0);
    runtime.carved_ready = true;
}

size_t iso_grants_refused_count(char *loaded, size_t n)
{
    pthread_mutex_lock(&runtime.mu);
    size_t count = runtime.n_refused;
    snprintf(loaded, n, "%s", runtime.loaded);
    pthread_mutex_unlock(&runtime.mu);
    return count;
}

void iso_grants_runtime(iso_grants *gs, bool carved)
{
    pthread_mutex_lock(&runtime.mu);
    if (carved && runtime.ready && !runtime.carved_ready)
        make_carved();
    const iso_grants *from = carved ? &runtime.carved : &runtime.g;
    for (size_t i = 0; i < from->n; i++)
        add(gs, from->g[i]);
    pthread_mutex_unlock(&runtime.mu);
}

/* The module a refused file's path holds: its name up to the first dot. */
static void module_of(const char *path, char *module, size_t n)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(module, n, "%.*s", (int)strcspn(base, "."), base);
}

static bool named(char *const *imports, size_t n, const char *module)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(imports[i], module) == 0)
            return true;
    return false;
}

void iso_grants_opted_in(iso_grants *gs, char *const *imports, size_t n)
{
    char module[NAME_MAX + 1];
    pthread_mutex_lock(&runtime.mu);
    for (size_t i = 0; i < runtime.n_refused; i++) {
        module_of(runtime.refused[i], module, sizeof module);
        if (iso_py_test_extension(module) && named(imports, n, module))
            add_once(gs, (iso_fs_grant){runtime.refused[i], true, false, true,
                                        false});
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
        free((char *)gs->g[i].path);
    free(gs->g);
    gs->g = NULL;
    gs->n = gs->cap = 0;
}
