/* Backend state of one sub-interpreter cell (cell thread only). */
#ifndef ISO_PY_CELL_H
#define ISO_PY_CELL_H

#include "cell.h"
#include "py_runtime.h"

typedef struct iso_py_cell {
    PyThreadState *ts;  /* the cell's own thread state */
    PyThreadState *aux; /* legacy: main-interpreter state that parented it */
    PyInterpreterState *interp;
    PyObject *globals;     /* __main__.__dict__, persistent across requests */
    PyObject *code_cache;  /* source text -> code object */
    PyObject *real_import; /* builtins.__import__ before the guard */
} iso_py_cell;

/* Guest ABI (py_guest.c): install post/log/metric/request and the import
 * guard into the current interpreter. GIL held. */
int iso_py_guest_install(iso_cell *c, iso_error *err);
/* Import a module on behalf of guest code: the import policy applies.
 * New reference, or NULL with ImportError set. */
PyObject *iso_py_guest_import(iso_cell *c, const char *name);
/* Import for the runtime itself, bypassing the guard. */
PyObject *iso_py_import(const char *name);

#endif
