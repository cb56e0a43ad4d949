/*
 * luaisolate: the host. Embeds Lua 5.4, preloads isolate.core and the
 * pure-Lua modules and hands the command line to isolate.cli (argparse),
 * which sets the global `sandbox` and runs scripts the way lua.c does:
 * under lua_pcall with a message handler that keeps isolate.Error's
 * __tostring, adds a guest's Python traceback and then the Lua one.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "binding.h"
#include "embedded.h"

static const char *progname = "luaisolate";
static int exit_status; /* what isolate.cli returned */

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

/* A guest's exception (an isolate.Error with a traceback): its type and
 * message are in tostring(err); the guest's own traceback follows, so an
 * uncaught exception shows where in the Python code it was raised. */
static const char *with_guest_traceback(lua_State *L, const char *msg)
{
    if (lua_type(L, 1) != LUA_TTABLE)
        return msg;
    lua_pushliteral(L, "traceback"); /* raw: a handler must not raise */
    if (lua_rawget(L, 1) != LUA_TSTRING) {
        lua_pop(L, 1);
        return msg;
    }
    size_t len;
    const char *tb = lua_tolstring(L, -1, &len);
    while (len > 0 && tb[len - 1] == '\n')
        len--;
    lua_pushfstring(L, "%s\nguest %s", msg,
                    lua_pushlstring(L, tb, len)); /* "guest Traceback ..." */
    return lua_tostring(L, -1);
}

/* As lua.c's: the error as text, a traceback after it. */
static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = with_guest_traceback(L, lua_tostring(L, -1));
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

/* Standard libraries, the built-in modules, and require(module) pushed. */
static void open_host(lua_State *L, const char *module)
{
    luaL_openlibs(L);
    preload_modules(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    lua_call(L, 1, 1);
}

/* A run's steps (see isolate.cli): each call of the function at `steps`
 * returns a chunk and its arguments, called here, or the exit status. */
static int run_steps(lua_State *L, int steps)
{
    for (;;) {
        lua_settop(L, steps);
        lua_pushvalue(L, steps);
        lua_call(L, 0, LUA_MULTRET);
        if (lua_type(L, steps + 1) != LUA_TFUNCTION)
            break;
        lua_call(L, lua_gettop(L) - steps - 1, 0);
    }
    exit_status = (int)luaL_optinteger(L, steps + 1, 0);
    return 0;
}

/* isolate.cli.main(args) parses the command line (argparse) and either
 * returns the exit status or the steps of `luaisolate [options] [script
 * [args]]`: its -l, -e and script. All of it runs under the message
 * handler, so an uncaught error gets a traceback. */
static int run_main(lua_State *L)
{
    char **argv = lua_touserdata(L, 1);
    int argc = (int)lua_tointeger(L, 2);
    open_host(L, "isolate.cli");
    lua_getfield(L, -1, "main");
    lua_remove(L, -2); /* the module is not the script's to keep alive */
    lua_createtable(L, argc - 1, 0);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_call(L, 1, 1);
    if (lua_type(L, -1) == LUA_TFUNCTION)
        return run_steps(L, lua_gettop(L));
    exit_status = (int)luaL_optinteger(L, -1, 0);
    return 0;
}

static int protected_main(lua_State *L, char **argv, int argc)
{
    lua_pushcfunction(L, msghandler);
    lua_pushcfunction(L, run_main);
    lua_pushlightuserdata(L, argv);
    lua_pushinteger(L, argc);
    return report(L, lua_pcall(L, 2, 0, 1));
}

int main(int argc, char **argv)
{
    catch_term_signals();
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "%s: cannot create a Lua state\n", progname);
        return 1;
    }
    int status = protected_main(L, argv, argc);
    stand_aside();
    lua_close(L);
    return status == LUA_OK ? exit_status : 1;
}
