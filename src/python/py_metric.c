/*
 * metric()'s argument rules (see py_metric.h): a guest learns at the call
 * why a metric would not be kept, instead of the host dropping it later.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "py_metric.h"

static bool name_char(char c, bool dots)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' ||
           (dots && (c == '.' || c == '-'));
}

/* A metric name: 1 to ISO_METRIC_NAME_MAX of A-Z a-z 0-9 _ . - */
static int check_name(PyObject *name)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(name, &n);
    if (!s)
        return -1;
    bool ok = n >= 1 && n <= ISO_METRIC_NAME_MAX;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        ok = name_char(s[i], true);
    if (ok)
        return 0;
    PyErr_Format(PyExc_ValueError,
                 "metric name must be 1 to %d of A-Z a-z 0-9 _ . - "
                 "(it becomes isolate_guest_<name>)",
                 ISO_METRIC_NAME_MAX);
    return -1;
}

/* A number Prometheus and the host can hold: an int within int64 (not a
 * bool) or a finite float. what names it in the message. */
static int check_number(PyObject *v, const char *what)
{
    if (PyBool_Check(v) || !(PyLong_Check(v) || PyFloat_Check(v))) {
        PyErr_Format(PyExc_TypeError, "%s must be an int or a float, not %.64s",
                     what, Py_TYPE(v)->tp_name);
        return -1;
    }
    if (PyLong_Check(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        if (!overflow)
            return 0;
        PyErr_Format(PyExc_ValueError, "%s is outside int64", what);
        return -1;
    }
    if (isfinite(PyFloat_AsDouble(v)))
        return 0;
    PyErr_Format(PyExc_ValueError, "%s must be finite (not NaN or an infinity)",
                 what);
    return -1;
}

/* A tag (label) name: [A-Za-z_][A-Za-z0-9_]*, not cell (the host's label)
 * and not __* (Prometheus keeps those). */
static int check_tag_name(PyObject *k)
{
    if (!PyUnicode_Check(k)) {
        PyErr_Format(PyExc_TypeError, "metric tag names must be str, not %.64s",
                     Py_TYPE(k)->tp_name);
        return -1;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(k, &n);
    if (!s)
        return -1;
    bool ok = n >= 1 && n <= ISO_METRIC_NAME_MAX &&
              !(s[0] >= '0' && s[0] <= '9') && strcmp(s, "cell") != 0 &&
              strncmp(s, "__", 2) != 0;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        ok = name_char(s[i], false);
    if (ok)
        return 0;
    PyErr_Format(PyExc_ValueError,
                 "metric tag name must be [A-Za-z_][A-Za-z0-9_]* of at most "
                 "%d bytes, not 'cell' and not starting with '__'",
                 ISO_METRIC_NAME_MAX);
    return -1;
}

/* A tag value: a str of at most ISO_METRIC_TAG_VALUE_MAX UTF-8 bytes, a
 * bool, or a number as check_number takes it. */
static int check_tag_value(PyObject *v)
{
    if (PyBool_Check(v))
        return 0;
    if (!PyUnicode_Check(v))
        return check_number(v, "a metric tag value that is not a str or bool");
    Py_ssize_t n;
    if (!PyUnicode_AsUTF8AndSize(v, &n))
        return -1;
    if (n <= ISO_METRIC_TAG_VALUE_MAX)
        return 0;
    PyErr_Format(PyExc_ValueError,
                 "a metric tag value is at most %d bytes (UTF-8)",
                 ISO_METRIC_TAG_VALUE_MAX);
    return -1;
}

static int check_tags(PyObject *tags)
{
    if (tags == Py_None)
        return 0;
    if (!PyDict_Check(tags)) {
        PyErr_Format(PyExc_TypeError, "metric tags must be a dict, not %.64s",
                     Py_TYPE(tags)->tp_name);
        return -1;
    }
    if (PyDict_GET_SIZE(tags) > ISO_METRIC_TAGS_MAX) {
        PyErr_Format(PyExc_ValueError, "a metric has at most %d tags",
                     ISO_METRIC_TAGS_MAX);
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(tags, &pos, &k, &v))
        if (check_tag_name(k) < 0 || check_tag_value(v) < 0)
            return -1;
    return 0;
}

int iso_py_metric_check(PyObject *name, PyObject *value, PyObject *tags)
{
    if (check_name(name) < 0 || check_number(value, "metric value") < 0)
        return -1;
    return check_tags(tags);
}
