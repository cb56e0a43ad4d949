/*
 * The BPF network guard as cells use it (guard_routes.c): install a plan's
 * rules for a cgroup and route that cgroup's denials to whoever asked,
 * through a small table from cgroup id to a (deliver, context) pair. It
 * knows no cell: a backend passes its own deliver.
 */
#ifndef ISO_GUARD_ROUTES_H
#define ISO_GUARD_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isolate.h"

/* Take denial m (consumed): a DENIAL message, source "kernel". Called with
 * the table's lock held (iso_guard_drain). */
typedef void (*iso_guard_deliver)(void *ctx, iso_msg *m);

/* A guard in force: the cgroup it covers and how many rules it holds. */
typedef struct iso_guard {
    uint64_t cgroup_id; /* 0: none */
    int rules;
    bool audit; /* set before install: learn mode, log and allow */
} iso_guard;

/* Install plan's net rules for the cgroup at dir (cgroup_id 0: look it up)
 * before anything runs in it, and route its denials to deliver(ctx, m).
 * False, with why, when the guard cannot (the cell then falls back to
 * Landlock's port rules). */
bool iso_guard_install(iso_guard *g, const iso_plan *plan, const char *dir,
                       uint64_t cgroup_id, iso_guard_deliver deliver, void *ctx,
                       char *why, size_t n);
/* Replace the rules in force with plan's: 0, or -1 with err (nothing
 * changed then). */
int iso_guard_update(iso_guard *g, const iso_plan *plan, iso_error *err);
/* Remove the rules and the route; after it returns, deliver is not called
 * for this guard again. */
void iso_guard_remove(iso_guard *g);
/* The guard's confinement row (why: the reason it is missing). */
int iso_guard_row(const iso_guard *g, iso_value *list, const char *scope,
                  const char *why);
/* Hand the kernel's pending denials to their routes. */
void iso_guard_drain(void);

#endif
