/*
 * isolate.core: the thin binding between the pure-Lua module and
 * libisolate. It converts values, turns C errors into isolate.Error tables
 * and owns the userdata; all policy about options lives in lua/isolate.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "binding.h"
#include "guest.h" /* iso_py_extension_refused: src/python keeps the list */
#include "lvalue.h"

static void set_string_field(lua_State *L, const char *key, const char *v)
{
    if (v && *v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, key);
    }
}

void iso_lua_push_error(lua_State *L, iso_error *err)
{
    lua_createtable(L, 0, 4); /* [error] */
    set_string_field(L, "kind", iso_kind_name(err->kind));
    lua_pushstring(L, err->message);
    lua_setfield(L, -2, "message");
    set_string_field(L, "python", err->python);
    set_string_field(L, "traceback", err->traceback);
    set_string_field(L, "refused_import", err->refused_import);
    if (err->code == ISO_E_PROTOCOL) /* a kind of crash, told apart */
        set_string_field(L, "code", "protocol");
    if (err->signal > 0) {
        lua_pushinteger(L, err->signal);
        lua_setfield(L, -2, "signal");
    }
    set_string_field(L, "syscall", err->syscall);
    set_string_field(L, "suggestion", err->suggestion);
    luaL_setmetatable(L, ISO_ERROR_MT);
    iso_error_clear(err);
}

int iso_lua_raise(lua_State *L, iso_error *err)
{
    iso_lua_push_error(L, err);
    return lua_error(L);
}

int iso_lua_raisef(lua_State *L, iso_kind kind, const char *fmt, ...)
{
    iso_error err = {.kind = kind};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    return iso_lua_raise(L, &err);
}

/* "isolate: <kind>: <message>"; a guest's exception also names its type:
 * "isolate: guest: ZeroDivisionError: division by zero". */
static int l_error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "kind");
    lua_getfield(L, 1, "message");
    lua_getfield(L, 1, "python");
    const char *kind = luaL_optstring(L, -3, "error");
    const char *msg = luaL_optstring(L, -2, "(no message)");
    if (lua_type(L, -1) == LUA_TSTRING)
        lua_pushfstring(L, "isolate: %s: %s: %s", kind, lua_tostring(L, -1),
                        msg);
    else
        lua_pushfstring(L, "isolate: %s: %s", kind, msg);
    return 1;
}

/* error.missing = {"runtime", "/dev/kvm", "vmm"}: what microvm lacks. */
static void set_microvm_missing(lua_State *L)
{
    const char *lacks[8];
    size_t n = iso_microvm_lacks(lacks, 8);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n && i < 8; i++) {
        lua_pushstring(L, lacks[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "missing");
}

/* core.backend_check(name) -> true | false, isolate.Error (with missing=
 * for microvm) */
static int l_backend_check(lua_State *L)
{
    iso_error err = {0};
    int b = iso_backend_from_name(iso_lua_checkstr(L, 1, "backend"));
    if (b < 0)
        iso_error_set(&err, ISO_INVALID_ARGUMENT, "unknown backend");
    else if (iso_backend_check((iso_backend)b, &err) == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    iso_lua_push_error(L, &err);
    if (b == ISO_BACKEND_MICROVM)
        set_microvm_missing(L);
    return 2;
}

static int l_name_valid(lua_State *L)
{
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, strlen(name) == len && iso_cell_name_valid(name));
    return 1;
}

/* core.import_refused(backend, module) -> whether cells of that backend
 * refuse to import module whatever the policy says, so that spawn can
 * refuse the import up front (sub-interpreter cells never load ctypes,
 * multiprocessing, ...). A test extension the operator names in imports
 * is given back to the cell (iso_grants_opted_in): not refused. */
static int l_import_refused(lua_State *L)
{
    const char *backend = iso_lua_checkstr(L, 1, "backend");
    size_t len;
    const char *module = luaL_checklstring(L, 2, &len);
    char top[128];
    size_t n = strcspn(module, ".");
    bool refused = false;
    if (iso_backend_from_name(backend) == ISO_BACKEND_SUBINTERPRETER &&
        strlen(module) == len && n < sizeof top) {
        memcpy(top, module, n);
        top[n] = '\0';
        refused = iso_py_extension_refused(top) && !iso_py_test_extension(top);
    }
    lua_pushboolean(L, refused);
    return 1;
}

/* {threads=, parked=, cpu_ms=}: guests given up on that still run. */
static void push_abandoned(lua_State *L, const iso_runtime_info *info)
{
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, info->abandoned_threads);
    lua_setfield(L, -2, "threads");
    lua_pushinteger(L, info->abandoned_parked);
    lua_setfield(L, -2, "parked");
    lua_pushinteger(L, info->abandoned_cpu_ms);
    lua_setfield(L, -2, "cpu_ms");
}

/* core.info() -> {version=, python=, own_gil=, cell_mode=, lua=, mode=,
 * hardened=, thread_cgroups=, abandoned={threads=, parked=, cpu_ms=}} */
static int l_info(lua_State *L)
{
    iso_runtime_info info;
    iso_runtime_info_get(&info);
    lua_createtable(L, 0, 5);
    set_string_field(L, "version", ISO_VERSION);
    set_string_field(L, "python", info.python_version);
    set_string_field(L, "cell_mode", info.cell_mode);
    set_string_field(L, "lua", LUA_RELEASE);
    lua_pushboolean(L, info.own_gil);
    lua_setfield(L, -2, "own_gil");
    set_string_field(L, "mode", iso_mode_name());
    lua_pushboolean(L, iso_mode_hardened());
    lua_setfield(L, -2, "hardened");
    lua_pushboolean(L, iso_thread_cgroups_enabled());
    lua_setfield(L, -2, "thread_cgroups");
    push_abandoned(L, &info);
    lua_setfield(L, -2, "abandoned");
#ifdef ISO_SANITIZE
    lua_pushboolean(L, 1); /* ASan reserves terabytes: no RLIMIT_AS */
    lua_setfield(L, -2, "sanitized");
#endif
    return 1;
}

/* core.now() -> monotonic seconds (benchmarks, deadlines in Lua). */
static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* core.sleep(seconds): lets a Lua loop that polls cells give the CPU to
 * them (nanosleep; never raises for a non-positive time). */
static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (s > 0) {
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* core.set_event_sink(fn): fn(cell, event) receives every event. */
static int l_set_event_sink(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "isolate.event_sink");
    return 0;
}

/* core.set_tick(fn | nil): fn() runs at least every 50 ms while the host
 * waits on a cell (lcell.c's pump), protected, its errors dropped. */
static int l_set_tick(lua_State *L)
{
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "isolate.tick");
    return 0;
}

/* core.pool_configure(n); core.pool_stats() -> {ready=, target=, taken=} */
static int l_pool_configure(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    iso_error err = {0};
    if (n < 0)
        return iso_lua_raisef(L, ISO_INVALID_ARGUMENT,
                              "warm_pool must be a non-negative integer");
    if (iso_pool_configure((size_t)n, &err))
        return iso_lua_raise(L, &err);
    return 0;
}

/* core.interp_floor(n) -> {us, ...}: n bare interpreters created and ended
 * with the cells' configuration (bench/cells.lua's floor) */
static int l_interp_floor(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n > 0 && n <= 100000, 1, "between 1 and 100000");
    double *t = lua_newuserdatauv(L, (size_t)n * sizeof *t, 0); /* [n, buf] */
    iso_error err = {0};
    if (iso_bench_interp_floor((size_t)n, t, &err))
        return iso_lua_raise(L, &err);
    lua_createtable(L, (int)n, 0); /* [n, buf, list] */
    for (lua_Integer i = 0; i < n; i++) {
        lua_pushnumber(L, t[i] * 1e6);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* core.process_pool_configure(n) */
static int l_process_pool_configure(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    iso_error err = {0};
    if (n < 0)
        return iso_lua_raisef(L, ISO_INVALID_ARGUMENT,
                              "process_pool must be a non-negative integer");
    if (iso_proc_pool_configure((size_t)n, &err))
        return iso_lua_raise(L, &err);
    return 0;
}

static void push_pool(lua_State *L, size_t ready, size_t target, size_t taken)
{
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)ready);
    lua_setfield(L, -2, "ready");
    lua_pushinteger(L, (lua_Integer)target);
    lua_setfield(L, -2, "target");
    lua_pushinteger(L, (lua_Integer)taken);
    lua_setfield(L, -2, "taken");
}

/* -> {ready=, target=, taken=, process = {ready=, target=, taken=}} */
static int l_pool_stats(lua_State *L)
{
    size_t ready, target, taken;
    iso_pool_stats(&ready, &target, &taken);
    push_pool(L, ready, target, taken); /* [subinterpreter] */
    iso_proc_pool_stats(&ready, &target, &taken);
    push_pool(L, ready, target, taken); /* [subinterpreter, process] */
    lua_setfield(L, -2, "process");
    return 1;
}

/* core.queue_defaults([bytes, values]) -> bytes, values: the host-side
 * queue limits of cells spawned without their own (set when given). */
static int l_queue_defaults(lua_State *L)
{
    iso_error err = {0};
    int64_t bytes, values;
    iso_queue_defaults_get(&bytes, &values);
    if (!lua_isnoneornil(L, 1))
        bytes = (int64_t)luaL_checkinteger(L, 1);
    if (!lua_isnoneornil(L, 2))
        values = (int64_t)luaL_checkinteger(L, 2);
    if (iso_queue_defaults_set(bytes, values, &err))
        return iso_lua_raise(L, &err);
    lua_pushinteger(L, (lua_Integer)bytes);
    lua_pushinteger(L, (lua_Integer)values);
    return 2;
}

/* core.set_mode(name); core.thread_cgroups() -> true | false, why */
static int l_set_mode(lua_State *L)
{
    iso_error err = {0};
    if (iso_mode_set(iso_lua_checkstr(L, 1, "mode"), &err))
        return iso_lua_raise(L, &err);
    return 0;
}

static int l_thread_cgroups(lua_State *L)
{
    iso_error err = {0};
    if (iso_thread_cgroups_enable(&err) == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, err.message);
    iso_error_clear(&err);
    return 2;
}

/* core.shutdown(): every process cell killed, the zygote stopped, the
 * host's cell cgroups removed (sandbox.shutdown() closes the cells first). */
static int l_shutdown(lua_State *L)
{
    (void)L;
    iso_shutdown(false);
    return 0;
}

typedef struct found_list {
    char **paths;
    size_t n, cap;
} found_list;

static void found(const char *path, void *ud)
{
    found_list *f = ud;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 8;
        char **grown = realloc(f->paths, cap * sizeof *grown);
        if (!grown)
            return;
        f->paths = grown, f->cap = cap;
    }
    if ((f->paths[f->n] = strdup(path)) != NULL)
        f->n++;
}

/* core.clean_stale() -> list of the directories dead hosts left that were
 * killed and removed | raises */
static int l_clean_stale(lua_State *L)
{
    found_list f = {0};
    iso_error err = {0};
    int rc = iso_clean_stale(found, &f, &err);
    lua_createtable(L, (int)f.n, 0); /* freed before anything can raise */
    for (size_t i = 0; i < f.n; i++) {
        lua_pushstring(L, f.paths[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        free(f.paths[i]);
    }
    free(f.paths);
    if (rc < 0)
        return iso_lua_raise(L, &err);
    return 1;
}

/* The string at idx, refused (invalid_argument) when it is not a string
 * or holds a NUL byte: C would see only the part before it. */
const char *iso_lua_checkstr(lua_State *L, int idx, const char *what)
{
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
        iso_lua_raisef(L, ISO_INVALID_ARGUMENT, "%s: expected a string, got %s",
                       what, luaL_typename(L, idx));
    const char *s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len)
        iso_lua_raisef(L, ISO_INVALID_ARGUMENT,
                       "%s: contains a NUL byte (at %d of %d)", what,
                       (int)strlen(s) + 1, (int)len);
    return s;
}

static void push_kernel_info(lua_State *L, const iso_kernel_info *k);

/* core.kernel() -> {landlock=abi, seccomp=, bpf=, bpf_why=}: loads the BPF
 * guard to know. core.kernel_look(): the same with no side effect (no BPF
 * program, no cgroup), bpf_looked = true when bpf is a look, not a load. */
static int l_kernel(lua_State *L)
{
    iso_kernel_info ki;
    iso_kernel_info_get(&ki);
    push_kernel_info(L, &ki);
    return 1;
}

static int l_kernel_look(lua_State *L)
{
    iso_kernel_info ki;
    iso_kernel_info_look(&ki);
    push_kernel_info(L, &ki);
    return 1;
}

static void push_kernel_info(lua_State *L, const iso_kernel_info *ki)
{
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, ki->landlock_abi);
    lua_setfield(L, -2, "landlock");
    lua_pushboolean(L, ki->seccomp);
    lua_setfield(L, -2, "seccomp");
    lua_pushboolean(L, ki->bpf);
    lua_setfield(L, -2, "bpf");
    if (!ki->bpf)
        set_string_field(L, "bpf_why", ki->bpf_why);
    lua_pushboolean(L, ki->bpf_looked);
    lua_setfield(L, -2, "bpf_looked");
}

static const luaL_Reg core_functions[] = {
    {"kernel", l_kernel},
    {"kernel_look", l_kernel_look},
    {"shutdown", l_shutdown},
    {"clean_stale", l_clean_stale},
    {"set_mode", l_set_mode},
    {"thread_cgroups", l_thread_cgroups},
    {"pool_configure", l_pool_configure},
    {"pool_stats", l_pool_stats},
    {"process_pool_configure", l_process_pool_configure},
    {"interp_floor", l_interp_floor},
    {"queue_defaults", l_queue_defaults},
    {"set_event_sink", l_set_event_sink},
    {"set_tick", l_set_tick},
    {"now", l_now},
    {"sleep", l_sleep},
    {"spawn", iso_lua_cell_spawn},
    {"wait_any", iso_lua_cell_wait_any},
    {"backend_check", l_backend_check},
    {"name_valid", l_name_valid},
    {"import_refused", l_import_refused},
    {"info", l_info},
    {"probe", iso_lua_probe},
    {"array", iso_lua_array},
    {"bytes", iso_lua_bytes},
    {NULL, NULL},
};

/* The facts C owns, as Lua tables (lua/isolate keeps no copy):
 * core.backends = {"subinterpreter", ...} in iso_backend order,
 * core.modes = {"dev", "hardened", "compat"},
 * core.limits = {warm_pool=, process_pool=, process_pool_default=,
 * name=}: the most warm_pool and process_pool accept, and a name's length. */
static void push_facts(lua_State *L)
{
    lua_createtable(L, ISO_BACKEND_COUNT, 0);
    for (int b = 0; b < ISO_BACKEND_COUNT; b++) {
        lua_pushstring(L, iso_backend_name((iso_backend)b));
        lua_rawseti(L, -2, b + 1);
    }
    lua_setfield(L, -2, "backends");
    lua_newtable(L);
    for (int i = 0; iso_mode_name_at(i); i++) {
        lua_pushstring(L, iso_mode_name_at(i));
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "modes");
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, ISO_WARM_POOL_MAX);
    lua_setfield(L, -2, "warm_pool");
    lua_pushinteger(L, ISO_PROC_POOL_MAX);
    lua_setfield(L, -2, "process_pool");
    lua_pushinteger(L, ISO_PROC_POOL_DEFAULT);
    lua_setfield(L, -2, "process_pool_default");
    lua_pushinteger(L, ISO_NAME_MAX);
    lua_setfield(L, -2, "name");
    lua_setfield(L, -2, "limits");
}

int luaopen_isolate_core(lua_State *L)
{
    iso_lua_value_init(L);
    iso_lua_cell_register(L);
    luaL_newlib(L, core_functions); /* [core] */
    iso_lua_plan_register(L);
    iso_lua_loop_register(L);
    push_facts(L);
    luaL_newmetatable(L, ISO_ERROR_MT);
    lua_pushcfunction(L, l_error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_setfield(L, -2, "Error");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_getfield(L, LUA_REGISTRYINDEX, "isolate.cell_methods");
    lua_setfield(L, -2, "cell_methods");
    return 1;
}
