-- The process backend: limits and faults, the protocol, leaks, and what an
-- escaped guest still cannot do. These run for real (root, Landlock,
-- seccomp, cgroup v2).
local sandbox = require "isolate"
local support = require "support"
local err_of = support.err_of
local spawn = support.spawner("process")

local function dead(sb)
  assert.is_false(sb:is_open())
  assert.are.equal("closed", err_of(sb.exec, sb, "pass").kind)
end

-- exec that must kill the cell; returns the error.
local function fatal(sb, code, kind)
  local e = err_of(sb.exec, sb, code)
  assert.are.equal(kind, e.kind)
  dead(sb)
  return e
end

describe("process cells: limits and faults", function()
  it("kill the whole worker at wall_ms, kind timeout, cell closed", function()
    local sb = spawn({ limits = { wall_ms = 200 } })
    fatal(sb, "while True:\n    pass", "timeout")
  end)

  it("stop at cpu_ms with kind cpu", function()
    local sb = spawn({ limits = { cpu_ms = 300 } })
    fatal(sb, "while True:\n    pass", "cpu")
  end)

  it("surface MemoryError under mem as kind memory; the cell survives", function()
    if sandbox.info().sanitized then
      print("skipped: an ASan worker reserves terabytes of address space, so RLIMIT_AS cannot apply")
      return
    end
    local sb <close> = spawn({ limits = { mem = "512MiB" } })
    local e = err_of(sb.exec, sb, "x = bytearray(2 * 1024 ** 3)")
    assert.are.equal("memory", e.kind)
    assert.are.equal("MemoryError", e.python)
    sb:exec("post(1)")
    assert.are.equal(1, sb:recv(5))
  end)

  it("enforce open_files and output_bytes", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local sb <close> = spawn({
      limits = { open_files = 16, output_bytes = "64KiB" },
      policy = { fs = { { allow = dir } } },
    })
    sb:exec(string.format([[
files, errors = [], []
try:
    for i in range(64):
        files.append(open('%s/f%%d' %% i, 'w'))
except OSError as e:
    errors.append(e.errno)
for f in files:
    f.close()
try:
    with open('%s/big', 'wb') as f:
        f.write(b'x' * (1 << 20))
except OSError as e:
    errors.append(e.errno)
post(errors)
]], dir, dir))
    assert.are.same({ 24, 27 }, sb:recv(5)) -- EMFILE, EFBIG
    os.execute("rm -rf " .. dir)
  end)

  it("report a segfault as crashed; the host and other cells go on", function()
    local other <close> = spawn({})
    local sb = spawn({ imports = { "faulthandler" } })
    local e = fatal(sb, "import faulthandler\nfaulthandler._sigsegv()", "crashed")
    assert.are.equal(11, e.signal) -- SIGSEGV, as the host saw it
    assert.is_nil(e.code) -- a crash, not a broken protocol
    other:exec("post('still here')")
    assert.are.equal("still here", other:recv(5))
  end)

  it("give a request its death even when an event poll saw it first", function()
    local sb = spawn({ imports = { "os" } })
    sb:start_exec("import os\nos._exit(3)")
    local deadline = require("isolate.core").now() + 5
    while sb:is_open() and require("isolate.core").now() < deadline do sb:_dispatch() end
    local ok, e = pcall(sb.result, sb, 5)
    assert.is_false(ok)
    assert.are.equal("crashed", e.kind)
    dead(sb)
  end)

  it("kill a cell whose guest breaks the protocol", function()
    local sb = spawn({ imports = { "os", "stat" } })
    local e = fatal(sb, [[
import os, stat
for fd in range(3, 256):
    try:
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            os.write(fd, b'\x00\x00\x00\x05junk!')
    except OSError:
        pass
while True:
    pass
]], "crashed")
    assert.are.equal("protocol", e.code) -- told apart from other crashes
  end)

  it("report the confinement of every layer", function()
    local sb <close> = spawn({})
    local layers = {}
    for _, row in ipairs(sb:confinement()) do
      layers[row.layer] = row.state
      assert.are.equal("process", row.scope)
    end
    for _, layer in ipairs({ "python-guard", "close_fds", "session", "environment",
                             "rlimits", "no_new_privs", "landlock_fs", "seccomp" }) do
      assert.are.equal("active", layers[layer], layer)
    end
  end)
end)

describe("process cells: nothing leaks", function()
  local count = support.count_ls

  local function children(pid)
    local p = io.popen("ps -o pid= --ppid " .. pid)
    local pids = {}
    for line in p:lines() do pids[#pids + 1] = tonumber(line) end
    p:close()
    return pids
  end

  local function snapshot()
    -- the process pool full: its workers are the host's, as the zygote is
    local t = require("isolate.core").now()
    while sandbox.pool().process.ready < sandbox.pool().process.target
          and require("isolate.core").now() - t < 10 do
      require("isolate.core").sleep(0.005)
    end
    local self = support.pid
    local kids, grandkids = children(self), 0
    for _, k in ipairs(kids) do
      grandkids = grandkids + #children(k)
    end
    return {
      fds = count("/proc/" .. self .. "/fd"),
      threads = count("/proc/" .. self .. "/task"),
      children = #kids - 1, -- ps itself
      grandchildren = grandkids,
      -- cell directories are cells-<host pid>/<name>-<host pid>-<n> (or,
      -- in the older layout, next to it): count this host's only
      cgroups = count("-d /sys/fs/cgroup/unified/luaisolate/*/ "
        .. "/sys/fs/cgroup/unified/luaisolate/cells-" .. self .. "/*/ | grep -e '-" .. self .. "-'"),
    }
  end

  it("after 300 cells spawned and killed", function()
    spawn({}):kill() -- the zygote is part of the host from now on
    collectgarbage()
    local before = snapshot()
    for i = 1, 300 do
      local sb = spawn({})
      if i % 3 == 0 then sb:exec("post(1)") end
      sb:kill()
    end
    collectgarbage()
    collectgarbage()
    assert.are.same(before, snapshot())
  end)
end)

describe("an escaped guest in a process cell", function()
  -- The real os module, dug out of object.__subclasses__() the way escapes
  -- do; then ctypes to call libc directly, past every Python-level guard.
  local ESCAPE = [[
real_os = [c for c in ().__class__.__base__.__subclasses__()
           if c.__name__ == '_wrap_close'][0].__init__.__globals__
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
]]
  local sb
  local secret = os.tmpname()

  before_each(function()
    local f = io.open(secret, "w")
    f:write("secret")
    f:close()
    sb = spawn({ imports = { "ctypes", "socket" }, policy = { net = { { connect = "127.0.0.1:9" } } } })
    sb:exec(ESCAPE)
  end)
  after_each(function()
    sb:close()
    os.remove(secret)
  end)

  it("cannot read a file outside its policy", function()
    assert.are.equal("PermissionError", err_of(sb.exec, sb,
      string.format("real_os['open'](%q, 0)", secret)).python)
    sb:exec(string.format([[
fd = libc.open(%q.encode(), 0)
post([fd, ctypes.get_errno()])
]], secret))
    assert.are.same({ -1, 13 }, sb:recv(5)) -- EACCES from Landlock
  end)

  it("cannot run a program", function()
    assert.are.equal("PermissionError", err_of(sb.exec, sb, "real_os['system']('true')").python)
    local e = err_of(sb.exec, sb, "libc.execv(b'/bin/true', None)")
    assert.are.equal("crashed", e.kind)
    assert.are.equal("execve", e.syscall)
  end)

  it("cannot fork, so cannot fork-bomb", function()
    local e = err_of(sb.exec, sb, "while True:\n    libc.fork()")
    assert.are.equal("crashed", e.kind)
    local forks = { fork = true, vfork = true, clone = true, clone3 = true }
    assert.is_true(forks[e.syscall], tostring(e.syscall))
  end)

  it("cannot connect to an unlisted port", function()
    sb:exec([[
import socket
def connect(port):
    s = socket.socket()
    addr = (ctypes.c_ubyte * 16)(2, 0, port >> 8, port & 255, 127, 0, 0, 1)
    rc = libc.connect(s.fileno(), addr, 16)
    err = ctypes.get_errno()
    s.close()
    return [rc, err]
post([connect(9), connect(22)])
]])
    local r = sb:recv(5)
    assert.are.equal(111, r[1][2]) -- listed: the kernel says ECONNREFUSED
    local bpf
    for _, row in ipairs(sb:confinement()) do
      if row.layer == "bpf" then bpf = row.state == "active" end
    end
    -- unlisted: EPERM from the BPF guard, else EACCES from Landlock
    assert.are.same({ -1, bpf and 1 or 13 }, r[2])
  end)

  it("gets a denial event with layer bpf for an unlisted address", function()
    local row
    for _, x in ipairs(sb:confinement()) do if x.layer == "bpf" then row = x end end
    if row.state ~= "active" then return print("SKIP bpf: " .. row.detail) end
    local seen = {}
    sandbox.on("denial", function(ev) seen[#seen + 1] = ev end)
    sb:exec([[
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
addr = (ctypes.c_ubyte * 16)(2, 0, 0, 53, 10, 9, 8, 7)
post([libc.sendto(s.fileno(), b'x', 1, 0, addr, 16), ctypes.get_errno()])
]])
    assert.are.same({ -1, 1 }, sb:recv(5)) -- UDP sendto: EPERM
    sb:_dispatch()
    local ev = seen[#seen]
    assert.are.same({ "bpf", "sendto", "10.9.8.7:53" }, { ev.layer, ev.action, ev.target })
  end)

  it("sees no host environment variable", function()
    sb:exec([[
post(sorted(real_os['environ'].keys()))
libc.getenv.restype = ctypes.c_char_p
post(libc.getenv(b'LUA_PATH'))
]])
    assert.are.same({ "LANG", "LC_ALL", "PATH" }, sb:recv(5))
    assert.is_nil(sb:recv(5))
  end)
end)
