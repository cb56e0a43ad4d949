-- Pipelines (run, map) and wrap: results, errors with their stage, no
-- cell left open, and every option refused that should be.
local sandbox = require "isolate"

local support = require "support"
local err_of = support.err_of

local new_pipeline, wrap = sandbox.pipeline, sandbox.wrap

local function live_names()
  local names = {}
  for name in pairs(sandbox.list()) do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- Asserts that fn leaves no more cells open than there were. No garbage
-- collection in between: it would close what was left open.
local function no_leak(fn)
  local before = live_names()
  fn()
  assert.are.same(before, live_names())
end

local DOUBLE = [[
def run(x):
    if x == 'boom':
        raise ValueError('no boom')
    return [v * 2 for v in x]
]]

-- Busy for a time set by the item, so that later items can overtake.
local SPIN = [[
def run(x):
    n = 0
    for i in range(x['work']):
        n += i
    if x['id'] < 0:
        raise KeyError(x['id'])
    return x['id']
]]

for _, backend in ipairs(support.backends()) do

describe("pipeline:run" .. " (" .. backend .. ")", function()
  local p
  before_each(function()
    p = new_pipeline({ backend = backend, imports = { "json" } })
      :stage("parse", { call = "json.loads" })
      :stage("double", { code = DOUBLE, entry = "run" })
      :stage("dump", { call = "json.dumps" })
  end)

  it("feeds each stage's output to the next and returns the last", function()
    no_leak(function()
      assert.are.equal("[2, 4, 6]", p:run("[1, 2, 3]"))
    end)
  end)

  it("raises the failing stage's error with stage, python and traceback", function()
    no_leak(function()
      local e = err_of(p.run, p, '"boom"')
      assert.are.equal("guest", e.kind)
      assert.are.equal("double", e.stage)
      assert.are.equal("ValueError", e.python)
      assert.is_truthy(e.traceback:find("run", 1, true))
      assert.is_string(e.cell)
    end)
  end)

  it("labels a stage that cannot start and runs no stage", function()
    no_leak(function()
      local q = new_pipeline({ backend = backend, capabilities = { "count" } })
      local calls = 0
      sandbox.capability("count", function() calls = calls + 1 end)
      q:stage("one", { code = "def run(x):\n    request('count', 'x')\n    return x\n", entry = "run" })
      q:stage("two", { code = "def run(x) return x", entry = "run" })
      local e = err_of(q.run, q, 1)
      assert.are.equal("two", e.stage)
      assert.are.equal("SyntaxError", e.python)
      assert.are.equal(0, calls)
    end)
  end)

  it("passes None and containers through", function()
    local q = new_pipeline({ backend = backend })
      :stage("none", { code = "def run(x):\n    return None\n", entry = "run" })
      :stage("wrap", { code = "def run(x):\n    return [x, {'k': x is None}]\n", entry = "run" })
    assert.are.same({ sandbox.null, { k = true } }, q:run({ 1 }))
  end)

  it("gives stage options on top of the defaults", function()
    -- imports add up: the stage may use json (default) and math (its own)
    local q = new_pipeline({ backend = backend, imports = { "json" } })
      :stage("both", { imports = { "math" }, entry = "run",
                       code = "import json, math\ndef run(x):\n    return json.dumps(math.floor(x))\n" })
    assert.are.equal("2", q:run(2.5))
    -- a stage may not import what neither grants: refused when declared,
    -- naming the stage and the option to add
    q = new_pipeline({ backend = backend })
    local e = err_of(q.stage, q, "os", { call = "os.getcwd" })
    assert.are.same({ "invalid_argument", "os", "stage", "imports", "os" },
                    { e.kind, e.stage, e.where, e.option, e.module })
    -- and a code stage's own import, when it runs
    q = new_pipeline({ backend = backend })
      :stage("os", { code = "import os\ndef run(x):\n    return x\n", entry = "run" })
    e = err_of(q.run, q, 1)
    assert.are.equal("ImportError", e.python)
    assert.are.equal("os", e.stage)
  end)

  it("can be run again, and grows after a run", function()
    assert.are.equal("[2]", p:run("[1]"))
    p:stage("again", { call = "json.loads" })
    assert.are.same({ 4 }, p:run("[2]"))
  end)
end)

describe("pipeline:map" .. " (" .. backend .. ")", function()
  local function spin_pipeline(opts)
    return new_pipeline({ backend = backend })
      :stage("spin", { code = SPIN, entry = "run", limits = opts and opts.limits })
      :stage("tag", { code = "def run(x):\n    return 'item %d' % x\n", entry = "run" })
  end

  -- Early items work longest, so with several workers later ones finish first.
  local function items(n)
    local t = {}
    for i = 1, n do t[i] = { id = i, work = (n - i) * 20000 } end
    return t
  end

  for _, workers in ipairs({ 1, 3 }) do
    it("keeps outputs in input order with " .. workers .. " worker(s)", function()
      no_leak(function()
        local outs, errs = spin_pipeline():map(items(9), { workers = workers })
        for i = 1, 9 do assert.are.equal("item " .. i, outs[i]) end
        assert.are.same({}, errs)
      end)
    end)
  end

  it("reports per-item errors with their stage; the rest go on", function()
    no_leak(function()
      local p = spin_pipeline()
        :stage("last", { code = "def run(s):\n    if s == 'item 4':\n        raise OSError(s)\n    return s\n",
                         entry = "run" })
      local inputs = items(6)
      inputs[2].id = -2
      local outs, errs = p:map(inputs, { workers = 2 })
      assert.are.equal("spin", errs[2].stage)
      assert.are.equal("KeyError", errs[2].python)
      assert.are.equal("last", errs[4].stage)
      assert.are.equal("OSError", errs[4].python)
      assert.are.equal(sandbox.Error, getmetatable(errs[4]))
      assert.is_nil(outs[2])
      assert.is_nil(outs[4])
      for _, i in ipairs({ 1, 3, 5, 6 }) do
        assert.are.equal("item " .. i, outs[i])
        assert.is_nil(errs[i])
      end
    end)
  end)

  it("keeps None and False outputs as outputs, not errors", function()
    local p = new_pipeline({ backend = backend })
      :stage("pass", { code = "def run(x):\n    return x\n", entry = "run" })
    local outs, errs = p:map({ sandbox.null, false, 0, "" }, { workers = 2 })
    assert.are.same({}, errs)
    assert.are.same({ nil, false, 0, "" }, { outs[1], outs[2], outs[3], outs[4] })
  end)

  it("reports an item whose input cannot cross as a value error", function()
    local p = new_pipeline({ backend = backend }):stage("len", { call = "len" })
    local outs, errs = p:map({ "ab", print, "abc" })
    assert.are.same({ 2, nil, 3 }, { outs[1], outs[2], outs[3] })
    assert.are.equal("value", errs[2].kind)
    assert.are.equal("len", errs[2].stage)
  end)

  it("times out one item and keeps its workers for the others", function()
    no_leak(function()
      local inputs = items(5)
      inputs[3].work = 1 << 40
      local p = spin_pipeline({ limits = { wall_ms = 150 } })
      -- Sub-interpreters sharing one GIL (CPython 3.11) do not hand it to
      -- each other: a runaway item holds up its neighbours until the
      -- interrupt, so their wall_ms would run out too.
      local shared_gil = backend == "subinterpreter" and not sandbox.info().own_gil
      local outs, errs = p:map(inputs, { workers = shared_gil and 1 or 2 })
      assert.are.equal("timeout", errs[3].kind)
      assert.are.equal("spin", errs[3].stage)
      for _, i in ipairs({ 1, 2, 4, 5 }) do assert.are.equal("item " .. i, outs[i]) end
    end)
  end)

  it("calls on_progress on every item, in order, up to the total", function()
    local seen = {}
    local inputs = items(7)
    inputs[5].id = -5
    spin_pipeline():map(inputs, {
      workers = 3,
      on_progress = function(done, total)
        assert.are.equal(7, total)
        seen[#seen + 1] = done
      end,
    })
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7 }, seen)
  end)

  it("stops every worker and raises when on_progress raises", function()
    no_leak(function()
      local p = spin_pipeline()
      local ok, e = pcall(p.map, p, items(8), {
        workers = 3,
        on_progress = function(done) if done == 2 then error("stop here", 0) end end,
      })
      assert.is_false(ok)
      assert.are.equal("stop here", e)
    end)
  end)

  it("raises with the stage when a worker cannot start, leaving no cell", function()
    no_leak(function()
      local p = spin_pipeline():stage("bad", { code = "def run(:", entry = "run" })
      local e = err_of(p.map, p, items(4), { workers = 2 })
      assert.are.equal("bad", e.stage)
      assert.are.equal("SyntaxError", e.python)
    end)
  end)

  it("returns two empty tables for no inputs, and accepts on_progress = true", function()
    local outs, errs = spin_pipeline():map({}, { workers = 2 })
    assert.are.same({}, outs)
    assert.are.same({}, errs)
    outs = spin_pipeline():map(items(2), { on_progress = true })
    assert.are.same({ "item 1", "item 2" }, outs)
  end)
end)

describe("core.wait_any, map's wait for its workers" .. " (" .. backend .. ")", function()
  local core = require "isolate.core"
  local spawn = support.spawner(backend)
  local LOOP = "def spin(n):\n    s = 0\n    for i in range(n):\n        s += i\n    return n\n"

  local function loop_cell(opts)
    local c = spawn(opts)
    c:exec(LOOP)
    return c
  end

  it("names the cells whose call ended, none at the timeout", function()
    no_leak(function()
      local slow <close> = loop_cell()
      local fast <close> = loop_cell()
      slow:start_call("spin", 10000000)
      fast:start_call("spin", 1000)
      local ready = core.wait_any({ slow, fast }, 30)
      -- fast's call ended; slow is named too only if its call ended as well
      -- (a loaded machine can delay this thread that long)
      assert.are.equal(2, ready[#ready])
      assert.are.same({ true, 1000 }, { fast:result(0) })
      if #ready == 1 then
        assert.are.same({}, core.wait_any({ slow }, 0))
        assert.are.same({ 1 }, core.wait_any({ slow }, 30))
      end
      assert.are.same({ true, 10000000 }, { slow:result(0) })
      fast:kill()
      assert.are.same({ 1 }, core.wait_any({ fast })) -- it needs collecting
    end)
  end)

  it("returns at once for a cell that runs nothing", function()
    local idle <close> = loop_cell()
    assert.are.same({ 1, 2 }, core.wait_any({ idle, idle }))
  end)

  it("wakes for a broker request, which result(0) then serves", function()
    sandbox.capability("twice", function(_, payload) return payload * 2 end)
    local c <close> = spawn({ capabilities = { "twice" } })
    c:exec("def run(x):\n    return request('twice', 'go', x) + 1\n")
    c:start_call("run", 20)
    local done, v
    repeat
      assert.are.same({ 1 }, core.wait_any({ c }, 30))
      done, v = c:result(0)
    until done
    assert.are.equal(41, v)
  end)

  it("wakes to enforce wall_ms on a runaway call", function()
    -- Also with one shared GIL (3.11): a runaway the interrupt misses is
    -- abandoned and parked, and later spawns get the GIL (issue 16).
    local c <close> = loop_cell({ limits = { wall_ms = 100 } })
    c:start_call("spin", 1 << 40)
    local e = err_of(function()
      repeat core.wait_any({ c }, 30) until c:result(0)
    end)
    assert.are.equal("timeout", e.kind)
  end)

  it("refuses what is not a list of cells, and a negative timeout", function()
    local c <close> = loop_cell()
    assert.are.equal("invalid_argument", err_of(core.wait_any, "cells").kind)
    assert.are.equal("invalid_argument", err_of(core.wait_any, { c, 1 }).kind)
    assert.are.equal("invalid_argument", err_of(core.wait_any, { c }, -1).kind)
  end)
end)

describe("wrap" .. " (" .. backend .. ")", function()
  local COUNTER = "n = 0\ndef bump(k=1):\n    global n\n    n += k\n    return n\n"

  it("calls a module function in a fresh cell per call", function()
    no_leak(function()
      local sqrt = wrap("math.sqrt", { backend = backend, imports = { "math" } })
      assert.are.equal(3.0, sqrt(9))
      assert.are.equal(4.0, sqrt(16))
      local bump = wrap("bump", { backend = backend, code = COUNTER })
      assert.are.same({ 1, 1, 2 }, { bump(), bump(), bump(2) })
    end)
  end)

  it("reuses one cell with reuse = true until the handle is closed", function()
    no_leak(function()
      local bump, handle = wrap("bump", { backend = backend, code = COUNTER, reuse = true })
      assert.are.same({ 1, 2, 5 }, { bump(), bump(), bump(3) })
      handle:close()
      handle:close()
      assert.are.equal("closed", err_of(bump).kind)
    end)
  end)

  it("closes the reused cell through <close>", function()
    no_leak(function()
      local bump, handle <close> = wrap("bump", { backend = backend, code = COUNTER, reuse = true })
      assert.are.equal(1, bump())
    end)
  end)

  it("raises as call does, and a reused cell survives a guest error", function()
    no_leak(function()
      local sqrt, handle = wrap("math.sqrt", { backend = backend, imports = { "math" }, reuse = true })
      local e = err_of(sqrt, -1)
      assert.are.equal("guest", e.kind)
      assert.are.equal("ValueError", e.python)
      assert.are.equal(2.0, sqrt(4))
      handle:close()
      -- a target whose module is not imported: refused by wrap itself
      e = err_of(wrap, "os.getcwd", { backend = backend })
      assert.are.same({ "invalid_argument", "wrap", "imports", "os" },
                      { e.kind, e.where, e.option, e.module })
      -- a module the code imports that is not allowed: when it runs
      local run = wrap("run", { backend = backend, code = "def run():\n    import os\n" })
      e = err_of(run)
      assert.are.equal("ImportError", e.python)
    end)
  end)
end)

end

describe("map workers", function()
  local function implemented(b)
    for _, x in ipairs(support.backends()) do if x == b then return true end end
    return false
  end
  local PID = "import os\ndef run(x):\n    return os.getpid()\n"

  it("are process cells unless the stage says otherwise or cells have their own GIL", function()
    if not (implemented("subinterpreter") and implemented("process")) then return end
    local host = new_pipeline({ backend = "subinterpreter", imports = { "os" } })
      :stage("pid", { code = PID, entry = "run" }):run()
    local auto = new_pipeline({ imports = { "os" } }):stage("pid", { code = PID, entry = "run" })
    assert.are.equal(sandbox.info().own_gil, auto:map({ 0 })[1] == host)
    local given = new_pipeline({ backend = "subinterpreter", imports = { "os" } })
      :stage("pid", { code = PID, entry = "run" })
    assert.are.equal(host, given:map({ 0 })[1])
  end)

  it("can be of both kinds in one map", function()
    if not (implemented("subinterpreter") and implemented("process")) then return end
    no_leak(function()
      local p = new_pipeline()
        :stage("thread", { backend = "subinterpreter", code = "def run(x):\n    return x + 1\n", entry = "run" })
        :stage("proc", { backend = "process", code = "def run(x):\n    return x * 10\n", entry = "run" })
      local outs, errs = p:map({ 1, 2, 3, 4, 5 }, { workers = 2 })
      assert.are.same({ 20, 30, 40, 50, 60 }, outs)
      assert.are.same({}, errs)
    end)
  end)

  it("stop a sub-interpreter item at cpu_ms", function()
    if not implemented("subinterpreter") then return end
    no_leak(function()
      local p = new_pipeline({ backend = "subinterpreter" })
        :stage("spin", { code = "def run(n):\n    for i in range(n):\n        pass\n    return n\n",
                         entry = "run", limits = { cpu_ms = 100 } })
      local outs, errs = p:map({ 1, 1 << 40 }, { workers = 1 })
      assert.are.equal(1, outs[1])
      assert.are.equal("cpu", errs[2].kind)
      assert.are.equal("spin", errs[2].stage)
    end)
  end)

  it("replace a process worker whose cell crashed", function()
    if not implemented("process") then return end
    no_leak(function()
      local p = new_pipeline({ backend = "process", imports = { "os" } })
        :stage("exit", { entry = "run",
                         code = "import os\ndef run(x):\n    if x == 2:\n        os._exit(3)\n    return x\n" })
      local outs, errs = p:map({ 1, 2, 3, 4 }, { workers = 1 })
      assert.are.equal("crashed", errs[2].kind)
      assert.are.equal("exit", errs[2].stage)
      assert.are.same({ 1, nil, 3, 4 }, { outs[1], outs[2], outs[3], outs[4] })
    end)
  end)
end)

describe("invalid options", function()
  local function kind_of(fn, ...) return err_of(fn, ...).kind end
  local function code_stage(extra)
    local t = { code = "def run(x):\n    return x\n", entry = "run" }
    for k, v in pairs(extra or {}) do t[k] = v end
    return t
  end

  it("are refused by pipeline", function()
    assert.are.equal("invalid_argument", kind_of(new_pipeline, { workers = 2 }))
    assert.are.equal("invalid_argument", kind_of(new_pipeline, { call = "len" }))
    assert.are.equal("invalid_argument", kind_of(new_pipeline, "subinterpreter"))
    assert.are.equal("invalid_argument", kind_of(new_pipeline, { backend = "vm" }))
    assert.are.equal("invalid_argument", kind_of(new_pipeline, { imports = "json" }))
    assert.are.equal("invalid_argument", kind_of(new_pipeline, { imports = { 1 } }))
    assert.are.equal("invalid_argument", kind_of(new_pipeline, { limits = 5 }))
    assert.are.equal("invalid_argument", kind_of(new_pipeline, { limits = { speed = 1 } }))
    assert.are.equal("policy", kind_of(new_pipeline, { policy = "no-such-policy" }))
  end)

  it("are refused by stage", function()
    local p = new_pipeline():stage("a", { call = "len" })
    local function stage(name, opts) return p:stage(name, opts) end
    assert.are.equal("invalid_argument", kind_of(stage, "a", { call = "len" }))
    assert.are.equal("invalid_argument", kind_of(stage, "", { call = "len" }))
    assert.are.equal("invalid_argument", kind_of(stage, 1, { call = "len" }))
    assert.are.equal("invalid_argument", kind_of(stage, "b"))
    assert.are.equal("invalid_argument", kind_of(stage, "b", {}))
    assert.are.equal("invalid_argument", kind_of(stage, "b", { call = "len", code = "x = 1" }))
    assert.are.equal("invalid_argument", kind_of(stage, "b", { code = "x = 1" }))
    assert.are.equal("invalid_argument", kind_of(stage, "b", { call = "len", entry = "len" }))
    assert.are.equal("invalid_argument", kind_of(stage, "b", { call = "math..sqrt" }))
    assert.are.equal("invalid_argument", kind_of(stage, "b", { call = "1x" }))
    assert.are.equal("invalid_argument", kind_of(stage, "b", { call = 42 }))
    assert.are.equal("invalid_argument", kind_of(stage, "b", code_stage({ entry = "not a name" })))
    assert.are.equal("invalid_argument", kind_of(stage, "b", code_stage({ code = 1 })))
    assert.are.equal("invalid_argument", kind_of(stage, "b", code_stage({ workers = 2 })))
    assert.are.equal("invalid_argument", kind_of(stage, "b", code_stage({ name = "cellname" })))
    assert.are.equal("invalid_argument", kind_of(stage, "b", code_stage({ backend = "vm" })))
    assert.are.equal("invalid_argument", kind_of(stage, "b", code_stage({ imports = { "a b" } })))
    assert.are.equal("invalid_argument", kind_of(stage, "b", code_stage({ capabilities = "kv" })))
    assert.are.equal("invalid_argument", kind_of(stage, "b", code_stage({ limits = { wall_ms = -1 } })))
    assert.are.equal("policy", kind_of(stage, "b", code_stage({ policy = "no-such-policy" })))
    -- nothing refused was added
    assert.are.equal(1, #p.stages)
  end)

  it("are refused by run and map", function()
    local empty = new_pipeline()
    assert.are.equal("invalid_argument", kind_of(empty.run, empty, 1))
    assert.are.equal("invalid_argument", kind_of(empty.map, empty, { 1 }))
    local p = new_pipeline():stage("len", { call = "len" })
    assert.are.equal("invalid_argument", kind_of(p.map, p, "abc"))
    assert.are.equal("invalid_argument", kind_of(p.map, p, { 1, nil, 3 }))
    assert.are.equal("invalid_argument", kind_of(p.map, p, { a = 1 }))
    for _, w in ipairs({ 0, -1, 1.5, "2", true }) do
      assert.are.equal("invalid_argument", kind_of(p.map, p, { "a" }, { workers = w }))
    end
    assert.are.equal("invalid_argument", kind_of(p.map, p, { "a" }, { on_progress = "yes" }))
    assert.are.equal("invalid_argument", kind_of(p.map, p, { "a" }, { threads = 2 }))
    assert.are.equal("invalid_argument", kind_of(p.map, p, { "a" }, 2))
  end)

  it("are refused by wrap", function()
    assert.are.equal("invalid_argument", kind_of(wrap, nil))
    assert.are.equal("invalid_argument", kind_of(wrap, "math.sqrt()"))
    assert.are.equal("invalid_argument", kind_of(wrap, "len", { name = "x" }))
    assert.are.equal("invalid_argument", kind_of(wrap, "len", { reuse = "yes" }))
    assert.are.equal("invalid_argument", kind_of(wrap, "len", { code = 1 }))
    assert.are.equal("invalid_argument", kind_of(wrap, "len", { backend = "vm" }))
    assert.are.equal("invalid_argument", kind_of(wrap, "len", { wall_ms = 1000 }))
    assert.are.equal("invalid_argument", kind_of(wrap, "len", "reuse"))
    assert.are.equal("policy", kind_of(wrap, "len", { policy = "no-such-policy" }))
  end)
end)
