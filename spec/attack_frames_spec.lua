-- Attacks on the host through what a cell sends (issue 17, findings 1, 2, 3
-- and 12). A process cell's guest has no imports at all, yet reaches `posix`
-- through BuiltinImporter and writes frames of its own making on its
-- worker's frames socket. Each attack must fail in a stated way: asserted on
-- err.kind, event fields and values, never on message text.
local sandbox = require "isolate"
local core = require "isolate.core"
local support = require "support"
local err_of = support.err_of

local has_process = false
for _, b in ipairs(sandbox.IMPLEMENTED) do has_process = has_process or b == "process" end

-- Frame types and error kinds, as src/base/wire.h and include/isolate.h
-- number them.
local F = { READY = 10, RESULT = 11, POST = 12, LOG = 13, METRIC = 14,
            REQUEST = 15, DENIAL = 16, REPLY = 3 }
local KIND = { policy = 3, guest = 5, timeout = 6, cpu = 7, crashed = 10 }

-- The forger, in pure Python: posix without an import, the worker's frames
-- socket and death-note socket (the first two sockets) found by fstat, a msgpack encoder for what a
-- frame holds (wire.h: length prefix, header [type, seq, text, error,
-- time], one value).
local FORGER = [=[
BI = [c for c in object.__subclasses__() if c.__name__ == 'BuiltinImporter'][0]
px = BI.load_module('posix')
def _socks():
    for fd in range(3, 64):
        try:
            if px.fstat(fd).st_mode & 0o170000 == 0o140000:
                yield fd
        except OSError:
            pass
FRAMES, NOTE = list(_socks())[:2]
def pk(v):
    if v is None: return b'\xc0'
    if v is True: return b'\xc3'
    if v is False: return b'\xc2'
    if isinstance(v, int):
        return bytes([v]) if 0 <= v < 128 else b'\xcf' + v.to_bytes(8, 'big')
    if isinstance(v, float):
        return b'\xcb' + bytes(8)
    if isinstance(v, str):
        v = v.encode()
        return b'\xdb' + len(v).to_bytes(4, 'big') + v
    if isinstance(v, (bytes, bytearray)):
        return b'\xc6' + len(v).to_bytes(4, 'big') + bytes(v)
    if isinstance(v, list):
        return b'\xdd' + len(v).to_bytes(4, 'big') + b''.join(pk(x) for x in v)
    if isinstance(v, dict):
        return b'\xdf' + len(v).to_bytes(4, 'big') + b''.join(pk(k) + pk(x) for k, x in v.items())
def frame(type, value=None, seq=0, text=None, error=None):
    body = pk([type, seq, text, error, 0.0]) + pk(value)
    return len(body).to_bytes(4, 'big') + body
def send(data):
    view = memoryview(data)
    while view:
        view = view[px.write(FRAMES, view):]
def read_exactly(n):
    out = b''
    while len(out) < n:
        out += px.read(FRAMES, n - len(out))
    return out
def read_frame():
    return read_exactly(int.from_bytes(read_exactly(4), 'big'))
]=]

-- A process cell (no imports unless given) with the forger loaded: its
-- next request has seq 2. wall_ms bounds the attacks that end in a busy
-- loop, so that a host that believes them fails the spec instead of hanging.
local function forger(opts)
  opts = opts or {}
  opts.backend = "process"
  opts.limits = opts.limits or {}
  opts.limits.wall_ms = opts.limits.wall_ms or 20000
  local sb = sandbox.spawn(opts)
  sb:exec(FORGER)
  return sb
end

local function events_of(sb, type_)
  local out = {}
  for ev in sb:events() do
    if ev.type == type_ then out[#out + 1] = ev end
  end
  return out
end

local function rss_bytes()
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4096
end

-- recv until the cell has nothing more: the values, then the error.
local function drain(sb)
  local values = {}
  while true do
    local ok, v = pcall(sb.recv, sb, 0)
    if not ok then return values, v end
    if v == nil then return values, nil end
    values[#values + 1] = v
  end
end

local function range(n)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = i end
  return t
end

describe("attacks through frames (process cells)", function()
  if not has_process then
    it("needs the process backend", function()
      print("skipped: backend 'process' is not available in this build")
    end)
    return
  end

  it("capability grants are explained as the host's on process cells", function()
    local rows = sandbox.policy.compile({ capabilities = { "kv" } }):explain("process")
    assert.are.equal(1, #rows)
    assert.are.equal("host", rows[1].layer)
  end)

  it("a forged REQUEST for an ungranted capability never reaches its handler", function()
    local called = 0
    sandbox.capability("frames_secret", function() called = called + 1; return "secret" end)
    local sb <close> = forger()
    sb:exec([=[
send(frame(15, ['frames_secret', 'read', None]))
r = read_frame()
post([r[1], r[4], r[5]])
]=])
    -- The host's REPLY: type reply, an error list (fixarray 6) of kind policy.
    assert.are.same({ F.REPLY, 0x96, KIND.policy }, sb:recv(5))
    assert.are.equal(0, called)
    local denials = events_of(sb, "denial")
    assert.are.equal(1, #denials)
    assert.are.same({ "capability", "request", "frames_secret", "broker", "host" },
      { denials[1].capability, denials[1].action, denials[1].target,
        denials[1].layer, denials[1].source })
    sb:exec("post('still serving')") -- a refused request is not a crash
    assert.are.equal("still serving", sb:recv(5))
  end)

  it("a granted capability is still served, through the worker's own request()", function()
    sandbox.capability("frames_echo", function(action, payload) return { action, payload } end)
    local sb <close> = forger({ capabilities = { "frames_echo" } })
    sb:exec("post(request('frames_echo', 'hi', 7))")
    assert.are.same({ "hi", 7 }, sb:recv(5))
  end)

  it("a REQUEST whose capability is not a string is a protocol violation", function()
    local sb = forger()
    assert.are.equal("crashed", err_of(sb.exec, sb, "send(frame(15, [7, 'read', None]))\nwhile True: pass").kind)
    assert.is_false(sb:is_open())
  end)

  it("forged POSTs past output_bytes kill the cell with kind output; the host does not grow", function()
    local sb = forger({ limits = { output_bytes = 1000 } })
    local before = rss_bytes()
    local e = err_of(sb.exec, sb, [=[
chunk = frame(12, b'x' * (4 << 20))
for i in range(16):
    send(chunk)
while True: pass
]=])
    assert.are.equal("output", e.kind)
    assert.is_false(sb:is_open())
    local values = drain(sb)
    assert.are.equal(0, #values) -- the lying post was not queued
    -- 64 MiB were sent; the host read at most one frame of it.
    assert.is_true(rss_bytes() - before < 32 * 1024 * 1024)
  end)

  it("forged LOG and METRIC frames count against output_bytes too", function()
    for _, code in ipairs({ "send(frame(13, ['info', 'y' * 2000, None]))",
                            "send(frame(14, ['m' * 2000, 1, None]))" }) do
      local sb = forger({ limits = { output_bytes = 1000 } })
      assert.are.equal("output", err_of(sb.exec, sb, code .. "\nwhile True: pass").kind)
    end
  end)

  it("an honest cell's output_bytes is refused in the guest, never by the host", function()
    local sb <close> = forger({ limits = { output_bytes = 1000 } })
    sb:exec([=[
metric('m', 1, {'t%d' % i: 'v' * 120 for i in range(5)})  # 600+ bytes of strings
try:
    post('p' * 600)
except OSError as e:
    errno = e.errno
post(errno)
]=])
    assert.are.equal(27, sb:recv(5)) -- EFBIG: metrics count as posts do
    assert.is_true(sb:is_open())
  end)

  it("a forged RESULT with kind timeout is a protocol violation, not a timeout", function()
    local sb = forger()
    local e = err_of(sb.exec, sb, [=[
send(frame(11, None, seq=2, error=[6, 'cell exceeded limits.wall_ms', 'TimeoutError', None]))
while True: pass
]=])
    assert.are.equal("crashed", e.kind)
    assert.is_false(sb:is_open())
  end)

  it("forged RESULTs with kind cpu or crashed, or for no request, are protocol violations", function()
    for _, forged in ipairs({
      "frame(11, None, seq=2, error=[7, 'cpu', 'x', None])",
      "frame(11, None, seq=2, error=[10, 'crashed', 'x', None])",
      "frame(11, 'early', seq=7)",
    }) do
      local sb = forger()
      assert.are.equal("crashed", err_of(sb.exec, sb, "send(" .. forged .. ")\nwhile True: pass").kind)
    end
  end)

  it("kind memory from a worker counts only under limits.mem", function()
    local sb = forger()
    local e = err_of(sb.exec, sb, "raise MemoryError()")
    assert.are.equal("guest", e.kind) -- the worker itself says guest
    assert.are.equal("MemoryError", e.python)
    assert.are.equal("crashed", err_of(sb.exec, sb,
      "send(frame(11, None, seq=3, error=[8, 'memory', 'MemoryError', None]))\nwhile True: pass").kind)
  end)

  it("a forged DENIAL claiming layer bpf is marked as the cell's claim", function()
    local sb <close> = forger()
    sb:exec("send(frame(16, ['net', 'connect', '10.0.0.1:22', 'rule', 'bpf']))")
    sb:exec("post(1)")
    assert.are.equal(1, sb:recv(5))
    local denials = events_of(sb, "denial")
    assert.are.equal(1, #denials)
    assert.are.same({ "bpf", "cell", "10.0.0.1:22" },
      { denials[1].layer, denials[1].source, denials[1].target })
  end)

  it("forged METRIC frames the guest's metric() would refuse are dropped by the host, counted, one warning", function()
    local prom = require "prom"
    local function dropped()
      return prom.sample(prom.parse(sandbox.metrics()), "isolate_metrics_dropped_total",
                         { reason = "invalid" }).value
    end
    local before = dropped()
    local sb <close> = forger({ name = "forged-metrics" })
    events_of(sb, "warning") -- a host that lacks a layer warned already: not ours
    local FORGED = {
      "['a\\n}x 1\\n# TYPE', 1, None]", "['x' * 100000, 1, None]", "['n', 'str', None]",
      "['n', True, None]", "['n', 1, {'cell': 'evil'}]", "['n', 1, {'k': 'v' * 200}]",
      "['n', 1, {'t%d' % i: 'v' for i in range(100)}]", "['n', 1, {'__name__': 'x'}]",
      "['n', 1, {'k': b'\\xff'}]", "['n', 1, 'not a dict']", "[7, 1, None]",
    }
    for _, item in ipairs(FORGED) do sb:exec("send(frame(14, " .. item .. "))") end
    sb:exec("send(frame(14, ['kept', 5, {'k': 'v'}]))\npost(1)")
    assert.are.equal(1, sb:recv(5))
    local warnings = events_of(sb, "warning")
    local fams = prom.parse(sandbox.metrics()) -- still valid exposition
    assert.are.equal(#FORGED, dropped() - before)
    assert.are.equal(1, #warnings) -- one warning, not one per frame
    assert.are.equal("forged-metrics", warnings[1].cell)
    assert.are.equal(5, prom.sample(fams, "isolate_guest_kept", { cell = "forged-metrics" }).value)
    assert.is_nil(prom.sample(fams, "isolate_guest_n", { cell = "evil" }))
  end)

  it("a DENIAL that brings its own source is a protocol violation", function()
    local sb = forger()
    assert.are.equal("crashed", err_of(sb.exec, sb,
      "send(frame(16, ['net', 'connect', 'x', 'rule', 'bpf', 'kernel']))\nwhile True: pass").kind)
  end)

  it("a worker's own python-guard denial is source cell", function()
    local sb <close> = forger()
    assert.are.equal("ImportError", err_of(sb.exec, sb, "import json").python)
    local denials = events_of(sb, "denial")
    assert.are.same({ "python-guard", "cell" }, { denials[1].layer, denials[1].source })
  end)

  it("a denial the kernel saw (BPF ring buffer) is source kernel", function()
    local sb <close> = sandbox.spawn({ backend = "process", imports = { "ctypes", "socket" } })
    local row
    for _, x in ipairs(sb:confinement()) do if x.layer == "bpf" then row = x end end
    if not row or row.state ~= "active" then
      return print("skipped: the BPF guard is not active here: " .. (row and row.detail or "no row"))
    end
    sb:exec([=[
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
addr = (ctypes.c_ubyte * 16)(2, 0, 0, 53, 10, 9, 8, 7)
post(libc.sendto(s.fileno(), b'x', 1, 0, addr, 16))
]=])
    assert.are.equal(-1, sb:recv(5))
    local found
    for _ = 1, 50 do
      for _, ev in ipairs(events_of(sb, "denial")) do
        if ev.layer == "bpf" then found = ev end
      end
      if found then break end
      core.sleep(0.02)
    end
    assert.is_truthy(found)
    assert.are.equal("kernel", found.source)
  end)

  it("a forged death note is shown as the cell's claim, cleaned; kind crashed", function()
    local sb = forger()
    local e = err_of(sb.exec, sb, [=[
px.write(NOTE, b'stopped: seccomp: reboot\x1b[2J\x07\x00\xff' + b'A' * 4000)
px._exit(9)
]=])
    assert.are.equal("crashed", e.kind)
    assert.is_nil(e.message:find("[%c\128-\255]")) -- no control or raw bytes
  end)

  it("a death by SIGXCPU is kind cpu whatever the note says", function()
    local sb = forger({ limits = { cpu_ms = 300 } })
    local e = err_of(sb.exec, sb, "px.write(NOTE, b'guest: all fine')\nwhile True: pass")
    assert.are.equal("cpu", e.kind)
  end)

  it("malformed and oversized frames kill only their cell; a sibling keeps working", function()
    local sibling <close> = sandbox.spawn({ backend = "process" })
    sibling:start_exec("n = 0\nfor i in range(2000000):\n    n += i\npost(n)")
    for _, bad in ipairs({
      "b'\\xff\\xff\\xff\\xff' + b'x' * 64",              -- claims 4 GiB
      "b'\\x00\\x00\\x00\\x05junk!'",                      -- not msgpack
      "frame(99, None)",                                   -- no such type
      "frame(10, None)",                                   -- READY again
      "frame(2, [], text='f')",                            -- a host's frame
      "frame(12, None)[:-1] + b'\\xc1'",                   -- a refused byte
      "frame(12, None)[:-1] + b'\\x91' * 40 + b'\\xc0'",   -- nested too deep
    }) do
      local sb = forger()
      local e = err_of(sb.exec, sb, "send(" .. bad .. ")\nwhile True: pass")
      assert.are.equal("crashed", e.kind, bad)
      assert.is_false(sb:is_open())
    end
    local ok = sibling:result()
    assert.is_true(ok)
    assert.are.equal(1999999000000, sibling:recv(5))
  end)
end)

describe("queue caps", function()
  local backends = support.backends()

  it("refuse bad values with invalid_argument", function()
    for _, bad in ipairs({ 0, -1, 1.5, "x" }) do
      assert.are.equal("invalid_argument", err_of(sandbox.configure, { queue_values = bad }).kind)
      assert.are.equal("invalid_argument", err_of(sandbox.configure, { queue_bytes = bad }).kind)
      assert.are.equal("invalid_argument",
        err_of(sandbox.spawn, { limits = { queue_values = bad } }).kind)
    end
    assert.are.equal("invalid_argument",
      err_of(sandbox.spawn, { limits = { queue_bytes = "12XB" } }).kind)
  end)

  it("are explained: the host for process cells, the guest's builtins otherwise", function()
    local p = sandbox.policy.compile({ limits = { queue_values = 10, queue_bytes = "1MiB" } })
    for backend, layer in pairs({ process = "host", subinterpreter = "python-guard" }) do
      local rows = p:explain(backend)
      assert.are.equal(2, #rows)
      for _, row in ipairs(rows) do assert.are.equal(layer, row.layer, row.rule) end
    end
  end)

  for _, backend in ipairs(backends) do
    local spawn = support.spawner(backend)
    local process = backend == "process"

    it("in values (" .. backend .. ")", function()
      local sb = spawn({ limits = { queue_values = 5 } })
      if process then
        assert.are.equal("output", err_of(sb.exec, sb, "for i in range(10):\n    post(i)").kind)
        assert.is_false(sb:is_open())
        local values, e = drain(sb)
        assert.are.same(range(5), values) -- what fit is not lost
        assert.are.equal("closed", e.kind)
      else
        sb:exec([=[
def fill(n):
    sent = 0
    try:
        for i in range(n):
            post(i)
            sent += 1
    except OSError as e:
        return [sent, e.errno]
    return [sent, 0]
]=])
        assert.are.same({ 5, 105 }, sb:call("fill", 10)) -- ENOBUFS
        assert.are.same(range(5), (drain(sb)))
        assert.are.same({ 3, 0 }, sb:call("fill", 3)) -- room again once taken
        sb:close()
      end
    end)

    it("in bytes (" .. backend .. ")", function()
      local sb = spawn({ limits = { queue_bytes = "1MiB" } })
      local code = "for i in range(4):\n    post(b'x' * (400 << 10))"
      if process then
        assert.are.equal("output", err_of(sb.exec, sb, code).kind)
        assert.are.equal(2, #(drain(sb)))
      else
        local e = err_of(sb.exec, sb, code)
        assert.are.same({ "guest", "OSError" }, { e.kind, e.python })
        assert.are.equal(2, #(drain(sb)))
        sb:close()
      end
    end)

    it("from sandbox.configure, for cells spawned later (" .. backend .. ")", function()
      local sb
      sandbox.configure({ queue_values = 3 })
      local ok, err = pcall(function()
        sb = spawn({})
      end)
      sandbox.configure({ queue_values = 65536 })
      assert(ok, err)
      local e = err_of(sb.exec, sb, "for i in range(4):\n    post(i)")
      assert.are.equal(process and "output" or "guest", e.kind)
      sb:close()
    end)

    it("cover events as well as posts (" .. backend .. ")", function()
      local sb = spawn({ limits = { queue_values = 4 } })
      -- The host takes events while it waits; here it does not wait until
      -- all 20 logs were sent, so they would all be waiting at once.
      sb:start_exec("for i in range(20):\n    log('info', 'x')")
      core.sleep(0.5)
      local e = err_of(sb.result, sb)
      if process then
        assert.are.equal("output", e.kind)
        assert.is_false(sb:is_open())
      else
        assert.are.same({ "guest", "OSError" }, { e.kind, e.python })
        assert.are.equal(4, #events_of(sb, "log"))
        sb:close()
      end
    end)
  end
end)

describe("nothing posted is lost", function()
  for _, backend in ipairs(support.backends()) do
    local spawn = support.spawner(backend)
    local process = backend == "process"

    it("before a kill (" .. backend .. ")", function()
      local sb = spawn({})
      sb:start_exec("for i in range(200):\n    post(i)\nwhile True: pass")
      if process then
        core.sleep(0.5) -- the frames wait in the socket, unread
      else
        local deadline = core.now() + 5
        while sb:stats().posts < 200 and core.now() < deadline do sb:result(0.05) end
      end
      sb:kill()
      local values, e = drain(sb)
      assert.are.same(range(200), values)
      assert.are.equal("closed", e.kind)
    end)

    it("before a close (" .. backend .. ")", function()
      local sb = spawn({})
      sb:exec("for i in range(50):\n    post(i)")
      sb:close()
      local values, e = drain(sb)
      assert.are.same(range(50), values)
      assert.are.equal("closed", e.kind)
    end)

    it("before wall_ms stops the cell (" .. backend .. ")", function()
      local sb = spawn({ limits = { wall_ms = 300 } })
      assert.are.equal("timeout", err_of(sb.exec, sb, "for i in range(30):\n    post(i)\nwhile True: pass").kind)
      local values = drain(sb)
      assert.are.same(range(30), values)
      sb:close()
    end)

    if process then
      it("before a crash (process)", function()
        local sb = forger()
        assert.are.equal("crashed", err_of(sb.exec, sb, "for i in range(100):\n    post(i)\npx._exit(3)").kind)
        local values, e = drain(sb)
        assert.are.same(range(100), values)
        assert.are.equal("closed", e.kind)
      end)
    end
  end
end)
