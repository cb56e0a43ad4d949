/*
 * The rules of a guest's metric(name, value, tags): what the host's
 * isolate.metrics (lua/isolate/metrics.lua) keeps as a Prometheus series.
 * The guest refuses here, with the reason, what the host would drop; the
 * host checks again, since a process cell can send anything. Keep the two
 * in step (spec/metrics_spec.lua runs both against the same cases).
 */
#ifndef ISO_PY_METRIC_H
#define ISO_PY_METRIC_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define ISO_METRIC_NAME_MAX 64       /* bytes of a name or a tag name */
#define ISO_METRIC_TAGS_MAX 8        /* tags of one call */
#define ISO_METRIC_TAG_VALUE_MAX 128 /* bytes of a str tag value */

/* 0 when name, value and tags (borrowed; tags may be Py_None) follow the
 * rules; -1 with TypeError (a value, tags or tag of the wrong type) or
 * ValueError (a bad name, a NaN or infinite or out-of-range value, too
 * many tags, a bad tag name or a long tag value) set. Needs the GIL; runs
 * no Python code. */
int iso_py_metric_check(PyObject *name, PyObject *value, PyObject *tags);

#endif
