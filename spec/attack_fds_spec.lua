-- Attacks from issue 17 on what a sub-interpreter guest can reach besides
-- its own Python: the host's file descriptors (findings 7 and 8: the
-- zygote's control socket and a process cell's frames socket), native code
-- (finding 9: _ctypes through _imp.create_dynamic), and SIGPIPE (finding
-- 11: a send on a broken socket killed the host). Each case is an attack
-- that must fail in the stated way. These run for real: root, Landlock,
-- seccomp. A layer this kernel lacks is skipped with the reason the cell
-- itself reports.
local sandbox = require "isolate"
local support = require "support"

local HOST = os.getenv("ISOLATE_HOST")
local EBADF, EACCES, EPERM, ENXIO = 9, 13, 1, 6

-- This process's pid (the host's: specs run in it).
local function pid()
  local f = assert(io.open("/proc/self/stat"))
  local n = tonumber(f:read("l"):match("^(%d+)"))
  f:close()
  return n
end

local row = support.row

local active = support.active

local function has_process()
  for _, b in ipairs(sandbox.IMPLEMENTED) do
    if b == "process" then return true end
  end
  print("SKIP: the process backend is not available here")
  return false
end

-- A live process cell (so the host holds the zygote's control socket, the
-- cell's frames socket and its death note), checked to answer.
local function process_cell()
  local p = sandbox.spawn({ backend = "process" })
  p:exec("x = 41")
  p:exec("post(x + 1)")
  assert.are.equal(42, p:recv(10))
  return p
end

-- The fds the host process has open, as numbers.
local function host_fds()
  local out, p = {}, io.popen("ls /proc/" .. pid() .. "/fd")
  for n in p:lines() do out[#out + 1] = tonumber(n) end
  p:close()
  return out
end

-- The guest walks fds 3..300 as the attack did: fstat says which are open,
-- _socket.socket(fileno=) which are sockets (detached again, never closed).
-- It walks once more from a thread of its own, which shares its table.
local WALK = [[
import _socket, os, threading
def walk(out):
    open_fds, sockets = [], []
    for fd in range(3, 301):
        try:
            os.fstat(fd)
        except OSError as e:
            if e.errno != 9:
                raise
            continue
        open_fds.append(fd)
        try:
            s = _socket.socket(fileno=fd)
        except OSError:
            continue
        sockets.append([fd, int(s.family), int(s.type)])
        s.detach()
    out.append([open_fds, sockets])
found = []
walk(found)
t = threading.Thread(target=walk, args=(found,))
t.start()
t.join()
post(found)
]]

describe("attack 7: a sub-interpreter guest looking for the zygote's socket", function()
  it("finds no host fd but its own doorbell, while a process cell lives", function()
    if not has_process() or not active("fd_table") then return end
    local p <close> = process_cell()
    local sb <close> = sandbox.spawn({ imports = { "_socket", "os", "threading" } })
    sb:exec(WALK)
    local found = sb:recv(10)
    assert.are.same(found[1], found[2]) -- the guest's thread: the same table
    local open_fds, sockets = found[1][1], found[1][2]
    -- the host has the zygote socket, p's frames socket and death note, ...
    assert.is_true(#host_fds() > 3 + 3)
    -- ... the guest only the doorbell: a unix stream socket it can ring
    assert.is_true(#open_fds <= 1)
    for _, s in ipairs(sockets) do
      assert.are.equal(1, s[2]) -- AF_UNIX
      assert.are.equal(1, s[3]) -- SOCK_STREAM: never SEQPACKET (5)
    end
    -- and the process cell is still served
    p:exec("post(x)")
    assert.are.equal(41, p:recv(10))
  end)
end)

describe("attack 8: cross-cell injection from a sub-interpreter guest", function()
  -- A well-formed EXEC frame (4-byte length, msgpack header [1, seq, src,
  -- nil, time], nil) written to every unix socket the guest can find.
  local INJECT = [[
import _socket, os, struct, time
src = b"post('injected')"
body = (b'\x95\x01\x07\xd9' + bytes([len(src)]) + src + b'\xc0\xcb'
        + struct.pack('>d', time.time()) + b'\xc0')
frame = struct.pack('>I', len(body)) + body
written = 0
for fd in range(3, 301):
    try:
        s = _socket.socket(fileno=fd)
    except OSError:
        continue
    try:
        if s.family == _socket.AF_UNIX:
            s.send(frame, _socket.MSG_DONTWAIT)
            written += 1
    except OSError:
        pass
    finally:
        s.detach()
post(written)
]]

  it("fails: the process cell runs only what its host sends", function()
    if not has_process() or not active("fd_table") then return end
    local p <close> = process_cell()
    local sb <close> = sandbox.spawn({ imports = { "_socket", "os", "struct", "time" } })
    sb:exec(INJECT)
    assert.is_true(sb:recv(10) <= 1) -- at most its own doorbell
    p:exec("post(x + 1)")
    assert.are.equal(42, p:recv(10))
    local v, e = p:recv(0.3)
    assert.is_nil(v) -- nothing 'injected' was posted
    assert.are.equal("timeout", e.kind)
    assert.is_true(p:is_open())
  end)
end)

describe("an escaped guest and the host's own fds", function()
  local secret

  before_each(function()
    secret = os.tmpname()
    local f = assert(io.open(secret, "w"))
    f:write("host secret\n")
    f:close()
  end)
  after_each(function() os.remove(secret) end)

  -- The number of the fd the host has open on path.
  local function fd_of(path)
    local p = io.popen(string.format(
      "for f in /proc/%d/fd/*; do [ \"$(readlink $f)\" = %s ] && basename $f; done",
      pid(), support.quote(path)))
    local n = tonumber(p:read("l"))
    p:close()
    return n
  end

  it("cannot read, write, dup or stat a file the Lua script opened", function()
    if not active("fd_table") then return end
    local f <close> = assert(io.open(secret, "r+"))
    local fd = assert(fd_of(secret))
    local sb <close> = sandbox.spawn({ imports = { "os" } })
    sb:exec(string.format([[
import os
FD = %d
out = []
for op in (lambda: os.read(FD, 100), lambda: os.write(FD, b'x'),
           lambda: os.dup(FD), lambda: os.fstat(FD), lambda: os.lseek(FD, 0, 0)):
    try:
        op()
        out.append(0)
    except OSError as e:
        out.append(e.errno)
post(out)
]], fd))
    assert.are.same({ EBADF, EBADF, EBADF, EBADF, EBADF }, sb:recv(10))
    assert.are.equal("host secret\n", f:read("a")) -- untouched, still the host's
  end)

  it("cannot reopen the host's fds through /proc/self/fd", function()
    if not has_process() or not active("fd_table") then return end
    local p <close> = process_cell()
    local f <close> = assert(io.open(secret, "r"))
    -- /proc readable, so that only the kernel layers stand in the way:
    -- /proc/self is the host's main thread, whose table has every host fd
    local sb <close> = sandbox.spawn({ imports = { "os" }, policy = { fs = { { read = "/proc" } } } })
    sb:exec([[
import os
opened = []
for fd in range(3, 301):
    try:
        got = os.open('/proc/self/fd/%d' % fd, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        continue
    opened.append(fd)
    os.close(got)
post(opened)
]])
    -- the file is outside the policy (Landlock: EACCES), sockets give
    -- ENXIO, and the host holds no pipe of its own
    assert.are.same({}, sb:recv(10))
    p:exec("post(x)")
    assert.are.equal(41, p:recv(10))
  end)
end)

describe("native code in a sub-interpreter cell", function()
  local DYNLOAD = [[
import sys, os
dynload = [p for p in sys.path if p.endswith('lib-dynload')][0]
def so(name):
    return [os.path.join(dynload, f) for f in os.listdir(dynload)
            if f.split('.')[0] == name and f.endswith('.so')]
]]

  -- How each route to load `name` from lib-dynload fares: errno of a plain
  -- open of its file, then the exception type (or "loaded") of
  -- _imp.create_dynamic and of ExtensionFileLoader.
  local ROUTES = DYNLOAD .. [[
import _imp, importlib.machinery as m
def routes(name):
    out = []
    for path in so(name):
        try:
            os.close(os.open(path, os.O_RDONLY))
            out.append(0)
        except OSError as e:
            out.append(e.errno)
        for load in (lambda: _imp.create_dynamic(m.ModuleSpec(name, None, origin=path)),
                     lambda: m.ExtensionFileLoader(name, path).create_module(
                         m.ModuleSpec(name, None, origin=path))):
            try:
                load()
                out.append('loaded')
            except BaseException as e:
                out.append(type(e).__name__)
    return out
]]

  local IMPORTS = { "os", "sys", "_imp", "importlib", "_socket" }

  it("refuses _ctypes, _multiprocessing and the test extensions by every route", function()
    if not active("landlock_fs") then return end
    local sb <close> = sandbox.spawn({ imports = IMPORTS })
    sb:exec(ROUTES .. [[
post({n: routes(n) for n in ('_ctypes', '_multiprocessing', '_testcapi', '_ctypes_test')
      if so(n)})
]])
    local r = sb:recv(10)
    local native = row(sb, "native_code")
    assert.are.equal("active", native.state, native.detail)
    assert.is_table(r._ctypes, "no _ctypes in lib-dynload to attack")
    for name, out in pairs(r) do
      assert.are.same({ EACCES, "ImportError", "ImportError" }, out, name)
    end
  end)

  it("gives back only the test extensions the operator names, never _ctypes", function()
    if not active("landlock_fs") then return end
    -- spawn refuses _ctypes and _multiprocessing up front (kind
    -- invalid_argument); the cell's layers are reached past that check
    assert.are.equal("invalid_argument", support.err_of(sandbox.spawn,
      { imports = { "_testcapi", "_ctypes" } }).kind)
    local sb <close> = support.core_spawn("subinterpreter", { "os", "sys", "_imp", "importlib",
                                           "_socket", "_testcapi", "_ctypes", "_multiprocessing" })
    sb:exec(ROUTES .. [[
post({n: routes(n) for n in ('_ctypes', '_multiprocessing', '_testcapi', '_ctypes_test')
      if so(n)})
]])
    local r = sb:recv(10)
    assert.is_table(r._testcapi, "no _testcapi in lib-dynload")
    -- its file is given back; own-GIL cells then meet CPython's own
    -- refusal of a single-phase module (3.13's _testcapi is one)
    local load = sandbox.info().own_gil and "ImportError" or "loaded"
    assert.are.same({ 0, load, load }, r._testcapi)
    for name, out in pairs(r) do
      if name ~= "_testcapi" then assert.are.same({ EACCES, "ImportError", "ImportError" }, out, name) end
    end
  end)

  it("still loads the extensions it allows (the routes work)", function()
    if not active("landlock_fs") then return end
    local sb <close> = sandbox.spawn({ imports = IMPORTS })
    sb:exec(ROUTES .. [[
post(routes('mmap') or routes('_json'))
]])
    assert.are.same({ 0, "loaded", "loaded" }, sb:recv(10))
  end)

  it("cannot make a memfd to load code from", function()
    if not active("seccomp") then return end
    local sb <close> = sandbox.spawn({ imports = { "os" } })
    sb:exec([[
import os
try:
    os.memfd_create('x')
    post(0)
except OSError as e:
    post(e.errno)
]])
    assert.are.equal(EPERM, sb:recv(10))
  end)

  -- The guest writes the bytes of a .so itself (here a copy of _ctypes),
  -- as an attacker bringing its own would, then loads it.
  -- This runtime's _ctypes file (the Lua side may read it).
  local function ctypes_file()
    local sb <close> = sandbox.spawn({ imports = { "sys" } })
    sb:exec("import sys; post([p for p in sys.path if p.endswith('lib-dynload')][0])")
    local p = io.popen("ls " .. support.quote(sb:recv(10)) .. "/_ctypes.*.so 2>/dev/null")
    local path = p:read("l")
    p:close()
    return path
  end

  local function write_and_load(rule)
    local src = ctypes_file()
    if not src then return print("SKIP: no _ctypes extension file on this host") end
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local sb <close> = sandbox.spawn({ imports = { "os", "_imp", "importlib" },
                                       policy = { fs = { { [rule] = dir } } } })
    local f = assert(io.open(src, "rb"))
    local hex = f:read("a"):gsub(".", function(c) return string.format("%02x", c:byte()) end)
    f:close()
    sb:exec(string.format([[
import os, _imp, importlib.machinery as m
path = %q
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o755)
os.write(fd, bytes.fromhex(%q))
os.close(fd)
try:
    _imp.create_dynamic(m.ModuleSpec('_ctypes', None, origin=path))
    post('loaded')
except ImportError as e:
    post(type(e).__name__)
]], dir .. "/_ctypes.so", hex))
    local got = sb:recv(30)
    local noexec = row(sb, "noexec")
    os.execute("rm -rf " .. dir)
    return got, noexec
  end

  it("cannot load an extension it wrote into a write-only path (Landlock)", function()
    if not active("landlock_fs") then return end
    local got = write_and_load("write")
    if got then assert.are.equal("ImportError", got) end
  end)

  it("cannot load an extension it wrote into a path it may read (noexec)", function()
    if not active("landlock_fs") then return end
    local got, noexec = write_and_load("allow")
    if not got then return end
    if noexec.state ~= "active" then return print("SKIP noexec: " .. noexec.detail) end
    assert.are.equal("ImportError", got) -- mmap(PROT_EXEC) refused: EPERM
  end)
end)

describe("SIGPIPE", function()
  local script = support.write_temp

  -- Both ways of getting EPIPE the issue names, plus a guest thread.
  local GUEST = [[
import socket, threading
out = []
def attempt(f):
    try:
        f()
        out.append('sent')
    except OSError as e:
        out.append(type(e).__name__)
attempt(lambda: socket.socket().send(b'x'))
a, b = socket.socketpair()
b.close()
attempt(lambda: a.send(b'x'))
t = threading.Thread(target=attempt, args=(lambda: a.send(b'y'),))
t.start()
t.join()
post(out)
]]

  it("never kills the host: the guest gets BrokenPipeError in both backends", function()
    if not HOST then return print("SKIP: needs ISOLATE_HOST") end
    local backends = { "subinterpreter" }
    for _, b in ipairs(sandbox.IMPLEMENTED) do
      if b == "process" then backends[2] = b end
    end
    local path = script(string.format([[
for _, backend in ipairs({%s}) do
  local sb <close> = sandbox.spawn{ backend = backend, imports = { "socket", "threading" } }
  sb:exec(%q)
  print(backend, table.concat(sb:recv(10), ","))
end
print("alive")
]], '"' .. table.concat(backends, '","') .. '"', GUEST))
    local code, out, err = support.run(HOST, "run", path)
    os.remove(path)
    assert.are.equal(0, code, err)
    local want = {}
    for _, b in ipairs(backends) do
      want[#want + 1] = b .. "\tBrokenPipeError,BrokenPipeError,BrokenPipeError\n"
    end
    assert.are.equal(table.concat(want) .. "alive\n", out)
  end)
end)
