-- isolate.policy: policies are Lua data (DESIGN.md §3).
--
--   local policy = require "isolate.policy"      -- also sandbox.policy
--   local p = policy.load("readonly-fs")         -- a template name or a file path
--   p:check("read", "/srv/data/a.csv")           --> true, 'fs {read="/srv/data/**"}'
--   for _, row in ipairs(p:explain()) do print(row.rule, row.layer, row.note) end
--
-- Compiling validates every field and reports all problems at once in one
-- error of kind "policy" (err.problems = {{path=, message=}, ...}). Globs
-- and net specs are parsed by isolate.core only, so the validator, check()
-- and the guards in cells can never disagree about what a rule means.
local core = require "isolate.core"
local errors = require "isolate.error"

local policy = {}

local Policy = { __name = "isolate.Policy" }
local methods = {}
-- A Policy never changes after compile: its state lives here, out of reach,
-- and every field read returns a copy (see Policy.__index).
local private = setmetatable({}, { __mode = "k" })

local BACKENDS = { "subinterpreter", "process", "microvm" }
local TOP_KEYS = { "version", "extends", "imports", "fs", "net",
                   "capabilities", "limits", "syscalls" }
local FS_KEYS = { "read", "write", "allow", "deny" }
local NET_KEYS = { "connect", "deny" }
local LIMIT_KEYS = { "cpu_ms", "wall_ms", "mem", "open_files", "processes",
                     "output_bytes" }
local MERGE_KEYS = { "imports", "capabilities", "limits" }
-- Smallest value of each counted limit: no processes at all is meaningful,
-- zero milliseconds or zero open files is not.
local COUNT_MIN = { cpu_ms = 1, wall_ms = 1, open_files = 1, processes = 0 }
-- Sizes are "<integer><unit>", case-sensitive, no space: one spelling per
-- size, so "256mb" (bits? bytes?) and "1.5GiB" are refused, not guessed.
local UNITS = { B = 1, KiB = 1 << 10, MiB = 1 << 20, GiB = 1 << 30,
                TiB = 1 << 40, KB = 1000, MB = 1000000, GB = 1000000000,
                TB = 1000000000000 }
local UNIT_LIST = "B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB "
                  .. "(powers of 1000)"
local MAX_EXTENDS = 16
-- A policy file is data: it gets this many VM instructions to build its
-- table, so a stray loop fails instead of hanging `luaisolate check`.
local FILE_BUDGET = 10000000

-- ---- small helpers --------------------------------------------------------

local function contains(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function copy_list(list)
  return table.move(list, 1, #list, 1, {})
end

local function copy_rules(rules)
  local out = {}
  for i, r in ipairs(rules) do
    out[i] = {}
    for k, v in pairs(r) do out[i][k] = v end
  end
  return out
end

-- A string literal in Lua syntax, for rule text an operator can paste.
local function quote(s)
  local named = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r",
                  ['"'] = '\\"', ["\\"] = "\\\\" }
  return '"' .. s:gsub('[%c"\\]', function(c)
    return named[c] or string.format("\\%03d", c:byte())
  end) .. '"'
end

local function quote_list(list)
  local parts = {}
  for i, v in ipairs(list) do parts[i] = quote(v) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function describe(v)
  local t = type(v)
  if t == "string" then return "the string " .. quote(v) end
  if t == "number" or t == "boolean" then return t .. " " .. tostring(v) end
  return t == "nil" and "nothing" or "a " .. t
end

-- Edit distance, for "did you mean" hints on misspelt keys.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local function suggestion(k, valid)
  if type(k) ~= "string" then return "" end
  local best, best_d = nil, 3
  for _, v in ipairs(valid) do
    local d = distance(k, v)
    if d < best_d then best, best_d = v, d end
  end
  return best and string.format(" (did you mean '%s'?)", best) or ""
end

local function key_path(base, k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then
    return base == "" and k or base .. "." .. k
  end
  if math.type(k) == "integer" then return string.format("%s[%d]", base, k) end
  return string.format("%s[%s]", base, type(k) == "string" and quote(k) or tostring(k))
end

local function integer_of(v)
  if math.type(v) == "float" and v == math.floor(v) then return math.tointeger(v) end
  return math.type(v) == "integer" and v or nil
end

local function module_name(s)
  if type(s) ~= "string" then return false end
  for part in (s .. "."):gmatch("(.-)%.") do
    if not part:match("^[%a_][%w_]*$") then return false end
  end
  return true
end

-- ---- problems -------------------------------------------------------------

local Problems = {}
Problems.__index = Problems

local function new_problems() return setmetatable({ list = {} }, Problems) end

function Problems:add(path, fmt, ...)
  self.list[#self.list + 1] = { path = path, message = string.format(fmt, ...) }
end

function Problems:unknown_key(path, k, valid)
  self:add(path, "unknown key%s; valid keys: %s", suggestion(k, valid),
           table.concat(valid, ", "))
end

-- "invalid <subject>: <path>: <message>; ..." so tostring(err) alone
-- tells an operator everything the problems list does.
local function summary(subject, list)
  local parts = {}
  for i, p in ipairs(list) do
    parts[i] = p.path == "" and p.message or p.path .. ": " .. p.message
  end
  return string.format("invalid %s: %s", subject, table.concat(parts, "; "))
end

local function raise_problems(kind, subject, list, fields)
  fields = fields or {}
  fields.problems = list
  error(errors.new(kind, summary(subject, list), fields), 3)
end

-- ---- shape checks -----------------------------------------------------------

-- The {key, value} items of a list in key order; a problem when t is not a
-- real sequence (a non-integer key, or a hole left by a nil item).
function Problems:seq(t, path, what)
  if type(t) ~= "table" then
    self:add(path, "expected a list of %s, got %s", what, describe(t))
    return {}
  end
  local keys, bad = {}, {}
  for k in next, t do
    if math.type(k) == "integer" and k >= 1 then keys[#keys + 1] = k
    else bad[#bad + 1] = key_path("", k) end
  end
  table.sort(keys)
  table.sort(bad)
  if #bad > 0 then
    self:add(path, "expected a list of %s, found key(s) %s; write the items "
             .. "as { a, b, ... } without keys", what, table.concat(bad, ", "))
  end
  for i, k in ipairs(keys) do
    if k ~= i then
      self:add(path, "the list has a hole at [%d] (a nil item?); remove it", i)
      break
    end
  end
  local items = {}
  for i, k in ipairs(keys) do items[i] = { k, t[k] } end
  return items
end

-- Strings of a list that pass ok(v), deduplicated, in order.
function Problems:names(t, path, noun, ok, expected)
  local out = {}
  for _, item in ipairs(self:seq(t, path, noun)) do
    local k, v = item[1], item[2]
    if not ok(v) then
      self:add(string.format("%s[%d]", path, k), "expected %s, got %s", expected,
               describe(v))
    elseif not contains(out, v) then
      out[#out + 1] = v
    end
  end
  return out
end

-- One rule: a table with exactly one of `keys`, whose value passes check().
function Problems:rule(rule, path, keys, example, check)
  if type(rule) ~= "table" then
    self:add(path, "expected a rule such as %s, got %s", example, describe(rule))
    return nil
  end
  local found = {}
  for k, v in next, rule do
    if not contains(keys, k) then
      self:unknown_key(key_path(path, k), k, keys)
    elseif type(v) ~= "string" then
      self:add(path .. "." .. k, "expected a string, got %s", describe(v))
    else
      local ok, msg = check(v)
      if ok then found[#found + 1] = k
      else self:add(path .. "." .. k, "%s", msg or "invalid") end
    end
  end
  if next(rule) == nil then
    self:add(path, "empty rule; give exactly one of %s, e.g. %s",
             table.concat(keys, ", "), example)
  elseif #found > 1 then
    table.sort(found)
    self:add(path, "a rule has exactly one of %s (found %s); split it into "
             .. "one rule per key", table.concat(keys, ", "), table.concat(found, ", "))
  elseif #found == 1 then
    return found[1], rule[found[1]]
  end
  return nil
end

-- ---- sections ---------------------------------------------------------------

local function empty_spec()
  return { imports = {}, capabilities = {}, fs = {}, net = {}, limits = {},
           limit_src = {}, syscalls = {} }
end

local function rule_text(section, kind, target)
  return string.format("%s {%s=%s}", section, kind, quote(target))
end

local sections = {}

function sections.version(P, v)
  if not (type(v) == "number" and v == 1) then
    P:add("version", "expected 1 (the only policy language version), got %s",
          describe(v))
  end
end

function sections.extends(P, v, spec)
  if type(v) ~= "string" or v == "" then
    P:add("extends", "expected a policy name such as \"stdlib.readonly\" or a "
          .. "file path, got %s", describe(v))
  else
    spec.extends = v
  end
end

function sections.imports(P, v, spec)
  spec.imports = P:names(v, "imports", "module names", module_name,
                         "a module name such as \"json\" or \"os.path\"")
end

function sections.capabilities(P, v, spec)
  local function ok(c) return type(c) == "string" and c:match("^[%w_.-]+$") ~= nil end
  spec.capabilities = P:names(v, "capabilities", "capability names", ok,
                              "a capability name matching ^[%w_.-]+$")
end

local function add_rules(P, v, spec, section, keys, example, check, label)
  local field, target = section == "fs" and "access" or "action",
                        section == "fs" and "pattern" or "spec"
  for _, item in ipairs(P:seq(v, section, "rules")) do
    local path = string.format("%s[%d]", section, item[1])
    local kind, value = P:rule(item[2], path, keys, example, check)
    if kind then
      spec[section][#spec[section] + 1] = {
        [field] = kind, [target] = value, text = rule_text(section, kind, value),
        origin = string.format("%s %s", label, path),
      }
    end
  end
end

function sections.fs(P, v, spec, label)
  add_rules(P, v, spec, "fs", FS_KEYS, '{read="/srv/data/**"}', core.check_glob,
            label)
end

function sections.net(P, v, spec, label)
  add_rules(P, v, spec, "net", NET_KEYS, '{connect="127.0.0.1:6379"}',
            core.check_net, label)
end

-- bytes, or nil and what to write instead.
local function size_of(v)
  local n = integer_of(v)
  if type(v) == "number" then
    if n and n > 0 then return n end
    return nil, "expected a positive integer number of bytes or a size such "
                .. "as \"256MiB\", got " .. describe(v)
  elseif type(v) ~= "string" then
    return nil, "expected a size such as \"256MiB\" or a number of bytes, got "
                .. describe(v)
  end
  local digits, unit = v:match("^(%d+)(%a+)$")
  if not digits then
    return nil, string.format("%s is not a size; write an integer and a unit "
                .. "with no space, e.g. \"256MiB\"; units: %s", quote(v), UNIT_LIST)
  end
  local mult = UNITS[unit]
  if not mult then
    return nil, string.format("unknown unit %s (units are case-sensitive); "
                .. "use one of %s", quote(unit), UNIT_LIST)
  end
  n = math.tointeger(tonumber(digits))
  if not n or n > math.maxinteger // mult then return nil, "size is too large" end
  if n == 0 then return nil, "expected a size greater than zero" end
  return n * mult
end

local function count_of(k, v)
  local n, min = integer_of(v), COUNT_MIN[k]
  if n and n >= min then return n end
  return nil, string.format("expected an integer >= %d%s, got %s", min,
                            k:match("_ms$") and " (milliseconds)" or "", describe(v))
end

function sections.limits(P, v, spec)
  if type(v) ~= "table" then
    P:add("limits", "expected a table such as {wall_ms = 5000}, got %s", describe(v))
    return
  end
  for k, x in next, v do
    local path = key_path("limits", k)
    if not contains(LIMIT_KEYS, k) then
      P:unknown_key(path, k, LIMIT_KEYS)
    else
      local n, msg
      if COUNT_MIN[k] then n, msg = count_of(k, x) else n, msg = size_of(x) end
      -- Keep the operator's spelling of sizes for rule text and totable().
      if n then spec.limits[k], spec.limit_src[k] = n, type(x) == "string" and x or n
      else P:add(path, "%s", msg) end
    end
  end
end

function sections.syscalls(P, v, spec)
  if type(v) ~= "table" then
    P:add("syscalls", "expected a table such as {deny = {\"ptrace\"}}, got %s",
          describe(v))
    return
  end
  for k in next, v do
    if k ~= "deny" then P:unknown_key(key_path("syscalls", k), k, { "deny" }) end
  end
  if v.deny ~= nil then
    spec.syscalls = P:names(v.deny, "syscalls.deny", "syscall names", function(s)
      return type(s) == "string" and core.syscall_known(s)
    end, "a syscall name known to this machine, such as \"ptrace\"")
  end
end

-- Validate one policy table (not its parents) into a spec.
local function validate(P, t, label)
  local spec = empty_spec()
  for k in next, t do
    if not sections[k] then P:unknown_key(key_path("", k), k, TOP_KEYS) end
  end
  for _, k in ipairs(TOP_KEYS) do
    if t[k] ~= nil then sections[k](P, t[k], spec, label) end
  end
  return spec
end

-- ---- composition ------------------------------------------------------------

local function append_unique(dst, src)
  for _, v in ipairs(src) do
    if not contains(dst, v) then dst[#dst + 1] = v end
  end
end

-- Parent first, then child: lists concatenate, limits take the child's value.
local function combine(base, child)
  local out = empty_spec()
  for _, part in ipairs({ base, child }) do
    append_unique(out.imports, part.imports)
    append_unique(out.capabilities, part.capabilities)
    append_unique(out.syscalls, part.syscalls)
    for _, r in ipairs(copy_rules(part.fs)) do out.fs[#out.fs + 1] = r end
    for _, r in ipairs(copy_rules(part.net)) do out.net[#out.net + 1] = r end
    for k, v in pairs(part.limits) do
      out.limits[k], out.limit_src[k] = v, part.limit_src[k]
    end
  end
  return out
end

-- ---- files --------------------------------------------------------------------

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

local function search_dirs(from_dir)
  if type(policy.path) ~= "table" then
    errors.raise("invalid_argument", "policy.path must be a list of directories")
  end
  local dirs = { from_dir }
  for _, d in ipairs(policy.path) do
    if type(d) == "string" and not contains(dirs, d) then dirs[#dirs + 1] = d end
  end
  return dirs
end

-- The file a reference names, or nil and the places searched. Names are
-- searched next to the referring file first (so a folder of policies can
-- extend each other), then in policy.path.
local function locate(ref, from_dir)
  if is_path(ref) then
    if ref:sub(1, 1) ~= "/" and from_dir then ref = from_dir .. "/" .. ref end
    return exists(ref) and ref or nil, ref
  end
  local dirs = search_dirs(from_dir)
  if ref:match("^[%w_][%w_.-]*$") then
    for _, d in ipairs(dirs) do
      local file = d .. "/" .. ref .. ".lua"
      if exists(file) then return file end
    end
  end
  return nil, #dirs > 0 and table.concat(dirs, ", ") or "(policy.path is empty)"
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

local function file_error(file, msg)
  if not msg:find(file, 1, true) then msg = file .. ": " .. msg end
  error(errors.new("policy", "cannot load policy " .. msg,
                   { problems = { { path = "", message = msg } }, source = file }), 0)
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

-- ---- compile ------------------------------------------------------------------

local compile_spec

local function cycle_text(stack, label)
  local names = {}
  for i, e in ipairs(stack) do names[i] = e.label end
  names[#names + 1] = label
  return table.concat(names, " -> ")
end

-- Relay a parent's problems under `extends`, naming the parent.
local function relay(P, label, err)
  if not errors.is(err) then error(err, 0) end
  local list = err.problems or {}
  if #list == 0 then list = { { path = "", message = err.message } } end
  for _, p in ipairs(list) do
    P:add("extends", "in %s: %s%s", label, p.path == "" and "" or p.path .. ": ",
          p.message)
  end
end

-- The merged spec of the policy `ref` names, or nil with problems in P.
local function parent_spec(P, ref, meta, stack)
  local file, searched = locate(ref, dir_of(meta.source))
  if not file then
    P:add("extends", "unknown policy %s; searched: %s (add its folder to "
          .. "policy.path or ISOLATE_POLICY_PATH)", quote(ref), searched)
    return nil
  end
  local id, label = identity(file), is_path(ref) and file or ref
  for _, e in ipairs(stack) do
    if e.id == id then
      P:add("extends", "cyclic extends: %s; remove one of these extends",
            cycle_text(stack, label))
      return nil
    end
  end
  if #stack >= MAX_EXTENDS then
    P:add("extends", "extends chain deeper than %d policies", MAX_EXTENDS)
    return nil
  end
  local inner = table.move(stack, 1, #stack, 1, {})
  inner[#inner + 1] = { id = id, label = label }
  local ok, res = pcall(function()
    return compile_spec(read_data(file), { name = not is_path(ref) and ref or nil,
                                           source = file }, inner)
  end)
  if ok then return res end
  relay(P, label, res)
  return nil
end

local function label_of(meta)
  return meta.name and quote(meta.name) or meta.source or "table"
end

-- Validate t and its extends chain into one merged spec, or raise.
function compile_spec(t, meta, stack)
  local P = new_problems()
  local spec = validate(P, t, meta.name or meta.source or "table")
  local base = empty_spec()
  if spec.extends then base = parent_spec(P, spec.extends, meta, stack) or base end
  if #P.list > 0 then
    raise_problems("policy", "policy " .. label_of(meta), P.list,
                   { source = meta.source })
  end
  return combine(base, spec)
end

local function plan_of(spec)
  return core.plan({ fs = spec.fs, net = spec.net })
end

local function new_policy(spec, meta)
  local p = setmetatable({}, Policy)
  private[p] = { spec = spec, plan = plan_of(spec), name = meta.name,
                 source = meta.source }
  return p
end

local function check_meta(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    errors.raise("invalid_argument", "compile options must be a table")
  end
  for k, v in pairs(opts) do
    if (k ~= "name" and k ~= "source") or type(v) ~= "string" then
      errors.raise("invalid_argument", "compile options are name and source "
                   .. "(strings), got %s", key_path("", k))
    end
  end
  return { name = opts.name, source = opts.source }
end

-- compile(t [, {name=, source=}]): name and source label problems and rule
-- origins; source's folder is searched first for `extends`.
function policy.compile(t, opts)
  if type(t) ~= "table" then
    errors.raise("invalid_argument", "policy.compile expects a policy table, got %s",
                 describe(t))
  end
  local meta = check_meta(opts)
  local stack = {}
  if meta.source then stack[1] = { id = identity(meta.source), label = meta.source } end
  return new_policy(compile_spec(t, meta, stack), meta)
end

function policy.load(ref)
  if type(ref) ~= "string" or ref == "" then
    errors.raise("invalid_argument", "policy.load expects a policy name or a "
                 .. "file path, got %s", describe(ref))
  end
  local file, searched = locate(ref, nil)
  if not file then
    error(errors.new("policy", string.format("unknown policy %s; searched: %s",
          quote(ref), searched), { problems = {} }), 2)
  end
  local meta = { name = not is_path(ref) and ref or nil, source = file }
  local spec = compile_spec(read_data(file), meta,
                            { { id = identity(file), label = meta.name or file } })
  return new_policy(spec, meta)
end

function policy.is_policy(v)
  return private[v] ~= nil
end

-- For spawn: a name, a path, a table, or a compiled Policy.
function policy.resolve(v)
  if private[v] then return v end
  if type(v) == "string" then return policy.load(v) end
  if type(v) == "table" then return policy.compile(v) end
  errors.raise("invalid_argument", "policy must be a template name, a file path, "
               .. "a policy table or a compiled policy, got %s", describe(v))
end

local function state(p)
  local s = private[p]
  if not s then
    errors.raise("invalid_argument", "expected an isolate.Policy (call p:method(), "
                 .. "not p.method())")
  end
  return s
end

-- merge(p, {imports=, capabilities=, limits=}): spawn options on top of p.
function policy.merge(p, opts)
  local s = state(p)
  if opts == nil then return p end
  if type(opts) ~= "table" then
    errors.raise("invalid_argument", "merge options must be a table")
  end
  local P, spec = new_problems(), empty_spec()
  for k, v in next, opts do
    if contains(MERGE_KEYS, k) then sections[k](P, v, spec)
    else P:unknown_key(key_path("", k), k, MERGE_KEYS) end
  end
  if #P.list > 0 then raise_problems("invalid_argument", "spawn options", P.list) end
  return new_policy(combine(s.spec, spec), s)
end

-- ---- the Policy object ----------------------------------------------------------

local fields = {}

function fields.name(s) return s.name end
function fields.source(s) return s.source end
function fields.version() return 1 end
function fields.imports(s) return copy_list(s.spec.imports) end
function fields.capabilities(s) return copy_list(s.spec.capabilities) end
function fields.fs(s) return copy_rules(s.spec.fs) end
function fields.net(s) return copy_rules(s.spec.net) end
function fields.syscalls(s) return { deny = copy_list(s.spec.syscalls) } end
function fields.limits(s)
  local out = {}
  for k, v in pairs(s.spec.limits) do out[k] = v end
  return out
end

function Policy.__index(p, k)
  if methods[k] then return methods[k] end
  local f = fields[k]
  return f and f(state(p)) or nil
end

function Policy.__newindex()
  errors.raise("invalid_argument", "an isolate.Policy is read-only; edit "
               .. "p:totable() and compile it again")
end

function Policy.__tostring(p)
  local s = state(p)
  return "isolate.Policy: " .. (s.name or s.source or "table")
end

function methods.plan(p)
  return state(p).plan
end

local deciders = {}

local function decide_fs(s, op, target)
  local allowed, index = s.plan:check_fs(op, target)
  return allowed, index and s.spec.fs[index].text or "default deny"
end

deciders.read, deciders.write = decide_fs, decide_fs

function deciders.connect(s, _, target)
  local allowed, index = s.plan:check_net(target)
  return allowed, index and s.spec.net[index].text or "default deny"
end

function deciders.import(s, _, target)
  if not module_name(target) then
    errors.raise("invalid_argument", "%s is not a module name", quote(target))
  end
  for _, m in ipairs(s.spec.imports) do
    if target == m or target:sub(1, #m + 1) == m .. "." then
      return true, "imports " .. quote(m)
    end
  end
  return false, "default deny"
end

function deciders.capability(s, _, target)
  if contains(s.spec.capabilities, target) then
    return true, "capabilities " .. quote(target)
  end
  return false, "default deny"
end

-- p:check(op, target) -> allowed, rule text (or "default deny").
function methods.check(p, op, target)
  local s = state(p)
  local decide = deciders[op]
  if not decide then
    errors.raise("invalid_argument", "unknown op %s; valid ops: read, write, "
                 .. "connect, import, capability", describe(op))
  end
  if type(target) ~= "string" then
    errors.raise("invalid_argument", "check(%s, target): target must be a string, "
                 .. "got %s", quote(op), describe(target))
  end
  return decide(s, op, target)
end

local function limit_text(k, v)
  return string.format("limits {%s=%s}", k, type(v) == "string" and quote(v)
                       or tostring(v))
end

-- Every rule of the policy in explain order: {rule=, kind=, origin=}.
local function rule_rows(spec)
  local rows = {}
  local function add(rule, kind, origin)
    rows[#rows + 1] = { rule = rule, kind = kind, origin = origin }
  end
  if #spec.imports > 0 then add("imports " .. quote_list(spec.imports), "imports") end
  for _, r in ipairs(spec.fs) do
    add(r.text, r.access == "deny" and "fs-deny" or "fs", r.origin)
  end
  for _, r in ipairs(spec.net) do
    add(r.text, r.action == "deny" and "net-deny" or "net", r.origin)
  end
  if #spec.capabilities > 0 then
    add("capabilities " .. quote_list(spec.capabilities), "capabilities")
  end
  for _, k in ipairs(LIMIT_KEYS) do
    if spec.limits[k] then add(limit_text(k, spec.limit_src[k]), k) end
  end
  for _, name in ipairs(spec.syscalls) do
    add(string.format("syscalls {deny={%s}}", quote(name)), "syscall")
  end
  return rows
end

local GUARDRAIL = "guardrail, not a boundary: "
local GUARD = {
  imports = GUARDRAIL .. "the cell's import hook refuses other modules",
  fs = GUARDRAIL .. "audited opens and a race-free opener in the cell",
  net = GUARDRAIL .. "audited socket connect/sendto in the cell",
  capabilities = GUARDRAIL .. "request() refuses ungranted capabilities",
}
GUARD["fs-deny"], GUARD["net-deny"] = GUARD.fs, GUARD.net

-- Per backend: kind -> {layer, note}.
local LAYERS = {
  subinterpreter = {
    wall_ms = { "python-guard", "watchdog interrupt; a guest stuck in one C "
                .. "call is abandoned" },
  },
  process = {
    imports = { "python-guard", "the import hook; what escapes it is still "
                .. "inside the kernel layers" },
    fs = { "landlock", "the directory the rule lives under, deny by default; "
           .. "the python-guard applies wildcards exactly" },
    ["fs-deny"] = { "python-guard", "Landlock cannot take away inside a "
                    .. "grant: the python-guard enforces deny rules" },
    net = { "landlock", "TCP connect to the rule's ports; addresses by the "
            .. "python-guard" },
    ["net-deny"] = { "python-guard", "Landlock rules are per port: the "
                     .. "python-guard enforces deny rules" },
    capabilities = { "python-guard", "request() in the cell; the broker runs "
                     .. "in the host" },
    wall_ms = { "cgroup", "the host kills the cell's cgroup" },
    cpu_ms = { "rlimit", "RLIMIT_CPU: SIGXCPU, then SIGKILL" },
    mem = { "rlimit", "RLIMIT_AS (memory.max too where cgroup v2 has the "
            .. "memory controller)" },
    open_files = { "rlimit", "RLIMIT_NOFILE" },
    output_bytes = { "rlimit", "RLIMIT_FSIZE" },
    processes = { "seccomp", "0: process creation traps; more needs the "
                  .. "cgroup v2 pids controller" },
    syscall = { "seccomp", "traps and stops the cell, naming the call" },
  },
}
local UNENFORCED = "not enforced by this backend in this build; spawn "
  .. "refuses it"
local UNAVAILABLE = "backend not available in this build"

local function enforcement(backend, kind)
  if backend == "microvm" then return "none", UNAVAILABLE end
  local row = LAYERS[backend][kind]
  if row then return row[1], row[2] end
  if backend == "subinterpreter" and GUARD[kind] then
    return "python-guard", GUARD[kind]
  end
  return "none", UNENFORCED
end

-- p:explain([backend]) -> {{rule=, layer=, note=[, origin=]}, ...}
function methods.explain(p, backend)
  local s = state(p)
  backend = backend == nil and "subinterpreter" or backend
  if not contains(BACKENDS, backend) then
    errors.raise("invalid_argument", "unknown backend %s; valid backends: %s",
                 describe(backend), table.concat(BACKENDS, ", "))
  end
  local rows = {}
  for i, r in ipairs(rule_rows(s.spec)) do
    local layer, note = enforcement(backend, r.kind)
    rows[i] = { rule = r.rule, layer = layer, note = note, origin = r.origin }
  end
  return rows
end

-- p:totable() -> a plain policy table (no extends) that compiles to p.
function methods.totable(p)
  local spec = state(p).spec
  local t = { version = 1 }
  local function rules(list, field, target)
    local out = {}
    for i, r in ipairs(list) do out[i] = { [r[field]] = r[target] } end
    return out
  end
  if #spec.imports > 0 then t.imports = copy_list(spec.imports) end
  if #spec.fs > 0 then t.fs = rules(spec.fs, "access", "pattern") end
  if #spec.net > 0 then t.net = rules(spec.net, "action", "spec") end
  if #spec.capabilities > 0 then t.capabilities = copy_list(spec.capabilities) end
  if next(spec.limits) then
    t.limits = {}
    for k, v in pairs(spec.limit_src) do t.limits[k] = v end
  end
  if #spec.syscalls > 0 then t.syscalls = { deny = copy_list(spec.syscalls) } end
  return t
end

-- ---- the search path ----------------------------------------------------------------

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
-- "@lua/isolate/policy.lua": trusting it would make template names
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
function policy.default_path(getenv)
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

policy.path = policy.default_path()
policy.BACKENDS = BACKENDS

return policy
