-- sandbox.policy.reload: running cells spawned from a policy name take the
-- new rules where a layer can change in a running cell, and say where a
-- restart is needed. Runs for real (BPF guard, Landlock, seccomp).
local sandbox = require "isolate"
local support = require "support"
local err_of = support.err_of

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
table.insert(sandbox.policy.path, 1, dir)

local function write_policy(name, text)
  local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
  f:write(text)
  f:close()
end

-- No ctypes here: sub-interpreter cells take these too, and spawn (and
-- reload) refuse an import those cells refuse; process cells that need
-- ctypes add it as a spawn option, which a reload keeps.
local ALLOW_9 = { imports = { "socket" }, net = { { connect = "127.0.0.1:9" } } }
local DENY_9 = { imports = { "socket" },
                 net = { { deny = "127.0.0.1:9" }, { connect = "127.0.0.0/8:*" } } }

local function layer_state(sb, layer)
  for _, r in ipairs(sb:confinement()) do
    if r.layer == layer then return r.state end
  end
end

-- connect_ex to 127.0.0.1:9 from guest code the python-guard also judges.
local PROBE = [[
import socket
def probe():
    s = socket.socket()
    try:
        return s.connect_ex(('127.0.0.1', 9))
    except PermissionError:
        return 'denied'
    finally:
        s.close()
]]

describe("sandbox.policy.reload", function()
  before_each(function()
    write_policy("reloadable", 'return { imports = { "socket" }, '
                 .. 'net = { { connect = "127.0.0.1:9" } } }')
  end)

  it("swaps a sub-interpreter cell's rules and reports each layer", function()
    local sb <close> = sandbox.spawn({ policy = "reloadable", imports = { "socket" } })
    local other <close> = sandbox.spawn({ policy = DENY_9 }) -- not from the name
    sb:exec(PROBE .. "post(probe())")
    assert.are.equal(111, sb:recv(5)) -- allowed: ECONNREFUSED
    local events = {}
    sandbox.on("reload", function(ev) events[#events + 1] = ev end)
    local report = sandbox.policy.reload("reloadable", DENY_9)
    assert.are.equal(1, #report)
    assert.are.equal(sb.name, report[1].cell)
    assert.are.equal("applied", report[1].layers["python-guard"])
    assert.are.equal(layer_state(sb, "bpf") == "active" and "applied" or "not guarded",
                     report[1].layers.bpf)
    sb:exec("post(probe())")
    assert.are.equal("denied", sb:recv(5))
    assert.are.equal("reloadable", events[#events].policy)
    assert.are.same(report, events[#events].cells)
  end)

  it("changes nothing when the new policy does not compile", function()
    local sb <close> = sandbox.spawn({ policy = "reloadable" })
    sb:exec(PROBE .. "post(probe())")
    assert.are.equal(111, sb:recv(5))
    assert.are.equal("policy", err_of(sandbox.policy.reload, "reloadable",
                                      { net = { { connect = "nowhere" } } }).kind)
    sb:exec("post(probe())")
    assert.are.equal(111, sb:recv(5))
  end)

  it("says restart needed for what a running cell cannot loosen", function()
    local sb <close> = sandbox.spawn({ policy = "reloadable" })
    local report = sandbox.policy.reload("reloadable", {
      imports = { "socket" }, net = ALLOW_9.net, fs = { { read = "/srv" } } })
    assert.are.equal("restart needed", report[1].layers.landlock)
    assert.is_true(report[1].restart_needed)
  end)

  it("flips a process cell's BPF rules atomically under a connect hammer", function()
    local sb <close> = sandbox.spawn({ backend = "process", policy = "reloadable",
                                       imports = { "time", "ctypes" } })
    if layer_state(sb, "bpf") ~= "active" then
      return print("SKIP: the BPF guard is not active here")
    end
    -- Past the python-guard with libc: only the BPF guard decides. A
    -- whole ALLOW_9 gives ECONNREFUSED, a whole DENY_9 gives EPERM;
    -- anything else would be neither policy.
    sb:start_exec([[
import ctypes, socket, time
libc = ctypes.CDLL(None, use_errno=True)
addr = (ctypes.c_ubyte * 16)(2, 0, 0, 9, 127, 0, 0, 1)
seen = {}
start = time.monotonic()  # 1.5 s, longer until both policies were seen
while time.monotonic() < start + 10 and (time.monotonic() < start + 1.5 or len(seen) < 2):
    s = socket.socket()
    libc.connect(s.fileno(), addr, 16)
    e = ctypes.get_errno()
    seen[e] = seen.get(e, 0) + 1
    s.close()
post(sorted(seen))
]])
    local flips, done = 0, false
    while not done do
      sandbox.policy.reload("reloadable", flips % 2 == 0 and DENY_9 or ALLOW_9)
      flips = flips + 1
      done = sb:result(0)
    end
    assert.is_true(flips >= 4)
    assert.are.same({ 1, 111 }, sb:recv(5)) -- EPERM and ECONNREFUSED only
  end)

  -- Point 5 of issue 10: a reload reaches a process cell's own guard.
  describe("on a process cell", function()
    -- connect_ex to 127.0.0.1:port: the guard's PermissionError, Landlock's
    -- EACCES (13) and BPF's EPERM (1) all say 'denied'; 111 is allowed.
    local PORT_PROBE = [[
import socket
def probe(port):
    s = socket.socket()
    try:
        e = s.connect_ex(('127.0.0.1', port))
        return 'denied' if e in (1, 13) else e
    except PermissionError:
        return 'denied'
    finally:
        s.close()
]]

    it("moves a net rule in both layers at once (no restart for it)", function()
      local sb <close> = sandbox.spawn({ backend = "process", policy = "reloadable" })
      sb:exec(PORT_PROBE .. "post(probe(9))")
      assert.are.equal(111, sb:recv(5))
      local report = sandbox.policy.reload("reloadable", {
        imports = { "socket" }, net = { { connect = "127.0.0.1:10" } } })
      assert.are.equal("applied", report[1].layers["python-guard"])
      sb:exec("post(probe(9))")
      assert.are.equal("denied", sb:recv(5)) -- the old port: no layer allows it
      sb:exec("post(probe(10))")
      if layer_state(sb, "bpf") == "active" then
        assert.are.equal("applied", report[1].layers.bpf)
        assert.are.equal("unchanged", report[1].layers.landlock)
        assert.are.equal(111, sb:recv(5)) -- the new port: every layer allows it
      else
        -- Landlock keeps its ports: the cell has what both policies allow
        assert.are.equal("restart needed", report[1].layers.landlock)
        assert.are.equal("denied", sb:recv(5))
      end
    end)

    it("leaves a cell needing a restart more restricted than old and new", function()
      local dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. dir .. "/a " .. dir .. "/b")
      for _, sub in ipairs({ "a", "b" }) do
        local f = assert(io.open(dir .. "/" .. sub .. "/f", "w"))
        f:write(sub)
        f:close()
      end
      write_policy("fsreload", 'return { fs = { { read = "' .. dir .. '/a/**" } } }')
      local READ = "def read(p):\n    try:\n        return open(p).read()\n"
                   .. "    except PermissionError:\n        return 'denied'\n"
      local sb <close> = sandbox.spawn({ backend = "process", policy = "fsreload" })
      sb:exec(READ .. "post(read('" .. dir .. "/a/f'))")
      assert.are.equal("a", sb:recv(5))
      local report = sandbox.policy.reload("fsreload", { fs = { { read = dir .. "/b/**" } } })
      assert.are.equal("restart needed", report[1].layers.landlock)
      assert.are.equal("applied", report[1].layers["python-guard"])
      assert.is_true(report[1].restart_needed)
      -- old allowed a, new allows b: now neither (the guard has the new
      -- rules, Landlock the old), never both
      sb:exec("post(read('" .. dir .. "/a/f'))")
      assert.are.equal("denied", sb:recv(5))
      sb:exec("post(read('" .. dir .. "/b/f'))")
      assert.are.equal("denied", sb:recv(5))
      os.execute("rm -rf " .. dir)
    end)

    it("reaches a busy cell before its next request", function()
      local sb <close> = sandbox.spawn({ backend = "process", policy = "reloadable",
                                         imports = { "time" } })
      sb:exec(PORT_PROBE)
      sb:start_exec("import time\ntime.sleep(0.3)\npost(probe(9))")
      local report = sandbox.policy.reload("reloadable", DENY_9)
      assert.are.equal("at the next request", report[1].layers["python-guard"])
      sb:result()
      sb:recv(5) -- the running request decided with what it had
      sb:exec("post(probe(9))")
      assert.are.equal("denied", sb:recv(5))
      sandbox.policy.reload("reloadable", ALLOW_9) -- idle again: at once
      sb:exec("post(probe(9))")
      assert.are.equal(111, sb:recv(5))
    end)
  end)
end)
