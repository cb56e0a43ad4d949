-- The module's surface: constants, spawn's option checking, names, backends.
local sandbox = require "isolate"

local err_of = require("support").err_of

local function spawn_err(opts) return err_of(sandbox.spawn, opts) end

describe("isolate module", function()
  it("lists the backends in contract order", function()
    assert.are.same({ "subinterpreter", "process", "microvm" }, sandbox.BACKENDS)
    assert.are.equal("subinterpreter", sandbox.DEFAULT_BACKEND)
  end)

  it("takes its backends, modes and pool bounds from C, one copy each", function()
    local core = require "isolate.core"
    local policy = require "isolate.policy"
    assert.are.same(core.backends, sandbox.BACKENDS)
    assert.are.equal(core.backends, policy.BACKENDS) -- the same table
    assert.are.same({ "dev", "hardened", "compat", "learn" }, core.modes)
    assert.are.same({ warm_pool = 256, process_pool = 64, process_pool_default = 2,
                      name = 64 }, core.limits)
    -- the bounds are the ones both layers enforce: Lua refuses one past
    -- them, and C refuses what Lua would let through
    for _, k in ipairs({ "warm_pool", "process_pool" }) do
      assert.are.equal("invalid_argument",
                       err_of(sandbox.configure, { [k] = core.limits[k] + 1 }).kind)
    end
    assert.are.equal("invalid_argument",
                     err_of(core.process_pool_configure, core.limits.process_pool + 1).kind)
    assert.are.equal("invalid_argument",
                     err_of(core.pool_configure, core.limits.warm_pool + 1).kind)
    assert.are.equal("invalid_argument", spawn_err({ name = string.rep("a", core.limits.name + 1) }).kind)
    for _, m in ipairs(core.modes) do
      sandbox.configure({ mode = m })
      assert.are.equal(m, sandbox.info().mode)
      assert.are.equal(m == "hardened", sandbox.info().hardened)
    end
    sandbox.configure({ mode = "dev" })
  end)

  it("reports what this build can run, never microvm", function()
    assert.are.same({ "subinterpreter", "process" }, sandbox.IMPLEMENTED)
  end)

  it("exposes null, array and bytes helpers", function()
    assert.are.equal("userdata", type(sandbox.null))
    local t = {}
    assert.are.equal(t, sandbox.array(t))
    assert.are.equal("table", type(sandbox.bytes("x")))
  end)

  it("formats errors as isolate: <kind>: <message>", function()
    local e = spawn_err(42)
    assert.are.equal("isolate: invalid_argument: " .. e.message, tostring(e))
  end)
end)

describe("spawn option checking", function()
  it("refuses a non-table argument", function()
    for _, v in ipairs({ 1, "x", true }) do
      assert.are.equal("invalid_argument", spawn_err(v).kind)
    end
    assert.are.equal("invalid_argument", err_of(sandbox.spawn).kind)
  end)

  it("refuses an unknown option such as a typo", function()
    assert.are.equal("invalid_argument", spawn_err({ bakend = "process" }).kind)
    assert.are.equal("invalid_argument", spawn_err({ [1] = "x" }).kind)
  end)

  it("refuses unknown and non-string backends, listing the valid ones", function()
    for _, b in ipairs({ "nope", "Subinterpreter", 3, true, {} }) do
      local e = spawn_err({ backend = b })
      assert.are.equal("invalid_argument", e.kind)
      assert.are.same({ "subinterpreter", "process", "microvm" }, e.valid)
    end
  end)

  it("spawns process cells: a separate process", function()
    local sb <close> = sandbox.spawn({ backend = "process", imports = { "os" } })
    assert.are.equal("process", sb.backend)
    sb:exec("import os; post(os.getpid())")
    local pid = sb:recv(5)
    assert.is_number(pid)
    -- closed here, not by the GC: a host fd left open is what
    -- attack_fds_spec checks no guest can reopen (in one busted process)
    local stat <close> = assert(io.open("/proc/self/stat"))
    assert.are_not.equal(tonumber(stat:read("l"):match("^%d+")), pid)
  end)

  it("always fails closed for microvm, naming what is missing", function()
    local e = spawn_err({ backend = "microvm" })
    assert.are.equal("not_implemented", e.kind)
    -- what it lacks, each as this host has it: no build has a runtime
    local kvm = io.open("/dev/kvm", "r+")
    if kvm then kvm:close() end
    local vmm = os.execute("{ command -v firecracker || command -v cloud-hypervisor "
                           .. "|| command -v qemu-system-x86_64; } >/dev/null 2>&1")
    local want = { "runtime" }
    if not kvm then want[#want + 1] = "/dev/kvm" end
    if not vmm then want[#want + 1] = "vmm" end
    assert.are.same(want, e.missing)
  end)

  it("never creates a cell when a backend is refused", function()
    spawn_err({ backend = "microvm", name = "never" })
    assert.is_nil(sandbox.list().never)
  end)

  it("checks names", function()
    for _, n in ipairs({ "", "a b", "x/y", "é", string.rep("a", 65), 7, {} }) do
      assert.are.equal("invalid_argument", spawn_err({ name = n }).kind)
    end
    local sb <close> = sandbox.spawn({ name = string.rep("a", 64) })
    assert.are.equal(string.rep("a", 64), sb.name)
  end)

  it("refuses a name used by a live cell and frees it on close", function()
    local a = sandbox.spawn({ name = "dup" })
    assert.are.equal("invalid_argument", spawn_err({ name = "dup" }).kind)
    a:close()
    local b <close> = sandbox.spawn({ name = "dup" })
    assert.are.equal("dup", b.name)
  end)

  it("generates distinct names when omitted", function()
    local a <close> = sandbox.spawn({})
    local b <close> = sandbox.spawn({})
    assert.are_not.equal(a.name, b.name)
    assert.is_truthy(a.name:match("^[A-Za-z0-9_-]+$"))
    assert.are.equal("subinterpreter", a.backend)
  end)

  it("checks imports and capabilities", function()
    assert.are.equal("invalid_argument", spawn_err({ imports = "math" }).kind)
    assert.are.equal("invalid_argument", spawn_err({ imports = { 1 } }).kind)
    assert.are.equal("invalid_argument", spawn_err({ imports = { "a..b" } }).kind)
    assert.are.equal("invalid_argument", spawn_err({ imports = { x = "math" } }).kind)
    assert.are.equal("invalid_argument", spawn_err({ capabilities = { true } }).kind)
  end)

  it("accepts wall_ms and refuses limits a subinterpreter cell cannot enforce", function()
    local sb <close> = sandbox.spawn({ limits = { wall_ms = 1000 } })
    assert.are.equal("invalid_argument", spawn_err({ limits = { wal_ms = 1 } }).kind)
    assert.are.equal("invalid_argument", spawn_err({ limits = { wall_ms = 0 } }).kind)
    assert.are.equal("invalid_argument", spawn_err({ limits = { wall_ms = 1.5 } }).kind)
    assert.are.equal("invalid_argument", spawn_err({ limits = { wall_ms = "1" } }).kind)
    assert.are.equal("invalid_argument", spawn_err({ limits = 5 }).kind)
    local sb2 <close> = sandbox.spawn({ limits = { cpu_ms = 1000, output_bytes = 100 } })
    local sb3 <close> = sandbox.spawn({ limits = { mem = "64MiB" } })
    for _, k in ipairs({ "open_files", "processes" }) do
      assert.are.equal("not_implemented", spawn_err({ limits = { [k] = 1 } }).kind)
    end
  end)

  it("resolves policies and fails closed on unknown ones", function()
    assert.are.equal("policy", spawn_err({ policy = "no-such-policy" }).kind)
    assert.are.equal("policy", spawn_err({ policy = { fss = {} } }).kind)
    assert.are.equal("invalid_argument", spawn_err({ policy = 42 }).kind)
    local sb <close> = sandbox.spawn({ policy = "stdlib.readonly" })
    sb:exec("import json; post(json.dumps([1]))")
    assert.are.equal("[1]", sb:recv(1))
  end)

  it("refuses policy rules a subinterpreter cell cannot enforce", function()
    assert.are.equal("not_implemented", spawn_err({ policy = { limits = { open_files = 8 } } }).kind)
  end)

  it("applies syscalls.deny on a sub-interpreter cell's thread (EPERM)", function()
    if not require("isolate.core").kernel().seccomp then return print("SKIP: no seccomp") end
    local sb <close> = sandbox.spawn({ imports = { "os" }, policy = { syscalls = { deny = { "getcwd" } } } })
    sb:exec("import os\ntry:\n    os.getcwd()\nexcept OSError as e:\n    post(e.errno)")
    assert.are.equal(1, sb:recv(5))
  end)

  it("accepts every limit and syscalls.deny on process cells", function()
    -- (an ASan worker reserves terabytes of address space: no RLIMIT_AS)
    local mem = not sandbox.info().sanitized and "1GiB" or nil
    local sb <close> = sandbox.spawn({ backend = "process",
      policy = { syscalls = { deny = { "getcwd" } } },
      limits = { cpu_ms = 5000, mem = mem, open_files = 64, output_bytes = "1MiB", wall_ms = 5000 } })
    sb:exec("post(1)")
    assert.are.equal(1, sb:recv(5))
  end)

  it("refuses limits.processes where no pids controller can enforce it", function()
    local f = io.open("/sys/fs/cgroup/unified/cgroup.controllers") or io.open("/sys/fs/cgroup/cgroup.controllers")
    local controllers = f and f:read("a") or ""
    if f then f:close() end
    if controllers:find("pids", 1, true) then
      print("pids controller present: limits.processes is enforceable here")
      return
    end
    assert.are.equal("not_implemented",
      spawn_err({ backend = "process", limits = { processes = 4 } }).kind)
  end)

  it("merges spawn options on top of the policy", function()
    local sb <close> = sandbox.spawn({ policy = "compute-only", imports = { "json" } })
    sb:exec("import json, math; post(json.dumps(math.floor(2.5)))")
    assert.are.equal("2", sb:recv(1))
  end)
end)

describe("sandbox.list", function()
  it("returns live cells keyed by name", function()
    local sb = sandbox.spawn({ name = "listed" })
    assert.are.equal(sb, sandbox.list().listed)
    sb:close()
    assert.is_nil(sandbox.list().listed)
  end)
end)

describe("sandbox.capability", function()
  it("checks its arguments", function()
    assert.are.equal("invalid_argument", err_of(sandbox.capability, 1, print).kind)
    assert.are.equal("invalid_argument", err_of(sandbox.capability, "kv", "nope").kind)
  end)
end)

describe("hardened mode", function()
  after_each(function() sandbox.configure({ mode = "dev" }) end)

  -- Without thread cgroups (a Lua app that did not opt in) a cell thread's
  -- cgroup layer is missing: dev warns, hardened refuses and closes it.
  it("refuses a cell that came up missing a layer; dev warns", function()
    if sandbox.info().thread_cgroups then
      return print("SKIP: this process already has thread cgroups")
    end
    local warnings = 0
    sandbox.on("warning", function() warnings = warnings + 1 end)
    local sb <close> = sandbox.spawn({ name = "dev-missing" })
    sb:exec("post(1)") -- the warning comes once the confinement is done
    assert.are.equal(1, warnings)
    sb:exec("post(2)")
    assert.are.equal(1, warnings)
    sb:close()
    sandbox.configure({ mode = "hardened" })
    assert.are.equal("unenforceable", spawn_err({ name = "hard-missing" }).kind)
    assert.is_nil(sandbox.list()["hard-missing"]) -- closed, not handed out
  end)
end)
