-- Pipeline map throughput: run with `build/luaisolate bench/pipeline.lua [scale]`.
-- 1000 * scale CPU-bound items (a pure-Python loop of about 2 ms each)
-- through a one-stage pipeline with 1 and 2 workers, per backend and CPU
-- mode. Sub-interpreter cells run in parallel only with their own GIL
-- (CPython >= 3.13); on 3.11 they share one. These VMs are noisy: each
-- figure is the best of ROUNDS runs, 1 and 2 workers taking turns. The
-- ceiling column is what this host gives two cells with no scheduling at
-- all (one long call each, started together): the most map could reach.
local sandbox = require "isolate"
local now = require("isolate.core").now

local scale = tonumber(arg and arg[1]) or 1
local ITEMS = math.max(10, math.floor(1000 * scale))
local ITEM_S = 0.002
local ROUNDS = 3

local SPIN = [[
def spin(n):
    s = 0
    for i in range(n):
        s += i * i
    return s & 0xffff
]]

local function cores()
  local n = 0
  for line in io.lines("/proc/cpuinfo") do
    if line:match("^processor%s*:") then n = n + 1 end
  end
  return n
end

-- Loop count that takes about ITEM_S in one cell of this backend.
local function calibrate(backend)
  local sb <close> = sandbox.spawn({ backend = backend })
  sb:exec(SPIN)
  local n, per_item = 20000, math.huge
  for _ = 1, 3 do sb:call("spin", n) end -- warm up
  for _ = 1, 5 do -- the fastest batch: the least disturbed
    local t0 = now()
    for _ = 1, 10 do sb:call("spin", n) end
    per_item = math.min(per_item, (now() - t0) / 10)
  end
  return math.max(1, math.floor(n * ITEM_S / per_item))
end

-- Items per second for `workers` workers, spawning included.
local function throughput(backend, n, workers)
  local p = sandbox.pipeline({ backend = backend })
    :stage("spin", { code = SPIN, entry = "spin" })
  local inputs = {}
  for i = 1, ITEMS do inputs[i] = n end
  local t0 = now()
  local outs, errs = p:map(inputs, { workers = workers })
  local elapsed = now() - t0
  assert(next(errs) == nil and #outs == ITEMS, "an item failed")
  return ITEMS / elapsed
end

-- Speed-up of two cells each running half the work as one call, over one
-- cell running that half.
local function ceiling(backend, n)
  local a <close> = sandbox.spawn({ backend = backend })
  local b <close> = sandbox.spawn({ backend = backend })
  a:exec(SPIN)
  b:exec(SPIN)
  local half = n * ITEMS // 2
  local t0 = now()
  a:call("spin", half)
  local t1 = now()
  a:start_call("spin", half)
  b:start_call("spin", half)
  a:result()
  b:result()
  return 2 * (t1 - t0) / (now() - t1)
end

local function implemented(backend)
  for _, b in ipairs(sandbox.IMPLEMENTED) do
    if b == backend then return true end
  end
  return false
end

local info = sandbox.info()
print(string.format("luaisolate %s, CPython %s (%s), %d cores, %d items of ~%.0f ms",
  info.version, info.python, info.cell_mode, cores(), ITEMS, ITEM_S * 1e3))

local modes = {
  { "subinterpreter", info.own_gil and "subinterpreter (own GIL)"
                                    or "subinterpreter (shared GIL)" },
  { "process", "process" },
}
local rows = {}
for _, mode in ipairs(modes) do
  local backend, label = mode[1], mode[2]
  if implemented(backend) then
    local n, one, two, top = calibrate(backend), 0, 0, 0
    for _ = 1, ROUNDS do
      one = math.max(one, throughput(backend, n, 1))
      two = math.max(two, throughput(backend, n, 2))
      top = math.max(top, ceiling(backend, n))
    end
    rows[#rows + 1] = string.format("| %-28s | %12.0f | %12.0f | %7.2fx | %7.2fx |",
                                    label, one, two, two / one, top)
  end
end
print("| backend (CPU mode)           | 1 worker /s  | 2 workers /s | speed-up | ceiling  |")
print("| ---------------------------- | ------------ | ------------ | -------- | -------- |")
for _, r in ipairs(rows) do print(r) end
