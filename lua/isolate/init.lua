-- isolate: run Python code in isolated cells, from Lua.
--
--   local sandbox = require "isolate"
--   local sb <close> = sandbox.spawn{ imports = {"math"} }
--   sb:exec("from math import sqrt; post(sqrt(2))")
--   print(sb:recv(1))
--
-- This file validates options and keeps the Lua-side registries (live
-- cells, broker capabilities); isolate.core does the work.
local core = require "isolate.core"
local errors = require "isolate.error"
local policy = require "isolate.policy"
local rules = require "isolate.rules"
local pipeline = require "isolate.pipeline"
local admit = require "isolate.admit"
local events = require "isolate.events"
local guest_metrics = require "isolate.metrics"

local raise = errors.raise
local sandbox = {}

sandbox._VERSION = core.info().version
sandbox.BACKENDS = policy.BACKENDS -- core.backends: C keeps the list
sandbox.DEFAULT_BACKEND = policy.DEFAULT_BACKEND
sandbox.null = core.null
sandbox.array = core.array
sandbox.bytes = core.bytes
sandbox.Error = errors.Error
sandbox.policy = policy

-- What this build and host can run, probed once at load.
sandbox.IMPLEMENTED = {}
for _, b in ipairs(sandbox.BACKENDS) do
  if core.backend_check(b) then table.insert(sandbox.IMPLEMENTED, b) end
end

local SPAWN_OPTIONS = { name = true, backend = true, policy = true,
                        imports = true, capabilities = true, limits = true }

local live = setmetatable({}, { __mode = "v" }) -- name -> cell
local origins = setmetatable({}, { __mode = "k" }) -- cell -> {name=, config=}
local spawned = setmetatable({}, { __mode = "k" }) -- cell -> true: all of them
local capabilities = {}                          -- name -> handler
local generated = 0

-- ---- events ---------------------------------------------------------------
-- Every event a cell produces reaches the sink below on the Lua thread
-- (while the host waits in exec/call/recv/result, and at close). It is
-- queued for sb:events() and handed to the handlers of its type.
local EVENT_TYPES = { log = true, metric = true, denial = true, exit = true,
                      warning = true, reload = true }
local EVENT_NAMES = "denial, exit, log, metric, reload, warning"
local handlers = {}                               -- type -> {fn, ...}
local queues = setmetatable({}, { __mode = "k" }) -- cell -> {first, last, ...}
local totals = { spawned = 0, exited = 0 }

local default_writer -- sandbox.log_events: for the types nobody handles
local log_file        -- the file it writes, if any: closed when replaced
local record_metrics  -- below: guest metric values for sandbox.metrics()

-- The script's handlers of ev's type, or the default writer when there
-- are none (and it is on).
local function deliver(ev, cell)
  if cell then record_metrics(ev, cell) end
  local list = handlers[ev.type]
  local trap = sandbox._handler_trap -- isolate.loop's step(): its errors
  if list then
    for _, fn in ipairs(list) do
      if trap then trap(pcall(fn, ev)) else fn(ev) end
    end
  elseif default_writer then
    default_writer(ev)
  end
end

local function sink(cell, ev)
  local q = queues[cell]
  if not q then q = { first = 1, last = 0 }; queues[cell] = q end
  q.last = q.last + 1
  q[q.last] = ev
  if ev.type == "exit" then totals.exited = totals.exited + 1 end
  deliver(ev, cell)
end
core.set_event_sink(sink)

-- A metric event's value is kept for sandbox.metrics(); one that breaks
-- isolate.metrics' rules (a process cell can send anything) is dropped,
-- with a warning event from the same cell.
function record_metrics(ev, cell)
  if ev.type == "metric" then
    guest_metrics.record(ev, function(message)
      sink(cell, { type = "warning", message = message, cell = ev.cell,
                   time = os.time() })
    end)
  elseif ev.type == "exit" then
    guest_metrics.closed(ev.cell)
  end
end

-- sandbox.log_events{format = "text"|"json", file = PATH, level = "warning"}:
-- write every event of a type the script has no sandbox.on handler for,
-- one line each, to stderr or appended to file, when its level is `level`
-- or above: a guest log's own level; a clean close (exit reason "close")
-- info, a metric event debug, every other warning, denial, exit and reload
-- warning.
-- The luaisolate host turns it on; a program that requires the module
-- gets nothing until it asks. sandbox.log_events(false) turns it off.
function sandbox.log_events(opts)
  local writer, file = nil, nil
  if opts ~= false then writer, file = events.writer(opts or {}) end
  if log_file then log_file:close() end
  default_writer, log_file = writer, file
end

-- for ev in sb:events() do ... end: yields and consumes pending events.
function core.cell_methods.events(cell)
  cell:_dispatch()
  return function()
    local q = queues[cell]
    if not q or q.first > q.last then return nil end
    local ev = q[q.first]
    q[q.first], q.first = nil, q.first + 1
    return ev
  end
end

function sandbox.on(type_, fn)
  if not EVENT_TYPES[type_] then
    raise("invalid_argument", "unknown event type %s; valid types: %s",
          tostring(type_), EVENT_NAMES)
  end
  if type(fn) ~= "function" then
    raise("invalid_argument", "sandbox.on('%s', fn): fn must be a function",
          type_)
  end
  handlers[type_] = handlers[type_] or {}
  table.insert(handlers[type_], fn)
  return fn
end

local function missing_layers(cell)
  local missing = {}
  for _, row in ipairs(cell:confinement()) do
    if row.state == "missing" then missing[#missing + 1] = row.layer end
  end
  return missing
end

-- Whether a missing layer refuses instead of warning: the core decides
-- (iso_mode_hardened), every check below asks here.
local function hardened()
  return core.info().hardened
end

-- hardened mode: a cell that lacks a layer is closed and spawn raises (the
-- core confined it before spawn returned). Other modes get one warning
-- event per such cell from the core, once its confinement is done.
local function check_layers(cell)
  if not hardened() then return end
  local missing = missing_layers(cell)
  if #missing == 0 then return end
  cell:close()
  errors.raise("unenforceable", "hardened mode: cell '%s' would run "
               .. "without %s; see sb:confinement() or luaisolate doctor",
               cell.name, table.concat(missing, ", "))
end

-- An unknown backend: the error lists the valid ones (valid=) too.
local function bad_backend(fmt, ...)
  local valid = table.move(sandbox.BACKENDS, 1, #sandbox.BACKENDS, 1, {})
  error(errors.new("invalid_argument", string.format(fmt, ...)
                   .. table.concat(valid, ", "), { valid = valid }), 4)
end

local function check_backend(backend)
  if backend == nil then return sandbox.DEFAULT_BACKEND end
  if type(backend) ~= "string" then
    bad_backend("backend must be a string, one of: ")
  end
  for _, b in ipairs(sandbox.BACKENDS) do
    if b == backend then return backend end
  end
  bad_backend("unknown backend '%s'; valid backends: ", backend)
end

local function check_name(name)
  if name == nil then
    repeat
      generated = generated + 1
      name = string.format("cell-%d", generated)
    until not (live[name] and live[name]:is_open())
    return name
  end
  if type(name) ~= "string" or not core.name_valid(name) then
    raise("invalid_argument", "name must match ^[A-Za-z0-9_-]{1,%d}$, got %s",
          core.limits.name,
          type(name) == "string" and string.format("%q", name) or type(name))
  end
  return name
end

local function check_module(m, where)
  if type(m) ~= "string" then
    raise("invalid_argument", "%s: expected a module name string", where)
  end
  if not rules.module_name(m) then
    raise("invalid_argument", "%s: '%s' is not a module name", where, m)
  end
end

local function check_list(list, what, check_item)
  if list == nil then return {} end
  if type(list) ~= "table" then
    raise("invalid_argument", "%s must be a list of strings", what)
  end
  local n = #list
  for k in pairs(list) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      raise("invalid_argument", "%s must be a list (found key %s)", what,
            tostring(k))
    end
  end
  local out = {}
  for i, v in ipairs(list) do
    check_item(v, string.format("%s[%d]", what, i))
    out[i] = v
  end
  return out
end

local function check_capability_name(c, where)
  if type(c) ~= "string" or not c:match("^[%w_.-]+$") then
    raise("invalid_argument", "%s: expected a capability name", where)
  end
end

local function check_limits(limits)
  if limits ~= nil and type(limits) ~= "table" then
    raise("invalid_argument", "limits must be a table")
  end
  return limits -- its keys and values are checked by policy.merge
end

local function check_options(opts)
  if type(opts) ~= "table" then
    raise("invalid_argument", "spawn expects a table of options, got %s",
          type(opts))
  end
  for k in pairs(opts) do
    if not SPAWN_OPTIONS[k] then
      admit.unknown_option("spawn", k, SPAWN_OPTIONS)
    end
  end
  return {
    backend = check_backend(opts.backend),
    name = check_name(opts.name),
    imports = check_list(opts.imports, "imports", check_module),
    capabilities = check_list(opts.capabilities, "capabilities",
                              check_capability_name),
    limits = check_limits(opts.limits),
  }
end

-- What a backend cannot enforce, hardened mode's rules and capabilities
-- with no handler are refused at spawn (isolate.admit raises them; the
-- pipeline asks the same before a stage's cells exist).
local function check_refusals(p, config)
  admit.refusals(p, config, hardened())
end
sandbox._check_refusals = check_refusals

-- The cell's policy: the named/given one (or an empty one: deny all), with
-- the spawn options on top.
local EMPTY_POLICY -- compiled once: spawn is on the warm path

local function with_options(p, config)
  if #config.imports > 0 or #config.capabilities > 0 or config.limits then
    p = policy.merge(p, {
      imports = config.imports,
      capabilities = config.capabilities,
      limits = config.limits,
    })
  end
  check_refusals(p, config)
  admit.handlers(p, config, capabilities)
  return p
end

-- A policy that does not load names the option it came from.
local function resolve_option(v, config)
  local ok, p = pcall(policy.resolve, v)
  if ok then return p end
  if errors.is(p) then
    p.option, p.where = p.option or "policy", p.where or config.where or "spawn"
  end
  error(p, 0)
end

local function cell_policy(opts, config)
  EMPTY_POLICY = EMPTY_POLICY or policy.compile({})
  local p = opts.policy == nil and EMPTY_POLICY or resolve_option(opts.policy, config)
  return with_options(p, config)
end

-- What isolate.core.spawn takes.
local function core_config(config, p)
  local imports, caps, limits, syscalls, plan = policy.spawn_fields(p)
  return {
    name = config.name, backend = config.backend,
    imports = imports, capabilities = caps, plan = plan,
    wall_ms = limits.wall_ms, cpu_ms = limits.cpu_ms, mem = limits.mem,
    open_files = limits.open_files, output_bytes = limits.output_bytes,
    processes = limits.processes, syscalls_deny = syscalls,
    queue_bytes = limits.queue_bytes, queue_values = limits.queue_values,
  }
end

-- The broker: runs on the Lua thread while the host waits on the cell.
local function broker(capability, action, payload, cell)
  local handler = capabilities[capability]
  if not handler then
    error(string.format("no handler is registered for capability '%s'",
                        capability), 0)
  end
  return handler(action, payload, cell)
end

function sandbox.spawn(opts)
  local config = check_options(opts)
  local ok, err = core.backend_check(config.backend)
  if not ok then error(err, 2) end
  local p = cell_policy(opts, config)
  local cell = core.spawn(core_config(config, p), broker)
  live[config.name] = cell
  spawned[cell] = true
  if type(opts.policy) == "string" then -- policy.reload can find it
    local imports, caps, _, syscalls = policy.spawn_fields(p)
    origins[cell] = { name = opts.policy, config = config, fields = {
      imports = imports, capabilities = caps, syscalls = syscalls } }
  end
  totals.spawned = totals.spawned + 1
  check_layers(cell)
  return cell
end

-- ---- hot reload -----------------------------------------------------------

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- What one cell's reload will do: its new fields, checked like a spawn.
local function reload_plan(cell, origin, p)
  local merged = with_options(p, origin.config)
  local imports, caps, _, syscalls, plan = policy.spawn_fields(merged)
  local old = origin.fields
  return { cell = cell, merged = merged, plan = plan,
           fixed = not (same_list(imports, old.imports)
                        and same_list(caps, old.capabilities)
                        and same_list(syscalls, old.syscalls)) }
end

-- sandbox.policy.reload(name, new_policy) -> {{cell=, layers={...},
-- restart_needed=}, ...}: every running cell spawned from policy `name`
-- decides with new_policy (plus its spawn options) from now on where the
-- layer allows it. A policy that does not compile or that a cell could
-- not be spawned with changes nothing.
function policy.reload(name, new_policy)
  if type(name) ~= "string" then
    raise("invalid_argument", "reload(name, policy): name must be a string")
  end
  local p = policy.resolve(new_policy)
  local plans = {}
  for cell, origin in pairs(origins) do
    if origin.name == name and cell:is_open() then
      plans[#plans + 1] = reload_plan(cell, origin, p)
    end
  end
  local report = {}
  for i, r in ipairs(plans) do
    local layers = r.cell:_reload(r.plan)
    if r.fixed then -- imports, capabilities and syscalls stay as spawned
      layers["python-guard"], layers.seccomp = "restart needed", "restart needed"
    end
    local restart = false
    for _, v in pairs(layers) do restart = restart or v == "restart needed" end
    report[i] = { cell = r.cell.name, layers = layers, restart_needed = restart }
  end
  table.sort(report, function(a, b) return a.cell < b.cell end)
  deliver({ type = "reload", policy = name, cells = report, time = os.time() })
  return report
end

-- Guest code never outlives the host. shutdown() kills every cell this
-- module spawned (process cells with everything their guests started, by
-- their cgroup), stops the zygote and removes the cells' cgroups; the next
-- spawn starts afresh. The same runs when this module's state is collected
-- (lua_close) and at exit; a host killed outright leaves the zygote and
-- its cells to the kernel (PDEATHSIG), and its cgroup directories to the
-- next host start.
local function shutdown()
  for cell in pairs(spawned) do
    if cell:is_open() then pcall(cell.kill, cell) end
  end
  core.shutdown()
end
local sentinel = setmetatable({}, { __gc = function() pcall(core.shutdown) end })

function sandbox.shutdown()
  local _ = sentinel -- collected with this function: with the module
  shutdown()
end

function sandbox.list()
  local cells = {}
  for name, cell in pairs(live) do
    if cell:is_open() then cells[name] = cell end
  end
  return cells
end

function sandbox.capability(name, handler)
  check_capability_name(name, "capability")
  if type(handler) ~= "function" then
    raise("invalid_argument", "capability '%s': handler must be a function",
          name)
  end
  capabilities[name] = handler
end

local MODES = {} -- core.modes: C keeps the names
for _, m in ipairs(core.modes) do MODES[m] = true end
local POOL_MAX = { warm_pool = core.limits.warm_pool,
                   process_pool = core.limits.process_pool }

local function check_configure(opts)
  if type(opts) ~= "table" then
    raise("invalid_argument", "configure expects a table of options")
  end
  for k, v in pairs(opts) do
    if POOL_MAX[k] then
      if math.type(v) ~= "integer" or v < 0 or v > POOL_MAX[k] then
        raise("invalid_argument", "%s must be an integer from 0 to %d", k,
              POOL_MAX[k])
      end
    elseif k == "mode" then
      if not MODES[v] then
        raise("invalid_argument", "mode must be one of %s",
              table.concat(core.modes, ", "))
      end
    elseif k == "thread_cgroups" then
      if type(v) ~= "boolean" then
        raise("invalid_argument", "thread_cgroups must be a boolean")
      end
    elseif k == "queue_bytes" or k == "queue_values" then
      if math.type(v) ~= "integer" or v < 1 then
        raise("invalid_argument", "%s must be a positive integer", k)
      end
    else
      raise("invalid_argument", "unknown configure option '%s'; valid "
            .. "options: warm_pool, process_pool, mode, thread_cgroups, "
            .. "queue_bytes, queue_values", tostring(k))
    end
  end
end

-- sandbox.configure{ warm_pool = N, process_pool = K,
-- mode = "dev"|"hardened"|"compat"|"learn", thread_cgroups = true }
-- (learn: refused while hardened; a banner on stderr; see isolate.learn). warm_pool
-- keeps N sub-interpreter cells created ahead for spawn (0 drains).
-- process_pool keeps K process-cell workers forked ahead (default and
-- most: core.limits.process_pool_default and .process_pool, 2 and 64; 0
-- drains and disables), each past every confinement step no
-- policy decides; it fills once a process cell has been spawned. thread_cgroups moves this process into its
-- own cgroup so each sub-interpreter cell thread gets one (the luaisolate
-- host does this at start); it cannot be turned off again, and where the
-- kernel refuses it the cgroup layer is reported missing (hardened mode:
-- raises kind unenforceable). queue_bytes / queue_values: how much of a
-- cell's posts and events (bytes, messages) the host holds until recv and
-- events take them, for cells spawned later without limits of their own
-- (defaults 64 MiB, 65536): past them a process cell is killed (kind
-- output) and a sub-interpreter guest's post/log/metric raises OSError
-- ENOBUFS. Returns nothing.
function sandbox.configure(opts)
  check_configure(opts)
  if opts.queue_bytes or opts.queue_values then
    core.queue_defaults(opts.queue_bytes, opts.queue_values)
  end
  if opts.mode then
    local was = core.info().mode
    core.set_mode(opts.mode) -- refuses learn while hardened
    if opts.mode == "learn" and was ~= "learn" then
      io.stderr:write("luaisolate: LEARN MODE: cells run what their policy "
        .. "would deny and record it; nothing is enforced by Landlock, the "
        .. "BPF guard only logs. Never use it for untrusted code.\n")
    end
  end
  if opts.thread_cgroups then
    local ok, why = core.thread_cgroups()
    if not ok and hardened() then
      raise("unenforceable", "thread cgroups: %s", why)
    end
  end
  if opts.warm_pool then core.pool_configure(opts.warm_pool) end
  if opts.process_pool then core.process_pool_configure(opts.process_pool) end
end

-- {ready=, target=, taken=, process = {ready=, target=, taken=}}: the warm
-- pool and the process pool now (taken: what spawn took from it, ever).
function sandbox.pool()
  return core.pool_stats()
end

function sandbox.info()
  local info = core.info()
  info.learning = info.mode == "learn"
  return info
end

-- Pipelines and wrap live in isolate.pipeline, which gets this module
-- passed in (it does not require "isolate": no cycle).
function sandbox.pipeline(defaults)
  return pipeline.new(sandbox, defaults)
end

function sandbox.wrap(target, opts)
  return pipeline.wrap(sandbox, target, opts)
end

-- Sharding a map across runs and gathering its results: isolate.shard.
sandbox.shard = require("isolate.shard").shard
sandbox.gather = require("isolate.shard").gather

-- Embedding in an event loop (sandbox.fd, sandbox.step, sb:exec_async...):
-- isolate.loop, which gets this module passed in.
require("isolate.loop").install(sandbox)

-- ---- metrics ----------------------------------------------------------------

local CELL_METRICS = {
  { "isolate_cell_calls_total", "counter", "Requests (exec and call) run.", "calls" },
  { "isolate_cell_posts_total", "counter", "Values posted to the host.", "posts" },
  { "isolate_cell_denials_total", "counter", "Actions denied by the policy.", "denials" },
  { "isolate_cell_cpu_seconds_total", "counter", "CPU time used.", "cpu_ms", 1000 },
  { "isolate_cell_uptime_seconds", "gauge", "Time since spawn.", "uptime_ms", 1000 },
  { "isolate_cell_memory_bytes", "gauge", "Memory held: the Python heap of a "
    .. "sub-interpreter cell, the resident set of a process cell.", "mem_bytes" },
}

local function label(s)
  return (s:gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

-- Prometheus text exposition (version 0.0.4) of the live cells, totals and
-- what guests measured with metric() (isolate.metrics: isolate_guest_*).
function sandbox.metrics()
  local out, cells = {}, {}
  for name, cell in pairs(sandbox.list()) do cells[#cells + 1] = { name, cell } end
  table.sort(cells, function(a, b) return a[1] < b[1] end)
  local stats = {}
  for i, c in ipairs(cells) do stats[i] = c[2]:stats() end
  for _, m in ipairs(CELL_METRICS) do
    out[#out + 1] = string.format("# HELP %s %s\n# TYPE %s %s", m[1], m[3], m[1], m[2])
    for i, c in ipairs(cells) do
      local v = stats[i][m[4]]
      if m[5] then v = string.format("%.3f", v / m[5]) end
      out[#out + 1] = string.format('%s{cell="%s",backend="%s"} %s', m[1],
        label(c[1]), c[2].backend, v)
    end
  end
  local function total(name, kind, help, v)
    out[#out + 1] = string.format("# HELP %s %s\n# TYPE %s %s\n%s %d", name, help,
                                  name, kind, name, v)
  end
  total("isolate_cells_live", "gauge", "Cells open now.", #cells)
  total("isolate_cells_spawned_total", "counter", "Cells spawned.", totals.spawned)
  total("isolate_cells_exited_total", "counter", "Cells closed, killed or dead.", totals.exited)
  guest_metrics.lines(out)
  return table.concat(out, "\n") .. "\n"
end

return sandbox
