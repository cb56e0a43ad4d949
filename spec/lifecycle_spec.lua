-- Cells never outlive their host (issue 10): however the luaisolate host
-- ends, no luaisolate-cell process of it remains within 1 s, nothing of it
-- is left a zombie, and what a killed host left in the cgroup tree is gone
-- after the next host start. Also: sandbox.shutdown() and the end of a Lua
-- app that uses require "isolate", doctor --clean, and what a
-- sub-interpreter cell could start.
local sandbox = require "isolate"
local core = require "isolate.core"
local hk = require "hostkill"
local support = require "support"

local BOUND_S = 1.0 -- issue 10: every guest process gone within 1 s

if not hk.available() then
  print("# lifecycle_spec: skipped, needs ISOLATE_HOST, /usr/bin/python3 and pgrep")
  return
end
local has_process = false
for _, b in ipairs(sandbox.IMPLEMENTED) do has_process = has_process or b == "process" end

-- Three process cells (a Python loop, one long C call, one abandoned: its
-- handle dropped) and a spinning sub-interpreter cell; then the pid, and
-- the way this host ends.
local SCRIPT = [[
local how, go = ... -- go: a file; the script ends as `how` says once it exists
local loop = sandbox.spawn{ backend = "process" }
loop:start_exec("while True: pass")
local c_call = sandbox.spawn{ backend = "process" }
c_call:start_exec("sum(range(10**13))")
do
  local abandoned = sandbox.spawn{ backend = "process" }
  abandoned:start_exec("while True: pass")
end
local sub = sandbox.spawn{}
sub:start_exec("while True: pass")
io.stdout:write(io.open("/proc/self/stat"):read("l"):match("^%d+"), "\n")
io.stdout:flush()
while go and not io.open(go) do require("isolate.core").sleep(0.005) end
if how == "exit" then os.exit(3) end
if how == "error" then error("the script fails") end
if how == "end" then return end
while true do loop:result(0.2) end
]]

local SIGNALS = { HUP = 1, INT = 2, ABRT = 6, KILL = 9, SEGV = 11, TERM = 15 }
local times = {}

local function wait_started(pid)
  -- the zygote and 3 cells (the script printed after spawning them)
  return hk.within(10, function() return #hk.guests(pid) >= 3 end)
end

-- End a host the way `how` says; returns what the launcher saw, the
-- recorded guest processes, and the seconds from the signal until none
-- of them ran (nil when they outlived the bound).
local function run_and_end(how, signals)
  local script, go = hk.write_script(SCRIPT), os.tmpname()
  os.remove(go)
  local h, out = hk.start(script, how, go)
  assert.is_truthy(h, out)
  assert.is_truthy(wait_started(h.pid), "the guests did not start")
  local recorded = hk.record(hk.guests(h.pid))
  io.open(go, "w"):close()
  for _, sig in ipairs(signals or {}) do
    os.execute("kill -s " .. sig .. " " .. h.pid)
  end
  local gone = hk.within(BOUND_S + 5, function()
    return #hk.guests(h.pid) == 0 and next(hk.remaining(recorded)) == nil
  end)
  local res = hk.finish(h)
  os.remove(script)
  os.remove(go)
  res.recorded, res.pid = recorded, h.pid
  res.what = how .. (signals and (" " .. table.concat(signals, "+")) or "")
  res.after_signal = signals and gone or nil
  return res
end

local function assert_nothing_left(res)
  local n = 0
  for _ in pairs(res.recorded) do n = n + 1 end
  -- (the abandoned cell may have been collected, and so killed, already)
  assert.is_true(n >= 3, "zygote and process cells seen")
  assert.are.same({}, hk.guests(res.pid))
  assert.are.same({}, hk.remaining(res.recorded)) -- neither running nor zombie
  assert.are.equal(0, res.left)
  assert.is_true(res.gone_s <= BOUND_S, "gone after " .. tostring(res.gone_s))
  times[#times + 1] = res.after_signal or res.gone_s
  print(string.format("\n# %s: host exit -> last guest reaped %.1f ms%s", res.what,
                      res.gone_s * 1000, res.after_signal and string.format(
                        ", signal -> no guest seen %.1f ms", res.after_signal * 1000) or ""))
end

describe("a host that ends", function()
  if not has_process then return print("SKIP: no process backend here") end

  for _, sig in ipairs({ "TERM", "INT", "HUP" }) do
    it("by SIG" .. sig .. " cleans up, exits 128+signal, leaves no guest", function()
      local res = run_and_end("wait", { sig })
      assert.are.equal("exit", res.how)
      assert.are.equal(128 + SIGNALS[sig], res.code)
      assert.is_truthy(res.after_signal, "guests outlived the bound")
      assert.is_true(res.after_signal <= BOUND_S)
      assert_nothing_left(res)
      assert.are.same({}, hk.cgroup_dirs(res.pid)) -- removed by the host itself
    end)
  end

  it("by a second SIGINT during the clean-up still leaves no guest", function()
    local res = run_and_end("wait", { "INT", "INT" })
    -- the first may have finished (130) or the second ended it at once
    assert.is_true((res.how == "exit" and res.code == 130) or
                   (res.how == "signal" and res.code == 2), res.how .. res.code)
    assert_nothing_left(res)
  end)

  for _, sig in ipairs({ "KILL", "SEGV", "ABRT" }) do
    it("by SIG" .. sig .. " (no handler runs) leaves no guest; the next host reaps its cgroups", function()
      local res = run_and_end("wait", { sig })
      local asan_report = core.info().sanitized and sig ~= "KILL" and res.how == "exit"
      if asan_report then
        -- ASan may catch the crash itself: it writes its report (which
        -- takes a while), then exits non-zero; the bound counts from then
        assert.are_not.equal(0, res.code)
      else
        assert.are.equal("signal", res.how)
        assert.are.equal(SIGNALS[sig], res.code)
        assert.is_truthy(res.after_signal, "guests outlived the bound")
        assert.is_true(res.after_signal <= BOUND_S)
      end
      assert_nothing_left(res)
      -- host-<pid> stays (nobody ran to remove it) until the next host start
      local script = hk.write_script("print(io.open('/proc/self/stat'):read('l'):match('^%d+'))")
      local next_host = hk.start(script)
      hk.finish(next_host)
      os.remove(script)
      assert.are.same({}, hk.cgroup_dirs(res.pid))
    end)
  end

  for _, how in ipairs({ "exit", "error", "end" }) do
    it("by " .. (how == "exit" and "os.exit" or how == "error" and "an error" or "its script ending")
       .. " leaves no guest", function()
      local res = run_and_end(how)
      assert.are.equal("exit", res.how)
      assert.are.equal(how == "exit" and 3 or how == "error" and 1 or 0, res.code)
      assert_nothing_left(res)
      assert.are.same({}, hk.cgroup_dirs(res.pid))
    end)
  end

  it("prints the times", function()
    if #times == 0 then return end
    table.sort(times)
    print(string.format("\n# host end -> no guest process: median %.1f ms, max %.1f ms over %d runs",
                        hk.median(times) * 1000, times[#times] * 1000, #times))
  end)
end)

describe("stale state of dead hosts", function()
  local root = hk.cgroup_root()

  -- A directory as a dead host leaves it: a pid that cannot exist now.
  local function dead_pid()
    local f = io.open("/proc/sys/kernel/pid_max")
    local max = tonumber(f:read("l"))
    f:close()
    for pid = max - 1, max - 1000, -1 do
      if not hk.identity(pid) then return pid end
    end
  end

  local function fake(names)
    for _, name in ipairs(names) do
      assert.is_true(os.execute("mkdir -p " .. root .. "/" .. name))
    end
  end

  local function exists(path) return os.execute("test -d " .. path) == true end

  it("doctor --clean kills and removes them, lists them, and spares the living", function()
    if not root or not exists(root) then return print("SKIP: no luaisolate cgroup root") end
    local dead = dead_pid()
    local me = tonumber(io.open("/proc/self/stat"):read("l"):match("^%d+"))
    fake({ "host-" .. dead, "host-" .. dead .. "/w-" .. dead .. "-0", "cells-" .. dead,
           "cells-" .. dead .. "/cell-1-" .. dead .. "-0", "cell-9-" .. dead .. "-4",
           "cells-" .. me .. "-spare", "spare-" .. me .. "-0" })
    -- a process in the dead host's cell cgroup, as a surviving guest
    local p = io.popen("sh -c 'echo $$ > " .. root .. "/cells-" .. dead
                       .. "/cell-1-" .. dead .. "-0/cgroup.procs && echo in && exec sleep 60' 2>/dev/null")
    assert.are.equal("in", p:read("l"))
    local code, out = support.run(hk.HOST, "doctor", "--clean")
    p:close() -- returns once the sleep was killed
    assert.are.equal(0, code)
    local listed = {}
    for path in out:gmatch("removed ([^\n]*)\n") do listed[path:match("[^/]*$")] = true end
    -- (host-<pid> may go to an older host's own reaper first: other suites
    -- run on this machine; no older one knows the other two)
    assert.is_true(listed["cells-" .. dead])
    assert.is_true(listed["cell-9-" .. dead .. "-4"])
    assert.are.same({}, hk.cgroup_dirs(dead))
    -- a live process's directories are never touched
    assert.is_true(exists(root .. "/spare-" .. me .. "-0"))
    assert.is_true(exists(root .. "/cells-" .. me .. "-spare"))
    os.execute("rmdir " .. root .. "/spare-" .. me .. "-0 " .. root .. "/cells-" .. me .. "-spare")
  end)

  it("doctor --clean --json lists what it removed", function()
    if not root or not exists(root) then return print("SKIP: no luaisolate cgroup root") end
    local dead = dead_pid()
    fake({ "cells-" .. dead })
    local code, out = support.run(hk.HOST, "doctor", "--clean", "--json")
    assert.are.equal(0, code)
    assert.is_truthy(out:match('^{"removed":%[.*"' .. root:gsub("%p", "%%%0") .. "/cells%-" .. dead .. '".*%]}'))
  end)

  it("a host start removes them by itself", function()
    if not root or not exists(root) then return print("SKIP: no luaisolate cgroup root") end
    local dead = dead_pid()
    fake({ "host-" .. dead, "cells-" .. dead, "cell-2-" .. dead .. "-7" })
    local script = hk.write_script("print(io.open('/proc/self/stat'):read('l'):match('^%d+'))")
    hk.finish(assert(hk.start(script)))
    os.remove(script)
    assert.are.same({}, hk.cgroup_dirs(dead))
  end)
end)

describe("a Lua app (require 'isolate')", function()
  if not has_process then return print("SKIP: no process backend here") end
  local self_pid = tonumber(io.open("/proc/self/stat"):read("l"):match("^%d+"))

  it("sandbox.shutdown() kills every cell at once; spawning works again after", function()
    local a = sandbox.spawn({ backend = "process" })
    a:start_exec("while True: pass")
    local b = sandbox.spawn({ backend = "process" })
    b:start_exec("sum(range(10**13))")
    local s = sandbox.spawn({})
    local recorded = hk.record(hk.guests(self_pid))
    assert.is_true(#hk.guests(self_pid) >= 3)
    sandbox.shutdown()
    assert.is_false(a:is_open())
    assert.is_false(b:is_open())
    assert.is_false(s:is_open())
    assert.is_truthy(hk.within(BOUND_S, function()
      return #hk.guests(self_pid) == 0 and next(hk.remaining(recorded)) == nil
    end))
    for _, dir in ipairs(hk.cgroup_dirs(self_pid)) do
      -- this process's own host-<pid> (thread cgroups) stays until it exits
      assert.are.equal("host-" .. self_pid, dir)
    end
    local c <close> = sandbox.spawn({ backend = "process" })
    c:exec("post(1)")
    assert.are.equal(1, c:recv(1))
  end)

  -- A plain lua5.4 running the module; `how` ends it.
  local APP = [[
local sandbox = require "isolate"
local how, go = ...
local sb = sandbox.spawn{ backend = "process" }
sb:start_exec("while True: pass")
io.stdout:write(io.open("/proc/self/stat"):read("l"):match("^%d+"), "\n")
io.stdout:flush()
while not io.open(go) do require("isolate.core").sleep(0.005) end
if how == "exit" then os.exit(0) end
if how == "close" then os.exit(0, true) end
while true do sb:result(0.2) end
]]

  for _, how in ipairs({ "exit", "close", "kill" }) do
    it("leaves no guest when it " .. (how == "kill" and "is SIGKILLed" or
       how == "exit" and "calls os.exit" or "closes its state"), function()
      local script, go = hk.write_script(APP), os.tmpname()
      os.remove(go)
      -- (a sanitizer build's module loads only into its own host)
      -- (plain lua5.4 gets this process's module paths: busted's .busted
      -- sets them in the process, not in the environment)
      local lua = core.info().sanitized and (hk.HOST .. " run")
        or string.format("env LUA_PATH=%s LUA_CPATH=%s lua5.4", support.quote(package.path),
                         support.quote(package.cpath))
      local p = io.popen("exec " .. lua .. " " .. script .. " " .. how .. " " .. go, "r")
      local pid = tonumber(p:read("l"))
      assert.is_truthy(pid)
      assert.is_truthy(hk.within(10, function() return #hk.guests(pid) >= 2 end))
      local recorded = hk.record(hk.guests(pid))
      if how == "kill" then os.execute("kill -KILL " .. pid) end
      io.open(go, "w"):close()
      p:close()
      os.remove(script)
      os.remove(go)
      assert.is_truthy(hk.within(BOUND_S, function() return #hk.guests(pid) == 0 end))
      -- orphans go to this machine's init, which reaps them in its own time
      hk.within(5, function() return next(hk.remaining(recorded)) == nil end)
      assert.are.same({}, hk.remaining(recorded))
    end)
  end
end)

describe("what a cell could start", function()
  it("a sub-interpreter cell can start no process (guard, and seccomp below it)", function()
    local sb <close> = sandbox.spawn({ imports = { "os", "subprocess", "posix" } })
    local self_pid = io.open("/proc/self/stat"):read("l"):match("^%d+")
    local function kids()
      local p = io.popen("ps -o pid=,stat= --ppid " .. self_pid)
      local n = 0
      for line in p:lines() do
        if not line:match("Z") then n = n + 1 end
      end
      p:close()
      return n - 1 -- ps itself
    end
    local before = kids()
    for _, code in ipairs({
      "import os\nos.fork()",
      "import posix\nposix.fork()",
      "import os\nos.posix_spawn('/bin/sleep', ['sleep', '30'], {})",
      "import subprocess\nsubprocess.Popen(['/bin/sleep', '30'])",
      "import os\nos.system('sleep 30')",
    }) do
      local e = support.err_of(sb.exec, sb, code)
      assert.are.equal("guest", e.kind)
      -- the guard's refusal, or CPython's own in an isolated interpreter
      -- (3.13, allow_fork = allow_exec = 0)
      assert.is_truthy(e.python == "PermissionError" or e.python == "RuntimeError", e.python)
    end
    assert.are.equal(before, kids())
    for _, row in ipairs(sb:confinement()) do
      if row.layer == "seccomp" and row.state ~= "active" then
        print("NOTE: seccomp is " .. row.state .. " here: " .. row.detail)
      end
    end
  end)

  it("a process cell cannot fork either, unless limits.processes lets it", function()
    if not has_process then return print("SKIP: no process backend here") end
    local sb <close> = sandbox.spawn({ backend = "process", imports = { "os" } })
    local e = support.err_of(sb.exec, sb, "import os\nos.fork()")
    assert.are.equal("guest", e.kind)
    local ok, err = pcall(sandbox.spawn, { backend = "process", limits = { processes = 4 } })
    if not ok then
      -- processes need the pids controller: a child could then run, and is
      -- killed with its cell's cgroup (cells-<host pid>/...)
      assert.are.equal("not_implemented", err.kind)
      print("SKIP: limits.processes: " .. err.message)
    else
      err:close()
    end
  end)
end)
