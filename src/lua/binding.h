/* Shared pieces of the isolate.core binding (no Python here). */
#ifndef ISO_BINDING_H
#define ISO_BINDING_H

#include <lauxlib.h>
#include <lua.h>

#include "isolate.h"

#define ISO_CELL_MT "isolate.Cell"
#define ISO_ERROR_MT "isolate.Error"

/* Push an isolate.Error table for err; err is cleared. */
void iso_lua_push_error(lua_State *L, iso_error *err);
/* Raise err as an isolate.Error (err is cleared first: nothing leaks). */
int iso_lua_raise(lua_State *L, iso_error *err);
/* Raise a fresh error of the given kind. */
int iso_lua_raisef(lua_State *L, iso_kind kind, const char *fmt, ...);

/* The string at idx (numbers convert); invalid_argument naming `what`
 * when it is none or holds a NUL byte (C would see only the part before
 * it): every Lua string that reaches C as a C string comes through here. */
const char *iso_lua_checkstr(lua_State *L, int idx, const char *what);

/* lcell.c */
void iso_lua_cell_register(lua_State *L); /* the isolate.Cell metatable */
int iso_lua_cell_spawn(lua_State *L);     /* core.spawn(config, broker) */
int iso_lua_cell_wait_any(lua_State *L);  /* core.wait_any(cells, timeout) */
/* The cells of the list at index 1, in an array owned by a new userdata
 * on the stack with room for n bools after it. */
iso_cell **iso_lua_check_cells(lua_State *L, size_t *n);
/* The cell of the isolate.Cell at idx (NULL: never spawned). */
iso_cell *iso_lua_to_cell(lua_State *L, int idx);

/* lloop.c: core.loop_fd, core.loop_poll, core.loop_arm; sb:cancel() */
void iso_lua_loop_register(lua_State *L); /* into the module table on top */

/* lplan.c */
void iso_lua_plan_register(lua_State *L); /* into the module table on top */
iso_plan *iso_lua_check_plan(lua_State *L, int idx);

int iso_lua_probe(lua_State *L); /* lprobe.c: core.probe() */

int luaopen_isolate_core(lua_State *L);

#endif
