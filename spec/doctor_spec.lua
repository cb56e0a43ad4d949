-- `luaisolate doctor`: every probe reported, the grade adds up, the layers
-- this kernel has are found (checked against independent evidence), exit
-- statuses, and nothing left behind (cgroup directories, BPF programs).
-- Needs ISOLATE_HOST (path of the luaisolate binary); ctest sets it.
local support = require "support"
local HOST = os.getenv("ISOLATE_HOST")

local PROBES = { "python", "seccomp", "no_new_privs", "landlock", "bpf",
                 "cgroup", "userns", "kvm", "vmm" }

local q, slurp = support.quote, support.slurp

local function host(...) return support.run(HOST, ...) end

-- stdout of a shell command, or nil when it failed.
local function shell(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local s = p:read("a")
  local ok = p:close()
  return ok and s or nil
end

local function skip(why) print("# doctor_spec: skipped: " .. why) end

local decode = support.decode_json

-- ---- independent evidence about this kernel ----------------------------------

local function cgroup2_mount()
  for line in io.lines("/proc/self/mountinfo") do
    local mp, fstype = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- (%S+)")
    if fstype == "cgroup2" then return (mp:gsub("\\(%d%d%d)", function(o)
      return string.char(tonumber(o, 8))
    end)) end
  end
end

-- Can this process make (and remove) a directory in the cgroup2 mount?
local function cgroup_writable(mount)
  local dir = q(string.format("%s/doctor-spec-%d", mount, math.random(1 << 30)))
  return shell("mkdir " .. dir .. " && rmdir " .. dir) ~= nil
end

-- Landlock's ABI by the raw system call (python3's ctypes), or 0.
local function landlock_abi()
  local lsm = slurp("/sys/kernel/security/lsm")
  if lsm and not lsm:find("landlock", 1, true) then return 0 end
  local abi = shell([[python3 -c 'import ctypes; print(ctypes.CDLL(None).syscall(444, None, 0, 1))']])
  return tonumber(abi or "") or 0
end

local function kernel_has_seccomp_filter()
  return (slurp("/proc/self/status") or ""):find("\nSeccomp_filters:", 1, true) ~= nil
end

local function bpftool_says(what)
  local out = shell("bpftool feature probe kernel")
  if not out then return nil end
  return out:find(what .. " is available", 1, true) ~= nil
end

-- Directories under <cgroup2>/luaisolate that a doctor run makes.
local function doctor_cgroups(mount)
  local out = shell("ls -1 " .. q(mount .. "/luaisolate")) or ""
  local found = {}
  for name in out:gmatch("[^\n]+") do
    if name:match("^doctor%-") then found[#found + 1] = name end
  end
  return found
end

-- How many BPF programs of a type named iso_probe (what doctor loads) are
-- loaded, or nil without bpftool.
local function probe_programs(kind)
  local out = shell("bpftool prog show")
  if not out then return nil end
  local n = 0
  for line in out:gmatch("[^\n]+") do
    if line:match("^%d+: " .. kind .. " +name iso_probe ") then n = n + 1 end
  end
  return n
end

-- ---- the points, counted here from the probes' fields ------------------------

local function has(list, word)
  for _, w in ipairs(list) do if w == word then return true end end
  return false
end

local function points_of(d)
  local p = {
    d.seccomp.ok, d.landlock.fs, d.landlock.net, d.landlock.scope,
    d.bpf.cgroup_sock_addr, d.bpf.lsm, d.cgroup.writable, d.cgroup.threaded,
    has(d.cgroup.controllers, "pids") and has(d.cgroup.controllers, "memory"),
    d.kvm.ok and d.vmm.ok,
  }
  local n = 0
  for i = 1, 10 do if p[i] then n = n + 1 end end
  return n
end

local function hardened_ready(d)
  return d.seccomp.ok and d.landlock.fs and d.no_new_privs.ok
    and (d.bpf.cgroup_sock_addr or d.landlock.net)
end

if not HOST then
  print("# doctor_spec: skipped, ISOLATE_HOST (path of the luaisolate binary) is not set")
  return
end

describe("luaisolate doctor", function()
  local report -- the decoded --json output of one run, shared by the tests

  local function doctor_json()
    if not report then
      local code, out, err = host("doctor", "--json")
      assert.are.equal(0, code, err)
      report = decode(out)
    end
    return report
  end

  it("reports every probe with ok, detail and, when missing, advice", function()
    local d = doctor_json()
    for _, name in ipairs(PROBES) do
      local p = d[name]
      assert.are.equal("table", type(p), name)
      assert.are.equal("boolean", type(p.ok), name .. ".ok")
      assert.are.equal("string", type(p.detail), name .. ".detail")
      if not p.ok then assert.are.equal("string", type(p.advice), name .. ".advice") end
    end
    assert.are.equal("string", type(d.python.version))
    assert.is_true(d.python.cell_mode == "own GIL" or d.python.cell_mode == "shared GIL")
    assert.are.equal("number", type(d.landlock.abi))
    for _, f in ipairs({ "fs", "net", "scope" }) do
      assert.are.equal("boolean", type(d.landlock[f]), "landlock." .. f)
    end
    for _, f in ipairs({ "cgroup_sock_addr", "lsm", "ringbuf" }) do
      assert.are.equal("boolean", type(d.bpf[f]), "bpf." .. f)
    end
    assert.are.equal("table", type(d.cgroup.controllers))
    assert.are.equal("boolean", type(d.cgroup.threaded))
  end)

  it("grades one point per layer present, with advice for each missing one", function()
    local d = doctor_json()
    assert.are.equal("integer", math.type(d.grade))
    assert.is_true(d.grade >= 0 and d.grade <= 10)
    assert.are.equal(points_of(d), d.grade)
    assert.are.equal(10 - d.grade, #d.missing)
    for _, m in ipairs(d.missing) do
      assert.are.equal("string", type(m.point))
      assert.is_truthy(m.advice ~= nil and #m.advice > 0, m.point)
    end
    assert.are.equal(hardened_ready(d), d.hardened.ok)
  end)

  it("finds the layers this kernel has", function()
    local d = doctor_json()
    if kernel_has_seccomp_filter() then
      assert.is_true(d.seccomp.ok, d.seccomp.detail)
      assert.is_true(d.no_new_privs.ok, d.no_new_privs.detail)
    else
      skip("seccomp: /proc/self/status has no Seccomp_filters line")
    end
    local abi = landlock_abi()
    if abi >= 1 then
      assert.are.equal(abi, d.landlock.abi)
      assert.is_true(d.landlock.fs, d.landlock.detail)
      assert.are.equal(abi >= 4, d.landlock.net, d.landlock.detail)
      assert.are.equal(abi >= 6, d.landlock.scope, d.landlock.detail)
    else
      skip("landlock: the kernel reports no Landlock ABI")
    end
    local mount = cgroup2_mount()
    if mount and cgroup_writable(mount) then
      assert.are.equal(mount, d.cgroup.mount)
      assert.is_true(d.cgroup.writable, d.cgroup.detail)
      if bpftool_says("program_type cgroup_sock_addr") then
        assert.is_true(d.bpf.cgroup_sock_addr, d.bpf.detail)
      else
        skip("bpf: bpftool is missing or reports no cgroup_sock_addr programs")
      end
    else
      skip("cgroup, bpf: no cgroup v2 mount, or this process cannot write to it")
    end
  end)

  it("prints a readable report graded N/10 with one advice line per missing point", function()
    local d = doctor_json()
    local code, out, err = host("doctor")
    assert.are.equal(0, code, err)
    assert.is_truthy(out:match("^luaisolate doctor: [^\n]+\n"), out)
    for _, name in ipairs(PROBES) do
      assert.is_truthy(out:match("\n  %a+ +" .. name .. " "), name .. " line in:\n" .. out)
    end
    assert.are.equal(d.grade, tonumber(out:match("\ngrade: (%d+)/10\n")), out)
    assert.are.equal(10 - d.grade, select(2, out:gsub("\n  advice: ", "")), out)
  end)

  it("exits 1 with --mode hardened exactly when a required layer is missing", function()
    local code, out, err = host("doctor", "--mode", "hardened", "--json")
    local d = decode(out)
    assert.are.equal(hardened_ready(d) and 0 or 1, code, err)
    code = host("doctor", "--mode=dev")
    assert.are.equal(0, code)
  end)

  it("exits 2 on a usage error, like check", function()
    local code, out, err = host("doctor", "--bogus")
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.is_truthy(err:find("--bogus", 1, true), err) -- the reason names it
    assert.is_truthy(err:find("usage: luaisolate doctor", 1, true), err)
    assert.are.equal(2, (host("doctor", "--mode", "paranoid")))
    assert.are.equal(2, (host("doctor", "--mode")))
    assert.are.equal(2, (host("doctor", "extra")))
    code, out = host("doctor", "--help")
    assert.are.equal(0, code)
    assert.is_truthy(out:find("usage: luaisolate doctor", 1, true))
  end)

  it("leaves no cgroup directory and no BPF program behind", function()
    local mount = cgroup2_mount()
    local before = probe_programs("cgroup_sock_addr")
    local lsm_before = probe_programs("lsm")
    assert.are.equal(0, (host("doctor", "--json")))
    if mount then
      assert.are.same({}, doctor_cgroups(mount))
    else
      skip("cgroup leftovers: no cgroup v2 mount")
    end
    if not before then return skip("BPF leftovers: bpftool prog show did not run") end
    -- A closed program is freed after an RCU grace period: allow a moment.
    local after, lsm_after
    for _ = 1, 50 do
      after, lsm_after = probe_programs("cgroup_sock_addr"), probe_programs("lsm")
      if after <= before and lsm_after <= lsm_before then break end
      os.execute("sleep 0.02")
    end
    assert.are.equal(before, after, "cgroup_sock_addr programs named iso_probe")
    assert.are.equal(lsm_before, lsm_after, "lsm programs named iso_probe")
  end)

  it("is core.probe() in the binding", function()
    local core = require "isolate.core"
    local probes = core.probe()
    for _, name in ipairs(PROBES) do
      assert.are.equal("boolean", type(probes[name].ok), name)
    end
    assert.are.equal(doctor_json().landlock.abi, probes.landlock.abi)
  end)
end)
