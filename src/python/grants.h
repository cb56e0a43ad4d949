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

typedef struct iso_grants {
    iso_fs_grant *g; /* n of them; the paths are owned */
    size_t n, cap;
} iso_grants;

/* Find the runtime's paths (sys.path, libpython's directory, shared
 * libraries, name resolution files) once per process; needs an attached
 * thread state. Later calls do nothing. */
void iso_grants_prepare(void);
/* Add the runtime's paths found by iso_grants_prepare (none before it).
 * With carve (sub-interpreter cells), the extension modules such a cell
 * never loads (iso_py_extension_refused) are left out: every directory on
 * the way to one is granted as a listing plus each of its entries on its
 * own, since Landlock cannot take a grant back beneath a directory. */
void iso_grants_runtime(iso_grants *gs, bool carve);
/* Give back, file by file, the carved-out test extensions (_testcapi,
 * ...) that imports names exactly: an operator who lists one asked for it
 * (CPython's own tests need them). No other refused extension is ever
 * given back. After a carved iso_grants_runtime. */
void iso_grants_opted_in(iso_grants *gs, char *const *imports, size_t n);
/* How many extension files the carved runtime grants leave out (0 before
 * the first carved iso_grants_runtime); loaded gets the path of one of
 * them the process had loaded already when they were found ("" if none):
 * dlopen reuses a loaded copy without opening its file. */
size_t iso_grants_refused_count(char *loaded, size_t n);
/* The directory of every allow/read/write rule of plan (NULL: none). */
void iso_grants_plan(iso_grants *gs, const iso_plan *plan);
void iso_grants_free(iso_grants *gs);

#endif
