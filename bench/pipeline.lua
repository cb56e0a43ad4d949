-- Pipeline map throughput: run with `build/luaisolate bench/pipeline.lua [scale]`.
-- 1000 * scale CPU-bound items (a pure-Python loop of about 2 ms each)
-- through a one-stage pipeline with 1 and 2 workers, per backend and CPU
-- mode, for two kinds of item: `ints` (an integer loop) and `alloc` (builds
-- and drops strings and lists: the allocator's path). Sub-interpreter rows
-- run with limits.mem unset and set, since memory accounting sits on that
-- path. Sub-interpreter cells run in parallel only with their own GIL
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

local KINDS = {
  ints = [[
def spin(n):
    s = 0
    for i in range(n):
        s += i * i
    return s & 0xffff
]],
  alloc = [=[
def spin(n):
    keep = []
    for i in range(n):
        keep.append(str(i * i))
        if len(keep) > 64:
            keep = [s + "." for s in keep[::8]]
    return len(keep)
]=],
}
local MEM = 512 * 1024 * 1024 -- limits.mem when set: never reached

local function cores()
  local n = 0
  for line in io.lines("/proc/cpuinfo") do
    if line:match("^processor%s*:") then n = n + 1 end
  end
  return n
end

-- Loop count that takes about ITEM_S in one cell of this backend.
local function calibrate(opts, code)
  local sb <close> = sandbox.spawn(opts)
  sb:exec(code)
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
local function throughput(opts, code, n, workers)
  local p = sandbox.pipeline(opts):stage("spin", { code = code, entry = "spin" })
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
local function ceiling(opts, code, n)
  local a <close> = sandbox.spawn(opts)
  local b <close> = sandbox.spawn(opts)
  a:exec(code)
  b:exec(code)
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

-- One row: the best of ROUNDS, 1 and 2 workers taking turns.
local function row(label, backend, kind, limits)
  local opts, code = { backend = backend, limits = limits }, KINDS[kind]
  local n, one, two, top = calibrate(opts, code), 0, 0, 0
  for _ = 1, ROUNDS do
    one = math.max(one, throughput(opts, code, n, 1))
    two = math.max(two, throughput(opts, code, n, 2))
    top = math.max(top, ceiling(opts, code, n))
  end
  return string.format("| %-28s | %-5s | %-3s | %12.0f | %12.0f | %7.2fx | %7.2fx |",
                       label, kind, limits and "set" or "-", one, two,
                       two / one, top)
end

local rows = {}
for _, mode in ipairs(modes) do
  local backend, label = mode[1], mode[2]
  if implemented(backend) then
    local mems = backend == "subinterpreter" and { false, true } or { false }
    for _, kind in ipairs({ "ints", "alloc" }) do
      for _, mem in ipairs(mems) do
        rows[#rows + 1] = row(label, backend, kind, mem and { mem = MEM } or nil)
      end
    end
  end
end
print("| backend (CPU mode)           | item  | mem | 1 worker /s  | 2 workers /s | speed-up | ceiling  |")
print("| ---------------------------- | ----- | --- | ------------ | ------------ | -------- | -------- |")
for _, r in ipairs(rows) do print(r) end
