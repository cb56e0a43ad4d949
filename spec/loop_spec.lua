-- Embedding in an event loop: sandbox.fd(), sandbox.step(), exec_async,
-- call_async, on_post, cancel, close with requests in flight, limits that
-- fire while nobody blocks, and both adapters (isolate.luv, isolate.cqueues)
-- on both backends. Counts of callbacks, cells and fds, never times.
local sandbox = require "isolate"
local support = require "support"
local uv = require "luv"
local cqueues = require "cqueues"
local err_of = support.err_of

local boom_errors = 0
sandbox.on("log", function(ev)
  if ev.message == "boom" then boom_errors = boom_errors + 1; error("handler boom") end
end)
sandbox.capability("loopkv", function(action, payload) return action .. ":" .. payload end)

-- Run the luv loop, attached, until done() or 30 s (a guard, not an
-- assertion); errors out of step() are collected.
local function run_luv(done, errors)
  local watch = require("isolate.luv").attach(uv, {
    on_error = function(e) errors = errors or {}; errors[#errors + 1] = e end })
  local guard, check = uv.new_timer(), uv.new_check()
  guard:start(30000, 0, function() uv.stop() end)
  check:start(function() if done() then uv.stop() end end)
  if not done() then uv.run() end
  watch:detach(); guard:close(); check:close()
  uv.run("nowait") -- let the closes finish
  return errors
end

-- This process's open fds (the listing's own pipe counts in each figure).
local function open_fds()
  local n = 0
  local ls = io.popen(string.format("ls /proc/%d/fd", uv.os_getpid())) -- (a float under some builds)
  for _ in ls:lines() do n = n + 1 end
  ls:close()
  return n
end

-- open_fds() once the process pool is full again: a refill in flight
-- holds its new worker's fds, which are the pool's, not a request's.
local function settled_fds()
  local core = require "isolate.core"
  local t0 = core.now()
  while core.now() - t0 < 5 and sandbox.pool().process.ready < sandbox.pool().process.target do
    core.sleep(0.005)
  end
  return open_fds()
end

local function live_cells()
  local n = 0
  for _ in pairs(sandbox.list()) do n = n + 1 end
  return n
end

describe("sandbox.fd and sandbox.step", function()
  it("is one fd for the host, and a step with nothing to do does nothing", function()
    local fd = sandbox.fd()
    assert.is_true(math.type(fd) == "integer" and fd > 2)
    assert.are.equal(fd, sandbox.fd())
    local steps = sandbox.loop_stats().steps
    assert.are.equal(0, sandbox.step())
    assert.are.equal(0, sandbox.pending())
    assert.are.equal(steps + 1, sandbox.loop_stats().steps)
  end)

  it("checks the callbacks", function()
    local sb <close> = sandbox.spawn({})
    assert.are.equal("invalid_argument", err_of(sb.exec_async, sb, "x = 1").kind)
    assert.are.equal("invalid_argument", err_of(sb.call_async, sb, "f", 1, print).kind)
    assert.are.equal("invalid_argument", err_of(sb.on_post, sb, 3).kind)
  end)
end)

for _, backend in ipairs(support.backends()) do
  describe("async requests (" .. backend .. ")", function()
    local function spawn(limits)
      return sandbox.spawn({ backend = backend, imports = { "math" },
                             capabilities = { "loopkv" }, limits = limits })
    end

    it("calls each callback once, with the value, from step()", function()
      local sb <close> = spawn()
      local calls, got = 0, {}
      sb:call_async("math.sqrt", { 16 }, function(err, v)
        calls = calls + 1; got = { err, v }
      end)
      assert.are.equal(0, calls) -- not before a step
      run_luv(function() return calls > 0 end)
      assert.are.equal(1, calls)
      assert.is_nil(got[1])
      assert.are.equal(4.0, got[2])
      assert.are.equal(0, sandbox.step())
      assert.are.equal(1, calls)
      assert.are.equal(0, sandbox.pending())
    end)

    it("delivers posts in order before the result, and serves the broker", function()
      local sb <close> = spawn()
      local posted, result = {}, nil
      sb:on_post(function(v) posted[#posted + 1] = v end)
      sb:exec_async("for i in range(5): post(i)\npost(request('loopkv', 'get', 'k'))",
                    function(err) result = { err = err, posts = #posted } end)
      run_luv(function() return result ~= nil end)
      assert.is_nil(result.err)
      assert.are.equal(6, result.posts)
      assert.are.same({ 0, 1, 2, 3, 4, "get:k" }, posted)
      sb:on_post(nil)
    end)

    it("hands a guest error to the callback, and the cell stays usable", function()
      local sb <close> = spawn()
      local errs = {}
      sb:exec_async("raise ValueError('x')", function(err) errs[#errs + 1] = err end)
      run_luv(function() return #errs > 0 end)
      assert.are.equal("guest", errs[1].kind)
      assert.are.equal(3.0, sb:call("math.sqrt", 9)) -- the blocking API still works
    end)

    it("mixes with the blocking API on other cells", function()
      local a <close> = spawn()
      local b <close> = spawn()
      local v
      a:call_async("math.sqrt", { 25 }, function(_, x) v = x end)
      assert.are.equal(2.0, b:call("math.sqrt", 4))
      run_luv(function() return v ~= nil end)
      assert.are.equal(5.0, v)
    end)

    it("fails a request on a closed cell through its callback, once", function()
      local sb = spawn()
      sb:close()
      local errs = {}
      sb:exec_async("x = 1", function(err) errs[#errs + 1] = err end)
      assert.are.equal(1, sandbox.step())
      assert.are.equal(1, #errs)
      assert.are.equal("closed", errs[1].kind)
      assert.are.equal(0, sandbox.step())
    end)

    it("cancels a running request: kind cancelled", function()
      local sb <close> = spawn()
      local errs, h = {}, nil
      h = sb:exec_async("while True: pass", function(err) errs[#errs + 1] = err end)
      sandbox.step()
      assert.is_true(h:cancel())
      assert.is_false(h:cancel()) -- once
      run_luv(function() return #errs > 0 end)
      assert.are.equal(1, #errs)
      assert.are.equal("cancelled", errs[1].kind)
      assert.is_true(h.done)
      assert.is_false(h:cancel())
      if backend == "subinterpreter" then -- a process cell's worker is put down
        assert.are.equal(2.0, sb:call("math.sqrt", 4))
      end
    end)

    it("sb:cancel() interrupts a blocking request from a handler", function()
      local sb <close> = spawn()
      sandbox.capability("loopcancel", function(_, _, cell) cell:cancel(); return 1 end)
      local c <close> = sandbox.spawn({ backend = backend, capabilities = { "loopcancel" } })
      local err = err_of(c.exec, c, "request('loopcancel', 'x')\nwhile True: pass")
      assert.are.equal("cancelled", err.kind)
      assert.is_false(sb:cancel()) -- nothing runs there
    end)

    it("closing a cell with a request in flight calls its callback once, kind closed", function()
      local cells_before, fds_before = live_cells(), settled_fds()
      local errs = {}
      for i = 1, 4 do
        local sb = spawn()
        sb:exec_async("while True: pass", function(err) errs[#errs + 1] = err end)
        sandbox.step()
        if i % 2 == 0 then sb:kill() else sb:close() end
      end
      run_luv(function() return #errs == 4 end)
      assert.are.equal(4, #errs)
      for _, e in ipairs(errs) do assert.are.equal("closed", e.kind) end
      assert.are.equal(0, sandbox.step())
      assert.are.equal(4, #errs)
      assert.are.equal(0, sandbox.pending())
      assert.are.equal(cells_before, live_cells())
      collectgarbage(); collectgarbage()
      assert.is_true(settled_fds() <= fds_before)
    end)

    it("enforces wall_ms while nobody blocks", function()
      local sb <close> = spawn({ wall_ms = 300 })
      local errs, ticks = {}, 0
      local t = uv.new_timer()
      t:start(10, 10, function() ticks = ticks + 1 end)
      sb:exec_async("while True: pass", function(err) errs[#errs + 1] = err end)
      run_luv(function() return #errs > 0 end)
      t:close()
      assert.are.equal(1, #errs)
      assert.are.equal("timeout", errs[1].kind)
      assert.is_true(ticks > 0) -- the loop ran meanwhile
    end)

    it("enforces cpu_ms while nobody blocks", function()
      local sb <close> = spawn({ cpu_ms = 200 })
      local errs = {}
      sb:exec_async("while True: pass", function(err) errs[#errs + 1] = err end)
      run_luv(function() return #errs > 0 end)
      assert.are.equal(1, #errs)
      assert.are.equal("cpu", errs[1].kind)
    end)

    it("keeps no fd and no cell per request", function()
      local sb <close> = spawn()
      sandbox.fd()
      local fds_before, done = settled_fds(), 0
      local function again()
        sb:call_async("math.sqrt", { done }, function(err)
          assert(not err, err)
          done = done + 1
          if done < 20 then again() end
        end)
      end
      again()
      run_luv(function() return done == 20 end)
      assert.are.equal(20, done)
      assert.are.equal(fds_before, settled_fds())
      assert.are.equal(0, sandbox.pending())
    end)

    it("raises the first callback error from step() after running the others", function()
      local sb1 <close> = spawn()
      local sb2 <close> = spawn()
      local ran = 0
      sb1:exec_async("x = 1", function() ran = ran + 1; error({ which = 1 }) end)
      sb2:exec_async("x = 1", function() ran = ran + 1; error({ which = 2 }) end)
      local errors = run_luv(function() return ran == 2 end)
      assert.are.equal(2, ran)
      assert.is_true(#errors >= 1)
      local total = 0
      for _, e in ipairs(errors) do total = total + 1 + (e.more or 0) end
      assert.are.equal(2, total)
    end)

    it("reports an event handler's error from step(), and the request still completes", function()
      local sb <close> = spawn()
      local before, result = boom_errors, nil
      sb:call_async("math.sqrt", { 4 }, function(err, v) result = { err, v } end)
      sb:exec_async("x = 1", function() end) -- busy: its callback gets the refusal
      local errors = run_luv(function() return result ~= nil end)
      assert.are.equal(2.0, result[2])
      sb:exec_async("log('info', 'boom')", function() end)
      errors = run_luv(function() return boom_errors > before end, errors)
      assert.are.equal(before + 1, boom_errors)
      assert.is_true(#errors >= 1)
    end)

    it("runs on a cqueues controller", function()
      local sb <close> = spawn()
      local cq = cqueues.new()
      local watch = require("isolate.cqueues").attach(cq)
      local got
      cq:wrap(function()
        sb:call_async("math.sqrt", { 36 }, function(err, v) got = { err, v }; watch:detach() end)
      end)
      local ok, err = cq:loop(30)
      assert.is_true(ok, tostring(err))
      assert.are.same({ nil, 6.0 }, { got[1], got[2] })
    end)

    it("lets a callback error out of the cqueues controller", function()
      local sb <close> = spawn()
      local cq = cqueues.new()
      local watch = require("isolate.cqueues").attach(cq)
      sb:exec_async("x = 1", function() error("cb boom") end)
      local ok, err = cq:loop(30)
      assert.is_falsy(ok)
      assert.is_truthy(err)
      watch:detach()
    end)
  end)
end
