/*
 * The guest's requests (guest.h): set up an interpreter as a guest, run
 * exec and call requests in it, and turn what the guest raised into an
 * iso_error. The same code serves a sub-interpreter cell's thread and a
 * process worker's main thread.
 */
#include <stdlib.h>
#include <string.h>

#include "grants.h"
#include "guest.h"
#include "msg.h"
#include "py_alloc.h"
#include "py_value.h"

#define CODE_CACHE_MAX 256 /* compiled sources kept per guest */

/* One request as the runner sees it: source text to exec, or a call
 * target with its list of arguments. */
typedef struct request {
    const char *text;
    size_t len;
    const iso_value *args; /* a call's */
} request;

/* ---- set-up and teardown ----------------------------------------------- */

/* sys.executable and sys._base_executable name the interpreter the cell
 * runs (see iso_py_executable), not what CPython's path search found on
 * the host's PATH (a pyenv shim, or another version's python3). */
static int set_executable(void)
{
    PyObject *exe = PyUnicode_DecodeFSDefault(iso_py_executable());
    int rc = exe ? PySys_SetObject("executable", exe) |
                       PySys_SetObject("_base_executable", exe)
                 : -1;
    Py_XDECREF(exe);
    return rc ? -1 : 0;
}

int iso_guest_setup(iso_guest *g, iso_error *err)
{
    iso_py_state *p = g->py;
    p->interp = PyThreadState_GetInterpreter(p->ts);
    iso_mem_account_bind(g->mem_account, p->interp); /* guest threads */
    p->thread_id = PyThread_get_thread_ident();
    PyObject *main = PyImport_AddModule("__main__"); /* borrowed */
    p->globals = main ? PyModule_GetDict(main) : NULL;
    Py_XINCREF(p->globals);
    p->code_cache = PyDict_New();
    if (!p->globals || !p->code_cache || set_executable()) {
        PyErr_Clear();
        return iso_error_set(err, ISO_CRASHED, "cannot set up __main__");
    }
    if (iso_py_guest_install(g, err))
        return -1;
    iso_grants_prepare(); /* cells confine themselves without the GIL */
    if (iso_py_guard_install(g, err))
        return -1;
    return iso_py_guest_finish(g, err);
}

/* What setup made, cleared (the interpreter itself is the backend's). */
void iso_guest_clear(iso_guest *g)
{
    iso_py_state *p = g->py;
    PyObject *d = PyInterpreterState_GetDict(p->interp);
    if (d && PyDict_DelItemString(d, "isolate.cell") < 0)
        PyErr_Clear(); /* the guards stop seeing this guest */
    iso_py_guard_clear(p);
    iso_py_guest_clear(p);
    Py_CLEAR(p->globals);
    Py_CLEAR(p->code_cache);
    Py_CLEAR(p->real_import);
}

/* ---- guest errors ------------------------------------------------------ */

static char *format_traceback(PyObject *exc)
{
    PyObject *tb = iso_py_import("traceback");
    PyObject *lines =
        tb ? PyObject_CallMethod(tb, "format_exception", "O", exc) : NULL;
    PyObject *sep = PyUnicode_FromString("");
    PyObject *text = lines && sep ? PyUnicode_Join(sep, lines) : NULL;
    const char *s = text ? PyUnicode_AsUTF8(text) : NULL;
    char *out = s ? strdup(s) : NULL;
    Py_XDECREF(tb);
    Py_XDECREF(lines);
    Py_XDECREF(sep);
    Py_XDECREF(text);
    PyErr_Clear();
    return out;
}

PyObject *iso_py_take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

void iso_py_restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
#endif
}

/* exc ended the request: if it is the ImportError the guard raised for the
 * import it refused last (same module name; a guest may catch one and
 * raise another), err names that module, and the host the option. */
static void note_refused_import(iso_guest *g, PyObject *exc, iso_error *err)
{
    if (!*g->refused_import ||
        !PyErr_GivenExceptionMatches(exc, PyExc_ImportError))
        return;
    PyObject *name = PyObject_GetAttrString(exc, "name");
    const char *s = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name)
                                                   : NULL;
    if (s && strcmp(s, g->refused_import) == 0)
        snprintf(err->refused_import, sizeof err->refused_import, "%s", s);
    Py_XDECREF(name);
    PyErr_Clear();
}

/* A guard's refusal names the rule that would allow it (py_guard.c's
 * isolate_fix): err->suggestion, when it is a str. Only a
 * plain PermissionError's (what the guard raises): its attributes are its
 * instance dict, and no guest code runs to read them. */
static void take_fix(PyObject *exc, iso_error *err)
{
    if (Py_TYPE(exc) != (PyTypeObject *)PyExc_PermissionError)
        return;
    PyObject *fix = PyObject_GetAttrString(exc, "isolate_fix");
    const char *s = fix && PyUnicode_Check(fix) ? PyUnicode_AsUTF8(fix) : NULL;
    if (s && strlen(s) <= ISO_PATH_MAX + 64) /* a rule: a path and a verb */
        err->suggestion = strdup(s);
    Py_XDECREF(fix);
    PyErr_Clear();
}

/* Turn the pending Python exception into err (kind as given). */
static void take_exception(iso_guest *g, iso_error *err, iso_kind kind)
{
    PyObject *exc = iso_py_take_exception();
    PyObject *msg = exc ? PyObject_Str(exc) : NULL;
    const char *m = msg ? PyUnicode_AsUTF8(msg) : NULL;
    /* The cell ran out of its memory limit. A worker says so only under
     * limits.mem: its host believes kind memory from nothing else. */
    if (exc && PyErr_GivenExceptionMatches(exc, PyExc_MemoryError) &&
        (g->backend != ISO_BACKEND_PROCESS || g->mem_limit > 0))
        kind = ISO_MEMORY;
    if (kind == ISO_MEMORY && iso_mem_account_refused(g->mem_account))
        iso_error_set(err, kind, "cell '%s' reached limits.mem (%lld bytes)",
                      g->name, (long long)g->mem_limit);
    else if (!m || (!*m && kind == ISO_MEMORY))
        iso_error_set(err, kind, "%s",
                      kind == ISO_MEMORY ? "out of memory" : "unknown error");
    else
        iso_error_set(err, kind, "%s", m);
    PyErr_Clear();
    if (exc) {
        const char *type = Py_TYPE(exc)->tp_name;
        const char *dot = strrchr(type, '.');
        snprintf(err->python, sizeof err->python, "%s", dot ? dot + 1 : type);
        g->quiet = true; /* reading source for the traceback is ours */
        if (kind == ISO_GUEST)
            err->traceback = format_traceback(exc);
        g->quiet = false;
        if (kind == ISO_GUEST)
            take_fix(exc, err);
    }
    Py_XDECREF(msg);
    if (exc && kind == ISO_GUEST)
        note_refused_import(g, exc, err);
    Py_XDECREF(exc);
}

/* ---- requests ---------------------------------------------------------- */

static PyObject *compile_cached(iso_guest *g, iso_py_state *p, const request *r)
{
    PyObject *key = PyUnicode_DecodeUTF8(r->text, (Py_ssize_t)r->len, NULL);
    if (!key)
        return NULL;
    PyObject *code = PyDict_GetItemWithError(p->code_cache, key);
    if (code) {
        Py_INCREF(code);
    } else if (!PyErr_Occurred()) {
        char filename[ISO_NAME_MAX + 8];
        snprintf(filename, sizeof filename, "<%s>", g->name);
        code = Py_CompileString(r->text, filename, Py_file_input);
        if (code && PyDict_GET_SIZE(p->code_cache) >= CODE_CACHE_MAX)
            PyDict_Clear(p->code_cache);
        if (code && PyDict_SetItem(p->code_cache, key, code) < 0)
            Py_CLEAR(code);
    }
    Py_DECREF(key);
    return code;
}

static PyObject *run_exec(iso_guest *g, iso_py_state *p, const request *r)
{
    if (strlen(r->text) != r->len)
        return PyErr_Format(PyExc_ValueError, "source contains a NUL byte");
    PyObject *code = compile_cached(g, p, r);
    if (!code)
        return NULL;
    PyObject *res = PyEval_EvalCode(code, p->globals, p->globals);
    Py_DECREF(code);
    if (!res)
        return NULL;
    Py_DECREF(res);
    Py_RETURN_NONE;
}

/* "name", "name.attr..." from __main__, or "module.func" via the guard. */
static PyObject *resolve_target(iso_guest *g, iso_py_state *p, const char *t)
{
    size_t head_len = strcspn(t, ".");
    PyObject *head = PyUnicode_FromStringAndSize(t, (Py_ssize_t)head_len);
    PyObject *obj = head ? PyDict_GetItemWithError(p->globals, head) : NULL;
    if (head && !obj && !PyErr_Occurred()) /* then builtins, as Python does */
        obj = PyDict_GetItemWithError(PyEval_GetBuiltins(), head);
    Py_XDECREF(head);
    const char *rest = t + head_len;
    if (obj) {
        Py_INCREF(obj);
    } else if (PyErr_Occurred()) {
        return NULL;
    } else if (!*rest) {
        return PyErr_Format(PyExc_NameError, "name '%s' is not defined", t);
    } else {
        rest = strrchr(t, '.');
        char *module = strndup(t, (size_t)(rest - t));
        obj = module ? iso_py_guest_import(g, module) : PyErr_NoMemory();
        free(module);
    }
    while (obj && *rest == '.') {
        const char *next = rest + 1 + strcspn(rest + 1, ".");
        PyObject *name = PyUnicode_FromStringAndSize(
            rest + 1, (Py_ssize_t)(next - rest - 1));
        PyObject *attr = name ? PyObject_GetAttr(obj, name) : NULL;
        Py_XDECREF(name);
        Py_DECREF(obj);
        obj = attr;
        rest = next;
    }
    return obj;
}

/* Arguments one by one, so each may nest as deep as a posted value. */
static PyObject *call_args(const iso_value *list)
{
    size_t n = list->u.seq.len;
    PyObject *args = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; args && i < n; i++) {
        PyObject *item = iso_py_from_value(&list->u.seq.items[i]);
        if (!item)
            Py_CLEAR(args);
        else
            PyTuple_SET_ITEM(args, (Py_ssize_t)i, item);
    }
    return args;
}

static PyObject *run_call(iso_guest *g, iso_py_state *p, const request *r)
{
    PyObject *fn = resolve_target(g, p, r->text);
    PyObject *args = fn ? call_args(r->args) : NULL;
    PyObject *res = args ? PyObject_Call(fn, args, NULL) : NULL;
    Py_XDECREF(fn);
    Py_XDECREF(args);
    return res;
}

iso_msg *iso_guest_run(iso_guest *g, bool call, const char *text, size_t len,
                       const iso_value *args)
{
    iso_msg *m = iso_msg_new(ISO_MSG_RESULT);
    if (!m)
        return NULL;
    const request req = {text, len, args}, *r = &req;
    iso_py_state *p = g->py;
    g->refused_import[0] = '\0';
    PyObject *res = call ? run_call(g, p, r) : run_exec(g, p, r);
    if (!res)
        take_exception(g, &m->error, ISO_GUEST);
    else if (iso_py_to_value(res, &m->value) < 0)
        take_exception(g, &m->error, ISO_VALUE);
    Py_XDECREF(res);
    return m;
}
