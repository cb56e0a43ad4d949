-- isolate.learn: learn mode's recorder and `luaisolate learn`.
--
-- In learn mode (sandbox.configure{mode = "learn"}) a cell runs what its
-- rules would deny and reports each such action as a denial event, with
-- where the guest was (event.where). A recorder collects those events;
-- `luaisolate learn` runs a script under one, every cell spawned with the
-- base policy only, and at the end writes the policy that allows what was
-- used (isolate.learn_policy) and prints a report: each rule, how often it
-- was used and where first.
--
-- Learning is not a boundary: nothing the cell's rules would deny is
-- refused (process creation aside), Landlock is off and the BPF guard only
-- logs. Run it on code you trust, on a machine that holds nothing secret.
local cli = require "isolate.cli"
local learn_policy = require "isolate.learn_policy"

local learn = {}

local EXIT_OK, EXIT_INVALID = 0, 1
local PROG = "luaisolate"

-- ---- recording ----------------------------------------------------------------

local DIR_ACTIONS = { listdir = true, scandir = true, chdir = true }
local CONNECT = { connect = true, sendto = true, sendmsg = true }
local BIND = { bind = true, listen = true }

-- A denial event as a record {kind=, verb=, target=, dir=}, or nil and
-- why it cannot become a rule.
local function classify(ev)
  local cap, action, target = ev.capability, ev.action or "", ev.target
  if type(target) ~= "string" or type(cap) ~= "string" then
    return nil, "a denial without a target"
  end
  if ev.source ~= "kernel" and ev.rule and ev.rule ~= "default deny" then
    return nil, "denied by the rule " .. tostring(ev.rule)
      .. " (a deny rule beats any allow)"
  end
  if cap == "fs" then
    if target:find("[*?]") then -- a rule would read it as a pattern
      return nil, "a path with * or ?, which a rule reads as a wildcard"
    end
    local verb, call = action:match("^(%a+) %((.-)%)$")
    if (verb == "read" or verb == "write") and target:sub(1, 1) == "/" then
      return { kind = "fs", verb = verb, target = target,
               dir = DIR_ACTIONS[call] or false }
    end
    return nil, "not a file access a rule grants"
  elseif cap == "net" then
    if not target:match("^[%x.:%[%]]+:%d+$") then
      return nil, "not an address a net rule names"
    end
    local verb = CONNECT[action] and "connect" or BIND[action] and "bind"
    if verb then return { kind = "net", verb = verb, target = target } end
    return nil, "not a network call a rule grants"
  elseif cap == "import" then
    if ev.rule ~= "default deny" then return nil, "refused whatever the policy says" end
    if not target:match("^[%a_][%w_.]*$") then return nil, "not a module name" end
    return { kind = "import", target = target }
  elseif cap == "capability" then
    if not target:match("^[%w_.-]+$") then return nil, "not a capability name" end
    return { kind = "capability", target = target }
  elseif cap == "exec" then
    return nil, "process creation: no rule grants it to guest code"
  end
  return nil, "no rule grants " .. cap
end

local Recorder = {}
Recorder.__index = Recorder

-- A recorder: rec:add(ev) for each denial event; rec:result(opts) the
-- rules and what was left out.
function learn.recorder()
  return setmetatable({ guard = {}, kernel = {}, order = {}, left = {},
                        left_seen = {}, last = {} }, Recorder)
end

local function record_key(r)
  return table.concat({ r.kind, r.verb or "", r.target }, "\0")
end

-- The guard reports one open() twice, its wrapper then the audit event:
-- the second of such a pair (the same open, at the same line, right after)
-- is not counted again.
function Recorder:paired(ev, key)
  if ev.source == "kernel" or not tostring(ev.action):find("(open)", 1, true) then
    return false
  end
  local here = key .. "\0" .. tostring(ev.where)
  local second = self.last[ev.cell] == here
  self.last[ev.cell] = not second and here or nil
  return second
end

function Recorder:add(ev)
  if ev.type ~= "denial" then return end
  local r, why = classify(ev)
  if not r then
    local what = string.format("%s %s %s", tostring(ev.capability),
                               tostring(ev.action), tostring(ev.target))
    if not self.left_seen[what] then
      self.left_seen[what] = true
      self.left[#self.left + 1] = { what = what, why = why }
    end
    return
  end
  local key = record_key(r)
  if self:paired(ev, key) then return end
  local t = ev.source == "kernel" and self.kernel or self.guard
  if not t[key] then
    r.uses, r.cell, r.where = 0, ev.cell, ev.where
    t[key] = r
    self.order[#self.order + 1] = key
  end
  t[key].uses = t[key].uses + 1
end

-- What the guard saw, then what only the kernel saw (C code that went
-- past Python): one record per action.
function Recorder:records()
  local list, done = {}, {}
  for _, key in ipairs(self.order) do
    if not done[key] then
      done[key] = true
      list[#list + 1] = self.guard[key] or self.kernel[key]
    end
  end
  return list
end

-- rules (learn_policy.rules), left_out.
function Recorder:result(opts)
  local left_out = table.move(self.left, 1, #self.left, 1, {})
  local rules = learn_policy.rules(self:records(), left_out, opts or {})
  return rules, left_out
end

-- ---- the report ---------------------------------------------------------------

local function report_lines(rules, left_out, file)
  local lines = { string.format("%s learn: wrote %s", PROG, file) }
  local function add(kind, text, e)
    lines[#lines + 1] = string.format("  %-12s %-44s %4d use%s  first: %s at %s",
      kind, text, e.uses, e.uses == 1 and " " or "s", tostring(e.first.cell),
      tostring(e.first.where or "(kernel)"))
  end
  for _, e in ipairs(rules.imports) do add("import", e.target, e) end
  for _, r in ipairs(rules.fs) do
    add("fs " .. r.key, r.path .. (r.widened and " (widened)" or ""), r)
  end
  for _, e in ipairs(rules.connect) do add("net connect", e.target, e) end
  for _, e in ipairs(rules.bind) do add("net bind", e.target, e) end
  for _, e in ipairs(rules.capabilities) do add("capability", e.target, e) end
  for _, x in ipairs(left_out) do
    lines[#lines + 1] = string.format("  left out     %s: %s", x.what, x.why)
  end
  return lines
end

-- Lines of the report, each one line whatever a guest put in it.
function learn.report(rules, left_out, file)
  local out = {}
  for i, l in ipairs(report_lines(rules, left_out, file)) do
    out[i] = l:gsub("[%c\127]", "?")
  end
  return out
end

-- ---- writing and checking -----------------------------------------------------

-- Write the policy to file and load it back: rules, left_out and the
-- loaded policy, or nil and why.
function learn.write(recorder, file, meta)
  local rules, left_out = recorder:result(meta)
  local text = learn_policy.render(rules, left_out, meta)
  local f, why = io.open(file, "w")
  if not f then return nil, why end
  f:write(text)
  f:close()
  local sandbox = require "isolate"
  local ok, err = pcall(sandbox.policy.load, file)
  if not ok then return nil, tostring(err) end
  return rules, left_out, err
end

-- ---- `luaisolate learn` -------------------------------------------------------

function learn.parser()
  local policy = require "isolate.policy"
  local p = cli.new_parser(PROG .. " learn",
    "Run a script in learn mode: its cells run what their policy would deny "
    .. "and record it; then write the policy that allows exactly what was "
    .. "used (a file that extends --base) and report each rule, how often it "
    .. "was used and where first. Every cell is spawned with --base only.",
    "Exit status: 0 when the policy was written and loads, 1 otherwise, 2 on "
    .. "a usage error. Refused in hardened mode. Not a boundary: run only "
    .. "code you trust.")
  p:usage("usage: " .. PROG .. " learn [--backend B] [--base TEMPLATE] "
          .. "[--allow-secrets] -o policy.lua script.lua [args]")
  p:option("-o --output", "Where to write the learned policy."):argname("FILE")
  p:option("--base", "A policy (template name or file) the learned one extends; "
           .. "the cells run with it. Default: none."):argname("TEMPLATE")
  p:option("--backend", "The backend of cells the script does not choose "
           .. "one for: " .. table.concat(policy.BACKENDS, ", ") .. ".")
    :choices(policy.BACKENDS)
  p:flag("--allow-secrets", "Also write rules covering /, /proc, /sys and "
         .. "secret-looking paths (/etc/shadow, ~/.ssh, *.pem...); without "
         .. "it they are left out and listed.")
  p:argument("script", "The Lua script to run."):argname("script.lua")
  p:argument("args", "Its arguments."):args("*")
  return p
end

-- Split argv at the script (the first argument that is not an option or an
-- option's value): options, script, its arguments.
local TAKES_VALUE = { ["-o"] = true, ["--output"] = true, ["--base"] = true,
                      ["--backend"] = true }
local function split(argv)
  local i = 1
  while i <= #argv and argv[i]:sub(1, 1) == "-" and argv[i] ~= "-" do
    if argv[i] == "--" then i = i + 1; break end
    i = i + ((TAKES_VALUE[argv[i]] and 2) or 1)
  end
  return table.move(argv, 1, i - 1, 1, {}), argv[i],
         table.move(argv, i + 1, #argv, 1, {})
end

local function absolute_base(base)
  if base and base:find("/", 1, true) and base:sub(1, 1) ~= "/" then
    return (os.getenv("PWD") or ".") .. "/" .. base
  end
  return base
end

-- Every spawn of the script gets the base policy only: what it would need
-- beyond the base is what learning records.
local function spawn_with_base(sandbox, base, backend)
  local spawn = sandbox.spawn
  sandbox.spawn = function(opts, ...)
    if type(opts) ~= "table" then return spawn(opts, ...) end
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.policy, o.imports, o.capabilities = base, nil, nil
    if o.backend == nil then o.backend = backend end
    return spawn(o, ...)
  end
end

local function start(opts)
  local sandbox = require "isolate"
  _G.sandbox = sandbox
  sandbox.configure({ thread_cgroups = true })
  sandbox.configure({ mode = "learn" }) -- raises in hardened mode
  sandbox.log_events({})
  local rec = learn.recorder()
  sandbox.on("denial", function(ev) rec:add(ev) end)
  spawn_with_base(sandbox, opts.base, opts.backend)
  return sandbox, rec
end

-- The cells still open: their pending events reach the recorder.
local function pump(sandbox)
  for _, cell in pairs(sandbox.list()) do pcall(cell._dispatch, cell) end
end

local function finish(sandbox, rec, opts, script)
  pump(sandbox)
  local rules, left_out, loaded = learn.write(rec, opts.output,
    { base = opts.base, script = script, allow_secrets = opts.allow_secrets })
  if not rules then
    io.stderr:write(PROG, " learn: ", tostring(left_out), "\n")
    return EXIT_INVALID
  end
  for _, l in ipairs(learn.report(rules, left_out, opts.output)) do
    io.stderr:write(l, "\n")
  end
  local refused = #loaded:refusals(opts.backend or sandbox.DEFAULT_BACKEND,
                                   { hardened = true, look = true })
  if refused > 0 then
    io.stderr:write(string.format("  hardened mode would refuse %d rule(s) "
      .. "here: luaisolate check --mode hardened %s says which\n", refused,
      opts.output))
  end
  return EXIT_OK
end

-- learn.learn(argv) -> exit status, or the steps of the run (as cli.run's):
-- the script with its arguments, then the writing of the policy.
function learn.learn(argv)
  local parser = learn.parser()
  local head, script, rest = split(argv)
  local a = table.move(head, 1, #head, 1, {})
  a[#a + 1] = script
  local opts, status = cli.parse(parser, a, function(o)
    if not o.output then return "-o policy.lua is required" end
  end)
  if not opts then return status end
  opts.base = absolute_base(opts.base)
  if opts.base then
    local ok, err = pcall(require("isolate.policy").resolve, opts.base)
    if not ok then
      io.stderr:write(PROG, " learn: --base: ", tostring(err), "\n")
      return EXIT_INVALID
    end
  end
  local chunk, msg = loadfile(script)
  if not chunk then
    io.stderr:write(PROG, ": ", msg, "\n")
    return EXIT_INVALID
  end
  local sandbox, rec = start(opts)
  _G.arg = table.move(rest, 1, #rest, 1, { [0] = script, [-1] = PROG })
  local i, code = 0, EXIT_OK
  return function()
    i = i + 1
    if i == 1 then
      return chunk, table.unpack(rest)
    elseif i == 2 then
      return function() code = finish(sandbox, rec, opts, script) end
    end
    return code
  end
end

return learn
