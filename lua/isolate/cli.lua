-- isolate.cli: the `luaisolate check` subcommand, callable from Lua so the
-- host and the specs share it.
--
--   os.exit(require("isolate.cli").check({ "--explain", "web-scraper" }))
--
-- Output goes through io.stdout / io.stderr at call time, so a caller can
-- swap them to capture it.
local policy = require "isolate.policy"
local json = require "isolate.json"
local errors = require "isolate.error"

local cli = {}

local USAGE = [[
usage: luaisolate check [--explain] [--json] [--backend NAME] FILE|NAME...

Validate and compile each policy: a .lua file, or a template name searched
in the policy path (ISOLATE_POLICY_PATH, then the installed templates).
Every problem is printed as <file>: <field path>: <message>.

  --explain       print which layer enforces each rule, for --backend
  --backend NAME  subinterpreter (default), process or microvm
  --json          print one JSON document instead of text

Exit status: 0 when every policy is valid, 1 otherwise, 2 on a usage error.
]]

local EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
local RULE_WIDTH = 48 -- longer rules get a line of their own

local function out(s) io.stdout:write(s) end

local function contains(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

-- opts, targets; or nil and what is wrong with the command line.
local function parse(argv)
  local opts, targets = { backend = "subinterpreter" }, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if type(a) ~= "string" then return nil, "arguments must be strings" end
    if a == "--" then
      table.move(argv, i + 1, #argv, #targets + 1, targets)
      break
    elseif a == "--explain" then opts.explain = true
    elseif a == "--json" then opts.json = true
    elseif a == "-h" or a == "--help" then opts.help = true
    elseif a == "--backend" then
      i = i + 1
      opts.backend = argv[i]
      if opts.backend == nil then return nil, "--backend needs a name" end
    elseif a:sub(1, 10) == "--backend=" then opts.backend = a:sub(11)
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown option " .. a
    else
      targets[#targets + 1] = a
    end
    i = i + 1
  end
  if opts.help then return opts, targets end
  if not contains(policy.BACKENDS, opts.backend) then
    return nil, string.format("unknown backend '%s'; valid backends: %s",
                              tostring(opts.backend), table.concat(policy.BACKENDS, ", "))
  end
  if #targets == 0 then return nil, "no policy given" end
  return opts, targets
end

-- An error's problems; one built from its message when it has none (an
-- unknown name, a file that does not load) so every failure says why.
local function problems_of(err)
  local list = {}
  for i, p in ipairs(err.problems or {}) do
    list[i] = { path = p.path, message = p.message }
  end
  if #list == 0 then list[1] = { path = "", message = err.message } end
  return list
end

local function check_one(target, opts)
  local r = { target = target }
  local ok, p = pcall(policy.load, target)
  if ok then
    r.ok, r.source, r.problems = true, p.source, {}
    if opts.explain then r.explain = p:explain(opts.backend) end
  else
    -- Anything but an isolate.Error is a bug here, not a verdict.
    if not errors.is(p) then error(p, 0) end
    r.ok, r.source, r.problems = false, p.source, problems_of(p)
    if opts.explain then r.explain = {} end
  end
  return r
end

-- ---- text -------------------------------------------------------------------

local function problem_line(file, p)
  if p.path ~= "" then return string.format("%s: %s: %s\n", file, p.path, p.message) end
  -- Load errors already read "<file>:<line>: ...".
  if p.message:sub(1, #file) == file then return p.message .. "\n" end
  return string.format("%s: %s\n", file, p.message)
end

local function pad(s, width)
  return s .. string.rep(" ", width - #s)
end

local function explain_table(rows)
  if #rows == 0 then
    return "  (no rules: every import, file, connection and capability is denied)\n"
  end
  local rw, lw = #"RULE", #"LAYER"
  for _, row in ipairs(rows) do
    rw = math.max(rw, math.min(#row.rule, RULE_WIDTH))
    lw = math.max(lw, #row.layer)
  end
  local lines = { "  " .. pad("RULE", rw) .. "  " .. pad("LAYER", lw) .. "  NOTE" }
  for _, row in ipairs(rows) do
    local rule = row.rule
    if #rule > rw then -- a long rule gets a line of its own, columns stay aligned
      lines[#lines + 1] = "  " .. rule
      rule = ""
    end
    lines[#lines + 1] = "  " .. pad(rule, rw) .. "  " .. pad(row.layer, lw)
                        .. "  " .. row.note
  end
  return table.concat(lines, "\n") .. "\n"
end

local function print_text(results)
  for _, r in ipairs(results) do
    out((r.ok and "OK " or "FAIL ") .. r.target .. "\n")
    for _, p in ipairs(r.problems) do out(problem_line(r.source or r.target, p)) end
    if r.ok and r.explain then out(explain_table(r.explain)) end
  end
end

-- ---- json -------------------------------------------------------------------

local function print_json(results, all_ok)
  local docs = {}
  for i, r in ipairs(results) do
    docs[i] = { target = r.target, ok = r.ok, source = r.source,
                problems = json.array(r.problems),
                explain = r.explain and json.array(r.explain) }
  end
  out(json.encode({ ok = all_ok, results = json.array(docs) }) .. "\n")
end

-- A subcommand's arguments, as parse(argv) reads them: opts and parse's
-- second result, or nil and the exit status once usage or help is out.
function cli.arguments(name, argv, parse_fn, usage)
  local opts, rest = nil, "arguments must be a list of strings"
  if type(argv) == "table" then opts, rest = parse_fn(argv) end
  if not opts then
    io.stderr:write("luaisolate ", name, ": ", rest, "\n", usage)
    return nil, EXIT_USAGE
  end
  if opts.help then out(usage); return nil, EXIT_OK end
  return opts, rest
end

-- cli.check(argv) -> exit status; argv is what follows `check`.
function cli.check(argv)
  local opts, targets = cli.arguments("check", argv, parse, USAGE)
  if not opts then return targets end
  local results, all_ok = {}, true
  for i, target in ipairs(targets) do
    results[i] = check_one(target, opts)
    all_ok = all_ok and results[i].ok
  end
  if opts.json then print_json(results, all_ok) else print_text(results) end
  return all_ok and EXIT_OK or EXIT_INVALID
end

cli.USAGE = USAGE

return cli
