rockspec_format = "3.0"
package = "luaisolate"
version = "scm-1"

source = {
   url = "git+https://github.com/luaisolate/luaisolate.git",
   branch = "main",
}

description = {
   summary = "Run Python code in isolated cells, scripted from Lua",
   detailed = [[
luaisolate runs Python code in cells (CPython sub-interpreters or confined
worker processes) driven by Lua policies. This rock installs the `isolate`
module (pure Lua plus the C binding isolate.core) and the `luaisolate` host.
Needs a CPython >= 3.11 with a shared libpython (Debian: python3-dev).
]],
   -- license: set once the project has a LICENSE file
   labels = { "sandbox", "python", "isolation" },
}

dependencies = {
   "lua >= 5.4, < 5.5",
}

-- `luarocks make` from the repository root builds the checkout in place,
-- offline. CMake installs isolate/core.so under $(LIBDIR), isolate/*.lua
-- under $(LUADIR) and the luaisolate host under $(PREFIX)/bin, i.e.
-- $(BINDIR): LuaRocks then deploys them into the tree.
build = {
   type = "cmake",
   variables = {
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      ISOLATE_LUA_LIBDIR = "$(LIBDIR)",
      ISOLATE_LUA_DIR = "$(LUADIR)",
      ISOLATE_TESTS = "OFF",
   },
}
