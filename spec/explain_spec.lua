-- Explaining or checking a policy never loads a BPF program and never
-- makes a cgroup (issue 11): `luaisolate check --explain` and a script that
-- compiles, checks and explains policies run under strace, which records
-- every bpf() and mkdir the process and its threads make. A control run
-- that asks core.kernel() (what spawn does) must show the loads, so the
-- count can fail. Needs root and strace.
local support = require "support"

local HOST = os.getenv("ISOLATE_HOST")
local LUA = os.getenv("ISOLATE_LUA") or "lua5.4"
local SOURCE = os.getenv("ISOLATE_SOURCE_DIR") or "."
local q = support.quote

local function have_strace()
  return os.execute("command -v strace >/dev/null 2>&1")
end

-- The cgroup v2 mount point, or nil.
local function cgroup_mount()
  for line in io.lines("/proc/self/mountinfo") do
    local mp = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- cgroup2 ")
    if mp then return mp end
  end
end

-- argv run under strace: {loads=, attaches=, cgroup_dirs=, code=}. loads
-- counts BPF_PROG_LOAD, attaches BPF_LINK_CREATE and BPF_PROG_ATTACH,
-- cgroup_dirs the mkdir calls under the cgroup mount.
local function traced(argv)
  local log = os.tmpname()
  local cmd = { "strace", "-f", "-qq", "-e", "trace=bpf,mkdir,mkdirat", "-o", log }
  for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
  for i, a in ipairs(cmd) do cmd[i] = q(a) end
  local _, how, code = os.execute(table.concat(cmd, " ") .. " </dev/null >/dev/null 2>&1")
  assert.are.equal("exit", how)
  local mount = cgroup_mount()
  local r = { loads = 0, attaches = 0, cgroup_dirs = 0, code = code }
  for line in io.lines(log) do
    if line:find("BPF_PROG_LOAD", 1, true) then r.loads = r.loads + 1 end
    if line:find("BPF_LINK_CREATE", 1, true) or line:find("BPF_PROG_ATTACH", 1, true) then
      r.attaches = r.attaches + 1
    end
    if line:find("mkdir", 1, true) and mount and line:find('"' .. mount, 1, true) then
      r.cgroup_dirs = r.cgroup_dirs + 1
    end
  end
  os.remove(log)
  return r
end

local EXPLAIN_ALL = [[
local policy = require "isolate.policy"
local p = policy.compile({
  version = 1, imports = { "json" },
  fs = { { read = "/srv/data" }, { write = "/tmp/out/*.csv" }, { deny = "/srv/data/secret" } },
  net = { { connect = "10.0.0.0/8:443" }, { bind = "127.0.0.1:8080" }, { deny = "10.1.0.0/16:*" },
          { connect = "unix:/run/x.sock" } },
  syscalls = { deny = { "ptrace" } },
  limits = { wall_ms = 1000, mem = "64MiB" },
})
local rows = 0
for _, b in ipairs(policy.BACKENDS) do rows = rows + #p:explain(b) end
assert(p:check("read", "/srv/data/a"))
assert(p:check("connect", "10.0.0.1:443"))
for _, name in ipairs({ "web-scraper", "readonly-fs", "ml-inference", "compute-only" }) do
  policy.load(name):explain("process")
end
if arg[1] == "kernel" then require("isolate.core").kernel() end
io.stdout:write(rows, "\n")
]]

local function script_file()
  local path = os.tmpname() .. ".lua"
  support.write(path, EXPLAIN_ALL)
  return path
end

describe("explaining and checking a policy", function()
  if not have_strace() or not cgroup_mount() then
    return print("SKIP: explain_spec needs strace and cgroup v2")
  end

  it("loads no BPF program and makes no cgroup in `luaisolate check`", function()
    if not HOST then return print("SKIP: needs ISOLATE_HOST") end
    for _, backend in ipairs({ "subinterpreter", "process" }) do
      local r = traced({ HOST, "check", "--explain", "--backend", backend,
                         SOURCE .. "/policies/web-scraper.lua",
                         SOURCE .. "/policies/readonly-fs.lua" })
      assert.are.same({ loads = 0, attaches = 0, cgroup_dirs = 0, code = 0 }, r)
    end
  end)

  it("loads no BPF program and makes no cgroup in Policy:explain/check", function()
    if os.getenv("ISOLATE_SANITIZED") then
      return print("SKIP: the instrumented module needs the host, which configures cgroups")
    end
    local script = script_file()
    local r = traced({ LUA, script })
    assert.are.same({ loads = 0, attaches = 0, cgroup_dirs = 0, code = 0 }, r)
    -- the control: core.kernel() loads and attaches the network guard, and
    -- this trace sees it
    local k = traced({ LUA, script, "kernel" })
    assert.are.equal(0, k.code)
    if require("isolate.core").kernel().bpf then
      assert.is_true(k.loads > 0)
      assert.is_true(k.attaches > 0)
    end
    os.remove(script)
  end)

  it("says what the kernel can do as core.kernel() does, without loading", function()
    local core = require "isolate.core"
    local look = core.kernel_look()
    local real = core.kernel()
    assert.are.same({ real.landlock, real.seccomp, real.bpf },
                    { look.landlock, look.seccomp, look.bpf })
    -- once this process has opened the guard, the look is its outcome
    assert.is_false(core.kernel_look().bpf_looked)
  end)
end)
