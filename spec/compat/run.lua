-- The compatibility suite: CPython's own regression tests inside cells.
--
--   luaisolate run spec/compat/run.lua [--python EXE] [--known FILE]
--       [--modules json,re,...] [--backends subinterpreter,process]
--       [--jobs N] [--keep DIR]
--
-- Runs each test module (test.<name> from the stdlib's test package) once
-- in the bare interpreter this build embeds, and once in a fresh cell of
-- each backend, with spec/compat/driver.py recording every test id's
-- outcome; then compares per test id. A test that passes bare but not in a
-- cell is a difference; every difference must be listed in the known file
-- (spec/compat/known.txt) with its reason, or the suite fails. Prints per
-- module and in total: bare passed, cell passed and their ratio, for each
-- backend. Listed entries that no longer differ are reported as stale (a
-- warning: see known.txt for why).
--
-- The bare interpreter is --python, else $ISOLATE_PYTHON (ctest passes the
-- build's), else ISOLATE_PYTHON from the CMake cache next to the running
-- luaisolate. It must be the one the cells run: same version, same test
-- package directory, or the suite fails before running anything.

local DIR = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
if DIR:sub(1, 1) ~= "/" then DIR = assert(os.getenv("PWD")) .. "/" .. DIR end

-- At least the modules issue 19 names (CPython test module names).
local MODULES = {
  "test_json", "test_re", "test_csv", "test_decimal", "test_fractions",
  "test_statistics", "test_collections", "test_itertools", "test_functools",
  "test_datetime", "test_zoneinfo", "test_pickle", "test_shutil",
  "test_pathlib", "test_fileinput", "test_textwrap", "test_difflib",
  "test_struct",
  -- and more of what guest code leans on: the core types, typing, enum,
  -- dataclasses, math, hashing, text and binary encodings
  "test_math", "test_string", "test_enum", "test_dataclasses", "test_typing",
  "test_operator", "test_copy", "test_bisect", "test_heapq", "test_base64",
  "test_random", "test_array", "test_set", "test_dict", "test_list",
  "test_hashlib", "test_contextlib", "test_ipaddress", "test_uuid",
  "test_unicodedata",
}
local BACKENDS = { "subinterpreter", "process" }
-- Reasons a test may pass bare and not in a cell (known.txt's second-last
-- field); anything else is a bug to fix, not to list.
local REASONS = { process = true, policy = true, subinterpreter = true }
local PASSING = { pass = true, xfail = true }
local WALL_MS = 240000 -- one module in one cell; the slowest takes ~10 s

local function die(fmt, ...)
  io.stderr:write("compat: ", string.format(fmt, ...), "\n")
  os.exit(2)
end

local function split(s, sep)
  local t = {}
  for part in s:gmatch("[^" .. sep .. "]+") do t[#t + 1] = part end
  return t
end

local function parse_args(argv)
  local o = { modules = MODULES, backends = BACKENDS, jobs = 2,
              known = DIR .. "/known.txt" }
  local i = 1
  while i <= #argv do
    local k, v = argv[i], argv[i + 1]
    if v == nil then die("%s needs a value", k) end
    if k == "--python" then o.python = v
    elseif k == "--known" then o.known = v
    elseif k == "--modules" then o.modules = split(v, ",")
    elseif k == "--backends" then o.backends = split(v, ",")
    elseif k == "--jobs" then o.jobs = assert(math.tointeger(tonumber(v)), "--jobs")
    elseif k == "--keep" then o.keep = v
    else die("unknown option %s", k) end
    i = i + 2
  end
  for _, m in ipairs(o.modules) do
    if not m:match("^test_[%w_]+$") then die("not a test module name: %s", m) end
  end
  return o
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function command_output(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok = p:close()
  return ok and out or nil
end

-- ---- which interpreter ---------------------------------------------------

-- ISOLATE_PYTHON from the CMake cache of the build whose host runs us.
local function python_from_cache()
  local exe = command_output("readlink -f /proc/" ..
    (read_file("/proc/self/stat") or ""):match("^(%d+)") .. "/exe")
  local dir = exe and exe:match("^(.*)/[^/]*\n?$")
  local cache = dir and read_file(dir .. "/CMakeCache.txt")
  return cache and cache:match("\nISOLATE_PYTHON:[A-Z]+=([^\n]+)")
end

local function bare_python(opts)
  local py = opts.python or os.getenv("ISOLATE_PYTHON") or python_from_cache()
  if not py then die("no bare interpreter: pass --python") end
  return py
end

-- The bare interpreter's version and test package, and the cells'.
local function check_same_python(py)
  local out = command_output(shell_quote(py) .. " -c " .. shell_quote(
    "import sys, test; print(sys.version.split()[0]); print(test.__path__[0])"))
  local version, testdir = (out or ""):match("^(%S+)\n(%S+)\n$")
  if not version then die("%s cannot import test: install libpython3.x-testsuite", py) end
  local sb <close> = sandbox.spawn{ imports = { "test", "sys" } }
  sb:exec("import test, sys; post(test.__path__[0]); post(sys.version.split()[0])")
  local cell_dir, cell_version = sb:recv(5), sb:recv(5)
  if version ~= cell_version or testdir ~= cell_dir then
    die("bare %s is %s with %s, cells run %s with %s", py, version, testdir,
        tostring(cell_version), tostring(cell_dir))
  end
  return version, testdir
end

-- ---- the known differences ----------------------------------------------

-- known.txt: `BUILD BACKEND TEST_ID REASON: text`, BUILD a Python
-- major.minor or *, BACKEND a backend or *, TEST_ID exact or with `*`
-- standing for any run of characters (a whole class: `...Test_Fast.*`).
-- Returns a list of entries.
local function load_known(path)
  local text = read_file(path)
  if not text then die("cannot read %s", path) end
  local list, n = {}, 0
  for line in text:gmatch("[^\n]*") do
    n = n + 1
    if line:match("%S") and not line:match("^%s*#") then
      local build, backend, id, reason, why =
        line:match("^(%S+)%s+(%S+)%s+(%S+)%s+(%a+):%s*(.-)%s*$")
      if not build or not REASONS[reason] or why == "" then
        die("%s:%d: expected `BUILD BACKEND TEST_ID REASON: text` with REASON "
            .. "one of process, policy, subinterpreter", path, n)
      end
      local pattern = "^" .. id:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0")
                              :gsub("%*", ".*") .. "$"
      list[#list + 1] = { build = build, backend = backend, id = id,
                          pattern = pattern, reason = reason, why = why, line = n }
    end
  end
  return list
end

local function applies(e, build, backend)
  return (e.build == "*" or e.build == build) and
         (e.backend == "*" or e.backend == backend)
end

-- ---- the runs ------------------------------------------------------------

-- A bare run in the background: python driver.py NAME WORKDIR OUT; done
-- when OUT.done exists (holding the exit status).
local function start_bare(ctx, name)
  local wd = ctx.tmp .. "/bare-" .. name
  assert(os.execute("mkdir -p " .. shell_quote(wd)))
  local out = ctx.tmp .. "/bare-" .. name .. ".tsv"
  local cmd = string.format("(cd %s && %s %s %s %s %s >%s 2>&1; echo $? >%s.tmp; mv %s.tmp %s) &",
    shell_quote(wd), shell_quote(ctx.python), shell_quote(DIR .. "/driver.py"),
    shell_quote(name), shell_quote(wd), shell_quote(out), shell_quote(out .. ".log"),
    shell_quote(out .. ".done"), shell_quote(out .. ".done"), shell_quote(out .. ".done"))
  assert(os.execute(cmd))
  return { kind = "bare", name = name, out = out }
end

local function parse_bare(out)
  local r = { outcomes = {}, details = {}, error = "" }
  local status = read_file(out .. ".done")
  if not status or not status:match("^0%s*$") then
    r.error = "bare driver exited " .. tostring(status and status:match("%d+")) ..
      ": " .. (read_file(out .. ".log") or ""):sub(-300)
  end
  for line in (read_file(out) or ""):gmatch("[^\n]+") do
    local outcome, id, detail = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    if outcome == "!error" then r.error = detail
    elseif outcome then
      r.outcomes[id], r.details[id] = outcome, detail ~= "" and detail or nil
    end
  end
  return r
end

-- Data some modules read as plain Python does: the system's time zone
-- database (zoneinfo's TZPATH).
local EXTRA_READ = {
  test_datetime = { "/usr/share/zoneinfo" },
  test_zoneinfo = { "/usr/share/zoneinfo" },
  test_pathlib = { "/etc/passwd", "/etc/group" }, -- owner() and group()
}

-- Imports the modules' doctest examples make: an example is code compiled
-- from a string, so it is the guest's and needs the allow-list as any
-- guest import does (the test module's own imports are module code).
local EXTRA_IMPORTS = {
  test_json = { "decimal", "io" },
  test_statistics = { "io", "decimal", "fractions", "math" },
  test_collections = { "math" },
  test_difflib = { "pprint", "keyword" },
  test_typing = { "collections" },
}

local function fs_rules(name, wd)
  local fs = { { read = wd }, { write = wd }, { read = "/dev/null" }, { write = "/dev/null" } }
  for _, p in ipairs(EXTRA_READ[name] or {}) do fs[#fs + 1] = { read = p } end
  return fs
end

-- CPython's test extensions, which sub-interpreter cells load only when
-- the spawn names them (the kernel refuses their files otherwise).
local TEST_EXTENSIONS = { "_testcapi", "_testinternalcapi", "_testbuffer",
                          "_testmultiphase", "_testimportmultiple", "_testsinglephase" }

local function imports_for(name)
  local imports = { "sys", "tempfile", "unittest", "test", name:match("^test_(.*)$") }
  table.move(TEST_EXTENSIONS, 1, #TEST_EXTENSIONS, #imports + 1, imports)
  for _, m in ipairs(EXTRA_IMPORTS[name] or {}) do imports[#imports + 1] = m end
  return imports
end

-- What plain tests need: their own read-write directory (cwd and
-- tempfile's), the stdlib read-only (every cell has it), and imports of
-- the harness (sys, tempfile, unittest, test) and the module under test.
local function start_cell(ctx, name, backend)
  local wd = ctx.tmp .. "/" .. backend .. "-" .. name
  assert(os.execute("mkdir -p " .. shell_quote(wd)))
  local task = { kind = "cell", name = name, backend = backend }
  local ok, err = pcall(function()
    task.sb = sandbox.spawn{
      backend = backend,
      imports = imports_for(name),
      policy = { version = 1, fs = fs_rules(name, wd) },
      limits = { wall_ms = WALL_MS },
    }
    task.sb:exec(ctx.driver)
    task.sb:start_call("compat_run", name, wd)
  end)
  if not ok then task.failed = tostring(err) end
  return task
end

-- Poll a task: its result once done, else nil.
local function poll(task, wait_s)
  if task.kind == "bare" then
    if not read_file(task.out .. ".done") then return nil end
    return parse_bare(task.out)
  end
  local r
  if not task.failed then
    local ok, done, value = pcall(task.sb.result, task.sb, wait_s)
    if ok and not done then return nil end
    if ok then r = value else task.failed = tostring(done) end
  end
  if task.sb then task.sb:close() end
  return r or { outcomes = {}, details = {}, error = "cell: " .. task.failed }
end

-- The next task that may start now: sub-interpreter cells share the
-- host's process-wide state (environment, umask, signal handlers), which
-- tests change, so two never run at once; bare runs and process cells are
-- processes of their own.
local function next_task(queue, running)
  local busy = false
  for _, t in ipairs(running) do busy = busy or t.where == "subinterpreter" end
  for i, q in ipairs(queue) do
    if not (busy and q.where == "subinterpreter") then
      return table.remove(queue, i)
    end
  end
end

-- Every (module, where) pair, ctx.jobs at a time; bare and cell runs
-- interleave so that a shared-GIL build still keeps two cores busy.
local function run_all(ctx)
  local queue, results = {}, {}
  for _, name in ipairs(ctx.modules) do
    queue[#queue + 1] = { name = name, where = "bare" }
    for _, be in ipairs(ctx.backends) do
      queue[#queue + 1] = { name = name, where = be }
    end
    results[name] = {}
  end
  local running = {}
  while #queue > 0 or #running > 0 do
    while #running < ctx.jobs do
      local q = next_task(queue, running)
      if not q then break end
      local t = q.where == "bare" and start_bare(ctx, q.name)
                or start_cell(ctx, q.name, q.where)
      t.where, t.started = q.where, os.time()
      running[#running + 1] = t
    end
    local i = 1
    while i <= #running do
      local t = running[i]
      local r = poll(t, 0.05 / #running)
      if r then
        results[t.name][t.where] = r
        table.remove(running, i)
      else
        i = i + 1
      end
    end
  end
  return results
end

-- ---- comparing -----------------------------------------------------------

local function sorted_keys(t)
  local k = {}
  for key in pairs(t) do k[#k + 1] = key end
  table.sort(k)
  return k
end

-- Why a test that ran bare did not run in the cell: the module's own
-- error, else the first failure under an id the bare run never had (the
-- loader's _FailedTest when a module's load_tests raised, say).
local function why_not_run(bare, cell)
  if cell.error ~= "" then return cell.error end
  for _, id in ipairs(sorted_keys(cell.outcomes)) do
    if not bare.outcomes[id] and not PASSING[cell.outcomes[id]] then
      return "not run; the cell reported " .. id .. ": " .. (cell.details[id] or "")
    end
  end
  return "not run in the cell"
end

-- Per module and backend: bare passed, cell passed, and the differences.
local function compare(ctx, results)
  local report = { rows = {}, diffs = {}, problems = {}, notes = {}, totals = {} }
  for _, be in ipairs(ctx.backends) do report.totals[be] = { bare = 0, cell = 0 } end
  for _, name in ipairs(ctx.modules) do
    local bare = results[name].bare
    local bare_ids = {}
    for id, o in pairs(bare.outcomes) do
      if PASSING[o] then bare_ids[#bare_ids + 1] = id end
    end
    table.sort(bare_ids)
    if bare.error ~= "" or #bare_ids == 0 then
      report.problems[#report.problems + 1] = string.format(
        "%s: the bare run passed %d tests (%s): nothing to compare with",
        name, #bare_ids, bare.error)
    end
    for _, be in ipairs(ctx.backends) do
      local cell = results[name][be]
      local passed, ran = 0, 0
      local why_missing = why_not_run(bare, cell)
      for _, id in ipairs(bare_ids) do
        local o = cell.outcomes[id]
        if o then ran = ran + 1 end
        if PASSING[o] then
          passed = passed + 1
        else
          report.diffs[#report.diffs + 1] = { module = name, backend = be, id = id,
            outcome = o or "missing",
            detail = cell.details[id] or (o == nil and why_missing) or "" }
        end
      end
      if ran == 0 and #bare_ids > 0 then
        report.notes[#report.notes + 1] = string.format(
          "%s ran none of %s's tests (%s)", be, name, why_missing)
      end
      report.rows[#report.rows + 1] = { module = name, backend = be,
        bare = #bare_ids, cell = passed, error = cell.error }
      local tot = report.totals[be]
      tot.bare, tot.cell = tot.bare + #bare_ids, tot.cell + passed
    end
  end
  return report
end

-- Match differences with known entries: unlisted ones fail the suite;
-- listed entries that match no difference are stale.
local function entry_for(known, build, d)
  for _, e in ipairs(known) do
    if applies(e, build, d.backend) and d.id:match(e.pattern) then return e end
  end
end

local function classify(ctx, report, known)
  local used, unlisted = {}, {}
  for _, d in ipairs(report.diffs) do
    local e = entry_for(known, ctx.build, d)
    if e then used[e] = true; d.known = e
    else unlisted[#unlisted + 1] = d end
  end
  local stale = {}
  for _, e in ipairs(known) do
    local runs = false
    for _, be in ipairs(ctx.backends) do runs = runs or applies(e, ctx.build, be) end
    if runs and not used[e] then
      local mod = e.id:match("^test%.([%w_]+)")
      for _, m in ipairs(ctx.modules) do
        if m == mod then stale[#stale + 1] = e end
      end
    end
  end
  return unlisted, stale
end

-- ---- printing ------------------------------------------------------------

local function pct(cell, bare)
  if bare == 0 then return "-" end
  return string.format("%.1f%%", math.floor(cell * 1000 / bare) / 10)
end

local function print_table(ctx, report)
  local line = string.format("%-18s", "module")
  for _, be in ipairs(ctx.backends) do
    line = line .. string.format(" | %-27s", be)
  end
  print(line)
  line = string.format("%-18s", "")
  for _ in ipairs(ctx.backends) do
    line = line .. string.format(" | %6s %6s %13s", "bare", "cell", "cell/bare")
  end
  print(line)
  local by = {}
  for _, r in ipairs(report.rows) do
    by[r.module] = by[r.module] or {}
    by[r.module][r.backend] = r
  end
  for _, name in ipairs(ctx.modules) do
    line = string.format("%-18s", name)
    for _, be in ipairs(ctx.backends) do
      local r = by[name][be]
      line = line .. string.format(" | %6d %6d %13s", r.bare, r.cell,
                                   pct(r.cell, r.bare))
    end
    print(line)
  end
  line = string.format("%-18s", "total")
  for _, be in ipairs(ctx.backends) do
    local t = report.totals[be]
    line = line .. string.format(" | %6d %6d %13s", t.bare, t.cell,
                                 pct(t.cell, t.bare))
  end
  print(line)
  -- What the figure would be if every unlisted difference were fixed.
  line = string.format("%-18s", "listed only")
  for _, be in ipairs(ctx.backends) do
    local t, n = report.totals[be], 0
    for _, d in ipairs(report.diffs) do
      if d.backend == be and d.known then n = n + 1 end
    end
    line = line .. string.format(" | %6d %6d %13s", t.bare, t.bare - n,
                                 pct(t.bare - n, t.bare))
  end
  print(line)
end

local function print_diffs(title, diffs)
  if #diffs == 0 then return end
  print(title)
  for _, d in ipairs(diffs) do
    print(string.format("  %s %s %s %s: %s", d.backend, d.id, d.outcome,
      d.known and ("[listed " .. d.known.reason .. "]") or "",
      (d.known and d.known.why) or d.detail or ""))
  end
end

-- With --keep: every difference, one per line, for a closer look.
local function write_diffs(path, diffs)
  local f = assert(io.open(path, "w"))
  for _, d in ipairs(diffs) do
    f:write(table.concat({ d.backend, d.id, d.outcome,
      d.known and d.known.reason or "", d.detail or "" }, "\t"), "\n")
  end
  f:close()
end

-- ---- main ----------------------------------------------------------------

local function main(argv)
  local t0 = os.time()
  local opts = parse_args(argv)
  local py = bare_python(opts)
  local version, testdir = check_same_python(py)
  local ctx = { python = py, build = version:match("^(%d+%.%d+)"),
                modules = opts.modules, backends = opts.backends,
                jobs = opts.jobs, driver = assert(read_file(DIR .. "/driver.py")) }
  ctx.tmp = opts.keep or command_output("mktemp -d /tmp/luaisolate-compat.XXXXXX"):match("%S+")
  print(string.format("compat: CPython %s (%s), tests from %s, %d modules, " ..
    "backends %s, %d at a time", version, py, testdir, #ctx.modules,
    table.concat(ctx.backends, ","), ctx.jobs))
  local known = load_known(opts.known)
  sandbox.configure{ warm_pool = 2 }
  local results = run_all(ctx)
  if not opts.keep then os.execute("rm -rf " .. shell_quote(ctx.tmp)) end
  local report = compare(ctx, results)
  local unlisted, stale = classify(ctx, report, known)
  print_table(ctx, report)
  local listed = {}
  for _, d in ipairs(report.diffs) do if d.known then listed[#listed + 1] = d end end
  print_diffs(string.format("listed differences (%d):", #listed), listed)
  print_diffs(string.format("UNLISTED differences (%d):", #unlisted), unlisted)
  if opts.keep then write_diffs(opts.keep .. "/diffs.tsv", report.diffs) end
  for _, e in ipairs(stale) do
    print(string.format("warning: stale entry %s:%d (%s %s %s): it no longer differs",
      opts.known, e.line, e.build, e.backend, e.id))
  end
  for _, n in ipairs(report.notes) do print("note: " .. n) end
  for _, p in ipairs(report.problems) do print("FAILED: " .. p) end
  print(string.format("compat: %d s, %d unlisted differences, %d stale entries",
    os.time() - t0, #unlisted, #stale))
  if #unlisted > 0 or #report.problems > 0 then os.exit(1) end
end

main(arg)
