/*
 * Abandoned guests: cell threads the host gave up on while their guest
 * still ran (kill, or a request past wall_ms that ignored its interrupts).
 * Each keeps its cell alive until it ends by itself, or is parked for good
 * by a trace function; sandbox.info() counts both (iso_runtime_info_get).
 */
#include <stdlib.h>
#include <unistd.h>

#include "guest.h"
#include "handoff.h"
#include "subinterp.h"

/* Cells whose thread the host gave up on while it still ran, each with a
 * reference of the list's own: the thread goes on until its guest ends by
 * itself, or for good when it is parked (sandbox.info() reports both). */
static struct {
    pthread_mutex_t mu;
    struct abandoned_cell {
        iso_sub *s;
        bool parked;
    } * cells;
    size_t n, cap;
} abandoned = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

/* Unless its thread has ended already (s->guest->py is NULL then). */
void iso_abandoned_add(iso_sub *s)
{
    pthread_mutex_lock(&abandoned.mu);
    if (s->guest->py &&
        iso_room_for_one((void **)&abandoned.cells, &abandoned.cap, abandoned.n,
                         sizeof *abandoned.cells)) {
        iso_host_hold(&s->host);
        abandoned.cells[abandoned.n++] = (struct abandoned_cell){s, false};
    }
    pthread_mutex_unlock(&abandoned.mu);
}

/* abandoned.mu held: s's entry, or NULL. */
static struct abandoned_cell *abandoned_entry(iso_sub *s)
{
    for (size_t i = 0; i < abandoned.n; i++)
        if (abandoned.cells[i].s == s)
            return &abandoned.cells[i];
    return NULL;
}

/* The cell thread, as it ends (abandoned or not). */
void iso_abandoned_thread_ends(iso_sub *s)
{
    pthread_mutex_lock(&abandoned.mu);
    s->guest->py = NULL;
    struct abandoned_cell *e = abandoned_entry(s);
    if (e)
        *e = abandoned.cells[--abandoned.n];
    pthread_mutex_unlock(&abandoned.mu);
    if (e)
        iso_host_release(&s->host);
}

/* The abandoned guests' part of iso_runtime_info (any thread). */
static void abandoned_get(iso_runtime_info *info)
{
    info->abandoned_threads = info->abandoned_parked = 0;
    info->abandoned_cpu_ms = 0;
    pthread_mutex_lock(&abandoned.mu); /* their threads cannot end meanwhile */
    for (size_t i = 0; i < abandoned.n; i++) {
        info->abandoned_threads++;
        info->abandoned_parked += abandoned.cells[i].parked;
        info->abandoned_cpu_ms += iso_sub_cpu_ms(abandoned.cells[i].s);
    }
    pthread_mutex_unlock(&abandoned.mu);
}

void iso_runtime_info_get(iso_runtime_info *info)
{
    iso_py_runtime_info(info);
    abandoned_get(info);
}

/* Does this thread hold the runtime's import lock, which every interpreter
 * shares? A guest that slept holding it would stop every cell's imports.
 * _imp.release_lock() refuses unless the caller holds it; then it is
 * taken back at once. (Another thread's hold is no reason to wait.) */
static bool holds_import_lock(void)
{
    PyObject *imp = iso_py_import("_imp");
    PyObject *r = imp ? PyObject_CallMethod(imp, "release_lock", NULL) : NULL;
    bool mine = r != NULL;
    Py_XDECREF(r);
    if (mine)
        Py_XDECREF(PyObject_CallMethod(imp, "acquire_lock", NULL));
    PyErr_Clear();
    Py_XDECREF(imp);
    return mine || !imp;
}

/* The trace function of an abandoned guest's thread (obj: its cell): at
 * its next event while it still runs the abandoned request, it lets the
 * GIL go and sleeps for good. A guest cannot catch that; parked, it takes
 * the shared GIL from no live cell and burns no CPU, and keeps only its
 * memory and a sleeping thread. Never while it holds the import lock, the
 * one lock Python code holds that every interpreter shares: the next
 * event tries again. */
static int park(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)frame, (void)what, (void)arg;
    iso_sub *s = PyCapsule_GetPointer(obj, "isolate.park");
    if (!s || !atomic_load(&s->running_seq) || holds_import_lock()) {
        PyErr_Clear();
        return 0;
    }
    pthread_mutex_lock(&abandoned.mu);
    struct abandoned_cell *e = abandoned_entry(s);
    if (e)
        e->parked = true;
    pthread_mutex_unlock(&abandoned.mu);
    PyEval_SaveThread();
    for (;;)
        pause();
    return 0;
}

/* A loop of one instruction (while True: pass) has no line events: its
 * running frames report every opcode instead. */
static void trace_opcodes(PyThreadState *ts)
{
    PyFrameObject *f = PyThreadState_GetFrame(ts);
    while (f) {
        if (PyObject_SetAttrString((PyObject *)f, "f_trace_opcodes", Py_True))
            PyErr_Clear();
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
}

/* Interrupter, with the cell's GIL: trace the cell's thread with park (on
 * 3.12+, every thread of its interpreter: guest threads too). */
void iso_abandoned_park(iso_sub *s, iso_py_state *p)
{
    PyObject *obj = PyCapsule_New(s, "isolate.park", NULL);
    if (!obj) {
        PyErr_Clear();
        return;
    }
    trace_opcodes(p->ts);
#if PY_VERSION_HEX >= 0x030C0000
    PyEval_SetTraceAllThreads(park, obj);
#else
    if (_PyEval_SetTrace(p->ts, park, obj) < 0)
        PyErr_Clear();
#endif
    Py_DECREF(obj);
}
