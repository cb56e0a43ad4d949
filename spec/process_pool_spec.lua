-- The process pool (issue 12): workers forked ahead by the zygote, past
-- every confinement step no policy decides, take their own policy when
-- spawn takes them. A pooled cell carries every layer of its own policy
-- and nothing of another's; the pool refills, can be turned off, and no
-- pooled worker outlives sandbox.shutdown() or its host.
local sandbox = require "isolate"
local core = require "isolate.core"
local hk = require "hostkill"
local support = require "support"
local err_of = support.err_of

local has_process = false
for _, b in ipairs(sandbox.IMPLEMENTED) do has_process = has_process or b == "process" end
if not has_process then
  print("# process_pool_spec: skipped, no process backend here")
  return
end

local SELF = tonumber(io.open("/proc/self/stat"):read("l"):match("^%d+"))
local WAIT_S = 20 -- only ever a bound on waiting for readiness, never asserted

local function pool() return sandbox.pool().process end

-- Wait until the pool holds k ready workers (a process cell spawned first
-- wakes it); the pool's count then.
local function filled(k)
  sandbox.configure({ process_pool = k })
  if pool().ready < k then
    local sb <close> = sandbox.spawn({ backend = "process" })
  end
  hk.within(WAIT_S, function() return pool().ready >= k end)
  return pool().ready
end

-- Spawn from a full pool; fails the spec if the cell did not come from it.
local function pooled(opts)
  assert.are.equal(2, filled(2))
  local before = pool().taken
  opts.backend = "process"
  local sb = sandbox.spawn(opts)
  assert.are.equal(before + 1, pool().taken, "not from the pool")
  return sb
end

-- The real os module and libc, past every Python-level guard (as in
-- process_spec): what is refused below is the kernel's refusal.
local ESCAPE = [[
real_os = [c for c in ().__class__.__base__.__subclasses__()
           if c.__name__ == '_wrap_close'][0].__init__.__globals__
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
def try_open(path):
    fd = libc.open(path.encode(), 0)
    err = ctypes.get_errno()
    if fd >= 0:
        libc.close(fd)
    return [fd >= 0, fd < 0 and err or 0]
def try_connect(port):
    s = socket.socket()
    addr = (ctypes.c_ubyte * 16)(2, 0, port >> 8, port & 255, 127, 0, 0, 1)
    rc = libc.connect(s.fileno(), addr, 16)
    err = ctypes.get_errno()
    s.close()
    return [rc, err]
]]

-- A cgroup v2 path of pid, from the host's side.
local function cgroup_of(pid)
  local f = io.open("/proc/" .. pid .. "/cgroup")
  local text = f and f:read("a") or ""
  if f then f:close() end
  return text:match("0::([^\n]*)")
end

describe("a pooled process cell", function()
  local files, cells = {}, {}

  -- Two policies that differ in every layer: a file each may read, a port
  -- each may connect to, a system call each denies.
  local POLICY = {
    a = { port = 9, deny = "getcwd" },
    b = { port = 13, deny = "getpriority" },
  }

  setup(function()
    for name in pairs(POLICY) do files[name] = support.write_temp(name) end
    for name, p in pairs(POLICY) do
      cells[name] = pooled({
        imports = { "ctypes", "socket", "os" },
        policy = {
          fs = { { read = files[name] } },
          net = { { connect = "127.0.0.1:" .. p.port } },
          syscalls = { deny = { p.deny } },
        },
      })
      cells[name]:exec(ESCAPE)
    end
  end)
  teardown(function()
    for _, sb in pairs(cells) do sb:close() end
    for _, f in pairs(files) do os.remove(f) end
  end)

  local function other(name) return name == "a" and "b" or "a" end

  for _, name in ipairs({ "a", "b" }) do
    it(name .. ": reads its own file, never the other's (Landlock)", function()
      local sb = cells[name]
      sb:exec(string.format("post([try_open(%q), try_open(%q)])", files[name], files[other(name)]))
      assert.are.same({ { true, 0 }, { false, 13 } }, sb:recv(5)) -- EACCES
    end)

    it(name .. ": connects to its own port, never the other's (BPF / Landlock)", function()
      local sb = cells[name]
      sb:exec(string.format("post([try_connect(%d), try_connect(%d)])",
                            POLICY[name].port, POLICY[other(name)].port))
      local r = sb:recv(5)
      assert.are.equal(111, r[1][2]) -- allowed: nothing listens, ECONNREFUSED
      local bpf = support.row(sb, "bpf")
      assert.are.same({ -1, bpf and bpf.state == "active" and 1 or 13 }, r[2])
    end)

    it(name .. ": has a cgroup of its own, guarded by its own rules", function()
      local sb = cells[name]
      sb:exec("import os\npost(os.getpid())")
      local mine = cgroup_of(sb:recv(5))
      cells[other(name)]:exec("import os\npost(os.getpid())")
      local theirs = cgroup_of(cells[other(name)]:recv(5))
      assert.is_truthy(mine)
      assert.are_not.equal(mine, theirs)
      assert.are.equal("active", support.row(sb, "cgroup").state)
      assert.is_truthy(mine:find("/cells-" .. SELF .. "/", 1, true))
    end)

    it(name .. ": reports every kernel layer active", function()
      for _, layer in ipairs({ "close_fds", "session", "environment", "rlimits", "cgroup",
                               "capabilities", "no_new_privs", "landlock_fs", "seccomp" }) do
        local row = support.row(cells[name], layer)
        assert.is_truthy(row, layer)
        if layer == "capabilities" and row.state == "not needed" then
          row.state = "active" -- a host without capabilities has none to drop
        end
        assert.are.equal("active", row.state, layer)
      end
    end)
  end

  -- last: a denied system call ends the cell
  for _, name in ipairs({ "a", "b" }) do
    it(name .. ": may make the other's denied call; its own kills it (seccomp)", function()
      local sb = cells[name]
      local theirs, mine = POLICY[other(name)].deny, POLICY[name].deny
      local call = { getcwd = "libc.getcwd(ctypes.create_string_buffer(256), 256) != 0",
                     getpriority = "libc.getpriority(0, 0) >= -20" }
      sb:exec("post(" .. call[theirs] .. ")")
      assert.is_true(sb:recv(5))
      local e = err_of(sb.exec, sb, "post(" .. call[mine] .. ")")
      assert.are.equal("crashed", e.kind)
      assert.is_false(sb:is_open())
    end)
  end
end)

describe("the process pool", function()
  after_each(function() sandbox.configure({ process_pool = 2 }) end)

  it("hands out more cells than it holds, one after another, and refills", function()
    assert.are.equal(2, filled(2))
    local before = pool().taken
    local cells = {}
    for i = 1, 5 do
      cells[i] = sandbox.spawn({ backend = "process" })
      cells[i]:exec("post(" .. i .. ")")
    end
    for i = 1, 5 do
      assert.are.equal(i, cells[i]:recv(5))
      cells[i]:close()
    end
    assert.is_true(pool().taken - before >= 2)
    hk.within(WAIT_S, function() return pool().ready >= 2 end)
    assert.are.equal(2, pool().ready)
  end)

  it("turned off (0) holds nothing and spawn works cold", function()
    filled(2)
    sandbox.configure({ process_pool = 0 })
    assert.are.same({ ready = 0, target = 0 }, { ready = pool().ready, target = pool().target })
    local before = pool().taken
    for i = 1, 3 do
      local sb <close> = sandbox.spawn({ backend = "process" })
      sb:exec("post(" .. i .. ")")
      assert.are.equal(i, sb:recv(5))
    end
    assert.are.equal(before, pool().taken)
    assert.are.equal(0, pool().ready)
  end)

  it("refuses a size that is not a small non-negative integer", function()
    for _, bad in ipairs({ -1, 1.5, "2", true, 65 }) do
      assert.are.equal("invalid_argument",
                       err_of(sandbox.configure, { process_pool = bad }).kind, tostring(bad))
    end
  end)

  it("leaves no worker after sandbox.shutdown(), and starts again after", function()
    assert.are.equal(3, filled(3))
    local recorded = hk.record(hk.guests(SELF))
    assert.is_true(#hk.guests(SELF) >= 4) -- the zygote and three waiting workers
    sandbox.shutdown()
    hk.within(WAIT_S, function()
      return #hk.guests(SELF) == 0 and next(hk.remaining(recorded)) == nil
    end)
    assert.are.same({}, hk.guests(SELF))
    assert.are.same({}, hk.remaining(recorded))
    assert.are.equal(0, pool().ready)
    local sb <close> = sandbox.spawn({ backend = "process" })
    sb:exec("post(1)")
    assert.are.equal(1, sb:recv(5))
  end)

  -- The refill starts 5 ms after the last spawn and takes a fork and a
  -- worker's prefault: shutdown() lands in the middle of one, again and
  -- again. The refill must not make the cells dir again behind it.
  it("leaves no cells cgroup after a shutdown() that lands on a refill", function()
    if not hk.cgroup_root() then return print("SKIP: no cgroup v2 root here") end
    sandbox.configure({ process_pool = 2 })
    for _, wait_s in ipairs({ 0.004, 0.006, 0.008, 0.012, 0.02, 0.03 }) do
      sandbox.spawn({ backend = "process" }):close() -- wakes the pool
      core.sleep(wait_s)
      sandbox.shutdown()
      core.sleep(0.2) -- what was in flight has ended by now
      local left = {}
      for _, d in ipairs(hk.cgroup_dirs(SELF)) do
        if d ~= "host-" .. SELF then left[#left + 1] = d end -- (cell threads')
      end
      assert.are.same({}, left)
      assert.are.equal(0, pool().ready)
    end
    local sb <close> = sandbox.spawn({ backend = "process" }) -- and after it
    assert.are.equal("active", support.row(sb, "cgroup").state)
  end)
end)

describe("a host with a full process pool", function()
  if not hk.available() then
    return print("SKIP: needs ISOLATE_HOST, /usr/bin/python3 and pgrep")
  end

  local SCRIPT = [[
local how, go = ...
local sleep = require("isolate.core").sleep
sandbox.configure{ process_pool = 3 }
local sb = sandbox.spawn{ backend = "process" }
sb:exec("post(1)")
sb:recv(5)
local t0 = require("isolate.core").now()
while sandbox.pool().process.ready < 3 and require("isolate.core").now() - t0 < 20 do
  sleep(0.005)
end
io.stdout:write(io.open("/proc/self/stat"):read("l"):match("^%d+"), "\n")
io.stdout:flush()
while not io.open(go) do sleep(0.005) end
if how == "end" then return end
while true do sleep(0.2) end
]]

  for _, how in ipairs({ "end", "kill" }) do
    it((how == "end" and "that ends" or "that is SIGKILLed") .. " leaves no worker", function()
      local script, go = hk.write_script(SCRIPT), os.tmpname()
      os.remove(go)
      local h, out = hk.start(script, how, go)
      assert.is_truthy(h, out)
      -- the zygote, the cell and three pool workers
      hk.within(WAIT_S, function() return #hk.guests(h.pid) >= 5 end)
      assert.is_true(#hk.guests(h.pid) >= 5)
      local recorded = hk.record(hk.guests(h.pid))
      io.open(go, "w"):close()
      if how == "kill" then os.execute("kill -KILL " .. h.pid) end
      local res = hk.finish(h)
      os.remove(script)
      os.remove(go)
      hk.within(WAIT_S, function()
        return #hk.guests(h.pid) == 0 and next(hk.remaining(recorded)) == nil
      end)
      assert.are.same({}, hk.guests(h.pid))
      assert.are.same({}, hk.remaining(recorded))
      assert.are.equal(0, res.left)
    end)
  end
end)
