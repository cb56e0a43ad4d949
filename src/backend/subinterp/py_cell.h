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
    /* py_guard.c: the originals behind the guarded functions */
    PyObject *real_open, *real_stat, *real_lstat, *opener;
    bool os_patched; /* os.open, os.stat... wrapped (once os is imported) */
    PyObject *real_listen; /* _socket.socket.listen */
    bool socket_patched;   /* socket.socket.listen wrapped (once imported) */
    char **roots;          /* what the interpreter itself reads: sys.path */
    size_t n_roots;
    /* py_guest.c: where module code lives (sys.path at start, as given and
     * resolved), and the isolate_cell module the guest builtins belong to */
    char **module_roots;
    size_t n_module_roots;
    PyObject *guest_module;
} iso_py_cell;

/* Set up the current interpreter (p->ts current, GIL held) as cell c:
 * persistent __main__, guest builtins, import guard, fs/net guards. */
int iso_py_cell_setup(iso_cell *c, iso_py_cell *p, iso_error *err);
/* The abandoned guests' part of iso_runtime_info (any thread). */
void iso_abandoned_get(iso_runtime_info *info);
/* Run one request; the RESULT message (NULL on OOM). */
iso_msg *iso_py_cell_run(iso_cell *c, iso_py_cell *p, iso_req *r);

/* Guest ABI (py_guest.c): install post/log/metric/request and the import
 * guard into the current interpreter. GIL held. */
int iso_py_guest_install(iso_cell *c, iso_error *err);
/* After the guards are in: open/io.open become isolate_cell's picklable
 * wrapper of the guard's open, and _imp.create_dynamic the extension
 * registry's (sub-interpreter cells). GIL held. */
int iso_py_guest_finish(iso_cell *c, iso_error *err);
void iso_py_guest_clear(iso_py_cell *p);
/* Interpreter interp_id has ended: what it leased (_datetime in own-GIL
 * cells) is free for the next cell. */
void iso_py_guest_interp_ended(int64_t interp_id);
/* Find what every cell's guard needs once (a zygote, before it forks). */
void iso_py_guest_warm(void);
/* Sub-interpreter cells (py_extensions.c): _imp.create_dynamic refuses a
 * single-phase extension another interpreter loaded first. GIL held. */
int iso_py_extensions_install(iso_cell *c);
/* The audit hook's part for code creation (compile, code.__new__,
 * marshal.load[s]): guest code may not mint code that claims to be a
 * module's. 0, or -1 with an exception set. */
int iso_py_guest_audit(iso_cell *c, const char *event, PyObject *args);
/* Is module (a top-level name) an extension a sub-interpreter cell never
 * loads: the refused modules, the broken accelerators and the test-only
 * extensions? Landlock leaves their files out of a cell thread's grants. */
bool iso_py_extension_refused(const char *module);
/* The pending exception, normalised, with its traceback (new reference;
 * NULL if none), and back (steals exc): PyErr_GetRaisedException and
 * PyErr_SetRaisedException on every CPython this builds with. */
PyObject *iso_py_take_exception(void);
void iso_py_restore_exception(PyObject *exc);
/* Is module one of CPython's test extensions (_testcapi, ...)? */
bool iso_py_test_extension(const char *module);
/* Import a module on behalf of guest code: the import policy applies.
 * New reference, or NULL with ImportError set. */
PyObject *iso_py_guest_import(iso_cell *c, const char *name);
/* Import for the runtime itself, bypassing the guard. */
PyObject *iso_py_import(const char *name);

/* Guards (py_guard.c). The audit hook is process-wide: install it once,
 * before the runtime starts. The rest runs per cell with its GIL held. */
int iso_py_guard_hook_install(void);
int iso_py_guard_install(iso_cell *c, iso_error *err);
void iso_py_guard_clear(iso_py_cell *p);
/* Wrap os's functions once os has been imported, and socket.socket.listen
 * once socket has (idempotent). */
int iso_py_guard_patch_os(iso_cell *c);
/* Send a denial event: [capability, action, target, rule, "python-guard"]. */
/* Raise PermissionError(code, formatted message), as the kernel layer
 * refusing the same thing would (EACCES for files, EPERM otherwise), so
 * the guest sees an errno on every refusal. Returns -1. */
int iso_py_permission_error(int code, const char *fmt, ...);
void iso_py_emit_denial(iso_cell *c, const char *capability, const char *action,
                        const char *target, const char *rule);

#endif
