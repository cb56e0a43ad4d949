/*
 * What a worker child needs from its CONFIG frame: the plan its guards
 * decide with, and the confinement (confine.c, grants.c) that the kernel
 * enforces.
 */
#include <stdio.h>
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

/* What no policy changes, before the CONFIG frame (a pool child runs it
 * while it waits): only sock, note and the cgroup fd (closed by its step)
 * stay open. */
int iso_worker_confine_early(const iso_worker_fds *fds, iso_confine_report *rep,
                             iso_error *err)
{
    int keep[] = {fds->sock, fds->note, fds->cgroup};
    iso_confine_config cc = {
        .keep_fds = keep,
        .n_keep = fds->cgroup >= 0 ? 3 : 2,
        .env = environment,
        .n_env = sizeof environment / sizeof *environment,
        .cgroup_by_fd = fds->cgroup >= 0,
        .cgroup_born_in = fds->born_in_cgroup,
        .cgroup_fd = fds->cgroup,
        .death_note_fd = fds->note,
    };
    iso_grants_prepare(); /* the zygote did it: inherited, nothing to do */
    return iso_confine_early(&cc, rep, err);
}

/* config["seccomp"]: {program = BPF bytes, traps = [[nr, name], ...]},
 * the filter the host compiled for this policy; false when absent (the
 * worker builds it) or malformed (then confinement fails). */
static int compiled_filter(const iso_value *config, iso_worker_filter *f,
                           bool *have, iso_error *err)
{
    const iso_value *sc = iso_config_field(config, "seccomp");
    const iso_value *prog = iso_config_field(sc, "program");
    const iso_value *traps = iso_config_field(sc, "traps");
    memset(f, 0, sizeof *f);
    *have = sc != NULL;
    if (!sc)
        return 0;
    size_t insn = sizeof *f->prog.filter;
    if (!prog || prog->type != ISO_BYTES || prog->u.str.len == 0 ||
        prog->u.str.len % insn || prog->u.str.len / insn > BPF_MAXINSNS ||
        !traps || traps->type != ISO_LIST)
        return iso_error_set(err, ISO_INVALID_ARGUMENT,
                             "malformed seccomp filter in the config");
    f->prog.len = (unsigned short)(prog->u.str.len / insn);
    f->prog.filter = malloc(prog->u.str.len);
    f->traps = calloc(traps->u.seq.len + 1, sizeof *f->traps);
    if (!f->prog.filter || !f->traps)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    memcpy(f->prog.filter, prog->u.str.ptr, prog->u.str.len);
    for (size_t i = 0; i < traps->u.seq.len; i++) {
        const iso_value *t = &traps->u.seq.items[i];
        if (t->type != ISO_LIST || t->u.seq.len != 2 ||
            t->u.seq.items[0].type != ISO_INT ||
            t->u.seq.items[1].type != ISO_STR)
            return iso_error_set(err, ISO_INVALID_ARGUMENT,
                                 "malformed seccomp filter in the config");
        f->traps[i].nr = (int)t->u.seq.items[0].u.i;
        snprintf(f->traps[i].name, sizeof f->traps[i].name, "%s",
                 t->u.seq.items[1].u.str.ptr);
    }
    f->n_traps = traps->u.seq.len;
    return 0;
}

/* What the policy decides: rlimits, Landlock, seccomp. */
int iso_worker_confine_late(const iso_value *config, const iso_plan *plan,
                            int note, iso_confine_report *rep, iso_error *err)
{
    const iso_value *limits = iso_config_field(config, "limits");
    iso_grants gs = {.n = 0};
    iso_grants_runtime(&gs, false); /* the kernel layers contain it */
    iso_grants_plan(&gs, plan);
    iso_confine_config cc = {
        .mem_bytes = iso_config_int(limits, "mem"),
        .cpu_ms = iso_config_int(limits, "cpu_ms"),
        .open_files = iso_config_int(limits, "open_files"),
        .output_bytes = iso_config_int(limits, "output_bytes"),
        .processes = iso_config_int(limits, "processes"),
        .connect_by_bpf = iso_config_str(config, "connect") != NULL,
        .compat = iso_config_str(config, "mode") &&
                  strcmp(iso_config_str(config, "mode"), "compat") == 0,
        .audit = iso_config_str(config, "mode") &&
                 strcmp(iso_config_str(config, "mode"), "learn") == 0,
        .grants = gs.g,
        .n_grants = gs.n,
        .death_note_fd = note,
    };
    const char **deny = iso_config_strings(config, "syscalls_deny", &cc.n_deny);
    iso_worker_filter compiled;
    bool have = false;
    int rc = deny ? iso_confine_net_from_plan(&cc, plan, err)
                  : iso_error_set(err, ISO_MEMORY, "out of memory");
    if (rc == 0)
        rc = compiled_filter(config, &compiled, &have, err);
    cc.deny_syscalls = deny;
    cc.compiled = have ? &compiled : NULL;
    if (rc == 0)
        rc = iso_confine_late(&cc, rep, err);
    if (have)
        iso_worker_filter_free(&compiled);
    iso_confine_net_free(&cc);
    free(deny);
    iso_grants_free(&gs);
    return rc;
}

static int put_phase(iso_value *list, const char *name, double at)
{
    iso_value *row = iso_list_append(list), *v;
    if (!row)
        return -1;
    iso_value_set_list(row);
    v = iso_list_append(row);
    if (!v || iso_value_set_string(v, ISO_STR, name, strlen(name)))
        return -1;
    v = iso_list_append(row);
    if (!v)
        return -1;
    iso_value_set_float(v, at);
    return 0;
}

/* The marks and the confinement steps (one per step: rows a step added
 * together share its time), in time order: [[name, iso_now()], ...]. */
static int put_phases(const iso_confine_report *rep,
                      const iso_worker_mark *marks, size_t n_marks,
                      iso_value *list)
{
    iso_value_set_list(list);
    size_t m = 0, s = 0;
    int rc = 0;
    while (rc == 0 && (m < n_marks || s < rep->n)) {
        bool step = s < rep->n &&
                    (m >= n_marks || rep->steps[s].done_at <= marks[m].at);
        if (!step) {
            rc = put_phase(list, marks[m].name, marks[m].at), m++;
            continue;
        }
        if (s == 0 || rep->steps[s].done_at != rep->steps[s - 1].done_at)
            rc = put_phase(list, rep->steps[s].layer, rep->steps[s].done_at);
        s++;
    }
    return rc;
}

int iso_worker_ready(const iso_confine_report *rep,
                     const iso_worker_mark *marks, size_t n_marks,
                     iso_value *out)
{
    iso_value *k, *rows, *phases;
    iso_value_set_map(out);
    int rc = iso_map_append(out, &k, &rows) ||
             iso_value_set_string(k, ISO_STR, "confinement", 11);
    iso_value_set_list(rows);
    rc = rc || iso_confinement_add(rows, "python-guard", "active", "process",
                                   "imports, fs, net, exec and capabilities "
                                   "in Python, on top of the kernel layers");
    rc = rc || iso_confine_rows(rep, "process", rows);
    rc = rc || iso_map_append(out, &k, &phases) ||
         iso_value_set_string(k, ISO_STR, "phases", 6);
    return rc || put_phases(rep, marks, n_marks, phases) ? -1 : 0;
}
