/*
 * The guest side of the cell ABI: the builtins post, log, metric and
 * request, and the import guard. A guardrail, not a boundary: Python code
 * that wants out of a sub-interpreter can get out (see README).
 */
#include <errno.h>
#include <string.h>

#include "py_cell.h"
#include "py_value.h"

#define CAPSULE_NAME "isolate.cell"

/* Modules that reach host memory or other processes: refused in this
 * backend whoever imports them. */
static const char *const refused_modules[] = {
    "ctypes", "_ctypes", "multiprocessing", "_multiprocessing", NULL};

/* C accelerators that break across cells, refused so that the stdlib
 * falls back to its pure-Python twin (_pydatetime, zoneinfo._zoneinfo).
 * Measured here: in legacy cells (3.11), _zoneinfo keeps state from the
 * first interpreter that imported it, and later cells fail with NameError
 * once that one ended; in own-GIL cells (3.13.0), two cells that imported
 * _datetime corrupt the heap when they end. */
static const char *const broken_accelerators[] = {"_zoneinfo",
#if ISO_OWN_GIL
                                                  "_datetime",
#endif
                                                  NULL};

/* Test-only extension modules (prefix match): native code written to poke
 * at the interpreter's internals, never a guest's business. */
static const char *const test_extensions[] = {"_test", "_ctypes_test",
                                              "_xxtestfuzz", NULL};

bool iso_py_extension_refused(const char *module)
{
    for (int i = 0; refused_modules[i]; i++)
        if (strcmp(module, refused_modules[i]) == 0)
            return true;
    for (int i = 0; broken_accelerators[i]; i++)
        if (strcmp(module, broken_accelerators[i]) == 0)
            return true;
    for (int i = 0; test_extensions[i]; i++)
        if (strncmp(module, test_extensions[i], strlen(test_extensions[i])) ==
            0)
            return true;
    return false;
}

static iso_cell *cell_of(PyObject *self)
{
    return PyCapsule_GetPointer(self, CAPSULE_NAME);
}

static bool name_under(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

static bool is_refused(iso_cell *c, const char *name)
{
    if (c->backend != ISO_BACKEND_SUBINTERPRETER)
        return false; /* a process cell is contained by the kernel layers */
    for (int i = 0; refused_modules[i]; i++)
        if (name_under(name, refused_modules[i]))
            return true;
    return false;
}

static bool is_broken_accelerator(const char *name)
{
    for (int i = 0; broken_accelerators[i]; i++)
        if (strcmp(name, broken_accelerators[i]) == 0)
            return true;
    return false;
}

static bool is_allowed(iso_cell *c, const char *name)
{
    for (size_t i = 0; i < c->n_imports; i++)
        if (name_under(name, c->imports[i]))
            return true;
    return false;
}

/* An import is a module's own (not guest code) when the code asking for
 * it runs in the namespace of a module registered in sys.modules. The
 * caller's frame tells, not __import__'s globals argument: modules call
 * __import__() without one, and guest code could pass any dict. */
static bool from_module(void)
{
    PyObject *globals = PyEval_GetGlobals(); /* borrowed; the caller's */
    if (!globals || !PyDict_Check(globals))
        return false;
    PyObject *name = PyDict_GetItemString(globals, "__name__");
    if (!name || !PyUnicode_Check(name) ||
        PyUnicode_CompareWithASCIIString(name, "__main__") == 0)
        return false;
    PyObject *mod = PyDict_GetItem(PyImport_GetModuleDict(), name);
    return mod && PyModule_Check(mod) && PyModule_GetDict(mod) == globals;
}

static int check_import(iso_cell *c, const char *name, int level)
{
    /* A relative import stays inside a package that already passed. */
    if (level > 0 && from_module())
        return 0;
    if (is_refused(c, name)) {
        iso_py_emit_denial(c, "import", "import", name, "refused");
        PyErr_Format(PyExc_ImportError,
                     "import of '%s' is refused in subinterpreter cells (it "
                     "reaches host memory or processes); use "
                     "backend='process'",
                     name);
        return -1;
    }
    if (is_broken_accelerator(name)) {
        PyErr_Format(PyExc_ImportError,
                     "'%s' is unavailable in cells: this C accelerator "
                     "breaks when interpreters end (the pure-Python module "
                     "is used instead)",
                     name);
        return -1;
    }
    if (from_module())
        return 0;
    if (level > 0) {
        PyErr_SetString(PyExc_ImportError,
                        "relative imports are not available to cell code");
        return -1;
    }
    if (!is_allowed(c, name)) {
        iso_py_emit_denial(c, "import", "import", name, "default deny");
        PyErr_Format(PyExc_ImportError,
                     "import of '%s' is not allowed in this cell: add it to "
                     "the spawn option imports = {\"%s\"}",
                     name, name);
        return -1;
    }
    return 0;
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
    iso_cell *c = cell_of(self);
    if (check_import(c, name, level) < 0)
        return NULL;
    PyObject *m = PyObject_Call(((iso_py_cell *)c->py)->real_import, args, kw);
    if (m && iso_py_guard_patch_os(c) < 0)
        Py_CLEAR(m);
    return m;
}

PyObject *iso_py_guest_import(iso_cell *c, const char *name)
{
    if (check_import(c, name, 0) < 0)
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
static int charge_output(iso_cell *c, iso_msg *m, int64_t *charged)
{
    int64_t n = (int64_t)iso_value_string_bytes(&m->value);
    if (c->output_bytes <= 0 || c->output_used + n <= c->output_bytes) {
        c->output_used += n;
        *charged = n;
        return 0;
    }
    iso_msg_destroy(m);
    char msg[128];
    snprintf(msg, sizeof msg,
             "limits.output_bytes=%lld exceeded: this cell "
             "has posted and logged %lld bytes",
             (long long)c->output_bytes, (long long)c->output_used);
    PyObject *args = Py_BuildValue("(is)", EFBIG, msg); /* OSError.errno */
    if (args)
        PyErr_SetObject(PyExc_OSError, args);
    Py_XDECREF(args);
    return -1;
}

/* Charge m (consumed) to output_bytes and hand it to the host. A
 * sub-interpreter cell whose host queues are full is refused here, before
 * the host's memory grows: OSError(ENOBUFS) until the host takes some. */
static PyObject *enqueue(iso_cell *c, iso_msg *m)
{
    int64_t charged = 0;
    if (charge_output(c, m, &charged) < 0)
        return NULL;
    if (iso_cell_push(c, m) == 0)
        Py_RETURN_NONE;
    c->output_used -= charged; /* it was not sent */
    char why[96], msg[256];
    iso_cell_queue_why(c, why, sizeof why);
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

static PyObject *post_value(iso_cell *c, iso_msg *m, PyObject *obj)
{
    if (iso_py_to_value(obj, &m->value) < 0) {
        iso_msg_destroy(m);
        return NULL;
    }
    return enqueue(c, m);
}

/* Send a message whose value is the list of items (borrowed). Each item
 * is converted on its own, so it may nest as deep as a posted value. */
static PyObject *send(iso_cell *c, iso_msg_type type, PyObject **items,
                      size_t n)
{
    iso_msg *m = iso_msg_new(type);
    if (!m)
        return PyErr_NoMemory();
    if (type == ISO_MSG_POST) /* a post carries the value itself */
        return post_value(c, m, items[0]);
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
        return enqueue(c, m);
    iso_cell_push(c, m);
    Py_RETURN_NONE;
}

static PyObject *guest_post(PyObject *self, PyObject *obj)
{
    return send(cell_of(self), ISO_MSG_POST, &obj, 1);
}

static PyObject *guest_log(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *level, *message;
    if (!PyArg_ParseTuple(args, "UU:log", &level, &message))
        return NULL;
    PyObject *items[] = {level, message, kw ? kw : Py_None};
    return send(cell_of(self), ISO_MSG_LOG, items, 3);
}

static PyObject *guest_metric(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "value", "tags", NULL};
    PyObject *name, *value, *tags = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "UO|O:metric", kwlist, &name,
                                     &value, &tags))
        return NULL;
    if (!PyLong_Check(value) && !PyFloat_Check(value))
        return PyErr_Format(PyExc_TypeError, "metric value must be a number");
    if (tags != Py_None && !PyDict_Check(tags))
        return PyErr_Format(PyExc_TypeError, "metric tags must be a dict");
    PyObject *items[] = {name, value, tags};
    return send(cell_of(self), ISO_MSG_METRIC, items, 3);
}

/* ---- request: the broker ----------------------------------------------- */

static bool granted(iso_cell *c, const char *cap)
{
    for (size_t i = 0; i < c->n_capabilities; i++)
        if (strcmp(cap, c->capabilities[i]) == 0)
            return true;
    return false;
}

/* Block (GIL released) until the host answers or the cell is stopping. */
static bool wait_reply(iso_cell *c)
{
    bool ready = false;
    PyThreadState *ts = PyEval_SaveThread();
    if (c->await_reply_hook) /* a worker process: the answer is a frame */
        ready = c->await_reply_hook(c);
    while (!ready && !atomic_load(&c->stop)) {
        uint32_t seen = iso_signal_peek(&c->to_cell);
        pthread_mutex_lock(&c->mu);
        ready = c->reply_ready;
        c->reply_ready = false;
        pthread_mutex_unlock(&c->mu);
        if (!ready)
            iso_signal_wait(&c->to_cell, seen, -1);
    }
    iso_py_take_gil(ts);
    return ready;
}

static PyObject *take_reply(iso_cell *c)
{
    pthread_mutex_lock(&c->mu);
    char *error = c->reply_error;
    iso_value v = c->reply;
    c->reply_error = NULL;
    memset(&c->reply, 0, sizeof c->reply);
    pthread_mutex_unlock(&c->mu);
    PyObject *r = NULL;
    if (error)
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
    iso_cell *c = cell_of(self);
    Py_ssize_t action_len = 0;
    if (!PyUnicode_AsUTF8AndSize(action, &action_len))
        return NULL;
    if (strlen(cap) > ISO_REQUEST_TEXT_MAX ||
        action_len > ISO_REQUEST_TEXT_MAX) /* a process host refuses more */
        return PyErr_Format(PyExc_ValueError,
                            "request(): capability and action are at most "
                            "%d bytes each",
                            ISO_REQUEST_TEXT_MAX);
    if (!granted(c, cap)) {
        iso_py_emit_denial(c, "capability", "request", cap, "default deny");
        return PyErr_Format(PyExc_PermissionError,
                            "capability '%s' is not granted to this cell: add "
                            "it to the spawn option capabilities = {\"%s\"}",
                            cap, cap);
    }
    PyObject *name = PyUnicode_FromString(cap);
    PyObject *items[] = {name, action, payload};
    PyObject *sent = name ? send(c, ISO_MSG_REQUEST, items, 3) : NULL;
    Py_XDECREF(name);
    if (!sent)
        return NULL;
    Py_DECREF(sent);
    if (!wait_reply(c))
        return PyErr_Format(PyExc_RuntimeError,
                            "request('%s'): the cell is closing", cap);
    return take_reply(c);
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
    {"__import__", (PyCFunction)(void (*)(void))guard_import,
     METH_VARARGS | METH_KEYWORDS, "import guard of this cell"},
    {NULL, NULL, 0, NULL},
};

static int install_one(PyObject *builtins, PyMethodDef *def, PyObject *self)
{
    PyObject *fn = PyCFunction_New(def, self);
    int rc = fn ? PyDict_SetItemString(builtins, def->ml_name, fn) : -1;
    Py_XDECREF(fn);
    return rc;
}

int iso_py_guest_install(iso_cell *c, iso_error *err)
{
    iso_py_cell *p = c->py;
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    PyObject *self = PyCapsule_New(c, CAPSULE_NAME, NULL);
    p->real_import =
        builtins ? PyDict_GetItemString(builtins, "__import__") : NULL;
    Py_XINCREF(p->real_import);
    int rc = self && p->real_import ? 0 : -1;
    for (PyMethodDef *d = guest_methods; rc == 0 && d->ml_name; d++)
        rc = install_one(builtins, d, self);
    Py_XDECREF(self);
    if (rc) {
        PyErr_Clear();
        return iso_error_set(err, ISO_CRASHED,
                             "cannot install the guest builtins");
    }
    return 0;
}
