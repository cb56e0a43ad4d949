-- Events and metrics: sandbox.on handlers, exit and warning events,
-- stats().uptime_ms and the Prometheus text of sandbox.metrics().
local sandbox = require "isolate"
local support = require "support"
local err_of = support.err_of

local seen = {}
for _, t in ipairs({ "log", "metric", "denial", "exit", "warning", "reload" }) do
  sandbox.on(t, function(ev) seen[#seen + 1] = ev end)
end

local function of_type(t, cell)
  local out = {}
  for _, ev in ipairs(seen) do
    if ev.type == t and (not cell or ev.cell == cell) then out[#out + 1] = ev end
  end
  return out
end

describe("sandbox.on", function()
  before_each(function() seen = {} end)

  it("checks its arguments", function()
    assert.are.equal("invalid_argument", err_of(sandbox.on, "nope", print).kind)
    assert.are.equal("invalid_argument", err_of(sandbox.on, "log", "x").kind)
  end)

  for _, backend in ipairs(support.backends()) do
    it("hands every event to its handlers and still queues it (" .. backend .. ")", function()
      local sb <close> = sandbox.spawn({ backend = backend })
      sb:exec("log('info', 'a', k=1)\nmetric('m', 2)\npost(3)")
      assert.are.equal(3, sb:recv(1))
      err_of(sb.exec, sb, "import json")
      assert.are.equal(1, #of_type("log", sb.name))
      assert.are.same({ k = 1 }, of_type("log", sb.name)[1].fields)
      assert.are.equal(1, #of_type("metric", sb.name))
      assert.are.equal("json", of_type("denial", sb.name)[1].target)
      local queued = {}
      for ev in sb:events() do queued[ev.type] = (queued[ev.type] or 0) + 1 end
      assert.are.equal(1, queued.log)
      assert.are.equal(1, queued.metric)
      assert.are.equal(1, queued.denial)
    end)

    it("reports how each cell ended with an exit event (" .. backend .. ")", function()
      local a = sandbox.spawn({ backend = backend })
      local b = sandbox.spawn({ backend = backend })
      a:close()
      b:kill()
      a:close()
      assert.are.equal("close", of_type("exit", a.name)[1].reason)
      assert.are.equal("kill", of_type("exit", b.name)[1].reason)
      assert.are.equal(1, #of_type("exit", a.name))
      local c = sandbox.spawn({ backend = backend, limits = { wall_ms = 100 } })
      local e = err_of(c.exec, c, "while True:\n    pass")
      if not c:is_open() then
        assert.are.equal("timeout", of_type("exit", c.name)[1].reason)
      end
      assert.are.equal("timeout", e.kind)
      c:close()
      assert.are.equal(1, #of_type("exit", c.name))
    end)
  end

  it("warns once, when the cell is confined, if a confinement layer is missing", function()
    local sb <close> = sandbox.spawn({})
    local missing = 0
    for _, row in ipairs(sb:confinement()) do
      if row.state == "missing" then missing = missing + 1 end
    end
    for _ in sb:events() do end -- hands pending events to the handlers
    sb:exec("post(1)")
    assert.are.equal(missing > 0 and 1 or 0, #of_type("warning", sb.name))
  end)

  it("raises a handler's error once the operation is over, the cell intact", function()
    local sb <close> = sandbox.spawn({})
    local armed = true
    sandbox.on("log", function() if armed then error("handler bug", 0) end end)
    local ok, e = pcall(sb.exec, sb, "log('info', 'x')\nresult = 42\ndef get():\n    return result")
    armed = false
    assert.is_false(ok)
    assert.are.equal("handler bug", e)
    assert.are.equal(42, sb:call("get")) -- the request had completed
  end)
end)

describe("stats and metrics", function()
  it("count uptime", function()
    local sb <close> = sandbox.spawn({})
    require("isolate.core").sleep(0.02)
    assert.is_true(sb:stats().uptime_ms >= 20)
  end)

  it("expose Prometheus text for live cells and totals", function()
    local sb <close> = sandbox.spawn({ name = "metered" })
    sb:exec("post(1)")
    sb:recv(1)
    local text = sandbox.metrics()
    local samples, types = {}, {}
    for line in text:gmatch("[^\n]+") do
      local name, kind = line:match("^# TYPE (%S+) (%S+)$")
      if name then
        types[name] = kind
      elseif not line:match("^#") then
        local metric, labels, value = line:match('^([%w_]+)(%b{}) (%S+)$')
        if not metric then metric, value = line:match("^([%w_]+) (%S+)$") end
        assert.is_truthy(metric, "unparsable line: " .. line)
        assert.is_truthy(tonumber(value), line)
        assert.is_truthy(types[metric], "no TYPE before " .. metric)
        samples[metric .. (labels or "")] = tonumber(value)
      end
    end
    assert.are.equal(1, samples['isolate_cell_calls_total{cell="metered",backend="subinterpreter"}'])
    assert.are.equal(1, samples['isolate_cell_posts_total{cell="metered",backend="subinterpreter"}'])
    assert.are.equal("gauge", types.isolate_cell_memory_bytes)
    assert.are.equal(sb:stats().mem_bytes,
                     samples['isolate_cell_memory_bytes{cell="metered",backend="subinterpreter"}'])
    assert.are.equal("counter", types.isolate_cells_spawned_total)
    assert.is_true(samples.isolate_cells_live >= 1)
  end)
end)
