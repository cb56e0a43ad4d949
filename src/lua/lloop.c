/*
 * The event-loop side of isolate.core: the host's one pollable fd and the
 * non-blocking look at many cells that lua/isolate/loop.lua's step() is
 * made of. Nothing here waits: collecting a result, serving a broker
 * request and dispatching events stay sb:result(0)'s, as for wait_any.
 */
#include "binding.h"

/* core.loop_fd() -> fd: readable whenever a cell may need the host. */
static int l_loop_fd(lua_State *L)
{
    iso_error err = {0};
    int fd = iso_loop_fd(&err);
    if (fd < 0)
        return iso_lua_raise(L, &err);
    lua_pushinteger(L, fd);
    return 1;
}

static void push_ready(lua_State *L, const bool *ready, size_t n, size_t count)
{
    lua_createtable(L, (int)count, 0);
    for (size_t i = 0, k = 0; i < n; i++)
        if (ready[i]) {
            lua_pushinteger(L, (lua_Integer)i + 1);
            lua_rawseti(L, -2, (lua_Integer)++k);
        }
}

/* core.loop_poll(cells) -> positions: take what made the fd readable,
 * then which of the cells need the host now (as wait_any(cells, 0)). */
static int l_loop_poll(lua_State *L)
{
    size_t n;
    iso_cell **cells = iso_lua_check_cells(L, &n);
    bool *ready = (bool *)(cells + n);
    double wake = -1;
    iso_loop_drain();
    push_ready(L, ready, n, iso_cell_poll_any(cells, n, ready, &wake));
    return 1;
}

/* core.loop_arm(cells): after a step, watch the cells' sockets and arm the
 * timer for their next limit. A running cell that needs the host again
 * already (it sent more meanwhile) kicks the fd: the loop steps again. */
static int l_loop_arm(lua_State *L)
{
    size_t n;
    iso_cell **cells = iso_lua_check_cells(L, &n);
    bool *ready = (bool *)(cells + n), again = false;
    double wake = -1;
    iso_cell_poll_any(cells, n, ready, &wake);
    for (size_t i = 0; i < n; i++)
        again = again || (ready[i] && iso_cell_busy(cells[i]));
    iso_loop_arm(cells, n, wake);
    if (again)
        iso_loop_kick();
    return 0;
}

/* core.loop_kick(): make the fd readable (a callback queued in Lua). */
static int l_loop_kick(lua_State *L)
{
    (void)L;
    iso_loop_kick();
    return 0;
}

/* sb:cancel() -> true when a running request was cancelled: waiting for
 * its result (blocking or in step()) fails with kind "cancelled". */
static int l_cell_cancel(lua_State *L)
{
    iso_cell *c = iso_lua_to_cell(L, 1);
    lua_pushboolean(L, c && iso_cell_cancel(c));
    return 1;
}

static const luaL_Reg loop_functions[] = {
    {"loop_fd", l_loop_fd},
    {"loop_poll", l_loop_poll},
    {"loop_arm", l_loop_arm},
    {"loop_kick", l_loop_kick},
    {NULL, NULL},
};

void iso_lua_loop_register(lua_State *L)
{
    luaL_setfuncs(L, loop_functions, 0); /* [core] */
    lua_getfield(L, LUA_REGISTRYINDEX, "isolate.cell_methods");
    lua_pushcfunction(L, l_cell_cancel);
    lua_setfield(L, -2, "cancel");
    lua_pop(L, 1);
}
