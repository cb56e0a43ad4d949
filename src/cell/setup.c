/*
 * What a worker child needs from its CONFIG frame: the plan its guards
 * decide with, and the confinement (confine.c, grants.c) that the kernel
 * enforces.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grants.h"
#include "py_runtime.h"
#include "setup.h"

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
    iso_grants gs = {.n = 0};
    iso_grants_prepare();
    iso_grants_runtime(&gs, false); /* the kernel layers contain it */
    iso_grants_plan(&gs, plan);
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
        .connect_by_bpf = iso_config_str(config, "connect") != NULL,
        .compat = iso_config_str(config, "mode") &&
                  strcmp(iso_config_str(config, "mode"), "compat") == 0,
        .grants = gs.g,
        .n_grants = gs.n,
        .death_note_fd = note,
    };
    const char **deny = iso_config_strings(config, "syscalls_deny", &cc.n_deny);
    int rc = deny ? iso_confine_net_from_plan(&cc, plan, err)
                  : iso_error_set(err, ISO_MEMORY, "out of memory");
    cc.deny_syscalls = deny;
    if (rc == 0)
        rc = iso_confine_apply(&cc, rep, err);
    iso_confine_net_free(&cc);
    free(deny);
    iso_grants_free(&gs);
    return rc;
}

int iso_worker_report(const iso_confine_report *rep, iso_value *out)
{
    iso_value_set_list(out);
    int rc = iso_confinement_add(out, "python-guard", "active", "process",
                                 "imports, fs, net, exec and capabilities "
                                 "in Python, on top of the kernel layers");
    return rc ? rc : iso_confine_rows(rep, "process", out);
}
