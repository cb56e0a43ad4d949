-- A Lua server that keeps serving while Python computes: a luv (or
-- cqueues) loop with a 10 ms timer and a TCP server on 127.0.0.1 that
-- answers each connection with the result of a Python call in a pooled
-- cell. Fifty clients connect at once; half of them ask for ~300 ms of
-- CPU-bound Python, one for a guest that never ends (wall_ms stops it),
-- one for a guest that crashes. Each gets its own answer; the timer keeps
-- ticking.
--
--   lua5.4 examples/loop_server.lua [luv|cqueues] [subinterpreter|process]
--
-- prints the report: answers right, timer ticks, late ticks (> 50 ms after
-- the one before), the worst gap, and requests per second. Required as a
-- module (spec/loop_server_spec.lua, bench/loop.lua) it returns
-- run{loop=, backend=, clients=} -> that report.
local sandbox = require "isolate"

local M = {}

M.LATE_MS = 50   -- a tick later than this after the one before is late
M.TICK_MS = 10
local WALL_MS = 3000 -- what stops the guest that never ends
local POOL = 3       -- cells serving requests
local SPARES = 2     -- and ready to replace one that died

-- The guest: answer(kind, n) -> n * n, after ~300 ms of CPU for "slow".
local GUEST = [[
import time
def answer(kind, n):
    if kind == "slow":
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.3:
            pass
    elif kind == "hang":
        while True:
            pass
    elif kind == "crash":
        crash()
    return n * n
]]
-- A process cell's worker dies; a sub-interpreter cell cannot crash without
-- taking the host down (it is not a boundary), so its guest raises.
local CRASH = {
  process = "def crash():\n    import os\n    os._exit(3)\n",
  subinterpreter = "def crash():\n    raise RuntimeError('crash')\n",
}
local IMPORTS = { process = { "time", "os" }, subinterpreter = { "time" } }

-- What client i asks, and the one right answer.
function M.ask(i, n_clients)
  if i % 2 == 0 then return "slow", i end
  if i == 1 then return "hang", i end
  if i == 3 then return "crash", i end
  return "fast", i
end

function M.expected(kind, n, backend)
  if kind == "hang" then return "error timeout" end
  if kind == "crash" then
    return backend == "process" and "error crashed" or "error guest"
  end
  return string.format("%d", n * n)
end

-- ---- the pool of cells ------------------------------------------------------
-- Cells are spawned up front (from the warm pool, blocking for a few ms);
-- a request takes a free one or waits for one. A cell that died (timeout or
-- crash of a process cell) is replaced when it comes back.

local Pool = {}
Pool.__index = Pool

local function new_cell(backend)
  return sandbox.spawn({ backend = backend, imports = IMPORTS[backend],
                         limits = { wall_ms = WALL_MS } })
end

-- size cells serving, and spares ready to replace one that dies: spawn
-- blocks until the cell has started, which on a machine whose cores are
-- busy with guests can take tens of ms even from the warm pool, so the
-- loop does not spawn while it serves unless its spares ran out.
function M.pool(backend, size, spares)
  local p = setmetatable({ backend = backend, free = {}, waiting = {}, all = {},
                           spares = {} }, Pool)
  for i = 1, size + spares do
    p.all[i] = new_cell(backend)
    p.all[i]:exec(GUEST .. CRASH[backend])
    -- A cell's first guest exception imports what formats its traceback:
    -- on CPython 3.11, whose sub-interpreters share one GIL, that import
    -- waits for a turn at each file it reads and, next to cells spinning
    -- on the CPU, can take seconds (with the blocking API too). Done here,
    -- before the cell serves.
    pcall(p.all[i].exec, p.all[i], "raise RuntimeError('warm-up')")
    table.insert(i <= size and p.free or p.spares, p.all[i])
  end
  return p
end

function Pool:take(fn)
  local cell = table.remove(self.free)
  if cell then return fn(cell) end
  table.insert(self.waiting, fn)
end

-- A replacement is a spare, or else a new cell that loads the guest
-- without blocking the loop (a fresh process cell's first request takes a
-- while: its Python warms up).
function Pool:give(cell)
  if not cell:is_open() and #self.spares > 0 then
    cell = table.remove(self.spares)
  elseif not cell:is_open() then
    cell = new_cell(self.backend)
    table.insert(self.all, cell)
    return cell:exec_async(GUEST .. CRASH[self.backend], function(err)
      assert(not err, err)
      self:give(cell)
    end)
  end
  local fn = table.remove(self.waiting, 1)
  if fn then return fn(cell) end
  table.insert(self.free, cell)
end

function Pool:close()
  for _, c in ipairs(self.all) do c:close() end
end

-- answer(kind, n, reply): reply(line) once the call is over.
function Pool:answer(kind, n, reply)
  self:take(function(cell)
    cell:call_async("answer", { kind, n }, function(err, v)
      self:give(cell)
      reply(err and ("error " .. err.kind) or string.format("%d", v))
    end)
  end)
end

-- ---- the timer's record -------------------------------------------------------

local function new_ticks(now)
  local t = { count = 0, late = 0, worst = 0, last = now() }
  function t.tick()
    local at = now()
    local gap = (at - t.last) * 1000
    t.last, t.count = at, t.count + 1
    if gap > t.worst then t.worst = gap end
    if gap > M.LATE_MS then t.late = t.late + 1 end
  end
  return t
end

local function report(opts, answers, ticks, seconds, steps_before)
  local steps = sandbox.loop_stats()
  local r = { loop = opts.loop, backend = opts.backend, clients = opts.clients,
              steps = steps.steps - steps_before, longest_step_ms = steps.longest_ms,
              right = 0, wrong = {}, ticks = ticks.count, late = ticks.late,
              worst_ms = ticks.worst, seconds = seconds,
              rps = opts.clients / seconds }
  for i = 1, opts.clients do
    local kind, n = M.ask(i, opts.clients)
    if answers[i] == M.expected(kind, n, opts.backend) then
      r.right = r.right + 1
    else
      r.wrong[#r.wrong + 1] = { client = i, kind = kind, got = answers[i] }
    end
  end
  return r
end

-- ---- luv ---------------------------------------------------------------------

local function serve_luv(uv, pool)
  local server = uv.new_tcp()
  assert(server:bind("127.0.0.1", 0))
  assert(server:listen(128, function(err)
    assert(not err, err)
    local con = uv.new_tcp()
    server:accept(con)
    local buf = ""
    con:read_start(function(rerr, chunk)
      if rerr or not chunk then return con:close() end
      buf = buf .. chunk
      local kind, n = buf:match("^(%a+) (%d+)\n")
      if not kind then return end
      con:read_stop()
      pool:answer(kind, tonumber(n), function(line)
        con:write(line .. "\n", function() con:close() end)
      end)
    end)
  end))
  return server, server:getsockname().port
end

local function client_luv(uv, port, i, clients, answers, done)
  local con = uv.new_tcp()
  con:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    local kind, n = M.ask(i, clients)
    local buf = ""
    con:write(string.format("%s %d\n", kind, n))
    con:read_start(function(rerr, chunk)
      if chunk then buf = buf .. chunk; return end
      answers[i] = rerr and ("read error " .. rerr) or buf:match("^(.-)\n")
      con:close()
      done()
    end)
  end)
end

function M.run_luv(opts)
  local uv = require "luv"
  local pool = M.pool(opts.backend, POOL, SPARES)
  local watch = require("isolate.luv").attach(uv)
  local server, port = serve_luv(uv, pool)
  local ticks = new_ticks(uv.hrtime and function() return uv.hrtime() / 1e9 end)
  local timer = uv.new_timer()
  timer:start(M.TICK_MS, M.TICK_MS, ticks.tick)
  local answers, left, start = {}, opts.clients, uv.hrtime()
  local seconds
  for i = 1, opts.clients do
    client_luv(uv, port, i, opts.clients, answers, function()
      left = left - 1
      if left > 0 then return end
      seconds = (uv.hrtime() - start) / 1e9
      timer:close(); server:close(); watch:detach()
    end)
  end
  uv.run()
  pool:close()
  return report(opts, answers, ticks, seconds, opts.steps_before)
end

-- ---- cqueues -------------------------------------------------------------------

local function serve_cqueues(cq, pool, clients)
  local socket = require "cqueues.socket"
  local condition = require "cqueues.condition"
  local server = socket.listen({ host = "127.0.0.1", port = 0 })
  local _, _, port = server:localname()
  cq:wrap(function()
    for _ = 1, clients do
      local con = server:accept()
      cq:wrap(function()
        local kind, n = (con:read("*l") or ""):match("^(%a+) (%d+)$")
        local cond, line = condition.new(), nil
        pool:answer(kind, tonumber(n), function(l) line = l; cond:signal() end)
        while not line do cond:wait() end
        con:write(line .. "\n")
        con:close()
      end)
    end
    server:close()
  end)
  return port
end

function M.run_cqueues(opts)
  local cqueues = require "cqueues"
  local socket = require "cqueues.socket"
  local cq = cqueues.new()
  local pool = M.pool(opts.backend, POOL, SPARES)
  local watch = require("isolate.cqueues").attach(cq)
  local port = serve_cqueues(cq, pool, opts.clients)
  local ticks = new_ticks(cqueues.monotime)
  local answers, left, start, seconds = {}, opts.clients, cqueues.monotime(), nil
  cq:wrap(function()
    while left > 0 do cqueues.sleep(M.TICK_MS / 1000); ticks.tick() end
  end)
  for i = 1, opts.clients do
    cq:wrap(function()
      local con = socket.connect("127.0.0.1", port)
      local kind, n = M.ask(i, opts.clients)
      con:write(string.format("%s %d\n", kind, n))
      con:flush()
      answers[i] = con:read("*l")
      con:close()
      left = left - 1
      if left == 0 then
        seconds = cqueues.monotime() - start
        watch:detach()
      end
    end)
  end
  assert(cq:loop())
  pool:close()
  return report(opts, answers, ticks, seconds, opts.steps_before)
end

function M.run(opts)
  opts = { loop = opts.loop or "luv", backend = opts.backend or "subinterpreter",
           clients = opts.clients or 50 }
  -- Cells come from the warm pools (started ahead by background threads):
  -- spawning a replacement then costs the loop a few ms, not a fork.
  opts.steps_before = sandbox.loop_stats().steps
  local pools = sandbox.pool()
  sandbox.configure({ warm_pool = POOL + SPARES, process_pool = POOL + SPARES })
  local r = (opts.loop == "cqueues" and M.run_cqueues or M.run_luv)(opts)
  sandbox.configure({ warm_pool = pools.target, process_pool = pools.process.target })
  return r
end

function M.print(r)
  print(string.format("%s/%s: %d/%d clients answered right; timer: %d ticks, "
    .. "%d late (> %d ms), worst gap %.1f ms; %.1f requests/s; %d steps, "
    .. "the longest %.1f ms",
    r.loop, r.backend, r.right, r.clients, r.ticks, r.late, M.LATE_MS,
    r.worst_ms, r.rps, r.steps, r.longest_step_ms))
  for _, w in ipairs(r.wrong) do
    print(string.format("  client %d (%s) got %s", w.client, w.kind, tostring(w.got)))
  end
end

if not pcall(debug.getlocal, 4, 1) then -- run as a script, not required
  M.print(M.run({ loop = arg[1], backend = arg[2] }))
end

return M
