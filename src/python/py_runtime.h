/* The embedded CPython runtime, initialised once per process. */
#ifndef ISO_PY_RUNTIME_H
#define ISO_PY_RUNTIME_H

#include <Python.h>

#include "isolate.h"

#if PY_VERSION_HEX >= 0x030D0000
#define ISO_OWN_GIL 1 /* each cell: own GIL, own allocator */
#else
#define ISO_OWN_GIL 0 /* legacy sub-interpreters sharing one GIL */
#endif

/* Initialise CPython on first use. Safe from any thread; blocks the first
 * caller for the runtime's start-up. Returns 0 or -1 with err. */
int iso_py_runtime_init(iso_error *err);
/* The initialising thread's state, released: a worker process runs its
 * cell on the main thread and takes it back with PyEval_RestoreThread. */
PyThreadState *iso_py_main_thread_state(void);
/* Take the GIL as ts (PyEval_RestoreThread), fairly between legacy
 * sub-interpreters; every cell thread takes it this way. */
void iso_py_take_gil(PyThreadState *ts);
/* An interpreter about to end: no thread may wait at its door again.
 * One that waits already keeps it from ending (see alone_in_interpreter). */
void iso_py_forget_interp(PyInterpreterState *interp);
/* A cell thread's own thread state (GIL held): legacy cells hand the GIL
 * on through its interpreter (iso_py_take_gil, and a nudger thread). */
void iso_py_register_cell_thread(PyThreadState *ts);
/* What cells report as sys.executable: the build's Python when it is
 * there under the running version's name, else "" (never another one). */
const char *iso_py_executable(void);
/* The Python part of iso_runtime_info: version and GIL mode (the
 * sub-interpreter backend adds its abandoned guests). */
void iso_py_runtime_info(iso_runtime_info *info);
/* The main interpreter (the legacy cells' parent). */
PyInterpreterState *iso_py_main_interp(void);

#endif
