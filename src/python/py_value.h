/*
 * iso_value <-> CPython objects, for the cell runtime only (the sub-
 * interpreter backend and the worker). Every function needs the GIL of the
 * interpreter the objects belong to; the caller holds it. Values cross by
 * copy: nothing here keeps a reference to the object or to the value.
 */
#ifndef ISO_PY_VALUE_H
#define ISO_PY_VALUE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "isolate.h"

/* Convert obj into *out (overwritten, not freed: pass a NIL or uninitialised
 * value). Returns 0, or -1 with *out NIL and a Python exception set:
 * TypeError for an unsupported type or dict key type, ValueError for an int
 * outside int64, nesting deeper than ISO_VALUE_MAX_DEPTH (this also catches
 * cycles), string/bytes payload above ISO_VALUE_MAX_BYTES in total, or a str
 * that is not encodable as UTF-8 (UnicodeEncodeError). Runs no Python code. */
int iso_py_to_value(PyObject *obj, iso_value *out);

/* A new reference to the object for v, or NULL with a Python exception set.
 * v is only read. */
PyObject *iso_py_from_value(const iso_value *v);

#endif
