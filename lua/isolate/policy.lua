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
--
-- What a policy table may say (each section's checks, sizes and counts,
-- rule text) lives in isolate.rules, finding and reading policy files in
-- isolate.policy_files; this module compiles policies, follows extends
-- and answers for a compiled policy.
local core = require "isolate.core"
local errors = require "isolate.error"
local rules = require "isolate.rules"
local files = require "isolate.policy_files"

local contains, quote, describe = rules.contains, rules.quote, rules.describe
local key_path, module_name = rules.key_path, rules.module_name
local copy_list, copy_rules = rules.copy_list, rules.copy_rules
local new_problems, raise_problems = rules.new_problems, rules.raise_problems
local empty_spec, combine = rules.empty_spec, rules.combine
local is_path, dir_of, locate = files.is_path, files.dir_of, files.locate
local nearest_name, did_you_mean = files.nearest_name, files.did_you_mean
local read_data, identity = files.read_data, files.identity

local policy = {}

local Policy = { __name = "isolate.Policy" }
local methods = {}
-- A Policy never changes after compile: its state lives here, out of reach,
-- and every field read returns a copy (see Policy.__index).
local private = setmetatable({}, { __mode = "k" })

-- The backends, from the one list in C (src/core/backend.c).
local BACKENDS = core.backends
local DEFAULT_BACKEND = BACKENDS[1] -- ISO_BACKEND_SUBINTERPRETER
local MAX_EXTENDS = 16
-- ---- compile ------------------------------------------------------------------

local compile_spec

-- The policies of a cycle, the first repeated at the end.
local function cycle_of(stack, label)
  local names = {}
  for i, e in ipairs(stack) do names[i] = e.label end
  names[#names + 1] = label
  return names
end

-- A problem's facts besides its text (cycle=, searched=, line=): kept as
-- they are when a child relays them.
local PROBLEM_FACTS = { "cycle", "searched", "line", "suggestion" }

local function add_facts(P, facts)
  local last = P.list[#P.list]
  for _, k in ipairs(PROBLEM_FACTS) do last[k] = facts[k] end
end

-- Relay a parent's problems under `extends`, naming the parent.
local function relay(P, label, err)
  if not errors.is(err) then error(err, 0) end
  local list = err.problems or {}
  if #list == 0 then list = { { path = "", message = err.message } } end
  for _, p in ipairs(list) do
    P:add("extends", "in %s: %s%s", label, p.path == "" and "" or p.path .. ": ",
          p.message)
    add_facts(P, p)
  end
end

-- The merged spec of the policy `ref` names, or nil with problems in P.
local function parent_spec(P, ref, meta, stack)
  local file, searched, dirs = locate(ref, dir_of(meta.source), policy.path)
  if not file then
    local near = nearest_name(ref, dirs)
    P:add("extends", "unknown policy %s%s; searched: %s (add its folder to "
          .. "policy.path or ISOLATE_POLICY_PATH)", quote(ref),
          did_you_mean(near), searched)
    add_facts(P, { searched = dirs, suggestion = near })
    return nil
  end
  local id, label = identity(file), is_path(ref) and file or ref
  for _, e in ipairs(stack) do
    if e.id == id then
      local cycle = cycle_of(stack, label)
      P:add("extends", "cyclic extends: %s; remove one of these extends",
            table.concat(cycle, " -> "))
      add_facts(P, { cycle = cycle })
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
  local spec = rules.validate(P, t, meta.name or meta.source or "table")
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
  local file, searched, dirs = locate(ref, nil, policy.path)
  if not file then
    local near = nearest_name(ref, dirs)
    error(errors.new("policy", string.format("unknown policy %s%s; searched: "
          .. "%s (add its folder to policy.path or ISOLATE_POLICY_PATH)",
          quote(ref), did_you_mean(near), searched),
          { problems = {}, searched = dirs, suggestion = near }), 2)
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

-- merge(p, {imports=, capabilities=, limits=} [, subject]): spawn options
-- on top of p; subject names them in errors ("spawn options" by default,
-- a pipeline says "stage 'x' options").
function policy.merge(p, opts, subject)
  local s = state(p)
  if opts == nil then return p end
  if type(opts) ~= "table" then
    errors.raise("invalid_argument", "merge options must be a table")
  end
  local P = new_problems()
  local spec = rules.validate_options(P, opts)
  if #P.list > 0 then
    local first = P.list[1].path:match("^[%w_]+")
    raise_problems("invalid_argument", subject or "spawn options", P.list,
                   { option = first, where = "spawn" })
  end
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

-- What isolate.core.spawn needs, without the defensive copies of the
-- public fields (spawn is on the warm path; core.spawn copies in C).
function policy.spawn_fields(p)
  local s = state(p)
  local spec = s.spec
  return spec.imports, spec.capabilities, spec.limits, spec.syscalls, s.plan
end

local deciders = {}

local function decide_fs(s, op, target)
  local allowed, index = s.plan:check_fs(op, target)
  return allowed, index and s.spec.fs[index].text or "default deny"
end

deciders.read, deciders.write = decide_fs, decide_fs

-- connect takes "host:port" or "unix:/path"; bind takes "host:port".
function deciders.connect(s, op, target)
  local allowed, index = s.plan:check_net(target, op)
  return allowed, index and s.spec.net[index].text or "default deny"
end
deciders.bind = deciders.connect

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
                 .. "connect, bind, import, capability", describe(op))
  end
  if type(target) ~= "string" then
    errors.raise("invalid_argument", "check(%s, target): target must be a string, "
                 .. "got %s", quote(op), describe(target))
  end
  return decide(s, op, target)
end

local GUARDRAIL = "guardrail, not a boundary: "
local GUARD = {
  imports = GUARDRAIL .. "the cell's import hook refuses other modules",
  fs = GUARDRAIL .. "audited opens and a race-free opener in the cell",
  net = GUARDRAIL .. "audited socket connect/sendto in the cell",
  ["net-bind"] = GUARDRAIL .. "audited socket bind and a vetted listen() "
    .. "in the cell",
  capabilities = GUARDRAIL .. "request() refuses ungranted capabilities",
}
GUARD["fs-deny"], GUARD["net-deny"] = GUARD.fs, GUARD.net
-- A unix: rule makes seccomp allow socket(AF_UNIX) for the whole cell (it
-- cannot read the path connect() is given): only the python-guard judges
-- which socket, so hardened mode refuses these rules.
local UNIX_NOTE = "only the python-guard judges the path: with this rule "
  .. "seccomp lets the cell create unix sockets at all, and Landlock does "
  .. "not mediate connect() to a pathname socket"
GUARD["net-unix"], GUARD["net-unix-deny"] = GUARDRAIL .. UNIX_NOTE,
  GUARDRAIL .. UNIX_NOTE
GUARD["net-unix-refused"] = GUARD["net-unix-deny"]

-- Per backend: kind -> {layer, note[, needs = a core.kernel() field]}: the
-- one table of which layer enforces each rule. A kind with a row here is
-- enforced by that backend, so spawn accepts it (policy.enforces); a row
-- that needs a kernel facility this host lacks gives way to the
-- python-guard, or to none. Rows that depend on what the kernel can do
-- come first (host_layer).
local LAYERS = {
  subinterpreter = {
    syscall = { "seccomp", "on the cell thread: the call fails with EPERM",
                needs = "seccomp" },
    wall_ms = { "python-guard", "watchdog interrupt; a guest stuck in one C "
                .. "call is abandoned" },
    cpu_ms = { "python-guard", "the cell thread's CPU clock, watched while "
               .. "a request runs; interrupt, then abandon" },
    output_bytes = { "python-guard", "posts, logs and metrics counted in "
                     .. "the cell" },
    queue_bytes = { "python-guard", "post/log/metric refused with ENOBUFS "
                    .. "while the host holds this much of the cell's output" },
    queue_values = { "python-guard", "post/log/metric refused with ENOBUFS "
                     .. "while the host holds this many of the cell's messages" },
    mem = { "python-guard", "the cell's Python allocations are counted, its "
            .. "interpreter included: MemoryError past the limit; memory a "
            .. "module maps or mallocs by itself is not counted" },
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
    ["net-bind"] = { "landlock", "TCP bind to the rule's ports; addresses "
                     .. "and UDP bind by the python-guard" },
    ["net-unix"] = { "python-guard", UNIX_NOTE },
    ["net-unix-deny"] = { "python-guard", UNIX_NOTE },
    ["net-unix-refused"] = { "python-guard", UNIX_NOTE },
    ["net-deny"] = { "python-guard", "Landlock rules are per port: the "
                     .. "python-guard enforces deny rules" },
    capabilities = { "host", "the host checks every request a worker sends "
                     .. "against the grants before a handler runs" },
    wall_ms = { "cgroup", "the host kills the cell's cgroup" },
    cpu_ms = { "rlimit", "RLIMIT_CPU: SIGXCPU, then SIGKILL" },
    mem = { "rlimit", "RLIMIT_AS (memory.max too where cgroup v2 has the "
            .. "memory controller)" },
    open_files = { "rlimit", "RLIMIT_NOFILE" },
    output_bytes = { "rlimit", "RLIMIT_FSIZE for files; posts, logs and "
                     .. "metrics counted in the cell and again by the host, "
                     .. "which kills a cell that sends more (kind output)" },
    queue_bytes = { "host", "the host kills a cell (kind output) whose "
                    .. "waiting posts and events hold more" },
    queue_values = { "host", "the host kills a cell (kind output) with more "
                     .. "posts and events waiting" },
    processes = { "seccomp", "0: process creation traps; more needs the "
                  .. "cgroup v2 pids controller" },
    syscall = { "seccomp", "traps and stops the cell, naming the call" },
  },
}
local UNENFORCED = "not enforced by this backend in this build; spawn "
  .. "refuses it"
local UNAVAILABLE = "backend not available in this build"

-- Layers that depend on what this host's kernel can do: k is
-- core.kernel() or core.kernel_look().
local function host_layer(backend, kind, k)
  if (kind == "net" or kind == "net-deny") and k.bpf then
    return "bpf", "cgroup connect/sendmsg programs judge the exact address "
      .. "and port (reloadable)"
  elseif kind == "net-unix-refused" and k.seccomp then
    return "seccomp", "socket(AF_UNIX) fails with EPERM: no unix: rule allows "
      .. "any unix socket"
  elseif kind == "net-bind" and k.bpf then
    return "bpf", "cgroup bind4/bind6 programs judge the exact local address "
      .. "and port, TCP and UDP; listen() is refused by seccomp unless the "
      .. "policy has a bind rule, and a listener no bind rule allows (the "
      .. "autobind of listen()) gets no connection"
  end
  if backend ~= "subinterpreter" then return nil end
  if kind == "fs" and k.landlock > 0 then
    return "landlock", "on the cell thread: the directory the rule lives "
      .. "under, deny by default; the python-guard applies wildcards exactly"
  elseif kind == "net" and k.landlock >= 4 then
    return "landlock", "on the cell thread: TCP connect to the rule's ports; "
      .. "addresses by the python-guard"
  elseif kind == "net-bind" and k.landlock >= 4 then
    return "landlock", "on the cell thread: TCP bind to the rule's ports; "
      .. "addresses and UDP bind by the python-guard"
  end
end

local function enforcement(backend, kind, k)
  if not LAYERS[backend] then return "none", UNAVAILABLE end
  local layer, note = host_layer(backend, kind, k)
  if layer then return layer, note end
  local row = LAYERS[backend][kind]
  if row and (not row.needs or k[row.needs]) then return row[1], row[2] end
  if backend == "subinterpreter" and GUARD[kind] then
    return "python-guard", GUARD[kind]
  end
  return "none", UNENFORCED
end

-- policy.enforces(backend, kind) -> whether cells of that backend enforce
-- rules of that kind (a limit key, or "syscall") in this build: spawn
-- refuses the others rather than accept and ignore them.
function policy.enforces(backend, kind)
  return LAYERS[backend] ~= nil and LAYERS[backend][kind] ~= nil
end

-- p:explain([backend]) -> {{rule=, layer=, note=[, origin=]}, ...}. What
-- the kernel can do is looked at, never loaded (core.kernel_look): no BPF
-- program, no cgroup.
function methods.explain(p, backend)
  local s = state(p)
  backend = backend == nil and DEFAULT_BACKEND or backend
  if not contains(BACKENDS, backend) then
    errors.raise("invalid_argument", "unknown backend %s; valid backends: %s",
                 describe(backend), table.concat(BACKENDS, ", "))
  end
  local rows, k = {}, core.kernel_look()
  for i, r in ipairs(rules.rule_rows(s.spec)) do
    local layer, note = enforcement(backend, r.kind, k)
    rows[i] = { rule = r.rule, layer = layer, note = note, origin = r.origin }
  end
  return rows
end

-- Rules that are not kernel objects: the python-guard is their layer by
-- nature, in every mode (limits are enforced or refused at spawn).
local NOT_KERNEL = { imports = true, capabilities = true }
for _, k in ipairs(rules.LIMIT_KEYS) do NOT_KERNEL[k] = true end

-- Would hardened mode refuse rule row r (kind, layer)? Rules that are not
-- kernel objects never are; the others need a kernel layer that enforces
-- them exactly.
local function hardened_refuses(r, layer)
  if NOT_KERNEL[r.kind] then return false end
  local partial = (r.kind == "fs" and r.rule:find("[*?]"))
    or ((r.kind == "net" or r.kind == "net-bind") and layer == "landlock")
  return layer == "python-guard" or layer == "none" or partial and true
end

local function import_refusals(s, backend, out)
  for _, m in ipairs(s.spec.imports) do
    if core.import_refused(backend, m) then
      out[#out + 1] = { rule = "imports " .. quote(m), kind = "imports",
        module = m, error = "invalid_argument", fix = "backend='process'",
        reason = string.format("%s cells refuse to import %s whatever the "
          .. "policy says (it reaches host memory or processes, or breaks "
          .. "when a cell ends): remove it, or use backend='process'",
          backend, quote(m)) }
    end
  end
end

local function unenforced_refusals(s, backend, out)
  for _, k in ipairs(rules.LIMIT_KEYS) do
    if s.spec.limits[k] and not policy.enforces(backend, k) then
      out[#out + 1] = { rule = "limits." .. k, kind = k, limit = k,
        error = "not_implemented", fix = "backend='process'",
        reason = string.format("limits.%s is not enforced by %s cells in "
          .. "this build; remove it or use backend='process'", k, backend) }
    end
  end
  if #s.spec.syscalls > 0 and not policy.enforces(backend, "syscall") then
    out[#out + 1] = { rule = "syscalls.deny", kind = "syscall",
      error = "not_implemented", fix = "backend='process'",
      reason = string.format("syscalls.deny needs seccomp, which %s cells in "
        .. "this build do not apply; use backend='process'", backend) }
  end
end

local function hardened_refusals(s, backend, k, out)
  for _, r in ipairs(rules.rule_rows(s.spec)) do
    local layer = enforcement(backend, r.kind, k)
    if hardened_refuses(r, layer) then
      local fix, why = rules.hardened_fix(r, layer, backend, k)
      out[#out + 1] = { rule = r.rule, kind = r.kind, origin = r.origin,
        layer = layer, error = "unenforceable", fix = fix,
        reason = "hardened mode: no kernel layer enforces it exactly; " .. why }
    end
  end
end

-- p:refusals(backend [, {hardened=, look=}]) -> what spawn refuses in a
-- cell of that backend, in the order it checks: {{rule=, kind=, error=
-- (the error kind spawn raises), reason=, fix= (a rule or option to use
-- instead, or nil)[, origin=, module=, limit=]}, ...}. The one decision:
-- spawn raises the first; `luaisolate check --mode` prints them all.
-- look: ask core.kernel_look() (nothing loaded) instead of core.kernel()
-- (which loads the BPF guard: spawn is about to need it).
function methods.refusals(p, backend, opts)
  local s = state(p)
  opts = opts or {}
  if not contains(BACKENDS, backend) then
    errors.raise("invalid_argument", "unknown backend %s; valid backends: %s",
                 describe(backend), table.concat(BACKENDS, ", "))
  end
  local out = {}
  import_refusals(s, backend, out)
  unenforced_refusals(s, backend, out)
  if opts.hardened then
    hardened_refusals(s, backend, opts.look and core.kernel_look() or core.kernel(),
                      out)
  end
  return out
end

-- p:unenforceable(backend) -> the rule texts no kernel layer of this host
-- enforces exactly for that backend (what hardened mode refuses; the
-- rules of p:refusals(backend, {hardened = true}) of kind unenforceable).
-- Asks core.kernel(), which loads the BPF guard: spawn is about to need it.
function methods.unenforceable(p, backend)
  local out, k = {}, core.kernel()
  for _, r in ipairs(rules.rule_rows(state(p).spec)) do
    if hardened_refuses(r, enforcement(backend, r.kind, k)) then
      out[#out + 1] = r.rule
    end
  end
  return out
end

-- p:totable() -> a plain policy table (no extends) that compiles to p.
function methods.totable(p)
  local spec = state(p).spec
  local t = { version = 1 }
  local function rule_list(list, field, target)
    local out = {}
    for i, r in ipairs(list) do out[i] = { [r[field]] = r[target] } end
    return out
  end
  if #spec.imports > 0 then t.imports = copy_list(spec.imports) end
  if #spec.fs > 0 then t.fs = rule_list(spec.fs, "access", "pattern") end
  if #spec.net > 0 then t.net = rule_list(spec.net, "action", "spec") end
  if #spec.capabilities > 0 then t.capabilities = copy_list(spec.capabilities) end
  if next(spec.limits) then
    t.limits = {}
    for k, v in pairs(spec.limit_src) do t.limits[k] = v end
  end
  if #spec.syscalls > 0 then t.syscalls = { deny = copy_list(spec.syscalls) } end
  return t
end

policy.default_path = files.default_path
policy.path = policy.default_path()
policy.BACKENDS = BACKENDS
policy.DEFAULT_BACKEND = DEFAULT_BACKEND

return policy
