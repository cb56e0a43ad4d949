/*
 * luaisolate: the host. Embeds Lua 5.4, preloads isolate.core and the
 * pure-Lua modules, sets the global `sandbox`, and runs scripts the way
 * lua.c does: under lua_pcall with a message handler that keeps
 * isolate.Error's __tostring and adds a traceback.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "binding.h"
#include "embedded.h"

static const char *progname = "luaisolate";
static int exit_status;      /* set by subcommands that choose their own */
static bool json_logs;       /* run --log-format json */
static const char *run_mode; /* run --mode dev|hardened|compat */

/* ---- SIGINT, SIGTERM, SIGHUP ------------------------------------------- */

static sigset_t term_signals;
static _Atomic int interrupted; /* the signal being handled, 0 = none */

/* The Lua thread, once the signal thread has begun: whatever it was doing
 * has failed because its cells died under it; it neither reports that nor
 * exits on its own, the signal thread ends the process. */
static void stand_aside(void)
{
    while (atomic_load(&interrupted))
        pause();
}

/* A thread of their own takes them (blocked everywhere else), so nothing
 * runs in a signal handler and the Lua thread may be anywhere (deep in a
 * wait, in a guest's call): the clean-up touches only kernel state, never
 * Lua or a cell. Every process cell dies by its cgroup, the zygote is
 * killed, the host's cgroup directories go; the BPF links detach when
 * _exit closes their fds; sub-interpreter cells are threads of this
 * process. Then, as lua.c does, "interrupted!" and 128+signal. */
static void *on_term_signal(void *unused)
{
    (void)unused;
    int sig = 0;
    while (sigwait(&term_signals, &sig) != 0)
        ;
    atomic_store(&interrupted, sig);
    /* a second SIGINT during the clean-up ends the host at once; the
     * zygote's PDEATHSIG still takes every cell with it */
    sigset_t intr;
    sigemptyset(&intr);
    sigaddset(&intr, SIGINT);
    signal(SIGINT, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &intr, NULL);
    iso_shutdown(true);
    static const char said[] = "luaisolate: interrupted!\n";
    if (write(STDERR_FILENO, said, sizeof said - 1) < 0) {
        /* nobody to tell */
    }
    _exit(128 + sig);
}

/* Before any other thread exists, so that all of them inherit the mask.
 * A signal the host was started ignoring (a background job's SIGINT)
 * stays ignored. */
static void catch_term_signals(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    sigemptyset(&term_signals);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaddset(&term_signals, sigs[i]);
    }
    pthread_t t;
    pthread_sigmask(SIG_BLOCK, &term_signals, NULL);
    if (pthread_create(&t, NULL, on_term_signal, NULL) == 0)
        pthread_detach(t);
    else /* no thread: the default actions (PDEATHSIG still holds) */
        pthread_sigmask(SIG_UNBLOCK, &term_signals, NULL);
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: %s run [--log-format json] [--mode M] FILE [args...]\n"
        "                                run a Lua script (also: %s FILE);\n"
        "                                json: guest logs as JSON lines on "
        "stderr;\n"
        "                                M: dev (default), hardened, compat\n"
        "       %s check [--explain] [--json] [--backend B] FILE|NAME...\n"
        "                                validate and compile policies\n"
        "       %s doctor [--json] [--mode hardened]\n"
        "                                probe what this host can enforce\n"
        "       %s version              versions and cell mode\n"
        "       %s --help               this text\n",
        progname, progname, progname, progname, progname, progname);
}

static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)",
                                  luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int report(lua_State *L, int status)
{
    stand_aside();
    if (status != LUA_OK) {
        fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return status;
}

static int load_embedded(lua_State *L)
{
    const iso_embedded_module *m = lua_touserdata(L, lua_upvalueindex(1));
    if (luaL_loadbuffer(L, m->source, m->len, m->chunk) != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

static void preload_modules(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_isolate_core);
    lua_setfield(L, -2, "isolate.core");
    for (const iso_embedded_module *m = iso_embedded_modules; m->name; m++) {
        lua_pushlightuserdata(L, (void *)m);
        lua_pushcclosure(L, load_embedded, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);
}

/* arg table as lua.c builds it: arg[0] = script, arg[1..] = its args. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script)
{
    lua_createtable(L, argc - script - 1, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

/* Standard libraries, the built-in modules, and require(module) pushed. */
static void open_host(lua_State *L, const char *module)
{
    luaL_openlibs(L);
    preload_modules(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    lua_call(L, 1, 1);
}

static int run_script(lua_State *L)
{
    char **argv = lua_touserdata(L, 1);
    int argc = (int)lua_tointeger(L, 2);
    int script = (int)lua_tointeger(L, 3);
    open_host(L, "isolate");
    lua_setglobal(L, "sandbox");
    /* every cell thread gets a cgroup of its own; where the kernel
     * refuses, cells report that layer missing (hardened: refuse) */
    lua_getglobal(L, "sandbox");
    lua_getfield(L, -1, "configure");
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "thread_cgroups");
    if (run_mode) {
        lua_pushstring(L, run_mode);
        lua_setfield(L, -2, "mode");
    }
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    if (json_logs &&
        luaL_dostring(L, "local json = require 'isolate.json'\n"
                         "sandbox.on('log', function(ev)\n"
                         "  io.stderr:write(json.encode(ev), '\\n')\n"
                         "end)") != LUA_OK)
        return lua_error(L);
    create_arg_table(L, argv, argc, script);
    if (luaL_loadfile(L, argv[script]) != LUA_OK)
        return lua_error(L);
    int n = argc - script - 1;
    luaL_checkstack(L, n, "too many arguments to script");
    for (int i = script + 1; i < argc; i++)
        lua_pushstring(L, argv[i]);
    lua_call(L, n, 0);
    return 0;
}

static int print_version(lua_State *L)
{
    open_host(L, "isolate.core");
    lua_getfield(L, -1, "info");
    lua_call(L, 0, 1); /* [core info] */
    lua_getfield(L, -1, "version");
    lua_getfield(L, -2, "lua");
    lua_getfield(L, -3, "python");
    lua_getfield(L, -4, "cell_mode");
    printf("luaisolate %s\n%s\nCPython %s (%s sub-interpreter cells)\n",
           lua_tostring(L, -4), lua_tostring(L, -3), lua_tostring(L, -2),
           lua_tostring(L, -1));
    return 0;
}

/* `luaisolate <cmd> ...`: require(module)[fn](args after cmd) returns the
 * exit code. */
static int run_cli(lua_State *L, const char *module, const char *fn)
{
    char **argv = lua_touserdata(L, 1);
    int argc = (int)lua_tointeger(L, 2);
    open_host(L, module);
    lua_getfield(L, -1, fn);
    lua_createtable(L, argc - 2, 0);
    for (int i = 2; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - 1);
    }
    lua_call(L, 1, 1);
    exit_status = (int)luaL_checkinteger(L, -1);
    return 0;
}

static int run_check(lua_State *L)
{
    return run_cli(L, "isolate.cli", "check");
}

static int run_doctor(lua_State *L)
{
    return run_cli(L, "isolate.doctor", "doctor");
}

static int protected_main(lua_State *L, lua_CFunction fn, char **argv, int argc,
                          int script)
{
    lua_pushcfunction(L, msghandler);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, argv);
    lua_pushinteger(L, argc);
    lua_pushinteger(L, script);
    return report(L, lua_pcall(L, 3, 0, 1));
}

/* run [--log-format json|text] [--mode M] FILE: the index of FILE, or -1
 * (the mode's value is checked by sandbox.configure). */
static int run_options(int argc, char **argv)
{
    int i = 2;
    for (; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--mode")) {
            run_mode = argv[i + 1];
        } else if (!strcmp(argv[i], "--log-format")) {
            if (strcmp(argv[i + 1], "json") && strcmp(argv[i + 1], "text"))
                return -1;
            json_logs = !strcmp(argv[i + 1], "json");
        } else {
            break;
        }
    }
    return i < argc && strncmp(argv[i], "--", 2) ? i : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    lua_CFunction fn = run_script;
    int script = 1;
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version"))
        fn = print_version;
    else if (!strcmp(cmd, "check"))
        fn = run_check;
    else if (!strcmp(cmd, "doctor"))
        fn = run_doctor;
    else if (!strcmp(cmd, "run"))
        script = run_options(argc, argv);
    else if (access(cmd, F_OK) != 0) {
        fprintf(stderr, "%s: unknown command '%s'\n", progname, cmd);
        usage(stderr);
        return 2;
    }
    if (fn == run_script && (script < 0 || script >= argc)) {
        usage(stderr);
        return 2;
    }
    catch_term_signals();
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "%s: cannot create a Lua state\n", progname);
        return 1;
    }
    int status = protected_main(L, fn, argv, argc, script);
    stand_aside();
    lua_close(L);
    return status == LUA_OK ? exit_status : 1;
}
