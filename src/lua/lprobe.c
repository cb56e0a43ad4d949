/*
 * core.probe(): the host probes behind `luaisolate doctor`, as a Lua table
 * {name = {ok=, detail=, advice=, ...}} (see src/kernel/probe.h).
 */
#include "binding.h"
#include "lvalue.h"
#include "probe.h" /* the binding has no src/core include path */

static int push_probes(lua_State *L)
{
    iso_lua_push_value(L, lua_touserdata(L, 1));
    return 1;
}

/* Converted under lua_pcall so that a memory error cannot leak the C
 * value: it is freed before anything is raised. */
int iso_lua_probe(lua_State *L)
{
    iso_value v = {0};
    iso_error err = {0};
    iso_runtime_info python;
    iso_runtime_info_get(&python);
    if (iso_probe_host(&python, &v, &err) < 0)
        return iso_lua_raise(L, &err);
    lua_pushcfunction(L, push_probes);
    lua_pushlightuserdata(L, &v);
    int status = lua_pcall(L, 1, 1, 0); /* [probes] or [error] */
    iso_value_free(&v);
    return status == LUA_OK ? 1 : lua_error(L);
}
