/*
 * Extension modules that cannot live in more than one interpreter.
 *
 * A single-phase-init extension (its PyModuleDef has no m_slots: numpy's
 * _multiarray_umath, PyYAML's _yaml) keeps Python objects in C statics.
 * In legacy sub-interpreters (3.11) a second interpreter that imports it
 * gets a copy of the first one's module dict, objects of another
 * interpreter: ImportError at best ("Interpreter change detected"), and a
 * crash of the whole host once the first interpreter ended. So each
 * cell's _imp.create_dynamic is wrapped: a process-wide registry, by the
 * extension's file, remembers which interpreter first loaded a
 * single-phase one (interpreter ids are never reused), and every other
 * interpreter gets ImportError naming backend="process".
 *
 * Per CPython version:
 *  - 3.11 (legacy cells, one shared GIL): the registry decides for
 *    third-party extensions. The stdlib's own single-phase modules in
 *    lib-dynload (_decimal, _datetime, ...) stay available in every cell:
 *    CPython's own multi-interpreter tests load them in sub-interpreters;
 *    those measured to break when a cell ends are refused by name in
 *    py_guest.c (broken_accelerators).
 *  - 3.12+ (own-GIL cells): CPython itself refuses every single-phase
 *    extension in them (check_multi_interp_extensions = 1). The registry
 *    check stays as a second line (it never finds an owner there).
 * On every version, an extension's own refusal of a second interpreter
 * (CPython's, Cython's, numpy's) is re-raised with the same advice and
 * recorded as a denial.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"
#include "handoff.h"

#define GUARD_CAPSULE "isolate.extensions"

static struct {
    pthread_mutex_t mu;
    struct ext_owner {
        char *origin;  /* the extension file */
        int64_t owner; /* the interpreter that loaded it */
    } * e;
    size_t n, cap;
} registry = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

/* The interpreter that owns the extension at origin, or -1. */
static int64_t owner_of(const char *origin)
{
    int64_t owner = -1;
    pthread_mutex_lock(&registry.mu);
    for (size_t i = 0; i < registry.n && owner < 0; i++)
        if (strcmp(registry.e[i].origin, origin) == 0)
            owner = registry.e[i].owner;
    pthread_mutex_unlock(&registry.mu);
    return owner;
}

/* Remember the first owner (out of memory: not remembered, and the next
 * interpreter is refused by CPython's own check or not at all). */
static void record_owner(const char *origin, int64_t owner)
{
    char *copy = strdup(origin);
    pthread_mutex_lock(&registry.mu);
    bool known = false;
    for (size_t i = 0; i < registry.n && !known; i++)
        known = strcmp(registry.e[i].origin, origin) == 0;
    if (!known && copy &&
        iso_room_for_one((void **)&registry.e, &registry.cap, registry.n,
                         sizeof *registry.e)) {
        registry.e[registry.n++] = (struct ext_owner){copy, owner};
        copy = NULL;
    }
    pthread_mutex_unlock(&registry.mu);
    free(copy);
}

typedef struct ext_guard {
    iso_guest *guest;
    PyObject *real; /* _imp.create_dynamic */
} ext_guard;

static void guard_free(PyObject *capsule)
{
    ext_guard *g = PyCapsule_GetPointer(capsule, GUARD_CAPSULE);
    if (g)
        Py_XDECREF(g->real);
    free(g);
}

static bool single_phase(PyObject *m)
{
    PyModuleDef *def = PyModule_Check(m) ? PyModule_GetDef(m) : NULL;
    PyErr_Clear();
    return def && def->m_slots == NULL;
}

/* In the stdlib's lib-dynload (see the top of this file)? */
static bool stdlib_extension(const char *origin)
{
#if ISO_OWN_GIL
    (void)origin;
    return false; /* CPython decides: it refuses every single-phase one */
#else
    const char *slash = strrchr(origin, '/');
    if (!slash)
        return false;
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    Py_ssize_t n = path && PyList_Check(path) ? PyList_GET_SIZE(path) : 0;
    size_t dir_len = (size_t)(slash - origin);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(path, i);
        const char *s = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        size_t len = s ? strlen(s) : 0;
        if (len == dir_len && strncmp(s, origin, len) == 0 && len >= 12 &&
            strcmp(s + len - 12, "/lib-dynload") == 0)
            return true;
    }
    PyErr_Clear();
    return false;
#endif
}

static PyObject *refuse(iso_guest *guest, PyObject *name, PyObject *origin,
                        const char *why)
{
    const char *n = PyUnicode_AsUTF8(name);
    iso_py_emit_denial(guest, "import", "import", n ? n : "?",
                       "one-interpreter extension");
    PyObject *msg = PyUnicode_FromFormat(
        "extension module '%U' cannot be loaded in this cell: %s; use "
        "backend=\"process\"",
        name, why);
    if (msg)
        PyErr_SetImportError(msg, name, origin);
    Py_XDECREF(msg);
    return NULL;
}

/* What an extension, or CPython for it, says when it will not load in a
 * second interpreter: CPython 3.12+ in own-GIL cells, Cython's modules
 * (PyYAML's _yaml) and numpy's own check. */
static const char *const one_interpreter_only[] = {
    "does not support loading in subinterpreters",
    "Interpreter change detected",
    "cannot load module more than once per process", NULL};

static bool says_one_interpreter(PyObject *exc)
{
    PyObject *text = exc && PyErr_GivenExceptionMatches(exc, PyExc_ImportError)
                         ? PyObject_Str(exc)
                         : NULL;
    const char *t = text ? PyUnicode_AsUTF8(text) : NULL;
    bool found = false;
    for (int i = 0; t && !found && one_interpreter_only[i]; i++)
        found = strstr(t, one_interpreter_only[i]) != NULL;
    Py_XDECREF(text);
    PyErr_Clear();
    return found;
}

/* An extension's (or CPython's) refusal of a second interpreter, said with
 * the advice and recorded as a denial, so that a module that falls back
 * to pure Python on ImportError (PyYAML) does not lose its C half
 * unseen. Other ImportErrors pass unchanged. */
static PyObject *advise(iso_guest *guest, PyObject *name, PyObject *origin)
{
    PyObject *exc = iso_py_take_exception();
    if (!says_one_interpreter(exc)) {
        if (exc)
            iso_py_restore_exception(exc);
        return NULL;
    }
    refuse(guest, name, origin,
           "it refuses to load in more than one interpreter, and cells are "
           "sub-interpreters");
    PyObject *mine = iso_py_take_exception();
    PyException_SetCause(mine, exc); /* steals exc */
    iso_py_restore_exception(mine);
    return NULL;
}

/* _imp.create_dynamic(spec, file=None), with the registry in front. */
static PyObject *create_dynamic(PyObject *self, PyObject *args)
{
    ext_guard *g = PyCapsule_GetPointer(self, GUARD_CAPSULE);
    PyObject *spec = PyTuple_Size(args) > 0 ? PyTuple_GetItem(args, 0) : NULL;
    PyObject *name = spec ? PyObject_GetAttrString(spec, "name") : NULL;
    PyObject *origin = name ? PyObject_GetAttrString(spec, "origin") : NULL;
    const char *o = origin && PyUnicode_Check(origin) && PyUnicode_Check(name)
                        ? PyUnicode_AsUTF8(origin)
                        : NULL;
    PyErr_Clear();
    int64_t me = PyInterpreterState_GetID(PyInterpreterState_Get());
    int64_t owner = o ? owner_of(o) : -1;
    PyObject *m = NULL;
    if (owner >= 0 && owner != me)
        refuse(g->guest, name, origin,
               "it keeps its state in C statics (single-phase init) and "
               "another sub-interpreter loaded it first");
    else if (!(m = PyObject_Call(g->real, args, NULL)) && o)
        advise(g->guest, name, origin);
    else if (m && o && single_phase(m) && !stdlib_extension(o))
        record_owner(o, me);
    Py_XDECREF(name), Py_XDECREF(origin);
    return m;
}

static PyMethodDef create_dynamic_def = {
    "create_dynamic", create_dynamic, METH_VARARGS,
    "_imp.create_dynamic, refusing single-phase extensions another "
    "interpreter owns"};

int iso_py_extensions_install(iso_guest *guest)
{
    PyObject *imp = iso_py_import("_imp");
    ext_guard *g = calloc(1, sizeof *g);
    PyObject *self = g ? PyCapsule_New(g, GUARD_CAPSULE, guard_free) : NULL;
    if (!self)
        free(g);
    PyObject *fn = self ? PyCFunction_New(&create_dynamic_def, self) : NULL;
    if (fn) {
        g->guest = guest;
        g->real = PyObject_GetAttrString(imp, "create_dynamic");
    }
    int rc =
        fn && g->real ? PyObject_SetAttrString(imp, "create_dynamic", fn) : -1;
    Py_XDECREF(imp), Py_XDECREF(self), Py_XDECREF(fn);
    return rc;
}
