-- Kernel layers on sub-interpreter cells (defense in depth, not a
-- boundary) and the rollout modes. These run for real: root, Landlock,
-- seccomp, threaded cgroups. A layer this kernel lacks is skipped with the
-- reason the cell itself reports.
local sandbox = require "isolate"
local support = require "support"
local err_of = support.err_of

sandbox.configure({ thread_cgroups = true })

local row = support.row

local active = support.active

describe("a sub-interpreter cell's thread", function()
  it("reports every kernel layer with its scope", function()
    local sb <close> = sandbox.spawn({})
    for _, layer in ipairs({ "python-guard", "cgroup", "no_new_privs", "landlock_fs",
                             "landlock_net", "landlock_scope", "seccomp" }) do
      local r = row(sb, layer)
      assert.is_table(r, layer)
      assert.are.equal("cell thread", r.scope)
      assert.is_truthy(({ active = 1, missing = 1, ["not needed"] = 1 })[r.state])
    end
  end)

  it("is in a threaded cgroup of its own", function()
    if not active("cgroup") then return end
    local a <close> = sandbox.spawn({ imports = { "os" }, policy = { fs = { { read = "/proc" } } } })
    local b <close> = sandbox.spawn({ imports = { "os" }, policy = { fs = { { read = "/proc" } } } })
    local code = "post(open('/proc/thread-self/cgroup').read().strip())"
    a:exec(code)
    b:exec(code)
    local ca, cb = a:recv(5), b:recv(5)
    assert.are_not.equal(ca, cb)
    assert.is_truthy(ca:find("/luaisolate/host-", 1, true))
    local own = io.open("/proc/thread-self/cgroup"):read("a")
    assert.is_falsy(own:find(ca:sub(4), 1, true)) -- the host thread is not in it
  end)

  it("is confined exactly once, also when it comes from the warm pool", function()
    sandbox.configure({ warm_pool = 1 })
    for _ = 1, 200 do
      if sandbox.pool().ready >= 1 then break end
      require("isolate.core").sleep(0.01)
    end
    local sb <close> = sandbox.spawn({})
    sandbox.configure({ warm_pool = 0 })
    assert.are.equal("active", row(sb, "seccomp").state)
    assert.are.equal("active", row(sb, "no_new_privs").state)
    sb:exec("post(1)")
    assert.are.equal(1, sb:recv(5))
  end)
end)

describe("warm cells with different syscalls.deny", function()
  after_each(function() sandbox.configure({ warm_pool = 0 }) end)

  -- The seccomp program is compiled once per deny list and installed from
  -- a cache: each cell must still get exactly its own list.
  it("deny exactly what their own policy denies", function()
    if not active("seccomp") then return end
    sandbox.configure({ warm_pool = 3 })
    local code = [[
import os
def errno_of(f):
    try:
        f()
        return 0
    except OSError as e:
        return e.errno
# os.getppid() does not check for errors: a denied call returns -1
post([1 if os.getppid() < 0 else 0, errno_of(lambda: os.getpgid(0))])
]]
    local function spawn_denying(list)
      for _ = 1, 400 do
        if sandbox.pool().ready >= 1 then break end
        require("isolate.core").sleep(0.005)
      end
      local taken = sandbox.pool().taken
      local sb = sandbox.spawn({ imports = { "os" }, policy = { syscalls = { deny = list } } })
      assert.are.equal(taken + 1, sandbox.pool().taken) -- a warm cell
      sb:exec(code)
      local got = sb:recv(5)
      sb:close()
      return got
    end
    assert.are.same({ 1, 0 }, spawn_denying({ "getppid" }))
    assert.are.same({ 0, 1 }, spawn_denying({ "getpgid" }))
    assert.are.same({ 1, 0 }, spawn_denying({ "getppid" })) -- from the cache
    assert.are.same({ 1, 1 }, spawn_denying({ "getpgid", "getppid" }))
    assert.are.same({ 0, 0 }, spawn_denying({}))
  end)
end)

describe("an escaped guest in a sub-interpreter cell", function()
  -- os.mkfifo is a call the python-guard does not wrap (as an escaped
  -- guest's own code would not be): only Landlock stands in its way.
  -- Exec, fork and connect are covered on a bare thread in spec/c/test_confine.c.
  local inside = os.tmpname()

  before_each(function()
    os.remove(inside)
    os.execute("mkdir -p " .. inside)
  end)
  after_each(function() os.execute("rm -rf " .. inside) end)

  it("gets EACCES from Landlock for a file outside its policy", function()
    if not active("landlock_fs") then return end
    local sb <close> = sandbox.spawn({ imports = { "os" }, policy = { fs = { { allow = inside } } } })
    local denials, counting = 0, true
    sandbox.on("denial", function() if counting then denials = denials + 1 end end)
    sb:exec(string.format([[
import os
os.mkfifo(%q)
try:
    os.mkfifo(%q)
    post(0)
except OSError as e:
    post(e.errno)
]], inside .. "/fifo", inside .. "-outside-fifo"))
    assert.are.equal(13, sb:recv(5)) -- EACCES: the kernel, not the guard
    assert.are.equal(0, denials)
    counting = false
    assert.is_true(os.execute("test -p " .. inside .. "/fifo")) -- inside: made
  end)
end)

describe("rollout modes", function()
  after_each(function() sandbox.configure({ mode = "dev" }) end)

  it("dev: spawn proceeds and reports the mode", function()
    assert.are.equal("dev", sandbox.info().mode)
    local sb <close> = sandbox.spawn({ policy = { fs = { { read = "/etc/*.conf" } } } })
    assert.is_true(sb:is_open())
  end)

  it("hardened: refuses rules no kernel layer can enforce, naming each", function()
    sandbox.configure({ mode = "hardened" })
    local e = err_of(sandbox.spawn, { policy = { fs = { { read = "/etc/*.conf" },
                                                        { deny = "/etc/shadow" } } } })
    assert.are.equal("unenforceable", e.kind)
    assert.are.equal(2, #e.rules)
    local sb <close> = sandbox.spawn({ policy = { fs = { { read = "/usr/share" } } } })
    assert.are.equal("active", row(sb, "landlock_fs").state)
  end)

  it("compat: the seccomp list shrinks to the minimal set", function()
    if not active("seccomp") then return end
    local full <close> = sandbox.spawn({})
    sandbox.configure({ mode = "compat" })
    local compat <close> = sandbox.spawn({})
    assert.are.same({ "full", "compat" }, { row(full, "seccomp").list, row(compat, "seccomp").list })
    local n_full, n_compat = row(full, "seccomp").denied, row(compat, "seccomp").denied
    assert.is_true(math.type(n_compat) == "integer" and n_compat < n_full)
    assert.are.equal("compat", sandbox.info().mode)
    local proc <close> = sandbox.spawn({ backend = "process" })
    assert.are.equal("compat", row(proc, "seccomp").list)
  end)
end)

describe("a host that ends", function()
  local HOST = os.getenv("ISOLATE_HOST")

  local function cgroup_root()
    for line in io.lines("/proc/self/mountinfo") do
      local mp = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- cgroup2 ")
      if mp then return mp .. "/luaisolate" end
    end
  end

  -- Programs attached to the luaisolate cgroup (bpftool's own list).
  local function attached(root)
    local p = io.popen("bpftool cgroup show " .. root .. " 2>/dev/null")
    local n = 0
    for line in p:lines() do
      if line:match("^%s*%d+%s") then n = n + 1 end
    end
    p:close()
    return n
  end

  it("leaves no BPF program attached and no cgroup directory behind", function()
    local root = cgroup_root()
    if not HOST or not root or not os.execute("command -v bpftool >/dev/null") then
      return print("SKIP: needs ISOLATE_HOST, cgroup v2 and bpftool")
    end
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write([[
local a <close> = sandbox.spawn{ policy = { net = { { connect = "127.0.0.1:9" } } } }
local b <close> = sandbox.spawn{ backend = "process", policy = { net = { { connect = "127.0.0.1:9" } } } }
local active = 0
for _, sb in ipairs{ a, b } do
  for _, r in ipairs(sb:confinement()) do
    if r.layer == "bpf" and r.state == "active" then active = active + 1 end
  end
end
print(active, io.open("/proc/self/stat"):read("a"):match("^(%d+)"))
io.stdout:flush()
io.read("l") -- wait while the spec looks
]])
    f:close()
    local before = attached(root)
    local p = io.popen(HOST .. " run " .. script .. " > " .. script .. ".out", "w")
    local deadline = require("isolate.core").now() + 10
    local out
    repeat
      require("isolate.core").sleep(0.02)
      out = io.open(script .. ".out"):read("a")
    until out ~= "" or require("isolate.core").now() > deadline
    local during = attached(root)
    p:write("\n")
    p:close()
    os.remove(script)
    os.remove(script .. ".out")
    local active, pid = out:match("^(%d+)%s+(%d+)")
    if active ~= "2" then return print("SKIP: the BPF guard is not active: " .. out) end
    assert.is_true(during >= before + 4) -- connect4/6 and sendmsg4/6
    assert.are.equal(before, attached(root)) -- detached at exit
    -- its host directory (with the cell threads' cgroups) and its process
    -- cell's cgroup are gone
    assert.is_nil(io.open(root .. "/host-" .. pid))
    assert.is_nil(io.open(root .. "/cells-" .. pid))
    local left = io.popen("ls " .. root .. " | grep -c -e '-" .. pid .. "-' || true"):read("a")
    assert.are.equal(0, tonumber(left))
  end)
end)
