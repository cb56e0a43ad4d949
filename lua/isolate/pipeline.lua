-- isolate.pipeline: stages of cells, run once or mapped over many inputs,
-- and wrap(), a Python function as a Lua function.
--
--   local p = sandbox.pipeline{ imports = {"json"} }
--     :stage("parse", { call = "json.loads" })
--     :stage("double", { code = "def run(x):\n    return [v * 2 for v in x]\n",
--                        entry = "run" })
--   p:run("[1, 2]")                                  --> {2, 4}
--   local outs, errs = p:map(inputs, { workers = 2 })
--
-- Options of a stage on top of the pipeline's defaults compose as policies
-- do: imports and capabilities add up, limits take the stage's value per
-- key, policy and backend are replaced. Nothing here widens a policy on its
-- own: the module of a `call` target must be allowed (imports or policy).
--
-- Every cell spawned here is closed before the function returns or raises.
-- The cell functions come from isolate.core; sandbox.spawn from the caller
-- (isolate passes itself in, so there is no require cycle).
local core = require "isolate.core"
local errors = require "isolate.error"
local rules = require "isolate.rules"
local admit = require "isolate.admit"

local raise = errors.raise

local M = {}

local SPAWN_KEYS = { "backend", "capabilities", "imports", "limits", "policy" }
local STAGE_KEYS = { "backend", "call", "capabilities", "code", "entry",
                     "imports", "limits", "policy" }
local WRAP_KEYS = { "backend", "capabilities", "code", "imports", "limits",
                    "policy", "reuse" }
local MAP_KEYS = { "on_progress", "workers" }

-- map sleeps until any running worker has something (core.wait_any wakes
-- it then, and enforces limits on time); this bound is a safety net only.
local WAIT_MAX_S = 1.0

-- ---- option checking --------------------------------------------------------

-- what: "pipeline", "stage", "wrap" or "map" (err.where); stage: the
-- stage's name, when what is a stage's options.
local function check_keys(t, allowed, what, stage)
  if type(t) ~= "table" then
    raise("invalid_argument", "%s expects a table of options, got %s", what,
          type(t))
  end
  local set = {}
  for _, k in ipairs(allowed) do set[k] = true end
  for k in pairs(t) do
    if not set[k] then admit.unknown_option(what, k, allowed, stage) end
  end
  return t
end

-- Run f(...) and label an isolate.Error it raises with where the options
-- were written: where ("pipeline", "stage", "wrap") and the stage's name.
local function labelled(where, stage, f, ...)
  local ok, res = pcall(f, ...)
  if ok then return res end
  if errors.is(res) then
    res.where = (res.where == nil or res.where == "spawn") and where or res.where
    res.stage = res.stage or stage
    local label = stage and string.format("stage '%s'", stage) or where
    if not res.message:find(label, 1, true) then
      res.message = label .. ": " .. res.message
    end
  end
  error(res, 0)
end

-- "module.func" or a name in the cell's globals.
local function check_target(s, what)
  if not rules.module_name(s) then
    raise("invalid_argument", "%s must be a Python name like 'module.func', "
          .. "got %s", what, type(s) == "string" and string.format("%q", s)
          or type(s))
  end
  return s
end

-- A list: keys 1..#v and no holes (sandbox.null stands for None).
local function check_list(v, what)
  if v == nil then return {} end
  local n, count = type(v) == "table" and #v, 0
  if n then
    for k in pairs(v) do
      count = count + 1
      if math.type(k) ~= "integer" or k < 1 or k > n then n = false end
    end
  end
  if not n or count ~= n then
    raise("invalid_argument", "%s must be a list without holes", what)
  end
  return v
end

local function union(a, b)
  local out, seen = {}, {}
  for _, list in ipairs({ a, b }) do
    for _, v in ipairs(list) do
      if not seen[v] then seen[v], out[#out + 1] = true, v end
    end
  end
  return out
end

local function check_backend(sandbox, b)
  if b == nil then return nil end
  for _, known in ipairs(sandbox.BACKENDS) do
    if b == known then return b end
  end
  raise("invalid_argument", "unknown backend %s; valid backends: %s",
        type(b) == "string" and string.format("'%s'", b) or type(b),
        table.concat(sandbox.BACKENDS, ", "))
end

-- An error about an import or a limit the options inherited from the
-- pipeline's defaults says so (where = "pipeline"), not "stage".
local function inherited(err, opts)
  if not errors.is(err) or err.where ~= "spawn" then return err end
  local limit = type(err.option) == "string" and err.option:match("^limits%.(.+)$")
  local mine = (err.module and rules.contains(opts.imports or {}, err.module))
    or (limit and (opts.limits or {})[limit] ~= nil)
  if not mine and (err.module or limit) then err.where = "pipeline" end
  return err
end

-- The spawn options of opts on top of base (both already key-checked). The
-- policy is compiled here, once, so that a bad policy, import or limit is
-- refused when the stage is declared, not after earlier stages ran.
local function spawn_options(sandbox, base, opts, label)
  if opts.limits ~= nil and type(opts.limits) ~= "table" then
    raise("invalid_argument", "limits must be a table")
  end
  local limits = {}
  for k, v in pairs(base.limits or {}) do limits[k] = v end
  for k, v in pairs(opts.limits or {}) do limits[k] = v end
  local out = {
    backend = check_backend(sandbox, opts.backend == nil and base.backend
                                     or opts.backend),
    imports = union(check_list(base.imports, "imports"),
                    check_list(opts.imports, "imports")),
    capabilities = union(check_list(base.capabilities, "capabilities"),
                         check_list(opts.capabilities, "capabilities")),
    limits = limits,
  }
  local p = opts.policy
  if p == nil then p = base.policy end
  out.policy = sandbox.policy.resolve(p == nil and {} or p)
  local merged = sandbox.policy.merge(out.policy, { imports = out.imports,
    capabilities = out.capabilities, limits = out.limits }, label)
  -- what spawn refuses whatever the policy (a refused import, a limit the
  -- backend cannot enforce, hardened mode's rules) is refused now when the
  -- backend is known; capability handlers may still be registered later
  if out.backend then
    local ok, err = pcall(sandbox._check_refusals, merged, { backend = out.backend,
      imports = out.imports, limits = out.limits })
    if not ok then error(inherited(err, opts), 0) end
  end
  out.merged = merged
  return out
end

-- A call target's module ("json" of "json.loads") must be importable in
-- the cell: refused now, naming the option to add, not when it runs.
local function check_call_module(target, spawn, what)
  local module = target:match("^(.+)%.[^.]+$")
  if not module or spawn.merged:check("import", module) then return end
  error(errors.new("invalid_argument", string.format("%s '%s': module '%s' "
    .. "is not in imports; add imports = {\"%s\"} to the %s's options",
    what, target, module, module, what == "call" and "stage" or "wrap"),
    { option = "imports", module = module,
      suggestion = string.format('imports = {"%s"}', module) }), 0)
end

-- ---- cells ------------------------------------------------------------------

-- err from a stage: labelled with the stage. A guest import its guard
-- refused (err.refused_import, a name a process worker sent: checked) is
-- fixed in the stage's own options, and the advice says so.
local function with_stage(err, stage)
  if not errors.is(err) then return err end
  err.stage = stage
  if err.where == "spawn" then err.where = "stage" end
  local module = err.kind == "guest" and err.refused_import
  if module and rules.module_name(module) then
    err.where, err.option, err.module = "stage", "imports", module
    err.suggestion = string.format('imports = {"%s"}', module)
    err.message = string.format("import of '%s' is not allowed in stage "
      .. "'%s': add %s to the stage's options", module, tostring(stage),
      err.suggestion)
  end
  return err
end

-- A cell for `how` ({spawn=, code=}), with its code loaded; closed again
-- when loading fails.
local function open_cell(sandbox, how, backend)
  local opts = {}
  for k, v in pairs(how.spawn) do opts[k] = v end
  opts.backend = backend or opts.backend
  local cell = sandbox.spawn(opts)
  if how.code then
    local ok, err = pcall(cell.exec, cell, how.code)
    if not ok then
      cell:close()
      error(err, 0)
    end
  end
  return cell
end

local function open_stage_cell(sandbox, stage, backend)
  local ok, cell = pcall(open_cell, sandbox, stage, backend)
  if not ok then error(with_stage(cell, stage.name), 0) end
  return cell
end

-- ---- pipelines --------------------------------------------------------------

local Pipeline = { __name = "isolate.Pipeline" }
Pipeline.__index = Pipeline

function Pipeline.__tostring(p)
  local names = {}
  for i, st in ipairs(p.stages) do names[i] = st.name end
  return string.format("isolate.Pipeline(%s)", table.concat(names, " -> "))
end

-- new(sandbox, defaults) -> pipeline. defaults: spawn options for every
-- stage (a copy is kept; bad ones are refused now).
function M.new(sandbox, defaults)
  if defaults == nil then defaults = {} end
  check_keys(defaults, SPAWN_KEYS, "pipeline")
  labelled("pipeline", nil, spawn_options, sandbox, {}, defaults,
           "pipeline options")
  local copy = {}
  for k, v in pairs(defaults) do copy[k] = v end
  return setmetatable({ sandbox = sandbox, defaults = copy, stages = {},
                        names = {} }, Pipeline)
end

local function check_stage(p, name, opts)
  if type(name) ~= "string" or name == "" then
    raise("invalid_argument", "a stage name must be a non-empty string")
  end
  if p.names[name] then
    raise("invalid_argument", "a stage named '%s' already exists", name)
  end
  check_keys(opts, STAGE_KEYS, "stage", name)
  if (opts.call == nil) == (opts.code == nil) then
    raise("invalid_argument", "stage '%s': give either call or code", name)
  end
  if opts.call ~= nil and opts.entry ~= nil then
    raise("invalid_argument", "stage '%s': entry goes with code, not call",
          name)
  end
  if opts.code ~= nil and type(opts.code) ~= "string" then
    raise("invalid_argument", "stage '%s': code must be a string", name)
  end
  if opts.code ~= nil and opts.entry == nil then
    raise("invalid_argument", "stage '%s': code needs an entry function", name)
  end
end

-- p:stage(name, {call=} | {code=, entry=}, plus spawn options) -> p
function Pipeline:stage(name, opts)
  check_stage(self, name, opts)
  local target = check_target(opts.call or opts.entry,
                              opts.call and "call" or "entry")
  local spawn = labelled("stage", name, spawn_options, self.sandbox,
                         self.defaults, opts, string.format("stage '%s' options", name))
  if opts.call then labelled("stage", name, check_call_module, target, spawn, "call") end
  spawn.merged = nil -- the cells get the options, and merge them at spawn
  self.stages[#self.stages + 1] = {
    name = name, target = target, code = opts.code, spawn = spawn,
  }
  self.names[name] = true
  return self
end

local function check_stages(p)
  if #p.stages == 0 then
    raise("invalid_argument", "the pipeline has no stages")
  end
end

local function close_all(cells)
  for _, cell in pairs(cells) do cell:close() end
end

-- Every stage's cell is spawned and loaded before the first stage runs:
-- a stage that cannot start fails the run before any stage did work.
local function run_stages(p, cells, input)
  for i, st in ipairs(p.stages) do
    cells[i] = open_stage_cell(p.sandbox, st)
  end
  local v = input
  for i, st in ipairs(p.stages) do
    local ok, out = pcall(cells[i].call, cells[i], st.target, v)
    if not ok then error(with_stage(out, st.name), 0) end
    v = out
  end
  return v
end

-- p:run(input) -> the last stage's output; raises the failing stage's
-- error with err.stage set.
function Pipeline:run(input)
  check_stages(self)
  local cells = {}
  local ok, out = pcall(run_stages, self, cells, input)
  close_all(cells)
  if not ok then error(out, 0) end
  return out
end

-- ---- map: a scheduler for stage workers on the one Lua thread ---------------

-- The built-in progress line (on_progress = true): redrawn on stderr at
-- most ten times a second, and only when stderr is a terminal.
local function progress_line()
  if not os.execute("test -t 2") then return function() end end
  local last = -math.huge
  return function(done, total)
    local t = core.now()
    if done < total and t - last < 0.1 then return end
    last = t
    io.stderr:write(string.format("\rpipeline: %d/%d items (%.0f%%)", done,
                                  total, 100 * done / total),
                    done == total and "\n" or "")
    io.stderr:flush()
  end
end

local function check_map(inputs, opts)
  if type(inputs) ~= "table" then
    raise("invalid_argument", "inputs must be a list, got %s", type(inputs))
  end
  check_list(inputs, "inputs")
  opts = check_keys(opts == nil and {} or opts, MAP_KEYS, "map")
  local workers = opts.workers == nil and 1 or opts.workers
  if math.type(workers) ~= "integer" or workers < 1 then
    raise("invalid_argument", "workers must be a positive integer")
  end
  local progress = opts.on_progress
  if progress == true then
    progress = progress_line()
  elseif progress ~= nil and type(progress) ~= "function" then
    raise("invalid_argument", "on_progress must be a function or true")
  end
  return workers, progress or function() end
end

-- Map state: queues[s] holds item indices waiting for stage s (stage 1
-- reads inputs in order); values[i] is item i's current value.
local function new_run(p, inputs, workers, progress)
  local own_gil = core.info().own_gil
  local m = { p = p, inputs = inputs, total = #inputs, done = 0,
              next_input = 1, values = {}, outputs = {}, errors = {},
              queues = {}, workers = {}, progress = progress }
  for s, st in ipairs(p.stages) do
    m.queues[s] = { first = 1, last = 0 }
    m.workers[s] = { backend = st.spawn.backend
                     or (own_gil and "subinterpreter" or "process") }
  end
  m.per_stage = math.min(workers, m.total)
  return m
end

local function spawn_workers(m)
  for s, st in ipairs(m.p.stages) do
    local ws = m.workers[s]
    for k = 1, m.per_stage do
      ws[k] = { stage = s, cell = open_stage_cell(m.p.sandbox, st, ws.backend) }
    end
  end
end

-- A worker may have lost its cell (crashed, killed on timeout): replace
-- it so that the remaining items still have N workers.
local function renew(m, s, w)
  if w.cell:is_open() then return end
  w.cell:close()
  w.cell = open_stage_cell(m.p.sandbox, m.p.stages[s], m.workers[s].backend)
end

local function finish(m)
  m.done = m.done + 1
  m.progress(m.done, m.total)
end

local function push(q, i)
  q.last = q.last + 1
  q[q.last] = i
end

local function next_item(m, s)
  if s == 1 then
    if m.next_input > m.total then return nil end
    m.next_input = m.next_input + 1
    return m.next_input - 1
  end
  local q = m.queues[s]
  if q.first > q.last then return nil end
  local i = q[q.first]
  q[q.first], q.first = nil, q.first + 1
  return i
end

-- Item i left stage s: with a value (ok) or an error.
local function advance(m, s, i, ok, v)
  if not ok then
    if not errors.is(v) then error(v, 0) end -- not the guest's: a bug here
    m.values[i], m.errors[i] = nil, with_stage(v, m.p.stages[s].name)
    finish(m)
  elseif s == #m.p.stages then
    m.values[i], m.outputs[i] = nil, v
    finish(m)
  else
    m.values[i] = v
    push(m.queues[s + 1], i)
  end
end

local function start(m, s, w, i)
  renew(m, s, w) -- a cell can also die between calls
  local v = m.values[i]
  if s == 1 then v = m.inputs[i] end
  local ok, err = pcall(w.cell.start_call, w.cell, m.p.stages[s].target, v)
  if not ok then -- the input cannot cross, or the cell is gone
    advance(m, s, i, false, err)
    renew(m, s, w)
    return
  end
  w.item = i
end

-- Later stages first: items finish sooner and fewer wait in between.
local function dispatch(m)
  for s = #m.p.stages, 1, -1 do
    for _, w in ipairs(m.workers[s]) do
      if not w.item then
        local i = next_item(m, s)
        if not i then break end
        start(m, s, w, i)
      end
    end
  end
end

-- Collect what w's call produced, if it ended.
local function collect(m, w)
  local ok, done, v = pcall(w.cell.result, w.cell, 0)
  if ok and not done then return end
  local s, i = w.stage, w.item
  w.item = nil
  if ok then
    advance(m, s, i, true, v)
  else
    advance(m, s, i, false, done)
    renew(m, s, w)
  end
end

-- Sleep until some running workers have something for us (a result, a
-- broker request, an event, a limit to enforce), then collect from those.
-- One wait for all of them: a worker that ends is noticed at once, not
-- after a guess at how long the others take.
local function sweep(m)
  local running, cells = {}, {}
  for s = 1, #m.p.stages do
    for _, w in ipairs(m.workers[s]) do
      if w.item then
        running[#running + 1], cells[#cells + 1] = w, w.cell
      end
    end
  end
  if #cells == 0 then return end
  for _, k in ipairs(core.wait_any(cells, WAIT_MAX_S)) do
    collect(m, running[k])
  end
end

local function run_map(m)
  spawn_workers(m)
  while m.done < m.total do
    dispatch(m)
    sweep(m)
  end
end

-- Stop every worker: close the idle ones, kill those still running a call
-- (map is failing and their results are not wanted).
local function stop_workers(m)
  for _, ws in ipairs(m.workers) do
    for _, w in ipairs(ws) do
      if w.item then w.cell:kill() else w.cell:close() end
    end
  end
end

-- p:map(inputs, {workers=, on_progress=}) -> outputs, errors (both indexed
-- like inputs; errors[i] only for items that failed, with err.stage; a
-- failed item goes no further). Each stage gets `workers` cells (default
-- 1), spawned once and reused; their backend is the stage's, else
-- sub-interpreter cells where they have their own GIL (CPython >= 3.13)
-- and process cells where they share one. on_progress(done, total) runs on
-- this thread as items end; `true` draws a progress line on stderr when it
-- is a terminal.
function Pipeline:map(inputs, opts)
  check_stages(self)
  -- {shard=, out=}: this run's slice, written to out (isolate.shard)
  if type(opts) == "table" and (opts.shard ~= nil or opts.out ~= nil) then
    return require("isolate.shard").map(self, inputs, opts, Pipeline.map)
  end
  local workers, progress = check_map(inputs, opts)
  local m = new_run(self, inputs, workers, progress)
  if m.total == 0 then return {}, {} end
  local ok, err = pcall(run_map, m)
  stop_workers(m)
  if not ok then error(err, 0) end
  return m.outputs, m.errors
end

-- ---- wrap -------------------------------------------------------------------

local Wrapped = { __name = "isolate.Wrapped" }
Wrapped.__index = Wrapped

-- handle:close(): closes the reused cell; the function raises "closed"
-- from then on. Also __close, so `local f, h <close> = sandbox.wrap(...)`.
function Wrapped:close()
  self.state.closed = true
  if self.state.cell then self.state.cell:close() end
  self.state.cell = nil
end
Wrapped.__close = Wrapped.close

local function check_wrap(target, opts)
  check_target(target, "target")
  opts = check_keys(opts == nil and {} or opts, WRAP_KEYS, "wrap")
  if opts.reuse ~= nil and type(opts.reuse) ~= "boolean" then
    raise("invalid_argument", "reuse must be a boolean")
  end
  if opts.code ~= nil and type(opts.code) ~= "string" then
    raise("invalid_argument", "code must be a string")
  end
  return opts
end

local function check_open(state)
  if state.closed then
    error(errors.new("closed", "the wrapped function was closed"), 3)
  end
end

-- wrap(sandbox, target, opts) -> fn, handle. fn(...) calls target in a
-- fresh cell per call, or (reuse = true) in one cell spawned on the first
-- call and spawned again if it died. opts.code runs once in every cell
-- before its first call, so target may name a function it defines.
function M.wrap(sandbox, target, opts)
  opts = check_wrap(target, opts)
  local spawn = labelled("wrap", nil, spawn_options, sandbox, {}, opts, "wrap options")
  if not opts.code then labelled("wrap", nil, check_call_module, target, spawn, "target") end
  spawn.merged = nil
  local how = { spawn = spawn, code = opts.code }
  local state = {}
  local fn
  if opts.reuse then
    fn = function(...)
      check_open(state)
      if not (state.cell and state.cell:is_open()) then
        if state.cell then state.cell:close() end
        state.cell = open_cell(sandbox, how)
      end
      return state.cell:call(target, ...)
    end
  else
    fn = function(...)
      check_open(state)
      local cell <close> = open_cell(sandbox, how)
      return cell:call(target, ...)
    end
  end
  return fn, setmetatable({ state = state }, Wrapped)
end

return M
