--- Helpers for busted specs that drive sandboxed Python.
--
--     local testing = require "isolate.testing"
--     describe("my workload", function()
--       testing.fixtures()                 -- cells close after each test
--       it("reads only its data", function()
--         local sb = testing.cell{ policy = "stdlib.readonly" }
--         assert.denied(sb, "open('/etc/shadow')", { op = "read", layer = "python-guard" })
--         assert.posts(sb, "post(6 * 7)", 42)
--       end)
--     end)
--
-- Requiring it registers the assertions with luassert: `assert.denied`,
-- `assert.allowed`, `assert.posts` and `assert.raises_kind`. A failed one
-- shows what the snippet did: its posts, logs, denials and error.
-- @module isolate.testing
local sandbox = require "isolate"
local luassert = require "luassert"
local say = require "say"
local deepcompare = require("luassert.util").deepcompare

local testing = {}

-- ---- fixtures -----------------------------------------------------------

local open_cells = {} -- spawned by testing.cell, not yet cleaned up

--- Spawn a cell (the usual `sandbox.spawn` options) that `testing.cleanup`
-- closes, or kills when it will not close.
function testing.cell(opts)
  local sb = sandbox.spawn(opts or {})
  open_cells[#open_cells + 1] = sb
  return sb
end

--- Close every cell `testing.cell` made; a cell that fails to close is
-- killed. Safe to call more than once.
function testing.cleanup()
  local cells = open_cells
  open_cells = {}
  for _, sb in ipairs(cells) do
    if not pcall(sb.close, sb) then pcall(sb.kill, sb) end
  end
end

-- The environment of the function `level` calls up (a busted block's,
-- where after_each lives), or nil.
local function caller_env(level)
  local info = debug.getinfo(level + 1, "f")
  local i = 1
  while info do
    local name, value = debug.getupvalue(info.func, i)
    if name == nil then return nil end
    if name == "_ENV" then return value end
    i = i + 1
  end
end

--- In a `describe` block: close the block's cells after each test, passed
-- or failed (registers `after_each(testing.cleanup)`).
function testing.fixtures()
  local env = caller_env(2)
  local after_each = env and env.after_each
  if type(after_each) ~= "function" then
    error("testing.fixtures() must be called inside a busted describe block; " ..
          "elsewhere call testing.cleanup() yourself", 2)
  end
  after_each(testing.cleanup)
end

-- ---- running a snippet --------------------------------------------------

-- Every value sb posted and has not been taken yet.
local function take_posts(sb)
  local posts = {}
  while true do
    local ok, v, err = pcall(sb.recv, sb, 0)
    if not ok or (v == nil and err) then return posts end
    posts[#posts + 1] = v
  end
end

--- Run a Python snippet in sb and return what happened, as one table:
-- `{posts=, logs=, denials=, metrics=, events=, error=}`. `error` is the
-- isolate.Error the snippet raised (nil when it succeeded); the lists hold
-- the posted values and the log, denial and metric events, in order.
function testing.run(sb, code)
  local ok, err = pcall(sb.exec, sb, code)
  local out = { posts = take_posts(sb), logs = {}, denials = {}, metrics = {},
                events = {}, error = (not ok) and err or nil }
  for ev in sb:events() do
    out.events[#out.events + 1] = ev
    local list = out[ev.type .. "s"]
    if list then list[#list + 1] = ev end
  end
  return out
end

-- ---- capability spies ---------------------------------------------------

--- Register a handler for capability `name` that records every call and
-- answers `reply` (a function is called with action, payload and cell).
-- Returns the spy: `spy.calls` is a list of `{action=, payload=, cell=}`.
function testing.capability_spy(name, reply)
  local spy = { calls = {} }
  sandbox.capability(name, function(action, payload, cell)
    spy.calls[#spy.calls + 1] = { action = action, payload = payload,
                                  cell = cell and cell.name }
    if type(reply) == "function" then return reply(action, payload, cell) end
    return reply
  end)
  return spy
end

-- ---- assertions ---------------------------------------------------------

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do
    if k ~= "cell" and k ~= "time" then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = (type(k) == "number" and "" or tostring(k) .. "=") .. show(v[k])
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- What a run did, as text for a failure message.
local function report(r)
  local lines = {}
  local function list(title, items, fmt)
    lines[#lines + 1] = string.format("  %s (%d):", title, #items)
    for _, it in ipairs(items) do lines[#lines + 1] = "    " .. fmt(it) end
  end
  list("posts", r.posts, show)
  list("logs", r.logs, function(ev) return show({ ev.level, ev.message }) end)
  list("denials", r.denials, show)
  lines[#lines + 1] = "  error: " .. (r.error and show({ kind = r.error.kind,
    message = r.error.message, python = r.error.python }) or "none")
  return table.concat(lines, "\n")
end

-- A denial matches want when every field want names is equal; `op` names
-- the denial's capability ("fs", "net", "import"), its action ("read
-- (open)") or the action's first word ("read", "connect").
local function matches(ev, want)
  for k, v in pairs(want) do
    if k == "op" then
      local verb = type(ev.action) == "string" and ev.action:match("^%S+")
      if v ~= ev.capability and v ~= ev.action and v ~= verb then return false end
    elseif ev[k] ~= v then
      return false
    end
  end
  return true
end

-- Replace the assertion's arguments with texts for its message.
local function explain(args, ...)
  local texts = table.pack(...)
  for i = 1, texts.n do args[i] = texts[i] end
  args.n = texts.n
  args.nofmt = {}
  for i = 1, texts.n do args.nofmt[i] = true end
end

local function denied(_, args)
  local sb, code, want = args[1], args[2], args[3] or {}
  local r = testing.run(sb, code)
  local hit = false
  for _, ev in ipairs(r.denials) do hit = hit or matches(ev, want) end
  explain(args, show(want), report(r))
  return hit
end

local function allowed(_, args)
  local r = testing.run(args[1], args[2])
  explain(args, report(r))
  return #r.denials == 0 and r.error == nil
end

local function posts(_, args)
  local sb, code, want = args[1], args[2], args[3]
  local r = testing.run(sb, code)
  local hit = false
  for _, v in ipairs(r.posts) do
    hit = hit or deepcompare(v, want, true)
  end
  explain(args, show(want), report(r))
  return hit
end

local function raises_kind(_, args)
  local kind, fn = args[1], args[2]
  local ok, err = pcall(fn, table.unpack(args, 3, args.n))
  local got = ok and "no error" or (getmetatable(err) == sandbox.Error and
    ("kind " .. tostring(err.kind) .. ": " .. tostring(err.message)) or
    ("a non-isolate error: " .. tostring(err)))
  explain(args, show(kind), got)
  return not ok and getmetatable(err) == sandbox.Error and err.kind == kind
end

say:set("assertion.denied.positive", "Expected a denial matching %s; the snippet did:\n%s")
say:set("assertion.denied.negative", "Expected no denial matching %s; the snippet did:\n%s")
say:set("assertion.allowed.positive", "Expected no denial and no error; the snippet did:\n%s")
say:set("assertion.allowed.negative", "Expected a denial or an error; the snippet did:\n%s")
say:set("assertion.posts.positive", "Expected a post equal to %s; the snippet did:\n%s")
say:set("assertion.posts.negative", "Expected no post equal to %s; the snippet did:\n%s")
say:set("assertion.raises_kind.positive", "Expected an isolate.Error of kind %s, got %s")
say:set("assertion.raises_kind.negative", "Expected no isolate.Error of kind %s, got %s")

luassert:register("assertion", "denied", denied,
                  "assertion.denied.positive", "assertion.denied.negative")
luassert:register("assertion", "allowed", allowed,
                  "assertion.allowed.positive", "assertion.allowed.negative")
luassert:register("assertion", "posts", posts,
                  "assertion.posts.positive", "assertion.posts.negative")
luassert:register("assertion", "raises_kind", raises_kind,
                  "assertion.raises_kind.positive", "assertion.raises_kind.negative")

return testing
