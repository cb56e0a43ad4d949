/*
 * Landlock grants for a cell: the CPython runtime read-only (sys.path,
 * libpython's directory, shared libraries) plus the directories of the
 * policy's fs rules. Landlock can only say "this directory and what is
 * beneath it", so the grants are a superset of the policy: deny rules and
 * wildcards stay the python-guard's to enforce on top.
 */
#ifndef ISO_GRANTS_H
#define ISO_GRANTS_H

#include "confine.h"

#define ISO_GRANTS_MAX 128

typedef struct iso_grants {
    iso_fs_grant g[ISO_GRANTS_MAX];
    char *owned[ISO_GRANTS_MAX];
    size_t n;
} iso_grants;

/* Find the runtime's paths (sys.path, libpython's directory, shared
 * libraries, name resolution files) once per process; needs an attached
 * thread state. Later calls do nothing. */
void iso_grants_prepare(void);
/* Add the runtime's paths found by iso_grants_prepare (none before it). */
void iso_grants_runtime(iso_grants *gs);
/* The directory of every allow/read/write rule of plan (NULL: none). */
void iso_grants_plan(iso_grants *gs, const iso_plan *plan);
void iso_grants_free(iso_grants *gs);

#endif
