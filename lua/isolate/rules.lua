-- isolate.rules: the policy language (DESIGN.md §3), for isolate.policy.
--
-- Why two modules: isolate.policy is where policies come from and what a
-- compiled one answers (files, the search path, extends chains, the
-- isolate.Policy object). This module is what a policy table may say: each
-- section checked with every problem collected (err.problems), sizes and
-- counts, the spec a table becomes, how specs combine along extends, and
-- the text each rule is shown as. It reads no files and holds no state, so
-- the whole language can be read here without the loading around it.
--
-- Internal: its fields may change; the public API is isolate.policy.
local core = require "isolate.core"
local errors = require "isolate.error"

local M = {}

local TOP_KEYS = { "version", "extends", "imports", "fs", "net",
                   "capabilities", "limits", "syscalls" }
local FS_KEYS = { "read", "write", "allow", "deny" }
local NET_KEYS = { "connect", "bind", "deny" }
local LIMIT_KEYS = { "cpu_ms", "wall_ms", "mem", "open_files", "processes",
                     "output_bytes", "queue_bytes", "queue_values" }
local MERGE_KEYS = { "imports", "capabilities", "limits" }
-- Smallest value of each counted limit: no processes at all is meaningful,
-- zero milliseconds or zero open files is not.
local COUNT_MIN = { cpu_ms = 1, wall_ms = 1, open_files = 1, processes = 0,
                    queue_values = 1 }
-- Sizes are "<integer><unit>", case-sensitive, no space: one spelling per
-- size, so "256mb" (bits? bytes?) and "1.5GiB" are refused, not guessed.
local UNITS = { B = 1, KiB = 1 << 10, MiB = 1 << 20, GiB = 1 << 30,
                TiB = 1 << 40, KB = 1000, MB = 1000000, GB = 1000000000,
                TB = 1000000000000 }
local UNIT_LIST = "B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB "
                  .. "(powers of 1000)"

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

-- The name of valid nearest to k (an edit distance of at most 2), or
-- nil: the one "did you mean" of every hint.
local function nearest(k, valid)
  if type(k) ~= "string" then return nil end
  local best, best_d = nil, 3
  for _, v in ipairs(valid) do
    local d = distance(k, v)
    if d < best_d then best, best_d = v, d end
  end
  return best
end

local function suggestion(k, valid)
  local best = nearest(k, valid)
  return best and string.format(" (did you mean '%s'?)", best) or ""
end

-- A Python (and Lua) identifier; a module name is such names joined by
-- dots. The one check of both: isolate and isolate.pipeline use these.
local IDENT = "^[%a_][%w_]*$"

local function key_path(base, k)
  if type(k) == "string" and k:match(IDENT) then
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
    if not part:match(IDENT) then return false end
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

-- One rule: a table with exactly one of `keys`, whose value passes
-- check(value, key).
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
      local ok, msg = check(v, k)
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

-- ---- rule text --------------------------------------------------------------

local function rule_text(section, kind, target)
  return string.format("%s {%s=%s}", section, kind, quote(target))
end

local function limit_text(k, v)
  return string.format("limits {%s=%s}", k, type(v) == "string" and quote(v)
                       or tostring(v))
end

-- Every rule of the policy in explain order: {rule=, kind=, origin=[,
-- source=]}; source is the fs or net rule itself ({access=, pattern=} or
-- {action=, spec=}), for hardened mode's fixes.
local function rule_rows(spec)
  local rows = {}
  local function add(rule, kind, origin, source)
    rows[#rows + 1] = { rule = rule, kind = kind, origin = origin, source = source }
  end
  if #spec.imports > 0 then add("imports " .. quote_list(spec.imports), "imports") end
  for _, r in ipairs(spec.fs) do
    add(r.text, r.access == "deny" and "fs-deny" or "fs", r.origin, r)
  end
  local unix_allowed = false
  for _, r in ipairs(spec.net) do
    unix_allowed = unix_allowed or M.net_kind(r) == "net-unix"
  end
  for _, r in ipairs(spec.net) do
    local kind = M.net_kind(r)
    -- with no unix: connect rule, seccomp refuses socket(AF_UNIX) itself
    if kind == "net-unix-deny" and not unix_allowed then kind = "net-unix-refused" end
    add(r.text, kind, r.origin, r)
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

-- ---- sections ---------------------------------------------------------------

local function empty_spec()
  return { imports = {}, capabilities = {}, fs = {}, net = {}, limits = {},
           limit_src = {}, syscalls = {} }
end

local sections = {}

function sections.version(P, v)
  if not (type(v) == "number" and v == 1) then
    P:add("version", "expected 1 (the only policy language version), got %s",
          describe(v))
  end
end

function sections.extends(P, v, spec)
  if type(v) ~= "string" or v == "" or v:find("\0", 1, true) then
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

-- What enforces a net rule differs by kind: net (connect to an IP
-- endpoint), net-bind, net-unix (a pathname unix socket), and their deny
-- forms net-deny and net-unix-deny (net-unix-refused in rule_rows when no
-- unix: rule allows any socket, so that seccomp refuses them all).
function M.net_kind(r)
  local unix = r.spec:sub(1, 5) == "unix:"
  if r.action == "deny" then return unix and "net-unix-deny" or "net-deny" end
  if r.action == "bind" then return "net-bind" end
  return unix and "net-unix" or "net"
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

-- Keys in a stable order, so the same table always reports the same way.
local function keys_of(t)
  local keys = {}
  for k in next, t do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and type(a) ~= "table" and type(a) ~= "boolean" then
      return a < b
    end
    return tostring(a) < tostring(b)
  end)
  return keys
end

function sections.limits(P, v, spec)
  if type(v) ~= "table" then
    P:add("limits", "expected a table such as {wall_ms = 5000}, got %s", describe(v))
    return
  end
  for _, k in ipairs(keys_of(v)) do
    local x = rawget(v, k)
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
  for _, k in ipairs(keys_of(v)) do
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
  for _, k in ipairs(keys_of(t)) do
    if not sections[k] then P:unknown_key(key_path("", k), k, TOP_KEYS) end
  end
  for _, k in ipairs(TOP_KEYS) do
    if t[k] ~= nil then sections[k](P, t[k], spec, label) end
  end
  return spec
end

-- Validate spawn options (policy.merge) into a spec: the sections a spawn
-- may add to a compiled policy, checked as in a policy table.
local function validate_options(P, opts)
  local spec = empty_spec()
  for _, k in ipairs(keys_of(opts)) do
    local v = rawget(opts, k)
    if contains(MERGE_KEYS, k) then sections[k](P, v, spec)
    else P:unknown_key(key_path("", k), k, MERGE_KEYS) end
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

-- ---- hardened mode's fixes ---------------------------------------------------

-- How to make a rule hardened mode refuses (a rule_rows row, and the
-- layer that enforces it now) into one a kernel layer enforces exactly:
-- the rule to write instead (nil when there is none), and why. k: the
-- kernel facts the decision used (core.kernel or core.kernel_look).
function M.hardened_fix(r, layer, backend, k)
  local src = r.source or {}
  if r.kind == "fs" then
    local dir = src.pattern:match("^(.-)/%*%*$")
    if dir and dir ~= "" and not dir:find("[*?%[]") then
      return string.format("{%s=%s}", src.access, quote(dir)),
        "Landlock grants whole directories: " .. quote(dir) .. " grants the "
        .. "same tree, and Landlock enforces it exactly"
    end
    local head = src.pattern:match("^(.-)[*?%[]"):match("^(.*)/") or ""
    if head ~= "" then
      return string.format("{%s=%s}", src.access, quote(head)),
        "Landlock cannot apply wildcards: grant the whole directory "
        .. quote(head) .. " (wider than the rule), or use mode dev"
    end
    return nil, "Landlock cannot apply wildcards at the root; use mode dev"
  elseif r.kind == "fs-deny" then
    return nil, "Landlock cannot take away inside a grant: remove this deny "
      .. "rule and narrow the grants instead (what no rule grants is "
      .. "denied already)"
  elseif (r.kind == "net" or r.kind == "net-bind") and layer == "landlock" then
    return nil, "without cgroup BPF (" .. tostring(k.bpf_why or "not "
      .. "available") .. ") Landlock judges only the port: allow every "
      .. "address on it (e.g. {connect=\"0.0.0.0/0:443\"}) or run where "
      .. "BPF is available"
  elseif r.kind:match("^net%-unix") then
    return nil, "only the python-guard judges unix socket paths: remove "
      .. "the rule, or use mode dev"
  elseif layer == "none" then
    return nil, "not enforced by " .. backend .. " cells in this build: "
      .. "remove it or use backend='process'"
  end
  return nil, "no kernel layer of this host enforces it (only the "
    .. "python-guard): remove it, or use mode dev"
end

-- ---- exports ------------------------------------------------------------------

-- Helpers isolate.policy shares, so messages read the same in both modules.
M.contains, M.copy_list, M.copy_rules = contains, copy_list, copy_rules
M.quote, M.describe, M.key_path = quote, describe, key_path
M.module_name = module_name
M.nearest, M.suggestion = nearest, suggestion

M.new_problems, M.raise_problems = new_problems, raise_problems
M.empty_spec, M.validate, M.validate_options = empty_spec, validate, validate_options
M.combine, M.rule_rows, M.LIMIT_KEYS = combine, rule_rows, LIMIT_KEYS

return M
