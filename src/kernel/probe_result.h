/*
 * What the host probes share (private to src/kernel/probe*.c): the result
 * each probe fills, and the probes kept in files of their own.
 *
 *   probe.c         the result helpers, the forked children, and the
 *                   python, seccomp, no_new_privs, landlock, userns, kvm
 *                   and vmm probes; iso_probe_host runs them all
 *   probe_bpf.c     bpf: cgroup_sock_addr, lsm and ring buffer programs
 *   probe_cgroup.c  cgroup: the v2 mount, writable, threaded, controllers
 */
#ifndef ISO_PROBE_RESULT_H
#define ISO_PROBE_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate.h"

/* One probe's map being filled; *oom is shared by all and sticky, so a
 * probe reads as a list of facts and memory is checked once at the end. */
typedef struct iso_probe {
    iso_value *map;
    bool *oom;
} iso_probe;

/* The probe `name` in all (an ISO_MAP), its map started. */
iso_probe iso_probe_begin(iso_value *all, const char *name, bool *oom);
/* A new field of p's map (NULL, *oom set, when memory ran out). */
iso_value *iso_probe_field(iso_probe *p, const char *key);
void iso_probe_put_bool(iso_probe *p, const char *key, bool b);
void iso_probe_put_int(iso_probe *p, const char *key, int64_t i);
void iso_probe_put_text(iso_probe *p, const char *key, const char *s);
/* Every probe ends with ok, detail and, when not ok, advice. */
void iso_probe_verdict(iso_probe *p, bool ok, const char *detail,
                       const char *advice);
/* snprintf that keeps the format checked; truncation is fine for text. */
const char *iso_probe_fmt(char *buf, size_t n, const char *f, ...)
    __attribute__((format(printf, 3, 4)));

/* The probes of probe_bpf.c and probe_cgroup.c (fields: probe.h). */
void iso_probe_bpf(iso_value *all, bool *oom);
void iso_probe_cgroup(iso_value *all, bool *oom);

#endif
