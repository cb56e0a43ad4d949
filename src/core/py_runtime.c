/*
 * One embedded CPython per process. The main interpreter runs no guest
 * code: it only parents the legacy sub-interpreters and then sits idle
 * with its GIL released.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "py_alloc.h"
#include "py_cell.h"
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

static void init_once(void)
{
    promote_symbols();
    iso_py_guard_hook_install(); /* before start-up: nothing escapes it */
    PyPreConfig pre;
    PyPreConfig_InitIsolatedConfig(&pre);
    PyStatus st = Py_PreInitialize(&pre);
    if (PyStatus_Exception(st)) {
        init_rc = -1;
        snprintf(init_msg, sizeof init_msg, "cannot pre-initialise CPython: %s",
                 st.err_msg ? st.err_msg : "unknown error");
        return;
    }
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

void iso_runtime_info_get(iso_runtime_info *info)
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
#endif

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
    PyThreadState *door = NULL;
    pthread_mutex_lock(&owner_mu);
    if (owner && owner != mine)
        door = PyThreadState_New(owner);
    pthread_mutex_unlock(&owner_mu);
    if (door) {
        PyEval_RestoreThread(door);
        PyThreadState_Swap(ts);
        PyThreadState_Clear(door);
        PyThreadState_Delete(door);
    } else {
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
    pthread_mutex_unlock(&owner_mu);
#else
    (void)interp;
#endif
}
