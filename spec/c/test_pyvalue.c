/* Unit tests for src/python/py_value.c: iso_value <-> CPython objects. */
#include "py_value.h" /* Python.h first */

#include <math.h>
#include <string.h>

#include "check.h"

static PyObject *globals;

static PyObject *eval(const char *expr)
{
    PyObject *r = PyRun_String(expr, Py_eval_input, globals, globals);
    if (!r) {
        PyErr_Print();
        CHECK_FAIL_("python raised evaluating: %s", expr);
    }
    return r;
}

static void run(const char *stmts)
{
    PyObject *r = PyRun_String(stmts, Py_file_input, globals, globals);
    if (!r) {
        PyErr_Print();
        CHECK_FAIL_("python raised running: %s", stmts);
    }
    Py_XDECREF(r);
}

static PyObject *take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* The pending exception is an exc_type whose text holds needle; clears it. */
static void check_raised(PyObject *exc_type, const char *needle)
{
    PyObject *exc = take_exception();
    CHECK(exc && PyObject_IsInstance(exc, exc_type) == 1);
    PyObject *text = exc ? PyObject_Str(exc) : NULL;
    CHECK_HAS_STR(text ? PyUnicode_AsUTF8(text) : NULL, needle);
    Py_XDECREF(text);
    Py_XDECREF(exc);
    PyErr_Clear();
}

/* Converting obj must fail with exc_type, leave NIL, hold no partial value. */
static void refuse_obj(PyObject *obj, PyObject *exc_type, const char *needle)
{
    iso_value v;
    memset(&v, 0xAB, sizeof v); /* out is overwritten, even on failure */
    CHECK_EQ_INT(iso_py_to_value(obj, &v), -1);
    CHECK_EQ_INT(v.type, ISO_NIL);
    check_raised(exc_type, needle);
}

static void refuse(const char *expr, PyObject *exc_type, const char *needle)
{
    PyObject *obj = eval(expr);
    if (!obj)
        return;
    refuse_obj(obj, exc_type, needle);
    Py_DECREF(obj);
}

/* py -> iso -> py gives `expected`, compared by repr so that types count
 * (True vs 1, 1.0 vs 1, bytes vs bytearray, tuple vs list). */
static void roundtrip(const char *expr, const char *expected)
{
    PyObject *obj = eval(expr), *want = eval(expected), *back = NULL;
    iso_value v = {0};
    if (obj && want) {
        CHECK_EQ_INT(iso_py_to_value(obj, &v), 0);
        back = iso_py_from_value(&v);
    }
    PyObject *r1 = back ? PyObject_Repr(back) : NULL;
    PyObject *r2 = want ? PyObject_Repr(want) : NULL;
    bool same = r1 && r2 && PyUnicode_Compare(r1, r2) == 0;
    if (!same)
        CHECK_FAIL_("%s came back as %s, expected %s", expr,
                    r1 ? PyUnicode_AsUTF8(r1) : "(error)", expected);
    CHECK(same);
    PyErr_Clear();
    iso_value_free(&v);
    Py_XDECREF(r1);
    Py_XDECREF(r2);
    Py_XDECREF(back);
    Py_XDECREF(want);
    Py_XDECREF(obj);
}

static void test_py_scalars(void)
{
    roundtrip("None", "None");
    roundtrip("True", "True");
    roundtrip("False", "False");
    roundtrip("0", "0");
    roundtrip("-2**63", "-9223372036854775808");
    roundtrip("2**63 - 1", "9223372036854775807");
    roundtrip("1.5", "1.5");
    roundtrip("-0.0", "-0.0");
    roundtrip("float('inf')", "float('inf')");
    roundtrip("float('nan')", "float('nan')");
    roundtrip("'h\\u00e9llo \\U0001F600'", "'h\\u00e9llo \\U0001F600'");
    roundtrip("'a\\x00b'", "'a\\x00b'");
    roundtrip("''", "''");
    roundtrip("b'\\x00\\xff'", "b'\\x00\\xff'");
    roundtrip("bytearray(b'ab')", "b'ab'");
    roundtrip("type('F', (float,), {})(2.5)", "2.5");
    roundtrip("__import__('enum').IntEnum('E', 'A B').B", "2");
}

static void test_py_containers(void)
{
    roundtrip("[]", "[]");
    roundtrip("{}", "{}");
    roundtrip("(1, (2, 3.0))", "[1, [2, 3.0]]");
    roundtrip("[None, True, [b'', ['x']]]", "[None, True, [b'', ['x']]]");
    roundtrip("{'a': 1, -7: [None], b'\\xff': {}}",
              "{'a': 1, -7: [None], b'\\xff': {}}");
    roundtrip("__import__('collections').OrderedDict(z=1)", "{'z': 1}");
    /* C-level access only: overriding methods changes nothing. */
    roundtrip("type('L', (list,), {'__iter__': lambda s: 1/0, "
              "'__len__': lambda s: 1/0, '__getitem__': lambda s, i: 1/0})"
              "([1, 2])",
              "[1, 2]");
    roundtrip("type('D', (dict,), {'items': lambda s: 1/0, "
              "'__iter__': lambda s: 1/0})(k='v')",
              "{'k': 'v'}");
}

static void test_py_refused(void)
{
    refuse("{1, 2}", PyExc_TypeError, "cannot send a 'set'");
    refuse("object()", PyExc_TypeError, "'object'");
    refuse("[1, [print]]", PyExc_TypeError, "builtin_function_or_method");
    refuse("(x for x in ())", PyExc_TypeError, "'generator'");
    refuse("{1.5: 1}", PyExc_TypeError, "'float' key");
    refuse("{(1,): 1}", PyExc_TypeError, "'tuple' key");
    refuse("{True: 1}", PyExc_TypeError, "'bool' key");
    refuse("{None: 1}", PyExc_TypeError, "'NoneType' key");
    refuse("2**63", PyExc_ValueError, "64-bit");
    refuse("-2**63 - 1", PyExc_ValueError, "64-bit");
    refuse("[10**30]", PyExc_ValueError, "64-bit");
    refuse("{'k': '\\ud800'}", PyExc_ValueError, "surrogates");
}

static PyObject *nested_lists(int depth)
{
    PyObject *obj = PyLong_FromLong(1);
    for (int i = 0; i < depth && obj; i++) {
        PyObject *list = PyList_New(1);
        if (list)
            PyList_SET_ITEM(list, 0, obj);
        else
            Py_DECREF(obj);
        obj = list;
    }
    return obj;
}

static void test_py_depth_and_cycles(void)
{
    PyObject *ok = nested_lists(ISO_VALUE_MAX_DEPTH);
    PyObject *deep = nested_lists(ISO_VALUE_MAX_DEPTH + 1);
    char limit[64];
    snprintf(limit, sizeof limit, "deeper than %d", ISO_VALUE_MAX_DEPTH);
    iso_value v = {0};
    CHECK_EQ_INT(iso_py_to_value(ok, &v), 0);
    CHECK_EQ_INT(v.type, ISO_LIST);
    PyObject *back = iso_py_from_value(&v);
    CHECK(back && PyObject_RichCompareBool(back, ok, Py_EQ) == 1);
    Py_XDECREF(back);
    iso_value_free(&v);
    refuse_obj(deep, PyExc_ValueError, limit);
    Py_DECREF(ok);
    Py_DECREF(deep);
    run("l = []\nl.append(l)\nd = {}\nd['me'] = [d]\n");
    refuse("l", PyExc_ValueError, "cyclic");
    refuse("d", PyExc_ValueError, "cyclic");
    run("l.clear()\nd.clear()\n");
}

static void test_py_payload_limit(void)
{
    PyObject *obj = eval("[b'a' * (32 << 20), 'b' * (32 << 20)]");
    iso_value v = {0};
    CHECK_EQ_INT(obj ? iso_py_to_value(obj, &v) : -1, 0);
    iso_value_free(&v);
    Py_XDECREF(obj);
    refuse("[b'a' * (32 << 20), {'b' * ((32 << 20) + 1): 1}]", PyExc_ValueError,
           "MiB");
}

/* [nil, false, INT64_MIN, NaN, "a\0é", b"\xff", [], {}, {k: v...}] */
static void build_sample(iso_value *root)
{
    iso_value *map, *k, *v;
    iso_value_set_list(root);
    iso_list_append(root);
    iso_value_set_bool(iso_list_append(root), false);
    iso_value_set_int(iso_list_append(root), INT64_MIN);
    iso_value_set_float(iso_list_append(root), NAN);
    iso_value_set_string(iso_list_append(root), ISO_STR, "a\0\xc3\xa9", 4);
    iso_value_set_string(iso_list_append(root), ISO_BYTES, "\xff", 1);
    iso_value_set_list(iso_list_append(root));
    iso_value_set_map(iso_list_append(root));
    map = iso_list_append(root);
    iso_value_set_map(map);
    iso_map_append(map, &k, &v);
    iso_value_set_string(k, ISO_STR, "s", 1);
    iso_value_set_float(v, 0.25);
    iso_map_append(map, &k, &v);
    iso_value_set_string(k, ISO_BYTES, "\x80", 1);
    iso_value_set_list(v);
    iso_list_append(v);
    iso_map_append(map, &k, &v);
    iso_value_set_int(k, INT64_MAX);
    iso_value_set_bool(v, true);
}

static void test_iso_roundtrip(void)
{
    iso_value a = {0}, b = {0};
    build_sample(&a);
    PyObject *obj = iso_py_from_value(&a);
    CHECK(obj && PyList_Check(obj) && PyList_GET_SIZE(obj) == 9);
    if (!obj)
        return;
    CHECK(PyList_GET_ITEM(obj, 0) == Py_None);
    CHECK(PyList_GET_ITEM(obj, 1) == Py_False);
    CHECK(PyUnicode_Check(PyList_GET_ITEM(obj, 4)));
    CHECK_EQ_INT(PyUnicode_GetLength(PyList_GET_ITEM(obj, 4)), 3);
    CHECK(PyBytes_Check(PyList_GET_ITEM(obj, 5)));
    PyObject *key = PyBytes_FromStringAndSize("\x80", 1);
    CHECK(PyDict_GetItem(PyList_GET_ITEM(obj, 8), key) != NULL);
    Py_DECREF(key);
    CHECK_EQ_INT(iso_py_to_value(obj, &b), 0);
    CHECK(iso_value_equal(&a, &b));
    Py_DECREF(obj);
    iso_value_free(&a);
    iso_value_free(&b);
}

static void test_iso_refused(void)
{
    iso_value map = {0}, *k, *v, bad = {0};
    iso_value_set_map(&map);
    iso_map_append(&map, &k, &v);
    iso_value_set_float(k, 1.0);
    CHECK(iso_py_from_value(&map) == NULL);
    check_raised(PyExc_TypeError, "float key");
    iso_value_free(&map);
    iso_value_set_string(&bad, ISO_STR, "\xff", 1); /* a lying STR */
    CHECK(iso_py_from_value(&bad) == NULL);
    check_raised(PyExc_ValueError, "utf-8");
    /* One level too many, built in C (a decoder could), is refused. */
    iso_value *cur = &bad;
    for (int i = 0; i < ISO_VALUE_MAX_DEPTH + 1; i++) {
        iso_value_set_list(cur);
        cur = iso_list_append(cur);
    }
    CHECK(iso_py_from_value(&bad) == NULL);
    char limit[64];
    snprintf(limit, sizeof limit, "deeper than %d", ISO_VALUE_MAX_DEPTH);
    check_raised(PyExc_ValueError, limit);
    iso_value_free(&bad);
}

int main(void)
{
    Py_InitializeEx(0);
    globals = PyDict_New();
    PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
    RUN(test_py_scalars);
    RUN(test_py_containers);
    RUN(test_py_refused);
    RUN(test_py_depth_and_cycles);
    RUN(test_py_payload_limit);
    RUN(test_iso_roundtrip);
    RUN(test_iso_refused);
    CHECK(!PyErr_Occurred());
    Py_DECREF(globals);
    CHECK_EQ_INT(Py_FinalizeEx(), 0);
    return CHECK_EXIT();
}
