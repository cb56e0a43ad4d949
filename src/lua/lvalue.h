/*
 * Lua 5.4 values <-> iso_value, for the isolate.core binding. No Python here.
 *
 * Conventions shared with the Lua API (DESIGN.md section 2):
 *   sandbox.null     light userdata NULL: NIL inside a container;
 *   sandbox.array(t) t carries the "isolate.array" metatable: always a list;
 *   sandbox.bytes(s) {s} with the "isolate.bytes" metatable: always bytes.
 */
#ifndef ISO_LVALUE_H
#define ISO_LVALUE_H

#include <lauxlib.h>
#include <lua.h>

#include "isolate.h"

#define ISO_LUA_ARRAY_MT "isolate.array"
#define ISO_LUA_BYTES_MT "isolate.bytes"

/* Create the array and bytes metatables in the registry (idempotent). Call
 * from luaopen; may raise a memory error like any Lua API call. */
void iso_lua_value_init(lua_State *L);

/* Convert the value at idx into *out (overwritten, not freed). Never raises
 * and never calls a metamethod. Returns 0, or -1 with *out NIL and err set
 * to ISO_VALUE with what is wrong and where ("cannot convert a function at
 * [2].f"). The Lua stack is left as it was. */
int iso_lua_to_value(lua_State *L, int idx, iso_value *out, iso_error *err);

/* Push v (only read). NIL pushes nil at the top level and the null sentinel
 * inside a container; an empty list pushes {} with the array metatable;
 * BYTES pushes a plain Lua string. Raises only on memory errors, so the
 * caller must not hold C resources it would leak. */
void iso_lua_push_value(lua_State *L, const iso_value *v);

/* sandbox.array(t) -> t and sandbox.bytes(s) -> bytes marker. Lua API
 * functions: they raise on bad arguments. */
int iso_lua_array(lua_State *L);
int iso_lua_bytes(lua_State *L);

#endif
