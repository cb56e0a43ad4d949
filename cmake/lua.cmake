# Lua 5.4 headers for the module (LuaRocks passes LUA_INCDIR) and the
# library the host links. The module itself never links liblua: it takes
# the symbols of whichever Lua loads it.
set(LUA_INCDIR "" CACHE PATH "Lua 5.4 headers")
if(NOT LUA_INCDIR)
  find_path(ISOLATE_LUA_H_DIR lua.h PATH_SUFFIXES lua5.4 lua)
  set(LUA_INCDIR ${ISOLATE_LUA_H_DIR})
endif()
if(NOT EXISTS ${LUA_INCDIR}/lua.h)
  message(FATAL_ERROR "Lua 5.4 headers not found: install liblua5.4-dev or pass -DLUA_INCDIR=")
endif()
add_library(isolate_lua_headers INTERFACE)
target_include_directories(isolate_lua_headers INTERFACE ${LUA_INCDIR})

find_library(LUA_LIBRARY NAMES lua5.4 lua54 lua)
add_library(isolate_lua_lib INTERFACE)
target_link_libraries(isolate_lua_lib INTERFACE isolate_lua_headers)
if(LUA_LIBRARY)
  target_link_libraries(isolate_lua_lib INTERFACE ${LUA_LIBRARY} m)
endif()
