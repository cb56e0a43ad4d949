#!/usr/bin/env bash
# The rock as a Lua application gets it: `luarocks make` (offline) from a
# copy of the source tree into a private tree, then `require "isolate"` from
# plain lua5.4 (RTLD_LOCAL, no host). Registered with ctest (label `rock`).
# LUAROCKS and LUA54 may name the programs to use.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
luarocks=${LUAROCKS:-luarocks}
lua=${LUA54:-lua5.4}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/luaisolate-rock.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/src" "$tmp/run"

# Copy the sources, never build dirs: the files git knows (tracked, or new
# and not ignored), else the directories the build reads.
cd "$root"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard |
        tar --null --ignore-failed-read -T - -cf - 2>/dev/null |
        tar -xf - -C "$tmp/src"
else
    for f in CMakeLists.txt cmake include src lua rockspec policies; do
        [[ ! -e $f ]] || cp -R "$f" "$tmp/src/"
    done
fi

# Offline, as the README's second luarocks command: argparse and cjson
# come from Debian's lua-argparse and lua-cjson on Lua's default path.
cd "$tmp/src"
"$luarocks" --lua-version=5.4 make --deps-mode=none --tree="$tmp/tree" \
    rockspec/luaisolate-scm-1.rockspec
"$luarocks" --lua-version=5.4 lint rockspec/luaisolate-scm-1.rockspec

# Only the rock's tree: drop any path the caller set for Lua 5.4.
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
eval "$("$luarocks" --lua-version=5.4 --tree="$tmp/tree" path)"

cd "$tmp/run"
out=$("$lua" - "$tmp/tree" 2>&1 <<'LUA'
local tree = ...
for _, m in ipairs { { "isolate", package.path }, { "isolate.core", package.cpath } } do
   local file = assert(package.searchpath(m[1], m[2]))
   assert(file:sub(1, #tree) == tree, m[1] .. " not from the rock: " .. file)
end
local s = require "isolate"
local sb = s.spawn{}
sb:exec("post(40 + 2)")
assert(sb:recv(5) == 42)
sb:close()
-- the templates are installed with the module and found by name
local p = s.policy.load("web-scraper")
assert(p.source:sub(1, #tree) == tree, "template not from the rock: " .. p.source)
local web <close> = s.spawn{ policy = "stdlib.readonly" }
web:exec("import json; post(json.dumps({'a': 1}))")
assert(web:recv(5) == '{"a": 1}')
-- the installed worker serves process cells to plain lua5.4 too
local pc <close> = s.spawn{ backend = "process" }
pc:exec("post(6 * 7)")
assert(pc:recv(5) == 42)
print("rock ok")
LUA
) && rc=0 || rc=$?
printf '%s\n' "$out"
[[ $rc == 0 && $out == *"rock ok"* ]]
# the installed host finds the installed templates too
"$tmp/tree/bin/luaisolate" check compute-only web-scraper
# the man pages are in the rock
rock=$("$luarocks" --lua-version=5.4 --tree="$tmp/tree" show --rock-dir luaisolate)
for page in man1/luaisolate.1 man5/luaisolate-policy.5; do
    [[ -f $rock/share/man/$page ]] || { echo "rock lacks share/man/$page" >&2; exit 1; }
done
# and the installed host refuses a bad option with exit 2 (argparse found)
rc=0
"$tmp/tree/bin/luaisolate" version --json 2>/dev/null || rc=$?
[[ $rc == 2 ]] || { echo "luaisolate version --json: exit $rc, not 2" >&2; exit 1; }
# `luarocks test` (test = {type = "busted"}) with the repository's .busted.
# LuaRocks wants busted as a rock: offline, a shim rock whose executable
# is Debian's lua-busted stands in for the one it would download.
mkdir "$tmp/shim"
cat >"$tmp/shim/busted" <<'SH'
#!/usr/bin/env lua5.4
require "busted.runner" ({ standalone = false })
SH
cat >"$tmp/shim/busted-0-0.rockspec" <<'SPEC'
rockspec_format = "3.0"
package = "busted"
version = "0-0"
source = { url = "file:///dev/null" }
description = { summary = "Debian's lua-busted as a rock", license = "MIT" }
build = { type = "builtin", modules = {}, install = { bin = { busted = "busted" } } }
SPEC
printf 'rocks_trees = { { name = "test", root = "%s" } }\nrocks_servers = {}\n' \
    "$tmp/tree" >"$tmp/luarocks-config.lua"
export LUAROCKS_CONFIG="$tmp/luarocks-config.lua"
(cd "$tmp/shim" && "$luarocks" --lua-version=5.4 make busted-0-0.rockspec >/dev/null)
(cd "$tmp/src" && "$luarocks" --lua-version=5.4 test rockspec/luaisolate-scm-1.rockspec \
    -- spec/check_cli_spec.lua spec/policy_spec.lua)
echo "rockspec ok"
