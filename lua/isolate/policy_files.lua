-- isolate.policy_files: finding and reading policy files for
-- isolate.policy. A reference is a path (it has a "/" or ends in .lua) or
-- a name, searched next to the referring file, then in policy.path (the
-- caller's list; default_path() is its default). A file is data: it runs
-- with an empty environment, no string methods and an instruction budget.
local core = require "isolate.core"
local errors = require "isolate.error"
local rules = require "isolate.rules"

local contains, quote, describe = rules.contains, rules.quote, rules.describe

local M = {}

-- A policy file is data: it gets this many VM instructions to build its
-- table, so a stray loop fails instead of hanging `luaisolate check`.
local FILE_BUDGET = 10000000

local function is_path(ref)
  return ref:find("/", 1, true) ~= nil or ref:sub(-4) == ".lua"
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local function dir_of(path)
  return path and (path:match("^(.*)/[^/]*$") or ".")
end

local function search_dirs(from_dir, path)
  if type(path) ~= "table" then
    errors.raise("invalid_argument", "policy.path must be a list of directories")
  end
  local dirs = { from_dir }
  for _, d in ipairs(path) do
    if type(d) == "string" and d:find("\0", 1, true) then
      errors.raise("invalid_argument", "policy.path: a directory must not contain a NUL byte")
    end
    if type(d) == "string" and not contains(dirs, d) then dirs[#dirs + 1] = d end
  end
  return dirs
end

-- The file a reference names, or nil, the places searched as text and as
-- a list (a path: itself). Names are
-- searched next to the referring file first (so a folder of policies can
-- extend each other), then in path (policy.path).
local function locate(ref, from_dir, path)
  -- io.open and loadfile pass a C string: "a.lua\0junk" would open a.lua
  if ref:find("\0", 1, true) then
    errors.raise("invalid_argument", "a policy name or path must not contain a NUL byte")
  end
  if is_path(ref) then
    if ref:sub(1, 1) ~= "/" and from_dir then ref = from_dir .. "/" .. ref end
    return exists(ref) and ref or nil, ref, { ref }
  end
  local dirs = search_dirs(from_dir, path)
  if ref:match("^[%w_][%w_.-]*$") then
    for _, d in ipairs(dirs) do
      local file = d .. "/" .. ref .. ".lua"
      if exists(file) then return file end
    end
  end
  return nil, #dirs > 0 and table.concat(dirs, ", ") or "(policy.path is empty)",
    dirs
end

-- The policy names the folders dirs hold (their *.lua files), sorted:
-- what "did you mean" picks from. lfs (lua-filesystem) is loaded only
-- when a name is not found.
local function names_in(dirs)
  local lfs = require "lfs"
  local out = {}
  for _, d in ipairs(dirs) do
    local ok, iter, dir = pcall(lfs.dir, d)
    for f in ok and iter or function() end, dir do
      local name = f:match("^([%w_][%w_.-]*)%.lua$")
      if name and not contains(out, name) then out[#out + 1] = name end
    end
  end
  table.sort(out)
  return out
end

-- The nearest policy name in dirs to ref, or nil (a path: none).
local function nearest_name(ref, dirs)
  if is_path(ref) then return nil end
  return rules.nearest(ref, names_in(dirs))
end

-- " (did you mean "x"?)" or "".
local function did_you_mean(near)
  return near and string.format(" (did you mean %s?)", quote(near)) or ""
end

-- Run a data chunk: no string methods, a bounded number of instructions.
local function run_data(chunk)
  local co = coroutine.create(chunk)
  if debug and debug.sethook then
    debug.sethook(co, function()
      error("policy file runs too long; a policy is data, not a program", 2)
    end, "", FILE_BUDGET)
  end
  local smt = (debug and debug.getmetatable or getmetatable)("")
  local saved = smt and smt.__index
  if smt then smt.__index = nil end
  local ok, res = coroutine.resume(co)
  if smt then smt.__index = saved end
  return ok, res
end

-- The error of a file that does not load or run: source is the file, and
-- line the line Lua named in file:LINE: (nil when it named none).
local function file_error(file, msg)
  local at = msg:sub(1, #file + 1) == file .. ":" and msg:sub(#file + 1)
  local line = at and tonumber(at:match("^:(%d+):")) or nil
  if not msg:find(file, 1, true) then msg = file .. ": " .. msg end
  error(errors.new("policy", "cannot load policy " .. msg,
                   { problems = { { path = "", message = msg, line = line } },
                     source = file, line = line }), 0)
end

-- The table a policy file returns. The environment is empty: no io, os,
-- require, load... and string methods are off, so a file is only data.
local function read_data(file)
  local chunk, err = loadfile(file, "t", {})
  if not chunk then file_error(file, err) end
  local ok, t = run_data(chunk)
  if not ok then file_error(file, tostring(t)) end
  if type(t) ~= "table" then
    file_error(file, "the file must return a table, e.g. return { version = 1 }, "
               .. "but returned " .. describe(t))
  end
  return t
end

local function identity(file)
  return core.normalize_path(file) or file
end

-- ---- the search path ---------------------------------------------------------

local function is_dir(path)
  -- fopen() of a directory succeeds on Linux; reading it fails.
  local f = io.open(path, "r")
  if not f then return false end
  local _, _, code = f:read(1)
  f:close()
  return code == 21 -- EISDIR
end

-- The folder of this file when it was loaded from one, by absolute path.
-- The host embeds the module under the relative chunk name
-- "@lua/isolate/policy_files.lua": trusting it would make template names
-- resolve against whatever folder the operator happens to be in.
local function module_dir()
  local source = debug and debug.getinfo(1, "S").source or ""
  local file = source:match("^@(/.*)$")
  return file and exists(file) and dir_of(file) or nil
end

-- ISOLATE_POLICY_PATH first, then the templates installed next to this
-- module (<LUADIR>/isolate/policies, or policies/ of a source checkout),
-- then the build-time folder isolate.core may report. getenv defaults to
-- os.getenv (a parameter so the order can be tested).
function M.default_path(getenv)
  local dirs = {}
  for d in ((getenv or os.getenv)("ISOLATE_POLICY_PATH") or ""):gmatch("[^:]+") do
    dirs[#dirs + 1] = d
  end
  local here = module_dir()
  if here then
    local root = here:match("^(.*)/lua/isolate$")
    local checkout = root and root .. "/policies"
    if is_dir(here .. "/policies") then dirs[#dirs + 1] = here .. "/policies"
    elseif checkout and is_dir(checkout) then dirs[#dirs + 1] = checkout end
  end
  if type(core.policy_dir) == "string" and not contains(dirs, core.policy_dir) then
    dirs[#dirs + 1] = core.policy_dir
  end
  return dirs
end

M.exists, M.is_path, M.dir_of, M.locate = exists, is_path, dir_of, locate
M.nearest_name, M.did_you_mean = nearest_name, did_you_mean
M.read_data, M.identity = read_data, identity

return M
