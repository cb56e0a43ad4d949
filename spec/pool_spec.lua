-- The warm pool: sub-interpreter cells created ahead, taken by spawn,
-- refilled in the background, never reused once guest code ran.
local sandbox = require "isolate"
local support = require "support"
local err_of = support.err_of
local sleep = require("isolate.core").sleep

local function wait_ready(n)
  for _ = 1, 2000 do
    if sandbox.pool().ready == n then return end
    sleep(0.005)
  end
  error("the pool never reached " .. n)
end

describe("the warm pool", function()
  after_each(function()
    sandbox.configure({ warm_pool = 0 })
  end)

  it("checks sandbox.configure's options", function()
    for _, bad in ipairs({ { warm_pool = -1 }, { warm_pool = 1.5 }, { warm_pool = "2" },
                           { warm_pol = 1 }, { warm_pool = 100000 }, { mode = "strict" },
                           { thread_cgroups = 1 } }) do
      assert.are.equal("invalid_argument", err_of(sandbox.configure, bad).kind)
    end
    assert.are.equal("invalid_argument", err_of(sandbox.configure, 3).kind)
    assert.are.equal("invalid_argument", err_of(sandbox.configure, { warm_pool = 1, mode = "x" }).kind)
    assert.are.equal(0, sandbox.pool().target) -- nothing half-applied
  end)

  it("fills up, hands cells to spawn, and refills", function()
    sandbox.configure({ warm_pool = 2 })
    wait_ready(2)
    local taken = sandbox.pool().taken
    local sb <close> = sandbox.spawn({ imports = { "math" }, name = "warm" })
    assert.are.equal(taken + 1, sandbox.pool().taken) -- it came from the pool
    sb:exec("import math; post(math.sqrt(16))")
    assert.are.equal(4.0, sb:recv(1))
    -- the policy it was given applies: nothing else may be imported
    assert.are.equal("ImportError", err_of(sb.exec, sb, "import json").python)
    assert.are.equal("warm", sb.name)
    assert.are.equal(sb, sandbox.list().warm)
    wait_ready(2)
  end)

  it("never hands out a cell that ran guest code", function()
    sandbox.configure({ warm_pool = 2 })
    for i = 1, 6 do
      wait_ready(2)
      local sb <close> = sandbox.spawn({})
      assert.are.equal("NameError", err_of(sb.exec, sb, "leftover").python, "round " .. i)
      sb:exec("leftover = 1")
    end
  end)

  -- A warm cell's thread waits in a threaded cgroup of its own (joining
  -- one is slow); spawn keeps it, and nothing is left once cells close.
  it("keeps warm cells in cgroups of their own, removed with them", function()
    local ok = pcall(sandbox.configure, { thread_cgroups = true })
    if not ok or not sandbox.info().thread_cgroups then
      return print("SKIP: no thread cgroups on this host")
    end
    local mount
    for line in io.lines("/proc/self/mountinfo") do
      mount = mount or line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- cgroup2 ")
    end
    local own = io.open("/proc/self/cgroup"):read("a"):match("0::(%S+)")
    local host = mount .. own
    local function pool_dirs()
      local n = 0
      for name in io.popen("ls " .. host):lines() do
        if name:match("^pool%-") then n = n + 1 end
      end
      return n
    end
    -- A cgroup the kernel still holds busy is removed a moment later.
    local function settled(n)
      local deadline = require("isolate.core").now() + 2
      while pool_dirs() ~= n and require("isolate.core").now() < deadline do
        sleep(0.01)
      end
      return pool_dirs()
    end
    collectgarbage() -- earlier cells (a host has thread cgroups on for them)
    collectgarbage()
    local before = settled(0) -- an earlier pool's cgroups may still be going
    sandbox.configure({ warm_pool = 2 })
    wait_ready(2)
    assert.are.equal(before + 2, pool_dirs())
    local sb = sandbox.spawn({ imports = { "os" }, policy = { fs = { { read = "/proc" } } } })
    sb:exec("post(open('/proc/thread-self/cgroup').read().strip())")
    assert.is_truthy(sb:recv(5):find(own .. "/pool-", 1, true))
    for _, r in ipairs(sb:confinement()) do
      if r.layer == "cgroup" then assert.are.equal("active", r.state) end
    end
    wait_ready(2)
    sandbox.configure({ warm_pool = 0 })
    assert.are.equal(before + 1, settled(before + 1)) -- the spawned cell's
    sb:close()
    sb = nil -- luacheck: ignore (the cgroup goes with the cell's last reference)
    collectgarbage()
    collectgarbage()
    assert.are.equal(before, settled(before))
  end)

  it("drains to zero", function()
    sandbox.configure({ warm_pool = 3 })
    wait_ready(3)
    sandbox.configure({ warm_pool = 0 })
    assert.are.equal(0, sandbox.pool().ready)
    assert.are.equal(0, sandbox.pool().target)
  end)
end)
