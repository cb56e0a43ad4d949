/*
 * One embedded CPython per process. The main interpreter runs no guest
 * code: it only parents the legacy sub-interpreters and then sits idle
 * with its GIL released.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

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
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.site_import = 0;             /* cells see the stdlib only */
    config.install_signal_handlers = 0; /* signals belong to the host */
    config.write_bytecode = 0;
    config.user_site_directory = 0;
    PyStatus st = Py_InitializeFromConfig(&config);
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
