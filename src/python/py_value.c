/*
 * iso_value <-> CPython objects. The caller holds the GIL.
 *
 * Only exact C-level checks and borrowed-reference reads are used on the way
 * in (PyDict_Next, PySequence_Fast_GET_ITEM, PyLong_AsLongLongAndOverflow on
 * an int): no Python code runs, so a guest's __eq__, __iter__ or __index__
 * cannot mutate a container under us or smuggle in another type.
 */
#include "py_value.h"

#include <string.h>

/* One conversion: containers entered so far and string bytes copied. */
typedef struct py_conv {
    int depth;
    size_t bytes;
    size_t items; /* values converted so far */
} py_conv;

static int to_value(py_conv *c, PyObject *obj, iso_value *out);
static int count_item(py_conv *c);
static PyObject *from_value(const iso_value *v, int depth);

static const char *const iso_type_names[] = {
    [ISO_NIL] = "nil",     [ISO_BOOL] = "bool", [ISO_INT] = "int",
    [ISO_FLOAT] = "float", [ISO_STR] = "str",   [ISO_BYTES] = "bytes",
    [ISO_LIST] = "list",   [ISO_MAP] = "map",
};

static const char *type_name(iso_type t)
{
    if ((unsigned)t >= sizeof iso_type_names / sizeof iso_type_names[0])
        return "unknown";
    return iso_type_names[t];
}

static int set_payload(py_conv *c, iso_value *out, iso_type type, const char *p,
                       Py_ssize_t len)
{
    /* c->bytes never exceeds the limit, so the subtraction cannot wrap. */
    if ((size_t)len > ISO_VALUE_MAX_BYTES - c->bytes) {
        PyErr_Format(PyExc_ValueError,
                     "value carries more than %zu MiB of strings and bytes",
                     ISO_VALUE_MAX_BYTES >> 20);
        return -1;
    }
    c->bytes += (size_t)len;
    if (iso_value_set_string(out, type, p, (size_t)len) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int int_to_value(PyObject *obj, iso_value *out)
{
    int overflow = 0;
    long long i = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_ValueError,
                        "int out of range: only 64-bit signed integers can "
                        "cross the cell boundary");
        return -1;
    }
    if (i == -1 && PyErr_Occurred())
        return -1;
    iso_value_set_int(out, i);
    return 0;
}

static int str_to_value(py_conv *c, PyObject *obj, iso_value *out)
{
    Py_ssize_t len;
    /* Fails with UnicodeEncodeError (a ValueError) on lone surrogates. */
    const char *p = PyUnicode_AsUTF8AndSize(obj, &len);
    if (!p)
        return -1;
    return set_payload(c, out, ISO_STR, p, len);
}

static int seq_to_value(py_conv *c, PyObject *obj, iso_value *out)
{
    iso_value_set_list(out);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(obj); i++) {
        iso_value *slot = iso_list_append(out);
        if (!slot) {
            PyErr_NoMemory();
            return -1;
        }
        if (to_value(c, PySequence_Fast_GET_ITEM(obj, i), slot) < 0)
            return -1;
    }
    return 0;
}

/* bytes keys are accepted too: they are what a non-UTF-8 Lua string key
 * becomes on the way in, so such a map can travel back. */
static int key_to_value(py_conv *c, PyObject *key, iso_value *out)
{
    if (PyUnicode_Check(key) || PyBytes_Check(key) ||
        (PyLong_Check(key) && !PyBool_Check(key)))
        return to_value(c, key, out);
    PyErr_Format(PyExc_TypeError,
                 "cannot send a dict with a '%.200s' key across the cell "
                 "boundary (keys must be str, bytes or int)",
                 Py_TYPE(key)->tp_name);
    return -1;
}

static int dict_to_value(py_conv *c, PyObject *obj, iso_value *out)
{
    Py_ssize_t pos = 0;
    PyObject *key, *val;
    iso_value_set_map(out);
    while (PyDict_Next(obj, &pos, &key, &val)) {
        iso_value *k, *v;
        if (iso_map_append(out, &k, &v) < 0) {
            PyErr_NoMemory();
            return -1;
        }
        if (count_item(c) < 0 || key_to_value(c, key, k) < 0 ||
            to_value(c, val, v) < 0)
            return -1;
    }
    return 0;
}

/* The depth limit doubles as cycle detection: a cycle never bottoms out. */
static int container_to_value(py_conv *c, PyObject *obj, iso_value *out)
{
    if (c->depth >= ISO_VALUE_MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError,
                     "value nested deeper than %d levels (or cyclic)",
                     ISO_VALUE_MAX_DEPTH);
        return -1;
    }
    c->depth++;
    int rc = PyDict_Check(obj) ? dict_to_value(c, obj, out)
                               : seq_to_value(c, obj, out);
    c->depth--;
    return rc;
}

/* out is NIL on entry. Order matters: bool is an int subclass. */
/* One more value (map keys count too, as on the wire). */
static int count_item(py_conv *c)
{
    if (++c->items <= ISO_VALUE_MAX_ITEMS)
        return 0;
    PyErr_Format(PyExc_ValueError, "value holds more than %zu items",
                 ISO_VALUE_MAX_ITEMS);
    return -1;
}

static int to_value(py_conv *c, PyObject *obj, iso_value *out)
{
    if (count_item(c) < 0)
        return -1;
    if (obj == Py_None)
        return 0;
    if (PyBool_Check(obj)) {
        iso_value_set_bool(out, obj == Py_True);
        return 0;
    }
    if (PyLong_Check(obj))
        return int_to_value(obj, out);
    if (PyFloat_Check(obj)) {
        iso_value_set_float(out, PyFloat_AS_DOUBLE(obj));
        return 0;
    }
    if (PyUnicode_Check(obj))
        return str_to_value(c, obj, out);
    if (PyBytes_Check(obj))
        return set_payload(c, out, ISO_BYTES, PyBytes_AS_STRING(obj),
                           PyBytes_GET_SIZE(obj));
    if (PyByteArray_Check(obj))
        return set_payload(c, out, ISO_BYTES, PyByteArray_AS_STRING(obj),
                           PyByteArray_GET_SIZE(obj));
    if (PyList_Check(obj) || PyTuple_Check(obj) || PyDict_Check(obj))
        return container_to_value(c, obj, out);
    PyErr_Format(PyExc_TypeError,
                 "cannot send a '%.200s' across the cell "
                 "boundary",
                 Py_TYPE(obj)->tp_name);
    return -1;
}

int iso_py_to_value(PyObject *obj, iso_value *out)
{
    py_conv c = {0};
    memset(out, 0, sizeof *out);
    if (to_value(&c, obj, out) < 0) {
        iso_value_free(out);
        return -1;
    }
    return 0;
}

static PyObject *list_from_value(const iso_value *v, int depth)
{
    PyObject *list = PyList_New((Py_ssize_t)v->u.seq.len);
    if (!list)
        return NULL;
    for (size_t i = 0; i < v->u.seq.len; i++) {
        PyObject *item = from_value(&v->u.seq.items[i], depth);
        if (!item) {
            Py_DECREF(
                list); /* unset slots are NULL, which list_dealloc skips */
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

static PyObject *key_from_value(const iso_value *k)
{
    if (k->type == ISO_STR || k->type == ISO_BYTES || k->type == ISO_INT)
        return from_value(k, 0);
    PyErr_Format(PyExc_TypeError, "cannot receive a map with a %s key",
                 type_name(k->type));
    return NULL;
}

static int dict_put(PyObject *dict, const iso_value *pair, int depth)
{
    PyObject *key = key_from_value(&pair[0]);
    if (!key)
        return -1;
    PyObject *val = from_value(&pair[1], depth);
    int rc = val ? PyDict_SetItem(dict, key, val) : -1;
    Py_DECREF(key);
    Py_XDECREF(val);
    return rc;
}

static PyObject *dict_from_value(const iso_value *v, int depth)
{
    PyObject *dict = PyDict_New();
    if (!dict)
        return NULL;
    for (size_t i = 0; i < v->u.seq.len; i++) {
        if (dict_put(dict, &v->u.seq.items[2 * i], depth) < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

/* Values built by our converters never exceed the limit; one decoded from
 * the wire could, and must not exhaust the C stack. */
static PyObject *container_from_value(const iso_value *v, int depth)
{
    if (depth >= ISO_VALUE_MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError, "value nested deeper than %d levels",
                     ISO_VALUE_MAX_DEPTH);
        return NULL;
    }
    if (v->type == ISO_LIST)
        return list_from_value(v, depth + 1);
    return dict_from_value(v, depth + 1);
}

static PyObject *from_value(const iso_value *v, int depth)
{
    switch (v->type) {
    case ISO_NIL:
        return Py_NewRef(Py_None);
    case ISO_BOOL:
        return PyBool_FromLong(v->u.b);
    case ISO_INT:
        return PyLong_FromLongLong(v->u.i);
    case ISO_FLOAT:
        return PyFloat_FromDouble(v->u.f);
    case ISO_STR:
        return PyUnicode_DecodeUTF8(v->u.str.ptr, (Py_ssize_t)v->u.str.len,
                                    "strict");
    case ISO_BYTES:
        return PyBytes_FromStringAndSize(v->u.str.ptr,
                                         (Py_ssize_t)v->u.str.len);
    case ISO_LIST:
    case ISO_MAP:
        return container_from_value(v, depth);
    }
    PyErr_Format(PyExc_SystemError, "iso_value of unknown type %d",
                 (int)v->type);
    return NULL;
}

PyObject *iso_py_from_value(const iso_value *v)
{
    return from_value(v, 0);
}
