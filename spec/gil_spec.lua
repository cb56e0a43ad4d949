-- Sub-interpreter cells and the GIL (issue 16): a guest that is given up
-- on ("abandoned": it swallowed every interrupt past wall_ms) must not
-- make later cells' limited requests time out, and what abandoned guests
-- still cost is reported by sandbox.info().abandoned.
--
-- With one shared GIL (3.11) a thread waiting for the GIL raises its drop
-- request in its own interpreter, where a looping cell never looks; the
-- runtime hands the GIL on through the looping cell's interpreter (the
-- nudger) and parks an abandoned guest's thread. With an own GIL per cell
-- (3.13) the same specs run and must pass as they are.
local sandbox = require "isolate"
local core = require "isolate.core"
local support = require "support"
local err_of = support.err_of
local now = core.now

-- Swallows every interrupt: three nested handlers, so that even two
-- interrupts in a row leave it looping.
local SPIN = [[
def spin():
    while True:
        try:
            while True: pass
        except BaseException:
            pass
def outer():
    while True:
        try:
            spin()
        except BaseException:
            pass
while True:
    try:
        outer()
    except BaseException:
        pass
]]

local INNOCENT = "x = sum(range(200000))" -- about 5 ms on its own

local function abandoned() return sandbox.info().abandoned end

-- n guests that run src (SPIN) at once until wall_ms has passed and the
-- host gives them up: each raises timeout and is left dead, not open.
local function abandon_guests(n, wall_ms, src)
  local cells = {}
  for i = 1, n do
    cells[i] = sandbox.spawn({ limits = { wall_ms = wall_ms } })
    cells[i]:start_exec(src or SPIN)
  end
  for _, c in ipairs(cells) do
    local e = err_of(function() repeat until c:result(5) end)
    assert.are.equal("timeout", e.kind)
    assert.is_false(c:is_open()) -- abandoned, not merely interrupted
    c:close()
  end
end

-- 20 INNOCENT execs in a fresh cell with `limits`; how many failed, and
-- the slowest one (seconds).
local function innocent_requests(limits)
  local c <close> = sandbox.spawn({ limits = limits })
  local failed, worst = 0, 0
  for _ = 1, 20 do
    local t0 = now()
    local ok = pcall(c.exec, c, INNOCENT)
    worst = math.max(worst, now() - t0)
    if not ok then failed = failed + 1 end
    if not c:is_open() then break end -- (counted; the rest would fail too)
  end
  return failed, worst
end

-- The issue's repro, `rounds` times in this host: abandon `n` guests, a
-- round trip in another cell, then 20 requests in a cell with `limits`.
local function repro(rounds, n, wall_ms, limits, label)
  local before = abandoned().threads
  local failed, worst = 0, 0
  for _ = 1, rounds do
    abandon_guests(n, wall_ms)
    local b <close> = sandbox.spawn({})
    b:exec("post(2)")
    assert.are.equal(2, b:recv(5))
    local f, w = innocent_requests(limits)
    failed, worst = failed + f, math.max(worst, w)
  end
  io.stdout:write(string.format("\n  [gil] %s: %d innocent requests, %d failed, worst %.1f ms\n",
    label, rounds * 20, failed, worst * 1000))
  assert.are.equal(0, failed)
  assert.are.equal(before + rounds * n, abandoned().threads)
end

describe("abandoned guests", function()
  it("never make 400 innocent wall_ms requests time out (20 rounds)", function()
    repro(20, 1, 200, { wall_ms = 300 }, "1 abandoned per round, wall_ms")
  end)

  it("never do, three abandoned at once", function()
    repro(4, 3, 100, { wall_ms = 300 }, "3 abandoned at once per round, wall_ms")
  end)

  it("never make innocent cpu_ms requests fail", function()
    repro(4, 1, 100, { cpu_ms = 300 }, "1 abandoned per round, cpu_ms")
  end)

  it("are reported by sandbox.info() and, parked, stop using CPU", function()
    local before = abandoned()
    abandon_guests(1, 100)
    -- code of its own, outside the cell's globals, is parked all the same
    abandon_guests(1, 100, "exec('''" .. SPIN .. "''', {})")
    local info = abandoned()
    assert.are.equal(before.threads + 2, info.threads)
    assert.is_true(info.cpu_ms > before.cpu_ms) -- it ran 100 ms at least
    local deadline = now() + 5
    while abandoned().parked < info.threads and now() < deadline do core.sleep(0.05) end
    info = abandoned()
    assert.are.equal(info.threads, info.parked)
    core.sleep(1)
    local later = abandoned()
    assert.is_true(later.cpu_ms - info.cpu_ms < 100,
      string.format("parked guests used %d ms of CPU in 1 s", later.cpu_ms - info.cpu_ms))
  end)
end)

describe("a looping live cell", function()
  -- Not abandoned, so never parked: the GIL must still come round. This
  -- is where the nudger, waiting at a door the GIL no longer passed, got
  -- stuck, and the loop kept the GIL until its end.
  it("does not make a limited cell's short requests time out", function()
    local busy <close> = sandbox.spawn({ imports = { "time" } })
    busy:start_exec("import time\nend = time.monotonic() + 3\nwhile time.monotonic() < end:\n    pass\n")
    local failed, worst, n = 0, 0, 0
    local t0 = now()
    while now() - t0 < 2.5 do
      local f, w = innocent_requests({ wall_ms = 300 })
      failed, worst, n = failed + f, math.max(worst, w), n + 20
    end
    io.stdout:write(string.format("\n  [gil] beside a live loop: %d requests, %d failed, worst %.1f ms\n",
      n, failed, worst * 1000))
    assert.are.equal(0, failed)
    repeat until busy:result(10)
  end)
end)
