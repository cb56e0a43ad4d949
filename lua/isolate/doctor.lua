-- isolate.doctor: the `luaisolate doctor` subcommand. What this host can
-- enforce, found by trying each layer (isolate.core.probe, in short-lived
-- children), graded out of ten with one line of advice per missing point.
--
--   os.exit(require("isolate.doctor").doctor({ "--json" }))
--
-- Output goes through io.stdout / io.stderr at call time, so a caller can
-- swap them to capture it.
local core = require "isolate.core"
local cli = require "isolate.cli"

local doctor = {}

local EXIT_OK, EXIT_MISSING = 0, 1

-- The probes, in report order (the keys of core.probe()).
doctor.PROBES = { "python", "seccomp", "no_new_privs", "landlock", "bpf",
                  "cgroup", "userns", "kvm", "vmm" }

local function out(s) io.stdout:write(s) end

local function has(list, word)
  for _, w in ipairs(list or {}) do if w == word then return true end end
  return false
end

local function missing_controllers(p)
  local lack = {}
  for _, c in ipairs({ "pids", "memory" }) do
    if not has(p.cgroup.controllers, c) then lack[#lack + 1] = c end
  end
  return lack
end

-- One point each; advice(p) says what the point would take.
doctor.POINTS = {
  { name = "seccomp",
    test = function(p) return p.seccomp.ok end,
    advice = function(p) return p.seccomp.advice end },
  { name = "landlock fs",
    test = function(p) return p.landlock.fs end,
    advice = function(p) return p.landlock.advice end },
  { name = "landlock net",
    test = function(p) return p.landlock.net end,
    advice = function(p)
      return string.format("Landlock ABI %d has no TCP connect rules (ABI 4, "
        .. "Linux >= 6.7): network rules rest on the BPF hooks alone", p.landlock.abi)
    end },
  { name = "landlock scope",
    test = function(p) return p.landlock.scope end,
    advice = function(p)
      return string.format("Landlock ABI %d cannot scope signals and abstract "
        .. "unix sockets (ABI 6, Linux >= 6.12)", p.landlock.abi)
    end },
  { name = "bpf cgroup_sock_addr",
    test = function(p) return p.bpf.cgroup_sock_addr end,
    advice = function(p) return p.bpf.advice end },
  { name = "bpf lsm",
    test = function(p) return p.bpf.lsm end,
    advice = function()
      return "BPF-LSM programs do not load (CONFIG_BPF_LSM and bpf in lsm=); "
        .. "optional: Landlock and seccomp already cover files and system calls"
    end },
  { name = "cgroup writable",
    test = function(p) return p.cgroup.writable end,
    advice = function(p) return p.cgroup.advice end },
  { name = "cgroup threaded",
    test = function(p) return p.cgroup.threaded end,
    advice = function()
      return "no threaded cgroups: BPF network rules cannot single out a "
        .. "sub-interpreter cell's thread (cgroup v2, Linux >= 4.14)"
    end },
  { name = "cgroup controllers",
    test = function(p) return #missing_controllers(p) == 0 end,
    advice = function(p)
      return string.format("cgroup v2 here has no %s controller: process cells "
        .. "get no memory or process-count limit from it (give v2 the controllers, "
        .. "e.g. boot with systemd.unified_cgroup_hierarchy=1)",
        table.concat(missing_controllers(p), " or "))
    end },
  { name = "microvm",
    test = function(p) return p.kvm.ok and p.vmm.ok end,
    advice = function(p)
      local why = {}
      if not p.kvm.ok then why[#why + 1] = p.kvm.advice end
      if not p.vmm.ok then why[#why + 1] = p.vmm.advice end
      return table.concat(why, "; ")
    end },
}

-- What hardened mode cannot run without.
doctor.HARDENED = {
  { name = "seccomp", test = function(p) return p.seccomp.ok end },
  { name = "landlock fs", test = function(p) return p.landlock.fs end },
  { name = "no_new_privs", test = function(p) return p.no_new_privs.ok end },
  { name = "network rules (bpf cgroup_sock_addr or landlock net)",
    test = function(p) return p.bpf.cgroup_sock_addr or p.landlock.net end },
}

-- grade, and the points lost as a list of {point=, advice=}.
function doctor.grade(probes)
  local grade, missing = 0, cli.json_array()
  for _, point in ipairs(doctor.POINTS) do
    if point.test(probes) then
      grade = grade + 1
    else
      missing[#missing + 1] = { point = point.name, advice = point.advice(probes) }
    end
  end
  return grade, missing
end

-- {ok=, missing={names}}: whether hardened mode can run here.
function doctor.hardened(probes)
  local lack = cli.json_array()
  for _, layer in ipairs(doctor.HARDENED) do
    if not layer.test(probes) then lack[#lack + 1] = layer.name end
  end
  return { ok = #lack == 0, missing = lack }
end

-- The command line of `luaisolate doctor` (argparse, see isolate.cli).
function doctor.parser()
  local p = cli.new_parser("luaisolate doctor",
    "Probe what this host can enforce by trying each layer in a short-lived "
    .. "child (seccomp, no_new_privs, Landlock, user namespaces) or for a moment "
    .. "(BPF programs, cgroup v2 directories, /dev/kvm), grade it out of 10 and "
    .. "give one line of advice per missing point. Nothing is left behind.",
    "Exit status: 0; 1 with --mode hardened when a required layer is missing; "
    .. "2 on a usage error.")
  p:usage("usage: luaisolate doctor [--json] [--mode "
          .. table.concat(core.modes, "|") .. "]\n"
          .. "       luaisolate doctor --clean [--json]")
  p:flag("--json", "Print one JSON document: every probe under its name, grade, "
         .. "missing (the points lost, with advice), hardened.")
  p:option("--mode", "hardened: exit 1 when a layer hardened mode requires is "
           .. "missing (seccomp, landlock fs, no_new_privs, and for network rules "
           .. "bpf cgroup_sock_addr or landlock net).", "dev")
    :choices(core.modes)
  p:flag("--clean", "Instead: kill and remove what dead hosts left (their host-<pid> "
         .. "and cells-<pid> cgroups, older cell cgroups named <name>-<pid>-<n>), one "
         .. "line per directory removed; a live host's state is never touched.")
  return p
end

-- ---- output -------------------------------------------------------------------

local function print_text(probes, grade, missing, hardened)
  out("luaisolate doctor: what this host can enforce, each layer tried\n")
  local width = 0
  for _, name in ipairs(doctor.PROBES) do width = math.max(width, #name) end
  for _, name in ipairs(doctor.PROBES) do
    local p = probes[name]
    out(string.format("  %-7s  %-" .. width .. "s  %s\n",
                      p.ok and "ok" or "missing", name, p.detail))
  end
  out(string.format("grade: %d/%d\n", grade, #doctor.POINTS))
  for _, m in ipairs(missing) do
    out(string.format("  advice: %s: %s\n", m.point, m.advice))
  end
  if hardened.ok then
    out("hardened mode: every layer it requires is present\n")
  else
    out("hardened mode: missing " .. table.concat(hardened.missing, ", ") .. "\n")
  end
  if core.info().mode == "learn" then
    out("LEARN MODE is on: cells run what their rules would deny and record "
        .. "it (Landlock off, the BPF guard and seccomp only log)\n")
  end
end

local function print_json(probes, grade, missing, hardened)
  local doc = { grade = grade, missing = missing, hardened = hardened,
                mode = core.info().mode, learning = core.info().mode == "learn" }
  for _, name in ipairs(doctor.PROBES) do doc[name] = probes[name] end
  out(cli.json_encode(doc) .. "\n")
end

-- --clean: what dead hosts left, killed and removed, listed.
local function clean(opts)
  local removed = core.clean_stale()
  if opts.json then
    out(cli.json_encode({ removed = cli.json_array(removed) }) .. "\n")
    return EXIT_OK
  end
  for _, path in ipairs(removed) do out("removed " .. path .. "\n") end
  out(string.format("luaisolate doctor --clean: %d stale director%s removed\n",
                    #removed, #removed == 1 and "y" or "ies"))
  return EXIT_OK
end

-- doctor.doctor(argv) -> exit status; argv is what follows `doctor`.
function doctor.doctor(argv)
  local parser = doctor.parser()
  local opts, status = cli.parse(parser, argv, cli.no_arguments(parser))
  if not opts then return status end
  if opts.clean then return clean(opts) end
  local probes = core.probe()
  local grade, missing = doctor.grade(probes)
  local hardened = doctor.hardened(probes)
  if opts.json then
    print_json(probes, grade, missing, hardened)
  else
    print_text(probes, grade, missing, hardened)
  end
  if opts.mode == "hardened" and not hardened.ok then return EXIT_MISSING end
  return EXIT_OK
end


return doctor
