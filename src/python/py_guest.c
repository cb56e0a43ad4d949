/*
 * The guest side of the cell ABI: the builtins post, log, metric and
 * request, and the import guard. A guardrail, not a boundary: Python code
 * that wants out of a sub-interpreter can get out (see README).
 *
 * Longer than 600 lines because the builtins and the import guard share the guest's
 * module state (guest_state) and its import rules; the code-forgery audit
 * belongs with the import guard it protects.
 */
#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"
#include "msg.h"
#include "marshal.h"
#include "py_metric.h"
#include "py_value.h"

#define GUEST_MODULE "isolate_cell"

/* Modules that reach host memory or other processes: refused in this
 * backend whoever imports them. */
static const char *const refused_modules[] = {
    "ctypes", "_ctypes", "multiprocessing", "_multiprocessing", NULL};

/* C accelerators that break across cells, refused so that the stdlib
 * falls back to its pure-Python twin (zoneinfo._zoneinfo). Measured here:
 * in legacy cells (3.11), _zoneinfo keeps state from the first interpreter
 * that imported it, and later cells fail with NameError once that one
 * ended. Own-GIL cells lease it with _datetime instead (below). */
static const char *const broken_accelerators[] = {
#if !ISO_OWN_GIL
    "_zoneinfo",
#endif
    NULL};

#if ISO_OWN_GIL
/* _datetime in own-GIL cells (CPython 3.13.0). Measured here: two isolated
 * interpreters that hold it at the same time corrupt the heap when they
 * end ("double free or corruption"), while any number of them holding it
 * one after another end cleanly (also with the main interpreter holding
 * it). So it is leased: the first cell that imports it holds it until its
 * interpreter has ended; meanwhile other cells get ImportError, and
 * datetime quietly uses _pydatetime, as it does wherever _datetime is
 * missing. _zoneinfo, which needs _datetime's C API, comes with the same
 * lease (measured: fine in the one interpreter holding both, a crash when
 * interpreters without _datetime load it). A leaked interpreter (guest
 * threads still alive) never gives it back. */
static pthread_mutex_t datetime_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t datetime_holder = -1; /* an interpreter id, or -1 */

static bool lease_datetime(void)
{
    int64_t me = PyInterpreterState_GetID(PyInterpreterState_Get());
    pthread_mutex_lock(&datetime_mu);
    bool mine = datetime_holder < 0 || datetime_holder == me;
    if (mine)
        datetime_holder = me;
    pthread_mutex_unlock(&datetime_mu);
    return mine;
}

void iso_py_guest_interp_ended(int64_t interp_id)
{
    pthread_mutex_lock(&datetime_mu);
    if (datetime_holder == interp_id)
        datetime_holder = -1;
    pthread_mutex_unlock(&datetime_mu);
}

static int check_leased(iso_guest *g, const char *name)
{
    if (g->backend != ISO_BACKEND_SUBINTERPRETER ||
        (strcmp(name, "_datetime") != 0 && strcmp(name, "_zoneinfo") != 0) ||
        lease_datetime())
        return 0;
    PyErr_Format(PyExc_ImportError,
                 "'%s' is in use by another own-GIL cell, and two at once "
                 "corrupt CPython 3.13's heap (the pure-Python module is "
                 "used instead)",
                 name);
    return -1;
}
#else
void iso_py_guest_interp_ended(int64_t interp_id)
{
    (void)interp_id;
}

static int check_leased(iso_guest *g, const char *name)
{
    (void)g, (void)name;
    return 0;
}
#endif

/* Test-only extension modules (prefix match): native code written to poke
 * at the interpreter's internals, never a guest's business unless the
 * operator names one in imports (iso_grants_opted_in). */
static const char *const test_extensions[] = {"_test", "_ctypes_test",
                                              "_xxtestfuzz", NULL};

bool iso_py_test_extension(const char *module)
{
    for (int i = 0; test_extensions[i]; i++)
        if (strncmp(module, test_extensions[i], strlen(test_extensions[i])) ==
            0)
            return true;
    return false;
}

bool iso_py_extension_refused(const char *module)
{
    for (int i = 0; refused_modules[i]; i++)
        if (strcmp(module, refused_modules[i]) == 0)
            return true;
    for (int i = 0; broken_accelerators[i]; i++)
        if (strcmp(module, broken_accelerators[i]) == 0)
            return true;
    return iso_py_test_extension(module);
}

/* The state of a cell's isolate_cell module: the guest builtins are its
 * functions (so they pickle by reference, as plain Python's do), and they
 * find their cell here, where Python code cannot reach. */
typedef struct guest_state {
    iso_guest *g;
    PyObject *guard_open;     /* the fs guard's open() */
    PyObject *create_dynamic; /* _imp.create_dynamic before the registry */
} guest_state;

static iso_guest *guest_of(PyObject *self)
{
    guest_state *st = PyModule_GetState(self);
    return st ? st->g : NULL;
}

static bool name_under(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

static bool is_refused(iso_guest *g, const char *name)
{
    if (g->backend != ISO_BACKEND_SUBINTERPRETER)
        return false; /* a process cell is contained by the kernel layers */
    for (int i = 0; refused_modules[i]; i++)
        if (name_under(name, refused_modules[i]))
            return true;
    return false;
}

static bool is_broken_accelerator(iso_guest *g, const char *name)
{
    if (g->backend != ISO_BACKEND_SUBINTERPRETER)
        return false; /* one interpreter per process: nothing ends early */
    for (int i = 0; broken_accelerators[i]; i++)
        if (strcmp(name, broken_accelerators[i]) == 0)
            return true;
    return false;
}

/* __future__ holds only feature flags, and `from __future__ import
 * annotations` at the top of guest code must run as in plain Python. */
static bool is_allowed(iso_guest *g, const char *name)
{
    if (strcmp(name, "__future__") == 0)
        return true;
    for (size_t i = 0; i < g->n_imports; i++)
        if (name_under(name, g->imports[i]))
            return true;
    return false;
}

/* ---- who is importing ------------------------------------------------- */

/* The IMPORT_NAME opcode of this CPython, read from the opcode module once
 * per process (the same in every interpreter of it). */
static _Atomic int import_name_op = -1;

static int learn_import_name_op(void)
{
    if (atomic_load(&import_name_op) >= 0)
        return 0;
    PyObject *opcode = iso_py_import("opcode");
    PyObject *map = opcode ? PyObject_GetAttrString(opcode, "opmap") : NULL;
    PyObject *op = map ? PyDict_GetItemString(map, "IMPORT_NAME") : NULL;
    long v = op ? PyLong_AsLong(op) : -1;
    Py_XDECREF(opcode), Py_XDECREF(map);
    if (v < 0 || v > 255)
        return -1;
    atomic_store(&import_name_op, (int)v);
    return 0;
}

static bool path_under(const char *path, const char *root)
{
    size_t n = strlen(root);
    return strncmp(path, root, n) == 0 && (path[n] == '/' || n == 1);
}

/* Where module code lives: a file under a sys.path root of the cell's
 * start, or a frozen stdlib module ("<frozen posixpath>"). */
static bool module_filename(iso_py_state *p, PyObject *filename)
{
    const char *f = filename && PyUnicode_Check(filename)
                        ? PyUnicode_AsUTF8(filename)
                        : NULL;
    if (!f) {
        PyErr_Clear(); /* a str that cannot be UTF-8 names no module */
        return false;
    }
    if (f[0] == '<') {
        size_t n = strlen(f);
        return strncmp(f, "<frozen ", 8) == 0 && n > 9 && f[n - 1] == '>';
    }
    for (size_t i = 0; f[0] == '/' && i < p->n_module_roots; i++)
        if (path_under(f, p->module_roots[i]))
            return true;
    return false;
}

static bool module_code(iso_py_state *p, PyCodeObject *code)
{
    return module_filename(p, code->co_filename);
}

typedef enum importer {
    BY_MODULE,    /* module code: its own imports */
    BY_STATEMENT, /* guest code's own import statement */
    BY_CALL,      /* guest code called something that imports: __import__(...)
                   * directly, or C code such as _pickle (it has no frame) */
} importer;

/* Is frame executing IMPORT_NAME (an import statement)? */
static bool at_import_statement(PyFrameObject *frame, PyCodeObject *code)
{
    int lasti = PyFrame_GetLasti(frame);
    PyObject *bytes = lasti >= 0 ? PyCode_GetCode(code) : NULL;
    bool yes = bytes && PyBytes_Check(bytes) &&
               lasti < PyBytes_GET_SIZE(bytes) &&
               (unsigned char)PyBytes_AS_STRING(bytes)[lasti] ==
                   atomic_load(&import_name_op);
    Py_XDECREF(bytes);
    return yes;
}

/* Judged by the code object of the nearest Python frame, never by its
 * globals: a module's __name__ and sys.modules entry are the module's (and
 * the guest's) to change, and guest code may run in a module's globals
 * (exec(src, json.__dict__)). Code objects claiming a module file cannot
 * be made by guest code (iso_py_guest_audit). */
static importer who_imports(iso_guest *g)
{
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    if (!frame)
        return BY_CALL;
    PyCodeObject *code = PyFrame_GetCode(frame);
    importer who = module_code(g->py, code)           ? BY_MODULE
                   : at_import_statement(frame, code) ? BY_STATEMENT
                                                      : BY_CALL;
    Py_DECREF(code);
    return who;
}

/* The form C code's PyImport_Import() asks in: globals and an empty list
 * as fromlist. A loaded module asked for that way is handed back as it is
 * (nothing new is loaded): _pickle finds builtins, copyreg, the module of
 * the class it pickles. */
static PyObject *loaded_for_c(const char *name, PyObject *globals,
                              PyObject *fromlist, int level)
{
    if (level != 0 || !globals || !PyDict_Check(globals) || !fromlist ||
        !PyList_CheckExact(fromlist) || PyList_GET_SIZE(fromlist) != 0)
        return NULL;
    PyObject *key = PyUnicode_FromString(name);
    PyObject *mod = key ? PyImport_GetModule(key) : NULL;
    Py_XDECREF(key);
    PyErr_Clear();
    return mod;
}

static int refuse_import(iso_guest *g, const char *name, const char *rule)
{
    iso_py_emit_denial(g, "import", "import", name, rule);
    if (g->learn)
        return 0; /* recorded: the import runs */
    snprintf(g->refused_import, sizeof g->refused_import, "%s", name);
    PyObject *msg = PyUnicode_FromFormat(
        "import of '%s' is not allowed in this cell: add it to the spawn "
        "option imports = {\"%s\"}",
        name, name);
    PyObject *mod = PyUnicode_FromString(name);
    if (msg && mod) /* ImportError.name, as CPython's own import errors */
        PyErr_SetImportError(msg, mod, NULL);
    Py_XDECREF(msg);
    Py_XDECREF(mod);
    return -1;
}

static int check_import(iso_guest *g, const char *name, int level, importer who)
{
    /* A relative import stays inside a package that already passed. */
    if (level > 0 && who == BY_MODULE)
        return 0;
    if (is_refused(g, name)) {
        iso_py_emit_denial(g, "import", "import", name, "refused");
        PyErr_Format(PyExc_ImportError,
                     "import of '%s' is refused in subinterpreter cells (it "
                     "reaches host memory or processes); use "
                     "backend='process'",
                     name);
        return -1;
    }
    if (is_broken_accelerator(g, name)) {
        PyErr_Format(PyExc_ImportError,
                     "'%s' is unavailable in subinterpreter cells: this C "
                     "accelerator breaks when interpreters end (the "
                     "pure-Python module is used instead)",
                     name);
        return -1;
    }
    if (check_leased(g, name) < 0)
        return -1;
    if (who == BY_MODULE)
        return 0;
    if (level > 0) {
        PyErr_SetString(PyExc_ImportError,
                        "relative imports are not available to cell code");
        return -1;
    }
    return is_allowed(g, name) ? 0 : refuse_import(g, name, "default deny");
}

int iso_py_permission_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    PyObject *args = msg ? Py_BuildValue("(iN)", code, msg) : NULL;
    if (args)
        PyErr_SetObject(PyExc_PermissionError, args);
    Py_XDECREF(args);
    return -1;
}

/* ---- code that claims to be a module's ---------------------------------- */

static int refuse_forgery(iso_guest *g, const char *event, const char *target)
{
    iso_py_emit_denial(g, "import", event, target, "module code forgery");
    return iso_py_permission_error(
        EPERM,
        "%s: cell code cannot make code that claims to come from '%s' "
        "(module code may import what cell code may not)",
        event, target);
}

/* Does obj (a marshal.loads result) hold a code object claiming a module
 * file? Nesting past depth counts as yes: fail closed. */
static bool holds_module_code(iso_py_state *p, PyObject *obj, int depth)
{
    if (depth > 100)
        return true;
    if (PyCode_Check(obj)) {
        PyObject *consts = PyObject_GetAttrString(obj, "co_consts");
        bool yes = module_code(p, (PyCodeObject *)obj) ||
                   (consts && holds_module_code(p, consts, depth + 1));
        Py_XDECREF(consts);
        return yes;
    }
    if (PyDict_Check(obj)) {
        PyObject *k, *v;
        for (Py_ssize_t i = 0; PyDict_Next(obj, &i, &k, &v);)
            if (holds_module_code(p, k, depth + 1) ||
                holds_module_code(p, v, depth + 1))
                return true;
        return false;
    }
    if (!PyTuple_Check(obj) && !PyList_Check(obj) && !PyAnySet_Check(obj))
        return false;
    PyObject *it = PyObject_GetIter(obj), *item;
    bool yes = false;
    while (it && !yes && (item = PyIter_Next(it)) != NULL) {
        yes = holds_module_code(p, item, depth + 1);
        Py_DECREF(item);
    }
    Py_XDECREF(it);
    PyErr_Clear();
    return yes;
}

static _Thread_local bool reading_marshal; /* our own look at the data */

/* marshal.loads(data) from cell code: read the data once more to see. */
static int check_marshal(iso_guest *g, PyObject *args)
{
    PyObject *data = PyTuple_Size(args) > 0 ? PyTuple_GetItem(args, 0) : NULL;
    Py_buffer view;
    if (reading_marshal || !data || PyObject_GetBuffer(data, &view, 0) < 0) {
        PyErr_Clear();
        return 0; /* not bytes-like: marshal.loads refuses it itself */
    }
    reading_marshal = true;
    PyObject *obj =
        PyMarshal_ReadObjectFromString(view.buf, (Py_ssize_t)view.len);
    reading_marshal = false;
    PyBuffer_Release(&view);
    bool forged = obj && holds_module_code(g->py, obj, 0);
    Py_XDECREF(obj);
    PyErr_Clear(); /* bad data: marshal.loads raises the real error */
    return forged ? refuse_forgery(g, "marshal.loads", "marshalled code") : 0;
}

int iso_py_guest_audit(iso_guest *g, const char *event, PyObject *args)
{
    int filename_arg = strcmp(event, "compile") == 0        ? 1
                       : strcmp(event, "code.__new__") == 0 ? 1
                                                            : -1;
    bool marshal = strncmp(event, "marshal.load", 12) == 0;
    if (filename_arg < 0 && !marshal)
        return 0;
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    PyCodeObject *code = frame ? PyFrame_GetCode(frame) : NULL;
    bool trusted = !code || module_code(g->py, code); /* C, or a module */
    Py_XDECREF(code);
    if (trusted)
        return 0;
    if (strcmp(event, "marshal.load") == 0) /* a file: no data to look at */
        return refuse_forgery(g, "marshal.load",
                              "a file (read it and use "
                              "marshal.loads)");
    if (marshal)
        return check_marshal(g, args);
    PyObject *filename = PyTuple_Size(args) > filename_arg
                             ? PyTuple_GetItem(args, filename_arg)
                             : NULL;
    PyErr_Clear();
    if (!module_filename(g->py, filename))
        return 0;
    return refuse_forgery(g, event, PyUnicode_AsUTF8(filename));
}

static PyObject *guard_import(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name",     "globals", "locals",
                             "fromlist", "level",   NULL};
    const char *name;
    PyObject *globals = NULL, *locals = NULL, *fromlist = NULL;
    int level = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|OOOi:__import__", kwlist,
                                     &name, &globals, &locals, &fromlist,
                                     &level))
        return NULL;
    iso_guest *g = guest_of(self);
    importer who = who_imports(g);
    if (who == BY_CALL && !is_allowed(g, name) && !is_refused(g, name)) {
        PyObject *mod = loaded_for_c(name, globals, fromlist, level);
        if (mod || PyErr_Occurred())
            return mod;
    }
    if (check_import(g, name, level, who) < 0)
        return NULL;
    PyObject *m = PyObject_Call(((iso_py_state *)g->py)->real_import, args, kw);
    if (m && iso_py_guard_patch_os(g) < 0)
        Py_CLEAR(m);
    return m;
}

PyObject *iso_py_guest_import(iso_guest *g, const char *name)
{
    if (check_import(g, name, 0, BY_STATEMENT) < 0)
        return NULL;
    return iso_py_import(name);
}

PyObject *iso_py_import(const char *name)
{
    /* The import machinery itself, not builtins.__import__ (the guard). */
    PyObject *top = PyImport_ImportModuleLevel(name, NULL, NULL, NULL, 0);
    if (!top)
        return NULL;
    Py_DECREF(top);
    PyObject *key = PyUnicode_FromString(name);
    PyObject *mod = key ? PyImport_GetModule(key) : NULL;
    Py_XDECREF(key);
    if (!mod && !PyErr_Occurred())
        PyErr_Format(PyExc_ImportError, "no module named '%s'", name);
    return mod;
}

/* ---- post, log, metric ------------------------------------------------- */

/* limits.output_bytes bounds what a cell posts, logs and measures
 * (strings and bytes in them), whatever the backend. A process cell's host
 * counts the same way and kills a worker that sends more. */
static int charge_output(iso_guest *g, iso_msg *m, int64_t *charged)
{
    int64_t n = (int64_t)iso_value_string_bytes(&m->value);
    if (g->output_bytes <= 0 || g->output_used + n <= g->output_bytes) {
        g->output_used += n;
        *charged = n;
        return 0;
    }
    iso_msg_destroy(m);
    char msg[128];
    snprintf(msg, sizeof msg,
             "limits.output_bytes=%lld exceeded: this cell "
             "has posted and logged %lld bytes",
             (long long)g->output_bytes, (long long)g->output_used);
    PyObject *args = Py_BuildValue("(is)", EFBIG, msg); /* OSError.errno */
    if (args)
        PyErr_SetObject(PyExc_OSError, args);
    Py_XDECREF(args);
    return -1;
}

/* Charge m (consumed) to output_bytes and hand it to the host. A
 * sub-interpreter cell whose host queues are full is refused here, before
 * the host's memory grows: OSError(ENOBUFS) until the host takes some. */
static PyObject *enqueue(iso_guest *g, iso_msg *m)
{
    int64_t charged = 0;
    if (charge_output(g, m, &charged) < 0)
        return NULL;
    if (g->sink.send(g->sink.ctx, m) == 0)
        Py_RETURN_NONE;
    g->output_used -= charged; /* it was not sent */
    char why[96] = "a queue limit", msg[256];
    if (g->sink.why_refused)
        g->sink.why_refused(g->sink.ctx, why, sizeof why);
    snprintf(msg, sizeof msg,
             "the host holds %s of this cell's posts and events already: "
             "the host must recv() sooner, or raise the limit",
             why);
    PyObject *args = Py_BuildValue("(is)", ENOBUFS, msg);
    if (args)
        PyErr_SetObject(PyExc_OSError, args);
    Py_XDECREF(args);
    return NULL;
}

static PyObject *post_value(iso_guest *g, iso_msg *m, PyObject *obj)
{
    if (iso_py_to_value(obj, &m->value) < 0) {
        iso_msg_destroy(m);
        return NULL;
    }
    return enqueue(g, m);
}

/* Send a message whose value is the list of items (borrowed). Each item
 * is converted on its own, so it may nest as deep as a posted value. */
static PyObject *send(iso_guest *g, iso_msg_type type, PyObject **items,
                      size_t n)
{
    iso_msg *m = iso_msg_new(type);
    if (!m)
        return PyErr_NoMemory();
    if (type == ISO_MSG_POST) /* a post carries the value itself */
        return post_value(g, m, items[0]);
    iso_value_set_list(&m->value);
    for (size_t i = 0; i < n; i++) {
        iso_value *slot = iso_list_append(&m->value);
        if (!slot || iso_py_to_value(items[i], slot) < 0) {
            if (!slot)
                PyErr_NoMemory();
            iso_msg_destroy(m);
            return NULL;
        }
    }
    if (type != ISO_MSG_REQUEST)
        return enqueue(g, m);
    g->sink.send(g->sink.ctx, m); /* refused only once it is stopping */
    Py_RETURN_NONE;
}

static PyObject *guest_post(PyObject *self, PyObject *obj)
{
    return send(guest_of(self), ISO_MSG_POST, &obj, 1);
}

static PyObject *guest_log(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *level, *message;
    if (!PyArg_ParseTuple(args, "UU:log", &level, &message))
        return NULL;
    PyObject *items[] = {level, message, kw ? kw : Py_None};
    return send(guest_of(self), ISO_MSG_LOG, items, 3);
}

static PyObject *guest_metric(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "value", "tags", NULL};
    PyObject *name, *value, *tags = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "UO|O:metric", kwlist, &name,
                                     &value, &tags))
        return NULL;
    if (iso_py_metric_check(name, value, tags) < 0)
        return NULL; /* the host would not keep it: say why here */
    PyObject *items[] = {name, value, tags};
    return send(guest_of(self), ISO_MSG_METRIC, items, 3);
}

/* ---- request: the broker ----------------------------------------------- */

static bool granted(iso_guest *g, const char *cap)
{
    for (size_t i = 0; i < g->n_capabilities; i++)
        if (strcmp(cap, g->capabilities[i]) == 0)
            return true;
    return false;
}

/* Block (GIL released) until the host answers or the guest is stopping;
 * then the answer, as a Python value or RuntimeError. */
static PyObject *take_reply(iso_guest *g, const char *cap)
{
    iso_value v = {0};
    char *error = NULL;
    PyThreadState *ts = PyEval_SaveThread();
    bool ready = g->sink.await_reply(g->sink.ctx, &v, &error);
    iso_py_take_gil(ts);
    PyObject *r = NULL;
    if (!ready)
        PyErr_Format(PyExc_RuntimeError, "request('%s'): the cell is closing",
                     cap);
    else if (error)
        PyErr_SetString(PyExc_RuntimeError, error);
    else
        r = iso_py_from_value(&v);
    free(error);
    iso_value_free(&v);
    return r;
}

static PyObject *guest_request(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"capability", "action", "payload", NULL};
    const char *cap;
    PyObject *action, *payload = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sU|O:request", kwlist, &cap,
                                     &action, &payload))
        return NULL;
    iso_guest *g = guest_of(self);
    Py_ssize_t action_len = 0;
    if (!PyUnicode_AsUTF8AndSize(action, &action_len))
        return NULL;
    if (strlen(cap) > ISO_REQUEST_TEXT_MAX ||
        action_len > ISO_REQUEST_TEXT_MAX) /* a process host refuses more */
        return PyErr_Format(PyExc_ValueError,
                            "request(): capability and action are at most "
                            "%d bytes each",
                            ISO_REQUEST_TEXT_MAX);
    bool ok = granted(g, cap);
    if (!ok) /* learn mode: recorded, and the request goes to the host */
        iso_py_emit_denial(g, "capability", "request", cap, "default deny");
    if (!ok && !g->learn) {
        iso_py_permission_error(EPERM,
                                "capability '%s' is not granted to this "
                                "cell: add it to the spawn option "
                                "capabilities = {\"%s\"}",
                                cap, cap);
        return NULL;
    }
    PyObject *name = PyUnicode_FromString(cap);
    PyObject *items[] = {name, action, payload};
    PyObject *sent = name ? send(g, ISO_MSG_REQUEST, items, 3) : NULL;
    Py_XDECREF(name);
    if (!sent)
        return NULL;
    Py_DECREF(sent);
    return take_reply(g, cap);
}

/* ---- open(): the guard's, picklable ------------------------------------ */

/* open() as the fs guard wraps it, bound to isolate_cell but named as the
 * real io.open is (its __module__ copied), so that pickle finds it at the
 * same place as in plain Python. */
static PyObject *guest_open(PyObject *self, PyObject *args, PyObject *kw)
{
    guest_state *st = PyModule_GetState(self);
    return PyObject_Call(st->guard_open, args, kw);
}

/* ---- installation ------------------------------------------------------ */

static PyMethodDef guest_methods[] = {
    {"post", guest_post, METH_O, "post(obj): send obj to the host's recv()"},
    {"log", (PyCFunction)(void (*)(void))guest_log,
     METH_VARARGS | METH_KEYWORDS, "log(level, message, **fields)"},
    {"metric", (PyCFunction)(void (*)(void))guest_metric,
     METH_VARARGS | METH_KEYWORDS, "metric(name, value, tags=None)"},
    {"request", (PyCFunction)(void (*)(void))guest_request,
     METH_VARARGS | METH_KEYWORDS,
     "request(capability, action, payload=None): ask the host's broker"},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef import_def = {
    "__import__", (PyCFunction)(void (*)(void))guard_import,
    METH_VARARGS | METH_KEYWORDS, "import guard of this cell"};

static PyMethodDef open_def = {"open", (PyCFunction)(void (*)(void))guest_open,
                               METH_VARARGS | METH_KEYWORDS,
                               "open() vetted by the cell's fs rules"};

static int guest_traverse(PyObject *m, visitproc visit, void *arg)
{
    guest_state *st = PyModule_GetState(m);
    Py_VISIT(st->guard_open);
    Py_VISIT(st->create_dynamic);
    return 0;
}

static int guest_clear_state(PyObject *m)
{
    guest_state *st = PyModule_GetState(m);
    Py_CLEAR(st->guard_open);
    Py_CLEAR(st->create_dynamic);
    return 0;
}

static void guest_free(void *m)
{
    guest_clear_state(m);
}

static struct PyModuleDef guest_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = GUEST_MODULE,
    .m_doc = "the cell's side of the host: post, log, metric, request",
    .m_size = sizeof(guest_state),
    .m_methods = guest_methods,
    .m_traverse = guest_traverse,
    .m_clear = guest_clear_state,
    .m_free = guest_free,
};

/* PyModuleDef_Init writes the def: once, before two cells could race. */
static pthread_once_t guest_def_once = PTHREAD_ONCE_INIT;
static void init_guest_def(void)
{
    PyModuleDef_Init(&guest_def);
}

/* The site-packages directories (site.getsitepackages()): cells start
 * without them on sys.path, but a guest that adds one (and may read it)
 * imports third-party packages whose code is module code too. The same
 * for every interpreter of the process: found once (a process cell's
 * zygote finds them for all its children). */
static struct {
    pthread_mutex_t mu;
    bool ready;
    char **dirs;
    size_t n;
} site_dirs = {PTHREAD_MUTEX_INITIALIZER, false, NULL, 0};

static char **site_packages(size_t *n)
{
    pthread_mutex_lock(&site_dirs.mu);
    bool ready = site_dirs.ready;
    pthread_mutex_unlock(&site_dirs.mu);
    if (!ready) { /* importing may let the GIL go: no lock held meanwhile */
        PyObject *site = iso_py_import("site");
        PyObject *l =
            site ? PyObject_CallMethod(site, "getsitepackages", NULL) : NULL;
        Py_ssize_t len = l && PyList_Check(l) ? PyList_GET_SIZE(l) : 0;
        char **dirs = calloc((size_t)len + 1, sizeof *dirs);
        size_t k = 0;
        for (Py_ssize_t i = 0; dirs && i < len; i++) {
            PyObject *item = PyList_GET_ITEM(l, i);
            const char *s =
                PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
            if (s && s[0] == '/' && (dirs[k] = strdup(s)) != NULL)
                k++;
        }
        Py_XDECREF(site), Py_XDECREF(l);
        PyErr_Clear();
        pthread_mutex_lock(&site_dirs.mu);
        if (!site_dirs.ready && dirs) {
            site_dirs.dirs = dirs, site_dirs.n = k, site_dirs.ready = true;
            dirs = NULL;
        }
        pthread_mutex_unlock(&site_dirs.mu);
        for (size_t i = 0; dirs && dirs[i]; i++)
            free(dirs[i]);
        free(dirs);
    }
    *n = site_dirs.n;
    return site_dirs.dirs;
}

void iso_py_guest_warm(void)
{
    size_t n;
    site_packages(&n);
}

/* Add dir, and its real path when that differs. */
static void add_root(iso_py_state *p, const char *dir)
{
    char real[PATH_MAX];
    p->module_roots[p->n_module_roots++] = strdup(dir);
    if (realpath(dir, real) && strcmp(real, dir) != 0)
        p->module_roots[p->n_module_roots++] = strdup(real);
}

/* Where module code lives: sys.path at start and the site-packages
 * directories, as given and resolved. Fixed for the cell's life: a guest
 * that could add a root could call its own code a module's. */
static int collect_module_roots(iso_py_state *p)
{
    size_t n_site;
    char **site = site_packages(&n_site);
    PyObject *path = PySys_GetObject("path"); /* borrowed */
    Py_ssize_t n = path && PyList_Check(path) ? PyList_GET_SIZE(path) : 0;
    p->module_roots =
        calloc(2 * ((size_t)n + n_site) + 1, sizeof *p->module_roots);
    if (!p->module_roots)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(path, i);
        const char *s = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        if (s && s[0] == '/')
            add_root(p, s);
    }
    for (size_t i = 0; i < n_site; i++)
        add_root(p, site[i]);
    PyErr_Clear();
    for (size_t i = 0; i < p->n_module_roots; i++)
        if (!p->module_roots[i])
            return -1;
    return 0;
}

static int install_one(PyObject *builtins, PyObject *module, const char *name)
{
    PyObject *fn = PyObject_GetAttrString(module, name);
    int rc = fn ? PyDict_SetItemString(builtins, name, fn) : -1;
    Py_XDECREF(fn);
    return rc;
}

static int install_builtins(iso_guest *g, PyObject *builtins, PyObject *mod)
{
    iso_py_state *p = g->py;
    guest_state *st = PyModule_GetState(mod);
    st->g = g;
    int rc = PyDict_SetItemString(PyImport_GetModuleDict(), GUEST_MODULE, mod);
    for (PyMethodDef *d = guest_methods; rc == 0 && d->ml_name; d++)
        rc = install_one(builtins, mod, d->ml_name);
    PyObject *imp = rc == 0 ? PyCFunction_NewEx(&import_def, mod, NULL) : NULL;
    p->real_import = PyDict_GetItemString(builtins, "__import__");
    Py_XINCREF(p->real_import);
    rc = imp && p->real_import
             ? PyDict_SetItemString(builtins, "__import__", imp)
             : -1;
    Py_XDECREF(imp);
    return rc;
}

int iso_py_guest_install(iso_guest *g, iso_error *err)
{
    iso_py_state *p = g->py;
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    pthread_once(&guest_def_once, init_guest_def);
    p->guest_module = PyModule_Create(&guest_def);
    int rc = builtins && p->guest_module ? 0 : -1;
    if (rc == 0)
        rc = install_builtins(g, builtins, p->guest_module) ||
             collect_module_roots(p) || learn_import_name_op();
    if (rc) {
        PyErr_Clear();
        return iso_error_set(err, ISO_CRASHED,
                             "cannot install the guest builtins");
    }
    return 0;
}

/* builtins.open, io.open and the real open's own module (_io on 3.12+)
 * become isolate_cell's open around the guard's. */
static int wrap_open(iso_py_state *p)
{
    guest_state *st = PyModule_GetState(p->guest_module);
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    st->guard_open = PyDict_GetItemString(builtins, "open");
    Py_XINCREF(st->guard_open);
    PyObject *io = iso_py_import("io"), *raw = iso_py_import("_io");
    PyObject *real = raw ? PyObject_GetAttrString(raw, "open") : NULL;
    PyObject *where = real ? PyObject_GetAttrString(real, "__module__") : NULL;
    PyObject *fn = where && st->guard_open
                       ? PyCFunction_NewEx(&open_def, p->guest_module, where)
                       : NULL;
    PyObject *home = fn && PyUnicode_Check(where)
                         ? iso_py_import(PyUnicode_AsUTF8(where))
                         : NULL;
    int rc = home ? PyDict_SetItemString(builtins, "open", fn) |
                        PyObject_SetAttrString(io, "open", fn) |
                        PyObject_SetAttrString(home, "open", fn)
                  : -1;
    Py_XDECREF(io), Py_XDECREF(raw), Py_XDECREF(real), Py_XDECREF(where);
    Py_XDECREF(fn), Py_XDECREF(home);
    return rc ? -1 : 0;
}

int iso_py_guest_finish(iso_guest *g, iso_error *err)
{
    iso_py_state *p = g->py;
    int rc = wrap_open(p);
    if (rc == 0 && g->backend == ISO_BACKEND_SUBINTERPRETER)
        rc = iso_py_extensions_install(g);
    if (rc) {
        PyErr_Clear();
        return iso_error_set(err, ISO_CRASHED,
                             "cannot install the guest's open and the "
                             "extension registry");
    }
    return 0;
}

void iso_py_guest_clear(iso_py_state *p)
{
    Py_CLEAR(p->guest_module);
    for (size_t i = 0; i < p->n_module_roots; i++)
        free(p->module_roots[i]);
    free(p->module_roots);
    p->module_roots = NULL;
    p->n_module_roots = 0;
}
