/*
 * One embedded CPython per process. The main interpreter runs no guest
 * code: it only parents the legacy sub-interpreters and then sits idle
 * with its GIL released.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "py_alloc.h"
#include "guest.h"
#include "handoff.h"
#include "py_runtime.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_rc;
static char init_msg[256];
static PyInterpreterState *main_interp;
static PyThreadState *main_ts;

/* lua5.4 dlopens C modules RTLD_LOCAL, which hides libpython's symbols
 * from Python's own extension modules (_json, _socket...). Re-open it
 * globally. Also pin ourselves: if Lua unloaded this module at exit while
 * a cell thread still ran, that thread would run unmapped code. */
static void promote_symbols(void)
{
    if (!dlopen(ISO_PYTHON_SONAME, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
        dlopen(ISO_PYTHON_SONAME, RTLD_NOW | RTLD_GLOBAL);
    Dl_info self;
    if (dladdr((void *)iso_py_runtime_init, &self) && self.dli_fname)
        dlopen(self.dli_fname, RTLD_NOW | RTLD_NODELETE | RTLD_NOLOAD);
}

/* The interpreter this libpython belongs to: the build's Python (its real
 * path, found at configure time), if it is still there under the name of
 * the running version ("/python3.11"). Anything else would be another
 * Python, so then none: "" is what CPython itself reports when it cannot
 * tell its executable. Found at start-up, before any confinement. */
static char executable[PATH_MAX];

static void find_executable(void)
{
    const char *path = ISO_PYTHON_EXECUTABLE, *v = Py_GetVersion();
    const char *dot = strchr(v, '.'); /* "3.11.2 (main, ..." */
    int len = dot ? (int)(dot + 1 - v) + (int)strspn(dot + 1, "0123456789") : 0;
    char want[32];
    snprintf(want, sizeof want, "/python%.*s", len, v);
    size_t n = strlen(path), w = strlen(want);
    if (len && n > w && strcmp(path + n - w, want) == 0 &&
        access(path, X_OK) == 0)
        snprintf(executable, sizeof executable, "%s", path);
}

const char *iso_py_executable(void)
{
    return executable;
}

static void init_once(void)
{
    promote_symbols();
    iso_py_guard_hook_install(); /* before start-up: nothing escapes it */
    PyPreConfig pre;
    PyPreConfig_InitIsolatedConfig(&pre);
    /* PEP 540, as plain Python gets it under the C and C.UTF-8 locales:
     * file names, open() and the standard streams speak UTF-8. The
     * isolated pre-config leaves the process's locale alone (no
     * setlocale), so the host's Lua sees no change. */
    pre.utf8_mode = 1;
    PyStatus st = Py_PreInitialize(&pre);
    if (PyStatus_Exception(st)) {
        init_rc = -1;
        snprintf(init_msg, sizeof init_msg, "cannot pre-initialise CPython: %s",
                 st.err_msg ? st.err_msg : "unknown error");
        return;
    }
    find_executable();
    iso_py_alloc_install(); /* every block from now on is accounted */
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.site_import = 0;             /* cells see the stdlib only */
    config.install_signal_handlers = 0; /* signals belong to the host */
    config.write_bytecode = 0;
    config.user_site_directory = 0;
    st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        init_rc = -1;
        snprintf(init_msg, sizeof init_msg, "cannot initialise CPython: %s",
                 st.err_msg ? st.err_msg : "unknown error");
        return;
    }
    main_interp = PyInterpreterState_Main();
    main_ts = PyEval_SaveThread(); /* cells take the GIL as they need it */
}

int iso_py_runtime_init(iso_error *err)
{
    pthread_once(&once, init_once);
    if (init_rc)
        return iso_error_set(err, ISO_CRASHED, "%s", init_msg);
    return 0;
}

PyThreadState *iso_py_main_thread_state(void)
{
    return main_ts;
}

PyInterpreterState *iso_py_main_interp(void)
{
    return main_interp;
}

void iso_py_runtime_info(iso_runtime_info *info)
{
    static char version[32];
    const char *v = Py_GetVersion(); /* "3.11.2 (main, ...": no init needed */
    size_t n = strcspn(v, " ");
    snprintf(version, sizeof version, "%.*s", (int)n, v);
    info->python_version = version;
    info->own_gil = ISO_OWN_GIL;
    info->cell_mode = ISO_OWN_GIL ? "own GIL" : "shared GIL";
}

#if !ISO_OWN_GIL
static pthread_mutex_t owner_mu = PTHREAD_MUTEX_INITIALIZER;
static PyInterpreterState *owner; /* the interpreter that took the GIL last */

/* The cell threads' own thread states (owner_mu): the GIL's holder is
 * named by its thread state, and this maps it to its interpreter without
 * touching a thread state that may be going away. */
static struct cell_ts {
    PyThreadState *ts;
    PyInterpreterState *interp;
    bool knocking; /* the nudger's door thread waits at its door */
} * cell_ts;
static size_t n_cell_ts, cap_cell_ts;

/* owner_mu held: the entry of cell thread state ts, or NULL. */
static struct cell_ts *cell_entry(PyThreadState *ts)
{
    for (size_t i = 0; ts && i < n_cell_ts; i++)
        if (cell_ts[i].ts == ts)
            return &cell_ts[i];
    return NULL;
}

/* owner_mu held: the interpreter of cell thread state ts, or NULL. */
static PyInterpreterState *cell_interp(PyThreadState *ts)
{
    struct cell_ts *e = cell_entry(ts);
    return e ? e->interp : NULL;
}

/* owner_mu held: the entry of a cell interpreter not forgotten yet. */
static struct cell_ts *interp_entry(PyInterpreterState *interp)
{
    for (size_t i = 0; i < n_cell_ts; i++)
        if (cell_ts[i].interp == interp)
            return &cell_ts[i];
    return NULL;
}

/* owner_mu held: the interpreter whose cell thread holds the GIL now, else
 * the one that took it last through iso_py_take_gil. The holder's thread
 * state is only compared, never read: it may be going away. */
static PyInterpreterState *holder(void)
{
    PyInterpreterState *interp = cell_interp(_PyThreadState_UncheckedGet());
    return interp ? interp : owner;
}

/* Wait for the GIL as a thread of interp (owner_mu not held): the drop
 * request lands where interp's running thread looks. */
static void knock(PyInterpreterState *interp, PyThreadState *then)
{
    PyThreadState *door = PyThreadState_New(interp);
    pthread_mutex_unlock(&owner_mu);
    if (!door) {
        if (then)
            PyEval_RestoreThread(then);
        return;
    }
    PyEval_RestoreThread(door);
    if (then)
        PyThreadState_Swap(then);
    PyThreadState_Clear(door);
    if (then)
        PyThreadState_Delete(door);
    else
        PyThreadState_DeleteCurrent(); /* and lets the GIL go */
}

/* A thread that waits for the GIL *inside* CPython (a cell that was asked
 * to drop it and wants it back) raises its drop request in its own
 * interpreter too, which a cell spinning in a loop never checks: with an
 * abandoned loop that would be forever. So a nudger knocks at the door of
 * a cell thread that has held the GIL for a whole switch interval, and
 * hands the GIL on at once (about 1% of a busy cell's time).
 *
 * The nudger never waits at a door itself: the interpreter it knocks at
 * may hand the GIL to a third thread (that abandoned loop), and a door
 * then waits where nobody running looks. A nudger stuck there knocked at
 * no one again, and the loop kept the GIL for good (issue 16). So each
 * knock is a door thread of its own, at most one per interpreter; one
 * left waiting at an idle interpreter's door gets the GIL at the next
 * hand-over like any other waiter. */
#define NUDGE_EVERY_S 0.005
static bool nudger_running;

static void *door_thread(void *arg)
{
    PyInterpreterState *interp = arg;
    pthread_mutex_lock(&owner_mu);
    if (interp_entry(interp))
        knock(interp, NULL); /* unlocks */
    else
        pthread_mutex_unlock(&owner_mu); /* it is ending: no door */
    pthread_mutex_lock(&owner_mu);
    struct cell_ts *e = interp_entry(interp);
    if (e)
        e->knocking = false;
    pthread_mutex_unlock(&owner_mu);
    return NULL;
}

static void *nudge(void *unused)
{
    (void)unused;
    PyThreadState *last = NULL;
    for (;;) {
        struct timespec ts = {0, (long)(NUDGE_EVERY_S * 1e9)};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&owner_mu);
        PyThreadState *h = _PyThreadState_UncheckedGet();
        struct cell_ts *e = h == last ? cell_entry(h) : NULL;
        last = h;
        if (e && !e->knocking)
            e->knocking = iso_thread_detached_with(door_thread, e->interp);
        pthread_mutex_unlock(&owner_mu);
    }
    return NULL;
}
#endif

void iso_py_register_cell_thread(PyThreadState *ts)
{
#if !ISO_OWN_GIL
    pthread_mutex_lock(&owner_mu);
    if (iso_room_for_one((void **)&cell_ts, &cap_cell_ts, n_cell_ts,
                         sizeof *cell_ts))
        cell_ts[n_cell_ts++] =
            (struct cell_ts){ts, PyThreadState_GetInterpreter(ts), false};
    if (!nudger_running)
        nudger_running = iso_thread_detached(nudge);
    pthread_mutex_unlock(&owner_mu);
#else
    (void)ts;
#endif
}

/* Legacy sub-interpreters share one GIL, and CPython 3.11 raises the drop
 * request in the *waiting* thread's interpreter, which the running one
 * never checks: a busy cell would never let another cell in (measured:
 * a 1.5 s loop in one cell held up a post(1) in another for 1.5 s). So a
 * cell asks through the running interpreter's door: a temporary thread
 * state of that interpreter waits for the GIL, which puts the request
 * where the running thread looks; once in, it switches to its own. */
void iso_py_take_gil(PyThreadState *ts)
{
#if ISO_OWN_GIL
    PyEval_RestoreThread(ts);
#else
    PyInterpreterState *mine = PyThreadState_GetInterpreter(ts);
    pthread_mutex_lock(&owner_mu);
    PyInterpreterState *target = holder();
    if (target && target != mine) {
        knock(target, ts); /* unlocks */
    } else {
        pthread_mutex_unlock(&owner_mu);
        PyEval_RestoreThread(ts);
    }
    pthread_mutex_lock(&owner_mu);
    owner = mine;
    pthread_mutex_unlock(&owner_mu);
#endif
}

void iso_py_forget_interp(PyInterpreterState *interp)
{
#if !ISO_OWN_GIL
    pthread_mutex_lock(&owner_mu);
    if (owner == interp)
        owner = NULL;
    for (size_t i = 0; i < n_cell_ts;)
        if (cell_ts[i].interp == interp)
            cell_ts[i] = cell_ts[--n_cell_ts];
        else
            i++;
    pthread_mutex_unlock(&owner_mu);
#else
    (void)interp;
#endif
}
