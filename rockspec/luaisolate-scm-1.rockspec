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
The man pages luaisolate(1) and luaisolate-policy(5) are installed under
the rock's share/man.
]],
   license = "MIT",
   homepage = "https://github.com/luaisolate/luaisolate",
   labels = { "sandbox", "python", "isolation" },
}

-- Debian 12: lua-argparse, lua-cjson, lua-luaossl and lua-filesystem provide them
-- for Lua 5.4 (lfs lists the policy folders for "did you mean"); with
-- them installed, `luarocks make --deps-mode=none` builds offline.
dependencies = {
   "lua >= 5.4, < 5.5",
   "argparse >= 0.7",
   "lua-cjson >= 2.1.0",
   "luaossl >= 20220711",
   "luafilesystem >= 1.8.0",
}

-- `luarocks test` runs busted (LuaRocks installs the busted rock on first
-- use) with the repository's .busted: Lua 5.4, the module built in build/
-- (build it first; see .busted and the README).

test = {
   type = "busted",
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
