/*
 * A single-phase-init extension module for spec/extensions_spec.lua, made
 * the way numpy's _multiarray_umath is: its PyModuleDef has no slots and
 * it keeps a Python object (made by the interpreter that loaded it first)
 * in a C static. Another interpreter that used that object after the first
 * one ended would touch freed memory; the cell runtime must refuse it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *registry; /* a dict of the first interpreter's */

/* count(): how many times this interpreter's calls touched the static. */
static PyObject *count(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    PyObject *n = PyDict_GetItemString(registry, "calls");
    long v = n ? PyLong_AsLong(n) + 1 : 1;
    PyObject *next = PyLong_FromLong(v);
    if (!next || PyDict_SetItemString(registry, "calls", next) < 0) {
        Py_XDECREF(next);
        return NULL;
    }
    return next;
}

static PyMethodDef methods[] = {
    {"count", count, METH_NOARGS, "count calls in the C static's dict"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef def = {
    PyModuleDef_HEAD_INIT,
    "singlephase",
    "single-phase init test module",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit_singlephase(void);
PyMODINIT_FUNC PyInit_singlephase(void)
{
    PyObject *m = PyModule_Create(&def);
    if (m && !registry)
        registry = PyDict_New();
    if (m && (!registry || PyModule_AddObjectRef(m, "registry", registry))) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
