-- isolate.check: `luaisolate check`, the policy checker of the command
-- line (isolate.cli keeps the parsing and JSON helpers it uses, and
-- delegates cli.check and cli.check_parser here, as it does doctor to
-- isolate.doctor).
--
-- It validates and compiles each policy, explains which layer enforces
-- each rule (--explain), and with --mode reports what spawn would refuse
-- in that mode, each refusal with its fix: Policy:refusals decides, the
-- same function spawn asks, so the two cannot disagree.
local policy = require "isolate.policy"
local errors = require "isolate.error"
local cli = require "isolate.cli"

local M = {}

local EXIT_OK, EXIT_INVALID = 0, 1
local RULE_WIDTH = 48 -- longer rules get a line of their own
local PROG = "luaisolate"

local function out(s) io.stdout:write(s) end

function M.parser()
  local p = cli.new_parser(PROG .. " check",
    "Validate and compile each policy: a .lua file, or a template name searched "
    .. "in the policy path (ISOLATE_POLICY_PATH, then the installed templates). "
    .. "Every problem is printed as <file>: <field path>: <message>.",
    "Exit status: 0 when every policy is valid, 1 otherwise, 2 on a usage error.")
  p:argument("targets", "Policy files or template names."):args("*"):argname("FILE|NAME")
  p:flag("--explain", "Print which layer enforces each rule, for --backend.")
  p:flag("--json", "Print one JSON document instead of text.")
  p:option("--backend", "The backend to explain for: "
           .. table.concat(policy.BACKENDS, ", ") .. " (default "
           .. policy.DEFAULT_BACKEND .. ").", policy.DEFAULT_BACKEND)
    :choices(policy.BACKENDS)
  p:option("--mode", "Also report what spawn refuses in this mode "
           .. "(dev, hardened or compat) for --backend, each with its fix: "
           .. "hardened refuses every rule no kernel layer enforces exactly.")
    :choices(require("isolate.core").modes)
  return p
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

-- What spawn would refuse (Policy:refusals, the decision spawn makes),
-- as plain rows; the kernel is looked at, nothing loaded.
local function refusals_of(p, opts)
  local rows = {}
  for i, x in ipairs(p:refusals(opts.backend, { hardened = opts.mode == "hardened",
                                                look = true })) do
    rows[i] = { rule = x.rule, kind = x.error, reason = x.reason, fix = x.fix,
                origin = x.origin }
  end
  return rows
end

local function check_one(target, opts)
  local r = { target = target }
  local ok, p = pcall(policy.load, target)
  if ok then
    r.ok, r.source, r.problems = true, p.source, {}
    if opts.explain and opts.available then r.explain = p:explain(opts.backend) end
    if opts.mode then
      r.refusals = refusals_of(p, opts)
      r.ok = #r.refusals == 0
    end
  else
    -- Anything but an isolate.Error is a bug here, not a verdict.
    if not errors.is(p) then error(p, 0) end
    r.ok, r.source, r.problems = false, p.source, problems_of(p)
    r.suggestion, r.searched = p.suggestion, p.searched
    if opts.explain then r.explain = {} end
    if opts.mode then r.refusals = {} end
  end
  return r
end

-- "<file>: <rule>: <reason>; write <fix> instead"
local function refusal_line(file, x)
  return string.format("%s: %s: %s%s\n", file, x.rule, x.reason,
                       x.fix and "; write " .. x.fix .. " instead" or "")
end

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
    for _, x in ipairs(r.refusals or {}) do out(refusal_line(r.source or r.target, x)) end
    if r.explain and #r.problems == 0 then out(explain_table(r.explain)) end
  end
end

local function print_json(results, all_ok, backend)
  local docs = {}
  for i, r in ipairs(results) do
    docs[i] = { target = r.target, ok = r.ok, source = r.source,
                suggestion = r.suggestion,
                searched = r.searched and cli.json_array(r.searched),
                problems = cli.json_array(r.problems),
                explain = r.explain and cli.json_array(r.explain),
                refusals = r.refusals and cli.json_array(r.refusals) }
  end
  out(cli.json_encode({ ok = all_ok, results = cli.json_array(docs),
                        backend = backend }) .. "\n")
end

-- Explaining or checking for a backend this build cannot run is an
-- answer about nothing: say so (and why), and fail. nil when it runs.
local function unavailable(opts)
  if not (opts.explain or opts.mode) then return nil end
  local ok, err = require("isolate.core").backend_check(opts.backend)
  if ok then return nil end
  return { name = opts.backend, available = false,
           reason = errors.is(err) and err.message or tostring(err) }
end

-- check(argv) -> exit status; argv is what follows `check`.
function M.check(argv)
  local opts, status = cli.parse(M.parser(), argv, function(a)
    if #a.targets == 0 then return "no policy given" end
  end)
  if not opts then return status end
  local missing = unavailable(opts)
  opts.available = missing == nil
  local results, all_ok = {}, missing == nil
  for i, target in ipairs(opts.targets) do
    results[i] = check_one(target, opts)
    all_ok = all_ok and results[i].ok
  end
  if missing and not opts.json then
    io.stderr:write(PROG, " check: backend '", missing.name, "' cannot run ",
                    "in this build, so nothing enforces its rules here: ",
                    missing.reason, "\n")
  end
  if opts.json then print_json(results, all_ok, missing) else print_text(results) end
  return all_ok and EXIT_OK or EXIT_INVALID
end

return M
