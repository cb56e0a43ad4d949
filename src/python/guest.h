/*
 * The guest context: everything the Python guest runtime (src/python)
 * knows of the cell it runs in. Both backends fill one: a sub-interpreter
 * cell for its thread, the process worker for itself. The runtime talks
 * to its host only through the sink, so it never sees either backend.
 */
#ifndef ISO_GUEST_H
#define ISO_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "isolate.h"
#include "py_runtime.h"

/* request(): the longest capability and action names, in bytes (a
 * process cell's host takes a longer one for a forged frame). */
#define ISO_REQUEST_TEXT_MAX 4096

/* The interpreter's own state of one guest (its thread only, with the GIL;
 * interrupters read interp and thread_id under the cell's GIL). */
typedef struct iso_py_state {
    PyThreadState *ts;  /* the guest's own thread state */
    PyThreadState *aux; /* legacy: main-interpreter state that parented it */
    PyInterpreterState *interp;
    unsigned long thread_id; /* PyThread_get_thread_ident of the guest's */
    PyObject *globals;       /* __main__.__dict__, persistent across requests */
    PyObject *code_cache;    /* source text -> code object */
    PyObject *real_import;   /* builtins.__import__ before the guard */
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
} iso_py_state;

/* Where the guest's messages go: its backend's callbacks, called on the
 * guest's thread (await_reply with the GIL released). */
typedef struct iso_guest_sink {
    /* Hand m (consumed) to the host: a result, post, log, metric, denial or
     * broker request. -1 (m destroyed) when a queue limit refused it. */
    int (*send)(void *ctx, iso_msg *m);
    /* Wait for the host's answer to the request just sent: true with the
     * value and error (malloc'd; NULL: none) moved to the caller, false
     * when the guest is stopping and no answer will come. */
    bool (*await_reply)(void *ctx, iso_value *value, char **error);
    /* Which queue limit refused a send, as "limits.<name>=N <unit>". */
    void (*why_refused)(void *ctx, char *buf, size_t n);
    void *ctx;
} iso_guest_sink;

typedef struct iso_guest {
    char name[ISO_NAME_MAX + 1];
    iso_backend backend; /* which rules CPython's sharing calls for */
    /* Set before a request runs and read only while one does. */
    char **imports, **capabilities;
    size_t n_imports, n_capabilities;
    iso_plan *plan;       /* iso_guest_plan: a reload may swap it */
    int64_t output_bytes; /* posts and logs; 0: none */
    int64_t output_used;  /* the guest's thread */
    int64_t mem_limit;    /* bytes; 0: none */
    uint32_t mem_account; /* py_alloc.c; 0: none (a worker process) */
    bool quiet;           /* the runtime's own work: no denial events */
    char refused_import[128]; /* the last import the guard refused (the
                                 guest's thread; cleared per request) */
    bool learn; /* learn mode: what the guard would deny is allowed, and its
                   denial carries where the guest was (py_guard.c) */
    iso_py_state *py;     /* NULL until set up, and once ended */
    iso_guest_sink sink;
} iso_guest;

/* The plan the guest decides with now (hot reload may swap it: read it
 * once per decision; a replaced plan lives as long as the guest). */
static inline const iso_plan *iso_guest_plan(iso_guest *g)
{
    return __atomic_load_n(&g->plan, __ATOMIC_ACQUIRE);
}

/* Set up the current interpreter (g->py->ts current, GIL held) as guest g:
 * persistent __main__, guest builtins, import guard, fs/net guards. */
int iso_guest_setup(iso_guest *g, iso_error *err);
/* Run one request (exec of source text, or call of target text with the
 * list args); the RESULT message (NULL on OOM). GIL held. */
iso_msg *iso_guest_run(iso_guest *g, bool call, const char *text, size_t len,
                       const iso_value *args);
/* Clear what setup made (GIL held; the interpreter itself stays). */
void iso_guest_clear(iso_guest *g);

/* Guest ABI (py_guest.c): install post/log/metric/request and the import
 * guard into the current interpreter. GIL held. */
int iso_py_guest_install(iso_guest *g, iso_error *err);
/* After the guards are in: open/io.open become isolate_cell's picklable
 * wrapper of the guard's open, and _imp.create_dynamic the extension
 * registry's (sub-interpreter cells). GIL held. */
int iso_py_guest_finish(iso_guest *g, iso_error *err);
void iso_py_guest_clear(iso_py_state *p);
/* Interpreter interp_id has ended: what it leased (_datetime in own-GIL
 * cells) is free for the next cell. */
void iso_py_guest_interp_ended(int64_t interp_id);
/* Find what every cell's guard needs once (a zygote, before it forks). */
void iso_py_guest_warm(void);
/* Sub-interpreter cells (py_extensions.c): _imp.create_dynamic refuses a
 * single-phase extension another interpreter loaded first. GIL held. */
int iso_py_extensions_install(iso_guest *g);
/* The audit hook's part for code creation (compile, code.__new__,
 * marshal.load[s]): guest code may not mint code that claims to be a
 * module's. 0, or -1 with an exception set. */
int iso_py_guest_audit(iso_guest *g, const char *event, PyObject *args);
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
PyObject *iso_py_guest_import(iso_guest *g, const char *name);
/* Import for the runtime itself, bypassing the guard. */
PyObject *iso_py_import(const char *name);

/* Guards (py_guard.c). The audit hook is process-wide: install it once,
 * before the runtime starts. The rest runs per guest with its GIL held. */
int iso_py_guard_hook_install(void);
int iso_py_guard_install(iso_guest *g, iso_error *err);
void iso_py_guard_clear(iso_py_state *p);
/* Wrap os's functions once os has been imported, and socket.socket.listen
 * once socket has (idempotent). */
int iso_py_guard_patch_os(iso_guest *g);
/* Raise PermissionError(code, formatted message), as the kernel layer
 * refusing the same thing would (EACCES for files, EPERM otherwise), so
 * the guest sees an errno on every refusal. Returns -1. */
int iso_py_permission_error(int code, const char *fmt, ...);
/* Send a denial event: [capability, action, target, rule, "python-guard"]. */
void iso_py_emit_denial(iso_guest *g, const char *capability,
                        const char *action, const char *target,
                        const char *rule);

#endif
