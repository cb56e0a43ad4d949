-- Cell benchmarks: run with `build/luaisolate bench/cells.lua [scale]`.
-- Prints one row per measurement: median and p95 over many samples, or a
-- single figure for RSS. These VMs are noisy: compare rows from one run.
local sandbox = require "isolate"
local now = require("isolate.core").now

local scale = tonumber(arg and arg[1]) or 1

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

-- Time fn() n times, each after an untimed before() if given; returns
-- median and p95 in microseconds.
local function sample(n, fn, before)
  local t = {}
  for i = 1, n do
    if before then before() end
    local t0 = now()
    fn(i)
    t[i] = (now() - t0) * 1e6
  end
  table.sort(t)
  return percentile(t, 0.5), percentile(t, 0.95)
end

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmRSS:%s+(%d+)")
    if kib then return tonumber(kib) end
  end
end

local rows = {}
local function row(name, unit, median, p95)
  rows[#rows + 1] = string.format("| %-40s | %12s | %12s |", name,
    string.format("%.1f %s", median, unit),
    p95 and string.format("%.1f %s", p95, unit) or "-")
end

-- Cold spawns only, unless a row says otherwise.
sandbox.configure({ process_pool = 0, warm_pool = 0 })

local function bench_spawn_first_result(backend)
  return sample(math.ceil(200 * scale), function()
    local sb <close> = sandbox.spawn({ backend = backend })
    sb:exec("post(1)")
    assert(sb:recv() == 1)
  end)
end

local function bench_spawn_close(backend)
  return sample(math.ceil(200 * scale), function()
    sandbox.spawn({ backend = backend }):close()
  end)
end

local function bench_round_trip(backend)
  local sb <close> = sandbox.spawn({ backend = backend })
  for _ = 1, 1000 do sb:exec("post(1)"); sb:recv() end -- warm up
  return sample(math.ceil(20000 * scale), function()
    sb:exec("post(1)")
    assert(sb:recv() == 1)
  end)
end

-- The same round trip after the cell slept 10 ms: both sides are woken
-- from idle, as a spawn's hops are (CONFIG, READY, the first request and
-- its result). On a VM that halts idle vCPUs, each wake-up costs far more
-- than the round trip between two busy processes.
local function bench_round_trip_idle(backend)
  local sb <close> = sandbox.spawn({ backend = backend })
  for _ = 1, 100 do sb:exec("post(1)"); sb:recv() end -- warm up
  local sleep = require("isolate.core").sleep
  return sample(math.ceil(100 * scale), function()
    sb:exec("post(1)")
    assert(sb:recv() == 1)
  end, function() sleep(0.01) end)
end

local function bench_call_1k(backend)
  local sb <close> = sandbox.spawn({ backend = backend })
  sb:exec("def echo(x):\n    return x\n")
  local s = string.rep("x", 1024)
  for _ = 1, 1000 do sb:call("echo", s) end
  return sample(math.ceil(20000 * scale), function()
    assert(#sb:call("echo", s) == 1024)
  end)
end

-- Spawn from a full warm pool of pool_size, `burst` spawns at a time (the
-- pool refills between bursts, untimed). One at a time, each spawn comes
-- right after a refill has filled the caches with a new interpreter's
-- creation; in bursts, as a map or a pipeline takes its workers, most do
-- not. first_result adds the first exec and its result (which waits for
-- the cell's confinement: spawn does not).
local function bench_warm(pool_size, burst, first_result)
  local sleep = require("isolate.core").sleep
  sandbox.configure({ warm_pool = pool_size })
  local cells, t = {}, {}
  for _ = 1, math.ceil(200 / burst * scale) do
    while sandbox.pool().ready < pool_size do sleep(0.001) end
    for _ = 1, burst do
      local t0 = now()
      local sb = sandbox.spawn({})
      if first_result then
        sb:exec("post(1)")
        assert(sb:recv() == 1)
      end
      t[#t + 1] = (now() - t0) * 1e6
      cells[#cells + 1] = sb
    end
  end
  sandbox.configure({ warm_pool = 0 })
  for _, sb in ipairs(cells) do sb:close() end
  table.sort(t)
  return percentile(t, 0.5), percentile(t, 0.95)
end

-- Process spawn -> first result, each spawn from a full process pool of
-- pool_size (refilled between spawns, untimed).
local function bench_process_pool(pool_size)
  local sleep = require("isolate.core").sleep
  sandbox.configure({ process_pool = pool_size })
  sandbox.spawn({ backend = "process" }):close() -- wakes the pool
  local t = {}
  for i = 1, math.ceil(200 * scale) do
    while sandbox.pool().process.ready < pool_size do sleep(0.0005) end
    local t0 = now()
    local sb <close> = sandbox.spawn({ backend = "process" })
    sb:exec("post(1)")
    assert(sb:recv() == 1)
    t[i] = (now() - t0) * 1e6
  end
  sandbox.configure({ process_pool = 0 })
  table.sort(t)
  return percentile(t, 0.5), percentile(t, 0.95)
end

-- The floor under a sub-interpreter cell's spawn + close: a bare
-- interpreter with the cells' configuration, created and ended.
local function bench_floor()
  local t = require("isolate.core").interp_floor(math.ceil(200 * scale))
  table.sort(t)
  return percentile(t, 0.5), percentile(t, 0.95)
end

-- Where a spawn's time goes: when each phase ended (median over the
-- cells, ms after spawn began), in that order, and the step from the one
-- before; then the first request. Phases are the backends' own records
-- (sb:phases()): the host's and, for a process cell, its worker's (whose
-- early steps overlap the host's wait for the fork; a pool worker's ran
-- before spawn, so they end below 0). A name that recurs is numbered.
local function spawn_phases(backend, label, before)
  local ends, first = {}, {}
  for i = 1, math.ceil(100 * scale) do
    if before then before() end
    local t0 = now()
    local sb <close> = sandbox.spawn({ backend = backend })
    local spawned = (now() - t0) * 1e3
    sb:exec("post(1)")
    assert(sb:recv() == 1)
    first[i] = (now() - t0) * 1e3 - spawned
    local seen = {}
    for _, ph in ipairs(sb:phases()) do
      seen[ph.phase] = (seen[ph.phase] or 0) + 1
      local key = ph.phase .. (seen[ph.phase] > 1 and " #" .. seen[ph.phase] or "")
      ends[key] = ends[key] or {}
      table.insert(ends[key], ph.ms)
    end
  end
  local list = {}
  for key, t in pairs(ends) do
    table.sort(t)
    list[#list + 1] = { key = key, at = percentile(t, 0.5) }
  end
  table.sort(list, function(a, b) return a.at < b.at end)
  local out, prev = {}, nil
  for _, ph in ipairs(list) do
    out[#out + 1] = string.format("| %-5s %-28s | %9.3f ms | %9.3f ms |", label, ph.key,
                                  ph.at, prev and ph.at - prev or ph.at)
    prev = ph.at
  end
  table.sort(first)
  out[#out + 1] = string.format("| %-5s %-28s | %9.3f ms | %12s |", label,
                                "first exec -> result", percentile(first, 0.5), "")
  return out
end

local function spawn_idle(backend, n)
  local cells = {}
  for i = 1, n do
    cells[i] = sandbox.spawn({ backend = backend, imports = { "os" } })
    cells[i]:exec("import os; post(os.getpid())")
  end
  return cells
end

local function bench_idle_rss()
  collectgarbage()
  local before = rss_kib()
  local cells = spawn_idle("subinterpreter", 100)
  local per_cell = (rss_kib() - before) / 100
  for _, sb in ipairs(cells) do sb:close() end
  return per_cell
end

-- Proportional set size of each worker: what one more cell really costs,
-- counting pages shared with the zygote once.
local function bench_idle_pss()
  local cells, total = spawn_idle("process", 100), 0
  for _, sb in ipairs(cells) do
    local pid = sb:recv()
    for line in io.lines("/proc/" .. pid .. "/smaps_rollup") do
      local kib = line:match("^Pss:%s+(%d+)")
      if kib then total = total + tonumber(kib) end
    end
  end
  for _, sb in ipairs(cells) do sb:close() end
  return total / 100
end

local info = sandbox.info()
print(string.format("luaisolate %s, CPython %s (%s), Lua %s", info.version,
  info.python, info.cell_mode, info.lua:match("%d[%d.]*")))
local cold = {}
for _, backend in ipairs({ "subinterpreter", "process" }) do
  cold[backend] = { bench_spawn_first_result(backend) }
  row(backend .. ": spawn -> first result", "us", table.unpack(cold[backend]))
  cold[backend .. " close"] = { bench_spawn_close(backend) }
  row(backend .. ": spawn + close", "us", table.unpack(cold[backend .. " close"]))
  row(backend .. ": exec('post(1)') + recv", "us", bench_round_trip(backend))
  row(backend .. ": exec + recv, 10 ms idle", "us", bench_round_trip_idle(backend))
  row(backend .. ": call echo(1 KiB str)", "us", bench_call_1k(backend))
end
local floor = { bench_floor() }
row("bare interpreter create + end (floor)", "us", table.unpack(floor))
row("subinterpreter spawn + close / floor", "x",
    cold["subinterpreter close"][1] / floor[1], cold["subinterpreter close"][2] / floor[2])
local pooled = { bench_process_pool(2) }
row("process: spawn -> first result, pool", "us", table.unpack(pooled))
row("process: cold / pool, spawn -> first", "x",
    cold.process[1] / pooled[1], cold.process[2] / pooled[2])
row("subinterpreter: spawn from the warm pool", "us", bench_warm(4, 1, false))
row("warm pool: 8 spawns in a row, each", "us", bench_warm(16, 8, false))
row("warm pool: spawn -> first result", "us", bench_warm(4, 1, true))
row("subinterpreter: RSS per idle cell (100)", "KiB", bench_idle_rss())
row("process: PSS per idle cell (100)", "KiB", bench_idle_pss())
local phases = {}
for _, r in ipairs(spawn_phases("subinterpreter", "sub")) do phases[#phases + 1] = r end
for _, r in ipairs(spawn_phases("process", "proc")) do phases[#phases + 1] = r end
sandbox.configure({ process_pool = 2 })
sandbox.spawn({ backend = "process" }):close() -- wakes the pool
local function full()
  while sandbox.pool().process.ready < 2 do require("isolate.core").sleep(0.0005) end
end
for _, r in ipairs(spawn_phases("process", "pool", full)) do phases[#phases + 1] = r end
sandbox.configure({ process_pool = 0 })
print("| measurement                              |       median |          p95 |")
print("| ---------------------------------------- | ------------ | ------------ |")
for _, r in ipairs(rows) do print(r) end
print()
print("| spawn phase (median)               |     ends at |   step |")
print("| ---------------------------------- | ------------ | ------------ |")
for _, r in ipairs(phases) do print(r) end
