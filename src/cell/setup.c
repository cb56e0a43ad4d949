/*
 * What a worker child needs from its CONFIG frame: the plan its guards
 * decide with, and the confinement (confine.c) that the kernel enforces.
 * Landlock can only express "this directory and what is beneath it" and
 * TCP ports, so its grants are a superset of the policy: deny rules,
 * wildcards and addresses are the python-guard's to enforce on top.
 */
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "py_runtime.h"
#include "setup.h"

#define GRANTS_MAX 128

/* Read-only (with exec) paths the interpreter needs besides sys.path:
 * shared libraries that extension modules load. */
static const char *const system_paths[] = {
    "/usr/lib", "/lib", "/usr/lib64", "/lib64", "/etc/ld.so.cache", NULL};
static const char *const environment[] = {"PATH=/usr/bin:/bin",
                                          "LC_ALL=C.UTF-8", "LANG=C.UTF-8"};

const iso_value *iso_config_field(const iso_value *map, const char *key)
{
    for (size_t i = 0; map && map->type == ISO_MAP && i < map->u.seq.len; i++) {
        const iso_value *k = &map->u.seq.items[2 * i];
        if (k->type == ISO_STR && strcmp(k->u.str.ptr, key) == 0)
            return &map->u.seq.items[2 * i + 1];
    }
    return NULL;
}

int64_t iso_config_int(const iso_value *map, const char *key)
{
    const iso_value *v = iso_config_field(map, key);
    return v && v->type == ISO_INT ? v->u.i : -1;
}

const char *iso_config_str(const iso_value *map, const char *key)
{
    const iso_value *v = iso_config_field(map, key);
    return v && v->type == ISO_STR ? v->u.str.ptr : NULL;
}

iso_plan *iso_worker_plan(const iso_value *config, iso_error *err)
{
    const iso_value *fs = iso_config_field(config, "fs");
    const iso_value *net = iso_config_field(config, "net");
    if ((fs && fs->type != ISO_LIST) || (net && net->type != ISO_LIST)) {
        iso_error_set(err, ISO_POLICY, "malformed plan in the config");
        return NULL;
    }
    return iso_plan_from_value(fs, net, err);
}

/* ---- Landlock grants --------------------------------------------------- */

typedef struct grants {
    iso_fs_grant g[GRANTS_MAX];
    char *owned[GRANTS_MAX];
    size_t n;
} grants;

static void grant(grants *gs, const char *path, bool read, bool write,
                  bool exec)
{
    char *copy = path ? strdup(path) : NULL;
    if (!copy || gs->n == GRANTS_MAX || access(path, F_OK) != 0) {
        free(copy); /* Landlock needs the path to exist */
        return;
    }
    gs->owned[gs->n] = copy;
    gs->g[gs->n++] = (iso_fs_grant){copy, read, write, exec};
}

static void grant_runtime(grants *gs)
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
    grant(gs, "/dev/null", true, true, false);
}

/* A policy glob's directory: the segments before the first wildcard. */
static void grant_rule(grants *gs, const char *kind, const char *glob)
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

static void grant_policy(grants *gs, const iso_value *config)
{
    const iso_value *fs = iso_config_field(config, "fs");
    for (size_t i = 0; fs && i < fs->u.seq.len; i++) {
        const iso_value *r = &fs->u.seq.items[i]; /* [kind, glob, text] */
        if (strcmp(r->u.seq.items[0].u.str.ptr, "deny") != 0)
            grant_rule(gs, r->u.seq.items[0].u.str.ptr,
                       r->u.seq.items[1].u.str.ptr);
    }
}

static void grants_free(grants *gs)
{
    for (size_t i = 0; i < gs->n; i++)
        free(gs->owned[i]);
}

/* ---- confinement ------------------------------------------------------- */

const char **iso_config_strings(const iso_value *map, const char *key,
                                size_t *n)
{
    const iso_value *v = iso_config_field(map, key);
    *n = v && v->type == ISO_LIST ? v->u.seq.len : 0;
    const char **out = calloc(*n + 1, sizeof *out);
    for (size_t i = 0; out && i < *n; i++)
        out[i] = v->u.seq.items[i].type == ISO_STR ? v->u.seq.items[i].u.str.ptr
                                                   : "";
    return out;
}

int iso_worker_confine(const iso_value *config, const iso_plan *plan, int sock,
                       int note, iso_confine_report *rep, iso_error *err)
{
    const iso_value *limits = iso_config_field(config, "limits");
    int keep[] = {sock, note};
    grants gs = {.n = 0};
    grant_runtime(&gs);
    grant_policy(&gs, config);
    iso_confine_config cc = {
        .keep_fds = keep,
        .n_keep = 2,
        .env = environment,
        .n_env = sizeof environment / sizeof *environment,
        .mem_bytes = iso_config_int(limits, "mem"),
        .cpu_ms = iso_config_int(limits, "cpu_ms"),
        .open_files = iso_config_int(limits, "open_files"),
        .output_bytes = iso_config_int(limits, "output_bytes"),
        .processes = iso_config_int(limits, "processes"),
        .cgroup_procs = iso_config_str(config, "cgroup_procs"),
        .grants = gs.g,
        .n_grants = gs.n,
        .death_note_fd = note,
    };
    uint16_t *ports = NULL;
    const char **deny = iso_config_strings(config, "syscalls_deny", &cc.n_deny);
    int rc = deny && iso_plan_connect_ports(plan, &ports, &cc.n_ports,
                                            &cc.any_port) == 0
                 ? 0
                 : iso_error_set(err, ISO_MEMORY, "out of memory");
    cc.connect_ports = ports;
    cc.deny_syscalls = deny;
    if (rc == 0)
        rc = iso_confine_apply(&cc, rep, err);
    free(ports);
    free(deny);
    grants_free(&gs);
    return rc;
}

int iso_worker_report(const iso_confine_report *rep, iso_value *out)
{
    iso_value_set_list(out);
    int rc = iso_confinement_add(out, "python-guard", "active", "process",
                                 "imports, fs, net, exec and capabilities "
                                 "in Python, on top of the kernel layers");
    for (size_t i = 0; rc == 0 && i < rep->n; i++)
        rc = iso_confinement_add(out, rep->steps[i].layer,
                                 iso_step_state_name(rep->steps[i].state),
                                 "process", rep->steps[i].detail);
    return rc;
}
